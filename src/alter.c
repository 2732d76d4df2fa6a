/*
 * alter.c — the fill of fields added to a mirror (sync.alter_mirror): the
 * rows the table has get the new fields by a backfill of only those fields
 * plus ID and stamp, through the provider's own pull_page on a reduced
 * mirror (Salesforce: a SOQL field list of three; HubSpot: three
 * properties; NetSuite: three SuiteQL columns), with a cursor of its own
 * (sync.fill).  Each page is applied as an UPDATE of the new columns only,
 * matched by remote ID: no row is inserted or deleted, no other column or
 * stamp is touched, nothing is captured.  A row whose stamp is newer than
 * the record's (an incremental pull brought it, new fields included) or
 * that has a pending local write of a new column is left alone.
 *
 *   [load mirror and fill cursor, commit] -> HTTP -> [update rows + advance, commit]
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "capture.h"
#include "conn.h"
#include "drift.h"
#include "engine_int.h"
#include "pause.h"

/* pages of one mirror's fill per worker round: pulls and pushes come first */
#define FILL_PAGES_PER_ROUND 10

/*
 * The mirror reduced to its ID, stamp and the fields being filled (those
 * still mapped and written from the remote).  NULL if none is left.
 */
static SyncMirror *
fill_reduce(SyncMirror *m, Datum fields)
{
	EngineMirror *fm = palloc(sizeof(EngineMirror));
	SyncMirror *r = &fm->base;
	Datum	   *elems;
	int			nelems,
				ndata = 0,
				i,
				k;

	*fm = *engine_mirror(m);
	deconstruct_array(DatumGetArrayTypeP(fields), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, NULL, &nelems);
	r->fields = palloc0(sizeof(SyncField) * Max(1, m->nfields));
	r->columns = palloc0(sizeof(char *) * Max(1, m->nfields));
	r->authority = palloc0(sizeof(char *) * Max(1, m->nfields));
	r->nfields = 0;
	for (i = 0; i < m->nfields; i++)
	{
		bool		take = m->fields[i].role != FIELD_DATA;

		for (k = 0; !take && k < nelems; k++)
		{
			char	   *name = TextDatumGetCString(elems[k]);

			take = strcmp(name, m->fields[i].remote_name) == 0 &&
				strcmp(m->authority[i], "local") != 0;
		}
		if (!take)
			continue;
		if (m->fields[i].role == FIELD_DATA)
			ndata++;
		r->fields[r->nfields] = m->fields[i];
		r->columns[r->nfields] = m->columns[i];
		r->authority[r->nfields++] = m->authority[i];
	}
	return ndata > 0 ? r : NULL;
}

/* One page applied: the UPDATE of the filled columns, as the table's owner. */
typedef struct FillApply
{
	SyncMirror *m;
	const char *sql;
	int			nparams;
	Oid		   *types;
	Datum	   *values;
	int64		updated;
} FillApply;

static void
fill_apply_step(void *arg)
{
	FillApply  *f = (FillApply *) arg;
	OwnerScope	os;
	int			saved = sync_applying_mirror;

	owner_begin(f->m->owner, &os);
	sync_applying_mirror = f->m->id;
	PG_TRY();
	{
		spi_exec(f->sql, f->nparams, f->types, f->values, NULL, SPI_OK_UPDATE);
		f->updated = (int64) SPI_processed;
	}
	PG_FINALLY();
	{
		sync_applying_mirror = saved;
	}
	PG_END_TRY();
	owner_end(&os);
}

/*
 * UPDATE t SET c = u.fK::type, ... FROM the page's arrays u WHERE t.rid =
 * u.rid and the row is not newer, nor among the keys of the last parameter
 * (rows with a pending write of those columns: read from sync.outbox by the
 * engine, not by the table's owner).  *cols_out: the columns, as a list of
 * literals.
 */
