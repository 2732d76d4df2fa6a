/*
 * worker.c — background workers: a supervisor and one worker per database.
 *
 * The supervisor (static, registered from shared_preload_libraries) is
 * connected to no database; like the autovacuum launcher it can still read
 * the shared catalog pg_database.  It starts one dynamic worker per
 * database that allows connections.  A worker whose database lacks the
 * extension marks its slot "no extension" and exits with code 0; the
 * supervisor leaves that database alone until CREATE EXTENSION asks for a
 * worker again (at commit) or the database list changes.  So every
 * database with the extension gets its worker with no per-database
 * configuration and no restart.
 *
 * The per-database worker loops: run one engine round (sync_engine_cycle,
 * which manages its own short transactions), then sleep on its latch until
 * the next due item, sync.poll_interval at most.  A commit of captured
 * writes sets the latch (sync_wake_at_commit), so pushes start at once.
 * SIGTERM uses die(): the latch is set and CHECK_FOR_INTERRUPTS() — also
 * called inside HTTP waits — exits within a fraction of a second.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/tableam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "engine.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(sync_wake);
PG_FUNCTION_INFO_V1(sync_worker_status);
PG_FUNCTION_INFO_V1(sync_request_worker);

typedef enum SlotState
{
	SLOT_FREE = 0,
	SLOT_STARTING,
	SLOT_RUNNING,
	SLOT_NO_EXTENSION,			/* the database has no sync extension */
	SLOT_EXITED					/* stopped (signal, error); restarted after a pause */
} SlotState;

static const char *const slot_state_names[] = {
	"free", "starting", "running", "no extension", "exited"
};

typedef struct DbSlot
{
	Oid			dboid;
	SlotState	state;
	pid_t		pid;
	Latch	   *latch;
	TimestampTz started_at;
	TimestampTz exited_at;
	TimestampTz last_wake;
	int64		cycles;
	int			restarts;
	int			poll_interval_ms;	/* as the worker sees it (after SIGHUP) */
	char		last_error[256];
} DbSlot;

typedef struct SyncShmem
{
	slock_t		mutex;
	Latch	   *supervisor_latch;
	bool		rescan;			/* look at every database again */
	int			nslots;
	DbSlot		slots[FLEXIBLE_ARRAY_MEMBER];
} SyncShmem;

static SyncShmem *shm = NULL;
static int	sync_max_workers = 8;
static int	sync_poll_interval_ms = 10000;
static int	sync_rescan_interval_s = 60;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* slots: the workers plus room to remember databases without the extension */
static int
slot_count(void)
{
	return sync_max_workers + 64;
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
}

static void
sync_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shm = ShmemInitStruct("sync", shmem_size(), &found);
	if (!found)
	{
		memset(shm, 0, shmem_size());
		SpinLockInit(&shm->mutex);
		shm->nslots = slot_count();
		shm->rescan = true;
	}
	LWLockRelease(AddinShmemInitLock);
}

void
worker_init(void)
{
	BackgroundWorker bgw;

	DefineCustomIntVariable("sync.poll_interval",
							"Longest sleep of an idle sync worker.",
							"Commits of captured writes wake the worker at once; this only bounds the sleep.",
							&sync_poll_interval_ms, 10000, 10, 3600000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("sync.database_rescan_interval",
							"How often the supervisor looks for new databases.",
							NULL, &sync_rescan_interval_s, 60, 1, 86400, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	/* a postmaster-level setting can only exist when loaded at start-up */
	DefineCustomIntVariable("sync.max_workers",
							"Most databases served by a sync worker at once.",
							"Each uses one background worker slot (max_worker_processes), plus one for the supervisor.",
							&sync_max_workers, 8, 1, 900, PGC_POSTMASTER, 0, NULL, NULL, NULL);

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = sync_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = sync_shmem_startup;

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

/* ---------------------------------------------------------------------
 * waking
 * --------------------------------------------------------------------- */

void
sync_worker_wake(Oid dboid)
{
	int			i;

	if (shm == NULL)
		return;
	SpinLockAcquire(&shm->mutex);
	for (i = 0; i < shm->nslots; i++)
		if (shm->slots[i].dboid == dboid && shm->slots[i].latch != NULL)
		{
			SetLatch(shm->slots[i].latch);
			break;
		}
	SpinLockRelease(&shm->mutex);
}

static bool wake_pending = false;
static bool supervisor_kick_pending = false;
static bool xact_callback_registered = false;

static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_pending)
				sync_worker_wake(MyDatabaseId);
			if (supervisor_kick_pending && shm != NULL)
			{
				int			i;

				SpinLockAcquire(&shm->mutex);
				for (i = 0; i < shm->nslots; i++)
					if (shm->slots[i].dboid == MyDatabaseId &&
						shm->slots[i].state == SLOT_NO_EXTENSION)
						shm->slots[i].state = SLOT_FREE;
				shm->rescan = true;
				if (shm->supervisor_latch)
					SetLatch(shm->supervisor_latch);
				SpinLockRelease(&shm->mutex);
			}
			wake_pending = supervisor_kick_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/*
			 * A prepared transaction's writes are pushed at the worker's next
			 * round (sync.poll_interval at most), not at COMMIT PREPARED.
			 */
			wake_pending = supervisor_kick_pending = false;
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
		supervisor_kick_pending = true;
	}
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * the supervisor
 * --------------------------------------------------------------------- */

static BackgroundWorkerHandle *handles[1024];

static List *
database_list(void)
{
	List	   *dbs = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	MemoryContext caller = CurrentMemoryContext;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (db->datallowconn && !db->datistemplate)
		{
			/* the list must outlive the transaction */
			MemoryContext old = MemoryContextSwitchTo(caller);

			dbs = lappend_oid(dbs, db->oid);
			MemoryContextSwitchTo(old);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return dbs;
}

static bool
start_db_worker(int slot, Oid dboid)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;	/* the supervisor restarts it */
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "sync");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "sync_db_worker_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "sync worker for database %u", dboid);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "sync worker");
	bgw.bgw_main_arg = ObjectIdGetDatum(dboid);
	bgw.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&bgw, &handles[slot]))
		return false;
	return true;
}

