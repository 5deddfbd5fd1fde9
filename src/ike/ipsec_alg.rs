//! The one table of IPsec algorithms (RFC 2407 §4.4.4 and §4.5, IANA "IPsec DOI"): for
//! each ESP transform and each integrity algorithm, its IKE number, the name isakmpd's
//! report prints, its key and ICV sizes, and what each kernel backend calls it. The
//! proposal filter ([`Backend::installable`]), the key lengths of Quick Mode, the report
//! and the XFRM and PF_KEY translations all read from here, so that a new transform is
//! one line in one file.
//!
//! A backend column that is `None` means the backend cannot install the algorithm: the
//! engine then neither offers nor accepts it (the peer must never believe in a tunnel our
//! kernel does not carry).

use super::wire::{AuthAlgorithm, ProtocolId};

/// An ESP transform (IPsec DOI ESP transform identifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cipher {
    pub id: u8,
    /// isakmpd's report name (sa.c).
    pub name: &'static str,
    /// Key bits when the proposal carries no KEY_LENGTH (variable-length ciphers), or the
    /// fixed key size.
    pub key_bits: u16,
    /// Whether KEY_LENGTH applies (RFC 2407 §4.5: "for algorithms with variable length").
    pub variable: bool,
    /// Salt or nonce bytes appended to the key (RFC 3686, RFC 4106, RFC 4543).
    pub salt: usize,
    /// AEAD: the ICV length in bits; integrity comes with the cipher.
    pub aead_icv_bits: Option<u32>,
    /// Linux XFRM algorithm name.
    pub xfrm: Option<&'static str>,
    /// PF_KEY v2 (RFC 2367) encryption algorithm number, Linux and OpenBSD alike.
    pub pfkey: Option<u8>,
}

/// An integrity algorithm: ESP's AUTHENTICATION_ALGORITHM attribute, or the AH transform
/// that implies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Integrity {
    /// AUTHENTICATION_ALGORITHM value (RFC 2407 §4.5).
    pub id: u16,
    /// The AH transform identifier with the same algorithm (RFC 2407 §4.4.3).
    pub ah: u8,
    pub name: &'static str,
    pub key_len: usize,
    /// Truncated ICV in bits (RFC 2404, RFC 4868).
    pub icv_bits: u32,
    pub xfrm: Option<&'static str>,
    pub pfkey: Option<u8>,
    /// Linux af_key installs it with the right ICV (it truncates HMAC-SHA2 to 96 bits).
    pub pfkey_linux: bool,
}

pub const CIPHERS: &[Cipher] = &[
    cipher(
        3,
        "3DES",
        192,
        false,
        0,
        None,
        Some("cbc(des3_ede)"),
        Some(3),
    ),
    cipher(
        6,
        "Cast-128",
        128,
        true,
        0,
        None,
        Some("cbc(cast5)"),
        Some(6),
    ),
    cipher(
        7,
        "Blowfish",
        128,
        true,
        0,
        None,
        Some("cbc(blowfish)"),
        Some(7),
    ),
    cipher(
        11,
        "NULL",
        0,
        false,
        0,
        None,
        Some("ecb(cipher_null)"),
        Some(11),
    ),
    cipher(
        12,
        "AES (CBC)",
        128,
        true,
        0,
        None,
        Some("cbc(aes)"),
        Some(12),
    ),
    cipher(
        13,
        "AES (CTR)",
        128,
        true,
        4,
        None,
        Some("rfc3686(ctr(aes))"),
        Some(13),
    ),
    cipher(
        20,
        "AES (GCM)",
        128,
        true,
        4,
        Some(128),
        Some("rfc4106(gcm(aes))"),
        None,
    ),
    cipher(23, "AES (GMAC)", 128, true, 4, Some(128), None, None),
];

