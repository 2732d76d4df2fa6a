#!/usr/bin/env python3
"""Test-only certificates and keys for the emulator.  NOT for production.

* ``make_tls(dirpath)`` creates a throwaway CA and a server certificate for
  127.0.0.1 / ::1 / localhost with the ``openssl`` CLI and returns
  (server_cert, server_key, ca_cert) paths (what util.Emulator(tls=...) takes).
  Command line: ``python3 certs.py DIR`` prints the three paths.
* A minimal DER reader: RSA public key (n, e) from a PEM certificate and the
  private key (n, e, d) from a PEM PKCS#8/PKCS#1 key, and RS256 (RSASSA
  PKCS#1 v1.5 with SHA-256) sign/verify with pow() -- used for the Salesforce
  JWT bearer flow (keys/ holds a committed test-only key pair).
"""
import base64
import hashlib
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = os.path.join(HERE, "keys")
JWT_TEST_KEY = os.path.join(KEYS, "sf-jwt-test.key")
JWT_TEST_CERT = os.path.join(KEYS, "sf-jwt-test.crt")


def _openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def make_tls(dirpath, name="emulator"):
    """Throwaway CA + server certificate signed by it (valid 2 days)."""
    os.makedirs(dirpath, exist_ok=True)
    p = lambda n: os.path.join(dirpath, n)  # noqa: E731
    ca_key, ca_crt = p(name + "-ca.key"), p(name + "-ca.crt")
    key, csr, crt, ext = p(name + ".key"), p(name + ".csr"), p(name + ".crt"), p(name + ".ext")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca_crt,
             "-days", "2", "-subj", "/CN=sync emulator test CA (%s)" % name,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
             "-subj", "/CN=127.0.0.1")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
             "-out", crt, "-days", "2", "-extfile", ext)
    return crt, key, ca_crt


# ---------------------------------------------------------------------------
# DER / PEM

def pem_to_der(pem_text, label=None):
    lines = []
    inside = False
    for line in pem_text.splitlines():
        line = line.strip()
        if line.startswith("-----BEGIN"):
            if label is None or label in line:
                inside = True
                lines = []
            continue
        if line.startswith("-----END"):
            if inside:
                return base64.b64decode("".join(lines))
            continue
        if inside:
            lines.append(line)
    raise ValueError("no PEM block%s found" % (" " + label if label else ""))


def der_read(buf, pos=0):
    """One TLV at pos: (tag, content bytes, next position)."""
    tag = buf[pos]
    ln = buf[pos + 1]
    pos += 2
    if ln & 0x80:
        n = ln & 0x7F
        ln = int.from_bytes(buf[pos:pos + n], "big")
        pos += n
    return tag, buf[pos:pos + ln], pos + ln


def der_children(content):
    out = []
    pos = 0
    while pos < len(content):
        tag, val, pos = der_read(content, pos)
        out.append((tag, val))
    return out


def _int(v):
    return int.from_bytes(v, "big")


def rsa_public_from_cert(pem_text):
    """(n, e) of the RSA key in a PEM X.509 certificate."""
    der = pem_to_der(pem_text, "CERTIFICATE")
    _, cert, _ = der_read(der)
    tbs = der_children(der_children(cert)[0][1])
    # tbsCertificate: [0] version (optional), serial, sigAlg, issuer, validity, subject, spki
    idx = 1 if tbs[0][0] == 0xA0 else 0
    spki = tbs[idx + 5][1]
    return rsa_public_from_spki(spki)


def rsa_public_from_spki(spki):
    parts = der_children(spki)
    bits = parts[1][1][1:]          # BIT STRING: skip the unused-bits byte
    _, seq, _ = der_read(bits)
    n, e = [_int(v) for _, v in der_children(seq)[:2]]
    return n, e


def rsa_private_from_pem(pem_text):
    """(n, e, d) from a PEM 'PRIVATE KEY' (PKCS#8) or 'RSA PRIVATE KEY' (PKCS#1)."""
    if "BEGIN RSA PRIVATE KEY" in pem_text:
        der = pem_to_der(pem_text, "RSA PRIVATE KEY")
    else:
        der = pem_to_der(pem_text, "PRIVATE KEY")
        _, p8, _ = der_read(der)
        der = der_children(p8)[2][1]    # OCTET STRING holding RSAPrivateKey
    _, seq, _ = der_read(der)
    ints = [_int(v) for _, v in der_children(seq)]
    return ints[1], ints[2], ints[3]


# ---------------------------------------------------------------------------
# RS256

SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def _emsa(msg, k):
    t = SHA256_DIGEST_INFO + hashlib.sha256(msg).digest()
    return b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t


def rs256_sign(msg, n, d):
    k = (n.bit_length() + 7) // 8
    return pow(int.from_bytes(_emsa(msg, k), "big"), d, n).to_bytes(k, "big")


def rs256_verify(msg, sig, n, e):
    k = (n.bit_length() + 7) // 8
    if len(sig) != k:
        return False
    s = int.from_bytes(sig, "big")
    if s >= n:
        return False
    return pow(s, e, n).to_bytes(k, "big") == _emsa(msg, k)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(s):
    s = s.encode("ascii") if isinstance(s, str) else s
    return base64.urlsafe_b64decode(s + b"=" * (-len(s) % 4))


def jwt_rs256(claims, key_pem=None, header=None):
    """A signed JWT (compact form) with the given claims; default key = the
    committed test key keys/sf-jwt-test.key."""
    if key_pem is None:
        with open(JWT_TEST_KEY) as f:
            key_pem = f.read()
    n, _, d = rsa_private_from_pem(key_pem)
    h = header or {"alg": "RS256", "typ": "JWT"}
    signing_input = (b64url(json.dumps(h, separators=(",", ":")).encode()) + "."
                     + b64url(json.dumps(claims, separators=(",", ":")).encode()))
    sig = rs256_sign(signing_input.encode("ascii"), n, d)
    return signing_input + "." + b64url(sig)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: certs.py DIR   (writes a throwaway CA + server cert into DIR)")
    for path in make_tls(sys.argv[1]):
        print(path)
