#!/usr/bin/env bash
# test/package.sh — the packages a PostgreSQL user installs, tested as root on
# Debian 12:
#
#   1. metadata: debian/changelog's version, META.json's version and
#      provides.sync.version agree with sync.control's default_version (the
#      one version source); META.json is valid against the PGXN meta spec
#      1.0.0 (a stdlib checker, which must also reject broken copies);
#      debian/control is what pg_buildext generates from control.in; the
#      README's Requirements name every package the build and the package
#      depend on.
#   2. the .deb: built with dpkg-buildpackage from a clean tree (`git archive
#      HEAD`: uncommitted changes are not in it), installed with
#      `apt-get install ./postgresql-15-sync_*.deb` into the real
#      /usr/lib/postgresql/15, its files verified against its md5sums;
#   3. the installed files: CREATE EXTENSION in a throwaway cluster gives the
#      current version, 0.1 updates to it, and the pg_regress suite (sql/,
#      expected/) passes against them.
#
# Afterwards the package is purged and whatever sync files were installed
# before (e.g. by `make install`) are put back, so `bash test/run.sh` works as
# before.  SYNC_PACKAGE_KEEP=1 leaves the package installed instead.
# Not part of test/run.sh: it changes the system installation.
#
#   bash test/package.sh --metadata [TREE]   only step 1, on the working tree
#       (or TREE): no root, no build, nothing installed; a few seconds.
#
# Prints "N passed, N failed" last and exits non-zero on any failure.
set -u
# The package installs into the system's PostgreSQL, so that is the server
# under test whatever SYNC_PG_BINDIR says.
unset SYNC_PG_BINDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PKG=postgresql-$PG_MAJOR-sync
SYNC_PACKAGES="$SYNC_PACKAGES dpkg-dev debhelper postgresql-server-dev-all fakeroot git"
PASSED=0
FAILED=0
WORK=
CLUSTER=
BACKUP=
INSTALLED=

pass() { PASSED=$((PASSED + 1)); echo "ok - $*"; }
fail() { FAILED=$((FAILED + 1)); echo "not ok - $*"; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }

# The sync files of the system installation, wherever they came from.
system_sync_files() {
  local lib share
  lib=$("$PG_CONFIG" --pkglibdir); share=$("$PG_CONFIG" --sharedir)
  ls -d "$lib/sync.so" "$lib/bitcode/sync" "$lib/bitcode/sync.index.bc" \
        "$share"/extension/sync.control "$share"/extension/sync--*.sql 2>/dev/null
}

