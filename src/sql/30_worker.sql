-- Background worker interface (placeholder until the worker lands).
CREATE FUNCTION sync.wake() RETURNS void
    LANGUAGE C AS 'MODULE_PATHNAME', 'sync_wake';
COMMENT ON FUNCTION sync.wake() IS 'wake this database''s sync worker when the current transaction commits';
