#!/usr/bin/env bash
# bench/realtime_inbound.sh — Salesforce Change Data Capture (mirror option
# "realtime"): how long a remote change takes to reach the local row, at a
# steady rate, and how many API calls a realtime mirror spends while idle.
#
#   bash bench/realtime_inbound.sh [changes per second, default 100] [seconds, default 20] [idle seconds, default 60]
#
# The emulator (plain HTTP on loopback) holds each CometD connect up to
# Salesforce's 110 s.  A driver edits remote contacts through the
# emulator's control API (as a remote user) at the given rate, one record
# per change, each change a new FirstName; a trigger on the local table
# records when each value arrived (clock_timestamp() in the worker's apply).
# Latency = arrival minus the time the remote write returned (one machine,
# one clock).  Prints p50, p99 and max (target: p50 < 1 s, p99 < 3 s), then,
# with nothing changing, the API calls and the CometD long polls per minute
# (target: no API calls beyond the long polls, which Salesforce does not
# count; the safety-net pull runs every ten minutes).
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"
RATE=${1:-100}
SECS=${2:-20}
IDLE=${3:-60}
N=2000

sync_bench_start "sync.poll_interval = '10s'" "sync.http_timeout = '30s'"

ctl POST /__emulator/config '{"salesforce_cdc_entities": ["Contact"]}' >/dev/null
psql_ <<SQL >/dev/null
CREATE EXTENSION sync; CREATE SCHEMA crm;
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "$EMULATOR_URL",
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
SQL
ctl POST /__emulator/records/salesforce/Contact \
  "$(python3 -c "import json,sys; print(json.dumps([{'FirstName': 'F%d' % i, 'LastName': 'L%d' % i} for i in range(1, int(sys.argv[1]) + 1)]))" "$N")" >/dev/null
psql_ -c "SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName'],
                             options => '{\"realtime\": true}')" >/dev/null
psql_ <<'SQL' >/dev/null
CREATE TABLE public.arrival (v text, at timestamptz);
CREATE FUNCTION public.note_arrival() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.first_name IS DISTINCT FROM OLD.first_name THEN
        INSERT INTO public.arrival VALUES (NEW.first_name, clock_timestamp());
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER note_arrival AFTER UPDATE ON crm.contact FOR EACH ROW EXECUTE FUNCTION public.note_arrival();
SQL
until [ "$(psql_ -At -c "SELECT count(*) FROM crm.contact")" = "$N" ]; do sleep 0.2; done
# subscribed, and the pull that follows the first subscription done
until [ "$(psql_ -At -c "SELECT next_pull_at > now() + interval '5 minutes' FROM sync.mirror_state")" = t ]; do sleep 0.2; done
IDS=$DIR/ids
psql_ -At -c "SELECT remote_id FROM crm.contact ORDER BY id" >"$IDS"

echo "remote change -> local row: $RATE changes/s for $SECS s, each to another of $N contacts"
SENT=$DIR/sent
python3 - "$EMULATOR_URL" "$IDS" "$RATE" "$SECS" "$SENT" <<'PY'
import sys, time
from benchlib import drive_remote
url, ids_file, rate, secs, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
t0 = time.time()
n = drive_remote(url, "salesforce", "Contact", "FirstName", [l.strip() for l in open(ids_file) if l.strip()], rate, secs, out)
took = time.time() - t0
print("  sent %d changes in %.1f s (%.1f/s)" % (n, took, n / took))
PY
TOTAL=$(wc -l <"$SENT")
for _ in $(seq 1 300); do
  [ "$(psql_ -At -c "SELECT count(DISTINCT v) FROM public.arrival WHERE v LIKE 'V%'")" -ge "$TOTAL" ] && break
  sleep 0.2
done
psql_ -At -F ' ' -c "SELECT v, extract(epoch FROM min(at)) FROM public.arrival WHERE v LIKE 'V%' GROUP BY v" | python3 -c '
import sys
from benchlib import arrivals, summary
sent, lat = arrivals(sys.argv[1], sys.stdin)
print(summary(lat, len(sent), "target p50 < 1 s, p99 < 3 s"))
' "$SENT"
psql_ -At -c "SELECT count(*) FROM sync.journal WHERE direction = 'in'" | sed 's/^/  journal rows in: /'

echo "idle for $IDLE s: requests to Salesforce"
ctl DELETE /__emulator/requests >/dev/null
sleep "$IDLE"
ctl GET '/__emulator/requests?api=salesforce' | python3 -c '
import json, sys
idle = float(sys.argv[1])
reqs = json.load(sys.stdin)
comet = [r for r in reqs if r["path"].startswith("/cometd/")]
api = [r for r in reqs if not r["path"].startswith("/cometd/")]
print(f"  API calls: {len(api)} ({len(api) * 60 / idle:.2f}/min); CometD long polls: {len(comet)} ({len(comet) * 60 / idle:.2f}/min)")
for r in api:
    print("   ", r["method"], r["path"])
' "$IDLE"
