# An idle Salesforce polling mirror stops re-reading its last burst.
#
# The incremental query reads SystemModstamp >= since - 60 s, so that a
# record committed late with an older stamp is not missed.  Once that
# minute is long over (our clock: the cursor's since_at) and a run that
# started after it saw nothing newer, the window is "newer than since"
# alone: idle polls return no records, a later change still arrives,
# deletes still arrive, and a late record inside the overlap before that
# is still picked up.  Elapsed time is simulated by moving the cursor's
# since_at back, step by step with sync.pull() (no worker).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;
use JSON::PP;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('sfidle');
$node->init;
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
sub pull { return sq("SELECT sync.pull('crm.contact')"); }
sub cursor_key { return sq("SELECT cursor ->> '$_[0]' FROM sync.mirror_state"); }

# since_at five minutes ago: the time a mirror spends idle between polls
# (the emulator's clock moves on as much, so that later remote writes are
# stamped as they would be after that time)
sub age_since
{
	$emu->control('POST', '/__emulator/clock', { advance_s => 300 });
	sq(q{UPDATE sync.mirror_state SET cursor = cursor || jsonb_build_object('since_at',
	       to_char((now() - interval '5 minutes') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))});
}

# The query requests of one pull: (queryAll requests, locator pages), and
# how many records the first one matches, asked of the emulator again with
# a token of our own (the request log has no response bodies).
my $token;
sub poll_reads
{
	$emu->control('DELETE', '/__emulator/requests');
	pull();
	my @log = @{ $emu->requests('salesforce') };
	my @all = grep { $_->{path} =~ m{/queryAll/?$} } @log;
	my @more = grep { $_->{path} =~ m{/query/[^/]+$} } @log;
	die "no queryAll request in the pull" unless @all;
	if (!defined $token)
	{
		my $res = $emu->{http}->post_form($emu->url . '/services/oauth2/token',
			{ grant_type => 'client_credentials', client_id => 'sync-client', client_secret => 'sync-secret' });
		die "token: $res->{status} $res->{content}" unless $res->{success};
		$token = decode_json($res->{content})->{access_token};
	}
	my $res = $emu->{http}->get($emu->url . $all[0]{path} . '?' . $all[0]{query},
		{ headers => { Authorization => "Bearer $token" } });
	die "replay: $res->{status} $res->{content}" unless $res->{success};
	(my $soql = $all[0]{query}) =~ s/\+/ /g;
	$soql =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
	return { queries => scalar @all, pages => scalar(@all) + scalar(@more),
		matched => decode_json($res->{content})->{totalSize}, soql => $soql };
}

sq('CREATE EXTENSION sync; CREATE SCHEMA crm;');
SyncTest::sf_connect($node, $db, $emu);
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { LastName => "seed$_" } } 1 .. 3 ]);
sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName', 'LastName'])});
like(pull(), qr/"applied": 3/, 'backfill: 3 records');

# a burst: 2,500 records in one remote transaction (one stamp; two pages)
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { LastName => "burst$_" } } 1 .. 2500 ]);
like(pull(), qr/"applied": 2500/, 'the burst arrives');
my $burst = $emu->control('GET', '/__emulator/records/salesforce/Contact');
my ($stamp) = map { $_->{SystemModstamp} } grep { $_->{LastName} eq 'burst1' } @$burst;

# a record committed late, stamped 30 s before the burst: inside the overlap
(my $late = $stamp) =~ s/\.\d+\+0000$//;
$late = sq("SELECT to_char(('$late+00'::timestamptz - interval '30 seconds') AT TIME ZONE 'UTC',
              'YYYY-MM-DD\"T\"HH24:MI:SS.000+0000')");
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ { LastName => 'late', SystemModstamp => $late, CreatedDate => $late } ]);
pull();
is(sq("SELECT count(*) FROM crm.contact WHERE last_name = 'late'"), '1',
	'a record committed late with a stamp inside the overlap is picked up before the window settles');

# right after the burst, polls still read the overlap: nothing settles early
my $r = poll_reads();
ok($r->{matched} >= 2500, 'a poll right after the burst re-reads the overlap window')
  or diag explain $r;
isnt(cursor_key('settled'), 'true', '... and the cursor is not settled by it');

# long after: the first run re-reads the overlap once more and settles
age_since();
$r = poll_reads();
ok($r->{matched} >= 2500, 'the settling poll still reads the overlap window') or diag explain $r;
is(cursor_key('settled'), 'true', 'a run that started long after since saw nothing newer: the cursor is settled');

# an idle settled mirror reads nothing (the original code re-read 2,501
# records, two pages, every poll)
$r = poll_reads();
is($r->{matched}, 0, 'an idle poll after settling matches no record') or diag explain $r;
is($r->{pages}, 1, '... in one query request, no locator pages');
$r = poll_reads();
is($r->{matched}, 0, 'the next idle poll matches no record either');
is(sq("SELECT count(*) FROM crm.contact"), '2504', 'no row was lost');

# a change after settling arrives, and the overlap is back for it
my $rid = sq("SELECT remote_id FROM crm.contact WHERE last_name = 'seed1'");
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$rid", { FirstName => 'edited' });
pull();
is(sq("SELECT first_name FROM crm.contact WHERE remote_id = '$rid'"), 'edited',
	'a remote change after settling arrives');
isnt(cursor_key('settled'), 'true', 'since advanced: the cursor is no longer settled');
$r = poll_reads();
my $overlap = sq(q{SELECT to_char(((cursor ->> 'since')::timestamptz - interval '60 seconds') AT TIME ZONE 'UTC',
                   'YYYY-MM-DD"T"HH24:MI:SS"Z"') FROM sync.mirror_state});
like($r->{soql}, qr/SystemModstamp >= \Q$overlap\E/, 'the next poll reads the overlap of the new since again')
  or diag explain $r;

# a remote delete after settling arrives too (queryAll, IsDeleted)
age_since();
pull();
is(cursor_key('settled'), 'true', 'settled again');
my $gone = sq("SELECT remote_id FROM crm.contact WHERE last_name = 'seed2'");
$emu->control('DELETE', "/__emulator/records/salesforce/Contact/$gone");
pull();
is(sq("SELECT count(*) FROM crm.contact WHERE remote_id = '$gone'"), '0',
	'a remote delete after settling arrives');

# a run that sees a newer stamp cannot settle, however old since_at was
age_since();
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$rid", { FirstName => 'again' });
pull();
is(sq("SELECT first_name FROM crm.contact WHERE remote_id = '$rid'"), 'again', 'a change during the settling run arrives');
isnt(cursor_key('settled'), 'true', '... and that run does not settle the cursor');

# a cursor written before since_at existed reads the overlap, and dates since from now
sq(q{UPDATE sync.mirror_state SET cursor = cursor - 'since_at' - 'settled'});
$r = poll_reads();
ok($r->{matched} >= 1, 'a cursor without since_at reads the overlap window') or diag explain $r;
like(cursor_key('since_at'), qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, '... and gets a since_at');
isnt(cursor_key('settled'), 'true', '... but does not settle in that run');

$node->stop;
$emu->stop;
done_testing();
