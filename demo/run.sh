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
    EMULATOR_PID=$(cat "$DEMO/emulator.pid") sync_stop_emulator
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
watch_sql() {  # every half second until $1 returns 't': print $2's result when it changed
  local q=$1 show=$2 i out last=
  for i in $(seq 1 120); do
    out=$(as_user psql -X -q -At -h "$DEMO/cluster" -p "$PORT" -d demo -c "$show")
    [ "$out" != "$last" ] && printf '%s\n' "$out" | sed "s/^/    [$(date +%T)] /"
    last=$out
    [ "$(as_user psql -X -q -At -h "$DEMO/cluster" -p "$PORT" -d demo -c "$q")" = t ] && return 0
    sleep 0.5
  done
}

requests() {  # the write requests the emulator received for one API, with their bodies
  ctl GET "/__emulator/requests?api=$1" | python3 -c '
import json, sys
n = 0
for r in json.load(sys.stdin):
    if r["method"] != "GET" and "oauth" not in r["path"] and not r["path"].endswith("/search") \
            and "/suiteql" not in r["path"] and "/token" not in r["path"]:
        n += 1
        b = r["body"]
        items = b.get("records") or b.get("inputs") if isinstance(b, dict) else None
        if items:   # a batch: one line per record, other keys of the batch first
            rest = {k: v for k, v in b.items() if k not in ("records", "inputs")}
            print("    %s %s%s" % (r["method"], r["path"], " " + json.dumps(rest) if rest else ""))
            for i in items:
                print("        %s" % json.dumps({k: v for k, v in i.items() if k != "attributes"})[:300])
        else:
            print("    %s %s %s" % (r["method"], r["path"], json.dumps(b)[:300]))
if n == 0:
    print("    (no write request)")'
}
psql_at() { as_user psql -X -q -At -h "$DEMO/cluster" -p "$PORT" -d demo -c "$1"; }
pause() { sleep "${SYNC_DEMO_PAUSE:-2}"; }

step "the remotes already hold data: 5,000 Salesforce contacts and an account, 3,000 HubSpot contacts"
python3 -c 'import json; print(json.dumps([{"FirstName": "First%d" % i, "LastName": "Last%d" % i,
  "Email": "person%d@example.com" % i} for i in range(1, 5001)]))' >"$DEMO/contacts.json"
curl -s --cacert "$CA" -X POST "$EMULATOR_URL/__emulator/records/salesforce/Contact" \
  -H 'Content-Type: application/json' --data-binary @"$DEMO/contacts.json" | head -c 80; echo " ..."
ctl POST /__emulator/records/salesforce/Account '[{"Name": "Initech", "Industry": "Technology"}]'; echo
python3 -c 'import json, time; now = int(time.time() * 1000)   # made and last edited over the past two days
print(json.dumps([{"email": "fan%d@example.com" % i, "firstname": "Fan%d" % i, "lastname": "Follower",
  "lifecyclestage": "subscriber", "createdate": str(now - (3001 - i) * 60000),
  "lastmodifieddate": str(now - (3001 - i) * 60000)} for i in range(1, 3001)]))' >"$DEMO/hs.json"
curl -s --cacert "$CA" -X POST "$EMULATOR_URL/__emulator/records/hubspot/contacts" \
  -H 'Content-Type: application/json' --data-binary @"$DEMO/hs.json" | head -c 80; echo " ..."
pause

step "installing the extension and connecting to both (OAuth client credentials / private-app token, TLS verified)"
sql "CREATE EXTENSION sync;"
sql "SELECT jsonb_pretty(sync.version());"
sql "CREATE SCHEMA crm;"
sql "SELECT sync.create_connection('sf', 'salesforce', '{\"login_url\": \"$EMULATOR_URL\", \"ca_file\": \"$CA\",
       \"auth\": {\"type\": \"client_credentials\", \"client_id\": \"sync-client\", \"client_secret\": \"sync-secret\"}}');"
sql "SELECT sync.create_connection('hs', 'hubspot', '{\"base_url\": \"$EMULATOR_URL\", \"ca_file\": \"$CA\",
       \"auth\": {\"type\": \"private_app\", \"token\": \"pat-sync-test\"}}');"
