#!/usr/bin/env bash
# bench/many_mirrors.sh — many mirrors and many databases: what an idle
# worker costs, whether a commit to one mirror among 200 still reaches the
# remote at once, and how the cost of the worker's round grows with the
# number of mirrors (issue #13).
#
#   bash bench/many_mirrors.sh [mirrors, default 200] [commits, default 100] [idle seconds, default 60]
#
# One cluster, the Salesforce emulator (plain HTTP on loopback), 10
# databases with the extension: "postgres" with one custom object per
# mirror (Obj001__c ..., 3 records each, mirrored both ways into m.obj001
# ...), and db1 .. db9 with one Contact mirror each.
#
#  (3) round cost: with 1, 10, 50, ... mirrors (none realtime, nothing due),
#      sync.poll_interval = 100ms for 20 s: the worker's CPU per round
#      (/proc/<pid>/stat utime+stime over sync.worker_status().cycles) and
#      the statements per round (pg_stat_statements, track = all).
#  (1) idle: five of the mirrors get "realtime": true (CometD long polls),
#      sync.poll_interval back to 10 s; for the idle window: each process's
#      CPU in % of one core (the supervisor and every database's worker),
#      API calls and CometD requests per minute from the emulator's log.
#      Once with sync.pull_interval = 1h (nothing to pull: the cost of
#      waiting), once with the default 30 s (each non-realtime mirror
#      polls: the cost of polling 200 objects).
#  (2) commit -> remote: K commits, each to another mirror among them, one
#      at a time; latency = the emulator's arrival time of the PATCH minus
#      the time the commit returned.  p50 / p99 / max.
#
# Environment: ROUND_STEPS="1 10 50 200" (the mirror counts of (3)),
# SHOW_STATEMENTS=1 (the worker's statements of each (3) window),
# ROUNDS_ONLY=1 (stop after (3)), SHOW_SLOW=ms (the emulator's requests
# between a slower commit and its write), KEEP_LOG=file (the server log).
# Each step of (3) waits until the worker has nothing due; a reading of
# /proc has a resolution of 10 ms (1/CLK_TCK), hence the 20 s windows.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"
M=${1:-200}
K=${2:-100}
IDLE=${3:-60}
NDB=9
STEPS=""
for s in ${ROUND_STEPS:-1 10 50 $M}; do [ "$s" -le "$M" ] && case " $STEPS " in *" $s "*) ;; *) STEPS="$STEPS $s";; esac; done

sync_bench_start "sync.poll_interval = '10s'" "sync.http_timeout = '30s'" "sync.pull_interval = '1h'" \
  "max_worker_processes = 24" "sync.max_workers = 16" \
  "shared_preload_libraries = 'sync,pg_stat_statements'" "pg_stat_statements.track = all"
HZ=$(getconf CLK_TCK)

# --- the remote: M custom objects, 3 records each ---
python3 - "$EMULATOR_URL" "$M" <<'PY'
import http.client, json, sys, urllib.parse
url, m = sys.argv[1], int(sys.argv[2])
u = urllib.parse.urlparse(url)
c = http.client.HTTPConnection(u.hostname, u.port)
def call(method, path, body):
    c.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse(); data = r.read()
    if r.status >= 300:
        sys.exit("%s %s: %d %s" % (method, path, r.status, data[:300]))
