# All three systems live at once, through the worker: a HubSpot contact
# qualifying as a customer becomes a Salesforce account and contact (one
# SQL trigger, the contact linked to its account by '@key' before either
# exists remotely), and the account a NetSuite customer (the triggers of
# docs/recipes/salesforce-to-netsuite.md, verbatim), with NetSuite's ID back
# on the account.  Afterwards: quiescence — no write to any system.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
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
	{ name => 'NS_Internal_Id__c', type => 'string', length => 20 });

my $node = PostgreSQL::Test::Cluster->new('three');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
});
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
sub wait_for { my ($sql, $what) = @_; ok($node->poll_query_until($db, $sql), $what); }
sub remote { return $emu->control('GET', "/__emulator/records/$_[0]/$_[1]"); }
sub writes
{
	my ($api) = @_;
	return [ grep { $_->{method} ne 'GET' && $_->{path} !~ m{/search$|/suiteql|/oauth|/token} }
		  @{ $emu->requests($api) } ];
}

my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ { email => 'dana@initrode.example', firstname => 'Dana', lastname => 'Scully', company => 'Initrode',
		lifecyclestage => 'lead' } ]);

sq(qq{CREATE EXTENSION sync; CREATE SCHEMA crm; CREATE SCHEMA erp;
  SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "$url", "ca_file": "$ca",
    "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
  SELECT sync.create_connection('hs', 'hubspot', '{"base_url": "$url", "ca_file": "$ca",
    "auth": {"type": "private_app", "token": "pat-sync-test"}}');
  SELECT sync.create_connection('ns', 'netsuite', '{"account": "1234567", "base_url": "$url", "ca_file": "$ca",
    "auth": {"type": "tba", "consumer_key": "ns-consumer-key", "consumer_secret": "ns-consumer-secret",
             "token_id": "ns-token-id", "token_secret": "ns-token-secret"}}');
  SELECT sync.mirror('hs', 'contacts', 'crm.hs_contact',
                     fields => ARRAY['email', 'firstname', 'lastname', 'company', 'lifecyclestage'],
                     options => '{"pull_interval": "1 second"}');
  SELECT sync.mirror('sf', 'Account', 'crm.sf_account',
                     fields => ARRAY['Name', 'Type', 'Phone', 'NS_Internal_Id__c'],
                     options => '{"pull_interval": "1 second"}');
  SELECT sync.mirror('sf', 'Contact', 'crm.sf_contact',
                     fields => ARRAY['FirstName', 'LastName', 'Email', 'AccountId', 'Sync_Key__c'],
                     options => '{"idempotency_field": "Sync_Key__c", "pull_interval": "1 second"}');
  SELECT sync.mirror('ns', 'customer', 'erp.ns_customer',
                     fields  => ARRAY['companyName', 'phone', 'custentity_sf_account'],
                     options => '{"idempotency_field": "externalId", "pull_interval": "1 second"}');
  CREATE UNIQUE INDEX ON erp.ns_customer (custentity_sf_account);});
wait_for("SELECT count(*) = 4 AND bool_and(phase = 'incremental') FROM sync.status", 'all four mirrors backfilled');

# HubSpot -> Salesforce: the account and its contact, linked by '@key'
sq(q{
CREATE FUNCTION crm.customer_to_salesforce() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    acct bigint;
BEGIN
    IF NEW.lifecyclestage = 'customer' AND NEW.email IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM crm.sf_contact s WHERE lower(s.email) = lower(NEW.email)) THEN
        INSERT INTO crm.sf_account (name, type)
        VALUES (coalesce(NEW.company, NEW.lastname, NEW.email), 'Customer - Direct')
        RETURNING id INTO acct;
        INSERT INTO crm.sf_contact (first_name, last_name, email, account_id)
        VALUES (NEW.firstname, coalesce(NEW.lastname, '(unknown)'), NEW.email, '@' || acct);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER customer_to_salesforce
    AFTER INSERT OR UPDATE OF lifecyclestage ON crm.hs_contact
    FOR EACH ROW EXECUTE FUNCTION crm.customer_to_salesforce();
});
# Salesforce -> NetSuite: the recipe's triggers
my $recipe = slurp_file("$ENV{SYNC_TREE}/docs/recipes/salesforce-to-netsuite.md");
my @blocks = grep { /CREATE FUNCTION/ } ($recipe =~ /```sql\n(.*?)```/sg);
is(scalar(@blocks), 2, "the recipe's two trigger blocks");
sq($_) for @blocks;

my ($dana) = map { $_->{id} } @{ remote('hubspot', 'contacts') };
$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$dana", { lifecyclestage => 'customer' });

SyncTest::wait_until(sub { grep { ($_->{Email} // '') eq 'dana@initrode.example' } @{ remote('salesforce', 'Contact') } }, 60);
my @sfc = grep { ($_->{Email} // '') eq 'dana@initrode.example' } @{ remote('salesforce', 'Contact') };
is(scalar(@sfc), 1, 'the qualified HubSpot contact is a Salesforce contact');
my @acct = grep { ($_->{Name} // '') eq 'Initrode' } @{ remote('salesforce', 'Account') };
is(scalar(@acct), 1, '... with a Salesforce account for her company');
SyncTest::wait_until(sub { ($_ = $emu->control('GET', "/__emulator/records/salesforce/Contact/$sfc[0]{Id}")) && ($_->{AccountId} // '') ne '' }, 30);
is($emu->control('GET', "/__emulator/records/salesforce/Contact/$sfc[0]{Id}")->{AccountId}, $acct[0]{Id},
	'... the contact linked to that account');

SyncTest::wait_until(sub { grep { ($_->{custentity_sf_account} // '') eq $acct[0]{Id} } @{ remote('netsuite', 'customer') } }, 60);
my @cust = grep { ($_->{custentity_sf_account} // '') eq $acct[0]{Id} } @{ remote('netsuite', 'customer') };
is(scalar(@cust), 1, 'the account is a NetSuite customer');
is($cust[0]{companyName}, 'Initrode', '... named after it');
SyncTest::wait_until(sub { ($emu->control('GET', "/__emulator/records/salesforce/Account/$acct[0]{Id}")->{NS_Internal_Id__c} // '') eq $cust[0]{id} }, 60);
is($emu->control('GET', "/__emulator/records/salesforce/Account/$acct[0]{Id}")->{NS_Internal_Id__c}, $cust[0]{id},
	"... and NetSuite's ID is on the Salesforce account");

# quiescence
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'nothing left to push');
sleep 3;
$emu->control('DELETE', '/__emulator/requests');
sleep 5;
for my $api (qw(hubspot salesforce netsuite))
{
	is(scalar(@{ writes($api) }), 0, "settled: no write to $api") or diag(explain(writes($api)));
}
is(scalar(grep { ($_->{properties}{email} // '') eq 'dana@initrode.example' } @{ remote('hubspot', 'contacts') }), 1,
	'HubSpot still has one Dana');
is(sq("SELECT count(*) FROM sync.errors"), '0', 'no errors anywhere');
done_testing();
