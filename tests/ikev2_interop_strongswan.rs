//! The IKEv2 engine against strongSwan 5.9 (Debian's charon) over real UDP in network
//! namespaces (documentation addresses only): IKE_SA_INIT and IKE_AUTH with a pre-shared
//! key, charon as responder and as initiator, and the first CHILD_SA on both sides.
//!
//! The engine runs in this test process: a thread enters our namespace to bind UDP ports
//! 500 and 4500 (sockets stay in the namespace they were made in), and the test loop
//! moves datagrams between them and the engine on the real clock. charon uses its
//! userspace ESP (kernel-libipsec), which needs UDP encapsulation, so charon fakes a NAT
//! in its NAT_DETECTION_SOURCE_IP (see tests/vectors/ikev2-charon.txt): the engine sees
//! "the peer is behind a NAT", and IKE_AUTH runs on port 4500 with the non-ESP marker.
//! charon's `swanctl --list-sas` must show the IKE SA ESTABLISHED and the CHILD_SA
//! INSTALLED with the SPIs our engine recorded. Then INFORMATIONAL Deletes both ways:
//! `swanctl --terminate --child` and `--ike` against our responder side of the exchange,
//! and our `delete_child` and `delete_ike` against charon's. Then rekeys both ways:
//! `swanctl --rekey --child` (with and without PFS) and `--rekey --ike` answered by our
//! engine, and our `rekey_child` and `rekey_ike` answered by charon; charon must show
//! one CHILD_SA installed with the new SPIs (and the PFS group), or the new IKE SA.
//! Last, with a kernel that answers (`Config::kernel_answers`): a fake one in this
//! process, and our namespace's XFRM through `isakmpd::kernel::Kernel` where the running
//! kernel has ESP (it is skipped otherwise): our CHILD_SAs' SPIs come from the kernel,
//! their states (and policies) are in it while they live, across both rekeys, and gone
//! with the IKE SA. Certificates, RSA and ECDSA, both ways: charon sends its own only
//! when asked (its default), so our CERTREQ must name its CA; its log says with which
//! signature scheme it checked ours (RFC 7427 or methods 1 and 9). And IKE_AUTH in
//! fragments (RFC 7383) both ways, charon splitting at 576 bytes and we at 544. And
//! configuration payloads (§2.19): charon as road warrior gets an address from our pool,
//! and we get one from charon's, each side's CHILD_SA narrowed to it.

mod common;

#[path = "common/charon.rs"]
mod charon;
#[path = "common/pki.rs"]
mod pki;

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use charon::{Charon, PSK};
use common::{Link, Scratch};
use isakmpd::ike::crypto::random_source;
use isakmpd::ike::sa::{KernelReply, KernelReq};
use isakmpd::ikev2::engine::{ChildRef, Engine, IkeRef, IkeState};
use isakmpd::ikev2::policy::{
    Config, EspProposal, Identity, IkeProposal, Peer, PeerAuth, Policy, Selector, SigMethod,
};
use isakmpd::ikev2::wire::{DhGroup, EncrId, IntegId, PrfId};
use isakmpd::kernel::{Dialect, Kernel};
use isakmpd::timer::Time;

const US: &str = "192.0.2.1";
const CHARON_ADDR: &str = "192.0.2.2";

/// A UDP socket bound in network namespace `netns`.
fn socket_in(netns: &str, addr: SocketAddr) -> UdpSocket {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        let f = File::open(&path).unwrap();
        // SAFETY: setns on a file descriptor we own, for this thread only.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}");
        let s = UdpSocket::bind(addr).unwrap();
        s.set_nonblocking(true).unwrap();
        s
    })
    .join()
    .unwrap()
}

/// A NETLINK_XFRM socket in network namespace `netns`.
fn xfrm_in(netns: &str) -> OwnedFd {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        let f = File::open(&path).unwrap();
        // SAFETY: setns on a file descriptor we own, for this thread only.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}");
        let fd = isakmpd::monitor::open_xfrm().unwrap();
        isakmpd::sys::set_nonblocking(fd.as_raw_fd());
        fd
    })
    .join()
    .unwrap()
}

/// The kernel that answers the engine's requests.
enum OurKernel {
    /// The namespace's XFRM.
    Xfrm(OwnedFd, Kernel),
    /// In this process: SPIs from a counter, installs kept as (SPI in, SPI out).
    Fake {
        next_spi: u32,
        larval: BTreeSet<u32>,
        installed: BTreeSet<(u32, u32)>,
    },
}

struct Ours {
    engine: Engine,
    socks: Vec<UdpSocket>,
    t0: Instant,
    /// None: the engine's kernel does not answer (its requests are dropped).
    kernel: Option<OurKernel>,
}

impl Ours {
    fn new(netns: &str, ike: IkeProposal, esp: EspProposal) -> Ours {
        Ours::with_kernel(netns, ike, esp, None)
    }

    /// `kernel` answers the engine's kernel requests.
    fn with_kernel(
        netns: &str,
        ike: IkeProposal,
        esp: EspProposal,
        kernel: Option<OurKernel>,
    ) -> Ours {
        Ours::build(netns, ike, esp, kernel, PeerAuth::psk(PSK.as_bytes()))
    }

    /// Signature authentication with `creds`.
    fn with_sig(
        netns: &str,
        ike: IkeProposal,
        esp: EspProposal,
        m: SigMethod,
        creds: isakmpd::ike::Credentials,
    ) -> Ours {
        let mut o = Ours::build(netns, ike, esp, None, PeerAuth::Sig(m));
        o.engine.set_credentials(creds);
        o
    }

    fn build(
        netns: &str,
        ike: IkeProposal,
        esp: EspProposal,
        kernel: Option<OurKernel>,
        auth: PeerAuth,
    ) -> Ours {
        let ip = US.parse().unwrap();
        let peer = Peer {
            name: "charon".into(),
            local: SocketAddr::new(ip, 500),
            remote: format!("{CHARON_ADDR}:500").parse().unwrap(),
            auth,
            local_id: Identity::addr(ip),
            remote_id: Some(Identity::addr(CHARON_ADDR.parse().unwrap())),
            ike: vec![ike],
            esp: vec![esp],
            local_ts: vec![Selector::subnet("198.51.100.0".parse().unwrap(), 24)],
            remote_ts: vec![Selector::subnet("203.0.113.0".parse().unwrap(), 24)],
            flows: Vec::new(),
            transport: false,
            ike_lifetime_secs: 0,
            child_lifetime_secs: 0,
            child_lifetime_bytes: 0,
            cp: Default::default(),
        };
        let config = Config {
            kernel_answers: kernel.is_some(),
            ..Config::default()
        };
        Ours {
            engine: Engine::new(
                config,
                Policy { peers: vec![peer] },
                Time(0),
                random_source(None),
            ),
            socks: [500, 4500]
                .iter()
                .map(|&p| socket_in(netns, SocketAddr::new(ip, p)))
                .collect(),
            t0: Instant::now(),
            kernel,
        }
    }

