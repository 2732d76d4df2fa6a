"""Fidelity: every HubSpot fixture under fixtures/hubspot is replayed against
the emulator (same method, path and body; records seeded so the request means
the same thing; recorded ids replaced by the emulator's) and the answer must
have the same status, the same JSON shape (util.shape) and the same
X-HubSpot-RateLimit-* header names.  Property *sets* differ between portals,
so each `properties` object is compared as "a dict of strings/nulls" (plus
exact key sets where the request fixes them).  Where the recording and the
emulator differ on purpose the test says so and README-hubspot.md lists it."""
import atexit
import copy
import json
import os
import tempfile
import unittest
import urllib.parse

from util import SHARED_FIXTURES, EmulatorTestCase, fixture_files, load_fixture, shape

HS = "hubspot/"
CONN = HS + "connectors/providers__hubspot__test__"
NT = HS + "integration-templates/integrations__hubspot__tests__"
GR = HS + "grouparoo/DERIVED__export-records-"
H = {"Authorization": "Bearer pat-sync-test"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

# The portal the grouparoo recordings ran against: three custom contact
# properties and the custom object 2-3604285.
SEED = {"hubspot": {
    "properties": {"contacts": [{"name": "text_field", "type": "string"},
                                {"name": "number_field", "type": "number"},
                                {"name": "date_field", "type": "date"}]},
    "objects": [{"objectTypeId": "2-3604285", "name": "grouparoo_object",
                 "primaryDisplayProperty": "grouparoo_object_property",
                 "properties": [
                     {"name": "grouparoo_object_property", "type": "string",
                      "hasUniqueValue": True},
                     {"name": "first_name", "type": "string"},
                     {"name": "last_name", "type": "string"},
                     {"name": "text_field", "type": "string"},
                     {"name": "number_field", "type": "number"},
                     {"name": "date_field", "type": "date"}]}]}}
_fd, SEED_FILE = tempfile.mkstemp(prefix="hs-fidelity-seed-", suffix=".json")
with os.fdopen(_fd, "w") as _f:
    json.dump(SEED, _f)
atexit.register(lambda: os.path.exists(SEED_FILE) and os.unlink(SEED_FILE))


def hubspot_fixtures():
    return fixture_files("hubspot")


def norm(value, drop_url=False):
    """Replace each record's `properties` by a marker (after checking it is a
    dict of strings/nulls) and optionally drop `url` (absent in 2022
    recordings and in hand-written fixtures)."""
    if isinstance(value, list):
        return [norm(v, drop_url) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for k, v in value.items():
        if k == "url" and drop_url:
            continue
        if k == "properties" and isinstance(v, dict):
            bad = {pk: pv for pk, pv in v.items() if pv is not None and not isinstance(pv, str)}
            assert not bad, "non-string property values: %r" % bad
            out[k] = "PROPERTIES"
            continue
        out[k] = norm(v, drop_url)
    return out


def rl_names(headers):
    return sorted(k.lower() for k in headers if k.lower().startswith("x-hubspot-ratelimit"))


def nango(name):
    """(METHOD, path, entry) of a recorded integration-templates interaction."""
    d = load_fixture(NT + name)
    for method, paths in d["api"].items():
        for path, entry in paths.items():
            return method.upper(), path, entry


class FidelityCase(EmulatorTestCase):
    emulator_args = ("--seed", SEED_FILE)

    def req(self, method, path, body=None, headers=H):
        return self.emu.request(method, path, body, headers)

    def seed(self, obj, recs):
        return self.emu.seed("hubspot", obj, recs)["ids"]

    def clock(self, s):
        self.emu.request("POST", "/__emulator/clock", {"advance_s": s})

    def same_shape(self, got, rec, drop_url=False):
        self.assertEqual(shape(norm(got, drop_url)), shape(norm(rec, drop_url)))

    def without_cid(self, body):
        b = dict(body)
        b.pop("correlationId", None)
        return b


class TestCoverage(unittest.TestCase):
    def test_every_fixture_has_a_test(self):
        """README-hubspot.md's table lists each fixture; this keeps it honest."""
        here = os.path.dirname(os.path.abspath(__file__))
        src = open(os.path.abspath(__file__), encoding="utf-8").read()
        readme = open(os.path.join(os.path.dirname(here), "README-hubspot.md"),
                      encoding="utf-8").read()
        files = hubspot_fixtures()
        # 11 in the project's copy (MIT), 9 more (Elastic-2.0) in the shared ones
        self.assertEqual(len(files), 20 if SHARED_FIXTURES else 11)
        for f in files:
            base = os.path.basename(f)
            stem = base.split("__test__")[-1].split("__tests__")[-1].split("DERIVED__")[-1]
            stem = stem.replace(".test.json", "").replace(".interactions.json", "").replace(
                ".json", "")
            self.assertTrue(stem in src, "no test names %s" % f)
            self.assertTrue(stem in readme, "README-hubspot.md does not list %s" % f)


class TestConnectorsFixtures(FidelityCase):
    """amp-labs/connectors recordings (bodies only; statuses per MANIFEST)."""

    def test_batch__create__contacts__err_conflict(self):
        rec = load_fixture(CONN + "batch__create__contacts__err-conflict.json")
        ids = self.seed("contacts", [{"email": "lily@example.com"}])
        st, _, body = self.req("POST", "/crm/v3/objects/contacts/batch/create", {"inputs": [
            {"properties": {"email": "lily@example.com", "firstname": "Lily"}}]})
        self.assertEqual(st, 409)
        self.same_shape(body, rec)
        self.assertEqual(body["category"], rec["category"])
        self.assertTrue(body["message"].startswith(rec["message"]))
        # deliberate: we name the existing id, as the 207 variant of the message does
        self.assertEqual(body["message"], "Contact already exists. Existing ID: " + ids[0])

    def test_batch__create__contacts__err_many_invalid_properties(self):
        rec = load_fixture(CONN + "batch__create__contacts__err-many-invalid-properties.json")
        st, _, body = self.req("POST", "/crm/v3/objects/contacts/batch/create", {"inputs": [
            {"properties": {"first000name": "A", "last000name": "B"}},
            {"properties": {"first000name": "C", "last000name": "D"}}]})
        self.assertEqual(st, 400)
        self.same_shape(body, rec)
        self.assertEqual(body["category"], "VALIDATION_ERROR")
        prefix = "Property values were not valid: "
        self.assertTrue(body["message"].startswith(prefix))
        # the embedded JSON list is identical to the recording's
        self.assertEqual(json.loads(body["message"][len(prefix):]),
                         json.loads(rec["message"][len(prefix):]))
        # the recording's errors[] stops at 3 of the 4 problems (edited); we list all 4
        self.assertEqual(body["errors"][:3], rec["errors"])
        self.assertEqual(len(body["errors"]), 4)
        self.assertEqual(self.req("GET", "/crm/v3/objects/contacts")[2]["results"], [])

    def test_batch__create__contacts__err_partial_success(self):
        rec = load_fixture(CONN + "batch__create__contacts__err-partial-success.json")
        ids = self.seed("contacts", [{"email": "siena@example.com"}])
        st, _, body = self.req("POST", "/crm/v3/objects/contacts/batch/create", {"inputs": [
            {"properties": {"email": "siena@example.com"}, "objectWriteTraceId": "0"},
            {"properties": {"email": "siena.dyer@hubspot.com", "firstname": "Siena",
                            "lastname": "Dyer"}}]})
        self.assertEqual(st, 207)
        self.same_shape(body, rec)
        self.assertEqual(body["numErrors"], 1)
        err = body["errors"][0]
        self.assertEqual(sorted(err), sorted(rec["errors"][0]))
        self.assertEqual(err["category"], "CONFLICT")
        self.assertEqual(err["message"], "Contact already exists. Existing ID: " + ids[0])
        self.assertEqual(err["context"], {"objectWriteTraceId": ["0"], "existingId": [ids[0]]})
        r = body["results"][0]
        for k, v in rec["results"][0]["properties"].items():
            if k != "createdate":
                self.assertEqual(r["properties"][k], v)
        self.assertEqual(r["properties"]["createdate"], r["createdAt"])

    def test_batch__create__contacts__success(self):
        rec = load_fixture(CONN + "batch__create__contacts__success.json")
        inputs = [{"properties": {k: r["properties"][k] for k in ("email", "firstname",
                                                                   "lastname")}}
                  for r in rec["results"]]
        st, _, body = self.req("POST", "/crm/v3/objects/contacts/batch/create",
                               {"inputs": inputs})
        self.assertEqual(st, 201)      # not in the file; the spec and grouparoo say 201
        self.same_shape(body, rec)
        for r in body["results"]:
            p = r["properties"]
            self.assertEqual(p["hs_object_id"], r["id"])
            self.assertEqual(p["lastmodifieddate"], r["updatedAt"])
            self.assertEqual(p["createdate"], r["createdAt"])
            self.assertEqual(p["hs_email_domain"], "hubspot.com")
            self.assertTrue(r["url"].endswith("/record/0-1/" + r["id"]))
        # every property the recording shows for a fresh contact that the emulator
        # models is present
        rec_keys = set(rec["results"][0]["properties"])
        got_keys = set(body["results"][0]["properties"])
        for k in ("createdate", "email", "firstname", "lastname", "hs_object_id",
                  "lastmodifieddate", "hs_email_domain"):
            self.assertIn(k, rec_keys & got_keys)

    def test_batch__update__contacts__err_duplicate_ids(self):
        rec = load_fixture(CONN + "batch__update__contacts__err-duplicate-ids.json")
        st, _, body = self.req("POST", "/crm/v3/objects/contacts/batch/update", {"inputs": [
            {"id": "123456", "properties": {"firstname": "a"}},
            {"id": "123456", "properties": {"firstname": "b"}}]})
        self.assertEqual(st, 400)
        self.same_shape(body, rec)
        self.assertEqual(self.without_cid(body), self.without_cid(rec))

    def test_batch__update__contacts__err_partial_success(self):
        rec = load_fixture(CONN + "batch__update__contacts__err-partial-success.json")
        ids = self.seed("contacts", [{"firstname": "Siena", "lastname": "Dyer"}])
        st, _, body = self.req("POST", "/crm/v3/objects/contacts/batch/update", {"inputs": [
            {"id": ids[0], "properties": {"firstname": "Siena (updated)",
                                          "lastname": "Dyer (updated)"}},
            {"id": "unknownIdentifier888", "properties": {"firstname": "x"}}]})
        self.assertEqual(st, 207)
        self.same_shape(body, rec)
        self.assertEqual(body["errors"], rec["errors"])
        self.assertEqual(body["numErrors"], 1)
        p = body["results"][0]["properties"]
        self.assertEqual((p["firstname"], p["lastname"]), ("Siena (updated)", "Dyer (updated)"))

    def test_search__contacts__1_first_page_and_2_second_page(self):
        p1 = load_fixture(CONN + "search__contacts__1-first-page.json")
        p2 = load_fixture(CONN + "search__contacts__2-second-page.json")
        self.seed("contacts", [
            {"email": "johnnie77@hotmail.com", "firstname": "Johnnie", "lastname": "Heller"},
            {"email": "kaseyweissnat@volkman.biz", "firstname": "Johnnie",
             "lastname": "Conroy", "phone": "9199767082"}])
        q = {"filterGroups": [{"filters": [{"propertyName": "firstname", "operator": "EQ",
                                            "value": "Johnnie"}]}],
             "properties": ["company", "email", "firstname", "lastname", "phone", "website"],
             "limit": 1}
        st, hd, b1 = self.req("POST", "/crm/v3/objects/contacts/search", q)
        self.assertEqual(st, 200)
        self.same_shape(b1, p1)
        self.assertEqual(sorted(b1["results"][0]["properties"]),
                         sorted(p1["results"][0]["properties"]))
        self.assertIsNone(b1["results"][0]["properties"]["company"])
        self.assertEqual(rl_names(hd), ["x-hubspot-ratelimit-daily",
                                        "x-hubspot-ratelimit-daily-remaining"])
        q["after"] = b1["paging"]["next"]["after"]
        st, _, b2 = self.req("POST", "/crm/v3/objects/contacts/search", q)
        self.assertEqual(st, 200)
        self.same_shape(b2, p2)
        self.assertNotIn("paging", b2)
        self.assertEqual(b1["total"], b2["total"])
        self.assertEqual(b2["results"][0]["properties"]["phone"], "9199767082")

    def test_search__error_invalid_object(self):
        rec = load_fixture(CONN + "search__error-invalid-object.json")
        st, _, body = self.req("POST", "/crm/v3/objects/butterflies/search", {})
        self.assertEqual(st, 400)     # status not in the recording
        self.same_shape(body, rec)
        self.assertEqual(self.without_cid(body), self.without_cid(rec))


class TestNangoFixtures(FidelityCase):
    """NangoHQ/integration-templates recordings (real, via the Nango proxy,
    which drops most HubSpot headers)."""

    def test_batch_create_companies(self):
        method, path, e = nango("batch-create-companies.test.json")
        st, _, body = self.req(method, path, e["request"]["data"])
        # deliberate: recorded 200, we answer the spec's 201 (grouparoo also saw 201)
        self.assertEqual((e["status"], st), (200, 201))
        self.same_shape(body, e["response"])
        got = body["results"][0]["properties"]
        for k, v in e["request"]["data"]["inputs"][0]["properties"].items():
            self.assertEqual(got[k], v)
        # HubSpot fills website from domain
        self.assertEqual(got["website"],
                         e["response"]["results"][0]["properties"]["website"])
        self.assertEqual(got["hs_lastmodifieddate"], body["results"][0]["updatedAt"])
        self.assertTrue(body["results"][0]["url"].split("/")[-2] == "0-2")

    def test_batch_update_companies(self):
        method, path, e = nango("batch-update-companies.test.json")
        cid = self.seed("companies", [{"name": "Test Company 2", "domain": "test2.com"}])[0]
        data = copy.deepcopy(e["request"]["data"])
        data["inputs"][0]["id"] = cid
        self.clock(2)
        st, _, body = self.req(method, path, data)
        self.assertEqual(st, e["status"])
        self.same_shape(body, e["response"])
        r = body["results"][0]
        self.assertEqual(r["properties"]["name"], "Test Company 2 - Batch Updated")
        self.assertEqual(r["properties"]["domain"], "test2.com")
        self.assertGreater(r["updatedAt"], r["createdAt"])

    def test_contacts(self):
        method, path, e = nango("contacts.test.json")
        self.seed("contacts", [{"email": "c%d@example.com" % i, "firstname": "F",
                                "company": "Acme"} for i in range(3)])
        st, _, tok = self.emu.request(
            "POST", "/oauth/v1/token", urllib.parse.urlencode({
                "grant_type": "refresh_token", "client_id": "sync-hs-client",
                "client_secret": "sync-hs-secret", "refresh_token": "sync-hs-refresh"}), FORM)
        self.assertEqual(st, 200)
        st, hd, body = self.req(method, path + "?" + urllib.parse.urlencode(
            e["request"]["params"]), headers={"Authorization": "Bearer " + tok["access_token"]})
        self.assertEqual(st, e["status"])
        self.same_shape(body, e["response"])
        self.assertEqual(sorted(body["results"][0]["properties"]),
                         sorted(e["response"]["results"][0]["properties"]))
        # an OAuth app: no daily pair, the five ten-secondly headers
        self.assertEqual(rl_names(hd), rl_names(e["headers"]))
        self.assertEqual(hd["x-hubspot-ratelimit-interval-milliseconds"],
                         e["headers"]["x-hubspot-ratelimit-interval-milliseconds"])
        self.assertTrue(hd["content-type"].lower().startswith("application/json"))

    def test_create_association(self):
        method, path, e = nango("create-association.test.json")
        c = self.seed("contacts", [{"email": "a@example.com"}])[0]
        co = self.seed("companies", [{"name": "Acme"}])[0]
        data = copy.deepcopy(e["request"]["data"])
        data["inputs"][0]["from"]["id"] = c
        data["inputs"][0]["to"]["id"] = co
        st, _, body = self.req(method, path, data)
        self.assertEqual(st, e["status"])          # 200 as recorded (the spec says 201)
        self.same_shape(body, e["response"])
        self.assertEqual(sorted((r["from"]["id"], r["to"]["id"], r["type"])
                                for r in body["results"]),
                         sorted([(co, c, "company_to_contact"), (c, co, "contact_to_company")]))

    def test_create_contact(self):
        method, path, e = nango("create-contact.test.json")
        st, _, body = self.req(method, path, e["request"]["data"])
        # deliberate: recorded 200, we answer the spec's 201
        self.assertEqual((e["status"], st), (200, 201))
        self.same_shape(body, e["response"])
        for k, v in e["request"]["data"]["properties"].items():
            self.assertEqual(body["properties"][k], v)
        self.assertEqual(body["properties"]["hs_email_domain"], "example.com")

    def test_delete_contact(self):
        method, path, e = nango("delete-contact.test.json")
        c = self.seed("contacts", [{"email": "a@example.com"}])[0]
        st, _, body = self.emu.request(method, path.rsplit("/", 1)[0] + "/" + c, None, H,
                                       raw=True)
        self.assertEqual((st, body), (e["status"], b""))
        self.assertEqual(self.req("GET", "/crm/v3/objects/contacts/" + c)[0], 404)

    def test_search_deals(self):
        method, path, e = nango("search-deals.test.json")
        self.seed("deals", [{"dealname": "Deal %d" % i, "amount": str(1000 * i),
                             "dealstage": "appointmentscheduled", "pipeline": "default"}
                            for i in range(7)])
        st, hd, body = self.req(method, path, e["request"]["data"])
        self.assertEqual(st, e["status"])
        self.same_shape(body, e["response"])
        self.assertEqual(body["paging"], e["response"]["paging"])     # {"next":{"after":"5"}}
        self.assertEqual(sorted(body["results"][0]["properties"]),
                         sorted(e["response"]["results"][0]["properties"]))
        self.assertEqual(body["total"], 7)

    def test_update_contact_clear_fields(self):
        method, path, e = nango("update-contact-clear-fields.test.json")
        c = self.seed("contacts", [{"email": "a@example.com", "firstname": "Old"}])[0]
        st, _, body = self.req(method, path.rsplit("/", 1)[0] + "/" + c, e["request"]["data"])
        self.assertEqual(st, e["status"])
        # the fixture is hand-written (no url); compare without it
        self.same_shape(body, e["response"], drop_url=True)
        self.assertEqual(body["properties"]["email"], "")
        self.assertEqual(body["properties"]["firstname"], "Updated")
        # a later read shows the cleared value as null
        _, _, got = self.req("GET", "/crm/v3/objects/contacts/%s?properties=email" % c)
        self.assertIn(got["properties"]["email"], (None, ""))

    def test_update_contact(self):
        method, path, e = nango("update-contact.test.json")
        c = self.seed("contacts", [{"email": "a@example.com", "firstname": "Old"}])[0]
        self.clock(1)
        data = {"properties": {"firstname": "Updated", "lastname": "Contact"}}
        st, _, body = self.req(method, path.rsplit("/", 1)[0] + "/" + c, data)
        self.assertEqual(st, e["status"])
        self.same_shape(body, e["response"])
        self.assertEqual(body["properties"]["lastmodifieddate"], body["updatedAt"])
        self.assertGreater(body["updatedAt"], body["createdAt"])


class TestGrouparooFixtures(FidelityCase):
    """grouparoo nock recordings (real HubSpot, Feb 2022): replayed in order.
    The portal's index lag is emulated with hubspot_search_lag_ms=5000 so the
    recorded "total 1, results []" answers (archived but still indexed) come
    out the same; search's own limit gives the recorded 429."""

    def replay(self, fixture, ids_map, before=None):
        d = load_fixture(fixture)
        for n, it in enumerate(d["interactions"]):
            if before:
                before(n, it)
            body = copy.deepcopy(it["requestBody"]) if it["requestBody"] else None
            text = json.dumps(body)
            for old, new in ids_map.items():
                text = text.replace('"%s"' % old, '"%s"' % new)
            body = json.loads(text)
            st, hd, got = self.req(it["method"], it["path"], body)
            with self.subTest(interaction=n, path=it["path"]):
                self.assertEqual(st, it["status"], got)
                if it["responseBody"] in ("", None):
                    self.assertIsNone(got)
                else:
                    self.same_shape(got, it["responseBody"], drop_url=True)
                self.assertEqual(rl_names(hd), rl_names(it["responseHeaders"]))
            yield n, it, got

    def test_export_records_contact(self):
        """grouparoo/DERIVED__export-records-contact.interactions.json"""
        self.emu.config(hubspot_search_lag_ms=5000)
        john = self.seed("contacts", [{"email": "grouparoo@demo.com", "firstname": "John"}])[0]
        self.clock(6)
        ids = {"286101": john}

        def before(n, it):
            if n == 4:       # the recorded 429: a tighter per-second search limit
                self.emu.config(hubspot_search_per_s=2)
            if n == 5:
                self.emu.config(hubspot_search_per_s=5)
                self.clock(6)
            if n == 6:
                self.clock(6)     # the new contact reaches the index
        for n, it, got in self.replay(GR + "contact.interactions.json", ids, before):
            if n == 0:
                self.assertEqual(sorted(got["results"][0]["properties"]),
                                 sorted(it["responseBody"]["results"][0]["properties"]))
            if n in (2, 3):
                self.assertEqual((got["total"], got["results"]), (1, []))
            if n == 4:
                self.assertEqual(self.without_cid(got), self.without_cid(it["responseBody"]))
            if n == 5:
                ids["290201"] = got["results"][0]["id"]
            if n == 9:
                ids["290251"] = got["results"][0]["id"]
            if n == 10:
                p = got["results"][0]["properties"]
                self.assertEqual((p["lastname"], p["number_field"]), ("", ""))

    def test_export_records_custom_object(self):
        """grouparoo/DERIVED__export-records-custom-object.interactions.json"""
        self.emu.config(hubspot_search_lag_ms=5000)
        ids = {}

        def before(n, it):
            if n == 7:
                self.clock(6)     # both records are indexed before anything is archived
                self.emu.config(hubspot_search_per_s=1)
                self.req("POST", "/crm/v3/objects/2-3604285/search", {})
            if n == 8:
                self.emu.config(hubspot_search_per_s=5)
                self.clock(1.5)
            if n == 10:
                # the recording archives records made in interactions that were
                # not kept; archive John with them so the next search sees two
                # archived-but-indexed records
                ids["860262066"] = ids["860247707"]
        for n, it, got in self.replay(GR + "custom-object.interactions.json", ids, before):
            if n == 3:
                ids["860247707"] = got["results"][0]["id"]
                p = got["results"][0]["properties"]
                self.assertEqual(sorted(p), sorted(it["responseBody"]["results"][0]
                                                   ["properties"]))
            if n == 5:
                ids["859979604"] = got["results"][0]["id"]
            if n == 6:
                p = got["results"][0]["properties"]
                self.assertEqual((p["last_name"], p["number_field"]), ("", ""))
            if n == 9:
                self.assertEqual((got["total"], got["results"]), (1, []))
            if n == 11:
                self.assertEqual((got["total"], got["results"]), (2, []))


if __name__ == "__main__":
    unittest.main()
