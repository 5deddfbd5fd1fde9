//! The OpenSSL binding: the only file of the engine that names `openssl`.
//!
//! Hashes and HMAC PRFs; CBC ciphers without padding (IKE pads itself); the AEAD ciphers of
//! IKEv2 (AES-GCM, ChaCha20-Poly1305) in place with a detached tag; Diffie-Hellman over
//! the MODP groups of RFC 2409/3526, the ECP groups of RFC 5903 (public value x|y, shared
//! secret x) and Curve25519 (RFC 8031); RSA signatures as IKEv1 makes them (PKCS#1 v1.5
//! type 1 padding over the raw HASH, no DigestInfo: RFC 2409 §5.1, isakmpd's
//! `RSA_private_encrypt`).
//!
//! [`init`] runs in the unprivileged child before its chroot (the privileged parent never
//! uses OpenSSL): it loads OpenSSL's legacy provider (DES, Blowfish and CAST live there in
//! OpenSSL 3) while the module files are reachable, and probes every cipher so that the
//! daemon can say at startup which are unavailable.

use std::sync::OnceLock;

use openssl::bn::{BigNum, BigNumContext};
use openssl::derive::Deriver;
use openssl::dh::Dh;
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::error::ErrorStack;
use openssl::hash::{Hasher, MessageDigest};
use openssl::md::Md;
use openssl::md_ctx::MdCtx;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::{Padding, Rsa};
use openssl::sign::Signer;
use openssl::symm::{Cipher, Crypter, Mode};

use super::{AeadAlg, CipherAlg, CryptoError, Group, HashAlg, Key, Random, SharedSecret};

fn lib(e: openssl::error::ErrorStack) -> CryptoError {
    CryptoError::Library(e.to_string())
}

static PROVIDERS: OnceLock<()> = OnceLock::new();

/// Loads the providers and returns each phase 1 cipher with whether it works here.
pub fn init() -> Vec<(CipherAlg, bool)> {
    openssl::init();
    PROVIDERS.get_or_init(|| {
        // The default provider must be loaded explicitly once another one is. Both stay
        // loaded for the life of the process (the handles are deliberately leaked).
        // The legacy provider is a shared module (ossl-modules/legacy.so): a static binary
        // must not dlopen it (it would map the shared libcrypto and libc beside the static
        // ones), so there DES, Blowfish and CAST are reported unavailable, unless it is
        // linked against a libcrypto that has the legacy provider built in (the router
        // builds' own, cross/openssl.sh: `--cfg isakmpd_static_legacy`).
        let names: &[&str] = if cfg!(target_feature = "crt-static") && !cfg!(isakmpd_static_legacy)
        {
            &["default"]
        } else {
            &["default", "legacy"]
        };
        for &name in names {
            if let Ok(p) = openssl::provider::Provider::try_load(None, name, true) {
                std::mem::forget(p);
            }
        }
    });
    available_ciphers()
}

/// Probes each cipher with a one-block encryption.
pub fn available_ciphers() -> Vec<(CipherAlg, bool)> {
    [
        CipherAlg::Des,
        CipherAlg::TripleDes,
        CipherAlg::Aes(16),
        CipherAlg::Aes(24),
        CipherAlg::Aes(32),
        CipherAlg::Blowfish(16),
        CipherAlg::Cast(16),
    ]
    .into_iter()
    .map(|c| {
        let key = [0x55u8; 56];
        let iv = [0u8; 16];
        let mut block = [0u8; 16];
        let ok = cbc_encrypt(
            c,
            &key[..c.key_len()],
            &iv[..c.block_len()],
            &mut block[..c.block_len()],
        )
        .is_ok();
        (c, ok)
    })
    .collect()
}

/// Fills `buf` from OpenSSL's generator.
pub fn random(buf: &mut [u8]) {
    // NOTE(expect): a failing system generator leaves nothing safe to do; isakmpd aborts too.
    openssl::rand::rand_bytes(buf).expect("OpenSSL random generator failed");
}

fn md(h: HashAlg) -> MessageDigest {
    match h {
        HashAlg::Md5 => MessageDigest::md5(),
        HashAlg::Sha1 => MessageDigest::sha1(),
        HashAlg::Sha256 => MessageDigest::sha256(),
        HashAlg::Sha384 => MessageDigest::sha384(),
        HashAlg::Sha512 => MessageDigest::sha512(),
    }
}

/// The digest for `h`, fetched from the provider once per process: OpenSSL 3 looks a
/// legacy `EVP_sha256()` and kin up by name, under a lock, every time a context is
/// initialised with one (`None` if the fetch failed: the legacy path is used then).
fn fetched(h: HashAlg) -> Option<&'static Md> {
    static MDS: [OnceLock<Option<Md>>; 5] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let (i, name) = match h {
        HashAlg::Md5 => (0, "MD5"),
        HashAlg::Sha1 => (1, "SHA1"),
        HashAlg::Sha256 => (2, "SHA2-256"),
        HashAlg::Sha384 => (3, "SHA2-384"),
        HashAlg::Sha512 => (4, "SHA2-512"),
    };
    MDS[i]
        .get_or_init(|| Md::fetch(None, name, None).ok())
        .as_ref()
}

/// `hash(parts[0] | parts[1] | ...)`.
pub fn hash(h: HashAlg, parts: &[&[u8]]) -> Key {
    let run = || -> Result<Key, openssl::error::ErrorStack> {
        if let Some(m) = fetched(h) {
            let mut ctx = MdCtx::new()?;
            ctx.digest_init(m)?;
            for p in parts {
                ctx.digest_update(p)?;
            }
            let mut out = [0u8; 64];
            let n = ctx.digest_final(&mut out[..m.size()])?;
            return Ok(Key::from_slice(&out[..n]).unwrap_or_default());
        }
        let mut hs = Hasher::new(md(h))?;
        for p in parts {
            hs.update(p)?;
        }
        let d = hs.finish()?;
        Ok(Key::from_slice(&d).unwrap_or_default())
    };
    // NOTE(expect): these digests are always present in OpenSSL's default provider.
    run().expect("digest failed")
}

