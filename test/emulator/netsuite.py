"""NetSuite SuiteTalk REST web services emulation (see README-netsuite.md).

Endpoints (all under the one emulator port):
  POST /services/rest/auth/oauth2/v1/token          OAuth 2.0 client credentials (M2M, JWT assertion)
  GET|POST|PATCH|PUT|DELETE /services/rest/record/v1/{type}[/{id}|/eid:{ext}]
  GET  /services/rest/record/v1/metadata-catalog[/{type}]
  POST /services/rest/query/v1/suiteql?limit=&offset=   (Prefer: transient)
  GET  /services/rest/system/v1/serverTime | governanceLimits
  GET  /services/rest/async/v1/job/{id}[/task[/{n}[/result]]]
                                                    jobs of Prefer: respond-async requests and batches
  GET|POST /app/site/hosting/restlet.nl?script=customscript_sync_deleted&deploy=1
                                                    the "deleted records" RESTlet sync ships
Auth: Token-Based Authentication (OAuth 1.0a, HMAC-SHA256, signature verified)
or a Bearer token from the M2M token endpoint.  Standard library only.
"""
import base64
import contextvars
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import urllib.parse
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import certs
from common import ApiBase, Request, Response, empty_response, json_response

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = os.path.join(HERE, "keys")

# ---------------------------------------------------------------------------
# Test credentials (TEST-ONLY, publicly known)

ACCOUNT = "1234567"                       # account ID = TBA realm
CONSUMER_KEY = "ns-consumer-key"
CONSUMER_SECRET = "ns-consumer-secret"
TOKEN_ID = "ns-token-id"
TOKEN_SECRET = "ns-token-secret"
M2M_CLIENT_ID = "ns-m2m-client"
# kid (certificate ID) -> (file stem under keys/, the algorithm sign_jwt uses by default)
M2M_TEST_KEYS = {
    "ns-cert-id": ("netsuite-m2m-test", "PS256"),                  # RSA 2048
    "ns-cert-id-ec": ("netsuite-m2m-test-ec", "ES256"),            # P-256
    "ns-cert-id-rsa3072": ("netsuite-m2m-test-rsa3072", "PS384"),  # RSA 3072 (PS384, PS512)
    "ns-cert-id-ec384": ("netsuite-m2m-test-ec384", "ES384"),      # P-384
    "ns-cert-id-ec521": ("netsuite-m2m-test-ec521", "ES512"),      # P-521
}
M2M_CERTS = {kid: os.path.join(KEYS, stem + ".crt") for kid, (stem, _) in M2M_TEST_KEYS.items()}
M2M_KEYS = {kid: os.path.join(KEYS, stem + ".key") for kid, (stem, _) in M2M_TEST_KEYS.items()}
M2M_KID_ALGS = {kid: alg for kid, (_, alg) in M2M_TEST_KEYS.items()}
M2M_ALGS = ("PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
RESTLET_SCRIPT = "customscript_sync_deleted"
RESTLET_SCRIPT_INTERNAL_ID = "1001"
RESTLET_DEPLOY = ("1", "customdeploy_sync_deleted")

TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
RECORD_PREFIX = "/services/rest/record/v1"
SUITEQL_PATH = "/services/rest/query/v1/suiteql"
SYSTEM_PREFIX = "/services/rest/system/v1"
ASYNC_PREFIX = "/services/rest/async/v1"
BATCH_MAX = 100
MAX_SELECT_COLUMNS = 100
MAX_IN_VALUES = 1000
# the idempotency example's type URL (subsect_164494900632), status 400 titled "Conflict"
IDEMPOTENCY_TYPE_URL = "https://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html#sec10.4.10"
RESTLET_PATH = "/app/site/hosting/restlet.nl"

TBA_MAX_SKEW_S = 300
M2M_MAX_LIFETIME_S = 3600
MAX_LIMIT = 1000
MAX_RESULTS = 100000

CT_SINGULAR = "application/vnd.oracle.resource+json; type=singular"
CT_COLLECTION = "application/vnd.oracle.resource+json; type=collection"
CT_ERROR = "application/vnd.oracle.resource+json; type=error"

TYPE_URLS = {
    400: "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1",
    401: "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.2",
    403: "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.4",
    404: "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.5",
    405: "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.6",
    409: "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.10",
    415: "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.16",
    429: "https://www.rfc-editor.org/rfc/rfc6585.html#section-4",
    500: "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.6.1",
    503: "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.6.4",
}
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
          405: "Method Not Allowed", 409: "Conflict", 415: "Unsupported Media Type",
          429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
          503: "Service Unavailable", 504: "Gateway Timeout"}

INVALID_LOGIN_DETAIL = ("Invalid login attempt. For more details, see the Login Audit Trail in the "
                        "NetSuite UI at Setup > Users/Roles > User Management > View Login Audit Trail.")
CONCURRENCY_DETAIL = "Concurrent request limit exceeded. Request blocked."
SUITEQL_PREFIX = "Invalid search query. Detailed unprocessed description follows. "


class NsError(Exception):
    """An error answered as NetSuite's RFC 7807 body."""

    def __init__(self, status, code, detail, **extra):
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra


def ns_error_body(status, code, detail, **extra):
    d = {"detail": detail}
    for k, v in extra.items():      # errorPath -> o:errorPath, ...
        d["o:" + k] = v
    d["o:errorCode"] = code
    return {"type": TYPE_URLS.get(status, TYPE_URLS[400] if status < 500 else TYPE_URLS[500]),
            "title": TITLES.get(status, "Error"), "status": status, "o:errorDetails": [d]}


def ns_error(status, code, detail, headers=None, **extra):
    return json_response(status, ns_error_body(status, code, detail, **extra), headers,
                         content_type=CT_ERROR)


# ---------------------------------------------------------------------------
# Crypto: PS256/384/512 (RSASSA-PSS, MGF1 with the same hash, salt as long as
# the hash) and ES256/384/512 (ECDSA on P-256/P-384/P-521), pure Python.
# Verification for the token endpoint; signing for tests.

HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}


def _mgf1(seed, length, h=hashlib.sha256):
    out = b""
    c = 0
    while len(out) < length:
        out += h(seed + c.to_bytes(4, "big")).digest()
        c += 1
    return out[:length]


def pss_verify(msg, sig, n, e, h=hashlib.sha256):
    modbits = n.bit_length()
    k = (modbits + 7) // 8
    if len(sig) != k:
        return False
    s = int.from_bytes(sig, "big")
    if s >= n:
        return False
    embits = modbits - 1
    emlen = (embits + 7) // 8
    m = pow(s, e, n)
    if m.bit_length() > emlen * 8:
        return False
    em = m.to_bytes(emlen, "big")
    hlen = h().digest_size
    if emlen < hlen + 2 or em[-1] != 0xBC:
        return False
    masked, hh = em[:emlen - hlen - 1], em[emlen - hlen - 1:-1]
    topbits = 8 * emlen - embits
    if masked[0] & (0xFF << (8 - topbits)) & 0xFF:
        return False
    db = bytearray(x ^ y for x, y in zip(masked, _mgf1(hh, emlen - hlen - 1, h)))
    db[0] &= 0xFF >> topbits
    i = 0
    while i < len(db) and db[i] == 0:
        i += 1
    if i >= len(db) or db[i] != 1:
        return False
    salt = bytes(db[i + 1:])
    return hmac.compare_digest(h(b"\0" * 8 + h(msg).digest() + salt).digest(), hh)


def pss_sign(msg, n, d, h=hashlib.sha256):
    modbits = n.bit_length()
    k = (modbits + 7) // 8
    embits = modbits - 1
    emlen = (embits + 7) // 8
    hlen = h().digest_size
    salt = os.urandom(hlen)
    hh = h(b"\0" * 8 + h(msg).digest() + salt).digest()
    db = b"\0" * (emlen - 2 * hlen - 2) + b"\x01" + salt
    masked = bytearray(x ^ y for x, y in zip(db, _mgf1(hh, emlen - hlen - 1, h)))
    masked[0] &= 0xFF >> (8 * emlen - embits)
    em = bytes(masked) + hh + b"\xbc"
    return pow(int.from_bytes(em, "big"), d, n).to_bytes(k, "big")


class Curve:
    """A short-Weierstrass NIST prime curve with a = p - 3."""

    def __init__(self, name, p, b, n, g):
        self.name, self.p, self.a, self.b, self.n, self.g = name, p, p - 3, b, n, g
        self.size = (p.bit_length() + 7) // 8        # bytes per coordinate / signature half

    def add(self, p1, p2):
        if p1 is None:
            return p2
        if p2 is None:
            return p1
        (x1, y1), (x2, y2) = p1, p2
        P = self.p
        if x1 == x2:
            if (y1 + y2) % P == 0:
                return None
            lam = (3 * x1 * x1 + self.a) * pow(2 * y1, -1, P) % P
        else:
            lam = (y2 - y1) * pow(x2 - x1, -1, P) % P
        x3 = (lam * lam - x1 - x2) % P
        return x3, (lam * (x1 - x3) - y1) % P

    def mul(self, k, pt):
        acc = None
        while k:
            if k & 1:
                acc = self.add(acc, pt)
            pt = self.add(pt, pt)
            k >>= 1
        return acc

    def on_curve(self, pt):
        x, y = pt
        return 0 <= x < self.p and 0 <= y < self.p and \
            (y * y - (x * x * x + self.a * x + self.b)) % self.p == 0

    def _z(self, msg, h):
        """The hash as an integer, truncated to the order's bit length (FIPS 186-4)."""
        digest = h(msg).digest()
        z = int.from_bytes(digest, "big")
        excess = len(digest) * 8 - self.n.bit_length()
        return z >> excess if excess > 0 else z

    def verify(self, msg, sig, pub, h):
        if len(sig) != 2 * self.size or not self.on_curve(pub):
            return False
        r = int.from_bytes(sig[:self.size], "big")
        s = int.from_bytes(sig[self.size:], "big")
        if not (1 <= r < self.n and 1 <= s < self.n):
            return False
        w = pow(s, -1, self.n)
        pt = self.add(self.mul(self._z(msg, h) * w % self.n, self.g),
                      self.mul(r * w % self.n, pub))
        return pt is not None and pt[0] % self.n == r

    def sign(self, msg, d, h):
        z = self._z(msg, h)
        while True:
            k = secrets.randbelow(self.n - 1) + 1
            r = self.mul(k, self.g)[0] % self.n
            s = pow(k, -1, self.n) * (z + r * d) % self.n
            if r and s:
                return r.to_bytes(self.size, "big") + s.to_bytes(self.size, "big")


P256 = Curve("P256", 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff,
             0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b,
             0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551,
             (0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296,
              0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5))
P384 = Curve("P384", 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff,
             0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef,
             0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973,
             (0xaa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7,
              0x3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f))
P521 = Curve("P521", 0x1ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff,
             0x51953eb9618e1c9a1f929a21a0b68540eea2da725b99b315f3b8b489918ef109e156193951ec7e937b1652c0bd3bb1bf073573df883d2c34f1ef451fd46b503f00,
             0x1fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409,
             (0xc6858e06b70404e9cd9e3ecb662395b4429c648139053fb521f828af606b4d3dbaa14b5e77efe75928fe1dc127a2ffa8de3348b3c1856a429bf97e7e31c2e5bd66,
              0x11839296a789a3bc0045c8a5fb42c7d1bd998f54449579b446817afbd17273e662c97ee72995ef42640c550b9013fad0761353c7086a272c24088be94769fd16650))
CURVES = {c.size: c for c in (P256, P384, P521)}        # by coordinate length
# the JWT algorithm's curve (RFC 7518 section 3.4): ES512 is P-521
ES_CURVES = {"ES256": P256, "ES384": P384, "ES512": P521}


def es256_verify(msg, sig, pub):
    return P256.verify(msg, sig, pub, hashlib.sha256)


def es256_sign(msg, d):
    return P256.sign(msg, d, hashlib.sha256)


def public_key_from_cert(pem_text):
    """('RSA', (n, e)) or ('EC', (curve, (x, y))) from a PEM certificate."""
    der = certs.pem_to_der(pem_text, "CERTIFICATE")
    _, cert, _ = certs.der_read(der)
    tbs = certs.der_children(certs.der_children(cert)[0][1])
    idx = 1 if tbs[0][0] == 0xA0 else 0
    spki = tbs[idx + 5][1]
    parts = certs.der_children(spki)
    bits = parts[1][1][1:]
    size = (len(bits) - 1) // 2
    if bits[:1] == b"\x04" and len(bits) == 1 + 2 * size and size in CURVES:
        return "EC", (CURVES[size], (int.from_bytes(bits[1:1 + size], "big"),
                                     int.from_bytes(bits[1 + size:], "big")))
    return "RSA", certs.rsa_public_from_spki(spki)


def ec_private_from_pem(pem_text):
    der = certs.pem_to_der(pem_text, "PRIVATE KEY")
    _, p8, _ = certs.der_read(der)
    _, ecpk, _ = certs.der_read(certs.der_children(p8)[2][1])
    return int.from_bytes(certs.der_children(ecpk)[1][1], "big")


def verify_jws(alg, signing_input, sig, keyinfo):
    """A JWT signature with alg PS256/384/512 or ES256/384/512 against a
    certificate's key; False for a key of the other family or curve."""
    kind, pub = keyinfo
    h = HASHES[alg[2:]]
    if alg.startswith("PS"):
        return kind == "RSA" and pss_verify(signing_input, sig, *pub, h=h)
    curve, point = pub if kind == "EC" else (None, None)
    return curve is ES_CURVES[alg] and curve.verify(signing_input, sig, point, h)


def sign_jwt(claims, kid="ns-cert-id", alg=None, header=None, key_file=None):
    """A compact JWT for the M2M token endpoint, signed with the test key of
    the given certificate ID (M2M_KID_ALGS gives each one's default alg)."""
    key_file = key_file or M2M_KEYS[kid]
    with open(key_file) as f:
        pem = f.read()
    alg = alg or M2M_KID_ALGS.get(kid, "PS256")
    h = header if header is not None else {"typ": "JWT", "alg": alg, "kid": kid}
    signing_input = (certs.b64url(json.dumps(h, separators=(",", ":")).encode()) + "."
                     + certs.b64url(json.dumps(claims, separators=(",", ":")).encode()))
    data = signing_input.encode("ascii")
    if alg.startswith("ES"):
        sig = ES_CURVES[alg].sign(data, ec_private_from_pem(pem), HASHES[alg[2:]])
    elif alg == "RS256":
        n, _, d = certs.rsa_private_from_pem(pem)
        sig = certs.rs256_sign(data, n, d)
    else:
        n, _, d = certs.rsa_private_from_pem(pem)
        sig = pss_sign(data, n, d, HASHES[alg[2:]])
    return signing_input + "." + certs.b64url(sig)


# ---------------------------------------------------------------------------
# OAuth 1.0a helpers

def pct(s):
    """RFC 3986 percent-encoding as RFC 5849 section 3.6 requires."""
    return urllib.parse.quote(str(s), safe="~-._")


def parse_oauth_header(value):
    """Parameters of an 'Authorization: OAuth k="v", ...' header (decoded)."""
    rest = value.strip()[5:].strip()
    params = {}
    for m in re.finditer(r'\s*([A-Za-z0-9_\-]+)\s*=\s*"([^"]*)"\s*(?:,|$)', rest):
        params[urllib.parse.unquote(m.group(1))] = urllib.parse.unquote(m.group(2))
    return params


