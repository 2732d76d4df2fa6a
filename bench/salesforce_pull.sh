#!/usr/bin/env bash
# bench/salesforce_pull.sh — backfill of N Contacts from the Salesforce
# emulator by the background worker: records/s, the worker's private memory
# (it must stay bounded: pages are streamed), and the rate against a plain
# INSERT ... ON CONFLICT of the same rows.  Prints figures and ratios from
# one run.
#
#   bash bench/salesforce_pull.sh [records, default 200000]
#
# The project's targets: inbound apply >= 80 % of a plain INSERT ... ON
# CONFLICT of the same rows (issue #13; bench/apply.sh compares the two
# page by page, from the same JSON); worker memory < 100 MB during a
# 1M-record backfill.  The rate here is end to end (the emulator's paging
# and JSON included), so it understates the apply itself; the plain INSERT
# here is one statement for all rows, from text.
set -u; [ -n "${BENCH_TRACE:-}" ] && set -x
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"
N=${1:-200000}

sync_bench_start "sync.poll_interval = '1s'" \
  "synchronous_commit = off" "sync.worker_log_level = debug1"

sync_bench_seed_contacts "$N"

psql_ <<SQL >/dev/null
CREATE EXTENSION sync; CREATE SCHEMA crm;
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "$EMULATOR_URL",
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
SQL
for i in $(seq 1 100); do
  PID=$(psql_ -At -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'sync worker' AND datname = current_database()")
  [ -n "$PID" ] && break; sleep 0.1
done
[ -n "$PID" ] || die "no sync worker is running"
anon() { sed -n 's/^RssAnon:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$PID/status"; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # user + system, in clock ticks
# this run's emulator (a child of runuser when run as root), not another run's
EMU=$(pgrep -P "$EMULATOR_PID" -n 2>/dev/null || echo "$EMULATOR_PID")
A0=$(anon); C0=$(cpu "$PID"); E0=$(cpu "$EMU")
T0=$(date +%s.%N)
psql_ -c "SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName','Email','Title'])" >/dev/null
PEAK=$A0
until [ "$(psql_ -At -c "SELECT phase FROM sync.status")" = incremental ]; do
  a=$(anon); [ "$a" -gt "$PEAK" ] && PEAK=$a
  sleep 0.2
done
T1=$(date +%s.%N)
C1=$(cpu "$PID"); E1=$(cpu "$EMU"); HZ=$(getconf CLK_TCK)
APPLY_MS=$(sed -n 's/.*applied a page of [0-9]* records in \([0-9.]*\) ms.*/\1/p' "$DIR/server.log" \
           | awk '{ s += $1 } END { printf "%.0f", s }')
APPLY_CPU_MS=$(sed -n 's/.*applied a page of [0-9]* records in [0-9.]* ms (CPU \([0-9.]*\) ms).*/\1/p' "$DIR/server.log" \
           | awk '{ s += $1 } END { printf "%.0f", s }')
GOT=$(psql_ -At -c "SELECT count(*) FROM crm.contact")

# The same rows by a plain INSERT ... ON CONFLICT, from a staging copy held
# as text: rows arrive as text (from JSON) for the worker, as they would
# from any client, so both sides pay for the type input functions.
ATTS="attrelid = 'crm.contact'::regclass AND attnum > 0 AND NOT attisdropped AND attname <> 'id'"
TEXTCOLS=$(psql_ -At -c "SELECT string_agg(format('%1\$I::text AS %1\$I', attname), ', ' ORDER BY attnum) FROM pg_attribute WHERE $ATTS")
COLS=$(psql_ -At -c "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute WHERE $ATTS")
CASTS=$(psql_ -At -c "SELECT string_agg(format('%I::%s', attname, format_type(atttypid, atttypmod)), ', ' ORDER BY attnum)
                      FROM pg_attribute WHERE $ATTS")
SETS=$(psql_ -At -c "SELECT string_agg(format('%1\$I = EXCLUDED.%1\$I', attname), ', ') FROM pg_attribute
                     WHERE $ATTS AND attname <> 'remote_id'")
psql_ -c "CREATE TABLE stage AS SELECT $TEXTCOLS FROM crm.contact" -c "CREATE TABLE plain (LIKE crm.contact INCLUDING ALL)" >/dev/null
# Three times, the table emptied first each time, and the best taken:
# one run swung by a third (its first read of `stage` sets hint bits; a
# checkpoint or autovacuum may fall in it), which made the ratio below swing
# as much.  Timed inside the session (no psql start), with the backend's
# CPU time, as the engine's page line gives the apply's.
PLAIN_MS=$(psql_ -At <<SQL
$(for i in 1 2 3; do cat <<ONE
TRUNCATE plain;
SELECT split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint AS c0, clock_timestamp() AS w0 \\gset
INSERT INTO plain ($COLS) SELECT $CASTS FROM stage ON CONFLICT (remote_id) DO UPDATE SET $SETS;
SELECT round((split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint - :c0) / 1e6) || ' ' ||
       round(extract(epoch FROM clock_timestamp() - :'w0') * 1000);
ONE
done)
SQL
)
PLAIN_CPU_MS=$(echo "$PLAIN_MS" | awk 'NR == 1 || $1 < m { m = $1 } END { print m }')
PLAIN_WALL_MS=$(echo "$PLAIN_MS" | awk 'NR == 1 || $2 < m { m = $2 } END { print m }')
echo "  plain INSERT ... ON CONFLICT, three runs (CPU ms, wall ms): $(echo "$PLAIN_MS" | paste -sd/ | sed 's|/| / |g')"

python3 - "$N" "$GOT" "$T0" "$T1" 0 "$(awk -v ms="$PLAIN_WALL_MS" 'BEGIN { printf "%.3f", ms / 1000 }')" "$A0" "$PEAK" "$(( C1 - C0 ))" "$(( E1 - E0 ))" "$HZ" "$APPLY_MS" \
  "${APPLY_CPU_MS:-0}" "${PLAIN_CPU_MS:-0}" <<'PY'
import sys
n, got = int(sys.argv[1]), int(sys.argv[2])
t0, t1, p0, p1 = map(float, sys.argv[3:7])
a0, peak = int(sys.argv[7]), int(sys.argv[8])
wcpu, ecpu = int(sys.argv[9]) / int(sys.argv[11]), int(sys.argv[10]) / int(sys.argv[11])
apply_s = int(sys.argv[12]) / 1000
rate = got / (t1 - t0)
plain = got / (p1 - p0)
print(f"  backfill of {got} of {n} records: {t1 - t0:.1f} s = {rate:,.0f} records/s (emulator paging included)")
print(f"  plain INSERT ... ON CONFLICT of the same rows (from text), best of 3: {p1 - p0:.2f} s = {plain:,.0f} records/s")
print(f"  apply alone (page transactions, from the worker's DEBUG1 log): {apply_s:.2f} s = "
      f"{got / max(apply_s, 0.001):,.0f} records/s, ratio {got / max(apply_s, 0.001) / plain:.2f} of plain (target >= 0.80)")
apply_cpu, plain_cpu = int(sys.argv[13]) / 1000, int(sys.argv[14]) / 1000
if apply_cpu > 0 and plain_cpu > 0:
    print(f"  the same in CPU time (less disturbed by other load): apply {apply_cpu:.2f} s, plain {plain_cpu:.2f} s, "
          f"ratio {plain_cpu / apply_cpu:.2f}")
print(f"  end to end: ratio {rate / plain:.2f} of plain")
print(f"  CPU during the backfill: worker {wcpu:.1f} s ({got / max(wcpu, 0.01):,.0f} records per worker CPU second: "
      f"fetch, parse and apply), emulator {ecpu:.1f} s")
print(f"  worker private memory (RssAnon): {a0 / 1024:.1f} MB before, peak {peak / 1024:.1f} MB during "
      f"(target < 100 MB for 1M records)")
PY
