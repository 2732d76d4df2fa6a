# SyncTest — helpers for the TAP tests: the emulator (HTTP or HTTPS with a
# throwaway CA) and its control API.
package SyncTest;
use strict;
use warnings;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::SSL ();
use JSON::PP;
use Time::HiRes qw(usleep);

# The source tree (helpers, emulator, keys, sync.control): SYNC_TREE when the
# test command or `make installcheck` sets it, else the tree this module is
# in (test/perl/SyncTest.pm), e.g. under a plain `prove -I test/perl`.  Set
# in the environment too, for the test files that read it at run time.
my $tree = $ENV{SYNC_TREE};
if (!defined $tree || $tree eq '')
{
	require Cwd;
	require File::Basename;
	$tree = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/../..');
	die "cannot find the source tree from " . __FILE__ . "; set SYNC_TREE"
	  unless defined $tree && -f "$tree/sync.control";
	$ENV{SYNC_TREE} = $tree;
}

# Captured writes reach sync.outbox when they are folded (src/capture.c):
# the worker folds at each round, and whatever reads a mirror's outbox
# folds it first.  A test statement that reads sync.outbox is such a reader:
# safe_psql() and psql() run sync._fold() before any SQL that names
# sync.outbox (when the installed version has it and the role may run it),
# so a check sees every write committed before it, as the engine does.
# poll_true() and poll_query_until() do not fold (the worker must, or the
# poll would hide a worker that does not); a poll of the outbox waits for
# the capture log to be empty as well (poll_sql()).
our $no_fold = 0;
my $fold_sql = q{DO $fold$ BEGIN
  IF pg_catalog.to_regprocedure('sync._fold(integer)') IS NOT NULL AND NOT pg_catalog.pg_is_in_recovery()
     AND pg_catalog.has_function_privilege('sync._fold(integer)', 'EXECUTE') THEN
    PERFORM sync._fold();
  END IF; END $fold$;
};
sub with_fold
{
	my ($sql) = @_;
	return $sql if $no_fold || !defined $sql || ref $sql || $sql !~ /\bsync\.outbox\b/ || $sql =~ /sync\._fold/;
	return $fold_sql . $sql;
}
{
	require PostgreSQL::Test::Cluster;
	no warnings 'redefine';
	my $safe_psql = \&PostgreSQL::Test::Cluster::safe_psql;
	my $psql = \&PostgreSQL::Test::Cluster::psql;
	*PostgreSQL::Test::Cluster::safe_psql = sub {
		my ($node, $db, $sql, @rest) = @_;
		return $safe_psql->($node, $db, with_fold($sql), @rest);
	};
	*PostgreSQL::Test::Cluster::psql = sub {
		my ($node, $db, $sql, @rest) = @_;
		return $psql->($node, $db, with_fold($sql), @rest);
	};
	my $poll = \&PostgreSQL::Test::Cluster::poll_query_until;
	*PostgreSQL::Test::Cluster::poll_query_until = sub {
		my ($node, $db, $sql, @rest) = @_;
		return $poll->($node, $db, @rest ? $sql : poll_sql($sql), @rest);
	};
}

# poll_sql($sql) -> a poll's query (expecting 't'): of the outbox, also that
# the capture log is empty, so "the outbox is empty" means "all was sent".
sub poll_sql
{
	my ($sql) = @_;
	return $sql unless $sql =~ /\bsync\.outbox\b/ && $sql !~ /;/;
	return "SELECT ($sql) AND NOT EXISTS (SELECT 1 FROM sync.capture_log)";
}

# version() -> the extension's version: sync.control's default_version.
sub version
{
	open(my $fh, '<', "$tree/sync.control") or die "cannot read $tree/sync.control: $!";
	while (<$fh>)
	{
		return $1 if /^default_version\s*=\s*'([^']+)'/;
	}
	die "no default_version in $tree/sync.control";
}

