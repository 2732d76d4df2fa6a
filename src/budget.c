/*
 * budget.c — a connection's limits, shared by every process of its database.
 *
 * A connection says how many requests may be in flight (max_in_flight) and
 * how fast they may go (its token bucket; HubSpot's searches have a bucket
 * of their own).  Those are limits of the remote account, so they must hold
 * for everything sync sends through the connection.  Kept per process, a
 * session's sync.push() beside the worker's push would double them: 16
 * requests in flight where 8 are allowed, two buckets each spending the
 * whole rate, two processes each learning of a 429 on its own.
 *
 * So the running state lives in shared memory, one slot per (database,
 * name): the requests in flight in all processes together, and the bucket's
 * rate, tokens, refill time and the hold after a 429.  Configuration (the
 * limit, the bucket's size and rate) stays with each process's connection,
 * which passes it in; when it changes, the slot takes the new one.
 *
 * Slots: LIMIT_SLOTS of them.  A name not seen yet takes a free slot, else
 * the least recently used one with nothing in flight and no 429 hold (its
 * bucket starts over, full; nothing else is lost).  When every slot is
 * busy the process goes on with its own limits for that call, as without
 * shared memory, and says so once in the log.
 *
 * Each process counts what it took (SharedBudget.held) and gives it back
 * when it exits: an ERROR gives back through http.c's release of its
 * transfers, a FATAL or normal exit through the before_shmem_exit callback
 * here, and a crash (kill -9) reinitializes shared memory anyway.
 *
 * One spinlock guards all slots: each use is a few comparisons and copies.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "budget.h"
#include "provider.h"

#define LIMIT_SLOTS		256
#define LIMIT_KEY_LEN	64		/* a prefix of the name, beside its hash */

typedef struct LimitSlot
{
	Oid			dboid;			/* InvalidOid: free */
	uint64		hash;			/* of the whole name */
	char		key[LIMIT_KEY_LEN];
	int			in_flight;		/* taken and not given back, all processes */
	TimestampTz used_at;
	/* the last process refused a slot, and when it asked (see budget_take) */
	int			waiter_pid;
	TimestampTz waiter_at;
	/* the bucket: configuration as last given, running state */
	bool		bucket_set;
	double		rate_max;
	double		capacity;
	double		rate;
	double		tokens;
	TimestampTz at;
	TimestampTz blocked_until;
} LimitSlot;

typedef struct LimitShmem
{
	slock_t		mutex;
	LimitSlot	slots[LIMIT_SLOTS];
} LimitShmem;

struct SharedBudget
{
	uint64		hash;
	char		key[LIMIT_KEY_LEN];
	int			slot;			/* where it was last found; -1: none */
	int			max;			/* in flight, as the connection says now */
	int			held;			/* taken by this process, not given back */
	struct SharedBudget *next;
};

static LimitShmem *lshm = NULL;
static SharedBudget *budgets = NULL;	/* this process's handles */
static bool exit_registered = false;
static bool warned_full = false;

Size
budget_shmem_size(void)
{
	return sizeof(LimitShmem);
}

/* From the shared-memory startup hook, AddinShmemInitLock held. */
void
budget_shmem_init(void)
{
	bool		found;

	lshm = ShmemInitStruct("sync connection limits", budget_shmem_size(), &found);
	if (!found)
	{
		memset(lshm, 0, budget_shmem_size());
		SpinLockInit(&lshm->mutex);
	}
}

/* At exit, give back what this process still holds. */
static void
budget_exit(int code, Datum arg)
{
	SharedBudget *b;

	if (lshm == NULL)
		return;
	SpinLockAcquire(&lshm->mutex);
	for (b = budgets; b; b = b->next)
	{
		LimitSlot  *s;

		if (b->held == 0 || b->slot < 0)
			continue;
		s = &lshm->slots[b->slot];
		/* a slot with takes in flight is never reused: it is still ours */
		if (s->dboid == MyDatabaseId && s->hash == b->hash)
			s->in_flight = Max(0, s->in_flight - b->held);
		b->held = 0;
	}
	SpinLockRelease(&lshm->mutex);
}

SharedBudget *
budget_lookup(const char *name, const char *bucket)
{
	SharedBudget *b;
	size_t		nlen = strlen(name),
				len = nlen + 1 + strlen(bucket);
	char	   *full;
	uint64		hash;

	if (lshm == NULL || !OidIsValid(MyDatabaseId))
		return NULL;
	/* the name and the bucket, NUL between: no two pairs hash alike */
	full = palloc(len + 1);
	memcpy(full, name, nlen + 1);
	strcpy(full + nlen + 1, bucket);
	hash = hash_bytes_extended((const unsigned char *) full, (int) len, 0);
	pfree(full);

	for (b = budgets; b; b = b->next)
		if (b->hash == hash && strncmp(b->key, name, LIMIT_KEY_LEN - 1) == 0)
			return b;			/* (key holds the name's first LIMIT_KEY_LEN - 1 bytes) */
	b = MemoryContextAllocZero(TopMemoryContext, sizeof(SharedBudget));
	b->hash = hash;
	strlcpy(b->key, name, LIMIT_KEY_LEN);
	b->slot = -1;
	b->next = budgets;
	budgets = b;
	if (!exit_registered)
	{
		before_shmem_exit(budget_exit, (Datum) 0);
		exit_registered = true;
	}
	return b;
}

static bool
slot_is(const LimitSlot *s, const SharedBudget *b)
{
	return s->dboid == MyDatabaseId && s->hash == b->hash &&
		strcmp(s->key, b->key) == 0;
}

