//! `ikectl monitor`: control connections that stay open and get a block of text per
//! event, in the layout OpenBSD's ikectl prints for each imsg it receives in monitor mode
//! (ikectl.c `monitor()`):
//!
//! ```text
//! reload: imsg type 5 len 16 peerid 0 pid 0
//!     timestamp: 1764750372, Thu Dec  3 08:26:12 2026
//!     command: reload
//! ```
//!
//! (the second and third lines start with a tab). The third line is ours (iked's imsgs carry binary data that ikectl does not print).
//! iked forwards to its monitors every imsg another control client sends (control.c
//! `control_imsg_forward`); we do the same, under iked's imsg types and ikectl's names:
//! `verbose` (3), `notify` (4, another monitor; ikectl prints `<unknown>`), `reload` (5,
//! also `load`, whose data is the path), `reset` (6), `couple` (7), `decouple` (8),
//! `active` (9), `passive` (10), `reset id` (11), `show sa` (12), `show certstore` (44),
//! `show stats` (45) (ikectl names the types from 7 to 11 and 45 `<unknown>`, and stops
//! monitoring on them: ours names them). The pid is 0 (iked shows the sending ikectl's).
//!
//! What iked does not send its monitors, we add, under the imsg that comes closest:
//! - IKE SA and CHILD SA established, rekeyed and deleted: `show sa` (12, the imsg that
//!   carries SA state to ikectl), peerid the IKE SA's id as `show sa` prints it
//!   (`0x1000`...), detail `sa: ikesa established "tun" 192.0.2.1:500->192.0.2.2:500
//!   ispi 0x... rspi 0x...` or `sa: childsa established "tun" spi in 0x... out 0x...`.
//! - A configuration put in force (startup excepted: SIGHUP, `reload`, `load`): `cfg
//!   policy` (18, IMSG_CFG_POLICY, which iked's parent sends its IKEv2 process for each
//!   policy), one per policy, detail `policy "tun" active|passive`.
//!
//! The SA events come from comparing the engine's SAs after each wake-up with what they
//! were before (the engine reports no events; only while a monitor is connected). At most
//! [`MAX_MONITORS`] at once (further ones are refused); writes are non-blocking, and a
//! monitor that has more than [`MAX_PENDING`] bytes waiting is dropped, with a log line,
//! so a client that does not read never holds the daemon up.

#![forbid(unsafe_code)]

use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use crate::ike::sa::{hex, Handle};
use crate::ikev2::engine::{Engine, IkeState};

/// Monitors connected at once.
pub const MAX_MONITORS: usize = 8;
/// Bytes a monitor may have waiting (beyond what its socket holds) before it is dropped.
pub const MAX_PENDING: usize = 64 * 1024;

/// iked's imsg types (types.h `enum imsg_type`) used here.
pub mod imsg {
    pub const VERBOSE: u32 = 3;
    pub const NOTIFY: u32 = 4;
    pub const RELOAD: u32 = 5;
    pub const RESET: u32 = 6;
    pub const COUPLE: u32 = 7;
    pub const DECOUPLE: u32 = 8;
    pub const ACTIVE: u32 = 9;
    pub const PASSIVE: u32 = 10;
    pub const RESET_ID: u32 = 11;
    pub const SHOW_SA: u32 = 12;
    pub const CFG_POLICY: u32 = 18;
    pub const SHOW_CERTSTORE: u32 = 44;
    pub const SHOW_STATS: u32 = 45;
}

/// The size of an imsg header (struct imsg_hdr).
const IMSG_HEADER_SIZE: usize = 16;

/// One event for the monitors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: &'static str,
    pub ty: u32,
    /// What iked's imsg would carry, in bytes (for `len`).
    pub data_len: usize,
    pub peerid: u64,
    /// Our line after the timestamp.
    pub detail: String,
}

impl Event {
    /// The event as ikectl prints it, at `unix` seconds (local time).
    pub fn text(&self, unix: i64, utc_offset: i64) -> String {
        format!(
            "{}: imsg type {} len {} peerid {} pid 0\n\ttimestamp: {unix}, {}\n\t{}\n",
            self.name,
            self.ty,
            IMSG_HEADER_SIZE + self.data_len,
            self.peerid,
            ctime(unix + utc_offset),
            self.detail
        )
    }
}

