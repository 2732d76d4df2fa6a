-- ---------------------------------------------------------------------------
-- Compare and repair (docs/operations.md, "Compare and repair"): every local
-- row against the remote; with repair => true, each side fixed as the
-- mirror's policies say.  Granted like sync.pull(): not to PUBLIC.
-- ---------------------------------------------------------------------------
CREATE FUNCTION sync.resync(local_table regclass, repair boolean DEFAULT false)
RETURNS jsonb LANGUAGE C AS 'MODULE_PATHNAME', 'sync_resync';
COMMENT ON FUNCTION sync.resync(regclass, boolean) IS
'Compares a mirrored table with the remote (counts and samples of only_local, only_remote, different); with repair => true applies the remote''s side where it wins and queues the local side for the worker. Journaled; progress in pg_stat_activity.query.';
REVOKE EXECUTE ON FUNCTION sync.resync(regclass, boolean) FROM PUBLIC;
