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

step "starting the Salesforce / HubSpot / NetSuite emulator"
sync_start_emulator "$DEMO"
echo "$EMULATOR_PID" >"$DEMO/emulator.pid"
echo "emulator at $EMULATOR_URL (log: $DEMO/emulator.log)"

step "installing the extension"
sql "CREATE EXTENSION sync;"
sql "SELECT jsonb_pretty(sync.version());"

step "the emulator answers a Salesforce OAuth client-credentials grant"
curl -s -X POST "$EMULATOR_URL/services/oauth2/token" \
  -d grant_type=client_credentials -d client_id=sync-client -d client_secret=sync-secret \
  | python3 -m json.tool | sed 's/"access_token": "[^"]*"/"access_token": "[redacted]"/'

cat <<MSG

The demo is running.
  connect:  sudo -u $SYNC_USER psql -h $DEMO/cluster -p $PORT demo
            (or: psql "host=127.0.0.1 port=$PORT user=postgres dbname=demo")
  emulator: $EMULATOR_URL   (control API: $EMULATOR_URL/__emulator/requests)
  stop:     bash $SYNC_ROOT/demo/run.sh stop
MSG
