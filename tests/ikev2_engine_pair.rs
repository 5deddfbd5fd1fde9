//! Two IKEv2 engines in memory (issue 16): a virtual clock that jumps to the next deadline,
//! seeded randomness, and a network between them that can lose or duplicate any message.
//! IKE_SA_INIT and IKE_AUTH with a pre-shared key must end with the same IKE SA and the
//! same CHILD_SA (keys and SPIs mirrored) on both sides, and a failure with nothing on
//! either side.
//!
//! Each side has a fake kernel that takes the engine's requests (`poll_kernel`) in order
//! and keeps the states, flows and reserved SPIs they leave; with
//! `Config::kernel_answers` it answers them (`kernel_reply`), after a delay of virtual
//! time if asked, and can be told to refuse. Whatever the scenario, each kernel must end
//! holding exactly the CHILD_SAs its engine has.

use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

use isakmpd::ike::crypto::SeededRandom;
use isakmpd::ike::sa::{KernelOp, KernelReply, KernelReq};
use isakmpd::ikev2::engine::{
    ChildRef, ChildSa, Engine, IkeRef, IkeState, Stats, KERNEL_TICKET_BIT,
};
use isakmpd::ikev2::policy::{
    Config, EspProposal, Identity, IkeProposal, Peer, PeerAuth, Policy, Selector, SigMethod,
};
use isakmpd::ikev2::wire::{
    DhGroup, EncrId, ExchangeType, IntegId, Message, NotifyType, Payload, PayloadType, PrfId,
    FLAG_RESPONSE,
};
use isakmpd::timer::Time;

#[path = "common/pki.rs"]
mod pki;

const WEST: &str = "192.0.2.1:500";
const EAST: &str = "192.0.2.2:500";

const CBC_MODP2048: IkeProposal = IkeProposal {
    encr: EncrId::AES_CBC,
    key_bits: Some(256),
    integ: Some(IntegId::HMAC_SHA2_256_128),
    prf: PrfId::HMAC_SHA2_256,
    dh: DhGroup::MODP_2048,
};
const GCM_ECP256: IkeProposal = IkeProposal {
    encr: EncrId::AES_GCM_16,
    key_bits: Some(256),
    integ: None,
    prf: PrfId::HMAC_SHA2_256,
    dh: DhGroup::ECP_256,
};
const ESP_CBC: EspProposal = EspProposal {
    encr: EncrId::AES_CBC,
    key_bits: Some(256),
    integ: Some(IntegId::HMAC_SHA2_256_128),
    pfs: None,
};
const ESP_GCM: EspProposal = EspProposal {
    encr: EncrId::AES_GCM_16,
    key_bits: Some(256),
    integ: None,
    pfs: None,
};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> Selector {
    let (a, p) = s.split_once('/').unwrap();
    Selector::subnet(a.parse::<IpAddr>().unwrap(), p.parse().unwrap())
}

fn peer(me: &str, psk: &str, ike: &[IkeProposal], esp: &[EspProposal]) -> Peer {
    let (local, remote, lnet, rnet) = if me == WEST {
        (WEST, EAST, "198.51.100.0/24", "203.0.113.0/24")
    } else {
        (EAST, WEST, "203.0.113.0/24", "198.51.100.0/24")
    };
    Peer {
        name: "peer".into(),
        local: addr(local),
        remote: addr(remote),
        auth: PeerAuth::psk(psk.as_bytes()),
        local_id: Identity::addr(addr(local).ip()),
        remote_id: Some(Identity::addr(addr(remote).ip())),
        ike: ike.to_vec(),
        esp: esp.to_vec(),
        local_ts: vec![net(lnet)],
        remote_ts: vec![net(rnet)],
        flows: Vec::new(),
        transport: false,
        // No lifetimes unless a test sets them: `drive` runs until nothing is due.
        ike_lifetime_secs: 0,
        child_lifetime_secs: 0,
        child_lifetime_bytes: 0,
        cp: Default::default(),
    }
}

fn engine(p: Peer, seed: u64) -> Engine {
    engine_with(p, seed, Config::default())
}

fn engine_with(p: Peer, seed: u64, config: Config) -> Engine {
    Engine::new(
        config,
        Policy { peers: vec![p] },
        Time(0),
        Box::new(SeededRandom::new(seed)),
    )
}

/// What the network does with a datagram.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Deliver,
    Drop,
    Duplicate,
    /// Kept back until nothing else is on the wire: everything sent meanwhile overtakes
    /// it (reordering).
    Hold,
}

/// A datagram on the wire: from west, source, destination, bytes.
struct Datagram {
    from_west: bool,
    src: SocketAddr,
    dst: SocketAddr,
    data: Vec<u8>,
}

/// Which of the four messages a datagram is: 0 IKE_SA_INIT request, 1 its response,
/// 2 IKE_AUTH request, 3 its response; 4 anything else.
fn kind(d: &[u8]) -> usize {
    let Ok(m) = Message::parse(d) else { return 4 };
    let r = usize::from(m.header.flags & FLAG_RESPONSE != 0);
    match m.header.exchange {
        ExchangeType::IKE_SA_INIT => r,
        ExchangeType::IKE_AUTH => 2 + r,
        _ => 4,
    }
}

/// A kernel as the engine sees it: GetSpi answered with SPIs from its own range, AddSa
/// and DeleteSa kept as states (destination, SPI) and flows (the client IDs), checked the
/// way XFRM would (an inbound SA on a reserved SPI takes its larval state; no state
/// twice).
#[derive(Default)]
struct FakeKernel {
    next_spi: u32,
    /// Every SPI GetSpi handed out.
    allocated: Vec<u32>,
    /// Reserved SPIs no SA has taken yet: (our address, SPI).
    larval: BTreeSet<(IpAddr, u32)>,
    states: BTreeSet<(IpAddr, u32)>,
    flows: BTreeSet<(Vec<u8>, Vec<u8>)>,
    /// AddSa requests for transport-mode SAs.
    transport_adds: usize,
    /// Refuse this many of the next AddSa / GetSpi requests.
    refuse_add: usize,
    refuse_spi: usize,
    /// UpdateSa requests, in order.
    updates: Vec<Update>,
    /// MigrateSa requests, in order: inbound SPI, the new local and remote addresses.
    migrations: Vec<(u32, IpAddr, IpAddr)>,
}

/// An UpdateSa the fake kernel took: inbound SPI, the peer's address, the encapsulation.
type Update = (u32, SocketAddr, Option<(u16, u16)>);

impl FakeKernel {
    fn new(first_spi: u32) -> FakeKernel {
        FakeKernel {
            next_spi: first_spi,
            ..FakeKernel::default()
        }
    }

    /// Takes one request; returns the answer and a line for the timeline.
    fn take(&mut self, req: &KernelReq) -> (KernelReply, String) {
        let failed = |why: &str| KernelReply::Failed(why.into());
        match req {
            KernelReq::GetSpi { dst, .. } => {
                if self.refuse_spi > 0 {
                    self.refuse_spi -= 1;
                    return (failed("refused"), "refused getspi".into());
                }
                let spi = self.next_spi;
                self.next_spi += 1;
                self.allocated.push(spi);
                self.larval.insert((*dst, spi));
                (
                    KernelReply::Spi(spi.to_be_bytes()),
                    format!("spi {spi:08x}"),
                )
            }
            KernelReq::DeleteSpi { dst, spi, .. } => {
                let spi = u32::from_be_bytes(*spi);
                assert!(self.larval.remove(&(*dst, spi)), "DeleteSpi of {spi:08x}");
                (KernelReply::Done, format!("delspi {spi:08x}"))
            }
            KernelReq::AddSa(sa, part) => {
                let (i, o) = (
                    u32::from_be_bytes(sa.spi_in),
                    u32::from_be_bytes(sa.spi_out),
                );
                if self.refuse_add > 0 {
                    self.refuse_add -= 1;
                    return (failed("refused"), format!("refused add {i:08x}"));
                }
                let (inb, outb) = ((sa.local.ip(), i), (sa.remote.ip(), o));
                let (with_in, with_out) = halves(*part);
                if with_in && sa.spi_from_kernel && !self.larval.remove(&inb) {
                    return (failed("no larval state"), format!("bad add {i:08x}"));
                }
                if (with_in && self.states.contains(&inb))
                    || (with_out && self.states.contains(&outb))
                {
                    return (failed("File exists"), format!("bad add {i:08x}"));
                }
                if with_in {
                    self.states.insert(inb);
                }
                if sa.encapsulation == isakmpd::ike::wire::EncapsulationMode::TRANSPORT {
                    self.transport_adds += 1;
                }
                if with_out {
                    self.states.insert(outb);
                    // The flows go with the outbound half.
                    for (l, r) in sa.flow_set().pairs {
                        self.flows.insert((l.data, r.data));
                    }
                }
                let what = match (with_in, with_out) {
                    (true, true) => format!("add {i:08x} {o:08x}"),
                    (true, false) => format!("add {i:08x} in"),
                    _ => format!("add-out {o:08x}"),
                };
                (KernelReply::Done, what)
            }
            KernelReq::DeleteSa(sa, part, keep_flows) => {
                let (i, o) = (
                    u32::from_be_bytes(sa.spi_in),
                    u32::from_be_bytes(sa.spi_out),
                );
                let (with_in, with_out) = halves(*part);
                if with_in {
                    // XFRM's DELSA takes a larval state too.
                    self.larval.remove(&(sa.local.ip(), i));
                    self.states.remove(&(sa.local.ip(), i));
                }
                if with_out {
                    self.states.remove(&(sa.remote.ip(), o));
                }
                if with_out && !keep_flows {
                    for (l, r) in sa.flow_set().pairs {
                        self.flows.remove(&(l.data, r.data));
                    }
                }
                let half = if with_out { "" } else { " in" };
                (
                    KernelReply::Done,
                    format!("del {i:08x} {o:08x}{half} keep {keep_flows}"),
                )
            }
            KernelReq::UpdateSa(sa) => {
                let (i, o) = (
                    u32::from_be_bytes(sa.spi_in),
                    u32::from_be_bytes(sa.spi_out),
                );
                // XFRM_MSG_UPDSA: both states must be there already.
                if !self.states.contains(&(sa.local.ip(), i))
                    || !self.states.contains(&(sa.remote.ip(), o))
                {
                    return (failed("No such process"), format!("bad update {i:08x}"));
                }
                self.updates.push((i, sa.remote, sa.encap));
                (KernelReply::Done, format!("update {i:08x} {o:08x}"))
            }
            KernelReq::MigrateSa(old, sa, part) => {
                let (i, o) = (
                    u32::from_be_bytes(sa.spi_in),
                    u32::from_be_bytes(sa.spi_out),
                );
                // XFRM_MSG_MIGRATE: the states move, the same SPIs (and keys,
                // counters) at the new addresses; the flows' selectors stay.
                assert_eq!(*part, isakmpd::ike::sa::Part::Both);
                assert_eq!((old.spi_in, old.spi_out), (sa.spi_in, sa.spi_out));
                if !self.states.remove(&(old.local.ip(), i))
                    || !self.states.remove(&(old.remote.ip(), o))
                {
                    return (failed("No such process"), format!("bad migrate {i:08x}"));
                }
                self.states.insert((sa.local.ip(), i));
                self.states.insert((sa.remote.ip(), o));
                self.migrations.push((i, sa.local.ip(), sa.remote.ip()));
                (KernelReply::Done, format!("migrate {i:08x} {o:08x}"))
            }
            KernelReq::AddFlows(fs) => {
                for (l, r) in &fs.pairs {
                    self.flows.insert((l.data.clone(), r.data.clone()));
                }
                (KernelReply::Done, format!("flows {}", fs.pairs.len()))
            }
            KernelReq::DeleteFlows(fs) => {
                for (l, r) in &fs.pairs {
                    self.flows.remove(&(l.data.clone(), r.data.clone()));
                }
                (KernelReply::Done, format!("delflows {}", fs.pairs.len()))
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.states.is_empty() && self.flows.is_empty() && self.larval.is_empty()
    }
}

/// Which halves of an SA a request is about: (inbound, outbound).
fn halves(part: isakmpd::ike::sa::Part) -> (bool, bool) {
    use isakmpd::ike::sa::Part;
    match part {
        Part::Both => (true, true),
        Part::Inbound => (true, false),
        Part::Outbound => (false, true),
    }
}

/// What happened, in order: a datagram sent, or a kernel request taken (with the number
/// of flows the kernel has afterwards).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Sent {
        from_west: bool,
        kind: usize,
        /// The exchange type and whether it is a response.
        exchange: (u8, bool),
    },
    Kernel {
        west: bool,
        what: String,
        flows: usize,
    },
}

/// A datagram's exchange type and whether it is a response ((0, false) if unparsable).
fn exchange(d: &[u8]) -> (u8, bool) {
    Message::parse(d).map_or((0, false), |m| {
        (m.header.exchange.0, m.header.flags & FLAG_RESPONSE != 0)
    })
}

struct Pair {
    west: Engine,
    east: Engine,
    now: Time,
    wire: VecDeque<Datagram>,
    /// Everything that was sent, in order.
    sent: Vec<Datagram>,
    fate: Box<dyn FnMut(&Datagram) -> Fate>,
    west_kernel: FakeKernel,
    east_kernel: FakeKernel,
    /// Kernel requests not yet taken: when, whose (west), the request.
    kernel_queue: VecDeque<(Time, bool, KernelOp)>,
    /// How long a kernel takes to answer, in milliseconds of virtual time.
    kernel_delay: u64,
    /// West is behind a NAT with this public address: its ports 500 and 4500 show as
    /// `nat_base` + 500 and + 4500 (40500 and 44500 unless a test moves them).
    nat: Option<IpAddr>,
    nat_base: u16,
    events: Vec<Event>,
    /// Datagrams held back ([`Fate::Hold`]), delivered in order once the wire is empty.
    held: VecDeque<Datagram>,
}

impl Pair {
    fn new(west: Peer, east: Peer) -> Pair {
        Pair {
            west: engine(west, 1),
            east: engine(east, 2),
            now: Time(0),
            wire: VecDeque::new(),
            sent: Vec::new(),
            fate: Box::new(|_| Fate::Deliver),
            west_kernel: FakeKernel::new(0x1000_0000),
            east_kernel: FakeKernel::new(0x2000_0000),
            kernel_queue: VecDeque::new(),
            kernel_delay: 0,
            nat: None,
            nat_base: 40_000,
            events: Vec::new(),
            held: VecDeque::new(),
        }
    }

    /// Engines whose kernels answer, after `delay_ms`.
    fn with_kernels(west: Peer, east: Peer, delay_ms: u64) -> Pair {
        let config = Config {
            kernel_answers: true,
            ..Config::default()
        };
        let mut p = Pair::new(west.clone(), east.clone());
        p.west = engine_with(west, 1, config.clone());
        p.east = engine_with(east, 2, config);
        p.kernel_delay = delay_ms;
        p
    }

    fn collect(&mut self) {
        let mut buf = vec![0u8; 65536];
        for from_west in [true, false] {
            let e = if from_west {
                &mut self.west
            } else {
                &mut self.east
            };
            while let Some(t) = e.poll_transmit(&mut buf) {
                let d = Datagram {
                    from_west,
                    src: t.local.unwrap(),
                    dst: t.remote,
                    data: buf[..t.len].to_vec(),
                };
                self.events.push(Event::Sent {
                    from_west,
                    kind: kind(&d.data),
                    exchange: exchange(&d.data),
                });
                self.sent.push(Datagram {
                    data: d.data.clone(),
                    ..d
                });
                self.wire.push_back(d);
            }
            while let Some(op) = e.poll_kernel() {
                let due = self.now.add_millis(self.kernel_delay);
                self.kernel_queue.push_back((due, from_west, op));
            }
        }
    }

    /// The kernel takes its next request, if it is due, and answers it.
    fn kernel_step(&mut self) -> bool {
        match self.kernel_queue.front() {
            Some((due, _, _)) if *due <= self.now => {}
            _ => return false,
        }
        let Some((_, west, op)) = self.kernel_queue.pop_front() else {
            return false;
        };
        let (e, k) = if west {
            (&mut self.west, &mut self.west_kernel)
        } else {
            (&mut self.east, &mut self.east_kernel)
        };
        let (reply, what) = k.take(&op.req);
        self.events.push(Event::Kernel {
            west,
            what,
            flows: k.flows.len(),
        });
        if op.ticket != 0 {
            assert_ne!(op.ticket & KERNEL_TICKET_BIT, 0, "an IKEv2 ticket");
            e.kernel_reply(self.now, op.ticket, reply);
        }
        true
    }

