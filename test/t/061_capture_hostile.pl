# Capture under hostile writers, end to end on mirrors made by sync.mirror()
# against the emulator (issue 14, items 2, 3 and 15; sql/capture_security.sql
# has the finer cases on a mirror declared by hand):
#   * a database made with 0.1 and updated: its pull-only mirror gets the
#     TRUNCATE guard, and the trigger functions are no longer executable by
#     PUBLIC;
#   * an ordinary writer of a mirrored table (no EXECUTE on sync.capture(),
#     no USAGE on schema sync) still has its writes captured and pushed;
#   * that writer, with hostile operators first on its search_path, gets
#     nothing run as the extension owner and does not become superuser.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('capture_hostile');
$node->init;
$node->start;
sub sq { return $node->safe_psql('old', $_[0]); }

my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "F$_", LastName => "L$_", Email => "c$_\@example.com" } } 1 .. 5 ]);
$emu->control('POST', '/__emulator/records/salesforce/Account',
	[ map { { Name => "Account $_" } } 1 .. 3 ]);

# a database made with 0.1: a two-way mirror and a pull-only one
$node->safe_psql('postgres', 'CREATE DATABASE old');
sq(q{CREATE EXTENSION sync VERSION '0.1'; CREATE SCHEMA crm;});
sq(qq{SELECT sync.create_connection('sf', 'salesforce', '{
  "login_url": "$url", "ca_file": "$ca",
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}')});
sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName','Email'])});
sq(q{SELECT sync.mirror('sf', 'Account', 'crm.account', fields => ARRAY['Name'], direction => 'pull')});

# (the library is the new one: it syncs only once the schema is updated)
sq('ALTER EXTENSION sync UPDATE');
sq(q{SELECT sync.pull('crm.contact'); SELECT sync.pull('crm.account')});
is(sq('SELECT count(*) FROM crm.account'), '3', 'pull-only mirror made under 0.1 backfilled');

# item 15: the pull-only mirror made by 0.1 is guarded after the update
is(sq(q{SELECT string_agg(tgname, ',') FROM pg_trigger WHERE tgrelid = 'crm.account'::regclass AND tgname LIKE 'sync_%'}),
	'sync_truncate_guard', 'the update gives the pull-only mirror the TRUNCATE guard (and no capture trigger)');
my ($rc, $out, $err) = $node->psql('old', 'TRUNCATE crm.account');
like($err, qr/cannot truncate mirrored table "account".*pull-only mirror/s,
	'TRUNCATE of the pull-only mirror is refused, saying why');
is(sq('SELECT count(*) FROM crm.account'), '3', 'its rows are kept');

# item 3: the trigger functions are not executable by PUBLIC after the update
sq(q{CREATE ROLE regress_writer LOGIN});
is(sq(q{SELECT string_agg(p.oid::regprocedure::text || '=' || has_function_privilege('regress_writer', p.oid, 'EXECUTE'), ',' ORDER BY 1)
          FROM pg_proc p WHERE p.pronamespace = 'sync'::regnamespace AND p.prorettype = 'trigger'::regtype}),
	'sync.capture()=false,sync.truncate_guard()=false', 'sync.capture() and sync.truncate_guard() not executable by PUBLIC');

# item 2: an ordinary writer with hostile operators first on its search_path
sq(q{
GRANT USAGE ON SCHEMA crm TO regress_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON crm.contact TO regress_writer;
CREATE SCHEMA evil AUTHORIZATION regress_writer;
SET ROLE regress_writer;
CREATE TABLE evil.marker (who name, what text);
GRANT INSERT ON evil.marker TO PUBLIC;
CREATE FUNCTION evil.spy(what text) RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF current_user <> 'regress_writer' THEN
        INSERT INTO evil.marker VALUES (current_user, what);
        BEGIN
            ALTER ROLE regress_writer SUPERUSER;
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO evil.marker VALUES (current_user, 'escalation refused: ' || SQLERRM);
        END;
    END IF;
END $$;
CREATE FUNCTION evil.int4eq(int4, int4) RETURNS bool LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM evil.spy('int4 = int4'); RETURN int4eq($1, $2); END $$;
CREATE OPERATOR evil.= (LEFTARG = int4, RIGHTARG = int4, FUNCTION = evil.int4eq);
CREATE FUNCTION evil.int84eq(int8, int4) RETURNS bool LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM evil.spy('int8 = int4'); RETURN int84eq($1, $2); END $$;
CREATE OPERATOR evil.= (LEFTARG = int8, RIGHTARG = int4, FUNCTION = evil.int84eq);
CREATE FUNCTION evil.texteq(text, text) RETURNS bool LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM evil.spy('text = text'); RETURN texteq($1, $2); END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq);
CREATE FUNCTION evil.namecat(name[], name[]) RETURNS name[] LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM evil.spy('name[] || name[]'); RETURN array_cat($1, $2); END $$;
CREATE OPERATOR evil.|| (LEFTARG = name[], RIGHTARG = name[], FUNCTION = evil.namecat);
});

my $rid2 = sq(q{SELECT remote_id FROM crm.contact WHERE last_name = 'L2'});
my $rid3 = sq(q{SELECT remote_id FROM crm.contact WHERE last_name = 'L3'});
# the writer's own session (a fresh backend), logged in as itself
$node->safe_psql('old', qq{
SET search_path = evil, pg_catalog;
INSERT INTO crm.contact (first_name, last_name, email) VALUES ('Eve', 'Writer', 'eve\@example.com');
UPDATE crm.contact SET first_name = 'Changed' WHERE remote_id = '$rid2';
DELETE FROM crm.contact WHERE remote_id = '$rid3';
}, extra_params => [ '-U', 'regress_writer' ]);

is(sq(q{SELECT count(*) FROM evil.marker}), '0', 'no hostile operator ran as anyone but the writer')
  or diag(sq(q{SELECT string_agg(who || ': ' || what, E'\n') FROM evil.marker}));
is(sq(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_writer'}), 'f', 'the writer did not become superuser');

# the writer's writes were captured by the triggers sync.mirror() made, and reach the remote
sq(q{SELECT sync._fold()});	# the captured writes into the outbox (src/capture.c)
is(sq(q{SELECT string_agg(op::text, '' ORDER BY op) FROM sync.outbox}), 'DIU', 'insert, update and delete captured');
like(sq(q{SELECT sync.push('crm.contact')}), qr/"sent": 3/, 'all three pushed');
is($emu->control('GET', "/__emulator/records/salesforce/Contact/$rid2")->{FirstName}, 'Changed',
	'the writer\'s update reached the remote');
my $all = $emu->control('GET', '/__emulator/records/salesforce/Contact');
ok(!(grep { $_->{Id} eq $rid3 } @$all), 'the writer\'s delete removed the remote record');
ok((grep { ($_->{LastName} // '') eq 'Writer' } @$all), 'the writer\'s insert was created remotely');

$node->stop;
done_testing();
