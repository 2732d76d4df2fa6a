# sync.resync(): compare a mirrored table with the remote and repair it, for
# Salesforce, HubSpot and NetSuite.  Differences are planted behind sync's back (a
# local edit, insert and delete with capture bypassed; a remote edit and a
# remote delete no pull has seen, the mirrors' pull interval being a day);
# the report's counts and samples are checked exactly, the repair fixes both
# sides by the mirror's policies, and a second resync finds nothing.  No
# worker for the first parts: every step is explicit (sync.pull / sync.push);
# the last part runs the worker, which sends what a repair queued.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use IPC::Run;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('resync');
$node->init;
$node->start;
my $db = 'postgres';
$node->safe_psql($db, 'CREATE EXTENSION sync; CREATE SCHEMA crm;');

sub sq { return $node->safe_psql($db, $_[0]); }
sub js { return decode_json(sq($_[0])); }
sub err_of { my ($rc, $out, $err) = $node->psql($db, $_[0]); return $err; }
# capture bypassed: writes in replica mode fire no ordinary trigger
sub behind_sync { sq("SET session_replication_role = replica; $_[0]"); }
sub sorted_samples
{
	my ($kind) = @_;
	return [ sort map { join '|', $_->{key} // '-', $_->{remote_id} // '-', join(',', @{ $_->{columns} // [] }),
				 $_->{newer} // '-' }
		  @{ $kind->{samples} } ];
}
sub counts
{
	my ($r) = @_;
	return join ' ', map { "$_=$r->{$_}{count}" } qw(only_local only_remote different);
}

my ($url, $ca) = ($emu->{url}, $emu->{ca_file});

# =====================================================================
# Salesforce (local_wins, the default)
# =====================================================================
SyncTest::sf_connect($node, $db, $emu, 'sf');
my $ids = $emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "F$_", LastName => "L$_", Email => "p$_\@example.com" } } 1 .. 30 ])->{ids};
sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.sf_contact', fields => ARRAY['FirstName','LastName','Email'],
     options => '{"pull_interval": "1 day"}')});
like(sq("SELECT sync.pull('crm.sf_contact')"), qr/"applied": 30/, 'sf: backfill of 30 contacts');

my $r = js("SELECT sync.resync('crm.sf_contact')");
is(counts($r), 'only_local=0 only_remote=0 different=0', 'sf: a table in step: nothing only local, only remote or different');
is("$r->{same} $r->{pending} $r->{remote_records}", '30 0 30', 'sf: ... every record the same');

my %key = map { split /\|/ } split /\n/, sq("SELECT remote_id, id FROM crm.sf_contact");
my ($r1, $r2, $r3, $r4, $r5) = @$ids[0 .. 4];
# 1. a local edit behind sync's back
behind_sync("UPDATE crm.sf_contact SET email = 'local-edit\@example.com' WHERE remote_id = '$r1'");
# 2. a remote edit no pull has seen
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$r2", { LastName => 'RemoteEdit' });
# 3. a remote delete no pull has seen
$emu->control('DELETE', "/__emulator/records/salesforce/Contact/$r3");
# 4. a local delete behind sync's back
behind_sync("DELETE FROM crm.sf_contact WHERE remote_id = '$r4'");
# 5. a local insert behind sync's back (never sent)
behind_sync("INSERT INTO crm.sf_contact (first_name, last_name, email) VALUES ('New', 'Local', 'new\@example.com')");
my $newkey = sq("SELECT id FROM crm.sf_contact WHERE remote_id IS NULL");
# 6. an ordinary local edit, queued: pending, not different
sq("UPDATE crm.sf_contact SET first_name = 'Queued' WHERE remote_id = '$r5'");

my $before = sq("SELECT count(*) FROM crm.sf_contact") . ' ' . sq("SELECT count(*) FROM sync.outbox");
$r = js("SELECT sync.resync('crm.sf_contact')");
is(counts($r), 'only_local=2 only_remote=1 different=2', 'sf: the planted differences are found');
is_deeply(sorted_samples($r->{different}),
	[ sort("$key{$r1}|$r1|email|local", "$key{$r2}|$r2|last_name|remote") ],
	'sf: different: the locally edited and the remotely edited rows, with the differing column and the newer side');
is_deeply(sorted_samples($r->{only_remote}), [ "-|$r4||-" ], 'sf: only_remote: the row deleted locally');
is_deeply(sorted_samples($r->{only_local}), [ sort("$key{$r3}|$r3||-", "$newkey|-||-") ],
	'sf: only_local: the row whose record the remote deleted, and the row never sent');
