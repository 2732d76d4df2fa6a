-- The capture trigger's per-backend cache across DROP EXTENSION and CREATE
-- EXTENSION in one backend: a new sync.outbox (new OIDs), a new sync.mirror,
-- and mirror ids that start again at 1.  (Changes to a mirrored table, to
-- the mirror's row and to the outbox's index, seen from another session
-- too, are in test/isolation/specs/capture_cache.spec.)
SET client_min_messages = warning;
CREATE TABLE cc_old (id int PRIMARY KEY, remote_id text UNIQUE, name text, stamp timestamptz);
CREATE TABLE cc_new (LIKE cc_old INCLUDING ALL);
CREATE FUNCTION cc_mirror(t regclass) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    m int;
BEGIN
    INSERT INTO sync.mirror (connection, remote_object, local_table, key_column, remote_id_column, stamp_column)
        VALUES ('cc', 'Contact', t, 'id', 'remote_id', 'stamp') RETURNING id INTO m;
    INSERT INTO sync.field (mirror, remote_name, local_column, remote_type, local_type, createable, updateable)
        VALUES (m, 'Name', 'name', 'string', 'text', true, true);
    INSERT INTO sync.mirror_state (mirror) VALUES (m);
    PERFORM sync._install_triggers(m);
    RETURN m;
END $$;

INSERT INTO sync.connection (name, provider) VALUES ('cc', 'salesforce');
SELECT setval('sync.mirror_id_seq', 1, false);
SELECT cc_mirror('cc_old') AS old_mirror;
-- fills this backend's cache: cc_old is mirror 1's table
INSERT INTO cc_old VALUES (1, NULL, 'one', NULL);
UPDATE cc_old SET name = 'uno' WHERE id = 1;
DELETE FROM cc_old WHERE id = 1;
INSERT INTO cc_old VALUES (2, NULL, 'two', NULL);
SELECT sync._fold() AS folded \gset
SELECT mirror, local_key, op FROM sync.outbox ORDER BY id;

DROP EXTENSION sync CASCADE;
CREATE EXTENSION sync;
INSERT INTO sync.connection (name, provider) VALUES ('cc', 'salesforce');
-- mirror 1 again, now of cc_new
SELECT cc_mirror('cc_new') AS new_mirror;
-- a capture trigger on cc_old for mirror 1, attached by hand, is refused
-- although this backend once found mirror 1 to be cc_old's
CREATE TRIGGER sync_capture AFTER INSERT OR UPDATE OR DELETE ON cc_old
    FOR EACH ROW EXECUTE FUNCTION sync.capture(1, 'id', 'remote_id', 'name');
UPDATE cc_old SET name = 'deux' WHERE id = 2;
SELECT sync._fold() AS folded \gset
SELECT count(*) AS queued FROM sync.outbox;
-- cc_new's writes go to the new outbox
INSERT INTO cc_new VALUES (1, NULL, 'one', NULL);
UPDATE cc_new SET name = 'uno' WHERE id = 1;
INSERT INTO cc_new VALUES (2, '0031', 'two', NULL);
DELETE FROM cc_new WHERE id = 2;
SELECT sync._fold() AS folded \gset
SELECT mirror, local_key, op, columns, remote_id FROM sync.outbox ORDER BY id;

-- a capture nested in another's SQL path, after invalidations: a trigger
-- on the capture log, fired by the deletes that cc_new's capture queues,
-- analyzes the log and cc_new (relcache invalidations of both) and
-- deletes a row of another mirrored table, whose capture takes the SQL
-- path too: the kept plans the outer capture is running are not freed, and
-- the outer statement's next row finds its table's entry invalid, not gone
CREATE TABLE cc_side (LIKE cc_old INCLUDING ALL);
SELECT cc_mirror('cc_side') AS side_mirror \gset
INSERT INTO cc_side VALUES (1, '0041', 'side', NULL), (2, '0042', 'side', NULL);
INSERT INTO cc_new VALUES (3, '0033', 'three', NULL), (4, '0034', 'four', NULL);
SELECT sync._fold() AS folded \gset
DELETE FROM sync.outbox;
CREATE FUNCTION cc_outbox_hook() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    ANALYZE sync.capture_log, public.cc_new;
    DELETE FROM public.cc_side WHERE id = 1;
    RETURN NULL;
END $$;
CREATE TRIGGER cc_hook AFTER INSERT ON sync.capture_log FOR EACH ROW
    WHEN (NEW.mirror OPERATOR(pg_catalog.<>) :side_mirror) EXECUTE FUNCTION cc_outbox_hook();
DELETE FROM cc_new WHERE id IN (3, 4);
DROP TRIGGER cc_hook ON sync.capture_log;
DELETE FROM cc_side WHERE id = 2;
SELECT sync._fold() AS folded \gset
SELECT m.local_table, o.local_key, o.op, o.remote_id
  FROM sync.outbox o JOIN sync.mirror m ON m.id = o.mirror ORDER BY o.id;

DROP TABLE cc_old, cc_new, cc_side;
DROP FUNCTION cc_outbox_hook();
DROP FUNCTION cc_mirror(regclass);
SELECT sync._fold() AS folded \gset
DELETE FROM sync.outbox;
DELETE FROM sync.mirror;
DELETE FROM sync.connection;
