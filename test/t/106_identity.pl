# docs/recipes/identity.md, end to end through the worker with Salesforce,
# HubSpot and NetSuite live at once: one identity per person (by lower-cased
# email) and per company (by web domain).  Records already in two systems
# are linked, not duplicated, when the recipe is adopted; a person created
# in HubSpot appears linked in Salesforce and NetSuite, one created in
# NetSuite in the other two, a company created in Salesforce in the other
# two; a known person created again in NetSuite is linked (as a duplicate
# there), nothing is created elsewhere; afterwards no system receives a
# write.  A HubSpot merge of two contacts collapses their identities; the
# other systems keep both records, linked to the survivor (the recipe's
# policy), and receive nothing; a Salesforce merge of that pair follows (the
# record kept becomes the primary); a Salesforce merge of two accounts
# collapses two company identities, HubSpot and NetSuite keeping both.
# Without the trigger on sync.merge_log (as after a dump and restore), the
# recipe's catch-up function follows the merges logged meanwhile.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('identity');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
});
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
sub wait_for { my ($sql, $what) = @_; ok($node->poll_query_until($db, $sql), $what); }

# the emulator's live records, by system and object, with one flat shape
sub remote
{
	my ($api, $object) = @_;
	my $recs = $emu->control('GET', "/__emulator/records/$api/$object");
	return [ map { $api eq 'hubspot' ? { %{ $_->{properties} }, id => $_->{id} } : $_ } @$recs ];
}
# how many live records of $object in $api have $value in $field (case-insensitive)
sub count_remote
{
	my ($api, $object, $field, $value) = @_;
	return scalar(grep { lc($_->{$field} // '') eq lc($value) } @{ remote($api, $object) });
}
# requests that change remote data (not reads, searches, SuiteQL or auth)
sub writes
{
	my ($api) = @_;
	return [ grep { $_->{method} ne 'GET' && $_->{path} !~ m{/search$|/batch/read$|/suiteql|/oauth|/token|/__emulator/} }
		  @{ $emu->requests($api) } ];
}
# the identity (crosswalk row) that owns a key
sub crosswalk
{
	my ($key) = @_;
	my $row = sq(qq{SELECT identity || '|' || array_to_string(keys, ',') || '|'
	                     || coalesce(array_to_string(salesforce, ','), '') || '|'
	                     || coalesce(array_to_string(hubspot, ','), '') || '|'
	                     || coalesce(array_to_string(netsuite, ','), '')
	                  FROM ident.crosswalk WHERE '$key' = ANY (keys)});
	my @f = split /\|/, $row, -1;
	return { identity => $f[0], keys => $f[1], salesforce => [ split /,/, $f[2] ],
		hubspot => [ split /,/, $f[3] ], netsuite => [ split /,/, $f[4] ] };
}

# already there before the recipe: Carol and Initech in Salesforce and in
# HubSpot (spelled differently: HubSpot lower-cases emails, Salesforce keeps
# them as typed), in NetSuite not at all
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ { FirstName => 'Carol', LastName => 'Shared', Email => 'Carol@Shared.example' } ]);
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ { email => 'carol@shared.example', firstname => 'Carol', lastname => 'Shared' } ]);
$emu->control('POST', '/__emulator/records/salesforce/Account',
	[ { Name => 'Initech', Website => 'https://www.initech.example/' } ]);
$emu->control('POST', '/__emulator/records/hubspot/companies',
	[ { name => 'Initech Corp', domain => 'initech.example' } ]);

