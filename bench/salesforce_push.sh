#!/usr/bin/env bash
# bench/salesforce_push.sh — outbound throughput to the Salesforce emulator
# with injected latency per request, driven by the background worker, and
# API calls per changed record.  Prints figures and ratios from one run.
#
#   bash bench/salesforce_push.sh [records, default 50000] [latency ms, default 50]
#   (environment: BENCH_IN_FLIGHT, default 16; BENCH_EXISTING, rows in the
#   table before, default 0; BENCH_HELPER_BACKLOG, sync.push_helper_backlog,
#   default the server's: 0 runs the worker alone)
#
# The project's targets: >= 1,000,000 records/min with 50 ms per request;
# API calls per changed record = 1/200.  The ceiling is what the network
# allows: in flight x 200 records per request / latency; the push is
# pipelined (docs/worker.md, "Pushing"), so the database's claims and
# recordings overlap the requests and the rate nears it unless the database
# is the bottleneck.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"
N=${1:-50000}
LAT=${2:-50}
INFLIGHT=${BENCH_IN_FLIGHT:-16}   # Salesforce caps concurrency only for requests over 20 s

sync_bench_start "sync.poll_interval = '1s'" \
  "synchronous_commit = off" "sync.batch_size = 4000" "sync.http_max_in_flight = $INFLIGHT" \
  "sync.worker_log_level = debug1" ${BENCH_HELPER_BACKLOG:+"sync.push_helper_backlog = $BENCH_HELPER_BACKLOG"}

psql_ <<SQL >/dev/null
CREATE EXTENSION sync; CREATE SCHEMA crm;
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "$EMULATOR_URL", "max_in_flight": $INFLIGHT,
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName','Email'],
                   direction => 'push');
SQL
# BENCH_EXISTING=N: the table holds N rows already on the remote (their
# entries dropped) before the timed insert, as a table in service does: the
# claim's and the recording's cost per batch must not grow with it
EXISTING=${BENCH_EXISTING:-0}
if [ "$EXISTING" -gt 0 ]; then
  psql_ <<SQL >/dev/null
BEGIN;
INSERT INTO crm.contact (remote_id, first_name, last_name, email)
SELECT '003' || lpad(g::text, 15, '0'), 'E' || g, 'L' || g, 'e' || g || '@example.com'
  FROM generate_series(1, $EXISTING) g;
DELETE FROM sync.capture_log; DELETE FROM sync.outbox;
COMMIT;
VACUUM ANALYZE crm.contact; VACUUM ANALYZE sync.outbox;
SQL
fi
ctl POST /__emulator/faults "{\"api\": \"salesforce\", \"path\": \"/composite/sobjects\", \"latency_ms\": $LAT}" >/dev/null
ctl DELETE /__emulator/requests >/dev/null

echo "pushing $N new records to the Salesforce emulator, $LAT ms latency per request, $INFLIGHT in flight" \
     "(table of $EXISTING rows before)"
