-- Configuration as code: sync.export_config() and sync.import_config()
-- without a remote (connections, the document's checks, privileges); the
-- mirrors made from a document and their sync are in test/t/101_config.pl.
SET client_min_messages = warning;
SET sync.request_attempts = 1;
CREATE SCHEMA cfg;

-- everything an import could change
CREATE FUNCTION cfg.fingerprint() RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT md5(concat_ws('|',
        (SELECT string_agg(format('%s %s %s', c.name, c.provider, c.options), ',' ORDER BY c.name) FROM sync.connection c),
        (SELECT string_agg(format('%s %s', s.connection, s.secrets), ',' ORDER BY s.connection) FROM sync.connection_secret s),
        (SELECT string_agg(format('%s %s %s %s %s', m.id, m.connection, m.local_table, m.direction, m.options), ',' ORDER BY m.id) FROM sync.mirror m),
        (SELECT string_agg(format('%s %s %s %s', f.mirror, f.remote_name, f.local_column, f.authority), ',' ORDER BY f.mirror, f.remote_name) FROM sync.field f),
        (SELECT string_agg(c.oid::regclass::text, ',' ORDER BY c.oid) FROM pg_class c WHERE c.relnamespace = 'cfg'::regnamespace),
        (SELECT string_agg(t.tgname || ' ' || t.tgrelid::regclass::text || ' ' || pg_get_triggerdef(t.oid), ','
                           ORDER BY t.tgname, t.tgrelid::regclass::text) FROM pg_trigger t WHERE NOT t.tgisinternal)))
$$;

-- one call: its SQLSTATE and message, and whether anything changed
CREATE FUNCTION cfg.try(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    before text := cfg.fingerprint();
    st text;
    msg text;
BEGIN
    BEGIN
        EXECUTE sql;
        RETURN 'ok' || CASE WHEN cfg.fingerprint() <> before THEN ' [CHANGED]' ELSE '' END;
    EXCEPTION WHEN others THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    END;
    RETURN st || ': ' || msg || CASE WHEN cfg.fingerprint() <> before THEN ' [CHANGED]' ELSE '' END;
END $$;

-- an empty database exports an empty document
SELECT sync.export_config();

-- connections: the options without secrets, the names of the secrets
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "https://127.0.0.1:1",
    "auth": {"type": "client_credentials", "client_id": "my-app", "client_secret": "s3cret"},
    "requests_per_day": 100000}');
SELECT sync.create_connection('hs', 'hubspot', '{"base_url": "https://127.0.0.1:1",
    "auth": {"type": "private_app", "token": "pat-s3cret"}}');
SELECT jsonb_pretty(sync.export_config());
SELECT sync.export_config()::text ~ 's3cret' AS secret_exported;

-- the same document again: nothing to do, dry run or not
SELECT * FROM sync.import_config(sync.export_config());
SELECT * FROM sync.import_config(sync.export_config(), dry_run => false);

-- the document is checked before anything changes: each error has its
-- SQLSTATE and changes nothing
SELECT n, cfg.try(format('SELECT * FROM sync.import_config(%L, dry_run => false, drop_missing => true)', d))
  FROM (VALUES
    (1, NULL::jsonb),
    (2, '[]'),
    (3, '"sync"'),
    (4, '{}'),
    (5, '{"sync_config": "1"}'),
    (6, '{"sync_config": 2, "connections": []}'),
    (7, '{"sync_config": 1, "mirror": []}'),
    (8, '{"sync_config": 1, "connections": {}}'),
    (9, '{"sync_config": 1, "connections": [5]}'),
    (10, '{"sync_config": 1, "connections": [{"provider": "salesforce"}]}'),
    (11, '{"sync_config": 1, "connections": [{"name": "Bad Name", "provider": "salesforce"}]}'),
    (12, '{"sync_config": 1, "connections": [{"name": "x", "provider": "salesfarce", "options": {}}]}'),
    (13, '{"sync_config": 1, "connections": [{"name": "x", "provider": "hubspot"}, {"name": "x", "provider": "hubspot"}]}'),
    (14, '{"sync_config": 1, "connections": [{"name": "x", "provider": "hubspot", "colour": "red"}]}'),
    (15, '{"sync_config": 1, "connections": [{"name": "x", "provider": "hubspot", "options": []}]}'),
    (16, '{"sync_config": 1, "connections": [{"name": "x", "provider": "hubspot", "secret_keys": "auth.token"}]}'),
    (17, '{"sync_config": 1, "connections": [{"name": "x", "provider": "hubspot", "options": {"auth": {"type": "private_app"}}}]}'),
    (18, '{"sync_config": 1, "connections": [{"name": "sf", "provider": "salesforce", "options": {"login_url": "http://insecure"}}]}'),
    (19, '{"sync_config": 1, "mirrors": [{"local_table": "contact", "connection": "sf", "remote_object": "Contact"}]}'),
    (20, '{"sync_config": 1, "mirrors": [{"local_table": "cfg.contact", "connection": "nope", "remote_object": "Contact"}]}'),
    (21, '{"sync_config": 1, "connections": [], "mirrors": [{"local_table": "cfg.contact", "connection": "sf", "remote_object": "Contact"}]}'),
    (22, '{"sync_config": 1, "mirrors": [{"local_table": "cfg.contact", "connection": "sf"}]}'),
    (23, '{"sync_config": 1, "mirrors": [{"local_table": "cfg.contact", "connection": "sf", "remote_object": "Contact", "direction": "sideways"}]}'),
    (24, '{"sync_config": 1, "mirrors": [{"local_table": "cfg.contact", "connection": "sf", "remote_object": "Contact", "options": {"conflict": "coin_toss"}}]}'),
    (25, '{"sync_config": 1, "mirrors": [{"local_table": "cfg.contact", "connection": "sf", "remote_object": "Contact", "options": {"authority": {"Email": "remote"}}}]}'),
    (26, '{"sync_config": 1, "mirrors": [{"local_table": "cfg.contact", "connection": "sf", "remote_object": "Contact", "fields": {"Email": {"authority": "mine"}}}]}'),
    (27, '{"sync_config": 1, "mirrors": [{"local_table": "cfg.contact", "connection": "sf", "remote_object": "Contact", "fields": {"Email": {"colour": "red"}}}]}'),
    (28, '{"sync_config": 1, "mirrors": [{"local_table": "cfg.contact", "connection": "sf", "remote_object": "Contact", "fields": ["Email", "Email"]}]}'),
    (29, '{"sync_config": 1, "mirrors": [{"local_table": "cfg.contact", "connection": "sf", "remote_object": "Contact", "fields": []}]}'),
    (30, '{"sync_config": 1, "mirrors": [{"local_table": "cfg.contact", "connection": "sf", "remote_object": "Contact", "fields": {"Email": {"column": "x"}, "Phone": {"column": "x"}}}]}'),
    (31, '{"sync_config": 1, "mirrors": [{"local_table": "cfg.contact", "connection": "sf", "remote_object": "Contact"}, {"local_table": "cfg.\"contact\"", "connection": "sf", "remote_object": "Contact"}]}'),
    (32, '{"sync_config": 1, "mirrors": [{"local_table": "cfg.contact", "connection": "sf", "remote_object": "Contact", "key_column": ""}]}')
  ) AS t(n, d)
 ORDER BY n;
SELECT n, cfg.try(sql) FROM (VALUES
    (1, 'SELECT * FROM sync.import_config(''{"sync_config": 1}'', dry_run => NULL)'),
    (2, 'SELECT * FROM sync.import_config(''{"sync_config": 1}'', drop_missing => NULL)')) t(n, sql) ORDER BY n;

-- a new connection whose secret the document does not carry: a task for
-- the user, never an invented secret; with the secret given as a file it
-- would be created (test/t/101_config.pl)
SELECT * FROM sync.import_config('{"sync_config": 1, "connections": [
    {"name": "hs2", "provider": "hubspot", "options": {"auth": {"type": "private_app"}}, "secret_keys": ["auth.token"]}]}');