cleanup() {
  [ -n "$CLUSTER" ] && sync_stop_cluster "$CLUSTER"
  if [ -n "$INSTALLED" ] && [ -z "${SYNC_PACKAGE_KEEP:-}" ]; then
    apt-get purge -y -qq "$PKG" >/dev/null 2>&1 || echo "warning: apt-get purge $PKG failed" >&2
    if [ -n "$BACKUP" ] && [ -s "$BACKUP" ]; then
      tar -C / -xpf "$BACKUP" || echo "warning: could not restore the sync files saved in $BACKUP" >&2
    fi
  fi
  [ -n "$WORK" ] && [ -z "${SYNC_KEEP_WORK:-}" ] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# sync.control's default_version as a SemVer (0.3 -> 0.3.0).
semver() {
  local v=$1
  while [ "$(tr -cd . <<<"$v" | wc -c)" -lt 2 ]; do v=$v.0; done
  echo "$v"
}

# check_meta FILE TREE VERSION: META.json against PGXN meta spec 1.0.0
# (https://pgxn.org/spec/), plus this project's rules.  Prints the problems.
check_meta() {
  python3 - "$@" <<'PY'
import json, re, sys, os

path, tree, version = sys.argv[1:4]
errors = []
def err(msg): errors.append(msg)

SEMVER = (r'(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)'
          r'(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?'
          r'(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?')
RANGE_ONE = r'(?:(?:[=!]=|[<>]=?)\s*)?' + SEMVER
LICENSES = {"agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2",
            "bsd", "freebsd", "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3",
            "lgpl_2_1", "lgpl_3_0", "mit", "mozilla_1_0", "mozilla_1_1",
            "openssl", "perl_5", "postgresql", "qpl_1_0", "ssleay", "sun",
            "zlib", "open_source", "restricted", "unrestricted", "unknown"}

def is_ext(k): return re.match(r'^[xX]_.', k) is not None
def nonempty_str(v): return isinstance(v, str) and len(v) >= 1
def is_term(v):
    return isinstance(v, str) and len(v) >= 2 and \
        not any(c in '/\\' or c.isspace() or ord(c) < 32 or ord(c) == 127 for c in v)
def is_semver(v): return isinstance(v, str) and re.fullmatch(SEMVER, v) is not None
def is_uri(v): return isinstance(v, str) and re.match(r'^[A-Za-z][A-Za-z0-9+.-]*:\S+$', v) is not None
def is_path(v): return isinstance(v, str) and len(v) >= 2 and not v.startswith('/') and '\\' not in v
def is_range(v):
    if v == 0 and not isinstance(v, bool): return True
    return isinstance(v, str) and (v == "0" or all(
        re.fullmatch(RANGE_ONE, p.strip()) for p in v.split(',')))
def only_keys(obj, allowed, where):
    for k in obj:
        if k not in allowed and not is_ext(k):
            err(f"{where}: unknown key {k!r}")
def file_list(v):
    if is_path(v): return True
    return isinstance(v, list) and len(v) >= 1 and all(map(is_path, v)) and len(set(v)) == len(v)

try:
    with open(path, encoding='utf-8') as f:
        meta = json.load(f)
except (OSError, ValueError) as e:
    print(f"{path}: not JSON: {e}"); sys.exit(1)
if not isinstance(meta, dict):
    print(f"{path}: not a JSON object"); sys.exit(1)

for k in ("name", "version", "abstract", "maintainer", "license", "provides", "meta-spec"):
    if k not in meta: err(f"missing mandatory key {k!r}")
only_keys(meta, {"name", "version", "abstract", "maintainer", "license", "provides",
                 "meta-spec", "description", "generated_by", "tags", "no_index",
                 "prereqs", "release_status", "resources"}, "top level")
if "name" in meta and not is_term(meta["name"]): err("name: not a term")
if "version" in meta and not is_semver(meta["version"]): err(f"version {meta['version']!r}: not SemVer")
for k in ("abstract", "description", "generated_by"):
    if k in meta and not nonempty_str(meta[k]): err(f"{k}: not a non-empty string")
m = meta.get("maintainer")
if m is not None and not (nonempty_str(m) or (isinstance(m, list) and m and
        all(map(nonempty_str, m)) and len(set(m)) == len(m))):
    err("maintainer: not a string or a list of distinct strings")
lic = meta.get("license")
if lic is not None and not ((isinstance(lic, str) and lic in LICENSES) or
        (isinstance(lic, list) and lic and all(isinstance(x, str) and x in LICENSES for x in lic)) or
        (isinstance(lic, dict) and lic and all(is_uri(x) for x in lic.values()))):
    err(f"license {lic!r}: not a known license, a list of them, or names -> URIs")
prov = meta.get("provides")
if prov is not None:
    if not isinstance(prov, dict) or not prov: err("provides: not a non-empty object")
    else:
        for ext, d in prov.items():
            w = f"provides.{ext}"
            if not is_term(ext): err(f"{w}: name not a term")
            if not isinstance(d, dict): err(f"{w}: not an object"); continue
            only_keys(d, {"file", "version", "abstract", "docfile", "docpath"}, w)
            for k in ("file", "version"):
                if k not in d: err(f"{w}: missing {k!r}")
            if "version" in d and not is_semver(d["version"]): err(f"{w}.version: not SemVer")
            for k in ("file", "docfile"):
                if k in d:
                    if not is_path(d[k]): err(f"{w}.{k}: not a relative path")
                    elif not os.path.isfile(os.path.join(tree, d[k])): err(f"{w}.{k}: {d[k]} is not in the tree")
            for k in ("abstract", "docpath"):
                if k in d and not nonempty_str(d[k]): err(f"{w}.{k}: not a non-empty string")
ms = meta.get("meta-spec")
if ms is not None:
    if not isinstance(ms, dict): err("meta-spec: not an object")
    else:
        only_keys(ms, {"version", "url"}, "meta-spec")
        if not (isinstance(ms.get("version"), str) and re.fullmatch(r'1\.0\.\d+', ms["version"])):
            err("meta-spec.version: not 1.0.x")
        if "url" in ms and ms["url"] not in ("https://pgxn.org/meta/spec.txt", "http://pgxn.org/meta/spec.txt"):
            err("meta-spec.url: not the spec's URL")
if "release_status" in meta and meta["release_status"] not in ("stable", "testing", "unstable"):
    err("release_status: not stable, testing or unstable")
tags = meta.get("tags")
if tags is not None and not (isinstance(tags, list) and tags and len(set(tags)) == len(tags) and
        all(isinstance(t, str) and 2 <= len(t) <= 255 and
            not any(c in '/\\' or ord(c) < 32 for c in t) for t in tags)):
    err("tags: not a list of distinct tags of 2-255 characters")
ni = meta.get("no_index")
if ni is not None:
    if not isinstance(ni, dict) or not ({"file", "directory"} & set(ni)): err("no_index: needs file or directory")
    else:
        only_keys(ni, {"file", "directory"}, "no_index")
        for k in ("file", "directory"):
            if k in ni and not file_list(ni[k]): err(f"no_index.{k}: not a path or list of paths")
pr = meta.get("prereqs")
if pr is not None:
    phases = {"configure", "build", "test", "runtime", "develop"}
    rels = {"requires", "recommends", "suggests", "conflicts"}
    if not isinstance(pr, dict) or not (phases & set(pr)): err("prereqs: needs at least one phase")
    else:
        only_keys(pr, phases, "prereqs")
        for ph, pv in pr.items():
            if is_ext(ph): continue
            if not isinstance(pv, dict) or not (rels & set(pv)): err(f"prereqs.{ph}: needs a relationship"); continue
            only_keys(pv, rels, f"prereqs.{ph}")
            for rel, rv in pv.items():
                if is_ext(rel): continue
                if not isinstance(rv, dict) or not rv: err(f"prereqs.{ph}.{rel}: not a non-empty object"); continue
                for name, rng in rv.items():
                    if not is_term(name): err(f"prereqs.{ph}.{rel}: {name!r} not a term")
                    if not is_range(rng): err(f"prereqs.{ph}.{rel}.{name}: {rng!r} not a version range")
res = meta.get("resources")
if res is not None:
    if not isinstance(res, dict) or not ({"homepage", "bugtracker", "repository"} & set(res)):
        err("resources: needs homepage, bugtracker or repository")
    else:
        only_keys(res, {"homepage", "bugtracker", "repository"}, "resources")
        if "homepage" in res and not is_uri(res["homepage"]): err("resources.homepage: not a URI")
        bt = res.get("bugtracker")
        if bt is not None and not (isinstance(bt, dict) and ({"web", "mailto"} & set(bt))
                                   and all(nonempty_str(v) for v in bt.values())):
            err("resources.bugtracker: needs web or mailto")
        rp = res.get("repository")
        if rp is not None and not (isinstance(rp, dict) and
                                   (("url" in rp and "type" in rp) or "web" in rp) and
                                   all(is_uri(rp[k]) for k in ("url", "web") if k in rp)):
            err("resources.repository: needs url and type, or web")

# this project's rules: one version source, and the extension is "sync"
if meta.get("version") != version:
    err(f"version {meta.get('version')!r} is not sync.control's default_version as SemVer ({version})")
if not isinstance(prov, dict) or "sync" not in prov:
    err("provides: no extension 'sync'")
elif isinstance(prov["sync"], dict) and prov["sync"].get("version") != version:
    err(f"provides.sync.version {prov['sync'].get('version')!r} is not {version}")
req = ((pr or {}).get("runtime") or {}).get("requires") or {}
if "PostgreSQL" not in req:
    err("prereqs.runtime.requires: no PostgreSQL")

for e in errors: print(f"{path}: {e}")
sys.exit(1 if errors else 0)
PY
}

# meta_variant SRC DST PYTHON-STATEMENT: a copy of META.json changed by one statement on `m`.
meta_variant() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(m, open(sys.argv[2], "w"))
PY
}

