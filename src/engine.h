/*
 * engine.h — the provider-independent sync engine, as seen by its callers
 * (the SQL functions and the background worker).
 */
#ifndef SYNC_ENGINE_H
#define SYNC_ENGINE_H

#include "postgres.h"

/*
 * One round of due work in the current database, called by the worker
 * outside any transaction: push pending outbox entries of every mirror,
 * pull every mirror whose pull interval has elapsed.  Starts and commits
 * its own transactions and never holds one across a network wait.  An
 * error in one mirror is recorded against that mirror and does not stop
 * the others.  Returns milliseconds until it next needs to run (0 = more
 * work is ready now; the caller caps it by sync.poll_interval).
 */
extern long sync_engine_cycle(void);

/* a push helper's work: one mirror's push (worker.c starts helpers) */
extern void sync_engine_push_helper(int mirror_id);

/* GUCs (sync.batch_size, sync.lease, sync.pull_interval, ...) */
extern void engine_define_gucs(void);
extern int	sync_pull_interval_ms;

#endif							/* SYNC_ENGINE_H */
