"""Salesforce Change Data Capture over CometD (sf_cometd.py): the Bayeux
handshake/connect/subscribe/unsubscribe/disconnect cycle, change events from
record writes, replay and retention, gap and overflow events, errors."""
import json
import threading
import time
import urllib.parse

from util import EmulatorTestCase

V = "/services/data/v62.0"
C = "/cometd/62.0"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class CometdTestCase(EmulatorTestCase):
    def setUp(self):
        super().setUp()
        self.tok = self.get_token()
        self.h = {"Authorization": "Bearer " + self.tok}
        self.emu.config(salesforce_cdc_entities=["Contact", "Account"],
                        salesforce_cometd_timeout_ms=300)
        self.mid = 0

    def get_token(self):
        form = {"grant_type": "client_credentials", "client_id": "sync-client",
                "client_secret": "sync-secret"}
        st, _, b = self.emu.request("POST", "/services/oauth2/token",
                                    urllib.parse.urlencode(form), FORM)
        self.assertEqual(st, 200, b)
        return b["access_token"]

    def rest(self, method, path, body=None, headers=None):
        h = dict(self.h)
        h.update(headers or {})
        return self.emu.request(method, V + path, body, h)

    def bayeux(self, *msgs, headers=None, path=C, conn=None):
        out = []
        for m in msgs:
            m = dict(m)
            self.mid += 1
            m.setdefault("id", str(self.mid))
            out.append(m)
        h = dict(self.h)
        h.update(headers or {})
        if conn is not None:
            conn.request("POST", path, body=json.dumps(out),
                         headers=dict(h, **{"Content-Type": "application/json"}))
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(data)
        return self.emu.request("POST", path, out, h)

    def handshake(self):
        st, hdrs, b = self.bayeux({"channel": "/meta/handshake", "version": "1.0",
                                   "minimumVersion": "1.0",
                                   "supportedConnectionTypes": ["long-polling"]})
        self.assertEqual(st, 200, b)
        self.assertTrue(b[0]["successful"], b)
        if "set-cookie" in hdrs:      # set once; a client that has it keeps it
            self.cookie = hdrs["set-cookie"].split(";")[0]
        self.h["Cookie"] = self.cookie
        self.cid = b[0]["clientId"]
        return b[0]

    def connect(self, **kw):
        st, _, b = self.bayeux({"channel": "/meta/connect", "clientId": self.cid,
                                "connectionType": "long-polling"}, **kw)
        self.assertEqual(st, 200, b)
        return b

    def subscribe(self, channel, replay=None):
        m = {"channel": "/meta/subscribe", "clientId": self.cid, "subscription": channel}
        if replay is not None:
            m["ext"] = {"replay": {channel: replay}}
        return self.bayeux(m)[2][0]

    def session(self, *channels, replay=-1):
        """Handshake, first connect, subscribe: ready to poll."""
        self.handshake()
        self.connect()
        for ch in channels:
            r = self.subscribe(ch, replay)
            self.assertTrue(r["successful"], r)

    def poll(self):
        """One connect: (events, the connect reply)."""
        b = self.connect()
        self.assertEqual(b[-1]["channel"], "/meta/connect")
        self.assertTrue(b[-1]["successful"], b)
        return b[:-1], b[-1]

    def events(self, **q):
        qs = urllib.parse.urlencode(q)
        return self.emu.request("GET", "/__emulator/salesforce/cdc/events" +
                                ("?" + qs if qs else ""))[2]

    @staticmethod
    def header(ev):
        return ev["data"]["payload"]["ChangeEventHeader"]

    def new_contacts(self, n, **fields):
        recs = []
        for i in range(n):
            r = {"attributes": {"type": "Contact"}, "LastName": "L%d" % i}
            r.update(fields)
            recs.append(r)
        st, _, b = self.rest("POST", "/composite/sobjects", {"allOrNone": True, "records": recs})
        self.assertEqual(st, 200, b)
        return [x["id"] for x in b]