is("$r->{pending} $r->{repair}", '1 0', 'sf: the queued edit is pending, not different; nothing repaired');
is(sq("SELECT count(*) FROM crm.sf_contact") . ' ' . sq("SELECT count(*) FROM sync.outbox"), $before,
	'sf: without repair nothing changes');
is(sq("SELECT detail::jsonb -> 'different' ->> 'count' FROM sync.journal WHERE op = 'R' AND result = 'compared' ORDER BY id DESC LIMIT 1"),
	'2', 'sf: the run is journaled with its counts');

# repair
$r = js("SELECT sync.resync('crm.sf_contact', repair => true)");
is(counts($r), 'only_local=2 only_remote=1 different=2', 'sf: repair reports what it found');
is("$r->{repaired}{applied} $r->{repaired}{deleted} $r->{repaired}{queued_updates} $r->{repaired}{queued_creates} $r->{repaired}{failed}",
	'2 1 1 1 0', 'sf: repair: 2 remote versions applied, 1 row deleted, 1 update and 1 create queued');
like($r->{worker}, qr/2 local version\(s\) were queued in sync.outbox/, 'sf: ... and the report says the worker sends the queued ones');
is(sq("SELECT last_name FROM crm.sf_contact WHERE remote_id = '$r2'"), 'RemoteEdit', 'sf: the remote edit is applied');
is(sq("SELECT email FROM crm.sf_contact WHERE remote_id = '$r1'"), 'local-edit@example.com', 'sf: the local edit stays local ...');
is(sq("SELECT count(*) FROM sync.outbox WHERE local_key = '$key{$r1}' AND op = 'U' AND columns = '{email}'"), '1',
	'sf: ... and is queued as an update of that column');
is(sq("SELECT count(*) FROM crm.sf_contact WHERE remote_id = '$r3'"), '0', 'sf: the row of the remotely deleted record is deleted (delete policy "delete")');
is(sq("SELECT first_name FROM crm.sf_contact WHERE remote_id = '$r4'"), 'F4', 'sf: the locally deleted row is back');
is(sq("SELECT count(*) FROM sync.outbox WHERE local_key = '$newkey' AND op = 'I'"), '1', 'sf: the unsent row is queued as a create');
is(sq("SELECT count(*) FROM sync.outbox WHERE op = 'D'"), '0', 'sf: no repair queued a remote delete (no echo)');
like(sq("SELECT sync.push('crm.sf_contact')"), qr/"sent": 3/, 'sf: the queued writes are sent');
is($emu->control('GET', "/__emulator/records/salesforce/Contact/$r1")->{Email}, 'local-edit@example.com',
	'sf: the remote has the local edit');
is($emu->control('GET', "/__emulator/records/salesforce/Contact/$r5")->{FirstName}, 'Queued',
	'sf: the pending edit went as usual');
my $newrid = sq("SELECT remote_id FROM crm.sf_contact WHERE id = $newkey");
is($emu->control('GET', "/__emulator/records/salesforce/Contact/$newrid")->{LastName}, 'Local',
	'sf: the unsent row was created remotely');

$r = js("SELECT sync.resync('crm.sf_contact')");
is(counts($r) . " pending=$r->{pending}", 'only_local=0 only_remote=0 different=0 pending=0',
	'sf: after the repair a second resync finds nothing');
is($r->{remote_records}, 30, 'sf: ... over all 30 remote records');

# =====================================================================
# HubSpot (remote_wins), several pages
# =====================================================================
sq(qq{SELECT sync.create_connection('hs', 'hubspot', '{
  "base_url": "$url", "ca_file": "$ca", "archived_interval": 0,
  "auth": {"type": "private_app", "token": "pat-sync-test"}}')});
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ map { { email => "h$_\@example.com", firstname => "F$_", lastname => "L$_" } } 1 .. 250 ]);
sq(q{SELECT sync.mirror('hs', 'contacts', 'crm.hs_contact', fields => ARRAY['email','firstname','lastname'],
     options => '{"pull_interval": "1 day", "conflict": "remote_wins"}')});
like(sq("SELECT sync.pull('crm.hs_contact')"), qr/"applied": 250/, 'hs: backfill of 250 contacts');
$r = js("SELECT sync.resync('crm.hs_contact')");
is(counts($r), 'only_local=0 only_remote=0 different=0', 'hs: a table in step: nothing found');
cmp_ok($r->{pages}, '>', 1, 'hs: the remote was read in several pages');

