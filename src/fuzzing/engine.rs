//! The IKEv2 engine fed hostile datagrams (fuzz target `ikev2_engine`).
//!
//! An input is a setup byte and a list of records. The setup is one of:
//! - 0: a lone responder (east), nothing negotiated;
//! - 1: a pair after a real IKE_SA_INIT: east holds a half-open SA with keys, west's
//!   IKE_AUTH (in fragments) is held back until the records are done;
//! - 2: an established pair (AES-GCM, fragmentation negotiated), garbage aimed at east;
//! - 3: the same with AES-CBC/HMAC, garbage aimed at west (the original initiator);
//! - 4: west has sent IKE_SA_INIT (held back): garbage aimed at west, the initiator
//!   waiting for its answer.
//!
//! A record is `[ctl][len: u16 BE][len bytes]` (a short last record takes what is left).
//! `ctl & 3`: 0 a datagram to port 500, 1 one to port 4500 with the non-ESP marker put in
//! front, 2 one to port 4500 as is, 3 a message sealed under the real IKE SA's keys by
//! the other engine: `[exchange][flags][msgid][first payload][fragment number][total]`
//! then the inner payload chain (flags bit 0: a response; bit 1: an SKF fragment with
//! the given number and total). `ctl & 4`: the real IKE SA's SPIs are written over the
//! datagram's first 16 bytes (a spoofed message aimed at it). `ctl & 8`: the virtual
//! clock moves one second first. `ctl & 16`: from a third party's address. `ctl & 32`:
//! the target's kernel refuses its next SPI or install. `ctl & 64`: the target's kernel
//! holds its answers back while this record is handled (until a record without it).
//!
//! After each record: the engine's counters agree with its tables, the tables stay
//! within bounds, and what it sent back to an unauthenticated datagram is at most one
//! datagram no larger than [`reply_bound`]. After the last one the clocks run until no
//! timer is left (the two engines talking to each other): then nothing half-made is
//! left (no half-open SA, no reassembly, no parked kernel step, no reserved SPI, no
//! request in flight), each kernel holds exactly its engine's CHILD_SAs, and with
//! setups 2 and 3, unless a record was sealed with the real keys (a peer that holds
//! them may delete the SA), the established IKE SA is still there on both sides with
//! its SPIs and still works: a new CHILD_SA is made over it.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use crate::ike::crypto::SeededRandom;
use crate::ike::sa::{Handle, KernelReply, KernelReq, Part};
use crate::ikev2::engine::{Engine, IkeState, Occupancy};
use crate::ikev2::policy::{
    Config, EspProposal, Identity, IkeProposal, Peer, PeerAuth, Policy, Selector,
};
use crate::ikev2::wire::{
    DhGroup, EncrId, ExchangeType, IntegId, Message, NotifyType, PayloadType, PrfId, HEADER_LEN,
};
use crate::timer::Time;

const WEST: &str = "192.0.2.1:500";
const EAST: &str = "192.0.2.2:500";
const STRANGER: &str = "203.0.113.9:500";
/// Most records taken from one input, and most bytes sealed in one record.
const MAX_RECORDS: usize = 64;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a literal address")
}

fn ike(gcm: bool) -> IkeProposal {
    IkeProposal {
        encr: if gcm {
            EncrId::AES_GCM_16
        } else {
            EncrId::AES_CBC
        },
        key_bits: Some(128),
        integ: (!gcm).then_some(IntegId::HMAC_SHA2_256_128),
        prf: PrfId::HMAC_SHA2_256,
        dh: DhGroup::CURVE25519,
    }
}

/// West's or east's policy for the other (PSK, AES-GCM or AES-CBC, the documentation
/// networks); the engine's unit tests use it too.
pub(crate) fn peer(west: bool, gcm: bool) -> Peer {
    let (local, remote, lnet, rnet) = if west {
        (WEST, EAST, "198.51.100.0", "203.0.113.0")
    } else {
        (EAST, WEST, "203.0.113.0", "198.51.100.0")
    };
    let net = |s: &str| Selector::subnet(s.parse::<IpAddr>().expect("literal"), 24);
    Peer {
        name: "peer".into(),
        local: addr(local),
        remote: addr(remote),
        auth: PeerAuth::psk(b"fuzz"),
        local_id: Identity::addr(addr(local).ip()),
        remote_id: Some(Identity::addr(addr(remote).ip())),
        ike: vec![ike(gcm)],
        esp: vec![EspProposal {
            encr: EncrId::AES_GCM_16,
            key_bits: Some(128),
            integ: None,
            pfs: None,
        }],
        local_ts: vec![net(lnet)],
        remote_ts: vec![net(rnet)],
        flows: Vec::new(),
        transport: false,
        ike_lifetime_secs: 0,
        child_lifetime_secs: 0,
        child_lifetime_bytes: 0,
        cp: Default::default(),
    }
}

