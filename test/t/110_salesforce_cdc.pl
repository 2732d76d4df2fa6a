# Salesforce Change Data Capture through the worker (mirror option
# "realtime"): remote changes arrive over the CometD stream without a query,
# only the changed fields are applied, deletes, undeletes and multi-record
# events, our own writes are skipped, an entity not selected for CDC is a
# clear error while polling goes on, gap and overflow events fall back to a
# re-read and a pull, and the replay ID carries the stream across a worker
# kill -9 and a restart past the retention window.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use JSON::PP;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
$emu->control('POST', '/__emulator/config',
	{ salesforce_cdc_entities => ['Contact', 'Account'], salesforce_cometd_timeout_ms => 1500 });
my $node = PostgreSQL::Test::Cluster->new('cdc');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
sync.http_timeout = '5s'
sync.worker_log_level = 'debug1'
restart_after_crash = on
});
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
sub wait_for { my ($sql, $what, $t) = @_; ok(SyncTest::poll_true($node, $db, $sql, $t // 30), $what); }
sub sf_requests
{
	my ($re) = @_;
	return [ grep { $_->{path} =~ $re } @{ $emu->requests('salesforce') } ];
}
sub clients { return $emu->control('GET', '/__emulator/salesforce/cdc/clients'); }
sub events  { return $emu->control('GET', "/__emulator/salesforce/cdc/events?since=" . ($_[0] // 0)); }
sub patch   { $emu->control('PATCH', "/__emulator/records/salesforce/$_[0]/$_[1]", $_[2]); }
sub stored_replay { return sq("SELECT coalesce(cursor->>'cdc_replay', '-1') FROM sync.mirror_state WHERE mirror = $_[0]"); }
sub last_replay { my $e = events(); return @$e ? $e->[-1]{replayId} : 0; }

sq(q{CREATE EXTENSION sync});
SyncTest::sf_connect($node, $db, $emu);
sq(q{CREATE SCHEMA crm});
my $ids = $emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "F$_", LastName => "L$_", Email => "c$_\@example.com" } } 1 .. 5 ])->{ids};

# --- the option: validated; an entity not selected is refused, naming it ---
my ($rc, $out, $err) = $node->psql($db, q{SELECT sync.mirror('sf', 'Contact', 'crm.bad',
	fields => ARRAY['FirstName'], options => '{"realtime": "yes"}')});
like($err, qr/invalid value for mirror option "realtime"/, '"realtime" must be a boolean');
$emu->control('POST', '/__emulator/config', { salesforce_cdc_entities => ['Contact'] });
($rc, $out, $err) = $node->psql($db, q{SELECT sync.mirror('sf', 'Account', 'crm.account',
	fields => ARRAY['Name'], options => '{"realtime": true}')});
like($err, qr/Change Data Capture is not enabled for Account.*Selected Entities/s,
	'a realtime mirror of an entity not selected for CDC is refused, naming the object and what to enable');

sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.contact',
        fields => ARRAY['FirstName','LastName','Email'], options => '{"realtime": true}')});
wait_for("SELECT count(*) = 5 FROM crm.contact", 'backfill');
wait_for("SELECT phase = 'incremental' FROM sync.status", 'incremental');
ok(SyncTest::wait_until(sub { grep { %{ $_->{subscriptions} } } @{ clients() } }, 30),
	'the worker subscribed to /data/ContactChangeEvent');
# the pull that covers the time before the subscription, then the safety net's 10 minutes
wait_for("SELECT next_pull_at > now() + interval '5 minutes' FROM sync.mirror_state",
	'while the stream is healthy the next pull is 10 minutes away');

# --- a remote update arrives over the stream alone; only changed fields ---
# first_name is changed locally without capture (replica mode): a full
# record would overwrite it, the changed-field merge keeps it
sq("SET session_replication_role = replica; UPDATE crm.contact SET first_name = 'LOCAL' WHERE last_name = 'L1'");
$emu->control('DELETE', '/__emulator/requests');
patch('Contact', $ids->[0], { LastName => 'L1-remote' });
wait_for("SELECT count(*) = 1 FROM crm.contact WHERE last_name = 'L1-remote'", 'a remote update arrived');
is(sq("SELECT first_name FROM crm.contact WHERE last_name = 'L1-remote'"), 'LOCAL',
	'... and only its changed field was applied');
my @other = grep { $_->{path} !~ m{^/cometd/} } @{ $emu->requests('salesforce') };
is(scalar(@other), 0, '... with no API call at all: only the CometD long polls')
  or diag explain [ map { "$_->{method} $_->{path}" } @other ];

# --- create, delete, undelete ---
my $new = $emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ { FirstName => 'N', LastName => 'Created', Email => 'n@example.com' } ])->{ids}[0];
wait_for("SELECT count(*) = 1 FROM crm.contact WHERE last_name = 'Created' AND email = 'n\@example.com'",
	'a remote create arrived with all its fields');
