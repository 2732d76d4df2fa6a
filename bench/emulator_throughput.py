#!/usr/bin/env python3
"""Emulator throughput: Salesforce sObject Collections create, 200 Contacts per request.

    python3 bench/emulator_throughput.py [--seconds 10] [--connections 4] [--tls]

Starts the emulator, authenticates (client_credentials), then N client
processes (multiprocessing, so the client is not the bottleneck) each keep one
keep-alive connection and POST /services/data/v62.0/composite/sobjects with 200
new Contacts (unique Sync_Key__c) as fast as the server answers.  Prints
requests/s, records/s and the ratio to the 300 requests/s target.  Exit status
1 if any request failed.
"""
import argparse
import http.client
import json
import multiprocessing
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMU_DIR = os.path.join(ROOT, "test", "emulator")
EMULATOR = os.path.join(EMU_DIR, "emulator.py")
TARGET_RPS = 300
BATCH = 200


def template(worker):
    recs = [{"attributes": {"type": "Contact"}, "FirstName": "Bench",
             "LastName": "Contact %d" % i, "Email": "bench.%d@example.com" % i,
             "Phone": "+1 555 0100", "Title": "Engineer",
             "Sync_Key__c": "w%d-@@@@@@@@-%d" % (worker, i)} for i in range(BATCH)]
    return json.dumps({"allOrNone": False, "records": recs}).encode()


def connect(host, port, tls_ca):
    if tls_ca:
        return http.client.HTTPSConnection(host, port, timeout=60,
                                           context=ssl.create_default_context(cafile=tls_ca))
    return http.client.HTTPConnection(host, port, timeout=60)


def worker(idx, host, port, tls_ca, token, start_at, stop_at, out):
    tpl = template(idx)
    conn = connect(host, port, tls_ca)
    hdrs = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    n = ok = bad = 0
    lat = []
    while time.time() < start_at:
        time.sleep(0.001)
    while True:
        t0 = time.time()
        if t0 >= stop_at:
            break
        body = tpl.replace(b"@@@@@@@@", b"%08d" % n)
        conn.request("POST", "/services/data/v62.0/composite/sobjects", body, hdrs)
        resp = conn.getresponse()
        data = resp.read()
        lat.append(time.time() - t0)
        n += 1
        if resp.status == 200 and data.count(b'"success":true') == BATCH:
            ok += 1
        else:
            bad += 1
            if bad <= 3:
                sys.stderr.write("worker %d: HTTP %d %s\n" % (idx, resp.status, data[:300]))
    conn.close()
    out.put((n, ok, bad, lat))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--tls", action="store_true", help="run over HTTPS with a throwaway CA")
    args = ap.parse_args()

    cmd = [sys.executable, EMULATOR, "--port", "0"]
    tls_ca = None
    tmp = None
    if args.tls:
        sys.path.insert(0, EMU_DIR)
        import certs
        tmp = tempfile.TemporaryDirectory()
        crt, key, tls_ca = certs.make_tls(tmp.name)
        cmd += ["--tls-cert", crt, "--tls-key", key]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        url = urllib.parse.urlsplit(line.rsplit(" ", 1)[-1])
        host, port = url.hostname, url.port
        c = connect(host, port, tls_ca)
        c.request("POST", "/services/oauth2/token", urllib.parse.urlencode({
            "grant_type": "client_credentials", "client_id": "sync-client",
            "client_secret": "sync-secret"}),
            {"Content-Type": "application/x-www-form-urlencoded"})
        token = json.loads(c.getresponse().read())["access_token"]
        c.close()

        out = multiprocessing.Queue()
        start_at = time.time() + 0.5
        stop_at = start_at + args.seconds
        procs = [multiprocessing.Process(target=worker, args=(
            i, host, port, tls_ca, token, start_at, stop_at, out))
            for i in range(args.connections)]
        for p in procs:
            p.start()
        results = [out.get() for _ in procs]
        for p in procs:
            p.join()
        elapsed = args.seconds
        n = sum(r[0] for r in results)
        ok = sum(r[1] for r in results)
        bad = sum(r[2] for r in results)
        lat = sorted(x for r in results for x in r[3])
        rps = n / elapsed
        print("emulator throughput (%s, %d keep-alive connections, %.0f s)"
              % ("https" if args.tls else "http", args.connections, elapsed))
        print("  requests:    %d (%d ok, %d failed)" % (n, ok, bad))
        print("  requests/s:  %.1f" % rps)
        print("  records/s:   %.0f" % (ok * BATCH / elapsed))
        if lat:
            print("  latency p50: %.1f ms, p99: %.1f ms" % (
                lat[len(lat) // 2] * 1000, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000))
        print("  ratio to target (%d req/s): %.2f" % (TARGET_RPS, rps / TARGET_RPS))
        return 1 if bad else 0
    finally:
        proc.terminate()
        proc.wait(10)
        if tmp:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
