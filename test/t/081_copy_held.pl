# A copy of the database sends nothing until its owner says so: a database
# made with CREATE DATABASE ... TEMPLATE is held (no HTTP at all, visible in
# sync.status, logged once, sync.push()/pull() refuse) while the original
# syncs on; sync.resume_copy() makes it sync, sync.detach_copy() removes its
# connections and mirrors.  sync.enabled = off holds every database of the
# server.  A database still at extension version 0.1 is left alone by the
# worker until ALTER EXTENSION sync UPDATE.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);	# the original's remote
my $emu_copy = SyncTest::start_emulator(tls => 1);	# where the copy points
my $emu_old = SyncTest::start_emulator(tls => 1);	# the 0.1 database's remote
my $node = PostgreSQL::Test::Cluster->new('copy');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
sync.database_rescan_interval = '1s'
max_worker_processes = 16
});
$node->start;
sub sq { my ($db, $sql) = @_; return $node->safe_psql($db, $sql); }
sub wait_for { my ($db, $sql, $what) = @_; ok($node->poll_query_until($db, $sql), $what); }
sub conn_opts
{
	my ($e) = @_;
	return qq{"login_url": "$e->{url}", "ca_file": "$e->{ca_file}"};
}
sub sf_has
{
	my ($e, $last) = @_;
	return scalar(grep { ($_->{LastName} // '') eq $last }
		@{ $e->control('GET', '/__emulator/records/salesforce/Contact') });
}
# wait until the worker of $db has done $n more rounds
sub rounds
{
	my ($db, $n, $what) = @_;
	my $c = sq('prod', "SELECT cycles FROM sync.worker_status() WHERE datname = '$db'");
	wait_for('prod', "SELECT cycles >= $c + $n FROM sync.worker_status() WHERE datname = '$db'", $what);
}
sub count_in_log
{
	my ($re) = @_;
	my @m = slurp_file($node->logfile) =~ /$re/g;
	return scalar(@m);
}

$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "F$_", LastName => "L$_", Email => "c$_\@example.com" } } 1 .. 3 ]);
$node->safe_psql('postgres', 'CREATE DATABASE prod');
sq('prod', 'CREATE EXTENSION sync; CREATE SCHEMA crm;');
sq('prod', qq{SELECT sync.create_connection('sf', 'salesforce', '{@{[conn_opts($emu)]},
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}')});
sq('prod', q{SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName','Email'],
        options => '{"pull_interval": "1 second"}')});
wait_for('prod', "SELECT count(*) = 3 FROM crm.contact", 'the original backfilled');
is(sq('prod', 'SELECT held IS NULL FROM sync.status'), 't', 'the original is not held');
is(sq('prod', 'SELECT count(*) FROM sync.instance'), '1', 'CREATE EXTENSION recorded where syncing was enabled');

# --- a template copy is held ------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE cp TEMPLATE prod');
# point the copy at its own emulator: anything it sent would show there
sq('cp', qq{SELECT sync.alter_connection('sf', '{@{[conn_opts($emu_copy)]}}')});
sq('cp', q{INSERT INTO crm.contact (first_name, last_name, email) VALUES ('Copy', 'CopyRow', 'copy@example.com')});
sq('prod', q{INSERT INTO crm.contact (first_name, last_name, email) VALUES ('Prod', 'ProdRow', 'prod@example.com')});
ok(SyncTest::wait_until(sub { sf_has($emu, 'ProdRow') }), 'the original pushes on');
wait_for('prod', q{SELECT count(*) = 1 FROM sync.worker_status() WHERE datname = 'cp' AND state = 'running'},
	'the copy has a worker');
ok(SyncTest::wait_until(sub { count_in_log(qr/not syncing database "cp": this database is a copy/) >= 1 }),
	'the copy\'s worker logs that it is held');
rounds('cp', 3, 'the copy\'s worker goes round');
is(count_in_log(qr/not syncing database "cp"/), 1, '... and logged it once');
like(sq('cp', 'SELECT held FROM sync.status'),
	qr/^this database is a copy: syncing was enabled in database OID \d+ on the server with system identifier \d+ \(this is database OID \d+\); run sync.resume_copy\(\)/,
	'sync.status shows the copy held, and why');
my ($rc, $out, $err) = $node->psql('cp', q{SELECT sync.push('crm.contact')});
like($err, qr/database "cp" is held: it does not sync until its owner says so/, 'sync.push() refuses in the copy');
like($err, qr/HINT:  Nothing is sent until its owner decides: SELECT sync.resume_copy\(\)/, '... saying what to do');
($rc, $out, $err) = $node->psql('cp', q{SELECT sync.pull('crm.contact')});
like($err, qr/database "cp" is held/, 'sync.pull() refuses too');
is(scalar(@{ $emu_copy->requests() }), 0, 'the held copy sent no request at all');
sq('cp', q{SELECT sync._fold()});	# the captured write into the outbox (src/capture.c)
is(sq('cp', q{SELECT count(*) FROM sync.outbox WHERE state = 'pending'}), '1', 'its queued write waits');
ok(!sf_has($emu, 'CopyRow'), 'nothing of the copy reached the original\'s remote either');

# resume: not for PUBLIC; then the copy syncs
sq('cp', 'CREATE ROLE someone');
is(sq('cp', q{SELECT has_function_privilege('someone', 'sync.resume_copy()', 'EXECUTE')
              OR has_function_privilege('someone', 'sync.detach_copy()', 'EXECUTE')}), 'f',
	'sync.resume_copy() and sync.detach_copy() are not granted to PUBLIC');
sq('cp', 'SELECT sync.resume_copy()');
ok(SyncTest::wait_until(sub { sf_has($emu_copy, 'CopyRow') }), 'after sync.resume_copy() the copy pushes');
is(sq('cp', 'SELECT held IS NULL FROM sync.status'), 't', '... and is no longer held');
ok(SyncTest::wait_until(sub { count_in_log(qr/database "cp" is no longer held; syncing/) == 1 }),
	'... which its worker logs');
sq('prod', q{INSERT INTO crm.contact (first_name, last_name, email) VALUES ('Prod', 'ProdRow2', 'prod2@example.com')});
ok(SyncTest::wait_until(sub { sf_has($emu, 'ProdRow2') }), 'the original syncs on');

# detach: another copy lets go of the remotes for good
($rc, $out, $err) = $node->psql('prod', 'SELECT sync.detach_copy()');
like($err, qr/database "prod" is not a copy/, 'sync.detach_copy() refuses in the original');
$node->safe_psql('postgres', 'CREATE DATABASE cp2 TEMPLATE prod');
($rc, $out, $err) = $node->psql('cp2', 'SELECT sync.detach_copy()');
like($err, qr/detached: 1 mirrors and 1 connections \(with their secrets\) removed/, 'sync.detach_copy() detaches a copy');
is(sq('cp2', q{SELECT (SELECT count(*) FROM sync.mirror) + (SELECT count(*) FROM sync.connection)
                 + (SELECT count(*) FROM sync.connection_secret) + (SELECT count(*) FROM pg_trigger
                    WHERE tgrelid = 'crm.contact'::regclass AND NOT tgisinternal)}), '0',
	'... no mirror, connection, secret or capture trigger is left');
is(sq('cp2', 'SELECT count(*) FROM crm.contact'), sq('prod', 'SELECT count(*) FROM crm.contact'),
	'... and the table keeps its rows');

# --- sync.enabled = off holds every database --------------------------------
$node->append_conf('postgresql.conf', "sync.enabled = off\n");
$node->reload;
ok(SyncTest::wait_until(sub { count_in_log(qr/not syncing database "prod": sync.enabled is off on this server/) == 1 }),
	'with sync.enabled = off the original is held');
ok(SyncTest::wait_until(sub { count_in_log(qr/not syncing database "cp": sync.enabled is off/) == 1 }),
	'... and so is the resumed copy');
$emu->control('DELETE', '/__emulator/requests');
$emu_copy->control('DELETE', '/__emulator/requests');
sq('prod', q{INSERT INTO crm.contact (first_name, last_name, email) VALUES ('Off', 'OffRow', 'off@example.com')});
rounds('prod', 3, 'the worker goes round while disabled');
is(scalar(@{ $emu->requests() }) + scalar(@{ $emu_copy->requests() }), 0, 'no request at all while sync.enabled is off');
is(sq('prod', 'SELECT held FROM sync.status'), 'sync.enabled is off on this server', 'sync.status shows it');
($rc, $out, $err) = $node->psql('prod', q{SELECT sync.push('crm.contact')});
like($err, qr/sync is disabled on this server \(sync.enabled = off\)/, 'sync.push() refuses');
$node->append_conf('postgresql.conf', "sync.enabled = on\n");
$node->reload;
ok(SyncTest::wait_until(sub { sf_has($emu, 'OffRow') }), 'sync.enabled = on: the write is pushed');

# --- a database still at 0.1 waits for ALTER EXTENSION UPDATE ---------------
$emu_old->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "O$_", LastName => "Old$_" } } 1 .. 2 ]);
$node->safe_psql('postgres', 'CREATE DATABASE old');
sq('old', q{CREATE EXTENSION sync VERSION '0.1'; CREATE SCHEMA crm;});
sq('old', qq{SELECT sync.create_connection('sf', 'salesforce', '{@{[conn_opts($emu_old)]},
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}')});
sq('old', q{SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName'],
        options => '{"pull_interval": "1 second"}')});
$emu_old->control('DELETE', '/__emulator/requests');
ok(SyncTest::wait_until(sub {
	count_in_log(qr/not syncing database "old": the installed extension sync is version 0\.1, the library is version [0-9.]+\n.*HINT:  Run ALTER EXTENSION sync UPDATE/) == 1 }),
	'the worker logs that a database at 0.1 waits for ALTER EXTENSION sync UPDATE');
rounds('old', 3, 'its worker goes round');
is(count_in_log(qr/not syncing database "old"/), 1, '... logging it once');
is(scalar(@{ $emu_old->requests() }), 0, '... and sends nothing');
is(sq('old', 'SELECT count(*) FROM crm.contact'), '0', '... so nothing is backfilled');
sq('old', 'ALTER EXTENSION sync UPDATE');
wait_for('old', 'SELECT count(*) = 2 FROM crm.contact', 'after ALTER EXTENSION sync UPDATE the worker syncs it');
is(sq('old', 'SELECT held IS NULL FROM sync.status'), 't', 'an updated database is not held');

$node->stop;
done_testing();
