//! The EAP-MSCHAPv2 users of iked.conf `user` lines, as the engine takes them: each
//! password's NT hash (MD4 of the password in UTF-16LE, RFC 2759 §8.3) and that hash's
//! MD4 (§8.4). The engine never sees a password, and these are made in the unprivileged
//! child (the parent parses iked.conf but does not use OpenSSL). MD4 lives in OpenSSL 3's
//! legacy provider, which `crate::ike::crypto::init` loads: without it no user can log
//! in, and [`hash_users`] says so.

#![forbid(unsafe_code)]

use openssl::hash::{hash, MessageDigest};
use openssl::nid::Nid;
use zeroize::Zeroize;

use crate::ikev2::conf::User;
use crate::ikev2::mschap::EapUser;

/// MD4 of `data`, or None when this OpenSSL has no MD4 (no legacy provider).
fn md4(data: &[u8]) -> Option<[u8; 16]> {
    let d = hash(MessageDigest::from_nid(Nid::MD4)?, data).ok()?;
    d.as_ref().try_into().ok()
}

/// NtPasswordHash and HashNtPasswordHash of `password` (UTF-8 as iked.conf has it;
/// bytes that are not UTF-8 count as Latin-1).
pub fn nt_hashes(password: &[u8]) -> Option<([u8; 16], [u8; 16])> {
    let mut wide: Vec<u8> = match std::str::from_utf8(password) {
        Ok(s) => s.encode_utf16().flat_map(u16::to_le_bytes).collect(),
        Err(_) => password.iter().flat_map(|&b| [b, 0]).collect(),
    };
    let h = md4(&wide);
    wide.zeroize();
    let h = h?;
    Some((h, md4(&h)?))
}

/// An EAP client's identity (for tests and other users of the engine's client side).
pub fn eap_user(name: &str, password: &[u8]) -> Option<EapUser> {
    // The legacy provider, loaded once per process (before the daemon's chroot).
    crate::ike::crypto::init();
    let (nt_hash, nt_hash_hash) = nt_hashes(password)?;
    Some(EapUser {
        name: name.to_owned(),
        nt_hash,
        nt_hash_hash,
    })
}

/// The engine's users for `users`, and a warning when MD4 is unavailable (then none).
pub fn hash_users(users: &[User]) -> (Vec<EapUser>, Option<String>) {
    if users.is_empty() {
        return (Vec::new(), None);
    }
    // MS-CHAPv2 encrypts with single DES, also a legacy algorithm in OpenSSL 3.
    let des = crate::ike::crypto::init()
        .iter()
        .any(|(c, ok)| *c == crate::ike::crypto::CipherAlg::Des && *ok);
    if !des {
        return (
            Vec::new(),
            Some(format!(
                "user: DES is unavailable in the linked OpenSSL (its legacy provider is not \
                 loaded): EAP-MSCHAPv2 cannot work, {} user(s) not loaded",
                users.len()
            )),
        );
    }
    let out: Option<Vec<EapUser>> = users
        .iter()
        .map(|u| eap_user(&u.name, u.password.as_bytes()))
        .collect();
    match out {
        Some(v) => (v, None),
        None => (
            Vec::new(),
            Some(format!(
                "user: MD4 is unavailable in the linked OpenSSL (its legacy provider is not \
                 loaded): EAP-MSCHAPv2 cannot work, {} user(s) not loaded",
                users.len()
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2759 §9.2: "clientPass".
    #[test]
    fn nt_hash_of_the_rfc_password() {
        crate::ike::crypto::init();
        let Some((h, hh)) = nt_hashes(b"clientPass") else {
            eprintln!("no MD4 here (no legacy provider): skipped");
            return;
        };
        assert_eq!(
            h,
            [
                0x44, 0xEB, 0xBA, 0x8D, 0x53, 0x12, 0xB8, 0xD6, 0x11, 0x47, 0x44, 0x11, 0xF5, 0x69,
                0x89, 0xAE
            ]
        );
        assert_eq!(
            hh,
            [
                0x41, 0xC0, 0x0C, 0x58, 0x4B, 0xD2, 0xD9, 0x1C, 0x40, 0x17, 0xA2, 0xA1, 0x2F, 0xA5,
                0x9F, 0x3F
            ]
        );
    }
}
