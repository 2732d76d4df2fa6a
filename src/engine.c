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
 *
 * Privilege.  Every statement on a user's table runs as the table's owner
 * (owner_begin/owner_end); sync's own catalog is read and written as the
 * caller (the worker: the bootstrap superuser).
 *
 * Failures.  One record never stops the others: a page or a batch is first
 * applied whole in a subtransaction; if that fails it is applied record by
 * record, each in its own subtransaction, and the records that still fail
 * are recorded (sync.inbound_error, parked outbox entries), not retried in
 * a loop.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "utils/resowner.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "utils/syscache.h"
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
int			sync_lock_timeout_ms = 5000;

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
typedef struct OwnerScope
{
	Oid			save_user;
	int			save_sec;
	int			save_nestlevel;
} OwnerScope;

static void
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

static void
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
static bool
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
static bool
error_is_transient(const ErrorData *e)
{
	return e->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
		e->sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
		e->sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE;
}

/* The error as users see it: the message, and its detail if any. */
static char *
error_text(const ErrorData *e)
{
	return e->detail ? psprintf("%s (%s)", e->message, e->detail) : pstrdup(e->message);
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
	if (getv(0, 11) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the table of mirror %d no longer exists", id),
				 errhint("Run sync.unmirror() for it.")));
	m->owner = (Oid) strtoul(getv(0, 11), NULL, 10);
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
	int			k,
				i;

	for (k = 0; k < m->nfields; k++)
	{
		const char *target = m->fields[k].reference_to;
		int		   *idx;
		RefLookup	l;
		char	   *parent_table;
		MemoryContext old;

		if (target == NULL || m->fields[k].role != FIELD_DATA)
			continue;

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
			continue;

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
			continue;
		}
		parent_table = getv(0, 1);
		l.owner = (Oid) strtoul(getv(0, 5), NULL, 10);
		l.sql = psprintf("SELECT u.k, p.%s FROM pg_catalog.unnest($1::pg_catalog.text[]) AS u(k) "
						 "JOIN %s p ON p.%s OPERATOR(pg_catalog.=) u.k::%s",
						 quote_identifier(getv(0, 3)), parent_table,
						 quote_identifier(getv(0, 2)), getv(0, 4));
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
 * from the table, as its owner.  Inside SPI; results in `work`.
 *
 * Op 'W' is a write-back that failed earlier (the remote has the record;
 * the row lacked its remote ID): it is only written back, never sent.
 */
