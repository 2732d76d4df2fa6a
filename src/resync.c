/*
 * resync.c — sync.resync(local_table, repair): compare a mirrored table
 * with the remote, and optionally repair what differs.
 *
 * The remote is read like a backfill that is never applied: the provider's
 * pull_page from a NULL cursor, one page in memory at a time (the mirror's
 * own cursor is not touched).  Each page is compared with the local rows of
 * its remote IDs in one statement, as the table's owner: every data field's
 * remote value, converted to the column's type as the apply would, against
 * the column (IS DISTINCT FROM, the apply's own test of "changed").  A row
 * whose stamp is newer than the page's record was pulled meanwhile and is
 * not compared.  Rows with entries in sync.outbox are "pending", not
 * "different": their changes are on the way.  The remote IDs seen are kept
 * in a temporary table (not in memory), and at the end the local rows whose
 * remote ID was not seen are re-read by ID (the provider's fetch): those the
 * remote no longer has are "only_local"; the others (created or changed
 * while the scan ran) are compared like a page.  Local rows without a
 * remote ID are pending creates when queued, else "only_local" too.
 *
 * Which side is newer comes from the stamps: a record whose stamp is newer
 * than the row's (and is not the echo of our own last push of it) changed
 * remotely after the row's last sync — the change a pull has not applied
 * yet; equal stamps and different values mean the row changed locally
 * without being captured (replica mode, a restore, triggers disabled).
 *
 * Repair follows the mirror's policies, field by field: a differing field
 * takes the remote's value through the engine's own apply (apply_page: echo
 * suppression, the owner's rights, sync.inbound_error for what the table
 * refuses, journal) where its authority is "remote", where the remote does
 * not let us write it, for a pull-only mirror, under "remote_wins", and
 * where the remote's version is the newer; otherwise (and always for
 * authority "local") the local value is queued in sync.outbox as capture
 * would queue it, for the worker (or sync.push()) to send.  Records only the
 * remote has are applied (inserted); rows whose record the remote deleted
 * are handed to the apply as remote deletes, so the mirror's "delete"
 * option decides what happens to them; rows never sent are queued as
 * creates.
 *
 * The whole run is one transaction (the caller's).  Progress shows in
 * pg_stat_activity.query of the backend while it runs; the result is
 * returned and journaled (sync.journal, op 'R').
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "capture.h"
#include "conn.h"
#include "engine_int.h"
#include "lifecycle.h"
#include "pause.h"
#include "provider.h"

PG_FUNCTION_INFO_V1(sync_resync);

#define RESYNC_SAMPLES		10
#define RESYNC_CHUNK		5000	/* local rows per only_local step */
#define RESYNC_FETCH_MAX	200		/* IDs per fetch call */

/* One kind of finding: its count and its first few samples (JSON objects). */
typedef struct Finding
{
	int64		count;
	int			nsamples;
	StringInfoData samples;
} Finding;

typedef struct Resync
{
	SyncMirror *m;
	SyncConnection *conn;
	bool		repair;
	MemoryContext cxt;			/* the whole run */
	char	   *compare_sql;	/* the per-page comparison (see compare_sql) */
	int		   *data_fields;	/* the fields compared: index into m->fields */
	int			ndata;
	bool	   *remote_side;	/* per field: the remote's value wins */

	/* findings */
	Finding		only_local;
	Finding		only_remote;
	Finding		different;
	int64		pending;
	int64		same;
	int64		remote_records;
	int64		remote_total;	/* as the remote announced it; -1: unknown */
	int64		pages;

	/* repairs */
	int64		applied;
	int64		deleted;
	int64		failed;
	int64		queued_updates;
	int64		queued_creates;
	int64		not_repaired;
} Resync;

/* ---------------------------------------------------------------------
 * findings and the report
 * --------------------------------------------------------------------- */

static void
finding_init(Finding *f)
{
	f->count = 0;
	f->nsamples = 0;
	initStringInfo(&f->samples);
}

static void
json_field(StringInfo buf, const char *key, const char *value, bool first)
{
	if (!first)
		appendStringInfoString(buf, ", ");
	escape_json(buf, key);
	appendStringInfoString(buf, ": ");
	if (value == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, value);
}

/*
 * Count a finding, and keep it as a sample while there are fewer than
 * RESYNC_SAMPLES: {"key", "remote_id"[, "columns", "newer"]}; without
 * columns, `newer` is why the record cannot be compared ("invalid").
 */
static void
finding_add(Resync *rs, Finding *f, const char *key, const char *remote_id,
			char **columns, int ncolumns, const char *newer)
{
	MemoryContext old;
	int			i;

	f->count++;
	if (f->nsamples >= RESYNC_SAMPLES)
		return;
	old = MemoryContextSwitchTo(rs->cxt);
	appendStringInfoString(&f->samples, f->nsamples > 0 ? ", {" : "{");
	json_field(&f->samples, "key", key, true);
	json_field(&f->samples, "remote_id", remote_id, false);
	if (columns != NULL)
	{
		appendStringInfoString(&f->samples, ", \"columns\": [");
		for (i = 0; i < ncolumns; i++)
		{
			if (i > 0)
				appendStringInfoString(&f->samples, ", ");
			escape_json(&f->samples, columns[i]);
		}
		appendStringInfoChar(&f->samples, ']');
	}
	if (newer != NULL && columns != NULL)
		json_field(&f->samples, "newer", newer, false);
	else if (newer != NULL)
		json_field(&f->samples, "invalid", newer, false);
	appendStringInfoChar(&f->samples, '}');
	f->nsamples++;
	MemoryContextSwitchTo(old);
}

