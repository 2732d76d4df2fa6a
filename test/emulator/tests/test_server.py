"""The emulator server: control API, request log, config, faults, keep-alive,
TLS, SIGTERM.  Uses the Salesforce API paths as a guinea pig."""
import http.client
import email.utils
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

from util import EMULATOR, Emulator, EmulatorTestCase

sys.path.insert(0, os.path.dirname(EMULATOR))
import certs  # noqa: E402
import common  # noqa: E402
import emulator as emumod  # noqa: E402

VERSIONS = "/services/data/"          # Salesforce, needs no token
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def token(emu):
    st, _, body = emu.request("POST", "/services/oauth2/token", urllib.parse.urlencode({
        "grant_type": "client_credentials", "client_id": "sync-client",
        "client_secret": "sync-secret"}), FORM)
    assert st == 200, body
    return body["access_token"]


class ControlApiTest(EmulatorTestCase):
    def test_records_crud_as_remote_user(self):
        ids = self.emu.seed("salesforce", "Contact", [{"LastName": "Ada", "Email": "ada@x.org"},
                                                      {"LastName": "Bob"}])["ids"]
        self.assertEqual(len(ids), 2)
        st, _, rows = self.emu.request("GET", "/__emulator/records/salesforce/Contact")
        self.assertEqual(st, 200)
        self.assertEqual(sorted(r["LastName"] for r in rows), ["Ada", "Bob"])
        row = [r for r in rows if r["Id"] == ids[0]][0]
        for k in ("SystemModstamp", "CreatedDate", "LastModifiedById", "IsDeleted"):
            self.assertIn(k, row)
        time.sleep(0.01)
        st, _, patched = self.emu.request("PATCH", "/__emulator/records/salesforce/Contact/" + ids[0],
                                          {"FirstName": "Augusta"})
        self.assertEqual(st, 200)
        self.assertEqual(patched["Name"], "Augusta Ada")
        self.assertGreater(patched["SystemModstamp"], row["SystemModstamp"])
        st, _, _ = self.emu.request("DELETE", "/__emulator/records/salesforce/Contact/" + ids[1])
        self.assertEqual(st, 200)
        rows = self.emu.request("GET", "/__emulator/records/salesforce/Contact")[2]
        self.assertEqual([r["Id"] for r in rows], [ids[0]])

    def test_unknown_api_object_id_404(self):
        for method, path, body in (
                ("GET", "/__emulator/records/nosuchapi/Contact", None),
                ("GET", "/__emulator/records/salesforce/NoSuchObject", None),
                ("POST", "/__emulator/records/salesforce/NoSuchObject", [{"Name": "x"}]),
                ("PATCH", "/__emulator/records/salesforce/Contact/003Em0000000999AAA", {"LastName": "x"}),
                ("DELETE", "/__emulator/records/salesforce/Contact/003Em0000000999AAA", None),
                ("GET", "/__emulator/nonsense", None)):
            st, h, b = self.emu.request(method, path, body)
            self.assertEqual(st, 404, (method, path, b))
            self.assertTrue(h["content-type"].startswith("application/json"))
            self.assertIn("error", b)

    def test_invalid_record_is_400(self):
        st, _, b = self.emu.request("POST", "/__emulator/records/salesforce/Contact", [{"FirstName": "no last"}])
        self.assertEqual(st, 400)
        self.assertIn("REQUIRED_FIELD_MISSING", b["error"])

    def test_reset_clears_records_faults_log_config(self):
        self.emu.seed("salesforce", "Account", [{"Name": "A"}])
        self.emu.config(token_ttl_s=5)
        self.emu.fault(path="^/nowhere$", status=500)
        self.emu.request("GET", VERSIONS)
        self.emu.reset()
        self.assertEqual(self.emu.request("GET", "/__emulator/records/salesforce/Account")[2], [])
        self.assertEqual(self.emu.request("GET", "/__emulator/faults")[2], [])
        self.assertEqual(self.emu.requests_log(), [])
        self.assertEqual(self.emu.request("GET", "/__emulator/config")[2], common.DEFAULT_CONFIG)

    def test_date_header_on_the_emulators_clock(self):
        # a real server's Date and the times in its answers share one clock
        h0 = self.emu.request("GET", VERSIONS)[1]
        self.emu.request("POST", "/__emulator/clock", {"advance_s": 3600})
        h1 = self.emu.request("GET", VERSIONS)[1]
        d0 = email.utils.parsedate_to_datetime(h0["date"])
        d1 = email.utils.parsedate_to_datetime(h1["date"])
        self.assertAlmostEqual((d1 - d0).total_seconds(), 3600, delta=5)
        self.emu.reset()
        h2 = self.emu.request("GET", VERSIONS)[1]
        self.assertAlmostEqual((email.utils.parsedate_to_datetime(h2["date"]) - d0).total_seconds(), 0, delta=5)

    def test_unknown_path_is_json_404(self):
        st, h, b = self.emu.request("GET", "/no/such/api")
        self.assertEqual(st, 404)
        self.assertTrue(h["content-type"].startswith("application/json"))
        self.assertEqual(b["error"], "not_found")


