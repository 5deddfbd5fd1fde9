#!/usr/bin/env python3
"""Writes the seed corpora: well-formed messages of every exchange shape and payload kind,
and the malformed inputs of isakmpd's regress msg/check.sh and libreswan's IKEv1 fuzzer
cases (short datagrams, length mismatches, bad versions/exchanges/flags, DOI 0xffffffff,
first payload 15, DELETE SPI counts that overrun)."""
import os, struct

HERE = os.path.dirname(os.path.abspath(__file__))

def pl(ty_next, body):
    return bytes([ty_next, 0]) + struct.pack(">H", 4 + len(body)) + body

def msg(first, payloads, exch=2, flags=0, msgid=0, icky=b"\x11" * 8, rcky=b"\0" * 8, ver=0x10):
    """payloads: list of (type, body); chained in order."""
    body = b""
    for i, (ty, b) in enumerate(payloads):
        nxt = payloads[i + 1][0] if i + 1 < len(payloads) else 0
        body += pl(nxt, b)
    first = payloads[0][0] if payloads else 0
    hdr = icky + rcky + bytes([first, ver, exch, flags]) + struct.pack(">II", msgid, 28 + len(body))
    return hdr + body

def tv(t, v):
    return struct.pack(">HH", 0x8000 | t, v)

def tlv(t, v):
    return struct.pack(">HH", t, len(v)) + v

ike_xf = pl(0, bytes([1, 1, 0, 0]) + tv(1, 7) + tv(14, 256) + tv(2, 4) + tv(3, 1) + tv(4, 14) + tv(11, 1) + tlv(12, struct.pack(">I", 28800)))
ike_prop = pl(0, bytes([1, 1, 0, 1]) + ike_xf)
sa_p1 = struct.pack(">II", 1, 1) + ike_prop
esp_xf1 = pl(3, bytes([1, 12, 0, 0]) + tv(6, 128) + tv(5, 5) + tv(4, 1) + tv(1, 1) + tlv(2, struct.pack(">I", 3600)) + tv(3, 14))
esp_xf2 = pl(0, bytes([2, 3, 0, 0]) + tv(5, 2) + tv(4, 1))
esp_prop = pl(0, bytes([1, 3, 4, 2]) + b"\xde\xad\xbe\xef" + esp_xf1 + esp_xf2)
sa_p2 = struct.pack(">II", 1, 1) + esp_prop
ke = bytes(range(256))
nonce = b"\x4e" * 16
id_v4 = bytes([1, 17, 1, 244]) + bytes([192, 0, 2, 1])
id_net = bytes([4, 0, 0, 0]) + bytes([198, 51, 100, 0, 255, 255, 255, 0])
id_fqdn = bytes([2, 0, 0, 0]) + b"gw.example.org"
vid_natt = bytes.fromhex("4a131c81070358455c5728f20e95452f")
vid_dpd = bytes.fromhex("afcad71368a1f1c96b8696fc77570100")
hash20 = b"\x48" * 20
notify_ic = struct.pack(">IBBH", 1, 3, 4, 24578) + b"\x01\x02\x03\x04"
notify_dpd = struct.pack(">IBBH", 1, 1, 16, 36136) + b"\x11" * 8 + b"\x22" * 8 + struct.pack(">I", 7)
delete_esp = struct.pack(">IBBH", 1, 3, 4, 2) + b"\x01\x02\x03\x04\x05\x06\x07\x08"
delete_p1 = struct.pack(">IBBH", 1, 1, 16, 1) + b"\x11" * 8 + b"\x22" * 8
natd = b"\x6e" * 20
natoa = bytes([1, 0, 0, 0, 192, 0, 2, 7])
cfg = bytes([1, 0, 0, 9]) + tlv(1, b"") + tlv(2, b"") + tlv(3, b"")

