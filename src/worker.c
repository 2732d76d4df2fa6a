/* worker.c — placeholder until the worker lands (see worker.h). */
#include "postgres.h"

#include "fmgr.h"

#include "worker.h"

void
worker_init(void)
{
}

void
sync_worker_wake(Oid dboid)
{
}

void
sync_wake_at_commit(void)
{
}

PG_FUNCTION_INFO_V1(sync_wake);

Datum
sync_wake(PG_FUNCTION_ARGS)
{
	sync_wake_at_commit();
	PG_RETURN_VOID();
}
