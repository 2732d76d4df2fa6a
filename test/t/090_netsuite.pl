# NetSuite over HTTPS against the emulator: connections (token-based and
# machine-to-machine auth), then describe, backfill, increments, deletes and
# pushes with sync.pull() / sync.push().
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('ns');
$node->init;
$node->start;
my $db = 'postgres';
$node->safe_psql($db, 'CREATE EXTENSION sync; CREATE SCHEMA erp;');
sub sq { return $node->safe_psql($db, $_[0]); }
sub err_of { my ($rc, $out, $err) = $node->psql($db, $_[0]); return $err; }
my ($url, $ca) = ($emu->{url}, $emu->{ca_file});

# --- token-based authentication (OAuth 1.0a, HMAC-SHA256)
sq(qq{SELECT sync.create_connection('ns_tba', 'netsuite', '{
  "account": "1234567", "base_url": "$url", "ca_file": "$ca",
  "auth": {"type": "tba", "consumer_key": "ns-consumer-key", "consumer_secret": "ns-consumer-secret",
           "token_id": "ns-token-id", "token_secret": "ns-token-secret"}}')});
like(sq(q{SELECT sync.test_connection('ns_tba')}), qr/"auth_type"\s*:\s*"tba"/,
	'a token-based connection signs requests NetSuite accepts');
unlike(sq(q{SELECT options::text FROM sync.connections WHERE name = 'ns_tba'}), qr/ns-token-secret|ns-consumer-secret/,
	'TBA secrets are not stored with the options');
sq(qq{SELECT sync.create_connection('ns_bad', 'netsuite', '{
  "account": "1234567", "base_url": "$url", "ca_file": "$ca",
  "auth": {"type": "tba", "consumer_key": "ns-consumer-key", "consumer_secret": "wrong",
           "token_id": "ns-token-id", "token_secret": "ns-token-secret"}}')});
my $e = err_of(q{SELECT sync.test_connection('ns_bad')});
like($e, qr/connection "ns_bad": NetSuite refused the credentials.*Invalid login attempt/s,
	'a wrong secret: the error names the connection and NetSuite\'s words');
unlike($e, qr/wrong|ns-token-secret/, '... and leaks no secret');

# --- describe: the metadata catalog's JSON Schema
my %f = map { my @c = split /\|/; ($c[0] => \@c) }
  split /\n/, sq(q{SELECT remote_name, local_column, local_type, role, coalesce(reference_to, ''), external_id
                   FROM sync.remote_fields('ns_tba', 'customer')});
is_deeply([ @{ $f{companyName} }[1, 2, 3] ], [ 'company_name', 'text', 'data' ],
	'describe: companyName is text in company_name');
is_deeply([ @{ $f{id} }[2, 3] ], [ 'text', 'id' ], '... id is the record ID');
is_deeply([ @{ $f{lastModifiedDate} }[1, 2, 3] ], [ 'last_modified_date', 'timestamptz', 'stamp' ],
	'... lastModifiedDate is the stamp');
is_deeply([ @{ $f{subsidiary} }[2, 4] ], [ 'bigint', 'subsidiary' ], '... a $ref is a bigint referencing its type');
is($f{externalId}[5], 't', '... externalId is an external ID');
is($f{isPerson}[2], 'boolean', '... a boolean is boolean');
is($f{balance}[2], 'numeric', '... a number is numeric');
is($f{addressbook}[2], '', '... a sublist has no column type');
like(err_of(q{SELECT * FROM sync.remote_fields('ns_tba', 'nosuchtype')}),
	qr/NetSuite record type "nosuchtype" does not exist \(connection "ns_tba"\).*NetSuite said: /s,
	'an unknown record type: named with the connection and NetSuite\'s words');

done_testing();
