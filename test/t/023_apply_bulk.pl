# The cheap paths of a page's apply (apply_bulk.c, issue #13) keep every
# behaviour: every received record still has its journal row; received
# records no longer cost an entry in the journal's by-record index (it
# covers what was sent, for the echo checks); a page tried as a plain INSERT
# that meets an existing row is undone and upserted; the journal's text
# (written by COPY) arrives intact whatever the client's encoding.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use SyncTest;

my $emu = SyncTest::start_emulator(tls => 1);
my $node = PostgreSQL::Test::Cluster->new('bulk');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$node->start;
my $db = 'postgres';
sub sq { return $node->safe_psql($db, $_[0]); }
sq('CREATE EXTENSION sync; CREATE SCHEMA crm;');
SyncTest::sf_connect($node, $db, $emu);

# a backfill of 2,500 Contacts: a page of 2,000 and one of 500
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "F$_", LastName => "L$_", Email => "c$_\@example.com" } } 0 .. 2499 ]);
sq(q{SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName', 'LastName', 'Email'])});
is(sq(q{SELECT sync.pull('crm.contact')}), '{"failed": 0, "applied": 2500, "deleted": 0}', 'backfill: 2,500 records applied');
is(sq('SELECT count(*), count(DISTINCT remote_id) FROM crm.contact'), '2500|2500', 'backfill: each record has one row');
is(sq(q{SELECT count(*), count(DISTINCT remote_id) FROM sync.journal
        WHERE direction = 'in' AND op = 'U' AND result = 'inserted' AND values_hash ~ '^[0-9a-f]{32}$'}),
	'2500|2500', 'backfill: each record has its journal row, with the hash of its values');
is(sq(q{SELECT count(*) FROM sync.outbox}), '0', 'backfill: nothing captured (no echo)');

# the by-record index: our pushes only (an index of only its metapage)
is(sq(q{SELECT pg_relation_size('sync.journal_remote') <= current_setting('block_size')::int * 2}), 't',
	"received records add no entries to the journal's by-record index");
like(sq(q{SET enable_seqscan = off; EXPLAIN SELECT max(at) FROM sync.journal
          WHERE mirror = 1 AND remote_id = 'x' AND direction = 'out' AND result = 'ok'}),
	qr/journal_remote/, "... which still serves the echo check's lookup of our last push of a record");

# a page with new records first, then existing ones: the plain INSERT of the
# page meets a row, is undone, and the page is upserted
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ map { { FirstName => "N$_", LastName => "New$_", Email => "n$_\@example.com" } } 1 .. 5 ]);
my @old = split /\n/, sq(q{SELECT remote_id FROM crm.contact ORDER BY id LIMIT 3});
$emu->control('PATCH', "/__emulator/records/salesforce/Contact/$_", { LastName => "Changed" }) for @old;
is(sq(q{SELECT sync.pull('crm.contact')}), '{"failed": 0, "applied": 8, "deleted": 0}', 'mixed page: 8 records applied');
is(sq('SELECT count(*), count(DISTINCT remote_id) FROM crm.contact'), '2505|2505', 'mixed page: no record twice');
is(sq(q{SELECT count(*) FROM crm.contact WHERE last_name = 'Changed'}), '3', 'mixed page: the existing rows are updated');
is(sq(q{SELECT string_agg(result || ':' || n, ' ' ORDER BY result) FROM
          (SELECT result, count(*) AS n FROM sync.journal WHERE direction = 'in' AND id > (
             SELECT max(id) FROM sync.journal WHERE result = 'inserted' AND remote_id IN
               (SELECT remote_id FROM crm.contact WHERE first_name = 'F2499')) GROUP BY 1) j}),
	'inserted:5 updated:3', 'mixed page: journaled as 5 inserted, 3 updated');
is(sq(q{SELECT count(*) FROM sync.outbox}), '0', 'mixed page: nothing captured');

# a record the table refuses: journaled with the constraint's name, intact
# although the pull ran with a client encoding other than the database's
sq(q{ALTER TABLE crm.contact ADD CONSTRAINT "kurz_länge" CHECK (length(last_name) < 20)});
$emu->control('POST', '/__emulator/records/salesforce/Contact',
	[ { LastName => 'a name much too long for the check' }, { LastName => 'Fine' } ]);
is($node->safe_psql($db, q{SET client_encoding = 'LATIN1'; SELECT sync.pull('crm.contact')}),
	'{"failed": 1, "applied": 1, "deleted": 0}', 'a refused record is set aside, the other applied');
like(sq(q{SELECT detail FROM sync.journal WHERE direction = 'in' AND result = 'failed'}),
	qr/violates check constraint "kurz_länge"/, "the journal's detail is intact under another client encoding");

done_testing();
