# Secrets given as files (issue 14, item 5): a connection whose secrets are
# *_file options authenticates against the Salesforce emulator, and the
# secret never reaches SQL text: not the statement log, not
# pg_stat_activity, not sync.connections, not an error.  A rewritten file
# is read again at the next use; a missing one gives a clear error; files
# outside sync.secret_directory and roles without pg_read_server_files are
# refused.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Copy;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('secrets');
$node->init;
my $secrets = $node->basedir . '/secrets';
mkdir $secrets or die "$secrets: $!";
chmod 0700, $secrets;
$node->append_conf('postgresql.conf', qq{
log_statement = 'all'
log_min_error_statement = error
sync.secret_directory = '$secrets'
});
$node->start;
my $db = 'postgres';
$node->safe_psql($db, 'CREATE EXTENSION sync');

sub sq { return $node->safe_psql($db, $_[0]); }
sub write_file
{
	my ($path, $content) = @_;
	my $tmp = "$path.tmp";
	open(my $fh, '>', $tmp) or die "$tmp: $!";
	print $fh $content;
	close $fh;
	chmod 0600, $tmp;
	rename $tmp, $path or die "rename $tmp: $!";    # atomic, as rotation should be
}

my $url = $emu->{url};
my $ca = $emu->{ca_file};
my $secret = 'sync-secret';    # what the emulator accepts
write_file("$secrets/sf.secret", "$secret\n");
# the secret as SQL that does not spell it (the log is searched for it below)
my $secret_sql = "convert_from(decode('" . unpack('H*', $secret) . "', 'hex'), 'UTF8')";

