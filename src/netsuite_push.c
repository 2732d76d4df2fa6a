/*
 * netsuite_push.c — writing NetSuite records: PUT by external ID (creates
 * exactly once), POST, PATCH with only the changed fields, DELETE, up to
 * the connection's concurrency; o:errorDetails parked per record.
 *
 * (Being built.)
 */
#include "postgres.h"

#include "netsuite.h"

void
ns_check_push_options(SyncConnection *conn, SyncMirror *m)
{
}

int
ns_batch_max(SyncConnection *conn, SyncMirror *m, char op)
{
	return 1;
}

void
ns_push(SyncConnection *conn, SyncMirror *m, SyncPushItem *items, int n)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("connection \"%s\": writing NetSuite records is not available in this build",
					conn->name)));
}
