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

-- Where syncing was enabled: the database OID and the server's system
-- identifier, written by CREATE EXTENSION (and ALTER EXTENSION UPDATE from
-- 0.1, and sync.resume_copy()).  pg_dump carries the row, so a copy of the
-- database (CREATE DATABASE ... TEMPLATE, pg_restore here or on another
-- server) finds a row that is not its own and is held: no round of its
-- worker, no HTTP, sync.push()/sync.pull() refuse, until its owner calls
-- sync.resume_copy() or sync.detach_copy() (docs/worker.md).
CREATE TABLE sync.instance (
    database_oid        oid NOT NULL,
    system_identifier   text NOT NULL,
    enabled_at          timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON sync.instance FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('sync.instance', '');
COMMENT ON TABLE sync.instance IS
    'where syncing was enabled (database OID, system identifier); a copy of the database does not match and is held';

CREATE FUNCTION sync._system_identifier() RETURNS text
    LANGUAGE C STRICT STABLE AS 'MODULE_PATHNAME', 'sync_system_identifier';
-- Why this database is held (NULL: it is not), given sync.instance's rows.
CREATE FUNCTION sync._held_reason(database_oids oid[], system_identifiers text[]) RETURNS text
    LANGUAGE C STABLE AS 'MODULE_PATHNAME', 'sync_held_reason';

INSERT INTO sync.instance (database_oid, system_identifier)
SELECT d.oid, sync._system_identifier()
  FROM pg_catalog.pg_database d
 WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database();
