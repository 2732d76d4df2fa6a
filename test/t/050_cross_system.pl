# The cross-system workflow of docs/recipes/cross-system.md, end to end
# through the worker: a plain SQL trigger on the HubSpot mirror inserts
# sales-qualified contacts into the Salesforce mirror, matched by email.
# A contact created in HubSpot appears in Salesforce within seconds, with no
# echo into HubSpot, no loop and no duplicate; the same person arriving in
# both systems at once gives one contact when Salesforce's copy is seen
# first and two when HubSpot's is (the limit the recipe documents); the
# recipe's two-way variant does not ping-pong.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
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
# requests that change remote data (not pulls: GETs and HubSpot searches; not auth)
sub writes
{
	my ($api) = @_;
	return [ grep { $_->{method} ne 'GET' && $_->{path} !~ m{/search$|/oauth|/token} } @{ $emu->requests($api) } ];
}
sub pulls
{
	my ($api) = @_;
	return [ grep { $_->{path} =~ m{/query(All)?(/|$)|/search$} } @{ $emu->requests($api) } ];
}

my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ { FirstName => 'Ann', LastName => 'Existing', Email => 'ann@example.com' } ]);
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ map { { email => "known$_\@example.com", firstname => "K$_", lifecyclestage => 'lead' } } 1 .. 5 ]);

# the recipe's mirrors (Salesforce creates go through the external ID
# Sync_Key__c, so a retried create never duplicates)
sq(qq{CREATE EXTENSION sync; CREATE SCHEMA crm;
  SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "$url", "ca_file": "$ca",
    "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
  SELECT sync.create_connection('hs', 'hubspot', '{"base_url": "$url", "ca_file": "$ca",
    "auth": {"type": "private_app", "token": "pat-sync-test"}}');
  SELECT sync.mirror('sf', 'Contact', 'crm.sf_contact',
                     fields => ARRAY['FirstName','LastName','Email','Sync_Key__c'],
                     options => '{"idempotency_field": "Sync_Key__c", "pull_interval": "1 second"}');
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
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ { email => 'lea@example.com', firstname => 'Lea', lastname => 'Lead', lifecyclestage => 'salesqualifiedlead' } ]);
# (how fast: bench/; here only that it arrives, within the wait's bound)
SyncTest::wait_until(sub { @{ sf_with_email('lea@example.com') } > 0 }, 30);
my $lea = sf_with_email('lea@example.com');
is(scalar(@$lea), 1, 'created in HubSpot, the contact appears in Salesforce');
is("$lea->[0]{FirstName} $lea->[0]{LastName}", 'Lea Lead', '... with its name');
like($lea->[0]{Sync_Key__c} // '', qr/^sync-/, '... created through its idempotency key');
wait_for("SELECT remote_id = '$lea->[0]{Id}' FROM crm.sf_contact WHERE email = 'lea\@example.com'",
	'the local Salesforce row has her Salesforce ID');

# 2. no echo and no loop: HubSpot gets no write at all; Salesforce gets the
# one create; then, while both mirrors keep pulling, no write goes anywhere
sleep 3;
my $sfw = writes('salesforce');
is(scalar(@$sfw), 1, 'Salesforce received one write since the HubSpot create');
is_deeply([ map { $_->{Email} } map { @{ $_->{body}{records} // [] } } @$sfw ], [ 'lea@example.com' ],
	'... the create of Lea');
is(scalar(@{ writes('hubspot') }), 0, 'HubSpot received no write: the inbound contact was not echoed back');
$emu->control('DELETE', '/__emulator/requests');
sleep 4;
ok(@{ pulls('salesforce') } >= 2 && @{ pulls('hubspot') } >= 2,
	sprintf('quiet period: the worker kept pulling (%d Salesforce, %d HubSpot pulls in 4 s)',
		scalar(@{ pulls('salesforce') }), scalar(@{ pulls('hubspot') })));
is(scalar(@{ writes('salesforce') }) + scalar(@{ writes('hubspot') }), 0,
	'... and sent no write to either remote: nothing loops');
is(sq("SELECT count(*) FROM crm.sf_contact WHERE lower(email) = 'lea\@example.com'"), '1',
	'locally one Salesforce row for her (the pulled record is the pushed one, not a copy)');
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'nothing queued');

# 3. no duplicate: a person Salesforce already has, then qualified in HubSpot
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ { email => 'ANN@example.com', firstname => 'Ann', lastname => 'Existing', lifecyclestage => 'salesqualifiedlead' } ]);
wait_for("SELECT count(*) = 1 FROM crm.hs_contact WHERE email = 'ann\@example.com'", 'Ann arrived from HubSpot');
sleep 2;
is(scalar(@{ sf_with_email('ann@example.com') }), 1, 'Salesforce still has one Ann: matched by email, case-insensitive');

# ... a lead qualified in HubSpot later (an update, not a create)
my $k1 = sq("SELECT remote_id FROM crm.hs_contact WHERE email = 'known1\@example.com'");
$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$k1", { lifecyclestage => 'salesqualifiedlead' });
SyncTest::wait_until(sub { @{ sf_with_email('known1@example.com') } > 0 }, 30);
is(scalar(@{ sf_with_email('known1@example.com') }), 1, 'a contact qualified later in HubSpot reaches Salesforce');
# ... and edited again, even back and forth through the stage
$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$k1", { lastname => 'Known' });
wait_for("SELECT lastname = 'Known' FROM crm.hs_contact WHERE remote_id = '$k1'", '... edited in HubSpot');
$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$k1", { lifecyclestage => 'opportunity' });
wait_for("SELECT lifecyclestage = 'opportunity' FROM crm.hs_contact WHERE remote_id = '$k1'", '... moved on in HubSpot');
$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$k1",
	{ lifecyclestage => 'salesqualifiedlead', firstname => 'Kay' });
