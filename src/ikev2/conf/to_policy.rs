//! From iked.conf to the engine's [`Policy`]: one [`Peer`] per usable `ikev2` rule, and a
//! warning string for everything the engine cannot do yet, naming the rule and the
//! clause (nothing is dropped silently).
//!
//! - Name: the rule's name or iked's `policyN`. Names must be unique (the daemon starts
//!   exchanges by peer name), so a repeated name is an error.
//! - Endpoints: `local` and `peer`, or the single flow's source and destination when
//!   neither is given (as `create_ike()`), port 500. `any`, a missing one, `dynamic`
//!   and a local network become the unspecified address of the rule's family (the engine
//!   takes an unspecified remote as "any peer"). A `peer` network becomes its network
//!   address, with a warning: the engine's `Peer` has no prefix yet. Host names are not
//!   resolved: such a rule is skipped.
//! - Identities: `srcid` (or else the local address), `dstid` (or else any). ASN.1 DNs
//!   need certificates: such a rule is skipped.
//! - Proposals: each `ikesa`/`childsa` clause is split as `create_ike()` splits it (an
//!   AEAD proposal and a non-AEAD one, types left out taken from iked's defaults in
//!   `ikev2_default_*_transforms`), and each of those is expanded into the engine's
//!   one-transform-per-type suites, keeping only what [`IkeProposal::suite`] /
//!   [`EspProposal::algorithms`] and the DH code accept. Suites are ordered by the sum
//!   of their transforms' places in the lists (so the first suite is the first of every
//!   list, and each list's runners-up come before combinations of several), at most
//!   [`MAX_SUITES`]. Transforms written in the file and dropped are warned about;
//!   iked's defaults the engine lacks (3DES, MODP-1024, …) are left out quietly.
//! - `group` in a `childsa` becomes [`EspProposal::pfs`] (`none`: no PFS).
//! - Selectors: `from` is ours, `to` the peer's, each `proto` applied; `any` stands for
//!   the whole of the other end's family (both families when neither has one).
//! - Lifetimes: `ikelifetime` (absent or 0: the IKE SA is not rekeyed) and `lifetime`
//!   with its `bytes` (iked's defaults of 3 h and 4 GiB when absent; 0: no limit).
//! - A rule without a `psk` authenticates with signatures: our key and certificate, the
//!   peer's checked against the CAs (iked(8)'s /etc/iked/ directories, read by the daemon).

#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::ike::crypto::Group;
use crate::ike::wire::GroupDescription;
use crate::ikev2::policy::{
    Config, CpConfig, EspProposal, Identity, IkeProposal, Peer, PeerAuth, Policy, Selector,
    SigMethod,
};
use crate::ikev2::wire::{CfgAttrType, DhGroup, EncrId, IdType, IntegId, PrfId};

use super::parse::endpoints;
use super::{
    lookup_xf, Af, Auth, AuthMethod, CfgKind, Eval, Flow, Host, Id, IkedConf, IkedPolicy, SaProto,
    TMode, Transforms, Xf, AUTH, DEFAULT_LIFETIME_BYTES, DEFAULT_LIFETIME_SECS, ESP_ENC, GROUP,
    IKE_ENC, PRF,
};

/// Engine suites made from one rule's IKE (and ESP) proposals, at most: each is a
/// proposal of its own in the SA payload, which must fit an unfragmented IKE_SA_INIT.
pub const MAX_SUITES: usize = 16;

/// The IKE port.
const IKE_PORT: u16 = 500;

