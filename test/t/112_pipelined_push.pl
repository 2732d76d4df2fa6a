# Pipelined push to Salesforce through the worker (issue #13): the next
# batch is claimed and sent while the current one is on the network, in the
# slots the current one frees, never more requests in flight than allowed;
# every record arrives exactly once, a rejected record is parked while the
# rest go, the per-row order of creates, updates and deletes holds, and a
# kill -9 mid-pipeline loses and duplicates nothing.  Proved from the
# emulator's request log (arrival order and when each response was written),
# never from durations.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator();
my $node = PostgreSQL::Test::Cluster->new('pipe');
$node->init;
# sync.batch_size = 1: every claim is one wave (2 requests of 200 records)
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
sync.lease = '10s'
sync.batch_size = 1
restart_after_crash = on
});
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
sub wait_for { my ($sql, $what) = @_; ok(SyncTest::poll_true($node, $db, $sql, 120), $what); }
my $upsert = qr{/composite/sobjects/Contact/Sync_Key__c$};
sub pushes { return [ grep { $_->{method} eq 'PATCH' && $_->{path} =~ $upsert } @{ $emu->requests('salesforce') } ]; }
sub keys_of { return map { $_->{Sync_Key__c} } @{ $_[0]->{body}{records} // [] }; }
sub entry_id { return ($_[0] =~ /-(\d+)$/)[0]; }

my $url = $emu->{url};
sq(qq{CREATE EXTENSION sync; CREATE SCHEMA crm;
  SELECT sync.create_connection('sf', 'salesforce', '{
    "login_url": "$url", "max_in_flight": 2,
    "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
  SELECT sync.mirror('sf', 'Contact', 'crm.contact',
        fields => ARRAY['FirstName','LastName','Email','Sync_Key__c'],
        options => '{"idempotency_field": "Sync_Key__c"}', direction => 'push');});

# --- 2,000 creates: 5 batches of one wave (2 requests of 200) each ---
# The very first request is slow (1.5 s), the others take 50 ms: while it is
# out, its batch's other slot is free for the next batch's requests.
$emu->control('POST', '/__emulator/faults', [
	{ api => 'salesforce', path => '/composite/sobjects/', latency_ms => 1500, count => 1 },
	{ api => 'salesforce', path => '/composite/sobjects/', latency_ms => 50 } ]);
$emu->control('DELETE', '/__emulator/requests');
sq("INSERT INTO crm.contact (first_name, last_name, email)
    SELECT 'F' || g, 'Pipe' || g, 'p' || g || '\@example.com' FROM generate_series(1, 2000) g");
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'the worker pushed 2,000 creates');

my $log = pushes();
my @keys = map { keys_of($_) } @$log;
my %seen;
$seen{$_}++ for @keys;
is(scalar(@$log) . ' ' . scalar(@keys) . ' ' . scalar(keys %seen), '10 2000 2000',
	'10 requests of 200 carried the 2,000 records, each exactly once');
my @remote = grep { ($_->{LastName} // '') =~ /^Pipe\d+$/ } @{ $emu->control('GET', '/__emulator/records/salesforce/Contact') };
my %distinct = map { $_->{LastName} => 1 } @remote;
is(scalar(@remote) . ' ' . scalar(keys %distinct), '2000 2000', 'Salesforce has each of them once');
is(sq("SELECT count(remote_id) || ' ' || count(DISTINCT remote_id) FROM crm.contact"), '2000 2000',
	'... and each local row its own remote ID');

# in flight: the emulator's count at each arrival, and its own arrival/done stamps
my $all = $emu->requests('salesforce');
my $most_counted = 0;
for (@$all) { $most_counted = $_->{inflight} if ($_->{inflight} // 0) > $most_counted; }
my $most_overlap = SyncTest::most_overlap($log);
ok($most_counted <= 2 && $most_overlap == 2,
	"never more than max_in_flight (2) requests in flight (most at an arrival: $most_counted; most overlapping: $most_overlap)");

# Batches from the log: the claims take entries in order, one wave (400) at
# a time, so the rank of a record's entry ID says its batch.
my %rank;
my @ids = sort { $a <=> $b } map { entry_id($_) } @keys;
$rank{ $ids[$_] } = $_ for 0 .. $#ids;
my @straddle;
for my $r (@$log)
{
	my %b = map { (int($rank{ entry_id($_) } / 400) => 1) } keys_of($r);
	push @straddle, $r->{seq} if keys(%b) != 1;
	($r->{batch}) = keys %b;
}
is("@straddle", '', 'each request holds records of one batch (a batch is one wave of 400)');
my @overlap;
for my $x (@$log)
{
	for my $y (@$log)
	{
		push @overlap, "request $y->{seq} (batch $y->{batch}) arrived before the response to request $x->{seq} (batch $x->{batch}) was written"
		  if $y->{batch} > $x->{batch} && defined $x->{done} && $y->{time} < $x->{done};
	}
}
ok(@overlap > 0, 'the batches overlap on the network: a later batch\'s request arrived while an earlier batch\'s was out')
  or diag(join("\n", map { "seq $_->{seq} batch $_->{batch} time $_->{time} done $_->{done}" } @$log));
note($_) for @overlap[0 .. ($#overlap < 2 ? $#overlap : 2)];

# --- a rejected record in one wave is parked; the rest go ---
$emu->control('DELETE', '/__emulator/requests');
sq("INSERT INTO crm.contact (first_name, last_name, email)
    SELECT 'R' || g, CASE WHEN g = 277 THEN NULL ELSE 'Rej' || g END, 'r' || g || '\@example.com'
      FROM generate_series(1, 1200) g");
wait_for("SELECT count(*) = 1 FROM sync.outbox", 'the 1,200 creates were pushed but one');
is(sq("SELECT count(*) FROM crm.contact WHERE first_name LIKE 'R%' AND remote_id IS NOT NULL"), '1199',
	'1,199 records went through, in the batches before and after the rejected one');
like(sq("SELECT error_code FROM sync.errors"), qr/REQUIRED_FIELD_MISSING/,
	'the rejected one is parked with Salesforce\'s code');
is(scalar(@{ pushes() }), 6, '... and nothing was sent twice (6 requests)');
sq("UPDATE crm.contact SET last_name = 'Rej277' WHERE first_name = 'R277'; SELECT sync.retry('crm.contact');");
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'fixed and retried, it went through');

# --- leases: a queued request starts only before its batch's lease deadline ---
# (claim + 90% of sync.lease = 9 s).  Both requests of a batch take 9.9 s:
# the next batch, claimed meanwhile and queued behind them, is past its
# deadline when their slots free, so it is not sent; it goes later, once.
$emu->control('DELETE', '/__emulator/faults');
$emu->control('POST', '/__emulator/faults', [
	{ api => 'salesforce', path => '/composite/sobjects/', latency_ms => 9900, count => 2 },
	{ api => 'salesforce', path => '/composite/sobjects/', latency_ms => 50 } ]);
$emu->control('DELETE', '/__emulator/requests');
sq("INSERT INTO crm.contact (first_name, last_name) SELECT 'L' || g, 'Lease' || g FROM generate_series(1, 1200) g");
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'the 1,200 creates were pushed');
is(sq("SELECT count(*) FROM sync.journal WHERE result = 'retry' AND detail LIKE '%not sent%'"), '400',
	'the batch queued behind the slow one was held back at its lease deadline: 400 entries "not sent", to retry');
my @lk = map { keys_of($_) } @{ pushes() };
my %lks = map { $_ => 1 } @lk;
is(scalar(@lk) . ' ' . scalar(keys %lks), '1200 1200', '... and every record went on the wire exactly once');

# --- creates, updates and deletes of the same rows, queued close together ---
sq("INSERT INTO crm.contact (first_name, last_name) SELECT 'O' || g, 'Ord' || g FROM generate_series(1, 600) g");
sq("UPDATE crm.contact SET first_name = 'Updated' WHERE last_name ~ '^Ord' AND substr(last_name, 4)::int % 3 = 0");
sq("DELETE FROM crm.contact WHERE last_name ~ '^Ord' AND substr(last_name, 4)::int % 5 = 0");
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'creates, updates and deletes pushed');
is(sq("SELECT count(*) FROM sync.errors"), '0', '... with no error on the way');
# (the remote's records are read once, at the end: reading them is slow)
my @at_end;
push @at_end, sub {
	my %ord = map { ($_->{LastName} => $_->{FirstName}) } grep { ($_->{LastName} // '') =~ /^Ord\d+$/ } @{ $_[0] };
	my @wrong = grep {
		my $want = $_ % 5 == 0 ? undef : $_ % 3 == 0 ? 'Updated' : "O$_";
		(defined $want ? ($ord{"Ord$_"} // '(missing)') ne $want : exists $ord{"Ord$_"})
	} 1 .. 600;
	is(scalar(@wrong), 0, 'per row, no update or delete overtook its create: the remote holds the final state')
	  or diag("wrong: @wrong[0 .. 9]");
};

# --- sync.push() in a backend, cancelled mid-pipeline: nothing half-recorded ---
# (the worker pushes the same queue meanwhile: claims keep them apart)
$emu->control('DELETE', '/__emulator/faults');
$emu->control('POST', '/__emulator/faults', { api => 'salesforce', path => '/composite/sobjects/', latency_ms => 300 });
sq("INSERT INTO crm.contact (first_name, last_name) SELECT 'C' || g, 'Cancel' || g FROM generate_series(1, 2400) g");
my ($out, $err) = ('', '');
my $h;
{
	local $ENV{PGAPPNAME} = 'pusher';
	$h = IPC::Run::start(
		[ 'psql', '-X', '-A', '-t', '-d', $node->connstr($db), '-c', "SELECT sync.push('crm.contact')" ],
		'>', \$out, '2>', \$err);
}
ok(SyncTest::poll_true($node, $db,
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'pusher' AND wait_event_type = 'Extension'", 60),
	'sync.push() in a backend is waiting on the network');
sq("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'pusher'");
$h->finish;
like($err, qr/canceling statement due to user request/, 'pg_cancel_backend ends it');
$emu->control('DELETE', '/__emulator/faults');
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'the worker pushed the rest');
push @at_end, sub {
	my @cancel = grep { ($_->{LastName} // '') =~ /^Cancel\d+$/ } @{ $_[0] };
	my %cd = map { $_->{LastName} => 1 } @cancel;
	is(scalar(@cancel) . ' ' . scalar(keys %cd), '2400 2400', 'after the cancelled sync.push(), Salesforce has each of the 2,400 exactly once');
};
sq("ANALYZE sync.journal; ANALYZE crm.contact");
is(sq("SELECT count(*) || ' ' || count(DISTINCT j.local_key) FROM sync.journal j
        JOIN crm.contact c ON c.id::text = j.local_key
       WHERE j.direction = 'out' AND j.result = 'ok' AND c.last_name LIKE 'Cancel%'"),
	'2400 2400', 'the journal holds one outcome per record: the cancelled push recorded nothing');
is(sq("SELECT count(remote_id) || ' ' || count(DISTINCT remote_id) FROM crm.contact WHERE last_name LIKE 'Cancel%'"),
	'2400 2400', '... and each row its own remote ID');

# --- kill -9 of the worker mid-pipeline: nothing lost, nothing duplicated ---
$emu->control('DELETE', '/__emulator/faults');
$emu->control('POST', '/__emulator/faults', { api => 'salesforce', path => '/composite/sobjects/', latency_ms => 300 });
$emu->control('DELETE', '/__emulator/requests');
sq("INSERT INTO crm.contact (first_name, last_name) SELECT 'K' || g, 'Kill' || g FROM generate_series(1, 2400) g");
SyncTest::wait_until(sub { @{ pushes() } >= 5 }, 60);
my $wpid = sq("SELECT pid FROM pg_stat_activity WHERE backend_type = 'sync worker'");
kill 'KILL', $wpid;
ok(1, 'killed the worker with kill -9 mid-pipeline');
SyncTest::poll_true($node, $db, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'sync worker'", 120);
$emu->control('DELETE', '/__emulator/faults');
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'all 2,400 creates pushed after the restart')
  or diag(sq("SELECT op, state, attempts, error_code, count(*) FROM sync.outbox GROUP BY 1,2,3,4"));
my %sent;
$sent{$_}++ for map { keys_of($_) } @{ pushes() };
note(scalar(grep { $sent{$_} > 1 } keys %sent) . ' records were sent again after the crash (the same idempotency keys)');
push @at_end, sub {
	my @kill = grep { ($_->{LastName} // '') =~ /^Kill\d+$/ } @{ $_[0] };
	my %kd = map { $_->{LastName} => 1 } @kill;
	is(scalar(@kill) . ' ' . scalar(keys %kd), '2400 2400', 'after the kill -9, Salesforce has each of the 2,400 exactly once');
};
is(sq("SELECT count(*) || ' ' || count(remote_id) || ' ' || count(DISTINCT remote_id) FROM crm.contact WHERE last_name LIKE 'Kill%'"),
	'2400 2400 2400', 'after the kill -9, each local row has its own remote ID');

my $records = $emu->control('GET', '/__emulator/records/salesforce/Contact');
$_->($records) for @at_end;

$node->stop;
$emu->stop;
done_testing();
