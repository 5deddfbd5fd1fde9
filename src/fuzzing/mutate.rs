//! A deterministic mutator for the corpus test and the long campaign: a seeded RNG and
//! the usual mutations (bit flips, interesting bytes, truncation, insertion and
//! deletion, splicing with another input), plus two that know the formats: the length
//! fields of an ISAKMP/IKEv2 header and payload chain (and of the engine target's
//! records) set to off-by-one and extreme values, and, for text targets, tokens of the
//! grammars spliced in.

#![forbid(unsafe_code)]

/// splitmix64: small, seedable, good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u8] = &[
    0, 1, 2, 3, 4, 7, 8, 0x0f, 0x10, 0x20, 0x21, 0x22, 0x23, 0x25, 0x29, 0x2e, 0x35, 0x40, 0x7f,
    0x80, 0xfe, 0xff,
];

/// Tokens of iked.conf, ipsec.conf, isakmpd.conf, KeyNote and the command grammars.
const TOKENS: &[&str] = &[
    "\n",
    " ",
    "\t",
    "\"",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "=",
    ",",
    ";",
    ":",
    "/",
    "\\\n",
    "#",
    "$",
    "$gw",
    "!",
    "-",
    "->",
    "&&",
    "||",
    "==",
    "!=",
    "~=",
    "<",
    ">",
    "@",
    "0",
    "1",
    "65535",
    "4294967296",
    "-1",
    "192.0.2.1",
    "198.51.100.0/24",
    "2001:db8::/32",
    "any",
    "dynamic",
    "default",
    "ikev2",
    "ikev1",
    "ike",
    "esp",
    "ah",
    "from",
    "to",
    "peer",
    "local",
    "srcid",
    "dstid",
    "psk",
    "include",
    "set",
    "tag",
    "tap",
    "passive",
    "active",
    "quick",
    "main",
    "auth",
    "enc",
    "group",
    "lifetime",
    "bytes",
    "config",
    "address",
    "rsa",
    "eap",
    "\"mschap-v2\"",
    "transport",
    "tunnel",
    "proto",
    "port",
    "inet",
    "inet6",
    "KeyNote-Version: 2\n",
    "Authorizer: \"POLICY\"\n",
    "Licensees: ",
    "Conditions: ",
    "Local-Constants: ",
    "app_domain",
    "\"IPsec policy\"",
    "\"true\"",
    "POLICY",
    "passphrase:fuzz",
    "show sa",
    "load",
    "reset",
    "id",
    "C set [Phase 1]:",
    "[General]\n",
    "Transforms=",
];

fn length_fields_at(d: &[u8], base: usize, out: &mut Vec<(usize, usize)>) {
    // An ISAKMP/IKEv2 header: the length at 24..28, the first payload's header at 28.
    if d.len() < base + 28 {
        return;
    }
    out.push((base + 24, 4));
    let mut at = base + 28;
    for _ in 0..64 {
        if d.len() < at + 4 {
            return;
        }
        out.push((at + 2, 2));
        let len = usize::from(u16::from_be_bytes([d[at + 2], d[at + 3]]));
        if len < 4 {
            return;
        }
        at += len;
    }
}

/// Offsets and widths of the length fields in `d`: the header and payload chain of a
/// datagram, or (for the engine target) of each record's datagram and the records'
/// own lengths.
fn length_fields(d: &[u8], records: bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    if !records {
        length_fields_at(d, 0, &mut out);
        return out;
    }
    let mut at = 1;
    while d.len() >= at + 3 {
        out.push((at + 1, 2));
        let len = usize::from(u16::from_be_bytes([d[at + 1], d[at + 2]]));
        length_fields_at(&d[..(at + 3 + len).min(d.len())], at + 3, &mut out);
        at += 3 + len;
    }
    out
}

/// The payloads of an ISAKMP/IKEv2 message at `base` whose lengths hold: (offset of
/// the generic header, length).
fn payloads_at(d: &[u8], base: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    if d.len() < base + 28 {
        return out;
    }
    let mut at = base + 28;
    while d.len() >= at + 4 && out.len() < 64 {
        let len = usize::from(u16::from_be_bytes([d[at + 2], d[at + 3]]));
        if len < 4 || at + len > d.len() {
            break;
        }
        out.push((at, len));
        at += len;
    }
    out
}

