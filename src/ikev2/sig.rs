//! Signature authentication for IKEv2 (RFC 7296 §2.15, §3.6-§3.8; RFC 4754; RFC 7427):
//! the AUTH payload we sign, the check of the peer's, the peer's key from its CERT
//! payloads (chained to our CAs, naming its ID) or from pubkeys/, and the CERTREQ and
//! SIGNATURE_HASH_ALGORITHMS data.
//!
//! AUTH methods:
//! - 1, RSA Digital Signature: RSASSA-PKCS1-v1_5 with SHA-1 (iked's `rsa`).
//! - 9, 10, 11: ECDSA with SHA-256 on P-256, SHA-384 on P-384, SHA-512 on P-521; the
//!   signature is r | s, each as long as the curve's field (RFC 4754 §7).
//! - 14, Digital Signature (RFC 7427 §3): one length byte, the DER AlgorithmIdentifier,
//!   then the signature (DER for ECDSA). We sign with SHA2-256 (iked.conf(5): "RFC 7427
//!   signatures currently only support SHA2-256"); we take sha1/sha256/sha384/sha512 with
//!   RSA PKCS#1 v1.5 or ECDSA, and RSASSA-PSS with SHA-2 whose salt is the hash's length.

#![forbid(unsafe_code)]

use crate::ike::crypto::{
    ecdsa_der_to_raw, ecdsa_raw_to_der, hash, Certificate, HashAlg, KeyKind, PrivateKey, PublicKey,
    SigPadding,
};
use crate::ike::Credentials;

use super::policy::SigMethod;
use super::wire::{AuthMethod, IdType};

/// The hashes we announce in SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4): SHA2-256, -384,
/// -512, as iked does.
pub const OUR_HASHES: [u8; 6] = [0, 2, 0, 3, 0, 4];

/// The peer's SIGNATURE_HASH_ALGORITHMS notify as a bit set (bit n for hash n).
pub fn hash_set(data: &[u8]) -> u8 {
    data.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .filter(|&h| h < 8)
        .fold(0, |acc, h| acc | 1 << h)
}

const SHA2_256_BIT: u8 = 1 << 2;

// DER AlgorithmIdentifiers (RFC 7427 appendix A), and the OIDs we recognise in the
// peer's.
const ALG_SHA256_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];
const ALG_ECDSA_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
const OID_ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
const OID_ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
const OID_SHA2: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02];

/// The native method of a key (RFC 7296's 1, RFC 4754's 9-11), its hash and the ECDSA
/// field length.
fn native(kind: KeyKind) -> Option<(AuthMethod, HashAlg, usize)> {
    Some(match kind {
        KeyKind::Rsa => (AuthMethod::RSA_SIG, HashAlg::Sha1, 0),
        KeyKind::EcP256 => (AuthMethod::ECDSA_SHA256_P256, HashAlg::Sha256, 32),
        KeyKind::EcP384 => (AuthMethod::ECDSA_SHA384_P384, HashAlg::Sha384, 48),
        KeyKind::EcP521 => (AuthMethod::ECDSA_SHA512_P521, HashAlg::Sha512, 66),
        KeyKind::Other => return None,
    })
}

fn method_kind(m: SigMethod) -> Option<KeyKind> {
    match m {
        SigMethod::Rsa => Some(KeyKind::Rsa),
        SigMethod::Ecdsa256 => Some(KeyKind::EcP256),
        SigMethod::Ecdsa384 => Some(KeyKind::EcP384),
        SigMethod::Ecdsa521 => Some(KeyKind::EcP521),
        SigMethod::Any | SigMethod::Rfc7427 => None,
    }
}

/// Our AUTH payload's method and data: a signature over `octets` (§2.15) with `key`,
/// by the policy's method; with `Any`, RFC 7427 when the peer announced SHA2-256
/// (`peer_hashes`, [`hash_set`]), else our key's own method.
pub fn sign(
    key: &PrivateKey,
    want: SigMethod,
    peer_hashes: u8,
    octets: &[u8],
) -> Result<(AuthMethod, Vec<u8>), &'static str> {
    let kind = key.kind();
    let rfc7427 = match want {
        SigMethod::Rfc7427 => true,
        SigMethod::Any => peer_hashes & SHA2_256_BIT != 0,
        m => {
            if method_kind(m) != Some(kind) {
                return Err("our private key is not of the policy's signature method");
            }
            false
        }
    };
    let fail = |_| "signing failed";
    if rfc7427 {
        let alg = match kind {
            KeyKind::Rsa => ALG_SHA256_RSA,
            KeyKind::EcP256 | KeyKind::EcP384 | KeyKind::EcP521 => ALG_ECDSA_SHA256,
            KeyKind::Other => return Err("our private key is neither RSA nor ECDSA"),
        };
        let sig = key
            .sign(HashAlg::Sha256, SigPadding::Pkcs1, octets)
            .map_err(fail)?;
        let mut data = Vec::with_capacity(1 + alg.len() + sig.len());
        data.push(alg.len() as u8);
        data.extend_from_slice(alg);
        data.extend_from_slice(&sig);
        return Ok((AuthMethod::DIGITAL_SIGNATURE, data));
    }
    let (method, h, n) = native(kind).ok_or("our private key is neither RSA nor ECDSA")?;
    let sig = key.sign(h, SigPadding::Pkcs1, octets).map_err(fail)?;
    let sig = if n == 0 {
        sig
    } else {
        ecdsa_der_to_raw(&sig, n).map_err(fail)?
    };
    Ok((method, sig))
}

