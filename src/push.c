/*
 * push.c — the outbound half of the engine: claim a batch of outbox
 * entries (values read from the table as its owner), resolve "@key"
 * references to parents, hand the batch to the provider, and record the
 * outcome (outbox, journal, write-back of new remote IDs).
 *
 *   [claim a batch, commit] -> HTTP -> [record results, commit]
 *
 * No transaction, snapshot or lock is held while waiting on the network
 * (in the worker).  A write-back the table refuses is confined to its own
 * rows (subtransactions) and never makes a create be sent again.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "capture.h"
#include "conn.h"
#include "drift.h"
#include "engine_int.h"
#include "pause.h"
#include "provider.h"
#include "worker.h"

/* ---------------------------------------------------------------------
 * push
 * --------------------------------------------------------------------- */

typedef struct PushBatch
{
	int			nitems;
	SyncPushItem *items;
	int		   *attempts;
	char	  **resolved;		/* nitems x nfields: remote IDs put in for "@key" */
	char	  **row_xmin;		/* per item: its row's version when claimed */
	bool		deferred;		/* some items wait for a parent */
	TimestampTz claimed_at;
} PushBatch;

static void
item_reject(SyncPushItem *it, const char *code, char *message)
{
	it->result = PUSH_REJECTED;
	it->error_code = (char *) code;
	it->error_message = message;
}

/* The parent lookup of "@key" references, run as the parent table's owner. */
typedef struct RefLookup
{
	Oid			owner;
	const char *sql;
	int			nkeys;
	char	  **keys;
	/* out: per key, found / its remote ID */
	bool	   *found;
	char	  **rid;
} RefLookup;

static void
ref_lookup(void *arg)
{
	RefLookup  *l = (RefLookup *) arg;
	OwnerScope	os;
	Oid			t[1] = {TEXTARRAYOID};
	Datum		a[1];
	int			r,
				i;

	a[0] = text_array(l->keys, l->nkeys);
	owner_begin(l->owner, &os);
	spi_exec(l->sql, 1, t, a, NULL, SPI_OK_SELECT);
	owner_end(&os);
	for (r = 0; r < (int) SPI_processed; r++)
	{
		char	   *k = getv(r, 1);

		for (i = 0; i < l->nkeys; i++)
			if (!l->found[i] && strcmp(l->keys[i], k) == 0)
			{
				l->found[i] = true;
				l->rid[i] = getv(r, 2);
			}
	}
}

/* The "@key" references of one reference field (k) of the batch's items. */
static void
resolve_field(SyncMirror *m, const char *connection, PushBatch *b, int k, MemoryContext work)
{
	int			i;
	const char *target = m->fields[k].reference_to;
	int		   *idx;
	RefLookup	l;
	char	   *parent_table;
	MemoryContext old;

	if (target == NULL || m->fields[k].role != FIELD_DATA)
		return;

	old = MemoryContextSwitchTo(work);
	idx = palloc(sizeof(int) * Max(1, b->nitems));
	memset(&l, 0, sizeof(l));
	l.keys = palloc(sizeof(char *) * Max(1, b->nitems));
	for (i = 0; i < b->nitems; i++)
	{
		SyncPushItem *it = &b->items[i];
		const char *v = it->values[k];

		if (!it->send[k] || v == NULL || strncmp(v, "\"@", 2) != 0 || it->result != PUSH_PENDING)
			continue;
		idx[l.nkeys] = i;
		l.keys[l.nkeys++] = pnstrdup(v + 2, strlen(v) - 3);	/* "@42" -> 42 */
	}
	MemoryContextSwitchTo(old);
	if (l.nkeys == 0)
		return;

	{
		Oid			pt[2] = {TEXTOID, TEXTOID};
		Datum		pa[2] = {CStringGetTextDatum(connection), CStringGetTextDatum(target)};

		spi_exec("SELECT m.local_table::pg_catalog.text, m.key_column, m.remote_id_column, "
				 "  (SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a "
				 "    WHERE a.attrelid OPERATOR(pg_catalog.=) m.local_table "
				 "      AND a.attname OPERATOR(pg_catalog.=) m.key_column), "
				 "  (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) m.local_table) "
				 "FROM sync.mirror m WHERE m.connection OPERATOR(pg_catalog.=) $1 "
				 "  AND m.remote_object OPERATOR(pg_catalog.=) $2 ORDER BY m.id LIMIT 1",
				 2, pt, pa, NULL, SPI_OK_SELECT);
	}
	old = MemoryContextSwitchTo(work);
	if (SPI_processed == 0 || getv(0, 5) == NULL)
	{
		for (i = 0; i < l.nkeys; i++)
			item_reject(&b->items[idx[i]], "UNRESOLVED_REFERENCE",
						psprintf("column \"%s\" refers to local row \"%s\", but no table mirrors %s on connection \"%s\"",
								 m->columns[k], l.keys[i], target, connection));
		MemoryContextSwitchTo(old);
		return;
	}
	parent_table = getv(0, 1);
	l.owner = (Oid) strtoul(getv(0, 5), NULL, 10);
	l.sql = deparse_ref_lookup(parent_table, getv(0, 2), getv(0, 3), getv(0, 4));
	l.found = palloc0(sizeof(bool) * l.nkeys);
	l.rid = palloc0(sizeof(char *) * l.nkeys);
	MemoryContextSwitchTo(old);

	/* all at once; if some key is not even of the key's type, one by one */
	if (!in_subxact(ref_lookup, &l, work, NULL))
	{
		RefLookup	one = l;

		for (i = 0; i < l.nkeys; i++)
		{
			ErrorData  *e = NULL;

			one.nkeys = 1;
			one.keys = &l.keys[i];
			one.found = &l.found[i];
			one.rid = &l.rid[i];
			if (!in_subxact(ref_lookup, &one, work, &e))
			{
				old = MemoryContextSwitchTo(work);
				item_reject(&b->items[idx[i]], "UNRESOLVED_REFERENCE",
							psprintf("column \"%s\" holds \"@%s\", which cannot be a key of %s: %s",
									 m->columns[k], l.keys[i], parent_table, e->message));
				MemoryContextSwitchTo(old);
			}
		}
	}

	old = MemoryContextSwitchTo(work);
	for (i = 0; i < l.nkeys; i++)
	{
		SyncPushItem *it = &b->items[idx[i]];

		if (it->result != PUSH_PENDING)
			continue;
		if (l.found[i] && l.rid[i] != NULL)
		{
			/* (in `work`: the batch outlives this transaction's SPI memory) */
			it->values[k] = psprintf("\"%s\"", l.rid[i]);
			b->resolved[idx[i] * m->nfields + k] = pstrdup(l.rid[i]);
		}
		else if (!l.found[i])
			item_reject(it, "UNRESOLVED_REFERENCE",
						psprintf("column \"%s\" refers to row \"%s\" of %s, which does not exist",
								 m->columns[k], l.keys[i], parent_table));
		else
		{
			/* the parent is not pushed yet: try again shortly */
			it->result = PUSH_RETRY;
			it->retry_after_s = 1;
			it->error_code = "WAITING_FOR_PARENT";
			it->error_message = psprintf("waiting for row %s of %s to reach the remote",
										 l.keys[i], parent_table);
			b->deferred = true;
		}
	}
	MemoryContextSwitchTo(old);
}

/*
 * References to rows not yet pushed.  A reference column (e.g. a Contact's
 * account_id) may hold "@<key>": the primary key of a row in the table that
 * mirrors the referenced object on the same connection.  At push time the
 * parent's remote ID is put in its place (and written back into the row
 * after success); while the parent has no remote ID yet, the child waits.
 * A reference that cannot be resolved (no such row, not a key at all)
 * parks its own entry only.
 */
static void
resolve_references(SyncMirror *m, const char *connection, PushBatch *b, MemoryContext work)
{
	int			k;

	for (k = 0; k < m->nfields; k++)
		resolve_field(m, connection, b, k, work);
}

