-- capturelog: the capture trigger appends to sync.capture_log, and the
-- worker folds it into sync.outbox (issue #13, capture overhead):
-- src/sql/40_catalog.sql, 50_interface.sql, 60_lifecycle.sql.  Before
-- 80_status.sql, whose view reads the log.

-- Captured writes not yet folded into sync.outbox.  The capture trigger
-- appends one row per write here, in the writer's transaction, and nothing
-- else: no index to maintain and no entry to look up, so a captured write
-- costs a heap insert.  The worker (and sync.push(), sync.pull() and the
-- functions that read the outbox of a mirror) folds the rows into
-- sync.outbox in seq order with the coalescing rules of the trigger head
-- in src/capture.c, deleting them in the same transaction: sync._fold().
-- seq comes from sync.outbox_id_seq and becomes the id of the entry the
-- row opens, so entries keep the order in which their writes were made.
CREATE TABLE sync.capture_log (
    seq         bigint NOT NULL,
    at          timestamptz NOT NULL,
    mirror      int NOT NULL,
    op          "char" NOT NULL,                -- I, U or D
    local_key   text NOT NULL,
    columns     name[],                         -- changed columns; NULL = all
    remote_id   text
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);

SELECT pg_catalog.pg_extension_config_dump('sync.capture_log', '');
REVOKE ALL ON sync.capture_log FROM PUBLIC;

-- Fold the captured writes of a mirror (NULL: of every mirror) from
-- sync.capture_log into sync.outbox now; returns how many were folded.
-- Callers that read a mirror's outbox call it first.  One folder per mirror
-- at a time (a lock held to the end of the transaction): writes of a row
-- are folded in the order they were made.
CREATE FUNCTION sync._fold(mirror int DEFAULT NULL) RETURNS bigint
    LANGUAGE C CALLED ON NULL INPUT AS 'MODULE_PATHNAME', 'sync_fold';
REVOKE EXECUTE ON FUNCTION sync._fold(int) FROM PUBLIC;

-- unmirror, a dropped or altered table: fold first
CREATE OR REPLACE FUNCTION sync.unmirror(local_table regclass, drop_table boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m int;
    pending bigint;
BEGIN
    IF drop_table IS NULL THEN
        RAISE EXCEPTION 'sync.unmirror: drop_table must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT id INTO m FROM sync.mirror WHERE mirror.local_table = unmirror.local_table FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not mirrored', local_table USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM sync._fold(m);
    SELECT count(*) INTO pending FROM sync.outbox WHERE mirror = m;
    IF pending > 0 THEN
        RAISE WARNING '% queued local writes of % are discarded and will not reach the remote', pending, local_table;
    END IF;
    DELETE FROM sync.outbox WHERE mirror = m;
    PERFORM sync._drop_triggers(local_table);
    DELETE FROM sync.mirror WHERE id = m;
    IF drop_table THEN
        EXECUTE format('DROP TABLE %s', local_table);
    END IF;
END $$;

CREATE OR REPLACE FUNCTION sync._on_sql_drop() RETURNS event_trigger
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

CREATE OR REPLACE FUNCTION sync._on_alter_table() RETURNS event_trigger
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
