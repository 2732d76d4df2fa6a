/*
 * lifecycle.c — holding a database that must not sync, and journal
 * retention.
 *
 * A database records, in the one-row table sync.instance, the database OID
 * and the server's system identifier of the place where syncing was enabled
 * (CREATE EXTENSION, ALTER EXTENSION UPDATE from 0.1, sync.resume_copy()).
 * pg_dump carries the row (pg_extension_config_dump).  A copy — CREATE
 * DATABASE ... TEMPLATE (another OID), pg_restore (another OID, maybe
 * another server; the restored row joins the one its CREATE EXTENSION
 * wrote) — no longer matches and is held: the worker does no round, no HTTP,
 * and sync.push() / sync.pull() refuse, until sync.resume_copy() or
 * sync.detach_copy().  A physical copy keeps both and cannot be told from a
 * failover: the GUC sync.enabled = off holds every database of a server.
 */
#include "postgres.h"
#include "utils/syscache.h"
#include "commands/extension.h"
#include "catalog/pg_extension.h"

#include <time.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "lifecycle.h"

PG_FUNCTION_INFO_V1(sync_system_identifier);
PG_FUNCTION_INFO_V1(sync_held_reason);

bool		sync_enabled = true;

/* journal retention: rows per batch (one transaction), time box per round */
#define RETENTION_BATCH			20000
#define RETENTION_TIME_BOX_MS	1000

void
lifecycle_define_gucs(void)
{
	DefineCustomBoolVariable("sync.enabled",
							 "Lets the sync workers of this server talk to the remotes.",
							 "Off holds every sync worker idle (no HTTP at all) and makes sync.push() and sync.pull() refuse: "
							 "set it in the configuration of a physical copy of the server (pg_basebackup, disk snapshot) "
							 "that must not act on the remotes.",
							 &sync_enabled, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
}

static char *
system_identifier_text(void)
{
	return psprintf(UINT64_FORMAT, GetSystemIdentifier());
}

/*
 * The reason a database with the identities (oids[i], sysids[i]) recorded in
 * sync.instance is held, or NULL.
 */
static char *
held_reason(int n, const Oid *oids, char *const *sysids)
{
	char	   *mine = system_identifier_text();
	int			i;

	if (!sync_enabled)
		return pstrdup("sync.enabled is off on this server");
	if (n == 0)
		return pstrdup("no identity is recorded in sync.instance: run sync.resume_copy() to sync from this database");
	for (i = 0; i < n; i++)
	{
		if (oids[i] != MyDatabaseId || sysids[i] == NULL || strcmp(sysids[i], mine) != 0)
			return psprintf("this database is a copy: syncing was enabled in database OID %u on the server with system identifier %s "
							"(this is database OID %u%s); run sync.resume_copy() to sync from this database instead, "
							"or sync.detach_copy() to remove its connections and mirrors",
							oids[i], sysids[i] ? sysids[i] : "?", MyDatabaseId,
							(sysids[i] && strcmp(sysids[i], mine) == 0) ? "" : " on another server");
	}
	return NULL;
}

/* sync._system_identifier() -> text */
Datum
sync_system_identifier(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(system_identifier_text()));
}

/*
 * sync._held_reason(oid[], text[]) -> text: why this database is held
 * (NULL: it is not), given the rows of sync.instance (NULL arrays: none).
 */
Datum
sync_held_reason(PG_FUNCTION_ARGS)
{
	Datum	   *od = NULL,
			   *sd = NULL;
	bool	   *on = NULL,
			   *sn = NULL;
	int			no = 0,
				ns = 0,
				i;
	Oid		   *oids;
	char	  **sysids;
	char	   *r;

	if (!PG_ARGISNULL(0))
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(0), OIDOID, sizeof(Oid), true, TYPALIGN_INT,
						  &od, &on, &no);
	if (!PG_ARGISNULL(1))
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT,
						  &sd, &sn, &ns);
	if (no != ns)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sync._held_reason: %d database OIDs but %d system identifiers", no, ns)));
	oids = palloc0(sizeof(Oid) * Max(no, 1));
	sysids = palloc0(sizeof(char *) * Max(no, 1));
	for (i = 0; i < no; i++)
	{
		oids[i] = on[i] ? InvalidOid : DatumGetObjectId(od[i]);
		sysids[i] = sn[i] ? NULL : TextDatumGetCString(sd[i]);
	}
	r = held_reason(no, oids, sysids);
	if (r == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(r));
}

