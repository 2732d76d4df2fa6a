# Issue 14, items 7 and 4: one outbound record that cannot be built must not
# stop the mirror's push.  An unresolvable reference ('@no-such-key' in a
# bigint-keyed reference, '@999999' for a row that does not exist) and an
# invalid remote ID ('a,b', '003xx/../x', two real IDs joined by a comma) are
# each parked in sync.errors (direction 'out', a code and a message naming the
# column) while the other entries of the same batch are sent, and later
# writes to the mirror are pushed.  A bad remote ID never reaches a request:
# it cannot widen a delete to other records.  Function mode (sync.push()),
# then the reference case again through the background worker.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('poison_out');
$node->init;
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }

sub q_or_empty
{
	my ($sql) = @_;
	my ($rc, $out, $err) = $node->psql($db, $sql);
	diag("query failed: $sql\n$err") if $rc != 0;
	return $rc == 0 ? $out : '';
}
sub sf_record
{
	my ($id) = @_;
	my ($r) = grep { $_->{Id} eq $id } @{ $emu->control('GET', '/__emulator/records/salesforce/Contact') };
	return $r;
}
sub sf_by_last
{
	my ($last) = @_;
	my ($r) = grep { ($_->{LastName} // '') eq $last } @{ $emu->control('GET', '/__emulator/records/salesforce/Contact') };
	return $r;
}
# one sync.errors row: direction|operation|error_code|error_message
sub error_of
{
	my ($where) = @_;
	return q_or_empty("SELECT direction || '|' || operation || '|' || error_code || '|' || error_message
	                     FROM sync.errors WHERE local_table = 'crm.contact'::regclass AND $where");
}

sq('CREATE EXTENSION sync; CREATE SCHEMA crm;');
SyncTest::sf_connect($node, $db, $emu, 'sf');

my $acc = $emu->control('POST', '/__emulator/records/salesforce/Account', [ { Name => 'Parent Co' } ])->{ids}[0];
my @rid = @{ $emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "F$_", LastName => "Out$_", Email => "out$_\@example.com" } } 1 .. 6 ])->{ids} };
unshift @rid, undef;    # $rid[n] is OutN's
sq(q{SELECT sync.mirror('sf', 'Account', 'crm.account', fields => ARRAY['Name'])});
sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName','Email','AccountId'])});
sq("SELECT sync.pull('crm.account'); SELECT sync.pull('crm.contact');");
is(sq('SELECT count(*) FROM crm.contact'), '6', 'setup: six contacts pulled');
my $acc_key = sq("SELECT id FROM crm.account WHERE remote_id = '$acc'");

# --- unresolvable references, in one batch with good entries ---
sq(qq{INSERT INTO crm.contact (first_name, last_name, account_id) VALUES
        ('Ok', 'RefGood1', '\@$acc_key'),
        ('Bad', 'RefNoKey', '\@no-such-key'),
        ('Bad', 'RefMissing', '\@999999'),
        ('Ok', 'RefGood2', NULL)});
$emu->control('DELETE', '/__emulator/requests');
my ($rc, $out, $err) = $node->psql($db, "SELECT sync.push('crm.contact')");
is($rc, 0, 'references: the push does not fail because of unresolvable references') or diag($err);
like(sq("SELECT coalesce(remote_id, 'none') FROM crm.contact WHERE last_name = 'RefGood1'"), qr/^003/,
	'references: the good entry with a resolvable reference was sent');
like(sq("SELECT coalesce(remote_id, 'none') FROM crm.contact WHERE last_name = 'RefGood2'"), qr/^003/,
	'references: the other good entry of the batch was sent');
