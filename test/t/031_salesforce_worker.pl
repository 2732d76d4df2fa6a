# Salesforce through the background worker: backfill with progress, batching,
# parents before children, rejections, faults, token expiry, conflicts, and
# exactly-once creates across kill -9 — all against the emulator over HTTPS.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('sfw');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
sync.lease = '10s'
sync.http_timeout = '3s'
restart_after_crash = on
});
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
sub wait_for { my ($sql, $what) = @_; ok($node->poll_query_until($db, $sql), $what); }
sub sf_records { return $emu->control('GET', "/__emulator/records/salesforce/$_[0]"); }
sub sf_requests
{
	my ($method, $re) = @_;
	return [ grep { $_->{method} eq $method && $_->{path} =~ $re } @{ $emu->requests('salesforce') } ];
}

my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
sq(qq{CREATE EXTENSION sync; CREATE SCHEMA crm;
  SELECT sync.create_connection('sf', 'salesforce', '{
    "login_url": "$url", "ca_file": "$ca", "max_in_flight": 4,
    "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}')});

# --- backfill of 10,000 contacts across pages, progress in sync.status ---
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "F$_", LastName => "L$_", Email => "c$_\@example.com" } } 1 .. 10000 ]);
$emu->control('DELETE', '/__emulator/requests');
sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.contact',
        fields => ARRAY['FirstName','LastName','Email','AccountId','Sync_Key__c'],
        options => '{"idempotency_field": "Sync_Key__c", "pull_interval": "1 second"}')});
wait_for("SELECT count(*) = 10000 FROM crm.contact", 'the worker backfilled 10,000 contacts');
wait_for("SELECT phase = 'incremental' FROM sync.status", 'backfill done');
my $pages = sf_requests('GET', qr{/query(/|$)});
ok(scalar(@$pages) >= 5, scalar(@$pages) . ' query pages for 10,000 records (2,000 a page)');
is(sq("SELECT backfill_done FROM sync.mirror_state"), '10000', 'sync.status progress counted every record');
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'the backfill queued nothing');

