//! Protection of the Encrypted payload (RFC 7296 §3.14) and of Encrypted Fragments (RFC
//! 7383 §2.5), in place in the datagram:
//!
//! ```text
//! IKE header | [cleartext payloads] | SK header [| fragment number | total] |
//!     IV | ciphertext of (inner payloads | padding | pad length) | ICV
//! ```
//!
//! - AES-CBC with an HMAC integrity algorithm: a 16-byte random IV, the padded plaintext a
//!   multiple of 16 bytes, and the truncated HMAC (SK_a) over everything from the first
//!   byte of the IKE header to the end of the ciphertext as the ICV, checked (in constant
//!   time) before anything is decrypted.
//! - AEAD, AES-GCM-16 (RFC 5282) and ChaCha20-Poly1305 (RFC 7634): an 8-byte IV, nonce =
//!   salt (the last 4 bytes of SK_e) | IV, associated data = everything before the IV (the
//!   IKE header, cleartext payloads and the SK or SKF header with its fragment fields),
//!   a 16-byte tag as the ICV. No alignment is needed; the pad length byte is still there.
//!
//! A message whose ICV does not verify is [`SkError::Integrity`]: the engine drops it
//! without an answer (§2.21.2). The padding's contents are not checked (§3.14).
//!
//! Sending is two steps because the ICV covers the header's final length: the SK or SKF
//! payload's body is written with [`SkKeys::write_body`] through
//! [`MessageBuilder::encrypted`](super::wire::MessageBuilder::encrypted) (IV, plaintext,
//! padding, pad length and room for the ICV), then [`SkKeys::seal`] encrypts the finished
//! message in place. [`SkKeys::open`] verifies and decrypts a received one in place.
//! The IV is the caller's: random bytes for CBC, unique per key for AEAD.
//!
//! [`Reassembly`] collects the decrypted bodies of a message's fragments (RFC 7383 §2.6).

#![forbid(unsafe_code)]

use std::fmt;
use std::ops::Range;

use zeroize::Zeroize;

use crate::ike::crypto::{
    aead_open, aead_seal, cbc_decrypt, cbc_encrypt, constant_time_eq, CipherAlg, CryptoError, Key,
    Secret,
};
use crate::ike::wire::{NoRoom, Writer};

use super::keys::{Encr, IkeKeys, Integ, Suite};
use super::wire::{PayloadType, HEADER_LEN};

/// Why an SK or SKF payload could not be protected or opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkError {
    /// The message has no SK or SKF payload.
    NotEncrypted,
    /// The layout does not fit: lengths, the SK not last, a body too short for IV and ICV,
    /// ciphertext not a whole number of blocks, a pad length longer than the plaintext.
    Malformed(&'static str),
    /// The ICV does not verify: drop the message silently.
    Integrity,
    /// Key material of the wrong length for the transform.
    KeyLength,
    /// The buffer is too small.
    NoRoom,
    /// The cipher failed (not for lack of integrity).
    Crypto(CryptoError),
}

impl fmt::Display for SkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkError::NotEncrypted => f.write_str("no Encrypted payload"),
            SkError::Malformed(w) => write!(f, "malformed Encrypted payload: {w}"),
            SkError::Integrity => f.write_str("integrity check failed"),
            SkError::KeyLength => f.write_str("key of the wrong length for the transform"),
            SkError::NoRoom => f.write_str("no room in the buffer"),
            SkError::Crypto(e) => e.fmt(f),
        }
    }
}

impl From<NoRoom> for SkError {
    fn from(_: NoRoom) -> SkError {
        SkError::NoRoom
    }
}

impl From<CryptoError> for SkError {
    fn from(e: CryptoError) -> SkError {
        match e {
            CryptoError::BadTag => SkError::Integrity,
            e => SkError::Crypto(e),
        }
    }
}

/// Where the SK or SKF payload sits in a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Located {
    first: PayloadType,
    fragment: Option<(u16, u16)>,
    /// From the IV to the end of the datagram.
    body: Range<usize>,
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

