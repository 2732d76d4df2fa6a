/*
 * adaptive.h — adaptive polling for mirrors of providers without a change
 * stream (HubSpot, NetSuite): see adaptive.c and docs/realtime.md.
 */
#ifndef SYNC_ADAPTIVE_H
#define SYNC_ADAPTIVE_H

#include "postgres.h"

#include "provider.h"

extern int	sync_pull_interval_min_ms;

extern void adaptive_define_gucs(void);
extern void adaptive_note_pull_done(SyncMirror *m, int64 changed);
extern long adaptive_sooner_ms(long next_ms);

/* hubspot.c: the share of today's request budget left, 0 to 1 */
extern double hubspot_daily_share_left(SyncConnection *conn);

#endif							/* SYNC_ADAPTIVE_H */
