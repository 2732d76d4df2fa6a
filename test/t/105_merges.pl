# Remote merges followed locally (issue 12, item 5), step by step with
# sync.pull() / sync.push(): Salesforce (a Contact merge with two losers, an
# Account merge with a child re-parented) and HubSpot (a contacts merge,
# which makes a new record, and a companies merge).  The loser's row goes
# without "deleted" noise, references are re-pointed without an echo,
# pending local writes to a loser reach the winner (a queued local delete of
# a loser is not sent), sync.merges shows each merge, and a trigger on
# sync.merge_log acts on it.
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
my $node = PostgreSQL::Test::Cluster->new('merges');
$node->init;
$node->start;
my $db = 'postgres';
$node->safe_psql($db, 'CREATE EXTENSION sync; CREATE SCHEMA crm;');

sub sq { return $node->safe_psql($db, $_[0]); }
sub seed { return $emu->control('POST', "/__emulator/records/$_[0]/$_[1]", $_[2])->{ids}; }
sub requests
{
	my ($api, $method, $re) = @_;
	return [ grep { $_->{method} eq $method && $_->{path} =~ $re } @{ $emu->requests($api) } ];
}
sub hs_api
{
	my ($method, $path, $body) = @_;
	my $res = $emu->{http}->request($method, $emu->{url} . $path, {
		headers => { Authorization => 'Bearer pat-sync-test', 'Content-Type' => 'application/json' },
		($body ? (content => encode_json($body)) : ()) });
	return length($res->{content} // '') ? decode_json($res->{content}) : undef;
}

my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
sq(qq{SELECT sync.create_connection('sf', 'salesforce', '{
  "login_url": "$url", "ca_file": "$ca",
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}')});
sq(qq{SELECT sync.create_connection('hs', 'hubspot', '{
  "base_url": "$url", "ca_file": "$ca", "archived_interval": 0,
  "auth": {"type": "private_app", "token": "pat-sync-test"}}')});

# a trigger on the merge log acts on each merge (here: an audit table)
sq(q{CREATE TABLE public.merge_audit (local_table regclass, loser text, winner text, loser_key text);
     CREATE FUNCTION public.audit_merge() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog AS $$
     BEGIN
         INSERT INTO public.merge_audit
             SELECT m.local_table, NEW.loser_remote_id, NEW.winner_remote_id, NEW.loser_key
               FROM sync.mirror m WHERE m.id = NEW.mirror;
         RETURN NULL;
     END $$;
     CREATE TRIGGER audit_merge AFTER INSERT ON sync.merge_log FOR EACH ROW EXECUTE FUNCTION public.audit_merge();});

# ---------------------------------------------------------------------------
# Salesforce
# ---------------------------------------------------------------------------
my $acc = seed('salesforce', 'Account', [ { Name => 'Acme' }, { Name => 'Acme Inc' } ]);
my $con = seed('salesforce', 'Contact', [
	{ LastName => 'Keep',  FirstName => 'Kim', AccountId => $acc->[0] },
	{ LastName => 'Dup1',  FirstName => 'Kim', AccountId => $acc->[1] },
	{ LastName => 'Dup2',  FirstName => 'K' },
	{ LastName => 'Child', FirstName => 'Cy',  AccountId => $acc->[1] } ]);
sq(q{SELECT sync.mirror('sf', 'Account', 'crm.account', fields => ARRAY['Name'])});
sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['LastName','FirstName','AccountId'])});
sq("SELECT sync.pull('crm.account'), sync.pull('crm.contact')");    # backfills
sq("SELECT sync.pull('crm.account'), sync.pull('crm.contact')");    # incremental from here
is(sq("SELECT count(*) FROM crm.contact"), '4', 'contacts backfilled');
my $keep_key = sq("SELECT id FROM crm.contact WHERE remote_id = '$con->[0]'");

# pending local writes to the losers: an update of Dup1, a delete of Dup2
sq("UPDATE crm.contact SET first_name = 'Kimberly' WHERE remote_id = '$con->[1]'");
sq("DELETE FROM crm.contact WHERE remote_id = '$con->[2]'");
is(sq("SELECT string_agg(op::text, ',' ORDER BY op) FROM sync.outbox"), 'D,U', 'two local writes queued');

# --- a Contact merge: two losers into the master ---
$emu->control('POST', '/__emulator/salesforce/merge',
	{ object => 'Contact', master => $con->[0], losers => [ $con->[1], $con->[2] ] });
$emu->control('DELETE', '/__emulator/requests');
sq("SELECT sync.pull('crm.contact')");
is(sq("SELECT count(*) FROM crm.contact WHERE remote_id IN ('$con->[1]', '$con->[2]')"), '0',
	'the merged contact\'s row is gone');
is(sq("SELECT first_name FROM crm.contact WHERE remote_id = '$con->[0]'"), 'Kimberly',
	'the pending local change to the loser moved onto the winner\'s row');
is(sq("SELECT count(*) FROM crm.contact"), '2', 'no other row touched');
is(sq("SELECT string_agg(local_key || ':' || op::text || ':' || array_to_string(columns, ','), ' ') FROM sync.outbox"),
	"$keep_key:U:first_name", '... queued for the winner (only that column); the loser\'s entries and its queued delete are gone');
is(sq("SELECT string_agg(loser_remote_id || '>' || winner_remote_id, ' ' ORDER BY loser_remote_id)
         FROM sync.merges WHERE local_table = 'crm.contact'::regclass"),
	join(' ', map { "$_>$con->[0]" } sort ($con->[1], $con->[2])), 'sync.merges shows both merges');
ok(sq("SELECT bool_and(merged_at IS NOT NULL) FROM sync.merges"), '... with when');
is(sq("SELECT writes_retargeted FROM sync.merges WHERE loser_remote_id = '$con->[1]'"), '1',
	'... and that a pending write was re-targeted');
is(sq("SELECT count(*) FROM sync.journal WHERE result = 'deleted'"), '0', 'no "deleted" noise in the journal');
is(sq("SELECT count(*) FROM sync.journal WHERE result = 'merged'"), '2', '... the merges are journaled as such');
is(sq("SELECT count(*) FROM sync.errors"), '0', '... nor in sync.errors');
is(sq("SELECT count(*) FROM public.merge_audit WHERE local_table = 'crm.contact'::regclass"), '2',
	'the trigger on sync.merge_log acted on each merge');

$emu->control('DELETE', '/__emulator/requests');
like(sq("SELECT sync.push('crm.contact')"), qr/"sent": 1/, 'one write pushed');
my ($master) = grep { $_->{Id} eq $con->[0] } @{ $emu->control('GET', '/__emulator/records/salesforce/Contact') };
is($master->{FirstName}, 'Kimberly', 'the loser\'s local change reached the winner');
is(scalar(@{ requests('salesforce', 'DELETE', qr{/composite/sobjects}) }), 0, 'the loser\'s local delete was not sent');

# --- an Account merge: its Contact is re-parented remotely and locally ---
$emu->control('POST', '/__emulator/salesforce/merge',
	{ object => 'Account', master => $acc->[0], losers => [ $acc->[1] ] });
sq("SELECT sync.pull('crm.account')");
is(sq("SELECT count(*) FROM crm.account WHERE remote_id = '$acc->[1]'"), '0', 'the merged account\'s row is gone');
is(sq("SELECT account_id FROM crm.contact WHERE remote_id = '$con->[3]'"), $acc->[0],
	'the contact that referenced it now references the winner (before its own pull)');
is(sq("SELECT count(*) FROM sync.outbox"), '0', '... without echoing a push: the remote re-parented it itself');
is(sq("SELECT references_repointed FROM sync.merges WHERE loser_remote_id = '$acc->[1]'"), '1',
	'sync.merges counts the re-pointed reference');
sq("CREATE TABLE touched (n int); INSERT INTO touched VALUES (0);
   CREATE FUNCTION count_touch() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN UPDATE public.touched SET n = n + 1; RETURN NULL; END \$\$;
   CREATE TRIGGER count_touch AFTER UPDATE ON crm.contact FOR EACH ROW EXECUTE FUNCTION count_touch();");
sq("SELECT sync.pull('crm.contact')");
is(sq("SELECT account_id FROM crm.contact WHERE remote_id = '$con->[3]'"), $acc->[0],
	'the re-parented contact\'s own pull agrees');
is(sq("SELECT n FROM touched"), '0', '... and touches no row (nothing differs)');
is(sq("SELECT count(*) FROM sync.outbox"), '0', 'nothing queued');
is(sq("SELECT count(*) FROM sync.journal WHERE result = 'deleted'"), '0', 'still no "deleted" noise');
is(sq("SELECT loser || '>' || winner FROM public.merge_audit WHERE local_table = 'crm.account'::regclass"),
	"$acc->[1]>$acc->[0]", 'the trigger saw the account merge too');

# a pull after the merge does nothing more (the merge is followed once)
sq("SELECT sync.pull('crm.account'), sync.pull('crm.contact')");
is(sq("SELECT count(*) FROM sync.merge_log"), '3', 'a merge is followed once');

# under "delete": "keep" the loser's row stays (and the merge is logged once)
sq(q{UPDATE sync.mirror SET options = '{"delete": "keep"}' WHERE local_table = 'crm.contact'::regclass});
$emu->control('POST', '/__emulator/salesforce/merge',
	{ object => 'Contact', master => $con->[0], losers => [ $con->[3] ] });
sq("SELECT sync.pull('crm.contact')");
sq("SELECT sync.pull('crm.contact')");
is(sq("SELECT last_name FROM crm.contact WHERE remote_id = '$con->[3]'"), 'Child', '"delete": "keep": the loser\'s row stays');
is(sq("SELECT count(*) FROM sync.merges WHERE loser_remote_id = '$con->[3]'"), '1', '... the merge is logged, once');
sq(q{UPDATE sync.mirror SET options = '{}' WHERE local_table = 'crm.contact'::regclass});

# ---------------------------------------------------------------------------
# HubSpot: a merge makes a new record; both old IDs resolve to it
# ---------------------------------------------------------------------------
my $cos = seed('hubspot', 'companies', [ { name => 'One' }, { name => 'Two' } ]);
my $hc = seed('hubspot', 'contacts', [
	{ email => 'pat@example.com', firstname => 'Pat' },
	{ email => 'pat.dup@example.com', firstname => 'Patty', phone => '555' },
	{ email => 'other@example.com', firstname => 'Other' } ]);
hs_api('PUT', "/crm/v4/objects/contacts/$hc->[0]/associations/default/companies/$cos->[0]");
hs_api('PUT', "/crm/v4/objects/contacts/$hc->[2]/associations/default/companies/$cos->[1]");
sq(q{SELECT sync.mirror('hs', 'companies', 'crm.company', fields => ARRAY['name'])});
sq(q{SELECT sync.mirror('hs', 'contacts', 'crm.hs_contact',
     fields => ARRAY['email','firstname','phone','associations.companies'])});
sq("SELECT sync.pull('crm.company'), sync.pull('crm.hs_contact')");
sq("SELECT sync.pull('crm.company'), sync.pull('crm.hs_contact')");
is(sq("SELECT count(*) FROM crm.hs_contact"), '3', 'HubSpot contacts backfilled');
my $pat_key = sq("SELECT id FROM crm.hs_contact WHERE remote_id = '$hc->[0]'");
sq("UPDATE crm.hs_contact SET firstname = 'Patricia' WHERE remote_id = '$hc->[1]'");

my $merged = $emu->control('POST', '/__emulator/hubspot/merge',
	{ object => 'contacts', primary => $hc->[0], merged => $hc->[1] });
my $new = $merged->{id};
ok($new ne $hc->[0] && $new ne $hc->[1], 'HubSpot gave the merged contact a new ID');
sq("SELECT sync.pull('crm.hs_contact')");
is(sq("SELECT count(*) FROM crm.hs_contact WHERE remote_id IN ('$hc->[0]', '$hc->[1]')"), '0',
	'no row holds an old ID');
is(sq("SELECT id FROM crm.hs_contact WHERE remote_id = '$new'"), $pat_key,
	'the primary\'s row continues as the merged record (same local key)');
is(sq("SELECT email || ' ' || firstname || ' ' || phone FROM crm.hs_contact WHERE remote_id = '$new'"),
	'pat@example.com Patricia 555', '... with the merged values, and the pending local change of the other loser');
is(sq("SELECT count(*) FROM crm.hs_contact"), '2', 'the other loser\'s row is gone');
is(sq("SELECT string_agg(loser_remote_id, ' ' ORDER BY loser_remote_id) FROM sync.merges
        WHERE local_table = 'crm.hs_contact'::regclass AND winner_remote_id = '$new'"),
	join(' ', sort ($hc->[0], $hc->[1])), 'sync.merges shows both old IDs merged into the new one');
is(sq("SELECT count(*) FROM sync.journal WHERE result = 'deleted'"), '0', 'no "deleted" noise');
$emu->control('DELETE', '/__emulator/requests');
like(sq("SELECT sync.push('crm.hs_contact')"), qr/"sent": 1/, 'the re-targeted change pushed');
is(hs_api('GET', "/crm/v3/objects/contacts/$new?properties=firstname")->{properties}{firstname}, 'Patricia',
	'... to the merged record');

# a companies merge re-points the contacts' association column
$merged = $emu->control('POST', '/__emulator/hubspot/merge',
	{ object => 'companies', primary => $cos->[0], merged => $cos->[1] });
sq("SELECT sync.pull('crm.company')");
is(sq("SELECT string_agg(remote_id, ' ') FROM crm.company"), $merged->{id}, 'one company row, under the new ID');
is(sq("SELECT string_agg(DISTINCT associations_companies, ' ') FROM crm.hs_contact"), $merged->{id},
	'both contacts\' association columns point at the merged company');
is(sq("SELECT count(*) FROM sync.outbox"), '0', '... without echoing an association write');
is(sq("SELECT count(*) FROM public.merge_audit"), '8', 'the trigger saw every merge');

# a record the table refused, then merged away: its re-read (sync.retry)
# answers with the merged record, and the merge is followed from there
my $q = seed('hubspot', 'contacts', [ { email => 'q1\@example.com', firstname => 'Quinn' },
	{ email => 'q2\@example.com', firstname => 'Q' } ]);
sq("SELECT sync.pull('crm.hs_contact')");
sq("ALTER TABLE crm.hs_contact ADD CONSTRAINT no_bad CHECK (firstname <> 'Bad')");
$emu->control('PATCH', "/__emulator/records/hubspot/contacts/$q->[1]", { firstname => 'Bad' });
sq("SELECT sync.pull('crm.hs_contact')");
is(sq("SELECT remote_id FROM sync.errors WHERE direction = 'in'"), $q->[1], 'a remote change the table refused is parked');
$merged = $emu->control('POST', '/__emulator/hubspot/merge',
	{ object => 'contacts', primary => $q->[0], merged => $q->[1] });
sq("SELECT sync.retry('crm.hs_contact')");
my ($rc, $out, $err) = $node->psql($db, "SELECT sync.pull('crm.hs_contact')");
is($err, '', 're-reading the merged-away record does not fail the pull');
is(sq("SELECT count(*) FROM sync.errors"), '0', '... and clears its error');
is(sq("SELECT string_agg(remote_id, ' ') FROM crm.hs_contact WHERE email LIKE 'q%'"), $merged->{id},
	'one row, the merged record\'s');

# a merge the table refuses (a local foreign key to the loser's row) is
# undone alone, journaled, and the loser is then an ordinary remote delete,
# set aside like any the table refuses: the pull goes on
my $x = seed('salesforce', 'Contact', [ { LastName => 'X1' }, { LastName => 'X2' } ]);
sq("SELECT sync.pull('crm.contact')");
sq("CREATE TABLE crm.note (id int PRIMARY KEY, contact bigint REFERENCES crm.contact (id));
    INSERT INTO crm.note SELECT 1, id FROM crm.contact WHERE remote_id = '$x->[1]'");
$emu->control('POST', '/__emulator/salesforce/merge',
	{ object => 'Contact', master => $x->[0], losers => [ $x->[1] ] });
($rc, $out, $err) = $node->psql($db, "SELECT sync.pull('crm.contact')");
is($err, '', 'a merge the table refuses does not fail the pull');
like(sq("SELECT detail FROM sync.journal WHERE remote_id = '$x->[1]' AND result = 'failed' ORDER BY id LIMIT 1"),
	qr/merge into \Q$x->[0]\E not followed: 23503: .*note_contact_fkey/, '... it is journaled with the table\'s words');
is(sq("SELECT count(*) FROM crm.contact WHERE remote_id = '$x->[1]'"), '1', '... the loser\'s row stays');
is(sq("SELECT operation || ' ' || error_code FROM sync.errors WHERE remote_id = '$x->[1]'"), 'delete 23503',
	'... and its delete is set aside in sync.errors');
is(sq("SELECT count(*) FROM sync.merges WHERE loser_remote_id = '$x->[1]'"), '0', '... not in sync.merges');

done_testing();
