//! MS-CHAPv2 (RFC 2759) as EAP-MSCHAPv2 uses it, and its MSK (RFC 3079 §3.4, as iked's
//! `mschap_msk` and strongSwan derive it): everything from a user's NT password hash
//! (MD4 of the UTF-16LE password) and its hash, which the daemon makes (MD4 lives in
//! OpenSSL's legacy provider and the engine only reaches OpenSSL through
//! `crate::ike::crypto`). SHA-1 and single DES (one block, so CBC with a zero IV is
//! ECB) come from there too; DES is in the legacy provider as well, and without it the
//! computations fail ([`MschapError`]) rather than answer wrongly.

#![forbid(unsafe_code)]

use std::fmt;

use zeroize::Zeroize;

use crate::ike::crypto::{cbc_encrypt, hash, CipherAlg, HashAlg, Secret};

/// The MSK: MasterReceiveKey | MasterSendKey (the server's) | 32 zero bytes.
pub type Msk = Secret<64>;

/// DES was not available (OpenSSL without its legacy provider).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MschapError;

impl fmt::Display for MschapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DES is unavailable (OpenSSL's legacy provider is not loaded)")
    }
}

/// One entry of the EAP user database (iked.conf `user`), or the identity an EAP client
/// shows: the name and the password's NT hash and its hash; the hashes are wiped when
/// dropped and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct EapUser {
    pub name: String,
    /// NtPasswordHash (RFC 2759 §8.3).
    pub nt_hash: [u8; 16],
    /// HashNtPasswordHash (§8.4): MD4 of the above.
    pub nt_hash_hash: [u8; 16],
}

impl Drop for EapUser {
    fn drop(&mut self) {
        self.nt_hash.zeroize();
        self.nt_hash_hash.zeroize();
    }
}

impl fmt::Debug for EapUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EapUser({:?}, ..)", self.name)
    }
}

/// The user name MS-CHAPv2 hashes: without a leading `DOMAIN\` (RFC 2759 §4).
pub fn bare_user(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&b| b == b'\\') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

/// ChallengeHash (§8.2): the first 8 bytes of SHA1(PeerChallenge | AuthenticatorChallenge
/// | UserName).
fn challenge_hash(peer: &[u8; 16], auth: &[u8; 16], user: &[u8]) -> [u8; 8] {
    let d = hash(HashAlg::Sha1, &[peer, auth, bare_user(user)]);
    let mut c = [0u8; 8];
    c.copy_from_slice(&d.as_bytes()[..8]);
    c
}

/// DesEncrypt (§8.6): the 7-byte key spread over 8 bytes (parity bits left 0, which DES
/// ignores), one block.
fn des(key7: &[u8], block: &[u8; 8]) -> Result<[u8; 8], MschapError> {
    let k = key7;
    let mut key = [
        k[0],
        (k[0] << 7) | (k[1] >> 1),
        (k[1] << 6) | (k[2] >> 2),
        (k[2] << 5) | (k[3] >> 3),
        (k[3] << 4) | (k[4] >> 4),
        (k[4] << 3) | (k[5] >> 5),
        (k[5] << 2) | (k[6] >> 6),
        k[6] << 1,
    ];
    let mut out = *block;
    let r = cbc_encrypt(CipherAlg::Des, &key, &[0u8; 8], &mut out);
    key.zeroize();
    r.map(|_| out).map_err(|_| MschapError)
}

/// GenerateNTResponse (§8.1): ChallengeResponse (§8.5) of the ChallengeHash under the NT
/// hash, zero-padded to 21 bytes and cut in three DES keys.
pub fn nt_response(
    auth: &[u8; 16],
    peer: &[u8; 16],
    user: &[u8],
    nt_hash: &[u8; 16],
) -> Result<[u8; 24], MschapError> {
    let c = challenge_hash(peer, auth, user);
    let mut z = [0u8; 21];
    z[..16].copy_from_slice(nt_hash);
    let mut r = [0u8; 24];
    let res = (|| {
        for i in 0..3 {
            r[8 * i..8 * i + 8].copy_from_slice(&des(&z[7 * i..7 * i + 7], &c)?);
        }
        Ok(r)
    })();
    z.zeroize();
    res
}

