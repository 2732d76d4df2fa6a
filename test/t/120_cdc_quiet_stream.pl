# A realtime mirror whose stream has not yet carried an event (so it has no
# replay ID) beside a mirror that polls every second (issue #13): the
# polls cut the stream's long poll every 2 s, and each new client can only
# start at new events (replay ID -1).  The moment between two clients is
# covered by a pull when the mirror would poll (its pull_interval), not by
# a pull (an API call) per cut; and a change made in that moment — held
# open here by a slow handshake — still arrives, by that pull.
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
my $WINDOW_S = $INTERVAL_S + 4;    # the gap pull is due by its interval + 2 s

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
# the polling mirror, every second: its pulls cut the stream's long polls
sq(q{SELECT sync.mirror('sf', 'Account', 'crm.account', fields => ARRAY['Name'], options => '{"pull_interval": "1 second"}')});
wait_for(q{SELECT count(*) = 1 FROM crm.account}, 'the polling mirror backfilled');
sleep 2;

# --- cut every 2 s, the quiet stream pulls at its interval, not per cut ---
$emu->control('DELETE', '/__emulator/requests');
sleep $WINDOW_S;
my $hs = handshakes();
my $pulls = contact_queries();
is(sq(qq{SELECT count(*) FROM sync.mirror_state WHERE mirror = $mid AND cursor ? 'cdc_replay'}), 0,
	'the stream has carried no event: no replay ID');
ok($hs >= 2, "the polls cut its long poll ($hs new clients in $WINDOW_S s)");
# at its interval: once or twice in the window (not pushed out to the
# safety net's 10 minutes, nor once per cut)
ok($pulls >= 1 && $pulls <= 2, "... and its mirror pulled at its pull_interval to cover those gaps: $pulls pulls in $WINDOW_S s, not one per cut");

# --- a change in the gap: the next handshakes are held 3 s; the old client
# is disconnected only by that request, so an event now goes to it (into the
# socket the worker closed) and the new client starts after it ---
$emu->control('DELETE', '/__emulator/requests');
$emu->control('POST', '/__emulator/faults', { api => 'salesforce', path => '^/cometd/', method => 'POST', latency_ms => 3000, count => 6 });
ok(SyncTest::wait_until(sub { grep { !$_->{done} } SyncTest::bayeux_requests($emu, '/meta/handshake') }, 30),
	'a new client of the stream is on its way (held)');
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$ids->[0]", { FirstName => 'InTheGap' });
my $t0 = time;
wait_for(q{SELECT first_name = 'InTheGap' FROM crm.contact WHERE last_name = 'L1'},
	'the change made between two clients arrived', 3 * $INTERVAL_S);
note sprintf('arrived after %d s', time - $t0);
$emu->control('DELETE', '/__emulator/faults');
is(sq(qq{SELECT count(*) FROM sync.mirror_state WHERE mirror = $mid AND cursor ? 'cdc_replay'}), 0,
	'... by the pull (the stream carried no event)');
is(sq(qq{SELECT count(*) FROM sync.mirror_state WHERE mirror = $mid AND last_error IS NOT NULL}), 0,
	'... and the stream recorded no error');

# --- commits in quick succession: each would cut the poll and cost the
# stream a new client; after a cut less than a second into a poll of quiet
# streams (no events for 5 s) the next poll waits a second, and the commits
# meanwhile are pushed with no poll to cut.  The bound: a cut a second, and
# the polling mirror's cuts every 2 s ---
my $aid = sq(q{SELECT remote_id FROM crm.account LIMIT 1});
$emu->control('DELETE', '/__emulator/requests');
my $n = 0;
my $t1 = time;
while (time - $t1 < 6)
{
	sq("UPDATE crm.account SET name = 'A-$n'");
	$n++;
	usleep(100_000);
}
wait_for(q{SELECT count(*) = 0 FROM sync.outbox}, "the $n commits were pushed");
my $hs2 = handshakes();
ok($hs2 <= 6 + 4 + 3, "$n commits in 6 s cost the stream $hs2 new clients (a second's pause after a commit's cut; not one a commit)");
is(scalar(grep { ($_->{Name} // '') eq 'A-' . ($n - 1) } @{ $emu->control('GET', '/__emulator/records/salesforce/Account') }), 1,
	'... the last commit reached the remote');
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$ids->[1]", { FirstName => 'AfterCommits' });
wait_for(q{SELECT first_name = 'AfterCommits' FROM crm.contact WHERE last_name = 'L2'},
	'... and a remote change after them arrived', 3 * $INTERVAL_S);

done_testing();
