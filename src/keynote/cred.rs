//! KeyNote credentials as isakmpd's phase 1 uses them for RSA signatures: a peer's CERT
//! payload of the KEYNOTE encoding (policy.c `keynote_cert_validate`,
//! `keynote_cert_get_key`) and our own `private_key` file under `[KeyNote]
//! Credential-directory` (ike_auth.c `ike_auth_get_key`).
//!
//! A peer's credentials are kept only when every assertion in them parses and carries a
//! signature that verifies by its Authorizer's key. isakmpd's `keynote_cert_validate`
//! checks the first assertion's signature once for each assertion in the payload (it
//! passes the whole text to `kn_verify_assertion`); this port checks each one's, so an
//! unsigned assertion cannot ride along with a signed one.

use super::expr::Lic;
use super::{parse_assertion, sig, split_assertions};
use crate::ike::policy::KeynoteCert;

/// Most assertions one CERT payload may hold.
const MAX_CREDENTIALS: usize = 64;

/// What isakmpd's `private-` prefix makes a private key of (keynote-keygen writes it).
const PRIVATE: &str = "private-";

/// Checks the text of a KeyNote CERT payload: the assertions, and the key isakmpd takes
/// for the peer. isakmpd (`keynote_cert_get_key`) adds the last assertion to a fresh
/// session and takes the first RSA or X.509 key of its licensee list, which libkeynote
/// builds by prepending (auxil.c `keynote_keylist_add`): the last such key in the
/// Licensees field's text.
pub fn peer_credentials(data: &[u8]) -> Result<KeynoteCert, String> {
    // keynote_serialize sends the string's NUL; keynote_cert_get reads up to it.
    let data = data.split(|&b| b == 0).next().unwrap_or_default();
    let text = std::str::from_utf8(data).map_err(|_| "credentials are not text".to_string())?;
    let blocks = split_assertions(text);
    if blocks.len() > MAX_CREDENTIALS {
        return Err(format!("more than {MAX_CREDENTIALS} assertions"));
    }
    let mut out = KeynoteCert::default();
    let mut last = None;
    for (line, lines, raw) in blocks {
        let a = parse_assertion(line, &lines, raw)
            .map_err(|e| format!("credential at line {line}: {e}"))?;
        if !a.signed {
            return Err(format!("credential at line {line} is not signed"));
        }
        out.assertions.push(raw.to_string());
        last = Some(a);
    }
    let last = last.ok_or("no assertion in the credentials")?;
    let mut keys = Vec::new();
    if let Some(l) = &last.licensees {
        principals(l, &mut keys);
    }
    out.key = keys
        .iter()
        .rev()
        .find_map(|p| sig::rsa_key(p))
        .ok_or("the last credential licenses no RSA key")?;
    Ok(out)
}

/// The principals of a Licensees field, in the order the text names them.
fn principals<'a>(l: &'a Lic, out: &mut Vec<&'a str>) {
    match l {
        Lic::Principal(p) => out.push(p),
        Lic::And(v) | Lic::Or(v) | Lic::KOf(_, v) => v.iter().for_each(|x| principals(x, out)),
    }
}

/// Our RSA private key from a `private_key` file as isakmpd reads it: one KeyNote string
/// (`kn_get_string`: quoted, continued over lines by a backslash, as keynote-keygen writes
/// it; a bare line is taken too) naming `private-rsa-hex:` or `private-rsa-base64:` and a
/// PKCS#1 RSAPrivateKey (`kn_decode_key` with KEYNOTE_PRIVATE_KEY). Returns its DER.
pub fn private_key(text: &str) -> Result<Vec<u8>, String> {
    let s = match super::lex::lex(text).as_deref() {
        Ok([super::lex::Tok::Str(s)]) => s.clone(),
        _ => text.trim().to_string(),
    };
    let key = sig::strip(&s, PRIVATE).ok_or("not a KeyNote private key (no \"private-\")")?;
    let der = if let Some(h) = sig::strip(key, sig::RSA_HEX) {
        sig::unhex(h)
    } else if let Some(b) = sig::strip(key, sig::RSA_B64) {
        sig::unbase64(b)
    } else {
        return Err("not an RSA key (private-rsa-hex: or private-rsa-base64:)".into());
    };
    der.filter(|d| !d.is_empty())
        .ok_or_else(|| "the key does not decode".to_string())
}
