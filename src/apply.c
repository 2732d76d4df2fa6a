/*
 * apply.c — the inbound half of the engine: pull pages from the provider
 * and apply them to the table, as its owner.
 *
 *   [read cursor, commit] -> HTTP -> [apply page + advance cursor, commit]
 *
 * A page is applied whole in a subtransaction; if the table refuses any of
 * it, record by record, each in its own subtransaction.  Records that still
 * fail, or whose row a user keeps locked, are set aside (sync.inbound_error)
 * and the cursor advances past them; they come back by sync.retry() or,
 * for a locked row, at the next round (pull_retry).
 */
#include "postgres.h"

#include "utils/guc.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "adaptive.h"
#include "apply_bulk.h"
#include "capture.h"
#include "conn.h"
#include "engine_int.h"
#include "pause.h"
#include "provider.h"

/*
 * One page being applied.  Records are applied all at once; if that fails,
 * one by one, each in a subtransaction, so that a record the table rejects
 * (a constraint, a trigger, a value of the wrong type) is set aside and the
 * rest arrive.  Rows a user holds locked are set aside too, for a later
 * round.  What happened to each record is journaled, and the records set
 * aside are kept in sync.inbound_error (shown in sync.errors).
 */
typedef struct PageApply
{
	SyncMirror *m;
	SyncPage   *page;
	MemoryContext work;
	int			n;				/* records */
	char	   *state;			/* per record: 'a' apply, 'l' row locked, 'f' failed */
	char	  **key;			/* per record: key of the row holding its remote ID */
	Datum	   *pending;		/* per record: columns with pending local changes */
	char	   *pnulls;			/* 'n': none pending */
	char	  **adopt_key;		/* per record: our own create's row, to adopt it */
	int			ndel;			/* remote deletes */
	char	  **del_rid;
	char	  **del_key;
	char	   *del_state;
	int			only;			/* apply just this record (-1: all) */
	int			only_del;		/* apply just this delete (-1: all) */
	SPIPlanPtr	plan;			/* the single-record upsert */
	bool		keys_known;		/* key[] / del_key[] filled (page_lock ran) */
	bool		optimistic;		/* applied without locking first: re-check after */
	bool		race;			/* ... and a local change was queued meanwhile */
	char	   *bulk_sql;
	char	   *bulk_insert_sql;	/* the same rows by a plain INSERT (step_bulk) */
	int		   *fieldmap;
	int			nbulk_params;
	/* journal rows */
	int			nj;
	int			j_cap;
	char	  **j_op,
			  **j_rid,
			  **j_hash,
			  **j_result,
			  **j_detail;
	int64		applied,
				deleted;
	/* records set aside */
	int			nf;
	char	  **f_rid,
			  **f_key,
			  **f_op,
			  **f_code,
			  **f_msg,
			  **f_state;
} PageApply;

static void
journal_add(PageApply *pa, const char *op, char *rid, char *hash, const char *result, char *detail)
{
	if (pa->nj == pa->j_cap)
	{
		/* (restored rows add a row to a record's: grow) */
		pa->j_cap *= 2;
		pa->j_op = repalloc(pa->j_op, sizeof(char *) * pa->j_cap);
		pa->j_rid = repalloc(pa->j_rid, sizeof(char *) * pa->j_cap);
		pa->j_hash = repalloc(pa->j_hash, sizeof(char *) * pa->j_cap);
		pa->j_result = repalloc(pa->j_result, sizeof(char *) * pa->j_cap);
		pa->j_detail = repalloc(pa->j_detail, sizeof(char *) * pa->j_cap);
	}
	pa->j_op[pa->nj] = (char *) op;
	pa->j_rid[pa->nj] = rid;
	pa->j_hash[pa->nj] = hash;
	pa->j_result[pa->nj] = (char *) result;
	pa->j_detail[pa->nj++] = detail;
}

/* A record or delete set aside: remembered, journaled. */
static void
set_aside(PageApply *pa, char *rid, char *key, const char *op, ErrorData *e)
{
	MemoryContext old = MemoryContextSwitchTo(pa->work);
	bool		transient = error_is_transient(e);

	pa->f_rid[pa->nf] = rid;
	pa->f_key[pa->nf] = key;
	pa->f_op[pa->nf] = (char *) op;
	pa->f_code[pa->nf] = pstrdup(unpack_sql_state(e->sqlerrcode));
	pa->f_msg[pa->nf] = error_text(e);
	/* a locked row or a deadlock comes back by itself; the rest waits for sync.retry() */
	pa->f_state[pa->nf] = transient ? "retry" : "parked";
	journal_add(pa, strcmp(op, "delete") == 0 ? "D" : "U", rid, NULL, "failed",
				psprintf("%s: %s", pa->f_code[pa->nf], pa->f_msg[pa->nf]));
	pa->nf++;
	MemoryContextSwitchTo(old);
}

/*
 * Values the database cannot hold at all are set aside before any SQL sees
 * them: text in another encoding than the database's (invalid UTF-8 from the
 * remote would otherwise be stored as is, by the text_array() path).
 */
static void page_lock(PageApply *pa, bool lock);

static void
page_check_encoding(PageApply *pa)
{
	SyncMirror *m = pa->m;
	char	  **bad = palloc0(sizeof(char *) * Max(1, pa->n));
	bool		any = false;
	int			i,
				k;

	for (i = 0; i < pa->n; i++)
	{
		SyncRecord *r = &pa->page->records[i];

		if (pa->state[i] != 'a')
			continue;
		if (r->remote_id == NULL || !pg_verifymbstr(r->remote_id, strlen(r->remote_id), true))
			bad[i] = m->remote_id_column;
		for (k = 0; k < m->nfields && bad[i] == NULL && !r->deleted; k++)
			if (r->values[k] != NULL && !pg_verifymbstr(r->values[k], strlen(r->values[k]), true))
				bad[i] = m->columns[k];
		if (r->stamp != NULL && bad[i] == NULL && !pg_verifymbstr(r->stamp, strlen(r->stamp), true))
			bad[i] = m->stamp_column;
		if (r->invalid != NULL && bad[i] == NULL)
			bad[i] = "";
		any = any || bad[i] != NULL;
	}
	if (!any)
		return;
	if (!pa->keys_known)
		page_lock(pa, false);	/* (rare) which rows exist, to say what was tried */
	for (i = 0; i < pa->n; i++)
	{
		SyncRecord *r = &pa->page->records[i];
		ErrorData	e;

		if (bad[i] == NULL)
			continue;
		memset(&e, 0, sizeof(e));
		e.sqlerrcode = ERRCODE_CHARACTER_NOT_IN_REPERTOIRE;
		e.message = r->invalid ? r->invalid :
			psprintf("the remote's value for column \"%s\" is not valid %s",
					 bad[i], GetDatabaseEncodingName());
		if (r->remote_id == NULL)
			r->remote_id = "";
		pa->state[i] = 'f';
		set_aside(pa, pg_verifymbstr(r->remote_id, strlen(r->remote_id), true) ?
				  r->remote_id : "(invalid)", pa->key[i],
				  r->deleted ? "delete" : pa->key[i] ? "update" : "insert", &e);
	}
}

