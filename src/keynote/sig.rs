//! KeyNote keys and signatures as libkeynote (signature.c) has them: principals that are
//! keys compare as keys, whatever their encoding, and a signed assertion is checked
//! against its Authorizer's key.
//!
//! Keys: `rsa-hex:` and `rsa-base64:` (a PKCS#1 RSAPublicKey), `x509-hex:` and
//! `x509-base64:` (a certificate, standing for its RSA key), `dsa-hex:` and `dsa-base64:`
//! (kept as bytes: this build has no DSA). [`canonical`] writes each key as `rsa-hex:` (or
//! `dsa-hex:`) of its re-encoded DER in lower case, so that `kn_keycompare`'s equality of
//! modulus and exponent becomes equality of strings.
//!
//! Signatures: `sig-rsa-sha1-hex:`, `sig-rsa-sha1-base64:`, `sig-rsa-md5-hex:`,
//! `sig-rsa-md5-base64:`. The signed octets are the assertion's text from its first field
//! up to the `Signature` keyword, then the algorithm name with its colon; the signature
//! is PKCS#1 v1.5 over the digest as a DER OCTET STRING (`RSA_sign_ASN1_OCTET_STRING`).
//! DSA and X.509 signatures are refused as unsupported.

#![forbid(unsafe_code)]

use openssl::rsa::{Padding, Rsa};

/// The key algorithms' prefixes, lower case (libkeynote matches them without case).
pub(crate) const RSA_HEX: &str = "rsa-hex:";
pub(crate) const RSA_B64: &str = "rsa-base64:";
const X509_HEX: &str = "x509-hex:";
const X509_B64: &str = "x509-base64:";
const DSA_HEX: &str = "dsa-hex:";
const DSA_B64: &str = "dsa-base64:";

/// `s` without `prefix`, compared without case.
pub(crate) fn strip<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|p| {
            let d = |c: u8| (c as char).to_digit(16);
            Some((d(p[0])? * 16 + d(p[1])?) as u8)
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn unbase64(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(4) {
        return None;
    }
    openssl::base64::decode_block(s).ok()
}

/// The RSA public key a principal names, as PKCS#1 DER, if it names one.
pub(crate) fn rsa_key(p: &str) -> Option<Vec<u8>> {
    let der = if let Some(h) = strip(p, RSA_HEX) {
        unhex(h)?
    } else if let Some(b) = strip(p, RSA_B64) {
        unbase64(b)?
    } else {
        let cert = match (strip(p, X509_HEX), strip(p, X509_B64)) {
            (Some(h), _) => unhex(h)?,
            (_, Some(b)) => unbase64(b)?,
            _ => return None,
        };
        let x = openssl::x509::X509::from_der(&cert).ok()?;
        return x
            .public_key()
            .ok()?
            .rsa()
            .ok()?
            .public_key_to_der_pkcs1()
            .ok();
    };
    let k = Rsa::public_key_from_der_pkcs1(&der).ok()?;
    k.public_key_to_der_pkcs1().ok()
}

/// A principal in the form principals are compared in: a key as `rsa-hex:` (or
/// `dsa-hex:`) of its DER in lower case; anything else (`POLICY`, `passphrase:...`, `DN:...`,
/// a name, a key that does not decode) as it is.
pub(crate) fn canonical(p: &str) -> String {
    if let Some(der) = rsa_key(p) {
        return format!("{RSA_HEX}{}", hex(&der));
    }
    let dsa = match (strip(p, DSA_HEX), strip(p, DSA_B64)) {
        (Some(h), _) => unhex(h),
        (_, Some(b)) => unbase64(b),
        _ => None,
    };
    match dsa {
        Some(der) => format!("{DSA_HEX}{}", hex(&der)),
        None => p.to_string(),
    }
}

/// Checks `signature` (the Signature field's string) over `signed` (the assertion's text
/// up to the `Signature` keyword) by `authorizer`'s key.
pub(crate) fn verify(authorizer: &str, signed: &[u8], signature: &str) -> Result<(), String> {
    let colon = signature
        .find(':')
        .ok_or("the signature names no algorithm")?;
    let (alg, value) = (&signature[..=colon], &signature[colon + 1..]);
    let (digest, b64) = match alg.to_ascii_lowercase().as_str() {
        "sig-rsa-sha1-hex:" => (openssl::hash::MessageDigest::sha1(), false),
        "sig-rsa-sha1-base64:" => (openssl::hash::MessageDigest::sha1(), true),
        "sig-rsa-md5-hex:" => (openssl::hash::MessageDigest::md5(), false),
        "sig-rsa-md5-base64:" => (openssl::hash::MessageDigest::md5(), true),
        _ => {
            return Err(format!(
                "signature algorithm {} is not supported",
                alg.trim_end_matches(':')
            ))
        }
    };
    let key = rsa_key(authorizer).ok_or("the Authorizer is not an RSA key")?;
    let key = Rsa::public_key_from_der_pkcs1(&key).map_err(|e| e.to_string())?;
    let sig =
        if b64 { unbase64(value) } else { unhex(value) }.ok_or("the signature does not decode")?;
    let mut h = openssl::hash::Hasher::new(digest).map_err(|e| e.to_string())?;
    h.update(signed).map_err(|e| e.to_string())?;
    h.update(alg.as_bytes()).map_err(|e| e.to_string())?;
    let d = h.finish().map_err(|e| e.to_string())?;
    // The digest as a DER OCTET STRING: what RSA_sign_ASN1_OCTET_STRING signs.
    let mut want = vec![0x04, d.len() as u8];
    want.extend_from_slice(&d);
    let mut out = vec![0u8; key.size() as usize];
    let n = key
        .public_decrypt(&sig, &mut out, Padding::PKCS1)
        .map_err(|_| "the signature does not verify")?;
    if out[..n] != want[..] {
        return Err("the signature does not verify".into());
    }
    Ok(())
}
