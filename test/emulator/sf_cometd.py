"""Salesforce Streaming API (CometD/Bayeux long polling) for Change Data Capture.

salesforce.py owns the records; this module turns their changes into change
events and serves them at ``/cometd/<version>``.  See README-cometd.md for
what is emulated, what comes from Salesforce's documentation and what is a
guess.

Hooks in salesforce.py (kept to a few lines):
  - ``Api.__init__`` makes ``self.cdc = CometD(self)``; ``Api.reset`` calls
    ``self.cdc.reset()``;
  - ``Api.set_record`` calls ``self.cdc.record_changed(obj, rid, old, new)``
    for every stored change (rollbacks included);
  - ``Api.handle`` and the control writes run inside
    ``self.cdc.transaction(req)``: the changes of one request are one
    transaction, published as events when it ends (net of any rollback);
  - ``Api.handle`` hands ``/cometd/...`` to ``self.cdc.handle(req)`` before it
    takes the API lock, so a held long poll never blocks the REST API;
  - ``Api.control`` hands ``/__emulator/salesforce/cdc/...`` and
    ``/__emulator/salesforce/undelete`` to ``self.cdc.control``.

Locking: the record hooks run under the Salesforce API lock; the event log
and the clients are guarded by ``self.cond`` (its own lock).  Code holding
``self.cond`` never takes the API lock.
"""
import json
import re
import secrets
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone

from common import Response, json_response

RETENTION_S = 72 * 3600            # change events are kept 72 hours
MIN_COMETD_VERSION = 37            # "Only API versions '37.0' and later are supported"
MAX_REQUEST_BYTES = 32768          # "413 Maximum Request Size Exceeded" beyond this
CLIENT_GRACE_S = 40                # reconnect deadline after a reply (docs: 40 s)
COOKIE = "BAYEUX_BROWSER"
ALL_CHANNEL = "/data/ChangeEvents"
GAP_KINDS = ("GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW")
SKIP_FIELDS = ("Id", "IsDeleted", "SystemModstamp")
PATH_RE = re.compile(r"^/cometd(?:/([^/]*))?(/.*)?$")
VERSION_RE = re.compile(r"^(\d+)\.(\d)$")
REST_VERSION_RE = re.compile(r"^/services/data/v(\d+\.\d)(/|$)")
CLIENT_OPT_RE = re.compile(r"(?:^|[,;\s])client\s*=\s*([^,;]*)")
CT = ("Content-Type", "application/json;charset=UTF-8")


def entity_channel(entity):
    """/data/ContactChangeEvent; custom objects drop the c: /data/Foo__ChangeEvent."""
    if entity.endswith("__c"):
        return "/data/%s__ChangeEvent" % entity[:-3]
    return "/data/%sChangeEvent" % entity


def channel_entity(channel):
    """Object name a /data/<X>ChangeEvent channel names, or None."""
    if not channel.startswith("/data/") or not channel.endswith("ChangeEvent"):
        return None
    stem = channel[len("/data/"):-len("ChangeEvent")]
    if not stem or "/" in stem:
        return None
    if stem.endswith("__"):
        return stem + "c"
    return stem


def _cdc_datetime(v):
    """2026-05-06T11:56:44.123+0000 -> 2026-05-06T11:56:44.123Z (CometD events)."""
    if isinstance(v, str) and v.endswith("+0000"):
        return v[:-5] + "Z"
    return v


def _stamp_ms(v):
    try:
        dt = datetime.strptime(v, "%Y-%m-%dT%H:%M:%S.%f+0000").replace(tzinfo=timezone.utc)
        return int(round(dt.timestamp() * 1000))
    except (TypeError, ValueError):
        return None


class Client:
    def __init__(self, cid, token):
        self.id = cid
        self.token = token
        self.subs = {}            # channel -> replayId already covered
        self.connected = False    # the first /meta/connect was answered
        self.last_seen = 0.0      # emulator clock
        self.gone = False
        self.poll_gen = 0         # a newer /meta/connect ends an older held one
        self.polling = False