static char *
fill_sql(SyncMirror *r, char **cols_out)
{
	StringInfoData s,
				set,
				un,
				names,
				cols;
	int			i,
				p = 3;

	initStringInfo(&s);
	initStringInfo(&set);
	initStringInfo(&un);
	initStringInfo(&names);
	initStringInfo(&cols);
	for (i = 0; i < r->nfields; i++)
	{
		const char *col = quote_identifier(r->columns[i]);

		if (r->fields[i].role != FIELD_DATA)
			continue;
		appendStringInfo(&set, "%s%s = u.f%d::%s", set.len ? ", " : "", col, p, r->fields[i].local_type);
		appendStringInfo(&un, ", pg_catalog.unnest($%d::pg_catalog.text[])", p);
		appendStringInfo(&names, ", f%d", p);
		appendStringInfo(&cols, "%s%s", cols.len ? ", " : "", quote_literal_cstr(r->columns[i]));
		p++;
	}
	appendStringInfo(&s,
					 "UPDATE %s AS t SET %s "
					 "FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[])%s) "
					 "  AS u(rid, stamp%s) "
					 "WHERE t.%s OPERATOR(pg_catalog.=) u.rid "
					 "  AND (t.%s IS NULL OR u.stamp IS NULL OR t.%s OPERATOR(pg_catalog.<=) u.stamp::pg_catalog.timestamptz) "
					 "  AND NOT t.%s::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($%d::pg_catalog.text[])",
					 r->qualified_table, set.data, un.data, names.data,
					 quote_identifier(r->remote_id_column),
					 quote_identifier(r->stamp_column), quote_identifier(r->stamp_column),
					 quote_identifier(r->key_column), p);
	*cols_out = cols.data;
	return s.data;
}

/* Apply a page: whole in a subtransaction; if that fails, record by record. */
static int64
fill_apply(SyncMirror *r, SyncPage *page, MemoryContext work, int64 *failed)
{
	FillApply	f;
	int			n = 0,
				i,
				k,
				p;
	char	  **col;
	int			ncols = r->nfields + 1;	/* rid, stamp, data fields, pending keys */
	char	  **rids = palloc(sizeof(char *) * Max(1, page->nrecords));
	char	  **stamps = palloc(sizeof(char *) * Max(1, page->nrecords));
	char	 ***vals = palloc(sizeof(char **) * Max(1, r->nfields));
	char	   *cols;
	Datum		pending;

	memset(&f, 0, sizeof(f));
	f.m = r;
	f.sql = fill_sql(r, &cols);
	for (k = 0; k < r->nfields; k++)
		vals[k] = palloc(sizeof(char *) * Max(1, page->nrecords));
	for (i = 0; i < page->nrecords; i++)
	{
		SyncRecord *rc = &page->records[i];

		if (rc->deleted || rc->invalid != NULL || rc->remote_id == NULL)
			continue;
		rids[n] = rc->remote_id;
		stamps[n] = rc->stamp;
		for (k = 0; k < r->nfields; k++)
			vals[k][n] = rc->values[k];
		n++;
	}
	if (n == 0)
		return 0;

	/* rows with a pending local write of the filled columns keep it */
	{
		Oid			t[1] = {INT4OID};
		Datum		a[1] = {Int32GetDatum(r->id)};
		char	  **keys;
		int			nkeys,
					j;

		(void) capture_fold(r->id, true, -1);	/* captured writes are pending too */
		spi_exec(psprintf("SELECT DISTINCT local_key FROM sync.outbox WHERE mirror OPERATOR(pg_catalog.=) $1 "
						  "AND op OPERATOR(pg_catalog.<>) 'D' AND (columns IS NULL "
						  "OR columns OPERATOR(pg_catalog.&&) ARRAY[%s]::pg_catalog.name[])", cols),
				 1, t, a, NULL, SPI_OK_SELECT);
		nkeys = (int) SPI_processed;
		keys = palloc(sizeof(char *) * Max(1, nkeys));
		for (j = 0; j < nkeys; j++)
			keys[j] = getv(j, 1);
		pending = text_array(keys, nkeys);
	}
	f.types = palloc(sizeof(Oid) * ncols);
	f.values = palloc(sizeof(Datum) * ncols);
	f.nparams = 2;
	f.types[0] = f.types[1] = TEXTARRAYOID;
	f.values[0] = text_array(rids, n);
	f.values[1] = text_array(stamps, n);
	for (k = 0; k < r->nfields; k++)
		if (r->fields[k].role == FIELD_DATA)
		{
			f.types[f.nparams] = TEXTARRAYOID;
			f.values[f.nparams++] = text_array(vals[k], n);
		}
	f.types[f.nparams] = TEXTARRAYOID;
	f.values[f.nparams++] = pending;
	if (in_subxact(fill_apply_step, &f, work, NULL))
		return f.updated;

	/* one by one: a value the column refuses leaves that row as it was */
	col = palloc(sizeof(char *));
	{
		int64		total = 0;

		for (i = 0; i < n; i++)
		{
			FillApply	one = f;
			ErrorData  *e = NULL;

			one.values = palloc(sizeof(Datum) * ncols);
			col[0] = rids[i];
			one.values[0] = text_array(col, 1);
			col[0] = stamps[i];
			one.values[1] = text_array(col, 1);
			for (k = 0, p = 2; k < r->nfields; k++)
				if (r->fields[k].role == FIELD_DATA)
				{
					col[0] = vals[k][i];
					one.values[p++] = text_array(col, 1);
				}
			one.values[p] = pending;
			if (in_subxact(fill_apply_step, &one, work, &e))
				total += one.updated;
			else
			{
				Oid			t[3] = {INT4OID, TEXTOID, TEXTOID};
				Datum		a[3] = {Int32GetDatum(r->id), CStringGetTextDatum(rids[i]),
				CStringGetTextDatum(psprintf("filling added fields: %s", error_text(e)))};

				(*failed)++;
				spi_exec("INSERT INTO sync.journal (mirror, direction, op, remote_id, result, detail) "
						 "VALUES ($1, 'in', 'U', $2, 'rejected', $3)", 3, t, a, NULL, SPI_OK_INSERT);
			}
		}
		return total;
	}
}