/// Equality of two equally long byte strings in time that does not depend on where they
/// differ (CRYPTO_memcmp).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a, b)
}

/// `prf(key, parts[0] | parts[1] | ...)` = HMAC with the negotiated hash (RFC 2409 §4; the
/// PRF_HMAC_* and the AUTH_HMAC_* of IKEv2 before truncation).
pub fn prf(h: HashAlg, key: &[u8], parts: &[&[u8]]) -> Key {
    if let Some(m) = fetched(h) {
        // NOTE(expect): a fetched built-in digest cannot fail.
        return hmac(m, h, key, parts).expect("HMAC failed");
    }
    hmac_pkey(h, key, parts)
}

/// HMAC (RFC 2104) over OpenSSL's digest `m`: H((K0 ^ opad) | H((K0 ^ ipad) | text)).
/// OpenSSL 3's HMAC through EVP_PKEY (`hmac_pkey`) spends some 6.5 us a call setting up
/// its key and contexts, ten times the two digests; this construction is checked against
/// it for every hash and key length (tests below).
fn hmac(m: &Md, h: HashAlg, key: &[u8], parts: &[&[u8]]) -> Result<Key, ErrorStack> {
    let block = match h {
        HashAlg::Md5 | HashAlg::Sha1 | HashAlg::Sha256 => 64,
        HashAlg::Sha384 | HashAlg::Sha512 => 128,
    };
    let mut k0 = [0u8; 128];
    if key.len() > block {
        let d = hash(h, &[key]);
        k0[..d.len()].copy_from_slice(d.as_bytes());
    } else {
        k0[..key.len()].copy_from_slice(key);
    }
    let mut pad = [0u8; 128];
    let mut inner = [0u8; 64];
    let r = (|| {
        for (p, k) in pad.iter_mut().zip(&k0).take(block) {
            *p = k ^ 0x36;
        }
        let mut ctx = MdCtx::new()?;
        ctx.digest_init(m)?;
        ctx.digest_update(&pad[..block])?;
        for p in parts {
            ctx.digest_update(p)?;
        }
        let n = ctx.digest_final(&mut inner[..m.size()])?;
        for (p, k) in pad.iter_mut().zip(&k0).take(block) {
            *p = k ^ 0x5c;
        }
        ctx.digest_init(m)?;
        ctx.digest_update(&pad[..block])?;
        ctx.digest_update(&inner[..n])?;
        let mut out = [0u8; 64];
        let n = ctx.digest_final(&mut out[..m.size()])?;
        let k = Key::from_slice(&out[..n]).unwrap_or_default();
        zeroize::Zeroize::zeroize(&mut out[..]);
        Ok(k)
    })();
    zeroize::Zeroize::zeroize(&mut k0[..]);
    zeroize::Zeroize::zeroize(&mut pad[..]);
    zeroize::Zeroize::zeroize(&mut inner[..]);
    r
}

/// HMAC through OpenSSL's EVP_PKEY interface (the reference for [`hmac`], and the path
/// when a digest could not be fetched).
fn hmac_pkey(h: HashAlg, key: &[u8], parts: &[&[u8]]) -> Key {
    let run = || -> Result<Key, openssl::error::ErrorStack> {
        let pkey = PKey::hmac(key)?;
        let mut s = Signer::new(md(h), &pkey)?;
        for p in parts {
            s.update(p)?;
        }
        let mut out = [0u8; 64];
        let n = s.sign(&mut out)?;
        Ok(Key::from_slice(&out[..n]).unwrap_or_default())
    };
    // NOTE(expect): HMAC over a built-in digest cannot fail for lack of support.
    run().expect("HMAC failed")
}

fn cipher(c: CipherAlg) -> Cipher {
    match c {
        CipherAlg::Des => Cipher::des_cbc(),
        CipherAlg::TripleDes => Cipher::des_ede3_cbc(),
        CipherAlg::Aes(16) => Cipher::aes_128_cbc(),
        CipherAlg::Aes(24) => Cipher::aes_192_cbc(),
        CipherAlg::Aes(_) => Cipher::aes_256_cbc(),
        CipherAlg::Blowfish(_) => Cipher::bf_cbc(),
        CipherAlg::Cast(_) => Cipher::cast5_cbc(),
    }
}

fn cbc(
    c: CipherAlg,
    mode: Mode,
    key: &[u8],
    iv: &[u8],
    data: &mut [u8],
) -> Result<(), CryptoError> {
    let bs = c.block_len();
    if key.len() != c.key_len() || iv.len() != bs || !data.len().is_multiple_of(bs) {
        return Err(CryptoError::BadLength);
    }
    let mut cr = Crypter::new(cipher(c), mode, key, Some(iv))
        .map_err(|_| CryptoError::Unavailable(c.name()))?;
    cr.pad(false);
    // In place through a fixed buffer: with padding off, CBC update emits exactly as many
    // bytes as it takes, so each chunk maps back onto itself.
    let mut out = [0u8; 4096 + 16];
    for chunk in data.chunks_mut(4096) {
        let n = cr.update(chunk, &mut out).map_err(lib)?;
        if n != chunk.len() {
            return Err(CryptoError::Library("short CBC update".into()));
        }
        chunk.copy_from_slice(&out[..n]);
    }
    let n = cr.finalize(&mut out).map_err(lib)?;
    if n != 0 {
        return Err(CryptoError::Library("unexpected CBC trailer".into()));
    }
    Ok(())
}

/// Encrypts whole blocks in place.
pub fn cbc_encrypt(
    c: CipherAlg,
    key: &[u8],
    iv: &[u8],
    data: &mut [u8],
) -> Result<(), CryptoError> {
    cbc(c, Mode::Encrypt, key, iv, data)
}

