-- ---------------------------------------------------------------------------
-- Inbound records the local table refused (a constraint, a trigger, a value
-- of the wrong type) or could not take yet (a row a user kept locked): set
-- aside so the rest of the page applies and the pull goes on.  Shown in
-- sync.errors (direction 'in'); state 'retry' = re-read from the remote and
-- applied again at the next pull (a locked row, or after sync.retry()).
-- ---------------------------------------------------------------------------
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