class ConfigTest(EmulatorTestCase):
    def test_get_post_unknown(self):
        st, _, cfg = self.emu.request("GET", "/__emulator/config")
        self.assertEqual((st, cfg), (200, common.DEFAULT_CONFIG))
        st, _, cfg = self.emu.config(salesforce_daily_limit=3, token_ttl_s=60)
        self.assertEqual(st, 200)
        self.assertEqual((cfg["salesforce_daily_limit"], cfg["token_ttl_s"]), (3, 60))
        self.assertEqual(cfg["hubspot_per_10s"], common.DEFAULT_CONFIG["hubspot_per_10s"])
        st, _, b = self.emu.config(no_such_knob=1)
        self.assertEqual(st, 400)
        self.assertIn("no_such_knob", b["error"])
        self.assertEqual(self.emu.request("GET", "/__emulator/config")[2]["salesforce_daily_limit"], 3)


class RequestLogTest(EmulatorTestCase):
    def test_log_entries_and_redaction(self):
        tok = token(self.emu)
        self.emu.request("GET", "/services/data/v62.0/sobjects/?x=1",
                         headers={"Authorization": "Bearer " + tok, "X-Custom": "kept"})
        self.emu.request("GET", "/__emulator/config")          # control: not logged
        log = self.emu.requests_log()
        self.assertEqual(len(log), 2)
        t, g = log
        self.assertEqual(set(g), {"seq", "time", "api", "method", "path", "query", "headers",
                                  "body", "status", "inflight", "done"})
        self.assertLess(t["seq"], g["seq"])
        # one request at a time: each alone in flight, done after it arrived
        self.assertEqual((t["inflight"], g["inflight"]), (1, 1))
        self.assertLessEqual(g["time"], g["done"])
        self.assertAlmostEqual(g["time"], time.time(), delta=30)
        self.assertEqual((t["api"], t["method"], t["path"], t["status"]),
                         ("salesforce", "POST", "/services/oauth2/token", 200))
        self.assertIn("client_secret=[redacted]", t["body"])
        self.assertIn("client_id=sync-client", t["body"])
        self.assertNotIn("sync-secret", json.dumps(log))
        self.assertEqual((g["path"], g["query"], g["status"]), ("/services/data/v62.0/sobjects/", "x=1", 200))
        self.assertEqual(g["headers"]["authorization"], "[redacted]")
        self.assertEqual(g["headers"]["x-custom"], "kept")
        self.assertNotIn(tok, json.dumps(log))

    def test_json_body_parsed_and_clear(self):
        tok = token(self.emu)
        self.emu.request("POST", "/services/data/v62.0/sobjects/Account", {"Name": "Logged"},
                         {"Authorization": "Bearer " + tok})
        log = self.emu.requests_log()
        self.assertEqual(log[-1]["body"], {"Name": "Logged"})
        self.assertEqual(log[-1]["status"], 201)
        self.assertEqual(self.emu.request("DELETE", "/__emulator/requests")[0], 200)
        self.assertEqual(self.emu.requests_log(), [])


