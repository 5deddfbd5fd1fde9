#![forbid(unsafe_code)]

//! The COOKIE challenge of RFC 7296 §2.6: a responder with too many half-open IKE SAs
//! answers IKE_SA_INIT with a cookie bound to Ni, the initiator's address and SPI under a
//! rotating secret, and keeps no state until the initiator repeats its request with it.

use super::*;

/// The COOKIE secrets (§2.6): the current one and, for cookies handed out just before a
/// change, the one before it. The secret changes every `Config::cookie_secret_secs`; the
/// clock is looked at whenever a cookie is made or checked rather than on a timer of its
/// own, which would keep the engine from ever going idle.
pub(super) struct CookieSecrets {
    pub(super) current: [u8; 32],
    pub(super) previous: Option<[u8; 32]>,
    pub(super) version: u8,
    pub(super) change_at: Time,
}

impl CookieSecrets {
    pub(super) fn new(rng: &mut dyn Random, now: Time, secs: u64) -> CookieSecrets {
        let mut current = [0u8; 32];
        rng.fill(&mut current);
        CookieSecrets {
            current,
            previous: None,
            version: 0,
            change_at: now.add_secs(secs),
        }
    }

    /// A new secret when the current one's time is up; after two periods without one,
    /// the old one is not kept either.
    pub(super) fn rotate(&mut self, rng: &mut dyn Random, now: Time, secs: u64) {
        if now < self.change_at {
            return;
        }
        self.previous = (now < self.change_at.add_secs(secs)).then_some(self.current);
        rng.fill(&mut self.current);
        self.version = self.version.wrapping_add(1);
        self.change_at = now.add_secs(secs);
    }

    pub(super) fn make(
        secret: &[u8; 32],
        version: u8,
        ni: &[u8],
        ip: IpAddr,
        spi_i: &[u8; 8],
    ) -> [u8; COOKIE_LEN] {
        let ip = match ip {
            IpAddr::V4(v) => v.octets().to_vec(),
            IpAddr::V6(v) => v.octets().to_vec(),
        };
        let mac = prf(HashAlg::Sha256, secret, &[ni, &ip, spi_i]);
        let mut c = [0u8; COOKIE_LEN];
        c[0] = version;
        c[1..].copy_from_slice(&mac.as_bytes()[..COOKIE_HASH_LEN]);
        c
    }

    pub(super) fn cookie(&self, ni: &[u8], ip: IpAddr, spi_i: &[u8; 8]) -> [u8; COOKIE_LEN] {
        CookieSecrets::make(&self.current, self.version, ni, ip, spi_i)
    }

    /// Whether `c` is a cookie we made, with the current secret or the one before, for
    /// this Ni, address and SPIi.
    pub(super) fn valid(&self, c: &[u8], ni: &[u8], ip: IpAddr, spi_i: &[u8; 8]) -> bool {
        let secret = match c.first() {
            Some(&v) if v == self.version => &self.current,
            Some(&v) if v == self.version.wrapping_sub(1) => match &self.previous {
                Some(p) => p,
                None => return false,
            },
            _ => return false,
        };
        let want = CookieSecrets::make(secret, c[0], ni, ip, spi_i);
        constant_time_eq(c, &want)
    }
}