/// Decrypts whole blocks in place.
pub fn cbc_decrypt(
    c: CipherAlg,
    key: &[u8],
    iv: &[u8],
    data: &mut [u8],
) -> Result<(), CryptoError> {
    cbc(c, Mode::Decrypt, key, iv, data)
}

fn aead_cipher(a: AeadAlg) -> Result<Cipher, CryptoError> {
    Ok(match a {
        AeadAlg::AesGcm(16) => Cipher::aes_128_gcm(),
        AeadAlg::AesGcm(24) => Cipher::aes_192_gcm(),
        AeadAlg::AesGcm(32) => Cipher::aes_256_gcm(),
        AeadAlg::AesGcm(_) => return Err(CryptoError::BadLength),
        AeadAlg::ChaCha20Poly1305 => Cipher::chacha20_poly1305(),
    })
}

/// The shared half of [`aead_seal`] and [`aead_open`]: key, nonce and AAD set, `data`
/// transformed in place. Returns the crypter for the tag step.
fn aead(
    a: AeadAlg,
    mode: Mode,
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    data: &mut [u8],
) -> Result<Crypter, CryptoError> {
    if key.len() != a.key_len() || nonce.len() != AeadAlg::NONCE_LEN {
        return Err(CryptoError::BadLength);
    }
    let mut cr = Crypter::new(aead_cipher(a)?, mode, key, Some(nonce))
        .map_err(|_| CryptoError::Unavailable(a.name()))?;
    cr.aad_update(aad).map_err(lib)?;
    // Stream modes: each update emits exactly as many bytes as it takes.
    let mut out = [0u8; 4096 + 16];
    for chunk in data.chunks_mut(4096) {
        let n = cr.update(chunk, &mut out).map_err(lib)?;
        if n != chunk.len() {
            return Err(CryptoError::Library("short AEAD update".into()));
        }
        chunk.copy_from_slice(&out[..n]);
    }
    zeroize::Zeroize::zeroize(&mut out[..]);
    Ok(cr)
}

/// Encrypts `data` in place under `key` and the 12-byte `nonce`, authenticating `aad`
/// too; the 16-byte tag goes to `tag`.
pub fn aead_seal(
    a: AeadAlg,
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    data: &mut [u8],
    tag: &mut [u8],
) -> Result<(), CryptoError> {
    if tag.len() != AeadAlg::TAG_LEN {
        return Err(CryptoError::BadLength);
    }
    let mut cr = aead(a, Mode::Encrypt, key, nonce, aad, data)?;
    let mut out = [0u8; 16];
    if cr.finalize(&mut out).map_err(lib)? != 0 {
        return Err(CryptoError::Library("unexpected AEAD trailer".into()));
    }
    cr.get_tag(tag).map_err(lib)
}

/// Checks `tag` over `aad` and the ciphertext `data` and decrypts `data` in place. A tag
/// that does not verify is [`CryptoError::BadTag`]; `data` is then garbage (the caller
/// drops the message). OpenSSL compares the tag in constant time.
pub fn aead_open(
    a: AeadAlg,
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    data: &mut [u8],
    tag: &[u8],
) -> Result<(), CryptoError> {
    if tag.len() != AeadAlg::TAG_LEN {
        return Err(CryptoError::BadLength);
    }
    let mut cr = aead(a, Mode::Decrypt, key, nonce, aad, data)?;
    cr.set_tag(tag).map_err(lib)?;
    let mut out = [0u8; 16];
    match cr.finalize(&mut out) {
        Ok(0) => Ok(()),
        Ok(_) => Err(CryptoError::Library("unexpected AEAD trailer".into())),
        Err(_) => Err(CryptoError::BadTag),
    }
}

fn modp_prime(n: u16) -> Result<BigNum, CryptoError> {
    match n {
        1 => BigNum::get_rfc2409_prime_768(),
        2 => BigNum::get_rfc2409_prime_1024(),
        5 => BigNum::get_rfc3526_prime_1536(),
        14 => BigNum::get_rfc3526_prime_2048(),
        15 => BigNum::get_rfc3526_prime_3072(),
        16 => BigNum::get_rfc3526_prime_4096(),
        17 => BigNum::get_rfc3526_prime_6144(),
        18 => BigNum::get_rfc3526_prime_8192(),
        _ => return Err(CryptoError::Unavailable("MODP group")),
    }
    .map_err(lib)
}

/// A NIST prime curve and its order, built once per process: OpenSSL builds a curve's
/// group afresh on every `EC_GROUP_new_by_curve_name`, and a handshake needs it twice.
struct Curve {
    group: EcGroup,
    order: BigNum,
}

fn ec_group(n: u16) -> Result<&'static Curve, CryptoError> {
    static CURVES: [OnceLock<Option<Curve>>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let (i, nid) = match n {
        19 => (0, Nid::X9_62_PRIME256V1),
        20 => (1, Nid::SECP384R1),
        21 => (2, Nid::SECP521R1),
        _ => return Err(CryptoError::Unavailable("ECP group")),
    };
    CURVES[i]
        .get_or_init(|| {
            let group = EcGroup::from_curve_name(nid).ok()?;
            let mut ctx = BigNumContext::new().ok()?;
            let mut order = BigNum::new().ok()?;
            group.order(&mut order, &mut ctx).ok()?;
            Some(Curve { group, order })
        })
        .as_ref()
        .ok_or(CryptoError::Library("EC group".into()))
}

/// Our half of a Diffie-Hellman exchange.
pub struct DhPrivate {
    group: Group,
    key: PKey<Private>,
    public: SharedSecret,
}

impl std::fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DhPrivate(group {})", self.group.number())
    }
}

