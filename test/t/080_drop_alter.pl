# Mirrored tables dropped or altered while the worker runs: DROP TABLE and
# DROP SCHEMA ... CASCADE unmirror (naming the queued writes they discard)
# and the other mirrors go on without errors; a renamed table keeps its
# mirror; a renamed mapped column is followed (mapping, capture trigger);
# dropping a mapped column is refused.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('drop');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
});
$node->start;
sub sq { return $node->safe_psql('postgres', $_[0]); }
sub wait_for { my ($sql, $what) = @_; ok($node->poll_query_until('postgres', $sql), $what); }
sub sf_get { return $emu->control('GET', "/__emulator/records/salesforce/$_[0]"); }

my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "F$_", LastName => "L$_", Email => "c$_\@example.com" } } 1 .. 5 ]);
$emu->control('POST', '/__emulator/records/salesforce/Account', [ map { { Name => "A$_" } } 1 .. 3 ]);
sq(qq{CREATE EXTENSION sync; CREATE SCHEMA crm; CREATE SCHEMA old;
  SELECT sync.create_connection('sf', 'salesforce', '{
    "login_url": "$url", "ca_file": "$ca",
    "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}')});
sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName','Email'],
        options => '{"pull_interval": "1 second"}')});
sq(q{SELECT sync.mirror('sf', 'Account', 'crm.account', fields => ARRAY['Name'],
        options => '{"pull_interval": "1 second"}')});
sq(q{SELECT sync.mirror('sf', 'Lead', 'old.lead', fields => ARRAY['LastName','Company'],
        options => '{"pull_interval": "1 second"}')});
sq(q{SELECT sync.mirror('sf', 'Opportunity', 'old.opp', fields => ARRAY['Name','StageName','CloseDate'],
        options => '{"pull_interval": "1 second"}')});
wait_for("SELECT count(*) = 5 FROM crm.contact", 'the worker backfilled the contacts');
wait_for("SELECT count(*) = 3 FROM crm.account", 'the worker backfilled the accounts');
wait_for("SELECT count(*) = 4 FROM sync.status WHERE phase = 'incremental'", 'four mirrors syncing');

# --- ALTER TABLE ... RENAME: the mirror follows the table ------------------
sq('ALTER TABLE crm.contact RENAME TO person');
is(sq(q{SELECT local_table::text FROM sync.mirror WHERE remote_object = 'Contact'}), 'crm.person',
	'a renamed table keeps its mirror');
my $rid1 = sq(q{SELECT remote_id FROM crm.person WHERE last_name = 'L1'});
sq(q{UPDATE crm.person SET email = 'renamed-table@example.com' WHERE last_name = 'L1'});
ok(SyncTest::wait_until(sub { sf_get("Contact/$rid1")->{Email} eq 'renamed-table@example.com' }),
	'a write to the renamed table is pushed');

# --- RENAME COLUMN of a mapped column: followed -----------------------------
sq('ALTER TABLE crm.person RENAME COLUMN first_name TO given_name');
is(sq(q{SELECT f.local_column FROM sync.field f JOIN sync.mirror m ON m.id = f.mirror
         WHERE m.remote_object = 'Contact' AND f.remote_name = 'FirstName'}), 'given_name',
	'the mapping follows a renamed column');
like(sq(q{SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE t.tgrelid = 'crm.person'::regclass
           AND t.tgname = 'sync_capture'}), qr/'given_name'/, 'the capture trigger names the new column');
my $rid2 = sq(q{SELECT remote_id FROM crm.person WHERE last_name = 'L2'});
sq(q{UPDATE crm.person SET given_name = 'Given' WHERE last_name = 'L2'});
ok(SyncTest::wait_until(sub { sf_get("Contact/$rid2")->{FirstName} eq 'Given' }),
	'a write to the renamed column is pushed to its field');
my $rid3 = sq(q{SELECT remote_id FROM crm.person WHERE last_name = 'L3'});
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$rid3", { FirstName => 'FromRemote' });
wait_for(q{SELECT given_name = 'FromRemote' FROM crm.person WHERE last_name = 'L3'},
	'a remote change arrives in the renamed column');

# a queued write's column list follows too (the write is queued in the same
# transaction as the rename, so the worker cannot have taken it yet)
sq(q{BEGIN; UPDATE crm.person SET email = 'queued@example.com' WHERE last_name = 'L4';
     ALTER TABLE crm.person RENAME COLUMN email TO mail; COMMIT;});
