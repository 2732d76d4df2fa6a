# Issue 14, item 9: a failure writing a push result back into the user's row
# never makes sync create the remote record twice.
#
# What this proves: a user BEFORE UPDATE trigger refuses the write-back of a
# new remote ID (it raises when OLD.remote_id IS NULL AND NEW.remote_id IS
# NOT NULL, unless the flag table crm.wb_allow says allow).  For a mirror
# without an idempotency field (each re-send would create another record) and
# one with Sync_Key__c as idempotency field (each re-send would be another
# upsert), both
#   - in function mode: sync.push() called several times, and
#   - with the background worker and sync.lease = 10s, waiting well past the
#     lease,
# Salesforce receives exactly ONE create for the row and holds exactly one
# record; the row's entry is in sync.errors with direction 'out', error_code
# 'WRITE_BACK_FAILED', remote_id = the new Salesforce Id and the trigger's
# error text; after the user allows the write-back, sync.retry(table) (and a
# push) writes that Id into the row without creating anything, and
# sync.errors is empty.
#
# The mirrors are push-only, so that no pull brings the created record back
# as a row of its own: what is tested is the push and its write-back alone.
#
# On the original code the write-back failure rolls back the outcome with it:
# every push (and, in the worker, every lease expiry) sends the create again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
my $db = 'postgres';

# the SQL's output, or "ERROR: <message>" (so that a missing column is a
# failed assertion, not a died test)
sub qry
{
	my ($node, $sql) = @_;
	my ($rc, $out, $err) = $node->psql($db, $sql);
	return $rc == 0 ? $out : "ERROR: $err";
}