// iked's defaults (parse.y, `ikev2_default_ike_transforms{,_noauth}` and
// `ikev2_default_esp_transforms{,_noauth}`), most preferred first.
const DEF_IKE_ENC: &[&str] = &["aes-256", "aes-192", "aes-128", "3des"];
const DEF_IKE_ENC_AEAD: &[&str] = &["aes-128-gcm", "aes-256-gcm"];
const DEF_PRF: &[&str] = &[
    "hmac-sha2-256",
    "hmac-sha2-384",
    "hmac-sha2-512",
    "hmac-sha1",
];
const DEF_AUTH: &[&str] = &[
    "hmac-sha2-256",
    "hmac-sha2-384",
    "hmac-sha2-512",
    "hmac-sha1",
];
const DEF_IKE_GROUP: &[&str] = &[
    "curve25519",
    "ecp521",
    "ecp384",
    "ecp256",
    "modp4096",
    "modp3072",
    "modp2048",
    "modp1536",
    "modp1024",
];
const DEF_ESP_ENC: &[&str] = &["aes-256", "aes-192", "aes-128"];
const DEF_ESP_ENC_AEAD: &[&str] = &["aes-128-gcm", "aes-256-gcm"];
const DEF_ESP_GROUP: &[&str] = &["none"];

fn table(t: &[Xf], names: &[&str]) -> Vec<Xf> {
    names.iter().filter_map(|n| lookup_xf(t, n)).collect()
}

/// One proposal as iked sends it: several transforms of each type.
struct Prop {
    enc: Vec<Xf>,
    /// Empty with AEAD ciphers.
    auth: Vec<Xf>,
    prf: Vec<Xf>,
    group: Vec<Xf>,
}

/// `create_ike()`'s split of the `ikesa`/`childsa` clauses into proposals; no clause
/// gives iked's two default proposals (AEAD first).
// noauth/auth as in create_ike(): a clause with AEAD ciphers only gives an AEAD
// proposal, one with other ciphers or an `auth` a non-AEAD one, and one with
// neither (only `group`, say) both, the AEAD one first.
fn proposals(clauses: &[Transforms], ike: bool) -> Vec<Prop> {
    let enc_t = if ike { IKE_ENC } else { ESP_ENC };
    let (def_enc, def_aead, def_group) = if ike {
        (DEF_IKE_ENC, DEF_IKE_ENC_AEAD, DEF_IKE_GROUP)
    } else {
        (DEF_ESP_ENC, DEF_ESP_ENC_AEAD, DEF_ESP_GROUP)
    };
    let pick = |given: &Vec<Xf>, t: &[Xf], def: &[&str]| {
        if given.is_empty() {
            table(t, def)
        } else {
            given.clone()
        }
    };
    let default = Transforms::default();
    let list: Vec<&Transforms> = if clauses.is_empty() {
        vec![&default]
    } else {
        clauses.iter().collect()
    };
    let mut out = Vec::new();
    for c in list {
        let noauth = c.enc.iter().filter(|e| e.aead).count();
        let auth = c.enc.len() - noauth + usize::from(!c.auth.is_empty());
        if auth == 0 {
            out.push(Prop {
                enc: pick(&c.enc, enc_t, def_aead),
                auth: Vec::new(),
                prf: pick(&c.prf, PRF, DEF_PRF),
                group: pick(&c.group, GROUP, def_group),
            });
        }
        if noauth == 0 {
            out.push(Prop {
                enc: pick(&c.enc, enc_t, def_enc),
                auth: pick(&c.auth, AUTH, DEF_AUTH),
                prf: pick(&c.prf, PRF, DEF_PRF),
                group: pick(&c.group, GROUP, def_group),
            });
        }
    }
    out
}

// The DH groups the crypto code computes (MODP, ECP 256/384/521, Curve25519): the
// same test the engine makes before generating a KE (init.rs).
fn group_ok(id: u16) -> bool {
    Group::from_ike(GroupDescription(id)).is_some()
}

/// The wire key length of a cipher: none for ChaCha20-Poly1305 (RFC 7634 §2).
fn key_bits(x: &Xf) -> Option<u16> {
    if x.id == EncrId::CHACHA20_POLY1305.0 {
        None
    } else {
        x.key_bits
    }
}

/// Keeps the transforms `ok` accepts, once each; returns them with their places.
// A transform named twice (`group ecp256 group grp19`) is offered once.
fn usable(
    list: &[Xf],
    ok: &dyn Fn(&Xf) -> bool,
    dropped: &mut Vec<&'static str>,
) -> Vec<(usize, Xf)> {
    let mut out: Vec<(usize, Xf)> = Vec::new();
    for (i, x) in list.iter().enumerate() {
        if !ok(x) {
            if !dropped.contains(&x.name) {
                dropped.push(x.name);
            }
        } else if !out
            .iter()
            .any(|(_, y)| y.id == x.id && y.key_bits == x.key_bits)
        {
            out.push((i, *x));
        }
    }
    out
}

