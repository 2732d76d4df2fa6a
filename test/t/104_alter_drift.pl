# Changing a mirror in place (sync.alter_mirror) and schema drift (sync.drift),
# through the worker, against the Salesforce emulator: an added field is
# filled for the existing rows by a pull of only that field; a dropped field
# is no longer pushed; option changes take effect; queued writes survive; a
# field deleted remotely is reported and the rest of the record still goes;
# a retyped field and a new field are reported by the periodic check alone.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;
use JSON::PP;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('alter');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
sync.http_timeout = '5s'
sync.drift_check_interval = '1h'
});
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
sub poll { my ($sql, $what) = @_; ok(SyncTest::poll_true($node, $db, $sql, 60), $what); }
# does a logged request name $needle (query decoded, or body)?
sub mentions
{
	my ($r, $needle) = @_;
	(my $q = $r->{query} // '') =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
	my $body = ref $r->{body} ? JSON::PP->new->canonical->encode($r->{body}) : ($r->{body} // '');
	return index($q, $needle) >= 0 || index($body, $needle) >= 0;
}
sub remote
{
	my %by = map { ($_->{LastName} // '') => $_ } @{ $emu->control('GET', '/__emulator/records/salesforce/Contact') };
	return \%by;
}

# Contact has two custom fields; the mirror maps one of them
$emu->control('POST', '/__emulator/salesforce/fields/Contact',
	[ { name => 'Tier__c', type => 'string', length => 40 }, { name => 'Level__c', type => 'string', length => 40 } ]);
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "F$_", LastName => "L$_", Email => "c$_\@example.com", Tier__c => "tier$_", Level__c => "lv$_" } } 1 .. 3 ]);
sq(q{CREATE EXTENSION sync; CREATE SCHEMA crm;});
SyncTest::sf_connect($node, $db, $emu);
sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.contact',
        fields => ARRAY['FirstName', 'LastName', 'Email', 'Phone', 'Level__c'],
        options => '{"pull_interval": "1 second"}')});
poll("SELECT count(*) = 3 FROM crm.contact WHERE level__c IS NOT NULL", 'the mirror is backfilled');
is(sq("SELECT sync.check_drift('crm.contact')"), '{}', 'sync.check_drift: no drift after mirroring');
is(sq("SELECT count(*) FROM sync.drift"), '0', '... and none in sync.drift');
# an hour later another record changes: incremental pulls no longer re-read
# L1..L3, so only the fill can bring them an added field
$emu->control('POST', '/__emulator/clock', { advance_s => 3600 });
$emu->control('POST', '/__emulator/records/salesforce/Contact', [ { FirstName => 'F9', LastName => 'L9', Tier__c => 'tier9' } ]);
poll("SELECT count(*) = 1 FROM crm.contact WHERE last_name = 'L9'", 'a later record arrived');

# --- add a field: its column, filled by a pull of only that field ---
my $stamps_sql = "SELECT string_agg(remote_modified_at::text, ',' ORDER BY last_name) FROM crm.contact WHERE last_name <> 'L1'";
my $stamps = sq($stamps_sql);
$emu->control('DELETE', '/__emulator/requests');
sq(q{BEGIN;
     UPDATE crm.contact SET phone = '555' WHERE last_name = 'L1';
     SELECT sync.alter_mirror('crm.contact', add_fields => ARRAY['Tier__c']);
     COMMIT;});
poll("SELECT string_agg(tier__c, ',' ORDER BY last_name) = 'tier1,tier2,tier3,tier9' FROM crm.contact",
	'the added field is filled for the existing rows');
