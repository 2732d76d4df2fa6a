# Adaptive polling through the worker, for HubSpot (search) and NetSuite
# (SuiteQL), the remotes without a change stream: while remote changes flow
# the pulls come at sync.pull_interval_min; while idle the interval doubles
# back to the mirror's pull_interval; a change after an idle spell speeds the
# pulls up again; with less than half of HubSpot's daily budget left a
# HubSpot mirror polls at its configured interval only.  Requests are
# counted in the emulator's log over windows, and the interval in force is
# read from sync.mirror_state (next_pull_at - last_pull_at).  The worker's
# idle sleep (sync.poll_interval) is longer than the short interval: the
# worker must wake for the next pull, not sleep through it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('adaptive');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '10s'
sync.pull_interval_min = '1s'
sync.http_timeout = '5s'
});
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
sub wait_for { my ($sql, $what) = @_; ok($node->poll_query_until($db, $sql), $what); }
sub clear_log { $emu->control('DELETE', '/__emulator/requests'); }
sub searches
{
	return scalar grep { $_->{path} =~ m{/crm/v3/objects/contacts/search$} } @{ $emu->requests('hubspot') };
}
sub suiteql
{
	return scalar grep { $_->{path} =~ m{/query/v1/suiteql$} && ($_->{body}{q} // '') =~ /FROM customer\b/ }
	  @{ $emu->requests('netsuite') };
}
# the interval in force for a table's mirror
sub interval_is
{
	my ($table, $iv) = @_;
	return "SELECT s.next_pull_at - s.last_pull_at = interval '$iv' FROM sync.mirror_state s
	        JOIN sync.mirror m ON m.id = s.mirror WHERE m.local_table = '$table'::regclass";
}

my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
$emu->control('POST', '/__emulator/config', { hubspot_daily => 100000 });
my $hs = $emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ map { { email => "a$_\@example.com", firstname => "A$_" } } 1 .. 3 ])->{ids};
my $ns = $emu->control('POST', '/__emulator/records/netsuite/customer',
	[ map { { companyName => "Co$_", email => "c$_\@example.com" } } 1 .. 3 ])->{ids};
sq(qq{CREATE EXTENSION sync; CREATE SCHEMA crm; CREATE SCHEMA erp;
  SELECT sync.create_connection('hs', 'hubspot', '{"base_url": "$url", "ca_file": "$ca",
    "auth": {"type": "private_app", "token": "pat-sync-test"}}');
  SELECT sync.create_connection('ns', 'netsuite', '{"account": "1234567", "base_url": "$url", "ca_file": "$ca",
    "auth": {"type": "tba", "consumer_key": "ns-consumer-key", "consumer_secret": "ns-consumer-secret",
             "token_id": "ns-token-id", "token_secret": "ns-token-secret"}}');
  SELECT sync.mirror('hs', 'contacts', 'crm.contact', fields => ARRAY['email', 'firstname'],
                     options => '{"pull_interval": "8 seconds"}');
  SELECT sync.mirror('ns', 'customer', 'erp.customer', ARRAY['companyName', 'email'], 'pull',
                     options => '{"pull_interval": "8 seconds"}');});
wait_for("SELECT (SELECT count(*) FROM crm.contact) = 3 AND (SELECT count(*) FROM erp.customer) = 3",
	'the worker backfilled both mirrors');

# --- idle: the interval doubles back to the configured 8 s ---
wait_for(interval_is('crm.contact', '8 seconds'), 'hubspot: idle, the interval backs off to pull_interval');
wait_for(interval_is('erp.customer', '8 seconds'), 'netsuite: idle, the interval backs off to pull_interval');
clear_log();
sleep(8);
my ($idle_hs, $idle_ns) = (searches(), suiteql());
ok($idle_hs <= 2, "hubspot: at most 2 searches in 8 idle seconds ($idle_hs)");
ok($idle_ns <= 2, "netsuite: at most 2 SuiteQL reads in 8 idle seconds ($idle_ns)");

# --- a change after the idle spell: seen within the configured interval, then fast polling ---
$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$hs->[0]", { firstname => 'Wake' });
$emu->control('PATCH', "/__emulator/records/netsuite/customer/$ns->[0]", { companyName => 'Wake' });
wait_for("SELECT firstname = 'Wake' FROM crm.contact WHERE remote_id = '$hs->[0]'", 'hubspot: the change arrived');
wait_for("SELECT company_name = 'Wake' FROM erp.customer WHERE remote_id = '$ns->[0]'", 'netsuite: the change arrived');

# --- changes flowing: one a second for 8 s; the pulls follow at about 1 s ---
clear_log();
for my $i (1 .. 8)
{
	$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$hs->[$i % 3]", { firstname => "Flow$i" });
	$emu->control('PATCH', "/__emulator/records/netsuite/customer/$ns->[$i % 3]", { companyName => "Flow$i" });
	sleep(1);
}
my ($busy_hs, $busy_ns) = (searches(), suiteql());
ok($busy_hs >= 4, "hubspot: while changes flow, at least 4 searches in 8 seconds ($busy_hs)");
ok($busy_ns >= 4, "netsuite: while changes flow, at least 4 SuiteQL reads in 8 seconds ($busy_ns)");
wait_for("SELECT firstname = 'Flow8' FROM crm.contact WHERE remote_id = '$hs->[2]'", 'hubspot: the last change arrived');
wait_for("SELECT company_name = 'Flow8' FROM erp.customer WHERE remote_id = '$ns->[2]'", 'netsuite: the last change arrived');
wait_for(interval_is('crm.contact', '8 seconds'), 'hubspot: idle again, back to pull_interval');

# --- less than half the daily budget left: HubSpot polls at its configured interval ---
# what the emulator counted today, as its rate-limit headers say to requests
# of ours (made until 60 are counted, so that the share below leaves room)
my $used = 0;
while ($used < 60)
{
	my $res = $emu->{http}->request('GET', "$url/crm/v3/objects/contacts?limit=1",
		{ headers => { Authorization => 'Bearer pat-sync-test' } });
	$used = $res->{headers}{'x-hubspot-ratelimit-daily'} - $res->{headers}{'x-hubspot-ratelimit-daily-remaining'};
}
# 0.4 of the new budget left: under half, and enough for the rest
my $budget = int($used / 0.6);
$emu->control('POST', '/__emulator/config', { hubspot_daily => $budget });
$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$hs->[0]", { firstname => 'Low0' });
wait_for("SELECT firstname = 'Low0' FROM crm.contact WHERE remote_id = '$hs->[0]'",
	"a change arrives with the budget lowered to $budget ($used used)");
clear_log();
for my $i (1 .. 8)
{
	$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$hs->[$i % 3]", { firstname => "Low$i" });
	sleep(1);
}
my $low = searches();
ok($low <= 2, "hubspot: with under half the daily budget left, changes flowing, at most 2 searches in 8 s ($low)");
wait_for("SELECT firstname = 'Low8' FROM crm.contact WHERE remote_id = '$hs->[2]'", '... and the changes still arrive');
is(sq(interval_is('crm.contact', '8 seconds')), 't', '... at the configured interval');
is(sq("SELECT count(*) FROM sync.mirror_state WHERE last_error IS NOT NULL"), '0', 'no pull failed');

$node->stop;
done_testing();
