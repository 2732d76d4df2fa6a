-- ---------------------------------------------------------------------------
-- Background worker interface.
-- ---------------------------------------------------------------------------

-- Wake this database's worker when the current transaction commits (the
-- capture trigger does this by itself; useful after writing sync tables).
CREATE FUNCTION sync.wake() RETURNS void
    LANGUAGE C AS 'MODULE_PATHNAME', 'sync_wake';

-- The supervisor's view of the per-database workers.
CREATE FUNCTION sync.worker_status(
    OUT datname text, OUT pid int, OUT state text, OUT started_at timestamptz,
    OUT cycles bigint, OUT last_wake timestamptz, OUT restarts int,
    OUT last_error text, OUT poll_interval_ms int)
RETURNS SETOF record LANGUAGE C AS 'MODULE_PATHNAME', 'sync_worker_status';
REVOKE EXECUTE ON FUNCTION sync.worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sync.worker_status() TO pg_read_all_stats;

-- CREATE EXTENSION asks the supervisor for a worker in this database (at commit).
CREATE FUNCTION sync._request_worker() RETURNS void
    LANGUAGE C AS 'MODULE_PATHNAME', 'sync_request_worker';
REVOKE EXECUTE ON FUNCTION sync._request_worker() FROM PUBLIC;
SELECT sync._request_worker();
