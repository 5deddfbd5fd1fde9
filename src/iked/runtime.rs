//! What iked adds to the event loop: the IKEv2 engine with the policies of iked.conf(5),
//! which of them to start, the control socket, and what ikectl's `show` commands print.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::io::Read;
use std::net::IpAddr;
use std::os::fd::OwnedFd;

use crate::args::Options;
use crate::ike::crypto::{AeadAlg, KeyKind};
use crate::ike::sa::hex;
use crate::ike::Credentials;
use crate::ikev2::conf::Mode;
use crate::ikev2::engine::{Engine, IkeRef, IkeState};
use crate::ikev2::keys::{Encr, Integ};
use crate::ikev2::policy::{Config, Identity, PeerAuth, Policy, Selector, SigMethod};
use crate::ikev2::wire::IdType;
use crate::pki::key_kind_name;
use crate::timer::Time;

/// What iked.conf(5) says, in the form the daemon uses.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub policy: Policy,
    /// Policies we start (not `passive`, and with a known peer address).
    pub active: Vec<String>,
    /// `set passive`: start nothing.
    pub passive: bool,
    /// `set decouple`: flows are not loaded.
    pub decouple: bool,
    /// `set dpd_check_interval`; 0 turns liveness checks off.
    pub dpd_secs: u64,
    /// `set fragmentation` (RFC 7383), taken at startup.
    pub fragmentation: bool,
    /// `set mobike` (RFC 4555, the default) / `set nomobike`, taken at startup.
    pub mobike: bool,
    /// The files included, in order (the monitor lets a reload open these and no others).
    pub includes: Vec<String>,
    /// What was read but is not used (yet), one line each.
    pub warnings: Vec<String>,
    /// `user` lines: the EAP-MSCHAPv2 users, as read (the passwords are wiped when
    /// dropped); hashed for the engine and dropped when the configuration is applied.
    pub users: Vec<crate::ikev2::conf::User>,
}

impl Setup {
    /// What `iked -nv` prints: the policies as the engine got them.
    pub fn describe(&self) -> String {
        let mut o = String::new();
        for p in &self.policy.peers {
            let active = self.active.contains(&p.name);
            let _ = writeln!(
                o,
                "ikev2 \"{}\" {} esp local {} peer {}",
                p.name,
                if active { "active" } else { "passive" },
                p.local.ip(),
                if p.remote.ip().is_unspecified() {
                    "any".to_string()
                } else {
                    p.remote.ip().to_string()
                }
            );
            for (l, r) in p.local_ts.iter().zip(p.remote_ts.iter()) {
                let _ = writeln!(o, "\tfrom {} to {}", sel(l), sel(r));
            }
            for ike in &p.ike {
                let _ = writeln!(
                    o,
                    "\tikesa enc {}{} auth {} prf {} group {}",
                    ike.encr,
                    bits(ike.key_bits),
                    ike.integ.map_or("none".to_string(), |i| i.to_string()),
                    ike.prf,
                    ike.dh
                );
            }
            for esp in &p.esp {
                let _ = writeln!(
                    o,
                    "\tchildsa enc {}{} auth {}{}",
                    esp.encr,
                    bits(esp.key_bits),
                    esp.integ.map_or("none".to_string(), |i| i.to_string()),
                    esp.pfs.map_or(String::new(), |g| format!(" group {g}"))
                );
            }
        }
        o
    }
}

/// The EAP users of `setup` for the engine; the passwords are dropped (and wiped).
fn eap_users(setup: &mut Setup) -> Vec<crate::ikev2::mschap::EapUser> {
    let users = std::mem::take(&mut setup.users);
    let (hashed, warning) = crate::iked::users::hash_users(&users);
    if let Some(w) = warning {
        crate::log_warn!("{w}");
    }
    hashed
}

/// `-256` for a key length.
fn bits(b: Option<u16>) -> String {
    b.map_or(String::new(), |b| format!("-{b}"))
}

/// Reads iked.conf and what it includes, each with the secrecy check of isakmpd.conf
/// (root's, not writable or readable by others), and turns it into a [`Setup`].
pub fn load(path: &str, macros: &[(String, String)]) -> Result<Setup, String> {
    let text = read_secret(path)?;
    let mut includes = Vec::new();
    let mut setup = from_text(&text, path, macros, &mut |p: &str| {
        if includes.len() >= 64 {
            return Err(format!("{p}: too many includes"));
        }
        let t = read_secret(p)?;
        includes.push(p.to_owned());
        Ok(t)
    })?;
    setup.includes = includes;
    Ok(setup)
}

