/*
 * pause.c — paused mirrors and connections, as the engine sees them.
 *
 * A mirror is paused when sync.paused has a row for it or for its
 * connection (sync.pause(), sync.pause_connection(), src/sql/70_pause.sql).
 * Then nothing is pushed or pulled for it: the worker does not choose it for
 * a round (PAUSE_MIRROR_ACTIVE_SQL in engine.c, ROUND_ACTIVE_SQL in
 * round_due; fill_round, drift_round and the change stream's query too), a
 * round already under way stops before its next request (push_mirror,
 * pull_mirror, pull_retry and fill_mirror in alter.c ask
 * pause_mirror_paused() before each claim or page), and sync.push() /
 * sync.pull() refuse it (pause_check_sql()).  Capture is not affected: local
 * writes queue and coalesce in sync.outbox and go out on resume.
 *
 * The database-level holds (a copy of the database, sync.enabled = off) are
 * lifecycle.c's: they are detected rather than declared, and are checked
 * before anything here.  sync.status shows both through the same columns
 * (paused, paused_since, paused_reason, paused_by).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "pause.h"

/*
 * Whether the mirror is paused; if so, SPI_tuptable holds its pause, the
 * connection's first: table, connection, whether it is the connection's
 * pause, since, by whom.
 */
bool
pause_mirror_paused(int mirror_id)
{
	Oid			types[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(mirror_id)};

	if (SPI_execute_with_args("SELECT m.local_table::pg_catalog.text, m.connection, pz.mirror IS NULL, "
							  "       pz.since, pz.paused_by "
							  "FROM sync.mirror m JOIN sync.paused pz "
							  "  ON pz.mirror OPERATOR(pg_catalog.=) m.id "
							  "  OR pz.connection OPERATOR(pg_catalog.=) m.connection "
							  "WHERE m.id OPERATOR(pg_catalog.=) $1 "
							  "ORDER BY pz.mirror IS NULL DESC LIMIT 1",
							  1, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "sync: could not read sync.paused");
	return SPI_processed > 0;
}

void
pause_check_sql(int mirror_id, const char *what)
{
	char	   *table,
			   *connection,
			   *since,
			   *by;
	bool		whole;

	if (!pause_mirror_paused(mirror_id))
		return;
	table = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	connection = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	whole = strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3), "t") == 0;
	since = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);
	by = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5);
	if (whole)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s: connection \"%s\" is paused: table %s is neither pushed nor pulled until it is resumed",
						what, connection, table),
				 errdetail("The connection was paused by %s at %s. Local writes are still queued; they are sent when it is resumed.",
						   by, since),
				 errhint("SELECT sync.resume_connection(%s) resumes every mirror of the connection.",
						 quote_literal_cstr(connection))));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("%s: table %s is paused: it is neither pushed nor pulled until it is resumed",
					what, table),
			 errdetail("It was paused by %s at %s. Local writes are still queued; they are sent when it is resumed.",
					   by, since),
			 errhint("SELECT sync.resume(%s) resumes it.", quote_literal_cstr(table))));
}
