/*
 * worker.c — background workers: a supervisor and one worker per database.
 *
 * Topology (pglogical's, see docs/worker.md):
 *
 *   postmaster
 *    └─ sync supervisor          static, connected to no database
 *        ├─ sync worker (db1)    dynamic, one per database with the extension
 *        └─ sync worker (db2)
 *
 * The supervisor reads the shared catalog pg_database (as the autovacuum
 * launcher does) and starts one dynamic worker per database that allows
 * connections and is not a template.  A worker whose database lacks the
 * extension records "no_extension" in its slot and exits with code 0; the
 * supervisor then leaves that database alone until CREATE EXTENSION asks
 * for a worker (sync._request_worker(), at commit) or the database is
 * dropped and forgotten.  New databases are found at the next scan
 * (sync.database_rescan_interval), so a database created from a template
 * that has the extension gets its worker with no configuration.
 *
 * The per-database worker loops: check the extension is still there, run
 * one engine round (sync_engine_cycle, which manages its own short
 * transactions), then sleep on its latch until the next due item,
 * sync.poll_interval at most.  A commit of captured writes sets the latch
 * (sync_wake_at_commit), so pushes start at once.  An ERROR in a round is
 * reported, recorded in the slot and followed by a growing pause; it does
 * not end the worker.  SIGTERM uses die(): the latch is set and the next
 * CHECK_FOR_INTERRUPTS() — also called inside HTTP waits — exits.
 *
 * Database-level commands that need the database to themselves (DROP
 * DATABASE, ALTER DATABASE RENAME / SET TABLESPACE, CREATE DATABASE ...
 * TEMPLATE) would otherwise wait 5 s for our worker and fail with "being
 * accessed by other users": a ProcessUtility hook stops the worker first
 * and holds its restart until the command is over.
 */
#include "postgres.h"

#include <signal.h>
#include <unistd.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "conn.h"
#include "engine.h"
#include "lifecycle.h"
#include "budget.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(sync_wake);
PG_FUNCTION_INFO_V1(sync_worker_status);
PG_FUNCTION_INFO_V1(sync_request_worker);

/* ---------------------------------------------------------------------
 * shared state: one slot per database the supervisor knows about
 * --------------------------------------------------------------------- */

typedef enum SlotState
{
	SLOT_FREE = 0,
	SLOT_STARTING,				/* registered; the extension not yet confirmed */
	SLOT_RUNNING,				/* the extension is there; the loop runs */
	SLOT_NO_EXTENSION,			/* the database has no sync extension */
	SLOT_EXITED,				/* stopped by a signal or a hold; restarted */
	SLOT_FAILED					/* died of an error; restarted after a pause */
} SlotState;

static const char *const slot_state_names[] = {
	"free", "starting", "running", "no_extension", "exited", "failed"
};

#define SLOT_ACTIVE(s) ((s)->state == SLOT_STARTING || (s)->state == SLOT_RUNNING)

/* a worker that ran at least this long starts its backoff afresh */
#define HEALTHY_RUN_MS		60000
#define MAX_BACKOFF_MS		60000
/* how long a database-level command may hold a database's worker off */
#define HOLD_SAFETY_MS		(10 * 60 * 1000)
/* how long that command waits for the worker to go */
#define HOLD_WAIT_MS		5000

typedef struct DbSlot
{
	Oid			dboid;
	SlotState	state;
	uint32		generation;		/* bumped at every start: stale workers exit */
	pid_t		pid;
	Latch	   *latch;
	bool		requested;		/* CREATE EXTENSION committed since the start */
	TimestampTz started_at;
	TimestampTz exited_at;
	TimestampTz restart_at;		/* EXITED / FAILED: not before */
	TimestampTz hold_until;		/* a database-level command holds it off */
	TimestampTz last_wake;		/* the latch woke the worker */
	int64		cycles;			/* engine rounds completed (or failed) */
	int			restarts;		/* consecutive short runs: the backoff */
	int			poll_interval_ms;	/* as the worker sees it (after SIGHUP) */
	int64		memory_bytes;	/* TopMemoryContext, after the last round */
	char		last_error[256];
	uint64		wakes;			/* sync_worker_wake calls: ends a long poll */
	pid_t		helper_pid;		/* the worker's push helper, or 0 */
	bool		helper_starting;	/* registered, not running yet */
	TimestampTz helper_asked_at;	/* when it was registered */
} DbSlot;

typedef struct SyncShmem
{
	slock_t		mutex;
	pid_t		supervisor_pid;
	Latch	   *supervisor_latch;
	int			nslots;
	DbSlot		slots[FLEXIBLE_ARRAY_MEMBER];
} SyncShmem;

static SyncShmem *shm = NULL;

/* GUCs */
static int	sync_max_workers = 8;
static int	sync_poll_interval_ms = 10000;
static int	sync_rescan_interval_s = 60;
static int	sync_worker_log_level = -1;
static int	sync_push_helper_backlog = 20000;

static const struct config_enum_entry log_level_options[] = {
	{"default", -1, false},
	{"debug5", DEBUG5, false},
	{"debug4", DEBUG4, false},
	{"debug3", DEBUG3, false},
	{"debug2", DEBUG2, false},
	{"debug1", DEBUG1, false},
	{"debug", DEBUG2, true},
	{"info", INFO, false},
	{"notice", NOTICE, false},
	{"warning", WARNING, false},
	{"error", ERROR, false},
	{"log", LOG, false},
	{"fatal", FATAL, false},
	{"panic", PANIC, false},
	{NULL, 0, false}
};

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

static void sync_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
								bool readOnlyTree, ProcessUtilityContext context,
								ParamListInfo params, QueryEnvironment *queryEnv,
								DestReceiver *dest, QueryCompletion *qc);

/*
 * Slots: the workers, plus room to remember databases without the
 * extension.  When every slot is taken, the oldest "no_extension" entry is
 * forgotten (that database is simply probed again later), so any number of
 * databases works.
 */
static int
slot_count(void)
{
	return sync_max_workers + 256;
}

static Size
shmem_size(void)
{
	return add_size(offsetof(SyncShmem, slots), mul_size(slot_count(), sizeof(DbSlot)));
}

static void
sync_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(shmem_size());
	RequestAddinShmemSpace(budget_shmem_size());
}

static void
sync_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shm = ShmemInitStruct("sync workers", shmem_size(), &found);
	if (!found)
	{
		memset(shm, 0, shmem_size());
		SpinLockInit(&shm->mutex);
		shm->nslots = slot_count();
	}
	budget_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