-- ... and the secrets it does carry are not in the report
SELECT detail::text ~ 'cl13nt-s3cret' AS secret_in_report, detail->'missing_secrets' AS missing_secrets
  FROM sync.import_config('{"sync_config": 1, "connections": [
    {"name": "hs3", "provider": "hubspot", "options": {"auth": {"type": "oauth_refresh", "client_id": "id",
     "client_secret": "cl13nt-s3cret"}}, "secret_keys": ["auth.client_secret", "auth.refresh_token"]}]}')
 WHERE object = 'hs3';

-- changed options: altered, the secrets kept; a connection the document
-- leaves out is dropped only when asked
SELECT action, object, status, detail FROM sync.import_config('{"sync_config": 1, "connections": [
    {"name": "sf", "provider": "salesforce", "options": {"login_url": "https://127.0.0.1:1", "max_in_flight": 2,
     "auth": {"type": "client_credentials", "client_id": "my-app"}}, "secret_keys": ["auth.client_secret"]}]}');
SELECT options AS sf_options_after_dry_run FROM sync.connection WHERE name = 'sf';
SELECT action, object, status FROM sync.import_config('{"sync_config": 1, "connections": [
    {"name": "sf", "provider": "salesforce", "options": {"login_url": "https://127.0.0.1:1", "max_in_flight": 2,
     "auth": {"type": "client_credentials", "client_id": "my-app"}}, "secret_keys": ["auth.client_secret"]}]}',
    dry_run => false);
