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

-- The column of a mirror whose remote deletes are flagged ("delete": "flag"):
-- remote_deleted_at timestamptz, at the end of the table, added if missing.
-- Nothing to do under other policies (a column left from an earlier "flag"
-- stays, with its data).  sync._install_triggers calls it, so sync.mirror
-- and every change that reinstalls a mirror's triggers get the column; run
-- it by hand after changing a mirror's options to "flag" otherwise.
CREATE FUNCTION sync._delete_policy_column(local_table regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    mr sync.mirror;
    col constant name := 'remote_deleted_at';
    typ text;
    used text;
BEGIN
    SELECT * INTO mr FROM sync.mirror m WHERE m.local_table = _delete_policy_column.local_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not mirrored', local_table
            USING ERRCODE = 'undefined_object', HINT = 'Mirror it with sync.mirror().';
    END IF;
    IF coalesce(mr.options->>'delete', 'delete') <> 'flag' THEN
        RETURN;
    END IF;
    SELECT f.remote_name INTO used FROM sync.field f WHERE f.mirror = mr.id AND f.local_column = col;
    IF used IS NULL AND col IN (mr.key_column, mr.remote_id_column, mr.stamp_column) THEN
        used := 'the key, remote-ID or stamp column';
    END IF;
    IF used IS NOT NULL THEN
        RAISE EXCEPTION 'column "%" of % is taken by %', col, local_table, used
            USING ERRCODE = 'duplicate_column',
                  DETAIL = 'The mirror option "delete": "flag" sets this column when the remote deletes a record.',
                  HINT = 'Map that field to another column, or use "delete": "keep".';
    END IF;
    SELECT format_type(a.atttypid, a.atttypmod) INTO typ
      FROM pg_attribute a
     WHERE a.attrelid = local_table AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
    IF typ IS NULL THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN %I timestamptz', local_table, col);
        EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', local_table, col,
                       'set by sync when the remote deleted the record (mirror option "delete": "flag"); '
                       'cleared when the record is restored');
    ELSIF typ <> 'timestamp with time zone' THEN
        RAISE EXCEPTION 'column "%" of % is %, but the mirror option "delete": "flag" needs timestamptz',
                        col, local_table, typ
            USING ERRCODE = 'datatype_mismatch',
                  HINT = format('ALTER TABLE %s ALTER COLUMN %I TYPE timestamptz;', local_table, col);
    END IF;
END $$;
REVOKE EXECUTE ON FUNCTION sync._delete_policy_column(regclass) FROM PUBLIC;