void
worker_init(void)
{
	BackgroundWorker bgw;

	lifecycle_define_gucs();
	DefineCustomIntVariable("sync.poll_interval",
							"Longest sleep of an idle sync worker.",
							"Commits of captured writes wake the worker at once; this only bounds the sleep.",
							&sync_poll_interval_ms, 10000, 10, 3600000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("sync.database_rescan_interval",
							"How often the sync supervisor looks for new databases.",
							"CREATE EXTENSION sync starts a worker at once; this finds databases created from a template that has the extension.",
							&sync_rescan_interval_s, 60, 1, 86400, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomEnumVariable("sync.worker_log_level",
							 "log_min_messages of the sync supervisor and workers.",
							 "\"default\" keeps the server's log_min_messages; debug1 logs every round.",
							 &sync_worker_log_level, -1, log_level_options, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("sync.push_helper_backlog",
							"Ready entries of one mirror, beyond a push's first claim, at which the worker starts a push helper.",
							"The helper pushes the same mirror beside the worker, sharing the connection's max_in_flight and rate limits; 0 starts none.",
							&sync_push_helper_backlog, 20000, 0, INT_MAX, PGC_SIGHUP, 0, NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress || IsBinaryUpgrade)
		return;

	/* a postmaster-level setting can only exist when loaded at start-up */
	DefineCustomIntVariable("sync.max_workers",
							"Most databases served by a sync worker at once.",
							"Each uses one background worker slot (max_worker_processes), plus one for the supervisor.",
							&sync_max_workers, 8, 1, 1000, PGC_POSTMASTER, 0, NULL, NULL, NULL);

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = sync_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = sync_shmem_startup;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = sync_ProcessUtility;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "sync");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "sync_supervisor_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "sync supervisor");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "sync supervisor");
	RegisterBackgroundWorker(&bgw);
}

/* the slot of a database, or -1; caller holds the mutex */
static int
find_slot(Oid dboid)
{
	static int	cached = -1;
	int			i;

	if (cached >= 0 && cached < shm->nslots && shm->slots[cached].dboid == dboid)
		return cached;
	for (i = 0; i < shm->nslots; i++)
		if (shm->slots[i].dboid == dboid)
			return cached = i;
	return -1;
}

/* 1 s, 2 s, 4 s ... after consecutive short runs or errors, capped */
static long
restart_backoff_ms(int restarts)
{
	return backoff_base_ms(restarts + 1, 1000, MAX_BACKOFF_MS);
}

/* sync.worker_log_level: this process's log_min_messages */
static void
apply_worker_log_level(void)
{
	const struct config_enum_entry *e;

	if (sync_worker_log_level == -1)
	{
		/* back to the value of the configuration file (a RESET) */
		SetConfigOption("log_min_messages", NULL, PGC_SUSET, PGC_S_SESSION);
		return;
	}
	for (e = log_level_options; e->name; e++)
		if (e->val == sync_worker_log_level && !e->hidden)
		{
			SetConfigOption("log_min_messages", e->name, PGC_SUSET, PGC_S_SESSION);
			return;
		}
}

/* ---------------------------------------------------------------------
 * waking
 * --------------------------------------------------------------------- */

void
sync_worker_wake(Oid dboid)
{
	Latch	   *latch = NULL;
	int			i;

	if (shm == NULL)
		return;

	/*
	 * Counted before the latch is set: a worker woken by the latch sees the
	 * count changed (sync_worker_wakes).  The other order let a worker
	 * waiting on a change stream wake, find the count unchanged and wait
	 * on until its next HTTP event — about a second.  A wake-up counted
	 * since the worker's round began (sync_worker_round_wakes) may be a
	 * commit that round did not see.
	 */
	SpinLockAcquire(&shm->mutex);
	i = find_slot(dboid);
	if (i >= 0)
	{
		latch = shm->slots[i].latch;
		shm->slots[i].wakes++;
	}
	SpinLockRelease(&shm->mutex);
	/*
	 * Outside the spinlock (SetLatch may signal).  A latch is a PGPROC's: if
	 * the worker exited meanwhile, another process gets a harmless wakeup.
	 */
	if (latch)
		SetLatch(latch);
}

static void
kick_supervisor(void)
{
	Latch	   *latch;

	SpinLockAcquire(&shm->mutex);
	latch = shm->supervisor_latch;
	SpinLockRelease(&shm->mutex);
	if (latch)
		SetLatch(latch);
}

static void release_held_databases(void);

static bool wake_pending = false;
static bool request_pending = false;
static bool xact_callback_registered = false;

/* CREATE EXTENSION committed here: whatever the slot says, start a worker */
static void
request_worker_now(Oid dboid)
{
	int			i;

	SpinLockAcquire(&shm->mutex);
	i = find_slot(dboid);
	if (i >= 0)
	{
		DbSlot	   *s = &shm->slots[i];

		s->requested = true;
		if (s->state == SLOT_NO_EXTENSION)
			s->state = SLOT_FREE;
		if (s->state == SLOT_EXITED || s->state == SLOT_FAILED)
			s->restart_at = 0;
	}
	SpinLockRelease(&shm->mutex);
	kick_supervisor();
}

static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			/* the commit is visible to others by now (ProcArrayEndTransaction) */
			if (wake_pending)
				sync_worker_wake(MyDatabaseId);
			if (request_pending)
				request_worker_now(MyDatabaseId);
			wake_pending = request_pending = false;
			release_held_databases();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:

			/*
			 * Nothing to see yet at PREPARE TRANSACTION: COMMIT PREPARED
			 * wakes the worker instead (see sync_ProcessUtility).
			 */
			wake_pending = request_pending = false;
			release_held_databases();
			break;
		default:
			break;
	}
}

static void
register_xact_callback(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		xact_callback_registered = true;
	}
}

void
sync_wake_at_commit(void)
{
	if (wake_pending || shm == NULL)
		return;
	register_xact_callback();
	wake_pending = true;
}

Datum
sync_wake(PG_FUNCTION_ARGS)
{
	sync_wake_at_commit();
	PG_RETURN_VOID();
}

