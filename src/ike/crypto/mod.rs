//! The crypto core: algorithms by their IKE numbers, secrets that wipe themselves, the
//! random source, and the RFC 2409 derivations. IKEv2 (`crate::ikev2::keys` and `sk`)
//! builds on the same primitives, plus the AEAD ciphers ([`AeadAlg`], [`aead_seal`],
//! [`aead_open`]).
//!
//! Primitives come from OpenSSL through `openssl.rs`, the only file here that names it; the
//! derivations in `derive.rs` are compositions of the negotiated PRF and hash exactly as
//! RFC 2409 §5 and Appendix B write them. Nothing here hand-rolls a primitive.
//!
//! Randomness goes through [`Random`]: the OS generator (OpenSSL's) normally, and under
//! `-r seed` a deterministic stream so that regression runs repeat packet for packet.

pub mod derive;
pub mod openssl;

use std::fmt;

use zeroize::Zeroize;

pub use self::openssl::{
    aead_open, aead_seal, available_ciphers, cbc_decrypt, cbc_encrypt, constant_time_eq,
    ecdsa_der_to_raw, ecdsa_raw_to_der, hash, init, prf, CertNames, Certificate, Crl, DhPrivate,
    KeyKind, PrivateKey, PublicKey, RsaPrivate, RsaPublic, SigPadding, TrustStore,
};

use super::wire::{EncryptionAlgorithm, GroupDescription, HashAlgorithm};

/// A secret of at most `N` bytes in a fixed buffer, zeroed when dropped.
#[derive(Clone)]
pub struct Secret<const N: usize> {
    buf: [u8; N],
    len: usize,
}

/// Keys and PRF outputs (SKEYID and friends, cipher keys, IVs).
pub type Key = Secret<64>;
/// KEYMAT for one SA direction: encryption plus integrity key, expanded.
pub type Keymat = Secret<128>;
/// A Diffie-Hellman shared secret (MODP 8192 is 1024 bytes).
pub type SharedSecret = Secret<1024>;

impl<const N: usize> Secret<N> {
    pub const CAPACITY: usize = N;

    pub fn new() -> Self {
        Secret {
            buf: [0; N],
            len: 0,
        }
    }

    pub fn from_slice(b: &[u8]) -> Option<Self> {
        let mut s = Self::new();
        s.extend(b).then_some(s)
    }

    /// Appends; false (and unchanged) if it would not fit.
    pub fn extend(&mut self, b: &[u8]) -> bool {
        if self.len + b.len() > N {
            return false;
        }
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
        true
    }

    pub fn truncate(&mut self, n: usize) {
        if n < self.len {
            self.buf[n..self.len].zeroize();
            self.len = n;
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Default for Secret<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Drop for Secret<N> {
    fn drop(&mut self) {
        wipe(&mut self.buf);
    }
}

/// Zeroes a dropped [`Secret`]: one function for every size, called where a secret goes
/// out of scope rather than a volatile loop written out at each of those places.
#[inline(never)]
fn wipe(buf: &mut [u8]) {
    buf.zeroize();
}

impl<const N: usize> PartialEq for Secret<N> {
    fn eq(&self, other: &Self) -> bool {
        // Constant time over the bytes; the lengths are not secret.
        self.len == other.len && openssl::constant_time_eq(self.as_bytes(), other.as_bytes())
    }
}

/// Never prints the bytes: secrets must not reach a log.
impl<const N: usize> fmt::Debug for Secret<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.len)
    }
}

/// Secrets an SA keeps for its life, stored together in one allocation of exactly their
/// length. A [`Secret`] is sized for the longest use: an ISAKMP SA's four keys held 288
/// bytes where AES-128 with SHA2-256 needs 96, and at 10,000 tunnels that was megabytes.
/// Zeroed when dropped; never printed.
#[derive(Clone)]
pub struct SecretParts<const K: usize> {
    buf: Box<[u8]>,
    ends: [u16; K],
}

