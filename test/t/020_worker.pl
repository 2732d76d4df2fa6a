# The background workers: one per database with the extension, started by a
# supervisor with no per-database configuration; woken by commits (also
# COMMIT PREPARED); prompt on SIGTERM; reloading on SIGHUP; out of the way
# of DROP DATABASE and friends; restarted after crashes with nothing lost.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $node = PostgreSQL::Test::Cluster->new('w');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '60s'
sync.database_rescan_interval = '1s'
max_worker_processes = 16
max_prepared_transactions = 5
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE db1; CREATE DATABASE db2; CREATE DATABASE db3; CREATE DATABASE db4;');
$node->safe_psql('db1', 'CREATE EXTENSION sync');
$node->safe_psql('postgres', 'CREATE EXTENSION sync');
$node->restart;

sub pq { return $node->safe_psql('postgres', $_[0]); }
sub workers
{
	my ($db) = @_;
	return pq("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'sync worker' AND datname = '$db'");
}
sub worker_pid
{
	my ($db) = @_;
	return pq("SELECT pid FROM pg_stat_activity WHERE backend_type = 'sync worker' AND datname = '$db'");
}
sub status
{
	my ($db, $col) = @_;
	return pq("SELECT $col FROM sync.worker_status() WHERE datname = '$db'");
}
sub wait_workers
{
	my ($db, $n, $what) = @_;
	return ok($node->poll_query_until('postgres',
		"SELECT count(*) = $n FROM pg_stat_activity WHERE backend_type = 'sync worker' AND datname = '$db'"), $what);
}
# Is the query true within this many seconds?  The bounds below are half of
# an interval the worker would otherwise wait out (the 60 s poll, a round
# blocked on a lock for good): they tell "woken" from "polled", not speed
# (speed is measured in bench/).
sub true_within
{
	my ($secs, $sql) = @_;
	my $end = time + $secs;
	while (time < $end)
	{
		return 1 if pq($sql) eq 't';
		usleep(20_000);
	}
	return 0;
}
# SIGTERM: is the process gone within this many seconds?
sub terminated_within
{
	my ($pid, $secs) = @_;
	my $t0 = time;
	kill 'TERM', $pid;
	while (time - $t0 < $secs)
	{
		return 1 unless kill(0, $pid);
		usleep(5_000);
	}
	return 0;
}

# --- start-up: a worker in every database with the extension -------------
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'sync worker' AND datname IN ('db1', 'postgres') AND application_name = 'sync worker'"),
	'a worker starts with the server in each database with the extension (two at once)');
is(pq("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'sync supervisor' AND datname IS NULL"),
	'1', 'one supervisor, connected to no database');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM sync.worker_status() WHERE state = 'running' AND datname IN ('db1', 'postgres') AND pid IS NOT NULL"),
	'sync.worker_status() shows both as running');
ok($node->poll_query_until('postgres',
	"SELECT state = 'no_extension' FROM sync.worker_status() WHERE datname = 'db2'"),
	'a database without the extension is noted as such');
is(workers('db2'), '0', '... and has no lingering worker');
ok(!$node->log_contains('sync worker started for database "db2"'), '... nor had one that ran');
is(pq("SELECT count(*) FROM sync.worker_status() WHERE datname = 'template1' OR datname = 'template0'"),
	'0', 'templates are left alone');

# --- CREATE EXTENSION after start-up: a worker without restart ------------
$node->safe_psql('db3', 'BEGIN; CREATE EXTENSION sync; ROLLBACK;');
$node->safe_psql('db2', 'CREATE EXTENSION sync');
wait_workers('db2', 1, 'CREATE EXTENSION in a running cluster gets its worker');
is(status('db3', 'state'), 'no_extension', 'a rolled-back CREATE EXTENSION asks for no worker');