/*
 * Fill one mirror's added fields, at most max_pages pages; *more: the fill
 * has pages left that are ready now.  A pause stops it before its next
 * page, as it stops a pull.  Returns the rows updated.
 */
int64
fill_mirror(int mirror_id, bool own, MemoryContext work, int max_pages, bool *more)
{
	MemoryContext pagecxt = AllocSetContextCreate(work, "sync fill page", ALLOCSET_DEFAULT_SIZES);
	int64		total = 0;
	int64		failed = 0;
	int			pages;

	*more = false;
	for (pages = 0; pages < max_pages; pages++)
	{
		SyncMirror *m;
		SyncMirror *r;
		SyncConnection *conn;
		SyncPage   *page;
		SJson	   *cursor = NULL;
		char	   *connection;
		bool		isnull;
		Datum		fields;
		Oid			t[4] = {INT4OID, TEXTOID, INT8OID, BOOLOID};
		Datum		a[4];
		char		nl[4] = {' ', ' ', ' ', ' '};
		int64		n;
		MemoryContext old;

		MemoryContextReset(pagecxt);
		xact_begin(own);
		/* paused since the last page: stop before the next request (pause.h) */
		if (pause_mirror_paused(mirror_id))
		{
			xact_end(own);
			break;
		}
		a[0] = Int32GetDatum(mirror_id);
		spi_exec("SELECT fields, cursor::pg_catalog.text FROM sync.fill WHERE mirror OPERATOR(pg_catalog.=) $1 FOR UPDATE",
				 1, t, a, NULL, SPI_OK_SELECT);
		if (SPI_processed != 1)
		{
			xact_end(own);
			break;
		}
		old = MemoryContextSwitchTo(pagecxt);
		fields = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		fields = PointerGetDatum(DatumGetArrayTypePCopy(fields));
		if (getv(0, 2) != NULL)
		{
			char	   *err;
			char	   *text = getv(0, 2);

			cursor = sjson_parse(text, strlen(text), &err);
		}
		MemoryContextSwitchTo(old);
		m = mirror_load(mirror_id, pagecxt, &connection);
		old = MemoryContextSwitchTo(pagecxt);
		r = m->direction == 'p' ? NULL : fill_reduce(m, fields);
		MemoryContextSwitchTo(old);
		if (r == NULL)
		{
			/* nothing left to fill (fields dropped, local authority, push-only) */
			spi_exec("DELETE FROM sync.fill WHERE mirror OPERATOR(pg_catalog.=) $1", 1, t, a, NULL, SPI_OK_DELETE);
			xact_end(own);
			break;
		}
		conn = conn_get(connection);
		xact_end(own);

		/* the network, outside any transaction (in the worker) */
		old = MemoryContextSwitchTo(pagecxt);
		page = palloc0(sizeof(SyncPage));
		page->total = -1;
		conn->provider->pull_page(conn, r, cursor, page);
		MemoryContextSwitchTo(old);

		xact_begin(own);
		old = MemoryContextSwitchTo(pagecxt);
		n = fill_apply(r, page, pagecxt, &failed);
		MemoryContextSwitchTo(old);
		total += n;
		if (page->cursor)
			a[1] = CStringGetTextDatum(sjson_serialize(page->cursor));
		else
			nl[1] = 'n';
		a[2] = Int64GetDatum(n);
		a[3] = BoolGetDatum(page->backfill_done);
		spi_exec("WITH f AS (UPDATE sync.fill SET cursor = $2::pg_catalog.jsonb, "
				 "  filled = filled OPERATOR(pg_catalog.+) $3, last_error = NULL "
				 "  WHERE mirror OPERATOR(pg_catalog.=) $1 RETURNING mirror, fields, filled, started_at) "
				 "INSERT INTO sync.journal (mirror, direction, op, fields, result, detail) "
				 "SELECT f.mirror, 'in', 'U', f.fields, 'ok', "
				 "  pg_catalog.format('filled added fields: %s rows updated since %s', f.filled, f.started_at) "
				 "FROM f WHERE $4",
				 4, t, a, nl, SPI_OK_INSERT);
		if (page->backfill_done)
			spi_exec("DELETE FROM sync.fill WHERE mirror OPERATOR(pg_catalog.=) $1", 1, t, a, NULL, SPI_OK_DELETE);
		save_usage(conn);
		xact_end(own);

		if (page->backfill_done || !page->more)
			break;
		if (pages + 1 == max_pages)
			*more = true;
		CHECK_FOR_INTERRUPTS();
	}
	MemoryContextDelete(pagecxt);
	return total;
}