/// Walks the cleartext payload chain to the SK or SKF payload, which must end the
/// datagram, as the header's length must.
fn locate(msg: &[u8]) -> Result<Located, SkError> {
    if msg.len() < HEADER_LEN {
        return Err(SkError::Malformed("shorter than the IKE header"));
    }
    let length = u32::from_be_bytes([msg[24], msg[25], msg[26], msg[27]]);
    if usize::try_from(length).ok() != Some(msg.len()) {
        return Err(SkError::Malformed(
            "header length is not the datagram length",
        ));
    }
    let mut next = PayloadType(msg[16]);
    let mut at = HEADER_LEN;
    while next != PayloadType::SK && next != PayloadType::SKF {
        if next == PayloadType::NONE {
            return Err(SkError::NotEncrypted);
        }
        if at + 4 > msg.len() {
            return Err(SkError::Malformed("payload header truncated"));
        }
        let len = be16(msg, at + 2);
        if len < 4 || at + len > msg.len() {
            return Err(SkError::Malformed("payload length"));
        }
        next = PayloadType(msg[at]);
        at += len;
    }
    let skf = next == PayloadType::SKF;
    let fixed = if skf { 8 } else { 4 };
    if at + fixed > msg.len() || be16(msg, at + 2) != msg.len() - at {
        return Err(SkError::Malformed("Encrypted payload is not last"));
    }
    let fragment = skf.then(|| (be16(msg, at + 4) as u16, be16(msg, at + 6) as u16));
    Ok(Located {
        first: PayloadType(msg[at]),
        fragment,
        body: at + fixed..msg.len(),
    })
}

/// What [`SkKeys::open`] found: the decrypted payloads are `msg[plain]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The SK's (or SKF's) next-payload field: the first inner payload's type (NONE in
    /// fragments after the first).
    pub first: PayloadType,
    /// (fragment number, total fragments) for an SKF.
    pub fragment: Option<(u16, u16)>,
    /// The inner payloads, without padding and pad length.
    pub plain: Range<usize>,
    /// The whole decrypted text: inner payloads, padding, pad length.
    pub padded: Range<usize>,
}

/// One direction's SK protection: SK_ei and SK_ai for the initiator's messages, SK_er
/// and SK_ar for the responder's.
#[derive(Clone)]
pub struct SkKeys {
    encr: Encr,
    integ: Option<Integ>,
    key: Key,
    salt: Secret<4>,
    auth: Key,
}

impl fmt::Debug for SkKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SkKeys({:?}, {:?})", self.encr, self.integ)
    }
}

impl SkKeys {
    /// From SK_e (with the AEAD salt at its end) and SK_a (empty with AEAD).
    pub fn new(
        encr: Encr,
        integ: Option<Integ>,
        sk_e: &[u8],
        sk_a: &[u8],
    ) -> Result<SkKeys, SkError> {
        if sk_e.len() != encr.key_material_len()
            || sk_a.len() != integ.map_or(0, Integ::key_len)
            || encr.is_aead() != integ.is_none()
        {
            return Err(SkError::KeyLength);
        }
        let (k, s) = sk_e.split_at(encr.key_len());
        Ok(SkKeys {
            encr,
            integ,
            key: Key::from_slice(k).ok_or(SkError::KeyLength)?,
            salt: Secret::from_slice(s).ok_or(SkError::KeyLength)?,
            auth: Key::from_slice(sk_a).ok_or(SkError::KeyLength)?,
        })
    }

    /// The protection of the initiator's messages (`initiator` true) or the responder's.
    pub fn for_sender(suite: &Suite, keys: &IkeKeys, initiator: bool) -> Result<SkKeys, SkError> {
        let (e, a) = if initiator {
            (&keys.ei, &keys.ai)
        } else {
            (&keys.er, &keys.ar)
        };
        SkKeys::new(suite.encr, suite.integ, e.as_bytes(), a.as_bytes())
    }

