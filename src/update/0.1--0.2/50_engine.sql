-- engine: inbound records set aside (sync.inbound_error), sync.errors with a
-- direction and write-backs, sync.retry for both directions.

CREATE TABLE sync.inbound_error (
    mirror          int NOT NULL REFERENCES sync.mirror (id) ON DELETE CASCADE,
    remote_id       text NOT NULL,
    local_key       text,                       -- the row holding the remote ID, if any
    operation       text NOT NULL,              -- insert, update or delete: what was tried
    error_code      text,                       -- SQLSTATE
    error_message   text,                       -- the table's own words
    state           text NOT NULL DEFAULT 'parked',   -- or 'retry'
    attempts        int NOT NULL DEFAULT 1,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    failed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mirror, remote_id)
);
REVOKE ALL ON sync.inbound_error FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('sync.inbound_error', '');

-- Requeue parked failures (all of a table's, or one outbox entry): outbound
-- entries are sent again; inbound records set aside are re-read from the
-- remote and applied again at the next pull.  Returns how many.
CREATE OR REPLACE FUNCTION sync.retry(local_table regclass, outbox_id bigint DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m int;
    n bigint;
    n_in bigint := 0;
BEGIN
    SELECT id INTO m FROM sync.mirror WHERE mirror.local_table = retry.local_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not mirrored', local_table USING ERRCODE = 'undefined_object';
    END IF;
    UPDATE sync.outbox o
       SET state = 'pending', next_attempt_at = now(), claimed_until = NULL,
           error_code = NULL, error_message = NULL, error_fields = NULL, updated_at = now()
     WHERE o.mirror = m AND o.state = 'parked' AND (retry.outbox_id IS NULL OR o.id = retry.outbox_id);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF retry.outbox_id IS NULL THEN
        UPDATE sync.inbound_error e SET state = 'retry' WHERE e.mirror = m;
        GET DIAGNOSTICS n_in = ROW_COUNT;
    END IF;
    UPDATE sync.mirror_state SET failures = 0, next_pull_at = now()
     WHERE mirror = m AND (failures > 0 OR n_in > 0);
    PERFORM sync.wake();
    RETURN n + n_in;
END $$;

CREATE OR REPLACE VIEW sync.errors AS
SELECT m.local_table,
       o.local_key,
       CASE o.op WHEN 'I' THEN 'insert' WHEN 'U' THEN 'update' WHEN 'W' THEN 'write-back'
                 ELSE 'delete' END AS operation,
       o.remote_id,
       o.error_code,
       o.error_message,
       o.error_fields,
       o.attempts,
       o.created_at AS queued_at,
       o.updated_at AS failed_at,
       o.id AS outbox_id,
       'out'::text AS direction
  FROM sync.outbox o
  JOIN sync.mirror m ON m.id = o.mirror
 WHERE o.state = 'parked'
UNION ALL
SELECT m.local_table,
       e.local_key,
       e.operation,
       e.remote_id,
       e.error_code,
       e.error_message,
       NULL::text[],
       e.attempts,
       e.first_failed_at,
       e.failed_at,
       NULL::bigint,
       'in'::text
  FROM sync.inbound_error e
  JOIN sync.mirror m ON m.id = e.mirror;
