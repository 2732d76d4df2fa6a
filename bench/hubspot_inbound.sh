#!/usr/bin/env bash
# bench/hubspot_inbound.sh — adaptive polling of a HubSpot mirror: how long a
# remote change takes to reach the local row while changes flow, and how
# many searches the mirror spends while busy and while idle.
#
#   bash bench/hubspot_inbound.sh [changes per second, default 2] [seconds, default 60] [idle seconds, default 90]
#
# The mirror has the default schedule: sync.pull_interval_min (2 s) after a
# pull that applied changes, doubling to pull_interval (30 s) while idle.  A
# driver edits remote contacts through the emulator's control API (as a
# remote user) at the given rate, each change a new firstname; a trigger on
# the local table records when each value arrived.  Latency = arrival minus
# the time the remote write returned (one machine, one clock).  Prints p50,
# p99 and max (target: p50 < 10 s while active), then the search requests
# per minute busy and idle.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"
RATE=${1:-2}
SECS=${2:-60}
IDLE=${3:-90}
N=200

sync_bench_start "sync.poll_interval = '10s'" "sync.http_timeout = '30s'"

ctl POST /__emulator/records/hubspot/contacts \
  "$(python3 -c "import json,sys; print(json.dumps([{'email': 'c%d@example.com' % i, 'firstname': 'F%d' % i} for i in range(1, int(sys.argv[1]) + 1)]))" "$N")" >/dev/null
psql_ <<SQL >/dev/null
CREATE EXTENSION sync; CREATE SCHEMA crm;
SELECT sync.create_connection('hs', 'hubspot', '{"base_url": "$EMULATOR_URL",
  "auth": {"type": "private_app", "token": "pat-sync-test"}}');
SELECT sync.mirror('hs', 'contacts', 'crm.contact', fields => ARRAY['email', 'firstname']);
CREATE TABLE public.arrival (v text, at timestamptz);
CREATE FUNCTION public.note_arrival() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    IF NEW.firstname IS DISTINCT FROM OLD.firstname THEN
        INSERT INTO public.arrival VALUES (NEW.firstname, clock_timestamp());
    END IF;
    RETURN NEW;
END \$\$;
CREATE TRIGGER note_arrival AFTER UPDATE ON crm.contact FOR EACH ROW EXECUTE FUNCTION public.note_arrival();
SQL
until [ "$(psql_ -At -c "SELECT count(*) FROM crm.contact")" = "$N" ]; do sleep 0.2; done
# idle: backed off to the configured interval
until [ "$(psql_ -At -c "SELECT next_pull_at - last_pull_at >= interval '30 s' FROM sync.mirror_state")" = t ]; do sleep 0.5; done
IDS=$DIR/ids
psql_ -At -c "SELECT remote_id FROM crm.contact ORDER BY id" >"$IDS"

echo "remote change -> local row: $RATE changes/s for $SECS s, starting from an idle mirror (30 s interval)"
ctl DELETE /__emulator/requests >/dev/null
SENT=$DIR/sent
python3 - "$EMULATOR_URL" "$IDS" "$RATE" "$SECS" "$SENT" <<'PY'
import sys, time
from benchlib import drive_remote
url, ids_file, rate, secs, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
t0 = time.time()
n = drive_remote(url, "hubspot", "contacts", "firstname", [l.strip() for l in open(ids_file) if l.strip()], rate, secs, out)
took = time.time() - t0
print("  sent %d changes in %.1f s (%.1f/s)" % (n, took, n / took))
PY
ctl GET '/__emulator/requests?api=hubspot' | python3 -c '
import json, sys
secs = float(sys.argv[1])
s = [r for r in json.load(sys.stdin) if r["path"].endswith("/search")]
print(f"  searches while busy: {len(s)} ({len(s) * 60 / secs:.1f}/min)")
' "$SECS"
TOTAL=$(wc -l <"$SENT")
for _ in $(seq 1 300); do
  [ "$(psql_ -At -c "SELECT count(DISTINCT v) FROM public.arrival WHERE v LIKE 'V%'")" -ge "$TOTAL" ] && break
  sleep 0.2
done
psql_ -At -F ' ' -c "SELECT v, extract(epoch FROM min(at)) FROM public.arrival WHERE v LIKE 'V%' GROUP BY v" | python3 -c '
import sys
from benchlib import arrivals, summary
sent, lat = arrivals(sys.argv[1], sys.stdin)
print(summary(lat, len(sent), "target p50 < 10 s while active"))
' "$SENT"

echo "idle for $IDLE s: requests to HubSpot"
ctl DELETE /__emulator/requests >/dev/null
sleep "$IDLE"
ctl GET '/__emulator/requests?api=hubspot' | python3 -c '
import json, sys
idle = float(sys.argv[1])
reqs = json.load(sys.stdin)
s = [r for r in reqs if r["path"].endswith("/search")]
print(f"  requests: {len(reqs)} ({len(reqs) * 60 / idle:.2f}/min), of which searches: {len(s)} ({len(s) * 60 / idle:.2f}/min)")
' "$IDLE"
psql_ -At -c "SELECT 'interval now: ' || (next_pull_at - last_pull_at) FROM sync.mirror_state"
