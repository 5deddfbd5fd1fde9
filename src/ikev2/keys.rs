//! The IKEv2 key schedule (RFC 7296 §2.13-§2.18) and AUTH with a shared key (§2.15).
//!
//! - prf is HMAC with the negotiated hash (PRF_HMAC_SHA1, PRF_HMAC_SHA2_256/384/512);
//!   prf+ (§2.13) expands it: T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n).
//! - SKEYSEED = prf(Ni | Nr, g^ir) (§2.14), and
//!   {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).
//! - A rekeyed IKE SA (§2.18): SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr) with the
//!   old SA's PRF, then the same prf+ with the new SA's algorithms, nonces and SPIs.
//! - CHILD_SA KEYMAT (§2.17) = prf+(SK_d, [g^ir (new) |] Ni | Nr), the initiator-to-
//!   responder keys first, each direction's encryption key before its integrity key.
//! - AUTH for a shared key (§2.15): prf(prf(Shared Secret, "Key Pad for IKEv2"),
//!   `<SignedOctets>`), the signed octets being the signer's IKE_SA_INIT message, the peer's
//!   nonce data and prf(SK_px, the signer's ID payload body).
//!
//! Key lengths per transform: an AES-CBC key is as long as its Key Length attribute says;
//! AES-GCM (RFC 5282 §7) and ChaCha20-Poly1305 (RFC 7634 §4) take their key plus a 4-byte
//! salt from the key material; an HMAC integrity key is as long as the hash output (RFC
//! 4868 §2.1.1); SK_d, SK_pi and SK_pr are as long as the PRF's output.
//!
//! All values here are checked against what strongSwan's charon logs for the same
//! negotiation (tests/ikev2_keys.rs).

#![forbid(unsafe_code)]

use std::fmt;

use crate::ike::crypto::{constant_time_eq, prf, AeadAlg, HashAlg, Key, Secret};

use super::wire::{EncrId, IntegId, PrfId};

/// prf+ output: all seven IKE SA keys at their longest (3 x 64 + 2 x 64 + 2 x 36 bytes).
pub type KeyStream = Secret<512>;

/// A failed derivation: the inputs do not fit the algorithm or the fixed buffers. These
/// come from the peer's payloads (nonce sizes) or from a bad local choice, never from a
/// cryptographic failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// A nonce outside 16..=256 bytes (§3.9).
    NonceLength,
    /// More output asked of prf+ than 255 iterations give, or than the buffer holds.
    TooLong,
    /// The transforms do not make a suite: an AEAD cipher with an integrity algorithm or a
    /// plain cipher without one.
    BadSuite,
    /// Key material of the wrong length for the transform.
    KeyLength,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::NonceLength => "nonce length outside 16..256 bytes",
            KeyError::TooLong => "key material too long",
            KeyError::BadSuite => "encryption and integrity transforms do not go together",
            KeyError::KeyLength => "key of the wrong length for the transform",
        })
    }
}

/// A negotiated PRF: HMAC over a hash (RFC 2104; PRF_HMAC_MD5 is not offered, RFC 8247).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prf(HashAlg);

impl Prf {
    pub const HMAC_SHA1: Prf = Prf(HashAlg::Sha1);
    pub const HMAC_SHA2_256: Prf = Prf(HashAlg::Sha256);
    pub const HMAC_SHA2_384: Prf = Prf(HashAlg::Sha384);
    pub const HMAC_SHA2_512: Prf = Prf(HashAlg::Sha512);

    pub fn from_id(id: PrfId) -> Option<Prf> {
        Some(match id {
            PrfId::HMAC_SHA1 => Prf::HMAC_SHA1,
            PrfId::HMAC_SHA2_256 => Prf::HMAC_SHA2_256,
            PrfId::HMAC_SHA2_384 => Prf::HMAC_SHA2_384,
            PrfId::HMAC_SHA2_512 => Prf::HMAC_SHA2_512,
            _ => return None,
        })
    }

    pub fn hash(self) -> HashAlg {
        self.0
    }

    /// The output length, which is also the preferred key length (§2.13: SK_d, SK_pi and
    /// SK_pr are this long).
    pub fn output_len(self) -> usize {
        self.0.output_len()
    }

    /// `prf(key, parts[0] | parts[1] | ...)`.
    pub fn prf(self, key: &[u8], parts: &[&[u8]]) -> Key {
        prf(self.0, key, parts)
    }

