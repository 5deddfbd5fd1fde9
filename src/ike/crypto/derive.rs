//! The key derivations of RFC 2409: SKEYID and its children (§5), the encryption key
//! expansion (Appendix B), HASH_I/HASH_R (§5), the phase 1 and phase 2 IVs (Appendix B),
//! the Quick Mode and Informational hashes (§5.5, §5.7) and KEYMAT (§5.5).
//!
//! Each function is the formula of the RFC over [`prf`] and [`hash`], with the RFC's
//! notation in its doc comment. "_b" means the body of a payload without its generic
//! header.

use super::{hash, prf, HashAlg, Key, Keymat};

/// SKEYID for pre-shared keys: prf(pre-shared-key, Ni_b | Nr_b).
pub fn skeyid_psk(h: HashAlg, psk: &[u8], ni_b: &[u8], nr_b: &[u8]) -> Key {
    prf(h, psk, &[ni_b, nr_b])
}

/// SKEYID for signatures: prf(Ni_b | Nr_b, g^xy).
pub fn skeyid_sig(h: HashAlg, ni_b: &[u8], nr_b: &[u8], gxy: &[u8]) -> Key {
    // Nonces are up to 256 bytes each: the key is their concatenation, whatever its length.
    prf(h, &[ni_b, nr_b].concat(), &[gxy])
}

/// SKEYID_d, SKEYID_a, SKEYID_e.
pub struct Phase1Keys {
    pub d: Key,
    pub a: Key,
    pub e: Key,
}

/// SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0)
/// SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1)
/// SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2)
pub fn phase1_keys(
    h: HashAlg,
    skeyid: &[u8],
    gxy: &[u8],
    cky_i: &[u8; 8],
    cky_r: &[u8; 8],
) -> Phase1Keys {
    let d = prf(h, skeyid, &[gxy, cky_i, cky_r, &[0]]);
    let a = prf(h, skeyid, &[d.as_bytes(), gxy, cky_i, cky_r, &[1]]);
    let e = prf(h, skeyid, &[a.as_bytes(), gxy, cky_i, cky_r, &[2]]);
    Phase1Keys { d, a, e }
}

/// The cipher key from SKEYID_e (Appendix B): its first `len` bytes, and when SKEYID_e is
/// too short, Ka = K1 | K2 | ... with K1 = prf(SKEYID_e, 0), Kn = prf(SKEYID_e, Kn-1).
pub fn encryption_key(h: HashAlg, skeyid_e: &[u8], len: usize) -> Key {
    if skeyid_e.len() >= len {
        let mut k = Key::from_slice(skeyid_e).unwrap_or_default();
        k.truncate(len);
        return k;
    }
    let mut out = Key::new();
    let mut k = prf(h, skeyid_e, &[&[0]]);
    while out.len() < len {
        let take = (len - out.len()).min(k.len());
        if !out.extend(&k.as_bytes()[..take]) {
            break; // longer than any cipher's key: never a loop without end
        }
        k = prf(h, skeyid_e, &[k.as_bytes()]);
    }
    out.truncate(len);
    out
}

/// HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b)
pub fn hash_i(
    h: HashAlg,
    skeyid: &[u8],
    gxi: &[u8],
    gxr: &[u8],
    cky_i: &[u8; 8],
    cky_r: &[u8; 8],
    sai_b: &[u8],
    idii_b: &[u8],
) -> Key {
    prf(h, skeyid, &[gxi, gxr, cky_i, cky_r, sai_b, idii_b])
}

/// HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b)
pub fn hash_r(
    h: HashAlg,
    skeyid: &[u8],
    gxi: &[u8],
    gxr: &[u8],
    cky_i: &[u8; 8],
    cky_r: &[u8; 8],
    sai_b: &[u8],
    idir_b: &[u8],
) -> Key {
    prf(h, skeyid, &[gxr, gxi, cky_r, cky_i, sai_b, idir_b])
}

/// The phase 1 IV: hash(g^xi | g^xr), truncated to the cipher's block size.
pub fn phase1_iv(h: HashAlg, gxi: &[u8], gxr: &[u8], block: usize) -> Key {
    let mut iv = hash(h, &[gxi, gxr]);
    iv.truncate(block);
    iv
}

/// The IV of a phase 2 or informational exchange: hash(last phase 1 CBC block | M-ID),
/// truncated to the block size.
pub fn phase2_iv(h: HashAlg, last_block: &[u8], msgid: u32, block: usize) -> Key {
    let mut iv = hash(h, &[last_block, &msgid.to_be_bytes()]);
    iv.truncate(block);
    iv
}

/// Quick Mode HASH(1) = prf(SKEYID_a, M-ID | SA | Ni [ | KE ] [ | IDci | IDcr ]), where
/// `rest` is the message from the payload after HASH to its end (generic headers included).
pub fn qm_hash1(h: HashAlg, skeyid_a: &[u8], msgid: u32, rest: &[u8]) -> Key {
    prf(h, skeyid_a, &[&msgid.to_be_bytes(), rest])
}

/// Quick Mode HASH(2) = prf(SKEYID_a, M-ID | Ni_b | SA | Nr [ | KE ] [ | IDci | IDcr ]).
pub fn qm_hash2(h: HashAlg, skeyid_a: &[u8], msgid: u32, ni_b: &[u8], rest: &[u8]) -> Key {
    prf(h, skeyid_a, &[&msgid.to_be_bytes(), ni_b, rest])
}

/// Quick Mode HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b).
pub fn qm_hash3(h: HashAlg, skeyid_a: &[u8], msgid: u32, ni_b: &[u8], nr_b: &[u8]) -> Key {
    prf(h, skeyid_a, &[&[0], &msgid.to_be_bytes(), ni_b, nr_b])
}

/// Informational HASH(1) = prf(SKEYID_a, M-ID | N/D), `rest` as for [`qm_hash1`].
pub fn info_hash(h: HashAlg, skeyid_a: &[u8], msgid: u32, rest: &[u8]) -> Key {
    prf(h, skeyid_a, &[&msgid.to_be_bytes(), rest])
}

/// KEYMAT for one SA (§5.5), expanded to `len` bytes:
/// K1 = prf(SKEYID_d, [ g(qm)^xy | ] protocol | SPI | Ni_b | Nr_b),
/// Kn = prf(SKEYID_d, Kn-1 | [ g(qm)^xy | ] protocol | SPI | Ni_b | Nr_b).
/// Returns `None` if `len` exceeds the buffer.
pub fn keymat(
    h: HashAlg,
    skeyid_d: &[u8],
    pfs_gxy: Option<&[u8]>,
    protocol: u8,
    spi: &[u8],
    ni_b: &[u8],
    nr_b: &[u8],
    len: usize,
) -> Option<Keymat> {
    if len > Keymat::CAPACITY {
        return None;
    }
    let g = pfs_gxy.unwrap_or(&[]);
    let mut out = Keymat::new();
    let mut k = prf(h, skeyid_d, &[g, &[protocol], spi, ni_b, nr_b]);
    while out.len() < len {
        let take = (len - out.len()).min(k.len());
        if !out.extend(&k.as_bytes()[..take]) {
            break;
        }
        k = prf(
            h,
            skeyid_d,
            &[k.as_bytes(), g, &[protocol], spi, ni_b, nr_b],
        );
    }
    out.truncate(len);
    Some(out)
}
