/*
 * merge.c — remote merges followed locally.
 *
 * A provider reports the merges it saw in a page as pairs (loser ->
 * winner): Salesforce's deleted losers with MasterRecordId, HubSpot's
 * hs_merged_object_ids on the merged record.  Before the page is applied
 * (apply.c), each merge whose loser this database knows — a row holding the
 * loser's remote ID, or a local delete of it waiting to be sent — is
 * followed, in a subtransaction of its own:
 *
 *  - the loser's row goes: its pending local changes (outbox entries not
 *    claimed by a push in flight) are copied onto the winner's row, as a
 *    local update of that row, which is captured and pushed to the winner;
 *    then the loser's row and its entries are removed without queueing a
 *    delete (the remote record is gone already).  When the winner has no
 *    row here (HubSpot gives a merged contact or company a new ID; a
 *    Salesforce master outside the mirror's filter), the loser's row is
 *    kept as the winner's: its remote ID becomes the winner's, its pending
 *    changes go to the winner as they are, and the page's record of the
 *    winner updates it.  With "delete": "keep" the loser's row stays as it
 *    is (nothing local is removed by the remote), the rest is done.
 *  - a local delete of the loser still queued is not sent: the record no
 *    longer exists, and HubSpot would resolve the loser's ID to the winner
 *    and delete the merged record.
 *  - reference columns of the connection's mirrors (sync.field.reference_to
 *    = this object) that hold the loser's ID are set to the winner's, as
 *    each table's owner, with the capture of that mirror suppressed: the
 *    remote re-parented those records itself (Salesforce re-parents related
 *    records; HubSpot moves associations to the merged record), so this is
 *    the remote's change arriving, not a local edit to push back.  A
 *    pending local change of such a column stays queued and is sent with
 *    the row's value, the winner's.
 *  - one row in sync.merge_log (sync.merges), and a journal row (result
 *    'merged').
 *
 * If anything of one merge fails (a foreign key on the loser's row, a lock
 * held longer than sync.lock_timeout, a trigger's error), that merge is
 * undone, journaled as failed, and the loser is left to the page's
 * ordinary delete handling.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "capture.h"
#include "engine_int.h"

/* A reference column of some mirror of the connection that targets this object. */
typedef struct MergeRef
{
	int			mirror;
	Oid			owner;
	char	   *table;			/* quoted schema.table */
	char	   *column;
	char	   *type;			/* the column's SQL type */
} MergeRef;

typedef struct MergeOne
{
	SyncMirror *m;
	MemoryContext work;
	int			nrefs;
	MergeRef   *refs;
	const char *loser;
	const char *winner;
	const char *loser_key;		/* the loser's row, or NULL */
	/* results */
	char	   *winner_key;
	int64		repointed;
	int			retargeted;
	StringInfoData detail;
} MergeOne;

/* The first column of each row of the last SPI result, copied into cxt. */
static char **
spi_column(MemoryContext cxt, int col, int *n)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	char	  **out = palloc(sizeof(char *) * Max(1, SPI_processed));
	int			i;

	*n = (int) SPI_processed;
	for (i = 0; i < *n; i++)
		out[i] = getv(i, col);
	MemoryContextSwitchTo(old);
	return out;
}

/* The winner's row here: its key, or NULL. */
static char *
winner_row(MergeOne *mo)
{
	SyncMirror *m = mo->m;
	Oid			t[1] = {TEXTOID};
	Datum		a[1] = {CStringGetTextDatum(mo->winner)};
	OwnerScope	os;
	char	   *key = NULL;

	owner_begin(m->owner, &os);
	spi_exec(psprintf("SELECT %s::pg_catalog.text FROM %s WHERE %s OPERATOR(pg_catalog.=) $1",
					  quote_identifier(m->key_column), m->qualified_table,
					  quote_identifier(m->remote_id_column)),
			 1, t, a, NULL, SPI_OK_SELECT);
	owner_end(&os);
	if (SPI_processed > 0)
		key = MemoryContextStrdup(mo->work, getv(0, 1));
	return key;
}