poll("SELECT NOT EXISTS (SELECT 1 FROM sync.fill)", '... and the fill is done');
my @fill = grep { $_->{path} =~ m{/query$} && ($_->{query} // '') =~ /Tier__c/ } @{ $emu->requests('salesforce') };
my @soql = map { (my $q = $_->{query} // '') =~ s/\+/ /g; $q =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge; $q } @fill;
ok((grep { /q=SELECT Id, SystemModstamp, Tier__c FROM Contact ORDER BY/ } @soql),
	'the fill\'s query lists only the ID, the stamp and the new field') or diag(explain \@soql);
is(sq($stamps_sql), $stamps, 'the fill changed no stamp (of the rows without a local write)');
poll("SELECT count(*) = 0 FROM sync.outbox", 'the write queued across the change was pushed');
is(remote()->{L1}{Phone}, '555', '... and reached the remote');
is(sq("SELECT count(*) FROM sync.journal WHERE direction = 'in' AND op = 'U' AND result = 'ok' AND detail ~ '^filled added fields: [0-9]+ rows'"),
	'1', 'the fill is journaled');

# --- drop a field: no longer pushed; the queued write's other fields go ---
sq(q{BEGIN;
     UPDATE crm.contact SET phone = '777', first_name = 'Zed' WHERE last_name = 'L1';
     SELECT sync.alter_mirror('crm.contact', drop_fields => ARRAY['Phone']);
     COMMIT;});
SyncTest::wait_until(sub { (remote()->{L1}{FirstName} // '') eq 'Zed' }, 60);
is(remote()->{L1}{FirstName}, 'Zed', 'a write queued before the drop is pushed');
is(remote()->{L1}{Phone}, '555', '... without the dropped field');
is(sq("SELECT phone FROM crm.contact WHERE last_name = 'L1'"), '777', '... whose column stays');

# --- options take effect at the next round ---
sq(q{SELECT sync.alter_mirror('crm.contact', options => '{"authority": {"LastName": "local", "Email": "remote"}}')});
$emu->control('PATCH', '/__emulator/records/salesforce/Contact/' . remote()->{L2}{Id}, { LastName => 'L2-remote' });
sq(q{UPDATE crm.contact SET email = 'local@example.com', first_name = 'Yan' WHERE last_name = 'L2'});
SyncTest::wait_until(sub { (remote()->{'L2-remote'}{FirstName} // '') eq 'Yan' }, 60);
is(remote()->{'L2-remote'}{Email}, 'c2@example.com', 'authority "remote": the local change of the field is not pushed');
poll("SELECT count(*) = 0 FROM sync.outbox", 'the rest of the write went');
sq(q{UPDATE crm.contact SET email = 'c2@example.com' WHERE last_name = 'L2'});
$emu->control('PATCH', '/__emulator/records/salesforce/Contact/' . remote()->{'L2-remote'}{Id}, { FirstName => 'Yul' });
poll("SELECT first_name = 'Yul' FROM crm.contact WHERE email = 'c2\@example.com'", 'pulls go on');
is(sq("SELECT last_name FROM crm.contact WHERE email = 'c2\@example.com'"), 'L2',
	'authority "local": the remote change of the field is not applied');

# --- a field deleted remotely: reported; the rest of the record still goes ---
poll("SELECT checked_at < now() - interval '10 seconds' FROM sync.drift_state", 'the last check is old enough');
$emu->control('DELETE', '/__emulator/salesforce/fields/Contact/Level__c');
sq(q{UPDATE crm.contact SET level__c = 'lv-new', first_name = 'Xia' WHERE last_name = 'L3'});
SyncTest::wait_until(sub { (remote()->{L3}{FirstName} // '') eq 'Xia' }, 60);
is(remote()->{L3}{FirstName}, 'Xia', 'a write that includes a field deleted remotely still goes, without it');
ok(sq("SELECT count(*) FROM sync.journal WHERE direction = 'out' AND result = 'rejected' AND detail LIKE '%No such column ''Level__c''%'") >= 1,
	'... after the remote refused it once for the unknown field');
is(sq("SELECT kind FROM sync.drift WHERE remote_field = 'Level__c'"), 'deleted', 'a drift entry says the field is gone');
is(sq("SELECT drift > 0 FROM sync.status s JOIN sync.drift d USING (local_table) WHERE d.remote_field = 'Level__c'"), 't',
	'... and sync.status points to it (column drift)');
like(sq("SELECT detail FROM sync.drift WHERE remote_field = 'Level__c'"), qr/drop_fields => ARRAY\['Level__c'\]/,
	'... and what to do');
is(sq("SELECT level__c FROM crm.contact WHERE last_name = 'L3'"), 'lv-new', 'the column stays');
poll("SELECT count(*) = 0 FROM sync.outbox", 'nothing is left queued or parked');
$emu->control('PATCH', '/__emulator/records/salesforce/Contact/' . remote()->{L3}{Id}, { FirstName => 'Xu' });
poll("SELECT first_name = 'Xu' FROM crm.contact WHERE last_name = 'L3'", 'pulls go on without the field');

# --- the periodic check: a retyped field and a new one, without any push ---
$emu->control('DELETE', '/__emulator/requests');
SyncTest::sf_retype_field($emu, 'Contact', 'Tier__c', 'textarea');
$emu->control('POST', '/__emulator/salesforce/fields/Contact', { name => 'Region__c', type => 'string', length => 40 });
sq("ALTER SYSTEM SET sync.drift_check_interval = '2s'; SELECT pg_reload_conf();");
poll("SELECT count(*) = 2 FROM sync.drift WHERE (remote_field, kind) IN (('Tier__c', 'retyped'), ('Region__c', 'available'))",
	'the periodic check reports a retyped field and a new one');
like(sq("SELECT detail FROM sync.drift WHERE remote_field = 'Tier__c'"), qr/from string to textarea/, '... with the types');
is(scalar(grep { $_->{method} ne 'GET' } @{ $emu->requests('salesforce') }), 0, '... without any push');
$emu->control('PATCH', '/__emulator/records/salesforce/Contact/' . remote()->{L1}{Id}, { Tier__c => 'gold' });
poll("SELECT tier__c = 'gold' FROM crm.contact WHERE last_name = 'L1'", 'values of the retyped field still arrive');
ok(sq("SELECT count(*) FROM sync.journal WHERE op = 'S' AND result = 'drift'") >= 2, 'the checks are journaled');

# mapping the new field resolves its entry
sq(q{SELECT sync.alter_mirror('crm.contact', add_fields => ARRAY['Region__c'])});
is(sq("SELECT count(*) FROM sync.drift WHERE remote_field = 'Region__c'"), '0', 'a mapped field is no longer "available"');

# --- HubSpot: a property added and filled by a read of only it; a property
# deleted remotely is reported, and the rest of the record still goes ---
sq("ALTER SYSTEM SET sync.drift_check_interval = '1h'; SELECT pg_reload_conf();");
sub hs_api
{
	my ($method, $path, $body) = @_;
	my $res = $emu->{http}->request($method, $emu->{url} . $path, {
		headers => { Authorization => 'Bearer pat-sync-test', 'Content-Type' => 'application/json' },
		(defined $body ? (content => JSON::PP::encode_json($body)) : ()) });
	die "$method $path: $res->{status} $res->{content}" if $res->{status} >= 300;
}
hs_api('POST', '/crm/v3/properties/contacts', { name => $_, type => 'string', fieldType => 'text', label => $_ })
  for qw(tier level);
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ map { { email => "h$_\@example.com", firstname => "H$_", tier => "t$_", level => "l$_" } } 1 .. 3 ]);
my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
sq(qq{SELECT sync.create_connection('hs', 'hubspot', '{
    "base_url": "$url", "ca_file": "$ca",
    "auth": {"type": "oauth_refresh", "client_id": "sync-hs-client", "client_secret": "sync-hs-secret",
             "refresh_token": "sync-hs-refresh"}}')});
sq(q{SELECT sync.mirror('hs', 'contacts', 'crm.hs_contact', fields => ARRAY['email', 'firstname', 'level'],
        options => '{"pull_interval": "1 second"}')});
poll("SELECT count(*) = 3 FROM crm.hs_contact WHERE level IS NOT NULL", 'hubspot: backfilled');
$emu->control('POST', '/__emulator/clock', { advance_s => 3600 });
$emu->control('POST', '/__emulator/records/hubspot/contacts', [ { email => 'h9@example.com', firstname => 'H9', tier => 't9' } ]);
poll("SELECT count(*) = 1 FROM crm.hs_contact WHERE email = 'h9\@example.com'", 'hubspot: a later record arrived');
# the table belongs to a role with no right on sync's catalog: the fill's
# UPDATE runs as that role
sq(q{CREATE ROLE crm_owner; GRANT USAGE, CREATE ON SCHEMA crm TO crm_owner;
     ALTER TABLE crm.hs_contact OWNER TO crm_owner;});
$emu->control('DELETE', '/__emulator/requests');
sq(q{SELECT sync.alter_mirror('crm.hs_contact', add_fields => ARRAY['tier'])});
poll("SELECT string_agg(tier, ',' ORDER BY email) = 't1,t2,t3,t9' FROM crm.hs_contact",
	'hubspot: the added property is filled, as the table\'s owner');
poll("SELECT NOT EXISTS (SELECT 1 FROM sync.fill)", 'hubspot: ... by a fill, done');
my @reads = grep { $_->{path} =~ m{/crm/v3/objects/contacts(/search)?$} } SyncTest::request_mentions($emu, 'hubspot', 'tier');
ok((grep { my $r = $_; !grep { mentions($r, $_) } qw(firstname level email) } @reads),
	'hubspot: the fill reads only the new property (and ID, stamp)')
  or diag(explain [ map { [ $_->{method}, $_->{path}, $_->{query}, $_->{body} ] } @reads ]);

poll("SELECT coalesce(max(d.checked_at), '-infinity') < now() - interval '10 seconds' "
	. "FROM sync.drift_state d JOIN sync.mirror m ON m.id = d.mirror WHERE m.connection = 'hs'",
	'hubspot: the last check (if any) is old enough');
hs_api('DELETE', '/crm/v3/properties/contacts/level');
sq(q{UPDATE crm.hs_contact SET level = 'l-new', firstname = 'Hal' WHERE email = 'h1@example.com'});
SyncTest::wait_until(sub {
	grep { ($_->{properties}{firstname} // '') eq 'Hal' } @{ $emu->control('GET', '/__emulator/records/hubspot/contacts') }
}, 60);
ok((grep { ($_->{properties}{firstname} // '') eq 'Hal' } @{ $emu->control('GET', '/__emulator/records/hubspot/contacts') }),
	'hubspot: a write that includes a deleted property still goes, without it');
is(sq("SELECT kind FROM sync.drift WHERE local_table = 'crm.hs_contact'::regclass AND remote_field = 'level'"), 'deleted',
	'hubspot: a drift entry says the property is gone');
poll("SELECT count(*) = 0 FROM sync.outbox", 'hubspot: nothing is left queued or parked');

# --- NetSuite: a field added and filled by a SuiteQL query of only it ---
# (the clock back to now: token-based auth signs with the real time)
$emu->control('POST', '/__emulator/clock', { offset_s => 0 });
sq(qq{SELECT sync.create_connection('ns', 'netsuite', '{
  "account": "1234567", "base_url": "$url", "ca_file": "$ca",
  "auth": {"type": "tba", "consumer_key": "ns-consumer-key", "consumer_secret": "ns-consumer-secret",
           "token_id": "ns-token-id", "token_secret": "ns-token-secret"}}')});
$emu->control('POST', '/__emulator/records/netsuite/customer',
	[ map { { companyName => "Co$_", email => "n$_\@example.com", phone => "555-$_" } } 1 .. 3 ]);
sq(q{SELECT sync.mirror('ns', 'customer', 'crm.ns_customer', ARRAY['companyName', 'email'], 'pull',
        '{"pull_interval": "1 second"}')});
poll("SELECT count(*) = 3 FROM crm.ns_customer", 'netsuite: backfilled');
$emu->control('DELETE', '/__emulator/requests');
sq(q{SELECT sync.alter_mirror('crm.ns_customer', add_fields => ARRAY['phone'])});
poll("SELECT string_agg(phone, ',' ORDER BY email) = '555-1,555-2,555-3' FROM crm.ns_customer",
	'netsuite: the added field is filled');
poll("SELECT NOT EXISTS (SELECT 1 FROM sync.fill)", 'netsuite: ... by a fill, done');
my @nsq = grep { mentions($_, 'phone') } @{ $emu->requests('netsuite') };
ok((grep { my $r = $_; !grep { mentions($r, $_) } qw(companyname companyName email) } @nsq),
	'netsuite: the fill queries only the new field (and ID, stamp)')
  or diag(explain [ map { [ $_->{method}, $_->{path}, $_->{query}, $_->{body} ] } @nsq ]);

$node->stop;
done_testing();