static void
finding_json(StringInfo buf, const char *name, Finding *f)
{
	escape_json(buf, name);
	appendStringInfo(buf, ": {\"count\": " INT64_FORMAT ", \"samples\": [%s]}, ",
					 f->count, f->samples.data);
}

static char *
report_json(Resync *rs)
{
	StringInfoData b;

	initStringInfo(&b);
	appendStringInfoChar(&b, '{');
	finding_json(&b, "only_local", &rs->only_local);
	finding_json(&b, "only_remote", &rs->only_remote);
	finding_json(&b, "different", &rs->different);
	appendStringInfo(&b, "\"pending\": " INT64_FORMAT ", \"same\": " INT64_FORMAT
					 ", \"remote_records\": " INT64_FORMAT ", \"pages\": " INT64_FORMAT,
					 rs->pending, rs->same, rs->remote_records, rs->pages);
	appendStringInfo(&b, ", \"repair\": %s", rs->repair ? "true" : "false");
	if (rs->repair)
	{
		appendStringInfo(&b, ", \"repaired\": {\"applied\": " INT64_FORMAT ", \"deleted\": " INT64_FORMAT
						 ", \"failed\": " INT64_FORMAT ", \"queued_updates\": " INT64_FORMAT
						 ", \"queued_creates\": " INT64_FORMAT ", \"not_repaired\": " INT64_FORMAT "}",
						 rs->applied, rs->deleted, rs->failed, rs->queued_updates,
						 rs->queued_creates, rs->not_repaired);
		if (rs->queued_updates + rs->queued_creates > 0)
			appendStringInfo(&b, ", \"worker\": \"" INT64_FORMAT " local version(s) were queued in sync.outbox: "
							 "the worker sends them at its next round (or call sync.push()); "
							 "sync.status shows the backlog\"",
							 rs->queued_updates + rs->queued_creates);
		if (rs->failed > 0)
			appendStringInfoString(&b, ", \"errors\": \"records the table refused are in sync.errors\"");
	}
	appendStringInfoChar(&b, '}');
	return b.data;
}

/* Progress, visible in pg_stat_activity.query of this backend. */
static void
report_progress(Resync *rs, const char *phase)
{
	char	   *of = rs->remote_total >= 0 ? psprintf(" of " INT64_FORMAT, rs->remote_total) : "";
	char	   *text = psprintf("sync.resync(%s): %s; " INT64_FORMAT " pages, " INT64_FORMAT
							   "%s remote records compared, " INT64_FORMAT " different, " INT64_FORMAT
							   " only remote, " INT64_FORMAT " only local, " INT64_FORMAT " pending",
							   rs->m->qualified_table, phase, rs->pages, rs->remote_records, of,
							   rs->different.count, rs->only_remote.count, rs->only_local.count,
							   rs->pending);

	pgstat_report_activity(STATE_RUNNING, text);
	pfree(text);
}

/* ---------------------------------------------------------------------
 * policies
 * --------------------------------------------------------------------- */

/*
 * Which side wins a field that differs: the remote where it is the
 * field's authority, where we may not write it remotely, for a pull-only
 * mirror and under "remote_wins"; else the local value (it is pushed).
 */
static void
decide_sides(Resync *rs)
{
	SyncMirror *m = rs->m;
	bool		remote_wins = engine_mirror(m)->conflict == CONFLICT_REMOTE_WINS;
	int			k;

	rs->remote_side = MemoryContextAllocZero(rs->cxt, sizeof(bool) * Max(1, m->nfields));
	for (k = 0; k < m->nfields; k++)
	{
		const char *auth = m->authority[k];

		if (strcmp(auth, "remote") == 0)
			rs->remote_side[k] = true;
		else if (strcmp(auth, "local") == 0)
			rs->remote_side[k] = false;
		else
			rs->remote_side[k] = remote_wins || m->direction == 'l';
		if (!m->fields[k].updateable)
			rs->remote_side[k] = true;
		if (m->direction == 'l')
			rs->remote_side[k] = true;
	}
}

/*
 * Does the remote's value of differing field k win for this row?  Where
 * the policy says so (above), and where the remote changed the record
 * after the row's last sync and nothing local is pending: that is the
 * change a pull would have applied (the row's value is the older one).  A
 * field whose authority is "local" is never taken from the remote.
 */
static bool
remote_value_wins(Resync *rs, int k, bool remote_newer)
{
	if (strcmp(rs->m->authority[k], "local") == 0 && rs->m->direction != 'l')
		return false;
	return rs->remote_side[k] || remote_newer;
}

/* ---------------------------------------------------------------------
 * comparing a page
 * --------------------------------------------------------------------- */

/*
 * The comparison of a page's records with their rows, run as the owner:
 * $1 record numbers (int4[]), $2 remote IDs, $3 stamps, $4.. one text[] per
 * data field.  Returns per record: its number, the row's key (NULL: no
 * row), whether the row's stamp is newer than the record's, whether the
 * record's is newer than the row's, and the names of the data columns
 * whose value differs.  The remote's text is converted to the field's type
 * and then to the column's type, as the apply's insert does, and compared
 * by IS DISTINCT FROM, as the apply's update does.
 */