my $rid4 = sq(q{SELECT remote_id FROM crm.person WHERE last_name = 'L4'});
ok(SyncTest::wait_until(sub { sf_get("Contact/$rid4")->{Email} eq 'queued@example.com' }),
	'a write queued before a column rename is pushed after it');

# --- DROP COLUMN of a mapped column: refused --------------------------------
my ($rc, $out, $err) = $node->psql('postgres', 'ALTER TABLE crm.person DROP COLUMN mail');
isnt($rc, 0, 'dropping a mapped column is refused');
like($err, qr/cannot drop column mail of table crm\.person: the table's sync mirror of sf Contact uses it/,
	'... naming the column, the table and the mirror');
is(sq(q{SELECT count(*) FROM pg_attribute WHERE attrelid = 'crm.person'::regclass AND attname = 'mail'}), '1',
	'... and the column is still there');
sq('ALTER TABLE crm.person ADD COLUMN note text; ALTER TABLE crm.person DROP COLUMN note');
pass('an unmapped column can be added and dropped');

# --- DROP TABLE: the mirror goes, queued writes are named -------------------
my $log_offset = -s $node->logfile;
($rc, $out, $err) = $node->psql('postgres',
	q{BEGIN; UPDATE crm.account SET name = 'Doomed' WHERE name = 'A1'; DROP TABLE crm.account; COMMIT;});
is($rc, 0, 'DROP TABLE of a mirrored table works');
like($err, qr/WARNING:  1 queued local writes of dropped table crm\.account are discarded/,
	'... warning about the queued write it discards');
like($err, qr/NOTICE:  table crm\.account was dropped: its mirror of sf Account is removed/,
	'... and saying the mirror is removed');
is(sq(q{SELECT count(*) FROM sync.mirror WHERE remote_object = 'Account'}), '0', 'the mirror is gone');
is(sq(q{SELECT (SELECT count(*) FROM sync.field f WHERE NOT EXISTS (SELECT 1 FROM sync.mirror m WHERE m.id = f.mirror))
            + (SELECT count(*) FROM sync.mirror_state s WHERE NOT EXISTS (SELECT 1 FROM sync.mirror m WHERE m.id = s.mirror))
            + (SELECT count(*) FROM sync.outbox o WHERE NOT EXISTS (SELECT 1 FROM sync.mirror m WHERE m.id = o.mirror))}),
	'0', 'no field, pull state or outbox entry is left behind');

# --- DROP SCHEMA ... CASCADE: several mirrors at once -----------------------
($rc, $out, $err) = $node->psql('postgres', 'DROP SCHEMA old CASCADE');
is($rc, 0, 'DROP SCHEMA ... CASCADE with two mirrored tables works');
is(sq(q{SELECT string_agg(remote_object, ',' ORDER BY remote_object) FROM sync.mirror}), 'Contact',
	'both of its mirrors are gone, the other stays');

# --- the remaining mirror goes on, with no errors ---------------------------
my $rid5 = sq(q{SELECT remote_id FROM crm.person WHERE last_name = 'L5'});
sq(q{UPDATE crm.person SET mail = 'after-drops@example.com' WHERE last_name = 'L5'});
ok(SyncTest::wait_until(sub { sf_get("Contact/$rid5")->{Email} eq 'after-drops@example.com' }),
	'after the drops the worker pushes the remaining mirror');
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$rid5", { LastName => 'L5remote' });
wait_for(q{SELECT count(*) = 1 FROM crm.person WHERE last_name = 'L5remote'}, '... and pulls it');
my $pull0 = sq('SELECT last_pull_at FROM sync.mirror_state');
wait_for(qq{SELECT last_pull_at > '$pull0' FROM sync.mirror_state}, '... again and again');
is(sq('SELECT count(*) FROM sync.status WHERE last_error IS NOT NULL'), '0', 'no mirror records an error');
my $log = slurp_file($node->logfile, $log_offset);
my @errs = $log =~ /^.*(?:ERROR|sync: mirror \d+:).*$/mg;
is(scalar(@errs), 0, 'the worker logged no error after the drops') or diag(join("\n", @errs));

# DROP EXTENSION (CASCADE: the capture trigger) still works with the event triggers in place
sq('DROP EXTENSION sync CASCADE');
is(sq(q{SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'sync%'}), '0',
	'DROP EXTENSION removes the event triggers');
sq('DROP TABLE crm.person');
pass('a formerly mirrored table drops without the extension');

$node->stop;
done_testing();