    /// The earliest timer or kernel answer.
    fn next_deadline(&mut self) -> Option<Time> {
        [
            self.west.poll_timeout(),
            self.east.poll_timeout(),
            self.kernel_queue.front().map(|k| k.0),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The kernel timeline of one side: (what, flows afterwards).
    fn kernel_events(&self, west: bool) -> Vec<(String, usize)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Kernel {
                    west: w,
                    what,
                    flows,
                } if *w == west => Some((what.clone(), *flows)),
                _ => None,
            })
            .collect()
    }

    /// Where in the timeline the first event `f` accepts is.
    fn position(&self, f: impl Fn(&Event) -> bool) -> usize {
        self.events
            .iter()
            .position(f)
            .unwrap_or_else(|| panic!("not in the timeline: {:#?}", self.events))
    }

    fn deliver(&mut self, d: &Datagram) {
        let base = self.nat_base;
        let (src, dst) = match (self.nat, d.from_west) {
            (Some(public), true) => (SocketAddr::new(public, base + d.src.port()), d.dst),
            (Some(public), false) => {
                // Only the NAT's current mappings lead to west.
                let port = d.dst.port().wrapping_sub(base);
                if d.dst.ip() != public || (port != 500 && port != 4500) {
                    return;
                }
                (d.src, SocketAddr::new(addr(WEST).ip(), port))
            }
            (None, _) => (d.src, d.dst),
        };
        let e = if d.from_west {
            &mut self.east
        } else {
            &mut self.west
        };
        e.handle_datagram(self.now, dst, src, &d.data);
    }

    /// One kernel request taken, one datagram delivered, or the clock moved to the next
    /// deadline; false when idle.
    fn step(&mut self) -> bool {
        self.collect();
        if self.kernel_step() {
            return true;
        }
        if let Some(d) = self.wire.pop_front() {
            match (self.fate)(&d) {
                Fate::Deliver => self.deliver(&d),
                Fate::Drop => {}
                Fate::Hold => self.held.push_back(d),
                Fate::Duplicate => {
                    self.deliver(&d);
                    self.collect();
                    self.deliver(&d);
                }
            }
            return true;
        }
        if let Some(d) = self.held.pop_front() {
            self.deliver(&d);
            return true;
        }
        let Some(next) = self.next_deadline() else {
            return false;
        };
        self.now = self.now.max(next);
        self.west.handle_timeout(self.now);
        self.east.handle_timeout(self.now);
        true
    }

    fn drive(&mut self) {
        for _ in 0..10_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the pair never went idle");
    }

    fn connect(&mut self) {
        self.west.connect(self.now, "peer").unwrap();
        self.drive();
    }

    /// Notifies of a type in cleartext messages sent by east.
    fn east_sent_notify(&self, ty: NotifyType) -> Vec<Vec<u8>> {
        self.sent
            .iter()
            .filter(|d| !d.from_west)
            .filter_map(|d| Message::parse(&d.data).ok().map(|m| (m, d)))
            .flat_map(|(m, _)| {
                m.payloads
                    .notifies()
                    .filter(|n| n.ty == ty)
                    .map(|n| n.data.to_vec())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn count(&self, k: usize) -> usize {
        self.sent.iter().filter(|d| kind(&d.data) == k).count()
    }
}

fn children(e: &Engine) -> Vec<ChildSa> {
    e.child_sas().cloned().collect()
}

/// Both sides hold one established IKE SA with the same SPIs and mirrored roles, and one
/// CHILD_SA whose inbound half is the other's outbound half.
fn assert_established(p: &Pair) {
    let w: Vec<_> = p.west.ike_sas().map(|(_, i)| i.clone()).collect();
    let e: Vec<_> = p.east.ike_sas().map(|(_, i)| i.clone()).collect();
    assert_eq!((w.len(), e.len()), (1, 1), "one IKE SA on each side");
    let (w, e) = (&w[0], &e[0]);
    assert_eq!(
        (w.state, e.state),
        (IkeState::Established, IkeState::Established)
    );
    assert!(w.initiator && !e.initiator);
    assert_eq!((w.spi_i, w.spi_r), (e.spi_i, e.spi_r));
    assert_ne!(w.spi_r, [0; 8]);
    assert_eq!(w.suite, e.suite);
    assert!(!w.nat_local && !w.nat_remote && !e.nat_local && !e.nat_remote);

    let (wc, ec) = (children(&p.west), children(&p.east));
    assert_eq!((wc.len(), ec.len()), (1, 1), "one CHILD_SA on each side");
    let (wc, ec) = (&wc[0], &ec[0]);
    assert_eq!((wc.spi_in, wc.spi_out), (ec.spi_out, ec.spi_in));
    assert_eq!((wc.encr, wc.integ), (ec.encr, ec.integ));
    assert_eq!(wc.encr_in, ec.encr_out);
    assert_eq!(wc.encr_out, ec.encr_in);
    assert_eq!(wc.integ_in, ec.integ_out);
    assert_eq!(wc.integ_out, ec.integ_in);
    assert_ne!(wc.encr_in, wc.encr_out);
    assert_eq!(wc.encr_in.len(), wc.encr.key_material_len());
    assert_eq!(wc.integ_in.len(), wc.integ.map_or(0, |i| i.key_len()));
    assert_eq!((&wc.ts_local, &wc.ts_remote), (&ec.ts_remote, &ec.ts_local));
    assert_eq!(wc.ts_local, vec![net("198.51.100.0/24")]);
    assert_eq!(wc.ts_remote, vec![net("203.0.113.0/24")]);
    assert_eq!(p.west.stats().ike_sas_established, 1);
    assert_eq!(p.east.stats().ike_sas_established, 1);
    assert_kernels_hold_the_child_sas(p);
}

fn assert_nothing(p: &Pair) {
    assert_eq!(p.west.ike_sas().count(), 0, "no IKE SA west");
    assert_eq!(p.east.ike_sas().count(), 0, "no IKE SA east");
    assert_eq!(p.west.child_sas().count(), 0, "no CHILD_SA west");
    assert_eq!(p.east.child_sas().count(), 0, "no CHILD_SA east");
    assert!(p.west_kernel.is_empty() && p.east_kernel.is_empty());
}

/// Each kernel holds exactly its engine's CHILD_SAs: both states of each, their flows,
/// and no reserved SPI left over (once the pair is idle).
fn assert_kernels_hold_the_child_sas(p: &Pair) {
    assert!(p.kernel_queue.is_empty(), "kernel requests still queued");
    for (e, k, name) in [
        (&p.west, &p.west_kernel, "west"),
        (&p.east, &p.east_kernel, "east"),
    ] {
        let mut states = BTreeSet::new();
        let mut flows = BTreeSet::new();
        for c in e.child_sas() {
            states.insert((c.local.ip(), c.spi_in));
            states.insert((c.remote.ip(), c.spi_out));
            for (l, r) in c.ipsec_sa(false).unwrap().flow_set().pairs {
                flows.insert((l.data, r.data));
            }
        }
        assert_eq!(k.states, states, "{name}'s kernel states");
        assert_eq!(k.flows, flows, "{name}'s kernel flows");
        assert!(k.larval.is_empty(), "{name}: SPIs left: {:?}", k.larval);
    }
}

fn stats(e: &Engine) -> Stats {
    *e.stats()
}

#[test]
fn establish_aes_cbc_sha256_modp2048() {
    let mut p = Pair::new(
        peer(WEST, "secret", &[CBC_MODP2048], &[ESP_CBC]),
        peer(EAST, "secret", &[CBC_MODP2048], &[ESP_CBC]),
    );
    p.connect();
    assert_established(&p);
    assert_eq!(
        (p.count(0), p.count(1), p.count(2), p.count(3)),
        (1, 1, 1, 1)
    );
    assert_eq!(stats(&p.west).retransmits, 0);
    // Both ends must agree on the IKE suite (AES-CBC-256, HMAC-SHA2-256-128).
    let (_, w) = p.west.ike_sas().next().unwrap();
    let s = w.suite.unwrap();
    assert_eq!(
        (s.encr.key_len(), s.integ.map(|i| i.icv_len())),
        (32, Some(16))
    );
}

#[test]
fn establish_aes_gcm_ecp256() {
    let mut p = Pair::new(
        peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        peer(
            EAST,
            "secret",
            &[GCM_ECP256, CBC_MODP2048],
            &[ESP_CBC, ESP_GCM],
        ),
    );
    p.connect();
    assert_established(&p);
    let c = children(&p.west);
    assert!(c[0].encr.is_aead() && c[0].integ.is_none());
    assert_eq!(c[0].encr_in.len(), 36, "AES-256 key and 4-byte salt");
}

#[test]
fn loss_of_each_message_once_is_recovered_by_retransmission() {
    for k in 0..4 {
        let mut p = Pair::new(
            peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
            peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        );
        let mut lost = false;
        p.fate = Box::new(move |d| {
            if !lost && kind(&d.data) == k {
                lost = true;
                Fate::Drop
            } else {
                Fate::Deliver
            }
        });
        p.connect();
        assert_established(&p);
        // Only the initiator retransmits (§2.1), once, after the loss.
        assert_eq!(stats(&p.west).retransmits, 1, "message {k}");
        assert_eq!(stats(&p.east).retransmits, 0, "message {k}");
        let request = k & !1;
        assert_eq!(p.count(request), 2, "message {k}: the request twice");
        if k % 2 == 1 {
            // The lost response came again from the responder's cache.
            assert_eq!(stats(&p.east).responses_resent, 1, "message {k}");
        }
    }
}

#[test]
fn duplicated_messages_are_answered_from_the_cache_and_make_no_second_sa() {
    for k in 0..4 {
        let mut p = Pair::new(
            peer(WEST, "secret", &[CBC_MODP2048], &[ESP_CBC]),
            peer(EAST, "secret", &[CBC_MODP2048], &[ESP_CBC]),
        );
        p.fate = Box::new(move |d| {
            if kind(&d.data) == k {
                Fate::Duplicate
            } else {
                Fate::Deliver
            }
        });
        p.connect();
        assert_established(&p);
        let (w, e) = (stats(&p.west), stats(&p.east));
        assert_eq!((w.retransmits, e.retransmits), (0, 0), "message {k}");
        if k % 2 == 0 {
            // A repeated request: the same response again, no new state.
            assert_eq!(e.responses_resent, 1, "message {k}");
            assert_eq!(p.count(k + 1), 2, "message {k}");
            assert_eq!(w.datagrams_dropped, 1, "the second response is dropped");
        } else {
            assert_eq!(
                w.datagrams_dropped, 1,
                "message {k}: duplicate response dropped"
            );
        }
    }
}

#[test]
fn wrong_psk_fails_cleanly_on_both_sides() {
    let mut p = Pair::new(
        peer(WEST, "secret", &[CBC_MODP2048], &[ESP_CBC]),
        peer(EAST, "other secret", &[CBC_MODP2048], &[ESP_CBC]),
    );
    p.connect();
    assert_nothing(&p);
    assert_eq!(stats(&p.west).failed, 1);
    assert_eq!(stats(&p.east).failed, 1);
    // The responder said so in its protected IKE_AUTH response, at once: no
    // retransmission, no timeout.
    assert_eq!(p.count(3), 1);
    assert_eq!(stats(&p.west).retransmits, 0);
    assert_eq!(p.now, Time(0));
}

#[test]
fn wrong_identity_fails_cleanly_on_both_sides() {
    let mut east = peer(EAST, "secret", &[CBC_MODP2048], &[ESP_CBC]);
    east.remote_id = Some(Identity::fqdn("somebody.example"));
    let mut p = Pair::new(peer(WEST, "secret", &[CBC_MODP2048], &[ESP_CBC]), east);
    p.connect();
    assert_nothing(&p);
}

#[test]
fn no_common_proposal_is_no_proposal_chosen() {
    let mut p = Pair::new(
        peer(WEST, "secret", &[CBC_MODP2048], &[ESP_CBC]),
        peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
    );
    p.connect();
    assert_nothing(&p);
    assert_eq!(p.east_sent_notify(NotifyType::NO_PROPOSAL_CHOSEN).len(), 1);
    assert_eq!(stats(&p.west).failed, 1);
    assert_eq!(p.count(0), 1, "no retry after NO_PROPOSAL_CHOSEN");
}

#[test]
fn no_common_esp_proposal_leaves_the_ike_sa_without_a_child() {
    let mut p = Pair::new(
        peer(WEST, "secret", &[CBC_MODP2048], &[ESP_CBC]),
        peer(EAST, "secret", &[CBC_MODP2048], &[ESP_GCM]),
    );
    p.connect();
    assert_eq!(p.west.ike_sas().count(), 1);
    assert_eq!(p.east.ike_sas().count(), 1);
    assert_eq!(
        (p.west.child_sas().count(), p.east.child_sas().count()),
        (0, 0)
    );
}

#[test]
fn disjoint_traffic_selectors_are_ts_unacceptable() {
    let mut east = peer(EAST, "secret", &[CBC_MODP2048], &[ESP_CBC]);
    east.remote_ts = vec![net("192.0.2.128/25")];
    let mut p = Pair::new(peer(WEST, "secret", &[CBC_MODP2048], &[ESP_CBC]), east);
    p.connect();
    assert_eq!(
        (p.west.child_sas().count(), p.east.child_sas().count()),
        (0, 0)
    );
}

#[test]
fn traffic_selectors_are_narrowed_to_the_intersection() {
    let mut east = peer(EAST, "secret", &[CBC_MODP2048], &[ESP_CBC]);
    east.remote_ts = vec![net("198.51.100.64/26")];
    let mut p = Pair::new(peer(WEST, "secret", &[CBC_MODP2048], &[ESP_CBC]), east);
    p.connect();
    let (w, e) = (children(&p.west), children(&p.east));
    assert_eq!(w[0].ts_local, vec![net("198.51.100.64/26")]);
    assert_eq!(e[0].ts_remote, vec![net("198.51.100.64/26")]);
}

#[test]
fn transport_mode_is_negotiated_and_installed_as_transport() {
    let transport = |me: &str| Peer {
        transport: true,
        ..peer(me, "secret", &[GCM_ECP256], &[ESP_GCM])
    };
    let mut p = Pair::new(transport(WEST), transport(EAST));
    p.connect();
    assert_established(&p);
    for (e, k) in [(&p.west, &p.west_kernel), (&p.east, &p.east_kernel)] {
        let c = children(e);
        assert!(c[0].transport);
        let sa = c[0].ipsec_sa(true).unwrap();
        assert_eq!(
            sa.encapsulation,
            isakmpd::ike::wire::EncapsulationMode::TRANSPORT
        );
        assert_eq!(k.transport_adds, 1, "the kernel got a transport-mode SA");
    }
    // A CREATE_CHILD_SA carries USE_TRANSPORT_MODE too.
    assert!(p.west.create_child(p.now, "peer"));
    p.drive();
    assert_eq!((children(&p.west).len(), children(&p.east).len()), (2, 2));
    assert!(children(&p.east).iter().all(|c| c.transport));
    assert_eq!(p.east_kernel.transport_adds, 2);
    assert_kernels_hold_the_child_sas(&p);

    // A tunnel-mode initiator does not get a CHILD_SA from a transport-mode responder
    // (NO_PROPOSAL_CHOSEN); the IKE SA stays.
    let mut p = Pair::new(
        peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        transport(EAST),
    );
    p.connect();
    assert_ike_sas_only(&p);
    // A transport-mode initiator answered in tunnel mode keeps no CHILD_SA, and deletes
    // the responder's (RFC 7296 §1.3.1: "the initiator MUST delete the SA"); the IKE SA
    // stays.
    let mut p = Pair::new(
        transport(WEST),
        peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
    );
    p.connect();
    assert_ike_sas_only(&p);
    assert!(
        p.east_kernel.states.is_empty(),
        "{:?}",
        p.east_kernel.states
    );
    assert_eq!(p.east.stats().child_sas_deleted, 1);
    // The Delete is an INFORMATIONAL request from west, answered.
    let informational = |from_west: bool, response: bool| {
        p.sent.iter().any(|d| {
            d.from_west == from_west
                && exchange(&d.data) == (ExchangeType::INFORMATIONAL.0, response)
        })
    };
    assert!(informational(true, false) && informational(false, true));
}

#[test]
fn a_create_child_sa_answer_we_cannot_take_gets_the_peers_child_sa_deleted() {
    // West asks for a second CHILD_SA with AES-GCM; before east's answer comes, west's
    // policy is reloaded with AES-CBC only, so that the suite east picked is no longer
    // one of west's. East made its CHILD_SA; west deletes it by its SPI (§1.3.1), and
    // both sides are left with the first CHILD_SA alone.
    let mut p = Pair::with_kernels(
        peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        1,
    );
    p.connect();
    assert_established(&p);
    let first = children(&p.east)[0].spi_in;
    assert!(p.west.create_child(p.now, "peer"));
    // Until west's request is on the wire (its SPI comes from its kernel first).
    let asked = |p: &Pair| {
        p.sent
            .iter()
            .any(|d| d.from_west && exchange(&d.data) == (ExchangeType::CREATE_CHILD_SA.0, false))
    };
    while !asked(&p) {
        assert!(p.step());
        p.collect();
    }
    let reloaded = peer(WEST, "secret", &[GCM_ECP256], &[ESP_CBC]);
    assert_eq!(
        p.west.set_policy(
            p.now,
            Policy {
                peers: vec![reloaded]
            }
        ),
        0
    );
    p.drive();
    assert_established(&p);
    assert_eq!(children(&p.east)[0].spi_in, first);
    assert_eq!(p.east.stats().child_sas_deleted, 1);
    assert_kernels_hold_the_child_sas(&p);
    // A CREATE_CHILD_SA answer that makes nothing (NO_PROPOSAL_CHOSEN) is not followed
    // by a Delete.
    let infos = |p: &Pair| {
        p.sent
            .iter()
            .filter(|d| exchange(&d.data).0 == ExchangeType::INFORMATIONAL.0)
            .count()
    };
    let before = infos(&p);
    assert!(p.west.create_child(p.now, "peer"));
    p.drive();
    assert_established(&p);
    assert_eq!(infos(&p), before);
}

#[test]
fn decoupled_child_sas_leave_the_kernel_and_come_back_when_coupled() {
    let mut p = Pair::with_kernels(
        peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        1,
    );
    p.connect();
    assert_established(&p);
    p.west.set_coupled(false);
    p.drive();
    // Out of the kernel, not out of the engine.
    assert!(p.west_kernel.states.is_empty() && p.west_kernel.flows.is_empty());
    assert_eq!(p.west.child_sas().count(), 1);
    // Made while decoupled: only its SPI is reserved (iked still asks for SPIs).
    assert!(p.west.create_child(p.now, "peer"));
    p.drive();
    assert_eq!(p.west.child_sas().count(), 2);
    assert!(p.west_kernel.states.is_empty());
    assert_eq!(p.west_kernel.larval.len(), 1, "{:?}", p.kernel_events(true));
    // Coupled: both back, the old one as new states, the new one on its reserved SPI.
    p.west.set_coupled(true);
    p.drive();
    assert_kernels_hold_the_child_sas(&p);
    assert_eq!(p.west_kernel.states.len(), 4);
    // Deleted while decoupled: nothing is left behind in the kernel.
    p.west.set_coupled(false);
    p.drive();
    p.west
        .delete_child(p.now, isakmpd::ikev2::engine::ChildRef::Peer("peer"));
    p.drive();
    assert_ike_sas_only(&p);
}

#[test]
fn a_kernel_acquire_starts_the_policy_once_then_a_child_sa_on_its_ike_sa() {
    let mut p = Pair::new(
        peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
    );
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let (src, dst, east) = (ip("198.51.100.7"), ip("203.0.113.9"), addr(EAST).ip());
    assert_eq!(
        p.west.acquire(p.now, src, dst, east).as_deref(),
        Some("peer")
    );
    // Repeated while the IKE SA is being negotiated: nothing more.
    assert_eq!(p.west.acquire(p.now, src, dst, east), None);
    p.drive();
    assert_established(&p);
    // Traffic the CHILD_SA covers, or no policy covers, or for another peer: nothing.
    let later = p.now.add_secs(10);
    assert_eq!(p.west.acquire(later, src, dst, east), None);
    assert_eq!(p.west.acquire(later, ip("192.0.2.99"), dst, east), None);
    assert_eq!(p.west.acquire(later, src, dst, ip("192.0.2.3")), None);
    // The CHILD_SA gone and the IKE SA up: a new CHILD_SA on it, once.
    p.west
        .delete_child(p.now, isakmpd::ikev2::engine::ChildRef::Peer("peer"));
    p.drive();
    assert_ike_sas_only(&p);
    p.now = p.now.add_secs(10);
    assert_eq!(
        p.west.acquire(p.now, src, dst, east).as_deref(),
        Some("peer")
    );
    assert_eq!(p.west.acquire(p.now, src, dst, east), None);
    p.drive();
    assert_established(&p);
}

#[test]
fn two_selector_pairs_make_one_child_sa_with_a_flow_each() {
    let two = |me: &str, pairs: [(&str, &str); 2]| {
        let p = pairs.map(|(l, r)| (net(l), net(r)));
        Peer {
            local_ts: vec![p[0].0, p[1].0],
            remote_ts: vec![p[0].1, p[1].1],
            flows: p.to_vec(),
            ..peer(me, "secret", &[GCM_ECP256], &[ESP_GCM])
        }
    };
    let mut p = Pair::new(
        two(
            WEST,
            [
                ("198.51.100.0/25", "203.0.113.0/25"),
                ("198.51.100.128/25", "203.0.113.128/25"),
            ],
        ),
        two(
            EAST,
            [
                ("203.0.113.0/25", "198.51.100.0/25"),
                ("203.0.113.128/25", "198.51.100.128/25"),
            ],
        ),
    );
    p.connect();
    let (w, e) = (children(&p.west), children(&p.east));
    assert_eq!((w.len(), e.len()), (1, 1), "one CHILD_SA");
    assert_eq!(
        w[0].flows,
        [
            (net("198.51.100.0/25"), net("203.0.113.0/25")),
            (net("198.51.100.128/25"), net("203.0.113.128/25"))
        ]
    );
    let mirrored: Vec<_> = e[0].flows.iter().map(|(l, r)| (*r, *l)).collect();
    assert_eq!(w[0].flows, mirrored);
    // Both kernels hold both pairs' flows, not the crossed ones.
    assert_eq!(
        (p.west_kernel.flows.len(), p.east_kernel.flows.len()),
        (2, 2)
    );
    assert_kernels_hold_the_child_sas(&p);
    // Deleted, the CHILD_SA takes both away.
    p.west
        .delete_child(p.now, isakmpd::ikev2::engine::ChildRef::Peer("peer"));
    p.drive();
    assert_ike_sas_only(&p);
}

#[test]
fn invalid_ke_payload_makes_the_initiator_retry_with_the_named_group() {
    let mut ecp_first = CBC_MODP2048;
    ecp_first.dh = DhGroup::ECP_256;
    let mut p = Pair::new(
        peer(WEST, "secret", &[ecp_first, CBC_MODP2048], &[ESP_CBC]),
        peer(EAST, "secret", &[CBC_MODP2048], &[ESP_CBC]),
    );
    p.connect();
    assert_established(&p);
    assert_eq!(
        p.east_sent_notify(NotifyType::INVALID_KE_PAYLOAD),
        vec![vec![0, 14]]
    );
    assert_eq!(p.count(0), 2, "IKE_SA_INIT again with MODP-2048");
}

#[test]
fn a_silent_peer_is_given_up_after_bounded_retransmissions() {
    let mut p = Pair::new(
        peer(WEST, "secret", &[CBC_MODP2048], &[ESP_CBC]),
        peer(EAST, "secret", &[CBC_MODP2048], &[ESP_CBC]),
    );
    // Nothing east sends arrives: east keeps its half-open SA until it expires, west
    // retransmits IKE_SA_INIT and gives up.
    p.fate = Box::new(|d| {
        if d.from_west {
            Fate::Deliver
        } else {
            Fate::Drop
        }
    });
    p.connect();
    assert_nothing(&p);
    let retransmits = Config::default().retransmits;
    assert_eq!(stats(&p.west).retransmits, u64::from(retransmits));
    assert_eq!(p.count(0), 1 + retransmits as usize);
    // West retries for longer than east keeps a half-open SA (62 s against 30 s), so
    // east answers from its cache, forgets, and starts again.
    let e = stats(&p.east);
    assert!(e.half_open_expired >= 2, "{e:?}");
    assert_eq!(
        e.responses_resent + e.half_open_expired,
        1 + u64::from(retransmits),
        "{e:?}"
    );
}

/// The spoofed initiators: addresses in 198.18.0.0/15 (RFC 2544's benchmarking block).
fn spoofed(i: usize) -> SocketAddr {
    addr(&format!("198.{}.{}.{}:500", 18 + i % 2, i / 7, i + 1))
}

fn spoofed_peer(i: usize) -> Peer {
    let mut p = peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]);
    p.name = format!("spoof{i}");
    p.local = spoofed(i);
    p.local_id = Identity::addr(spoofed(i).ip());
    p
}