fn config() -> Config {
    Config {
        max_ike_sas: 16,
        max_half_open: 8,
        cookie_threshold: 4,
        kernel_answers: true,
        fragmentation: true,
        fragment_size: 160,
        ..Config::default()
    }
}

/// A kernel that answers at once and keeps what the engine asked for.
#[derive(Default)]
struct Kernel {
    next_spi: u32,
    larval: BTreeSet<(IpAddr, u32)>,
    states: BTreeSet<(IpAddr, u32)>,
    /// Refuse this many of the next GetSpi and AddSa requests.
    refuse: usize,
}

impl Kernel {
    fn take(&mut self, req: &KernelReq) -> KernelReply {
        if self.refuse > 0 && matches!(req, KernelReq::GetSpi { .. } | KernelReq::AddSa(..)) {
            self.refuse -= 1;
            return KernelReply::Failed("refused".into());
        }
        match req {
            KernelReq::GetSpi { dst, .. } => {
                self.next_spi += 1;
                self.larval.insert((*dst, self.next_spi));
                KernelReply::Spi(self.next_spi.to_be_bytes())
            }
            KernelReq::DeleteSpi { dst, spi, .. } => {
                let spi = u32::from_be_bytes(*spi);
                assert!(self.larval.remove(&(*dst, spi)), "DeleteSpi of {spi:08x}");
                KernelReply::Done
            }
            KernelReq::AddSa(sa, part) => {
                let inb = (sa.local.ip(), u32::from_be_bytes(sa.spi_in));
                let outb = (sa.remote.ip(), u32::from_be_bytes(sa.spi_out));
                if matches!(part, Part::Both | Part::Inbound) {
                    if sa.spi_from_kernel && !self.larval.remove(&inb) {
                        return KernelReply::Failed("no larval state".into());
                    }
                    if !self.states.insert(inb) {
                        return KernelReply::Failed("File exists".into());
                    }
                }
                if matches!(part, Part::Both | Part::Outbound) && !self.states.insert(outb) {
                    return KernelReply::Failed("File exists".into());
                }
                KernelReply::Done
            }
            KernelReq::DeleteSa(sa, part, _) => {
                if matches!(part, Part::Both | Part::Inbound) {
                    let inb = (sa.local.ip(), u32::from_be_bytes(sa.spi_in));
                    self.larval.remove(&inb);
                    self.states.remove(&inb);
                }
                if matches!(part, Part::Both | Part::Outbound) {
                    self.states
                        .remove(&(sa.remote.ip(), u32::from_be_bytes(sa.spi_out)));
                }
                KernelReply::Done
            }
            KernelReq::UpdateSa(_) => KernelReply::Failed("unexpected".into()),
            // As a kernel without MIGRATE: the old states out, the new in.
            KernelReq::MigrateSa(old, new, part) => {
                self.take(&KernelReq::DeleteSa(old.clone(), *part, false));
                self.take(&KernelReq::AddSa(new.clone(), *part))
            }
            KernelReq::AddFlows(_) | KernelReq::DeleteFlows(_) => KernelReply::Done,
        }
    }
}

/// A datagram in flight: from west?, source, destination, bytes.
pub(super) type Datagram = (bool, SocketAddr, SocketAddr, Vec<u8>);

pub(super) struct Side {
    pub(super) engine: Engine,
    kernel: Kernel,
    /// While set, the kernel's answers wait (in `held`) until it is cleared.
    hold: bool,
    held: Vec<crate::ike::sa::KernelOp>,
}

/// Two engines, a virtual clock and what each sent.
pub(super) struct Pair {
    pub(super) now: Time,
    /// [west, east].
    pub(super) sides: [Side; 2],
    /// Datagrams in flight: from west?, source, destination, bytes.
    wire: Vec<Datagram>,
    /// Every datagram either engine sent, as sent: from west?, bytes.
    pub(super) log: Vec<(bool, Vec<u8>)>,
    buf: Vec<u8>,
}