/*
 * The columns the loser's pending local changes cover (pushable data
 * columns only), less those the winner's own pending changes cover (the
 * winner's newer intent stays).  NULL entries in sync.outbox.columns mean
 * all columns.
 */
static List *
pending_columns(MergeOne *mo)
{
	SyncMirror *m = mo->m;
	Oid			t[3] = {INT4OID, TEXTOID, TEXTOID};
	Datum		a[3];
	List	   *cols = NIL;
	bool		winner_all = false;
	List	   *winner_cols = NIL;
	int			i,
				r;

	a[0] = Int32GetDatum(m->id);
	a[1] = CStringGetTextDatum(mo->loser_key);
	a[2] = CStringGetTextDatum(mo->winner_key);
	spi_exec("SELECT o.local_key OPERATOR(pg_catalog.=) $2, o.columns IS NULL, "
			 "       pg_catalog.array_to_string(o.columns, ',') "
			 "  FROM sync.outbox o WHERE o.mirror OPERATOR(pg_catalog.=) $1 "
			 "   AND o.local_key OPERATOR(pg_catalog.=) ANY (ARRAY[$2, $3]) "
			 "   AND o.op OPERATOR(pg_catalog.=) ANY ('{U,I}'::\"char\"[]) "
			 "   AND (o.claimed_until IS NULL OR o.claimed_until OPERATOR(pg_catalog.<) pg_catalog.now())",
			 3, t, a, NULL, SPI_OK_SELECT);
	for (r = 0; r < (int) SPI_processed; r++)
	{
		bool		is_loser = strcmp(getv(r, 1), "t") == 0;
		bool		all = strcmp(getv(r, 2), "t") == 0;
		char	   *list = getv(r, 3);

		for (i = 0; i < m->nfields; i++)
		{
			SyncField  *f = &m->fields[i];
			char	   *col = m->columns[i];
			bool		covered;

			if (f->role != FIELD_DATA || !f->updateable || strcmp(m->authority[i], "remote") == 0)
				continue;
			covered = all;
			if (!covered && list)
			{
				char	   *copy = pstrdup(list);
				char	   *tok;

				for (tok = strtok(copy, ","); tok && !covered; tok = strtok(NULL, ","))
					covered = strcmp(tok, col) == 0;
			}
			if (!covered)
				continue;
			if (is_loser)
				cols = list_append_unique_ptr(cols, col);
			else
				winner_cols = list_append_unique_ptr(winner_cols, col);
		}
		if (!is_loser && all)
			winner_all = true;
	}
	if (winner_all)
		return NIL;
	return list_difference_ptr(cols, winner_cols);
}

/*
 * The winner's row takes the loser's pending local changes: an ordinary
 * local update, captured and pushed to the winner.
 */
static void
copy_pending(MergeOne *mo, List *cols)
{
	SyncMirror *m = mo->m;
	StringInfoData sql;
	ListCell   *lc;
	Oid			t[2] = {TEXTOID, TEXTOID};
	Datum		a[2];
	OwnerScope	os;
	int			saved = sync_applying_mirror;

	initStringInfo(&sql);
	appendStringInfo(&sql, "UPDATE %s AS w SET ", m->qualified_table);
	foreach(lc, cols)
		appendStringInfo(&sql, "%s%s = l.%s", foreach_current_index(lc) ? ", " : "",
						 quote_identifier(lfirst(lc)), quote_identifier(lfirst(lc)));
	appendStringInfo(&sql, " FROM %s AS l WHERE w.%s OPERATOR(pg_catalog.=) $1::%s "
					 "AND l.%s OPERATOR(pg_catalog.=) $2::%s",
					 m->qualified_table, quote_identifier(m->key_column), m->key_type,
					 quote_identifier(m->key_column), m->key_type);
	a[0] = CStringGetTextDatum(mo->winner_key);
	a[1] = CStringGetTextDatum(mo->loser_key);
	owner_begin(m->owner, &os);
	sync_applying_mirror = 0;	/* captured: this goes to the winner */
	spi_exec(sql.data, 2, t, a, NULL, SPI_OK_UPDATE);
	sync_applying_mirror = saved;
	owner_end(&os);
}