wait_for("SELECT firstname = 'Kay' FROM crm.hs_contact WHERE remote_id = '$k1'", '... and back, with a new name');
sleep 2;
is(scalar(@{ sf_with_email('known1@example.com') }), 1, '... still one Salesforce contact for that person');

# 4. a contact that does not qualify goes nowhere
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ { email => 'cold@example.com', firstname => 'Cole', lifecyclestage => 'subscriber' } ]);
wait_for("SELECT count(*) = 1 FROM crm.hs_contact WHERE email = 'cold\@example.com'", 'a subscriber arrived from HubSpot');
sleep 2;
is(scalar(@{ sf_with_email('cold@example.com') }), 0, '... and was not sent to Salesforce');

# 5. the same person created in both systems at (nearly) the same moment.
# (a) Salesforce's copy reaches crm.sf_contact first — here because HubSpot's
# search index lags 3 s, as it does on HubSpot: no duplicate.
$emu->control('POST', '/__emulator/config', { hubspot_search_lag_ms => 3000 });
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ { email => 'Bo@Example.com', firstname => 'Bo', lastname => 'Both', lifecyclestage => 'salesqualifiedlead' } ]);
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ { FirstName => 'Bo', LastName => 'Both', Email => 'bo@example.com' } ]);
wait_for("SELECT count(*) = 1 FROM crm.sf_contact WHERE email = 'bo\@example.com'", 'both at once: Salesforce\'s Bo pulled');
is(sq("SELECT count(*) FROM crm.hs_contact WHERE lower(email) = 'bo\@example.com'"), '0',
	'... before HubSpot\'s (search index lag)');
wait_for("SELECT count(*) = 1 FROM crm.hs_contact WHERE lower(email) = 'bo\@example.com'", '... then HubSpot\'s');
sleep 2;
is(scalar(@{ sf_with_email('bo@example.com') }), 1, '... one Salesforce contact: the trigger found the pulled one');
$emu->control('POST', '/__emulator/config', { hubspot_search_lag_ms => 0 });