/*
 * The plans of the push's statements.  Each touches one batch of rows by
 * key (the outbox by id and by row, the user's table by primary key and by
 * remote ID) out of tables of any size.  With random_page_cost's default,
 * and statistics that predate a bulk write, the planner prefers to scan
 * and hash the whole table: a batch then costs in proportion to the table,
 * not to the batch (with 50,000 rows, such scans were half the push's
 * database time: issue #13).  Through the indexes it costs the batch's
 * rows only, and scans remain where no index serves (their cost then
 * includes disable_cost, which would set off JIT compilation: off too).
 * Set for the claim and the recording only; an error needs no cleanup
 * ((sub)transaction abort restores the settings).  The recording's
 * write-backs fire the table's own triggers, which run under these
 * settings too (docs/worker.md, "Pushing", says so): a plan without a
 * usable index still scans, only its cost estimate is inflated.
 */
static int
push_plans_begin(void)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_hashjoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_mergejoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* a scan that remains (no index) costs disable_cost: no JIT for that */
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}

static void
push_plans_end(int level)
{
	AtEOXact_GUC(true, level);
}

/*
 * The claim itself (sync._claim): the batch's items, the columns each
 * sends; keys[]: the rows whose values are to be read.
 */
static PushBatch *
claim_entries(SyncMirror *m, int limit, MemoryContext work, char ***keys, int *nkeys)
{
	Oid			types[3] = {INT4OID, INT4OID, INT4OID};
	Datum		args[3] = {Int32GetDatum(m->id), Int32GetDatum(limit), Int32GetDatum(sync_lease_seconds)};
	PushBatch  *b;
	MemoryContext old;
	int			i,
				j;
	const char *idem = engine_mirror(m)->idempotency_field;

	spi_exec("SELECT id, op, local_key, remote_id, idempotency_key, columns, attempts "
			 "FROM sync._claim($1, $2, $3) ORDER BY id",
			 3, types, args, NULL, SPI_OK_SELECT);

	old = MemoryContextSwitchTo(work);
	b = palloc0(sizeof(PushBatch));
	b->claimed_at = GetCurrentTimestamp();
	b->nitems = (int) SPI_processed;
	b->items = palloc0(sizeof(SyncPushItem) * Max(1, b->nitems));
	b->attempts = palloc0(sizeof(int) * Max(1, b->nitems));
	b->resolved = palloc0(sizeof(char *) * Max(1, b->nitems) * Max(1, m->nfields));
	b->row_xmin = palloc0(sizeof(char *) * Max(1, b->nitems));
	*keys = palloc(sizeof(char *) * Max(1, b->nitems));
	for (i = 0; i < b->nitems; i++)
	{
		SyncPushItem *it = &b->items[i];
		bool		isnull;
		Datum		cols;

		it->outbox_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		it->op = getv(i, 2)[0];
		it->local_key = getv(i, 3);
		it->remote_id = getv(i, 4);
		it->idempotency_key = idem ? getv(i, 5) : NULL;
		b->attempts[i] = atoi(getv(i, 7));
		it->send = palloc0(sizeof(bool) * Max(1, m->nfields));
		it->values = palloc0(sizeof(char *) * Max(1, m->nfields));
		it->value_null = palloc0(sizeof(bool) * Max(1, m->nfields));
		if (it->op == 'W')
		{
			/* a write-back to finish: the remote has the record already */
			it->result = PUSH_OK;
			it->new_remote_id = it->remote_id;
			(*keys)[(*nkeys)++] = it->local_key;
			continue;
		}
		cols = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 6, &isnull);
		for (j = 0; j < m->nfields; j++)
		{
			SyncField  *f = &m->fields[j];
			bool		pushable = f->role == FIELD_DATA &&
				(it->op == 'I' ? f->createable : f->updateable) &&
				strcmp(m->authority[j], "remote") != 0;

			if (!pushable || it->op == 'D')
				continue;
			if (isnull)
				it->send[j] = true;
			else
			{
				Datum	   *elems;
				int			nelems,
							k;

				deconstruct_array(DatumGetArrayTypeP(cols), NAMEOID, NAMEDATALEN, false,
								  TYPALIGN_CHAR, &elems, NULL, &nelems);
				for (k = 0; k < nelems; k++)
					if (strcmp(NameStr(*DatumGetName(elems[k])), m->columns[j]) == 0)
						it->send[j] = true;
			}
		}
		if (it->op != 'D')
			(*keys)[(*nkeys)++] = it->local_key;
	}
	MemoryContextSwitchTo(old);
	return b;
}

/*
 * The values of the claimed rows, read from the table (the source of
 * truth) as its owner, matched to the items by key (the claim gives one
 * entry per key).  found[i]: item i's row exists.
 */
static void
claim_values(SyncMirror *m, PushBatch *b, char **keys, int nkeys, bool *found, MemoryContext work)
{
	Oid			t[1] = {TEXTARRAYOID};
	Datum		a[1];
	OwnerScope	os;
	MemoryContext old;
	KeyIndex   *index;
	int			nindex = 0,
				i,
				j;

	if (nkeys == 0)
		return;
	a[0] = text_array(keys, nkeys);
	owner_begin(m->owner, &os);
	spi_exec(deparse_claim_values(m), 1, t, a, NULL, SPI_OK_SELECT);
	owner_end(&os);
	old = MemoryContextSwitchTo(work);
	index = palloc(sizeof(KeyIndex) * Max(1, b->nitems));
	for (j = 0; j < b->nitems; j++)
		if (b->items[j].op != 'D')
		{
			index[nindex].key = b->items[j].local_key;
			index[nindex++].item = j;
		}
	qsort(index, nindex, sizeof(KeyIndex), key_index_cmp);
	for (i = 0; i < (int) SPI_processed; i++)
	{
		KeyIndex	probe = {getv(i, 1), 0};
		KeyIndex   *hit = bsearch(&probe, index, nindex, sizeof(KeyIndex), key_index_cmp);
		SyncPushItem *it;
		int			k;

		if (hit == NULL)
			continue;
		it = &b->items[hit->item];
		found[hit->item] = true;
		b->row_xmin[hit->item] = getv(i, 3 + m->nfields);
		if (it->op == 'W')
			continue;
		if (it->remote_id == NULL)
			it->remote_id = getv(i, 2);
		for (k = 0; k < m->nfields; k++)
		{
			it->values[k] = getv(i, 3 + k);
			it->value_null[k] = (it->values[k] == NULL);
		}
	}
	MemoryContextSwitchTo(old);
}

/* Does a row of the table hold this remote ID? */
static bool
remote_id_held(SyncMirror *m, const char *rid)
{
	Oid			t[1] = {TEXTOID};
	Datum		a[1] = {CStringGetTextDatum(rid)};
	OwnerScope	os;

	owner_begin(m->owner, &os);
	spi_exec(psprintf("SELECT 1 FROM %s WHERE %s OPERATOR(pg_catalog.=) $1 LIMIT 1",
					  m->qualified_table, quote_identifier(m->remote_id_column)),
			 1, t, a, NULL, SPI_OK_SELECT);
	owner_end(&os);
	return SPI_processed > 0;
}

/*
 * What the claim's rows say about each item: a row gone (its delete is
 * queued behind), a remote ID that is not the provider's, an update of a
 * row that never reached the remote (an insert).
 */
