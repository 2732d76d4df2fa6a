#!/usr/bin/env bash
# bench/capture_overhead.sh — UPDATE throughput on a mirrored table (the C
# capture trigger) vs. the same table with no trigger, vs. a PL/pgSQL
# trigger writing the same outbox rows as the fold does.  Prints the ratios
# from one run, and the time the fold of the captured writes takes after.
# Target: the C trigger costs <= 15 % (ratio >= 0.85).
#
#   bash bench/capture_overhead.sh [seconds per variant, default 20] [clients, default 2]
#
# BENCH_ROWS (default 1000000) rows per table; BENCH_SLICE (default 3) seconds
# per turn.
#
# Runs on a throwaway cluster (like the test command); not a timed test.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"
SECS=${1:-20}
CLIENTS=${2:-2}
ROWS=${BENCH_ROWS:-1000000}

sync_install_deps
sync_ensure_user
sync_build
DIR=$(mktemp -d /tmp/sync-bench.XXXXXX); chmod 755 "$DIR"; chown "$SYNC_USER" "$DIR"
trap 'sync_stop_cluster "$DIR"; rm -rf "$DIR"' EXIT
PORT=$(free_port)
sync_start_cluster "$DIR" "$PORT" "shared_buffers = 256MB" "synchronous_commit = off" \
  "max_wal_size = 4GB" "checkpoint_timeout = 30min"
psql_() { as_user psql -X -q -h "$DIR" -p "$PORT" -d postgres -v ON_ERROR_STOP=1 "$@"; }

psql_ <<SQL
CREATE EXTENSION sync;
CREATE TABLE plain   (id bigint PRIMARY KEY, remote_id text UNIQUE, first_name text, last_name text, email text, n int, remote_modified_at timestamptz);
CREATE TABLE mirrored (LIKE plain INCLUDING ALL);
CREATE TABLE plpgsql (LIKE plain INCLUDING ALL);
INSERT INTO plain SELECT g, 'r' || g, 'f' || g, 'l' || g, g || '@x', 0, now() FROM generate_series(1, $ROWS) g;
INSERT INTO mirrored SELECT * FROM plain;
INSERT INTO plpgsql SELECT * FROM plain;
INSERT INTO sync.connection (name, provider) VALUES ('bench', 'salesforce');
INSERT INTO sync.mirror (connection, remote_object, local_table, key_column, remote_id_column, stamp_column)
  VALUES ('bench', 'Contact', 'mirrored', 'id', 'remote_id', 'remote_modified_at'),
         ('bench', 'Contact', 'plpgsql', 'id', 'remote_id', 'remote_modified_at');
INSERT INTO sync.field (mirror, remote_name, local_column, remote_type, local_type, createable, updateable)
  SELECT m.id, f.r, f.l, 'string', 'text', true, true FROM sync.mirror m,
    (VALUES ('FirstName','first_name'), ('LastName','last_name'), ('Email','email'), ('N__c','n')) f(r, l);
INSERT INTO sync.mirror_state (mirror) SELECT id FROM sync.mirror;
SELECT sync._install_triggers(id) FROM sync.mirror WHERE local_table = 'mirrored'::regclass;

-- the same work in PL/pgSQL: compare OLD/NEW per column, coalescing upsert
CREATE FUNCTION plpgsql_capture() RETURNS trigger LANGUAGE plpgsql AS \$\$
DECLARE
    cols name[] := '{}';
BEGIN
    IF NEW.first_name IS DISTINCT FROM OLD.first_name THEN cols := cols || 'first_name'::name; END IF;
    IF NEW.last_name IS DISTINCT FROM OLD.last_name THEN cols := cols || 'last_name'::name; END IF;
    IF NEW.email IS DISTINCT FROM OLD.email THEN cols := cols || 'email'::name; END IF;
    IF NEW.n IS DISTINCT FROM OLD.n THEN cols := cols || 'n'::name; END IF;
    IF cardinality(cols) = 0 THEN RETURN NULL; END IF;
    INSERT INTO sync.outbox AS o (mirror, local_key, op, columns, remote_id)
    VALUES (2, NEW.id::text, 'U', cols, NEW.remote_id)
    ON CONFLICT (mirror, local_key, slot)
    DO UPDATE SET columns = ARRAY(SELECT DISTINCT c FROM unnest(o.columns || EXCLUDED.columns) c ORDER BY 1),
                  updated_at = now();
    RETURN NULL;
