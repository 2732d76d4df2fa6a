#!/usr/bin/env python3
"""sync test emulator: Salesforce, HubSpot and NetSuite REST APIs in one process.

    python3 test/emulator/emulator.py [--host 127.0.0.1] [--port 0]
                                      [--tls-cert F --tls-key F] [--seed FILE]

The first stdout line is ``emulator listening on http(s)://127.0.0.1:PORT``.
Runs until SIGTERM/SIGINT (exit status 0).  See README.md for the control API
(/__emulator/...), faults and the request log.

Standard library only.  The HTTP/1.1 layer is written by hand on top of
socketserver (one thread per connection, keep-alive, optional TLS, each
response sent in one write with TCP_NODELAY) because http.server is several
times slower and stalls on Nagle/delayed-ACK with keep-alive.
"""
import argparse
import collections
import importlib
import ipaddress
import json
import os
import random
import re
import select
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import traceback
import urllib.parse
from email.utils import formatdate

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import common  # noqa: E402
import hostile  # noqa: E402
from common import DEFAULT_CONFIG, Request, Response, json_response  # noqa: E402

API_MODULES = ("salesforce", "hubspot", "netsuite")
CONTROL_PREFIX = "/__emulator/"

# Request log bounds: oldest entries are dropped beyond these.
LOG_MAX_ENTRIES = 200000
LOG_MAX_BODY_BYTES = 256 * 1024 * 1024

SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie",
                  "x-api-key", "x-hubspot-api-key", "api-key", "x-auth-token"}
SECRET_FIELDS = {"client_secret", "refresh_token", "assertion", "password",
                 "client_assertion", "access_token", "code", "code_verifier",
                 "token_secret", "consumer_secret"}
REDACTED = "[redacted]"

REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
    207: "Multi-Status", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Found", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 408: "Request Timeout", 409: "Conflict", 410: "Gone",
    411: "Length Required", 412: "Precondition Failed", 413: "Payload Too Large",
    414: "URI Too Long", 415: "Unsupported Media Type", 422: "Unprocessable Entity",
    429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}

FAULT_KEYS = {"api", "path", "method", "status", "retry_after", "latency_ms", "kind",
              "count", "probability", "seed", "process", "case"}
FAULT_KINDS = ("status", "timeout", "reset", "malformed", "hostile")
TIMEOUT_MAX_S = 300.0


class BadRequest(Exception):
    pass


class _DateCache:
    """RFC 7231 Date header, formatted once per second, on the emulator's
    clock (the control API's offset): a real server's Date and the times in
    its answers come from one clock, and clients compare them (sync
    calibrates SuiteQL's zone from the Date header)."""

    def __init__(self):
        self.sec = None
        self.value = None

    def get(self, offset=0.0):
        now = int(time.time() + offset)
        if now != self.sec:
            self.value = formatdate(now, usegmt=True)
            self.sec = now
        return self.value


_date = _DateCache()


def encode_response(resp, keep_alive, head_only=False, clock_offset=0.0):
    """Status line + headers + body as one bytes object."""
    status = resp.status
    lines = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status"))]
    have = set()
    for name, value in resp.headers:
        have.add(name.lower())
        lines.append("%s: %s" % (name, value))
    if "date" not in have:
        lines.append("Date: " + _date.get(clock_offset))
    if status >= 200 and status not in (204, 304):
        lines.append("Content-Length: %d" % len(resp.body))
    if not keep_alive:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if head_only or status in (204, 304):
        return head
    return head + resp.body


