#!/usr/bin/env bash
# test/run.sh — the whole test suite, from a fresh Debian 12 machine as root.
#
#   bash test/run.sh                  every suite
#   bash test/run.sh regress [NAME…]  pg_regress (sql/NAME.sql vs expected/NAME.out)
#   bash test/run.sh isolation [NAME…] pg_isolation_regress (test/isolation/specs)
#   bash test/run.sh tap [FILE…]      TAP tests (test/t/*.pl)
#   bash test/run.sh emulator [PATTERN] the emulator's own unittest suite
#   bash test/run.sh package           packaging metadata (debian/, META.json vs sync.control)
#
# Installs missing packages, builds with -Werror, installs, runs each suite
# against throwaway clusters owned by an unprivileged user, removes them
# (also when a test fails), prints "N passed, F failed, K skipped" last, and
# exits non-zero on any failure.  Skipped: the emulator's fidelity tests that
# replay recordings whose licences keep them out of the project (Elastic-2.0,
# BSL 1.1), when the shared fixtures are not there (SYNC_FIXTURES, default
# ../shared/fixtures beside the clone); each is listed with its reason.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PASSED=0
FAILED=0
SKIPPED=0
WORK=
CLUSTER=
EMU_PIDS=()

cleanup() {
  [ -n "$CLUSTER" ] && sync_stop_cluster "$CLUSTER"
  local p
  for p in "${EMU_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  [ -n "$WORK" ] && [ -z "${SYNC_KEEP_WORK:-}" ] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

count() { PASSED=$((PASSED + $1)); FAILED=$((FAILED + $2)); }

# A copy of the tree the unprivileged user can read, wherever the clone is
# (e.g. under a directory only root can enter), and likewise of the shared
# fixtures when there are any.  Nothing run as that user reads the clone.
prepare_work() {
  WORK=$(mktemp -d /tmp/sync-test.XXXXXX)
  chmod 755 "$WORK"
  mkdir -p "$WORK/tree"
  (cd "$SYNC_ROOT" && tar --exclude=.git --exclude='*.o' --exclude='*.so' -cf - .) | tar -C "$WORK/tree" -xf -
  if [ -n "$SYNC_FIXTURES" ]; then
    mkdir -p "$WORK/shared-fixtures"
    (cd "$SYNC_FIXTURES" && tar -cf - .) | tar -C "$WORK/shared-fixtures" -xf - \
      || die "cannot copy the shared fixtures from $SYNC_FIXTURES"
    SYNC_FIXTURES=$WORK/shared-fixtures
  fi
  [ "$(id -u)" -eq 0 ] && chown -R "$SYNC_USER" "$WORK"
  chmod -R u+rwX "$WORK"
  SYNC_TREE=$WORK/tree
  export SYNC_TREE
}

# The recordings not copied into the project (fixtures/MANIFEST.md): the
# directory SYNC_FIXTURES names (empty: none), else ../shared/fixtures beside
# the clone if it is there; else none, and the tests needing them are skipped.
find_shared_fixtures() {
  if [ -n "${SYNC_FIXTURES+set}" ]; then
    [ -z "$SYNC_FIXTURES" ] || [ -d "$SYNC_FIXTURES" ] || die "SYNC_FIXTURES=$SYNC_FIXTURES is not a directory"
  elif [ -d "$SYNC_ROOT/../shared/fixtures" ]; then
    SYNC_FIXTURES=$(cd "$SYNC_ROOT/../shared/fixtures" && pwd)
  else
    SYNC_FIXTURES=
  fi
}

# Count pg_regress-style "... ok" / "... FAILED" lines.
count_regress_output() {
  local out=$1 ok bad
  ok=$(grep -cE '\.\.\. ok( |$)' "$out")
  bad=$(grep -cE '\.\.\. (FAILED|failed)' "$out")
  count "$ok" "$bad"
}

run_regress() {
  local tests=("$@")
  [ ${#tests[@]} -eq 0 ] && tests=($(cd "$SYNC_TREE/sql" && ls *.sql 2>/dev/null | sed 's/\.sql$//'))
  [ ${#tests[@]} -eq 0 ] && return 0
  say "pg_regress: ${#tests[@]} tests"
  local out="$WORK/regress.out" rc
  as_user "$PG_REGRESS" --bindir="$PG_BINDIR" --inputdir="$SYNC_TREE" \
      --outputdir="$WORK/regress" --host="$CLUSTER" --port="$PORT" \
      --load-extension=sync "${tests[@]}" >"$out" 2>&1
  rc=$?
  cat "$out"
  count_regress_output "$out"
  if [ $rc -ne 0 ]; then
    [ -f "$WORK/regress/regression.diffs" ] && head -200 "$WORK/regress/regression.diffs"
    grep -qE '\.\.\. (FAILED|failed)' "$out" || count 0 1
  fi
}

run_isolation() {
  local specs=("$@")
  [ ${#specs[@]} -eq 0 ] && specs=($(cd "$SYNC_TREE/test/isolation/specs" 2>/dev/null && ls *.spec 2>/dev/null | sed 's/\.spec$//'))
  [ ${#specs[@]} -eq 0 ] && return 0
  say "pg_isolation_regress: ${#specs[@]} specs"
  local out="$WORK/isolation.out" rc
  # Specs that talk to a remote (e.g. apply_vs_local_update) find the
  # emulator, plain HTTP on loopback, through the placeholder setting
  # sync_test.emulator_url, given to every session by PGOPTIONS
  # (pg_regress appends its own options to it).  The emulator stops after
  # the run, and through cleanup's EMU_PIDS if the run is interrupted.
  sync_start_emulator "$WORK"
  EMU_PIDS+=("$EMULATOR_PID")
  as_user env PGOPTIONS="${PGOPTIONS:-} -c sync_test.emulator_url=$EMULATOR_URL" \
      "$PG_ISOLATION_REGRESS" --bindir="$PG_BINDIR" --inputdir="$SYNC_TREE/test/isolation" \
      --outputdir="$WORK/isolation" --host="$CLUSTER" --port="$PORT" \
      --dbname=isolation_regression --load-extension=sync "${specs[@]}" >"$out" 2>&1
  rc=$?
  unset 'EMU_PIDS[${#EMU_PIDS[@]}-1]'
  sync_stop_emulator
  cat "$out"
  count_regress_output "$out"
  if [ $rc -ne 0 ]; then
    [ -f "$WORK/isolation/regression.diffs" ] && head -200 "$WORK/isolation/regression.diffs"
    grep -qE '\.\.\. (FAILED|failed)' "$out" || count 0 1
  fi
}

# One TAP file, its output in $WORK/tap/NAME.out, its exit status and
# duration beside it (run in the background by run_tap).
tap_one() {
  local f=$1 out="$WORK/tap/$(basename "$1").out" t0=$SECONDS
  as_user mkdir -p "$WORK/tap/$(basename "$f" .pl)"
  (cd "$SYNC_TREE" && as_user env TESTDIR="$WORK/tap/$(basename "$f" .pl)" \
      PG_REGRESS="$PG_REGRESS" SYNC_TREE="$SYNC_TREE" PGPORT= PGHOST= \
      PG_TEST_PORT_DIR="$WORK/tap/portlock" \
      prove -v -I "$PGXS_DIR/src/test/perl" -I "$SYNC_TREE/test/perl" "$f") >"$out" 2>&1
  echo $? >"$out.rc"
  echo $((SECONDS - t0)) >"$out.secs"
}

# The TAP files, SYNC_TAP_JOBS (default 2) at a time: each has its own
# clusters (ports reserved in one shared lock directory) and emulator, and
# most of their time is spent waiting on workers and sockets.  Results are
# printed in file order once all are done.
run_tap() {
  local files=() f jobs=${SYNC_TAP_JOBS:-2}
  for f in "$@"; do
    f=${f#"$SYNC_TREE"/}
    [ -f "$SYNC_TREE/$f" ] || f=test/t/$(basename "$f")   # a bare name: 030_salesforce.pl
    files+=("$f")
  done
  [ ${#files[@]} -eq 0 ] && files=($(cd "$SYNC_TREE" && ls test/t/*.pl 2>/dev/null))
  [ ${#files[@]} -eq 0 ] && return 0
  say "TAP: ${#files[@]} files, $jobs at a time"
  mkdir -p "$WORK/tap/portlock" && [ "$(id -u)" -eq 0 ] && chown -R "$SYNC_USER" "$WORK/tap"
  for f in "${files[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    tap_one "$f" &
  done
  wait
  for f in "${files[@]}"; do
    local out="$WORK/tap/$(basename "$f").out" rc total bad
    rc=$(cat "$out.rc" 2>/dev/null || echo 1)
    total=$(grep -cE '^ok [0-9]+' "$out")
    bad=$(grep -cE '^not ok [0-9]+' "$out")
    if [ "$rc" -ne 0 ]; then
      cat "$out"
      [ "$bad" -eq 0 ] && bad=1          # died, or wrong plan
      local log
      for log in "$WORK/tap/$(basename "$f" .pl)"/tmp_check/log/*; do
        [ -f "$log" ] && { echo "---- $log (tail)"; tail -40 "$log"; }
      done
    else
      grep -E '^(ok|not ok|#)' "$out" | grep -v '^# *$' | head -100
    fi
    echo "$f: $total ok, $bad failed ($(cat "$out.secs" 2>/dev/null) s)"
    count "$total" "$bad"
  done
}

# test/emulator/run_tests.py prints "emulator: N passed, F failed, K skipped"
# last; skipped tests are listed with their reasons and never count as passed.
run_emulator_suite() {
  [ -d "$SYNC_TREE/test/emulator/tests" ] || return 0
  say "emulator unittest suite${SYNC_FIXTURES:+ (shared fixtures: $SYNC_FIXTURES)}"
  local out="$WORK/emulator.out" rc line ok bad skip
  (cd "$SYNC_TREE/test/emulator" && as_user env PYTHONDONTWRITEBYTECODE=1 \
      SYNC_FIXTURES="$SYNC_FIXTURES" python3 run_tests.py ${1:+-p "$1"}) >"$out" 2>&1
  rc=$?
  line=$(grep -E '^emulator: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$out" | tail -1)
  read -r ok bad skip < <(echo "$line" | sed -E 's/^emulator: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped$/\1 \2 \3/')
  ok=${ok:-0} bad=${bad:-0} skip=${skip:-0}
  sed -n '/^skipped (/,$p' "$out"
  if [ $rc -ne 0 ]; then
    grep -E '^(FAIL|ERROR): ' "$out"
    sed -n '/^=====/,$p' "$out" | head -150
    [ -z "$line" ] && tail -20 "$out"
    [ "$bad" -eq 0 ] && bad=1            # died before its summary
  fi
  count "$ok" "$bad"
  SKIPPED=$((SKIPPED + skip))
}

# The packaging metadata agrees with sync.control and the README (fast, no
# root: the full package build and install is test/package.sh, run apart).
run_package_metadata() {
  say "packaging metadata (debian/, META.json)"
  local out="$WORK/package.out" ok bad
  bash "$SYNC_ROOT/test/package.sh" --metadata "$SYNC_ROOT" >"$out" 2>&1
  cat "$out"
  read -r ok bad < <(sed -nE 's/^([0-9]+) passed, ([0-9]+) failed$/\1 \2/p' "$out" | tail -1)
  count "${ok:-0}" "${bad:-1}"
}

main() {
  local suite=${1:-all}; [ $# -gt 0 ] && shift
  case $suite in
    all|regress|isolation|tap|emulator|package) ;;
    *) die "unknown suite '$suite' (all, regress, isolation, tap, emulator, package)";;
  esac
  sync_install_deps
  sync_ensure_user
  sync_build
  PGXS_DIR=$(dirname "$("$PG_CONFIG" --pgxs)")/../..
  PGXS_DIR=$(cd "$PGXS_DIR" && pwd)
  PG_REGRESS=$PGXS_DIR/src/test/regress/pg_regress
  PG_ISOLATION_REGRESS=$PGXS_DIR/src/test/isolation/pg_isolation_regress
  find_shared_fixtures
  prepare_work

  if [ "$suite" = all ] || [ "$suite" = regress ] || [ "$suite" = isolation ]; then
    CLUSTER=$WORK/cluster; mkdir -p "$CLUSTER"; chown "$SYNC_USER" "$CLUSTER" 2>/dev/null
    PORT=$(free_port)
    sync_start_cluster "$CLUSTER" "$PORT" "max_prepared_transactions = 10"
    { [ "$suite" = all ] || [ "$suite" = regress ]; } && run_regress "$@"
    { [ "$suite" = all ] || [ "$suite" = isolation ]; } && run_isolation "$@"
    sync_stop_cluster "$CLUSTER"; CLUSTER=
  fi
  { [ "$suite" = all ] || [ "$suite" = tap ]; } && run_tap "$@"
  { [ "$suite" = all ] || [ "$suite" = emulator ]; } && run_emulator_suite "$@"
  { [ "$suite" = all ] || [ "$suite" = package ]; } && run_package_metadata

  echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
  [ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
}

main "$@"
