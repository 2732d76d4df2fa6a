# The extension upgrades in place.  A database made with each released
# version (the frozen sync--<version>.sql), holding a connection, a mirror
# with backfilled rows and queued local writes, is updated with ALTER
# EXTENSION sync UPDATE; then
#   (a) its sync schema is identical to a fresh install of the current
#       version (pg_dump --schema-only), and
#   (b) it keeps syncing: the writes queued before the update reach the
#       remote, new writes are captured and pushed, remote edits arrive.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $current = SyncTest::version();
my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->start;
sub sq { my ($db, $sql) = @_; return $node->safe_psql($db, $sql); }

# (the current version's script is built from src/sql; the others are frozen)
my @released = sort grep { $_ ne $current } map { /sync--([0-9.]+)\.sql$/ ? $1 : () }
	glob("$ENV{SYNC_TREE}/sync--*.sql");
ok(scalar(grep { $_ eq '0.1' } @released) && scalar(grep { $_ eq '0.2' } @released),
	'the released install scripts (0.1, 0.2) are kept (frozen)');

# pg_dump leaves out an extension's member objects, so dump a copy of the
# database in which they were detached from the extension.
sub schema_of
{
	my ($db) = @_;
	my $copy = "${db}_detached";
	$node->safe_psql('postgres', "CREATE DATABASE $copy TEMPLATE $db");
	sq($copy, q{DO $$ DECLARE o record; BEGIN
	  FOR o IN SELECT i.type, i.identity FROM pg_depend d
	             CROSS JOIN LATERAL pg_identify_object(d.classid, d.objid, d.objsubid) i
	            WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
	              AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'sync') LOOP
	    EXECUTE format('ALTER EXTENSION sync DROP %s %s', o.type, o.identity);
	  END LOOP; END $$});
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'pg_dump', '--schema-only', '--schema=sync', '--no-owner', '-d', $node->connstr($copy) ],
		'>', \$out, '2>', \$err) or die "pg_dump $db failed: $err";
	$out =~ s/^--.*\n//mg;
	$out =~ s/^\\(un)?restrict .*\n//mg;    # a random key per dump
	return $out;
}
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
sq('fresh', 'CREATE EXTENSION sync');
my $fresh_schema = schema_of('fresh');
ok(length($fresh_schema) > 1000, 'pg_dump of a fresh install is not empty');

for my $v (@released)
{
	my $old = 'from_' . ($v =~ s/\./_/gr);
	$emu->control('POST', '/__emulator/reset');
	my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
	$emu->control('POST', '/__emulator/records/salesforce/Contact',
		[ map { { FirstName => "F$_", LastName => "L$_", Email => "c$_\@example.com" } } 1 .. 20 ]);

	$node->safe_psql('postgres', "CREATE DATABASE $old");
	sq($old, qq{CREATE EXTENSION sync VERSION '$v'; CREATE SCHEMA crm;});
	is(sq($old, q{SELECT extversion FROM pg_extension WHERE extname = 'sync'}), $v, "installed as $v");
	sq($old, qq{SELECT sync.create_connection('sf', 'salesforce', '{
	  "login_url": "$url", "ca_file": "$ca",
	  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}')});
	sq($old, q{SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName','Email'])});
	# (the library is already the new one: under $v only the $v SQL and the
	# capture trigger run; sync.pull() refuses until the update, see below)
	my ($r3) = grep { $_->{LastName} eq 'L3' } @{ $emu->control('GET', '/__emulator/records/salesforce/Contact') };
	sq($old, qq{INSERT INTO crm.contact (remote_id, first_name, last_name, email)
	  VALUES ('$r3->{Id}', 'QueuedBefore', 'L3', 'c3\@example.com')});
	sq($old, q{INSERT INTO crm.contact (first_name, last_name, email) VALUES ('New', 'BeforeUpdate', 'n@example.com')});
	is(sq($old, q{SELECT count(*) FROM sync.outbox}), '2', "two writes queued under $v");
	my ($ok, $out, $err) = $node->psql($old, q{SELECT sync.pull('crm.contact')});
	like($err, qr/extension "sync" is at version \Q$v\E in this database, but its library is version \Q$current\E.*ALTER EXTENSION sync UPDATE/s,
		"before the update, the new library refuses to sync a $v schema and says what to do");

	# the update path from $v reaches the current version
	sq($old, 'ALTER EXTENSION sync UPDATE');
	is(sq($old, q{SELECT extversion FROM pg_extension WHERE extname = 'sync'}), $current,
		"ALTER EXTENSION sync UPDATE reaches $current");

	# (a) the same schema as a fresh install
	my ($updated, $fresh) = (schema_of($old), $fresh_schema);
	if ($updated eq $fresh)
	{
		pass('the updated sync schema is identical to a fresh install of ' . $current . " (from $v)");
	}
	else
	{
		my $dir = $node->basedir;
		open(my $a, '>', "$dir/updated.sql") or die; print $a $updated; close $a;
		open(my $b, '>', "$dir/fresh.sql") or die; print $b $fresh; close $b;
		my $diff = `diff -u $dir/fresh.sql $dir/updated.sql | head -80`;
		fail('the updated sync schema is identical to a fresh install of ' . $current . " (from $v)");
		diag("fresh install (-) vs updated (+):\n$diff");
	}

	# (b) nothing queued before the update is lost, and syncing goes on
	my $r = sq($old, q{SELECT sync.push('crm.contact')});
	like($r, qr/"sent": 2/, "both writes queued under $v are pushed after the update");
	sq($old, q{SELECT sync.pull('crm.contact')});
	is(sq($old, 'SELECT count(*) FROM crm.contact'), '21', 'the backfill after the update brings the other records');
	my $rid3 = sq($old, q{SELECT remote_id FROM crm.contact WHERE last_name = 'L3'});
	is($emu->control('GET', "/__emulator/records/salesforce/Contact/$rid3")->{FirstName}, 'QueuedBefore',
		'the queued update reached the remote');
	my $newid = sq($old, q{SELECT remote_id FROM crm.contact WHERE last_name = 'BeforeUpdate'});
	ok($newid ne '', 'the queued insert was created remotely and got its remote ID');
	sq($old, q{UPDATE crm.contact SET email = 'after@example.com' WHERE last_name = 'L4'});
	like(sq($old, q{SELECT sync.push('crm.contact')}), qr/"sent": 1/, 'a write after the update is captured and pushed');
	my $rid5 = sq($old, q{SELECT remote_id FROM crm.contact WHERE last_name = 'L5'});
	$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$rid5", { FirstName => 'RemoteAfter' });
	sq($old, q{SELECT sync.pull('crm.contact')});
	is(sq($old, q{SELECT first_name FROM crm.contact WHERE last_name = 'L5'}), 'RemoteAfter',
		'a remote edit arrives by an incremental pull after the update');
}

$node->stop;
done_testing();
