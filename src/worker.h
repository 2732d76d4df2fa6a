/*
 * worker.h — background workers: a supervisor (no database) that starts one
 * worker per database having the extension, and the per-database worker
 * loop that runs the engine.
 */
#ifndef SYNC_WORKER_H
#define SYNC_WORKER_H

#include "postgres.h"

/* _PG_init: GUCs always; shared memory, hooks and the supervisor only when
 * loaded from shared_preload_libraries. */
extern void worker_init(void);

/* Wake the worker of database dboid now (no-op if none or not preloaded). */
extern void sync_worker_wake(Oid dboid);

/* Wake-ups of this database's worker so far (in the worker; 0 elsewhere). */
extern uint64 sync_worker_wakes(void);

/* The count above when the worker's current round began. */
extern uint64 sync_worker_round_wakes(void);

/* How long the worker waits with nothing due for next_ms (-1: nothing): sync.poll_interval at most. */
extern long sync_worker_sleep_ms(long next_ms);

/* Arrange for this database's worker to be woken when the current
 * transaction commits (at most once per transaction; nothing on abort). */
extern void sync_wake_at_commit(void);

/* Entry points (bgw_function_name) */
extern PGDLLEXPORT void sync_supervisor_main(Datum arg);
extern PGDLLEXPORT void sync_db_worker_main(Datum arg);
extern PGDLLEXPORT void sync_push_helper_main(Datum arg);

/* The push helper (worker.c): the backlog at which to start one now (0: none), and start it. */
extern int	sync_push_helper_threshold(void);
extern bool sync_push_helper_start(int mirror_id);

#endif							/* SYNC_WORKER_H */