END \$\$;
CREATE TRIGGER capture AFTER UPDATE ON plpgsql FOR EACH ROW EXECUTE FUNCTION plpgsql_capture();
VACUUM ANALYZE;
SQL

# The three variants run in turns of SLICE seconds (SECS each in all), in
# a rotating order, so that load from other processes on the machine falls
# on all three alike instead of on whichever ran while it lasted.  The
# outbox is emptied once, before the first turn: the C trigger's entries
# (mirror 1) and the PL/pgSQL trigger's (mirror 2) then share it, as
# mirrors do.
SLICE=${BENCH_SLICE:-3}
TURNS=$(( (SECS + SLICE - 1) / SLICE ))
for t in plain mirrored plpgsql; do
  echo "\\set id random(1, $ROWS)
UPDATE $t SET n = n + 1 WHERE id = :id;" >"$DIR/$t.sql"
  chown "$SYNC_USER" "$DIR/$t.sql"
done
run() {   # run TABLE -> transactions processed in one turn
  as_user pgbench -n -h "$DIR" -p "$PORT" -c "$CLIENTS" -j "$CLIENTS" -T "$SLICE" -f "$DIR/$1.sql" postgres 2>/dev/null \
    | sed -n -e 's/^number of transactions actually processed: \([0-9]*\).*/\1/p'
}

echo "UPDATE throughput, $CLIENTS clients, $SECS s each in $TURNS turns of $SLICE s, $ROWS rows (random row per transaction):"
psql_ -c "DELETE FROM sync.outbox" -c "DELETE FROM sync.capture_log" -c "VACUUM sync.outbox, sync.capture_log" >/dev/null
PN=0; MN=0; LN=0
ORDERS=("plain mirrored plpgsql" "mirrored plpgsql plain" "plpgsql plain mirrored")
for i in $(seq 0 $((TURNS - 1))); do
  for t in ${ORDERS[$((i % 3))]}; do
    n=$(run "$t")
    case $t in
      plain) PN=$((PN + n)) ;;
      mirrored) MN=$((MN + n)) ;;
      plpgsql) LN=$((LN + n)) ;;
    esac
  done
done
MID=$(psql_ -At -c "SELECT id FROM sync.mirror WHERE local_table = 'mirrored'::regclass")
# The C trigger appends to sync.capture_log; the worker folds that into the
# outbox later (no worker runs here).  The fold is timed on its own: it is
# work the writer no longer waits for, but work all the same.
LOGGED=$(psql_ -At -c "SELECT count(*) FROM sync.capture_log WHERE mirror = $MID")
FOLD_MS=$(psql_ -At -c "SELECT extract(epoch FROM clock_timestamp()) * 1000" \
               -c "SELECT sync._fold($MID)" -c "SELECT extract(epoch FROM clock_timestamp()) * 1000" \
          | python3 -c 'import sys; v = sys.stdin.read().split(); print(f"{float(v[2]) - float(v[0]):.0f}")')
MQUEUED=$(psql_ -At -c "SELECT count(*) FROM sync.outbox WHERE mirror = $MID")
python3 - $PN $MN $LN $((TURNS * SLICE)) "$MQUEUED" "$LOGGED" "$FOLD_MS" <<'PY'
import sys
pn, mn, ln, secs = map(float, sys.argv[1:5])
queued, logged, fold_ms = int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
p, m, l = pn / secs, mn / secs, ln / secs
print(f"  no trigger          {p:10.0f} tps")
print(f"  C capture trigger   {m:10.0f} tps   ratio {m/p:.2f} of no trigger  (overhead {100*(1-m/p):.0f} %, target <= 15 %)")
print(f"  PL/pgSQL trigger    {l:10.0f} tps   ratio {l/p:.2f} of no trigger  (C trigger is {m/l:.2f}x PL/pgSQL;"
      " the PL/pgSQL trigger coalesces into the outbox itself)")
print(f"  fold of the C run's {logged} captured writes into the outbox afterwards: {fold_ms:.0f} ms "
      f"({1000 * fold_ms / max(logged, 1):.1f} us a write, one process)")
print(f"  ({queued} of the C run's {mn:.0f} updates opened an outbox entry ({100*queued/max(mn, 1):.0f} %); "
      "the others coalesced into an open one)")
PY