# make_certs($dir) -> ($server_cert, $server_key, $ca_cert): a throwaway CA
# and a server certificate for 127.0.0.1, ::1 and localhost, signed by it.
# Each call makes a new CA, so a second call gives a "wrong CA" for tests.
sub make_certs
{
	my ($dir) = @_;
	$dir //= tempdir(CLEANUP => 1);
	if (-f "$tree/test/emulator/certs.py")
	{
		my $out = `python3 $tree/test/emulator/certs.py $dir`;
		die "certs.py failed" if $?;
		my @paths = split /\s+/, $out;
		return @paths if @paths == 3;
	}
	# fallback: the openssl CLI directly
	my $run = sub { system(@_) == 0 or die "openssl failed: @_"; };
	$run->('openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', "$dir/ca.key",
		'-out', "$dir/ca.crt", '-days', '2', '-subj', '/CN=sync test CA',
		'-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
	$run->('openssl', 'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', "$dir/server.key",
		'-out', "$dir/server.csr", '-subj', '/CN=127.0.0.1');
	open(my $ext, '>', "$dir/server.ext") or die $!;
	print $ext "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
	  . "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n";
	close $ext;
	$run->('openssl', 'x509', '-req', '-in', "$dir/server.csr", '-CA', "$dir/ca.crt", '-CAkey', "$dir/ca.key",
		'-CAcreateserial', '-out', "$dir/server.crt", '-days', '2', '-extfile', "$dir/server.ext");
	return ("$dir/server.crt", "$dir/server.key", "$dir/ca.crt");
}

# start_emulator(tls => 1, args => [...]) -> object with url, ca_file, pid
# (as hash fields and as methods), control(), requests(), stop()
sub start_emulator
{
	my (%opt) = @_;
	my $dir = tempdir(CLEANUP => 1);
	my @cmd = ('python3', "$tree/test/emulator/emulator.py", '--port', '0');
	my ($ca, $cert, $key);
	if ($opt{tls})
	{
		($cert, $key, $ca) = make_certs($dir);
		push @cmd, '--tls-cert', $cert, '--tls-key', $key;
	}
	push @cmd, @{ $opt{args} // [] };
	my $log = "$dir/emulator.log";
	# "exec": the shell becomes the emulator, so $pid is the emulator's and
	# stop() really stops it (without it, only the shell got the SIGTERM)
	my $pid = open(my $fh, '-|', 'exec ' . join(' ', map { "'$_'" } @cmd) . " 2>$log")
	  or die "cannot start the emulator: $!";
	my $line = <$fh>;
	die "emulator did not start: " . `cat $log` unless defined $line && $line =~ m{listening on (\S+)};
	my $self = bless { url => $1, pid => $pid, fh => $fh, ca_file => $ca, dir => $dir, log => $log }, __PACKAGE__;
	$self->{http} = HTTP::Tiny->new(timeout => 120,
		($ca ? (SSL_options => { SSL_ca_file => $ca }) : ()), verify_SSL => ($ca ? 1 : 0));
	return $self;
}

# control($method, $path, $json_or_undef) -> decoded JSON (or undef)
sub control
{
	my ($self, $method, $path, $body) = @_;
	my %args;
	if (defined $body)
	{
		$args{content} = encode_json($body);
		$args{headers} = { 'Content-Type' => 'application/json' };
	}
	my $res = $self->{http}->request($method, $self->{url} . $path, \%args);
	die "emulator $method $path: $res->{status} $res->{content}"
	  if $res->{status} >= 300 && $res->{status} != 404;
	return length($res->{content} // '') ? decode_json($res->{content}) : undef;
}

sub url     { return $_[0]->{url}; }
sub ca_file { return $_[0]->{ca_file}; }
sub pid     { return $_[0]->{pid}; }

# requests($api) -> the emulator's request log (array of entries)
sub requests
{
	my ($self, $api) = @_;
	return $self->control('GET', '/__emulator/requests' . ($api ? "?api=$api" : ''));
}

sub stop
{
	my ($self) = @_;
	return unless $self->{pid};
	kill 'TERM', $self->{pid};
	waitpid($self->{pid}, 0);
	$self->{pid} = undef;
}

sub DESTROY { $_[0]->stop; }

# wait_until(sub { ... }, $timeout_s): poll until the sub returns true
sub wait_until
{
	my ($cond, $timeout) = @_;
	$timeout //= 30;
	my $end = time + $timeout;
	while (time < $end)
	{
		return 1 if $cond->();
		usleep(100_000);
	}
	return $cond->();
}

# sf_connect($node, $db, $emu, $name, $extra_json) : creates a Salesforce
# connection $name (default 'sf') to the emulator, client_credentials flow.
# $extra_json: more top-level options, e.g. '"max_in_flight": 1,'.
sub sf_connect
{
	my ($node, $db, $emu, $name, $extra) = @_;
	$name //= 'sf';
	$extra //= '';
	my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
	$node->safe_psql($db, qq{SELECT sync.create_connection('$name', 'salesforce', '{
  "login_url": "$url", "ca_file": "$ca", $extra
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}')});
}

# poll_true($node, $db, $sql, $timeout_s) -> 1 when $sql returned 't' within
# $timeout_s seconds (default 30), else 0.  Unlike poll_query_until it does
# not wait the suite's 180 s default: tests for the current code's stalls
# end in bounded time.  And it survives a server in crash restart: a psql
# that exits before reading its input makes IPC::Run die of the broken pipe
# (poll_query_until after a kill -9 did), which counts as "not yet".
sub poll_true
{
	my ($node, $db, $sql, $timeout) = @_;
	my $q = poll_sql($sql);
	local $no_fold = 1;
	return wait_until(sub {
		my ($rc, $out) = eval { $node->psql($db, $q) };
		return defined $rc && $rc == 0 && defined $out && $out eq 't';
	}, $timeout // 30);
}

# sf_composite_requests($emu): the emulator's logged Salesforce sObject
# Collections requests (creates, upserts, updates), in arrival order.
sub sf_composite_requests
{
	my ($emu) = @_;
	return [ grep { $_->{path} =~ m{^/services/data/v[\d.]+/composite/sobjects/} } @{ $emu->requests('salesforce') } ];
}

# last_names($req): the LastName of each record a logged request carried
# ('' where it carried none).
sub last_names
{
	my ($req) = @_;
	return map { $_->{LastName} // '' } @{ $req->{body}{records} // [] };
}

# most_overlap($log): the most requests of @$log on the network at once,
# from the emulator's arrival and answer stamps of each ("time", "done").
sub most_overlap
{
	my ($log) = @_;
	my $most = 0;
	for my $x (@$log)
	{
		my $n = grep { $_->{time} <= $x->{time} && defined $_->{done} && $x->{time} < $_->{done} } @$log;
		$most = $n if $n > $most;
	}
	return $most;
}

# sf_retype_field($emu, $object, $field, $type): the emulator's field $field
# of $object is removed and added again with type $type (e.g. 'string'),
# keeping the stored values.  A mirror made before keeps its local column
# type, so a value the new type accepts (e.g. 'not-a-date' for a date
# column) reaches the local table as a malformed value from the remote.
sub sf_retype_field
{
	my ($emu, $object, $field, $type) = @_;
	$emu->control('DELETE', "/__emulator/salesforce/fields/$object/$field");
	$emu->control('POST', "/__emulator/salesforce/fields/$object",
		{ name => $field, type => $type, length => 255 });
}

# bayeux_requests($emu, $channel) -> the Salesforce requests of the
# emulator's log carrying a Bayeux message on that channel
# ('/meta/handshake', '/meta/connect', ...).
sub bayeux_requests
{
	my ($emu, $channel) = @_;
	return grep {
		ref $_->{body} eq 'ARRAY' && grep { ref $_ eq 'HASH' && ($_->{channel} // '') eq $channel } @{ $_->{body} }
	} @{ $emu->requests('salesforce') };
}

# subscribe_replays($emu, $channel) -> the replay IDs the Salesforce
# requests of the emulator's log subscribed to $channel from, in order
sub subscribe_replays
{
	my ($emu, $channel) = @_;
	return map { $_->{ext}{replay}{$channel} }
	  grep { ref $_ eq 'HASH' && ($_->{channel} // '') eq '/meta/subscribe' && ($_->{subscription} // '') eq $channel }
	  map { @{ $_->{body} } } bayeux_requests($emu, '/meta/subscribe');
}

# request_mentions($emu, $api, $needle) -> the request-log entries whose
# path, query (raw and percent-decoded) or body contains $needle.
sub request_mentions
{
	my ($emu, $api, $needle) = @_;
	my @hits;
	for my $r (@{ $emu->requests($api) })
	{
		my $q = $r->{query} // '';
		(my $dq = $q) =~ s/\+/ /g;
		$dq =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
		(my $dp = $r->{path} // '') =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
		my $body = ref $r->{body} ? JSON::PP->new->canonical->encode($r->{body}) : ($r->{body} // '');
		push @hits, $r
		  if index($r->{path} // '', $needle) >= 0 || index($dp, $needle) >= 0
		  || index($q, $needle) >= 0 || index($dq, $needle) >= 0 || index($body, $needle) >= 0;
	}
	return @hits;
}

1;
