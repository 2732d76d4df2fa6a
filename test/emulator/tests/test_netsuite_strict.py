"""NetSuite emulation where sync depends on NetSuite's exact behaviour: the
SuiteQL deletedrecord table, the user's time zone in SuiteQL, minute stamps
in the record API, serverTime/governanceLimits, M2M with PS/ES 384/512, and
the asynchronous (batch) record requests."""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from test_netsuite import FORM, NsCase, REC, SQL, TOKEN
from util import EMULATOR, Emulator

sys.path.insert(0, os.path.dirname(EMULATOR))
import certs  # noqa: E402
import netsuite  # noqa: E402  (JWT signing helpers)

PREFIX = "Invalid search query. Detailed unprocessed description follows. "


class DeletedRecordTable(NsCase):
    COLS = "name, recordid, recordtypeid, scriptid, context, deletedby, deleteddate, " \
           "iscustomlist, iscustomrecord, iscustomtransaction, type"

    def test_one_row_per_delete_api_and_control(self):
        a, b_, c = self.seed("customer", [{"companyName": n, "externalId": "E" + n}
                                          for n in ("Acme", "Beta", "Gamma")])
        k = self.create("contact", {"lastName": "Kim", "company": {"id": c}})
        st, _, _ = self.call("DELETE", "%s/customer/%s" % (REC, a))
        self.assertEqual(st, 204)
        self.emu.request("POST", "/__emulator/clock", {"advance_s": 61})
        self.emu.request("DELETE", "/__emulator/records/netsuite/contact/" + k)
        st, _, b = self.sql("SELECT %s FROM deletedrecord ORDER BY deleteddate, recordid" % self.COLS)
        self.assertEqual(st, 200, b)
        self.assertEqual(b["totalResults"], 2)
        first, second = b["items"]
        self.assertEqual(first["type"], "customer")
        self.assertEqual(first["recordid"], a)
        self.assertEqual(first["name"], "Acme")
        self.assertEqual((first["iscustomlist"], first["iscustomrecord"], first["iscustomtransaction"]),
                         ("F", "F", "F"))
        self.assertEqual(first["context"], "RESTWEBSERVICES")
        self.assertNotIn("recordtypeid", first)      # standard record: NULL, omitted
        self.assertNotIn("scriptid", first)
        self.assertNotIn("externalid", first)
        self.assertEqual((second["type"], second["recordid"], second["context"]),
                         ("contact", k, "USERINTERFACE"))
        # deleteddate without TO_CHAR: the user's date format, like any datetime
        self.assertRegex(first["deleteddate"], r"^\d{1,2}/\d{1,2}/\d{4}$")

    def test_incremental_query_and_display_values(self):
        a, b_ = self.seed("customer", [{"companyName": "A"}, {"companyName": "B"}])
        self.call("DELETE", "%s/customer/%s" % (REC, a))
        st, _, b = self.sql("SELECT TO_CHAR(deleteddate, 'YYYY-MM-DD HH24:MI:SS') AS d FROM deletedrecord")
        cut = b["items"][0]["d"]
        self.emu.request("POST", "/__emulator/clock", {"advance_s": 5})
        self.call("DELETE", "%s/customer/%s" % (REC, b_))
        q = ("SELECT recordid, type, BUILTIN.DF(deletedby) AS who, BUILTIN.DF(context) AS ctx "
             "FROM deletedrecord WHERE UPPER(type) = 'CUSTOMER' AND deleteddate > "
             "TO_DATE('%s', 'YYYY-MM-DD HH24:MI:SS') ORDER BY deleteddate, recordid" % cut)
        st, _, b = self.sql(q)
        self.assertEqual(st, 200, b)
        self.assertEqual([i["recordid"] for i in b["items"]], [b_])
        self.assertEqual((b["items"][0]["who"], b["items"][0]["ctx"]),
                         ("Integration User", "REST Web Services"))

    def test_no_externalid_column(self):
        d = self.assertNsError(self.sql("SELECT recordid, externalid FROM deletedrecord"),
                               400, "INVALID_PARAMETER")
        self.assertIn("Unknown identifier 'externalid'. Available identifiers are: "
                      "{deletedrecord=deletedrecord}.", d["detail"])

    def test_switched_off_answers_as_without_permission_or_as_an_unknown_table(self):
        # false: hotglue's answer for a role without the Deleted Records permission
        self.emu.config(netsuite_deletedrecord=False)
        d = self.assertNsError(self.sql("SELECT recordid FROM deletedrecord"), 400, "INVALID_PARAMETER")
        self.assertEqual(d["detail"], PREFIX + "Search error occurred: Record 'deletedrecord' was not found.")
        self.assertEqual(d["o:errorQueryParam"], "q")
        # "unknown_table": the live answer for a table that does not exist
        self.emu.config(netsuite_deletedrecord="unknown_table")
        d = self.assertNsError(self.sql("SELECT recordid FROM DeletedRecord"), 400, "INVALID_PARAMETER")
        self.assertEqual(d["detail"], PREFIX + "Invalid search type: deletedrecord.")
        d2 = self.assertNsError(self.sql("SELECT id FROM nosuchtable"), 400, "INVALID_PARAMETER")
        self.assertEqual(d2["detail"], PREFIX + "Invalid search type: nosuchtable.")
        self.emu.reset()
        self.setUp()
        st, _, b = self.sql("SELECT recordid FROM deletedrecord")
        self.assertEqual((st, b["totalResults"]), (200, 0))

    def test_transaction_delete_row(self):
        cid = self.seed("customer", [{"companyName": "T"}])[0]
        so = self.create("salesOrder", {"entity": {"id": cid}})
        self.call("DELETE", "%s/salesOrder/%s" % (REC, so))
        st, _, b = self.sql("SELECT type, recordid, iscustomrecord FROM deletedrecord")
        self.assertEqual(b["items"], [{"links": [], "type": "salesorder", "recordid": so,
                                       "iscustomrecord": "F"}])


