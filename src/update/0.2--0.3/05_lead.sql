-- the lead: idempotency keys per installation, for updates sent as creates too;
-- the mirror option "batch"
-- Claim a batch of ready outbox entries of a mirror for pushing: only the
-- oldest entry of each row (later ones wait for it), skipping entries other
-- claimers hold, with a lease so a crashed claimer's entries come back.
-- Creates get their idempotency key here, once, so a retry reuses it (and
-- so do updates: one whose row never reached the remote is sent as a
-- create).  The key names this installation (sync.instance: the server,
-- the database, when syncing was enabled), the mirror and the entry, so no
-- other database, nor this one after the extension was re-created, can
-- produce the same key and upsert into a record that is not its own.
CREATE OR REPLACE FUNCTION sync._claim(mirror int, max_entries int, lease_seconds int)
RETURNS SETOF sync.outbox LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    WITH ready AS (
        SELECT o.id FROM sync.outbox o
         WHERE o.mirror = _claim.mirror AND o.state = 'pending' AND o.next_attempt_at <= now()
           AND (o.claimed_until IS NULL OR o.claimed_until < now())
           AND NOT EXISTS (SELECT 1 FROM sync.outbox p
                            WHERE p.mirror = o.mirror AND p.local_key = o.local_key AND p.id < o.id)
         ORDER BY o.id LIMIT max_entries
           FOR UPDATE SKIP LOCKED)
    UPDATE sync.outbox o
       SET claimed_until = now() + make_interval(secs => lease_seconds),
           claimed_by = pg_backend_pid(), attempts = o.attempts + 1, slot = -o.id, updated_at = now(),
           idempotency_key = CASE WHEN o.op IN ('I', 'U') THEN coalesce(o.idempotency_key,
               'sync-' || coalesce((SELECT substr(md5(i.system_identifier || '/' || i.database_oid || '/' || extract(epoch FROM i.enabled_at)), 1, 16)
                                      FROM sync.instance i ORDER BY i.enabled_at DESC LIMIT 1),
                                   to_hex(hashtext(current_database())))
                       || '-' || o.mirror || '-' || o.id) END
      FROM ready WHERE o.id = ready.id
    RETURNING o.*
$$;

-- Mirror options the engine understands; providers check their own parts.
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