static char *
compare_sql(Resync *rs)
{
	SyncMirror *m = rs->m;
	StringInfoData s,
				un,
				names;
	int			i;

	initStringInfo(&s);
	initStringInfo(&un);
	initStringInfo(&names);
	rs->data_fields = MemoryContextAlloc(rs->cxt, sizeof(int) * Max(1, m->nfields));
	rs->ndata = 0;
	for (i = 0; i < m->nfields; i++)
		if (m->fields[i].role == FIELD_DATA)
			rs->data_fields[rs->ndata++] = i;

	appendStringInfo(&s, "SELECT u.i, t.%s::pg_catalog.text, "
					 "COALESCE(t.%s OPERATOR(pg_catalog.>) u.stamp::pg_catalog.timestamptz, false), "
					 "CASE WHEN u.stamp IS NULL THEN false "
					 "  ELSE COALESCE(u.stamp::pg_catalog.timestamptz OPERATOR(pg_catalog.>) t.%s, true) END, "
					 "pg_catalog.array_remove(ARRAY[NULL::pg_catalog.text",
					 quote_identifier(m->key_column), quote_identifier(m->stamp_column),
					 quote_identifier(m->stamp_column));
	for (i = 0; i < rs->ndata; i++)
	{
		int			k = rs->data_fields[i];
		char	   *coltype;

		spi_exec("SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a "
				 "WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name "
				 "AND NOT a.attisdropped",
				 2, (Oid[]) {OIDOID, TEXTOID},
				 (Datum[]) {ObjectIdGetDatum(m->relid), CStringGetTextDatum(m->columns[k])},
				 NULL, SPI_OK_SELECT);
		if (SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of %s, mapped to remote field \"%s\", does not exist",
							m->columns[k], m->qualified_table, m->fields[k].remote_name),
					 errhint("Map the field again with sync.mirror(), or add the column.")));
		coltype = getv(0, 1);
		appendStringInfo(&s, ", CASE WHEN t.%s IS DISTINCT FROM u.f%d::%s::%s THEN %s END",
						 quote_identifier(m->columns[k]), i, m->fields[k].local_type, coltype,
						 quote_literal_cstr(m->columns[k]));
		appendStringInfo(&un, ", pg_catalog.unnest($%d::pg_catalog.text[])", i + 4);
		appendStringInfo(&names, ", f%d", i);
	}
	appendStringInfo(&s, "], NULL) FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int4[]), "
					 "pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.text[])%s) "
					 "AS u(i, rid, stamp%s) "
					 "LEFT JOIN %s t ON t.%s OPERATOR(pg_catalog.=) u.rid",
					 un.data, names.data, m->qualified_table, quote_identifier(m->remote_id_column));
	return s.data;
}

/* What the comparison found for one record. */
typedef struct Verdict
{
	char		kind;			/* 's' same, 'r' only remote, 'd' different, 'p' pending, 'x' skipped */
	char	   *key;
	char	  **columns;		/* differing columns */
	int			ncolumns;
	bool		broken;			/* a value does not convert: compared as wholly different */
	bool		remote_newer;	/* the remote changed the record after the row's last sync */
} Verdict;

/* One comparison: the records `which` of a page; their verdicts in v. */
typedef struct CompareStep
{
	Resync	   *rs;
	SyncPage   *page;
	int		   *which;			/* record numbers to compare */
	int			n;
	Verdict    *v;
	MemoryContext cxt;			/* for the verdicts */
} CompareStep;

static void read_verdicts(Resync *rs, Verdict *v, MemoryContext cxt);

static void
compare_step(void *arg)
{
	CompareStep *c = (CompareStep *) arg;
	Resync	   *rs = c->rs;
	SyncMirror *m = rs->m;
	int			nparams = 3 + rs->ndata;
	Oid		   *types = palloc(sizeof(Oid) * nparams);
	Datum	   *args = palloc(sizeof(Datum) * nparams);
	Datum	   *nums = palloc(sizeof(Datum) * Max(1, c->n));
	char	  **col = palloc(sizeof(char *) * Max(1, c->n));
	OwnerScope	os;
	int			i,
				k;

	for (i = 0; i < c->n; i++)
		nums[i] = Int32GetDatum(c->which[i]);
	types[0] = INT4ARRAYOID;
	args[0] = PointerGetDatum(construct_array(nums, c->n, INT4OID, 4, true, TYPALIGN_INT));
	for (i = 0; i < c->n; i++)
		col[i] = c->page->records[c->which[i]].remote_id;
	types[1] = TEXTARRAYOID;
	args[1] = text_array(col, c->n);
	for (i = 0; i < c->n; i++)
		col[i] = c->page->records[c->which[i]].stamp;
	types[2] = TEXTARRAYOID;
	args[2] = text_array(col, c->n);
	for (k = 0; k < rs->ndata; k++)
	{
		for (i = 0; i < c->n; i++)
			col[i] = c->page->records[c->which[i]].values[rs->data_fields[k]];
		types[3 + k] = TEXTARRAYOID;
		args[3 + k] = text_array(col, c->n);
	}
	owner_begin(m->owner, &os);

	/*
	 * A probe of the remote-ID index per record, never a scan of the table
	 * per page (as the apply's row lookup; undone by owner_end).
	 */
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	spi_exec(rs->compare_sql, nparams, types, args, NULL, SPI_OK_SELECT);
	owner_end(&os);
	read_verdicts(rs, c->v, c->cxt);
}

