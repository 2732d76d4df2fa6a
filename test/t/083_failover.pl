# Failover: a streaming standby (pg_basebackup) sends nothing and logs no
# error while it is a standby; the primary dies (-m immediate) with a batch
# claimed and requests in flight; the promoted standby's workers start by
# themselves, release the batches the old primary had claimed (not waiting
# for their lease) and push every committed write: with an idempotency
# field nothing is duplicated, without one at most the in-flight batch (one
# claim: sync.batch_size entries rounded up to whole waves of the provider's
# batch maximum x max_in_flight; here 200) is sent again.  Two databases, so that a wave of each is in flight at once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
# sync.lease stays long (5 min, more than the waits below): the promoted
# standby must release the old primary's claims, not wait them out
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
sync.lease = '300s'
sync.batch_size = 200
});
$primary->start;
sub sq { my ($db, $sql) = @_; return $primary->safe_psql($db, $sql); }
sub sf_records { return $emu->control('GET', "/__emulator/records/salesforce/$_[0]"); }
sub requests { return scalar(@{ $emu->requests('salesforce') }); }

my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
# database a: contacts with an idempotency field; database b: leads without
for my $db ('a', 'b')
{
	$primary->safe_psql('postgres', "CREATE DATABASE $db");
	sq($db, qq{CREATE EXTENSION sync; CREATE SCHEMA crm;
	  SELECT sync.create_connection('sf', 'salesforce', '{
	    "login_url": "$url", "ca_file": "$ca", "max_in_flight": 1,
	    "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}')});
}
sq('a', q{SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName','Sync_Key__c'],
        options => '{"idempotency_field": "Sync_Key__c"}')});
sq('b', q{SELECT sync.mirror('sf', 'Lead', 'crm.lead', fields => ARRAY['LastName','Company'])});
for my $db ('a', 'b')
{
	$primary->poll_query_until($db, "SELECT phase = 'incremental' FROM sync.status")
	  or die "backfill did not finish in $db";
}

$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup('standby');
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'a streaming standby');
is($standby->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'sync%'}), '0',
	'the standby runs no sync supervisor or worker');

# slow pushes (five waves of 200 records per database): a wave of each
# database is in flight when the primary dies
$emu->control('POST', '/__emulator/faults', { api => 'salesforce', path => '/composite/sobjects', latency_ms => 1000 });
sq('a', q{INSERT INTO crm.contact (first_name, last_name) SELECT 'C' || g, 'Fail' || g FROM generate_series(1, 1000) g});
sq('b', q{INSERT INTO crm.lead (last_name, company) SELECT 'Lead' || g, 'Co' FROM generate_series(1, 1000) g});
ok(SyncTest::wait_until(sub { @{ sf_records('Contact') } >= 200 && @{ sf_records('Lead') } >= 200 }),
	'the primary is pushing in both databases');
$primary->stop('immediate');
ok(1, 'the primary stopped with -m immediate, mid-push');
my $claimed = 0;
$claimed += $standby->safe_psql($_, q{SELECT count(*) FROM sync.outbox WHERE claimed_until > now()}) for ('a', 'b');
ok($claimed > 0, "entries claimed by the primary are left on the standby ($claimed)");

my $before = requests();
usleep(3_000_000);
is(requests(), $before, 'the standby sends nothing while it is a standby');
my $standby_log = slurp_file($standby->logfile);
unlike($standby_log, qr/sync (supervisor|worker)|sync:/, 'the standby logged nothing of sync');
my @errs = grep { !/WAL stream|primary server|walreceiver|connection to server|could not connect|terminating walreceiver|server closed the connection|This probably means/ }
  ($standby_log =~ /^.*(?:ERROR|FATAL|PANIC).*$/mg);
is(scalar(@errs), 0, 'and no error but losing its primary') or diag(join("\n", @errs));

# promotion: the workers start by themselves and release the old claims
my $log_at = -s $standby->logfile;
$standby->promote;
$emu->control('DELETE', '/__emulator/faults');
ok($standby->poll_query_until('postgres', q{SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'sync worker'}),
	'the promoted standby starts its workers by itself');
for my $db ('a', 'b')
{
	ok($standby->poll_query_until($db, 'SELECT count(*) = 0 FROM sync.outbox'),
		"every committed write of database $db is pushed (long before the old lease would run out)")
	  or diag($standby->safe_psql($db, 'SELECT mirror, op, state, claimed_until, error_message, count(*) FROM sync.outbox GROUP BY 1,2,3,4,5'));
}
my @released = slurp_file($standby->logfile, $log_at) =~ /sync: released (\d+) outbox entries claimed by processes that are gone/g;
my $nreleased = 0;
$nreleased += $_ for @released;
is($nreleased, $claimed, 'it released the batches the old primary had claimed');

my @c = grep { ($_->{LastName} // '') =~ /^Fail\d+$/ } @{ sf_records('Contact') };
my %cd = map { $_->{LastName} => 1 } @c;
is(scalar(keys %cd), 1000, 'every contact reached Salesforce');
is(scalar(@c), 1000, '... exactly once (idempotency field)');
my @l = grep { ($_->{LastName} // '') =~ /^Lead\d+$/ } @{ sf_records('Lead') };
my %ld = map { $_->{LastName} => 1 } @l;
is(scalar(keys %ld), 1000, 'every lead reached Salesforce');
my $dups = scalar(@l) - scalar(keys %ld);
ok($dups <= 200, "without an idempotency field at most the in-flight batch is sent again ($dups duplicates, a batch is 200)");
is($standby->safe_psql('b', q{SELECT count(*) || ' ' || count(DISTINCT remote_id) FROM crm.lead}), '1000 1000',
	'locally each lead has its own remote ID');

$standby->stop;
done_testing();
