"""Shared by the bench/*.sh scripts (test/lib.sh's sync_bench_start puts
bench/ on PYTHONPATH): a paced driver of remote edits through the
emulator's control API, the reading of what reached the emulator, and
the latency summary every script prints."""
import http.client
import json
import time
import urllib.parse


def summary(lat_ms, expected, target=""):
    """'arrived: n of m' and p50 / p99 / max of latencies in ms, one line each."""
    lat = sorted(lat_ms)
    if not lat:
        return "  nothing arrived (%d sent)" % expected

    def pct(p):
        return lat[min(len(lat) - 1, int(round(p / 100.0 * (len(lat) - 1))))]
    return ("  arrived: %d of %d\n  p50 %.0f ms, p99 %.0f ms, max %.0f ms%s"
            % (len(lat), expected, pct(50), pct(99), lat[-1], "  (%s)" % target if target else ""))


def drive_remote(url, api, obj, field, ids, rate, secs, out, prefix="V", start=None):
    """Edit remote records as a remote user would, `rate` a second for
    `secs` seconds, each change a new value prefix + n of `field` on
    ids[n % len(ids)]; writes "value epoch" per change (the time the write
    returned) to `out`; returns the number of changes."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    n = int(rate * secs)
    start = time.time() if start is None else start
    with open(out, "w") as f:
        for i in range(n):
            delay = start + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            v = "%s%06d" % (prefix, i)
            conn.request("PATCH", "/__emulator/records/%s/%s/%s" % (api, obj, ids[i % len(ids)]),
                         json.dumps({field: v}), {"Content-Type": "application/json"})
            conn.getresponse().read()
            f.write("%s %.6f\n" % (v, time.time()))
    return n


def arrivals(sent_file, arrived_lines):
    """Latencies in ms of the values in sent_file ("value epoch" lines) that
    arrived, from "value epoch" lines (the earliest arrival of each)."""
    sent = dict((v, float(t)) for v, t in (l.replace("|", " ").split() for l in open(sent_file) if l.strip()))
    seen = {}
    for line in arrived_lines:
        if line.strip():
            v, t = line.replace("|", " ").split()
            seen[v] = min(float(t), seen.get(v, float(t)))
    return sent, [(seen[v] - sent[v]) * 1000 for v in sent if v in seen]


def composite_writes(requests, field):
    """The values of `field` in the Salesforce composite writes (PATCH
    .../composite/sobjects) of the emulator's request log, as "value epoch"
    lines, the time being the request's: input for arrivals()."""
    for r in requests:
        body = r["body"] if isinstance(r["body"], dict) else {}
        if r["method"] != "PATCH" or not r["path"].endswith("/composite/sobjects"):
            continue
        for rec in body.get("records", []):
            if rec.get(field) is not None:
                yield "%s %.6f" % (rec[field], r["time"])
