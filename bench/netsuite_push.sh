#!/usr/bin/env bash
# bench/netsuite_push.sh — outbound throughput to the NetSuite emulator,
# driven by the background worker.  NetSuite takes one record a request, so
# the ceiling is requests in flight / latency per request; the output is
# records/min and the ratio to that ceiling, plus the most requests the
# emulator saw in flight and its 429 answers.
#
#   bash bench/netsuite_push.sh [records, default 5000] [latency ms, default 50] [in flight, default 4] [single|batch]
#
# Two phases: N creates (always one record a request), then an UPDATE of
# the same N rows.  "batch" sets the mirror option "batch": true, so the
# updates go as asynchronous batch jobs (up to 100 records a request, then
# the job polled); its ceiling is then no longer in flight / latency, and
# the ratio printed for the updates is to the single-record ceiling.  The
# latency applies to every record-API and async-job request.
#
# On the loaded 2-core development machine (2026-11-30), 5000 records,
# 50 ms, 4 in flight: single — creates 4,311 records/min (0.90 of the
# 4,800 ceiling), updates 4,336 records/min (0.90), 5000 requests each, no
# 429; batch — creates the same (4,376, 0.91), updates 151,311 records/min
# (31.5 times the single-record ceiling: 50 batch requests + 50 job reads).
#
# The account's concurrency limit (emulator netsuite_concurrency) is set to
# the connection's, so going over it would show as 429s.  Target: >= 90 %
# of the ceiling, no 429.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"
N=${1:-5000}
LAT=${2:-50}
INFLIGHT=${3:-4}
MODE=${4:-single}
case $MODE in single) OPTS='{"idempotency_field": "externalId"}' ;;
              batch) OPTS='{"idempotency_field": "externalId", "batch": true}' ;;
              *) die "mode: single or batch" ;; esac

sync_bench_start "sync.poll_interval = '1s'" "synchronous_commit = off"

ctl POST /__emulator/config "{\"netsuite_concurrency\": $INFLIGHT}" >/dev/null
psql_ <<SQL >/dev/null
CREATE EXTENSION sync; CREATE SCHEMA erp;
SELECT sync.create_connection('ns', 'netsuite', '{"account": "1234567", "base_url": "$EMULATOR_URL",
  "concurrency": $INFLIGHT,
  "auth": {"type": "tba", "consumer_key": "ns-consumer-key", "consumer_secret": "ns-consumer-secret",
           "token_id": "ns-token-id", "token_secret": "ns-token-secret"}}');
SELECT sync.mirror('ns', 'customer', 'erp.customer', fields => ARRAY['companyName', 'email', 'phone'],
                   direction => 'push', options => '$OPTS');
SQL
ctl POST /__emulator/faults "{\"api\": \"netsuite\", \"path\": \"/record/v1/customer/\", \"latency_ms\": $LAT}" >/dev/null
ctl DELETE /__emulator/requests >/dev/null

echo "mode $MODE: pushing $N new customers to the NetSuite emulator: one record a request, $LAT ms latency, $INFLIGHT in flight"
T0=$(date +%s.%N)
psql_ -c "INSERT INTO erp.customer (company_name, email, phone)
          SELECT 'Co ' || g, 'ap' || g || '@example.com', '555-' || g FROM generate_series(1, $N) g"
T1=$(date +%s.%N)
sync_bench_wait "NOT EXISTS (SELECT FROM sync.outbox WHERE state = 'pending') AND NOT EXISTS (SELECT FROM sync.capture_log)"
T2=$(date +%s.%N)
PUSHED=$(psql_ -At -c "SELECT count(*) FROM erp.customer WHERE remote_id IS NOT NULL")
PARKED=$(psql_ -At -c "SELECT count(*) FROM sync.errors")
ctl GET '/__emulator/requests?api=netsuite' | python3 -c '
import json, sys
n, pushed, parked, lat_ms, inflight = map(int, sys.argv[1:6])
t0, t1, t2 = map(float, sys.argv[6:9])
log = json.load(sys.stdin)
writes = [r for r in log if r["method"] in ("PUT", "POST") and "/record/v1/customer" in r["path"]]
ok = [r for r in writes if r["status"] == 204]
throttled = sum(1 for r in writes if r["status"] == 429)
# in flight as the emulator saw it: each request from arrival to arrival + latency
ev = sorted([(r["time"], 1) for r in writes] + [(r["time"] + lat_ms / 1000.0, -1) for r in writes])
cur = peak = 0
for _, d in ev:
    cur += d
    peak = max(peak, cur)
secs = t2 - t1
rate = pushed / secs if secs > 0 else 0
ceiling = inflight / (lat_ms / 1000.0)
span = ok[-1]["time"] - ok[0]["time"] if len(ok) > 1 else secs
steady = (len(ok) - 1) / span if span > 0 else 0
print(f"  local INSERT of {n} rows: {t1 - t0:.2f} s (capture included)")
print(f"  commit -> all {pushed} on the remote ({parked} parked): {secs:.2f} s = {rate * 60:,.0f} records/min")
print(f"  ceiling {inflight} in flight / {lat_ms} ms = {ceiling * 60:,.0f} records/min: {rate / ceiling:.1%} of it"
      f" (steady state {steady / ceiling:.1%}; target >= 90%)")
print(f"  requests: {len(writes)} writes for {pushed} records; most in flight {peak} (limit {inflight}); 429 answers: {throttled}")
' "$N" "$PUSHED" "$PARKED" "$LAT" "$INFLIGHT" "$T0" "$T1" "$T2"

# Phase 2: the same rows updated (single-record PATCHes, or batch jobs).
ctl DELETE /__emulator/requests >/dev/null
echo "mode $MODE: updating the $N customers"
U0=$(date +%s.%N)
psql_ -c "UPDATE erp.customer SET phone = '556-' || id"
U1=$(date +%s.%N)
sync_bench_wait "NOT EXISTS (SELECT FROM sync.outbox WHERE state = 'pending') AND NOT EXISTS (SELECT FROM sync.capture_log)"
U2=$(date +%s.%N)
PARKED=$(psql_ -At -c "SELECT count(*) FROM sync.errors")
ctl GET '/__emulator/requests?api=netsuite' | python3 -c '
import json, sys
n, parked, lat_ms, inflight = map(int, sys.argv[1:5])
u0, u1, u2 = map(float, sys.argv[5:8])
mode = sys.argv[8]
log = json.load(sys.stdin)
reqs = [r for r in log if "/record/v1/customer" in r["path"] or "/async/v1/job" in r["path"]]
writes = [r for r in reqs if r["method"] in ("PATCH", "PUT", "POST")]
polls = [r for r in reqs if r["method"] == "GET"]
throttled = sum(1 for r in reqs if r["status"] == 429)
peak = max([r["inflight"] or 0 for r in reqs] or [0])
secs = u2 - u1
rate = n / secs if secs > 0 else 0
ceiling = inflight / (lat_ms / 1000.0)
print(f"  local UPDATE of {n} rows: {u1 - u0:.2f} s (capture included)")
print(f"  commit -> all {n} updates on the remote ({parked} parked in all): {secs:.2f} s = {rate * 60:,.0f} records/min ({mode})")
print(f"  ratio to the single-record ceiling {inflight} in flight / {lat_ms} ms = {ceiling * 60:,.0f} records/min: {rate / ceiling:.2f}")
print(f"  requests: {len(writes)} writes, {len(polls)} job/task reads; most in flight {peak} (limit {inflight}); 429 answers: {throttled}")
' "$N" "$PARKED" "$LAT" "$INFLIGHT" "$U0" "$U1" "$U2" "$MODE"
