/* worker.c — placeholder until the worker lands (see worker.h). */
#include "postgres.h"

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