pub const INTEGRITY: &[Integrity] = &[
    integrity(1, 2, "HMAC-MD5", 16, 96, "hmac(md5)", 2, true),
    integrity(2, 3, "HMAC-SHA1", 20, 96, "hmac(sha1)", 3, true),
    integrity(5, 5, "HMAC-SHA2-256", 32, 128, "hmac(sha256)", 5, false),
    integrity(6, 6, "HMAC-SHA2-384", 48, 192, "hmac(sha384)", 6, false),
    integrity(7, 7, "HMAC-SHA2-512", 64, 256, "hmac(sha512)", 7, false),
    integrity(8, 8, "HMAC-RIPEMD-160", 20, 96, "hmac(rmd160)", 8, true),
];

#[allow(clippy::too_many_arguments)]
const fn cipher(
    id: u8,
    name: &'static str,
    key_bits: u16,
    variable: bool,
    salt: usize,
    aead_icv_bits: Option<u32>,
    xfrm: Option<&'static str>,
    pfkey: Option<u8>,
) -> Cipher {
    Cipher {
        id,
        name,
        key_bits,
        variable,
        salt,
        aead_icv_bits,
        xfrm,
        pfkey,
    }
}

#[allow(clippy::too_many_arguments)]
const fn integrity(
    id: u16,
    ah: u8,
    name: &'static str,
    key_len: usize,
    icv_bits: u32,
    xfrm: &'static str,
    pfkey: u8,
    pfkey_linux: bool,
) -> Integrity {
    Integrity {
        id,
        ah,
        name,
        key_len,
        icv_bits,
        xfrm: Some(xfrm),
        pfkey: Some(pfkey),
        pfkey_linux,
    }
}

/// The ESP transform `id`.
pub fn cipher_by_id(id: u8) -> Option<&'static Cipher> {
    CIPHERS.iter().find(|c| c.id == id)
}

/// The integrity algorithm with AUTHENTICATION_ALGORITHM `a`.
pub fn integrity_by_id(a: u16) -> Option<&'static Integrity> {
    INTEGRITY.iter().find(|i| i.id == a)
}

/// An algorithm this table does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unknown;

/// The integrity algorithm of an IPsec SA: ESP's AUTHENTICATION_ALGORITHM attribute, or
/// for AH the attribute or else the one its transform implies. `Ok(None)`: ESP without
/// integrity (or AEAD).
pub fn integrity_of(
    protocol: ProtocolId,
    transform: u8,
    auth: Option<AuthAlgorithm>,
) -> Result<Option<&'static Integrity>, Unknown> {
    match auth {
        Some(a) => integrity_by_id(a.0).map(Some).ok_or(Unknown),
        None if protocol == ProtocolId::IPSEC_AH => INTEGRITY
            .iter()
            .find(|i| i.ah == transform)
            .map(Some)
            .ok_or(Unknown),
        None => Ok(None),
    }
}

/// Encryption key bytes of an SA (with the salt of CTR/GCM/GMAC); 0 for AH.
pub fn enc_key_len(protocol: ProtocolId, transform: u8, key_bits: Option<u16>) -> Option<usize> {
    if protocol != ProtocolId::IPSEC_ESP {
        return Some(0);
    }
    let c = cipher_by_id(transform)?;
    let bits = if c.variable {
        key_bits.unwrap_or(c.key_bits)
    } else {
        c.key_bits
    };
    Some(usize::from(bits) / 8 + c.salt)
}

/// Integrity key bytes of an SA (0 for ESP without integrity).
pub fn auth_key_len(
    protocol: ProtocolId,
    transform: u8,
    auth: Option<AuthAlgorithm>,
) -> Option<usize> {
    integrity_of(protocol, transform, auth)
        .ok()
        .map(|i| i.map_or(0, |i| i.key_len))
}

/// isakmpd's report name of an SA's encryption ("none" for AH).
pub fn cipher_name(protocol: ProtocolId, transform: u8) -> &'static str {
    if protocol == ProtocolId::IPSEC_AH {
        return "none";
    }
    cipher_by_id(transform).map_or("unknown", |c| c.name)
}

/// isakmpd's report name of an integrity algorithm.
pub fn integrity_name(a: AuthAlgorithm) -> &'static str {
    integrity_by_id(a.0).map_or("unknown", |i| i.name)
}