    /// `prf+(key, seed[0] | seed[1] | ...)`, `len` bytes of it (§2.13).
    pub fn prf_plus<const N: usize>(
        self,
        key: &[u8],
        seed: &[&[u8]],
        len: usize,
    ) -> Result<Secret<N>, KeyError> {
        if len > N || len > 255 * self.output_len() {
            return Err(KeyError::TooLong);
        }
        let mut out = Secret::<N>::new();
        let mut t = Key::new();
        let mut n: u8 = 1;
        while out.len() < len {
            let counter = [n];
            let mut parts: [&[u8]; 8] = [&[]; 8];
            if seed.len() > parts.len() - 2 {
                return Err(KeyError::TooLong);
            }
            parts[0] = t.as_bytes();
            parts[1..=seed.len()].copy_from_slice(seed);
            parts[seed.len() + 1] = &counter;
            t = self.prf(key, &parts[..seed.len() + 2]);
            let take = (len - out.len()).min(t.len());
            out.extend(&t.as_bytes()[..take]);
            n = n.wrapping_add(1);
        }
        Ok(out)
    }
}

/// A negotiated integrity algorithm: HMAC truncated to half the hash (RFC 2404, RFC 4868).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integ {
    HmacSha1_96,
    HmacSha2_256_128,
    HmacSha2_384_192,
    HmacSha2_512_256,
}

impl Integ {
    pub fn from_id(id: IntegId) -> Option<Integ> {
        Some(match id {
            IntegId::HMAC_SHA1_96 => Integ::HmacSha1_96,
            IntegId::HMAC_SHA2_256_128 => Integ::HmacSha2_256_128,
            IntegId::HMAC_SHA2_384_192 => Integ::HmacSha2_384_192,
            IntegId::HMAC_SHA2_512_256 => Integ::HmacSha2_512_256,
            _ => return None,
        })
    }

    pub fn hash(self) -> HashAlg {
        match self {
            Integ::HmacSha1_96 => HashAlg::Sha1,
            Integ::HmacSha2_256_128 => HashAlg::Sha256,
            Integ::HmacSha2_384_192 => HashAlg::Sha384,
            Integ::HmacSha2_512_256 => HashAlg::Sha512,
        }
    }

    /// The key length: the hash output (RFC 4868 §2.1.1, RFC 2404 §3).
    pub fn key_len(self) -> usize {
        self.hash().output_len()
    }

    /// The ICV length: the HMAC output truncated.
    pub fn icv_len(self) -> usize {
        match self {
            Integ::HmacSha1_96 => 12,
            Integ::HmacSha2_256_128 => 16,
            Integ::HmacSha2_384_192 => 24,
            Integ::HmacSha2_512_256 => 32,
        }
    }

    /// The truncated HMAC over `parts` into `out`, which must be `icv_len` long.
    pub fn mac(self, key: &[u8], parts: &[&[u8]], out: &mut [u8]) -> Result<(), KeyError> {
        if out.len() != self.icv_len() || key.len() != self.key_len() {
            return Err(KeyError::KeyLength);
        }
        let full = prf(self.hash(), key, parts);
        out.copy_from_slice(&full.as_bytes()[..self.icv_len()]);
        Ok(())
    }
}

/// A negotiated cipher for SK payloads or ESP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encr {
    /// AES-CBC with a key of 16, 24 or 32 bytes; 16-byte IV, integrity from an [`Integ`].
    AesCbc(usize),
    /// AES-GCM with a 16-byte ICV (RFC 5282) or ChaCha20-Poly1305 (RFC 7634): 8-byte IV,
    /// key material = key | 4-byte salt.
    Aead(AeadAlg),
}

impl Encr {
    pub const SALT_LEN: usize = 4;

    /// The cipher for a transform and its Key Length attribute (in bits), which AES
    /// requires (§3.3.5) and ChaCha20-Poly1305 does not have (RFC 7634 §2; 256 is taken).
    pub fn from_id(id: EncrId, key_bits: Option<u16>) -> Option<Encr> {
        let aes = |bits: Option<u16>| match bits? {
            128 => Some(16),
            192 => Some(24),
            256 => Some(32),
            _ => None,
        };
        Some(match id {
            EncrId::AES_CBC => Encr::AesCbc(aes(key_bits)?),
            EncrId::AES_GCM_16 => Encr::Aead(AeadAlg::AesGcm(aes(key_bits)?)),
            EncrId::CHACHA20_POLY1305 => match key_bits {
                None | Some(256) => Encr::Aead(AeadAlg::ChaCha20Poly1305),
                _ => return None,
            },
            _ => return None,
        })
    }

