"""The hostile-response corpus: fault kind "hostile" (POST /__emulator/faults).

Each case is a named way for a remote to answer badly.  Static cases answer
without handing the request to the API (nothing is applied); mutation cases
let the API answer first (so a write is applied, "response damaged") and
then damage its JSON body.  A mutation of a body that is not JSON (204 No
Content, say) is served unchanged.

    POST /__emulator/faults
    {"api": "salesforce", "path": "/query$", "kind": "hostile", "case": "nulls"}

GET /__emulator/hostile lists the cases (CASES below, in order).
"""
import json

from common import Response

HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>\n"
             b"<body><h1>Service Unavailable</h1><p>The server is temporarily unable to "
             b"service your request due to maintenance downtime.</p></body></html>\n")

DEEP = 100000                    # nested arrays in "deep_nesting"
HUGE_STRING = 8 * 1024 * 1024    # bytes of the root string in "huge_string"
LONG_STRING = 64 * 1024          # each string in "long_strings" ...
LONG_TOTAL = 16 * 1024 * 1024    # ... until the body reaches about this much

# name -> (processed?, description)
CASES = {
    "empty":          (False, "200 with an empty body"),
    "html":           (False, "200 with an HTML page"),
    "html_502":       (False, "502 with an HTML page (a proxy in the way)"),
    "error_body":     (False, "200 carrying the API's own error body (of a 400)"),
    "deep_nesting":   (False, "100,000 nested arrays"),
    "huge_string":    (False, "an 8 MB JSON string where an object is expected"),
    "root_null":      (False, "the JSON null"),
    "root_number":    (False, "a number out of double range, 1e400000"),
    "root_string":    (False, "a JSON string where an object or array is expected"),
    "truncated":      (True, "the real answer cut in half"),
    "root_flip":      (True, "the real answer's root array/object swapped for an empty object/array"),
    "missing_fields": (True, "every object below the root emptied: {}"),
    "drop_root_keys": (True, "the root object's keys all gone"),
    "nulls":          (True, "every value below the root null"),
    "wrong_types":    (True, "strings as numbers, numbers and booleans as strings, "
                             "objects and arrays as strings"),
    "huge_numbers":   (True, "every number 1e400000"),
    "huge_ints":      (True, "every number a 30-digit integer"),
    "invalid_utf8":   (True, "invalid UTF-8 bytes inside every string"),
    "nul":            (True, "\\u0000 inside every string"),
    "long_strings":   (True, "every string 64 KB long"),
    "hostile_ids":    (True, "every string an ID-shaped injection: 001,002/../x?y=1&z"),
}


class Raw:
    """A token written into the JSON text as it is (invalid UTF-8, 1e400000)."""

    def __init__(self, data):
        self.data = data if isinstance(data, bytes) else data.encode("utf-8")


def dump(v, out):
    """Serialize v into the bytearray out; Raw tokens go in verbatim."""
    if isinstance(v, Raw):
        out += v.data
    elif isinstance(v, dict):
        out += b"{"
        for i, (k, x) in enumerate(v.items()):
            if i:
                out += b","
            out += json.dumps(k).encode("utf-8") + b":"
            dump(x, out)
        out += b"}"
    elif isinstance(v, list):
        out += b"["
        for i, x in enumerate(v):
            if i:
                out += b","
            dump(x, out)
        out += b"]"
    else:
        out += json.dumps(v).encode("utf-8")
    return out


def _walk(v, leaf, container=None, depth=0):
    """Rebuild v bottom-up: leaf(x) for scalars; container(x, depth) for
    dicts/lists below the root after their children were rebuilt."""
    if isinstance(v, dict):
        r = {k: _walk(x, leaf, container, depth + 1) for k, x in v.items()}
    elif isinstance(v, list):
        r = [_walk(x, leaf, container, depth + 1) for x in v]
    else:
        return leaf(v)
    if container is not None and depth > 0:
        return container(r, depth)
    return r


def _is_num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def mutate(case, doc):
    """The damaged version of a parsed JSON document (may hold Raw tokens)."""
    ident = lambda x: x  # noqa: E731
    if case == "root_flip":
        return {} if isinstance(doc, list) else []
    if case == "missing_fields":
        return _walk(doc, ident, lambda x, d: {} if isinstance(x, dict) else x)
    if case == "drop_root_keys":
        return {} if isinstance(doc, dict) else [{} for _ in doc] if isinstance(doc, list) else doc
    if case == "nulls":
        if isinstance(doc, dict):
            return {k: None for k in doc}
        if isinstance(doc, list):
            return [None for _ in doc]
        return None
    if case == "wrong_types":
        def leaf(x):
            if isinstance(x, str):
                return 12345
            if isinstance(x, bool) or _is_num(x):
                return str(x)
            return x
        return _walk(doc, leaf, lambda x, d: "object" if isinstance(x, dict) else "array")
    if case == "huge_numbers":
        return _walk(doc, lambda x: Raw("1e400000") if _is_num(x) else x)
    if case == "huge_ints":
        return _walk(doc, lambda x: Raw("123456789012345678901234567890") if _is_num(x) else x)
    if case == "invalid_utf8":
        def leaf(x):
            if isinstance(x, str):
                h = len(x) // 2
                return Raw(json.dumps(x[:h])[:-1].encode() + b"\xff\xfe\xc3(" +
                           json.dumps(x[h:])[1:].encode())
            return x
        return _walk(doc, leaf)
    if case == "nul":
        return _walk(doc, lambda x: x[:len(x) // 2] + "\u0000" + x[len(x) // 2:]
                     if isinstance(x, str) else x)
    if case == "long_strings":
        budget = [LONG_TOTAL]

        def leaf(x):
            if isinstance(x, str) and budget[0] > 0:
                budget[0] -= LONG_STRING
                return (x + "x" * LONG_STRING)[:LONG_STRING]
            return x
        return _walk(doc, leaf)
    if case == "hostile_ids":
        return _walk(doc, lambda x: "001,002/../x?y=1&z" if isinstance(x, str) else x)
    raise ValueError("unknown hostile case %r" % case)


def static_response(case, api, req):
    ctype = [("Content-Type", "application/json;charset=UTF-8")]
    if case == "empty":
        return Response(200, b"", ctype)
    if case == "html":
        return Response(200, HTML_PAGE, [("Content-Type", "text/html")])
    if case == "html_502":
        return Response(502, HTML_PAGE, [("Content-Type", "text/html")])
    if case == "error_body":
        err = api.fault_response(400, req) if api is not None else None
        return Response(200, err.body if err is not None else b'{"error":"bad_request"}', ctype)
    if case == "deep_nesting":
        return Response(200, b"[" * DEEP + b"]" * DEEP, ctype)
    if case == "huge_string":
        return Response(200, b'"' + b"x" * HUGE_STRING + b'"', ctype)
    if case == "root_null":
        return Response(200, b"null", ctype)
    if case == "root_number":
        return Response(200, b"1e400000", ctype)
    if case == "root_string":
        return Response(200, b'"ok"', ctype)
    raise ValueError("unknown hostile case %r" % case)


def respond(case, api, req, dispatch):
    """The hostile answer to req.  dispatch(api, req) -> the real Response."""
    processed, _ = CASES[case]
    if not processed:
        return static_response(case, api, req)
    real = dispatch(api, req)
    if case == "truncated":
        body = real.body[:max(1, len(real.body) // 2)] if real.body else b'{"records":[{"Id":'
        return Response(real.status, body, real.headers)
    try:
        doc = json.loads(real.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return real
    return Response(real.status, bytes(dump(mutate(case, doc), bytearray())), real.headers)