/// Payload kinds of a cleartext message, in order: notify types for notifies, "other"
/// for anything else.
fn cleartext_notifies(d: &[u8]) -> Vec<Option<NotifyType>> {
    let m = Message::parse(d).unwrap();
    m.payloads
        .iter()
        .map(|e| match e.payload {
            Payload::Notify(n) => Some(n.ty),
            _ => None,
        })
        .collect()
}

#[test]
fn a_flood_of_spoofed_ike_sa_inits_gets_cookies_and_a_real_initiator_gets_through() {
    const SPOOFED: usize = 12;
    let config = Config {
        max_half_open: 8,
        cookie_threshold: 4,
        ..Config::default()
    };
    // East answers the real west and, as far as its policy knows, the addresses the
    // flood comes from.
    let mut peers = vec![peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM])];
    for i in 0..SPOOFED {
        let mut p = peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]);
        p.name = format!("spoof{i}");
        p.remote = spoofed(i);
        p.remote_id = None;
        peers.push(p);
    }
    let east = Engine::new(
        config,
        Policy { peers },
        Time(0),
        Box::new(SeededRandom::new(2)),
    );
    // The flood: IKE_SA_INITs from the spoofed addresses, whose answers go nowhere.
    let mut attacker = Engine::new(
        Config::default(),
        Policy {
            peers: (0..SPOOFED).map(spoofed_peer).collect(),
        },
        Time(0),
        Box::new(SeededRandom::new(3)),
    );
    let mut p = Pair::new(
        peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
    );
    p.east = east;
    let mut buf = vec![0u8; 65536];
    let mut answers = Vec::new();
    for i in 0..SPOOFED {
        attacker.connect(Time(0), &format!("spoof{i}")).unwrap();
        let t = attacker.poll_transmit(&mut buf).unwrap();
        assert_eq!(t.local, Some(spoofed(i)));
        p.east
            .handle_datagram(Time(0), addr(EAST), spoofed(i), &buf[..t.len]);
        let t = p.east.poll_transmit(&mut buf).expect("an answer");
        assert_eq!(t.remote, spoofed(i));
        answers.push(buf[..t.len].to_vec());
        assert!(p.east.poll_transmit(&mut buf).is_none());
    }
    // The first four were answered in full and are half-open; from the threshold on, a
    // COOKIE notify alone, and no state.
    for (i, a) in answers.iter().enumerate() {
        let n = cleartext_notifies(a);
        if i < 4 {
            assert!(
                n.contains(&None),
                "request {i}: a real IKE_SA_INIT response"
            );
        } else {
            assert_eq!(n, vec![Some(NotifyType::COOKIE)], "request {i}");
            let m = Message::parse(a).unwrap();
            assert_eq!(m.header.spi_r, [0; 8], "request {i}: no responder SPI");
        }
    }
    assert_eq!(p.east.ike_sas().count(), 4);
    assert_eq!(stats(&p.east).cookies_sent, (SPOOFED - 4) as u64);
    assert_eq!(stats(&p.east).half_open_refused, 0);

    // The real initiator goes through the COOKIE round trip.
    p.connect();
    assert_eq!(stats(&p.east).cookies_sent, (SPOOFED - 4) as u64 + 1);
    assert_eq!(stats(&p.east).cookies_invalid, 0);
    assert_eq!(p.count(0), 2, "IKE_SA_INIT, then again with the cookie");
    let inits: Vec<_> = p.sent.iter().filter(|d| kind(&d.data) == 0).collect();
    let (first, second) = (
        Message::parse(&inits[0].data).unwrap(),
        Message::parse(&inits[1].data).unwrap(),
    );
    let cookie = p.east_sent_notify(NotifyType::COOKIE);
    assert_eq!(cookie.len(), 1);
    assert_eq!(cookie[0].len(), 17, "a version byte and 16 bytes of HMAC");
    let e = second.payloads.iter().next().unwrap();
    assert!(
        matches!(e.payload, Payload::Notify(n) if n.ty == NotifyType::COOKIE && n.data == cookie[0])
    );
    // Everything else unchanged (§2.6): the cookie covers Ni.
    let nonce = |m: &Message<'_>| match m.payloads.find(PayloadType::NONCE) {
        Some(Payload::Nonce(n)) => n.to_vec(),
        _ => panic!("no nonce"),
    };
    assert_eq!(nonce(&first), nonce(&second));
    assert_eq!(first.header.spi_i, second.header.spi_i);
    // The half-open spoofed SAs have expired by now (the pair ran until idle); the real
    // IKE SA and its CHILD_SA remain.
    assert_established(&p);
    assert_eq!(stats(&p.east).half_open_expired, 4);
}

fn established_pair() -> Pair {
    let mut p = Pair::new(
        peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
    );
    p.connect();
    assert_established(&p);
    p.sent.clear();
    p
}

/// INFORMATIONAL messages sent since the last `sent.clear()`: (from west, response, length).
fn informationals(p: &Pair) -> Vec<(bool, bool, usize)> {
    p.sent
        .iter()
        .filter_map(|d| {
            let m = Message::parse(&d.data).ok()?;
            (m.header.exchange == ExchangeType::INFORMATIONAL).then_some((
                d.from_west,
                m.header.flags & FLAG_RESPONSE != 0,
                d.data.len(),
            ))
        })
        .collect()
}

fn assert_ike_sas_only(p: &Pair) {
    assert_eq!(p.west.ike_sas().count(), 1);
    assert_eq!(p.east.ike_sas().count(), 1);
    assert_eq!(p.west.child_sas().count(), 0, "no CHILD_SA west");
    assert_eq!(p.east.child_sas().count(), 0, "no CHILD_SA east");
    assert!(p.west_kernel.is_empty() && p.east_kernel.is_empty());
}

#[test]
fn deleting_a_child_sa_from_the_initiator_removes_both_halves_and_keeps_the_ike_sa() {
    let mut p = established_pair();
    let spi = children(&p.west)[0].spi_in;
    assert_eq!(p.west.delete_child(p.now, ChildRef::Spi(spi)), 1);
    p.drive();
    assert_ike_sas_only(&p);
    assert_eq!(stats(&p.west).child_sas_deleted, 1);
    assert_eq!(stats(&p.east).child_sas_deleted, 1);
    let info = informationals(&p);
    assert_eq!(info.len(), 2, "{info:?}");
    assert_eq!((info[0].0, info[0].1), (true, false), "west's request");
    assert_eq!((info[1].0, info[1].1), (false, true), "east's response");
    // East's answer carries its own Delete (§1.4.1): 12 bytes (payload header, protocol,
    // SPI size, count, one SPI) more than the empty answer to a Delete of the IKE SA.
    let with_delete = info[1].2;
    p.sent.clear();
    assert_eq!(p.west.delete_ike(p.now, IkeRef::Peer("peer")), 1);
    p.drive();
    assert_nothing(&p);
    let info = informationals(&p);
    assert_eq!(info.len(), 2, "{info:?}");
    assert_eq!(with_delete, info[1].2 + 12);
    assert_eq!(stats(&p.west).retransmits, 0);
}

#[test]
fn deleting_a_child_sa_from_the_responder_removes_both_halves() {
    let mut p = established_pair();
    let spi = children(&p.west)[0].spi_in;
    // East names the CHILD_SA by its outbound SPI, west's inbound one.
    assert_eq!(p.east.delete_child(p.now, ChildRef::Spi(spi)), 1);
    p.drive();
    assert_ike_sas_only(&p);
    let info = informationals(&p);
    assert_eq!(
        info.iter().map(|i| (i.0, i.1)).collect::<Vec<_>>(),
        vec![(false, false), (true, true)]
    );
    // The IKE SA still works both ways.
    assert_eq!(p.east.delete_child(p.now, ChildRef::Peer("peer")), 0);
    assert_eq!(p.east.delete_ike(p.now, IkeRef::Peer("peer")), 1);
    p.drive();
    assert_nothing(&p);
}

#[test]
fn crossed_child_sa_deletes_leave_nothing_and_no_error() {
    let mut p = established_pair();
    assert_eq!(p.west.delete_child(p.now, ChildRef::Peer("peer")), 1);
    assert_eq!(p.east.delete_child(p.now, ChildRef::Peer("peer")), 1);
    p.drive();
    assert_ike_sas_only(&p);
    let (w, e) = (stats(&p.west), stats(&p.east));
    assert_eq!((w.child_sas_deleted, e.child_sas_deleted), (1, 1));
    assert_eq!(
        (w.failed, e.failed, w.retransmits, e.retransmits),
        (0, 0, 0, 0)
    );
    assert_eq!(informationals(&p).len(), 4);
}

#[test]
fn a_rekey_crossing_our_delete_of_the_child_sa_is_refused_for_now_and_nothing_is_left() {
    // West deletes the CHILD_SA while east rekeys it: west answers the rekey with
    // TEMPORARY_FAILURE (§2.25.1), east's Delete answer ends it, and no new CHILD_SA
    // is made by either.
    let mut p = established_pair();
    assert_eq!(p.west.delete_child(p.now, ChildRef::Peer("peer")), 1);
    assert_eq!(p.east.rekey_child(p.now, ChildRef::Peer("peer")), 1);
    p.drive();
    assert_ike_sas_only(&p);
    assert!(p.west_kernel.states.is_empty() && p.east_kernel.states.is_empty());
    let (w, e) = (stats(&p.west), stats(&p.east));
    assert_eq!((w.child_sas_established, e.child_sas_established), (1, 1));
}

#[test]
fn deleting_the_ike_sa_from_either_side_leaves_nothing() {
    for from_west in [true, false] {
        let mut p = established_pair();
        let e = if from_west { &mut p.west } else { &mut p.east };
        let (h, _) = e.ike_sas().next().unwrap();
        assert_eq!(e.delete_ike(Time(0), IkeRef::Handle(h)), 1);
        p.drive();
        assert_nothing(&p);
        let info = informationals(&p);
        assert_eq!(
            info.iter().map(|i| (i.0, i.1)).collect::<Vec<_>>(),
            vec![(from_west, false), (!from_west, true)]
        );
        assert_eq!((stats(&p.west).failed, stats(&p.east).failed), (0, 0));
    }
}

#[test]
fn requests_wait_for_the_one_in_flight() {
    let mut p = established_pair();
    // Both at once: the Delete of the IKE SA goes after the CHILD_SA's is answered
    // (window 1, §2.3).
    assert_eq!(p.west.delete_child(p.now, ChildRef::Peer("peer")), 1);
    assert_eq!(p.west.delete_ike(p.now, IkeRef::Peer("peer")), 1);
    p.drive();
    assert_nothing(&p);
    let info = informationals(&p);
    assert_eq!(
        info.iter().map(|i| (i.0, i.1)).collect::<Vec<_>>(),
        vec![(true, false), (false, true), (true, false), (false, true)]
    );
}