fn read_secret(path: &str) -> Result<String, String> {
    let fd: OwnedFd = crate::monitor::open_config(path)?;
    let mut text = String::new();
    std::fs::File::from(fd)
        .read_to_string(&mut text)
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(text)
}

/// Parses iked.conf text; `include` files come from `loader`.
pub fn from_text(
    text: &str,
    path: &str,
    macros: &[(String, String)],
    loader: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<Setup, String> {
    let defines: Vec<String> = macros.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let defines: Vec<&str> = defines.iter().map(String::as_str).collect();
    let conf = crate::ikev2::conf::parse::parse_with(path, text, &defines, loader)
        .map_err(|e| e.to_string())?;
    let (policy, mut warnings) = conf.to_engine_as(crate::sys::hostname().as_deref())?;
    let s = &conf.settings;
    let mut active = Vec::new();
    for p in conf.policies.iter().filter(|p| p.mode == Mode::Active) {
        let Some(peer) = policy.peers.iter().find(|x| x.name == p.name) else {
            continue;
        };
        if matches!(peer.auth, PeerAuth::EapServer(_)) {
            warnings.push(format!(
                "policy \"{}\": active with eap: iked is no EAP client, only answered",
                peer.name
            ));
            continue;
        }
        if peer.remote.ip().is_unspecified() {
            warnings.push(format!(
                "policy \"{}\": active without a peer address, only answered",
                peer.name
            ));
            continue;
        }
        active.push(peer.name.clone());
    }
    Ok(Setup {
        active,
        passive: s.passive,
        decouple: s.decouple,
        dpd_secs: u64::from(s.dpd_check_interval),
        fragmentation: s.fragmentation,
        mobike: s.mobike,
        includes: Vec::new(),
        warnings,
        policy,
        users: conf.users,
    })
}

/// What was loaded from /etc/iked (the engine holds the credentials themselves): for
/// `ikectl show certstore` and the warnings about rules that cannot sign.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertStore {
    /// Our private key's kind, when one is loaded.
    pub key: Option<KeyKind>,
    /// Our certificate (the one holding the private key): its subject and the
    /// subjectAltNames a peer may know us by.
    pub cert: Option<(String, Vec<String>)>,
    /// The subjects of the trusted CAs.
    pub cas: Vec<String>,
    /// The CRLs in force, by file name.
    pub crls: Vec<String>,
    /// The peers' raw public keys: `kind/ID` (pubkeys/ipv4/192.0.2.2, ...).
    pub pubkeys: Vec<String>,
}

impl CertStore {
    pub fn of(c: &Credentials) -> CertStore {
        CertStore {
            key: c.signer.as_ref().map(|k| k.kind()),
            cert: c.cert.as_ref().map(|cert| {
                let n = cert.names();
                let alt = n
                    .ips
                    .iter()
                    .map(|a| format!("IP:{a}"))
                    .chain(n.dns.iter().map(|d| format!("DNS:{d}")))
                    .chain(n.emails.iter().map(|e| format!("email:{e}")))
                    .collect();
                (cert.subject(), alt)
            }),
            cas: c.cas.iter().map(|ca| ca.subject()).collect(),
            crls: c
                .trust
                .as_ref()
                .map(|t| t.crls().map(str::to_owned).collect())
                .unwrap_or_default(),
            pubkeys: c
                .pubkeys
                .iter()
                .map(|(kind, name, _)| format!("{kind}/{name}"))
                .collect(),
        }
    }

    /// `ikectl show certstore`: one line per CA, then our certificate and key, the CRLs
    /// and the raw public keys.
    pub fn show(&self) -> String {
        let mut o = String::new();
        for ca in &self.cas {
            let _ = writeln!(o, "ca: {ca}");
        }
        match &self.cert {
            Some((subject, alt)) => {
                let _ = writeln!(o, "local: {subject}");
                if !alt.is_empty() {
                    let _ = writeln!(o, "local: subjectAltName {}", alt.join(", "));
                }
            }
            None => o.push_str("local: no certificate holding our private key\n"),
        }
        let _ = writeln!(
            o,
            "key: {}",
            self.key
                .map_or("none (no private/local.key)", key_kind_name)
        );
        for c in &self.crls {
            let _ = writeln!(o, "crl: {c}");
        }
        for p in &self.pubkeys {
            let _ = writeln!(o, "pubkey: {p}");
        }
        o
    }
}