/// The ciphers and integrity algorithms of a clause the engine has, with their ranks
/// (none for an AEAD-only clause); what it lacks goes to `dropped`.
/// Transforms with their rank in the clause.
type Ranked<T> = Vec<(usize, T)>;

fn enc_integ(p: &Prop, dropped: &mut Vec<&'static str>) -> (Ranked<Xf>, Ranked<Option<Xf>>) {
    let enc = usable(
        &p.enc,
        &|x| crate::ikev2::keys::Encr::from_id(EncrId(x.id), key_bits(x)).is_some(),
        dropped,
    );
    let integ = if p.auth.is_empty() {
        vec![(0, None)]
    } else {
        usable(
            &p.auth,
            &|x| crate::ikev2::keys::Integ::from_id(IntegId(x.id)).is_some(),
            dropped,
        )
        .into_iter()
        .map(|(i, x)| (i, Some(x)))
        .collect()
    };
    (enc, integ)
}

fn ike_suites(
    clauses: &[Transforms],
    dropped: &mut Vec<&'static str>,
) -> (Vec<IkeProposal>, usize) {
    let mut all: Vec<(usize, usize, IkeProposal)> = Vec::new();
    for (pi, p) in proposals(clauses, true).iter().enumerate() {
        let mut d = Vec::new();
        let (enc, integ) = enc_integ(p, &mut d);
        let prf = usable(
            &p.prf,
            &|x| crate::ikev2::keys::Prf::from_id(PrfId(x.id)).is_some(),
            &mut d,
        );
        let dh = usable(&p.group, &|x| group_ok(x.id), &mut d);
        for n in d {
            if !dropped.contains(&n) {
                dropped.push(n);
            }
        }
        for (ei, e) in &enc {
            for (ii, i) in &integ {
                for (fi, f) in &prf {
                    for (gi, g) in &dh {
                        let s = IkeProposal {
                            encr: EncrId(e.id),
                            key_bits: key_bits(e),
                            integ: i.map(|i| IntegId(i.id)),
                            prf: PrfId(f.id),
                            dh: DhGroup(g.id),
                        };
                        // suite() also refuses an AEAD cipher with an integrity algorithm and a CBC one
                        // without; proposals() never builds those, but the engine's test is the one
                        // that counts.
                        if s.suite().is_ok() {
                            all.push((ei + ii + fi + gi, pi, s));
                        }
                    }
                }
            }
        }
    }
    rank(all)
}

fn esp_suites(
    clauses: &[Transforms],
    dropped: &mut Vec<&'static str>,
) -> (Vec<EspProposal>, usize) {
    let mut all: Vec<(usize, usize, EspProposal)> = Vec::new();
    for (pi, p) in proposals(clauses, false).iter().enumerate() {
        let mut d = Vec::new();
        let (enc, integ) = enc_integ(p, &mut d);
        // `group none` in a childsa is iked's IKEV2_XFORMDH_NONE: no PFS.
        let dh = usable(&p.group, &|x| x.id == 0 || group_ok(x.id), &mut d);
        for n in d {
            if !dropped.contains(&n) {
                dropped.push(n);
            }
        }
        for (ei, e) in &enc {
            for (ii, i) in &integ {
                for (gi, g) in &dh {
                    let s = EspProposal {
                        encr: EncrId(e.id),
                        key_bits: key_bits(e),
                        integ: i.map(|i| IntegId(i.id)),
                        pfs: (g.id != 0).then_some(DhGroup(g.id)),
                    };
                    if s.algorithms().is_some() {
                        all.push((ei + ii + gi, pi, s));
                    }
                }
            }
        }
    }
    rank(all)
}

