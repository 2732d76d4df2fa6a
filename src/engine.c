/*
 * engine.c — the provider-independent engine: outbox processing, inbound
 * apply, and the worker's scheduling round.
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
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/md5.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "capture.h"
#include "conn.h"
#include "engine.h"
#include "lifecycle.h"
#include "provider.h"

int			sync_batch_size = 1000;
int			sync_lease_seconds = 300;
int			sync_journal_retention_days = 30;

PG_FUNCTION_INFO_V1(sync_pull);
PG_FUNCTION_INFO_V1(sync_push);

/* ---------------------------------------------------------------------
 * transactions and SPI
 * --------------------------------------------------------------------- */

static void
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

static void
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

static void
spi_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expect)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (rc != expect)
		elog(ERROR, "sync: query failed (%s): %s", SPI_result_code_string(rc), sql);
}

static char *
getv(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

static Datum
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
 * mirrors
 * --------------------------------------------------------------------- */

typedef struct MirrorRef
{
	int			id;
	char	   *connection;
	char	   *table;
	bool		push_due;
	bool		pull_due;
} MirrorRef;

/* Load a mirror and its fields; allocated in `work`.  Inside SPI. */
static SyncMirror *
mirror_load(int id, MemoryContext work, char **connection)
{
	Oid			types[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(id)};
	SyncMirror *m;
	MemoryContext old;
	int			i;
	char	   *err;
	char	   *opts;

	spi_exec("SELECT m.remote_object, m.local_table::oid, m.local_table::text, m.key_column, "
			 "       m.remote_id_column, m.stamp_column, m.direction, m.options::text, m.connection, "
			 "       (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
			 "         WHERE a.attrelid = m.local_table AND a.attname = m.key_column) "
			 "FROM sync.mirror m WHERE m.id = $1", 1, types, args, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("mirror %d does not exist", id)));
	old = MemoryContextSwitchTo(work);
	m = palloc0(sizeof(SyncMirror));
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
	MemoryContextSwitchTo(old);

	spi_exec("SELECT remote_name, local_column, remote_type, local_type, createable, updateable, "
			 "       reference_to, authority "
			 "FROM sync.field WHERE mirror = $1 ORDER BY local_column",
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

static int
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

static const char *
mirror_option(SyncMirror *m, const char *key)
{
	return sjson_get_string(m->options, key);
}

static void
note_mirror_error(int mirror, const char *message, bool own)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		args[2] = {Int32GetDatum(mirror), CStringGetTextDatum(message)};

	xact_begin(own);
	spi_exec("UPDATE sync.mirror_state SET last_error = $2, last_error_at = now(), "
			 "failures = failures + 1, "
			 "next_pull_at = now() + least(interval '1 second' * power(2, least(failures, 9)), interval '10 minutes') "
			 "WHERE mirror = $1", 2, types, args, NULL, SPI_OK_UPDATE);
	xact_end(own);
}

static void
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

static char *
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

/* ---------------------------------------------------------------------
 * push
 * --------------------------------------------------------------------- */

typedef struct PushBatch
{
	int			nitems;
	SyncPushItem *items;
	int		   *attempts;
	char	  **resolved;		/* nitems x nfields: remote IDs put in for "@key" */
	bool		deferred;		/* some items wait for a parent */
} PushBatch;

/*
 * References to rows not yet pushed.  A reference column (e.g. a Contact's
 * account_id) may hold "@<key>": the primary key of a row in the table that
 * mirrors the referenced object on the same connection.  At push time the
 * parent's remote ID is put in its place (and written back into the row
 * after success); while the parent has no remote ID yet, the child waits.
 */
static void
resolve_references(SyncMirror *m, const char *connection, PushBatch *b, MemoryContext work)
{
	int			k,
				i;

	for (k = 0; k < m->nfields; k++)
	{
		const char *target = m->fields[k].reference_to;
		char	   *parent_sql = NULL;
		char	   *parent_table = NULL;

		if (target == NULL || m->fields[k].role != FIELD_DATA)
			continue;
		for (i = 0; i < b->nitems; i++)
		{
			SyncPushItem *it = &b->items[i];
			const char *v = it->values[k];
			char	   *key;
			Oid			t[1] = {TEXTOID};
			Datum		a[1];
			MemoryContext old;

			if (!it->send[k] || v == NULL || strncmp(v, "\"@", 2) != 0 || it->result != PUSH_PENDING)
				continue;
			key = pnstrdup(v + 2, strlen(v) - 3);	/* "@42" -> 42 */
			if (parent_sql == NULL)
			{
				Oid			pt[2] = {TEXTOID, TEXTOID};
				Datum		pa[2] = {CStringGetTextDatum(connection), CStringGetTextDatum(target)};

				spi_exec("SELECT m.local_table::text, m.key_column, m.remote_id_column, "
						 "  (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
						 "    WHERE a.attrelid = m.local_table AND a.attname = m.key_column) "
						 "FROM sync.mirror m WHERE m.connection = $1 AND m.remote_object = $2 ORDER BY m.id LIMIT 1",
						 2, pt, pa, NULL, SPI_OK_SELECT);
				if (SPI_processed == 0)
				{
					old = MemoryContextSwitchTo(work);
					it->result = PUSH_REJECTED;
					it->error_code = "UNRESOLVED_REFERENCE";
					it->error_message = psprintf("%s refers to local row %s, but no table mirrors %s on connection \"%s\"",
												 m->columns[k], v, target, connection);
					MemoryContextSwitchTo(old);
					continue;
				}
				parent_table = pstrdup(getv(0, 1));
				parent_sql = psprintf("SELECT %s FROM %s WHERE %s = $1::%s",
									  quote_identifier(getv(0, 3)), parent_table,
									  quote_identifier(getv(0, 2)), getv(0, 4));
			}
			a[0] = CStringGetTextDatum(key);
			spi_exec(parent_sql, 1, t, a, NULL, SPI_OK_SELECT);
			old = MemoryContextSwitchTo(work);
			if (SPI_processed == 1 && getv(0, 1) != NULL)
			{
				char	   *rid = getv(0, 1);

				it->values[k] = psprintf("\"%s\"", rid);
				b->resolved[i * m->nfields + k] = rid;
			}
			else if (SPI_processed == 0)
			{
				it->result = PUSH_REJECTED;
				it->error_code = "UNRESOLVED_REFERENCE";
				it->error_message = psprintf("%s refers to row %s of %s, which does not exist",
											 m->columns[k], key, parent_table);
			}
			else
			{
				/* the parent is not pushed yet: try again shortly */
				it->result = PUSH_RETRY;
				it->retry_after_s = 1;
				it->error_code = "WAITING_FOR_PARENT";
				it->error_message = psprintf("waiting for row %s of %s to reach the remote",
											 key, parent_table);
				b->deferred = true;
			}
			MemoryContextSwitchTo(old);
		}
	}
}

typedef struct KeyIndex
{
	const char *key;
	int			item;
} KeyIndex;

static int
key_index_cmp(const void *a, const void *b)
{
	return strcmp(((const KeyIndex *) a)->key, ((const KeyIndex *) b)->key);
}

/* by key, then by item: equal keys in their original order */
static int
key_index_item_cmp(const void *a, const void *b)
{
	int			c = key_index_cmp(a, b);

	return c != 0 ? c : ((const KeyIndex *) a)->item - ((const KeyIndex *) b)->item;
}

/*
 * Claim a batch of ready entries: the oldest entry of each row only (later
 * entries of a row wait for earlier ones), with a lease so that a crashed
 * claimer's entries are reclaimed.  Reads the values of inserts and updates
 * from the table.  Inside SPI; results in `work`.
 */
static PushBatch *
push_claim(SyncMirror *m, int limit, MemoryContext work)
{
	Oid			types[3] = {INT4OID, INT4OID, INT4OID};
	Datum		args[3] = {Int32GetDatum(m->id), Int32GetDatum(limit), Int32GetDatum(sync_lease_seconds)};
	PushBatch  *b;
	MemoryContext old;
	int			i,
				j;
	const char *idem = mirror_option(m, "idempotency_field");
	StringInfoData sql;
	char	  **keys;
	bool	   *found;
	int			nkeys = 0;

	spi_exec("SELECT id, op, local_key, remote_id, idempotency_key, columns, attempts "
			 "FROM sync._claim($1, $2, $3) ORDER BY id",
			 3, types, args, NULL, SPI_OK_SELECT);

	old = MemoryContextSwitchTo(work);
	b = palloc0(sizeof(PushBatch));
	b->nitems = (int) SPI_processed;
	b->items = palloc0(sizeof(SyncPushItem) * Max(1, b->nitems));
	b->attempts = palloc0(sizeof(int) * Max(1, b->nitems));
	b->resolved = palloc0(sizeof(char *) * Max(1, b->nitems) * Max(1, m->nfields));
	keys = palloc(sizeof(char *) * Max(1, b->nitems));
	found = palloc0(sizeof(bool) * Max(1, b->nitems));
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
			keys[nkeys++] = it->local_key;
	}
	MemoryContextSwitchTo(old);
	if (nkeys == 0)
		return b;

	/* values, read from the table: the source of truth */
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s::text, %s", quote_identifier(m->key_column),
					 quote_identifier(m->remote_id_column));
	for (j = 0; j < m->nfields; j++)
	{
		/* values travel as JSON (to_json): typed, ISO dates, arrays */
		if (m->fields[j].role != FIELD_DATA)
			appendStringInfoString(&sql, ", NULL");
		else
			appendStringInfo(&sql, ", to_json(%s)::text", quote_identifier(m->columns[j]));
	}
	appendStringInfo(&sql, " FROM %s WHERE %s = ANY ($1::%s[])", m->qualified_table,
					 quote_identifier(m->key_column), m->key_type);
	{
		Oid			t[1] = {TEXTARRAYOID};
		Datum		a[1];

		a[0] = text_array(keys, nkeys);
		spi_exec(sql.data, 1, t, a, NULL, SPI_OK_SELECT);
	}
	old = MemoryContextSwitchTo(work);
	{
		/* match rows to items by key: the claim gives one entry per key */
		KeyIndex   *index = palloc(sizeof(KeyIndex) * Max(1, b->nitems));
		int			nindex = 0;

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
			if (it->remote_id == NULL)
				it->remote_id = getv(i, 2);
			for (k = 0; k < m->nfields; k++)
			{
				it->values[k] = getv(i, 3 + k);
				it->value_null[k] = (it->values[k] == NULL);
			}
			found[hit->item] = true;
		}
	}
	for (j = 0; j < b->nitems; j++)
	{
		SyncPushItem *it = &b->items[j];

		if (it->op == 'D')
			continue;
		if (!found[j])
		{
			/* the row is gone: its delete is queued behind this entry */
			it->result = PUSH_OK;
			it->error_message = "skipped: row deleted locally before it was pushed";
		}
		/* an update of a row that never reached the remote becomes an insert */
		if (it->op == 'U' && it->remote_id == NULL && it->result == PUSH_PENDING)
		{
			int			k;

			it->op = 'I';
			for (k = 0; k < m->nfields; k++)
				it->send[k] = m->fields[k].role == FIELD_DATA && m->fields[k].createable &&
					strcmp(m->authority[k], "remote") != 0;
		}
	}
	MemoryContextSwitchTo(old);
	return b;
}