/// The rules that authenticate with signatures but cannot sign with our private key
/// (`key`: its kind, None without one), one warning each. The rule stays loaded: its
/// IKE_AUTH fails, and the engine logs why, when it is negotiated.
pub fn signature_warnings(policy: &Policy, key: Option<KeyKind>) -> Vec<String> {
    let mut w = Vec::new();
    for p in &policy.peers {
        let Some(m) = p.auth.sig().filter(|_| p.auth.we_sign()) else {
            continue;
        };
        let (word, wants) = match m {
            SigMethod::Any => ("signature authentication", None),
            SigMethod::Rfc7427 => ("rfc7427", None),
            SigMethod::Rsa => ("rsa", Some(KeyKind::Rsa)),
            SigMethod::Ecdsa256 => ("ecdsa256", Some(KeyKind::EcP256)),
            SigMethod::Ecdsa384 => ("ecdsa384", Some(KeyKind::EcP384)),
            SigMethod::Ecdsa521 => ("ecdsa521", Some(KeyKind::EcP521)),
        };
        let why = match (key, wants) {
            (None, _) => format!(
                "no private key is loaded ({})",
                crate::pki::Paths::iked().key
            ),
            (Some(KeyKind::Other), _) => "our private key is neither RSA nor ECDSA".into(),
            (Some(k), Some(want)) if k != want => format!(
                "our private key is {}, not {}",
                key_kind_name(k),
                key_kind_name(want)
            ),
            _ => continue,
        };
        w.push(format!(
            "policy \"{}\": {word}, but {why}: its IKE_AUTH will fail",
            p.name
        ));
    }
    w
}

/// The IKEv2 side of the daemon.
pub struct V2 {
    pub engine: Engine,
    pub setup: Setup,
    /// What the credentials the engine holds are made of.
    pub certstore: CertStore,
    /// -S, `set passive` or `ikectl passive`: nothing is started.
    pub passive: bool,
    /// `ikectl decouple` / `set decouple`.
    pub decoupled: bool,
    /// The control socket, listening.
    pub control: Option<OwnedFd>,
    /// IKEv1 datagrams dropped (iked speaks IKEv2 only).
    pub v1_dropped: u64,
    /// `ikectl monitor` clients.
    pub monitors: crate::iked::monitor_ctl::Monitors,
}

impl V2 {
    /// `kernel`: a kernel backend answers (not -X): SPIs come from it and CHILD_SAs wait
    /// for its installs.
    pub fn new(
        setup: Setup,
        opts: &Options,
        control: Option<OwnedFd>,
        kernel: bool,
        now: Time,
    ) -> V2 {
        let config = Config {
            nat_port: opts.udpencap_port,
            liveness_secs: setup.dpd_secs,
            fragmentation: setup.fragmentation,
            mobike: setup.mobike,
            // As iked: MOBIKE_SUPPORTED only in answer (we move no IKE SA of ours).
            mobike_offer: false,
            kernel_answers: kernel,
            ..Config::default()
        };
        let mut engine = Engine::new(
            config,
            setup.policy.clone(),
            now,
            crate::ike::crypto::random_source(opts.seed),
        );
        let mut setup = setup;
        engine.set_eap_users(eap_users(&mut setup));
        engine.set_coupled(!setup.decouple);
        V2 {
            engine,
            passive: opts.passive || setup.passive,
            decoupled: setup.decouple,
            setup,
            certstore: CertStore::default(),
            control,
            v1_dropped: 0,
            monitors: Default::default(),
        }
    }

    /// Our key material, read from /etc/iked (startup and reload), for the engine; None
    /// (it did not make credentials, logged) keeps the running ones. Then warns about the
    /// rules that cannot sign with what we have.
    pub fn set_credentials(&mut self, c: Option<Credentials>) {
        if let Some(c) = c {
            self.certstore = CertStore::of(&c);
            self.engine.set_credentials(c);
        }
        self.warn_signers();
    }