impl Pair {
    /// With `eap`, west is an EAP-MSCHAPv2 client and east its server (super::eap).
    pub(super) fn new(gcm: bool, eap: bool) -> Pair {
        let side = |west: bool, seed: u64| Side {
            engine: {
                let mut p = peer(west, gcm);
                if eap {
                    super::eap::eap_peer(&mut p, west);
                }
                let mut e = Engine::new(
                    config(),
                    Policy { peers: vec![p] },
                    Time(0),
                    Box::new(SeededRandom::new(seed)),
                );
                if eap {
                    super::eap::eap_engine(&mut e, west);
                }
                e
            },
            hold: false,
            held: Vec::new(),
            kernel: Kernel {
                next_spi: if west { 0x1000_0000 } else { 0x2000_0000 },
                ..Kernel::default()
            },
        };
        Pair {
            now: Time(0),
            sides: [side(true, 1), side(false, 2)],
            wire: Vec::new(),
            log: Vec::new(),
            buf: vec![0u8; 65536],
        }
    }

    /// Takes what the engines sent (onto the wire) and asked of their kernels (answered
    /// at once), until neither has more. Returns the answers each sent (count, bytes):
    /// responses and anything else that is not a request of its own (a request goes to
    /// the peer the policy names, wherever the datagram that caused it came from).
    fn collect(&mut self) -> [(usize, usize); 2] {
        let mut sent = [(0, 0); 2];
        loop {
            let mut more = false;
            for (i, s) in self.sides.iter_mut().enumerate() {
                while let Some(t) = s.engine.poll_transmit(&mut self.buf) {
                    let src = t.local.expect("the engine names its address");
                    let d = &self.buf[..t.len];
                    let d = if src.port() == 4500 {
                        d.get(4..).unwrap_or(d)
                    } else {
                        d
                    };
                    let request = Message::parse(d).is_ok_and(|m| !m.header.response());
                    if !request {
                        sent[i].0 += 1;
                        sent[i].1 += t.len;
                    }
                    self.log.push((i == 0, self.buf[..t.len].to_vec()));
                    self.wire
                        .push((i == 0, src, t.remote, self.buf[..t.len].to_vec()));
                }
                while let Some(op) = s.engine.poll_kernel() {
                    s.held.push(op);
                }
                if !s.hold && !s.held.is_empty() {
                    more = true;
                    for op in std::mem::take(&mut s.held) {
                        let reply = s.kernel.take(&op.req);
                        if op.ticket != 0 {
                            s.engine.kernel_reply(self.now, op.ticket, reply);
                        }
                    }
                }
            }
            if !more {
                return sent;
            }
        }
    }

    /// Delivers what is on the wire (and what that brings) between the two engines.
    pub(super) fn deliver_all(&mut self, limit: usize) {
        for _ in 0..limit {
            self.collect();
            if self.wire.is_empty() {
                return;
            }
            for (from_west, src, dst, data) in std::mem::take(&mut self.wire) {
                let to = usize::from(from_west);
                self.sides[to]
                    .engine
                    .handle_datagram(self.now, dst, src, &data);
            }
        }
    }

    /// Runs the clock to each deadline in turn, the engines talking, until no timer is
    /// left (or a day of virtual time has passed: timers that keep re-arming).
    fn run_out(&mut self) {
        for s in &mut self.sides {
            s.hold = false;
            s.kernel.refuse = 0;
        }
        let end = self.now.add_secs(86_400);
        for _ in 0..10_000 {
            self.deliver_all(100);
            let next = self
                .sides
                .iter_mut()
                .filter_map(|s| s.engine.poll_timeout())
                .min();
            let Some(next) = next else { return };
            assert!(next <= end, "timers still armed after a day");
            self.now = self.now.max(next);
            for s in &mut self.sides {
                s.engine.handle_timeout(self.now);
            }
        }
        panic!("the engines never went quiet");
    }

    /// The established IKE SA of a side: its handle, SPIs.
    pub(super) fn established(&self, i: usize) -> Vec<(Handle, [u8; 8], [u8; 8])> {
        self.sides[i]
            .engine
            .ike_sas()
            .filter(|(_, s)| s.state == IkeState::Established)
            .map(|(h, s)| (h, s.spi_i, s.spi_r))
            .collect()
    }
}

/// The largest answer to an unauthenticated datagram of `len` bytes: an IKE_SA_INIT
/// response (our KE, nonce, NAT detection, fragmentation and signature hash notifies)
/// or a notify, never much more than the request (RFC 7296 §2.6's concern).
pub fn reply_bound(len: usize) -> usize {
    len.max(64) + 256
}

