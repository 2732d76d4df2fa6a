#!/usr/bin/env bash
# bench/latency.sh — both directions at once, for each provider: how long a
# committed local change takes to reach the remote, how long a remote change
# takes to reach the local row, and how many API calls a mirror spends a
# minute while busy and while idle.  One cluster, one emulator, one worker.
#
#   bash bench/latency.sh [changes/s each way, default 20] [seconds, default 30] [idle seconds, default 60]
#   BENCH_PROVIDERS="salesforce hubspot netsuite" (the default) picks the providers
#
# Per provider, a mirror of remote records (Salesforce Contact with
# "realtime": true, i.e. Change Data Capture; HubSpot contacts; NetSuite
# customers, TBA), all with the default schedule (adaptive polling for
# HubSpot and NetSuite), 400 records or twice the changes each way, so that
# every change touches a row of its own (a row changed twice before the
# first change arrived would coalesce, as it should, and blur the count).
# Two drivers run together for the given seconds:
#   outbound: one psql session commits one UPDATE at a time at the rate (the
#     first half of the rows, one column), and reads the clock after each
#     commit; latency = the emulator's arrival time of the request carrying
#     the value minus that;
#   inbound: edits of the other half (another column) through the emulator's
#     control API, as a remote user would, at the rate; latency = the time a
#     trigger on the local table saw the value minus the time the remote
#     write returned.
# One machine, one clock.  Busy calls: the provider's requests during the
# drivers' window (CometD long polls listed apart: Salesforce does not count
# them against the API limit).  Idle calls: after the mirror has backed off
# to its steady schedule (HubSpot and NetSuite: pull_interval, 30 s by
# default), the requests over the idle window.
# Targets (issue 13): Salesforce inbound p50 < 1 s, p99 < 3 s at 100
# changes/s; HubSpot inbound p50 < 10 s while active; outbound p50 < 100 ms,
# p99 < 1 s; zero API calls a minute while idle beyond the long polls.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"
RATE=${1:-20}
SECS=${2:-30}
IDLE=${3:-60}
PROVIDERS=${BENCH_PROVIDERS:-salesforce hubspot netsuite}
N=$(python3 -c "import sys; print(max(400, 2 * int(float(sys.argv[1]) * float(sys.argv[2]))))" "$RATE" "$SECS")

sync_bench_start "sync.poll_interval = '10s'" "sync.http_timeout = '30s'"
ctl POST /__emulator/config '{"salesforce_cdc_entities": ["Contact"]}' >/dev/null
psql_ <<SQL >/dev/null
CREATE EXTENSION sync;
CREATE TABLE public.arrival (v text, at timestamptz);
CREATE FUNCTION public.note_arrival() RETURNS trigger LANGUAGE plpgsql AS \$\$
DECLARE
    col text := TG_ARGV[0];
    newv text := to_jsonb(NEW)->>col;
BEGIN
    IF newv IS DISTINCT FROM to_jsonb(OLD)->>col THEN
        INSERT INTO public.arrival VALUES (newv, clock_timestamp());
    END IF;
    RETURN NEW;
END \$\$;
SQL

# seed [api] [object] [python expression of record i]
seed() {
  python3 - "$EMULATOR_URL/__emulator/records/$1/$2" "$N" <<PY
import json, sys, urllib.request
recs = [$3 for i in range(1, int(sys.argv[2]) + 1)]
req = urllib.request.Request(sys.argv[1], json.dumps(recs).encode(), {"Content-Type": "application/json"}, method="POST")
urllib.request.urlopen(req).read()
PY
}