/* Called by CREATE EXTENSION: this database wants a worker (at commit). */
Datum
sync_request_worker(PG_FUNCTION_ARGS)
{
	if (shm != NULL)
	{
		register_xact_callback();
		request_pending = true;
	}
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * database-level commands: stop the worker, hold it off, let it go
 * --------------------------------------------------------------------- */

/* Stop dboid's worker and keep it stopped until release_database(). */
static bool
hold_database(Oid dboid)
{
	TimestampTz deadline;
	int			i;
	pid_t		pid = 0;

	SpinLockAcquire(&shm->mutex);
	i = find_slot(dboid);
	if (i >= 0)
	{
		shm->slots[i].hold_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HOLD_SAFETY_MS);
		pid = shm->slots[i].pid;
	}
	SpinLockRelease(&shm->mutex);
	if (i < 0)
		return false;
	if (pid != 0)
		(void) kill(pid, SIGTERM);

	/*
	 * Wait until it is gone.  One that is starting sees the hold when it has
	 * connected and leaves; the command itself waits a further 5 s for
	 * other sessions to go.
	 */
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HOLD_WAIT_MS);
	for (;;)
	{
		bool		gone;

		SpinLockAcquire(&shm->mutex);
		gone = shm->slots[i].dboid != dboid || shm->slots[i].pid == 0;
		SpinLockRelease(&shm->mutex);
		if (gone || GetCurrentTimestamp() >= deadline)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return true;
}

static void
release_database(Oid dboid)
{
	int			i;

	SpinLockAcquire(&shm->mutex);
	i = find_slot(dboid);
	if (i >= 0)
	{
		shm->slots[i].hold_until = 0;
		shm->slots[i].restart_at = 0;
	}
	SpinLockRelease(&shm->mutex);
	kick_supervisor();
}

/*
 * Held databases are let go when the transaction ends, not when the command
 * returns: until DROP DATABASE commits, the supervisor would still see the
 * database and start a worker that could only fail.
 */
static List *held_databases = NIL;

static void
release_held_databases(void)
{
	ListCell   *lc;

	foreach(lc, held_databases)
		release_database(lfirst_oid(lc));
	list_free(held_databases);
	held_databases = NIL;
}

/* the database a database-level command needs to itself, if any */
static Oid
database_needed_alone(Node *parsetree)
{
	const char *name = NULL;
	ListCell   *lc;
	Oid			dboid;

	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
			/* (it will fail in a transaction block: leave the worker be) */
			if (!IsTransactionBlock())
				name = ((DropdbStmt *) parsetree)->dbname;
			break;
		case T_RenameStmt:
			if (((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
				name = ((RenameStmt *) parsetree)->subname;
			break;
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) parsetree)->options)
				if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
					name = ((AlterDatabaseStmt *) parsetree)->dbname;
			break;
		case T_CreatedbStmt:
			if (IsTransactionBlock())
				break;
			foreach(lc, ((CreatedbStmt *) parsetree)->options)
			{
				DefElem    *d = (DefElem *) lfirst(lc);

				if (strcmp(d->defname, "template") == 0 && d->arg != NULL)
					name = defGetString(d);
			}
			break;
		default:
			break;
	}
	if (name == NULL)
		return InvalidOid;
	dboid = get_database_oid(name, true);
	/* only for those allowed to run the command: nobody else may pause a worker */
	if (!OidIsValid(dboid) || !pg_database_ownercheck(dboid, GetUserId()))
		return InvalidOid;
	return dboid;
}

/* DROP EXTENSION sync (alone or in a list) */
static bool
drops_this_extension(Node *parsetree)
{
	DropStmt   *drop;
	ListCell   *lc;

	if (!IsA(parsetree, DropStmt))
		return false;
	drop = (DropStmt *) parsetree;
	if (drop->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, drop->objects)
		if (IsA(lfirst(lc), String) && strcmp(strVal(lfirst(lc)), "sync") == 0)
			return true;
	return false;
}

static void
sync_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					bool readOnlyTree, ProcessUtilityContext context,
					ParamListInfo params, QueryEnvironment *queryEnv,
					DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	bool		wake = false;

	if (shm != NULL)
	{
		Oid			dboid = database_needed_alone(parsetree);

		if (OidIsValid(dboid) && hold_database(dboid))
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			register_xact_callback();
			held_databases = lappend_oid(held_databases, dboid);
			MemoryContextSwitchTo(old);
		}

		/*
		 * COMMIT PREPARED: a prepared transaction's captured writes become
		 * visible (it must run in the prepared transaction's database).
		 * DROP EXTENSION: the worker should notice now, not at its next
		 * round.  Both wake it when this transaction commits.
		 */
		wake = (IsA(parsetree, TransactionStmt) &&
				((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED) ||
			drops_this_extension(parsetree);
	}

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);

	if (wake)
		sync_wake_at_commit();
}

/* ---------------------------------------------------------------------
 * the supervisor
 * --------------------------------------------------------------------- */

typedef struct DbInfo
{
	Oid			oid;
	char		name[NAMEDATALEN];
} DbInfo;

/* the supervisor's handles of the workers it started, by slot */
static BackgroundWorkerHandle **handles = NULL;

/* Databases that allow connections and are not templates. */
static List *
database_list(void)
{
	List	   *dbs = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	MemoryContext caller = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		/* a template with a worker would block CREATE DATABASE from it */
		if (db->datallowconn && !db->datistemplate)
		{
			/* the list must outlive the transaction */
			MemoryContext old = MemoryContextSwitchTo(caller);
			DbInfo	   *d = palloc(sizeof(DbInfo));

			d->oid = db->oid;
			strlcpy(d->name, NameStr(db->datname), NAMEDATALEN);
			dbs = lappend(dbs, d);
			MemoryContextSwitchTo(old);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
	return dbs;
}

static DbInfo *
db_in_list(List *dbs, Oid dboid)
{
	ListCell   *lc;

	foreach(lc, dbs)
		if (((DbInfo *) lfirst(lc))->oid == dboid)
			return (DbInfo *) lfirst(lc);
	return NULL;
}

static bool
start_db_worker(int slot, const DbInfo *db, uint32 generation)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *h;
	MemoryContext old;
	bool		ok;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;	/* the supervisor restarts it */
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "sync");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "sync_db_worker_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "sync worker for database \"%s\"", db->name);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "sync worker");
	bgw.bgw_main_arg = ObjectIdGetDatum(db->oid);
	memcpy(bgw.bgw_extra, &slot, sizeof(int));
	memcpy(bgw.bgw_extra + sizeof(int), &generation, sizeof(uint32));
	bgw.bgw_notify_pid = MyProcPid;

	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&bgw, &h);
	MemoryContextSwitchTo(old);
	if (!ok)
		return false;
	if (handles[slot])
		pfree(handles[slot]);
	handles[slot] = h;
	return true;
}

/* a process we have no handle for (started by a previous supervisor) */
static bool
pid_alive(pid_t pid)
{
	return pid != 0 && (kill(pid, 0) == 0 || errno != ESRCH);
}

