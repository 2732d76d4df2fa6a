"""Fault kind "hostile": every case of the corpus, static and mutated."""
import json
import os
import sys
import urllib.parse

from util import EmulatorTestCase

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import hostile  # noqa: E402

QUERY = "/services/data/v59.0/query"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class HostileTest(EmulatorTestCase):
    def setUp(self):
        super().setUp()
        st, _, body = self.emu.request("POST", "/services/oauth2/token", urllib.parse.urlencode({
            "grant_type": "client_credentials", "client_id": "sync-client",
            "client_secret": "sync-secret"}), FORM)
        self.assertEqual(st, 200, body)
        self.auth = {"Authorization": "Bearer " + body["access_token"]}
        self.emu.seed("salesforce", "Contact", [{"LastName": "Ada", "Email": "ada@x.org"}])
        self.q = QUERY + "?q=" + urllib.parse.quote("SELECT Id, LastName FROM Contact")

    def hostile(self, case, **kw):
        self.emu.request("DELETE", "/__emulator/faults")
        st, _, body = self.emu.fault(path="/query$", kind="hostile", case=case, **kw)
        self.assertEqual(st, 200, body)
        return self.emu.request("GET", self.q, headers=self.auth, raw=True)

    def test_lists_the_corpus(self):
        st, _, body = self.emu.request("GET", "/__emulator/hostile")
        self.assertEqual(st, 200)
        self.assertEqual([c["case"] for c in body], list(hostile.CASES))
        self.assertTrue(all(c["description"] for c in body))

    def test_bad_specs(self):
        for spec in ({"kind": "hostile"}, {"kind": "hostile", "case": "nope"},
                     {"status": 500, "case": "nulls"}):
            st, _, _ = self.emu.request("POST", "/__emulator/faults", spec)
            self.assertEqual(st, 400, spec)

    def test_static_cases(self):
        st, h, raw = self.hostile("empty")
        self.assertEqual((st, raw), (200, b""))
        st, h, raw = self.hostile("html")
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("text/html"))
        self.assertIn(b"<html>", raw)
        self.assertEqual(self.hostile("html_502")[0], 502)
        st, _, raw = self.hostile("error_body")
        self.assertEqual(st, 200)
        self.assertIn("errorCode", json.loads(raw)[0])      # Salesforce's own error shape
        st, _, raw = self.hostile("deep_nesting")
        self.assertEqual(raw, b"[" * hostile.DEEP + b"]" * hostile.DEEP)
        st, _, raw = self.hostile("huge_string")
        self.assertEqual(len(raw), hostile.HUGE_STRING + 2)
        self.assertEqual(self.hostile("root_null")[2], b"null")
        self.assertEqual(self.hostile("root_number")[2], b"1e400000")
        self.assertEqual(json.loads(self.hostile("root_string")[2]), "ok")

    def test_static_cases_apply_nothing(self):
        self.emu.fault(path="/sobjects/Contact$", kind="hostile", case="html")
        st, _, _ = self.emu.request("POST", "/services/data/v59.0/sobjects/Contact",
                                    {"LastName": "Nobody"}, self.auth, raw=True)
        self.assertEqual(st, 200)
        names = [r["LastName"] for r in self.emu.request(
            "GET", "/__emulator/records/salesforce/Contact")[2]]
        self.assertEqual(names, ["Ada"])

    def test_mutations(self):
        st, _, raw = self.hostile("truncated")
        with self.assertRaises(ValueError):
            json.loads(raw)
        self.assertEqual(json.loads(self.hostile("root_flip")[2]), [])
        doc = json.loads(self.hostile("missing_fields")[2])
        self.assertEqual(doc["records"], [{}])
        self.assertEqual(json.loads(self.hostile("drop_root_keys")[2]), {})
        doc = json.loads(self.hostile("nulls")[2])
        self.assertEqual(set(doc.values()), {None})
        doc = json.loads(self.hostile("wrong_types")[2])
        self.assertEqual(doc["records"], "array")
        self.assertIsInstance(doc["totalSize"], str)
        raw = self.hostile("huge_numbers")[2]
        self.assertIn(b'"totalSize":1e400000', raw)
        raw = self.hostile("huge_ints")[2]
        self.assertIn(b'"totalSize":123456789012345678901234567890', raw)
        raw = self.hostile("invalid_utf8")[2]
        self.assertIn(b"\xff\xfe", raw)
        with self.assertRaises(UnicodeDecodeError):
            raw.decode("utf-8")
        doc = json.loads(self.hostile("nul")[2])
        self.assertIn("\u0000", doc["records"][0]["LastName"])
        doc = json.loads(self.hostile("long_strings")[2])
        self.assertEqual(len(doc["records"][0]["LastName"]), hostile.LONG_STRING)
        doc = json.loads(self.hostile("hostile_ids")[2])
        self.assertEqual(doc["records"][0]["Id"], "001,002/../x?y=1&z")

    def test_mutation_applies_the_request(self):
        self.emu.fault(path="/sobjects/Contact$", kind="hostile", case="nulls")
        st, _, raw = self.emu.request("POST", "/services/data/v59.0/sobjects/Contact",
                                      {"LastName": "Written"}, self.auth, raw=True)
        self.assertEqual(st, 201)
        self.assertEqual(json.loads(raw)["id"], None)
        names = sorted(r["LastName"] for r in self.emu.request(
            "GET", "/__emulator/records/salesforce/Contact")[2])
        self.assertEqual(names, ["Ada", "Written"])

    def test_cleared_fault_serves_normally(self):
        self.hostile("html")
        self.emu.request("DELETE", "/__emulator/faults")
        st, _, body = self.emu.request("GET", self.q, headers=self.auth)
        self.assertEqual(st, 200)
        self.assertEqual(body["records"][0]["LastName"], "Ada")
