# sync: PGXS build.  `make`, `make install`, `make installcheck` as usual.
# `make PG_CFLAGS=-Werror` turns warnings into errors (the test command does).

EXTENSION    = sync
# the one version source: sync.control's default_version
EXTVERSION  := $(shell sed -n "s/^default_version *= *'\\(.*\\)'/\\1/p" sync.control)
MODULE_big   = sync
OBJS         = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
# The current version's install script is assembled from src/sql/*.sql, each
# update script from src/update/<from>--<to>/*.sql, in name order.  Released
# install scripts (sync--<version>.sql, committed) are frozen.  A fragment
# that only adds a new src/sql file's objects is a symlink to that file (one
# text, not a copy); once its version is released, replace the link by the
# file's text at that point, so that the step stays frozen too.
UPDATE_DIRS  = $(notdir $(wildcard src/update/*--*))
DATA_built   = sync--$(EXTVERSION).sql $(patsubst %,sync--%.sql,$(UPDATE_DIRS))
DATA         = $(filter-out $(DATA_built),$(wildcard sync--*.sql))
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

PG_CPPFLAGS  = -Isrc -DSYNC_VERSION='"$(EXTVERSION)"' 
SHLIB_LINK   = -lcurl -ljson-c -lcrypto
EXTRA_CLEAN  = results output_iso tmp_check tmp_check_iso log regression.diffs regression.out


PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# make installcheck: pg_regress, the isolation specs and the TAP tests, with
# the installation PG_CONFIG names; the first two against the running server
# PGHOST, PGPORT and PGUSER point to (on this machine, with
# max_prepared_transactions > 0), the TAP tests on throwaway clusters of
# their own (as for any PGXS extension: run as a user other than root).
# The isolation specs that talk to a remote find the emulator, started for
# them on 127.0.0.1, through PGOPTIONS (test/emulator/with_emulator.sh); the
# TAP tests find the tree (helpers, emulator, keys) through SYNC_TREE.
pg_isolation_regress_installcheck = \
    echo "+++ isolation install-check in $(subdir) +++" && \
    $(srcdir)/test/emulator/with_emulator.sh \
    $(top_builddir)/src/test/isolation/pg_isolation_regress \
    --inputdir=$(srcdir) --outputdir=output_iso \
    --bindir='$(bindir)' \
    $(pg_regress_locale_flags) $(EXTRA_REGRESS_OPTS)
SYNC_TREE   ?= $(CURDIR)
installcheck: export SYNC_TREE := $(SYNC_TREE)
PROVE_FLAGS += -I $(CURDIR)/test/perl

# (each depends on its folder too, whose time changes when a piece is
# added or removed, not only when one is edited)
sync--$(EXTVERSION).sql: src/sql $(sort $(wildcard src/sql/*.sql))
	cat $(filter %.sql,$^) > $@

define update_rule
sync--$(1).sql: src/update/$(1) $$(sort $$(wildcard src/update/$(1)/*.sql))
	cat $$(filter %.sql,$$^) > $$@
endef
$(foreach d,$(UPDATE_DIRS),$(eval $(call update_rule,$(d))))

# objects depend on every header (struct layouts are shared)
$(OBJS): $(wildcard src/*.h) sync.control