static void
supervise(bool *warned)
{
	List	   *dbs = database_list();
	ListCell   *lc;
	int			i,
				running = 0;
	TimestampTz now = GetCurrentTimestamp();

	/* notice workers that are gone */
	for (i = 0; i < shm->nslots; i++)
	{
		DbSlot	   *s = &shm->slots[i];
		pid_t		pid;

		if ((s->state == SLOT_STARTING || s->state == SLOT_RUNNING) && handles[i] != NULL &&
			GetBackgroundWorkerPid(handles[i], &pid) == BGWH_STOPPED)
		{
			SpinLockAcquire(&shm->mutex);
			if (s->state == SLOT_STARTING || s->state == SLOT_RUNNING)
			{
				s->state = SLOT_EXITED;
				s->exited_at = now;
				s->latch = NULL;
				s->pid = 0;
			}
			SpinLockRelease(&shm->mutex);
		}
		if (s->state == SLOT_STARTING || s->state == SLOT_RUNNING)
			running++;
		/* forget databases that are gone */
		if (s->dboid != InvalidOid && s->state != SLOT_STARTING && s->state != SLOT_RUNNING &&
			!list_member_oid(dbs, s->dboid))
		{
			SpinLockAcquire(&shm->mutex);
			memset(s, 0, sizeof(DbSlot));
			SpinLockRelease(&shm->mutex);
			handles[i] = NULL;
		}
	}

	foreach(lc, dbs)
	{
		Oid			dboid = lfirst_oid(lc);
		int			slot = -1,
					free_slot = -1;
		DbSlot	   *s;

		for (i = 0; i < shm->nslots; i++)
		{
			if (shm->slots[i].dboid == dboid)
				slot = i;
			else if (shm->slots[i].dboid == InvalidOid && free_slot < 0)
				free_slot = i;
		}
		if (slot < 0)
		{
			if (free_slot < 0)
				continue;		/* no room to remember it: try at the next scan */
			slot = free_slot;
		}
		s = &shm->slots[slot];
		if (s->state == SLOT_RUNNING || s->state == SLOT_STARTING || s->state == SLOT_NO_EXTENSION)
			continue;
		/* a worker that stopped is restarted after a pause that grows */
		if (s->state == SLOT_EXITED &&
			!TimestampDifferenceExceeds(s->exited_at, now, Min(1000 * (1 << Min(s->restarts, 6)), 60000)))
			continue;
		if (running >= sync_max_workers)
		{
			if (!*warned)
				ereport(WARNING,
						(errmsg("sync: not starting a worker for database %u: sync.max_workers (%d) reached",
								dboid, sync_max_workers),
						 errhint("Raise sync.max_workers (and max_worker_processes).")));
			*warned = true;
			continue;
		}
		SpinLockAcquire(&shm->mutex);
		if (s->state == SLOT_EXITED)
			s->restarts++;
		s->dboid = dboid;
		s->state = SLOT_STARTING;
		s->started_at = now;
		SpinLockRelease(&shm->mutex);
		if (!start_db_worker(slot, dboid))
		{
			SpinLockAcquire(&shm->mutex);
			s->state = SLOT_EXITED;
			s->exited_at = now;
			SpinLockRelease(&shm->mutex);
			if (!*warned)
				ereport(WARNING,
						(errmsg("sync: could not start a worker for database %u: no background worker slot free", dboid),
						 errhint("Raise max_worker_processes.")));
			*warned = true;
			continue;
		}
		running++;
	}
	list_free(dbs);
}

