"""Salesforce REST API emulation: auth, limits, describe, CRUD, upsert,
collections, SOQL, paging, replication feeds, composite, seed, control hooks."""
import base64
import hashlib
import hmac
import json
import os
import re
import sys
import tempfile
import time
import unittest
import urllib.parse
from datetime import datetime, timedelta, timezone

from util import EMULATOR, Emulator, EmulatorTestCase, load_fixture

sys.path.insert(0, os.path.dirname(EMULATOR))
import certs  # noqa: E402
from sf_schema import id_suffix, to18  # noqa: E402

V = "/services/data/v62.0"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
STAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")
ID_RE = re.compile(r"^[A-Za-z0-9]{18}$")


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")


class SfTestCase(EmulatorTestCase):
    def setUp(self):
        super().setUp()
        self.tok = self.get_token()
        self.h = {"Authorization": "Bearer " + self.tok}

    def get_token(self, **extra):
        form = {"grant_type": "client_credentials", "client_id": "sync-client",
                "client_secret": "sync-secret"}
        form.update(extra)
        st, _, b = self.emu.request("POST", "/services/oauth2/token", urllib.parse.urlencode(form), FORM)
        self.assertEqual(st, 200, b)
        return b["access_token"]

    def call(self, method, path, body=None, headers=None):
        h = dict(self.h)
        h.update(headers or {})
        return self.emu.request(method, V + path, body, h)

    def q(self, soql, all_rows=False, headers=None):
        return self.call("GET", "/%s?q=%s" % ("queryAll" if all_rows else "query",
                                             urllib.parse.quote(soql)), headers=headers)

    def create(self, obj, **fields):
        st, _, b = self.call("POST", "/sobjects/%s" % obj, fields)
        self.assertEqual(st, 201, b)
        return b["id"]

    def get(self, obj, rid):
        st, _, b = self.call("GET", "/sobjects/%s/%s" % (obj, rid))
        self.assertEqual(st, 200, b)
        return b

    def advance(self, seconds):
        st, _, b = self.emu.request("POST", "/__emulator/clock", {"advance_s": seconds})
        self.assertEqual(st, 200)


class AuthTest(SfTestCase):
    def token_req(self, form, headers=None):
        h = dict(FORM)
        h.update(headers or {})
        return self.emu.request("POST", "/services/oauth2/token", urllib.parse.urlencode(form), h)

    def test_client_credentials_body(self):
        st, h, b = self.token_req({"grant_type": "client_credentials", "client_id": "sync-client",
                                   "client_secret": "sync-secret"})
        self.assertEqual(st, 200)
        self.assertEqual(b["token_type"], "Bearer")
        self.assertEqual(b["instance_url"], self.emu.url)
        self.assertRegex(b["issued_at"], r"^\d{13}$")
        self.assertAlmostEqual(int(b["issued_at"]) / 1000, time.time(), delta=60)
        self.assertNotIn("refresh_token", b)
        sig = base64.b64encode(hmac.new(b"sync-secret", (b["id"] + b["issued_at"]).encode(),
                                        hashlib.sha256).digest()).decode()
        self.assertEqual(b["signature"], sig)
        self.assertIn("/id/00D", b["id"])

    def test_client_credentials_basic_auth(self):
        basic = base64.b64encode(b"sync-client:sync-secret").decode()
        st, _, b = self.token_req({"grant_type": "client_credentials"},
                                  {"Authorization": "Basic " + basic})
        self.assertEqual(st, 200, b)

    def test_errors(self):
        cases = [
            ({"grant_type": "client_credentials", "client_id": "sync-client", "client_secret": "wrong"},
             "invalid_client", "invalid client credentials"),
            ({"grant_type": "client_credentials", "client_id": "nope", "client_secret": "sync-secret"},
             "invalid_client_id", "client identifier invalid"),
            ({"grant_type": "authorization_code", "client_id": "sync-client"}, "unsupported_grant_type",
             "grant type not supported"),
            ({"grant_type": "password", "client_id": "sync-client", "client_secret": "sync-secret",
              "username": "sync@example.com", "password": "wrong"}, "invalid_grant", "authentication failure"),
            ({"client_id": "sync-client"}, "unsupported_grant_type", "grant type not supported"),
            ({"grant_type": "refresh_token", "client_id": "sync-client", "refresh_token": "bogus"},
             "invalid_grant", "expired access/refresh token"),
        ]
        for form, err, desc in cases:
            st, _, b = self.token_req(form)
            self.assertEqual((st, b), (400, {"error": err, "error_description": desc}), form)

    def test_password_flow(self):
        for pw in ("sync-password", "sync-passwordsync-token"):
            st, _, b = self.token_req({"grant_type": "password", "client_id": "sync-client",
                                       "client_secret": "sync-secret", "username": "sync@example.com",
                                       "password": pw})
            self.assertEqual(st, 200, b)
        log = json.dumps(self.emu.requests_log())
        self.assertNotIn("sync-password", log)

    def test_refresh_token_flows(self):
        st, _, b = self.token_req({"grant_type": "refresh_token", "client_id": "sync-client",
                                   "client_secret": "sync-secret",
                                   "refresh_token": "sync-refresh-token"})
        self.assertEqual(st, 200, b)
        self.assertEqual(self.emu.request("GET", V + "/limits", None,
                                          {"Authorization": "Bearer " + b["access_token"]})[0], 200)
        st, _, issued = self.emu.request("POST", "/__emulator/salesforce/refresh_token")
        st, _, b = self.token_req({"grant_type": "refresh_token", "client_id": "sync-client",
                                   "refresh_token": issued["refresh_token"]})
        self.assertEqual(st, 200, b)
        st, _, b = self.token_req({"grant_type": "refresh_token", "client_id": "sync-client",
                                   "client_secret": "bad", "refresh_token": "sync-refresh-token"})
        self.assertEqual((st, b["error"]), (400, "invalid_client"))

    def jwt(self, key_pem=None, **claims):
        c = {"iss": "sync-client", "sub": "sync@example.com", "aud": "https://login.salesforce.com",
             "exp": int(time.time()) + 180}
        c.update(claims)
        return certs.jwt_rs256(c, key_pem)

    def test_jwt_bearer(self):
        grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
        st, _, b = self.token_req({"grant_type": grant, "assertion": self.jwt()})
        self.assertEqual(st, 200, b)
        self.assertEqual(self.emu.request("GET", V + "/limits", None,
                                          {"Authorization": "Bearer " + b["access_token"]})[0], 200)
        st, _, b = self.token_req({"grant_type": grant, "assertion": self.jwt(aud=self.emu.url)})
        self.assertEqual(st, 200, b)
        with tempfile.TemporaryDirectory() as d:
            _, other_key, _ = certs.make_tls(d)
            with open(other_key) as f:
                bad_sig = self.jwt(key_pem=f.read())
        cases = [
            (bad_sig, "invalid_grant", "invalid assertion"),
            (self.jwt(exp=int(time.time()) - 10), "invalid_grant", "expired authorization code"),
            (self.jwt(aud="https://evil.example.com"), "invalid_grant", "audience is invalid"),
            (self.jwt(iss="someone"), "invalid_client_id", "client identifier invalid"),
            (self.jwt(sub="other@example.com"), "invalid_grant", "user hasn't approved this consumer"),
            ("not.a.jwt", "invalid_grant", "invalid assertion"),
        ]
        good = self.jwt()
        h, p, s = good.split(".")
        tampered = h + "." + certs.b64url(json.dumps({"iss": "sync-client", "sub": "sync@example.com",
                                                      "aud": "https://login.salesforce.com",
                                                      "exp": int(time.time()) + 9999}).encode()) + "." + s
        cases.append((tampered, "invalid_grant", "invalid assertion"))
        for assertion, err, desc in cases:
            st, _, b = self.token_req({"grant_type": grant, "assertion": assertion})
            self.assertEqual((st, b), (400, {"error": err, "error_description": desc}), desc)

    def test_expired_and_invalid_token_401(self):
        expected = load_fixture("salesforce/restforce/spec__fixtures__expired_session_response.json")
        st, _, b = self.emu.request("GET", V + "/sobjects/", None, {"Authorization": "Bearer nope"})
        self.assertEqual((st, b), (401, expected))
        st, _, b = self.emu.request("GET", V + "/sobjects/")
        self.assertEqual((st, b), (401, expected))
        self.assertEqual(self.call("GET", "/sobjects/")[0], 200)
        self.emu.config(token_ttl_s=60)
        self.advance(61)
        st, _, b = self.call("GET", "/sobjects/")
        self.assertEqual((st, b), (401, expected))

    def test_expire_tokens_control(self):
        self.assertEqual(self.call("GET", "/limits")[0], 200)
        self.emu.request("POST", "/__emulator/salesforce/expire_tokens")
        self.assertEqual(self.call("GET", "/limits")[0], 401)