impl DhPrivate {
    /// A fresh private value from `rng` (so `-r seed` makes it reproducible).
    pub fn generate(group: Group, rng: &mut dyn Random) -> Result<DhPrivate, CryptoError> {
        let mut buf = SharedSecret::new();
        // MODP: a private exponent of twice the group's strength or more (RFC 3526 §8,
        // as OpenSSL does for its named groups), not the full modulus length: three
        // times cheaper per handshake, and the peer's value check still costs one full
        // exponentiation.
        let len = match group {
            Group::Modp(n) => match n {
                1 | 2 | 5 | 14 | 15 => 32,
                16 | 17 => 48,
                _ => 64,
            },
            Group::Ecp(n) => match n {
                19 => 32,
                20 => 48,
                _ => 66,
            },
            Group::X25519 => 32,
        };
        for _ in 0..64 {
            let mut b = [0u8; 1024];
            rng.fill(&mut b[..len]);
            match group {
                // Full length ensures x > 1; x is far below p.
                Group::Modp(_) => b[0] |= 0x80,
                // P-521's order has 521 bits: keep the top byte to one bit.
                Group::Ecp(21) => b[0] &= 0x01,
                _ => {}
            }
            buf = SharedSecret::from_slice(&b[..len]).unwrap_or_default();
            zeroize::Zeroize::zeroize(&mut b[..]);
            match DhPrivate::from_private(group, buf.as_bytes()) {
                Ok(k) => return Ok(k),
                Err(CryptoError::BadPublicValue) => continue, // out of range: draw again
                Err(e) => return Err(e),
            }
        }
        drop(buf);
        Err(CryptoError::Library(
            "could not draw a private value".into(),
        ))
    }

    /// From a given private value (big-endian exponent or scalar; raw bytes for X25519).
    /// An out-of-range value is `BadPublicValue`.
    pub fn from_private(group: Group, private: &[u8]) -> Result<DhPrivate, CryptoError> {
        let mut public = SharedSecret::new();
        let key = match group {
            Group::Modp(n) => {
                let p = modp_prime(n)?;
                let x = BigNum::from_slice(private).map_err(lib)?;
                if x.num_bits() < 2 || x >= p {
                    return Err(CryptoError::BadPublicValue);
                }
                let dh = Dh::from_pqg(p, None, BigNum::from_u32(2).map_err(lib)?).map_err(lib)?;
                let dh = dh.set_private_key(x).map_err(lib)?;
                let y = dh
                    .public_key()
                    .to_vec_padded(group.public_len() as i32)
                    .map_err(lib)?;
                public.extend(&y);
                PKey::from_dh(dh).map_err(lib)?
            }
            Group::Ecp(n) => {
                let c = ec_group(n)?;
                let g = &c.group;
                let mut ctx = BigNumContext::new().map_err(lib)?;
                let d = BigNum::from_slice(private).map_err(lib)?;
                if d.num_bits() == 0 || d >= c.order {
                    return Err(CryptoError::BadPublicValue);
                }
                let mut q = EcPoint::new(g).map_err(lib)?;
                q.mul_generator2(g, &d, &mut ctx).map_err(lib)?;
                let (mut x, mut y) = (BigNum::new().map_err(lib)?, BigNum::new().map_err(lib)?);
                q.affine_coordinates(g, &mut x, &mut y, &mut ctx)
                    .map_err(lib)?;
                let half = group.public_len() as i32 / 2;
                public.extend(&x.to_vec_padded(half).map_err(lib)?);
                public.extend(&y.to_vec_padded(half).map_err(lib)?);
                let ec = EcKey::from_private_components(g, &d, &q).map_err(lib)?;
                PKey::from_ec_key(ec).map_err(lib)?
            }
            Group::X25519 => {
                if private.len() != 32 {
                    return Err(CryptoError::BadLength);
                }
                let k = PKey::private_key_from_raw_bytes(private, Id::X25519).map_err(lib)?;
                public.extend(&k.raw_public_key().map_err(lib)?);
                k
            }
        };
        Ok(DhPrivate { group, key, public })
    }

    pub fn group(&self) -> Group {
        self.group
    }

    /// The public value as it goes into the KE payload.
    pub fn public_value(&self) -> &[u8] {
        self.public.as_bytes()
    }

    /// g^xy from the peer's KE payload data. A value of the wrong length or outside the
    /// group is `BadPublicValue` (INVALID-KEY-INFORMATION; cf. CVE-2015-3240, g^x = 0).
    pub fn shared_secret(&self, peer: &[u8]) -> Result<SharedSecret, CryptoError> {
        if peer.len() != self.group.public_len() {
            return Err(CryptoError::BadPublicValue);
        }
        let peer_key = match self.group {
            Group::Modp(n) => {
                let p = modp_prime(n)?;
                let y = BigNum::from_slice(peer).map_err(lib)?;
                let mut pm1 = BigNum::new().map_err(lib)?;
                pm1.checked_sub(&p, BigNum::from_u32(1).map_err(lib)?.as_ref())
                    .map_err(lib)?;
                if y.num_bits() < 2 || y >= pm1 {
                    return Err(CryptoError::BadPublicValue);
                }
                let dh = Dh::from_pqg(p, None, BigNum::from_u32(2).map_err(lib)?).map_err(lib)?;
                PKey::from_dh(dh.set_public_key(y).map_err(lib)?).map_err(lib)?
            }
            Group::Ecp(n) => {
                let g = &ec_group(n)?.group;
                let mut ctx = BigNumContext::new().map_err(lib)?;
                let mut enc = [0u8; 1 + 132];
                enc[0] = 0x04;
                enc[1..1 + peer.len()].copy_from_slice(peer);
                let pt = EcPoint::from_bytes(g, &enc[..1 + peer.len()], &mut ctx)
                    .map_err(|_| CryptoError::BadPublicValue)?;
                // On the curve (and so, the NIST prime curves having cofactor 1, in the
                // group of prime order: SP 800-56A partial validation is full validation
                // here). OpenSSL's key check would add a multiplication by the order.
                if !pt.is_on_curve(g, &mut ctx).map_err(lib)? {
                    return Err(CryptoError::BadPublicValue);
                }
                let ec = EcKey::from_public_key(g, &pt).map_err(|_| CryptoError::BadPublicValue)?;
                PKey::from_ec_key(ec).map_err(lib)?
            }
            Group::X25519 => PKey::public_key_from_raw_bytes(peer, Id::X25519)
                .map_err(|_| CryptoError::BadPublicValue)?,
        };
        let mut d = Deriver::new(&self.key).map_err(lib)?;
        // The peer's value was checked above: 1 < y < p-1 for the safe-prime MODP groups
        // (RFC 2409 peers and isakmpd do exactly this; NIST SP 800-56A's partial
        // validation), on the curve for ECP. OpenSSL's own full check would add a modular
        // exponentiation (y^q mod p, some 2.3 ms for MODP2048) or a point multiplication
        // per negotiation and tell these groups nothing the checks above have not.
        let validate = matches!(self.group, Group::X25519);
        d.set_peer_ex(&peer_key, validate)
            .map_err(|_| CryptoError::BadPublicValue)?;
        let mut out = [0u8; 1024];
        let n = d
            .derive(&mut out)
            .map_err(|_| CryptoError::BadPublicValue)?;
        // Fixed length: left-pad MODP results that lost leading zero bytes.
        let want = match self.group {
            Group::Modp(_) => self.group.public_len(),
            _ => n,
        };
        let mut s = SharedSecret::new();
        for _ in n..want {
            s.extend(&[0]);
        }
        s.extend(&out[..n]);
        zeroize::Zeroize::zeroize(&mut out[..]);
        if self.group == Group::X25519 && s.as_bytes().iter().all(|&b| b == 0) {
            return Err(CryptoError::BadPublicValue);
        }
        Ok(s)
    }
}

