"""HubSpot CRM v3 emulation: endpoints, errors, limits, paging, auth."""
import unittest
import urllib.parse

from util import EmulatorTestCase

H = {"Authorization": "Bearer pat-sync-test"}
OBJ = "/crm/v3/objects"


class HubSpotCase(EmulatorTestCase):
    def req(self, method, path, body=None, headers=H):
        return self.emu.request(method, path, body, headers)

    def create_contacts(self, n, prefix="c"):
        recs = [{"email": "%s%d@example.com" % (prefix, i), "firstname": "F%d" % i,
                 "lastname": "L%d" % i} for i in range(n)]
        return self.emu.seed("hubspot", "contacts", recs)["ids"]


class TestAuth(HubSpotCase):
    def test_private_app_token(self):
        st, hd, body = self.req("GET", OBJ + "/contacts")
        self.assertEqual(st, 200)
        self.assertEqual(body, {"results": []})

    def test_missing_and_bad_token(self):
        for hdrs in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eDp5"}):
            st, hd, body = self.req("GET", OBJ + "/contacts", headers=hdrs)
            self.assertEqual(st, 401)
            self.assertEqual(body["status"], "error")
            self.assertEqual(body["category"], "INVALID_AUTHENTICATION")
            self.assertTrue(body["message"].startswith("Authentication credentials not found"))
            self.assertRegex(body["correlationId"], r"^[0-9a-f-]{36}$")
            self.assertNotIn("x-hubspot-ratelimit-max", hd)

    def refresh(self, **over):
        form = {"grant_type": "refresh_token", "client_id": "sync-hs-client",
                "client_secret": "sync-hs-secret", "refresh_token": "sync-hs-refresh"}
        form.update(over)
        return self.emu.request("POST", "/oauth/v1/token", urllib.parse.urlencode(form),
                                {"Content-Type": "application/x-www-form-urlencoded"})

    def test_refresh_and_expiry(self):
        self.emu.config(token_ttl_s=1800)
        st, _, tok = self.refresh()
        self.assertEqual(st, 200)
        self.assertEqual(tok["token_type"], "bearer")
        self.assertEqual(tok["refresh_token"], "sync-hs-refresh")
        self.assertEqual(tok["expires_in"], 1800)
        auth = {"Authorization": "Bearer " + tok["access_token"]}
        st, hd, _ = self.req("GET", OBJ + "/contacts", headers=auth)
        self.assertEqual(st, 200)
        # OAuth apps get no daily headers (private apps only)
        self.assertNotIn("x-hubspot-ratelimit-daily", hd)
        self.assertIn("x-hubspot-ratelimit-max", hd)
        self.emu.request("POST", "/__emulator/clock", {"advance_s": 1801})
        st, _, body = self.req("GET", OBJ + "/contacts", headers=auth)
        self.assertEqual(st, 401)
        self.assertEqual(body["category"], "EXPIRED_AUTHENTICATION")
        self.assertIn("expired", body["message"])
        # a new refresh works again
        st, _, tok2 = self.refresh()
        self.assertEqual(st, 200)
        self.assertNotEqual(tok2["access_token"], tok["access_token"])
        st, _, _ = self.req("GET", OBJ + "/contacts",
                            headers={"Authorization": "Bearer " + tok2["access_token"]})
        self.assertEqual(st, 200)

    def test_refresh_errors(self):
        for over, status in (({"client_secret": "x"}, "BAD_CLIENT_SECRET"),
                             ({"client_id": "x"}, "BAD_CLIENT_ID"),
                             ({"refresh_token": "x"}, "BAD_REFRESH_TOKEN"),
                             ({"grant_type": "password"}, "BAD_GRANT_TYPE")):
            st, _, body = self.refresh(**over)
            self.assertEqual(st, 400, over)
            self.assertEqual(body["status"], status)