    /// Logs [`signature_warnings`] for the policies in force.
    pub fn warn_signers(&self) {
        for w in signature_warnings(&self.setup.policy, self.certstore.key) {
            crate::log_warn!("{w}");
        }
    }

    /// Puts in the kernel the flows of every `active` policy (it has a peer address),
    /// and takes them out again, as the mode asks: none when passive (-S, `set
    /// passive`, `ikectl passive`: nothing may start) or decoupled. A `passive` policy
    /// has none until its CHILD_SA (as iked, which installs flows only with CHILD SAs);
    /// an ACQUIRE from flows installed otherwise (ipsecctl, `ip xfrm policy`) still
    /// starts it, as iked's ikev2_child_sa_acquire starts whatever policy matches.
    pub fn sync_flows(&mut self) {
        let want: Vec<String> = if self.passive || self.decoupled {
            Vec::new()
        } else {
            self.setup
                .policy
                .peers
                .iter()
                .filter(|p| !p.remote.ip().is_unspecified())
                .filter(|p| self.setup.active.contains(&p.name))
                .map(|p| p.name.clone())
                .collect()
        };
        let loaded: Vec<String> = self.engine.loaded_flows().map(str::to_owned).collect();
        for name in loaded.iter().filter(|n| !want.contains(n)) {
            log::info!("ikev2: policy \"{name}\": flows unloaded");
            self.engine.unload_flows(name);
        }
        for name in want.iter().filter(|n| !loaded.contains(n)) {
            match self.engine.load_flows(name) {
                Ok(()) => log::info!("ikev2: policy \"{name}\": flows loaded"),
                Err(e) => crate::log_warn!("ikev2: policy \"{name}\": flows not loaded: {e}"),
            }
        }
    }

    /// `ikectl couple` / `decouple` (iked.conf's `set decouple`): the negotiated SAs
    /// and every flow go out of the kernel, or back in.
    pub fn set_decoupled(&mut self, decoupled: bool) {
        self.decoupled = decoupled;
        self.engine.set_coupled(!decoupled);
        self.sync_flows();
    }

    /// Takes every policy's flows out of the kernel (shutdown, before a new
    /// configuration).
    pub fn unload_flows(&mut self) {
        let loaded: Vec<String> = self.engine.loaded_flows().map(str::to_owned).collect();
        for name in &loaded {
            self.engine.unload_flows(name);
        }
    }

    /// A kernel ACQUIRE for traffic from `src` to `dst` towards `peer` (see
    /// `Engine::acquire`); nothing starts when passive.
    pub fn acquire(&mut self, now: Time, src: IpAddr, dst: IpAddr, peer: IpAddr) {
        if !self.passive {
            self.engine.acquire(now, src, dst, peer);
        }
    }

    /// Starts the active policies that have no IKE SA, unless passive.
    pub fn start_policies(&mut self, now: Time) {
        if self.passive {
            return;
        }
        for name in &self.setup.active {
            let ike = self.engine.ike_sas().find(|(_, sa)| &sa.peer == name);
            match ike {
                // Up without its CHILD_SA (refused by the peer or our kernel at
                // IKE_AUTH, or deleted by the peer): ask for one again.
                Some((_, sa))
                    if sa.state == IkeState::Established
                        && !self.engine.child_sas().any(|c| &c.peer == name) =>
                {
                    log::info!("ikev2: policy \"{name}\": no CHILD_SA, creating one");
                    self.engine.create_child(now, name);
                }
                Some(_) => {}
                None => {
                    if let Err(e) = self.engine.connect(now, name) {
                        log::warn!("ikev2: policy \"{name}\": not started: {e:?}");
                    }
                }
            }
        }
    }

    /// A new configuration (SIGHUP, `ikectl reload` or `load`): the running SAs stay with
    /// the policies of the same name.
    pub fn apply(&mut self, now: Time, setup: Setup) {
        let mut setup = setup;
        self.engine.set_eap_users(eap_users(&mut setup));
        // The flows of the old policies go; those of the new ones come with sync_flows.
        self.unload_flows();
        let gone = self.engine.set_policy(now, setup.policy.clone());
        if gone > 0 {
            log::info!("ikev2: {gone} IKE SA(s) deleted with their policies");
        }
        self.passive = self.passive || setup.passive;
        self.decoupled = setup.decouple;
        self.engine.set_coupled(!self.decoupled);
        self.setup = setup;
        self.sync_flows();
    }