/*
 * Record the outcome of a pushed batch.  Inside SPI.
 *   ok        -> entry deleted; new remote ID and stamp written back to the
 *                row without re-capture; journal row
 *   rejected  -> parked with the remote's message (sync.errors)
 *   retry     -> lease released, next attempt after a backoff
 * The common case (ok) is done set-based, a few statements per batch rather
 * than per record: at thousands of records per second, per-row statements
 * would make the database, not the remote, the bottleneck.
 */
static void
push_record(SyncMirror *m, PushBatch *b, int *nok, int *nrejected, int *nretry)
{
	int			n = b->nitems;
	int			saved = sync_applying_mirror;
	char	  **ok_ids = palloc(sizeof(char *) * Max(1, n));
	char	  **wb_rid = palloc(sizeof(char *) * Max(1, n));
	char	  **wb_stamp = palloc(sizeof(char *) * Max(1, n));
	char	  **wb_key = palloc(sizeof(char *) * Max(1, n));
	char	  **echo_rid = palloc(sizeof(char *) * Max(1, n));
	char	  **echo_key = palloc(sizeof(char *) * Max(1, n));
	char	  **j_op = palloc(sizeof(char *) * Max(1, n));
	char	  **j_key = palloc(sizeof(char *) * Max(1, n));
	char	  **j_rid = palloc(sizeof(char *) * Max(1, n));
	char	  **j_fields = palloc(sizeof(char *) * Max(1, n));
	char	  **j_hash = palloc(sizeof(char *) * Max(1, n));
	char	  **j_result = palloc(sizeof(char *) * Max(1, n));
	char	  **j_detail = palloc(sizeof(char *) * Max(1, n));
	char	  **vals = palloc(sizeof(char *) * Max(1, m->nfields));
	int			nok_ids = 0,
				nwb = 0,
				necho = 0,
				i,
				k;

	for (i = 0; i < n; i++)
	{
		SyncPushItem *it = &b->items[i];
		StringInfoData fields;
		int			ns = 0;

		switch (it->result)
		{
			case PUSH_OK:
				(*nok)++;
				j_result[i] = "ok";
				ok_ids[nok_ids++] = psprintf(INT64_FORMAT, it->outbox_id);
				if (it->new_remote_id != NULL && it->op != 'D')
				{
					wb_rid[nwb] = it->new_remote_id;
					wb_stamp[nwb] = it->new_stamp;
					wb_key[nwb++] = it->local_key;
					if (it->op == 'I')
					{
						echo_rid[necho] = it->new_remote_id;
						echo_key[necho++] = it->local_key;
					}
				}
				break;
			case PUSH_REJECTED:
				(*nrejected)++;
				j_result[i] = "rejected";
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
							 "error_fields = CASE WHEN $4 IS NULL THEN NULL ELSE string_to_array($4, ',') END, "
							 "updated_at = now() WHERE id = $1", 4, t, a, nl, SPI_OK_UPDATE);
				}
				break;
			default:
				(*nretry)++;
				j_result[i] = "retry";
				{
					long		wait = it->retry_after_s > 0 ? it->retry_after_s * 1000L :
						backoff_ms(b->attempts[i], 1000, 15 * 60 * 1000);
					Oid			t[4] = {INT8OID, TEXTOID, TEXTOID, INT8OID};
					Datum		a[4];
					char		nl[4] = {' ', ' ', ' ', ' '};

					a[0] = Int64GetDatum(it->outbox_id);
					a[1] = CStringGetTextDatum(it->error_code ? it->error_code : "");
					a[2] = CStringGetTextDatum(it->error_message ? it->error_message : "");
					a[3] = Int64GetDatum(wait);
					nl[1] = it->error_code ? ' ' : 'n';
					nl[2] = it->error_message ? ' ' : 'n';
					spi_exec("UPDATE sync.outbox SET claimed_until = NULL, claimed_by = NULL, "
							 "error_code = $2, error_message = $3, "
							 "next_attempt_at = now() + make_interval(secs => $4 / 1000.0), updated_at = now() "
							 "WHERE id = $1", 4, t, a, nl, SPI_OK_UPDATE);
				}
				break;
		}

		/* journal: what was sent, a hash of the values, the result */
		initStringInfo(&fields);
		for (k = 0; k < m->nfields; k++)
			if (it->send[k])
			{
				if (ns > 0)
					appendStringInfoChar(&fields, '\x1f');
				appendStringInfoString(&fields, m->fields[k].remote_name);
				vals[ns++] = it->values[k];
			}
		j_op[i] = psprintf("%c", it->op);
		j_key[i] = it->local_key;
		j_rid[i] = it->new_remote_id ? it->new_remote_id : it->remote_id;
		j_fields[i] = fields.data;
		j_hash[i] = values_hash(vals, ns);
		j_detail[i] = it->error_message == NULL ? NULL :
			it->error_code ? psprintf("%s: %s", it->error_code, it->error_message) : it->error_message;
	}

	if (nwb > 0)
	{
		Oid			t[3] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
		Datum		a[3];

		sync_applying_mirror = m->id;
		PG_TRY();
		{
			/*
			 * A pull that ran while a create was in flight may have brought
			 * the new record in as a row of its own: that row is the echo of
			 * the local one, so it goes.
			 */
			if (necho > 0)
			{
				a[0] = text_array(echo_rid, necho);
				a[1] = text_array(echo_key, necho);
				spi_exec(psprintf("DELETE FROM %s t USING unnest($1, $2) AS u(rid, key) "
								  "WHERE t.%s = u.rid AND t.%s <> u.key::%s",
								  m->qualified_table, quote_identifier(m->remote_id_column),
								  quote_identifier(m->key_column), m->key_type),
						 2, t, a, NULL, SPI_OK_DELETE);
			}
			a[0] = text_array(wb_rid, nwb);
			a[1] = text_array(wb_stamp, nwb);
			a[2] = text_array(wb_key, nwb);
			spi_exec(psprintf("UPDATE %s t SET %s = u.rid, %s = coalesce(u.stamp::timestamptz, t.%s) "
							  "FROM unnest($1, $2, $3) AS u(rid, stamp, key) WHERE t.%s = u.key::%s",
							  m->qualified_table, quote_identifier(m->remote_id_column),
							  quote_identifier(m->stamp_column), quote_identifier(m->stamp_column),
							  quote_identifier(m->key_column), m->key_type),
					 3, t, a, NULL, SPI_OK_UPDATE);
		}
		PG_FINALLY();
		{
			sync_applying_mirror = saved;
		}
		PG_END_TRY();

		/* a delete queued while an insert was in flight needs its new ID */
		{
			Oid			dt[3] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID};
			Datum		da[3] = {Int32GetDatum(m->id), a[2], a[0]};

			spi_exec("UPDATE sync.outbox o SET remote_id = u.rid FROM unnest($2, $3) AS u(key, rid) "
					 "WHERE o.mirror = $1 AND o.local_key = u.key AND o.op = 'D' AND o.remote_id IS NULL",
					 3, dt, da, NULL, SPI_OK_UPDATE);
		}
	}

	/* "@key" references now hold the parent's remote ID */
	for (i = 0; i < n; i++)
	{
		if (b->items[i].result != PUSH_OK)
			continue;
		for (k = 0; k < m->nfields; k++)
		{
			char	   *rid = b->resolved[i * m->nfields + k];
			Oid			rt[2] = {TEXTOID, TEXTOID};
			Datum		ra[2];

			if (rid == NULL)
				continue;
			ra[0] = CStringGetTextDatum(rid);
			ra[1] = CStringGetTextDatum(b->items[i].local_key);
			sync_applying_mirror = m->id;
			PG_TRY();
			{
				spi_exec(psprintf("UPDATE %s SET %s = $1 WHERE %s = $2::%s",
								  m->qualified_table, quote_identifier(m->columns[k]),
								  quote_identifier(m->key_column), m->key_type),
						 2, rt, ra, NULL, SPI_OK_UPDATE);
			}
			PG_FINALLY();
			{
				sync_applying_mirror = saved;
			}
			PG_END_TRY();
		}
	}

	if (nok_ids > 0)
	{
		Oid			t[1] = {TEXTARRAYOID};
		Datum		a[1] = {text_array(ok_ids, nok_ids)};

		spi_exec("DELETE FROM sync.outbox WHERE id = ANY ($1::int8[])", 1, t, a, NULL, SPI_OK_DELETE);
	}

	if (n > 0)
	{
		Oid			t[8] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
		Datum		a[8];

		a[0] = Int32GetDatum(m->id);
		a[1] = text_array(j_op, n);
		a[2] = text_array(j_key, n);
		a[3] = text_array(j_rid, n);
		a[4] = text_array(j_fields, n);
		a[5] = text_array(j_hash, n);
		a[6] = text_array(j_result, n);
		a[7] = text_array(j_detail, n);
		spi_exec("INSERT INTO sync.journal (mirror, direction, op, local_key, remote_id, fields, values_hash, result, detail) "
				 "SELECT $1, 'out', u.op::\"char\", u.key, u.rid, string_to_array(u.fields, E'\\x1f'), u.hash, u.result, u.detail "
				 "FROM unnest($2, $3, $4, $5, $6, $7, $8) AS u(op, key, rid, fields, hash, result, detail)",
				 8, t, a, NULL, SPI_OK_INSERT);
	}
}