static void
read_verdicts(Resync *rs, Verdict *v, MemoryContext cxt)
{
	uint64		r;

	for (r = 0; r < SPI_processed; r++)
	{
		int			i = atoi(getv(r, 1));
		char	   *key = getv(r, 2);
		bool		newer = strcmp(getv(r, 3), "t") == 0;
		bool		isnull;
		Datum		arr = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 5, &isnull);
		MemoryContext old = MemoryContextSwitchTo(cxt);

		v[i].key = key ? pstrdup(key) : NULL;
		v[i].remote_newer = strcmp(getv(r, 4), "t") == 0;
		if (key == NULL)
			v[i].kind = 'r';
		else if (newer)
			v[i].kind = 's';	/* pulled meanwhile: the row is newer than this page */
		else
		{
			Datum	   *elems;
			int			n,
						j;

			deconstruct_array(DatumGetArrayTypeP(arr), TEXTOID, -1, false, TYPALIGN_INT,
							  &elems, NULL, &n);
			v[i].ncolumns = n;
			v[i].columns = palloc(sizeof(char *) * Max(1, n));
			for (j = 0; j < n; j++)
				v[i].columns[j] = TextDatumGetCString(elems[j]);
			v[i].kind = n > 0 ? 'd' : 's';
		}
		MemoryContextSwitchTo(old);
	}
}

/*
 * Compare a page: all of it in one statement; if a value does not convert
 * (the remote sent something the column cannot hold), record by record, and
 * such a record counts as different in every column (the apply sets it
 * aside with the table's words).
 */
static Verdict *
compare_page(Resync *rs, SyncPage *page, MemoryContext cxt)
{
	Verdict    *v = palloc0(sizeof(Verdict) * Max(1, page->nrecords));
	int		   *which = palloc(sizeof(int) * Max(1, page->nrecords));
	int			n = 0,
				i;
	CompareStep c;

	for (i = 0; i < page->nrecords; i++)
	{
		SyncRecord *r = &page->records[i];

		v[i].kind = 'x';
		if (r->deleted || r->remote_id == NULL)
			continue;
		if (r->invalid != NULL)
		{
			/* a value the remote sent broken: different, whatever the row */
			v[i].kind = 'd';
			v[i].broken = true;
		}
		else
			which[n++] = i;
	}
	if (n == 0)
		return v;
	c.rs = rs;
	c.page = page;
	c.which = which;
	c.n = n;
	c.v = v;
	c.cxt = cxt;
	if (in_subxact(compare_step, &c, cxt, NULL))
		return v;
	for (i = 0; i < n; i++)
	{
		int			one = which[i];

		c.which = &one;
		c.n = 1;
		if (!in_subxact(compare_step, &c, cxt, NULL))
		{
			v[one].kind = 'd';
			v[one].broken = true;
		}
	}
	return v;
}

/* Which of these rows (keys) have entries in sync.outbox: marked 'p'. */
static void
mark_pending(Resync *rs, SyncPage *page, Verdict *v)
{
	char	  **keys = palloc(sizeof(char *) * Max(1, page->nrecords));
	int			n = 0,
				i;
	uint64		r;

	for (i = 0; i < page->nrecords; i++)
		if (v[i].kind == 'd' && v[i].key != NULL)
			keys[n++] = v[i].key;
	if (n == 0)
		return;
	(void) capture_fold(rs->m->id, true, -1);	/* captured writes are pending too */
	spi_exec("SELECT DISTINCT o.local_key FROM sync.outbox o WHERE o.mirror OPERATOR(pg_catalog.=) $1 "
			 "AND o.local_key OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[])",
			 2, (Oid[]) {INT4OID, TEXTARRAYOID},
			 (Datum[]) {Int32GetDatum(rs->m->id), text_array(keys, n)}, NULL, SPI_OK_SELECT);
	for (r = 0; r < SPI_processed; r++)
	{
		char	   *key = getv(r, 1);

		for (i = 0; i < page->nrecords; i++)
			if (v[i].kind == 'd' && v[i].key != NULL && strcmp(v[i].key, key) == 0)
				v[i].kind = 'p';
	}
}

/*
 * A record newer than its row may be only the echo of our own last push of
 * the row (its stamp is not newer than that push, as the apply judges it):
 * then the remote changed nothing, and the row's values are the newer ones.
 */
static void
mark_echoes(Resync *rs, SyncPage *page, Verdict *v)
{
	char	  **rids = palloc(sizeof(char *) * Max(1, page->nrecords));
	char	  **stamps = palloc(sizeof(char *) * Max(1, page->nrecords));
	int			n = 0,
				i;
	uint64		r;

	for (i = 0; i < page->nrecords; i++)
		if (v[i].kind == 'd' && v[i].remote_newer && !v[i].broken)
		{
			rids[n] = page->records[i].remote_id;
			stamps[n++] = page->records[i].stamp;
		}
	if (n == 0)
		return;
	spi_exec("SELECT u.rid FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.text[]), "
			 "pg_catalog.unnest($3::pg_catalog.text[])) AS u(rid, stamp) "
			 "WHERE u.stamp::pg_catalog.timestamptz OPERATOR(pg_catalog.<=) "
			 "  (SELECT pg_catalog.max(j.at) FROM sync.journal j WHERE j.mirror OPERATOR(pg_catalog.=) $1 "
			 "    AND j.remote_id OPERATOR(pg_catalog.=) u.rid AND j.direction OPERATOR(pg_catalog.=) 'out' "
			 "    AND j.result OPERATOR(pg_catalog.=) 'ok')",
			 3, (Oid[]) {INT4OID, TEXTARRAYOID, TEXTARRAYOID},
			 (Datum[]) {Int32GetDatum(rs->m->id), text_array(rids, n), text_array(stamps, n)},
			 NULL, SPI_OK_SELECT);
	for (r = 0; r < SPI_processed; r++)
	{
		char	   *rid = getv(r, 1);

		for (i = 0; i < page->nrecords; i++)
			if (v[i].kind == 'd' && strcmp(page->records[i].remote_id, rid) == 0)
				v[i].remote_newer = false;
	}
}