    pub fn iv_len(&self) -> usize {
        self.encr.iv_len()
    }

    pub fn icv_len(&self) -> usize {
        match self.integ {
            Some(i) => i.icv_len(),
            None => crate::ike::crypto::AeadAlg::TAG_LEN,
        }
    }

    /// The plaintext with the least padding and the pad length byte.
    pub fn padded_len(&self, plain_len: usize) -> usize {
        (plain_len + 1).next_multiple_of(self.encr.block_len())
    }

    /// The SK body (after the generic header and any fragment fields) for `plain_len`
    /// bytes of inner payloads.
    pub fn body_len(&self, plain_len: usize) -> usize {
        self.iv_len() + self.padded_len(plain_len) + self.icv_len()
    }

    /// Writes the body of an SK or SKF payload: `iv`, `plain` with zero padding and the pad
    /// length, zeros where the ICV goes. [`SkKeys::seal`] then encrypts the message.
    pub fn write_body(&self, w: &mut Writer<'_>, plain: &[u8], iv: &[u8]) -> Result<(), SkError> {
        if iv.len() != self.iv_len() {
            return Err(SkError::Malformed("IV length"));
        }
        let pad = self.padded_len(plain.len()) - plain.len() - 1;
        w.bytes(iv)?;
        w.bytes(plain)?;
        for _ in 0..pad {
            w.u8(0)?;
        }
        w.u8(pad as u8)?;
        for _ in 0..self.icv_len() {
            w.u8(0)?;
        }
        Ok(())
    }

    /// [`SkKeys::write_body`] with the caller's padding: `padded` ends with the pad length
    /// byte. For re-creating a recorded message byte for byte.
    pub fn write_body_padded(
        &self,
        w: &mut Writer<'_>,
        padded: &[u8],
        iv: &[u8],
    ) -> Result<(), SkError> {
        let pad = usize::from(*padded.last().ok_or(SkError::Malformed("empty plaintext"))?);
        if iv.len() != self.iv_len()
            || pad + 1 > padded.len()
            || !padded.len().is_multiple_of(self.encr.block_len())
        {
            return Err(SkError::Malformed("padding"));
        }
        w.bytes(iv)?;
        w.bytes(padded)?;
        for _ in 0..self.icv_len() {
            w.u8(0)?;
        }
        Ok(())
    }

    /// Splits the body into IV, ciphertext and ICV ranges.
    fn split(&self, body: &Range<usize>) -> Result<(Range<usize>, Range<usize>), SkError> {
        let (iv, icv) = (self.iv_len(), self.icv_len());
        if body.len() < iv + icv + 1 {
            return Err(SkError::Malformed("too short for IV, pad length and ICV"));
        }
        let ct = body.start + iv..body.end - icv;
        if !ct.len().is_multiple_of(self.encr.block_len()) {
            return Err(SkError::Malformed(
                "ciphertext is not a whole number of blocks",
            ));
        }
        Ok((body.start..ct.start, ct))
    }

