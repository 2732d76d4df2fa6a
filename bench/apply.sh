#!/usr/bin/env bash
# bench/apply.sh — sync's inbound apply against a raw upsert of the same
# rows from the same JSON, page by page, in one run (issue #13: >= 0.8).
#
#   bash bench/apply.sh [records, default 20000] [rounds, default 5]
#
# N Contacts are seeded in the Salesforce emulator and pulled by
# sync.pull() in one backend (no worker: nothing else runs).  Each page's
# apply is timed by the engine itself, wall clock and the backend's CPU
# time (DEBUG1 "applied a page of N records in X ms (CPU Y ms)": from the
# parsed page to the rows, the journal, sync.errors and the cursor; the
# HTTP request and sync's JSON parse are not in it).  The very same pages —
# the emulator's answers to the query sync sent, replayed from its request
# log — are applied to a plain table of the same definition (LIKE ...
# INCLUDING ALL: its indexes, its identity; not sync's capture trigger), one
# statement per page, timed in the server (clock_timestamp() and
# /proc/self/schedstat), two ways:
#   from the JSON:  INSERT ... SELECT ... FROM json_to_recordset(page->'records')
#                     ON CONFLICT (remote_id) DO UPDATE SET ...
#   from text:      the same from the page's records already parsed into a
#                   table of text columns (untimed) — the JSON parse left
#                   out, as it is on sync's side.
# Two phases: "insert" (a backfill: every row new) and "update" (every
# record changed remotely, pulled again by an incremental pull: every row
# updated), `rounds` times each, every round on fresh tables.  The figures
# are each page's best time over the rounds, summed (the machine is shared:
# a page's best is the least disturbed), and the ratios raw / sync (1.0:
# as fast as the raw upsert).  CPU time is disturbed less than wall time.
set -u; [ -n "${BENCH_TRACE:-}" ] && set -x
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"
N=${1:-20000}
ROUNDS=${2:-5}

# no worker: sync.pull() does the pulling
sync_bench_start --no-worker "synchronous_commit = off" "shared_buffers = 256MB"

sync_bench_seed_contacts "$N"

psql_ <<SQL >/dev/null
CREATE EXTENSION sync; CREATE SCHEMA crm;
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "$EMULATOR_URL",
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
CREATE TABLE page (phase text, n int, body json);
SQL

# The pages sync was served (its query replayed from the emulator's log,
# nextRecordsUrl followed), stored in table page for the raw side.
save_pages() {   # phase since
  python3 - "$EMULATOR_URL" "$2" >"$DIR/pages.json" <<'PY'
import json, sys, urllib.request, urllib.parse
url, since = sys.argv[1], sys.argv[2]
log = json.load(urllib.request.urlopen(url + "/__emulator/requests?api=salesforce&since=" + since))
q = [e for e in log if e.get("method") == "GET" and "/query" in e.get("path", "")
     and "Contact" in json.dumps(e.get("query"))]
first = q[0]
tok = json.load(urllib.request.urlopen(urllib.request.Request(
    url + "/services/oauth2/token", urllib.parse.urlencode({"grant_type": "client_credentials",
    "client_id": "sync-client", "client_secret": "sync-secret"}).encode())))["access_token"]
qs = first.get("query")
qs = urllib.parse.urlencode(qs, doseq=True) if isinstance(qs, dict) else (qs or "")
path = first["path"] + ("?" + qs if qs else "")
hdr = {"Authorization": "Bearer " + tok}
for k, v in (first.get("headers") or {}).items():
    if k.lower() == "sforce-query-options":
        hdr[k] = v
while path:
    page = json.load(urllib.request.urlopen(urllib.request.Request(url + path, headers=hdr)))
    print(json.dumps(page))
    path = page.get("nextRecordsUrl")
PY
  [ -s "$DIR/pages.json" ] || die "could not replay sync's query"
  # one page per line; psql's \copy reads text format: escape backslashes
  sed 's/\\/\\\\/g' "$DIR/pages.json" | awk -v p="$1" 'BEGIN { OFS = "\t" } { print p, NR, $0 }' >"$DIR/pages.tsv"
  psql_ -c "\\copy page FROM '$DIR/pages.tsv'"
}

# Sync's side: sync.pull() with the engine's page timings (wall and CPU),
# appended to $TIMES; prints the records applied.
sync_pull() {   # phase
  psql_ -c "SET client_min_messages = debug1" -c "SELECT sync.pull('crm.contact')" >/dev/null 2>"$DIR/pull.log"
  sed -n 's/.*applied a page of \([0-9]*\) records in \([0-9.]*\) ms (CPU \([0-9.]*\) ms).*/\1 \2 \3/p' "$DIR/pull.log" \
    | awk -v ph="$1" -v f="$TIMES" '{ n += $1; w += $2; c += $3; wp = wp " " $2; cp = cp " " $3 }
        END { print ph, "sync", "wall", w, wp >>f; print ph, "sync", "cpu", c, cp >>f; print n + 0 }'
}