impl<const K: usize> SecretParts<K> {
    /// The parts in order (each at most 64 KiB: keys, IVs and KEYMAT are far shorter).
    pub fn new(parts: [&[u8]; K]) -> Self {
        // Exactly the room needed: a vector that grew would leave copies behind.
        let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len().min(0xffff)).sum());
        let mut ends = [0u16; K];
        for (end, p) in ends.iter_mut().zip(parts) {
            let p = &p[..p.len().min(0xffff)];
            if buf.len() + p.len() <= buf.capacity() && buf.len() + p.len() <= 0xffff {
                buf.extend_from_slice(p);
            }
            *end = buf.len() as u16;
        }
        SecretParts {
            buf: buf.into_boxed_slice(),
            ends,
        }
    }

    /// Part `i` (empty past the last).
    pub fn part(&self, i: usize) -> &[u8] {
        let start = match i.checked_sub(1) {
            Some(j) => self.ends.get(j).map_or(0, |&e| usize::from(e)),
            None => 0,
        };
        let end = self.ends.get(i).map_or(start, |&e| usize::from(e));
        self.buf.get(start..end).unwrap_or(&[])
    }
}

impl<const K: usize> Drop for SecretParts<K> {
    fn drop(&mut self) {
        wipe(&mut self.buf);
    }
}

/// Never prints the bytes: secrets must not reach a log.
impl<const K: usize> fmt::Debug for SecretParts<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes in {K} parts)", self.buf.len())
    }
}

/// The phase 1 hash algorithms and the HMAC PRFs built on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub fn from_ike(h: HashAlgorithm) -> Option<HashAlg> {
        Some(match h {
            HashAlgorithm::MD5 => HashAlg::Md5,
            HashAlgorithm::SHA => HashAlg::Sha1,
            HashAlgorithm::SHA2_256 => HashAlg::Sha256,
            HashAlgorithm::SHA2_384 => HashAlg::Sha384,
            HashAlgorithm::SHA2_512 => HashAlg::Sha512,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Md5 => "MD5",
            HashAlg::Sha1 => "SHA1",
            HashAlg::Sha256 => "SHA2-256",
            HashAlg::Sha384 => "SHA2-384",
            HashAlg::Sha512 => "SHA2-512",
        }
    }

    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Md5 => 16,
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }
}

/// The phase 1 ciphers (CBC, padding done by IKE itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherAlg {
    Des,
    TripleDes,
    /// AES with a key of 16, 24 or 32 bytes.
    Aes(usize),
    /// Blowfish with a key of 5 to 56 bytes.
    Blowfish(usize),
    /// CAST-128 with a key of 5 to 16 bytes.
    Cast(usize),
}

impl CipherAlg {
    /// The cipher for an IKE algorithm and KEY_LENGTH attribute (in bits; `None` means the
    /// default: the cipher's fixed size, or isakmpd's choice of the maximum otherwise).
    pub fn from_ike(e: EncryptionAlgorithm, key_bits: Option<u16>) -> Option<CipherAlg> {
        let bytes = |bits: u16| bits.is_multiple_of(8).then_some(bits as usize / 8);
        Some(match e {
            EncryptionAlgorithm::DES_CBC => CipherAlg::Des,
            EncryptionAlgorithm::TRIPLEDES_CBC => CipherAlg::TripleDes,
            EncryptionAlgorithm::AES_CBC => {
                let n = key_bits.map_or(Some(16), bytes)?;
                if ![16, 24, 32].contains(&n) {
                    return None;
                }
                CipherAlg::Aes(n)
            }
            EncryptionAlgorithm::BLOWFISH_CBC => {
                let n = key_bits.map_or(Some(16), bytes)?;
                if !(5..=56).contains(&n) {
                    return None;
                }
                CipherAlg::Blowfish(n)
            }
            EncryptionAlgorithm::CAST_CBC => {
                let n = key_bits.map_or(Some(16), bytes)?;
                if !(5..=16).contains(&n) {
                    return None;
                }
                CipherAlg::Cast(n)
            }
            _ => return None,
        })
    }

