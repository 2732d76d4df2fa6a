"""Salesforce REST API emulator (OAuth 2.0 token endpoint + /services/data).

See README.md ("Salesforce") for what is emulated, credentials and the seed
format.  Schema and IDs: sf_schema.py; SOQL: sf_soql.py.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
import urllib.parse
from datetime import datetime, timedelta, timezone

import certs
import sf_cometd
from common import ApiBase, Response, json_response
from sf_schema import (NUMERIC, STRINGISH, custom_field, custom_object, id_suffix,
                       link_children, make_id, standard_objects, to18)
from sf_soql import (Parser, SoqlError, SubQuery, aggregate_rows, compound_name, parse_iso,
                     sf_dt, sort_records)

CLIENT_ID = "sync-client"
CLIENT_SECRET = "sync-secret"
USERNAME = "sync@example.com"
REMOTE_USERNAME = "remote.user@example.com"
FIXED_REFRESH_TOKEN = "sync-refresh-token"
PASSWORD = "sync-password"
SECURITY_TOKEN = "sync-token"
LOGIN_URLS = ("https://login.salesforce.com", "https://test.salesforce.com")
MIN_VERSION = 50
MAX_VERSION = 66
# release names as GET /services/data answers them (the Nango recording)
VERSION_LABELS = {50: "Winter '21", 51: "Spring '21", 52: "Summer '21", 53: "Winter '22",
                  54: "Spring '22", 55: "Summer '22", 56: "Winter '23", 57: "Spring '23",
                  58: "Summer '23", 59: "Winter '24", 60: "Spring '24", 61: "Summer '24",
                  62: "Winter '25", 63: "Spring '25", 64: "Summer '25", 65: "Winter '26",
                  66: "Spring '26"}
POD = "Em"
ORG_ID = make_id("00D", POD, 1)
COLLECTION_MAX = 200
COMPOSITE_MAX = 25
GET_UPDATED_DAYS = 30
GET_DELETED_DAYS = 15
CT = ("Content-Type", "application/json;charset=UTF-8")

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
VERSION_RE = re.compile(r"^/services/data/v(\d+)\.(\d)(/.*)?$")

AUDIT_FIELDS = ("CreatedDate", "LastModifiedDate", "SystemModstamp", "CreatedById",
                "LastModifiedById")
MSG_NOT_FOUND = "The requested resource does not exist"
MSG_ROLLED_BACK = ("Record rolled back because not all records were valid and the request "
                   "was using AllOrNone header")
MSG_HALTED = ("The transaction was rolled back since another operation in the same "
              "transaction failed.")


class ReqErr(Exception):
    """A request-level error: HTTP status + Salesforce error array."""

    def __init__(self, status, code, message, fields=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields

    def response(self, headers=()):
        e = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            e["fields"] = self.fields
        return json_response(self.status, [e], list(headers))


class RecErr(Exception):
    """A record-level (DML) error."""

    def __init__(self, code, message, fields=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields

    def item(self):
        return {"statusCode": self.code, "message": self.message,
                "fields": list(self.fields or [])}

    def as_req(self, status=400):
        return ReqErr(status, self.code, self.message,
                      self.fields if self.fields is not None else None)


def _deser(kind, v):
    if isinstance(v, dict):
        tok, txt = "START_OBJECT", "{"
    elif isinstance(v, list):
        tok, txt = "START_ARRAY", "["
    elif isinstance(v, bool):
        tok, txt = "VALUE_" + str(v).upper(), str(v).lower()
    elif isinstance(v, (int, float)):
        tok, txt = "VALUE_NUMBER_" + ("INT" if isinstance(v, int) else "FLOAT"), v
    else:
        tok, txt = "VALUE_STRING", v
    return RecErr("JSON_PARSER_ERROR", "Cannot deserialize instance of %s from %s value %s or "
                  "request may be missing a required field" % (kind, tok, txt), [])


def make_checker(f, api):
    """value -> stored value, raising RecErr; built once per field."""
    name, label, length, ftype = f.name, f.label, f.length, f.type
    fields = [name]

    if ftype in STRINGISH:
        is_email = ftype == "email"
        restricted = set(f.picklist) if (f.restrictedPicklist and f.picklist) else None
        multi = ftype == "multipicklist"

        def check(v):
            if v is None:
                return None
            if v.__class__ is not str:
                if isinstance(v, bool) or isinstance(v, (dict, list)):
                    raise _deser("string", v)
                v = str(v)
            if len(v) > length:
                raise RecErr("STRING_TOO_LONG", "%s: data value too large: %s (max length=%d)"
                             % (label, v, length), fields)
            if is_email and v and not EMAIL_RE.match(v):
                raise RecErr("INVALID_EMAIL_ADDRESS", "%s: invalid email address: %s"
                             % (label, v), fields)
            if restricted is not None and v:
                vals = v.split(";") if multi else [v]
                for x in vals:
                    if x not in restricted:
                        raise RecErr("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                     "%s: bad value for restricted picklist field: %s"
                                     % (label, x), fields)
            if v == "":
                return None
            return v
        return check
    if ftype == "boolean":
        def check(v):
            if v is None:
                return False
            if v is True or v is False:
                return v
            raise _deser("boolean", v)
        return check
    if ftype in ("int", "long"):
        def check(v):
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                if isinstance(v, str) and re.match(r"^-?\d+$", v):
                    return int(v)
                raise _deser(ftype, v)
            if isinstance(v, float):
                if v != int(v):
                    raise _deser(ftype, v)
                v = int(v)
            return v
        return check
    if ftype in ("double", "currency", "percent"):
        def check(v):
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                if isinstance(v, str):
                    try:
                        return float(v)
                    except ValueError:
                        pass
                raise _deser("double", v)
            return v
        return check
    if ftype == "date":
        def check(v):
            if v is None or v == "":
                return None
            if isinstance(v, str):
                s = v[:10] if len(v) > 10 and v[10] == "T" else v
                if DATE_RE.match(s):
                    try:
                        datetime.strptime(s, "%Y-%m-%d")
                        return s
                    except ValueError:
                        pass
            raise _deser("date", v)
        return check
    if ftype == "datetime":
        def check(v):
            if v is None or v == "":
                return None
            if isinstance(v, str):
                try:
                    return sf_dt(parse_iso(v))
                except ValueError:
                    pass
            raise _deser("datetime", v)
        return check
    if ftype == "reference":
        targets = tuple(f.referenceTo)

        def check(v):
            if v is None or v == "":
                return None
            if not isinstance(v, str):
                raise _deser("id", v)
            v18 = to18(v)
            if v18 is None:
                raise RecErr("MALFORMED_ID", "%s: id value of incorrect type: %s" % (label, v),
                             fields)
            obj = api.prefix_obj.get(v18[:3])
            if obj is None or obj.name not in targets:
                raise RecErr("FIELD_INTEGRITY_EXCEPTION", "%s: id value of incorrect type: %s"
                             % (label, v), fields)
            return v18
        return check

    def check(v):
        return v
    return check


class Api(ApiBase):
    name = "salesforce"

    def __init__(self, emu):
        super().__init__(emu)
        with open(certs.JWT_TEST_CERT) as fh:
            self.jwt_keys = [certs.rsa_public_from_cert(fh.read())]
        self.cdc = sf_cometd.CometD(self)     # Change Data Capture (sf_cometd.py)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self):
        with self.lock:
            self.cdc.reset()
            self.schema = standard_objects()
            self._index_schema()
            self.records = {n: {} for n in self.schema}
            self.uniq = {}
            self._rebuild_unique()
            self.delete_log = {n: [] for n in self.schema}
            self.counter = 1000
            self.last_ms = 0
            self.tokens = {}           # access token -> issued epoch seconds
            self.refresh_tokens = {FIXED_REFRESH_TOKEN}
            self.api_usage = 0
            self.cursors = {}
            self.undo = None
            self.user_id = make_id("005", POD, 1)
            self.remote_user_id = make_id("005", POD, 2)
            users = self.records["User"]
            stamp = sf_dt(datetime(2024, 1, 1, tzinfo=timezone.utc))
            for uid, uname, first, last in ((self.user_id, USERNAME, "Sync", "Integration"),
                                            (self.remote_user_id, REMOTE_USERNAME, "Remote",
                                             "User")):
                users[uid] = {"Id": uid, "Username": uname, "FirstName": first, "LastName": last,
                              "Email": uname, "IsActive": True, "CreatedDate": stamp,
                              "LastModifiedDate": stamp, "SystemModstamp": stamp}

    def _index_schema(self):
        self.prefix_obj = {o.prefix: o for o in self.schema.values()}
        self.obj_lower = {n.lower(): o for n, o in self.schema.items()}
        for o in self.schema.values():
            for f in o.fields.values():
                f.check = make_checker(f, self)
                f.is_ref = f.type == "reference"
            o.required = [f for f in o.fields.values() if f.required]
            o.derive = o.name == "Opportunity"
            o.uniques = [f for f in o.fields.values() if f.unique]
            o.defaults = [(f.name, f.defaultValue if f.defaultValue is not None else False)
                          for f in o.fields.values()
                          if f.createable and (f.type == "boolean" or f.defaultValue is not None)]

    def _rebuild_unique(self):
        self.uniq = {}
        for o in self.schema.values():
            for f in o.uniques:
                idx = self.uniq[(o.name, f.name)] = {}
                for rid, r in self.records.get(o.name, {}).items():
                    v = r.get(f.name)
                    if v is not None and not r.get("IsDeleted"):
                        idx[v if f.caseSensitive else v.lower()] = rid

    def now_s(self):
        t = getattr(self.emu, "time", None)
        return t() if t else time.time()

    def new_stamp(self):
        ms = int(self.now_s() * 1000)
        if ms <= self.last_ms:
            ms = self.last_ms + 1
        self.last_ms = ms
        return sf_dt(datetime.fromtimestamp(ms / 1000.0, timezone.utc))

    def now_dt(self):
        return datetime.fromtimestamp(self.now_s(), timezone.utc)

    def new_id(self, obj):
        """<prefix><pod><10-digit counter><checksum>: digits carry no case
        bits, so the checksum of the counter chunks is always 'AA'."""
        self.counter += 1
        head = obj.id_head
        if head is None:
            head = obj.id_head = (obj.prefix + POD, id_suffix(obj.prefix + POD + "0" * 10)[0] + "AA")
        rid = "%s%010d%s" % (head[0], self.counter, head[1])
        if rid in self.records[obj.name]:       # a seeded Id took this slot
            return self.new_id(obj)
        return rid

    def obj(self, name):
        o = self.schema.get(name)
        if o is None:
            o = self.obj_lower.get(name.lower())
        return o

    def find(self, rid):
        """record by canonical 18-char id (any object), or None."""
        o = self.prefix_obj.get(rid[:3])
        if o is None:
            return None
        return self.records[o.name].get(rid)

    # --------------------------------------------------------------- storage
    def set_record(self, objname, rid, new):
        recs = self.records[objname]
        old = recs.get(rid)
        if self.undo is not None:
            self.undo.append(("rec", objname, rid, old))
        self.cdc.record_changed(objname, rid, old, new)
        o = self.schema[objname]
        for f in o.uniques:
            idx = self.uniq[(objname, f.name)]
            if old is not None and not old.get("IsDeleted"):
                v = old.get(f.name)
                if v is not None:
                    k = v if f.caseSensitive else v.lower()
                    if idx.get(k) == rid:
                        del idx[k]
            if new is not None and not new.get("IsDeleted"):
                v = new.get(f.name)
                if v is not None:
                    idx[v if f.caseSensitive else v.lower()] = rid
        if new is None:
            recs.pop(rid, None)
        else:
            recs[rid] = new

    def log_delete(self, objname, rid, stamp):
        log = self.delete_log[objname]
        if self.undo is not None:
            self.undo.append(("dlog", objname, len(log)))
        log.append((rid, stamp))

    def begin(self):
        self.undo = []

    def rollback(self):
        undo, self.undo = self.undo, None
        for entry in reversed(undo or []):
            if entry[0] == "rec":
                self.set_record(entry[1], entry[2], entry[3])
            else:
                del self.delete_log[entry[1]][entry[2]:]

    def commit(self):
        self.undo = None

    # ------------------------------------------------------------ validation
    def prepare(self, o, body, creating, control=False):
        """Validate a write body -> {canonical field: value}.  Raises ReqErr
        for an unknown field (request-level, as Salesforce deserialises the
        whole body first) and RecErr for record-level problems.  Hot path of
        the collections endpoints: one pass over the body."""
        changes = {}
        bad = None
        first_err = None
        refs = None
        fields = o.fields
        for key, val in body.items():
            f = fields.get(key)
            if f is None:
                if key == "attributes":
                    continue
                f = o.by_lower.get(key.lower())
                if f is None:
                    rf = o.rel_lower.get(key.lower())
                    if rf is not None and isinstance(val, dict):
                        try:
                            changes[rf.name] = self.resolve_foreign(rf, val)
                        except RecErr as e:
                            first_err = first_err or e
                        continue
                    raise ReqErr(400, "INVALID_FIELD", "No such column '%s' on sobject of type %s"
                                 % (key, o.name))
            if not (f.createable if creating else f.updateable):
                if f.name == "Id":
                    if creating:
                        raise RecErr("INVALID_FIELD_FOR_INSERT_UPDATE",
                                     "cannot specify Id in an insert call", ["Id"])
                    continue
                if not (control and f.name in AUDIT_FIELDS):
                    if bad is None:
                        bad = []
                    bad.append(f.name)
                    continue
                try:
                    changes[f.name] = f.check(val)
                except RecErr as e:
                    first_err = first_err or e
                continue
            try:
                v = f.check(val)
            except RecErr as e:
                first_err = first_err or e
                continue
            changes[f.name] = v
            if f.is_ref and v is not None:
                if refs is None:
                    refs = []
                refs.append(f.name)
        if bad:
            raise RecErr("INVALID_FIELD_FOR_INSERT_UPDATE",
                         "Unable to create/update fields: %s. Please check the security settings "
                         "of this field and verify that it is read/write for your profile or "
                         "permission set." % ", ".join(bad), bad)
        if first_err is not None:
            raise first_err
        if creating:
            missing = None
            for f in o.required:
                if changes.get(f.name) is None:
                    if missing is None:
                        missing = []
                    missing.append(f.name)
        else:
            missing = [n for n, v in changes.items() if v is None and not fields[n].nillable
                       and fields[n].type != "boolean"]
        if missing:
            raise RecErr("REQUIRED_FIELD_MISSING", "Required fields are missing: [%s]"
                         % ", ".join(missing), missing)
        if refs:
            for name in refs:
                target = self.find(changes[name])
                if target is None:
                    raise RecErr("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id",
                                 [name])
                if target.get("IsDeleted"):
                    raise RecErr("ENTITY_IS_DELETED", "entity is deleted", [name])
        return changes

    def resolve_foreign(self, rf, val):
        """Lookup by the parent's external ID: {"Account": {"Ext__c": "x"}}."""
        items = [(k, v) for k, v in val.items() if k != "attributes"]
        target = next((self.schema[t] for t in rf.referenceTo if t in self.schema), None)
        if "attributes" in val and isinstance(val["attributes"], dict) and \
                val["attributes"].get("type"):
            target = self.obj(val["attributes"]["type"]) or target
        if target is None or len(items) != 1:
            raise RecErr("INVALID_FIELD", "Foreign key external ID: must specify exactly one "
                         "external ID field for field %s" % rf.relationshipName, [])
        k, v = items[0]
        f = target.field(k)
        if f is None or not (f.externalId or f.idLookup):
            raise RecErr("INVALID_FIELD", "No such column '%s' on sobject of type %s"
                         % (k, target.name), [])
        ids = self.lookup_ext(target, f, v)
        if not ids:
            raise RecErr("INVALID_FIELD", "Foreign key external ID: %s not found for field %s "
                         "in entity %s" % (v, f.name, target.name), [])
        if len(ids) > 1:
            raise RecErr("INVALID_FIELD", "Foreign key external ID: %s matched more than one "
                         "record for field %s in entity %s" % (v, f.name, target.name), [])
        return ids[0]

    def lookup_ext(self, o, f, value):
        """Live record ids whose field f equals value (case-insensitive)."""
        if value is None:
            return []
        if f.name == "Id":
            rid = to18(str(value))
            r = self.records[o.name].get(rid) if rid else None
            return [rid] if r is not None and not r.get("IsDeleted") else []
        sval = str(value) if not isinstance(value, str) else value
        idx = self.uniq.get((o.name, f.name))
        if idx is not None:
            rid = idx.get(sval if f.caseSensitive else sval.lower())
            return [rid] if rid else []
        low = sval.lower()
        out = []
        for rid, r in self.records[o.name].items():
            v = r.get(f.name)
            if v is not None and not r.get("IsDeleted"):
                if (str(v).lower() == low) if not f.caseSensitive else (str(v) == sval):
                    out.append(rid)
        return out

    def check_unique(self, o, changes, rid, pending):
        for f in o.uniques:
            v = changes.get(f.name)
            if v is None:
                continue
            k = v if f.caseSensitive else v.lower()
            other = self.uniq[(o.name, f.name)].get(k)
            if other is not None and other != rid:
                raise RecErr("DUPLICATE_VALUE", "duplicate value found: %s duplicates value on "
                             "record with id: %s" % (f.name, other), [f.name])
            pk = (o.name, f.name, k)
            if pending is not None:
                if pk in pending and pending[pk] != rid:
                    raise RecErr("DUPLICATE_VALUE", "duplicate value found: <unknown> "
                                 "duplicates value on record with id: <unknown>", [f.name])
                pending[pk] = rid

    # ------------------------------------------------------------ mutations
    def create_template(self, o, stamp, user=None):
        user = user or self.user_id
        rec = {"Id": None, "IsDeleted": False}
        for n, dv in o.defaults:
            rec[n] = dv
        if "OwnerId" in o.fields:
            rec["OwnerId"] = user
        rec["CreatedDate"] = stamp
        rec["CreatedById"] = user
        rec["LastModifiedDate"] = stamp
        rec["LastModifiedById"] = user
        rec["SystemModstamp"] = stamp
        return rec

    def do_create(self, o, changes, stamp, user=None, rid=None, template=None):
        rid = rid or self.new_id(o)
        rec = (template or self.create_template(o, stamp, user)).copy()
        rec["Id"] = rid
        rec.update(changes)
        if rec.get("OwnerId", 1) is None:
            rec["OwnerId"] = user or self.user_id
        if o.derive:
            self._derive(o, rec)
        self.set_record(o.name, rid, rec)
        return rid

    def do_update(self, o, rid, changes, stamp, user=None, system=False):
        old = self.records[o.name][rid]
        rec = dict(old)
        rec.update(changes)
        if rec.get("OwnerId", 1) is None:
            rec["OwnerId"] = old.get("OwnerId")
        if not system:
            rec["LastModifiedDate"] = stamp
            rec["LastModifiedById"] = user or self.user_id
        rec["SystemModstamp"] = stamp
        self._derive(o, rec)
        self.set_record(o.name, rid, rec)

    def do_delete(self, o, rid, stamp, user=None):
        old = self.records[o.name][rid]
        rec = dict(old)
        rec["IsDeleted"] = True
        rec["LastModifiedDate"] = stamp
        rec["LastModifiedById"] = user or self.user_id
        rec["SystemModstamp"] = stamp
        self.set_record(o.name, rid, rec)
        self.log_delete(o.name, rid, stamp)
        # cascade: an Account's contacts and opportunities go with it
        if o.name == "Account":
            for child in ("Contact", "Opportunity"):
                co = self.schema.get(child)
                if co is None:
                    continue
                for cid, c in list(self.records[child].items()):
                    if c.get("AccountId") == rid and not c.get("IsDeleted"):
                        self.do_delete(co, cid, stamp, user)

    @staticmethod
    def _derive(o, rec):
        if o.name == "Opportunity":
            stage = rec.get("StageName")
            rec["IsClosed"] = stage in ("Closed Won", "Closed Lost")
            rec["IsWon"] = stage == "Closed Won"
            amt, prob = rec.get("Amount"), rec.get("Probability")
            rec["ExpectedRevenue"] = (amt * prob / 100.0) if amt is not None and prob is not None else None

    def live(self, o, rid):
        """(record, error) for an id of object o."""
        r = self.records[o.name].get(rid)
        if r is None:
            return None, "missing"
        if r.get("IsDeleted"):
            return r, "deleted"
        return r, None

    # ------------------------------------------------------------ rendering
    def render_value(self, f, rec):
        if f.compound:
            if f.type == "address":
                comps = [rec.get(c) for c in f.compound]
                if all(c is None for c in comps):
                    return None
                street, city, state, postal, country = comps
                return {"city": city, "country": country, "geocodeAccuracy": None,
                        "latitude": None, "longitude": None, "postalCode": postal,
                        "state": state, "street": street}
            return compound_name(rec, f.compound)
        v = rec.get(f.name)
        if v is None and f.type == "boolean":
            return False
        return v

    def render_full(self, o, rec, ver, fields=None):
        out = {"attributes": {"type": o.name,
                              "url": "/services/data/v%s/sobjects/%s/%s" % (ver, o.name, rec["Id"])}}
        for f in (fields or o.fields.values()):
            out[f.name] = self.render_value(f, rec)
        return out

    # ------------------------------------------------------------------ HTTP
    def owns(self, path):
        return (path.startswith("/services/data") or path.startswith("/services/oauth2/")
                or path.startswith("/id/") or path == "/cometd" or path.startswith("/cometd/"))

    def fault_response(self, status, req):
        codes = {400: ("BAD_REQUEST", "Bad request"),
                 401: ("INVALID_SESSION_ID", "Session expired or invalid"),
                 403: ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
                 404: ("NOT_FOUND", MSG_NOT_FOUND),
                 409: ("CONFLICT", "Conflict"),
                 429: ("REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."),
                 500: ("UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this "
                       "ErrorId if you contact support: 1234567890-12345 (-1234567890)"),
                 502: ("SERVER_UNAVAILABLE", "Bad gateway"),
                 503: ("SERVER_UNAVAILABLE", "Server temporarily unavailable"),
                 504: ("REQUEST_TIMEOUT", "Gateway timeout")}
        code, msg = codes.get(status, ("UNKNOWN_EXCEPTION", "Injected fault"))
        if req.path.startswith("/services/oauth2/"):
            return json_response(status, {"error": "server_error", "error_description": msg})
        hdrs = [("Sforce-Limit-Info", "api-usage=%d/%d" % (
            self.api_usage, self.emu.config["salesforce_daily_limit"]))]
        return json_response(status, [{"message": msg, "errorCode": code}], hdrs)

    def handle(self, req):
        path = req.path
        if path == "/cometd" or path.startswith("/cometd/"):
            return self.cdc.handle(req)         # long polls: outside the lock
        with self.lock, self.cdc.transaction(req):
            if path.startswith("/services/oauth2/"):
                return self.oauth(req)
            if path.startswith("/id/"):
                return self.identity(req)
            if path in ("/services/data", "/services/data/"):
                if req.method != "GET":
                    return ReqErr(405, "METHOD_NOT_ALLOWED", "HTTP Method '%s' not allowed. "
                                  "Allowed are GET,HEAD" % req.method).response()
                return json_response(200, [
                    {"label": VERSION_LABELS[v], "url": "/services/data/v%d.0" % v,
                     "version": "%d.0" % v} for v in range(MIN_VERSION, MAX_VERSION + 1)])
            m = VERSION_RE.match(path)
            if not m or not (MIN_VERSION <= int(m.group(1)) <= MAX_VERSION) or m.group(2) != "0":
                return ReqErr(404, "NOT_FOUND", MSG_NOT_FOUND).response()
            ver = "%s.%s" % (m.group(1), m.group(2))
            err = self.authenticate(req)
            if err is not None:
                return err
            self.api_usage += 1
            limit = self.emu.config["salesforce_daily_limit"]
            limit_hdr = ("Sforce-Limit-Info", "api-usage=%d/%d" % (self.api_usage, limit))
            if self.api_usage > limit:
                return ReqErr(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."
                              ).response([limit_hdr])
            rest = m.group(3) or "/"
            try:
                resp = self.route(req.method, ver, rest, req.query, req.body, req.headers,
                                  req.url_base)
            except ReqErr as e:
                resp = e.response()
            except RecErr as e:
                resp = e.as_req().response()
            resp.headers.append(limit_hdr)
            return resp

    def authenticate(self, req):
        auth = req.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        issued = self.tokens.get(token) if scheme.lower() in ("bearer", "oauth") else None
        if issued is None or self.now_s() - issued >= self.emu.config["token_ttl_s"]:
            return json_response(401, [{"message": "Session expired or invalid",
                                        "errorCode": "INVALID_SESSION_ID"}],
                                 [("WWW-Authenticate", 'Token')])
        return None

    # --------------------------------------------------------------- OAuth
    def oauth(self, req):
        if req.path.rstrip("/") == "/services/oauth2/revoke":
            params = self._form(req)
            tok = params.get("token", "")
            self.tokens.pop(tok, None)
            self.refresh_tokens.discard(tok)
            return Response(200, b"", [CT])
        if req.path.rstrip("/") != "/services/oauth2/token":
            return json_response(404, {"error": "not_found", "error_description": "Not found"})
        if req.method != "POST":
            return json_response(400, {"error": "invalid_request",
                                       "error_description": "must use HTTP POST"})
        p = self._form(req)
        grant = p.get("grant_type")

        def fail(err, desc):
            return json_response(400, {"error": err, "error_description": desc})
        if grant == "client_credentials":
            cid, secret = p.get("client_id"), p.get("client_secret")
            basic = self._basic(req)
            if basic:
                cid, secret = basic
            if cid != CLIENT_ID:
                return fail("invalid_client_id", "client identifier invalid")
            if secret != CLIENT_SECRET:
                return fail("invalid_client", "invalid client credentials")
            return self._issue(req)
        if grant == "refresh_token":
            cid = p.get("client_id")
            basic = self._basic(req)
            secret = p.get("client_secret")
            if basic:
                cid, secret = basic
            if cid != CLIENT_ID:
                return fail("invalid_client_id", "client identifier invalid")
            if secret is not None and secret != CLIENT_SECRET:
                return fail("invalid_client", "invalid client credentials")
            if p.get("refresh_token") not in self.refresh_tokens:
                return fail("invalid_grant", "expired access/refresh token")
            return self._issue(req)
        if grant == "password":
            cid, secret = p.get("client_id"), p.get("client_secret")
            if cid != CLIENT_ID:
                return fail("invalid_client_id", "client identifier invalid")
            if secret != CLIENT_SECRET:
                return fail("invalid_client", "invalid client credentials")
            if p.get("username") != USERNAME or p.get("password") not in (
                    PASSWORD, PASSWORD + SECURITY_TOKEN):
                return fail("invalid_grant", "authentication failure")
            return self._issue(req)
        if grant == JWT_BEARER:
            return self._jwt(req, p.get("assertion") or "", fail)
        if not grant:
            return fail("unsupported_grant_type", "grant type not supported")
        return fail("unsupported_grant_type", "grant type not supported")

    @staticmethod
    def _form(req):
        try:
            text = req.body.decode("utf-8")
        except UnicodeDecodeError:
            return {}
        return {k: v for k, v in urllib.parse.parse_qsl(text, keep_blank_values=True)}

    @staticmethod
    def _basic(req):
        auth = req.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                raw = base64.b64decode(auth[6:].strip()).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return None
            cid, _, sec = raw.partition(":")
            return urllib.parse.unquote(cid), urllib.parse.unquote(sec)
        return None

    def _jwt(self, req, assertion, fail):
        parts = assertion.split(".")
        if len(parts) != 3:
            return fail("invalid_grant", "invalid assertion")
        try:
            header = json.loads(certs.b64url_decode(parts[0]))
            claims = json.loads(certs.b64url_decode(parts[1]))
            sig = certs.b64url_decode(parts[2])
        except (ValueError, UnicodeDecodeError):
            return fail("invalid_grant", "invalid assertion")
        if not isinstance(header, dict) or header.get("alg") != "RS256" or \
                not isinstance(claims, dict):
            return fail("invalid_grant", "invalid assertion")
        signing_input = (parts[0] + "." + parts[1]).encode("ascii")
        if not any(certs.rs256_verify(signing_input, sig, n, e) for n, e in self.jwt_keys):
            return fail("invalid_grant", "invalid assertion")
        if claims.get("iss") != CLIENT_ID:
            return fail("invalid_client_id", "client identifier invalid")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        ok_auds = set(LOGIN_URLS) | {req.url_base, req.url_base + "/"}
        if not any(a in ok_auds for a in auds):
            return fail("invalid_grant", "audience is invalid")
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp <= self.now_s():
            return fail("invalid_grant", "expired authorization code")
        if claims.get("sub") != USERNAME:
            return fail("invalid_grant", "user hasn't approved this consumer")
        return self._issue(req)

    def _issue(self, req):
        token = "%s!%s" % (ORG_ID[:15], secrets.token_urlsafe(72)[:96])
        now = self.now_s()
        self.tokens[token] = now
        issued_at = str(int(now * 1000))
        ident = "%s/id/%s/%s" % (req.url_base, ORG_ID, self.user_id)
        sig = base64.b64encode(hmac.new(CLIENT_SECRET.encode(), (ident + issued_at).encode(),
                                        hashlib.sha256).digest()).decode()
        return json_response(200, {"access_token": token, "signature": sig, "scope": "api",
                                   "instance_url": req.url_base, "id": ident,
                                   "token_type": "Bearer", "issued_at": issued_at},
                             [("Cache-Control", "no-cache,no-store")])

    def identity(self, req):
        err = self.authenticate(req)
        if err is not None:
            return err
        u = self.records["User"][self.user_id]
        return json_response(200, {
            "id": "%s/id/%s/%s" % (req.url_base, ORG_ID, self.user_id),
            "asserted_user": True, "user_id": self.user_id, "organization_id": ORG_ID,
            "username": u["Username"], "nick_name": "sync", "display_name":
            compound_name(u, ["FirstName", "LastName"]), "email": u["Email"],
            "active": True, "user_type": "STANDARD", "language": "en_US",
            "locale": "en_US", "utcOffset": 0,
            "urls": {"rest": req.url_base + "/services/data/v{version}/",
                     "sobjects": req.url_base + "/services/data/v{version}/sobjects/",
                     "query": req.url_base + "/services/data/v{version}/query/"}})

    # --------------------------------------------------------------- routes
    def route(self, method, ver, rest, query, body, headers, url_base):
        segs = [urllib.parse.unquote(s) for s in rest.strip("/").split("/")] if rest.strip("/") else []
        n = len(segs)
        q1 = lambda k, d=None: (query.get(k) or [d])[0]  # noqa: E731
        if n == 0:
            self._methods(method, "GET")
            base = "/services/data/v%s/" % ver
            return json_response(200, {k: base + k for k in (
                "limits", "sobjects", "query", "queryAll", "composite", "recent", "search")})
        head = segs[0]
        if head == "limits" and n == 1:
            self._methods(method, "GET")
            lim = self.emu.config["salesforce_daily_limit"]
            return json_response(200, {
                "DailyApiRequests": {"Max": lim, "Remaining": max(0, lim - self.api_usage)},
                "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
                "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000}})
        if head == "sobjects":
            return self.route_sobjects(method, ver, segs, query, body, headers, url_base, q1)
        if head in ("query", "queryAll"):
            self._methods(method, "GET")
            if n == 1:
                return self.query(ver, q1("q"), head == "queryAll", headers)
            if n == 2:
                return self.query_more(ver, segs[1], headers)
        if head == "composite":
            if n == 1:
                self._methods(method, "POST")
                return self.composite(ver, self._json(body), url_base, headers)
            if n == 2 and segs[1] == "graph":
                self._methods(method, "POST")
                return self.graph(ver, self._json(body), url_base, headers)
            if n >= 2 and segs[1] == "sobjects":
                return self.route_collections(method, ver, segs[2:], query, body, q1)
        raise ReqErr(404, "NOT_FOUND", MSG_NOT_FOUND)

    @staticmethod
    def _methods(method, *allowed):
        if method not in allowed:
            raise ReqErr(405, "METHOD_NOT_ALLOWED", "HTTP Method '%s' not allowed. Allowed are %s"
                         % (method, ",".join(allowed)))

    @staticmethod
    def _json(body):
        if not body:
            raise ReqErr(400, "JSON_PARSER_ERROR", "The request body is either invalid or "
                         "incomplete.")
        try:
            return json.loads(body)
        except UnicodeDecodeError:
            raise ReqErr(400, "JSON_PARSER_ERROR", "Invalid UTF-8 in request body")
        except json.JSONDecodeError as e:
            ch = body[e.pos:e.pos + 1].decode("latin-1") if e.pos < len(body) else ""
            if ch:
                msg = ("Unexpected character ('%s' (code %d)): expected a valid value (number, "
                       "String, array, object, 'true', 'false' or 'null') at [line:%d, column:%d]"
                       % (ch, ord(ch), e.lineno, e.colno))
            else:
                msg = ("Unexpected end-of-input: expected close marker for OBJECT at "
                       "[line:%d, column:%d]" % (e.lineno, e.colno))
            raise ReqErr(400, "JSON_PARSER_ERROR", msg)

    def _obj_or_404(self, name):
        o = self.obj(name)
        if o is None:
            raise ReqErr(404, "NOT_FOUND", MSG_NOT_FOUND)
        return o

    def route_sobjects(self, method, ver, segs, query, body, headers, url_base, q1):
        n = len(segs)
        if n == 1:
            self._methods(method, "GET")
            return json_response(200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [
                o.global_entry(ver) for o in self.schema.values()]})
        o = self._obj_or_404(segs[1])
        if n == 2:
            if method == "GET":
                recent = [self.render_full(o, r, ver, [o.fields["Id"]] + (
                    [o.fields["Name"]] if "Name" in o.fields else []))
                    for r in list(self.records[o.name].values())[-10:] if not r.get("IsDeleted")]
                return json_response(200, {"objectDescribe": o.global_entry(ver),
                                           "recentItems": recent})
            self._methods(method, "GET", "POST")
            return self.create_one(o, ver, self._json(body))
        if n == 3 and segs[2] == "describe":
            self._methods(method, "GET")
            return json_response(200, o.describe(ver, url_base))
        if n == 3 and segs[2] in ("updated", "deleted"):
            self._methods(method, "GET")
            return self.replication(o, segs[2], q1("start"), q1("end"))
        if n == 3:
            if o.field(segs[2]) is not None and method == "POST" and segs[2] == "Id":
                return self.create_one(o, ver, self._json(body))
            rid = to18(segs[2])
            if rid is None or rid[:3] != o.prefix:
                if method == "GET":
                    raise ReqErr(404, "NOT_FOUND", "Provided external ID field does not exist "
                                 "or is not accessible: %s" % segs[2])
                if method in ("PATCH", "DELETE"):
                    raise ReqErr(400, "MALFORMED_ID", "malformed id %s" % segs[2], [])
                self._methods(method, "GET", "PATCH", "DELETE")
            if method == "GET":
                return self.get_one(o, ver, rid, q1("fields"))
            if method == "PATCH":
                return self.update_one(o, rid, self._json(body))
            if method == "DELETE":
                return self.delete_one(o, rid)
            self._methods(method, "GET", "PATCH", "DELETE")
        if n == 4:
            f = o.field(segs[2])
            if f is None or not (f.externalId or f.idLookup):
                raise ReqErr(404, "NOT_FOUND", "Provided external ID field does not exist or is "
                             "not accessible: %s" % segs[2])
            value = segs[3]
            if method == "PATCH":
                return self.upsert_one(o, ver, f, value, self._json(body),
                                       q1("updateOnly", "false").lower() == "true")
            ids = self.lookup_ext(o, f, value)
            if method == "GET":
                if not ids:
                    raise ReqErr(404, "NOT_FOUND", MSG_NOT_FOUND)
                if len(ids) > 1:
                    return self._multiple(o, ver, ids)
                return self.get_one(o, ver, ids[0], q1("fields"))
            if method == "DELETE":
                if not ids:
                    raise ReqErr(404, "NOT_FOUND", MSG_NOT_FOUND)
                if len(ids) > 1:
                    return self._multiple(o, ver, ids)
                return self.delete_one(o, ids[0])
            if method == "POST" and f.name == "Id":
                return self.create_one(o, ver, self._json(body))
            self._methods(method, "GET", "PATCH", "DELETE")
        raise ReqErr(404, "NOT_FOUND", MSG_NOT_FOUND)

    def _multiple(self, o, ver, ids):
        return json_response(300, ["/services/data/v%s/sobjects/%s/%s" % (ver, o.name, i)
                                   for i in ids])

    # ---------------------------------------------------------- single rec
    def _body_obj(self, body):
        if not isinstance(body, dict):
            raise ReqErr(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of %s from "
                         "START_ARRAY value [ or request may be missing a required field" %
                         "sObject")
        return body

    def create_one(self, o, ver, body):
        body = self._body_obj(body)
        changes = self.prepare(o, body, True)
        self.check_unique(o, changes, None, None)
        rid = self.do_create(o, changes, self.new_stamp())
        return json_response(201, {"id": rid, "success": True, "errors": []},
                             [("Location", "/services/data/v%s/sobjects/%s/%s" % (ver, o.name, rid))])

    def get_one(self, o, ver, rid, fields):
        r, state = self.live(o, rid)
        if state is not None:
            raise ReqErr(404, "NOT_FOUND", MSG_NOT_FOUND)
        flist = None
        if fields:
            flist = []
            for name in fields.split(","):
                f = o.field(name.strip())
                if f is None:
                    raise ReqErr(400, "INVALID_FIELD", "No such column '%s' on sobject of type %s"
                                 % (name.strip(), o.name))
                flist.append(f)
        return json_response(200, self.render_full(o, r, ver, flist))

    def update_one(self, o, rid, body):
        body = self._body_obj(body)
        r, state = self.live(o, rid)
        if state == "missing":
            raise ReqErr(404, "NOT_FOUND", MSG_NOT_FOUND)
        if state == "deleted":
            raise ReqErr(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        if o.name == "Lead" and r.get("IsConverted"):
            raise ReqErr(400, "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
        changes = self.prepare(o, body, False)
        self.check_unique(o, changes, rid, None)
        self.do_update(o, rid, changes, self.new_stamp())
        return Response(204, b"")

    def delete_one(self, o, rid):
        r, state = self.live(o, rid)
        if state == "missing":
            raise ReqErr(404, "NOT_FOUND", MSG_NOT_FOUND)
        if state == "deleted":
            raise ReqErr(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        self.do_delete(o, rid, self.new_stamp())
        return Response(204, b"")

    def upsert_one(self, o, ver, f, value, body, update_only):
        body = self._body_obj(body)
        body = dict(body)
        for k in list(body):
            if k.lower() == f.lname:
                if str(body[k]) != value:
                    raise ReqErr(400, "INVALID_FIELD", "Upsert with the external ID field %s in "
                                 "the request body that differs from the value in the URL is "
                                 "not allowed" % f.name)
                del body[k]
        ids = self.lookup_ext(o, f, value)
        if len(ids) > 1:
            return self._multiple(o, ver, ids)
        loc = lambda rid: ("Location", "/services/data/v%s/sobjects/%s/%s" % (ver, o.name, rid))  # noqa
        if ids:
            rid = ids[0]
            changes = self.prepare(o, body, False)
            self.check_unique(o, changes, rid, None)
            self.do_update(o, rid, changes, self.new_stamp())
            return json_response(200, {"id": rid, "success": True, "errors": [],
                                       "created": False}, [loc(rid)])
        if update_only or f.name == "Id":
            raise ReqErr(404, "NOT_FOUND", MSG_NOT_FOUND)
        changes = self.prepare(o, body, True)
        changes[f.name] = f.check(value)
        self.check_unique(o, changes, None, None)
        rid = self.do_create(o, changes, self.new_stamp())
        return json_response(201, {"id": rid, "success": True, "errors": [], "created": True},
                             [loc(rid)])

    # ---------------------------------------------------------- collections
    def route_collections(self, method, ver, segs, query, body, q1):
        if not segs:
            if method == "POST":
                return self.coll_write(ver, self._json(body), "create")
            if method == "PATCH":
                return self.coll_write(ver, self._json(body), "update")
            if method == "DELETE":
                ids = [i for i in (q1("ids") or "").split(",") if i]
                return self.coll_delete(ids, (q1("allOrNone") or "false").lower() == "true")
            self._methods(method, "POST", "PATCH", "DELETE")
        o = self.obj(segs[0])
        if o is None:
            raise ReqErr(400, "INVALID_TYPE", "sObject type '%s' is not supported." % segs[0])
        if len(segs) == 1:
            if method == "GET":
                ids = [i for i in (q1("ids") or "").split(",") if i]
                fields = [x for x in (q1("fields") or "").split(",") if x]
                return self.coll_retrieve(o, ver, ids, fields)
            if method == "POST":
                b = self._json(body)
                if not isinstance(b, dict):
                    raise ReqErr(400, "JSON_PARSER_ERROR", "Cannot deserialize request body")
                return self.coll_retrieve(o, ver, b.get("ids") or [], b.get("fields") or [])
            self._methods(method, "GET", "POST")
        if len(segs) == 2:
            self._methods(method, "PATCH")
            f = o.field(segs[1])
            if f is None or not (f.externalId or f.idLookup):
                raise ReqErr(404, "NOT_FOUND", "Provided external ID field does not exist or is "
                             "not accessible: %s" % segs[1])
            return self.coll_write(ver, self._json(body), "upsert", o, f)
        raise ReqErr(404, "NOT_FOUND", MSG_NOT_FOUND)

    def coll_retrieve(self, o, ver, ids, fields):
        if not fields:
            raise ReqErr(400, "MISSING_ARGUMENT", "fields parameter is required")
        if len(ids) > 2000:
            raise ReqErr(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than "
                         "2000 records into this call")
        flist = []
        for name in fields:
            f = o.field(name.strip())
            if f is None:
                raise ReqErr(400, "INVALID_FIELD", "No such column '%s' on sobject of type %s"
                             % (name, o.name))
            flist.append(f)
        out = []
        for i in ids:
            rid = to18(i)
            r = self.records[o.name].get(rid) if rid else None
            out.append(self.render_full(o, r, ver, flist)
                       if r is not None and not r.get("IsDeleted") else None)
        return json_response(200, out)

    def coll_write(self, ver, body, op, uo=None, uf=None):
        if not isinstance(body, dict):
            raise ReqErr(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of "
                         "SObjectCollection from START_ARRAY value [ or request may be "
                         "missing a required field")
        records = body.get("records")
        if not isinstance(records, list):
            raise ReqErr(400, "INVALID_FIELD", "Records are required")
        if len(records) > COLLECTION_MAX:
            raise ReqErr(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more "
                         "than 200 records into this call")
        all_or_none = body.get("allOrNone") is True
        schema_obj = self.obj
        type_cache = {}
        dup_keys = self._upsert_duplicates(records, uf) if op == "upsert" else ()
        # phase 1: resolve types and validate, request-level errors first
        plans = []
        pending = {}
        errors = 0
        for rec in records:
            if not isinstance(rec, dict):
                raise ReqErr(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject")
            attrs = rec.get("attributes")
            if not isinstance(attrs, dict) or not attrs.get("type"):
                if op == "upsert" or not isinstance(attrs, dict):
                    plans.append(RecErr("JSON_PARSER_ERROR", "Nested object for polymorphic "
                                        "foreign key must have an attributes field before any "
                                        "other fields.", []))
                    errors += 1
                    continue
            if op == "upsert":
                o = uo
            else:
                o = type_cache.get(attrs["type"])
                if o is None:
                    o = type_cache[attrs["type"]] = schema_obj(attrs["type"])
            if o is None:
                raise ReqErr(400, "INVALID_TYPE", "sObject type '%s' is not supported. If you are "
                             "attempting to use a custom object, be sure to append the '__c' "
                             "after the entity name. Please reference your WSDL or the describe "
                             "call for the appropriate names." % attrs.get("type"))
            try:
                if op == "create":
                    changes = self.prepare(o, rec, True)
                    self.check_unique(o, changes, ("new", len(plans)), pending)
                    plans.append(("create", o, None, changes))
                elif op == "update":
                    rid_in = rec.get("id") or rec.get("Id")
                    if not rid_in:
                        raise RecErr("MISSING_ARGUMENT", "Id not specified in an update call", [])
                    rid = to18(rid_in) if isinstance(rid_in, str) else None
                    if rid is None:
                        raise RecErr("MALFORMED_ID", "malformed id %s" % rid_in, [])
                    ro = self.prefix_obj.get(rid[:3])
                    if ro is None or ro is not o:
                        raise RecErr("MALFORMED_ID", "malformed id %s" % rid_in, [])
                    _, state = self.live(o, rid)
                    if state == "missing":
                        raise RecErr("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
                    if state == "deleted":
                        raise RecErr("ENTITY_IS_DELETED", "entity is deleted", [])
                    if o.name == "Lead" and self.records["Lead"][rid].get("IsConverted"):
                        raise RecErr("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
                    body_rec = {k: v for k, v in rec.items() if k not in ("id", "Id")}
                    changes = self.prepare(o, body_rec, False)
                    self.check_unique(o, changes, rid, pending)
                    plans.append(("update", o, rid, changes))
                else:
                    key = None
                    for k in rec:
                        if k.lower() == uf.lname:
                            key = k
                    value = rec.get(key) if key else None
                    if value is None or value == "":
                        raise RecErr("MISSING_ARGUMENT", "%s not specified" % uf.name, [])
                    if self._ext_key(uf, value) in dup_keys:
                        raise RecErr("DUPLICATE_VALUE", "Duplicate %s specified: %s" % (
                            "id" if uf.name == "Id" else "external id", value), [uf.name])
                    ids = self.lookup_ext(o, uf, value)
                    if len(ids) > 1:
                        raise RecErr("DUPLICATE_EXTERNAL_ID", "%s: more than one record found "
                                     "for external id field: %s" % (uf.name, ids), [uf.name])
                    body_rec = {k: v for k, v in rec.items() if k != key and k not in ("id", "Id")}
                    if ids:
                        changes = self.prepare(o, body_rec, False)
                        self.check_unique(o, changes, ids[0], pending)
                        plans.append(("update", o, ids[0], changes))
                    else:
                        if uf.name == "Id":
                            raise RecErr("NOT_FOUND", MSG_NOT_FOUND, [])
                        changes = self.prepare(o, body_rec, True)
                        changes[uf.name] = uf.check(value)
                        self.check_unique(o, changes, ("new", len(plans)), pending)
                        plans.append(("create", o, None, changes))
            except RecErr as e:
                plans.append(e)
                errors += 1
        # phase 2: apply
        results = []
        if all_or_none and errors:
            for p in plans:
                if isinstance(p, RecErr):
                    r = {"success": False, "errors": [p.item()]}
                else:
                    r = {"success": False, "errors": [{
                        "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                        "message": MSG_ROLLED_BACK, "fields": []}]}
                if op == "upsert":
                    r["created"] = False
                results.append(r)
            return json_response(200, results)
        stamp = self.new_stamp()
        templates = {}
        parts = []
        dumps = json.dumps
        for p in plans:
            if isinstance(p, RecErr):
                r = {"success": False, "errors": [p.item()]}
                if op == "upsert":
                    r["created"] = False
                parts.append(dumps(r, separators=(",", ":")))
                continue
            kind, o, rid, changes = p
            if kind == "create":
                t = templates.get(o.name)
                if t is None:
                    t = templates[o.name] = self.create_template(o, stamp)
                rid = self.do_create(o, changes, stamp, template=t)
            else:
                self.do_update(o, rid, changes, stamp)
            if op == "upsert":
                parts.append('{"id":"%s","success":true,"errors":[],"created":%s}'
                             % (rid, "true" if kind == "create" else "false"))
            else:
                parts.append('{"id":"%s","success":true,"errors":[]}' % rid)
        return Response(200, "[" + ",".join(parts) + "]", [CT])

    @staticmethod
    def _ext_key(f, value):
        """The form in which two values of external-ID field f are the same
        key: 18-character Ids; text case-insensitively unless the field is
        caseSensitive."""
        if f.name == "Id":
            return to18(value) if isinstance(value, str) else None
        s = value if isinstance(value, str) else str(value)
        return s if f.caseSensitive else s.lower()

    def _upsert_duplicates(self, records, uf):
        """Keys that more than one record of an upsert call carries: Salesforce
        fails every such record (DUPLICATE_VALUE) before it matches any."""
        seen = set()
        dups = set()
        for rec in records:
            if not isinstance(rec, dict):
                continue
            v = None
            for k in rec:                   # the last spelling wins, as below
                if k.lower() == uf.lname:
                    v = rec[k]
            if v is not None and v != "":
                key = self._ext_key(uf, v)
                if key is not None:
                    (dups if key in seen else seen).add(key)
        return dups

    def coll_delete(self, ids, all_or_none):
        if not ids:
            raise ReqErr(400, "MISSING_ARGUMENT", "ids parameter is required")
        if len(ids) > COLLECTION_MAX:
            raise ReqErr(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more "
                         "than 200 records into this call")
        plans = []
        errors = 0
        seen = set()
        for i in ids:
            rid = to18(i)
            o = self.prefix_obj.get(rid[:3]) if rid else None
            if o is None or o.name == "User":
                plans.append((i, RecErr("MALFORMED_ID", "malformed id %s" % i, [])))
                errors += 1
                continue
            _, state = self.live(o, rid)
            if state == "missing":
                plans.append((rid, RecErr("INVALID_CROSS_REFERENCE_KEY",
                                          "invalid cross reference id", [])))
                errors += 1
            elif state == "deleted" or rid in seen:
                plans.append((rid, RecErr("ENTITY_IS_DELETED", "entity is deleted", [])))
                errors += 1
            else:
                seen.add(rid)
                plans.append((rid, o))
        results = []
        if all_or_none and errors:
            for rid, p in plans:
                err = p.item() if isinstance(p, RecErr) else {
                    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": MSG_ROLLED_BACK,
                    "fields": []}
                results.append({"id": rid, "success": False, "errors": [err]})
            return json_response(200, results)
        stamp = self.new_stamp()
        for rid, p in plans:
            if isinstance(p, RecErr):
                results.append({"id": rid, "success": False, "errors": [p.item()]})
            else:
                if not self.records[p.name][rid].get("IsDeleted"):   # cascade may have hit it
                    self.do_delete(p, rid, stamp)
                results.append({"id": rid, "success": True, "errors": []})
        return json_response(200, results)

    # ---------------------------------------------------------------- query
    def query(self, ver, q, all_rows, headers):
        if not q:
            raise ReqErr(400, "MALFORMED_QUERY", "A query string must be provided via the 'q' "
                         "parameter")
        try:
            parsed = Parser(q, self.schema, self.find, self.now_dt, version=float(ver)).parse()
        except SoqlError as e:
            raise ReqErr(400, e.code, e.message)
        o = parsed.obj
        recs = self.records[o.name].values()
        if not all_rows:
            recs = [r for r in recs if not r.get("IsDeleted")]
        if parsed.where is not None:
            recs = [r for r in recs if parsed.where(r)]
        else:
            recs = list(recs)
        if parsed.aggs or parsed.group is not None:
            rows = [dict({"attributes": {"type": "AggregateResult"}}, **row)
                    for row in aggregate_rows(parsed, recs)]
            return json_response(200, {"totalSize": len(rows), "done": True, "records": rows})
        if parsed.order:
            recs = sort_records(recs, parsed.order)
        if parsed.offset:
            recs = recs[parsed.offset:]
        if parsed.limit is not None:
            recs = recs[:parsed.limit]
        if parsed.count:
            return json_response(200, {"totalSize": len(recs), "done": True, "records": []})
        tree = self._select_tree(o, parsed.select)
        self._child_sets(tree, recs, all_rows)
        batch = self._batch_size(headers)
        cursor = {"recs": recs, "tree": tree, "obj": o, "batch": batch, "last": self.now_s(),
                  "ver": ver}
        return self._page(cursor, 0, ver)

    @staticmethod
    def _batch_size(headers):
        opt = headers.get("sforce-query-options", "") if headers else ""
        m = re.search(r"batchSize\s*=\s*(\d+)", opt)
        if not m:
            return 2000
        return max(200, min(2000, int(m.group(1))))

    def _page(self, cursor, offset, ver):
        recs = cursor["recs"]
        batch = cursor["batch"]
        page = recs[offset:offset + batch]
        out = {"totalSize": len(recs), "done": offset + batch >= len(recs)}
        if not out["done"]:
            loc = cursor.get("id")
            if loc is None:
                loc = "0r8" + POD + secrets.token_hex(7)[:13]
                loc = loc[:15] + "AAA"
                cursor["id"] = loc
                self._expire_cursors()
                self.cursors[loc] = cursor
            out["nextRecordsUrl"] = "/services/data/v%s/query/%s-%d" % (ver, loc, offset + batch)
        elif cursor.get("id"):
            self.cursors.pop(cursor["id"], None)
        out["records"] = [self._render_tree(cursor["obj"], r, cursor["tree"], ver) for r in page]
        return json_response(200, out)

    def _expire_cursors(self):
        ttl = self.emu.config["salesforce_query_locator_ttl_s"]
        now = self.now_s()
        for k in [k for k, c in self.cursors.items() if now - c["last"] > ttl]:
            del self.cursors[k]

    def query_more(self, ver, locator, headers):
        loc, _, off = locator.rpartition("-")
        if not loc:
            loc, off = locator, "0"
        self._expire_cursors()
        cur = self.cursors.get(loc)
        if cur is None or not off.isdigit():
            raise ReqErr(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        cur["last"] = self.now_s()
        return self._page(cur, int(off), ver)

    def _select_tree(self, o, chains):
        """[("f", Field) | ("r", refField, targetObj, subtree) |
        ("c", SubQuery, subtree, {parent id: [child records]})] in select order."""
        tree = []
        for chain in chains:
            if isinstance(chain, SubQuery):
                tree.append(("c", chain, self._select_tree(chain.obj, chain.select), {}))
                continue
            node = tree
            obj = o
            for f in chain[:-1]:
                target = [self.schema[t] for t in f.referenceTo if t in self.schema][0]
                for item in node:
                    if item[0] == "r" and item[1] is f:
                        node = item[3]
                        break
                else:
                    sub = []
                    node.append(("r", f, target, sub))
                    node = sub
                obj = target
            node.append(("f", chain[-1]))
        return tree

    def _child_sets(self, tree, parents, all_rows):
        """Fill each child subquery's {parent id: [child records]} for these
        parents (filtered, sorted, limited; soft-deleted children only for
        queryAll), then the subqueries nested in it.  Done when the query
        runs, so later pages show the children as they were then."""
        for item in tree:
            if item[0] != "c":
                continue
            sq, sub, sets = item[1], item[2], item[3]
            ids = {p["Id"] for p in parents}
            link = sq.link
            where = sq.where
            groups = {}
            for r in self.records[sq.obj.name].values():
                pid = r.get(link)
                if pid in ids and (all_rows or not r.get("IsDeleted")) and \
                        (where is None or where(r)):
                    groups.setdefault(pid, []).append(r)
            kids_all = []
            for pid, kids in groups.items():
                if sq.order:
                    kids = sort_records(kids, sq.order)
                kids = kids[sq.offset:]
                if sq.limit is not None:
                    kids = kids[:sq.limit]
                if kids:
                    sets[pid] = kids
                    kids_all.extend(kids)
            self._child_sets(sub, kids_all, all_rows)

    def _render_tree(self, o, rec, tree, ver):
        out = {"attributes": {"type": o.name, "url": "/services/data/v%s/sobjects/%s/%s"
                              % (ver, o.name, rec["Id"])}}
        rv = self.render_value
        for item in tree:
            if item[0] == "f":
                out[item[1].name] = rv(item[1], rec)
            elif item[0] == "c":
                sq, sub, sets = item[1], item[2], item[3]
                kids = sets.get(rec["Id"])
                out[sq.rel] = {"totalSize": len(kids), "done": True, "records": [
                    self._render_tree(sq.obj, k, sub, ver) for k in kids]} if kids else None
            else:
                _, f, target, sub = item
                pid = rec.get(f.name)
                parent = self.find(pid) if pid else None
                out[f.relationshipName] = (self._render_tree(target, parent, sub, ver)
                                           if parent is not None else None)
        return out

    # ---------------------------------------------------------- replication
    def replication(self, o, kind, start, end):
        if not o.replicateable:
            raise ReqErr(400, "INVALID_TYPE", "sObject type '%s' is not replicateable" % o.name)
        if not start or not end:
            raise ReqErr(400, "MISSING_ARGUMENT", "start and end are required")
        try:
            s = parse_iso(start.replace(" ", "+"))
            e = parse_iso(end.replace(" ", "+"))
        except ValueError:
            raise ReqErr(400, "INVALID_REPLICATION_DATE", "start and end must be valid "
                         "dateTime values")
        now = self.now_dt()
        s = s.replace(second=0, microsecond=0)
        e = e.replace(second=0, microsecond=0)
        now_min = now.replace(second=0, microsecond=0)
        if e > now_min:
            e = now_min
        if s >= e:
            raise ReqErr(400, "INVALID_REPLICATION_DATE", "startDate must chronologically "
                         "precede endDate by more than one minute")
        days = GET_UPDATED_DAYS if kind == "updated" else GET_DELETED_DAYS
        if s < now - timedelta(days=days):
            raise ReqErr(400, "INVALID_REPLICATION_DATE", "startDate can not be more than %d "
                         "days ago" % days)
        lo, hi = sf_dt(s), sf_dt(e)
        if kind == "updated":
            ids = [rid for rid, r in self.records[o.name].items()
                   if not r.get("IsDeleted") and lo <= r["SystemModstamp"] < hi]
            if len(ids) > 600000:
                raise ReqErr(400, "EXCEEDED_ID_LIMIT", "more than 600000 ids")
            return json_response(200, {"ids": ids, "latestDateCovered": hi})
        earliest = (now - timedelta(days=GET_DELETED_DAYS)).replace(second=0, microsecond=0)
        purged = self.emu.config.get("salesforce_delete_log_purged_before")
        purge_stamp = None
        if purged:
            try:
                pdt = parse_iso(purged).replace(second=0, microsecond=0)
                purge_stamp = sf_dt(pdt)
                if pdt > earliest:
                    earliest = pdt
            except ValueError:
                pass
        deleted = [{"id": rid, "deletedDate": st} for rid, st in self.delete_log[o.name]
                   if lo <= st < hi and (purge_stamp is None or st >= purge_stamp)]
        if len(deleted) > 600000:
            raise ReqErr(400, "EXCEEDED_ID_LIMIT", "more than 600000 ids")
        return json_response(200, {"deletedRecords": deleted,
                                   "earliestDateAvailable": sf_dt(earliest),
                                   "latestDateCovered": hi})

    # ------------------------------------------------------------ composite
    def composite(self, ver, body, url_base, headers):
        if not isinstance(body, dict) or not isinstance(body.get("compositeRequest"), list):
            raise ReqErr(400, "JSON_PARSER_ERROR", "compositeRequest is required")
        subs = body["compositeRequest"]
        if len(subs) > COMPOSITE_MAX:
            raise ReqErr(400, "INVALID_BATCH_REQUEST", "Composite request cannot have more than "
                         "25 subrequests")
        nq = sum(1 for s in subs if isinstance(s, dict) and re.search(
            r"/query(All)?([/?]|$)", str(s.get("url", ""))))
        if nq > 5:
            raise ReqErr(400, "INVALID_BATCH_REQUEST", "Composite request cannot have more than "
                         "5 query subrequests")
        out, _ = self._run_composite(ver, subs, body.get("allOrNone") is True, url_base, headers)
        return json_response(200, {"compositeResponse": out})

    def graph(self, ver, body, url_base, headers):
        if not isinstance(body, dict) or not isinstance(body.get("graphs"), list):
            raise ReqErr(400, "JSON_PARSER_ERROR", "graphs is required")
        graphs = []
        for g in body["graphs"]:
            out, ok = self._run_composite(ver, g.get("compositeRequest") or [], True, url_base,
                                          headers)
            graphs.append({"graphId": g.get("graphId"), "graphResponse": {
                "compositeResponse": out}, "isSuccessful": ok})
        return json_response(200, {"graphs": graphs})

    def _run_composite(self, ver, subs, all_or_none, url_base, headers):
        results = {}
        out = []
        failed = False
        self.begin()
        ref_re = re.compile(r"@\{([A-Za-z0-9_]+)\.([^}]+)\}")

        def resolve(m):
            ref, path = m.group(1), m.group(2)
            if ref not in results:
                raise KeyError("%s.%s" % (ref, path))
            cur = results[ref]
            for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
                if part.startswith("["):
                    cur = cur[int(part[1:-1])]
                else:
                    cur = cur[part]
            return str(cur)

        def subst(v):
            if isinstance(v, str):
                return ref_re.sub(resolve, v)
            if isinstance(v, dict):
                return {k: subst(x) for k, x in v.items()}
            if isinstance(v, list):
                return [subst(x) for x in v]
            return v
        try:
            for s in subs:
                ref_id = s.get("referenceId")
                if failed and all_or_none:
                    out.append({"body": [{"errorCode": "PROCESSING_HALTED", "message": MSG_HALTED}],
                                "httpHeaders": {}, "httpStatusCode": 400, "referenceId": ref_id})
                    continue
                try:
                    url = subst(s.get("url", ""))
                    sbody = subst(s.get("body")) if s.get("body") is not None else None
                except (KeyError, IndexError, TypeError) as e:
                    out.append({"body": [{"errorCode": "PROCESSING_HALTED", "message":
                                          "Invalid reference specified. No value for %s found in "
                                          "%s. Provided referenceId ('%s') or property doesn't exist."
                                          % (e.args[0] if e.args else "?",
                                             str(e.args[0]).split(".")[0] if e.args else "?",
                                             str(e.args[0]).split(".")[0] if e.args else "?")}],
                                "httpHeaders": {}, "httpStatusCode": 400, "referenceId": ref_id})
                    failed = True
                    continue
                u = urllib.parse.urlsplit(url)
                m = VERSION_RE.match(u.path)
                method = str(s.get("method", "GET")).upper()
                if not m or not (MIN_VERSION <= int(m.group(1)) <= MAX_VERSION) or \
                        m.group(2) != "0":
                    resp = ReqErr(404, "NOT_FOUND", MSG_NOT_FOUND).response()
                else:
                    raw = json.dumps(sbody).encode() if sbody is not None else b""
                    try:
                        resp = self.route(method, "%s.%s" % (m.group(1), m.group(2)),
                                          m.group(3) or "/",
                                          urllib.parse.parse_qs(u.query, keep_blank_values=True),
                                          raw, headers, url_base)
                    except ReqErr as e:
                        resp = e.response()
                    except RecErr as e:
                        resp = e.as_req().response()
                rbody = json.loads(resp.body) if resp.body else None
                hh = {k: v for k, v in resp.headers if k == "Location"}
                out.append({"body": rbody, "httpHeaders": hh, "httpStatusCode": resp.status,
                            "referenceId": ref_id})
                if ref_id and rbody is not None:
                    results[ref_id] = rbody
                if resp.status >= 400:
                    failed = True
            if failed and all_or_none:
                self.rollback()
                for item in out:
                    if item["httpStatusCode"] < 400:
                        item.update({"body": [{"errorCode": "PROCESSING_HALTED",
                                               "message": MSG_HALTED}],
                                     "httpHeaders": {}, "httpStatusCode": 400})
            else:
                self.commit()
        except BaseException:
            self.rollback()
            raise
        return out, not failed

    # ------------------------------------------------------- control hooks
    def _ctl_obj(self, name):
        o = self.obj(name)
        if o is None or o.name == "User":
            raise KeyError(name)
        return o

    def control_create(self, obj, records):
        with self.lock, self.cdc.transaction():
            o = self._ctl_obj(obj)
            stamp = self.new_stamp()
            ids = []
            pending = {}
            plans = []
            for rec in records:
                if not isinstance(rec, dict):
                    raise ValueError("records must be JSON objects")
                body = dict(rec)
                rid = None
                if "Id" in body:
                    rid = to18(str(body.pop("Id")))
                    if rid is None or rid[:3] != o.prefix or rid in self.records[o.name]:
                        raise ValueError("bad or duplicate Id %r" % rec.get("Id"))
                try:
                    changes = self.prepare(o, body, True, control=True)
                    self.check_unique(o, changes, ("new", len(plans)), pending)
                except (RecErr, ReqErr) as e:
                    raise ValueError("%s: %s (record %d)" % (e.code, e.message, len(plans)))
                plans.append((rid, changes))
            for rid, changes in plans:
                audit = {k: changes.pop(k) for k in ("CreatedDate", "LastModifiedDate",
                                                     "SystemModstamp", "CreatedById",
                                                     "LastModifiedById") if k in changes}
                rid = self.do_create(o, changes, stamp, self.remote_user_id, rid)
                if audit:
                    r = dict(self.records[o.name][rid])
                    if "CreatedDate" in audit and "LastModifiedDate" not in audit:
                        audit["LastModifiedDate"] = audit["CreatedDate"]
                    if "LastModifiedDate" in audit and "SystemModstamp" not in audit:
                        audit["SystemModstamp"] = audit["LastModifiedDate"]
                    r.update({k: v for k, v in audit.items() if v is not None})
                    self.records[o.name][rid] = r
                ids.append(rid)
            return ids

    def control_list(self, obj):
        with self.lock:
            o = self.obj(obj)
            if o is None:
                raise KeyError(obj)
            fields = [f for f in o.fields.values() if f.type != "address"]
            return [{f.name: self.render_value(f, r) for f in fields}
                    for r in self.records[o.name].values() if not r.get("IsDeleted")]

    def control_patch(self, obj, rid, fields):
        with self.lock, self.cdc.transaction():
            o = self._ctl_obj(obj)
            rid18 = to18(rid)
            r = self.records[o.name].get(rid18) if rid18 else None
            if r is None or r.get("IsDeleted"):
                raise KeyError(rid)
            fields = dict(fields)
            system = bool(fields.pop("_system_update", False))
            try:
                changes = self.prepare(o, fields, False, control=True)
                self.check_unique(o, changes, rid18, None)
            except (RecErr, ReqErr) as e:
                raise ValueError("%s: %s" % (e.code, e.message))
            self.do_update(o, rid18, changes, self.new_stamp(), self.remote_user_id, system)
            rec = self.records[o.name][rid18]
            return {f.name: self.render_value(f, rec) for f in o.fields.values()
                    if f.type != "address"}

    def control_delete(self, obj, rid):
        with self.lock, self.cdc.transaction():
            o = self._ctl_obj(obj)
            rid18 = to18(rid)
            r = self.records[o.name].get(rid18) if rid18 else None
            if r is None or r.get("IsDeleted"):
                raise KeyError(rid)
            self.do_delete(o, rid18, self.new_stamp(), self.remote_user_id)

    MERGEABLE = ("Account", "Contact", "Lead")   # merge() objects the emulator has (Case too, live)

    def control_merge(self, b):
        """What the Merge buttons (and SOAP merge(), Apex merge) do: up to three
        records of one object — a master and one or two losers — become the master.
        The losers are deleted (IsDeleted, to the recycle bin and the delete log) with
        MasterRecordId set to the master, so queryAll shows them; records that
        referenced a loser (Contacts and Opportunities of a merged Account, a child
        Account's ParentId, ...) are re-parented to the master, a system update
        (SystemModstamp moves, LastModifiedDate does not, no triggers); the master
        is updated last ("fields": values that supersede the master's, as in a
        MergeRequest's masterRecord).  Returns the MergeResult's fields."""
        if not isinstance(b, dict):
            raise ValueError("body must be a JSON object")
        o = self._ctl_obj(str(b.get("object", "")))
        if o.name not in self.MERGEABLE:
            raise ValueError("INVALID_TYPE: Cannot merge records of type %s: only %s can be merged"
                             % (o.name, ", ".join(self.MERGEABLE)))
        losers = b.get("losers")
        if isinstance(losers, str):
            losers = [losers]
        if not isinstance(losers, list) or not 1 <= len(losers) <= 2:
            raise ValueError("LIMIT_EXCEEDED: A merge request takes one or two records to merge "
                             "into the master (up to three records in all)")
        ids = []
        for rid in [b.get("master")] + losers:
            r18 = to18(str(rid)) if rid is not None else None
            if r18 is None or r18[:3] != o.prefix:
                raise ValueError("MALFORMED_ID: invalid %s ID: %s" % (o.name, rid))
            r, err = self.live(o, r18)
            if err == "missing":
                raise KeyError(str(rid))
            if err == "deleted":
                raise ValueError("ENTITY_IS_DELETED: entity is deleted: %s" % rid)
            if r18 in ids:
                raise ValueError("INVALID_ID_FIELD: duplicate ID in merge request: %s" % rid)
            ids.append(r18)
        master, losers = ids[0], ids[1:]
        changes = {}
        if b.get("fields"):
            try:
                changes = self.prepare(o, dict(b["fields"]), False, control=True)
                self.check_unique(o, changes, master, None)
            except (RecErr, ReqErr) as e:
                raise ValueError("%s: %s" % (e.code, e.message))
        stamp = self.new_stamp()
        related = []
        for co in self.schema.values():
            refs = [f.name for f in co.fields.values()
                    if f.is_ref and o.name in (f.referenceTo or []) and f.name != "MasterRecordId"]
            if not refs:
                continue
            for cid, c in list(self.records[co.name].items()):
                if c.get("IsDeleted") or cid in losers:
                    continue
                upd = {f: master for f in refs if c.get(f) in losers and cid != master}
                if upd:
                    self.do_update(co, cid, upd, stamp, self.remote_user_id, system=True)
                    related.append(cid)
        for rid in losers:
            rec = dict(self.records[o.name][rid])
            rec["IsDeleted"] = True
            rec["MasterRecordId"] = master
            rec["LastModifiedDate"] = stamp
            rec["LastModifiedById"] = self.remote_user_id
            rec["SystemModstamp"] = stamp
            self.set_record(o.name, rid, rec)
            self.log_delete(o.name, rid, stamp)
        self.do_update(o, master, changes, self.new_stamp(), self.remote_user_id)
        return {"id": master, "mergedRecordIds": losers, "updatedRelatedIds": related,
                "success": True, "errors": []}

    def control(self, method, parts, query, body):
        """Salesforce-specific control endpoints under /__emulator/salesforce/."""
        with self.lock:
            b = json.loads(body) if body else {}
            if parts and parts[0] in ("cdc", "undelete"):
                return self.cdc.control(method, parts, query, b)
            if parts == ["refresh_token"] and method == "POST":
                tok = "5Aep" + secrets.token_urlsafe(48)
                self.refresh_tokens.add(tok)
                return json_response(200, {"refresh_token": tok, "client_id": CLIENT_ID})
            if parts == ["expire_tokens"] and method == "POST":
                n = len(self.tokens)
                self.tokens.clear()
                return json_response(200, {"expired": n})
            if parts == ["usage"] and method in ("GET", "POST"):
                if method == "POST":
                    self.api_usage = int(b.get("api_usage", 0))
                return json_response(200, {"api_usage": self.api_usage})
            if parts == ["merge"] and method == "POST":
                return json_response(200, self.control_merge(b))
            if parts == ["empty_recycle_bin"] and method == "POST":
                n = 0
                for name, recs in self.records.items():
                    for rid in [k for k, r in recs.items() if r.get("IsDeleted")]:
                        del recs[rid]
                        n += 1
                return json_response(200, {"purged": n})
            if len(parts) == 2 and parts[0] == "fields" and method == "POST":
                self._add_fields(parts[1], b if isinstance(b, list) else [b])
                return json_response(201, {"fields": [f["name"] for f in (b if isinstance(b, list) else [b])]})
            if len(parts) == 3 and parts[0] == "fields" and method == "DELETE":
                o = self._ctl_obj(parts[1])
                o.remove(parts[2])
                self._index_schema()
                link_children(self.schema)
                return json_response(200, {"removed": parts[2]})
            if len(parts) == 2 and parts[0] == "objects" and method == "POST":
                self.load_seed({"objects": {parts[1]: b}})
                return json_response(201, {"object": parts[1]})
        return json_response(404, {"error": "unknown salesforce control endpoint"})

    def _add_fields(self, objname, specs):
        o = self._ctl_obj(objname)
        tail = [o.fields.pop(n) for n in ("OwnerId", "CreatedDate", "CreatedById",
                                          "LastModifiedDate", "LastModifiedById",
                                          "SystemModstamp") if n in o.fields]
        try:
            for s in specs:
                if o.field(s["name"]) is not None:
                    raise ValueError("field %s already exists on %s" % (s["name"], o.name))
                o.add(custom_field(s))
        finally:
            for f in tail:
                o.fields[f.name] = f
        self._index_schema()
        link_children(self.schema)
        for f in o.uniques:
            if (o.name, f.name) not in self.uniq:
                self.uniq[(o.name, f.name)] = {}

    def load_seed(self, seed):
        """Seed format (README): {"objects": {Name__c: {keyPrefix, label, fields: [...]}},
        "fields": {Object: [field specs]}, "records": {Object: [records]}}."""
        if not seed:
            return
        with self.lock:
            for name, spec in (seed.get("objects") or {}).items():
                if name in self.schema:
                    raise ValueError("object %s already exists" % name)
                o = custom_object(name, spec)
                if o.prefix in self.prefix_obj:
                    raise ValueError("keyPrefix %s already used" % o.prefix)
                self.schema[name] = o
                self.records[name] = {}
                self.delete_log[name] = []
                self._index_schema()
                for f in o.uniques:
                    self.uniq[(name, f.name)] = {}
            for name, specs in (seed.get("fields") or {}).items():
                self._add_fields(name, specs)
            link_children(self.schema)
            self._index_schema()
            for name, recs in (seed.get("records") or {}).items():
                self.control_create(name, recs)