/* Requests a connection may have in flight: its option, else sync.http_max_in_flight. */
static int
in_flight(SyncConnection *conn)
{
	return conn->max_in_flight > 0 ? conn->max_in_flight : Max(1, sync_http_max_in_flight);
}

/* Hand the claimed items to the provider, one operation at a time. */
static void
push_send(SyncConnection *conn, SyncMirror *m, PushBatch *b)
{
	static const char ops[3] = {'I', 'U', 'D'};
	int			o;

	for (o = 0; o < 3; o++)
	{
		SyncPushItem *group = palloc(sizeof(SyncPushItem) * Max(1, b->nitems));
		int		   *index = palloc(sizeof(int) * Max(1, b->nitems));
		int			n = 0,
					i;

		for (i = 0; i < b->nitems; i++)
		{
			SyncPushItem *it = &b->items[i];

			if (it->op != ops[o] || it->result != PUSH_PENDING)
				continue;
			if (it->op == 'D' && it->remote_id == NULL)
			{
				/* never reached the remote: nothing to delete */
				it->result = PUSH_OK;
				it->error_message = "skipped: the row never reached the remote";
				continue;
			}
			group[n] = *it;
			index[n++] = i;
		}
		if (n > 0)
		{
			int			max = conn->provider->batch_max(conn, m, ops[o]);
			int			start;

			for (start = 0; start < n; start += max * in_flight(conn))
			{
				int			chunk = Min(n - start, max * in_flight(conn));

				conn->provider->push(conn, m, group + start, chunk);
			}
			for (i = 0; i < n; i++)
				b->items[index[i]] = group[i];
		}
	}
}

