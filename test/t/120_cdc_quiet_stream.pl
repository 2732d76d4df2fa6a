# A realtime mirror whose stream carries no event (so it has no replay ID)
# beside a mirror that polls every second, and then a burst of local
# commits (issue #13).  The stream's long poll stays open through the
# other mirror's pulls and the pushes: no new client (handshake and
# subscription) and no gap for a pull to cover, however often the worker
# has other work; a remote change arrives by the stream at once, even in
# the middle of a burst of commits.  (The worker used to end the long poll
# for other work: a new client every 2 s beside the polling mirror, a pull
# to cover each gap, and a new client per commit.)  Then what keeping the
# poll open costs: a paused mirror gives its connect up, and a round of
# other work longer than Salesforce's 40 s reconnect deadline expires the
# client, which is replaced from the stored replay ID, nothing lost.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $INTERVAL_S = 10;    # the realtime mirror's pull_interval
my $WINDOW_S = $INTERVAL_S + 4;    # longer than its interval

my $emu = SyncTest::start_emulator(tls => 1);
$emu->control('POST', '/__emulator/config',
	{ salesforce_cdc_entities => ['Contact'], salesforce_cometd_timeout_ms => 20000 });
my $node = PostgreSQL::Test::Cluster->new('quiet');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
sync.http_timeout = '10s'
sync.worker_log_level = 'debug1'
});
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
sub wait_for { my ($sql, $what, $t) = @_; ok(SyncTest::poll_true($node, $db, $sql, $t // 30), $what); }
sub handshakes { return scalar SyncTest::bayeux_requests($emu, '/meta/handshake'); }
sub connects { return scalar SyncTest::bayeux_requests($emu, '/meta/connect'); }
# the contact mirror's queries (its pulls), from the emulator's log
sub contact_queries { return scalar grep { $_->{path} =~ m{/query} } SyncTest::request_mentions($emu, 'salesforce', 'FROM Contact'); }

my $ids = $emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "F$_", LastName => "L$_" } } 1 .. 3 ])->{ids};
$emu->control('POST', '/__emulator/records/salesforce/Account', [ { Name => 'A1' } ]);
sq(q{CREATE EXTENSION sync; CREATE SCHEMA crm});
SyncTest::sf_connect($node, $db, $emu);
sq(qq{SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName', 'LastName'],
        options => '{"realtime": true, "pull_interval": "$INTERVAL_S seconds"}')});
my $mid = sq(q{SELECT id FROM sync.mirror WHERE local_table = 'crm.contact'::regclass});
wait_for(qq{SELECT s.next_pull_at > now() + interval '5 minutes' FROM sync.mirror_state s WHERE s.mirror = $mid},
	'the realtime mirror backfilled and its stream is healthy');
# the polling mirror, every second: the worker's pulls, beside the stream
sq(q{SELECT sync.mirror('sf', 'Account', 'crm.account', fields => ARRAY['Name'], options => '{"pull_interval": "1 second"}')});
wait_for(q{SELECT count(*) = 1 FROM crm.account}, 'the polling mirror backfilled');
sleep 2;

# --- pulls every second beside the stream: its long poll stays open ---
$emu->control('DELETE', '/__emulator/requests');
sleep $WINDOW_S;
my $hs = handshakes();
my $pulls = contact_queries();
my $accounts = scalar grep { $_->{path} =~ m{/query} } SyncTest::request_mentions($emu, 'salesforce', 'FROM Account');
my $conn = connects();
ok($accounts >= $WINDOW_S / 2, "the polling mirror pulled beside the stream ($accounts queries in $WINDOW_S s)");
is(sq(qq{SELECT count(*) FROM sync.mirror_state WHERE mirror = $mid AND cursor ? 'cdc_replay'}), 0,
	'the stream has carried no event: no replay ID');
is($hs, 0, "the stream kept its client through the pulls: no new client in $WINDOW_S s");
# the emulator holds a connect for 20 s here: one answered in the window at most
ok($conn <= 2, "... and its long poll stayed open through them ($conn connects in $WINDOW_S s)");
# no gap to cover: the mirror's pull waits for the safety net (10 minutes)
is($pulls, 0, '... so no pull had a gap to cover');

# --- a remote change while the pulls go on: by the stream, at once ---
$emu->control('DELETE', '/__emulator/requests');
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$ids->[0]", { FirstName => 'BesidePulls' });
my $t0 = time;
wait_for(q{SELECT first_name = 'BesidePulls' FROM crm.contact WHERE last_name = 'L1'},
	'a remote change arrived while the other mirror pulled', 3 * $INTERVAL_S);
my $lag = time - $t0;
ok($lag < 3, sprintf('... within 3 s (%.2f s)', $lag));
ok(SyncTest::poll_true($node, $db, qq{SELECT count(*) = 1 FROM sync.mirror_state WHERE mirror = $mid AND cursor ? 'cdc_replay'}, 10),
	'... by the stream (its replay ID is stored)');