static PushBatch *
push_claim(SyncMirror *m, const SyncProvider *prov, int limit, MemoryContext work)
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
	b->claimed_at = GetCurrentTimestamp();
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
		if (it->op == 'W')
		{
			/* a write-back to finish: the remote has the record already */
			it->result = PUSH_OK;
			it->new_remote_id = it->remote_id;
			keys[nkeys++] = it->local_key;
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
			keys[nkeys++] = it->local_key;
	}
	MemoryContextSwitchTo(old);

	if (nkeys > 0)
	{
		/* values, read from the table (the source of truth) as its owner */
		Oid			t[1] = {TEXTARRAYOID};
		Datum		a[1];
		OwnerScope	os;

		initStringInfo(&sql);
		appendStringInfo(&sql, "SELECT %s::pg_catalog.text, %s", quote_identifier(m->key_column),
						 quote_identifier(m->remote_id_column));
		for (j = 0; j < m->nfields; j++)
		{
			/* values travel as JSON (to_json): typed, ISO dates, arrays */
			if (m->fields[j].role != FIELD_DATA)
				appendStringInfoString(&sql, ", NULL");
			else
				appendStringInfo(&sql, ", pg_catalog.to_json(%s)::pg_catalog.text",
								 quote_identifier(m->columns[j]));
		}
		appendStringInfo(&sql, " FROM %s WHERE %s OPERATOR(pg_catalog.=) ANY ($1::%s[])",
						 m->qualified_table, quote_identifier(m->key_column), m->key_type);
		a[0] = text_array(keys, nkeys);
		owner_begin(m->owner, &os);
		spi_exec(sql.data, 1, t, a, NULL, SPI_OK_SELECT);
		owner_end(&os);
	}
	old = MemoryContextSwitchTo(work);
	if (nkeys > 0)
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
			found[hit->item] = true;
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
	}
	for (j = 0; j < b->nitems; j++)
	{
		SyncPushItem *it = &b->items[j];

		if (it->op != 'D' && !found[j])
		{
			/* the row is gone: its delete is queued behind this entry */
			it->result = PUSH_OK;
			it->new_remote_id = NULL;
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
	MemoryContext work;
} WriteBack;

static void
write_back(void *arg)
{
	WriteBack  *w = (WriteBack *) arg;
	SyncMirror *m = w->m;
	char	  **rid = palloc(sizeof(char *) * Max(1, w->n));
	char	  **stamp = palloc(sizeof(char *) * Max(1, w->n));
	char	  **key = palloc(sizeof(char *) * Max(1, w->n));
	char	  **crid,
			  **ckey,
			  **echo_rid;
	int			nconf = 0,
				necho = 0,
				nwb = 0,
				i,
				k;
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

	/*
	 * Rows other than ours that hold the new remote ID already.  A pull that
	 * ran while a create was in flight brings the new record in as a row of
	 * its own: that row is the echo of ours and goes.  A row that held the
	 * record before we sent the create (the remote matched our create to an
	 * existing record, e.g. an upsert by email) is a real row and stays;
	 * ours is then parked, for the user to merge.
	 */
	a[0] = text_array(rid, w->n);
	a[1] = text_array(key, w->n);
	owner_begin(m->owner, &os);
	spi_exec(psprintf("SELECT t.%s, t.%s::pg_catalog.text FROM %s t "
					  "JOIN ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[])) AS u(rid, key) "
					  "ON t.%s OPERATOR(pg_catalog.=) u.rid AND t.%s OPERATOR(pg_catalog.<>) u.key::%s",
					  quote_identifier(m->remote_id_column), quote_identifier(m->key_column),
					  m->qualified_table, quote_identifier(m->remote_id_column),
					  quote_identifier(m->key_column), m->key_type),
			 2, t, a, NULL, SPI_OK_SELECT);
	owner_end(&os);
	nconf = (int) SPI_processed;
	crid = palloc(sizeof(char *) * Max(1, nconf));
	ckey = palloc(sizeof(char *) * Max(1, nconf));
	echo_rid = palloc(sizeof(char *) * Max(1, nconf));
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
			echo_rid[necho++] = getv(i, 1);
		for (i = 0; i < nconf; i++)
		{
			bool		echo = false;
			int			e;

			for (e = 0; e < necho; e++)
				echo = echo || strcmp(echo_rid[e], crid[i]) == 0;
			if (echo)
				continue;
			for (k = 0; k < w->n; k++)
				if (rid[k] != NULL && strcmp(rid[k], crid[i]) == 0 && w->taken_by[k] == NULL)
					w->taken_by[k] = MemoryContextStrdup(w->work, ckey[i]);
		}
	}

	/* the rows to write: those whose record is not another row's */
	for (i = 0; i < w->n; i++)
		if (w->taken_by[i] == NULL)
		{
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

		spi_exec(psprintf("DELETE FROM %s t WHERE t.%s OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])",
						  m->qualified_table, quote_identifier(m->remote_id_column)),
				 1, dt, da, NULL, SPI_OK_DELETE);
	}
	if (nwb > 0)
	{
		a[0] = text_array(rid, nwb);
		a[1] = text_array(stamp, nwb);
		a[2] = text_array(key, nwb);
		spi_exec(psprintf("UPDATE %s t SET %s = COALESCE(u.rid, t.%s), "
						  "  %s = COALESCE(u.stamp::pg_catalog.timestamptz, t.%s) "
						  "FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.text[])) "
						  "  AS u(rid, stamp, key) "
						  "WHERE t.%s OPERATOR(pg_catalog.=) u.key::%s",
						  m->qualified_table, quote_identifier(m->remote_id_column),
						  quote_identifier(m->remote_id_column),
						  quote_identifier(m->stamp_column), quote_identifier(m->stamp_column),
						  quote_identifier(m->key_column), m->key_type),
				 3, t, a, NULL, SPI_OK_UPDATE);
	}
	/* "@key" references now hold the parent's remote ID */
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
			spi_exec(psprintf("UPDATE %s SET %s = $1 WHERE %s OPERATOR(pg_catalog.=) $2::%s",
							  m->qualified_table, quote_identifier(m->columns[k]),
							  quote_identifier(m->key_column), m->key_type),
					 2, rt, ra, NULL, SPI_OK_UPDATE);
		}
	}
	owner_end(&os);
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
	int			n = b->nitems;
	int			saved = sync_applying_mirror;
	char	  **ok_ids = palloc(sizeof(char *) * Max(1, n));
	char	  **j_op = palloc(sizeof(char *) * Max(1, n));
	char	  **j_key = palloc(sizeof(char *) * Max(1, n));
	char	  **j_rid = palloc(sizeof(char *) * Max(1, n));
	char	  **j_fields = palloc(sizeof(char *) * Max(1, n));
	char	  **j_hash = palloc(sizeof(char *) * Max(1, n));
	char	  **j_result = palloc(sizeof(char *) * Max(1, n));
	char	  **j_detail = palloc(sizeof(char *) * Max(1, n));
	char	  **vals = palloc(sizeof(char *) * Max(1, m->nfields));
	char	  **wb_failed = palloc0(sizeof(char *) * Max(1, n));	/* per item: why */
	char	  **new_key = palloc(sizeof(char *) * Max(1, n));
	char	  **new_rid = palloc(sizeof(char *) * Max(1, n));
	WriteBack	w;
	int			nok_ids = 0,
				nnew = 0,
				i,
				k;

	/* the write-backs first, each failure confined to its own rows */
	memset(&w, 0, sizeof(w));
	w.m = m;
	w.b = b;
	w.work = work;
	w.item = palloc(sizeof(int) * Max(1, n));
	w.taken_by = palloc0(sizeof(char *) * Max(1, n));
	for (i = 0; i < n; i++)
	{
		SyncPushItem *it = &b->items[i];
		bool		need;

		if (it->result != PUSH_OK || it->op == 'D')
			continue;
		need = it->new_remote_id != NULL;
		for (k = 0; k < m->nfields && !need; k++)
			need = b->resolved[i * m->nfields + k] != NULL;
		if (need)
			w.item[w.n++] = i;
	}
	PG_TRY();
	{
		if (w.n > 0 && !in_subxact(write_back, &w, work, NULL))
		{
			/* one row at a time, to find the rows the table refuses */
			WriteBack	one = w;

			for (i = 0; i < w.n; i++)
			{
				ErrorData  *e = NULL;

				one.n = 1;
				one.item = &w.item[i];
				one.taken_by = &w.taken_by[i];
				if (!in_subxact(write_back, &one, work, &e))
					wb_failed[w.item[i]] =
						psprintf("the remote has the record (ID %s), but writing its ID into row %s of %s failed: %s",
								 b->items[w.item[i]].new_remote_id ? b->items[w.item[i]].new_remote_id : "?",
								 b->items[w.item[i]].local_key, m->qualified_table, error_text(e));
			}
		}
	}
	PG_FINALLY();
	{
		sync_applying_mirror = saved;
	}
	PG_END_TRY();
	for (i = 0; i < w.n; i++)
		if (w.taken_by[i] != NULL && wb_failed[w.item[i]] == NULL)
			wb_failed[w.item[i]] =
				psprintf("the remote matched this row to record %s, which row %s of %s mirrors already; "
						 "merge the two rows (delete this one) and call sync.retry()",
						 b->items[w.item[i]].new_remote_id, w.taken_by[i], m->qualified_table);

	for (i = 0; i < n; i++)
	{
		SyncPushItem *it = &b->items[i];
		StringInfoData fields;
		int			ns = 0;

		if (it->result == PUSH_OK && wb_failed[i] != NULL)
		{
			/* the outcome is kept: park a write-back, never a re-send */
			Oid			t[3] = {INT8OID, TEXTOID, TEXTOID};
			Datum		a[3];

			(*nrejected)++;
			j_result[i] = "ok";
			a[0] = Int64GetDatum(it->outbox_id);
			a[1] = CStringGetTextDatum(it->new_remote_id);
			a[2] = CStringGetTextDatum(wb_failed[i]);
			spi_exec("UPDATE sync.outbox SET op = 'W', remote_id = $2, state = 'parked', "
					 "claimed_until = NULL, claimed_by = NULL, error_code = 'WRITE_BACK_FAILED', "
					 "error_message = $3, error_fields = NULL, updated_at = pg_catalog.now() "
					 "WHERE id OPERATOR(pg_catalog.=) $1", 3, t, a, NULL, SPI_OK_UPDATE);
			it->error_code = "WRITE_BACK_FAILED";
			it->error_message = wb_failed[i];
		}
		else
			switch (it->result)
			{
				case PUSH_OK:
					(*nok)++;
					j_result[i] = "ok";
					ok_ids[nok_ids++] = psprintf(INT64_FORMAT, it->outbox_id);
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
								 "error_fields = CASE WHEN $4 IS NULL THEN NULL "
								 "  ELSE pg_catalog.string_to_array($4, ',') END, "
								 "updated_at = pg_catalog.now() WHERE id OPERATOR(pg_catalog.=) $1",
								 4, t, a, nl, SPI_OK_UPDATE);
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

						/* the remote asked us to hold off: the lease is released, not slept on */
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
					break;
			}

		/* a delete queued while the create was in flight needs the new ID */
		if (it->result == PUSH_OK && it->op == 'I' && it->new_remote_id != NULL)
		{
			new_key[nnew] = it->local_key;
			new_rid[nnew++] = it->new_remote_id;
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

	if (nnew > 0)
	{
		Oid			dt[3] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID};
		Datum		da[3] = {Int32GetDatum(m->id), text_array(new_key, nnew), text_array(new_rid, nnew)};

		spi_exec("UPDATE sync.outbox o SET remote_id = u.rid "
				 "FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.text[])) AS u(key, rid) "
				 "WHERE o.mirror OPERATOR(pg_catalog.=) $1 AND o.local_key OPERATOR(pg_catalog.=) u.key "
				 "  AND o.op OPERATOR(pg_catalog.=) 'D' AND o.remote_id IS NULL",
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
		a[1] = text_array(j_op, n);
		a[2] = text_array(j_key, n);
		a[3] = text_array(j_rid, n);
		a[4] = text_array(j_fields, n);
		a[5] = text_array(j_hash, n);
		a[6] = text_array(j_result, n);
		a[7] = text_array(j_detail, n);
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
		b = push_claim(m, conn->provider, limit, batchcxt);
		if (b->nitems == limit && !analyzed)
		{
			/*
			 * A bulk write can grow the outbox from nothing to millions of
			 * entries between two autovacuum rounds; the claim's plan is only
			 * good with statistics that know it.
			 */
			Oid			t[1] = {INT4OID};
			Datum		a[1] = {Int32GetDatum(limit)};

			spi_exec("SELECT 1 FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) 'sync.outbox'::pg_catalog.regclass "
					 "AND reltuples OPERATOR(pg_catalog.<) $1", 1, t, a, NULL, SPI_OK_SELECT);
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
		save_usage(conn);
		{
			Oid			t[1] = {INT4OID};
			Datum		a[1] = {Int32GetDatum(mirror_id)};

			spi_exec("UPDATE sync.mirror_state SET last_push_at = pg_catalog.now() "
					 "WHERE mirror OPERATOR(pg_catalog.=) $1",
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
			appendStringInfo(&set, "%s = CASE WHEN %s OPERATOR(pg_catalog.=) ANY ($%d::pg_catalog.text[]) "
							 "THEN t.%s ELSE EXCLUDED.%s END, ",
							 col, quote_literal_cstr(m->columns[i]), m->nfields + 1, col, col);
			appendStringInfo(&cmp_old, "%st.%s", cmp_old.len ? ", " : "", col);
			appendStringInfo(&cmp_new, "%sCASE WHEN %s OPERATOR(pg_catalog.=) ANY ($%d::pg_catalog.text[]) "
							 "THEN t.%s ELSE EXCLUDED.%s END",
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
	appendStringInfoString(&s, " RETURNING (xmax OPERATOR(pg_catalog.=) 0) AS inserted");
	*nparams = m->nfields + 1;
	return s.data;
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
		appendStringInfo(&un, "%spg_catalog.unnest($%d::pg_catalog.text[])", p > 1 ? ", " : "", p);
		if (m->fields[i].role == FIELD_ID)
			continue;
		appendStringInfo(&set, "%s%s = EXCLUDED.%s", set.len ? ", " : "", col, col);
		if (m->fields[i].role == FIELD_DATA)
		{
			appendStringInfo(&cmp_old, "%st.%s", cmp_old.len ? ", " : "", col);
			appendStringInfo(&cmp_new, "%sEXCLUDED.%s", cmp_new.len ? ", " : "", col);
		}
	}
	appendStringInfo(&s, "INSERT INTO %s AS t (%s) SELECT %s FROM ROWS FROM (%s) AS u(",
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
	appendStringInfo(&s, " RETURNING t.%s::pg_catalog.text, (t.xmax OPERATOR(pg_catalog.=) 0)",
					 quote_identifier(m->remote_id_column));
	*nparams = p;
	return s.data;
}

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
	char	   *bulk_sql;
	int		   *fieldmap;
	int			nbulk_params;
	/* journal rows */
	int			nj;
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
static void
page_check_encoding(PageApply *pa)
{
	SyncMirror *m = pa->m;
	int			i,
				k;

	for (i = 0; i < pa->n; i++)
	{
		SyncRecord *r = &pa->page->records[i];
		const char *bad = NULL;

		if (pa->state[i] != 'a')
			continue;
		if (r->remote_id == NULL || !pg_verifymbstr(r->remote_id, strlen(r->remote_id), true))
			bad = m->remote_id_column;
		for (k = 0; k < m->nfields && bad == NULL && !r->deleted; k++)
			if (r->values[k] != NULL && !pg_verifymbstr(r->values[k], strlen(r->values[k]), true))
				bad = m->columns[k];
		if (r->stamp != NULL && bad == NULL && !pg_verifymbstr(r->stamp, strlen(r->stamp), true))
			bad = m->stamp_column;
		if (bad != NULL || r->invalid != NULL)
		{
			ErrorData	e;

			memset(&e, 0, sizeof(e));
			e.sqlerrcode = ERRCODE_CHARACTER_NOT_IN_REPERTOIRE;
			e.message = r->invalid ? r->invalid :
				psprintf("the remote's value for column \"%s\" is not valid %s",
						 bad, GetDatabaseEncodingName());
			if (r->remote_id == NULL)
				r->remote_id = "";
			pa->state[i] = 'f';
			set_aside(pa, pg_verifymbstr(r->remote_id, strlen(r->remote_id), true) ?
					  r->remote_id : "(invalid)", pa->key[i],
					  r->deleted ? "delete" : pa->key[i] ? "update" : "insert", &e);
		}
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
	spi_exec(psprintf("SELECT t.%s, t.%s::pg_catalog.text FROM %s t "
					  "WHERE t.%s OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) ORDER BY 1 %s",
					  quote_identifier(m->remote_id_column), quote_identifier(m->key_column),
					  m->qualified_table, quote_identifier(m->remote_id_column), l->lock),
			 1, t, a, NULL, SPI_OK_SELECT);
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
page_lock(PageApply *pa)
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
	if (l.nrids == 0)
		return;
	l.lock = "FOR NO KEY UPDATE OF t";
	if (!in_subxact(lock_rows, &l, pa->work, &e))
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
	spi_exec("SELECT 1 FROM sync.outbox WHERE mirror OPERATOR(pg_catalog.=) $1 "
			 "AND op OPERATOR(pg_catalog.<>) 'D' AND op OPERATOR(pg_catalog.<>) 'W' LIMIT 1",
			 1, t, a, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
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
	const char *idem = mirror_option(m, "idempotency_field");
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
	SyncMirror *m = pa->m;
	SyncPage   *page = pa->page;
	OwnerScope	os;
	int			i,
				k;
	char	  **v1 = palloc(sizeof(char *) * Max(1, pa->n + pa->ndel));
	char	  **v2 = palloc(sizeof(char *) * Max(1, pa->n + pa->ndel));
	int			n = 0;

	owner_begin(m->owner, &os);

	/* our own creates, come back before their result was recorded */
	for (i = 0; i < pa->n; i++)
		if (STEP_RECORD(pa, i) && pa->state[i] == 'a' && pa->adopt_key[i] != NULL)
		{
			v1[n] = page->records[i].remote_id;
			v2[n++] = pa->adopt_key[i];
		}
	if (n > 0)
	{
		Oid			t[2] = {TEXTARRAYOID, TEXTARRAYOID};
		Datum		a[2] = {text_array(v1, n), text_array(v2, n)};

		spi_exec(psprintf("UPDATE %s t SET %s = v.rid "
						  "FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[])) AS v(rid, key) "
						  "WHERE t.%s OPERATOR(pg_catalog.=) v.key::%s AND t.%s IS NULL "
						  "  AND NOT EXISTS (SELECT 1 FROM %s d WHERE d.%s OPERATOR(pg_catalog.=) v.rid)",
						  m->qualified_table, quote_identifier(m->remote_id_column),
						  quote_identifier(m->key_column), m->key_type, quote_identifier(m->remote_id_column),
						  m->qualified_table, quote_identifier(m->remote_id_column)),
				 2, t, a, NULL, SPI_OK_UPDATE);
	}

	/* records without pending local changes: one statement */
	{
		KeyIndex   *idx = palloc(sizeof(KeyIndex) * Max(1, pa->n));
		int		   *take = palloc(sizeof(int) * Max(1, pa->n));
		int			nb = 0,
					ntake = 0;

		for (i = 0; i < pa->n; i++)
			if (STEP_RECORD(pa, i) && pa->state[i] == 'a' && !page->records[i].deleted &&
				pa->pnulls[i] == 'n')
			{
				idx[nb].key = page->records[i].remote_id;
				idx[nb++].item = i;
			}
		if (nb > 0)
		{
			Oid		   *types;
			Datum	   *args;
			char	  **vals;

			/* a remote ID twice in a page: its last (newest) version */
			qsort(idx, nb, sizeof(KeyIndex), key_index_item_cmp);
			for (i = 0; i < nb; i++)
				if (i == nb - 1 || strcmp(idx[i].key, idx[i + 1].key) != 0)
					take[ntake++] = idx[i].item;
			if (pa->bulk_sql == NULL)
				pa->bulk_sql = MemoryContextStrdup(pa->work, apply_bulk_sql(m, &pa->fieldmap, &pa->nbulk_params));
			types = palloc(sizeof(Oid) * pa->nbulk_params);
			args = palloc(sizeof(Datum) * pa->nbulk_params);
			vals = palloc(sizeof(char *) * ntake);
			for (k = 0; k < pa->nbulk_params; k++)
			{
				int			f = pa->fieldmap[k];

				for (i = 0; i < ntake; i++)
				{
					SyncRecord *r = &page->records[take[i]];

					vals[i] = m->fields[f].role == FIELD_ID ? r->remote_id :
						m->fields[f].role == FIELD_STAMP ? r->stamp : r->values[f];
				}
				types[k] = TEXTARRAYOID;
				args[k] = text_array(vals, ntake);
			}
			spi_exec(pa->bulk_sql, pa->nbulk_params, types, args, NULL, SPI_OK_INSERT_RETURNING);

			/* journal: one row per record written, with the hash of its values */
			for (i = 0; i < ntake; i++)
			{
				idx[i].key = page->records[take[i]].remote_id;
				idx[i].item = take[i];
			}
			for (i = 0; i < (int) SPI_processed; i++)
			{
				KeyIndex	probe = {getv(i, 1), 0};
				KeyIndex   *hit = bsearch(&probe, idx, ntake, sizeof(KeyIndex), key_index_cmp);

				if (hit == NULL)
					continue;
				journal_add(pa, "U", page->records[hit->item].remote_id,
							values_hash(page->records[hit->item].values, m->nfields),
							strcmp(getv(i, 2), "t") == 0 ? "inserted" : "updated", NULL);
				pa->applied++;
			}
		}
	}

	/* records with pending local changes, one by one */
	for (i = 0; i < pa->n; i++)
	{
		SyncRecord *r = &page->records[i];
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
			pa->plan = SPI_prepare(apply_sql(m, &nparams), nparams, types);
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

	/* remote deletes */
	n = 0;
	for (i = 0; i < pa->ndel; i++)
		if (STEP_DELETE(pa, i) && pa->del_state[i] == 'a')
			v1[n++] = pa->del_rid[i];
	if (n > 0)
	{
		Oid			t[1] = {TEXTARRAYOID};
		Datum		a[1] = {text_array(v1, n)};

		spi_exec(psprintf("DELETE FROM %s WHERE %s OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) RETURNING %s",
						  m->qualified_table, quote_identifier(m->remote_id_column),
						  quote_identifier(m->remote_id_column)),
				 1, t, a, NULL, SPI_OK_DELETE_RETURNING);
		for (i = 0; i < (int) SPI_processed; i++)
			journal_add(pa, "D", getv(i, 1), NULL, "deleted", NULL);
		pa->deleted += SPI_processed;
	}

	owner_end(&os);
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
	spi_exec(psprintf("SELECT %s FROM %s WHERE %s IS NOT NULL "
					  "AND NOT (%s OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]))",
					  quote_identifier(m->remote_id_column), m->qualified_table,
					  quote_identifier(m->remote_id_column), quote_identifier(m->remote_id_column)),
			 1, t, a, NULL, SPI_OK_SELECT);
	owner_end(&os);
	rc->pa->ndel = (int) SPI_processed;
	rc->pa->del_rid = palloc(sizeof(char *) * Max(1, rc->pa->ndel));
	for (i = 0; i < rc->pa->ndel; i++)
		rc->pa->del_rid[i] = getv(i, 1);
}

/*
 * Apply one page in the current transaction, and advance the cursor with it
 * when `advance` (a page of re-fetched records leaves the cursor alone).
 */
static void
apply_page(SyncMirror *m, SyncPage *page, bool advance, MemoryContext work,
		   int64 *applied, int64 *deleted, int64 *failed)
{
	const char *conflict = mirror_option(m, "conflict");
	const char *delpolicy = mirror_option(m, "delete");
	bool		deletes = delpolicy == NULL || strcmp(delpolicy, "keep") != 0;
	int			saved = sync_applying_mirror;
	PageApply	pa;
	int			cap,
				nj0,
				i;

	memset(&pa, 0, sizeof(pa));
	pa.m = m;
	pa.page = page;
	pa.work = work;
	pa.n = page->nrecords;
	pa.only = pa.only_del = -1;
	pa.state = palloc(Max(1, pa.n));
	memset(pa.state, 'a', Max(1, pa.n));
	pa.key = palloc0(sizeof(char *) * Max(1, pa.n));
	pa.pending = palloc0(sizeof(Datum) * Max(1, pa.n));
	pa.pnulls = palloc(Max(1, pa.n));
	memset(pa.pnulls, 'n', Max(1, pa.n));
	pa.adopt_key = palloc0(sizeof(char *) * Max(1, pa.n));

	/* the remote deletes of this page */
	if (deletes && page->reconcile)
	{
		Reconcile	rc = {&pa, page->deleted_ids, page->ndeleted_ids};

		reconcile_rows(&rc);
	}
	else if (deletes)
	{
		pa.del_rid = palloc(sizeof(char *) * Max(1, pa.n + page->ndeleted_ids));
		for (i = 0; i < pa.n; i++)
			if (page->records[i].deleted)
				pa.del_rid[pa.ndel++] = page->records[i].remote_id;
		for (i = 0; i < page->ndeleted_ids; i++)
			pa.del_rid[pa.ndel++] = page->deleted_ids[i];
	}
	pa.del_key = palloc0(sizeof(char *) * Max(1, pa.ndel));
	pa.del_state = palloc(Max(1, pa.ndel));
	memset(pa.del_state, 'a', Max(1, pa.ndel));
	cap = pa.n + pa.ndel + 1;
	pa.j_op = palloc(sizeof(char *) * cap);
	pa.j_rid = palloc(sizeof(char *) * cap);
	pa.j_hash = palloc(sizeof(char *) * cap);
	pa.j_result = palloc(sizeof(char *) * cap);
	pa.j_detail = palloc(sizeof(char *) * cap);
	pa.f_rid = palloc(sizeof(char *) * cap);
	pa.f_key = palloc(sizeof(char *) * cap);
	pa.f_op = palloc(sizeof(char *) * cap);
	pa.f_code = palloc(sizeof(char *) * cap);
	pa.f_msg = palloc(sizeof(char *) * cap);
	pa.f_state = palloc(sizeof(char *) * cap);

	sync_applying_mirror = m->id;
	PG_TRY();
	{
		page_lock(&pa);
		page_check_encoding(&pa);
		page_pending(&pa, conflict && strcmp(conflict, "remote_wins") == 0);
		page_adopt_pairs(&pa);
		nj0 = pa.nj;

		/* the whole page at once; if the table refuses any of it, record by record */
		if (!in_subxact(apply_step, &pa, work, NULL))
		{
			pa.nj = nj0;		/* what the failed attempt journaled did not happen */
			pa.applied = pa.deleted = 0;
			pa.plan = NULL;		/* (freed with the subtransaction's SPI state) */
			for (i = 0; i < pa.n; i++)
			{
				ErrorData  *e = NULL;

				if (pa.state[i] != 'a')
					continue;
				pa.only = i;
				pa.only_del = -1;
				if (!in_subxact(apply_step, &pa, work, &e))
				{
					pa.state[i] = 'f';
					set_aside(&pa, page->records[i].remote_id, pa.key[i],
							  page->records[i].deleted ? "delete" : pa.key[i] ? "update" : "insert", e);
				}
			}
			for (i = 0; i < pa.ndel; i++)
			{
				ErrorData  *e = NULL;

				if (pa.del_state[i] != 'a')
					continue;
				pa.only = -1;
				pa.only_del = i;
				if (!in_subxact(apply_step, &pa, work, &e))
				{
					pa.del_state[i] = 'f';
					set_aside(&pa, pa.del_rid[i], pa.del_key[i], "delete", e);
				}
			}
		}
	}
	PG_FINALLY();
	{
		sync_applying_mirror = saved;
	}
	PG_END_TRY();
	if (pa.plan != NULL)
		SPI_freeplan(pa.plan);
	*applied += pa.applied;
	*deleted += pa.deleted;
	*failed += pa.nf;

	/* the journal, and the records set aside (sync.errors) */
	if (pa.nj > 0)
	{
		Oid			jt[6] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
		Datum		ja[6];

		ja[0] = Int32GetDatum(m->id);
		ja[1] = text_array(pa.j_op, pa.nj);
		ja[2] = text_array(pa.j_rid, pa.nj);
		ja[3] = text_array(pa.j_hash, pa.nj);
		ja[4] = text_array(pa.j_result, pa.nj);
		ja[5] = text_array(pa.j_detail, pa.nj);
		spi_exec("INSERT INTO sync.journal (mirror, direction, op, remote_id, values_hash, result, detail) "
				 "SELECT $1, 'in', u.op::\"char\", u.rid, u.hash, u.result, u.detail "
				 "FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[]), "
				 "  pg_catalog.unnest($5::pg_catalog.text[]), pg_catalog.unnest($6::pg_catalog.text[])) AS u(op, rid, hash, result, detail)",
				 6, jt, ja, NULL, SPI_OK_INSERT);
	}
	{
		Oid			t[2] = {INT4OID, TEXTARRAYOID};
		Datum		a[2];
		char	  **done = palloc(sizeof(char *) * cap);
		int			ndone = 0;

		a[0] = Int32GetDatum(m->id);
		spi_exec("SELECT 1 FROM sync.inbound_error WHERE mirror OPERATOR(pg_catalog.=) $1 LIMIT 1",
				 1, t, a, NULL, SPI_OK_SELECT);
		if (SPI_processed > 0)
		{
			/* records that went in now leave sync.errors */
			for (i = 0; i < pa.n; i++)
				if (pa.state[i] == 'a')
					done[ndone++] = page->records[i].remote_id;
			for (i = 0; i < pa.ndel; i++)
				if (pa.del_state[i] == 'a' || pa.del_state[i] == 'x')
					done[ndone++] = pa.del_rid[i];
			if (ndone > 0)
			{
				a[1] = text_array(done, ndone);
				spi_exec("DELETE FROM sync.inbound_error WHERE mirror OPERATOR(pg_catalog.=) $1 "
						 "AND remote_id OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[])",
						 2, t, a, NULL, SPI_OK_DELETE);
			}
		}
	}
	if (pa.nf > 0)
	{
		Oid			ft[7] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID};
		Datum		fa[7];
		int			nf = 0,
					j;

		/* a remote ID twice: its last failure */
		for (i = 0; i < pa.nf; i++)
		{
			for (j = i + 1; j < pa.nf; j++)
				if (strcmp(pa.f_rid[i], pa.f_rid[j]) == 0)
					break;
			if (j < pa.nf)
				continue;
			pa.f_rid[nf] = pa.f_rid[i];
			pa.f_key[nf] = pa.f_key[i];
			pa.f_op[nf] = pa.f_op[i];
			pa.f_code[nf] = pa.f_code[i];
			pa.f_msg[nf] = pa.f_msg[i];
			pa.f_state[nf++] = pa.f_state[i];
		}
		fa[0] = Int32GetDatum(m->id);
		fa[1] = text_array(pa.f_rid, nf);
		fa[2] = text_array(pa.f_key, nf);
		fa[3] = text_array(pa.f_op, nf);
		fa[4] = text_array(pa.f_code, nf);
		fa[5] = text_array(pa.f_msg, nf);
		fa[6] = text_array(pa.f_state, nf);
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

	if (!advance)
		return;

	/* the cursor advances with the page it covers, records set aside included */
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
	if (conn->provider->fetch == NULL || m->direction == 'p')
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

/* Pull pages until the remote has no more right now. */
static int64
pull_mirror(int mirror_id, bool own, MemoryContext work, int64 *deleted, int64 *failed)
{
	int64		applied = 0;
	MemoryContext pagecxt = AllocSetContextCreate(work, "sync page", ALLOCSET_DEFAULT_SIZES);

	pull_retry(mirror_id, own, pagecxt, &applied, deleted, failed);
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

			apply_page(m, page, true, pagecxt, &applied, deleted, failed);
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

		spi_exec("UPDATE sync.mirror_state s SET last_pull_at = pg_catalog.now(), failures = 0, last_error = NULL, "
				 "  next_pull_at = pg_catalog.now() OPERATOR(pg_catalog.+) "
				 "    COALESCE((m.options OPERATOR(pg_catalog.->>) 'pull_interval')::pg_catalog.interval, "
				 "                        pg_catalog.make_interval(secs => $2 OPERATOR(pg_catalog./) 1000.0)) "
				 "FROM sync.mirror m WHERE m.id OPERATOR(pg_catalog.=) s.mirror AND s.mirror OPERATOR(pg_catalog.=) $1",
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
	DefineCustomIntVariable("sync.lock_timeout",
							"Longest wait for a row lock on a mirrored table by the worker, sync.pull() and sync.push().",
							"A record whose row a user keeps locked longer is set aside and applied at a later pull; "
							"0 waits indefinitely.",
							&sync_lock_timeout_ms, 5000, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS,
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

	/*
	 * The worker's own statements see only pg_catalog (and sync, by name):
	 * a search_path set for the database or role must not decide what a
	 * superuser runs.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

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
		int64		deleted = 0,
					failed = 0;
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
				pull_mirror(refs[i].id, true, mcxt, &deleted, &failed);
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

/*
 * The library runs only against the schema of its own version: after a
 * package upgrade, a database still at an older version must be updated
 * first (ALTER EXTENSION sync UPDATE).  Checked once per backend.
 */
static void
check_schema_version(void)
{
	static bool checked = false;
	Oid			extoid;
	HeapTuple	tup;
	bool		isnull;
	Datum		v;
	char	   *version;

	if (checked)
		return;
	extoid = get_extension_oid("sync", false);
	tup = SearchSysCache1(EXTENSIONOID, ObjectIdGetDatum(extoid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for extension %u", extoid);
	v = SysCacheGetAttr(EXTENSIONOID, tup, Anum_pg_extension_extversion, &isnull);
	version = isnull ? "?" : TextDatumGetCString(v);
	ReleaseSysCache(tup);
	if (strcmp(version, SYNC_VERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"sync\" is at version %s in this database, but its library is version %s",
						version, SYNC_VERSION),
				 errhint("Run ALTER EXTENSION sync UPDATE.")));
	checked = true;
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

	check_schema_version();
	lifecycle_check_sql();
	nestlevel = pin_search_path();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "sync: SPI_connect failed");
	id = mirror_id_for_table(relid);
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

	check_schema_version();
	lifecycle_check_sql();
	nestlevel = pin_search_path();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "sync: SPI_connect failed");
	id = mirror_id_for_table(relid);
	SPI_finish();
	applied = pull_mirror(id, false, CurrentMemoryContext, &deleted, &failed);
	AtEOXact_GUC(false, nestlevel);
	PG_RETURN_DATUM(result_jsonb(psprintf("{\"applied\": " INT64_FORMAT ", \"deleted\": " INT64_FORMAT
										  ", \"failed\": " INT64_FORMAT "}",
										  applied, deleted, failed)));
}
