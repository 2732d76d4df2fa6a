# The push helper (issue #13): a worker whose push finds a large backlog
# (sync.push_helper_backlog ready entries beyond its first claim) starts a
# helper process that pushes the same mirror beside it and exits when the
# backlog is gone.  The two together keep within the connection's
# max_in_flight; every record arrives exactly once; a row's entries still go
# in order; the helper goes when its worker goes; with the setting at 0 no
# helper starts.  Proved from the emulator's request log and
# pg_stat_activity, never from durations.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator();
my $node = PostgreSQL::Test::Cluster->new('helper');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
sync.batch_size = 1
sync.push_helper_backlog = 1000
});
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
sub wait_for { my ($sql, $what) = @_; ok(SyncTest::poll_true($node, $db, $sql, 120), $what); }
sub pushes { return SyncTest::sf_composite_requests($emu); }
my $helpers = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'sync push helper'";

my $url = $emu->{url};
sq(qq{CREATE EXTENSION sync; CREATE SCHEMA crm;
  SELECT sync.create_connection('sf', 'salesforce', '{
    "login_url": "$url", "max_in_flight": 4,
    "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
  SELECT sync.mirror('sf', 'Contact', 'crm.contact',
        fields => ARRAY['FirstName','LastName','Email','Sync_Key__c'],
        options => '{"idempotency_field": "Sync_Key__c"}', direction => 'push');});

# --- a backlog of 6,000 (first claim 800, then 5,200 > 1,000): a helper ---
$emu->control('POST', '/__emulator/faults',
	{ api => 'salesforce', path => '/composite/sobjects/', latency_ms => 100 });
$emu->control('DELETE', '/__emulator/requests');
sq("INSERT INTO crm.contact (first_name, last_name, email)
    SELECT 'F' || g, 'Help' || g, 'h' || g || '\@example.com' FROM generate_series(1, 6000) g");
# while it runs: an update of rows whose creates are queued or in flight
my $seen = SyncTest::wait_until(sub { sq($helpers) ne '' }, 60);
ok($seen, 'the worker started a push helper for the backlog');
sq("UPDATE crm.contact SET email = 'late' || id || '\@example.com' WHERE id % 500 = 0");
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'the worker and its helper pushed the backlog and the updates');
wait_for("SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'sync push helper'",
	'the helper exited when nothing was left to claim');
my $log = pushes();
my %seen;
my @creates = grep { $_->{method} eq 'PATCH' } @$log;
$seen{$_}++ for map { SyncTest::last_names($_) } @creates;
is(scalar(keys %seen) . ' ' . scalar(grep { $_ > 1 } values %seen), '6000 0',
	'each of the 6,000 records was created by one request, whichever process sent it')
  or diag(join ' ', map { "$_->{method} $_->{path}" } @$log[0 .. 5]);
my $most = SyncTest::most_overlap($log);
ok($most <= 4, "the worker and the helper together kept within max_in_flight (4) (most on the network: $most)");
is(sq("SELECT count(remote_id) || ' ' || count(DISTINCT remote_id) FROM crm.contact WHERE last_name LIKE 'Help%'"),
	'6000 6000', 'each local row has its own remote ID');
my %late = map { ($_->{LastName} => $_->{Email}) } grep { ($_->{LastName} // '') =~ /^Help\d+$/ }
	@{ $emu->control('GET', '/__emulator/records/salesforce/Contact') };
my @wrong = grep { $late{"Help$_"} ne "late$_\@example.com" } map { $_ * 500 } 1 .. 12;
is("@wrong", '', 'the 12 rows updated during the push hold their later email remotely');
is(scalar(keys %late), 6000, 'Salesforce has the 6,000 records once each');

# --- sync.push_helper_backlog = 0: the worker alone ---
$node->append_conf('postgresql.conf', "sync.push_helper_backlog = 0\n");
$node->reload;
sleep 1;
$emu->control('DELETE', '/__emulator/requests');
sq("INSERT INTO crm.contact (first_name, last_name, email)
    SELECT 'F' || g, 'Alone' || g, 'a' || g || '\@example.com' FROM generate_series(1, 6000) g");
my $helper_seen = 0;
SyncTest::wait_until(sub {
	$helper_seen ||= sq($helpers) ne '';
	return sq("SELECT count(*) = 0 FROM sync.outbox") eq 't';
}, 120);
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'with sync.push_helper_backlog = 0 the worker pushed the backlog');
ok(!$helper_seen, '... and started no helper');

# --- the helper goes when its worker goes ---
$node->append_conf('postgresql.conf', "sync.push_helper_backlog = 1000\n");
$node->reload;
sleep 1;
$emu->control('DELETE', '/__emulator/faults');
$emu->control('POST', '/__emulator/faults',
	{ api => 'salesforce', path => '/composite/sobjects/', latency_ms => 400 });
$emu->control('DELETE', '/__emulator/requests');
sq("INSERT INTO crm.contact (first_name, last_name, email)
    SELECT 'F' || g, 'Term' || g, 't' || g || '\@example.com' FROM generate_series(1, 6000) g");
SyncTest::wait_until(sub { sq($helpers) ne '' }, 60);
my $hpid = sq($helpers);
ok($hpid ne '', "a helper is pushing (pid $hpid)");
sq("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'sync worker'");
ok(SyncTest::wait_until(sub { !kill(0, $hpid) }, 30), 'terminating the worker ended its helper too');
$emu->control('DELETE', '/__emulator/faults');
wait_for("SELECT count(*) = 0 FROM sync.outbox", 'the restarted worker pushed the rest');
%seen = ();
$seen{ $_->{LastName} }++ for grep { ($_->{LastName} // '') =~ /^Term\d+$/ }
	@{ $emu->control('GET', '/__emulator/records/salesforce/Contact') };
is(scalar(keys %seen) . ' ' . scalar(grep { $_ > 1 } values %seen), '6000 0',
	'Salesforce has each of the 6,000 once (what was in flight was sent again with its idempotency key)');
is(sq("SELECT count(remote_id) || ' ' || count(DISTINCT remote_id) FROM crm.contact WHERE last_name LIKE 'Term%'"),
	'6000 6000', 'each local row has its own remote ID');

$node->stop;
$emu->stop;
done_testing();
