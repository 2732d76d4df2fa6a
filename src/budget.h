/*
 * budget.h — a connection's limits, shared by every process of its database.
 *
 * A connection's max_in_flight and its token buckets bound what all of
 * sync sends to that remote, not what one process sends: the worker, a
 * session's sync.push() or sync.pull(), and any other process of the
 * database send through the same budget.  The state lives in shared memory
 * (only when sync is in shared_preload_libraries; without it every process
 * keeps its own, as there is no worker either).  See budget.c.
 */
#ifndef SYNC_BUDGET_H
#define SYNC_BUDGET_H

#include "postgres.h"

struct SyncRateLimit;

/* A process's handle on one shared budget; never freed. */
typedef struct SharedBudget SharedBudget;

/* shared memory: size to request, and set-up in the startup hook */
extern Size budget_shmem_size(void);
extern void budget_shmem_init(void);

/*
 * The handle of this database's budget called name (a connection's name,
 * plus a bucket name for a provider's extra bucket: "" for the
 * connection's own); NULL when sync has no shared memory.
 */
extern SharedBudget *budget_lookup(const char *name, const char *bucket);

/*
 * Requests in flight: take one slot if fewer than max are in flight in
 * all processes together (*counted: it was counted, give it back when the
 * request has ended; false when there was nothing to count in).
 */
extern void budget_set_max(SharedBudget *b, int max);
extern bool budget_take(SharedBudget *b, bool *counted);
extern void budget_give(SharedBudget *b);

/*
 * A token bucket's state: between enter and leave, lim's running state
 * (rate, tokens, at, blocked_until) is the shared one, and with write what
 * the caller changed in it becomes the shared one (a caller that only
 * reads passes false: a process whose connection is not configured yet,
 * before authenticating, must not reset the others' bucket).  A spinlock
 * is held in between: only arithmetic there, no allocation, no ereport,
 * no waiting.
 */
extern void budget_bucket_enter(SharedBudget *b, struct SyncRateLimit *lim);
extern void budget_bucket_leave(SharedBudget *b, struct SyncRateLimit *lim, bool write);

#endif