/*
 * The worker's part of a round: every mirror with a fill, a few pages
 * each; an error is recorded against the mirror.  A paused mirror's fill
 * (pause.h) waits for its resume.  Returns whether more pages are ready
 * now.
 */
bool
fill_round(MemoryContext work)
{
	MemoryContext cxt = AllocSetContextCreate(work, "sync fill", ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	int		   *ids;
	int			n,
				i;
	bool		more = false;

	xact_begin(true);
	spi_exec("SELECT f.mirror FROM " DUE_FILL_SQL " AND " PAUSE_MIRROR_ACTIVE_SQL " ORDER BY f.mirror",
			 0, NULL, NULL, NULL, SPI_OK_SELECT);
	n = (int) SPI_processed;
	ids = MemoryContextAlloc(cxt, sizeof(int) * Max(1, n));
	for (i = 0; i < n; i++)
		ids[i] = atoi(getv(i, 1));
	xact_end(true);

	for (i = 0; i < n; i++)
	{
		MemoryContext mcxt = AllocSetContextCreate(cxt, "sync fill mirror", ALLOCSET_DEFAULT_SIZES);

		MemoryContextSwitchTo(mcxt);
		PG_TRY();
		{
			bool		m_more = false;

			fill_mirror(ids[i], true, mcxt, FILL_PAGES_PER_ROUND, &m_more);
			if (m_more)
				more = true;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			AbortCurrentTransaction();
			ereport(LOG,
					(errmsg("sync: mirror %d: filling added fields failed: %s", ids[i], edata->message),
					 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
			{
				Oid			t[2] = {INT4OID, TEXTOID};
				Datum		a[2] = {Int32GetDatum(ids[i]), CStringGetTextDatum(error_text(edata))};

				/* shown in sync.fill; tried again in a minute */
				xact_begin(true);
				spi_exec("UPDATE sync.fill SET last_error = $2, "
						 "next_attempt_at = pg_catalog.now() OPERATOR(pg_catalog.+) '1 minute'::pg_catalog.interval "
						 "WHERE mirror OPERATOR(pg_catalog.=) $1", 2, t, a, NULL, SPI_OK_UPDATE);
				xact_end(true);
			}
		}
		PG_END_TRY();
		MemoryContextSwitchTo(cxt);
		MemoryContextDelete(mcxt);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return more;
}
