/*
 * engine.c — the provider-independent engine's entry points: its settings,
 * the worker's scheduling round (sync_engine_cycle) and the SQL functions
 * sync.push() / sync.pull().
 *
 * The engine's parts:
 *   catalog.c  transactions and SPI, the run-as-owner scope, subtransactions,
 *              mirrors (options parsed once), cursors, mirror_state
 *   push.c     outbox -> remote: claim, resolve references, send, record
 *   apply.c    remote -> table: pages, locks, conflicts, upserts, deletes
 *   deparse.c  every SQL text run on a user's table
 *
 * Transactions.  In the worker (own_xacts) every step runs in its own short
 * transaction and no transaction, snapshot or lock is held while waiting on
 * the network:
 *   push:  [claim a batch, commit] -> HTTP -> [record results, commit]
 *   pull:  [read cursor, commit] -> HTTP -> [apply page + advance cursor, commit]
 * Called from SQL (sync.push / sync.pull), the same code runs inside the
 * caller's transaction.
 *
 * Memory.  Data that must outlive a transaction lives in the caller's
 * context ("work"); each mirror's round in the worker runs in a context
 * reset afterwards.
 *
 * Privilege.  Every statement on a user's table runs as the table's owner
 * (owner_begin/owner_end); sync's own catalog is read and written as the
 * caller (the worker: the bootstrap superuser).
 *
 * Failures.  One record never stops the others: a page or a batch is first
 * applied whole in a subtransaction; if that fails it is applied record by
 * record, each in its own subtransaction, and the records that still fail
 * are recorded (sync.inbound_error, parked outbox entries), not retried in
 * a loop.  An error in one mirror's round is recorded against that mirror
 * (note_mirror_error) and does not stop the others.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "adaptive.h"
#include "capture.h"
#include "conn.h"
#include "drift.h"
#include "engine.h"
#include "engine_int.h"
#include "lifecycle.h"
#include "pause.h"
#include "salesforce_cdc.h"

int			sync_batch_size = 1000;
int			sync_lease_seconds = 300;
int			sync_journal_retention_days = 30;
int			sync_lock_timeout_ms = 5000;
int			sync_pull_interval_ms = 30000;

PG_FUNCTION_INFO_V1(sync_pull);
PG_FUNCTION_INFO_V1(sync_push);

/* a mirror with work due in this round */
typedef struct MirrorRef
{
	int			id;
	bool		push_due;
	bool		pull_due;
} MirrorRef;

/* what a round has to do (round_due): an idle round stops there */
typedef struct RoundDue
{
	bool		work;			/* a mirror's push or pull is due now */
	bool		fill;			/* a fill of added fields (fill_round) */
	bool		drift;			/* a schema check (drift_round) */
	bool		realtime;		/* a realtime mirror streams (cdc_stream_round) */
	long		next_ms;		/* when nothing is due: the next push or pull (-1: none) */
} RoundDue;