/*
 * Which of the page's remote IDs have a row, and lock those rows, as the
 * owner.  Locking first means the pending local changes read next are those
 * of committed writes: a user transaction updating a row commits before we
 * get its lock, and its outbox entry is then visible.  A row a user keeps
 * locked past sync.lock_timeout is set aside, the rest go on.
 */
typedef struct LockStep
{
	PageApply  *pa;
	char	  **rids;
	int			nrids;
	const char *lock;			/* "", "FOR NO KEY UPDATE", "... SKIP LOCKED" */
	int			nrows;
	char	  **row_rid;
	char	  **row_key;
} LockStep;

static void
lock_rows(void *arg)
{
	LockStep   *l = (LockStep *) arg;
	SyncMirror *m = l->pa->m;
	Oid			t[1] = {TEXTARRAYOID};
	Datum		a[1] = {text_array(l->rids, l->nrids)};
	OwnerScope	os;
	int			r;

	owner_begin(m->owner, &os);

	/*
	 * A probe of the remote-ID index per ID, never a scan: during a backfill
	 * the table's statistics lag far behind its size, and a planner that
	 * believes it small would scan the whole growing table for every page.
	 */
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	spi_exec(deparse_lock(m, l->lock), 1, t, a, NULL, SPI_OK_SELECT);
	owner_end(&os);
	l->nrows = (int) SPI_processed;
	l->row_rid = palloc(sizeof(char *) * Max(1, l->nrows));
	l->row_key = palloc(sizeof(char *) * Max(1, l->nrows));
	for (r = 0; r < l->nrows; r++)
	{
		l->row_rid[r] = MemoryContextStrdup(l->pa->work, getv(r, 1));
		l->row_key[r] = MemoryContextStrdup(l->pa->work, getv(r, 2));
	}
}

static int
cstring_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Sort a LockStep's rows by remote ID (strcmp order, whatever the collation). */
static void
lock_rows_sort(LockStep *l)
{
	KeyIndex   *ix = palloc(sizeof(KeyIndex) * Max(1, l->nrows));
	char	  **r = palloc(sizeof(char *) * Max(1, l->nrows));
	char	  **k = palloc(sizeof(char *) * Max(1, l->nrows));
	int			i;

	for (i = 0; i < l->nrows; i++)
	{
		ix[i].key = l->row_rid[i];
		ix[i].item = i;
	}
	qsort(ix, l->nrows, sizeof(KeyIndex), key_index_cmp);
	for (i = 0; i < l->nrows; i++)
	{
		r[i] = l->row_rid[ix[i].item];
		k[i] = l->row_key[ix[i].item];
	}
	l->row_rid = r;
	l->row_key = k;
}

/* The key of the row holding remote ID rid (sorted rows), or NULL. */
static char *
lock_rows_key(LockStep *l, char *rid, bool *present)
{
	char	  **hit = bsearch(&rid, l->row_rid, l->nrows, sizeof(char *), cstring_cmp);

	*present = hit != NULL;
	return hit ? l->row_key[hit - l->row_rid] : NULL;
}

static void
page_lock(PageApply *pa, bool lock)
{
	LockStep	l;
	LockStep	got;
	ErrorData  *e = NULL;
	bool		partial = false;
	bool		present;
	int			i;

	memset(&l, 0, sizeof(l));
	l.pa = pa;
	l.rids = palloc(sizeof(char *) * Max(1, pa->n + pa->ndel));
	for (i = 0; i < pa->n; i++)
		if (!pa->page->records[i].deleted && pa->state[i] == 'a')
			l.rids[l.nrids++] = pa->page->records[i].remote_id;
	for (i = 0; i < pa->ndel; i++)
		l.rids[l.nrids++] = pa->del_rid[i];
	pa->keys_known = true;
	if (l.nrids == 0)
		return;
	l.lock = lock ? "FOR NO KEY UPDATE OF t" : "";
	if (!lock)
		lock_rows(&l);
	else if (!in_subxact(lock_rows, &l, pa->work, &e))
	{
		if (!error_is_transient(e))
			ReThrowError(e);
		/* someone holds a row: take what is free, set the rest aside */
		l.lock = "";
		lock_rows(&l);
		got = l;
		got.lock = "FOR NO KEY UPDATE OF t SKIP LOCKED";
		lock_rows(&got);
		lock_rows_sort(&got);
		partial = true;
	}
	lock_rows_sort(&l);
	for (i = 0; i < pa->n; i++)
	{
		SyncRecord *r = &pa->page->records[i];

		if (r->deleted || pa->state[i] != 'a')
			continue;
		pa->key[i] = lock_rows_key(&l, r->remote_id, &present);
		if (present && partial)
		{
			(void) lock_rows_key(&got, r->remote_id, &present);
			if (!present)
				pa->state[i] = 'l';
		}
	}
	for (i = 0; i < pa->ndel; i++)
	{
		pa->del_key[i] = lock_rows_key(&l, pa->del_rid[i], &present);
		if (!present)
			pa->del_state[i] = 'x';		/* no such row: nothing to delete */
		else if (partial)
		{
			(void) lock_rows_key(&got, pa->del_rid[i], &present);
			if (!present)
				pa->del_state[i] = 'l';
		}
	}
	if (partial)
	{
		for (i = 0; i < pa->n; i++)
			if (pa->state[i] == 'l')
				set_aside(pa, pa->page->records[i].remote_id, pa->key[i], "update", e);
		for (i = 0; i < pa->ndel; i++)
			if (pa->del_state[i] == 'l')
				set_aside(pa, pa->del_rid[i], pa->del_key[i], "delete", e);
	}
}

/* Records that are only the echo of our own last push of their row. */
typedef struct EchoQuery
{
	Datum	   *a;				/* mirror, remote IDs, stamps */
	char	  **echo;
	int			necho;
	MemoryContext work;
} EchoQuery;

