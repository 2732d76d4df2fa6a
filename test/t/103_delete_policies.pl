# Delete policies per mirror (issue 12, item 4), through sync.pull() and
# sync.push() against the emulator: "delete": "delete" | "keep" | "flag" for
# remote deletes (Salesforce's queryAll IsDeleted and getDeleted, HubSpot's
# archived listing and ID reconciliation), records restored from the recycle
# bin (Salesforce undelete, HubSpot restore), and "local_delete": "ignore".
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('deletes');
$node->init;
$node->start;
my $db = 'postgres';
$node->safe_psql($db, 'CREATE EXTENSION sync; CREATE SCHEMA crm;');

sub sq { return $node->safe_psql($db, $_[0]); }
sub clear_log { $emu->control('DELETE', '/__emulator/requests'); }
sub writes_of
{
	my ($api, $re) = @_;
	return [ grep { $_->{method} ne 'GET' && $_->{path} =~ $re } @{ $emu->requests($api) } ];
}
sub journal
{
	my ($table, $rid) = @_;
	return sq("SELECT string_agg(j.result, ',' ORDER BY j.at, j.id) FROM sync.journal j
	           JOIN sync.mirror m ON m.id = j.mirror
	          WHERE m.local_table = '$table'::regclass AND j.remote_id = '$rid' AND j.direction = 'in'
	            AND j.result IN ('flagged', 'restored', 'deleted')");
}

# ===================================================================
# Salesforce
# ===================================================================
# The emulator's clock runs three minutes behind until the getDeleted case
# below, which needs a delete logged in an earlier minute than the pull.
$emu->control('POST', '/__emulator/clock', { offset_s => -180 });
SyncTest::sf_connect($node, $db, $emu);
my %sf;
for my $set ([ 'F', 'flag' ], [ 'K', 'keep' ], [ 'D', 'delete' ])
{
	my ($p, $policy) = @$set;
	my $ids = $emu->control('POST', '/__emulator/records/salesforce/Contact',
		[ map { { FirstName => "First$_", LastName => "$p$_" } } 1 .. 4 ])->{ids};
	$sf{"$p$_"} = $ids->[ $_ - 1 ] for 1 .. 4;
}
sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.c_flag', fields => ARRAY['FirstName', 'LastName'],
     options => '{"delete": "flag", "filter": "LastName LIKE ''F%''"}')});
sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.c_keep', fields => ARRAY['FirstName', 'LastName'],
     options => '{"delete": "keep", "filter": "LastName LIKE ''K%''"}')});
sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.c_del', fields => ARRAY['FirstName', 'LastName'],
     options => '{"local_delete": "ignore", "filter": "LastName LIKE ''D%''"}')});
is(sq("SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position)
       FROM information_schema.columns WHERE table_schema = 'crm' AND table_name = 'c_flag'"),
	'id bigint, remote_id text, first_name text, last_name text, remote_modified_at timestamp with time zone, '
	  . 'remote_deleted_at timestamp with time zone',
	'flag: sync.mirror() adds remote_deleted_at timestamptz at the end of the table');
is(sq("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'crm' AND column_name = 'remote_deleted_at'"),
	'1', 'keep and delete: no remote_deleted_at column');
for my $t (qw(c_flag c_keep c_del))
{
	like(sq("SELECT sync.pull('crm.$t')"), qr/"applied": 4/, "$t: backfilled");
}

# --- remote deletes (queryAll, IsDeleted = true) ---
$emu->control('DELETE', "/__emulator/records/salesforce/Contact/$sf{$_}") for qw(F1 F2 K1 D1);
like(sq("SELECT sync.pull('crm.c_flag')"), qr/"deleted": 2/, 'flag: the pull counts two remote deletes');
is(sq("SELECT string_agg(last_name || ':' || (remote_deleted_at IS NOT NULL)::text, ',' ORDER BY last_name) FROM crm.c_flag"),
	'F1:true,F2:true,F3:false,F4:false', 'flag: the deleted records\' rows stay, flagged');
is(journal('crm.c_flag', $sf{F1}), 'flagged', 'flag: the journal says "flagged"');
sq("SELECT sync.pull('crm.c_flag')");
is(journal('crm.c_flag', $sf{F1}), 'flagged', 'flag: a second pull flags nothing again');
sq("SELECT sync.pull('crm.c_keep')");
is(sq("SELECT count(*) FROM crm.c_keep WHERE remote_id = '$sf{K1}'"), '1', 'keep: the deleted record\'s row stays');
is(journal('crm.c_keep', $sf{K1}), '', 'keep: nothing journaled as a delete');
sq("SELECT sync.pull('crm.c_del')");
is(sq("SELECT count(*) FROM crm.c_del WHERE remote_id = '$sf{D1}'"), '0', 'delete (the default): the row is deleted');
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'no remote delete queued anything (no echo)');