void
engine_define_gucs(void)
{
	DefineCustomIntVariable("sync.batch_size",
							"Outbox entries claimed per round for one mirror.",
							"Providers split them into requests of their own batch maximum.",
							&sync_batch_size, 1000, 1, 100000, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("sync.lease",
							"Seconds a claimed outbox entry stays reserved for its claimer.",
							"After a crash, entries are reclaimed when their lease expires.",
							&sync_lease_seconds, 300, 10, 86400, PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("sync.pull_interval",
							"Default time between incremental pulls of a mirror.",
							"A mirror's \"pull_interval\" option overrides it.",
							&sync_pull_interval_ms, 30000, 100, 86400000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("sync.journal_retention",
							"Days the journal of sent and received records is kept.",
							NULL, &sync_journal_retention_days, 30, 0, 36500, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("sync.lock_timeout",
							"Longest wait for a row lock on a mirrored table by the worker, sync.pull() and sync.push().",
							"A record whose row a user keeps locked longer is set aside and applied at a later pull. "
							"Also how long sync.push() and sync.pull() wait for a slot of a connection's max_in_flight "
							"that other processes hold; what they could not send by then is retried. 0 waits indefinitely.",
							&sync_lock_timeout_ms, 5000, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("sync.request_attempts",
							"Attempts for a read request that fails transiently.",
							NULL, &sync_request_attempts, 5, 1, 100, PGC_USERSET, 0,
							NULL, NULL, NULL);
	drift_define_gucs();
}

static void
report_mirror_error(int mirror_id, bool own, MemoryContext work)
{
	ErrorData  *edata;
	MemoryContext old = MemoryContextSwitchTo(work);

	edata = CopyErrorData();
	MemoryContextSwitchTo(old);
	FlushErrorState();
	/* aborting also unwinds SPI (AtEOXact_SPI); idle is fine too */
	if (own)
		AbortCurrentTransaction();
	ereport(LOG,
			(errmsg("sync: mirror %d: %s", mirror_id, edata->message),
			 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
	note_mirror_error(mirror_id, edata->detail ?
					  psprintf("%s (%s)", edata->message, edata->detail) : edata->message, own);
	FreeErrorData(edata);
}

/*
 * Once per worker process: batches claimed by processes that no longer
 * exist (a worker killed or crashed before recording its results) are
 * released now instead of when their lease runs out.  Re-sending them is
 * what the lease's expiry would do anyway; idempotency keys keep creates
 * single.  Inside SPI.
 */
static void
release_orphaned_claims(void)
{
	static bool released = false;

	if (released)
		return;
	spi_exec("UPDATE sync.outbox SET claimed_until = NULL, claimed_by = NULL "
			 "WHERE claimed_until > now() "
			 "  AND claimed_by <> ALL (SELECT pid FROM pg_catalog.pg_stat_get_activity(NULL) "
			 "                         WHERE pid IS NOT NULL)",
			 0, NULL, NULL, NULL, SPI_OK_UPDATE);
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("sync: released " UINT64_FORMAT " outbox entries claimed by processes that are gone",
						SPI_processed)));
	released = true;
}

/*
 * PAUSE_MIRROR_ACTIVE_SQL for the round's query: the same test, with the
 * paused mirrors and connections read once per statement rather than
 * looked up for every mirror.
 */
#define ROUND_ACTIVE_SQL \
	"NOT (m.id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT pz.mirror FROM sync.paused pz WHERE pz.mirror IS NOT NULL)) " \
	"     OR m.connection OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT pz.connection FROM sync.paused pz " \
	"                                                        WHERE pz.connection IS NOT NULL)))"

/*
 * A mirror's push and its pull, due now: for m (sync.mirror) and s (its
 * sync.mirror_state), mirrors_due()'s test of each mirror and round_due()'s
 * of any.  A push: pending entries whose time has come and that no claim
 * holds; a pull: the mirror pulls (PULLS_SQL) and its next_pull_at has
 * passed.
 */
#define PUSH_DUE_SQL \
	"(m.direction OPERATOR(pg_catalog.<>) 'pull' AND EXISTS (SELECT 1 FROM sync.outbox o " \
	"   WHERE o.mirror OPERATOR(pg_catalog.=) m.id AND o.state OPERATOR(pg_catalog.=) 'pending' " \
	"     AND o.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now() " \
	"     AND (o.claimed_until IS NULL OR o.claimed_until OPERATOR(pg_catalog.<) pg_catalog.now())))"
#define PULLS_SQL \
	"(m.direction OPERATOR(pg_catalog.<>) 'push' AND s.phase OPERATOR(pg_catalog.<>) 'paused')"
#define PULL_DUE_SQL \
	"(" PULLS_SQL " AND s.next_pull_at OPERATOR(pg_catalog.<=) pg_catalog.now())"

/*
 * What the round has to do, in one statement (its plan kept for the
 * process): whether a push or a pull is due, a fill, a schema check, and
 * whether any mirror streams; when no push or pull is due, also how long
 * until the next one.  An idle round runs this statement instead of the
 * queries of mirrors_due(), fill_round(), drift_round() and, without a
 * realtime mirror, cdc_stream_round() (issue #13: an idle round's cost
 * must not grow with the number of mirrors — those queries evaluate a sort
 * key, a next-due time or an SQL function for every mirror, which only a
 * round with work needs).  Its tests are theirs: the same fragments
 * (engine_int.h's DUE_*_SQL), each with the pause test of this query.
 */
#define FOLD_ROUND_ROWS 2000

static void
round_due(RoundDue *due)
{
	static SPIPlanPtr plan = NULL;
	Oid			t[1] = {INT4OID};
	Datum		a[1] = {Int32GetDatum(sync_drift_check_interval_ms)};
	bool		isnull;
	Datum		v;

	/*
	 * The writes captured since the last round go into the outbox first
	 * (capture.h), of every mirror that no other transaction folds now: a
	 * commit woke this round.  At most FOLD_ROUND_ROWS (a few claims'
	 * worth): a mirror with a larger backlog folds the rest a claim at a
	 * time as it pushes (push.c, fold_ahead), while its requests are on the
	 * network and in the push helper too; a larger fold here would delay a
	 * bulk write's first request by all of it (10,000 rows: 0.1-0.2 s).  In a
	 * transaction of its own, committed before the query below, whose
	 * snapshot must see it.
	 */
	(void) xact_fold(0, FOLD_ROUND_ROWS);

	xact_begin(true);
	release_orphaned_claims();
	if (plan == NULL)
	{
		/* (OPERATOR() binds tighter than AND/OR and takes no precedence of its own) */
		plan = SPI_prepare("SELECT w.work, "
		/* fill_round(), drift_round(), cdc_stream_round(): engine_int.h */
						   "  EXISTS (SELECT 1 FROM " DUE_FILL_SQL " AND " ROUND_ACTIVE_SQL "), "
						   "  EXISTS (SELECT 1 FROM " DUE_DRIFT_FROM_SQL " "
						   "    WHERE (" DUE_DRIFT_REQUESTED_SQL " OR " DUE_DRIFT_PERIODIC_SQL ") "
						   "      AND " ROUND_ACTIVE_SQL "), "
						   "  EXISTS (SELECT 1 FROM " DUE_CDC_STREAM_SQL " AND " ROUND_ACTIVE_SQL "), "
		/* nothing due: the next pull of a mirror that pulls, the next push (not while a backlog drains) */
						   "  CASE WHEN NOT w.work THEN (pg_catalog.date_part('epoch', LEAST("
						   "    (SELECT pg_catalog.min(s.next_pull_at) FROM sync.mirror m "
						   "       JOIN sync.mirror_state s ON s.mirror OPERATOR(pg_catalog.=) m.id "
						   "       WHERE " PULLS_SQL " AND " ROUND_ACTIVE_SQL "), "
						   "    (SELECT pg_catalog.min(GREATEST(o.next_attempt_at, COALESCE(o.claimed_until, o.next_attempt_at))) "
						   "       FROM sync.outbox o JOIN sync.mirror m ON m.id OPERATOR(pg_catalog.=) o.mirror "
						   "       WHERE o.state OPERATOR(pg_catalog.=) 'pending' AND m.direction OPERATOR(pg_catalog.<>) 'pull' "
						   "         AND " ROUND_ACTIVE_SQL ")) "
						   "    OPERATOR(pg_catalog.-) pg_catalog.now()) "
						   "    OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8 END "
		/* mirrors_due() */
						   "FROM (SELECT EXISTS (SELECT 1 FROM sync.mirror m "
						   "    JOIN sync.mirror_state s ON s.mirror OPERATOR(pg_catalog.=) m.id "
						   "    WHERE (" PULL_DUE_SQL " OR " PUSH_DUE_SQL ") "
						   "      AND " ROUND_ACTIVE_SQL ") AS work) w",
						   1, t);
		if (plan == NULL)
			elog(ERROR, "sync: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
	}
	if (SPI_execute_plan(plan, a, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "sync: the round's query failed");
	due->work = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	due->fill = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	due->drift = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	due->realtime = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	v = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull);
	due->next_ms = isnull ? -1 : (long) Max(1, DatumGetInt64(v));
	xact_end(true);
}

/*
 * The mirrors with work due now, parents first; *next_ms: when the next
 * thing not yet due will be (-1: nothing).  Allocated in `work`.
 */
static MirrorRef *
mirrors_due(MemoryContext work, int *nrefs, long *next_ms)
{
	MirrorRef  *refs;
	int			i;

	xact_begin(true);
	release_orphaned_claims();

	/*
	 * The time until the next due entry is computed only when nothing is due
	 * now: it reads every pending entry of the mirror, which is cheap when
	 * idle but not while a large backlog drains.
	 */
	spi_exec("SELECT m.id, d.push, d.pull, "
			 "  CASE WHEN NOT (d.push OR d.pull) THEN "
			 "  (extract(epoch FROM least(CASE WHEN " PULLS_SQL " THEN s.next_pull_at END, "
			 "     (SELECT min(greatest(o.next_attempt_at, coalesce(o.claimed_until, o.next_attempt_at))) "
			 "        FROM sync.outbox o WHERE o.mirror = m.id AND o.state = 'pending')) - now()) * 1000)::bigint END "
			 "FROM sync.mirror m JOIN sync.mirror_state s ON s.mirror = m.id "
			 "CROSS JOIN LATERAL (SELECT " PUSH_DUE_SQL " AS push, " PULL_DUE_SQL " AS pull "
			 "  OFFSET 0) d "		/* not flattened: each test runs once */
			 "WHERE " PAUSE_MIRROR_ACTIVE_SQL " "
			 /* parents first: objects other mirrors' reference fields point at */
			 /* (counted for the due mirrors only: it reads sync.field) */
			 "ORDER BY CASE WHEN d.push OR d.pull THEN "
			 "  (SELECT count(*) FROM sync.field f JOIN sync.mirror c ON c.id = f.mirror "
			 "   WHERE f.reference_to = m.remote_object AND c.connection = m.connection) END DESC NULLS LAST, m.id",
			 0, NULL, NULL, NULL, SPI_OK_SELECT);
	MemoryContextSwitchTo(work);
	*nrefs = (int) SPI_processed;
	refs = palloc0(sizeof(MirrorRef) * Max(1, *nrefs));
	for (i = 0; i < *nrefs; i++)
	{
		char	   *due = getv(i, 4);

		refs[i].id = atoi(getv(i, 1));
		refs[i].push_due = strcmp(getv(i, 2), "t") == 0;
		refs[i].pull_due = strcmp(getv(i, 3), "t") == 0;
		if (due && !refs[i].push_due && !refs[i].pull_due)
		{
			long		ms = Max(1, atol(due));

			*next_ms = *next_ms < 0 ? ms : Min(*next_ms, ms);
		}
	}
	xact_end(true);
	return refs;
}

/*
 * One mirror's part of the round: its push, then its pull, in a context of
 * its own.  An error is recorded against the mirror and the round goes on.
 * Returns whether more may be ready at once.
 */
static bool
mirror_round(MirrorRef *ref, MemoryContext work)
{
	int			nok = 0,
				nrej = 0,
				nretry = 0;
	int64		deleted = 0,
				failed = 0;
	volatile bool more = false;
	MemoryContext mcxt = AllocSetContextCreate(work, "sync mirror", ALLOCSET_DEFAULT_SIZES);

	MemoryContextSwitchTo(mcxt);
	PG_TRY();
	{
		if (ref->push_due)
		{
			push_mirror(ref->id, true, mcxt, &nok, &nrej, &nretry);
			if (nok + nrej > 0 && nretry == 0)
				more = true;	/* there may be more */
		}
		if (ref->pull_due)
			pull_mirror(ref->id, true, mcxt, &deleted, &failed);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(work);
		report_mirror_error(ref->id, true, work);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(work);
	MemoryContextDelete(mcxt);
	return more;
}

/*
 * sync.pull_interval lowered by a reload: the mirrors that follow it were
 * scheduled with the old interval and would otherwise wait it out (an hour
 * lowered to 30 s would still wait the hour).  Their next pull comes
 * forward to their last pull plus the new interval.  Not for mirrors with
 * their own "pull_interval", realtime mirrors (their stream schedules the
 * safety-net pull), nor a mirror backing off after failures.  A raised
 * interval applies from each mirror's next pull.
 */
static void
follow_pull_interval(void)
{
	static int	scheduled_ms = -1;
	Oid			t[1] = {INT4OID};
	Datum		a[1] = {Int32GetDatum(sync_pull_interval_ms)};

	if (scheduled_ms >= 0 && sync_pull_interval_ms < scheduled_ms)
	{
		xact_begin(true);
		spi_exec("UPDATE sync.mirror_state s SET next_pull_at = GREATEST(pg_catalog.now(), "
				 "  s.last_pull_at OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $1 OPERATOR(pg_catalog./) 1000.0)) "
				 "FROM sync.mirror m WHERE m.id OPERATOR(pg_catalog.=) s.mirror AND " PULLS_SQL " "
				 "  AND s.failures OPERATOR(pg_catalog.=) 0 AND s.last_pull_at IS NOT NULL "
				 "  AND NOT m.options OPERATOR(pg_catalog.?) 'pull_interval' "
				 "  AND NOT m.options OPERATOR(pg_catalog.@>) '{\"realtime\": true}' "
				 "  AND s.next_pull_at OPERATOR(pg_catalog.>) (s.last_pull_at "
				 "      OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $1 OPERATOR(pg_catalog./) 1000.0))",
				 1, t, a, NULL, SPI_OK_UPDATE);
		if (SPI_processed > 0)
			elog(DEBUG1, "sync worker: sync.pull_interval lowered to %d ms: " UINT64_FORMAT " mirrors pull sooner",
				 sync_pull_interval_ms, SPI_processed);
		xact_end(true);
	}
	scheduled_ms = sync_pull_interval_ms;
}

long
sync_engine_cycle(void)
{
	MemoryContext work = AllocSetContextCreate(CurrentMemoryContext, "sync cycle",
											   ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(work);
	MirrorRef  *refs;
	RoundDue	due;
	int			nrefs = 0,
				i;
	long		next_ms;
	static TimestampTz last_cleanup = 0;
	static bool retention_more = false;

	/*
	 * The worker's own statements see only pg_catalog (and sync, by name):
	 * a search_path set for the database or role must not decide what a
	 * superuser runs.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	follow_pull_interval();

	/* what is due, and when the next thing will be */
	round_due(&due);
	next_ms = due.next_ms;
	if (due.work)
	{
		refs = mirrors_due(work, &nrefs, &next_ms);
		for (i = 0; i < nrefs; i++)
			if (mirror_round(&refs[i], work))
				next_ms = 0;
	}

	/* fills of added fields, then one schema check (drift.h): after the rest */
	if (due.fill && fill_round(work))
		next_ms = 0;
	if (due.drift && drift_round(work))
		next_ms = 0;

	/*
	 * Journal retention, at most once a minute, or at once while old rows
	 * are left: batches of their own transactions, time-boxed per round so
	 * that pushes and pulls come first (lifecycle.c).
	 */
	if (retention_more || GetCurrentTimestamp() - last_cleanup > 60 * USECS_PER_SEC)
	{
		retention_more = lifecycle_journal_retention(sync_journal_retention_days);
		if (retention_more)
			next_ms = 0;
		last_cleanup = GetCurrentTimestamp();
	}

	/* the pulls of this round set their mirrors' next pull (adaptive.c) */
	next_ms = adaptive_sooner_ms(next_ms);

	/*
	 * Nothing else to do now: wait on the change streams (salesforce_cdc.c),
	 * allocating in this round's context (a committed transaction above
	 * left CurrentMemoryContext at TopMemoryContext).
	 */
	MemoryContextSwitchTo(work);
	next_ms = cdc_stream_round(next_ms, due.realtime);

	MemoryContextSwitchTo(old);
	MemoryContextDelete(work);
	return next_ms;
}

/*
 * The push helper's whole work (worker.c): the mirror's push, as in the
 * worker's round, until nothing is left to claim; an error is recorded
 * against the mirror.
 */
void
sync_engine_push_helper(int mirror_id)
{
	MemoryContext work = AllocSetContextCreate(TopMemoryContext, "sync push helper",
											   ALLOCSET_DEFAULT_SIZES);
	MirrorRef	ref = {mirror_id, true, false};

	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	push_as_helper();
	MemoryContextSwitchTo(work);
	(void) mirror_round(&ref, work);
}

/* For the SQL entry points: the caller's search_path does not apply inside. */
static int
pin_search_path(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

static Datum
result_jsonb(const char *json)
{
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
}

Datum
sync_push(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	int			id;
	int			nok = 0,
				nrej = 0,
				nretry = 0;
	int64		total;
	int			nestlevel;

	lifecycle_check_sql();
	nestlevel = pin_search_path();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "sync: SPI_connect failed");
	id = mirror_id_for_table(relid);
	pause_check_sql(id, "sync.push()");
	SPI_finish();

	/*
	 * Sending from inside the caller's transaction block would send rows
	 * that may still roll back, and a rollback would bring the sent entries
	 * back to be sent again.
	 */
	PreventInTransactionBlock(true, "sync.push()");
	total = push_mirror(id, false, CurrentMemoryContext, &nok, &nrej, &nretry);
	AtEOXact_GUC(false, nestlevel);
	PG_RETURN_DATUM(result_jsonb(psprintf("{\"processed\": " INT64_FORMAT ", \"sent\": %d, "
										  "\"rejected\": %d, \"retrying\": %d}",
										  total, nok, nrej, nretry)));
}

Datum
sync_pull(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	int			id;
	int64		applied,
				deleted = 0,
				failed = 0;

	int			nestlevel;

	lifecycle_check_sql();
	nestlevel = pin_search_path();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "sync: SPI_connect failed");
	id = mirror_id_for_table(relid);
	pause_check_sql(id, "sync.pull()");
	SPI_finish();
	applied = pull_mirror(id, false, CurrentMemoryContext, &deleted, &failed);
	{
		bool		more;

		(void) fill_mirror(id, false, CurrentMemoryContext, INT_MAX, &more);
	}
	AtEOXact_GUC(false, nestlevel);
	PG_RETURN_DATUM(result_jsonb(psprintf("{\"applied\": " INT64_FORMAT ", \"deleted\": " INT64_FORMAT
										  ", \"failed\": " INT64_FORMAT "}",
										  applied, deleted, failed)));
}