my $opts = qq{"login_url": "$url", "ca_file": "$ca"};
sq(qq{SELECT sync.create_connection('sf', 'salesforce', '{$opts,
  "auth": {"type": "client_credentials", "client_id": "sync-client",
           "client_secret_file": "$secrets/sf.secret"}}')});
like(sq("SELECT sync.test_connection('sf')"), qr/"instance_url": "\Q$url\E"/,
	'client_secret_file: the secret read from the file authenticates');

# what the database shows: the path, never the content
is(sq("SELECT options->'auth'->>'client_secret_file' FROM sync.connections WHERE name = 'sf'"),
	"$secrets/sf.secret", 'sync.connections shows the path of the secret file');
is(sq("SELECT secret_keys::text FROM sync.connections WHERE name = 'sf'"), '{}',
	'no secret is stored in sync.connection_secret');
is(sq("SELECT count(*) FROM sync.connection c JOIN sync.connection_secret s ON s.connection = c.name
        WHERE strpos(c.options::text || s.secrets::text, $secret_sql) > 0"), '0',
	'the secret is in neither catalog table');

# a session that is configuring connections: pg_stat_activity shows its
# last statement to every member of pg_read_all_stats
my $canary = 'literal-canary-7b1e';
my $bg = $node->background_psql($db, on_error_stop => 0);
$bg->query_safe(qq{SELECT sync.create_connection('lit', 'salesforce', '{$opts,
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "$canary"}}')});
is(sq("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%$canary%' AND pid <> pg_backend_pid()"), '1',
	'a literal secret is in pg_stat_activity (so the next check can fail)');
$bg->query_safe(qq{SELECT sync.alter_connection('sf', '{"auth": {"type": "client_credentials",
  "client_id": "sync-client", "client_secret_file": "$secrets/sf.secret"}}')});
is(sq("SELECT count(*) FROM pg_stat_activity WHERE (strpos(query, $secret_sql) > 0 OR query LIKE '%$canary%')
        AND pid <> pg_backend_pid()"), '0',
	'a secret given as a file never is');

my ($rc, $out, $err) = $node->psql($db, qq{SELECT sync.create_connection('Bad Name', 'salesforce', '{$opts,
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "$canary"}}')});
like($err, qr/invalid connection name/, 'a failed create_connection with a literal secret fails');
unlike($err, qr/\Q$canary\E/, 'its error message does not echo the literal secret');
($rc, $out, $err) = $node->psql($db, qq{SELECT sync.create_connection('lit2', 'salesforce', '{$opts,
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "$canary"}, "colour": 1}')});
like($err, qr/unknown Salesforce connection option "colour"/, 'an option error with a literal secret');
unlike($err, qr/\Q$canary\E/, 'does not echo the literal secret either');

# a rewritten file is read at the next use, in the same backend
write_file("$secrets/other.secret", "wrong-secret\n");
my $res = $bg->query_safe(qq{
	SELECT sync.test_connection('sf') ? 'instance_url';
});
like($res, qr/t/, 'the long-lived session authenticates with the file');
write_file("$secrets/sf.secret", "wrong-secret\n");
($res) = $bg->query(qq{SELECT sync.test_connection('sf')});
like($bg->{stderr}, qr/connection "sf": Salesforce refused the client_credentials grant/,
	'after the file is rewritten, the same session uses the new content');
unlike($bg->{stderr}, qr/wrong-secret/, 'the refused secret is not in the error');
$bg->{stderr} = '';
write_file("$secrets/sf.secret", "$secret\r\n");
like($bg->query_safe("SELECT sync.test_connection('sf') ? 'instance_url'"), qr/t/,
	'rotated back (CRLF trimmed): authenticates again without touching the catalog');

# a missing file: a clear error naming the connection, option and path
unlink "$secrets/sf.secret";
($rc, $out, $err) = $node->psql($db, "SELECT sync.test_connection('sf')");
like($err, qr/connection "sf": could not open "auth.client_secret_file" file "\Q$secrets\E\/sf.secret": No such file or directory/,
	'a missing secret file: the error names the connection, option and path');
write_file("$secrets/sf.secret", "$secret\n");

# jwt_bearer with the private key in a file (a PEM with its trailing newline)
copy("$ENV{SYNC_TREE}/test/emulator/keys/sf-jwt-test.key", "$secrets/jwt.key") or die "copy: $!";
sq(qq{SELECT sync.create_connection('sfjwt', 'salesforce', '{$opts,
  "auth": {"type": "jwt_bearer", "client_id": "sync-client", "username": "sync\@example.com",
           "private_key_file": "$secrets/jwt.key"}}')});
like(sq("SELECT sync.test_connection('sfjwt')"), qr/"instance_url": "\Q$url\E"/,
	'private_key_file: a JWT signed with the key from the file is accepted');

# sync.secret_directory confines the files
my $outside = $node->basedir . '/outside.secret';
write_file($outside, "$secret\n");
($rc, $out, $err) = $node->psql($db, qq{SELECT sync.create_connection('out', 'salesforce', '{$opts,
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret_file": "$outside"}}')});
like($err, qr/"auth.client_secret_file" file "\Q$outside\E" is outside sync.secret_directory/,
	'a file outside sync.secret_directory is refused');
symlink($outside, "$secrets/link.secret") or die "symlink: $!";
($rc, $out, $err) = $node->psql($db, qq{SELECT sync.create_connection('out', 'salesforce', '{$opts,
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret_file": "$secrets/link.secret"}}')});
like($err, qr/is outside sync.secret_directory/, 'a symbolic link out of sync.secret_directory is refused too');

# a role trusted with connections but not with server files
sq(q{CREATE ROLE delegate LOGIN;
	GRANT USAGE ON SCHEMA sync TO delegate;
	GRANT EXECUTE ON FUNCTION sync.create_connection(text, text, jsonb), sync.alter_connection(text, jsonb),
	    sync._check_connection(text, text, jsonb, jsonb), sync._deep_merge(jsonb, jsonb) TO delegate;
	GRANT SELECT, INSERT, UPDATE ON sync.connection, sync.connection_secret TO delegate;});
($rc, $out, $err) = $node->psql($db, qq{SELECT sync.create_connection('theirs', 'salesforce', '{$opts,
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret_file": "$secrets/sf.secret"}}')},
	extra_params => [ '-U', 'delegate' ]);
like($err, qr/permission denied to set connection option "auth.client_secret_file"/,
	'without pg_read_server_files a role cannot set a secret file');
is(sq("SELECT count(*) FROM sync.connection WHERE name = 'theirs'"), '0', 'and nothing was created');
($rc, $out, $err) = $node->psql($db, qq{SELECT sync.alter_connection('sf', '{"auth": {"type": "client_credentials",
  "client_id": "sync-client", "client_secret_file": "$secrets/jwt.key"}}')}, extra_params => [ '-U', 'delegate' ]);
like($err, qr/permission denied to set connection option "auth.client_secret_file"/,
	'nor point an existing connection at another file');
($rc, $out, $err) = $node->psql($db, q{SELECT sync.alter_connection('sf', '{"max_in_flight": 3}')},
	extra_params => [ '-U', 'delegate' ]);
is($rc, 0, 'but may change other options of a connection whose file a privileged role set');
sq('GRANT pg_read_server_files TO delegate');
($rc, $out, $err) = $node->psql($db, qq{SELECT sync.create_connection('theirs', 'salesforce', '{$opts,
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret_file": "$secrets/sf.secret"}}')},
	extra_params => [ '-U', 'delegate' ]);
is($rc, 0, 'a member of pg_read_server_files may set a secret file');

$bg->quit;

# the server log: every statement was logged, the file secrets never were
my $log = slurp_file($node->logfile);
like($log, qr/\Q$canary\E/, 'the statement log shows a literal secret (so the next check can fail)');
unlike($log, qr/\Q$secret\E/, 'the statement log never shows a secret given as a file');
unlike($log, qr/PRIVATE KEY/, 'nor the private key read from a file');

$node->stop;
done_testing();
