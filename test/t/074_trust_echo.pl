# Issue 14, item 11: the echo of our own writes never destroys local data.
#
# What this proves:
#  1. HubSpot, contacts mirrored with idempotency_field 'email'.  Row A is
#     mirrored (its contact exists remotely) and has a child row (ON DELETE
#     CASCADE).  A user inserts a NEW row B with the same email; pushing it
#     upserts by email, so HubSpot answers with A's contact.  After push and
#     pull: row A still exists with its remote ID and its child row (it was
#     not deleted as "the echo of B's create", uncaptured and cascading); row
#     B still exists too and its outcome is visible (it holds a remote ID, or
#     it is parked in sync.errors with a message); nothing is left silently
#     queued; HubSpot has one contact with that email.
#  2. Salesforce, a mirror with conflict 'remote_wins'.  A local edit (E1) is
#     pushed; a newer local edit (E2) of the same field is pending when the
#     pull brings back the echo of E1 (the remote record now says E1, as we
#     sent it).  The echo is not a remote change: E2 is not dropped, the row
#     keeps E2, and the next push makes Salesforce say E2.  A genuine remote
#     edit still wins over a pending local edit (remote_wins keeps its
#     meaning; this guard passes on the original code too).
#
# On the original code, (1) deletes row A and its child when B's create
# returns A's remote ID, and (2) drops the pending E2 and overwrites it with
# the echoed E1.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my ($url, $ca) = ($emu->{url}, $emu->{ca_file});
my $node = PostgreSQL::Test::Cluster->new('trust_echo');
$node->init;
# no worker: every step is explicit
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
# the SQL's output, or "ERROR: <message>"
sub qry
{
	my ($rc, $out, $err) = $node->psql($db, $_[0]);
	return $rc == 0 ? $out : "ERROR: $err";
}