/* Remember the page's remote IDs as seen (the temporary table). */
static void
mark_seen(SyncPage *page)
{
	char	  **ids = palloc(sizeof(char *) * Max(1, page->nrecords));
	int			n = 0,
				i;

	for (i = 0; i < page->nrecords; i++)
		if (!page->records[i].deleted && page->records[i].remote_id != NULL)
			ids[n++] = page->records[i].remote_id;
	if (n == 0)
		return;
	spi_exec("INSERT INTO pg_temp.sync_resync_seen (rid) SELECT pg_catalog.unnest($1::pg_catalog.text[]) "
			 "ON CONFLICT DO NOTHING",
			 1, (Oid[]) {TEXTARRAYOID}, (Datum[]) {text_array(ids, n)}, NULL, SPI_OK_INSERT);
}

/* ---------------------------------------------------------------------
 * repairs
 * --------------------------------------------------------------------- */

/*
 * Queue a local version for the worker, as the capture trigger would: the
 * row's open entry (slot 0) is created or widened (op 'I': all columns).
 */
static void
queue_write(Resync *rs, const char *key, char op, char **columns, int ncolumns, const char *remote_id)
{
	Datum		a[5];
	char		n[5] = {' ', ' ', ' ', ' ', ' '};

	a[0] = Int32GetDatum(rs->m->id);
	a[1] = CStringGetTextDatum(key);
	a[2] = CharGetDatum(op);
	if (columns != NULL)
	{
		Datum	   *names = palloc(sizeof(Datum) * Max(1, ncolumns));
		int			i;

		for (i = 0; i < ncolumns; i++)
			names[i] = DirectFunctionCall1(namein, CStringGetDatum(columns[i]));
		a[3] = PointerGetDatum(construct_array(names, ncolumns, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR));
	}
	else
		n[3] = 'n';
	if (remote_id != NULL)
		a[4] = CStringGetTextDatum(remote_id);
	else
		n[4] = 'n';
	spi_exec(OUTBOX_QUEUE_SQL, 5, (Oid[]) {INT4OID, TEXTOID, CHAROID, NAMEARRAYOID, TEXTOID}, a, n, SPI_OK_INSERT);
}

/* The local side of a differing row: its pushable differing columns queued. */
static bool
queue_local_side(Resync *rs, const char *key, const char *remote_id, Verdict *v)
{
	SyncMirror *m = rs->m;
	char	  **cols = palloc(sizeof(char *) * Max(1, v->ncolumns));
	int			n = 0,
				i,
				k;

	if (m->direction == 'l' || v->broken)
		return false;
	for (i = 0; i < v->ncolumns; i++)
		for (k = 0; k < m->nfields; k++)
			if (strcmp(m->columns[k], v->columns[i]) == 0 &&
				!remote_value_wins(rs, k, v->remote_newer))
				cols[n++] = v->columns[i];
	if (n == 0)
		return false;
	queue_write(rs, key, 'U', cols, n, remote_id);
	rs->queued_updates++;
	return true;
}

/* Does this differing row need the remote's version applied? */
static bool
needs_remote_side(Resync *rs, Verdict *v)
{
	SyncMirror *m = rs->m;
	int			i,
				k;

	if (m->direction == 'p')
		return false;			/* a push-only mirror never takes the remote's values */
	if (v->broken)
		return true;
	for (i = 0; i < v->ncolumns; i++)
		for (k = 0; k < m->nfields; k++)
			if (strcmp(m->columns[k], v->columns[i]) == 0 &&
				remote_value_wins(rs, k, v->remote_newer))
				return true;
	return false;
}

/*
 * Apply remote records (or remote deletes) through the engine's apply, in
 * the caller's transaction, without moving the mirror's cursor.
 */
static void
apply_remote(Resync *rs, SyncRecord *records, int nrecords, char **deleted, int ndeleted,
			 MemoryContext cxt)
{
	SyncPage   *sub;
	int64		applied = 0,
				del = 0,
				failed = 0;

	if (nrecords == 0 && ndeleted == 0)
		return;
	sub = palloc0(sizeof(SyncPage));
	sub->nrecords = nrecords;
	sub->records = records;
	sub->ndeleted_ids = ndeleted;
	sub->deleted_ids = deleted;
	sub->total = -1;
	apply_page(rs->m, sub, false, cxt, &applied, &del, &failed);
	rs->applied += applied;
	rs->deleted += del;
	rs->failed += failed;
}

/*
 * The findings of a page: counted, sampled, and repaired when asked.
 * Under "local_wins" the local side is queued first, so that the apply
 * keeps those columns' local values; under "remote_wins" the apply comes
 * first (it drops the row's open update, which the queue then re-creates
 * for the fields whose authority is "local").
 */
