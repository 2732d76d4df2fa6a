/*
 * salesforce_cdc.h — Salesforce Change Data Capture over the Streaming API
 * (CometD long polling): the mirror option "realtime".  docs/salesforce.md,
 * "Real time (Change Data Capture)".
 */
#ifndef SYNC_SALESFORCE_CDC_H
#define SYNC_SALESFORCE_CDC_H

#include "provider.h"

/*
 * The worker's round, when nothing else is due now (next_ms != 0): open the
 * streams of the realtime mirrors, long-poll them until a change arrives,
 * the worker is woken (a commit to push), or next_ms passes, and apply what
 * arrived.  Returns the new next_ms (0: run a round now).  any_realtime:
 * whether the round's query saw a realtime mirror (false: no query here
 * unless streams are open, to close them).
 */
extern long cdc_stream_round(long next_ms, bool any_realtime);

/*
 * The Sforce-Call-Options header value sent with every write
 * ("client=sync-<system identifier><database OID>"): the change events of
 * our own writes name it in changeOrigin and are skipped.
 */
extern const char *sf_cdc_call_options(void);

/* sync.mirror(): check the option "realtime" (and, when true, the org). */
extern void sf_cdc_check_mirror(SyncConnection *conn, SyncMirror *m);

#endif							/* SYNC_SALESFORCE_CDC_H */