    /// Deletes every IKE SA (shutdown, `ikectl reset sa`): the established ones with a
    /// Delete to the peer.
    pub fn delete_all(&mut self, now: Time) -> usize {
        let names: Vec<String> = self
            .engine
            .ike_sas()
            .map(|(_, sa)| sa.peer.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        names
            .iter()
            .map(|n| self.engine.delete_ike(now, IkeRef::Peer(n)))
            .sum()
    }

    /// `ikectl show sa`, in iked's layout (`iked_sas:`, `sa_childsas:`, `sa_flows:`,
    /// then `iked_activesas:` and `iked_flows:`), each IKE SA line followed by what iked
    /// does not print: the EAP user, algorithms and lifetime.
    pub fn show_sa(&self, now: Time) -> String {
        let mut o = String::new();
        let mut active = String::new();
        let mut flows = String::new();
        for (h, sa) in self.engine.ike_sas() {
            let id = 0x1000 + h.idx as u64;
            let state = match sa.state {
                IkeState::InitSent | IkeState::HalfOpen => "SA_INIT",
                IkeState::AuthSent => "AUTH_REQUEST",
                IkeState::Established => "ESTABLISHED",
            };
            let pol = self
                .setup
                .policy
                .peers
                .iter()
                .position(|p| p.name == sa.peer)
                .unwrap_or(0);
            // The peer's ID as the policy requires it (dstid), as iked shows it.
            let dstid = self
                .setup
                .policy
                .peers
                .get(pol)
                .and_then(|p| p.remote_id.as_ref())
                .map(id_text)
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "iked_sas: 0x{id:x} rspi 0x{} ispi 0x{} {}->{}{dstid}[{}] {state} {}{} nexti 0x0 pol 0x{:x}",
                hex(&sa.spi_r),
                hex(&sa.spi_i),
                sa.local,
                sa.remote,
                // iked: the address its pool leased to the peer.
                sa.peer_vip.map_or(String::new(), |a| a.to_string()),
                if sa.initiator { "i" } else { "r" },
                if sa.nat_local || sa.nat_remote {
                    " natt"
                } else {
                    ""
                },
                0x100 + pol
            );
            let _ = writeln!(
                o,
                "  sa_policy: \"{}\"{}{}{}",
                sa.peer,
                // The EAP user (iked keeps it as sa_eapid, for RADIUS, and does not show it).
                sa.eap_id
                    .as_ref()
                    .map_or(String::new(), |u| format!(" eapid \"{u}\"")),
                times(now, sa.established, sa.rekey_at, sa.expires_at),
                match &sa.suite {
                    Some(s) => format!(
                        " enc {} auth {}",
                        encr_name(s.encr),
                        s.integ.map(integ_name).unwrap_or("none")
                    ),
                    None => String::new(),
                }
            );
            for (k, c) in self.engine.child_sas().filter(|c| c.ike == h).enumerate() {
                let cid = (id << 8) + 2 * k as u64;
                for (dir, spi, from, to, cid, peer_id, flags) in [
                    ("out", c.spi_out, sa.local, sa.remote, cid, cid + 1, "(L)"),
                    ("in", c.spi_in, sa.remote, sa.local, cid + 1, cid, "(LA)"),
                ] {
                    let line = format!(
                        "0x{cid:x} ESP 0x{spi:08x} {dir} {from} -> {to} {flags} B=0x0 P=0x{peer_id:x} @0x{id:x}{}",
                        if c.rekeyed { " rekeyed" } else { "" }
                    );
                    let _ = writeln!(o, "  sa_childsas: {line}");
                    let _ = writeln!(active, "iked_activesas: {line}");
                }
                let _ = writeln!(
                    o,
                    "  sa_childsas: enc {} auth {}{}",
                    encr_name(c.encr),
                    c.integ.map(integ_name).unwrap_or("none"),
                    times(now, c.established, c.rekey_at, c.expires_at)
                );
                let pairs = if c.flows.is_empty() {
                    crate::ikev2::policy::flow_pairs(&[], &c.ts_local, &c.ts_remote)
                } else {
                    c.flows.clone()
                };
                for (l, r) in &pairs {
                    for (dir, a, b) in [("out", l, r), ("in", r, l)] {
                        let line = format!(
                            "0x{:x} ESP {dir} {} -> {} [{}]@-1 (L) @0x{id:x}",
                            cid,
                            sel(a),
                            sel(b),
                            a.protocol
                        );
                        let _ = writeln!(o, "  sa_flows: {line}");
                        let _ = writeln!(flows, "iked_flows: {line}");
                    }
                }
            }
        }
        o.push_str(&active);
        o.push_str(&flows);
        o
    }