# section 1 of the recipe, with a pull every second
my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
sq(qq{CREATE EXTENSION sync; CREATE SCHEMA crm; CREATE SCHEMA erp;
  SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "$url", "ca_file": "$ca",
    "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
  SELECT sync.create_connection('hs', 'hubspot', '{"base_url": "$url", "ca_file": "$ca",
    "auth": {"type": "private_app", "token": "pat-sync-test"}}');
  SELECT sync.create_connection('ns', 'netsuite', '{"account": "1234567", "base_url": "$url", "ca_file": "$ca",
    "auth": {"type": "tba", "consumer_key": "ns-consumer-key", "consumer_secret": "ns-consumer-secret",
             "token_id": "ns-token-id", "token_secret": "ns-token-secret"}}');
  SELECT sync.mirror('sf', 'Contact', 'crm.sf_contact', fields => ARRAY['FirstName', 'LastName', 'Email'],
                     options => '{"pull_interval": "1 second"}');
  SELECT sync.mirror('sf', 'Account', 'crm.sf_account', fields => ARRAY['Name', 'Website'],
                     options => '{"pull_interval": "1 second"}');
  SELECT sync.mirror('hs', 'contacts', 'crm.hs_contact', fields => ARRAY['email', 'firstname', 'lastname'],
                     options => '{"pull_interval": "1 second"}');
  SELECT sync.mirror('hs', 'companies', 'crm.hs_company', fields => ARRAY['name', 'domain'],
                     options => '{"pull_interval": "1 second"}');
  SELECT sync.mirror('ns', 'contact', 'erp.ns_contact', fields => ARRAY['firstName', 'lastName', 'email'],
                     options => '{"idempotency_field": "externalId", "pull_interval": "1 second"}');
  SELECT sync.mirror('ns', 'customer', 'erp.ns_customer', fields => ARRAY['companyName', 'url'],
                     options => '{"idempotency_field": "externalId", "pull_interval": "1 second"}');});
wait_for("SELECT count(*) = 6 AND bool_and(phase = 'incremental') FROM sync.status", 'the six mirrors backfilled');

# the recipe's steps, verbatim
my $recipe = slurp_file("$ENV{SYNC_TREE}/docs/recipes/identity.md");
my @steps = grep { /^-- step/ } ($recipe =~ /```sql\n(.*?)```/sg);
is(scalar(@steps), 6, "the recipe's six steps");
sq($_) for @steps;

# ---------------------------------------------------------------------------
# adopted: the records already in two systems are linked, not duplicated
# ---------------------------------------------------------------------------
SyncTest::wait_until(sub { count_remote('netsuite', 'contact', 'email', 'carol@shared.example') > 0 }, 30);
is(count_remote('netsuite', 'contact', 'email', 'carol@shared.example'), 1,
	'Carol, in Salesforce and HubSpot already, is created in NetSuite once');
is(count_remote('salesforce', 'Contact', 'Email', 'carol@shared.example'), 1, '... Salesforce keeps its one Carol (spelled otherwise)');
is(count_remote('hubspot', 'contacts', 'email', 'carol@shared.example'), 1, '... HubSpot its one');
SyncTest::wait_until(sub { count_remote('netsuite', 'customer', 'url', 'https://initech.example') > 0 }, 30);
is(count_remote('netsuite', 'customer', 'url', 'https://initech.example'), 1,
	'Initech, in Salesforce (www, a path) and HubSpot (bare domain), is created in NetSuite once');
is(scalar(@{ remote('salesforce', 'Account') }), 1, '... Salesforce keeps its one account');
is(scalar(@{ remote('hubspot', 'companies') }), 1, '... HubSpot its one company');

# ---------------------------------------------------------------------------
# created in one system: appears, linked, in the two others
# ---------------------------------------------------------------------------
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ { email => 'hana@hs.example', firstname => 'Hana', lastname => 'Hubspot' },
	  { email => 'gus@one.example', firstname => 'Gus', lastname => 'One' },
	  { email => 'gus@two.example', firstname => 'Gus', lastname => 'Two' },
	  { email => 'ida@one.example', firstname => 'Ida', lastname => 'One' },
	  { email => 'ida@two.example', firstname => 'Ida', lastname => 'Two' } ]);
$emu->control('POST', '/__emulator/records/netsuite/contact',
	[ { email => 'nina@ns.example', firstName => 'Nina', lastName => 'Netsuite' } ]);
$emu->control('POST', '/__emulator/records/salesforce/Account',
	[ { Name => 'Globex', Website => 'http://www.globex.example/about' } ]);

