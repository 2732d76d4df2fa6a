"""Salesforce emulator: a SOQL subset (parser + evaluator).

SELECT f[, Parent.f, (subquery), ...] FROM Obj [WHERE cond] [ORDER BY f [ASC|DESC]
[NULLS FIRST|LAST], ...] [LIMIT n] [OFFSET n]

or, instead of the fields, COUNT() alone, or aggregates COUNT(f),
COUNT_DISTINCT(f), MIN(f), MAX(f), SUM(f), AVG(f), each with an optional
alias, beside grouped fields: [GROUP BY f, ... [HAVING cond]] after WHERE
(ORDER BY may then name aggregates).

subquery: (SELECT f, ... FROM ChildRelationship [WHERE ...] [ORDER BY ...]
[LIMIT n] [OFFSET n]), nested up to four levels below the root from v58.0
on, one level before.

cond: comparisons (= != <> < > <= >=), IN (...), NOT IN (...), LIKE, AND/OR/NOT
and parentheses; literals: 'string', numbers, true/false, null, unquoted
datetimes (2024-05-01T00:00:00Z, ...+00:00, with optional fraction), dates
(2024-05-01) and TODAY/YESTERDAY/TOMORROW/LAST_N_DAYS:n/NEXT_N_DAYS:n/N_DAYS_AGO:n.
"""
import re
from datetime import datetime, timedelta, timezone

from sf_schema import NUMERIC, STRINGISH, Field, to18


class SoqlError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


TOKEN_RE = re.compile(r"""
 (?P<ws>\s+)|
 (?P<str>'(?:[^'\\]|\\.)*')|
 (?P<dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2}))|
 (?P<date>\d{4}-\d{2}-\d{2}(?![\dT]))|
 (?P<num>[+-]?\d+(?:\.\d+)?)|
 (?P<op><=|>=|!=|<>|=|<|>|\(|\)|,)|
 (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?::\d+)?)
""", re.X)

KEYWORDS = {"select", "from", "where", "and", "or", "not", "in", "like", "order", "by",
            "asc", "desc", "nulls", "first", "last", "limit", "offset", "null", "true",
            "false", "includes", "excludes", "group", "having", "with", "for", "using"}

AGGREGATES = {"count", "count_distinct", "min", "max", "sum", "avg"}

DATE_LITERALS = {"today", "yesterday", "tomorrow", "last_n_days", "next_n_days",
                 "n_days_ago", "this_month", "last_month", "this_year"}

STR_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"',
               "\\": "\\", "_": "\\_", "%": "\\%"}


class Tok:
    __slots__ = ("kind", "text", "pos", "value")

    def __init__(self, kind, text, pos, value=None):
        self.kind = kind
        self.text = text
        self.pos = pos
        self.value = value


def sf_dt(dt):
    dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03d+0000" % (dt.microsecond // 1000)


