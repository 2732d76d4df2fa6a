# Issue 14, item 6: one inbound record the local table rejects must not stop
# the mirror's pull.  Each scenario is a page of several remote Contacts of
# which exactly one is bad (the table refuses it, or its value is malformed);
# the others are applied, the bad one is shown in sync.errors (direction
# 'in', its remote ID, the SQLSTATE and the table's own error text), the
# cursor advances (a later remote change arrives), and after the user fixes
# the table (or the remote fixes the value) sync.retry() + the next pull
# bring the record in.  Function mode (sync.pull()) for every case, then the
# CHECK case again through the background worker.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('poison_in');
$node->init;
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }

# a query that may fail on the current code: its output, or '' on error
sub q_or_empty
{
	my ($sql) = @_;
	my ($rc, $out, $err) = $node->psql($db, $sql);
	diag("query failed: $sql\n$err") if $rc != 0;
	return $rc == 0 ? $out : '';
}

sq('CREATE EXTENSION sync; CREATE SCHEMA crm;');
SyncTest::sf_connect($node, $db, $emu, 'sf');

# a custom double field, present when the numeric scenario mirrors it
$emu->control('POST', '/__emulator/salesforce/fields/Contact',
	{ name => 'Score__c', type => 'double', precision => 18, scale => 2 });

