//! Mode-config: the TRANSACTION exchange after phase 1 (draft-ietf-ipsec-isakmp-mode-cfg,
//! isakmpd isakmp_cfg.c), as client and as server.
//!
//! A phase 1 initiator whose peer section has `Flags=ikecfg` starts one after phase 1,
//! before its connections: SET (it is the server and pushes the values of the section
//! named after the peer's ID, `[ipv4/192.0.2.2]`, waiting for ACK) or, with `Mode` set to
//! anything else, REQUEST (it is the client and asks for `Attributes`). A phase 1
//! responder with the flag only pushes (charon's "push" mode waits for the server's SET).
//! Whatever the answer, or none, the connections start afterwards; an address the peer
//! gave us is the Local-ID of connections that configure none. As responder we answer a
//! REQUEST from the section named after the peer's ID, and ACK a SET.
//!
//! Both messages are `HDR*, HASH, ATTR` with HASH = prf(SKEYID_a, M-ID | ATTR), under a
//! fresh message ID whose IV derives from phase 1's last block, the answer's IV following
//! on from the first message.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::crypto::derive;
use super::crypto::openssl::dn_oneline;
use super::exchange::{CfgStep, Exchange, Kind, State};
use super::policy::CfgSection;
use super::sa::Handle;
use super::wire::{
    CfgAttr, CfgType, ExchangeType, Header, IdPayload, Identity, NotifyType, Payload, PayloadType,
};
use super::{Drop, Engine};
use crate::timer::Time;

/// isakmpd's INTERNAL_ADDRESS_EXPIRY when the section names no `Lifetime`.
const DEFAULT_ADDRESS_LIFETIME: u32 = 1200;
/// At most this many attributes of a message are looked at (each type once).
const MAX_ATTRIBUTES: usize = 32;

/// isakmpd's name for a phase 1 ID (`ipsec_id_string`): `ipv4/192.0.2.1`, `ipv6/...`,
/// `fqdn/...`, `ufqdn/...`, `asn1_dn//C=.../CN=...`. `body` is the ID payload body.
pub fn id_string(body: &[u8]) -> Option<String> {
    let p = IdPayload::parse(body).ok()?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Some(match p.identity().ok()? {
        Identity::Ipv4(a) => format!("ipv4/{a}"),
        Identity::Ipv6(a) => format!("ipv6/{a}"),
        Identity::Fqdn(n) => format!("fqdn/{}", text(n)),
        Identity::UserFqdn(n) => format!("ufqdn/{}", text(n)),
        Identity::DerAsn1Dn(d) => format!("asn1_dn/{}", dn_oneline(d)?),
        _ => return None,
    })
}

/// The value a section gives for one attribute type, if any.
fn section_value(c: &CfgSection, ty: CfgAttr) -> Option<Vec<u8>> {
    let v4 = |a: Option<IpAddr>| match a {
        Some(IpAddr::V4(a)) => Some(a.octets().to_vec()),
        _ => None,
    };
    let v6 = |a: Option<IpAddr>| match a {
        Some(IpAddr::V6(a)) => Some(a.octets().to_vec()),
        _ => None,
    };
    match ty {
        CfgAttr::INTERNAL_IP4_ADDRESS => v4(c.address),
        CfgAttr::INTERNAL_IP4_NETMASK => v4(c.netmask),
        CfgAttr::INTERNAL_IP4_DNS => v4(c.nameserver),
        CfgAttr::INTERNAL_IP4_NBNS => v4(c.wins),
        CfgAttr::INTERNAL_IP4_DHCP => v4(c.dhcp),
        CfgAttr::INTERNAL_IP6_ADDRESS => v6(c.address),
        CfgAttr::INTERNAL_IP6_NETMASK => v6(c.netmask),
        CfgAttr::INTERNAL_IP6_DNS => v6(c.nameserver),
        CfgAttr::INTERNAL_IP6_NBNS => v6(c.wins),
        CfgAttr::INTERNAL_IP6_DHCP => v6(c.dhcp),
        CfgAttr::INTERNAL_ADDRESS_EXPIRY => Some(
            c.lifetime
                .unwrap_or(DEFAULT_ADDRESS_LIFETIME)
                .to_be_bytes()
                .to_vec(),
        ),
        _ => None,
    }
}