def parse_iso(text):
    """ISO 8601 datetime (Z, +hh:mm, +hhmm offsets; optional fraction) -> aware UTC."""
    t = text.strip()
    if t.endswith("Z") or t.endswith("z"):
        t = t[:-1] + "+00:00"
    m = re.match(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(\.\d+)?([+-]\d{2}:?\d{2})?$", t)
    if not m:
        raise ValueError("bad datetime %r" % text)
    date, hms, frac, off = m.groups()
    if len(hms) == 5:
        hms += ":00"
    us = 0
    if frac:
        us = int((frac[1:] + "000000")[:6])
    dt = datetime.strptime(date + "T" + hms, "%Y-%m-%dT%H:%M:%S").replace(microsecond=us)
    if off:
        off = off.replace(":", "")
        sign = 1 if off[0] == "+" else -1
        delta = timedelta(hours=int(off[1:3]), minutes=int(off[3:5]))
        dt = dt.replace(tzinfo=timezone(sign * delta))
    else:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def caret_message(q, pos, text):
    """Salesforce's multi-line query error: a window of the query, a caret
    under the error, 'ERROR at Row:1:Column:N' and the explanation."""
    start = max(0, pos - 32)
    window = q[start:].split("\n")[0]
    return "\n%s\n%s^\nERROR at Row:1:Column:%d\n%s" % (window, " " * (pos - start), pos + 1, text)


def tokenize(q):
    toks = []
    i = 0
    n = len(q)
    while i < n:
        m = TOKEN_RE.match(q, i)
        if not m:
            raise SoqlError("MALFORMED_QUERY", caret_message(
                q, i, "unexpected token: '%s'" % q[i]))
        kind = m.lastgroup
        text = m.group(kind)
        if kind != "ws":
            tok = Tok(kind, text, i)
            if kind == "ident" and text.lower() in KEYWORDS:
                tok.kind = "kw"
                tok.value = text.lower()
            elif kind == "str":
                tok.value = _unescape(text[1:-1])
            toks.append(tok)
        i = m.end()
    toks.append(Tok("eof", "<EOF>", n))
    return toks


def _unescape(s):
    if "\\" not in s:
        return s
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            out.append(STR_ESCAPES.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


class Query:
    """A parsed, validated query (or relationship subquery)."""

    def __init__(self):
        self.obj = None
        self.count = False   # COUNT() alone: totalSize only
        self.select = []     # in select order: field chains (lists of Field) and SubQuery
        self.aggs = []       # the keys of the aggregate columns (expr0, aliases)
        self.group = None    # GROUP BY field chains
        self.having = None   # callable group context -> bool
        # aggregate queries: the output columns [(key, spec)] in select order;
        # specs: what a group context holds, ("a", fn, path) -> (fn, getter)
        # for aggregates and ("f", path) -> getter for grouped fields
        self.columns = []
        self.specs = {}
        self.tokens = {}     # selected field path -> its token (for errors)
        self.where = None    # callable rec -> bool
        self.order = []      # (getter, desc, nulls_first, is_string)
        self.limit = None
        self.offset = 0


class SubQuery(Query):
    """(SELECT ... FROM <child relationship>): rel = the relationship name
    (the key in each parent record), link = the child's reference field."""

    def __init__(self):
        super().__init__()
        self.rel = None
        self.link = None


class Parser:
    def __init__(self, q, schema, resolve_record, now, version=None):
        self.q = q
        # relationship subqueries: one level below the root before v58.0,
        # four from v58.0 on (Summer '23)
        self.max_depth = 1 if version is not None and version < 58 else 4
        self.obj = None
        self.toks = tokenize(q)
        self.i = 0
        self.schema = schema            # name -> SObject (case-insensitive lookup via helper)
        self.resolve = resolve_record   # id18 -> record dict (for parent fields)
        self.now = now

    # -- token helpers -----------------------------------------------------
    def peek(self):
        return self.toks[self.i]

    def next(self):
        t = self.toks[self.i]
        self.i += 1
        return t

    def unexpected(self, t=None):
        t = t or self.peek()
        raise SoqlError("MALFORMED_QUERY", caret_message(
            self.q, t.pos, "unexpected token: %s" % (
                "<EOF>" if t.kind == "eof" else "'%s'" % t.text)))

    def expect_kw(self, kw):
        t = self.next()
        if t.kind != "kw" or t.value != kw:
            self.unexpected(t)
        return t

    def accept_kw(self, kw):
        t = self.peek()
        if t.kind == "kw" and t.value == kw:
            self.i += 1
            return True
        return False

    def accept_op(self, op):
        t = self.peek()
        if t.kind == "op" and t.text == op:
            self.i += 1
            return True
        return False

    # -- grammar -----------------------------------------------------------
    def parse(self):
        qr = self.parse_select(None, 0)
        if self.peek().kind != "eof":
            self.unexpected()
        return qr

    def skip_parens(self):
        """Past the ')' that closes the '(' just read."""
        depth = 1
        while depth:
            t = self.next()
            if t.kind == "eof":
                self.unexpected(t)
            if t.kind == "op" and t.text in ("(", ")"):
                depth += 1 if t.text == "(" else -1

    def parse_select(self, parent, depth):
        """SELECT ... FROM ...: the query (parent None) or a subquery of
        parent's child relationship, depth levels below the root."""
        qr = Query() if parent is None else SubQuery()
        self.expect_kw("select")
        items = []      # ("f", tok) | ("sub", index of its '(', tok) | ("agg", fn, arg, alias, tok)
        while True:
            t = self.next()
            if t.kind == "ident" and t.text.lower() in AGGREGATES and self.accept_op("("):
                arg = self.next() if self.peek().kind == "ident" else None
                if not self.accept_op(")"):
                    self.unexpected()
                fn = t.text.lower()
                if arg is None and fn != "count":
                    self.unexpected(self.toks[self.i - 1])
                alias = self.next() if self.peek().kind == "ident" else None
                items.append(("agg", fn, arg, alias, t))
            elif t.kind == "ident":
                items.append(("f", t))
            elif t.kind == "op" and t.text == "(":
                items.append(("sub", self.i - 1, t))
                self.skip_parens()
            else:
                self.unexpected(t)
            if not self.accept_op(","):
                break
        self.expect_kw("from")
        ot = self.next()
        if ot.kind != "ident":
            self.unexpected(ot)
        if parent is None:
            obj = self.find_object(ot.text)
            if obj is None:
                raise SoqlError("INVALID_TYPE", caret_message(
                    self.q, ot.pos, "sObject type '%s' is not supported. If you are attempting to "
                    "use a custom object, be sure to append the '__c' after the entity name. "
                    "Please reference your WSDL or the describe call for the appropriate names."
                    % ot.text))
        else:
            low = ot.text.lower()
            hit = next(((c, f, r) for c, f, r in parent.children
                        if r and r.lower() == low and c in self.schema), None)
            if hit is None:
                raise SoqlError("INVALID_TYPE", caret_message(
                    self.q, ot.pos, "Didn't understand relationship '%s' in FROM part of query "
                    "call. If you are attempting to use a custom relationship, be sure to append "
                    "the '__r' after the custom relationship name. Please reference your WSDL or "
                    "the describe call for the appropriate names." % ot.text))
            obj = self.schema[hit[0]]
            qr.link, qr.rel = hit[1], hit[2]
        qr.obj = obj
        outer = self.obj
        self.obj = obj
        self.select_items(qr, items, parent, depth)
        if self.accept_kw("where"):
            qr.where = self.parse_or()
        if self.peek().kind == "kw" and self.peek().value == "group" and not qr.count \
                and parent is None:
            self.next()
            self.expect_kw("by")
            qr.group = []
            while True:
                t = self.next()
                if t.kind != "ident":
                    self.unexpected(t)
                chain = self.resolve_path(t)
                if not chain[-1].groupable:
                    raise SoqlError("INVALID_FIELD", caret_message(
                        self.q, t.pos, "field '%s' can not be grouped in a query call" % t.text))
                qr.group.append(chain)
                if not self.accept_op(","):
                    break
        if qr.aggs or qr.group is not None:
            self.check_grouped(qr)
            if qr.group is not None and self.accept_kw("having"):
                qr.having = self.having_or(qr)
        if self.accept_kw("order"):
            self.expect_kw("by")
            while True:
                t = self.next()
                if t.kind != "ident":
                    self.unexpected(t)
                if qr.aggs or qr.group is not None:
                    spec, f = self.grouped_term(qr, t, "Ordered field must be grouped or "
                                                "aggregated: %s")
                    get = (lambda k: lambda ctx: ctx[k])(spec)
                else:
                    chain = self.resolve_path(t)
                    f = chain[-1]
                    get = self.getter(chain)
                desc = False
                if self.accept_kw("desc"):
                    desc = True
                else:
                    self.accept_kw("asc")
                nulls_first = True
                if self.accept_kw("nulls"):
                    if self.accept_kw("last"):
                        nulls_first = False
                    else:
                        self.expect_kw("first")
                qr.order.append((get, desc, nulls_first,
                                 f is not None and (f.type in STRINGISH or f.type in ("id", "reference"))))
                if not self.accept_op(","):
                    break
        if self.accept_kw("limit"):
            t = self.next()
            if t.kind != "num" or "." in t.text or t.text.startswith("-"):
                self.unexpected(t)
            qr.limit = int(t.text)
        if self.accept_kw("offset"):
            t = self.next()
            if t.kind != "num" or "." in t.text:
                self.unexpected(t)
            qr.offset = int(t.text)
            if qr.offset > 2000:
                raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE",
                                "Maximum SOQL offset allowed is 2000")
        self.obj = outer
        return qr

    def select_items(self, qr, items, parent, depth):
        """Resolve the select list against qr.obj (now self.obj)."""
        aggs = [it for it in items if it[0] == "agg"]
        subs = [it for it in items if it[0] == "sub"]
        bare = [it for it in aggs if it[2] is None]
        if bare:                        # COUNT(): alone, and not in a subquery
            if parent is not None or len(items) > 1:
                self.unexpected(bare[0][4] if parent is not None else
                                next(it[-1] for it in items if it is not bare[0]))
            qr.count = True
            return
        if aggs:
            if parent is not None:
                self.unexpected(aggs[0][4])
            if subs:
                self.unexpected(subs[0][2])
        n = 0
        keys = set()
        seen = set()
        for it in items:
            if it[0] == "agg":
                _, fn, arg, alias, t = it
                spec, _ = self.agg_call(qr, fn, arg)
                if alias is None:
                    key = "expr%d" % n
                    n += 1
                else:
                    key = alias.text
                if key.lower() in keys:
                    raise SoqlError("MALFORMED_QUERY", caret_message(
                        self.q, (alias or t).pos, "duplicate alias: %s" % key))
                keys.add(key.lower())
                qr.aggs.append(key)
                qr.columns.append((key, spec))
                continue
            if it[0] == "f":
                t = it[1]
                chain = self.resolve_path(t)
                key = tuple(f.name for f in chain)
                if key in seen:
                    raise SoqlError("MALFORMED_QUERY", "duplicate field selected: %s" % t.text)
                seen.add(key)
                qr.select.append(chain)
                qr.columns.append((chain[-1].name, ("f", key)))
                qr.tokens[key] = t
                continue
            start, t = it[1], it[2]
            if depth + 1 > self.max_depth:
                raise SoqlError("MALFORMED_QUERY", caret_message(
                    self.q, t.pos, "SOQL statements cannot query aggregate relationships more "
                    "than %d level%s away from the root entity object." % (
                        self.max_depth, "" if self.max_depth == 1 else "s")))
            resume = self.i
            self.i = start + 1
            sub = self.parse_select(qr.obj, depth + 1)
            if not self.accept_op(")"):
                self.unexpected()
            self.i = resume
            if ("sub", sub.rel) in seen:
                raise SoqlError("MALFORMED_QUERY", caret_message(
                    self.q, t.pos, "duplicate relationship selected: %s" % sub.rel))
            seen.add(("sub", sub.rel))
            qr.select.append(sub)

    def agg_call(self, qr, fn, arg):
        """An aggregate over the field arg: its spec key in qr.specs, and
        the field."""
        chain = self.resolve_path(arg)
        f = chain[-1]
        if f.type == "address" or (fn in ("sum", "avg") and f.type not in NUMERIC) or \
                (fn in ("min", "max") and f.type in ("boolean", "multipicklist")):
            raise SoqlError("INVALID_FIELD", caret_message(
                self.q, arg.pos, "field %s does not support aggregate operator %s"
                % (arg.text, fn.upper())))
        spec = ("a", fn, tuple(x.name for x in chain))
        qr.specs.setdefault(spec, (fn, self.getter(chain)))
        return spec, f

    def check_grouped(self, qr):
        """An aggregate query: every selected field is grouped, no subquery."""
        grouped = {tuple(f.name for f in c) for c in (qr.group or [])}
        for chain in qr.select:
            if isinstance(chain, SubQuery):
                raise SoqlError("MALFORMED_QUERY", "relationship subqueries cannot be combined "
                                "with GROUP BY or aggregate functions")
            key = tuple(f.name for f in chain)
            if key not in grouped:
                t = qr.tokens[key]
                raise SoqlError("MALFORMED_QUERY", caret_message(
                    self.q, t.pos, "Field must be grouped or aggregated: %s" % t.text))
        for c in qr.group or []:
            key = ("f", tuple(f.name for f in c))
            qr.specs.setdefault(key, self.getter(c))

    def grouped_term(self, qr, t, msg):
        """In HAVING / ORDER BY of an aggregate query: an aggregate call or a
        grouped field -> (spec key, field)."""
        if t.text.lower() in AGGREGATES and self.accept_op("("):
            arg = self.next() if self.peek().kind == "ident" else None
            if arg is None or not self.accept_op(")"):
                self.unexpected(self.toks[self.i - 1])
            spec, f = self.agg_call(qr, t.text.lower(), arg)
            return spec, (None if spec[1] in ("count", "count_distinct") else f)
        chain = self.resolve_path(t)
        key = ("f", tuple(f.name for f in chain))
        if key not in qr.specs:
            raise SoqlError("MALFORMED_QUERY", caret_message(self.q, t.pos, msg % t.text))
        return key, chain[-1]

    def having_or(self, qr):
        left = self.having_and(qr)
        while self.accept_kw("or"):
            right = self.having_and(qr)
            left = (lambda a, b: lambda c: a(c) or b(c))(left, right)
        return left

    def having_and(self, qr):
        left = self.having_not(qr)
        while self.accept_kw("and"):
            right = self.having_not(qr)
            left = (lambda a, b: lambda c: a(c) and b(c))(left, right)
        return left

    def having_not(self, qr):
        if self.accept_kw("not"):
            inner = self.having_not(qr)
            return lambda c: not inner(c)
        if self.accept_op("("):
            e = self.having_or(qr)
            if not self.accept_op(")"):
                self.unexpected()
            return e
        t = self.next()
        if t.kind != "ident":
            self.unexpected(t)
        spec, f = self.grouped_term(qr, t, "Field must be grouped or aggregated: %s")
        nt = self.next()
        if nt.kind != "op" or nt.text not in ("=", "!=", "<>", "<", ">", "<=", ">="):
            self.unexpected(nt)
        vt = self.next()
        if f is None:                   # COUNT / COUNT_DISTINCT: a number
            if vt.kind != "num":
                self.unexpected(vt)
            val = float(vt.text) if "." in vt.text else int(vt.text)
            f = _COUNT_FIELD
        else:
            val = self.literal(vt, f, t)
            if isinstance(val, tuple):
                self.unexpected(vt)
        return _comparison(lambda c: c[spec], nt.text, val, f)

    def find_object(self, name):
        o = self.schema.get(name)
        if o is not None:
            return o
        low = name.lower()
        for k, v in self.schema.items():
            if k.lower() == low:
                return v
        return None

    def resolve_path(self, t):
        parts = t.text.split(".")
        obj = self.obj
        chain = []
        # a leading object-name qualifier ("Contact.Email" FROM Contact) is allowed
        if len(parts) > 1 and parts[0].lower() == obj.name.lower() and obj.field(parts[0]) is None \
                and parts[0].lower() not in obj.rel_lower:
            parts = parts[1:]
        for k, p in enumerate(parts):
            last = k == len(parts) - 1
            if last:
                f = obj.field(p)
                if f is None:
                    raise SoqlError("INVALID_FIELD", caret_message(
                        self.q, t.pos, "No such column '%s' on entity '%s'. If you are attempting "
                        "to use a custom field, be sure to append the '__c' after the custom "
                        "field name. Please reference your WSDL or the describe call for the "
                        "appropriate names." % (p, obj.name)))
                chain.append(f)
            else:
                f = obj.rel_lower.get(p.lower())
                targets = [t for t in (f.referenceTo if f else ()) if t in self.schema]
                if not targets:
                    raise SoqlError("INVALID_FIELD", caret_message(
                        self.q, t.pos, "Didn't understand relationship '%s' in field path. If "
                        "you are attempting to use a custom relationship, be sure to append the "
                        "'__r' after the custom relationship name. Please reference your WSDL or "
                        "the describe call for the appropriate names." % p))
                chain.append(f)
                obj = self.schema[targets[0]]
        return chain

    def getter(self, chain):
        if len(chain) == 1:
            f = chain[0]
            if f.compound:
                comps = f.compound
                if f.type == "address":
                    return lambda r: None   # not filterable/sortable
                return lambda r: compound_name(r, comps)
            name = f.name
            if f.type == "boolean":
                return lambda r: bool(r.get(name))
            return lambda r: r.get(name)
        resolve = self.resolve
        names = [f.name for f in chain]
        last = chain[-1]

        def g(r):
            for n in names[:-1]:
                rid = r.get(n)
                if rid is None:
                    return None
                r = resolve(rid)
                if r is None:
                    return None
            if last.compound and last.type != "address":
                return compound_name(r, last.compound)
            return r.get(names[-1])
        return g

    # -- conditions --------------------------------------------------------
    def parse_or(self):
        left = self.parse_and()
        while self.accept_kw("or"):
            right = self.parse_and()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def parse_and(self):
        left = self.parse_not()
        while self.accept_kw("and"):
            right = self.parse_not()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left

    def parse_not(self):
        if self.accept_kw("not"):
            inner = self.parse_not()
            return lambda r: not inner(r)
        if self.accept_op("("):
            e = self.parse_or()
            if not self.accept_op(")"):
                self.unexpected()
            return e
        return self.parse_cmp()

    def parse_cmp(self):
        t = self.next()
        if t.kind != "ident":
            self.unexpected(t)
        chain = self.resolve_path(t)
        f = chain[-1]
        get = self.getter(chain)
        nt = self.peek()
        if nt.kind == "kw" and nt.value == "not":
            self.next()
            self.expect_kw("in")
            vals = self.parse_list(f, t)
            return lambda r: _norm(get(r), f) not in vals
        if nt.kind == "kw" and nt.value == "in":
            self.next()
            vals = self.parse_list(f, t)
            return lambda r: _norm(get(r), f) in vals
        if nt.kind == "kw" and nt.value == "like":
            self.next()
            vt = self.next()
            if vt.kind != "str":
                self.unexpected(vt)
            rx = like_regex(vt.value)
            return lambda r: (lambda v: v is not None and rx.match(str(v)) is not None)(get(r))
        if nt.kind == "kw" and nt.value in ("includes", "excludes"):
            self.next()
            vals = self.parse_list(f, t)
            want = nt.value == "includes"

            def inc(r, vals=vals):
                v = get(r)
                have = set(x.strip().lower() for x in v.split(";")) if v else set()
                hit = any(set(x.split(";")) <= have for x in vals)
                return hit if want else not hit
            return inc
        if nt.kind != "op" or nt.text not in ("=", "!=", "<>", "<", ">", "<=", ">="):
            self.unexpected(nt)
        self.next()
        op = nt.text
        vt = self.next()
        val = self.literal(vt, f, t)
        if isinstance(val, tuple) and val and val[0] == "range":
            lo, hi = val[1], val[2]
            if op == "=":
                return lambda r: (lambda v: v is not None and lo <= v < hi)(get(r))
            if op in ("!=", "<>"):
                return lambda r: (lambda v: v is None or not (lo <= v < hi))(get(r))
            if op == "<":
                return lambda r: (lambda v: v is not None and v < lo)(get(r))
            if op == "<=":
                return lambda r: (lambda v: v is not None and v < hi)(get(r))
            if op == ">":
                return lambda r: (lambda v: v is not None and v >= hi)(get(r))
            return lambda r: (lambda v: v is not None and v >= lo)(get(r))
        return _comparison(get, op, val, f)

    def parse_list(self, f, ft):
        if not self.accept_op("("):
            self.unexpected()
        vals = set()
        while True:
            vt = self.next()
            v = self.literal(vt, f, ft)
            vals.add(_norm(v, f))
            if self.accept_op(")"):
                break
            if not self.accept_op(","):
                self.unexpected()
        return vals

    def type_error(self, f, ft, what):
        raise SoqlError("INVALID_FIELD", caret_message(
            self.q, ft.pos, "value of filter criterion for field '%s' must be of type %s"
            % (f.name, what)))

    def literal(self, vt, f, ft):
        ftype = f.type
        if vt.kind == "kw" and vt.value == "null":
            return None
        if vt.kind == "kw" and vt.value in ("true", "false"):
            if ftype != "boolean":
                self.type_error(f, ft, _type_words(ftype))
            return vt.value == "true"
        if vt.kind == "str":
            if ftype in ("id", "reference"):
                v18 = to18(vt.value)
                if v18 is None:
                    raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", "invalid ID field: %s"
                                    % vt.value)
                return v18
            if ftype in STRINGISH:
                return vt.value
            self.type_error(f, ft, _type_words(ftype))
        if vt.kind == "num":
            if ftype in NUMERIC:
                return float(vt.text) if "." in vt.text else int(vt.text)
            self.type_error(f, ft, _type_words(ftype))
        if vt.kind == "dt":
            if ftype != "datetime":
                self.type_error(f, ft, _type_words(ftype))
            try:
                return sf_dt(parse_iso(vt.text))
            except ValueError:
                raise SoqlError("MALFORMED_QUERY", caret_message(
                    self.q, vt.pos, "line 1:%d no viable alternative at character ' '" % vt.pos))
        if vt.kind == "date":
            if ftype == "date":
                return vt.text
            self.type_error(f, ft, _type_words(ftype))
        if vt.kind == "ident" and vt.text.split(":")[0].lower() in DATE_LITERALS:
            if ftype not in ("date", "datetime"):
                self.type_error(f, ft, _type_words(ftype))
            return self.date_range(vt, ftype)
        self.unexpected(vt)

    def date_range(self, vt, ftype):
        name, _, n = vt.text.partition(":")
        name = name.lower()
        now = self.now()
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        day = timedelta(days=1)
        k = int(n) if n else 0
        if name == "today":
            lo, hi = today, today + day
        elif name == "yesterday":
            lo, hi = today - day, today
        elif name == "tomorrow":
            lo, hi = today + day, today + 2 * day
        elif name == "last_n_days":
            lo, hi = today - k * day, today + day
        elif name == "next_n_days":
            lo, hi = today + day, today + (k + 1) * day
        elif name == "n_days_ago":
            lo, hi = today - k * day, today - (k - 1) * day
        elif name == "this_month":
            lo = today.replace(day=1)
            hi = (lo + 32 * day).replace(day=1)
        elif name == "last_month":
            hi = today.replace(day=1)
            lo = (hi - day).replace(day=1)
        else:  # this_year
            lo = today.replace(month=1, day=1)
            hi = lo.replace(year=lo.year + 1)
        if ftype == "date":
            return ("range", lo.strftime("%Y-%m-%d"), hi.strftime("%Y-%m-%d"))
        return ("range", sf_dt(lo), sf_dt(hi))