/// Changes the body of one payload and fixes up its length, the header's and (for the
/// engine's records) the record's, so that the message still walks and the payload's
/// own parser gets the change.
fn mutate_payload(rng: &mut Rng, data: &mut Vec<u8>, kind: Kind) {
    // The datagram: the whole input, or one record's.
    let (base, rec_len_at) = if kind == Kind::Records {
        let mut recs = Vec::new();
        let mut at = 1;
        while data.len() >= at + 3 {
            let len = usize::from(u16::from_be_bytes([data[at + 1], data[at + 2]]));
            if at + 3 + len > data.len() {
                break;
            }
            recs.push((at + 3, Some(at + 1)));
            at += 3 + len;
        }
        if recs.is_empty() {
            return;
        }
        recs[rng.below(recs.len())]
    } else {
        (0, None)
    };
    let ps = payloads_at(data, base);
    if ps.is_empty() {
        return;
    }
    let (at, len) = ps[rng.below(ps.len())];
    let body = at + 4;
    let blen = len - 4;
    let delta: isize = match rng.below(5) {
        0 if blen > 0 => {
            let i = body + rng.below(blen);
            data[i] ^= 1 << rng.below(8);
            0
        }
        1 if blen > 0 => {
            let i = body + rng.below(blen);
            data[i] = INTERESTING[rng.below(INTERESTING.len())];
            0
        }
        2 => {
            let i = body + rng.below(blen + 1);
            let k = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..k)
                .map(|_| INTERESTING[rng.below(INTERESTING.len())])
                .collect();
            data.splice(i..i, bytes);
            k as isize
        }
        3 if blen > 0 => {
            let i = body + rng.below(blen);
            let k = (1 + rng.below(8)).min(body + blen - i);
            data.drain(i..i + k);
            -(k as isize)
        }
        _ if blen >= 4 => {
            // A length inside the body (proposal, transform, selector, attribute).
            let i = body + rng.below(blen - 1);
            let v = match rng.below(4) {
                0 => 0u16,
                1 => u16::from_be_bytes([data[i], data[i + 1]]).wrapping_add(1),
                2 => u16::from_be_bytes([data[i], data[i + 1]]).wrapping_sub(1),
                _ => 0xffff,
            };
            data[i..i + 2].copy_from_slice(&v.to_be_bytes());
            0
        }
        _ => 0,
    };
    let fix16 = |data: &mut Vec<u8>, at: usize| {
        let v = u16::from_be_bytes([data[at], data[at + 1]]);
        let v = (v as isize + delta).clamp(0, 0xffff) as u16;
        data[at..at + 2].copy_from_slice(&v.to_be_bytes());
    };
    fix16(data, at + 2);
    let t = u32::from_be_bytes([
        data[base + 24],
        data[base + 25],
        data[base + 26],
        data[base + 27],
    ]);
    let t = (t as i64 + delta as i64).clamp(0, u32::MAX as i64) as u32;
    data[base + 24..base + 28].copy_from_slice(&t.to_be_bytes());
    if let Some(r) = rec_len_at {
        fix16(data, r);
    }
}

/// What kind of input a target takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Binary,
    /// The engine target's records.
    Records,
    Text,
}

/// Mutates `data` in place with one to four mutations; `other` is another input to
/// splice from; the result is at most `max` bytes.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], kind: Kind, max: usize) {
    let n = 1 + rng.below(4);
    for _ in 0..n {
        let len = data.len();
        match rng.below(if kind == Kind::Text { 11 } else { 13 }) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if len > 0 => {
                let i = rng.below(len);
                data[i] = data[i].wrapping_add(rng.below(33) as u8).wrapping_sub(16);
            }
            3 => data.truncate(rng.below(len + 1)),
            4 | 5 => {
                // Length fields: the header's, the payloads', the records'.
                let fields = length_fields(data, kind == Kind::Records);
                if fields.is_empty() {
                    continue;
                }
                let (at, w) = fields[rng.below(fields.len())];
                let cur = if w == 2 {
                    u64::from(u16::from_be_bytes([data[at], data[at + 1]]))
                } else {
                    u64::from(u32::from_be_bytes([
                        data[at],
                        data[at + 1],
                        data[at + 2],
                        data[at + 3],
                    ]))
                };
                let v = match rng.below(8) {
                    0 => 0,
                    1 => cur.wrapping_sub(1),
                    2 => cur + 1,
                    3 => cur.wrapping_sub(4),
                    4 => cur + 4,
                    5 => 0xffff_ffff,
                    6 => rng.below(64) as u64,
                    _ => rng.next_u64(),
                };
                let b = v.to_be_bytes();
                data[at..at + w].copy_from_slice(&b[8 - w..]);
            }
            6 if !other.is_empty() => {
                // Splice: a piece of the other input, over or into this one.
                let a = rng.below(other.len());
                let b = a + 1 + rng.below((other.len() - a).min(256));
                let at = rng.below(len + 1);
                if rng.below(2) == 0 {
                    data.splice(at..at, other[a..b].iter().copied());
                } else {
                    let end = (at + b - a).min(len);
                    data.splice(at..end, other[a..b].iter().copied());
                }
            }
            7 => {
                let at = rng.below(len + 1);
                let k = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..k).map(|_| rng.next_u64() as u8).collect();
                data.splice(at..at, bytes);
            }
            8 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                data.drain(a..b);
            }
            9 if len > 0 => {
                // Repeat a piece (a payload twice, a line twice).
                let a = rng.below(len);
                let b = (a + 1 + rng.below(128)).min(len);
                let piece = data[a..b].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, piece);
            }
            10..=12 if kind != Kind::Text => mutate_payload(rng, data, kind),
            10 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                let at = rng.below(len + 1);
                if rng.below(3) == 0 {
                    let end = (at + t.len()).min(len);
                    data.splice(at..end, t.iter().copied());
                } else {
                    data.splice(at..at, t.iter().copied());
                }
            }
            _ => {}
        }
    }
    data.truncate(max);
}
