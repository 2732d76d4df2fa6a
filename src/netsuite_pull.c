/*
 * netsuite_pull.c — reading NetSuite: describe (the metadata catalog),
 * backfill and increments (SuiteQL keyset on (lastmodifieddate, id)),
 * deletes (SuiteQL deletedrecord, else ID reconciliation), fetch.
 *
 * (Being built: until then a mirror of NetSuite is refused with a clear
 * error.)
 */
#include "postgres.h"

#include "netsuite.h"

static void
not_yet(SyncConnection *conn) pg_attribute_noreturn();

static void
not_yet(SyncConnection *conn)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("connection \"%s\": mirroring NetSuite records is not available in this build",
					conn->name)));
}

List *
ns_describe(SyncConnection *conn, const char *object)
{
	not_yet(conn);
}

void
ns_check_mirror(SyncConnection *conn, SyncMirror *m)
{
	not_yet(conn);
}

void
ns_pull_page(SyncConnection *conn, SyncMirror *m, SJson *cursor, SyncPage *page)
{
	not_yet(conn);
}

void
ns_fetch(SyncConnection *conn, SyncMirror *m, char **ids, int n, SyncPage *page)
{
	not_yet(conn);
}