SELECT name, options, secret_keys FROM sync.connections ORDER BY name;
SELECT secrets FROM sync.connection_secret WHERE connection = 'sf';
SELECT action, object, status FROM sync.import_config('{"sync_config": 1, "connections": [
    {"name": "sf", "provider": "salesforce", "options": {"login_url": "https://127.0.0.1:1", "max_in_flight": 2,
     "auth": {"type": "client_credentials", "client_id": "my-app"}}}]}', dry_run => false, drop_missing => true);
SELECT name FROM sync.connection ORDER BY name;
-- a secret given in the document is taken (and never reported)
SELECT action, object, status, detail FROM sync.import_config('{"sync_config": 1, "connections": [
    {"name": "hs", "provider": "hubspot", "options": {"base_url": "https://127.0.0.1:1",
     "auth": {"type": "private_app", "token": "pat-n3w"}}}]}', dry_run => false);
SELECT secrets FROM sync.connection_secret WHERE connection = 'hs';
-- a provider cannot change
SELECT action, object, status FROM sync.import_config('{"sync_config": 1, "connections": [
    {"name": "hs", "provider": "salesforce", "options": {}}]}', dry_run => false);

-- a mirror as sync.mirror() records it (made here by hand: no remote)
CREATE TABLE cfg.contact (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, remote_id text UNIQUE,
                          remote_modified_at timestamptz, email text, first_name text, phone text);
WITH m AS (
    INSERT INTO sync.mirror (connection, remote_object, local_table, direction, options, key_column, remote_id_column, stamp_column)
    VALUES ('hs', 'contacts', 'cfg.contact', 'both', '{"conflict": "remote_wins", "authority": {"phone": "remote"}}',
            'id', 'remote_id', 'remote_modified_at') RETURNING id),
f AS (
    INSERT INTO sync.field (mirror, remote_name, local_column, remote_type, local_type, createable, updateable, authority)
    SELECT m.id, v.r, v.c, 'string', v.t, v.w, v.w, v.a FROM m, (VALUES
        ('hs_object_id', 'remote_id', 'text', false, 'both'), ('lastmodifieddate', 'remote_modified_at', 'timestamptz', false, 'both'),
        ('email', 'email', 'text', true, 'both'), ('firstname', 'first_name', 'text', true, 'both'),
        ('phone', 'phone', 'text', true, 'remote')) v(r, c, t, w, a))
INSERT INTO sync.mirror_state (mirror, next_pull_at) SELECT id, 'infinity' FROM m;
SELECT sync._install_triggers(id) FROM sync.mirror;
SELECT jsonb_pretty(sync.export_config()->'mirrors');
SELECT * FROM sync.import_config(sync.export_config(), dry_run => false);