class FaultTest(EmulatorTestCase):
    def test_status_with_retry_after_count(self):
        st, _, faults = self.emu.fault(api="salesforce", path="^/services/data/$", method="GET",
                                       status=503, retry_after=7, count=2)
        self.assertEqual(st, 200)
        self.assertEqual(len(faults), 1)
        for _ in range(2):
            st, h, b = self.emu.request("GET", VERSIONS)
            self.assertEqual(st, 503)
            self.assertEqual(h["retry-after"], "7")
            self.assertIsInstance(b, list)                    # Salesforce error body
            self.assertEqual(b[0]["errorCode"], "SERVER_UNAVAILABLE")
        st, h, _ = self.emu.request("GET", VERSIONS)
        self.assertEqual(st, 200)
        self.assertNotIn("retry-after", h)
        self.assertEqual(self.emu.request("GET", "/__emulator/faults")[2], [])
        self.assertEqual([e["status"] for e in self.emu.requests_log()], [503, 503, 200])

    def test_filters_method_path_api(self):
        self.emu.fault(path="^/services/data/$", method="POST", status=500)
        self.emu.fault(api="hubspot", status=500)
        self.emu.fault(path="/nomatch", status=500)
        self.assertEqual(self.emu.request("GET", VERSIONS)[0], 200)
        self.emu.request("DELETE", "/__emulator/faults")
        self.emu.fault(path="services/data", status=429)
        self.assertEqual(self.emu.request("GET", VERSIONS)[0], 429)

    def test_latency(self):
        self.emu.fault(path="^/services/data/$", latency_ms=400, count=1)
        t0 = time.time()
        st, _, _ = self.emu.request("GET", VERSIONS)
        self.assertEqual(st, 200)
        self.assertGreaterEqual(time.time() - t0, 0.39)
        t0 = time.time()
        self.emu.request("GET", VERSIONS)
        self.assertLess(time.time() - t0, 0.3)

    def test_latency_with_status(self):
        self.emu.fault(path="^/services/data/$", latency_ms=200, status=502, count=1)
        t0 = time.time()
        self.assertEqual(self.emu.request("GET", VERSIONS)[0], 502)
        self.assertGreaterEqual(time.time() - t0, 0.19)

    def test_timeout(self):
        self.emu.fault(path="^/services/data/$", kind="timeout", count=1)
        c = self.emu.connection(timeout=1)
        t0 = time.time()
        c.request("GET", VERSIONS)
        with self.assertRaises((socket.timeout, TimeoutError)):
            c.getresponse()
        self.assertGreaterEqual(time.time() - t0, 0.9)
        # the hanging connection does not block others
        self.assertEqual(self.emu.request("GET", VERSIONS)[0], 200)
        c.close()
        self.assertEqual(self.emu.requests_log()[0]["status"], "timeout")

    def test_reset(self):
        self.emu.fault(path="^/services/data/$", kind="reset", count=1)
        c = self.emu.connection(timeout=5)
        c.request("GET", VERSIONS)
        with self.assertRaises((ConnectionError, http.client.HTTPException)):
            resp = c.getresponse()
            resp.read()
        c.close()
        self.assertEqual(self.emu.requests_log()[0]["status"], "reset")
        self.assertEqual(self.emu.request("GET", VERSIONS)[0], 200)

    def test_malformed(self):
        self.emu.fault(path="^/services/data/$", kind="malformed", count=1)
        st, h, raw = self.emu.request("GET", VERSIONS, raw=True)
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("application/json"))
        self.assertTrue(raw)
        with self.assertRaises(ValueError):
            json.loads(raw)

    def test_malformed_process_applies_the_request(self):
        tok = token(self.emu)
        self.emu.fault(path="/sobjects/Account$", method="POST", kind="malformed",
                       process=True, count=1)
        st, _, raw = self.emu.request("POST", "/services/data/v62.0/sobjects/Account",
                                      {"Name": "Half"}, {"Authorization": "Bearer " + tok}, raw=True)
        self.assertEqual(st, 200)
        with self.assertRaises(ValueError):
            json.loads(raw)
        names = [r["Name"] for r in self.emu.request("GET", "/__emulator/records/salesforce/Account")[2]]
        self.assertEqual(names, ["Half"])

    def test_probability_seeded(self):
        def run():
            self.emu.request("DELETE", "/__emulator/faults")
            self.emu.fault(path="^/services/data/$", status=500, probability=0.5, seed=42)
            return [self.emu.request("GET", VERSIONS)[0] for _ in range(40)]
        a = run()
        self.assertTrue(0 < a.count(500) < 40, a)
        self.assertEqual(set(a), {200, 500})
        self.assertEqual(a, run())                      # same seed, same pattern

    def test_bad_fault_specs(self):
        for spec in ({}, {"kind": "explode"}, {"status": "x"}, {"kind": "status"},
                     {"status": 500, "path": "("}, {"status": 500, "bogus": 1},
                     {"status": 500, "probability": 2}):
            st, _, b = self.emu.fault(**spec)
            self.assertEqual(st, 400, spec)

    def test_clear(self):
        self.emu.fault(status=500)
        self.assertEqual(self.emu.request("DELETE", "/__emulator/faults")[0], 200)
        self.assertEqual(self.emu.request("GET", VERSIONS)[0], 200)


