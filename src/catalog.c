/*
 * catalog.c — the engine's footing: transactions and SPI, statements run as
 * a table's owner, subtransactions, and sync's own catalog as the engine
 * reads and writes it (mirrors and their options, cursors, mirror_state,
 * connection usage).
 *
 * Transactions.  In the worker (own) every step runs in its own short
 * transaction (xact_begin/xact_end); called from SQL, the same code runs
 * inside the caller's transaction.
 *
 * Privilege.  Every statement on a user's table runs as the table's owner
 * (owner_begin/owner_end); sync's own catalog is read and written as the
 * caller (the worker: the bootstrap superuser).
 */
#include "postgres.h"

#include <time.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/md5.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "capture.h"
#include "conn.h"
#include "engine_int.h"
#include "provider.h"

/* ---------------------------------------------------------------------
 * transactions and SPI
 * --------------------------------------------------------------------- */

void
xact_begin(bool own)
{
	if (own)
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "sync: SPI_connect failed");
}

void
xact_end(bool own)
{
	SPI_finish();
	if (own)
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_stat(false);
	}
	else
		CommandCounterIncrement();
}

/*
 * The worker's fold of captured writes (capture.h) in a transaction of its
 * own, not waiting for a mirror's fold lock.  Its commit does not wait for
 * the WAL flush: lost in a crash, the fold is undone as a whole (the log
 * rows are back) and done again; and any later commit that depends on it
 * (the claim, the recording of a push) flushes the WAL up to itself, the
 * fold included.  A round that folds (at each commit of a local write)
 * would otherwise wait for one more flush than before the log.  Returns
 * what capture_fold() returns (-1: another process folds the mirror now).
 */
int64
xact_fold(int32 mirror, int64 limit)
{
	int64		n;
	TimestampTz start = GetCurrentTimestamp();

	xact_begin(true);
	(void) set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	n = capture_fold(mirror, false, limit);
	xact_end(true);
	if (n > 0)
		elog(DEBUG1, "sync: folded %ld captured writes (mirror %d) in %ld ms",
			 (long) n, mirror, (long) ((GetCurrentTimestamp() - start) / 1000));
	return n;
}

void
spi_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expect)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (rc != expect)
		elog(ERROR, "sync: query failed (%s): %s", SPI_result_code_string(rc), sql);
}