/* the sooner of the next pass already due (-1: none) and one due in ms */
static long
sooner_ms(long next_ms, long ms)
{
	return next_ms < 0 ? ms : Min(next_ms, ms);
}

/*
 * Whether the worker of slot i, if active, is gone without its exit
 * callback having said so (killed, or died before attaching).  A worker we
 * started is asked about through its handle; one a previous supervisor
 * started has no handle here: its pid tells, or, if it never attached, the
 * time since its start.
 */
static bool
active_worker_gone(int i, DbSlot *s, TimestampTz now)
{
	pid_t		pid = 0;

	if (!SLOT_ACTIVE(s))
		return false;
	if (handles[i] != NULL)
	{
		BgwHandleStatus st = GetBackgroundWorkerPid(handles[i], &pid);

		if (st == BGWH_POSTMASTER_DIED)
			proc_exit(1);
		return st == BGWH_STOPPED;
	}
	return s->pid == 0 ?
		TimestampDifferenceExceeds(s->started_at, now, 30000) :
		!pid_alive(s->pid);
}

/*
 * The first half of a pass, over every slot: reap the workers that died
 * unnoticed (restarted after their backoff), stop those whose database we
 * no longer serve, forget the databases that are gone.  Returns how many
 * workers are active; *all_running says whether every one of them is past
 * its start (a short-lived probe of a database without the extension is
 * not).
 */
static int
review_slots(List *dbs, TimestampTz now, bool *all_running)
{
	int			i,
				active = 0;

	*all_running = true;
	for (i = 0; i < shm->nslots; i++)
	{
		DbSlot	   *s = &shm->slots[i];
		bool		gone = active_worker_gone(i, s, now);
		pid_t		pid;

		SpinLockAcquire(&shm->mutex);
		if (gone && SLOT_ACTIVE(s))
		{
			/* died before its exit callback could run (or before attaching) */
			s->state = SLOT_FAILED;
			s->exited_at = now;
			s->restart_at = TimestampTzPlusMilliseconds(now, restart_backoff_ms(s->restarts));
			s->restarts++;
			s->pid = 0;
			s->latch = NULL;
		}
		if (SLOT_ACTIVE(s))
		{
			active++;
			if (s->state != SLOT_RUNNING)
				*all_running = false;
			pid = s->pid;
			if (pid != 0 && db_in_list(dbs, s->dboid) == NULL)
			{
				/* no longer a database we serve (ALLOW_CONNECTIONS false, template) */
				SpinLockRelease(&shm->mutex);
				(void) kill(pid, SIGTERM);
				SpinLockAcquire(&shm->mutex);
			}
		}
		else if (s->dboid != InvalidOid && db_in_list(dbs, s->dboid) == NULL)
		{
			/* the database is gone: forget it */
			memset(s, 0, sizeof(DbSlot));
		}
		SpinLockRelease(&shm->mutex);
		if (s->dboid == InvalidOid && handles[i] != NULL)
		{
			pfree(handles[i]);
			handles[i] = NULL;
		}
	}
	return active;
}

/*
 * The slot of a database, claimed for it if it is new: a free slot, or else
 * the one of the database without the extension seen longest ago (that
 * database is simply probed again later).  -1 when every slot is busy.
 */
static int
slot_for_database(Oid dboid)
{
	int			slot;

	SpinLockAcquire(&shm->mutex);
	slot = find_slot(dboid);
	if (slot < 0)
	{
		int			victim = -1;
		int			i;

		for (i = 0; i < shm->nslots; i++)
		{
			DbSlot	   *c = &shm->slots[i];

			if (c->dboid == InvalidOid)
			{
				victim = i;
				break;
			}
			if (c->state == SLOT_NO_EXTENSION && !c->requested &&
				(victim < 0 || c->exited_at < shm->slots[victim].exited_at))
				victim = i;
		}
		if (victim >= 0)
		{
			memset(&shm->slots[victim], 0, sizeof(DbSlot));
			shm->slots[victim].dboid = dboid;
			shm->slots[victim].state = SLOT_FREE;
		}
		slot = victim;
	}
	SpinLockRelease(&shm->mutex);
	return slot;
}

/*
 * Whether a slot's database should get a worker now.  Not while one runs,
 * nor for a database without the extension that nobody asked for; not yet
 * while a database-level command holds it off or its restart pause lasts:
 * then *wait_ms says for how long (otherwise it is -1).
 */
static bool
worker_due(const DbSlot *s, TimestampTz now, long *wait_ms)
{
	*wait_ms = -1;
	if (SLOT_ACTIVE(s) || (s->state == SLOT_NO_EXTENSION && !s->requested))
		return false;
	if (s->hold_until > now)
	{
		*wait_ms = (long) ((s->hold_until - now) / 1000) + 1;
		return false;
	}
	if ((s->state == SLOT_EXITED || s->state == SLOT_FAILED) && s->restart_at > now)
	{
		*wait_ms = (long) ((s->restart_at - now) / 1000) + 1;
		return false;
	}
	return true;
}

/*
 * Start the worker of a slot's database, as a new generation.  When the
 * postmaster has no background worker slot left, the slot is marked failed
 * (tried again in 5 s) and a warning is given once per episode
 * (*warned_slots).  Returns whether it started.
 */
static bool
start_slot_worker(int slot, const DbInfo *db, TimestampTz now, bool *warned_slots)
{
	DbSlot	   *s = &shm->slots[slot];
	uint32		generation;

	SpinLockAcquire(&shm->mutex);
	generation = ++s->generation;
	s->state = SLOT_STARTING;
	s->requested = false;
	s->pid = 0;
	s->latch = NULL;
	s->started_at = now;
	s->cycles = 0;
	SpinLockRelease(&shm->mutex);

	if (!start_db_worker(slot, db, generation))
	{
		SpinLockAcquire(&shm->mutex);
		s->state = SLOT_FAILED;
		s->exited_at = now;
		s->restart_at = TimestampTzPlusMilliseconds(now, 5000);
		strlcpy(s->last_error, "no background worker slot free (max_worker_processes)",
				sizeof(s->last_error));
		SpinLockRelease(&shm->mutex);
		if (!*warned_slots)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("sync: could not start a worker for database \"%s\": out of background worker slots",
							db->name),
					 errhint("You might need to increase max_worker_processes: each database with sync uses one, plus one for the supervisor.")));
		*warned_slots = true;
		return false;
	}
	*warned_slots = false;
	return true;
}

