#!/usr/bin/env bash
# demo/run.sh — a throwaway cluster + the API emulator + a guided tour.
#
#   bash demo/run.sh         build, start, walk through what sync does
#   bash demo/run.sh stop    stop the demo cluster and emulator, remove them
#
# Everything lives under $SYNC_DEMO_DIR (default /tmp/sync-demo) and is owned
# by an unprivileged user; nothing touches the machine's own clusters.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"

DEMO=${SYNC_DEMO_DIR:-/tmp/sync-demo}

demo_stop() {
  if [ -f "$DEMO/emulator.pid" ]; then
    kill "$(cat "$DEMO/emulator.pid")" 2>/dev/null
  fi
  [ -d "$DEMO/cluster" ] && sync_stop_cluster "$DEMO/cluster"
  rm -rf "$DEMO"
}

if [ "${1:-}" = stop ]; then
  demo_stop
  echo "demo stopped and removed ($DEMO)"
  exit 0
fi

step() { printf '\n\033[1;34m--- %s\033[0m\n' "$*"; }
sql() {   # echo a statement, then run it in the demo database
  printf '\033[32msync=# %s\033[0m\n' "$1"
  as_user psql -X -q -h "$DEMO/cluster" -p "$PORT" -d demo -v ON_ERROR_STOP=1 -c "$1"
}

sync_install_deps
sync_ensure_user
sync_build
demo_stop 2>/dev/null
mkdir -p "$DEMO/cluster"
(cd "$SYNC_ROOT" && tar --exclude=.git --exclude='*.o' --exclude='*.so' -cf - test) | tar -C "$DEMO" -xf -
SYNC_TREE=$DEMO
chown -R "$SYNC_USER" "$DEMO" 2>/dev/null
PORT=$(free_port)

step "starting a throwaway PostgreSQL cluster on port $PORT (sync preloaded)"
sync_start_cluster "$DEMO/cluster" "$PORT" "shared_preload_libraries = 'sync'"
as_user createdb -h "$DEMO/cluster" -p "$PORT" demo

step "starting the Salesforce / HubSpot / NetSuite emulator over HTTPS (throwaway CA)"
python3 "$DEMO/test/emulator/certs.py" "$DEMO/certs" >/dev/null
chown -R "$SYNC_USER" "$DEMO/certs"
sync_start_emulator "$DEMO" --tls-cert "$DEMO/certs/emulator.crt" --tls-key "$DEMO/certs/emulator.key"
echo "$EMULATOR_PID" >"$DEMO/emulator.pid"
CA=$DEMO/certs/emulator-ca.crt
echo "emulator at $EMULATOR_URL (log: $DEMO/emulator.log)"
ctl() { curl -s --cacert "$CA" -X "$1" "$EMULATOR_URL$2" ${3:+-H 'Content-Type: application/json' -d "$3"}; }
watch_sql() {  # print a query's result every half second until it returns 't' in its first column
  local q=$1 show=$2 i
  for i in $(seq 1 120); do
    as_user psql -X -q -At -h "$DEMO/cluster" -p "$PORT" -d demo -c "$show" | sed 's/^/    /'
    [ "$(as_user psql -X -q -At -h "$DEMO/cluster" -p "$PORT" -d demo -c "$q")" = t ] && return 0
    sleep 0.5
  done
}

step "Salesforce already holds 5,000 contacts and an account (created in the emulator)"
python3 -c 'import json; print(json.dumps([{"FirstName": "First%d" % i, "LastName": "Last%d" % i,
  "Email": "person%d@example.com" % i} for i in range(1, 5001)]))' >"$DEMO/contacts.json"
curl -s --cacert "$CA" -X POST "$EMULATOR_URL/__emulator/records/salesforce/Contact" \
  -H 'Content-Type: application/json' --data-binary @"$DEMO/contacts.json" | head -c 80; echo " ..."
ctl POST /__emulator/records/salesforce/Account '[{"Name": "Initech", "Industry": "Technology"}]'; echo

step "installing the extension and connecting to Salesforce (OAuth client credentials, TLS verified)"
sql "CREATE EXTENSION sync;"
sql "SELECT jsonb_pretty(sync.version());"
sql "CREATE SCHEMA crm;"
sql "SELECT sync.create_connection('sf', 'salesforce', '{\"login_url\": \"$EMULATOR_URL\", \"ca_file\": \"$CA\",
       \"auth\": {\"type\": \"client_credentials\", \"client_id\": \"sync-client\", \"client_secret\": \"sync-secret\"}}');"