# --- local commits -> remote: each arrives, exactly once, in commit order ---
# (how fast: bench/commit_latency.sh prints the p50/p99 commit-to-remote
# latency; a test under load cannot hold a wall-clock bound)
$emu->control('DELETE', '/__emulator/requests');
my @missing;
for my $i (1 .. 10)
{
	sq("UPDATE crm.contact SET first_name = 'W$i' WHERE last_name = 'L$i'");
	SyncTest::wait_until(sub {
		grep { ($_->{FirstName} // '') eq "W$i" }
		  map { @{ $_->{body}{records} // [] } } @{ sf_requests('PATCH', qr{/composite/sobjects$}) }
	}, 60) or push @missing, "W$i";
}
is("@missing", '', 'each of ten local commits reached the remote');
my @sent = grep { /^W\d+$/ }
  map { $_->{FirstName} // '' }
  map { @{ $_->{body}{records} // [] } } @{ sf_requests('PATCH', qr{/composite/sobjects$}) };
is("@sent", join(' ', map { "W$_" } 1 .. 10), '... each exactly once, in commit order');
my %remote_first = map { ($_->{LastName} // '') => ($_->{FirstName} // '') } @{ sf_records('Contact') };
is(join(' ', map { $remote_first{"L$_"} } 1 .. 10), join(' ', map { "W$_" } 1 .. 10),
	'... and the remote records hold the committed values');

# --- 1,000 updates go in 5 requests of 200 ---
$node->safe_psql($db, "SELECT 1");
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'outbox drained');
$emu->control('DELETE', '/__emulator/requests');
sq("UPDATE crm.contact SET email = 'bulk' || id || '\@example.com' WHERE id <= 1000");
wait_for("SELECT count(*) = 0 FROM sync.outbox", '1,000 updates pushed');
my $patches = sf_requests('PATCH', qr{/composite/sobjects$});
is(scalar(@$patches), 5, '... in 5 requests');
is_deeply([ map { scalar @{ $_->{body}{records} } } @$patches ], [ 200, 200, 200, 200, 200 ], '... of 200 records each');
is_deeply([ sort keys %{ { map { %{ $_ } } map { @{ $_->{body}{records} } } @$patches } } ],
	[ 'Email', 'attributes', 'id' ], '... carrying only Email');
# an update that changes nothing sends nothing
$emu->control('DELETE', '/__emulator/requests');
sq("UPDATE crm.contact SET email = email WHERE id <= 100");
sleep 2;
is(scalar(grep { $_->{method} ne 'GET' && $_->{path} !~ /oauth2/ } @{ $emu->requests('salesforce') }), 0,
	'an UPDATE that changes nothing sends no write');

# --- an account and its contact inserted in one transaction arrive linked ---
sq(q{SELECT sync.mirror('sf', 'Account', 'crm.account', fields => ARRAY['Name','Industry'],
        options => '{"pull_interval": "1 second"}')});
wait_for("SELECT phase = 'incremental' FROM sync.status WHERE local_table = 'crm.account'::regclass", 'accounts mirrored');
sq(q{BEGIN;
     INSERT INTO crm.account (name, industry) VALUES ('Acme', 'Technology');
     INSERT INTO crm.contact (first_name, last_name, account_id)
        SELECT 'Road', 'Runner', '@' || id FROM crm.account WHERE name = 'Acme';
     COMMIT;});
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'account and contact pushed');
my $acc = sq("SELECT remote_id FROM crm.account WHERE name = 'Acme'");
like($acc, qr/^001/, 'the account got its Salesforce ID');
my ($remote_contact) = grep { ($_->{LastName} // '') eq 'Runner' } @{ sf_records('Contact') };
is($remote_contact->{AccountId}, $acc, 'the contact arrived linked to the new account');
is(sq("SELECT account_id FROM crm.contact WHERE last_name = 'Runner'"), $acc, 'the local reference now holds the remote ID');

# --- one record of a batch of 200 rejected, the rest go through ---
sq(q{INSERT INTO crm.contact (first_name, last_name, email)
     SELECT 'B' || g, CASE WHEN g = 77 THEN NULL ELSE 'Batch' || g END, 'b' || g || '@example.com'
       FROM generate_series(1, 200) g});
wait_for("SELECT count(*) = 1 FROM sync.outbox", 'the batch was pushed');
is(sq("SELECT count(*) FROM crm.contact WHERE last_name LIKE 'Batch%' AND remote_id IS NOT NULL"), '199',
	'199 records succeeded');
like(sq("SELECT error_code || ' ' || error_message FROM sync.errors"), qr/REQUIRED_FIELD_MISSING/, 'the bad one is parked with Salesforce\'s message');
sq("UPDATE crm.contact SET last_name = 'Batch77' WHERE first_name = 'B77'; SELECT sync.retry('crm.contact');");
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'after the fix and retry it went through');

# --- faults: 429 with Retry-After, 500/503, timeouts, dropped connections ---
$emu->control('POST', '/__emulator/faults', [
	{ api => 'salesforce', path => '/composite/sobjects$', method => 'PATCH', status => 429, retry_after => 1, count => 1 },
	{ api => 'salesforce', path => '/composite/sobjects$', method => 'PATCH', status => 503, count => 1 },
	{ api => 'salesforce', path => '/composite/sobjects$', method => 'PATCH', status => 500, count => 1 },
	{ api => 'salesforce', path => '/composite/sobjects$', method => 'PATCH', kind => 'timeout', count => 1 },
	{ api => 'salesforce', path => '/composite/sobjects$', method => 'PATCH', kind => 'reset', count => 1 },
	{ api => 'salesforce', path => '/query', kind => 'reset', count => 1 },
]);
$emu->control('DELETE', '/__emulator/requests');
sq("UPDATE crm.contact SET first_name = 'Fault' || id WHERE id BETWEEN 2001 AND 2600");
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'through 429, 503, 500, a timeout and a reset, every update arrived');
my %remote = map { $_->{Id} => $_->{FirstName} } @{ sf_records('Contact') };
is(sq("SELECT count(*) FROM crm.contact WHERE id BETWEEN 2001 AND 2600 AND first_name = 'Fault' || id"), '600', 'local rows intact');
is(scalar(grep { ($_ // '') =~ /^Fault\d+$/ } values %remote), 600, 'all 600 values reached Salesforce');
my $statuses = join ',', map { $_->{status} } @{ sf_requests('PATCH', qr{/composite/sobjects$}) };
like($statuses, qr/429.*503|503.*429/, "the worker saw the faults ($statuses) and backed off");
is(sq("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'sync worker'"), '1', 'the worker kept running');
$emu->control('DELETE', '/__emulator/faults');

# --- the access token expires mid-run ---
# (the request log is cleared first: a pull between the two may already
# meet the expired token and authenticate again)
$emu->control('DELETE', '/__emulator/requests');
$emu->control('POST', '/__emulator/clock', { advance_s => 3 * 3600 });
sq("UPDATE crm.contact SET first_name = 'AfterExpiry' WHERE id = 5");
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'pushed after the token expired');
my @auth = grep { $_->{path} =~ m{/oauth2/token} } @{ $emu->requests('salesforce') };
ok(@auth >= 1, 're-authenticated transparently (' . scalar(@auth) . ' token request)');
my $rid5 = sq("SELECT remote_id FROM crm.contact WHERE id = 5");	# (once, not per remote record)
is((grep { $_->{Id} eq $rid5 } @{ sf_records('Contact') })[0]{FirstName}, 'AfterExpiry', 'and the write landed');

# --- remote edits and deletes arrive through incremental pulls ---
my $rid10 = sq("SELECT remote_id FROM crm.contact WHERE id = 10");
my $rid11 = sq("SELECT remote_id FROM crm.contact WHERE id = 11");
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$rid10", { Email => 'remote-edit@example.com' });
$emu->control('DELETE', "/__emulator/records/salesforce/Contact/$rid11");
wait_for("SELECT email = 'remote-edit\@example.com' FROM crm.contact WHERE id = 10", 'a remote edit arrived');
wait_for("SELECT count(*) = 0 FROM crm.contact WHERE id = 11", 'a remote delete arrived');
ok(sq("SELECT since_last_pull < interval '10 seconds' FROM sync.status WHERE local_table = 'crm.contact'::regclass") eq 't',
	'sync.status shows the pull lag');

# --- conflicts: the same record edited on both sides, field by field, no loop ---
my $rid = sq("SELECT remote_id FROM crm.contact WHERE id = 20");
# pulls paused: the remote edit is not seen before the local one is made
sq("UPDATE sync.mirror_state SET phase = 'paused' WHERE mirror = (SELECT id FROM sync.mirror WHERE local_table = 'crm.contact'::regclass)");
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$rid", { FirstName => 'RemoteFirst', LastName => 'RemoteLast' });
sq("UPDATE crm.contact SET first_name = 'LocalFirst' WHERE id = 20");
sq("UPDATE sync.mirror_state SET phase = 'incremental', next_pull_at = now() WHERE phase = 'paused'; SELECT sync.wake();");
wait_for("SELECT first_name = 'LocalFirst' AND last_name = 'RemoteLast' FROM crm.contact WHERE id = 20",
	'local_wins: the locally edited field kept its value, the other took the remote one');
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'the local change was pushed');
my ($rc_rec) = grep { $_->{Id} eq $rid } @{ sf_records('Contact') };
is("$rc_rec->{FirstName} $rc_rec->{LastName}", 'LocalFirst RemoteLast', 'both sides agree, field by field');
sleep 3;
$emu->control('DELETE', '/__emulator/requests');
sleep 3;
my @writes = grep { $_->{method} ne 'GET' } @{ $emu->requests('salesforce') };
is(scalar(@writes), 0, 'after quiescence, no further writes (no ping-pong)');

# --- query cancel of the worker mid-request: the request ends, the worker goes on ---
# The remote holds the request 20 s and sync.http_timeout is raised above
# that, so only the cancel can end it before the remote answers.  (How long
# the cancel takes: bench/commit_latency.sh.)
sq("ALTER SYSTEM SET sync.http_timeout = '60s'; SELECT pg_reload_conf()");
$emu->control('POST', '/__emulator/faults', { api => 'salesforce', path => '/composite/sobjects', latency_ms => 20000 });
my $cpid = sq("SELECT pid FROM pg_stat_activity WHERE backend_type = 'sync worker'");
sq("UPDATE crm.contact SET first_name = 'Cancelled' WHERE last_name = 'L5'");
my $hanging = sub {
	(grep { grep { ($_->{FirstName} // '') eq 'Cancelled' } @{ $_->{body}{records} // [] } }
	  @{ sf_requests('PATCH', qr{/composite/sobjects$}) })[0];
};
ok(SyncTest::wait_until(sub { $hanging->() }, 60), 'the write is in flight, held by the remote');
my $log_at = -s $node->logfile;
sq("SELECT pg_cancel_backend($cpid)");
$node->wait_for_log(qr/sync: mirror \d+: canceling statement due to user request/, $log_at);
ok(1, 'pg_cancel_backend ends the hanging request; the worker logs it for the mirror');
ok(!defined $hanging->()->{status}, '... before the remote answered it (not by an answer nor a timeout)');
sq("ALTER SYSTEM RESET sync.http_timeout; SELECT pg_reload_conf()");
is(sq("SELECT pid FROM pg_stat_activity WHERE backend_type = 'sync worker'"), $cpid, 'the worker itself keeps running');
$emu->control('DELETE', '/__emulator/faults');
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'the cancelled write is sent again and arrives');

# --- kill -9 in the middle of pushing 5,000 inserts: each arrives exactly once ---
$emu->control('POST', '/__emulator/faults', { api => 'salesforce', path => '/composite/sobjects', latency_ms => 300 });
my $before = scalar @{ sf_records('Contact') };
sq("INSERT INTO crm.contact (first_name, last_name) SELECT 'K' || g, 'Kill' || g FROM generate_series(1, 5000) g");
SyncTest::wait_until(sub { @{ sf_requests('PATCH', qr{/composite/sobjects/Contact/Sync_Key__c}) } >= 3 }, 30);
my $wpid = sq("SELECT pid FROM pg_stat_activity WHERE backend_type = 'sync worker'");
kill 'KILL', $wpid;
ok(1, 'killed the worker with kill -9 mid-push');
SyncTest::poll_true($node, $db, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'sync worker'", 120);
# and an immediate server restart on top
SyncTest::wait_until(sub { @{ sf_requests('PATCH', qr{/composite/sobjects/Contact/Sync_Key__c}) } >= 8 }, 30);
$node->stop('immediate');
$node->start;
$emu->control('DELETE', '/__emulator/faults');
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'all 5,000 inserts eventually pushed')
  or diag(sq("SELECT op, state, attempts, error_code, error_message, count(*) FROM sync.outbox GROUP BY 1,2,3,4,5"));
my @kill = grep { ($_->{LastName} // '') =~ /^Kill\d+$/ } @{ sf_records('Contact') };
is(scalar(@kill), 5000, 'Salesforce has 5,000 of them');
my %distinct = map { $_->{LastName} => 1 } @kill;
is(scalar(keys %distinct), 5000, '... each exactly once');
is(sq("SELECT count(*) || ' ' || count(remote_id) || ' ' || count(DISTINCT remote_id) FROM crm.contact WHERE last_name LIKE 'Kill%'"),
	'5000 5000 5000', 'locally too: 5,000 rows, no echo copies, each with its own remote ID');

$node->stop;
$emu->stop;
done_testing();
