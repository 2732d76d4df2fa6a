# The worker while a request hangs: a query cancel ends the round with an
# ERROR and the worker goes on; SIGTERM ends it mid-request (well before the
# 60 s sync.http_timeout could end the request by itself).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator();
my $node = PostgreSQL::Test::Cluster->new('wh');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '60s'
sync.http_timeout = '60s'
});
$node->start;
my $url = $emu->{url};
$node->safe_psql('postgres', qq{CREATE EXTENSION sync; CREATE SCHEMA crm;
  SELECT sync.create_connection('sf', 'salesforce', '{
    "login_url": "$url",
    "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
  SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName'],
                     options => '{"pull_interval": "1 hour"}');});
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'sync worker'"),
	'the worker runs');
my $pid = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'sync worker'");

# every push now hangs: the emulator never answers
$emu->control('POST', '/__emulator/faults', { api => 'salesforce', path => '/composite/', kind => 'timeout' });
sub wait_in_http
{
	my ($what) = @_;
	ok($node->poll_query_until('postgres',
		"SELECT state = 'active' AND wait_event_type = 'Extension' FROM pg_stat_activity WHERE pid = $pid"), $what);
	usleep(300_000);
}

$node->safe_psql('postgres', "INSERT INTO crm.contact (first_name, last_name) VALUES ('Ada', 'Lovelace')");
wait_in_http('a push hangs in HTTP');
$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
# the engine records errors per mirror (sync.mirror_state); one that escapes
# the engine is recorded by the worker (sync.worker_status())
ok($node->poll_query_until('postgres',
	"SELECT EXISTS (SELECT FROM sync.worker_status() WHERE last_error LIKE 'canceling statement%') "
	. "OR EXISTS (SELECT FROM sync.mirror_state WHERE last_error LIKE '%canceling statement%')"),
	'a query cancel ends the request (an ERROR, recorded)');
is($node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'sync worker'"), $pid,
	'... and the worker goes on');

$node->safe_psql('postgres', "INSERT INTO crm.contact (first_name, last_name) VALUES ('Alan', 'Turing')");
wait_in_http('the next push hangs too');
my $t0 = time;
kill 'TERM', $pid;
my $gone = 0;
while (time - $t0 < 30)
{
	if (!kill(0, $pid)) { $gone = 1; last; }
	usleep(5_000);
}
ok($gone, 'SIGTERM mid-request: the worker exits without waiting for the request to time out');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'sync worker' AND pid <> $pid"),
	'and was restarted');
$emu->control('DELETE', '/__emulator/faults');
ok($node->log_contains('terminating background worker "sync worker" due to administrator command'),
	'the exit was the orderly one');

$node->stop;
$emu->stop;
done_testing();
