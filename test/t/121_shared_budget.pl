# A connection's limits hold for everything sync sends through it, not per
# process: a session's sync.push() beside the worker's push of the same
# mirror shares the connection's max_in_flight and its token bucket
# (src/budget.c).  Before, each process had its own: two pushes put twice
# max_in_flight requests in flight and sent at twice the configured rate.
# Proved from the emulator's request log (arrival and answer stamps).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator();
my $node = PostgreSQL::Test::Cluster->new('budget');
$node->init;
# sync.batch_size = 1: every claim is one wave (max_in_flight requests of 200)
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
sync.batch_size = 1
sync.lock_timeout = '2s'
});
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
sub wait_for { my ($sql, $what) = @_; ok(SyncTest::poll_true($node, $db, $sql, 120), $what); }
sub pushes { return SyncTest::sf_composite_requests($emu); }

my $url = $emu->{url};
sq(qq{CREATE EXTENSION sync; CREATE SCHEMA crm;
  SELECT sync.create_connection('sf', 'salesforce', '{
    "login_url": "$url", "max_in_flight": 2,
    "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
  SELECT sync.mirror('sf', 'Contact', 'crm.contact',
        fields => ARRAY['FirstName','LastName','Email','Sync_Key__c'],
        options => '{"idempotency_field": "Sync_Key__c"}', direction => 'push');
  SELECT sync.mirror('sf', 'Contact', 'crm.contact_b',
        fields => ARRAY['FirstName','LastName','Email','Sync_Key__c'],
        options => '{"idempotency_field": "Sync_Key__c"}', direction => 'push');});

# Two processes, one connection: the worker pushes a large backlog of
# crm.contact (woken by the INSERT's commit; it stays with that mirror until
# the backlog is gone), and meanwhile a session's sync.push() pushes a small
# one of crm.contact_b.  Returns what sync.push() sent, the requests, and
# how many of the session's requests overlapped one of the worker's.
sub push_both
{
	my ($n, $nb, $tag) = @_;
	$emu->control('DELETE', '/__emulator/requests');
	sq("INSERT INTO crm.contact (first_name, last_name, email)
	    SELECT 'F' || g, '${tag}A' || g, 'a' || g || '\@example.com' FROM generate_series(1, $n) g");
	sq("INSERT INTO crm.contact_b (first_name, last_name, email)
	    SELECT 'F' || g, '${tag}B' || g, 'b' || g || '\@example.com' FROM generate_series(1, $nb) g");
	my $sent = sq("SELECT sync.push('crm.contact_b')->>'sent'");
	wait_for("SELECT count(*) = 0 FROM sync.outbox", "$tag: the worker and the session pushed all " . ($n + $nb) . " creates");
	my $log = pushes();
	my %seen;
	$seen{$_}++ for map { SyncTest::last_names($_) } @$log;
	my @remote = grep { ($_->{LastName} // '') =~ /^\Q$tag\E[AB]\d+$/ } @{ $emu->control('GET', '/__emulator/records/salesforce/Contact') };
	is(scalar(keys %seen) . ' ' . (grep { $_ > 1 } values %seen) . ' ' . scalar(@remote), ($n + $nb) . ' 0 ' . ($n + $nb),
		"$tag: each record sent and created exactly once");
	my @a = grep { (SyncTest::last_names($_))[0] =~ /^\Q$tag\EA/ } @$log;
	my @b = grep { (SyncTest::last_names($_))[0] =~ /^\Q$tag\EB/ } @$log;
	my $overlapping = grep { my $x = $_; grep { $_->{time} < $x->{done} && $x->{time} < $_->{done} } @a } @b;
	return ($sent, $log, $overlapping);
}

# --- max_in_flight (2) across the two processes; each request takes 300 ms ---
$emu->control('POST', '/__emulator/faults',
	{ api => 'salesforce', path => '/composite/sobjects/', latency_ms => 300 });
my ($sent, $log, $overlapping) = push_both(6000, 800, 'Budget');
# (the worker may reach the session's mirror before the session is done:
# then it sends the rest of it)
ok($sent > 0, "the session's sync.push() sent $sent of its mirror's 800 records while the worker pushed the other mirror");
ok($overlapping >= 1, "$overlapping of the session's requests were on the network beside one of the worker's");
my $most = SyncTest::most_overlap($log);
is($most, 2, "never more than the connection's max_in_flight (2) requests on the network, from both processes together (most: $most)");

# --- the token bucket across the two processes ---
# 4 requests a second, a burst of 4: whoever sends, by t seconds after the
# first request at most 4 + 4 t requests can have gone out.
$emu->control('DELETE', '/__emulator/faults');
$emu->control('POST', '/__emulator/faults',
	{ api => 'salesforce', path => '/composite/sobjects/', latency_ms => 100 });
sq(qq{SELECT sync.alter_connection('sf', '{"requests_per_second": 4}')});
($sent, $log, $overlapping) = push_both(4000, 800, 'Rate');
ok($sent > 0, "rate: the session sent $sent of its 800 records while the worker pushed");
my @t = sort { $a <=> $b } map { $_->{time} } @$log;
my @over;
for my $k (0 .. $#t)
{
	# (k + 1) requests by t_k; 0.2 s of slack for the stamps
	push @over, sprintf('%d at %.2f s', $k + 1, $t[$k] - $t[0])
		if $k + 1 > 4 + 4 * ($t[$k] - $t[0] + 0.2);
}
is("@over", '', sprintf('%d requests in %.1f s: never more than the connection\'s 4 a second (burst 4) from both processes together',
	scalar(@t), $t[-1] - $t[0]));

# --- both processes push the same mirror ---
# A session cannot commit inside sync.push(), so it keeps row locks until
# it returns; its claims can even lock entries the worker claimed since its
# snapshot.  The worker, recording, may wait on those locks while its
# finished requests still hold the budget.  The session therefore waits for
# the budget at most sync.lock_timeout (2 s here), leaves what it could not
# send to be retried, and returns: no deadlock, nothing lost or doubled.
$emu->control('DELETE', '/__emulator/faults');
$emu->control('POST', '/__emulator/faults',
	{ api => 'salesforce', path => '/composite/sobjects/', latency_ms => 300 });
sq(qq{SELECT sync.alter_connection('sf', '{"requests_per_second": null}')});
$emu->control('DELETE', '/__emulator/requests');
sq("INSERT INTO crm.contact (first_name, last_name, email)
    SELECT 'F' || g, 'SameA' || g, 's' || g || '\@example.com' FROM generate_series(1, 4000) g");
my $res = sq("SELECT sync.push('crm.contact')");
like($res, qr/"sent": \d+/, "sync.push() of the mirror the worker is pushing returned ($res)");
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'then the worker pushed the rest');
$log = pushes();
my %seen;
$seen{$_}++ for map { SyncTest::last_names($_) } @$log;
my @remote = grep { ($_->{LastName} // '') =~ /^SameA\d+$/ } @{ $emu->control('GET', '/__emulator/records/salesforce/Contact') };
is(scalar(keys %seen) . ' ' . scalar(@remote), '4000 4000', 'each record created exactly once');
$most = SyncTest::most_overlap($log);
ok($most <= 2, "never more than 2 requests on the network (most: $most)");

done_testing();
