# Journal retention keeps up: 300,000 journal rows older than
# sync.journal_retention are deleted by the worker in a few rounds (batches
# of their own transactions, time-boxed per round), newer rows stay, and the
# mirrors are served in between.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('ret');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'sync'
sync.poll_interval = '1s'
sync.journal_retention = 30
});
$node->start;
sub sq { return $node->safe_psql('postgres', $_[0]); }

sq('CREATE EXTENSION sync');
sq(q{INSERT INTO sync.journal (at, mirror, direction, op, local_key, result)
     SELECT now() - interval '40 days' + g * interval '1 ms', 1, 'out', 'U', g::text, 'ok'
       FROM generate_series(1, 300000) g});
sq(q{INSERT INTO sync.journal (at, mirror, direction, op, local_key, result)
     SELECT now() - interval '29 days' + g * interval '1 s', 1, 'in', 'U', g::text, 'ok'
       FROM generate_series(1, 1000) g});
is(sq(q{SELECT count(*) FROM sync.journal WHERE at < now() - interval '30 days'}), '300000',
	'300,000 journal rows older than the retention');

# a new worker cleans up in its first round (and goes on in the next ones
# while old rows are left, not a minute later): the wait below is far
# shorter than the 30 minutes 10,000 rows a minute would take
$node->restart;
ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM sync.journal WHERE at < now() - interval '30 days'}),
	'the worker deleted all of them');
my $rounds = sq(q{SELECT cycles FROM sync.worker_status() WHERE datname = 'postgres'});
diag("after $rounds worker rounds");
is(sq(q{SELECT count(*) FROM sync.journal}), '1000', 'the rows within the retention stay');

$node->stop;
done_testing();