/* Remove the loser's row and its outbox entries (not those in flight), queueing nothing. */
static int
drop_loser(MergeOne *mo)
{
	SyncMirror *m = mo->m;
	Oid			t[2] = {TEXTOID, INT4OID};
	Datum		a[2];
	OwnerScope	os;
	int			saved = sync_applying_mirror;
	int			nentries;

	a[0] = CStringGetTextDatum(mo->loser_key);
	a[1] = Int32GetDatum(m->id);
	owner_begin(m->owner, &os);
	sync_applying_mirror = m->id;
	spi_exec(psprintf("DELETE FROM %s WHERE %s OPERATOR(pg_catalog.=) $1::%s",
					  m->qualified_table, quote_identifier(m->key_column), m->key_type),
			 1, t, a, NULL, SPI_OK_DELETE);
	sync_applying_mirror = saved;
	owner_end(&os);
	spi_exec("DELETE FROM sync.outbox o WHERE o.mirror OPERATOR(pg_catalog.=) $2 "
			 "AND o.local_key OPERATOR(pg_catalog.=) $1 "
			 "AND (o.claimed_until IS NULL OR o.claimed_until OPERATOR(pg_catalog.<) pg_catalog.now())",
			 2, t, a, NULL, SPI_OK_DELETE);
	nentries = (int) SPI_processed;
	return nentries;
}

/* The loser's row continues as the winner's: its remote ID becomes the winner's. */
static void
adopt_loser(MergeOne *mo)
{
	SyncMirror *m = mo->m;
	Oid			t[2] = {TEXTOID, TEXTOID};
	Datum		a[2];
	OwnerScope	os;
	int			saved = sync_applying_mirror;

	a[0] = CStringGetTextDatum(mo->loser_key);
	a[1] = CStringGetTextDatum(mo->winner);
	owner_begin(m->owner, &os);
	sync_applying_mirror = m->id;
	spi_exec(psprintf("UPDATE %s SET %s = $2 WHERE %s OPERATOR(pg_catalog.=) $1::%s",
					  m->qualified_table, quote_identifier(m->remote_id_column),
					  quote_identifier(m->key_column), m->key_type),
			 2, t, a, NULL, SPI_OK_UPDATE);
	sync_applying_mirror = saved;
	owner_end(&os);

	a[0] = Int32GetDatum(m->id);
	a[1] = CStringGetTextDatum(mo->loser_key);
	t[0] = INT4OID;
	spi_exec("SELECT 1 FROM sync.outbox o WHERE o.mirror OPERATOR(pg_catalog.=) $1 "
			 "AND o.local_key OPERATOR(pg_catalog.=) $2",
			 2, t, a, NULL, SPI_OK_SELECT);
	mo->retargeted += (int) SPI_processed;
}

/* Local deletes of the loser still queued: not sent (see the head comment). */
static int
drop_loser_deletes(MergeOne *mo)
{
	Oid			t[2] = {INT4OID, TEXTOID};
	Datum		a[2];

	a[0] = Int32GetDatum(mo->m->id);
	a[1] = CStringGetTextDatum(mo->loser);
	spi_exec("DELETE FROM sync.outbox o WHERE o.mirror OPERATOR(pg_catalog.=) $1 "
			 "AND o.op OPERATOR(pg_catalog.=) 'D' AND o.remote_id OPERATOR(pg_catalog.=) $2 "
			 "AND (o.claimed_until IS NULL OR o.claimed_until OPERATOR(pg_catalog.<) pg_catalog.now())",
			 2, t, a, NULL, SPI_OK_DELETE);
	return (int) SPI_processed;
}