# The package names in a control field (alternatives, versions, arch and
# substitution variables dropped), one a line.
control_packages() {
  sed -n "/^$2:/,/^[^ ]/p" "$1" | sed "1s/^$2://; /^[^ ]/d" | tr ',|' '\n\n' \
    | sed 's/([^)]*)//; s/\[.*\]//; s/\${[^}]*}//; s/^ *//; s/ *$//' | sed '/^$/d'
}

# readme_names TREE PACKAGE: README.md's Requirements section names `PACKAGE`.
readme_names() {
  sed -n '/^## Requirements/,/^## /p' "$1/README.md" | grep -q "\`$2\`"
}

metadata_checks() {
  say "metadata"
  local tree=$1 version semv
  version=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$tree/sync.control")
  semv=$(semver "$version")
  [ -n "$version" ] || { fail "sync.control has a default_version"; return; }
  echo "# sync.control default_version: $version (SemVer $semv)"

  local clv
  clv=$(dpkg-parsechangelog -l "$tree/debian/changelog" -S Version)
  check "debian/changelog's version ($clv) is sync.control's default_version ($version)" \
    test "${clv%-*}" = "$version"
  check "debian/source/format is 3.0 (native), so the version carries no Debian revision" \
    grep -qx '3.0 (native)' "$tree/debian/source/format"

  local out
  if out=$(check_meta "$tree/META.json" "$tree" "$semv"); then
    pass "META.json is valid against PGXN meta spec 1.0.0 and its versions are $semv"
  else
    fail "META.json is valid against PGXN meta spec 1.0.0 and its versions are $semv"
    echo "$out"
  fi
  # the checker must reject what the spec rejects
  local bad=$WORK/meta-bad.json what stmt
  while IFS='|' read -r what stmt; do
    meta_variant "$tree/META.json" "$bad" "$stmt"
    if check_meta "$bad" "$tree" "$semv" >/dev/null; then
      fail "the META.json checker rejects a copy with $what"
    else
      pass "the META.json checker rejects a copy with $what"
    fi
  done <<'EOF'
no license|del m["license"]
a license not in the spec|m["license"] = "proprietary-ish"
a version that is not SemVer|m["version"] = "0.2"
provides.sync.version not the control file's|m["provides"]["sync"]["version"] = "9.9.9"
an unknown top-level key|m["homepage"] = "https://example.org"
a provides file not in the tree|m["provides"]["sync"]["file"] = "no/such.sql"
a bad version range|m["prereqs"]["runtime"]["requires"]["PostgreSQL"] = "fifteen"
EOF

  # debian/control is generated from control.in: it must be up to date
  local gen=$WORK/control-check
  mkdir -p "$gen" && cp -a "$tree/debian" "$gen/"
  (cd "$gen" && pg_buildext updatecontrol >/dev/null 2>&1)
  check "debian/control is what pg_buildext updatecontrol makes of control.in" \
    cmp -s "$tree/debian/control" "$gen/debian/control"

  # the README's Requirements name what the package build needs
  local p missing=()
  for p in $(control_packages "$tree/debian/control" Build-Depends) "postgresql-$PG_MAJOR"; do
    case $p in debhelper-compat|postgresql-server-dev-all) continue;; esac
    readme_names "$tree" "$p" || missing+=("$p")
  done
  check "README's Requirements name every package the build depends on${missing[*]:+ (missing: ${missing[*]})}" \
    test ${#missing[@]} -eq 0
}

