#!/usr/bin/env python3
"""Turns a record-ikev2-vectors.sh run into tests/vectors/ikev2-charon.txt.

Datagrams come from tshark's capture (the 4-byte non-ESP marker of port 4500 removed, so
each record is an IKE message as the engine sees it); the decrypted bodies of the SK/SKF
payloads come from the initiator's charon log (enc level 4 dumps "plain => N bytes"),
labelled with the message charon was generating or had just decrypted."""
import re, sys

out = sys.argv[1]
names = ["init-request", "init-response", "auth-request-frag1", "auth-request-frag2",
         "auth-response", "child-request-frag1", "child-request-frag2", "child-response",
         "delete-child-request", "delete-child-response", "delete-ike-request",
         "delete-ike-response"]
frames = []
for line in open(f"{out}/udp.txt"):
    n, src, port, payload = line.split()
    b = bytes.fromhex(payload)
    if port == "4500":
        assert b[:4] == b"\0\0\0\0", "non-ESP marker"
        b = b[4:]
    frames.append((src, port, b))
# Each datagram is named from its header, <exchange><message id>-<request|response>[-fragN];
# the first recording's sequence keeps the names ikev2-charon.txt has always used.
kinds = {34: "init", 35: "auth", 36: "child", 37: "info"}
derived = []
for src, port, b in frames:
    n = f"{kinds.get(b[18], 'x' + str(b[18]))}{int.from_bytes(b[20:24], 'big')}"
    n += "-response" if b[19] & 0x20 else "-request"
    if b[16] == 53:  # SKF: fragment number after the generic payload header
        n += f"-frag{int.from_bytes(b[32:34], 'big')}"
    derived.append(n)
first_run = ["init0-request", "init0-response", "auth1-request-frag1", "auth1-request-frag2",
             "auth1-response", "child2-request-frag1", "child2-request-frag2",
             "child2-response", "info3-request", "info3-response", "info4-request",
             "info4-response"]
if derived != first_run:
    names = derived
print("datagrams:", " ".join(names))

# Plaintexts from the initiator's log.
lines = open(f"{out}/east/charon.log").read().splitlines()
plains = []
last_gen = None
i = 0
while i < len(lines):
    l = lines[i]
    m = re.search(r"\] generating (\S+ (?:request|response) \d+ \[.*\])", l)
    if m:
        last_gen = m.group(1)
    m = re.search(r"\] plain => (\d+) bytes", l)
    if m:
        count = int(m.group(1))
        data = []
        j = i + 1
        while len(data) < count:
            h = lines[j].split("]", 1)[1].split(": ", 1)[1][:48]
            data += [int(x, 16) for x in h.split()]
            j += 1
        decrypt = False
        for x in reversed(lines[max(0, i - 40):i]):
            if "payload decryption:" in x or "payload encryption:" in x:
                decrypt = "decryption" in x
                break
        label = None
        if decrypt:
            for k in range(j, len(lines)):
                m2 = re.search(r"\] parsed (\S+ (?:request|response) \d+ \[.*\])", lines[k])
                if m2:
                    label = "parsed " + m2.group(1)
                    break
        else:
            label = "generated " + last_gen
        plains.append((label, bytes(data[:count])))
        i = j
        continue
    i += 1

def wrap(b):
    h = b.hex()
    return "\n".join(h[k:k + 64] for k in range(0, len(h), 64)) if h else "(empty)"

with open(f"{out}/ikev2-charon.txt", "w") as f:
    f.write(open(sys.argv[2]).read())
    for name, (src, port, b) in zip(names, frames):
        f.write(f"\n= {name}\n# from {src} port {port}, {len(b)} bytes\n{wrap(b)}\n")
    for idx, (label, b) in enumerate(plains):
        f.write(f"\n= plain-{idx + 1}\n# {label}, {len(b)} bytes\n{wrap(b)}\n")
print(f"{len(frames)} datagrams, {len(plains)} plaintexts")
for label, b in plains:
    print(label, len(b))