    pub fn key_len(self) -> usize {
        match self {
            CipherAlg::Des => 8,
            CipherAlg::TripleDes => 24,
            CipherAlg::Aes(n) | CipherAlg::Blowfish(n) | CipherAlg::Cast(n) => n,
        }
    }

    pub fn block_len(self) -> usize {
        match self {
            CipherAlg::Aes(_) => 16,
            _ => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CipherAlg::Des => "DES-CBC",
            CipherAlg::TripleDes => "3DES-CBC",
            CipherAlg::Aes(16) => "AES-128-CBC",
            CipherAlg::Aes(24) => "AES-192-CBC",
            CipherAlg::Aes(_) => "AES-256-CBC",
            CipherAlg::Blowfish(_) => "Blowfish-CBC",
            CipherAlg::Cast(_) => "CAST-CBC",
        }
    }
}

/// The AEAD ciphers of IKEv2 (RFC 5282 AES-GCM with a 16-byte ICV, RFC 7634
/// ChaCha20-Poly1305): a 12-byte nonce (the 4-byte salt from the key material and the
/// 8-byte IV of the message) and a 16-byte tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AeadAlg {
    /// AES-GCM with a key of 16, 24 or 32 bytes.
    AesGcm(usize),
    ChaCha20Poly1305,
}

impl AeadAlg {
    pub const NONCE_LEN: usize = 12;
    pub const TAG_LEN: usize = 16;

    pub fn key_len(self) -> usize {
        match self {
            AeadAlg::AesGcm(n) => n,
            AeadAlg::ChaCha20Poly1305 => 32,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AeadAlg::AesGcm(16) => "AES-128-GCM",
            AeadAlg::AesGcm(24) => "AES-192-GCM",
            AeadAlg::AesGcm(_) => "AES-256-GCM",
            AeadAlg::ChaCha20Poly1305 => "ChaCha20-Poly1305",
        }
    }
}

/// The Diffie-Hellman groups this daemon offers and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// MODP groups 1, 2, 5, 14-18 (RFC 2409 §6, RFC 3526).
    Modp(u16),
    /// ECP groups 19, 20, 21 (RFC 5903).
    Ecp(u16),
    /// Curve25519, group 31 (RFC 8031).
    X25519,
}

impl Group {
    pub fn from_ike(g: GroupDescription) -> Option<Group> {
        Some(match g.0 {
            1 | 2 | 5 | 14..=18 => Group::Modp(g.0),
            19..=21 => Group::Ecp(g.0),
            31 => Group::X25519,
            _ => return None,
        })
    }

    pub fn number(self) -> u16 {
        match self {
            Group::Modp(n) | Group::Ecp(n) => n,
            Group::X25519 => 31,
        }
    }

    /// Length of the public value in the KE payload (and of the shared secret for MODP).
    pub fn public_len(self) -> usize {
        match self {
            Group::Modp(1) => 96,
            Group::Modp(2) => 128,
            Group::Modp(5) => 192,
            Group::Modp(14) => 256,
            Group::Modp(15) => 384,
            Group::Modp(16) => 512,
            Group::Modp(17) => 768,
            Group::Modp(_) => 1024,
            Group::Ecp(19) => 64,
            Group::Ecp(20) => 96,
            Group::Ecp(_) => 132,
            Group::X25519 => 32,
        }
    }

    pub const ALL: [Group; 12] = [
        Group::Modp(1),
        Group::Modp(2),
        Group::Modp(5),
        Group::Modp(14),
        Group::Modp(15),
        Group::Modp(16),
        Group::Modp(17),
        Group::Modp(18),
        Group::Ecp(19),
        Group::Ecp(20),
        Group::Ecp(21),
        Group::X25519,
    ];
}