/// GenerateAuthenticatorResponse (§8.7): "S=" and 40 upper-case hex digits.
pub fn authenticator_response(
    nt_hash_hash: &[u8; 16],
    nt_response: &[u8; 24],
    peer: &[u8; 16],
    auth: &[u8; 16],
    user: &[u8],
) -> [u8; 42] {
    const MAGIC1: &[u8] = b"Magic server to client signing constant";
    const MAGIC2: &[u8] = b"Pad to make it do more than one iteration";
    let d = hash(HashAlg::Sha1, &[nt_hash_hash, nt_response, MAGIC1]);
    let c = challenge_hash(peer, auth, user);
    let d = hash(HashAlg::Sha1, &[d.as_bytes(), &c, MAGIC2]);
    let mut s = [0u8; 42];
    s[0] = b'S';
    s[1] = b'=';
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for (i, b) in d.as_bytes()[..20].iter().enumerate() {
        s[2 + 2 * i] = HEX[usize::from(b >> 4)];
        s[3 + 2 * i] = HEX[usize::from(b & 15)];
    }
    s
}

/// The MSK of EAP-MSCHAPv2: GetMasterKey (RFC 3079 §3.4), then the server's receive and
/// send start keys (its Magic2 and Magic3), then 32 zero bytes; both sides make the same.
pub fn msk(nt_hash_hash: &[u8; 16], nt_response: &[u8; 24]) -> Msk {
    const MAGIC1: &[u8] = b"This is the MPPE Master Key";
    const MAGIC2: &[u8] =
        b"On the client side, this is the send key; on the server side, it is the receive key.";
    const MAGIC3: &[u8] =
        b"On the client side, this is the receive key; on the server side, it is the send key.";
    const PAD1: [u8; 40] = [0; 40];
    const PAD2: [u8; 40] = [0xf2; 40];
    let master = hash(HashAlg::Sha1, &[nt_hash_hash, nt_response, MAGIC1]);
    let master = &master.as_bytes()[..16];
    let mut m = Msk::new();
    for magic in [MAGIC2, MAGIC3] {
        let k = hash(HashAlg::Sha1, &[master, &PAD1, magic, &PAD2]);
        m.extend(&k.as_bytes()[..16]);
    }
    m.extend(&[0u8; 32]);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn arr<const N: usize>(s: &str) -> [u8; N] {
        unhex(s).try_into().unwrap()
    }

    /// RFC 2759 §9.2 (and RFC 3079 §3.5.3 for the master key).
    #[test]
    fn rfc2759_vectors() {
        crate::ike::crypto::init();
        let auth = arr::<16>("5B 5D 7C 7D 7B 3F 2F 3E 3C 2C 60 21 32 26 26 28");
        let peer = arr::<16>("21 40 23 24 25 5E 26 2A 28 29 5F 2B 3A 33 7C 7E");
        let user = b"User";
        let h = arr::<16>("44 EB BA 8D 53 12 B8 D6 11 47 44 11 F5 69 89 AE");
        let hh = arr::<16>("41 C0 0C 58 4B D2 D9 1C 40 17 A2 A1 2F A5 9F 3F");
        assert_eq!(
            challenge_hash(&peer, &auth, user),
            arr::<8>("D0 2E 43 86 BC E9 12 26")
        );
        let Ok(r) = nt_response(&auth, &peer, user, &h) else {
            eprintln!("DES unavailable here (no legacy provider): skipped");
            return;
        };
        assert_eq!(
            r,
            arr::<24>("82 30 9E CD 8D 70 8B 5E A0 8F AA 39 81 CD 83 54 42 33 11 4A 3D 85 D6 DF")
        );
        assert_eq!(
            &authenticator_response(&hh, &r, &peer, &auth, user),
            b"S=407A5589115FD0D6209F510FE9C04566932CDA56"
        );
        // A domain in front of the name is not hashed.
        assert_eq!(nt_response(&auth, &peer, b"DOM\\User", &h), Ok(r));
        // RFC 3079 §3.5.3 GetMasterKey for these: FDECE3717A8C838CB388E527AE3CDD31; the
        // MSK's two halves are the server's receive and send start keys.
        let m = msk(&hh, &r);
        assert_eq!(m.len(), 64);
        let master = hash(
            HashAlg::Sha1,
            &[&hh, &r, b"This is the MPPE Master Key".as_slice()],
        );
        assert_eq!(
            &master.as_bytes()[..16],
            &unhex("FD EC E3 71 7A 8C 83 8C B3 88 E5 27 AE 3C DD 31")[..]
        );
        assert_eq!(&m.as_bytes()[32..], &[0u8; 32]);
        assert_ne!(&m.as_bytes()[..16], &m.as_bytes()[16..32]);
    }
}
