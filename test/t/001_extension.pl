# The extension loads from shared_preload_libraries and answers sync.version().
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SyncTest;

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'sync'");
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION sync');
my $v = $node->safe_psql('postgres', "SELECT sync.version()->>'sync'");
is($v, SyncTest::version(), 'sync.version() reports the extension version (sync.control)');

my $libs = $node->safe_psql('postgres',
	"SELECT string_agg(key, ',' ORDER BY key) FROM jsonb_each(sync.version())");
is($libs, 'json-c,libcurl,libcurl_ssl,openssl,postgresql,sync',
	'sync.version() names every linked library');

# the library is loaded in the postmaster: a fresh backend has it already
my $loaded = $node->safe_psql('postgres', "SHOW shared_preload_libraries");
is($loaded, 'sync', 'sync is preloaded');

$node->stop;
done_testing();