static void
claim_check(SyncMirror *m, const SyncProvider *prov, PushBatch *b, bool *found, MemoryContext work)
{
	MemoryContext old = MemoryContextSwitchTo(work);
	int			j;

	for (j = 0; j < b->nitems; j++)
	{
		SyncPushItem *it = &b->items[j];

		if (it->op != 'D' && !found[j])
		{
			/*
			 * The row is gone: its delete is queued behind this entry.  A
			 * write-back's record exists remotely: its ID goes on to that
			 * delete (push_record_batch), which was queued without one —
			 * unless another row mirrors that record (the remote matched
			 * the create to it, and the user deleted this row to merge).
			 */
			it->result = PUSH_OK;
			it->new_remote_id = (it->op == 'W' && it->remote_id != NULL &&
								 !remote_id_held(m, it->remote_id)) ?
				it->remote_id : NULL;
			it->error_message = it->op == 'W' ? "skipped: row deleted locally before its remote ID was written back" :
				"skipped: row deleted locally before it was pushed";
			continue;
		}
		if (it->op == 'W')
			continue;
		/* IDs come from the user's table and go into URLs: check them */
		if (it->remote_id != NULL && prov->valid_remote_id != NULL &&
			!prov->valid_remote_id(it->remote_id))
		{
			item_reject(it, "INVALID_REMOTE_ID",
						psprintf("column \"%s\" holds \"%s\", which is not a %s record ID",
								 m->remote_id_column, it->remote_id, prov->name));
			continue;
		}
		/* an update of a row that never reached the remote becomes an insert */
		if (it->op == 'U' && it->remote_id == NULL)
		{
			int			k;

			it->op = 'I';
			for (k = 0; k < m->nfields; k++)
				it->send[k] = m->fields[k].role == FIELD_DATA && m->fields[k].createable &&
					strcmp(m->authority[k], "remote") != 0;
		}
	}
	MemoryContextSwitchTo(old);
}

/* The largest claim a worker has made: the first claim of a push folds for it. */
static int	fold_hint = 1000;

/*
 * In the worker (own), fold up to `rows` more of the mirror's captured
 * writes (capture.h), in a transaction of its own, so that the mirror's
 * fold lock is held for the fold alone; not waiting for the lock: while
 * another process (the push helper) folds, this one claims and sends what
 * is folded already.  The pipeline folds twice a claim's worth after each
 * claim, while the claim's requests are on the network (push_pipelined):
 * the folded stock grows by a claim each time until the log is empty, and
 * a bulk write's fold is spread between the waves instead of done before
 * the first one.  Returns whether more of the log may be waiting: the fold
 * stopped at `rows`, or another process was folding the mirror.
 */
static bool
fold_ahead(int mirror_id, bool own, int64 rows)
{
	int64		n;

	if (!own)
		return false;
	n = xact_fold(mirror_id, rows);
	return n < 0 || n >= rows;
}

/*
 * Claim a batch of ready entries: the oldest entry of each row only (later
 * entries of a row wait for earlier ones), with a lease so that a crashed
 * claimer's entries are reclaimed.  Reads the values of inserts and updates
 * from the table, as its owner.  Inside SPI; results in `work`.
 *
 * Op 'W' is a write-back that failed earlier (the remote has the record;
 * the row lacked its remote ID): it is only written back, never sent.
 *
 * What the claim sees was folded from the capture log before (capture.h):
 * by the worker ahead of its claims (fold_ahead), by a session's
 * sync.push() at its start (push_mirror).
 */
static PushBatch *
push_claim(SyncMirror *m, const SyncProvider *prov, int limit, MemoryContext work)
{
	char	  **keys;
	int			nkeys = 0;
	int			plans = push_plans_begin();
	PushBatch  *b = claim_entries(m, limit, work, &keys, &nkeys);
	bool	   *found = MemoryContextAllocZero(work, sizeof(bool) * Max(1, b->nitems));

	claim_values(m, b, keys, nkeys, found, work);
	claim_check(m, prov, b, found, work);
	/* rows flagged remote_deleted_at ("delete": "flag") send nothing */
	deletes_skip_flagged(m, b->items, b->nitems, work);
	push_plans_end(plans);
	return b;
}

/*
 * Writing results back into the user's table: the new remote IDs and
 * stamps, "@key" references now resolved, and the removal of echo rows.
 * Run as the table's owner, in a subtransaction (whole batch first, then
 * row by row), after the outcome itself is safe: a trigger or constraint
 * refusing the write must never make the create be sent again.
 */
typedef struct WriteBack
{
	SyncMirror *m;
	PushBatch  *b;
	int			n;				/* rows to write back */
	int		   *item;			/* their items */
	/* out, per row: "taken" = the remote record is another row's already */
	char	  **taken_by;
	/* out, per row: written by the first attempt, as the claim read it */
	bool	   *kept;
	MemoryContext work;
	/* the first attempt: see push_write_backs */
	bool		first;
	bool		unique;			/* remote_id_unique() */
} WriteBack;

/*
 * Does a unique index on the remote-ID column alone, checked at once (not
 * deferred, not partial), refuse a second row with the same remote ID?
 * Then the first write-back attempt can skip its search for such rows:
 * its UPDATE fails if one exists, and the next attempt searches.
 */
static bool
remote_id_unique(SyncMirror *m)
{
	Relation	rel = try_table_open(m->relid, AccessShareLock);
	AttrNumber	att = get_attnum(m->relid, m->remote_id_column);
	List	   *indexes;
	ListCell   *lc;
	bool		unique = false;

	if (rel == NULL)
		return false;			/* dropped: the write-back says so, in its subtransaction */
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index ix;

		if (!HeapTupleIsValid(tup))
			continue;
		ix = (Form_pg_index) GETSTRUCT(tup);
		unique = unique ||
			(ix->indisunique && ix->indimmediate && ix->indisvalid && ix->indnkeyatts == 1 &&
			 ix->indkey.values[0] == att && heap_attisnull(tup, Anum_pg_index_indpred, NULL));
		ReleaseSysCache(tup);
	}
	list_free(indexes);
	table_close(rel, AccessShareLock);
	return unique && att != InvalidAttrNumber;
}

/*
 * Rows other than ours that hold the new remote IDs already.  A pull that
 * ran while a create was in flight brings the new record in as a row of
 * its own: that row is the echo of ours and goes (returned in *echo_rid).
 * A row that held the record before we sent the create (the remote matched
 * our create to an existing record, e.g. an upsert by email) is a real row
 * and stays; ours is then parked, for the user to merge (w->taken_by).
 */
static int
write_back_conflicts(WriteBack *w, char **rid, char **key, char ***echo_rid)
{
	SyncMirror *m = w->m;
	Oid			t[2] = {TEXTARRAYOID, TEXTARRAYOID};
	Datum		a[2];
	OwnerScope	os;
	char	  **crid,
			  **ckey;
	int			nconf,
				necho = 0,
				i,
				k;

	a[0] = text_array(rid, w->n);
	a[1] = text_array(key, w->n);
	owner_begin(m->owner, &os);
	spi_exec(deparse_wb_conflicts(m), 2, t, a, NULL, SPI_OK_SELECT);
	owner_end(&os);
	nconf = (int) SPI_processed;
	crid = palloc(sizeof(char *) * Max(1, nconf));
	ckey = palloc(sizeof(char *) * Max(1, nconf));
	*echo_rid = palloc(sizeof(char *) * Max(1, nconf));
	for (i = 0; i < nconf; i++)
	{
		crid[i] = getv(i, 1);
		ckey[i] = getv(i, 2);
	}
	if (nconf > 0)
	{
		Oid			jt[3] = {INT4OID, TEXTARRAYOID, TIMESTAMPTZOID};
		Datum		ja[3] = {Int32GetDatum(m->id), text_array(crid, nconf),
		TimestampTzGetDatum(w->b->claimed_at)};

		/* an echo arrived by a pull after we claimed the create */
		spi_exec("SELECT DISTINCT j.remote_id FROM sync.journal j "
				 "WHERE j.mirror OPERATOR(pg_catalog.=) $1 "
				 "  AND j.remote_id OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[]) "
				 "  AND j.direction OPERATOR(pg_catalog.=) 'in' AND j.result OPERATOR(pg_catalog.=) 'inserted' "
				 "  AND j.at OPERATOR(pg_catalog.>=) $3",
				 3, jt, ja, NULL, SPI_OK_SELECT);
		for (i = 0; i < (int) SPI_processed; i++)
			(*echo_rid)[necho++] = getv(i, 1);
		for (i = 0; i < nconf; i++)
		{
			bool		echo = false;
			int			e;

			for (e = 0; e < necho; e++)
				echo = echo || strcmp((*echo_rid)[e], crid[i]) == 0;
			if (echo)
				continue;
			for (k = 0; k < w->n; k++)
				if (rid[k] != NULL && strcmp(rid[k], crid[i]) == 0 && w->taken_by[k] == NULL)
					w->taken_by[k] = MemoryContextStrdup(w->work, ckey[i]);
		}
	}
	return necho;
}

