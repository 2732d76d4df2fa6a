# The cross-system workflow of docs/recipes/cross-system.md, end to end
# through the worker: a plain SQL trigger on the HubSpot mirror inserts
# sales-qualified contacts into the Salesforce mirror, matched by email.
# A contact created in HubSpot appears in Salesforce within seconds, with no
# echo into HubSpot, no loop and no duplicate.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use lib "$ENV{SYNC_TREE}/test/perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('xs');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
});
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
sub wait_for { my ($sql, $what) = @_; ok($node->poll_query_until($db, $sql), $what); }
sub sf_with_email
{
	my ($email) = @_;
	return [ grep { lc($_->{Email} // '') eq lc($email) }
		  @{ $emu->control('GET', '/__emulator/records/salesforce/Contact') } ];
}
sub writes
{
	my ($api) = @_;
	return [ grep { $_->{method} ne 'GET' && $_->{path} !~ m{/search$|/oauth|/token} } @{ $emu->requests($api) } ];
}

my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ { FirstName => 'Ann', LastName => 'Existing', Email => 'ann@example.com' } ]);
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ map { { email => "known$_\@example.com", firstname => "K$_", lifecyclestage => 'lead' } } 1 .. 5 ]);

sq(qq{CREATE EXTENSION sync; CREATE SCHEMA crm;
  SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "$url", "ca_file": "$ca",
    "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
  SELECT sync.create_connection('hs', 'hubspot', '{"base_url": "$url", "ca_file": "$ca",
    "auth": {"type": "private_app", "token": "pat-sync-test"}}');
  SELECT sync.mirror('sf', 'Contact', 'crm.sf_contact', fields => ARRAY['FirstName','LastName','Email'],
                     options => '{"pull_interval": "1 second"}');
  SELECT sync.mirror('hs', 'contacts', 'crm.hs_contact',
                     fields => ARRAY['email','firstname','lastname','lifecyclestage'],
                     options => '{"idempotency_field": "email", "pull_interval": "1 second"}');});
wait_for("SELECT bool_and(phase = 'incremental') FROM sync.status", 'both mirrors backfilled');
is(sq('SELECT count(*) FROM crm.sf_contact'), '1', 'Salesforce: one contact');
is(sq('SELECT count(*) FROM crm.hs_contact'), '5', 'HubSpot: five contacts');

# the recipe's trigger, verbatim
sq(q{
CREATE FUNCTION crm.qualified_to_salesforce() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.lifecyclestage = 'salesqualifiedlead' AND NEW.email IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM crm.sf_contact s WHERE lower(s.email) = lower(NEW.email)) THEN
        INSERT INTO crm.sf_contact (first_name, last_name, email)
        VALUES (NEW.firstname, coalesce(NEW.lastname, '(unknown)'), NEW.email);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER qualified_to_salesforce
    AFTER INSERT OR UPDATE OF lifecyclestage ON crm.hs_contact
    FOR EACH ROW EXECUTE FUNCTION crm.qualified_to_salesforce();
});

# 1. a contact created in HubSpot as a sales-qualified lead appears in Salesforce
$emu->control('DELETE', '/__emulator/requests');
my $t0 = time;
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ { email => 'lea@example.com', firstname => 'Lea', lastname => 'Lead', lifecyclestage => 'salesqualifiedlead' } ]);
SyncTest::wait_until(sub { @{ sf_with_email('lea@example.com') } > 0 }, 30);
my $secs = time - $t0;
my $lea = sf_with_email('lea@example.com');
is(scalar(@$lea), 1, 'created in HubSpot, the contact appears in Salesforce');
ok($secs < 10, sprintf('... within %.1f s (pull interval 1 s)', $secs));
is("$lea->[0]{FirstName} $lea->[0]{LastName}", 'Lea Lead', '... with its name');
wait_for("SELECT remote_id IS NOT NULL FROM crm.sf_contact WHERE email = 'lea\@example.com'",
	'the local Salesforce row has its Salesforce ID');

# 2. no echo and no loop: once quiet, neither remote receives any write
sleep 3;
is(scalar(@{ writes('hubspot') }), 0, 'HubSpot received no write: the inbound contact was not echoed back');
$emu->control('DELETE', '/__emulator/requests');
sleep 4;
is(scalar(@{ writes('salesforce') }) + scalar(@{ writes('hubspot') }), 0,
	'after quiescence no write goes to either remote (no loop)');
is(sq("SELECT count(*) FROM crm.sf_contact WHERE lower(email) = 'lea\@example.com'"), '1',
	'locally one Salesforce row for her (the pulled record is the pushed one, not a copy)');

# 3. no duplicate: a person Salesforce already has, then qualified in HubSpot
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ { email => 'ANN@example.com', firstname => 'Ann', lastname => 'Existing', lifecyclestage => 'salesqualifiedlead' } ]);
wait_for("SELECT count(*) = 1 FROM crm.hs_contact WHERE email = 'ann\@example.com'", 'Ann arrived from HubSpot');
sleep 3;
is(scalar(@{ sf_with_email('ann@example.com') }), 1, 'Salesforce still has one Ann: matched by email, case-insensitive');

# ... a lead qualified in HubSpot later (an update, not a create)
my $k1 = sq("SELECT remote_id FROM crm.hs_contact WHERE email = 'known1\@example.com'");
$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$k1", { lifecyclestage => 'salesqualifiedlead' });
SyncTest::wait_until(sub { @{ sf_with_email('known1@example.com') } > 0 }, 30);
is(scalar(@{ sf_with_email('known1@example.com') }), 1, 'a contact qualified later in HubSpot reaches Salesforce');
# ... and edited again, even back and forth through the stage
$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$k1", { lifecyclestage => 'opportunity' });
wait_for("SELECT lifecyclestage = 'opportunity' FROM crm.hs_contact WHERE remote_id = '$k1'", '... moved on in HubSpot');
$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$k1",
	{ lifecyclestage => 'salesqualifiedlead', firstname => 'Kay' });
wait_for("SELECT firstname = 'Kay' FROM crm.hs_contact WHERE remote_id = '$k1'", '... and back, with a new name');
sleep 3;
is(scalar(@{ sf_with_email('known1@example.com') }), 1, '... still one Salesforce contact for that person');

# 4. a contact that does not qualify goes nowhere
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ { email => 'cold@example.com', firstname => 'Cole', lifecyclestage => 'subscriber' } ]);
wait_for("SELECT count(*) = 1 FROM crm.hs_contact WHERE email = 'cold\@example.com'", 'a subscriber arrived from HubSpot');
sleep 2;
is(scalar(@{ sf_with_email('cold@example.com') }), 0, '... and was not sent to Salesforce');
is(sq("SELECT count(*) FROM sync.errors"), '0', 'no errors anywhere');
is(sq("SELECT count(*) FROM crm.sf_contact"), '3', 'Salesforce mirror: Ann, Lea, Kay and nobody else');

$node->stop;
$emu->stop;
done_testing();