sql "SELECT name, provider, secret_keys FROM sync.connections;   -- secrets are stored apart, owner-only"
sql "SELECT sync.test_connection('sf')->>'instance_url' AS salesforce, sync.test_connection('hs')->>'portal_id' AS hubspot_portal;"
sql "SELECT remote_name, remote_type, local_column, local_type, createable FROM sync.remote_fields('hs', 'contacts')
       WHERE remote_name IN ('hs_object_id', 'email', 'firstname', 'lifecyclestage', 'lastmodifieddate', 'createdate');"
pause

step "mirroring Salesforce Account and Contact and HubSpot contacts: tables come from the remote schemas; the worker backfills them"
sql "SELECT sync.mirror('sf', 'Account', 'crm.account', fields => ARRAY['Name', 'Industry'],
       options => '{\"pull_interval\": \"2 seconds\"}');"
sql "SELECT sync.mirror('sf', 'Contact', 'crm.contact', fields => ARRAY['FirstName', 'LastName', 'Email', 'AccountId', 'Sync_Key__c'],
       options => '{\"idempotency_field\": \"Sync_Key__c\", \"pull_interval\": \"2 seconds\"}');   -- creates: upserts by an external ID"
sql "SELECT sync.mirror('hs', 'contacts', 'crm.hs_contact', fields => ARRAY['email', 'firstname', 'lastname', 'lifecyclestage'],
       options => '{\"idempotency_field\": \"email\", \"pull_interval\": \"2 seconds\"}');"
echo "  backfill progress (sync.status):"
watch_sql "SELECT bool_and(phase = 'incremental') FROM sync.status" \
  "SELECT string_agg(local_table || ': ' || phase || ' ' || coalesce(backfill_progress, '') || ', ' || rows || ' rows', '   |   ' ORDER BY local_table::text) FROM sync.status"
sql "\\d crm.hs_contact"
pause

step "an edit in each remote arrives in its table (Salesforce: by SystemModstamp; HubSpot: by the search API)"
RID=$(psql_at "SELECT remote_id FROM crm.contact WHERE last_name = 'Last1'")
ctl PATCH "/__emulator/records/salesforce/Contact/$RID" '{"Email": "first.last@newmail.example.com"}' >/dev/null
echo "  (a Salesforce user changed the Email of $RID)"
HID=$(psql_at "SELECT remote_id FROM crm.hs_contact WHERE email = 'fan1@example.com'")
ctl PATCH "/__emulator/records/hubspot/contacts/$HID" '{"lastname": "Superfan"}' >/dev/null
echo "  (a HubSpot user changed the lastname of contact $HID)"
watch_sql "SELECT (SELECT email LIKE '%newmail%' FROM crm.contact WHERE remote_id = '$RID')
             AND (SELECT lastname = 'Superfan' FROM crm.hs_contact WHERE remote_id = '$HID')" \
  "SELECT 'crm.contact:    ' || first_name || ' ' || last_name || ' <' || email || '>' FROM crm.contact WHERE remote_id = '$RID'
   UNION ALL SELECT 'crm.hs_contact: ' || firstname || ' ' || lastname || ' <' || email || '>' FROM crm.hs_contact WHERE remote_id = '$HID'"
pause

step "a local UPDATE reaches each remote with only the changed field"
ctl DELETE /__emulator/requests >/dev/null
sql "UPDATE crm.contact SET first_name = 'Ada' WHERE last_name = 'Last2';"
sql "UPDATE crm.hs_contact SET firstname = 'Grace' WHERE email = 'fan2@example.com';"
watch_sql "SELECT coalesce(sum(backlog), 0) = 0 FROM sync.status" "SELECT 'queued: ' || coalesce(sum(backlog), 0) FROM sync.status"
echo "  what the Salesforce emulator received:"; requests salesforce
echo "  what the HubSpot emulator received:"; requests hubspot
pause

