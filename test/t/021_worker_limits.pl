# The workers' limits: sync.max_workers and max_worker_processes caps with a
# WARNING, steady memory over many rounds, and graceful degradation when the
# library is not preloaded.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

sub count_workers
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'sync worker'");
}

# --- sync.max_workers = 1 with two databases that have the extension ------
my $node = PostgreSQL::Test::Cluster->new('cap');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.max_workers = 1
sync.poll_interval = '60s'
sync.database_rescan_interval = '1s'
});
$node->start;
# postgres (no extension) is probed too: the cap must not stop the probing
$node->safe_psql('postgres', 'CREATE DATABASE a; CREATE DATABASE b;');
$node->safe_psql('a', 'CREATE EXTENSION sync');
$node->safe_psql('b', 'CREATE EXTENSION sync');
# the log's offset once the server is down: the running supervisor may
# still warn about the cap for the new extensions while it stops
$node->stop;
my $offset = -s $node->logfile;
$node->start;
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'sync worker'"),
	'sync.max_workers = 1: one worker');
$node->wait_for_log(qr/WARNING:  sync: not starting a worker for database "(a|b)": sync.max_workers \(1\) reached/, $offset);
ok(1, '... and a WARNING names the database left without one');
usleep(1_500_000);
is(count_workers($node), '1', '... still one after a few rescans');
my $warnings = () = substr(slurp_file($node->logfile), $offset) =~ /sync.max_workers \(1\) reached/g;
is($warnings, 1, '... warned once, not at every rescan');
is($node->safe_psql('a', "SELECT state FROM sync.worker_status() WHERE datname = 'postgres'"), 'no_extension',
	'the database without the extension was probed in between');

# memory: many rounds, no growth once warm (a per-round context is reset)
my $db = $node->safe_psql('postgres',
	"SELECT datname FROM pg_stat_activity WHERE backend_type = 'sync worker'");
$node->safe_psql('postgres', "ALTER SYSTEM SET sync.poll_interval = '10ms'; SELECT pg_reload_conf();");
ok($node->poll_query_until($db, "SELECT cycles >= 100 FROM sync.worker_status() WHERE datname = '$db'"), '100 rounds');
my ($c1, $m1) = split /\|/, $node->safe_psql($db, "SELECT cycles, memory_bytes FROM sync.worker_status() WHERE datname = '$db'");
ok($node->poll_query_until($db, "SELECT cycles >= $c1 + 300 FROM sync.worker_status() WHERE datname = '$db'"), '300 more');
my $m2 = $node->safe_psql($db, "SELECT memory_bytes FROM sync.worker_status() WHERE datname = '$db'");
ok($m2 - $m1 <= 16384, "worker memory steady over 300 rounds: $m1 -> $m2 bytes");
$node->stop;

# --- max_worker_processes too small: a WARNING, no crash -------------------
$node = PostgreSQL::Test::Cluster->new('slots');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
max_worker_processes = 2
max_logical_replication_workers = 0
sync.poll_interval = '60s'
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE a');
$node->safe_psql('a', 'CREATE EXTENSION sync');
$node->safe_psql('postgres', 'CREATE EXTENSION sync');
$node->restart;
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'sync worker'"),
	'max_worker_processes = 2: the supervisor and one worker');
$node->wait_for_log(qr/WARNING:  sync: could not start a worker for database "\w+": out of background worker slots/);
ok(1, '... and a WARNING about max_worker_processes');
$node->stop;

# --- not preloaded: everything still works, the worker parts do nothing ---
$node = PostgreSQL::Test::Cluster->new('plain');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION sync');
$node->safe_psql('postgres', 'BEGIN; SELECT sync.wake(); COMMIT;');
is($node->safe_psql('postgres', 'SELECT count(*) FROM sync.worker_status()'),
	'0', 'not preloaded: sync.wake() does nothing, sync.worker_status() is empty');
is($node->safe_psql('postgres', "LOAD 'sync'; SHOW sync.poll_interval"), '10s', '... the reloadable settings exist');
is(count_workers($node), '0', '... and there is no worker');
$node->safe_psql('postgres', 'CREATE DATABASE x; DROP DATABASE x;');
ok(1, '... database commands work');
$node->stop;

done_testing();