#[test]
fn an_unanswered_ike_sa_delete_still_ends_the_ike_sa() {
    let mut p = established_pair();
    p.fate = Box::new(|d| {
        if d.from_west {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    assert_eq!(p.west.delete_ike(p.now, IkeRef::Peer("peer")), 1);
    p.drive();
    assert_eq!(p.west.ike_sas().count(), 0);
    assert_eq!(p.west.child_sas().count(), 0);
    assert_eq!(
        stats(&p.west).retransmits,
        u64::from(Config::default().retransmits)
    );
}

impl Pair {
    /// Like `drive`, but stops the clock at `end` (a pair checking liveness is never idle).
    fn drive_until(&mut self, end: Time) {
        for _ in 0..100_000 {
            self.collect();
            if !self.wire.is_empty() {
                self.step();
                continue;
            }
            match self.next_deadline() {
                Some(t) if t <= end => {
                    self.step();
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
        panic!("the pair never reached {end:?}");
    }
}

fn liveness_pair(secs: u64) -> Pair {
    let config = Config {
        liveness_secs: secs,
        ..Config::default()
    };
    let mut p = Pair::new(
        peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
    );
    p.west = Engine::new(
        config,
        Policy {
            peers: vec![peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM])],
        },
        Time(0),
        Box::new(SeededRandom::new(1)),
    );
    p.west.connect(p.now, "peer").unwrap();
    p.drive_until(Time(0).add_secs(1));
    assert_established(&p);
    p.sent.clear();
    p
}

#[test]
fn an_idle_peer_that_answers_is_checked_every_interval_and_kept() {
    let mut p = liveness_pair(30);
    p.drive_until(Time(0).add_secs(100));
    assert_eq!(stats(&p.west).liveness_checks, 3, "at 30, 60 and 90 s");
    let info = informationals(&p);
    assert_eq!(
        info.iter().map(|i| (i.0, i.1)).collect::<Vec<_>>(),
        [(true, false), (false, true)].repeat(3)
    );
    assert_eq!(p.west.ike_sas().count(), 1);
    assert_eq!(p.west.child_sas().count(), 1);
    assert_eq!(stats(&p.west).retransmits, 0);
    // East does not check (its interval is 0) but each of its answers is fresh.
    assert_eq!(stats(&p.east).liveness_checks, 0);
    assert_eq!(stats(&p.east).responses_resent, 0);
}

#[test]
fn a_request_from_the_peer_counts_as_a_sign_of_life() {
    let mut p = liveness_pair(30);
    // East deletes its CHILD_SA at 20 s: west's next check is 30 s after that.
    p.drive_until(Time(0).add_secs(20));
    assert_eq!(p.east.delete_child(p.now, ChildRef::Peer("peer")), 1);
    p.drive_until(Time(0).add_secs(45));
    assert_eq!(stats(&p.west).liveness_checks, 0);
    p.drive_until(Time(0).add_secs(51));
    assert_eq!(stats(&p.west).liveness_checks, 1);
}

#[test]
fn a_silent_peer_is_declared_dead_and_its_sas_deleted() {
    let mut p = liveness_pair(30);
    // From now on nothing east sends arrives.
    p.fate = Box::new(|d| {
        if d.from_west {
            Fate::Deliver
        } else {
            Fate::Drop
        }
    });
    p.drive_until(Time(0).add_secs(600));
    assert_eq!(p.west.ike_sas().count(), 0, "IKE SA gone");
    assert_eq!(p.west.child_sas().count(), 0, "CHILD_SA gone");
    let w = stats(&p.west);
    let retransmits = Config::default().retransmits;
    assert_eq!(w.liveness_checks, 1);
    assert_eq!(w.retransmits, u64::from(retransmits));
    assert_eq!((w.failed, w.dead_peers, w.child_sas_deleted), (1, 1, 1));
    // The check and its retransmissions, each answered by east into the void.
    let info = informationals(&p);
    let requests = info.iter().filter(|i| i.0 && !i.1).count();
    assert_eq!(requests, 1 + retransmits as usize);
    assert_eq!(stats(&p.east).responses_resent, u64::from(retransmits));
}

// CREATE_CHILD_SA (§1.3, §2.8).

const ESP_GCM_PFS: EspProposal = EspProposal {
    pfs: Some(DhGroup::ECP_256),
    ..ESP_GCM
};

fn established_with(esp_w: EspProposal, esp_e: EspProposal) -> Pair {
    let mut p = Pair::new(
        peer(WEST, "secret", &[GCM_ECP256], &[esp_w]),
        peer(EAST, "secret", &[GCM_ECP256], &[esp_e]),
    );
    p.connect();
    assert_established(&p);
    p.sent.clear();
    p
}

/// The pairs of CHILD_SAs: each of west's with east's mirror, keys agreeing.
fn child_pairs(p: &Pair) -> Vec<(ChildSa, ChildSa)> {
    let (wc, ec) = (children(&p.west), children(&p.east));
    assert_eq!(wc.len(), ec.len(), "as many CHILD_SAs on each side");
    wc.into_iter()
        .map(|w| {
            let e = ec
                .iter()
                .find(|e| e.spi_in == w.spi_out)
                .unwrap_or_else(|| panic!("no mirror of {:08x}", w.spi_in))
                .clone();
            assert_eq!(e.spi_out, w.spi_in);
            assert_eq!((w.encr, w.integ), (e.encr, e.integ));
            assert_eq!((&w.encr_in, &w.integ_in), (&e.encr_out, &e.integ_out));
            assert_eq!((&w.encr_out, &w.integ_out), (&e.encr_in, &e.integ_in));
            assert_ne!(w.encr_in, w.encr_out);
            assert_eq!(w.encr_in.len(), w.encr.key_material_len());
            assert_eq!((&w.ts_local, &w.ts_remote), (&e.ts_remote, &e.ts_local));
            assert!(!w.rekeyed && !e.rekeyed);
            (w, e)
        })
        .collect()
}

/// CREATE_CHILD_SA messages sent since the last `sent.clear()`: (from west, response,
/// length).
fn create_childs(p: &Pair) -> Vec<(bool, bool, usize)> {
    p.sent
        .iter()
        .filter_map(|d| {
            let m = Message::parse(&d.data).ok()?;
            (m.header.exchange == ExchangeType::CREATE_CHILD_SA).then_some((
                d.from_west,
                m.header.flags & FLAG_RESPONSE != 0,
                d.data.len(),
            ))
        })
        .collect()
}

/// Rekeys the one CHILD_SA from west or east; afterwards there is again exactly one,
/// with new SPIs and new keys that agree. Returns the CREATE_CHILD_SA request's length.
fn rekey_once(p: &mut Pair, from_west: bool) -> usize {
    let (old, _) = child_pairs(p).remove(0);
    let e = if from_west { &mut p.west } else { &mut p.east };
    assert_eq!(e.rekey_child(p.now, ChildRef::Peer("peer")), 1);
    p.drive();
    let pairs = child_pairs(p);
    assert_eq!(pairs.len(), 1, "exactly one CHILD_SA after the rekey");
    let (w, e) = &pairs[0];
    assert!(
        w.spi_in != old.spi_in && w.spi_out != old.spi_out,
        "new SPIs"
    );
    assert_ne!(w.encr_in, old.encr_in, "new keys");
    assert_ne!(w.encr_out, old.encr_out, "new keys");
    assert_eq!((w.initiator, e.initiator), (from_west, !from_west));
    for s in [stats(&p.west), stats(&p.east)] {
        assert_eq!(s.child_sas_rekeyed, 1);
        assert_eq!(s.child_sas_deleted, 1);
        assert_eq!(s.child_sas_established, 2);
        assert_eq!(s.failed, 0);
    }
    let cc = create_childs(p);
    assert_eq!(cc.len(), 2, "{cc:?}");
    assert_eq!(
        (cc[0].0, cc[0].1, cc[1].0, cc[1].1),
        (from_west, false, !from_west, true)
    );
    // The rekey's initiator deletes the old CHILD_SA (§2.8).
    let info = informationals(p);
    assert_eq!(info.len(), 2, "{info:?}");
    assert_eq!((info[0].0, info[0].1), (from_west, false));
    assert_eq!(p.west.ike_sas().count(), 1);
    assert_eq!(p.east.ike_sas().count(), 1);
    assert_kernels_hold_the_child_sas(p);
    cc[0].2
}

#[test]
fn rekeying_a_child_sa_without_pfs_from_either_side_leaves_one_with_new_spis_and_keys() {
    for from_west in [true, false] {
        let mut p = established_pair();
        rekey_once(&mut p, from_west);
        // And again: the new one rekeys like the first.
        p.sent.clear();
        let (before, _) = child_pairs(&p).remove(0);
        assert_eq!(p.west.rekey_child(p.now, ChildRef::Spi(before.spi_in)), 1);
        p.drive();
        let pairs = child_pairs(&p);
        assert_eq!(pairs.len(), 1);
        assert_ne!(pairs[0].0.spi_in, before.spi_in);
        assert_eq!(stats(&p.west).retransmits + stats(&p.east).retransmits, 0);
    }
}

#[test]
fn a_rekey_answered_child_sa_not_found_replaces_the_child_sa_with_a_new_one() {
    let mut p = established_pair();
    let (old_w, old_e) = child_pairs(&p).remove(0);
    // East's CHILD_SA reaches its hard limit; the Delete it sends west is lost once, so
    // west still has its half when it rekeys it.
    let lost = std::rc::Rc::new(std::cell::Cell::new(false));
    let l = lost.clone();
    p.fate = Box::new(move |d| {
        let m = Message::parse(&d.data).ok();
        let delete_request = m.is_some_and(|m| {
            m.header.exchange == ExchangeType::INFORMATIONAL && m.header.flags & FLAG_RESPONSE == 0
        });
        if !d.from_west && delete_request && !l.get() {
            l.set(true);
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    assert!(p
        .east
        .handle_expire(p.now, addr(EAST).ip(), old_e.spi_in, true));
    p.collect();
    assert_eq!(p.west.rekey_child(p.now, ChildRef::Spi(old_w.spi_in)), 1);
    p.drive();
    assert!(lost.get(), "east's Delete was sent (and lost)");
    let notified = p.east_sent_notify(NotifyType::CHILD_SA_NOT_FOUND);
    assert_eq!(notified.len(), 0, "CHILD_SA_NOT_FOUND travels encrypted");
    // West took its half out and made a new CHILD_SA from scratch: one pair, new SPIs,
    // the same selectors, in both kernels; the IKE SA untouched.
    let pairs = child_pairs(&p);
    assert_eq!(pairs.len(), 1, "one CHILD_SA after CHILD_SA_NOT_FOUND");
    let (w, _) = &pairs[0];
    assert!(w.spi_in != old_w.spi_in && w.spi_out != old_w.spi_out);
    assert_eq!(
        (&w.ts_local, &w.ts_remote),
        (&old_w.ts_local, &old_w.ts_remote)
    );
    assert_eq!(p.west.ike_sas().count(), 1);
    assert_eq!(p.east.ike_sas().count(), 1);
    assert_kernels_hold_the_child_sas(&p);
    assert_eq!(stats(&p.west).failed + stats(&p.east).failed, 0);
    // The new CHILD_SA was made by a CREATE_CHILD_SA without REKEY_SA, after the refused
    // rekey: two requests from west, two answers from east.
    let cc = create_childs(&p);
    assert_eq!(
        cc.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(),
        vec![(true, false), (false, true), (true, false), (false, true)]
    );
}

#[test]
fn rekeying_a_child_sa_with_pfs_sends_ke_payloads_and_the_keys_agree() {
    let mut plain = established_pair();
    let plain_len = rekey_once(&mut plain, true);
    for from_west in [true, false] {
        let mut p = established_with(ESP_GCM_PFS, ESP_GCM_PFS);
        let len = rekey_once(&mut p, from_west);
        // KEi for ECP-256: a 4-byte payload header, group and reserved, 64 bytes; the
        // SA proposal has one more transform (8 bytes).
        assert_eq!(len, plain_len + 8 + 64 + 8, "with KEi and the DH transform");
        let cc = create_childs(&p);
        assert!(cc[1].2 >= 8 + 64 + 8, "the answer has KEr");
    }
}

#[test]
fn pfs_on_one_side_only_is_no_proposal_chosen_and_the_old_child_sa_stays() {
    let mut p = established_with(ESP_GCM, ESP_GCM_PFS);
    let (old, _) = child_pairs(&p).remove(0);
    assert_eq!(p.west.rekey_child(p.now, ChildRef::Peer("peer")), 1);
    p.drive();
    let pairs = child_pairs(&p);
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].0.spi_in, old.spi_in, "the old CHILD_SA is kept");
    assert_eq!(p.west.ike_sas().count(), 1);
    assert_eq!(stats(&p.east).child_sas_rekeyed, 0);
}

#[test]
fn loss_of_each_rekey_message_once_is_recovered() {
    // 0: CREATE_CHILD_SA request, 1: its response, 2: the Delete, 3: its answer.
    for lost in 0..4usize {
        for pfs in [false, true] {
            let esp = if pfs { ESP_GCM_PFS } else { ESP_GCM };
            let mut p = established_with(esp, esp);
            let mut seen = [false; 4];
            p.fate = Box::new(move |d| {
                let Ok(m) = Message::parse(&d.data) else {
                    return Fate::Deliver;
                };
                let r = usize::from(m.header.flags & FLAG_RESPONSE != 0);
                let k = match m.header.exchange {
                    ExchangeType::CREATE_CHILD_SA => r,
                    ExchangeType::INFORMATIONAL => 2 + r,
                    _ => return Fate::Deliver,
                };
                if k == lost && !seen[k] {
                    seen[k] = true;
                    return Fate::Drop;
                }
                Fate::Deliver
            });
            let (old, _) = child_pairs(&p).remove(0);
            assert_eq!(p.west.rekey_child(p.now, ChildRef::Peer("peer")), 1);
            p.drive();
            let pairs = child_pairs(&p);
            assert_eq!(pairs.len(), 1, "lost {lost}, pfs {pfs}");
            assert_ne!(pairs[0].0.spi_in, old.spi_in);
            assert_eq!(stats(&p.west).retransmits, 1, "lost {lost}");
            assert_eq!(stats(&p.west).child_sas_rekeyed, 1);
            assert_eq!(stats(&p.east).child_sas_rekeyed, 1);
            if lost % 2 == 1 {
                assert_eq!(stats(&p.east).responses_resent, 1, "lost {lost}");
            }
        }
    }
}

#[test]
fn create_child_adds_a_second_child_sa_for_the_same_selectors() {
    for esp in [ESP_GCM, ESP_GCM_PFS] {
        let mut p = established_with(esp, esp);
        assert!(p.east.create_child(p.now, "peer"));
        p.drive();
        let pairs = child_pairs(&p);
        assert_eq!(pairs.len(), 2);
        assert_ne!(pairs[0].0.encr_in, pairs[1].0.encr_in);
        assert_eq!(stats(&p.west).child_sas_established, 2);
        assert_eq!(stats(&p.east).child_sas_rekeyed, 0);
        assert!(informationals(&p).is_empty(), "nothing deleted");
        assert!(!p.west.create_child(p.now, "nobody"));
    }
}

#[test]
fn a_rekey_of_an_unknown_spi_starts_nothing() {
    let mut p = established_pair();
    assert_eq!(p.west.rekey_child(p.now, ChildRef::Spi(12345)), 0);
    assert_eq!(p.west.rekey_child(p.now, ChildRef::Peer("nobody")), 0);
    p.drive();
    assert!(p.sent.is_empty());
}

#[test]
fn simultaneous_rekeys_of_one_child_sa_leave_one_pair() {
    let mut survivors = Vec::new();
    for (esp, seed) in [
        (ESP_GCM, 0u64),
        (ESP_GCM_PFS, 0),
        (ESP_GCM, 5),
        (ESP_GCM_PFS, 9),
    ] {
        let mut p = established_with(esp, esp);
        // Other seeds give other nonces, so either side's rekey may be the redundant one.
        for _ in 0..seed {
            assert!(p.west.create_child(p.now, "peer"));
            p.drive();
            let extra = children(&p.west).last().unwrap().spi_in;
            p.west.delete_child(p.now, ChildRef::Spi(extra));
            p.drive();
        }
        p.sent.clear();
        let (old, _) = child_pairs(&p).remove(0);
        assert_eq!(p.west.rekey_child(p.now, ChildRef::Spi(old.spi_in)), 1);
        assert_eq!(p.east.rekey_child(p.now, ChildRef::Spi(old.spi_out)), 1);
        p.drive();
        let pairs = child_pairs(&p);
        assert_eq!(pairs.len(), 1, "one CHILD_SA left ({esp:?}, {seed})");
        assert_ne!(pairs[0].0.spi_in, old.spi_in);
        // Both rekeys completed; one new CHILD_SA and the old one went on each side.
        let cc = create_childs(&p);
        assert_eq!(cc.len(), 4, "{cc:?}");
        for s in [stats(&p.west), stats(&p.east)] {
            assert_eq!(s.child_sas_established, 3 + seed);
            assert_eq!(s.child_sas_deleted, 2 + seed);
            assert_eq!(s.failed, 0);
        }
        survivors.push(pairs[0].0.initiator);
    }
    eprintln!("west's rekey survived: {survivors:?}");
    assert!(
        survivors.contains(&true) && survivors.contains(&false),
        "each side's rekey is the redundant one in some run"
    );
}

// IKE SA rekey (§1.3.2, §2.18).

/// The one IKE SA on each side: (handle, info).
fn one_ike(e: &Engine) -> (isakmpd::ike::sa::Handle, isakmpd::ikev2::engine::IkeSaInfo) {
    let v: Vec<_> = e.ike_sas().map(|(h, i)| (h, i.clone())).collect();
    assert_eq!(v.len(), 1, "one IKE SA");
    v.into_iter().next().unwrap()
}

#[test]
fn rekeying_the_ike_sa_from_either_side_moves_the_child_sa_and_deletes_the_old_one() {
    for from_west in [true, false] {
        for lost in [None, Some(0usize), Some(1), Some(2), Some(3)] {
            let mut p = established_pair();
            let mut seen = [false; 4];
            p.fate = Box::new(move |d| {
                let Ok(m) = Message::parse(&d.data) else {
                    return Fate::Deliver;
                };
                let r = usize::from(m.header.flags & FLAG_RESPONSE != 0);
                let k = match m.header.exchange {
                    ExchangeType::CREATE_CHILD_SA => r,
                    ExchangeType::INFORMATIONAL => 2 + r,
                    _ => return Fate::Deliver,
                };
                if Some(k) == lost && !seen[k] {
                    seen[k] = true;
                    return Fate::Drop;
                }
                Fate::Deliver
            });
            let (_, old) = one_ike(&p.west);
            let (child, _) = child_pairs(&p).remove(0);
            let e = if from_west { &mut p.west } else { &mut p.east };
            assert_eq!(e.rekey_ike(p.now, IkeRef::Peer("peer")), 1);
            p.drive();
            let ((wh, w), (eh, e)) = (one_ike(&p.west), one_ike(&p.east));
            assert_eq!((w.spi_i, w.spi_r), (e.spi_i, e.spi_r), "lost {lost:?}");
            assert!(w.spi_i != old.spi_i && w.spi_r != old.spi_r, "new SPIs");
            assert_eq!((w.initiator, e.initiator), (from_west, !from_west));
            assert_eq!(
                (w.state, e.state),
                (IkeState::Established, IkeState::Established)
            );
            // The CHILD_SA is the same one, now under the new IKE SA.
            let pairs = child_pairs(&p);
            assert_eq!(pairs.len(), 1);
            assert_eq!(pairs[0].0.spi_in, child.spi_in);
            assert_eq!((pairs[0].0.ike, pairs[0].1.ike), (wh, eh));
            for (s, rekeyer) in [(stats(&p.west), from_west), (stats(&p.east), !from_west)] {
                assert_eq!(s.ike_sas_rekeyed, 1);
                assert_eq!(s.child_sas_deleted, 0);
                // The answer to the Delete of the old IKE SA lost: the peer has nothing
                // left to answer a retransmission from, and the rekey's initiator gives
                // the old IKE SA up after its retransmissions (as for any IKE SA Delete);
                // the CHILD_SA is not with it any more.
                let gave_up = u64::from(rekeyer && lost == Some(3));
                assert_eq!(s.failed, gave_up, "lost {lost:?} from west {from_west}");
            }
            if lost.is_some() && lost != Some(3) {
                let r = stats(&p.west).retransmits + stats(&p.east).retransmits;
                assert_eq!(r, 1, "lost {lost:?}");
            }
            // The new IKE SA works: its keys agree for a CHILD_SA rekey, then a delete.
            p.fate = Box::new(|_| Fate::Deliver);
            p.sent.clear();
            rekey_once_more(&mut p);
            assert_eq!(p.east.delete_ike(p.now, IkeRef::Peer("peer")), 1);
            p.drive();
            assert_nothing(&p);
        }
    }
}

fn rekey_once_more(p: &mut Pair) {
    let (old, _) = child_pairs(p).remove(0);
    assert_eq!(p.west.rekey_child(p.now, ChildRef::Peer("peer")), 1);
    p.drive();
    let pairs = child_pairs(p);
    assert_eq!(pairs.len(), 1);
    assert_ne!(pairs[0].0.spi_in, old.spi_in);
    assert_kernels_hold_the_child_sas(p);
}

#[test]
fn an_ike_sa_rekey_twice_in_a_row_keeps_working() {
    let mut p = established_with(ESP_GCM_PFS, ESP_GCM_PFS);
    for from_west in [true, false, true] {
        let e = if from_west { &mut p.west } else { &mut p.east };
        assert_eq!(e.rekey_ike(p.now, IkeRef::Peer("peer")), 1);
        p.drive();
        one_ike(&p.west);
        one_ike(&p.east);
        rekey_once_more(&mut p);
    }
    assert_eq!(stats(&p.west).ike_sas_rekeyed, 3);
}

// The kernel side (issue 16): SPIs from the kernel, nothing announced before it is
// installed, nothing left installed.

/// A pair established with kernels that answer after `delay_ms`.
fn kernel_pair(esp: EspProposal, delay_ms: u64) -> Pair {
    let mut p = Pair::with_kernels(
        peer(WEST, "secret", &[GCM_ECP256], &[esp]),
        peer(EAST, "secret", &[GCM_ECP256], &[esp]),
        delay_ms,
    );
    p.connect();
    assert_established(&p);
    p.sent.clear();
    p
}

fn is_kernel(e: &Event, west: bool, prefix: &str) -> bool {
    matches!(e, Event::Kernel { west: w, what, .. } if *w == west && what.starts_with(prefix))
}

fn is_sent(e: &Event, west: bool, exchange: ExchangeType, response: bool) -> bool {
    matches!(e, Event::Sent { from_west, exchange: x, .. }
        if *from_west == west && *x == (exchange.0, response))
}

#[test]
fn the_kernels_spis_go_on_the_wire_and_the_responder_installs_before_it_answers() {
    for delay in [0, 3] {
        let p = kernel_pair(ESP_GCM, delay);
        let (wc, ec) = child_pairs(&p).remove(0);
        // Each side's inbound SPI is the one its kernel reserved, and the other side has
        // it as its outbound SPI: that is what went on the wire.
        assert_eq!(p.west_kernel.allocated, vec![wc.spi_in]);
        assert_eq!(p.east_kernel.allocated, vec![ec.spi_in]);
        assert_eq!((wc.spi_out, ec.spi_out), (ec.spi_in, wc.spi_in));
        // West reserves, then sends IKE_AUTH; east reserves and installs, then answers;
        // west installs on the answer.
        let auth = ExchangeType::IKE_AUTH;
        let order = [
            p.position(|e| is_kernel(e, true, "spi")),
            p.position(|e| is_sent(e, true, auth, false)),
            p.position(|e| is_kernel(e, false, "spi")),
            p.position(|e| is_kernel(e, false, &format!("add {:08x}", ec.spi_in))),
            p.position(|e| is_sent(e, false, auth, true)),
            p.position(|e| is_kernel(e, true, &format!("add {:08x}", wc.spi_in))),
        ];
        assert!(order.is_sorted(), "{order:?}: {:#?}", p.events);
        for west in [true, false] {
            let k = p.kernel_events(west);
            assert_eq!(k.len(), 2, "one SPI, one install: {k:?}");
        }
        assert_eq!(stats(&p.west).retransmits, 0);
    }
}

#[test]
fn a_child_sa_rekey_installs_the_new_one_before_the_old_one_goes() {
    for (from_west, delay, esp) in [
        (true, 0, ESP_GCM),
        (false, 0, ESP_GCM),
        (true, 5, ESP_GCM_PFS),
        (false, 5, ESP_GCM_PFS),
    ] {
        let mut p = kernel_pair(esp, delay);
        let (old, _) = child_pairs(&p).remove(0);
        let mark = p.events.len();
        rekey_once(&mut p, from_west);
        let (new, _) = child_pairs(&p).remove(0);
        assert!(p.west_kernel.allocated.contains(&new.spi_in));
        assert!(p.east_kernel.allocated.contains(&new.spi_out));
        for west in [true, false] {
            let (old_in, new_in) = if west {
                (old.spi_in, new.spi_in)
            } else {
                (old.spi_out, new.spi_out)
            };
            let at = |prefix: String| {
                p.events[mark..]
                    .iter()
                    .position(|e| is_kernel(e, west, &prefix))
                    .unwrap_or_else(|| panic!("no {prefix}: {:#?}", &p.events[mark..]))
            };
            let (add, del) = (
                at(format!("add {new_in:08x}")),
                at(format!("del {old_in:08x}")),
            );
            assert!(add < del, "west {west}: the new SA first");
            // The old SA leaves its flows to the new one: never a moment without.
            for e in &p.events[mark..] {
                if let Event::Kernel {
                    west: w,
                    what,
                    flows,
                } = e
                {
                    assert!(*w != west || *flows == 1, "{what}: {flows} flows");
                }
            }
        }
        // The responder installs before its CREATE_CHILD_SA response goes.
        let resp_in = if from_west { new.spi_out } else { new.spi_in };
        let x = ExchangeType::CREATE_CHILD_SA;
        let add = p.position(|e| is_kernel(e, !from_west, &format!("add {resp_in:08x} in")));
        let answer = p.position(|e| is_sent(e, !from_west, x, true));
        assert!(add < answer);
        // Its outbound half waits until the initiator has the new SA inbound (it deletes
        // the old one only then), and goes in before the old one leaves: no packet goes
        // out under an SA the initiator cannot read yet, and never none.
        let init_in = if from_west { new.spi_in } else { new.spi_out };
        let resp_old_in = if from_west { old.spi_out } else { old.spi_in };
        let order = [
            p.position(|e| is_kernel(e, from_west, &format!("add {init_in:08x}"))),
            p.position(|e| is_kernel(e, !from_west, &format!("add-out {init_in:08x}"))),
            p.position(|e| is_kernel(e, !from_west, &format!("del {resp_old_in:08x}"))),
        ];
        assert!(order.is_sorted(), "{order:?}: {:#?}", &p.events[mark..]);
    }
}

#[test]
fn deleting_the_ike_sa_removes_every_installed_sa_on_both_sides() {
    for from_west in [true, false] {
        let mut p = kernel_pair(ESP_GCM, 2);
        assert!(p.west.create_child(p.now, "peer"));
        p.drive();
        assert_eq!(child_pairs(&p).len(), 2);
        assert_kernels_hold_the_child_sas(&p);
        assert_eq!(p.west_kernel.states.len(), 4);
        // One of two CHILD_SAs with the same selectors goes: the flows stay for the other.
        let spi = children(&p.west)[0].spi_in;
        assert_eq!(p.east.delete_child(p.now, ChildRef::Spi(spi)), 1);
        p.drive();
        assert_eq!(child_pairs(&p).len(), 1);
        assert_kernels_hold_the_child_sas(&p);
        assert_eq!(p.west_kernel.flows.len(), 1);
        // A rekey and another CHILD_SA, then the IKE SA goes with all of them.
        assert_eq!(p.west.rekey_child(p.now, ChildRef::Peer("peer")), 1);
        p.drive();
        assert!(p.east.create_child(p.now, "peer"));
        p.drive();
        assert_eq!(child_pairs(&p).len(), 2);
        assert_kernels_hold_the_child_sas(&p);
        let e = if from_west { &mut p.west } else { &mut p.east };
        assert_eq!(e.delete_ike(p.now, IkeRef::Peer("peer")), 1);
        p.drive();
        assert_nothing(&p);
    }
}

#[test]
fn a_dead_peer_and_a_shutdown_take_the_sas_out_of_the_kernel() {
    let config = Config {
        liveness_secs: 30,
        kernel_answers: true,
        ..Config::default()
    };
    let mut p = Pair::with_kernels(
        peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        1,
    );
    p.west = engine_with(peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]), 1, config);
    p.west.connect(p.now, "peer").unwrap();
    p.drive_until(Time(0).add_secs(1));
    assert_established(&p);
    p.fate = Box::new(|d| {
        if d.from_west {
            Fate::Deliver
        } else {
            Fate::Drop
        }
    });
    p.drive_until(Time(0).add_secs(600));
    assert_eq!(stats(&p.west).dead_peers, 1);
    assert_eq!(p.west.ike_sas().count(), 0);
    assert!(p.west_kernel.is_empty(), "west's kernel empty");
    // East never heard of it and keeps its SAs, in its kernel too.
    assert_eq!(p.east_kernel.states.len(), 2);
    assert_kernels_hold_the_child_sas(&p);

    // A shutdown: our SAs out of the kernel at once, the peer told.
    let mut p = kernel_pair(ESP_GCM, 1);
    assert!(p.east.create_child(p.now, "peer"));
    p.drive();
    p.west.shutdown(p.now);
    assert_eq!(p.west.ike_sas().count(), 0);
    assert_eq!(p.west.child_sas().count(), 0);
    p.drive();
    assert!(p.west.is_drained());
    assert_nothing(&p);
}

#[test]
fn a_refused_install_in_ike_auth_on_either_side_leaves_no_child_sa_and_nothing_installed() {
    for (refuse_west, delay) in [(true, 0), (false, 0), (true, 4), (false, 4)] {
        let mut p = Pair::with_kernels(
            peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
            peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
            delay,
        );
        if refuse_west {
            p.west_kernel.refuse_add = 1;
        } else {
            p.east_kernel.refuse_add = 1;
        }
        p.connect();
        // The IKE SA stands (§1.2: a CHILD_SA that fails does not take it down).
        assert_ike_sas_only(&p);
        let states: Vec<_> = p.west.ike_sas().map(|(_, i)| i.state).collect();
        assert_eq!(states, [IkeState::Established]);
        let (w, e) = (stats(&p.west), stats(&p.east));
        assert_eq!(
            (w.kernel_refused, e.kernel_refused),
            (refuse_west as u64, !refuse_west as u64)
        );
        assert_eq!(w.child_sas_established, 0);
        let info = informationals(&p);
        if refuse_west {
            // West deleted at east what east had installed and announced.
            assert_eq!(
                info.iter().map(|i| (i.0, i.1)).collect::<Vec<_>>(),
                [(true, false), (false, true)]
            );
            assert_eq!((e.child_sas_established, e.child_sas_deleted), (1, 1));
        } else {
            // East answered without a CHILD_SA: nothing to delete.
            assert!(info.is_empty(), "{info:?}");
            assert_eq!(e.child_sas_established, 0);
        }
        // The IKE SA works: the next CHILD_SA goes in on both sides.
        assert!(p.west.create_child(p.now, "peer"));
        p.drive();
        assert_eq!(child_pairs(&p).len(), 1);
        assert_kernels_hold_the_child_sas(&p);
        assert_eq!(p.west.delete_ike(p.now, IkeRef::Peer("peer")), 1);
        p.drive();
        assert_nothing(&p);
    }
}

#[test]
fn a_refused_install_in_create_child_sa_on_either_side_leaves_no_new_child_sa() {
    for refuse_west in [true, false] {
        for rekey in [false, true] {
            let mut p = kernel_pair(ESP_GCM_PFS, 3);
            let (old, _) = child_pairs(&p).remove(0);
            if refuse_west {
                p.west_kernel.refuse_add = 1;
            } else {
                p.east_kernel.refuse_add = 1;
            }
            if rekey {
                assert_eq!(p.west.rekey_child(p.now, ChildRef::Peer("peer")), 1);
            } else {
                assert!(p.west.create_child(p.now, "peer"));
            }
            // East's refusal is TEMPORARY_FAILURE, after which west tries a rekey again
            // 5-15 s later (§2.25): look before that.
            let before_retry = p.now.add_secs(4);
            p.drive_until(before_retry);
            // Only the old CHILD_SA, on both sides and in both kernels, not replaced.
            let pairs = child_pairs(&p);
            assert_eq!(pairs.len(), 1, "refuse west {refuse_west} rekey {rekey}");
            assert_eq!(pairs[0].0.spi_in, old.spi_in);
            assert_kernels_hold_the_child_sas(&p);
            let refuser = if refuse_west { &p.west } else { &p.east };
            assert_eq!(stats(refuser).kernel_refused, 1);
            assert_eq!(stats(&p.west).child_sas_rekeyed, 0);
            // It can still be rekeyed.
            rekey_once_more(&mut p);
        }
    }
}

#[test]
fn a_refused_spi_abandons_the_child_sa_and_gives_nothing_away() {
    // East's kernel has no SPI for it: the IKE SA without a CHILD_SA.
    let mut p = Pair::with_kernels(
        peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        2,
    );
    p.east_kernel.refuse_spi = 1;
    p.connect();
    assert_ike_sas_only(&p);
    assert_eq!(stats(&p.east).kernel_refused, 1);
    // West's kernel has none: no IKE_AUTH goes out, and east's half-open SA expires.
    let mut p = Pair::with_kernels(
        peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        2,
    );
    p.west_kernel.refuse_spi = 1;
    p.connect();
    assert_eq!(p.count(2), 0, "no IKE_AUTH");
    assert_nothing(&p);
    assert_eq!(stats(&p.east).half_open_expired, 1);
    // In CREATE_CHILD_SA: no request (west) or TEMPORARY_FAILURE (east); the IKE SA and
    // its CHILD_SA stay.
    for refuse_west in [true, false] {
        let mut p = kernel_pair(ESP_GCM, 2);
        if refuse_west {
            p.west_kernel.refuse_spi = 1;
        } else {
            p.east_kernel.refuse_spi = 1;
        }
        assert!(p.west.create_child(p.now, "peer"));
        p.drive();
        assert_eq!(child_pairs(&p).len(), 1);
        assert_kernels_hold_the_child_sas(&p);
        assert_eq!(create_childs(&p).len(), if refuse_west { 0 } else { 2 });
        rekey_once_more(&mut p);
    }
}

#[test]
fn loss_or_duplication_of_each_message_with_a_slow_kernel_still_ends_in_one_installed_pair() {
    for k in 0..4 {
        for fate in [Fate::Drop, Fate::Duplicate] {
            let mut p = Pair::with_kernels(
                peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
                peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
                7,
            );
            let mut done = false;
            p.fate = Box::new(move |d| {
                if !done && kind(&d.data) == k {
                    done = true;
                    fate
                } else {
                    Fate::Deliver
                }
            });
            p.connect();
            assert_established(&p);
            // A repeated request takes no second SPI.
            assert_eq!(p.west_kernel.allocated.len(), 1);
            assert_eq!(p.east_kernel.allocated.len(), 1);
        }
    }
    // The rekey's messages: CREATE_CHILD_SA request and response, the Delete of the old
    // CHILD_SA and its answer.
    let x = [
        (ExchangeType::CREATE_CHILD_SA.0, false),
        (ExchangeType::CREATE_CHILD_SA.0, true),
        (ExchangeType::INFORMATIONAL.0, false),
        (ExchangeType::INFORMATIONAL.0, true),
    ];
    for which in x {
        for fate in [Fate::Drop, Fate::Duplicate] {
            for from_west in [true, false] {
                let mut p = kernel_pair(ESP_GCM_PFS, 7);
                let (old, _) = child_pairs(&p).remove(0);
                let mut done = false;
                p.fate = Box::new(move |d| {
                    if !done && exchange(&d.data) == which {
                        done = true;
                        fate
                    } else {
                        Fate::Deliver
                    }
                });
                let e = if from_west { &mut p.west } else { &mut p.east };
                assert_eq!(e.rekey_child(p.now, ChildRef::Peer("peer")), 1);
                p.drive();
                let pairs = child_pairs(&p);
                assert_eq!(pairs.len(), 1, "{which:?}");
                assert_ne!(pairs[0].0.spi_in, old.spi_in);
                assert_kernels_hold_the_child_sas(&p);
            }
        }
    }
}

#[test]
fn a_child_sa_the_kernel_interface_cannot_express_is_refused_and_its_spis_given_back() {
    // TCP ports 1000-2000: one flow holds one port or all of them, so neither side can
    // install it, and neither widens it.
    let ports = |mut p: Peer| {
        for s in p.local_ts.iter_mut().chain(p.remote_ts.iter_mut()) {
            (s.protocol, s.start_port, s.end_port) = (6, 1000, 2000);
        }
        p
    };
    let mut p = Pair::with_kernels(
        ports(peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM])),
        ports(peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM])),
        2,
    );
    p.connect();
    assert_ike_sas_only(&p);
    assert_eq!(stats(&p.east).kernel_refused, 1, "the responder refused");
    assert_eq!(p.west_kernel.allocated.len(), 1);
    assert_eq!(p.east_kernel.allocated.len(), 1);
    // Without a kernel that answers nothing is installed, and the CHILD_SA stands.
    let mut p = Pair::new(
        ports(peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM])),
        ports(peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM])),
    );
    p.connect();
    assert_eq!(child_pairs(&p).len(), 1);
    assert!(p.west_kernel.is_empty() && p.east_kernel.is_empty());
}