step "an account and its contact inserted in one transaction arrive linked ('@' || local key)"
sql "BEGIN;
INSERT INTO crm.account (name, industry) VALUES ('Acme', 'Manufacturing');
INSERT INTO crm.contact (first_name, last_name, email, account_id)
  SELECT 'Wile', 'Coyote', 'wile@acme.example.com', '@' || id FROM crm.account WHERE name = 'Acme';
COMMIT;"
watch_sql "SELECT coalesce(sum(backlog), 0) = 0 FROM sync.status" "SELECT 'queued: ' || coalesce(sum(backlog), 0) FROM sync.status"
sql "SELECT c.first_name, c.last_name, c.remote_id, c.account_id, a.name AS account
       FROM crm.contact c JOIN crm.account a ON a.remote_id = c.account_id WHERE c.last_name = 'Coyote';"
pause

step "a cross-system workflow in plain SQL: HubSpot contacts qualified for sales become Salesforce contacts"
sql "CREATE FUNCTION crm.qualified_to_salesforce() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    IF NEW.lifecyclestage = 'salesqualifiedlead' AND NEW.email IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM crm.contact s WHERE lower(s.email) = lower(NEW.email)) THEN
        INSERT INTO crm.contact (first_name, last_name, email)
        VALUES (NEW.firstname, coalesce(NEW.lastname, '(unknown)'), NEW.email);
    END IF;
    RETURN NULL;
END \$\$;
CREATE TRIGGER qualified_to_salesforce AFTER INSERT OR UPDATE OF lifecyclestage ON crm.hs_contact
    FOR EACH ROW EXECUTE FUNCTION crm.qualified_to_salesforce();"
ctl DELETE /__emulator/requests >/dev/null
T0=$(date +%s.%N)
ctl POST /__emulator/records/hubspot/contacts \
  '[{"email": "lea@example.com", "firstname": "Lea", "lastname": "Lead", "lifecyclestage": "salesqualifiedlead"},
    {"email": "cole@example.com", "firstname": "Cole", "lastname": "Cold", "lifecyclestage": "subscriber"}]' >/dev/null
echo "  (in HubSpot at $(date +%T): Lea Lead is created as a sales-qualified lead, Cole Cold as a mere subscriber,"
echo "   Fan3 is moved to the sales-qualified stage, and PERSON2@example.com — in Salesforce already, as Ada — is"
echo "   created as sales-qualified too)"
HID3=$(psql_at "SELECT remote_id FROM crm.hs_contact WHERE email = 'fan3@example.com'")
ctl PATCH "/__emulator/records/hubspot/contacts/$HID3" '{"lifecyclestage": "salesqualifiedlead"}' >/dev/null
ctl POST /__emulator/records/hubspot/contacts \
  '[{"email": "PERSON2@example.com", "firstname": "Ada", "lastname": "Last2", "lifecyclestage": "salesqualifiedlead"}]' >/dev/null
watch_sql "SELECT count(*) = 2 FROM crm.contact WHERE email IN ('lea@example.com', 'fan3@example.com') AND remote_id IS NOT NULL" \
  "SELECT 'in crm.contact, pushed to Salesforce: ' || coalesce(string_agg(first_name || ' ' || last_name || ' (' || coalesce(remote_id, 'queued') || ')', ', '), '-')
     FROM crm.contact WHERE email IN ('lea@example.com', 'fan3@example.com')"
echo "  in Salesforce now (the emulator's own records), $(python3 -c "import sys, time; print('%.1f' % (time.time() - float(sys.argv[1])))" "$T0") s after the HubSpot writes:"
ctl GET /__emulator/records/salesforce/Contact | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    if (r.get("Email") or "").lower() in ("lea@example.com", "fan3@example.com", "person2@example.com", "cole@example.com"):
        print("    %s  %s %s <%s>  Sync_Key__c=%s" % (r["Id"], r["FirstName"], r["LastName"], r["Email"], r.get("Sync_Key__c") or "-"))'
sleep 3
echo "  Salesforce received (Lea and Fan3; not Cole, not a subscriber; not Ada, matched by email, so no duplicate):"; requests salesforce
echo "  HubSpot received (nothing: inbound rows are not echoed back):"; requests hubspot
sql "SELECT count(*) AS salesforce_contacts_for_person2 FROM crm.contact WHERE lower(email) = 'person2@example.com';"
pause

