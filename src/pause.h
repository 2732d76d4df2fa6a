/*
 * pause.h — paused mirrors and connections (sync.paused, sync.pause() and
 * friends in src/sql/70_pause.sql): what the worker and sync.push() /
 * sync.pull() ask before they talk to a remote for a mirror.  See
 * docs/operations.md, "Pause and resume".
 */
#ifndef SYNC_PAUSE_H
#define SYNC_PAUSE_H

#include "postgres.h"

/*
 * An SQL condition, true when the mirror aliased "m" (a row of sync.mirror)
 * is not paused, by itself or through its connection; for the worker's
 * choice of mirrors with work due.
 */
#define PAUSE_MIRROR_ACTIVE_SQL \
	"NOT EXISTS (SELECT 1 FROM sync.paused pz " \
	"WHERE pz.mirror OPERATOR(pg_catalog.=) m.id OR pz.connection OPERATOR(pg_catalog.=) m.connection)"

/*
 * Whether mirror mirror_id is paused now (its own pause or its
 * connection's).  Inside SPI (it runs a query: SPI_tuptable changes).
 */
extern bool pause_mirror_paused(int mirror_id);

/*
 * For sync.push() / sync.pull() (what: "sync.push()"): ERROR when the
 * mirror is paused, saying since when, by whom and how to resume it.
 * Inside SPI.
 */
extern void pause_check_sql(int mirror_id, const char *what);

#endif							/* SYNC_PAUSE_H */
