#!/usr/bin/env python3
"""Turn two charon debug logs (ike = 4, chd = 4, net = 4) of one IKEv1 Main Mode +
Quick Mode negotiation into a block of tests/vectors/strongswan-ikev1.txt.

Usage: extract_strongswan.py NAME PSK INITIATOR.log RESPONDER.log

Inputs (nonces, KE values, cookies, SA and ID bodies, SPIs, message ID, last phase 1
CBC block) come from the packets charon dumped as it received them and from the data
it logged before hashing; outputs (SKEYID..., Ka, IVs, HASH_I/R, KEYMAT) are the values
charon itself computed.  Nothing here computes a key: the test recomputes them with
our code from the inputs and compares with charon's outputs.
"""
import re
import sys

DUMP_HEAD = re.compile(r'^\S+ \d+\[(\w+)\] (?:<[^>]*> )?(.*?) => (\d+) bytes @ ')
DUMP_LINE = re.compile(r'^\S+ \d+\[\w+\] (?:<[^>]*> )?\s*\d+: ((?:[0-9A-F]{2} ?)+)')


def dumps(path):
    """Every hex dump in a log, as (label, bytes), in order."""
    out = []
    lines = open(path).read().splitlines()
    i = 0
    while i < len(lines):
        m = DUMP_HEAD.match(lines[i])
        i += 1
        if not m:
            continue
        label, n = m.group(2), int(m.group(3))
        hx = ''
        while len(hx) < 2 * n and i < len(lines):
            mm = DUMP_LINE.match(lines[i])
            if not mm:
                break
            hx += mm.group(1)[:48].replace(' ', '')
            i += 1
        out.append((label, bytes.fromhex(hx[:2 * n])))
    return out


def first(ds, label):
    for l, b in ds:
        if l == label:
            return b
    raise SystemExit('no "%s" in log' % label)


def isakmp(pkt):
    """(header fields, [(type, body)]) of a cleartext packet; None if encrypted."""
    if pkt[:4] == b'\0\0\0\0':  # non-ESP marker on port 4500
        pkt = pkt[4:]
    if len(pkt) < 28:
        return None
    icky, rcky, np, ver, exch, flags, mid, length = (
        pkt[0:8], pkt[8:16], pkt[16], pkt[17], pkt[18], pkt[19],
        int.from_bytes(pkt[20:24], 'big'), int.from_bytes(pkt[24:28], 'big'))
    if len(pkt) < 28 or ver != 0x10 or length != len(pkt):
        return None  # ESP in UDP, a keepalive, or not IKEv1
    hdr = dict(icky=icky, rcky=rcky, exch=exch, flags=flags, mid=mid, raw=pkt[:length])
    if flags & 1:
        return hdr, None
    pls, off = [], 28
    while np:
        nxt, plen = pkt[off], int.from_bytes(pkt[off + 2:off + 4], 'big')
        pls.append((np, pkt[off + 4:off + plen]))
        np, off = nxt, off + plen
    return hdr, pls


def received(ds):
    return [m for m in (isakmp(b) for l, b in ds if l == 'received packet') if m]


def main():
    name, psk, ilog, rlog = sys.argv[1:5]
    di, dr = dumps(ilog), dumps(rlog)
    # MM3 (initiator's KE, Ni) was received by the responder, MM4 by the initiator.
    mm_at_r = [p for h, p in received(dr) if h['exch'] == 2 and p]
    mm_at_i = [p for h, p in received(di) if h['exch'] == 2 and p]
    mm3 = next(p for p in mm_at_r if any(t == 4 for t, _ in p))
    mm4 = next(p for p in mm_at_i if any(t == 4 for t, _ in p))
    gxi = next(b for t, b in mm3 if t == 4)
    ni = next(b for t, b in mm3 if t == 10)
    gxr = next(b for t, b in mm4 if t == 4)
    nr = next(b for t, b in mm4 if t == 10)
    # the last phase 1 message the initiator received: MM6, encrypted
    mm6 = [h for h, p in received(di) if h['exch'] == 2 and p is None][-1]
    hash_i_data = first(di, 'HASH_I data')
    hash_r_data = first(dr, 'HASH_R data')
    cky = hash_i_data[len(gxi) + len(gxr):len(gxi) + len(gxr) + 16]
    qm_ivs = [l for l, _ in di if l.startswith('next IV for MID ') and l != 'next IV for MID 0']
    mid = int(qm_ivs[0].split()[-1])
    seed_i = first(di, 'initiator SA seed')
    seed_r = first(di, 'responder SA seed')
    try:
        qm_gxy = first(di, 'DH secret')
    except SystemExit:
        qm_gxy = b''
    g = len(qm_gxy)
    # seed = [g(qm)^xy] | protocol | SPI | Ni_b | Nr_b
    qm_ni = seed_i[g + 5:g + 5 + (len(seed_i) - g - 5) // 2]
    qm_nr = seed_i[g + 5 + len(qm_ni):]

    def row(k, v):
        if isinstance(v, (bytes, bytearray)):
            v = v.hex()
        print('%s = %s' % (k, v))

    print('[%s]' % name)
    row('psk', psk.encode())
    row('cky_i', cky[:8])
    row('cky_r', cky[8:])
    row('ni', ni)
    row('nr', nr)
    row('gxi', gxi)
    row('gxr', gxr)
    row('gxy', first(di, 'shared Diffie Hellman secret'))
    row('gxy_responder', first(dr, 'shared Diffie Hellman secret'))
    row('hash_i_data', hash_i_data)
    row('hash_r_data', hash_r_data)
    row('mm6_last_block', mm6['raw'][-16:])
    row('skeyid', first(di, 'SKEYID'))
    row('skeyid_d', first(di, 'SKEYID_d'))
    row('skeyid_a', first(di, 'SKEYID_a'))
    row('skeyid_e', first(di, 'SKEYID_e'))
    row('ka', first(di, 'encryption key Ka'))
    row('iv', first(di, 'initial IV'))
    row('hash_i', first(di, 'HASH_I'))
    row('hash_r', first(dr, 'HASH_R'))
    row('qm_mid', mid)
    row('qm_iv', first(di, qm_ivs[0]))
    row('qm_gxy', qm_gxy)
    row('qm_protocol', seed_i[g])
    row('qm_spi_i', seed_i[g + 1:g + 5])
    row('qm_spi_r', seed_r[g + 1:g + 5])
    row('qm_ni', qm_ni)
    row('qm_nr', qm_nr)
    row('qm_hash3', first(di, 'Hash(3)'))
    row('keymat_i', first(di, 'encryption initiator key') + first(di, 'integrity initiator key'))
    row('keymat_r', first(di, 'encryption responder key') + first(di, 'integrity responder key'))
    print()


main()