/// An RSA private key for RSA_SIG authentication.
pub struct RsaPrivate(Rsa<Private>);

/// An RSA public key (from a certificate or a pubkeys/ file).
pub struct RsaPublic(Rsa<openssl::pkey::Public>);

impl RsaPrivate {
    /// From PEM (PKCS#1 or PKCS#8).
    pub fn from_pem(pem: &[u8]) -> Result<RsaPrivate, CryptoError> {
        let k = PKey::private_key_from_pem(pem).map_err(lib)?;
        Ok(RsaPrivate(k.rsa().map_err(lib)?))
    }

    pub fn public(&self) -> Result<RsaPublic, CryptoError> {
        let n = self.0.n().to_owned().map_err(lib)?;
        let e = self.0.e().to_owned().map_err(lib)?;
        Ok(RsaPublic(Rsa::from_public_components(n, e).map_err(lib)?))
    }

    /// The SIG payload: PKCS#1 v1.5 type 1 padding over the raw hash.
    pub fn sign_raw(&self, data: &[u8], out: &mut [u8]) -> Result<usize, CryptoError> {
        let size = self.0.size() as usize;
        if out.len() < size || data.len() + 11 > size {
            return Err(CryptoError::BadLength);
        }
        self.0
            .private_encrypt(data, out, Padding::PKCS1)
            .map_err(lib)
    }
}

impl RsaPublic {
    /// From a PEM public key (SubjectPublicKeyInfo or PKCS#1), as in pubkeys/ files.
    pub fn from_pem(pem: &[u8]) -> Result<RsaPublic, CryptoError> {
        if let Ok(k) = PKey::public_key_from_pem(pem) {
            return Ok(RsaPublic(k.rsa().map_err(lib)?));
        }
        Ok(RsaPublic(Rsa::public_key_from_pem_pkcs1(pem).map_err(lib)?))
    }

    /// The key as a PKCS#1 RSAPublicKey (KeyNote's `rsa-hex:` principals).
    pub fn pkcs1(&self) -> Option<Vec<u8>> {
        self.0.public_key_to_der_pkcs1().ok()
    }

    pub fn size(&self) -> usize {
        self.0.size() as usize
    }

    /// Checks a SIG payload against the expected hash, in constant time.
    pub fn verify_raw(&self, data: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        if sig.len() != self.size() {
            return Err(CryptoError::BadSignature);
        }
        let mut out = [0u8; 1024];
        let n = self
            .0
            .public_decrypt(sig, &mut out[..self.size().max(data.len())], Padding::PKCS1)
            .map_err(|_| CryptoError::BadSignature)?;
        if n != data.len() || !openssl::memcmp::eq(&out[..n], data) {
            return Err(CryptoError::BadSignature);
        }
        Ok(())
    }
}

/// What a signing key is, for choosing an AUTH method (IKEv2: RSA for methods 1 and
/// 14, the NIST curves for 9-11 and 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    EcP521,
    Other,
}

/// RSA signature padding: RSASSA-PKCS1-v1_5, or RSASSA-PSS with MGF1 over the same hash
/// and a salt as long as the hash (RFC 7427's recommended parameters). Ignored for ECDSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigPadding {
    Pkcs1,
    Pss,
}

fn key_kind<T: openssl::pkey::HasPublic>(k: &PKey<T>) -> KeyKind {
    match k.id() {
        Id::RSA => KeyKind::Rsa,
        Id::EC => match k.ec_key().ok().and_then(|e| e.group().curve_name()) {
            Some(Nid::X9_62_PRIME256V1) => KeyKind::EcP256,
            Some(Nid::SECP384R1) => KeyKind::EcP384,
            Some(Nid::SECP521R1) => KeyKind::EcP521,
            _ => KeyKind::Other,
        },
        _ => KeyKind::Other,
    }
}

/// A private key of any kind OpenSSL reads (RSA or EC for IKE), for signatures.
pub struct PrivateKey(PKey<Private>);

/// A public key (from a certificate, or a pubkeys/ file), for checking signatures.
#[derive(Clone)]
pub struct PublicKey(PKey<openssl::pkey::Public>);

impl PrivateKey {
    /// From PEM (PKCS#1, SEC1 or PKCS#8) or DER.
    pub fn from_pem(pem: &[u8]) -> Result<PrivateKey, CryptoError> {
        PKey::private_key_from_pem(pem)
            .or_else(|_| PKey::private_key_from_der(pem))
            .map(PrivateKey)
            .map_err(lib)
    }

