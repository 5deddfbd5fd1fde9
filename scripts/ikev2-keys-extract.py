#!/usr/bin/env python3
"""Collects the secrets of a record-ikev2-vectors.sh run from both charons' logs (ike and
chd level 4) into a *-keys.txt fixture: the DH shared secret, SKEYSEED and the seven SK_*
keys, the AUTH inputs and outputs, the CHILD_SA seed and keys.

Usage: ikev2-keys-extract.py OUTDIR HEAD > tests/vectors/ikev2-charon-keys.txt
Records are named <side>.<what>.<n>: side "east" (the initiator) or "west" (the responder),
n counting from 1 in that charon's log order."""
import re, sys

out, head = sys.argv[1], sys.argv[2]
labels = {
    "shared Diffie Hellman secret": "dh-secret",
    "SKEYSEED": "skeyseed",
    "Sk_d secret": "sk-d", "Sk_ai secret": "sk-ai", "Sk_ar secret": "sk-ar",
    "Sk_ei secret": "sk-ei", "Sk_er secret": "sk-er",
    "Sk_pi secret": "sk-pi", "Sk_pr secret": "sk-pr",
    "IDx'": "idx", "SK_p": "sk-p",
    "octets = message + nonce + prf(Sk_px, IDx')": "auth-octets",
    "secret": "psk", "prf(secret, keypad)": "psk-keypad",
    "AUTH = prf(prf(secret, keypad), octets)": "auth",
    "seed": "child-seed", "DH secret": "child-dh-secret",
    "encryption initiator key": "child-encr-i", "encryption responder key": "child-encr-r",
    "integrity initiator key": "child-integ-i", "integrity responder key": "child-integ-r",
}

def wrap(b):
    h = b.hex()
    return "\n".join(h[k:k + 64] for k in range(0, len(h), 64)) if h else "(empty)"

sys.stdout.write(open(head).read())
for side in ["east", "west"]:
    lines = open(f"{out}/{side}/charon.log").read().splitlines()
    seen = {}
    context = ""
    i = 0
    while i < len(lines):
        l = lines[i]
        m = re.match(r"(\S+) (\d+)\[(\w+)\] (.*)$", l)
        if m and re.search(r"authentication of|selected proposal|establishing CHILD_SA|"
                           r"CHILD_SA \S+ state change: CREATED|IKE_SA \S+ state change",
                           m.group(4)):
            context = m.group(4).strip()
        m = re.match(r"(\S+) (\d+)\[(\w+)\] (.*) => (\d+) bytes @ 0x[0-9a-f]+$", l)
        if m and m.group(4) in labels and m.group(3) in ("IKE", "CHD"):
            count = int(m.group(5))
            data = []
            j = i + 1
            while len(data) < count:
                h = lines[j].split("]", 1)[1].split(": ", 1)[1][:48]
                data += [int(x, 16) for x in h.split()]
                j += 1
            name = labels[m.group(4)]
            seen[name] = seen.get(name, 0) + 1
            sys.stdout.write(f"\n= {side}.{name}.{seen[name]}\n"
                             f"# {m.group(1)} thread {m.group(2)} [{m.group(3)}] {m.group(4)},"
                             f" {count} bytes; last: {context}\n{wrap(bytes(data[:count]))}\n")
            i = j
            continue
        i += 1