static void
echo_query(void *arg)
{
	EchoQuery  *q = (EchoQuery *) arg;
	Oid			t[3] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID};
	int			r;

	spi_exec("SELECT u.rid FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.text[])) AS u(rid, stamp) "
			 "WHERE u.stamp::pg_catalog.timestamptz OPERATOR(pg_catalog.<=) "
			 "  (SELECT pg_catalog.max(j.at) FROM sync.journal j WHERE j.mirror OPERATOR(pg_catalog.=) $1 "
			 "    AND j.remote_id OPERATOR(pg_catalog.=) u.rid AND j.direction OPERATOR(pg_catalog.=) 'out' "
			 "    AND j.result OPERATOR(pg_catalog.=) 'ok')",
			 3, t, q->a, NULL, SPI_OK_SELECT);
	q->necho = (int) SPI_processed;
	q->echo = palloc(sizeof(char *) * Max(1, q->necho));
	for (r = 0; r < q->necho; r++)
		q->echo[r] = getv(r, 1);
}

/*
 * The columns with pending local changes of each record's row, as a text[]
 * (NULL = all columns).  Under "remote_wins" those changes are dropped
 * instead, so the remote value is applied and not pushed back — unless the
 * record is only the echo of our own last push of the row (its stamp is not
 * newer than that push): then nothing remote happened and a newer local
 * edit waiting to be sent stays.
 */
/*
 * Is any insert or update of this mirror waiting to be pushed?  The writes
 * captured but not folded yet are folded first (capture.h): they are
 * pending too, and the checks that follow read the outbox.
 */
static bool
outbox_pending(SyncMirror *m)
{
	Oid			t[1] = {INT4OID};
	Datum		a[1] = {Int32GetDatum(m->id)};

	(void) capture_fold(m->id, true, -1);
	spi_exec("SELECT 1 FROM sync.outbox WHERE mirror OPERATOR(pg_catalog.=) $1 "
			 "AND op OPERATOR(pg_catalog.<>) 'D' AND op OPERATOR(pg_catalog.<>) 'W' LIMIT 1",
			 1, t, a, NULL, SPI_OK_SELECT);
	return SPI_processed > 0;
}

static void
page_pending(PageApply *pa, bool remote_wins)
{
	SyncMirror *m = pa->m;
	char	  **keys = palloc(sizeof(char *) * Max(1, pa->n));
	int			nkeys = 0,
				i,
				r;
	Oid			t[3] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		a[3];

	for (i = 0; i < pa->n; i++)
		pa->pnulls[i] = 'n';
	a[0] = Int32GetDatum(m->id);

	/* usually nothing is pending at all (always during a backfill) */
	if (!outbox_pending(m))
		return;
	for (i = 0; i < pa->n; i++)
		if (pa->key[i] != NULL && pa->state[i] == 'a')
			keys[nkeys++] = pa->key[i];
	if (nkeys == 0)
		return;
	a[1] = text_array(keys, nkeys);
	spi_exec("SELECT o.local_key, CASE WHEN pg_catalog.bool_or(o.columns IS NULL) THEN NULL "
			 "  ELSE pg_catalog.array_agg(DISTINCT c)::pg_catalog.text[] END "
			 "FROM sync.outbox o LEFT JOIN LATERAL pg_catalog.unnest(o.columns) c ON true "
			 "WHERE o.mirror OPERATOR(pg_catalog.=) $1 AND o.local_key OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[]) "
			 "  AND o.op OPERATOR(pg_catalog.<>) 'D' AND o.op OPERATOR(pg_catalog.<>) 'W' GROUP BY 1",
			 2, t, a, NULL, SPI_OK_SELECT);
	for (r = 0; r < (int) SPI_processed; r++)
	{
		char	   *key = getv(r, 1);
		bool		isnull;
		Datum		cols = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull);
		MemoryContext old = MemoryContextSwitchTo(pa->work);

		for (i = 0; i < pa->n; i++)
		{
			if (pa->key[i] == NULL || strcmp(pa->key[i], key) != 0 || pa->state[i] != 'a')
				continue;
			pa->pending[i] = isnull ? text_array(m->columns, m->nfields) : datumCopy(cols, false, -1);
			pa->pnulls[i] = ' ';
		}
		MemoryContextSwitchTo(old);
	}

	if (remote_wins)
	{
		char	  **rids = palloc(sizeof(char *) * Max(1, pa->n));
		char	  **stamps = palloc(sizeof(char *) * Max(1, pa->n));
		char	  **drop = palloc(sizeof(char *) * Max(1, pa->n));
		int			nr = 0,
					ndrop = 0;
		char	  **echo = NULL;
		int			necho = 0;
		EchoQuery	eq;

		for (i = 0; i < pa->n; i++)
			if (pa->pnulls[i] == ' ' && pa->page->records[i].stamp != NULL)
			{
				rids[nr] = pa->page->records[i].remote_id;
				stamps[nr++] = pa->page->records[i].stamp;
			}
		if (nr > 0)
		{
			a[1] = text_array(rids, nr);
			a[2] = text_array(stamps, nr);
			/* stamps are the remote's: a malformed one just is no echo */
			eq.a = a;
			if (in_subxact(echo_query, &eq, pa->work, NULL))
			{
				echo = eq.echo;
				necho = eq.necho;
			}
		}
		for (i = 0; i < pa->n; i++)
		{
			bool		is_echo = false;

			if (pa->pnulls[i] != ' ')
				continue;
			for (r = 0; r < necho && !is_echo; r++)
				is_echo = strcmp(echo[r], pa->page->records[i].remote_id) == 0;
			if (is_echo)
				continue;
			/* the remote's values win: forget the local changes not yet sent */
			drop[ndrop++] = pa->key[i];
			pa->pnulls[i] = 'n';
		}
		if (ndrop > 0)
		{
			a[1] = text_array(drop, ndrop);
			spi_exec("DELETE FROM sync.outbox o WHERE o.mirror OPERATOR(pg_catalog.=) $1 "
					 "AND o.local_key OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[]) "
					 "AND o.op OPERATOR(pg_catalog.=) 'U' AND o.slot OPERATOR(pg_catalog.=) 0",
					 2, t, a, NULL, SPI_OK_DELETE);
		}
	}
}

/*
 * Records this mirror created but whose result was not recorded yet (the
 * worker crashed, or the pull ran while the push was in flight) come back
 * carrying our idempotency key: the key's local row is given its remote ID
 * before the upsert, so the record updates that row instead of arriving as
 * a second copy.  Here: find those rows (sync's catalog, as the caller).
 */