# --- flag: a flagged row is not pushed; the others are ---
clear_log();
sq("UPDATE crm.c_flag SET first_name = 'LocalEdit' WHERE last_name IN ('F1', 'F3')");
like(sq("SELECT sync.push('crm.c_flag')"), qr/"sent": 1, "rejected": 1/, 'flag: of two local edits one is sent, the flagged row\'s is parked');
my $patches = writes_of('salesforce', qr{/composite/sobjects$});
is(scalar(@$patches), 1, 'flag: one request');
is_deeply([ map { $_->{id} } @{ $patches->[0]{body}{records} } ], [ $sf{F3} ], '... for the live record only');
like(sq("SELECT error_code || ': ' || error_message FROM sync.errors WHERE local_table = 'crm.c_flag'::regclass"),
	qr/^REMOTE_DELETED: not sent: record \Q$sf{F1}\E was deleted remotely \(remote_deleted_at = .*\) and the mirror's delete policy "flag" sends no changes to it/,
	'flag: sync.errors says why, naming the record and the flag');
sq("UPDATE crm.c_flag SET last_name = 'F1x' WHERE last_name = 'F1'");
sq("SELECT sync.push('crm.c_flag')");
is(scalar(@{ writes_of('salesforce', qr{/composite/sobjects$}) }), 1, 'flag: a further edit of the flagged row waits behind the parked one');

# --- flag: undelete clears the flag; the parked local edits go out (local_wins) ---
$emu->control('POST', "/__emulator/salesforce/undelete/Contact/$sf{F1}");
sq("SELECT sync.pull('crm.c_flag')");
is(sq("SELECT remote_deleted_at IS NULL FROM crm.c_flag WHERE remote_id = '$sf{F1}'"), 't', 'flag: an undeleted record clears its row\'s flag at the next pull');
is(sq("SELECT first_name || ' ' || last_name FROM crm.c_flag WHERE remote_id = '$sf{F1}'"), 'LocalEdit F1x',
	'flag: ... keeping the local edits made meanwhile (local_wins)');
is(journal('crm.c_flag', $sf{F1}), 'flagged,restored', 'flag: the journal says "restored"');
is(sq("SELECT count(*) FROM sync.errors WHERE local_table = 'crm.c_flag'::regclass"), '0', 'flag: the parked edits left sync.errors');
clear_log();
sq("SELECT sync.push('crm.c_flag')");
sq("SELECT sync.push('crm.c_flag')");
my $rec = $emu->control('GET', "/__emulator/records/salesforce/Contact/$sf{F1}");
is("$rec->{FirstName} $rec->{LastName}", 'LocalEdit F1x', 'flag: the edits reached the restored record');
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'flag: outbox drained');
is(sq("SELECT count(*) FROM crm.c_flag WHERE remote_deleted_at IS NOT NULL"), '1', 'flag: the other deleted record stays flagged');

# --- flag: a flagged row deleted locally, as the parked message says ---
sq("UPDATE crm.c_flag SET first_name = 'Edit2' WHERE last_name = 'F2'");
sq("SELECT sync.push('crm.c_flag')");
like(sq("SELECT error_message FROM sync.errors WHERE local_table = 'crm.c_flag'::regclass"),
	qr/or delete row \d+ and call sync\.retry\(\) to drop them$/, 'flag: the parked edit says how to drop it');