my @h = split /\n/, sq("SELECT remote_id FROM crm.hs_contact ORDER BY remote_id::bigint LIMIT 4");
my %hkey = map { split /\|/ } split /\n/, sq("SELECT remote_id, id FROM crm.hs_contact");
# a local edit behind sync's back: under remote_wins the remote's value is restored
behind_sync("UPDATE crm.hs_contact SET firstname = 'LocalOnly' WHERE remote_id = '$h[0]'");
# a remote edit no pull has seen
$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$h[1]", { lastname => 'RemoteEdit' });
# a remote record purged (GDPR delete): no archive, no delete feed
$emu->control('POST', "/__emulator/hubspot/purge/contacts/$h[2]");
# a local delete behind sync's back
behind_sync("DELETE FROM crm.hs_contact WHERE remote_id = '$h[3]'");

$r = js("SELECT sync.resync('crm.hs_contact')");
is(counts($r), 'only_local=1 only_remote=1 different=2', 'hs: the planted differences are found');
is_deeply(sorted_samples($r->{different}),
	[ sort("$hkey{$h[0]}|$h[0]|firstname|local", "$hkey{$h[1]}|$h[1]|lastname|remote") ], 'hs: different, with the columns');
is_deeply(sorted_samples($r->{only_remote}), [ "-|$h[3]||-" ], 'hs: only_remote: the row deleted locally');
is_deeply(sorted_samples($r->{only_local}), [ "$hkey{$h[2]}|$h[2]||-" ], 'hs: only_local: the purged record\'s row');

$r = js("SELECT sync.resync('crm.hs_contact', true)");
is("$r->{repaired}{applied} $r->{repaired}{deleted} $r->{repaired}{queued_updates} $r->{repaired}{queued_creates}",
	'3 1 0 0', 'hs: repair under remote_wins: 3 remote versions applied, 1 row deleted, nothing queued');
ok(!exists $r->{worker}, 'hs: ... and no work left for the worker');
my $remote_first = $emu->control('GET', "/__emulator/records/hubspot/contacts/$h[0]");
$remote_first = $remote_first->{properties}{firstname} // $remote_first->{firstname};
like($remote_first, qr/^F\d+$/, 'hs: the remote kept its own first name');
is(sq("SELECT firstname FROM crm.hs_contact WHERE remote_id = '$h[0]'"), $remote_first,
	'hs: the local edit gave way to the remote value (remote_wins)');
is(sq("SELECT lastname FROM crm.hs_contact WHERE remote_id = '$h[1]'"), 'RemoteEdit', 'hs: the remote edit is applied');
is(sq("SELECT count(*) FROM crm.hs_contact WHERE remote_id IN ('$h[2]')") . sq("SELECT count(*) FROM crm.hs_contact WHERE remote_id = '$h[3]'"),
	'01', 'hs: the purged record\'s row is gone, the locally deleted row is back');
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'hs: the repair queued nothing to send');
$r = js("SELECT sync.resync('crm.hs_contact')");
is(counts($r) . " remote_records=$r->{remote_records}", 'only_local=0 only_remote=0 different=0 remote_records=249',
	'hs: a second resync finds nothing');