/// A failed crypto operation. Peer-caused failures (a bad public value) map to
/// INVALID-KEY-INFORMATION in the engine; the rest are local errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// The peer's public value is not a valid element of the group.
    BadPublicValue,
    /// A length that does not fit the algorithm (key, IV, data not a multiple of blocks).
    BadLength,
    /// Signature verification failed.
    BadSignature,
    /// An AEAD tag does not verify (the data or its associated data was altered).
    BadTag,
    /// The algorithm is not available in the linked OpenSSL.
    Unavailable(&'static str),
    /// OpenSSL reported an error.
    Library(String),
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::BadPublicValue => f.write_str("invalid Diffie-Hellman public value"),
            CryptoError::BadLength => f.write_str("length does not fit the algorithm"),
            CryptoError::BadSignature => f.write_str("signature does not verify"),
            CryptoError::BadTag => f.write_str("AEAD tag does not verify"),
            CryptoError::Unavailable(a) => write!(f, "{a} is not available in the linked OpenSSL"),
            CryptoError::Library(e) => write!(f, "OpenSSL: {e}"),
        }
    }
}

/// Where random bytes come from: cookies, nonces, SPIs, IVs, DH private values.
/// The engine's randomness: seeded (`-r`, tests) or OpenSSL's generator.
pub fn random_source(seed: Option<u64>) -> Box<dyn Random> {
    match seed {
        Some(s) => Box::new(SeededRandom::new(s)),
        None => Box::new(OsRandom),
    }
}

pub trait Random {
    fn fill(&mut self, buf: &mut [u8]);
}

/// OpenSSL's generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        openssl::random(buf)
    }
}