/* "@key" references of the rows written back now hold the parent's remote ID. */
static void
write_back_references(WriteBack *w)
{
	SyncMirror *m = w->m;
	int			i,
				k;

	for (i = 0; i < w->n; i++)
	{
		int			it = w->item[i];

		if (w->taken_by[i] != NULL)
			continue;
		for (k = 0; k < m->nfields; k++)
		{
			char	   *prid = w->b->resolved[it * m->nfields + k];
			Oid			rt[2] = {TEXTOID, TEXTOID};
			Datum		ra[2];

			if (prid == NULL)
				continue;
			ra[0] = CStringGetTextDatum(prid);
			ra[1] = CStringGetTextDatum(w->b->items[it].local_key);
			spi_exec(deparse_wb_reference(m, k), 2, rt, ra, NULL, SPI_OK_UPDATE);
		}
	}
}

/*
 * The first attempt's UPDATE: only the rows still as the claim read them
 * (same xmin), which cannot have been deleted since, so no delete of theirs
 * can wait for their new remote IDs (push_record_batch).  rid/stamp/key[j]
 * are w's row[j].  Marks those written kept and leaves the others, changed
 * or gone, in rid/stamp/key; returns how many.
 */
static int
write_back_kept(WriteBack *w, char **rid, char **stamp, char **key, const int *row, int nwb)
{
	SyncMirror *m = w->m;
	char	  **xmin = palloc(sizeof(char *) * Max(1, nwb));
	KeyIndex   *index = palloc(sizeof(KeyIndex) * Max(1, nwb));
	Oid			t[4] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		a[4];
	int			nrest = 0,
				i,
				j;

	for (j = 0; j < nwb; j++)
	{
		xmin[j] = w->b->row_xmin[w->item[row[j]]];
		index[j].key = key[j];
		index[j].item = j;
	}
	a[0] = text_array(rid, nwb);
	a[1] = text_array(stamp, nwb);
	a[2] = text_array(key, nwb);
	a[3] = text_array(xmin, nwb);
	spi_exec(deparse_wb_ids(m, true), 4, t, a, NULL, SPI_OK_UPDATE_RETURNING);
	qsort(index, nwb, sizeof(KeyIndex), key_index_cmp);
	for (i = 0; i < (int) SPI_processed; i++)
	{
		KeyIndex	probe = {getv(i, 1), 0};
		KeyIndex   *hit = bsearch(&probe, index, nwb, sizeof(KeyIndex), key_index_cmp);

		if (hit != NULL)
			w->kept[row[hit->item]] = true;
	}
	for (j = 0; j < nwb; j++)
		if (!w->kept[row[j]])
		{
			rid[nrest] = rid[j];
			stamp[nrest] = stamp[j];
			key[nrest++] = key[j];
		}
	return nrest;
}

static void
write_back(void *arg)
{
	WriteBack  *w = (WriteBack *) arg;
	SyncMirror *m = w->m;
	char	  **rid = palloc(sizeof(char *) * Max(1, w->n));
	char	  **stamp = palloc(sizeof(char *) * Max(1, w->n));
	char	  **key = palloc(sizeof(char *) * Max(1, w->n));
	int		   *row = palloc(sizeof(int) * Max(1, w->n));
	char	  **echo_rid;
	int			necho,
				nwb = 0,
				i;
	Oid			t[3] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		a[3];
	OwnerScope	os;

	for (i = 0; i < w->n; i++)
	{
		SyncPushItem *it = &w->b->items[w->item[i]];

		rid[i] = it->new_remote_id;
		stamp[i] = it->new_stamp;
		key[i] = it->local_key;
	}
	necho = (w->first && w->unique) ? 0 : write_back_conflicts(w, rid, key, &echo_rid);

	/* the rows to write: those whose record is not another row's */
	for (i = 0; i < w->n; i++)
		if (w->taken_by[i] == NULL)
		{
			row[nwb] = i;
			rid[nwb] = rid[i];
			stamp[nwb] = stamp[i];
			key[nwb++] = key[i];
		}

	sync_applying_mirror = m->id;
	owner_begin(m->owner, &os);
	if (necho > 0)
	{
		Datum		da[1] = {text_array(echo_rid, necho)};
		Oid			dt[1] = {TEXTARRAYOID};

		spi_exec(deparse_wb_delete_echoes(m), 1, dt, da, NULL, SPI_OK_DELETE);
	}
	if (nwb > 0 && w->first)
		nwb = write_back_kept(w, rid, stamp, key, row, nwb);
	if (nwb > 0)
	{
		a[0] = text_array(rid, nwb);
		a[1] = text_array(stamp, nwb);
		a[2] = text_array(key, nwb);
		spi_exec(deparse_wb_ids(m, false), 3, t, a, NULL, SPI_OK_UPDATE);
	}
	write_back_references(w);
	owner_end(&os);
}

/* The outcome of one pushed item, as recorded. */
typedef struct PushOutcome
{
	/* the journal row */
	char	   *op;
	char	   *key;
	char	   *rid;
	char	   *fields;			/* remote names sent, \x1f-separated */
	char	   *hash;			/* of the values sent */
	const char *result;			/* "ok", "rejected", "retry" */
	char	   *detail;
	/* write-back */
	bool		write_back;		/* the row takes a new remote ID or reference */
	/* ... and no delete of this row can wait for its ID: the row was
	 * written as the claim read it, or the record is another row's */
	bool		no_delete_behind;
	char	   *wb_failed;		/* why writing it back failed, or NULL */
	/* the outbox entry */
	bool		done;			/* deleted: the item went through */
} PushOutcome;

/*
 * The write-backs first, each failure confined to its own rows: the whole
 * batch in one subtransaction, else row by row.  out[i].wb_failed says why
 * item i's write-back failed.
 */
static void
push_write_backs(SyncMirror *m, PushBatch *b, PushOutcome *out, MemoryContext work)
{
	int			saved = sync_applying_mirror;
	int			n = b->nitems;
	WriteBack	w;
	int			i,
				k;

	memset(&w, 0, sizeof(w));
	w.m = m;
	w.b = b;
	w.work = work;
	w.item = palloc(sizeof(int) * Max(1, n));
	w.taken_by = palloc0(sizeof(char *) * Max(1, n));
	w.kept = palloc0(sizeof(bool) * Max(1, n));
	for (i = 0; i < n; i++)
	{
		SyncPushItem *it = &b->items[i];

		if (it->result != PUSH_OK || it->op == 'D')
			continue;
		out[i].write_back = it->new_remote_id != NULL;
		for (k = 0; k < m->nfields && !out[i].write_back; k++)
			out[i].write_back = b->resolved[i * m->nfields + k] != NULL;
		if (out[i].write_back)
			w.item[w.n++] = i;
	}
	PG_TRY();
	{
		bool		done = false;

		/*
		 * The common case first: rows as claimed, and (with the index to
		 * say so) no other row holding the new IDs.
		 */
		if (w.n > 0)
		{
			w.first = true;
			w.unique = remote_id_unique(m);
			done = in_subxact(write_back, &w, work, NULL);
			w.first = false;
			if (!done)
				memset(w.kept, 0, sizeof(bool) * w.n);
		}
		if (w.n > 0 && !done && !in_subxact(write_back, &w, work, NULL))
		{
			/* one row at a time, to find the rows the table refuses */
			WriteBack	one = w;

			for (i = 0; i < w.n; i++)
			{
				ErrorData  *e = NULL;
				SyncPushItem *it = &b->items[w.item[i]];

				one.n = 1;
				one.item = &w.item[i];
				one.taken_by = &w.taken_by[i];
				one.kept = &w.kept[i];
				if (!in_subxact(write_back, &one, work, &e))
					out[w.item[i]].wb_failed =
						psprintf("the remote has the record (ID %s), but writing its ID into row %s of %s failed: %s",
								 it->new_remote_id ? it->new_remote_id : "?",
								 it->local_key, m->qualified_table, error_text(e));
			}
		}
	}
	PG_FINALLY();
	{
		sync_applying_mirror = saved;
	}
	PG_END_TRY();
	for (i = 0; i < w.n; i++)
		out[w.item[i]].no_delete_behind = w.kept[i] || w.taken_by[i] != NULL;
	for (i = 0; i < w.n; i++)
		if (w.taken_by[i] != NULL && out[w.item[i]].wb_failed == NULL)
			out[w.item[i]].wb_failed =
				psprintf("the remote matched this row to record %s, which row %s of %s mirrors already; "
						 "merge the two rows (delete this one) and call sync.retry()",
						 b->items[w.item[i]].new_remote_id, w.taken_by[i], m->qualified_table);
}

