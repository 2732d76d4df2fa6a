# What a pushed batch records (push_record_batch in push.c): the journal
# rows of the whole batch (one per item: operation, row, remote ID, the
# remote fields sent, a hash of the values, the result and the remote's
# words, the time the results came back), and a delete queued while its row's
# create was on the network, which takes the new remote ID from the
# recording and then deletes the record the create made.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator();
my $node = PostgreSQL::Test::Cluster->new('record');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
});
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
sub wait_for { my ($sql, $what) = @_; ok(SyncTest::poll_true($node, $db, $sql, 60), $what); }
sub sf_contacts { return @{ $emu->control('GET', '/__emulator/records/salesforce/Contact') }; }

sq('CREATE EXTENSION sync; CREATE SCHEMA crm;');
SyncTest::sf_connect($node, $db, $emu, 'sf');
sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName','Email'],
                         direction => 'push')});

# --- the journal rows of a batch: two creates that go, one the remote refuses ---
my $t0 = sq('SELECT clock_timestamp()');
sq(q{INSERT INTO crm.contact (id, first_name, last_name, email) VALUES
       (1, 'Ann', 'Rec1', 'ann@example.com'),
       (2, 'Bob', 'Rec2', 'bob@example.com'),
       (3, 'Cy', 'Rec3', 'not an email')});
wait_for(q{SELECT count(*) = 0 FROM sync.outbox WHERE state = 'pending'}, 'the batch was pushed');

my $rows = sq(q{SELECT local_key || '|' || op::text || '|' || coalesce(remote_id, '-') || '|' || fields::text || '|'
                       || (values_hash ~ '^[0-9a-f]{32}$')::text || '|' || result || '|' || coalesce(detail, '-')
                  FROM sync.journal WHERE direction = 'out' ORDER BY local_key});
my @j = split /\n/, $rows;
is(scalar @j, 3, 'one journal row per item of the batch');
my %rid = map { $_->{LastName} => $_->{Id} } sf_contacts();
like($j[0], qr/^1\|I\|\Q$rid{Rec1}\E\|\{[A-Za-z,]+\}\|true\|ok\|-$/, 'a create that went: its row, the new remote ID, the fields, a hash, ok');
like($j[1], qr/^2\|I\|\Q$rid{Rec2}\E\|/, 'the other create: its own remote ID');
like($j[2], qr/^3\|I\|-\|.*\|true\|rejected\|INVALID_EMAIL_ADDRESS: .*invalid email address: not an email$/,
	'the refused create: no remote ID, rejected, with the remote\'s code and words');
is(sq(q{SELECT array_to_string(ARRAY(SELECT unnest(fields) ORDER BY 1), ',') FROM sync.journal
         WHERE direction = 'out' AND local_key = '1'}), 'Email,FirstName,LastName',
	'the fields are the remote names sent, one array element each');
is(sq(qq{SELECT bool_and(at >= '$t0' AND at <= clock_timestamp()) FROM sync.journal WHERE direction = 'out'}), 't',
	'the rows carry the time the results came back');
is(sq(q{SELECT count(*) FROM sync.journal WHERE direction = 'out' AND mirror = (SELECT id FROM sync.mirror)}), '3',
	'the rows name the mirror');
isnt(sq(q{SELECT values_hash FROM sync.journal WHERE direction = 'out' AND local_key = '1'}),
	sq(q{SELECT values_hash FROM sync.journal WHERE direction = 'out' AND local_key = '2'}),
	'different values, different hashes');

# Insert row $id and wait until its create is on the network, held there
# 2.5 s by the emulator.
sub create_on_network
{
	my ($id, $name) = @_;
	$emu->control('POST', '/__emulator/faults',
		[ { api => 'salesforce', path => '/composite/sobjects', latency_ms => 2500, count => 1 } ]);
	$emu->control('DELETE', '/__emulator/requests');
	sq(qq{INSERT INTO crm.contact (id, first_name, last_name, email) VALUES ($id, '$name', 'Flight', '$name\@example.com')});
	ok(SyncTest::wait_until(sub { grep { $_->{path} =~ m{/composite/sobjects} } @{ $emu->requests('salesforce') } }, 30),
		"the create of row $id is on the network");
}

# --- a delete queued while the row's create is on the network ---
create_on_network(10, 'Dee');
sq('DELETE FROM crm.contact WHERE id = 10');
is(sq(q{SELECT op::text || '|' || (remote_id IS NULL)::text FROM sync.outbox WHERE local_key = '10' AND slot = 1}), 'D|true',
	'the delete is queued behind the create, with no remote ID yet');
wait_for(q{SELECT count(*) = 0 FROM sync.outbox WHERE local_key = '10'}, 'the create and the delete were pushed');
my $rid10 = sq(q{SELECT remote_id FROM sync.journal WHERE direction = 'out' AND local_key = '10' AND op = 'I'});
like($rid10, qr/^003/, 'the create went and was journaled with its new remote ID');
ok(!grep({ $_->{Id} eq $rid10 } sf_contacts()), 'the record the create made is gone: the delete took its ID');
is(sq(q{SELECT remote_id || '|' || result FROM sync.journal WHERE direction = 'out' AND local_key = '10' AND op = 'D'}),
	"$rid10|ok", 'the delete was journaled with that ID');

# --- the same, with the delete held open past the recording's lock timeout ---
# The write-back cannot take the row: the create's entry is parked as a
# write-back to finish (op W), and the delete, committed later, waits
# behind it.  When the write-back is retried, the row is gone, and the
# delete takes the remote ID then: the record does not stay behind.
sq(q{ALTER SYSTEM SET sync.lock_timeout = '1s'; SELECT pg_reload_conf()});
create_on_network(11, 'Hal');
my $bg = $node->background_psql($db);
$bg->query_safe('BEGIN');
$bg->query_safe('DELETE FROM crm.contact WHERE id = 11');
wait_for(q{SELECT count(*) = 1 FROM sync.errors WHERE local_key = '11' AND operation = 'write-back'},
	'the write-back waited past the lock timeout: parked as a write-back to finish');
$bg->query_safe('COMMIT');
$bg->quit;
my $rid11 = sq(q{SELECT remote_id FROM sync.outbox WHERE local_key = '11' AND op = 'W'});
like($rid11, qr/^003/, 'the parked write-back holds the new remote ID');
ok(grep({ $_->{Id} eq $rid11 } sf_contacts()), 'the record exists remotely meanwhile');
is(sq(q{SELECT (remote_id IS NULL)::text FROM sync.outbox WHERE local_key = '11' AND op = 'D'}), 'true',
	'the delete waits behind it, with no remote ID');
sq(q{SELECT sync.retry('crm.contact')});
wait_for(q{SELECT count(*) = 0 FROM sync.outbox WHERE local_key = '11'}, 'retried: the write-back and the delete are done');
ok(!grep({ $_->{Id} eq $rid11 } sf_contacts()), 'the delete took the remote ID and removed the record');
is(sq(q{SELECT remote_id || '|' || result FROM sync.journal WHERE direction = 'out' AND local_key = '11' AND op = 'D'}),
	"$rid11|ok", 'the delete was journaled with that ID');

done_testing();
