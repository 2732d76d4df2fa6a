-- deletes (issue 12, item 4): delete policies per mirror.  The mirror option
-- "delete" takes "flag" too, "local_delete" is new (both checked by
-- sync._check_mirror_options, whose final text is in 70_cdc.sql, the last
-- fragment that changes it); the triggers follow "local_delete" and "flag"
-- adds its column (sync._delete_policy_column).


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
-- (sync._delete_policy_column: 41_deletes.sql, which is src/sql/56_deletes.sql)