/// Every attribute type a SET pushes, in isakmpd's order.
const PUSHED: [CfgAttr; 11] = [
    CfgAttr::INTERNAL_IP4_ADDRESS,
    CfgAttr::INTERNAL_IP4_NETMASK,
    CfgAttr::INTERNAL_IP4_DNS,
    CfgAttr::INTERNAL_IP4_NBNS,
    CfgAttr::INTERNAL_IP4_DHCP,
    CfgAttr::INTERNAL_IP6_ADDRESS,
    CfgAttr::INTERNAL_IP6_NETMASK,
    CfgAttr::INTERNAL_IP6_DNS,
    CfgAttr::INTERNAL_IP6_NBNS,
    CfgAttr::INTERNAL_IP6_DHCP,
    CfgAttr::INTERNAL_ADDRESS_EXPIRY,
];

/// An ATTRIBUTE payload body: type, identifier, then TLV attributes.
fn attr_body(ty: CfgType, id: u16, attrs: &[(CfgAttr, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![ty.0, 0];
    b.extend_from_slice(&id.to_be_bytes());
    for (t, v) in attrs {
        b.extend_from_slice(&(t.0 & 0x7fff).to_be_bytes());
        b.extend_from_slice(&(v.len() as u16).to_be_bytes());
        b.extend_from_slice(v);
    }
    b
}

/// "address 10.0.0.5, netmask 255.255.255.0, ..." for the log.
fn describe(attrs: &[(CfgAttr, Vec<u8>)]) -> String {
    let v: Vec<String> = attrs
        .iter()
        .map(|(t, v)| {
            let what = match *t {
                CfgAttr::INTERNAL_IP4_ADDRESS | CfgAttr::INTERNAL_IP6_ADDRESS => "address",
                CfgAttr::INTERNAL_IP4_NETMASK | CfgAttr::INTERNAL_IP6_NETMASK => "netmask",
                CfgAttr::INTERNAL_IP4_DNS | CfgAttr::INTERNAL_IP6_DNS => "DNS",
                CfgAttr::INTERNAL_IP4_NBNS | CfgAttr::INTERNAL_IP6_NBNS => "WINS",
                CfgAttr::INTERNAL_IP4_DHCP | CfgAttr::INTERNAL_IP6_DHCP => "DHCP",
                CfgAttr::INTERNAL_ADDRESS_EXPIRY => "lifetime",
                _ => return format!("{t}"),
            };
            match address(*t, v) {
                Some(a) => format!("{what} {a}"),
                None if v.len() == 4 => {
                    format!("{what} {}", u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
                }
                None if v.is_empty() => what.to_string(),
                None => format!("{what} ({} bytes)", v.len()),
            }
        })
        .collect();
    if v.is_empty() {
        "nothing".into()
    } else {
        v.join(", ")
    }
}

/// An attribute's value as an address, for the address-valued types.
fn address(ty: CfgAttr, v: &[u8]) -> Option<IpAddr> {
    match ty {
        CfgAttr::INTERNAL_IP4_ADDRESS
        | CfgAttr::INTERNAL_IP4_NETMASK
        | CfgAttr::INTERNAL_IP4_DNS
        | CfgAttr::INTERNAL_IP4_NBNS
        | CfgAttr::INTERNAL_IP4_DHCP => {
            let b: [u8; 4] = v.try_into().ok()?;
            Some(Ipv4Addr::from(b).into())
        }
        CfgAttr::INTERNAL_IP6_ADDRESS
        | CfgAttr::INTERNAL_IP6_NETMASK
        | CfgAttr::INTERNAL_IP6_DNS
        | CfgAttr::INTERNAL_IP6_NBNS
        | CfgAttr::INTERNAL_IP6_DHCP => {
            // INTERNAL_IP6_ADDRESS may carry a prefix length after the address.
            let b: [u8; 16] = v.get(..16)?.try_into().ok()?;
            Some(Ipv6Addr::from(b).into())
        }
        _ => None,
    }
}

/// The attributes of an ATTRIBUTE payload, each known type once, at most
/// [`MAX_ATTRIBUTES`] (a peer repeating attributes gets no more work done for it).
fn attributes(p: &super::wire::payload::AttrPayload<'_>) -> Vec<(CfgAttr, Vec<u8>)> {
    let mut out: Vec<(CfgAttr, Vec<u8>)> = Vec::new();
    for a in p.attributes.iter().take(MAX_ATTRIBUTES) {
        let t = CfgAttr(a.ty);
        if t.0 == 0 || out.iter().any(|(o, _)| *o == t) {
            continue;
        }
        out.push((t, a.value.to_vec()));
    }
    out
}

impl Engine {
    /// After phase 1 over `sa` with a peer flagged `ikecfg`: starts the transaction, and
    /// `then` once it is over. Returns `then` back when there is nothing to send (no
    /// section for the peer, or a responder with nothing to push).
    pub(crate) fn start_transaction(
        &mut self,
        now: Time,
        sa: Handle,
        then: Vec<String>,
    ) -> Option<Vec<String>> {
        let Some(s) = self.isakmp_sas.get(sa) else {
            return Some(then);
        };
        let (remote, local, initiator) = (s.remote, s.local, s.initiator);
        let Some(id) = id_string(&s.id_remote) else {
            crate::log_warn!("mode-config with {remote}: its ID has no section name");
            return Some(then);
        };
        let Some(c) = self.policy.cfg_section(&id).cloned() else {
            crate::log_warn!("mode-config with {remote}: no [{id}] section; going on without");
            return Some(then);
        };
        if !initiator && !c.set {
            return Some(then);
        }
        let (ty, attrs): (CfgType, Vec<(CfgAttr, Vec<u8>)>) = if c.set {
            let a = PUSHED
                .iter()
                .filter(|t| **t != CfgAttr::INTERNAL_ADDRESS_EXPIRY || c.lifetime.is_some())
                .filter_map(|t| section_value(&c, *t).map(|v| (*t, v)))
                .collect();
            (CfgType::SET, a)
        } else {
            (
                CfgType::REQUEST,
                c.request.iter().map(|t| (*t, Vec::new())).collect(),
            )
        };
        if attrs.is_empty() {
            crate::log_warn!(
                "mode-config with {remote}: [{id}] gives no attributes; going on without"
            );
            return Some(then);
        }
        let mut r = [0u8; 6];
        self.io.rng.fill(&mut r);
        let msgid = u32::from_be_bytes([r[0], r[1], r[2], r[3]]).max(1);
        let cfg_id = u16::from_be_bytes([r[4], r[5]]);
        let s = self.isakmp_sas.get(sa)?;
        let iv = derive::phase2_iv(s.hash, s.last_block(), msgid, s.cipher.block_len());
        let (icookie, rcookie) = (s.icookie, s.rcookie);
        if ty == CfgType::SET {
            self.cfg_gave(sa, &attrs);
        }
        let body = attr_body(ty, cfg_id, &attrs);
        let (clear, msg, next) = match self.protected_message(
            sa,
            ExchangeType::TRANSACTION,
            msgid,
            &iv,
            PayloadType::ATTRIBUTE,
            &body,
        ) {
            Ok(m) => m,
            Err(e) => {
                crate::log_warn!("mode-config with {remote}: {e}");
                return Some(then);
            }
        };
        let mut x = Exchange::new(Kind::Transaction, true, local, remote);
        x.icookie = icookie;
        x.rcookie = rcookie;
        x.msgid = msgid;
        x.sa = Some(sa);
        x.peer = self
            .isakmp_sas
            .get(sa)
            .map(|s| s.peer.clone())
            .unwrap_or_default();
        x.deadline = now.add_secs(self.policy.exchange_max_time.into());
        x.iv = next;
        x.cfg.ty = ty;
        x.cfg.id = cfg_id;
        x.cfg.then = then;
        let Some(h) = self.exchanges.insert(x) else {
            crate::log_warn!("mode-config with {remote}: exchange table full");
            return None;
        };
        crate::log_info!(
            "mode-config {ty} to {remote} ([{id}]): {}",
            describe(&attrs)
        );
        self.send_step_captured(now, h, clear, msg, true);
        None
    }

    pub(crate) fn transaction_input(
        &mut self,
        now: Time,
        local: SocketAddr,
        remote: SocketAddr,
        hd: &Header,
        data: &[u8],
    ) -> Result<(), Drop> {
        let sa = self.phase2_sa(hd)?;
        let r = match self.lookup_exchange(now, Kind::Transaction, remote, hd, data) {
            Some(Err(())) => return Ok(()),
            Some(Ok(h)) => self.cfg_answer(now, sa, h, data),
            None => self.cfg_respond(now, local, remote, sa, hd, data),
        };
        self.phase2_outcome(now, sa, (local, remote), "mode-config", r)
    }

    /// Decrypts a mode-config message and checks its HASH; returns its ATTRIBUTE payload's
    /// type, identifier and attributes, and the IV after it.
    fn cfg_open(
        &mut self,
        sa: Handle,
        iv: &super::crypto::Key,
        msgid: u32,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> Result<(CfgType, u16, Vec<(CfgAttr, Vec<u8>)>, super::crypto::Key), Drop> {
        let (clear, next) = self.open_hash1(sa, iv, msgid, (local, remote), data)?;
        let m = Self::parse(&clear, true)?;
        super::script::check(super::exchange::Kind::Transaction, 1, &m)?;
        let Some(Payload::Attr(p)) = m.find(PayloadType::ATTRIBUTE) else {
            return Err(Drop::Notify(
                NotifyType::PAYLOAD_MALFORMED,
                "mode-config without an ATTRIBUTE payload",
            ));
        };
        Ok((p.ty, p.identifier, attributes(p), next))
    }

    /// Initiator: the REPLY to our REQUEST, or the ACK of our SET.
    fn cfg_answer(&mut self, now: Time, sa: Handle, h: Handle, data: &[u8]) -> Result<(), Drop> {
        let (iv, msgid, local, remote, sent, id, state) = {
            let x = self.exchanges.get(h).ok_or(Drop::Silent("gone"))?;
            (
                x.iv.clone(),
                x.msgid,
                x.local,
                x.remote,
                x.cfg.ty,
                x.cfg.id,
                x.state,
            )
        };
        if state != State::Transaction(CfgStep::AwaitAnswer) {
            return Err(Drop::Silent("unexpected mode-config message"));
        }
        let (ty, got_id, attrs, _) = self.cfg_open(sa, &iv, msgid, local, remote, data)?;
        let expected = if sent == CfgType::SET {
            CfgType::ACK
        } else {
            CfgType::REPLY
        };
        if got_id != id || ty != expected {
            return Err(super::refused(
                NotifyType::PAYLOAD_MALFORMED,
                "mode-config answer does not match our request",
                format_args!("{ty} (identifier {got_id}) does not answer our {sent} ({id})"),
            ));
        }
        if ty == CfgType::REPLY {
            self.cfg_take(sa, remote, ty, &attrs);
        } else {
            crate::log_info!("mode-config ACK from {remote}: {}", describe(&attrs));
        }
        let then = match self.exchanges.get_mut(h) {
            Some(x) => {
                x.last_recv.clear();
                x.last_recv.extend_from_slice(data);
                std::mem::take(&mut x.cfg.then)
            }
            None => Vec::new(),
        };
        self.finish_exchange(now, h);
        self.start_after_cfg(now, sa, then);
        Ok(())
    }

    /// Responder: a REQUEST (we are the server and REPLY from the section named after
    /// the peer's ID) or a SET (we are the client: we take the values and ACK them).
    fn cfg_respond(
        &mut self,
        now: Time,
        local: SocketAddr,
        remote: SocketAddr,
        sa: Handle,
        hd: &Header,
        data: &[u8],
    ) -> Result<(), Drop> {
        let iv = {
            let s = self.isakmp_sas.get(sa).ok_or(Drop::Silent("gone"))?;
            derive::phase2_iv(s.hash, s.last_block(), hd.msgid, s.cipher.block_len())
        };
        let (ty, id, attrs, next) = self.cfg_open(sa, &iv, hd.msgid, local, remote, data)?;
        let peer_id = self
            .isakmp_sas
            .get(sa)
            .and_then(|s| id_string(&s.id_remote))
            .unwrap_or_default();
        let (answer_ty, answer) = match ty {
            CfgType::REQUEST => {
                let section = self.policy.cfg_section(&peer_id).cloned();
                let answer: Vec<(CfgAttr, Vec<u8>)> = match section {
                    Some(ref c) => attrs
                        .iter()
                        .filter_map(|(t, _)| section_value(c, *t).map(|v| (*t, v)))
                        .collect(),
                    None => Vec::new(),
                };
                self.cfg_gave(sa, &answer);
                if section.is_none() {
                    crate::log_warn!("mode-config REQUEST from {remote}: no [{peer_id}] section");
                }
                crate::log_info!(
                    "mode-config REPLY to {remote} ([{peer_id}]): {}",
                    describe(&answer)
                );
                (CfgType::REPLY, answer)
            }
            CfgType::SET => {
                let taken = self.cfg_take(sa, remote, ty, &attrs);
                (
                    CfgType::ACK,
                    taken.into_iter().map(|t| (t, Vec::new())).collect(),
                )
            }
            other => {
                return Err(super::refused(
                    NotifyType::PAYLOAD_MALFORMED,
                    "mode-config message opens no exchange",
                    format_args!("{other}"),
                ))
            }
        };
        let body = attr_body(answer_ty, id, &answer);
        let (clear, msg, _) = self
            .protected_message(
                sa,
                ExchangeType::TRANSACTION,
                hd.msgid,
                &next,
                PayloadType::ATTRIBUTE,
                &body,
            )
            .map_err(|_| Drop::Silent("encryption failed"))?;
        let mut x = Exchange::new(Kind::Transaction, false, local, remote);
        x.icookie = hd.icookie;
        x.rcookie = hd.rcookie;
        x.msgid = hd.msgid;
        x.sa = Some(sa);
        x.last_recv.clear();
        x.last_recv.extend_from_slice(data);
        x.resend_on_dup = true;
        x.deadline = now.add_secs(self.policy.exchange_max_time.into());
        let h = self
            .exchanges
            .insert(x)
            .ok_or(Drop::Silent("exchange table full"))?;
        self.send_step_captured(now, h, clear, msg, false);
        self.finish_exchange(now, h);
        Ok(())
    }

    /// Values a server gave us (REPLY or SET): logged, and the address kept for the
    /// connections over `sa`. Returns the types taken (what an ACK lists).
    fn cfg_take(
        &mut self,
        sa: Handle,
        remote: SocketAddr,
        ty: CfgType,
        attrs: &[(CfgAttr, Vec<u8>)],
    ) -> Vec<CfgAttr> {
        let mut taken = Vec::new();
        let mut kept: Vec<(CfgAttr, Vec<u8>)> = Vec::new();
        for (t, v) in attrs {
            let ok = match *t {
                CfgAttr::INTERNAL_ADDRESS_EXPIRY => v.len() == 4,
                _ => address(*t, v).is_some(),
            };
            if ok {
                taken.push(*t);
                kept.push((*t, v.clone()));
            }
        }
        let addr = kept.iter().find_map(|(t, v)| match *t {
            CfgAttr::INTERNAL_IP4_ADDRESS | CfgAttr::INTERNAL_IP6_ADDRESS => address(*t, v),
            _ => None,
        });
        if let (Some(a), Some(s)) = (addr, self.isakmp_sas.get_mut(sa)) {
            s.cfg_address = Some(a);
        }
        crate::log_info!("mode-config {ty} from {remote}: {}", describe(&kept));
        taken
    }

    /// Remembers the address we give the peer over `sa`.
    fn cfg_gave(&mut self, sa: Handle, attrs: &[(CfgAttr, Vec<u8>)]) {
        let addr = attrs.iter().find_map(|(t, v)| match *t {
            CfgAttr::INTERNAL_IP4_ADDRESS | CfgAttr::INTERNAL_IP6_ADDRESS => address(*t, v),
            _ => None,
        });
        if let (Some(a), Some(s)) = (addr, self.isakmp_sas.get_mut(sa)) {
            s.cfg_peer_address = Some(a);
        }
    }

    /// The connections waiting for a transaction, over `sa` (answered or not).
    pub(crate) fn start_after_cfg(&mut self, now: Time, sa: Handle, then: Vec<String>) {
        for n in then {
            if !self.connection_busy(&n) {
                if let Err(e) = self.start_quick_mode(now, sa, &n) {
                    crate::log_warn!("connection {n}: {e}");
                }
            }
        }
    }
}
