# The background workers: one per database with the extension, started by a
# supervisor with no per-database configuration; woken by commits; prompt on
# SIGTERM; reloading on SIGHUP; restarted after crashes with nothing lost.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('w');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '60s'
sync.database_rescan_interval = '2s'
max_worker_processes = 16
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE db1; CREATE DATABASE db2; CREATE DATABASE db3;');
$node->safe_psql('db1', 'CREATE EXTENSION sync');
$node->safe_psql('postgres', 'CREATE EXTENSION sync');
$node->restart;

sub worker_pid
{
	my ($db) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'sync worker' AND datname = '$db'");
}
sub status
{
	my ($db, $col) = @_;
	return $node->safe_psql('postgres', "SELECT $col FROM sync.worker_status() WHERE datname = '$db'");
}

ok($node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'sync worker' AND datname IN ('db1', 'postgres')"),
	'a worker starts with the server in each database with the extension (two at once)');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'sync supervisor' AND datname IS NULL"),
	'one supervisor, connected to no database');
ok($node->poll_query_until('postgres',
	"SELECT state = 'no extension' FROM sync.worker_status() WHERE datname = 'db2'"),
	'a database without the extension is noted');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'sync worker' AND datname = 'db2'"),
	'0', 'and has no lingering worker');

# CREATE EXTENSION after start-up: a worker without restart
my $t0 = time;
$node->safe_psql('db2', 'CREATE EXTENSION sync');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'sync worker' AND datname = 'db2'"),
	'CREATE EXTENSION in a running cluster gets its worker');
my $dt = time - $t0;
ok($dt < 5, sprintf('... within %.1f s', $dt));

# wake on commit (poll interval is 60 s)
ok($node->poll_query_until('postgres', "SELECT cycles >= 1 FROM sync.worker_status() WHERE datname = 'db1'"), 'worker ran a round');
my $c0 = status('db1', 'cycles');
$node->safe_psql('db1', 'BEGIN; SELECT sync.wake(); ROLLBACK;');
usleep(700_000);
is(status('db1', 'cycles'), $c0, 'a rolled-back transaction does not wake the worker');
$t0 = time;
$node->safe_psql('db1', 'BEGIN; SELECT sync.wake(); COMMIT;');
ok($node->poll_query_until('postgres', "SELECT cycles > $c0 FROM sync.worker_status() WHERE datname = 'db1'"),
	'a commit wakes the worker');
$dt = time - $t0;
ok($dt < 2, sprintf('... within %.0f ms (poll interval 60 s)', $dt * 1000));

# SIGHUP reloads
$node->safe_psql('postgres', "ALTER SYSTEM SET sync.poll_interval = '5s'; SELECT pg_reload_conf();");
$node->safe_psql('db1', 'SELECT sync.wake()');
ok($node->poll_query_until('postgres', "SELECT poll_interval_ms = 5000 FROM sync.worker_status() WHERE datname = 'db1'"),
	'SIGHUP: the worker picked up the new sync.poll_interval');

# SIGTERM: prompt exit, restarted by the supervisor
my $pid = worker_pid('db1');
$t0 = time;
kill 'TERM', $pid;
my $gone = 0;
while (time - $t0 < 5)
{
	if (!kill(0, $pid)) { $gone = 1; last; }
	usleep(20_000);
}
$dt = time - $t0;
ok($gone && $dt < 1, sprintf('SIGTERM: the worker exited in %.0f ms', $dt * 1000));
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'sync worker' AND datname = 'db1' AND pid <> $pid"),
	'the supervisor restarted it');

# DROP EXTENSION: the worker exits cleanly and is not restarted
$node->safe_psql('db2', 'DROP EXTENSION sync');
$node->safe_psql('db2', 'SELECT 1');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'sync worker' AND datname = 'db2'"),
	'DROP EXTENSION: the worker exits');
ok($node->poll_query_until('postgres', "SELECT state = 'no extension' FROM sync.worker_status() WHERE datname = 'db2'"),
	'... and stays down');

# DROP DATABASE WITH (FORCE) is not held up by the worker
$node->safe_psql('db3', 'CREATE EXTENSION sync');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'sync worker' AND datname = 'db3'"), 'db3 has a worker');
my ($rc) = $node->psql('postgres', 'DROP DATABASE db3 WITH (FORCE)');
is($rc, 0, 'DROP DATABASE WITH (FORCE) succeeds');

# kill -9: crash restart, workers come back, the outbox survives
$node->safe_psql('db1', q{
	CREATE TABLE t (id int PRIMARY KEY, remote_id text UNIQUE, v text, remote_modified_at timestamptz);
	INSERT INTO sync.connection (name, provider) VALUES ('c', 'salesforce');
	INSERT INTO sync.mirror (connection, remote_object, local_table, key_column, remote_id_column, stamp_column, direction)
	    VALUES ('c', 'Contact', 't', 'id', 'remote_id', 'remote_modified_at', 'both');
	INSERT INTO sync.field (mirror, remote_name, local_column, remote_type, local_type, createable, updateable)
	    SELECT id, 'V', 'v', 'string', 'text', true, true FROM sync.mirror;
	INSERT INTO sync.mirror_state (mirror, phase) SELECT id, 'paused' FROM sync.mirror;
	UPDATE sync.mirror SET direction = 'pull';
	SELECT sync._install_triggers(id) FROM sync.mirror;
	UPDATE sync.mirror SET direction = 'both';
	SELECT sync._install_triggers(id) FROM sync.mirror;
	INSERT INTO t (id, v) SELECT g, 'v' || g FROM generate_series(1, 100) g;
});
is($node->safe_psql('db1', 'SELECT count(*) FROM sync.outbox'), '100', '100 writes queued');
$pid = worker_pid('db1');
kill 'KILL', $pid;
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'sync worker' AND datname IN ('db1', 'postgres')"),
	'after kill -9 and the crash restart, the workers are back');
is($node->safe_psql('db1', 'SELECT count(*) FROM sync.outbox'), '100', 'nothing lost from the outbox');
# the connection has no credentials: the mirror's failure is recorded, the worker keeps running
ok($node->poll_query_until('db1', "SELECT last_error IS NOT NULL FROM sync.mirror_state"),
	'a failing mirror records its error');
ok($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'sync worker' AND datname = 'db1'") == 1,
	'... and the worker keeps running');

$node->stop;
done_testing();