/*
 * Warn (once per episode) when the cap keeps a database from its worker.
 * Short-lived probes of databases without the extension also count against
 * the cap; while one runs, the others simply wait for the next pass (a
 * probe's exit wakes us), which is no reason to warn: hence all_running.
 */
static void
warn_cap_reached(bool cap_blocked, bool all_running, const char *blocked_name,
				 bool *warned_cap)
{
	if (cap_blocked && all_running)
	{
		if (!*warned_cap)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("sync: not starting a worker for database \"%s\": sync.max_workers (%d) reached",
							blocked_name, sync_max_workers),
					 errhint("Raise sync.max_workers (and max_worker_processes) and restart the server.")));
		*warned_cap = true;
	}
	else if (!cap_blocked)
		*warned_cap = false;
}

/*
 * One pass: notice workers that are gone, forget databases that are gone,
 * start the workers that are due.  Returns the ms until the next pass is
 * due for a pending restart (-1: none).
 */
static long
supervise(bool *warned_cap, bool *warned_slots)
{
	List	   *dbs = database_list();
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();
	bool		all_running;
	int			active;
	bool		cap_blocked = false,
				slots_blocked = false;
	const char *blocked_name = NULL;
	long		next_ms = -1;

	active = review_slots(dbs, now, &all_running);

	foreach(lc, dbs)
	{
		DbInfo	   *db = (DbInfo *) lfirst(lc);
		int			slot = slot_for_database(db->oid);
		long		wait_ms;

		if (slot < 0)
		{
			slots_blocked = true;	/* every slot busy: try again next pass */
			continue;
		}
		if (!worker_due(&shm->slots[slot], now, &wait_ms))
		{
			if (wait_ms >= 0)
				next_ms = sooner_ms(next_ms, wait_ms);
			continue;
		}
		if (active >= sync_max_workers)
		{
			cap_blocked = true;
			if (blocked_name == NULL)
				blocked_name = pstrdup(db->name);
			continue;
		}
		if (!start_slot_worker(slot, db, now, warned_slots))
		{
			next_ms = sooner_ms(next_ms, 5000);
			continue;
		}
		active++;
		all_running = false;
	}

	warn_cap_reached(cap_blocked, all_running, blocked_name, warned_cap);
	if (slots_blocked)
		next_ms = sooner_ms(next_ms, 1000);
	return next_ms;
}

/*
 * A supervisor restarted on its own (after an error; the workers live on)
 * finds slots it has no handle for: it keeps those whose process is alive
 * and lets the others be started again.
 */
static void
adopt_slots(void)
{
	int			i;
	TimestampTz now = GetCurrentTimestamp();

	for (i = 0; i < shm->nslots; i++)
	{
		DbSlot	   *s = &shm->slots[i];

		SpinLockAcquire(&shm->mutex);
		if (s->state == SLOT_STARTING && s->pid == 0)
		{
			/* registered by our predecessor: a stale start exits by itself */
			s->generation++;
			s->state = SLOT_EXITED;
			s->restart_at = now;
		}
		SpinLockRelease(&shm->mutex);
	}
}

