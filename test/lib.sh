# test/lib.sh — shared by test/run.sh (the test command) and demo/run.sh.
# Installs what is missing, builds, installs, and runs throwaway clusters as
# an unprivileged user (initdb and postgres refuse to run as root).
# Sourced, not executed.

SYNC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_MAJOR=${PG_MAJOR:-15}
# SYNC_PG_BINDIR: another server installation (e.g. a private, relocated
# copy of the Debian one, so that several trees can be tested side by side)
PG_BINDIR=${SYNC_PG_BINDIR:-/usr/lib/postgresql/$PG_MAJOR/bin}
PG_CONFIG=$PG_BINDIR/pg_config
SYNC_USER=${SYNC_USER:-postgres}

SYNC_PACKAGES="postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR libcurl4-openssl-dev
  libjson-c-dev libssl-dev libipc-run-perl libio-socket-ssl-perl make gcc python3 openssl
  ca-certificates curl"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Install the Debian packages that are missing (apt-get update only if needed).
sync_install_deps() {
  local missing=() p
  for p in $SYNC_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing packages (${missing[*]}); run as root to install them"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
  # Debian's postgresql package creates and starts a "main" cluster; we use
  # our own throwaway clusters, so leave it alone.
}

# The unprivileged user that runs clusters and TAP tests.
sync_ensure_user() {
  id "$SYNC_USER" >/dev/null 2>&1 && return 0
  [ "$(id -u)" -eq 0 ] || die "user $SYNC_USER does not exist"
  useradd --system --home-dir /var/lib/postgresql --shell /bin/bash "$SYNC_USER"
}

# Build with warnings as errors, then install into the server's directories.
sync_build() {
  say "building sync (warnings are errors)"
  make -C "$SYNC_ROOT" -s PG_CONFIG="$PG_CONFIG" PG_CFLAGS=-Werror >/dev/null || die "build failed"
  make -C "$SYNC_ROOT" -s PG_CONFIG="$PG_CONFIG" install >/dev/null || die "make install failed"
}

# Run a command as the unprivileged user, with the server binaries first on PATH.
as_user() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$SYNC_USER" -- env PATH="$PG_BINDIR:$PATH" "$@"
  else
    env PATH="$PG_BINDIR:$PATH" "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# sync_start_cluster DIR PORT [extra postgresql.conf lines...]
# A throwaway cluster in DIR/data, listening on 127.0.0.1:PORT and a socket in DIR.
sync_start_cluster() {
  local dir=$1 port=$2; shift 2
  as_user initdb -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log"; die "initdb failed"; }
  {
    echo "port = $port"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$dir'"
    echo "fsync = off"
    echo "log_line_prefix = '%m [%p] %q%a '"
    for line in "$@"; do echo "$line"; done
  } >>"$dir/data/postgresql.conf"
  as_user pg_ctl -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
    || { cat "$dir/server.log"; die "cluster did not start"; }
}

sync_stop_cluster() {
  local dir=$1
  [ -f "$dir/data/postmaster.pid" ] && as_user pg_ctl -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1
  return 0
}

# sync_start_emulator DIR [args...]: starts the emulator in the background as
# the unprivileged user; sets EMULATOR_URL and EMULATOR_PID.
sync_start_emulator() {
  local dir=$1; shift
  local out="$dir/emulator.out"
  as_user python3 "${SYNC_TREE:-$SYNC_ROOT}/test/emulator/emulator.py" --port 0 "$@" >"$out" 2>"$dir/emulator.log" &
  EMULATOR_PID=$!
  local i
  for i in $(seq 1 100); do
    EMULATOR_URL=$(sed -n 's/^emulator listening on //p' "$out" | head -1)
    [ -n "$EMULATOR_URL" ] && return 0
    kill -0 "$EMULATOR_PID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$dir/emulator.log" >&2
  die "emulator did not start"
}

# sync_stop_emulator: stops what sync_start_emulator started (the emulator
# runs as a child of runuser: both go).
sync_stop_emulator() {
  [ -n "${EMULATOR_PID:-}" ] || return 0
  pkill -P "$EMULATOR_PID" 2>/dev/null
  kill "$EMULATOR_PID" 2>/dev/null
  EMULATOR_PID=
  return 0
}

# sync_bench_start [--no-worker] [postgresql.conf lines...]: what every
# benchmark needs — dependencies, a build, a private copy of the test tree,
# the emulator and a throwaway cluster with sync preloaded (not with
# --no-worker: sync.push()/sync.pull() do the work) plus the given settings;
# all removed on exit.  Sets DIR, PORT, EMULATOR_URL; defines psql_ and ctl.
sync_bench_start() {
  local preload="shared_preload_libraries = 'sync'"
  if [ "${1:-}" = --no-worker ]; then preload="# no worker"; shift; fi
  sync_install_deps
  sync_ensure_user
  sync_build
  DIR=$(mktemp -d /tmp/sync-bench.XXXXXX); chmod 755 "$DIR"
  mkdir -p "$DIR/tree" && (cd "$SYNC_ROOT" && tar --exclude=.git -cf - test) | tar -C "$DIR/tree" -xf -
  chown -R "$SYNC_USER" "$DIR"
  SYNC_TREE=$DIR/tree
  export PYTHONPATH="$SYNC_ROOT/bench${PYTHONPATH:+:$PYTHONPATH}"   # benchlib.py
  trap 'sync_stop_emulator; sync_stop_cluster "$DIR"; rm -rf "$DIR"' EXIT
  sync_start_emulator "$DIR"
  PORT=$(free_port)
  sync_start_cluster "$DIR" "$PORT" "$preload" "$@"
  psql_() { as_user psql -X -q -h "$DIR" -p "$PORT" -d postgres -v ON_ERROR_STOP=1 "$@"; }
  ctl() { curl -s -X "$1" "$EMULATOR_URL$2" ${3:+-H 'Content-Type: application/json' -d "$3"}; }
}

# sync_bench_wait SQL-CONDITION [SECONDS between looks, default 0.2]: wait
# until the condition is true, looking from one psql session.  A loop of
# psql runs starts runuser, bash and psql at each look: 10-15 % of the
# machine's CPU during a push measured at 5 looks a second, taken from what
# is measured.  Each look is a transaction of its own (COMMIT), so that no
# snapshot is held back across the wait and VACUUM can go on meanwhile.
sync_bench_wait() {
  psql_ -c "DO \$\$ BEGIN WHILE NOT ($1) LOOP COMMIT; PERFORM pg_catalog.pg_sleep(${2:-0.2}); END LOOP; END \$\$"
}

# sync_bench_seed_contacts N: N Salesforce Contacts in the emulator (FirstName
# F<i>, LastName L<i>, Email c<i>@example.com, Title T<i mod 97>), in posts of
# 20,000, as a remote user would create them.
sync_bench_seed_contacts() {
  echo "seeding $1 Contacts in the emulator"
  python3 - "$EMULATOR_URL" "$1" <<'PY'
import json, sys, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
for start in range(0, n, 20000):
    recs = [{"FirstName": "F%d" % i, "LastName": "L%d" % i, "Email": "c%d@example.com" % i,
             "Title": "T%d" % (i % 97)} for i in range(start, min(n, start + 20000))]
    req = urllib.request.Request(url + "/__emulator/records/salesforce/Contact", json.dumps(recs).encode(),
                                 {"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req).read()
PY
}