class Fault:
    def __init__(self, spec, fid):
        unknown = set(spec) - FAULT_KEYS
        if unknown:
            raise BadRequest("unknown fault keys: %s" % ", ".join(sorted(unknown)))
        self.id = fid
        self.spec = dict(spec)
        self.api = spec.get("api")
        self.method = spec.get("method")
        if self.method is not None:
            self.method = str(self.method).upper()
        self.path = spec.get("path")
        try:
            self.path_re = re.compile(self.path) if self.path else None
        except re.error as e:
            raise BadRequest("bad path regex: %s" % e)
        self.kind = spec.get("kind")
        self.latency_ms = spec.get("latency_ms")
        self.status = spec.get("status")
        if self.kind is None and self.status is not None:
            self.kind = "status"
        if self.kind is None and self.latency_ms is None:
            raise BadRequest("a fault needs kind (or status) and/or latency_ms")
        if self.kind is not None and self.kind not in FAULT_KINDS:
            raise BadRequest("kind must be one of %s" % ", ".join(FAULT_KINDS))
        if self.kind == "status":
            if not isinstance(self.status, int) or not 100 <= self.status <= 599:
                raise BadRequest("kind status needs an integer status 100-599")
        self.case = spec.get("case")
        if self.kind == "hostile" and self.case not in hostile.CASES:
            raise BadRequest("kind hostile needs a case, one of %s" % ", ".join(hostile.CASES))
        if self.case is not None and self.kind != "hostile":
            raise BadRequest("case is only for kind hostile")
        if self.latency_ms is not None and (not isinstance(self.latency_ms, (int, float))
                                            or self.latency_ms < 0):
            raise BadRequest("latency_ms must be a non-negative number")
        self.retry_after = spec.get("retry_after")
        self.count = spec.get("count")
        if self.count is not None and (not isinstance(self.count, int) or self.count < 1):
            raise BadRequest("count must be a positive integer")
        self.probability = spec.get("probability")
        if self.probability is not None:
            if not isinstance(self.probability, (int, float)) or not 0 <= self.probability <= 1:
                raise BadRequest("probability must be between 0 and 1")
        self.rng = random.Random(spec.get("seed"))
        self.process = bool(spec.get("process", False))
        self.applied = 0

    def matches(self, api_name, method, path):
        if self.api is not None and self.api != api_name:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.path_re is not None and not self.path_re.search(path):
            return False
        return True

    def describe(self):
        d = dict(self.spec)
        d["id"] = self.id
        if self.count is not None:
            d["count"] = self.count
        d["applied"] = self.applied
        return d


