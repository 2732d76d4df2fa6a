"""Remote merges: Salesforce (control endpoint: losers deleted with
MasterRecordId, visible in queryAll, children re-parented) and HubSpot (the
merge API and the control endpoint: a new merged record, old IDs resolve to
it, hs_merged_object_ids, associations moved)."""
import unittest
import urllib.parse

from util import EmulatorTestCase

V = "/services/data/v62.0"
H = {"Authorization": "Bearer pat-sync-test"}
OBJ = "/crm/v3/objects"


class SalesforceMergeTest(EmulatorTestCase):
    def setUp(self):
        super().setUp()
        st, _, b = self.emu.request(
            "POST", "/services/oauth2/token",
            urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": "sync-client",
                                    "client_secret": "sync-secret"}),
            {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(st, 200, b)
        self.h = {"Authorization": "Bearer " + b["access_token"]}

    def q(self, soql, all_rows=False):
        st, _, b = self.emu.request("GET", "%s/%s?q=%s" % (V, "queryAll" if all_rows else "query",
                                                          urllib.parse.quote(soql)), None, self.h)
        self.assertEqual(st, 200, b)
        return b["records"]

    def merge(self, body):
        return self.emu.request("POST", "/__emulator/salesforce/merge", body)

    def test_contact_losers_deleted_with_master_record_id(self):
        ids = self.emu.seed("salesforce", "Contact",
                            [{"LastName": "Keep"}, {"LastName": "Dup1"}, {"LastName": "Dup2"}])["ids"]
        st, _, b = self.merge({"object": "Contact", "master": ids[0], "losers": ids[1:]})
        self.assertEqual(st, 200, b)
        self.assertEqual(b["id"], ids[0])
        self.assertEqual(b["mergedRecordIds"], ids[1:])
        self.assertTrue(b["success"])
        # query: only the master; queryAll: the losers, deleted, pointing at it
        self.assertEqual([r["Id"] for r in self.q("SELECT Id FROM Contact")], [ids[0]])
        rows = {r["Id"]: r for r in self.q(
            "SELECT Id, IsDeleted, MasterRecordId FROM Contact", all_rows=True)}
        for loser in ids[1:]:
            self.assertTrue(rows[loser]["IsDeleted"])
            self.assertEqual(rows[loser]["MasterRecordId"], ids[0])
        self.assertFalse(rows[ids[0]]["IsDeleted"])
        self.assertIsNone(rows[ids[0]]["MasterRecordId"])

    def test_account_merge_reparents_contacts(self):
        acc = self.emu.seed("salesforce", "Account", [{"Name": "Acme"}, {"Name": "Acme Inc"}])["ids"]
        c = self.emu.seed("salesforce", "Contact", [{"LastName": "A", "AccountId": acc[1]},
                                                    {"LastName": "B", "AccountId": acc[0]}])["ids"]
        before = {r["Id"]: r["SystemModstamp"] for r in self.q("SELECT Id, SystemModstamp FROM Contact")}
        st, _, b = self.merge({"object": "Account", "master": acc[0], "losers": [acc[1]]})
        self.assertEqual(st, 200, b)
        self.assertEqual(b["updatedRelatedIds"], [c[0]])
        rows = {r["Id"]: r for r in self.q("SELECT Id, AccountId, SystemModstamp, IsDeleted FROM Contact")}
        self.assertEqual(rows[c[0]]["AccountId"], acc[0])      # re-parented, not deleted
        self.assertGreater(rows[c[0]]["SystemModstamp"], before[c[0]])
        self.assertEqual(rows[c[1]]["SystemModstamp"], before[c[1]])
        # the loser is in the delete feed too
        gone = self.q("SELECT Id, MasterRecordId FROM Account WHERE IsDeleted = true", all_rows=True)
        self.assertEqual([(r["Id"], r["MasterRecordId"]) for r in gone], [(acc[1], acc[0])])

    def test_merge_refusals(self):
        ids = self.emu.seed("salesforce", "Contact", [{"LastName": "x%d" % i} for i in range(4)])["ids"]
        st, _, b = self.merge({"object": "Contact", "master": ids[0], "losers": ids[1:]})
        self.assertEqual(st, 400)               # at most two losers, as Salesforce allows
        self.assertIn("LIMIT_EXCEEDED", str(b))
        st, _, b = self.merge({"object": "Contact", "master": ids[0], "losers": [ids[0]]})
        self.assertEqual(st, 400)
        opp = self.emu.seed("salesforce", "Opportunity", [
            {"Name": "o", "StageName": "Prospecting", "CloseDate": "2030-01-01"}])["ids"]
        st, _, b = self.merge({"object": "Opportunity", "master": opp[0], "losers": [opp[0]]})
        self.assertEqual(st, 400)
        self.assertIn("INVALID_TYPE", str(b))
        self.assertEqual(self.merge({"object": "Contact", "master": ids[0], "losers": [ids[1]]})[0], 200)
        st, _, b = self.merge({"object": "Contact", "master": ids[0], "losers": [ids[1]]})
        self.assertEqual(st, 400)               # already merged away
        self.assertIn("ENTITY_IS_DELETED", str(b))


class HubSpotMergeTest(EmulatorTestCase):
    def req(self, method, path, body=None):
        return self.emu.request(method, path, body, H)

    def test_merge_api_makes_a_new_record_old_ids_resolve(self):
        a, b = self.emu.seed("hubspot", "contacts", [
            {"email": "a@example.com", "firstname": "Ann"},
            {"email": "b@example.com", "firstname": "Bea", "phone": "555"}])["ids"]
        st, _, m = self.req("POST", OBJ + "/contacts/merge",
                            {"primaryObjectId": a, "objectIdToMerge": b})
        self.assertEqual(st, 200, m)
        new = m["id"]
        self.assertNotIn(new, (a, b))
        self.assertEqual(m["properties"]["email"], "a@example.com")      # the primary's values
        self.assertEqual(m["properties"]["phone"], "555")                # gaps from the other
        self.assertEqual(m["properties"]["hs_merged_object_ids"].split(";"), [a, b])
        for old in (a, b):
            st, _, g = self.req("GET", OBJ + "/contacts/%s?properties=hs_merged_object_ids" % old)
            self.assertEqual(st, 200, g)
            self.assertEqual(g["id"], new)
        st, _, r = self.req("POST", OBJ + "/contacts/batch/read", {"inputs": [{"id": b}]})
        self.assertEqual([x["id"] for x in r["results"]], [new])
        st, _, lst = self.req("GET", OBJ + "/contacts?limit=100")
        self.assertEqual([x["id"] for x in lst["results"]], [new])
        st, _, lst = self.req("GET", OBJ + "/contacts?limit=100&archived=true")
        self.assertEqual(lst["results"], [])
        st, _, s = self.req("POST", OBJ + "/contacts/search", {"properties": ["email"]})
        self.assertEqual([x["id"] for x in s["results"]], [new])
        # a merge of the merged record lists every ID that resolves to it
        c = self.emu.seed("hubspot", "contacts", [{"email": "c@example.com"}])["ids"][0]
        st, _, m2 = self.req("POST", OBJ + "/contacts/merge",
                             {"primaryObjectId": c, "objectIdToMerge": new})
        self.assertEqual(set(m2["properties"]["hs_merged_object_ids"].split(";")), {a, b, c, new})
        self.assertEqual(self.req("GET", OBJ + "/contacts/%s" % a)[2]["id"], m2["id"])

    def test_control_merge_moves_associations(self):
        a, b = self.emu.seed("hubspot", "contacts", [{"email": "a@example.com"},
                                                     {"email": "b@example.com"}])["ids"]
        co1, co2 = self.emu.seed("hubspot", "companies", [{"name": "One"}, {"name": "Two"}])["ids"]
        for c, co in ((a, co1), (b, co2)):
            st, _, _ = self.req("PUT", "/crm/v4/objects/contacts/%s/associations/default/companies/%s"
                                % (c, co))
            self.assertEqual(st, 200)
        st, _, m = self.emu.request("POST", "/__emulator/hubspot/merge",
                                    {"object": "contacts", "primary": a, "merged": b})
        self.assertEqual(st, 200, m)
        new = m["id"]
        _, _, r = self.req("GET", "/crm/v4/objects/contacts/%s/associations/companies" % new)
        self.assertEqual(sorted(x["toObjectId"] for x in r["results"]), sorted([int(co1), int(co2)]))
        _, _, r = self.req("GET", "/crm/v4/objects/companies/%s/associations/contacts" % co2)
        self.assertEqual([x["toObjectId"] for x in r["results"]], [int(new)])
        # companies merge: contacts of either company end up on the merged one
        st, _, mc = self.emu.request("POST", "/__emulator/hubspot/merge",
                                     {"object": "companies", "primary": co1, "merged": co2})
        self.assertEqual(st, 200, mc)
        _, _, r = self.req("GET", "/crm/v4/objects/contacts/%s/associations/companies" % new)
        self.assertEqual([x["toObjectId"] for x in r["results"]], [int(mc["id"])])

    def test_merge_refusals(self):
        a = self.emu.seed("hubspot", "contacts", [{"email": "a@example.com"}])["ids"][0]
        st, _, e = self.req("POST", OBJ + "/contacts/merge", {"primaryObjectId": a, "objectIdToMerge": a})
        self.assertEqual(st, 400)
        self.assertEqual(e["category"], "VALIDATION_ERROR")
        st, _, e = self.req("POST", OBJ + "/contacts/merge", {"primaryObjectId": a, "objectIdToMerge": "999999"})
        self.assertEqual(st, 404)
        st, _, e = self.req("POST", OBJ + "/contacts/merge", {"primaryObjectId": a})
        self.assertEqual(st, 400)
        st, _, e = self.emu.request("POST", "/__emulator/hubspot/merge",
                                    {"object": "contacts", "primary": a, "merged": "999999"})
        self.assertEqual(st, 404)


if __name__ == "__main__":
    unittest.main()