good = {
    "mm1": msg(1, [(1, sa_p1), (13, vid_natt), (13, vid_dpd)]),
    "mm3": msg(4, [(4, ke), (10, nonce), (20, natd), (20, natd)], rcky=b"\x22" * 8),
    "mm5": msg(5, [(5, id_v4), (8, hash20), (11, notify_ic)], rcky=b"\x22" * 8),
    "ag1": msg(1, [(1, sa_p1), (4, ke), (10, nonce), (5, id_fqdn), (13, vid_natt)], exch=4),
    "qm1": msg(8, [(8, hash20), (1, sa_p2), (10, nonce), (4, ke[:128]), (5, id_net), (5, id_net)], exch=32, msgid=0x01020304, rcky=b"\x22" * 8),
    "info_delete": msg(8, [(8, hash20), (12, delete_esp), (12, delete_p1)], exch=5, msgid=9, rcky=b"\x22" * 8),
    "info_dpd": msg(8, [(8, hash20), (11, notify_dpd)], exch=5, msgid=10, rcky=b"\x22" * 8),
    "natt_draft": msg(130, [(130, natd), (131, natoa), (21, natoa)], exch=32, rcky=b"\x22" * 8, msgid=5),
    "modecfg": msg(8, [(8, hash20), (14, cfg)], exch=6, msgid=11, rcky=b"\x22" * 8),
    "cert": msg(6, [(6, b"\x04" + b"\x30\x82\x01\x00" + b"\x00" * 16), (7, b"\x04"), (9, b"\x55" * 256)], rcky=b"\x22" * 8),
    "unknown_payloads": msg(99, [(99, b"abc"), (33, b"ikev2!"), (2, b"\0\0\0\0")]),
    "header_only": msg(0, []),
}
bad = {
    "short6": b"\x11" * 6,
    "len27": good["mm1"][:24] + struct.pack(">I", 27) + good["mm1"][28:],
    "len29": good["mm1"][:24] + struct.pack(">I", len(good["mm1"]) + 1) + good["mm1"][28:],
    "major2": msg(1, [(1, sa_p1)], ver=0x20),
    "minor1": msg(1, [(1, sa_p1)], ver=0x11),
    "exchange33": msg(1, [(1, sa_p1)], exch=34),
    "flags80": msg(1, [(1, sa_p1)], flags=0x80),
    "zero_icookie": msg(1, [(1, sa_p1)], icky=b"\0" * 8),
    "doi_ffffffff": msg(1, [(1, struct.pack(">II", 0xFFFFFFFF, 1) + ike_prop)]),
    "first_payload_15": msg(15, [(15, b"\0" * 8)]),
    "delete_overrun": msg(8, [(8, hash20), (12, struct.pack(">IBBH", 1, 3, 4, 0xFFFF) + b"\1\2\3\4")], exch=5, msgid=3),
    "ke_empty": msg(4, [(4, b""), (10, nonce)]),
    "sa_in_sa": msg(1, [(1, struct.pack(">II", 1, 1) + msg(1, [(1, sa_p1)]))]),
    "payload_len_0": good["mm1"][:28] + b"\x0d\x00\x00\x00" + good["mm1"][32:],
}

def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

for k, v in good.items():
    write("wire_message", k + ".bin", v)
for k, v in bad.items():
    write("wire_message", "bad_" + k + ".bin", v)
for i, line in enumerate([
    "S\n", "C set [Phase 1]:192.0.2.2=peer force\n", "C get [General]:Retransmits\n", "d 00112233445566778899aabbccddeeff -\n",
    "t main 192.0.2.1\n", "p on=/var/run/x.pcap\n", "D A 99\nD T\n", "M passive\n", "C rms [x]\nC rmv [a]:b=c\n", "\xff\xfe\n",
]):
    write("fifo_command", f"cmd{i}.txt", line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line)
samples = os.path.join(HERE, "..", "..", "samples")
for n in sorted(os.listdir(samples)):
    if ".conf" in n:
        write("conf_file", n, open(os.path.join(samples, n), "rb").read())