/* Push one mirror's ready entries; returns the number of entries handled. */
static int64
push_mirror(int mirror_id, bool own, MemoryContext work, int *nok, int *nrejected, int *nretry)
{
	int64		total = 0;
	bool		analyzed = false;
	MemoryContext batchcxt = AllocSetContextCreate(work, "sync batch", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		SyncMirror *m;
		SyncConnection *conn;
		PushBatch  *b;
		char	   *connection;
		int			limit,
					wave;
		MemoryContext old;

		/* one batch at a time in memory, however long the queue */
		MemoryContextReset(batchcxt);
		xact_begin(own);
		m = mirror_load(mirror_id, batchcxt, &connection);
		if (m->direction == 'l')
		{
			xact_end(own);
			break;
		}
		conn = conn_get(connection);
		/*
		 * One wave of requests is batch_max x max_in_flight records; claim
		 * whole waves (at least sync.batch_size records) so that no wave
		 * goes out half full.
		 */
		wave = conn->provider->batch_max(conn, m, 'U') * in_flight(conn);
		limit = Max(1, (sync_batch_size + wave - 1) / wave) * wave;
		b = push_claim(m, limit, batchcxt);
		if (b->nitems == limit && !analyzed)
		{
			/*
			 * A bulk write can grow the outbox from nothing to millions of
			 * entries between two autovacuum rounds; the claim's plan is only
			 * good with statistics that know it.
			 */
			Oid			t[1] = {INT4OID};
			Datum		a[1] = {Int32GetDatum(limit)};

			spi_exec("SELECT 1 FROM pg_catalog.pg_class WHERE oid = 'sync.outbox'::pg_catalog.regclass "
					 "AND reltuples < $1", 1, t, a, NULL, SPI_OK_SELECT);
			if (SPI_processed > 0)
				spi_exec("ANALYZE sync.outbox", 0, NULL, NULL, NULL, SPI_OK_UTILITY);
			analyzed = true;
		}
		resolve_references(m, connection, b, batchcxt);
		xact_end(own);

		if (b->nitems == 0)
			break;

		/*
		 * The network, outside any transaction (in the worker).  After the
		 * commit CurrentMemoryContext is TopMemoryContext: what the provider
		 * builds and receives (JSON trees, bodies) must go to the batch.
		 */
		old = MemoryContextSwitchTo(batchcxt);
		push_send(conn, m, b);
		MemoryContextSwitchTo(old);

		xact_begin(own);
		push_record(m, b, nok, nrejected, nretry);
		save_usage(conn);
		{
			Oid			t[1] = {INT4OID};
			Datum		a[1] = {Int32GetDatum(mirror_id)};

			spi_exec("UPDATE sync.mirror_state SET last_push_at = now() WHERE mirror = $1",
					 1, t, a, NULL, SPI_OK_UPDATE);
		}
		xact_end(own);
		total += b->nitems;
		if (b->nitems < limit || *nretry > 0)
			break;
		CHECK_FOR_INTERRUPTS();
	}
	return total;
}

/* ---------------------------------------------------------------------
 * pull and apply
 * --------------------------------------------------------------------- */

/*
 * The upsert of one inbound record.  Identical rows are not touched (the
 * WHERE compares the data columns), so user triggers don't fire on noise.
 * Columns in $N (the row's pending local changes, under "local_wins") keep
 * their local value.  Fields whose authority is "local" are never written.
 */
