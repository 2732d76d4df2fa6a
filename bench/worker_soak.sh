#!/usr/bin/env bash
# bench/worker_soak.sh — the worker's memory in its steady state: a few
# minutes of local writes being pushed and remote edits being pulled, with
# the worker's private memory (RssAnon) sampled throughout.  A leak shows as
# growth after the first minute; the script prints the samples and the
# growth from the end of warm-up to the end.
#
#   bash bench/worker_soak.sh [minutes, default 3]
#   (SOAK_LOCAL_ONLY=1 / SOAK_REMOTE_ONLY=1: only one direction;
#   SOAK_REALTIME=1: the Contact mirror streams by Change Data Capture, with
#   a quiet realtime Account mirror beside it: the streams' long polls in
#   flight through the pushes and pulls)
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"
MIN=${1:-3}

sync_bench_start "sync.poll_interval = '1s'"

python3 - "$EMULATOR_URL" <<'PY'
import json, sys, urllib.request
recs = [{"FirstName": "F%d" % i, "LastName": "L%d" % i, "Email": "c%d@example.com" % i} for i in range(5000)]
req = urllib.request.Request(sys.argv[1] + "/__emulator/records/salesforce/Contact", json.dumps(recs).encode(),
                             {"Content-Type": "application/json"}, method="POST")
urllib.request.urlopen(req).read()
PY
OPTIONS='{"pull_interval": "1 second"}'
if [ "${SOAK_REALTIME:-}" ]; then
  ctl POST /__emulator/config '{"salesforce_cdc_entities": ["Contact", "Account"]}' >/dev/null
  OPTIONS='{"realtime": true}'
fi
psql_ <<SQL >/dev/null
CREATE EXTENSION sync; CREATE SCHEMA crm;
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "$EMULATOR_URL",
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName','Email'],
                   options => '$OPTIONS');
SQL
[ "${SOAK_REALTIME:-}" ] &&
  psql_ -c "SELECT sync.mirror('sf', 'Account', 'crm.account', fields => ARRAY['Name'],
                               options => '{\"realtime\": true, \"pull_interval\": \"5 seconds\"}')" >/dev/null
until [ "$(psql_ -At -c "SELECT count(*) FILTER (WHERE phase <> 'incremental') FROM sync.status")" = 0 ]; do sleep 0.5; done
PID=$(psql_ -At -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'sync worker' AND datname = current_database()")
IDS=($(psql_ -At -c "SELECT remote_id FROM crm.contact ORDER BY id LIMIT 50"))
anon() { sed -n 's/^RssAnon:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$PID/status"; }

echo "soak: $MIN min of local updates (200 rows every 0.5 s) and remote edits (10 every 0.5 s); worker pid $PID"
END=$(( $(date +%s) + MIN * 60 )); NEXT=0; i=0; SAMPLES=()
while [ "$(date +%s)" -lt "$END" ]; do
  i=$((i + 1))
  [ "${SOAK_REMOTE_ONLY:-}" ] ||
    psql_ -c "UPDATE crm.contact SET first_name = 'S$i-' || id WHERE id % 25 = $((i % 25))" >/dev/null
  [ "${SOAK_LOCAL_ONLY:-}" ] || for k in $(seq 0 9); do
    ctl PATCH "/__emulator/records/salesforce/Contact/${IDS[$(( (i * 10 + k) % 50 ))]}" "{\"LastName\": \"R$i\"}" >/dev/null
  done
  if [ "$(date +%s)" -ge "$NEXT" ]; then
    SAMPLES+=("$(anon)"); NEXT=$(( $(date +%s) + 10 ))
  fi
  sleep 0.5
done
SAMPLES+=("$(anon)")
# where the memory is: PostgreSQL's memory contexts (a leak outside them is
# malloc'd memory: libcurl, json-c, OpenSSL)
psql_ -c "SELECT pg_log_backend_memory_contexts($PID)" >/dev/null; sleep 1
echo "  worker memory contexts, largest first:"
sed -n "s/.*\[$PID\].*LOG:  level: [0-9]*; \([^:]*\): \([0-9]*\) total.*/\2 \1/p" "$DIR/server.log" \
  | sort -rn | head -5 | awk '{ printf "    %8.1f MB  %s\n", $1 / 1048576, substr($0, index($0, " ") + 1) }'
sed -n "s/.*\[$PID\].*LOG:  Grand total: \([0-9]*\) bytes.*/\1/p" "$DIR/server.log" | tail -1 \
  | awk '{ printf "    grand total %.1f MB in memory contexts\n", $1 / 1048576 }'
PENDING=$(psql_ -At -c "SELECT count(*) FROM sync.outbox")
ERRORS=$(psql_ -At -c "SELECT count(*) FROM sync.errors")
python3 - "$PENDING" "$ERRORS" "${SAMPLES[@]}" <<'PY'
import sys
pending, errors = sys.argv[1], sys.argv[2]
s = [int(x) for x in sys.argv[3:]]
print("  RssAnon every 10 s (MB): " + " ".join(f"{x / 1024:.1f}" for x in s))
warm = s[min(6, len(s) - 1)]
print(f"  after the first minute {warm / 1024:.1f} MB, at the end {s[-1] / 1024:.1f} MB: "
      f"growth {(s[-1] - warm) / 1024:+.1f} MB; peak {max(s) / 1024:.1f} MB")
print(f"  outbox entries left: {pending}, errors: {errors}")
PY