void
sync_supervisor_main(Datum arg)
{
	bool		warned_cap = false,
				warned_slots = false;
	MemoryContext cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("sync supervisor");
	apply_worker_log_level();

	handles = MemoryContextAllocZero(TopMemoryContext, sizeof(BackgroundWorkerHandle *) * shm->nslots);
	adopt_slots();
	SpinLockAcquire(&shm->mutex);
	shm->supervisor_pid = MyProcPid;
	shm->supervisor_latch = MyLatch;
	SpinLockRelease(&shm->mutex);
	ereport(LOG, (errmsg("sync supervisor started (sync.max_workers = %d)", sync_max_workers)));
	cxt = AllocSetContextCreate(TopMemoryContext, "sync supervisor", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		long		next_ms,
					timeout;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			apply_worker_log_level();
		}

		/* every wake is a pass: worker exits (bgw_notify_pid), requests, timeouts */
		MemoryContextSwitchTo(cxt);
		next_ms = supervise(&warned_cap, &warned_slots);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(cxt);

		timeout = sync_rescan_interval_s * 1000L;
		if (next_ms >= 0)
			timeout = Min(timeout, Max(next_ms, 10));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ---------------------------------------------------------------------
 * the per-database worker
 * --------------------------------------------------------------------- */

static int	my_slot = -1;
static uint32 my_generation = 0;
static volatile sig_atomic_t got_sigterm = false;

/* the wake-up count when the current round began (hold_or_sync) */
static uint64 round_wakes = 0;

/*
 * How long a worker with nothing due for next_ms (-1: nothing scheduled)
 * waits before its next round: sync.poll_interval at most.
 */
long
sync_worker_sleep_ms(long next_ms)
{
	return next_ms < 0 ? sync_poll_interval_ms : Min(next_ms, (long) sync_poll_interval_ms);
}

uint64
sync_worker_round_wakes(void)
{
	return round_wakes;
}

/* How often this worker was woken so far (a change ends a stream's long poll). */
uint64
sync_worker_wakes(void)
{
	uint64		n = 0;

	if (shm == NULL || my_slot < 0)
		return 0;
	SpinLockAcquire(&shm->mutex);
	n = shm->slots[my_slot].wakes;
	SpinLockRelease(&shm->mutex);
	return n;
}

/* SIGTERM: remember it was one (an "exited", not a "failed"), then die() */
static void
worker_sigterm(SIGNAL_ARGS)
{
	got_sigterm = true;
	die(postgres_signal_arg);
}

static DbSlot *
my_slot_locked(void)
{
	DbSlot	   *s = &shm->slots[my_slot];

	return (s->pid == MyProcPid && s->generation == my_generation) ? s : NULL;
}

/* before_shmem_exit: the slot tells what became of us */
static void
db_worker_exit(int code, Datum arg)
{
	DbSlot	   *s;
	TimestampTz now = GetCurrentTimestamp();
	pid_t		helper = 0;

	SpinLockAcquire(&shm->mutex);
	s = my_slot_locked();
	if (s != NULL)
	{
		if (SLOT_ACTIVE(s))
			s->state = (got_sigterm || code == 0) ? SLOT_EXITED : SLOT_FAILED;
		if (s->hold_until > now)
			s->restart_at = s->hold_until;	/* held off: not a failure */
		else
		{
			if (TimestampDifferenceExceeds(s->started_at, now, HEALTHY_RUN_MS))
				s->restarts = 0;
			s->restart_at = TimestampTzPlusMilliseconds(now, restart_backoff_ms(s->restarts));
			s->restarts++;
		}
		s->exited_at = now;
		s->latch = NULL;
		s->pid = 0;
		helper = s->helper_pid;
	}
	SpinLockRelease(&shm->mutex);
	/* the helper pushes for this worker only: it goes too */
	if (helper != 0)
		kill(helper, SIGTERM);
}

/* keep the text of the error that ends the process for the slot */
static emit_log_hook_type prev_emit_log_hook = NULL;

static void
worker_emit_log(ErrorData *edata)
{
	if (edata->elevel >= ERROR && my_slot >= 0 && edata->message)
	{
		SpinLockAcquire(&shm->mutex);
		if (my_slot_locked() != NULL)
			strlcpy(shm->slots[my_slot].last_error, edata->message,
					sizeof(shm->slots[my_slot].last_error));
		SpinLockRelease(&shm->mutex);
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

static char my_dbname[NAMEDATALEN];

/* the extension's OID (InvalidOid: not installed), in a short transaction */
static Oid
extension_oid(void)
{
	Oid			oid;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	oid = get_extension_oid("sync", true);
	if (my_dbname[0] == '\0')
	{
		char	   *name = get_database_name(MyDatabaseId);

		strlcpy(my_dbname, name ? name : "?", sizeof(my_dbname));
	}
	CommitTransactionCommand();
	return oid;
}

/*
 * Whether this round must be skipped, in a short transaction: sync.enabled
 * is off, the installed extension is another version than the library's
 * (not synced until ALTER EXTENSION sync UPDATE), or the database is a
 * copy (lifecycle.c).  Returns the reason (palloc'd) or NULL; *hint gets
 * what to do, for the log.
 */
static char *
round_hold(const char **hint)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *why = NULL;

	*hint = NULL;
	if (!sync_enabled)
	{
		*hint = "Set sync.enabled = on in the server's configuration and reload it, if this server should sync.";
		return pstrdup("sync.enabled is off on this server");
	}
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	{
		char	   *v = lifecycle_installed_version();

		if (v != NULL && strcmp(v, SYNC_VERSION) != 0)
		{
			why = MemoryContextStrdup(TopTransactionContext,
									  psprintf("the installed extension sync is version %s, the library is version %s",
											   v, SYNC_VERSION));
			*hint = "Run ALTER EXTENSION sync UPDATE in this database to sync it again.";
		}
	}
	if (why == NULL)
	{
		why = lifecycle_held_reason();
		if (why != NULL)
			*hint = "SELECT sync.resume_copy() makes this database the one that syncs, SELECT sync.detach_copy() removes its connections and mirrors.";
	}
	if (why != NULL)
		why = MemoryContextStrdup(caller, why);	/* out of the transaction's memory */
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
	return why;
}

/* leave with code 0 (not restarted unless asked for); never returns */
static void
leave(SlotState state, bool restart_now)
{
	DbSlot	   *s;

	SpinLockAcquire(&shm->mutex);
	s = my_slot_locked();
	if (s != NULL)
	{
		/* CREATE EXTENSION committed after our start: look again */
		if (state == SLOT_NO_EXTENSION && s->requested)
		{
			state = SLOT_EXITED;
			restart_now = true;
		}
		s->state = state;
		s->exited_at = GetCurrentTimestamp();
		s->restart_at = restart_now ? 0 : TimestampTzPlusMilliseconds(s->exited_at, restart_backoff_ms(0));
		s->latch = NULL;
		s->pid = 0;
	}
	SpinLockRelease(&shm->mutex);
	proc_exit(0);
}

static void
note_error(const char *msg)
{
	SpinLockAcquire(&shm->mutex);
	if (my_slot_locked() != NULL)
		strlcpy(shm->slots[my_slot].last_error, msg, sizeof(shm->slots[my_slot].last_error));
	SpinLockRelease(&shm->mutex);
}

/* why the database is held, as last logged ("": not held) */
static char held_reason[512];

/* a held round: log the reason once (again only when it changes) */
static void
report_hold(const char *why, const char *hint)
{
	if (strncmp(why, held_reason, sizeof(held_reason) - 1) == 0)
		return;
	ereport(LOG,
			(errmsg("sync worker: not syncing database \"%s\": %s", my_dbname, why),
			 hint ? errhint("%s", hint) : 0));
	strlcpy(held_reason, why, sizeof(held_reason));
	note_error(psprintf("held: %s", why));
}

/*
 * Take the slot the supervisor started us for (bgw_extra: the slot and its
 * generation) unless a newer start, or a forgotten database, owns it by
 * now: then leave at once, quietly.  From here on the slot tells what
 * became of us and the text of the error that ends the process.
 */
static void
claim_slot(Oid dboid)
{
	DbSlot	   *s;
	bool		ok;

	memcpy(&my_slot, MyBgworkerEntry->bgw_extra, sizeof(int));
	memcpy(&my_generation, MyBgworkerEntry->bgw_extra + sizeof(int), sizeof(uint32));
	if (my_slot < 0 || my_slot >= shm->nslots)
		proc_exit(0);

	SpinLockAcquire(&shm->mutex);
	s = &shm->slots[my_slot];
	ok = s->dboid == dboid && s->generation == my_generation && s->state == SLOT_STARTING;
	if (ok)
	{
		s->pid = MyProcPid;
		s->latch = MyLatch;
		s->last_error[0] = '\0';
	}
	SpinLockRelease(&shm->mutex);
	if (!ok)
		proc_exit(0);
	before_shmem_exit(db_worker_exit, (Datum) 0);
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = worker_emit_log;
}

/*
 * Once connected: whether this database is ours to serve.  Not while a
 * database-level command (DROP DATABASE ...) wants it, nor without the
 * extension: then leave.  Otherwise the slot says "running"; returns the
 * extension's OID, to notice a DROP and CREATE EXTENSION later.
 */
static Oid
confirm_start(void)
{
	Oid			ext_oid;
	bool		ok;
	DbSlot	   *s;

	SpinLockAcquire(&shm->mutex);
	ok = shm->slots[my_slot].hold_until <= GetCurrentTimestamp();
	SpinLockRelease(&shm->mutex);
	if (!ok)
		leave(SLOT_EXITED, false);

	ext_oid = extension_oid();
	if (!OidIsValid(ext_oid))
		leave(SLOT_NO_EXTENSION, false);

	SpinLockAcquire(&shm->mutex);
	if ((s = my_slot_locked()) != NULL)
		s->state = SLOT_RUNNING;
	SpinLockRelease(&shm->mutex);
	ereport(LOG, (errmsg("sync worker started for database \"%s\"", my_dbname)));
	return ext_oid;
}

/*
 * Before each round: leave if the extension was dropped (no restart until
 * it is created again), restart afresh if it was dropped and created again
 * (the engine may cache OIDs).
 */
static void
leave_if_extension_changed(Oid ext_oid)
{
	Oid			cur = extension_oid();

	if (!OidIsValid(cur))
	{
		ereport(LOG, (errmsg("sync worker: the extension was dropped from database \"%s\"; exiting",
							 my_dbname)));
		leave(SLOT_NO_EXTENSION, false);
	}
	if (cur != ext_oid)
	{
		ereport(LOG, (errmsg("sync worker: the extension was created again; restarting")));
		leave(SLOT_EXITED, true);
	}
}

/*
 * The body of a round: if the database is held (round_hold), say why, once;
 * otherwise one engine round, saying first when a hold has ended.  Returns
 * the ms until the engine wants the next round (-1: none due).
 */
static long
hold_or_sync(void)
{
	const char *hint;
	char	   *why;

	why = round_hold(&hint);
	if (why != NULL)
	{
		report_hold(why, hint);
		return -1;
	}
	if (held_reason[0] != '\0')
	{
		ereport(LOG,
				(errmsg("sync worker: database \"%s\" is no longer held; syncing", my_dbname)));
		held_reason[0] = '\0';
		note_error("");
	}
	pgstat_report_activity(STATE_RUNNING, "sync: engine round");
	/* before the round looks at anything: a wake-up after this may be news */
	round_wakes = sync_worker_wakes();
	return sync_engine_cycle();
}

/*
 * After an ERROR in a round: report it, abort its transaction, release what
 * an error outside any transaction (between transactions, in HTTP) leaves
 * held, and keep the error's text in the slot.
 */
static void
clean_up_failed_round(MemoryContext loop_cxt)
{
	ErrorData  *edata;

	HOLD_INTERRUPTS();
	MemoryContextSwitchTo(loop_cxt);
	EmitErrorReport();
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	LWLockReleaseAll();
	ConditionVariableCancelSleep();
	pgstat_report_wait_end();
	note_error(edata->message ? edata->message : "unknown error");
	RESUME_INTERRUPTS();
}

/*
 * One round, in loop_cxt (reset afterwards).  A failing round must not end
 * the worker: it is reported, cleaned up and followed by a pause that grows
 * with the consecutive errors.  Returns the ms until the next round is due
 * (-1: none; the worker sleeps sync.poll_interval).
 */
static long
run_round(MemoryContext loop_cxt, int *consecutive_errors)
{
	long		next_ms = -1;

	MemoryContextSwitchTo(loop_cxt);
	PG_TRY();
	{
		next_ms = hold_or_sync();
		*consecutive_errors = 0;
	}
	PG_CATCH();
	{
		clean_up_failed_round(loop_cxt);
		(*consecutive_errors)++;
		next_ms = restart_backoff_ms(*consecutive_errors - 1);
		/* a DROP EXTENSION while the round ran: leave at once, quietly */
		if (!OidIsValid(extension_oid()))
			leave(SLOT_NO_EXTENSION, false);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(TopMemoryContext);
	MemoryContextReset(loop_cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	return next_ms;
}

/* after each round: what sync.worker_status() shows of it */
static void
note_round_done(void)
{
	DbSlot	   *s;

	SpinLockAcquire(&shm->mutex);
	if ((s = my_slot_locked()) != NULL)
	{
		s->cycles++;
		s->poll_interval_ms = sync_poll_interval_ms;
		s->memory_bytes = (int64) MemoryContextMemAllocated(TopMemoryContext, true);
	}
	SpinLockRelease(&shm->mutex);
}

/*
 * Sleep until the next round is due or the latch is set (a commit of
 * captured writes, SIGTERM ...), noting a wake-up by the latch in the slot.
 * Statistics are flushed before a sleep: it may be long.
 */
static void
sleep_until_next_round(long timeout)
{
	int			rc;
	DbSlot	   *s;

	if (timeout == 0)
	{
		pgstat_report_stat(false);
		return;
	}
	pgstat_report_stat(true);
	rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
				   timeout, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	if (rc & WL_LATCH_SET)
	{
		SpinLockAcquire(&shm->mutex);
		if ((s = my_slot_locked()) != NULL)
			s->last_wake = GetCurrentTimestamp();
		SpinLockRelease(&shm->mutex);
	}
}

void
sync_db_worker_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	Oid			ext_oid;
	MemoryContext loop_cxt;
	int			consecutive_errors = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, worker_sigterm);
	BackgroundWorkerUnblockSignals();
	claim_slot(dboid);

	/*
	 * As the bootstrap superuser: the worker reads the connections' secrets
	 * and writes every mirrored table, whoever owns it; the engine switches
	 * to the extension owner where it acts on the extension's behalf.
	 */
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("sync worker");
	apply_worker_log_level();

	/*
	 * The worker's statements are short and planned again for each batch:
	 * JIT compilation would cost more than it saves.
	 */
	SetConfigOption("jit", "off", PGC_USERSET, PGC_S_SESSION);

	ext_oid = confirm_start();

	/*
	 * Start-up recovery (e.g. releasing claims left by a crashed predecessor)
	 * belongs to the engine's first round: sync_engine_cycle() is the only
	 * engine entry point the worker calls.
	 */
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "sync worker round", ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		long		next_ms;
		long		timeout;
		TimestampTz t0;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			apply_worker_log_level();
			elog(DEBUG1, "sync worker: configuration reloaded: sync.poll_interval = %d ms",
				 sync_poll_interval_ms);
		}
		leave_if_extension_changed(ext_oid);

		t0 = GetCurrentTimestamp();
		next_ms = run_round(loop_cxt, &consecutive_errors);

		timeout = sync_worker_sleep_ms(next_ms);
		elog(DEBUG1, "sync worker: round took %ld ms; sleeping %ld ms",
			 (long) ((GetCurrentTimestamp() - t0) / 1000), timeout);
		note_round_done();
		sleep_until_next_round(timeout);
	}
}