/* Reference columns holding the loser's ID now hold the winner's (not captured). */
static void
repoint_references(MergeOne *mo)
{
	int			i;

	for (i = 0; i < mo->nrefs; i++)
	{
		MergeRef   *r = &mo->refs[i];
		Oid			t[2] = {TEXTOID, TEXTOID};
		Datum		a[2];
		OwnerScope	os;
		int			saved = sync_applying_mirror;

		a[0] = CStringGetTextDatum(mo->loser);
		a[1] = CStringGetTextDatum(mo->winner);
		owner_begin(r->owner, &os);
		sync_applying_mirror = r->mirror;
		spi_exec(psprintf("UPDATE %s SET %s = $2::%s WHERE %s OPERATOR(pg_catalog.=) $1::%s",
						  r->table, quote_identifier(r->column), r->type,
						  quote_identifier(r->column), r->type),
				 2, t, a, NULL, SPI_OK_UPDATE);
		sync_applying_mirror = saved;
		owner_end(&os);
		if (SPI_processed > 0)
			appendStringInfo(&mo->detail, "; %s.%s re-pointed in " UINT64_FORMAT " row%s",
							 r->table, r->column, SPI_processed, SPI_processed == 1 ? "" : "s");
		mo->repointed += SPI_processed;
	}
}

/* One merge, in a subtransaction (in_subxact). */
static void
merge_one(void *arg)
{
	MergeOne   *mo = (MergeOne *) arg;
	SyncMirror *m = mo->m;
	bool		keep = engine_mirror(m)->on_delete != DELETE_APPLY;
	int			ndeletes;

	mo->winner_key = winner_row(mo);
	mo->repointed = 0;
	mo->retargeted = 0;
	initStringInfo(&mo->detail);
	appendStringInfo(&mo->detail, "%s %s merged into %s", m->remote_object, mo->loser, mo->winner);

	if (mo->loser_key && keep)
		appendStringInfo(&mo->detail, "; row %s kept (mirror option \"delete\": \"keep\")", mo->loser_key);
	else if (mo->loser_key && mo->winner_key)
	{
		List	   *cols = pending_columns(mo);
		int			nentries;

		if (cols != NIL)
			copy_pending(mo, cols);
		nentries = drop_loser(mo);
		if (cols != NIL)
			mo->retargeted = nentries;
		appendStringInfo(&mo->detail, "; row %s removed", mo->loser_key);
		if (cols != NIL)
			appendStringInfo(&mo->detail, "; its pending change of %d column%s moved to row %s",
							 list_length(cols), list_length(cols) == 1 ? "" : "s", mo->winner_key);
		else if (nentries > 0)
			appendStringInfo(&mo->detail, "; its pending changes were already covered by row %s's own",
							 mo->winner_key);
	}
	else if (mo->loser_key)
	{
		adopt_loser(mo);
		mo->winner_key = pstrdup(mo->loser_key);
		appendStringInfo(&mo->detail, "; row %s continues as the winner's (the winner had no row here)",
						 mo->loser_key);
	}
	ndeletes = drop_loser_deletes(mo);
	if (ndeletes > 0)
		appendStringInfo(&mo->detail, "; a queued local delete of %s was not sent (it would reach the merged record)",
						 mo->loser);
	repoint_references(mo);

	{
		Oid			t[8] = {INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, INT4OID, TEXTOID};
		Datum		a[8];
		char		nulls[8];

		memset(nulls, ' ', sizeof(nulls));
		a[0] = Int32GetDatum(m->id);
		a[1] = CStringGetTextDatum(mo->loser);
		a[2] = CStringGetTextDatum(mo->winner);
		a[3] = mo->loser_key ? CStringGetTextDatum(mo->loser_key) : (Datum) 0;
		nulls[3] = mo->loser_key ? ' ' : 'n';
		a[4] = mo->winner_key ? CStringGetTextDatum(mo->winner_key) : (Datum) 0;
		nulls[4] = mo->winner_key ? ' ' : 'n';
		a[5] = Int64GetDatum(mo->repointed);
		a[6] = Int32GetDatum(mo->retargeted);
		a[7] = CStringGetTextDatum(mo->detail.data);
		spi_exec("INSERT INTO sync.merge_log (mirror, loser_remote_id, winner_remote_id, loser_key, "
				 "  winner_key, references_repointed, writes_retargeted, detail) "
				 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
				 8, t, a, nulls, SPI_OK_INSERT);
		spi_exec("INSERT INTO sync.journal (mirror, direction, op, local_key, remote_id, result, detail) "
				 "VALUES ($1, 'in', 'D', $4, $2, 'merged', $8)",
				 8, t, a, nulls, SPI_OK_INSERT);
	}
}

