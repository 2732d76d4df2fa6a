# sync: PGXS build.  `make`, `make install`, `make installcheck` as usual.
# `make PG_CFLAGS=-Werror` turns warnings into errors (the test command does).

EXTENSION    = sync
MODULE_big   = sync
OBJS         = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
# the install script is assembled from src/sql/*.sql, in name order
DATA_built   = sync--0.1.sql
PGFILEDESC   = "sync - two-way sync of tables with SaaS APIs"

# pg_regress: every sql/NAME.sql with expected/NAME.out
REGRESS      = $(basename $(notdir $(sort $(wildcard sql/*.sql))))
REGRESS_OPTS = --inputdir=. --load-extension=sync
# pg_isolation_regress: every test/isolation/specs/NAME.spec
ISOLATION    = $(basename $(notdir $(sort $(wildcard test/isolation/specs/*.spec))))
ISOLATION_OPTS = --inputdir=test/isolation --load-extension=sync
# TAP (prove, PostgreSQL::Test::Cluster)
TAP_TESTS    = 1
PROVE_TESTS  = $(sort $(wildcard test/t/*.pl))

PG_CPPFLAGS  = -Isrc
SHLIB_LINK   = -lcurl -ljson-c -lcrypto
EXTRA_CLEAN  = results output_iso tmp_check tmp_check_iso log regression.diffs regression.out

EXTRA_CLEAN += sync--0.1.sql

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

sync--0.1.sql: $(sort $(wildcard src/sql/*.sql))
	cat $^ > $@

# objects depend on every header (struct layouts are shared)
$(OBJS): $(wildcard src/*.h)