/// Sorts by (sum of places, proposal), drops repeats, keeps [`MAX_SUITES`]; also says
/// how many were cut.
fn rank<T: PartialEq + Copy>(all: Vec<(usize, usize, T)>) -> (Vec<T>, usize) {
    let mut out: Vec<T> = Vec::new();
    let mut cut = 0;
    for i in rank_order(all.iter().map(|(sum, prop, _)| (*sum, *prop)).collect()) {
        let s = all[i].2;
        if out.contains(&s) {
            continue;
        }
        if out.len() < MAX_SUITES {
            out.push(s);
        } else {
            cut += 1;
        }
    }
    (out, cut)
}

/// The indices of `keys` sorted by (sum of places, proposal).
///
/// Among equals the index keeps the nesting order (cipher, integrity, prf, group), as a
/// stable sort would; sorting indices rather than the suites makes this one function for
/// both suite types. Rank sums rather than the nesting order: nested loops would give 16
/// suites that differ in the group only, and a peer that lacks the first cipher would find
/// nothing it takes; this way every list's second choice comes early.
fn rank_order(keys: Vec<(usize, usize)>) -> Vec<usize> {
    let mut order: Vec<(usize, usize, usize)> = keys
        .into_iter()
        .enumerate()
        .map(|(i, (sum, prop))| (sum, prop, i))
        .collect();
    order.sort_unstable();
    order.into_iter().map(|(_, _, i)| i).collect()
}

fn identity(id: &Id) -> Option<Identity> {
    Some(match id {
        Id::Ipv4(a) => Identity::addr(IpAddr::V4(*a)),
        Id::Ipv6(a) => Identity::addr(IpAddr::V6(*a)),
        Id::Fqdn(s) => Identity::fqdn(s),
        // RFC 7296 §3.5: ID_RFC822_ADDR is iked's UFQDN.
        Id::Ufqdn(s) => Identity {
            ty: IdType::RFC822_ADDR,
            data: s.as_bytes().to_vec(),
        },
        // A DN must be sent DER-encoded, which needs the certificate code.
        Id::Asn1Dn(_) => return None,
    })
}