step "Salesforce rejects a record: it is parked with Salesforce's message, the rest go on"
sql "INSERT INTO crm.contact (first_name, last_name, email) VALUES ('No', NULL, 'no@example.com'), ('Yes', 'Fine', 'yes@example.com');"
watch_sql "SELECT count(*) = 1 FROM sync.errors" "SELECT 'parked: ' || count(*) FROM sync.errors"
sql "SELECT local_table, local_key, operation, error_code, error_message FROM sync.errors;"
sql "UPDATE crm.contact SET last_name = 'Fixed' WHERE first_name = 'No';"
sql "SELECT sync.retry('crm.contact');"
watch_sql "SELECT coalesce(sum(backlog), 0) = 0 FROM sync.status" "SELECT 'queued: ' || coalesce(sum(backlog), 0) FROM sync.status"
pause

step "NetSuite: M2M auth (a JWT signed with the key in a file), a SuiteQL backfill, a remote edit, a local edit"
python3 -c 'import json; print(json.dumps([{"companyName": "Company %d" % i, "email": "ap%d@company%d.example" % (i, i),
  "phone": "555-%04d" % i} for i in range(1, 2501)]))' >"$DEMO/ns.json"
curl -s --cacert "$CA" -X POST "$EMULATOR_URL/__emulator/records/netsuite/customer" \
  -H 'Content-Type: application/json' --data-binary @"$DEMO/ns.json" | head -c 80; echo " ..."
sql "CREATE SCHEMA erp;"
sql "SELECT sync.create_connection('ns', 'netsuite', '{\"account\": \"1234567\", \"base_url\": \"$EMULATOR_URL\", \"ca_file\": \"$CA\",
       \"auth\": {\"type\": \"m2m\", \"client_id\": \"ns-m2m-client\", \"certificate_id\": \"ns-cert-id\",
                \"private_key_file\": \"$DEMO/test/emulator/keys/netsuite-m2m-test.key\"}}');"
sql "SELECT sync.mirror('ns', 'customer', 'erp.customer', fields => ARRAY['companyName', 'email', 'phone'],
       options => '{\"idempotency_field\": \"externalId\", \"pull_interval\": \"2 seconds\"}');"
echo "  backfill progress (SuiteQL pages of 1,000, keyset on lastmodifieddate and id):"
watch_sql "SELECT phase = 'incremental' FROM sync.status WHERE local_table = 'erp.customer'::regclass" \
  "SELECT local_table || ': ' || phase || ' ' || coalesce(backfill_progress, '') || ', ' || rows || ' rows' FROM sync.status WHERE local_table = 'erp.customer'::regclass"
NID=$(psql_at "SELECT remote_id FROM erp.customer WHERE company_name = 'Company 7'")
ctl PATCH "/__emulator/records/netsuite/customer/$NID" '{"phone": "555-7777"}' >/dev/null
echo "  (a NetSuite user changed the phone of customer $NID)"
watch_sql "SELECT phone = '555-7777' FROM erp.customer WHERE remote_id = '$NID'" \
  "SELECT 'erp.customer: ' || company_name || ' ' || coalesce(phone, '') FROM erp.customer WHERE remote_id = '$NID'"
ctl DELETE /__emulator/requests >/dev/null
sql "UPDATE erp.customer SET email = 'billing@company8.example' WHERE company_name = 'Company 8';"
watch_sql "SELECT coalesce(sum(backlog), 0) = 0 FROM sync.status" "SELECT 'queued: ' || coalesce(sum(backlog), 0) FROM sync.status"
echo "  what the NetSuite emulator received (one PATCH, only the changed field):"; requests netsuite
pause