# a database created from a database with the extension: found by the rescan,
# and CREATE DATABASE ... TEMPLATE is not blocked by db2's worker (PostgreSQL
# gives up with "being accessed by other users" after waiting 5 s)
my ($rc, $out, $err) = $node->psql('postgres', 'CREATE DATABASE db2copy TEMPLATE db2');
is($rc, 0, 'CREATE DATABASE ... TEMPLATE a database with a worker succeeds') or diag($err);
wait_workers('db2copy', 1, 'the new database gets its worker (rescan)');
wait_workers('db2', 1, 'and the template database has its worker back');

# --- wake on commit (poll interval 60 s) --------------------------------
ok($node->poll_query_until('postgres', "SELECT cycles >= 1 FROM sync.worker_status() WHERE datname = 'db1'"),
	'the worker ran a round');
my $c0 = status('db1', 'cycles');
$node->safe_psql('db1', 'BEGIN; SELECT sync.wake(); ROLLBACK;');
usleep(500_000);
is(status('db1', 'cycles'), $c0, 'a rolled-back sync.wake() does not wake the worker');

# (how soon: bench/commit_latency.sh; here, that it happens long before the
# 60 s poll interval could have run a round)
$node->safe_psql('db1', 'SELECT sync.wake()');
ok(true_within(30, "SELECT cycles > $c0 FROM sync.worker_status() WHERE datname = 'db1'"),
	'a committed sync.wake() wakes the worker (not the 60 s poll)');

# two-phase commit: nothing at PREPARE, a wake at COMMIT PREPARED
$c0 = status('db1', 'cycles');
$node->safe_psql('db1', "BEGIN; SELECT sync.wake(); PREPARE TRANSACTION 'p1';");
usleep(500_000);
is(status('db1', 'cycles'), $c0, 'PREPARE TRANSACTION does not wake the worker');
$node->safe_psql('db1', "COMMIT PREPARED 'p1'");
ok($node->poll_query_until('postgres', "SELECT cycles > $c0 FROM sync.worker_status() WHERE datname = 'db1'"),
	'COMMIT PREPARED wakes it');

# --- SIGHUP reloads --------------------------------------------------------
my $log_offset = -s $node->logfile;
pq("ALTER SYSTEM SET sync.poll_interval = '5s'; ALTER SYSTEM SET sync.worker_log_level = 'debug1'; SELECT pg_reload_conf();");
ok($node->poll_query_until('postgres', "SELECT poll_interval_ms = 5000 FROM sync.worker_status() WHERE datname = 'db1'"),
	'SIGHUP: the worker picked up the new sync.poll_interval');
$node->wait_for_log(qr/sync worker: configuration reloaded: sync.poll_interval = 5000 ms/, $log_offset);
ok(1, '... and sync.worker_log_level = debug1 (its DEBUG1 line is in the log)');
$node->wait_for_log(qr/sync worker: round took \d+ ms; sleeping 5000 ms/, $log_offset);
ok(1, '... and sleeps 5 s at most now');
pq("ALTER SYSTEM RESET sync.poll_interval; ALTER SYSTEM RESET sync.worker_log_level; SELECT pg_reload_conf();");
ok($node->poll_query_until('postgres', "SELECT poll_interval_ms = 60000 FROM sync.worker_status() WHERE datname = 'db1'"),
	'... and back');

# --- a failing round does not end the worker ------------------------------
# a lock holds the round up; a query cancel ends the round with an ERROR
my $pid = worker_pid('db1');
my $locker = $node->background_psql('db1');
$locker->query_safe('BEGIN; LOCK TABLE sync.mirror IN ACCESS EXCLUSIVE MODE;');
$node->safe_psql('db1', 'SELECT sync.wake()');
ok($node->poll_query_until('postgres',
	"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $pid"), 'the round waits for a lock');
pq("SELECT pg_cancel_backend($pid)");
ok($node->poll_query_until('postgres',
	"SELECT last_error LIKE 'canceling statement%' FROM sync.worker_status() WHERE datname = 'db1'"),
	'a cancelled round is recorded in last_error');
is(worker_pid('db1'), $pid, '... and the worker goes on (same process)');