def base_string_uri(url_base, path):
    u = urllib.parse.urlsplit(url_base)
    scheme = u.scheme.lower()
    host = (u.hostname or "").lower()
    if ":" in host:
        host = "[%s]" % host
    port = u.port
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = "%s:%d" % (host, port)
    return "%s://%s%s" % (scheme, host, path)


def signature_base_string(method, url_base, path, oauth_params, query_pairs, form_pairs=()):
    pairs = [(k, v) for k, v in oauth_params.items() if k not in ("oauth_signature", "realm")]
    pairs += list(query_pairs) + list(form_pairs)
    enc = sorted((pct(k), pct(v)) for k, v in pairs)
    norm = "&".join("%s=%s" % kv for kv in enc)
    return "&".join([method.upper(), pct(base_string_uri(url_base, path)), pct(norm)])


# ---------------------------------------------------------------------------
# Dates.  The record API speaks UTC ("...Z", to the minute).  SuiteQL and the
# record API's q= literals speak the integration user's time zone (config
# netsuite_user_timezone, an IANA name): USER_TZ holds it for the request
# being served (each request runs in its own thread; handle() sets it).

USER_TZ = contextvars.ContextVar("netsuite_user_tz", default=timezone.utc)
MONTHS = ("JANUARY", "FEBRUARY", "MARCH", "APRIL", "MAY", "JUNE", "JULY", "AUGUST",
          "SEPTEMBER", "OCTOBER", "NOVEMBER", "DECEMBER")
DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")


def user_tz():
    return USER_TZ.get()


def iso_z(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_minute_z(dt):
    """The record API's datetimes: UTC, to the minute (every recorded stamp ends in :00)."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:00Z")


def local(dt):
    """An instant as wall-clock time in the user's time zone."""
    return dt.astimezone(user_tz()) if dt.tzinfo is not None else dt


def user_date(dt):
    """The integration user's date format preference in the emulator: M/D/YYYY."""
    dt = local(dt)
    return "%d/%d/%d" % (dt.month, dt.day, dt.year)


def parse_iso(s):
    s = s.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def wall(y, mo, d, h=0, mi=0, s=0, us=0, tz=None):
    """Wall-clock time in tz (default: the user's) as an aware datetime."""
    return datetime(y, mo, d, h, mi, s, us, tzinfo=tz or user_tz())


_USER_DT = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?)?$")


def parse_user_or_iso(s, tz=None):
    """A date literal as a user would type it (M/D/YYYY [h:mm[:ss] [am|pm]]) or
    ISO 8601.  Without an offset it is wall-clock time in tz (default: the
    user's time zone, as NetSuite reads q= literals)."""
    tz = tz or user_tz()
    s = s.strip()
    m = _USER_DT.match(s)
    if m:
        mo, d, y, hh, mi, ss, ap = m.groups()
        h = int(hh or 0)
        if ap:
            h = h % 12 + (12 if ap.lower() == "pm" else 0)
        return wall(int(y), int(mo), int(d), h, int(mi or 0), int(ss or 0), tz=tz)
    if re.match(r"^\d{4}-\d{2}-\d{2}$", s):
        return datetime.strptime(s, "%Y-%m-%d").replace(tzinfo=tz)
    iso = s[:-1] + "+00:00" if s.endswith("Z") else s
    dt = datetime.fromisoformat(iso)
    return dt.replace(tzinfo=tz) if dt.tzinfo is None else dt


class DateFormatError(ValueError):
    pass


# Oracle datetime format elements the emulator knows, longest first.
_FMT_ELEMENTS = ("HH24", "HH12", "YYYY", "RRRR", "MONTH", "MON", "FF1", "FF2", "FF3", "FF4",
                 "FF5", "FF6", "FF7", "FF8", "FF9", "FF", "A.M.", "P.M.", "AM", "PM", "DAY",
                 "DY", "DDD", "DD", "DS", "TS", "MM", "MI", "SS", "HH", "YY", "RR", "X", "D")
_PUNCT = "-/,.;: "


@functools.lru_cache(maxsize=256)
def fmt_elements(fmt):
    """An Oracle format model as (("el", ELEMENT, original text) | ("lit", text), ...);
    DateFormatError for anything else (NetSuite answers such a query 400)."""
    out = []
    i = 0
    up = fmt.upper()
    while i < len(fmt):
        c = fmt[i]
        if c == '"':
            j = fmt.find('"', i + 1)
            if j < 0:
                raise DateFormatError(fmt)
            out.append(("lit", fmt[i + 1:j]))
            i = j + 1
            continue
        for el in _FMT_ELEMENTS:
            if up.startswith(el, i):
                out.append(("el", el, fmt[i:i + len(el)]))
                i += len(el)
                break
        else:
            if c in _PUNCT:
                out.append(("lit", c))
                i += 1
            else:
                raise DateFormatError(fmt)
    return tuple(out)


def _case_like(word, pattern):
    """Oracle spells MON/MONTH/DAY/DY in the case of the format element."""
    if pattern.isupper():
        return word.upper()
    if pattern[:1].isupper():
        return word.capitalize()
    return word.lower()


def _h12(h):
    return h % 12 or 12


def to_char(dt, fmt):
    """Oracle TO_CHAR(datetime, fmt), the datetime shown in the user's time zone."""
    dt = local(dt)
    out = []
    for part in fmt_elements(fmt):
        if part[0] == "lit":
            out.append(part[1])
            continue
        el, orig = part[1], part[2]
        if el in ("YYYY", "RRRR"):
            out.append("%04d" % dt.year)
        elif el in ("YY", "RR"):
            out.append("%02d" % (dt.year % 100))
        elif el == "MM":
            out.append("%02d" % dt.month)
        elif el == "MON":
            out.append(_case_like(MONTHS[dt.month - 1][:3], orig))
        elif el == "MONTH":
            out.append(_case_like(MONTHS[dt.month - 1].ljust(9), orig))
        elif el == "DD":
            out.append("%02d" % dt.day)
        elif el == "DDD":
            out.append("%03d" % dt.timetuple().tm_yday)
        elif el == "D":
            out.append(str((dt.weekday() + 1) % 7 + 1))        # Sunday = 1 (AMERICA)
        elif el == "DAY":
            out.append(_case_like(DAYS[dt.weekday()].ljust(9), orig))
        elif el == "DY":
            out.append(_case_like(DAYS[dt.weekday()][:3], orig))
        elif el == "HH24":
            out.append("%02d" % dt.hour)
        elif el in ("HH", "HH12"):
            out.append("%02d" % _h12(dt.hour))
        elif el == "MI":
            out.append("%02d" % dt.minute)
        elif el == "SS":
            out.append("%02d" % dt.second)
        elif el.startswith("FF"):
            digits = int(el[2:]) if len(el) > 2 else 6
            out.append(("%06d" % dt.microsecond + "000")[:digits])
        elif el in ("AM", "PM", "A.M.", "P.M."):
            ap = "AM" if dt.hour < 12 else "PM"
            if "." in el:
                ap = ap[0] + "." + ap[1] + "."
            out.append(ap if orig[:1].isupper() else ap.lower())
        elif el == "X":
            out.append(".")
        elif el == "DS":
            out.append(user_date(dt))
        elif el == "TS":
            out.append("%02d:%02d:%02d %s" % (_h12(dt.hour), dt.minute, dt.second,
                                              "AM" if dt.hour < 12 else "PM"))
    return "".join(out)


_PARSE_RX = {"YYYY": r"(?P<Y>\d{4})", "RRRR": r"(?P<Y>\d{4})", "YY": r"(?P<y>\d{2})",
             "RR": r"(?P<y>\d{2})", "MM": r"(?P<m>\d{1,2})", "MON": r"(?P<b>[A-Za-z]{3})",
             "MONTH": r"(?P<B>[A-Za-z]+)\s*", "DD": r"(?P<d>\d{1,2})", "HH24": r"(?P<H>\d{1,2})",
             "HH": r"(?P<I>\d{1,2})", "HH12": r"(?P<I>\d{1,2})", "MI": r"(?P<M>\d{1,2})",
             "SS": r"(?P<S>\d{1,2})", "AM": r"(?P<p>[AaPp]\.?[Mm]\.?)",
             "PM": r"(?P<p>[AaPp]\.?[Mm]\.?)", "A.M.": r"(?P<p>[AaPp]\.?[Mm]\.?)",
             "P.M.": r"(?P<p>[AaPp]\.?[Mm]\.?)", "X": r"\.",
             "DS": r"(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<Y>\d{4})",
             "TS": r"(?P<I>\d{1,2}):(?P<M>\d{2}):(?P<S>\d{2})\s*(?P<p>[AaPp][Mm])"}


def parse_datetime(s, fmt, timestamp):
    """Oracle TO_DATE (timestamp=False) / TO_TIMESTAMP(s, fmt): wall-clock time
    in the user's time zone.  FF is a TIMESTAMP element: TO_DATE refuses it,
    as Oracle does (ORA-01821).  ValueError when s does not match."""
    m = _format_regex(fmt, timestamp).fullmatch(s.strip())
    if not m:
        raise ValueError(s)
    return _datetime_of(m, s)


@functools.lru_cache(maxsize=256)
def _format_regex(fmt, timestamp):
    rx = []
    for part in fmt_elements(fmt):
        if part[0] == "lit":
            lit = part[1]
            rx.append(r"\s+" if lit == " " else
                      "[" + re.escape(_PUNCT.strip()) + "]" if lit in _PUNCT else re.escape(lit))
            continue
        el = part[1]
        if el.startswith("FF"):
            if not timestamp:
                raise DateFormatError(fmt)
            n = int(el[2:]) if len(el) > 2 else 9
            rx.append(r"(?P<f>\d{1,%d})" % n)
        elif el in _PARSE_RX:
            rx.append(_PARSE_RX[el])
        else:
            raise DateFormatError(fmt)
    try:
        return re.compile("".join(rx))
    except re.error:                   # an element given twice
        raise DateFormatError(fmt)


def _datetime_of(m, s):
    g = {k: v for k, v in m.groupdict().items() if v is not None}
    if "Y" in g:
        year = int(g["Y"])
    elif "y" in g:
        year = 2000 + int(g["y"])
    else:                               # Oracle: the current year
        year = local(datetime.now(timezone.utc)).year
    if "m" in g:
        month = int(g["m"])
    elif "b" in g or "B" in g:
        name = (g.get("b") or g.get("B")).upper()
        hits = [i for i, mo in enumerate(MONTHS, 1) if mo.startswith(name) and
                (len(name) == 3 or mo == name)]
        if not hits:
            raise ValueError(s)
        month = hits[0]
    else:
        month = 1
    day = int(g.get("d", 1))
    if "H" in g:
        hour = int(g["H"])
    elif "I" in g:
        hour = int(g["I"])
        if not 1 <= hour <= 12:
            raise ValueError(s)
        hour %= 12
        if g.get("p", "a")[:1].lower() == "p":
            hour += 12
    else:
        hour = 0
    us = int((g["f"] + "000000")[:6]) if "f" in g else 0
    return wall(year, month, day, hour, int(g.get("M", 0)), int(g.get("S", 0)), us)


# ---------------------------------------------------------------------------
# Record types.  A schema maps camelCase field names to kinds:
#   text, email, bool, float, int, date (YYYY-MM-DD), datetime (read-only stamps),
#   enum, select:<recordtype> (a reference {id, refName, links}), sublist, subrecord.
# Type keys are lower case (URLs are case-insensitive: salesOrder == salesorder).

SUBLIST = "sublist"

ENTITY_STAMPS = {"dateCreated": "datetime", "lastModifiedDate": "datetime"}
TRAN_STAMPS = {"createdDate": "datetime", "lastModifiedDate": "datetime"}

BUILTIN_TYPES = {
    "customer": {
        "name": "customer", "table": "customer", "seq": "entity", "stamps": ("dateCreated", "lastModifiedDate"),
        "fields": dict(ENTITY_STAMPS, **{
            "externalId": "text", "entityId": "text", "companyName": "text", "isPerson": "bool",
            "firstName": "text", "lastName": "text", "email": "email", "phone": "text",
            "altPhone": "text", "fax": "text", "url": "text", "comments": "text",
            "subsidiary": "select:subsidiary", "currency": "select:currency",
            "entityStatus": "select:customerstatus", "receivablesaccount": "select:account",
            "parent": "select:customer", "terms": "select:term",
            "isinactive": "bool", "balance": "float", "depositbalance": "float",
            "overduebalance": "float", "unbilledorders": "float", "creditLimit": "float",
            "alcoholRecipientType": "enum", "creditholdoverride": "enum",
            "emailPreference": "enum", "shippingCarrier": "enum", "language": "enum",
            "customForm": "enum", "emailTransactions": "bool", "faxTransactions": "bool",
            "printTransactions": "bool", "shipComplete": "bool", "taxable": "bool",
            "isBudgetApproved": "bool", "addressbook": SUBLIST, "creditCards": SUBLIST,
            "currencyList": SUBLIST, "grouppricing": SUBLIST, "itempricing": SUBLIST}),
        "defaults": {
            "alcoholRecipientType": "CONSUMER", "balance": 0.0, "creditholdoverride": "AUTO",
            "currency": "1", "customForm": "-2", "depositbalance": 0.0,
            "emailPreference": "DEFAULT", "emailTransactions": False, "entityStatus": "13",
            "faxTransactions": False, "isBudgetApproved": False, "isinactive": False,
            "isPerson": False, "language": "en_US", "overduebalance": 0.0,
            "printTransactions": False, "receivablesaccount": "-10", "shipComplete": False,
            "shippingCarrier": "nonups", "subsidiary": "1", "taxable": False,
            "unbilledorders": 0.0},
        "required": [("companyName", "Company Name")],
    },
    "contact": {
        "name": "contact", "table": "contact", "seq": "entity", "stamps": ("dateCreated", "lastModifiedDate"),
        "fields": dict(ENTITY_STAMPS, **{
            "externalId": "text", "entityId": "text", "salutation": "text", "firstName": "text",
            "lastName": "text", "email": "email", "phone": "text", "mobilePhone": "text",
            "title": "text", "company": "select:customer", "subsidiary": "select:subsidiary",
            "isinactive": "bool", "isPrivate": "bool", "customForm": "enum",
            "addressbook": SUBLIST}),
        "defaults": {"subsidiary": "1", "isinactive": False, "isPrivate": False,
                     "customForm": "-40"},
        "required": [("lastName", "Last Name")],
    },
    "salesorder": {
        "name": "salesOrder", "table": "transaction", "seq": "transaction", "tran_type": "SalesOrd",
        "stamps": ("createdDate", "lastModifiedDate"), "tranid_prefix": "SO",
        "fields": dict(TRAN_STAMPS, **{
            "externalId": "text", "tranId": "text", "tranDate": "date",
            "entity": "select:customer", "subsidiary": "select:subsidiary",
            "currency": "select:currency", "memo": "text", "otherRefNum": "text",
            "status": "enum", "orderStatus": "enum", "total": "float", "subtotal": "float",
            "exchangeRate": "float", "customForm": "enum", "item": SUBLIST}),
        "defaults": {"subsidiary": "1", "currency": "1", "orderStatus": "B",
                     "status": "Pending Fulfillment", "exchangeRate": 1.0, "total": 0.0,
                     "subtotal": 0.0, "customForm": "68"},
        "required": [("entity", "Customer")],
    },
    "invoice": {
        "name": "invoice", "table": "transaction", "seq": "transaction", "tran_type": "CustInvc",
        "stamps": ("createdDate", "lastModifiedDate"), "tranid_prefix": "INV",
        "fields": dict(TRAN_STAMPS, **{
            "externalId": "text", "tranId": "text", "tranDate": "date", "dueDate": "date",
            "entity": "select:customer", "subsidiary": "select:subsidiary",
            "currency": "select:currency", "createdFrom": "select:salesorder",
            "memo": "text", "otherRefNum": "text", "status": "enum", "total": "float",
            "subtotal": "float", "amountRemaining": "float", "exchangeRate": "float",
            "customForm": "enum", "item": SUBLIST}),
        "defaults": {"subsidiary": "1", "currency": "1", "status": "Open", "exchangeRate": 1.0,
                     "total": 0.0, "subtotal": 0.0, "amountRemaining": 0.0, "customForm": "120"},
        "required": [("entity", "Customer")],
    },
    # reference targets: plain named records
    "subsidiary": {"name": "subsidiary", "table": "subsidiary", "stamps": (),
                   "fields": {"externalId": "text", "name": "text", "legalName": "text",
                              "country": "enum", "currency": "select:currency",
                              "parent": "select:subsidiary", "isInactive": "bool"},
                   "defaults": {"isInactive": False}, "required": [("name", "Name")]},
    "currency": {"name": "currency", "table": "currency", "stamps": (),
                 "fields": {"externalId": "text", "name": "text", "symbol": "text",
                            "exchangeRate": "float", "isBaseCurrency": "bool", "isInactive": "bool"},
                 "defaults": {"isInactive": False}, "required": [("name", "Name")]},
    "customerstatus": {"name": "customerStatus", "table": "customerstatus", "stamps": (),
                       "fields": {"name": "text", "stage": "enum"}, "defaults": {},
                       "required": [("name", "Name")]},
    "account": {"name": "account", "table": "account", "stamps": (),
                "fields": {"externalId": "text", "acctname": "text", "acctnumber": "text",
                           "accttype": "enum", "cashflowrate": "enum", "generalrate": "enum",
                           "currency": "select:currency", "eliminate": "bool",
                           "includechildren": "bool", "inventory": "bool", "isinactive": "bool",
                           "revalue": "bool", "localizations": SUBLIST, "subsidiary": SUBLIST},
                "defaults": {"isinactive": False}, "required": [("acctname", "Name")]},
    "term": {"name": "term", "table": "term", "stamps": (),
             "fields": {"name": "text", "daysUntilNetDue": "int"}, "defaults": {},
             "required": [("name", "Name")]},
}