sql "SELECT name, provider, secret_keys FROM sync.connections;   -- the secret is stored apart, owner-only"
sql "SELECT jsonb_pretty(sync.test_connection('sf'));"
sql "SELECT remote_name, remote_type, local_column, local_type, createable FROM sync.remote_fields('sf', 'Contact')
       WHERE remote_name IN ('Id', 'FirstName', 'LastName', 'Email', 'AccountId', 'Name', 'SystemModstamp');"

step "mirroring Account and Contact: tables are created from the remote schema; the worker backfills them"
sql "SELECT sync.mirror('sf', 'Account', 'crm.account', fields => ARRAY['Name', 'Industry'],
       options => '{\"pull_interval\": \"2 seconds\"}');"
sql "SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName', 'LastName', 'Email', 'AccountId'],
       options => '{\"pull_interval\": \"2 seconds\"}');"
echo "  backfill progress (sync.status):"
watch_sql "SELECT bool_and(phase = 'incremental') FROM sync.status" \
  "SELECT local_table || ': ' || phase || ' ' || coalesce(backfill_progress, '') || ', ' || rows || ' rows' FROM sync.status ORDER BY 1"
sql "\\d crm.contact"

step "an edit in Salesforce arrives in the table (incremental pull by SystemModstamp)"
RID=$(as_user psql -X -At -h "$DEMO/cluster" -p "$PORT" -d demo -c "SELECT remote_id FROM crm.contact WHERE last_name = 'Last1'")
ctl PATCH "/__emulator/records/salesforce/Contact/$RID" '{"Email": "first.last@newmail.example.com"}' >/dev/null
echo "  (Salesforce user changed Email of $RID)"
watch_sql "SELECT email LIKE '%newmail%' FROM crm.contact WHERE remote_id = '$RID'" \
  "SELECT 'local row: ' || first_name || ' ' || last_name || ' <' || email || '>' FROM crm.contact WHERE remote_id = '$RID'"

step "a local UPDATE reaches Salesforce with only the changed field"
ctl DELETE /__emulator/requests >/dev/null
sql "UPDATE crm.contact SET first_name = 'Ada' WHERE last_name = 'Last2';"
watch_sql "SELECT count(*) = 0 FROM sync.outbox" "SELECT 'queued: ' || count(*) FROM sync.outbox"
echo "  what the emulator received:"
ctl GET '/__emulator/requests?api=salesforce' | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    if r["method"] != "GET" and "oauth2" not in r["path"]:
        print("    %s %s %s" % (r["method"], r["path"], json.dumps(r["body"])))'

step "an account and its contact inserted in one transaction arrive linked ('@' || local key)"
sql "BEGIN;
INSERT INTO crm.account (name, industry) VALUES ('Acme', 'Manufacturing');
INSERT INTO crm.contact (first_name, last_name, email, account_id)
  SELECT 'Wile', 'Coyote', 'wile@acme.example.com', '@' || id FROM crm.account WHERE name = 'Acme';
COMMIT;"
watch_sql "SELECT count(*) = 0 FROM sync.outbox" "SELECT 'queued: ' || count(*) FROM sync.outbox"
sql "SELECT c.first_name, c.last_name, c.remote_id, c.account_id, a.name AS account
       FROM crm.contact c JOIN crm.account a ON a.remote_id = c.account_id WHERE c.last_name = 'Coyote';"

step "Salesforce rejects a record: it is parked with Salesforce's message, the rest go on"
sql "INSERT INTO crm.contact (first_name, last_name, email) VALUES ('No', NULL, 'no@example.com'), ('Yes', 'Fine', 'yes@example.com');"
watch_sql "SELECT count(*) = 1 FROM sync.errors" "SELECT 'parked: ' || count(*) FROM sync.errors"
sql "SELECT local_table, local_key, operation, error_code, error_message FROM sync.errors;"
sql "UPDATE crm.contact SET last_name = 'Fixed' WHERE first_name = 'No';"
sql "SELECT sync.retry('crm.contact');"
watch_sql "SELECT count(*) = 0 FROM sync.outbox" "SELECT 'queued: ' || count(*) FROM sync.outbox"

step "the state of every mirror"
sql "SELECT local_table, phase, rows, backlog, failures, since_last_pull, api_usage FROM sync.status;"
sql "SELECT direction, result, count(*) FROM sync.journal GROUP BY 1, 2 ORDER BY 1, 2;"

cat <<MSG

The demo is running.
  connect:  sudo -u $SYNC_USER psql -h $DEMO/cluster -p $PORT demo
            (or: psql "host=127.0.0.1 port=$PORT user=postgres dbname=demo")
  emulator: $EMULATOR_URL   (control API: $EMULATOR_URL/__emulator/requests)
  stop:     bash $SYNC_ROOT/demo/run.sh stop
MSG
