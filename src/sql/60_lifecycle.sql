-- ---------------------------------------------------------------------------
-- Lifecycle: mirrored tables dropped or altered, copies of the database
-- (docs/worker.md).
-- ---------------------------------------------------------------------------

-- A dropped mirrored table (DROP TABLE, DROP SCHEMA ... CASCADE, DROP
-- OWNED) takes its mirror with it: the mirror's rows in sync.mirror,
-- sync.field, sync.mirror_state and its queued writes in sync.outbox are
-- deleted (a WARNING counts discarded writes), so the worker goes on with
-- the other mirrors.  The journal keeps its history.  SECURITY DEFINER: it
-- fires for whoever drops a table and must write the extension's tables.
CREATE FUNCTION sync._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    pending bigint;
BEGIN
    FOR r IN SELECT m.id, m.connection, m.remote_object, d.object_identity
               FROM pg_event_trigger_dropped_objects() d
               JOIN sync.mirror m ON m.local_table::oid = d.objid
              WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0
              ORDER BY m.id
    LOOP
        PERFORM sync._fold(r.id);
        SELECT count(*) INTO pending FROM sync.outbox o WHERE o.mirror = r.id;
        IF pending > 0 THEN
            RAISE WARNING '% queued local writes of dropped table % are discarded and will not reach the remote',
                pending, r.object_identity;
        END IF;
        DELETE FROM sync.outbox o WHERE o.mirror = r.id;
        DELETE FROM sync.mirror m WHERE m.id = r.id;
        RAISE NOTICE 'table % was dropped: its mirror of % % is removed', r.object_identity, r.connection, r.remote_object;
    END LOOP;
END $$;
REVOKE EXECUTE ON FUNCTION sync._on_sql_drop() FROM PUBLIC;
CREATE EVENT TRIGGER sync_unmirror_dropped ON sql_drop
    EXECUTE FUNCTION sync._on_sql_drop();

-- ALTER TABLE on a mirrored table: a renamed mapped column (or key, remote
-- ID or stamp column) is followed — the mapping, the queued writes' column
-- lists and the capture trigger (whose arguments name the columns) are
-- updated; dropping such a column is refused.  Renaming the table needs
-- nothing: sync.mirror.local_table is a regclass.
CREATE FUNCTION sync._on_alter_table() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c record;
    m sync.mirror;
    missing name[];
    newname name;
BEGIN
    FOR c IN SELECT DISTINCT x.objid, x.objsubid
               FROM pg_event_trigger_ddl_commands() x
              WHERE x.classid = 'pg_catalog.pg_class'::regclass
    LOOP
        FOR m IN SELECT * FROM sync.mirror mr WHERE mr.local_table::oid = c.objid LOOP
            -- the names the mirror uses that the table no longer has
            SELECT array_agg(u.n ORDER BY u.n) INTO missing
              FROM (SELECT f.local_column AS n FROM sync.field f WHERE f.mirror = m.id
                    UNION SELECT m.key_column UNION SELECT m.remote_id_column
                    UNION SELECT m.stamp_column) u
             WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                                WHERE a.attrelid = c.objid AND a.attname = u.n
                                  AND a.attnum > 0 AND NOT a.attisdropped);
            CONTINUE WHEN missing IS NULL;
            newname := NULL;
            IF c.objsubid > 0 AND cardinality(missing) = 1 THEN
                SELECT a.attname INTO newname FROM pg_attribute a
                 WHERE a.attrelid = c.objid AND a.attnum = c.objsubid AND NOT a.attisdropped;
            END IF;
            IF newname IS NULL THEN
                RAISE EXCEPTION 'cannot drop column % of table %: the table''s sync mirror of % % uses it',
                    array_to_string(missing, ', '), m.local_table, m.connection, m.remote_object
                    USING ERRCODE = 'dependent_objects_still_exist',
                          HINT = 'Unmirror the table first (sync.unmirror), then change it and mirror it again.';
            END IF;
            UPDATE sync.field f SET local_column = newname WHERE f.mirror = m.id AND f.local_column = missing[1];
            UPDATE sync.mirror mr
               SET key_column = CASE WHEN mr.key_column = missing[1] THEN newname ELSE mr.key_column END,
                   remote_id_column = CASE WHEN mr.remote_id_column = missing[1] THEN newname ELSE mr.remote_id_column END,
                   stamp_column = CASE WHEN mr.stamp_column = missing[1] THEN newname ELSE mr.stamp_column END
             WHERE mr.id = m.id;
            PERFORM sync._fold(m.id);
            UPDATE sync.outbox o SET columns = array_replace(o.columns, missing[1], newname)
             WHERE o.mirror = m.id AND missing[1] = ANY (o.columns);
            PERFORM sync._install_triggers(m.id);
        END LOOP;
    END LOOP;
END $$;
REVOKE EXECUTE ON FUNCTION sync._on_alter_table() FROM PUBLIC;
CREATE EVENT TRIGGER sync_follow_alter_table ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION sync._on_alter_table();

-- A held copy takes over: this database is now the one that syncs (its
-- identity replaces the recorded one).  Also after pg_upgrade, which gives
-- the server a new system identifier.
CREATE FUNCTION sync.resume_copy() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    LOCK TABLE sync.instance IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM sync.instance;
    INSERT INTO sync.instance (database_oid, system_identifier)
    SELECT d.oid, sync._system_identifier() FROM pg_database d WHERE d.datname = current_database();
    PERFORM sync.wake();
END $$;
COMMENT ON FUNCTION sync.resume_copy() IS
    'make this copy of the database the one that syncs with the remotes';

-- A held copy lets go of the remotes for good: every mirror is unmirrored
-- (capture triggers dropped, queued writes discarded; the tables and their
-- rows stay, as plain tables) and every connection with its secrets is
-- dropped; then the copy is no longer held (there is nothing left to sync).
-- Refused in a database that is not a copy.
CREATE FUNCTION sync.detach_copy() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t regclass;
    nm int := 0;
    nc int;
BEGIN
    LOCK TABLE sync.instance IN SHARE ROW EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM sync.instance)
       AND NOT EXISTS (SELECT 1 FROM sync.instance i
                        WHERE i.database_oid <> (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
                           OR i.system_identifier <> sync._system_identifier()) THEN
        RAISE EXCEPTION 'database "%" is not a copy: it is the database in which syncing was enabled', current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Use sync.unmirror() and sync.drop_connection() to stop syncing here.';
    END IF;
    FOR t IN SELECT m.local_table FROM sync.mirror m ORDER BY m.id LOOP
        PERFORM sync.unmirror(t);
        nm := nm + 1;
    END LOOP;
    DELETE FROM sync.connection;
    GET DIAGNOSTICS nc = ROW_COUNT;
    DELETE FROM sync.instance;
    INSERT INTO sync.instance (database_oid, system_identifier)
    SELECT d.oid, sync._system_identifier() FROM pg_database d WHERE d.datname = current_database();
    RAISE NOTICE 'detached: % mirrors and % connections (with their secrets) removed; the tables keep their rows', nm, nc;
END $$;
COMMENT ON FUNCTION sync.detach_copy() IS
    'in a copy of the database: remove every mirror and connection so that it never syncs';

REVOKE EXECUTE ON FUNCTION sync.resume_copy(), sync.detach_copy(),
    sync._system_identifier() FROM PUBLIC;