// Lifetimes (issue 16): soft expiry rekeys, hard expiry deletes, on a virtual clock.

/// A pair with kernels that answer at once, established by 1 s; `west` and `east` are
/// each side's (ikelifetime, lifetime, bytes).
fn lifetime_pair(west: (u64, u64, u64), east: (u64, u64, u64)) -> Pair {
    let with = |me: &str, (ike, child, bytes): (u64, u64, u64)| Peer {
        ike_lifetime_secs: ike,
        child_lifetime_secs: child,
        child_lifetime_bytes: bytes,
        ..peer(me, "secret", &[GCM_ECP256], &[ESP_GCM])
    };
    let mut p = Pair::with_kernels(with(WEST, west), with(EAST, east), 0);
    p.west.connect(p.now, "peer").unwrap();
    p.drive_until(Time::from_secs(1));
    assert_established(&p);
    p.sent.clear();
    p
}

/// CREATE_CHILD_SA requests sent since the last `sent.clear()`, by west and by east.
fn create_child_requests(p: &Pair) -> (usize, usize) {
    let cc = create_childs(p);
    let n = |w: bool| cc.iter().filter(|c| c.0 == w && !c.1).count();
    (n(true), n(false))
}

#[test]
fn a_child_sa_rekeys_by_itself_at_its_soft_lifetime_with_no_gap() {
    let mut p = lifetime_pair((0, 60, 1 << 20), (0, 0, 0));
    let (old, _) = child_pairs(&p).remove(0);
    // West's CHILD_SA: made at about 0 s, rekeyed 5-10 % before 60 s, gone at 60 s; the
    // kernel gets the lifetime and the byte limit. East has no lifetime.
    assert_eq!(old.expires_at, Some(old.established.add_secs(60)));
    let soft = old.rekey_at.unwrap();
    assert!(
        soft >= old.established.add_secs(54) && soft <= old.established.add_secs(57),
        "{soft}"
    );
    let sa = old.ipsec_sa(true).unwrap();
    assert_eq!((sa.lifetime, sa.kbytes), (60, 1024));
    let (_, east_old) = child_pairs(&p).remove(0);
    assert_eq!((east_old.rekey_at, east_old.expires_at), (None, None));
    let mark = p.events.len();

    p.drive_until(Time::from_secs(59));
    let pairs = child_pairs(&p);
    assert_eq!(pairs.len(), 1, "exactly one CHILD_SA after the rekey");
    let (new, _) = &pairs[0];
    assert!(new.spi_in != old.spi_in && new.spi_out != old.spi_out);
    assert!(new.initiator, "west rekeyed it");
    assert_eq!(new.established, soft, "the rekey went at the soft time");
    assert_eq!(new.expires_at, Some(soft.add_secs(60)));
    assert_eq!(create_child_requests(&p), (1, 0));
    for s in [stats(&p.west), stats(&p.east)] {
        assert_eq!(
            (s.child_sas_rekeyed, s.child_sas_expired, s.failed),
            (1, 0, 0)
        );
    }
    // On each side the new SA is in the kernel before the old one goes, and the flows
    // never go away.
    for west in [true, false] {
        let (old_in, new_in) = if west {
            (old.spi_in, new.spi_in)
        } else {
            (old.spi_out, new.spi_out)
        };
        let at = |prefix: String| {
            p.events[mark..]
                .iter()
                .position(|e| is_kernel(e, west, &prefix))
                .unwrap_or_else(|| panic!("no {prefix}: {:#?}", &p.events[mark..]))
        };
        assert!(at(format!("add {new_in:08x}")) < at(format!("del {old_in:08x}")));
        for e in &p.events[mark..] {
            if let Event::Kernel { west: w, flows, .. } = e {
                assert!(*w != west || *flows == 1);
            }
        }
    }
    assert_kernels_hold_the_child_sas(&p);

    // And on: one rekey every 54-57 s, never two CHILD_SAs left, none expired.
    p.drive_until(Time::from_secs(240));
    assert_eq!(child_pairs(&p).len(), 1);
    assert_eq!(stats(&p.west).child_sas_rekeyed, 4);
    assert_eq!(stats(&p.west).child_sas_expired, 0);
    assert_eq!(p.west.ike_sas().count(), 1);
    assert_kernels_hold_the_child_sas(&p);
}

#[test]
fn both_sides_with_the_same_lifetime_still_end_with_one_child_sa_each() {
    let mut p = lifetime_pair((0, 60, 0), (0, 60, 0));
    p.drive_until(Time::from_secs(600));
    let pairs = child_pairs(&p);
    assert_eq!(pairs.len(), 1, "one CHILD_SA on each side");
    let (w, e) = (stats(&p.west), stats(&p.east));
    assert_eq!((w.failed, e.failed), (0, 0));
    assert_eq!((w.child_sas_expired, e.child_sas_expired), (0, 0));
    // Each rekey was started by the side whose soft time came first: ten of them in
    // ten minutes, counted on both sides.
    let (by_west, by_east) = create_child_requests(&p);
    assert!(by_west > 0 && by_east > 0, "{by_west} {by_east}");
    assert_eq!(w.child_sas_rekeyed, (by_west + by_east) as u64);
    assert_eq!(w.child_sas_rekeyed, e.child_sas_rekeyed);
    assert!((10..=11).contains(&w.child_sas_rekeyed), "{w:?}");
    assert_eq!(p.west.ike_sas().count(), 1);
    assert_kernels_hold_the_child_sas(&p);
}

#[test]
fn the_ike_sa_rekeys_by_itself_with_an_ikelifetime() {
    for east_too in [false, true] {
        let east = (if east_too { 100 } else { 0 }, 0, 0);
        let mut p = lifetime_pair((100, 0, 0), east);
        let (_, old) = one_ike(&p.west);
        let soft = old.rekey_at.unwrap();
        assert!(
            soft >= Time::from_secs(90) && soft <= Time::from_secs(96),
            "{soft}"
        );
        assert_eq!(old.expires_at, Some(old.established.add_secs(100)));
        let (_, east_old) = one_ike(&p.east);
        assert_eq!(east_old.rekey_at.is_some(), east_too);
        let (child, _) = child_pairs(&p).remove(0);

        p.drive_until(Time::from_secs(99));
        let (_, new) = one_ike(&p.west);
        let (_, east_new) = one_ike(&p.east);
        assert_ne!(new.spi_i, old.spi_i, "new IKE SPIs");
        assert_eq!((new.spi_i, new.spi_r), (east_new.spi_i, east_new.spi_r));
        assert!(new.established >= Time::from_secs(90));
        assert_eq!(new.expires_at, Some(new.established.add_secs(100)));
        assert_eq!(p.west.stats().ike_sas_rekeyed, 1);
        // The CHILD_SA moved along, untouched.
        let (moved, _) = child_pairs(&p).remove(0);
        assert_eq!(moved.spi_in, child.spi_in);

        // It keeps going; never a second IKE SA, nothing expires.
        p.drive_until(Time::from_secs(500));
        assert_eq!(p.west.ike_sas().count(), 1);
        assert_eq!(p.east.ike_sas().count(), 1);
        let (w, e) = (stats(&p.west), stats(&p.east));
        assert!(w.ike_sas_rekeyed >= 5, "{w:?}");
        assert_eq!(w.ike_sas_rekeyed, e.ike_sas_rekeyed);
        assert_eq!((w.ike_sas_expired, e.ike_sas_expired, w.failed), (0, 0, 0));
        assert_eq!(child_pairs(&p).len(), 1);
        assert_kernels_hold_the_child_sas(&p);
    }
}

#[test]
fn hard_expiry_deletes_a_child_sa_the_peer_never_lets_rekey() {
    let mut p = lifetime_pair((0, 60, 0), (0, 0, 0));
    // East cannot install anything any more: every rekey is TEMPORARY_FAILURE.
    p.east_kernel.refuse_add = usize::MAX;
    p.drive_until(Time::from_secs(59));
    assert_eq!(create_child_requests(&p), (1, 0), "one try, not repeated");
    assert_eq!(child_pairs(&p).len(), 1, "the old CHILD_SA stays meanwhile");
    p.drive_until(Time::from_secs(61));
    assert_eq!(stats(&p.west).child_sas_expired, 1);
    assert_eq!(stats(&p.east).child_sas_expired, 0, "east was told");
    assert_ike_sas_only(&p);
    let info = informationals(&p);
    assert_eq!(
        info.iter().map(|i| (i.0, i.1)).collect::<Vec<_>>(),
        [(true, false), (false, true)],
        "west's Delete, east's answer"
    );
}

#[test]
fn the_ike_sa_is_deleted_at_its_ikelifetime_if_the_peer_never_lets_it_rekey() {
    let mut p = lifetime_pair((30, 0, 0), (0, 0, 0));
    // East drops every CREATE_CHILD_SA request: west's rekey retransmits meanwhile.
    p.fate = Box::new(|d| {
        if d.from_west && exchange(&d.data) == (ExchangeType::CREATE_CHILD_SA.0, false) {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    p.drive_until(Time::from_secs(31));
    assert_eq!(stats(&p.west).ike_sas_expired, 1);
    assert_nothing(&p);
}

#[test]
fn kernel_expires_rekey_when_soft_and_delete_when_hard() {
    let mut p = lifetime_pair((0, 0, 0), (0, 0, 0));
    let (wc, ec) = child_pairs(&p).remove(0);
    let (w_ip, e_ip) = (addr(WEST).ip(), addr(EAST).ip());
    // Both of west's states say soft (a byte limit): one rekey.
    assert!(p.west.handle_expire(p.now, w_ip, wc.spi_in, false));
    assert!(p.west.handle_expire(p.now, e_ip, wc.spi_out, false));
    assert!(
        !p.west.handle_expire(p.now, e_ip, wc.spi_in, false),
        "wrong dst"
    );
    assert!(!p.west.handle_expire(p.now, w_ip, 0x4242_4242, true));
    p.drive();
    assert_eq!(create_child_requests(&p), (1, 0));
    let (wn, en) = child_pairs(&p).remove(0);
    assert!(wn.spi_in != wc.spi_in && en.spi_in != ec.spi_in);
    assert_eq!(stats(&p.west).child_sas_rekeyed, 1);
    assert_kernels_hold_the_child_sas(&p);
    // A hard EXPIRE on east deletes it on both sides.
    assert!(p.east.handle_expire(p.now, e_ip, en.spi_in, true));
    p.drive();
    assert_eq!(stats(&p.east).child_sas_expired, 1);
    assert_ike_sas_only(&p);
}

#[test]
fn ike_and_child_sa_lifetimes_together_on_both_sides_with_a_slow_kernel() {
    for (ike, child, delay) in [
        (70, 60, 400),
        (60, 60, 0),
        (60, 60, 250),
        (65, 60, 700),
        (600, 60, 100),
    ] {
        let with = |me: &str| Peer {
            ike_lifetime_secs: ike,
            child_lifetime_secs: child,
            child_lifetime_bytes: 0,
            cp: Default::default(),
            ..peer(me, "secret", &[GCM_ECP256], &[ESP_GCM_PFS])
        };
        let mut p = Pair::with_kernels(with(WEST), with(EAST), delay);
        p.west.connect(p.now, "peer").unwrap();
        p.drive_until(Time::from_secs(1200));
        // Past whatever exchange was under way at the end.
        p.drive_until(p.now.add_secs(5));
        let (w, e) = (stats(&p.west), stats(&p.east));
        let case = format!("{ike} {child} {delay}: {w:?} {e:?}");
        assert_eq!((w.failed, e.failed), (0, 0), "{case}");
        assert_eq!((w.child_sas_expired, e.child_sas_expired), (0, 0), "{case}");
        assert_eq!((w.ike_sas_expired, e.ike_sas_expired), (0, 0), "{case}");
        // One rekey each 90-95 % of a lifetime, both sides counting each.
        assert!(
            w.ike_sas_rekeyed >= 1100 / ike && w.child_sas_rekeyed >= 1100 / child,
            "{case}"
        );
        assert_eq!(
            (w.ike_sas_rekeyed, w.child_sas_rekeyed),
            (e.ike_sas_rekeyed, e.child_sas_rekeyed),
            "{case}"
        );
        assert_eq!(p.west.ike_sas().count(), 1, "{case}");
        assert_eq!(p.east.ike_sas().count(), 1, "{case}");
        let (_, wi) = one_ike(&p.west);
        let (_, ei) = one_ike(&p.east);
        assert_eq!((wi.spi_i, wi.spi_r), (ei.spi_i, ei.spi_r));
        assert_eq!(child_pairs(&p).len(), 1, "{case}");
        assert_kernels_hold_the_child_sas(&p);
    }
}

// ----- Signature authentication (RFC 7296 §2.15, RFC 4754, RFC 7427) -----

/// Keys and certificates made once for the signature tests: CA `ca` with hosts west and
/// east (RSA), westec/eastec (P-256), east384 (P-384) for east's and west's addresses;
/// `otherca` with mallory (east's address); a CRL of `ca` revoking east; bare keys.
fn sig_pki() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("isakmpd-v2pki-{}", std::process::id()));
        let (w, e) = (&WEST[..9], &EAST[..9]);
        pki::ca(&dir, "ca");
        pki::ca(&dir, "otherca");
        pki::host(&dir, "ca", "west", w);
        pki::host(&dir, "ca", "east", e);
        pki::host_ec(&dir, "ca", "westec", w, "P-256");
        pki::host_ec(&dir, "ca", "eastec", e, "P-256");
        pki::host_ec(&dir, "ca", "east384", e, "P-384");
        pki::host(&dir, "otherca", "mallory", e);
        let crl = pki::crl(&dir, "ca", &["east"]);
        std::fs::rename(crl, dir.join("revokes-east.crl")).unwrap();
        pki::raw_key(&dir, "rawwest");
        pki::raw_key(&dir, "raweast");
        let st = std::process::Command::new("openssl")
            .args([
                "x509",
                "-in",
                "mallory.crt",
                "-pubkey",
                "-noout",
                "-out",
                "mallory.pub",
            ])
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(st.success());
        dir
    })
}

