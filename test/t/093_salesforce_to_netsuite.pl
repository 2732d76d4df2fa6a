# docs/recipes/salesforce-to-netsuite.md, end to end through the worker: a
# Salesforce account whose Type becomes a customer type becomes a NetSuite
# customer through one SQL trigger; NetSuite's internal ID is written back
# onto the account by a second; renames follow; nothing echoes, nothing
# loops; no duplicate after a re-qualification or a kill -9 mid-create.
# The triggers are taken from the recipe itself, so the two cannot drift.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use File::Temp qw(tempdir);
use JSON::PP;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $seed_dir = tempdir(CLEANUP => 1);
open(my $sf, '>', "$seed_dir/seed.json") or die;
print $sf encode_json({ netsuite => { fields => { customer => [ { name => 'custentity_sf_account', type => 'text' } ] } } });
close $sf;
my $emu = SyncTest::start_emulator(tls => 1, args => [ '--seed', "$seed_dir/seed.json" ]);
$emu->control('POST', '/__emulator/salesforce/fields/Account',
	{ name => 'NS_Internal_Id__c', type => 'string', length => 20, label => 'NetSuite Internal ID' });

my $node = PostgreSQL::Test::Cluster->new('sfns');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
});
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
sub wait_for { my ($sql, $what) = @_; ok($node->poll_query_until($db, $sql), $what); }
sub ns_customers_of
{
	my ($sfid) = @_;
	return [ grep { ($_->{custentity_sf_account} // '') eq $sfid }
		  @{ $emu->control('GET', '/__emulator/records/netsuite/customer') } ];
}
sub sf_account { return $emu->control('GET', "/__emulator/records/salesforce/Account/$_[0]"); }
# requests that change remote data (not reads, SuiteQL queries or auth)
sub writes
{
	my ($api) = @_;
	return [ grep { $_->{method} ne 'GET' && $_->{path} !~ m{/query/|/suiteql|/oauth|/token|/query(All)?$} }
		  @{ $emu->requests($api) } ];
}

my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
my $ids = $emu->control('POST', '/__emulator/records/salesforce/Account', [
	{ Name => 'Acme', Type => 'Prospect', Phone => '555-0100' },
	{ Name => 'Initech', Type => 'Prospect' } ])->{ids};
my ($acme, $initech) = @$ids;

# the recipe's connections (M2M, the key in a file, as the recipe has it) and
# mirrors, with the emulator's URLs and test keys
sq(qq{CREATE EXTENSION sync; CREATE SCHEMA crm; CREATE SCHEMA erp;
  SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "$url", "ca_file": "$ca",
    "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
  SELECT sync.create_connection('ns', 'netsuite', '{"account": "1234567", "base_url": "$url", "ca_file": "$ca",
    "auth": {"type": "m2m", "client_id": "ns-m2m-client", "certificate_id": "ns-cert-id",
             "private_key_file": "$ENV{SYNC_TREE}/test/emulator/keys/netsuite-m2m-test.key"}}');
  SELECT sync.mirror('sf', 'Account', 'crm.sf_account',
                     fields => ARRAY['Name', 'Type', 'Phone', 'NS_Internal_Id__c'],
                     options => '{"pull_interval": "1 second"}');
  SELECT sync.mirror('ns', 'customer', 'erp.ns_customer',
                     fields  => ARRAY['companyName', 'phone', 'custentity_sf_account'],
                     options => '{"idempotency_field": "externalId", "pull_interval": "1 second"}');
  CREATE UNIQUE INDEX ON erp.ns_customer (custentity_sf_account);});
wait_for("SELECT count(*) = 2 AND bool_and(phase = 'incremental') FROM sync.status", 'both mirrors backfilled');

# the recipe's two triggers, verbatim from the document
my $recipe = slurp_file("$ENV{SYNC_TREE}/docs/recipes/salesforce-to-netsuite.md");
my @blocks = grep { /CREATE FUNCTION/ } ($recipe =~ /```sql\n(.*?)```/sg);
is(scalar(@blocks), 2, 'the recipe has its two trigger blocks');
sq($_) for @blocks;

# 1. the account becomes a customer -> one NetSuite customer, ID written back
$emu->control('PATCH', "/__emulator/records/salesforce/Account/$acme", { Type => 'Customer - Direct' });
SyncTest::wait_until(sub { @{ ns_customers_of($acme) } > 0 }, 60);
my $cust = ns_customers_of($acme);
is(scalar(@$cust), 1, 'the account that became a customer is a NetSuite customer');
is($cust->[0]{companyName}, 'Acme', '... with its name');
my $nsid = $cust->[0]{id};
SyncTest::wait_until(sub { (sf_account($acme)->{NS_Internal_Id__c} // '') eq $nsid }, 60);
is(sf_account($acme)->{NS_Internal_Id__c}, $nsid, "NetSuite's internal ID is written back onto the Salesforce account");
wait_for("SELECT ns_internal_id__c = '$nsid' FROM crm.sf_account WHERE remote_id = '$acme'",
	'... and is back in the local account row');

# 2. settled: no writes to either system while both keep pulling
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'nothing left to push');
sleep 2;    # the account's write-back round trip settles
$emu->control('DELETE', '/__emulator/requests');
sleep 4;
is(scalar(@{ writes('salesforce') }), 0, 'quiescent: no write to Salesforce') or diag(explain(writes('salesforce')));
is(scalar(@{ writes('netsuite') }), 0, '... none to NetSuite (no echo, no loop)') or diag(explain(writes('netsuite')));
ok(scalar(grep { $_->{path} =~ m{/suiteql} } @{ $emu->requests('netsuite') }) > 0,
	'... while NetSuite is still being read');

# 3. a rename in Salesforce follows, as a write of that one field
$emu->control('DELETE', '/__emulator/requests');
$emu->control('PATCH', "/__emulator/records/salesforce/Account/$acme", { Name => 'Acme Corporation' });
SyncTest::wait_until(sub { (ns_customers_of($acme)->[0]{companyName} // '') eq 'Acme Corporation' }, 60);
is(ns_customers_of($acme)->[0]{companyName}, 'Acme Corporation', 'a rename in Salesforce reaches NetSuite');
my @nsw = @{ writes('netsuite') };
is(scalar(@nsw), 1, '... in one write');
is_deeply([ sort keys %{ $nsw[0]{body} // {} } ], ['companyName'], '... of the changed field only');

# 4. re-qualification: Prospect, then a customer type again -> still one
$emu->control('PATCH', "/__emulator/records/salesforce/Account/$acme", { Type => 'Prospect' });
wait_for("SELECT type = 'Prospect' FROM crm.sf_account WHERE remote_id = '$acme'", 'the account is a prospect again');
$emu->control('PATCH', "/__emulator/records/salesforce/Account/$acme", { Type => 'Customer - Channel' });
wait_for("SELECT type = 'Customer - Channel' FROM crm.sf_account WHERE remote_id = '$acme'", '... and a customer again');
wait_for("SELECT count(*) = 0 FROM sync.outbox", '... settled');
is(scalar(@{ ns_customers_of($acme) }), 1, 're-qualification: still one NetSuite customer');

# 5. kill -9 while NetSuite is creating the customer: no duplicate
$emu->control('DELETE', '/__emulator/requests');
$emu->control('POST', '/__emulator/faults',
	{ api => 'netsuite', method => 'PUT', path => '/record/v1/customer/', latency_ms => 3000, count => 1 });
$emu->control('PATCH', "/__emulator/records/salesforce/Account/$initech", { Type => 'Customer - Direct' });
SyncTest::wait_until(sub { scalar(grep { $_->{method} eq 'PUT' } @{ $emu->requests('netsuite') }) > 0 }, 60);
ok(scalar(grep { $_->{method} eq 'PUT' } @{ $emu->requests('netsuite') }), 'the create is on its way to NetSuite');
$node->kill9;
SyncTest::wait_until(sub { @{ ns_customers_of($initech) } > 0 }, 30);
is(scalar(@{ ns_customers_of($initech) }), 1, 'NetSuite created it although the database crashed first');
$node->start;
wait_for("SELECT remote_id IS NOT NULL FROM erp.ns_customer WHERE custentity_sf_account = '$initech'",
	'after the restart, the create is completed');
wait_for("SELECT count(*) = 0 FROM sync.outbox", '... settled');
is(scalar(@{ ns_customers_of($initech) }), 1, 'kill -9 mid-create: still one NetSuite customer');
my $ins = ns_customers_of($initech)->[0]{id};
SyncTest::wait_until(sub { (sf_account($initech)->{NS_Internal_Id__c} // '') eq $ins }, 60);
is(sf_account($initech)->{NS_Internal_Id__c}, $ins, '... and its ID is on the Salesforce account');

is(sq("SELECT count(*) FROM sync.errors"), '0', 'no errors anywhere');
is(sq("SELECT count(*) FROM erp.ns_customer"), '2', 'two NetSuite customers locally, one per customer account');
done_testing();
