/*
 * deletes.c — the delete policies of a mirror (options "delete" and
 * "local_delete"), where they need more than a choice in apply.c.
 *
 *   "delete": "delete"   a remote delete deletes the row (the default)
 *             "keep"     nothing happens to the row (apply.c gathers no deletes)
 *             "flag"     the row stays and its remote_deleted_at column is set;
 *                        local changes to a flagged row are parked, not sent;
 *                        a record that comes back live (undelete, restore)
 *                        clears the flag, and the parked changes are sent
 *                        (local_wins) or dropped (remote_wins)
 *   "local_delete": "propagate" | "ignore"   the latter is the capture
 *                        trigger's own: sync._install_triggers attaches it
 *                        without DELETE, so a local delete queues nothing
 *
 * The remote_deleted_at column is added by sync._delete_policy_column(),
 * which sync._install_triggers calls (sync.mirror, and any change of the
 * mapping or options that reinstalls the triggers).  If it was dropped by
 * hand, remote deletes are set aside with an error saying so, and nothing
 * counts as flagged.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "conn.h"
#include "engine_int.h"
#include "provider.h"

/* at most this many IDs of a delete feed are checked with the remote per page */
#define VERIFY_MAX 10000

/* Does the mirror's table have the flag column? */
static bool
flag_column_exists(SyncMirror *m)
{
	return get_attnum(m->relid, SYNC_REMOTE_DELETED_COLUMN) != InvalidAttrNumber;
}

/*
 * The remote deletes under "flag": rows of remote IDs $1 (text[]) not
 * flagged yet are flagged; returns their remote IDs.  Run as the table's
 * owner.
 */
char *
deletes_flag_sql(SyncMirror *m)
{
	if (!flag_column_exists(m))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("table %s has no column \"%s\" for the mirror's delete policy \"flag\"",
						m->qualified_table, SYNC_REMOTE_DELETED_COLUMN),
				 errdetail("A remote delete of a record sets this column on its row."),
				 errhint("Add it with SELECT sync._delete_policy_column('%s'::regclass), then SELECT sync.retry('%s').",
						 m->qualified_table, m->qualified_table)));
	return psprintf("UPDATE %s t SET %s = pg_catalog.now() "
					"WHERE t.%s OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) AND t.%s IS NULL "
					"RETURNING t.%s::pg_catalog.text",
					m->qualified_table, quote_identifier(SYNC_REMOTE_DELETED_COLUMN),
					quote_identifier(m->remote_id_column),
					quote_identifier(SYNC_REMOTE_DELETED_COLUMN),
					quote_identifier(m->remote_id_column));
}

/*
 * Records of remote IDs rids[] are live: the flagged rows among them lose
 * their flag (as the table's owner), and the local changes parked because
 * the row was flagged are queued again (local_wins: they are sent now) or
 * dropped (remote_wins: the restored record's values won).  *restored: the
 * remote IDs of the rows unflagged.  Inside SPI, within the page's apply.
 */
void
deletes_restore(SyncMirror *m, char **rids, int n, char ***restored, int *nrestored)
{
	Oid			t[2] = {TEXTARRAYOID, TEXTARRAYOID};
	Datum		a[2];
	OwnerScope	os;
	char	  **keys;
	int			nr,
				i;

	*nrestored = 0;
	*restored = NULL;
	if (n == 0 || !flag_column_exists(m))
		return;
	a[0] = text_array(rids, n);
	owner_begin(m->owner, &os);
	spi_exec(psprintf("UPDATE %s t SET %s = NULL "
					  "WHERE t.%s OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) AND t.%s IS NOT NULL "
					  "RETURNING t.%s::pg_catalog.text, t.%s::pg_catalog.text",
					  m->qualified_table, quote_identifier(SYNC_REMOTE_DELETED_COLUMN),
					  quote_identifier(m->remote_id_column),
					  quote_identifier(SYNC_REMOTE_DELETED_COLUMN),
					  quote_identifier(m->remote_id_column), quote_identifier(m->key_column)),
			 1, t, a, NULL, SPI_OK_UPDATE_RETURNING);
	owner_end(&os);
	nr = (int) SPI_processed;
	if (nr == 0)
		return;
	*restored = palloc(sizeof(char *) * nr);
	keys = palloc(sizeof(char *) * nr);
	for (i = 0; i < nr; i++)
	{
		(*restored)[i] = getv(i, 1);
		keys[i] = getv(i, 2);
	}
	*nrestored = nr;

	/* sync's catalog, as the caller */
	t[0] = INT4OID;
	a[0] = Int32GetDatum(m->id);
	a[1] = text_array(keys, nr);
	if (engine_mirror(m)->conflict == CONFLICT_REMOTE_WINS)
		spi_exec("DELETE FROM sync.outbox o WHERE o.mirror OPERATOR(pg_catalog.=) $1 "
				 "AND o.local_key OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[]) "
				 "AND o.state OPERATOR(pg_catalog.=) 'parked' "
				 "AND o.error_code OPERATOR(pg_catalog.=) 'REMOTE_DELETED'",
				 2, t, a, NULL, SPI_OK_DELETE);
	else
		spi_exec("UPDATE sync.outbox o SET state = 'pending', next_attempt_at = pg_catalog.now(), "
				 "claimed_until = NULL, claimed_by = NULL, error_code = NULL, error_message = NULL, "
				 "error_fields = NULL, updated_at = pg_catalog.now() "
				 "WHERE o.mirror OPERATOR(pg_catalog.=) $1 "
				 "AND o.local_key OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[]) "
				 "AND o.state OPERATOR(pg_catalog.=) 'parked' "
				 "AND o.error_code OPERATOR(pg_catalog.=) 'REMOTE_DELETED'",
				 2, t, a, NULL, SPI_OK_UPDATE);
}