char *
getv(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

Datum
text_array(char **items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(1, n));
	bool	   *nulls = palloc(sizeof(bool) * Max(1, n));
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			i;

	for (i = 0; i < n; i++)
	{
		nulls[i] = (items[i] == NULL);
		d[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(items[i]);
	}
	return PointerGetDatum(construct_md_array(d, nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
}


/* ---------------------------------------------------------------------
 * running as a table's owner, and subtransactions
 * --------------------------------------------------------------------- */

/*
 * Statements on a user's table run as the table's owner, in a
 * security-restricted operation, with search_path pinned and the worker's
 * lock timeout — as PostgreSQL's logical replication apply and VACUUM do.
 * The table's triggers, defaults, constraints and index expressions are its
 * owner's code: run as the worker's superuser, they would let any table
 * owner act as the superuser.  An error inside a scope needs no cleanup:
 * (sub)transaction abort restores the user and the settings.
 */
void
owner_begin(Oid owner, OwnerScope *s)
{
	char		timeout[32];

	GetUserIdAndSecContext(&s->save_user, &s->save_sec);
	SetUserIdAndSecContext(owner, s->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	s->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	snprintf(timeout, sizeof(timeout), "%d", sync_lock_timeout_ms);
	(void) set_config_option("lock_timeout", timeout, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

void
owner_end(OwnerScope *s)
{
	AtEOXact_GUC(false, s->save_nestlevel);
	SetUserIdAndSecContext(s->save_user, s->save_sec);
}

/*
 * Run fn(arg) in a subtransaction.  On error, roll it back and return false
 * with the error in *err (copied into errcxt).  Cancels and shutdowns are
 * not a record's fault: they are re-thrown.
 */
bool
in_subxact(void (*fn) (void *), void *arg, MemoryContext errcxt, ErrorData **err)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	int			saved_applying = sync_applying_mirror;
	ErrorData  *edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(errcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		sync_applying_mirror = saved_applying;
	}
	PG_END_TRY();
	if (edata == NULL)
		return true;
	if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_OPERATOR_INTERVENTION ||
		ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_INSUFFICIENT_RESOURCES)
		ReThrowError(edata);
	if (err)
		*err = edata;
	return false;
}

/* A row lock or a deadlock: the record waits for a later round, not the user. */
bool
error_is_transient(const ErrorData *e)
{
	return e->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
		e->sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
		e->sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE;
}

/* The error as users see it: the message, and its detail if any. */
char *
error_text(const ErrorData *e)
{
	return e->detail ? psprintf("%s (%s)", e->message, e->detail) : pstrdup(e->message);
}

/* ---------------------------------------------------------------------
 * mirrors
 * --------------------------------------------------------------------- */

/*
 * The engine's mirror options, parsed once when the mirror is loaded
 * (sync.mirror() has validated them).  Providers read their own keys from
 * m->options.
 */
static void
mirror_parse_options(EngineMirror *em)
{
	SJson	   *o = em->base.options;
	const char *conflict = sjson_get_string(o, "conflict");
	const char *del = sjson_get_string(o, "delete");
	const char *local_del = sjson_get_string(o, "local_delete");
	const char *interval = sjson_get_string(o, "pull_interval");

	em->conflict = conflict && strcmp(conflict, "remote_wins") == 0 ?
		CONFLICT_REMOTE_WINS : CONFLICT_LOCAL_WINS;
	em->on_delete = del == NULL ? DELETE_APPLY :
		strcmp(del, "keep") == 0 ? DELETE_KEEP :
		strcmp(del, "flag") == 0 ? DELETE_FLAG : DELETE_APPLY;
	em->local_delete = local_del && strcmp(local_del, "ignore") == 0 ?
		LOCAL_DELETE_IGNORE : LOCAL_DELETE_PROPAGATE;
	em->idempotency_field = sjson_get_string(o, "idempotency_field");
	em->pull_interval = interval == NULL ? NULL :
		DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(interval),
											  ObjectIdGetDatum(InvalidOid),
											  Int32GetDatum(-1)));
}

/* Load a mirror and its fields; allocated in `work`.  Inside SPI. */
SyncMirror *
mirror_load(int id, MemoryContext work, char **connection)
{
	Oid			types[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(id)};
	EngineMirror *em;
	SyncMirror *m;
	MemoryContext old;
	int			i;
	char	   *err;
	char	   *opts;

	spi_exec("SELECT m.remote_object, m.local_table::oid, m.local_table::text, m.key_column, "
			 "       m.remote_id_column, m.stamp_column, m.direction, m.options::text, m.connection, "
			 "       (SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a "
			 "         WHERE a.attrelid OPERATOR(pg_catalog.=) m.local_table "
			 "           AND a.attname OPERATOR(pg_catalog.=) m.key_column), "
			 "       (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) m.local_table) "
			 "FROM sync.mirror m WHERE m.id OPERATOR(pg_catalog.=) $1", 1, types, args, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("mirror %d does not exist", id)));
	old = MemoryContextSwitchTo(work);
	em = palloc0(sizeof(EngineMirror));
	m = &em->base;
	m->id = id;
	m->remote_object = getv(0, 1);
	m->relid = (Oid) strtoul(getv(0, 2), NULL, 10);
	m->qualified_table = getv(0, 3);
	m->key_column = getv(0, 4);
	m->remote_id_column = getv(0, 5);
	m->stamp_column = getv(0, 6);
	m->direction = getv(0, 7)[1] == 'o' ? 'b' : (getv(0, 7)[1] == 'u' ? (getv(0, 7)[2] == 'l' ? 'l' : 'p') : 'b');
	opts = getv(0, 8);
	m->options = sjson_parse(opts, strlen(opts), &err);
	*connection = getv(0, 9);
	m->key_type = getv(0, 10) ? getv(0, 10) : "text";
	if (getv(0, 11) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the table of mirror %d no longer exists", id),
				 errhint("Run sync.unmirror() for it.")));
	m->owner = (Oid) strtoul(getv(0, 11), NULL, 10);
	mirror_parse_options(em);
	MemoryContextSwitchTo(old);

	spi_exec("SELECT remote_name, local_column, remote_type, local_type, createable, updateable, "
			 "       reference_to, authority "
			 "FROM sync.field f WHERE mirror = $1 "
			 /* a field the remote deleted is left out until it is back (drift.c) */
			 "  AND NOT EXISTS (SELECT 1 FROM sync.schema_drift d WHERE d.mirror OPERATOR(pg_catalog.=) f.mirror "
			 "    AND d.remote_field OPERATOR(pg_catalog.=) f.remote_name AND d.kind OPERATOR(pg_catalog.=) 'deleted') "
			 "ORDER BY local_column",
			 1, types, args, NULL, SPI_OK_SELECT);
	old = MemoryContextSwitchTo(work);
	m->nfields = (int) SPI_processed;
	m->fields = palloc0(sizeof(SyncField) * Max(1, m->nfields));
	m->columns = palloc0(sizeof(char *) * Max(1, m->nfields));
	m->authority = palloc0(sizeof(char *) * Max(1, m->nfields));
	for (i = 0; i < m->nfields; i++)
	{
		SyncField  *f = &m->fields[i];

		f->remote_name = getv(i, 1);
		m->columns[i] = getv(i, 2);
		f->remote_type = getv(i, 3);
		f->local_type = getv(i, 4);
		f->createable = strcmp(getv(i, 5), "t") == 0;
		f->updateable = strcmp(getv(i, 6), "t") == 0;
		f->reference_to = getv(i, 7);
		m->authority[i] = getv(i, 8);
		if (strcmp(m->columns[i], m->remote_id_column) == 0)
			f->role = FIELD_ID;
		else if (strcmp(m->columns[i], m->stamp_column) == 0)
			f->role = FIELD_STAMP;
		else
			f->role = FIELD_DATA;
	}
	MemoryContextSwitchTo(old);
	return m;
}