$emu->control('DELETE', "/__emulator/records/salesforce/Contact/$ids->[1]");
wait_for("SELECT count(*) = 0 FROM crm.contact WHERE remote_id = '$ids->[1]'", 'a remote delete deleted the row');
$emu->control('POST', '/__emulator/salesforce/undelete', { ids => [ $ids->[1] ] });
wait_for("SELECT count(*) = 1 FROM crm.contact WHERE remote_id = '$ids->[1]' AND last_name = 'L2'",
	'an undelete brought the row back');
is(scalar(@{ sf_requests(qr{/query}) }), 0, '... all without a query');

# --- one event naming several records ---
my $r = $emu->{http}->post_form("$emu->{url}/services/oauth2/token",
	{ grant_type => 'client_credentials', client_id => 'sync-client', client_secret => 'sync-secret' });
my $token = JSON::PP::decode_json($r->{content})->{access_token};
my $before = last_replay();
$r = $emu->{http}->request('PATCH', "$emu->{url}/services/data/v59.0/composite/sobjects",
	{ headers => { Authorization => "Bearer $token", 'Content-Type' => 'application/json' },
	  content => JSON::PP::encode_json({ allOrNone => JSON::PP::false(), records => [
		map { { attributes => { type => 'Contact' }, id => $_, Email => 'same@example.com' } } @$ids[ 2 .. 4 ] ] }) });
is($r->{status}, 200, 'a remote client updated three contacts in one request');
my ($multi) = grep { @{ $_->{data}{payload}{ChangeEventHeader}{recordIds} } == 3 } @{ events($before) };
ok($multi, '... which Salesforce sends as one event naming the three records');
wait_for("SELECT count(*) = 3 FROM crm.contact WHERE email = 'same\@example.com'",
	'... and all three rows took the change');

# --- our own writes come back as events and are skipped ---
$before = last_replay();
sq("UPDATE crm.contact SET email = 'mine\@example.com' WHERE remote_id = '$ids->[4]'");
ok(SyncTest::wait_until(sub {
	grep { ($_->{data}{payload}{ChangeEventHeader}{changeOrigin} // '') =~ /;client=sync-[0-9a-f]+$/ } @{ events($before) } }, 30),
	'our push carried Sforce-Call-Options: its event names our client in changeOrigin');
my $own = last_replay();
wait_for("SELECT (cursor->>'cdc_replay')::bigint >= $own FROM sync.mirror_state", '... the stream went past it');
ok(SyncTest::wait_until(sub { slurp_file($node->logfile) =~ /\(1 of our own writes, skipped\)/ }, 10),
	'... and skipped it');
is(sq("SELECT count(*) FROM sync.outbox"), '0', '... nothing queued by it');

# --- local commits and remote changes at once: the pushes go out while
# the stream's connect stays in flight, and its events are applied between
# them; none is lost
my $busy = $emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "B$_", LastName => "Busy$_" } } 1 .. 20 ])->{ids};
wait_for("SELECT count(*) = 20 FROM crm.contact WHERE last_name LIKE 'Busy%'", 'twenty more contacts arrived');
$emu->control('DELETE', '/__emulator/requests');
# each push takes 300 ms: the remote change lands while the worker pushes
$emu->control('POST', '/__emulator/faults', { api => 'salesforce', path => '/composite/sobjects', latency_ms => 300 });
for my $i (1 .. 10)
{
	sq("UPDATE crm.contact SET email = 'push$i\@example.com' WHERE remote_id = '$ids->[4]'");
	usleep(50_000);
	patch('Contact', $busy->[ $i - 1 ], { FirstName => "Remote$i" });
	usleep(400_000);
}
$emu->control('DELETE', '/__emulator/faults');
wait_for("SELECT count(*) = 10 FROM crm.contact WHERE first_name LIKE 'Remote%'",
	'ten remote changes made while ten local commits were being pushed all arrived');
is(scalar(@{ sf_requests(qr{/query}) }), 0, '... over the stream, without a query');
wait_for("SELECT count(*) = 0 FROM sync.outbox", '... and the local commits were pushed');

# --- gap events: the records named are re-read; overflow: a pull ---
$emu->control('POST', '/__emulator/config', { salesforce_cdc_entities => [] });
patch('Contact', $ids->[2], { FirstName => 'Gapped' });
patch('Contact', $ids->[3], { FirstName => 'Overflowed' });
$emu->control('POST', '/__emulator/config', { salesforce_cdc_entities => ['Contact'] });
$emu->control('DELETE', '/__emulator/requests');
$emu->control('POST', '/__emulator/salesforce/cdc/gap', { object => 'Contact', ids => [ $ids->[2] ], kind => 'GAP_UPDATE' });
wait_for("SELECT first_name = 'Gapped' FROM crm.contact WHERE remote_id = '$ids->[2]'",
	'a change known only by a GAP_UPDATE event arrived (re-read by ID)');