void
sync_supervisor_main(Datum arg)
{
	bool		warned = false;
	TimestampTz last_scan = 0;
	MemoryContext cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("sync supervisor");

	SpinLockAcquire(&shm->mutex);
	shm->supervisor_latch = MyLatch;
	SpinLockRelease(&shm->mutex);
	ereport(LOG, (errmsg("sync supervisor started")));
	cxt = AllocSetContextCreate(TopMemoryContext, "sync supervisor", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		bool		rescan;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		SpinLockAcquire(&shm->mutex);
		rescan = shm->rescan;
		shm->rescan = false;
		SpinLockRelease(&shm->mutex);

		/* worker exits also set our latch (bgw_notify_pid) */
		(void) rescan;
		MemoryContextSwitchTo(cxt);
		supervise(&warned);
		MemoryContextReset(cxt);
		if (rescan || TimestampDifferenceExceeds(last_scan, GetCurrentTimestamp(), sync_rescan_interval_s * 1000))
			last_scan = GetCurrentTimestamp();

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(sync_rescan_interval_s * 1000L, 5000L), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ---------------------------------------------------------------------
 * the per-database worker
 * --------------------------------------------------------------------- */

static int	my_slot = -1;

static void
db_worker_exit(int code, Datum arg)
{
	DbSlot	   *s;

	if (my_slot < 0 || shm == NULL)
		return;
	s = &shm->slots[my_slot];
	SpinLockAcquire(&shm->mutex);
	if (s->pid == MyProcPid)
	{
		if (s->state == SLOT_RUNNING || s->state == SLOT_STARTING)
			s->state = SLOT_EXITED;
		s->exited_at = GetCurrentTimestamp();
		s->latch = NULL;
		s->pid = 0;
	}
	SpinLockRelease(&shm->mutex);
}

static bool
extension_present(void)
{
	bool		present;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	present = OidIsValid(get_extension_oid("sync", true));
	CommitTransactionCommand();
	return present;
}

static void
leave_no_extension(void)
{
	SpinLockAcquire(&shm->mutex);
	shm->slots[my_slot].state = SLOT_NO_EXTENSION;
	shm->slots[my_slot].latch = NULL;
	shm->slots[my_slot].pid = 0;
	SpinLockRelease(&shm->mutex);
	proc_exit(0);				/* code 0: not restarted */
}

void
sync_db_worker_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	int			i;
	MemoryContext loop_cxt;
	int			consecutive_errors = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	for (i = 0; i < shm->nslots; i++)
		if (shm->slots[i].dboid == dboid)
			my_slot = i;
	if (my_slot < 0)
		proc_exit(0);
	before_shmem_exit(db_worker_exit, (Datum) 0);

	/* runs as the bootstrap superuser: it reads secrets and writes any mirrored table */
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("sync worker");

	SpinLockAcquire(&shm->mutex);
	shm->slots[my_slot].pid = MyProcPid;
	shm->slots[my_slot].latch = MyLatch;
	shm->slots[my_slot].state = SLOT_RUNNING;
	shm->slots[my_slot].started_at = GetCurrentTimestamp();
	SpinLockRelease(&shm->mutex);

	if (!extension_present())
		leave_no_extension();
	ereport(LOG, (errmsg("sync worker started for database %u", dboid)));

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "sync worker loop", ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		long		next_ms = -1;
		long		timeout;
		int			rc;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (!extension_present())
		{
			ereport(LOG, (errmsg("sync worker: the extension was dropped; exiting")));
			leave_no_extension();
		}

		MemoryContextSwitchTo(loop_cxt);
		PG_TRY();
		{
			pgstat_report_activity(STATE_RUNNING, "sync: engine round");
			next_ms = sync_engine_cycle();
			consecutive_errors = 0;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(loop_cxt);
			edata = CopyErrorData();
			FlushErrorState();
			AbortCurrentTransaction();
			ereport(LOG, (errmsg("sync worker: %s", edata->message)));
			SpinLockAcquire(&shm->mutex);
			strlcpy(shm->slots[my_slot].last_error, edata->message, sizeof(shm->slots[my_slot].last_error));
			SpinLockRelease(&shm->mutex);
			FreeErrorData(edata);
			consecutive_errors++;
			next_ms = Min(1000L << Min(consecutive_errors, 6), 60000L);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(loop_cxt);
		pgstat_report_activity(STATE_IDLE, NULL);
		pgstat_report_stat(true);

		SpinLockAcquire(&shm->mutex);
		shm->slots[my_slot].cycles++;
		shm->slots[my_slot].poll_interval_ms = sync_poll_interval_ms;
		SpinLockRelease(&shm->mutex);

		timeout = (next_ms < 0) ? sync_poll_interval_ms : Min(next_ms, (long) sync_poll_interval_ms);
		if (timeout == 0)
			continue;
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if (rc & WL_LATCH_SET)
		{
			SpinLockAcquire(&shm->mutex);
			shm->slots[my_slot].last_wake = GetCurrentTimestamp();
			SpinLockRelease(&shm->mutex);
		}
	}
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
		Datum		v[9];
		bool		n[9] = {0};
		char	   *dbname;

		SpinLockAcquire(&shm->mutex);
		s = shm->slots[i];
		SpinLockRelease(&shm->mutex);
		if (s.dboid == InvalidOid)
			continue;
		dbname = get_database_name(s.dboid);
		v[0] = CStringGetTextDatum(dbname ? dbname : "?");
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
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	return (Datum) 0;
}
