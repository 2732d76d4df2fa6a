# Configuration as code (issue 12, item 7): the configuration of one
# database (connections, mirrors, field mappings, authority, options) is
# exported as a document and imported into another database of the same
# cluster.  A dry run lists the actions and changes nothing; the real run
# applies them in one transaction; a connection whose secret the document
# does not carry is a task for the user (a secret given as a file comes
# along); the imported mirrors sync through the worker against the
# emulator (Salesforce and HubSpot); exporting the imported database gives
# the same document, and importing it again does nothing.
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
my $node = PostgreSQL::Test::Cluster->new('config');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
});
$node->start;
my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
my $secrets = $node->basedir . '/secrets';
mkdir $secrets or die "$secrets: $!";
chmod 0700, $secrets;
open(my $fh, '>', "$secrets/sf.secret") or die $!;
print $fh "sync-secret\n";
close $fh;
chmod 0600, "$secrets/sf.secret";

sub sq { my ($db, $sql) = @_; return $node->safe_psql($db, $sql); }
sub err_of { my ($db, $sql) = @_; my ($rc, $out, $err) = $node->psql($db, $sql); return $err; }
sub poll { my ($db, $sql, $what) = @_; ok(SyncTest::poll_true($node, $db, $sql, 60), $what); }
# import_config's rows as "action object status", one per line
sub import_rows
{
	my ($db, $doc, $args) = @_;
	$args = $args ? ", $args" : '';
	return sq($db, qq{SELECT action || ' ' || object || ' ' || status
	                    FROM sync.import_config(\$doc\$$doc\$doc\$$args)});
}
my $hs_options = qq{"base_url": "$url", "ca_file": "$ca", "auth": {"type": "private_app"}};

# --- the source database: two connections, two mirrors ---
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "F$_", LastName => "L$_", Email => "c$_\@example.com" } } 1 .. 3 ]);
$emu->control('POST', '/__emulator/records/hubspot/contacts',
	[ map { { email => "h$_\@example.com", firstname => "H$_" } } 1 .. 3 ]);
$node->safe_psql('postgres', 'CREATE DATABASE staging');
$node->safe_psql('postgres', 'CREATE DATABASE production');
sq('staging', qq{CREATE EXTENSION sync; CREATE SCHEMA crm;
  SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "$url", "ca_file": "$ca",
    "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret_file": "$secrets/sf.secret"}}');
  SELECT sync.create_connection('hs', 'hubspot', '{$hs_options}'::jsonb || '{"auth": {"type": "private_app", "token": "pat-sync-test"}}');
  SELECT sync.mirror('sf', 'Contact', 'crm.sf_contact', fields => ARRAY['FirstName', 'LastName', 'Email'],
                     options => '{"conflict": "remote_wins", "pull_interval": "1 second", "authority": {"Email": "remote"}}');
  ALTER TABLE crm.sf_contact RENAME COLUMN first_name TO given_name;
  SELECT sync.mirror('hs', 'contacts', 'crm.hs_contact', fields => ARRAY['email', 'firstname'],
                     options => '{"pull_interval": "1 second"}');});
poll('staging', 'SELECT (SELECT count(*) FROM crm.sf_contact) = 3 AND (SELECT count(*) FROM crm.hs_contact) = 3',
	'the source database syncs both mirrors');

# --- export ---
my $doc = sq('staging', 'SELECT sync.export_config()');
my $d = decode_json($doc);
is($d->{sync_config}, 1, 'the document is version 1');
is(join(',', map { $_->{name} } @{ $d->{connections} }), 'hs,sf', 'connections sorted by name');
is(join(',', map { $_->{local_table} } @{ $d->{mirrors} }), 'crm.hs_contact,crm.sf_contact', 'mirrors sorted by table');
unlike($doc, qr/pat-sync-test|sync-secret/, 'no secret in the document');
is_deeply($d->{connections}[0]{secret_keys}, ['auth.token'], '... only the names of the secrets');
is($d->{connections}[1]{options}{auth}{client_secret_file}, "$secrets/sf.secret",
	'a secret given as a file: its path is an option');