for my $e ('hana@hs.example', 'gus@one.example', 'gus@two.example', 'ida@one.example', 'ida@two.example')
{
	SyncTest::wait_until(sub { count_remote('salesforce', 'Contact', 'Email', $e) && count_remote('netsuite', 'contact', 'email', $e) }, 60);
	is(count_remote('salesforce', 'Contact', 'Email', $e) . '/' . count_remote('netsuite', 'contact', 'email', $e), '1/1',
		"$e, created in HubSpot, is one Salesforce and one NetSuite contact");
}
SyncTest::wait_until(sub { count_remote('salesforce', 'Contact', 'Email', 'nina@ns.example') && count_remote('hubspot', 'contacts', 'email', 'nina@ns.example') }, 60);
is(count_remote('salesforce', 'Contact', 'Email', 'nina@ns.example') . '/' . count_remote('hubspot', 'contacts', 'email', 'nina@ns.example'), '1/1',
	'Nina, created in NetSuite, is one Salesforce and one HubSpot contact');
my ($nina_sf) = grep { ($_->{Email} // '') eq 'nina@ns.example' } @{ remote('salesforce', 'Contact') };
is("$nina_sf->{FirstName} $nina_sf->{LastName}", 'Nina Netsuite', '... with her name');
SyncTest::wait_until(sub { count_remote('hubspot', 'companies', 'domain', 'globex.example') && count_remote('netsuite', 'customer', 'url', 'https://globex.example') }, 60);
is(count_remote('hubspot', 'companies', 'domain', 'globex.example') . '/' . count_remote('netsuite', 'customer', 'url', 'https://globex.example'), '1/1',
	'Globex, created in Salesforce, is one HubSpot company and one NetSuite customer');

# a person already known, created again in NetSuite: linked, nothing created
$emu->control('POST', '/__emulator/records/netsuite/contact',
	[ { email => 'HANA@hs.example', firstName => 'Hana', lastName => 'Again' } ]);
wait_for(q{SELECT count(*) = 2 FROM erp.ns_contact n JOIN ident.link l ON l.local_table = 'erp.ns_contact'::regclass AND l.local_id = n.id
            WHERE lower(n.email) = 'hana@hs.example'}, 'Hana created again in NetSuite is linked');

# settled: every record linked, with its ID; one identity per person and company
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'nothing left to push');
wait_for(q{SELECT count(*) = 0 FROM ident.link WHERE remote_id IS NULL}, 'every link knows its record\'s ID');
is(sq(q{SELECT string_agg(kind || ':' || array_to_string(keys, ',') || ':' || cardinality(salesforce) || cardinality(hubspot) || cardinality(netsuite), ' ' ORDER BY keys)
          FROM ident.crosswalk}),
	'person:carol@shared.example:111 company:globex.example:111 person:gus@one.example:111 person:gus@two.example:111 '
	  . 'person:hana@hs.example:112 person:ida@one.example:111 person:ida@two.example:111 company:initech.example:111 '
	  . 'person:nina@ns.example:111',
	'one identity per person and company, each with a record in every system (Hana twice in NetSuite)');
my $hana = crosswalk('hana@hs.example');
my ($hana_again) = map { $_->{id} } grep { ($_->{lastName} // '') eq 'Again' } @{ remote('netsuite', 'contact') };
is($hana->{netsuite}[1], $hana_again, '... the second NetSuite Hana linked as secondary');
is(sq(q{SELECT string_agg(system || ':' || cardinality(remote_ids), ',') FROM ident.duplicates}), 'netsuite:2',
	'... and listed as a duplicate in NetSuite, the only one');
is(count_remote('salesforce', 'Contact', 'Email', 'hana@hs.example') . '/' . count_remote('hubspot', 'contacts', 'email', 'hana@hs.example'),
	'1/1', '... nothing created in Salesforce or HubSpot');
is(scalar(@{ remote('salesforce', 'Contact') }) . '/' . scalar(@{ remote('hubspot', 'contacts') }) . '/'
	  . scalar(@{ remote('netsuite', 'contact') }), '7/7/8',
	'contacts: 7 in Salesforce, 7 in HubSpot, 8 in NetSuite (Hana twice)');
is(scalar(@{ remote('salesforce', 'Account') }) . '/' . scalar(@{ remote('hubspot', 'companies') }) . '/'
	  . scalar(@{ remote('netsuite', 'customer') }), '2/2/2', 'companies: 2 in each system');

# quiescence: every mirror keeps pulling each second, nobody writes
ok(scalar(@{ writes('salesforce') }) > 0 && scalar(@{ writes('hubspot') }) > 0 && scalar(@{ writes('netsuite') }) > 0,
	'(the request log shows the creates so far: writes are seen)');
sleep 3;
$emu->control('DELETE', '/__emulator/requests');
sleep 5;
for my $api (qw(hubspot salesforce netsuite))
{
	is(scalar(@{ writes($api) }), 0, "settled: no write to $api") or diag(explain(writes($api)));
}

# ---------------------------------------------------------------------------
# a HubSpot merge of two contacts: one identity; Salesforce and NetSuite keep
# both records, linked to it (primary and secondary), and receive nothing
# ---------------------------------------------------------------------------
my ($g1, $g2) = (crosswalk('gus@one.example'), crosswalk('gus@two.example'));
isnt($g1->{identity}, $g2->{identity}, 'Gus One and Gus Two: two identities before the merge');
$emu->control('DELETE', '/__emulator/requests');
my $merged = $emu->control('POST', '/__emulator/hubspot/merge',
	{ object => 'contacts', primary => $g1->{hubspot}[0], merged => $g2->{hubspot}[0] });
wait_for(q{SELECT count(*) = 1 FROM ident.identity WHERE merged_into IS NOT NULL}, 'the merge is followed');
my $g = crosswalk('gus@one.example');
is($g->{keys}, 'gus@one.example,gus@two.example', 'one identity for both emails');
is($g->{identity}, $g1->{identity}, '... the survivor is the primary\'s');
is(join(',', @{ $g->{hubspot} }), $merged->{id}, '... with the merged HubSpot record only');
is(join(',', @{ $g->{salesforce} }), join(',', $g1->{salesforce}[0], $g2->{salesforce}[0]),
	'... both Salesforce contacts, Gus One\'s first (primary), Gus Two\'s secondary');
is(join(',', @{ $g->{netsuite} }), join(',', $g1->{netsuite}[0], $g2->{netsuite}[0]),
	'... both NetSuite contacts, likewise');
is(sq(qq{SELECT string_agg(system, ',' ORDER BY system) FROM ident.duplicates WHERE identity = '$g->{identity}'}),
	'netsuite,salesforce', '... listed as duplicates for Salesforce\'s and NetSuite\'s users to merge');
is(sq(q{SELECT merged_into FROM ident.identity WHERE merged_into IS NOT NULL}), $g1->{identity},
	'... Gus Two\'s identity points to the survivor');
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'nothing queued by the merge');
sleep 3;
is(scalar(@{ writes('salesforce') }) . '/' . scalar(@{ writes('netsuite') }) . '/' . scalar(@{ writes('hubspot') }),
	'0/0/0', '... no write to any system: the other systems keep both records')
  or diag(explain([ writes('salesforce'), writes('netsuite'), writes('hubspot') ]));
is(count_remote('salesforce', 'Contact', 'Email', 'gus@two.example') . '/' . count_remote('netsuite', 'contact', 'email', 'gus@two.example'),
	'1/1', '... Gus Two is still in Salesforce and NetSuite');

# a new record with the loser's email finds the survivor
$emu->control('POST', '/__emulator/records/netsuite/contact',
	[ { email => 'gus@two.example', firstName => 'Gus', lastName => 'Three' } ]);
wait_for(qq{SELECT count(*) = 1 FROM ident.link l JOIN erp.ns_contact n ON l.local_table = 'erp.ns_contact'::regclass AND l.local_id = n.id
             WHERE n.last_name = 'Three' AND l.identity = '$g->{identity}' AND l.role = 'secondary'},
	'a later NetSuite record with the merged-away email is linked to the survivor');

# the Salesforce users merge their pair, keeping Gus Two's contact: the
# duplicate leaves the list, and the record left is the primary
$emu->control('POST', '/__emulator/salesforce/merge',
	{ object => 'Contact', master => $g->{salesforce}[1], losers => [ $g->{salesforce}[0] ] });
wait_for(qq{SELECT NOT EXISTS (SELECT 1 FROM ident.duplicates WHERE identity = '$g->{identity}' AND system = 'salesforce')},
	'a Salesforce merge of the pair is followed: no Salesforce duplicate left');
is(join(',', @{ crosswalk('gus@one.example')->{salesforce} }), $g->{salesforce}[1], '... the master stays linked');
is(sq(qq{SELECT role FROM ident.link WHERE local_table = 'crm.sf_contact'::regclass AND remote_id = '$g->{salesforce}[1]'}),
	'primary', '... as the primary now');
is(sq(q{SELECT count(*) FROM ident.identity WHERE merged_into IS NOT NULL}), '1', '... no identity collapsed (they were one)');

# a Salesforce merge of two accounts (Globex bought by Initech): the two
# company identities collapse; HubSpot and NetSuite keep both, linked
my ($initech, $globex) = (crosswalk('initech.example'), crosswalk('globex.example'));
$emu->control('DELETE', '/__emulator/requests');
$emu->control('POST', '/__emulator/salesforce/merge',
	{ object => 'Account', master => $initech->{salesforce}[0], losers => [ $globex->{salesforce}[0] ] });
wait_for(q{SELECT count(*) = 2 FROM ident.identity WHERE merged_into IS NOT NULL}, 'the Salesforce account merge is followed');
my $c = crosswalk('globex.example');
is($c->{identity} . ' ' . $c->{keys}, "$initech->{identity} globex.example,initech.example",
	'one company identity for both domains, Initech\'s');
is(join(',', @{ $c->{salesforce} }), $initech->{salesforce}[0], '... with the master account only');
is(join(',', @{ $c->{hubspot} }), join(',', $initech->{hubspot}[0], $globex->{hubspot}[0]),
	'... both HubSpot companies (Initech primary)');
is(join(',', @{ $c->{netsuite} }), join(',', $initech->{netsuite}[0], $globex->{netsuite}[0]),
	'... both NetSuite customers (Initech primary)');
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'nothing queued by the account merge');
sleep 3;
is(scalar(@{ writes('netsuite') }) . '/' . scalar(@{ writes('hubspot') }), '0/0',
	'... no write to HubSpot or NetSuite');
# after a dump and restore the trigger on sync.merge_log is gone (pg_dump
# leaves out a user's trigger on an extension's table, as the recipe says);
# a merge meanwhile is caught up with ident.follow_merges()
my $dumpdir = PostgreSQL::Test::Utils::tempdir();
$node->command_ok([ 'pg_dump', '-d', $node->connstr($db), '-f', "$dumpdir/dump.sql" ], 'pg_dump');
my $dump = slurp_file("$dumpdir/dump.sql");
ok($dump =~ /CREATE TABLE ident\.link/ && $dump !~ /ident_follow_merge/,
	'the dump has the identity tables but not the trigger on sync.merge_log');
sq('DROP TRIGGER ident_follow_merge ON sync.merge_log');
my ($i1, $i2) = (crosswalk('ida@one.example'), crosswalk('ida@two.example'));
$emu->control('POST', '/__emulator/hubspot/merge',
	{ object => 'contacts', primary => $i1->{hubspot}[0], merged => $i2->{hubspot}[0] });
wait_for(qq{SELECT count(*) > 0 FROM sync.merges WHERE loser_remote_id = '$i2->{hubspot}[0]'}, 'without the trigger: a merge of two Idas followed by sync');
isnt(crosswalk('ida@one.example')->{identity}, crosswalk('ida@two.example')->{identity}, '... not by the identities');
is(sq("SELECT ident.follow_merges()"), '1', 'ident.follow_merges() catches up: one collapse');
is(crosswalk('ida@two.example')->{identity}, $i1->{identity}, '... the two Idas are one identity');
is(sq("SELECT ident.follow_merges()"), '0', '... and following the log again changes nothing');

is(sq("SELECT count(*) FROM sync.errors"), '0', 'no errors anywhere');
done_testing();