class KeepAliveTest(EmulatorTestCase):
    def test_one_connection_many_requests_fast(self):
        c = self.emu.connection()
        c.connect()
        port = c.sock.getsockname()[1]
        t0 = time.time()
        for _ in range(50):
            c.request("GET", VERSIONS)
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            self.assertEqual(c.sock.getsockname()[1], port)   # same TCP connection
        per = (time.time() - t0) / 50
        # Nagle + delayed ACK would make this ~40 ms per request
        self.assertLess(per, 0.02, "%.1f ms per keep-alive request" % (per * 1000))
        c.close()

    def test_post_with_body_keep_alive_and_expect_continue(self):
        tok = token(self.emu)
        c = self.emu.connection()
        body = json.dumps({"Name": "x" * 10})
        for _ in range(3):
            c.request("POST", "/services/data/v62.0/sobjects/Account", body,
                      {"Authorization": "Bearer " + tok, "Content-Type": "application/json",
                       "Expect": "100-continue"})
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 201)
        c.close()

    def test_connection_close_honoured(self):
        c = self.emu.connection()
        c.request("GET", VERSIONS, headers={"Connection": "close"})
        r = c.getresponse()
        r.read()
        self.assertEqual(r.getheader("Connection"), "close")
        c.close()


class InflightTest(unittest.TestCase):
    """Request.inflight and url_base, with a probe API in an in-process server."""

    def test_inflight_counts_concurrent_requests(self):
        emu = emumod.Emulator()
        seen = []

        class Probe(common.ApiBase):
            name = "probe"

            def owns(self, path):
                return path.startswith("/probe")

            def handle(self, req):
                seen.append((req.inflight, req.url_base))
                time.sleep(0.3)
                return common.json_response(200, {"inflight": req.inflight})

            def reset(self):
                pass
        emu.apis.insert(0, Probe(emu))
        emu.api_by_name["probe"] = emu.apis[0]
        emu.inflight["probe"] = 0
        srv = emumod.Server(("127.0.0.1", 0), emu)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        port = srv.server_address[1]
        out = []

        def call():
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/probe")
            out.append(json.loads(c.getresponse().read())["inflight"])
            c.close()
        threads = [threading.Thread(target=call) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        srv.shutdown()
        srv.server_close()
        self.assertEqual(max(out), 3)
        self.assertEqual(seen[0][1], "http://127.0.0.1:%d" % port)
        self.assertEqual(emu.inflight["probe"], 0)


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.tls = certs.make_tls(cls.tmp.name, "one")
        cls.other = certs.make_tls(cls.tmp.name, "two")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_https_with_throwaway_ca(self):
        with Emulator(tls=self.tls) as emu:
            self.assertTrue(emu.url.startswith("https://127.0.0.1:"))
            st, _, body = emu.request("GET", VERSIONS)
            self.assertEqual(st, 200)
            self.assertEqual(body[-1]["version"], "66.0")
            tok = token(emu)
            st, _, b = emu.request("GET", "/services/data/v62.0/sobjects/",
                                   headers={"Authorization": "Bearer " + tok})
            self.assertEqual(st, 200)
            # instance_url reflects the scheme
            st, _, t = emu.request("POST", "/services/oauth2/token", urllib.parse.urlencode({
                "grant_type": "client_credentials", "client_id": "sync-client",
                "client_secret": "sync-secret"}), FORM)
            self.assertTrue(t["instance_url"].startswith("https://"))

    def test_client_with_other_ca_fails_verification(self):
        with Emulator(tls=self.tls) as emu:
            ctx = ssl.create_default_context(cafile=self.other[2])
            c = http.client.HTTPSConnection(emu.host, emu.port, timeout=5, context=ctx)
            with self.assertRaises(ssl.SSLCertVerificationError):
                c.request("GET", VERSIONS)
            c.close()
            # the server survives the failed handshake
            self.assertEqual(emu.request("GET", VERSIONS)[0], 200)


class ProcessTest(unittest.TestCase):
    def test_sigterm_exits_cleanly_even_with_hanging_connection(self):
        emu = Emulator()
        emu.fault(path="^/services/data/$", kind="timeout")
        c = emu.connection(timeout=30)
        c.request("GET", VERSIONS)
        time.sleep(0.2)
        t0 = time.time()
        emu.proc.terminate()
        rc = emu.proc.wait(10)
        self.assertEqual(rc, 0)
        self.assertLess(time.time() - t0, 5)
        c.close()
        emu.stop()

    def test_refuses_non_loopback_host(self):
        p = subprocess.run([sys.executable, EMULATOR, "--host", "0.0.0.0", "--port", "0"],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("non-loopback", p.stderr)
        self.assertEqual(p.stdout, "")

    def test_first_line_and_port(self):
        with Emulator() as emu:
            self.assertRegex(emu.url, r"^http://127\.0\.0\.1:\d+$")
            self.assertNotEqual(emu.port, 0)


if __name__ == "__main__":
    unittest.main()