    /// The engine's kernel requests to XFRM, and XFRM's answers back to the engine.
    fn kernel_io(&mut self, now: Time) {
        let (fd, k) = match self.kernel.as_mut() {
            Some(OurKernel::Xfrm(fd, k)) => (fd.as_raw_fd(), k),
            Some(OurKernel::Fake {
                next_spi,
                larval,
                installed,
            }) => {
                while let Some(op) = self.engine.poll_kernel() {
                    let reply = match op.req {
                        KernelReq::GetSpi { .. } => {
                            *next_spi += 1;
                            larval.insert(*next_spi);
                            KernelReply::Spi(next_spi.to_be_bytes())
                        }
                        KernelReq::DeleteSpi { spi, .. } => {
                            assert!(larval.remove(&u32::from_be_bytes(spi)));
                            KernelReply::Done
                        }
                        KernelReq::AddSa(sa, part) => {
                            let (i, o) = (
                                u32::from_be_bytes(sa.spi_in),
                                u32::from_be_bytes(sa.spi_out),
                            );
                            if part == isakmpd::ike::sa::Part::Outbound {
                                // A rekey responder's outbound half, after its inbound one.
                                assert!(installed.contains(&(i, o)), "{i:08x}/{o:08x} half in");
                            } else {
                                // A CHILD_SA moved to new addresses comes back without
                                // its larval state.
                                let larval = larval.remove(&i);
                                assert!(larval || !sa.spi_from_kernel, "{i:08x} from the kernel");
                                installed.insert((i, o));
                            }
                            KernelReply::Done
                        }
                        KernelReq::DeleteSa(sa, _, _) => {
                            let i = u32::from_be_bytes(sa.spi_in);
                            larval.remove(&i);
                            installed.remove(&(i, u32::from_be_bytes(sa.spi_out)));
                            KernelReply::Done
                        }
                        KernelReq::UpdateSa(_) => KernelReply::Failed("unexpected".into()),
                        // A CHILD_SA moved to new addresses keeps its SPIs.
                        KernelReq::MigrateSa(_, sa, _) => {
                            let (i, o) = (
                                u32::from_be_bytes(sa.spi_in),
                                u32::from_be_bytes(sa.spi_out),
                            );
                            assert!(installed.contains(&(i, o)), "{i:08x}/{o:08x} migrated");
                            KernelReply::Done
                        }
                        KernelReq::AddFlows(_) | KernelReq::DeleteFlows(_) => KernelReply::Done,
                    };
                    if op.ticket != 0 {
                        self.engine.kernel_reply(now, op.ticket, reply);
                    }
                }
                return;
            }
            None => {
                while self.engine.poll_kernel().is_some() {}
                return;
            }
        };
        let mut done = Vec::new();
        let mut events = Vec::new();
        while let Some(op) = self.engine.poll_kernel() {
            let mut send = |b: &[u8]| {
                isakmpd::sys::send(fd, b, 0)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            k.submit(now, &op, &mut send, &mut done);
        }
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = isakmpd::sys::recv(fd, &mut buf, 0) {
            k.receive(now, &buf[..n], &mut done, &mut events);
        }
        k.expire(now, &mut done);
        for (ticket, reply) in done {
            self.engine.kernel_reply(now, ticket, reply);
        }
    }

    fn now(&self) -> Time {
        Time(self.t0.elapsed().as_millis() as u64)
    }

    /// Runs the engine until `done` or 20 s.
    fn run_until(&mut self, mut done: impl FnMut(&Engine) -> bool) {
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(&self.engine) {
            assert!(
                Instant::now() < deadline,
                "engine did not get there in 20 s"
            );
            while let Some(t) = self.engine.poll_transmit(&mut buf) {
                let port = t.local.map_or(500, |l| l.port());
                let s = self
                    .socks
                    .iter()
                    .find(|s| s.local_addr().unwrap().port() == port)
                    .unwrap();
                s.send_to(&buf[..t.len], t.remote).unwrap();
            }
            let now = self.now();
            for s in &self.socks {
                let local = s.local_addr().unwrap();
                while let Ok((n, from)) = s.recv_from(&mut buf) {
                    self.engine.handle_datagram(now, local, from, &buf[..n]);
                }
            }
            self.engine.handle_timeout(now);
            self.kernel_io(now);
            std::thread::sleep(Duration::from_millis(5));
        }
        self.kernel_io(self.now());
        // Whatever the last input made the engine say.
        while let Some(t) = self.engine.poll_transmit(&mut buf) {
            let port = t.local.map_or(500, |l| l.port());
            if let Some(s) = self
                .socks
                .iter()
                .find(|s| s.local_addr().unwrap().port() == port)
            {
                let _ = s.send_to(&buf[..t.len], t.remote);
            }
        }
    }
}

fn charon(name: &str, netns: &str, ike: &str, esp: &str) -> Charon {
    charon_from(name, netns, ike, esp, CHARON_ADDR)
}

/// charon with `local_addrs` (`%any`: whatever address routes to us, as a roaming
/// MOBIKE client has).
fn charon_from(name: &str, netns: &str, ike: &str, esp: &str, local_addrs: &str) -> Charon {
    let swanctl = format!(
        "connections {{\n v2 {{\n  version = 2\n  local_addrs = {local_addrs}\n  remote_addrs = {US}\n  \
         proposals = {ike}\n  local {{\n   auth = psk\n   id = {CHARON_ADDR}\n  }}\n  \
         remote {{\n   auth = psk\n   id = {US}\n  }}\n  children {{\n   net {{\n    mode = tunnel\n    \
         esp_proposals = {esp}\n    local_ts = 203.0.113.0/24\n    remote_ts = 198.51.100.0/24\n    \
         start_action = none\n   }}\n  }}\n }}\n}}\n\
         secrets {{\n ike-1 {{\n  id-1 = {CHARON_ADDR}\n  id-2 = {US}\n  secret = \"{PSK}\"\n }}\n}}\n"
    );
    Charon::launch(
        Scratch::new(name),
        &swanctl,
        netns,
        None,
        "install_routes = no",
    )
}

fn link(tag: &str) -> Link {
    common::require_root();
    let l = Link::new(tag);
    // The selectors' own ends, so that kernel-libipsec has source addresses.
    for (ns, a) in [(&l.a, "198.51.100.1/32"), (&l.b, "203.0.113.1/32")] {
        let st = Command::new("ip")
            .args(["-n", ns, "addr", "add", a, "dev", "lo"])
            .status()
            .unwrap();
        assert!(st.success());
        // No IPv6 link-local address turning up a second later: charon (with MOBIKE,
        // which we answer) would announce it in an INFORMATIONAL while a test reads its
        // view without our engine running to answer.
        let st = Command::new("ip")
            .args(["netns", "exec", ns, "sysctl", "-qw"])
            .arg("net.ipv6.conf.all.disable_ipv6=1")
            .status()
            .unwrap();
        assert!(st.success());
    }
    l
}

/// charon's view must match ours: IKE SA up, CHILD_SA installed, SPIs mirrored.
fn check_charon(c: &Charon, ours: &Ours, aead: bool) {
    let (_, info) = ours.engine.ike_sas().next().expect("our IKE SA");
    assert_eq!(info.state, IkeState::Established);
    assert!(info.nat_remote, "charon fakes a NAT for kernel-libipsec");
    let child = ours
        .engine
        .child_sas()
        .next()
        .expect("our CHILD_SA")
        .clone();
    let t0 = Instant::now();
    let sas = loop {
        let s = c.swanctl(&["--list-sas"]);
        if s.contains("INSTALLED") || t0.elapsed() > Duration::from_secs(5) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("charon --list-sas:\n{sas}");
    assert!(sas.contains("ESTABLISHED, IKEv2"), "{sas}\n{}", c.log());
    let spi_hex = |s: &[u8; 8]| s.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert!(sas.contains(&spi_hex(&info.spi_i)), "{sas}");
    assert!(sas.contains(&spi_hex(&info.spi_r)), "{sas}");
    assert!(sas.contains("INSTALLED"), "{sas}\n{}", c.log());
    // charon's inbound SPI is our outbound one and the other way round.
    assert!(
        sas.contains(&format!("in  {:08x}", child.spi_out)),
        "{sas} / ours {child:?}"
    );
    assert!(
        sas.contains(&format!("out {:08x}", child.spi_in)),
        "{sas} / ours {child:?}"
    );
    let alg = if aead {
        "ESP:AES_GCM_16-256"
    } else {
        "ESP:AES_CBC-256/HMAC_SHA2_256_128"
    };
    assert!(sas.contains(alg), "{sas}");
    assert!(
        sas.contains("203.0.113.0/24") && sas.contains("198.51.100.0/24"),
        "{sas}"
    );
}

#[test]
fn we_initiate_ikev2_psk_with_charon() {
    let l = link("v2i");
    let c = charon(
        "v2-charon-resp",
        &l.b,
        "aes256-sha256-modp2048",
        "aes256-sha256",
    );
    let mut ours = Ours::new(
        &l.a,
        IkeProposal {
            encr: EncrId::AES_CBC,
            key_bits: Some(256),
            integ: Some(IntegId::HMAC_SHA2_256_128),
            prf: PrfId::HMAC_SHA2_256,
            dh: DhGroup::MODP_2048,
        },
        EspProposal {
            encr: EncrId::AES_CBC,
            key_bits: Some(256),
            integ: Some(IntegId::HMAC_SHA2_256_128),
            pfs: None,
        },
    );
    let now = ours.now();
    ours.engine.connect(now, "charon").unwrap();
    ours.run_until(|e| e.child_sas().count() == 1 || e.ike_sas().count() == 0);
    check_charon(&c, &ours, false);
}

#[test]
fn charon_initiates_ikev2_psk_aes_gcm_ecp256() {
    let l = link("v2r");
    let c = charon(
        "v2-charon-init",
        &l.b,
        "aes256gcm16-prfsha256-ecp256",
        "aes256gcm16",
    );
    let mut ours = Ours::new(
        &l.a,
        IkeProposal {
            encr: EncrId::AES_GCM_16,
            key_bits: Some(256),
            integ: None,
            prf: PrfId::HMAC_SHA2_256,
            dh: DhGroup::ECP_256,
        },
        EspProposal {
            encr: EncrId::AES_GCM_16,
            key_bits: Some(256),
            integ: None,
            pfs: None,
        },
    );
    std::thread::scope(|s| {
        let init = s.spawn(|| c.swanctl(&["--initiate", "--child", "net", "--timeout", "20"]));
        ours.run_until(|e| e.child_sas().count() == 1);
        let out = init.join().unwrap();
        assert!(out.contains("initiate completed successfully"), "{out}");
    });
    check_charon(&c, &ours, true);
}

/// We initiate an AES-GCM/ECP-256 IKE SA with charon and check both views.
fn established(tag: &str, name: &str) -> (Link, Charon, Ours) {
    established_pfs(tag, name, false)
}

/// The same, with PFS (ECP-256) for CREATE_CHILD_SA on both sides when `pfs`.
fn established_pfs(tag: &str, name: &str, pfs: bool) -> (Link, Charon, Ours) {
    let l = link(tag);
    let esp = if pfs {
        "aes256gcm16-ecp256"
    } else {
        "aes256gcm16"
    };
    let c = charon(name, &l.b, "aes256gcm16-prfsha256-ecp256", esp);
    let mut ours = Ours::new(
        &l.a,
        IkeProposal {
            encr: EncrId::AES_GCM_16,
            key_bits: Some(256),
            integ: None,
            prf: PrfId::HMAC_SHA2_256,
            dh: DhGroup::ECP_256,
        },
        EspProposal {
            encr: EncrId::AES_GCM_16,
            key_bits: Some(256),
            integ: None,
            pfs: pfs.then_some(DhGroup::ECP_256),
        },
    );
    let now = ours.now();
    ours.engine.connect(now, "charon").unwrap();
    ours.run_until(|e| e.child_sas().count() == 1 || e.ike_sas().count() == 0);
    check_charon(&c, &ours, true);
    (l, c, ours)
}

/// charon's `--list-sas` once `done` holds for it, or after 10 s.
fn charon_sas(c: &Charon, done: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let s = c.swanctl(&["--list-sas"]);
        // 10 s: charon keeps a rekeyed CHILD_SA's inbound half for its
        // delete_rekeyed_delay (5 s) after the rekey, listed as DELETED.
        if done(&s) || t0.elapsed() > Duration::from_secs(10) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn charon_terminates_the_child_sa_then_the_ike_sa() {
    let (_l, c, mut ours) = established("v2dc", "v2-charon-del");
    let child = ours.engine.child_sas().next().unwrap();
    let (spi_in, spi_out) = (child.spi_in, child.spi_out);
    // charon's Delete names its inbound SPI, our outbound one; we answer with ours.
    std::thread::scope(|s| {
        let t = s.spawn(|| c.swanctl(&["--terminate", "--child", "net", "--timeout", "10"]));
        ours.run_until(|e| e.child_sas().count() == 0);
        let out = t.join().unwrap();
        assert!(out.contains("terminate completed successfully"), "{out}");
    });
    assert_eq!(ours.engine.ike_sas().count(), 1, "the IKE SA stays");
    let sas = charon_sas(&c, |s| !s.contains("INSTALLED"));
    assert!(!sas.contains("INSTALLED"), "{sas}");
    assert!(!sas.contains(&format!("{spi_out:08x}")), "{sas}");
    assert!(sas.contains("ESTABLISHED, IKEv2"), "{sas}\n{}", c.log());
    // charon's log names our answer's Delete with our inbound SPI (§1.4.1).
    let log = c.log();
    assert!(
        log.contains(&format!(
            "received DELETE for ESP CHILD_SA with SPI {spi_in:08x}"
        )),
        "{log}"
    );
    assert!(
        log.contains("received DELETE for ESP CHILD_SA") || log.contains("CHILD_SA closed"),
        "{log}"
    );
    // Then the IKE SA: an empty answer, and nothing left on our side.
    std::thread::scope(|s| {
        let t = s.spawn(|| c.swanctl(&["--terminate", "--ike", "v2", "--timeout", "10"]));
        ours.run_until(|e| e.ike_sas().count() == 0);
        let out = t.join().unwrap();
        assert!(out.contains("terminate completed successfully"), "{out}");
    });
    assert_eq!(ours.engine.child_sas().count(), 0);
    assert_eq!(ours.engine.stats().failed, 0);
    let sas = charon_sas(&c, |s| !s.contains("ESTABLISHED"));
    assert!(!sas.contains("ESTABLISHED"), "{sas}");
}

#[test]
fn we_delete_the_child_sa_then_the_ike_sa_at_charon() {
    let (_l, c, mut ours) = established("v2dw", "v2-charon-delw");
    let spi_in = ours.engine.child_sas().next().unwrap().spi_in;
    let now = ours.now();
    assert_eq!(ours.engine.delete_child(now, ChildRef::Peer("charon")), 1);
    ours.run_until(|e| e.child_sas().count() == 0);
    let sas = charon_sas(&c, |s| !s.contains("INSTALLED"));
    assert!(!sas.contains("INSTALLED"), "{sas}\n{}", c.log());
    assert!(sas.contains("ESTABLISHED, IKEv2"), "{sas}\n{}", c.log());
    let log = c.log();
    assert!(
        log.contains(&format!(
            "received DELETE for ESP CHILD_SA with SPI {spi_in:08x}"
        )),
        "{log}"
    );
    let now = ours.now();
    assert_eq!(ours.engine.delete_ike(now, IkeRef::Peer("charon")), 1);
    ours.run_until(|e| e.ike_sas().count() == 0);
    assert_eq!(ours.engine.stats().failed, 0, "charon answered");
    assert_eq!(ours.engine.stats().retransmits, 0);
    let sas = charon_sas(&c, |s| !s.contains("ESTABLISHED"));
    assert!(!sas.contains("ESTABLISHED"), "{sas}\n{}", c.log());
    let log = c.log();
    assert!(log.contains("received DELETE for IKE_SA v2"), "{log}");
}

// Rekeys (§1.3.2, §1.3.3, §2.8) both ways.

/// One CHILD_SA on our side, not the one with `old_in`, and charon's view of it: one
/// CHILD_SA installed with our SPIs mirrored and the old ones gone. Returns charon's
/// `--list-sas`.
fn check_rekeyed_child(c: &Charon, ours: &Ours, old_in: u32, old_out: u32) -> String {
    let children: Vec<_> = ours.engine.child_sas().cloned().collect();
    assert_eq!(children.len(), 1, "{children:?}");
    let n = &children[0];
    assert!(n.spi_in != old_in && n.spi_out != old_out, "new SPIs");
    let want_in = format!("in  {:08x}", n.spi_out);
    let sas = charon_sas(c, |s| {
        s.contains(&want_in) && !s.contains(&format!("{old_out:08x}"))
    });
    eprintln!("charon --list-sas after the rekey:\n{sas}");
    assert_eq!(sas.matches("INSTALLED").count(), 1, "{sas}\n{}", c.log());
    assert!(sas.contains(&want_in), "{sas}\n{}", c.log());
    assert!(sas.contains(&format!("out {:08x}", n.spi_in)), "{sas}");
    assert!(!sas.contains(&format!("{old_out:08x}")), "{sas}");
    assert!(!sas.contains(&format!("{old_in:08x}")), "{sas}");
    sas
}

/// charon names the PFS group of a CHILD_SA made with one after the ESP suite.
fn check_pfs(sas: &str, pfs: bool) {
    assert_eq!(sas.contains("ESP:AES_GCM_16-256/ECP_256"), pfs, "{sas}");
}

#[test]
fn charon_rekeys_the_child_sa_with_and_without_pfs() {
    for pfs in [false, true] {
        let (_l, c, mut ours) =
            established_pfs(if pfs { "v2rcp" } else { "v2rc" }, "v2-charon-rekey", pfs);
        let old = ours.engine.child_sas().next().unwrap().clone();
        std::thread::scope(|s| {
            let t = s.spawn(|| c.swanctl(&["--rekey", "--child", "net"]));
            // charon's rekey, then its Delete of the old CHILD_SA.
            ours.run_until(|e| {
                e.child_sas().count() == 1 && e.child_sas().all(|n| n.spi_in != old.spi_in)
            });
            let out = t.join().unwrap();
            assert!(out.contains("rekey completed successfully"), "{out}");
        });
        let sas = check_rekeyed_child(&c, &ours, old.spi_in, old.spi_out);
        check_pfs(&sas, pfs);
        assert!(!ours.engine.child_sas().next().unwrap().initiator);
        assert_eq!(ours.engine.stats().child_sas_rekeyed, 1);
        assert_eq!(ours.engine.stats().failed, 0);
    }
}

#[test]
fn we_rekey_the_child_sa_at_charon_with_and_without_pfs() {
    for pfs in [false, true] {
        let (_l, c, mut ours) =
            established_pfs(if pfs { "v2rwp" } else { "v2rw" }, "v2-charon-rekeyw", pfs);
        let old = ours.engine.child_sas().next().unwrap().clone();
        let now = ours.now();
        assert_eq!(ours.engine.rekey_child(now, ChildRef::Peer("charon")), 1);
        ours.run_until(|e| {
            e.child_sas().count() == 1 && e.child_sas().all(|n| n.spi_in != old.spi_in)
        });
        // Our Delete of the old one answered too.
        let t0 = Instant::now();
        while ours.engine.stats().child_sas_deleted == 0 && t0.elapsed().as_secs() < 10 {
            let stop = Instant::now() + Duration::from_millis(100);
            ours.run_until(|_| Instant::now() > stop);
        }
        let sas = check_rekeyed_child(&c, &ours, old.spi_in, old.spi_out);
        check_pfs(&sas, pfs);
        assert!(ours.engine.child_sas().next().unwrap().initiator);
        assert_eq!(ours.engine.stats().failed, 0);
        assert_eq!(ours.engine.stats().retransmits, 0);
        let log = c.log();
        assert!(
            log.contains(&format!(
                "received DELETE for ESP CHILD_SA with SPI {:08x}",
                old.spi_in
            )),
            "{log}"
        );
    }
}

fn ike_spis(ours: &Ours) -> ([u8; 8], [u8; 8]) {
    let v: Vec<_> = ours
        .engine
        .ike_sas()
        .map(|(_, i)| (i.spi_i, i.spi_r))
        .collect();
    assert_eq!(v.len(), 1, "one IKE SA");
    v[0]
}

fn check_rekeyed_ike(c: &Charon, ours: &Ours, old: ([u8; 8], [u8; 8])) {
    let hex = |s: &[u8; 8]| s.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let new = ike_spis(ours);
    assert!(new.0 != old.0 && new.1 != old.1, "new SPIs");
    let sas = charon_sas(c, |s| s.contains(&hex(&new.0)) && !s.contains(&hex(&old.0)));
    eprintln!("charon --list-sas after the IKE SA rekey:\n{sas}");
    assert!(
        sas.contains(&hex(&new.0)) && sas.contains(&hex(&new.1)),
        "{sas}\n{}",
        c.log()
    );
    assert!(!sas.contains(&hex(&old.0)), "{sas}");
    assert_eq!(sas.matches("ESTABLISHED").count(), 1, "{sas}");
    assert_eq!(
        sas.matches("INSTALLED").count(),
        1,
        "the CHILD_SA moved: {sas}"
    );
}

#[test]
fn charon_rekeys_the_ike_sa() {
    let (_l, c, mut ours) = established("v2ri", "v2-charon-ikerekey");
    let old = ike_spis(&ours);
    std::thread::scope(|s| {
        let t = s.spawn(|| c.swanctl(&["--rekey", "--ike", "v2"]));
        ours.run_until(|e| e.ike_sas().count() == 1 && e.ike_sas().all(|(_, i)| i.spi_i != old.0));
        let out = t.join().unwrap();
        assert!(out.contains("rekey completed successfully"), "{out}");
    });
    check_rekeyed_ike(&c, &ours, old);
    assert_eq!(ours.engine.child_sas().count(), 1);
    assert_eq!(ours.engine.stats().ike_sas_rekeyed, 1);
    // The new IKE SA works: we rekey the CHILD_SA on it.
    let child = ours.engine.child_sas().next().unwrap().clone();
    let now = ours.now();
    assert_eq!(ours.engine.rekey_child(now, ChildRef::Peer("charon")), 1);
    ours.run_until(|e| e.stats().child_sas_deleted == 1);
    check_rekeyed_child(&c, &ours, child.spi_in, child.spi_out);
    assert_eq!(ours.engine.stats().failed, 0);
}

#[test]
fn we_rekey_the_ike_sa_at_charon() {
    let (_l, c, mut ours) = established("v2rj", "v2-charon-ikerekeyw");
    let old = ike_spis(&ours);
    let now = ours.now();
    assert_eq!(ours.engine.rekey_ike(now, IkeRef::Peer("charon")), 1);
    // Rekeyed, then our Delete of the old IKE SA answered.
    ours.run_until(|e| e.ike_sas().count() == 1 && e.ike_sas().all(|(_, i)| i.spi_i != old.0));
    check_rekeyed_ike(&c, &ours, old);
    assert_eq!(ours.engine.child_sas().count(), 1);
    assert_eq!(ours.engine.stats().failed, 0);
    assert_eq!(ours.engine.stats().retransmits, 0);
    // And the new IKE SA works both ways: charon rekeys the CHILD_SA on it.
    let child = ours.engine.child_sas().next().unwrap().clone();
    std::thread::scope(|s| {
        let t = s.spawn(|| c.swanctl(&["--rekey", "--child", "net"]));
        ours.run_until(|e| e.stats().child_sas_deleted == 1);
        let out = t.join().unwrap();
        assert!(out.contains("rekey completed successfully"), "{out}");
    });
    check_rekeyed_child(&c, &ours, child.spi_in, child.spi_out);
}

// With a kernel that answers (issue 16).

/// `ip xfrm state` or `ip xfrm policy` (`what`) in namespace `netns`.
fn ip_xfrm(netns: &str, what: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", netns, "xfrm", what])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Our kernel holds exactly our CHILD_SA: in XFRM its two states, UDP-encapsulated
/// (charon's faked NAT), and the flows between the selectors; in the fake, its SPIs.
fn check_kernel(netns: &str, ours: &Ours) {
    let children: Vec<_> = ours.engine.child_sas().cloned().collect();
    assert_eq!(children.len(), 1, "{children:?}");
    let c = &children[0];
    if let Some(OurKernel::Fake {
        larval, installed, ..
    }) = &ours.kernel
    {
        assert_eq!(*installed, BTreeSet::from([(c.spi_in, c.spi_out)]));
        assert!(larval.is_empty(), "{larval:?}");
        return;
    }
    let states = ip_xfrm(netns, "state");
    eprintln!("ip xfrm state:\n{states}");
    assert_eq!(states.matches("proto esp").count(), 2, "{states}");
    for spi in [c.spi_in, c.spi_out] {
        assert!(states.contains(&format!("spi 0x{spi:08x}")), "{states}");
    }
    assert_eq!(states.matches("rfc4106(gcm(aes))").count(), 2, "{states}");
    assert_eq!(states.matches("espinudp sport 4500 dport 4500").count(), 2);
    let policies = ip_xfrm(netns, "policy");
    for dir in ["dir out", "dir in", "dir fwd"] {
        assert!(policies.contains(dir), "{policies}");
    }
    assert!(
        policies.contains("src 198.51.100.0/24 dst 203.0.113.0/24"),
        "{policies}"
    );
}

/// Whether the running kernel can install an ESP SA (XFRM with esp4 and AES-GCM); a
/// minimal VM kernel may have XFRM (ALLOCSPI works) but not ESP.
fn kernel_has_esp() -> bool {
    let ns = format!("isk{}esp", std::process::id() % 100000);
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ip netns add {ns} && ip -n {ns} xfrm state add src 192.0.2.2 dst 192.0.2.1 \
             proto esp spi 0x100 mode tunnel aead 'rfc4106(gcm(aes))' \
             0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223 128"
        ))
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    ok
}

#[test]
fn with_a_kernel_that_answers_the_child_sas_are_in_it_from_the_spi_to_the_ike_sa_delete() {
    run_with_kernel("v2kf", false);
    if kernel_has_esp() {
        run_with_kernel("v2kx", true);
    } else {
        eprintln!("this kernel has no ESP: XFRM run skipped");
    }
}

fn run_with_kernel(tag: &str, xfrm: bool) {
    let l = link(tag);
    let c = charon(
        "v2-charon-kernel",
        &l.b,
        "aes256gcm16-prfsha256-ecp256",
        "aes256gcm16-ecp256",
    );
    let kernel = if xfrm {
        OurKernel::Xfrm(xfrm_in(&l.a), Kernel::new(true, Dialect::Xfrm))
    } else {
        OurKernel::Fake {
            next_spi: 0xc000_0000,
            larval: BTreeSet::new(),
            installed: BTreeSet::new(),
        }
    };
    let mut ours = Ours::with_kernel(
        &l.a,
        IkeProposal {
            encr: EncrId::AES_GCM_16,
            key_bits: Some(256),
            integ: None,
            prf: PrfId::HMAC_SHA2_256,
            dh: DhGroup::ECP_256,
        },
        EspProposal {
            encr: EncrId::AES_GCM_16,
            key_bits: Some(256),
            integ: None,
            pfs: Some(DhGroup::ECP_256),
        },
        Some(kernel),
    );
    let now = ours.now();
    ours.engine.connect(now, "charon").unwrap();
    ours.run_until(|e| e.child_sas().count() == 1 || e.ike_sas().count() == 0);
    check_charon(&c, &ours, true);
    check_kernel(&l.a, &ours);
    if !xfrm {
        let spi = ours.engine.child_sas().next().unwrap().spi_in;
        assert!(spi > 0xc000_0000, "{spi:08x}: the fake kernel's");
    }

    // charon rekeys: we answer once our kernel holds the new SA; charon deletes the old.
    let old = ours.engine.child_sas().next().unwrap().clone();
    std::thread::scope(|s| {
        let t = s.spawn(|| c.swanctl(&["--rekey", "--child", "net"]));
        ours.run_until(|e| {
            e.child_sas().count() == 1 && e.child_sas().all(|n| n.spi_in != old.spi_in)
        });
        let out = t.join().unwrap();
        assert!(out.contains("rekey completed successfully"), "{out}");
    });
    check_rekeyed_child(&c, &ours, old.spi_in, old.spi_out);
    check_kernel(&l.a, &ours);

    // We rekey: our new SA is in before the old one goes.
    let old = ours.engine.child_sas().next().unwrap().clone();
    let now = ours.now();
    assert_eq!(ours.engine.rekey_child(now, ChildRef::Peer("charon")), 1);
    let deleted = ours.engine.stats().child_sas_deleted;
    ours.run_until(|e| {
        e.child_sas().count() == 1
            && e.child_sas().all(|n| n.spi_in != old.spi_in)
            && e.stats().child_sas_deleted > deleted
    });
    check_rekeyed_child(&c, &ours, old.spi_in, old.spi_out);
    check_kernel(&l.a, &ours);
    assert_eq!(ours.engine.stats().kernel_refused, 0);

    // The IKE SA goes, and everything with it.
    let now = ours.now();
    assert_eq!(ours.engine.delete_ike(now, IkeRef::Peer("charon")), 1);
    ours.run_until(|e| e.ike_sas().count() == 0);
    match &ours.kernel {
        Some(OurKernel::Fake {
            larval, installed, ..
        }) => assert!(larval.is_empty() && installed.is_empty()),
        _ => {
            assert_eq!(ip_xfrm(&l.a, "state").trim(), "", "no state left");
            assert_eq!(ip_xfrm(&l.a, "policy").trim(), "", "no policy left");
        }
    }
    assert_eq!(ours.engine.stats().failed, 0);
}

// ----- Certificates (RSA and ECDSA) -----

const GCM_ECP256: IkeProposal = IkeProposal {
    encr: EncrId::AES_GCM_16,
    key_bits: Some(256),
    integ: None,
    prf: PrfId::HMAC_SHA2_256,
    dh: DhGroup::ECP_256,
};
const ESP_GCM: EspProposal = EspProposal {
    encr: EncrId::AES_GCM_16,
    key_bits: Some(256),
    integ: None,
    pfs: None,
};

/// A CA, our certificate (`us`) and charon's (`east`) for the addresses, RSA or ECDSA
/// P-256, in a scratch directory laid out as `Charon::launch` takes it.
fn certs(tag: &str, ec: bool) -> (Scratch, isakmpd::ike::Credentials) {
    let s = Scratch::new(tag);
    let d = &s.dir;
    pki::ca(d, "ca");
    if ec {
        pki::host_ec(d, "ca", "us", US, "P-256");
        pki::host_ec(d, "ca", "east", CHARON_ADDR, "P-256");
    } else {
        pki::host(d, "ca", "us", US);
        pki::host(d, "ca", "east", CHARON_ADDR);
    }
    let rd = |f: &str| std::fs::read(d.join(f)).unwrap();
    let c = isakmpd::ike::Credentials::load(Some(&rd("us.key")), &[rd("us.crt")], &[rd("ca.crt")])
        .unwrap();
    (s, c)
}

/// charon with `auth = pubkey` both ways, its certificate sent only when asked (its
/// default): our CERTREQ must name its CA.
fn charon_pubkey(name: &str, netns: &str, pki: &std::path::Path) -> Charon {
    let swanctl = sig_swanctl("", "certs = east.crt", "cacerts = ca.crt");
    Charon::launch(
        Scratch::new(name),
        &swanctl,
        netns,
        Some(pki),
        "install_routes = no",
    )
}

/// A swanctl.conf for charon at CHARON_ADDR with `auth = pubkey` both ways, AES-GCM and
/// ECP-256, one tunnel: `conn` goes into the connection (ending in "\n  "), `local` and
/// `remote` into its auth sections (certificates, CAs or raw `pubkeys`).
fn sig_swanctl(conn: &str, local: &str, remote: &str) -> String {
    format!(
        "connections {{\n v2 {{\n  version = 2\n  local_addrs = {CHARON_ADDR}\n  remote_addrs = {US}\n  \
         proposals = aes256gcm16-prfsha256-ecp256\n  {conn}\
         local {{\n   auth = pubkey\n   {local}\n   id = {CHARON_ADDR}\n  }}\n  \
         remote {{\n   auth = pubkey\n   id = {US}\n   {remote}\n  }}\n  children {{\n   net {{\n    mode = tunnel\n    \
         esp_proposals = aes256gcm16\n    local_ts = 203.0.113.0/24\n    remote_ts = 198.51.100.0/24\n    \
         start_action = none\n   }}\n  }}\n }}\n}}\n"
    )
}

/// Raw public keys, no certificate anywhere: our key pair (`us`) and charon's (`east`),
/// RSA or ECDSA P-256, in a scratch directory.
fn raw_keys(tag: &str, ec: bool) -> Scratch {
    let s = Scratch::new(tag);
    for name in ["us", "east"] {
        if ec {
            pki::raw_ec_key(&s.dir, name);
        } else {
            pki::raw_key(&s.dir, name);
        }
    }
    s
}

/// Our credentials from [`raw_keys`]: our private key, and charon's public key for its
/// address, as pubkeys/ipv4/192.0.2.2 holds it for the daemon.
fn raw_creds(dir: &std::path::Path) -> isakmpd::ike::Credentials {
    let rd = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let mut c = isakmpd::ike::Credentials::load(Some(&rd("us.key")), &[], &[]).unwrap();
    c.add_pubkey("ipv4", CHARON_ADDR, &rd("east.pub")).unwrap();
    c
}

/// charon with raw public keys both ways (swanctl `pubkeys =`): its own, and ours for
/// our ID.
fn charon_raw(name: &str, netns: &str, keys: &std::path::Path) -> Charon {
    let swanctl = sig_swanctl("", "pubkeys = east.pub", "pubkeys = us.pub");
    Charon::launch(
        Scratch::new(name),
        &swanctl,
        netns,
        Some(keys),
        "install_routes = no",
    )
}

#[test]
fn raw_public_keys_with_charon_rsa_and_ecdsa_either_side_starting() {
    for ec in [false, true] {
        let kind = if ec { "ecdsa" } else { "rsa" };
        let l = link(if ec { "v2re" } else { "v2rr" });
        let keys = raw_keys(&format!("v2-raw-{kind}"), ec);
        let c = charon_raw(&format!("v2-charon-raw-{kind}"), &l.b, &keys.dir);
        // We start.
        let creds = raw_creds(&keys.dir);
        let mut ours = Ours::with_sig(&l.a, GCM_ECP256, ESP_GCM, SigMethod::Any, creds);
        let now = ours.now();
        ours.engine.connect(now, "charon").unwrap();
        ours.run_until(|e| e.child_sas().count() == 1 || e.ike_sas().count() == 0);
        check_charon(&c, &ours, true);
        let scheme = if ec {
            "ECDSA_WITH_SHA256_DER"
        } else {
            "RSA_EMSA_PKCS1_SHA2_256"
        };
        charon_checked_us_with(&c, scheme);
        c.swanctl(&["--terminate", "--ike", "v2", "--force"]);
        drop(ours);
        std::thread::sleep(Duration::from_millis(300));
        // charon starts.
        let creds = raw_creds(&keys.dir);
        let mut ours = Ours::with_sig(&l.a, GCM_ECP256, ESP_GCM, SigMethod::Any, creds);
        charon_initiates(&c, &mut ours);
        check_charon(&c, &ours, true);
        // Both times charon checked us with the raw key it holds (charon has no CA, nor
        // have we). Our raw RSA key in a CERT payload (encoding 11, as iked sends it) is
        // ignored by charon as "not supported".
        let log = c.log();
        let ok = format!("authentication of '{US}' with {scheme} successful");
        assert_eq!(log.matches(&ok).count(), 2, "{ok}:\n{log}");
    }
}

/// charon's log says how it checked our AUTH, e.g. "authentication of '192.0.2.1'
/// with RSA_EMSA_PKCS1_SHA2_256 successful" (method 14), "with RSA signature" (1).
fn charon_checked_us_with(c: &Charon, scheme: &str) {
    let log = c.log();
    let want = format!("authentication of '{US}' with {scheme} successful");
    assert!(log.contains(&want), "{want}:\n{log}");
}

#[test]
fn we_initiate_ikev2_with_rsa_certificates_to_charon() {
    let l = link("v2ci");
    let (pki, _) = certs("v2-certs-rsa", false);
    let c = charon_pubkey("v2-charon-cert-resp", &l.b, &pki.dir);
    for (m, scheme) in [
        (SigMethod::Any, "RSA_EMSA_PKCS1_SHA2_256"),
        (SigMethod::Rsa, "RSA signature"),
    ] {
        let creds = isakmpd::ike::Credentials::load(
            Some(&std::fs::read(pki.dir.join("us.key")).unwrap()),
            &[std::fs::read(pki.dir.join("us.crt")).unwrap()],
            &[std::fs::read(pki.dir.join("ca.crt")).unwrap()],
        )
        .unwrap();
        let mut ours = Ours::with_sig(&l.a, GCM_ECP256, ESP_GCM, m, creds);
        let now = ours.now();
        ours.engine.connect(now, "charon").unwrap();
        ours.run_until(|e| e.child_sas().count() == 1 || e.ike_sas().count() == 0);
        check_charon(&c, &ours, true);
        charon_checked_us_with(&c, scheme);
        c.swanctl(&["--terminate", "--ike", "v2", "--force"]);
        drop(ours);
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn charon_initiates_ikev2_with_ecdsa_certificates() {
    let l = link("v2cr");
    let (pki, creds) = certs("v2-certs-ec", true);
    let c = charon_pubkey("v2-charon-cert-init", &l.b, &pki.dir);
    let mut ours = Ours::with_sig(&l.a, GCM_ECP256, ESP_GCM, SigMethod::Ecdsa256, creds);
    std::thread::scope(|s| {
        let init = s.spawn(|| c.swanctl(&["--initiate", "--child", "net", "--timeout", "20"]));
        ours.run_until(|e| e.child_sas().count() == 1);
        let out = init.join().unwrap();
        assert!(out.contains("initiate completed successfully"), "{out}");
    });
    check_charon(&c, &ours, true);
    // We signed with method 9 (our policy names ecdsa256); charon with RFC 7427.
    charon_checked_us_with(&c, "ECDSA-256 signature");
}

#[test]
fn charon_with_a_certificate_from_a_ca_we_do_not_trust_is_refused() {
    let l = link("v2cu");
    let s = Scratch::new("v2-certs-untrusted");
    let d = &s.dir;
    // charon trusts our CA (ca.crt); its own certificate is from otherca.
    pki::ca(d, "ca");
    pki::ca(d, "otherca");
    pki::host(d, "ca", "us", US);
    pki::host(d, "otherca", "east", CHARON_ADDR);
    let rd = |f: &str| std::fs::read(d.join(f)).unwrap();
    let creds =
        isakmpd::ike::Credentials::load(Some(&rd("us.key")), &[rd("us.crt")], &[rd("ca.crt")])
            .unwrap();
    let c = charon_pubkey("v2-charon-untrusted", &l.b, d);
    let mut ours = Ours::with_sig(&l.a, GCM_ECP256, ESP_GCM, SigMethod::Any, creds);
    std::thread::scope(|s| {
        let init = s.spawn(|| c.swanctl(&["--initiate", "--child", "net", "--timeout", "20"]));
        ours.run_until(|e| e.stats().failed >= 1 && e.ike_sas().count() == 0);
        let out = init.join().unwrap();
        assert!(!out.contains("initiate completed successfully"), "{out}");
    });
    assert_eq!(ours.engine.child_sas().count(), 0);
    let log = c.log();
    assert!(log.contains("received AUTHENTICATION_FAILED"), "{log}");
    let sas = c.swanctl(&["--list-sas"]);
    assert!(!sas.contains("ESTABLISHED"), "{sas}");
}

/// charon with certificates and IKE fragments of at most 576 bytes (its
/// `fragment_size`), as ours are at most 544 (548 for IPv4, less the non-ESP marker).
fn charon_fragmenting(name: &str, netns: &str, pki: &std::path::Path) -> Charon {
    let swanctl = sig_swanctl(
        "fragmentation = yes\n  send_cert = always\n  ",
        "certs = east.crt",
        "cacerts = ca.crt",
    );
    Charon::launch(
        Scratch::new(name),
        &swanctl,
        netns,
        Some(pki),
        "install_routes = no\n fragment_size = 576",
    )
}

#[test]
fn ike_auth_with_rsa_certificates_in_fragments_both_ways_with_charon() {
    let l = link("v2cf");
    let (pki, _) = certs("v2-certs-frag", false);
    let c = charon_fragmenting("v2-charon-frag", &l.b, &pki.dir);
    let load = || {
        let rd = |f: &str| std::fs::read(pki.dir.join(f)).unwrap();
        isakmpd::ike::Credentials::load(Some(&rd("us.key")), &[rd("us.crt")], &[rd("ca.crt")])
            .unwrap()
    };
    let fragmenting = |o: &mut Ours| {
        let peers = o.engine.policy().clone();
        let cfg = Config {
            fragmentation: true,
            ..Config::default()
        };
        o.engine = Engine::new(cfg, peers, Time(0), random_source(None));
        o.engine.set_credentials(load());
    };
    // We initiate: our IKE_AUTH request and charon's answer both in fragments.
    let mut ours = Ours::with_sig(&l.a, GCM_ECP256, ESP_GCM, SigMethod::Any, load());
    fragmenting(&mut ours);
    let now = ours.now();
    ours.engine.connect(now, "charon").unwrap();
    ours.run_until(|e| e.child_sas().count() == 1 || e.ike_sas().count() == 0);
    check_charon(&c, &ours, true);
    let st = *ours.engine.stats();
    assert!(st.fragments_sent >= 3, "{st:?}");
    assert!(st.fragments_received >= 2, "{st:?}");
    let log = c.log();
    assert!(log.contains("reassembled fragmented IKE message"), "{log}");
    assert!(log.contains("splitting IKE message"), "{log}");
    c.swanctl(&["--terminate", "--ike", "v2", "--force"]);
    drop(ours);
    std::thread::sleep(Duration::from_millis(300));
    // charon initiates.
    let mut ours = Ours::with_sig(&l.a, GCM_ECP256, ESP_GCM, SigMethod::Any, load());
    fragmenting(&mut ours);
    std::thread::scope(|s| {
        let init = s.spawn(|| c.swanctl(&["--initiate", "--child", "net", "--timeout", "20"]));
        ours.run_until(|e| e.child_sas().count() == 1);
        let out = init.join().unwrap();
        assert!(out.contains("initiate completed successfully"), "{out}");
    });
    check_charon(&c, &ours, true);
    let st = *ours.engine.stats();
    assert!(
        st.fragments_sent >= 2 && st.fragments_received >= 2,
        "{st:?}"
    );
}

// ----- Configuration payloads (RFC 7296 §2.19) -----

/// Ours with its one peer changed by `f` (PSK, AES-GCM, ECP-256).
fn ours_with(netns: &str, f: impl FnOnce(&mut Peer)) -> Ours {
    let mut o = Ours::new(netns, GCM_ECP256, ESP_GCM);
    let mut pol = o.engine.policy().clone();
    f(&mut pol.peers[0]);
    o.engine = Engine::new(Config::default(), pol, Time(0), random_source(None));
    o
}

/// charon with PSK, `extra` in its connection, its CHILD_SA's selectors, and `tail`
/// after the connections (pools).
fn charon_cp(name: &str, netns: &str, extra: &str, ts: (&str, &str), tail: &str) -> Charon {
    let (local_ts, remote_ts) = ts;
    let swanctl = format!(
        "connections {{\n v2 {{\n  version = 2\n  local_addrs = {CHARON_ADDR}\n  remote_addrs = {US}\n  \
         proposals = aes256gcm16-prfsha256-ecp256\n  {extra}\n  local {{\n   auth = psk\n   id = {CHARON_ADDR}\n  }}\n  \
         remote {{\n   auth = psk\n   id = {US}\n  }}\n  children {{\n   net {{\n    mode = tunnel\n    \
         esp_proposals = aes256gcm16\n    local_ts = {local_ts}\n    remote_ts = {remote_ts}\n    \
         start_action = none\n   }}\n  }}\n }}\n}}\n\
         secrets {{\n ike-1 {{\n  id-1 = {CHARON_ADDR}\n  id-2 = {US}\n  secret = \"{PSK}\"\n }}\n}}\n{tail}"
    );
    Charon::launch(
        Scratch::new(name),
        &swanctl,
        netns,
        None,
        "install_routes = no",
    )
}

#[test]
fn charon_as_road_warrior_gets_an_address_from_our_pool() {
    use isakmpd::ikev2::policy::CpConfig;
    use isakmpd::ikev2::wire::CfgAttrType;
    let l = link("v2cp");
    let c = charon_cp(
        "v2-charon-vip",
        &l.b,
        "vips = 0.0.0.0",
        ("dynamic", "198.51.100.0/24"),
        "",
    );
    // charon does not put the address on an interface here (install_virtual_ip = no),
    // but kernel-libipsec's route needs it as a source: it goes on charon's loopback.
    let st = Command::new("ip")
        .args(["-n", &l.b, "addr", "add", "203.0.113.129/32", "dev", "lo"])
        .status()
        .unwrap();
    assert!(st.success());
    let pool: std::net::IpAddr = "203.0.113.128".parse().unwrap();
    let mut ours = ours_with(&l.a, |p| {
        p.remote_ts = vec![Selector::subnet(pool, 28)];
        p.cp = CpConfig {
            pool: Some((pool, 28)),
            serve: vec![(CfgAttrType::INTERNAL_IP4_DNS, vec![198, 51, 100, 53])],
            ..CpConfig::default()
        };
    });
    std::thread::scope(|s| {
        let init = s.spawn(|| c.swanctl(&["--initiate", "--child", "net", "--timeout", "20"]));
        ours.run_until(|e| e.child_sas().count() == 1);
        let out = init.join().unwrap();
        assert!(out.contains("initiate completed successfully"), "{out}");
    });
    let vip: std::net::IpAddr = "203.0.113.129".parse().unwrap();
    let (_, info) = ours.engine.ike_sas().next().unwrap();
    assert_eq!(info.peer_vip, Some(vip));
    let child = ours.engine.child_sas().next().unwrap().clone();
    assert_eq!(child.ts_remote, vec![Selector::host(vip)]);
    let log = c.log();
    assert!(log.contains("CPRP(ADDR)"), "{log}");
    assert!(
        log.contains("installing new virtual IP 203.0.113.129"),
        "{log}"
    );
    let sas = c.swanctl(&["--list-sas"]);
    assert!(sas.contains("INSTALLED"), "{sas}");
    assert!(sas.contains("local  203.0.113.129/32"), "{sas}");
    assert!(sas.contains(&format!("in  {:08x}", child.spi_out)), "{sas}");
}

#[test]
fn we_ask_charon_for_an_address_and_our_side_is_narrowed_to_it() {
    use isakmpd::ikev2::policy::CpConfig;
    use isakmpd::ikev2::wire::CfgAttrType;
    let l = link("v2cq");
    let c = charon_cp(
        "v2-charon-pool",
        &l.b,
        "pools = rw",
        ("203.0.113.0/24", "dynamic"),
        "pools {\n rw {\n  addrs = 198.51.100.192/28\n  dns = 203.0.113.53\n }\n}\n",
    );
    let mut ours = ours_with(&l.a, |p| {
        p.local_ts = vec![Selector::subnet("0.0.0.0".parse().unwrap(), 0)];
        p.cp = CpConfig {
            request: vec![
                CfgAttrType::INTERNAL_IP4_ADDRESS,
                CfgAttrType::INTERNAL_IP4_DNS,
            ],
            ..CpConfig::default()
        };
    });
    let now = ours.now();
    ours.engine.connect(now, "charon").unwrap();
    ours.run_until(|e| e.child_sas().count() == 1 || e.ike_sas().count() == 0);
    let (_, info) = ours.engine.ike_sas().next().expect("our IKE SA");
    let vip = info.own_vip.expect("an address from charon");
    let v4 = match vip {
        std::net::IpAddr::V4(a) => a.octets(),
        _ => panic!("{vip}"),
    };
    assert_eq!(&v4[..3], &[198, 51, 100], "{vip}");
    assert!((192..208).contains(&v4[3]), "{vip}");
    let child = ours
        .engine
        .child_sas()
        .next()
        .expect("our CHILD_SA")
        .clone();
    assert_eq!(child.ts_local, vec![Selector::host(vip)]);
    let sas = c.swanctl(&["--list-sas"]);
    assert!(sas.contains("INSTALLED"), "{sas}");
    assert!(sas.contains(&format!("remote {vip}/32")), "{sas}");
    let log = c.log();
    assert!(
        log.contains(&format!("assigning virtual IP {vip}")),
        "{log}"
    );
}

/// charon initiates its CHILD_SA to our engine and both sides show it.
fn charon_initiates(c: &Charon, ours: &mut Ours) {
    std::thread::scope(|s| {
        let init = s.spawn(|| c.swanctl(&["--initiate", "--child", "net", "--timeout", "20"]));
        let before = ours.engine.stats().ike_sas_established;
        ours.run_until(|e| e.stats().ike_sas_established > before && e.child_sas().count() >= 1);
        let out = init.join().unwrap();
        assert!(out.contains("initiate completed successfully"), "{out}");
    });
}

#[test]
fn a_restarted_charon_sends_initial_contact_and_we_drop_its_old_ike_sa_at_once() {
    let l = link("v2ic");
    let c = charon(
        "v2-charon-ic1",
        &l.b,
        "aes256gcm16-prfsha256-ecp256",
        "aes256gcm16",
    );
    let mut ours = Ours::new(&l.a, GCM_ECP256, ESP_GCM);
    charon_initiates(&c, &mut ours);
    check_charon(&c, &ours, true);
    let old = ike_spis(&ours);
    // charon dies without a word (no Delete) and comes back with the same configuration.
    // SAFETY: signalling our own child, not yet reaped.
    unsafe { libc::kill(c.child.id() as i32, libc::SIGKILL) };
    drop(c);
    let c = charon(
        "v2-charon-ic2",
        &l.b,
        "aes256gcm16-prfsha256-ecp256",
        "aes256gcm16",
    );
    charon_initiates(&c, &mut ours);
    // Its new IKE_AUTH said INITIAL_CONTACT: the old IKE SA and CHILD_SA are gone now,
    // not when a liveness check would find them dead (there is none here).
    ours.run_until(|e| e.ike_sas().count() == 1);
    assert_ne!(ike_spis(&ours), old);
    assert_eq!(ours.engine.child_sas().count(), 1);
    assert_eq!(ours.engine.stats().initial_contacts, 1);
    check_charon(&c, &ours, true);
}

/// Runs our engine until charon has one CHILD_SA installed and nothing going on (it
/// may start exchanges of its own: a MOBIKE address list update when an address comes).
fn settle(c: &Charon, ours: &mut Ours) {
    let mut last = Instant::now();
    ours.run_until(|_| {
        if last.elapsed() < Duration::from_millis(300) {
            return false;
        }
        last = Instant::now();
        let s = c.swanctl(&["--list-sas"]);
        s.matches("INSTALLED").count() == 1 && !s.contains("queued:") && !s.contains("active:")
    });
}

/// charon's new address after it moves.
const CHARON_MOVED: &str = "192.0.2.3";

#[test]
fn charon_moves_to_another_address_with_mobike_and_we_follow_with_the_ike_sa_and_child_sa() {
    let l = link("v2mo");
    let dev = format!("v{}b", "v2mo");
    let sh = |cmd: &str| {
        let st = Command::new("ip")
            .args(["netns", "exec", &l.b, "sh", "-c", cmd])
            .status()
            .unwrap();
        assert!(st.success(), "{cmd}");
    };
    let xfrm = kernel_has_esp();
    let kernel = if xfrm {
        OurKernel::Xfrm(xfrm_in(&l.a), Kernel::new(true, Dialect::Xfrm))
    } else {
        eprintln!("this kernel has no ESP: our kernel is the fake");
        OurKernel::Fake {
            next_spi: 0xc000_0000,
            larval: BTreeSet::new(),
            installed: BTreeSet::new(),
        }
    };
    let c = charon_from(
        "v2-charon-mobike",
        &l.b,
        "aes256gcm16-prfsha256-ecp256",
        "aes256gcm16",
        "%any",
    );
    let mut ours = Ours::with_kernel(&l.a, GCM_ECP256, ESP_GCM, Some(kernel));
    charon_initiates(&c, &mut ours);
    check_charon(&c, &ours, true);
    check_kernel(&l.a, &ours);
    assert!(
        c.log().contains("MOBIKE_SUPPORTED") || c.log().contains("N(MOBIKE_SUP)"),
        "charon saw our MOBIKE_SUPPORTED:\n{}",
        c.log()
    );
    let spis = ike_spis(&ours);
    let child = ours.engine.child_sas().next().unwrap().clone();
    assert_eq!(child.remote.ip().to_string(), CHARON_ADDR);
    // charon's address changes: a new one comes, the old one goes (the new one takes
    // over the prefix route). charon notices and sends UPDATE_SA_ADDRESSES from there.
    sh(&format!(
        "sysctl -qw net.ipv4.conf.{dev}.promote_secondaries=1"
    ));
    sh(&format!("ip addr add {CHARON_MOVED}/24 dev {dev}"));
    sh(&format!("ip addr del {CHARON_ADDR}/24 dev {dev}"));
    let moved: std::net::IpAddr = CHARON_MOVED.parse().unwrap();
    ours.run_until(|e| e.stats().peer_moves >= 1 && e.child_sas().all(|c| c.remote.ip() == moved));
    let (_, info) = ours.engine.ike_sas().next().unwrap();
    assert_eq!(info.remote, SocketAddr::new(moved, 4500));
    assert_eq!(ike_spis(&ours), spis, "the same IKE SA");
    let now = ours.engine.child_sas().next().unwrap().clone();
    assert_eq!((now.spi_in, now.spi_out), (child.spi_in, child.spi_out));
    assert_eq!(now.encap, Some((4500, 4500)), "charon still fakes a NAT");
    // Our kernel: the same SAs and flows, between the new addresses.
    check_kernel(&l.a, &ours);
    if xfrm {
        let states = ip_xfrm(&l.a, "state");
        assert!(
            states.contains(&format!("src {US} dst {CHARON_MOVED}")),
            "{states}"
        );
        assert!(
            states.contains(&format!("src {CHARON_MOVED} dst {US}")),
            "{states}"
        );
        assert!(!states.contains(CHARON_ADDR), "{states}");
        let policies = ip_xfrm(&l.a, "policy");
        assert!(policies.contains(CHARON_MOVED), "{policies}");
        assert!(!policies.contains(CHARON_ADDR), "{policies}");
    }
    // Our answer had our NAT_DETECTION_* for the new addresses and its COOKIE2 back,
    // which charon checks.
    let log = c.wait_log("[ N(NATD_S_IP) N(NATD_D_IP) N(COOKIE2) ]");
    assert!(log.contains("N(UPD_SA_ADDR)"), "{log}");
    // charon (kernel-libipsec cannot move its SAs) rekeys its CHILD_SA at the new
    // address; we answer there.
    settle(&c, &mut ours);
    let sas = charon_sas(&c, |s| s.contains(CHARON_MOVED));
    assert!(
        sas.contains(&format!("{CHARON_MOVED}[4500]")),
        "{sas}\n{}",
        c.log()
    );
    assert_eq!(ike_spis(&ours), spis, "the same IKE SA");
    check_charon(&c, &ours, true);
    check_kernel(&l.a, &ours);
    // The IKE SA works there: we rekey the CHILD_SA at charon.
    let child = ours.engine.child_sas().next().unwrap().clone();
    let t = ours.now();
    assert_eq!(ours.engine.rekey_child(t, ChildRef::Peer("charon")), 1);
    let deleted = ours.engine.stats().child_sas_deleted;
    ours.run_until(|e| {
        e.child_sas().count() == 1
            && e.child_sas().all(|n| n.spi_in != child.spi_in)
            && e.stats().child_sas_deleted > deleted
    });
    settle(&c, &mut ours);
    check_rekeyed_child(&c, &ours, child.spi_in, child.spi_out);
    check_kernel(&l.a, &ours);
    assert_eq!(ours.engine.stats().failed, 0);
}