is(contact_queries(), 0, '... with no pull');
is(sq(qq{SELECT count(*) FROM sync.mirror_state WHERE mirror = $mid AND last_error IS NOT NULL}), 0,
	'... and the stream recorded no error');

# --- commits in quick succession, each woken to push at once: the stream
# keeps its client, and a remote change in the middle of the burst
# arrives during it ---
my $aid = sq(q{SELECT remote_id FROM crm.account LIMIT 1});
$emu->control('DELETE', '/__emulator/requests');
my $n = 0;
my ($t_change, $t_arrived);
my $t1 = time;
while (time - $t1 < 6)
{
	sq("UPDATE crm.account SET name = 'A-$n'");
	$n++;
	if ($n == 20)
	{
		$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$ids->[1]", { FirstName => 'InTheBurst' });
		$t_change = time;
	}
	$t_arrived //= time
	  if defined $t_change && sq(q{SELECT first_name FROM crm.contact WHERE last_name = 'L2'}) eq 'InTheBurst';
	usleep(100_000);
}
wait_for(q{SELECT count(*) = 0 FROM sync.outbox}, "the $n commits were pushed");
my $hs2 = handshakes();
is($hs2, 0, "$n commits in 6 s cost the stream no new client");
is(scalar(grep { ($_->{Name} // '') eq 'A-' . ($n - 1) } @{ $emu->control('GET', '/__emulator/records/salesforce/Account') }), 1,
	'... the last commit reached the remote');
ok(defined $t_arrived, 'a remote change made during the burst arrived during it');
note sprintf('... after %.2f s', $t_arrived - $t_change) if defined $t_arrived;
is(contact_queries(), 0, '... by the stream, with no pull');

# --- a paused mirror: its connect in flight is given up, and nothing of
# the stream is applied; resumed, a new client subscribes from the stored
# replay ID (sync.resume also pulls at once) ---
sq(q{SELECT sync.pause('crm.contact')});
$emu->control('DELETE', '/__emulator/requests');
sleep 2;
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$ids->[2]", { FirstName => 'WhilePaused' });
sleep 2;
is(sq(q{SELECT first_name FROM crm.contact WHERE last_name = 'L3'}), 'F3', 'paused: the change is not applied');
my $replay = sq(qq{SELECT cursor->>'cdc_replay' FROM sync.mirror_state WHERE mirror = $mid});
sq(q{SELECT sync.resume('crm.contact')});
wait_for(q{SELECT first_name = 'WhilePaused' FROM crm.contact WHERE last_name = 'L3'},
	'resumed: the change made while paused arrived');
ok(SyncTest::wait_until(sub { SyncTest::bayeux_requests($emu, '/meta/subscribe') }, 10), '... and the stream subscribed again');
my @subs = SyncTest::subscribe_replays($emu, '/data/ContactChangeEvent');
is_deeply(\@subs, [$replay], "... once, a new client from the stored replay ID $replay");

# --- a round of other work longer than Salesforce's 40 s reconnect
# deadline (here a pull held 4 s while the remote's clock jumps 41 s): an
# event answered during it is applied after it, the client has expired by
# the next connect (403::Unknown client), and a new one subscribes from the
# stored replay ID, which brings the event made while no client listened ---
wait_for(qq{SELECT (cursor->>'cdc_replay')::bigint > $replay FROM sync.mirror_state WHERE mirror = $mid},
	'the resumed stream is at its newest event');
my $r1 = sq(qq{SELECT cursor->>'cdc_replay' FROM sync.mirror_state WHERE mirror = $mid});
$emu->control('DELETE', '/__emulator/requests');
$emu->control('POST', '/__emulator/faults', { api => 'salesforce', path => '/query', method => 'GET', latency_ms => 4000, count => 1 });
ok(SyncTest::wait_until(sub { grep { !$_->{done} && $_->{path} =~ m{/query} } @{ $emu->requests('salesforce') } }, 10),
	'a pull of the polling mirror is held');
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$ids->[0]", { LastName => 'L1', FirstName => 'DuringLongRound' });
usleep(300_000);
$emu->control('POST', '/__emulator/clock', { advance_s => 41 });
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$ids->[1]", { FirstName => 'NoClientListening' });
wait_for(q{SELECT count(*) = 2 FROM crm.contact WHERE first_name IN ('DuringLongRound', 'NoClientListening')},
	'both changes arrived', 30);
is(handshakes(), 1, '... the expired client was replaced once');
my @subs2 = SyncTest::subscribe_replays($emu, '/data/ContactChangeEvent');
ok(@subs2 == 1 && $subs2[0] > $r1,
	"... subscribing from the replay ID stored with the event answered during the long round ($subs2[0] > $r1)");
is(contact_queries(), 0, '... and no pull was needed: the new client replayed from the stored replay ID');
is(sq(qq{SELECT count(*) FROM sync.mirror_state WHERE mirror = $mid AND last_error IS NOT NULL}), 0,
	'... and the stream recorded no error');

done_testing();