static void
page_adopt_pairs(PageApply *pa)
{
	SyncMirror *m = pa->m;
	const char *idem = engine_mirror(m)->idempotency_field;
	char	  **ids,
			  **keys;
	int		   *which;
	int			k,
				i,
				r,
				n = 0;
	Oid			t[3] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		a[3];

	if (idem == NULL)
		return;
	for (k = 0; k < m->nfields; k++)
		if (strcmp(m->fields[k].remote_name, idem) == 0)
			break;
	if (k == m->nfields)
		return;					/* the key is not mapped: write-back resolves it */
	ids = palloc(sizeof(char *) * Max(1, pa->n));
	keys = palloc(sizeof(char *) * Max(1, pa->n));
	which = palloc(sizeof(int) * Max(1, pa->n));
	for (i = 0; i < pa->n; i++)
		if (!pa->page->records[i].deleted && pa->key[i] == NULL && pa->state[i] == 'a' &&
			pa->page->records[i].values[k] != NULL &&
			strncmp(pa->page->records[i].values[k], "sync-", 5) == 0)
		{
			ids[n] = pa->page->records[i].remote_id;
			which[n] = i;
			keys[n++] = pa->page->records[i].values[k];
		}
	if (n == 0)
		return;
	a[0] = Int32GetDatum(m->id);
	a[1] = text_array(ids, n);
	a[2] = text_array(keys, n);
	spi_exec("SELECT v.rid, o.local_key FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.text[])) AS v(rid, key) "
			 "JOIN sync.outbox o ON o.mirror OPERATOR(pg_catalog.=) $1 "
			 " AND o.idempotency_key OPERATOR(pg_catalog.=) v.key",
			 3, t, a, NULL, SPI_OK_SELECT);
	for (r = 0; r < (int) SPI_processed; r++)
	{
		char	   *rid = getv(r, 1);

		for (i = 0; i < n; i++)
			if (strcmp(ids[i], rid) == 0)
				pa->adopt_key[which[i]] = MemoryContextStrdup(pa->work, getv(r, 2));
	}
}

/* Is record i (delete d) part of the current step? */
#define STEP_RECORD(pa, i) ((pa)->only < 0 ? (pa)->only_del < 0 : (pa)->only == (i))
#define STEP_DELETE(pa, d) ((pa)->only_del < 0 ? (pa)->only < 0 : (pa)->only_del == (d))

/* Our own creates, come back before their result was recorded: adopted. */
static void
step_adopt(PageApply *pa)
{
	SyncMirror *m = pa->m;
	char	  **rid = palloc(sizeof(char *) * Max(1, pa->n));
	char	  **key = palloc(sizeof(char *) * Max(1, pa->n));
	int			n = 0,
				i;

	for (i = 0; i < pa->n; i++)
		if (STEP_RECORD(pa, i) && pa->state[i] == 'a' && pa->adopt_key[i] != NULL)
		{
			rid[n] = pa->page->records[i].remote_id;
			key[n++] = pa->adopt_key[i];
		}
	if (n > 0)
	{
		Oid			t[2] = {TEXTARRAYOID, TEXTARRAYOID};
		Datum		a[2] = {text_array(rid, n), text_array(key, n)};

		spi_exec(deparse_adopt(m), 2, t, a, NULL, SPI_OK_UPDATE);
	}
}

/*
 * One set-based statement over records take[0..ntake) (in remote-ID order):
 * its text[] arguments, and what it returned, copied (remote ID, inserted).
 */
typedef struct BulkRun
{
	PageApply  *pa;
	const char *sql;
	int		   *take;
	int			ntake;
	int			nrows;
	char	  **row_rid;
	bool	   *row_inserted;
} BulkRun;

static void
bulk_exec(void *arg)
{
	BulkRun    *b = (BulkRun *) arg;
	PageApply  *pa = b->pa;
	SyncMirror *m = pa->m;
	Oid		   *types = palloc(sizeof(Oid) * pa->nbulk_params);
	Datum	   *args = palloc(sizeof(Datum) * pa->nbulk_params);
	char	  **vals = palloc(sizeof(char *) * Max(1, b->ntake));
	int			i,
				k;

	for (k = 0; k < pa->nbulk_params; k++)
	{
		int			f = pa->fieldmap[k];

		for (i = 0; i < b->ntake; i++)
		{
			SyncRecord *r = &pa->page->records[b->take[i]];

			vals[i] = m->fields[f].role == FIELD_ID ? r->remote_id :
				m->fields[f].role == FIELD_STAMP ? r->stamp : r->values[f];
		}
		types[k] = TEXTARRAYOID;
		args[k] = text_array(vals, b->ntake);
	}
	spi_exec(b->sql, pa->nbulk_params, types, args, NULL, SPI_OK_INSERT_RETURNING);
	b->nrows = (int) SPI_processed;
	b->row_rid = palloc(sizeof(char *) * Max(1, b->nrows));
	b->row_inserted = palloc(sizeof(bool) * Max(1, b->nrows));
	for (i = 0; i < b->nrows; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;
		Datum		rid = SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull);

		b->row_rid[i] = isnull ? NULL : TextDatumGetCString(rid);
		b->row_inserted[i] = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
	}
}

/*
 * Mirrors whose last set-based apply inserted every record: their next
 * page is tried as a plain INSERT first (bulk_insert_first).
 */
#define BULK_MIRRORS 32
static int	bulk_upsert_mirror[BULK_MIRRORS];	/* mirror IDs in upsert mode */

static bool
bulk_insert_first(int mirror)
{
	int			i;

	for (i = 0; i < BULK_MIRRORS; i++)
		if (bulk_upsert_mirror[i] == mirror)
			return false;
	return true;
}

static void
bulk_set_insert_first(int mirror, bool insert_first)
{
	int			i;

	for (i = 0; i < BULK_MIRRORS; i++)
		if (bulk_upsert_mirror[i] == mirror)
			bulk_upsert_mirror[i] = 0;
	if (insert_first)
		return;
	for (i = 0; i < BULK_MIRRORS; i++)
		if (bulk_upsert_mirror[i] == 0)
			break;
	bulk_upsert_mirror[i < BULK_MIRRORS ? i : mirror % BULK_MIRRORS] = mirror;
}

/*
 * Records without pending local changes: one statement.  A remote ID twice
 * in a page: its last (newest) version.  Journal: one row per record
 * written, with the hash of its values.
 *
 * During a backfill every record is new, and an INSERT ... ON CONFLICT
 * spends a third of its time on the conflict machinery (a probe of the
 * remote-ID index and a speculative insertion per row): so while a mirror's
 * pages bring only new records, a page is first tried as a plain INSERT, in
 * a subtransaction; if any of its remote IDs has a row already (a unique
 * violation), that is undone and the page upserted as always, and the
 * mirror's next pages are upserted until one inserts all its records again.
 */