static void
page_findings(Resync *rs, SyncPage *page, Verdict *v, MemoryContext cxt)
{
	SyncMirror *m = rs->m;
	bool		local_first = engine_mirror(m)->conflict != CONFLICT_REMOTE_WINS;
	SyncRecord *apply = palloc(sizeof(SyncRecord) * Max(1, page->nrecords));
	bool	   *queued = palloc0(sizeof(bool) * Max(1, page->nrecords));
	int			napply = 0,
				pass,
				i;

	for (i = 0; i < page->nrecords; i++)
	{
		SyncRecord *r = &page->records[i];

		switch (v[i].kind)
		{
			case 's':
				rs->same++;
				break;
			case 'p':
				rs->pending++;
				break;
			case 'r':
				finding_add(rs, &rs->only_remote, NULL, r->remote_id, NULL, 0, NULL);
				break;
			case 'd':
				finding_add(rs, &rs->different, v[i].key, r->remote_id,
							v[i].broken ? NULL : v[i].columns, v[i].ncolumns,
							v[i].broken ? "the remote's values do not convert to the columns' types" :
							v[i].remote_newer ? "remote" : "local");
				break;
			default:
				break;
		}
	}
	if (!rs->repair)
		return;

	for (pass = 0; pass < 2; pass++)
	{
		bool		local_pass = (pass == 0) == local_first;

		if (local_pass)
		{
			for (i = 0; i < page->nrecords; i++)
				if (v[i].kind == 'd')
					queued[i] = queue_local_side(rs, v[i].key, page->records[i].remote_id, &v[i]);
			continue;
		}
		for (i = 0; i < page->nrecords; i++)
		{
			if (v[i].kind == 'r' && m->direction != 'p')
				apply[napply++] = page->records[i];
			else if (v[i].kind == 'd' && needs_remote_side(rs, &v[i]))
				apply[napply++] = page->records[i];
		}
		apply_remote(rs, apply, napply, NULL, 0, cxt);
	}
	for (i = 0; i < page->nrecords; i++)
		if ((v[i].kind == 'r' && m->direction == 'p') ||
			(v[i].kind == 'd' && !queued[i] && !needs_remote_side(rs, &v[i])))
			rs->not_repaired++;
}

/* A page from the remote (scan or fetch): compared, seen, reported, repaired. */
static void
process_page(Resync *rs, SyncPage *page, MemoryContext cxt)
{
	Verdict    *v;
	int			i;

	xact_begin(false);
	v = compare_page(rs, page, cxt);
	mark_pending(rs, page, v);
	mark_echoes(rs, page, v);
	mark_seen(page);
	for (i = 0; i < page->nrecords; i++)
		if (v[i].kind != 'x')
			rs->remote_records++;
	page_findings(rs, page, v, cxt);
	xact_end(false);
}

/* ---------------------------------------------------------------------
 * local rows the scan did not see
 * --------------------------------------------------------------------- */

/* Local rows with remote IDs after `after`, as the owner: remote ID, key. */
typedef struct LocalChunk
{
	Resync	   *rs;
	const char *after;			/* NULL: from the start */
	bool		without_id;		/* rows without a remote ID, by key */
} LocalChunk;

static void
local_chunk(LocalChunk *lc)
{
	SyncMirror *m = lc->rs->m;
	OwnerScope	os;
	char	   *sql;

	if (lc->without_id)
		sql = psprintf("SELECT NULL::pg_catalog.text, t.%s::pg_catalog.text FROM %s t WHERE t.%s IS NULL "
					   "AND ($1::pg_catalog.text IS NULL OR t.%s OPERATOR(pg_catalog.>) $1::%s) "
					   "ORDER BY t.%s LIMIT %d",
					   quote_identifier(m->key_column), m->qualified_table,
					   quote_identifier(m->remote_id_column), quote_identifier(m->key_column),
					   m->key_type, quote_identifier(m->key_column), RESYNC_CHUNK);
	else
		sql = psprintf("SELECT t.%s, t.%s::pg_catalog.text FROM %s t WHERE t.%s IS NOT NULL "
					   "AND ($1::pg_catalog.text IS NULL OR t.%s OPERATOR(pg_catalog.>) $1::pg_catalog.text) "
					   "ORDER BY t.%s LIMIT %d",
					   quote_identifier(m->remote_id_column), quote_identifier(m->key_column),
					   m->qualified_table, quote_identifier(m->remote_id_column),
					   quote_identifier(m->remote_id_column), quote_identifier(m->remote_id_column),
					   RESYNC_CHUNK);
	owner_begin(m->owner, &os);
	spi_exec(sql, 1, (Oid[]) {TEXTOID},
			 (Datum[]) {lc->after ? CStringGetTextDatum(lc->after) : (Datum) 0},
			 lc->after ? " " : "n", SPI_OK_SELECT);
	owner_end(&os);
}

/*
 * Local rows the scan did not see (rid/key, nu of them): re-read by ID, a
 * few hundred at a time.  Records the remote returns are compared like the
 * scan's; the ones it no longer has are only_local (and, repairing, follow
 * the mirror's delete policy through the apply path).
 */