fn pki_file(name: &str) -> Vec<u8> {
    std::fs::read(sig_pki().join(name)).unwrap()
}

/// Credentials of host `name` (its key and certificate) trusting `ca`.
fn creds(name: &str, ca: &str) -> isakmpd::ike::Credentials {
    isakmpd::ike::Credentials::load(
        Some(&pki_file(&format!("{name}.key"))),
        &[pki_file(&format!("{name}.crt"))],
        &[pki_file(&format!("{ca}.crt"))],
    )
    .unwrap()
}

fn sig_peer(me: &str, m: SigMethod) -> Peer {
    Peer {
        auth: PeerAuth::Sig(m),
        ..peer(me, "", &[GCM_ECP256], &[ESP_GCM])
    }
}

fn sig_pair(
    (wm, wc): (SigMethod, isakmpd::ike::Credentials),
    (em, ec): (SigMethod, isakmpd::ike::Credentials),
) -> Pair {
    let mut p = Pair::new(sig_peer(WEST, wm), sig_peer(EAST, em));
    p.west.set_credentials(wc);
    p.east.set_credentials(ec);
    p.connect();
    p
}

/// IKE_AUTH failed: nothing on either side, both counted it, and the responder said so
/// at once (no retransmission).
fn auth_fails_cleanly(p: &Pair) {
    assert_nothing(p);
    assert_eq!(stats(&p.west).failed, 1);
    assert_eq!(stats(&p.east).failed, 1);
    assert_eq!(stats(&p.west).retransmits, 0);
}

#[test]
fn rsa_certificates_both_ways_with_every_rsa_method() {
    for (wm, em) in [
        (SigMethod::Any, SigMethod::Any),
        (SigMethod::Rsa, SigMethod::Rsa),
        (SigMethod::Rfc7427, SigMethod::Rfc7427),
        (SigMethod::Rfc7427, SigMethod::Any),
        (SigMethod::Any, SigMethod::Rfc7427),
        // rsa takes RFC 7427 signatures by RSA keys: east signs so (west announced
        // SIGNATURE_HASH_ALGORITHMS), west with method 1.
        (SigMethod::Rsa, SigMethod::Any),
    ] {
        let p = sig_pair((wm, creds("west", "ca")), (em, creds("east", "ca")));
        assert_established(&p);
        assert_eq!(stats(&p.west).retransmits, 0, "{wm:?}/{em:?}");
    }
}

#[test]
fn ecdsa_certificates_p256_and_p384_and_mixed_with_rsa() {
    for (w, e, wm, em) in [
        ("westec", "eastec", SigMethod::Ecdsa256, SigMethod::Ecdsa256),
        ("westec", "eastec", SigMethod::Any, SigMethod::Any),
        ("westec", "east384", SigMethod::Any, SigMethod::Any),
        ("westec", "east384", SigMethod::Rfc7427, SigMethod::Any),
        ("west", "eastec", SigMethod::Any, SigMethod::Any),
        ("west", "east384", SigMethod::Rfc7427, SigMethod::Rfc7427),
    ] {
        let p = sig_pair((wm, creds(w, "ca")), (em, creds(e, "ca")));
        assert_established(&p);
    }
}

#[test]
fn a_method_the_policy_does_not_take_fails_cleanly() {
    // A method named in the policy is ours and the one we take, as in iked. West signs
    // with method 1 (rsa); east demands RFC 7427: east refuses west's AUTH.
    let p = sig_pair(
        (SigMethod::Rsa, creds("west", "ca")),
        (SigMethod::Rfc7427, creds("east", "ca")),
    );
    auth_fails_cleanly(&p);
    // West's policy is rsa; east, allowing any, signs with its ECDSA key: west refuses
    // east's AUTH after east has taken west's.
    let p = sig_pair(
        (SigMethod::Rsa, creds("west", "ca")),
        (SigMethod::Any, creds("eastec", "ca")),
    );
    assert_nothing(&p);
    assert_eq!(stats(&p.west).failed, 1);
    // P-256 demanded, P-384 used.
    let p = sig_pair(
        (SigMethod::Ecdsa256, creds("westec", "ca")),
        (SigMethod::Ecdsa384, creds("east384", "ca")),
    );
    assert_nothing(&p);
    // East's policy is rsa but its key is ECDSA: it cannot sign and answers nothing
    // useful; west ends with nothing, and so does east.
    let p = sig_pair(
        (SigMethod::Any, creds("west", "ca")),
        (SigMethod::Rsa, creds("eastec", "ca")),
    );
    assert_nothing(&p);
}

#[test]
fn a_certificate_from_a_ca_we_do_not_trust_fails_cleanly() {
    // The responder's certificate chains to otherca, which west does not trust.
    let p = sig_pair(
        (SigMethod::Any, creds("west", "ca")),
        (SigMethod::Any, creds("mallory", "otherca")),
    );
    assert_nothing(&p);
    assert_eq!(stats(&p.west).failed, 1);
    // And the other way: east does not trust west's.
    let p = sig_pair(
        (SigMethod::Any, creds("mallory", "otherca")),
        (SigMethod::Any, creds("east", "ca")),
    );
    // mallory has east's address in its certificate, not west's: refused either way.
    auth_fails_cleanly(&p);
}

#[test]
fn a_certificate_that_does_not_name_the_peers_id_fails_cleanly() {
    // West's certificate names 192.0.2.1; west claims to be a host name instead.
    let mut west = sig_peer(WEST, SigMethod::Any);
    west.local_id = Identity::fqdn("somebody.example");
    let mut east = sig_peer(EAST, SigMethod::Any);
    east.remote_id = None;
    let mut p = Pair::new(west, east);
    p.west.set_credentials(creds("west", "ca"));
    p.east.set_credentials(creds("east", "ca"));
    p.connect();
    auth_fails_cleanly(&p);
}

#[test]
fn a_revoked_certificate_fails_cleanly() {
    let crl = [("revokes-east.crl".to_string(), pki_file("revokes-east.crl"))];
    let mut wc = creds("west", "ca");
    assert!(wc.add_crls(&crl).is_empty());
    let p = sig_pair((SigMethod::Any, wc), (SigMethod::Any, creds("east", "ca")));
    assert_nothing(&p);
    assert_eq!(stats(&p.west).failed, 1);
    // The same pair without the CRL comes up.
    let p = sig_pair(
        (SigMethod::Any, creds("west", "ca")),
        (SigMethod::Any, creds("east", "ca")),
    );
    assert_established(&p);
}

#[test]
fn raw_public_keys_from_pubkeys_without_certificates() {
    let raw = |me: &str, them: &str, them_ip: &str| {
        let mut c =
            isakmpd::ike::Credentials::load(Some(&pki_file(&format!("{me}.key"))), &[], &[])
                .unwrap();
        c.add_pubkey("ipv4", them_ip, &pki_file(&format!("{them}.pub")))
            .unwrap();
        c
    };
    let p = sig_pair(
        (SigMethod::Any, raw("rawwest", "raweast", &EAST[..9])),
        (SigMethod::Any, raw("raweast", "rawwest", &WEST[..9])),
    );
    assert_established(&p);
    // East holds another key for west's address: refused.
    let p = sig_pair(
        (SigMethod::Any, raw("rawwest", "raweast", &EAST[..9])),
        (SigMethod::Any, raw("raweast", "raweast", &WEST[..9])),
    );
    auth_fails_cleanly(&p);
}

#[test]
fn a_psk_peer_is_refused_by_a_signature_policy_and_the_other_way() {
    let mut p = Pair::new(
        peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        sig_peer(EAST, SigMethod::Any),
    );
    p.east.set_credentials(creds("east", "ca"));
    p.connect();
    auth_fails_cleanly(&p);
    let mut p = Pair::new(
        sig_peer(WEST, SigMethod::Any),
        peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
    );
    p.west.set_credentials(creds("west", "ca"));
    p.connect();
    assert_nothing(&p);
}

#[test]
fn signature_messages_survive_loss_and_duplication() {
    for k in 0..4 {
        for fate in [Fate::Drop, Fate::Duplicate] {
            let mut p = Pair::new(
                sig_peer(WEST, SigMethod::Any),
                sig_peer(EAST, SigMethod::Any),
            );
            p.west.set_credentials(creds("west", "ca"));
            p.east.set_credentials(creds("eastec", "ca"));
            let mut done = false;
            p.fate = Box::new(move |d| {
                if !done && kind(&d.data) == k {
                    done = true;
                    fate
                } else {
                    Fate::Deliver
                }
            });
            p.connect();
            assert_established(&p);
        }
    }
}

// ----- IKE fragmentation (RFC 7383) -----

/// A pair with certificates (RSA west, ECDSA east: IKE_AUTH is well over 548 bytes)
/// whose sides have fragmentation as given, fragments of at most `size` bytes (0:
/// iked's 548 for IPv4).
fn frag_pair(west_frag: bool, east_frag: bool, size: usize) -> Pair {
    let mut p = Pair::new(
        sig_peer(WEST, SigMethod::Any),
        sig_peer(EAST, SigMethod::Any),
    );
    let cfg = |on| Config {
        fragmentation: on,
        fragment_size: size,
        ..Config::default()
    };
    p.west = engine_with(sig_peer(WEST, SigMethod::Any), 1, cfg(west_frag));
    p.east = engine_with(sig_peer(EAST, SigMethod::Any), 2, cfg(east_frag));
    p.west.set_credentials(creds("west", "ca"));
    p.east.set_credentials(creds("eastec", "ca"));
    p
}

/// Whether a datagram is an SKF fragment: (number, total).
fn skf(d: &[u8]) -> Option<(u16, u16)> {
    let m = Message::parse(d).ok()?;
    let f = m.payloads.iter().find_map(|e| match e.ty {
        PayloadType::SKF => {
            let b = e.body;
            Some((
                u16::from_be_bytes([b[0], b[1]]),
                u16::from_be_bytes([b[2], b[3]]),
            ))
        }
        _ => None,
    });
    f
}

#[test]
fn ike_auth_goes_in_fragments_of_at_most_548_bytes_when_both_support_them() {
    let mut p = frag_pair(true, true, 0);
    p.connect();
    assert_established(&p);
    for k in [2, 3] {
        let frags: Vec<(u16, u16)> = p
            .sent
            .iter()
            .filter(|d| kind(&d.data) == k)
            .map(|d| skf(&d.data).expect("an SKF"))
            .collect();
        let total = frags[0].1;
        assert!(total >= 2, "message {k}: {frags:?}");
        assert_eq!(frags, (1..=total).map(|n| (n, total)).collect::<Vec<_>>());
        assert!(p
            .sent
            .iter()
            .filter(|d| kind(&d.data) == k)
            .all(|d| d.data.len() <= 548));
    }
    assert!(stats(&p.west).fragments_sent >= 2 && stats(&p.east).fragments_sent >= 2);
    assert_eq!(
        stats(&p.west).fragments_received,
        stats(&p.east).fragments_sent
    );
    assert_eq!(
        stats(&p.east).fragments_received,
        stats(&p.west).fragments_sent
    );
    // Later exchanges fragment too when they must; a small one goes whole.
    let now = p.now;
    assert_eq!(p.west.delete_child(now, ChildRef::Peer("peer")), 1);
    p.drive();
    assert!(p
        .sent
        .iter()
        .filter(|d| kind(&d.data) == 4)
        .all(|d| skf(&d.data).is_none()));
}

#[test]
fn without_support_on_one_side_nothing_is_fragmented() {
    for (w, e) in [(true, false), (false, true)] {
        let mut p = frag_pair(w, e, 0);
        p.connect();
        assert_established(&p);
        assert!(p.sent.iter().all(|d| skf(&d.data).is_none()));
        assert_eq!(p.count(2), 1);
        assert_eq!(
            stats(&p.west).fragments_sent + stats(&p.east).fragments_sent,
            0
        );
    }
}

#[test]
fn a_lost_or_duplicated_fragment_is_recovered() {
    // Each fragment of IKE_AUTH's request, then of its response, lost once; then each
    // duplicated once.
    for fate in [Fate::Drop, Fate::Duplicate] {
        for k in [2, 3] {
            for n in 1..=3u16 {
                let mut p = frag_pair(true, true, 300);
                let mut done = false;
                p.fate = Box::new(move |d| {
                    if !done && kind(&d.data) == k && skf(&d.data).map(|f| f.0) == Some(n) {
                        done = true;
                        fate
                    } else {
                        Fate::Deliver
                    }
                });
                p.connect();
                assert_established(&p);
                if fate == Fate::Drop {
                    // The initiator sent the request again, every fragment of it.
                    assert_eq!(stats(&p.west).retransmits, 1, "{k}/{n}");
                    if k == 3 {
                        // Fragment 1 of the repeated request brought the answer again.
                        assert_eq!(stats(&p.east).responses_resent, 1, "{k}/{n}");
                    }
                }
            }
        }
    }
}

#[test]
fn fragments_of_a_psk_pair_in_many_small_pieces() {
    let cfg = Config {
        fragmentation: true,
        fragment_size: 120,
        ..Config::default()
    };
    let mut p = Pair::new(
        peer(WEST, "secret", &[CBC_MODP2048], &[ESP_CBC]),
        peer(EAST, "secret", &[CBC_MODP2048], &[ESP_CBC]),
    );
    p.west = engine_with(
        peer(WEST, "secret", &[CBC_MODP2048], &[ESP_CBC]),
        1,
        cfg.clone(),
    );
    p.east = engine_with(peer(EAST, "secret", &[CBC_MODP2048], &[ESP_CBC]), 2, cfg);
    p.connect();
    assert_established(&p);
    assert!(p.count(2) >= 4, "{}", p.count(2));
    assert!(p
        .sent
        .iter()
        .filter(|d| kind(&d.data) >= 2)
        .all(|d| d.data.len() <= 120));
}

// ----- Configuration payloads (RFC 7296 §2.19, §3.15) -----

/// West asks for an address and a name server from any address of its own; east
/// serves them from `pool` for the peer's side of its CHILD_SAs.
fn cp_pair(pool: (&str, u8)) -> Pair {
    let (west, east) = cp_peers(pool);
    Pair::new(west, east)
}

fn cp_peers(pool: (&str, u8)) -> (Peer, Peer) {
    use isakmpd::ikev2::policy::CpConfig;
    use isakmpd::ikev2::wire::CfgAttrType;
    let mut west = peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]);
    west.local_ts = vec![net("0.0.0.0/0")];
    west.cp = CpConfig {
        request: vec![
            CfgAttrType::INTERNAL_IP4_ADDRESS,
            CfgAttrType::INTERNAL_IP4_DNS,
        ],
        ..CpConfig::default()
    };
    let mut east = peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]);
    let base: IpAddr = pool.0.parse().unwrap();
    east.remote_ts = vec![Selector::subnet(base, pool.1)];
    east.cp = CpConfig {
        pool: Some((base, pool.1)),
        serve: vec![(CfgAttrType::INTERNAL_IP4_DNS, vec![203, 0, 113, 53])],
        ..CpConfig::default()
    };
    (west, east)
}

fn vips(e: &Engine) -> Vec<(Option<IpAddr>, Option<IpAddr>)> {
    e.ike_sas().map(|(_, i)| (i.own_vip, i.peer_vip)).collect()
}

/// West was given `addr` by east's pool, and its one CHILD_SA is narrowed to it on
/// west's side (east's network on the other).
fn assert_pool_address(p: &Pair, addr: &str) -> IpAddr {
    let a: IpAddr = addr.parse().unwrap();
    assert_eq!(vips(&p.west), vec![(Some(a), None)]);
    assert_eq!(vips(&p.east), vec![(None, Some(a))]);
    let (wc, ec) = (children(&p.west), children(&p.east));
    assert_eq!((wc.len(), ec.len()), (1, 1));
    assert_eq!(wc[0].ts_local, vec![Selector::host(a)]);
    assert_eq!(ec[0].ts_remote, vec![Selector::host(a)]);
    assert_eq!(wc[0].ts_remote, vec![net("203.0.113.0/24")]);
    assert_kernels_hold_the_child_sas(p);
    a
}

#[test]
fn a_road_warrior_gets_an_address_from_the_pool_and_its_child_sa_is_narrowed_to_it() {
    let mut p = cp_pair(("198.51.100.128", 28));
    p.connect();
    let a = assert_pool_address(&p, "198.51.100.129");
    let wc = children(&p.west);
    // A rekeyed CHILD_SA and a rekeyed IKE SA keep the address.
    let now = p.now;
    assert!(p.west.rekey_child(now, ChildRef::Spi(wc[0].spi_in)) > 0);
    p.drive();
    let now = p.now;
    assert!(p.east.rekey_ike(now, IkeRef::Peer("peer")) > 0);
    p.drive();
    assert_eq!(vips(&p.east), vec![(None, Some(a))]);
    assert_eq!(children(&p.east)[0].ts_remote, vec![Selector::host(a)]);
}

#[test]
fn an_exhausted_pool_is_internal_address_failure_and_a_deleted_sa_gives_its_address_back() {
    // One address: the second IKE SA of the same peer finds none.
    let mut p = cp_pair(("198.51.100.77", 32));
    p.connect();
    let a: IpAddr = "198.51.100.77".parse().unwrap();
    assert_eq!(vips(&p.east), vec![(None, Some(a))]);
    p.connect();
    assert_eq!(p.east.ike_sas().count(), 2);
    assert_eq!(children(&p.east).len(), 1, "no CHILD_SA for the second");
    assert_eq!(
        vips(&p.east).iter().filter(|v| v.1.is_none()).count(),
        1,
        "the second has no address"
    );
    // The first goes; its address is free again for the next.
    let first = p
        .west
        .ike_sas()
        .find(|(_, i)| i.own_vip == Some(a))
        .map(|(h, _)| h)
        .unwrap();
    let now = p.now;
    assert_eq!(p.west.delete_ike(now, IkeRef::Handle(first)), 1);
    p.drive();
    p.connect();
    assert!(
        vips(&p.east).contains(&(None, Some(a))),
        "{:?}",
        vips(&p.east)
    );
}

