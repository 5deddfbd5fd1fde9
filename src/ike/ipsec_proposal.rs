//! The SA payload of Quick Mode (RFC 2407 §4.5, isakmpd ike_quick_mode.c and
//! ipsec.c): the initiator's offer (one proposal number per suite of the connection, one
//! proposal payload per protocol, with our SPI), and the matching of an offered or chosen
//! transform against ours. Only transforms the kernel backend can install are offered or
//! accepted.

use super::phase1::attr;
use super::policy::{P2Transform, Suite};
use super::wire::{
    self, AuthAlgorithm, EncapsulationMode, GroupDescription, IpsecAttr, LifeType, PayloadType,
    Proposal, ProtocolId, Transform, Writer,
};
use super::Backend;

fn write_transform(
    w: &mut Writer<'_>,
    num: u8,
    last: bool,
    t: &P2Transform,
) -> Result<(), wire::NoRoom> {
    let ts = w.pos();
    w.u8(if last { 0 } else { PayloadType::TRANSFORM.0 })?;
    w.u8(0)?;
    w.u16(0)?;
    w.u8(num)?;
    w.u8(t.id)?;
    w.u16(0)?;
    for l in &t.lives {
        attr(w, IpsecAttr::SA_LIFE_TYPE.0, l.ty.0.into())?;
        attr(w, IpsecAttr::SA_LIFE_DURATION.0, l.duration.offer)?;
    }
    if let Some(g) = t.group {
        attr(w, IpsecAttr::GROUP_DESCRIPTION.0, g.0.into())?;
    }
    attr(w, IpsecAttr::ENCAPSULATION_MODE.0, t.encapsulation.0.into())?;
    if let Some(a) = t.auth {
        attr(w, IpsecAttr::AUTHENTICATION_ALGORITHM.0, a.0.into())?;
    }
    if let Some(k) = t.key_length {
        attr(w, IpsecAttr::KEY_LENGTH.0, k.offer)?;
    }
    let len = (w.pos() - ts) as u16;
    w.patch_u16(ts + 2, len)
}

/// What an offered IPsec transform asks for, if one of ours accepts it.
pub(crate) struct Matched {
    pub(crate) auth: Option<AuthAlgorithm>,
    pub(crate) encapsulation: EncapsulationMode,
    pub(crate) key_bits: Option<u16>,
    pub(crate) group: Option<GroupDescription>,
    pub(crate) lifetime: u64,
    /// The lifetime the initiator asked for, when we shortened it.
    pub(crate) shortened_from: Option<u64>,
    /// LIFE_TYPE KILOBYTES: the traffic limit (0: none).
    pub(crate) kbytes: u64,
}

fn match_p2(ours: &P2Transform, t: &Transform<'_>) -> Option<Matched> {
    if t.id != ours.id {
        return None;
    }
    let mut m = Matched {
        auth: None,
        encapsulation: EncapsulationMode::TUNNEL,
        key_bits: None,
        group: None,
        lifetime: 0,
        shortened_from: None,
        kbytes: 0,
    };
    let mut life_type = None;
    for a in t.attributes.iter() {
        let v = a.as_u64()?;
        match IpsecAttr(a.ty) {
            IpsecAttr::SA_LIFE_TYPE => life_type = Some(v),
            IpsecAttr::SA_LIFE_DURATION => {
                if life_type == Some(u64::from(LifeType::SECONDS.0)) {
                    m.lifetime = v;
                } else if life_type == Some(u64::from(LifeType::KILOBYTES.0)) {
                    m.kbytes = v;
                }
            }
            IpsecAttr::GROUP_DESCRIPTION => m.group = Some(GroupDescription(v as u16)),
            IpsecAttr::ENCAPSULATION_MODE => m.encapsulation = EncapsulationMode(v as u16),
            IpsecAttr::AUTHENTICATION_ALGORITHM => m.auth = Some(AuthAlgorithm(v as u16)),
            IpsecAttr::KEY_LENGTH => m.key_bits = Some(v as u16),
            IpsecAttr::EXTENDED_SEQUENCE_NUMBER if v == 0 => {}
            _ => return None, // ECN, key rounds, compression: isakmpd refuses them
        }
    }
    if m.encapsulation != ours.encapsulation || m.auth != ours.auth || m.group != ours.group {
        return None;
    }
    match (ours.key_length, m.key_bits) {
        (Some(r), Some(k)) if !r.accepts(k.into()) => return None,
        (Some(r), None) => m.key_bits = Some(r.offer as u16),
        (None, Some(_)) => return None,
        _ => {}
    }
    if let (Some(l), true) = (
        ours.lives.iter().find(|l| l.ty == LifeType::SECONDS),
        m.lifetime > 0,
    ) {
        if m.lifetime > l.duration.max {
            m.shortened_from = Some(m.lifetime);
            m.lifetime = l.duration.max;
        }
    }
    // A traffic limit above ours is held to ours (both sides count their own bytes).
    if let (Some(l), true) = (
        ours.lives.iter().find(|l| l.ty == LifeType::KILOBYTES),
        m.kbytes > 0,
    ) {
        m.kbytes = m.kbytes.min(l.duration.max);
    }
    Some(m)
}