BUILTIN_RECORDS = {
    "currency": [{"id": "1", "name": "USA", "symbol": "USD", "exchangeRate": 1.0,
                  "isBaseCurrency": True}],
    "subsidiary": [{"id": "1", "name": "Parent Company", "legalName": "Parent Company",
                    "country": "US", "currency": "1"}],
    "customerstatus": [{"id": "13", "name": "CUSTOMER-Closed Won", "stage": "CUSTOMER"},
                       {"id": "6", "name": "LEAD-Unqualified", "stage": "LEAD"}],
    "account": [{"id": "-10", "acctname": "Use System Preference"},
                {"id": "122", "acctname": "Accounts Receivable", "acctnumber": "1100",
                 "accttype": "AcctRec"}],
    "term": [{"id": "2", "name": "Net 30", "daysUntilNetDue": 30}],
}

# SuiteQL's deletedrecord table (the "Deleted Record" search type): its
# columns as tap-netsuite-rest selects them; no externalid column.
DELETED_TABLE = "deletedrecord"
DELETED_COLUMNS = ("name", "recordid", "recordtypeid", "scriptid", "context", "deletedby",
                   "deleteddate", "iscustomlist", "iscustomrecord", "iscustomtransaction", "type")
# who deleted, and in which execution context: ((deletedby id, its BUILTIN.DF),
# (context id, its BUILTIN.DF)) per source of the delete
DELETED_BY = {"api": (("-5", "Integration User"), ("RESTWEBSERVICES", "REST Web Services")),
              "control": (("3", "Remote User"), ("USERINTERFACE", "User Interface"))}

REFNAME_FIELDS = ("entityId", "tranId", "name", "acctname", "companyName")
FIELD_KINDS = {"text", "email", "bool", "float", "int", "date", "datetime", "enum", SUBLIST,
               "subrecord"}
SEED_KIND_ALIASES = {"string": "text", "textarea": "text", "checkbox": "bool", "boolean": "bool",
                     "currency": "float", "double": "float", "number": "float", "integer": "int",
                     "select": "select", "list": "select", "reference": "select",
                     "phone": "text", "url": "text", "percent": "float", "date-time": "datetime"}
# "An external ID can be any string containing letters, numbers, underscore (_),
# and hyphen (-)" (Using External IDs, section_156334828635): for eid: in URLs
EID_RE = re.compile(r"[\w-]+")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# ---------------------------------------------------------------------------
# SuiteQL subset: SELECT [DISTINCT|TOP n] cols|*|COUNT(*) FROM one table [alias]
# [WHERE ...] [ORDER BY ...] [FETCH FIRST n ROWS ONLY].  See README-netsuite.md.

class QueryError(Exception):
    pass


_TOK = re.compile(r"""\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+(?:\.\d+)?)"""
                  r"""|(?P<id>[A-Za-z_][A-Za-z0-9_$#]*(?:\.[A-Za-z_][A-Za-z0-9_$#]*)*)"""
                  r"""|(?P<op><=|>=|<>|!=|\|\||[=<>(),*+\-?]))""")
KEYWORDS = {"SELECT", "DISTINCT", "FROM", "WHERE", "ORDER", "BY", "ASC", "DESC", "AND", "OR",
            "NOT", "IN", "IS", "NULL", "LIKE", "BETWEEN", "AS", "NULLS", "FIRST", "LAST", "FETCH",
            "ROWS", "ROW", "ONLY", "NEXT", "TOP", "JOIN", "LEFT", "RIGHT", "INNER", "OUTER",
            "GROUP", "ON", "UNION", "HAVING"}


def tokenize(q):
    toks = []
    pos = 0
    q = q.rstrip().rstrip(";")
    while pos < len(q):
        m = _TOK.match(q, pos)
        if not m or m.end() == pos:
            if q[pos:].strip() == "":
                break
            raise QueryError("Invalid or unsupported search")
        pos = m.end()
        if m.group("str") is not None:
            toks.append(("str", m.group("str")[1:-1].replace("''", "'")))
        elif m.group("num") is not None:
            n = m.group("num")
            toks.append(("num", float(n) if "." in n else int(n)))
        elif m.group("id") is not None:
            v = m.group("id")
            toks.append(("kw", v.upper()) if v.upper() in KEYWORDS else ("id", v))
        else:
            toks.append(("op", m.group("op")))
    return toks


class Parser:
    def __init__(self, q, params=None):
        self.t = tokenize(q)
        self.i = 0
        if params is not None or ("op", "?") in self.t:
            self.bind(params or [])

    def bind(self, params):
        """Bound parameters ({"q": "... ?", "params": [...]}, REST since 2026.2):
        each ? takes the next value; booleans are SuiteQL's 'T'/'F'."""
        holes = [n for n, tok in enumerate(self.t) if tok == ("op", "?")]
        if len(holes) != len(params):
            raise QueryError("Invalid or unsupported search")
        for n, v in zip(holes, params):
            if isinstance(v, bool):
                self.t[n] = ("str", "T" if v else "F")
            elif isinstance(v, (int, float)):
                self.t[n] = ("num", v)
            elif isinstance(v, str):
                self.t[n] = ("str", v)
            else:
                raise QueryError("Invalid or unsupported search")

    def peek(self, k=0):
        j = self.i + k
        return self.t[j] if j < len(self.t) else (None, None)

    def next(self):
        tok = self.peek()
        self.i += 1
        return tok

    def accept(self, kind, val=None):
        tok = self.peek()
        if tok[0] == kind and (val is None or tok[1] == val):
            self.i += 1
            return tok
        return None

    def expect(self, kind, val=None):
        tok = self.accept(kind, val)
        if tok is None:
            raise QueryError("Invalid or unsupported search")
        return tok

    def parse(self):
        self.expect("kw", "SELECT")
        q = {"distinct": False, "top": None, "fetch": None, "where": None, "order": []}
        if self.accept("kw", "DISTINCT"):
            q["distinct"] = True
        if self.accept("kw", "TOP"):
            q["top"] = int(self.expect("num")[1])
        if self.accept("op", "*"):
            q["select"] = "*"
        else:
            items = []
            while True:
                e = self.expr()
                alias = None
                if self.accept("kw", "AS"):
                    alias = self.expect("id")[1]
                elif self.peek()[0] == "id":
                    alias = self.next()[1]
                items.append((e, alias))
                if not self.accept("op", ","):
                    break
            q["select"] = items
        self.expect("kw", "FROM")
        q["table"] = self.expect("id")[1]
        q["alias"] = None
        if self.peek()[0] == "id":
            q["alias"] = self.next()[1]
        if self.peek()[0] == "kw" and self.peek()[1] in ("JOIN", "LEFT", "RIGHT", "INNER",
                                                         "OUTER", "GROUP", "UNION", "HAVING"):
            raise QueryError("Invalid or unsupported search")
        if self.peek() == ("op", ","):
            raise QueryError("Invalid or unsupported search")
        if self.accept("kw", "WHERE"):
            q["where"] = self.expr()
        if self.accept("kw", "ORDER"):
            self.expect("kw", "BY")
            while True:
                e = self.expr()
                desc = False
                if self.accept("kw", "DESC"):
                    desc = True
                else:
                    self.accept("kw", "ASC")
                nulls_first = desc
                if self.accept("kw", "NULLS"):
                    nulls_first = bool(self.accept("kw", "FIRST"))
                    if not nulls_first:
                        self.expect("kw", "LAST")
                q["order"].append((e, desc, nulls_first))
                if not self.accept("op", ","):
                    break
        if self.accept("kw", "FETCH"):
            if not self.accept("kw", "FIRST"):
                self.expect("kw", "NEXT")
            q["fetch"] = int(self.expect("num")[1])
            if not self.accept("kw", "ROWS"):
                self.expect("kw", "ROW")
            self.expect("kw", "ONLY")
        if self.peek()[0] is not None:
            raise QueryError("Invalid or unsupported search")
        return q

    def expr(self):
        left = self.and_expr()
        while self.accept("kw", "OR"):
            left = ("or", left, self.and_expr())
        return left

    def and_expr(self):
        left = self.not_expr()
        while self.accept("kw", "AND"):
            left = ("and", left, self.not_expr())
        return left

    def not_expr(self):
        if self.accept("kw", "NOT"):
            return ("not", self.not_expr())
        return self.predicate()

    def predicate(self):
        left = self.additive()
        tok = self.peek()
        if tok[0] == "op" and tok[1] in ("=", "<>", "!=", "<", ">", "<=", ">="):
            self.next()
            return ("cmp", "!=" if tok[1] == "<>" else tok[1], left, self.additive())
        neg = False
        if tok == ("kw", "IS"):
            self.next()
            neg = bool(self.accept("kw", "NOT"))
            self.expect("kw", "NULL")
            return ("isnull", left, neg)
        if tok == ("kw", "NOT"):
            self.next()
            neg = True
        if self.accept("kw", "IN"):
            self.expect("op", "(")
            vals = [self.additive()]
            while self.accept("op", ","):
                vals.append(self.additive())
            self.expect("op", ")")
            if len(vals) > MAX_IN_VALUES:   # "IN ≤1000 values" (article_0824094533; Oracle's ORA-01795)
                raise QueryError("Invalid or unsupported search")
            return ("in", left, vals, neg)
        if self.accept("kw", "LIKE"):
            return ("like", left, self.additive(), neg)
        if self.accept("kw", "BETWEEN"):
            lo = self.additive()
            self.expect("kw", "AND")
            return ("between", left, lo, self.additive(), neg)
        if neg:
            raise QueryError("Invalid or unsupported search")
        return left

    def additive(self):
        left = self.primary()
        while self.accept("op", "||"):
            left = ("concat", left, self.primary())
        return left

    def primary(self):
        tok = self.next()
        kind, val = tok
        if kind == "str":
            return ("lit", val)
        if kind == "num":
            return ("lit", val)
        if tok == ("op", "-") and self.peek()[0] == "num":
            return ("lit", -self.next()[1])
        if tok == ("kw", "NULL"):
            return ("lit", None)
        if tok == ("op", "("):
            e = self.expr()
            self.expect("op", ")")
            return e
        if kind == "id":
            if self.accept("op", "("):
                args = []
                if self.accept("op", "*"):
                    args.append(("star",))
                elif not self.peek() == ("op", ")"):
                    args.append(self.expr())
                    while self.accept("op", ","):
                        args.append(self.expr())
                self.expect("op", ")")
                return ("fn", val.upper(), args)
            return ("col", val)
        raise QueryError("Invalid or unsupported search")


