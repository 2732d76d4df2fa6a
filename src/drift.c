/*
 * drift.c — schema drift: the worker describes each mirror's remote object
 * every sync.drift_check_interval, and at once (at most every ten seconds)
 * after the remote refused a field as unknown, on a push (drift_note_push)
 * or a pull (the mirror's last error).  The comparison itself is SQL
 * (sync._drift_note): fields deleted remotely, retyped, newly available go
 * to sync.schema_drift (the view sync.drift); a deleted field is left out
 * of the mirror's pulls and pushes (mirror_load) and the entries the remote
 * refused for it go again without it.
 *
 *   [pick a due mirror, load it, commit] -> describe -> [compare, record, commit]
 *
 * Low priority: one check per round, after the pushes and pulls.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "conn.h"
#include "drift.h"
#include "engine_int.h"
#include "pause.h"

int			sync_drift_check_interval_ms = 3600 * 1000;

void
drift_define_gucs(void)
{
	DefineCustomIntVariable("sync.drift_check_interval",
							"Time between descriptions of each mirror's remote object, to detect schema drift.",
							"0 turns the periodic check off; a field the remote refuses as unknown is "
							"checked at once regardless.",
							&sync_drift_check_interval_ms, 3600 * 1000, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/*
 * A batch was recorded: if the remote refused an item for a field it does
 * not know (sync._unknown_field_error), the mirror's check is requested.
 * Inside SPI, in the transaction that recorded the batch.
 */
void
drift_note_push(SyncMirror *m, SyncPushItem *items, int n)
{
	char	  **codes = palloc(sizeof(char *) * Max(1, n));
	char	  **msgs = palloc(sizeof(char *) * Max(1, n));
	int			k = 0,
				i;

	for (i = 0; i < n; i++)
		if (items[i].result == PUSH_REJECTED &&
			(items[i].error_code != NULL || items[i].error_message != NULL))
		{
			codes[k] = items[i].error_code;
			msgs[k++] = items[i].error_message;
		}
	if (k > 0)
	{
		Oid			t[3] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID};
		Datum		a[3] = {Int32GetDatum(m->id), text_array(codes, k), text_array(msgs, k)};

		spi_exec("INSERT INTO sync.drift_state AS ds (mirror, requested_at) "
				 "SELECT $1, pg_catalog.now() WHERE EXISTS ("
				 "  SELECT 1 FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.text[]), "
				 "                           pg_catalog.unnest($3::pg_catalog.text[])) AS u(code, message) "
				 "   WHERE sync._unknown_field_error(u.code, u.message)) "
				 "ON CONFLICT (mirror) DO UPDATE SET requested_at = pg_catalog.now()",
				 3, t, a, NULL, SPI_OK_INSERT);
	}
}

/* The description as sync._drift_note reads it: [{name, type, local_type, role}] */
static char *
describe_json(List *fields)
{
	SJson	   *arr = sjson_new_array();
	ListCell   *lc;

	foreach(lc, fields)
	{
		SyncField  *f = (SyncField *) lfirst(lc);
		SJson	   *o = sjson_append_object(arr);

		sjson_add_string(o, "name", f->remote_name);
		sjson_add_string(o, "type", f->remote_type);
		if (f->local_type)
			sjson_add_string(o, "local_type", f->local_type);
		else
			sjson_add_null(o, "local_type");
		sjson_add_string(o, "role", f->role == FIELD_ID ? "id" : f->role == FIELD_STAMP ? "stamp" : "data");
	}
	return sjson_serialize(arr);
}

/* Describe one mirror's remote object and record the drift.  In the worker. */
static void
drift_check(int mirror_id, const char *how, MemoryContext cxt)
{
	MemoryContext old = CurrentMemoryContext;

	PG_TRY();
	{
		SyncMirror *m;
		SyncConnection *conn;
		char	   *connection;
		char	   *json;
		List	   *fields;
		Oid			t[3] = {INT4OID, TEXTOID, TEXTOID};
		Datum		a[3];

		xact_begin(true);
		m = mirror_load(mirror_id, cxt, &connection);
		conn = conn_get(connection);
		xact_end(true);

		/* the network, outside any transaction */
		MemoryContextSwitchTo(cxt);
		fields = conn->provider->describe(conn, m->remote_object);
		json = describe_json(fields);
		MemoryContextSwitchTo(old);

		xact_begin(true);
		a[0] = Int32GetDatum(mirror_id);
		a[1] = CStringGetTextDatum(json);
		a[2] = CStringGetTextDatum(how);
		spi_exec("SELECT sync._drift_note($1, $2::pg_catalog.jsonb, $3)", 3, t, a, NULL, SPI_OK_SELECT);
		save_usage(conn);
		xact_end(true);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		Oid			t[2] = {INT4OID, TEXTOID};
		Datum		a[2];

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(LOG,
				(errmsg("sync: mirror %d: schema check failed: %s", mirror_id, edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
		xact_begin(true);
		a[0] = Int32GetDatum(mirror_id);
		a[1] = CStringGetTextDatum(error_text(edata));
		spi_exec("SELECT sync._drift_failed($1, $2)", 2, t, a, NULL, SPI_OK_SELECT);
		xact_end(true);
		MemoryContextSwitchTo(old);
	}
	PG_END_TRY();
}

/*
 * The worker's part of a round: the mirror whose check is most overdue, if
 * any — requested ones first (a refused field: at most every ten seconds),
 * then those whose sync.drift_check_interval has passed since the last
 * check (a new mirror: since it was made).  Returns whether another is due.
 */
bool
drift_round(MemoryContext work)
{
	MemoryContext cxt = AllocSetContextCreate(work, "sync drift", ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Oid			t[1] = {INT4OID};
	Datum		a[1] = {Int32GetDatum(sync_drift_check_interval_ms)};
	int			id = 0;
	char	   *how = NULL;
	bool		more = false;

	xact_begin(true);
	/* the conditions: engine_int.h (the round's query tests them too) */
	spi_exec("SELECT m.id, r.requested FROM " DUE_DRIFT_FROM_SQL " "
			 "CROSS JOIN LATERAL (SELECT " DUE_DRIFT_REQUESTED_SQL " AS requested, "
			 "  " DUE_DRIFT_PERIODIC_SQL " AS periodic OFFSET 0) r "
			 "WHERE (r.requested OR r.periodic) AND " PAUSE_MIRROR_ACTIVE_SQL " "
			 "ORDER BY r.requested DESC, COALESCE(d.checked_at, m.created_at), m.id LIMIT 2",
			 1, t, a, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		id = atoi(getv(0, 1));
		how = MemoryContextStrdup(cxt, strcmp(getv(0, 2), "t") == 0 ?
								  "after the remote refused a field" : "periodic");
		more = SPI_processed > 1;
	}
	xact_end(true);
	if (id > 0)
		drift_check(id, how, cxt);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return more;
}