# The times are the server's: T1 when the INSERT has committed (the next
# statement of its session), T2 when the last result was recorded (the
# newest journal row the push wrote, a few ms before that recording's
# commit).  Watching for an empty outbox from here would add up to the
# poll's interval plus a psql start to the push's time.
T0=$(date +%s.%N)
T1=$(psql_ -At -c "INSERT INTO crm.contact (first_name, last_name, email)
          SELECT 'F' || g, 'L' || g, 'p' || g || '@example.com' FROM generate_series(1, $N) g" \
       -c "SELECT extract(epoch FROM clock_timestamp())")
sync_bench_wait 'NOT EXISTS (SELECT FROM sync.outbox) AND NOT EXISTS (SELECT FROM sync.capture_log)'
T2=$(psql_ -At -c "SELECT extract(epoch FROM max(at)) FROM sync.journal WHERE direction = 'out'")
PUSHED=$(psql_ -At -c "SELECT count(*) FROM crm.contact WHERE remote_id IS NOT NULL AND first_name LIKE 'F%'")
CALLS=$(ctl GET '/__emulator/requests?api=salesforce' | python3 -c '
import json, sys
log = json.load(sys.stdin)
print(sum(1 for r in log if r["path"].endswith("/composite/sobjects") and r["method"] != "GET"))')
python3 - "$N" "$PUSHED" "$CALLS" "$T0" "$T1" "$T2" "$INFLIGHT" "$LAT" "$DIR/server.log" <<'PY'
import re, sys
n, pushed, calls = map(int, sys.argv[1:4])
t0, t1, t2 = map(float, sys.argv[4:7])
inflight, lat = int(sys.argv[7]), float(sys.argv[8])
ceiling = inflight * 200 / (lat / 1000.0) * 60 if lat > 0 else float("inf")
secs = t2 - t1
rate = pushed / secs * 60
print(f"  local INSERT of {n} rows: {t1 - t0:.2f} s (capture included; its fold into the outbox is the push's)")
print(f"  commit -> all {pushed} on the remote: {secs:.2f} s = {rate:,.0f} records/min"
      f"  (target 1,000,000: ratio {rate / 1e6:.2f})")
print(f"  ceiling {inflight} in flight x 200 records / {lat:g} ms = {ceiling:,.0f} records/min:"
      f" ratio {rate / ceiling:.2f}")
print(f"  API calls: {calls} for {pushed} records = 1/{pushed / max(calls, 1):.0f} per record (target 1/200)")
# where the pipeline's time went (its DEBUG1 line per batch): a wait for the
# network near zero means the database's claims and recordings set the pace
phase = re.compile(r"pipelined batch of (\d+): claim of the next \(\d+\) (\d+) ms \(CPU ([\d.]+) ms\), "
                   r"wait for the network (\d+) ms, record (\d+) ms \(CPU ([\d.]+) ms\)")
first = re.compile(r"first claim of a push: (\d+) entries in (\d+) ms")
helper = re.compile(r"started a push helper")
fold = re.compile(r"folded (\d+) captured writes \(mirror \d+\) in (\d+) ms")
b = recs = claim = wait = rec = helpers = 0
folds = frows = fms_total = 0
cpu = 0.0
fclaims = fentries = fms = 0
for line in open(sys.argv[9], errors="replace"):
    helpers += bool(helper.search(line))
    m = fold.search(line)
    if m:
        folds += 1
        frows += int(m.group(1))
        fms_total += int(m.group(2))
    m = first.search(line)
    if m:
        fclaims += 1
        fentries += int(m.group(1))
        fms += int(m.group(2))
    m = phase.search(line)
    if m:
        b += 1
        recs += int(m.group(1))
        claim += int(m.group(2))
        cpu += float(m.group(3)) + float(m.group(6))
        wait += int(m.group(4))
        rec += int(m.group(5))
if b:
    tot = max(claim + wait + rec, 1)
    print(f"  pipeline: {b} batches, {recs / b:.0f} records each; claiming {claim / 1000:.2f} s, "
          f"waiting for the network {wait / 1000:.2f} s, recording {rec / 1000:.2f} s "
          f"(database {100.0 * (claim + rec) / tot:.0f} % of the time, "
          f"{1000.0 * (claim + rec) / max(recs, 1):.0f} us a record, of which CPU "
          f"{1000.0 * cpu / max(recs, 1):.0f} us)")
# each push's first claim is outside the pipeline's lines
if fclaims:
    print(f"  first claims of the pushes: {fclaims}, {fentries} entries, {fms / 1000:.2f} s")
# the worker's folds of the capture log into the outbox (docs/worker.md,
# "Folding ahead"): the pipeline's claim times above include those made
# between its batches
if folds:
    print(f"  folds of the capture log: {folds}, {frows} rows, {fms_total / 1000:.2f} s")
# the worker's push helper (sync.push_helper_backlog): its batches are in
# the figures above too, each process's time counted apart
print(f"  push helper: {'started' if helpers else 'none'}"
      f"{' (the pipeline figures add up both processes)' if helpers else ''}")
PY