static char *
apply_sql(SyncMirror *m, int *nparams)
{
	StringInfoData s,
				vals,
				set,
				cmp_old,
				cmp_new;
	int			p = 1,
				i;
	bool		first = true;

	initStringInfo(&s);
	initStringInfo(&vals);
	initStringInfo(&set);
	initStringInfo(&cmp_old);
	initStringInfo(&cmp_new);

	appendStringInfo(&s, "INSERT INTO %s AS t (", m->qualified_table);
	for (i = 0; i < m->nfields; i++)
	{
		const char *col = quote_identifier(m->columns[i]);

		if (strcmp(m->authority[i], "local") == 0)
		{
			p++;				/* keep parameter numbering aligned with fields */
			continue;
		}
		appendStringInfo(&s, "%s%s", first ? "" : ", ", col);
		appendStringInfo(&vals, "%s$%d::%s", first ? "" : ", ", p, m->fields[i].local_type);
		first = false;
		if (m->fields[i].role == FIELD_ID)
		{
			p++;
			continue;
		}
		if (m->fields[i].role == FIELD_STAMP)
			appendStringInfo(&set, "%s = EXCLUDED.%s, ", col, col);
		else
		{
			appendStringInfo(&set, "%s = CASE WHEN %s = ANY ($%d::text[]) THEN t.%s ELSE EXCLUDED.%s END, ",
							 col, quote_literal_cstr(m->columns[i]), m->nfields + 1, col, col);
			appendStringInfo(&cmp_old, "%st.%s", cmp_old.len ? ", " : "", col);
			appendStringInfo(&cmp_new, "%sCASE WHEN %s = ANY ($%d::text[]) THEN t.%s ELSE EXCLUDED.%s END",
							 cmp_new.len ? ", " : "", quote_literal_cstr(m->columns[i]),
							 m->nfields + 1, col, col);
		}
		p++;
	}
	/* drop the trailing ", " */
	if (set.len >= 2)
		set.data[set.len -= 2] = '\0';
	appendStringInfo(&s, ") VALUES (%s) ON CONFLICT (%s) DO UPDATE SET %s",
					 vals.data, quote_identifier(m->remote_id_column), set.data);
	if (cmp_old.len > 0)
		appendStringInfo(&s, " WHERE ROW(%s, NULL) IS DISTINCT FROM ROW(%s, NULL)", cmp_old.data, cmp_new.data);
	appendStringInfoString(&s, " RETURNING (xmax = 0) AS inserted");
	*nparams = m->nfields + 1;
	return s.data;
}

/*
 * Columns with pending local changes per remote ID, as a text[] per record
 * (NULL = none).  Under "remote_wins" those changes are dropped instead, so
 * the remote value is applied and not pushed back.
 */
static Datum *
pending_columns(SyncMirror *m, SyncPage *page, bool remote_wins, char *nulls)
{
	Datum	   *out = palloc0(sizeof(Datum) * Max(1, page->nrecords));
	char	  **ids = palloc(sizeof(char *) * Max(1, page->nrecords));
	StringInfoData q;
	Oid			t[2] = {INT4OID, TEXTARRAYOID};
	Datum		a[2];
	int			i,
				r;

	for (i = 0; i < page->nrecords; i++)
	{
		ids[i] = page->records[i].remote_id;
		nulls[i] = 'n';
	}
	a[0] = Int32GetDatum(m->id);

	/*
	 * Usually nothing is pending (always during a backfill): then the join
	 * below, which the planner may run as a scan of the whole table, is not
	 * needed at all.
	 */
	spi_exec("SELECT 1 FROM sync.outbox WHERE mirror = $1 AND op <> 'D' LIMIT 1",
			 1, t, a, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return out;
	a[1] = text_array(ids, page->nrecords);

	initStringInfo(&q);
	appendStringInfo(&q,
					 "SELECT t.%s, CASE WHEN bool_or(o.columns IS NULL) THEN NULL "
					 "  ELSE array_agg(DISTINCT c) END::text[], bool_or(o.columns IS NULL) "
					 "FROM %s t JOIN sync.outbox o ON o.mirror = $1 AND o.local_key = t.%s::text "
					 "LEFT JOIN LATERAL unnest(o.columns) c ON true "
					 "WHERE t.%s = ANY ($2) AND o.op <> 'D' GROUP BY 1",
					 quote_identifier(m->remote_id_column), m->qualified_table,
					 quote_identifier(m->key_column), quote_identifier(m->remote_id_column));
	spi_exec(q.data, 2, t, a, NULL, SPI_OK_SELECT);
	for (r = 0; r < (int) SPI_processed; r++)
	{
		char	   *rid = getv(r, 1);
		bool		isnull,
					all = strcmp(getv(r, 3), "t") == 0;
		Datum		cols = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull);

		for (i = 0; i < page->nrecords; i++)
		{
			if (strcmp(ids[i], rid) != 0)
				continue;
			if (all)
				out[i] = text_array(m->columns, m->nfields);
			else
				out[i] = datumCopy(cols, false, -1);
			nulls[i] = ' ';
		}
	}

	if (remote_wins && SPI_processed > 0)
	{
		/* the remote's values win: forget the local changes not yet sent */
		resetStringInfo(&q);
		appendStringInfo(&q,
						 "DELETE FROM sync.outbox o USING %s t "
						 "WHERE o.mirror = $1 AND o.local_key = t.%s::text AND t.%s = ANY ($2) "
						 "  AND o.op = 'U' AND o.slot = 0",
						 m->qualified_table, quote_identifier(m->key_column),
						 quote_identifier(m->remote_id_column));
		spi_exec(q.data, 2, t, a, NULL, SPI_OK_DELETE);
		for (i = 0; i < page->nrecords; i++)
			nulls[i] = 'n';
	}
	return out;
}

/*
 * Records this mirror created but whose result was not recorded yet (the
 * worker crashed, or the pull ran while the push was in flight) come back
 * carrying our idempotency key: give the key's local row its remote ID
 * before the upsert, so the record updates that row instead of arriving as
 * a second copy.
 */
static void
adopt_own_creates(SyncMirror *m, SyncPage *page)
{
	const char *idem = mirror_option(m, "idempotency_field");
	char	  **ids,
			  **keys;
	int			k,
				i,
				n = 0;
	StringInfoData q;
	Oid			t[3] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		a[3];

	if (idem == NULL)
		return;
	for (k = 0; k < m->nfields; k++)
		if (strcmp(m->fields[k].remote_name, idem) == 0)
			break;
	if (k == m->nfields)
		return;					/* the key is not mapped: write-back resolves it */
	ids = palloc(sizeof(char *) * Max(1, page->nrecords));
	keys = palloc(sizeof(char *) * Max(1, page->nrecords));
	for (i = 0; i < page->nrecords; i++)
		if (!page->records[i].deleted && page->records[i].values[k] != NULL &&
			strncmp(page->records[i].values[k], "sync-", 5) == 0)
		{
			ids[n] = page->records[i].remote_id;
			keys[n++] = page->records[i].values[k];
		}
	if (n == 0)
		return;
	a[0] = Int32GetDatum(m->id);
	a[1] = text_array(ids, n);
	a[2] = text_array(keys, n);
	initStringInfo(&q);
	appendStringInfo(&q,
					 "UPDATE %s t SET %s = v.rid "
					 "FROM unnest($2::text[], $3::text[]) AS v(rid, key) "
					 "JOIN sync.outbox o ON o.mirror = $1 AND o.idempotency_key = v.key "
					 "WHERE t.%s = o.local_key::%s AND t.%s IS NULL "
					 "  AND NOT EXISTS (SELECT 1 FROM %s d WHERE d.%s = v.rid)",
					 m->qualified_table, quote_identifier(m->remote_id_column),
					 quote_identifier(m->key_column), m->key_type, quote_identifier(m->remote_id_column),
					 m->qualified_table, quote_identifier(m->remote_id_column));
	spi_exec(q.data, 3, t, a, NULL, SPI_OK_UPDATE);
}

