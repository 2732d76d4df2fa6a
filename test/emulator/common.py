"""Shared plumbing for the emulator's three API modules.

The server (emulator.py) parses each HTTP request into a Request, applies
faults and logging, and hands it to the first Api whose ``owns(path)`` is
true.  An Api answers with a Response.  All state lives in memory and is
guarded by one re-entrant lock per Api (``self.lock``).

Contract for an API module (salesforce.py, hubspot.py, netsuite.py): it
defines ``class Api(ApiBase)`` with ``name`` set to its control-API name
('salesforce', 'hubspot', 'netsuite') and implements ``owns``, ``handle``,
``reset`` and the four control hooks.
"""
import json
import threading
import time
from datetime import datetime, timezone

# Defaults for POST /__emulator/config.  Modules read them through
# ``self.emu.config``; the server owns the dict and resets it on /reset.
DEFAULT_CONFIG = {
    "token_ttl_s": 7200,             # Salesforce/HubSpot/NetSuite access tokens
    "salesforce_daily_limit": 1000000,
    "salesforce_query_locator_ttl_s": 900,   # INVALID_QUERY_LOCATOR after this
    "salesforce_delete_log_purged_before": None,  # ISO stamp: getDeleted purge knob
    "hubspot_per_10s": 190,
    "hubspot_daily": 1000000,
    "hubspot_search_per_s": 5,
    "hubspot_search_lag_ms": 0,
    "netsuite_concurrency": 5,
    "netsuite_deletedrecord": True,          # SuiteQL table deletedrecord exists
    "netsuite_user_timezone": "America/Los_Angeles",  # SuiteQL dates (IANA name)
    "netsuite_expires_in_number": False,     # M2M expires_in: 3600, not "3600"
    "netsuite_async_delay_ms": 0,            # async jobs stay "pending" this long
    "salesforce_cdc_entities": [],           # objects selected for Change Data Capture
    "salesforce_cometd_timeout_ms": 110000,  # how long /meta/connect is held
    "salesforce_cdc_overflow_threshold": 100000,  # changes per transaction before GAP_OVERFLOW
}


class Request:
    """One parsed HTTP request.

    method: 'GET', 'POST', ...; path: URL path without query, percent-decoding
    NOT applied (modules unquote segments themselves where the API does);
    query: dict name -> list of values (urllib.parse.parse_qs, keep_blank_values);
    raw_query: the query string as received; headers: dict with lower-case
    names; body: bytes; inflight: how many requests to the same Api are being
    served right now, this one included (for NetSuite's concurrency limit);
    url_base: 'http(s)://host:port' as the client reached us (for instance_url,
    Location headers and nextRecordsUrl-style links).
    """

    def __init__(self, method, path, query, raw_query, headers, body,
                 inflight=1, url_base="http://127.0.0.1"):
        self.method = method
        self.path = path
        self.query = query
        self.raw_query = raw_query
        self.headers = headers
        self.body = body
        self.inflight = inflight
        self.url_base = url_base

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def json(self):
        """Parsed JSON body; raises ValueError on a body that is not JSON."""
        if not self.body:
            raise ValueError("empty body")
        return json.loads(self.body.decode("utf-8"))

    def q1(self, name, default=None):
        """First value of a query parameter."""
        v = self.query.get(name)
        return v[0] if v else default


class Response:
    def __init__(self, status, body=b"", headers=None):
        self.status = status
        self.body = body if isinstance(body, bytes) else body.encode("utf-8")
        self.headers = list(headers or [])   # [(name, value), ...]

    def add_header(self, name, value):
        self.headers.append((name, str(value)))
        return self


def json_response(status, obj, headers=None, content_type="application/json;charset=UTF-8"):
    body = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    return Response(status, body, [("Content-Type", content_type)] + list(headers or []))


def empty_response(status, headers=None):
    return Response(status, b"", headers)


class ApiBase:
    name = None

    def __init__(self, emu):
        self.emu = emu              # the server: .config (dict), .now() (aware UTC
                                    # datetime), .time() (epoch seconds); both
                                    # follow POST /__emulator/clock
        self.lock = threading.RLock()

    def owns(self, path):
        raise NotImplementedError

    def handle(self, req):
        raise NotImplementedError

    def reset(self):
        raise NotImplementedError

    # control API (/__emulator/records/{api}/{object}[/{id}]): act as a
    # remote user would, so stamps move and delete feeds see tombstones.
    # Each raises KeyError for an unknown object or id.
    def control_create(self, obj, records):
        """Create records; return their ids in input order."""
        raise NotImplementedError

    def control_list(self, obj):
        """Every live record of obj, as dicts including server fields."""
        raise NotImplementedError

    def control_patch(self, obj, rid, fields):
        """Edit one record; return it as control_list would."""
        raise NotImplementedError

    def control_delete(self, obj, rid):
        raise NotImplementedError

    def control(self, method, parts, query, body):
        """Optional API-specific control endpoints: /__emulator/{name}/{parts...}.
        parts: path segments after the API name (unquoted); query: parse_qs
        dict; body: raw bytes.  Return a Response, or None for 404.  Raise
        KeyError for an unknown object/id (404) or ValueError (400)."""
        return None

    def fault_response(self, status, req):
        """The body this API answers when a fault of kind "status" fires
        (POST /__emulator/faults).  Override to use the API's own error
        format; the server adds Retry-After itself.  Generic default."""
        return json_response(status, {"error": "injected_fault", "status": status,
                                      "message": "fault injected by the emulator"})

    def load_seed(self, seed):
        """Apply this API's part of a --seed file (custom objects, fields,
        records); the format is the module's own, documented in README."""


def utc_now():
    return datetime.now(timezone.utc)


def sf_stamp(dt):
    """Salesforce datetime: 2026-05-06T11:56:44.000+0000."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03d+0000" % (dt.microsecond // 1000)


def iso_ms_z(dt):
    """HubSpot datetime: 2026-05-06T11:56:44.123Z."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


def epoch_ms(dt):
    return int(dt.timestamp() * 1000)
