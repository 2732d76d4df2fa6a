# Many mirrors in one database (issue #13), through the worker: with 50
# Salesforce mirrors (custom objects; two of them realtime, one push-only)
# a commit to each mirror reaches the remote, and an idle worker's cost
# does not grow with the number of mirrors: over an idle window it runs a
# bounded number of rounds (no busy loop: a push-only mirror never pulls,
# so its next pull time must not count) and a bounded number of
# statements per round (no statement, nor SQL function call, per mirror
# or per stream).  Lowering sync.pull_interval by a reload brings forward
# the pulls scheduled with the old interval, and then due pulls end the
# realtime streams' long polls at most every 2 s.
# Counted with pg_stat_statements (track = all, which also counts the SQL
# functions a statement calls), never timed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $N = 50;           # mirrors
my @RT = (49, 50);    # realtime mirrors
my $PUSH = 48;        # a push-only mirror
my $POLL_MS = 500;    # sync.poll_interval
my $IDLE_S = 6;       # the idle window

my $node = PostgreSQL::Test::Cluster->new('many');
my $libdir = $node->config_data('--pkglibdir');
plan skip_all => 'pg_stat_statements is not installed' unless -e "$libdir/pg_stat_statements.so";

my $emu = SyncTest::start_emulator(tls => 1);
$emu->control('POST', '/__emulator/config',
	{ salesforce_cdc_entities => [ map { obj($_) } @RT ], salesforce_cometd_timeout_ms => 1500 });
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync, pg_stat_statements'
pg_stat_statements.track = all
sync.poll_interval = '${POLL_MS}ms'
sync.pull_interval = '1h'
sync.http_timeout = '5s'
});
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
sub wait_for { my ($sql, $what, $t) = @_; ok(SyncTest::poll_true($node, $db, $sql, $t // 60), $what); }
sub obj { return sprintf('Obj%02d__c', $_[0]); }
sub tbl { return sprintf('m.obj%02d', $_[0]); }

# the remote: one custom object per mirror, two records each
for my $i (1 .. $N)
{
	$emu->control('POST', '/__emulator/salesforce/objects/' . obj($i),
		{ keyPrefix => sprintf('z%02d', $i), label => "Obj $i",
		  fields => [ { name => 'Val__c', type => 'string', length => 80 } ] });
	$emu->control('POST', '/__emulator/records/salesforce/' . obj($i),
		[ { Name => "R$i-1", Val__c => 'a' }, { Name => "R$i-2", Val__c => 'b' } ]);
}

sq(q{CREATE EXTENSION sync; CREATE EXTENSION pg_stat_statements; CREATE SCHEMA m});
SyncTest::sf_connect($node, $db, $emu);
for my $i (1 .. $N)
{
	my $opt = (grep { $_ == $i } @RT) ? q{, options => '{"realtime": true}'} : '';
	my $dir = $i == $PUSH ? q{, direction => 'push'} : '';
	sq(sprintf(q{SELECT sync.mirror('sf', '%s', '%s', fields => ARRAY['Name','Val__c']%s%s)},
		obj($i), tbl($i), $dir, $opt));
}
my $val = sq(q{SELECT local_column FROM sync.field WHERE remote_name = 'Val__c' LIMIT 1});
my $name = sq(q{SELECT local_column FROM sync.field WHERE remote_name = 'Name' LIMIT 1});
wait_for(q{SELECT count(*) = } . ($N - 1) . q{ FROM sync.mirror_state s JOIN sync.mirror m ON m.id = s.mirror
           WHERE m.direction <> 'push' AND s.phase = 'incremental'}, "the $N mirrors' backfills are done");
is(sq('SELECT sum(n) FROM (' . join(' UNION ALL ', map { 'SELECT count(*) AS n FROM ' . tbl($_) } grep { $_ != $PUSH } 1 .. $N) . ') x'),
	2 * ($N - 1), 'every pulling mirror has its two rows');
ok(SyncTest::wait_until(sub { grep { %{ $_->{subscriptions} } } @{ $emu->control('GET', '/__emulator/salesforce/cdc/clients') } }, 30),
	'the realtime mirrors subscribed');
wait_for(q{SELECT bool_and(s.next_pull_at > now() + interval '5 minutes') FROM sync.mirror_state s
           JOIN sync.mirror m ON m.id = s.mirror WHERE m.options ? 'realtime'}, 'their streams are healthy');

# --- a commit to each mirror reaches the remote (the push-only one inserts) ---
for my $i (1 .. $N)
{
	if ($i == $PUSH)
	{
		sq(sprintf(q{INSERT INTO %s (%s, %s) VALUES ('New-%d', 'C%d')}, tbl($i), $name, $val, $i, $i));
	}
	else
	{
		sq(sprintf(q{UPDATE %s SET %s = 'C%d' WHERE %s = 'R%d-1'}, tbl($i), $val, $i, $name, $i));
	}
}
my @missing;
ok(SyncTest::wait_until(sub {
	@missing = grep {
		my $i = $_;
		!grep { ($_->{Val__c} // '') eq "C$i" } @{ $emu->control('GET', '/__emulator/records/salesforce/' . obj($i)) };
	} 1 .. $N;
	return !@missing;
}, 60), "a commit to each of the $N mirrors reached the remote") or diag "missing: @missing";
wait_for('SELECT count(*) = 0 FROM sync.outbox', 'the outbox is empty');

# --- idle: rounds and statements over a window ---
# the worker's own statements (this script's mention these names)
my $worker_statements = q{SELECT coalesce(sum(calls), 0) FROM pg_stat_statements
  WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%worker_status%'};
sleep 2;
# the reset and the first count in one statement, the last count and the
# statements in another: a psql start between them (100 ms and more on a
# loaded machine, a round's interval) let rounds run whose statements were
# counted and the rounds not
my $c0 = sq(q{SELECT w.cycles FROM pg_stat_statements_reset() r, sync.worker_status() w
  WHERE w.datname = current_database()});
sleep $IDLE_S;
my ($c1, $stmts) = split /\|/, sq(qq{SELECT w.cycles, ($worker_statements)
  FROM sync.worker_status() w WHERE w.datname = current_database()});
my $rounds = $c1 - $c0;
# one round per poll interval, and one more each time a stream's long poll
# returns (the emulator ends each after 1.5 s, above: a new round reconnects
# it); 16 rounds were seen in every run, the old bound of 12 + 4 exactly
my $max_rounds = int($IDLE_S * 1000 / $POLL_MS) + scalar(@RT) * int($IDLE_S * 1000 / 1500) + 2;
note "idle ${IDLE_S} s: $rounds rounds, $stmts statements";
ok($rounds >= 1 && $rounds <= $max_rounds,
	"an idle worker runs at most one round per poll interval or long poll's return ($rounds rounds in ${IDLE_S} s, at most $max_rounds)");
# the hold check, the round's query, and with realtime mirrors the streams'
# query and their connection's check: one each, whatever the number of mirrors
ok($stmts <= 4 * ($rounds + 1),
	"an idle round runs at most 4 statements whatever the number of mirrors ($stmts statements in $rounds rounds)")
  or diag explain $node->safe_psql($db, q{SELECT calls, left(query, 120) FROM pg_stat_statements
    WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY calls DESC LIMIT 8});

# --- and the worker still wakes at once on a commit ---
sq(sprintf(q{UPDATE %s SET %s = 'Late' WHERE %s = 'R1-2'}, tbl(1), $val, $name));
ok(SyncTest::wait_until(sub {
	grep { ($_->{Val__c} // '') eq 'Late' } @{ $emu->control('GET', '/__emulator/records/salesforce/' . obj(1)) };
}, 30), 'a commit after the idle window reaches the remote');

# --- pulls coming due every few hundred ms beside the streams: their long
# polls stay open, and no stream needs a new client (a handshake) ---
sub handshakes { return scalar SyncTest::bayeux_requests($emu, '/meta/handshake'); }
# the remote now holds a connect for 20 s when there is nothing to say
$emu->control('POST', '/__emulator/config', { salesforce_cometd_timeout_ms => 20000 });
# their next pulls are an hour away (sync.pull_interval was 1 h when they
# were scheduled): lowering it by a reload brings them forward, whether the
# worker's round sees the reload before or after a wake-up
my $r0 = sq('SELECT now()');
sq(q{ALTER SYSTEM SET sync.pull_interval = '1s'; SELECT pg_reload_conf()});
sq('SELECT sync.wake()');
wait_for(qq{SELECT count(*) = } . ($N - 3) . q{ FROM sync.mirror_state s JOIN sync.mirror m ON m.id = s.mirror
            WHERE m.direction <> 'push' AND NOT m.options ? 'realtime' AND s.last_pull_at > '} . $r0 . q{'},
	'sync.pull_interval lowered by a reload: the mirrors scheduled an hour ahead pull now', 30);
sleep 1;
$emu->control('DELETE', '/__emulator/requests');
my $w0 = sq('SELECT now()');
my $WINDOW_S = 8;
sleep $WINDOW_S;
my $hs = handshakes();
my $streams = scalar @RT;
note "$WINDOW_S s of 47 mirrors polling every second beside $streams streams: $hs handshakes";
is($hs, 0, "due pulls leave the long polls open: no handshake of the $streams streams in $WINDOW_S s");
is(sq(qq{SELECT count(*) FROM sync.mirror_state s JOIN sync.mirror m ON m.id = s.mirror
          WHERE m.direction <> 'push' AND NOT m.options ? 'realtime' AND s.last_pull_at > '$w0'}),
	$N - 3, '... and every polling mirror was pulled meanwhile');
sq(q{ALTER SYSTEM RESET sync.pull_interval; SELECT pg_reload_conf()});

$node->stop;
done_testing();