/* The reference columns that may hold IDs of m's object: every mirror of its connection. */
static MergeRef *
load_refs(SyncMirror *m, MemoryContext work, int *n)
{
	Oid			t[2] = {INT4OID, TEXTOID};
	Datum		a[2];
	MergeRef   *refs;
	MemoryContext old;
	int			i;

	a[0] = Int32GetDatum(m->id);
	a[1] = CStringGetTextDatum(m->remote_object);
	spi_exec("SELECT c.id, k.relowner, "
			 "       pg_catalog.quote_ident(ns.nspname) OPERATOR(pg_catalog.||) '.' "
			 "         OPERATOR(pg_catalog.||) pg_catalog.quote_ident(k.relname), "
			 "       f.local_column, pg_catalog.format_type(att.atttypid, att.atttypmod) "
			 "  FROM sync.mirror p "
			 "  JOIN sync.mirror c ON c.connection OPERATOR(pg_catalog.=) p.connection "
			 "  JOIN sync.field f ON f.mirror OPERATOR(pg_catalog.=) c.id "
			 "  JOIN pg_catalog.pg_class k ON k.oid OPERATOR(pg_catalog.=) c.local_table "
			 "  JOIN pg_catalog.pg_namespace ns ON ns.oid OPERATOR(pg_catalog.=) k.relnamespace "
			 "  JOIN pg_catalog.pg_attribute att ON att.attrelid OPERATOR(pg_catalog.=) k.oid "
			 "   AND att.attname OPERATOR(pg_catalog.=) f.local_column AND NOT att.attisdropped "
			 " WHERE p.id OPERATOR(pg_catalog.=) $1 AND f.reference_to OPERATOR(pg_catalog.=) $2 "
			 " ORDER BY c.id, f.local_column",
			 2, t, a, NULL, SPI_OK_SELECT);
	old = MemoryContextSwitchTo(work);
	*n = (int) SPI_processed;
	refs = palloc0(sizeof(MergeRef) * Max(1, *n));
	for (i = 0; i < *n; i++)
	{
		refs[i].mirror = atoi(getv(i, 1));
		refs[i].owner = (Oid) strtoul(getv(i, 2), NULL, 10);
		refs[i].table = getv(i, 3);
		refs[i].column = getv(i, 4);
		refs[i].type = getv(i, 5);
	}
	MemoryContextSwitchTo(old);
	return refs;
}

/*
 * Follow the page's remote merges (see the head comment).  Runs in the
 * page's transaction, before the page is applied.
 */
