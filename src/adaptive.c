/*
 * adaptive.c — adaptive polling for HubSpot and NetSuite mirrors.
 *
 * Neither remote offers a change stream a database can consume (HubSpot's
 * webhooks need a public endpoint), so their mirrors poll.  The interval
 * adapts: after a pull that applied changes (records written or deleted)
 * the next pull comes after sync.pull_interval_min (2 s by default); after
 * each pull that found nothing new the interval doubles, up to the
 * mirror's pull_interval (else sync.pull_interval).  A change after an idle
 * spell is thus seen within one configured interval, and the pulls after it
 * come quickly again while changes keep flowing.
 *
 * The interval in force is not kept anywhere: it is the previous one,
 * next_pull_at - last_pull_at of sync.mirror_state before the update, so it
 * survives a worker restart and needs no catalog column.
 *
 * Limits: HubSpot's search endpoint has its own pace (5 requests/s), kept by
 * hubspot.c's search bucket whatever the schedule asks; the daily budget is
 * shared with pushes, so when less than ADAPTIVE_BUDGET_SHARE of it is left
 * a HubSpot mirror polls at its configured interval only.  Salesforce
 * mirrors keep the fixed interval (their fast path is Change Data Capture,
 * salesforce_cdc.c).  sync.pull_interval_min = 0 turns adaptation off.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "adaptive.h"
#include "conn.h"
#include "engine_int.h"

/* below this share of the daily budget left, no polling faster than configured */
#define ADAPTIVE_BUDGET_SHARE 0.5

int			sync_pull_interval_min_ms = 2000;

/* the soonest next pull set by this process's pulls since the worker last asked */
static TimestampTz soonest_pull = 0;

static void
note_next_pull(long ms)
{
	TimestampTz at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), Max(ms, 0));

	if (soonest_pull == 0 || at < soonest_pull)
		soonest_pull = at;
}

/*
 * For the worker's round (engine.c): next_ms, or sooner if a pull of this
 * round set its mirror's next pull sooner.  mirrors_due() computed next_ms
 * before the pulls ran, from the mirrors not due then; without this, an
 * adaptive mirror pulled in the round would wait sync.poll_interval (10 s)
 * whatever its own interval.  (Other mirrors keep the worker's old
 * behaviour.)
 */
long
adaptive_sooner_ms(long next_ms)
{
	long		ms;

	if (soonest_pull == 0)
		return next_ms;
	ms = (long) Max((soonest_pull - GetCurrentTimestamp()) / 1000, 1);
	soonest_pull = 0;
	return next_ms < 0 ? ms : Min(next_ms, ms);
}

void
adaptive_define_gucs(void)
{
	DefineCustomIntVariable("sync.pull_interval_min",
							"Shortest time between pulls of a HubSpot or NetSuite mirror while changes flow.",
							"After a pull that applied changes the next one comes after this; after each pull "
							"with nothing new the interval doubles up to the mirror's pull_interval. "
							"0 turns adaptive polling off.",
							&sync_pull_interval_min_ms, 2000, 0, 86400000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/*
 * Whether the mirror polls adaptively now; *slow is set when it does but the
 * remote's daily budget holds it to the configured interval.
 */
static bool
adaptive_applies(SyncMirror *m, bool *slow)
{
	Oid			t[1] = {INT4OID};
	Datum		a[1] = {Int32GetDatum(m->id)};
	SyncConnection *conn;
	const char *provider;

	*slow = false;
	if (sync_pull_interval_min_ms <= 0)
		return false;
	/* the connection as the pull saw it (conn.c reads its catalog as its owner) */
	spi_exec("SELECT m.connection FROM sync.mirror m WHERE m.id OPERATOR(pg_catalog.=) $1",
			 1, t, a, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return false;
	conn = conn_get(getv(0, 1));
	provider = conn->provider->name;
	if (strcmp(provider, "hubspot") == 0)
	{
		*slow = hubspot_daily_share_left(conn) < ADAPTIVE_BUDGET_SHARE;
		return true;
	}
	return strcmp(provider, "netsuite") == 0;
}

/*
 * A pull ran to the end of what the remote had, having applied `changed`
 * records: like note_pull_done() (catalog.c), with the adaptive interval for
 * the mirrors it applies to.
 */
void
adaptive_note_pull_done(SyncMirror *m, int64 changed)
{
	Interval   *interval = engine_mirror(m)->pull_interval;
	bool		slow;
	Oid			t[6] = {INT4OID, INT4OID, INTERVALOID, INT4OID, BOOLOID, BOOLOID};
	Datum		a[6];
	char		n[6] = {' ', ' ', ' ', ' ', ' ', ' '};

	if (!adaptive_applies(m, &slow))
	{
		note_pull_done(m);
		return;
	}
	a[0] = Int32GetDatum(m->id);
	a[1] = Int32GetDatum(sync_pull_interval_ms);
	a[2] = interval ? IntervalPGetDatum(interval) : (Datum) 0;
	n[2] = interval ? ' ' : 'n';
	a[3] = Int32GetDatum(sync_pull_interval_min_ms);
	a[4] = BoolGetDatum(changed > 0);
	a[5] = BoolGetDatum(slow);

	/*
	 * x.hi: the configured interval; x.lo: the shortest, never above hi.
	 * A mirror held back by the budget ($6) waits hi; after changes ($5),
	 * lo; else the previous interval (old next_pull_at - last_pull_at)
	 * doubled, between lo and hi.
	 */
	spi_exec("UPDATE sync.mirror_state s SET last_pull_at = pg_catalog.now(), failures = 0, last_error = NULL, "
			 "  next_pull_at = pg_catalog.now() OPERATOR(pg_catalog.+) "
			 "    CASE WHEN $6 THEN x.hi WHEN $5 THEN x.lo "
			 "    WHEN s.last_pull_at IS NULL OR s.next_pull_at OPERATOR(pg_catalog.<=) s.last_pull_at THEN x.hi "
			 "    ELSE LEAST(x.hi, GREATEST(x.lo, (s.next_pull_at OPERATOR(pg_catalog.-) s.last_pull_at) "
			 "                                OPERATOR(pg_catalog.*) 2::pg_catalog.float8)) END "
			 "FROM (SELECT h.hi, LEAST(h.hi, pg_catalog.make_interval(secs => $4 OPERATOR(pg_catalog./) 1000.0)) AS lo "
			 "      FROM (SELECT COALESCE($3, pg_catalog.make_interval(secs => $2 OPERATOR(pg_catalog./) 1000.0)) AS hi) h) x "
			 "WHERE s.mirror OPERATOR(pg_catalog.=) $1 "
			 "RETURNING (pg_catalog.date_part('epoch', s.next_pull_at OPERATOR(pg_catalog.-) pg_catalog.now()) "
			 "           OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8",
			 6, t, a, n, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed == 1)
		note_next_pull(atol(getv(0, 1)));
}
