//! The payloads each message of each exchange must carry and may carry, declared once
//! (isakmpd's `script_*` arrays in ike_main_mode.c, ike_aggressive.c, ike_quick_mode.c
//! and isakmp_cfg.c are the model), and checked before the step that handles the
//! message runs: a missing payload drops the message with PAYLOAD-MALFORMED; a payload
//! the message may not carry is ignored, as isakmpd ignores what its script does not
//! name (VENDOR and NOTIFY are allowed everywhere: peers attach them freely).

use super::exchange::Kind;
use super::wire::{Message, NotifyType, PayloadType};
use super::Drop;
use crate::log::DebugClass;

/// A set of payload types (RFC 2408 §3.1 numbers 1-21; the draft NAT-T numbers count as
/// their RFC 3947 ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadSet(u32);

impl PayloadSet {
    pub const EMPTY: PayloadSet = PayloadSet(0);

    pub const fn of(types: &[PayloadType]) -> PayloadSet {
        let mut bits = 0u32;
        let mut i = 0;
        while i < types.len() {
            bits |= 1 << Self::bit(types[i]);
            i += 1;
        }
        PayloadSet(bits)
    }

    const fn bit(t: PayloadType) -> u32 {
        match t.0 {
            0x82 => 0x14,
            0x83 => 0x15,
            n if n < 32 => n as u32,
            _ => 31,
        }
    }

    pub const fn union(self, other: PayloadSet) -> PayloadSet {
        PayloadSet(self.0 | other.0)
    }

    pub fn contains(self, t: PayloadType) -> bool {
        self.0 & (1 << Self::bit(t)) != 0
    }

    /// The first member of `self` that `m` does not carry.
    fn first_missing(self, m: &Message<'_>) -> Option<PayloadType> {
        (1..32u8)
            .map(PayloadType)
            .filter(|&t| self.contains(t))
            .find(|&t| {
                m.find(t).is_none() && !(t == NAT_D && m.find(PayloadType::NAT_D_DRAFT).is_some())
            })
    }
}

use PayloadType as P;

const NAT_D: PayloadType = P::NAT_D;
/// Attached by peers to any message.
const ANYWHERE: PayloadSet = PayloadSet::of(&[P::VENDOR, P::NOTIFY]);

/// One message of an exchange.
#[derive(Debug, Clone, Copy)]
pub struct Script {
    pub required: PayloadSet,
    pub allowed: PayloadSet,
}

const fn script(required: &[PayloadType], also: &[PayloadType]) -> Script {
    let required = PayloadSet::of(required);
    Script {
        required,
        allowed: required.union(PayloadSet::of(also)).union(ANYWHERE),
    }
}

/// How phase 1 authenticates, as far as the payloads of its last messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Pre-shared keys: HASH_I / HASH_R.
    Hash,
    /// Signatures: SIG, with certificates or without.
    Sig,
}

/// Main Mode (RFC 2409 §5): messages 1-6; 5 and 6 by authentication method.
const MAIN: [Script; 4] = [
    script(&[P::SA], &[]),
    script(&[P::SA], &[]),
    script(&[P::KE, P::NONCE], &[P::NAT_D, P::CERT_REQ]),
    script(&[P::KE, P::NONCE], &[P::NAT_D, P::CERT_REQ]),
];
const MAIN_AUTH_HASH: Script = script(&[P::ID, P::HASH], &[P::CERT_REQ]);
const MAIN_AUTH_SIG: Script = script(&[P::ID, P::SIG], &[P::CERT, P::CERT_REQ]);
/// Aggressive Mode (RFC 2409 §5): messages 1-3; 2 and 3 by authentication method.
const AGGRESSIVE: [Script; 3] = [
    script(&[P::SA, P::KE, P::NONCE, P::ID], &[P::CERT_REQ]),
    script(
        &[P::SA, P::KE, P::NONCE, P::ID, P::HASH],
        &[P::NAT_D, P::CERT_REQ],
    ),
    script(&[P::HASH], &[P::NAT_D]),
];
/// Aggressive Mode with signatures (§5.1): messages 2 and 3.
const AGGRESSIVE_SIG: [Script; 2] = [
    script(
        &[P::SA, P::KE, P::NONCE, P::ID, P::SIG],
        &[P::NAT_D, P::CERT_REQ, P::CERT],
    ),
    script(&[P::SIG], &[P::NAT_D, P::CERT]),
];
/// Quick Mode (RFC 2409 §5.5): messages 1-3; KE with PFS, client IDs in pairs, NAT-OA
/// through a NAT (RFC 3947 §5.2).
const QUICK: [Script; 3] = [
    script(&[P::HASH, P::SA, P::NONCE], &[P::KE, P::ID, P::NAT_OA]),
    script(&[P::HASH, P::SA, P::NONCE], &[P::KE, P::ID, P::NAT_OA]),
    script(&[P::HASH], &[]),
];
/// Mode-config (draft-ietf-ipsec-isakmp-mode-cfg): HASH(1), ATTRIBUTE both ways.
const TRANSACTION: Script = script(&[P::HASH, P::ATTRIBUTE], &[]);