#[test]
fn invalid_ke_in_create_child_sa_makes_the_initiator_retry_with_the_named_group() {
    // West offers PFS with MODP-2048 first (its KEi is for it) and ECP-256 second; east
    // takes only ECP-256: INVALID_KE_PAYLOAD naming it, and west asks again with it.
    let modp = EspProposal {
        pfs: Some(DhGroup::MODP_2048),
        ..ESP_GCM
    };
    let ecp = EspProposal {
        pfs: Some(DhGroup::ECP_256),
        ..ESP_GCM
    };
    let mut p = Pair::new(
        peer(WEST, "secret", &[GCM_ECP256], &[modp, ecp]),
        peer(EAST, "secret", &[GCM_ECP256], &[ecp]),
    );
    p.connect();
    assert_eq!(children(&p.west).len(), 1);
    p.sent.clear();
    let spi = children(&p.west)[0].spi_in;
    let now = p.now;
    assert_eq!(p.west.rekey_child(now, ChildRef::Spi(spi)), 1);
    p.drive();
    let requests = p
        .sent
        .iter()
        .filter(|d| d.from_west && exchange(&d.data) == (36, false))
        .count();
    assert_eq!(
        requests, 2,
        "the CREATE_CHILD_SA request, then again with ECP-256"
    );
    let pairs = child_pairs(&p);
    assert_eq!(pairs.len(), 1, "the rekeyed CHILD_SA replaced the old one");
    assert_eq!(pairs[0].0.pfs, Some(DhGroup::ECP_256));
    assert_ne!(pairs[0].0.spi_in, spi);
    assert_kernels_hold_the_child_sas(&p);
}

#[test]
fn a_certificate_whose_key_is_in_pubkeys_is_taken_without_a_ca() {
    // East's certificate is from otherca, which west does not trust; but west holds its
    // key in pubkeys/ for east's address (iked looks there first).
    let mut wc = creds("west", "ca");
    wc.add_pubkey("ipv4", &EAST[..9], &pki_file("mallory.pub"))
        .unwrap();
    let mut ec = creds("mallory", "otherca");
    ec.cas = vec![isakmpd::ike::crypto::Certificate::parse(&pki_file("ca.crt")).unwrap()];
    ec.trust = Some(isakmpd::ike::crypto::TrustStore::new(&ec.cas).unwrap());
    let p = sig_pair((SigMethod::Any, wc), (SigMethod::Any, ec));
    assert_established(&p);
}

#[test]
fn a_peer_without_a_pool_address_cannot_claim_one() {
    // West asks for nothing and proposes a pool address as its side: east has no
    // address to narrow to and takes nothing of the pool: no CHILD_SA.
    let mut p = cp_pair(("198.51.100.128", 28));
    let mut west = peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]);
    west.local_ts = vec![net("198.51.100.130/32")];
    p.west = engine(west, 1);
    p.connect();
    assert_eq!(p.east.ike_sas().count(), 1);
    assert!(children(&p.east).is_empty() && children(&p.west).is_empty());
    assert_eq!(vips(&p.east), vec![(None, None)]);
}

#[test]
fn simultaneous_ike_sa_rekeys_leave_one_ike_sa_with_the_child_sa() {
    // Both ends rekey the IKE SA at once (§2.8.2); the seeds vary the nonces, so that
    // either side's new IKE SA is the redundant one in some of the runs.
    let mut redundant_west = 0;
    for seed in 0..8u64 {
        let mut p = Pair::new(
            peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
            peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        );
        p.west = engine(peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]), 100 + seed);
        p.east = engine(peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]), 200 + seed);
        p.connect();
        assert_established(&p);
        let (_, old) = one_ike(&p.west);
        let (child, _) = child_pairs(&p).remove(0);
        let now = p.now;
        assert_eq!(p.west.rekey_ike(now, IkeRef::Peer("peer")), 1);
        assert_eq!(p.east.rekey_ike(now, IkeRef::Peer("peer")), 1);
        p.drive();
        let ((wh, w), (eh, e)) = (one_ike(&p.west), one_ike(&p.east));
        assert_eq!((w.spi_i, w.spi_r), (e.spi_i, e.spi_r), "seed {seed}");
        assert!(w.spi_i != old.spi_i && w.spi_r != old.spi_r, "new SPIs");
        assert_eq!(w.initiator, !e.initiator);
        redundant_west += usize::from(!w.initiator);
        let pairs = child_pairs(&p);
        assert_eq!(pairs.len(), 1, "seed {seed}");
        assert_eq!(pairs[0].0.spi_in, child.spi_in);
        assert_eq!((pairs[0].0.ike, pairs[0].1.ike), (wh, eh));
        assert_eq!(stats(&p.west).child_sas_deleted, 0);
        assert_eq!(stats(&p.west).failed + stats(&p.east).failed, 0);
        // The survivor works.
        rekey_once_more(&mut p);
        assert_eq!(p.east.delete_ike(p.now, IkeRef::Peer("peer")), 1);
        p.drive();
        assert_nothing(&p);
    }
    assert!(
        (1..8).contains(&redundant_west),
        "each side's rekey was the redundant one in some run: {redundant_west}"
    );
}

#[test]
fn behind_a_nat_the_initiator_moves_to_4500_and_keeps_the_mapping_open() {
    // West is behind a NAT (203.0.113.99, ports 40500 and 44500); east takes any peer.
    let mut east = peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]);
    east.remote = addr("0.0.0.0:500");
    let mut p = Pair::new(peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]), east);
    p.nat = Some("203.0.113.99".parse().unwrap());
    p.west.connect(p.now, "peer").unwrap();
    p.drive_until(Time(5_000));
    let ((_, w), (_, e)) = (one_ike(&p.west), one_ike(&p.east));
    assert_eq!(
        (w.state, e.state),
        (IkeState::Established, IkeState::Established)
    );
    assert!(
        w.nat_local && !w.nat_remote,
        "west sees itself behind a NAT"
    );
    assert!(e.nat_remote && !e.nat_local, "east sees west behind one");
    assert_eq!(w.local.port(), 4500);
    assert_eq!(e.remote, addr("203.0.113.99:44500"));
    let (wc, ec) = (children(&p.west), children(&p.east));
    assert_eq!((wc.len(), ec.len()), (1, 1));
    assert_eq!(wc[0].encap, Some((4500, 4500)));
    assert_eq!(ec[0].encap, Some((4500, 44500)));
    // Keepalives: west, behind the NAT, every 20 s from port 4500; east none.
    p.sent.clear();
    let dropped = stats(&p.east).datagrams_dropped;
    p.drive_until(Time(5_000 + 61_000));
    assert_eq!(
        stats(&p.east).datagrams_dropped,
        dropped,
        "keepalives are not drops"
    );
    let ka: Vec<&Datagram> = p.sent.iter().filter(|d| d.data == [0xff]).collect();
    assert_eq!(ka.len(), 3, "three in 61 s");
    assert!(ka
        .iter()
        .all(|d| d.from_west && d.src.port() == 4500 && d.dst.port() == 4500));
    assert_eq!(stats(&p.west).nat_keepalives, 3);
    assert_eq!(stats(&p.east).nat_keepalives, 0);
    // They do not disturb the IKE SA: a CHILD_SA rekey and the delete still work.
    let spi = wc[0].spi_in;
    assert_eq!(p.west.rekey_child(p.now, ChildRef::Spi(spi)), 1);
    let end = Time(p.now.0 + 5_000);
    p.drive_until(end);
    assert_eq!(children(&p.west).len(), 1);
    assert_ne!(children(&p.west)[0].spi_in, spi);
    assert_eq!(p.west.delete_ike(p.now, IkeRef::Peer("peer")), 1);
    let end = Time(p.now.0 + 5_000);
    p.drive_until(end);
    assert_eq!(p.west.ike_sas().count() + p.east.ike_sas().count(), 0);
}

// ----- EAP-MSCHAPv2 (RFC 7296 §2.16, RFC 2759) -----

/// The warnings about EAP that the engines log (a logger for this test binary that keeps
/// only those lines).
fn eap_log() -> &'static std::sync::Mutex<Vec<String>> {
    struct Keep(std::sync::Mutex<Vec<String>>);
    impl log::Log for Keep {
        fn enabled(&self, m: &log::Metadata<'_>) -> bool {
            m.level() <= log::Level::Info
        }
        fn log(&self, r: &log::Record<'_>) {
            let line = r.args().to_string();
            if line.contains("EAP") {
                self.0.lock().unwrap().push(line);
            }
        }
        fn flush(&self) {}
    }
    static KEEP: std::sync::OnceLock<&'static Keep> = std::sync::OnceLock::new();
    let k = KEEP.get_or_init(|| {
        let k: &'static Keep = Box::leak(Box::new(Keep(Default::default())));
        if log::set_logger(k).is_ok() {
            log::set_max_level(log::LevelFilter::Info);
        }
        k
    });
    &k.0
}

fn logged(what: &str) -> bool {
    eap_log().lock().unwrap().iter().any(|l| l.contains(what))
}

fn eap_user(name: &str, password: &str) -> isakmpd::ikev2::mschap::EapUser {
    isakmpd::iked::users::eap_user(name, password.as_bytes()).unwrap()
}

/// West the EAP-MSCHAPv2 client as `user` with `password`, checking east's certificate;
/// east signing and serving `users`, under iked.conf's `eap "mschap-v2"`.
fn eap_pair(user: &str, password: &str, users: &[(&str, &str)]) -> Pair {
    let (west, east) = eap_peers(user, password);
    eap_ready(Pair::new(west, east), users)
}

fn eap_peers(user: &str, password: &str) -> (Peer, Peer) {
    let west = Peer {
        auth: PeerAuth::EapClient(SigMethod::Any, eap_user(user, password)),
        ..sig_peer(WEST, SigMethod::Any)
    };
    let east = Peer {
        auth: PeerAuth::EapServer(SigMethod::Any),
        ..sig_peer(EAST, SigMethod::Any)
    };
    (west, east)
}

/// `p` with west's and east's certificates and east's EAP `users`.
fn eap_ready(mut p: Pair, users: &[(&str, &str)]) -> Pair {
    eap_log();
    p.west.set_credentials(creds("west", "ca"));
    p.east.set_credentials(creds("east", "ca"));
    p.east
        .set_eap_users(users.iter().map(|(n, pw)| eap_user(n, pw)).collect());
    p
}

#[test]
fn eap_mschapv2_client_and_server_come_up() {
    let mut p = eap_pair(
        "alice",
        "wonder land",
        &[("bob", "x"), ("alice", "wonder land")],
    );
    p.connect();
    assert_established(&p);
    // IKE_AUTH without AUTH, Identity, Response, Success response, AUTH with the MSK.
    assert_eq!((p.count(2), p.count(3)), (5, 5));
    assert!(logged("EAP-MSCHAPv2: user \"alice\" authenticated"));
    // A domain in front of the name, as Windows sends it, finds the user too.
    let mut p = eap_pair("EXAMPLE\\alice", "wonder land", &[("alice", "wonder land")]);
    p.connect();
    assert_established(&p);
    // With kernels that take their time: the last answer waits for the CHILD_SA.
    let (west, east) = eap_peers("alice", "pw");
    let mut p = eap_ready(Pair::with_kernels(west, east, 700), &[("alice", "pw")]);
    p.connect();
    assert_established(&p);
}

#[test]
fn eap_mschapv2_comes_up_through_lost_and_repeated_messages() {
    // Every IKE_AUTH message once lost, then once duplicated: the client retransmits,
    // the server answers repeats from the response it kept.
    for fate in [Fate::Drop, Fate::Duplicate] {
        for nth in 0..10 {
            let mut p = eap_pair("alice", "pw", &[("alice", "pw")]);
            let mut seen = 0;
            p.fate = Box::new(move |d| {
                if kind(&d.data) == 2 || kind(&d.data) == 3 {
                    seen += 1;
                    if seen == nth + 1 {
                        return fate;
                    }
                }
                Fate::Deliver
            });
            p.connect();
            assert_established(&p);
        }
    }
}

#[test]
fn eap_mschapv2_wrong_password_or_unknown_user_fails_cleanly_on_both_sides() {
    for (user, pw, why) in [
        (
            "alice",
            "wrong",
            "user \"alice\": wrong password; EAP Failure",
        ),
        (
            "mallory",
            "pw",
            "user \"mallory\": unknown user; EAP Failure",
        ),
    ] {
        let mut p = eap_pair(user, pw, &[("alice", "pw")]);
        p.connect();
        auth_fails_cleanly(&p);
        assert!(logged(why), "{why}: {:?}", eap_log().lock().unwrap());
        assert!(logged("the server refused us (EAP Failure)"));
    }
    // With kernels: the SPI west reserved for the CHILD_SA goes back.
    let (west, east) = eap_peers("alice", "wrong");
    let mut p = eap_ready(Pair::with_kernels(west, east, 50), &[("alice", "pw")]);
    p.connect();
    auth_fails_cleanly(&p);
    assert_kernels_hold_the_child_sas(&p);
    // No users at all (`ikectl reset user`): refused before any EAP.
    let mut p = eap_pair("alice", "pw", &[("alice", "pw")]);
    p.east.set_eap_users(Vec::new());
    p.connect();
    auth_fails_cleanly(&p);
    assert!(logged("IKE_AUTH: no EAP users are configured"));
}

#[test]
fn a_peer_with_a_shared_key_or_signature_where_eap_is_wanted_fails_cleanly() {
    let mut p = eap_pair("alice", "pw", &[("alice", "pw")]);
    // West signs instead of using EAP.
    p.west.set_policy(
        p.now,
        Policy {
            peers: vec![sig_peer(WEST, SigMethod::Any)],
        },
    );
    p.connect();
    auth_fails_cleanly(&p);
    assert!(logged(
        "the peer sent AUTH where the policy wants EAP-MSCHAPv2"
    ));
}

#[test]
fn an_eap_road_warrior_gets_its_address_and_child_sa_from_the_first_ike_auth() {
    // The CP and SA of the first IKE_AUTH request are answered in the last response.
    let (mut west, mut east) = cp_peers(("198.51.100.128", 28));
    west.auth = PeerAuth::EapClient(SigMethod::Any, eap_user("alice", "pw"));
    east.auth = PeerAuth::EapServer(SigMethod::Any);
    let mut p = eap_ready(Pair::new(west, east), &[("alice", "pw")]);
    p.connect();
    assert_pool_address(&p, "198.51.100.129");
}

// Rekey crossings (RFC 7296 §2.8.2, §2.25): IKE SA rekeys whose Delete of the old IKE
// SA overtakes the other side's rekey, and CHILD_SA rekeys crossing an IKE SA rekey.

/// An established pair with kernels answering after `delay_ms`, the engines' randomness
/// from `seed` (other nonces, so that either side's rekey wins some runs); capture on.
fn crossing_pair(seed: u64, delay_ms: u64) -> Pair {
    let config = Config {
        kernel_answers: true,
        ..Config::default()
    };
    let (w, e) = (
        peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
    );
    let mut p = Pair::new(w.clone(), e.clone());
    p.west = engine_with(w, 100 + seed, config.clone());
    p.east = engine_with(e, 200 + seed, config);
    p.kernel_delay = delay_ms;
    p.connect();
    assert_established(&p);
    p.west.set_capture(true);
    p.east.set_capture(true);
    p.sent.clear();
    p
}

/// How many messages (either side's, in clear) carried a notify of type `ty`.
fn captured_notifies(p: &mut Pair, ty: NotifyType) -> usize {
    let mut n = 0;
    for e in [&mut p.west, &mut p.east] {
        while let Some(c) = e.poll_capture() {
            let Ok(m) = Message::parse(&c.data) else {
                continue;
            };
            n += usize::from(m.payloads.notifies().any(|x| x.ty == ty));
        }
    }
    n
}

/// After a rekey crossing: one IKE SA on each side with new SPIs, and the one CHILD_SA
/// pair under it; the kernels hold exactly that, and always held a flow from `mark` (an
/// index in the timeline) on: no gap. Nothing failed, no table slot is left over. Then
/// the survivors rekey the CHILD_SA and are deleted, leaving nothing.
fn assert_crossing_settled(p: &mut Pair, old: &isakmpd::ikev2::engine::IkeSaInfo, mark: usize) {
    let ((wh, w), (eh, e)) = (one_ike(&p.west), one_ike(&p.east));
    assert_eq!((w.spi_i, w.spi_r), (e.spi_i, e.spi_r));
    assert!(w.spi_i != old.spi_i && w.spi_r != old.spi_r, "new SPIs");
    assert_eq!(w.initiator, !e.initiator);
    assert_eq!(
        (w.state, e.state),
        (IkeState::Established, IkeState::Established)
    );
    let pairs = child_pairs(p);
    assert_eq!(pairs.len(), 1, "one CHILD_SA pair");
    assert_eq!(
        (pairs[0].0.ike, pairs[0].1.ike),
        (wh, eh),
        "under the new IKE SA"
    );
    assert_kernels_hold_the_child_sas(p);
    for e in &p.events[mark..] {
        if let Event::Kernel { flows, what, west } = e {
            assert!(
                *flows >= 1,
                "a gap at {what} (west {west}): {:#?}",
                p.events
            );
        }
    }
    for e in [&p.west, &p.east] {
        assert_eq!(stats(e).failed, 0);
        let o = e.occupancy();
        assert_eq!((o.ike_sas, o.children, o.waits), (1, 1, 0), "{o:?}");
        assert_eq!((o.requests, o.orphan_children), (0, 0), "{o:?}");
    }
    p.fate = Box::new(|_| Fate::Deliver);
    rekey_once_more(p);
    assert_eq!(p.west.delete_ike(p.now, IkeRef::Peer("peer")), 1);
    p.drive();
    assert_nothing(p);
    for e in [&p.west, &p.east] {
        let o = e.occupancy();
        assert_eq!((o.ike_sas, o.children, o.waits, o.timers), (0, 0, 0, 0));
    }
}

/// Holds back the CREATE_CHILD_SA and INFORMATIONAL datagrams whose numbers (counting
/// them from 0) are in `held` until the wire is otherwise empty.
fn hold(held: Vec<usize>) -> Box<dyn FnMut(&Datagram) -> Fate> {
    let mut seen = 0;
    Box::new(move |d| {
        let (x, _) = exchange(&d.data);
        if x != ExchangeType::CREATE_CHILD_SA.0 && x != ExchangeType::INFORMATIONAL.0 {
            return Fate::Deliver;
        }
        seen += 1;
        if held.contains(&(seen - 1)) {
            Fate::Hold
        } else {
            Fate::Deliver
        }
    })
}

/// Every choice of at most two of the first `n` messages to hold back.
fn holds(n: usize) -> Vec<Vec<usize>> {
    let mut v = vec![vec![]];
    for i in 0..n {
        v.push(vec![i]);
        for j in i + 1..n {
            v.push(vec![i, j]);
        }
    }
    v
}

#[test]
fn an_ike_sa_rekey_crossing_whose_delete_overtakes_the_other_rekey_leaves_one_ike_sa() {
    // West rekeys the IKE SA; east its old one too, after `lag` steps (0: at once,
    // §2.8.2); one or two messages of the exchanges held back so that the others
    // overtake them: the Delete of the old IKE SA comes before the answer to a rekey, or
    // a rekey request comes after its Delete was sent.
    let (mut west_survived, mut runs, mut refused) = (0, 0, 0);
    for seed in 0..3u64 {
        for lag in [0usize, 1, 2] {
            for held in holds(6) {
                let mut p = crossing_pair(seed, 0);
                let (_, old) = one_ike(&p.west);
                let (east_old, _) = one_ike(&p.east);
                let child = children(&p.west)[0].spi_in;
                let mark = p.events.len();
                p.fate = hold(held.clone());
                assert_eq!(p.west.rekey_ike(p.now, IkeRef::Peer("peer")), 1);
                for _ in 0..lag {
                    p.step();
                }
                let late = p.east.rekey_ike(p.now, IkeRef::Handle(east_old));
                p.drive();
                let what = format!("seed {seed} lag {lag} held {held:?} east rekeyed {late}");
                // The CHILD_SA itself is the same one: an IKE SA rekey does not touch it.
                assert_eq!(children(&p.west)[0].spi_in, child, "{what}");
                west_survived += usize::from(one_ike(&p.west).1.initiator);
                runs += 1;
                refused += captured_notifies(&mut p, NotifyType::TEMPORARY_FAILURE);
                assert_crossing_settled(&mut p, &old, mark);
            }
        }
    }
    eprintln!("west's rekey survived {west_survived} of {runs}; {refused} TEMPORARY_FAILUREs");
    assert!(west_survived > 0 && west_survived < runs);
    assert!(
        refused > 0,
        "some crossings came after the Delete was committed"
    );
}

