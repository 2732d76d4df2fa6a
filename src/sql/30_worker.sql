-- ---------------------------------------------------------------------------
-- Background workers (src/worker.c, docs/worker.md).
-- ---------------------------------------------------------------------------

-- Wake this database's worker when the current transaction commits (the
-- capture trigger does this by itself; useful after writing sync tables
-- directly).  Nothing happens on rollback.  Harmless, so anyone may call it.
CREATE FUNCTION sync.wake() RETURNS void
    LANGUAGE C VOLATILE AS 'MODULE_PATHNAME', 'sync_wake';
COMMENT ON FUNCTION sync.wake() IS
    'wake this database''s sync worker when the current transaction commits';

-- The supervisor's view of the per-database workers, one row per database
-- it knows about (no rows when sync is not in shared_preload_libraries).
-- state: starting | running | no_extension | exited | failed.
-- last_error may quote remote messages: not for PUBLIC.
CREATE FUNCTION sync.worker_status(
    OUT datname text, OUT pid int, OUT state text, OUT started_at timestamptz,
    OUT cycles bigint, OUT last_wake timestamptz, OUT restarts int,
    OUT last_error text, OUT poll_interval_ms int, OUT restart_at timestamptz,
    OUT memory_bytes bigint, OUT datid oid)
RETURNS SETOF record
    LANGUAGE C VOLATILE AS 'MODULE_PATHNAME', 'sync_worker_status';
REVOKE EXECUTE ON FUNCTION sync.worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sync.worker_status() TO pg_read_all_stats;
COMMENT ON FUNCTION sync.worker_status() IS
    'state of the sync supervisor''s per-database workers';

-- CREATE EXTENSION asks the supervisor for a worker in this database (at
-- commit, so a rolled-back CREATE EXTENSION asks for nothing).
CREATE FUNCTION sync._request_worker() RETURNS void
    LANGUAGE C VOLATILE AS 'MODULE_PATHNAME', 'sync_request_worker';
REVOKE EXECUTE ON FUNCTION sync._request_worker() FROM PUBLIC;
SELECT sync._request_worker();
