# The hostile-remote corpus: every bad answer the emulator knows (fault kind
# "hostile": empty and HTML bodies, error bodies with 200, deep nesting, huge
# strings and numbers, wrong types, nulls, dropped fields, invalid UTF-8,
# NUL, injection-shaped IDs, truncation) against every kind of request the
# Salesforce and HubSpot providers make, in function mode
# (sync.test_connection, sync.remote_fields, sync.pull, sync.push).
#
# For each (request kind, case): no backend crashes; a failed call names the
# connection; an answer that cannot have applied a write never counts as
# sent (the write stays queued or parked); and once the fault is cleared,
# the same connection and mirror work again (a remote change arrives, the
# local change reaches the remote).
#
# This file runs the Salesforce half; 062_hostile_remote_hubspot.pl runs it
# for HubSpot (each stays well under two minutes).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $P = $0 =~ /062_/ ? 'hs' : 'sf';
my $emu = SyncTest::start_emulator();
my $node = PostgreSQL::Test::Cluster->new("hostile_$P");
$node->init;
$node->start;
my $db = 'postgres';
$node->safe_psql($db, 'CREATE EXTENSION sync; CREATE SCHEMA crm;');

sub sq { return $node->safe_psql($db, $_[0]); }
my %T0 = (sf => 'crm.sfc', hs => 'crm.hsc');
# several statements in one session; the last statement's output is the last line
sub multi
{
	my ($rc, $out, $err) = $node->psql($db, $_[0]);
	my @l = split /\n/, $out;
	return ($rc, $l[-1] // '', $err);
}
my $url = $emu->{url};

my @cases = map { $_->{case} } @{ $emu->control('GET', '/__emulator/hostile') };
ok(@cases >= 20, 'the emulator serves a corpus of ' . scalar(@cases) . ' hostile answers');
# answers that cannot be read as the API's JSON at all: a read must fail
my %unreadable = map { $_ => 1 } qw(empty html html_502 error_body deep_nesting huge_string
  root_null root_number root_string truncated root_flip drop_root_keys nulls);
# answers served without letting the API apply the request
my %not_applied = map { $_ => 1 } qw(empty html html_502 error_body deep_nesting huge_string
  root_null root_number root_string);

# --- connections and mirrors --------------------------------------------
sq(qq{SELECT sync.create_connection('sf', 'salesforce', '{
  "login_url": "$url", "api_version": "v59.0",
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}')});
sq(qq{SELECT sync.create_connection('hs', 'hubspot', '{
  "base_url": "$url", "archived_interval": 0, "reconcile_interval": 0,
  "auth": {"type": "private_app", "token": "pat-sync-test"}}')});
sq(qq{SELECT sync.create_connection('hso', 'hubspot', '{
  "base_url": "$url",
  "auth": {"type": "oauth_refresh", "client_id": "sync-hs-client", "client_secret": "sync-hs-secret",
           "refresh_token": "sync-hs-refresh"}}')});

$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "F$_", LastName => "L$_", Email => "p$_\@example.com" } } 1 .. 40 ]);
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ map { { email => "p$_\@example.com", firstname => "F$_", lastname => "L$_" } } 1 .. 40 ]);

sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.sfc',
     fields => ARRAY['FirstName','LastName','Email','Sync_Key__c'],
     options => '{"idempotency_field": "Sync_Key__c"}')});
sq(q{SELECT sync.mirror('hs', 'contacts', 'crm.hsc',
     fields => ARRAY['email','firstname','lastname'],
     options => '{"idempotency_field": "email"}')});
like(sq("SELECT sync.pull('crm.sfc')"), qr/"applied": 40/, 'Salesforce backfill before the corpus')
  if $P eq 'sf';
like(sq("SELECT sync.pull('crm.hsc')"), qr/"applied": 40/, 'HubSpot backfill before the corpus')
  if $P eq 'hs';

# --- DEBUG logs: URLs redacted, no secret, no query text ------------------
{
	my $offset = -s $node->logfile;
	sq("SET log_min_messages = debug5; SELECT sync.test_connection('$P'); SELECT sync.pull('$T0{$P}')");
	my $logtext = join '', grep { !/ statement: / } split /^/m, slurp_file($node->logfile, $offset);
	like($logtext, qr/sync http: (GET|POST) http/, 'DEBUG2 logs each request');
	if ($P eq 'sf')
	{
		like($logtext, qr{sync http: GET \S+/query(All)?\?q=\[redacted\]}, 'the SOQL in a query URL is redacted');
		unlike($logtext, qr/SELECT(\+|%20)/i, 'no query text in the log');
	}
	like($logtext, qr{sync http > [Aa]uthorization: \[redacted\]}, 'DEBUG5 trace redacts the bearer token');
	unlike($logtext, qr/Bearer (?!\[redacted\])\S/, 'no bearer token in the log');
	unlike($logtext, qr/sync-secret|pat-sync-test|sync-hs-secret|sync-hs-refresh/, 'no secret in the log');
}

