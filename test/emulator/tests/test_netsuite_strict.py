"""NetSuite emulation where sync depends on NetSuite's exact behaviour: the
SuiteQL deletedrecord table, the user's time zone in SuiteQL, minute stamps
in the record API, serverTime/governanceLimits, M2M with PS/ES 384/512, and
the asynchronous (batch) record requests."""
import json
import os
import re
import tempfile
import unittest
import urllib.parse
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from test_netsuite import NsCase, REC, SQL
from util import Emulator

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
        self.assertIn("Field 'externalid' for record 'deletedrecord' was not found", d["detail"])

    def test_switched_off_answers_as_for_an_unknown_table(self):
        self.emu.config(netsuite_deletedrecord=False)
        d = self.assertNsError(self.sql("SELECT recordid FROM deletedrecord"), 400, "INVALID_PARAMETER")
        self.assertEqual(d["detail"], PREFIX + "Search error occurred: Record 'deletedrecord' was not found.")
        self.assertEqual(d["o:errorQueryParam"], "q")
        # the same words as any unknown table
        d2 = self.assertNsError(self.sql("SELECT id FROM nosuchtable"), 400, "INVALID_PARAMETER")
        self.assertEqual(d2["detail"], PREFIX + "Search error occurred: Record 'nosuchtable' was not found.")
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


if __name__ == "__main__":
    unittest.main()
