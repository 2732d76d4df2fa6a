-- cdc: the mirror option "realtime" (Salesforce Change Data Capture, src/salesforce_cdc.c)
CREATE OR REPLACE FUNCTION sync._check_mirror_options(options jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k text;
    known text[] := ARRAY['idempotency_field', 'conflict', 'filter', 'delete',
                          'pull_interval', 'authority', 'key_column',
                          'remote_id_column', 'stamp_column', 'batch_size', 'batch', 'local_delete',
                          'realtime'];
BEGIN
    IF jsonb_typeof(options) <> 'object' THEN
        RAISE EXCEPTION 'mirror options must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR k IN SELECT jsonb_object_keys(options) LOOP
        IF NOT k = ANY (known) THEN
            RAISE EXCEPTION 'unknown mirror option "%"', k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Known options: ' || array_to_string(known, ', ') || '.';
        END IF;
    END LOOP;
    IF options ? 'conflict' AND options->>'conflict' NOT IN ('local_wins', 'remote_wins') THEN
        RAISE EXCEPTION 'invalid value for mirror option "conflict": %', options->'conflict'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use "local_wins" (pending local changes are kept) or "remote_wins".';
    END IF;
    IF options ? 'delete' AND coalesce(options->>'delete', '') NOT IN ('delete', 'keep', 'flag') THEN
        RAISE EXCEPTION 'invalid value for mirror option "delete": %', options->'delete'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use "delete" (remote deletes delete the row), "keep" (the row stays) or "flag" (the row stays with remote_deleted_at set).';
    END IF;
    IF options ? 'batch' AND jsonb_typeof(options->'batch') <> 'boolean' THEN
        RAISE EXCEPTION 'invalid value for mirror option "batch": %', options->'batch'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use true (writes go in the remote''s asynchronous batches, where it has them) or false.';
    END IF;
    IF options ? 'pull_interval' THEN
        BEGIN
            PERFORM (options->>'pull_interval')::interval;
        EXCEPTION WHEN others THEN
            RAISE EXCEPTION 'invalid value for mirror option "pull_interval": %', options->'pull_interval'
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Use an interval such as "30 seconds".';
        END;
    END IF;
    IF options ? 'authority' THEN
        IF jsonb_typeof(options->'authority') <> 'object' OR EXISTS (
            SELECT 1 FROM jsonb_each_text(options->'authority') a WHERE a.value NOT IN ('local', 'remote', 'both')) THEN
            RAISE EXCEPTION 'invalid value for mirror option "authority": %', options->'authority'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use an object mapping remote field names to "local", "remote" or "both".';
        END IF;
    END IF;
    IF options ? 'batch_size' AND (jsonb_typeof(options->'batch_size') <> 'number'
                                   OR (options->>'batch_size')::numeric NOT BETWEEN 1 AND 100000
                                   OR (options->>'batch_size')::numeric <> trunc((options->>'batch_size')::numeric)) THEN
        RAISE EXCEPTION 'invalid value for mirror option "batch_size": %', options->'batch_size'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use an integer from 1 to 100000.';
    END IF;
    FOR k IN SELECT unnest(ARRAY['key_column', 'remote_id_column', 'stamp_column']) LOOP
        IF options ? k AND (jsonb_typeof(options->k) <> 'string'
                            OR octet_length(options->>k) NOT BETWEEN 1 AND 63) THEN
            RAISE EXCEPTION 'invalid value for mirror option "%": %', k, options->k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use a column name of 1 to 63 bytes.';
        END IF;
    END LOOP;
    IF (SELECT count(DISTINCT c) <> count(*) FROM
          unnest(ARRAY[coalesce(options->>'key_column', 'id'),
                       coalesce(options->>'remote_id_column', 'remote_id'),
                       coalesce(options->>'stamp_column', 'remote_modified_at')]) c) THEN
        RAISE EXCEPTION 'mirror options "key_column", "remote_id_column" and "stamp_column" must name three different columns'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF options ? 'local_delete' AND coalesce(options->>'local_delete', '') NOT IN ('propagate', 'ignore') THEN
        RAISE EXCEPTION 'invalid value for mirror option "local_delete": %', options->'local_delete'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use "propagate" (local deletes delete the remote record) or "ignore" (the row leaves this database only).';
    END IF;
    IF options ? 'realtime' AND jsonb_typeof(options->'realtime') <> 'boolean' THEN
        RAISE EXCEPTION 'invalid value for mirror option "realtime": %', options->'realtime'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use true (remote changes arrive as a stream, where the remote has one: Salesforce Change Data Capture) or false.';
    END IF;
END $$;
