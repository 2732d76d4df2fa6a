/*
 * lifecycle.h — what keeps a database from syncing when it should not: the
 * server-level switch sync.enabled, and the identity recorded when syncing
 * was enabled (sync.instance), which a copy of the database (CREATE
 * DATABASE ... TEMPLATE, pg_restore) does not match.  Also journal
 * retention.  See docs/worker.md.
 */
#ifndef SYNC_LIFECYCLE_H
#define SYNC_LIFECYCLE_H

#include "postgres.h"

/* sync.enabled (PGC_SIGHUP): off holds every worker idle */
extern bool sync_enabled;

extern void lifecycle_define_gucs(void);

/*
 * Why this database must not sync now (sync.enabled off, or a copy), as a
 * palloc'd sentence in the current memory context, or NULL when it may.
 * Needs a transaction; uses SPI on its own.  Only for a database whose
 * installed extension is the library's version (sync.instance exists).
 */
extern char *lifecycle_held_reason(void);

/*
 * For sync.push() / sync.pull(): ERROR when sync.enabled is off, the
 * installed extension is not the library's version, or the database is a
 * held copy.
 */
extern void lifecycle_check_sql(void);

/*
 * Journal retention, called by the worker's round outside any transaction:
 * deletes journal rows older than sync.journal_retention in batches, each
 * its own transaction, until none is left or the time box is spent.
 * Returns true when old rows remain (call again soon).
 */
extern bool lifecycle_journal_retention(int days);

/* The installed version of the extension here, or NULL (in a transaction). */
extern char *lifecycle_installed_version(void);

#endif							/* SYNC_LIFECYCLE_H */
