# Two-way sync with the Salesforce emulator over HTTPS, step by step with
# sync.pull() / sync.push() (the worker runs the same code; see 031_*).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('sf');
$node->init;
# no worker here: every step is explicit
$node->start;
my $db = 'postgres';
$node->safe_psql($db, 'CREATE EXTENSION sync; CREATE SCHEMA crm;');

sub sq { return $node->safe_psql($db, $_[0]); }
sub requests { return $emu->control('GET', '/__emulator/requests?api=salesforce'); }

my $url = $emu->{url};
my $ca = $emu->{ca_file};
sq(qq{SELECT sync.create_connection('sf', 'salesforce', '{
  "login_url": "$url", "ca_file": "$ca", "api_version": "v59.0",
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}')});

# test_connection authenticates and reports the instance
my $facts = sq("SELECT sync.test_connection('sf')");
like($facts, qr/"instance_url": "\Q$url\E"/, 'test_connection reports the instance_url from the token response');
like($facts, qr/"api_usage": "api-usage=\d+\/\d+"/, 'test_connection reports API usage (Sforce-Limit-Info)');

# wrong credentials: a clear error with Salesforce's words, naming the connection
sq(qq{SELECT sync.create_connection('bad', 'salesforce', '{
  "login_url": "$url", "ca_file": "$ca",
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "wrong"}}')});
my ($rc, $out, $err) = $node->psql($db, "SELECT sync.test_connection('bad')");
like($err, qr/connection "bad": Salesforce refused the client_credentials grant/, 'wrong secret: error names the connection');
unlike($err, qr/wrong/, 'the secret does not appear in the error');

# a certificate that does not verify
sq(qq{SELECT sync.create_connection('nocert', 'salesforce', '{
  "login_url": "$url",
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}')});
($rc, $out, $err) = $node->psql($db, "SELECT sync.test_connection('nocert')");
like($err, qr/connection "nocert".*(certificate|TLS|SSL)/i, 'an unverifiable certificate is refused');

# the JWT bearer flow (RS256 with the emulator's test key) and the refresh-token flow
sub slurp { open(my $fh, '<', $_[0]) or die "$_[0]: $!"; local $/; my $t = <$fh>; return $t; }
my $pem = slurp("$ENV{SYNC_TREE}/test/emulator/keys/sf-jwt-test.key");
$pem =~ s/\n/\\n/g;
sq(qq{SELECT sync.create_connection('sfjwt', 'salesforce', '{
  "login_url": "$url", "ca_file": "$ca",
  "auth": {"type": "jwt_bearer", "client_id": "sync-client", "username": "sync\@example.com",
           "private_key": "$pem"}}')});
like(sq("SELECT sync.test_connection('sfjwt')"), qr/"instance_url": "\Q$url\E"/,
	'jwt_bearer: a JWT signed with RS256 is accepted');
is(sq("SELECT secret_keys::text FROM sync.connections WHERE name = 'sfjwt'"), '{auth.private_key}',
	'jwt_bearer: the private key is stored as a secret');
sq(qq{SELECT sync.create_connection('sfjwt2', 'salesforce', '{
  "login_url": "$url", "ca_file": "$ca",
  "auth": {"type": "jwt_bearer", "client_id": "sync-client", "username": "nobody\@example.com",
           "private_key": "$pem"}}')});
($rc, $out, $err) = $node->psql($db, "SELECT sync.test_connection('sfjwt2')");
like($err, qr/connection "sfjwt2": Salesforce refused the jwt_bearer grant/, 'jwt_bearer: an unknown user is refused, naming the connection');
unlike($err, qr/PRIVATE KEY/, 'jwt_bearer: the key does not appear in the error');
sq(qq{SELECT sync.create_connection('sfrt', 'salesforce', '{
  "login_url": "$url", "ca_file": "$ca",
  "auth": {"type": "refresh_token", "client_id": "sync-client", "client_secret": "sync-secret",
           "refresh_token": "sync-refresh-token"}}')});
like(sq("SELECT sync.test_connection('sfrt')"), qr/"instance_url": "\Q$url\E"/, 'refresh_token: the grant is accepted');
sq(qq{SELECT sync.alter_connection('sfrt', '{"auth": {"type": "refresh_token", "client_id": "sync-client",
  "client_secret": "sync-secret", "refresh_token": "revoked"}}')});
($rc, $out, $err) = $node->psql($db, "SELECT sync.test_connection('sfrt')");
like($err, qr/connection "sfrt": Salesforce refused the refresh_token grant/, 'refresh_token: a bad token is refused, naming the connection');
unlike($err, qr/revoked/, 'refresh_token: the token does not appear in the error');

# remote schema
is(sq("SELECT local_type FROM sync.remote_fields('sf', 'Contact') WHERE remote_name = 'Email'"), 'text', 'describe maps email to text');
is(sq("SELECT role FROM sync.remote_fields('sf', 'Contact') WHERE remote_name = 'SystemModstamp'"), 'stamp', 'SystemModstamp is the stamp');
($rc, $out, $err) = $node->psql($db, "SELECT * FROM sync.remote_fields('sf', 'Contactz')");
like($err, qr/Salesforce object "Contactz" does not exist/, 'unknown object: clear error');

# remote records exist before the mirror
my $ids = $emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "F$_", LastName => "L$_", Email => "p$_\@example.com" } } 1 .. 25 ]);
is(scalar @{ $ids->{ids} }, 25, 'seeded 25 remote contacts');

($rc, $out, $err) = $node->psql($db,
	"SELECT sync.mirror('sf', 'Contact', 'crm.sf_contact', fields => ARRAY['FirstName','Nope__c'])");
like($err, qr/Contact has no field Nope__c/, 'unknown field in fields: clear error');
($rc, $out, $err) = $node->psql($db,
	"SELECT sync.mirror('sf', 'Contact', 'crm.sf_contact', options => '{\"filter\": \"LastName = \"}')");
like($err, qr/invalid mirror option "filter"/, 'malformed filter: clear error with Salesforce\'s words');
is(sq("SELECT count(*) FROM pg_class WHERE relname = 'sf_contact'"), '0', 'failed mirror() created nothing');

sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.sf_contact',
     fields => ARRAY['FirstName','LastName','Email','AccountId','Sync_Key__c'],
     options => '{"idempotency_field": "Sync_Key__c"}')});
like(sq("SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position)
        FROM information_schema.columns WHERE table_name = 'sf_contact'"),
	qr/^id bigint, remote_id text, account_id text, email text, first_name text, last_name text, sync_key__c text, remote_modified_at timestamp with time zone$/,
	'mirror() created typed snake_case columns');

# backfill
my $r = sq("SELECT sync.pull('crm.sf_contact')");
like($r, qr/"applied": 25/, 'backfill applied 25 records');
is(sq("SELECT count(*) FROM crm.sf_contact WHERE remote_id IS NOT NULL AND remote_modified_at IS NOT NULL"), '25', 'rows carry remote ID and stamp');
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'inbound apply queued nothing (no echo)');
is(sq("SELECT phase FROM sync.status"), 'incremental', 'after the backfill the mirror is incremental');

# a pull with no remote change touches nothing
sq("CREATE TABLE touched (n int); INSERT INTO touched VALUES (0);
   CREATE FUNCTION count_touch() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN UPDATE public.touched SET n = n + 1; RETURN NULL; END \$\$;
   CREATE TRIGGER count_touch AFTER UPDATE ON crm.sf_contact FOR EACH ROW EXECUTE FUNCTION count_touch();");
sq("SELECT sync.pull('crm.sf_contact')");
is(sq("SELECT n FROM touched"), '0', 're-reading unchanged records (overlap window) touches no row');

# local update of one column -> PATCH with only that field
$emu->control('DELETE', '/__emulator/requests');
sq("UPDATE crm.sf_contact SET first_name = 'Changed' WHERE last_name = 'L1'");
sq("UPDATE crm.sf_contact SET first_name = first_name WHERE last_name = 'L2'");
$r = sq("SELECT sync.push('crm.sf_contact')");
like($r, qr/"sent": 1/, 'one record pushed');
my @patch = grep { $_->{method} eq 'PATCH' && $_->{path} =~ m{/composite/sobjects$} } @{ requests() };
is(scalar @patch, 1, 'one PATCH request');
is_deeply([ sort grep { $_ ne 'attributes' && $_ ne 'id' } keys %{ $patch[0]{body}{records}[0] } ],
	['FirstName'], 'the PATCH body holds only the changed field');
my $remote = $emu->control('GET', '/__emulator/records/salesforce/Contact/' .
	sq("SELECT remote_id FROM crm.sf_contact WHERE last_name = 'L1'"));
is($remote->{FirstName}, 'Changed', 'the remote record has the new value');
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'outbox drained');

# local insert with an idempotency key -> upsert by external ID; ID written back
sq("INSERT INTO crm.sf_contact (first_name, last_name, email) VALUES ('New', 'Person', 'new\@example.com')");
sq("SELECT sync.push('crm.sf_contact')");
my $rid = sq("SELECT remote_id FROM crm.sf_contact WHERE last_name = 'Person'");
like($rid, qr/^003\w{15}$/, 'new remote ID written back');
$remote = $emu->control('GET', "/__emulator/records/salesforce/Contact/$rid");
like($remote->{Sync_Key__c}, qr/^sync-/, 'created through upsert with the engine-assigned key');
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'write-back queued nothing');

# remote edit and remote delete arrive with an incremental pull
my $rid1 = sq("SELECT remote_id FROM crm.sf_contact WHERE last_name = 'L3'");
my $rid2 = sq("SELECT remote_id FROM crm.sf_contact WHERE last_name = 'L4'");
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$rid1", { Email => 'edited@example.com' });
$emu->control('DELETE', "/__emulator/records/salesforce/Contact/$rid2");
sq("SELECT sync.pull('crm.sf_contact')");
is(sq("SELECT email FROM crm.sf_contact WHERE remote_id = '$rid1'"), 'edited@example.com', 'remote edit arrived');
is(sq("SELECT count(*) FROM crm.sf_contact WHERE remote_id = '$rid2'"), '0', 'remote delete arrived');
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'neither was echoed back');

# local delete reaches the remote
my $rid3 = sq("SELECT remote_id FROM crm.sf_contact WHERE last_name = 'L5'");
sq("DELETE FROM crm.sf_contact WHERE remote_id = '$rid3'");
sq("SELECT sync.push('crm.sf_contact')");
my $gone = $emu->control('GET', '/__emulator/records/salesforce/Contact');
ok(!(grep { $_->{Id} eq $rid3 } @$gone), 'local delete removed the remote record');

# a rejected record is parked with Salesforce's message; the others go through
sq("INSERT INTO crm.sf_contact (first_name, last_name) VALUES ('Ok1', 'Fine1'), ('NoLast', NULL), ('Ok2', 'Fine2')");
$r = sq("SELECT sync.push('crm.sf_contact')");
like($r, qr/"rejected": 1/, 'one record rejected');
is(sq("SELECT count(*) FROM crm.sf_contact WHERE last_name LIKE 'Fine%' AND remote_id IS NOT NULL"), '2', 'the others succeeded');
like(sq("SELECT error_code || ': ' || error_message FROM sync.errors"), qr/REQUIRED_FIELD_MISSING: .*LastName/, 'parked with the remote\'s code and message');
sq("UPDATE crm.sf_contact SET last_name = 'Fixed' WHERE first_name = 'NoLast'");
sq("SELECT sync.retry('crm.sf_contact')");
sq("SELECT sync.push('crm.sf_contact')");
is(sq("SELECT count(*) FROM sync.errors"), '0', 'after the fix, retry sends it');
like(sq("SELECT remote_id FROM crm.sf_contact WHERE first_name = 'NoLast'"), qr/^003/, 'the fixed record reached Salesforce');

# the journal saw every record in both directions
ok(sq("SELECT count(*) FROM sync.journal WHERE direction = 'out' AND result = 'ok'") >= 5, 'outbound journal rows');
ok(sq("SELECT count(*) FROM sync.journal WHERE direction = 'in'") >= 25, 'inbound journal rows');

# secrets never appear in the emulator's log of what we sent
my $log = requests();
ok(!(grep { ($_->{headers}{authorization} // '') ne '[redacted]' && defined $_->{headers}{authorization} } @$log),
	'emulator log redacts our Authorization');
like(sq("SELECT api_usage FROM sync.status"), qr/api-usage=/, 'sync.status shows API usage');

# sync.push() sends: inside a transaction block it would send rows that may
# still roll back (and a rollback would queue them to be sent again)
sq("UPDATE crm.sf_contact SET first_name = 'InTx' WHERE last_name = 'L2'");
my ($rc, $out, $err) = $node->psql('postgres', "BEGIN; SELECT sync.push('crm.sf_contact'); COMMIT;");
like($err, qr/sync\.push\(\) cannot run inside a transaction block/, 'sync.push() is refused inside a transaction block');
sq("SELECT sync._fold()");	# the captured update into the outbox (src/capture.c)
is(sq("SELECT o.attempts FROM sync.outbox o JOIN crm.sf_contact c ON o.local_key = c.id::text WHERE c.last_name = 'L2'"),
	'0', '... and sent nothing');

$node->stop;
$emu->stop;
done_testing();
