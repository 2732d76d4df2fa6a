#!/usr/bin/env bash
# bench/valgrind_netsuite.sh — bench/valgrind_backend.sh for the NetSuite
# paths: one backend under valgrind (memcheck) doing what the worker does —
# pull (backfill, increment with deletedrecord), capture, push one record a
# request (creates, updates, deletes), push as asynchronous batch jobs
# (mirror option "batch"), test_connection — against the emulator (TBA).
# Prints valgrind's leak and
# error summary and every report that involves sync.so (there should be
# none).  Not a timed test; needs the valgrind package (installed if missing).
#
#   bash bench/valgrind_netsuite.sh [pull/push rounds, default 2]
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"
ROUNDS=${1:-2}
command -v valgrind >/dev/null || { apt-get install -y -q valgrind >/dev/null || die "cannot install valgrind"; }
sync_bench_start "jit = off"     # sync preloaded, but the backend under valgrind is the one that works

python3 - "$EMULATOR_URL" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/__emulator/records/netsuite/customer",
                             json.dumps([{"companyName": "Co %d" % i, "email": "c%d@example.com" % i,
                                          "phone": "555-%d" % i} for i in range(1500)]).encode(),
                             {"Content-Type": "application/json"}, method="POST")
urllib.request.urlopen(req).read()
PY
psql_ <<SQL >/dev/null
CREATE EXTENSION sync; CREATE SCHEMA erp;
SELECT sync.create_connection('ns', 'netsuite', '{"account": "1234567", "base_url": "$EMULATOR_URL",
  "auth": {"type": "tba", "consumer_key": "ns-consumer-key", "consumer_secret": "ns-consumer-secret",
           "token_id": "ns-token-id", "token_secret": "ns-token-secret"}}');
SELECT sync.mirror('ns', 'customer', 'erp.customer', fields => ARRAY['companyName', 'email', 'phone'],
                   direction => 'push');
SELECT sync.mirror('ns', 'contact', 'erp.contact', fields => ARRAY['firstName', 'lastName', 'email'],
                   direction => 'push', options => '{"batch": true}');
SQL
sync_stop_cluster "$DIR"          # the worker must not take the work: the backend below does it
sed -i "s/^shared_preload_libraries = 'sync'$//" "$DIR/data/postgresql.conf"
psql_() { :; }

{
  echo "UPDATE sync.mirror SET direction = 'both';"
  echo "INSERT INTO erp.contact (first_name, last_name) SELECT 'F', 'L' || g FROM generate_series(1, 120) g;"
  echo "SELECT sync.push('erp.contact');"
  echo "SELECT sync.pull('erp.customer');"
  for r in $(seq 1 "$ROUNDS"); do
    cat <<SQL
UPDATE erp.customer SET phone = 'r$r-' || id WHERE id % 7 = 0;
INSERT INTO erp.customer (company_name, email) SELECT 'New $r ' || g, 'n$r' || g || '@example.com' FROM generate_series(1, 20) g;
DELETE FROM erp.customer WHERE id % 50 = $r;
SELECT sync.push('erp.customer');
UPDATE erp.contact SET last_name = 'R$r-' || id;
DELETE FROM erp.contact WHERE id % 10 = $r;
SELECT sync.push('erp.contact');
SELECT sync.pull('erp.customer');
SELECT sync.pull('erp.contact');
SQL
  done
  echo "SELECT sync.test_connection('ns');"
  echo "SELECT count(*) AS left_in_outbox FROM sync.outbox;"
  echo "SELECT count(*) AS parked FROM sync.errors;"
  echo "SELECT count(*) AS customers FROM erp.customer;"
} >"$DIR/run.sql"
# PostgreSQL's own reports, as in its src/tools/valgrind.supp (see valgrind_backend.sh)
cat >"$DIR/pg.supp" <<'SUPP'
{
   postgres_wal_padding
   Memcheck:Param
   pwrite64(buf)
   ...
   fun:XLogFlush
}
{
   postgres_ps_display
   Memcheck:Leak
   match-leak-kinds: definite
   fun:malloc
   fun:save_ps_display_args
}
SUPP
chown "$SYNC_USER" "$DIR/run.sql" "$DIR/pg.supp"
echo "running one backend under valgrind (memcheck): NetSuite pull, capture, push (single and batch), $ROUNDS rounds"
as_user valgrind --suppressions="$DIR/pg.supp" --leak-check=full --show-leak-kinds=definite --num-callers=40 --log-file="$DIR/valgrind.log" \
  postgres --single -D "$DIR/data" postgres <"$DIR/run.sql" >"$DIR/single.out" 2>&1
sed -n 's/^\t 1: \(push\|pull\|left_in_outbox\|parked\|customers\) = "\(.*\)"\t(typeid.*/  \1: \2/p' "$DIR/single.out"
grep -m5 'ERROR' "$DIR/single.out"
sed -n 's/^==[0-9]*== \(   definitely lost:.*\|   indirectly lost:.*\|     possibly lost:.*\|ERROR SUMMARY:.*\)/  \1/p' "$DIR/valgrind.log"
echo "  reports involving sync.so: $(grep -c 'sync\.so' "$DIR/valgrind.log")"
grep -B3 -A25 'sync\.so' "$DIR/valgrind.log" | head -80
grep -A12 'Invalid \|uninitialised\|Conditional jump' "$DIR/valgrind.log" | head -40