/// The `-r seed` stream: block i is SHA-256(seed || i), both little-endian u64. Only for
/// regression runs; it is predictable by design.
#[derive(Debug, Clone)]
pub struct SeededRandom {
    seed: u64,
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl SeededRandom {
    pub fn new(seed: u64) -> SeededRandom {
        SeededRandom {
            seed,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }
}

impl Random for SeededRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf.iter_mut() {
            if self.used == self.block.len() {
                let mut input = [0u8; 16];
                input[..8].copy_from_slice(&self.seed.to_le_bytes());
                input[8..].copy_from_slice(&self.counter.to_le_bytes());
                let h = hash(HashAlg::Sha256, &[&input]);
                self.block.copy_from_slice(h.as_bytes());
                self.counter += 1;
                self.used = 0;
            }
            *b = self.block[self.used];
            self.used += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_parts_keep_each_part_and_print_none() {
        let k = SecretParts::new([&[1u8; 32][..], &[2; 32], &[], &[4; 16]]);
        assert_eq!(k.part(0), [1; 32]);
        assert_eq!(k.part(1), [2; 32]);
        assert!(k.part(2).is_empty());
        assert_eq!(k.part(3), [4; 16]);
        assert!(k.part(4).is_empty());
        let c = k.clone();
        assert_eq!(c.part(3), [4; 16]);
        let shown = format!("{k:?}");
        assert_eq!(shown, "Secret(80 bytes in 4 parts)");
    }

    #[test]
    fn secrets_hide_and_bound() {
        let s = Key::from_slice(&[1, 2, 3]).unwrap();
        assert_eq!(format!("{s:?}"), "Secret(3 bytes)");
        assert!(Key::from_slice(&[0; 129]).is_none());
        let mut t = s.clone();
        assert!(t.extend(&[4]));
        t.truncate(2);
        assert_eq!(t.as_bytes(), &[1, 2]);
        assert_ne!(s, t);
        assert_eq!(s, Key::from_slice(&[1, 2, 3]).unwrap());
    }

    #[test]
    fn seeded_random_repeats() {
        let mut a = SeededRandom::new(980801);
        let mut b = SeededRandom::new(980801);
        let mut c = SeededRandom::new(980802);
        let (mut x, mut y, mut z) = ([0u8; 100], [0u8; 100], [0u8; 100]);
        a.fill(&mut x[..33]);
        a.fill(&mut x[33..]);
        b.fill(&mut y);
        c.fill(&mut z);
        assert_eq!(x, y);
        assert_ne!(x, z);
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// McGrew and Viega's GCM test cases 1 and 2 (the NIST GCM specification's), and
    /// RFC 8439 §2.8.2 for ChaCha20-Poly1305; a flipped bit anywhere is BadTag.
    #[test]
    fn aead_known_answers() {
        let mut tag = [0u8; 16];
        aead_seal(
            AeadAlg::AesGcm(16),
            &[0; 16],
            &[0; 12],
            &[],
            &mut [],
            &mut tag,
        )
        .unwrap();
        assert_eq!(tag[..], unhex("58e2fccefa7e3061367f1d57a4e7455a")[..]);
        let mut data = [0u8; 16];
        aead_seal(
            AeadAlg::AesGcm(16),
            &[0; 16],
            &[0; 12],
            &[],
            &mut data,
            &mut tag,
        )
        .unwrap();
        assert_eq!(data[..], unhex("0388dace60b6a392f328c2b971b2fe78")[..]);
        assert_eq!(tag[..], unhex("ab6e47d42cec13bdf53a67b21257bddf")[..]);
        aead_open(
            AeadAlg::AesGcm(16),
            &[0; 16],
            &[0; 12],
            &[],
            &mut data,
            &tag,
        )
        .unwrap();
        assert_eq!(data, [0; 16]);

        let key: Vec<u8> = (0x80..0xa0).collect();
        let nonce = unhex("070000004041424344454647");
        let aad = unhex("50515253c0c1c2c3c4c5c6c7");
        let plain = b"Ladies and Gentlemen of the class of '99: If I could offer you only \
                      one tip for the future, sunscreen would be it.";
        let mut data = plain.to_vec();
        let c = AeadAlg::ChaCha20Poly1305;
        aead_seal(c, &key, &nonce, &aad, &mut data, &mut tag).unwrap();
        assert_eq!(data[..16], unhex("d31a8d34648e60db7b86afbc53ef7ec2")[..]);
        assert_eq!(tag[..], unhex("1ae10b594f09e26a7e902ecbd0600691")[..]);
        let sealed = data.clone();
        aead_open(c, &key, &nonce, &aad, &mut data, &tag).unwrap();
        assert_eq!(&data[..], &plain[..]);
        let mut bad_aad = aad.clone();
        bad_aad[3] ^= 1;
        let mut d = sealed.clone();
        assert_eq!(
            aead_open(c, &key, &nonce, &bad_aad, &mut d, &tag),
            Err(CryptoError::BadTag)
        );
        let mut d = sealed.clone();
        d[100] ^= 0x80;
        assert_eq!(
            aead_open(c, &key, &nonce, &aad, &mut d, &tag),
            Err(CryptoError::BadTag)
        );
        assert_eq!(
            aead_seal(c, &key[..16], &nonce, &aad, &mut d, &mut tag),
            Err(CryptoError::BadLength)
        );
    }

    #[test]
    fn algorithm_mapping() {
        assert_eq!(
            CipherAlg::from_ike(EncryptionAlgorithm::AES_CBC, Some(256)),
            Some(CipherAlg::Aes(32))
        );
        assert_eq!(
            CipherAlg::from_ike(EncryptionAlgorithm::AES_CBC, None),
            Some(CipherAlg::Aes(16))
        );
        assert_eq!(
            CipherAlg::from_ike(EncryptionAlgorithm::AES_CBC, Some(100)),
            None
        );
        assert_eq!(
            CipherAlg::from_ike(EncryptionAlgorithm::TRIPLEDES_CBC, None).map(|c| c.key_len()),
            Some(24)
        );
        assert_eq!(CipherAlg::from_ike(EncryptionAlgorithm(99), None), None);
        assert_eq!(
            Group::from_ike(GroupDescription::MODP_2048),
            Some(Group::Modp(14))
        );
        assert_eq!(Group::from_ike(GroupDescription(3)), None);
        assert_eq!(HashAlg::from_ike(HashAlgorithm::TIGER), None);
    }
}