class TestHandshakeAndErrors(CometdTestCase):
    def test_handshake_reply_and_cookie(self):
        r = self.handshake()
        self.assertEqual(r["channel"], "/meta/handshake")
        self.assertEqual(r["supportedConnectionTypes"], ["long-polling"])
        self.assertEqual(r["version"], "1.0")
        self.assertEqual(r["ext"], {"replay": True, "payload.format": True})
        self.assertRegex(r["clientId"], r"^[0-9a-z]{20,}$")
        self.assertTrue(self.cookie.startswith("BAYEUX_BROWSER="))

    def test_first_connect_answers_at_once_with_advice(self):
        self.handshake()
        b = self.connect()
        self.assertEqual(len(b), 1)
        self.assertEqual(b[0]["advice"], {"interval": 0, "timeout": 300, "reconnect": "retry"})
        self.assertEqual(b[0]["clientId"], self.cid)
        self.assertTrue(b[0]["successful"])

    def test_default_timeout_is_110_seconds(self):
        self.emu.reset()
        self.h = {"Authorization": "Bearer " + self.get_token()}
        self.handshake()
        self.assertEqual(self.connect()[0]["advice"]["timeout"], 110000)

    def test_held_connect_ends_at_timeout_without_events(self):
        self.session("/data/ContactChangeEvent")
        events, reply = self.poll()
        self.assertEqual(events, [])
        self.assertNotIn("advice", reply)

    def test_bad_token_handshake_denied(self):
        st, _, b = self.bayeux({"channel": "/meta/handshake", "version": "1.0",
                                "supportedConnectionTypes": ["long-polling"]},
                               headers={"Authorization": "Bearer nope"})
        self.assertEqual(st, 200)
        self.assertEqual(b[0]["error"], "403::Handshake denied")
        self.assertFalse(b[0]["successful"])
        self.assertEqual(b[0]["ext"], {"sfdc": {"failureReason": "401::Authentication invalid"}})
        self.assertEqual(b[0]["advice"]["reconnect"], "none")

    def test_expired_token_handshake_denied(self):
        self.emu.config(token_ttl_s=0)
        st, _, b = self.bayeux({"channel": "/meta/handshake", "version": "1.0"})
        self.assertEqual(b[0]["error"], "403::Handshake denied")

    def test_no_token_is_401(self):
        st, _, b = self.emu.request("POST", C, [{"channel": "/meta/handshake", "id": "1"}])
        self.assertEqual(st, 401)
        self.assertEqual(b[0]["error"], "401::Request requires authentication")

    def test_version_in_uri(self):
        st, _, b = self.emu.request("POST", "/cometd", [{"channel": "/meta/handshake"}], self.h)
        self.assertEqual(st, 400)
        self.assertEqual(b[0]["error"], "400::API version in the URI is mandatory. URI format: "
                         "'/cometd/66.0'")
        st, _, b = self.emu.request("POST", "/cometd/36.0", [{"channel": "/meta/handshake"}],
                                    self.h)
        self.assertEqual(st, 400)
        self.assertIn("Only API versions '37.0' and later are supported", b[0]["error"])
        st, _, b = self.emu.request("POST", "/cometd/66.0/handshake",
                                    [{"channel": "/meta/handshake"}], self.h)
        self.assertEqual(st, 200)
        self.assertTrue(b[0]["successful"])

    def test_request_over_32k_is_413(self):
        st, _, b = self.emu.request("POST", C, [{"channel": "/meta/handshake",
                                                 "x": "y" * 33000}], self.h)
        self.assertEqual(st, 413)

    def test_unknown_client(self):
        self.cid = "nosuchclient"
        b = self.connect()
        self.assertEqual(b[0]["error"], "403::Unknown client")
        self.assertEqual(b[0]["advice"], {"interval": 0, "reconnect": "handshake"})
        self.assertFalse(b[0]["successful"])

    def test_client_expires_when_it_does_not_reconnect(self):
        self.session("/data/ContactChangeEvent")
        self.emu.request("POST", "/__emulator/clock", {"advance_s": 60})
        b = self.connect()
        self.assertEqual(b[0]["error"], "403::Unknown client")
        self.assertEqual(b[0]["advice"]["reconnect"], "handshake")
        # a new handshake works, and a stored replay id brings what was missed
        self.handshake()
        self.connect()
        self.assertTrue(self.subscribe("/data/ContactChangeEvent", -2)["successful"])

    def test_expire_clients_control(self):
        self.session("/data/ContactChangeEvent")
        st, _, b = self.emu.request("POST", "/__emulator/salesforce/cdc/expire_clients")
        self.assertEqual(b, {"expired": 1})
        self.assertEqual(self.connect()[0]["error"], "403::Unknown client")

    def test_missing_cookie(self):
        self.session()
        del self.h["Cookie"]
        b = self.connect()
        self.assertEqual(b[0]["error"], "400::Client %s has established a session, but no "
                         "BAYEUX_BROWSER cookie present" % self.cid)

    def test_revoked_token_on_connect(self):
        self.session("/data/ContactChangeEvent")
        self.emu.request("POST", "/services/oauth2/revoke",
                         urllib.parse.urlencode({"token": self.tok}), FORM)
        b = self.connect()
        self.assertEqual(b[0]["error"], "401::Authentication invalid")
        self.assertEqual(b[0]["advice"], {"reconnect": "none", "interval": 0})

    def test_connected_session_outlives_token_ttl(self):
        self.session("/data/ContactChangeEvent")
        self.emu.config(token_ttl_s=0)
        events, reply = self.poll()
        self.assertTrue(reply["successful"])

    def test_disconnect(self):
        self.session("/data/ContactChangeEvent")
        st, _, b = self.bayeux({"channel": "/meta/disconnect", "clientId": self.cid})
        self.assertTrue(b[0]["successful"])
        self.assertEqual(self.connect()[0]["error"], "403::Unknown client")

    def test_invalid_connection_type(self):
        self.session()
        st, _, b = self.bayeux({"channel": "/meta/connect", "clientId": self.cid,
                                "connectionType": "websocket"})
        self.assertEqual(b[0]["error"], "400::Invalid connection type {websocket}")

    def test_streaming_calls_do_not_count_as_api_calls(self):
        self.session("/data/ContactChangeEvent")
        self.poll()
        st, _, b = self.emu.request("GET", "/__emulator/salesforce/usage")
        self.assertEqual(b["api_usage"], 0)