    pub fn is_aead(self) -> bool {
        matches!(self, Encr::Aead(_))
    }

    /// The cipher key alone (without the salt).
    pub fn key_len(self) -> usize {
        match self {
            Encr::AesCbc(n) => n,
            Encr::Aead(a) => a.key_len(),
        }
    }

    /// What the key material gives each direction: the key and, for AEAD, the salt.
    pub fn key_material_len(self) -> usize {
        match self {
            Encr::AesCbc(n) => n,
            Encr::Aead(a) => a.key_len() + Self::SALT_LEN,
        }
    }

    /// The IV in each SK payload.
    pub fn iv_len(self) -> usize {
        match self {
            Encr::AesCbc(_) => 16,
            Encr::Aead(_) => 8,
        }
    }

    /// The padded plaintext (with the pad length byte) is a multiple of this.
    pub fn block_len(self) -> usize {
        match self {
            Encr::AesCbc(_) => 16,
            Encr::Aead(_) => 1,
        }
    }
}

/// The protection of an SA: cipher, integrity (none with AEAD), PRF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suite {
    pub encr: Encr,
    pub integ: Option<Integ>,
    pub prf: Prf,
}

impl Suite {
    /// A suite, if the cipher and the integrity algorithm go together (RFC 5282 §8: an
    /// AEAD cipher without an integrity transform, and every other cipher with one).
    pub fn new(encr: Encr, integ: Option<Integ>, prf: Prf) -> Result<Suite, KeyError> {
        if encr.is_aead() != integ.is_none() {
            return Err(KeyError::BadSuite);
        }
        Ok(Suite { encr, integ, prf })
    }

    fn integ_key_len(&self) -> usize {
        self.integ.map_or(0, Integ::key_len)
    }
}

fn check_nonce(n: &[u8]) -> Result<(), KeyError> {
    if (16..=256).contains(&n.len()) {
        Ok(())
    } else {
        Err(KeyError::NonceLength)
    }
}

/// SKEYSEED = prf(Ni | Nr, g^ir) (§2.14; an HMAC PRF takes the nonces whole).
pub fn skeyseed(prf: Prf, ni: &[u8], nr: &[u8], gir: &[u8]) -> Result<Key, KeyError> {
    check_nonce(ni)?;
    check_nonce(nr)?;
    let mut k = Secret::<512>::new();
    k.extend(ni);
    k.extend(nr);
    Ok(prf.prf(k.as_bytes(), &[gir]))
}

/// SKEYSEED of an IKE SA rekeyed by CREATE_CHILD_SA (§2.18): prf(SK_d (old), g^ir (new) |
/// Ni | Nr), with the PRF of the old IKE SA, the nonces of the CREATE_CHILD_SA exchange.
pub fn rekey_skeyseed(
    old_prf: Prf,
    old_sk_d: &[u8],
    gir: &[u8],
    ni: &[u8],
    nr: &[u8],
) -> Result<Key, KeyError> {
    check_nonce(ni)?;
    check_nonce(nr)?;
    Ok(old_prf.prf(old_sk_d, &[gir, ni, nr]))
}

/// The seven keys of an IKE SA.
#[derive(Debug, Clone)]
pub struct IkeKeys {
    pub d: Key,
    pub ai: Key,
    pub ar: Key,
    pub ei: Key,
    pub er: Key,
    pub pi: Key,
    pub pr: Key,
}

impl IkeKeys {
    /// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
    ///     = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
    /// SK_ai/SK_ar are empty with an AEAD cipher; SK_ei/SK_er hold the AEAD salt at
    /// their end.
    pub fn derive(
        suite: &Suite,
        skeyseed: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: &[u8; 8],
        spi_r: &[u8; 8],
    ) -> Result<IkeKeys, KeyError> {
        check_nonce(ni)?;
        check_nonce(nr)?;
        let p = suite.prf.output_len();
        let a = suite.integ_key_len();
        let e = suite.encr.key_material_len();
        let stream: KeyStream =
            suite
                .prf
                .prf_plus(skeyseed, &[ni, nr, spi_i, spi_r], 3 * p + 2 * a + 2 * e)?;
        let mut at = 0;
        let mut take = |n: usize| {
            let k = Key::from_slice(&stream.as_bytes()[at..at + n]).unwrap_or_default();
            at += n;
            k
        };
        Ok(IkeKeys {
            d: take(p),
            ai: take(a),
            ar: take(a),
            ei: take(e),
            er: take(e),
            pi: take(p),
            pr: take(p),
        })
    }
}

