# Hostile input from SQL, the cases that need a remote (issue 14): unknown
# remote objects and fields, huge field lists, path tricks in object names,
# tables in another schema or owned by another role, duplicate mirrors.
# Each call must fail with a clear error and a proper SQLSTATE (not XX000,
# no crash) and leave sync's catalog, the tables and the triggers as they
# were.  The cases without a remote are in sql/hostile_input.sql.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('hostile');
$node->init;
$node->start;
my $db = 'postgres';
my $url = $emu->{url};
my $ca = $emu->{ca_file};
sub sq { return $node->safe_psql($db, $_[0]); }

sq(qq{CREATE EXTENSION sync; CREATE SCHEMA crm;
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "$url", "ca_file": "$ca",
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
CREATE ROLE other_owner; CREATE ROLE delegate LOGIN;
CREATE SCHEMA other AUTHORIZATION other_owner;
CREATE TABLE other.contact (id bigint PRIMARY KEY, remote_id text UNIQUE, last_name text,
                            remote_modified_at timestamptz);
ALTER TABLE other.contact OWNER TO other_owner;
GRANT USAGE ON SCHEMA sync TO delegate;
GRANT CREATE, USAGE ON SCHEMA crm TO delegate;
GRANT USAGE ON SCHEMA other TO delegate;
GRANT EXECUTE ON FUNCTION sync.mirror(text, text, text, text[], text, jsonb), sync.unmirror(regclass, boolean),
    sync.remote_fields(text, text), sync._check_mirror(text, text, jsonb), sync._check_mirror_options(jsonb),
    sync._check_mirror_fields(text, text[]), sync._install_triggers(int), sync._drop_triggers(regclass)
    TO delegate;
GRANT SELECT ON sync.connection TO delegate;
GRANT SELECT, INSERT, DELETE ON sync.mirror, sync.field, sync.mirror_state, sync.outbox TO delegate;
GRANT USAGE ON SEQUENCE sync.mirror_id_seq TO delegate;});

# everything a failed call could leave behind
my $fingerprint = q{SELECT md5(concat_ws('|',
  (SELECT string_agg(format('%s %s %s', m.id, m.local_table, m.options), ',' ORDER BY m.id) FROM sync.mirror m),
  (SELECT count(*) FROM sync.field), (SELECT count(*) FROM sync.mirror_state), (SELECT count(*) FROM sync.outbox),
  (SELECT string_agg(c.oid::regclass::text, ',' ORDER BY c.oid) FROM pg_class c
    WHERE c.relnamespace IN ('crm'::regnamespace, 'other'::regnamespace, 'public'::regnamespace)),
  (SELECT string_agg(t.tgname || ' ' || t.tgrelid::regclass::text, ',' ORDER BY 1) FROM pg_trigger t
    WHERE NOT t.tgisinternal)))};

my $tried = 0;

# hostile($name, $sql, $error_re, $sqlstate_re, %opt): the call fails with a
# matching message and SQLSTATE, and nothing changed
sub hostile
{
	my ($name, $sql, $error_re, $state_re, %opt) = @_;
	my $before = sq($fingerprint);
	my ($rc, $out, $err) = $node->psql($db, "\\set VERBOSITY verbose\n$sql",
		$opt{as} ? (extra_params => [ '-U', $opt{as} ]) : ());
	$tried++;
	my ($state) = $err =~ /ERROR:  ([0-9A-Z]{5}):/;
	$state //= 'none';
	ok($rc != 0 && $err =~ $error_re && $state =~ $state_re && $state ne 'XX000',
		"$name: refused ($state)")
	  or diag("rc $rc, stderr: $err");
	is(sq($fingerprint), $before, "$name: nothing created or changed");
}

hostile('unknown remote object', q{SELECT sync.mirror('sf', 'NoSuchObject', 'crm.x')},
	qr/NoSuchObject/, qr/^(42704|22023|08006)$/);
hostile('unknown remote object (lower case)', q{SELECT * FROM sync.remote_fields('sf', 'nosuchobject')},
	qr/nosuchobject/i, qr/^(42704|22023|08006)$/);