    fn nonce(&self, iv: &[u8]) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(self.salt.as_bytes());
        n[4..].copy_from_slice(iv);
        n
    }

    /// Encrypts the SK or SKF payload of the finished message `msg` (laid out by
    /// [`SkKeys::write_body`]) in place and writes its ICV.
    pub fn seal(&self, msg: &mut [u8]) -> Result<(), SkError> {
        let loc = locate(msg)?;
        let (iv, ct) = self.split(&loc.body)?;
        let icv_at = ct.end;
        match (self.encr, self.integ) {
            (Encr::AesCbc(n), Some(integ)) => {
                let (head, data) = msg.split_at_mut(ct.start);
                cbc_encrypt(
                    CipherAlg::Aes(n),
                    self.key.as_bytes(),
                    &head[iv],
                    &mut data[..ct.len()],
                )?;
                let mut icv = [0u8; 32];
                let icv = &mut icv[..integ.icv_len()];
                integ
                    .mac(self.auth.as_bytes(), &[&msg[..icv_at]], icv)
                    .map_err(|_| SkError::KeyLength)?;
                msg[icv_at..].copy_from_slice(icv);
            }
            (Encr::Aead(a), None) => {
                let nonce = self.nonce(&msg[iv.clone()]);
                let (aad, rest) = msg.split_at_mut(iv.start);
                let (data, tag) = rest[iv.len()..].split_at_mut(ct.len());
                aead_seal(a, self.key.as_bytes(), &nonce, aad, data, tag)?;
            }
            _ => return Err(SkError::KeyLength),
        }
        Ok(())
    }

    /// Verifies the ICV of a received message and decrypts its SK or SKF payload in place.
    pub fn open(&self, msg: &mut [u8]) -> Result<Opened, SkError> {
        let loc = locate(msg)?;
        let (iv, ct) = self.split(&loc.body)?;
        match (self.encr, self.integ) {
            (Encr::AesCbc(n), Some(integ)) => {
                let mut icv = [0u8; 32];
                let icv = &mut icv[..integ.icv_len()];
                integ
                    .mac(self.auth.as_bytes(), &[&msg[..ct.end]], icv)
                    .map_err(|_| SkError::KeyLength)?;
                if !constant_time_eq(icv, &msg[ct.end..]) {
                    return Err(SkError::Integrity);
                }
                let (head, data) = msg.split_at_mut(ct.start);
                cbc_decrypt(
                    CipherAlg::Aes(n),
                    self.key.as_bytes(),
                    &head[iv],
                    &mut data[..ct.len()],
                )?;
            }
            (Encr::Aead(a), None) => {
                let nonce = self.nonce(&msg[iv.clone()]);
                let (aad, rest) = msg.split_at_mut(iv.start);
                let (data, tag) = rest[iv.len()..].split_at_mut(ct.len());
                aead_open(a, self.key.as_bytes(), &nonce, aad, data, tag)?;
            }
            _ => return Err(SkError::KeyLength),
        }
        let pad = usize::from(msg[ct.end - 1]);
        if pad + 1 > ct.len() {
            return Err(SkError::Malformed("pad length longer than the plaintext"));
        }
        Ok(Opened {
            first: loc.first,
            fragment: loc.fragment,
            plain: ct.start..ct.end - 1 - pad,
            padded: ct,
        })
    }
}

/// What [`Reassembly::add`] did with a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Kept; more are missing.
    Incomplete,
    /// Kept, and every fragment is now here: call [`Reassembly::assemble`].
    Complete,
    /// A fragment already held (a retransmission): ignored.
    Duplicate,
}

/// Why a fragment was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReassemblyError {
    /// Number 0, or above the total.
    BadNumber,
    /// Fewer fragments in total than those held (an older fragmentation, RFC 7383 §2.6):
    /// dropped.
    Stale,
    /// More fragments than this buffer tracks.
    TooMany,
    /// The plaintexts do not fit the buffer.
    TooBig,
    /// `assemble` before every fragment is here, or into too small a buffer.
    Incomplete,
}

/// The decrypted bodies of one message's fragments (RFC 7383 §2.6), kept as they arrive
/// and put in order of their numbers once the last is here. At most `MAX` fragments and
/// `CAP` bytes of plaintext. A fragment with a larger Total Fragments than those held
/// starts over (the sender re-fragmented); the buffer is wiped when dropped.
pub struct Reassembly<const CAP: usize, const MAX: usize> {
    buf: [u8; CAP],
    used: usize,
    total: u16,
    first: PayloadType,
    /// Per fragment number - 1: where its plaintext is in `buf`.
    held: [Option<(usize, usize)>; MAX],
    count: usize,
}