class DeletedRecordCustom(NsCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        path = os.path.join(cls.tmp.name, "seed.json")
        with open(path, "w") as f:
            json.dump({"netsuite": {"recordTypes": {"customrecord_project": {
                "fields": {"name": "text"}, "required": ["name"]}}}}, f)
        cls.emu = Emulator("--seed", path)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()
        cls.tmp.cleanup()

    def test_custom_record_row(self):
        pid = self.create("customrecord_project", {"name": "P1"})
        self.call("DELETE", "%s/customrecord_project/%s" % (REC, pid))
        st, _, b = self.sql("SELECT * FROM deletedrecord")
        self.assertEqual(st, 200, b)
        row = b["items"][0]
        self.assertEqual((row["type"], row["recordid"], row["scriptid"], row["iscustomrecord"], row["name"]),
                         ("customrecord_project", pid, "CUSTOMRECORD_PROJECT", "T", "P1"))
        self.assertRegex(row["recordtypeid"], r"^\d+$")
        self.assertEqual(sorted(k for k in row if k != "links"),
                         sorted(c.strip() for c in DeletedRecordTable.COLS.split(",")))


class SuiteQlErrors(NsCase):
    def test_unknown_identifier_names_the_available_ones(self):
        d = self.assertNsError(self.sql("SELECT subsidiary.name FROM transaction"), 400,
                               "INVALID_PARAMETER")
        self.assertEqual(d["detail"], PREFIX + "Search error occurred: Unknown identifier "
                         "'subsidiary'. Available identifiers are: {transaction=transaction}.")
        self.assertEqual(d["o:errorQueryParam"], "q")
        d = self.assertNsError(self.sql("SELECT x.id FROM customer c"), 400, "INVALID_PARAMETER")
        self.assertIn("Available identifiers are: {c=customer}.", d["detail"])


class UserTimeZone(NsCase):
    """SuiteQL shows and reads datetimes in the user's time zone (config
    netsuite_user_timezone, default America/Los_Angeles); the record API is
    UTC, to the minute."""

    def setUp(self):
        super().setUp()
        self.summer, self.winter, self.late = self.seed("customer", [
            {"companyName": "Summer", "lastModifiedDate": "2024-07-04T18:30:45Z"},   # 11:30:45 PDT
            {"companyName": "Winter", "lastModifiedDate": "2024-01-15T18:02:11Z"},   # 10:02:11 PST
            {"companyName": "Late", "lastModifiedDate": "2024-07-05T03:00:00Z"}])    # 7/4 20:00 PDT

    def one(self, expr, rid=None):
        st, _, b = self.sql("SELECT %s AS v FROM customer WHERE id = %s" % (expr, rid or self.summer))
        self.assertEqual(st, 200, b)
        return b["items"][0].get("v")

    def ids(self, where):
        st, _, b = self.sql("SELECT id FROM customer WHERE %s ORDER BY id" % where)
        self.assertEqual(st, 200, b)
        return [i["id"] for i in b["items"]]

    def test_record_api_to_the_minute_suiteql_to_the_second(self):
        self.assertEqual(self.get("customer", self.summer)["lastModifiedDate"], "2024-07-04T18:30:00Z")
        self.assertEqual(self.one("TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS')"),
                         "2024-07-04 11:30:45")
        self.assertEqual(self.one("TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS')", self.winter),
                         "2024-01-15 10:02:11")                 # PST in winter, PDT in summer
        # without TO_CHAR: the user's date format, the date where the user is
        self.assertEqual(self.one("lastmodifieddate", self.late), "7/4/2024")
        # the control API keeps seconds (it is the emulator's, not NetSuite's)
        st, _, lst = self.emu.request("GET", "/__emulator/records/netsuite/customer")
        self.assertIn("2024-07-04T18:30:45Z", [r.get("lastModifiedDate") for r in lst])

    def test_formats_integrations_use(self):
        for fmt, want in [("YYYY-MM-DD\"T\"HH24:MI:SS", "2024-07-04T11:30:45"),
                          ("YYYY-MM-DD HH24:MI:SSxFF", "2024-07-04 11:30:45.000000"),
                          ("YYYY-MM-DD HH24:MI:SS.FF1", "2024-07-04 11:30:45.0"),
                          ("YYYY-MM-DD HH24:MI:SS.FF3", "2024-07-04 11:30:45.000"),
                          ("DS TS", "7/4/2024 11:30:45 AM"),
                          ("Mon DD, YYYY HH:MI PM", "Jul 04, 2024 11:30 AM"),
                          ("MON", "JUL"), ("YYYY-MM-DD", "2024-07-04")]:
            self.assertEqual(self.one("TO_CHAR(lastmodifieddate, '%s')" % fmt), want, fmt)

    def test_literals_are_read_in_the_user_time_zone(self):
        # 11:30:45 PDT: after 11:30:44 and not after 11:30:45, whichever function reads it
        for fn, fmt, lit in [("TO_DATE", "YYYY-MM-DD HH24:MI:SS", "2024-07-04 11:30:4%d"),
                             ("TO_TIMESTAMP", "YYYY-MM-DD HH24:MI:SSxFF", "2024-07-04 11:30:4%d.000"),
                             ("TO_TIMESTAMP", "YYYY-MM-DD HH24:MI:SS.FF1", "2024-07-04 11:30:4%d.0"),
                             ("TO_DATE", "MM/DD/YYYY HH:MI:SS AM", "07/04/2024 11:30:4%d AM")]:
            gt = "lastmodifieddate > %s('%s', '%s')" % (fn, lit % 4, fmt)
            self.assertEqual(self.ids(gt), [self.summer, self.late], (fn, fmt))
            gt5 = "lastmodifieddate > %s('%s', '%s')" % (fn, lit % 5, fmt)
            self.assertEqual(self.ids(gt5), [self.late], (fn, fmt))
        # without a format: the user's date format
        self.assertEqual(self.ids("lastmodifieddate >= TO_DATE('7/4/2024')"), [self.summer, self.late])
        # a plain string compared with a datetime is a literal in the user's zone too
        self.assertEqual(self.ids("lastmodifieddate < '7/4/2024 8:00 pm'"), [self.summer, self.winter])

    def test_dst_boundaries(self):
        # 2024-03-10 02:00 PST -> 03:00 PDT: 03:30 local is 10:30Z
        a, b_ = self.seed("customer", [{"companyName": "before", "lastModifiedDate": "2024-03-10T10:29:59Z"},
                                       {"companyName": "after", "lastModifiedDate": "2024-03-10T10:30:00Z"}])
        self.assertEqual(self.ids("lastmodifieddate >= TO_DATE('2024-03-10 03:30:00', "
                                  "'YYYY-MM-DD HH24:MI:SS') AND lastmodifieddate < "
                                  "TO_DATE('2024-03-11', 'YYYY-MM-DD')"), [b_])
        self.assertEqual(self.one("TO_CHAR(lastmodifieddate, 'HH24:MI:SS')", a), "03:29:59")
        e, = self.seed("customer", [{"companyName": "earlier", "lastModifiedDate": "2024-03-10T09:59:59Z"}])
        self.assertEqual(self.one("TO_CHAR(lastmodifieddate, 'HH24:MI:SS')", e), "01:59:59")
        # 2024-11-03 01:00 PDT -> 01:00 PST
        c, = self.seed("customer", [{"companyName": "fall", "lastModifiedDate": "2024-11-03T09:30:00Z"}])
        self.assertEqual(self.one("TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI')", c), "2024-11-03 01:30")

    def test_to_date_refuses_fractional_seconds(self):
        d = self.assertNsError(self.sql("SELECT id FROM customer WHERE lastmodifieddate > "
                                        "TO_DATE('2024-07-04 11:30:44.0', 'YYYY-MM-DD HH24:MI:SS.FF')"),
                               400, "INVALID_PARAMETER")
        self.assertTrue(d["detail"].startswith(PREFIX))
        self.assertNsError(self.sql("SELECT TO_CHAR(lastmodifieddate, 'YYYY-QQ') FROM customer"),
                           400, "INVALID_PARAMETER")

    def test_timezone_is_configurable(self):
        self.emu.config(netsuite_user_timezone="UTC")
        self.assertEqual(self.one("TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS')"),
                         "2024-07-04 18:30:45")
        self.assertEqual(self.one("lastmodifieddate", self.late), "7/5/2024")
        self.emu.config(netsuite_user_timezone="Europe/Berlin")
        self.assertEqual(self.one("TO_CHAR(lastmodifieddate, 'HH24:MI')"), "20:30")
        self.emu.config(netsuite_user_timezone="Not/AZone")
        st, _, b = self.sql("SELECT id FROM customer")
        self.assertEqual(st, 500, b)
        self.assertIn("netsuite_user_timezone", b["o:errorDetails"][0]["detail"])

    def test_sysdate_is_now_in_the_user_time_zone(self):
        st, _, b = self.sql("SELECT TO_CHAR(SYSDATE, 'YYYY-MM-DD HH24:MI:SS') AS now FROM customer "
                            "WHERE id = %s" % self.summer)
        local_now = b["items"][0]["now"]
        st, _, t = self.call("GET", "/services/rest/system/v1/serverTime")
        self.assertEqual(st, 200, t)
        server = datetime.strptime(t["serverTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        shown = datetime.strptime(local_now, "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=ZoneInfo("America/Los_Angeles"))
        self.assertLess(abs((server - shown).total_seconds()), 5)

    def test_q_literals_of_the_record_api(self):
        def q(expr):
            st, _, b = self.call("GET", REC + "/customer?q=" + urllib.parse.quote(expr))
            self.assertEqual(st, 200, b)
            return [i["id"] for i in b["items"]]
        # 18:30:45Z is 11:30:45 in Los Angeles: before noon there, after noon in UTC
        self.assertEqual(q('lastModifiedDate BEFORE "7/4/2024 12:00 pm"'), [self.summer, self.winter])
        self.assertEqual(q('lastModifiedDate ON "7/4/2024"'), [self.summer, self.late])
        # an explicit offset is taken as given
        self.assertEqual(q('lastModifiedDate AFTER "2024-07-04T18:31:00Z"'), [self.late])


class SystemEndpoints(NsCase):
    def test_server_time_is_utc(self):
        st, h, b = self.call("GET", "/services/rest/system/v1/serverTime")
        self.assertEqual(st, 200, b)
        self.assertEqual(list(b), ["serverTime"])
        self.assertRegex(b["serverTime"], r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
        server = datetime.strptime(b["serverTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        self.assertLess(abs((server - datetime.now(timezone.utc)).total_seconds()), 5)
        self.emu.request("POST", "/__emulator/clock", {"advance_s": 600})   # the emulator clock
        st, h, b2 = self.call("GET", "/services/rest/system/v1/serverTime")
        later = datetime.strptime(b2["serverTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        self.assertGreater((later - server).total_seconds(), 590)
        st, _, _ = self.emu.request("GET", "/services/rest/system/v1/serverTime")
        self.assertEqual(st, 401)                      # authenticated like every REST call

    def test_governance_limits_report_the_concurrency(self):
        self.emu.config(netsuite_concurrency=7)
        st, _, b = self.call("GET", "/services/rest/system/v1/governanceLimits")
        self.assertEqual(st, 200, b)
        self.assertEqual(b, {"accountConcurrencyLimit": 7, "accountUnallocatedConcurrencyLimit": 7,
                             "integrationLimitType": "accountLimit"})
        self.assertNsError(self.call("GET", "/services/rest/system/v1/nothing"), 404, "NONEXISTENT_ID")


class M2mAlgorithms(NsCase):
    """M2M assertions with every algorithm NetSuite accepts: PS256/384/512 and
    ES256/384/512 (ES512 is P-521, RFC 7518)."""

    def claims(self, **over):
        now = int(time.time())
        c = {"iss": "ns-m2m-client", "scope": "rest_webservices",
             "aud": self.url(TOKEN), "iat": now, "exp": now + 1800}
        c.update(over)
        return c

    def token(self, jwt):
        form = {"grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": jwt}
        return self.emu.request("POST", TOKEN, urllib.parse.urlencode(form), FORM)

    def test_every_algorithm_gets_a_working_token(self):
        for kid, alg in [("ns-cert-id", "PS256"), ("ns-cert-id", "PS384"), ("ns-cert-id", "PS512"),
                         ("ns-cert-id-rsa3072", "PS384"), ("ns-cert-id-rsa3072", "PS512"),
                         ("ns-cert-id-ec", "ES256"), ("ns-cert-id-ec384", "ES384"),
                         ("ns-cert-id-ec521", "ES512")]:
            st, _, b = self.token(netsuite.sign_jwt(self.claims(), kid=kid, alg=alg))
            self.assertEqual(st, 200, (kid, alg, b))
            st, _, body = self.emu.request("GET", REC + "/customer", None,
                                           {"Authorization": "Bearer " + b["access_token"]})
            self.assertEqual(st, 200, (kid, alg, body))

    def test_key_and_algorithm_must_agree(self):
        jwt = netsuite.sign_jwt(self.claims(), kid="ns-cert-id-ec384")
        h, p, sig = jwt.split(".")
        flipped = certs.b64url(bytes([certs.b64url_decode(sig)[0] ^ 1]) + certs.b64url_decode(sig)[1:])
        cases = [
            # ES384 signed with the P-384 key, but the kid names the P-256 certificate
            ("ES384 on a P-256 certificate", netsuite.sign_jwt(
                self.claims(), kid="ns-cert-id-ec", alg="ES384",
                key_file=netsuite.M2M_KEYS["ns-cert-id-ec384"])),
            # ES512 over P-384 (the right key, the wrong curve for the algorithm)
            ("ES512 with a P-384 key", netsuite.sign_jwt(self.claims(), kid="ns-cert-id-ec384", alg="ES512")),
            ("PS384 on an EC certificate", netsuite.sign_jwt(
                self.claims(), kid="ns-cert-id-ec521", alg="PS384",
                key_file=netsuite.M2M_KEYS["ns-cert-id-rsa3072"])),
            ("PS512 signature presented as PS384", ".".join([
                certs.b64url(json.dumps({"typ": "JWT", "alg": "PS384", "kid": "ns-cert-id-rsa3072"}).encode()),
                *netsuite.sign_jwt(self.claims(), kid="ns-cert-id-rsa3072", alg="PS512").split(".")[1:]])),
            ("ES384 bad signature", h + "." + p + "." + flipped),
        ]
        for name, jwt in cases:
            st, _, b = self.token(jwt)
            self.assertEqual((st, b), (400, {"error": "invalid_grant"}), name)

    def _openssl_sign(self, data, key, args):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "in")
            with open(path, "w") as f:
                f.write(data)
            return subprocess.run(["openssl", "dgst"] + args + ["-sign", key, path],
                                  check=True, capture_output=True).stdout

    def test_assertions_signed_by_openssl(self):
        # independent signer: openssl's ECDSA (DER r,s -> JOSE r||s) and PSS
        for kid, alg, args in [("ns-cert-id-ec384", "ES384", ["-sha384"]),
                               ("ns-cert-id-ec521", "ES512", ["-sha512"]),
                               ("ns-cert-id-rsa3072", "PS512", ["-sha512", "-sigopt", "rsa_padding_mode:pss",
                                                                "-sigopt", "rsa_pss_saltlen:-1"])]:
            head = certs.b64url(json.dumps({"typ": "JWT", "alg": alg, "kid": kid}).encode())
            si = head + "." + certs.b64url(json.dumps(self.claims()).encode())
            sig = self._openssl_sign(si, netsuite.M2M_KEYS[kid], args)
            if alg.startswith("ES"):
                _, seq, _ = certs.der_read(sig)
                size = netsuite.ES_CURVES[alg].size
                r, s_ = (int.from_bytes(v, "big") for _, v in certs.der_children(seq))
                sig = r.to_bytes(size, "big") + s_.to_bytes(size, "big")
            st, _, b = self.token(si + "." + certs.b64url(sig))
            self.assertEqual(st, 200, (alg, b))

    def test_expires_in_string_or_number(self):
        st, _, b = self.token(netsuite.sign_jwt(self.claims()))
        self.assertEqual(b["expires_in"], "3600")           # NetSuite 2025.2: a string
        self.emu.config(netsuite_expires_in_number=True)
        st, _, b = self.token(netsuite.sign_jwt(self.claims()))
        self.assertEqual(b["expires_in"], 3600)             # the documented example: a number
        st, _, b = self.emu.request("POST", "/__emulator/netsuite/token", {"scope": "rest_webservices"})
        self.assertEqual(b["expires_in"], 3600)


ASYNC = {"Prefer": "respond-async"}
BATCH = {"Prefer": "respond-async", "Content-Type": "application/vnd.oracle.resource+json; type=collection"}


class AsyncRequests(NsCase):
    """Prefer: respond-async on the record API: 202 + Location of a job, then
    job -> task -> result; batches of up to 100 records (one task each);
    X-NetSuite-Idempotency-Key."""

    def submit(self, method, path, body=None, headers=None):
        st, h, b = self.call(method, path, body, headers or ASYNC)
        self.assertEqual(st, 202, b)
        self.assertEqual(h["preference-applied"], "respond-async")
        self.assertIsNone(b)
        m = re.match(r"^/services/rest/async/v1/job/(\d+)$", h["location"])   # a path, as documented
        self.assertTrue(m, h["location"])
        return h["location"]

    def job(self, loc):
        st, _, b = self.call("GET", loc)
        self.assertEqual(st, 200, b)
        return b

    def results(self, loc):
        """[(status, headers, body)] of each task of a completed job."""
        st, _, tasks = self.call("GET", loc + "/task")
        self.assertEqual(st, 200, tasks)
        self.assertEqual(tasks["count"], len(tasks["items"]))
        out = []
        for item in tasks["items"]:
            href = item["links"][0]["href"]
            self.assertEqual(href, self.url("%s/task/%s" % (loc, item["id"])))
            st, _, t = self.call("GET", loc + "/task/" + item["id"])
            self.assertEqual(st, 200, t)
            self.assertTrue(t["completed"])
            self.assertEqual({l["rel"]: l["href"] for l in t["links"]},
                             {"related": self.url("%s/task/%s/result" % (loc, item["id"])),
                              "self": self.url("%s/task/%s" % (loc, item["id"]))})
            self.assertRegex(t["startTime"], r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
            self.assertIn("endTime", t)
            r = self.call("GET", loc + "/task/" + item["id"] + "/result")
            self.assertEqual(t["progress"], "succeeded" if r[0] < 400 else "failed")
            out.append(r)
        return out

    def test_single_create_runs_as_a_job(self):
        loc = self.submit("POST", REC + "/customer", {"companyName": "Async Co"})
        j = self.job(loc)
        jid = loc.rsplit("/", 1)[1]
        self.assertEqual(j, {"links": [{"rel": "self", "href": self.url(loc)}], "completed": True,
                             "id": jid, "progress": "succeeded",
                             "task": {"links": [{"rel": "self", "href": self.url(loc + "/task")}]}})
        [(st, h, b)] = self.results(loc)
        self.assertEqual(st, 204)
        cid = h["location"].rsplit("/", 1)[1]
        self.assertEqual(self.get("customer", cid)["companyName"], "Async Co")

    def test_job_pending_until_processed(self):
        self.emu.config(netsuite_async_delay_ms=60000)
        loc = self.submit("POST", REC + "/customer", {"companyName": "Later"})
        j = self.job(loc)
        self.assertEqual((j["completed"], j["progress"]), (False, "pending"))
        st, _, t = self.call("GET", loc + "/task/1")
        self.assertEqual((t["completed"], t["progress"]), (False, "pending"))
        self.assertNsError(self.call("GET", loc + "/task/1/result"), 404, "NONEXISTENT_ID")
        self.emu.request("POST", "/__emulator/clock", {"advance_s": 61})
        self.assertEqual(self.job(loc)["completed"], True)
        self.assertEqual(self.results(loc)[0][0], 204)

    def test_batch_create_update_upsert_delete_one_task_per_record(self):
        loc = self.submit("POST", REC + "/customer", {"items": [
            {"companyName": "B1", "externalId": "E1"}, {"email": "no-name@x.test"},
            {"companyName": "B2", "externalId": "E2"}]}, BATCH)
        self.assertEqual(self.job(loc)["progress"], "failed")     # one item failed
        r = self.results(loc)
        self.assertEqual([x[0] for x in r], [204, 400, 204])
        self.assertEqual(r[1][2]["o:errorDetails"][0]["o:errorCode"], "USER_ERROR")
        a, b_ = (x[1]["location"].rsplit("/", 1)[1] for x in (r[0], r[2]))
        # PATCH: items carry id or externalId
        loc = self.submit("PATCH", REC + "/customer", {"items": [
            {"id": a, "phone": "111"}, {"externalId": "E2", "phone": "222"}, {"phone": "333"}]}, BATCH)
        r = self.results(loc)
        self.assertEqual([x[0] for x in r], [204, 204, 400])
        self.assertEqual(r[2][2]["o:errorDetails"][0]["o:errorCode"], "INVALID_CONTENT")
        self.assertEqual((self.get("customer", a)["phone"], self.get("customer", b_)["phone"]), ("111", "222"))
        # PUT: upsert by externalId
        loc = self.submit("PUT", REC + "/customer", {"items": [
            {"externalId": "E1", "companyName": "B1 renamed"}, {"externalId": "E3", "companyName": "B3"}]}, BATCH)
        r = self.results(loc)
        self.assertEqual([x[0] for x in r], [204, 204])
        self.assertEqual(self.get("customer", "eid:E1")["companyName"], "B1 renamed")
        self.assertEqual(self.get("customer", "eid:E3")["companyName"], "B3")
        # GET ?ids=&expandRecords=true, DELETE ?ids=
        loc = self.submit("GET", REC + "/customer?ids=%s,eid:E3&expandRecords=true" % a)
        r = self.results(loc)
        self.assertEqual([(x[0], x[2]["companyName"]) for x in r], [(200, "B1 renamed"), (200, "B3")])
        loc = self.submit("DELETE", REC + "/customer?ids=%s,eid:E2,99999" % a)
        r = self.results(loc)
        self.assertEqual([x[0] for x in r], [204, 204, 404])
        st, _, d = self.sql("SELECT recordid FROM deletedrecord ORDER BY recordid")
        self.assertEqual(sorted(int(i["recordid"]) for i in d["items"]), sorted([int(a), int(b_)]))

    def test_batch_limits_and_required_headers(self):
        d = self.assertNsError(self.call("POST", REC + "/customer", {"items": [
            {"companyName": "C%d" % i} for i in range(101)]}, BATCH), 400, "INVALID_CONTENT")
        self.assertIn("100", d["detail"])
        st, _, b = self.sql("SELECT COUNT(*) AS n FROM customer")
        self.assertEqual(b["items"][0]["n"], "0")                     # nothing written
        self.assertNsError(self.call("POST", REC + "/customer", {"items": []}, BATCH), 400, "INVALID_CONTENT")
        d = self.assertNsError(self.call("POST", REC + "/customer", {"items": [{"companyName": "x"}]},
                                         {"Content-Type": BATCH["Content-Type"]}), 400, "INVALID_HEADER")
        self.assertEqual(d["o:errorHeader"], "Prefer")
        # SuiteQL has no asynchronous execution (subsect_1544786455)
        d = self.assertNsError(self.sql("SELECT id FROM customer", headers={"Prefer": "transient, respond-async"}),
                               400, "INVALID_HEADER")
        self.assertIn("Asynchronous request execution isn't supported in the REST query service", d["detail"])

    def test_idempotency_key_deduplicates(self):
        key = {"X-NetSuite-Idempotency-Key": "cac827ea-3543-4cda-add2-bae634326c27"}
        first = self.submit("POST", REC + "/customer", {"companyName": "Once"}, dict(ASYNC, **key))
        st, h, b = self.call("POST", REC + "/customer", {"companyName": "Once"}, dict(ASYNC, **key))
        self.assertEqual(st, 400, b)
        self.assertEqual((b["title"], b["status"]), ("Conflict", 400))
        self.assertEqual(b["o:errorDetails"][0]["o:errorCode"], "IDEMPOTENCY_ERROR")
        self.assertIn('"Location" header', b["o:errorDetails"][0]["detail"])
        self.assertEqual(h["location"], first)
        self.assertEqual(h["preference-applied"], "respond-async")
        st, _, c = self.sql("SELECT COUNT(*) AS n FROM customer WHERE companyname = 'Once'")
        self.assertEqual(c["items"][0]["n"], "1")
        # also for a batch; another key is another job
        other = self.submit("POST", REC + "/customer", {"items": [{"companyName": "Twice"}]},
                            dict(BATCH, **{"X-NetSuite-Idempotency-Key": "k2"}))
        self.assertNotEqual(other, first)
        st, h, b = self.call("POST", REC + "/customer", {"items": [{"companyName": "Twice"}]},
                             dict(BATCH, **{"X-NetSuite-Idempotency-Key": "k2"}))
        self.assertEqual((st, h["location"]), (400, other))

    def test_jobs_need_auth_and_exist(self):
        loc = self.submit("POST", REC + "/customer", {"companyName": "A"})
        st, _, _ = self.emu.request("GET", loc)
        self.assertEqual(st, 401)
        self.assertNsError(self.call("GET", "/services/rest/async/v1/job/98765"), 404, "NONEXISTENT_ID")
        self.assertNsError(self.call("GET", loc + "/task/7"), 404, "NONEXISTENT_ID")
        self.assertNsError(self.call("DELETE", loc), 405, "INVALID_METHOD")


class DocumentedDetails(NsCase):
    def test_patch_answers_204_with_location(self):
        cid = self.create("customer", {"companyName": "P"})
        st, h, b = self.call("PATCH", "%s/customer/%s" % (REC, cid), {"phone": "1"})
        self.assertEqual((st, b), (204, None))
        self.assertEqual(h["location"], self.url("%s/customer/%s" % (REC, cid)))

    def test_external_ids_in_urls_are_letters_digits_underscore_hyphen(self):
        for good in ("PG-42", "sync_1-2", "Ünïcode-1"):
            st, h, b = self.call("PUT", "%s/customer/eid:%s" % (REC, urllib.parse.quote(good)),
                                 {"companyName": good})
            self.assertEqual(st, 204, (good, b))
        for bad in ("has space", "a.b", "a|b", "a:b", "pg@x"):
            path = "%s/customer/eid:%s" % (REC, urllib.parse.quote(bad))
            d = self.assertNsError(self.call("PUT", path, {"companyName": "x"}), 400, "INVALID_PARAMETER")
            self.assertIn("letters, numbers, underscore (_) and hyphen (-)", d["detail"])
            self.assertNsError(self.call("GET", path), 400, "INVALID_PARAMETER")
        st, _, b = self.sql("SELECT COUNT(*) AS n FROM customer")
        self.assertEqual(b["items"][0]["n"], "3")

    def test_bound_parameters(self):
        a, b_ = self.seed("customer", [{"companyName": "Alpha ?"}, {"companyName": "Beta", "isinactive": True}])
        st, _, r = self.call("POST", SQL, {"q": "SELECT id FROM customer WHERE companyname = ? OR "
                                                "(isinactive = ? AND id > ?) ORDER BY id",
                                           "params": ["Alpha ?", True, 0]}, {"Prefer": "transient"})
        self.assertEqual(st, 200, r)
        self.assertEqual([i["id"] for i in r["items"]], [a, b_])
        # a ? inside a string literal is text, not a parameter
        st, _, r = self.sql("SELECT id FROM customer WHERE companyname = 'Alpha ?'")
        self.assertEqual([i["id"] for i in r["items"]], [a])
        for params in ([], ["x", "y"], [{"a": 1}]):
            self.assertNsError(self.call("POST", SQL, {"q": "SELECT id FROM customer WHERE companyname = ?",
                                                       "params": params}, {"Prefer": "transient"}),
                               400, "INVALID_PARAMETER")

    def test_more_than_100_columns_give_no_rows(self):
        self.seed("customer", [{"companyName": "C"}])
        cols = lambda n: ", ".join("id AS c%d" % i for i in range(n))   # noqa: E731
        st, _, r = self.sql("SELECT %s FROM customer" % cols(100))
        self.assertEqual((st, r["count"]), (200, 1))
        st, _, r = self.sql("SELECT %s FROM customer" % cols(101))
        self.assertEqual((st, r["count"], r["totalResults"], r["items"]), (200, 0, 0, []))

    def test_in_lists_of_at_most_1000_values(self):
        ids = self.seed("customer", [{"companyName": "C%d" % i} for i in range(3)])
        st, _, r = self.sql("SELECT id FROM customer WHERE id IN (%s)"
                            % ", ".join([ids[0]] + [str(10 ** 6 + i) for i in range(999)]))
        self.assertEqual((st, [i["id"] for i in r["items"]]), (200, [ids[0]]))
        d = self.assertNsError(self.sql("SELECT id FROM customer WHERE id IN (%s)"
                                        % ", ".join(str(10 ** 6 + i) for i in range(1001))),
                               400, "INVALID_PARAMETER")
        self.assertTrue(d["detail"].startswith(PREFIX))

    def test_metadata_catalog_list_links_and_select(self):
        st, _, b = self.call("GET", REC + "/metadata-catalog/?select=customer,Contact")
        self.assertEqual(st, 200, b)
        self.assertEqual([i["name"] for i in b["items"]], ["contact", "customer"])
        types = {l.get("mediaType") for l in b["items"][1]["links"] if l["rel"] == "alternate"}
        self.assertEqual(types, {"application/swagger+json", "application/schema+json"})


class LiveAnswers(NsCase):
    """What live NetSuite answered in julbrs/netsuite-api-client's integration
    tests (2023-2025), which the emulator answers the same way."""

    def test_plain_internal_ids_as_references(self):
        st, h, b = self.call("POST", REC + "/customer", {"entityStatus": 6, "subsidiary": "1",
                                                       "companyName": "netsuite-api-client-integration-test",
                                                       "firstName": "firstName", "lastName": "lastName"})
        self.assertEqual(st, 204, b)
        r = self.get("customer", h["location"].rsplit("/", 1)[1])
        self.assertEqual((r["entityStatus"]["id"], r["entityStatus"]["refName"]), ("6", "LEAD-Unqualified"))
        self.assertNsError(self.call("POST", REC + "/customer", {"companyName": "x", "subsidiary": "99"}),
                           400, "INVALID_KEY_OR_REF")

    def test_error_texts(self):
        d = self.assertNsError(self.call("POST", REC + "/customer", "bad body"), 400, "INVALID_CONTENT")
        self.assertIn("Invalid content in the request body", d["detail"])
        d = self.assertNsError(self.call("POST", REC + "/customer", {}), 400, "USER_ERROR")
        self.assertIn("Error while accessing a resource. Please enter value(s) for: ", d["detail"])
        d = self.assertNsError(self.call("GET", REC + "/bad-path"), 404, "NONEXISTENT_ID")
        self.assertIn("Record type 'bad-path' does not exist", d["detail"])
        d = self.assertNsError(self.call("GET", REC + "/customer/-1"), 404, "NONEXISTENT_ID")
        self.assertIn("The record instance does not exist. Provide a valid record instance ID.", d["detail"])


if __name__ == "__main__":
    unittest.main()
