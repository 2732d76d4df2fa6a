# Pause and resume through the worker, against the emulator (Salesforce and
# HubSpot).  While a mirror is paused no request of it reaches the remote,
# while the other mirrors keep syncing; its local writes queue, coalesced,
# and go out on resume as one write per row with the final values; remote
# changes made meanwhile arrive after resume (even with a long pull
# interval); sync.push()/sync.pull() refuse it; the pause survives a server
# restart.  sync.pause_connection() stops every mirror of the connection;
# resuming one of them alone says the connection is still paused.  The fill
# of a field added to a paused mirror waits for the resume.  Resume
# wakes the worker at once.  A backfill, a fill or a drain under way stops
# at its next request.  sync.status shows a held copy of the database
# and a server with sync.enabled = off as paused too.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::MD5;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('pause');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
# one Salesforce request of 200 records per claimed batch (with max_in_flight 1)
sync.batch_size = 200
});
$node->start;
my $db = 'postgres';
# the library this test runs (diagnostics: a test that restarts the server
# loads the file installed then)
my $libfile = $node->config_data('--pkglibdir') . '/sync.so';
sub lib_md5 { open(my $fh, '<:raw', $libfile) or return '?'; return Digest::MD5->new->addfile($fh)->hexdigest; }
my $lib_at_start = lib_md5();
sub sq { return $node->safe_psql($db, $_[0]); }
sub wait_for
{
	my ($sql, $what) = @_;
	ok(SyncTest::poll_true($node, $db, $sql, 60), $what);
}
sub wait_emu
{
	my ($cond, $what) = @_;
	ok(SyncTest::wait_until($cond, 60), $what);
}
# the worker went round $n more times
sub rounds
{
	my ($n, $what) = @_;
	my $c = sq("SELECT cycles FROM sync.worker_status() WHERE datname = '$db'");
	wait_for("SELECT cycles >= $c + $n FROM sync.worker_status() WHERE datname = '$db'", $what);
}
sub sf_records { return $emu->control('GET', "/__emulator/records/salesforce/$_[0]"); }
sub sf_record
{
	my ($object, $id) = @_;
	my ($r) = grep { $_->{Id} eq $id } @{ sf_records($object) };
	return $r;
}
sub hs_record { return $emu->control('GET', "/__emulator/records/hubspot/contacts/$_[0]"); }
# Salesforce requests about $object since the log was last cleared (a
# delete names only IDs: those of the Contact mirror's rows count as Contact)
sub sf_requests_about
{
	my ($object) = @_;
	my $n = scalar(SyncTest::request_mentions($emu, 'salesforce', $object));
	if ($object eq 'Contact')
	{
		$n += scalar(SyncTest::request_mentions($emu, 'salesforce', $_))
		  for split /\n/, sq("SELECT remote_id FROM crm.sf_contact WHERE remote_id IS NOT NULL
		                        UNION SELECT o.remote_id FROM sync.outbox o JOIN sync.mirror m ON m.id = o.mirror
		                         WHERE m.local_table = 'crm.sf_contact'::regclass AND o.remote_id IS NOT NULL");
	}
	return $n;
}
# the Contact records sent in Salesforce write requests, and the IDs deleted
sub sf_contact_writes
{
	my (@recs, @deleted);
	for my $r (@{ $emu->requests('salesforce') })
	{
		next unless $r->{path} =~ m{/composite/sobjects};
		if ($r->{method} eq 'DELETE')
		{
			my ($ids) = ($r->{query} // '') =~ /ids=([^&]*)/;
			$ids =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
			push @deleted, split /,/, $ids;
			next;
		}
		push @recs, grep { ($_->{attributes}{type} // '') eq 'Contact' } @{ $r->{body}{records} // [] };
	}
	return (\@recs, \@deleted);
}
sub psql_err
{
	my ($sql) = @_;
	my ($rc, $out, $err) = $node->psql($db, $sql);
	return $err;
}

my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "F$_", LastName => "L$_", Email => "c$_\@example.com" } } 1 .. 3 ]);
$emu->control('POST', '/__emulator/records/salesforce/Account', [ { Name => 'Acme' } ]);
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ map { { email => "h$_\@example.com", firstname => "H$_" } } 1 .. 3 ]);
sq(qq{CREATE EXTENSION sync; CREATE SCHEMA crm;
  SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "$url", "ca_file": "$ca",
    "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
  SELECT sync.create_connection('hs', 'hubspot', '{"base_url": "$url", "ca_file": "$ca",
    "auth": {"type": "private_app", "token": "pat-sync-test"}}');
  SELECT sync.mirror('sf', 'Contact', 'crm.sf_contact', fields => ARRAY['FirstName','LastName','Email'],
                     options => '{"pull_interval": "1 hour"}');
  SELECT sync.mirror('sf', 'Account', 'crm.sf_account', fields => ARRAY['Name'],
                     options => '{"pull_interval": "1 second"}');
  SELECT sync.mirror('hs', 'contacts', 'crm.hs_contact', fields => ARRAY['email','firstname','lastname'],
                     options => '{"pull_interval": "1 second"}');});