static void
step_bulk(PageApply *pa)
{
	SyncMirror *m = pa->m;
	SyncPage   *page = pa->page;
	KeyIndex   *idx = palloc(sizeof(KeyIndex) * Max(1, pa->n));
	int		   *take = palloc(sizeof(int) * Max(1, pa->n));
	int			nb = 0,
				ntake = 0,
				ninserted = 0,
				i;
	BulkRun		b;
	bool		done = false;
	ValuesHasher vh;

	for (i = 0; i < pa->n; i++)
		if (STEP_RECORD(pa, i) && pa->state[i] == 'a' && !page->records[i].deleted &&
			pa->pnulls[i] == 'n')
		{
			idx[nb].key = page->records[i].remote_id;
			idx[nb++].item = i;
		}
	if (nb == 0)
		return;
	qsort(idx, nb, sizeof(KeyIndex), key_index_item_cmp);
	for (i = 0; i < nb; i++)
		if (i == nb - 1 || strcmp(idx[i].key, idx[i + 1].key) != 0)
			take[ntake++] = idx[i].item;
	if (pa->bulk_sql == NULL)
	{
		pa->bulk_sql = MemoryContextStrdup(pa->work, deparse_apply_bulk(m, &pa->fieldmap, &pa->nbulk_params));
		pa->bulk_insert_sql = MemoryContextStrdup(pa->work, deparse_apply_bulk_insert(m));
	}
	memset(&b, 0, sizeof(b));
	b.pa = pa;
	b.take = take;
	b.ntake = ntake;
	if (bulk_insert_first(m->id))
	{
		ErrorData  *e = NULL;

		b.sql = pa->bulk_insert_sql;
		done = in_subxact(bulk_exec, &b, pa->work, &e);
		if (!done && e->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
			ReThrowError(e);
	}
	if (!done)
	{
		b.sql = pa->bulk_sql;
		bulk_exec(&b);
	}

	for (i = 0; i < ntake; i++)
	{
		idx[i].key = page->records[take[i]].remote_id;
		idx[i].item = take[i];
	}
	values_hasher_init(&vh);
	for (i = 0; i < b.nrows; i++)
	{
		KeyIndex	probe = {b.row_rid[i], 0};
		KeyIndex   *hit = probe.key == NULL ? NULL :
			bsearch(&probe, idx, ntake, sizeof(KeyIndex), key_index_cmp);

		if (hit == NULL)
			continue;
		journal_add(pa, "U", page->records[hit->item].remote_id,
					values_hasher_hash(&vh, page->records[hit->item].values, m->nfields),
					b.row_inserted[i] ? "inserted" : "updated", NULL);
		ninserted += b.row_inserted[i] ? 1 : 0;
		pa->applied++;
	}
	values_hasher_end(&vh);
	bulk_set_insert_first(m->id, ninserted == ntake);
}

/* Records with pending local changes, one by one (a prepared upsert). */
static void
step_pending(PageApply *pa)
{
	SyncMirror *m = pa->m;
	int			i,
				k;

	for (i = 0; i < pa->n; i++)
	{
		SyncRecord *r = &pa->page->records[i];
		int			nparams = m->nfields + 1;
		Datum	   *args;
		char	   *nulls;

		if (!STEP_RECORD(pa, i) || pa->state[i] != 'a' || r->deleted || pa->pnulls[i] == 'n')
			continue;
		args = palloc(sizeof(Datum) * nparams);
		nulls = palloc(nparams);
		if (pa->plan == NULL)
		{
			Oid		   *types = palloc(sizeof(Oid) * nparams);

			for (k = 0; k < nparams; k++)
				types[k] = TEXTOID;
			types[nparams - 1] = TEXTARRAYOID;
			pa->plan = SPI_prepare(deparse_apply(m, &nparams), nparams, types);
			if (pa->plan == NULL)
				elog(ERROR, "sync: preparing apply for %s failed: %s", m->qualified_table,
					 SPI_result_code_string(SPI_result));
		}
		for (k = 0; k < m->nfields; k++)
		{
			const char *v = r->values[k];

			if (m->fields[k].role == FIELD_ID)
				v = r->remote_id;
			else if (m->fields[k].role == FIELD_STAMP)
				v = r->stamp;
			args[k] = v ? CStringGetTextDatum(v) : (Datum) 0;
			nulls[k] = v ? ' ' : 'n';
		}
		args[nparams - 1] = pa->pending[i];
		nulls[nparams - 1] = pa->pnulls[i];
		if (SPI_execute_plan(pa->plan, args, nulls, false, 0) != SPI_OK_INSERT_RETURNING)
			elog(ERROR, "sync: applying a record to %s failed", m->qualified_table);
		if (SPI_processed > 0)
		{
			journal_add(pa, "U", r->remote_id, values_hash(r->values, m->nfields),
						strcmp(getv(0, 1), "t") == 0 ? "inserted" : "updated", NULL);
			pa->applied++;
		}
	}
}

/* The remote deletes (under "delete": "flag", the rows are flagged instead). */
static void
step_deletes(PageApply *pa)
{
	char	  **rid = palloc(sizeof(char *) * Max(1, pa->ndel));
	bool		flag = engine_mirror(pa->m)->on_delete == DELETE_FLAG;
	int			n = 0,
				i;

	for (i = 0; i < pa->ndel; i++)
		if (STEP_DELETE(pa, i) && pa->del_state[i] == 'a')
			rid[n++] = pa->del_rid[i];
	if (n > 0)
	{
		Oid			t[1] = {TEXTARRAYOID};
		Datum		a[1] = {text_array(rid, n)};

		if (flag)
			spi_exec(deletes_flag_sql(pa->m), 1, t, a, NULL, SPI_OK_UPDATE_RETURNING);
		else
			spi_exec(deparse_delete(pa->m), 1, t, a, NULL, SPI_OK_DELETE_RETURNING);
		for (i = 0; i < (int) SPI_processed; i++)
			journal_add(pa, "D", getv(i, 1), NULL, flag ? "flagged" : "deleted", NULL);
		pa->deleted += SPI_processed;
	}
}

/*
 * Under "delete": "flag", records that are live again (restored from the
 * recycle bin, or listed live by a reconciliation) lose their flag, and the
 * local changes parked meanwhile are sent or dropped (deletes.c).
 */
static void
step_restored(PageApply *pa)
{
	char	  **rid;
	char	  **restored;
	int			n = 0,
				nrestored = 0,
				i;

	if (engine_mirror(pa->m)->on_delete != DELETE_FLAG)
		return;
	if (pa->page->reconcile)
	{
		if (pa->only >= 0 || pa->only_del >= 0)
			return;
		rid = pa->page->deleted_ids;
		n = pa->page->ndeleted_ids;
	}
	else
	{
		rid = palloc(sizeof(char *) * Max(1, pa->n));
		for (i = 0; i < pa->n; i++)
			if (STEP_RECORD(pa, i) && pa->state[i] == 'a' && !pa->page->records[i].deleted)
				rid[n++] = pa->page->records[i].remote_id;
	}
	if (n == 0)
		return;
	deletes_restore(pa->m, rid, n, &restored, &nrestored);
	for (i = 0; i < nrestored; i++)
		journal_add(pa, "U", restored[i], NULL, "restored", NULL);
}

/*
 * Apply the step's records and deletes, as the table's owner: adopt our own
 * creates, one set-based upsert for the records without pending local
 * changes, one upsert each for the others, the deletes.  Journal rows are
 * added to pa; the caller discards them if the step fails.
 */
static void
apply_step(void *arg)
{
	PageApply  *pa = (PageApply *) arg;
	OwnerScope	os;

	owner_begin(pa->m->owner, &os);
	step_adopt(pa);
	step_bulk(pa);
	step_pending(pa);
	step_deletes(pa);
	owner_end(&os);
	step_restored(pa);

	/*
	 * Applied without locking first (nothing was pending): a user
	 * transaction that updated one of these rows and committed while the
	 * upsert waited for its lock has had its value overwritten.  Its outbox
	 * entry is visible now; if any appeared, undo and apply again the
	 * careful way (page_apply).
	 */
	if (pa->optimistic && outbox_pending(pa->m))
	{
		pa->race = true;
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("local changes to %s were queued while a page was applied", pa->m->qualified_table)));
	}
}