sub remote_with
{
	my ($marker) = @_;
	return [ grep { ($_->{LastName} // '') eq $marker }
		  @{ $emu->control('GET', '/__emulator/records/salesforce/Contact') } ];
}

# write requests (creates, upserts, updates) that carried the record
sub writes_with
{
	my ($marker) = @_;
	my $json = JSON::PP->new->canonical;
	return scalar grep {
		$_->{method} ne 'GET' && $_->{path} !~ /oauth2/
		  && $json->encode($_->{body} // {}) =~ /\Q$marker\E/
	} @{ $emu->requests('salesforce') };
}

sub setup_node
{
	my ($name, $worker) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', qq{
sync.poll_interval = '1s'
sync.lease = '10s'
sync.http_timeout = '3s'
});
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'sync'\n") if $worker;
	$node->start;
	$node->safe_psql($db, qq{CREATE EXTENSION sync; CREATE SCHEMA crm;
  SELECT sync.create_connection('sf', 'salesforce', '{
    "login_url": "$url", "ca_file": "$ca",
    "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
  SELECT sync.mirror('sf', 'Contact', 'crm.c_plain', fields => ARRAY['FirstName','LastName'],
                     direction => 'push');
  SELECT sync.mirror('sf', 'Contact', 'crm.c_idem', fields => ARRAY['FirstName','LastName','Sync_Key__c'],
                     direction => 'push', options => '{"idempotency_field": "Sync_Key__c"}');
  CREATE TABLE crm.wb_allow (allow boolean NOT NULL);
  INSERT INTO crm.wb_allow VALUES (false);
  CREATE FUNCTION crm.refuse_write_back() RETURNS trigger LANGUAGE plpgsql AS \$\$
  BEGIN
      IF OLD.remote_id IS NULL AND NEW.remote_id IS NOT NULL
         AND NOT (SELECT allow FROM crm.wb_allow) THEN
          RAISE EXCEPTION 'refuse_write_back: remote ID % refused', NEW.remote_id;
      END IF;
      RETURN NEW;
  END \$\$;
  CREATE TRIGGER refuse_write_back BEFORE UPDATE ON crm.c_plain
      FOR EACH ROW EXECUTE FUNCTION crm.refuse_write_back();
  CREATE TRIGGER refuse_write_back BEFORE UPDATE ON crm.c_idem
      FOR EACH ROW EXECUTE FUNCTION crm.refuse_write_back();});
	return $node;
}

# after the sends: one create, one record, the entry parked as WRITE_BACK_FAILED
sub check_parked
{
	my ($node, $what, $table, $marker) = @_;
	my $recs = remote_with($marker);
	is(scalar(@$recs), 1, "$what: Salesforce holds exactly one record for the row");
	is(writes_with($marker), 1, "$what: exactly one create request was sent for it");
	my $rid = @$recs ? $recs->[0]{Id} : 'none';
	is(qry($node, "SELECT direction || '|' || error_code || '|' || remote_id FROM sync.errors
	             WHERE local_table = '$table'::regclass"),
		"out|WRITE_BACK_FAILED|$rid", "$what: sync.errors shows the entry: out, WRITE_BACK_FAILED, the new remote ID");
	like(qry($node, "SELECT error_message FROM sync.errors WHERE local_table = '$table'::regclass"),
		qr/refuse_write_back: remote ID \Q$rid\E refused/, "$what: ... with the trigger's own error text");
	is(qry($node, "SELECT count(*) FROM $table WHERE last_name = '$marker' AND remote_id IS NULL"), '1',
		"$what: the local row is intact, without a remote ID yet");
	return $rid;
}

# after the user allows the write-back and retries: the ID arrives, nothing is created
sub check_retried
{
	my ($node, $what, $table, $marker, $rid) = @_;
	is(qry($node, "SELECT remote_id FROM $table WHERE last_name = '$marker'"), $rid,
		"$what: after the fix and sync.retry the row holds the remote ID");
	is(scalar(@{ remote_with($marker) }), 1, "$what: still one record in Salesforce");
	is(writes_with($marker), 1, "$what: and still only the one create request");
	is(qry($node, "SELECT count(*) FROM sync.errors WHERE local_table = '$table'::regclass"), '0',
		"$what: sync.errors is empty for the table");
	is(qry($node, "SELECT count(*) FROM sync.outbox o JOIN sync.mirror m ON m.id = o.mirror
	             WHERE m.local_table = '$table'::regclass"), '0', "$what: nothing left queued");
}

# --- function mode: sync.push() called again and again ---
my $fn = setup_node('wb_fn', 0);
for my $table ('crm.c_plain', 'crm.c_idem')
{
	my $what = "function mode, $table";
	my $marker = "WBF_" . ($table =~ s/.*\.//r);
	$fn->safe_psql($db, "INSERT INTO $table (first_name, last_name) VALUES ('W', '$marker')");
	$fn->psql($db, "SELECT sync.push('$table')") for 1 .. 4;
	my $rid = check_parked($fn, $what, $table, $marker);
	$fn->safe_psql($db, "UPDATE crm.wb_allow SET allow = true");
	$fn->psql($db, "SELECT sync.retry('$table')");
	$fn->psql($db, "SELECT sync.push('$table')");
	check_retried($fn, $what, $table, $marker, $rid);
	$fn->safe_psql($db, "UPDATE crm.wb_allow SET allow = false");
}
$fn->stop;

# --- the worker, waiting well past sync.lease ---
my $wk = setup_node('wb_worker', 1);
ok($wk->poll_query_until($db, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'sync worker'"),
	'the worker runs');
$wk->safe_psql($db, "INSERT INTO crm.c_plain (first_name, last_name) VALUES ('W', 'WBW_c_plain');
                     INSERT INTO crm.c_idem (first_name, last_name) VALUES ('W', 'WBW_c_idem');");
ok(SyncTest::wait_until(sub { @{ remote_with('WBW_c_plain') } && @{ remote_with('WBW_c_idem') } }, 30),
	'the worker sent both creates');
# two and a half leases: a claim kept by a failed write-back would expire twice
sleep 25;
my %rid;
for my $table ('crm.c_plain', 'crm.c_idem')
{
	my $marker = "WBW_" . ($table =~ s/.*\.//r);
	$rid{$table} = check_parked($wk, "worker, $table", $table, $marker);
}
$wk->safe_psql($db, "UPDATE crm.wb_allow SET allow = true");
for my $table ('crm.c_plain', 'crm.c_idem')
{
	my $marker = "WBW_" . ($table =~ s/.*\.//r);
	$wk->psql($db, "SELECT sync.retry('$table')");
	SyncTest::wait_until(sub { qry($wk, "SELECT remote_id IS NOT NULL FROM $table WHERE last_name = '$marker'") eq 't' }, 20);
	check_retried($wk, "worker, $table", $table, $marker, $rid{$table});
}
$wk->stop;
$emu->stop;
done_testing();