my $sfm = $d->{mirrors}[1];
is_deeply([ sort keys %{ $sfm->{fields} } ], [ 'Email', 'FirstName', 'LastName' ], 'the mapped fields');
is($sfm->{fields}{FirstName}{column}, 'given_name', 'a renamed column is part of the mapping');
is($sfm->{fields}{Email}{authority}, 'remote', 'the authority of each field');
is_deeply($sfm->{options}, { conflict => 'remote_wins', pull_interval => '1 second' }, 'the options');
is(sq('staging', 'SELECT sync.export_config()'), $doc, 'a second export is the same text');

# --- dry run into the other database: the actions, and no change ---
sq('production', 'CREATE EXTENSION sync; CREATE SCHEMA crm;');
is(import_rows('production', $doc), join("\n",
	'create connection hs todo',
	'create connection sf planned',
	'create mirror crm.hs_contact todo',
	'create mirror crm.sf_contact planned'), 'dry run: what would be done, and what the user must do');
like(sq('production', qq{SELECT detail FROM sync.import_config(\$doc\$$doc\$doc\$) WHERE object = 'hs'}),
	qr/"missing_secrets": \["auth.token"\]/, '... the secret the document does not carry is named');
is(sq('production', q{SELECT count(*) FROM sync.connection}) . ' '
	. sq('production', q{SELECT count(*) FROM sync.mirror}) . ' '
	. sq('production', q{SELECT to_regclass('crm.sf_contact') IS NULL}), '0 0 t', 'the dry run changed nothing');