/// The SA body of a Quick Mode offer: one proposal number per suite.
pub(crate) fn write_offer(
    w: &mut Writer<'_>,
    suites: &[Suite],
    spis: &[(u8, ProtocolId, [u8; 4])],
) -> Result<(), wire::NoRoom> {
    w.u32(wire::Doi::IPSEC.0)?;
    w.u32(wire::SIT_IDENTITY_ONLY)?;
    let total: usize = suites.iter().map(|s| s.protocols.len()).sum();
    let mut k = 0;
    for (i, s) in suites.iter().enumerate() {
        for p in &s.protocols {
            k += 1;
            let spi = spis
                .iter()
                .find(|(n, pr, _)| *n == i as u8 + 1 && *pr == p.protocol)
                .map_or([0; 4], |s| s.2);
            let ps = w.pos();
            w.u8(if k < total {
                PayloadType::PROPOSAL.0
            } else {
                0
            })?;
            w.u8(0)?;
            w.u16(0)?;
            w.u8(i as u8 + 1)?;
            w.u8(p.protocol.0)?;
            w.u8(4)?;
            w.u8(u8::try_from(p.transforms.len()).map_err(|_| wire::NoRoom)?)?;
            w.bytes(&spi)?;
            for (j, t) in p.transforms.iter().enumerate() {
                write_transform(w, j as u8 + 1, j + 1 == p.transforms.len(), t)?;
            }
            let len = (w.pos() - ps) as u16;
            w.patch_u16(ps + 2, len)?;
        }
    }
    Ok(())
}

/// The suites with only the transforms `backend` can install; suites left with an empty
/// protocol are dropped. Proposal numbers are positions in this list, on both ends.
pub(crate) fn installable_suites(suites: &[Suite], backend: Backend) -> Vec<Suite> {
    let mut v: Vec<Suite> = suites.to_vec();
    for s in v.iter_mut() {
        for p in s.protocols.iter_mut() {
            let proto = p.protocol;
            p.transforms
                .retain(|t| backend.installable(proto, t.id, t.auth));
        }
    }
    v.retain(|s| s.protocols.iter().all(|p| !p.transforms.is_empty()));
    v
}

/// Does `suite` accept this group of proposal payloads (same protocols in order, one
/// acceptable transform each)?
pub(crate) fn accept_suite<'a>(
    suite: &Suite,
    group: &[Proposal<'a>],
    backend: Backend,
) -> Option<Vec<(Proposal<'a>, Transform<'a>, Matched)>> {
    if suite.protocols.len() != group.len() {
        return None;
    }
    let mut out = Vec::new();
    for (ours, p) in suite.protocols.iter().zip(group) {
        if ours.protocol != p.protocol {
            return None;
        }
        let found = p.transforms().find_map(|t| {
            ours.transforms
                .iter()
                .find_map(|o| match_p2(o, &t))
                .filter(|m| backend.installable(p.protocol, t.id, m.auth))
                .map(|m| (t, m))
        })?;
        out.push((*p, found.0, found.1));
    }
    Some(out)
}