# setup_<provider>: the connection, the mirror, and these variables:
#   TABLE (local table), API (emulator API name), OBJ (emulator object),
#   IN_COL/IN_FIELD (local column / remote field edited remotely),
#   OUT_COL (local column edited locally), ORDER (local column ordering rows
#   as the seed did)
setup_salesforce() {
  seed salesforce Contact "{'FirstName': 'F%d' % i, 'LastName': 'L%05d' % i}"
  psql_ <<SQL >/dev/null
CREATE SCHEMA sf;
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "$EMULATOR_URL",
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
SELECT sync.mirror('sf', 'Contact', 'sf.contact', fields => ARRAY['FirstName', 'LastName'],
                   options => '{"realtime": true}');
SQL
  TABLE=sf.contact API=salesforce OBJ=Contact IN_COL=first_name IN_FIELD=FirstName OUT_COL=last_name ORDER=last_name
}
setup_hubspot() {
  seed hubspot contacts "{'email': 'c%05d@example.com' % i, 'firstname': 'F%d' % i, 'lastname': 'L%d' % i}"
  psql_ <<SQL >/dev/null
CREATE SCHEMA hs;
SELECT sync.create_connection('hs', 'hubspot', '{"base_url": "$EMULATOR_URL",
  "auth": {"type": "private_app", "token": "pat-sync-test"}}');
SELECT sync.mirror('hs', 'contacts', 'hs.contact', fields => ARRAY['email', 'firstname', 'lastname']);
SQL
  TABLE=hs.contact API=hubspot OBJ=contacts IN_COL=firstname IN_FIELD=firstname OUT_COL=lastname ORDER=email
}
setup_netsuite() {
  seed netsuite customer "{'companyName': 'Co %05d' % i, 'email': 'c%05d@example.com' % i, 'phone': '555-%07d' % i}"
  psql_ <<SQL >/dev/null
CREATE SCHEMA ns;
SELECT sync.create_connection('ns', 'netsuite', '{"account": "1234567", "base_url": "$EMULATOR_URL",
  "auth": {"type": "tba", "consumer_key": "ns-consumer-key", "consumer_secret": "ns-consumer-secret",
           "token_id": "ns-token-id", "token_secret": "ns-token-secret"}}');
SELECT sync.mirror('ns', 'customer', 'ns.customer', fields => ARRAY['companyName', 'email', 'phone']);
SQL
  TABLE=ns.customer API=netsuite OBJ=customer IN_COL=company_name IN_FIELD=companyName OUT_COL=phone ORDER=email
}

# calls [seconds] [label]: the provider's requests in the emulator's log
calls() {
  ctl GET "/__emulator/requests?api=$API" | python3 -c '
import json, re, sys
secs, label = float(sys.argv[1]), sys.argv[2]
reqs = json.load(sys.stdin)
polls = [r for r in reqs if r["path"].startswith("/cometd/")]
api = [r for r in reqs if not r["path"].startswith("/cometd/")]
kinds = {}
for r in api:
    k = r["method"] + " " + re.sub(r"/(?:[0-9]+|[0-9A-Za-z]{18})(?=/|$)", "/{id}", r["path"])
    kinds[k] = kinds.get(k, 0) + 1
line = f"  {label}: {len(api)} API calls in {secs:.0f} s = {len(api) * 60 / secs:.1f}/min"
if polls:
    line += f" (+ {len(polls)} CometD long polls, not counted by Salesforce)"
print(line)
for k, n in sorted(kinds.items(), key=lambda x: -x[1])[:4]:
    print(f"      {n:5d}  {k}")
' "$1" "$2"
}

run_provider() {
  local prov=$1 tag
  tag=$(echo "$prov" | cut -c1-2)
  "setup_$prov"
  for i in $(seq 1 1500); do
    [ "$(psql_ -At -c "SELECT count(*) FROM $TABLE WHERE remote_id IS NOT NULL")" = "$N" ] && break
    [ "$i" = 1500 ] && die "$TABLE: the backfill did not bring the $N seeded records in 5 minutes"
    sleep 0.2
  done
  psql_ -c "CREATE TRIGGER note_arrival AFTER UPDATE ON $TABLE FOR EACH ROW
            EXECUTE FUNCTION public.note_arrival('$IN_COL')" >/dev/null
  psql_ -At -F ' ' -c "SELECT id, remote_id FROM $TABLE ORDER BY $ORDER" >"$DIR/rows.$prov"
  echo "$prov: $RATE changes/s each way for $SECS s (mirror: $TABLE)"
  ctl DELETE /__emulator/requests >/dev/null
  python3 - "$EMULATOR_URL" "$DIR/rows.$prov" "$RATE" "$SECS" "$DIR" "$tag" "$API" "$OBJ" "$IN_FIELD" \
            "$TABLE" "$OUT_COL" "$PG_BINDIR/psql" "$SYNC_USER" "$PORT" <<'PY'
import os, subprocess, sys, threading, time
from benchlib import drive_remote
(url, rows_file, rate, secs, d, tag, api, obj, in_field, table, out_col, psql, user, port) = sys.argv[1:15]
rate, secs = float(rate), float(secs)
rows = [l.split() for l in open(rows_file) if l.strip()]
half = len(rows) // 2
n = int(rate * secs)

def pace(i, start):
    delay = start + i / rate - time.time()
    if delay > 0:
        time.sleep(delay)

def inbound(start):
    drive_remote(url, api, obj, in_field, [r[1] for r in rows[half:]], rate, secs, d + "/sent_in", tag + "I", start)

def outbound(start):
    cmd = (["runuser", "-u", user, "--"] if os.getuid() == 0 else []) + [psql, "-X", "-q", "-At", "-h", d, "-p", port, "-d", "postgres",
           "-v", "ON_ERROR_STOP=1"]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=open(d + "/sent_out", "w"), text=True)
    for i in range(n):
        pace(i, start)
        v = "%sO%06d" % (tag, i)
        # autocommit: the UPDATE has committed when the clock is read
        p.stdin.write("UPDATE %s SET %s = '%s' WHERE id = %s;\n"
                      "SELECT '%s', extract(epoch FROM clock_timestamp());\n"
                      % (table, out_col, v, rows[i][0], v))
        p.stdin.flush()
    p.stdin.close()
    p.wait()

