# NetSuite over HTTPS against the emulator: connections (token-based and
# machine-to-machine auth), then describe, backfill, increments, deletes and
# pushes with sync.pull() / sync.push().
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use POSIX qw(strftime);
use File::Temp;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

# 120 custom fields on customer: a mirror of them all reads more than SuiteQL's 100 columns
my $seed = File::Temp->new(SUFFIX => '.json');
print $seed encode_json({ netsuite => { fields => { customer =>
	[ map { { name => sprintf('custentity_f%03d', $_), type => 'text' } } 1 .. 120 ] } } });
close $seed;
my $emu = SyncTest::start_emulator(tls => 1, args => [ '--seed', $seed->filename ]);
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
is_deeply([ @{ $f{subsidiary} }[2, 4] ], [ 'text', 'subsidiary' ], '... a $ref is a reference to its type (text: the internal ID, or @key before the parent is pushed)');
is($f{externalId}[5], 't', '... externalId is an external ID');
is($f{isPerson}[2], 'boolean', '... a boolean is boolean');
is($f{balance}[2], 'numeric', '... a number is numeric');
is($f{addressbook}[2], '', '... a sublist has no column type');
like(err_of(q{SELECT * FROM sync.remote_fields('ns_tba', 'nosuchtype')}),
	qr/NetSuite record type "nosuchtype" does not exist \(connection "ns_tba"\).*NetSuite said: /s,
	'an unknown record type: named with the connection and NetSuite\'s words');

# --- more than 100 columns: the fields beyond the first query's are read by ID, in chunks
my $two = $emu->control('POST', '/__emulator/records/netsuite/customer',
	[ { companyName => 'Wide1', custentity_f001 => 'first', custentity_f120 => 'last', emailTransactions => JSON::PP::true,
		balance => 12.5, entityStatus => '6', dateCreated => '2024-02-03T04:05:06Z' },
	  { companyName => 'Wide2', custentity_f097 => 'second chunk' } ])->{ids};
my $wide = join(', ', map { sprintf("'custentity_f%03d'", $_) } 1 .. 120);
sq(qq{SELECT sync.mirror('ns_tba', 'customer', 'erp.customers_wide',
      ARRAY['companyName', 'emailTransactions', 'balance', 'entityStatus', 'dateCreated', $wide], 'pull')});
$emu->control('DELETE', '/__emulator/requests');
sq(q{SELECT sync.pull('erp.customers_wide')});
is(sq(qq{SELECT company_name || ' ' || custentity_f001 || ' ' || custentity_f120 FROM erp.customers_wide
         WHERE remote_id = '$two->[0]'}), 'Wide1 first last',
	'121 fields: all read, past SuiteQL\'s 100 columns');
is(sq(qq{SELECT custentity_f097 FROM erp.customers_wide WHERE remote_id = '$two->[1]'}), 'second chunk',
	'... each record its own values');
is(sq(qq{SELECT email_transactions || ' ' || balance || ' ' || entity_status || ' ' || (date_created = '2024-02-03T04:05:06Z')
         FROM erp.customers_wide WHERE remote_id = '$two->[0]'}), 'true 12.5 6 true',
	'values: SuiteQL\'s T a boolean, a number numeric, a reference its internal ID, a datetime in UTC');
