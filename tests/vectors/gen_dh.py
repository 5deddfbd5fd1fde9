#!/usr/bin/env python3
"""Writes dh.txt: Diffie-Hellman known answers computed outside the daemon.

MODP groups: Python's pow() over the RFC 2409 / RFC 3526 primes (groups 1 and 2 as
isakmpd's dh.c spells them; 5 and 14-18 from `openssl genpkey -genparam` named groups).
ECP groups 19-21 and Curve25519: `openssl genpkey` keys and `openssl pkeyutl -derive`.
Each line: group=N a_priv=.. a_pub=.. b_priv=.. b_pub=.. shared=..
Re-run only to regenerate; the test reads the committed output.
"""
import hashlib, re, subprocess, tempfile, os

MODP_1 = int("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1"
             "29024E088A67CC74020BBEA63B139B22514A08798E3404DD"
             "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"
             "E485B576625E7EC6F44C42E9A63A3620FFFFFFFFFFFFFFFF", 16)
MODP_2 = int("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1"
             "29024E088A67CC74020BBEA63B139B22514A08798E3404DD"
             "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"
             "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
             "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381"
             "FFFFFFFFFFFFFFFF", 16)
NAMED = {5: "modp_1536", 14: "modp_2048", 15: "modp_3072", 16: "modp_4096", 17: "modp_6144", 18: "modp_8192"}

def run(*a, **k):
    return subprocess.run(a, check=True, capture_output=True, **k).stdout

def named_prime(name):
    pem = run("openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:" + name)
    text = run("openssl", "asn1parse", input=pem).decode()
    ints = re.findall(r"INTEGER\s*:([0-9A-F]+)", text)
    assert ints[1] == "02", ints[1]
    return int(ints[0], 16)

def priv(seed, n):
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}-{i}".encode()).digest()
        i += 1
    return out[:n]

lines = []
for g, p in [(1, MODP_1), (2, MODP_2)] + [(g, named_prime(n)) for g, n in NAMED.items()]:
    n = (p.bit_length() + 7) // 8
    a = int.from_bytes(b"\0" + priv(f"a{g}", n - 1), "big")
    b = int.from_bytes(b"\0" + priv(f"b{g}", n - 1), "big")
    A, B = pow(2, a, p), pow(2, b, p)
    s = pow(B, a, p)
    assert s == pow(A, b, p)
    h = lambda v: v.to_bytes(n, "big").hex()
    lines.append(f"group={g} a_priv={h(a)} a_pub={h(A)} b_priv={h(b)} b_pub={h(B)} shared={h(s)}")

def pkey_hex(pem, field):
    text = run("openssl", "pkey", "-in", pem, "-text", "-noout").decode()
    block = text.split(field + ":")[1]
    block = re.split(r"\n[A-Za-z]", block)[0]
    return "".join(re.findall(r"[0-9a-f]{2}", block))

with tempfile.TemporaryDirectory() as d:
    for g, alg in [(19, "P-256"), (20, "P-384"), (21, "P-521"), (31, "X25519")]:
        keys = []
        for who in "ab":
            pem = os.path.join(d, f"{who}{g}.pem")
            if alg == "X25519":
                run("openssl", "genpkey", "-algorithm", "X25519", "-out", pem)
            else:
                run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:" + alg, "-out", pem)
            pub = os.path.join(d, f"{who}{g}.pub")
            run("openssl", "pkey", "-in", pem, "-pubout", "-out", pub)
            privhex, pubhex = pkey_hex(pem, "priv"), pkey_hex(pem, "pub")
            if alg != "X25519":
                assert pubhex.startswith("04")
                pubhex = pubhex[2:]  # RFC 5903: x | y without the point format byte
            keys.append((pem, pub, privhex, pubhex))
        shared = run("openssl", "pkeyutl", "-derive", "-inkey", keys[0][0], "-peerkey", keys[1][1]).hex()
        shared2 = run("openssl", "pkeyutl", "-derive", "-inkey", keys[1][0], "-peerkey", keys[0][1]).hex()
        assert shared == shared2
        lines.append(f"group={g} a_priv={keys[0][2]} a_pub={keys[0][3]} b_priv={keys[1][2]} b_pub={keys[1][3]} shared={shared}")

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "dh.txt"), "w") as f:
    f.write("# Diffie-Hellman known answers, from gen_dh.py (python pow / openssl pkeyutl -derive)\n")
    f.write("\n".join(lines) + "\n")
