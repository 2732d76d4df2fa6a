/*
 * engine.c — scheduling of push and pull work (being built; see engine.h).
 */
#include "postgres.h"

#include "engine.h"

long
sync_engine_cycle(void)
{
	return -1;
}