/// Checks the peer's AUTH payload (`method`, `data`) over `octets` with its public key;
/// the method must be one the policy allows (`Any`: 1, 9-11 or 14; `rfc7427`: 14; a
/// named kind: a key of that kind, with its own method or 14).
pub fn verify(
    key: &PublicKey,
    want: SigMethod,
    method: AuthMethod,
    data: &[u8],
    octets: &[u8],
) -> Result<(), &'static str> {
    // `rsa`, `ecdsa256`...: the key must be of that kind, signing with its own method or
    // RFC 7427's (which a peer uses once we announce SIGNATURE_HASH_ALGORITHMS);
    // `rfc7427`: method 14 only.
    let kind = key.kind();
    let allowed = match want {
        SigMethod::Any => true,
        SigMethod::Rfc7427 => method == AuthMethod::DIGITAL_SIGNATURE,
        m => {
            method_kind(m) == Some(kind)
                && (method == AuthMethod::DIGITAL_SIGNATURE
                    || native(kind).map(|x| x.0) == Some(method))
        }
    };
    if !allowed {
        return Err("AUTH method or key not the policy's");
    }
    let bad = |_| "AUTH signature does not verify";
    if method == AuthMethod::DIGITAL_SIGNATURE {
        let (&len, rest) = data.split_first().ok_or("AUTH data empty")?;
        let len = usize::from(len);
        if rest.len() < len {
            return Err("AUTH AlgorithmIdentifier truncated");
        }
        let (alg, sig) = rest.split_at(len);
        let (h, pad, ecdsa) = algorithm(alg).ok_or("AUTH signature algorithm not supported")?;
        let fits = match kind {
            KeyKind::Rsa => !ecdsa,
            KeyKind::EcP256 | KeyKind::EcP384 | KeyKind::EcP521 => ecdsa,
            KeyKind::Other => false,
        };
        if !fits {
            return Err("AUTH signature algorithm does not fit the peer's key");
        }
        // Only the hashes we announced (RFC 7427 §4: SHA2-256, -384, -512).
        if h == HashAlg::Sha1 {
            return Err("AUTH signed with SHA-1, which we did not announce");
        }
        return key.verify(h, pad, octets, sig).map_err(bad);
    }
    let (m, h, n) = native(kind).ok_or("the peer's key is neither RSA nor ECDSA")?;
    if m != method {
        return Err("AUTH method does not fit the peer's key");
    }
    if n == 0 {
        key.verify(h, SigPadding::Pkcs1, octets, data).map_err(bad)
    } else {
        if data.len() != 2 * n {
            return Err("AUTH ECDSA signature of the wrong length");
        }
        let der = ecdsa_raw_to_der(data).map_err(bad)?;
        key.verify(h, SigPadding::Pkcs1, octets, &der).map_err(bad)
    }
}

/// A DER AlgorithmIdentifier (SEQUENCE { OID, params }): the hash, the RSA padding, and
/// whether it is ECDSA; None for what we do not take.
fn algorithm(alg: &[u8]) -> Option<(HashAlg, SigPadding, bool)> {
    // SEQUENCE, short length; then OID, short length.
    let (&[0x30, l], rest) = alg.split_first_chunk::<2>()? else {
        return None;
    };
    if usize::from(l) != rest.len() || l >= 0x80 {
        return None;
    }
    let (&[0x06, ol], rest) = rest.split_first_chunk::<2>()? else {
        return None;
    };
    let oid = rest.get(..usize::from(ol))?;
    let params = &rest[usize::from(ol)..];
    let sha2 = |b: u8| match b {
        1 => Some(HashAlg::Sha256),
        2 => Some(HashAlg::Sha384),
        3 => Some(HashAlg::Sha512),
        _ => None,
    };
    if oid == OID_ECDSA_SHA1 {
        return Some((HashAlg::Sha1, SigPadding::Pkcs1, true));
    }
    if let Some([b]) = oid.strip_prefix(OID_ECDSA_SHA2) {
        return Some((sha2(b.checked_sub(1)?)?, SigPadding::Pkcs1, true));
    }
    let [b] = oid.strip_prefix(OID_RSA)? else {
        return None;
    };
    match b {
        5 => Some((HashAlg::Sha1, SigPadding::Pkcs1, false)),
        11 => Some((HashAlg::Sha256, SigPadding::Pkcs1, false)),
        12 => Some((HashAlg::Sha384, SigPadding::Pkcs1, false)),
        13 => Some((HashAlg::Sha512, SigPadding::Pkcs1, false)),
        // RSASSA-PSS: the hash is the first SHA-2 OID in its parameters (hashAlgorithm;
        // MGF1's is taken to be the same).
        10 => {
            let i = params.windows(OID_SHA2.len()).position(|w| w == OID_SHA2)?;
            let h = sha2(*params.get(i + OID_SHA2.len())?)?;
            Some((h, SigPadding::Pss, false))
        }
        _ => None,
    }
}