def _num(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _coerce(a, b):
    if isinstance(a, datetime) and isinstance(b, str):
        try:
            b = parse_user_or_iso(b)
        except ValueError:
            raise QueryError("Invalid date value '%s'" % b)
    elif isinstance(b, datetime) and isinstance(a, str):
        a, b = _coerce(b, a)[::-1]
    elif isinstance(a, datetime) != isinstance(b, datetime):
        raise QueryError("Invalid or unsupported search")
    elif isinstance(a, (int, float)) and isinstance(b, str) or \
            isinstance(b, (int, float)) and isinstance(a, str):
        na, nb = _num(a), _num(b)
        if na is None or nb is None:
            a, b = str(a), str(b)
        else:
            a, b = na, nb
    return a, b


def _compare(op, a, b):
    if a is None or b is None:
        return None
    a, b = _coerce(a, b)
    if op == "=":
        return a == b
    if op == "!=":
        return a != b
    if op == "<":
        return a < b
    if op == ">":
        return a > b
    if op == "<=":
        return a <= b
    return a >= b


def fmt_number(v):
    if isinstance(v, float):
        if v.is_integer():
            return str(int(v))
        return repr(v)
    return str(v)


class Evaluator:
    def __init__(self, columns, table, alias, now):
        self.columns = columns         # set of valid lowercase column names
        self.table = table
        self.alias = alias
        self.now = now
        self.consts = {}

    def unknown(self, ident):
        """NetSuite's words for a name it cannot resolve (live answers, reference
        §7 and julbrs/netsuite-api-client's tests)."""
        return QueryError("Search error occurred: Unknown identifier '%s'. Available identifiers "
                          "are: {%s=%s}." % (ident, self.alias or self.table, self.table))

    def colname(self, name):
        low = name.lower()
        if "." in low:
            pre, _, rest = low.partition(".")
            if pre in (self.table, (self.alias or "").lower()):
                low = rest
            else:                       # the qualifier is the unknown identifier
                raise self.unknown(name.partition(".")[0])
        if low in ("sysdate", "current_date", "current_timestamp"):
            return low
        if low not in self.columns:
            raise self.unknown(name)
        return low

    def check(self, e, aliases=()):
        """Validate column names up front (errors even when no rows)."""
        if e[0] == "col":
            if e[1].lower() in aliases:
                return
            self.colname(e[1])
        elif e[0] == "fn":
            if e[1] not in ("TO_DATE", "TO_TIMESTAMP", "TO_CHAR", "BUILTIN.DF", "UPPER", "LOWER",
                            "NVL", "COALESCE", "COUNT", "TRIM", "LENGTH", "ABS"):
                raise QueryError("Search error occurred: Unknown identifier '%s'" % e[1])
            for a in e[2]:
                if a[0] != "star":
                    self.check(a, aliases)
        else:
            for part in e[1:]:
                if isinstance(part, tuple):
                    self.check(part, aliases)
                elif isinstance(part, list):
                    for p in part:
                        self.check(p, aliases)

    def ev(self, e, row):
        k = e[0]
        if k == "lit":
            return e[1]
        if k == "col":
            name = self.colname(e[1])
            if name in ("sysdate", "current_date", "current_timestamp"):
                return self.now
            return row.get(name)
        if k == "and":
            a, b = self.ev(e[1], row), self.ev(e[2], row)
            if a is False or b is False:
                return False
            return None if a is None or b is None else True
        if k == "or":
            a, b = self.ev(e[1], row), self.ev(e[2], row)
            if a is True or b is True:
                return True
            return None if a is None or b is None else False
        if k == "not":
            a = self.ev(e[1], row)
            return None if a is None else not a
        if k == "cmp":
            return _compare(e[1], self.ev(e[2], row), self.ev(e[3], row))
        if k == "isnull":
            v = self.ev(e[1], row)
            return (v is not None and v != "") if e[2] else (v is None or v == "")
        if k == "in":
            v = self.ev(e[1], row)
            if v is None:
                return None
            hit = any(_compare("=", v, self.ev(x, row)) for x in e[2])
            return not hit if e[3] else hit
        if k == "like":
            v, pat = self.ev(e[1], row), self.ev(e[2], row)
            if v is None or pat is None:
                return None
            rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in str(pat))
            hit = re.fullmatch(rx, str(v), re.S) is not None
            return not hit if e[3] else hit
        if k == "between":
            v = self.ev(e[1], row)
            lo, hi = self.ev(e[2], row), self.ev(e[3], row)
            a, b = _compare(">=", v, lo), _compare("<=", v, hi)
            if a is None or b is None:
                return None
            return not (a and b) if e[4] else (a and b)
        if k == "concat":
            a, b = self.ev(e[1], row), self.ev(e[2], row)
            return render_sql_value(a or "") + render_sql_value(b or "")
        if k == "fn":
            return self.fn(e[1], e[2], row)
        raise QueryError("Invalid or unsupported search")

    def fn(self, name, args, row):
        if name in ("TO_DATE", "TO_TIMESTAMP") and all(a[0] == "lit" for a in args):
            key = (name, tuple(a[1] for a in args))     # a literal: read once per query
            if key not in self.consts:
                self.consts[key] = self._fn(name, args, row)
            return self.consts[key]
        return self._fn(name, args, row)

    def _fn(self, name, args, row):
        if name in ("TO_DATE", "TO_TIMESTAMP"):
            s = self.ev(args[0], row)
            if s is None:
                return None
            if isinstance(s, datetime):
                return s
            if len(args) > 1:
                fmt = self.ev(args[1], row)
                try:
                    return parse_datetime(str(s), str(fmt), name == "TO_TIMESTAMP")
                except DateFormatError:
                    raise QueryError("Invalid or unsupported search")
                except ValueError:
                    raise QueryError("Search error occurred: Invalid date value '%s' for format '%s'"
                                     % (s, fmt))
            try:            # no format: the user's date format (M/D/YYYY)
                return parse_user_or_iso(str(s))
            except ValueError:
                raise QueryError("Search error occurred: Invalid date value '%s'" % s)
        if name == "TO_CHAR":
            v = self.ev(args[0], row)
            if v is None:
                return None
            if isinstance(v, datetime):
                if len(args) < 2:
                    return user_date(v)
                try:
                    return to_char(v, str(self.ev(args[1], row)))
                except DateFormatError:
                    raise QueryError("Invalid or unsupported search")
            return render_sql_value(v)
        if name == "BUILTIN.DF":
            a = args[0]
            if a[0] == "col":
                col = self.colname(a[1])
                return row.get("__df__" + col, row.get(col))
            return self.ev(a, row)
        if name in ("UPPER", "LOWER", "TRIM", "LENGTH"):
            v = self.ev(args[0], row)
            if v is None:
                return None
            v = render_sql_value(v)
            return {"UPPER": v.upper(), "LOWER": v.lower(), "TRIM": v.strip(),
                    "LENGTH": len(v)}[name]
        if name == "ABS":
            v = _num(self.ev(args[0], row))
            return None if v is None else abs(v)
        if name in ("NVL", "COALESCE"):
            for a in args:
                v = self.ev(a, row)
                if v is not None:
                    return v
            return None
        raise QueryError("Invalid or unsupported search")


def render_sql_value(v):
    if isinstance(v, datetime):
        return user_date(v)
    if isinstance(v, bool):
        return "T" if v else "F"
    if isinstance(v, (int, float)):
        return fmt_number(v)
    return str(v)


def _sort_key(v):
    if isinstance(v, datetime):
        return (0, v.timestamp(), "")
    if isinstance(v, (int, float)):
        return (0, float(v), "")
    n = _num(v)
    if n is not None and isinstance(v, str) and re.fullmatch(r"-?\d+", v):
        return (0, float(n), "")
    return (1, 0, str(v))


# ---------------------------------------------------------------------------
# The API

def _link(href):
    return [{"rel": "self", "href": href}]


