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

my $tree = $ENV{SYNC_TREE} or die "SYNC_TREE is not set (run through test/run.sh)";

# start_emulator(tls => 1, args => [...]) -> object with url, ca_file, pid
sub start_emulator
{
	my (%opt) = @_;
	my $dir = tempdir(CLEANUP => 1);
	my @cmd = ('python3', "$tree/test/emulator/emulator.py", '--port', '0');
	my ($ca, $cert, $key);
	if ($opt{tls})
	{
		my $out = `python3 $tree/test/emulator/certs.py $dir`;
		die "certs.py failed" if $?;
		($cert, $key, $ca) = split /\s+/, $out;
		push @cmd, '--tls-cert', $cert, '--tls-key', $key;
	}
	push @cmd, @{ $opt{args} // [] };
	my $log = "$dir/emulator.log";
	my $pid = open(my $fh, '-|', join(' ', map { "'$_'" } @cmd) . " 2>$log")
	  or die "cannot start the emulator: $!";
	my $line = <$fh>;
	die "emulator did not start: " . `cat $log` unless defined $line && $line =~ m{listening on (\S+)};
	my $self = bless { url => $1, pid => $pid, fh => $fh, ca_file => $ca, dir => $dir, log => $log }, __PACKAGE__;
	$self->{http} = HTTP::Tiny->new(timeout => 30,
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

1;