# (b) HubSpot's copy is seen first: the trigger has already queued the
# create when a salesperson types the same person into Salesforce. Salesforce
# then holds two contacts for one email, like two people typing it in; the
# Salesforce mirror takes both (no unique index to trip on), and a query
# over the mirror finds the pair.
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ { email => 'cy@example.com', firstname => 'Cy', lastname => 'Race', lifecyclestage => 'salesqualifiedlead' } ]);
wait_for("SELECT count(*) = 1 FROM crm.sf_contact WHERE email = 'cy\@example.com'", 'HubSpot first: the trigger queued Cy');
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ { FirstName => 'Cy', LastName => 'Race', Email => 'CY@example.com' } ]);
wait_for("SELECT count(*) = 2 FROM crm.sf_contact WHERE lower(email) = 'cy\@example.com'",
	'... a salesperson\'s Cy moments later: both in Salesforce and both mirrored');
is(scalar(@{ sf_with_email('cy@example.com') }), 2, '... two Salesforce contacts (the documented limit)');
is(sq("SELECT string_agg(e, ',') FROM (SELECT lower(email) e FROM crm.sf_contact
        GROUP BY 1 HAVING count(*) > 1 ORDER BY 1) d"), 'cy@example.com',
	'... found by the recipe\'s duplicate report');
is(sq("SELECT count(*) FROM sync.status WHERE last_error IS NOT NULL"), '0',
	'... and no mirror stalled or failed');
my ($rc, $out, $err) = $node->psql($db, 'CREATE UNIQUE INDEX ON crm.sf_contact (lower(email))');
like($err, qr/could not create unique index/,
	'a unique index on lower(email) cannot hold what Salesforce allows');

# 6. two-way, the recipe's mirror-image trigger: a name edited in Salesforce
# reaches HubSpot once, and the exchange stops (no ping-pong)
sq(q{
CREATE FUNCTION crm.salesforce_names_to_hubspot() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE crm.hs_contact h
       SET firstname = NEW.first_name, lastname = NEW.last_name
     WHERE lower(h.email) = lower(NEW.email)
       AND (h.firstname, h.lastname) IS DISTINCT FROM (NEW.first_name, NEW.last_name);
    RETURN NULL;
END $$;
CREATE TRIGGER salesforce_names_to_hubspot
    AFTER INSERT OR UPDATE OF first_name, last_name ON crm.sf_contact
    FOR EACH ROW EXECUTE FUNCTION crm.salesforce_names_to_hubspot();
});
$emu->control('DELETE', '/__emulator/requests');
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$lea->[0]{Id}", { FirstName => 'Leah' });
my $hlea = sq("SELECT remote_id FROM crm.hs_contact WHERE email = 'lea\@example.com'");
SyncTest::wait_until(sub {
	($emu->control('GET', "/__emulator/records/hubspot/contacts/$hlea")->{properties}{firstname} // '') eq 'Leah' }, 30);
is($emu->control('GET', "/__emulator/records/hubspot/contacts/$hlea")->{properties}{firstname}, 'Leah',
	'two-way: a name edited in Salesforce reaches HubSpot through the mirror-image trigger');
sleep 4;
my $hsw = writes('hubspot');
is(scalar(@$hsw), 1, '... in one HubSpot write');
is_deeply([ sort keys %{ $hsw->[0]{body}{inputs}[0]{properties} // {} } ], [ 'firstname' ], '... of the changed field only');
is(scalar(@{ writes('salesforce') }), 0, '... and nothing went back to Salesforce: no ping-pong');

is(sq("SELECT count(*) FROM sync.errors"), '0', 'no errors anywhere');
is(sq("SELECT string_agg(first_name, ',' ORDER BY first_name) FROM crm.sf_contact"), 'Ann,Bo,Cy,Cy,K1,Leah',
	'Salesforce mirror: Ann, Lea(h), K1 (created once, not renamed from HubSpot: one-way), Bo, Cy twice, nobody else');

$node->stop;
$emu->stop;
done_testing();
