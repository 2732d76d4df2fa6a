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


if __name__ == "__main__":
    unittest.main()