_COUNT_FIELD = Field("expr", "int")     # the type of a COUNT() value in HAVING


def _comparison(get, op, val, f):
    """rec -> bool for `<value of get> op val` (val a literal of f's type)."""
    if op in ("=", "!=", "<>"):
        neg = op != "="
        if val is None:
            return (lambda r: get(r) is not None) if neg else (lambda r: get(r) is None)
        nv = _norm(val, f)
        if neg:
            return lambda r: _norm(get(r), f) != nv
        return lambda r: _norm(get(r), f) == nv
    if val is None:
        return lambda r: False
    nv = _norm(val, f)
    cmpf = {"<": lambda a, b: a < b, ">": lambda a, b: a > b,
            "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}[op]

    def c(r):
        v = get(r)
        if v is None:
            return False
        try:
            return cmpf(_norm(v, f), nv)
        except TypeError:
            return False
    return c


def aggregate_rows(qr, recs):
    """The rows of an aggregate query (without their attributes): one per
    group (strings grouped case-insensitively, each group showing its first
    record's spelling; a null group too), or exactly one without GROUP BY.
    HAVING, ORDER BY, OFFSET and LIMIT apply to the rows."""
    fields = [(k, g) for k, g in qr.specs.items() if k[0] == "f"]
    aggs = [(k, v) for k, v in qr.specs.items() if k[0] == "a"]
    if qr.group is None:
        groups = [list(recs)]
    else:
        by = {}
        for r in recs:
            key = tuple((lambda v: v.lower() if isinstance(v, str) else v)(g(r))
                        for _, g in fields)
            by.setdefault(key, []).append(r)
        groups = list(by.values())
    ctxs = []
    for rs in groups:
        ctx = {k: g(rs[0]) for k, g in fields}
        for k, (fn, g) in aggs:
            ctx[k] = aggregate(fn, [g(r) for r in rs])
        if qr.having is None or qr.having(ctx):
            ctxs.append(ctx)
    if qr.order:
        ctxs = sort_records(ctxs, qr.order)
    ctxs = ctxs[qr.offset:]
    if qr.limit is not None:
        ctxs = ctxs[:qr.limit]
    return [{key: ctx[spec] for key, spec in qr.columns} for ctx in ctxs]


def _type_words(ftype):
    if ftype in STRINGISH or ftype in ("id", "reference"):
        return "string and should be enclosed in quotes"
    if ftype == "boolean":
        return "boolean and should not be enclosed in quotes"
    if ftype in ("date", "datetime"):
        return "%s and should not be enclosed in quotes" % ("date" if ftype == "date" else "dateTime")
    return "number and should not be enclosed in quotes"


def _norm(v, f):
    """Comparison form: strings are compared case-insensitively."""
    if isinstance(v, str) and f.type in STRINGISH:
        return v.lower()
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int) and f.type in NUMERIC:
        return v
    return v


