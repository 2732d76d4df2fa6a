# Two-way sync with the HubSpot emulator over HTTPS, step by step with
# sync.pull() / sync.push() (the worker runs the same code; see 041_*).
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
my $node = PostgreSQL::Test::Cluster->new('hs');
$node->init;
$node->start;
my $db = 'postgres';
$node->safe_psql($db, 'CREATE EXTENSION sync; CREATE SCHEMA crm;');

sub sq { return $node->safe_psql($db, $_[0]); }
sub err_of { my ($rc, $out, $err) = $node->psql($db, $_[0]); return $err; }
sub hs_requests
{
	my ($method, $re) = @_;
	return [ grep { $_->{method} eq $method && $_->{path} =~ $re } @{ $emu->requests('hubspot') } ];
}
sub clear_log { $emu->control('DELETE', '/__emulator/requests'); }
sub remote { return $emu->control('GET', "/__emulator/records/hubspot/$_[0]"); }
# the HubSpot API itself, as a client would call it (associations have no control endpoint)
sub api
{
	my ($method, $path, $body) = @_;
	my $res = $emu->{http}->request($method, $emu->{url} . $path, {
		headers => { Authorization => 'Bearer pat-sync-test', 'Content-Type' => 'application/json' },
		($body ? (content => encode_json($body)) : ()) });
	return length($res->{content} // '') ? decode_json($res->{content}) : undef;
}
sub companies_of
{
	my $r = api('GET', "/crm/v4/objects/contacts/$_[0]/associations/companies");
	return join(',', sort map { $_->{toObjectId} } @{ $r->{results} });
}

my ($url, $ca) = ($emu->{url}, $emu->{ca_file});

# --- options are checked, naming the key; secrets are split off ---
like(err_of(qq{SELECT sync.create_connection('x', 'hubspot', '{"base_url": "$url", "auth": {"type": "private_app", "token": "t"}, "colour": 1}')}),
	qr/unknown HubSpot connection option "colour"/, 'unknown option: named');
like(err_of(qq{SELECT sync.create_connection('x', 'hubspot', '{"auth": {"type": "private_app"}}')}),
	qr/invalid HubSpot connection option "auth.token"/, 'missing token: auth.token named');
like(err_of(qq{SELECT sync.create_connection('x', 'hubspot', '{"auth": {"type": "oauth_refresh", "client_id": "a", "client_secret": "b"}}')}),
	qr/"auth.refresh_token"/, 'oauth_refresh without refresh_token: named');
like(err_of(qq{SELECT sync.create_connection('x', 'hubspot', '{"auth": {"type": "private_app", "token": "t"}, "requests_per_10s": "lots"}')}),
	qr/"requests_per_10s": must be a positive integer/, 'bad requests_per_10s: named');
like(err_of(qq{SELECT sync.create_connection('x', 'hubspot', '{"auth": {"type": "private_app", "token": "t"}, "reconcile_interval": "sometimes"}')}),
	qr/"reconcile_interval"/, 'bad reconcile_interval: named');

sq(qq{SELECT sync.create_connection('hs', 'hubspot', '{
  "base_url": "$url", "ca_file": "$ca", "requests_per_10s": 190, "archived_interval": 0,
  "auth": {"type": "private_app", "token": "pat-sync-test"}}')});
is(sq("SELECT secret_keys FROM sync.connections WHERE name = 'hs'"), '{auth.token}', 'the token is stored as a secret');
unlike(sq("SELECT options::text FROM sync.connection WHERE name = 'hs'"), qr/pat-sync-test/, '... and not among the options');

# --- seed: 5,000 contacts, some companies ---
my $cids = $emu->control('POST', '/__emulator/records/hubspot/companies',
	[ map { { name => "Co$_", domain => "co$_.example.com" } } 1 .. 3 ])->{ids};
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ map { { email => "p$_\@example.com", firstname => "F$_", lastname => "L$_",
			  ($_ <= 10 ? (date_of_birth => "1990-01-0" . ($_ % 9 + 1)) : ()) } } 1 .. 5000 ]);
my $first = remote('contacts')->[0]{id};
api('PUT', "/crm/v4/objects/contacts/$first/associations/default/companies/$cids->[0]");

# --- test_connection ---
my $facts = decode_json(sq("SELECT sync.test_connection('hs')"));
is($facts->{portal_id}, '44000001', 'test_connection reports the portal id');
is($facts->{requests_per_10s_remote}, 190, '... and the rate limits HubSpot reports');
ok(defined $facts->{requests_day_remaining}, '... and the daily requests remaining');

# --- bad credentials ---
sq(qq{SELECT sync.create_connection('badtoken', 'hubspot', '{"base_url": "$url", "ca_file": "$ca",
  "auth": {"type": "private_app", "token": "pat-wrong-123"}}')});
my $err = err_of("SELECT sync.test_connection('badtoken')");
like($err, qr/connection "badtoken": HubSpot refused the credentials.*Authentication credentials not found/,
	'a wrong private-app token: clear error naming the connection, with HubSpot\'s words');
unlike($err, qr/pat-wrong-123/, '... and not the token');
sq(qq{SELECT sync.create_connection('badoauth', 'hubspot', '{"base_url": "$url", "ca_file": "$ca",
  "auth": {"type": "oauth_refresh", "client_id": "sync-hs-client", "client_secret": "nope-secret", "refresh_token": "sync-hs-refresh"}}')});
$err = err_of("SELECT sync.test_connection('badoauth')");
like($err, qr/connection "badoauth": HubSpot refused the oauth_refresh grant: missing or invalid client secret/,
	'a failed grant: clear error with HubSpot\'s message');
unlike($err, qr/nope-secret/, '... and not the secret');

# --- the remote schema ---
my %f = map { my @c = split /\|/; ($c[0] => \@c) } split /\n/, sq(
	"SELECT remote_name, local_type, role, createable, updateable, coalesce(reference_to, ''), local_column, is_unique
	   FROM sync.remote_fields('hs', 'contacts')");
is($f{email}[1], 'text', 'string -> text');
is($f{date_of_birth}[1], 'date', 'date -> date');
is($f{notes_last_updated}[1], 'timestamptz', 'datetime -> timestamptz');
is($f{num_notes}[1], 'numeric', 'number -> numeric');
is($f{hs_is_contact}[1], 'boolean', 'bool -> boolean');
is($f{hs_all_contact_vids}[1], 'text[]', 'multi-checkbox enumeration -> text[]');
is($f{lifecyclestage}[1], 'text', 'radio enumeration -> text');
is("$f{hs_object_id}[2] $f{lastmodifieddate}[2]", 'id stamp', 'hs_object_id is the id, lastmodifieddate the stamp (contacts)');
is("$f{num_notes}[3]$f{num_notes}[4]", 'ff', 'calculated properties are neither createable nor updateable');
is("$f{hs_email_domain}[3]$f{hs_email_domain}[4]", 'ff', 'read-only values are neither createable nor updateable');
is("$f{email}[3]$f{email}[4]$f{email}[7]", 'ttt', 'email is writable and unique');
is("$f{'associations.companies'}[5] $f{'associations.companies'}[6]", 'companies associations_companies',
	'associations.companies: a reference to companies');
is(sq("SELECT role FROM sync.remote_fields('hs', 'companies') WHERE remote_name = 'hs_lastmodifieddate'"), 'stamp',
	'hs_lastmodifieddate is the stamp of companies');
like(err_of("SELECT * FROM sync.remote_fields('hs', 'contactz')"),
	qr/HubSpot object "contactz" does not exist \(connection "hs"\)/, 'unknown object: clear error naming it');
like(err_of("SELECT sync.mirror('hs', 'contacts', 'crm.x', fields => ARRAY['email','favourite_colour'])"),
	qr/contacts has no field favourite_colour/, 'unknown field: clear error naming it');
like(err_of(q{SELECT sync.mirror('hs', 'contacts', 'crm.x', options => '{"idempotency_field": "firstname"}')}),
	qr/property "firstname" of contacts is not unique/, 'a non-unique idempotency_field is refused');

# --- backfill of 5,000 contacts ---
sq(q{SELECT sync.mirror('hs', 'companies', 'crm.company', fields => ARRAY['name','domain'])});
sq(q{SELECT sync.mirror('hs', 'contacts', 'crm.contact',
     fields => ARRAY['email','firstname','lastname','date_of_birth','lifecyclestage','num_notes','associations.companies'],
     options => '{"idempotency_field": "email"}')});
clear_log();
like(sq("SELECT sync.pull('crm.company')"), qr/"applied": 3/, 'companies backfilled');
my $r = sq("SELECT sync.pull('crm.contact')");
like($r, qr/"applied": 5000/, 'backfill applied 5,000 contacts');
my $lists = hs_requests('GET', qr{^/crm/v3/objects/contacts$});
is(scalar(@$lists), 50, '... in 50 list pages');
ok(!(grep { $_->{query} !~ /limit=100/ || $_->{query} !~ /associations=companies/ } @$lists),
	'... of 100, with associations=companies');
is(sq("SELECT backfill_total FROM sync.mirror_state s JOIN sync.mirror m ON m.id = s.mirror WHERE m.remote_object = 'contacts'"),
	'5000', 'the backfill knew its total (progress)');
is(sq("SELECT phase FROM sync.status WHERE remote_object = 'contacts'"), 'incremental', 'then the mirror is incremental');
is(sq("SELECT count(*) FROM crm.contact WHERE remote_id IS NOT NULL AND remote_modified_at IS NOT NULL"), '5000',
	'rows carry remote ID and stamp');
is(sq("SELECT date_of_birth FROM crm.contact WHERE email = 'p2\@example.com'"), '1990-01-03', 'dates arrive as dates');
is(sq("SELECT associations_companies FROM crm.contact WHERE remote_id = '$first'"), $cids->[0],
	'the association arrived in the reference column');
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'the backfill queued nothing (no echo)');

# --- incremental: remote edits, archives and hard deletes ---
my @ids = map { $_->{id} } @{ remote('contacts') }[ 1 .. 4 ];
$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$ids[0]", { firstname => 'Edited', num_notes => '3' });
$emu->control('DELETE', "/__emulator/records/hubspot/contacts/$ids[1]");
$emu->control('POST', "/__emulator/hubspot/purge/contacts/$ids[2]");
api('PUT', "/crm/v4/objects/contacts/$ids[3]/associations/default/companies/$cids->[1]");
$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$ids[3]", { lastname => 'Linked' });
clear_log();
sq("SELECT sync.pull('crm.contact')");
my $search;
is(sq("SELECT firstname || ' ' || num_notes FROM crm.contact WHERE remote_id = '$ids[0]'"), 'Edited 3', 'a remote edit arrived');
is(sq("SELECT count(*) FROM crm.contact WHERE remote_id = '$ids[1]'"), '0', 'a remote archive arrived');
is(sq("SELECT associations_companies FROM crm.contact WHERE remote_id = '$ids[3]'"), $cids->[1],
	'a remote association arrived with the contact\'s next change (v4 batch read for search pages)');
$search = hs_requests('POST', qr{/search$});
ok(@$search >= 1, 'increments come from search');
is_deeply($search->[0]{body}{sorts}, [ { propertyName => 'lastmodifieddate', direction => 'ASCENDING' } ],
	'... sorted by lastmodifieddate ascending');
is($search->[0]{body}{filterGroups}[0]{filters}[0]{operator}, 'GTE', '... from the cursor (GTE, with an overlap)');
is(scalar(@{ hs_requests('GET', qr{^/crm/v3/objects/contacts$}) }), 1, 'the archived listing was read');
is(sq("SELECT count(*) FROM crm.contact WHERE remote_id = '$ids[2]'"), '1', 'a hard delete is not seen before reconciliation');
sq(q{UPDATE sync.mirror_state SET cursor = jsonb_set(cursor, '{reconciled_at}', '0')
      WHERE mirror = (SELECT id FROM sync.mirror WHERE remote_object = 'contacts')});
sq("SELECT sync.pull('crm.contact')");
is(sq("SELECT count(*) FROM crm.contact WHERE remote_id = '$ids[2]'"), '0', 'reconciliation (when due) removes a hard-deleted record');
is(sq("SELECT count(*) FROM crm.contact"), '4998', 'and nothing else');
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'nothing was echoed back');

# a pull with no remote change touches nothing
sq("CREATE TABLE touched (n int); INSERT INTO touched VALUES (0);
   CREATE FUNCTION count_touch() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN UPDATE public.touched SET n = n + 1; RETURN NULL; END \$\$;
   CREATE TRIGGER count_touch AFTER UPDATE ON crm.contact FOR EACH ROW EXECUTE FUNCTION count_touch();");
sq("SELECT sync.pull('crm.contact')");
is(sq("SELECT n FROM touched"), '0', 're-reading the overlap window touches no row');

# --- a local update of one property sends only that property ---
clear_log();
sq("UPDATE crm.contact SET firstname = 'Changed' WHERE email = 'p20\@example.com'");
sq("UPDATE crm.contact SET lastname = lastname WHERE email = 'p21\@example.com'");
like(sq("SELECT sync.push('crm.contact')"), qr/"sent": 1/, 'one record pushed');
my $upd = hs_requests('POST', qr{/batch/update$});
is(scalar(@$upd), 1, 'one batch/update request');
is_deeply([ keys %{ $upd->[0]{body}{inputs}[0]{properties} } ], ['firstname'], '... carrying only firstname');
like($upd->[0]{body}{inputs}[0]{objectWriteTraceId}, qr/^\d+$/, '... with an objectWriteTraceId (the outbox id)');
my $rid20 = sq("SELECT remote_id FROM crm.contact WHERE email = 'p20\@example.com'");
my ($rec20) = grep { $_->{id} eq $rid20 } @{ remote('contacts') };
is($rec20->{properties}{firstname}, 'Changed', 'the remote record has the new value');

# --- 1,000 updates go in 10 requests of 100 ---
clear_log();
sq("UPDATE crm.contact SET lastname = 'Bulk' || id WHERE id IN (SELECT id FROM crm.contact ORDER BY id LIMIT 1000)");
like(sq("SELECT sync.push('crm.contact')"), qr/"sent": 1000/, '1,000 updates pushed');
$upd = hs_requests('POST', qr{/batch/update$});
is(scalar(@$upd), 10, '... in 10 requests');
is_deeply([ map { scalar @{ $_->{body}{inputs} } } @$upd ], [ (100) x 10 ], '... of 100 inputs each');
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'results matched although HubSpot answers in another order');

# --- creates: upsert by email; a malformed email is parked alone ---
clear_log();
sq("INSERT INTO crm.contact (email, firstname, lastname) VALUES
    ('new1\@example.com', 'N1', 'New'), ('not-an-email', 'Bad', 'New'), ('new2\@example.com', 'N2', 'New'),
    ('p30\@example.com', 'Dup', 'New')");
$r = sq("SELECT sync.push('crm.contact')");
like($r, qr/"sent": 2, "rejected": 2/,
	'of four creates: two sent, the bad email rejected, the one matching an existing contact parked');
my $ups = hs_requests('POST', qr{/batch/upsert$});
is($ups->[0]{body}{inputs}[0]{idProperty}, 'email', 'creates are upserts by email');
is(scalar(@{ $ups->[0]{body}{inputs} }), 4, '... all four in one request first (then bisected: the bad email fails the batch)');
like(sq("SELECT error_message FROM sync.errors"), qr/Property values were not valid.*INVALID_EMAIL/,
	'the bad record is parked with HubSpot\'s message');
is(sq("SELECT count(*) FROM crm.contact WHERE lastname = 'New' AND remote_id IS NOT NULL"), '2', 'the others succeeded');
my ($p30) = grep { $_->{properties}{email} eq 'p30@example.com' } @{ remote('contacts') };
is($p30->{properties}{firstname}, 'Dup', 'an insert whose email exists remotely updated that contact (no duplicate)');
is(sq("SELECT remote_id FROM crm.contact WHERE email = 'p30\@example.com' AND lastname <> 'New'"), $p30->{id},
	'... the row that already mirrored that contact keeps it (never deleted as an "echo")');
like(sq("SELECT error_code || ' ' || remote_id || ' ' || error_message FROM sync.errors WHERE operation = 'write-back'"),
	qr/^WRITE_BACK_FAILED $p30->{id} the remote matched this row to record $p30->{id}, which row \d+ of crm.contact mirrors already/,
	'... and the new row is parked, naming the record and the row that holds it');
sq("DELETE FROM crm.contact WHERE email = 'not-an-email' OR (email = 'p30\@example.com' AND remote_id IS NULL)");
sq("SELECT sync.retry('crm.contact')");
sq("SELECT sync.push('crm.contact')");
is(sq("SELECT count(*) FROM sync.errors"), '0', 'the parked entries of deleted rows are dropped on retry');
sq("SELECT sync.push('crm.contact')");    # the deletes queued behind them
is(sq("SELECT count(*) FROM sync.outbox"), '0', '... and the deletes behind them are done');
ok((grep { $_->{id} eq $p30->{id} } @{ remote('contacts') }), '... and deleting the duplicate row archived nothing remotely');

# --- a whole-batch 400 is bisected: only the bad input is parked ---
clear_log();
sq("INSERT INTO crm.contact (email, firstname, lastname, lifecyclestage)
    SELECT 'b' || g || '\@example.com', 'B' || g, 'Bisect', CASE WHEN g = 7 THEN 'bogus' ELSE 'lead' END
      FROM generate_series(1, 10) g");
$r = sq("SELECT sync.push('crm.contact')");
like($r, qr/"rejected": 1,/, 'whole-batch 400: one rejected');
is(sq("SELECT count(*) FROM crm.contact WHERE lastname = 'Bisect' AND remote_id IS NOT NULL"), '9', '... the nine others sent');
like(sq("SELECT error_code || ' ' || error_message FROM sync.errors"), qr/VALIDATION_ERROR Property values were not valid.*bogus/,
	'the bad input is parked with HubSpot\'s message');
is(sq("SELECT array_to_string(error_fields, ',') FROM sync.errors"), 'lifecyclestage', '... naming the property');
ok(scalar(@{ hs_requests('POST', qr{/batch/upsert$}) }) <= 9, 'bisecting took few requests (' . scalar(@{ hs_requests('POST', qr{/batch/upsert$}) }) . ')');
sq("UPDATE crm.contact SET lifecyclestage = 'lead' WHERE lifecyclestage = 'bogus'");
sq("SELECT sync.retry('crm.contact')");
sq("SELECT sync.push('crm.contact')");
is(sq("SELECT count(*) FROM sync.errors"), '0', 'fixed and retried, it goes through');

# --- a company created locally gets its remote ID ---
sq("INSERT INTO crm.company (name, domain) VALUES ('Acme', 'acme.example.com')");
sq("SELECT sync.push('crm.company')");
my $acme = sq("SELECT remote_id FROM crm.company WHERE name = 'Acme'");
like($acme, qr/^\d+$/, 'a company created, its ID written back');

# --- contact + company inserted in one transaction arrive associated ---
sq("BEGIN;
    INSERT INTO crm.company (id, name, domain) VALUES (1000, 'Parent Inc', 'parent.example.com');
    INSERT INTO crm.contact (email, firstname, lastname, associations_companies) VALUES ('child\@example.com', 'Child', 'Of', '\@1000');
    COMMIT;");
sq("SELECT sync.push('crm.company')");
sq("SELECT sync.push('crm.contact')");
my $parent = sq("SELECT remote_id FROM crm.company WHERE id = 1000");
my $child = sq("SELECT remote_id FROM crm.contact WHERE email = 'child\@example.com'");
like($child, qr/^\d+$/, 'the contact was created');
is(companies_of($child), $parent, 'it is associated with the new company');
is(sq("SELECT associations_companies FROM crm.contact WHERE email = 'child\@example.com'"), $parent,
	'the reference column now holds the company\'s remote ID');
# change and clear the association
clear_log();
sq("UPDATE crm.contact SET associations_companies = '$acme' WHERE email = 'child\@example.com'");
sq("SELECT sync.push('crm.contact')");
is(companies_of($child), $acme, 'changing the reference moves the association');
ok(!@{ hs_requests('POST', qr{/batch/update$}) }, '... without a property update');
sq("UPDATE crm.contact SET associations_companies = NULL WHERE email = 'child\@example.com'");
sq("SELECT sync.push('crm.contact')");
is(companies_of($child), '', 'setting it to NULL removes the association');
is(sq("SELECT count(*) FROM sync.errors"), '0', 'no errors');

# --- a local delete archives the remote record ---
sq("DELETE FROM crm.contact WHERE email = 'new1\@example.com'");
clear_log();
sq("SELECT sync.push('crm.contact')");
is(scalar(@{ hs_requests('POST', qr{/batch/archive$}) }), 1, 'a local delete: one batch/archive');
ok(!(grep { $_->{properties}{email} eq 'new1@example.com' } @{ remote('contacts') }), 'the remote record is archived');

# --- more than 10,000 remote changes since the cursor, all pulled ---
# Stamps come in groups of 300 records: more than a search page share each
# stamp, so only the keyset's hs_object_id tie-break makes progress there.
my $before = sq("SELECT count(*) FROM crm.contact");
my $base = 1_700_000_000_000 + 86400_000 * 3650;
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ map { { email => "bulk$_\@example.com", firstname => "Bulk$_",
			  lastmodifieddate => "" . ($base + int($_ / 300) * 1000) } } 1 .. 10500 ]);
clear_log();
my $t0 = time;
sq("SELECT sync.pull('crm.contact')");
is(sq("SELECT count(*) FROM crm.contact") - $before, 10500, '10,500 remote changes since the cursor all arrived');
$search = hs_requests('POST', qr{/search$});
ok(!(grep { defined $_->{body}{after} && $_->{body}{after} >= 10000 } @$search), 'no search paged to the 10,000 cap');
ok(!(grep { $_->{status} != 200 } @$search), 'no search failed (' . scalar(@$search) . ' searches)');
ok(!(grep { ($_->{body}{limit} // 0) != 200 || exists $_->{body}{after} } @$search),
	'every search asked for 200 and paged by keyset, never by offset');
my @times = map { $_->{time} } @$search;
my $max1s = 0;
for my $i (0 .. $#times)
{
	my $n = grep { $_ > $times[$i] - 1.0 && $_ <= $times[$i] } @times;
	$max1s = $n if $n > $max1s;
}
ok($max1s <= 5, "search kept to its own limit: at most $max1s searches in any second");
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'nothing echoed');
note(sprintf('pulled 10,500 changes in %.1f s', time - $t0));

$node->stop;
$emu->stop;
done_testing();