# One scenario: table $s{table}, remote Contacts whose LastName starts with
# $s{prefix} (the mirror's filter keeps the scenarios apart).
sub scenario
{
	my (%s) = @_;
	my ($name, $t, $p) = @s{qw(name table prefix)};
	my $fields = join ',', map { "'$_'" } @{ $s{fields} // [qw(FirstName LastName Email)] };

	sq($s{create_sql}) if $s{create_sql};
	sq(qq{SELECT sync.mirror('sf', 'Contact', '$t', fields => ARRAY[$fields],
	        options => '{"filter": "LastName LIKE ''$p%''"}')});
	sq($s{after_mirror}) if $s{after_mirror};
	$s{before_seed}->() if $s{before_seed};

	# four good records around one bad one, in one page
	my @good = map { { FirstName => "G$_", LastName => "${p}Good$_", Email => "g$_." . lc($p) . '@example.com',
						%{ $s{good_extra} // {} } } } 1 .. 4;
	my $bad = { FirstName => 'B', LastName => "${p}Bad", Email => 'b.' . lc($p) . '@example.com', %{ $s{bad} } };
	my $ids = $emu->control('POST', '/__emulator/records/salesforce/Contact', [ @good[0, 1], $bad, @good[2, 3] ]);
	my ($g1, $g2, $badid) = @{ $ids->{ids} }[ 0, 1, 2 ];

	my ($rc, $out, $err) = $node->psql($db, "SELECT sync.pull('$t')");
	is($rc, 0, "$name: the pull does not fail because of one rejected record") or diag($err);
	like($out // '', qr/"failed": 1\b/, "$name: the pull's result counts one failed record");
	is(sq("SELECT count(*) FROM $t WHERE last_name LIKE '${p}Good%'"), '4',
		"$name: the other four records of the page were applied");
	is(sq("SELECT count(*) FROM $t WHERE remote_id = '$badid'"), '0', "$name: the rejected record was skipped");

	my $e = q_or_empty("SELECT direction, operation, coalesce(local_key, '-'), error_code, attempts
	                      FROM sync.errors WHERE local_table = '$t'::regclass AND remote_id = '$badid'");
	my ($dir, $op, $lk, $code, $attempts) = split /\|/, $e;
	is($dir // '', 'in', "$name: sync.errors shows the record with direction 'in'");
	is($op // '', 'insert', "$name: ... operation 'insert'");
	is($lk // '', '-', "$name: ... local_key NULL (no local row holds that remote ID)");
	like($code // '', $s{code}, "$name: ... error_code is the SQLSTATE");
	is($attempts // '', '1', "$name: ... attempts 1");
	like(q_or_empty("SELECT error_message FROM sync.errors WHERE remote_id = '$badid'"), $s{message},
		"$name: ... error_message is the table's own error text");

	# a later remote change to another record arrives: the cursor advanced
	$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$g2", { FirstName => 'Later' });
	($rc, $out, $err) = $node->psql($db, "SELECT sync.pull('$t')");
	is(sq("SELECT first_name FROM $t WHERE remote_id = '$g2'"), 'Later',
		"$name: a later remote change to another record arrives");

	# the fix, then sync.retry re-fetches the record and the next pull applies it
	sq($s{fix_sql}) if $s{fix_sql};
	$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$badid", $s{remote_fix}) if $s{remote_fix};
	is(q_or_empty("SELECT sync.retry('$t')"), '1', "$name: sync.retry counts the inbound failure it requeued");
	($rc, $out, $err) = $node->psql($db, "SELECT sync.pull('$t')");
	is($rc, 0, "$name: the pull after the fix succeeds") or diag($err);
	is(sq("SELECT count(*) FROM $t WHERE remote_id = '$badid' AND $s{arrived}"), '1',
		"$name: after the fix and sync.retry the record arrived");
	is(q_or_empty("SELECT count(*) FROM sync.errors WHERE remote_id = '$badid'"), '0',
		"$name: it left sync.errors");
	return ($g1, $badid);
}

scenario(
	name => 'CHECK constraint',
	table => 'crm.c_check',
	prefix => 'Chk',
	after_mirror => q{ALTER TABLE crm.c_check ADD CONSTRAINT contact_email_check CHECK (email NOT LIKE '%@bad.example')},
	bad => { Email => 'refused@bad.example' },
	code => qr/^23514$/,
	message => qr/violates check constraint "contact_email_check"/,
	fix_sql => 'ALTER TABLE crm.c_check DROP CONSTRAINT contact_email_check',
	arrived => q{email = 'refused@bad.example'});

scenario(
	name => 'value too long for an adopted varchar(10)',
	table => 'crm.c_varchar',
	prefix => 'Vch',
	create_sql => q{CREATE TABLE crm.c_varchar (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	    remote_id text UNIQUE, email text, first_name varchar(10), last_name text, remote_modified_at timestamptz)},
	bad => { FirstName => 'Bartholomew-Maximilian' },
	code => qr/^22001$/,
	message => qr/value too long for type character varying\(10\)/,
	fix_sql => 'ALTER TABLE crm.c_varchar ALTER COLUMN first_name TYPE varchar(100)',
	arrived => q{first_name = 'Bartholomew-Maximilian'});

scenario(
	name => 'NOT NULL violation',
	table => 'crm.c_notnull',
	prefix => 'Nn',
	after_mirror => 'ALTER TABLE crm.c_notnull ALTER COLUMN email SET NOT NULL',
	bad => { Email => undef },
	code => qr/^23502$/,
	message => qr/null value in column "email"/,
	fix_sql => 'ALTER TABLE crm.c_notnull ALTER COLUMN email DROP NOT NULL',
	arrived => 'email IS NULL');

scenario(
	name => 'UNIQUE violation',
	table => 'crm.c_unique',
	prefix => 'Unq',
	after_mirror => 'CREATE UNIQUE INDEX c_unique_email ON crm.c_unique (email)',
	bad => { Email => 'g1.unq@example.com' },    # the email of the first good record
	code => qr/^23505$/,
	message => qr/duplicate key value violates unique constraint "c_unique_email"/,
	fix_sql => 'DROP INDEX crm.c_unique_email',
	arrived => q{email = 'g1.unq@example.com'});
is(sq(q{SELECT count(*) FROM crm.c_unique WHERE email = 'g1.unq@example.com'}), '2',
	'UNIQUE violation: both records with the same email are there after the fix');

scenario(
	name => 'a BEFORE trigger that RAISEs',
	table => 'crm.c_trigger',
	prefix => 'Trg',
	after_mirror => q{
	    CREATE FUNCTION crm.refuse_some() RETURNS trigger LANGUAGE plpgsql AS $$
	    BEGIN
	        IF NEW.first_name = 'Refuse' THEN
	            RAISE EXCEPTION 'refused by the trigger: %', NEW.last_name;
	        END IF;
	        RETURN NEW;
	    END $$;
	    CREATE TRIGGER refuse_some BEFORE INSERT OR UPDATE ON crm.c_trigger
	        FOR EACH ROW EXECUTE FUNCTION crm.refuse_some();},
	bad => { FirstName => 'Refuse' },
	code => qr/^P0001$/,
	message => qr/refused by the trigger: TrgBad/,
	fix_sql => 'DROP TRIGGER refuse_some ON crm.c_trigger',
	arrived => q{first_name = 'Refuse'});

# malformed values from the remote: the emulator validates what its control
# API stores, so the field is given a string type after the mirror took its
# column type from the describe (date / double); the remote then serves
# values the local type cannot hold
scenario(
	name => 'an unparseable date from the remote',
	table => 'crm.c_date',
	prefix => 'Dat',
	fields => [qw(FirstName LastName Email Birthdate)],
	before_seed => sub { SyncTest::sf_retype_field($emu, 'Contact', 'Birthdate', 'string') },
	good_extra => { Birthdate => '1990-01-02' },
	bad => { Birthdate => 'not-a-date' },
	code => qr/^2200[78]$/,
	message => qr/invalid input syntax for type date|date\/time field value out of range/,
	remote_fix => { Birthdate => '1991-02-03' },
	arrived => q{birthdate = '1991-02-03'});

scenario(
	name => '1e400000 in a double field',
	table => 'crm.c_number',
	prefix => 'Num',
	fields => [qw(FirstName LastName Email Score__c)],
	before_seed => sub { SyncTest::sf_retype_field($emu, 'Contact', 'Score__c', 'string') },
	good_extra => { Score__c => '1.5' },
	bad => { Score__c => '1e400000' },
	code => qr/^22003$/,
	message => qr/out of range|overflows numeric format/,
	remote_fix => { Score__c => '42' },
	arrived => 'score__c = 42');

scenario(
	name => 'a NUL character in a string',
	table => 'crm.c_nul',
	prefix => 'Nul',
	bad => { FirstName => "ab\x{0}cd" },
	code => qr/^22(021|P05)$/,
	message => qr/0x00|\\u0000|null character|NUL/i,
	remote_fix => { FirstName => 'abcd' },
	arrived => q{first_name = 'abcd'});

# --- the background worker: the CHECK case again, without sync.pull() ---
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
});
$node->restart;
sq(q{CREATE TABLE crm.w_check (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
       remote_id text UNIQUE, email text CONSTRAINT w_check_email CHECK (email NOT LIKE '%@bad.example'),
       first_name text, last_name text, remote_modified_at timestamptz)});
my $ids = $emu->control('POST', '/__emulator/records/salesforce/Contact', [
	(map { { FirstName => "W$_", LastName => "WrkGood$_", Email => "w$_\@example.com" } } 1 .. 2),
	{ FirstName => 'WB', LastName => 'WrkBad', Email => 'w@bad.example' },
	(map { { FirstName => "W$_", LastName => "WrkGood$_", Email => "w$_\@example.com" } } 3 .. 4) ]);
my ($w2, $wbad) = @{ $ids->{ids} }[ 1, 2 ];
sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.w_check', fields => ARRAY['FirstName','LastName','Email'],
        options => '{"filter": "LastName LIKE ''Wrk%''", "pull_interval": "1 second"}')});
my $ok = SyncTest::poll_true($node, $db, "SELECT count(*) = 4 FROM crm.w_check", 20);
ok($ok, 'worker: the four good records of the page were applied');
# once the worker is seen stalled, the remaining waits are short: they fail anyway
my $wait = $ok ? 20 : 3;
ok(SyncTest::poll_true($node, $db,
	"SELECT count(*) = 1 FROM sync.errors WHERE remote_id = '$wbad' AND direction = 'in' AND error_code = '23514'", $wait),
	'worker: the rejected record is in sync.errors (direction in, 23514)');
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$w2", { FirstName => 'WorkerLater' });
ok(SyncTest::poll_true($node, $db, "SELECT first_name = 'WorkerLater' FROM crm.w_check WHERE remote_id = '$w2'", $wait),
	'worker: a later remote change to another record arrives');
sq('ALTER TABLE crm.w_check DROP CONSTRAINT w_check_email');
q_or_empty("SELECT sync.retry('crm.w_check')");
ok(SyncTest::poll_true($node, $db, "SELECT count(*) = 1 FROM crm.w_check WHERE remote_id = '$wbad'", $wait),
	'worker: after the fix and sync.retry the worker brought the record in');
ok(SyncTest::poll_true($node, $db, "SELECT count(*) = 0 FROM sync.errors WHERE remote_id = '$wbad'", $wait),
	'worker: ... and it left sync.errors');

$node->stop;
$emu->stop;
done_testing();