class CometD:
    def __init__(self, api):
        self.api = api
        self.emu = api.emu
        self.cond = threading.Condition(threading.Lock())
        self.txn = None
        self.depth = 0
        self.reset()

    # ------------------------------------------------------------ state
    def reset(self):
        with self.cond:
            for c in getattr(self, "clients", {}).values():
                c.gone = True
            self.clients = {}
            self.events = []          # [replayId, entity, emu time, data dict]
            self.last_replay = 0
            self.purged_upto = 0      # highest replayId dropped by retention
            self.commit_number = 1100000000000
            self.cond.notify_all()
        self.txn = None
        self.depth = 0

    def now(self):
        return self.emu.time() if hasattr(self.emu, "time") else time.time()

    def config(self, key, default):
        return getattr(self.emu, "config", {}).get(key, default)

    def enabled(self):
        """Canonical names of the objects selected for Change Data Capture."""
        names = self.config("salesforce_cdc_entities", []) or []
        if isinstance(names, str):
            names = [names]
        out = set()
        for n in names if isinstance(names, list) else []:
            o = self.api.obj(str(n))
            if o is not None:
                out.add(o.name)
        return out

    def timeout_ms(self):
        try:
            return max(0, int(self.config("salesforce_cometd_timeout_ms", 110000)))
        except (TypeError, ValueError):
            return 110000

    def overflow_threshold(self):
        try:
            return max(0, int(self.config("salesforce_cdc_overflow_threshold", 100000)))
        except (TypeError, ValueError):
            return 100000

    # ------------------------------------------------------ transactions
    @contextmanager
    def transaction(self, req=None):
        """The record changes made inside are one Salesforce transaction; its
        events are published when the outermost one ends."""
        if self.depth == 0:
            self.txn = {"changes": {}, "origin": self._origin(req),
                        "enabled": self.enabled()}
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if self.depth == 0:
                txn, self.txn = self.txn, None
                if txn["changes"]:
                    self._publish_txn(txn)

    @staticmethod
    def _origin(req):
        """changeOrigin: com/salesforce/api/rest/62.0;client=<Sforce-Call-Options
        client>; empty for changes made as the remote user (control API)."""
        if req is None:
            return ""
        m = REST_VERSION_RE.match(req.path)
        if not m:
            return ""
        origin = "com/salesforce/api/rest/%s" % m.group(1)
        opts = req.headers.get("sforce-call-options", "")
        cm = CLIENT_OPT_RE.search(opts)
        if cm and cm.group(1).strip():
            origin += ";client=" + cm.group(1).strip()
        return origin

    def record_changed(self, objname, rid, old, new):
        """Called by Api.set_record for every change (under the API lock)."""
        if self.txn is None:                # a change outside any request
            with self.transaction():
                self.record_changed(objname, rid, old, new)
            return
        if objname not in self.txn["enabled"]:
            return
        ch = self.txn["changes"]
        if rid not in ch:
            ch[rid] = (objname, old)

    # ------------------------------------------------------------ events
    def _compound_map(self, o):
        comp = {}
        for f in o.fields.values():
            if f.compound:
                if f.type == "address":
                    prefix = f.name[:-len("Address")]
                    for c in f.compound:
                        comp[c] = (f.name, c[len(prefix):])
                else:
                    for c in f.compound:
                        comp[c] = (f.name, c)
        return comp

    def _body_fields(self, o):
        return [f for f in o.fields.values()
                if not f.compound and f.name not in SKIP_FIELDS]

    @staticmethod
    def _value(f, rec):
        v = rec.get(f.name)
        if v is None and f.type == "boolean":
            return False
        if f.type == "datetime":
            return _cdc_datetime(v)
        return v

    def _put(self, body, comp, f, value):
        """Set a body field; compound components nest: Name.LastName."""
        if f.name in comp:
            cname, key = comp[f.name]
            sub = body.get(cname)
            if sub is None:
                sub = body[cname] = {}
            sub[key] = value
            return "%s.%s" % (cname, key)
        body[f.name] = value
        return f.name

    def _record_change(self, o, old, new):
        """(changeType, body, changedFields, nulledFields, cost) or None."""
        comp = self._compound_map(o)
        fields = self._body_fields(o)
        old_live = old is not None and not old.get("IsDeleted")
        new_live = new is not None and not new.get("IsDeleted")
        if new_live and not old_live:
            body = {}
            for f in fields:
                v = self._value(f, new)
                if v is not None:
                    self._put(body, comp, f, v)
            return ("UNDELETE" if old is not None else "CREATE", body, [], [], 1)
        if old_live and not new_live:
            if new is None:                 # a create rolled back: never seen
                return None
            return ("DELETE", {}, [], [], 1)
        if not (old_live and new_live):
            return None
        body, changed, nulled = {}, [], []
        for f in fields:
            if old.get(f.name) == new.get(f.name):
                continue
            v = self._value(f, new)
            name = self._put(body, comp, f, v)
            changed.append(name)
            if v is None:
                nulled.append(name)
        if not changed:
            return None
        return ("UPDATE", body, changed, nulled, len(changed))

    def _header(self, entity, ids, ctype, origin, tkey, seq, ts, user, changed=(),
                nulled=()):
        return {"entityName": entity, "recordIds": list(ids), "changeType": ctype,
                "changeOrigin": origin, "transactionKey": tkey, "sequenceNumber": seq,
                "commitTimestamp": ts, "commitNumber": self.commit_number,
                "commitUser": user, "nulledFields": list(nulled), "diffFields": [],
                "changedFields": list(changed)}

    @staticmethod
    def _schema_id(entity):
        import hashlib
        import base64
        d = hashlib.sha256(("ChangeEvent:" + entity).encode()).digest()
        return base64.urlsafe_b64encode(d).decode()[:22]

    def _publish_txn(self, txn):
        api = self.api
        threshold = self.overflow_threshold()
        spent = 0
        groups = {}            # merge key -> [entity, ctype, body, changed, nulled, user, ids]
        order = []
        overflow = {}          # entity -> True, in order
        ts = None
        for rid, (objname, old) in txn["changes"].items():
            o = api.schema.get(objname)
            if o is None:
                continue
            new = api.records.get(objname, {}).get(rid)
            ch = self._record_change(o, old, new)
            if ch is None:
                continue
            ctype, body, changed, nulled, cost = ch
            if overflow or spent + cost > threshold:
                overflow.setdefault(objname, True)
                continue
            spent += cost
            user = (new or {}).get("LastModifiedById") or api.user_id
            if ts is None:
                ts = _stamp_ms((new or {}).get("SystemModstamp"))
            key = (objname, ctype, user, json.dumps(body, sort_keys=True, default=str),
                   tuple(changed))
            g = groups.get(key)
            if g is None:
                g = groups[key] = [objname, ctype, body, changed, nulled, user, []]
                order.append(key)
            g[6].append(rid)
        if not order and not overflow:
            return []
        if ts is None:
            ts = int(self.now() * 1000)
        tkey = "0000" + str(uuid.uuid4())[4:]
        out = []
        seq = 0
        for key in order:
            entity, ctype, body, changed, nulled, user, ids = groups[key]
            seq += 1
            payload = dict(body)
            payload["ChangeEventHeader"] = self._header(entity, ids, ctype, txn["origin"], tkey,
                                                        seq, ts, user, changed, nulled)
            out.append((entity, payload))
        for entity in overflow:
            seq += 1
            out.append((entity, {"ChangeEventHeader": self._header(
                entity, [], "GAP_OVERFLOW", txn["origin"], tkey, seq, ts, api.user_id)}))
        return self._append(out)

    def _append(self, items):
        """Give replay IDs, store, wake the long polls.  items: [(entity, payload)]."""
        now = self.now()
        stored = []
        with self.cond:
            self.commit_number += 1
            for entity, payload in items:
                payload["ChangeEventHeader"]["commitNumber"] = self.commit_number
                self.last_replay += 1
                data = {"schema": self._schema_id(entity), "payload": payload,
                        "event": {"replayId": self.last_replay}}
                ev = [self.last_replay, entity, now, data]
                self.events.append(ev)
                stored.append(ev)
            self.cond.notify_all()
        return stored

    def _purge(self):
        """Drop events older than the retention window (emulator clock)."""
        cutoff = self.now() - RETENTION_S
        n = 0
        while n < len(self.events) and self.events[n][2] < cutoff:
            n += 1
        if n:
            self.purged_upto = self.events[n - 1][0]
            del self.events[:n]

    def gap(self, objname, ids, kind):
        """Publish a gap event (GAP_CREATE/UPDATE/DELETE/UNDELETE for ids) or an
        overflow event (GAP_OVERFLOW) for objname; answers the stored events."""
        kind = str(kind or "").upper()
        if not kind.startswith("GAP_"):
            kind = "GAP_" + kind
        if kind not in GAP_KINDS:
            raise ValueError("kind must be one of %s" % ", ".join(GAP_KINDS))
        o = self.api.obj(str(objname or ""))
        if o is None:
            raise KeyError(objname)
        if o.name not in self.enabled():
            raise ValueError("%s is not selected for Change Data Capture: add it to the "
                             "config key salesforce_cdc_entities first" % o.name)
        if kind == "GAP_OVERFLOW":
            ids = []
        else:
            if not isinstance(ids, list) or not ids:
                raise ValueError("ids: a non-empty list of record ids")
            ids = [str(i) for i in ids]
        ts = int(self.now() * 1000)
        tkey = "0000" + str(uuid.uuid4())[4:]
        payload = {"ChangeEventHeader": self._header(o.name, ids, kind, "", tkey, 1, ts,
                                                     self.api.user_id)}
        return self._append([(o.name, payload)])

    # ----------------------------------------------------------- Bayeux
    def handle(self, req):
        m = PATH_RE.match(req.path)
        ver = m.group(1) if m else None
        vm = VERSION_RE.match(ver or "")
        latest = "%d.0" % self._max_version()
        if not vm:
            return self._http_error(400, "400::API version in the URI is mandatory. URI format: "
                                    "'/cometd/%s'" % latest)
        major = int(vm.group(1))
        if major < MIN_COMETD_VERSION or vm.group(2) != "0":
            return self._http_error(400, "400::Unsupported API version. Only API versions "
                                    "'%d.0' and later are supported. URI format: '/cometd/%s'"
                                    % (MIN_COMETD_VERSION, latest))
        if major > self._max_version():
            return json_response(404, [{"message": "The requested resource does not exist",
                                        "errorCode": "NOT_FOUND"}])
        if req.method != "POST":
            return self._http_error(400, "400::Invalid connection type {callback-polling}")
        if len(req.body) > MAX_REQUEST_BYTES:
            return self._http_error(413, "413::Maximum Request Size Exceeded")
        try:
            msgs = json.loads(req.body.decode("utf-8")) if req.body else None
        except (ValueError, UnicodeDecodeError):
            msgs = None
        if isinstance(msgs, dict):
            msgs = [msgs]
        if not isinstance(msgs, list) or not msgs or not all(isinstance(x, dict) for x in msgs):
            return self._http_error(400, "400::Bad request: the body must be a JSON array of "
                                    "Bayeux messages")
        auth = req.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        token = token.strip() if scheme.lower() in ("bearer", "oauth") else ""
        if not token:
            return Response(401, json.dumps([self._err(m_, "401::Request requires authentication",
                                                       {"reconnect": "none"})
                                             for m_ in msgs], separators=(",", ":")), [CT])
        has_cookie = COOKIE in self._cookies(req)
        replies = []
        headers = [CT]
        connect = None
        for msg in msgs:
            ch = msg.get("channel")
            if ch == "/meta/connect":
                connect = msg
                continue
            if ch == "/meta/handshake":
                r = self._handshake(msg, token)
                if r.get("successful") and not has_cookie:
                    headers.append(("Set-Cookie", "%s=%s; Path=/; HttpOnly"
                                    % (COOKIE, secrets.token_hex(12))))
                    has_cookie = True
                replies.append(r)
            elif ch in ("/meta/subscribe", "/meta/unsubscribe", "/meta/disconnect"):
                replies.append(self._session_op(msg, token, has_cookie))
            else:
                replies.append(self._err(msg, "403::Publish denied"))
        if connect is not None:
            replies.extend(self._connect(connect, token, has_cookie))
        return Response(200, json.dumps(replies, separators=(",", ":")), headers)

    def _max_version(self):
        return sys.modules[type(self.api).__module__].MAX_VERSION

    @staticmethod
    def _cookies(req):
        out = {}
        for part in req.headers.get("cookie", "").split(";"):
            k, sep, v = part.strip().partition("=")
            if sep:
                out[k.strip()] = v.strip()
        return out

    @staticmethod
    def _err(msg, error, advice=None, **extra):
        r = {"channel": msg.get("channel"), "successful": False, "error": error}
        if msg.get("id") is not None:
            r["id"] = msg.get("id")
        if msg.get("clientId") is not None:
            r["clientId"] = msg.get("clientId")
        if advice is not None:
            r["advice"] = advice
        r.update(extra)
        return r

    def _http_error(self, status, error):
        return json_response(status, [{"successful": False, "error": error}])

    def _token_ok(self, token, handshake):
        issued = self.api.tokens.get(token)
        if issued is None:
            return False
        if handshake:
            return self.now() - issued < self.config("token_ttl_s", 7200)
        return True          # a connected client's session does not expire

    def _handshake(self, msg, token):
        if not self._token_ok(token, True):
            r = self._err(msg, "403::Handshake denied", {"reconnect": "none"})
            r["ext"] = {"sfdc": {"failureReason": "401::Authentication invalid"}}
            return r
        types = msg.get("supportedConnectionTypes")
        if isinstance(types, list) and "long-polling" not in types:
            return self._err(msg, "400::Invalid connection type {%s}"
                             % ",".join(str(t) for t in types), {"reconnect": "none"})
        cid = "".join(secrets.choice("0123456789abcdefghijklmnopqrstuvwxyz") for _ in range(27))
        c = Client(cid, token)
        c.last_seen = self.now()
        with self.cond:
            self.clients[cid] = c
        r = {"ext": {"replay": True, "payload.format": True}, "minimumVersion": "1.0",
             "clientId": cid, "supportedConnectionTypes": ["long-polling"],
             "channel": "/meta/handshake"}
        if msg.get("id") is not None:
            r["id"] = msg["id"]
        r.update({"version": "1.0", "successful": True})
        return r

    def _client(self, msg, token, has_cookie):
        """(client, None) or (None, error reply).  Call with self.cond held."""
        cid = msg.get("clientId")
        c = self.clients.get(cid) if isinstance(cid, str) else None
        if c is not None and not c.polling:
            idle = self.timeout_ms() / 1000.0 + CLIENT_GRACE_S
            if self.now() - c.last_seen > idle:
                c.gone = True
                del self.clients[cid]
                c = None
        if c is None:
            return None, self._err(msg, "403::Unknown client",
                                   {"interval": 0, "reconnect": "handshake"})
        if not has_cookie:
            return None, self._err(msg, "400::Client %s has established a session, but no "
                                   "%s cookie present" % (c.id, COOKIE))
        if not self._token_ok(token, False):
            c.gone = True
            self.clients.pop(c.id, None)
            return None, self._err(msg, "401::Authentication invalid",
                                   {"reconnect": "none", "interval": 0})
        return c, None

    def _session_op(self, msg, token, has_cookie):
        ch = msg["channel"]
        with self.cond:
            c, err = self._client(msg, token, has_cookie)
            if err is not None:
                if ch != "/meta/connect" and "subscription" in msg:
                    err["subscription"] = msg.get("subscription")
                return err
            c.last_seen = self.now()
            base = {"clientId": c.id, "channel": ch}
            if msg.get("id") is not None:
                base["id"] = msg["id"]
            if ch == "/meta/disconnect":
                c.gone = True
                self.clients.pop(c.id, None)
                self.cond.notify_all()
                base["successful"] = True
                return base
            sub = msg.get("subscription")
            base["subscription"] = sub
            if ch == "/meta/unsubscribe":
                c.subs.pop(sub, None)
                base["successful"] = True
                return base
            error = self._subscribe(c, sub, msg.get("ext"))
            if error:
                base["error"] = error
                base["successful"] = False
            else:
                base["successful"] = True
            return base

    def _subscribe(self, c, sub, ext):
        """Subscribe c to sub; an error text or None.  self.cond held."""
        if not sub or not isinstance(sub, str):
            return "400::Channel name not specified"
        if not sub.startswith("/"):
            return "400::Channel subscriptions must start with a leading '/'"
        if sub != ALL_CHANNEL:
            name = channel_entity(sub)
            o = self.api.schema.get(name) if name else None   # channel names are case-sensitive
            if o is None or entity_channel(o.name) != sub:
                return "400::The channel you requested to subscribe to does not exist {%s}" % sub
            if o.name not in self.enabled():
                return "403::Unknown channel"
        replay = -1
        rmap = ext.get("replay") if isinstance(ext, dict) else None
        if isinstance(rmap, dict):
            if sub not in rmap:
                return ("400::The replayId for channel {%s} wasn't found using the provided "
                        "replay ID map {%s}. Ensure that the channel name you provided in the "
                        "replay map is valid and matches the channel name used for subscribing."
                        % (sub, "{" + ", ".join("%s=%s" % kv for kv in rmap.items()) + "}"))
            replay = rmap[sub]
        self._purge()
        n = None
        if isinstance(replay, bool):
            n = None
        elif isinstance(replay, int):
            n = replay
        elif isinstance(replay, str) and re.match(r"^-?\d+$", replay.strip()):
            n = int(replay.strip())
        if n == -1:
            c.subs[sub] = self.last_replay
        elif n == -2:
            c.subs[sub] = self.purged_upto
        elif n is not None and self.purged_upto < n <= self.last_replay:
            c.subs[sub] = n
        else:
            return ("400::The replayId {%s} you provided was invalid.  Please provide a valid "
                    "ID, -2 to replay all events, or -1 to replay only new events." % (replay,))
        return None

    def _gather(self, c):
        """Event messages due to c, cursors moved.  self.cond held."""
        if not c.subs or not self.events:
            return []
        self._purge()
        out = []
        for sub, cursor in list(c.subs.items()):
            if cursor >= self.last_replay:
                continue
            want = None if sub == ALL_CHANNEL else channel_entity(sub)
            # events are in replayId order: bisect to the first after cursor
            lo, hi = 0, len(self.events)
            while lo < hi:
                mid = (lo + hi) // 2
                if self.events[mid][0] <= cursor:
                    lo = mid + 1
                else:
                    hi = mid
            for ev in self.events[lo:]:
                if want is None or ev[1] == want:
                    out.append((ev[0], {"data": ev[3], "channel": sub}))
            c.subs[sub] = self.last_replay
        out.sort(key=lambda x: x[0])
        return [m for _, m in out]

    def _connect(self, msg, token, has_cookie):
        with self.cond:
            c, err = self._client(msg, token, has_cookie)
            if err is not None:
                return [err]
            ctype = msg.get("connectionType", "long-polling")
            if ctype != "long-polling":
                return [self._err(msg, "400::Invalid connection type {%s}" % ctype,
                                  {"reconnect": "retry", "interval": 0})]
            reply = {"clientId": c.id, "channel": "/meta/connect"}
            if not c.connected:
                c.connected = True
                reply["advice"] = {"interval": 0, "timeout": self.timeout_ms(),
                                   "reconnect": "retry"}
                events = self._gather(c)
            else:
                c.poll_gen += 1
                gen = c.poll_gen
                c.polling = True
                self.cond.notify_all()      # an older held connect of c returns now
                deadline = time.monotonic() + self.timeout_ms() / 1000.0
                stopping = getattr(self.emu, "stopping", None)
                events = []
                try:
                    while True:
                        if c.gone or c.poll_gen != gen or (stopping and stopping.is_set()):
                            break
                        events = self._gather(c)
                        if events:
                            break
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self.cond.wait(min(left, 0.5))
                finally:
                    if c.poll_gen == gen:
                        c.polling = False
            c.last_seen = self.now()
            if msg.get("id") is not None:
                reply["id"] = msg["id"]
            reply["successful"] = True
            return events + [reply]

    # ----------------------------------------------------------- control
    def control(self, method, parts, query, body):
        """/__emulator/salesforce/cdc/... and /__emulator/salesforce/undelete.
        Called under the API lock (Api.control)."""
        if parts == ["undelete"] and method == "POST":
            return json_response(200, {"undeleted": self.undelete(
                body.get("ids") if isinstance(body, dict) else body)})
        if not parts or parts[0] != "cdc":
            return None
        rest = parts[1:]
        if rest == ["events"] and method == "GET":
            since = int((query.get("since") or ["0"])[0] or 0)
            ent = (query.get("entity") or [None])[0]
            with self.cond:
                self._purge()
                evs = [e for e in self.events if e[0] > since and (ent is None or e[1] == ent)]
                out = [{"replayId": e[0], "entity": e[1], "channel": entity_channel(e[1]),
                        "time": e[2], "data": e[3]} for e in evs]
            return json_response(200, out)
        if rest == ["gap"] and method == "POST":
            if not isinstance(body, dict):
                raise ValueError('body: {"object": "Contact", "ids": [...], "kind": "GAP_UPDATE"}')
            evs = self.gap(body.get("object"), body.get("ids"), body.get("kind"))
            return json_response(200, [{"replayId": e[0], "entity": e[1],
                                        "channel": entity_channel(e[1]), "data": e[3]}
                                       for e in evs])
        if rest == ["clients"] and method == "GET":
            with self.cond:
                return json_response(200, [{"clientId": c.id, "subscriptions": c.subs,
                                            "polling": c.polling, "connected": c.connected}
                                           for c in self.clients.values()])
        if rest == ["expire_clients"] and method == "POST":
            with self.cond:
                n = len(self.clients)
                for c in self.clients.values():
                    c.gone = True
                self.clients = {}
                self.cond.notify_all()
            return json_response(200, {"expired": n})
        return None

    def undelete(self, ids):
        """Undelete soft-deleted records as the remote user (Salesforce's
        undelete() call; no REST endpoint): IsDeleted false, the unique keys
        held again, out of the delete log."""
        api = self.api
        if not isinstance(ids, list) or not ids:
            raise ValueError('body: {"ids": ["003..."]}')
        from sf_schema import to18
        done = []
        with self.transaction():
            stamp = api.new_stamp()
            for i in ids:
                rid = to18(str(i))
                o = api.prefix_obj.get(rid[:3]) if rid else None
                rec = api.records[o.name].get(rid) if o is not None else None
                if rec is None or not rec.get("IsDeleted"):
                    raise KeyError(i)
                new = dict(rec)
                new["IsDeleted"] = False
                new["LastModifiedDate"] = stamp
                new["LastModifiedById"] = api.remote_user_id
                new["SystemModstamp"] = stamp
                for f in o.uniques:
                    v = new.get(f.name)
                    if v is not None:
                        k = v if f.caseSensitive else v.lower()
                        holder = api.uniq.get((o.name, f.name), {}).get(k)
                        if holder is not None and holder != rid:
                            raise ValueError("DUPLICATE_VALUE: duplicate value found: %s "
                                             "duplicates value on record with id: %s"
                                             % (f.name, holder))
                api.set_record(o.name, rid, new)
                log = api.delete_log.get(o.name)
                if log is not None:
                    log[:] = [e for e in log if e[0] != rid]
                done.append(rid)
        return done