/// The keys of a CHILD_SA (§2.17), both directions.
#[derive(Debug, Clone)]
pub struct ChildKeys {
    /// Initiator to responder: encryption key (with the AEAD salt at its end) and
    /// integrity key (empty with AEAD).
    pub encr_i: Key,
    pub integ_i: Key,
    /// Responder to initiator.
    pub encr_r: Key,
    pub integ_r: Key,
}

impl ChildKeys {
    /// KEYMAT = prf+(SK_d, Ni | Nr), or prf+(SK_d, g^ir (new) | Ni | Nr) with PFS; the
    /// nonces are those of the exchange that creates the CHILD_SA (IKE_SA_INIT's for the
    /// first one). Split as encr_i | integ_i | encr_r | integ_r.
    pub fn derive(
        prf: Prf,
        sk_d: &[u8],
        gir: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        encr: Encr,
        integ: Option<Integ>,
    ) -> Result<ChildKeys, KeyError> {
        check_nonce(ni)?;
        check_nonce(nr)?;
        let e = encr.key_material_len();
        let a = integ.map_or(0, Integ::key_len);
        let len = 2 * (e + a);
        let stream: KeyStream = match gir {
            Some(g) => prf.prf_plus(sk_d, &[g, ni, nr], len)?,
            None => prf.prf_plus(sk_d, &[ni, nr], len)?,
        };
        let mut at = 0;
        let mut take = |n: usize| {
            let k = Key::from_slice(&stream.as_bytes()[at..at + n]).unwrap_or_default();
            at += n;
            k
        };
        Ok(ChildKeys {
            encr_i: take(e),
            integ_i: take(a),
            encr_r: take(e),
            integ_r: take(a),
        })
    }
}

/// The pad of §2.15's shared-key AUTH.
pub const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// The octets an AUTH payload covers (§2.15), kept as their three parts:
///
/// InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI
/// ResponderSignedOctets = RealMessage2 | NonceIData | MACedIDForR
/// MACedIDForI = prf(SK_pi, RestOfInitIDPayload), likewise with SK_pr and IDr.
#[derive(Debug, Clone)]
pub struct SignedOctets<'a> {
    /// The signer's IKE_SA_INIT message as sent (without a non-ESP marker).
    pub message: &'a [u8],
    /// The other side's nonce data (the Nonce payload body).
    pub nonce: &'a [u8],
    /// prf(SK_px, the signer's ID payload body: ID type, reserved bytes, data).
    pub maced_id: Key,
}