is((sf_by_last('RefGood1') // {})->{AccountId}, $acc, 'references: the remote has it, linked to the account');
ok(!sf_by_last('RefNoKey') && !sf_by_last('RefMissing'), 'references: the bad entries were not sent');
my ($dir, $op, $code, $msg) = split /\|/, error_of(
	"local_key = (SELECT id::text FROM crm.contact WHERE last_name = 'RefNoKey')"), 4;
is($dir // '', 'out', "references: '\@no-such-key' is parked in sync.errors, direction 'out'");
is($op // '', 'insert', '... operation insert');
is($code // '', 'UNRESOLVED_REFERENCE', '... error_code UNRESOLVED_REFERENCE');
like($msg // '', qr/account_id/, '... the message names the column');
($dir, $op, $code, $msg) = split /\|/, error_of(
	"local_key = (SELECT id::text FROM crm.contact WHERE last_name = 'RefMissing')"), 4;
is($dir // '', 'out', "references: '\@999999' (no such row) is parked in sync.errors, direction 'out'");
is($code // '', 'UNRESOLVED_REFERENCE', '... error_code UNRESOLVED_REFERENCE');
like($msg // '', qr/account_id/, '... the message names the column');
# later writes to the mirror are pushed
sq("UPDATE crm.contact SET first_name = 'AfterRef' WHERE last_name = 'RefGood2'");
$node->psql($db, "SELECT sync.push('crm.contact')");
is((sf_by_last('RefGood2') // {})->{FirstName}, 'AfterRef', 'references: a later write to the mirror is pushed');
# the fix: a resolvable reference, then sync.retry sends them
sq("UPDATE crm.contact SET account_id = '\@$acc_key' WHERE last_name IN ('RefNoKey', 'RefMissing')");
$node->psql($db, "SELECT sync.retry('crm.contact'); SELECT sync.push('crm.contact');");
is((sf_by_last('RefNoKey') // {})->{AccountId}, $acc, 'references: after the fix and sync.retry the entry is sent');
is(q_or_empty("SELECT count(*) FROM sync.errors WHERE local_table = 'crm.contact'::regclass"), '0',
	'references: nothing is left in sync.errors');

# --- invalid remote IDs, in one batch with good entries ---
my $widen = "$rid[3],$rid[4]";    # two real IDs: a delete by it would remove both
# an updated row whose remote-id column was set to 'a,b'
sq("UPDATE crm.contact SET remote_id = 'a,b', first_name = 'CommaId' WHERE last_name = 'Out1'");
# a row inserted with its remote ID set adopts a remote record: an update
sq("INSERT INTO crm.contact (remote_id, first_name, last_name) VALUES ('003xx/../x', 'Adopt', 'AdoptBad')");
# a row whose remote ID names two records, then deleted
sq("UPDATE crm.contact SET remote_id = '$widen' WHERE last_name = 'Out2'");
sq("DELETE FROM crm.contact WHERE last_name = 'Out2'");
# good entries of the same batch: an update and a delete
sq("UPDATE crm.contact SET first_name = 'Good5' WHERE last_name = 'Out5'");
sq("DELETE FROM crm.contact WHERE last_name = 'Out6'");
$emu->control('DELETE', '/__emulator/requests');
($rc, $out, $err) = $node->psql($db, "SELECT sync.push('crm.contact')");
is($rc, 0, 'remote IDs: the push does not fail because of invalid remote IDs') or diag($err);
is((sf_record($rid[5]) // {})->{FirstName}, 'Good5', 'remote IDs: the good update of the batch was sent');
ok(!sf_record($rid[6]), 'remote IDs: the good delete of the batch was sent');
ok(sf_record($rid[3]) && sf_record($rid[4]), 'remote IDs: a remote ID holding two IDs did not widen a delete to both records');
ok(sf_record($rid[1]) && sf_record($rid[2]), 'remote IDs: the records the rows held before are untouched');
for my $bad ('a,b', '003xx/../x', $widen)
{
	my @hits = SyncTest::request_mentions($emu, 'salesforce', $bad);
	is(scalar(@hits), 0, "remote IDs: no request path, query or body contains '$bad'")
	  or diag(join "\n", map { "$_->{method} $_->{path}?" . ($_->{query} // '') } @hits);
}
($dir, $op, $code, $msg) = split /\|/, error_of("remote_id = 'a,b'"), 4;
is($dir // '', 'out', "remote IDs: the update of the row holding 'a,b' is parked, direction 'out'");
is($op // '', 'update', '... operation update');
is($code // '', 'INVALID_REMOTE_ID', '... error_code INVALID_REMOTE_ID');
like($msg // '', qr/remote_id/, '... the message names the remote-id column');
($dir, $op, $code, $msg) = split /\|/, error_of(q{remote_id = '003xx/../x'}), 4;
is($code // '', 'INVALID_REMOTE_ID', "remote IDs: the adopted row holding '003xx/../x' is parked with INVALID_REMOTE_ID");
is($op // '', 'update', '... operation update');
like($msg // '', qr/remote_id/, '... the message names the remote-id column');
($dir, $op, $code, $msg) = split /\|/, error_of("remote_id = '$widen'"), 4;
is($code // '', 'INVALID_REMOTE_ID', 'remote IDs: the delete by a remote ID holding a comma is parked with INVALID_REMOTE_ID');
is($op // '', 'delete', '... operation delete');
# later writes are pushed
sq("UPDATE crm.contact SET first_name = 'Later5' WHERE last_name = 'Out5'");
$node->psql($db, "SELECT sync.push('crm.contact')");
is((sf_record($rid[5]) // {})->{FirstName}, 'Later5', 'remote IDs: a later write to the mirror is pushed');
is(sq("SELECT count(*) FROM sync.outbox o JOIN sync.mirror m ON m.id = o.mirror
        WHERE m.local_table = 'crm.contact'::regclass AND o.state <> 'parked'"), '0',
	'remote IDs: nothing but the parked entries is left in the outbox')
  or diag(sq("SELECT string_agg(op::text || ' ' || coalesce(remote_id, '-') || ' ' || state || ' ' || coalesce(error_code, '-'), E'\\n')
                FROM sync.outbox WHERE state <> 'parked'"));

# --- the background worker: an unresolvable reference does not hold back the rest ---
sq("DELETE FROM sync.outbox");    # the function-mode leftovers are not this part's business
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
sync.lease = '10s'
});
$node->restart;
sq("INSERT INTO crm.contact (first_name, last_name, account_id) VALUES ('Bad', 'WrkNoKey', '\@no-such-key')");
sq("INSERT INTO crm.contact (first_name, last_name) VALUES ('Ok', 'WrkGood')");
my $ok = SyncTest::poll_true($node, $db, "SELECT remote_id IS NOT NULL FROM crm.contact WHERE last_name = 'WrkGood'", 20);
ok($ok, 'worker: a write queued after an unresolvable reference is pushed');
my $wait = $ok ? 20 : 3;
ok(SyncTest::poll_true($node, $db, "SELECT count(*) = 1 FROM sync.errors e JOIN crm.contact c ON c.id::text = e.local_key
      WHERE c.last_name = 'WrkNoKey' AND e.direction = 'out' AND e.error_code = 'UNRESOLVED_REFERENCE'", $wait),
	'worker: the unresolvable reference is parked (UNRESOLVED_REFERENCE)');
sq("UPDATE crm.contact SET first_name = 'WrkLater' WHERE last_name = 'WrkGood'");
ok(SyncTest::wait_until(sub { ((sf_by_last('WrkGood') // {})->{FirstName} // '') eq 'WrkLater' }, $wait),
	'worker: a later write to the mirror is pushed');

$node->stop;
$emu->stop;
done_testing();