LOGSEQ() { curl -s "$EMULATOR_URL/__emulator/requests?api=salesforce" \
             | python3 -c 'import json,sys; l=json.load(sys.stdin); print(l[-1]["seq"] if l and "seq" in l[-1] else len(l))'; }

FIELDS="ARRAY['FirstName','LastName','Email','Title']"
mirror_fresh() {
  psql_ <<SQL >/dev/null
SELECT sync.unmirror(local_table) FROM sync.mirror WHERE local_table::text = 'crm.contact';
DROP TABLE IF EXISTS crm.contact;
SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => $FIELDS);
SQL
}

# The raw statement, from the mirror's own field list and types.
raw_sql() {
  psql_ -At <<'SQL'
SELECT format('INSERT INTO plain AS t (%s) SELECT %s FROM pg_catalog.json_to_recordset($1->''records'') AS r(%s) '
              'ON CONFLICT (%I) DO UPDATE SET %s',
              string_agg(quote_ident(f.local_column), ', '),
              string_agg(format('r.%I::%s', f.remote_name, f.local_type), ', '),
              string_agg(format('%I text', f.remote_name), ', '),
              min(m.remote_id_column),
              string_agg(format('%1$I = EXCLUDED.%1$I', f.local_column), ', ')
                FILTER (WHERE f.local_column <> m.remote_id_column))
FROM sync.field f JOIN sync.mirror m ON m.id = f.mirror
WHERE m.local_table = 'crm.contact'::regclass AND f.authority <> 'local'
SQL
}

# ... and from the page's records already as text (table stage: the JSON
# parsed beforehand, untimed), which is what sync's apply starts from.
raw_text_sql() {
  psql_ -At <<'SQL'
SELECT format('INSERT INTO plain AS t (%s) SELECT %s FROM stage s WHERE s.phase = $1 AND s.n = $2 '
              'ON CONFLICT (%I) DO UPDATE SET %s',
              string_agg(quote_ident(f.local_column), ', '),
              string_agg(format('s.%I::%s', f.remote_name, f.local_type), ', '),
              min(m.remote_id_column),
              string_agg(format('%1$I = EXCLUDED.%1$I', f.local_column), ', ')
                FILTER (WHERE f.local_column <> m.remote_id_column))
FROM sync.field f JOIN sync.mirror m ON m.id = f.mirror
WHERE m.local_table = 'crm.contact'::regclass AND f.authority <> 'local'
SQL
}
stage_pages() {   # phase
  local cols; cols=$(psql_ -At -c "SELECT string_agg(format('%I text', f.remote_name), ', ')
    FROM sync.field f JOIN sync.mirror m ON m.id = f.mirror
    WHERE m.local_table = 'crm.contact'::regclass AND f.authority <> 'local'")
  psql_ -c "CREATE TABLE IF NOT EXISTS stage AS SELECT p.phase, p.n, r.* FROM page p,
              pg_catalog.json_to_recordset(p.body->'records') AS r($cols) WHERE false" \
        -c "INSERT INTO stage SELECT p.phase, p.n, r.* FROM page p,
              pg_catalog.json_to_recordset(p.body->'records') AS r($cols) WHERE p.phase = '$1'" \
        -c "CREATE INDEX IF NOT EXISTS stage_page ON stage (phase, n)" -c "ANALYZE stage" >/dev/null
}

# Raw side: every page of a phase, one statement each, timed in the
# server: wall clock and the backend's CPU time (/proc/self/schedstat, as
# the engine's CLOCK_THREAD_CPUTIME_ID); appended to $TIMES.
raw() {   # phase json|text
  local sql
  if [ "$2" = json ]; then sql=$(raw_sql); else sql=$(raw_text_sql); fi
  psql_ -At 2>&1 <<SQL | sed -n "s/^NOTICE:  /$1 $2 /p" >>"$TIMES"
DO \$\$
DECLARE p record; t0 timestamptz; c0 bigint; d float8; c float8;
  wt float8 := 0; ct float8 := 0; wp text := ''; cp text := '';
BEGIN
  FOR p IN SELECT n, body FROM page WHERE phase = '$1' ORDER BY n LOOP
    c0 := split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint;
    t0 := clock_timestamp();
    IF '$2' = 'json' THEN
      EXECUTE \$q\$$sql\$q\$ USING p.body;
    ELSE
      EXECUTE \$q\$$sql\$q\$ USING '$1'::text, p.n;
    END IF;
    d := extract(epoch FROM clock_timestamp() - t0) * 1000;
    c := (split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint - c0) / 1e6;
    wt := wt + d; ct := ct + c;
    wp := wp || ' ' || round(d::numeric, 3); cp := cp || ' ' || round(c::numeric, 3);
  END LOOP;
  RAISE NOTICE 'wall % %', round(wt::numeric, 3), wp;
  RAISE NOTICE 'cpu % %', round(ct::numeric, 3), cp;
END \$\$;
SQL
}
# a fresh plain table of crm.contact's definition, holding rows of a phase's pages
plain_fresh() {   # [phase whose rows it starts with]
  psql_ -c "DROP TABLE IF EXISTS plain" -c "CREATE TABLE plain (LIKE crm.contact INCLUDING ALL)" >/dev/null
  [ -n "${1:-}" ] && psql_ -c "INSERT INTO plain ($COLS) $OLD_ROWS" >/dev/null
  return 0
}

TIMES=$DIR/times   # lines: phase side wall|cpu total page1 page2 ...
COLS="remote_id, first_name, last_name, email, title, remote_modified_at"
OLD_ROWS="SELECT s.\"Id\", s.\"FirstName\", s.\"LastName\", s.\"Email\", s.\"Title\", '2000-01-01'::timestamptz
  FROM stage s WHERE s.phase = 'insert'"

# phase "insert": the backfill
for r in $(seq 1 "$ROUNDS"); do
  mirror_fresh
  S=$(LOGSEQ)
  GOT=$(sync_pull insert)
  [ "$GOT" -eq "$N" ] || die "sync applied $GOT of $N records (see $DIR/pull.log)"
  [ "$r" -eq 1 ] && { save_pages insert "$S"; stage_pages insert; }
  plain_fresh; raw insert json
  plain_fresh; raw insert text
  tail -6 "$TIMES" | awk -v r="$r" '{ v[$2 $3] = $4 } END { printf "  round %d (ms): sync %.0f (CPU %.0f), raw from JSON %.0f (CPU %.0f), raw from text %.0f (CPU %.0f)\n",
        r, v["syncwall"], v["synccpu"], v["jsonwall"], v["jsoncpu"], v["textwall"], v["textcpu"] }'