/* Remote IDs of rows no longer live remotely: a full live-ID list (reconcile). */
typedef struct Reconcile
{
	PageApply  *pa;
	char	  **live;
	int			nlive;
} Reconcile;

static void
reconcile_rows(void *arg)
{
	Reconcile  *rc = (Reconcile *) arg;
	SyncMirror *m = rc->pa->m;
	Oid			t[1] = {TEXTARRAYOID};
	Datum		a[1] = {text_array(rc->live, rc->nlive)};
	OwnerScope	os;
	int			i;

	owner_begin(m->owner, &os);
	spi_exec(deparse_reconcile(m), 1, t, a, NULL, SPI_OK_SELECT);
	owner_end(&os);
	rc->pa->ndel = (int) SPI_processed;
	rc->pa->del_rid = palloc(sizeof(char *) * Max(1, rc->pa->ndel));
	for (i = 0; i < rc->pa->ndel; i++)
		rc->pa->del_rid[i] = getv(i, 1);
}

/*
 * A page to apply: its records, and its remote deletes (none under the
 * "delete": "keep" option): those of deleted records and of a delete feed,
 * or, for a full live-ID list, the rows whose remote ID is not in it.
 * Under "flag" the same rows are flagged instead of deleted (step_deletes).
 */
static void
page_init(PageApply *pa, SyncMirror *m, SyncPage *page, MemoryContext work)
{
	bool		deletes = engine_mirror(m)->on_delete != DELETE_KEEP;
	int			cap,
				i;

	memset(pa, 0, sizeof(*pa));
	pa->m = m;
	pa->page = page;
	pa->work = work;
	pa->n = page->nrecords;
	pa->only = pa->only_del = -1;
	pa->state = palloc(Max(1, pa->n));
	memset(pa->state, 'a', Max(1, pa->n));
	pa->key = palloc0(sizeof(char *) * Max(1, pa->n));
	pa->pending = palloc0(sizeof(Datum) * Max(1, pa->n));
	pa->pnulls = palloc(Max(1, pa->n));
	memset(pa->pnulls, 'n', Max(1, pa->n));
	pa->adopt_key = palloc0(sizeof(char *) * Max(1, pa->n));

	if (deletes && page->reconcile)
	{
		Reconcile	rc = {pa, page->deleted_ids, page->ndeleted_ids};

		reconcile_rows(&rc);
	}
	else if (deletes)
	{
		pa->del_rid = palloc(sizeof(char *) * Max(1, pa->n + page->ndeleted_ids));
		for (i = 0; i < pa->n; i++)
			if (page->records[i].deleted)
				pa->del_rid[pa->ndel++] = page->records[i].remote_id;
		for (i = 0; i < page->ndeleted_ids; i++)
			pa->del_rid[pa->ndel++] = page->deleted_ids[i];
		/* a delete feed's ID that the page brings back live: restored since */
		pa->ndel = deletes_drop_live(pa->del_rid, pa->ndel, page->records, pa->n);
	}
	pa->del_key = palloc0(sizeof(char *) * Max(1, pa->ndel));
	pa->del_state = palloc(Max(1, pa->ndel));
	memset(pa->del_state, 'a', Max(1, pa->ndel));
	cap = pa->n + pa->ndel + 1;
	pa->j_cap = cap;
	pa->j_op = palloc(sizeof(char *) * cap);
	pa->j_rid = palloc(sizeof(char *) * cap);
	pa->j_hash = palloc(sizeof(char *) * cap);
	pa->j_result = palloc(sizeof(char *) * cap);
	pa->j_detail = palloc(sizeof(char *) * cap);
	pa->f_rid = palloc(sizeof(char *) * cap);
	pa->f_key = palloc(sizeof(char *) * cap);
	pa->f_op = palloc(sizeof(char *) * cap);
	pa->f_code = palloc(sizeof(char *) * cap);
	pa->f_msg = palloc(sizeof(char *) * cap);
	pa->f_state = palloc(sizeof(char *) * cap);
}

/*
 * Record by record, each in a subtransaction, after the whole page failed:
 * what the table refuses is set aside, the rest goes in.
 */
static void
page_one_by_one(PageApply *pa)
{
	SyncPage   *page = pa->page;
	int			i;

	for (i = 0; i < pa->n; i++)
	{
		ErrorData  *e = NULL;

		if (pa->state[i] != 'a')
			continue;
		pa->only = i;
		pa->only_del = -1;
		if (!in_subxact(apply_step, pa, pa->work, &e))
		{
			pa->state[i] = 'f';
			set_aside(pa, page->records[i].remote_id, pa->key[i],
					  page->records[i].deleted ? "delete" : pa->key[i] ? "update" : "insert", e);
		}
	}
	for (i = 0; i < pa->ndel; i++)
	{
		ErrorData  *e = NULL;

		if (pa->del_state[i] != 'a')
			continue;
		pa->only = -1;
		pa->only_del = i;
		if (!in_subxact(apply_step, pa, pa->work, &e))
		{
			pa->del_state[i] = 'f';
			set_aside(pa, pa->del_rid[i], pa->del_key[i], "delete", e);
		}
	}
}