start = time.time() + 0.5
ts = [threading.Thread(target=f, args=(start,)) for f in (inbound, outbound)]
for t in ts: t.start()
for t in ts: t.join()
print("  drivers: %d changes each way in %.1f s" % (n, time.time() - start))
PY
  calls "$SECS" "busy"
  local total
  total=$(wc -l <"$DIR/sent_in")
  for _ in $(seq 1 600); do
    [ "$(psql_ -At -c "SELECT count(DISTINCT v) FROM public.arrival WHERE v LIKE '${tag}I%'")" -ge "$total" ] &&
      [ "$(psql_ -At -c "SELECT (SELECT count(*) FROM sync.outbox WHERE state = 'pending') + (SELECT count(*) FROM sync.capture_log)")" = 0 ] && break
    sleep 0.2
  done
  psql_ -At -c "SELECT '  parked by the remote: ' || count(*) || coalesce(' (' || min(error_code) || ': ' || min(error_message) || ')', '')
                FROM sync.outbox WHERE state = 'parked'"
  # outbound: the emulator's arrival of each value; inbound: the trigger's
  ctl GET "/__emulator/requests?api=$API" | python3 -c '
import json, re, sys, textwrap
from benchlib import arrivals, summary
seen = ["%s %f" % (v, r["time"]) for r in json.load(sys.stdin)
        if r["method"] in ("POST", "PATCH", "PUT") and not r["path"].startswith("/cometd/")
        for v in re.findall(sys.argv[2] + "O[0-9]{6}", json.dumps(r["body"]))]
sent, lat = arrivals(sys.argv[1], seen)
print("  outbound (commit -> remote):"); print(textwrap.indent(summary(lat, len(sent), "target p50 < 100 ms, p99 < 1 s"), "  "))
' "$DIR/sent_out" "$tag"
  psql_ -At -F ' ' -c "SELECT v, extract(epoch FROM min(at)) FROM public.arrival WHERE v LIKE '${tag}I%' GROUP BY v" |
    python3 -c '
import sys, textwrap
from benchlib import arrivals, summary
sent, lat = arrivals(sys.argv[1], sys.stdin)
print("  inbound (remote -> row):"); print(textwrap.indent(summary(lat, len(sent), sys.argv[2]), "  "))
' "$DIR/sent_in" "$([ "$prov" = salesforce ] && echo 'target p50 < 1 s, p99 < 3 s' || echo 'target p50 < 10 s while active')"

  # idle: wait for the steady schedule, then count
  if [ "$prov" != salesforce ]; then
    until [ "$(psql_ -At -c "SELECT s.next_pull_at - s.last_pull_at >= interval '30 s' FROM sync.mirror_state s
                             JOIN sync.mirror m ON m.id = s.mirror WHERE m.local_table = '$TABLE'::regclass")" = t ]; do
      sleep 1
    done
  fi
  ctl DELETE /__emulator/requests >/dev/null
  sleep "$IDLE"
  calls "$IDLE" "idle"
  psql_ -c "DROP TRIGGER note_arrival ON $TABLE" >/dev/null
}

for p in $PROVIDERS; do
  run_provider "$p"
done
