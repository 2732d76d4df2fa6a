# pg_dump / pg_restore keeps what the user configured: connections and their
# secrets, mirrors, field mappings, pull cursors and queued writes.  The
# restored database is a copy: it is held and sends nothing until its owner
# calls sync.resume_copy(); then it syncs on from where the dump was taken.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE src');
sub sq { my ($db, $sql) = @_; return $node->safe_psql($db, $sql); }

my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "F$_", LastName => "L$_", Email => "c$_\@example.com" } } 1 .. 30 ]);
sq('src', 'CREATE EXTENSION sync; CREATE SCHEMA crm;');
sq('src', qq{SELECT sync.create_connection('sf', 'salesforce', '{
  "login_url": "$url", "ca_file": "$ca",
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}')});
sq('src', q{SELECT sync.mirror('sf', 'Contact', 'crm.contact',
  fields => ARRAY['FirstName','LastName','Email'], options => '{"conflict": "remote_wins"}')});
sq('src', q{SELECT sync.pull('crm.contact')});
is(sq('src', 'SELECT count(*) FROM crm.contact'), '30', 'backfilled before the dump');
sq('src', q{UPDATE crm.contact SET first_name = 'Queued' WHERE last_name = 'L7'});
my $cursor = sq('src', 'SELECT cursor FROM sync.mirror_state');
isnt($cursor, '', 'the mirror has a pull cursor');

# dump and restore into a new database
my $dump = $node->basedir . '/src.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('src') ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE dst');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('dst'), $dump ], 'pg_restore');

is(sq('dst', q{SELECT provider FROM sync.connections WHERE name = 'sf'}), 'salesforce', 'the connection is restored');
is(sq('dst', q{SELECT secret_keys::text FROM sync.connections WHERE name = 'sf'}), '{auth.client_secret}',
	'its secret is restored (and still redacted in the view)');
is(sq('dst', q{SELECT remote_object || ' ' || local_table::text || ' ' || (options->>'conflict') FROM sync.mirror}),
	'Contact crm.contact remote_wins', 'the mirror and its options are restored');
is(sq('dst', 'SELECT count(*) FROM sync.field'), sq('src', 'SELECT count(*) FROM sync.field'),
	'the field mappings are restored');
is(sq('dst', 'SELECT cursor FROM sync.mirror_state'), $cursor, 'the pull cursor is restored');
# the write was captured but not folded when the dump was taken: the log is
# dumped with the queue, and folds into it here (src/capture.c)
sq('dst', q{SELECT sync._fold()});
is(sq('dst', q{SELECT op::text || ' ' || columns::text FROM sync.outbox}), 'U {first_name}',
	'the queued write is restored');
is(sq('dst', 'SELECT count(*) FROM crm.contact'), '30', 'the mirrored rows are restored');

# the restored database is a copy: held, it sends nothing
$emu->control('DELETE', '/__emulator/requests');
like(sq('dst', 'SELECT held FROM sync.status'), qr/^this database is a copy: syncing was enabled in database OID \d+/,
	'the restored database is held, and sync.status says why');
is(sq('src', 'SELECT held IS NULL FROM sync.status'), 't', 'the original is not held');
my ($rc, $out, $err) = $node->psql('dst', q{SELECT sync.push('crm.contact')});
like($err, qr/database "dst" is held: it does not sync until its owner says so/, 'sync.push() refuses in the held copy');
($rc, $out, $err) = $node->psql('dst', q{SELECT sync.pull('crm.contact')});
like($err, qr/database "dst" is held/, 'so does sync.pull()');
is(scalar(@{ $emu->requests() }), 0, 'the held copy sent nothing');
is(sq('dst', q{SELECT count(*) FROM sync.outbox}), '1', 'its queued write waits');

# its owner resumes it: it syncs on — the queued write is pushed, a new
# local write is captured, a remote edit arrives by an incremental pull
sq('dst', 'SELECT sync.resume_copy()');
is(sq('dst', 'SELECT held IS NULL FROM sync.status'), 't', 'sync.resume_copy() ends the hold');
is(sq('dst', q{SELECT (sync.push('crm.contact'))->>'sent'}), '1', 'the restored queue is pushed');
my $rid = sq('dst', q{SELECT remote_id FROM crm.contact WHERE last_name = 'L7'});
is($emu->control('GET', "/__emulator/records/salesforce/Contact/$rid")->{FirstName}, 'Queued',
	'the write queued before the dump reached the remote');
sq('dst', q{UPDATE crm.contact SET email = 'moved@example.com' WHERE last_name = 'L8'});
is(sq('dst', q{SELECT columns::text FROM sync.outbox}), '{email}', 'the capture trigger works after the restore');
my $rid9 = sq('dst', q{SELECT remote_id FROM crm.contact WHERE last_name = 'L9'});
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$rid9", { FirstName => 'RemoteEdit' });
sq('dst', q{SELECT sync.pull('crm.contact')});
is(sq('dst', q{SELECT first_name FROM crm.contact WHERE last_name = 'L9'}), 'RemoteEdit',
	'an incremental pull from the restored cursor brings the remote edit');

$node->stop;
done_testing();
