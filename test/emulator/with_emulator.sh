#!/usr/bin/env bash
# test/emulator/with_emulator.sh COMMAND [ARG...]
#
# Runs COMMAND with the emulator listening on 127.0.0.1 (a free port) and
# "-c sync_test.emulator_url=<its URL>" added to PGOPTIONS, then stops the
# emulator and exits with COMMAND's status.  `make installcheck` runs the
# isolation specs through it: the ones that talk to a remote read the URL
# with current_setting('sync_test.emulator_url').  The server under test
# must be on this machine (the emulator answers on loopback only).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/sync-emulator.XXXXXX") || exit 1
python3 "$here/emulator.py" --port 0 >"$dir/out" 2>"$dir/log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
trap 'exit 130' INT TERM

url=
for _ in $(seq 1 100); do
  url=$(sed -n 's/^emulator listening on //p' "$dir/out" | head -1)
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$url" ]; then
  cat "$dir/log" >&2
  echo "with_emulator.sh: the emulator did not start" >&2
  exit 1
fi

PGOPTIONS="${PGOPTIONS:-} -c sync_test.emulator_url=$url" "$@"