int
mirror_id_for_table(Oid relid)
{
	Oid			types[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(relid)};
	bool		isnull;

	spi_exec("SELECT id FROM sync.mirror WHERE local_table = $1", 1, types, args, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table \"%s\" is not mirrored", get_rel_name(relid) ? get_rel_name(relid) : "?"),
				 errhint("Mirror it with sync.mirror().")));
	return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* ---------------------------------------------------------------------
 * mirror_state, cursors, connection usage
 * --------------------------------------------------------------------- */

/*
 * A round of the mirror failed: the error is shown (sync.status), and the
 * next pull waits 1 s, 2 s, 4 s ... 512 s after consecutive failures
 * (backoff_base_ms, the one backoff formula).
 */
void
note_mirror_error(int mirror, const char *message, bool own)
{
	Oid			types[3] = {INT4OID, TEXTOID, INT8OID};
	Datum		args[3] = {Int32GetDatum(mirror), CStringGetTextDatum(message), 0};
	bool		isnull;
	int			failures = 0;

	xact_begin(own);
	spi_exec("SELECT failures FROM sync.mirror_state WHERE mirror OPERATOR(pg_catalog.=) $1 FOR UPDATE",
			 1, types, args, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		Datum		f = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		failures = isnull ? 0 : DatumGetInt32(f);
	}
	args[2] = Int64GetDatum(backoff_base_ms(Min(Max(failures, 0), 9) + 1, 1000, 10 * 60 * 1000));
	spi_exec("UPDATE sync.mirror_state SET last_error = $2, last_error_at = pg_catalog.now(), "
			 "failures = failures OPERATOR(pg_catalog.+) 1, "
			 "next_pull_at = pg_catalog.now() OPERATOR(pg_catalog.+) "
			 "  pg_catalog.make_interval(secs => $3 OPERATOR(pg_catalog./) 1000.0) "
			 "WHERE mirror OPERATOR(pg_catalog.=) $1", 3, types, args, NULL, SPI_OK_UPDATE);
	xact_end(own);
}

/* A batch was pushed. */
void
note_push_done(int mirror)
{
	Oid			t[1] = {INT4OID};
	Datum		a[1] = {Int32GetDatum(mirror)};

	spi_exec("UPDATE sync.mirror_state SET last_push_at = pg_catalog.now() "
			 "WHERE mirror OPERATOR(pg_catalog.=) $1",
			 1, t, a, NULL, SPI_OK_UPDATE);
}

/*
 * A pull ran to the end of what the remote had: the errors are cleared and
 * the next pull is due after the mirror's pull_interval, else
 * sync.pull_interval.
 */
void
note_pull_done(SyncMirror *m)
{
	Interval   *interval = engine_mirror(m)->pull_interval;
	Oid			t[3] = {INT4OID, INT4OID, INTERVALOID};
	Datum		a[3] = {Int32GetDatum(m->id), Int32GetDatum(sync_pull_interval_ms),
	interval ? IntervalPGetDatum(interval) : (Datum) 0};
	char		n[3] = {' ', ' ', interval ? ' ' : 'n'};

	spi_exec("UPDATE sync.mirror_state s SET last_pull_at = pg_catalog.now(), failures = 0, last_error = NULL, "
			 "  next_pull_at = pg_catalog.now() OPERATOR(pg_catalog.+) "
			 "    COALESCE($3, pg_catalog.make_interval(secs => $2 OPERATOR(pg_catalog./) 1000.0)) "
			 "WHERE s.mirror OPERATOR(pg_catalog.=) $1",
			 3, t, a, n, SPI_OK_UPDATE);
}