fn unspecified(af: Af) -> IpAddr {
    match af {
        Af::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Af::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// The network address of `a/prefix`.
fn network(a: IpAddr, prefix: u8) -> IpAddr {
    Selector::subnet(a, prefix).start
}

/// The selectors for one flow end; `other` is the other end's family, for `any`.
fn selectors(h: &Host, other: Option<Af>, protos: &[u8], port: Option<u16>) -> Vec<Selector> {
    let nets: Vec<Selector> = match h {
        Host::Addr(a) => vec![Selector::host(*a)],
        Host::Net(a, p) => vec![Selector::subnet(*a, *p)],
        Host::Any => match other {
            Some(af) => vec![Selector::subnet(unspecified(af), 0)],
            None => vec![
                Selector::subnet(unspecified(Af::Inet), 0),
                Selector::subnet(unspecified(Af::Inet6), 0),
            ],
        },
        // The caller warns about these.
        Host::Dynamic | Host::Name(_) => Vec::new(),
    };
    let protos: &[u8] = if protos.is_empty() { &[0] } else { protos };
    let mut out = Vec::new();
    for n in nets {
        for &pr in protos {
            let mut s = n;
            s.protocol = pr;
            if let Some(p) = port {
                s.start_port = p;
                s.end_port = p;
            }
            out.push(s);
        }
    }
    out
}

fn push_new(v: &mut Vec<Selector>, s: Vec<Selector>) {
    for x in s {
        if !v.contains(&x) {
            v.push(x);
        }
    }
}

impl IkedConf {
    /// The engine's policy, and the warnings: what it leaves out, by rule and clause.
    /// An error only for what makes the whole policy ambiguous (two rules of one name).
    pub fn to_engine(&self) -> Result<(Policy, Vec<String>), String> {
        self.to_engine_as(None)
    }

    /// [`Self::to_engine`] on a host called `hostname`: a rule without `srcid` shows it
    /// as an FQDN identity, as iked does (`parse.y` takes gethostname(3)); without one,
    /// the local address.
    pub fn to_engine_as(&self, hostname: Option<&str>) -> Result<(Policy, Vec<String>), String> {
        let mut warns = Vec::new();
        let s = &self.settings;
        let mut set = |on: bool, what: &str| {
            if on {
                warns.push(format!("set {what}: not implemented, ignored"));
            }
        };
        // `passive`, `decouple` and `mobike` are the daemon's (crate::iked); `vendorid` is
        // on in iked by default, so a warning about it would come with every file: the
        // README says it is not done.
        set(s.enforce_single_ikesa, "enforcesingleikesa");
        set(s.sticky_address, "stickyaddress");
        set(s.cert_partial_chain, "cert_partial_chain");
        set(s.ocsp.is_some(), "ocsp");
        for at in &self.skipped {
            warns.push(format!("{at}: ipsec.conf(5) rule skipped, as iked does"));
        }
        let mut policy = Policy::default();
        let mut notes = Vec::new();
        for p in &self.policies {
            if let Some(peer) = convert(p, hostname, &mut warns, &mut notes) {
                if policy.peers.iter().any(|q| q.name == peer.name) {
                    return Err(format!(
                        "policy \"{}\" ({}): a policy of this name is already defined",
                        p.name, p.origin
                    ));
                }
                policy.peers.push(peer);
            }
        }
        warns.extend(notes);
        Ok((policy, warns))
    }

    /// The engine settings iked.conf has: `dpd_check_interval` as the liveness check,
    /// `set fragmentation`.
    pub fn apply_settings(&self, cfg: &mut Config) {
        cfg.liveness_secs = u64::from(self.settings.dpd_check_interval);
        cfg.fragmentation = self.settings.fragmentation;
    }
}

/// Says which transforms were left out and how many suites were cut: about the rule when
/// its clauses named them, once in `notes` when they are iked's defaults.
fn transform_notes(
    kw: &str,
    clauses: &[Transforms],
    dropped: &[&'static str],
    cut: usize,
    w: &mut impl FnMut(String),
    notes: &mut Vec<String>,
) {
    let written = |n: &str| {
        clauses.iter().any(|c| {
            [&c.enc, &c.auth, &c.prf, &c.group]
                .iter()
                .any(|l| l.iter().any(|x| x.name == n))
        })
    };
    let (mine, defaults): (Vec<&str>, Vec<&str>) = dropped.iter().partition(|n| written(n));
    if !mine.is_empty() {
        w(format!(
            "{kw}: {} not implemented, left out",
            mine.join(", ")
        ));
    }
    let mut note = |n: String| {
        if !notes.contains(&n) {
            notes.push(n);
        }
    };
    if !defaults.is_empty() {
        note(format!(
            "{kw}: iked's default transforms {} not implemented, left out",
            defaults.join(", ")
        ));
    }
    if cut > 0 && clauses.is_empty() {
        note(format!(
            "{kw}: iked's default proposals give more combinations than the engine's {MAX_SUITES}; the first {MAX_SUITES} are offered"
        ));
    } else if cut > 0 {
        w(format!(
            "{kw}: {cut} more combinations beyond the first {MAX_SUITES} left out"
        ));
    }
}

/// One rule, or None (with the reason among the warnings).
///
/// What comes of iked's defaults rather than of the rule goes to `notes`, once for all
/// rules: a rule without `ikesa` should not repeat that the defaults' 3DES is left out.
fn convert(
    p: &IkedPolicy,
    hostname: Option<&str>,
    warns: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Option<Peer> {
    let head = format!("policy \"{}\" ({})", p.name, p.origin);
    let mut w = |msg: String| warns.push(format!("{head}: {msg}"));
    let auth = match &p.auth {
        Auth::Psk(k) => PeerAuth::psk(k.as_bytes()),
        // iked.conf(5): "The default is to allow any signature authentication."
        Auth::Default => PeerAuth::Sig(SigMethod::Any),
        // iked: the responder signs, the peer authenticates with EAP-MSCHAPv2 as one of
        // the `user`s (the daemon gives them to the engine).
        Auth::EapMschapV2 => PeerAuth::EapServer(SigMethod::Any),
        Auth::Method(m) => PeerAuth::Sig(match m {
            AuthMethod::Rsa => SigMethod::Rsa,
            AuthMethod::Ecdsa256 => SigMethod::Ecdsa256,
            AuthMethod::Ecdsa384 => SigMethod::Ecdsa384,
            AuthMethod::Ecdsa521 => SigMethod::Ecdsa521,
            AuthMethod::Rfc7427 => SigMethod::Rfc7427,
            AuthMethod::Signature => SigMethod::Any,
        }),
    };
    if p.sa_proto == SaProto::Ah {
        w("ah: only ESP is implemented; skipped".into());
        return None;
    }
    match p.eval {
        Eval::Normal => {}
        Eval::Quick => w("quick: policy evaluation order is not implemented, ignored".into()),
        Eval::Skip => w("skip: not implemented, incoming requests still match".into()),
        Eval::Default => w("default: a default policy is not implemented, ignored".into()),
    }
    if p.ipcomp {
        w("ipcomp: not implemented, ignored".into());
    }
    if p.natt {
        w("natt: forced UDP encapsulation is not implemented, ignored".into());
    }
    if let Some(r) = p.rdomain {
        w(format!("rdomain {r}: not implemented, ignored"));
    }
    // Configuration payloads: `config address` is the pool, other `config` options are
    // served as they are; `request` options are asked for.
    let mut cp = CpConfig::default();
    for c in &p.cfg {
        let kw = if c.request { "request" } else { "config" };
        let ty = CfgAttrType(c.attr);
        if c.request {
            if !cp.request.contains(&ty) {
                cp.request.push(ty);
            }
            continue;
        }
        let (a, prefix) = match &c.addr {
            Host::Addr(a) => (*a, if a.is_ipv4() { 32 } else { 128 }),
            Host::Net(a, n) => (*a, *n),
            h => {
                w(format!(
                    "{kw} {} {h}: needs an address, ignored",
                    c.kind.name()
                ));
                continue;
            }
        };
        if c.kind == CfgKind::Address {
            if cp.pool.is_some() {
                w(format!(
                    "{kw} address {}: one pool per policy, ignored",
                    c.addr
                ));
            } else {
                cp.pool = Some((a, prefix));
            }
            continue;
        }
        let mut v = match a {
            IpAddr::V4(x) => x.octets().to_vec(),
            IpAddr::V6(x) => x.octets().to_vec(),
        };
        if c.kind == CfgKind::ProtectedSubnet {
            // INTERNAL_IP4_SUBNET: address and netmask; INTERNAL_IP6_SUBNET: address,
            // prefix length.
            match a {
                IpAddr::V4(_) => v.extend_from_slice(
                    &(u32::MAX
                        .checked_shl(32 - u32::from(prefix.min(32)))
                        .unwrap_or(0))
                    .to_be_bytes(),
                ),
                IpAddr::V6(_) => v.push(prefix),
            }
        }
        cp.serve.push((ty, v));
    }
    if let Some(i) = &p.iface {
        w(format!("iface {i}: not implemented, ignored"));
    }
    if let Some(t) = &p.tag {
        w(format!("tag \"{t}\": not implemented, ignored"));
    }
    if let Some(t) = p.tap {
        w(format!("tap enc{t}: not implemented, ignored"));
    }

    // Endpoints.
    let (local, peer) = endpoints(p);
    // The family of the IKE endpoints when neither `local` nor `peer` has one (both
    // `any`): the rule's inet/inet6, or the first flow's, or IPv4.
    let first_flow_af = p.flows.iter().find_map(|f| f.src.af().or(f.dst.af()));
    let af =
        p.af.or(local.and_then(Host::af))
            .or(peer.and_then(Host::af))
            .or(first_flow_af)
            .unwrap_or(Af::Inet);
    let remote = match peer {
        Some(Host::Addr(a)) => *a,
        Some(Host::Net(a, n)) => {
            let net = network(*a, *n);
            w(format!(
                "peer {a}/{n}: a network; the engine gets its network address {net} (no prefix yet)"
            ));
            net
        }
        Some(Host::Name(n)) => {
            w(format!(
                "peer {n}: host names are not resolved, give an address; skipped"
            ));
            return None;
        }
        Some(Host::Any) | Some(Host::Dynamic) | None => unspecified(af),
    };
    let local_ip = match local {
        Some(Host::Addr(a)) => *a,
        Some(Host::Net(a, n)) => {
            w(format!(
                "local {a}/{n}: a network; any local address is used"
            ));
            unspecified(af)
        }
        Some(Host::Name(n)) => {
            w(format!(
                "local {n}: host and interface names are not resolved; skipped"
            ));
            return None;
        }
        Some(Host::Any) | Some(Host::Dynamic) | None => unspecified(af),
    };

    // Identities.
    let local_id = match &p.srcid {
        Some(id) => match identity(id) {
            Some(i) => i,
            None => {
                w("srcid: an ASN.1 DN needs certificates, not implemented; skipped".into());
                return None;
            }
        },
        None if hostname.is_some_and(|h| !h.is_empty()) => {
            Identity::fqdn(hostname.unwrap_or_default())
        }
        None => {
            if local_ip.is_unspecified() {
                w(format!(
                    "no srcid and no local address: the local ID is {local_ip} (iked uses the \
                     host name)"
                ));
            }
            Identity::addr(local_ip)
        }
    };
    let remote_id = match &p.dstid {
        Some(id) => match identity(id) {
            Some(i) => Some(i),
            None => {
                w("dstid: an ASN.1 DN needs certificates, not implemented; skipped".into());
                return None;
            }
        },
        None => None,
    };

    // Proposals.
    let mut dropped = Vec::new();
    let (ike, cut) = ike_suites(&p.ikesa, &mut dropped);
    transform_notes("ikesa", &p.ikesa, &dropped, cut, &mut w, notes);
    if ike.is_empty() {
        w("ikesa: no IKE suite the engine implements; skipped".into());
        return None;
    }
    let mut dropped = Vec::new();
    let (esp, cut) = esp_suites(&p.childsa, &mut dropped);
    transform_notes("childsa", &p.childsa, &dropped, cut, &mut w, notes);
    if p.childsa.iter().any(|c| !c.prf.is_empty()) {
        w("childsa: prf has no meaning for ESP, ignored (as iked does)".into());
    }
    if p.childsa
        .iter()
        .any(|c| !c.esn.is_empty() && !c.esn.contains(&false))
    {
        w("childsa: esn: extended sequence numbers are not implemented, noesn offered".into());
    }
    if esp.is_empty() {
        w("childsa: no ESP suite the engine implements; skipped".into());
        return None;
    }

    // Traffic selectors.
    // The engine narrows each side on its own (§2.9), so the flows' pairing is not
    // kept: the sides' unions are offered. A flow with a NATed source negotiates
    // the visible source; the real network only matters to the local SA.
    let mut local_ts = Vec::new();
    let mut remote_ts = Vec::new();
    let mut flows = Vec::new();
    for f in &p.flows {
        // `dynamic`: ours is the address the peer gives us (we ask, from any address);
        // the peer's is one from our pool.
        let ask = cp.request.iter().any(|t| {
            *t == CfgAttrType::INTERNAL_IP4_ADDRESS || *t == CfgAttrType::INTERNAL_IP6_ADDRESS
        });
        let dynamic = |side: &str| -> Option<Host> {
            match (side, cp.pool) {
                ("from", _) if ask => Some(Host::Any),
                ("to", Some((a, n))) => Some(Host::Net(a, n)),
                _ => None,
            }
        };
        let src = match &f.src {
            Host::Dynamic => dynamic("from").unwrap_or(Host::Dynamic),
            h => h.clone(),
        };
        let dst = match &f.dst {
            Host::Dynamic => dynamic("to").unwrap_or(Host::Dynamic),
            h => h.clone(),
        };
        let f = &Flow {
            src,
            dst,
            ..f.clone()
        };
        let mut skip = |h: &Host, side: &str| -> bool {
            match h {
                Host::Dynamic => {
                    w(format!(
                        "{side} dynamic: needs `request address` (from) or `config address` \
                         (to); flow left out"
                    ));
                    true
                }
                Host::Name(n) => {
                    w(format!(
                        "{side} {n}: host names are not resolved; flow left out"
                    ));
                    true
                }
                _ => false,
            }
        };
        if skip(&f.src, "from") || skip(&f.dst, "to") {
            continue;
        }
        if let Some(n) = &f.src_nat {
            w(format!(
                "from {} ({n}): the NAT network is not installed, {} is negotiated",
                f.src, f.src
            ));
        }
        let src = selectors(&f.src, f.dst.af(), &p.protos, f.src_port);
        let dst = selectors(&f.dst, f.src.af(), &p.protos, f.dst_port);
        // A flow per pair of one family and protocol (iked installs one per `from ...
        // to ...`, for each `proto`).
        for a in &src {
            for b in dst.iter().filter(|b| b.protocol == a.protocol) {
                if a.start.is_ipv4() == b.start.is_ipv4() && !flows.contains(&(*a, *b)) {
                    flows.push((*a, *b));
                }
            }
        }
        push_new(&mut local_ts, src);
        push_new(&mut remote_ts, dst);
    }
    if local_ts.is_empty() || remote_ts.is_empty() {
        w("no flow the engine can negotiate; skipped".into());
        return None;
    }

    Some(Peer {
        cp,
        name: p.name.clone(),
        local: SocketAddr::new(local_ip, IKE_PORT),
        remote: SocketAddr::new(remote, IKE_PORT),
        auth,
        local_id,
        remote_id,
        ike,
        esp,
        local_ts,
        remote_ts,
        flows,
        transport: p.tmode == TMode::Transport,
        // iked: no ikelifetime (or 0) is no IKE SA rekeying; no lifetime is 3 h and
        // 4 GiB, and `lifetime T` without `bytes` keeps the 4 GiB.
        ike_lifetime_secs: p.ikelifetime.unwrap_or(0),
        child_lifetime_secs: p.lifetime.map_or(DEFAULT_LIFETIME_SECS, |l| l.seconds),
        child_lifetime_bytes: p
            .lifetime
            .and_then(|l| l.bytes)
            .unwrap_or(DEFAULT_LIFETIME_BYTES),
    })
}

#[cfg(test)]
mod tests {
    use super::super::parse_str;
    use super::*;

    #[test]
    fn default_proposals_start_with_iked_first_choice() {
        let mut d = Vec::new();
        let (ike, _) = ike_suites(&[], &mut d);
        // Of iked's defaults only 3DES is not implemented.
        assert_eq!(d, ["3des"]);
        assert_eq!(ike.len(), MAX_SUITES);
        // The AEAD default proposal's first of everything: aes-128-gcm, sha2-256, x25519.
        assert_eq!(
            ike[0],
            IkeProposal {
                encr: EncrId::AES_GCM_16,
                key_bits: Some(128),
                integ: None,
                prf: PrfId::HMAC_SHA2_256,
                dh: DhGroup::CURVE25519,
            }
        );
        // The CBC default's first comes right after.
        assert_eq!(ike[1].encr, EncrId::AES_CBC);
        assert_eq!(ike[1].key_bits, Some(256));
        assert_eq!(ike[1].integ, Some(IntegId::HMAC_SHA2_256_128));
        let (esp, cut) = esp_suites(&[], &mut d);
        assert_eq!(cut, 0);
        assert_eq!(esp[0].encr, EncrId::AES_GCM_16);
        assert_eq!(esp[0].pfs, None);
        assert!(esp.iter().all(|e| e.algorithms().is_some()));
    }

    #[test]
    fn unsupported_transforms_are_named() {
        let c = parse_str(
            "t",
            "ikev2 from 10.0.0.1 to 10.0.0.2 ikesa enc 3des auth hmac-md5 group ecp256 \
             childsa enc aes-128-ctr childsa enc aes-128 auth hmac-sha1 group brainpool256 \
             psk x\n",
        )
        .unwrap();
        let (pol, warns) = c.to_engine().unwrap();
        assert!(pol.peers.is_empty(), "{warns:?}");
        assert!(
            warns
                .iter()
                .any(|w| w.contains("ikesa: 3des, hmac-md5 not implemented")),
            "{warns:?}"
        );
    }
}
