"""HubSpot CRM API emulation (v3 objects, search, properties, schemas,
associations v3/v4, OAuth v1 token endpoint).  See README-hubspot.md.

All state is in memory and guarded by ``self.lock``.  Shapes follow the
recordings in fixtures/hubspot/ and the official OpenAPI specs."""
import fnmatch
import json
import random
import re
import time
import urllib.parse
import uuid
from datetime import datetime, timedelta, timezone

from common import ApiBase, Response, empty_response, iso_ms_z, json_response

PORTAL_ID = "44000001"
PRIVATE_APP_TOKEN = "pat-sync-test"
OAUTH_CLIENT_ID = "sync-hs-client"
OAUTH_CLIENT_SECRET = "sync-hs-secret"
OAUTH_REFRESH_TOKEN = "sync-hs-refresh"
OAUTH_AUTH_CODE = "sync-hs-code"
OAUTH_MAX_TTL = 1800
MAX_BATCH = 100
MAX_LIST_LIMIT = 100
MAX_SEARCH_LIMIT = 200
SEARCH_CAP = 10000
MAX_FILTER_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS_TOTAL = 18
AUTH_MISSING_MSG = ("Authentication credentials not found. This API supports OAuth 2.0 "
                    "authentication and you can find more details at "
                    "https://developers.hubspot.com/docs/methods/auth/oauth-overview")
CT = "application/json;charset=utf-8"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
TOKEN_SPLIT = re.compile(r"[^0-9a-z_]+")

LIFECYCLE = ["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead",
             "opportunity", "customer", "evangelist", "other"]
DEALSTAGES = ["appointmentscheduled", "qualifiedtobuy", "presentationscheduled",
              "decisionmakerboughtin", "contractsent", "closedwon", "closedlost"]
INDUSTRIES = ["ACCOUNTING", "COMPUTER_SOFTWARE", "FINANCIAL_SERVICES", "HOSPITAL_HEALTH_CARE",
              "INFORMATION_TECHNOLOGY_AND_SERVICES", "INTERNET", "RETAIL", "TELECOMMUNICATIONS"]