# --- SIGTERM: prompt, even mid-round, then restarted ---------------------
$node->safe_psql('db1', 'SELECT sync.wake()');
ok($node->poll_query_until('postgres',
	"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $pid"), 'the next round waits for the lock again');
ok(terminated_within($pid, 60), 'SIGTERM mid-round: the worker exits while its round is still blocked on the lock');
$locker->query_safe('COMMIT');
$locker->quit;
is(status('db1', 'state'), 'exited', 'its slot says "exited"');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'sync worker' AND datname = 'db1' AND pid <> $pid"),
	'the supervisor restarted it');
$pid = worker_pid('db1');
ok($node->poll_query_until('postgres', "SELECT state = 'running' FROM sync.worker_status() WHERE datname = 'db1'"), '... running');
ok(terminated_within($pid, 30), 'SIGTERM while idle: the worker exits without waiting out its 60 s sleep');
wait_workers('db1', 1, 'restarted again');

# --- DROP EXTENSION: the worker exits cleanly and stays down --------------
$pid = worker_pid('db2');
$node->safe_psql('db2', 'DROP EXTENSION sync');
ok(true_within(30, "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'sync worker' AND datname = 'db2'"),
	'DROP EXTENSION: the worker exits (without waiting out its 60 s sleep)');
ok($node->poll_query_until('postgres', "SELECT state = 'no_extension' FROM sync.worker_status() WHERE datname = 'db2'"),
	'... noted as no_extension');
usleep(1_500_000);
is(workers('db2'), '0', '... and is not restarted');
ok($node->log_contains('the extension was dropped from database "db2"'), '... a clean exit, logged');
$node->safe_psql('db2', 'CREATE EXTENSION sync');
wait_workers('db2', 1, 'CREATE EXTENSION again: the worker is back');

# --- database-level commands are not blocked by the worker ----------------
$node->safe_psql('db4', 'CREATE EXTENSION sync');
wait_workers('db4', 1, 'db4 has a worker');
# (each of these fails with "being accessed by other users" if a worker
# stays connected for 5 s)
($rc, $out, $err) = $node->psql('postgres', 'ALTER DATABASE db4 RENAME TO db4r');
is($rc, 0, 'ALTER DATABASE RENAME of a database with a worker succeeds') or diag($err);
wait_workers('db4r', 1, '... and the worker comes back');
($rc, $out, $err) = $node->psql('postgres', 'DROP DATABASE db4r');
is($rc, 0, 'DROP DATABASE (without FORCE) of a database with a worker succeeds') or diag($err);
($rc, $out, $err) = $node->psql('postgres', 'DROP DATABASE db2copy WITH (FORCE)');
is($rc, 0, 'DROP DATABASE WITH (FORCE) succeeds') or diag($err);
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM sync.worker_status() WHERE datid NOT IN (SELECT oid FROM pg_database)"),
	'dropped databases are forgotten');
ok(!$node->log_contains('FATAL:  database \\d+ does not exist'),
	'no worker was started for a database being dropped');
is(workers('db1'), '1', 'db1 kept its worker throughout');

# --- kill -9: crash restart, workers come back, the outbox survives -------
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
ok(SyncTest::poll_true($node, 'postgres',
	"SELECT count(*) = 3 FROM pg_stat_activity WHERE backend_type = 'sync worker' AND datname IN ('db1', 'db2', 'postgres')", 120),
	'after kill -9 and the crash restart, the workers are back');
ok($node->log_contains('terminating any other active server processes'), '... it was a crash restart');
is($node->safe_psql('db1', 'SELECT count(*) FROM sync.outbox'), '100', 'nothing lost from the outbox');
# the connection has no credentials: the mirror's failure is recorded, the worker keeps running
ok($node->poll_query_until('db1', "SELECT last_error IS NOT NULL FROM sync.mirror_state"),
	'a failing mirror records its error');
is(workers('db1'), '1', '... and the worker keeps running');

$node->stop;
done_testing();