sq(qq{CREATE EXTENSION sync; CREATE SCHEMA crm;
  SELECT sync.create_connection('hs', 'hubspot', '{
    "base_url": "$url", "ca_file": "$ca", "archived_interval": 0,
    "auth": {"type": "private_app", "token": "pat-sync-test"}}');
  SELECT sync.create_connection('sf', 'salesforce', '{
    "login_url": "$url", "ca_file": "$ca",
    "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');});

# ---------------------------------------------------------------------------
# 1. HubSpot: an insert whose email matches a mirrored row's contact
# ---------------------------------------------------------------------------
sq(q{SELECT sync.mirror('hs', 'contacts', 'crm.contact', fields => ARRAY['email','firstname','lastname'],
        options => '{"idempotency_field": "email"}');
     CREATE TABLE crm.note (id serial PRIMARY KEY,
                            contact_id bigint NOT NULL REFERENCES crm.contact (id) ON DELETE CASCADE,
                            body text);});
sq("SELECT sync.pull('crm.contact')");
sq("INSERT INTO crm.contact (email, firstname, lastname) VALUES ('x\@example.com', 'Alpha', 'Older')");
like(qry("SELECT sync.push('crm.contact')"), qr/"sent": 1/, 'row A was pushed');
my $a_id = sq("SELECT id FROM crm.contact WHERE firstname = 'Alpha'");
my $a_rid = sq("SELECT remote_id FROM crm.contact WHERE id = $a_id");
like($a_rid, qr/^\d+$/, 'row A holds its HubSpot ID');
sq("INSERT INTO crm.note (contact_id, body) VALUES ($a_id, 'a note on A')");

sq("INSERT INTO crm.contact (email, firstname, lastname) VALUES ('x\@example.com', 'Beta', 'Newer')");
my $b_id = sq("SELECT id FROM crm.contact WHERE firstname = 'Beta'");
my $pushed = qry("SELECT sync.push('crm.contact')");
my $pulled = qry("SELECT sync.pull('crm.contact')");
diag("push of B: $pushed; pull: $pulled");

is(sq("SELECT count(*) FROM crm.contact WHERE id = $a_id"), '1', 'row A still exists after B\'s push and the pull');
is(sq("SELECT coalesce(remote_id, 'NULL') FROM crm.contact WHERE id = $a_id"), $a_rid, '... and still holds its HubSpot ID');
is(sq("SELECT count(*) FROM crm.note WHERE contact_id = $a_id"), '1', 'A\'s child row was not cascaded away');
is(sq("SELECT count(*) FROM crm.contact WHERE id = $b_id"), '1', 'row B still exists (nothing silently lost)');
my $b_outcome = qry("SELECT coalesce((SELECT 'remote_id ' || remote_id FROM crm.contact WHERE id = $b_id AND remote_id IS NOT NULL),
                              (SELECT 'parked ' || error_code || ': ' || error_message FROM sync.errors
                                WHERE local_table = 'crm.contact'::regclass AND local_key = '$b_id'
                                  AND error_message <> ''), 'none')");
diag("outcome for B: $b_outcome");
like($b_outcome, qr/^(remote_id \d+|parked \S+: .*(x\@example\.com|\b\Q$a_rid\E\b).*)$/s,
	'B\'s outcome is visible: it holds a remote ID, or it is parked with a message naming the email or A\'s contact');
is(sq("SELECT count(*) FROM sync.outbox WHERE state <> 'parked'"), '0', 'nothing is left silently queued');
is(scalar(grep { ($_->{properties}{email} // '') eq 'x@example.com' } @{ $emu->control('GET', '/__emulator/records/hubspot/contacts') }),
	1, 'HubSpot has one contact with that email');
is(sq("SELECT count(*) FROM sync.journal WHERE direction = 'out' AND op = 'D'"), '0', 'no delete was sent');

# ---------------------------------------------------------------------------
# 2. Salesforce, remote_wins: the echo of our push does not drop a newer edit
# ---------------------------------------------------------------------------
my $seed = $emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ { FirstName => 'Orig', LastName => 'Echo', Email => 'echo@example.com' } ])->{ids}[0];
sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.sf_contact', fields => ARRAY['FirstName','LastName','Email'],
        options => '{"conflict": "remote_wins"}')});
sq("SELECT sync.pull('crm.sf_contact')");
is(sq("SELECT first_name FROM crm.sf_contact WHERE remote_id = '$seed'"), 'Orig', 'the Salesforce contact is mirrored');
sub sf_first { return $emu->control('GET', "/__emulator/records/salesforce/Contact/$seed")->{FirstName}; }

sq("UPDATE crm.sf_contact SET first_name = 'E1' WHERE remote_id = '$seed'");
like(qry("SELECT sync.push('crm.sf_contact')"), qr/"sent": 1/, 'the first local edit (E1) was pushed');
is(sf_first(), 'E1', 'Salesforce says E1');
sq("UPDATE crm.sf_contact SET first_name = 'E2' WHERE remote_id = '$seed'");
sq("SELECT sync.pull('crm.sf_contact')");
is(sq("SELECT first_name FROM crm.sf_contact WHERE remote_id = '$seed'"), 'E2',
	'the echo of E1 did not overwrite the newer pending local edit E2');
is(sq("SELECT count(*) FROM sync.outbox o JOIN sync.mirror m ON m.id = o.mirror
       WHERE m.local_table = 'crm.sf_contact'::regclass AND o.op = 'U'"), '1',
	'the pending update is still queued');
qry("SELECT sync.push('crm.sf_contact')");
is(sf_first(), 'E2', 'the next push made Salesforce say E2');
sq("SELECT sync.pull('crm.sf_contact')");
is(sq("SELECT first_name FROM crm.sf_contact WHERE remote_id = '$seed'"), 'E2', 'and the row still says E2');

# guard: a genuine remote edit still wins over a pending local edit
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$seed", { FirstName => 'RemoteEdit' });
sq("UPDATE crm.sf_contact SET first_name = 'E3' WHERE remote_id = '$seed'");
sq("SELECT sync.pull('crm.sf_contact')");
is(sq("SELECT first_name FROM crm.sf_contact WHERE remote_id = '$seed'"), 'RemoteEdit',
	'remote_wins: a genuine remote edit replaces the pending local edit');
qry("SELECT sync.push('crm.sf_contact')");
is(sf_first(), 'RemoteEdit', '... and the dropped local edit is not pushed');

$node->stop;
$emu->stop;
done_testing();