/*
 * The set-based upsert of the records of a page that have no pending local
 * change (nearly all of them): one statement per page instead of one per
 * record.  $k is the text[] of field k's values; returns the remote ID and
 * whether the row was inserted, for the rows actually written.
 */
static char *
apply_bulk_sql(SyncMirror *m, int **fieldmap, int *nparams)
{
	StringInfoData s,
				cols,
				sel,
				un,
				set,
				cmp_old,
				cmp_new;
	int			p = 0,
				i;

	*fieldmap = palloc(sizeof(int) * Max(1, m->nfields));
	initStringInfo(&s);
	initStringInfo(&cols);
	initStringInfo(&sel);
	initStringInfo(&un);
	initStringInfo(&set);
	initStringInfo(&cmp_old);
	initStringInfo(&cmp_new);
	for (i = 0; i < m->nfields; i++)
	{
		const char *col = quote_identifier(m->columns[i]);

		if (strcmp(m->authority[i], "local") == 0)
			continue;
		(*fieldmap)[p++] = i;
		appendStringInfo(&cols, "%s%s", p > 1 ? ", " : "", col);
		appendStringInfo(&sel, "%su.f%d::%s", p > 1 ? ", " : "", p, m->fields[i].local_type);
		appendStringInfo(&un, "%s$%d::text[]", p > 1 ? ", " : "", p);
		if (m->fields[i].role == FIELD_ID)
			continue;
		appendStringInfo(&set, "%s%s = EXCLUDED.%s", set.len ? ", " : "", col, col);
		if (m->fields[i].role == FIELD_DATA)
		{
			appendStringInfo(&cmp_old, "%st.%s", cmp_old.len ? ", " : "", col);
			appendStringInfo(&cmp_new, "%sEXCLUDED.%s", cmp_new.len ? ", " : "", col);
		}
	}
	appendStringInfo(&s, "INSERT INTO %s AS t (%s) SELECT %s FROM unnest(%s) AS u(",
					 m->qualified_table, cols.data, sel.data, un.data);
	for (i = 1; i <= p; i++)
		appendStringInfo(&s, "%sf%d", i > 1 ? ", " : "", i);
	appendStringInfo(&s, ") ON CONFLICT (%s) DO ", quote_identifier(m->remote_id_column));
	if (set.len == 0)
		appendStringInfoString(&s, "NOTHING");
	else
	{
		appendStringInfo(&s, "UPDATE SET %s", set.data);
		if (cmp_old.len > 0)
			appendStringInfo(&s, " WHERE ROW(%s, NULL) IS DISTINCT FROM ROW(%s, NULL)",
							 cmp_old.data, cmp_new.data);
	}
	appendStringInfo(&s, " RETURNING t.%s::text, (t.xmax = 0)", quote_identifier(m->remote_id_column));
	*nparams = p;
	return s.data;
}

/*
 * Upsert the records marked in `bulk` (no pending local change) in one
 * statement; journal rows are added to j_*.  A remote ID that appears twice
 * in a page is applied once, with its last (newest) version.
 */
static void
apply_bulk(SyncMirror *m, SyncPage *page, const bool *bulk, int64 *applied,
		   char **j_rid, char **j_hash, char **j_result, int *nj)
{
	int		   *fieldmap;
	int			nparams;
	char	   *sql = apply_bulk_sql(m, &fieldmap, &nparams);
	KeyIndex   *idx = palloc(sizeof(KeyIndex) * Max(1, page->nrecords));
	int		   *take = palloc(sizeof(int) * Max(1, page->nrecords));
	int			n = 0,
				ntake = 0,
				i,
				k;
	Oid		   *types;
	Datum	   *args;
	char	  **vals;

	for (i = 0; i < page->nrecords; i++)
		if (bulk[i])
		{
			idx[n].key = page->records[i].remote_id;
			idx[n++].item = i;
		}
	if (n == 0)
		return;
	qsort(idx, n, sizeof(KeyIndex), key_index_item_cmp);
	for (i = 0; i < n; i++)
		if (i == n - 1 || strcmp(idx[i].key, idx[i + 1].key) != 0)
			take[ntake++] = idx[i].item;	/* the last of equal IDs */

	types = palloc(sizeof(Oid) * nparams);
	args = palloc(sizeof(Datum) * nparams);
	vals = palloc(sizeof(char *) * ntake);
	for (k = 0; k < nparams; k++)
	{
		int			f = fieldmap[k];

		for (i = 0; i < ntake; i++)
		{
			SyncRecord *r = &page->records[take[i]];

			vals[i] = m->fields[f].role == FIELD_ID ? r->remote_id :
				m->fields[f].role == FIELD_STAMP ? r->stamp : r->values[f];
		}
		types[k] = TEXTARRAYOID;
		args[k] = text_array(vals, ntake);
	}
	spi_exec(sql, nparams, types, args, NULL, SPI_OK_INSERT_RETURNING);

	/* journal: one row per record written, with the hash of its values */
	for (i = 0; i < ntake; i++)
	{
		idx[i].key = page->records[take[i]].remote_id;
		idx[i].item = take[i];
	}
	n = ntake;					/* still sorted by key, now unique */
	for (i = 0; i < (int) SPI_processed; i++)
	{
		KeyIndex	probe = {getv(i, 1), 0};
		KeyIndex   *hit = bsearch(&probe, idx, n, sizeof(KeyIndex), key_index_cmp);

		if (hit == NULL)
			continue;
		j_rid[*nj] = page->records[hit->item].remote_id;
		j_hash[*nj] = values_hash(page->records[hit->item].values, m->nfields);
		j_result[(*nj)++] = strcmp(getv(i, 2), "t") == 0 ? "inserted" : "updated";
		(*applied)++;
	}
}

