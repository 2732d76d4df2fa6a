# Issue 14, item 8: nothing a user or the remote does stalls the whole mirror.
# - A row lock held by a user session (SELECT ... FOR UPDATE, idle in
#   transaction): with sync.lock_timeout = 1000 ms the other rows of the page
#   arrive while it holds, the locked one is shown in sync.errors with
#   error_code 55P03, and it arrives by itself once the lock is released.
# - A 429 with Retry-After: 120 while sync.lease = 10s: the claim is released
#   (claimed_until NULL, next_attempt_at ~120 s ahead) and nothing sleeps out
#   the Retry-After with a claim held, in this push or in the next one.
# Function mode first, then both again through the background worker.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('stall');
$node->init;
$node->append_conf('postgresql.conf', qq{
sync.lock_timeout = 1000
sync.lease = '10s'
});
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
sub q_or_empty
{
	my ($sql) = @_;
	my ($rc, $out, $err) = $node->psql($db, $sql);
	diag("query failed: $sql\n$err") if $rc != 0;
	return $rc == 0 ? $out : '';
}

sq('CREATE EXTENSION sync; CREATE SCHEMA crm;');
SyncTest::sf_connect($node, $db, $emu, 'sf');
my @rid = (undef, @{ $emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "F$_", LastName => "Lk$_", Email => "lk$_\@example.com" } } 1 .. 5 ])->{ids} });
sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName','Email'],
        options => '{"filter": "LastName LIKE ''Lk%''"}')});
sq("SELECT sync.pull('crm.contact')");
is(sq('SELECT count(*) FROM crm.contact'), '5', 'setup: five contacts pulled');

# --- a user holds a row lock on one row of the page ---
my $bg = $node->background_psql($db);
$bg->query_safe('BEGIN');
$bg->query_safe("SELECT id FROM crm.contact WHERE last_name = 'Lk3' FOR UPDATE");
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$rid[$_]", { FirstName => "Remote$_" }) for 1 .. 5;
# statement_timeout only bounds the test on code that waits for the lock forever
my ($rc, $out, $err) = $node->psql($db, "SET statement_timeout = '20s'; SELECT sync.pull('crm.contact')");
is($rc, 0, 'row lock: the pull returns while a user holds a row lock') or diag($err);
is(sq("SELECT string_agg(first_name, ',' ORDER BY last_name) FROM crm.contact WHERE last_name <> 'Lk3'"),
	'Remote1,Remote2,Remote4,Remote5', 'row lock: the other rows of the page arrived in that pull');
is(sq("SELECT first_name FROM crm.contact WHERE last_name = 'Lk3'"), 'F3', 'row lock: the locked row was not changed');
my ($dir, $op, $code, $lk) = split /\|/, q_or_empty(
	"SELECT direction, operation, error_code, local_key FROM sync.errors WHERE remote_id = '$rid[3]'");
is($dir // '', 'in', 'row lock: the locked record is visible in sync.errors, direction in');
is($code // '', '55P03', '... error_code 55P03 (lock_not_available)');
is($op // '', 'update', '... operation update');
is($lk // '', sq("SELECT id FROM crm.contact WHERE last_name = 'Lk3'"), '... local_key is the locked row');
$bg->query_safe('COMMIT');
($rc, $out, $err) = $node->psql($db, "SET statement_timeout = '20s'; SELECT sync.pull('crm.contact')");
is(sq("SELECT first_name FROM crm.contact WHERE last_name = 'Lk3'"), 'Remote3',
	'row lock: after the lock is released the next pull brings it in, without sync.retry');
is(q_or_empty("SELECT count(*) FROM sync.errors WHERE remote_id = '$rid[3]'"), '0', '... and it left sync.errors');

# --- 429 with Retry-After: 120, longer than sync.lease = 10s ---
$emu->control('POST', '/__emulator/faults',
	{ api => 'salesforce', path => '/composite/sobjects$', method => 'PATCH', status => 429, retry_after => 120, count => 1 });
$emu->control('DELETE', '/__emulator/requests');
sq("UPDATE crm.contact SET first_name = 'Throttled' WHERE last_name = 'Lk1'");
# each statement must end before a 10 s lease would have expired: the first
# push got the 429, the second (same backend, same connection) must not
# sleep out the Retry-After holding its own claim either
($rc, $out, $err) = $node->psql($db, qq{SET statement_timeout = '9s';
	SELECT sync.push('crm.contact');
	UPDATE crm.contact SET first_name = 'Second' WHERE last_name = 'Lk2';
	SELECT sync.push('crm.contact');});
is($rc, 0, '429: both pushes returned before the lease would have expired (no sleeping out Retry-After)') or diag($err);
my @p429 = grep { $_->{method} eq 'PATCH' && $_->{status} eq '429' } @{ $emu->requests('salesforce') };
is(scalar(@p429), 1, '429: the emulator answered one PATCH with 429');
is(sq("SELECT count(*) FROM sync.outbox o JOIN crm.contact c ON c.id::text = o.local_key
        WHERE c.last_name = 'Lk1' AND o.state = 'pending' AND o.claimed_until IS NULL
          AND o.next_attempt_at > now() + interval '100 seconds'"), '1',
	'429: the entry is not claimed (claimed_until NULL) and waits ~Retry-After (next_attempt_at > now + 100 s)');
is(sq("SELECT count(*) FROM sync.outbox o JOIN crm.contact c ON c.id::text = o.local_key
        WHERE c.last_name = 'Lk2' AND o.claimed_until IS NULL"), '1',
	'429: the next write is queued, not held claimed by a sleeping push');
is(sq("SELECT count(*) FROM sync.outbox WHERE claimed_until IS NOT NULL"), '0', '429: no claim is left behind');

# --- the background worker: the same two situations ---
$bg->quit;
sq("DELETE FROM sync.outbox");    # leftovers of the function-mode part
$emu->control('DELETE', '/__emulator/faults');
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
});
$node->restart;
my @wid = (undef, @{ $emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "W$_", LastName => "Wk$_", Email => "wk$_\@example.com" } } 1 .. 4 ])->{ids} });
sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.wcontact', fields => ARRAY['FirstName','LastName','Email'],
        options => '{"filter": "LastName LIKE ''Wk%''", "pull_interval": "1 second"}')});