hostile('object name with a path', q{SELECT * FROM sync.remote_fields('sf', '../sobjects/Contact')},
	qr/sobjects|Contact/, qr/^(42704|22023|08006)$/);
hostile('object name with a query string', q{SELECT * FROM sync.remote_fields('sf', 'Contact/describe?x=1')},
	qr/Contact/, qr/^(42704|22023|08006)$/);
hostile('unknown field', q{SELECT sync.mirror('sf', 'Contact', 'crm.c', fields => ARRAY['LastName', 'NoSuchField__c'])},
	qr/Contact has no field NoSuchField__c/, qr/^42703$/);
hostile('5000 unknown fields', q{SELECT sync.mirror('sf', 'Contact', 'crm.c',
	fields => (SELECT array_agg('F' || i || '__c') FROM generate_series(1, 5000) i))},
	qr/Contact has no field .* \(and 4990 more\)/, qr/^42703$/);
hostile('100000 fields', q{SELECT sync.mirror('sf', 'Contact', 'crm.c',
	fields => (SELECT array_agg('F' || i) FROM generate_series(1, 100000) i))},
	qr/100000 fields requested, at most 10000/, qr/^54000$/);
hostile('a compound field', q{SELECT sync.mirror('sf', 'Contact', 'crm.c', fields => ARRAY['MailingAddress'])},
	qr/MailingAddress/, qr/^(0A000|42703)$/);
hostile('unknown authority field', q{SELECT sync.mirror('sf', 'Contact', 'crm.c', options => '{"authority": {"Nope__c": "local"}}')},
	qr/authority.*Nope__c/, qr/^22023$/);
hostile('unknown idempotency field', q{SELECT sync.mirror('sf', 'Contact', 'crm.c', options => '{"idempotency_field": "Nope__c"}')},
	qr/Nope__c/, qr/^(22023|42703)$/);
hostile('a filter the remote rejects', q{SELECT sync.mirror('sf', 'Contact', 'crm.c', options => '{"filter": "LastName = "}')},
	qr/filter/i, qr/^(22023|42601)$/);
hostile('a filter smuggling a clause', q{SELECT sync.mirror('sf', 'Contact', 'crm.c', options => '{"filter": "LastName = ''x'' ORDER BY Id LIMIT 1"}')},
	qr/filter/i, qr/^(22023|42601)$/);

# an existing table of the wrong shape, then one owned by another role
sq(q{CREATE TABLE crm.wrong (id int PRIMARY KEY, last_name int)});
hostile('adopting a table of the wrong shape', q{SELECT sync.mirror('sf', 'Contact', 'crm.wrong', fields => ARRAY['LastName'])},
	qr/cannot adopt table crm.wrong/, qr/^(42P16|42804)$/);
hostile('a table in another role\'s schema, not owned', q{SELECT sync.mirror('sf', 'Contact', 'other.contact', fields => ARRAY['LastName'])},
	qr/must be owner|permission denied/, qr/^42501$/, as => 'delegate');
hostile('a new table in another role\'s schema', q{SELECT sync.mirror('sf', 'Contact', 'other.newtable', fields => ARRAY['LastName'])},
	qr/permission denied for schema other/, qr/^42501$/, as => 'delegate');

# a mirror that exists: duplicates and other roles
sq(q{SELECT sync.mirror('sf', 'Contact', 'other.contact', fields => ARRAY['LastName'])});
hostile('mirroring a mirrored table again', q{SELECT sync.mirror('sf', 'Contact', 'other.contact', fields => ARRAY['LastName'])},
	qr/already mirrored/, qr/^42710$/);
hostile('unmirroring another role\'s table', q{SELECT sync.unmirror('other.contact')},
	qr/must be owner|permission denied/, qr/^42501$/, as => 'delegate');
hostile('dropping another role\'s table through unmirror', q{SELECT sync.unmirror('other.contact', drop_table => true)},
	qr/must be owner|permission denied/, qr/^42501$/, as => 'delegate');

# the server survived all of it
is(sq('SELECT 1'), '1', 'the server is up');
unlike(slurp_file($node->logfile), qr/terminated by signal|server process .* was terminated/, 'no backend crashed');
note("hostile SQL inputs tried against the emulator: $tried");
$node->stop;
done_testing();