/// ctime(3)'s `Thu Dec  3 08:26:12 2026` for seconds since the epoch (already shifted to
/// local time).
pub fn ctime(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let (y, m, d) = crate::ike::civil_date(days);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {d:2} {:02}:{:02}:{:02} {y}",
        WD[days.rem_euclid(7) as usize],
        MON[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The event a control command makes for the other monitors (iked forwards the imsg).
pub fn command_event(cmd: &super::control::Command<'_>, line: &str) -> Event {
    use super::control::Command as C;
    let (name, ty, data_len) = match *cmd {
        C::Show("certstore") => ("show certstore", imsg::SHOW_CERTSTORE, 0),
        C::Show("stats") => ("show stats", imsg::SHOW_STATS, 0),
        // `show flows` (ours) is `show sa`'s.
        C::Show(_) => ("show sa", imsg::SHOW_SA, 0),
        C::Reload => ("reload", imsg::RELOAD, 0),
        C::Load(path) => ("reload", imsg::RELOAD, path.len()),
        C::Reset("id", Some(id)) => ("reset id", imsg::RESET_ID, id.len()),
        C::Reset(..) => ("reset", imsg::RESET, 4),
        C::Active => ("active", imsg::ACTIVE, 0),
        C::Passive => ("passive", imsg::PASSIVE, 0),
        C::Couple => ("couple", imsg::COUPLE, 0),
        C::Decouple => ("decouple", imsg::DECOUPLE, 0),
        C::Log(_) => ("verbose", imsg::VERBOSE, 4),
        C::Monitor => ("notify", imsg::NOTIFY, 0),
    };
    Event {
        name,
        ty,
        data_len,
        peerid: 0,
        detail: format!(
            "command: {}",
            line.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
    }
}

/// What the engine held at the last look: IKE SAs (handle, SPIi, SPIr, established,
/// peer) and CHILD SAs (SPI in, SPI out, IKE SA, peer).
/// An IKE SA at a look: handle, SPIi, SPIr, established, peer.
type IkeLook = (Handle, [u8; 8], [u8; 8], bool, String);

#[derive(Default)]
struct Snapshot {
    ike: Vec<IkeLook>,
    child: Vec<(u32, u32, Handle, String)>,
}

impl Snapshot {
    fn take(&mut self, e: &Engine) {
        self.ike.clear();
        self.child.clear();
        for (h, sa) in e.ike_sas() {
            let up = sa.state == IkeState::Established;
            self.ike.push((h, sa.spi_i, sa.spi_r, up, sa.peer.clone()));
        }
        for c in e.child_sas() {
            self.child
                .push((c.spi_in, c.spi_out, c.ike, c.peer.clone()));
        }
    }
}

/// `show sa`'s id of an IKE SA.
fn sa_id(h: Handle) -> u64 {
    0x1000 + u64::from(h.idx)
}

/// An SA event (a `show sa` imsg) of the IKE SA `h`.
fn sa_event(h: Handle, detail: String) -> Event {
    Event {
        name: "show sa",
        ty: imsg::SHOW_SA,
        data_len: 0,
        peerid: sa_id(h),
        detail,
    }
}

struct Conn {
    s: UnixStream,
    pending: Vec<u8>,
    id: u64,
}

/// The connected monitors.
#[derive(Default)]
pub struct Monitors {
    conns: Vec<Conn>,
    before: Snapshot,
    now: Snapshot,
    next_id: u64,
}

impl Monitors {
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Takes a client that asked to monitor (its `ok` already queued by the caller in
    /// `first`), or refuses it when [`MAX_MONITORS`] are connected.
    pub fn add(&mut self, mut s: UnixStream, first: &[u8], engine: &Engine) -> Result<(), String> {
        if self.conns.len() >= MAX_MONITORS {
            let e = format!("monitor: too many monitors ({MAX_MONITORS} connected)");
            let _ = s.write_all(format!("error: {e}\n").as_bytes());
            return Err(e);
        }
        s.set_nonblocking(true)
            .map_err(|e| format!("monitor: {e}"))?;
        if self.conns.is_empty() {
            self.before.take(engine);
        }
        self.next_id += 1;
        crate::log_info!("control: monitor {} connected", self.next_id);
        self.conns.push(Conn {
            s,
            pending: first.to_vec(),
            id: self.next_id,
        });
        self.flush();
        Ok(())
    }

    /// The descriptors to poll, each with whether it has something to write.
    pub fn poll_fds(&self) -> impl Iterator<Item = (RawFd, bool)> + '_ {
        self.conns
            .iter()
            .map(|c| (c.s.as_raw_fd(), !c.pending.is_empty()))
    }

    /// After poll: `revents` of the descriptors [`Monitors::poll_fds`] gave, in order.
    /// A hung-up client goes; the others get what is waiting.
    pub fn polled(&mut self, revents: &[i16]) {
        let mut k = 0;
        self.conns.retain(|c| {
            let r = revents.get(k).copied().unwrap_or(0);
            k += 1;
            let gone = r & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0;
            if gone {
                crate::log_info!("control: monitor {} disconnected", c.id);
            }
            !gone
        });
        self.flush();
    }

    /// Queues `ev` for every monitor (and writes what the sockets take).
    pub fn emit(&mut self, ev: &Event) {
        if self.conns.is_empty() {
            return;
        }
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let text = ev.text(unix, crate::sys::utc_offset(unix));
        self.conns.retain_mut(|c| {
            if c.pending.len() + text.len() > MAX_PENDING {
                crate::log_warn!(
                    "control: monitor {} does not read its events, dropped",
                    c.id
                );
                return false;
            }
            c.pending.extend_from_slice(text.as_bytes());
            true
        });
        self.flush();
    }

    /// Writes what is waiting, without blocking; a client whose socket fails goes.
    pub fn flush(&mut self) {
        self.conns.retain_mut(|c| {
            while !c.pending.is_empty() {
                match c.s.write(&c.pending) {
                    Ok(0) => return false,
                    Ok(n) => {
                        c.pending.drain(..n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        crate::log_info!("control: monitor {} disconnected", c.id);
                        return false;
                    }
                }
            }
            true
        });
    }

    /// Compares the engine's SAs with the last look and tells the monitors what changed.
    pub fn observe(&mut self, engine: &Engine) {
        if self.conns.is_empty() {
            return;
        }
        self.now.take(engine);
        let mut events = Vec::new();
        for (h, spi_i, spi_r, up, peer) in &self.now.ike {
            let was_up = self
                .before
                .ike
                .iter()
                .any(|(bh, _, _, bup, _)| bh == h && *bup);
            if !*up || was_up {
                continue;
            }
            // Another SA of the policy up before: this one replaces it.
            let rekey = self
                .before
                .ike
                .iter()
                .any(|(bh, _, _, bup, bp)| bh != h && *bup && bp == peer);
            let Some((_, sa)) = engine.ike_sas().find(|(x, _)| x == h) else {
                continue;
            };
            events.push(sa_event(
                *h,
                format!(
                    "sa: ikesa {} \"{peer}\" {}->{} ispi 0x{} rspi 0x{}",
                    if rekey { "rekeyed" } else { "established" },
                    sa.local,
                    sa.remote,
                    hex(spi_i),
                    hex(spi_r)
                ),
            ));
        }
        for (h, spi_i, spi_r, up, peer) in &self.before.ike {
            if *up && !self.now.ike.iter().any(|(nh, ..)| nh == h) {
                events.push(sa_event(
                    *h,
                    format!(
                        "sa: ikesa deleted \"{peer}\" ispi 0x{} rspi 0x{}",
                        hex(spi_i),
                        hex(spi_r)
                    ),
                ));
            }
        }
        for (spi_in, spi_out, h, peer) in &self.now.child {
            if self
                .before
                .child
                .iter()
                .any(|(i, o, ..)| i == spi_in && o == spi_out)
            {
                continue;
            }
            let rekey = engine
                .child_sas()
                .any(|c| c.spi_in == *spi_in && c.replaces.is_some())
                || engine
                    .child_sas()
                    .any(|c| c.rekeyed && &c.peer == peer && c.spi_in != *spi_in);
            events.push(sa_event(
                *h,
                format!(
                    "sa: childsa {} \"{peer}\" spi in 0x{spi_in:08x} out 0x{spi_out:08x}",
                    if rekey { "rekeyed" } else { "established" }
                ),
            ));
        }
        for (spi_in, spi_out, h, peer) in &self.before.child {
            if !self
                .now
                .child
                .iter()
                .any(|(i, o, ..)| i == spi_in && o == spi_out)
            {
                events.push(sa_event(
                    *h,
                    format!(
                        "sa: childsa deleted \"{peer}\" spi in 0x{spi_in:08x} out 0x{spi_out:08x}"
                    ),
                ));
            }
        }
        std::mem::swap(&mut self.before, &mut self.now);
        for ev in &events {
            self.emit(ev);
        }
    }

    /// A configuration put in force: one `cfg policy` per policy.
    pub fn policies(&mut self, setup: &super::runtime::Setup) {
        if self.conns.is_empty() {
            return;
        }
        for p in &setup.policy.peers {
            let active = setup.active.contains(&p.name);
            self.emit(&Event {
                name: "cfg policy",
                ty: imsg::CFG_POLICY,
                data_len: 0,
                peerid: 0,
                detail: format!(
                    "policy \"{}\" {}",
                    p.name,
                    if active { "active" } else { "passive" }
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn ctime_as_libc_prints_it() {
        assert_eq!(ctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(ctime(1_764_750_372), "Wed Dec  3 08:26:12 2025");
        assert_eq!(ctime(951_782_400), "Tue Feb 29 00:00:00 2000");
    }

    #[test]
    fn event_layout_is_ikectls() {
        let line = "reload";
        let ev = command_event(&super::super::control::Command::Reload, line);
        assert_eq!(
            ev.text(0, 0),
            "reload: imsg type 5 len 16 peerid 0 pid 0\n\
             \ttimestamp: 0, Thu Jan  1 00:00:00 1970\n\tcommand: reload\n"
        );
        let ev = command_event(
            &super::super::control::Command::Load("/x.conf"),
            "load /x.conf",
        );
        assert!(ev.text(0, 0).starts_with("reload: imsg type 5 len 23 "));
    }

    fn engine() -> Engine {
        Engine::new(
            Default::default(),
            Default::default(),
            crate::timer::Time(0),
            crate::ike::crypto::random_source(Some(1)),
        )
    }

    #[test]
    fn bounded_and_a_stalled_monitor_is_dropped() {
        let e = engine();
        let mut m = Monitors::default();
        let mut peers = Vec::new();
        for _ in 0..MAX_MONITORS {
            let (a, b) = UnixStream::pair().unwrap();
            m.add(a, b"ok\n", &e).unwrap();
            peers.push(b);
        }
        let (a, _b) = UnixStream::pair().unwrap();
        let err = m.add(a, b"ok\n", &e).unwrap_err();
        assert!(err.contains("too many monitors"), "{err}");
        // All but the first read; the first never does and is dropped once its socket
        // and MAX_PENDING are full, without the others losing anything.
        let ev = command_event(&super::super::control::Command::Show("sa"), "show sa");
        let mut got = vec![Vec::new(); MAX_MONITORS];
        let mut sent = 0;
        while m.len() == MAX_MONITORS {
            m.emit(&ev);
            sent += 1;
            assert!(sent < 100_000, "the stalled monitor was never dropped");
            for (k, p) in peers.iter_mut().enumerate().skip(1) {
                p.set_nonblocking(true).unwrap();
                let mut buf = [0u8; 65536];
                while let Ok(n) = p.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got[k].extend_from_slice(&buf[..n]);
                }
            }
        }
        assert_eq!(m.len(), MAX_MONITORS - 1);
        let text = String::from_utf8(got[1].clone()).unwrap();
        assert!(
            text.starts_with("ok\nshow sa: imsg type 12 len 16 "),
            "{text:.200}"
        );
        assert_eq!(text.matches("\tcommand: show sa\n").count(), sent);
        // A closed client goes at the next poll.
        drop(peers.pop());
        let mut revents = vec![0i16; m.len()];
        revents[MAX_MONITORS - 2] = libc::POLLHUP;
        m.polled(&revents);
        assert_eq!(m.len(), MAX_MONITORS - 2);
    }
}
