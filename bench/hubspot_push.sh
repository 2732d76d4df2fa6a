#!/usr/bin/env bash
# bench/hubspot_push.sh — outbound throughput to the HubSpot emulator as a
# fraction of the connection's configured rate limit, driven by the
# background worker, and API calls per changed record.
#
#   bash bench/hubspot_push.sh [records, default 20000] [requests per 10 s, default 100] [latency ms, default 50]
#
# Targets: throughput >= 95 % of the configured per-10-second limit (100
# records a request); API calls per changed record = 1/100.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"
N=${1:-20000}
LIMIT=${2:-100}
LAT=${3:-50}
INFLIGHT=${BENCH_IN_FLIGHT:-4}

sync_bench_start "sync.poll_interval = '1s'" \
  "synchronous_commit = off" "sync.batch_size = 2000"

# the emulator enforces the same limit, so going over it would show as 429s
ctl POST /__emulator/config "{\"hubspot_per_10s\": $LIMIT}" >/dev/null
psql_ <<SQL >/dev/null
CREATE EXTENSION sync; CREATE SCHEMA crm;
SELECT sync.create_connection('hs', 'hubspot', '{"base_url": "$EMULATOR_URL", "max_in_flight": $INFLIGHT,
  "requests_per_10s": $LIMIT, "auth": {"type": "private_app", "token": "pat-sync-test"}}');
SELECT sync.mirror('hs', 'contacts', 'crm.contact', fields => ARRAY['firstname','lastname','jobtitle'],
                   direction => 'push');
SQL
ctl POST /__emulator/faults "{\"api\": \"hubspot\", \"path\": \"/batch/\", \"latency_ms\": $LAT}" >/dev/null
ctl DELETE /__emulator/requests >/dev/null

echo "pushing $N new records to the HubSpot emulator, limit $LIMIT requests / 10 s, $LAT ms latency, $INFLIGHT in flight"
T0=$(date +%s.%N)
psql_ -c "INSERT INTO crm.contact (firstname, lastname, jobtitle)
          SELECT 'F' || g, 'L' || g, 'Engineer' FROM generate_series(1, $N) g"
T1=$(date +%s.%N)
sync_bench_wait 'NOT EXISTS (SELECT FROM sync.outbox) AND NOT EXISTS (SELECT FROM sync.capture_log)'
T2=$(date +%s.%N)
PUSHED=$(psql_ -At -c "SELECT count(*) FROM crm.contact WHERE remote_id IS NOT NULL")
ctl GET '/__emulator/requests?api=hubspot' | python3 -c '
import json, sys
n, pushed, limit = map(int, sys.argv[1:4])
t0, t1, t2 = map(float, sys.argv[4:7])
log = json.load(sys.stdin)
calls = [r for r in log if r["path"].startswith("/crm/")]
batches = [r for r in calls if r["path"].endswith("/batch/create")]
times = sorted(r["time"] for r in calls)
worst, j = 0, 0
for i, t in enumerate(times):
    while times[j] <= t - 10.0:
        j += 1
    worst = max(worst, i - j + 1)
throttled = sum(1 for r in calls if r["status"] == 429)
secs = t2 - t1
rate = pushed / secs
ceiling = 100 * limit / 10.0           # records/s at the limit, 100 a request
span = batches[-1]["time"] - batches[0]["time"] if len(batches) > 1 else secs
steady = (len(batches) - 1) / span if span > 0 else 0
print(f"  local INSERT of {n} rows: {t1 - t0:.2f} s (capture included)")
print(f"  commit -> all {pushed} on the remote: {secs:.2f} s = {rate:,.0f} records/s")
print(f"  throughput: {rate / ceiling:.1%} of the configured limit ({ceiling:,.0f} records/s at {limit} requests / 10 s)"
      f"  (target >= 95%); steady state {steady * 10:.1f} requests / 10 s = {steady * 10 / limit:.1%}")
print(f"  API calls: {len(calls)} for {pushed} records = 1/{pushed / max(len(calls), 1):.0f} per record (target 1/100)")
print(f"  busiest 10-second window: {worst} requests (limit {limit}); 429 answers: {throttled}")
' "$N" "$PUSHED" "$LIMIT" "$T0" "$T1" "$T2"