-- in place: options and authority (the capture trigger follows); a column
-- name waits for the user (new fields go through sync.alter_mirror, which
-- asks the remote: TAP 101)
SELECT action, object, status, jsonb_pretty(detail) FROM sync.import_config(jsonb_set(jsonb_set(jsonb_set(jsonb_set(
    sync.export_config(), '{mirrors,0,options}', '{"conflict": "local_wins", "pull_interval": "5 minutes", "batch_size": 50}'),
    '{mirrors,0,fields,email,authority}', '"local"'), '{mirrors,0,fields,phone,authority}', '"both"'),
    '{mirrors,0,fields,firstname,column}', '"given_name"'), dry_run => false);
SELECT options FROM sync.mirror;
SELECT remote_name, authority FROM sync.field ORDER BY remote_name;
SELECT regexp_replace(pg_get_triggerdef(oid), 'capture\(''\d+''', 'capture(''<mirror>''') FROM pg_trigger WHERE tgname = 'sync_capture';
-- local_delete in place: the capture trigger follows (no DELETE under "ignore")
SELECT action, object, status FROM sync.import_config(jsonb_set(
    sync.export_config(), '{mirrors,0,options,local_delete}', '"ignore"'), dry_run => false);
SELECT regexp_replace(pg_get_triggerdef(oid), 'capture\(''\d+''', 'capture(''<mirror>''') FROM pg_trigger WHERE tgname = 'sync_capture';
SELECT action, object, status, detail->'direction' AS direction FROM sync.import_config(jsonb_set(
    sync.export_config(), '{mirrors,0,direction}', '"pull"'), dry_run => false);
SELECT action, object, status FROM sync.import_config(jsonb_set(jsonb_set(
    sync.export_config(), '{mirrors,0,remote_object}', '"companies"'), '{mirrors,0,options,filter}', '"x"'), dry_run => false);

-- a mirror the document leaves out stays unless asked; its table stays
SELECT action, object, status FROM sync.import_config('{"sync_config": 1, "mirrors": []}', dry_run => false);
SELECT action, object, status FROM sync.import_config('{"sync_config": 1, "mirrors": []}', dry_run => true, drop_missing => true);
SELECT count(*) AS mirrors FROM sync.mirror;
SELECT action, object, status, detail->'table' AS "table" FROM sync.import_config('{"sync_config": 1, "mirrors": []}', dry_run => false, drop_missing => true);
SELECT count(*) AS mirrors, to_regclass('cfg.contact') AS "table" FROM sync.mirror;

-- privileges: neither function is PUBLIC's
CREATE ROLE cfg_user;
GRANT USAGE ON SCHEMA cfg, sync TO cfg_user;
SET ROLE cfg_user;
SELECT cfg.try('SELECT sync.export_config()');
SELECT cfg.try('SELECT * FROM sync.import_config(''{"sync_config": 1}'')');
RESET ROLE;
GRANT EXECUTE ON FUNCTION sync.export_config() TO cfg_user;
SET ROLE cfg_user;
SELECT sync.export_config()->'connections'->0->'name' AS exported_by_grantee;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION sync.export_config() FROM cfg_user;
REVOKE USAGE ON SCHEMA cfg, sync FROM cfg_user;
DROP ROLE cfg_user;

-- NetSuite as well: nothing here is provider-specific
SELECT action, object, status, detail->'missing_secrets' AS missing_secrets FROM sync.import_config('{"sync_config": 1, "connections": [
    {"name": "ns", "provider": "netsuite", "options": {"account": "1234567_SB1",
     "auth": {"type": "tba", "consumer_key": "ck", "token_id": "ti"}}, "secret_keys": ["auth.consumer_secret", "auth.token_secret"]}]}',
    dry_run => false) WHERE object = 'ns';
SELECT action, object, status FROM sync.import_config('{"sync_config": 1, "connections": [
    {"name": "ns", "provider": "netsuite", "options": {"account": "1234567_SB1",
     "auth": {"type": "tba", "consumer_key": "ck", "token_id": "ti", "consumer_secret": "cs", "token_secret": "ts"}}}]}',
    dry_run => false) WHERE object = 'ns';
SELECT e FROM jsonb_array_elements(sync.export_config()->'connections') e WHERE e->>'name' = 'ns';

-- leave nothing behind for the next test
SELECT count(sync.drop_connection(name, cascade => true)) AS dropped FROM sync.connection;
DROP SCHEMA cfg CASCADE;