/// The script of message `n` (1-based, as RFC 2409 numbers them) of an exchange of
/// `kind`; `auth` matters for Main Mode's messages 5 and 6 and Aggressive Mode's 2 and 3.
pub fn of(kind: Kind, n: u8, auth: Auth) -> Option<Script> {
    let i = usize::from(n).checked_sub(1)?;
    match kind {
        Kind::Main if (5..=6).contains(&n) => Some(match auth {
            Auth::Hash => MAIN_AUTH_HASH,
            Auth::Sig => MAIN_AUTH_SIG,
        }),
        Kind::Main => MAIN.get(i).copied(),
        Kind::Aggressive if auth == Auth::Sig && (2..=3).contains(&n) => {
            AGGRESSIVE_SIG.get(i - 1).copied()
        }
        Kind::Aggressive => AGGRESSIVE.get(i).copied(),
        Kind::Quick => QUICK.get(i).copied(),
        Kind::Transaction => (n <= 2).then_some(TRANSACTION),
    }
}

/// Checks `m`, message `n` of an exchange of `kind`, against its script.
pub(crate) fn check(kind: Kind, n: u8, m: &Message<'_>) -> Result<(), Drop> {
    check_auth(kind, n, Auth::Hash, m)
}

/// [`check`] for Main Mode's messages 5 and 6, whose payloads follow the method.
pub(crate) fn check_auth(kind: Kind, n: u8, auth: Auth, m: &Message<'_>) -> Result<(), Drop> {
    let Some(s) = of(kind, n, auth) else {
        return Ok(());
    };
    if let Some(t) = s.required.first_missing(m) {
        crate::ike_debug!(
            DebugClass::Message,
            10,
            "{kind:?} message {n}: no {t} payload"
        );
        return Err(Drop::Notify(
            NotifyType::PAYLOAD_MALFORMED,
            "a payload the message requires is missing",
        ));
    }
    for p in &m.payloads {
        if !s.allowed.contains(p.ty) {
            crate::ike_debug!(
                DebugClass::Message,
                20,
                "{kind:?} message {n}: unexpected {} payload ignored",
                p.ty
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_and_scripts() {
        let s = PayloadSet::of(&[P::SA, P::NAT_D]);
        assert!(s.contains(P::SA) && s.contains(P::NAT_D) && s.contains(P::NAT_D_DRAFT));
        assert!(!s.contains(P::KE));
        let mm3 = of(Kind::Main, 3, Auth::Hash).unwrap();
        assert!(mm3.required.contains(P::KE) && mm3.required.contains(P::NONCE));
        assert!(mm3.allowed.contains(P::VENDOR) && !mm3.allowed.contains(P::SA));
        assert!(of(Kind::Main, 5, Auth::Sig)
            .unwrap()
            .required
            .contains(P::SIG));
        assert!(of(Kind::Main, 6, Auth::Hash)
            .unwrap()
            .required
            .contains(P::HASH));
        assert!(of(Kind::Main, 7, Auth::Hash).is_none());
        assert!(of(Kind::Quick, 0, Auth::Hash).is_none());
        assert!(of(Kind::Aggressive, 2, Auth::Hash)
            .unwrap()
            .required
            .contains(P::ID));
        let am2 = of(Kind::Aggressive, 2, Auth::Sig).unwrap();
        assert!(am2.required.contains(P::SIG) && !am2.required.contains(P::HASH));
        assert!(am2.allowed.contains(P::CERT) && am2.allowed.contains(P::CERT_REQ));
        let am3 = of(Kind::Aggressive, 3, Auth::Sig).unwrap();
        assert!(am3.required.contains(P::SIG) && am3.allowed.contains(P::CERT));
        assert!(of(Kind::Aggressive, 1, Auth::Sig)
            .unwrap()
            .required
            .contains(P::ID));
    }

    fn message(buf: &mut [u8], types: &[PayloadType]) -> usize {
        use crate::ike::wire::{ExchangeType, Header, MessageBuilder};
        let h = Header {
            icookie: [1; 8],
            rcookie: [2; 8],
            major: 1,
            exchange: ExchangeType::ID_PROT,
            ..Header::default()
        };
        let mut b = MessageBuilder::new(buf, &h).unwrap();
        for &t in types {
            b.payload(t, |w| w.bytes(&[0xab; 8])).unwrap();
        }
        b.finish().unwrap()
    }

    #[test]
    fn a_missing_payload_drops_the_message_an_unexpected_one_is_ignored() {
        let (mut b1, mut b2, mut b3) = ([0u8; 256], [0u8; 256], [0u8; 256]);
        let n = message(&mut b1, &[P::KE, P::VENDOR]);
        let m = Message::parse(&b1[..n], false).unwrap();
        assert!(matches!(
            check(Kind::Main, 3, &m),
            Err(Drop::Notify(NotifyType::PAYLOAD_MALFORMED, _))
        ));
        let n = message(&mut b2, &[P::KE, P::NONCE, P::NAT_D, P::SIG]);
        let m = Message::parse(&b2[..n], false).unwrap();
        assert!(
            check(Kind::Main, 3, &m).is_ok(),
            "SIG is not in the script: ignored"
        );
        let n = message(&mut b3, &[P::ID, P::HASH]);
        let m = Message::parse(&b3[..n], false).unwrap();
        assert!(check_auth(Kind::Main, 5, Auth::Hash, &m).is_ok());
        assert!(
            check_auth(Kind::Main, 5, Auth::Sig, &m).is_err(),
            "SIG required"
        );
    }
}
