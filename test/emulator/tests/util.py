"""Test helpers: start the emulator as a subprocess and talk to it."""
import http.client
import json
import os
import ssl
import subprocess
import sys
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(os.path.dirname(HERE), "emulator.py")
# The recordings the fidelity tests replay live in two places:
#  - test/emulator/fixtures: the project's copy of those whose licences allow
#    it (MIT, Apache-2.0), with their sources and licence texts
#    (fixtures/MANIFEST.md); always present;
#  - SHARED_FIXTURES: the others (Elastic-2.0, BSL 1.1), never copied into the
#    project.  SYNC_FIXTURES names them; the test command sets it to
#    ../shared/fixtures beside the clone when that directory is there (it runs
#    the suite from a copy of the tree, so the default below would not see it).
#    When absent, the tests that need them are skipped with the reason.
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures")


def _shared_fixtures():
    path = os.environ.get("SYNC_FIXTURES")
    if path is None:
        path = os.path.join(HERE, "..", "..", "..", "..", "shared", "fixtures")
    path = os.path.normpath(path) if path else ""
    try:
        return path if path and os.path.isdir(path) and os.listdir(path) else None
    except OSError:                   # there, but this user cannot read it
        return None


SHARED_FIXTURES = _shared_fixtures()
# the sources of the shared fixtures that are not copied (fixtures/MANIFEST.md)
SHARED_LICENCES = {"integration-templates": "Elastic License 2.0",
                   "ledger_sync-netsuite": "BSL 1.1"}


class Emulator:
    """A running emulator process.  Use as a context manager or call stop()."""

    def __init__(self, *args, tls=None):
        cmd = [sys.executable, EMULATOR, "--port", "0"] + list(args)
        self.ssl_context = None
        if tls:                       # tls = (cert, key, ca)
            cmd += ["--tls-cert", tls[0], "--tls-key", tls[1]]
            self.ssl_context = ssl.create_default_context(cafile=tls[2])
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        prefix = "emulator listening on "
        if not line.startswith(prefix):
            self.proc.kill()
            raise RuntimeError("emulator did not start: %r" % line)
        self.url = line[len(prefix):]
        u = urllib.parse.urlsplit(self.url)
        self.host, self.port, self.scheme = u.hostname, u.port, u.scheme
        self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self._conn:
            self._conn.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc.stdout.close()

    def connection(self, timeout=30):
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                               context=self.ssl_context)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, raw=False):
        """Send one request on a keep-alive connection.

        body: dict/list (sent as JSON), str/bytes (sent as is) or None.
        Returns (status, headers as a dict with lower-case names, parsed
        JSON body or None when empty; raw bytes if raw=True).
        """
        hdrs = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self.connection()
            try:
                self._conn.request(method, path, body=body, headers=hdrs)
                resp = self._conn.getresponse()
                data = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        rh = {k.lower(): v for k, v in resp.getheaders()}
        if resp.getheader("Connection", "").lower() == "close":
            self._conn.close()
            self._conn = None
        if raw:
            return resp.status, rh, data
        return resp.status, rh, (json.loads(data) if data else None)

    # control API shortcuts
    def reset(self):
        return self.request("POST", "/__emulator/reset")

    def config(self, **kw):
        return self.request("POST", "/__emulator/config", kw)

    def fault(self, **kw):
        return self.request("POST", "/__emulator/faults", kw)

    def seed(self, api, obj, records):
        st, _, body = self.request("POST", "/__emulator/records/%s/%s" % (api, obj), records)
        assert st in (200, 201), (st, body)
        return body

    def requests_log(self):
        return self.request("GET", "/__emulator/requests")[2]


def fixture_path(relpath):
    """Where the recording relpath (e.g. "salesforce/restforce/x.json") is:
    the project's copy, else the shared fixtures.  Raises unittest.SkipTest
    (the calling test is reported as skipped, with the reason) when it is in
    neither because the shared fixtures are not there."""
    own = os.path.join(FIXTURES, relpath)
    if os.path.exists(own):
        return own
    if SHARED_FIXTURES is None:
        source = relpath.split("/")[1] if relpath.count("/") >= 2 else relpath
        raise unittest.SkipTest(
            "needs the shared fixtures (%s recordings, %s: not copied into the "
            "project; put them at ../shared/fixtures beside the clone or name "
            "them with SYNC_FIXTURES) [%s]"
            % (source, SHARED_LICENCES.get(source, "licence not copyable"), relpath))
    return os.path.join(SHARED_FIXTURES, relpath)


def load_fixture(relpath):
    with open(fixture_path(relpath), encoding="utf-8") as f:
        return json.load(f)


def fixture_files(api):
    """Relative paths of every recording of api ("salesforce", "hubspot",
    "netsuite"): the project's copy plus the shared ones when present."""
    out = set()
    for root in (FIXTURES, SHARED_FIXTURES):
        if root is None:
            continue
        for dirpath, _, files in os.walk(os.path.join(root, api)):
            for f in files:
                out.add(os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(out)


def shape(value):
    """The JSON shape of a value: keys, nesting, value types, null placement.
    Lists are reduced to the shape of their first element."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "string"


class EmulatorTestCase(unittest.TestCase):
    """One emulator per test class, reset before each test."""
    emulator_args = ()

    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(*cls.emulator_args)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def setUp(self):
        self.emu.reset()
