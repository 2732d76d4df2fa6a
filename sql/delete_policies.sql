-- Delete policies (mirror options "delete" and "local_delete"): their
-- validation, the flag column, the capture trigger without DELETE.
SET client_min_messages = warning;
CREATE SCHEMA dp;

-- a call's SQLSTATE and message, and whether the catalog or the table changed
CREATE FUNCTION dp.fingerprint() RETURNS text LANGUAGE sql AS $$
    SELECT md5(concat_ws('|',
        (SELECT string_agg(m.id || m.options::text, ',' ORDER BY m.id) FROM sync.mirror m),
        (SELECT string_agg(a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ','
                           ORDER BY a.attrelid, a.attnum)
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'dp' AND a.attnum > 0 AND NOT a.attisdropped),
        (SELECT string_agg(t.tgname || t.tgtype, ',' ORDER BY t.tgname) FROM pg_trigger t
          WHERE t.tgrelid IN (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                               WHERE n.nspname = 'dp'))))
$$;
CREATE FUNCTION dp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    before text := dp.fingerprint();
    st text;
    msg text;
    hint text;
BEGIN
    BEGIN
        EXECUTE sql;
        RETURN 'ok' || CASE WHEN dp.fingerprint() <> before THEN ' [changed]' ELSE '' END;
    EXCEPTION WHEN others THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    END;
    RETURN st || ': ' || msg || coalesce(' HINT: ' || nullif(hint, ''), '') ||
           CASE WHEN dp.fingerprint() <> before THEN ' [CHANGED]' ELSE '' END;
END $$;

-- the options' values: bad ones are refused with a clear error, nothing changes
SELECT v, dp.try(format('SELECT sync._check_mirror_options(%L)', v))
  FROM unnest(ARRAY[
    '{"delete": "flag"}', '{"delete": "keep"}', '{"delete": "delete"}',
    '{"local_delete": "ignore"}', '{"local_delete": "propagate"}',
    '{"delete": "flag", "local_delete": "ignore", "conflict": "remote_wins"}',
    '{"delete": "archive"}', '{"delete": "Flag"}', '{"delete": true}', '{"delete": ["flag"]}',
    '{"delete": null}', '{"local_delete": "keep"}', '{"local_delete": false}',
    '{"local_delete": null}', '{"on_delete": "flag"}']) v;

-- a mirror declared by hand (no remote needed here)
INSERT INTO sync.connection (name, provider) VALUES ('sf', 'salesforce');
CREATE TABLE dp.t (id bigint PRIMARY KEY, remote_id text UNIQUE, name text, remote_modified_at timestamptz);
INSERT INTO sync.mirror (connection, remote_object, local_table, options, key_column, remote_id_column, stamp_column)
    VALUES ('sf', 'Contact', 'dp.t', '{"delete": "flag", "local_delete": "ignore"}', 'id', 'remote_id', 'remote_modified_at');
INSERT INTO sync.field (mirror, remote_name, local_column, remote_type, local_type, createable, updateable)
    SELECT id, f, c, 'string', t, f = 'Name', f = 'Name'
      FROM sync.mirror, (VALUES ('Id', 'remote_id', 'text'), ('Name', 'name', 'text'),
                                ('SystemModstamp', 'remote_modified_at', 'timestamptz')) v(f, c, t);
INSERT INTO sync.mirror_state (mirror) SELECT id FROM sync.mirror;

-- "flag": the column is added at the end of the table, once
SELECT dp.try('SELECT sync._install_triggers(id) FROM sync.mirror');
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'dp.t'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
SELECT dp.try($$SELECT sync._delete_policy_column('dp.t')$$);
-- "ignore": the capture trigger fires on INSERT and UPDATE, not DELETE
SELECT tgname, (tgtype & 4) <> 0 AS on_insert, (tgtype & 16) <> 0 AS on_update, (tgtype & 8) <> 0 AS on_delete
  FROM pg_trigger WHERE tgrelid = 'dp.t'::regclass ORDER BY tgname;
INSERT INTO dp.t VALUES (1, 'a1', 'one', now()), (2, NULL, 'two', NULL);
SELECT sync._fold() AS folded \gset
DELETE FROM sync.outbox;
DELETE FROM dp.t WHERE id = 1;
SELECT sync._fold() AS folded \gset
SELECT count(*) AS queued_by_a_local_delete FROM sync.outbox;
UPDATE dp.t SET name = 'zwei' WHERE id = 2;
SELECT sync._fold() AS folded \gset
SELECT op, local_key, columns FROM sync.outbox;
-- "propagate" (the default) again: deletes are captured
UPDATE sync.mirror SET options = '{"delete": "flag"}';
SELECT sync._install_triggers(id) FROM sync.mirror;
SELECT tgname, (tgtype & 8) <> 0 AS on_delete FROM pg_trigger WHERE tgrelid = 'dp.t'::regclass ORDER BY tgname;
SELECT sync._fold() AS folded \gset
DELETE FROM sync.outbox;
INSERT INTO dp.t VALUES (3, 'a3', 'three', now());
SELECT sync._fold() AS folded \gset
DELETE FROM sync.outbox;
DELETE FROM dp.t WHERE id = 3;
SELECT sync._fold() AS folded \gset
SELECT op, local_key, remote_id FROM sync.outbox;
SELECT sync._fold() AS folded \gset
DELETE FROM sync.outbox;
-- the flag column is not captured: setting or clearing it queues nothing
UPDATE dp.t SET remote_deleted_at = now();
UPDATE dp.t SET remote_deleted_at = NULL;
SELECT sync._fold() AS folded \gset
SELECT count(*) AS queued_by_the_flag_column FROM sync.outbox;

-- the column taken by something else: a clear error, nothing changed
ALTER TABLE dp.t DROP COLUMN remote_deleted_at;
ALTER TABLE dp.t ADD COLUMN remote_deleted_at text;
SELECT dp.try($$SELECT sync._delete_policy_column('dp.t')$$);
ALTER TABLE dp.t DROP COLUMN remote_deleted_at;
UPDATE sync.field SET local_column = 'remote_deleted_at' WHERE remote_name = 'Name';
ALTER TABLE dp.t RENAME COLUMN name TO remote_deleted_at;
SELECT dp.try($$SELECT sync._delete_policy_column('dp.t')$$);
-- renamed back: sync follows the rename and reinstalls the triggers, which
-- adds the flag column now that the name is free
ALTER TABLE dp.t RENAME COLUMN remote_deleted_at TO name;
SELECT local_column FROM sync.field WHERE remote_name = 'Name';
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'dp.t'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
-- other policies: nothing to add
UPDATE sync.mirror SET options = '{"delete": "keep"}';
ALTER TABLE dp.t DROP COLUMN remote_deleted_at;
SELECT dp.try($$SELECT sync._delete_policy_column('dp.t')$$);
-- not a mirrored table
CREATE TABLE dp.plain (id int PRIMARY KEY);
SELECT dp.try($$SELECT sync._delete_policy_column('dp.plain')$$);
-- not for PUBLIC
SELECT has_function_privilege('public', 'sync._delete_policy_column(regclass)', 'EXECUTE') AS public_may_add_the_column;

DELETE FROM sync.mirror;
DELETE FROM sync.connection;
DROP SCHEMA dp CASCADE;