/// The engine's counters agree with its tables and stay within the configured bounds.
fn check_tables(o: &Occupancy) {
    let c = config();
    assert_eq!(o.half_open, o.half_open_counted, "half-open counter: {o:?}");
    assert_eq!(
        o.reassemblies, o.reassemblies_counted,
        "reassembly counter: {o:?}"
    );
    assert_eq!(o.by_init, o.by_init_held, "IKE_SA_INIT index: {o:?}");
    assert_eq!(o.orphan_children, 0, "CHILD_SAs without an IKE SA: {o:?}");
    assert!(o.ike_sas <= c.max_ike_sas, "IKE SA table: {o:?}");
    assert!(o.half_open <= c.max_half_open, "half-open SAs: {o:?}");
    assert!(o.reassemblies <= 16, "reassemblies: {o:?}");
    assert!(o.children <= 2 * c.max_ike_sas, "CHILD_SA table: {o:?}");
}

/// Nothing half-made is left once the timers ran out, and the kernel holds exactly
/// the engine's CHILD_SAs.
fn check_quiet(s: &Side) {
    let o = s.engine.occupancy();
    check_tables(&o);
    assert_eq!(
        o.half_open + o.states[0] + o.states[1],
        0,
        "half-made SAs: {o:?}"
    );
    assert_eq!(o.reassemblies, 0, "reassembly left: {o:?}");
    assert_eq!(o.waits, 0, "kernel steps parked: {o:?}");
    assert_eq!(o.requests, 0, "requests in flight: {o:?}");
    assert!(
        s.kernel.larval.is_empty(),
        "reserved SPIs left: {:?}",
        s.kernel.larval
    );
    let mut want = BTreeSet::new();
    for c in s.engine.child_sas() {
        want.insert((c.local.ip(), c.spi_in));
        if !c.outbound_pending {
            want.insert((c.remote.ip(), c.spi_out));
        }
    }
    assert_eq!(s.kernel.states, want, "kernel states");
}

/// A record: what to do and its bytes.
struct Record<'a> {
    ctl: u8,
    data: &'a [u8],
}

fn records(mut d: &[u8]) -> Vec<Record<'_>> {
    let mut v = Vec::new();
    while !d.is_empty() && v.len() < MAX_RECORDS {
        let ctl = d[0];
        let len = match d.get(1..3) {
            Some(l) => usize::from(u16::from_be_bytes([l[0], l[1]])),
            None => d.len(),
        };
        let body = d.get(3..).unwrap_or(&[]);
        let n = len.min(body.len());
        v.push(Record {
            ctl,
            data: &body[..n],
        });
        d = &body[n..];
    }
    v
}

/// Setup 1: both sides have the IKE SA's keys; west's IKE_AUTH is kept off the wire.
pub(super) fn half_open(p: &mut Pair) -> Vec<Datagram> {
    p.sides[0].engine.connect(p.now, "peer").expect("connect");
    p.collect();
    let init = std::mem::take(&mut p.wire);
    for (_, src, dst, data) in &init {
        p.sides[1].engine.handle_datagram(p.now, *dst, *src, data);
    }
    p.collect();
    let resp = std::mem::take(&mut p.wire);
    for (_, src, dst, data) in &resp {
        p.sides[0].engine.handle_datagram(p.now, *dst, *src, data);
    }
    p.collect();
    std::mem::take(&mut p.wire)
}

/// Builds the setup; returns the pair, the side garbage goes to, and the datagrams
/// held back.
fn setup(mode: u8, eap: bool) -> (Pair, usize, Vec<Datagram>) {
    let mut p = Pair::new(mode != 3, eap);
    match mode {
        0 => (p, 1, Vec::new()),
        1 => {
            let held = half_open(&mut p);
            (p, 1, held)
        }
        4 => {
            p.sides[0].engine.connect(p.now, "peer").expect("connect");
            p.collect();
            let held = std::mem::take(&mut p.wire);
            (p, 0, held)
        }
        _ => {
            p.sides[0].engine.connect(p.now, "peer").expect("connect");
            p.deliver_all(100);
            assert_eq!(p.established(0).len(), 1, "the pair did not establish");
            assert_eq!(p.established(1).len(), 1, "the pair did not establish");
            (p, if mode == 2 { 1 } else { 0 }, Vec::new())
        }
    }
}