static void
recheck_unseen(Resync *rs, char **rid, char **key, int nu, MemoryContext chunkcxt)
{
	SyncMirror *m = rs->m;
	const SyncProvider *p = rs->conn->provider;
	MemoryContext old;
	int			i;

	for (i = 0; i < nu; i += RESYNC_FETCH_MAX)
	{
		int			cnt = Min(RESYNC_FETCH_MAX, nu - i);
		char	  **ids;
		char	  **gone;
		int			nids = 0,
					ngone = 0,
					j,
					d;
		SyncPage   *page;

		old = MemoryContextSwitchTo(chunkcxt);
		ids = palloc(sizeof(char *) * cnt);
		page = palloc0(sizeof(SyncPage));
		page->total = -1;
		for (j = i; j < i + cnt; j++)
			if (p->valid_remote_id == NULL || p->valid_remote_id(rid[j]))
				ids[nids++] = rid[j];
		if (nids > 0 && p->fetch != NULL)
			p->fetch(rs->conn, m, ids, nids, page);
		/* deleted remotely, or (no fetch) not listed */
		gone = palloc(sizeof(char *) * (cnt + page->ndeleted_ids + page->nrecords));
		MemoryContextSwitchTo(old);
		CHECK_FOR_INTERRUPTS();

		/*
		 * A remote ID that is not even of the remote's form (typed by
		 * hand?) is reported, and left alone: no repair deletes a row
		 * for it.
		 */
		for (j = i; j < i + cnt; j++)
			if (!(p->valid_remote_id == NULL || p->valid_remote_id(rid[j])))
			{
				finding_add(rs, &rs->only_local, key[j], rid[j], NULL, 0, NULL);
				if (rs->repair)
					rs->not_repaired++;
			}

		for (d = 0; d < page->ndeleted_ids; d++)
			gone[ngone++] = page->deleted_ids[d];
		for (d = 0; d < page->nrecords; d++)
			if (page->records[d].deleted && page->records[d].remote_id != NULL)
				gone[ngone++] = page->records[d].remote_id;
		if (p->fetch == NULL)
			for (j = 0; j < nids; j++)
				gone[ngone++] = ids[j];
		if (page->nrecords > 0)
			process_page(rs, page, chunkcxt);
		for (d = 0; d < ngone; d++)
		{
			for (j = i; j < i + cnt; j++)
				if (strcmp(rid[j], gone[d]) == 0)
					finding_add(rs, &rs->only_local, key[j], rid[j], NULL, 0, NULL);
		}
		if (rs->repair && ngone > 0)
		{
			if (m->direction == 'p')
				rs->not_repaired += ngone;
			else
			{
				xact_begin(false);
				apply_remote(rs, NULL, 0, gone, ngone, chunkcxt);
				xact_end(false);
			}
		}
	}
}

/*
 * Rows without a remote ID: creates on the way (pending), or never queued
 * (only_local; repairing, queued as creates).
 */
static void
unseen_without_id(Resync *rs, MemoryContext cxt, MemoryContext chunkcxt)
{
	SyncMirror *m = rs->m;
	char	   *after = NULL;

	for (;;)
	{
		LocalChunk	lc = {rs, after, true};
		char	  **key;
		int			n,
					i;
		uint64		r;
		MemoryContext old;

		xact_begin(false);
		local_chunk(&lc);
		n = (int) SPI_processed;
		MemoryContextReset(chunkcxt);
		old = MemoryContextSwitchTo(chunkcxt);
		key = palloc(sizeof(char *) * Max(1, n));
		for (i = 0; i < n; i++)
			key[i] = getv(i, 2);
		after = n > 0 ? MemoryContextStrdup(cxt, key[n - 1]) : NULL;
		MemoryContextSwitchTo(old);
		if (n > 0)
		{
			(void) capture_fold(m->id, true, -1);	/* captured writes are pending too */
			spi_exec("SELECT x.key FROM pg_catalog.unnest($2::pg_catalog.text[]) AS x(key) "
					 "WHERE NOT EXISTS (SELECT 1 FROM sync.outbox o WHERE o.mirror OPERATOR(pg_catalog.=) $1 "
					 "  AND o.local_key OPERATOR(pg_catalog.=) x.key)",
					 2, (Oid[]) {INT4OID, TEXTARRAYOID},
					 (Datum[]) {Int32GetDatum(m->id), text_array(key, n)}, NULL, SPI_OK_SELECT);
			rs->pending += n - (int64) SPI_processed;
			old = MemoryContextSwitchTo(chunkcxt);
			{
				int			nq = (int) SPI_processed;
				char	  **q = palloc(sizeof(char *) * Max(1, nq));

				for (r = 0; r < SPI_processed; r++)
					q[r] = getv(r, 1);
				MemoryContextSwitchTo(old);
				for (i = 0; i < nq; i++)
				{
					finding_add(rs, &rs->only_local, q[i], NULL, NULL, 0, NULL);
					if (!rs->repair)
						continue;
					if (m->direction == 'l')
						rs->not_repaired++;
					else
					{
						queue_write(rs, q[i], 'I', NULL, 0, NULL);
						rs->queued_creates++;
					}
				}
			}
		}
		xact_end(false);
		if (n < RESYNC_CHUNK)
			break;
	}
}

/*
 * Local rows whose remote ID the scan did not see: re-read by ID.  Those
 * the remote no longer has are only_local (repair: a remote delete, as the
 * mirror's "delete" option says); those it has after all (created or
 * changed while the scan ran) are compared like a page.
 */
static void
unseen_rows(Resync *rs, MemoryContext cxt)
{
	MemoryContext chunkcxt = AllocSetContextCreate(cxt, "sync resync chunk", ALLOCSET_DEFAULT_SIZES);
	char	   *after = NULL;

	for (;;)
	{
		LocalChunk	lc = {rs, after, false};
		char	  **rid,
				  **key;
		int			n,
					nu = 0,
					i;
		uint64		r;
		MemoryContext old;

		xact_begin(false);
		local_chunk(&lc);
		n = (int) SPI_processed;
		MemoryContextReset(chunkcxt);
		old = MemoryContextSwitchTo(chunkcxt);
		rid = palloc(sizeof(char *) * Max(1, n));
		key = palloc(sizeof(char *) * Max(1, n));
		for (i = 0; i < n; i++)
		{
			rid[i] = getv(i, 1);
			key[i] = getv(i, 2);
		}
		after = n > 0 ? MemoryContextStrdup(cxt, rid[n - 1]) : NULL;
		MemoryContextSwitchTo(old);
		if (n > 0)
		{
			spi_exec("SELECT x.rid, x.key FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), "
					 "pg_catalog.unnest($2::pg_catalog.text[])) AS x(rid, key) "
					 "WHERE NOT EXISTS (SELECT 1 FROM pg_temp.sync_resync_seen s WHERE s.rid OPERATOR(pg_catalog.=) x.rid)",
					 2, (Oid[]) {TEXTARRAYOID, TEXTARRAYOID},
					 (Datum[]) {text_array(rid, n), text_array(key, n)}, NULL, SPI_OK_SELECT);
			old = MemoryContextSwitchTo(chunkcxt);
			for (r = 0; r < SPI_processed; r++)
			{
				rid[nu] = getv(r, 1);
				key[nu++] = getv(r, 2);
			}
			MemoryContextSwitchTo(old);
		}
		xact_end(false);

		recheck_unseen(rs, rid, key, nu, chunkcxt);
		report_progress(rs, "looking for local rows the remote does not have");
		if (n < RESYNC_CHUNK)
			break;
	}

	unseen_without_id(rs, cxt, chunkcxt);
	MemoryContextDelete(chunkcxt);
}

