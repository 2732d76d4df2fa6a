#!/usr/bin/env bash
# bench/commit_latency.sh — how long a committed local change takes to reach
# the remote (Salesforce emulator, plain HTTP on loopback), pushed by the
# background worker woken by the commit; and how long pg_cancel_backend takes
# to end a worker request the remote leaves hanging.
#
#   bash bench/commit_latency.sh [commits, default 50]
#
# Each commit updates one mirrored row and waits until the outbox is empty
# before the next.  Latency = the emulator's arrival time of the PATCH that
# carries the new value minus the time the commit returned (both the
# machine's clock).  Prints p50, p99 (the slowest when fewer than 100) and
# max.  The project's target: p50 < 100 ms, p99 < 1 s.
# These figures used to be asserted by test/t/031_salesforce_worker.pl; a
# test asserts that each change arrives, once, in order — timings live here.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"
K=${1:-50}

# poll interval 60 s: a commit that is not pushed at once waits for it
sync_bench_start "sync.poll_interval = '60s'" "sync.http_timeout = '30s'"

psql_ <<SQL >/dev/null
CREATE EXTENSION sync; CREATE SCHEMA crm;
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "$EMULATOR_URL",
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
SQL
ctl POST /__emulator/records/salesforce/Contact \
  "$(python3 -c "import json,sys; print(json.dumps([{'FirstName': 'F%d' % i, 'LastName': 'L%d' % i} for i in range(1, int(sys.argv[1]) + 1)]))" "$K")" >/dev/null
psql_ -c "SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName'],
                             options => '{\"pull_interval\": \"1 hour\"}')" >/dev/null
until [ "$(psql_ -At -c "SELECT count(*) FROM crm.contact")" = "$K" ]; do sleep 0.2; done
ctl DELETE /__emulator/requests >/dev/null

echo "commit -> remote write: $K commits of one row each, one at a time"
COMMITS=$DIR/commits
: >"$COMMITS"
for i in $(seq 1 "$K"); do
  # two transactions: the clock is read after the UPDATE has committed
  t=$(psql_ -At -c "UPDATE crm.contact SET first_name = 'W$i' WHERE last_name = 'L$i'" \
                -c "SELECT extract(epoch FROM clock_timestamp())")
  echo "W$i $t" >>"$COMMITS"
  until [ "$(psql_ -At -c 'SELECT (SELECT count(*) FROM sync.outbox) + (SELECT count(*) FROM sync.capture_log)')" = 0 ]; do sleep 0.01; done
done
ctl GET '/__emulator/requests?api=salesforce' | python3 -c '
import json, sys
from benchlib import arrivals, composite_writes, summary
commits, lat = arrivals(sys.argv[1], composite_writes(json.load(sys.stdin), "FirstName"))
if not lat:
    sys.exit("no write arrived")
print(summary(lat, len(commits), "target p50 < 100 ms, p99 < 1 s"))
' "$COMMITS"

echo "pg_cancel_backend -> the worker gives up a hanging request (remote delays 20 s)"
ctl POST /__emulator/faults '{"api": "salesforce", "path": "/composite/sobjects", "latency_ms": 20000}' >/dev/null
psql_ -c "UPDATE crm.contact SET first_name = 'Cancelled' WHERE last_name = 'L1'" >/dev/null
# wait until the request is in flight (the emulator logs it on arrival)
until ctl GET '/__emulator/requests?api=salesforce' | grep -q Cancelled; do sleep 0.05; done
LOG_AT=$(stat -c %s "$DIR/server.log")
T0=$(date +%s.%N)
psql_ -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE backend_type = 'sync worker'" >/dev/null
until tail -c +"$((LOG_AT + 1))" "$DIR/server.log" | grep -q 'canceling statement due to user request'; do sleep 0.005; done
T1=$(date +%s.%N)
python3 -c 'import sys; print(f"  the worker logged the cancel {(float(sys.argv[2]) - float(sys.argv[1])) * 1000:.0f} ms after pg_cancel_backend")' "$T0" "$T1"
ctl DELETE /__emulator/faults >/dev/null
