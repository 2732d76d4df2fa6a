# The push's database work per batch is proportional to the batch, not to
# the tables (issue #13): claiming a batch from a large outbox and
# recording it against a large table goes through the indexes (the outbox's
# by id and by row, the table's by key and by remote ID), never scans and
# hashes the whole outbox or the whole table.  Proved from the plans that
# auto_explain reports for every statement sync.push() runs, never from
# durations.  The per-row order of a row's entries still holds.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator();
my $node = PostgreSQL::Test::Cluster->new('plans');
$node->init;
# no worker: sync.push() runs the claim and the recording in this backend
$node->append_conf('postgresql.conf', "sync.batch_size = 1\n");
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }

my $url = $emu->{url};
sq(qq{CREATE EXTENSION sync; CREATE SCHEMA crm;
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "$url", "max_in_flight": 4,
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName','Email'],
                   direction => 'push')});

# a table of 40,000 rows already on the remote (their entries dropped:
# nothing to push for them), then 2,000 new rows: 800 a claim (one wave of
# 4 requests of 200), so a batch is 2 % of the table
sq(q{INSERT INTO crm.contact (remote_id, first_name, last_name, email)
     SELECT '003' || lpad(g::text, 15, '0'), 'Old' || g, 'L', 'o' || g || '@example.com'
       FROM generate_series(1, 40000) g;
     SELECT sync._fold();
     DELETE FROM sync.outbox;
     INSERT INTO crm.contact (first_name, last_name, email)
     SELECT 'New' || g, 'L', 'n' || g || '@example.com' FROM generate_series(1, 2000) g;
     ANALYZE crm.contact; ANALYZE sync.outbox});
# ... and each of 100 of them updated, then deleted: entries queued behind
# their creates, which must not overtake them
sq(q{UPDATE crm.contact SET last_name = 'Updated' WHERE first_name LIKE 'New%' AND id % 20 = 0;
     DELETE FROM crm.contact WHERE first_name LIKE 'New%' AND id % 40 = 0});

my ($rc, $out, $err) = $node->psql($db, q{
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
SELECT sync.push('crm.contact')});
is($rc, 0, 'sync.push() ran with every plan reported') or diag($err);

# the plans of the statements that touch the outbox or the table
my @plans = grep { /\b(outbox|contact)\b/ } split(/NOTICE:  duration: /, $err);
ok(@plans >= 8, 'auto_explain reported the claims and the recordings (' . scalar(@plans) . ' plans)');
my @whole = grep { /Seq Scan on (outbox|contact)\b/ } @plans;
is(scalar(@whole), 0, 'no statement of the push scans the whole outbox or the whole table')
  or diag(join("\n----\n", @whole[0 .. ($#whole < 2 ? $#whole : 2)]));
my @hash = grep { /Hash Join/ } @plans;
is(scalar(@hash), 0, 'no statement of the push hashes a table to join a batch to it')
  or diag(join("\n----\n", @hash[0 .. ($#hash < 2 ? $#hash : 2)]));

# and the outcome is the same: the rest goes with the next push (as with
# the worker's next round); every row created once, its update and delete
# after its create
sq("SELECT sync.push('crm.contact')");
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'the queue is empty after the next push');
is(sq("SELECT count(*) FROM sync.errors"), '0', '... with no error');
is(sq(q{SELECT count(remote_id) || ' ' || count(*) FROM crm.contact WHERE first_name LIKE 'New%'}),
	'1950 1950', 'each new row that was not deleted holds its remote ID');
my $records = $emu->control('GET', '/__emulator/records/salesforce/Contact');
my %new;
for my $r (@$records)
{
	next unless ($r->{FirstName} // '') =~ /^New(\d+)$/;
	$new{$1} = $new{$1} ? 'twice' : $r->{LastName};
}
my @wrong = grep {
	my $want = $_ % 40 == 0 ? undef : $_ % 20 == 0 ? 'Updated' : 'L';
	defined $want ? ($new{$_} // '(missing)') ne $want : exists $new{$_}
} 1 .. 2000;
is(scalar(@wrong), 0, 'per row, once on the remote, no update or delete overtook its create')
  or diag("wrong: @wrong[0 .. ($#wrong < 9 ? $#wrong : 9)]");

$node->stop;
$emu->stop;
done_testing();