/*
 * Claimed updates of flagged rows are not sent: rejected here, so that the
 * engine parks them (sync.errors, code REMOTE_DELETED) until the record is
 * restored remotely (deletes_restore queues them again) or the user deletes
 * the row or calls sync.retry().  Inside SPI, in the claim's transaction.
 */
void
deletes_skip_flagged(SyncMirror *m, SyncPushItem *items, int nitems, MemoryContext work)
{
	char	  **keys;
	int			nkeys = 0,
				i,
				r;
	Oid			t[1] = {TEXTARRAYOID};
	Datum		a[1];
	OwnerScope	os;
	MemoryContext old;

	if (engine_mirror(m)->on_delete != DELETE_FLAG || nitems == 0 || !flag_column_exists(m))
		return;
	keys = palloc(sizeof(char *) * nitems);
	for (i = 0; i < nitems; i++)
		if (items[i].result == PUSH_PENDING && items[i].op == 'U')
			keys[nkeys++] = items[i].local_key;
	if (nkeys == 0)
		return;
	a[0] = text_array(keys, nkeys);
	owner_begin(m->owner, &os);
	spi_exec(psprintf("SELECT t.%s::pg_catalog.text, t.%s::pg_catalog.text FROM %s t "
					  "WHERE t.%s OPERATOR(pg_catalog.=) ANY ($1::%s[]) AND t.%s IS NOT NULL",
					  quote_identifier(m->key_column),
					  quote_identifier(SYNC_REMOTE_DELETED_COLUMN), m->qualified_table,
					  quote_identifier(m->key_column), m->key_type,
					  quote_identifier(SYNC_REMOTE_DELETED_COLUMN)),
			 1, t, a, NULL, SPI_OK_SELECT);
	owner_end(&os);
	old = MemoryContextSwitchTo(work);
	for (r = 0; r < (int) SPI_processed; r++)
	{
		char	   *key = getv(r, 1);

		for (i = 0; i < nitems; i++)
		{
			SyncPushItem *it = &items[i];

			if (it->result != PUSH_PENDING || it->op != 'U' || strcmp(it->local_key, key) != 0)
				continue;
			it->result = PUSH_REJECTED;
			it->error_code = "REMOTE_DELETED";
			it->error_message =
				psprintf("not sent: record %s was deleted remotely (%s = %s) and the mirror's "
						 "delete policy \"flag\" sends no changes to it; they go out when the "
						 "record is restored remotely, or delete row %s and call sync.retry() "
						 "to drop them",
						 it->remote_id ? it->remote_id : "?", SYNC_REMOTE_DELETED_COLUMN,
						 getv(r, 2), key);
		}
	}
	MemoryContextSwitchTo(old);
}

static int
cstring_ptr_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * A delete feed's IDs (del[0..ndel)) less those the same page brings as a
 * live record: the record was restored after the delete the feed logs (a
 * delete log keeps its entries after an undelete).  Returns the new count.
 */
