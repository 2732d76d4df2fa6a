-- deletes (issue 12, item 4): delete policies per mirror.  The mirror option
-- "delete" takes "flag" too, "local_delete" is new; the triggers follow
-- "local_delete" and "flag" adds its column (sync._delete_policy_column).
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

CREATE OR REPLACE FUNCTION sync._install_triggers(m int) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    mr sync.mirror;
    args text;
BEGIN
    SELECT * INTO STRICT mr FROM sync.mirror WHERE id = m;
    PERFORM sync._drop_triggers(mr.local_table);
    -- "delete": "flag" needs its column (src/sql/56_deletes.sql)
    PERFORM sync._delete_policy_column(mr.local_table);
    IF mr.direction = 'pull' THEN
        -- no capture, but TRUNCATE would still lose rows the pull never resends
        EXECUTE format('CREATE TRIGGER sync_truncate_guard BEFORE TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION sync.truncate_guard(''pull'')',
                       mr.local_table);
        RETURN;
    END IF;
    SELECT string_agg(quote_literal(f.local_column), ', ' ORDER BY f.local_column) INTO args
      FROM sync.field f
     WHERE f.mirror = m AND (f.createable OR f.updateable) AND f.authority <> 'remote';
    -- "local_delete": "ignore": local deletes are not captured at all
    EXECUTE format('CREATE TRIGGER sync_capture AFTER INSERT OR UPDATE%s ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION sync.capture(%s, %L, %L%s)',
                   CASE WHEN mr.options->>'local_delete' = 'ignore' THEN '' ELSE ' OR DELETE' END,
                   mr.local_table, m, mr.key_column, mr.remote_id_column,
                   CASE WHEN args IS NULL THEN '' ELSE ', ' || args END);
    EXECUTE format('CREATE TRIGGER sync_truncate_guard BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION sync.truncate_guard()',
                   mr.local_table);
END $$;

-- The column of a mirror whose remote deletes are flagged ("delete": "flag"):
-- remote_deleted_at timestamptz, at the end of the table, added if missing.
-- Nothing to do under other policies (a column left from an earlier "flag"
-- stays, with its data).  sync._install_triggers calls it, so sync.mirror
-- and every change that reinstalls a mirror's triggers get the column; run
-- it by hand after changing a mirror's options to "flag" otherwise.
CREATE FUNCTION sync._delete_policy_column(local_table regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    mr sync.mirror;
    col constant name := 'remote_deleted_at';
    typ text;
    used text;
BEGIN
    SELECT * INTO mr FROM sync.mirror m WHERE m.local_table = _delete_policy_column.local_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not mirrored', local_table
            USING ERRCODE = 'undefined_object', HINT = 'Mirror it with sync.mirror().';
    END IF;
    IF coalesce(mr.options->>'delete', 'delete') <> 'flag' THEN
        RETURN;
    END IF;
    SELECT f.remote_name INTO used FROM sync.field f WHERE f.mirror = mr.id AND f.local_column = col;
    IF used IS NULL AND col IN (mr.key_column, mr.remote_id_column, mr.stamp_column) THEN
        used := 'the key, remote-ID or stamp column';
    END IF;
    IF used IS NOT NULL THEN
        RAISE EXCEPTION 'column "%" of % is taken by %', col, local_table, used
            USING ERRCODE = 'duplicate_column',
                  DETAIL = 'The mirror option "delete": "flag" sets this column when the remote deletes a record.',
                  HINT = 'Map that field to another column, or use "delete": "keep".';
    END IF;
    SELECT format_type(a.atttypid, a.atttypmod) INTO typ
      FROM pg_attribute a
     WHERE a.attrelid = local_table AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
    IF typ IS NULL THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN %I timestamptz', local_table, col);
        EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', local_table, col,
                       'set by sync when the remote deleted the record (mirror option "delete": "flag"); '
                       'cleared when the record is restored');
    ELSIF typ <> 'timestamp with time zone' THEN
        RAISE EXCEPTION 'column "%" of % is %, but the mirror option "delete": "flag" needs timestamptz',
                        col, local_table, typ
            USING ERRCODE = 'datatype_mismatch',
                  HINT = format('ALTER TABLE %s ALTER COLUMN %I TYPE timestamptz;', local_table, col);
    END IF;
END $$;
REVOKE EXECUTE ON FUNCTION sync._delete_policy_column(regclass) FROM PUBLIC;