class Api(ApiBase):
    name = "netsuite"

    def __init__(self, emu):
        super().__init__(emu)
        self.cert_keys = {}
        for kid, path in M2M_CERTS.items():
            with open(path) as f:
                self.cert_keys[kid] = public_key_from_cert(f.read())
        self.reset()

    # -- state -------------------------------------------------------------
    def reset(self):
        with self.lock:
            self.types = {k: {**v, "fields": dict(v["fields"]), "defaults": dict(v["defaults"]),
                              "required": list(v["required"]), "custom": False}
                          for k, v in BUILTIN_TYPES.items()}
            self.recs = {k: {} for k in self.types}
            self.eids = {k: {} for k in self.types}
            self.next_id = {}
            self.tranid_seq = 1000
            self.deleted = []
            self.custom_type_seq = 0    # internal IDs of custom record types
            self.gen = 0            # bumped by updates/deletes: SuiteQL row caches carry refNames
            self.tokens = {}
            self.nonces = {}
            self.jobs = {}              # asynchronous jobs: id -> {tasks, ready_at}
            self.job_seq = 0
            self.idempotency = {}       # X-NetSuite-Idempotency-Key -> job id
            self.restlet_deployed = True
            for key, rows in BUILTIN_RECORDS.items():
                for r in rows:
                    self._create(key, dict(r), source="seed")

    def now(self):
        return self.emu.now().replace(microsecond=0)

    def config(self, key):
        return self.emu.config.get(key)

    def owns(self, path):
        return (path == TOKEN_PATH or path == RECORD_PREFIX or path.startswith(RECORD_PREFIX + "/")
                or path == SUITEQL_PATH or path == RESTLET_PATH or path.startswith(SYSTEM_PREFIX + "/")
                or path.startswith(ASYNC_PREFIX + "/"))

    def zone(self):
        """The integration user's time zone (config netsuite_user_timezone)."""
        name = self.config("netsuite_user_timezone") or "UTC"
        try:
            return ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError):
            raise NsError(500, "UNEXPECTED_ERROR", "Emulator config netsuite_user_timezone %r "
                          "is not an IANA time zone name." % (name,))

    # -- type helpers --------------------------------------------------------
    def type_key(self, name):
        key = (name or "").lower()
        if key not in self.types:
            raise KeyError(name)
        return key

    def seq_of(self, key):
        return self.types[key].get("seq", key)

    def deletedrecord_mode(self):
        """True (the table is there), "no_permission" (false: hotglue's answer
        for a role without the permission) or "unknown_table"."""
        v = self.config("netsuite_deletedrecord")
        if v is None or v is True:
            return True
        return "unknown_table" if v == "unknown_table" else "no_permission"

    def columns(self, table):
        if table == DELETED_TABLE:
            return set(DELETED_COLUMNS) if self.deletedrecord_mode() is True else None
        cols = {"id"}
        found = False
        for key, t in self.types.items():
            if t["table"] == table:
                found = True
                cols.update(f.lower() for f, kind in t["fields"].items()
                            if kind not in (SUBLIST, "subrecord"))
        if not found:
            return None
        if table == "transaction":
            cols.update(("type", "recordtype"))
        return cols

    # -- value validation ----------------------------------------------------
    def _bad_value(self, field, value):
        return NsError(400, "INVALID_CONTENT",
                       "Error while accessing a resource. You have entered an Invalid Field Value "
                       "%s for the following field: %s" % (json.dumps(value), field),
                       errorPath=field)

    def coerce(self, key, field, value, trusted=False):
        kind = self.types[key]["fields"][field]
        if value is None:
            return None
        if kind in ("text", "enum"):
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise self._bad_value(field, value)
            return str(value)
        if kind == "email":
            if not isinstance(value, str):
                raise self._bad_value(field, value)
            if value and not EMAIL_RE.match(value):
                raise NsError(400, "USER_ERROR", "Error while accessing a resource. Please enter "
                              "a valid email address.", errorPath=field)
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise self._bad_value(field, value)
            return value
        if kind in ("float", "int"):
            n = value if not isinstance(value, str) else _num(value)
            if isinstance(n, bool) or not isinstance(n, (int, float)):
                raise self._bad_value(field, value)
            return float(n) if kind == "float" else int(n)
        if kind == "date":
            if not isinstance(value, str) or not DATE_RE.match(value):
                raise self._bad_value(field, value)
            try:
                datetime.strptime(value, "%Y-%m-%d")
            except ValueError:
                raise self._bad_value(field, value)
            return value
        if kind == "datetime":
            if isinstance(value, datetime):
                return value
            try:
                return parse_iso(str(value)).replace(microsecond=0)
            except ValueError:
                raise self._bad_value(field, value)
        if kind == SUBLIST:
            if isinstance(value, list):
                value = {"items": value}
            if not isinstance(value, dict) or not isinstance(value.get("items", []), list):
                raise self._bad_value(field, value)
            return {"items": [dict(x) for x in value.get("items", []) if isinstance(x, dict)]}
        if kind == "subrecord":
            if not isinstance(value, dict):
                raise self._bad_value(field, value)
            return {k: v for k, v in value.items() if k != "links"}
        if kind.startswith("select:"):
            target = kind[7:]
            ref_name = None
            if isinstance(value, dict):
                rid = value.get("id")
                ref_name = value.get("refName")
                if rid is None and value.get("externalId") is not None and target in self.eids:
                    rid = self.eids[target].get(str(value["externalId"]))
                    if rid is None:
                        raise NsError(400, "INVALID_KEY_OR_REF", "Invalid field value %s for %s. "
                                      "Provide a valid value." % (value["externalId"], field),
                                      errorPath=field)
            elif isinstance(value, (str, int)) and not isinstance(value, bool):
                rid = value     # a plain internal ID: live NetSuite takes "subsidiary": "1"
                #                 and "entityStatus": 6 (julbrs/netsuite-api-client's tests)
            else:
                raise self._bad_value(field, value)
            if rid is None or isinstance(rid, bool) or not isinstance(rid, (str, int)):
                raise self._bad_value(field, value)
            rid = str(rid)
            if target in self.recs:
                try:
                    ok = int(rid) in self.recs[target]
                except ValueError:
                    ok = False
                if not ok:
                    raise NsError(400, "INVALID_KEY_OR_REF", "Invalid field value %s for %s. "
                                  "Provide a valid value." % (rid, field), errorPath=field)
                ref_name = None
            return {"id": rid, "refName": ref_name}
        raise self._bad_value(field, value)

    def apply_fields(self, key, rec, body, strict_names=False, trusted=False, warnings=None):
        fields = self.types[key]["fields"]
        stamps = self.types[key]["stamps"]
        new = {}
        for f, v in body.items():
            if f in ("links", "id", "refName"):
                continue
            if f not in fields:
                if strict_names or trusted:
                    raise NsError(400, "INVALID_CONTENT", "Error while accessing a resource. "
                                  "Field '%s' is not recognized for record type '%s'."
                                  % (f, self.types[key]["name"]), errorPath=f)
                if warnings is not None:
                    warnings.append("Unknown property: %s" % f)
                continue
            if f in stamps and not trusted:
                if warnings is not None:
                    warnings.append("Read-only property ignored: %s" % f)
                continue
            new[f] = self.coerce(key, f, v, trusted)
        if "externalId" in new and new["externalId"] is not None:
            other = self.eids[key].get(new["externalId"])
            if other is not None and other != rec.get("_id"):
                raise NsError(400, "USER_ERROR", "Error while accessing a resource. A record "
                              "with the external ID '%s' already exists." % new["externalId"],
                              errorPath="externalId")
        return new

    def _store(self, key, rec, new):
        old_eid = rec.get("externalId")
        for f, v in new.items():
            if v is None:
                rec.pop(f, None)
            elif self.types[key]["fields"][f] == SUBLIST and f in rec:
                rec[f] = {"items": rec[f]["items"] + v["items"]}     # sublists merge
            else:
                rec[f] = v
        if old_eid is not None and rec.get("externalId") != old_eid:
            self.eids[key].pop(old_eid, None)
        if rec.get("externalId") is not None:
            self.eids[key][rec["externalId"]] = rec["_id"]
        rec.pop("_row", None)

    def _create(self, key, body, source="api", strict_names=False, warnings=None):
        t = self.types[key]
        trusted = source != "api"
        rid = body.get("id") if trusted else None
        if rid is not None:
            rid = int(rid)
            if rid in self.recs[key]:
                raise NsError(400, "USER_ERROR", "Error while accessing a resource. A record with "
                              "internal ID %s already exists." % rid)
        else:
            rid = self.next_id.get(self.seq_of(key), 100)
        rec = {"_id": rid}
        new = self.apply_fields(key, rec, body, strict_names, trusted, warnings)
        for f, dv in t["defaults"].items():
            if f not in new or new[f] is None:
                if f in body and body[f] is None:
                    continue
                new[f] = self.coerce(key, f, dv, trusted=True) if not isinstance(dv, dict) else dv
        missing = [label for f, label in t["required"] if new.get(f) in (None, "")]
        if key == "customer" and new.get("isPerson"):
            missing = [] if new.get("lastName") else ["Last Name"]
        if missing:
            raise NsError(400, "USER_ERROR", "Error while accessing a resource. Please enter "
                          "value(s) for: %s." % ", ".join(missing))
        if "entityId" in t["fields"] and not new.get("entityId"):
            if key == "contact":
                new["entityId"] = " ".join(x for x in (new.get("firstName"), new.get("lastName")) if x)
            else:
                new["entityId"] = new.get("companyName") or " ".join(
                    x for x in (new.get("firstName"), new.get("lastName")) if x) or str(rid)
        if t.get("tranid_prefix") and not new.get("tranId"):
            self.tranid_seq += 1
            new["tranId"] = "%s%d" % (t["tranid_prefix"], self.tranid_seq)
        if "tranDate" in t["fields"] and not new.get("tranDate"):
            new["tranDate"] = self.now().astimezone(self.zone()).strftime("%Y-%m-%d")
        now = self.now()
        for s in t["stamps"]:
            if new.get(s) is None:
                new[s] = now
        self._store(key, rec, new)
        self.recs[key][rid] = rec
        seq = self.seq_of(key)
        self.next_id[seq] = max(self.next_id.get(seq, 100), rid + 1)
        return rid

    def _update(self, key, rid, body, source="api", strict_names=False, warnings=None):
        rec = self.recs[key][rid]
        trusted = source != "api"
        new = self.apply_fields(key, rec, body, strict_names, trusted, warnings)
        t = self.types[key]
        if "lastModifiedDate" in t["fields"] and "lastModifiedDate" not in (new if trusted else {}):
            new["lastModifiedDate"] = self.now()
        self._store(key, rec, new)
        self.gen += 1

    def _delete(self, key, rid, check_deps=True, source="api"):
        rec = self.recs[key][rid]
        if check_deps:
            for k2, t2 in self.types.items():
                refs = [f for f, kind in t2["fields"].items() if kind == "select:" + key]
                if not refs:
                    continue
                for r2 in self.recs[k2].values():
                    if any(r2.get(f) and r2[f]["id"] == str(rid) for f in refs):
                        raise NsError(400, "USER_ERROR", "Error while accessing a resource. This "
                                      "record cannot be deleted because it has dependent records.")
        del self.recs[key][rid]
        self.gen += 1
        if rec.get("externalId") is not None:
            self.eids[key].pop(rec["externalId"], None)
        entry = {"deleteddate": self.now(), "recordtype": key, "recordid": str(rid),
                 "name": self.ref_name(key, rec)}
        if rec.get("externalId") is not None:
            entry["externalid"] = rec["externalId"]
        entry["_by"], entry["_context"] = DELETED_BY[source]
        self.deleted.append(entry)

    def ref_name(self, key, rec):
        for f in REFNAME_FIELDS:
            if rec.get(f):
                return rec[f]
        return str(rec["_id"])

    def ref_name_of(self, target, ref):
        if target in self.recs:
            try:
                r = self.recs[target].get(int(ref["id"]))
            except ValueError:
                r = None
            if r is not None:
                return self.ref_name(target, r)
        return ref.get("refName")

    # -- rendering ----------------------------------------------------------
    def href(self, base, key, *parts):
        return "/".join([base + RECORD_PREFIX, key] + [str(p) for p in parts])

    def line_link(self, base, key, rid, sublist, n, line):
        """A sublist line's self link, …/{sublist}/{line number}, as the recent
        recordings have it (the line's own "line" value, else its position)."""
        num = line.get("line")
        num = num if isinstance(num, int) and not isinstance(num, bool) else n
        return _link(self.href(base, key, rid, sublist, num))

    def render(self, key, rec, base, expand=False, only=None, links=True):
        t = self.types[key]
        rid = rec["_id"]
        out = {"links": _link(self.href(base, key, rid))} if links else {}
        items = [(f, v) for f, v in rec.items() if not f.startswith("_")]
        items.append(("id", str(rid)))
        for f, v in sorted(items, key=lambda kv: kv[0].lower()):
            if only is not None and f not in only and f != "id":
                continue
            kind = t["fields"].get(f, "text")
            if kind == "datetime":
                out[f] = iso_minute_z(v) if links else iso_z(v)
            elif kind.startswith("select:"):
                target = kind[7:]
                ref = {"id": v["id"]}
                rn = self.ref_name_of(target, v)
                if rn is not None:
                    ref["refName"] = rn
                out[f] = dict({"links": _link(self.href(base, target, v["id"]))} if links else {},
                              **ref)
            elif kind == SUBLIST:
                sub = {"links": _link(self.href(base, key, rid, f))} if links else {}
                if expand or not links:
                    lines = [dict({"links": self.line_link(base, key, rid, f, n, x)} if links else {},
                                  **x) for n, x in enumerate(v["items"])]
                    sub.update({"items": lines, "totalResults": len(lines)})
                out[f] = sub
            elif kind == "subrecord":
                out[f] = dict({"links": _link(self.href(base, key, rid, f))} if links else {}, **v)
            else:
                out[f] = v
        if links and expand:
            for f, kind in t["fields"].items():
                if kind == SUBLIST and f not in out and (only is None or f in only):
                    out[f] = {"links": _link(self.href(base, key, rid, f)), "items": [],
                              "totalResults": 0}
        elif links:
            for f, kind in t["fields"].items():
                if kind == SUBLIST and f not in out and (only is None or f in only):
                    out[f] = {"links": _link(self.href(base, key, rid, f))}
        return out

    def sql_row(self, key, rec):
        row = rec.get("_row")
        gen = (self.gen, user_tz())
        if row is not None and rec.get("_gen") == gen:
            return row
        t = self.types[key]
        row = {"id": rec["_id"]}
        for f, v in rec.items():
            if f.startswith("_"):
                continue
            kind = t["fields"].get(f)
            col = f.lower()
            if kind is None or kind in (SUBLIST, "subrecord"):
                continue
            if kind == "bool":
                row[col] = "T" if v else "F"
            elif kind.startswith("select:"):
                row[col] = v["id"]
                rn = self.ref_name_of(kind[7:], v)
                if rn is not None:
                    row["__df__" + col] = rn
            elif kind == "date":          # a day in the user's time zone
                row[col] = datetime.strptime(v, "%Y-%m-%d").replace(tzinfo=user_tz())
            else:
                row[col] = v
        if t["table"] == "transaction":
            row["type"] = t["tran_type"]
            row["recordtype"] = key
        rec["_row"] = row
        rec["_gen"] = gen
        return row

    # -- dispatch ------------------------------------------------------------
    def handle(self, req):
        path = req.path
        try:
            if path == TOKEN_PATH:
                return self.token_endpoint(req)
            USER_TZ.set(self.zone())
            restlet = path == RESTLET_PATH
            limit = self.config("netsuite_concurrency")
            if limit is not None and req.inflight > int(limit):
                if restlet:
                    return self.restlet_error(400, "SSS_REQUEST_LIMIT_EXCEEDED",
                                              "Request limit exceeded.")
                return ns_error(429, "CONCURRENCY_LIMIT_EXCEEDED", CONCURRENCY_DETAIL)
            denied = self.authenticate(req, "restlets" if restlet else "rest_webservices")
            if denied is not None:
                return denied
            if restlet:
                return self.restlet(req)
            if path == SUITEQL_PATH:
                if "respond-async" in self.prefers(req):
                    raise NsError(400, "INVALID_HEADER", "Asynchronous request execution isn't "
                                  "supported in the REST query service.", errorHeader="Prefer")
                return self.suiteql(req)
            if path.startswith(SYSTEM_PREFIX + "/"):
                return self.system(req)
            if path.startswith(ASYNC_PREFIX + "/"):
                return self.async_api(req)
            rest = req.path[len(RECORD_PREFIX):].strip("/")
            parts = [urllib.parse.unquote(p) for p in rest.split("/")] if rest else []
            if parts and parts[0] != "metadata-catalog":
                if "respond-async" in self.prefers(req):
                    try:
                        key = self.type_key(parts[0])
                    except KeyError:
                        raise NsError(404, "NONEXISTENT_ID", "Record type '%s' does not exist."
                                      % parts[0], urlPath=parts[0])
                    return self.async_submit(req, key, parts)
                if self.is_collection_body(req) and req.method in ("POST", "PATCH", "PUT"):
                    raise NsError(400, "INVALID_HEADER", "Batch operations are executed "
                                  "asynchronously: send the header 'Prefer: respond-async'.",
                                  errorHeader="Prefer")
            return self.record_api(req)
        except NsError as e:
            return ns_error(e.status, e.code, e.detail, **e.extra)

    # -- authentication -------------------------------------------------------
    def invalid_login(self, req, bearer=False, restlet=False):
        if bearer:
            www = 'Bearer realm="%s", error="invalid_token", error_description="Invalid login attempt."' % ACCOUNT
        else:
            www = ('OAuth realm="%s", error="token_rejected", '
                   'error_description="Invalid login attempt."' % ACCOUNT)
        if restlet:
            resp = self.restlet_error(401, "INVALID_LOGIN_ATTEMPT", "Invalid login attempt.")
            return resp.add_header("WWW-Authenticate", www)
        return ns_error(401, "INVALID_LOGIN", INVALID_LOGIN_DETAIL, [("WWW-Authenticate", www)])

    def authenticate(self, req, scope):
        restlet = scope == "restlets"
        auth = req.header("authorization", "")
        if auth[:7].lower() == "bearer ":
            tok = auth[7:].strip()
            with self.lock:
                info = self.tokens.get(tok)
            if info is None or self.emu.time() >= info["exp"] or scope not in info["scopes"]:
                return self.invalid_login(req, bearer=True, restlet=restlet)
            return None
        if auth[:6].lower() != "oauth ":
            return self.invalid_login(req, restlet=restlet)
        p = parse_oauth_header(auth)
        need = ("oauth_consumer_key", "oauth_token", "oauth_signature_method",
                "oauth_timestamp", "oauth_nonce", "oauth_signature")
        if any(k not in p for k in need):
            return self.invalid_login(req, restlet=restlet)
        if (p.get("realm", "").upper().replace("-", "_") != ACCOUNT
                or p["oauth_consumer_key"] != CONSUMER_KEY or p["oauth_token"] != TOKEN_ID
                or p["oauth_signature_method"] != "HMAC-SHA256"
                or p.get("oauth_version", "1.0") != "1.0" or len(p["oauth_nonce"]) < 6):
            return self.invalid_login(req, restlet=restlet)
        try:
            ts = int(p["oauth_timestamp"])
        except ValueError:
            return self.invalid_login(req, restlet=restlet)
        now = self.emu.time()
        if abs(now - ts) > TBA_MAX_SKEW_S:
            return self.invalid_login(req, restlet=restlet)
        query_pairs = urllib.parse.parse_qsl(req.raw_query, keep_blank_values=True)
        form_pairs = []
        if "application/x-www-form-urlencoded" in req.header("content-type", "").lower():
            form_pairs = urllib.parse.parse_qsl(req.body.decode("utf-8", "replace"),
                                                keep_blank_values=True)
        base = signature_base_string(req.method, req.url_base, req.path, p, query_pairs, form_pairs)
        key = (pct(CONSUMER_SECRET) + "&" + pct(TOKEN_SECRET)).encode()
        expect = base64.b64encode(hmac.new(key, base.encode(), hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expect, p["oauth_signature"]):
            return self.invalid_login(req, restlet=restlet)
        nkey = (p["oauth_consumer_key"], p["oauth_token"], p["oauth_nonce"], ts)
        with self.lock:
            if nkey in self.nonces:
                return self.invalid_login(req, restlet=restlet)
            self.nonces[nkey] = ts
            if len(self.nonces) > 20000:
                cutoff = now - 2 * TBA_MAX_SKEW_S
                self.nonces = {k: v for k, v in self.nonces.items() if v >= cutoff}
        return None

    # -- OAuth 2.0 client credentials (M2M) -----------------------------------
    def token_error(self, status, error):
        return json_response(status, {"error": error})

    def token_endpoint(self, req):
        if req.method != "POST":
            return self.token_error(405, "invalid_request")
        if "application/x-www-form-urlencoded" not in req.header("content-type", "").lower():
            return self.token_error(400, "invalid_request")
        form = dict(urllib.parse.parse_qsl(req.body.decode("utf-8", "replace"),
                                           keep_blank_values=True))
        gt = form.get("grant_type")
        if not gt:
            return self.token_error(400, "invalid_request")
        if gt != "client_credentials":
            return self.token_error(400, "unsupported_grant_type")
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" \
                or not form.get("client_assertion"):
            return self.token_error(400, "invalid_request")
        parts = form["client_assertion"].split(".")
        try:
            if len(parts) != 3:
                raise ValueError
            header = json.loads(certs.b64url_decode(parts[0]))
            claims = json.loads(certs.b64url_decode(parts[1]))
            sig = certs.b64url_decode(parts[2])
            if not isinstance(header, dict) or not isinstance(claims, dict):
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            return self.token_error(400, "invalid_request")
        alg = header.get("alg")
        if alg not in M2M_ALGS or header.get("typ", "JWT") != "JWT":
            # RS256 is retired
            return self.token_error(400, "invalid_request")
        if claims.get("iss") != M2M_CLIENT_ID:
            return self.token_error(401, "invalid_client")
        kid = header.get("kid")
        keyinfo = self.cert_keys.get(kid)
        if keyinfo is None:
            return self.token_error(400, "invalid_grant")
        signing_input = (parts[0] + "." + parts[1]).encode("ascii")
        if not verify_jws(alg, signing_input, sig, keyinfo):
            return self.token_error(400, "invalid_grant")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if not any(isinstance(a, str) and a.rstrip("/").endswith(TOKEN_PATH) for a in auds):
            return self.token_error(400, "invalid_grant")
        iat, exp = claims.get("iat"), claims.get("exp")
        now = self.emu.time()
        if not isinstance(iat, (int, float)) or not isinstance(exp, (int, float)) \
                or exp <= now or exp - iat > M2M_MAX_LIFETIME_S or iat > now + TBA_MAX_SKEW_S:
            return self.token_error(400, "invalid_grant")
        scope = claims.get("scope")
        if isinstance(scope, str):
            scopes = {s.strip() for s in re.split(r"[,\s]+", scope) if s.strip()}
        elif isinstance(scope, list):
            scopes = {str(s) for s in scope}
        else:
            scopes = set()
        if not scopes or not scopes <= {"restlets", "rest_webservices", "suite_analytics"}:
            return self.token_error(400, "invalid_scope")
        return json_response(200, self.issue_token(scopes))

    def issue_token(self, scopes):
        ttl = min(int(self.config("token_ttl_s") or 3600), 3600)
        now = int(self.emu.time())
        head = certs.b64url(json.dumps({"kid": "emulator.2026", "typ": "JWT", "alg": "PS256"}).encode())
        body = certs.b64url(json.dumps({"sub": "3;-5", "aud": M2M_CLIENT_ID, "scope": sorted(scopes),
                                        "iss": "https://system.netsuite.com", "exp": now + ttl,
                                        "iat": now, "jti": secrets.token_hex(8)}).encode())
        tok = head + "." + body + "." + certs.b64url(secrets.token_bytes(32))
        with self.lock:
            self.tokens[tok] = {"exp": now + ttl, "scopes": set(scopes)}
        # NetSuite 2025.2 sent "3600" (a string); the doc example a number
        expires = ttl if self.config("netsuite_expires_in_number") else str(ttl)
        return {"access_token": tok, "expires_in": expires, "token_type": "Bearer"}

    # -- system/v1: serverTime, governanceLimits -------------------------------
    def system(self, req):
        what = req.path[len(SYSTEM_PREFIX) + 1:]
        if what not in ("serverTime", "governanceLimits"):
            raise NsError(404, "NONEXISTENT_ID", "The requested resource does not exist.",
                          urlPath=what)
        if req.method != "GET":
            raise NsError(405, "INVALID_METHOD", "Method %s is not allowed. Use GET." % req.method)
        if what == "serverTime":
            # UTC with milliseconds (the documented example: "2025-03-26T16:21:00.000Z")
            now = self.emu.now().astimezone(timezone.utc)
            return json_response(200, {"serverTime": now.strftime("%Y-%m-%dT%H:%M:%S.")
                                       + "%03dZ" % (now.microsecond // 1000)})
        # no limit is allocated to this integration: limit type accountLimit
        limit = int(self.config("netsuite_concurrency") or 5)
        return json_response(200, {"accountConcurrencyLimit": limit,
                                   "accountUnallocatedConcurrencyLimit": limit,
                                   "integrationLimitType": "accountLimit"})

    # -- asynchronous requests and batch operations ----------------------------
    # Docs: "REST Web Services Request Processing" (chapter_161251386312) and its
    # subsections (sending, polling, results, idempotency); "Batch Operations"
    # (article_0127092747).  README-netsuite.md says which parts are guesses.

    @staticmethod
    def prefers(req):
        """The Prefer header's preferences, lower case, without parameters' quotes."""
        return {p.strip().lower().replace('"', "")
                for p in (req.header("prefer") or "").split(",") if p.strip()}

    def is_collection_body(self, req):
        ct = (req.header("content-type") or "").lower().replace(" ", "")
        return "type=collection" in ct

    def async_submit(self, req, key, parts):
        """A record-API request sent with Prefer: respond-async: run it as a job
        (a batch: one task per item), answer 202 + Location of the job."""
        idem = req.header("x-netsuite-idempotency-key")
        with self.lock:
            if idem is not None and idem in self.idempotency:
                # the documented answer: 400 titled "Conflict", Location of the first job
                body = ns_error_body(400, "IDEMPOTENCY_ERROR",
                                     'A request with the same idempotency key is already submitted. '
                                     'See the "Location" header for a link to the previously '
                                     'submitted job')
                body.update(type=IDEMPOTENCY_TYPE_URL, title="Conflict")
                return json_response(400, body, [
                    ("Preference-Applied", "respond-async"),
                    ("Location", "%s/job/%d" % (ASYNC_PREFIX, self.idempotency[idem]))],
                    content_type="application/json")
        batch = None
        m = req.method
        if len(parts) == 1 and (self.is_collection_body(req) or
                                (m in ("DELETE", "GET") and req.q1("ids") is not None)):
            batch = self.batch_requests(req, key)
        subrequests = batch if batch is not None else [req]
        tasks = []
        started = self.now()
        for sub in subrequests:
            try:
                if isinstance(sub, NsError):
                    raise sub
                resp = self.record_api(sub)
            except NsError as e:
                resp = ns_error(e.status, e.code, e.detail, **e.extra)
            tasks.append({"status": resp.status, "headers": resp.headers, "body": resp.body,
                          "start": started, "end": self.now()})
        with self.lock:
            self.job_seq += 1
            jid = self.job_seq
            delay = float(self.config("netsuite_async_delay_ms") or 0) / 1000.0
            self.jobs[jid] = {"tasks": tasks, "ready_at": self.emu.time() + delay}
            if idem is not None:
                self.idempotency[idem] = jid
        return empty_response(202, [("Preference-Applied", "respond-async"),
                                    ("Content-Type", "application/json"),
                                    ("Location", "%s/job/%d" % (ASYNC_PREFIX, jid))])

    def batch_requests(self, req, key):
        """The per-record requests of a batch (or the NsError its task answers):
        a collection body {"items": [...]} for POST/PATCH/PUT, or ?ids=1,2,eid:x
        for DELETE/GET."""
        m = req.method
        base = "%s/%s" % (RECORD_PREFIX, key)
        plain = {k: v for k, v in req.headers.items()
                 if k not in ("content-type", "prefer", "x-netsuite-idempotency-key")}
        plain["content-type"] = "application/json"

        def sub(method, path, body=None, query=""):
            return Request(method, path, urllib.parse.parse_qs(query, keep_blank_values=True),
                           query, plain, json.dumps(body).encode() if body is not None else b"",
                           req.inflight, req.url_base)
        if m in ("DELETE", "GET"):
            ids = [x.strip() for x in (req.q1("ids") or "").split(",") if x.strip()]
            if not ids or len(ids) > BATCH_MAX:
                raise NsError(400, "INVALID_PARAMETER", "Invalid value for the query parameter ids. "
                              "Provide 1 to %d record IDs." % BATCH_MAX, errorQueryParam="ids")
            query = ""
            if m == "GET" and (req.q1("expandRecords") or "").lower() == "true":
                query = "expandSubResources=true"
            return [sub(m, "%s/%s" % (base, urllib.parse.quote(i, safe=":")), query=query) for i in ids]
        if m not in ("POST", "PATCH", "PUT"):
            raise NsError(405, "INVALID_METHOD", "Method %s is not allowed on a collection." % m)
        body = self.json_body(req)
        items = body.get("items")
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
            raise NsError(400, "INVALID_CONTENT", "The request body must contain \"items\", a list "
                          "of 1 to %d record objects." % BATCH_MAX, errorPath="items")
        if len(items) > BATCH_MAX:
            raise NsError(400, "INVALID_CONTENT", "You can work with a maximum of %d records in "
                          "one batch request." % BATCH_MAX, errorPath="items")
        out = []
        for item in items:
            rid, eid = item.get("id"), item.get("externalId")
            if m == "POST":                     # create
                out.append(sub("POST", base, item))
            elif m == "PUT" and eid is not None:    # upsert by external ID
                out.append(sub("PUT", "%s/eid:%s" % (base, urllib.parse.quote(str(eid))), item))
            elif rid is not None:               # update by internal ID
                rest = {k: v for k, v in item.items() if k != "id"}
                out.append(sub("PATCH", "%s/%s" % (base, urllib.parse.quote(str(rid))), rest))
            elif eid is not None:               # PATCH: update by external ID
                rest = {k: v for k, v in item.items() if k != "externalId"}
                out.append(sub("PATCH", "%s/eid:%s" % (base, urllib.parse.quote(str(eid))), rest))
            else:               # this item's task fails; the others go on
                out.append(NsError(400, "INVALID_CONTENT", "Each item of a %s batch must "
                                   "contain \"id\" or \"externalId\"." % m, errorPath="id"))
        return out

    def job_progress(self, job):
        if self.emu.time() < job["ready_at"]:
            return False, "pending"
        ok = all(t["status"] < 400 for t in job["tasks"])
        return True, "succeeded" if ok else "failed"

    def async_api(self, req):
        """GET /services/rest/async/v1/job/{id}[/task[/{n}[/result]]]."""
        parts = [p for p in req.path[len(ASYNC_PREFIX):].split("/") if p]
        if req.method != "GET":
            raise NsError(405, "INVALID_METHOD", "Method %s is not allowed. Use GET." % req.method)
        if len(parts) < 2 or parts[0] != "job" or len(parts) > 5 or \
                (len(parts) >= 3 and parts[2] != "task") or (len(parts) == 5 and parts[4] != "result"):
            raise NsError(404, "NONEXISTENT_ID", "The requested resource does not exist.")
        with self.lock:
            try:
                job = self.jobs[int(parts[1])]
            except (ValueError, KeyError):
                raise NsError(404, "NONEXISTENT_ID", "The job %s does not exist." % parts[1],
                              urlPath=parts[1])
            jurl = "%s%s/job/%s" % (req.url_base, ASYNC_PREFIX, parts[1])
            completed, progress = self.job_progress(job)
            if len(parts) == 2:
                return json_response(200, {"links": _link(jurl), "completed": completed,
                                           "id": parts[1], "progress": progress,
                                           "task": {"links": _link(jurl + "/task")}},
                                     content_type=CT_SINGULAR)
            if len(parts) == 3:
                items = [{"links": _link("%s/task/%d" % (jurl, n)), "id": str(n)}
                         for n in range(1, len(job["tasks"]) + 1)]
                return json_response(200, {"links": _link(jurl + "/task"), "count": len(items),
                                           "hasMore": False, "items": items, "offset": 0,
                                           "totalResults": len(items)}, content_type=CT_COLLECTION)
            try:
                n = int(parts[3])
                task = job["tasks"][n - 1]
                if n < 1:
                    raise IndexError
            except (ValueError, IndexError):
                raise NsError(404, "NONEXISTENT_ID", "The task %s does not exist." % parts[3],
                              urlPath=parts[3])
            turl = "%s/task/%d" % (jurl, n)
            if len(parts) == 4:
                out = {"links": [{"rel": "related", "href": turl + "/result"},
                                 {"rel": "self", "href": turl}],
                       "completed": completed, "id": str(n),
                       "progress": progress if not completed else
                       ("succeeded" if task["status"] < 400 else "failed"),
                       "startTime": iso_z(task["start"])}
                if completed:
                    out["endTime"] = iso_z(task["end"])
                return json_response(200, out, content_type=CT_SINGULAR)
            if not completed:
                raise NsError(404, "NONEXISTENT_ID", "The result of task %d is not available "
                              "yet: the job is pending." % n)
            # the task's own answer, as the synchronous request would have had it
            return Response(task["status"], task["body"], task["headers"])

    # -- record API ----------------------------------------------------------
    def parse_limit_offset(self, req):
        def intparam(name, default):
            raw = req.q1(name)
            if raw is None or raw == "":
                return default
            try:
                return int(raw)
            except ValueError:
                raise NsError(400, "INVALID_PARAMETER", "Invalid value for the query parameter "
                              "%s. Provide a valid integer value." % name, errorQueryParam=name)
        limit = intparam("limit", MAX_LIMIT)
        offset = intparam("offset", 0)
        if limit < 1 or limit > MAX_LIMIT:
            raise NsError(400, "INVALID_PARAMETER", "Invalid value for the query parameter limit. "
                          "The value must be between 1 and %d." % MAX_LIMIT, errorQueryParam="limit")
        if offset < 0 or offset % limit:
            raise NsError(400, "INVALID_PARAMETER", "Invalid value for the query parameter offset. "
                          "The offset must be a non-negative multiple of the limit.",
                          errorQueryParam="offset")
        if offset >= MAX_RESULTS:
            raise NsError(400, "INVALID_PARAMETER", "Invalid value for the query parameter offset. "
                          "A maximum of %d results can be returned." % MAX_RESULTS,
                          errorQueryParam="offset")
        return limit, offset

    def page_links(self, base_url, extra_query, limit, offset, total):
        def url(off):
            q = [(k, v) for k, v in extra_query] + [("limit", limit), ("offset", off)]
            return base_url + "?" + urllib.parse.urlencode(q, quote_via=urllib.parse.quote)
        links = []
        last = max(0, (min(total, MAX_RESULTS) - 1) // limit * limit)
        if offset > 0:
            links.append({"rel": "previous", "href": url(max(0, offset - limit))})
            links.append({"rel": "first", "href": url(0)})
        if offset + limit < min(total, MAX_RESULTS):
            links.append({"rel": "next", "href": url(offset + limit)})
            links.append({"rel": "last", "href": url(last)})
        return links

    def record_api(self, req):
        rest = req.path[len(RECORD_PREFIX):].strip("/")
        parts = [urllib.parse.unquote(p) for p in rest.split("/")] if rest else []
        if parts and parts[0] == "metadata-catalog":
            return self.metadata(req, parts[1:])
        if not parts:
            raise NsError(404, "NONEXISTENT_ID", "The requested resource does not exist.")
        try:
            key = self.type_key(parts[0])
        except KeyError:
            raise NsError(404, "NONEXISTENT_ID", "Record type '%s' does not exist." % parts[0],
                          urlPath=parts[0])
        m = req.method
        if len(parts) == 1:
            if m == "GET":
                return self.list_records(req, key)
            if m == "POST":
                return self.create_record(req, key)
            raise NsError(405, "INVALID_METHOD", "Method %s is not allowed on a collection." % m)
        if len(parts) > 3:
            raise NsError(404, "NONEXISTENT_ID", "The requested resource does not exist.")
        ident = parts[1]
        if ident.startswith("eid:") and not EID_RE.fullmatch(ident[4:]):
            raise NsError(400, "INVALID_PARAMETER", "Invalid external ID '%s'. In REST web services "
                          "an external ID can contain only letters, numbers, underscore (_) and "
                          "hyphen (-)." % ident[4:], urlPath=ident)
        if m == "PUT":
            if not ident.startswith("eid:"):
                raise NsError(405, "INVALID_METHOD", "PUT is supported only with an external ID "
                              "(eid:...).")
            return self.upsert_record(req, key, ident[4:])
        with self.lock:
            rid = self.resolve(key, ident)
            if m == "GET":
                rec = self.recs[key][rid]
                if len(parts) == 3:
                    return self.get_subresource(req, key, rec, parts[2])
                only = None
                if req.q1("fields"):
                    only = {f.strip() for f in req.q1("fields").split(",") if f.strip()}
                expand = (req.q1("expandSubResources") or "").lower() == "true"
                body = self.render(key, rec, req.url_base, expand=expand, only=only)
                # as recorded: the record's self link is the URL as called, query included
                body["links"] = _link(req.url_base + req.path
                                      + ("?" + req.raw_query if req.raw_query else ""))
                return json_response(200, body, content_type=CT_SINGULAR)
            if len(parts) == 3:
                raise NsError(405, "INVALID_METHOD", "Method %s is not allowed here." % m)
            if m == "PATCH":
                body = self.json_body(req)
                warnings = []
                self._update(key, rid, body, strict_names=self.strict(req), warnings=warnings)
                # 204 with Location, as documented for updates (section_1545142173)
                return self.no_content(warnings, self.href(req.url_base, key, rid))
            if m == "DELETE":
                self._delete(key, rid)
                return empty_response(204)
        raise NsError(405, "INVALID_METHOD", "Method %s is not allowed." % m)

    def get_subresource(self, req, key, rec, field):
        kind = self.types[key]["fields"].get(field)
        if kind not in (SUBLIST, "subrecord"):
            raise NsError(404, "NONEXISTENT_ID", "The requested resource does not exist.")
        href = self.href(req.url_base, key, rec["_id"], field)
        if kind == "subrecord":
            return json_response(200, dict({"links": _link(href)}, **rec.get(field, {})),
                                 content_type=CT_SINGULAR)
        lines = rec.get(field, {"items": []})["items"]
        return json_response(200, {"links": _link(href), "items": [
            dict({"links": self.line_link(req.url_base, key, rec["_id"], field, n, x)}, **x)
            for n, x in enumerate(lines)],
                                   "totalResults": len(lines)}, content_type=CT_COLLECTION)

    def strict(self, req):
        return (req.header("x-netsuite-propertynamevalidation") or "").lower() == "error"

    def no_content(self, warnings, location=None):
        resp = empty_response(204)
        if location:
            resp.add_header("Location", location)
        if warnings:
            resp.add_header("X-NetSuite-PropertyValidation", "; ".join(warnings))
        return resp

    def json_body(self, req):
        try:
            body = req.json()
        except ValueError:
            # the live words (julbrs/netsuite-api-client's tests)
            raise NsError(400, "INVALID_CONTENT", "Invalid content in the request body. The body "
                          "is not valid JSON.")
        if not isinstance(body, dict):
            raise NsError(400, "INVALID_CONTENT", "The request body must be a JSON object.")
        return body

    def resolve(self, key, ident):
        if ident.startswith("eid:"):
            rid = self.eids[key].get(ident[4:])
            if rid is not None:
                return rid
        else:
            try:
                rid = int(ident)
            except ValueError:
                rid = None
            if rid is not None and rid in self.recs[key]:
                return rid
        raise NsError(404, "NONEXISTENT_ID", "The record instance does not exist. Provide a valid "
                      "record instance ID.", urlPath=ident)

    def create_record(self, req, key):
        body = self.json_body(req)
        warnings = []
        with self.lock:
            rid = self._create(key, body, strict_names=self.strict(req), warnings=warnings)
        return self.no_content(warnings, self.href(req.url_base, key, rid))

    def upsert_record(self, req, key, eid):
        body = self.json_body(req)
        if not eid:
            raise NsError(404, "NONEXISTENT_ID", "The record instance does not exist.")
        if body.get("externalId") not in (None, eid):
            raise NsError(400, "INVALID_CONTENT", "Error while accessing a resource. The external "
                          "ID in the request body does not match the external ID in the URL.",
                          errorPath="externalId")
        body = dict(body, externalId=eid)
        warnings = []
        with self.lock:
            rid = self.eids[key].get(eid)
            if rid is None:
                rid = self._create(key, body, strict_names=self.strict(req), warnings=warnings)
            else:
                self._update(key, rid, body, strict_names=self.strict(req), warnings=warnings)
        return self.no_content(warnings, self.href(req.url_base, key, rid))

    def list_records(self, req, key):
        limit, offset = self.parse_limit_offset(req)
        flt = self.parse_q(key, req.q1("q")) if req.q1("q") else None
        with self.lock:
            ids = sorted(rid for rid, rec in self.recs[key].items()
                         if flt is None or self.match_q(key, rec, flt))
        total = len(ids)
        page = ids[offset:offset + limit]
        # as recorded: paging links name the type in lower case, self is the URL as called
        base = "%s%s/%s" % (req.url_base, RECORD_PREFIX, key)
        extra = [("q", req.q1("q"))] if req.q1("q") else []
        links = self.page_links(base, extra, limit, offset, total)
        links.append({"rel": "self", "href": req.url_base + req.path
                      + ("?" + req.raw_query if req.raw_query else "")})
        items = [{"links": _link(self.href(req.url_base, key, rid)), "id": str(rid)} for rid in page]
        return json_response(200, {"links": links, "count": len(items),
                                   "hasMore": offset + len(items) < min(total, MAX_RESULTS),
                                   "items": items, "offset": offset, "totalResults": total},
                             content_type=CT_COLLECTION)

    # q= filters of the collection endpoint
    Q_OPS = {"AFTER", "BEFORE", "ON", "ON_OR_AFTER", "ON_OR_BEFORE", "WITHIN", "EMPTY", "EMPTY_NOT",
             "IS", "IS_NOT", "CONTAIN", "DOES_NOT_CONTAIN", "START_WITH", "END_WITH", "EQUAL",
             "NOT_EQUAL", "GREATER", "GREATER_OR_EQUAL", "LESS", "LESS_OR_EQUAL", "BETWEEN",
             "ANY_OF", "NONE_OF"}

    def parse_q(self, key, q):
        toks = [m.group(1) for m in re.finditer(r'\s*("(?:[^"\\]|\\.)*"|\S+)', q)]
        def bad(msg):
            return NsError(400, "INVALID_PARAMETER", "Invalid query parameter value. %s" % msg,
                           errorQueryParam="q")
        groups, cur, i = [], [], 0
        fields = self.types[key]["fields"]
        while i < len(toks):
            f = toks[i]
            if f not in fields and f != "id":
                raise bad("Field '%s' is not a valid filter for record type '%s'."
                          % (f, self.types[key]["name"]))
            if i + 1 >= len(toks) or toks[i + 1].upper() not in self.Q_OPS:
                raise bad("Missing or unknown operator after '%s'." % f)
            op = toks[i + 1].upper()
            n = 0 if op in ("EMPTY", "EMPTY_NOT") else 2 if op in ("WITHIN", "BETWEEN") else 1
            vals = [t[1:-1].replace('\\"', '"') if t.startswith('"') else t
                    for t in toks[i + 2:i + 2 + n]]
            if len(vals) != n:
                raise bad("Missing value for '%s %s'." % (f, op))
            if op in ("ANY_OF", "NONE_OF"):
                vals = [v.strip() for v in vals[0].split(",")]
            kind = "int" if f == "id" else fields[f]
            if kind in ("date", "datetime"):
                try:
                    vals = [parse_user_or_iso(v) for v in vals]
                except ValueError:
                    raise bad("Invalid date value for '%s'." % f)
            cur.append((f, op, vals))
            i += 2 + n
            if i < len(toks):
                conj = toks[i].upper()
                if conj not in ("AND", "OR"):
                    raise bad("Expected AND or OR.")
                if conj == "OR":
                    groups.append(cur)
                    cur = []
                i += 1
                if i >= len(toks):
                    raise bad("Dangling %s." % conj)
        groups.append(cur)
        return groups

    def match_q(self, key, rec, groups):
        return any(all(self.match_cond(key, rec, c) for c in g) for g in groups)

    def match_cond(self, key, rec, cond):
        f, op, vals = cond
        kind = "int" if f == "id" else self.types[key]["fields"][f]
        v = rec["_id"] if f == "id" else rec.get(f)
        if op == "EMPTY":
            return v in (None, "")
        if op == "EMPTY_NOT":
            return v not in (None, "")
        if v is None:
            return op in ("IS_NOT", "NONE_OF", "DOES_NOT_CONTAIN", "NOT_EQUAL")
        if kind in ("date", "datetime"):
            if kind == "date":
                v = datetime.strptime(v, "%Y-%m-%d").replace(tzinfo=user_tz())
            a = vals[0]
            day_only = a.hour == a.minute == a.second == 0
            end = a + timedelta(days=1) if day_only else a
            return {"AFTER": v >= end if day_only else v > a, "BEFORE": v < a,
                    "ON": a <= v < a + timedelta(days=1), "ON_OR_AFTER": v >= a,
                    "ON_OR_BEFORE": v < end if day_only else v <= a,
                    "WITHIN": len(vals) == 2 and a <= v <= vals[1]}.get(op, False)
        if kind.startswith("select:"):
            hit = v["id"] in vals
            return hit if op in ("ANY_OF", "IS", "EQUAL") else not hit
        if kind == "bool":
            want = vals[0].lower() in ("true", "t")
            return (v == want) if op in ("IS", "EQUAL") else (v != want)
        if kind in ("float", "int"):
            try:
                nums = [float(x) for x in vals]
            except ValueError:
                return False
            return {"EQUAL": v == nums[0], "IS": v == nums[0], "NOT_EQUAL": v != nums[0],
                    "GREATER": v > nums[0], "GREATER_OR_EQUAL": v >= nums[0],
                    "LESS": v < nums[0], "LESS_OR_EQUAL": v <= nums[0],
                    "BETWEEN": len(nums) == 2 and nums[0] <= v <= nums[1],
                    "ANY_OF": v in nums, "NONE_OF": v not in nums}.get(op, False)
        s, x = str(v).lower(), vals[0].lower()
        return {"IS": s == x, "IS_NOT": s != x, "CONTAIN": x in s, "DOES_NOT_CONTAIN": x not in s,
                "START_WITH": s.startswith(x), "END_WITH": s.endswith(x),
                "EQUAL": s == x, "ANY_OF": s in [y.lower() for y in vals]}.get(op, False)

    # -- metadata catalog ------------------------------------------------------
    @staticmethod
    def title_of(field):
        words = re.sub(r"(?<=[a-z0-9])([A-Z])", r" \1", field).replace("_", " ").split()
        return " ".join(w[:1].upper() + w[1:] for w in words)

    def schema_props(self, key, openapi=False):
        t = self.types[key]
        props = {}
        link_items = ({"$ref": "#/components/schemas/nsLink"} if openapi
                      else {"$ref": "/rest/platform/v1/metadata-catalog/record/x-ns-link"})
        for f, kind in t["fields"].items():
            title = self.title_of(f)
            if kind in ("text", "enum", "email"):
                p = {"title": title, "type": "string"}
            elif kind == "bool":
                p = {"title": title, "type": "boolean"}
            elif kind == "float":
                p = {"title": title, "type": "number", "format": "double"}
            elif kind == "int":
                p = {"title": title, "type": "number", "format": "integer"}
            elif kind == "date":
                p = {"title": title, "type": "string", "format": "date"}
            elif kind == "datetime":
                p = {"title": title, "type": "string", "format": "date-time"}
            elif kind.startswith("select:"):
                p = {"$ref": "/rest/platform/v1/metadata-catalog/record/" + kind[7:]}
            elif kind == SUBLIST:
                p = {"type": "object", "properties": {
                    "links": {"title": "links", "type": "array", "readOnly": True, "items": link_items},
                    "totalResults": {"title": "totalResults", "type": "integer", "format": "integer", "readOnly": True},
                    "count": {"title": "count", "type": "integer", "format": "integer", "readOnly": True},
                    "hasMore": {"title": "hasMore", "type": "boolean", "readOnly": True},
                    "offset": {"title": "offset", "type": "integer", "format": "integer", "readOnly": True},
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "links": {"title": "links", "type": "array", "readOnly": True, "items": link_items}}}}}}
            else:
                p = {"type": "object", "properties": {
                    "links": {"title": "links", "type": "array", "readOnly": True, "items": link_items}}}
            if openapi and "title" in p:
                p["nullable"] = kind not in ("bool",)
                if f.startswith("cust"):
                    p["x-ns-custom-field"] = True
            props[f] = p
        props["id"] = {"title": "Internal ID", "type": "string"}
        props["links"] = {"title": "links", "type": "array", "readOnly": True, "items": link_items}
        props["refName"] = {"title": "refName", "type": "string", "readOnly": True}
        filterable = [f for f, k in t["fields"].items() if k not in ("subrecord",)] + ["id"]
        return props, filterable

    def metadata(self, req, parts):
        if req.method != "GET":
            raise NsError(405, "INVALID_METHOD", "Method %s is not allowed." % req.method)
        base = req.url_base + RECORD_PREFIX + "/metadata-catalog"
        if not parts or parts == [""]:
            items = []
            select = None
            if req.q1("select"):                # ?select=customer,contact (section_1540810174)
                select = {x.strip().lower() for x in req.q1("select").split(",") if x.strip()}
            for key, t in sorted(self.types.items()):
                if select is not None and key not in select:
                    continue
                href = base + "/" + key
                items.append({"name": key, "links": [
                    {"rel": "canonical", "href": href, "mediaType": "application/json"},
                    {"rel": "alternate", "href": href, "mediaType": "application/swagger+json"},
                    {"rel": "alternate", "href": href, "mediaType": "application/schema+json"},
                    {"rel": "describes", "href": req.url_base + RECORD_PREFIX + "/" + key}]})
            return json_response(200, {"items": items, "links": _link(base)},
                                 content_type="application/json")
        try:
            key = self.type_key(parts[0])
        except KeyError:
            raise NsError(404, "NONEXISTENT_ID", "Record type '%s' does not exist." % parts[0])
        t = self.types[key]
        accept = (req.header("accept") or "").lower()
        if "application/schema+json" in accept:
            props, filterable = self.schema_props(key)
            return json_response(200, {"type": "object", "properties": props,
                                       "x-ns-filterable": filterable,
                                       "x-ns-support-level": "beta" if t.get("custom") else "ga"},
                                 content_type="application/schema+json")
        props, filterable = self.schema_props(key, openapi=True)
        name = t["name"]
        err = {"default": {"description": "Error response.", "content": {
            CT_ERROR: {"schema": {"$ref": "#/components/schemas/nsError"}}}}}
        body_ref = {"description": "Request body", "required": True, "content": {
            CT_SINGULAR: {"schema": {"$ref": "#/components/schemas/" + name}}}}
        idp = {"name": "id", "in": "path", "description": "Internal identifier", "required": True,
               "schema": {"type": "number"}}
        ok204 = lambda d: dict({"204": {"description": d}}, **err)  # noqa: E731
        doc = {
            "openapi": "3.0.1",
            "info": {"title": "NetSuite REST Record API",
                     "description": "NetSuite REST Record API (sync emulator) for account %s." % ACCOUNT,
                     "version": "v1"},
            "servers": [{"url": req.url_base + RECORD_PREFIX}],
            "security": [{"OAuth 1.0 authorization": []}, {"OAuth 2.0 authorization": []}],
            "paths": {
                "/" + name: {
                    "get": {"summary": "Get list of records.", "parameters": [
                        {"name": "q", "in": "query", "required": False, "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "required": False,
                         "schema": {"type": "integer", "default": 1000}},
                        {"name": "offset", "in": "query", "required": False,
                         "schema": {"type": "integer", "default": 0}}],
                        "responses": dict({"200": {"description": "List of records.", "content": {
                            CT_COLLECTION: {"schema": {"$ref": "#/components/schemas/%sCollection" % name}}}}}, **err)},
                    "post": {"summary": "Insert record.", "requestBody": body_ref,
                             "responses": ok204("Inserted record.")}},
                "/" + name + "/{id}": {
                    "get": {"summary": "Get record.", "parameters": [idp, {
                        "name": "expandSubResources", "in": "query", "required": False,
                        "schema": {"type": "boolean", "default": False}}],
                        "responses": dict({"200": {"description": "Retrieved record.", "content": {
                            CT_SINGULAR: {"schema": {"$ref": "#/components/schemas/" + name}}}}}, **err)},
                    "put": {"summary": "Insert or update record.", "parameters": [dict(idp, description="externalId", schema={"type": "string", "pattern": "eid:([\\p{L}0-9_\\-]+)"})],
                            "requestBody": body_ref, "responses": ok204("Upserted record.")},
                    "delete": {"summary": "Remove record.", "parameters": [idp],
                               "responses": ok204("Removed record.")},
                    "patch": {"summary": "Update record.", "parameters": [idp], "requestBody": body_ref,
                              "responses": ok204("Updated record.")}}},
            "components": {
                "schemas": {
                    name: {"type": "object", "properties": props, "x-ns-filterable": filterable},
                    name + "Collection": {"type": "object", "properties": {
                        "links": {"type": "array", "readOnly": True, "items": {"$ref": "#/components/schemas/nsLink"}},
                        "totalResults": {"type": "integer", "format": "int64", "readOnly": True},
                        "items": {"type": "array", "items": {"$ref": "#/components/schemas/" + name}},
                        "count": {"type": "integer", "format": "int64", "readOnly": True},
                        "hasMore": {"type": "boolean", "readOnly": True},
                        "offset": {"type": "integer", "format": "int64", "readOnly": True}}},
                    "nsLink": {"type": "object", "properties": {
                        "rel": {"title": "Relationship", "type": "string", "readOnly": True},
                        "href": {"title": "Hypertext Reference", "type": "string", "readOnly": True}}},
                    "nsError": {"type": "object", "properties": {
                        "type": {"title": "Type", "type": "string", "readOnly": True},
                        "title": {"title": "Title", "type": "string", "readOnly": True},
                        "status": {"title": "Status", "type": "integer", "format": "int32", "readOnly": True},
                        "o:errorCode": {"title": "Error code", "type": "string", "readOnly": True},
                        "detail": {"title": "Detail", "type": "string", "readOnly": True}}}},
                "securitySchemes": {
                    "OAuth 1.0 authorization": {"type": "apiKey", "description": "OAuth 1.0 - https://tools.ietf.org/html/rfc5849",
                                                "name": "authorization", "in": "header"},
                    "OAuth 2.0 authorization": {"type": "http", "scheme": "bearer"}}}}
        return json_response(200, doc, content_type="application/swagger+json")

    # -- SuiteQL ---------------------------------------------------------------
    def suiteql(self, req):
        if req.method != "POST":
            raise NsError(405, "INVALID_METHOD", "Method %s is not allowed. Use POST." % req.method)
        prefer = (req.header("prefer") or "").lower()
        if "transient" not in [p.strip() for p in prefer.split(",")]:
            raise NsError(400, "INVALID_HEADER", "Invalid request header. The header 'Prefer: "
                          "transient' is required for SuiteQL queries.", errorHeader="Prefer")
        body = self.json_body(req)
        q = body.get("q")
        if not isinstance(q, str) or not q.strip():
            raise NsError(400, "INVALID_CONTENT", "The request body must contain the query "
                          "parameter 'q'.", errorPath="q")
        params = body.get("params")
        if params is not None and not isinstance(params, list):
            raise NsError(400, "INVALID_CONTENT", "The request body parameter 'params' must be a "
                          "list of values.", errorPath="params")
        limit, offset = self.parse_limit_offset(req)
        try:
            with self.lock:
                cols, rows = self.run_suiteql(q, params)
        except QueryError as e:
            raise NsError(400, "INVALID_PARAMETER", SUITEQL_PREFIX + str(e), errorQueryParam="q")
        total = len(rows)
        page = rows[offset:offset + limit]
        items = []
        for r in page:
            item = {"links": []}
            for c, v in zip(cols, r):
                if v is None or v == "":
                    continue
                item[c] = render_sql_value(v)
            items.append(item)
        base = req.url_base + req.path
        links = self.page_links(base, [], limit, offset, total)
        links.append({"rel": "self", "href": base + ("?" + req.raw_query if req.raw_query else "")})
        return json_response(200, {"links": links, "count": len(items),
                                   "hasMore": offset + len(items) < min(total, MAX_RESULTS),
                                   "items": items, "offset": offset, "totalResults": total},
                             content_type=CT_COLLECTION)

    def table_rows(self, table):
        """A SuiteQL table's rows in their natural order (internal ID; the
        deletedrecord table in the order of the deletes)."""
        if table == DELETED_TABLE:
            return [self.deleted_row(d) for d in self.deleted]
        src = []
        for key, t in self.types.items():
            if t["table"] == table:
                src.extend(self.sql_row(key, r) for r in self.recs[key].values())
        src.sort(key=lambda r: r["id"])
        return src

    def deleted_row(self, d):
        key = d["recordtype"]
        t = self.types.get(key, {})
        custom = bool(t.get("custom")) and t.get("table") != "transaction"
        (by, by_name), (ctx, ctx_name) = d["_by"], d["_context"]
        return {"name": d.get("name"), "recordid": int(d["recordid"]),
                "recordtypeid": t.get("type_id") if custom else None,
                "scriptid": key.upper() if custom else None,
                "context": ctx, "__df__context": ctx_name,
                "deletedby": by, "__df__deletedby": by_name,
                "deleteddate": d["deleteddate"], "iscustomlist": "F",
                "iscustomrecord": "T" if custom else "F", "iscustomtransaction": "F",
                "type": key}

    def run_suiteql(self, text, params=None):
        q = Parser(text, params).parse()
        table = q["table"].lower()
        columns = self.columns(table)
        if columns is None:
            if table == DELETED_TABLE and self.deletedrecord_mode() == "no_permission":
                # there, but not for this role (hotglue's text)
                raise QueryError("Search error occurred: Record '%s' was not found." % q["table"])
            # a live answer (julbrs/netsuite-api-client's tests)
            raise QueryError("Invalid search type: %s." % table)
        ev = Evaluator(columns, table, q["alias"], self.emu.now())
        aliases = set()
        if q["select"] != "*":
            for e, alias in q["select"]:
                ev.check(e)
                if alias:
                    aliases.add(alias.lower())
        if q["where"] is not None:
            ev.check(q["where"])
        for e, _, _ in q["order"]:
            ev.check(e, aliases)
        src = self.table_rows(table)
        if q["where"] is not None:
            src = [r for r in src if ev.ev(q["where"], r) is True]
        if q["select"] == "*":
            names = (["id"] if "id" in columns else []) + sorted(columns - {"id"})
            exprs = [("col", n) for n in names]
        else:
            names, exprs, n = [], [], 0
            for e, alias in q["select"]:
                n += 1
                if alias:
                    names.append(alias.lower())
                elif e[0] == "col":
                    names.append(ev.colname(e[1]))
                else:
                    names.append("expr%d" % n)
                exprs.append(e)
        if len(names) > MAX_SELECT_COLUMNS:
            return names, []            # no error, no rows (Estuary's docs, reference §5)
        if any(e[0] == "fn" and e[1] == "COUNT" for e in exprs):
            if not all(e[0] == "fn" and e[1] == "COUNT" for e in exprs):
                raise QueryError("Invalid or unsupported search")
            vals = []
            for e in exprs:
                a = e[2][0] if e[2] else ("star",)
                vals.append(len(src) if a[0] == "star" else
                            sum(1 for r in src if ev.ev(a, r) is not None))
            return names, [vals]
        out = []
        for r in src:
            vals = [ev.ev(e, r) for e in exprs]
            out.append((r, vals))
        if q["distinct"]:
            seen, uniq = set(), []
            for r, vals in out:
                k = tuple(render_sql_value(v) if v is not None else None for v in vals)
                if k not in seen:
                    seen.add(k)
                    uniq.append((r, vals))
            out = uniq
        for e, desc, nulls_first in reversed(q["order"]):
            null_big = nulls_first == desc
            sentinel = (2, 0, "") if null_big else (-1, 0, "")

            def keyf(item, e=e, sentinel=sentinel):
                r, vals = item
                if e[0] == "col" and e[1].lower() in names and e[1].lower() in aliases:
                    v = vals[names.index(e[1].lower())]
                else:
                    v = ev.ev(e, r)
                return sentinel if v is None else _sort_key(v)
            out.sort(key=keyf, reverse=desc)
        rows = [vals for _, vals in out]
        cap = [x for x in (q["top"], q["fetch"]) if x is not None]
        if cap:
            rows = rows[:min(cap)]
        return names, rows

    # -- the deleted-records RESTlet --------------------------------------------
    def restlet_error(self, status, code, message):
        return json_response(status, {"error": {"code": code, "message": message}},
                             content_type="application/json")

    @staticmethod
    def restlet_entry(d):
        out = {k: v for k, v in d.items() if not k.startswith("_")}
        out["deleteddate"] = iso_z(d["deleteddate"])
        return out

    def restlet(self, req):
        script, deploy = req.q1("script"), req.q1("deploy")
        if (not self.restlet_deployed or script not in (RESTLET_SCRIPT, RESTLET_SCRIPT_INTERNAL_ID)
                or deploy not in RESTLET_DEPLOY):
            return self.restlet_error(400, "SSS_INVALID_SCRIPTLET_ID",
                                      "That Suitelet is invalid, disabled, or no longer exists.")
        if req.method not in ("GET", "POST"):
            return self.restlet_error(405, "SSS_INVALID_HTTP_METHOD",
                                      "Method %s is not supported by this RESTlet." % req.method)
        params = {k: v[0] for k, v in req.query.items()}
        if req.method == "POST" and req.body and "x-www-form-urlencoded" in \
                req.header("content-type", "").lower():
            params.update(urllib.parse.parse_qsl(req.body.decode("utf-8", "replace")))
        elif req.method == "POST" and req.body:
            try:
                b = req.json()
            except ValueError:
                return self.restlet_error(400, "SYNTAX_ERROR", "Invalid JSON body.")
            if not isinstance(b, dict):
                return self.restlet_error(400, "INVALID_ARGUMENT", "The body must be a JSON object.")
            params.update({k: v for k, v in b.items()})
        try:
            utc = timezone.utc      # the RESTlet's own contract: UTC
            since = parse_user_or_iso(str(params["since"]), utc) if params.get("since") else None
            until = parse_user_or_iso(str(params["until"]), utc) if params.get("until") else None
            limit = int(params.get("limit", 1000))
            offset = int(params.get("offset", 0))
        except (ValueError, TypeError):
            return self.restlet_error(400, "INVALID_ARGUMENT",
                                      "since/until must be dates; limit/offset integers.")
        if not 1 <= limit <= 1000 or offset < 0:
            return self.restlet_error(400, "INVALID_ARGUMENT", "limit must be 1-1000, offset >= 0.")
        types = params.get("types") or params.get("type")
        if isinstance(types, str):
            types = [x.strip().lower() for x in types.split(",") if x.strip()]
        elif isinstance(types, list):
            types = [str(x).lower() for x in types]
        with self.lock:
            rows = [d for d in self.deleted
                    if (since is None or d["deleteddate"] >= since)
                    and (until is None or d["deleteddate"] < until)
                    and (not types or d["recordtype"] in types)]
        rows.sort(key=lambda d: (d["deleteddate"], d["recordtype"], int(d["recordid"])))
        out = [self.restlet_entry(d) for d in rows[offset:offset + limit]]
        return json_response(200, out, content_type="application/json")

    # -- errors injected by the server's fault machinery -----------------------------
    def fault_response(self, status, req):
        if req.path == TOKEN_PATH:
            return self.token_error(status, "server_error" if status >= 500 else "invalid_request")
        if req.path == RESTLET_PATH:
            code = {429: "SSS_REQUEST_LIMIT_EXCEEDED", 401: "INVALID_LOGIN_ATTEMPT"}.get(
                status, "UNEXPECTED_ERROR" if status >= 500 else "USER_ERROR")
            return self.restlet_error(status, code, "Fault injected by the emulator.")
        if status == 401:
            return self.invalid_login(req)
        code, detail = {
            429: ("CONCURRENCY_LIMIT_EXCEEDED", CONCURRENCY_DETAIL),
            404: ("NONEXISTENT_ID", "The record instance does not exist. Provide a valid record instance ID."),
            403: ("INSUFFICIENT_PERMISSION", "Permission Violation: you need a higher level of permission."),
            400: ("USER_ERROR", "Error while accessing a resource. Fault injected by the emulator."),
        }.get(status, ("UNEXPECTED_ERROR", "An unexpected error occurred. Error ID: %s"
                       % secrets.token_hex(10)))
        return ns_error(status, code, detail)

    # -- control API ---------------------------------------------------------
    def view(self, key, rec):
        return self.render(key, rec, "", links=False)

    def control_create(self, obj, records):
        key = self.type_key(obj)
        created = []
        with self.lock:
            try:
                for n, r in enumerate(records, 1):
                    if not isinstance(r, dict):
                        raise ValueError("record %d is not an object" % n)
                    try:
                        created.append(self._create(key, dict(r), source="control"))
                    except NsError as e:
                        raise ValueError("%s: %s (record %d)" % (e.code, e.detail, n))
            except ValueError:
                for rid in created:
                    rec = self.recs[key].pop(rid)
                    if rec.get("externalId") is not None:
                        self.eids[key].pop(rec["externalId"], None)
                raise
        return [str(x) for x in created]

    def control_list(self, obj):
        key = self.type_key(obj)
        with self.lock:
            return [self.view(key, r) for _, r in sorted(self.recs[key].items())]

    def _control_id(self, key, rid):
        try:
            rid = int(rid)
        except (TypeError, ValueError):
            raise KeyError(rid)
        if rid not in self.recs[key]:
            raise KeyError(rid)
        return rid

    def control_patch(self, obj, rid, fields):
        key = self.type_key(obj)
        with self.lock:
            rid = self._control_id(key, rid)
            try:
                self._update(key, rid, fields, source="control")
            except NsError as e:
                raise ValueError("%s: %s" % (e.code, e.detail))
            return self.view(key, self.recs[key][rid])

    def control_delete(self, obj, rid):
        key = self.type_key(obj)
        with self.lock:
            self._delete(key, self._control_id(key, rid), check_deps=False, source="control")

    def control(self, method, parts, query, body):
        def jb():
            return json.loads(body.decode("utf-8")) if body else {}
        if parts == ["restlet"]:
            if method == "POST":
                b = jb()
                if not isinstance(b, dict) or not isinstance(b.get("deployed"), bool):
                    raise ValueError('body: {"deployed": true|false}')
                self.restlet_deployed = b["deployed"]
            return json_response(200, {"deployed": self.restlet_deployed,
                                       "script": RESTLET_SCRIPT, "deploy": RESTLET_DEPLOY[0]})
        if parts == ["deleted"] and method == "GET":
            with self.lock:
                return json_response(200, [self.restlet_entry(d) for d in self.deleted])
        if parts == ["token"] and method == "POST":
            b = jb()
            scope = b.get("scope", "rest_webservices,restlets") if isinstance(b, dict) else ""
            scopes = {s.strip() for s in str(scope).split(",") if s.strip()}
            return json_response(200, self.issue_token(scopes))
        return None

    # -- seed ------------------------------------------------------------------
    def _seed_kind(self, spec):
        kind = str(spec.get("type", "text"))
        kind = SEED_KIND_ALIASES.get(kind, kind)
        if kind == "select":
            target = spec.get("recordType")
            if not target:
                raise ValueError("select field %r needs recordType" % spec.get("name"))
            return "select:" + str(target).lower()
        if kind.startswith("select:"):
            return "select:" + kind[7:].lower()
        if kind not in FIELD_KINDS:
            raise ValueError("unknown field type %r" % kind)
        return kind

    def _field_specs(self, spec):
        if isinstance(spec, dict):
            return [dict(v, name=k) if isinstance(v, dict) else {"name": k, "type": v}
                    for k, v in spec.items()]
        return list(spec or [])

    def load_seed(self, seed):
        if not isinstance(seed, dict):
            raise ValueError("netsuite seed must be an object")
        with self.lock:
            for tname, spec in (seed.get("recordTypes") or {}).items():
                key = tname.lower()
                if key in BUILTIN_TYPES:
                    raise ValueError("record type %r is built in; add fields instead" % tname)
                stamps = tuple(spec.get("stamps", ("created", "lastModified")))
                fields = {"externalId": "text"}
                fields.update({s: "datetime" for s in stamps})
                for f in self._field_specs(spec.get("fields")):
                    fields[f["name"]] = self._seed_kind(f)
                self.types[key] = {"name": spec.get("name", tname), "table": spec.get("table", key),
                                   "stamps": stamps, "fields": fields,
                                   "defaults": dict(spec.get("defaults", {})),
                                   "required": [(r, self.title_of(r)) for r in spec.get("required", [])],
                                   "custom": True}
                self.custom_type_seq += 1
                self.types[key]["type_id"] = self.custom_type_seq
                if spec.get("tranType"):
                    self.types[key]["tran_type"] = spec["tranType"]
                self.recs.setdefault(key, {})
                self.eids.setdefault(key, {})
                if self.types[key]["table"] == "transaction":
                    self.types[key]["seq"] = "transaction"
            for tname, specs in (seed.get("fields") or {}).items():
                key = self.type_key(tname)
                for f in self._field_specs(specs):
                    self.types[key]["fields"][f["name"]] = self._seed_kind(f)
                    if "default" in f:
                        self.types[key]["defaults"][f["name"]] = f["default"]
            if "restletDeployed" in seed:
                self.restlet_deployed = bool(seed["restletDeployed"])
        for tname, recs in (seed.get("records") or {}).items():
            self.control_create(tname, recs)