digits = "0123456789abcdefghijklmnopqrstuvwxyz"
for i in range(1, m + 1):
    name = "Obj%03d__c" % i
    call("POST", "/__emulator/salesforce/objects/" + name,
         {"keyPrefix": "z" + digits[i // 36] + digits[i % 36], "label": "Obj %d" % i,
          "fields": [{"name": "Val__c", "type": "string", "length": 80}]})
    call("POST", "/__emulator/records/salesforce/" + name,
         [{"Name": "R%d-%d" % (i, k), "Val__c": "v%d" % k} for k in range(1, 4)])
PY
ctl POST /__emulator/records/salesforce/Contact '[{"FirstName": "F1", "LastName": "L1"}]' >/dev/null
RT=$(python3 -c "import json,sys; m=int(sys.argv[1]); print(json.dumps({'salesforce_cdc_entities': ['Obj%03d__c' % i for i in range(max(1, m - 4), m + 1)]}))" "$M")
ctl POST /__emulator/config "$RT" >/dev/null

CONN="SELECT sync.create_connection('sf', 'salesforce', '{\"login_url\": \"$EMULATOR_URL\",
  \"auth\": {\"type\": \"client_credentials\", \"client_id\": \"sync-client\", \"client_secret\": \"sync-secret\"}}')"
psql_ -c "CREATE EXTENSION sync" -c "CREATE EXTENSION pg_stat_statements" -c "CREATE SCHEMA m" -c "$CONN" >/dev/null
for d in $(seq 1 $NDB); do
  psql_ -c "CREATE DATABASE db$d" >/dev/null
  psql_ -d "db$d" -c "CREATE EXTENSION sync" -c "CREATE SCHEMA crm" -c "$CONN" \
    -c "SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName'])" >/dev/null
done

worker_pid() { psql_ -At -c "SELECT pid FROM sync.worker_status() WHERE datname = '$1'"; }
cycles() { psql_ -At -c "SELECT cycles FROM sync.worker_status() WHERE datname = '$1'"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# the worker's statements only (not this script's)
statements() {
  psql_ -At -c "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                WHERE d.datname = 'postgres' AND s.query NOT LIKE '%pg_stat_statements%'
                  AND s.query NOT LIKE '%worker_status%' AND s.query NOT LIKE '%pg_stat_activity%'"
}
set_guc() { psql_ -c "ALTER SYSTEM SET $1 = '$2'" -c "SELECT pg_reload_conf()" >/dev/null; sleep 0.5; }
settled() {
  until [ "$(psql_ -At -c "SELECT count(*) FILTER (WHERE phase = 'incremental') = count(*) AND count(*) = $1
                           FROM sync.mirror_state")" = t ]; do sleep 0.5; done
  until [ "$(psql_ -At -c "SELECT (SELECT count(*) FROM sync.outbox) + (SELECT count(*) FROM sync.capture_log)")" = 0 ]; do sleep 0.2; done
}

# --- (3) the round's cost against the number of mirrors ---
echo "(3) worker round, idle (nothing due), sync.poll_interval = 100ms, 20 s per line; uptime: $(uptime)"
printf '  %8s %8s %14s %16s %10s\n' mirrors rounds "CPU ms/round" "statements/round" "% of core"
made=0
for n in $STEPS; do
  while [ "$made" -lt "$n" ]; do
    made=$((made + 1))
    psql_ -c "SELECT sync.mirror('sf', 'Obj$(printf %03d $made)__c', 'm.obj$(printf %03d $made)',
                                 fields => ARRAY['Name','Val__c'])" >/dev/null
  done
  settled "$n"
  set_guc sync.poll_interval 100ms
  sleep 2
  pid=$(worker_pid postgres)
  c0=$(cycles postgres); t0=$(cpu_ticks "$pid")
  psql_ -c "SELECT pg_stat_statements_reset()" >/dev/null
  s0=$(statements)
  sleep 20
  c1=$(cycles postgres); t1=$(cpu_ticks "$pid"); s1=$(statements)
  set_guc sync.poll_interval 10s
  python3 -c 'import sys
n, c, t, s, hz = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print("  %8d %8d %14.2f %16.1f %10.2f" % (n, c, t * 1000.0 / hz / max(c, 1), s / max(c, 1), t * 100.0 / hz / 20))' \
    "$n" "$((c1 - c0))" "$((t1 - t0))" "$((s1 - s0))" "$HZ"
  # SHOW_STATEMENTS=1: the worker's statements of the window, most called first
  [ -n "${SHOW_STATEMENTS:-}" ] && psql_ -At -F' | ' -c "SELECT calls, left(regexp_replace(query, '\s+', ' ', 'g'), 150)
    FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'postgres'
      AND s.query NOT LIKE '%pg_stat_statements%' AND s.query NOT LIKE '%worker_status%'
      AND s.query NOT LIKE '%pg_stat_activity%' ORDER BY calls DESC LIMIT 12"
done
[ -n "${ROUNDS_ONLY:-}" ] && exit 0

# --- five realtime mirrors ---
for i in $(seq $((M > 4 ? M - 4 : 1)) "$M"); do
  psql_ -c "SELECT sync.alter_mirror('m.obj$(printf %03d $i)', options => '{\"realtime\": true}')" >/dev/null
done
settled "$M"
sleep 3

idle() {
  local label=$1 sup pids p
  sup=$(psql_ -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'sync supervisor'")
  pids=$(psql_ -At -F' ' -c "SELECT datname, pid FROM sync.worker_status() WHERE state = 'running' ORDER BY datname")
  declare -A before
  before[supervisor]=$(cpu_ticks "$sup")
  while read -r db p; do before[$db]=$(cpu_ticks "$p"); done <<<"$pids"
  ctl DELETE /__emulator/requests >/dev/null
  local c0; c0=$(cycles postgres)
  sleep "$IDLE"
  local c1; c1=$(cycles postgres)
  echo "(1) idle $IDLE s, $label; uptime: $(uptime)"
  python3 -c 'import sys; print("  %-12s %6.3f %% of a core" % ("supervisor", (int(sys.argv[2]) - int(sys.argv[1])) * 100.0 / int(sys.argv[3]) / int(sys.argv[4])))' \
    "${before[supervisor]}" "$(cpu_ticks "$sup")" "$HZ" "$IDLE"
  while read -r db p; do
    python3 -c 'import sys; print("  %-12s %6.3f %% of a core" % (sys.argv[5], (int(sys.argv[2]) - int(sys.argv[1])) * 100.0 / int(sys.argv[3]) / int(sys.argv[4])))' \
      "${before[$db]}" "$(cpu_ticks "$p")" "$HZ" "$IDLE" "$db"
  done <<<"$pids"
  echo "  rounds of the postgres worker: $((c1 - c0))"
  ctl GET '/__emulator/requests?api=salesforce' | python3 -c '
import json, sys
secs = float(sys.argv[1])
reqs = json.load(sys.stdin)
cometd = sum(1 for r in reqs if "/cometd/" in r["path"])
auth = sum(1 for r in reqs if "/oauth2/" in r["path"])
api = len(reqs) - cometd - auth
print("  API calls/min %.1f, CometD requests/min %.1f, token requests %d" % (api * 60 / secs, cometd * 60 / secs, auth))' "$IDLE"
}

idle "sync.pull_interval = 1h, $M mirrors (5 realtime) + $NDB databases with one mirror each"

# --- (2) commits, each to another mirror ---
echo "(2) commit -> remote write: $K commits, one at a time, each to another of $M mirrors; uptime: $(uptime)"
COMMITS=$DIR/commits
: >"$COMMITS"
VAL=$(psql_ -At -c "SELECT local_column FROM sync.field WHERE remote_name = 'Val__c' LIMIT 1")
NAME=$(psql_ -At -c "SELECT local_column FROM sync.field WHERE remote_name = 'Name' LIMIT 1")
for i in $(seq 1 "$K"); do
  t=$(( (i * 37) % M + 1 ))
  ts=$(psql_ -At -c "UPDATE m.obj$(printf %03d $t) SET $VAL = 'W$i' WHERE $NAME = 'R$t-1'" \
                 -c "SELECT extract(epoch FROM clock_timestamp())")
  echo "W$i $ts" >>"$COMMITS"
  until [ "$(psql_ -At -c 'SELECT (SELECT count(*) FROM sync.outbox) + (SELECT count(*) FROM sync.capture_log)')" = 0 ]; do sleep 0.01; done
done
ctl GET '/__emulator/requests?api=salesforce' | python3 -c '
import json, sys
from benchlib import arrivals, composite_writes, summary
reqs = json.load(sys.stdin)
writes = list(composite_writes(reqs, "Val__c"))
commits, lat = arrivals(sys.argv[1], writes)
if not lat:
    sys.exit("no write arrived")
if sys.argv[2]:
    # SHOW_SLOW=ms: the requests the emulator saw between a slow commit and its write
    arrived = {}
    for v, t in (w.split() for w in writes):
        arrived.setdefault(v, float(t))
    for v in commits:
        if v in arrived and (arrived[v] - commits[v]) * 1000 > float(sys.argv[2]):
            print("  slow %s: %.0f ms" % (v, (arrived[v] - commits[v]) * 1000))
            for r in reqs:
                if commits[v] <= r["time"] <= arrived[v]:
                    ch = r["body"][0].get("channel", "") if isinstance(r["body"], list) and r["body"] else ""
                    print("    +%5.0f ms %s %s %s" % ((r["time"] - commits[v]) * 1000, r["method"], r["path"], ch))
print(summary(lat, len(commits), ""))
' "$COMMITS" "${SHOW_SLOW:-}"

# --- (1) again, each non-realtime mirror polling every 30 s ---
set_guc sync.pull_interval 30s
psql_ -c "UPDATE sync.mirror_state SET next_pull_at = now() + random() * interval '30 seconds'
          WHERE mirror IN (SELECT id FROM sync.mirror WHERE NOT options ? 'realtime'); SELECT sync.wake()" >/dev/null
for d in $(seq 1 $NDB); do
  psql_ -d "db$d" -c "UPDATE sync.mirror_state SET next_pull_at = now() + random() * interval '30 seconds'; SELECT sync.wake()" >/dev/null
done
sleep 35
idle "sync.pull_interval = 30s (non-realtime mirrors poll)"
[ -n "${KEEP_LOG:-}" ] && cp "$DIR/server.log" "$KEEP_LOG"