class TestSubscribe(CometdTestCase):
    def setUp(self):
        super().setUp()
        self.session()

    def test_entity_not_selected_is_unknown_channel(self):
        r = self.subscribe("/data/LeadChangeEvent")
        self.assertFalse(r["successful"])
        self.assertEqual(r["error"], "403::Unknown channel")
        self.assertEqual(r["subscription"], "/data/LeadChangeEvent")

    def test_new_org_selects_nothing(self):
        self.emu.config(salesforce_cdc_entities=[])
        self.assertEqual(self.subscribe("/data/ContactChangeEvent")["error"],
                         "403::Unknown channel")
        self.assertEqual(self.emu.request("GET", "/__emulator/config")[2]
                         .get("salesforce_cdc_entities"), [])

    def test_channel_that_does_not_exist(self):
        r = self.subscribe("/data/NoSuchThingChangeEvent")
        self.assertEqual(r["error"], "400::The channel you requested to subscribe to does not "
                         "exist {/data/NoSuchThingChangeEvent}")
        # channel names are case-sensitive
        self.assertIn("does not exist", self.subscribe("/data/contactChangeEvent")["error"])

    def test_channel_name_errors(self):
        self.assertEqual(self.subscribe("data/ContactChangeEvent")["error"],
                         "400::Channel subscriptions must start with a leading '/'")
        st, _, b = self.bayeux({"channel": "/meta/subscribe", "clientId": self.cid})
        self.assertEqual(b[0]["error"], "400::Channel name not specified")

    def test_custom_object_channel(self):
        self.emu.request("POST", "/__emulator/salesforce/objects/Invoice__c",
                         {"keyPrefix": "a0I", "fields": [{"name": "Amount__c", "type": "currency",
                                                          "precision": 16, "scale": 2}]})
        self.emu.config(salesforce_cdc_entities=["Invoice__c"])
        self.assertTrue(self.subscribe("/data/Invoice__ChangeEvent")["successful"])
        self.emu.seed("salesforce", "Invoice__c", [{"Name": "INV-1", "Amount__c": 12.5}])
        events, _ = self.poll()
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["channel"], "/data/Invoice__ChangeEvent")
        self.assertEqual(self.header(events[0])["entityName"], "Invoice__c")
        self.assertEqual(events[0]["data"]["payload"]["Amount__c"], 12.5)

    def test_all_change_events_channel(self):
        self.assertTrue(self.subscribe("/data/ChangeEvents")["successful"])
        self.emu.seed("salesforce", "Account", [{"Name": "Acme"}])
        self.emu.seed("salesforce", "Contact", [{"LastName": "Doe"}])
        self.emu.config(salesforce_cdc_entities=["Contact"])
        self.emu.seed("salesforce", "Account", [{"Name": "Not selected"}])
        events, _ = self.poll()
        self.assertEqual([self.header(e)["entityName"] for e in events], ["Account", "Contact"])
        self.assertEqual({e["channel"] for e in events}, {"/data/ChangeEvents"})

    def test_unsubscribe_stops_events(self):
        self.subscribe("/data/ContactChangeEvent")
        st, _, b = self.bayeux({"channel": "/meta/unsubscribe", "clientId": self.cid,
                                "subscription": "/data/ContactChangeEvent"})
        self.assertTrue(b[0]["successful"])
        self.emu.seed("salesforce", "Contact", [{"LastName": "Doe"}])
        self.assertEqual(self.poll()[0], [])

    def test_replay_map_without_the_channel(self):
        st, _, b = self.bayeux({"channel": "/meta/subscribe", "clientId": self.cid,
                                "subscription": "/data/ContactChangeEvent",
                                "ext": {"replay": {}}})
        self.assertTrue(b[0]["error"].startswith(
            "400::The replayId for channel {/data/ContactChangeEvent} wasn't found using the "
            "provided replay ID map {{}}."), b)

    def test_batch_subscribe_and_connect_in_one_request(self):
        self.emu.seed("salesforce", "Contact", [{"LastName": "Doe"}])
        st, _, b = self.bayeux({"channel": "/meta/subscribe", "clientId": self.cid,
                                "subscription": "/data/ContactChangeEvent",
                                "ext": {"replay": {"/data/ContactChangeEvent": -2}}},
                               {"channel": "/meta/connect", "clientId": self.cid,
                                "connectionType": "long-polling"})
        self.assertEqual([m["channel"] for m in b],
                         ["/meta/subscribe", "/data/ContactChangeEvent", "/meta/connect"])

    def test_publish_denied(self):
        st, _, b = self.bayeux({"channel": "/data/ContactChangeEvent", "clientId": self.cid,
                                "data": {}})
        self.assertFalse(b[0]["successful"])