is(sq("SELECT first_name FROM crm.contact WHERE remote_id = '$ids->[3]'"), 'F4',
	'... the gap named one record: the other is not read yet');
is(scalar(@{ sf_requests(qr{/query}) }), 0, '... without a query');
$emu->control('POST', '/__emulator/salesforce/cdc/gap', { object => 'Contact', kind => 'GAP_OVERFLOW' });
wait_for("SELECT first_name = 'Overflowed' FROM crm.contact WHERE remote_id = '$ids->[3]'",
	'GAP_OVERFLOW: an incremental pull brought the change');

# --- worker kill -9: the stream resumes from the stored replay ID ---
my $replay = last_replay();
wait_for("SELECT (cursor->>'cdc_replay')::bigint >= $replay FROM sync.mirror_state", 'stream caught up');
my $pid = sq("SELECT pid FROM sync.worker_status() WHERE datname = current_database()");
$emu->control('DELETE', '/__emulator/requests');
kill 'KILL', $pid;
patch('Contact', $ids->[0], { FirstName => 'AfterKill1' });
patch('Contact', $ids->[0], { Email => 'afterkill@example.com' });
wait_for("SELECT first_name = 'AfterKill1' AND email = 'afterkill\@example.com' FROM crm.contact WHERE remote_id = '$ids->[0]'",
	'changes made while the worker was down arrived after its restart', 60);
my @subs = SyncTest::subscribe_replays($emu, '/data/ContactChangeEvent');
ok(@subs && $subs[0] == $replay, "... the new client subscribed from the stored replay ID $replay, not -1")
  or diag explain \@subs;
is(scalar(@{ sf_requests(qr{/query}) }), 0, '... nothing was pulled: the stream replayed them');

# --- a replay ID older than the retention window: -1 and a pull ---
$node->stop;
patch('Contact', $ids->[1], { FirstName => 'WhileStopped' });
$emu->control('POST', '/__emulator/clock', { advance_s => 73 * 3600 });
$emu->control('DELETE', '/__emulator/requests');
$node->start;
wait_for("SELECT first_name = 'WhileStopped' FROM crm.contact WHERE remote_id = '$ids->[1]'",
	'after the retention window a pull brought what the stream no longer has', 60)
  or diag(sq("SELECT * FROM sync.mirror_state") . "\n" . sq("SELECT * FROM sync.worker_status()"));
ok(scalar(@{ sf_requests(qr{/queryAll}) }) >= 1, '... (an incremental pull)');
ok(SyncTest::wait_until(sub { slurp_file($node->logfile) =~ /no longer has change events after replay ID/ }, 10),
	'... and the log says why');

# --- idle: no API calls beyond the long polls ---
wait_for("SELECT next_pull_at > now() + interval '5 minutes' FROM sync.mirror_state", 'stream healthy again');
$emu->control('DELETE', '/__emulator/requests');
sleep 5;
my $all = $emu->requests('salesforce');
my @api = grep { $_->{path} !~ m{^/cometd/} } @$all;
is(scalar(@api), 0, 'idle for 5 s: no API call');
ok(scalar(@$all) >= 2, '... only long polls (' . scalar(@$all) . ')');

# --- a commit is pushed at once while a long poll is held (for 2 minutes) ---
$emu->control('POST', '/__emulator/config', { salesforce_cometd_timeout_ms => 120000 });
sleep 2;    # the connect held now began after the change
ok(SyncTest::wait_until(sub { grep { $_->{polling} } @{ clients() } }, 30), 'a long poll is held');
sq("UPDATE crm.contact SET email = 'during-poll\@example.com' WHERE remote_id = '$ids->[4]'");
ok(SyncTest::wait_until(sub {
	($emu->control('GET', "/__emulator/records/salesforce/Contact/$ids->[4]")->{Email} // '') eq 'during-poll@example.com' }, 30),
	'... a local commit meanwhile reached Salesforce without waiting for it');
patch('Contact', $ids->[2], { LastName => 'AfterPush' });
wait_for("SELECT last_name = 'AfterPush' FROM crm.contact WHERE remote_id = '$ids->[2]'",
	'... and the stream goes on after the push');
$emu->control('POST', '/__emulator/config', { salesforce_cometd_timeout_ms => 1500 });

# --- an entity no longer selected: a clear error, and polling goes on ---
$emu->control('POST', '/__emulator/config', { salesforce_cdc_entities => [] });
$emu->control('POST', '/__emulator/salesforce/cdc/expire_clients');
ok(SyncTest::wait_until(sub { slurp_file($node->logfile) =~ /Change Data Capture is not enabled for Contact/ }, 30),
	'an entity removed from Change Data Capture: the log names it');
patch('Contact', $ids->[0], { FirstName => 'Polled' });
wait_for("SELECT first_name = 'Polled' FROM crm.contact WHERE remote_id = '$ids->[0]'",
	'... and remote changes still arrive by polling', 60);

$node->stop;
done_testing();