step "living with it: a field added in Salesforce is mapped live (sync.alter_mirror fills it with a pull of that field only)"
ctl POST /__emulator/salesforce/fields/Contact '{"name": "Tier__c", "type": "string", "length": 20}' >/dev/null
RID5=$(psql_at "SELECT remote_id FROM crm.contact WHERE last_name = 'Last5'")
ctl PATCH "/__emulator/records/salesforce/Contact/$RID5" '{"Tier__c": "Gold"}' >/dev/null
echo "  (a Salesforce admin created the field Tier__c; a user set it to Gold on $RID5)"
sql "SELECT sync.alter_mirror('crm.contact', add_fields => ARRAY['Tier__c']);"
watch_sql "SELECT tier__c = 'Gold' FROM crm.contact WHERE remote_id = '$RID5'" \
  "SELECT 'crm.contact: ' || first_name || ' ' || last_name || ', tier ' || coalesce(tier__c, '(not yet)') FROM crm.contact WHERE remote_id = '$RID5'"
pause

step "a merge in Salesforce (two duplicate contacts merged in its UI) is followed: the loser's row goes, nothing is pushed"
DUPS=$(ctl POST /__emulator/records/salesforce/Contact '[{"FirstName": "Dup", "LastName": "Winner", "Email": "dup@example.com"},
  {"FirstName": "Dup", "LastName": "Loser", "Email": "dup@example.com"}]')
W=$(echo "$DUPS" | python3 -c 'import json, sys; print(json.load(sys.stdin)["ids"][0])')
L=$(echo "$DUPS" | python3 -c 'import json, sys; print(json.load(sys.stdin)["ids"][1])')
watch_sql "SELECT count(*) = 2 FROM crm.contact WHERE email = 'dup@example.com'" \
  "SELECT 'crm.contact rows for dup@example.com: ' || count(*) FROM crm.contact WHERE email = 'dup@example.com'"
ctl POST /__emulator/salesforce/merge "{\"object\": \"Contact\", \"master\": \"$W\", \"losers\": [\"$L\"]}" >/dev/null
echo "  (merged in Salesforce: $L into $W)"
watch_sql "SELECT count(*) = 1 FROM crm.contact WHERE email = 'dup@example.com'" \
  "SELECT 'crm.contact rows for dup@example.com: ' || count(*) FROM crm.contact WHERE email = 'dup@example.com'"
sql "SELECT local_table, winner_remote_id, loser_remote_id, merged_at FROM sync.merges;"
pause

step "sync.resync: a difference planted behind sync's back is found, then repaired"
sql "SET session_replication_role = replica;   -- no capture: sync does not see this write
UPDATE crm.contact SET first_name = 'Planted' WHERE last_name = 'Last9';"
sql "SELECT r->'different'->'count' AS different, r->'only_local'->'count' AS only_local,
       r->'only_remote'->'count' AS only_remote, r->'different'->'samples'->0 AS sample
  FROM sync.resync('crm.contact') r;"
sql "SELECT r->'different'->'count' AS different, r->'repaired' AS repaired FROM sync.resync('crm.contact', repair => true) r;"
watch_sql "SELECT coalesce(sum(backlog), 0) = 0 FROM sync.status" "SELECT 'queued: ' || coalesce(sum(backlog), 0) FROM sync.status"
RID9=$(psql_at "SELECT remote_id FROM crm.contact WHERE last_name = 'Last9'")
echo "  (the local row was the newer side: the repair queued it, and Salesforce now has FirstName = $(ctl GET "/__emulator/records/salesforce/Contact/$RID9" | python3 -c 'import json, sys; print(json.load(sys.stdin)["FirstName"])'))"
pause

step "the state of every mirror"
sql "SELECT local_table, connection, phase, rows, backlog, failures, since_last_pull, api_usage FROM sync.status;"
sql "SELECT * FROM sync.errors;"
sql "SELECT m.local_table, j.direction, j.result, count(*) FROM sync.journal j JOIN sync.mirror m ON m.id = j.mirror
       GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;"

cat <<MSG

The demo is running.
  connect:  sudo -u $SYNC_USER psql -h $DEMO/cluster -p $PORT demo
            (or: psql "host=127.0.0.1 port=$PORT user=postgres dbname=demo")
  emulator: $EMULATOR_URL   (control API: $EMULATOR_URL/__emulator/requests)
  stop:     bash $SYNC_ROOT/demo/run.sh stop
MSG