impl<const CAP: usize, const MAX: usize> Default for Reassembly<CAP, MAX> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CAP: usize, const MAX: usize> Drop for Reassembly<CAP, MAX> {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

impl<const CAP: usize, const MAX: usize> Reassembly<CAP, MAX> {
    pub fn new() -> Self {
        Reassembly {
            buf: [0; CAP],
            used: 0,
            total: 0,
            first: PayloadType::NONE,
            held: [None; MAX],
            count: 0,
        }
    }

    pub fn reset(&mut self) {
        self.buf[..self.used].zeroize();
        self.used = 0;
        self.total = 0;
        self.first = PayloadType::NONE;
        self.held = [None; MAX];
        self.count = 0;
    }

    /// Adds fragment `number` of `total` with its decrypted inner payloads (`plain`) and
    /// its SKF next-payload field (`first`, meaningful in fragment 1).
    pub fn add(
        &mut self,
        number: u16,
        total: u16,
        first: PayloadType,
        plain: &[u8],
    ) -> Result<Progress, ReassemblyError> {
        if number == 0 || number > total {
            return Err(ReassemblyError::BadNumber);
        }
        if usize::from(total) > MAX {
            return Err(ReassemblyError::TooMany);
        }
        if total < self.total {
            return Err(ReassemblyError::Stale);
        }
        if total > self.total {
            self.reset();
            self.total = total;
        }
        let slot = usize::from(number - 1);
        if self.held[slot].is_some() {
            return Ok(Progress::Duplicate);
        }
        if self.used + plain.len() > CAP {
            return Err(ReassemblyError::TooBig);
        }
        self.buf[self.used..self.used + plain.len()].copy_from_slice(plain);
        self.held[slot] = Some((self.used, plain.len()));
        self.used += plain.len();
        self.count += 1;
        if number == 1 {
            self.first = first;
        }
        Ok(if self.count == usize::from(self.total) {
            Progress::Complete
        } else {
            Progress::Incomplete
        })
    }