/// CERTREQ data (§3.7): the SHA-1 of each trusted CA's SubjectPublicKeyInfo.
pub fn certreq(cas: &[Certificate]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 * cas.len());
    for c in cas {
        if let Ok(k) = c.public() {
            out.extend_from_slice(hash(HashAlg::Sha1, &[&k.spki_der()]).as_bytes());
        }
    }
    out
}

/// The peer's public key: from its first certificate (§3.6: the one that verifies
/// AUTH), which must chain to one of our CAs (with the others as intermediates) and
/// name its ID; or with no certificate, from pubkeys/ by its ID. The string says what
/// vouched for it, for the log; the error says why nothing did.
pub fn peer_key(
    creds: &Credentials,
    certs: &[&[u8]],
    id_ty: IdType,
    id: &[u8],
) -> Result<(PublicKey, String), String> {
    let Some((first, rest)) = certs.split_first() else {
        return match creds.pubkey_by_id(id_ty.0, id) {
            Some(k) => Ok((k.clone(), "its public key in pubkeys/".into())),
            None => Err("no certificate from the peer, and no public key for its ID".into()),
        };
    };
    let cert = Certificate::parse(first).map_err(|_| "the peer's certificate does not parse")?;
    // A certificate whose key is the one pubkeys/ holds for the ID is taken as that key
    // (iked's ca_getcert looks there first), CA or not.
    if let (Some(k), Ok(c)) = (creds.pubkey_by_id(id_ty.0, id), cert.public()) {
        if k.spki_der() == c.spki_der() {
            return Ok((k.clone(), "its public key in pubkeys/".into()));
        }
    }
    if !cert.names().matches_id(id_ty.0, id) {
        return Err(format!(
            "certificate \"{}\" does not name the peer's ID",
            cert.subject()
        ));
    }
    let trust = creds
        .trust
        .as_ref()
        .ok_or("no CA certificates configured")?;
    let chain: Vec<Certificate> = rest
        .iter()
        .filter_map(|c| Certificate::parse(c).ok())
        .collect();
    trust
        .verify(&cert, &chain)
        .map_err(|e| format!("certificate \"{}\" not trusted: {e}", cert.subject()))?;
    let key = cert
        .public()
        .map_err(|_| "the peer's certificate key is unusable")?;
    Ok((key, format!("certificate \"{}\"", cert.subject())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pem: &str) -> PrivateKey {
        PrivateKey::from_pem(pem.as_bytes()).unwrap()
    }

    fn ec_key(nid: openssl::nid::Nid) -> PrivateKey {
        let g = openssl::ec::EcGroup::from_curve_name(nid).unwrap();
        let k = openssl::ec::EcKey::generate(&g).unwrap();
        key(std::str::from_utf8(&k.private_key_to_pem().unwrap()).unwrap())
    }

    fn rsa_key() -> PrivateKey {
        let k = openssl::rsa::Rsa::generate(2048).unwrap();
        key(std::str::from_utf8(&k.private_key_to_pem().unwrap()).unwrap())
    }

    #[test]
    fn every_method_signs_and_verifies_and_refuses_altered_octets() {
        use openssl::nid::Nid;
        let keys = [
            rsa_key(),
            ec_key(Nid::X9_62_PRIME256V1),
            ec_key(Nid::SECP384R1),
            ec_key(Nid::SECP521R1),
        ];
        let octets = b"signed octets";
        for k in &keys {
            let public = k.public().unwrap();
            for (want, hashes) in [
                (SigMethod::Any, 0),
                (SigMethod::Any, hash_set(&OUR_HASHES)),
                (SigMethod::Rfc7427, 0),
            ] {
                let (m, data) = sign(k, want, hashes, octets).unwrap();
                let rfc = want == SigMethod::Rfc7427 || hashes != 0;
                assert_eq!(m == AuthMethod::DIGITAL_SIGNATURE, rfc, "{:?}", k.kind());
                verify(&public, SigMethod::Any, m, &data, octets).unwrap();
                verify(&public, want, m, &data, octets).unwrap();
                assert!(verify(&public, SigMethod::Any, m, &data, b"signed octetS").is_err());
                let mut bad = data.clone();
                let last = bad.len() - 1;
                bad[last] ^= 1;
                assert!(verify(&public, SigMethod::Any, m, &bad, octets).is_err());
            }
        }
        // Methods bound to a key kind: ours must be of it, the peer's must use it.
        assert!(sign(&keys[1], SigMethod::Rsa, 0, octets).is_err());
        let (m, data) = sign(&keys[1], SigMethod::Ecdsa256, 0, octets).unwrap();
        assert_eq!(m, AuthMethod::ECDSA_SHA256_P256);
        assert_eq!(data.len(), 64);
        let p = keys[1].public().unwrap();
        assert!(verify(&p, SigMethod::Rsa, m, &data, octets).is_err());
        assert!(verify(&p, SigMethod::Ecdsa384, m, &data, octets).is_err());
        assert!(verify(&p, SigMethod::Rfc7427, m, &data, octets).is_err());
        // A named kind takes RFC 7427 signatures by a key of that kind.
        let (m, data) = sign(&keys[1], SigMethod::Rfc7427, 0, octets).unwrap();
        verify(&p, SigMethod::Ecdsa256, m, &data, octets).unwrap();
        assert!(verify(&p, SigMethod::Rsa, m, &data, octets).is_err());
        let (m, data) = sign(&keys[3], SigMethod::Ecdsa521, 0, octets).unwrap();
        assert_eq!((m, data.len()), (AuthMethod::ECDSA_SHA512_P521, 132));
        // A signature by another key of the same kind does not verify.
        let other = rsa_key().public().unwrap();
        let (m, data) = sign(&keys[0], SigMethod::Rsa, 0, octets).unwrap();
        assert!(verify(&other, SigMethod::Any, m, &data, octets).is_err());
    }

    #[test]
    fn rfc7427_rsa_pss_and_sha384_are_taken() {
        let k = rsa_key();
        let p = k.public().unwrap();
        let octets = b"octets";
        // RFC 7427 A.4.3: RSASSA-PSS with SHA-256, MGF1 SHA-256, salt 32.
        let pss: &[u8] = &[
            0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30,
            0x34, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
            0x02, 0x01, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
            0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
            0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x20,
        ];
        let sig = k.sign(HashAlg::Sha256, SigPadding::Pss, octets).unwrap();
        let mut data = vec![pss.len() as u8];
        data.extend_from_slice(pss);
        data.extend_from_slice(&sig);
        verify(
            &p,
            SigMethod::Rfc7427,
            AuthMethod::DIGITAL_SIGNATURE,
            &data,
            octets,
        )
        .unwrap();
        // sha384WithRSAEncryption.
        let alg: &[u8] = &[
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c, 0x05,
            0x00,
        ];
        let sig = k.sign(HashAlg::Sha384, SigPadding::Pkcs1, octets).unwrap();
        let mut data = vec![alg.len() as u8];
        data.extend_from_slice(alg);
        data.extend_from_slice(&sig);
        verify(
            &p,
            SigMethod::Any,
            AuthMethod::DIGITAL_SIGNATURE,
            &data,
            octets,
        )
        .unwrap();
        // Garbled identifiers and lengths are refused, not panicked on.
        for cut in 0..data.len().min(20) {
            let _ = verify(
                &p,
                SigMethod::Any,
                AuthMethod::DIGITAL_SIGNATURE,
                &data[..cut],
                octets,
            );
        }
        data[0] = 0xff;
        assert!(verify(
            &p,
            SigMethod::Any,
            AuthMethod::DIGITAL_SIGNATURE,
            &data,
            octets
        )
        .is_err());
        // sha1WithRSAEncryption: a hash we did not announce.
        let alg: &[u8] = &[
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05,
            0x00,
        ];
        let sig = k.sign(HashAlg::Sha1, SigPadding::Pkcs1, octets).unwrap();
        let mut data = vec![alg.len() as u8];
        data.extend_from_slice(alg);
        data.extend_from_slice(&sig);
        let m = AuthMethod::DIGITAL_SIGNATURE;
        assert!(verify(&p, SigMethod::Any, m, &data, octets).is_err());
    }

    #[test]
    fn hash_sets() {
        assert_eq!(hash_set(&OUR_HASHES), 0b11100);
        assert_eq!(hash_set(&[0, 1, 0x80, 0, 0]), 0b10);
    }
}