ok(SyncTest::poll_true($node, $db, 'SELECT count(*) = 4 FROM crm.wcontact', 30), 'worker: backfilled');
$bg = $node->background_psql($db);
$bg->query_safe('BEGIN');
$bg->query_safe("SELECT id FROM crm.wcontact WHERE last_name = 'Wk2' FOR UPDATE");
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$wid[$_]", { FirstName => "WRemote$_" }) for 1 .. 4;
my $ok = SyncTest::poll_true($node, $db,
	"SELECT count(*) = 3 FROM crm.wcontact WHERE first_name LIKE 'WRemote%' AND last_name <> 'Wk2'", 20);
ok($ok, 'worker: the other rows of the page arrive while a user holds a row lock');
my $wait = $ok ? 20 : 3;
ok(SyncTest::poll_true($node, $db,
	"SELECT count(*) = 1 FROM sync.errors WHERE remote_id = '$wid[2]' AND direction = 'in' AND error_code = '55P03'", $wait),
	'worker: the locked record is visible in sync.errors with 55P03');
$bg->query_safe('COMMIT');
$bg->quit;
ok(SyncTest::poll_true($node, $db, "SELECT first_name = 'WRemote2' FROM crm.wcontact WHERE last_name = 'Wk2'", 20),
	'worker: after the lock is released the record arrives, without sync.retry');
ok(SyncTest::poll_true($node, $db, "SELECT count(*) = 0 FROM sync.errors WHERE remote_id = '$wid[2]'", 20),
	'worker: ... and it left sync.errors');

# a 429 with Retry-After: 120 seen by the worker
$emu->control('POST', '/__emulator/faults',
	{ api => 'salesforce', path => '/composite/sobjects$', method => 'PATCH', status => 429, retry_after => 120, count => 1 });
$emu->control('DELETE', '/__emulator/requests');
sq("UPDATE crm.wcontact SET first_name = 'WThrottled' WHERE last_name = 'Wk1'");
ok(SyncTest::wait_until(sub { grep { $_->{status} eq '429' } @{ $emu->requests('salesforce') } }, 20),
	'worker: the emulator answered 429');
my $t429 = time;
ok(SyncTest::poll_true($node, $db, "SELECT count(*) = 1 FROM sync.outbox o JOIN crm.wcontact c ON c.id::text = o.local_key
      WHERE c.last_name = 'Wk1' AND o.claimed_until IS NULL AND o.next_attempt_at > now() + interval '100 seconds'", 10),
	'worker: the throttled entry is released and waits ~Retry-After');
sq("UPDATE crm.wcontact SET first_name = 'WSecond' WHERE last_name = 'Wk3'");
# once a 10 s lease would have run out, no claim may still be held past it
sleep 1 while time < $t429 + 13;
is(sq("SELECT count(*) FROM sync.outbox WHERE claimed_until IS NOT NULL AND claimed_until < now()"), '0',
	'worker: no claim outlives its lease while the connection is throttled');

$node->stop;
$emu->stop;
done_testing();
