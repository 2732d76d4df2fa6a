#!/usr/bin/env bash
# bench/resync.sh — sync.resync() over N Salesforce Contacts: time, API
# calls and the backend's private memory of a compare-only run and of a
# repair, with differences planted behind sync's back (local edits and
# deletes in replica mode, remote edits and deletes through the emulator's
# control API, none of them pulled: the mirror's pull interval is a day).
# Prints figures from one run; the cost is linear in N (one query page per
# 2,000 records, one comparison statement per page), memory is not.
#
#   bash bench/resync.sh [records, default 200000] [differences of each kind, default 100]
#
# The backfill itself is done by the worker first (bench/salesforce_pull.sh
# measures it); only sync.resync is timed here.
set -u; [ -n "${BENCH_TRACE:-}" ] && set -x
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"
N=${1:-200000}
D=${2:-100}

sync_bench_start "sync.poll_interval = '1s'" "synchronous_commit = off"

sync_bench_seed_contacts "$N"

psql_ <<SQL >/dev/null
CREATE EXTENSION sync; CREATE SCHEMA crm;
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "$EMULATOR_URL",
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName','Email','Title'],
                   options => '{"pull_interval": "1 day"}');
SQL
echo "backfill by the worker"
until [ "$(psql_ -At -c "SELECT phase = 'incremental' AND next_pull_at > now() + interval '1 hour' FROM sync.status")" = t ]; do
  sleep 1
done
GOT=$(psql_ -At -c "SELECT count(*) FROM crm.contact")
WORKER=$(psql_ -At -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'sync worker' AND datname = current_database()")

echo "planting $D differences of each kind"
psql_ -At -c "SELECT remote_id FROM crm.contact ORDER BY id LIMIT $((2 * D))" > "$DIR/remote_ids"
python3 - "$EMULATOR_URL" "$DIR/remote_ids" "$D" <<'PY'
import json, sys, urllib.request
url, path, d = sys.argv[1], sys.argv[2], int(sys.argv[3])
ids = open(path).read().split()
for rid in ids[:d]:        # remote edits
    req = urllib.request.Request(url + "/__emulator/records/salesforce/Contact/" + rid,
                                 json.dumps({"Title": "remote edit"}).encode(),
                                 {"Content-Type": "application/json"}, method="PATCH")
    urllib.request.urlopen(req).read()
for rid in ids[d:2 * d]:   # remote deletes
    req = urllib.request.Request(url + "/__emulator/records/salesforce/Contact/" + rid, method="DELETE")
    urllib.request.urlopen(req).read()
PY
psql_ <<SQL >/dev/null
SET session_replication_role = replica;
UPDATE crm.contact SET title = 'local edit' WHERE id IN (SELECT id FROM crm.contact ORDER BY id OFFSET $((2 * D)) LIMIT $D);
DELETE FROM crm.contact WHERE id IN (SELECT id FROM crm.contact ORDER BY id OFFSET $((3 * D)) LIMIT $D);
SQL

last_seq() { ctl GET "/__emulator/requests?api=salesforce&since=$1" | python3 -c '
import json, sys; log = json.load(sys.stdin); print(max([e["seq"] for e in log] + [int(sys.argv[1])]))' "$1"; }
calls_since() { ctl GET "/__emulator/requests?api=salesforce&since=$1" | python3 -c '
import json, sys, collections; log = json.load(sys.stdin)
c = collections.Counter("%s %s" % (e["method"], e["path"].split("/")[-1] if "query" not in e["path"] else "query") for e in log)
print(len(log), dict(c))'; }
anon() { sed -n 's/^RssAnon:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status" 2>/dev/null; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null; }   # user + system, in clock ticks
# the emulator's python process: the one below EMULATOR_PID (a subshell, runuser), not another's
emu_python() {
  local c
  for c in $(pgrep -P "$1"); do
    [ "$(cat "/proc/$c/comm" 2>/dev/null)" = python3 ] && { echo "$c"; return 0; }
    emu_python "$c" && return 0
  done
  return 1
}
EMU=$(emu_python "$EMULATOR_PID") || EMU=$EMULATOR_PID
HZ=$(getconf CLK_TCK)

# run_resync REPAIR: one sync.resync in a session of its own, its backend's
# RssAnon sampled while it runs; prints the figures and the report.
run_resync() {
  local repair=$1 seq t0 t1 pid peak a0 a out c bcpu=0 e0 e1
  seq=$(last_seq 0)
  out="$DIR/resync-$repair.json"
  t0=$(date +%s.%N)
  PGAPPNAME=resync_bench psql_ -At -c "SELECT sync.resync('crm.contact', repair => $repair)" > "$out" &
  local bg=$!
  pid=
  for i in $(seq 1 100); do
    pid=$(psql_ -At -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'resync_bench'")
    [ -n "$pid" ] && break; sleep 0.05
  done
  a0=$(anon "$pid"); peak=${a0:-0}; e0=$(cpu "$EMU")
  while kill -0 "$bg" 2>/dev/null; do
    a=$(anon "$pid"); [ -n "$a" ] && [ "$a" -gt "$peak" ] && peak=$a
    c=$(cpu "$pid"); [ -n "$c" ] && bcpu=$c
    sleep 0.2
  done
  e1=$(cpu "$EMU")
  wait "$bg" || die "sync.resync failed"
  t1=$(date +%s.%N)
  python3 - "$repair" "$t0" "$t1" "${a0:-0}" "$peak" "$(calls_since "$seq")" "$out" "$GOT" \
    "$bcpu" "$(( e1 - e0 ))" "$HZ" <<'PY'
import json, sys
repair, t0, t1, a0, peak, calls, out, got = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), \
    int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7], int(sys.argv[8])
bcpu, ecpu = int(sys.argv[9]) / int(sys.argv[11]), int(sys.argv[10]) / int(sys.argv[11])
r = json.load(open(out))
print(f"  sync.resync(repair => {repair}) over {got:,} rows: {t1 - t0:.1f} s = {got / (t1 - t0):,.0f} rows/s")
print(f"    API calls: {calls}")
print(f"    CPU: backend {bcpu:.1f} s (at its last sample), emulator {ecpu:.1f} s")
print(f"    backend private memory (RssAnon): {a0 / 1024:.1f} MB at start, peak {peak / 1024:.1f} MB")
print("    found: " + ", ".join(f"{k} {r[k]['count']}" for k in ("only_local", "only_remote", "different"))
      + f", pending {r['pending']}, same {r['same']}, {r['pages']} pages")
if r.get("repaired"):
    print(f"    repaired: {r['repaired']}")
PY
}

echo "sync.resync, compare only"
run_resync false
echo "sync.resync, repair"
run_resync true
echo "the worker sends the queued local versions"
until [ "$(psql_ -At -c "SELECT backlog FROM sync.status")" = 0 ]; do sleep 1; done
echo "sync.resync, compare only, after the repair"
run_resync false
echo "  worker private memory (RssAnon, idle during the runs): $(( $(anon "$WORKER") / 1024 )) MB"