#[test]
fn a_child_sa_rekey_crossing_an_ike_sa_rekey_moves_to_the_new_ike_sa_without_a_gap() {
    // One side rekeys the IKE SA; the CHILD_SA's rekey starts on either side `lag` steps
    // later (its timer firing while the IKE SA rekey is in flight), kernels answering at
    // once or after 30 ms; some runs with a message held back. The CHILD_SA rekey that
    // crosses is refused for now (TEMPORARY_FAILURE, §2.25) and done again on the new IKE
    // SA; one queued behind ours moves there with its CHILD_SA.
    let mut refused = 0;
    for seed in 0..2u64 {
        for (ike_west, child_west) in [(true, false), (false, true), (true, true)] {
            for delay in [0u64, 30] {
                for lag in 0..5usize {
                    for held in [vec![], vec![0], vec![1], vec![2]] {
                        let mut p = crossing_pair(seed, delay);
                        let (_, old) = one_ike(&p.west);
                        let child = children(&p.west)[0].spi_in;
                        let mark = p.events.len();
                        p.fate = hold(held.clone());
                        let e = if ike_west { &mut p.west } else { &mut p.east };
                        assert_eq!(e.rekey_ike(p.now, IkeRef::Peer("peer")), 1);
                        for _ in 0..lag {
                            p.step();
                        }
                        let e = if child_west { &mut p.west } else { &mut p.east };
                        assert_eq!(e.rekey_child(p.now, ChildRef::Peer("peer")), 1);
                        p.drive();
                        let what = format!(
                            "seed {seed} ike west {ike_west} child west {child_west} \
                             delay {delay} lag {lag} held {held:?}"
                        );
                        let now = children(&p.west);
                        assert_eq!(now.len(), 1, "{what}");
                        assert_ne!(now[0].spi_in, child, "rekeyed: {what}");
                        refused += captured_notifies(&mut p, NotifyType::TEMPORARY_FAILURE);
                        assert_eq!(stats(&p.west).child_sas_rekeyed, 1, "{what}");
                        assert_eq!(stats(&p.east).child_sas_rekeyed, 1, "{what}");
                        assert_crossing_settled(&mut p, &old, mark);
                    }
                }
            }
        }
    }
    eprintln!("{refused} TEMPORARY_FAILUREs");
    assert!(refused > 0);
}

#[test]
fn raw_rsa_keys_are_sent_in_cert_payloads_and_checked_against_pubkeys_both_ways() {
    // No certificates: each side signs with its RSA key and sends it raw (CERT encoding
    // 11, a PKCS#1 RSAPublicKey, as iked does); each holds the other's in pubkeys/.
    let raw = |me: &str, them: &str, them_ip: &str| {
        let mut c =
            isakmpd::ike::Credentials::load(Some(&pki_file(&format!("{me}.key"))), &[], &[])
                .unwrap();
        c.add_pubkey("ipv4", them_ip, &pki_file(&format!("{them}.pub")))
            .unwrap();
        c
    };
    let pkcs1 = |name: &str| {
        isakmpd::ike::crypto::PublicKey::from_pem(&pki_file(&format!("{name}.pub")))
            .unwrap()
            .rsa_pkcs1_der()
            .unwrap()
    };
    for west_starts in [true, false] {
        let mut p = Pair::new(
            sig_peer(WEST, SigMethod::Any),
            sig_peer(EAST, SigMethod::Any),
        );
        p.west
            .set_credentials(raw("rawwest", "raweast", &EAST[..9]));
        p.east
            .set_credentials(raw("raweast", "rawwest", &WEST[..9]));
        p.west.set_capture(true);
        p.east.set_capture(true);
        let e = if west_starts {
            &mut p.west
        } else {
            &mut p.east
        };
        e.connect(Time(0), "peer").unwrap();
        p.drive();
        let ((_, w), (_, e)) = (one_ike(&p.west), one_ike(&p.east));
        assert_eq!(
            (w.state, e.state),
            (IkeState::Established, IkeState::Established)
        );
        assert_eq!(w.initiator, west_starts);
        assert_eq!(child_pairs(&p).len(), 1);
        // The IKE_AUTH messages each side sent (in clear) carry its key raw.
        let mut raw_sent = Vec::new();
        while let Some(c) = p.west.poll_capture() {
            let Ok(m) = Message::parse(&c.data) else {
                continue;
            };
            if m.header.exchange != ExchangeType::IKE_AUTH || c.src != addr(WEST) {
                continue;
            }
            for e in m.payloads.iter() {
                if let Payload::Cert(cert) = e.payload {
                    raw_sent.push((true, cert.encoding, cert.data.to_vec()));
                }
            }
        }
        while let Some(c) = p.east.poll_capture() {
            let Ok(m) = Message::parse(&c.data) else {
                continue;
            };
            if m.header.exchange != ExchangeType::IKE_AUTH || c.src != addr(EAST) {
                continue;
            }
            for e in m.payloads.iter() {
                if let Payload::Cert(cert) = e.payload {
                    raw_sent.push((false, cert.encoding, cert.data.to_vec()));
                }
            }
        }
        let eleven = isakmpd::ikev2::wire::CertEncoding::RAW_RSA_KEY;
        assert_eq!(
            raw_sent,
            vec![
                (true, eleven, pkcs1("rawwest")),
                (false, eleven, pkcs1("raweast"))
            ],
            "west starts {west_starts}"
        );
    }
    // West's raw key is not the one east holds for west's address: refused.
    let p = sig_pair(
        (SigMethod::Any, raw("rawwest", "raweast", &EAST[..9])),
        (SigMethod::Any, raw("raweast", "raweast", &WEST[..9])),
    );
    auth_fails_cleanly(&p);
}

// ----- Restarts and moves: INITIAL_CONTACT (§2.4), NAT rebinding (§2.23), MOBIKE -----

/// The notifies (type, data) of the `exchange` requests or responses an engine sent or
/// received, read from its capture (in clear); the capture is emptied.
fn captured_notifies_of(
    e: &mut Engine,
    exchange: ExchangeType,
    response: bool,
) -> Vec<Vec<(NotifyType, Vec<u8>)>> {
    let mut out = Vec::new();
    while let Some(c) = e.poll_capture() {
        let Ok(m) = Message::parse(&c.data) else {
            continue;
        };
        if m.header.exchange == exchange && (m.header.flags & FLAG_RESPONSE != 0) == response {
            out.push(
                m.payloads
                    .notifies()
                    .map(|n| (n.ty, n.data.to_vec()))
                    .collect(),
            );
        }
    }
    out
}

/// The notify types of the IKE_AUTH requests an engine sent (its capture is emptied).
fn auth_request_notifies(e: &mut Engine) -> Vec<Vec<NotifyType>> {
    captured_notifies_of(e, ExchangeType::IKE_AUTH, false)
        .into_iter()
        .map(|v| v.into_iter().map(|(t, _)| t).collect())
        .collect()
}

/// One side of an established pair "restarts": a fresh engine with the same
/// configuration and an empty kernel, the datagrams in flight to it lost.
fn restart(p: &mut Pair, west: bool, seed: u64) {
    let config = Config {
        kernel_answers: true,
        ..Config::default()
    };
    if west {
        p.west = engine_with(
            peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
            seed,
            config,
        );
        p.west_kernel = FakeKernel::new(0x3000_0000);
        p.west.set_capture(true);
    } else {
        p.east = engine_with(
            peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
            seed,
            config,
        );
        p.east_kernel = FakeKernel::new(0x4000_0000);
        p.east.set_capture(true);
    }
    p.wire.retain(|d| d.from_west != west);
    p.kernel_queue.retain(|k| k.1 != west);
}

/// The side that did not restart holds exactly the new IKE SA (the restarted side's)
/// and its CHILD_SA, in its kernel too, and deleted the old one without a Delete.
fn assert_only_the_new_sa(p: &Pair, west_restarted: bool) {
    let (restarted, survivor) = if west_restarted {
        (&p.west, &p.east)
    } else {
        (&p.east, &p.west)
    };
    let (_, new) = one_ike(restarted);
    let (_, kept) = one_ike(survivor);
    assert_eq!(
        (kept.spi_i, kept.spi_r),
        (new.spi_i, new.spi_r),
        "the new IKE SA"
    );
    assert_eq!(kept.state, IkeState::Established);
    assert_ne!(kept.initiator, new.initiator);
    let (rc, sc) = (children(restarted), children(survivor));
    assert_eq!((rc.len(), sc.len()), (1, 1), "one CHILD_SA each");
    assert_eq!((rc[0].spi_in, rc[0].spi_out), (sc[0].spi_out, sc[0].spi_in));
    assert_eq!(stats(survivor).initial_contacts, 1);
    assert_eq!(stats(survivor).child_sas_deleted, 1, "the old CHILD_SA");
    assert_kernels_hold_the_child_sas(p);
    // No Delete for the old SAs: nothing but IKE_SA_INIT and IKE_AUTH went since.
    assert!(
        p.sent.iter().all(|d| kind(&d.data) < 4),
        "only the new IKE SA's exchanges: {:?}",
        p.sent.iter().map(|d| exchange(&d.data)).collect::<Vec<_>>()
    );
}

#[test]
fn a_restarted_initiator_sends_initial_contact_and_the_responder_drops_the_old_sa_at_once() {
    let mut p = Pair::with_kernels(
        peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        0,
    );
    p.west.set_capture(true);
    p.connect();
    assert_established(&p);
    assert_eq!(
        auth_request_notifies(&mut p.west),
        vec![vec![
            NotifyType::INITIAL_CONTACT,
            NotifyType::MOBIKE_SUPPORTED
        ]],
        "the first contact says so"
    );
    restart(&mut p, true, 3);
    p.sent.clear();
    p.connect();
    assert_eq!(
        auth_request_notifies(&mut p.west),
        vec![vec![
            NotifyType::INITIAL_CONTACT,
            NotifyType::MOBIKE_SUPPORTED
        ]]
    );
    assert_only_the_new_sa(&p, true);
}

#[test]
fn a_restarted_responder_that_initiates_makes_the_old_initiator_drop_its_sa() {
    let mut p = kernel_pair(ESP_GCM, 0);
    restart(&mut p, false, 4);
    p.sent.clear();
    p.east.connect(p.now, "peer").unwrap();
    p.drive();
    assert_eq!(
        auth_request_notifies(&mut p.east),
        vec![vec![
            NotifyType::INITIAL_CONTACT,
            NotifyType::MOBIKE_SUPPORTED
        ]]
    );
    assert_only_the_new_sa(&p, false);
}

#[test]
fn a_second_ike_sa_with_a_peer_we_already_have_says_no_initial_contact_and_both_stay() {
    let mut p = kernel_pair(ESP_GCM, 0);
    p.west.set_capture(true);
    p.connect();
    assert_eq!(
        auth_request_notifies(&mut p.west),
        vec![vec![NotifyType::MOBIKE_SUPPORTED]]
    );
    assert_eq!(p.west.ike_sas().count(), 2);
    assert_eq!(p.east.ike_sas().count(), 2);
    assert_eq!(stats(&p.east).initial_contacts, 0);
    assert_kernels_hold_the_child_sas(&p);
}

/// West behind a NAT (203.0.113.99, ports 40500 and 44500), kernels on both sides that
/// answer at once, the IKE SA and its CHILD_SA established; east takes any peer.
fn nat_kernel_pair() -> Pair {
    let mut east = peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]);
    east.remote = addr("0.0.0.0:500");
    let mut p = Pair::with_kernels(peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]), east, 0);
    p.nat = Some("203.0.113.99".parse().unwrap());
    p.west.connect(p.now, "peer").unwrap();
    p.drive_until(Time(5_000));
    let (_, e) = one_ike(&p.east);
    assert_eq!(e.state, IkeState::Established);
    assert_eq!(e.remote, addr("203.0.113.99:44500"));
    assert_eq!(children(&p.east)[0].encap, Some((4500, 44500)));
    assert_kernels_hold_the_child_sas(&p);
    p
}

#[test]
fn a_nat_rebinding_moves_the_ike_sa_and_its_child_sas_on_an_authenticated_request_only() {
    // (MOBIKE is on both sides: a new port behind the same NAT address is followed
    // without UPDATE_SA_ADDRESSES.)
    let mut p = nat_kernel_pair();
    let auth = p
        .sent
        .iter()
        .find(|d| d.from_west && d.data.starts_with(&[0; 4]) && kind(&d.data[4..]) == 2)
        .map(|d| d.data.clone())
        .expect("west's IKE_AUTH request");
    let old_spi = children(&p.east)[0].spi_in;
    // The NAT forgets west's mappings and gives it new ports.
    p.nat_base = 41_000;
    let (old, moved) = (addr("203.0.113.99:44500"), addr("203.0.113.99:45500"));
    // West's keepalives come from the new port: they authenticate nothing, move nothing.
    p.sent.clear();
    let end = Time(p.now.0 + 21_000);
    p.drive_until(end);
    assert!(p.sent.iter().any(|d| d.data == [0xff]), "a keepalive went");
    // Nor does a replayed request (answered from the kept response, where it came
    // from) or one that does not verify.
    let east_local = addr("192.0.2.2:4500");
    p.east.handle_datagram(p.now, east_local, moved, &auth);
    let mut forged = auth.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let dropped = stats(&p.east).datagrams_dropped;
    p.east.handle_datagram(p.now, east_local, moved, &forged);
    assert_eq!(stats(&p.east).datagrams_dropped, dropped + 1);
    let end = Time(p.now.0 + 1_000);
    p.drive_until(end);
    assert_eq!(one_ike(&p.east).1.remote, old, "not moved");
    assert_eq!(stats(&p.east).responses_resent, 1);
    assert!(p.east_kernel.updates.is_empty());
    assert_eq!(stats(&p.east).peer_moves, 0);
    // West's next request (a CHILD_SA rekey) is authenticated: east follows, and the
    // kernel's states get the new encapsulation port before the rekey replaces them.
    assert_eq!(p.west.rekey_child(p.now, ChildRef::Peer("peer")), 1);
    let end = Time(p.now.0 + 5_000);
    p.drive_until(end);
    let (_, e) = one_ike(&p.east);
    assert_eq!(e.remote, moved);
    assert_eq!(stats(&p.east).peer_moves, 1);
    assert_eq!(
        p.east_kernel.updates,
        vec![(old_spi, moved, Some((4500, 45500)))]
    );
    let ec = children(&p.east);
    assert_eq!(ec.len(), 1);
    assert_ne!(ec[0].spi_in, old_spi, "rekeyed");
    assert_eq!((ec[0].remote, ec[0].encap), (moved, Some((4500, 45500))));
    assert_kernels_hold_the_child_sas(&p);
    // East's own requests now reach west through the new mapping: a rekey from east.
    let west_spi = children(&p.west)[0].spi_in;
    assert_eq!(p.east.rekey_child(p.now, ChildRef::Peer("peer")), 1);
    let end = Time(p.now.0 + 5_000);
    p.drive_until(end);
    assert_ne!(children(&p.west)[0].spi_in, west_spi);
    assert_eq!(children(&p.east).len(), 1);
    assert_eq!(stats(&p.east).failed + stats(&p.west).failed, 0);
    assert_kernels_hold_the_child_sas(&p);
}

#[test]
fn mobike_the_initiator_moves_and_both_sides_keep_the_ike_sa_and_move_the_child_sa() {
    let mut p = kernel_pair(ESP_GCM, 0);
    let (_, before) = one_ike(&p.east);
    let (wc, ec) = (children(&p.west)[0].clone(), children(&p.east)[0].clone());
    p.west.set_capture(true);
    p.east.set_capture(true);
    let moved: IpAddr = "192.0.2.11".parse().unwrap();
    assert_eq!(
        p.west.update_addresses(p.now, IkeRef::Peer("peer"), moved),
        1
    );
    p.drive();
    // The same IKE SA and CHILD_SA on both sides, between the new addresses.
    let ((_, w), (_, e)) = (one_ike(&p.west), one_ike(&p.east));
    assert_eq!((e.spi_i, e.spi_r), (before.spi_i, before.spi_r));
    assert_eq!(w.local, SocketAddr::new(moved, 500));
    assert_eq!(e.remote, SocketAddr::new(moved, 500));
    assert!(!w.nat_local && !w.nat_remote && !e.nat_local && !e.nat_remote);
    let (wn, en) = (children(&p.west), children(&p.east));
    assert_eq!((wn.len(), en.len()), (1, 1));
    assert_eq!((wn[0].spi_in, wn[0].spi_out), (wc.spi_in, wc.spi_out));
    assert_eq!((en[0].spi_in, en[0].spi_out), (ec.spi_in, ec.spi_out));
    assert_eq!((wn[0].local.ip(), en[0].remote.ip()), (moved, moved));
    assert_eq!(
        (stats(&p.west).peer_moves, stats(&p.east).peer_moves),
        (1, 1)
    );
    // Both kernels hold the CHILD_SA's states at the new addresses (and its flows),
    // moved by MIGRATE: the same states, with their sequence numbers, not new ones.
    assert_kernels_hold_the_child_sas(&p);
    let server: IpAddr = "192.0.2.2".parse().unwrap();
    assert_eq!(p.west_kernel.migrations, vec![(wc.spi_in, moved, server)]);
    assert_eq!(p.east_kernel.migrations, vec![(ec.spi_in, server, moved)]);
    // The request: UPDATE_SA_ADDRESSES, NAT_DETECTION_* for the new addresses, a
    // COOKIE2; the answer: east's NAT_DETECTION_* and the same COOKIE2.
    let req = captured_notifies_of(&mut p.east, ExchangeType::INFORMATIONAL, false);
    let types: Vec<NotifyType> = req[0].iter().map(|(t, _)| *t).collect();
    assert_eq!(
        types,
        vec![
            NotifyType::UPDATE_SA_ADDRESSES,
            NotifyType::NAT_DETECTION_SOURCE_IP,
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            NotifyType::COOKIE2
        ]
    );
    let resp = captured_notifies_of(&mut p.west, ExchangeType::INFORMATIONAL, true);
    let types: Vec<NotifyType> = resp[0].iter().map(|(t, _)| *t).collect();
    assert_eq!(
        types,
        vec![
            NotifyType::NAT_DETECTION_SOURCE_IP,
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            NotifyType::COOKIE2
        ]
    );
    assert_eq!(resp[0][2].1, req[0][3].1, "COOKIE2 returned");
    assert_eq!(req[0][3].1.len(), 16);
    // The IKE SA works at the new address: a CHILD_SA rekey from each side.
    for from_west in [false, true] {
        let e = if from_west { &mut p.west } else { &mut p.east };
        assert_eq!(e.rekey_child(p.now, ChildRef::Peer("peer")), 1);
        p.drive();
    }
    let (wn, en) = (children(&p.west), children(&p.east));
    assert_eq!((wn.len(), en.len()), (1, 1));
    assert_ne!(wn[0].spi_in, wc.spi_in);
    assert_eq!((wn[0].local.ip(), en[0].remote.ip()), (moved, moved));
    assert_eq!(stats(&p.west).failed + stats(&p.east).failed, 0);
    assert_kernels_hold_the_child_sas(&p);
}

#[test]
fn without_mobike_on_the_responder_no_address_update_is_sent_and_a_moved_peer_is_not_followed() {
    let config = Config {
        kernel_answers: true,
        mobike: false,
        ..Config::default()
    };
    let mut p = Pair::with_kernels(
        peer(WEST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]),
        0,
    );
    p.east = engine_with(peer(EAST, "secret", &[GCM_ECP256], &[ESP_GCM]), 2, config);
    p.connect();
    assert_established(&p);
    // East did not answer MOBIKE_SUPPORTED: west has nothing to update with.
    let moved: IpAddr = "192.0.2.11".parse().unwrap();
    assert_eq!(
        p.west.update_addresses(p.now, IkeRef::Peer("peer"), moved),
        0
    );
    assert_eq!(one_ike(&p.west).1.local, addr(WEST));
    // A protected request from another address is not even looked at: a Delete from
    // west, sent as if it had moved, goes unanswered.
    let before = stats(&p.east).datagrams_dropped;
    p.sent.clear();
    assert_eq!(p.west.delete_child(p.now, ChildRef::Peer("peer")), 1);
    p.collect();
    let d = p.wire.pop_front().expect("west's INFORMATIONAL request");
    p.east
        .handle_datagram(p.now, d.dst, SocketAddr::new(moved, 500), &d.data);
    assert_eq!(stats(&p.east).datagrams_dropped, before + 1);
    assert_eq!(one_ike(&p.east).1.remote, addr(WEST));
    assert_eq!(stats(&p.east).peer_moves, 0);
}