/*
 * The page's work on the table.  Usually nothing of the mirror is waiting
 * to be pushed (always during a backfill): then the page is applied at once
 * and checked after (apply_step), which costs no lookup of the page's rows
 * beforehand.  Otherwise — or when that check finds a local change queued
 * meanwhile — the rows are locked first and their pending changes read
 * under the lock (page_lock, page_pending).  If the table refuses any of
 * the page, record by record.
 */
static void
page_apply(PageApply *pa)
{
	int			saved = sync_applying_mirror;
	bool		remote_wins = engine_mirror(pa->m)->conflict == CONFLICT_REMOTE_WINS;

	sync_applying_mirror = pa->m->id;
	PG_TRY();
	{
		int			nj0;
		bool		done;

		pa->optimistic = !outbox_pending(pa->m);
		if (!pa->optimistic)
		{
			page_lock(pa, true);
			page_pending(pa, remote_wins);
		}
		page_check_encoding(pa);
		page_adopt_pairs(pa);
		nj0 = pa->nj;

		done = in_subxact(apply_step, pa, pa->work, NULL);
		if (!done)
		{
			bool		race = pa->race;

			pa->nj = nj0;		/* what the failed attempt journaled did not happen */
			pa->applied = pa->deleted = 0;
			pa->plan = NULL;	/* (freed with the subtransaction's SPI state) */
			if (pa->optimistic)
			{
				pa->optimistic = pa->race = false;
				page_lock(pa, true);
				page_pending(pa, remote_wins);
				nj0 = pa->nj;
				if (race)
					done = in_subxact(apply_step, pa, pa->work, NULL);
				if (!done)
				{
					pa->nj = nj0;
					pa->applied = pa->deleted = 0;
					pa->plan = NULL;
				}
			}
		}
		if (!done)
			page_one_by_one(pa);
	}
	PG_FINALLY();
	{
		sync_applying_mirror = saved;
	}
	PG_END_TRY();
	if (pa->plan != NULL)
		SPI_freeplan(pa->plan);
}

/* The page's journal rows. */
static void
page_journal(PageApply *pa)
{
	Oid			jt[6] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		ja[6];

	if (pa->nj == 0)
		return;
	if (apply_journal_copy(pa->m->id, pa->nj, pa->j_op, pa->j_rid, pa->j_hash, pa->j_result, pa->j_detail))
		return;
	ja[0] = Int32GetDatum(pa->m->id);
	ja[1] = text_array(pa->j_op, pa->nj);
	ja[2] = text_array(pa->j_rid, pa->nj);
	ja[3] = text_array(pa->j_hash, pa->nj);
	ja[4] = text_array(pa->j_result, pa->nj);
	ja[5] = text_array(pa->j_detail, pa->nj);
	spi_exec("INSERT INTO sync.journal (mirror, direction, op, remote_id, values_hash, result, detail) "
			 "SELECT $1, 'in', u.op::\"char\", u.rid, u.hash, u.result, u.detail "
			 "FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[]), "
			 "  pg_catalog.unnest($5::pg_catalog.text[]), pg_catalog.unnest($6::pg_catalog.text[])) AS u(op, rid, hash, result, detail)",
			 6, jt, ja, NULL, SPI_OK_INSERT);
}

/* Records that went in now leave sync.errors. */
static void
page_errors_clear(PageApply *pa)
{
	Oid			t[2] = {INT4OID, TEXTARRAYOID};
	Datum		a[2];
	char	  **done = palloc(sizeof(char *) * (pa->n + pa->ndel + 1));
	int			ndone = 0,
				i;

	a[0] = Int32GetDatum(pa->m->id);
	spi_exec("SELECT 1 FROM sync.inbound_error WHERE mirror OPERATOR(pg_catalog.=) $1 LIMIT 1",
			 1, t, a, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return;
	for (i = 0; i < pa->n; i++)
		if (pa->state[i] == 'a')
			done[ndone++] = pa->page->records[i].remote_id;
	for (i = 0; i < pa->ndel; i++)
		if (pa->del_state[i] == 'a' || pa->del_state[i] == 'x')
			done[ndone++] = pa->del_rid[i];
	if (ndone > 0)
	{
		a[1] = text_array(done, ndone);
		spi_exec("DELETE FROM sync.inbound_error WHERE mirror OPERATOR(pg_catalog.=) $1 "
				 "AND remote_id OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[])",
				 2, t, a, NULL, SPI_OK_DELETE);
	}
}

/* The records set aside, kept in sync.inbound_error (a remote ID twice: its last failure). */
static void
page_errors_save(PageApply *pa)
{
	Oid			ft[7] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID};
	Datum		fa[7];
	int			nf = 0,
				i,
				j;

	if (pa->nf == 0)
		return;
	for (i = 0; i < pa->nf; i++)
	{
		for (j = i + 1; j < pa->nf; j++)
			if (strcmp(pa->f_rid[i], pa->f_rid[j]) == 0)
				break;
		if (j < pa->nf)
			continue;
		pa->f_rid[nf] = pa->f_rid[i];
		pa->f_key[nf] = pa->f_key[i];
		pa->f_op[nf] = pa->f_op[i];
		pa->f_code[nf] = pa->f_code[i];
		pa->f_msg[nf] = pa->f_msg[i];
		pa->f_state[nf++] = pa->f_state[i];
	}
	fa[0] = Int32GetDatum(pa->m->id);
	fa[1] = text_array(pa->f_rid, nf);
	fa[2] = text_array(pa->f_key, nf);
	fa[3] = text_array(pa->f_op, nf);
	fa[4] = text_array(pa->f_code, nf);
	fa[5] = text_array(pa->f_msg, nf);
	fa[6] = text_array(pa->f_state, nf);
	spi_exec("INSERT INTO sync.inbound_error AS e "
			 "  (mirror, remote_id, local_key, operation, error_code, error_message, state) "
			 "SELECT $1, u.rid, u.key, u.op, u.code, u.msg, u.state "
			 "FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[]), "
			 "  pg_catalog.unnest($5::pg_catalog.text[]), pg_catalog.unnest($6::pg_catalog.text[]), pg_catalog.unnest($7::pg_catalog.text[])) "
			 "  AS u(rid, key, op, code, msg, state) "
			 "ON CONFLICT (mirror, remote_id) DO UPDATE SET local_key = EXCLUDED.local_key, "
			 "  operation = EXCLUDED.operation, error_code = EXCLUDED.error_code, "
			 "  error_message = EXCLUDED.error_message, state = EXCLUDED.state, "
			 "  attempts = e.attempts OPERATOR(pg_catalog.+) 1, failed_at = pg_catalog.now()",
			 7, ft, fa, NULL, SPI_OK_INSERT);
}