class HsError(Exception):
    """A whole-request error: status + HubSpot error body fields."""

    def __init__(self, status, message, category=None, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.category = category
        self.extra = extra


def _label(name):
    return " ".join(w.capitalize() for w in name.replace("hs_", "").split("_"))


def prop_def(name, type_="string", field_type=None, label=None, group="contactinformation",
             options=None, unique=False, read_only=False, calculated=False, hubspot=True,
             description=""):
    ft = field_type or {"string": "text", "number": "number", "date": "date",
                        "datetime": "date", "bool": "booleancheckbox",
                        "enumeration": "select", "phone_number": "phonenumber"}.get(type_, "text")
    if type_ == "bool" and options is None:
        options = [{"label": "Yes", "value": "true", "displayOrder": 0, "hidden": False},
                   {"label": "No", "value": "false", "displayOrder": 1, "hidden": False}]
    opts = []
    for i, o in enumerate(options or []):
        if isinstance(o, str):
            o = {"label": _label(o) if o.islower() else o.replace("_", " ").title(), "value": o}
        opts.append({"label": o.get("label", o["value"]), "value": o["value"],
                     "displayOrder": o.get("displayOrder", i), "hidden": o.get("hidden", False)})
    return {"name": name, "label": label or _label(name), "type": type_, "fieldType": ft,
            "description": description, "groupName": group, "options": opts,
            "displayOrder": -1, "calculated": calculated, "externalOptions": False,
            "hasUniqueValue": unique, "hidden": False, "hubspotDefined": hubspot,
            "modificationMetadata": {"archivable": not hubspot, "readOnlyDefinition": hubspot,
                                     "readOnlyValue": read_only},
            "formField": not read_only, "createdAt": "2019-08-06T02:41:52.179Z",
            "updatedAt": "2019-08-06T02:41:52.179Z", "archived": False}


def _std_props(createname, modname, group, extra):
    props = [
        prop_def(createname, "datetime", label="Create Date", group=group, read_only=True),
        prop_def(modname, "datetime", label="Last Modified Date", group=group, read_only=True),
        prop_def("hs_object_id", "number", label="Record ID", group=group, read_only=True),
        prop_def("hs_object_source", "string", group=group, read_only=True),
        prop_def("hs_object_source_id", "string", group=group, read_only=True),
        prop_def("hs_object_source_label", "string", group=group, read_only=True),
        # IDs merged into this record (";"-separated): they resolve to it
        prop_def("hs_merged_object_ids", "enumeration", "checkbox", label="Merged Record IDs",
                 group=group, read_only=True),
    ]
    return props + extra


class BadInput:
    """Per-input validation failure in a batch (INVALID_EMAIL)."""

    def __init__(self, problems):
        self.problems = problems

    def item(self, trace=None):
        ctx = {"propertyName": [p["name"] for p in self.problems]}
        if trace is not None:
            ctx["objectWriteTraceId"] = [str(trace)]
        return {"status": "error", "category": "VALIDATION_ERROR",
                "subCategory": self.problems[0]["error"],
                "message": "Property values were not valid: %s" % json.dumps(
                    self.problems, separators=(",", ":")), "context": ctx}


class ObjType:
    def __init__(self, type_id, name, singular, create_prop, mod_prop, props, defaults,
                 search_text=(), custom=False, labels=None, primary=None, required=()):
        self.type_id = type_id
        self.name = name
        self.singular = singular
        self.create_prop = create_prop
        self.mod_prop = mod_prop
        self.props = {p["name"]: p for p in props}
        self.defaults = list(defaults)
        self.always = [create_prop, "hs_object_id", mod_prop]
        self.search_text = list(search_text)
        self.custom = custom
        self.labels = labels or {"singular": singular.capitalize(), "plural": name.capitalize()}
        self.primary = primary
        self.required = list(required)
        self.records = {}          # id -> Rec (live and archived)
        self.merged = {}           # id merged away -> id of the record it resolves to
        self.upper = singular.upper() if not custom else type_id

    def unique_props(self):
        return [n for n, p in self.props.items() if p["hasUniqueValue"]]


def standard_types():
    contacts = ObjType("0-1", "contacts", "contact", "createdate", "lastmodifieddate", _std_props(
        "createdate", "lastmodifieddate", "contactinformation", [
            prop_def("email", "string", label="Email"),
            prop_def("firstname", "string", label="First Name"),
            prop_def("lastname", "string", label="Last Name"),
            prop_def("phone", "string", "phonenumber", label="Phone Number"),
            prop_def("mobilephone", "string", "phonenumber", label="Mobile Phone Number"),
            prop_def("company", "string", label="Company Name"),
            prop_def("website", "string", label="Website URL"),
            prop_def("jobtitle", "string", label="Job Title"),
            prop_def("city", "string"), prop_def("country", "string"),
            prop_def("date_of_birth", "date", label="Date of birth"),
            prop_def("lifecyclestage", "enumeration", "radio", label="Lifecycle Stage",
                     options=LIFECYCLE),
            prop_def("hs_email_domain", "string", label="Email Domain", read_only=True,
                     calculated=False),
            prop_def("hs_all_contact_vids", "enumeration", "checkbox", read_only=True),
            prop_def("hs_is_contact", "bool", read_only=True, calculated=True),
            prop_def("hs_is_unworked", "bool", read_only=True, calculated=True),
            prop_def("hs_pipeline", "enumeration", "select", read_only=True,
                     options=["contacts-lifecycle-pipeline"]),
            prop_def("num_notes", "number", read_only=True, calculated=True),
            prop_def("notes_last_updated", "datetime", read_only=True),
            prop_def("hs_email_optout", "bool", read_only=True),
        ]), ["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"],
        search_text=["firstname", "lastname", "email", "phone", "company", "website"])
    companies = ObjType("0-2", "companies", "company", "createdate", "hs_lastmodifieddate", _std_props(
        "createdate", "hs_lastmodifieddate", "companyinformation", [
            prop_def("name", "string", label="Company name", group="companyinformation"),
            prop_def("domain", "string", label="Company Domain Name", group="companyinformation"),
            prop_def("website", "string", group="companyinformation"),
            prop_def("city", "string", group="companyinformation"),
            prop_def("country", "string", group="companyinformation"),
            prop_def("phone", "string", "phonenumber", group="companyinformation"),
            prop_def("industry", "enumeration", "select", group="companyinformation",
                     options=INDUSTRIES),
            prop_def("numberofemployees", "number", group="companyinformation"),
            prop_def("annualrevenue", "number", group="companyinformation"),
            prop_def("description", "string", "textarea", group="companyinformation"),
            prop_def("founded_year", "string", group="companyinformation"),
            prop_def("is_public", "bool", group="companyinformation"),
            prop_def("lifecyclestage", "enumeration", "radio", group="companyinformation",
                     options=LIFECYCLE),
            prop_def("hs_pipeline", "enumeration", "select", group="companyinformation",
                     read_only=True, options=["companies-lifecycle-pipeline"]),
            prop_def("num_associated_contacts", "number", group="companyinformation",
                     read_only=True, calculated=True),
        ]), ["createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"],
        search_text=["name", "domain", "website", "phone"])
    deals = ObjType("0-3", "deals", "deal", "createdate", "hs_lastmodifieddate", _std_props(
        "createdate", "hs_lastmodifieddate", "dealinformation", [
            prop_def("dealname", "string", label="Deal Name", group="dealinformation"),
            prop_def("amount", "number", group="dealinformation"),
            prop_def("closedate", "datetime", label="Close Date", group="dealinformation"),
            prop_def("dealstage", "enumeration", "radio", group="dealinformation",
                     options=DEALSTAGES),
            prop_def("pipeline", "enumeration", "select", group="dealinformation",
                     options=["default"]),
            prop_def("dealtype", "enumeration", "radio", group="dealinformation",
                     options=["newbusiness", "existingbusiness"]),
            prop_def("description", "string", "textarea", group="dealinformation"),
        ]), ["amount", "closedate", "createdate", "dealname", "dealstage",
             "hs_lastmodifieddate", "hs_object_id", "pipeline"],
        search_text=["dealname"])
    return [contacts, companies, deals]


# Association types: (from, to) -> [(typeId, v3 name, label, inverse typeId)], default first.
ASSOC = {
    ("contacts", "companies"): [(279, "contact_to_company_unlabeled", None, 280),
                                (1, "contact_to_company", "Primary", 2)],
    ("companies", "contacts"): [(280, "company_to_contact_unlabeled", None, 279),
                                (2, "company_to_contact", "Primary", 1)],
    ("contacts", "deals"): [(4, "contact_to_deal", None, 3)],
    ("deals", "contacts"): [(3, "deal_to_contact", None, 4)],
    ("companies", "deals"): [(342, "company_to_deal_unlabeled", None, 341),
                             (6, "company_to_deal", "Primary", 5)],
    ("deals", "companies"): [(341, "deal_to_company_unlabeled", None, 342),
                             (5, "deal_to_company", "Primary", 6)],
}


class Rec:
    __slots__ = ("id", "props", "created", "updated", "archived", "archived_at",
                 "written", "prev", "gen")

    def __init__(self, rid, props, created):
        self.id = rid
        self.props = props
        self.created = created
        self.updated = created
        self.archived = False
        self.archived_at = None
        self.written = created.timestamp()    # seconds, for the search index lag
        self.prev = None                       # (props, updated, archived) before last write


def parse_time_ms(v):
    """Epoch ms from '1704153600000', 1704153600000 or an ISO date/datetime; None if bad."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return int(v)
    s = str(v).strip()
    if re.fullmatch(r"-?\d+", s):
        return int(s)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
            dt = datetime.strptime(s, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        else:
            dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
        return int(round((dt - EPOCH).total_seconds() * 1000))
    except ValueError:
        return None


def ms_to_iso(ms):
    return iso_ms_z(EPOCH + timedelta(milliseconds=ms))


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class Api(ApiBase):
    name = "hubspot"

    def __init__(self, emu):
        super().__init__(emu)
        self.reset()

    # -- state -------------------------------------------------------------
    def reset(self):
        with self.lock:
            self.types = {}
            for t in standard_types():
                self.types[t.type_id] = t
            self.next_id = 1001
            self.assocs = {}            # (from_tid, from_id, to_tid) -> {to_id: set(typeIds)}
            self.tokens = {PRIVATE_APP_TOKEN: {"kind": "private", "app": "private-app",
                                               "expires": None}}
            self.refresh_tokens = {OAUTH_REFRESH_TOKEN: OAUTH_CLIENT_ID}
            self.ten_s = {}             # app -> list of request times
            self.secondly = {}          # app -> list of request times (headers only)
            self.search_s = {}          # app -> list of search request times
            self.daily = {}             # day -> count (account-wide)
            self.rng = random.Random(1234)

    def now(self):
        return self.emu.now()

    def t(self):
        return self.emu.time()

    def new_id(self):
        self.next_id += 1
        return str(self.next_id)

    def resolve_type(self, name):
        n = urllib.parse.unquote(name)
        low = n.lower()
        for t in self.types.values():
            if low in (t.type_id.lower(), t.name.lower(), t.singular.lower(),
                       ("p_" + t.name).lower(), ("p_" + t.singular).lower()):
                return t
            if t.custom and low == ("p%s_%s" % (PORTAL_ID, t.name)).lower():
                return t
        raise HsError(400, "Unable to infer object type from: %s" % n)

    # -- responses ---------------------------------------------------------
    def cid(self):
        return str(uuid.uuid4())

    def err_body(self, e, cid):
        body = {"status": "error", "message": e.message, "correlationId": cid}
        for k in ("errors", "context", "links", "subCategory"):
            if k in e.extra:
                body[k] = e.extra[k]
        if e.category:
            body["category"] = e.category
        for k, v in e.extra.items():
            if k not in body:
                body[k] = v
        return body

    def fault_response(self, status, req):
        cid = self.cid()
        if status == 429:
            body = self.rate_body("ten_secondly", cid)
        elif status == 401:
            body = {"status": "error", "message": AUTH_MISSING_MSG, "correlationId": cid,
                    "category": "INVALID_AUTHENTICATION"}
        elif status >= 500:
            body = {"status": "error", "message": "internal error", "correlationId": cid}
        else:
            body = {"status": "error", "message": "fault injected by the emulator",
                    "correlationId": cid, "category": "VALIDATION_ERROR"}
        return json_response(status, body, [("X-HubSpot-Correlation-Id", cid)], content_type=CT)

    def rate_body(self, kind, cid):
        if kind == "search":
            return {"status": "error", "message": "You have reached your secondly limit.",
                    "correlationId": cid, "category": "RATE_LIMITS"}
        policy = {"ten_secondly": "TEN_SECONDLY_ROLLING", "daily": "DAILY"}[kind]
        msg = {"ten_secondly": "ten_secondly_rolling", "daily": "daily"}[kind]
        return {"status": "error", "message": "You have reached your %s limit." % msg,
                "errorType": "RATE_LIMIT", "correlationId": cid, "policyName": policy,
                "groupName": "publicapi:%s:%s" % (policy.lower(), PORTAL_ID)}

    # -- entry point -------------------------------------------------------
    def owns(self, path):
        return (path.startswith("/crm/v3/") or path.startswith("/crm/v4/")
                or path.startswith("/oauth/v1/"))

    def handle(self, req):
        cid = self.cid()
        with self.lock:
            if req.path.startswith("/oauth/v1/"):
                return self.oauth(req, cid)
            hdrs = [("X-HubSpot-Correlation-Id", cid)]
            try:
                tok = self.authenticate(req)
            except HsError as e:
                return json_response(e.status, self.err_body(e, cid), hdrs, content_type=CT)
            segs = [urllib.parse.unquote(s) for s in req.path.split("/") if s]
            is_search = (req.method == "POST" and len(segs) == 5 and segs[1] == "v3"
                         and segs[2] == "objects" and segs[4] == "search")
            limited = self.rate_limit(tok, is_search, cid)
            hdrs += self.rate_headers(tok, is_search)
            if limited is not None:
                return json_response(429, limited, hdrs, content_type=CT)
            try:
                status, body = self.route(req, segs)
            except HsError as e:
                status, body = e.status, self.err_body(e, cid)
            if body is None:
                return empty_response(status, hdrs)
            return json_response(status, body, hdrs, content_type=CT)

    # -- auth --------------------------------------------------------------
    def authenticate(self, req):
        auth = req.header("authorization") or ""
        tok = None
        if auth[:7].lower() == "bearer ":
            tok = auth[7:].strip()
        info = self.tokens.get(tok) if tok else None
        if info is None:
            raise HsError(401, AUTH_MISSING_MSG, "INVALID_AUTHENTICATION")
        if info["expires"] is not None and self.t() >= info["expires"]:
            ago = int(self.t() - info["expires"])
            exp = ms_to_iso(int(info["expires"] * 1000))
            raise HsError(401, "The OAuth token used to make this call expired %d second(s) ago."
                          % ago, "EXPIRED_AUTHENTICATION", context={"expire time": [exp]})
        return info

    def oauth(self, req, cid):
        def fail(status, code, message):
            return json_response(status, {"status": code, "message": message,
                                          "correlationId": cid}, content_type=CT)
        if req.path.rstrip("/") != "/oauth/v1/token":
            return fail(404, "NOT_FOUND", "resource not found")
        if req.method != "POST":
            return fail(405, "METHOD_NOT_ALLOWED", "method not allowed")
        ctype = (req.header("content-type") or "").lower()
        if "x-www-form-urlencoded" not in ctype:
            return fail(415, "UNSUPPORTED_MEDIA_TYPE",
                        "Content-Type must be application/x-www-form-urlencoded")
        form = dict(urllib.parse.parse_qsl(req.body.decode("utf-8", "replace"),
                                           keep_blank_values=True))
        grant = form.get("grant_type")
        if grant not in ("refresh_token", "authorization_code"):
            return fail(400, "BAD_GRANT_TYPE", "missing or unsupported grant_type")
        if form.get("client_id") != OAUTH_CLIENT_ID:
            return fail(400, "BAD_CLIENT_ID", "missing or unknown client id")
        if form.get("client_secret") != OAUTH_CLIENT_SECRET:
            return fail(400, "BAD_CLIENT_SECRET", "missing or invalid client secret")
        if grant == "refresh_token":
            rt = form.get("refresh_token")
            if self.refresh_tokens.get(rt) != OAUTH_CLIENT_ID:
                return fail(400, "BAD_REFRESH_TOKEN", "missing or unknown refresh token")
        else:
            if form.get("code") != OAUTH_AUTH_CODE:
                return fail(400, "BAD_AUTH_CODE", "missing or unknown auth code")
            if not form.get("redirect_uri"):
                return fail(400, "BAD_REDIRECT_URI", "missing or mismatched redirect_uri")
            rt = OAUTH_REFRESH_TOKEN
        ttl = int(min(OAUTH_MAX_TTL, self.emu.config.get("token_ttl_s", OAUTH_MAX_TTL)))
        access = "CN" + uuid.uuid4().hex + uuid.uuid4().hex[:16]
        self.tokens[access] = {"kind": "oauth", "app": "oauth:" + OAUTH_CLIENT_ID,
                               "expires": self.t() + ttl}
        return json_response(200, {"token_type": "bearer", "refresh_token": rt,
                                   "access_token": access, "expires_in": ttl},
                             [("X-HubSpot-Correlation-Id", cid)], content_type=CT)

    # -- rate limits -------------------------------------------------------
    @staticmethod
    def _window(store, key, now, span):
        lst = store.setdefault(key, [])
        cut = now - span
        i = 0
        while i < len(lst) and lst[i] <= cut:
            i += 1
        if i:
            del lst[:i]
        return lst

    def rate_limit(self, tok, is_search, cid):
        cfg = self.emu.config
        now = self.t()
        day = int(now // 86400)
        used = self.daily.get(day, 0)
        if used >= int(cfg.get("hubspot_daily", 1000000)):
            return self.rate_body("daily", cid)
        if is_search:
            lst = self._window(self.search_s, tok["app"], now, 1.0)
            if len(lst) >= int(cfg.get("hubspot_search_per_s", 5)):
                return self.rate_body("search", cid)
            lst.append(now)
        else:
            lst = self._window(self.ten_s, tok["app"], now, 10.0)
            if len(lst) >= int(cfg.get("hubspot_per_10s", 190)):
                return self.rate_body("ten_secondly", cid)
            lst.append(now)
            self._window(self.secondly, tok["app"], now, 1.0).append(now)
        self.daily[day] = used + 1
        return None

    def rate_headers(self, tok, is_search):
        cfg = self.emu.config
        now = self.t()
        out = []
        if tok["kind"] == "private":
            daily = int(cfg.get("hubspot_daily", 1000000))
            used = self.daily.get(int(now // 86400), 0)
            out += [("X-HubSpot-RateLimit-Daily", daily),
                    ("X-HubSpot-RateLimit-Daily-Remaining", max(0, daily - used))]
        if not is_search:
            mx = int(cfg.get("hubspot_per_10s", 190))
            used10 = len(self._window(self.ten_s, tok["app"], now, 10.0))
            sec = max(1, mx // 10)
            used1 = len(self._window(self.secondly, tok["app"], now, 1.0))
            out += [("X-HubSpot-RateLimit-Interval-Milliseconds", 10000),
                    ("X-HubSpot-RateLimit-Max", mx),
                    ("X-HubSpot-RateLimit-Remaining", max(0, mx - used10)),
                    ("X-HubSpot-RateLimit-Secondly", sec),
                    ("X-HubSpot-RateLimit-Secondly-Remaining", max(0, sec - used1))]
        return [(k, str(v)) for k, v in out]

    # -- routing -----------------------------------------------------------
    @staticmethod
    def body_json(req, required=True):
        if not req.body:
            if required:
                raise HsError(400, "Invalid input JSON: request body is empty", "VALIDATION_ERROR")
            return None
        try:
            return json.loads(req.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise HsError(400, "Invalid input JSON on line 1: %s" % e, "VALIDATION_ERROR")

    def route(self, req, segs):
        m = req.method
        if len(segs) < 3:
            raise HsError(404, "resource not found", "OBJECT_NOT_FOUND")
        ver, area, rest = segs[1], segs[2], segs[3:]
        if ver == "v3" and area == "objects" and rest:
            t = self.resolve_type(rest[0])
            if len(rest) == 1:
                if m == "GET":
                    return self.list_objects(req, t)
                if m == "POST":
                    return self.create_one(req, t)
            elif len(rest) == 2 and rest[1] == "search" and m == "POST":
                return self.search(req, t)
            elif len(rest) == 2 and rest[1] == "merge" and m == "POST":
                body = self.body_json(req)
                if not isinstance(body, dict):
                    raise HsError(400, "Invalid input JSON: expected an object", "VALIDATION_ERROR")
                return 200, self.render(t, self.do_merge(t, body.get("primaryObjectId"),
                                                         body.get("objectIdToMerge")))
            elif len(rest) == 3 and rest[1] == "batch" and m == "POST":
                op = rest[2]
                fn = {"create": self.batch_create, "update": self.batch_update,
                      "upsert": self.batch_upsert, "read": self.batch_read,
                      "archive": self.batch_archive}.get(op)
                if fn:
                    return fn(req, t)
            elif len(rest) == 2:
                if m == "GET":
                    return self.get_one(req, t, rest[1])
                if m == "PATCH":
                    return self.update_one(req, t, rest[1])
                if m == "DELETE":
                    return self.archive_one(t, rest[1])
            raise HsError(405 if len(rest) <= 2 else 404, "resource not found or method not allowed")
        if ver == "v3" and area == "properties" and rest:
            return self.properties(req, rest)
        if ver == "v3" and area == "schemas":
            return self.schemas(req, rest)
        if ver == "v3" and area == "associations" and len(rest) == 4 and rest[2] == "batch" \
                and m == "POST":
            return self.assoc_v3_batch(req, self.resolve_type(rest[0]),
                                       self.resolve_type(rest[1]), rest[3])
        if ver == "v4" and area == "objects" and len(rest) >= 4 and rest[2] == "associations":
            return self.assoc_v4_object(req, rest)
        if ver == "v4" and area == "associations" and len(rest) >= 3:
            return self.assoc_v4_batch(req, rest)
        raise HsError(404, "resource not found", "OBJECT_NOT_FOUND")

    # -- values ------------------------------------------------------------
    def validate_value(self, t, name, value, allow_read_only=False):
        """(normalised value or None for clear, problem dict or None)."""
        p = t.props.get(name)
        if p is None:
            return None, {"isValid": False, "message": 'Property "%s" does not exist' % name,
                          "error": "PROPERTY_DOESNT_EXIST", "name": name}
        if p["modificationMetadata"]["readOnlyValue"] and not allow_read_only:
            return None, {"isValid": False,
                          "message": '"%s" is a read only property; its value cannot be set.' % name,
                          "error": "READ_ONLY_VALUE", "name": name}
        if value is None:
            return None, None
        if isinstance(value, bool):
            s = "true" if value else "false"
        elif isinstance(value, (int, float)):
            s = str(int(value)) if isinstance(value, int) or value == int(value) else repr(value)
        elif isinstance(value, str):
            s = value
        else:
            return None, {"isValid": False, "message": "%s was not a valid string value"
                          % json.dumps(value), "error": "INVALID_STRING", "name": name}
        if s == "":
            return "", None
        typ = p["type"]

        def bad(code, msg):
            return None, {"isValid": False, "message": msg, "error": code, "name": name}
        if name == "email" and t.name == "contacts":
            s = s.strip().lower()
            if not EMAIL_RE.match(s):
                return bad("INVALID_EMAIL", "Email address %s is invalid" % s)
        if typ == "number":
            if _num(s) is None or s.strip().lower() in ("nan", "inf", "-inf", "infinity"):
                return bad("INVALID_DECIMAL", '%s was not a valid number.' % s)
            return s.strip(), None
        if typ == "bool":
            if s.lower() not in ("true", "false"):
                return bad("INVALID_BOOLEAN", "%s was not a valid boolean value "
                           "(true, false)" % s)
            return s.lower(), None
        if typ == "date":
            ms = parse_time_ms(s)
            if ms is None:
                return bad("INVALID_DATE", "%s was not a valid date" % s)
            if ms % 86400000:
                return bad("INVALID_DATE", "%s is at %s UTC, not midnight!"
                           % (s, ms_to_iso(ms)[11:23]))
            return ms_to_iso(ms)[:10], None
        if typ == "datetime":
            ms = parse_time_ms(s)
            if ms is None:
                return bad("INVALID_DATETIME", "%s was not a valid datetime" % s)
            return ms_to_iso(ms), None
        if typ == "enumeration":
            allowed = [o["value"] for o in p["options"]]
            vals = s.split(";") if p["fieldType"] == "checkbox" else [s]
            for v in vals:
                if v not in allowed:
                    return bad("INVALID_OPTION", '%s was not one of the allowed options: [%s]'
                               % (v, ", ".join(allowed)))
        return s, None

    def check_props(self, t, props, allow_read_only=False):
        """Validate a properties dict; (normalised, problems)."""
        out = {}
        problems = []
        if not isinstance(props, dict):
            raise HsError(400, "Invalid input JSON: properties must be an object",
                          "VALIDATION_ERROR")
        for k, v in props.items():
            nv, prob = self.validate_value(t, k, v, allow_read_only)
            if prob:
                problems.append(prob)
            else:
                out[k] = nv
        return out, problems

    @staticmethod
    def validation_error(problems):
        return HsError(400, "Property values were not valid: %s" % json.dumps(
            problems, separators=(",", ":")), "VALIDATION_ERROR",
            errors=[{"message": p["message"], "code": p["error"],
                     "context": {"propertyName": [p["name"]]}} for p in problems])

    # -- record writes -----------------------------------------------------
    def find_unique(self, t, prop, value, live_only=True):
        if value is None or value == "":
            return None
        if prop in ("hs_object_id", "id"):
            r = t.records.get(str(value))
            return r if r and not (live_only and r.archived) else None
        v = str(value).lower() if prop == "email" else str(value)
        for r in t.records.values():
            if live_only and r.archived:
                continue
            rv = r.props.get(prop)
            if rv is not None and (rv.lower() if prop == "email" else rv) == v:
                return r
        return None

    def conflict_for(self, t, changes, self_id=None, pending=None):
        """CONFLICT error item for a unique value already used, else None."""
        keys = (["email"] if t.name == "contacts" else []) + t.unique_props()
        for k in keys:
            v = changes.get(k)
            if not v:
                continue
            other = self.find_unique(t, k, v)
            if other is None and pending is not None:
                oid = pending.get((k, v.lower() if k == "email" else v))
                if oid is not None and oid != self_id:
                    return {"existing": oid, "prop": k}
            if other is not None and other.id != self_id:
                return {"existing": other.id, "prop": k}
        return None

    def conflict_message(self, t, c):
        if t.name == "contacts" and c["prop"] == "email":
            return "Contact already exists. Existing ID: %s" % c["existing"]
        return ("%s already has that value for unique property %s. Existing ID: %s"
                % (t.upper, c["prop"], c["existing"]))

    def derive(self, t, rec, now_s):
        p = rec.props
        p["hs_object_id"] = rec.id
        p[t.create_prop] = iso_ms_z(rec.created)
        p[t.mod_prop] = iso_ms_z(rec.updated)
        if t.name == "contacts":
            email = p.get("email")
            if email and "@" in email:
                p["hs_email_domain"] = email.split("@", 1)[1]
            else:
                p.pop("hs_email_domain", None)

    def do_create(self, t, changes, now, source="INTEGRATION"):
        rid = self.new_id()
        props = {k: v for k, v in changes.items() if v not in (None, "")}
        rec = Rec(rid, props, now)
        if not t.custom:
            props.setdefault("hs_object_source", source)
            props.setdefault("hs_object_source_id", "sync-emulator")
            props.setdefault("hs_object_source_label", source)
        if t.name == "contacts":
            props.setdefault("lifecyclestage", "lead")
            props["hs_all_contact_vids"] = rid
            props["hs_is_contact"] = "true"
            props["hs_is_unworked"] = "true"
            props["hs_pipeline"] = "contacts-lifecycle-pipeline"
        elif t.name == "companies":
            props.setdefault("lifecyclestage", "lead")
            props["hs_pipeline"] = "companies-lifecycle-pipeline"
            if props.get("domain"):
                props.setdefault("website", props["domain"])   # as recorded
        created = props.pop(t.create_prop, None)
        modified = props.pop(t.mod_prop, None)
        if created:
            rec.created = EPOCH + timedelta(milliseconds=parse_time_ms(created))
            rec.updated = rec.created
        if modified:
            rec.updated = EPOCH + timedelta(milliseconds=parse_time_ms(modified))
        self.derive(t, rec, None)
        t.records[rid] = rec
        return rec

    def do_update(self, t, rec, changes, now):
        old = rec.props
        rec.prev = (old, rec.updated, False)
        new = dict(old)
        for k, v in changes.items():
            if v in (None, ""):
                new.pop(k, None)
            else:
                new[k] = v
        modified = new.pop(t.mod_prop, None) if t.mod_prop in changes else None
        rec.props = new
        rec.updated = (EPOCH + timedelta(milliseconds=parse_time_ms(modified))) if modified \
            else now
        rec.written = self.t()
        self.derive(t, rec, None)

    def do_archive(self, t, rec, now):
        if rec.archived:
            return
        rec.prev = (rec.props, rec.updated, False)
        rec.archived = True
        rec.archived_at = now
        rec.written = self.t()

    # -- rendering ---------------------------------------------------------
    def select_props(self, t, req_props):
        """Property names to render: requested (+ always-returned) or the defaults."""
        if req_props:
            names = [p for p in req_props if p in t.props]
            for a in t.always:
                if a not in names:
                    names.append(a)
            return sorted(set(names))
        return sorted(set(t.defaults))

    def render(self, t, rec, names=None, props=None, updated=None, echo=None, trace=None,
               url_base=None, assoc=None):
        props = rec.props if props is None else props
        if names is None:
            out = {k: props[k] for k in sorted(props)}
            if echo:
                for k, v in echo.items():
                    if v == "" and k in t.props:
                        out[k] = ""
                out = {k: out[k] for k in sorted(out)}
        else:
            out = {k: props.get(k) for k in names}
        d = {"id": rec.id, "properties": out, "createdAt": iso_ms_z(rec.created),
             "updatedAt": iso_ms_z(updated or rec.updated), "archived": rec.archived}
        if rec.archived:
            d["archivedAt"] = iso_ms_z(rec.archived_at)
        if assoc:
            d["associations"] = assoc
        if trace is not None:
            d["objectWriteTraceId"] = trace
        d["url"] = "https://app.hubspot.com/contacts/%s/record/%s/%s" % (PORTAL_ID, t.type_id,
                                                                          rec.id)
        return d

    @staticmethod
    def multi(req, name):
        out = []
        for v in req.query.get(name, []):
            out += [x.strip() for x in v.split(",") if x.strip()]
        return out

    @staticmethod
    def qbool(req, name):
        return (req.q1(name) or "false").lower() == "true"

    # -- single object -----------------------------------------------------
    def lookup(self, t, id_value, id_prop=None, archived=False):
        if id_prop and id_prop not in ("hs_object_id",):
            self.check_id_prop(t, id_prop)
            rec = self.find_unique(t, id_prop, id_value, live_only=not archived)
            if rec is not None and rec.archived != archived:
                return None
            return rec
        rec = t.records.get(str(id_value))
        if rec is None and not archived:
            rec = t.records.get(t.merged.get(str(id_value), ""))   # a merged ID: the merged record
        if rec is None or rec.archived != archived:
            return None
        return rec

    def check_id_prop(self, t, id_prop):
        if id_prop not in t.props:
            raise HsError(400, 'Property "%s" does not exist' % id_prop, "VALIDATION_ERROR")
        if id_prop in ("hs_object_id",) or (t.name == "contacts" and id_prop == "email"):
            return
        if not t.props[id_prop]["hasUniqueValue"]:
            raise HsError(400, "Unable to perform update/upsert by non-unique %s property: %s"
                          % (t.type_id, id_prop), "VALIDATION_ERROR")

    def not_found(self, t, rid):
        return HsError(404, "resource not found", "OBJECT_NOT_FOUND",
                       context={"id": [str(rid)]})

    def assoc_for_render(self, t, rec, names):
        if not names:
            return None
        out = {}
        for n in names:
            try:
                tt = self.resolve_type(n)
            except HsError:
                continue
            res = []
            for to_id, tids in sorted(self.assocs.get((t.type_id, rec.id, tt.type_id), {}).items(),
                                      key=lambda x: int(x[0])):
                target = tt.records.get(to_id)
                if target is None or target.archived:
                    continue
                for tid in sorted(tids):
                    res.append({"id": to_id, "type": self.v3_type_name(t, tt, tid)})
            if res:
                out[tt.name] = {"results": res}
        return out or None

    def get_one(self, req, t, rid):
        archived = self.qbool(req, "archived")
        rec = self.lookup(t, rid, req.q1("idProperty"), archived)
        if rec is None:
            raise self.not_found(t, rid)
        names = self.select_props(t, self.multi(req, "properties"))
        return 200, self.render(t, rec, names, assoc=self.assoc_for_render(
            t, rec, self.multi(req, "associations")))

    def create_one(self, req, t):
        body = self.body_json(req)
        if not isinstance(body, dict):
            raise HsError(400, "Invalid input JSON: expected an object", "VALIDATION_ERROR")
        changes, problems = self.check_props(t, body.get("properties") or {})
        if problems:
            raise self.validation_error(problems)
        c = self.conflict_for(t, changes)
        if c:
            raise HsError(409, self.conflict_message(t, c), "CONFLICT")
        assoc_inputs = body.get("associations") or []
        pairs = self.check_create_assocs(t, assoc_inputs)
        rec = self.do_create(t, changes, self.now())
        for tt, to_id, tid in pairs:
            self.add_assoc(t, rec.id, tt, to_id, tid)
        return 201, self.render(t, rec, echo=changes, url_base=req.url_base)

    def check_create_assocs(self, t, inputs):
        pairs = []
        if not isinstance(inputs, list):
            raise HsError(400, "Invalid input JSON: associations must be a list",
                          "VALIDATION_ERROR")
        for a in inputs:
            to_id = str(((a or {}).get("to") or {}).get("id", ""))
            for ty in (a or {}).get("types") or []:
                tid = ty.get("associationTypeId")
                found = None
                for (f, to), lst in ASSOC.items():
                    if f == t.name and any(x[0] == tid for x in lst):
                        found = self.resolve_type(to)
                if found is None:
                    raise HsError(400, "invalid association type id %s from %s" % (tid, t.name),
                                  "VALIDATION_ERROR")
                target = found.records.get(to_id)
                if target is None or target.archived:
                    raise HsError(400, "One or more associations are invalid: %s %s not found"
                                  % (found.upper, to_id), "VALIDATION_ERROR")
                pairs.append((found, to_id, tid))
        return pairs

    def update_one(self, req, t, rid):
        body = self.body_json(req)
        if not isinstance(body, dict):
            raise HsError(400, "Invalid input JSON: expected an object", "VALIDATION_ERROR")
        changes, problems = self.check_props(t, body.get("properties") or {})
        if problems:
            raise self.validation_error(problems)
        rec = self.lookup(t, rid, req.q1("idProperty"))
        if rec is None:
            raise self.not_found(t, rid)
        c = self.conflict_for(t, changes, rec.id)
        if c:
            raise HsError(409, self.conflict_message(t, c), "CONFLICT")
        self.do_update(t, rec, changes, self.now())
        return 200, self.render(t, rec, echo=changes)

    def archive_one(self, t, rid):
        rec = t.records.get(rid)
        if rec is not None:
            self.do_archive(t, rec, self.now())
        return 204, None

    # -- list --------------------------------------------------------------
    def list_objects(self, req, t):
        limit = req.q1("limit") or "10"
        try:
            limit = int(limit)
        except ValueError:
            raise HsError(400, "Invalid limit: %s" % limit, "VALIDATION_ERROR")
        if limit < 1 or limit > MAX_LIST_LIMIT:
            raise HsError(400, "limit must be between 1 and %d, got %d" % (MAX_LIST_LIMIT, limit),
                          "VALIDATION_ERROR", context={"limit": [str(limit)]})
        after = req.q1("after")
        start = 0
        if after:
            try:
                start = int(after)
            except ValueError:
                raise HsError(400, "Invalid after cursor: %s" % after, "VALIDATION_ERROR")
        archived = self.qbool(req, "archived")
        names = self.select_props(t, self.multi(req, "properties"))
        assoc_names = self.multi(req, "associations")
        ids = sorted(int(r.id) for r in t.records.values()
                     if r.archived == archived and int(r.id) >= start)
        page = ids[:limit]
        results = [self.render(t, t.records[str(i)], names,
                               assoc=self.assoc_for_render(t, t.records[str(i)], assoc_names))
                   for i in page]
        body = {"results": results}
        if len(ids) > limit:
            nxt = str(ids[limit])
            q = [(k, v) for k, v in urllib.parse.parse_qsl(req.raw_query, keep_blank_values=True)
                 if k != "after"] + [("after", nxt)]
            body["paging"] = {"next": {"after": nxt, "link": "%s%s?%s" % (
                req.url_base, req.path, urllib.parse.urlencode(q, safe=","))}}
        return 200, body

    # -- batch -------------------------------------------------------------
    def batch_inputs(self, req):
        body = self.body_json(req)
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            raise HsError(400, "Invalid input JSON on line 1, column 1: Cannot build "
                          "BatchInput, some of required attributes are not set [inputs]",
                          "VALIDATION_ERROR")
        inputs = body["inputs"]
        if len(inputs) > MAX_BATCH:
            raise HsError(400, "Batch input size must be less than or equal to %d (got %d)"
                          % (MAX_BATCH, len(inputs)), "VALIDATION_ERROR",
                          context={"maxInputs": [str(MAX_BATCH)], "inputs": [str(len(inputs))]})
        for i in inputs:
            if not isinstance(i, dict):
                raise HsError(400, "Invalid input JSON: inputs must be objects",
                              "VALIDATION_ERROR")
        return body, inputs

    def shuffled(self, results):
        """Results are deliberately not in input order (HubSpot does not promise
        it): they come back reversed, so clients must match by id /
        objectWriteTraceId, and tests can still predict the order."""
        return list(reversed(results))

    def batch_body(self, started, results, errors):
        body = {"completedAt": iso_ms_z(self.now()), "status": "COMPLETE",
                "startedAt": iso_ms_z(started), "results": self.shuffled(results)}
        if errors:
            body["errors"] = errors
            body["numErrors"] = len(errors)
        return body

    @staticmethod
    def check_dups(ids):
        seen, dups = set(), []
        for i in ids:
            if i in seen and i not in dups:
                dups.append(i)
            seen.add(i)
        if dups:
            raise HsError(400, "Duplicate IDs found in batch input: [%s]. IDs must be unique"
                          % ", ".join(dups), "VALIDATION_ERROR", context={"ids": dups})

    def not_found_error(self, t, ids, traces):
        ctx = {"ids": ids}
        if any(x is not None for x in traces):
            ctx["objectWriteTraceId"] = [x for x in traces if x is not None]
        return {"status": "error", "category": "OBJECT_NOT_FOUND",
                "message": "Could not get some %s objects, they may be deleted or not exist. "
                           "Check that ids are valid." % t.upper, "context": ctx}

    def conflict_error(self, t, c, trace):
        ctx = {}
        if trace is not None:
            ctx["objectWriteTraceId"] = [str(trace)]
        ctx["existingId"] = [c["existing"]]
        return {"status": "error", "category": "CONFLICT",
                "message": self.conflict_message(t, c), "context": ctx}

    def validate_all(self, t, inputs, key="properties"):
        """Whole-batch validation (400 for any problem) except INVALID_EMAIL,
        which fails only its own input (a BadInput in the returned list)."""
        allc, problems = [], []
        for inp in inputs:
            c, p = self.check_props(t, inp.get(key) or {})
            emails = [x for x in p if x["error"] == "INVALID_EMAIL"]
            p = [x for x in p if x["error"] != "INVALID_EMAIL"]
            allc.append(BadInput(emails) if emails else c)
            problems += p
        if problems:
            raise self.validation_error(problems)
        return allc

    def batch_create(self, req, t):
        started = self.now()
        _, inputs = self.batch_inputs(req)
        allc = self.validate_all(t, inputs)
        for inp in inputs:
            self.check_create_assocs(t, inp.get("associations") or [])
        results, errors, pending = [], [], {}
        for inp, changes in zip(inputs, allc):
            trace = inp.get("objectWriteTraceId")
            if isinstance(changes, BadInput):
                errors.append(changes.item(trace))
                continue
            c = self.conflict_for(t, changes, None, pending)
            if c:
                errors.append(self.conflict_error(t, c, trace))
                continue
            rec = self.do_create(t, changes, self.now())
            for tt, to_id, tid in self.check_create_assocs(t, inp.get("associations") or []):
                self.add_assoc(t, rec.id, tt, to_id, tid)
            for k in (["email"] if t.name == "contacts" else []) + t.unique_props():
                if changes.get(k):
                    pending[(k, changes[k].lower() if k == "email" else changes[k])] = rec.id
            results.append(self.render(t, rec, echo=changes, trace=trace))
        if errors and not results:
            first = errors[0]
            if all(e["category"] == "CONFLICT" for e in errors):
                raise HsError(409, first["message"], "CONFLICT")
        return (207 if errors else 201), self.batch_body(started, results, errors)

    def batch_update(self, req, t):
        started = self.now()
        _, inputs = self.batch_inputs(req)
        ids = [str(i.get("id", "")) for i in inputs]
        self.check_dups(ids)
        for inp in inputs:
            if inp.get("idProperty"):
                self.check_id_prop(t, inp["idProperty"])
        allc = self.validate_all(t, inputs)
        results, errors, missing, mtraces = [], [], [], []
        now = self.now()
        for inp, rid, changes in zip(inputs, ids, allc):
            trace = inp.get("objectWriteTraceId")
            if isinstance(changes, BadInput):
                errors.append(changes.item(trace))
                continue
            rec = self.lookup(t, rid, inp.get("idProperty"))
            if rec is None:
                missing.append(rid)
                mtraces.append(trace)
                continue
            c = self.conflict_for(t, changes, rec.id)
            if c:
                errors.append(self.conflict_error(t, c, trace))
                continue
            self.do_update(t, rec, changes, now)
            results.append(self.render(t, rec, echo=changes, trace=trace))
        if missing:
            errors.insert(0, self.not_found_error(t, missing, mtraces))
        return (207 if errors else 200), self.batch_body(started, results, errors)

    def batch_upsert(self, req, t):
        started = self.now()
        _, inputs = self.batch_inputs(req)
        ids = [str(i.get("id", "")) for i in inputs]
        self.check_dups(ids)
        for inp in inputs:
            idp = inp.get("idProperty")
            if not idp:
                raise HsError(400, "idProperty is required for upsert", "VALIDATION_ERROR")
            if idp == "hs_object_id":
                raise HsError(400, "Unable to perform update/upsert by non-unique %s property: %s"
                              % (t.type_id, idp), "VALIDATION_ERROR")
            self.check_id_prop(t, idp)
        allc = self.validate_all(t, inputs)
        results, errors = [], []
        now = self.now()
        for inp, rid, changes in zip(inputs, ids, allc):
            trace = inp.get("objectWriteTraceId")
            if isinstance(changes, BadInput):
                errors.append(changes.item(trace))
                continue
            idp = inp["idProperty"]
            rec = self.find_unique(t, idp, rid)
            if rec is None:
                keyv, prob = self.validate_value(t, idp, rid)
                if prob:
                    raise self.validation_error([prob])
                changes = dict(changes)
                changes[idp] = keyv
                c = self.conflict_for(t, changes)
                if c:
                    errors.append(self.conflict_error(t, c, trace))
                    continue
                rec = self.do_create(t, changes, now)
                new = True
            else:
                c = self.conflict_for(t, changes, rec.id)
                if c:
                    errors.append(self.conflict_error(t, c, trace))
                    continue
                self.do_update(t, rec, changes, now)
                new = False
            d = self.render(t, rec, echo=changes, trace=trace)
            d["new"] = new
            results.append(d)
        return (207 if errors else 200), self.batch_body(started, results, errors)

    def batch_read(self, req, t):
        started = self.now()
        body, inputs = self.batch_inputs(req)
        archived = self.qbool(req, "archived")
        idp = body.get("idProperty")
        if idp:
            self.check_id_prop(t, idp)
        names = self.select_props(t, body.get("properties") or [])
        results, missing, seen = [], [], set()
        for inp in inputs:
            rid = str(inp.get("id", ""))
            rec = self.lookup(t, rid, idp, archived)
            if rec is None:
                missing.append(rid)
            elif rec.id not in seen:
                seen.add(rec.id)
                results.append(self.render(t, rec, names))
        errors = [self.not_found_error(t, missing, [])] if missing else []
        return (207 if errors else 200), self.batch_body(started, results, errors)

    def batch_archive(self, req, t):
        _, inputs = self.batch_inputs(req)
        now = self.now()
        for inp in inputs:
            rec = t.records.get(str(inp.get("id", "")))
            if rec is not None:
                self.do_archive(t, rec, now)
        return 204, None

    # -- search ------------------------------------------------------------
    def index_view(self, rec, now_s, lag_s):
        """What the search index holds: (props, updated, countable, returnable)."""
        if lag_s <= 0 or now_s - rec.written >= lag_s:
            if rec.archived:
                return None
            return rec.props, rec.updated, True
        # written less than lag ago: the index still has the previous version
        if rec.prev is None:
            return None        # created recently: not indexed yet
        props, updated, _ = rec.prev
        return props, updated, not rec.archived

    def typed(self, p, v):
        typ = p["type"] if p else "string"
        if v is None:
            return None
        if typ == "number":
            return _num(v)
        if typ in ("date", "datetime"):
            return parse_time_ms(v)
        return str(v).lower()

    def match_filter(self, t, f, props, rid):
        name = f["propertyName"]
        op = f["operator"]
        p = t.props.get(name)
        raw = rid if name in ("hs_object_id", "id") else props.get(name)
        if raw == "":
            raw = None
        if op == "HAS_PROPERTY":
            return raw is not None
        if op == "NOT_HAS_PROPERTY":
            return raw is None
        if name == "id":
            p = t.props["hs_object_id"]
        v = self.typed(p, raw)
        if op in ("IN", "NOT_IN"):
            vals = [self.typed(p, x) for x in f.get("values") or []]
            if op == "IN":
                return v is not None and v in vals
            return v is None or v not in vals
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            needle = str(f.get("value", "")).lower()
            hay = str(raw or "").lower()
            toks = [x for x in TOKEN_SPLIT.split(hay) if x] + [hay]
            if "*" in needle:
                hit = any(fnmatch.fnmatchcase(x, needle) for x in toks)
            else:
                hit = needle in toks
            hit = hit and raw is not None
            return hit if op == "CONTAINS_TOKEN" else not hit
        fv = self.typed(p, f.get("value"))
        if op == "EQ":
            return v is not None and v == fv
        if op == "NEQ":
            return v is None or v != fv
        if v is None or fv is None:
            return False
        if op == "LT":
            return v < fv
        if op == "LTE":
            return v <= fv
        if op == "GT":
            return v > fv
        if op == "GTE":
            return v >= fv
        if op == "BETWEEN":
            hv = self.typed(p, f.get("highValue"))
            return hv is not None and fv <= v <= hv
        return False

    OPS = {"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY",
           "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}

    def search(self, req, t):
        body = self.body_json(req, required=False) or {}
        if not isinstance(body, dict):
            raise HsError(400, "Invalid input JSON: expected an object", "VALIDATION_ERROR")
        groups = body.get("filterGroups") or []
        if not isinstance(groups, list):
            raise HsError(400, "Invalid input JSON: filterGroups must be a list", "VALIDATION_ERROR")
        if len(groups) > MAX_FILTER_GROUPS:
            raise HsError(400, "Too many filter groups: %d. The maximum is %d."
                          % (len(groups), MAX_FILTER_GROUPS), "VALIDATION_ERROR",
                          context={"filterGroups": [str(len(groups))]})
        total_f = 0
        for g in groups:
            fs = (g or {}).get("filters") or []
            total_f += len(fs)
            if len(fs) > MAX_FILTERS_PER_GROUP:
                raise HsError(400, "Too many filters in a filter group: %d. The maximum is %d."
                              % (len(fs), MAX_FILTERS_PER_GROUP), "VALIDATION_ERROR")
            for f in fs:
                if not isinstance(f, dict) or "propertyName" not in f:
                    raise HsError(400, "Invalid input JSON: filter needs propertyName",
                                  "VALIDATION_ERROR")
                op = f.get("operator", "EQ")
                f.setdefault("operator", "EQ")
                if op not in self.OPS:
                    raise HsError(400, "Invalid filter operator: %s" % op, "VALIDATION_ERROR")
                if f["propertyName"] not in t.props and f["propertyName"] != "id":
                    raise HsError(400, "There was a problem with the request. Property %s "
                                  "doesn't exist on %s" % (f["propertyName"], t.type_id),
                                  "VALIDATION_ERROR")
                if op in ("IN", "NOT_IN") and not isinstance(f.get("values"), list):
                    raise HsError(400, "operator %s requires values" % op, "VALIDATION_ERROR")
                if op == "BETWEEN" and "highValue" not in f:
                    raise HsError(400, "operator BETWEEN requires highValue", "VALIDATION_ERROR")
        if total_f > MAX_FILTERS_TOTAL:
            raise HsError(400, "Too many filters: %d. The maximum is %d."
                          % (total_f, MAX_FILTERS_TOTAL), "VALIDATION_ERROR")
        sorts = body.get("sorts") or []
        if len(sorts) > 1:
            raise HsError(400, "Only one sort is supported, got %d" % len(sorts),
                          "VALIDATION_ERROR")
        sort = None
        if sorts:
            s = sorts[0]
            if isinstance(s, str):
                sort = (s.lstrip("-"), s.startswith("-"))
            else:
                sort = (s.get("propertyName"), str(s.get("direction", "ASCENDING")).upper()
                        == "DESCENDING")
            if sort[0] not in t.props and sort[0] != "id":
                raise HsError(400, "Sort property %s doesn't exist on %s" % (sort[0], t.type_id),
                              "VALIDATION_ERROR")
        limit = body.get("limit", 10)
        try:
            limit = int(limit)
        except (TypeError, ValueError):
            raise HsError(400, "Invalid limit", "VALIDATION_ERROR")
        if limit < 0 or limit > MAX_SEARCH_LIMIT:
            raise HsError(400, "limit must be between 0 and %d (got %d)"
                          % (MAX_SEARCH_LIMIT, limit), "VALIDATION_ERROR")
        after = body.get("after") or 0
        try:
            after = int(after)
        except (TypeError, ValueError):
            raise HsError(400, "Invalid after: %s" % after, "VALIDATION_ERROR")
        if after >= SEARCH_CAP:
            raise HsError(400, "Paging past %d results is not supported: after=%d. Narrow the "
                          "search with filters." % (SEARCH_CAP, after), "VALIDATION_ERROR",
                          context={"after": [str(after)]})
        query = body.get("query")
        if query is not None and len(str(query)) > 3000:
            raise HsError(400, "query must be at most 3000 characters", "VALIDATION_ERROR")
        names = self.select_props(t, body.get("properties") or [])
        now_s = self.t()
        lag_s = float(self.emu.config.get("hubspot_search_lag_ms", 0) or 0) / 1000.0
        hits = []
        total = 0
        q = str(query).lower().strip() if query else None
        for rec in t.records.values():
            view = self.index_view(rec, now_s, lag_s)
            if view is None:
                continue
            props, updated, returnable = view
            if groups and not any(all(self.match_filter(t, f, props, rec.id)
                                      for f in (g.get("filters") or [])) for g in groups):
                continue
            if q and not any(q in str(props.get(n, "")).lower() for n in t.search_text):
                continue
            total += 1
            if returnable:
                hits.append((rec, props, updated))
        if sort:
            sp = t.props.get(sort[0]) if sort[0] != "id" else t.props["hs_object_id"]
            sname = sort[0]

            def key(h):
                raw = h[0].id if sname in ("id", "hs_object_id") else h[1].get(sname)
                v = self.typed(sp, raw)
                return (v is None, v if v is not None else 0, int(h[0].id))
            hits.sort(key=key)
            if sort[1]:
                nulls = [h for h in hits if key(h)[0]]
                vals = [h for h in hits if not key(h)[0]]
                vals.sort(key=lambda h: (key(h)[1], -int(h[0].id)), reverse=True)
                hits = vals + nulls
        else:
            hits.sort(key=lambda h: int(h[0].id))
        page = hits[after:min(after + limit, SEARCH_CAP)]
        out = {"total": total,
               "results": [self.render(t, r, names, props=p, updated=u) for r, p, u in page]}
        # like HubSpot, the cursor is offered even when it reaches the 10,000
        # cap, so a client that just follows it meets the 400 there
        if after + limit < len(hits):
            out["paging"] = {"next": {"after": str(after + limit)}}
        return 200, out

    # -- properties / schemas ---------------------------------------------
    def properties(self, req, rest):
        m = req.method
        t = self.resolve_type(rest[0])
        if len(rest) == 1:
            if m == "GET":
                if self.qbool(req, "archived"):
                    return 200, {"results": []}
                return 200, {"results": [t.props[n] for n in sorted(t.props)]}
            if m == "POST":
                body = self.body_json(req)
                p = self.new_property(t, body)
                return 201, p
        elif len(rest) == 2 and rest[1] != "groups":
            name = rest[1]
            p = t.props.get(name)
            if p is None:
                raise HsError(404, "Unable to find property %s on object type %s"
                              % (name, t.type_id), "OBJECT_NOT_FOUND")
            if m == "GET":
                return 200, p
            if m == "DELETE":
                if not p["modificationMetadata"]["archivable"]:
                    raise HsError(400, "Property %s is a HubSpot defined property and cannot be "
                                  "archived" % name, "VALIDATION_ERROR")
                del t.props[name]
                return 204, None
        elif len(rest) == 2 and m == "GET":
            groups = sorted({p["groupName"] for p in t.props.values()})
            return 200, {"results": [{"name": g, "label": _label(g), "displayOrder": i,
                                      "archived": False} for i, g in enumerate(groups)]}
        raise HsError(405, "method not allowed")

    def new_property(self, t, spec, hubspot=False):
        if not isinstance(spec, dict) or not spec.get("name") or not spec.get("type"):
            raise HsError(400, "Invalid input JSON: property needs name and type",
                          "VALIDATION_ERROR")
        if spec["name"] in t.props:
            raise HsError(409, "Property named '%s' already exists." % spec["name"], "CONFLICT")
        if spec["type"] not in ("string", "number", "date", "datetime", "enumeration", "bool",
                                "phone_number"):
            raise HsError(400, "Invalid property type %s" % spec["type"], "VALIDATION_ERROR")
        p = prop_def(spec["name"], spec["type"], spec.get("fieldType"), spec.get("label"),
                     spec.get("groupName", "%sinformation" % t.singular),
                     spec.get("options"), bool(spec.get("hasUniqueValue")),
                     bool(spec.get("readOnly", False)), bool(spec.get("calculated", False)),
                     hubspot=hubspot, description=spec.get("description", ""))
        ts = iso_ms_z(self.now())
        p["createdAt"] = p["updatedAt"] = ts
        t.props[p["name"]] = p
        return p

    def schema_of(self, t):
        return {"id": t.type_id.split("-")[1], "objectTypeId": t.type_id, "name": t.name,
                "fullyQualifiedName": "p%s_%s" % (PORTAL_ID, t.name), "labels": t.labels,
                "primaryDisplayProperty": t.primary, "requiredProperties": t.required,
                "searchableProperties": t.search_text, "secondaryDisplayProperties": [],
                "properties": [t.props[n] for n in sorted(t.props)],
                "associations": [], "archived": False,
                "createdAt": "2024-01-01T00:00:00.000Z", "updatedAt": "2024-01-01T00:00:00.000Z"}

    def schemas(self, req, rest):
        if req.method != "GET":
            raise HsError(405, "method not allowed")
        if not rest:
            return 200, {"results": [self.schema_of(t) for t in self.types.values() if t.custom]}
        t = self.resolve_type(rest[0])
        if not t.custom:
            raise HsError(404, "Unable to find object type %s" % rest[0], "OBJECT_NOT_FOUND")
        return 200, self.schema_of(t)

    # -- associations ------------------------------------------------------
    def assoc_types(self, ft, tt):
        lst = ASSOC.get((ft.name, tt.name))
        if lst is None:
            raise HsError(400, "No association types exist between %s and %s"
                          % (ft.type_id, tt.type_id), "VALIDATION_ERROR")
        return lst

    def v3_type_name(self, ft, tt, tid):
        for x in ASSOC.get((ft.name, tt.name), []):
            if x[0] == tid:
                return x[1]
        return str(tid)

    def inverse(self, ft, tt, tid):
        for x in self.assoc_types(ft, tt):
            if x[0] == tid:
                return x[3]
        raise HsError(400, "invalid association type id %s from %s to %s"
                      % (tid, ft.name, tt.name), "VALIDATION_ERROR")

    def add_assoc(self, ft, fid, tt, tid_obj, tid):
        inv = self.inverse(ft, tt, tid)
        self.assocs.setdefault((ft.type_id, fid, tt.type_id), {}).setdefault(tid_obj, set()).add(tid)
        self.assocs.setdefault((tt.type_id, tid_obj, ft.type_id), {}).setdefault(fid, set()).add(inv)

    def remove_assoc(self, ft, fid, tt, to_id, tids=None):
        d = self.assocs.get((ft.type_id, fid, tt.type_id), {})
        cur = d.get(to_id, set())
        drop = set(cur) if tids is None else (cur & set(tids))
        for tid in drop:
            cur.discard(tid)
            back = self.assocs.get((tt.type_id, to_id, ft.type_id), {}).get(fid)
            if back is not None:
                back.discard(self.inverse(ft, tt, tid))
                if not back:
                    del self.assocs[(tt.type_id, to_id, ft.type_id)][fid]
        if not cur and to_id in d:
            del d[to_id]

    def live_rec(self, t, rid):
        r = t.records.get(str(rid))
        return r if r is not None and not r.archived else None

    def assoc_label(self, ft, tt, tid):
        for x in self.assoc_types(ft, tt):
            if x[0] == tid:
                return x[2]
        return None

    def v4_types(self, ft, tt, tids):
        return [{"category": "HUBSPOT_DEFINED", "typeId": tid,
                 "label": self.assoc_label(ft, tt, tid)} for tid in sorted(tids)]

    def v4_list(self, ft, fid, tt):
        out = []
        for to_id, tids in sorted(self.assocs.get((ft.type_id, fid, tt.type_id), {}).items(),
                                  key=lambda x: int(x[0])):
            if tids and self.live_rec(tt, to_id):
                out.append({"toObjectId": int(to_id), "associationTypes": self.v4_types(ft, tt, tids)})
        return out

    def labels_pair(self, ft, fid, tt, to_id):
        tids = self.assocs.get((ft.type_id, fid, tt.type_id), {}).get(to_id, set())
        return {"fromObjectTypeId": ft.type_id, "fromObjectId": int(fid),
                "toObjectTypeId": tt.type_id, "toObjectId": int(to_id),
                "labels": [lab for lab in (self.assoc_label(ft, tt, x) for x in sorted(tids)) if lab]}

    def assoc_v4_object(self, req, rest):
        # /crm/v4/objects/{from}/{id}/associations/{to}[/{toId}]  or .../default/{to}/{toId}
        m = req.method
        ft = self.resolve_type(rest[0])
        fid = rest[1]
        tail = rest[3:]
        if len(tail) == 3 and tail[0] == "default" and m == "PUT":
            started = self.now()
            tt = self.resolve_type(tail[1])
            to_id = tail[2]
            if not self.live_rec(ft, fid) or not self.live_rec(tt, to_id):
                raise HsError(404, "No %s with id %s or %s with id %s exists"
                              % (ft.upper, fid, tt.upper, to_id), "OBJECT_NOT_FOUND")
            tid = self.assoc_types(ft, tt)[0][0]
            self.add_assoc(ft, fid, tt, to_id, tid)
            inv = self.inverse(ft, tt, tid)
            res = [{"from": {"id": fid}, "to": {"id": to_id},
                    "associationSpec": {"associationCategory": "HUBSPOT_DEFINED",
                                        "associationTypeId": tid}},
                   {"from": {"id": to_id}, "to": {"id": fid},
                    "associationSpec": {"associationCategory": "HUBSPOT_DEFINED",
                                        "associationTypeId": inv}}]
            return 200, self.batch_body(started, res, [])
        if len(tail) == 1 and m == "GET":
            tt = self.resolve_type(tail[0])
            if not self.live_rec(ft, fid):
                raise HsError(404, "No %s with id %s exists" % (ft.upper, fid), "OBJECT_NOT_FOUND")
            self.assoc_types(ft, tt)
            res = self.v4_list(ft, fid, tt)
            limit = int(req.q1("limit") or 500)
            start = int(req.q1("after") or 0)
            page = res[start:start + limit]
            body = {"results": page}
            if start + limit < len(res):
                nxt = str(start + limit)
                body["paging"] = {"next": {"after": nxt, "link": "%s%s?after=%s&limit=%d" % (
                    req.url_base, req.path, nxt, limit)}}
            return 200, body
        if len(tail) == 2:
            tt = self.resolve_type(tail[0])
            to_id = tail[1]
            if m == "PUT":
                types = self.body_json(req)
                if not isinstance(types, list) or not types:
                    raise HsError(400, "Invalid input JSON: expected a list of association types",
                                  "VALIDATION_ERROR")
                if not self.live_rec(ft, fid) or not self.live_rec(tt, to_id):
                    raise HsError(404, "No %s with id %s or %s with id %s exists"
                                  % (ft.upper, fid, tt.upper, to_id), "OBJECT_NOT_FOUND")
                for ty in types:
                    self.inverse(ft, tt, ty.get("associationTypeId"))
                for ty in types:
                    self.add_assoc(ft, fid, tt, to_id, ty["associationTypeId"])
                return 201, self.labels_pair(ft, fid, tt, to_id)
            if m == "DELETE":
                self.assoc_types(ft, tt)
                self.remove_assoc(ft, fid, tt, to_id)
                return 204, None
        raise HsError(404, "resource not found")

    def assoc_v4_batch(self, req, rest):
        # /crm/v4/associations/{from}/{to}/batch/{op}  |  /{from}/{to}/labels
        ft = self.resolve_type(rest[0])
        tt = self.resolve_type(rest[1])
        types = self.assoc_types(ft, tt)
        if rest[2] == "labels" and len(rest) == 3 and req.method == "GET":
            return 200, {"results": [{"category": "HUBSPOT_DEFINED", "typeId": x[0],
                                      "label": x[2]} for x in types]}
        if rest[2] != "batch" or req.method != "POST" or len(rest) < 4:
            raise HsError(404, "resource not found")
        op = "/".join(rest[3:])
        started = self.now()
        _, inputs = self.batch_inputs(req)
        results, errors, missing = [], [], []
        if op in ("create", "associate/default"):
            for inp in inputs:
                fid = str((inp.get("from") or {}).get("id", ""))
                to_id = str((inp.get("to") or {}).get("id", ""))
                if op == "create":
                    tys = inp.get("types") or []
                    if not tys:
                        raise HsError(400, "types is required", "VALIDATION_ERROR")
                    for ty in tys:
                        self.inverse(ft, tt, ty.get("associationTypeId"))
                    tids = [ty["associationTypeId"] for ty in tys]
                else:
                    tids = [types[0][0]]
                if not self.live_rec(ft, fid) or not self.live_rec(tt, to_id):
                    missing.append(fid if not self.live_rec(ft, fid) else to_id)
                    continue
                for tid in tids:
                    self.add_assoc(ft, fid, tt, to_id, tid)
                if op == "create":
                    results.append(self.labels_pair(ft, fid, tt, to_id))
                else:
                    results.append({"from": {"id": fid}, "to": {"id": to_id},
                                    "associationSpec": {"associationCategory": "HUBSPOT_DEFINED",
                                                        "associationTypeId": tids[0]}})
            if missing:
                errors.append({"status": "error", "category": "VALIDATION_ERROR",
                               "subCategory": "crm-associations.ASSOCIATION_OBJECT_NOT_FOUND",
                               "message": "One or more objects could not be found: %s"
                               % ", ".join(missing), "context": {"ids": missing}})
            code = 207 if errors else (201 if op == "create" else 200)
            return code, self.batch_body(started, results, errors)
        if op == "read":
            for inp in inputs:
                fid = str(inp.get("id", ""))
                if not self.live_rec(ft, fid):
                    missing.append(fid)
                    continue
                results.append({"from": {"id": fid}, "to": self.v4_list(ft, fid, tt)})
            if missing:
                errors.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                               "message": "No %s is associated with %s %s."
                               % (tt.upper, ft.upper, ", ".join(missing)),
                               "context": {"fromObjectId": missing}})
            return (207 if errors else 200), self.batch_body(started, results, errors)
        if op in ("archive", "labels/archive"):
            for inp in inputs:
                fid = str((inp.get("from") or {}).get("id", ""))
                tos = inp.get("to")
                tos = tos if isinstance(tos, list) else [tos or {}]
                tids = None
                if op == "labels/archive":
                    tids = [x.get("associationTypeId") for x in inp.get("types") or []]
                for to in tos:
                    self.remove_assoc(ft, fid, tt, str(to.get("id", "")), tids)
            return 204, None
        raise HsError(404, "resource not found")

    def assoc_v3_batch(self, req, ft, tt, op):
        started = self.now()
        _, inputs = self.batch_inputs(req)
        types = self.assoc_types(ft, tt)
        byname = {x[1]: x[0] for x in types}
        results, errors, missing = [], [], []
        if op in ("create", "archive"):
            for inp in inputs:
                fid = str((inp.get("from") or {}).get("id", ""))
                to_id = str((inp.get("to") or {}).get("id", ""))
                tname = inp.get("type")
                if tname not in byname:
                    raise HsError(400, "Invalid association type %s between %s and %s"
                                  % (tname, ft.name, tt.name), "VALIDATION_ERROR")
                tid = byname[tname]
                if op == "archive":
                    self.remove_assoc(ft, fid, tt, to_id, [tid])
                    continue
                if not self.live_rec(ft, fid) or not self.live_rec(tt, to_id):
                    missing.append(fid if not self.live_rec(ft, fid) else to_id)
                    continue
                self.add_assoc(ft, fid, tt, to_id, tid)
                inv = self.inverse(ft, tt, tid)
                results.append({"from": {"id": to_id}, "to": {"id": fid},
                                "type": self.v3_type_name(tt, ft, inv)})
                results.append({"from": {"id": fid}, "to": {"id": to_id}, "type": tname})
            if op == "archive":
                return 204, None
            if missing:
                errors.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                               "message": "Could not find objects: %s" % ", ".join(missing),
                               "context": {"ids": missing}})
            body = self.batch_body(started, [], errors)
            body["results"] = results      # both directions, as recorded
            return (207 if errors else 200), body      # 200, as recorded (spec: 201)
        if op == "read":
            for inp in inputs:
                fid = str(inp.get("id", ""))
                if not self.live_rec(ft, fid):
                    missing.append(fid)
                    continue
                to = []
                for x in self.v4_list(ft, fid, tt):
                    for ty in x["associationTypes"]:
                        to.append({"id": str(x["toObjectId"]),
                                   "type": self.v3_type_name(ft, tt, ty["typeId"])})
                results.append({"from": {"id": fid}, "to": to})
            if missing:
                errors.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                               "message": "Could not find objects: %s" % ", ".join(missing),
                               "context": {"ids": missing}})
            return (207 if errors else 200), self.batch_body(started, results, errors)
        raise HsError(404, "resource not found")

    # -- merge -------------------------------------------------------------
    def do_merge(self, t, primary_id, merged_id):
        """POST /crm/v3/objects/{type}/merge (and the UI's Merge): as HubSpot documents
        it since contacts and companies merge like the other objects (developer
        changelog, "Updated merge functionality for contacts and companies"): a new
        record with a new ID; both old IDs (and IDs merged into them before) resolve
        to it (GET, batch read, update) and leave listings and search; its values are
        the primary's, the secondary's filling the gaps; hs_merged_object_ids lists
        the merged IDs; both records' associations move to it."""
        for name, v in (("primaryObjectId", primary_id), ("objectIdToMerge", merged_id)):
            if v is None or str(v) == "":
                raise HsError(400, "Invalid input JSON: %s is required" % name, "VALIDATION_ERROR",
                              context={name: ["null"]})
        primary_id, merged_id = str(primary_id), str(merged_id)
        if primary_id == merged_id or t.merged.get(merged_id) == primary_id \
                or t.merged.get(primary_id) == merged_id:
            raise HsError(400, "Cannot merge %s %s into itself" % (t.singular, primary_id),
                          "VALIDATION_ERROR")
        recs = []
        for rid in (primary_id, merged_id):
            rec = t.records.get(rid)
            if rec is None or rec.archived:
                raise self.not_found(t, rid)
            recs.append(rec)
        p, sec = recs
        now = self.now()
        nid = self.new_id()
        props = {k: v for k, v in sec.props.items() if v not in (None, "")}
        props.update({k: v for k, v in p.props.items() if v not in (None, "")})
        earlier = [x for x in (p.props.get("hs_merged_object_ids", "") + ";" +
                               sec.props.get("hs_merged_object_ids", "")).split(";") if x]
        props["hs_merged_object_ids"] = ";".join([p.id, sec.id] + earlier)
        if t.name == "contacts":
            vids = [x for x in (p.props.get("hs_all_contact_vids", "") + ";" +
                                sec.props.get("hs_all_contact_vids", "")).split(";") if x]
            props["hs_all_contact_vids"] = ";".join(vids + [nid])
        rec = Rec(nid, props, min(p.created, sec.created))
        rec.updated = now
        rec.written = self.t()
        del t.records[p.id]
        del t.records[sec.id]
        t.records[nid] = rec
        self.derive(t, rec, None)
        for old_id in [k for k, v in t.merged.items() if v in (p.id, sec.id)] + [p.id, sec.id]:
            t.merged[old_id] = nid
        # associations: both records' move to the new one (the primary's first)
        for old in (p, sec):
            for key in [k for k in self.assocs if k[0] == t.type_id and k[1] == old.id]:
                tt = self.types[key[2]]
                for to_id, tids in list(self.assocs[key].items()):
                    for tid in sorted(tids):
                        self.remove_assoc(t, old.id, tt, to_id, [tid])
                        if to_id in (p.id, sec.id):
                            continue
                        label = self.assoc_label(t, tt, tid)
                        if label == "Primary" and old is sec and any(
                                tid in v for v in self.assocs.get((t.type_id, nid, tt.type_id),
                                                                  {}).values()):
                            continue      # one primary: the primary record's
                        self.add_assoc(t, nid, tt, to_id, tid)
                if not self.assocs.get(key):
                    self.assocs.pop(key, None)
        return rec

    # -- control hooks -----------------------------------------------------
    def _ctl_type(self, obj):
        try:
            return self.resolve_type(obj)
        except HsError:
            raise KeyError(obj)

    def control_create(self, obj, records):
        with self.lock:
            t = self._ctl_type(obj)
            plans = []
            pending = {}
            for i, r in enumerate(records):
                if not isinstance(r, dict):
                    raise ValueError("records must be JSON objects")
                props = r.get("properties") if isinstance(r.get("properties"), dict) else r
                changes, problems = self.check_props(t, {k: v for k, v in props.items()
                                                         if k != "hs_object_id"},
                                                     allow_read_only=True)
                if problems:
                    p = problems[0]
                    raise ValueError("%s: %s (record %d)" % (p["error"], p["message"], i))
                c = self.conflict_for(t, changes, None, pending)
                if c:
                    raise ValueError("CONFLICT: %s (record %d)" % (self.conflict_message(t, c), i))
                for k in (["email"] if t.name == "contacts" else []) + t.unique_props():
                    if changes.get(k):
                        pending[(k, changes[k].lower() if k == "email" else changes[k])] = "new"
                plans.append(changes)
            now = self.now()
            return [self.do_create(t, c, now, source="CRM_UI").id for c in plans]

    def ctl_render(self, t, rec):
        d = {"id": rec.id, "properties": dict(sorted(rec.props.items())),
             "createdAt": iso_ms_z(rec.created), "updatedAt": iso_ms_z(rec.updated),
             "archived": rec.archived}
        if rec.archived:
            d["archivedAt"] = iso_ms_z(rec.archived_at)
        return d

    def control_list(self, obj):
        with self.lock:
            t = self._ctl_type(obj)
            return [self.ctl_render(t, t.records[str(i)])
                    for i in sorted(int(r.id) for r in t.records.values() if not r.archived)]

    def control_patch(self, obj, rid, fields):
        with self.lock:
            t = self._ctl_type(obj)
            rec = t.records.get(str(rid))
            if rec is None or rec.archived:
                raise KeyError(rid)
            props = fields.get("properties") if isinstance(fields.get("properties"), dict) \
                else fields
            changes, problems = self.check_props(t, {k: v for k, v in props.items()
                                                     if k not in ("hs_object_id", t.create_prop)},
                                                 allow_read_only=True)
            if problems:
                raise ValueError("%s: %s" % (problems[0]["error"], problems[0]["message"]))
            c = self.conflict_for(t, changes, rec.id)
            if c:
                raise ValueError("CONFLICT: %s" % self.conflict_message(t, c))
            self.do_update(t, rec, changes, self.now())
            return self.ctl_render(t, rec)

    def control_delete(self, obj, rid):
        """Archives the record (what a user's delete does); not a GDPR purge."""
        with self.lock:
            t = self._ctl_type(obj)
            rec = t.records.get(str(rid))
            if rec is None or rec.archived:
                raise KeyError(rid)
            self.do_archive(t, rec, self.now())

    def control(self, method, parts, query, body):
        """/__emulator/hubspot/purge/{object}/{id}: hard (GDPR-style) delete, no trace.
        /__emulator/hubspot/restore/{object}/{id}: un-archive.
        /__emulator/hubspot/usage: rate-limit counters."""
        with self.lock:
            if method == "POST" and len(parts) == 3 and parts[0] in ("purge", "restore"):
                t = self._ctl_type(parts[1])
                rec = t.records.get(parts[2])
                if rec is None:
                    raise KeyError(parts[2])
                if parts[0] == "purge":
                    del t.records[parts[2]]
                    for key in [k for k in self.assocs if k[1] == parts[2] and k[0] == t.type_id]:
                        for to_id in list(self.assocs[key]):
                            self.assocs.get((key[2], to_id, key[0]), {}).pop(parts[2], None)
                        del self.assocs[key]
                    return json_response(200, {"purged": parts[2]})
                if not rec.archived:
                    raise ValueError("record %s is not archived" % parts[2])
                rec.prev = (rec.props, rec.updated, True)
                rec.archived = False
                rec.archived_at = None
                rec.updated = self.now()
                rec.written = self.t()
                self.derive(t, rec, None)
                return json_response(200, self.ctl_render(t, rec))
            if method == "POST" and parts == ["merge"]:
                b = json.loads(body) if body else {}
                if not isinstance(b, dict):
                    raise ValueError("body must be a JSON object")
                t = self._ctl_type(str(b.get("object", "")))
                try:
                    rec = self.do_merge(t, b.get("primary"), b.get("merged"))
                except HsError as e:
                    if e.status == 404:
                        raise KeyError(str(e.message))
                    raise ValueError(e.message)
                return json_response(200, self.ctl_render(t, rec))
            if method == "GET" and parts == ["usage"]:
                now = self.t()
                return json_response(200, {
                    "daily": self.daily.get(int(now // 86400), 0),
                    "ten_secondly": {k: len(self._window(self.ten_s, k, now, 10.0))
                                     for k in list(self.ten_s)},
                    "search_secondly": {k: len(self._window(self.search_s, k, now, 1.0))
                                        for k in list(self.search_s)}})
        return None

    def load_seed(self, seed):
        with self.lock:
            if not isinstance(seed, dict):
                raise ValueError("hubspot seed must be an object")
            for o in seed.get("objects", []):
                tid = o["objectTypeId"]
                if not re.fullmatch(r"2-\d+", tid):
                    raise ValueError("custom objectTypeId must look like 2-123456: %r" % tid)
                name = o["name"]
                t = ObjType(tid, name, o.get("singular", name), "hs_createdate",
                            "hs_lastmodifieddate",
                            _std_props("hs_createdate", "hs_lastmodifieddate",
                                       "%s_information" % name, []),
                            [], custom=True, labels=o.get("labels"),
                            primary=o.get("primaryDisplayProperty"),
                            required=o.get("requiredProperties", []))
                self.types[tid] = t
                for p in o.get("properties", []):
                    self.new_property(t, p)
                t.defaults = sorted(set(["hs_createdate", "hs_lastmodifieddate", "hs_object_id"]
                                        + ([t.primary] if t.primary else [])))
                t.search_text = o.get("searchableProperties") or (
                    [t.primary] if t.primary else [])
            for tname, props in (seed.get("properties") or {}).items():
                t = self.resolve_type(tname)
                for p in props:
                    self.new_property(t, p)
            for tname, recs in (seed.get("records") or {}).items():
                self.control_create(tname, recs)
            for tok in seed.get("private_app_tokens", []):
                self.tokens[tok] = {"kind": "private", "app": "private-app", "expires": None}