    pub fn kind(&self) -> KeyKind {
        key_kind(&self.0)
    }

    /// The RSA key, for IKEv1's raw RSA_SIG.
    pub fn rsa(&self) -> Option<RsaPrivate> {
        self.0.rsa().ok().map(RsaPrivate)
    }

    pub fn public(&self) -> Result<PublicKey, CryptoError> {
        let der = self.0.public_key_to_der().map_err(lib)?;
        PublicKey::from_der(&der)
    }

    /// A signature over `data` with hash `h`: PKCS#1 v1.5 or PSS for RSA, DER-encoded
    /// (r, s) for ECDSA.
    pub fn sign(&self, h: HashAlg, pad: SigPadding, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut s = Signer::new(md(h), &self.0).map_err(lib)?;
        if self.0.id() == Id::RSA && pad == SigPadding::Pss {
            s.set_rsa_padding(Padding::PKCS1_PSS).map_err(lib)?;
            s.set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::DIGEST_LENGTH)
                .map_err(lib)?;
            s.set_rsa_mgf1_md(md(h)).map_err(lib)?;
        }
        s.update(data).map_err(lib)?;
        s.sign_to_vec().map_err(lib)
    }
}

impl PublicKey {
    /// From a PEM public key (SubjectPublicKeyInfo, or PKCS#1 for RSA).
    pub fn from_pem(pem: &[u8]) -> Result<PublicKey, CryptoError> {
        if let Ok(k) = PKey::public_key_from_pem(pem) {
            return Ok(PublicKey(k));
        }
        let r = Rsa::public_key_from_pem_pkcs1(pem).map_err(lib)?;
        PKey::from_rsa(r).map(PublicKey).map_err(lib)
    }

    /// From a DER SubjectPublicKeyInfo.
    pub fn from_der(der: &[u8]) -> Result<PublicKey, CryptoError> {
        PKey::public_key_from_der(der).map(PublicKey).map_err(lib)
    }

    pub fn kind(&self) -> KeyKind {
        key_kind(&self.0)
    }

    /// The RSA key, for IKEv1's raw RSA_SIG.
    pub fn rsa(&self) -> Option<RsaPublic> {
        self.0.rsa().ok().map(RsaPublic)
    }

    /// An RSA key from a PKCS#1 RSAPublicKey in DER (IKEv2's CERT encoding 11, "Raw
    /// RSA Key", as iked sends it).
    pub fn from_rsa_pkcs1_der(der: &[u8]) -> Result<PublicKey, CryptoError> {
        let r = Rsa::public_key_from_der_pkcs1(der).map_err(lib)?;
        PKey::from_rsa(r).map(PublicKey).map_err(lib)
    }

    /// An RSA key as a PKCS#1 RSAPublicKey in DER; None for other kinds.
    pub fn rsa_pkcs1_der(&self) -> Option<Vec<u8>> {
        self.0.rsa().ok()?.public_key_to_der_pkcs1().ok()
    }

    /// The DER SubjectPublicKeyInfo (IKEv2's CERTREQ names a CA by its SHA-1).
    pub fn spki_der(&self) -> Vec<u8> {
        self.0.public_key_to_der().unwrap_or_default()
    }

    /// Checks a signature made as [`PrivateKey::sign`] makes it.
    pub fn verify(
        &self,
        h: HashAlg,
        pad: SigPadding,
        data: &[u8],
        sig: &[u8],
    ) -> Result<(), CryptoError> {
        let mut v = openssl::sign::Verifier::new(md(h), &self.0).map_err(lib)?;
        if self.0.id() == Id::RSA && pad == SigPadding::Pss {
            v.set_rsa_padding(Padding::PKCS1_PSS).map_err(lib)?;
            v.set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::DIGEST_LENGTH)
                .map_err(lib)?;
            v.set_rsa_mgf1_md(md(h)).map_err(lib)?;
        }
        v.update(data).map_err(lib)?;
        match v.verify(sig) {
            Ok(true) => Ok(()),
            _ => Err(CryptoError::BadSignature),
        }
    }
}

/// An ECDSA signature from DER to r | s, each left-padded to `n` bytes (RFC 4754, the
/// form of IKEv2's AUTH methods 9-11).
pub fn ecdsa_der_to_raw(der: &[u8], n: usize) -> Result<Vec<u8>, CryptoError> {
    let sig = openssl::ecdsa::EcdsaSig::from_der(der).map_err(|_| CryptoError::BadSignature)?;
    let (r, s) = (sig.r().to_vec(), sig.s().to_vec());
    if r.len() > n || s.len() > n {
        return Err(CryptoError::BadSignature);
    }
    let mut out = vec![0u8; 2 * n];
    out[n - r.len()..n].copy_from_slice(&r);
    out[2 * n - s.len()..].copy_from_slice(&s);
    Ok(out)
}

/// An ECDSA signature from r | s (two halves of equal length) to DER.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return Err(CryptoError::BadSignature);
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let r = BigNum::from_slice(r).map_err(|_| CryptoError::BadSignature)?;
    let s = BigNum::from_slice(s).map_err(|_| CryptoError::BadSignature)?;
    let sig = openssl::ecdsa::EcdsaSig::from_private_components(r, s)
        .map_err(|_| CryptoError::BadSignature)?;
    sig.to_der().map_err(|_| CryptoError::BadSignature)
}

/// An X.509 certificate (CERT payloads, the certs/ and ca/ directories).
#[derive(Clone)]
pub struct Certificate(openssl::x509::X509);

/// What a certificate says about its holder, for matching against an ID payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertNames {
    pub subject_der: Vec<u8>,
    pub ips: Vec<std::net::IpAddr>,
    pub dns: Vec<String>,
    pub emails: Vec<String>,
}