/*
 * Apply one page in the current transaction, and advance the cursor with it
 * when `advance` (a page of re-fetched records leaves the cursor alone).
 * Also used by sync.resync's repairs (resync.c).
 */
void
apply_page(SyncMirror *m, SyncPage *page, bool advance, MemoryContext work,
		   int64 *applied, int64 *deleted, int64 *failed)
{
	PageApply	pa;

	/* the local writes captured until now are pending writes (capture.h) */
	(void) capture_fold(m->id, true, -1);
	merge_apply(m, page, work);	/* merges first: a loser is not a plain delete */
	page_init(&pa, m, page, work);
	page_apply(&pa);
	*applied += pa.applied;
	*deleted += pa.deleted;
	*failed += pa.nf;

	/* the journal, and the records set aside (sync.errors) */
	page_journal(&pa);
	page_errors_clear(&pa);
	page_errors_save(&pa);
	if (advance)
		advance_cursor(m, page);
}

/*
 * Apply records that did not come from pull_page (a change stream,
 * salesforce_cdc.c) in the current transaction; the pull's cursor stays.
 */
void
apply_records(SyncMirror *m, SyncPage *page, MemoryContext work,
			  int64 *applied, int64 *deleted, int64 *failed)
{
	apply_page(m, page, false, work, applied, deleted, failed);
}

/*
 * Records set aside earlier and due again (a locked row, or sync.retry()
 * after the user fixed the table): re-read from the remote by ID and applied
 * once more.  Providers without fetch leave them to the record's next
 * remote change.
 */
static void
pull_retry(int mirror_id, bool own, MemoryContext cxt, int64 *applied, int64 *deleted, int64 *failed)
{
	SyncMirror *m;
	SyncConnection *conn;
	char	   *connection;
	char	  **ids;
	int			n,
				i;
	SyncPage   *page;
	MemoryContext old;

	xact_begin(own);
	m = mirror_load(mirror_id, cxt, &connection);
	conn = conn_get(connection);
	if (conn->provider->fetch == NULL || m->direction == 'p' || pause_mirror_paused(mirror_id))
	{
		xact_end(own);
		return;
	}
	{
		Oid			t[1] = {INT4OID};
		Datum		a[1] = {Int32GetDatum(mirror_id)};

		spi_exec("SELECT remote_id FROM sync.inbound_error WHERE mirror OPERATOR(pg_catalog.=) $1 "
				 "AND state OPERATOR(pg_catalog.=) 'retry' ORDER BY failed_at LIMIT 200",
				 1, t, a, NULL, SPI_OK_SELECT);
	}
	n = (int) SPI_processed;
	old = MemoryContextSwitchTo(cxt);
	ids = palloc(sizeof(char *) * Max(1, n));
	{
		int			r = n;

		/* (only IDs of the remote's form reach a request) */
		for (i = 0, n = 0; i < r; i++)
			if (conn->provider->valid_remote_id == NULL || conn->provider->valid_remote_id(getv(i, 1)))
				ids[n++] = getv(i, 1);
	}
	MemoryContextSwitchTo(old);
	xact_end(own);
	if (n == 0)
		return;

	old = MemoryContextSwitchTo(cxt);
	page = palloc0(sizeof(SyncPage));
	page->total = -1;
	conn->provider->fetch(conn, m, ids, n, page);
	MemoryContextSwitchTo(old);

	xact_begin(own);
	apply_page(m, page, false, cxt, applied, deleted, failed);
	xact_end(own);
}

/*
 * Pull pages until the remote has no more right now.  A pull stopped by a
 * pause (or the mirror turned push-only) is not recorded as done: it has
 * not reached the end, and on resume it is due at once, from its cursor.
 */
int64
pull_mirror(int mirror_id, bool own, MemoryContext work, int64 *deleted, int64 *failed)
{
	int64		applied = 0;
	MemoryContext pagecxt = AllocSetContextCreate(work, "sync page", ALLOCSET_DEFAULT_SIZES);
	SyncMirror *m;
	bool		stopped = false;

	pull_retry(mirror_id, own, pagecxt, &applied, deleted, failed);
	for (;;)
	{
		SyncConnection *conn;
		SJson	   *cursor;
		SyncPage   *page;
		char	   *connection;
		MemoryContext old;

		MemoryContextReset(pagecxt);
		xact_begin(own);
		m = mirror_load(mirror_id, pagecxt, &connection);
		if (m->direction == 'p' || pause_mirror_paused(mirror_id))
		{
			xact_end(own);
			stopped = true;
			break;
		}
		conn = conn_get(connection);
		cursor = load_cursor(mirror_id, pagecxt);
		xact_end(own);

		/* the network, outside any transaction (in the worker) */
		old = MemoryContextSwitchTo(pagecxt);
		page = palloc0(sizeof(SyncPage));
		page->total = -1;
		conn->provider->pull_page(conn, m, cursor, page);
		MemoryContextSwitchTo(old);
		/* a delete log may list records restored since (deletes.c) */
		deletes_verify_feed(conn, m, page, own, pagecxt);

		xact_begin(own);
		{
			TimestampTz started = GetCurrentTimestamp();
			double		cpu0 = thread_cpu_ms();
			long		secs;
			int			usecs;

			apply_page(m, page, true, pagecxt, &applied, deleted, failed);
			TimestampDifference(started, GetCurrentTimestamp(), &secs, &usecs);
			elog(DEBUG1, "sync: %s: applied a page of %d records in %.3f ms (CPU %.3f ms)",
				 m->qualified_table, page->nrecords, secs * 1000.0 + usecs / 1000.0,
				 thread_cpu_ms() - cpu0);
		}
		save_usage(conn);
		xact_end(own);

		if (!page->more)
			break;
		CHECK_FOR_INTERRUPTS();
	}

	if (!stopped)
	{
		xact_begin(own);
		adaptive_note_pull_done(m, applied + *deleted);
		xact_end(own);
	}
	MemoryContextDelete(pagecxt);
	return applied;
}