char *
lifecycle_held_reason(void)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid		   *oids;
	char	  **sysids;
	int			n,
				i;
	char	   *r;

	if (!sync_enabled)
		return pstrdup("sync.enabled is off on this server");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "sync: SPI_connect failed");
	if (SPI_execute("SELECT i.database_oid, i.system_identifier FROM sync.instance i", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "sync: could not read sync.instance");
	n = (int) SPI_processed;
	oids = MemoryContextAllocZero(caller, sizeof(Oid) * Max(n, 1));
	sysids = MemoryContextAllocZero(caller, sizeof(char *) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
		char	   *s = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);

		oids[i] = isnull ? InvalidOid : DatumGetObjectId(d);
		sysids[i] = s ? MemoryContextStrdup(caller, s) : NULL;
	}
	SPI_finish();
	r = held_reason(n, oids, sysids);
	for (i = 0; i < n; i++)
		if (sysids[i])
			pfree(sysids[i]);
	pfree(oids);
	pfree(sysids);
	return r;
}

/*
 * The installed version of the extension in this database (pg_extension),
 * or NULL: the one place the worker, sync.push()/sync.pull() and the hold
 * check read it.  Inside a transaction.
 */
char *
lifecycle_installed_version(void)
{
	Oid			extoid = get_extension_oid("sync", true);
	HeapTuple	tup;
	bool		isnull;
	Datum		v;
	char	   *r = NULL;

	if (!OidIsValid(extoid))
		return NULL;
	tup = SearchSysCache1(EXTENSIONOID, ObjectIdGetDatum(extoid));
	if (!HeapTupleIsValid(tup))
		return NULL;
	v = SysCacheGetAttr(EXTENSIONOID, tup, Anum_pg_extension_extversion, &isnull);
	if (!isnull)
		r = TextDatumGetCString(v);
	ReleaseSysCache(tup);
	return r;
}

void
lifecycle_check_sql(void)
{
	char	   *v;
	char	   *why;

	if (!sync_enabled)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("sync is disabled on this server (sync.enabled = off)"),
				 errdetail("Nothing is sent to or fetched from the remotes while sync.enabled is off."),
				 errhint("Set sync.enabled = on in the server's configuration and reload it, if this server should sync.")));

	/*
	 * The library runs only against the schema of its own version: after a
	 * package upgrade, a database still at an older version (which has no
	 * sync.instance yet) must be updated first.
	 */
	v = lifecycle_installed_version();
	if (v == NULL || strcmp(v, SYNC_VERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"sync\" is at version %s in this database, but its library is version %s",
						v ? v : "?", SYNC_VERSION),
				 errhint("Run ALTER EXTENSION sync UPDATE.")));
	why = lifecycle_held_reason();
	if (why != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("database \"%s\" is held: it does not sync until its owner says so",
						get_database_name(MyDatabaseId)),
				 errdetail("%s.", why),
				 errhint("Nothing is sent until its owner decides: SELECT sync.resume_copy() makes this database the one that syncs, "
						 "SELECT sync.detach_copy() removes its connections and mirrors.")));
}

bool
lifecycle_journal_retention(int days)
{
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz cutoff;
	Oid			types[1] = {TIMESTAMPTZOID};
	Datum		args[1];
	uint64		total = 0;
	bool		more = false;

	/* one cutoff for the whole run: rows written meanwhile are not chased */
	cutoff = start - (TimestampTz) days * USECS_PER_DAY;
	args[0] = TimestampTzGetDatum(cutoff);
	for (;;)
	{
		uint64		n;

		CHECK_FOR_INTERRUPTS();
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "sync: SPI_connect failed");
		if (SPI_execute_with_args("DELETE FROM sync.journal WHERE ctid OPERATOR(pg_catalog.=) ANY "
								  "(ARRAY(SELECT j.ctid FROM sync.journal j "
								  "       WHERE j.at OPERATOR(pg_catalog.<) $1 LIMIT " CppAsString2(RETENTION_BATCH) "))",
								  1, types, args, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "sync: journal retention failed");
		n = SPI_processed;
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		total += n;
		if (n < RETENTION_BATCH)
			break;
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), RETENTION_TIME_BOX_MS))
		{
			more = true;
			break;
		}
	}
	if (total > 0)
		elog(DEBUG1, "sync: journal retention deleted " UINT64_FORMAT " rows older than %d days%s",
			 total, days, more ? "; more next round" : "");
	return more;
}
