# Issue 14, item 1: sync never runs a table owner's code with more privilege
# than the owner has.
#
# What this proves: a mirrored table owned by an ordinary role (alice, LOGIN,
# not superuser) carries a BEFORE INSERT OR UPDATE trigger, written by alice,
# that logs current_user and current_setting('search_path') and tries
# `ALTER ROLE alice SUPERUSER`.  When sync writes into the table —
#   (a) sync.pull() applying remote inserts and edits,
#   (b) sync.push() writing the new remote IDs back into rows alice inserted,
#   both called by the superuser, and
#   (c) the background worker doing both —
# the trigger runs as alice (current_user = 'alice'), in a security-restricted
# operation with search_path 'pg_catalog, pg_temp', alice never becomes
# superuser, and the rows still sync both ways (remote changes arrive, local
# inserts get their remote IDs).
#
# On the original code the trigger runs as the superuser calling sync.pull()
# / sync.push() (or the worker's bootstrap superuser) with the caller's
# search_path, and the ALTER ROLE succeeds.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('trust_priv');
$node->init;
$node->append_conf('postgresql.conf', qq{
sync.poll_interval = '1s'
sync.lease = '10s'
});
# function mode first: no worker
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
# as alice, marking the trigger's log rows as local writes (not sync's)
sub as_alice { return $node->safe_psql($db, "SET ROLE alice; SET trusttest.local = 'on'; $_[0]"); }
sub sf_records { return $emu->control('GET', "/__emulator/records/salesforce/$_[0]"); }

my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
sq(qq{CREATE EXTENSION sync;
  CREATE ROLE alice LOGIN NOSUPERUSER;
  CREATE SCHEMA crm AUTHORIZATION alice;
  SELECT sync.create_connection('sf', 'salesforce', '{
    "login_url": "$url", "ca_file": "$ca",
    "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}')});

# remote records that exist before the mirror
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "F$_", LastName => "Remote$_", Email => "r$_\@example.com" } } 1 .. 3 ]);

# the superuser mirrors; alice owns the table
sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName','Email'],
        options => '{"pull_interval": "1 second"}');
     ALTER TABLE crm.contact OWNER TO alice;});

# alice's log table and trigger (her own function, SECURITY INVOKER)
as_alice(q{
CREATE TABLE crm.trust_log (seq serial, op text, usr text, search_path text, escalated boolean, is_local boolean);
CREATE FUNCTION crm.spy() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ok boolean := false;
BEGIN
    BEGIN
        EXECUTE 'ALTER ROLE alice SUPERUSER';
        ok := true;
    EXCEPTION WHEN others THEN
        ok := false;
    END;
    INSERT INTO crm.trust_log (op, usr, search_path, escalated, is_local)
        VALUES (TG_OP, current_user, current_setting('search_path'),
                ok, coalesce(current_setting('trusttest.local', true), '') = 'on');
    RETURN NEW;
END $$;
CREATE TRIGGER spy BEFORE INSERT OR UPDATE ON crm.contact FOR EACH ROW EXECUTE FUNCTION crm.spy();
});
is(sq("SELECT tableowner FROM pg_tables WHERE schemaname = 'crm' AND tablename = 'contact'"), 'alice',
	'the mirrored table is owned by alice');
is(sq("SELECT rolsuper FROM pg_roles WHERE rolname = 'alice'"), 'f', 'alice starts as an ordinary role');