void
save_usage(SyncConnection *conn)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		args[2];

	if (conn->api_usage == NULL)
		return;
	args[0] = CStringGetTextDatum(conn->name);
	args[1] = CStringGetTextDatum(conn->api_usage);
	spi_exec("INSERT INTO sync.connection_state (connection, api_usage, updated_at) VALUES ($1, $2, now()) "
			 "ON CONFLICT (connection) DO UPDATE SET api_usage = EXCLUDED.api_usage, updated_at = now() "
			 "WHERE sync.connection_state.api_usage IS DISTINCT FROM EXCLUDED.api_usage",
			 2, types, args, NULL, SPI_OK_INSERT);
}

/*
 * This thread's CPU time in ms (0 where the clock is missing), for the
 * debug lines of the apply and the push: a figure that other load on the
 * machine disturbs less than the clock.
 */
double
thread_cpu_ms(void)
{
#ifdef CLOCK_THREAD_CPUTIME_ID
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0)
		return ts.tv_sec * 1000.0 + ts.tv_nsec / 1000000.0;
#endif
	return 0;
}

char *
values_hash(char **values, int n)
{
	StringInfoData buf;
	char		hex[33];
	const char *errstr = NULL;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < n; i++)
	{
		appendStringInfoString(&buf, values[i] ? values[i] : "\\N");
		appendStringInfoChar(&buf, '\x1f');
	}
	if (!pg_md5_hash(buf.data, buf.len, hex, &errstr))
		return NULL;
	return pstrdup(hex);
}
int
key_index_cmp(const void *a, const void *b)
{
	return strcmp(((const KeyIndex *) a)->key, ((const KeyIndex *) b)->key);
}

/* by key, then by item: equal keys in their original order */
int
key_index_item_cmp(const void *a, const void *b)
{
	int			c = key_index_cmp(a, b);

	return c != 0 ? c : ((const KeyIndex *) a)->item - ((const KeyIndex *) b)->item;
}

SJson *
load_cursor(int mirror_id, MemoryContext work)
{
	Oid			t[1] = {INT4OID};
	Datum		a[1] = {Int32GetDatum(mirror_id)};
	char	   *text;
	char	   *err;
	MemoryContext old;
	SJson	   *cur;

	spi_exec("SELECT cursor::pg_catalog.text FROM sync.mirror_state WHERE mirror OPERATOR(pg_catalog.=) $1",
			 1, t, a, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1 || (text = getv(0, 1)) == NULL)
		return NULL;
	old = MemoryContextSwitchTo(work);
	cur = sjson_parse(text, strlen(text), &err);
	MemoryContextSwitchTo(old);
	return cur;
}

/*
 * The cursor advances with the page it covers, records set aside included.
 * Its own transaction's part: the caller applied the page in it.
 */
void
advance_cursor(SyncMirror *m, SyncPage *page)
{
	Oid			t[6] = {INT4OID, TEXTOID, INT8OID, INT8OID, TEXTOID, BOOLOID};
	Datum		a[6];
	char		n[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	char	   *maxstamp = NULL;
	int			i;

	for (i = 0; i < page->nrecords; i++)
		if (page->records[i].stamp &&
			(maxstamp == NULL || strcmp(page->records[i].stamp, maxstamp) > 0))
			maxstamp = page->records[i].stamp;
	a[0] = Int32GetDatum(m->id);
	if (page->cursor)
		a[1] = CStringGetTextDatum(sjson_serialize(page->cursor));
	else
		n[1] = 'n';
	a[2] = Int64GetDatum(page->nrecords);
	a[3] = Int64GetDatum(page->total);
	if (page->total < 0)
		n[3] = 'n';
	if (maxstamp)
		a[4] = CStringGetTextDatum(maxstamp);
	else
		n[4] = 'n';
	a[5] = BoolGetDatum(page->backfill_done);
	/* (a malformed stamp from the remote does not stop the cursor) */
	spi_exec("UPDATE sync.mirror_state SET cursor = $2::pg_catalog.jsonb, "
			 "  backfill_done = CASE WHEN phase OPERATOR(pg_catalog.=) 'backfill' "
			 "    THEN backfill_done OPERATOR(pg_catalog.+) $3 ELSE backfill_done END, "
			 "  backfill_total = COALESCE($4, backfill_total), "
			 "  remote_stamp_max = CASE WHEN $5 OPERATOR(pg_catalog.~) '^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9:.]+([+-][0-9:]+|Z)?$' "
			 "    THEN GREATEST(remote_stamp_max, $5::pg_catalog.timestamptz) ELSE remote_stamp_max END, "
			 "  phase = CASE WHEN $6 THEN 'incremental' ELSE phase END "
			 "WHERE mirror OPERATOR(pg_catalog.=) $1", 6, t, a, n, SPI_OK_UPDATE);
}