# IKEv2: charon's recorded datagrams (tests/vectors/ikev2-charon*.txt, "= name" then hex;
# those of port 4500 begin with the non-ESP marker, which the wire target's parse
# rejects and the engine target's port-4500 records take). The engine pair's own
# messages (and the engine target's seeds) come from the Rust generator:
# `cargo test --release --test corpus -- --ignored write_engine_seeds`.
vec = os.path.join(HERE, "..", "vectors")
for n in sorted(os.listdir(vec)):
    if not (n.startswith("ikev2-charon") and n.endswith(".txt")) or "keys" in n:
        continue
    name, hexs, items = None, [], []
    for line in open(os.path.join(vec, n)).read().splitlines() + ["= end"]:
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("= "):
            if name and hexs:
                try:
                    items.append((name, bytes.fromhex("".join(hexs))))
                except ValueError:
                    pass
            name, hexs = line[2:].strip(), []
        else:
            hexs.append(line.strip())
    stem = n[len("ikev2-"):-len(".txt")]
    items = [x for x in items if any(k in x[0] for k in ("request", "response", "plain"))]
    for i, (name, data) in enumerate(items):
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        write("ikev2_wire", f"{stem}_{i:02d}_{safe}.bin", data)
        if stem != "charon" or "plain" in name:
            continue  # the engine target: one recording's datagrams are enough
        rec = (bytes([0]) if data[:4] != b"\0\0\0\0" else bytes([2])) + struct.pack(">H", len(data)) + data
        write("ikev2_engine", f"{stem}_{i:02d}_{safe}.bin", bytes([0]) + rec)

# iked.conf(5): the manual's and Debian's examples (tests/vectors/iked-conf).
ikc = os.path.join(vec, "iked-conf")
for n in sorted(os.listdir(ikc)):
    if n.endswith(".conf"):
        write("iked_conf", n, open(os.path.join(ikc, n), "rb").read())

# ipsec.conf(5): OpenBSD's ipsecctl regress inputs (tests/data/ipsecctl/*.in).
ipc = os.path.join(HERE, "..", "data", "ipsecctl")
for n in sorted(os.listdir(ipc)):
    if n.endswith(".in"):
        write("ipsec_conf", n, open(os.path.join(ipc, n), "rb").read())

# KeyNote: isakmpd's sample policies and the shapes tests/keynote.rs checks.
for n in ("policy", "isakmpd.policy"):
    write("keynote", n, open(os.path.join(samples, n), "rb").read())
keynote = {
    "aes_only": 'KeyNote-Version: 2\nComment: ESP with AES only\nAuthorizer: "POLICY"\n'
                'Licensees: "passphrase:fuzz"\nConditions: app_domain == "IPsec policy" && esp_present == "yes" &&\n'
                '            esp_enc_alg == "aes" -> "true";\n',
    "filters": 'Authorizer: "POLICY"\nLicensees: "passphrase:fuzz" || "DN:/C=ZZ/CN=fuzz"\n'
               'Conditions: app_domain == "IPsec policy" && doi == "ipsec" && initiator == "no" &&\n'
               '            phase_1 == "main" && pfs == "yes" &&\n'
               '            remote_filter_type == "IPv4 subnet" &&\n'
               '            remote_filter == "198.051.100.000-198.051.100.255" &&\n'
               '            local_filter_addr_lower ~= "^203\\\\.000\\\\." -> "true";\n',
    "delegation": 'Authorizer: "POLICY"\nLicensees: "alice"\nConditions: app_domain == "IPsec policy" -> "true";\n\n'
                  'Authorizer: "alice"\nLicensees: 2-of("passphrase:fuzz", "bob", "DN:/C=ZZ/CN=fuzz")\n'
                  'Local-Constants: X = "aes"  Y = "128"\n'
                  'Conditions: esp_enc_alg == X && @esp_key_length >= @Y -> { esp_present == "yes" -> "maybe"; pfs == "yes" -> "true"; };\n',
    "arith": 'Authorizer: "POLICY"\nConditions: (@esp_key_length + 2) * 3 % 5 == 4 || &GMTTimeOfDay > 0 || $("app" . "_domain") == "x" -> "true";\n',
}
for k, v in keynote.items():
    write("keynote", k + ".txt", v.encode())

# ikectl(8) control requests: a command line, for `load` the file's text after it.
for i, req in enumerate([
    "show sa\n", "show flows\n", "show stats\n", "show certstore\n", "reload\n", "active\n", "passive\n",
    "couple\n", "decouple\n", "log verbose\n", "log brief\n", "monitor\n", "reset all\n", "reset sa\n",
    "reset policy\n", "reset ca\n", "reset user\n", "reset id fqdn.example.org\n",
    "load /etc/iked.conf\nikev2 esp from 10.0.0.0/24 to 10.0.1.0/24 peer 192.0.2.2 psk \"x\"\n",
    "show\nsa", "reset\nid\nasn1dn/C=ZZ/CN=x", "load\n/tmp/x.conf",
]):
    write("ikectl_control", f"req{i:02d}.txt", req.encode())