# The facts the trigger logged for sync's own writes since the last reset,
# and whether alice became superuser; then alice is made ordinary again, so
# that each phase is judged on its own.
sub check_phase
{
	my ($phase) = @_;
	my $n = sq("SELECT count(*) FROM crm.trust_log WHERE NOT is_local");
	ok($n > 0, "$phase: alice's trigger fired for sync's writes ($n rows)");
	is(sq("SELECT coalesce(string_agg(DISTINCT usr, ','), '') FROM crm.trust_log WHERE NOT is_local"), 'alice',
		"$phase: the trigger ran as the table owner (current_user = alice)");
	is(sq("SELECT coalesce(string_agg(DISTINCT search_path, ' | '), '') FROM crm.trust_log WHERE NOT is_local"),
		'pg_catalog, pg_temp', "$phase: the trigger saw search_path pinned to 'pg_catalog, pg_temp'");
	is(sq("SELECT count(*) FROM crm.trust_log WHERE escalated"), '0',
		"$phase: ALTER ROLE alice SUPERUSER inside the trigger failed");
	is(sq("SELECT rolsuper FROM pg_roles WHERE rolname = 'alice'"), 'f', "$phase: alice is not superuser");
	sq("ALTER ROLE alice NOSUPERUSER; TRUNCATE crm.trust_log;");
}

# --- (a) sync.pull() as the superuser: the backfill inserts, a remote edit updates ---
sq("TRUNCATE crm.trust_log");
my $r = sq("SELECT sync.pull('crm.contact')");
like($r, qr/"applied": 3/, '(a) the backfill applied the 3 remote contacts');
my $rid1 = sq("SELECT remote_id FROM crm.contact WHERE last_name = 'Remote1'");
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$rid1", { FirstName => 'EditedRemotely' });
sq("SELECT sync.pull('crm.contact')");
is(sq("SELECT first_name FROM crm.contact WHERE remote_id = '$rid1'"), 'EditedRemotely',
	'(a) the remote edit arrived in alice\'s table');
check_phase('(a) sync.pull');

# --- (b) sync.push() as the superuser: alice inserts, the new IDs are written back ---
as_alice("INSERT INTO crm.contact (first_name, last_name, email) VALUES
          ('A1', 'LocalA1', 'a1\@example.com'), ('A2', 'LocalA2', 'a2\@example.com')");
sq("DELETE FROM crm.trust_log WHERE is_local");
$r = sq("SELECT sync.push('crm.contact')");
like($r, qr/"sent": 2/, '(b) both local inserts were pushed');
is(sq("SELECT count(*) FROM crm.contact WHERE last_name LIKE 'LocalA%' AND remote_id LIKE '003%'"), '2',
	'(b) both rows got their Salesforce IDs written back');
is(scalar(grep { ($_->{LastName} // '') =~ /^LocalA\d$/ } @{ sf_records('Contact') }), 2,
	'(b) Salesforce has both records');
check_phase('(b) sync.push write-back');

# --- (c) the background worker ---
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'sync'\n");
$node->restart;
ok($node->poll_query_until($db, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'sync worker'"),
	'(c) the worker runs');
sq("TRUNCATE crm.trust_log");
my $rid2 = sq("SELECT remote_id FROM crm.contact WHERE last_name = 'Remote2'");
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$rid2", { FirstName => 'WorkerEdit' });
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ { FirstName => 'F4', LastName => 'Remote4', Email => 'r4@example.com' } ]);
ok($node->poll_query_until($db, "SELECT first_name = 'WorkerEdit' FROM crm.contact WHERE remote_id = '$rid2'"),
	'(c) the worker applied a remote edit to alice\'s table');
ok($node->poll_query_until($db, "SELECT count(*) = 1 FROM crm.contact WHERE last_name = 'Remote4'"),
	'(c) the worker applied a new remote record to alice\'s table');
as_alice("INSERT INTO crm.contact (first_name, last_name, email) VALUES ('A3', 'LocalA3', 'a3\@example.com')");
ok($node->poll_query_until($db, "SELECT remote_id LIKE '003%' FROM crm.contact WHERE last_name = 'LocalA3'"),
	'(c) the worker pushed alice\'s insert and wrote its Salesforce ID back');
is(scalar(grep { ($_->{LastName} // '') eq 'LocalA3' } @{ sf_records('Contact') }), 1,
	'(c) Salesforce has the record once');
check_phase('(c) worker');

$node->stop;
$emu->stop;
done_testing();
