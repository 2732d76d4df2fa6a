-- The configuration interface: validation, secrets, privileges.
SET client_min_messages = warning;

-- remote names to column names
SELECT n, sync.snake_case(n) FROM unnest(ARRAY['FirstName', 'AccountId', 'Sync_Key__c',
    'HTMLBody', 'SystemModstamp', 'firstname', 'hs_lastmodifieddate', 'Level2Rating']) n;

-- bad input is refused with a clear error
SELECT sync.create_connection('sf', 'salesfarce', '{}');
SELECT sync.create_connection('sf', 'salesforce', '{}');
-- plain http only to loopback hosts, by the parser the requests use (not a prefix)
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "http://127.evil.example", "auth": {"type": "client_credentials", "client_id": "x", "client_secret": "y"}}');
SELECT sync.create_connection('hs', 'hubspot', '{"base_url": "http://localhost.evil.example", "auth": {"type": "private_app", "token": "t"}}');
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "http://login.salesforce.com"}');
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "https://login.salesforce.com"}');
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "https://login.salesforce.com",
    "auth": {"type": "password", "client_id": "x"}}');
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "https://login.salesforce.com",
    "auth": {"type": "client_credentials", "client_id": "x"}}');
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "https://login.salesforce.com",
    "auth": {"type": "client_credentials", "client_id": "x", "client_secret": "s3cret"}, "colour": "red"}');
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "https://login.salesforce.com",
    "auth": {"type": "client_credentials", "client_id": "x", "client_secret": "s3cret"}, "api_version": "v42.0"}');
SELECT sync.create_connection('Bad Name', 'salesforce', '{}');
SELECT count(*) AS connections FROM sync.connection;

-- a good one: the secret is split off and never shown
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "https://login.salesforce.com",
    "auth": {"type": "client_credentials", "client_id": "my-app", "client_secret": "s3cret"},
    "requests_per_day": 100000}');
SELECT name, provider, options, secret_keys FROM sync.connections;
SELECT secrets FROM sync.connection_secret;
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "https://x"}');
-- alter: top-level keys replace, null removes; secrets stay secret
SELECT sync.alter_connection('sf', '{"requests_per_day": null, "auth": {"type": "client_credentials",
    "client_id": "my-app", "client_secret": "n3w"}}');
SELECT options FROM sync.connection;
SELECT secrets FROM sync.connection_secret;
-- a key outside auth leaves auth (option and secret halves) as it was
SELECT sync.alter_connection('sf', '{"max_in_flight": 4}');
SELECT name, options, secret_keys FROM sync.connections;
SELECT secrets FROM sync.connection_secret;
SELECT sync.alter_connection('sf', '{"auth": {"type": "jwt_bearer", "client_id": "my-app"}}');
SELECT sync.alter_connection('nope', '{}');

-- mirror: bad input before any network traffic
SELECT sync.mirror('nope', 'Contact', 'public.c');
SELECT sync.mirror('sf', 'Contact', 'public.c', direction => 'sideways');
SELECT sync.mirror('sf', 'Contact', 'public.c', options => '{"conflikt": "remote_wins"}');
SELECT sync.mirror('sf', 'Contact', 'public.c', options => '{"conflict": "newest"}');
SELECT sync.mirror('sf', 'Contact', 'public.c', options => '{"pull_interval": "often"}');
SELECT sync.mirror('sf', 'Contact', 'public.c', options => '{"authority": {"Email": "mine"}}');
SELECT sync.mirror('sf', 'Contact', 'a.b.c.d');
CREATE TABLE not_mirrored (id int PRIMARY KEY);
SELECT sync.unmirror('not_mirrored');
SELECT sync.retry('not_mirrored');
SELECT sync.push('not_mirrored');
SELECT sync.drop_connection('nope');

-- privileges: configuration is the owner's; secrets are the owner's only
CREATE ROLE sync_regress_user;
GRANT USAGE ON SCHEMA sync TO sync_regress_user;
SET ROLE sync_regress_user;
SELECT secrets FROM sync.connection_secret;
SELECT * FROM sync.connections;
SELECT sync.create_connection('mine', 'salesforce', '{}');
SELECT sync.alter_connection('sf', '{}');
SELECT sync.drop_connection('sf');
SELECT sync.mirror('sf', 'Contact', 'public.c');
INSERT INTO sync.outbox (mirror, local_key, op) VALUES (1, '1', 'D');
SELECT sync.version() ? 'sync' AS version_is_public;
RESET ROLE;
-- no function of the extension is SECURITY DEFINER without a pinned search_path
SELECT p.proname FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
 JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'sync'
 WHERE p.prosecdef AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%');
-- configuration functions are not executable by PUBLIC
SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace AND n.nspname = 'sync'
 WHERE has_function_privilege('sync_regress_user', p.oid, 'EXECUTE')
   AND p.prorettype <> 'trigger'::regtype ORDER BY 1;
REVOKE USAGE ON SCHEMA sync FROM sync_regress_user;
DROP ROLE sync_regress_user;

SELECT sync.drop_connection('sf');
SELECT count(*) FROM sync.connection;
DROP TABLE not_mirrored;