def like_regex(pat):
    out = ["^"]
    i = 0
    while i < len(pat):
        c = pat[i]
        if c == "\\" and i + 1 < len(pat):
            out.append(re.escape(pat[i + 1]))
            i += 2
            continue
        if c == "%":
            out.append(".*")
        elif c == "_":
            out.append(".")
        else:
            out.append(re.escape(c))
        i += 1
    out.append("$")
    return re.compile("".join(out), re.I | re.S)


def aggregate(fn, values):
    """One aggregate over the values of the matching records (None = null)."""
    vals = [v for v in values if v is not None]
    if fn == "count":
        return len(vals)
    if fn == "count_distinct":
        return len({v.lower() if isinstance(v, str) else v for v in vals})
    if not vals:
        return None
    if fn == "sum":
        return sum(vals)
    if fn == "avg":
        return sum(vals) / len(vals)
    key = (lambda v: v.lower()) if isinstance(vals[0], str) else None
    return min(vals, key=key) if fn == "min" else max(vals, key=key)


def compound_name(r, comps):
    parts = [r.get(c) for c in comps]
    parts = [p for p in parts if p]
    return " ".join(parts) if parts else None


def sort_records(records, order):
    """Stable multi-key sort honouring ASC/DESC and NULLS FIRST/LAST per key."""
    recs = list(records)
    for get, desc, nulls_first, is_str in reversed(order):
        nonnull = []
        nulls = []
        for r in recs:
            v = get(r)
            (nulls if v is None else nonnull).append((v, r))
        if is_str:
            nonnull.sort(key=lambda p: p[0].lower() if isinstance(p[0], str) else p[0],
                         reverse=desc)
        else:
            nonnull.sort(key=lambda p: p[0], reverse=desc)
        ordered = [r for _, r in nonnull]
        nl = [r for _, r in nulls]
        recs = nl + ordered if nulls_first else ordered + nl
    return recs