/* ---------------------------------------------------------------------
 * sync.resync(local_table regclass, repair boolean DEFAULT false)
 * --------------------------------------------------------------------- */

/* The temporary table of a previous run in this transaction goes. */
static void
drop_seen(void)
{
	spi_exec("SELECT 1 WHERE pg_catalog.to_regclass('pg_temp.sync_resync_seen') IS NOT NULL",
			 0, NULL, NULL, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
		spi_exec("DROP TABLE pg_temp.sync_resync_seen", 0, NULL, NULL, NULL, SPI_OK_UTILITY);
}

Datum
sync_resync(PG_FUNCTION_ARGS)
{
	Resync		rs;
	Oid			relid;
	int			id;
	char	   *connection;
	char	   *cursor_text = NULL;
	char	   *report;
	int			nestlevel;
	MemoryContext cxt,
				pagecxt,
				old;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("sync.resync: local_table must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("sync.resync: repair must not be null"),
				 errhint("Pass true to repair, false (the default) to compare only.")));
	relid = PG_GETARG_OID(0);

	lifecycle_check_sql();
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	cxt = AllocSetContextCreate(CurrentMemoryContext, "sync resync", ALLOCSET_DEFAULT_SIZES);
	pagecxt = AllocSetContextCreate(cxt, "sync resync page", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	memset(&rs, 0, sizeof(rs));
	rs.remote_total = -1;
	rs.repair = PG_GETARG_BOOL(1);
	rs.cxt = cxt;
	finding_init(&rs.only_local);
	finding_init(&rs.only_remote);
	finding_init(&rs.different);

	xact_begin(false);
	id = mirror_id_for_table(relid);
	pause_check_sql(id, "sync.resync()");
	rs.m = mirror_load(id, cxt, &connection);
	/* (inside SPI the current context is SPI's, gone at xact_end) */
	connection = MemoryContextStrdup(cxt, connection);
	rs.compare_sql = MemoryContextStrdup(cxt, compare_sql(&rs));
	decide_sides(&rs);
	/* the remote IDs seen, in a temporary table: bounded memory at any size */
	drop_seen();
	spi_exec("CREATE TEMP TABLE sync_resync_seen (rid pg_catalog.text PRIMARY KEY) ON COMMIT DROP",
			 0, NULL, NULL, NULL, SPI_OK_UTILITY);
	rs.conn = conn_get(connection);
	xact_end(false);
	report_progress(&rs, "reading the remote");

	/* the remote, page by page, as a backfill that is not applied */
	for (;;)
	{
		SyncPage   *page;
		SJson	   *cursor = NULL;
		char	   *err;

		MemoryContextReset(pagecxt);
		MemoryContextSwitchTo(pagecxt);
		if (cursor_text != NULL)
			cursor = sjson_parse(cursor_text, strlen(cursor_text), &err);
		page = palloc0(sizeof(SyncPage));
		page->total = -1;
		rs.conn->provider->pull_page(rs.conn, rs.m, cursor, page);
		MemoryContextSwitchTo(cxt);
		if (cursor_text)
			pfree(cursor_text);
		cursor_text = page->cursor ? MemoryContextStrdup(cxt, sjson_serialize(page->cursor)) : NULL;

		if (rs.pages == 0 && page->total >= 0)
			rs.remote_total = page->total;
		process_page(&rs, page, pagecxt);
		rs.pages++;
		report_progress(&rs, "reading the remote");
		if (!page->more || page->backfill_done || cursor_text == NULL)
			break;
		CHECK_FOR_INTERRUPTS();
	}
	MemoryContextReset(pagecxt);

	/* the local rows the remote did not list */
	report_progress(&rs, "looking for local rows the remote does not have");
	unseen_rows(&rs, pagecxt);

	/* the journal, and API usage */
	report = report_json(&rs);
	xact_begin(false);
	drop_seen();
	spi_exec("INSERT INTO sync.journal (mirror, direction, op, result, detail) "
			 "VALUES ($1, 'in', 'R', $2, $3)",
			 3, (Oid[]) {INT4OID, TEXTOID, TEXTOID},
			 (Datum[]) {Int32GetDatum(id), CStringGetTextDatum(rs.repair ? "repaired" : "compared"),
			 CStringGetTextDatum(report)}, NULL, SPI_OK_INSERT);
	save_usage(rs.conn);
	xact_end(false);

	pgstat_report_activity(STATE_RUNNING, debug_query_string);
	AtEOXact_GUC(false, nestlevel);
	MemoryContextSwitchTo(old);
	{
		Datum		result = DirectFunctionCall1(jsonb_in, CStringGetDatum(report));

		MemoryContextDelete(cxt);
		PG_RETURN_DATUM(result);
	}
}
