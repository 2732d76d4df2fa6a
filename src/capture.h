/*
 * capture.h — what the capture trigger shares: its echo flag, outbox
 * coalescing (the one statement that queues a local write), and the fold
 * of the capture log into the outbox.
 */
#ifndef SYNC_CAPTURE_H
#define SYNC_CAPTURE_H

/*
 * Set by the inbound apply (and the write-back of push results) while it
 * writes rows of this mirror, so the capture trigger does not queue them:
 * no echo.  Reset on error by the setter's PG_FINALLY.
 */
extern int	sync_applying_mirror;

/*
 * Outbox coalescing, the one statement that queues a local write: the
 * row's open entry (slot 0, see sync.outbox) absorbs later writes —
 * insert+update stays an insert (all columns), update+update unions the
 * columns.  Parameters: mirror int4, local_key text, op "char", columns
 * name[] (NULL: all), remote_id text.  Operators and functions are
 * qualified: it runs as the extension owner.  sync.resync's repairs use
 * it; the fold (capture.c) uses its ON CONFLICT clause, with the entry's
 * id and time given.
 */
#define OUTBOX_QUEUE_SQL \
	"INSERT INTO sync.outbox AS o (mirror, local_key, op, columns, remote_id) " \
	"VALUES ($1, $2, $3, $4, $5) " OUTBOX_COALESCE_SQL
#define OUTBOX_COALESCE_SQL \
	"ON CONFLICT (mirror, local_key, slot) " \
	"DO UPDATE SET columns = CASE " \
	"  WHEN o.op OPERATOR(pg_catalog.=) 'I' OR o.columns IS NULL OR EXCLUDED.columns IS NULL THEN NULL " \
	"  ELSE ARRAY(SELECT DISTINCT c FROM pg_catalog.unnest(o.columns OPERATOR(pg_catalog.||) EXCLUDED.columns) AS c ORDER BY 1) END, " \
	"  remote_id = COALESCE(EXCLUDED.remote_id, o.remote_id), " \
	"  updated_at = pg_catalog.now()"

/*
 * Fold captured writes from sync.capture_log into sync.outbox (see the head
 * of capture.c): those of one mirror, or with mirror 0 those of every
 * mirror whose fold lock is free.  wait: wait for a mirror's fold lock
 * (else skip the mirror).  limit: at most that many rows, -1 all.  Returns
 * the number folded; -1 when one mirror's lock was held by another process
 * and not waited for.  In a transaction, with SPI not connected by the
 * caller or connected: it connects its own.
 */
extern int64 capture_fold(int32 mirror, bool wait, int64 limit);

#endif							/* SYNC_CAPTURE_H */