/*
 * b's slot, found or taken; NULL when every slot is busy.  The mutex is
 * held.  A slot with requests in flight or a 429 hold is never reused, so
 * a process that holds takes always finds them where it left them.
 */
static LimitSlot *
find_slot(SharedBudget *b, TimestampTz now)
{
	LimitSlot  *victim = NULL;
	int			i;

	if (b->slot >= 0 && slot_is(&lshm->slots[b->slot], b))
		return &lshm->slots[b->slot];
	for (i = 0; i < LIMIT_SLOTS; i++)
	{
		LimitSlot  *s = &lshm->slots[i];

		if (slot_is(s, b))
		{
			b->slot = i;
			return s;
		}
		if (s->in_flight > 0 || s->blocked_until > now)
			continue;
		if (victim == NULL || !OidIsValid(s->dboid) ||
			(OidIsValid(victim->dboid) && s->used_at < victim->used_at))
			victim = s;
	}
	if (victim == NULL)
		return NULL;
	memset(victim, 0, sizeof(LimitSlot));
	victim->dboid = MyDatabaseId;
	victim->hash = b->hash;
	memcpy(victim->key, b->key, LIMIT_KEY_LEN);
	b->slot = victim - lshm->slots;
	return victim;
}

static void
warn_full(void)
{
	if (warned_full)
		return;
	warned_full = true;
	ereport(LOG,
			(errmsg("sync: all %d shared connection-limit slots are in use; this process applies its connections' limits on its own until one frees up",
					LIMIT_SLOTS)));
}

void
budget_set_max(SharedBudget *b, int max)
{
	if (b)
		b->max = max;
}

/*
 * Takes a slot if fewer than max requests are in flight in all processes.
 *
 * Turns: a process that holds its share already (half the slots, at least
 * one) takes no more while another process that holds less than its share
 * waits for one (asked within WAITER_FRESH_MS: a waiter that has gone away
 * is forgotten on its own).  Without this the first process, whose next
 * requests are queued the moment one of its requests ends, would take
 * every freed slot before the other looked again.
 */
#define WAITER_FRESH_MS	50

static int
fair_share(const SharedBudget *b)
{
	return Max(1, b->max / 2);
}

bool
budget_take(SharedBudget *b, bool *counted)
{
	TimestampTz now;
	LimitSlot  *s;
	bool		ok;

	*counted = false;
	if (b == NULL)
		return true;
	now = GetCurrentTimestamp();
	SpinLockAcquire(&lshm->mutex);
	s = find_slot(b, now);
	if (s == NULL)
	{
		SpinLockRelease(&lshm->mutex);
		warn_full();
		return true;			/* not counted: nothing to give back */
	}
	/* (no max given: counted only) */
	ok = b->max <= 0 || s->in_flight < b->max;
	if (ok && b->held >= fair_share(b) && s->waiter_pid != MyProcPid &&
		s->waiter_at > now - WAITER_FRESH_MS * (int64) 1000)
		ok = false;				/* another process's turn */
	else if (!ok && b->held < fair_share(b))
	{
		s->waiter_pid = MyProcPid;
		s->waiter_at = now;
	}
	if (ok)
	{
		s->in_flight++;
		s->used_at = now;
		b->held++;
		*counted = true;
		if (s->waiter_pid == MyProcPid)
			s->waiter_at = 0;
	}
	SpinLockRelease(&lshm->mutex);
	return ok;
}

/* Gives back one counted take of b. */
void
budget_give(SharedBudget *b)
{
	LimitSlot  *s;

	if (b == NULL || b->held == 0)
		return;
	SpinLockAcquire(&lshm->mutex);
	b->held--;
	s = &lshm->slots[b->slot];
	if (slot_is(s, b) && s->in_flight > 0)
		s->in_flight--;
	SpinLockRelease(&lshm->mutex);
}

void
budget_bucket_enter(SharedBudget *b, SyncRateLimit *lim)
{
	TimestampTz now;
	LimitSlot  *s;

	if (b == NULL)
		return;
	now = GetCurrentTimestamp();
	SpinLockAcquire(&lshm->mutex);
	s = find_slot(b, now);
	if (s == NULL)
		return;					/* leave releases the lock and keeps lim's own */
	s->used_at = now;
	if (s->bucket_set && s->rate_max == lim->rate_max && s->capacity == lim->capacity)
	{
		lim->rate = s->rate;
		lim->tokens = s->tokens;
		lim->at = s->at;
		lim->blocked_until = s->blocked_until;
	}
	else if (s->bucket_set)
	{
		/* the configuration changed: its new rate, and any hold kept */
		lim->blocked_until = Max(lim->blocked_until, s->blocked_until);
	}
}

void
budget_bucket_leave(SharedBudget *b, SyncRateLimit *lim, bool write)
{
	LimitSlot  *s;

	if (b == NULL)
		return;
	s = (b->slot >= 0 && slot_is(&lshm->slots[b->slot], b)) ? &lshm->slots[b->slot] : NULL;
	if (s != NULL && write)
	{
		s->bucket_set = true;
		s->rate_max = lim->rate_max;
		s->capacity = lim->capacity;
		s->rate = lim->rate;
		s->tokens = lim->tokens;
		s->at = lim->at;
		s->blocked_until = lim->blocked_until;
	}
	SpinLockRelease(&lshm->mutex);
	if (s == NULL)
		warn_full();
}