done

# phase "update": every record changed remotely, pulled again (incremental)
echo "changing every record's Title in the emulator"
python3 - "$EMULATOR_URL" <<'PY'
import http.client, json, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port)
c.request("GET", "/__emulator/records/salesforce/Contact")
ids = [r["Id"] for r in json.loads(c.getresponse().read())]
for i, rid in enumerate(ids):
    c.request("PATCH", "/__emulator/records/salesforce/Contact/" + rid, json.dumps({"Title": "U%d" % i}),
              {"Content-Type": "application/json"})
    c.getresponse().read()
PY
for r in $(seq 1 "$ROUNDS"); do
  # the table as after the backfill (written with triggers off: nothing is
  # captured), then the incremental pull of the changed records
  mirror_fresh
  psql_ >/dev/null <<SQL
SET session_replication_role = replica;
INSERT INTO crm.contact ($COLS) $OLD_ROWS;
UPDATE sync.mirror_state SET phase = 'incremental',
  cursor = jsonb_build_object('mode', 'incremental', 'since', '2000-01-01T00:00:00.000+0000',
                              'deletes_checked', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
WHERE mirror = (SELECT id FROM sync.mirror WHERE local_table = 'crm.contact'::regclass);
SQL
  S=$(LOGSEQ)
  GOT=$(sync_pull update)
  [ "$GOT" -eq "$N" ] || die "sync applied $GOT of $N records in the update phase (see $DIR/pull.log)"
  [ "$r" -eq 1 ] && { save_pages update "$S"; stage_pages update; }
  plain_fresh insert; raw update json
  plain_fresh insert; raw update text
  tail -6 "$TIMES" | awk -v r="$r" '{ v[$2 $3] = $4 } END { printf "  round %d (ms): sync %.0f (CPU %.0f), raw from JSON %.0f (CPU %.0f), raw from text %.0f (CPU %.0f)\n",
        r, v["syncwall"], v["synccpu"], v["jsonwall"], v["jsoncpu"], v["textwall"], v["textcpu"] }'
done

uptime
python3 - "$N" "$TIMES" <<'PY'
import sys
n = int(sys.argv[1])
runs = {}
for line in open(sys.argv[2]):
    ph, side, clock, total, *pages = line.split()
    runs.setdefault((ph, side, clock), []).append([float(p) for p in pages])
def best(ph, side, clock):
    """the sum over the pages of each page's best time in the rounds"""
    return sum(min(p) for p in zip(*runs[(ph, side, clock)]))
for ph in ("insert", "update"):
    print(f"  {ph}: {n} records, {len(runs[(ph, 'sync', 'wall')])} rounds; each page's best time, summed:")
    for clock in ("cpu", "wall"):
        s, j, t = best(ph, "sync", clock), best(ph, "json", clock), best(ph, "text", clock)
        print(f"    {clock:4}: sync's apply {s:6.0f} ms = {n / s * 1000:7,.0f} records/s; raw upsert from the JSON "
              f"{j:6.0f} ms: ratio {j / s:.2f}; raw upsert from text {t:6.0f} ms: ratio {t / s:.2f}")
PY
