# An idle HubSpot mirror stops re-reading its last burst (issue #13).
#
# Each incremental search starts search_lag before the cursor (HubSpot's
# search index lags behind writes), so before the fix every pull after a
# burst read the burst's last search_lag again, until the next remote
# change.  Now, once a search run that started 2 x search_lag after the
# cursor last moved finds nothing newer, the mirror is settled: its searches
# start just after the cursor, and match nothing while nothing changes.
# Nothing may be lost on the way:
#   - a change stamped before the cursor but indexed late (the emulator's
#     search index lag, and a backdated stamp) still arrives;
#   - a change after settling arrives, and the cursor moving on brings the
#     overlap back (a late-indexed change stamped before the new cursor);
#   - a cursor written before this fix (no since_at) is not settled.
# The connection option search_lag (the overlap) is checked too.
# Pulls are run with sync.pull() (the worker runs the same code); what the
# idle searches match is found by sending each of them again to the
# emulator.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::Local qw(timegm);
use Time::HiRes qw(sleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

# the emulator's index lag, and the connection's (larger: the promise holds
# for changes indexed within search_lag)
my $index_lag_ms = 2000;
my $search_lag = 5;
my $burst = 450;    # three search pages of 200

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('hsidle');
$node->init;
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
sub clear_log { $emu->control('DELETE', '/__emulator/requests'); }
sub pull { return sq("SELECT sync.pull('crm.contact')"); }

# pull until the condition holds (at most 60 s)
sub pull_until
{
	my ($cond, $what) = @_;
	for (1 .. 120)
	{
		pull();
		return pass($what) if sq("SELECT ($cond)") eq 't';
		sleep(0.5);
	}
	return fail($what);
}

# the search requests sync sent and the emulator answered (bodies) since
# the log was cleared (a search over the emulator's 5 a second is answered
# 429 and sent again)
sub searches
{
	my @s = grep { $_->{method} eq 'POST' && $_->{path} =~ m{/crm/v3/objects/contacts/search$} }
	  @{ $emu->requests('hubspot') };
	note('search answers: ' . join(' ', map { $_->{status} } @s));
	return [ map { $_->{body} } grep { $_->{status} == 200 } @s ];
}

# how many records a search body matches now (the same request, sent again)
sub matches
{
	my ($body) = @_;
	my $res;
	for (1 .. 10)
	{
		# (search allows 5 requests a second: wait out a 429)
		$res = $emu->{http}->request('POST', "$emu->{url}/crm/v3/objects/contacts/search", {
			headers => { Authorization => 'Bearer pat-sync-test', 'Content-Type' => 'application/json' },
			content => encode_json($body) });
		last unless $res->{status} == 429;
		sleep(1);
	}
	die "search replay: $res->{status} $res->{content}" unless $res->{status} == 200;
	return decode_json($res->{content})->{total};
}

# the newest lastmodifieddate of the remote contacts, epoch ms
sub newest_stamp
{
	my $max = 0;
	for my $r (@{ $emu->control('GET', '/__emulator/records/hubspot/contacts') })
	{
		my ($y, $mo, $d, $h, $mi, $s, $ms) =
		  $r->{properties}{lastmodifieddate} =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)(?:\.(\d+))?Z$/
		  or die "unexpected stamp $r->{properties}{lastmodifieddate}";
		my $t = timegm($s, $mi, $h, $d, $mo - 1, $y) * 1000 + ($ms // 0);
		$max = $t if $t > $max;
	}
	return $max;
}

# a remote edit stamped before the cursor (as a change written just before
# the newest one but indexed after it would be): the index shows it late
sub late_change
{
	my ($id, $name) = @_;
	my $stamp = newest_stamp() - 1000;
	$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$id",
		{ firstname => $name, lastmodifieddate => "$stamp" });
}

sub settle
{
	# a run that starts 2 x search_lag after the cursor moved, finding nothing newer
	sleep(2 * $search_lag + 1);
	pull();
}

my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
sq('CREATE EXTENSION sync; CREATE SCHEMA crm;');

# --- search_lag: a bad value is refused, naming the option ---
for my $bad ('"soon"', '-1', '"NaN"', '"2 days"')
{
	my ($rc, $out, $err) = $node->psql($db, qq{SELECT sync.create_connection('x', 'hubspot',
	  '{"auth": {"type": "private_app", "token": "t"}, "search_lag": $bad}')});
	like($err, qr/invalid HubSpot connection option "search_lag": must be a number of seconds/,
		"search_lag $bad is refused, naming the option");
}
$emu->control('POST', '/__emulator/config', { hubspot_search_lag_ms => $index_lag_ms });
my $ids = $emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ map { { email => "c$_\@example.com", firstname => "C$_" } } 1 .. 3 ])->{ids};
sleep($index_lag_ms / 1000 + 0.5);
sq(qq{SELECT sync.create_connection('hs', 'hubspot', '{"base_url": "$url", "ca_file": "$ca",
    "search_lag": $search_lag, "archived_interval": "1 hour",
    "auth": {"type": "private_app", "token": "pat-sync-test"}}');
  SELECT sync.mirror('hs', 'contacts', 'crm.contact', fields => ARRAY['email', 'firstname']);});
like(pull(), qr/"applied": 3/, 'backfill');

# --- a burst of remote changes: three search pages ---
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ map { { email => "b$_\@example.com", firstname => "B$_" } } 1 .. $burst ]);
pull_until("SELECT count(*) = $burst + 3 FROM crm.contact", "the burst of $burst arrived");

# --- (1) while not settled: a change stamped before the cursor, indexed late ---
late_change($ids->[0], 'Late');
pull_until("SELECT firstname = 'Late' FROM crm.contact WHERE remote_id = '$ids->[0]'",
	'a change stamped before the cursor and indexed late arrives (the overlap is read)');

# --- idle after settling: the searches match nothing ---
settle();
clear_log();
my @applied = map { pull() =~ /"applied": (\d+)/ ? $1 : -1 } 1 .. 3;
is("@applied", '0 0 0', 'three idle pulls applied nothing');
my $idle = searches();
is(scalar(@$idle), 3, 'idle: one search a pull (the burst is not paged through again)');
my @matched = map { matches($_) } @$idle;
is(scalar(grep { $_ != 0 } @matched), 0, "idle: the searches of a settled mirror match no record (@matched)");

# --- (2) a change after settling arrives ---
$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$ids->[1]", { firstname => 'After' });
pull_until("SELECT firstname = 'After' FROM crm.contact WHERE remote_id = '$ids->[1]'",
	'a change after settling arrives');
# the cursor moved on: the overlap is back
late_change($ids->[2], 'Late2');
pull_until("SELECT firstname = 'Late2' FROM crm.contact WHERE remote_id = '$ids->[2]'",
	'after the cursor moved on, a change stamped before it and indexed late arrives');

# --- a cursor of an older version (no since_at, no settled) is not settled ---
settle();
sq(q{UPDATE sync.mirror_state SET cursor = cursor - 'since_at' - 'settled'});
late_change($ids->[0], 'Late3');
pull_until("SELECT firstname = 'Late3' FROM crm.contact WHERE remote_id = '$ids->[0]'",
	'a cursor without since_at reads the overlap: a late-indexed change stamped before it arrives');

is(sq("SELECT count(*) FROM sync.mirror_state WHERE last_error IS NOT NULL"), '0', 'no pull failed');
is(sq('SELECT count(*) FROM crm.contact'), $burst + 3, 'nothing else arrived');

$node->stop;
done_testing();