class VersionsLimitsTest(SfTestCase):
    def test_versions(self):
        st, h, b = self.emu.request("GET", "/services/data/")
        self.assertEqual(st, 200)
        self.assertEqual([v["version"] for v in b], ["%d.0" % v for v in range(50, 67)])
        self.assertEqual(b[0], {"label": "Winter '21", "url": "/services/data/v50.0", "version": "50.0"})
        self.assertEqual(b[-1], {"label": "Spring '26", "url": "/services/data/v66.0", "version": "66.0"})
        for old in ("v49.0", "v31.0", "v67.0", "v62.1"):
            st, _, b = self.emu.request("GET", "/services/data/%s/sobjects/" % old, None, self.h)
            self.assertEqual((st, b), (404, [{"message": "The requested resource does not exist",
                                              "errorCode": "NOT_FOUND"}]), old)

    def test_every_advertised_version_is_served(self):
        cid = self.create("Contact", LastName="v")
        for v in self.emu.request("GET", "/services/data/")[2]:
            base = v["url"]
            st, _, b = self.emu.request("GET", base + "/sobjects/Contact/" + cid, None, self.h)
            self.assertEqual((st, b["attributes"]["url"]), (200, "%s/sobjects/Contact/%s" % (base, cid)), base)
            st, _, b = self.emu.request("GET", base + "/query?q=" + urllib.parse.quote(
                "SELECT Id FROM Contact"), None, self.h)
            self.assertEqual((st, b["records"][0]["attributes"]["url"]),
                             (200, "%s/sobjects/Contact/%s" % (base, cid)), base)
            st, _, b = self.emu.request("PATCH", base + "/composite/sobjects/Contact/Sync_Key__c", {
                "records": [{"attributes": {"type": "Contact"}, "Sync_Key__c": "k" + v["version"],
                             "LastName": "n"}]}, self.h)
            self.assertEqual((st, b[0]["success"], b[0]["created"]), (200, True, True), base)

    def test_limit_info_and_exceeded(self):
        self.emu.config(salesforce_daily_limit=3)
        seen = []
        for _ in range(3):
            st, h, _ = self.call("GET", "/limits")
            self.assertEqual(st, 200)
            seen.append(h["sforce-limit-info"])
        self.assertEqual(seen, ["api-usage=1/3", "api-usage=2/3", "api-usage=3/3"])
        st, h, b = self.call("GET", "/limits")
        self.assertEqual(st, 403)
        self.assertEqual(b, [{"message": "TotalRequests Limit exceeded.",
                              "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
        self.assertEqual(h["sforce-limit-info"], "api-usage=4/3")
        # error responses carry the header too
        self.emu.config(salesforce_daily_limit=100)
        st, h, _ = self.call("GET", "/sobjects/Nope/describe")
        self.assertEqual(st, 404)
        self.assertIn("sforce-limit-info", h)

    def test_limits_resource(self):
        self.emu.config(salesforce_daily_limit=50)
        st, _, b = self.call("GET", "/limits")
        self.assertEqual(b["DailyApiRequests"], {"Max": 50, "Remaining": 49})


class DescribeTest(SfTestCase):
    def test_global(self):
        st, _, b = self.call("GET", "/sobjects/")
        self.assertEqual((st, b["encoding"], b["maxBatchSize"]), (200, "UTF-8", 200))
        prefixes = {o["name"]: o["keyPrefix"] for o in b["sobjects"]}
        self.assertEqual({k: prefixes[k] for k in ("Account", "Contact", "Lead", "Opportunity")},
                         {"Account": "001", "Contact": "003", "Lead": "00Q", "Opportunity": "006"})
        acc = [o for o in b["sobjects"] if o["name"] == "Account"][0]
        self.assertEqual(acc["urls"]["describe"], V + "/sobjects/Account/describe")

    def test_contact_fields(self):
        st, _, d = self.call("GET", "/sobjects/Contact/describe")
        self.assertEqual(st, 200)
        f = {x["name"]: x for x in d["fields"]}
        self.assertEqual(f["Id"]["type"], "id")
        self.assertEqual((f["Sync_Key__c"]["externalId"], f["Sync_Key__c"]["unique"],
                          f["Sync_Key__c"]["custom"]), (True, True, True))
        self.assertEqual((f["LastName"]["nillable"], f["LastName"]["length"]), (False, 80))
        self.assertEqual((f["Name"]["createable"], f["Name"]["updateable"]), (False, False))
        self.assertEqual(f["AccountId"]["referenceTo"], ["Account"])
        self.assertEqual(f["AccountId"]["relationshipName"], "Account")
        self.assertEqual(f["MailingAddress"]["type"], "address")
        self.assertFalse(f["MailingAddress"]["createable"])
        self.assertEqual(f["Email"]["type"], "email")
        self.assertTrue(f["LeadSource"]["picklistValues"])
        for sysf in ("Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp",
                     "CreatedById", "LastModifiedById"):
            self.assertFalse(f[sysf]["createable"] or f[sysf]["updateable"], sysf)
        self.assertTrue(f["OwnerId"]["createable"])
        types = {x["type"] for x in d["fields"]}
        _, _, o = self.call("GET", "/sobjects/Opportunity/describe")
        _, _, a = self.call("GET", "/sobjects/Account/describe")
        types |= {x["type"] for x in o["fields"]} | {x["type"] for x in a["fields"]}
        for t in ("id", "reference", "string", "picklist", "email", "phone", "url", "textarea",
                  "boolean", "int", "double", "currency", "percent", "date", "datetime", "address"):
            self.assertIn(t, types)
        self.assertIn({"field": "AccountId", "deprecatedAndHidden": False,
                       "relationshipName": "Contacts", "cascadeDelete": False,
                       "childSObject": "Contact"}, a["childRelationships"])

    def test_unknown_object(self):
        for path in ("/sobjects/Nope/describe", "/sobjects/Nope", "/sobjects/Nope/001Em0000000001AAA"):
            st, _, b = self.call("GET", path)
            self.assertEqual((st, b), (404, [{"message": "The requested resource does not exist",
                                              "errorCode": "NOT_FOUND"}]))


class IdTest(unittest.TestCase):
    def test_checksum_known_ids(self):
        for i in ("001dM00003kS3tNQAS", "003dM00001wBXYDQA4", "0014S000007NxmlQAC",
                  "00Q4S000002sSacUAE", "001xx000003DHP0AAO"):
            self.assertEqual(id_suffix(i[:15]), i[15:])
            self.assertEqual(to18(i[:15]), i)
            self.assertEqual(to18(i.upper()), i)     # 18-char ids are case-insensitive
        self.assertIsNone(to18("001dM00003kS3tN"[:14]))
        self.assertIsNone(to18("001dM00003kS3t!"))


class RecordTest(SfTestCase):
    def test_crud_and_stamps(self):
        st, h, b = self.call("POST", "/sobjects/Account", {"Name": "Acme", "Industry": "Apparel",
                                                            "NumberOfEmployees": 10})
        self.assertEqual(st, 201)
        self.assertEqual(set(b), {"id", "success", "errors"})
        rid = b["id"]
        self.assertRegex(rid, ID_RE)
        self.assertEqual(rid[:3], "001")
        self.assertEqual(id_suffix(rid[:15]), rid[15:])
        self.assertEqual(h["location"], V + "/sobjects/Account/" + rid)
        r = self.get("Account", rid)
        self.assertEqual(r["attributes"], {"type": "Account", "url": V + "/sobjects/Account/" + rid})
        self.assertEqual((r["Name"], r["IsDeleted"], r["BillingAddress"]), ("Acme", False, None))
        for k in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
            self.assertRegex(r[k], STAMP_RE)
        self.assertRegex(r["OwnerId"], r"^005")
        # 15-char id and case-insensitive 18-char id
        self.assertEqual(self.get("Account", rid[:15])["Id"], rid)
        self.assertEqual(self.get("Account", rid[:15] + rid[15:].lower())["Id"], rid)
        st, _, b = self.call("GET", "/sobjects/Account/%s?fields=Name,Industry" % rid)
        self.assertEqual(set(b), {"attributes", "Name", "Industry"})
        st, _, b = self.call("PATCH", "/sobjects/Account/" + rid, {"BillingCity": "Paris"})
        self.assertEqual((st, b), (204, None))
        r2 = self.get("Account", rid)
        self.assertGreater(r2["SystemModstamp"], r["SystemModstamp"])
        self.assertGreater(r2["LastModifiedDate"], r["LastModifiedDate"])
        self.assertEqual(r2["CreatedDate"], r["CreatedDate"])
        self.assertEqual(r2["BillingAddress"]["city"], "Paris")
        self.assertEqual(self.call("DELETE", "/sobjects/Account/" + rid)[:3:2], (204, None))
        expected = load_fixture("salesforce/connectors/providers__salesforce__test__crm__delete__not-found.json")
        self.assertEqual(self.call("DELETE", "/sobjects/Account/" + rid)[::2], (404, expected))
        self.assertEqual(self.call("PATCH", "/sobjects/Account/" + rid, {"Name": "x"})[::2], (404, expected))
        self.assertEqual(self.call("GET", "/sobjects/Account/" + rid)[0], 404)

    def test_name_compound_and_opportunity_derived(self):
        cid = self.create("Contact", FirstName="Grace", LastName="Hopper")
        self.assertEqual(self.get("Contact", cid)["Name"], "Grace Hopper")
        oid = self.create("Opportunity", Name="Deal", StageName="Closed Won", CloseDate="2026-06-30",
                          Amount=1000, Probability=50)
        o = self.get("Opportunity", oid)
        self.assertEqual((o["IsWon"], o["IsClosed"], o["ExpectedRevenue"]), (True, True, 500))

    def test_nonexistent_and_malformed_ids(self):
        missing = "001Em0000099999" + id_suffix("001Em0000099999")
        for m in ("GET", "DELETE"):
            self.assertEqual(self.call(m, "/sobjects/Account/" + missing)[0], 404)
        st, _, b = self.call("PATCH", "/sobjects/Account/" + missing, {"Name": "x"})
        self.assertEqual((st, b[0]["errorCode"]), (404, "NOT_FOUND"))
        st, _, b = self.call("PATCH", "/sobjects/Account/001RM000003oLrB000", {"Name": "x"})
        self.assertEqual((st, b[0]["errorCode"], b[0]["message"]),
                         (400, "MALFORMED_ID", "malformed id 001RM000003oLrB000"))

    def err(self, obj, body, method="POST", rid=None):
        path = "/sobjects/%s" % obj + ("/" + rid if rid else "")
        st, _, b = self.call(method, path, body)
        self.assertEqual(st, 400, b)
        self.assertIsInstance(b, list)
        return b[0]

    def test_validation_errors(self):
        e = self.err("Lead", {"FirstName": "x"})
        self.assertEqual(e, {"message": "Required fields are missing: [LastName, Company]",
                             "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["LastName", "Company"]})
        e = self.err("Opportunity", {"Name": "x"})
        self.assertEqual(e["fields"], ["StageName", "CloseDate"])
        e = self.err("Contact", {"LastName": "x" * 81})
        self.assertEqual(e["errorCode"], "STRING_TOO_LONG")
        self.assertEqual(e["message"], "Last Name: data value too large: %s (max length=80)" % ("x" * 81))
        self.assertEqual(e["fields"], ["LastName"])
        e = self.err("Account", {"Name": "x", "MasterRecordId": None})
        self.assertEqual(e, load_fixture("salesforce/connectors/providers__salesforce__test__invalid-field-upsert.json")[0])
        e = self.err("Contact", {"LastName": "x", "CreatedDate": "2020-01-01T00:00:00Z", "Name": "y"})
        self.assertEqual((e["errorCode"], e["fields"]), ("INVALID_FIELD_FOR_INSERT_UPDATE", ["CreatedDate", "Name"]))
        e = self.err("Account", {"Name": "x", "AccountNumer": "1"})
        self.assertEqual(e, {"message": "No such column 'AccountNumer' on sobject of type Account",
                             "errorCode": "INVALID_FIELD"})
        e = self.err("Contact", {"LastName": "x", "Email": "badone"})
        self.assertEqual(e, {"message": "Email: invalid email address: badone",
                             "errorCode": "INVALID_EMAIL_ADDRESS", "fields": ["Email"]})
        e = self.err("Contact", {"LastName": "x", "AccountId": "xyz"})
        self.assertEqual((e["errorCode"], e["fields"]), ("MALFORMED_ID", ["AccountId"]))
        missing = "001Em0000099999" + id_suffix("001Em0000099999")
        e = self.err("Contact", {"LastName": "x", "AccountId": missing})
        self.assertEqual((e["errorCode"], e["message"]), ("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"))
        acc = self.create("Account", Name="gone")
        self.call("DELETE", "/sobjects/Account/" + acc)
        e = self.err("Contact", {"LastName": "x", "AccountId": acc})
        self.assertEqual((e["errorCode"], e["message"]), ("ENTITY_IS_DELETED", "entity is deleted"))
        e = self.err("Contact", {"LastName": "x", "DoNotCall": "yes"})
        self.assertEqual(e["errorCode"], "JSON_PARSER_ERROR")
        e = self.err("Opportunity", {"Name": "x", "StageName": "Prospecting", "CloseDate": "31/12/2026"})
        self.assertEqual(e["errorCode"], "JSON_PARSER_ERROR")
        st, _, b = self.call("POST", "/sobjects/Contact", '{"LastName": ', {"Content-Type": "application/json"})
        self.assertEqual((st, b[0]["errorCode"]), (400, "JSON_PARSER_ERROR"))
        # update: nulling a required field
        cid = self.create("Contact", LastName="keep")
        e = self.err("Contact", {"LastName": None}, "PATCH", cid)
        self.assertEqual(e["errorCode"], "REQUIRED_FIELD_MISSING")

    def test_duplicate_value_on_unique_external_id(self):
        first = self.create("Contact", LastName="a", Sync_Key__c="K-1")
        e = self.err("Contact", {"LastName": "b", "Sync_Key__c": "k-1"})     # case-insensitive
        self.assertEqual(e, {"message": "duplicate value found: Sync_Key__c duplicates value on record with id: " + first,
                             "errorCode": "DUPLICATE_VALUE", "fields": ["Sync_Key__c"]})
        # a deleted record frees its key
        self.call("DELETE", "/sobjects/Contact/" + first)
        self.create("Contact", LastName="b", Sync_Key__c="K-1")

    def test_upsert_by_external_id(self):
        st, h, b = self.call("PATCH", "/sobjects/Contact/Sync_Key__c/abc-1", {"LastName": "Up"})
        self.assertEqual(st, 201)
        self.assertEqual(set(b), {"id", "success", "errors", "created"})
        self.assertTrue(b["created"])
        rid = b["id"]
        self.assertEqual(h["location"], V + "/sobjects/Contact/" + rid)
        st, h, b = self.call("PATCH", "/sobjects/Contact/Sync_Key__c/abc-1", {"FirstName": "Again"})
        self.assertEqual((st, b), (200, {"id": rid, "success": True, "errors": [], "created": False}))
        self.assertEqual(self.get("Contact", rid)["Name"], "Again Up")
        # by Id, updateOnly
        st, _, b = self.call("PATCH", "/sobjects/Contact/Id/%s?updateOnly=true" % rid, {"Title": "T"})
        self.assertEqual((st, b["created"]), (200, False))
        self.assertEqual(self.call("PATCH", "/sobjects/Contact/Sync_Key__c/zzz?updateOnly=true",
                                   {"LastName": "n"})[0], 404)
        # Email (idLookup) with several matches -> 300 and a list of URLs
        a = self.create("Contact", LastName="a", Email="same@example.com")
        c = self.create("Contact", LastName="c", Email="same@example.com")
        st, _, b = self.call("PATCH", "/sobjects/Contact/Email/same%40example.com", {"Title": "x"})
        self.assertEqual(st, 300)
        self.assertEqual(sorted(b), sorted([V + "/sobjects/Contact/" + a, V + "/sobjects/Contact/" + c]))
        st, _, b = self.call("PATCH", "/sobjects/Contact/Email/new%40example.com", {"LastName": "n"})
        self.assertEqual((st, b["created"]), (201, True))
        self.assertEqual(self.get("Contact", b["id"])["Email"], "new@example.com")
        # not an external id field
        st, _, b = self.call("PATCH", "/sobjects/Contact/Namez/x", {"LastName": "n"})
        self.assertEqual((st, b), (404, [{"message": "Provided external ID field does not exist or is not accessible: Namez",
                                          "errorCode": "NOT_FOUND"}]))
        self.assertEqual(self.call("PATCH", "/sobjects/Contact/LastName/x", {"FirstName": "n"})[0], 404)
        # read by external id
        st, _, b = self.call("GET", "/sobjects/Contact/Sync_Key__c/abc-1")
        self.assertEqual((st, b["Id"]), (200, rid))

    def test_parent_by_external_id(self):
        st, _, _ = self.emu.request("POST", "/__emulator/salesforce/fields/Account",
                                    {"name": "Ext_Id__c", "type": "string", "length": 40,
                                     "externalId": True, "unique": True})
        self.assertEqual(st, 201)
        acc = self.create("Account", Name="Parent", Ext_Id__c="PG-42")
        cid = self.create("Contact", LastName="Kid", Account={"Ext_Id__c": "PG-42"})
        self.assertEqual(self.get("Contact", cid)["AccountId"], acc)
        st, _, b = self.call("POST", "/sobjects/Contact", {"LastName": "Kid", "Account": {"Ext_Id__c": "nope"}})
        self.assertEqual((st, b[0]["errorCode"]), (400, "INVALID_FIELD"))
        self.assertIn("Foreign key external ID: nope not found", b[0]["message"])


class CollectionsTest(SfTestCase):
    def test_create_mixed_partial(self):
        body = {"allOrNone": False, "records": [
            {"attributes": {"type": "Account"}, "Name": "A"},
            {"attributes": {"type": "Contact"}, "LastName": "B", "Email": "b@example.com"},
            {"attributes": {"type": "Contact"}, "Email": "nolast@example.com"},
            {"attributes": {"type": "Contact"}, "LastName": "C", "Email": "bad"}]}
        st, _, b = self.call("POST", "/composite/sobjects", body)
        self.assertEqual(st, 200)
        self.assertEqual([r["success"] for r in b], [True, True, False, False])
        self.assertEqual((b[0]["id"][:3], b[1]["id"][:3]), ("001", "003"))
        self.assertEqual(b[2], {"success": False, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING",
                                "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}]})
        self.assertEqual(b[3]["errors"][0]["statusCode"], "INVALID_EMAIL_ADDRESS")
        rows = self.emu.request("GET", "/__emulator/records/salesforce/Contact")[2]
        self.assertEqual([r["LastName"] for r in rows], ["B"])

    def test_all_or_none_rolls_back(self):
        body = {"allOrNone": True, "records": [
            {"attributes": {"type": "Contact"}, "FirstName": "x"},
            {"attributes": {"type": "Contact"}, "LastName": "ok"}]}
        st, _, b = self.call("POST", "/composite/sobjects", body)
        self.assertEqual(st, 200)
        self.assertEqual(b, load_fixture(
            "salesforce/connectors/providers__salesforce__test__batch__create__contacts__partial-but-allOrNone.json"))
        self.assertEqual(self.emu.request("GET", "/__emulator/records/salesforce/Contact")[2], [])
        # duplicates inside one batch
        body = {"allOrNone": False, "records": [
            {"attributes": {"type": "Contact"}, "LastName": "a", "Sync_Key__c": "D"},
            {"attributes": {"type": "Contact"}, "LastName": "b", "Sync_Key__c": "d"}]}
        b = self.call("POST", "/composite/sobjects", body)[2]
        self.assertEqual([r["success"] for r in b], [True, False])
        self.assertEqual(b[1]["errors"][0]["statusCode"], "DUPLICATE_VALUE")

    def test_limits_and_request_errors(self):
        recs = [{"attributes": {"type": "Contact"}, "LastName": "n%d" % i} for i in range(201)]
        st, _, b = self.call("POST", "/composite/sobjects", {"records": recs})
        self.assertEqual((st, b), (400, [{"message": "record limit reached. cannot submit more than 200 records into this call",
                                          "errorCode": "EXCEEDED_ID_LIMIT"}]))
        st, _, b = self.call("POST", "/composite/sobjects", {"records": recs[:200]})
        self.assertEqual((st, len(b)), (200, 200))
        ids = ",".join(["001Em0000000001" + id_suffix("001Em0000000001")] * 201)
        self.assertEqual(self.call("DELETE", "/composite/sobjects?ids=" + ids)[2][0]["errorCode"], "EXCEEDED_ID_LIMIT")
        st, _, b = self.call("POST", "/composite/sobjects", {"records": [
            {"attributes": {"type": "Contact"}, "LastName": "x", "Bogus__c": 1}]})
        self.assertEqual((st, b[0]["errorCode"]), (400, "INVALID_FIELD"))
        st, _, b = self.call("POST", "/composite/sobjects", {"records": [
            {"attributes": {"type": "Nope"}, "Name": "x"}]})
        self.assertEqual((st, b[0]["errorCode"]), (400, "INVALID_TYPE"))

    def test_update_and_delete(self):
        ids = self.emu.seed("salesforce", "Contact", [{"LastName": "a"}, {"LastName": "b"}])["ids"]
        missing = "003Em0000099999" + id_suffix("003Em0000099999")
        st, _, b = self.call("PATCH", "/composite/sobjects", {"allOrNone": False, "records": [
            {"attributes": {"type": "Contact"}, "id": ids[0], "Title": "CEO"},
            {"attributes": {"type": "Contact"}, "Title": "no id"},
            {"attributes": {"type": "Contact"}, "id": missing, "Title": "x"},
            {"attributes": {"type": "Contact"}, "Id": ids[1][:15], "Title": "CTO"}]})
        self.assertEqual(st, 200)
        self.assertEqual(b[0], {"id": ids[0], "success": True, "errors": []})
        self.assertEqual(b[1], {"success": False, "errors": [{"statusCode": "MISSING_ARGUMENT",
                                "message": "Id not specified in an update call", "fields": []}]})
        self.assertEqual(b[2]["errors"][0], {"statusCode": "INVALID_CROSS_REFERENCE_KEY",
                                             "message": "invalid cross reference id", "fields": []})
        self.assertEqual(b[3]["id"], ids[1])
        self.assertEqual(self.get("Contact", ids[1])["Title"], "CTO")
        st, _, b = self.call("DELETE", "/composite/sobjects?allOrNone=true&ids=%s,%s" % (ids[0], missing))
        self.assertEqual([r["success"] for r in b], [False, False])
        self.assertEqual(b[0]["errors"][0]["statusCode"], "ALL_OR_NONE_OPERATION_ROLLED_BACK")
        self.assertEqual(self.get("Contact", ids[0])["IsDeleted"], False)
        st, _, b = self.call("DELETE", "/composite/sobjects?allOrNone=false&ids=%s,%s" % (ids[0], ids[1]))
        self.assertEqual(b, [{"id": ids[0], "success": True, "errors": []},
                             {"id": ids[1], "success": True, "errors": []}])
        st, _, b = self.call("DELETE", "/composite/sobjects?ids=%s" % ids[0])
        self.assertEqual(b[0]["errors"][0]["statusCode"], "ENTITY_IS_DELETED")

    def test_upsert_collection(self):
        existing = self.create("Contact", LastName="old", Sync_Key__c="E1")
        st, _, b = self.call("PATCH", "/composite/sobjects/Contact/Sync_Key__c", {"allOrNone": False, "records": [
            {"attributes": {"type": "Contact"}, "Sync_Key__c": "E1", "FirstName": "Upd"},
            {"attributes": {"type": "Contact"}, "Sync_Key__c": "E2", "LastName": "New"},
            {"attributes": {"type": "Contact"}, "Sync_Key__c": "E3"},
            {"Sync_Key__c": "E4", "LastName": "no attributes"}]})
        self.assertEqual(st, 200)
        self.assertEqual(b[0], {"id": existing, "success": True, "errors": [], "created": False})
        self.assertEqual((b[1]["success"], b[1]["created"]), (True, True))
        self.assertEqual((b[2]["success"], b[2]["created"], b[2]["errors"][0]["statusCode"]),
                         (False, False, "REQUIRED_FIELD_MISSING"))
        self.assertEqual(b[3]["errors"][0]["statusCode"], "JSON_PARSER_ERROR")
        self.assertEqual(self.get("Contact", existing)["FirstName"], "Upd")
        self.assertEqual(self.get("Contact", b[1]["id"])["Sync_Key__c"], "E2")
        st, _, b = self.call("PATCH", "/composite/sobjects/Contact/LastName", {"records": []})
        self.assertEqual((st, b[0]["errorCode"]), (404, "NOT_FOUND"))

    def test_upsert_same_external_id_twice_fails_every_such_record(self):
        """Two records of one upsert call with the same external ID (compared
        as the field compares: case-insensitively here) both fail with
        DUPLICATE_VALUE "Duplicate external id specified: <value>", whether
        or not a record with that ID exists; neither is written."""
        existing = self.create("Contact", LastName="old", Sync_Key__c="E1")
        recs = [{"attributes": {"type": "Contact"}, "Sync_Key__c": "D1", "LastName": "first"},
                {"attributes": {"type": "Contact"}, "Sync_Key__c": "N1", "LastName": "other"},
                {"attributes": {"type": "Contact"}, "Sync_Key__c": "d1", "LastName": "second"},
                {"attributes": {"type": "Contact"}, "Sync_Key__c": "E1", "FirstName": "x"},
                {"attributes": {"type": "Contact"}, "Sync_Key__c": "e1", "FirstName": "y"}]

        def dup(value):
            return {"success": False, "created": False, "errors": [{
                "statusCode": "DUPLICATE_VALUE", "message": "Duplicate external id specified: " + value,
                "fields": ["Sync_Key__c"]}]}

        def keys():
            rows = self.emu.request("GET", "/__emulator/records/salesforce/Contact")[2]
            return sorted((r["Sync_Key__c"], r["FirstName"]) for r in rows)
        # allOrNone: the duplicates carry their own error, the rest are rolled back
        st, _, b = self.call("PATCH", "/composite/sobjects/Contact/Sync_Key__c", {"allOrNone": True, "records": recs})
        self.assertEqual(st, 200)
        rolled = {"success": False, "created": False, "errors": [{
            "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "fields": [],
            "message": "Record rolled back because not all records were valid and the request was using AllOrNone header"}]}
        self.assertEqual(b, [dup("D1"), rolled, dup("d1"), dup("E1"), dup("e1")])
        self.assertEqual(keys(), [("E1", None)])
        # without allOrNone: only the other record is written
        st, _, b = self.call("PATCH", "/composite/sobjects/Contact/Sync_Key__c", {"allOrNone": False, "records": recs})
        self.assertEqual(st, 200)
        self.assertEqual([b[0], b[2], b[3], b[4]], [dup("D1"), dup("d1"), dup("E1"), dup("e1")])
        self.assertEqual((b[1]["success"], b[1]["created"]), (True, True))
        self.assertEqual(keys(), [("E1", None), ("N1", None)])
        self.assertEqual(self.get("Contact", existing)["FirstName"], None)
        # upsert by Id: the same record twice (15- and 18-character forms)
        st, _, b = self.call("PATCH", "/composite/sobjects/Contact/Id", {"records": [
            {"attributes": {"type": "Contact"}, "Id": existing, "FirstName": "a"},
            {"attributes": {"type": "Contact"}, "Id": existing[:15], "FirstName": "b"}]})
        self.assertEqual([r["errors"][0]["statusCode"] for r in b], ["DUPLICATE_VALUE"] * 2)
        self.assertEqual(self.get("Contact", existing)["FirstName"], None)

    def test_retrieve(self):
        ids = self.emu.seed("salesforce", "Contact", [{"LastName": "a"}, {"LastName": "b"}])["ids"]
        st, _, b = self.call("GET", "/composite/sobjects/Contact?ids=%s,%s&fields=LastName" % tuple(ids))
        self.assertEqual([r["LastName"] for r in b], ["a", "b"])
        st, _, b = self.call("POST", "/composite/sobjects/Contact", {"ids": ids[:1], "fields": ["Id", "LastName"]})
        self.assertEqual(b[0]["Id"], ids[0])

    def test_retrieve_gone_ids_are_null_in_place(self):
        # what sync's fetch relies on: one entry per ID asked, in order, null when gone
        ids = self.emu.seed("salesforce", "Contact", [{"LastName": "a"}, {"LastName": "b"}])["ids"]
        self.emu.request("DELETE", "/__emulator/records/salesforce/Contact/" + ids[0])
        st, _, b = self.call("POST", "/composite/sobjects/Contact",
                             {"ids": [ids[0], ids[1][:15], "003000000000000AAA"],
                              "fields": ["Id", "LastName", "SystemModstamp"]})
        self.assertEqual(st, 200)
        self.assertEqual(len(b), 3)
        self.assertIsNone(b[0])
        self.assertEqual((b[1]["Id"], b[1]["LastName"]), (ids[1], "b"))
        self.assertIsNone(b[2])
        st, _, b = self.call("POST", "/composite/sobjects/Contact", {"ids": ids * 1001, "fields": ["Id"]})
        self.assertEqual((st, b[0]["errorCode"]), (400, "EXCEEDED_ID_LIMIT"))


class QueryTest(SfTestCase):
    def setUp(self):
        super().setUp()
        self.acc = self.emu.seed("salesforce", "Account", [{"Name": "Acme"}])["ids"][0]
        self.ids = self.emu.seed("salesforce", "Contact", [
            {"LastName": "Alpha", "FirstName": "Ann", "Email": "ann@a.com", "AccountId": self.acc,
             "DoNotCall": True},
            {"LastName": "beta", "FirstName": None, "Email": "b@b.com"},
            {"LastName": "Gamma", "FirstName": "Gus", "Email": None, "Title": "CEO"},
            {"LastName": "Delta", "FirstName": "Dee", "Email": "d@a.com", "Title": "CTO"}])["ids"]

    def names(self, soql, **kw):
        st, _, b = self.q(soql, **kw)
        self.assertEqual(st, 200, b)
        return [r.get("LastName") for r in b["records"]]

    def test_shape_and_fields(self):
        st, h, b = self.q("SELECT Id, LastName, Name, Account.Name, DoNotCall FROM Contact WHERE LastName = 'alpha'")
        self.assertEqual(st, 200)
        self.assertEqual((b["totalSize"], b["done"]), (1, True))
        self.assertNotIn("nextRecordsUrl", b)
        r = b["records"][0]
        self.assertEqual(list(r), ["attributes", "Id", "LastName", "Name", "Account", "DoNotCall"])
        self.assertEqual(r["attributes"], {"type": "Contact", "url": V + "/sobjects/Contact/" + self.ids[0]})
        self.assertEqual(r["Account"], {"attributes": {"type": "Account", "url": V + "/sobjects/Account/" + self.acc},
                                        "Name": "Acme"})
        self.assertEqual((r["Name"], r["DoNotCall"]), ("Ann Alpha", True))
        r = self.q("SELECT Account.Name FROM Contact WHERE LastName = 'beta'")[2]["records"][0]
        self.assertIsNone(r["Account"])

    def test_where_operators(self):
        n = self.names
        self.assertEqual(n("SELECT LastName FROM Contact WHERE Email != null ORDER BY LastName"),
                         ["Alpha", "beta", "Delta"])
        self.assertEqual(n("SELECT LastName FROM Contact WHERE Email = null"), ["Gamma"])
        self.assertEqual(n("SELECT LastName FROM Contact WHERE LastName IN ('Alpha','GAMMA') ORDER BY LastName"),
                         ["Alpha", "Gamma"])
        self.assertEqual(n("SELECT LastName FROM Contact WHERE LastName NOT IN ('Alpha','Gamma') ORDER BY LastName"),
                         ["beta", "Delta"])
        self.assertEqual(n("SELECT LastName FROM Contact WHERE Email LIKE '%@a.com' ORDER BY LastName"),
                         ["Alpha", "Delta"])
        self.assertEqual(n("SELECT LastName FROM Contact WHERE (Title = 'CEO' OR Title = 'CTO') AND NOT Email = null"),
                         ["Delta"])
        self.assertEqual(n("SELECT LastName FROM Contact WHERE DoNotCall = true"), ["Alpha"])
        self.assertEqual(n("SELECT LastName FROM Contact WHERE LastName > 'c' ORDER BY LastName"),
                         ["Delta", "Gamma"])
        self.assertEqual(n("SELECT LastName FROM Contact WHERE LastName <> 'alpha' AND LastName <= 'Delta' ORDER BY LastName"),
                         ["beta", "Delta"])
        self.assertEqual(n("SELECT LastName FROM Contact WHERE AccountId = '%s'" % self.acc[:15]), ["Alpha"])
        self.assertEqual(n("SELECT LastName FROM Contact WHERE Id IN ('%s', '%s') ORDER BY LastName"
                           % (self.ids[1], self.ids[2])), ["beta", "Gamma"])
        self.assertEqual(n("SELECT LastName FROM Contact WHERE Account.Name = 'Acme'"), ["Alpha"])

    def test_datetime_and_date_literals(self):
        past = (datetime.now(timezone.utc) - timedelta(hours=1))
        future = (datetime.now(timezone.utc) + timedelta(hours=1))
        for lit in (past.strftime("%Y-%m-%dT%H:%M:%SZ"), past.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                    past.strftime("%Y-%m-%dT%H:%M:%S.000Z"), past.strftime("%Y-%m-%dT%H:%M:%S-00:00")):
            self.assertEqual(len(self.names("SELECT Id FROM Contact WHERE SystemModstamp > %s" % lit)), 4, lit)
        self.assertEqual(self.names("SELECT Id FROM Contact WHERE SystemModstamp > %s"
                                    % future.strftime("%Y-%m-%dT%H:%M:%SZ")), [])
        self.assertEqual(len(self.names("SELECT Id FROM Contact WHERE CreatedDate = TODAY")), 4)
        self.assertEqual(len(self.names("SELECT Id FROM Contact WHERE CreatedDate = LAST_N_DAYS:2")), 4)
        self.emu.seed("salesforce", "Opportunity", [
            {"Name": "o1", "StageName": "Prospecting", "CloseDate": "2026-01-15"},
            {"Name": "o2", "StageName": "Prospecting", "CloseDate": "2026-03-01"}])
        st, _, b = self.q("SELECT Name FROM Opportunity WHERE CloseDate >= 2026-02-01")
        self.assertEqual([r["Name"] for r in b["records"]], ["o2"])
        # URL-encoded '+' offset
        st, _, b = self.call("GET", "/query?q=" + urllib.parse.quote(
            "SELECT Id FROM Contact WHERE SystemModstamp > " + past.strftime("%Y-%m-%dT%H:%M:%S+00:00"), safe=""))
        self.assertEqual(b["totalSize"], 4)

    def test_order_by_limit_count(self):
        self.assertEqual(self.names("SELECT LastName FROM Contact ORDER BY FirstName ASC NULLS LAST, LastName"),
                         ["Alpha", "Delta", "Gamma", "beta"])
        self.assertEqual(self.names("SELECT LastName FROM Contact ORDER BY FirstName DESC NULLS FIRST"),
                         ["beta", "Gamma", "Delta", "Alpha"])
        self.assertEqual(self.names("SELECT LastName FROM Contact ORDER BY Title DESC NULLS LAST, LastName DESC"),
                         ["Delta", "Gamma", "beta", "Alpha"])
        self.assertEqual(self.names("SELECT LastName FROM Contact ORDER BY LastName LIMIT 2"), ["Alpha", "beta"])
        st, _, b = self.q("SELECT COUNT() FROM Contact WHERE Email != null")
        self.assertEqual(b, {"totalSize": 3, "done": True, "records": []})

    def test_errors(self):
        st, _, b = self.q("SELECT Foo FROM Account")
        self.assertEqual((st, b), (400, [{"message": "\nSELECT Foo FROM Account\n       ^\nERROR at Row:1:Column:8\n"
                                          "No such column 'Foo' on entity 'Account'. If you are attempting to use a "
                                          "custom field, be sure to append the '__c' after the custom field name. "
                                          "Please reference your WSDL or the describe call for the appropriate names.",
                                          "errorCode": "INVALID_FIELD"}]))
        st, _, b = self.q("SELECT Id,Name,BillingCity,IsDeleted FROM Accout")
        self.assertEqual((st, b), (400, load_fixture("salesforce/connectors/providers__salesforce__test__unknown-object.json")))
        for bad in ("SELECT Id FROM Contact WHERE", "SELECT FROM Contact", "SELECT Id Contact",
                    "SELECT Id FROM Contact WHERE LastName = 'x' ORDER LastName", "DELETE FROM Contact",
                    "SELECT Id FROM Contact LIMIT x", "SELECT Id FROM Contact WHERE LastName = 'x"):
            st, _, b = self.q(bad)
            self.assertEqual((st, b[0]["errorCode"]), (400, "MALFORMED_QUERY"), bad)
            self.assertIn("ERROR at Row:1:Column:", b[0]["message"])
        st, _, b = self.q("SELECT Id FROM Contact WHERE LastName = 5")
        self.assertEqual((st, b[0]["errorCode"]), (400, "INVALID_FIELD"))
        st, _, b = self.q("SELECT Id FROM Contact WHERE Foo__r.Name = 'x'")
        self.assertEqual((st, b[0]["errorCode"]), (400, "INVALID_FIELD"))

    def test_query_vs_query_all(self):
        self.call("DELETE", "/sobjects/Contact/" + self.ids[1])
        self.assertEqual(len(self.names("SELECT Id FROM Contact")), 3)
        st, _, b = self.q("SELECT Id, IsDeleted FROM Contact WHERE IsDeleted = true", all_rows=True)
        self.assertEqual([(r["Id"], r["IsDeleted"]) for r in b["records"]], [(self.ids[1], True)])
        self.assertEqual(self.q("SELECT Id FROM Contact", all_rows=True)[2]["totalSize"], 4)
        self.assertEqual(self.names("SELECT Id FROM Contact WHERE IsDeleted = true"), [])
        # cascade: deleting the account deletes its contact
        self.call("DELETE", "/sobjects/Account/" + self.acc)
        st, _, b = self.q("SELECT Id FROM Contact WHERE IsDeleted = true", all_rows=True)
        self.assertEqual(sorted(r["Id"] for r in b["records"]), sorted([self.ids[0], self.ids[1]]))


class ChildSubqueryTest(SfTestCase):
    """Parent-to-child subqueries: SELECT ..., (SELECT ... FROM Contacts) FROM Account."""

    def setUp(self):
        super().setUp()
        self.a, self.b = self.emu.seed("salesforce", "Account", [{"Name": "Acme"}, {"Name": "Bare"}])["ids"]
        self.c = self.emu.seed("salesforce", "Contact", [
            {"LastName": "Zed", "AccountId": self.a, "Email": "z@a.com"},
            {"LastName": "Amy", "AccountId": self.a},
            {"LastName": "Solo"}])["ids"]

    def rec(self, obj, rid, **fields):
        out = {"attributes": {"type": obj, "url": V + "/sobjects/%s/%s" % (obj, rid)}}
        out.update(fields)
        return out

    def test_children_under_the_relationship_name_or_null(self):
        st, _, b = self.q("SELECT Id, Name, (SELECT Id, LastName FROM Contacts ORDER BY LastName) "
                          "FROM Account ORDER BY Name")
        self.assertEqual(st, 200, b)
        self.assertEqual((b["totalSize"], b["done"]), (2, True))
        acme, bare = b["records"]
        self.assertEqual(list(acme), ["attributes", "Id", "Name", "Contacts"])
        self.assertEqual(acme["Contacts"], {"totalSize": 2, "done": True, "records": [
            self.rec("Contact", self.c[1], Id=self.c[1], LastName="Amy"),
            self.rec("Contact", self.c[0], Id=self.c[0], LastName="Zed")]})
        self.assertIsNone(bare["Contacts"])

    def test_subquery_where_limit_parent_fields_and_case(self):
        st, _, b = self.q("SELECT Name, (select LastName, Account.Name from contacts where Email != null limit 5), "
                          "(SELECT Name FROM Opportunities) FROM Account WHERE Name = 'Acme'")
        self.assertEqual(st, 200, b)
        r = b["records"][0]
        self.assertEqual(list(r), ["attributes", "Name", "Contacts", "Opportunities"])
        self.assertEqual(r["Contacts"]["records"], [self.rec(
            "Contact", self.c[0], LastName="Zed", Account=self.rec("Account", self.a, Name="Acme"))])
        self.assertIsNone(r["Opportunities"])
        st, _, b = self.q("SELECT Name, (SELECT LastName FROM Contacts ORDER BY LastName DESC LIMIT 1) "
                          "FROM Account WHERE Name = 'Acme'")
        self.assertEqual(b["records"][0]["Contacts"]["records"], [self.rec("Contact", self.c[0], LastName="Zed")])

    def test_deleted_children_only_in_query_all(self):
        self.call("DELETE", "/sobjects/Contact/" + self.c[0])
        soql = "SELECT Name, (SELECT LastName, IsDeleted FROM Contacts ORDER BY LastName) FROM Account WHERE Name = 'Acme'"
        got = self.q(soql)[2]["records"][0]["Contacts"]
        self.assertEqual([c["LastName"] for c in got["records"]], ["Amy"])
        got = self.q(soql, all_rows=True)[2]["records"][0]["Contacts"]
        self.assertEqual([(c["LastName"], c["IsDeleted"]) for c in got["records"]], [("Amy", False), ("Zed", True)])

    def test_custom_child_relationship_and_nesting_from_v58(self):
        st, _, _ = self.emu.request("POST", "/__emulator/salesforce/objects/Visit__c", {
            "keyPrefix": "a0V", "fields": [{"name": "Contact__c", "type": "reference", "referenceTo": "Contact",
                                            "childRelationshipName": "Visits__r"}]})
        self.assertEqual(st, 201)
        st, _, d = self.call("GET", "/sobjects/Contact/describe")
        self.assertIn({"field": "Contact__c", "deprecatedAndHidden": False, "relationshipName": "Visits__r",
                       "cascadeDelete": False, "childSObject": "Visit__c"}, d["childRelationships"])
        v = self.emu.seed("salesforce", "Visit__c", [{"Name": "V1", "Contact__c": self.c[0]}])["ids"][0]
        soql = ("SELECT Name, (SELECT LastName, (SELECT Name FROM Visits__r) FROM Contacts ORDER BY LastName) "
                "FROM Account WHERE Name = 'Acme'")
        for ver in ("58.0", "66.0"):
            st, _, b = self.emu.request("GET", "/services/data/v%s/query?q=%s" % (ver, urllib.parse.quote(soql)),
                                        None, self.h)
            self.assertEqual(st, 200, b)
            amy, zed = b["records"][0]["Contacts"]["records"]
            self.assertIsNone(amy["Visits__r"])
            self.assertEqual(zed["Visits__r"]["records"][0]["attributes"]["url"],
                             "/services/data/v%s/sobjects/Visit__c/%s" % (ver, v))
        # before v58.0 a subquery holds no subquery
        st, _, b = self.emu.request("GET", "/services/data/v57.0/query?q=" + urllib.parse.quote(soql), None, self.h)
        self.assertEqual((st, b[0]["errorCode"]), (400, "MALFORMED_QUERY"))
        self.assertIn("SOQL statements cannot query aggregate relationships more than 1 level away from the "
                      "root entity object.", b[0]["message"])
        st, _, b = self.emu.request("GET", "/services/data/v57.0/query?q=" + urllib.parse.quote(
            "SELECT Name, (SELECT Name FROM Visits__r) FROM Contact"), None, self.h)
        self.assertEqual(st, 200, b)

    def test_errors(self):
        st, _, b = self.q("SELECT Name, (SELECT Id FROM Contactz) FROM Account")
        self.assertEqual(st, 400)
        self.assertEqual(b[0]["errorCode"], "INVALID_TYPE")
        self.assertIn("ERROR at Row:1:Column:30\nDidn't understand relationship 'Contactz' in FROM part of query "
                      "call. If you are attempting to use a custom relationship, be sure to append the '__r' after "
                      "the custom relationship name.", b[0]["message"])
        st, _, b = self.q("SELECT Name, (SELECT Nope FROM Contacts) FROM Account")
        self.assertEqual((st, b[0]["errorCode"]), (400, "INVALID_FIELD"))
        self.assertIn("No such column 'Nope' on entity 'Contact'", b[0]["message"])
        for bad in ("SELECT Name, (SELECT Id FROM Contacts FROM Account", "SELECT Name, (SELECT Id) FROM Account",
                    "SELECT Name, (SELECT COUNT() FROM Contacts) FROM Account",
                    "SELECT COUNT(Id), (SELECT Id FROM Contacts) FROM Account"):
            st, _, b = self.q(bad)
            self.assertEqual((st, b[0]["errorCode"]), (400, "MALFORMED_QUERY"), bad)


class AggregateTest(SfTestCase):
    """Aggregate functions without GROUP BY: one AggregateResult row."""

    def setUp(self):
        super().setUp()
        self.emu.seed("salesforce", "Contact", [
            {"LastName": "Alpha", "Email": "a@a.com"}, {"LastName": "beta", "Email": "b@b.com"},
            {"LastName": "Gamma"}])
        self.emu.seed("salesforce", "Opportunity", [
            {"Name": "o1", "StageName": "Prospecting", "CloseDate": "2026-01-15", "Amount": 100},
            {"Name": "o2", "StageName": "Prospecting", "CloseDate": "2026-03-01", "Amount": 50.5},
            {"Name": "o3", "StageName": "Closed Won", "CloseDate": "2026-02-01"}])

    def agg(self, soql):
        st, _, b = self.q(soql)
        self.assertEqual(st, 200, b)
        self.assertEqual((b["totalSize"], b["done"], len(b["records"])), (1, True, 1))
        r = b["records"][0]
        self.assertEqual(r.pop("attributes"), {"type": "AggregateResult"})
        return r

    def test_count_field_is_one_aggregate_result_row(self):
        st, _, b = self.q("SELECT COUNT(Id) FROM Contact")
        self.assertEqual(b, {"totalSize": 1, "done": True, "records": [
            {"attributes": {"type": "AggregateResult"}, "expr0": 3}]})
        self.assertEqual(self.agg("SELECT COUNT(Id) FROM Contact WHERE Email != null"), {"expr0": 2})
        self.assertEqual(self.agg("SELECT COUNT(Id) FROM Contact WHERE LastName = 'nobody'"), {"expr0": 0})
        self.assertEqual(self.agg("SELECT COUNT(Email) FROM Contact"), {"expr0": 2})
        # COUNT() is still the bare count
        self.assertEqual(self.q("SELECT COUNT() FROM Contact")[2], {"totalSize": 3, "done": True, "records": []})

    def test_aliases_and_several_aggregates(self):
        r = self.agg("SELECT COUNT(Id) c FROM Contact")
        self.assertEqual(r, {"c": 3})
        r = self.agg("SELECT COUNT(Id), MAX(Name) top, COUNT_DISTINCT(StageName), SUM(Amount), "
                     "AVG(Amount), MIN(CloseDate) FROM Opportunity")
        self.assertEqual(list(r), ["expr0", "top", "expr1", "expr2", "expr3", "expr4"])
        self.assertEqual(r, {"expr0": 3, "top": "o3", "expr1": 2, "expr2": 150.5, "expr3": 75.25,
                             "expr4": "2026-01-15"})
        self.assertEqual(self.agg("SELECT SUM(Amount) s, MAX(CloseDate) m FROM Opportunity WHERE Name = 'x'"),
                         {"s": None, "m": None})

    def test_aggregate_errors(self):
        st, _, b = self.q("SELECT LastName, COUNT(Id) FROM Contact")
        self.assertEqual((st, b[0]["errorCode"]), (400, "MALFORMED_QUERY"))
        self.assertIn("Field must be grouped or aggregated: LastName", b[0]["message"])
        st, _, b = self.q("SELECT SUM(LastName) FROM Contact")
        self.assertEqual((st, b[0]["errorCode"]), (400, "INVALID_FIELD"))
        self.assertIn("field LastName does not support aggregate operator SUM", b[0]["message"])
        st, _, b = self.q("SELECT COUNT(Nope) FROM Contact")
        self.assertEqual((st, b[0]["errorCode"]), (400, "INVALID_FIELD"))
        st, _, b = self.q("SELECT COUNT(Id) c, COUNT(Email) c FROM Contact")
        self.assertEqual((st, b[0]["errorCode"]), (400, "MALFORMED_QUERY"))


class GroupByTest(SfTestCase):
    """GROUP BY [HAVING]: one AggregateResult row per group."""

    def setUp(self):
        super().setUp()
        self.emu.seed("salesforce", "Contact", [
            {"LastName": "a", "Email": "x@a.com", "Title": "CEO"}, {"LastName": "b", "Email": "X@A.com"},
            {"LastName": "c", "Email": "y@a.com", "Title": "CTO"}, {"LastName": "d"}, {"LastName": "e"}])

    def rows(self, soql):
        st, _, b = self.q(soql)
        self.assertEqual(st, 200, b)
        self.assertEqual((b["totalSize"], b["done"]), (len(b["records"]), True))
        for r in b["records"]:
            self.assertEqual(r.pop("attributes"), {"type": "AggregateResult"})
        return b["records"]

    def test_group_by_having_finds_duplicate_keys(self):
        self.assertEqual(self.rows("SELECT Email, COUNT(Id) n FROM Contact WHERE Email != null "
                                   "GROUP BY Email HAVING COUNT(Id) > 1"), [{"Email": "x@a.com", "n": 2}])

    def test_groups_order_limit_and_null_group(self):
        self.assertEqual(self.rows("SELECT Email, COUNT(Id) FROM Contact GROUP BY Email ORDER BY COUNT(Id) DESC, Email"),
                         [{"Email": None, "expr0": 2}, {"Email": "x@a.com", "expr0": 2},
                          {"Email": "y@a.com", "expr0": 1}])
        self.assertEqual(self.rows("SELECT Email FROM Contact GROUP BY Email ORDER BY Email NULLS LAST LIMIT 2"),
                         [{"Email": "x@a.com"}, {"Email": "y@a.com"}])
        self.assertEqual(self.rows("SELECT Title, MAX(LastName) FROM Contact GROUP BY Title HAVING Title != null "
                                   "ORDER BY Title"),
                         [{"Title": "CEO", "expr0": "a"}, {"Title": "CTO", "expr0": "c"}])
        # no rows, no groups
        self.assertEqual(self.rows("SELECT Email, COUNT(Id) FROM Contact WHERE LastName = 'zz' GROUP BY Email"), [])

    def test_group_by_errors(self):
        st, _, b = self.q("SELECT LastName, COUNT(Id) FROM Contact GROUP BY Email")
        self.assertEqual((st, b[0]["errorCode"]), (400, "MALFORMED_QUERY"))
        self.assertIn("Field must be grouped or aggregated: LastName", b[0]["message"])
        st, _, b = self.q("SELECT Email FROM Contact GROUP BY Email ORDER BY LastName")
        self.assertEqual((st, b[0]["errorCode"]), (400, "MALFORMED_QUERY"))
        self.assertIn("Ordered field must be grouped or aggregated: LastName", b[0]["message"])
        st, _, b = self.q("SELECT CreatedDate FROM Contact GROUP BY CreatedDate")
        self.assertEqual((st, b[0]["errorCode"]), (400, "INVALID_FIELD"))
        self.assertIn("field 'CreatedDate' can not be grouped in a query call", b[0]["message"])
        st, _, b = self.q("SELECT COUNT(Id) FROM Contact HAVING COUNT(Id) > 1")
        self.assertEqual((st, b[0]["errorCode"]), (400, "MALFORMED_QUERY"))


class PagingTest(SfTestCase):
    def test_pages_batch_size_and_expiry(self):
        recs = [{"LastName": "P%05d" % i} for i in range(2500)]
        self.emu.seed("salesforce", "Contact", recs)
        soql = "SELECT Id, LastName FROM Contact ORDER BY LastName"
        st, _, p1 = self.q(soql)
        self.assertEqual((p1["totalSize"], p1["done"], len(p1["records"])), (2500, False, 2000))
        self.assertRegex(p1["nextRecordsUrl"], r"^/services/data/v62\.0/query/0r8[A-Za-z0-9]{15}-2000$")
        st, _, p2 = self.emu.request("GET", p1["nextRecordsUrl"], None, self.h)
        self.assertEqual((st, p2["totalSize"], p2["done"], len(p2["records"])), (200, 2500, True, 500))
        self.assertNotIn("nextRecordsUrl", p2)
        self.assertEqual(p2["records"][0]["LastName"], "P02000")
        # batchSize hint, clamped to 200..2000
        for hint, size in (("batchSize=300", 300), ("batchSize=50", 200), ("batchSize=5000", 2000)):
            st, _, b = self.q(soql, headers={"Sforce-Query-Options": hint})
            self.assertEqual(len(b["records"]), size, hint)
            self.assertTrue(b["nextRecordsUrl"].endswith("-%d" % size))
        st, _, b = self.q(soql, headers={"Sforce-Query-Options": "batchSize=1000"})
        pages = [b]
        while not pages[-1]["done"]:
            pages.append(self.emu.request("GET", pages[-1]["nextRecordsUrl"], None, self.h)[2])
        self.assertEqual([len(p["records"]) for p in pages], [1000, 1000, 500])
        # snapshot: a change after the query does not alter later pages
        st, _, b = self.q(soql)
        self.emu.seed("salesforce", "Contact", [{"LastName": "P00000a"}])
        self.assertEqual(self.emu.request("GET", b["nextRecordsUrl"], None, self.h)[2]["records"][0]["LastName"], "P02000")
        # expiry after inactivity
        self.emu.config(salesforce_query_locator_ttl_s=60)
        st, _, b = self.q(soql)
        self.advance(61)
        self.h = {"Authorization": "Bearer " + self.get_token()}
        st, _, e = self.emu.request("GET", b["nextRecordsUrl"], None, self.h)
        self.assertEqual((st, e), (400, [{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}]))
        self.assertEqual(self.call("GET", "/query/0r8bogus-2000")[0], 400)


class ReplicationTest(SfTestCase):
    def test_get_updated(self):
        now = datetime.now(timezone.utc)
        ids = self.emu.seed("salesforce", "Account", [{"Name": "a"}, {"Name": "b"}])["ids"]
        self.advance(120)
        start, end = iso(now - timedelta(hours=1)), iso(now + timedelta(minutes=5))
        st, _, b = self.call("GET", "/sobjects/Account/updated/?start=%s&end=%s"
                             % (urllib.parse.quote(start), urllib.parse.quote(end)))
        self.assertEqual(st, 200, b)
        self.assertEqual(sorted(b["ids"]), sorted(ids))
        self.assertRegex(b["latestDateCovered"], r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:00\.000\+0000$")
        # unencoded '+' (arrives as a space) is tolerated too
        st, _, b2 = self.call("GET", "/sobjects/Account/updated/?start=%s&end=%s" % (start, end))
        self.assertEqual(sorted(b2["ids"]), sorted(ids))
        for s, e in ((iso(now - timedelta(days=31)), iso(now)), (iso(now), iso(now - timedelta(hours=1)))):
            st, _, b = self.call("GET", "/sobjects/Account/updated/?start=%s&end=%s"
                                 % (urllib.parse.quote(s), urllib.parse.quote(e)))
            self.assertEqual((st, b[0]["errorCode"]), (400, "INVALID_REPLICATION_DATE"))

    def test_get_deleted_and_purge(self):
        now = datetime.now(timezone.utc)
        ids = self.emu.seed("salesforce", "Account", [{"Name": "a"}, {"Name": "b"}])["ids"]
        self.call("DELETE", "/sobjects/Account/" + ids[0])
        self.advance(180)
        self.h = {"Authorization": "Bearer " + self.get_token()}
        q = lambda s, e: self.call("GET", "/sobjects/Account/deleted/?start=%s&end=%s" % (  # noqa: E731
            urllib.parse.quote(iso(s)), urllib.parse.quote(iso(e))))
        st, _, b = q(now - timedelta(days=1), now + timedelta(hours=1))
        self.assertEqual(st, 200, b)
        self.assertEqual([d["id"] for d in b["deletedRecords"]], [ids[0]])
        self.assertRegex(b["deletedRecords"][0]["deletedDate"], STAMP_RE)
        self.assertLessEqual(b["earliestDateAvailable"], (now - timedelta(days=14)).strftime("%Y-%m-%dT%H:%M"))
        st, _, b = q(now - timedelta(days=16), now)
        self.assertEqual((st, b[0]["errorCode"]), (400, "INVALID_REPLICATION_DATE"))
        # purge knob: the log is emptied before that stamp, earliestDateAvailable moves later
        purge = now + timedelta(minutes=1)
        self.emu.config(salesforce_delete_log_purged_before=purge.strftime("%Y-%m-%dT%H:%M:%SZ"))
        st, _, b = q(now - timedelta(days=1), now + timedelta(hours=1))
        self.assertEqual(b["deletedRecords"], [])
        self.assertEqual(b["earliestDateAvailable"], purge.strftime("%Y-%m-%dT%H:%M:00.000+0000"))
        self.assertGreater(b["earliestDateAvailable"], iso(now - timedelta(days=1)))


class CompositeTest(SfTestCase):
    def test_references_and_rollback(self):
        st, _, b = self.call("POST", "/composite", {"allOrNone": True, "compositeRequest": [
            {"method": "POST", "url": V + "/sobjects/Account", "referenceId": "acc", "body": {"Name": "Comp"}},
            {"method": "POST", "url": V + "/sobjects/Contact", "referenceId": "con",
             "body": {"LastName": "C", "AccountId": "@{acc.id}"}},
            {"method": "GET", "url": V + "/sobjects/Contact/@{con.id}?fields=AccountId", "referenceId": "get"}]})
        self.assertEqual(st, 200)
        r = b["compositeResponse"]
        self.assertEqual([x["httpStatusCode"] for x in r], [201, 201, 200])
        self.assertEqual(r[0]["httpHeaders"], {"Location": V + "/sobjects/Account/" + r[0]["body"]["id"]})
        self.assertEqual(r[2]["body"]["AccountId"], r[0]["body"]["id"])
        st, _, b = self.call("POST", "/composite", {"allOrNone": True, "compositeRequest": [
            {"method": "POST", "url": V + "/sobjects/Account", "referenceId": "a1", "body": {"Name": "Rolled"}},
            {"method": "POST", "url": V + "/sobjects/Contact", "referenceId": "c1", "body": {"FirstName": "no last"}}]})
        r = b["compositeResponse"]
        self.assertEqual([x["httpStatusCode"] for x in r], [400, 400])
        self.assertEqual(r[0]["body"], [{"errorCode": "PROCESSING_HALTED", "message":
                                         "The transaction was rolled back since another operation in the same transaction failed."}])
        self.assertEqual(r[1]["body"][0]["errorCode"], "REQUIRED_FIELD_MISSING")
        names = [a["Name"] for a in self.emu.request("GET", "/__emulator/records/salesforce/Account")[2]]
        self.assertEqual(names, ["Comp"])
        subs = [{"method": "GET", "url": V + "/limits", "referenceId": "r%d" % i} for i in range(26)]
        self.assertEqual(self.call("POST", "/composite", {"compositeRequest": subs})[0], 400)

    def test_subrequest_at_a_version_not_served_is_not_found(self):
        st, _, b = self.call("POST", "/composite", {"compositeRequest": [
            {"method": "GET", "url": "/services/data/v49.0/limits", "referenceId": "old"},
            {"method": "GET", "url": "/services/data/v50.0/limits", "referenceId": "oldest"}]})
        self.assertEqual(st, 200)
        r = b["compositeResponse"]
        self.assertEqual((r[0]["httpStatusCode"], r[0]["body"]), (404, [{
            "message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]))
        self.assertEqual(r[1]["httpStatusCode"], 200)

    def test_graph(self):
        st, _, b = self.call("POST", "/composite/graph", {"graphs": [
            {"graphId": "g1", "compositeRequest": [
                {"method": "POST", "url": V + "/sobjects/Account", "referenceId": "a", "body": {"Name": "G"}}]},
            {"graphId": "g2", "compositeRequest": [
                {"method": "POST", "url": V + "/sobjects/Account", "referenceId": "a", "body": {"Name": "H"}},
                {"method": "POST", "url": V + "/sobjects/Contact", "referenceId": "c", "body": {}}]}]})
        self.assertEqual(st, 200)
        self.assertEqual([(g["graphId"], g["isSuccessful"]) for g in b["graphs"]], [("g1", True), ("g2", False)])
        names = [a["Name"] for a in self.emu.request("GET", "/__emulator/records/salesforce/Account")[2]]
        self.assertEqual(names, ["G"])


class ControlHooksTest(SfTestCase):
    def test_remote_user_writes_and_system_update(self):
        cid = self.create("Contact", LastName="Mine")
        mine = self.get("Contact", cid)
        self.emu.request("PATCH", "/__emulator/records/salesforce/Contact/" + cid, {"Title": "Remote"})
        theirs = self.get("Contact", cid)
        self.assertNotEqual(theirs["LastModifiedById"], mine["LastModifiedById"])
        self.assertGreater(theirs["SystemModstamp"], mine["SystemModstamp"])
        self.emu.request("PATCH", "/__emulator/records/salesforce/Contact/" + cid, {"_system_update": True})
        sysup = self.get("Contact", cid)
        self.assertGreater(sysup["SystemModstamp"], theirs["SystemModstamp"])
        self.assertEqual(sysup["LastModifiedDate"], theirs["LastModifiedDate"])
        # remote delete shows up in queryAll and getDeleted
        self.emu.request("DELETE", "/__emulator/records/salesforce/Contact/" + cid)
        st, _, b = self.q("SELECT Id, IsDeleted FROM Contact", all_rows=True)
        self.assertEqual(b["records"][0]["IsDeleted"], True)

    def test_undelete(self):
        acc = self.create("Account", Name="Parent")
        cid = self.create("Contact", LastName="Child", AccountId=acc)
        other = self.create("Contact", LastName="Alone")
        self.emu.request("DELETE", "/__emulator/records/salesforce/Contact/" + other)
        self.emu.request("DELETE", "/__emulator/records/salesforce/Account/" + acc)   # cascades to cid
        deleted = self.get_all("Contact", cid)["SystemModstamp"]
        st, _, b = self.emu.request("POST", "/__emulator/salesforce/undelete/Account/" + acc)
        self.assertEqual((st, sorted(b["undeleted"])), (200, sorted([acc, cid])))
        child = self.get("Contact", cid)
        self.assertGreater(child["SystemModstamp"], deleted)
        st, _, b = self.q("SELECT Id, IsDeleted FROM Contact ORDER BY LastName", all_rows=True)
        self.assertEqual([(r["Id"], r["IsDeleted"]) for r in b["records"]], [(other, True), (cid, False)])
        # a live record, an unknown one
        st, _, b = self.emu.request("POST", "/__emulator/salesforce/undelete/Account/" + acc)
        self.assertEqual(st, 400)
        self.assertIn("UNDELETE_FAILED", json.dumps(b))
        st, _, b = self.emu.request("POST", "/__emulator/salesforce/undelete/Account/001000000000000AAA")
        self.assertEqual(st, 404)
        # the delete log keeps the entry
        now = datetime.now(timezone.utc)
        self.advance(120)
        self.h = {"Authorization": "Bearer " + self.get_token()}
        st, _, b = self.call("GET", "/sobjects/Contact/deleted/?start=%s&end=%s" % (
            urllib.parse.quote(iso(now - timedelta(hours=1))), urllib.parse.quote(iso(now + timedelta(hours=1)))))
        self.assertEqual(sorted(d["id"] for d in b["deletedRecords"]), sorted([cid, other]))

    def get_all(self, obj, rid):
        st, _, b = self.q("SELECT Id, SystemModstamp FROM %s WHERE Id = '%s'" % (obj, rid), all_rows=True)
        self.assertEqual(st, 200, b)
        return b["records"][0]

    def test_bulk_control_create_fast_and_audit_fields(self):
        t0 = time.time()
        ids = self.emu.seed("salesforce", "Contact", [{"LastName": "L%d" % i, "Sync_Key__c": "S%d" % i}
                                                     for i in range(10000)])["ids"]
        self.assertEqual(len(set(ids)), 10000)
        self.assertLess(time.time() - t0, 10)
        self.assertEqual(self.q("SELECT COUNT() FROM Contact")[2]["totalSize"], 10000)
        old = self.emu.seed("salesforce", "Account", [{"Name": "old", "CreatedDate": "2020-01-01T00:00:00Z"}])["ids"][0]
        r = self.get("Account", old)
        self.assertEqual((r["CreatedDate"], r["SystemModstamp"]), ("2020-01-01T00:00:00.000+0000",) * 2)


class SeedTest(unittest.TestCase):
    def test_seed_file(self):
        seed = {"salesforce": {
            "objects": {"Invoice__c": {"keyPrefix": "a0I", "label": "Invoice", "fields": [
                {"name": "Amount__c", "type": "currency", "precision": 16, "scale": 2},
                {"name": "Account__c", "type": "reference", "referenceTo": "Account"},
                {"name": "Status__c", "type": "picklist", "picklistValues": ["Open", "Paid"],
                 "restrictedPicklist": True}]}},
            "fields": {"Contact": [{"name": "Tier__c", "type": "picklist", "picklistValues": ["Gold", "Silver"]}]},
            "records": {"Account": [{"Id": "001Em000000SEED", "Name": "Seeded"}],
                        "Invoice__c": [{"Name": "INV-1", "Amount__c": 12.5, "Account__c": "001Em000000SEED"}],
                        "Contact": [{"LastName": "S", "Tier__c": "Gold"}]}}}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(seed, f)
        try:
            with Emulator("--seed", f.name) as emu:
                st, _, t = emu.request("POST", "/services/oauth2/token", urllib.parse.urlencode({
                    "grant_type": "client_credentials", "client_id": "sync-client",
                    "client_secret": "sync-secret"}), FORM)
                h = {"Authorization": "Bearer " + t["access_token"]}
                st, _, d = emu.request("GET", V + "/sobjects/Invoice__c/describe", None, h)
                self.assertEqual((st, d["keyPrefix"], d["custom"]), (200, "a0I", True))
                self.assertIn("Amount__c", [x["name"] for x in d["fields"]])
                q = urllib.parse.quote("SELECT Name, Amount__c, Account__r.Name FROM Invoice__c")
                st, _, b = emu.request("GET", V + "/query?q=" + q, None, h)
                self.assertEqual(b["records"][0]["Account__r"]["Name"], "Seeded")
                self.assertEqual(b["records"][0]["Amount__c"], 12.5)
                st, _, b = emu.request("POST", V + "/sobjects/Invoice__c", {"Name": "x", "Status__c": "Nope"}, h)
                self.assertEqual((st, b[0]["errorCode"]), (400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"))
                emu.request("POST", "/__emulator/records/salesforce/Contact", [{"LastName": "extra"}])
                emu.reset()
                rows = emu.request("GET", "/__emulator/records/salesforce/Contact")[2]
                self.assertEqual([(r["LastName"], r["Tier__c"]) for r in rows], [("S", "Gold")])
                self.assertEqual(emu.request("GET", "/__emulator/records/salesforce/Account")[2][0]["Id"],
                                 to18("001Em000000SEED"))
        finally:
            os.unlink(f.name)

    def test_schema_drift_control(self):
        with Emulator() as emu:
            emu.request("POST", "/__emulator/salesforce/fields/Contact", {"name": "Score__c", "type": "double"})
            st, _, t = emu.request("POST", "/services/oauth2/token", urllib.parse.urlencode({
                "grant_type": "client_credentials", "client_id": "sync-client",
                "client_secret": "sync-secret"}), FORM)
            h = {"Authorization": "Bearer " + t["access_token"]}
            self.assertEqual(emu.request("POST", V + "/sobjects/Contact", {"LastName": "x", "Score__c": 1.5}, h)[0], 201)
            emu.request("DELETE", "/__emulator/salesforce/fields/Contact/Score__c")
            st, _, b = emu.request("POST", V + "/sobjects/Contact", {"LastName": "x", "Score__c": 1.5}, h)
            self.assertEqual((st, b[0]["errorCode"]), (400, "INVALID_FIELD"))


if __name__ == "__main__":
    unittest.main()