    /// The message's inner payloads in fragment order into `out`: the first payload's
    /// type and the length written.
    pub fn assemble(&self, out: &mut [u8]) -> Result<(PayloadType, usize), ReassemblyError> {
        if self.total == 0 || self.count != usize::from(self.total) || out.len() < self.used {
            return Err(ReassemblyError::Incomplete);
        }
        let mut at = 0;
        for (start, len) in self.held[..usize::from(self.total)].iter().flatten() {
            out[at..at + len].copy_from_slice(&self.buf[*start..start + len]);
            at += len;
        }
        Ok((self.first, at))
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::{ExchangeType, Header, MessageBuilder, FLAG_INITIATOR};
    use super::*;
    use crate::ike::crypto::AeadAlg;

    fn header() -> Header {
        Header {
            spi_i: [1, 2, 3, 4, 5, 6, 7, 8],
            spi_r: [9, 10, 11, 12, 13, 14, 15, 16],
            flags: FLAG_INITIATOR,
            exchange: ExchangeType::INFORMATIONAL,
            msgid: 7,
            ..Header::default()
        }
    }

    fn build(k: &SkKeys, plain: &[u8], frag: Option<(u16, u16)>, buf: &mut [u8]) -> usize {
        let iv = [0x42u8; 16];
        let mut b = MessageBuilder::new(buf, &header()).unwrap();
        b.encrypted(PayloadType::DELETE, frag, |w| {
            k.write_body(w, plain, &iv[..k.iv_len()])
                .map_err(|_| NoRoom)
        })
        .unwrap();
        let n = b.finish().unwrap();
        k.seal(&mut buf[..n]).unwrap();
        n
    }

    fn suites() -> Vec<SkKeys> {
        vec![
            SkKeys::new(
                Encr::AesCbc(16),
                Some(Integ::HmacSha1_96),
                &[1; 16],
                &[2; 20],
            )
            .unwrap(),
            SkKeys::new(
                Encr::AesCbc(32),
                Some(Integ::HmacSha2_512_256),
                &[1; 32],
                &[2; 64],
            )
            .unwrap(),
            SkKeys::new(Encr::Aead(AeadAlg::AesGcm(24)), None, &[1; 28], &[]).unwrap(),
            SkKeys::new(Encr::Aead(AeadAlg::ChaCha20Poly1305), None, &[1; 36], &[]).unwrap(),
        ]
    }

    #[test]
    fn round_trip_and_every_flip_fails() {
        let plain = b"\x00\x00\x00\x08\x01\x00\x00\x00 twenty-one more bytes";
        for k in suites() {
            for frag in [None, Some((2, 3))] {
                let mut buf = [0u8; 256];
                let n = build(&k, plain, frag, &mut buf);
                assert_eq!(
                    n,
                    HEADER_LEN + 4 + frag.map_or(0, |_| 4) + k.body_len(plain.len())
                );
                let sealed = buf[..n].to_vec();
                let o = k.open(&mut buf[..n]).unwrap();
                assert_eq!(&buf[o.plain.clone()], plain, "{k:?}");
                assert_eq!(o.fragment, frag);
                assert_eq!(o.first, PayloadType::DELETE);
                for i in 0..n {
                    let mut m = sealed.clone();
                    m[i] ^= 0x01;
                    let r = k.open(&mut m);
                    assert!(r.is_err(), "{k:?}: flip at {i} opened");
                }
            }
        }
    }

    #[test]
    fn layout_errors() {
        let k = &suites()[0];
        let mut buf = [0u8; 256];
        let n = build(k, b"abc", None, &mut buf);
        // A truncated datagram: header length no longer matches.
        assert!(matches!(
            k.open(&mut buf[..n - 1]),
            Err(SkError::Malformed(_))
        ));
        // No SK payload at all.
        let mut b = MessageBuilder::new(&mut buf, &header()).unwrap();
        b.notify(super::super::wire::NotifyType(16384), &[])
            .unwrap();
        let n = b.finish().unwrap();
        assert_eq!(k.open(&mut buf[..n]), Err(SkError::NotEncrypted));
        assert_eq!(
            SkKeys::new(Encr::AesCbc(16), None, &[0; 16], &[]).unwrap_err(),
            SkError::KeyLength
        );
        assert!(SkKeys::new(Encr::Aead(AeadAlg::AesGcm(16)), None, &[0; 16], &[]).is_err());
    }

    #[test]
    fn reassembly() {
        let mut r = Reassembly::<64, 4>::new();
        assert_eq!(
            r.add(2, 3, PayloadType::NONE, b"bb"),
            Ok(Progress::Incomplete)
        );
        assert_eq!(
            r.add(2, 3, PayloadType::NONE, b"bb"),
            Ok(Progress::Duplicate)
        );
        assert_eq!(
            r.add(1, 2, PayloadType::NONE, b"x"),
            Err(ReassemblyError::Stale)
        );
        assert_eq!(
            r.add(4, 3, PayloadType::NONE, b"x"),
            Err(ReassemblyError::BadNumber)
        );
        assert_eq!(
            r.add(1, 5, PayloadType::NONE, b"x"),
            Err(ReassemblyError::TooMany)
        );
        let mut out = [0u8; 16];
        assert_eq!(r.assemble(&mut out), Err(ReassemblyError::Incomplete));
        assert_eq!(
            r.add(3, 3, PayloadType::NONE, b"ccc"),
            Ok(Progress::Incomplete)
        );
        assert_eq!(r.add(1, 3, PayloadType::IDI, b"a"), Ok(Progress::Complete));
        assert_eq!(r.assemble(&mut out), Ok((PayloadType::IDI, 6)));
        assert_eq!(&out[..6], b"abbccc");
        // A larger total starts over.
        assert_eq!(
            r.add(1, 4, PayloadType::IDI, b"z"),
            Ok(Progress::Incomplete)
        );
        assert_eq!(r.assemble(&mut out), Err(ReassemblyError::Incomplete));
        assert_eq!(
            r.add(2, 4, PayloadType::NONE, &[0; 64]),
            Err(ReassemblyError::TooBig)
        );
    }
}