/// What the target's inputs reached, summed over the inputs of this thread (for the
/// campaign's report): the target engine's counters as they stood after the records,
/// per setup.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reached {
    pub inputs: [u64; 5],
    pub records: u64,
    /// Records protected under the real keys (sealed, or replays that verify).
    pub keyed: u64,
    pub dropped: u64,
    pub fragments: u64,
    pub resent: u64,
    pub established: u64,
    pub children: u64,
    pub cookies: u64,
    pub half_open_refused: u64,
    /// Inputs after which the established IKE SA was checked to survive.
    pub survived: u64,
}

thread_local! {
    static REACHED: std::cell::Cell<Reached> = std::cell::Cell::new(Reached::default());
}

/// The sums so far; see [`Reached`].
pub fn reached() -> Reached {
    REACHED.with(|r| r.get())
}

fn tally(f: impl FnOnce(&mut Reached)) {
    REACHED.with(|r| {
        let mut v = r.get();
        f(&mut v);
        r.set(v);
    });
}

/// The fuzz target: see the module's documentation.
pub fn ikev2_engine(data: &[u8]) {
    run(data, false);
}

/// An input of the `ikev2_engine` format, with the PSK peers or, `eap`, an EAP-MSCHAPv2
/// client (west) and server (east).
pub(super) fn run(data: &[u8], eap: bool) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mode = mode % 5;
    let (mut p, to, held) = setup(mode, eap);
    let from = 1 - to;
    let before = (p.established(0), p.established(1));
    let (local, remote) = if to == 1 {
        (addr(EAST), addr(WEST))
    } else {
        (addr(WEST), addr(EAST))
    };
    let mut keyed = false;
    for r in records(rest) {
        // The target's kernel: answers held back during this record (steps stay parked
        // while more comes), or its next SPI or install refused.
        p.sides[to].hold = r.ctl & 64 != 0;
        if r.ctl & 32 != 0 {
            p.sides[to].kernel.refuse += 1;
        }
        // What earlier records left (answers the kernel let out now) is not this one's.
        p.collect();
        p.wire.clear();
        if r.ctl & 8 != 0 {
            p.now = p.now.add_secs(1);
            for s in &mut p.sides {
                s.engine.handle_timeout(p.now);
            }
            p.collect();
            p.wire.clear();
        }
        let src = if r.ctl & 16 != 0 {
            addr(STRANGER)
        } else {
            remote
        };
        let first_sa = |e: &Engine| e.ike_sas().next().map(|(h, s)| (h, s.spi_i, s.spi_r));
        let sa = first_sa(&p.sides[from].engine);
        let mut dgram = r.data.to_vec();
        if r.ctl & 4 != 0 && dgram.len() >= 16 {
            if let Some((_, i, rr)) = first_sa(&p.sides[to].engine) {
                dgram[..8].copy_from_slice(&i);
                dgram[8..16].copy_from_slice(&rr);
            }
        }
        let mut dst = local;
        let mut authenticated = false;
        match r.ctl & 3 {
            1 => {
                dst.set_port(4500);
                dgram.splice(0..0, [0u8; 4]);
            }
            2 => dst.set_port(4500),
            3 => {
                if let (Some((h, _, _)), Some(hd)) = (sa, r.data.get(..6)) {
                    let frag = (hd[1] & 2 != 0).then_some((u16::from(hd[4]), u16::from(hd[5])));
                    let sealed = p.sides[from].engine.seal_as(
                        h,
                        ExchangeType(hd[0]),
                        u32::from(hd[2]),
                        hd[1] & 1 != 0,
                        PayloadType(hd[3]),
                        &r.data[6..],
                        frag,
                    );
                    let Some(s) = sealed else { continue };
                    dgram = s;
                    authenticated = true;
                    keyed = true;
                }
            }
            _ => {}
        }
        // A datagram protected under the real keys (a replay of the real peer's, or
        // sealed) comes from someone who holds them: it may change the SAs at will.
        let plain = dgram.get(if dst.port() == 4500 { 4 } else { 0 }..);
        if !authenticated && plain.is_some_and(|d| p.sides[to].engine.verifies(d)) {
            authenticated = true;
            keyed = true;
        }
        p.sides[to].engine.handle_datagram(p.now, dst, src, &dgram);
        tally(|t| {
            t.records += 1;
            t.keyed += u64::from(authenticated);
        });
        let sent = p.collect()[to];
        // What went out in answer is the target's alone; the other side's outbox was
        // empty, so nothing of it is delivered here.
        p.wire.clear();
        check_tables(&p.sides[to].engine.occupancy());
        // A datagram the real peer sent (a replayed request) is answered as the first
        // time, all fragments of the kept response.
        if !authenticated && !p.log.iter().any(|(_, d)| *d == dgram) {
            // One that does not parse is answered only when it is an IKE_SA_INIT request
            // with a critical payload of an unknown type or a higher major version: one
            // unprotected notify that says so (RFC 7296 §2.5).
            let told = match plain.map(Message::parse) {
                Some(Ok(_)) => true,
                Some(Err(e)) => {
                    e.notify == NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD
                        || e.notify == NotifyType::INVALID_MAJOR_VERSION
                }
                None => false,
            };
            if !told {
                assert_eq!(sent.0, 0, "an answer to a datagram that does not parse");
            }
            assert!(sent.0 <= 1, "{} datagrams in answer to one", sent.0);
            assert!(
                sent.1 <= reply_bound(dgram.len()),
                "{} bytes in answer to {}",
                sent.1,
                dgram.len()
            );
        }
    }
    let st = *p.sides[to].engine.stats();
    tally(|t| {
        t.inputs[usize::from(mode)] += 1;
        t.dropped += st.datagrams_dropped;
        t.fragments += st.fragments_received;
        t.resent += st.responses_resent;
        t.established += st.ike_sas_established;
        t.children += st.child_sas_established;
        t.cookies += st.cookies_sent;
        t.half_open_refused += st.half_open_refused;
    });
    p.wire.extend(held);
    p.run_out();
    for s in &p.sides {
        check_quiet(s);
    }
    if (2..=3).contains(&mode) && !keyed {
        // The established IKE SA is still there, on both sides, and still works.
        let after = (p.established(0), p.established(1));
        assert_eq!(after, before, "the established IKE SA did not survive");
        tally(|t| t.survived += 1);
        let children = |p: &Pair| {
            (
                p.sides[0].engine.child_sas().count(),
                p.sides[1].engine.child_sas().count(),
            )
        };
        let (w, e) = children(&p);
        assert!(p.sides[0].engine.create_child(p.now, "peer"));
        p.run_out();
        assert_eq!(
            children(&p),
            (w + 1, e + 1),
            "no new CHILD_SA over the IKE SA"
        );
        for s in &p.sides {
            check_quiet(s);
        }
    }
}