void
merge_apply(SyncMirror *m, SyncPage *page, MemoryContext work)
{
	char	  **rids,
			  **keys,
			  **deleted;
	int			nrows,
				ndeleted,
				i,
				j;
	char	  **logged = NULL;
	int			nlogged = 0;
	MergeRef   *refs = NULL;
	int			nrefs = 0;
	bool		refs_loaded = false;

	if (page->nmerged <= 0)
		return;

	/* which losers this database knows: a row, or a queued local delete */
	{
		Oid			t[2] = {TEXTARRAYOID, INT4OID};
		Datum		a[2];
		OwnerScope	os;

		a[0] = text_array(page->merged_ids, page->nmerged);
		a[1] = Int32GetDatum(m->id);
		owner_begin(m->owner, &os);
		spi_exec(psprintf("SELECT %s::pg_catalog.text, %s::pg_catalog.text FROM %s "
						  "WHERE %s OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])",
						  quote_identifier(m->remote_id_column), quote_identifier(m->key_column),
						  m->qualified_table, quote_identifier(m->remote_id_column)),
				 1, t, a, NULL, SPI_OK_SELECT);
		owner_end(&os);
		rids = spi_column(work, 1, &nrows);
		keys = spi_column(work, 2, &nrows);
		spi_exec("SELECT DISTINCT o.remote_id FROM sync.outbox o WHERE o.mirror OPERATOR(pg_catalog.=) $2 "
				 "AND o.op OPERATOR(pg_catalog.=) 'D' AND o.remote_id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])",
				 2, t, a, NULL, SPI_OK_SELECT);
		deleted = spi_column(work, 1, &ndeleted);
		/* under "delete": "keep" the loser's row stays: a merge already logged is done */
		if (engine_mirror(m)->on_delete != DELETE_APPLY)
		{
			spi_exec("SELECT DISTINCT l.loser_remote_id FROM sync.merge_log l "
					 "WHERE l.mirror OPERATOR(pg_catalog.=) $2 "
					 "AND l.loser_remote_id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])",
					 2, t, a, NULL, SPI_OK_SELECT);
			logged = spi_column(work, 1, &nlogged);
		}
	}

	for (i = 0; i < page->nmerged; i++)
	{
		MergeOne	mo;
		ErrorData  *e = NULL;
		const char *loser = page->merged_ids[i];
		const char *winner = page->merged_into[i];
		bool		known = false;

		if (loser == NULL || winner == NULL || strcmp(loser, winner) == 0)
			continue;
		for (j = 0; j < i; j++)
			if (page->merged_ids[j] && strcmp(page->merged_ids[j], loser) == 0)
				break;
		if (j < i)
			continue;			/* the same merge twice in a page */

		memset(&mo, 0, sizeof(mo));
		mo.m = m;
		mo.work = work;
		mo.loser = loser;
		mo.winner = winner;
		for (j = 0; j < nrows; j++)
			if (strcmp(rids[j], loser) == 0)
			{
				mo.loser_key = keys[j];
				known = true;
			}
		for (j = 0; j < ndeleted && !known; j++)
			known = strcmp(deleted[j], loser) == 0;
		for (j = 0; j < nlogged && known; j++)
			known = strcmp(logged[j], loser) != 0;
		if (!known)
			continue;			/* nothing of it here (e.g. a merge long ago) */

		if (!refs_loaded)
		{
			refs = load_refs(m, work, &nrefs);
			refs_loaded = true;
		}
		mo.refs = refs;
		mo.nrefs = nrefs;
		if (!in_subxact(merge_one, &mo, work, &e))
		{
			Oid			t[4] = {INT4OID, TEXTOID, TEXTOID, TEXTOID};
			Datum		a[4];
			char	   *msg = psprintf("merge into %s not followed: %s: %s", winner,
									   unpack_sql_state(e->sqlerrcode), error_text(e));

			ereport(LOG,
					(errmsg("sync: %s: %s %s %s", m->qualified_table, m->remote_object, loser, msg)));
			a[0] = Int32GetDatum(m->id);
			a[1] = CStringGetTextDatum(loser);
			a[2] = mo.loser_key ? CStringGetTextDatum(mo.loser_key) : (Datum) 0;
			a[3] = CStringGetTextDatum(msg);
			spi_exec("INSERT INTO sync.journal (mirror, direction, op, local_key, remote_id, result, detail) "
					 "VALUES ($1, 'in', 'D', $3, $2, 'failed', $4)",
					 4, t, a, mo.loser_key ? "    " : "  n ", SPI_OK_INSERT);
		}
	}
}