# =====================================================================
# NetSuite (a pull-only mirror: the remote always wins)
# =====================================================================
sq(qq{SELECT sync.create_connection('ns', 'netsuite', '{
  "account": "1234567", "base_url": "$url", "ca_file": "$ca",
  "auth": {"type": "tba", "consumer_key": "ns-consumer-key", "consumer_secret": "ns-consumer-secret",
           "token_id": "ns-token-id", "token_secret": "ns-token-secret"}}')});
my $nids = $emu->control('POST', '/__emulator/records/netsuite/customer',
	[ map { { companyName => "Co$_", email => "c$_\@example.com", phone => "555-$_" } } 1 .. 30 ])->{ids};
sq(q{SELECT sync.mirror('ns', 'customer', 'erp_customers', ARRAY['companyName', 'email', 'phone'], 'pull',
     '{"pull_interval": "1 day"}')});
sq("SELECT sync.pull('erp_customers')");
$r = js("SELECT sync.resync('erp_customers')");
is(counts($r) . " same=$r->{same}", 'only_local=0 only_remote=0 different=0 same=30', 'ns: a table in step: nothing found');
my %nkey = map { split /\|/ } split /\n/, sq("SELECT remote_id, id FROM erp_customers");
behind_sync("UPDATE erp_customers SET phone = 'local' WHERE remote_id = '$nids->[0]'");
# (NetSuite's stamps are whole seconds: the edit comes a minute after the backfill)
$emu->control('POST', '/__emulator/clock', { advance_s => 60 });
$emu->control('PATCH', "/__emulator/records/netsuite/customer/$nids->[1]", { companyName => 'RemoteEdit' });
$emu->control('DELETE', "/__emulator/records/netsuite/customer/$nids->[2]");
behind_sync("DELETE FROM erp_customers WHERE remote_id = '$nids->[3]'");
$r = js("SELECT sync.resync('erp_customers', repair => true)");
is_deeply([ counts($r), sorted_samples($r->{different}), sorted_samples($r->{only_local}), sorted_samples($r->{only_remote}) ],
	[ 'only_local=1 only_remote=1 different=2',
	  [ sort("$nkey{$nids->[0]}|$nids->[0]|phone|local", "$nkey{$nids->[1]}|$nids->[1]|company_name|remote") ],
	  [ "$nkey{$nids->[2]}|$nids->[2]||-" ], [ "-|$nids->[3]||-" ] ],
	'ns: the planted differences are found');
is("$r->{repaired}{applied} $r->{repaired}{deleted} $r->{repaired}{queued_updates}", '3 1 0',
	'ns: repair of a pull-only mirror: the remote\'s versions applied, the row of the deleted record deleted, nothing queued');
is(sq("SELECT phone || ' ' || (SELECT company_name FROM erp_customers WHERE remote_id = '$nids->[1]') FROM erp_customers WHERE remote_id = '$nids->[0]'"),
	'555-1 RemoteEdit', 'ns: ... the local edit reverted, the remote edit applied');
$r = js("SELECT sync.resync('erp_customers')");
is(counts($r) . " same=$r->{same}", 'only_local=0 only_remote=0 different=0 same=29', 'ns: a second resync finds nothing');

# =====================================================================
# the delete policy "keep", progress, and privileges
# =====================================================================
sq(q{UPDATE sync.mirror SET options = options || '{"delete": "keep"}' WHERE local_table = 'crm.hs_contact'::regclass});
$emu->control('POST', "/__emulator/hubspot/purge/contacts/$h[3]");
$r = js("SELECT sync.resync('crm.hs_contact', repair => true)");
is(counts($r) . " deleted=$r->{repaired}{deleted}", 'only_local=1 only_remote=0 different=0 deleted=0',
	'hs: under "delete": "keep" the row of a purged record is reported and kept');
is(sq("SELECT count(*) FROM crm.hs_contact WHERE remote_id = '$h[3]'"), '1', 'hs: ... it is still there');

# a remote ID that is not even of the remote's form: reported, never deleted
my $bad = $key{$r5};
behind_sync("UPDATE crm.sf_contact SET remote_id = 'not/an-id' WHERE id = $bad");
$r = js("SELECT sync.resync('crm.sf_contact', repair => true)");
is_deeply([ counts($r), sorted_samples($r->{only_local}), sorted_samples($r->{only_remote}) ],
	[ 'only_local=1 only_remote=1 different=0', [ "$bad|not/an-id||-" ], [ "-|$r5||-" ] ],
	'sf: a row with a malformed remote ID is only_local, its record only_remote');
is("$r->{repaired}{deleted} $r->{repaired}{not_repaired} $r->{repaired}{applied}", '0 1 1',
	'sf: ... the row is not deleted (not repaired), the record is applied');
is(sq("SELECT count(*) FROM crm.sf_contact WHERE id = $bad") . sq("SELECT count(*) FROM crm.sf_contact WHERE remote_id = '$r5'"),
	'11', 'sf: ... both are in the table');

# a value the remote sends that the column cannot hold: different, set aside by the repair
sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.sf_birth', fields => ARRAY['LastName','Birthdate'],
     options => '{"pull_interval": "1 day"}')});