impl CertNames {
    /// Does the certificate name this identity (an ID payload's type and data, the same
    /// numbers in IKEv1 and IKEv2): an address, FQDN or e-mail address among its
    /// subjectAltNames, or a DER DN equal to its subject (isakmpd x509.c
    /// `x509_check_subjectaltname`, iked ca.c `ca_validate_pubkey`)?
    pub fn matches_id(&self, ty: u8, data: &[u8]) -> bool {
        match ty {
            1 => <[u8; 4]>::try_from(data)
                .is_ok_and(|a| self.ips.contains(&std::net::IpAddr::from(a))),
            5 => <[u8; 16]>::try_from(data)
                .is_ok_and(|a| self.ips.contains(&std::net::IpAddr::from(a))),
            2 => self
                .dns
                .iter()
                .any(|d| d.as_bytes().eq_ignore_ascii_case(data)),
            3 => self
                .emails
                .iter()
                .any(|e| e.as_bytes().eq_ignore_ascii_case(data)),
            9 => self.subject_der == data,
            _ => false,
        }
    }
}

/// A DER distinguished name as OpenSSL's one-line form, `/C=SE/O=Org/CN=host`
/// (isakmpd's `x509_DN_string`, which names mode-config sections `[asn1_dn//C=SE/...]`).
pub fn dn_oneline(der: &[u8]) -> Option<String> {
    let name = openssl::x509::X509Name::from_der(der).ok()?;
    let mut out = String::new();
    for e in name.entries() {
        let key = e.object().nid().short_name().ok()?;
        let value = e.data().to_string().ok()?;
        out.push('/');
        out.push_str(key);
        out.push('=');
        out.push_str(&value);
    }
    Some(out)
}

impl Certificate {
    /// From DER (as in a CERT payload) or PEM (as in files).
    pub fn parse(b: &[u8]) -> Result<Certificate, CryptoError> {
        openssl::x509::X509::from_der(b)
            .or_else(|_| openssl::x509::X509::from_pem(b))
            .map(Certificate)
            .map_err(lib)
    }

    pub fn der(&self) -> Result<Vec<u8>, CryptoError> {
        self.0.to_der().map_err(lib)
    }

    pub fn names(&self) -> CertNames {
        let mut n = CertNames {
            subject_der: self.0.subject_name().to_der().unwrap_or_default(),
            ..CertNames::default()
        };
        if let Some(sans) = self.0.subject_alt_names() {
            for g in sans.iter() {
                if let Some(ip) = g.ipaddress() {
                    match ip.len() {
                        4 => n.ips.push(std::net::IpAddr::from(
                            <[u8; 4]>::try_from(ip).unwrap_or_default(),
                        )),
                        16 => n.ips.push(std::net::IpAddr::from(
                            <[u8; 16]>::try_from(ip).unwrap_or_default(),
                        )),
                        _ => {}
                    }
                }
                if let Some(d) = g.dnsname() {
                    n.dns.push(d.to_string());
                }
                if let Some(e) = g.email() {
                    n.emails.push(e.to_string());
                }
            }
        }
        n
    }