# --- item 4: a remote ID from the user's table never widens a request -----
{
	my $t = $T0{$P};
	my ($idcol, $api, $obj) = $P eq 'sf' ? ('Id', 'salesforce', 'Contact') : ('id', 'hubspot', 'contacts');
	my ($k1, $a, $k2, $b) = split /\|/, sq("SELECT string_agg(id || '|' || remote_id, '|') FROM
	    (SELECT id, remote_id FROM $t WHERE remote_id IS NOT NULL ORDER BY id LIMIT 2) s");
	# the row claims to be "A,B": written without capture, as a careless import would
	sq("SET session_replication_role = replica; UPDATE $t SET remote_id = '$a,$b' WHERE id = $k1");
	$emu->control('DELETE', '/__emulator/requests');
	sq("DELETE FROM $t WHERE id = $k1");
	my ($rc, $out, $err) = $node->psql($db, "SELECT sync.push('$t')");
	my $ids = join ',', map { $_->{$idcol} } @{ remote_records($api, $obj) };
	like($ids, qr/\Q$b\E/, "a remote-id column holding \"A,B\" does not delete B ($P)");
	like(sq("SELECT error_code || ': ' || error_message FROM sync.errors WHERE local_table = '$t'::regclass"),
		qr/INVALID_REMOTE_ID: .*\Q$a,$b\E/, "... the entry is parked as INVALID_REMOTE_ID, naming the value ($P)");
	my @sent = grep { $_->{method} ne 'GET' && ($_->{path} =~ /composite|batch/) } @{ $emu->requests($api) };
	is(scalar @sent, 0, "... and no request carried it ($P)");
	# clean up: the row is gone locally; drop the parked entry
	sq("DELETE FROM sync.outbox WHERE state = 'parked'");
}

# --- the request kinds ----------------------------------------------------
my $n = 0;    # a fresh marker per case
my %T = (sf => 'crm.sfc', hs => 'crm.hsc');
my %OBJ = (sf => [ 'salesforce', 'Contact' ], hs => [ 'hubspot', 'contacts' ]);

sub remote_records
{
	my ($api, $obj) = @_;
	my $r = $emu->control('GET', "/__emulator/records/$api/$obj");
	return ref $r eq 'ARRAY' ? $r : [];
}

my %first;    # a record that stays: remote edits go there
sub touch_remote
{
	my ($p) = @_;
	my $m = "m$n";
	if ($p eq 'sf')
	{
		my $rid = $first{sf} //= sq("SELECT remote_id FROM crm.sfc WHERE remote_id IS NOT NULL ORDER BY id LIMIT 1");
		$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$rid", { FirstName => $m });
		return sub { sq("SELECT first_name FROM crm.sfc WHERE remote_id = '$rid'") eq $m };
	}
	my $rid = $first{hs} //= sq("SELECT remote_id FROM crm.hsc WHERE remote_id IS NOT NULL ORDER BY id LIMIT 1");
	$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$rid", { firstname => $m });
	return sub { sq("SELECT firstname FROM crm.hsc WHERE remote_id = '$rid'") eq $m };
}
sub remote_value
{
	my ($p, $rid, $field) = @_;
	# (a build that wrote a hostile ID back into the row makes a URL the emulator refuses)
	my $r = eval { $emu->control('GET', "/__emulator/records/$OBJ{$p}[0]/$OBJ{$p}[1]/$rid") };
	return '' unless ref $r eq 'HASH';    # gone (404)
	return ($p eq 'sf' ? $r->{$field} : $r->{properties}{$field}) // '';
}


# push preparations: make one local change; return a check that it reached the remote
sub local_update
{
	my ($p) = @_;
	my $m = "u$n";
	my ($col, $rcol) = $p eq 'sf' ? ('first_name', 'FirstName') : ('firstname', 'firstname');
	my $rid = sq("UPDATE $T{$p} SET $col = '$m'
	               WHERE id = (SELECT max(id) FROM $T{$p} WHERE remote_id IS NOT NULL) RETURNING remote_id");
	return sub { remote_value($p, $rid, $rcol) eq $m };
}

sub local_insert
{
	my ($p) = @_;
	my $m = "c$n";
	if ($p eq 'sf')
	{
		sq("INSERT INTO crm.sfc (first_name, last_name, email) VALUES ('$m', 'L$m', '$m\@example.com')");
	}
	else
	{
		sq("INSERT INTO crm.hsc (firstname, lastname, email) VALUES ('$m', 'L$m', '$m\@example.com')");
	}
	return sub {
		my $rid = sq("SELECT remote_id FROM $T{$p} WHERE email = '$m\@example.com'");
		return $rid && remote_value($p, $rid, $p eq 'sf' ? 'Email' : 'email') eq "$m\@example.com";
	};
}

sub local_delete
{
	my ($p) = @_;
	my $rid = sq("DELETE FROM $T{$p}
	               WHERE id = (SELECT max(id) FROM $T{$p} WHERE remote_id IS NOT NULL AND email LIKE 'p%')
	               RETURNING remote_id");
	return sub {
		my $idkey = $p eq 'sf' ? 'Id' : 'id';
		return !grep { $_->{$idkey} eq $rid } @{ remote_records(@{ $OBJ{$p} }) };
	};
}

sub set_deletes_due
{
	sq(q{UPDATE sync.mirror_state
	        SET cursor = jsonb_set(cursor, '{deletes_checked}',
	                               to_jsonb(to_char((now() - interval '11 minutes') AT TIME ZONE 'UTC',
	                                                'YYYY-MM-DD"T"HH24:MI:SS"Z"')))
	      WHERE mirror = (SELECT id FROM sync.mirror WHERE local_table = 'crm.sfc'::regclass)});
}

my $sfdata = '/services/data/v59\.0';
# [provider, kind, fault filter, how to call, type, preparation]
my @kinds = (
	[ 'sf', 'token',    { path => '^/services/oauth2/token$' },                 "SELECT sync.test_connection('sf')", 'read' ],
	[ 'sf', 'objects',  { path => "^$sfdata/sobjects/\$" },                    "SELECT sync.test_connection('sf')", 'read' ],
	[ 'sf', 'describe', { path => '/sobjects/Contact/describe$' },              "SELECT count(*) FROM sync.remote_fields('sf', 'Contact')", 'read' ],
	[ 'sf', 'query',    { path => '/query(All)?(/[^/]+)?$' },                   "SELECT sync.pull('crm.sfc')", 'pull' ],
	[ 'sf', 'deleted',  { path => '/sobjects/Contact/deleted/$' },              "SELECT sync.pull('crm.sfc')", 'pull', \&set_deletes_due ],
	[ 'sf', 'update',   { path => '/composite/sobjects$', method => 'PATCH' },  "SELECT sync.push('crm.sfc')", 'push', \&local_update ],
	[ 'sf', 'upsert',   { path => '/composite/sobjects/Contact/Sync_Key__c$' }, "SELECT sync.push('crm.sfc')", 'push', \&local_insert ],
	[ 'sf', 'delete',   { path => '/composite/sobjects$', method => 'DELETE' }, "SELECT sync.push('crm.sfc')", 'push', \&local_delete ],
	[ 'hs', 'token',    { path => '^/oauth/v1/token$' },                        "SELECT sync.test_connection('hso')", 'read' ],
	[ 'hs', 'account',  { path => '^/account-info/v3/details$' },               "SELECT sync.test_connection('hs')", 'optional' ],
	[ 'hs', 'objects',  { path => '^/crm/v3/objects/contacts$', method => 'GET' }, "SELECT sync.test_connection('hs')", 'read' ],
	[ 'hs', 'describe', { path => '^/crm/v3/properties/contacts$' },            "SELECT count(*) FROM sync.remote_fields('hs', 'contacts')", 'read' ],
	[ 'hs', 'search',   { path => '/contacts/search$' },                        "SELECT sync.pull('crm.hsc')", 'pull' ],
	[ 'hs', 'listing',  { path => '^/crm/v3/objects/contacts$', method => 'GET' }, "SELECT sync.pull('crm.hsc')", 'pull' ],
	[ 'hs', 'update',   { path => '/batch/update$' },                           "SELECT sync.push('crm.hsc')", 'push', \&local_update ],
	[ 'hs', 'upsert',   { path => '/batch/upsert$' },                           "SELECT sync.push('crm.hsc')", 'push', \&local_insert ],
	[ 'hs', 'archive',  { path => '/batch/archive$' },                          "SELECT sync.push('crm.hsc')", 'push', \&local_delete ],
);

my %conn_of = (sf => 'sf', hs => 'hs');
my (%tried, $crashes, %outcomes);
$crashes = 0;
my $logstart = -s $node->logfile;

foreach my $k (grep { $_->[0] eq $P } @kinds)
{
	my ($p, $kind, $filter, $call, $type, $prep) = @$k;
	my $conn = $call =~ /'hso'/ ? 'hso' : $conn_of{$p};
	foreach my $case (@cases)
	{
		$n++;
		my $name = "$p $kind / $case";
		my @why;
		my $check;
		$check = $prep ? $prep->($p) : undef;
		$check = touch_remote($p) if $type eq 'pull';

		$emu->control('POST', '/__emulator/faults',
			{ api => ($p eq 'sf' ? 'salesforce' : 'hubspot'), %$filter, kind => 'hostile', case => $case });
		my $count = "SELECT count(*) FROM sync.outbox WHERE mirror = (SELECT id FROM sync.mirror WHERE local_table = '$T{$p}'::regclass)";
		my ($rc, $out, $err) = $type eq 'push' ? multi("$call; $count") : $node->psql($db, $call);
		$emu->control('DELETE', '/__emulator/faults');
		$tried{ $type eq 'push' ? 'push' : 'read' }++;

		if ($err =~ /server closed the connection|terminated abnormally|connection to server was lost/)
		{
			$crashes++;
			push @why, "the backend died: $err";
			# TAP clusters run with restart_after_crash = off: start it again
			if ($node->psql($db, 'SELECT 1') != 0)
			{
				my $pidfile = $node->data_dir . '/postmaster.pid';
				for (1 .. 100) { last unless -e $pidfile; select(undef, undef, undef, 0.1); }
				$node->_update_pid(0);
				$node->start;
			}
		}
		my $named = $err =~ /connection "\Q$conn\E"/;
		my $outcome = $rc == 0 ? 'ok' : $named ? 'error' : 'unnamed error';
		push @why, "an error that does not name the connection: $err" if $rc != 0 && !$named && !@why;

		if ($type eq 'read' || $type eq 'pull')
		{
			push @why, "an unreadable answer was accepted ($out)" if $rc == 0 && $unreadable{$case};
		}
		elsif ($type eq 'push' && $rc == 0)
		{
			my $queued = $out;
			$outcome = $queued > 0 ? 'kept queued' : 'sent';
			push @why, "a write that was never applied counts as sent ($out)" if $not_applied{$case} && $queued == 0;
		}
		$outcomes{$outcome}++;

		# cleared: the same mirror syncs again
		my ($rc2, $out2, $err2);
		if ($type eq 'push')
		{
			($rc2, $out2, $err2) = multi("UPDATE sync.outbox SET next_attempt_at = now(), claimed_until = NULL WHERE state = 'pending';
				SELECT sync.retry('$T{$p}'); $call;
				SELECT coalesce(string_agg(state || ' ' || coalesce(error_code, '') || ' ' || coalesce(error_message, ''), '; '), 'empty') FROM sync.outbox");
			push @why, "after the fault was cleared the outbox still holds: $out2" if $out2 ne 'empty';
		}
		else
		{
			($rc2, $out2, $err2) = $node->psql($db, $call);
		}
		push @why, "after the fault was cleared: $err2" if $rc2 != 0;
		push @why, 'after the fault was cleared the change did not arrive' if $rc2 == 0 && $check && !$check->();
		ok(!@why, "$name: no crash, " . ($type eq 'push' ? 'nothing lost' : 'a clear error') . ', syncs again')
		  or diag join("\n", @why);
	}
}

# the postmaster saw no backend die
my $log = slurp_file($node->logfile, $logstart);
unlike($log, qr/terminated by signal|server process .* was terminated/, 'no backend terminated by a signal');
$crashes++ if $log =~ /terminated by signal/;
is($crashes, 0, 'crashes seen: 0');
like($log, qr/sent an unusable response while/, 'the log shows the connection-named protocol errors');
unlike($log, qr/pat-sync-test|sync-secret|sync-hs-secret|sync-hs-refresh/, 'no secret reached the log');

$tried{$_} //= 0 for qw(read push);
my $total = $tried{read} + $tried{push};
diag(sprintf("%s: hostile inputs from the remote: %d tried (%d on reads: auth, test, describe, pull pages, delete feeds, listings; %d on pushes) over %d request kinds x %d cases; crashes seen: %d; outcomes: %s",
	$P eq 'sf' ? 'Salesforce' : 'HubSpot', $total, $tried{read}, $tried{push},
	scalar(grep { $_->[0] eq $P } @kinds), scalar(@cases), $crashes,
	join(', ', map { "$_ $outcomes{$_}" } sort keys %outcomes)));

$node->stop;
done_testing();