# --- all or nothing: a document whose mirror the remote refuses applies nothing ---
(my $bad = $doc) =~ s/"FirstName": \{/"NoSuchField__c": {}, "FirstName": {/;
like(err_of('production', qq{SELECT * FROM sync.import_config(\$doc\$$bad\$doc\$, dry_run => false)}),
	qr/sync.import_config: mirror crm.sf_contact: Contact has no field NoSuchField__c/,
	'a field the remote does not have: the error names the mirror and the field');
is(sq('production', q{SELECT count(*) FROM sync.connection}), '0', '... and the connection made before it is rolled back');

# --- the real run ---
is(import_rows('production', $doc, 'dry_run => false'), join("\n",
	'create connection hs todo',
	'create connection sf done',
	'create mirror crm.hs_contact todo',
	'create mirror crm.sf_contact done'), 'real run: the same actions, done');
is(sq('production', q{SELECT secrets FROM sync.connection_secret WHERE connection = 'sf'}), '{"auth": {}}',
	'no secret invented: the file is named in the options');
is(sq('production', q{SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
                       WHERE attrelid = 'crm.sf_contact'::regclass AND attnum > 0 AND NOT attisdropped}),
	'id,remote_id,email,given_name,last_name,remote_modified_at', 'the table is made with the mapped column names');
poll('production', q{SELECT count(*) = 3 AND count(given_name) = 3 FROM crm.sf_contact},
	'the imported Salesforce mirror backfills through the worker');
sq('production', q{INSERT INTO crm.sf_contact (given_name, last_name, email) VALUES ('Prod', 'Only', 'prod@example.com')});
ok(SyncTest::wait_until(sub {
	grep { ($_->{LastName} // '') eq 'Only' && ($_->{FirstName} // '') eq 'Prod' && !defined $_->{Email} }
	  @{ $emu->control('GET', '/__emulator/records/salesforce/Contact') } }, 60),
	'... and pushes a local insert');

# the user completes the task: the connection with its secret, then imports again
sq('production', qq{SELECT sync.create_connection('hs', 'hubspot', '{$hs_options}'::jsonb
                      || '{"auth": {"type": "private_app", "token": "pat-sync-test"}}')});
is(import_rows('production', $doc, 'dry_run => false'), 'create mirror crm.hs_contact done',
	'after the secret was set: the waiting mirror is made');
poll('production', q{SELECT count(*) = 3 FROM crm.hs_contact WHERE firstname LIKE 'H%'},
	'the imported HubSpot mirror backfills through the worker');
sq('production', q{INSERT INTO crm.hs_contact (email, firstname) VALUES ('prod-hs@example.com', 'ProdHs')});
ok(SyncTest::wait_until(sub {
	grep { ($_->{properties}{email} // '') eq 'prod-hs@example.com' }
	  @{ $emu->control('GET', '/__emulator/records/hubspot/contacts') } }, 60),
	'... and pushes a local insert');

# --- round trip ---
is(sq('production', 'SELECT sync.export_config()'), $doc, 'exporting the imported database gives the same document');
is(import_rows('production', $doc, 'dry_run => false'), '', 'importing it again: no action');

# --- a changed document: options and authority in place, a new field by sync.alter_mirror ---
my $trigger = q{SELECT pg_get_triggerdef(oid) FROM pg_trigger
                 WHERE tgname = 'sync_capture' AND tgrelid = 'crm.sf_contact'::regclass};
unlike(sq('production', $trigger), qr/'email'/, 'Email (authority remote) is not captured');
my $changed = decode_json($doc);
$changed->{mirrors}[1]{options}{conflict} = 'local_wins';
$changed->{mirrors}[1]{fields}{Email}{authority} = 'both';
$changed->{mirrors}[1]{fields}{Phone} = {};
my $cdoc = encode_json($changed);
is(import_rows('production', $cdoc), join("\n",
	'alter mirror crm.sf_contact planned',
	'alter mirror fields crm.sf_contact planned'), 'dry run of a changed document');
is(import_rows('production', $cdoc, 'dry_run => false'), join("\n",
	'alter mirror crm.sf_contact done',
	'alter mirror fields crm.sf_contact done'), 'options and authority applied, a new field added');
like(sq('production', q{SELECT detail FROM sync.import_config($doc$} . $cdoc . q{$doc$)
                         WHERE action = 'alter mirror fields'}),
	qr/^$/, '... so the next dry run has nothing left to add');
is(sq('production', q{SELECT count(*) FROM sync.field f JOIN sync.mirror m ON m.id = f.mirror
                       WHERE m.local_table = 'crm.sf_contact'::regclass AND f.remote_name = 'Phone'}),
	'1', '... Phone is mapped (sync.alter_mirror)');
is(sq('production', q{SELECT options->>'conflict' FROM sync.mirror WHERE local_table = 'crm.sf_contact'::regclass}),
	'local_wins', '... the option is changed');
like(sq('production', $trigger), qr/'email'/, '... Email is captured now');
sq('production', q{UPDATE crm.sf_contact SET email = 'pushed@example.com' WHERE last_name = 'Only'});
ok(SyncTest::wait_until(sub {
	grep { ($_->{Email} // '') eq 'pushed@example.com' && ($_->{LastName} // '') eq 'Only' }
	  @{ $emu->control('GET', '/__emulator/records/salesforce/Contact') } }, 60),
	'... and a local change of it reaches Salesforce');

# --- what the document leaves out: unmirrored only when asked, the table stays ---
my $fewer = decode_json($doc);
splice(@{ $fewer->{mirrors} }, 0, 1);
$fewer->{mirrors}[0] = $changed->{mirrors}[1];
my $fdoc = encode_json($fewer);
is(import_rows('production', $fdoc, 'dry_run => false'), 'unmirror crm.hs_contact skipped',
	'a mirror left out of the document is kept without drop_missing');
is(import_rows('production', $fdoc, 'dry_run => false, drop_missing => true'), 'unmirror crm.hs_contact done',
	'... and unmirrored with it');
is(sq('production', q{SELECT count(*) FROM sync.mirror}) . ' ' . sq('production', q{SELECT count(*) >= 4 FROM crm.hs_contact}),
	'1 t', '... its table and rows stay');

done_testing();
