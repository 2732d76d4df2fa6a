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
# ../shared/fixtures beside the project root; the test command passes it
# explicitly because it runs the suite from a copy of the tree.
FIXTURES = os.environ.get("SYNC_FIXTURES") or os.path.normpath(
    os.path.join(HERE, "..", "..", "..", "..", "shared", "fixtures"))


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


def load_fixture(relpath):
    with open(os.path.join(FIXTURES, relpath), encoding="utf-8") as f:
        return json.load(f)


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