/* The outbox entry of an item whose write-back failed: parked as op 'W'. */
static void
outbox_park_write_back(SyncPushItem *it, char *why)
{
	Oid			t[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		a[3];

	a[0] = Int64GetDatum(it->outbox_id);
	a[1] = CStringGetTextDatum(it->new_remote_id);
	a[2] = CStringGetTextDatum(why);
	spi_exec("UPDATE sync.outbox SET op = 'W', remote_id = $2, state = 'parked', "
			 "claimed_until = NULL, claimed_by = NULL, error_code = 'WRITE_BACK_FAILED', "
			 "error_message = $3, error_fields = NULL, updated_at = pg_catalog.now() "
			 "WHERE id OPERATOR(pg_catalog.=) $1", 3, t, a, NULL, SPI_OK_UPDATE);
	it->error_code = "WRITE_BACK_FAILED";
	it->error_message = why;
}

/* The outbox entry of a rejected item: parked with the remote's words. */
static void
outbox_park(SyncPushItem *it)
{
	Oid			t[4] = {INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		a[4];
	char		nl[4] = {' ', ' ', ' ', ' '};

	a[0] = Int64GetDatum(it->outbox_id);
	a[1] = CStringGetTextDatum(it->error_code ? it->error_code : "");
	a[2] = CStringGetTextDatum(it->error_message ? it->error_message : "");
	a[3] = CStringGetTextDatum(it->error_fields ? it->error_fields : "");
	nl[1] = it->error_code ? ' ' : 'n';
	nl[2] = it->error_message ? ' ' : 'n';
	nl[3] = it->error_fields ? ' ' : 'n';
	spi_exec("UPDATE sync.outbox SET state = 'parked', claimed_until = NULL, claimed_by = NULL, "
			 "error_code = $2, error_message = $3, "
			 "error_fields = CASE WHEN $4 IS NULL THEN NULL "
			 "  ELSE pg_catalog.string_to_array($4, ',') END, "
			 "updated_at = pg_catalog.now() WHERE id OPERATOR(pg_catalog.=) $1",
			 4, t, a, nl, SPI_OK_UPDATE);
}

/*
 * The outbox entry of an item to retry: the lease is released, not slept
 * on, and the next attempt waits the remote's Retry-After, the connection's
 * block, or a backoff.
 */
static void
outbox_retry(SyncPushItem *it, int attempts, long blocked_ms)
{
	long		wait = it->retry_after_s > 0 ? it->retry_after_s * 1000L :
		backoff_ms(attempts, 1000, 15 * 60 * 1000);
	Oid			t[4] = {INT8OID, TEXTOID, TEXTOID, INT8OID};
	Datum		a[4];
	char		nl[4] = {' ', ' ', ' ', ' '};

	wait = Max(wait, blocked_ms);
	a[0] = Int64GetDatum(it->outbox_id);
	a[1] = CStringGetTextDatum(it->error_code ? it->error_code : "");
	a[2] = CStringGetTextDatum(it->error_message ? it->error_message : "");
	a[3] = Int64GetDatum(wait);
	nl[1] = it->error_code ? ' ' : 'n';
	nl[2] = it->error_message ? ' ' : 'n';
	spi_exec("UPDATE sync.outbox SET claimed_until = NULL, claimed_by = NULL, "
			 "error_code = $2, error_message = $3, "
			 "next_attempt_at = pg_catalog.now() OPERATOR(pg_catalog.+) "
			 "  pg_catalog.make_interval(secs => $4 OPERATOR(pg_catalog./) 1000.0), "
			 "updated_at = pg_catalog.now() WHERE id OPERATOR(pg_catalog.=) $1",
			 4, t, a, nl, SPI_OK_UPDATE);
}

/* The journal row of an item: what was sent, a hash of the values, the result. */
static void
outcome_journal(SyncMirror *m, SyncPushItem *it, PushOutcome *o, char **vals)
{
	StringInfoData fields;
	int			ns = 0,
				k;

	initStringInfo(&fields);
	for (k = 0; k < m->nfields; k++)
		if (it->send[k])
		{
			if (ns > 0)
				appendStringInfoChar(&fields, '\x1f');
			appendStringInfoString(&fields, m->fields[k].remote_name);
			vals[ns++] = it->values[k];
		}
	o->op = psprintf("%c", it->op);
	o->key = it->local_key;
	o->rid = it->new_remote_id ? it->new_remote_id : it->remote_id;
	o->fields = fields.data;
	o->hash = values_hash(vals, ns);
	o->detail = it->error_message == NULL ? NULL :
		it->error_code ? psprintf("%s: %s", it->error_code, it->error_message) : it->error_message;
}

/*
 * The set-based part of recording: a delete queued while a create was in
 * flight takes the new remote ID, the entries that went through go, and
 * the journal rows of the whole batch are added, built from the outcomes,
 * by an INSERT from arrays passed in binary: 3 us a record cheaper than
 * the COPY the apply uses (apply_bulk.c), which would parse the field
 * arrays and the times back from text.
 *
 * Such a delete is looked for only among the records whose rows the
 * write-back did not find as the claim read them (no_delete_behind): a
 * row with the same version cannot have been deleted since, and looking
 * every created record up among the queued deletes cost 2-3 us a record,
 * for a case that almost never happens.  A record another row mirrors is
 * not this row's to delete.  A delete that was not committed when
 * the write-back ran is seen: the write-back's UPDATE waited for its row
 * lock.  Creates whose write-back waits parked (op W) look again when it
 * is done.  The delete is still its row's open delete (slot 1): it waits
 * behind the create, so it cannot have been claimed.  Naming the slot
 * lets outbox_row alone answer.  The mirror's capture log is folded first:
 * a delete committed after the last fold is there, not in the outbox.
 */
static void
push_record_batch(SyncMirror *m, PushBatch *b, PushOutcome *out)
{
	int			n = b->nitems;
	char	  **new_key = palloc(sizeof(char *) * Max(1, n));
	char	  **new_rid = palloc(sizeof(char *) * Max(1, n));
	char	  **ok_ids = palloc(sizeof(char *) * Max(1, n));
	char	  **col[7];
	int			nnew = 0,
				nok_ids = 0,
				i,
				c;

	for (c = 0; c < 7; c++)
		col[c] = palloc(sizeof(char *) * Max(1, n));
	for (i = 0; i < n; i++)
	{
		SyncPushItem *it = &b->items[i];

		if (it->result == PUSH_OK && (it->op == 'I' || it->op == 'W') &&
			it->new_remote_id != NULL && !out[i].no_delete_behind)
		{
			new_key[nnew] = it->local_key;
			new_rid[nnew++] = it->new_remote_id;
		}
		if (out[i].done)
			ok_ids[nok_ids++] = psprintf(INT64_FORMAT, it->outbox_id);
		col[0][i] = out[i].op;
		col[1][i] = out[i].key;
		col[2][i] = out[i].rid;
		col[3][i] = out[i].fields;
		col[4][i] = out[i].hash;
		col[5][i] = (char *) out[i].result;
		col[6][i] = out[i].detail;
	}

	if (nnew > 0)
	{
		Oid			dt[3] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID};
		Datum		da[3] = {Int32GetDatum(m->id), text_array(new_key, nnew), text_array(new_rid, nnew)};

		/* the delete may still be in the capture log (capture.h) */
		(void) capture_fold(m->id, true, -1);
		spi_exec("UPDATE sync.outbox o "
				 "SET remote_id = ($3::pg_catalog.text[])[pg_catalog.array_position($2::pg_catalog.text[], o.local_key)] "
				 "WHERE o.mirror OPERATOR(pg_catalog.=) $1 "
				 "  AND o.local_key OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[]) "
				 "  AND o.slot OPERATOR(pg_catalog.=) 1 AND o.op OPERATOR(pg_catalog.=) 'D' AND o.remote_id IS NULL",
				 3, dt, da, NULL, SPI_OK_UPDATE);
	}

	if (nok_ids > 0)
	{
		Oid			t[1] = {TEXTARRAYOID};
		Datum		a[1] = {text_array(ok_ids, nok_ids)};

		spi_exec("DELETE FROM sync.outbox WHERE id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.int8[])",
				 1, t, a, NULL, SPI_OK_DELETE);
	}

	if (n > 0)
	{
		Oid			t[8] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
		Datum		a[8];

		a[0] = Int32GetDatum(m->id);
		for (c = 0; c < 7; c++)
			a[c + 1] = text_array(col[c], n);
		/* (at: when the result came back, not when the caller's transaction began) */
		spi_exec("INSERT INTO sync.journal (at, mirror, direction, op, local_key, remote_id, fields, values_hash, result, detail) "
				 "SELECT pg_catalog.clock_timestamp(), $1, 'out', u.op::\"char\", u.key, u.rid, "
				 "       pg_catalog.string_to_array(u.fields, E'\\x1f'), "
				 "       u.hash, u.result, u.detail "
				 "FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[]), "
				 "  pg_catalog.unnest($5::pg_catalog.text[]), pg_catalog.unnest($6::pg_catalog.text[]), pg_catalog.unnest($7::pg_catalog.text[]), pg_catalog.unnest($8::pg_catalog.text[])) "
				 "  AS u(op, key, rid, fields, hash, result, detail)",
				 8, t, a, NULL, SPI_OK_INSERT);
	}
}

/*
 * Record the outcome of a pushed batch.  Inside SPI.
 *   ok        -> entry deleted; new remote ID and stamp written back to the
 *                row without re-capture; journal row
 *   rejected  -> parked with the remote's message (sync.errors)
 *   retry     -> lease released, next attempt after a backoff
 * A write-back the table refuses parks the entry as op 'W' with the new
 * remote ID: the record exists remotely and is never created again.  The
 * common case is set-based, a few statements per batch rather than per
 * record: at thousands of records per second, per-row statements would
 * make the database, not the remote, the bottleneck.
 */
static void
push_record(SyncMirror *m, PushBatch *b, long blocked_ms, MemoryContext work,
			int *nok, int *nrejected, int *nretry)
{
	PushOutcome *out = palloc0(sizeof(PushOutcome) * Max(1, b->nitems));
	char	  **vals = palloc(sizeof(char *) * Max(1, m->nfields));
	int			plans = push_plans_begin();
	int			i;

	push_write_backs(m, b, out, work);
	for (i = 0; i < b->nitems; i++)
	{
		SyncPushItem *it = &b->items[i];

		if (it->result == PUSH_OK && out[i].wb_failed != NULL)
		{
			/* the outcome is kept: park a write-back, never a re-send */
			(*nrejected)++;
			out[i].result = "ok";
			outbox_park_write_back(it, out[i].wb_failed);
		}
		else if (it->result == PUSH_OK)
		{
			(*nok)++;
			out[i].result = "ok";
			out[i].done = true;
		}
		else if (it->result == PUSH_REJECTED)
		{
			(*nrejected)++;
			out[i].result = "rejected";
			outbox_park(it);
		}
		else
		{
			(*nretry)++;
			out[i].result = "retry";
			outbox_retry(it, b->attempts[i], blocked_ms);
		}
		outcome_journal(m, it, &out[i], vals);
	}
	push_record_batch(m, b, out);
	push_plans_end(plans);
}

/*
 * A bulk write can grow the outbox from nothing to millions of entries
 * between two autovacuum rounds; the claim's plan is only good with
 * statistics that know it.  So before a push's first claim: when the
 * statistics count fewer entries than a claim takes and the table has
 * grown fourfold since they were taken (its size is one lseek), analyze
 * it, with a sample of 3,000 rows rather than 30,000: the plan needs the
 * size and little else, and the full sample cost the first batch as much
 * as its claim (autovacuum analyzes fully later).  Once analyzed, the
 * table must grow fourfold again, so a steady queue does not pay this.
 *
 * Only when the lock ANALYZE takes is free at once: a session's sync.push()
 * that analyzed holds it to the end of its push (it cannot commit before),
 * and the worker must not wait for that (121_shared_budget.pl saw the
 * worker's first claim wait for a whole session push); nor for autovacuum.
 * The lock taken here is ANALYZE's own, so ANALYZE does not wait either.
 */
static void
analyze_outbox_if_grown(int limit)
{
	Oid			t[1] = {INT4OID};
	Datum		a[1] = {Int32GetDatum(limit)};
	int			level;
	Oid			outbox_oid;
	bool		isnull;

	spi_exec("SELECT oid FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) 'sync.outbox'::pg_catalog.regclass "
			 "AND reltuples OPERATOR(pg_catalog.<) $1 "
			 "AND pg_catalog.pg_relation_size(oid) OPERATOR(pg_catalog.>) "
			 "    (GREATEST(relpages, 1)::pg_catalog.int8 OPERATOR(pg_catalog.*) 4 OPERATOR(pg_catalog.*) "
			 "     pg_catalog.current_setting('block_size')::pg_catalog.int8)",
			 1, t, a, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return;
	outbox_oid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (!ConditionalLockRelationOid(outbox_oid, ShareUpdateExclusiveLock))
		return;
	level = NewGUCNestLevel();
	(void) set_config_option("default_statistics_target", "10", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	spi_exec("ANALYZE sync.outbox", 0, NULL, NULL, NULL, SPI_OK_UTILITY);
	AtEOXact_GUC(true, level);
}

/*
 * Processes pushing the current mirror together: 2 in a worker that
 * started a push helper and in the helper.  They share the connection's
 * in-flight budget, so each pipelined batch is a wave of its share of the
 * slots: a batch twice that size would wait on the network for two turns
 * while its claim and recording stand still.
 */
static int	push_sharers = 1;
static bool push_is_helper = false;

/* This process is a push helper (worker.c): it shares with its worker. */
void
push_as_helper(void)
{
	push_is_helper = true;
}

/*
 * The batch's pending items of one operation, copied into *group (their
 * places in b->items in *index); returns how many.  A delete of a row that
 * never reached the remote is done without sending anything.
 */
static int
group_items(PushBatch *b, char op, SyncPushItem **group, int **index)
{
	int			n = 0,
				i;

	*group = palloc(sizeof(SyncPushItem) * Max(1, b->nitems));
	*index = palloc(sizeof(int) * Max(1, b->nitems));
	for (i = 0; i < b->nitems; i++)
	{
		SyncPushItem *it = &b->items[i];

		if (it->op != op || it->result != PUSH_PENDING)
			continue;
		if (it->op == 'D' && it->remote_id == NULL)
		{
			/* never reached the remote: nothing to delete */
			it->result = PUSH_OK;
			it->error_message = "skipped: the row never reached the remote";
			continue;
		}
		(*group)[n] = *it;
		(*index)[n++] = i;
	}
	return n;
}

/* Hand the claimed items to the provider, one operation at a time. */
static void
push_send(SyncConnection *conn, SyncMirror *m, PushBatch *b)
{
	static const char ops[3] = {'I', 'U', 'D'};
	int			o;

	for (o = 0; o < 3; o++)
	{
		SyncPushItem *group;
		int		   *index;
		int			n = group_items(b, ops[o], &group, &index),
					i;

		if (n > 0)
		{
			int			max = conn->provider->batch_max(conn, m, ops[o]);
			int			start;

			for (start = 0; start < n; start += max * conn_in_flight(conn))
			{
				int			chunk = Min(n - start, max * conn_in_flight(conn));

				conn->provider->push(conn, m, group + start, chunk);
			}
			for (i = 0; i < n; i++)
				b->items[index[i]] = group[i];
		}
	}
}

/* ---------------------------------------------------------------------
 * pipelined push
 * --------------------------------------------------------------------- */

/*
 * For providers that opt in (conn_push_pipe: Salesforce), the network and
 * the database overlap.  A batch is one wave (batch maximum x requests in
 * flight); while one batch's requests are on the network the next one is
 * claimed, and while that one's are, the first one's results are recorded,
 * each step in a transaction of its own:
 *
 *   claim k+1 | start k+1 | finish k | record k | claim k+2 | start k+2 | ...
 *   [ k on the network  ][k+1 takes k's slots as they free][k+1 on the network]
 *
 * The requests of batch k+1 are queued behind those of batch k and take
 * their slots one by one as they free up (http_async_start), so never more
 * than the connection's max_in_flight are in flight.  What holds as in the
 * serial push:
 *  - order: sync._claim gives only the oldest entry of each row, and a
 *    batch's entries stay in the outbox until it is recorded: a later
 *    entry of a row in flight (a delete after its create) waits for the
 *    next claim after the recording;
 *  - "@key" references to a parent in flight find no remote ID yet and
 *    wait (WAITING_FOR_PARENT), as within one batch;
 *  - leases: each batch sends only before its own deadline (claim + 90% of
 *    sync.lease_seconds) and is recorded right after its requests end;
 *  - exactly-once recording: each batch is recorded once, in one
 *    transaction; after an error or a crash the batches claimed and not
 *    recorded (at most two) come back when their leases end and are sent
 *    again, creates with their idempotency keys, as after a crash of the
 *    serial push;
 *  - no new claims once a recorded batch had retries, the connection is
 *    held after a 429, the mirror is paused, or the queue runs short.
 * The connection loaded when the push began serves the whole pipeline (it
 * may not be reloaded while requests that use it are in flight): a
 * pipeline ends after PIPELINE_MS, and push_mirror begins another with the
 * connection reloaded.
 */
#define PIPELINE_MS		10000

typedef struct PipeBatch
{
	MemoryContext cxt;			/* the batch's; NULL: the caller's */
	SyncMirror *m;
	PushBatch  *b;
	int			limit;			/* entries asked for */
	bool		more;			/* the fold after its claim left more in the log */
	int			ncalls;
	void	   *calls[3 * 64];	/* the provider's, in flight */
	int			ngroup[3];		/* per operation: the items sent, */
	SyncPushItem *group[3];
	int		   *index[3];		/* ... and where they are in b->items */
} PipeBatch;

/*
 * A pipelined claim: one wave of this process's share of the requests in
 * flight (half of them while a push helper shares the connection).
 */
static int
pipe_limit(SyncConnection *conn, SyncMirror *m)
{
	int			limit = conn->provider->batch_max(conn, m, 'U') * Max(1, conn_in_flight(conn) / push_sharers);

	fold_hint = Max(fold_hint, limit);
	return limit;
}

/* Claim the next batch (one wave), or NULL when there is nothing to do. */
static PipeBatch *
pipe_claim(int mirror_id, bool own, SyncConnection *conn, MemoryContext work)
{
	MemoryContext cxt = AllocSetContextCreate(work, "sync pipelined batch", ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = CurrentMemoryContext;
	PipeBatch  *pb = MemoryContextAllocZero(cxt, sizeof(PipeBatch));
	char	   *connection;

	pb->cxt = cxt;
	xact_begin(own);
	pb->m = mirror_load(mirror_id, cxt, &connection);
	if (pb->m->direction == 'l' || pause_mirror_paused(mirror_id) ||
		strcmp(connection, conn->name) != 0)
	{
		xact_end(own);
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
		return NULL;
	}
	pb->limit = pipe_limit(conn, pb->m);
	pb->b = push_claim(pb->m, conn->provider, pb->limit, cxt);
	resolve_references(pb->m, connection, pb->b, cxt);
	xact_end(own);
	MemoryContextSwitchTo(old);
	if (pb->b->nitems == 0)
	{
		MemoryContextDelete(cxt);
		return NULL;
	}
	return pb;
}

/* Start a batch's requests (push_send's grouping, through the pipe). */
static void
pipe_start(SyncConnection *conn, const SyncPushPipe *pipe, PipeBatch *pb)
{
	static const char ops[3] = {'I', 'U', 'D'};
	PushBatch  *b = pb->b;
	int			o;

	conn_set_deadline(TimestampTzPlusMilliseconds(b->claimed_at, sync_lease_seconds * 900L));
	PG_TRY();
	{
		for (o = 0; o < 3; o++)
		{
			SyncPushItem *group;
			int		   *index;
			int			n = group_items(b, ops[o], &group, &index),
						max,
						start;

			pb->group[o] = group;
			pb->index[o] = index;
			pb->ngroup[o] = n;
			max = conn->provider->batch_max(conn, pb->m, ops[o]) * conn_in_flight(conn);
			for (start = 0; start < n && pb->ncalls < lengthof(pb->calls); start += max)
				pb->calls[pb->ncalls++] = pipe->begin(conn, pb->m, group + start,
													  Min(n - start, max));
			/* (a batch is one wave: more calls than that never happen) */
			for (; start < n; start += max)
				conn->provider->push(conn, pb->m, group + start, Min(n - start, max));
		}
	}
	PG_FINALLY();
	{
		conn_set_deadline(0);
	}
	PG_END_TRY();
}

/* Wait for a batch's requests; their results into its items. */
static void
pipe_finish(SyncConnection *conn, const SyncPushPipe *pipe, PipeBatch *pb)
{
	int			c,
				o,
				i;

	conn_set_deadline(TimestampTzPlusMilliseconds(pb->b->claimed_at, sync_lease_seconds * 900L));
	PG_TRY();
	{
		for (c = 0; c < pb->ncalls; c++)
			pipe->end(conn, pb->calls[c]);
	}
	PG_FINALLY();
	{
		conn_set_deadline(0);
	}
	PG_END_TRY();
	for (o = 0; o < 3; o++)
		for (i = 0; i < pb->ngroup[o]; i++)
			pb->b->items[pb->index[o][i]] = pb->group[o][i];
}

static void
pipe_record(int mirror_id, bool own, SyncConnection *conn, PipeBatch *pb,
			int *nok, int *nrejected, int *nretry)
{
	MemoryContext old = CurrentMemoryContext;
	MemoryContext cxt = pb->cxt ? pb->cxt : old;

	xact_begin(own);
	push_record(pb->m, pb->b, conn_blocked_ms(conn), cxt, nok, nrejected, nretry);
	drift_note_push(pb->m, pb->b->items, pb->b->nitems);
	save_usage(conn);
	note_push_done(mirror_id);
	xact_end(own);
	MemoryContextSwitchTo(old);
}

/*
 * The pipeline, from a first batch claimed by push_mirror (in its context,
 * CurrentMemoryContext); returns the number of entries handled, and in
 * *more whether it ended only because its time was up (more is queued).
 * A batch is followed by another while its claim was full, or while the
 * capture log may hold more (fold_ahead): a claim can fall short because
 * the other process (the push helper) was folding when this one would.
 */
static int64
push_pipelined(int mirror_id, bool own, MemoryContext work, SyncConnection *conn,
			   const SyncPushPipe *pipe, SyncMirror *m, PushBatch *b, int limit,
			   int *nok, int *nrejected, int *nretry, bool *more)
{
	MemoryContext batchcxt = CurrentMemoryContext;
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), PIPELINE_MS);
	PipeBatch  *cur = palloc0(sizeof(PipeBatch));
	PipeBatch  *next = NULL;
	int64		total = 0;

	cur->m = m;
	cur->b = b;
	cur->limit = limit;
	PG_TRY();
	{
		pipe_start(conn, pipe, cur);
		cur->more = fold_ahead(mirror_id, own, 2 * (int64) limit);
		for (;;)
		{
			TimestampTz t0 = GetCurrentTimestamp(),
						t1,
						t2;
			double		c0 = thread_cpu_ms(),
						c1,
						c2;
			bool		full = (cur->b->nitems >= cur->limit || cur->more) && *nretry == 0 &&
				conn_blocked_ms(conn) == 0;

			/* [cur on the network] the next batch, if the queue is still full */
			next = NULL;
			*more = full && GetCurrentTimestamp() >= until;
			if (full && !*more)
			{
				next = pipe_claim(mirror_id, own, conn, work);
				if (next)
				{
					MemoryContextSwitchTo(next->cxt);
					pipe_start(conn, pipe, next);
					/* for the claim after it, while both are on the network */
					next->more = fold_ahead(mirror_id, own, 2 * (int64) next->limit);
				}
			}
			/* cur's results; next's requests take cur's slots as they free */
			MemoryContextSwitchTo(cur->cxt ? cur->cxt : batchcxt);
			t1 = GetCurrentTimestamp();
			c1 = thread_cpu_ms();
			pipe_finish(conn, pipe, cur);
			t2 = GetCurrentTimestamp();
			c2 = thread_cpu_ms();
			/* [next on the network] */
			pipe_record(mirror_id, own, conn, cur, nok, nrejected, nretry);
			total += cur->b->nitems;

			/*
			 * Where the time goes: the database's part is what overlaps.  Its
			 * CPU time too, which other load on the machine disturbs less
			 * than the clock.
			 */
			elog(DEBUG1, "sync: mirror %d: pipelined batch of %d: claim of the next (%d) %ld ms (CPU %.1f ms), "
				 "wait for the network %ld ms, record %ld ms (CPU %.1f ms)",
				 mirror_id, cur->b->nitems, next ? next->b->nitems : 0,
				 (long) ((t1 - t0) / 1000), c1 - c0, (long) ((t2 - t1) / 1000),
				 (long) ((GetCurrentTimestamp() - t2) / 1000), thread_cpu_ms() - c2);
			MemoryContextSwitchTo(batchcxt);
			if (cur->cxt)
				MemoryContextDelete(cur->cxt);
			cur = next;
			if (cur == NULL)
				break;
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		/* the batches not recorded come back when their leases end */
		http_async_cancel_all();
		conn_set_deadline(0);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(batchcxt);
	return total;
}

/*
 * Whether at least n entries of the mirror are ready and unclaimed, or
 * captured and not folded yet (inside SPI).
 */
static bool
backlog_at_least(int mirror_id, int n)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		vals[2] = {Int32GetDatum(mirror_id), Int32GetDatum(n)};
	bool		isnull;

	spi_exec("SELECT (SELECT pg_catalog.count(*) FROM "
			 "  (SELECT 1 FROM sync.outbox o WHERE o.mirror OPERATOR(pg_catalog.=) $1 "
			 "     AND o.state OPERATOR(pg_catalog.=) 'pending' AND o.claimed_until IS NULL LIMIT $2) s) "
			 "OPERATOR(pg_catalog.+) (SELECT pg_catalog.count(*) FROM "
			 "  (SELECT 1 FROM sync.capture_log c WHERE c.mirror OPERATOR(pg_catalog.=) $1 LIMIT $2) l) "
			 "OPERATOR(pg_catalog.>=) $2",
			 2, types, vals, NULL, SPI_OK_SELECT);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* Push one mirror's ready entries; returns the number of entries handled. */
int64
push_mirror(int mirror_id, bool own, MemoryContext work, int *nok, int *nrejected, int *nretry)
{
	int64		total = 0;
	bool		first = true;
	MemoryContext batchcxt = AllocSetContextCreate(work, "sync batch", ALLOCSET_DEFAULT_SIZES);

	push_sharers = push_is_helper ? 2 : 1;
	for (;;)
	{
		SyncMirror *m;
		SyncConnection *conn;
		PushBatch  *b;
		char	   *connection;
		int			limit,
					wave;
		MemoryContext old;
		bool		more;
		bool		helper;
		bool		folded_more;
		int			threshold;
		TimestampTz claim_start;

		/* one batch at a time in memory, however long the queue */
		MemoryContextReset(batchcxt);
		folded_more = fold_ahead(mirror_id, own, 2 * (int64) fold_hint);
		xact_begin(own);
		m = mirror_load(mirror_id, batchcxt, &connection);
		if (m->direction == 'l' || pause_mirror_paused(mirror_id))
		{
			xact_end(own);
			break;
		}
		conn = conn_get(connection);
		/*
		 * One wave of requests is batch_max x max_in_flight records; claim
		 * whole waves (at least sync.batch_size records) so that no wave
		 * goes out half full.  A pipelined push claims one wave of its share
		 * of the requests each time, the first time too (pipe_claim): a
		 * larger first batch only delays the pipeline by its recording.
		 */
		if (conn_push_pipe(conn) != NULL)
			limit = pipe_limit(conn, m);
		else
		{
			wave = conn->provider->batch_max(conn, m, 'U') * conn_in_flight(conn);
			limit = Max(1, (sync_batch_size + wave - 1) / wave) * wave;
			fold_hint = Max(fold_hint, limit);
		}

		/*
		 * sync.push() in a session: every write captured until now is the
		 * push's (the worker folds ahead of its claims: fold_ahead)
		 */
		if (first && !own)
			(void) capture_fold(mirror_id, true, -1);
		if (first)
			analyze_outbox_if_grown(limit);
		claim_start = GetCurrentTimestamp();
		b = push_claim(m, conn->provider, limit, batchcxt);
		if (first && b->nitems > 0)
			elog(DEBUG1, "sync: mirror %d: first claim of a push: %d entries in %ld ms",
				 mirror_id, b->nitems, (long) ((GetCurrentTimestamp() - claim_start) / 1000));
		/*
		 * A large backlog behind the first claim: a push helper (worker.c)
		 * pushes beside the worker, on the machine's other core (not for a
		 * connection of one request at a time: nothing to share).
		 */
		helper = first && own && (b->nitems >= limit || folded_more) && conn_in_flight(conn) >= 2 &&
			(threshold = sync_push_helper_threshold()) > 0 && backlog_at_least(mirror_id, threshold);
		first = false;
		resolve_references(m, connection, b, batchcxt);
		xact_end(own);
		if (helper && sync_push_helper_start(mirror_id))
			push_sharers = 2;

		if (b->nitems == 0)
			break;
		if (conn_push_pipe(conn) != NULL)
		{
			/* the network and the database overlap: see push_pipelined */
			old = MemoryContextSwitchTo(batchcxt);
			total += push_pipelined(mirror_id, own, work, conn, conn_push_pipe(conn),
									m, b, limit, nok, nrejected, nretry, &more);
			MemoryContextSwitchTo(old);
			if (!more)
				break;
			/* a new pipeline, with the connection reloaded */
			CHECK_FOR_INTERRUPTS();
			continue;
		}

		/*
		 * The network, outside any transaction (in the worker).  After the
		 * commit CurrentMemoryContext is TopMemoryContext: what the provider
		 * builds and receives (JSON trees, bodies) must go to the batch.
		 * The rate limiter may not sleep past the lease (less a margin for
		 * recording the results): requests it would hold longer are not
		 * sent, and their entries are released for later.
		 */
		old = MemoryContextSwitchTo(batchcxt);
		conn_set_deadline(TimestampTzPlusMilliseconds(b->claimed_at, sync_lease_seconds * 900L));
		PG_TRY();
		{
			push_send(conn, m, b);
		}
		PG_FINALLY();
		{
			conn_set_deadline(0);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(old);

		xact_begin(own);
		push_record(m, b, conn_blocked_ms(conn), batchcxt, nok, nrejected, nretry);
		drift_note_push(m, b->items, b->nitems);
		save_usage(conn);
		note_push_done(mirror_id);
		xact_end(own);
		total += b->nitems;
		if ((b->nitems < limit && !folded_more) || *nretry > 0)
			break;
		CHECK_FOR_INTERRUPTS();
	}
	return total;
}