int
deletes_drop_live(char **del, int ndel, SyncRecord *records, int nrecords)
{
	char	  **live;
	int			nlive = 0,
				n = 0,
				i;

	if (ndel == 0 || nrecords == 0)
		return ndel;
	live = palloc(sizeof(char *) * nrecords);
	for (i = 0; i < nrecords; i++)
		if (!records[i].deleted && records[i].remote_id != NULL)
			live[nlive++] = records[i].remote_id;
	if (nlive == 0)
		return ndel;
	qsort(live, nlive, sizeof(char *), cstring_ptr_cmp);
	for (i = 0; i < ndel; i++)
		if (del[i] == NULL || bsearch(&del[i], live, nlive, sizeof(char *), cstring_ptr_cmp) == NULL)
			del[n++] = del[i];
	pfree(live);
	return n;
}

/*
 * A delete feed may be a log (Salesforce's getDeleted lists the records
 * deleted in its window, whether or not they were restored since — perhaps
 * restored and pulled back already).  So before a feed's IDs delete or flag
 * rows, the remote is asked for those records (the provider's fetch): the
 * ones it returns live join the page as records (and are applied, clearing
 * a flag), the rest stay deletes.  Only IDs whose rows a delete would change
 * are asked about (rows that exist, under "flag" not flagged yet): a feed
 * of deletes applied already costs no request.  Full live-ID lists
 * (reconcile) and pages under "keep" are left alone.  Called between the
 * page's request and its apply; like them, the request runs outside any
 * transaction in the worker.
 */
void
deletes_verify_feed(SyncConnection *conn, SyncMirror *m, SyncPage *page, bool own,
					MemoryContext cxt)
{
	DeletePolicy policy = engine_mirror(m)->on_delete;
	const SyncProvider *prov = conn->provider;
	char	  **ask = NULL;
	int			nask = 0,
				i;
	SyncPage   *got;
	SyncRecord *recs;
	MemoryContext old;

	if (page->reconcile || page->ndeleted_ids == 0 || policy == DELETE_KEEP || prov->fetch == NULL)
		return;
	page->ndeleted_ids = deletes_drop_live(page->deleted_ids, page->ndeleted_ids,
										   page->records, page->nrecords);
	if (page->ndeleted_ids == 0)
		return;

	xact_begin(own);
	{
		Oid			t[1] = {TEXTARRAYOID};
		Datum		a[1];
		OwnerScope	os;
		bool		flag = policy == DELETE_FLAG && flag_column_exists(m);

		a[0] = text_array(page->deleted_ids, page->ndeleted_ids);
		owner_begin(m->owner, &os);
		spi_exec(psprintf("SELECT t.%s::pg_catalog.text FROM %s t "
						  "WHERE t.%s OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])%s LIMIT %d",
						  quote_identifier(m->remote_id_column), m->qualified_table,
						  quote_identifier(m->remote_id_column),
						  flag ? psprintf(" AND t.%s IS NULL", quote_identifier(SYNC_REMOTE_DELETED_COLUMN)) : "",
						  VERIFY_MAX),
				 1, t, a, NULL, SPI_OK_SELECT);
		owner_end(&os);
		old = MemoryContextSwitchTo(cxt);
		ask = palloc(sizeof(char *) * Max(1, SPI_processed));
		for (i = 0; i < (int) SPI_processed; i++)
		{
			char	   *rid = getv(i, 1);

			if (prov->valid_remote_id == NULL || prov->valid_remote_id(rid))
				ask[nask++] = rid;
		}
		MemoryContextSwitchTo(old);
	}
	xact_end(own);
	if (nask == 0)
		return;

	old = MemoryContextSwitchTo(cxt);
	got = palloc0(sizeof(SyncPage));
	got->total = -1;
	prov->fetch(conn, m, ask, nask, got);
	if (got->nrecords > 0)
	{
		page->ndeleted_ids = deletes_drop_live(page->deleted_ids, page->ndeleted_ids,
											   got->records, got->nrecords);
		recs = palloc(sizeof(SyncRecord) * (page->nrecords + got->nrecords));
		if (page->nrecords > 0)
			memcpy(recs, page->records, sizeof(SyncRecord) * page->nrecords);
		memcpy(recs + page->nrecords, got->records, sizeof(SyncRecord) * got->nrecords);
		page->records = recs;
		page->nrecords += got->nrecords;
	}
	MemoryContextSwitchTo(old);
}
