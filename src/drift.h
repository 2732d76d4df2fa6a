/*
 * drift.h — changing a mirror in place (alter.c: the fill of added fields)
 * and schema drift (drift.c: describing the remote and reporting what
 * changed).  The SQL side is src/sql/76_alter.sql.
 */
#ifndef SYNC_DRIFT_H
#define SYNC_DRIFT_H

#include "postgres.h"

#include "provider.h"

/* sync.drift_check_interval (ms; 0: no periodic check) */
extern int	sync_drift_check_interval_ms;

extern void drift_define_gucs(void);

/* The worker's part of a round: one due check; true if more are due. */
extern bool drift_round(MemoryContext work);

/* After a pushed batch is recorded (inside SPI): a field refused as unknown? */
extern void drift_note_push(SyncMirror *m, SyncPushItem *items, int n);

/* Fills of added fields: the worker's part of a round, and one mirror's. */
extern bool fill_round(MemoryContext work);
extern int64 fill_mirror(int mirror_id, bool own, MemoryContext work, int max_pages, bool *more);

#endif							/* SYNC_DRIFT_H */