build_package() {
  say "building $PKG from git archive HEAD"
  local src=$WORK/build/postgresql-sync
  mkdir -p "$src"
  if ! git -C "$SYNC_ROOT" archive HEAD | tar -C "$src" -xf -; then
    fail "git archive HEAD of $SYNC_ROOT"; return 1
  fi
  if [ -n "$(git -C "$SYNC_ROOT" status --porcelain -- . 2>/dev/null)" ]; then
    echo "# note: uncommitted changes in $SYNC_ROOT are not in the package"
  fi
  metadata_checks "$src"
  say "dpkg-buildpackage"
  if (cd "$src" && dpkg-buildpackage -us -uc -b) >"$WORK/build.log" 2>&1; then
    pass "dpkg-buildpackage builds the package from a clean tree"
  else
    tail -60 "$WORK/build.log"
    fail "dpkg-buildpackage builds the package from a clean tree"; return 1
  fi
  local version
  version=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$src/sync.control")
  DEB=$(ls "$WORK"/build/"${PKG}_${version}"_*.deb 2>/dev/null | head -1)
  check "the build made ${PKG}_${version}_<arch>.deb" test -n "$DEB"
  [ -n "$DEB" ] || return 1
  local depends files
  depends=$(dpkg-deb -f "$DEB" Depends)
  echo "# Depends: $depends"
  check "the package depends on postgresql-$PG_MAJOR" grep -qE "(^|, )postgresql-$PG_MAJOR( |,|$)" <<<"$depends"
  local lib
  for lib in libcurl4 libjson-c5 libssl3; do
    check "the package depends on $lib (from the library's shlibs)" grep -qE "(^|, )$lib( |,|$)" <<<"$depends"
  done
  # ... and the README says so (libc6 and the JIT's bitcode package, which
  # postgresql-15 provides, go without saying)
  local p missing=()
  for p in $(tr ',|' '\n\n' <<<"$depends" | sed 's/([^)]*)//; s/^ *//; s/ *$//' | sed '/^$/d'); do
    case $p in libc6|postgresql-*-jit-llvm) continue;; esac
    readme_names "$src" "$p" || missing+=("$p")
  done
  check "README's Requirements name every package the .deb depends on${missing[*]:+ (missing: ${missing[*]})}" \
    test ${#missing[@]} -eq 0
  files=$(dpkg-deb -c "$DEB" | awk '{print $6}')
  # the current install script, every released (frozen) one, every update step
  local ext="share/postgresql/$PG_MAJOR/extension" shipped=()
  shipped=("$ext/sync--$version.sql")
  for f in "$src"/sync--*.sql; do shipped+=("$ext/$(basename "$f")"); done
  for f in "$src"/src/update/*--*; do shipped+=("$ext/sync--$(basename "$f").sql"); done
  for f in "lib/postgresql/$PG_MAJOR/lib/sync.so" "$ext/sync.control" "${shipped[@]}"; do
    check "the package ships /usr/$f" grep -qx "./usr/$f" <<<"$files"
  done
  SRC=$src
  VERSION=$version
}

install_package() {
  say "apt-get install ./$(basename "$DEB")"
  BACKUP=$WORK/system-sync-files.tar
  local saved
  saved=$(system_sync_files)
  if [ -n "$saved" ]; then
    # shellcheck disable=SC2086
    tar -C / -cpf "$BACKUP" $(sed 's|^/||' <<<"$saved") || die "could not save the installed sync files"
  else
    : >"$BACKUP"
  fi
  INSTALLED=1
  # apt's sandbox user must be able to read the .deb
  chmod 755 "$WORK" "$WORK/build"; chmod 644 "$DEB"
  if (cd "$WORK/build" && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "./$(basename "$DEB")") >"$WORK/install.log" 2>&1; then
    pass "apt-get install ./$(basename "$DEB")"
  else
    cat "$WORK/install.log"
    fail "apt-get install ./$(basename "$DEB")"; return 1
  fi
  check "dpkg lists $PKG $VERSION as installed" \
    test "$(dpkg-query -W -f='${Status} ${Version}' "$PKG" 2>/dev/null)" = "install ok installed $VERSION"
  check "dpkg owns $("$PG_CONFIG" --pkglibdir)/sync.so" \
    test "$(dpkg -S "$("$PG_CONFIG" --pkglibdir)/sync.so" 2>/dev/null | cut -d: -f1)" = "$PKG"
  check "the installed files match the package's md5sums (dpkg --verify)" \
    test -z "$(dpkg --verify "$PKG" 2>&1)"
}

# Against the installed files: CREATE EXTENSION, the update from 0.1, pg_regress.
installed_checks() {
  CLUSTER=$WORK/cluster; mkdir -p "$CLUSTER"; chown "$SYNC_USER" "$CLUSTER"
  PORT=$(free_port)
  sync_start_cluster "$CLUSTER" "$PORT" "max_prepared_transactions = 10"
  q() { as_user psql -X -A -t -q -h "$CLUSTER" -p "$PORT" -v ON_ERROR_STOP=1 "$@" 2>&1; }

  say "CREATE EXTENSION sync from the installed package"
  q -d postgres -c 'CREATE DATABASE pkg_fresh' -c 'CREATE DATABASE pkg_update' >/dev/null
  local got
  got=$(q -d pkg_fresh -c 'CREATE EXTENSION sync' -c "SELECT extversion FROM pg_extension WHERE extname = 'sync'")
  check "CREATE EXTENSION sync installs version $VERSION (got: $got)" test "$got" = "$VERSION"
  got=$(q -d pkg_update -c "CREATE EXTENSION sync VERSION '0.1'" -c 'ALTER EXTENSION sync UPDATE' \
          -c "SELECT extversion FROM pg_extension WHERE extname = 'sync'")
  check "the installed sync 0.1 updates to $VERSION with ALTER EXTENSION sync UPDATE (got: $got)" \
    test "$got" = "$VERSION"

  say "pg_regress against the installed files"
  local pgxs_dir pg_regress tests out rc ok bad
  pgxs_dir=$(cd "$(dirname "$("$PG_CONFIG" --pgxs)")/../.." && pwd)
  pg_regress=$pgxs_dir/src/test/regress/pg_regress
  tests=($(cd "$SRC/sql" && ls *.sql | sed 's/\.sql$//'))
  out=$WORK/regress.out
  as_user "$pg_regress" --bindir="$PG_BINDIR" --inputdir="$SRC" --outputdir="$WORK/regress" \
      --host="$CLUSTER" --port="$PORT" --load-extension=sync "${tests[@]}" >"$out" 2>&1
  rc=$?
  cat "$out"
  ok=$(grep -cE '\.\.\. ok( |$)' "$out")
  bad=$(grep -cE '\.\.\. (FAILED|failed)' "$out")
  PASSED=$((PASSED + ok)); FAILED=$((FAILED + bad))
  if [ $rc -ne 0 ]; then
    [ -f "$WORK/regress/regression.diffs" ] && head -200 "$WORK/regress/regression.diffs"
    [ "$bad" -eq 0 ] && fail "pg_regress ran (exit code $rc)"
  fi
  check "pg_regress ran all ${#tests[@]} tests of sql/" test "$((ok + bad))" -eq "${#tests[@]}"
  sync_stop_cluster "$CLUSTER"; CLUSTER=
}

main() {
  if [ "${1:-}" = --metadata ]; then
    local tree=${2:-$SYNC_ROOT}
    WORK=$(mktemp -d /tmp/sync-package.XXXXXX)
    metadata_checks "$(cd "$tree" && pwd)"
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
    return
  fi
  [ "$(id -u)" -eq 0 ] || die "run as root: the test installs a package"
  command -v apt-get >/dev/null || die "apt-get not found: the package test needs Debian"
  sync_install_deps
  sync_ensure_user
  WORK=$(mktemp -d /tmp/sync-package.XXXXXX)
  chmod 755 "$WORK"
  if build_package; then
    chown -R "$SYNC_USER" "$SRC"
    mkdir -p "$WORK/regress" && chown "$SYNC_USER" "$WORK/regress"
    install_package && installed_checks
  fi
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
}

main "$@"