/* ---------------------------------------------------------------------
 * The push helper
 *
 * The worker is one process: claiming, sending and recording a push all
 * use its CPU, and a large backlog keeps it busy while the machine's other
 * cores idle.  When one mirror's backlog is large (push.c decides), the
 * worker starts one helper, a background worker of its own that pushes the
 * same mirror beside it until nothing is left to claim, then exits.  The
 * two claim different entries (a claim skips what another holds, and a
 * row's entries go one at a time), and share the connection's
 * max_in_flight and rate limits (budget.c).  The helper runs only while
 * its worker does: the worker's exit signals it, and it checks at start
 * that the worker is still the one that asked.  Its errors are recorded
 * against the mirror as the worker's are.
 * --------------------------------------------------------------------- */

/*
 * The backlog at which this process starts a push helper now (see
 * sync.push_helper_backlog); 0 when it starts none: it is not a
 * database's worker, or its helper runs already.
 */
int
sync_push_helper_threshold(void)
{
	DbSlot	   *s;
	bool		ok;
	TimestampTz now = GetCurrentTimestamp();

	/* (my_slot is set in a database's worker only: not in its helper) */
	if (sync_push_helper_backlog <= 0 || shm == NULL || my_slot < 0)
		return 0;
	/* (a registered helper that never ran is forgotten after 10 s) */
	SpinLockAcquire(&shm->mutex);
	s = my_slot_locked();
	ok = s != NULL && s->helper_pid == 0 &&
		(!s->helper_starting || TimestampDifferenceExceeds(s->helper_asked_at, now, 10000));
	SpinLockRelease(&shm->mutex);
	return ok ? sync_push_helper_backlog : 0;
}