/// A record of the input format.
pub(super) fn record(ctl: u8, data: &[u8]) -> Vec<u8> {
    let mut v = vec![ctl];
    v.extend_from_slice(&(data.len().min(0xffff) as u16).to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// A sealed record: the header fields and the inner payload chain.
pub(super) fn sealed(
    exchange: u8,
    flags: u8,
    msgid: u8,
    first: u8,
    frag: (u8, u8),
    plain: &[u8],
) -> Vec<u8> {
    let mut d = vec![exchange, flags, msgid, first, frag.0, frag.1];
    d.extend_from_slice(plain);
    record(3, &d)
}

pub(super) fn input(mode: u8, records: &[Vec<u8>]) -> Vec<u8> {
    let mut v = vec![mode];
    for r in records {
        v.extend_from_slice(r);
    }
    v
}

/// Seeds for `ikev2_engine` (the real messages of the deterministic pair, replayed,
/// spoofed and sealed), and for `ikev2_wire` (every datagram and every message in
/// clear): (target, name, bytes).
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    // Setup 1's messages, and west's IKE_AUTH in clear.
    let (mut p, _, held) = {
        let mut p = Pair::new(true, false);
        for s in &mut p.sides {
            s.engine.set_capture(true);
        }
        let held = half_open(&mut p);
        (p, 1, held)
    };
    let init = p.log[0].1.clone();
    let init_resp = p.log[1].1.clone();
    let mut clear = Vec::new();
    while let Some(c) = p.sides[0].engine.poll_capture() {
        clear.push(c.data);
    }
    let auth_clear = clear.last().cloned().unwrap_or_default();
    let auth_plain = auth_clear.get(HEADER_LEN..).unwrap_or(&[]).to_vec();
    let auth_first = auth_clear.get(16).copied().unwrap_or(0);
    out.push((
        "ikev2_engine",
        "lone_init".into(),
        input(0, &[record(0, &init)]),
    ));
    out.push((
        "ikev2_engine",
        "lone_init_4500".into(),
        input(0, &[record(1, &init)]),
    ));
    out.push((
        "ikev2_engine",
        "lone_init_twice_stranger".into(),
        input(0, &[record(0, &init), record(16, &init), record(8, &init)]),
    ));
    out.push((
        "ikev2_engine",
        "lone_init_response".into(),
        input(0, &[record(0, &init_resp)]),
    ));
    // Five IKE_SA_INIT requests with their own SPIs: past the COOKIE threshold (4
    // half-open SAs) the fifth is answered with a COOKIE (deterministic: the secret
    // comes from the seeded random source), which a sixth returns.
    let mut lone = setup(0, false).0;
    let mut recs = Vec::new();
    for i in 0..5u8 {
        let mut d = init.clone();
        d[0] ^= i;
        recs.push(record(0, &d));
        lone.sides[1]
            .engine
            .handle_datagram(lone.now, addr(EAST), addr(WEST), &d);
    }
    lone.collect();
    let cookie = lone.wire.last().and_then(|(_, _, _, a)| {
        let m = Message::parse(a).ok()?;
        let n = m.payloads.notify(crate::ikev2::wire::NotifyType::COOKIE)?;
        Some(n.data.to_vec())
    });
    if let Some(c) = cookie {
        let mut d = init[..HEADER_LEN].to_vec();
        d[0] ^= 4;
        let first = d[16];
        d[16] = 41;
        d.extend([first, 0]);
        d.extend(((8 + c.len()) as u16).to_be_bytes());
        d.extend([0, 0, 0x40, 0x06]);
        d.extend(&c);
        d.extend(&init[HEADER_LEN..]);
        let n = d.len() as u32;
        d[24..28].copy_from_slice(&n.to_be_bytes());
        recs.push(record(0, &d));
    }
    out.push(("ikev2_engine", "lone_cookie".into(), input(0, &recs)));
    // West waiting for its IKE_SA_INIT answer: the real one, and the notifies a
    // responder may answer with instead (COOKIE, INVALID_KE_PAYLOAD, NO_PROPOSAL_CHOSEN).
    out.push((
        "ikev2_engine",
        "initiator_init_response".into(),
        input(4, &[record(0, &init_resp)]),
    ));
    for (name, ty, data) in [
        ("cookie", 16390u16, &[0x5au8; 17][..]),
        ("invalid_ke", 17, &[0, 19][..]),
        ("no_proposal", 14, &[][..]),
    ] {
        let mut d = init_resp[..HEADER_LEN].to_vec();
        d[8..16].fill(0);
        d[16] = 41;
        d.extend([0, 0]);
        d.extend(((8 + data.len()) as u16).to_be_bytes());
        d.extend([0, 0]);
        d.extend(ty.to_be_bytes());
        d.extend(data);
        let n = d.len() as u32;
        d[24..28].copy_from_slice(&n.to_be_bytes());
        out.push((
            "ikev2_engine",
            format!("initiator_{name}"),
            input(4, &[record(4, &d)]),
        ));
    }
    let frags: Vec<Vec<u8>> = held.iter().map(|h| record(0, &h.3)).collect();
    out.push((
        "ikev2_engine",
        "half_open_auth_fragments".into(),
        input(1, &frags),
    ));
    let mut refused = frags.clone();
    for r in &mut refused {
        r[0] |= 32;
    }
    let name = "half_open_auth_kernel_refuses".to_string();
    out.push(("ikev2_engine", name, input(1, &refused)));
    let mut rev = frags.clone();
    rev.reverse();
    out.push((
        "ikev2_engine",
        "half_open_auth_reversed".into(),
        input(1, &rev),
    ));
    out.push((
        "ikev2_engine",
        "half_open_first_fragment".into(),
        input(1, &frags[..1]),
    ));
    out.push((
        "ikev2_engine",
        "half_open_auth_sealed".into(),
        input(1, &[sealed(35, 0, 1, auth_first, (0, 0), &auth_plain)]),
    ));
    let half = auth_plain.len() / 2;
    out.push((
        "ikev2_engine",
        "half_open_auth_sealed_fragments".into(),
        input(
            1,
            &[
                sealed(35, 2, 1, auth_first, (1, 2), &auth_plain[..half]),
                sealed(35, 2, 1, 0, (2, 2), &auth_plain[half..]),
            ],
        ),
    ));
    out.push((
        "ikev2_engine",
        "half_open_fragment_3_of_2".into(),
        input(
            1,
            &[sealed(35, 2, 1, auth_first, (3, 2), &auth_plain[..half])],
        ),
    ));
    let mut spoof = frags[0].clone();
    if let Some(b) = spoof.last_mut() {
        *b ^= 1;
    }
    out.push((
        "ikev2_engine",
        "half_open_bad_icv".into(),
        input(1, &[spoof]),
    ));
    for (i, (_, d)) in p.log.iter().enumerate() {
        out.push(("ikev2_wire", format!("half_open_{i}"), d.clone()));
    }
    for (i, c) in clear.iter().enumerate() {
        out.push(("ikev2_wire", format!("half_open_clear_{i}"), c.clone()));
    }
    // Setup 2: the established pair's messages, and a CREATE_CHILD_SA and an
    // INFORMATIONAL in clear.
    let mut p = Pair::new(true, false);
    for s in &mut p.sides {
        s.engine.set_capture(true);
    }
    p.sides[0].engine.connect(p.now, "peer").expect("connect");
    p.deliver_all(100);
    p.sides[0].engine.create_child(p.now, "peer");
    p.deliver_all(100);
    p.sides[0]
        .engine
        .delete_child(p.now, crate::ikev2::engine::ChildRef::Peer("peer"));
    p.deliver_all(100);
    let mut clear = Vec::new();
    while let Some(c) = p.sides[0].engine.poll_capture() {
        clear.push(c.data);
    }
    while let Some(c) = p.sides[1].engine.poll_capture() {
        clear.push(c.data);
    }
    for (i, c) in clear.iter().enumerate() {
        out.push(("ikev2_wire", format!("established_clear_{i}"), c.clone()));
        let Some(h) = Message::parse(c).ok().map(|m| m.header) else {
            continue;
        };
        if h.exchange == ExchangeType::IKE_SA_INIT {
            continue;
        }
        let flags = u8::from(h.response());
        let msgid = h.msgid.min(255) as u8;
        let rec = sealed(h.exchange.0, flags, msgid, c[16], (0, 0), &c[HEADER_LEN..]);
        let mode = if h.initiator() { 2 } else { 3 };
        out.push((
            "ikev2_engine",
            format!("established_sealed_{i}"),
            input(mode, std::slice::from_ref(&rec)),
        ));
        if h.exchange == ExchangeType::CREATE_CHILD_SA && !h.response() && h.initiator() {
            // The kernel refuses the new CHILD_SA's SPI or install; or holds its answers
            // while the IKE SA is deleted (the answer then comes for an SA that went).
            let mut refused = rec.clone();
            refused[0] |= 32;
            let name = format!("established_kernel_refuses_{i}");
            out.push(("ikev2_engine", name, input(2, &[refused.clone()])));
            refused[0] |= 64;
            let name = format!("established_kernel_refuses_late_{i}");
            out.push(("ikev2_engine", name, input(2, &[refused])));
            let mut held = rec;
            held[0] |= 64;
            let del = [0, 0, 0, 8, 1, 0, 0, 0];
            let del_ike = sealed(37, 0, msgid.wrapping_add(1), 42, (0, 0), &del);
            let name = format!("established_kernel_slow_delete_ike_{i}");
            out.push(("ikev2_engine", name, input(2, &[held, del_ike])));
        }
    }
    for (i, (from_west, d)) in p.log.iter().enumerate() {
        out.push(("ikev2_wire", format!("established_{i}"), d.clone()));
        let mode = if *from_west { 2 } else { 3 };
        out.push((
            "ikev2_engine",
            format!("established_replay_{i}"),
            input(mode, &[record(0, d)]),
        ));
        let mut spoof = d.clone();
        if spoof.len() > 40 {
            spoof[40] ^= 0x55;
        }
        out.push((
            "ikev2_engine",
            format!("established_spoof_{i}"),
            input(
                mode,
                &[record(4, &spoof), record(8 | 4, &spoof[..spoof.len() / 2])],
            ),
        ));
    }
    // An empty INFORMATIONAL request, a Delete of the IKE SA, one of an unknown ESP SPI.
    out.push((
        "ikev2_engine",
        "established_liveness".into(),
        input(2, &[sealed(37, 0, 2, 0, (0, 0), &[])]),
    ));
    let del_ike = [0u8, 0, 0, 8, 1, 0, 0, 0];
    out.push((
        "ikev2_engine",
        "established_delete_ike".into(),
        input(2, &[sealed(37, 0, 2, 42, (0, 0), &del_ike)]),
    ));
    let del_esp = [0u8, 0, 0, 12, 3, 4, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    out.push((
        "ikev2_engine",
        "established_delete_esp".into(),
        input(2, &[sealed(37, 0, 2, 42, (0, 0), &del_esp)]),
    ));
    out
}