/* Apply one page and advance the cursor, in the current transaction. */
static void
apply_page(SyncMirror *m, SyncPage *page, int64 *applied, int64 *deleted)
{
	int			nparams = m->nfields + 1;	/* as apply_sql() numbers them */
	SPIPlanPtr	plan = NULL;
	Oid		   *types = palloc(sizeof(Oid) * nparams);
	Datum	   *args = palloc(sizeof(Datum) * nparams);
	char	   *nulls = palloc(nparams);
	char	   *pnulls = palloc(Max(1, page->nrecords));
	const char *conflict = mirror_option(m, "conflict");
	const char *delpolicy = mirror_option(m, "delete");
	Datum	   *pending;
	int			saved = sync_applying_mirror;
	char	  **j_rid = palloc(sizeof(char *) * Max(1, page->nrecords));
	char	  **j_hash = palloc(sizeof(char *) * Max(1, page->nrecords));
	char	  **j_result = palloc(sizeof(char *) * Max(1, page->nrecords));
	bool	   *bulk = palloc(sizeof(bool) * Max(1, page->nrecords));
	int			nj = 0;
	int			i,
				k;

	for (k = 0; k < nparams; k++)
		types[k] = TEXTOID;
	types[nparams - 1] = TEXTARRAYOID;

	pending = pending_columns(m, page, conflict && strcmp(conflict, "remote_wins") == 0, pnulls);

	sync_applying_mirror = m->id;
	PG_TRY();
	{
		adopt_own_creates(m, page);
		for (i = 0; i < page->nrecords; i++)
			bulk[i] = !page->records[i].deleted && pnulls[i] == 'n';
		apply_bulk(m, page, bulk, applied, j_rid, j_hash, j_result, &nj);

		/* records with pending local changes, one by one */
		for (i = 0; i < page->nrecords; i++)
		{
			SyncRecord *r = &page->records[i];

			if (r->deleted || bulk[i])
				continue;
			if (plan == NULL)
			{
				plan = SPI_prepare(apply_sql(m, &nparams), nparams, types);
				if (plan == NULL)
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
			args[nparams - 1] = pending[i];
			nulls[nparams - 1] = pnulls[i];
			if (SPI_execute_plan(plan, args, nulls, false, 0) != SPI_OK_INSERT_RETURNING)
				elog(ERROR, "sync: applying a record to %s failed", m->qualified_table);
			if (SPI_processed > 0)
			{
				j_rid[nj] = r->remote_id;
				j_hash[nj] = values_hash(r->values, m->nfields);
				j_result[nj++] = strcmp(getv(0, 1), "t") == 0 ? "inserted" : "updated";
				(*applied)++;
			}
		}
		if (nj > 0)
		{
			Oid			jt[4] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
			Datum		ja[4];

			ja[0] = Int32GetDatum(m->id);
			ja[1] = text_array(j_rid, nj);
			ja[2] = text_array(j_hash, nj);
			ja[3] = text_array(j_result, nj);
			spi_exec("INSERT INTO sync.journal (mirror, direction, op, remote_id, values_hash, result) "
					 "SELECT $1, 'in', 'U', u.rid, u.hash, u.result FROM unnest($2, $3, $4) AS u(rid, hash, result)",
					 4, jt, ja, NULL, SPI_OK_INSERT);
		}

		/* deletes: soft-deleted records in the page and delete feeds */
		if (delpolicy == NULL || strcmp(delpolicy, "keep") != 0)
		{
			char	  **ids = palloc(sizeof(char *) * Max(1, page->nrecords + page->ndeleted_ids));
			int			n = 0;

			for (i = 0; i < page->nrecords; i++)
				if (page->records[i].deleted)
					ids[n++] = page->records[i].remote_id;
			for (i = 0; i < page->ndeleted_ids && !page->reconcile; i++)
				ids[n++] = page->deleted_ids[i];
			if (n > 0 || page->reconcile)
			{
				StringInfoData q;
				Oid			t[1] = {TEXTARRAYOID};
				Datum		a[1];

				initStringInfo(&q);
				if (page->reconcile)
				{
					/* deleted_ids is the complete list of live remote IDs */
					a[0] = text_array(page->deleted_ids, page->ndeleted_ids);
					appendStringInfo(&q, "DELETE FROM %s WHERE %s IS NOT NULL AND NOT (%s = ANY ($1)) RETURNING %s",
									 m->qualified_table, quote_identifier(m->remote_id_column),
									 quote_identifier(m->remote_id_column),
									 quote_identifier(m->remote_id_column));
				}
				else
				{
					a[0] = text_array(ids, n);
					appendStringInfo(&q, "DELETE FROM %s WHERE %s = ANY ($1) RETURNING %s",
									 m->qualified_table, quote_identifier(m->remote_id_column),
									 quote_identifier(m->remote_id_column));
				}
				spi_exec(q.data, 1, t, a, NULL, SPI_OK_DELETE_RETURNING);
				*deleted += SPI_processed;
				if (SPI_processed > 0)
				{
					Oid			jt[2] = {INT4OID, TEXTARRAYOID};
					Datum		ja[2];
					char	  **gone = palloc(sizeof(char *) * SPI_processed);
					int			g;

					for (g = 0; g < (int) SPI_processed; g++)
						gone[g] = getv(g, 1);
					ja[0] = Int32GetDatum(m->id);
					ja[1] = text_array(gone, (int) SPI_processed);
					spi_exec("INSERT INTO sync.journal (mirror, direction, op, remote_id, result) "
							 "SELECT $1, 'in', 'D', r, 'deleted' FROM unnest($2::text[]) r",
							 2, jt, ja, NULL, SPI_OK_INSERT);
				}
			}
		}
	}
	PG_FINALLY();
	{
		sync_applying_mirror = saved;
	}
	PG_END_TRY();
	if (plan != NULL)
		SPI_freeplan(plan);

	/* the cursor advances with the page it covers */
	{
		Oid			t[6] = {INT4OID, TEXTOID, INT8OID, INT8OID, TEXTOID, BOOLOID};
		Datum		a[6];
		char		n[6] = {' ', ' ', ' ', ' ', ' ', ' '};
		char	   *maxstamp = NULL;

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
		spi_exec("UPDATE sync.mirror_state SET cursor = $2::jsonb, "
				 "  backfill_done = CASE WHEN phase = 'backfill' THEN backfill_done + $3 ELSE backfill_done END, "
				 "  backfill_total = coalesce($4, backfill_total), "
				 "  remote_stamp_max = greatest(remote_stamp_max, $5::timestamptz), "
				 "  phase = CASE WHEN $6 THEN 'incremental' ELSE phase END "
				 "WHERE mirror = $1", 6, t, a, n, SPI_OK_UPDATE);
	}
}

static SJson *
load_cursor(int mirror_id, MemoryContext work)
{
	Oid			t[1] = {INT4OID};
	Datum		a[1] = {Int32GetDatum(mirror_id)};
	char	   *text;
	char	   *err;
	MemoryContext old;
	SJson	   *cur;

	spi_exec("SELECT cursor::text FROM sync.mirror_state WHERE mirror = $1", 1, t, a, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1 || (text = getv(0, 1)) == NULL)
		return NULL;
	old = MemoryContextSwitchTo(work);
	cur = sjson_parse(text, strlen(text), &err);
	MemoryContextSwitchTo(old);
	return cur;
}

/* Pull pages until the remote has no more right now. */
static int64
pull_mirror(int mirror_id, bool own, MemoryContext work, int64 *deleted)
{
	int64		applied = 0;
	MemoryContext pagecxt = AllocSetContextCreate(work, "sync page", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		SyncMirror *m;
		SyncConnection *conn;
		SJson	   *cursor;
		SyncPage   *page;
		char	   *connection;
		MemoryContext old;

		MemoryContextReset(pagecxt);
		xact_begin(own);
		m = mirror_load(mirror_id, pagecxt, &connection);
		if (m->direction == 'p')
		{
			xact_end(own);
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

		xact_begin(own);
		{
			TimestampTz started = GetCurrentTimestamp();
			long		secs;
			int			usecs;

			apply_page(m, page, &applied, deleted);
			TimestampDifference(started, GetCurrentTimestamp(), &secs, &usecs);
			elog(DEBUG1, "sync: %s: applied a page of %d records in %.3f ms",
				 m->qualified_table, page->nrecords, secs * 1000.0 + usecs / 1000.0);
		}
		save_usage(conn);
		xact_end(own);

		if (!page->more)
			break;
		CHECK_FOR_INTERRUPTS();
	}

	xact_begin(own);
	{
		Oid			t[2] = {INT4OID, INT4OID};
		Datum		a[2] = {Int32GetDatum(mirror_id), Int32GetDatum(sync_pull_interval_ms)};

		spi_exec("UPDATE sync.mirror_state s SET last_pull_at = now(), failures = 0, last_error = NULL, "
				 "  next_pull_at = now() + coalesce((m.options->>'pull_interval')::interval, "
				 "                                  make_interval(secs => $2 / 1000.0)) "
				 "FROM sync.mirror m WHERE m.id = s.mirror AND s.mirror = $1",
				 2, t, a, NULL, SPI_OK_UPDATE);
	}
	xact_end(own);
	MemoryContextDelete(pagecxt);
	return applied;
}

/* ---------------------------------------------------------------------
 * the worker's round, and sync.pull / sync.push
 * --------------------------------------------------------------------- */

int			sync_pull_interval_ms = 30000;

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
	DefineCustomIntVariable("sync.request_attempts",
							"Attempts for a read request that fails transiently.",
							NULL, &sync_request_attempts, 5, 1, 100, PGC_USERSET, 0,
							NULL, NULL, NULL);
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

long
sync_engine_cycle(void)
{
	MemoryContext work = AllocSetContextCreate(CurrentMemoryContext, "sync cycle",
											   ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(work);
	MirrorRef  *refs = NULL;
	int			nrefs = 0,
				i;
	long		next_ms = -1;
	static TimestampTz last_cleanup = 0;
	static bool retention_more = false;
	static bool released = false;

	/* what is due, and when the next thing will be */
	xact_begin(true);

	/*
	 * Once per worker process: batches claimed by processes that no longer
	 * exist (a worker killed or crashed before recording its results) are
	 * released now instead of when their lease runs out.  Re-sending them is
	 * what the lease's expiry would do anyway; idempotency keys keep creates
	 * single.
	 */
	if (!released)
	{
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
	 * The time until the next due entry is computed only when nothing is due
	 * now: it reads every pending entry of the mirror, which is cheap when
	 * idle but not while a large backlog drains.
	 */
	spi_exec("SELECT m.id, d.push, d.pull, "
			 "  CASE WHEN NOT (d.push OR d.pull) THEN "
			 "  (extract(epoch FROM least(s.next_pull_at, "
			 "     (SELECT min(greatest(o.next_attempt_at, coalesce(o.claimed_until, o.next_attempt_at))) "
			 "        FROM sync.outbox o WHERE o.mirror = m.id AND o.state = 'pending')) - now()) * 1000)::bigint END "
			 "FROM sync.mirror m JOIN sync.mirror_state s ON s.mirror = m.id "
			 "CROSS JOIN LATERAL (SELECT "
			 "  m.direction <> 'pull' AND EXISTS (SELECT 1 FROM sync.outbox o WHERE o.mirror = m.id "
			 "     AND o.state = 'pending' AND o.next_attempt_at <= now() "
			 "     AND (o.claimed_until IS NULL OR o.claimed_until < now())) AS push, "
			 "  m.direction <> 'push' AND s.next_pull_at <= now() AND s.phase <> 'paused' AS pull "
			 "  OFFSET 0) d "		/* not flattened: each test runs once */
			 /* parents first: objects other mirrors' reference fields point at */
			 "ORDER BY (SELECT count(*) FROM sync.field f JOIN sync.mirror c ON c.id = f.mirror "
			 "          WHERE f.reference_to = m.remote_object AND c.connection = m.connection) DESC, m.id",
			 0, NULL, NULL, NULL, SPI_OK_SELECT);
	MemoryContextSwitchTo(work);
	nrefs = (int) SPI_processed;
	refs = palloc0(sizeof(MirrorRef) * Max(1, nrefs));
	for (i = 0; i < nrefs; i++)
	{
		char	   *due = getv(i, 4);

		refs[i].id = atoi(getv(i, 1));
		refs[i].push_due = strcmp(getv(i, 2), "t") == 0;
		refs[i].pull_due = strcmp(getv(i, 3), "t") == 0;
		if (due && !refs[i].push_due && !refs[i].pull_due)
		{
			long		ms = Max(1, atol(due));

			next_ms = next_ms < 0 ? ms : Min(next_ms, ms);
		}
	}
	xact_end(true);

	for (i = 0; i < nrefs; i++)
	{
		int			nok = 0,
					nrej = 0,
					nretry = 0;
		int64		deleted = 0;
		MemoryContext mcxt = AllocSetContextCreate(work, "sync mirror", ALLOCSET_DEFAULT_SIZES);

		MemoryContextSwitchTo(mcxt);
		PG_TRY();
		{
			if (refs[i].push_due)
			{
				push_mirror(refs[i].id, true, mcxt, &nok, &nrej, &nretry);
				if (nok + nrej > 0 && nretry == 0)
					next_ms = 0;	/* there may be more */
			}
			if (refs[i].pull_due)
				pull_mirror(refs[i].id, true, mcxt, &deleted);
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(work);
			report_mirror_error(refs[i].id, true, work);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(work);
		MemoryContextDelete(mcxt);
	}

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

	MemoryContextSwitchTo(old);
	MemoryContextDelete(work);
	return next_ms;
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

	lifecycle_check_sql();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "sync: SPI_connect failed");
	id = mirror_id_for_table(relid);
	SPI_finish();
	total = push_mirror(id, false, CurrentMemoryContext, &nok, &nrej, &nretry);
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
				deleted = 0;

	lifecycle_check_sql();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "sync: SPI_connect failed");
	id = mirror_id_for_table(relid);
	SPI_finish();
	applied = pull_mirror(id, false, CurrentMemoryContext, &deleted);
	PG_RETURN_DATUM(result_jsonb(psprintf("{\"applied\": " INT64_FORMAT ", \"deleted\": " INT64_FORMAT "}",
										  applied, deleted)));
}