wait_for("SELECT bool_and(phase = 'incremental') AND count(*) = 3 FROM sync.status", 'three mirrors backfilled');
is(sq("SELECT (SELECT count(*) FROM crm.sf_contact) || ' ' || (SELECT count(*) FROM crm.sf_account) || ' '
          || (SELECT count(*) FROM crm.hs_contact)"), '3 1 3', 'every record arrived');
is(sq("SELECT count(*) FROM sync.status WHERE paused"), '0', 'nothing is paused');
my %cid = map { split /\|/ } split /\n/, sq("SELECT last_name, remote_id FROM crm.sf_contact");
my %hid = map { split /\|/ } split /\n/, sq("SELECT email, remote_id FROM crm.hs_contact");

# --- a paused mirror: no request, writes queue coalesced, the others sync on ---
sq("SELECT sync.pause('crm.sf_contact')");
is(sq("SELECT concat_ws(' ', paused, paused_reason, paused_by = current_user) FROM sync.status
        WHERE local_table = 'crm.sf_contact'::regclass"), 't mirror t', 'sync.status shows the mirror paused, by whom');
my $since = sq("SELECT paused_since FROM sync.status WHERE local_table = 'crm.sf_contact'::regclass");
$emu->control('DELETE', '/__emulator/requests');

sq(q{INSERT INTO crm.sf_contact (first_name, last_name, email) VALUES ('New', 'Paused', 'first@example.com')});
sq(q{UPDATE crm.sf_contact SET email = 'second@example.com' WHERE last_name = 'Paused'});
sq(q{UPDATE crm.sf_contact SET first_name = 'Newest' WHERE last_name = 'Paused'});
sq(q{UPDATE crm.sf_contact SET first_name = 'One-a' WHERE last_name = 'L1'});
sq(q{UPDATE crm.sf_contact SET first_name = 'One-b' WHERE last_name = 'L1'});
sq(q{UPDATE crm.sf_contact SET email = 'one@example.com' WHERE last_name = 'L1'});
sq(q{DELETE FROM crm.sf_contact WHERE last_name = 'L3'});
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$cid{L2}", { LastName => 'RemoteWhilePaused' });
# the other mirrors: a local write to Salesforce, a remote change from HubSpot
sq(q{INSERT INTO crm.sf_account (name) VALUES ('Paused Era Inc')});
$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$hid{'h1@example.com'}", { firstname => 'H1-remote' });
wait_emu(sub { grep { $_->{Name} eq 'Paused Era Inc' } @{ sf_records('Account') } },
	'another mirror of the same connection pushes on');
wait_for("SELECT firstname = 'H1-remote' FROM crm.hs_contact WHERE remote_id = '$hid{'h1@example.com'}'",
	'a mirror of another connection pulls on');
rounds(3, 'the worker goes round');
is(sf_requests_about('Contact'), 0, 'no request of the paused mirror reached Salesforce');
ok(sf_requests_about('Account') > 0, '... while the Account mirror talked to it');
is(sq("SELECT string_agg(op::text || ':' || coalesce(array_to_string(columns, ','), '*') || ':' || attempts, ' ' ORDER BY op)
         FROM sync.outbox o JOIN sync.mirror m ON m.id = o.mirror WHERE m.local_table = 'crm.sf_contact'::regclass"),
	'D:*:0 I:*:0 U:email,first_name:0', 'its writes are queued, one entry per row, none attempted');
is(sq("SELECT last_name FROM crm.sf_contact WHERE remote_id = '$cid{L2}'"), 'L2', 'the remote change has not been pulled');
is(sq("SELECT backlog FROM sync.status WHERE local_table = 'crm.sf_contact'::regclass"), '3', 'sync.status shows the backlog');

like(psql_err(q{SELECT sync.push('crm.sf_contact')}),
	qr/ERROR:  sync.push\(\): table crm.sf_contact is paused.*HINT:  SELECT sync.resume\('crm.sf_contact'\) resumes it/s,
	'sync.push() refuses, saying how to resume');
like(psql_err(q{SELECT sync.pull('crm.sf_contact')}), qr/ERROR:  sync.pull\(\): table crm.sf_contact is paused/,
	'sync.pull() refuses');
is(sf_requests_about('Contact'), 0, '... and neither sent anything');

like(psql_err(q{SELECT sync.pause('crm.sf_contact')}), qr/NOTICE:  table crm.sf_contact is already paused/,
	'pausing again says it is paused already');
is(sq("SELECT paused_since FROM sync.status WHERE local_table = 'crm.sf_contact'::regclass"), $since,
	'... and keeps the original since-time');
is(sq("SELECT count(*) FROM sync.journal j JOIN sync.mirror m ON m.id = j.mirror
        WHERE m.local_table = 'crm.sf_contact'::regclass AND j.op = 'P' AND j.result = 'paused'"), '1',
	'the pause is journaled once');

# --- a restart keeps the pause ---
$node->restart;
is(sq("SELECT concat_ws(' ', paused, paused_reason, paused_since = '$since') FROM sync.status
        WHERE local_table = 'crm.sf_contact'::regclass"), 't mirror t', 'after a restart the mirror is still paused');
sq(q{UPDATE crm.sf_contact SET last_name = 'Lone' WHERE last_name = 'L1'});
$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$hid{'h2@example.com'}", { firstname => 'H2-remote' });
wait_for("SELECT firstname = 'H2-remote' FROM crm.hs_contact WHERE remote_id = '$hid{'h2@example.com'}'",
	'the restarted worker syncs the other mirrors');
rounds(3, '... and goes round');
is(sf_requests_about('Contact'), 0, '... sending nothing of the paused one')
  or diag(join("\n", (lib_md5() eq $lib_at_start ? () : ("$libfile was replaced since the test began")),
			  map { "$_->{time} $_->{method} $_->{path} $_->{query}" } SyncTest::request_mentions($emu, 'salesforce', 'Contact')));
is(sq("SELECT count(*) FROM sync.outbox o JOIN sync.mirror m ON m.id = o.mirror
        WHERE m.local_table = 'crm.sf_contact'::regclass"), '3', 'a write after the restart joined its row\'s entry');

# --- resume: one write per row with the final values; the remote change arrives ---
sq("SELECT sync.resume('crm.sf_contact')");
is(sq("SELECT paused FROM sync.status WHERE local_table = 'crm.sf_contact'::regclass"), 'f', 'resumed');
wait_for("SELECT count(*) = 0 FROM sync.outbox o JOIN sync.mirror m ON m.id = o.mirror
           WHERE m.local_table = 'crm.sf_contact'::regclass", 'the queued writes went out');
wait_for("SELECT last_name = 'RemoteWhilePaused' FROM crm.sf_contact WHERE remote_id = '$cid{L2}'",
	'the remote change made while paused arrived (the pull was due at once despite its 1-hour interval)');
my ($recs, $deleted) = sf_contact_writes();
my @new = grep { ($_->{LastName} // '') eq 'Paused' } @$recs;
is(scalar(@new), 1, 'the row inserted and updated while paused was created once');
is(join(' ', map { $_ // '' } @{ $new[0] }{qw(FirstName Email)}), 'Newest second@example.com', '... with its final values');
my @one = grep { lc($_->{id} // $_->{Id} // '') eq lc($cid{L1}) } @$recs;
is(scalar(@one), 1, 'the row updated four times was sent once');
is(join(' ', map { $_ // '' } @{ $one[0] }{qw(FirstName LastName Email)}), 'One-b Lone one@example.com',
	'... with its final values');
is(scalar(@$recs), 2, 'no other Contact record was written');
is_deeply($deleted, [ $cid{L3} ], 'the deleted row was deleted once');
ok(!defined sf_record('Contact', $cid{L3}), '... and is gone remotely');
is(sq("SELECT string_agg(j.op::text || ':' || j.result, ' ' ORDER BY j.id) FROM sync.journal j JOIN sync.mirror m ON m.id = j.mirror
        WHERE m.local_table = 'crm.sf_contact'::regclass AND j.op IN ('P', 'R')"), 'P:paused R:resumed',
	'pause and resume are journaled');

# --- a paused connection: none of its mirrors talks to the remote ---
sq("SELECT sync.pause_connection('sf')");
is(sq("SELECT string_agg(concat_ws(':', local_table, paused, coalesce(paused_reason, '-')), ' ' ORDER BY local_table::text)
         FROM sync.status"), 'crm.hs_contact:f:- crm.sf_account:t:connection crm.sf_contact:t:connection',
	'sync.status: both Salesforce mirrors paused by their connection');
$emu->control('DELETE', '/__emulator/requests');
sq(q{UPDATE crm.sf_account SET name = 'Acme Renamed' WHERE name = 'Acme'});
sq(q{INSERT INTO crm.sf_contact (first_name, last_name) VALUES ('Con', 'Paused')});
$emu->control('PATCH', "/__emulator/records/salesforce/Account/" . sq("SELECT remote_id FROM crm.sf_account WHERE name = 'Paused Era Inc'"),
	{ Name => 'Remote Era Inc' });
$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$hid{'h3@example.com'}", { firstname => 'H3-remote' });
wait_for("SELECT firstname = 'H3-remote' FROM crm.hs_contact WHERE remote_id = '$hid{'h3@example.com'}'",
	'the HubSpot mirror pulls on');
sq(q{UPDATE crm.hs_contact SET lastname = 'Local' WHERE email = 'h3@example.com'});
wait_emu(sub { (hs_record($hid{'h3@example.com'})->{properties}{lastname} // '') eq 'Local' }, '... and pushes on');
rounds(3, 'the worker goes round');
is(scalar(@{ $emu->requests('salesforce') }), 0, 'no request at all reached Salesforce');

like(psql_err(q{SELECT sync.resume('crm.sf_account')}),
	qr/WARNING:  table crm.sf_account stays paused: its connection "sf" is paused.*HINT:  SELECT sync.resume_connection\('sf'\)/s,
	'resuming one of its mirrors says the connection is still paused');
rounds(2, 'the worker goes round');
is(scalar(@{ $emu->requests('salesforce') }), 0, '... and it stays paused');

sq("SELECT sync.resume_connection('sf')");
wait_emu(sub { grep { $_->{Name} eq 'Acme Renamed' } @{ sf_records('Account') } }, 'resume_connection: the Account write goes out');
wait_emu(sub { grep { ($_->{FirstName} // '') eq 'Con' } @{ sf_records('Contact') } }, '... and the Contact write');
wait_for("SELECT count(*) = 1 FROM crm.sf_account WHERE name = 'Remote Era Inc'", '... and the remote change arrives');
is(sq("SELECT count(*) FROM sync.status WHERE paused"), '0', 'nothing is paused');

# --- a field added to a paused mirror: its fill waits for the resume ---
for my $acc (@{ sf_records('Account') })
{
	$emu->control('PATCH', "/__emulator/records/salesforce/Account/$acc->{Id}", { Phone => "555-$acc->{Name}" });
}
sq("SELECT sync.pause('crm.sf_account')");
sq(q{SELECT sync.alter_mirror('crm.sf_account', add_fields => ARRAY['Phone'])});
# (alter_mirror itself asked Salesforce to describe Account: a request of the caller's)
$emu->control('DELETE', '/__emulator/requests');
is(sq("SELECT count(*) FROM sync.fill f JOIN sync.mirror m ON m.id = f.mirror
        WHERE m.local_table = 'crm.sf_account'::regclass AND f.next_attempt_at <= now()"), '1',
	'a field added to a paused mirror: its fill is due');
rounds(3, 'the worker goes round');
is(sf_requests_about('Account'), 0, '... but no request of the paused mirror reached Salesforce')
  or diag(join("\n", map { "$_->{time} $_->{method} $_->{path} $_->{query}" } SyncTest::request_mentions($emu, 'salesforce', 'Account')));
is(sq("SELECT count(*) FROM crm.sf_account WHERE phone IS NOT NULL"), '0', '... and the added column is not filled');
is(sq("SELECT count(*) FROM sync.fill f JOIN sync.mirror m ON m.id = f.mirror
        WHERE m.local_table = 'crm.sf_account'::regclass"), '1', '... the fill waits');
$emu->control('DELETE', '/__emulator/requests');
sq("SELECT sync.resume('crm.sf_account')");
wait_for("SELECT count(*) = 2 AND bool_and(phone = '555-' || name) FROM crm.sf_account",
	'after resume the added column is filled');
wait_for("SELECT NOT EXISTS (SELECT 1 FROM sync.fill)", '... the fill is done');
is(sq("SELECT count(*) FROM sync.journal j JOIN sync.mirror m ON m.id = j.mirror
        WHERE m.local_table = 'crm.sf_account'::regclass AND j.op = 'U' AND j.detail ~ '^filled added fields'"), '1',
	'... by the fill, journaled');
ok((grep { /q=SELECT (?:Id|SystemModstamp|Phone)(?:, (?:Id|SystemModstamp|Phone)){2} FROM Account / }
	  map { (my $q = $_->{query} // '') =~ s/\+/ /g; $q =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge; $q }
	  SyncTest::request_mentions($emu, 'salesforce', 'Phone')),
	'... whose query for the new field went out after the resume');

# --- resume wakes the worker at once (not at its next poll, an hour away) ---
sq("SELECT sync.pause_connection('sf'); SELECT sync.pause_connection('hs');");
sq(q{UPDATE crm.hs_contact SET lastname = 'Woken' WHERE email = 'h2@example.com'});
# (and a mirror made on the paused connection waits for the resume to backfill)
$emu->control('POST', '/__emulator/records/hubspot/companies',
	[ map { { name => "Company $_", domain => "c$_.example.com" } } 1 .. 2 ]);
sq(q{SELECT sync.mirror('hs', 'companies', 'crm.hs_company', fields => ARRAY['name','domain'],
                        options => '{"pull_interval": "1 second"}')});
rounds(2, 'the worker went round after the write (nothing to do: all paused)');
is(sq("SELECT concat_ws(' ', phase, paused_reason, (SELECT count(*) FROM crm.hs_company)) FROM sync.status
        WHERE local_table = 'crm.hs_company'::regclass"), 'backfill connection 0',
	'a mirror made on a paused connection is paused: no backfill');
$node->append_conf('postgresql.conf', "sync.poll_interval = '1h'\n");
$node->reload;
wait_for("SELECT poll_interval_ms = 3600000 FROM sync.worker_status() WHERE datname = '$db'",
	'the worker now sleeps an hour between polls');
ok((hs_record($hid{'h2@example.com'})->{properties}{lastname} // '') ne 'Woken', 'the write has not been sent');
sq("SELECT sync.resume_connection('hs')");
wait_emu(sub { (hs_record($hid{'h2@example.com'})->{properties}{lastname} // '') eq 'Woken' },
	'after resume the write reached HubSpot at once: resume woke the worker');
wait_for("SELECT count(*) = 2 FROM crm.hs_company", '... and the new mirror backfilled');

# --- a round under way stops before its next request ---
# (a connection of its own, one request in flight, each answer 2.5 s late;
# a batch claimed is sent whole: here sync.batch_size makes it one request)
SyncTest::sf_connect($node, $db, $emu, 'sfl', '"max_in_flight": 1,');
$emu->control('POST', '/__emulator/records/salesforce/Lead',
	[ map { { LastName => "Lead$_", Company => 'Co' } } 1 .. 6000 ]);
$emu->control('DELETE', '/__emulator/requests');
$emu->control('POST', '/__emulator/faults', { api => 'salesforce', path => '/query', latency_ms => 2500 });
sq(q{SELECT sync.mirror('sfl', 'Lead', 'crm.sf_lead', fields => ARRAY['LastName','Company'],
                        options => '{"pull_interval": "1 second"}')});
wait_for("SELECT count(*) > 0 FROM crm.sf_lead", 'a backfill of three pages of 2,000 leads: the first page arrived');
sq("SELECT sync.pause('crm.sf_lead')");
rounds(2, 'paused during the second page; the worker went round');
my $leads = sq("SELECT count(*) FROM crm.sf_lead");
ok($leads < 6000, "the backfill stopped at the pause ($leads of 6000 leads; the page in flight was applied)");
is(scalar(grep { $_->{path} =~ m{/query} } @{ $emu->requests('salesforce') }), $leads / 2000,
	'... and requested no page after it');
is(sq("SELECT phase FROM sync.status WHERE local_table = 'crm.sf_lead'::regclass"), 'backfill', '... still in its backfill');
is(sq("SELECT s.last_pull_at IS NULL FROM sync.mirror_state s JOIN sync.mirror m ON m.id = s.mirror
        WHERE m.local_table = 'crm.sf_lead'::regclass"), 't', '... and the stopped pull is not recorded as done');
$emu->control('DELETE', '/__emulator/faults');
sq("SELECT sync.resume('crm.sf_lead')");
wait_for("SELECT count(*) = 6000 FROM crm.sf_lead", 'after resume the backfill went on to the end');

# a fill under way stops too (a field added to the leads: a fill of four
# pages of up to 2,000, each answer 2.5 s late).  Its page requests: its
# query, then next pages (/query/<locator>); the mirror's own pulls name
# every field, LastName too.
sub status_fills
{
	my $n = 0;
	for my $r (@{ $emu->requests('salesforce') })
	{
		next unless $r->{path} =~ m{/query};
		(my $q = $r->{query} // '') =~ s/\+/ /g;
		$q =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
		$n++ unless $q =~ /LastName/;
	}
	return $n;
}
# (an hour later another lead: the pulls' cursor passes the 6,000, which
# they no longer read: a pull is one request, of one record)
$emu->control('POST', '/__emulator/clock', { advance_s => 3600 });
$emu->control('POST', '/__emulator/records/salesforce/Lead', [ { LastName => 'Later', Company => 'Co' } ]);
wait_for("SELECT count(*) = 1 FROM crm.sf_lead WHERE last_name = 'Later'", 'a later lead arrived');
rounds(2, 'the worker went round');
$emu->control('POST', '/__emulator/faults', { api => 'salesforce', path => '/query', latency_ms => 2500 });
$emu->control('DELETE', '/__emulator/requests');
sq(q{SELECT sync.alter_mirror('crm.sf_lead', add_fields => ARRAY['Status'])});
is(sq("SELECT count(*) FROM sync.fill"), '1', 'a field added to 6,001 leads: a fill is due');
wait_emu(sub { status_fills() >= 1 }, '... the first page of the fill is on its way');
sq("SELECT sync.pause('crm.sf_lead')");
my $fills = status_fills();
rounds(2, 'paused during the fill; the worker went round');
is(status_fills(), $fills, "the fill stopped at the pause ($fills of 4 pages requested): no page after it");
my $filled = sq("SELECT count(*) FROM crm.sf_lead WHERE status IS NOT NULL");
ok($filled < 6001, "... $filled of 6001 leads filled (the page in flight was applied)");
is(sq("SELECT count(*) FROM sync.fill"), '1', '... the rest of the fill waits');
$emu->control('DELETE', '/__emulator/faults');
sq("SELECT sync.resume('crm.sf_lead')");
wait_for("SELECT count(*) = 6001 FROM crm.sf_lead WHERE status = 'Open - Not Contacted'",
	'after resume the fill went on to the end');
wait_for("SELECT NOT EXISTS (SELECT 1 FROM sync.fill)", '... and is done');
# (the leads created below do not name a status)
sq(q{SELECT sync.alter_mirror('crm.sf_lead', drop_fields => ARRAY['Status'])});

$emu->control('DELETE', '/__emulator/requests');
$emu->control('POST', '/__emulator/faults',
	{ api => 'salesforce', method => 'POST', path => '/composite/sobjects$', latency_ms => 2500 });
sq(q{INSERT INTO crm.sf_lead (last_name, company) SELECT 'Local' || g, 'Co' FROM generate_series(1, 1000) g});
sub lead_creates
{
	return scalar(grep { $_->{method} eq 'POST' && $_->{path} =~ m{/composite/sobjects$} }
		  @{ $emu->requests('salesforce') });
}
wait_emu(sub { lead_creates() >= 1 }, '1,000 local leads, five batches of 200: the first is on its way');
sq("SELECT sync.pause('crm.sf_lead')");
rounds(2, 'paused during the drain; the worker went round');
my $creates = lead_creates();
ok($creates <= 2, "the drain stopped at the pause ($creates of 5 batches sent)");
is(sq("SELECT count(*) FROM sync.outbox o JOIN sync.mirror m ON m.id = o.mirror
        WHERE m.local_table = 'crm.sf_lead'::regclass"), 1000 - 200 * $creates, '... the rest waits in the outbox');
$emu->control('DELETE', '/__emulator/faults');
sq("SELECT sync.resume('crm.sf_lead')");
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'after resume the drain went on to the end');
is(scalar(grep { ($_->{LastName} // '') =~ /^Local/ } @{ sf_records('Lead') }), 1000, '... each lead created once');

# --- a held copy of the database shows in the same columns, and carries the pauses ---
$node->safe_psql('postgres', 'CREATE DATABASE cp TEMPLATE postgres');
is($node->safe_psql('cp', "SELECT string_agg(concat_ws(':', local_table, paused, paused_reason, paused_since IS NULL), ' '
                              ORDER BY local_table::text) FROM sync.status"),
	'crm.hs_company:t:copy:t crm.hs_contact:t:copy:t crm.sf_account:t:copy:t crm.sf_contact:t:copy:t crm.sf_lead:t:copy:t',
	'a copy of the database: every mirror paused, reason copy');
is($node->safe_psql('cp', "SELECT string_agg(connection, ',') FROM sync.paused"), 'sf',
	'... and the pause of connection sf came along (sync.resume_copy() would leave it paused)');
$node->safe_psql('postgres', 'DROP DATABASE cp');

# --- the server switch shows in the same columns ---
$node->append_conf('postgresql.conf', "sync.enabled = off\n");
$node->reload;
wait_for("SELECT bool_and(paused AND paused_reason = 'disabled' AND paused_since IS NULL) FROM sync.status",
	'with sync.enabled = off every mirror shows paused, reason disabled');

$node->stop;
done_testing();