class TestObjects(HubSpotCase):
    def test_create_get_patch_delete(self):
        st, _, rec = self.req("POST", OBJ + "/contacts", {"properties": {
            "email": "Ann@Example.com", "firstname": "Ann", "phone": "+1 555"}})
        self.assertEqual(st, 201)
        rid = rec["id"]
        self.assertTrue(rid.isdigit())
        p = rec["properties"]
        self.assertEqual(p["hs_object_id"], rid)
        self.assertEqual(p["createdate"], rec["createdAt"])
        self.assertEqual(p["lastmodifieddate"], rec["updatedAt"])
        self.assertRegex(rec["createdAt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertFalse(rec["archived"])
        self.assertTrue(all(isinstance(v, str) for v in p.values()))
        st, _, got = self.req("GET", OBJ + "/contacts/%s?properties=email,phone,nosuch" % rid)
        self.assertEqual(st, 200)
        # explicit properties: unknown ones dropped, stamps and id always added;
        # emails are stored lower-cased, as HubSpot does
        self.assertEqual(sorted(got["properties"]), ["createdate", "email", "hs_object_id",
                                                     "lastmodifieddate", "phone"])
        self.assertEqual(got["properties"]["email"], "ann@example.com")
        self.assertEqual(got["properties"]["phone"], "+1 555")
        # default property set
        st, _, got = self.req("GET", OBJ + "/contacts/" + rid)
        self.assertEqual(sorted(got["properties"]), sorted(
            ["createdate", "email", "firstname", "lastname", "hs_object_id", "lastmodifieddate"]))
        self.assertIsNone(got["properties"]["lastname"])
        # idProperty=email
        st, _, got = self.req("GET", OBJ + "/contacts/ann@example.com?idProperty=email")
        self.assertEqual((st, got["id"]), (200, rid))
        self.emu.request("POST", "/__emulator/clock", {"advance_s": 5})
        st, _, upd = self.req("PATCH", OBJ + "/contacts/" + rid,
                              {"properties": {"firstname": "Anna", "phone": ""}})
        self.assertEqual(st, 200)
        self.assertEqual(upd["properties"]["firstname"], "Anna")
        self.assertEqual(upd["properties"]["phone"], "")
        self.assertGreater(upd["updatedAt"], rec["updatedAt"])
        self.assertEqual(upd["createdAt"], rec["createdAt"])
        self.assertEqual(upd["properties"]["lastmodifieddate"], upd["updatedAt"])
        st, _, body = self.req("DELETE", OBJ + "/contacts/" + rid)
        self.assertEqual((st, body), (204, None))
        st, _, body = self.req("GET", OBJ + "/contacts/" + rid)
        self.assertEqual(st, 404)
        self.assertEqual(body["category"], "OBJECT_NOT_FOUND")
        st, _, body = self.req("GET", OBJ + "/contacts/%s?archived=true" % rid)
        self.assertEqual(st, 200)
        self.assertTrue(body["archived"])
        self.assertIn("archivedAt", body)
        # deleting again is a no-op 204
        self.assertEqual(self.req("DELETE", OBJ + "/contacts/" + rid)[0], 204)

    def test_companies_and_deals_use_hs_lastmodifieddate(self):
        st, _, c = self.req("POST", OBJ + "/companies", {"properties": {
            "name": "Acme", "domain": "acme.com", "industry": "COMPUTER_SOFTWARE"}})
        self.assertEqual(st, 201)
        self.assertEqual(c["properties"]["website"], "acme.com")   # filled from domain
        self.assertEqual(c["properties"]["hs_lastmodifieddate"], c["updatedAt"])
        self.assertNotIn("lastmodifieddate", c["properties"])
        st, _, d = self.req("POST", OBJ + "/deals", {"properties": {
            "dealname": "Big", "amount": 1500.5, "dealstage": "closedwon",
            "closedate": "1714521600000"}})
        self.assertEqual(st, 201)
        self.assertEqual(d["properties"]["amount"], "1500.5")
        self.assertEqual(d["properties"]["closedate"], "2024-05-01T00:00:00.000Z")
        self.assertEqual(d["url"].split("/")[-2], "0-3")

    def test_create_errors(self):
        st, _, body = self.req("POST", OBJ + "/contacts", {"properties": {"nosuch": "x"}})
        self.assertEqual(st, 400)
        self.assertEqual(body["category"], "VALIDATION_ERROR")
        self.assertEqual(body["errors"][0]["code"], "PROPERTY_DOESNT_EXIST")
        self.assertEqual(body["errors"][0]["context"], {"propertyName": ["nosuch"]})
        st, _, body = self.req("POST", OBJ + "/contacts", {"properties": {"email": "bad"}})
        self.assertEqual(st, 400)
        self.assertIn("INVALID_EMAIL", body["message"])
        st, _, body = self.req("POST", OBJ + "/contacts",
                               {"properties": {"lifecyclestage": "nope"}})
        self.assertEqual(st, 400)
        self.assertIn("INVALID_OPTION", body["message"])
        st, _, body = self.req("POST", OBJ + "/deals", {"properties": {"amount": "abc"}})
        self.assertEqual(st, 400)
        st, _, body = self.req("POST", OBJ + "/contacts",
                               {"properties": {"lastmodifieddate": "2024-01-01"}})
        self.assertEqual(st, 400)
        self.assertIn("READ_ONLY_VALUE", body["message"])
        ids = self.create_contacts(1)
        st, _, body = self.req("POST", OBJ + "/contacts",
                               {"properties": {"email": "C0@example.com"}})
        self.assertEqual(st, 409)
        self.assertEqual(body["category"], "CONFLICT")
        self.assertEqual(body["message"], "Contact already exists. Existing ID: %s" % ids[0])
        st, _, body = self.req("PATCH", OBJ + "/contacts/999999", {"properties": {}})
        self.assertEqual(st, 404)
        st, _, body = self.req("GET", OBJ + "/butterflies")
        self.assertEqual(st, 400)
        self.assertEqual(body["message"], "Unable to infer object type from: butterflies")
        st, _, body = self.req("POST", OBJ + "/contacts", "{not json")
        self.assertEqual(st, 400)
        self.assertEqual(body["category"], "VALIDATION_ERROR")

    def test_object_type_aliases(self):
        self.create_contacts(2)
        for t in ("contacts", "CONTACT", "contact", "0-1"):
            st, _, body = self.req("GET", OBJ + "/%s" % t)
            self.assertEqual((st, len(body["results"])), (200, 2), t)


class TestList(HubSpotCase):
    def test_paging(self):
        ids = self.create_contacts(25)
        st, _, p1 = self.req("GET", OBJ + "/contacts")
        self.assertEqual(len(p1["results"]), 10)   # default limit
        seen = []
        path = OBJ + "/contacts?limit=7&properties=email"
        while True:
            st, _, page = self.req("GET", path)
            self.assertEqual(st, 200)
            seen += [r["id"] for r in page["results"]]
            for r in page["results"]:
                self.assertEqual(sorted(r["properties"]), ["createdate", "email", "hs_object_id",
                                                           "lastmodifieddate"])
            if "paging" not in page:
                break
            nxt = page["paging"]["next"]
            self.assertIsInstance(nxt["after"], str)
            self.assertIn("after=" + nxt["after"], nxt["link"])
            self.assertTrue(nxt["link"].startswith("http://"))
            path = OBJ + "/contacts?limit=7&properties=email&after=" + nxt["after"]
        self.assertEqual(seen, ids)

    def test_limit_bounds(self):
        self.assertEqual(self.req("GET", OBJ + "/contacts?limit=100")[0], 200)
        for bad in ("101", "0", "x"):
            st, _, body = self.req("GET", OBJ + "/contacts?limit=" + bad)
            self.assertEqual(st, 400, bad)
            self.assertEqual(body["category"], "VALIDATION_ERROR")

    def test_archived_listing(self):
        ids = self.create_contacts(3)
        self.assertEqual(self.req("DELETE", OBJ + "/contacts/" + ids[1])[0], 204)
        _, _, live = self.req("GET", OBJ + "/contacts")
        self.assertEqual([r["id"] for r in live["results"]], [ids[0], ids[2]])
        _, _, arch = self.req("GET", OBJ + "/contacts?archived=true")
        self.assertEqual([r["id"] for r in arch["results"]], [ids[1]])
        self.assertTrue(arch["results"][0]["archived"])
        self.assertRegex(arch["results"][0]["archivedAt"], r"Z$")


class TestBatch(HubSpotCase):
    def test_create_201_reversed_with_trace_ids(self):
        st, _, body = self.req("POST", OBJ + "/contacts/batch/create", {"inputs": [
            {"properties": {"email": "a%d@x.com" % i}, "objectWriteTraceId": "row-%d" % i}
            for i in range(3)]})
        self.assertEqual(st, 201)
        self.assertEqual(body["status"], "COMPLETE")
        self.assertIn("startedAt", body)
        self.assertIn("completedAt", body)
        self.assertEqual([r["objectWriteTraceId"] for r in body["results"]],
                         ["row-2", "row-1", "row-0"])
        self.assertEqual([r["properties"]["email"] for r in body["results"]],
                         ["a2@x.com", "a1@x.com", "a0@x.com"])

    def test_limit_100(self):
        st, _, body = self.req("POST", OBJ + "/contacts/batch/create", {"inputs": [
            {"properties": {"firstname": "x"}}] * 101})
        self.assertEqual(st, 400)
        self.assertEqual(body["category"], "VALIDATION_ERROR")
        _, _, lst = self.req("GET", OBJ + "/contacts")
        self.assertEqual(lst["results"], [])
        st, _, body = self.req("POST", OBJ + "/contacts/batch/create", {"inputs": [
            {"properties": {"firstname": "x"}}] * 100})
        self.assertEqual((st, len(body["results"])), (201, 100))

    def test_partial_conflict_and_bad_email(self):
        ids = self.create_contacts(1)
        st, _, body = self.req("POST", OBJ + "/contacts/batch/create", {"inputs": [
            {"properties": {"email": "c0@example.com"}, "objectWriteTraceId": "0"},
            {"properties": {"email": "new@example.com"}, "objectWriteTraceId": "1"},
            {"properties": {"email": "not-an-email"}, "objectWriteTraceId": "2"}]})
        self.assertEqual(st, 207)
        self.assertEqual(body["numErrors"], 2)
        self.assertEqual(len(body["results"]), 1)
        conflict, bad = body["errors"]
        self.assertEqual(conflict["category"], "CONFLICT")
        self.assertEqual(conflict["message"], "Contact already exists. Existing ID: " + ids[0])
        self.assertEqual(conflict["context"], {"objectWriteTraceId": ["0"],
                                               "existingId": [ids[0]]})
        self.assertEqual(bad["context"]["objectWriteTraceId"], ["2"])
        self.assertIn("INVALID_EMAIL", bad["message"])

    def test_all_conflict_is_409(self):
        self.create_contacts(1)
        st, _, body = self.req("POST", OBJ + "/contacts/batch/create", {"inputs": [
            {"properties": {"email": "c0@example.com"}}]})
        self.assertEqual(st, 409)
        self.assertEqual(body["category"], "CONFLICT")

    def test_unknown_property_fails_whole_batch(self):
        st, _, body = self.req("POST", OBJ + "/contacts/batch/create", {"inputs": [
            {"properties": {"email": "ok@x.com"}},
            {"properties": {"first000name": "x", "last000name": "y"}}]})
        self.assertEqual(st, 400)
        self.assertEqual(body["category"], "VALIDATION_ERROR")
        self.assertTrue(body["message"].startswith("Property values were not valid: "))
        self.assertEqual([e["context"]["propertyName"] for e in body["errors"]],
                         [["first000name"], ["last000name"]])
        self.assertEqual(self.req("GET", OBJ + "/contacts")[2]["results"], [])

    def test_update_partial_and_duplicates(self):
        ids = self.create_contacts(2)
        st, _, body = self.req("POST", OBJ + "/contacts/batch/update", {"inputs": [
            {"id": ids[0], "properties": {"firstname": "Z"}, "objectWriteTraceId": "t0"},
            {"id": "888", "properties": {"firstname": "Q"}}]})
        self.assertEqual(st, 207)
        self.assertEqual(body["results"][0]["properties"]["firstname"], "Z")
        self.assertEqual(body["results"][0]["objectWriteTraceId"], "t0")
        self.assertEqual(body["errors"][0]["category"], "OBJECT_NOT_FOUND")
        self.assertEqual(body["errors"][0]["context"]["ids"], ["888"])
        st, _, body = self.req("POST", OBJ + "/contacts/batch/update", {"inputs": [
            {"id": ids[0], "properties": {}}, {"id": ids[0], "properties": {}}]})
        self.assertEqual(st, 400)
        self.assertEqual(body["message"], "Duplicate IDs found in batch input: [%s]. IDs "
                         "must be unique" % ids[0])
        self.assertEqual(body["context"], {"ids": [ids[0]]})
        st, _, body = self.req("POST", OBJ + "/contacts/batch/update", {"inputs": [
            {"id": ids[1], "properties": {"firstname": "Y"}}]})
        self.assertEqual(st, 200)

    def test_update_by_id_property(self):
        ids = self.create_contacts(1)
        st, _, body = self.req("POST", OBJ + "/contacts/batch/update", {"inputs": [
            {"id": "c0@example.com", "idProperty": "email", "properties": {"lastname": "E"}}]})
        self.assertEqual(st, 200)
        self.assertEqual(body["results"][0]["id"], ids[0])

    def test_upsert(self):
        ids = self.create_contacts(1)
        st, _, body = self.req("POST", OBJ + "/contacts/batch/upsert", {"inputs": [
            {"id": "c0@example.com", "idProperty": "email", "properties": {"lastname": "U"},
             "objectWriteTraceId": "a"},
            {"id": "fresh@example.com", "idProperty": "email", "properties": {"lastname": "N"},
             "objectWriteTraceId": "b"}]})
        self.assertEqual(st, 200)
        by = {r["objectWriteTraceId"]: r for r in body["results"]}
        self.assertFalse(by["a"]["new"])
        self.assertEqual(by["a"]["id"], ids[0])
        self.assertTrue(by["b"]["new"])
        self.assertEqual(by["b"]["properties"]["email"], "fresh@example.com")
        # firstname is not unique: 400
        st, _, body = self.req("POST", OBJ + "/contacts/batch/upsert", {"inputs": [
            {"id": "x", "idProperty": "firstname", "properties": {}}]})
        self.assertEqual(st, 400)
        st, _, body = self.req("POST", OBJ + "/contacts/batch/upsert", {"inputs": [
            {"id": "x@y.com", "idProperty": "email", "properties": {}},
            {"id": "x@y.com", "idProperty": "email", "properties": {}}]})
        self.assertEqual(st, 400)
        self.assertIn("Duplicate IDs", body["message"])

    def test_read_and_archive(self):
        ids = self.create_contacts(3)
        st, _, body = self.req("POST", OBJ + "/contacts/batch/read", {
            "inputs": [{"id": ids[0]}, {"id": ids[2]}, {"id": "424242"}],
            "properties": ["email"]})
        self.assertEqual(st, 207)
        self.assertEqual(sorted(r["id"] for r in body["results"]), [ids[0], ids[2]])
        self.assertEqual(body["errors"][0]["context"]["ids"], ["424242"])
        self.assertEqual(sorted(body["results"][0]["properties"]),
                         ["createdate", "email", "hs_object_id", "lastmodifieddate"])
        st, _, body = self.req("POST", OBJ + "/contacts/batch/archive", {
            "inputs": [{"id": ids[0]}, {"id": ids[1]}]})
        self.assertEqual((st, body), (204, None))
        _, _, lst = self.req("GET", OBJ + "/contacts")
        self.assertEqual([r["id"] for r in lst["results"]], [ids[2]])
        st, _, body = self.req("POST", OBJ + "/contacts/batch/read?archived=true", {
            "inputs": [{"id": ids[0]}]})
        self.assertEqual(st, 200)
        self.assertTrue(body["results"][0]["archived"])


class TestSearch(HubSpotCase):
    def search(self, body, t="contacts"):
        return self.req("POST", OBJ + "/%s/search" % t, body)

    def setUp(self):
        super().setUp()
        self.emu.config(hubspot_search_per_s=1000)

    def test_operators(self):
        self.emu.seed("hubspot", "deals", [
            {"dealname": "d%d" % i, "amount": str(i * 100), "dealstage": "closedwon"
             if i % 2 else "contractsent"} for i in range(10)] + [{"dealname": "noamount"}])

        def names(*filters):
            st, hd, body = self.search({"filterGroups": [{"filters": list(filters)}],
                                        "properties": ["dealname"], "limit": 100}, "deals")
            self.assertEqual(st, 200, body)
            self.assertEqual(body["total"], len(body["results"]))
            return sorted(r["properties"]["dealname"] for r in body["results"])
        f = lambda op, v=None, **kw: dict(propertyName="amount", operator=op,  # noqa: E731
                                          **({"value": v} if v is not None else {}), **kw)
        self.assertEqual(names(f("EQ", "300")), ["d3"])
        self.assertEqual(len(names(f("NEQ", "300"))), 10)   # includes no-amount
        self.assertEqual(names(f("LT", "200")), ["d0", "d1"])
        self.assertEqual(names(f("LTE", "200")), ["d0", "d1", "d2"])
        self.assertEqual(names(f("GT", "800")), ["d9"])
        self.assertEqual(names(f("GTE", "800")), ["d8", "d9"])
        self.assertEqual(names(f("BETWEEN", "200", highValue="400")), ["d2", "d3", "d4"])
        self.assertEqual(names(f("IN", values=["100", "500"])), ["d1", "d5"])
        self.assertEqual(len(names(f("NOT_IN", values=["100", "500"]))), 9)
        self.assertEqual(len(names(f("HAS_PROPERTY"))), 10)
        self.assertEqual(names(f("NOT_HAS_PROPERTY")), ["noamount"])
        self.assertEqual(names(f("GTE", "300"), {"propertyName": "dealstage", "operator": "EQ",
                                                  "value": "closedwon"}),
                         ["d3", "d5", "d7", "d9"])
        # groups are ORed
        st, _, body = self.search({"filterGroups": [
            {"filters": [f("EQ", "100")]}, {"filters": [f("EQ", "900")]}]}, "deals")
        self.assertEqual(body["total"], 2)

    def test_string_eq_is_case_insensitive_and_sort(self):
        self.create_contacts(3)
        st, _, body = self.search({"filterGroups": [{"filters": [
            {"propertyName": "email", "operator": "EQ", "value": "C1@EXAMPLE.COM"}]}]})
        self.assertEqual(body["total"], 1)
        st, _, body = self.search({"sorts": [{"propertyName": "firstname",
                                              "direction": "DESCENDING"}]})
        self.assertEqual([r["properties"]["firstname"] for r in body["results"]],
                         ["F2", "F1", "F0"])

    def test_paging_total_and_window(self):
        self.create_contacts(25)
        st, hd, body = self.search({"limit": 10})
        self.assertEqual(body["total"], 25)
        self.assertEqual(body["paging"]["next"]["after"], "10")
        self.assertNotIn("link", body["paging"]["next"])
        # search responses carry only the daily pair (no ten-secondly headers)
        self.assertEqual(sorted(h for h in hd if h.startswith("x-hubspot-ratelimit")),
                         ["x-hubspot-ratelimit-daily", "x-hubspot-ratelimit-daily-remaining"])
        _, _, p3 = self.search({"limit": 10, "after": "20"})
        self.assertEqual(len(p3["results"]), 5)
        self.assertNotIn("paging", p3)
        st, _, body = self.search({"limit": 201})
        self.assertEqual(st, 400)
        st, _, body = self.search({"limit": 100, "after": "9950"})
        self.assertEqual(st, 200)          # the last page inside the window
        st, _, body = self.search({"limit": 100, "after": "10000"})
        self.assertEqual(st, 400)
        self.assertEqual(body["category"], "VALIDATION_ERROR")
        st, _, body = self.search({"sorts": [{"propertyName": "email"},
                                             {"propertyName": "firstname"}]})
        self.assertEqual(st, 400)

    def test_modified_since_incremental(self):
        ids = self.create_contacts(3)
        self.emu.request("POST", "/__emulator/clock", {"advance_s": 60})
        st, _, rec = self.emu.request("PATCH", "/__emulator/records/hubspot/contacts/" + ids[1],
                                      {"firstname": "changed"})
        self.assertEqual(st, 200)
        st, _, body = self.search({"filterGroups": [{"filters": [
            {"propertyName": "lastmodifieddate", "operator": "GTE",
             "value": rec["updatedAt"]}]}],
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]})
        self.assertEqual([r["id"] for r in body["results"]], [ids[1]])

    def test_archived_not_searchable(self):
        ids = self.create_contacts(2)
        self.req("DELETE", OBJ + "/contacts/" + ids[0])
        _, _, body = self.search({})
        self.assertEqual([r["id"] for r in body["results"]], [ids[1]])

    def test_index_lag(self):
        self.emu.config(hubspot_search_lag_ms=5000)
        ids = self.create_contacts(1)
        _, _, body = self.search({})
        self.assertEqual(body["total"], 0)
        self.emu.request("POST", "/__emulator/clock", {"advance_s": 6})
        _, _, body = self.search({})
        self.assertEqual(body["total"], 1)
        # an update: the index still holds the old version during the lag
        self.req("PATCH", OBJ + "/contacts/" + ids[0], {"properties": {"firstname": "New"}})

        def by_name(v):
            return self.search({"properties": ["firstname"], "filterGroups": [{"filters": [
                {"propertyName": "firstname", "operator": "EQ", "value": v}]}]})[2]
        self.assertEqual(by_name("New")["total"], 0)
        old = by_name("F0")
        self.assertEqual(old["total"], 1)
        self.assertEqual(old["results"][0]["properties"]["firstname"], "F0")
        self.emu.request("POST", "/__emulator/clock", {"advance_s": 6})
        self.assertEqual(by_name("New")["total"], 1)
        self.assertEqual(by_name("F0")["total"], 0)
        # archived during the lag: still counted in total, missing from results
        self.req("DELETE", OBJ + "/contacts/" + ids[0])
        body = by_name("New")
        self.assertEqual((body["total"], body["results"]), (1, []))
        self.emu.request("POST", "/__emulator/clock", {"advance_s": 6})
        self.assertEqual(by_name("New")["total"], 0)

    def test_search_rate_limit(self):
        self.emu.config(hubspot_search_per_s=2, hubspot_per_10s=1000)
        self.assertEqual(self.search({})[0], 200)
        self.assertEqual(self.search({})[0], 200)
        st, hd, body = self.search({})
        self.assertEqual(st, 429)
        self.assertEqual(body["message"], "You have reached your secondly limit.")
        self.assertEqual(body["category"], "RATE_LIMITS")
        self.assertNotIn("retry-after", hd)
        self.assertNotIn("x-hubspot-ratelimit-remaining", hd)
        self.assertNotIn("x-hubspot-ratelimit-max", hd)
        # other endpoints are not affected
        self.assertEqual(self.req("GET", OBJ + "/contacts")[0], 200)

    def test_search_errors(self):
        st, _, body = self.search({}, "butterflies")
        self.assertEqual(st, 400)
        self.assertEqual(body["message"], "Unable to infer object type from: butterflies")
        st, _, body = self.search({"filterGroups": [{"filters": [
            {"propertyName": "nosuch", "operator": "EQ", "value": "1"}]}]})
        self.assertEqual(st, 400)
        st, _, body = self.search({"filterGroups": [{"filters": [
            {"propertyName": "email", "operator": "LIKE", "value": "1"}]}]})
        self.assertEqual(st, 400)
        st, _, body = self.search({"filterGroups": [{"filters": []}] * 6})
        self.assertEqual(st, 400)


class TestProperties(HubSpotCase):
    def test_list_and_one(self):
        st, _, body = self.req("GET", "/crm/v3/properties/contacts")
        self.assertEqual(st, 200)
        by = {p["name"]: p for p in body["results"]}
        for n in ("email", "firstname", "lastmodifieddate", "hs_object_id", "createdate"):
            self.assertIn(n, by)
        self.assertTrue(by["lastmodifieddate"]["modificationMetadata"]["readOnlyValue"])
        self.assertFalse(by["firstname"]["modificationMetadata"]["readOnlyValue"])
        st, _, p = self.req("GET", "/crm/v3/properties/contacts/lifecyclestage")
        self.assertEqual(st, 200)
        for k in ("name", "label", "type", "fieldType", "options", "hasUniqueValue",
                  "calculated", "groupName", "modificationMetadata"):
            self.assertIn(k, p)
        self.assertEqual((p["type"], p["fieldType"]), ("enumeration", "radio"))
        self.assertIn("lead", [o["value"] for o in p["options"]])
        st, _, p = self.req("GET", "/crm/v3/properties/deals/hs_lastmodifieddate")
        self.assertEqual((st, p["type"]), (200, "datetime"))
        st, _, p = self.req("GET", "/crm/v3/properties/contacts/nosuch")
        self.assertEqual(st, 404)


class TestRateLimits(HubSpotCase):
    def test_headers_and_ten_secondly(self):
        self.emu.config(hubspot_per_10s=3)
        for i in range(3):
            st, hd, _ = self.req("GET", OBJ + "/contacts")
            self.assertEqual(st, 200)
            self.assertEqual(hd["x-hubspot-ratelimit-max"], "3")
            self.assertEqual(hd["x-hubspot-ratelimit-remaining"], str(2 - i))
            self.assertEqual(hd["x-hubspot-ratelimit-interval-milliseconds"], "10000")
            for h in ("daily", "daily-remaining", "secondly", "secondly-remaining"):
                self.assertIn("x-hubspot-ratelimit-" + h, hd)
        st, hd, body = self.req("GET", OBJ + "/contacts")
        self.assertEqual(st, 429)
        self.assertEqual(body["status"], "error")
        self.assertEqual(body["message"], "You have reached your ten_secondly_rolling limit.")
        self.assertEqual(body["errorType"], "RATE_LIMIT")
        self.assertEqual(body["policyName"], "TEN_SECONDLY_ROLLING")
        self.assertIn("correlationId", body)
        self.assertNotIn("retry-after", hd)
        self.emu.request("POST", "/__emulator/clock", {"advance_s": 10.5})
        self.assertEqual(self.req("GET", OBJ + "/contacts")[0], 200)

    def test_daily(self):
        self.emu.config(hubspot_daily=2)
        _, hd, _ = self.req("GET", OBJ + "/contacts")
        self.assertEqual(hd["x-hubspot-ratelimit-daily"], "2")
        self.assertEqual(hd["x-hubspot-ratelimit-daily-remaining"], "1")
        self.assertEqual(self.req("GET", OBJ + "/contacts")[0], 200)
        st, hd, body = self.req("GET", OBJ + "/contacts")
        self.assertEqual(st, 429)
        self.assertEqual(body["policyName"], "DAILY")
        self.assertNotIn("retry-after", hd)

    def test_per_token(self):
        self.emu.config(hubspot_per_10s=1)
        self.assertEqual(self.req("GET", OBJ + "/contacts")[0], 200)
        self.assertEqual(self.req("GET", OBJ + "/contacts")[0], 429)
        st, _, tok = self.emu.request(
            "POST", "/oauth/v1/token",
            "grant_type=refresh_token&client_id=sync-hs-client&client_secret=sync-hs-secret"
            "&refresh_token=sync-hs-refresh",
            {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(self.req("GET", OBJ + "/contacts", headers={
            "Authorization": "Bearer " + tok["access_token"]})[0], 200)

    def test_fault_429_body(self):
        self.emu.fault(api="hubspot", kind="status", status=429, count=1)
        st, hd, body = self.req("GET", OBJ + "/contacts")
        self.assertEqual(st, 429)
        self.assertEqual(body["policyName"], "TEN_SECONDLY_ROLLING")


class TestAssociations(HubSpotCase):
    def test_default_and_read(self):
        c = self.create_contacts(1)[0]
        co = self.emu.seed("hubspot", "companies", [{"name": "Acme"}])["ids"][0]
        st, _, body = self.req("PUT", "/crm/v4/objects/contacts/%s/associations/default/"
                                      "companies/%s" % (c, co))
        self.assertEqual(st, 200)
        self.assertEqual(body["status"], "COMPLETE")
        st, _, body = self.req("GET", "/crm/v4/objects/contacts/%s/associations/companies" % c)
        self.assertEqual(st, 200)
        self.assertEqual(body["results"][0]["toObjectId"], int(co))
        self.assertIn(279, [t["typeId"] for t in body["results"][0]["associationTypes"]])
        st, _, body = self.req("GET", "/crm/v4/objects/companies/%s/associations/contacts" % co)
        self.assertEqual(body["results"][0]["toObjectId"], int(c))
        st, _, body = self.req("PUT", "/crm/v4/objects/contacts/%s/associations/default/"
                                      "companies/777777" % c)
        self.assertEqual(st, 404)

    def test_batch_create(self):
        c = self.create_contacts(2)
        co = self.emu.seed("hubspot", "companies", [{"name": "Acme"}])["ids"][0]
        # v3 (the recorded shape and status): both directions come back
        st, _, body = self.req("POST", "/crm/v3/associations/contacts/companies/batch/create",
                               {"inputs": [{"from": {"id": c[0]}, "to": {"id": co},
                                            "type": "contact_to_company"}]})
        self.assertEqual(st, 200)
        self.assertEqual({r["type"] for r in body["results"]},
                         {"contact_to_company", "company_to_contact"})
        # v4: typed inputs; an unknown id is a per-input error
        types = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}]
        st, _, body = self.req("POST", "/crm/v4/associations/contacts/companies/batch/create",
                               {"inputs": [{"from": {"id": c[1]}, "to": {"id": co},
                                            "types": types},
                                           {"from": {"id": "5"}, "to": {"id": co},
                                            "types": types}]})
        self.assertEqual(st, 207)
        self.assertEqual(body["results"][0]["fromObjectId"], int(c[1]))
        self.assertEqual(body["results"][0]["toObjectId"], int(co))
        self.assertEqual(body["errors"][0]["context"]["ids"], ["5"])
        _, _, body = self.req("GET", "/crm/v4/objects/companies/%s/associations/contacts" % co)
        self.assertEqual(sorted(r["toObjectId"] for r in body["results"]),
                         sorted(int(x) for x in c))


class TestControl(HubSpotCase):
    def test_search_cursor_reaches_the_cap(self):
        self.emu.config(hubspot_search_per_s=1000)
        self.emu.seed("hubspot", "contacts", [{"firstname": "n%d" % i} for i in range(10050)])
        st, _, body = self.req("POST", OBJ + "/contacts/search",
                               {"limit": 200, "after": "9800", "properties": ["firstname"]})
        self.assertEqual(st, 200)
        self.assertEqual(body["total"], 10050)
        self.assertEqual(len(body["results"]), 200)
        # the cursor is offered at the cap, and following it fails, as on HubSpot
        self.assertEqual(body["paging"]["next"]["after"], "10000")
        st, _, body = self.req("POST", OBJ + "/contacts/search",
                               {"limit": 200, "after": "10000"})
        self.assertEqual(st, 400)
        self.assertEqual(body["category"], "VALIDATION_ERROR")

    def test_bulk_create_is_fast_and_listed(self):
        import time
        t0 = time.time()
        ids = self.emu.seed("hubspot", "contacts", [{"email": "u%d@x.com" % i}
                                                    for i in range(20000)])["ids"]
        self.assertLess(time.time() - t0, 10)
        self.assertEqual(len(ids), 20000)
        st, _, body = self.req("POST", OBJ + "/contacts/search", {"limit": 1})
        self.assertEqual(body["total"], 20000)
        st, _, lst = self.emu.request("GET", "/__emulator/records/hubspot/contacts")
        self.assertEqual(len(lst), 20000)

    def test_control_rejects_and_patch_delete(self):
        st, _, body = self.emu.request("POST", "/__emulator/records/hubspot/contacts",
                                       [{"email": "ok@x.com"}, {"nosuch": 1}])
        self.assertEqual(st, 400)
        self.assertIn("PROPERTY_DOESNT_EXIST", body["error"])
        self.assertIn("(record 1)", body["error"])
        self.assertEqual(self.emu.request("GET", "/__emulator/records/hubspot/contacts")[2], [])
        ids = self.create_contacts(1)
        st, _, one = self.emu.request("GET", "/__emulator/records/hubspot/contacts/" + ids[0])
        self.assertEqual(st, 200)
        self.emu.request("POST", "/__emulator/clock", {"advance_s": 3})
        st, _, rec = self.emu.request("PATCH", "/__emulator/records/hubspot/contacts/" + ids[0],
                                      {"lastname": "P"})
        self.assertEqual(st, 200)
        self.assertGreater(rec["updatedAt"], one["updatedAt"])
        self.assertEqual(rec["properties"]["lastmodifieddate"], rec["updatedAt"])
        st, _, _ = self.emu.request("DELETE", "/__emulator/records/hubspot/contacts/" + ids[0])
        self.assertEqual(st, 200)
        _, _, arch = self.req("GET", OBJ + "/contacts?archived=true")
        self.assertEqual([r["id"] for r in arch["results"]], ids)
        st, _, _ = self.emu.request("DELETE", "/__emulator/records/hubspot/contacts/" + ids[0])
        self.assertEqual(st, 404)
        st, _, _ = self.emu.request("GET", "/__emulator/records/hubspot/widgets")
        self.assertEqual(st, 404)

    def test_backdated_records(self):
        # the control API may set the read-only stamps (a record "made earlier")
        ids = self.emu.seed("hubspot", "companies", [
            {"name": "Old", "createdate": "2020-01-01T00:00:00Z",
             "hs_lastmodifieddate": "2021-01-01T00:00:00.000Z"}])["ids"]
        _, _, rec = self.req("GET", "/crm/v3/objects/companies/" + ids[0])
        self.assertEqual(rec["createdAt"], "2020-01-01T00:00:00.000Z")
        self.assertEqual(rec["updatedAt"], "2021-01-01T00:00:00.000Z")
        self.assertEqual(rec["properties"]["hs_lastmodifieddate"], "2021-01-01T00:00:00.000Z")
        # ...but the public API may not
        st, _, body = self.req("PATCH", "/crm/v3/objects/companies/" + ids[0],
                               {"properties": {"hs_lastmodifieddate": "2022-01-01"}})
        self.assertEqual(st, 400)
        self.assertIn("READ_ONLY_VALUE", body["message"])



class TestExtras(HubSpotCase):
    def test_authorization_code_grant(self):
        st, _, tok = self.emu.request(
            "POST", "/oauth/v1/token",
            "grant_type=authorization_code&client_id=sync-hs-client&client_secret=sync-hs-secret"
            "&code=sync-hs-code&redirect_uri=http://localhost/cb",
            {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(st, 200)
        self.assertEqual(tok["refresh_token"], "sync-hs-refresh")
        st, _, body = self.emu.request(
            "POST", "/oauth/v1/token",
            "grant_type=authorization_code&client_id=sync-hs-client&client_secret=sync-hs-secret"
            "&code=wrong&redirect_uri=http://localhost/cb",
            {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual((st, body["status"]), (400, "BAD_AUTH_CODE"))

    def test_custom_unique_property_and_upsert(self):
        st, _, p = self.req("POST", "/crm/v3/properties/contacts", {
            "name": "ext_id", "label": "Ext", "type": "string", "fieldType": "text",
            "groupName": "contactinformation", "hasUniqueValue": True})
        self.assertEqual(st, 201)
        self.assertTrue(p["hasUniqueValue"])
        self.assertFalse(p["hubspotDefined"])
        body = {"inputs": [{"id": "E1", "idProperty": "ext_id",
                            "properties": {"firstname": "Z"}}]}
        st, _, r1 = self.req("POST", OBJ + "/contacts/batch/upsert", body)
        self.assertEqual((st, r1["results"][0]["new"]), (200, True))
        st, _, r2 = self.req("POST", OBJ + "/contacts/batch/upsert", body)
        self.assertEqual((st, r2["results"][0]["new"]), (200, False))
        self.assertEqual(r1["results"][0]["id"], r2["results"][0]["id"])
        # a second record cannot take the same unique value
        st, _, body = self.req("POST", OBJ + "/contacts", {"properties": {"ext_id": "E1"}})
        self.assertEqual(st, 409)
        st, _, got = self.req("GET", OBJ + "/contacts/E1?idProperty=ext_id")
        self.assertEqual((st, got["id"]), (200, r1["results"][0]["id"]))

    def test_contains_token_and_query(self):
        self.emu.seed("hubspot", "contacts", [
            {"email": "ann.lee@acme.com", "firstname": "Ann Marie"}, {"email": "bob@x.com"}])
        st, _, body = self.req("POST", OBJ + "/contacts/search", {"filterGroups": [{"filters": [
            {"propertyName": "firstname", "operator": "CONTAINS_TOKEN", "value": "marie"}]}]})
        self.assertEqual((st, body["total"]), (200, 1))
        st, _, body = self.req("POST", OBJ + "/contacts/search", {"query": "acme"})
        self.assertEqual(body["total"], 1)
        self.assertEqual(body["results"][0]["properties"]["email"], "ann.lee@acme.com")

    def test_list_with_associations(self):
        c = self.create_contacts(1)[0]
        co = self.emu.seed("hubspot", "companies", [{"name": "Acme"}])["ids"][0]
        self.req("PUT", "/crm/v4/objects/contacts/%s/associations/default/companies/%s"
                 % (c, co))
        st, _, got = self.req("GET", OBJ + "/contacts/%s?associations=companies" % c)
        self.assertEqual(st, 200)
        self.assertEqual(got["associations"]["companies"]["results"][0]["id"], co)

    def test_purge_and_restore(self):
        ids = self.create_contacts(2)
        st, _, _ = self.emu.request("POST", "/__emulator/hubspot/purge/contacts/" + ids[1])
        self.assertEqual(st, 200)
        # purged: gone even from archived listings (a GDPR delete leaves no trace)
        self.assertEqual(self.req("GET", OBJ + "/contacts/%s?archived=true" % ids[1])[0], 404)
        self.assertEqual(self.req("GET", OBJ + "/contacts?archived=true")[2]["results"], [])
        self.req("DELETE", OBJ + "/contacts/" + ids[0])
        self.emu.request("POST", "/__emulator/clock", {"advance_s": 2})
        st, _, rec = self.emu.request("POST", "/__emulator/hubspot/restore/contacts/" + ids[0])
        self.assertEqual(st, 200)
        st, _, got = self.req("GET", OBJ + "/contacts/" + ids[0])
        self.assertEqual(st, 200)
        self.assertFalse(got["archived"])
        self.assertGreater(got["updatedAt"], got["createdAt"])

    def test_usage_counters(self):
        self.req("GET", OBJ + "/contacts")
        self.req("POST", OBJ + "/contacts/search", {})
        st, _, u = self.emu.request("GET", "/__emulator/hubspot/usage")
        self.assertEqual(st, 200)
        self.assertEqual(u["daily"], 2)
        self.assertEqual(u["ten_secondly"], {"private-app": 1})
        self.assertEqual(u["search_secondly"], {"private-app": 1})


if __name__ == "__main__":
    unittest.main()