impl<'a> SignedOctets<'a> {
    /// The octets for the side whose message is `message`: `sk_p` is that side's SK_pi or
    /// SK_pr, `id_body` the body of its IDi or IDr payload ([`PayloadEntry::body`]),
    /// `peer_nonce` the body of the other side's Nonce payload.
    ///
    /// [`PayloadEntry::body`]: super::wire::PayloadEntry
    pub fn new(
        prf: Prf,
        message: &'a [u8],
        peer_nonce: &'a [u8],
        sk_p: &[u8],
        id_body: &[u8],
    ) -> SignedOctets<'a> {
        SignedOctets {
            message,
            nonce: peer_nonce,
            maced_id: prf.prf(sk_p, &[id_body]),
        }
    }

    pub fn parts(&self) -> [&[u8]; 3] {
        [self.message, self.nonce, self.maced_id.as_bytes()]
    }

    pub fn len(&self) -> usize {
        self.parts().iter().map(|p| p.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The octets in one piece (for signature methods); None if `out` is too short.
    pub fn write(&self, out: &mut [u8]) -> Option<usize> {
        let n = self.len();
        let out = out.get_mut(..n)?;
        let mut at = 0;
        for p in self.parts() {
            out[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        Some(n)
    }

    /// The octets in one piece, allocated (signatures, once per IKE_AUTH).
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts().concat()
    }
}

/// `AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)` (§2.15).
pub fn psk_auth(prf: Prf, psk: &[u8], octets: &SignedOctets<'_>) -> Key {
    let pad = prf.prf(psk, &[KEY_PAD]);
    prf.prf(pad.as_bytes(), &octets.parts())
}

/// The AUTH payload's data did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthFailed;

/// Checks a received shared-key AUTH payload's data (after the method and reserved
/// bytes) in constant time.
pub fn verify_psk_auth(
    prf: Prf,
    psk: &[u8],
    octets: &SignedOctets<'_>,
    auth_data: &[u8],
) -> Result<(), AuthFailed> {
    let want = psk_auth(prf, psk, octets);
    if constant_time_eq(want.as_bytes(), auth_data) {
        Ok(())
    } else {
        Err(AuthFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// prf+ by its definition, computed the long way round.
    #[test]
    fn prf_plus_is_the_iterated_prf() {
        let p = Prf::HMAC_SHA1;
        let key = b"key";
        let out: Secret<100> = p.prf_plus(key, &[b"se", b"ed"], 50).unwrap();
        let t1 = p.prf(key, &[b"seed", &[1]]);
        let t2 = p.prf(key, &[t1.as_bytes(), b"seed", &[2]]);
        let t3 = p.prf(key, &[t2.as_bytes(), b"seed", &[3]]);
        let mut want = t1.as_bytes().to_vec();
        want.extend_from_slice(t2.as_bytes());
        want.extend_from_slice(&t3.as_bytes()[..10]);
        assert_eq!(out.as_bytes(), &want[..]);
        assert_eq!(
            p.prf_plus::<100>(key, &[b"x"], 101).unwrap_err(),
            KeyError::TooLong
        );
        assert_eq!(
            p.prf_plus::<8192>(key, &[b"x"], 255 * 20 + 1).unwrap_err(),
            KeyError::TooLong
        );
    }

    /// RFC 4231 test case 2: HMAC-SHA-256 with key "Jefe".
    #[test]
    fn prf_is_hmac() {
        let k = Prf::HMAC_SHA2_256.prf(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            k.as_bytes(),
            &hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")[..]
        );
        let mut icv = [0u8; 16];
        Integ::HmacSha2_256_128
            .mac(&[0x0b; 32], &[b"Hi There"], &mut icv)
            .unwrap();
        assert_eq!(
            icv[..],
            Prf::HMAC_SHA2_256
                .prf(&[0x0b; 32], &[b"Hi There"])
                .as_bytes()[..16]
        );
        assert_eq!(
            Integ::HmacSha2_256_128.mac(&[0; 31], &[b"x"], &mut icv),
            Err(KeyError::KeyLength)
        );
    }

    #[test]
    fn transforms_and_suites() {
        assert_eq!(
            Encr::from_id(EncrId::AES_CBC, Some(256)),
            Some(Encr::AesCbc(32))
        );
        assert_eq!(Encr::from_id(EncrId::AES_CBC, None), None);
        assert_eq!(Encr::from_id(EncrId::AES_GCM_16, Some(100)), None);
        let gcm = Encr::from_id(EncrId::AES_GCM_16, Some(128)).unwrap();
        assert_eq!((gcm.key_material_len(), gcm.iv_len()), (20, 8));
        let cc = Encr::from_id(EncrId::CHACHA20_POLY1305, None).unwrap();
        assert_eq!(cc.key_material_len(), 36);
        assert_eq!(Prf::from_id(PrfId::HMAC_MD5), None);
        assert_eq!(
            Integ::from_id(IntegId::HMAC_SHA2_512_256).map(Integ::icv_len),
            Some(32)
        );
        assert!(Suite::new(gcm, Some(Integ::HmacSha1_96), Prf::HMAC_SHA1).is_err());
        assert!(Suite::new(Encr::AesCbc(16), None, Prf::HMAC_SHA1).is_err());
        assert!(Suite::new(gcm, None, Prf::HMAC_SHA1).is_ok());
        assert_eq!(
            skeyseed(Prf::HMAC_SHA1, &[0; 15], &[0; 16], b"g").unwrap_err(),
            KeyError::NonceLength
        );
    }

    #[test]
    fn signed_octets_in_one_piece() {
        let o = SignedOctets::new(Prf::HMAC_SHA1, b"msg", b"nonce", b"skp", b"id");
        let mut buf = [0u8; 64];
        let n = o.write(&mut buf).unwrap();
        assert_eq!(n, 3 + 5 + 20);
        assert_eq!(&buf[..8], b"msgnonce");
        assert!(o.write(&mut buf[..27]).is_none());
        let auth = psk_auth(Prf::HMAC_SHA1, b"psk", &o);
        assert_eq!(
            auth,
            Prf::HMAC_SHA1.prf(
                Prf::HMAC_SHA1.prf(b"psk", &[KEY_PAD]).as_bytes(),
                &[&buf[..n]]
            )
        );
        assert!(verify_psk_auth(Prf::HMAC_SHA1, b"psk", &o, auth.as_bytes()).is_ok());
        assert!(verify_psk_auth(Prf::HMAC_SHA1, b"psK", &o, auth.as_bytes()).is_err());
    }
}