    /// `ikectl show flows`: the flows of the CHILD SAs.
    pub fn show_flows(&self, now: Time) -> String {
        self.show_sa(now)
            .lines()
            .filter(|l| l.starts_with("iked_flows:"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// `ikectl show stats`: the engine's counters, one per line.
    pub fn show_stats(&self) -> String {
        let s = self.engine.stats();
        let mut o = String::new();
        for (name, v) in [
            ("datagrams received", s.datagrams_received),
            ("datagrams dropped", s.datagrams_dropped),
            ("IKEv1 datagrams dropped", self.v1_dropped),
            ("responses resent", s.responses_resent),
            ("retransmits", s.retransmits),
            ("IKE SAs established", s.ike_sas_established),
            ("CHILD SAs established", s.child_sas_established),
            ("exchanges failed", s.failed),
            ("half-open refused", s.half_open_refused),
            ("half-open expired", s.half_open_expired),
            ("cookies sent", s.cookies_sent),
            ("cookies invalid", s.cookies_invalid),
            ("CHILD SAs deleted", s.child_sas_deleted),
            ("liveness checks", s.liveness_checks),
            ("dead peers", s.dead_peers),
            ("CHILD SAs rekeyed", s.child_sas_rekeyed),
            ("IKE SAs rekeyed", s.ike_sas_rekeyed),
        ] {
            let _ = writeln!(o, "{name}: {v}");
        }
        let _ = writeln!(
            o,
            "IKE SAs: {}\nCHILD SAs: {}\nmode: {}, {}",
            self.engine.ike_sas().count(),
            self.engine.child_sas().count(),
            if self.passive { "passive" } else { "active" },
            if self.decoupled {
                "decoupled"
            } else {
                "coupled"
            }
        );
        o
    }
}

/// ` age 12s rekey 3590s expires 3600s`: how old an SA is and when it is rekeyed and
/// deleted, in seconds from now.
fn times(now: Time, established: Time, rekey: Option<Time>, expires: Option<Time>) -> String {
    let mut o = format!(" age {}s", established.until(now) / 1000);
    if let Some(t) = rekey {
        let _ = write!(o, " rekey {}s", now.until(t) / 1000);
    }
    if let Some(t) = expires {
        let _ = write!(o, " expires {}s", now.until(t) / 1000);
    }
    o
}

/// `<FQDN/gw.example>`, iked's way of printing an ID.
fn id_text(id: &Identity) -> String {
    let value = match id.ty {
        IdType::IPV4_ADDR | IdType::IPV6_ADDR => <[u8; 4]>::try_from(&id.data[..])
            .map(|a| std::net::IpAddr::from(a).to_string())
            .or_else(|_| {
                <[u8; 16]>::try_from(&id.data[..]).map(|a| std::net::IpAddr::from(a).to_string())
            })
            .unwrap_or_default(),
        _ => String::from_utf8_lossy(&id.data).into_owned(),
    };
    let ty = match id.ty {
        IdType::IPV4_ADDR => "IPV4",
        IdType::IPV6_ADDR => "IPV6",
        IdType::FQDN => "FQDN",
        IdType::RFC822_ADDR => "UFQDN",
        IdType::DER_ASN1_DN => "ASN1_DN",
        _ => "KEY_ID",
    };
    format!("<{ty}/{value}>")
}

fn sel(s: &Selector) -> String {
    crate::ikev2::policy::selector_text(s)
}

fn encr_name(e: Encr) -> String {
    match e {
        Encr::AesCbc(n) => format!("aes-{}", n * 8),
        Encr::Aead(AeadAlg::AesGcm(n)) => format!("aes-{}-gcm", n * 8),
        Encr::Aead(AeadAlg::ChaCha20Poly1305) => "chacha20-poly1305".into(),
    }
}

fn integ_name(i: Integ) -> &'static str {
    match i {
        Integ::HmacSha1_96 => "hmac-sha1",
        Integ::HmacSha2_256_128 => "hmac-sha2-256",
        Integ::HmacSha2_384_192 => "hmac-sha2-384",
        Integ::HmacSha2_512_256 => "hmac-sha2-512",
    }
}

/// The IKE major version of a datagram (RFC 7296 §3.1: the high nibble of octet 17),
/// after the non-ESP marker on the NAT-T port; None for a keepalive or a runt.
pub fn ike_major(data: &[u8], encap: bool) -> Option<u8> {
    let d = if encap {
        data.strip_prefix(&[0u8; 4][..])?
    } else {
        data
    };
    d.get(17).map(|v| v >> 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(text: &str) -> Setup {
        from_text(text, "t.conf", &[], &mut |p: &str| {
            Err(format!("{p}: no include"))
        })
        .unwrap()
    }

    #[test]
    fn rules_that_cannot_sign_are_named() {
        let s = setup(
            "ikev2 \"p\" esp from 10.0.0.0/24 to 10.0.1.0/24 peer 192.0.2.2 psk \"k\"\n\
             ikev2 \"any\" esp from 10.0.0.0/24 to 10.0.2.0/24 peer 192.0.2.3\n\
             ikev2 \"ec\" esp from 10.0.0.0/24 to 10.0.3.0/24 peer 192.0.2.4 ecdsa256\n\
             ikev2 \"r\" esp from 10.0.0.0/24 to 10.0.4.0/24 peer 192.0.2.5 rfc7427\n",
        );
        assert_eq!(s.policy.peers.len(), 4, "{:?}", s.warnings);
        let w = signature_warnings(&s.policy, None);
        assert_eq!(w.len(), 3, "{w:?}");
        assert_eq!(
            w[0],
            "policy \"any\": signature authentication, but no private key is loaded \
             (/etc/iked/private/local.key): its IKE_AUTH will fail"
        );
        assert!(w[1].starts_with("policy \"ec\": ecdsa256, but no private key"));
        assert!(w[2].starts_with("policy \"r\": rfc7427, but no private key"));
        // An RSA key signs for any signature and RFC 7427, not for ecdsa256.
        let w = signature_warnings(&s.policy, Some(KeyKind::Rsa));
        assert_eq!(
            w,
            [
                "policy \"ec\": ecdsa256, but our private key is RSA, not ECDSA P-256: \
              its IKE_AUTH will fail"
            ]
        );
        assert!(signature_warnings(&s.policy, Some(KeyKind::EcP256)).is_empty());
        let w = signature_warnings(&s.policy, Some(KeyKind::Other));
        assert_eq!(w.len(), 3);
        assert!(w[0].contains("neither RSA nor ECDSA"), "{w:?}");
    }

    #[test]
    fn certstore_lines() {
        assert_eq!(
            CertStore::default().show(),
            "local: no certificate holding our private key\nkey: none (no private/local.key)\n"
        );
        let c = CertStore {
            key: Some(KeyKind::EcP256),
            cert: Some((
                "CN=west".into(),
                vec!["IP:192.0.2.1".into(), "DNS:west".into()],
            )),
            cas: vec!["CN=ca".into()],
            crls: vec!["ca.crl".into()],
            pubkeys: vec!["fqdn/east.example".into()],
        };
        assert_eq!(
            c.show(),
            "ca: CN=ca\nlocal: CN=west\nlocal: subjectAltName IP:192.0.2.1, DNS:west\n\
             key: ECDSA P-256\ncrl: ca.crl\npubkey: fqdn/east.example\n"
        );
    }

    #[test]
    fn major_version() {
        let mut m = [0u8; 28];
        m[17] = 0x20;
        assert_eq!(ike_major(&m, false), Some(2));
        m[17] = 0x10;
        assert_eq!(ike_major(&m, false), Some(1));
        let mut e = vec![0u8; 4];
        e.extend_from_slice(&m);
        assert_eq!(ike_major(&e, true), Some(1));
        assert_eq!(ike_major(&[0xff], true), None);
        assert_eq!(ike_major(&m[..10], false), None);
    }
}