    /// The subject, one line, for logs.
    pub fn subject(&self) -> String {
        self.0
            .subject_name()
            .entries()
            .map(|e| {
                format!(
                    "{}={}",
                    e.object().nid().short_name().unwrap_or("?"),
                    e.data().to_string().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn public_key(&self) -> Result<RsaPublic, CryptoError> {
        let k = self.0.public_key().map_err(lib)?;
        Ok(RsaPublic(k.rsa().map_err(|_| {
            CryptoError::Unavailable("non-RSA certificate key")
        })?))
    }

    /// The certificate's public key, of any kind.
    pub fn public(&self) -> Result<PublicKey, CryptoError> {
        self.0.public_key().map(PublicKey).map_err(lib)
    }

    /// Its RSA key as a PKCS#1 RSAPublicKey (KeyNote's `rsa-hex:` principals), if RSA.
    pub fn rsa_pkcs1(&self) -> Option<Vec<u8>> {
        let k = self.0.public_key().ok()?.rsa().ok()?;
        k.public_key_to_der_pkcs1().ok()
    }

    /// Subject and issuer as one-line DNs (`/C=../CN=..`, KeyNote's `DN:` principals).
    pub fn subject_issuer(&self) -> Option<(String, String)> {
        let s = dn_oneline(&self.0.subject_name().to_der().ok()?)?;
        let i = dn_oneline(&self.0.issuer_name().to_der().ok()?)?;
        Some((s, i))
    }

    /// notBefore and notAfter, in seconds since 1970 UTC.
    pub fn validity(&self) -> Option<(i64, i64)> {
        let epoch = openssl::asn1::Asn1Time::from_unix(0).ok()?;
        let secs = |t: &openssl::asn1::Asn1TimeRef| {
            epoch
                .diff(t)
                .ok()
                .map(|d| i64::from(d.days) * 86_400 + i64::from(d.secs))
        };
        Some((secs(self.0.not_before())?, secs(self.0.not_after())?))
    }

    /// Does this certificate hold the public half of `key` (of any kind)?
    pub fn holds(&self, key: &PrivateKey) -> bool {
        self.0.public_key().is_ok_and(|k| k.public_eq(&key.0))
    }

    /// Does this certificate hold the public half of `key`?
    pub fn matches_key(&self, key: &RsaPrivate) -> bool {
        match (
            self.0.public_key().ok().and_then(|k| k.rsa().ok()),
            key.public(),
        ) {
            (Some(a), Ok(b)) => a.n() == b.0.n() && a.e() == b.0.e(),
            _ => false,
        }
    }
}

/// A certificate revocation list (isakmpd's crls/ directory), with the name it was read
/// under for the log.
pub struct Crl {
    crl: openssl::x509::X509Crl,
    pub name: String,
}

impl Crl {
    /// From PEM or DER.
    pub fn parse(name: &str, b: &[u8]) -> Result<Crl, CryptoError> {
        openssl::x509::X509Crl::from_pem(b)
            .or_else(|_| openssl::x509::X509Crl::from_der(b))
            .map(|crl| Crl {
                crl,
                name: name.to_string(),
            })
            .map_err(lib)
    }
}

/// The CA certificates a peer's certificate must chain to, and the CRLs that can revoke
/// it.
pub struct TrustStore {
    store: openssl::x509::store::X509Store,
    cas: Vec<openssl::x509::X509>,
    crls: Vec<Crl>,
}

impl TrustStore {
    pub fn new(cas: &[Certificate]) -> Result<TrustStore, CryptoError> {
        Self::with_crls(cas, Vec::new())
    }

    /// A CRL counts only when a CA here signed it; others are left out (logged by the
    /// caller from [`Self::crls`]).
    pub fn with_crls(cas: &[Certificate], crls: Vec<Crl>) -> Result<TrustStore, CryptoError> {
        let mut b = openssl::x509::store::X509StoreBuilder::new().map_err(lib)?;
        for c in cas {
            b.add_cert(c.0.clone()).map_err(lib)?;
        }
        let cas: Vec<openssl::x509::X509> = cas.iter().map(|c| c.0.clone()).collect();
        let signed_by_a_ca = |crl: &Crl| {
            cas.iter().any(|ca| {
                ca.subject_name()
                    .try_cmp(crl.crl.issuer_name())
                    .is_ok_and(|o| o.is_eq())
                    && ca
                        .public_key()
                        .is_ok_and(|k| crl.crl.verify(&k).unwrap_or(false))
            })
        };
        let crls = crls.into_iter().filter(signed_by_a_ca).collect();
        Ok(TrustStore {
            store: b.build(),
            cas,
            crls,
        })
    }

    /// The CRLs in force (those a CA here signed).
    pub fn crls(&self) -> impl Iterator<Item = &str> {
        self.crls.iter().map(|c| c.name.as_str())
    }

    /// The CRL that revokes `cert`, if any: one from `cert`'s issuer that lists it.
    fn revoked_by(&self, cert: &openssl::x509::X509) -> Option<&str> {
        self.crls
            .iter()
            .filter(|c| {
                c.crl
                    .issuer_name()
                    .try_cmp(cert.issuer_name())
                    .is_ok_and(|o| o.is_eq())
            })
            .find(|c| {
                matches!(
                    c.crl.get_by_cert(cert),
                    openssl::x509::CrlStatus::Revoked(_)
                )
            })
            .map(|c| c.name.as_str())
    }

    /// Verifies `cert` (with `chain` as untrusted intermediates) against the CAs, and
    /// returns the path from `cert` to the trusted CA.
    /// XXX: validity is checked against the system clock, inside OpenSSL.
    pub fn verify(
        &self,
        cert: &Certificate,
        chain: &[Certificate],
    ) -> Result<Vec<Certificate>, String> {
        let mut st = openssl::stack::Stack::new().map_err(|e| e.to_string())?;
        for c in chain {
            st.push(c.0.clone()).map_err(|e| e.to_string())?;
        }
        let mut ctx = openssl::x509::X509StoreContext::new().map_err(|e| e.to_string())?;
        let mut why = String::new();
        let mut path: Vec<openssl::x509::X509> = Vec::new();
        let ok = ctx
            .init(&self.store, &cert.0, &st, |c| {
                let ok = c.verify_cert()?;
                if !ok {
                    why = c.error().error_string().to_string();
                } else if let Some(chain) = c.chain() {
                    path = chain.iter().map(|x| x.to_owned()).collect();
                }
                Ok(ok)
            })
            .map_err(|e| e.to_string())?;
        if !ok {
            return Err(why);
        }
        // Every certificate of the path below the trusted CA, against its issuer's CRLs
        // (isakmpd: X509_V_FLAG_CRL_CHECK with the crls/ directory in the store).
        for c in path.iter().filter(|c| !self.cas.iter().any(|ca| ca == *c)) {
            if let Some(name) = self.revoked_by(c) {
                return Err(format!("certificate revoked (CRL {name})"));
            }
        }
        Ok(path.into_iter().map(Certificate).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's shared libcrypto loads the legacy provider as a module, and the router
    /// builds link one with it built in (cross/openssl.sh): every phase 1 cipher of
    /// isakmpd.conf(5) works in both.
    #[test]
    #[cfg(any(not(target_feature = "crt-static"), isakmpd_static_legacy))]
    fn every_phase1_cipher_is_available() {
        for (c, ok) in init() {
            assert!(ok, "{c:?} is unavailable");
        }
    }

    #[test]
    fn hmac_over_the_digest_is_openssls_hmac() {
        init();
        let algs = [
            HashAlg::Md5,
            HashAlg::Sha1,
            HashAlg::Sha256,
            HashAlg::Sha384,
            HashAlg::Sha512,
        ];
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        for h in algs {
            let m = fetched(h).expect("digest fetched");
            for klen in [0, 1, 20, 32, 63, 64, 65, 100, 127, 128, 129, 200] {
                let key: Vec<u8> = (0..klen as u32).map(|i| (i * 13 + 1) as u8).collect();
                for dlen in [0, 1, 55, 64, 300] {
                    let parts: [&[u8]; 2] = [&data[..dlen / 2], &data[dlen / 2..dlen]];
                    let ours = hmac(m, h, &key, &parts).unwrap();
                    if klen == 0 {
                        // OpenSSL's EVP_PKEY HMAC refuses an empty key; RFC 2104 allows it.
                        assert_eq!(ours.len(), m.size());
                        continue;
                    }
                    let theirs = hmac_pkey(h, &key, &parts);
                    assert_eq!(
                        ours.as_bytes(),
                        theirs.as_bytes(),
                        "{h:?} key {klen} data {dlen}"
                    );
                }
            }
        }
        // RFC 4231 test case 1.
        let k = prf(HashAlg::Sha256, &[0x0b; 20], &[b"Hi There"]);
        let want = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";
        let got: String = k.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, want);
    }
}