class Emulator:
    """All state of the running emulator; the HTTP layer calls serve()."""

    def __init__(self, seed_file=None, scheme="http"):
        self.scheme = scheme
        self.seed_file = seed_file
        self.config = dict(DEFAULT_CONFIG)
        self.clock_offset = 0.0
        self.apis = []
        self.api_by_name = {}
        self.inflight = {}
        self.inflight_lock = threading.Lock()
        self.fault_lock = threading.Lock()
        self.faults = []
        self.fault_seq = 0
        self.log_lock = threading.Lock()
        self.log = collections.deque()
        self.log_bytes = 0
        self.log_seq = 0
        self.stopping = threading.Event()
        for modname in API_MODULES:
            try:
                mod = importlib.import_module(modname)
            except ModuleNotFoundError as e:
                if e.name != modname:
                    raise
                sys.stderr.write("emulator: note: %s.py not found, %s API disabled\n"
                                 % (modname, modname))
                continue
            api = mod.Api(self)
            name = api.name or modname
            self.apis.append(api)
            self.api_by_name[name] = api
            self.inflight[name] = 0
        self.reset()

    # -- clock -------------------------------------------------------------
    def now(self):
        """Current UTC time as the APIs see it (control API can advance it)."""
        dt = common.utc_now()
        if self.clock_offset:
            from datetime import timedelta
            dt = dt + timedelta(seconds=self.clock_offset)
        return dt

    def time(self):
        return time.time() + self.clock_offset

    # -- reset / seed ------------------------------------------------------
    def reset(self):
        with self.fault_lock:
            self.faults = []
        with self.log_lock:
            self.log.clear()
            self.log_bytes = 0
        self.config.clear()
        self.config.update(DEFAULT_CONFIG)
        self.clock_offset = 0.0
        for api in self.apis:
            api.reset()
        if self.seed_file:
            self.apply_seed_file(self.seed_file)

    def apply_seed_file(self, path):
        with open(path, encoding="utf-8") as f:
            seed = json.load(f)
        if not isinstance(seed, dict):
            raise ValueError("seed file must hold a JSON object")
        for name, part in seed.items():
            api = self.api_by_name.get(name)
            if api is None:
                sys.stderr.write("emulator: note: seed for unknown/disabled api %r ignored\n"
                                 % name)
                continue
            api.load_seed(part)

    # -- request log -------------------------------------------------------
    def log_append(self, entry):
        with self.log_lock:
            self.log_seq += 1
            entry[0] = self.log_seq
            self.log.append(entry)
            self.log_bytes += len(entry[7])
            while self.log and (len(self.log) > LOG_MAX_ENTRIES
                                or self.log_bytes > LOG_MAX_BODY_BYTES):
                old = self.log.popleft()
                self.log_bytes -= len(old[7])

    @staticmethod
    def render_log_entry(e):
        seq, t, api, method, path, raw_query, headers, body, status, inflight, done = e
        hdrs = {}
        for k, v in headers.items():
            hdrs[k] = REDACTED if k in SECRET_HEADERS else v
        ctype = headers.get("content-type", "").lower()
        parsed = None
        if body:
            text = body.decode("utf-8", "replace")
            if "x-www-form-urlencoded" in ctype:
                pairs = urllib.parse.parse_qsl(text, keep_blank_values=True)
                if any(k in SECRET_FIELDS for k, _ in pairs):
                    pairs = [(k, REDACTED if k in SECRET_FIELDS else v) for k, v in pairs]
                    text = urllib.parse.urlencode(pairs, safe="[]")
                parsed = text
            else:
                try:
                    parsed = json.loads(text)
                    if isinstance(parsed, dict):
                        for k in list(parsed):
                            if k in SECRET_FIELDS:
                                parsed[k] = REDACTED
                except ValueError:
                    parsed = text
        q = raw_query
        if q and any(s in q for s in SECRET_FIELDS):
            pairs = urllib.parse.parse_qsl(q, keep_blank_values=True)
            if any(k in SECRET_FIELDS for k, _ in pairs):
                q = urllib.parse.urlencode(
                    [(k, REDACTED if k in SECRET_FIELDS else v) for k, v in pairs], safe="[]")
        return {"seq": seq, "time": t, "api": api, "method": method, "path": path,
                "query": q, "headers": hdrs, "body": parsed, "status": status,
                "inflight": inflight, "done": done}

    # -- faults ------------------------------------------------------------
    def pick_fault(self, api_name, method, path):
        if not self.faults:
            return None
        with self.fault_lock:
            for f in self.faults:
                if not f.matches(api_name, method, path):
                    continue
                if f.probability is not None and f.rng.random() >= f.probability:
                    continue
                f.applied += 1
                if f.count is not None:
                    f.count -= 1
                    if f.count <= 0:
                        self.faults.remove(f)
                return f
        return None

    # -- dispatch ----------------------------------------------------------
    def find_api(self, path):
        for api in self.apis:
            if api.owns(path):
                return api
        return None

    def serve(self, conn, method, target, headers, body):
        """Answer one request.  conn: the connection handler (send/hang/reset).
        Returns False when the connection must be closed."""
        path, _, raw_query = target.partition("?")
        if path.startswith("http://") or path.startswith("https://"):
            u = urllib.parse.urlsplit(path)
            path = u.path or "/"
        if path.startswith(CONTROL_PREFIX) or path == CONTROL_PREFIX[:-1]:
            try:
                resp = self.control(method, path, raw_query, headers, body)
            except BadRequest as e:
                resp = json_response(400, {"error": str(e)})
            except Exception as e:  # pragma: no cover - a bug
                traceback.print_exc()
                resp = json_response(500, {"error": "%s: %s" % (type(e).__name__, e)})
            return conn.send_response(resp)

        arrival = time.time()
        api = self.find_api(path)
        api_name = api.name if api is not None else None
        # the last slots: requests to the same API in flight at this one's
        # arrival, itself included, and when its response was written (tests
        # check a client's concurrency limit by them)
        entry = [0, arrival, api_name, method, path, raw_query, headers, body, None, None, None]
        self.log_append(entry)
        if api_name is not None:
            with self.inflight_lock:
                self.inflight[api_name] += 1
                inflight = self.inflight[api_name]
            entry[9] = inflight
        released = []

        def release():
            # a request stops counting when its response is written, not
            # after: the client may send its next one at once
            if api_name is not None and not released:
                released.append(True)
                entry[10] = time.time()
                with self.inflight_lock:
                    self.inflight[api_name] -= 1
        try:
            fault = self.pick_fault(api_name, method, path)
            if fault is not None and fault.latency_ms:
                self.stopping.wait(fault.latency_ms / 1000.0)
            host = headers.get("host") or "%s:%d" % conn.server_address
            req = Request(method, path, urllib.parse.parse_qs(raw_query, keep_blank_values=True),
                          raw_query, headers, body, inflight=inflight if api else 1,
                          url_base="%s://%s" % (self.scheme, host))
            kind = fault.kind if fault is not None else None
            if kind == "hostile":
                resp = hostile.respond(fault.case, api, req, self.dispatch)
                entry[8] = resp.status
                release()
                return conn.send_response(resp)
            if kind == "status":
                if api is not None:
                    resp = api.fault_response(fault.status, req)
                else:
                    resp = common.ApiBase.fault_response(None, fault.status, req)
                if fault.retry_after is not None:
                    resp.add_header("Retry-After", fault.retry_after)
                entry[8] = resp.status
                release()
                return conn.send_response(resp)
            if kind in ("timeout", "reset", "malformed"):
                resp = None
                if fault.process:
                    resp = self.dispatch(api, req)
                if kind == "timeout":
                    entry[8] = "timeout"
                    conn.hang(TIMEOUT_MAX_S)
                    return False
                if kind == "reset":
                    entry[8] = "reset"
                    if resp is None:
                        resp = json_response(200, {"partial": "x" * 64})
                    data = encode_response(resp, True, clock_offset=self.clock_offset)
                    conn.reset(data[:max(1, len(data) // 2)])
                    return False
                # malformed: 200 with a truncated JSON body
                if resp is not None and resp.body:
                    body_out = resp.body[:max(1, len(resp.body) // 2)]
                else:
                    body_out = b'[{"id":"001000000000000AAA","success":tr'
                bad = Response(200, body_out, [("Content-Type", "application/json;charset=UTF-8")])
                entry[8] = 200
                release()
                return conn.send_response(bad)
            resp = self.dispatch(api, req)
            entry[8] = resp.status
            release()
            return conn.send_response(resp)
        finally:
            release()

    def dispatch(self, api, req):
        if api is None:
            return json_response(404, {"error": "not_found",
                                       "message": "no emulated API serves %s" % req.path})
        try:
            return api.handle(req)
        except Exception as e:
            traceback.print_exc()
            return json_response(500, {"error": "emulator_bug",
                                       "message": "%s: %s" % (type(e).__name__, e)})

    # -- control API -------------------------------------------------------
    def control(self, method, path, raw_query, headers, body):
        parts = [urllib.parse.unquote(p) for p in path[len(CONTROL_PREFIX):].split("/") if p]
        query = urllib.parse.parse_qs(raw_query, keep_blank_values=True)

        def jbody(default=None):
            if not body:
                if default is not None:
                    return default
                raise BadRequest("JSON body required")
            try:
                return json.loads(body.decode("utf-8"))
            except ValueError as e:
                raise BadRequest("body is not JSON: %s" % e)

        if not parts:
            raise BadRequest("unknown control endpoint")
        head = parts[0]
        if head == "reset" and method == "POST":
            self.reset()
            return json_response(200, {"reset": True})
        if head == "health" and method == "GET":
            return json_response(200, {"ok": True, "apis": [a.name for a in self.apis]})
        if head == "config":
            if method == "GET":
                return json_response(200, self.config)
            if method in ("POST", "PATCH"):
                upd = jbody()
                if not isinstance(upd, dict):
                    raise BadRequest("config body must be a JSON object")
                unknown = [k for k in upd if k not in DEFAULT_CONFIG]
                if unknown:
                    raise BadRequest("unknown config keys: %s" % ", ".join(unknown))
                self.config.update(upd)
                return json_response(200, self.config)
        if head == "clock":
            if method == "GET":
                return json_response(200, {"offset_s": self.clock_offset,
                                           "now": common.sf_stamp(self.now())})
            if method == "POST":
                b = jbody()
                if not isinstance(b, dict) or not set(b) <= {"advance_s", "offset_s"}:
                    raise BadRequest("body: {\"advance_s\": N} or {\"offset_s\": N}")
                if "offset_s" in b:
                    self.clock_offset = float(b["offset_s"])
                if "advance_s" in b:
                    self.clock_offset += float(b["advance_s"])
                return json_response(200, {"offset_s": self.clock_offset,
                                           "now": common.sf_stamp(self.now())})
        if head == "hostile" and len(parts) == 1 and method == "GET":
            return json_response(200, [{"case": k, "processed": v[0], "description": v[1]}
                                       for k, v in hostile.CASES.items()])
        if head == "faults" and len(parts) == 1:
            if method == "GET":
                with self.fault_lock:
                    return json_response(200, [f.describe() for f in self.faults])
            if method == "POST":
                spec = jbody()
                specs = spec if isinstance(spec, list) else [spec]
                new = []
                for s in specs:
                    if not isinstance(s, dict):
                        raise BadRequest("a fault is a JSON object")
                    with self.fault_lock:
                        self.fault_seq += 1
                        fid = self.fault_seq
                    new.append(Fault(s, fid))
                with self.fault_lock:
                    self.faults.extend(new)
                    return json_response(200, [f.describe() for f in self.faults])
            if method == "DELETE":
                with self.fault_lock:
                    self.faults = []
                return json_response(200, [])
        if head == "requests" and len(parts) == 1:
            if method == "GET":
                api_f = query.get("api", [None])[0]
                since = int(query.get("since", ["0"])[0] or 0)
                with self.log_lock:
                    entries = list(self.log)
                out = [self.render_log_entry(e) for e in entries
                       if e[0] > since and (api_f is None or e[2] == api_f)]
                return json_response(200, out)
            if method == "DELETE":
                with self.log_lock:
                    self.log.clear()
                    self.log_bytes = 0
                return json_response(200, [])
        if head == "records" and len(parts) in (3, 4):
            api = self.api_by_name.get(parts[1])
            if api is None:
                return json_response(404, {"error": "unknown api %r" % parts[1]})
            obj = parts[2]
            try:
                if len(parts) == 3:
                    if method == "GET":
                        return json_response(200, api.control_list(obj))
                    if method == "POST":
                        recs = jbody()
                        if isinstance(recs, dict):
                            recs = [recs]
                        if not isinstance(recs, list):
                            raise BadRequest("body must be a JSON array of records")
                        ids = api.control_create(obj, recs)
                        return json_response(201, {"ids": ids})
                else:
                    rid = parts[3]
                    if method == "GET":
                        for r in api.control_list(obj):
                            if str(r.get("Id", r.get("id"))) == rid:
                                return json_response(200, r)
                        raise KeyError(rid)
                    if method == "PATCH":
                        fields = jbody()
                        if not isinstance(fields, dict):
                            raise BadRequest("body must be a JSON object")
                        return json_response(200, api.control_patch(obj, rid, fields))
                    if method == "DELETE":
                        api.control_delete(obj, rid)
                        return json_response(200, {"deleted": rid})
            except KeyError as e:
                return json_response(404, {"error": "not found: %s" % (e.args[0] if e.args else "")})
            except (ValueError, TypeError) as e:
                raise BadRequest(str(e))
        # API-specific control endpoints: /__emulator/{api}/...
        api = self.api_by_name.get(head)
        if api is not None:
            try:
                resp = api.control(method, parts[1:], query, body)
                if resp is not None:
                    return resp
            except KeyError as e:
                return json_response(404, {"error": "not found: %s" % (e.args[0] if e.args else "")})
            except (ValueError, TypeError) as e:
                raise BadRequest(str(e))
        return json_response(404, {"error": "unknown control endpoint %s %s" % (method, path)})


class Connection(socketserver.BaseRequestHandler):
    """One client connection: parse HTTP/1.1 requests, keep-alive loop."""

    def setup(self):
        self.sock = self.request
        self.emu = self.server.emu
        self.server_address = self.server.server_address[:2]
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def handle(self):
        if self.server.ssl_context is not None:
            try:
                self.sock.settimeout(30)
                self.sock = self.server.ssl_context.wrap_socket(self.sock, server_side=True)
            except (ssl.SSLError, OSError):
                return
        self.sock.settimeout(600)       # idle keep-alive connections
        self.rfile = self.sock.makefile("rb", 65536)
        try:
            while self.handle_one():
                pass
        except (ConnectionError, socket.timeout, ssl.SSLError, OSError):
            pass
        finally:
            try:
                self.rfile.close()
            except OSError:
                pass

    def bad(self, status, message):
        self.send_response(json_response(status, {"error": message}), keep_alive=False)
        return False

    def handle_one(self):
        rfile = self.rfile
        line = rfile.readline(65537)
        while line in (b"\r\n", b"\n"):
            line = rfile.readline(65537)
        if not line:
            return False
        if len(line) > 65536:
            return self.bad(414, "request line too long")
        try:
            method, target, version = line.decode("latin-1").split()
        except ValueError:
            return self.bad(400, "bad request line")
        headers = {}
        n = 0
        while True:
            h = rfile.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            n += 1
            if n > 200 or len(h) > 65536:
                return self.bad(431, "too many or too long headers")
            k, sep, v = h.decode("latin-1").partition(":")
            if not sep:
                return self.bad(400, "bad header line")
            k = k.strip().lower()
            v = v.strip()
            if k in headers:
                headers[k] = headers[k] + ", " + v
            else:
                headers[k] = v
        conn_hdr = headers.get("connection", "").lower()
        if version == "HTTP/1.1":
            keep_alive = "close" not in conn_hdr
        else:
            keep_alive = "keep-alive" in conn_hdr
        if headers.get("expect", "").lower() == "100-continue":
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        te = headers.get("transfer-encoding", "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                size_line = rfile.readline(65537)
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    return self.bad(400, "bad chunk size")
                if size == 0:
                    while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(rfile.read(size))
                rfile.readline(65537)
            body = b"".join(chunks)
        else:
            cl = headers.get("content-length")
            if cl:
                try:
                    length = int(cl)
                except ValueError:
                    return self.bad(400, "bad Content-Length")
                body = rfile.read(length)
                if len(body) < length:
                    return False
            else:
                body = b""
        self.keep_alive = keep_alive
        self.head = method == "HEAD"
        return self.emu.serve(self, method, target, headers, body) and keep_alive

    # -- actions used by Emulator.serve -------------------------------------
    def send_response(self, resp, keep_alive=None):
        if keep_alive is None:
            keep_alive = self.keep_alive
        self.sock.sendall(encode_response(resp, keep_alive, getattr(self, "head", False),
                                          self.emu.clock_offset))
        return keep_alive

    def hang(self, max_s):
        """Answer nothing until the client closes, max_s passes or we stop."""
        deadline = time.monotonic() + max_s
        raw = self.sock
        while not self.emu.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                r, _, _ = select.select([raw], [], [], min(left, 0.5))
            except (OSError, ValueError):
                break
            if r:
                try:
                    if isinstance(raw, ssl.SSLSocket):
                        data = raw.recv(65536)
                    else:
                        data = raw.recv(65536, socket.MSG_PEEK)
                        if data:
                            raw.recv(65536)
                except (OSError, ssl.SSLError):
                    break
                if not data:
                    break
        self.abort()

    def reset(self, partial):
        try:
            self.sock.sendall(partial)
        except OSError:
            pass
        self.abort()

    def abort(self):
        """Close with a TCP RST (SO_LINGER 0)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.rfile.close()
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    block_on_close = False

    def __init__(self, addr, emu, ssl_context=None):
        self.emu = emu
        self.ssl_context = ssl_context
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.address_family = family
        super().__init__(addr, Connection)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout, ssl.SSLError)):
            return
        super().handle_error(request, client_address)


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    ap.add_argument("--tls-cert", help="PEM certificate (chain) for HTTPS")
    ap.add_argument("--tls-key", help="PEM private key for HTTPS")
    ap.add_argument("--seed", help="JSON seed file {salesforce:{..},hubspot:{..},netsuite:{..}}")
    args = ap.parse_args(argv)
    if not is_loopback(args.host):
        ap.error("refusing to bind non-loopback address %r (test emulator)" % args.host)
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    ctx = None
    scheme = "http"
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        scheme = "https"
    host = "127.0.0.1" if args.host == "localhost" else args.host
    emu = Emulator(seed_file=args.seed, scheme=scheme)
    server = Server((host, args.port), emu, ctx)
    port = server.server_address[1]
    shown = "[%s]" % host if ":" in host else host

    def stop(signum, frame):
        emu.stopping.set()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stdout.write("emulator listening on %s://%s:%d\n" % (scheme, shown, port))
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.5)
    except SystemExit:
        pass
    finally:
        emu.stopping.set()
        try:
            server.socket.close()
        except OSError:
            pass
        sys.stdout.flush()
        sys.stderr.flush()
    # daemon threads may sit in blocking socket calls; do not wait for them
    os._exit(0)


if __name__ == "__main__":
    main()