/*
 * Start the helper for a mirror's push; false (no error) when no
 * background worker slot is free.
 */
bool
sync_push_helper_start(int mirror_id)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *h;
	DbSlot	   *s;
	Oid			dboid = MyDatabaseId;
	TimestampTz now = GetCurrentTimestamp();

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "sync");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "sync_push_helper_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "sync push helper for database \"%s\"", my_dbname);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "sync push helper");
	bgw.bgw_main_arg = Int32GetDatum(mirror_id);
	memcpy(bgw.bgw_extra, &my_slot, sizeof(int));
	memcpy(bgw.bgw_extra + sizeof(int), &my_generation, sizeof(uint32));
	memcpy(bgw.bgw_extra + sizeof(int) + sizeof(uint32), &dboid, sizeof(Oid));
	bgw.bgw_notify_pid = 0;

	SpinLockAcquire(&shm->mutex);
	if ((s = my_slot_locked()) != NULL)
	{
		s->helper_starting = true;
		s->helper_asked_at = now;
	}
	SpinLockRelease(&shm->mutex);
	if (!RegisterDynamicBackgroundWorker(&bgw, &h))
	{
		SpinLockAcquire(&shm->mutex);
		if ((s = my_slot_locked()) != NULL)
			s->helper_starting = false;
		SpinLockRelease(&shm->mutex);
		elog(DEBUG1, "sync worker: no background worker slot for a push helper (max_worker_processes)");
		return false;
	}
	pfree(h);
	elog(DEBUG1, "sync worker: started a push helper for mirror %d", mirror_id);
	return true;
}

/* the helper's worker's slot (my_slot stays -1 in the helper) */
static int	helper_slot = -1;

/* before_shmem_exit of the helper */
static void
push_helper_exit(int code, Datum arg)
{
	DbSlot	   *s = &shm->slots[helper_slot];

	SpinLockAcquire(&shm->mutex);
	if (s->helper_pid == MyProcPid)
		s->helper_pid = 0;
	SpinLockRelease(&shm->mutex);
}

void
sync_push_helper_main(Datum arg)
{
	int			mirror_id = DatumGetInt32(arg);
	uint32		generation;
	Oid			dboid;
	DbSlot	   *s;
	bool		ok;
	TimestampTz now;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	memcpy(&helper_slot, MyBgworkerEntry->bgw_extra, sizeof(int));
	memcpy(&generation, MyBgworkerEntry->bgw_extra + sizeof(int), sizeof(uint32));
	memcpy(&dboid, MyBgworkerEntry->bgw_extra + sizeof(int) + sizeof(uint32), sizeof(Oid));
	if (shm == NULL || helper_slot < 0 || helper_slot >= shm->nslots)
		proc_exit(0);

	/* only for the worker that asked, while it runs and nothing holds it off */
	now = GetCurrentTimestamp();
	SpinLockAcquire(&shm->mutex);
	s = &shm->slots[helper_slot];
	ok = s->dboid == dboid && s->generation == generation && s->state == SLOT_RUNNING &&
		s->pid != 0 && s->helper_pid == 0 && s->hold_until <= now;
	s->helper_starting = false;
	if (ok)
		s->helper_pid = MyProcPid;
	SpinLockRelease(&shm->mutex);
	if (!ok)
		proc_exit(0);
	before_shmem_exit(push_helper_exit, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("sync push helper");
	apply_worker_log_level();
	SetConfigOption("jit", "off", PGC_USERSET, PGC_S_SESSION);
	sync_engine_push_helper(mirror_id);
	proc_exit(0);
}

/* ---------------------------------------------------------------------
 * sync.worker_status()
 * --------------------------------------------------------------------- */

Datum
sync_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (shm == NULL)
		return (Datum) 0;
	for (i = 0; i < shm->nslots; i++)
	{
		DbSlot		s;
		Datum		v[12];
		bool		n[12] = {0};
		char	   *dbname;

		SpinLockAcquire(&shm->mutex);
		s = shm->slots[i];
		SpinLockRelease(&shm->mutex);
		if (s.dboid == InvalidOid || s.state == SLOT_FREE)
			continue;
		dbname = get_database_name(s.dboid);
		v[0] = dbname ? CStringGetTextDatum(dbname) : (Datum) 0;
		n[0] = dbname == NULL;
		v[1] = Int32GetDatum(s.pid);
		n[1] = s.pid == 0;
		v[2] = CStringGetTextDatum(slot_state_names[s.state]);
		v[3] = TimestampTzGetDatum(s.started_at);
		n[3] = s.started_at == 0;
		v[4] = Int64GetDatum(s.cycles);
		v[5] = TimestampTzGetDatum(s.last_wake);
		n[5] = s.last_wake == 0;
		v[6] = Int32GetDatum(s.restarts);
		v[7] = CStringGetTextDatum(s.last_error);
		n[7] = s.last_error[0] == '\0';
		v[8] = Int32GetDatum(s.poll_interval_ms);
		n[8] = s.poll_interval_ms == 0;
		v[9] = TimestampTzGetDatum(s.restart_at);
		n[9] = !(s.state == SLOT_EXITED || s.state == SLOT_FAILED) || s.restart_at == 0;
		v[10] = Int64GetDatum(s.memory_bytes);
		n[10] = s.memory_bytes == 0;
		v[11] = ObjectIdGetDatum(s.dboid);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	return (Datum) 0;
}