sq("DELETE FROM crm.c_flag WHERE last_name = 'F2'");
sq("SELECT sync.retry('crm.c_flag')");
sq("SELECT sync.push('crm.c_flag')");
sq("SELECT sync.push('crm.c_flag')");
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'flag: ... then the edit is dropped and the delete goes (the record is deleted already)');
is(sq("SELECT string_agg(op::text || ' ' || result, ',' ORDER BY at) FROM sync.journal j
        WHERE direction = 'out' AND remote_id = '$sf{F2}'"), 'U rejected,U ok,D ok',
	'flag: journal of the row: parked, skipped, delete ok');

# --- keep: an undelete just updates the row ---
$emu->control('POST', "/__emulator/salesforce/undelete/Contact/$sf{K1}");
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$sf{K1}", { FirstName => 'Back' });
sq("SELECT sync.pull('crm.c_keep')");
is(sq("SELECT count(*) || ' ' || max(first_name) FROM crm.c_keep WHERE remote_id = '$sf{K1}'"), '1 Back',
	'keep: an undeleted record just updates its row (no second row)');

# --- delete: an undelete brings the row back ---
$emu->control('POST', "/__emulator/salesforce/undelete/Contact/$sf{D1}");
sq("SELECT sync.pull('crm.c_del')");
is(sq("SELECT first_name FROM crm.c_del WHERE remote_id = '$sf{D1}'"), 'First1', 'delete: an undeleted record comes back as a row');

# --- a delete log entry of a record restored since is no delete (getDeleted) ---
# getDeleted covers whole minutes up to the current one: D2's delete is
# logged three minutes ago, its undelete now; D1 (deleted three minutes ago
# as well, restored and pulled back since) is left out of the next
# incremental read's overlap by a newer record, D5.
$emu->control('DELETE', "/__emulator/records/salesforce/Contact/$sf{D2}");
$emu->control('POST', '/__emulator/clock', { offset_s => 0 });
$sf{D5} = $emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ { FirstName => 'First5', LastName => 'D5' } ])->{ids}[0];
sq("SELECT sync.pull('crm.c_del')");
$emu->control('POST', "/__emulator/salesforce/undelete/Contact/$sf{D2}");
sq(q{UPDATE sync.mirror_state SET cursor = jsonb_set(cursor, '{deletes_checked}',
       to_jsonb(to_char(now() AT TIME ZONE 'UTC' - interval '11 minutes', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')))
      WHERE mirror = (SELECT id FROM sync.mirror WHERE local_table = 'crm.c_del'::regclass)});
clear_log();
sq("SELECT sync.pull('crm.c_del')");
my @gd = grep { $_->{path} =~ m{/sobjects/Contact/deleted/} } @{ $emu->requests('salesforce') };
is(scalar(@gd), 1, 'getDeleted was read');
{
	# what that read answered: the same request, made here
	my $http = $emu->{http};
	my $tok = decode_json($http->post_form("$emu->{url}/services/oauth2/token",
		{ grant_type => 'client_credentials', client_id => 'sync-client', client_secret => 'sync-secret' })->{content});
	my $res = $http->get("$tok->{instance_url}$gd[0]{path}?$gd[0]{query}",
		{ headers => { Authorization => "Bearer $tok->{access_token}" } });
	ok((grep { $_->{id} eq $sf{D2} } @{ decode_json($res->{content})->{deletedRecords} }),
		'... and its delete log lists the deleted-then-undeleted record');
}
is(sq("SELECT count(*) FROM crm.c_del WHERE remote_id = '$sf{D2}'"), '1',
	'delete: a getDeleted entry of a record the same pull brought back live deletes nothing');
is(sq("SELECT count(*) FROM crm.c_del WHERE remote_id = '$sf{D1}'"), '1',
	'delete: nor does the entry of a record restored and pulled back by an earlier pull');
ok(scalar(grep { $_->{method} eq 'POST' && $_->{path} =~ m{/composite/sobjects/Contact$}
			&& grep { $_ eq $sf{D1} } @{ $_->{body}{ids} // [] } } @{ $emu->requests('salesforce') }),
	'... which the remote was asked about first (sObject Collections retrieve)');
# the same under "flag": F1 was deleted, then restored and pulled back; F2 is
# still deleted (its row is gone); F5, newer, keeps F1 out of the overlap
$emu->control('POST', '/__emulator/records/salesforce/Contact', [ { FirstName => 'First5', LastName => 'F5' } ]);
sq("SELECT sync.pull('crm.c_flag')");
clear_log();
sq(q{UPDATE sync.mirror_state SET cursor = jsonb_set(cursor, '{deletes_checked}',
       to_jsonb(to_char(now() AT TIME ZONE 'UTC' - interval '11 minutes', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')))
      WHERE mirror = (SELECT id FROM sync.mirror WHERE local_table = 'crm.c_flag'::regclass)});
sq("SELECT sync.pull('crm.c_flag')");
is(sq("SELECT remote_deleted_at IS NULL FROM crm.c_flag WHERE remote_id = '$sf{F1}'"), 't',
	'flag: a getDeleted entry of a record restored since flags nothing');
is(journal('crm.c_flag', $sf{F1}), 'flagged,restored', '... and journals nothing');
my @asked = map { @{ $_->{body}{ids} // [] } }
  grep { $_->{method} eq 'POST' && $_->{path} =~ m{/composite/sobjects/Contact$} } @{ $emu->requests('salesforce') };
is_deeply(\@asked, [ $sf{F1} ], '... after asking the remote about F1 only (F2 has no row, F5 is no delete)');

# --- local_delete: ignore ---
# (a newer remote change first moves the pull's cursor past D3 and D4, out
# of the window the next incremental read re-reads)
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$sf{D1}", { FirstName => 'Later' });
sq("SELECT sync.pull('crm.c_del')");
clear_log();
sq("DELETE FROM crm.c_del WHERE last_name IN ('D3', 'D4')");
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'local_delete ignore: a local DELETE queues nothing');
sq("SELECT sync.push('crm.c_del')");
is(scalar(@{ writes_of('salesforce', qr{/composite/sobjects}) }), 0, 'local_delete ignore: no remote delete is sent');
ok(defined $emu->control('GET', "/__emulator/records/salesforce/Contact/$sf{D3}")->{Id}, '... and the remote record lives on');
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$sf{D3}", { FirstName => 'RemoteEdit' });
sq("SELECT sync.pull('crm.c_del')");
is(sq("SELECT first_name FROM crm.c_del WHERE remote_id = '$sf{D3}'"), 'RemoteEdit',
	'local_delete ignore: the record comes back when it changes remotely');
is(sq("SELECT count(*) FROM crm.c_del WHERE remote_id = '$sf{D4}'"), '0', '... and only then (an unchanged one stays away)');

# ===================================================================
# HubSpot
# ===================================================================
my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
sq(qq{SELECT sync.create_connection('hs', 'hubspot', '{
  "base_url": "$url", "ca_file": "$ca", "archived_interval": 0,
  "auth": {"type": "private_app", "token": "pat-sync-test"}}')});
my $hc = $emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ map { { email => "h$_\@example.com", firstname => "H$_" } } 1 .. 5 ])->{ids};
my $hco = $emu->control('POST', '/__emulator/records/hubspot/companies',
	[ map { { name => "Co$_", domain => "co$_.example.com" } } 1 .. 3 ])->{ids};
sq(q{SELECT sync.mirror('hs', 'contacts', 'crm.h_flag', fields => ARRAY['email', 'firstname'],
     options => '{"delete": "flag", "conflict": "remote_wins"}')});
sq(q{SELECT sync.mirror('hs', 'companies', 'crm.h_keep', fields => ARRAY['name', 'domain'],
     options => '{"delete": "keep"}')});
like(sq("SELECT sync.pull('crm.h_flag')"), qr/"applied": 5/, 'hubspot: contacts backfilled');
like(sq("SELECT sync.pull('crm.h_keep')"), qr/"applied": 3/, 'hubspot: companies backfilled');

# --- the archived listing ---
$emu->control('DELETE', "/__emulator/records/hubspot/contacts/$hc->[0]");
$emu->control('DELETE', "/__emulator/records/hubspot/companies/$hco->[0]");
sq("SELECT sync.pull('crm.h_flag')");
sq("SELECT sync.pull('crm.h_keep')");
is(sq("SELECT remote_deleted_at IS NOT NULL FROM crm.h_flag WHERE remote_id = '$hc->[0]'"), 't',
	'hubspot flag: an archived contact\'s row stays, flagged (archived listing)');
is(sq("SELECT count(*) FROM crm.h_keep WHERE remote_id = '$hco->[0]'"), '1', 'hubspot keep: an archived company\'s row stays');
sq("SELECT sync.pull('crm.h_flag')");
is(journal('crm.h_flag', $hc->[0]), 'flagged', 'hubspot flag: the next archived listing flags nothing again');

clear_log();
sq("UPDATE crm.h_flag SET firstname = 'LocalEdit' WHERE remote_id = '$hc->[0]'");
like(sq("SELECT sync.push('crm.h_flag')"), qr/"rejected": 1/, 'hubspot flag: a local edit of the flagged row is parked');
is(scalar(@{ writes_of('hubspot', qr{/batch/}) }), 0, '... and nothing is sent');

# --- restore: the flag is cleared; under remote_wins the parked edit is dropped ---
$emu->control('POST', "/__emulator/hubspot/restore/contacts/$hc->[0]");
sq("SELECT sync.pull('crm.h_flag')");
is(sq("SELECT (remote_deleted_at IS NULL)::text || ' ' || firstname FROM crm.h_flag WHERE remote_id = '$hc->[0]'"), 'true H1',
	'hubspot flag: a restored contact clears the flag and, under remote_wins, its values win');
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'hubspot flag: ... and the parked local edit is dropped');
is(journal('crm.h_flag', $hc->[0]), 'flagged,restored', 'hubspot flag: journal: flagged, restored');

# --- reconciliation (hard deletes) obeys the policy, both ways ---
$emu->control('POST', "/__emulator/hubspot/purge/contacts/$hc->[1]");
$emu->control('POST', "/__emulator/hubspot/purge/companies/$hco->[1]");
sq("UPDATE crm.h_flag SET remote_deleted_at = now() WHERE remote_id = '$hc->[2]'");
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'setting the flag by hand queues nothing');
for my $t (qw(h_flag h_keep))
{
	sq(qq{UPDATE sync.mirror_state SET cursor = jsonb_set(cursor, '{reconciled_at}', '0')
	      WHERE mirror = (SELECT id FROM sync.mirror WHERE local_table = 'crm.$t'::regclass)});
	sq("SELECT sync.pull('crm.$t')");
}
is(sq("SELECT remote_deleted_at IS NOT NULL FROM crm.h_flag WHERE remote_id = '$hc->[1]'"), 't',
	'hubspot flag: a hard-deleted contact found by reconciliation is flagged, not deleted');
is(sq("SELECT remote_deleted_at IS NULL FROM crm.h_flag WHERE remote_id = '$hc->[2]'"), 't',
	'hubspot flag: a flagged row whose record reconciliation lists live is unflagged');
is(sq("SELECT count(*) FROM crm.h_keep WHERE remote_id = '$hco->[1]'"), '1', 'hubspot keep: reconciliation deletes nothing');
is(sq("SELECT count(*) FROM crm.h_flag WHERE remote_deleted_at IS NOT NULL"), '1', 'hubspot flag: one row flagged in the end');

# --- the flag column dropped by hand: remote deletes are set aside, saying what to do ---
sq("ALTER TABLE crm.h_flag DROP COLUMN remote_deleted_at");
$emu->control('DELETE', "/__emulator/records/hubspot/contacts/$hc->[3]");
sq("SELECT sync.pull('crm.h_flag')");
like(sq("SELECT error_message FROM sync.errors WHERE local_table = 'crm.h_flag'::regclass AND remote_id = '$hc->[3]'"),
	qr/table crm\.h_flag has no column "remote_deleted_at" for the mirror's delete policy "flag"/,
	'flag column missing: the remote delete is set aside with a clear error');
is(sq("SELECT count(*) FROM crm.h_flag WHERE remote_id = '$hc->[3]'"), '1', '... and the row is not deleted');
sq("SELECT sync._delete_policy_column('crm.h_flag')");
sq("SELECT sync.retry('crm.h_flag')");
sq("SELECT sync.pull('crm.h_flag')");
is(sq("SELECT remote_deleted_at IS NOT NULL FROM crm.h_flag WHERE remote_id = '$hc->[3]'"), 't',
	'... after the column is added again and sync.retry(), the delete is flagged');

# ===================================================================
# NetSuite (deletes from SuiteQL's deletedrecord, else ID reconciliation:
# the same policies, by the same engine path)
# ===================================================================
my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
sq(qq{SELECT sync.create_connection('ns', 'netsuite', '{"account": "1234567", "base_url": "$url", "ca_file": "$ca",
  "auth": {"type": "tba", "consumer_key": "ns-consumer-key", "consumer_secret": "ns-consumer-secret",
           "token_id": "ns-token-id", "token_secret": "ns-token-secret"}}')});
my $nids = $emu->control('POST', '/__emulator/records/netsuite/customer',
	[ map { { companyName => "NS$_" } } 1 .. 3 ])->{ids};
sq(q{SELECT sync.mirror('ns', 'customer', 'crm.n_flag', fields => ARRAY['companyName'],
     options => '{"delete": "flag"}')});
sq(q{SELECT sync.mirror('ns', 'customer', 'crm.n_keep', fields => ARRAY['companyName'],
     options => '{"delete": "keep"}')});
sq("SELECT sync.pull('crm.n_flag'); SELECT sync.pull('crm.n_keep')");
is(sq("SELECT count(*) FROM crm.n_flag"), '3', 'netsuite: both mirrors backfilled');
$emu->control('DELETE', "/__emulator/records/netsuite/customer/$nids->[0]");
sq("SELECT sync.pull('crm.n_flag'); SELECT sync.pull('crm.n_keep')");
is(sq("SELECT remote_deleted_at IS NOT NULL FROM crm.n_flag WHERE remote_id = '$nids->[0]'"), 't',
	'netsuite flag: a record deleted in NetSuite (deletedrecord) is flagged, the row stays');
is(journal('crm.n_flag', $nids->[0]), 'flagged', '... the journal says "flagged"');
is(sq("SELECT count(*) FROM crm.n_keep WHERE remote_id = '$nids->[0]'"), '1', 'netsuite keep: the row stays');
sq("UPDATE crm.n_flag SET company_name = 'edited' WHERE remote_id = '$nids->[0]'");
sq("SELECT sync.push('crm.n_flag')");
is(sq("SELECT error_code FROM sync.errors WHERE local_table = 'crm.n_flag'::regclass"), 'REMOTE_DELETED',
	'netsuite flag: a local edit of a flagged row is parked, not sent');
# without deletedrecord, reconciliation finds the delete: the same policy
$emu->control('POST', '/__emulator/config', { netsuite_deletedrecord => JSON::PP::false });
$emu->control('DELETE', "/__emulator/records/netsuite/customer/$nids->[1]");
sq("SELECT sync.pull('crm.n_flag')") for 1 .. 2;
is(sq("SELECT remote_deleted_at IS NOT NULL FROM crm.n_flag WHERE remote_id = '$nids->[1]'"), 't',
	'netsuite flag: by ID reconciliation too');

done_testing();
