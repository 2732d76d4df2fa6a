-- capture (issue 14, items 3 and 15): the trigger functions are not
-- executable by PUBLIC; pull-only mirrors get the TRUNCATE guard too.
REVOKE EXECUTE ON FUNCTION sync.capture(), sync.truncate_guard() FROM PUBLIC;

CREATE OR REPLACE FUNCTION sync._install_triggers(m int) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    mr sync.mirror;
    args text;
BEGIN
    SELECT * INTO STRICT mr FROM sync.mirror WHERE id = m;
    PERFORM sync._drop_triggers(mr.local_table);
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
    EXECUTE format('CREATE TRIGGER sync_capture AFTER INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION sync.capture(%s, %L, %L%s)',
                   mr.local_table, m, mr.key_column, mr.remote_id_column,
                   CASE WHEN args IS NULL THEN '' ELSE ', ' || args END);
    EXECUTE format('CREATE TRIGGER sync_truncate_guard BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION sync.truncate_guard()',
                   mr.local_table);
END $$;

-- the guard for the pull-only mirrors made by 0.1 (whose table still exists)
SELECT sync._install_triggers(m.id)
  FROM sync.mirror m
 WHERE m.direction = 'pull'
   AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = m.local_table);