/// The kernel backend in force, as far as proposals are concerned: a transform is offered
/// (initiator) or accepted (responder) only if the backend can install it. The event
/// loop hands the engine the backend it opened; the columns of the tables above say what
/// each can carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    /// `-n`: nothing is installed, everything the engine knows may be negotiated.
    #[default]
    Record,
    /// Linux XFRM netlink.
    Xfrm,
    /// Linux PF_KEY v2 (af_key): no AEAD, and HMAC-SHA2 would get a 96-bit ICV.
    PfkeyLinux,
    /// OpenBSD PF_KEY v2: the RFC 2367 algorithms and HMAC-SHA2 (no AEAD through this
    /// daemon yet).
    PfkeyOpenBsd,
}

impl Backend {
    /// Whether the backend can install this cipher.
    pub fn has_cipher(self, c: &Cipher) -> bool {
        match self {
            Backend::Record => true,
            Backend::Xfrm => c.xfrm.is_some(),
            Backend::PfkeyLinux | Backend::PfkeyOpenBsd => c.pfkey.is_some(),
        }
    }

    /// Whether the backend can install this integrity algorithm.
    pub fn has_integrity(self, i: &Integrity) -> bool {
        match self {
            Backend::Record => true,
            Backend::Xfrm => i.xfrm.is_some(),
            Backend::PfkeyLinux => i.pfkey.is_some() && i.pfkey_linux,
            Backend::PfkeyOpenBsd => i.pfkey.is_some(),
        }
    }

    /// Whether an SA of `protocol` with this transform and integrity can be installed.
    pub fn installable(
        self,
        protocol: ProtocolId,
        transform: u8,
        auth: Option<AuthAlgorithm>,
    ) -> bool {
        if self == Backend::Record {
            return true;
        }
        if protocol == ProtocolId::IPSEC_AH {
            // AH is named by its transform (RFC 2407 §4.4.3).
            return INTEGRITY
                .iter()
                .any(|i| i.ah == transform && self.has_integrity(i));
        }
        let integrity_ok = match integrity_of(protocol, transform, auth) {
            Ok(i) => i.is_none_or(|i| self.has_integrity(i)),
            Err(Unknown) => false,
        };
        cipher_by_id(transform).is_some_and(|c| self.has_cipher(c)) && integrity_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lengths_and_backends() {
        let esp = ProtocolId::IPSEC_ESP;
        let ah = ProtocolId::IPSEC_AH;
        assert_eq!(enc_key_len(esp, 3, Some(256)), Some(24), "3DES is fixed");
        assert_eq!(enc_key_len(esp, 12, None), Some(16));
        assert_eq!(
            enc_key_len(esp, 20, Some(256)),
            Some(36),
            "GCM carries a salt"
        );
        assert_eq!(enc_key_len(ah, 3, None), Some(0));
        assert_eq!(enc_key_len(esp, 99, None), None);
        let sha256 = Some(AuthAlgorithm::HMAC_SHA2_256);
        assert_eq!(auth_key_len(esp, 12, sha256), Some(32));
        assert_eq!(
            auth_key_len(ah, 3, None),
            Some(20),
            "AH SHA implies HMAC-SHA1"
        );
        assert_eq!(auth_key_len(esp, 20, None), Some(0));
        assert!(Backend::Xfrm.installable(esp, 20, None));
        assert!(
            !Backend::PfkeyLinux.installable(esp, 20, None),
            "no AEAD over PF_KEY"
        );
        assert!(
            !Backend::PfkeyLinux.installable(esp, 12, sha256),
            "af_key truncates SHA-2"
        );
        assert!(Backend::PfkeyOpenBsd.installable(esp, 12, sha256));
        assert!(!Backend::PfkeyLinux.installable(ah, 5, None));
        assert!(Backend::PfkeyLinux.installable(ah, 8, None));
        assert!(
            !Backend::Xfrm.installable(esp, 23, None),
            "GMAC: no XFRM name here"
        );
        assert!(Backend::Record.installable(esp, 23, None));
        assert_eq!(cipher_name(esp, 12), "AES (CBC)");
        assert_eq!(integrity_name(AuthAlgorithm::HMAC_SHA), "HMAC-SHA1");
    }
}