is(sq(qq{SELECT email_transactions FROM erp.customers_wide WHERE remote_id = '$two->[1]'}), 'f', '... F false');
is(scalar(grep { ($_->{body}{q} // '') =~ /^SELECT id, custentity_f\d+, .* FROM customer WHERE id IN \($two->[0], $two->[1]\)/ }
		@{ $emu->requests('netsuite') }), 1, '... the rest in one query by the page\'s IDs');
sq(q{SELECT sync.unmirror('erp.customers_wide')});
$emu->control('DELETE', "/__emulator/records/netsuite/customer/$_") for @$two;

# --- mirror customer: the fields asked for, the record ID, the stamp
my $cfg = $emu->control('GET', '/__emulator/config');
my $has_dr = exists $cfg->{netsuite_deletedrecord};
sub remote { return $emu->control('GET', "/__emulator/records/netsuite/customer/$_[0]"); }
sub ql_calls
{
	return [ grep { $_->{path} =~ m{/query/v1/suiteql$} } @{ $emu->requests('netsuite') } ];
}
sub clear_log { $emu->control('DELETE', '/__emulator/requests'); }
sub cursor_set
{
	sq(qq{UPDATE sync.mirror_state SET cursor = jsonb_set(cursor, '{$_[0]}', '$_[1]')
	      WHERE mirror = (SELECT id FROM sync.mirror WHERE local_table = 'erp.customers'::regclass)});
}
sub cursor_get
{
	return sq(qq{SELECT cursor->>'$_[0]' FROM sync.mirror_state
	             WHERE mirror = (SELECT id FROM sync.mirror WHERE local_table = 'erp.customers'::regclass)});
}

# 2,100 customers (three pages); the first 1,200 share one lastModifiedDate
my @seed = map { { companyName => "Co$_", email => "c$_\@example.com", phone => "555-$_",
				   lastModifiedDate => ($_ <= 1200 ? '2024-03-01T10:00:00Z'
									   : sprintf('2024-03-02T%02d:%02d:00Z', int(($_ - 1201) / 60) % 24, ($_ - 1201) % 60)) } }
  1 .. 2100;
my $ids = $emu->control('POST', '/__emulator/records/netsuite/customer', \@seed)->{ids};

sq(q{SELECT sync.mirror('ns_tba', 'customer', 'erp.customers', ARRAY['companyName', 'email', 'phone'], 'pull')});
is(sq(q{SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
        FROM pg_attribute WHERE attrelid = 'erp.customers'::regclass AND attnum > 0 AND NOT attisdropped}),
	'id bigint, remote_id text, company_name text, email text, phone text, remote_modified_at timestamp with time zone',
	'mirror customer: company_name, email, phone, the record ID and the stamp');

clear_log();
sq(q{SELECT sync.pull('erp.customers')});
is(sq('SELECT count(*) FROM erp.customers'), '2100', 'backfill: all 2,100 customers');
is(sq(q{SELECT count(*) FROM erp.customers WHERE remote_modified_at = '2024-03-01T10:00:00Z'}), '1200',
	'... stamps in UTC');
is(sq(qq{SELECT company_name || '|' || email || '|' || phone FROM erp.customers WHERE remote_id = '$ids->[1300]'}),
	'Co1301|c1301@example.com|555-1301', '... with their values');
my @rq = grep { ($_->{body}{q} // '') =~ /FROM customer\b/ } @{ ql_calls() };
is(scalar @rq, 3, '... in three SuiteQL pages of 1,000');
is(scalar(grep { ($_->{query} // '') eq 'limit=1000&offset=0' } @rq), 3, '... each at offset 0 (keyset paging)');
like($rq[1]{body}{q}, qr/WHERE id > $ids->[999] ORDER BY id$/, '... by ID');
is(sq(q{SELECT backfill_done || '/' || backfill_total || ' ' || phase FROM sync.mirror_state s
        JOIN sync.mirror m ON m.id = s.mirror WHERE m.local_table = 'erp.customers'::regclass}),
	'2100/2100 incremental', 'sync.status\'s backfill progress counted the total and the records');

# --- an increment: 1,050 records changed in one second are all read across the page boundary
my $now = strftime('%Y-%m-%dT%H:%M:%SZ', gmtime);
my $new = $emu->control('POST', '/__emulator/records/netsuite/customer',
	[ map { { companyName => "New$_", lastModifiedDate => $now } } 1 .. 1050 ])->{ids};
clear_log();
sq(q{SELECT sync.pull('erp.customers')});
is(sq(q{SELECT count(*) FROM erp.customers WHERE company_name LIKE 'New%'}), '1050',
	'an increment reads 1,050 records sharing one lastmodifieddate across a page boundary');
is(sq(qq{SELECT count(*) FROM erp.customers WHERE remote_modified_at = '$now'}), '1050', '... stamped in UTC');
@rq = grep { ($_->{body}{q} // '') =~ /FROM customer\b/ } @{ ql_calls() };
is(scalar @rq, 2, '... in two SuiteQL pages');
like($rq[1]{body}{q}, qr/ OR \(TO_CHAR\(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS'\) = '[-0-9: ]+' AND id > $new->[999 - 0]\)\) ORDER BY TO_CHAR\(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS'\), id$/,
	'... the second by keyset on (lastmodifieddate, id)');

# --- an idle mirror does not read its last burst again at every pull: a
# completed run moves the cursor up to SuiteQL's clock when it began (the
# next run still re-reads the one-minute overlap before it).  The emulator's
# clock moves on three minutes, as time would (and stays there).
$emu->control('POST', '/__emulator/clock', { offset_s => 180 });
sub customer_pages
{
	clear_log();
	sq(q{SELECT sync.pull('erp.customers')});
	return scalar grep { ($_->{body}{q} // '') =~ /FROM customer\b/ && ($_->{body}{q} // '') =~ /lastmodifieddate/ } @{ ql_calls() };
}
is(customer_pages(), 2, 'the pull right after the burst reads it again (two pages: it is inside the overlap)');
is(customer_pages(), 1, '... the next, with SuiteQL\'s clock past it, reads nothing more (one empty page)');
is(customer_pages(), 1, '... nor the one after');

# --- an increment picks up a remote edit; its stamp is NetSuite's UTC time
$emu->control('PATCH', "/__emulator/records/netsuite/customer/$ids->[5]", { companyName => 'Edited' });
sq(q{SELECT sync.pull('erp.customers')});
is(sq(qq{SELECT company_name FROM erp.customers WHERE remote_id = '$ids->[5]'}), 'Edited',
	'an increment picks up a remote edit');
my $rest_stamp = remote($ids->[5])->{lastModifiedDate};
is(sq(qq{SELECT date_trunc('minute', remote_modified_at) = date_trunc('minute', '$rest_stamp'::timestamptz)
         FROM erp.customers WHERE remote_id = '$ids->[5]'}), 't',
	"... its stamp is the record API's UTC lastModifiedDate ($rest_stamp)");
isnt(cursor_get('tz'), undef, '... the SuiteQL time zone was calibrated');

# --- a stamp in the future (clocks apart, imported data) does not hide the changes after it
my $future = $emu->control('POST', '/__emulator/records/netsuite/customer',
	[ { companyName => 'From the future', lastModifiedDate => '2030-01-01T00:00:00Z' } ])->{ids};
sq(q{SELECT sync.pull('erp.customers')});
is(sq(qq{SELECT remote_modified_at FROM erp.customers WHERE remote_id = '$future->[0]'}), '2030-01-01 00:00:00+00',
	'a record stamped in the future is read');
$emu->control('PATCH', "/__emulator/records/netsuite/customer/$ids->[4]", { companyName => 'After the future' });
sq(q{SELECT sync.pull('erp.customers')});
is(sq(qq{SELECT company_name FROM erp.customers WHERE remote_id = '$ids->[4]'}), 'After the future',
	'... and a change after it still is (the cursor stays at SuiteQL\'s clock)');
$emu->control('DELETE', "/__emulator/records/netsuite/customer/$future->[0]");
sq(q{DELETE FROM erp.customers WHERE remote_id = '} . $future->[0] . q{'});

# --- a damaged SuiteQL answer is refused whole (nothing applied, the cursor stays); the next pull reads it
for my $case (qw(hostile_ids wrong_types html))
{
	$emu->control('PATCH', "/__emulator/records/netsuite/customer/$ids->[6]", { companyName => "After $case" });
	$emu->control('POST', '/__emulator/faults',
		{ api => 'netsuite', path => '/query/v1/suiteql$', kind => 'hostile', case => $case, count => 1 });
	my $err = err_of(q{SELECT sync.pull('erp.customers')});
	like($err, qr/connection "ns_tba"/, "hostile $case: the pull fails naming the connection");
	is(sq('SELECT count(*) FROM erp.customers WHERE remote_id !~ \'^[0-9]+$\' OR company_name = \'12345\''), '0',
		"... nothing of it is applied");
	sq(q{SELECT sync.pull('erp.customers')});
	is(sq(qq{SELECT company_name FROM erp.customers WHERE remote_id = '$ids->[6]'}), "After $case",
		'... and the next pull reads the change');
}
like(do { $emu->control('POST', '/__emulator/faults',
		{ api => 'netsuite', path => '/query/v1/suiteql$', kind => 'hostile', case => 'hostile_ids', count => 1 });
		$emu->control('PATCH', "/__emulator/records/netsuite/customer/$ids->[6]", { companyName => 'x' });
		err_of(q{SELECT sync.pull('erp.customers')}) },
	qr/id "001,002\/\.\.\/x\?y=1&z" is not a NetSuite internal ID/, 'a record ID that is not digits is refused by name');
sq(q{SELECT sync.pull('erp.customers')});

# --- time zones: SuiteQL shows the user's zone, the record API UTC.  The zone
# moving back (as when daylight saving time ends) re-reads the hour shown twice.
if (exists $cfg->{netsuite_user_timezone})
{
	my $base = sq(qq{SELECT EXTRACT(EPOCH FROM (now() AT TIME ZONE 'UTC') - (now() AT TIME ZONE '$cfg->{netsuite_user_timezone}'))::int});
	is(cursor_get('tz'), $base, "SuiteQL's zone ($cfg->{netsuite_user_timezone}) is calibrated");
	for my $zone ('Pacific/Honolulu', 'Asia/Kathmandu')
	{
		$emu->control('POST', '/__emulator/config', { netsuite_user_timezone => $zone });
		$emu->control('PATCH', "/__emulator/records/netsuite/customer/$ids->[9]", { companyName => "In $zone" });
		sq(q{SELECT sync.pull('erp.customers')});
		is(sq(qq{SELECT company_name FROM erp.customers WHERE remote_id = '$ids->[9]'}), "In $zone",
			"a change made after the zone moved to $zone is read");
		$rest_stamp = remote($ids->[9])->{lastModifiedDate};
		is(sq(qq{SELECT date_trunc('minute', remote_modified_at) = date_trunc('minute', '$rest_stamp'::timestamptz)
		         FROM erp.customers WHERE remote_id = '$ids->[9]'}), 't',
			"... its stamp is still the UTC $rest_stamp");
		is(cursor_get('tz'), sq(qq{SELECT EXTRACT(EPOCH FROM (now() AT TIME ZONE 'UTC') - (now() AT TIME ZONE '$zone'))::int}),
			'... the offset recalibrated (quarter hours)');
	}
	$emu->control('POST', '/__emulator/config', { netsuite_user_timezone => $cfg->{netsuite_user_timezone} });
}

# --- a remote delete arrives
$emu->control('DELETE', "/__emulator/records/netsuite/customer/$ids->[7]");
my $gone = $ids->[7];
if ($has_dr)
{
	sq(q{SELECT sync.pull('erp.customers')});
	is(sq(qq{SELECT count(*) FROM erp.customers WHERE remote_id = '$ids->[7]'}), '0',
		'a remote delete arrives through SuiteQL\'s deletedrecord');
	is(cursor_get('deletes'), 'deletedrecord', '... read incrementally with its own cursor');
	$emu->control('POST', '/__emulator/config', { netsuite_deletedrecord => JSON::PP::false });
	$emu->control('DELETE', "/__emulator/records/netsuite/customer/$ids->[8]");
	sq(q{SELECT sync.pull('erp.customers')});
	is(sq(qq{SELECT count(*) FROM erp.customers WHERE remote_id = '$ids->[8]'}), '0',
		'deletedrecord no longer readable: IDs are reconciled at once (its feed has a gap)');
	$gone = $ids->[12];
	$emu->control('DELETE', "/__emulator/records/netsuite/customer/$gone");
}
sq(q{SELECT sync.pull('erp.customers')});
is(cursor_get('deletes'), 'reconcile', 'without deletedrecord: reconciliation of IDs');
is(sq(qq{SELECT count(*) FROM erp.customers WHERE remote_id = '$gone'}), '1',
	'... not before it is due');
cursor_set('reconciled_at', '0');
clear_log();
sq(q{SELECT sync.pull('erp.customers')});
is(sq(qq{SELECT count(*) FROM erp.customers WHERE remote_id = '$gone'}), '0',
	'... then the remote delete arrives');
is(sq('SELECT count(*) FROM erp.customers'), $has_dr ? '3147' : '3149', '... and nothing else went');
is(scalar(grep { ($_->{body}{q} // '') =~ /^SELECT id FROM customer WHERE id > / } @{ ql_calls() }), 4,
	'... the IDs listed in pages of 1,000 by keyset on id');

# --- poison inbound: a value the table refuses is set aside, the rest arrive; sync.retry re-reads it
sq(q{ALTER TABLE erp.customers ADD CONSTRAINT no_poison CHECK (company_name <> 'POISON')});
$emu->control('PATCH', "/__emulator/records/netsuite/customer/$ids->[10]", { companyName => 'POISON' });
$emu->control('PATCH', "/__emulator/records/netsuite/customer/$ids->[11]", { companyName => 'Fine' });
sq(q{SELECT sync.pull('erp.customers')});
is(sq(qq{SELECT company_name FROM erp.customers WHERE remote_id = '$ids->[11]'}), 'Fine',
	'poison inbound: the other record arrives');
like(sq(qq{SELECT direction || ' ' || error_message FROM sync.errors WHERE remote_id = '$ids->[10]'}),
	qr/^in .*no_poison/, '... the refused one is set aside in sync.errors');
sq(q{ALTER TABLE erp.customers DROP CONSTRAINT no_poison});
clear_log();
sq(q{SELECT sync.retry('erp.customers')});
sq(q{SELECT sync.pull('erp.customers')});
is(sq(qq{SELECT company_name FROM erp.customers WHERE remote_id = '$ids->[10]'}), 'POISON',
	'... after the fix, sync.retry re-reads it by ID and applies it');
is(scalar(grep { ($_->{body}{q} // '') =~ /WHERE id IN \($ids->[10]\)/ } @{ ql_calls() }), 1,
	'... with SuiteQL WHERE id IN (...)');
is(sq(qq{SELECT count(*) FROM sync.errors WHERE remote_id = '$ids->[10]'}), '0', '... and the error is gone');

# --- the mirror option filter: a SuiteQL condition, checked by NetSuite, applied to every query
like(err_of(q{SELECT sync.mirror('ns_tba', 'customer', 'erp.f1', ARRAY['companyName'], 'pull',
                                 '{"filter": "companyname = 1; DELETE"}')}),
	qr/invalid mirror option "filter".*one SuiteQL condition/s, 'filter: a statement of its own is refused');
like(err_of(q{SELECT sync.mirror('ns_tba', 'customer', 'erp.f1', ARRAY['companyName'], 'pull',
                                 '{"filter": "nosuchcolumn = 1"}')}),
	qr/invalid mirror option "filter" for NetSuite customer\nDETAIL:  NetSuite said: .*nosuchcolumn/s,
	'... a condition NetSuite refuses, with its words');
sq(q{SELECT sync.mirror('ns_tba', 'customer', 'erp.filtered', ARRAY['companyName'], 'pull',
                        '{"filter": "companyname LIKE ''New10%''"}')});
sq(q{SELECT sync.pull('erp.filtered')});
is(sq(q{SELECT count(*) || ' ' || count(*) FILTER (WHERE company_name LIKE 'New10%') FROM erp.filtered}), '62 62',
	'... a filter picks its records (New10, New100-109, New1000-1050)');

# --- a field SuiteQL does not know (a few record-API names differ): NetSuite's words and what to do
sq(q{UPDATE sync.field SET remote_name = 'phoneX' WHERE remote_name = 'phone'
     AND mirror = (SELECT id FROM sync.mirror WHERE local_table = 'erp.customers'::regclass)});
$emu->control('PATCH', "/__emulator/records/netsuite/customer/$ids->[13]", { companyName => 'Later' });
like(err_of(q{SELECT sync.pull('erp.customers')}),
	qr/connection "ns_tba": NetSuite refused the SuiteQL query while querying customer with SuiteQL: .*phonex.*\n.*\nHINT:  .*mirror the type again without it/s,
	'a field SuiteQL does not know: NetSuite\'s words, and the hint to mirror without it');
sq(q{UPDATE sync.field SET remote_name = 'phone' WHERE remote_name = 'phoneX'});
sq(q{SELECT sync.pull('erp.customers')});
is(sq(qq{SELECT company_name FROM erp.customers WHERE remote_id = '$ids->[13]'}), 'Later', '... the field fixed, pulls go on');

# --- a transaction type: SuiteQL's transaction table, its own rows only
$emu->control('POST', '/__emulator/config', { netsuite_deletedrecord => JSON::PP::true }) if $has_dr;
my $so = $emu->control('POST', '/__emulator/records/netsuite/salesOrder',
	[ map { { entity => $ids->[30], memo => "Order $_", tranDate => '2024-05-0' . $_, total => 10 * $_ } } 1 .. 2 ])->{ids};
$emu->control('POST', '/__emulator/records/netsuite/invoice', [ { entity => $ids->[30], memo => 'An invoice' } ]);
sq(q{SELECT sync.mirror('ns_tba', 'salesOrder', 'erp.orders', ARRAY['memo', 'tranDate', 'total', 'entity'], 'pull')});
sq(q{SELECT sync.pull('erp.orders')});
is(sq(q{SELECT string_agg(memo || ' ' || tran_date || ' ' || total || ' ' || entity, ', ' ORDER BY memo) FROM erp.orders}),
	"Order 1 2024-05-01 10 $ids->[30], Order 2 2024-05-02 20 $ids->[30]",
	'salesOrder: its rows of SuiteQL\'s transaction table (no invoice), dates, numbers, references');
if ($has_dr)
{
	$emu->control('DELETE', "/__emulator/records/netsuite/salesOrder/$so->[0]");
	sq(q{SELECT sync.pull('erp.orders')});
	is(sq('SELECT memo FROM erp.orders'), 'Order 2', '... and a deleted sales order goes through deletedrecord');
}

# --- option time_zone (the integration user's zone): exact UTC stamps in either half of a DST year
SKIP:
{
	my $zone = $cfg->{netsuite_user_timezone} // 'UTC';
	my $e = err_of(qq{SELECT sync.create_connection('ns_tz', 'netsuite', '{
	  "account": "1234567", "base_url": "$url", "ca_file": "$ca", "time_zone": "$zone",
	  "auth": {"type": "tba", "consumer_key": "ns-consumer-key", "consumer_secret": "ns-consumer-secret",
	           "token_id": "ns-token-id", "token_secret": "ns-token-secret"}}')});
	skip 'the connection option time_zone is not in this build (src/netsuite.c)', 3 if $e =~ /time_zone/;
	my $tz = $emu->control('POST', '/__emulator/records/netsuite/customer',
		[ { companyName => 'Summer', lastModifiedDate => '2024-07-01T12:00:00Z' },
		  { companyName => 'Winter', lastModifiedDate => '2024-01-15T12:00:00Z' } ])->{ids};
	sq(q{SELECT sync.mirror('ns_tz', 'customer', 'erp.customers_tz', ARRAY['companyName'], 'pull')});
	sq(q{SELECT sync.pull('erp.customers_tz')});
	is(sq(qq{SELECT remote_modified_at = '2024-07-01T12:00:00Z' FROM erp.customers_tz WHERE remote_id = '$tz->[0]'}), 't',
		"time_zone $zone: a stamp of summer is exact UTC");
	is(sq(qq{SELECT remote_modified_at = '2024-01-15T12:00:00Z' FROM erp.customers_tz WHERE remote_id = '$tz->[1]'}), 't',
		'... and one of winter');
	(my $bad = qq{SELECT sync.create_connection('ns_tz_bad', 'netsuite', '{
	  "account": "1234567", "base_url": "$url", "ca_file": "$ca", "time_zone": "Asia/Tokyo",
	  "auth": {"type": "tba", "consumer_key": "ns-consumer-key", "consumer_secret": "ns-consumer-secret",
	           "token_id": "ns-token-id", "token_secret": "ns-token-secret"}}')});
	sq($bad);
	sq(q{SELECT sync.mirror('ns_tz_bad', 'customer', 'erp.customers_tz_bad', ARRAY['companyName'], 'pull')});
	like(err_of(q{SELECT sync.pull('erp.customers_tz_bad')}),
		qr/WARNING:  connection "ns_tz_bad": SuiteQL's clock \(SYSDATE\) shows UTC-\d+ min, but the option time_zone "Asia\/Tokyo" is at UTC\+540 min now/,
		'a time_zone that does not match SuiteQL\'s clock is warned about');
}

done_testing();