sq("SELECT sync.pull('crm.sf_birth')");
SyncTest::sf_retype_field($emu, 'Contact', 'Birthdate', 'string');
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$r2", { Birthdate => 'not-a-date' });
$r = js("SELECT sync.resync('crm.sf_birth', repair => true)");
is(counts($r), 'only_local=0 only_remote=0 different=1', 'sf: a value that does not convert: the record is different');
like((grep { ($_->{remote_id} // '') eq $r2 } @{ $r->{different}{samples} })[0]{invalid} // '', qr/^the remote's values do not convert/,
	'sf: ... the sample says why it cannot be compared');
is("$r->{repaired}{failed} $r->{repaired}{applied}", '1 0', 'sf: ... the repair sets it aside');
like(sq("SELECT error_message FROM sync.errors WHERE local_table = 'crm.sf_birth'::regclass AND remote_id = '$r2'"),
	qr/not-a-date|birthdate/i, 'sf: ... and sync.errors shows the table\'s words');

# progress is visible to other sessions while a resync runs
$emu->control('POST', '/__emulator/faults',
	{ api => 'hubspot', path => '/crm/v3/objects/contacts$', method => 'GET', latency_ms => 1500, count => 3 });
my ($out, $err) = ('', '');
my $bg = IPC::Run::start([ 'psql', '-X', '-At', '-d', $node->connstr($db), '-c', "SELECT sync.resync('crm.hs_contact')" ],
	'>', \$out, '2>', \$err);
ok(SyncTest::poll_true($node, $db,
	"SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE 'sync.resync(crm.hs_contact): reading the remote; % pages, % remote records compared%')", 60),
	'progress of a running resync shows in pg_stat_activity.query');
$bg->finish;
like($out, qr/"only_local"/, '... and the run completes');
$emu->control('DELETE', '/__emulator/faults');

sq("CREATE ROLE resync_user LOGIN; GRANT USAGE ON SCHEMA sync, crm TO resync_user;");
like(err_of("SET ROLE resync_user; SELECT sync.resync('crm.hs_contact')"), qr/permission denied for function resync/,
	'not executable by PUBLIC');
like(err_of("SELECT sync.resync('crm.nope')"), qr/relation "crm.nope" does not exist/, 'an unknown table: clear error');

# =====================================================================
# through the worker: the repair queues, the worker sends
# =====================================================================
my $wnode = PostgreSQL::Test::Cluster->new('resync_worker');
$wnode->init;
$wnode->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
});
$wnode->start;
sub wq { return $wnode->safe_psql($db, $_[0]); }
wq(qq{CREATE EXTENSION sync; CREATE SCHEMA crm;});
SyncTest::sf_connect($wnode, $db, $emu, 'sf');
my $aids = $emu->control('POST', '/__emulator/records/salesforce/Account',
	[ map { { Name => "Acct$_", Industry => 'Banking' } } 1 .. 20 ])->{ids};
wq(q{SELECT sync.mirror('sf', 'Account', 'crm.account', fields => ARRAY['Name','Industry'],
     options => '{"pull_interval": "1 day"}')});
ok($wnode->poll_query_until($db, "SELECT count(*) >= 20 AND bool_and(phase = 'incremental') FROM crm.account, sync.status"),
	'worker: the backfill is done');
wq("SET session_replication_role = replica; UPDATE crm.account SET industry = 'Energy' WHERE remote_id = '$aids->[0]'");
$r = decode_json(wq("SELECT sync.resync('crm.account', repair => true)"));
is(counts($r) . " queued=$r->{repaired}{queued_updates}", 'only_local=0 only_remote=0 different=1 queued=1',
	'worker: the local edit is found and queued');
ok(SyncTest::wait_until(sub {
		$emu->control('GET', "/__emulator/records/salesforce/Account/$aids->[0]")->{Industry} eq 'Energy' }, 30),
	'worker: the worker sent it to the remote');
ok($wnode->poll_query_until($db, "SELECT backlog = 0 FROM sync.status"), 'worker: nothing left to send');
$r = decode_json(wq("SELECT sync.resync('crm.account')"));
is(counts($r) . " pending=$r->{pending}", 'only_local=0 only_remote=0 different=0 pending=0',
	'worker: a second resync finds nothing');
# a paused mirror is not compared (no request reaches the remote) until resumed
wq("SELECT sync.pause('crm.account')");
my ($prc, $pout, $perr) = $wnode->psql($db, "SELECT sync.resync('crm.account')");
like($perr, qr/paused/, 'a paused mirror: sync.resync refuses, saying it is paused');
wq("SELECT sync.resume('crm.account')");
$r = decode_json(wq("SELECT sync.resync('crm.account')"));
is(counts($r), 'only_local=0 only_remote=0 different=0', '... and compares again once resumed');
$wnode->stop;

done_testing();
