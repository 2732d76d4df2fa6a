#!/usr/bin/env bash
# bench/valgrind_backend.sh — one backend under valgrind (memcheck) doing
# what the worker does — push, pull, test_connection, capture — against the
# emulator for Salesforce and HubSpot.  Prints valgrind's leak and error
# summary and every report that involves sync.so (there should be none).
# Not a timed test; needs the valgrind package (installed if missing).
#
#   bash bench/valgrind_backend.sh
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"
command -v valgrind >/dev/null || { apt-get install -y -q valgrind >/dev/null || die "cannot install valgrind"; }
sync_bench_start "jit = off"     # sync preloaded, but the backend under valgrind is the one that works

python3 - "$EMULATOR_URL" <<'PY'
import json, sys, urllib.request
def post(path, recs):
    req = urllib.request.Request(sys.argv[1] + path, json.dumps(recs).encode(),
                                 {"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req).read()
post("/__emulator/records/salesforce/Contact",
     [{"FirstName": "F%d" % i, "LastName": "L%d" % i, "Email": "c%d@example.com" % i} for i in range(300)])
post("/__emulator/records/hubspot/contacts",
     [{"email": "h%d@example.com" % i, "firstname": "H%d" % i} for i in range(300)])
PY
psql_ <<SQL >/dev/null
CREATE EXTENSION sync; CREATE SCHEMA crm;
SELECT sync.create_connection('sf', 'salesforce', '{"login_url": "$EMULATOR_URL",
  "auth": {"type": "client_credentials", "client_id": "sync-client", "client_secret": "sync-secret"}}');
SELECT sync.create_connection('hs', 'hubspot', '{"base_url": "$EMULATOR_URL", "auth": {"type": "private_app", "token": "pat-sync-test"}}');
SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName','LastName','Email'], direction => 'push');
SELECT sync.mirror('hs', 'contacts', 'crm.hs_contact', fields => ARRAY['email','firstname','lastname'], direction => 'push');
SQL
sync_stop_cluster "$DIR"          # the worker must not take the work: the backend below does it
sed -i "s/^shared_preload_libraries = 'sync'$//" "$DIR/data/postgresql.conf"
psql_() { :; }

cat >"$DIR/run.sql" <<'SQL'
UPDATE sync.mirror SET direction = 'both';
SELECT sync.pull('crm.contact');
SELECT sync.pull('crm.hs_contact');
UPDATE crm.contact SET first_name = 'X' || id;
UPDATE crm.hs_contact SET lastname = 'Y' || id;
INSERT INTO crm.contact (first_name, last_name) SELECT 'N', 'New' || g FROM generate_series(1, 50) g;
DELETE FROM crm.hs_contact WHERE id % 10 = 0;
SELECT sync.push('crm.contact');
SELECT sync.push('crm.hs_contact');
SELECT sync.pull('crm.contact');
SELECT sync.pull('crm.hs_contact');
SELECT sync.test_connection('sf');
SELECT sync.test_connection('hs');
SELECT count(*) AS left_in_outbox FROM sync.outbox;
SQL
# PostgreSQL's own reports, as in its src/tools/valgrind.supp: WAL pages are
# written with uninitialised padding, and the ps display keeps its argv copy.
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
echo "running one backend under valgrind (memcheck): pull, capture, push, test_connection on both providers"
as_user valgrind --suppressions="$DIR/pg.supp" --leak-check=full --show-leak-kinds=definite --num-callers=40 --log-file="$DIR/valgrind.log" \
  postgres --single -D "$DIR/data" postgres <"$DIR/run.sql" >"$DIR/single.out" 2>&1
sed -n 's/^\t 1: \(push\|left_in_outbox\) = "\(.*\)"\t(typeid.*/  \1: \2/p' "$DIR/single.out"
sed -n 's/^==[0-9]*== \(   definitely lost:.*\|   indirectly lost:.*\|     possibly lost:.*\|ERROR SUMMARY:.*\)/  \1/p' "$DIR/valgrind.log"
echo "  reports involving sync.so: $(grep -c 'sync\.so' "$DIR/valgrind.log")"
grep -B3 -A25 'sync\.so' "$DIR/valgrind.log" | head -60
grep -A12 'Invalid \|uninitialised\|Conditional jump' "$DIR/valgrind.log" | head -40
