# NetSuite writes against the emulator over HTTPS (token-based auth),
# function mode (sync.push()): creates by POST with the internal ID taken
# from Location, or by PUT .../eid:{key} with the idempotency field (exactly
# once across a lost response and across kill -9); updates by PATCH with only
# the changed fields; deletes (a record already gone counts as done); values
# as NetSuite JSON; refusals parked with NetSuite's words while their
# siblings go; 429 CONCURRENCY_LIMIT_EXCEEDED retried until everything is in,
# never more requests in flight than the connection's concurrency.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use File::Temp qw(tempdir);
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

# custom fields of types the standard customer has none writable of
my $seed = tempdir(CLEANUP => 1) . '/seed.json';
open(my $fh, '>', $seed) or die $!;
print $fh encode_json({ netsuite => { fields => { customer => [
	{ name => 'custentity_since', type => 'datetime' },
	{ name => 'custentity_renewal', type => 'date' } ] } } });
close $fh;

my $emu = SyncTest::start_emulator(tls => 1, args => [ '--seed', $seed ]);
my $node = PostgreSQL::Test::Cluster->new('nspush');
$node->init;
$node->append_conf('postgresql.conf', qq{
sync.lease = '10s'
restart_after_crash = on
});
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
sub err_of { my ($rc, $out, $err) = $node->psql($db, $_[0]); return $err; }
sub clear_log { $emu->control('DELETE', '/__emulator/requests'); }
sub writes
{
	my ($method) = @_;
	return [ grep { $_->{method} eq $method && $_->{path} =~ m{/record/v1/} } @{ $emu->requests('netsuite') } ];
}
sub remote { return $emu->control('GET', "/__emulator/records/netsuite/$_[0]"); }
sub remote_one
{
	my ($type, $id) = @_;
	my ($r) = grep { "$_->{id}" eq "$id" } @{ remote($type) };
	return $r;
}
sub push_all
{
	my ($table, $tries) = @_;
	for (1 .. ($tries // 30))
	{
		sq("SELECT sync.push('$table')");
		return 1 if sq("SELECT count(*) FROM sync.outbox o JOIN sync.mirror m ON m.id = o.mirror
		                WHERE m.local_table = '$table'::regclass AND o.state = 'pending'") == 0;
		sleep 1;
	}
	return 0;
}

my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
sq('CREATE EXTENSION sync; CREATE SCHEMA erp;');
sq(qq{SELECT sync.create_connection('ns', 'netsuite', '{
  "account": "1234567", "base_url": "$url", "ca_file": "$ca", "concurrency": 3,
  "auth": {"type": "tba", "consumer_key": "ns-consumer-key", "consumer_secret": "ns-consumer-secret",
           "token_id": "ns-token-id", "token_secret": "ns-token-secret"}}')});
sq(q{SELECT sync.mirror('ns', 'customer', 'erp.customer', direction => 'push',
        fields => ARRAY['companyName', 'email', 'phone', 'isPerson', 'creditLimit', 'subsidiary',
                        'custentity_since', 'custentity_renewal'])});

# --- creates: POST, the internal ID from Location, values as NetSuite JSON ---
clear_log();
sq(q{SET TimeZone = 'Europe/Berlin';
     INSERT INTO erp.customer (company_name, email, phone, is_person, credit_limit, subsidiary,
                               custentity_since, custentity_renewal)
     VALUES ('Acme', 'ap@acme.example', '555-0100', false, 1250.50, 1,
             '2026-01-02 05:04:05.678+02', '2026-03-01'),
            ('Bare', NULL, NULL, NULL, NULL, NULL, NULL, NULL)});
sq("SELECT sync.push('erp.customer')");
my $posts = writes("POST");
is(scalar @$posts, 2, 'two inserts: two POSTs, one record each');
my ($acme_req) = grep { ($_->{body}{companyName} // '') eq 'Acme' } @$posts;
is_deeply($acme_req->{body}, {
		companyName => 'Acme', email => 'ap@acme.example', phone => '555-0100', isPerson => JSON::PP::false,
		creditLimit => 1250.5, subsidiary => { id => '1' },
		custentity_since => '2026-01-02T03:04:05Z', custentity_renewal => '2026-03-01' },
	'values as NetSuite takes them: a reference as {"id"}, a boolean, a number, the datetime in UTC, the date');
my ($bare_req) = grep { ($_->{body}{companyName} // '') eq 'Bare' } @$posts;
is_deeply($bare_req->{body}, { companyName => 'Bare' }, 'a create leaves out NULL columns: NetSuite\'s defaults apply');
my %rid = split /[|\n]/, sq("SELECT company_name, remote_id FROM erp.customer ORDER BY 1");
like($rid{Acme}, qr/^\d+$/, 'the row got the internal ID from Location');
is(remote_one('customer', $rid{Acme})->{companyName}, 'Acme', '... which is the record created');
is(remote_one('customer', $rid{Bare})->{subsidiary}{id}, '1', '... the bare one took NetSuite\'s default subsidiary');
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'nothing left in the outbox');

# --- updates: PATCH with only the changed fields; NULL clears ---
clear_log();
sq("UPDATE erp.customer SET phone = '555-0199' WHERE company_name = 'Acme'");
sq("SELECT sync.push('erp.customer')");
my $patches = writes('PATCH');
is(scalar @$patches, 1, 'an update: one PATCH');
like($patches->[0]{path}, qr{/record/v1/customer/$rid{Acme}$}, '... of the record by its internal ID');
is_deeply($patches->[0]{body}, { phone => '555-0199' }, '... carrying only the changed field');
clear_log();
sq("UPDATE erp.customer SET phone = NULL, credit_limit = 99 WHERE company_name = 'Acme'");
sq("SELECT sync.push('erp.customer')");
is_deeply(writes('PATCH')->[0]{body}, { phone => undef, creditLimit => 99 }, 'NULL is sent as null');
ok(!exists remote_one('customer', $rid{Acme})->{phone}, '... which clears the field remotely');

# --- rejections: parked with NetSuite's words, the siblings go ---
clear_log();
sq(q{INSERT INTO erp.customer (company_name, email) VALUES
       ('Good1', 'g1@example.com'), ('BadMail', 'not an address'), (NULL, 'nameless@example.com'),
       ('Good2', 'g2@example.com')});
sq(q{INSERT INTO erp.customer (company_name, custentity_since) VALUES ('Forever', 'infinity')});
sq("SELECT sync.push('erp.customer')");
is(sq("SELECT string_agg(company_name, ',' ORDER BY company_name) FROM erp.customer
       WHERE company_name LIKE 'Good%' AND remote_id IS NOT NULL"), 'Good1,Good2', 'the good records of the batch went');
my %err = map { my @c = split /\|/; ($c[0] => [ @c[1 .. 3] ]) } split /\n/,
  sq("SELECT coalesce(c.company_name, '(none)'), e.error_code, e.error_message, array_to_string(e.error_fields, ',')
      FROM sync.errors e JOIN erp.customer c ON c.id::text = e.local_key");
is($err{BadMail}[0], 'USER_ERROR', 'a bad e-mail address is parked with NetSuite\'s code');
like($err{BadMail}[1], qr/Please enter a valid email address/, '... and its words');
is($err{BadMail}[2], 'email', '... naming the field (o:errorPath)');
like($err{'(none)'}[1], qr/Please enter value\(s\) for: Company Name/, 'a missing company name: NetSuite\'s words');
is($err{Forever}[0], 'INVALID_VALUE', 'an infinite datetime is parked before anything is sent');
like($err{Forever}[1], qr/column "custentity_since".*"infinity"/, '... naming the column and the value');
is(scalar(grep { ($_->{body}{companyName} // '') eq 'Forever' } @{ writes('POST') }), 0, '... and never sent');

# --- a 5xx is retried; a create answered without a Location is parked ---
clear_log();
$emu->control('POST', '/__emulator/faults', { api => 'netsuite', method => 'PATCH', status => 503, count => 1 });
sq("UPDATE erp.customer SET phone = '555-0303' WHERE company_name = 'Good1'");
sq("SELECT sync.push('erp.customer')");
is(sq("SELECT error_code FROM sync.outbox WHERE op = 'U' AND state = 'pending'"), 'UNEXPECTED_ERROR',
	'a 503 leaves the update queued, with NetSuite\'s code');
ok(push_all('erp.customer'), '... and it goes through on a retry');
is(remote_one('customer', sq("SELECT remote_id FROM erp.customer WHERE company_name = 'Good1'"))->{phone}, '555-0303',
	'... reaching NetSuite');
$emu->control('POST', '/__emulator/faults',
	{ api => 'netsuite', method => 'POST', path => '/record/v1/customer$', kind => 'hostile', case => 'empty', count => 1 });
sq("INSERT INTO erp.customer (company_name) VALUES ('NoLoc')");
sq("SELECT sync.push('erp.customer')");
like(sq("SELECT e.error_code || ' ' || e.error_message FROM sync.errors e JOIN erp.customer c ON c.id::text = e.local_key
         WHERE c.company_name = 'NoLoc'"), qr/^NO_LOCATION .*the record may exist remotely/,
	'a create answered 200 without a Location is parked, never sent again: the record may exist');

# --- deletes; a record already gone counts as done ---
clear_log();
$emu->control('DELETE', "/__emulator/records/netsuite/customer/$rid{Bare}");
sq("DELETE FROM erp.customer WHERE company_name IN ('Acme', 'Bare')");
sq("SELECT sync.push('erp.customer')");
my @dels = sort map { $_->{path} } @{ writes('DELETE') };
is_deeply(\@dels, [ sort map { "/services/rest/record/v1/customer/$_" } @rid{qw(Acme Bare)} ], 'two deletes: DELETE by internal ID');
ok(!defined remote_one('customer', $rid{Acme}), 'the record is gone remotely');
is(sq("SELECT count(*) FROM sync.outbox WHERE op = 'D'"), '0', 'the delete of a record already gone counts as done');
like(sq("SELECT detail FROM sync.journal WHERE op = 'D' AND remote_id = '$rid{Bare}'"), qr/already deleted remotely/,
	'... and the journal says so');

# --- creates with the idempotency field: PUT .../eid:{key}, exactly once ---
sq(q{SELECT sync.mirror('ns', 'contact', 'erp.contact', direction => 'push',
        fields => ARRAY['lastName', 'firstName', 'company', 'externalId'],
        options => '{"idempotency_field": "externalId"}')});
my $good1 = sq("SELECT remote_id FROM erp.customer WHERE company_name = 'Good1'");
clear_log();
sq(qq{INSERT INTO erp.contact (last_name, first_name, company) VALUES ('Runner', 'Road', $good1)});
sq(q{INSERT INTO erp.contact (last_name, external_id) VALUES ('Own', 'PG-42'), ('Bad', 'has space')});
sq("SELECT sync.push('erp.contact')");
my $puts = writes('PUT');
is(scalar @$puts, 2, 'creates with the idempotency field are PUTs');
my ($runner) = grep { ($_->{body}{lastName} // '') eq 'Runner' } @$puts;
like($runner->{path}, qr{^/services/rest/record/v1/contact/eid:sync-[0-9a-f]+-\d+-\d+$}, '... by the engine\'s key as external ID');
is_deeply($runner->{body}{company}, { id => $good1 }, '... the reference sent as {"id": "<internal id>"}');
ok(!exists $runner->{body}{externalId}, '... and the external ID only in the URL');
my $runner_rid = sq("SELECT remote_id FROM erp.contact WHERE last_name = 'Runner'");
my $rc = remote_one('contact', $runner_rid);
is($rc->{company}{id}, $good1, 'the contact exists remotely, linked to its customer');
like($rc->{externalId}, qr/^sync-/, '... with the key as its external ID');
my ($own) = grep { ($_->{body}{lastName} // '') eq 'Own' } @$puts;
like($own->{path}, qr{/contact/eid:PG-42$}, 'a row\'s own external ID is used when it has one');
like(sq("SELECT error_code || ' ' || error_message FROM sync.errors WHERE local_key =
           (SELECT id::text FROM erp.contact WHERE last_name = 'Bad')"),
	qr/^INVALID_EXTERNAL_ID column "external_id" holds "has space"/, 'an external ID NetSuite cannot parse is parked, not sent');

# a reference to a parent not yet in NetSuite: '@' || its local key, resolved
# by the engine once the parent has its internal ID (as for Salesforce)
sq(q{BEGIN;
  INSERT INTO erp.customer (company_name) VALUES ('Mother Co');
  INSERT INTO erp.contact (last_name, company)
    SELECT 'Child', '@' || id FROM erp.customer WHERE company_name = 'Mother Co';
  COMMIT;});
ok(push_all('erp.customer') && push_all('erp.contact'), 'a customer and its contact inserted together are pushed');
my $parent = sq("SELECT remote_id FROM erp.customer WHERE company_name = 'Mother Co'");
my ($child) = grep { ($_->{lastName} // '') eq 'Child' } @{ remote('contact') };
is($child->{company}{id}, $parent, "... the contact's company is the new customer's internal ID");
is(sq("SELECT company FROM erp.contact WHERE last_name = 'Child'"), $parent, '... and the local reference holds it too');

# a lost response (the write is applied, the answer never arrives): the
# re-send updates the same record
clear_log();
$emu->control('POST', '/__emulator/faults',
	{ api => 'netsuite', method => 'PUT', path => '/contact/eid:', kind => 'reset', process => JSON::PP::true, count => 1 });
sq("INSERT INTO erp.contact (last_name) VALUES ('Lost')");
sq("SELECT sync.push('erp.contact')");
is(scalar(grep { ($_->{lastName} // '') eq 'Lost' } @{ remote('contact') }), 1, 'the first PUT was applied, its answer lost');
is(sq("SELECT remote_id IS NULL FROM erp.contact WHERE last_name = 'Lost'"), 't', '... so the row has no remote ID yet');
ok(push_all('erp.contact'), 'the entry is retried until it goes through');
my @lost_puts = map { $_->{path} } grep { ($_->{body}{lastName} // '') eq 'Lost' } @{ writes('PUT') };
is(scalar @lost_puts, 2, '... sent twice');
is($lost_puts[0], $lost_puts[1], '... with the same external ID');
my @lost = grep { ($_->{lastName} // '') eq 'Lost' } @{ remote('contact') };
is(scalar @lost, 1, 'NetSuite has the record once');
is(sq("SELECT remote_id FROM erp.contact WHERE last_name = 'Lost'"), $lost[0]{id}, '... and the row its internal ID');

# an upsert answered without a Location: its ID is read by external ID;
# here the answer was a proxy's (nothing applied, nothing to read), so it
# is sent again
clear_log();
$emu->control('POST', '/__emulator/faults',
	{ api => 'netsuite', method => 'PUT', path => '/contact/eid:', kind => 'hostile', case => 'empty', count => 1 });
sq("INSERT INTO erp.contact (last_name) VALUES ('Blank')");
sq("SELECT sync.push('erp.contact')");
is(join(',', map { $_->{status} } grep { $_->{path} =~ m{/contact/eid:sync-} && $_->{query} eq 'fields=externalId' }
	  @{ writes('GET') }), '404', 'an upsert answered without a Location: its record is looked up by external ID (signed; not there)');
is(sq("SELECT o.error_code FROM sync.outbox o JOIN sync.mirror m ON m.id = o.mirror JOIN erp.contact c ON c.id::text = o.local_key
        WHERE m.local_table = 'erp.contact'::regclass AND c.last_name = 'Blank'"), 'NO_LOCATION',
	'... not found: queued to be sent again');
ok(push_all('erp.contact'), '... and sent again');
is(scalar(grep { ($_->{lastName} // '') eq 'Blank' } @{ remote('contact') }), 1, 'NetSuite has the record once');

# kill -9 of the backend while its PUT is in flight: after crash recovery
# and the lease, the re-send updates the same record
clear_log();
$emu->control('POST', '/__emulator/faults', { api => 'netsuite', method => 'PUT', path => '/contact/eid:', latency_ms => 3000, count => 1 });
sq("INSERT INTO erp.contact (last_name) VALUES ('Crash')");
my ($out, $errout) = ('', '');
my $h = IPC::Run::start([ 'psql', '-X', '-d', $node->connstr($db), '-c', "SELECT sync.push('erp.contact')" ],
	'>', \$out, '2>', \$errout);
ok(SyncTest::wait_until(sub { scalar @{ writes('PUT') } >= 1 }, 30), 'the PUT is in flight, held by the remote');
my $pid = sq("SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT sync.push(%' AND pid <> pg_backend_pid()");
like($pid, qr/^\d+$/, 'found the pushing backend');
kill 'KILL', $pid;
$h->finish;
SyncTest::poll_true($node, $db, 'SELECT true', 120);
ok(SyncTest::wait_until(sub { grep { ($_->{lastName} // '') eq 'Crash' } @{ remote('contact') } }, 30),
	'the remote applied the PUT after the sender died');
is(sq("SELECT count(*) FROM sync.outbox o JOIN sync.mirror m ON m.id = o.mirror JOIN erp.contact c ON c.id::text = o.local_key
        WHERE m.local_table = 'erp.contact'::regclass AND c.last_name = 'Crash'"),
	'1', 'the entry survived the crash');
ok(push_all('erp.contact', 40), 'after the lease the entry is claimed and sent again');
my @crash_puts = map { $_->{path} } grep { ($_->{body}{lastName} // '') eq 'Crash' } @{ writes('PUT') };
is(scalar @crash_puts, 2, '... a second PUT');
is($crash_puts[0], $crash_puts[1], '... by the same external ID');
my @crash = grep { ($_->{lastName} // '') eq 'Crash' } @{ remote('contact') };
is(scalar @crash, 1, 'NetSuite has the record once');
is(sq("SELECT remote_id FROM erp.contact WHERE last_name = 'Crash'"), $crash[0]{id}, '... and the row its internal ID');

# --- both directions: what was pushed comes back by the pull as an echo ---
# (a write's new stamp is not read back: the echo is recognised anyway)
sq(q{SELECT sync.mirror('ns', 'customer', 'erp.both', fields => ARRAY['companyName', 'phone'])});
sq("SELECT sync.pull('erp.both')");
sq("INSERT INTO erp.both (company_name, phone) VALUES ('RoundTrip', '555-0001')");
sq("SELECT sync.push('erp.both')");
my $rt = sq("SELECT remote_id FROM erp.both WHERE company_name = 'RoundTrip'");
like($rt, qr/^\d+$/, 'a row of a two-way mirror is created remotely');
sq("SELECT sync.pull('erp.both')");
is(sq("SELECT count(*) || ' ' || min(remote_id) FROM erp.both WHERE company_name = 'RoundTrip'"), "1 $rt",
	'... its echo pulled back is the same row, not a second one');
sq("UPDATE erp.both SET phone = '555-0002' WHERE company_name = 'RoundTrip'");
sq("SELECT sync.push('erp.both')");
sq("SELECT sync.pull('erp.both')");
is(sq("SELECT phone FROM erp.both WHERE company_name = 'RoundTrip'"), '555-0002', '... an update pushed and pulled back keeps the value');
is(sq("SELECT count(*) FROM sync.outbox o JOIN sync.mirror m ON m.id = o.mirror WHERE m.local_table = 'erp.both'::regclass"),
	'0', '... and the echoes queue nothing to push back');

# --- concurrency: never more in flight than the connection's; 429s retried ---
# The account allows exactly the connection's 3: were a fourth request in
# flight, the emulator would answer it 429.
$emu->control('DELETE', '/__emulator/faults');
$emu->control('POST', '/__emulator/config', { netsuite_concurrency => 3 });
$emu->control('POST', '/__emulator/faults', { api => 'netsuite', method => 'POST', path => '/record/v1/customer$', latency_ms => 200 });
clear_log();
sq("INSERT INTO erp.customer (company_name) SELECT 'Par' || g FROM generate_series(1, 15) g");
sq("SELECT sync.push('erp.customer')");
my $par = writes('POST');
is(scalar @$par, 15, 'fifteen creates at 200 ms each: fifteen POSTs');
is(scalar(grep { $_->{status} == 429 } @$par), 0, '... none refused: never more than 3 in flight');
my @t = sort { $a <=> $b } map { $_->{time} } @$par;
ok($t[-1] - $t[0] < 14 * 0.2, '... yet several at once');

# the account's pool is smaller than the connection's concurrency (someone
# else holds part of it): 429s, retried until every record is in, once
$emu->control('POST', '/__emulator/config', { netsuite_concurrency => 1 });
clear_log();
sq("INSERT INTO erp.customer (company_name) SELECT 'Busy' || g FROM generate_series(1, 8) g");
ok(push_all('erp.customer', 60), 'all pushed although the account allows one request at a time');
my $busy = writes('POST');
ok(scalar(grep { $_->{status} == 429 } @$busy) > 0, '... after 429 CONCURRENCY_LIMIT_EXCEEDED answers');
like(sq("SELECT string_agg(DISTINCT detail, ',') FROM sync.journal WHERE result = 'retry'"),
	qr/CONCURRENCY_LIMIT_EXCEEDED/, '... journaled as retries with NetSuite\'s code');
my %n;
$n{ $_->{companyName} }++ for grep { ($_->{companyName} // '') =~ /^Busy\d$/ } @{ remote('customer') };
is_deeply([ map { $n{"Busy$_"} } 1 .. 8 ], [ (1) x 8 ], 'NetSuite has each record exactly once');
is(sq("SELECT count(DISTINCT remote_id) FROM erp.customer WHERE company_name LIKE 'Busy%'"), '8',
	'... and each row its own internal ID');

# --- updates and deletes as asynchronous batch jobs (mirror option "batch") ---
# (This version's SQL surface does not know the option yet, so it is set in
# the catalog directly.)
$emu->control('DELETE', '/__emulator/faults');
$emu->control('POST', '/__emulator/config', { netsuite_concurrency => 5, netsuite_async_delay_ms => 700 });
sq(q{UPDATE sync.mirror SET options = options || '{"batch": true}' WHERE local_table = 'erp.customer'::regclass});
my %par = split /[|\n]/, sq("SELECT company_name, remote_id FROM erp.customer WHERE company_name LIKE 'Par%'");
clear_log();
sq("UPDATE erp.customer SET phone = '555-77' || substr(company_name, 4) WHERE company_name LIKE 'Par%'");
sq("SELECT sync.push('erp.customer')");
my $bp = writes('PATCH');
is(scalar @$bp, 1, 'batch mode: fifteen updates in one PATCH');
is($bp->[0]{path}, '/services/rest/record/v1/customer', '... of the collection');
is($bp->[0]{headers}{prefer}, 'respond-async', '... asynchronous');
like($bp->[0]{headers}{'content-type'}, qr{^application/vnd\.oracle\.resource\+json; type=collection}, '... as a collection');
is(scalar @{ $bp->[0]{body}{items} }, 15, '... of the fifteen records');
is_deeply([ sort keys %{ $bp->[0]{body}{items}[0] } ], [ 'id', 'phone' ], '... each with its ID and the changed field only');
my @jobreq = grep { $_->{path} =~ m{/async/v1/job/} } @{ $emu->requests('netsuite') };
ok(scalar(grep { $_->{path} =~ m{/job/\d+$} } @jobreq) >= 2, 'the job was polled until it completed');
is(scalar(grep { $_->{path} =~ m{/task} } @jobreq), 0, '... and, as it succeeded whole, no record\'s result was read');
is(sq("SELECT count(*) FROM sync.outbox WHERE op = 'U'"), '0', 'all fifteen done');
is(remote_one('customer', $par{Par9})->{phone}, '555-779', '... and in NetSuite');

clear_log();
sq(q{UPDATE erp.customer SET email = CASE company_name WHEN 'Par3' THEN 'broken address' ELSE lower(company_name) || '@example.com' END
     WHERE company_name IN ('Par1', 'Par2', 'Par3', 'Par4')});
sq("SELECT sync.push('erp.customer')");
is(scalar @{ writes('PATCH') }, 1, 'a batch with one bad record: one PATCH');
is(scalar(grep { $_->{path} =~ m{/task/\d+/result$} } @{ $emu->requests('netsuite') }), 4,
	'... the job did not succeed whole: each record\'s result read');
like(sq("SELECT e.error_code || ' ' || e.error_message || ' ' || array_to_string(e.error_fields, ',') FROM sync.errors e
         JOIN erp.customer c ON c.id::text = e.local_key WHERE c.company_name = 'Par3'"),
	qr/^USER_ERROR .*valid email address.* email$/, '... the bad one parked with NetSuite\'s words');
is(join(',', map { remote_one('customer', $par{$_})->{email} } qw(Par1 Par2 Par4)),
	'par1@example.com,par2@example.com,par4@example.com', '... the others went through');

clear_log();
$emu->control('DELETE', "/__emulator/records/netsuite/customer/$par{Par5}");
sq("DELETE FROM erp.customer WHERE company_name IN ('Par5', 'Par6', 'Par7')");
sq("SELECT sync.push('erp.customer')");
my $bd = writes('DELETE');
is(scalar @$bd, 1, 'batch mode: three deletes in one DELETE');
is(join(',', sort split /,/, ($bd->[0]{query} =~ /ids=([^&]*)/)[0] =~ s/%2C/,/gir),
	join(',', sort @par{qw(Par5 Par6 Par7)}), '... naming the three by ?ids=');
ok(!defined remote_one('customer', $par{Par6}) && !defined remote_one('customer', $par{Par7}), '... which are gone');
is(sq("SELECT count(*) FROM sync.outbox WHERE op = 'D'"), '0', '... the one gone already counted as done');

clear_log();
$emu->control('POST', '/__emulator/faults', { api => 'netsuite', method => 'PATCH', path => '/record/v1/customer$', status => 400, count => 1 });
sq("UPDATE erp.customer SET phone = '555-0808' WHERE company_name IN ('Par8', 'Par9')");
sq("SELECT sync.push('erp.customer')");
is_deeply([ sort map { $_->{path} } @{ writes('PATCH') } ],
	[ '/services/rest/record/v1/customer', sort map { "/services/rest/record/v1/customer/$_" } @par{qw(Par8 Par9)} ],
	'a batch refused whole is sent again record by record');
is(sq("SELECT count(*) FROM sync.outbox WHERE op = 'U' AND state = 'pending'"), '0', '... and goes through');
is(remote_one('customer', $par{Par8})->{phone}, '555-0808', '... reaching NetSuite');

$node->stop;
$emu->stop;
done_testing();
