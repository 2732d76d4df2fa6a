# The hostile-remote corpus against HubSpot: the harness of
# 060_hostile_remote.pl (which picks the provider by this file's name).
use strict;
use warnings;
# loaded here, at compile time: their INIT blocks must run
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
do "$FindBin::Bin/060_hostile_remote.pl";
die $@ if $@;