class TestChangeEvents(CometdTestCase):
    def setUp(self):
        super().setUp()
        self.session("/data/ContactChangeEvent", "/data/AccountChangeEvent")

    def test_create_carries_every_non_null_field(self):
        st, _, b = self.rest("POST", "/sobjects/Contact",
                             {"FirstName": "Ada", "LastName": "Lovelace", "MailingCity": "London",
                              "Email": "ada@example.com"},
                             {"Sforce-Call-Options": "client=sync-engine, defaultNamespace=x"})
        self.assertEqual(st, 201, b)
        events, _ = self.poll()
        self.assertEqual(len(events), 1)
        ev = events[0]
        self.assertEqual(ev["channel"], "/data/ContactChangeEvent")
        self.assertEqual(set(ev["data"]), {"schema", "payload", "event"})
        self.assertIsInstance(ev["data"]["event"]["replayId"], int)
        p = ev["data"]["payload"]
        h = p["ChangeEventHeader"]
        self.assertEqual(h["entityName"], "Contact")
        self.assertEqual(h["recordIds"], [b["id"]])
        self.assertEqual(h["changeType"], "CREATE")
        self.assertEqual(h["changeOrigin"], "com/salesforce/api/rest/62.0;client=sync-engine")
        self.assertEqual(h["changedFields"], [])
        self.assertEqual(h["sequenceNumber"], 1)
        self.assertRegex(h["transactionKey"], r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-"
                         r"[0-9a-f]{4}-[0-9a-f]{12}$")
        self.assertIsInstance(h["commitTimestamp"], int)
        self.assertIsInstance(h["commitNumber"], int)
        self.assertEqual(h["commitUser"][:3], "005")
        self.assertEqual(p["Name"], {"FirstName": "Ada", "LastName": "Lovelace"})
        self.assertEqual(p["MailingAddress"], {"City": "London"})
        self.assertEqual(p["Email"], "ada@example.com")
        self.assertRegex(p["CreatedDate"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        for absent in ("Id", "SystemModstamp", "IsDeleted", "Phone", "FirstName", "LastName"):
            self.assertNotIn(absent, p)

    def test_update_carries_only_changed_fields(self):
        cid = self.emu.seed("salesforce", "Contact", [{"LastName": "Doe", "Phone": "1",
                                                       "Title": "Eng"}])["ids"][0]
        self.poll()
        st, _, _ = self.rest("PATCH", "/sobjects/Contact/" + cid, {"Title": "CTO", "Phone": None})
        self.assertEqual(st, 204)
        events, _ = self.poll()
        self.assertEqual(len(events), 1)
        p = events[0]["data"]["payload"]
        h = p.pop("ChangeEventHeader")
        self.assertEqual(h["changeType"], "UPDATE")
        self.assertEqual(h["changeOrigin"], "com/salesforce/api/rest/62.0")
        self.assertEqual(sorted(h["changedFields"]),
                         ["LastModifiedById", "LastModifiedDate", "Phone", "Title"])
        self.assertEqual(h["nulledFields"], ["Phone"])
        self.assertEqual(set(p), {"Title", "Phone", "LastModifiedDate", "LastModifiedById"})
        self.assertEqual(p["Title"], "CTO")
        self.assertIsNone(p["Phone"])

    def test_update_of_a_compound_component(self):
        cid = self.emu.seed("salesforce", "Contact", [{"LastName": "Doe"}])["ids"][0]
        self.poll()
        self.emu.request("PATCH", "/__emulator/records/salesforce/Contact/" + cid,
                         {"LastName": "Roe", "MailingCity": "Oslo"})
        events, _ = self.poll()
        p = events[0]["data"]["payload"]
        h = p["ChangeEventHeader"]
        self.assertIn("Name.LastName", h["changedFields"])
        self.assertIn("MailingAddress.City", h["changedFields"])
        self.assertNotIn("LastModifiedById", h["changedFields"])   # same remote user
        self.assertEqual(p["Name"], {"LastName": "Roe"})
        self.assertEqual(p["MailingAddress"], {"City": "Oslo"})
        self.assertEqual(h["changeOrigin"], "")

    def test_system_update_sends_nothing(self):
        cid = self.emu.seed("salesforce", "Contact", [{"LastName": "Doe"}])["ids"][0]
        self.poll()
        self.emu.request("PATCH", "/__emulator/records/salesforce/Contact/" + cid,
                         {"_system_update": True})
        self.assertEqual(self.poll()[0], [])

    def test_delete_and_undelete(self):
        cid = self.emu.seed("salesforce", "Contact", [{"LastName": "Doe", "Title": "X"}])["ids"][0]
        self.poll()
        st, _, _ = self.rest("DELETE", "/sobjects/Contact/" + cid)
        self.assertEqual(st, 204)
        events, _ = self.poll()
        p = events[0]["data"]["payload"]
        self.assertEqual(set(p), {"ChangeEventHeader"})
        self.assertEqual(p["ChangeEventHeader"]["changeType"], "DELETE")
        self.assertEqual(p["ChangeEventHeader"]["recordIds"], [cid])
        st, _, b = self.emu.request("POST", "/__emulator/salesforce/undelete", {"ids": [cid]})
        self.assertEqual(b, {"undeleted": [cid]})
        events, _ = self.poll()
        p = events[0]["data"]["payload"]
        self.assertEqual(p["ChangeEventHeader"]["changeType"], "UNDELETE")
        self.assertEqual(p["Title"], "X")
        self.assertEqual(p["Name"], {"LastName": "Doe"})
        # the record is live again
        st, _, rec = self.rest("GET", "/sobjects/Contact/" + cid)
        self.assertEqual(st, 200)
        st, _, b = self.emu.request("POST", "/__emulator/salesforce/undelete", {"ids": [cid]})
        self.assertEqual(st, 404)

    def test_same_change_to_many_records_is_one_event(self):
        ids = self.new_contacts(3)
        events, _ = self.poll()
        self.assertEqual(len(events), 3)            # different names: one event each
        self.assertEqual(len({self.header(e)["transactionKey"] for e in events}), 1)
        self.assertEqual([self.header(e)["sequenceNumber"] for e in events], [1, 2, 3])
        st, _, b = self.rest("PATCH", "/composite/sobjects", {"records": [
            {"attributes": {"type": "Contact"}, "id": i, "Title": "Same"} for i in ids]})
        self.assertEqual(st, 200, b)
        events, _ = self.poll()
        self.assertEqual(len(events), 1)
        self.assertEqual(self.header(events[0])["recordIds"], ids)
        self.assertEqual(events[0]["data"]["payload"]["Title"], "Same")
        st, _, b = self.rest("DELETE", "/composite/sobjects?ids=" + ",".join(ids))
        events, _ = self.poll()
        self.assertEqual(len(events), 1)
        self.assertEqual(self.header(events[0])["changeType"], "DELETE")
        self.assertEqual(self.header(events[0])["recordIds"], ids)

    def test_rolled_back_transaction_sends_nothing(self):
        st, _, b = self.rest("POST", "/composite", {"allOrNone": True, "compositeRequest": [
            {"method": "POST", "url": V + "/sobjects/Contact", "referenceId": "a",
             "body": {"LastName": "Kept?"}},
            {"method": "POST", "url": V + "/sobjects/Contact", "referenceId": "b",
             "body": {"FirstName": "no last name"}}]})
        self.assertEqual(st, 200, b)
        self.assertEqual(self.poll()[0], [])
        self.assertEqual(self.events(), [])

    def test_changes_to_unselected_objects_send_nothing(self):
        self.emu.seed("salesforce", "Lead", [{"LastName": "L", "Company": "C"}])
        self.assertEqual(self.events(), [])

    def test_account_delete_cascades_to_contacts(self):
        aid = self.emu.seed("salesforce", "Account", [{"Name": "Acme"}])["ids"][0]
        cid = self.emu.seed("salesforce", "Contact", [{"LastName": "D", "AccountId": aid}])["ids"][0]
        self.poll()
        self.rest("DELETE", "/sobjects/Account/" + aid)
        events, _ = self.poll()
        got = sorted((self.header(e)["entityName"], self.header(e)["changeType"],
                      tuple(self.header(e)["recordIds"])) for e in events)
        self.assertEqual(got, [("Account", "DELETE", (aid,)), ("Contact", "DELETE", (cid,))])

    def test_long_poll_returns_when_an_event_arrives(self):
        self.emu.config(salesforce_cometd_timeout_ms=30000)
        conn = self.emu.connection(timeout=60)
        out = {}

        def hold():
            t0 = time.monotonic()
            out["reply"] = self.bayeux({"channel": "/meta/connect", "clientId": self.cid,
                                        "connectionType": "long-polling"}, conn=conn)[2]
            out["held"] = time.monotonic() - t0
        th = threading.Thread(target=hold)
        th.start()
        for _ in range(100):       # wait until the connect is held
            cl = self.emu.request("GET", "/__emulator/salesforce/cdc/clients")[2]
            if cl and cl[0]["polling"]:
                break
            time.sleep(0.05)
        self.emu.seed("salesforce", "Contact", [{"LastName": "Wake"}])
        th.join(60)
        conn.close()
        self.assertEqual(out["reply"][0]["data"]["payload"]["Name"], {"LastName": "Wake"})
        self.assertLess(out["held"], 15)      # woken by the event, not by the 30 s timeout

    def test_rest_api_is_served_while_a_connect_is_held(self):
        self.emu.config(salesforce_cometd_timeout_ms=3000)
        conn = self.emu.connection(timeout=60)
        th = threading.Thread(target=lambda: self.bayeux(
            {"channel": "/meta/connect", "clientId": self.cid,
             "connectionType": "long-polling"}, conn=conn))
        th.start()
        st, _, _ = self.rest("GET", "/limits")
        self.assertEqual(st, 200)
        th.join(60)
        conn.close()

    def test_event_log_control(self):
        self.emu.seed("salesforce", "Contact", [{"LastName": "A"}])
        self.emu.seed("salesforce", "Account", [{"Name": "B"}])
        evs = self.events()
        self.assertEqual([(e["replayId"], e["entity"], e["channel"]) for e in evs],
                         [(1, "Contact", "/data/ContactChangeEvent"),
                          (2, "Account", "/data/AccountChangeEvent")])
        self.assertEqual([e["entity"] for e in self.events(since=1)], ["Account"])
        self.assertEqual([e["entity"] for e in self.events(entity="Contact")], ["Contact"])


class TestReplay(CometdTestCase):
    def setUp(self):
        super().setUp()
        for n in ("A", "B", "C"):
            self.emu.seed("salesforce", "Contact", [{"LastName": n}])
        self.handshake()
        self.connect()

    def names(self, events):
        return [e["data"]["payload"]["Name"]["LastName"] for e in events]

    def test_minus_two_replays_everything_retained(self):
        self.assertTrue(self.subscribe("/data/ContactChangeEvent", -2)["successful"])
        self.assertEqual(self.names(self.connect()[:-1]), ["A", "B", "C"])

    def test_minus_one_gives_only_new_events(self):
        self.subscribe("/data/ContactChangeEvent", -1)
        self.assertEqual(self.poll()[0], [])
        self.emu.seed("salesforce", "Contact", [{"LastName": "D"}])
        self.assertEqual(self.names(self.poll()[0]), ["D"])

    def test_stored_replay_id_gives_the_events_after_it(self):
        self.subscribe("/data/ContactChangeEvent", 1)
        events, _ = self.poll()
        self.assertEqual(self.names(events), ["B", "C"])
        self.assertEqual([e["data"]["event"]["replayId"] for e in events], [2, 3])

    def test_replay_id_that_was_never_issued_is_invalid(self):
        r = self.subscribe("/data/ContactChangeEvent", 99)
        self.assertFalse(r["successful"])
        self.assertEqual(r["error"], "400::The replayId {99} you provided was invalid.  Please "
                         "provide a valid ID, -2 to replay all events, or -1 to replay only new "
                         "events.")

    def test_replay_id_older_than_72_hours_is_invalid(self):
        self.emu.request("POST", "/__emulator/clock", {"advance_s": 71 * 3600})
        self.emu.seed("salesforce", "Contact", [{"LastName": "D"}])
        self.emu.request("POST", "/__emulator/clock", {"advance_s": 2 * 3600})
        self.h["Authorization"] = "Bearer " + self.get_token()     # the old one expired
        self.handshake()
        self.connect()
        r = self.subscribe("/data/ContactChangeEvent", 2)
        self.assertEqual(r["error"], "400::The replayId {2} you provided was invalid.  Please "
                         "provide a valid ID, -2 to replay all events, or -1 to replay only new "
                         "events.")
        # the last purged event's id is invalid too; what is retained is replayed
        self.assertIn("invalid", self.subscribe("/data/ContactChangeEvent", 3)["error"])
        self.assertTrue(self.subscribe("/data/ContactChangeEvent", -2)["successful"])
        self.assertEqual(self.names(self.connect()[:-1]), ["D"])
        self.assertEqual([e["replayId"] for e in self.events()], [4])

    def test_replay_id_as_string(self):
        self.assertTrue(self.subscribe("/data/ContactChangeEvent", "2")["successful"])
        self.assertEqual(self.names(self.connect()[:-1]), ["C"])


class TestGapAndOverflow(CometdTestCase):
    def setUp(self):
        super().setUp()
        self.session("/data/ContactChangeEvent")

    def gap(self, **body):
        return self.emu.request("POST", "/__emulator/salesforce/cdc/gap", body)

    def test_gap_event_for_records(self):
        ids = self.new_contacts(2)
        self.poll()
        st, _, b = self.gap(object="Contact", ids=ids, kind="GAP_UPDATE")
        self.assertEqual(st, 200, b)
        events, _ = self.poll()
        self.assertEqual(len(events), 1)
        p = events[0]["data"]["payload"]
        self.assertEqual(set(p), {"ChangeEventHeader"})
        h = p["ChangeEventHeader"]
        self.assertEqual(h["changeType"], "GAP_UPDATE")
        self.assertEqual(h["recordIds"], ids)
        self.assertEqual(h["sequenceNumber"], 1)
        self.assertEqual(h["changedFields"], [])

    def test_every_gap_kind(self):
        cid = self.new_contacts(1)[0]
        for kind in ("GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW"):
            st, _, b = self.gap(object="Contact", ids=[cid], kind=kind)
            self.assertEqual(st, 200, b)
        kinds = [self.header(e)["changeType"] for e in self.poll()[0]]
        self.assertEqual(kinds, ["CREATE", "GAP_CREATE", "GAP_UPDATE", "GAP_DELETE",
                                 "GAP_UNDELETE", "GAP_OVERFLOW"])

    def test_gap_requests_checked(self):
        self.assertEqual(self.gap(object="Lead", ids=["00QEm0000001001"], kind="GAP_UPDATE")[0],
                         400)
        self.assertEqual(self.gap(object="Contact", ids=[], kind="GAP_UPDATE")[0], 400)
        self.assertEqual(self.gap(object="Contact", ids=["x"], kind="BOGUS")[0], 400)
        self.assertEqual(self.gap(object="Nope", ids=["x"], kind="GAP_UPDATE")[0], 404)

    def test_overflow_event_has_no_ids(self):
        st, _, b = self.gap(object="Contact", kind="GAP_OVERFLOW")
        self.assertEqual(st, 200, b)
        h = self.header(self.poll()[0][0])
        self.assertEqual(h["changeType"], "GAP_OVERFLOW")
        self.assertEqual(h["entityName"], "Contact")
        self.assertEqual(h["recordIds"], [])

    def test_transaction_beyond_threshold_overflows(self):
        self.emu.config(salesforce_cdc_overflow_threshold=2)
        self.emu.config(salesforce_cdc_entities=["Contact", "Account"])
        self.subscribe("/data/AccountChangeEvent")
        recs = [{"attributes": {"type": "Contact"}, "LastName": "L%d" % i} for i in range(3)]
        recs.append({"attributes": {"type": "Account"}, "Name": "A"})
        st, _, b = self.rest("POST", "/composite/sobjects", {"records": recs})
        self.assertEqual(st, 200, b)
        events, _ = self.poll()
        got = [(self.header(e)["entityName"], self.header(e)["changeType"],
                len(self.header(e)["recordIds"])) for e in events]
        self.assertEqual(got, [("Contact", "CREATE", 1), ("Contact", "CREATE", 1),
                               ("Contact", "GAP_OVERFLOW", 0), ("Account", "GAP_OVERFLOW", 0)])
        self.assertEqual(len({self.header(e)["transactionKey"] for e in events}), 1)

    def test_update_counts_each_field_toward_the_threshold(self):
        cid = self.new_contacts(1)[0]
        self.poll()
        # Title + Phone + LastModifiedDate = 3 changes > 2
        self.emu.config(salesforce_cdc_overflow_threshold=2)
        self.rest("PATCH", "/sobjects/Contact/" + cid, {"Title": "T", "Phone": "1"})
        self.assertEqual([self.header(e)["changeType"] for e in self.poll()[0]],
                         ["GAP_OVERFLOW"])
