//! Privilege separation (isakmpd's monitor.c).
//!
//! At startup the daemon forks. The privileged parent keeps root, and does on the child's
//! behalf the few things that need it: opening the configuration file (after checking that
//! no group or other user can read it), opening key material read-only (regular files
//! under the personality's root only: /etc/isakmpd, or /etc/iked for iked), opening the
//! report, result and capture files under /var/run, and binding UDP ports (500, 4500 or
//! above 1024 only). Descriptors travel back over a SOCK_SEQPACKET socketpair with
//! SCM_RIGHTS. The child chroots to /var/empty, drops to the `_isakmpd` user and never
//! opens a path itself.
//!
//! For the kernel the parent opens one socket (XFRM netlink joined to the ACQUIRE and
//! EXPIRE groups, or PF_KEY registered for ESP and AH) and relays between it and a second
//! socketpair: the child's requests go in, after a check of their type, and everything the
//! kernel sends comes back, so that the child waits for nothing.
//!
//! The parent also owns the pid file and the FIFO path: it forwards SIGHUP, SIGUSR1,
//! SIGTERM and SIGINT to the child, and when the child exits it removes both and exits with
//! the child's status.
//!
//! Messages are tiny: a request byte with fixed fields, and a reply of one status byte, a
//! text (the error, or empty) and at most one descriptor.

#![forbid(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::args::{is_run_path, RESULT_FILE};
use crate::sys;

/// The unprivileged user and its jail.
pub const PRIVSEP_USER: &str = "_isakmpd";
pub const PRIVSEP_DIR: &str = "/var/empty";

const REQ_BIND: u8 = 1;
const REQ_OPEN_CONFIG: u8 = 2;
const REQ_OPEN_WRITE: u8 = 3;
const REQ_SHUTDOWN: u8 = 4;
const REQ_LIST_PKI: u8 = 5;
const REQ_OPEN_PKI: u8 = 6;
const REQ_OPEN_INCLUDE: u8 = 7;
const REQ_LIST_PKI_DIRS: u8 = 8;
const REQ_KERNEL: u8 = 10;

/// Messages the relay holds for a child that is not reading, at most.
const RELAY_QUEUE: usize = 1024;

/// isakmpd's ISAKMPD_ROOT: the only tree isakmpd's child may read key material from.
pub const ISAKMPD_PKI_ROOT: &str = "/etc/isakmpd/";
/// iked(8)'s: private/local.key, certs/, ca/, crls/ and pubkeys/ are under it.
pub const IKED_PKI_ROOT: &str = "/etc/iked/";

/// Which file the child wants written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Report = 1,
    Result = 2,
    Capture = 3,
}

/// Only the standard ports and unprivileged ones may be bound (isakmpd(8) CAVEATS).
pub fn port_allowed(port: u16) -> bool {
    port == 500 || port == 4500 || port > 1024
}

/// isakmpd's `check_file_secrecy`: owned by root or by us, no access for group or others.
pub fn check_secrecy(path: &str, uid: u32, mode: u32, my_uid: u32) -> Result<(), String> {
    if uid != 0 && uid != my_uid {
        return Err(format!(
            "{path}: not owned by uid 0 or uid {my_uid} (owner is uid {uid})"
        ));
    }
    if mode & 0o077 != 0 {
        return Err(format!(
            "{path}: bad permissions {:04o}: the file must not be accessible by group or others (chmod 600)",
            mode & 0o7777
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Descriptor passing.

fn send_msg(sock: RawFd, data: &[u8], fd: Option<RawFd>) -> io::Result<()> {
    loop {
        match sys::sendmsg_fd(sock, data, fd, libc::MSG_NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Receives one message; returns its length (0 = peer closed) and a passed descriptor.
fn recv_msg(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    loop {
        match sys::recvmsg_fd(sock, buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Child side.

/// The child's handle on the monitor.
pub struct Client {
    sock: OwnedFd,
}

impl Client {
    pub fn new(sock: OwnedFd) -> Client {
        Client { sock }
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    fn call(&self, req: &[u8]) -> Result<Option<OwnedFd>, String> {
        send_msg(self.fd(), req, None).map_err(|e| format!("monitor: {e}"))?;
        let mut buf = [0u8; 1024];
        let (n, fd) = recv_msg(self.fd(), &mut buf).map_err(|e| format!("monitor: {e}"))?;
        if n == 0 {
            return Err("monitor: privileged process is gone".into());
        }
        let text = String::from_utf8_lossy(&buf[1..n]).into_owned();
        if buf[0] == 0 {
            Ok(fd)
        } else {
            Err(text)
        }
    }

    /// A bound, non-blocking UDP socket.
    pub fn bind(&self, addr: SocketAddr) -> Result<OwnedFd, String> {
        let mut req = vec![REQ_BIND];
        match addr.ip() {
            IpAddr::V4(a) => {
                req.push(4);
                req.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                req.push(6);
                req.extend_from_slice(&a.octets());
            }
        }
        req.extend_from_slice(&addr.port().to_be_bytes());
        self.call(&req)?
            .ok_or_else(|| "monitor: no descriptor".into())
    }

    /// The configuration file, checked for secrecy, opened read-only.
    pub fn open_config(&self) -> Result<OwnedFd, String> {
        self.call(&[REQ_OPEN_CONFIG])?
            .ok_or_else(|| "monitor: no descriptor".into())
    }

    /// A file the configuration included at startup, checked for secrecy, read-only.
    pub fn open_include(&self, path: &str) -> Result<OwnedFd, String> {
        let mut req = vec![REQ_OPEN_INCLUDE];
        req.extend_from_slice(path.as_bytes());
        self.call(&req)?
            .ok_or_else(|| "monitor: no descriptor".into())
    }

    /// A file under /var/run, created or truncated, mode 0600.
    pub fn open_write(&self, kind: WriteKind, path: &str) -> Result<OwnedFd, String> {
        let mut req = vec![REQ_OPEN_WRITE, kind as u8];
        req.extend_from_slice(path.as_bytes());
        self.call(&req)?
            .ok_or_else(|| "monitor: no descriptor".into())
    }

    /// The regular files of a directory under the PKI root (names only).
    pub fn list_pki(&self, dir: &str) -> Result<Vec<String>, String> {
        self.list(REQ_LIST_PKI, dir)
    }

    /// The subdirectories of a directory under the PKI root (names only): KeyNote's
    /// Credential-directory holds one for each local ID.
    pub fn list_pki_dirs(&self, dir: &str) -> Result<Vec<String>, String> {
        self.list(REQ_LIST_PKI_DIRS, dir)
    }

    fn list(&self, kind: u8, dir: &str) -> Result<Vec<String>, String> {
        let mut req = vec![kind];
        req.extend_from_slice(dir.as_bytes());
        send_msg(self.fd(), &req, None).map_err(|e| format!("monitor: {e}"))?;
        let mut buf = [0u8; 4096];
        let (n, _) = recv_msg(self.fd(), &mut buf).map_err(|e| format!("monitor: {e}"))?;
        if n == 0 {
            return Err("monitor: privileged process is gone".into());
        }
        let text = String::from_utf8_lossy(&buf[1..n]).into_owned();
        if buf[0] != 0 {
            return Err(text);
        }
        Ok(text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// A regular file under the PKI root, opened read-only.
    pub fn open_pki(&self, path: &str) -> Result<OwnedFd, String> {
        let mut req = vec![REQ_OPEN_PKI];
        req.extend_from_slice(path.as_bytes());
        self.call(&req)?
            .ok_or_else(|| "monitor: no descriptor".into())
    }

    /// The channel to the kernel: a socket on which each message written is one kernel
    /// request (XFRM netlink if `pfkey` is false, else PF_KEY v2) that the parent relays
    /// after checking its type, and each message read is one datagram from the kernel
    /// (answers to our requests, ACQUIREs, EXPIREs). Linux checks CAP_NET_ADMIN of the
    /// task that sends an XFRM request and of whoever opens a PF_KEY socket, so the
    /// unprivileged child cannot hold either socket itself.
    pub fn kernel_channel(&self, pfkey: bool) -> Result<OwnedFd, String> {
        self.call(&[REQ_KERNEL, if pfkey { b'P' } else { b'X' }])?
            .ok_or_else(|| "monitor: no descriptor".into())
    }

    /// Tells the parent this is a clean exit.
    pub fn shutdown(&self) {
        let _ = self.call(&[REQ_SHUTDOWN]);
    }
}

// ---------------------------------------------------------------------------------------
// Parent side.

/// What the parent needs to serve requests.
pub struct Server {
    pub sock: OwnedFd,
    pub config_path: String,
    /// The files the configuration included at startup (iked.conf `include`): a reload
    /// may open these again, and no others.
    pub includes: Vec<String>,
    pub report_path: String,
    /// The only tree the child may read key material from: [`ISAKMPD_PKI_ROOT`], or
    /// [`IKED_PKI_ROOT`] when the daemon is iked; fixed at startup.
    pub pki_root: &'static str,
    /// The kernel relay, once the child asked for it.
    pub relay: std::cell::RefCell<Option<Relay>>,
}

/// The parent's side of the kernel channel: the kernel socket, our end of the channel,
/// and what the child has not yet read.
pub struct Relay {
    pub chan: OwnedFd,
    pub sock: OwnedFd,
    pub pfkey: bool,
    /// What the child could not take yet. A message goes straight through when this is
    /// empty; only a backlog is copied here.
    pub queue: std::collections::VecDeque<Vec<u8>>,
    /// Kernel messages are read into this (64 KiB, allocated with the relay).
    pub buf: Box<[u8]>,
    /// PF_KEY: SADB_REGISTER not yet sent.
    pub unregistered: bool,
}

/// Everything the server answers with: Ok(fd) or Err(reason).
pub type Answer = Result<Option<OwnedFd>, String>;

/// Why the parent will not pass an XFRM request on, if it will not: only well-formed
/// messages of the types the daemon sends.
fn check_xfrm(msg: &[u8]) -> Result<(), String> {
    use crate::kernel::xfrm::*;
    if msg.len() < 16 || msg.len() > 4096 {
        return Err("malformed XFRM request".into());
    }
    let len = u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]) as usize;
    let ty = u16::from_ne_bytes([msg[4], msg[5]]);
    if len != msg.len()
        || ![
            XFRM_MSG_NEWSA,
            XFRM_MSG_UPDSA,
            XFRM_MSG_DELSA,
            XFRM_MSG_ALLOCSPI,
            XFRM_MSG_NEWPOLICY,
            XFRM_MSG_DELPOLICY,
            XFRM_MSG_MIGRATE,
        ]
        .contains(&ty)
    {
        return Err(format!("refusing XFRM message type {ty}"));
    }
    Ok(())
}

/// The same for PF_KEY: a whole message (version, length) of an SA or flow type.
fn check_pfkey(msg: &[u8]) -> Result<(), String> {
    use crate::kernel::pfkey::*;
    #[cfg(target_os = "openbsd")]
    const FLOWS: [u8; 2] = [SADB_X_ADDFLOW, SADB_X_DELFLOW];
    #[cfg(not(target_os = "openbsd"))]
    const FLOWS: [u8; 2] = [SADB_X_SPDADD, SADB_X_SPDDELETE];
    let Some(m) = parse(msg) else {
        return Err("malformed PF_KEY request".into());
    };
    if usize::from(u16::from_ne_bytes([msg[4], msg[5]])) * 8 != msg.len()
        || !([SADB_GETSPI, SADB_UPDATE, SADB_ADD, SADB_DELETE].contains(&m.ty)
            || FLOWS.contains(&m.ty))
    {
        return Err(format!("refusing PF_KEY message type {}", m.ty));
    }
    Ok(())
}

impl Server {
    /// Opens the kernel socket and the channel for the child (once).
    fn open_relay(&self, kind: u8) -> Answer {
        let mut slot = self.relay.borrow_mut();
        if slot.is_some() {
            return Err("monitor: the kernel channel is already open".into());
        }
        let pfkey = match kind {
            b'X' => false,
            b'P' => true,
            _ => return Err("monitor: unknown kernel interface".into()),
        };
        let sock = if pfkey {
            open_pfkey()?
        } else {
            open_xfrm_groups(crate::kernel::xfrm::GROUPS_ACQUIRE_EXPIRE)?
        };
        let (ours, theirs) = socketpair().map_err(|e| format!("socketpair: {e}"))?;
        sys::set_nonblocking(sock.as_raw_fd());
        sys::set_nonblocking(ours.as_raw_fd());
        *slot = Some(Relay {
            chan: ours,
            sock,
            pfkey,
            queue: std::collections::VecDeque::new(),
            buf: vec![0; 65536].into_boxed_slice(),
            unregistered: pfkey,
        });
        drop(slot);
        self.register_relay();
        Ok(Some(theirs))
    }

    /// Registers the PF_KEY socket for ESP and AH, without which the kernel sends it no
    /// ACQUIRE. Linux probes every algorithm it knows on SADB_REGISTER (loading modules),
    /// which can take seconds on a slow machine, and serialises all PF_KEY traffic
    /// meanwhile: the daemon is not ready before this is done, so it is done first.
    fn register_relay(&self) {
        let mut slot = self.relay.borrow_mut();
        let Some(r) = slot.as_mut().filter(|r| r.unregistered) else {
            return;
        };
        r.unregistered = false;
        #[cfg(target_os = "openbsd")]
        let platform = crate::kernel::pfkey::Platform::OpenBsd;
        #[cfg(not(target_os = "openbsd"))]
        let platform = crate::kernel::pfkey::Platform::Linux;
        for (seq, proto) in [(1u32, 50u8), (2, 51)] {
            let mut m = Vec::new();
            crate::kernel::pfkey::register(&mut m, platform, seq, std::process::id(), proto);
            if let Err(e) = sys::write(r.sock.as_raw_fd(), &m) {
                crate::log_warn!("kernel: PF_KEY register: {e}");
                return;
            }
        }
        crate::log_info!("kernel: PF_KEY socket registered for ESP and AH (ACQUIREs)");
    }

    /// The descriptors the parent loop polls for the relay: (channel, wants to write),
    /// kernel socket.
    pub fn relay_fds(&self) -> Option<(RawFd, bool, RawFd)> {
        self.relay
            .borrow()
            .as_ref()
            .map(|r| (r.chan.as_raw_fd(), !r.queue.is_empty(), r.sock.as_raw_fd()))
    }

    /// Passes the child's requests to the kernel (a bounded number per call). A request
    /// of a type the daemon never sends, or one the kernel socket refuses, is answered
    /// with an error in the kernel's own format so that the child's exchange does not
    /// wait in vain.
    pub fn relay_from_child(&self) {
        let mut slot = self.relay.borrow_mut();
        let Some(r) = slot.as_mut() else {
            return;
        };
        let mut buf = [0u8; 8192];
        for _ in 0..256 {
            let n = match sys::recv(r.chan.as_raw_fd(), &mut buf, 0) {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            let msg = &buf[..n];
            let checked = if r.pfkey {
                check_pfkey(msg)
            } else {
                check_xfrm(msg)
            };
            let errno = match checked {
                Ok(()) => match sys::write(r.sock.as_raw_fd(), msg) {
                    Ok(_) => 0,
                    Err(e) => e.raw_os_error().unwrap_or(libc::EIO),
                },
                Err(e) => {
                    crate::log_warn!("monitor: {e}");
                    libc::EPERM
                }
            };
            if errno != 0 {
                let reply = if r.pfkey {
                    crate::kernel::pfkey::error_reply(msg, errno as u8)
                } else {
                    crate::kernel::xfrm::error_reply(msg, errno)
                };
                if r.queue.len() < RELAY_QUEUE {
                    r.queue.push_back(reply);
                }
            }
        }
        Self::flush_relay(r);
    }

    /// Passes what the kernel says to the child (a bounded number per call), without
    /// allocating unless the child falls behind.
    pub fn relay_from_kernel(&self) {
        let mut slot = self.relay.borrow_mut();
        let Some(r) = slot.as_mut() else {
            return;
        };
        for _ in 0..256 {
            let n = match sys::read(r.sock.as_raw_fd(), &mut r.buf) {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            // In order: straight to the child only when nothing is waiting before it.
            if r.queue.is_empty() {
                match sys::send(r.chan.as_raw_fd(), &r.buf[..n], 0) {
                    Ok(_) => continue,
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock => continue,
                    Err(_) => {}
                }
            }
            if r.queue.len() < RELAY_QUEUE {
                r.queue.push_back(r.buf[..n].to_vec());
            } else {
                crate::log_warn!("monitor: child not reading; kernel message dropped");
            }
        }
        Self::flush_relay(r);
    }

    /// Writes queued kernel messages to the child while it takes them.
    pub fn flush_pending(&self) {
        if let Some(r) = self.relay.borrow_mut().as_mut() {
            Self::flush_relay(r);
        }
    }

    fn flush_relay(r: &mut Relay) {
        while let Some(m) = r.queue.front() {
            if let Err(e) = sys::send(r.chan.as_raw_fd(), m, 0) {
                if e.kind() != io::ErrorKind::WouldBlock {
                    r.queue.clear();
                }
                return;
            }
            r.queue.pop_front();
        }
    }

    /// Reads one request and answers it. Returns false when the child closed its end.
    pub fn serve_one(&self) -> io::Result<bool> {
        let mut buf = [0u8; 4200];
        let (n, stray) = recv_msg(self.sock.as_raw_fd(), &mut buf)?;
        drop(stray); // the child never sends descriptors
        if n == 0 {
            return Ok(false);
        }
        if buf[0] == REQ_LIST_PKI || buf[0] == REQ_LIST_PKI_DIRS {
            // Answered with text, not a descriptor.
            let dirs = buf[0] == REQ_LIST_PKI_DIRS;
            let (status, text) = match list_pki(self.pki_root, &buf[1..n], dirs) {
                Ok(names) => (0u8, names.join("\n")),
                Err(e) => (1u8, e),
            };
            let mut reply = vec![status];
            reply.extend_from_slice(&text.as_bytes()[..text.len().min(4000)]);
            send_msg(self.sock.as_raw_fd(), &reply, None)?;
            return Ok(true);
        }
        let answer = self.answer(&buf[..n]);
        let (status, text, fd) = match &answer {
            Ok(fd) => (0u8, String::new(), fd.as_ref().map(|f| f.as_raw_fd())),
            Err(e) => (1u8, e.clone(), None),
        };
        let mut reply = vec![status];
        reply.extend_from_slice(&text.as_bytes()[..text.len().min(1000)]);
        send_msg(self.sock.as_raw_fd(), &reply, fd)?;
        Ok(true)
    }

    fn answer(&self, req: &[u8]) -> Answer {
        match req.first() {
            Some(&REQ_BIND) => {
                let addr = decode_bind(&req[1..]).ok_or("monitor: malformed bind request")?;
                bind_udp(addr).map(Some)
            }
            Some(&REQ_OPEN_CONFIG) => open_config(&self.config_path).map(Some),
            Some(&REQ_OPEN_INCLUDE) => {
                let path =
                    std::str::from_utf8(&req[1..]).map_err(|_| "monitor: path is not UTF-8")?;
                if !self.includes.iter().any(|p| p == path) {
                    return Err(format!(
                        "{path}: not included at startup; restart the daemon to read it"
                    ));
                }
                open_config(path).map(Some)
            }
            Some(&REQ_OPEN_WRITE) if req.len() >= 2 => {
                let path =
                    std::str::from_utf8(&req[2..]).map_err(|_| "monitor: path is not UTF-8")?;
                let allowed = match req[1] {
                    1 => path == self.report_path,
                    2 => path == RESULT_FILE,
                    3 => is_run_path(path),
                    _ => false,
                };
                if !allowed {
                    return Err(format!("monitor: refusing to open '{path}' for writing"));
                }
                open_run_file(path).map(Some)
            }
            Some(&REQ_SHUTDOWN) => Ok(None),
            Some(&REQ_KERNEL) if req.len() == 2 => self.open_relay(req[1]),
            Some(&REQ_OPEN_PKI) => open_pki(self.pki_root, &req[1..]).map(Some),
            _ => Err("monitor: unknown request".into()),
        }
    }
}

/// A bound NETLINK_XFRM socket. Netlink checks CAP_NET_ADMIN against the credentials of
/// whoever opened the socket, so the unprivileged child can use this one.
pub fn open_xfrm() -> Result<OwnedFd, String> {
    open_xfrm_groups(0)
}

/// A PF_KEY v2 socket (needs CAP_NET_ADMIN on Linux, root on OpenBSD).
pub fn open_pfkey() -> Result<OwnedFd, String> {
    sys::socket(
        libc::PF_KEY,
        libc::SOCK_RAW | libc::SOCK_CLOEXEC,
        i32::from(crate::kernel::pfkey::PF_KEY_V2),
    )
    .map_err(|e| format!("PF_KEY socket: {e}"))
}

/// A NETLINK_XFRM socket bound to the multicast `groups`.
pub fn open_xfrm_groups(groups: u32) -> Result<OwnedFd, String> {
    let fd = sys::socket(
        libc::AF_NETLINK,
        libc::SOCK_RAW | libc::SOCK_CLOEXEC,
        crate::kernel::xfrm::NETLINK_XFRM,
    )
    .map_err(|e| format!("XFRM netlink socket: {e}"))?;
    sys::bind_netlink(fd.as_raw_fd(), groups).map_err(|e| format!("XFRM netlink bind: {e}"))?;
    Ok(fd)
}

/// A path the child may read: it must resolve (symlinks and `..` followed) to something
/// under `root` (isakmpd monitor.c `m_priv_check_path`).
fn pki_path(root: &str, raw: &[u8]) -> Result<std::path::PathBuf, String> {
    let p = std::str::from_utf8(raw).map_err(|_| "monitor: path is not UTF-8")?;
    let real = std::fs::canonicalize(p).map_err(|e| format!("{p}: {e}"))?;
    let real_root = std::fs::canonicalize(root).map_err(|e| format!("{root}: {e}"))?;
    if !real.starts_with(&real_root) {
        return Err(format!("monitor: refusing to read '{p}': not under {root}"));
    }
    Ok(real)
}

/// A regular file under `root`, opened read-only.
fn open_pki(root: &str, raw: &[u8]) -> Result<OwnedFd, String> {
    let path = pki_path(root, raw)?;
    if !path.is_file() {
        return Err(format!("monitor: {} is not a regular file", path.display()));
    }
    std::fs::File::open(&path)
        .map(OwnedFd::from)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The regular files (or, with `dirs`, the directories) of a directory under `root`.
fn list_pki(root: &str, raw: &[u8], dirs: bool) -> Result<Vec<String>, String> {
    let dir = pki_path(root, raw)?;
    let mut names = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let e = e.map_err(|e| e.to_string())?;
        let p = e.path();
        if (dirs && p.is_dir()) || (!dirs && p.is_file()) {
            if let Some(n) = e.file_name().to_str() {
                names.push(n.to_string());
            }
        }
    }
    // The names of one directory differ: an unstable sort orders them as a stable one
    // would, with less code.
    names.sort_unstable();
    Ok(names)
}

fn decode_bind(b: &[u8]) -> Option<SocketAddr> {
    match b.first()? {
        4 if b.len() == 1 + 4 + 2 => {
            let a = Ipv4Addr::new(b[1], b[2], b[3], b[4]);
            Some(SocketAddr::new(a.into(), u16::from_be_bytes([b[5], b[6]])))
        }
        6 if b.len() == 1 + 16 + 2 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[1..17]);
            Some(SocketAddr::new(
                Ipv6Addr::from(o).into(),
                u16::from_be_bytes([b[17], b[18]]),
            ))
        }
        _ => None,
    }
}

/// Lets IKE through whatever IPsec policies cover our own addresses (a transport-mode
/// flow between two gateways covers their IKE traffic too): a bypass policy on the
/// socket, both ways. Without it only a warning: IKE still works where no flow covers it.
fn bypass_ipsec(fd: RawFd, addr: SocketAddr) {
    #[cfg(target_os = "linux")]
    {
        const IP_XFRM_POLICY: libc::c_int = 17;
        const IPV6_XFRM_POLICY: libc::c_int = 35;
        let (level, name, family) = if addr.is_ipv4() {
            (libc::IPPROTO_IP, IP_XFRM_POLICY, libc::AF_INET)
        } else {
            (libc::IPPROTO_IPV6, IPV6_XFRM_POLICY, libc::AF_INET6)
        };
        for dir in [
            crate::kernel::xfrm::XFRM_POLICY_IN,
            crate::kernel::xfrm::XFRM_POLICY_OUT,
        ] {
            let p = crate::kernel::xfrm::socket_bypass(family as u16, dir);
            if let Err(e) = sys::setsockopt_bytes(fd, level, name, &p) {
                crate::log_warn!("{addr}: no IPsec bypass for IKE: {e}");
                return;
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (fd, addr);
}

/// The IKE sockets' receive buffer.
const RCVBUF_BYTES: i32 = 4 << 20;

/// Creates and binds a UDP socket, after the port check.
pub fn bind_udp(addr: SocketAddr) -> Result<OwnedFd, String> {
    if !port_allowed(addr.port()) {
        return Err(format!(
            "monitor: refusing to bind {addr}: only port 500, 4500 or ports above 1024 are allowed"
        ));
    }
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let owned = sys::socket(domain, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
        .map_err(|e| format!("socket: {e}"))?;
    let fd = owned.as_raw_fd();
    sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
        .map_err(|e| format!("SO_REUSEADDR: {e}"))?;
    if addr.is_ipv6() {
        sys::setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)
            .map_err(|e| format!("IPV6_V6ONLY: {e}"))?;
    }
    // A burst (thousands of peers' DELETEs at a shutdown, a rekey wave) must not
    // overflow the receive queue while the engine works: 4 MB of kernel memory at most,
    // used only while datagrams wait. Root may exceed net.core.rmem_max.
    let rcvbuf = RCVBUF_BYTES;
    if sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcvbuf).is_err() {
        let _ = sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, rcvbuf);
    }
    sys::bind_inet(fd, addr).map_err(|e| format!("bind {addr}: {e}"))?;
    bypass_ipsec(fd, addr);
    Ok(owned)
}

fn cstr(path: &str) -> Result<CString, String> {
    CString::new(path).map_err(|_| format!("{path}: path contains NUL"))
}

/// Opens the configuration file read-only and checks its owner and mode.
pub fn open_config(path: &str) -> Result<OwnedFd, String> {
    let c = cstr(path)?;
    let owned = sys::open(&c, libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY, 0)
        .map_err(|e| format!("{path}: {e}"))?;
    let st = sys::fstat(owned.as_raw_fd()).map_err(|e| format!("{path}: {e}"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(format!("{path}: not a regular file"));
    }
    check_secrecy(path, st.st_uid, st.st_mode, sys::getuid())?;
    Ok(owned)
}

/// Creates or truncates a file under /var/run, mode 0600, refusing symlinks and any path
/// whose real directory is not /var/run's.
pub fn open_run_file(path: &str) -> Result<OwnedFd, String> {
    if !is_run_path(path) {
        return Err(format!(
            "{path}: only paths beginning with /var/run/ are allowed"
        ));
    }
    let dir = std::path::Path::new(path).parent().ok_or("no directory")?;
    let real_dir = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let real_run = std::fs::canonicalize("/var/run").map_err(|e| format!("/var/run: {e}"))?;
    if !real_dir.starts_with(&real_run) {
        return Err(format!("{path}: resolves outside /var/run"));
    }
    let c = cstr(path)?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let owned = sys::open(&c, flags, 0o600).map_err(|e| format!("{path}: {e}"))?;
    // An existing file keeps its old mode through O_CREAT; make sure it is private.
    let _ = sys::fchmod(owned.as_raw_fd(), 0o600);
    Ok(owned)
}

/// The privsep user's ids, looked up before the fork.
#[derive(Debug, Clone, Copy)]
pub struct PrivsepUser {
    pub uid: u32,
    pub gid: u32,
}

/// The password file that [`lookup_user`] reads.
pub const PASSWD_FILE: &str = "/etc/passwd";

/// Looks the privsep user up in /etc/passwd itself, not through getpwnam(3): in a static
/// glibc build, getpwnam wants the shared NSS modules at run time, and firmware (busybox)
/// keeps its users in /etc/passwd anyway. A system user made by `useradd -r` is there too.
pub fn lookup_user(name: &str) -> Result<PrivsepUser, String> {
    let text = std::fs::read(PASSWD_FILE)
        .map_err(|e| format!("privilege separation: {PASSWD_FILE}: {e}"))?;
    let Some((uid, gid)) = passwd_ids(&text, name) else {
        return Err(format!(
            "privilege separation: user '{name}' does not exist (create it, e.g. useradd -r -d {PRIVSEP_DIR} -s /usr/sbin/nologin {name})"
        ));
    };
    if uid == 0 {
        return Err(format!(
            "privilege separation: user '{name}' must not be root"
        ));
    }
    Ok(PrivsepUser { uid, gid })
}

/// The uid and gid of `name` in passwd(5) text: the first well-formed entry for it
/// (`name:password:uid:gid:gecos:home:shell`). NIS markers (`+`/`-` lines), comments and
/// malformed lines are skipped, as glibc's files backend skips them.
pub fn passwd_ids(text: &[u8], name: &str) -> Option<(u32, u32)> {
    if name.is_empty() {
        return None;
    }
    let num = |f: &[u8]| -> Option<u32> {
        if f.is_empty() || !f.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(f).ok()?.parse().ok()
    };
    text.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut f = line.split(|&b| b == b':');
        if f.next()? != name.as_bytes() {
            return None;
        }
        let _password = f.next()?;
        Some((num(f.next()?)?, num(f.next()?)?))
    })
}

pub fn check_jail(dir: &str) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("privilege separation: {dir} is not a directory")),
        Err(e) => Err(format!(
            "privilege separation: {dir}: {e} (create it: mkdir -p {dir})"
        )),
    }
}

/// In the child: chroot to the jail and become the unprivileged user, for good.
pub fn drop_privileges(user: PrivsepUser, dir: &str) -> Result<(), String> {
    let c = cstr(dir)?;
    sys::chroot(&c).map_err(|e| format!("chroot {dir}: {e}"))?;
    sys::chdir(c"/").map_err(|e| format!("chdir /: {e}"))?;
    sys::setgroups(&[user.gid]).map_err(|e| format!("setgroups: {e}"))?;
    sys::setresgid(user.gid).map_err(|e| format!("setresgid: {e}"))?;
    sys::setresuid(user.uid).map_err(|e| format!("setresuid: {e}"))?;
    if sys::setuid(0).is_ok() {
        return Err("privilege separation: could regain root after dropping it".into());
    }
    Ok(())
}

/// A connected pair: (parent end, child end).
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    sys::socketpair(libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_entries() {
        let text = b"root:x:0:0:root:/root:/bin/bash\n\
# a comment:x:1:1::/:\n\
+_isakmpd::::::\n\
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
broken:x:12a:5::/:\n\
broken:x:77:78::/:/bin/false\n\
_isakmpd:x:998:997:isakmpd privsep:/var/empty:/usr/sbin/nologin\r\n\
_isakmpd:x:1:1::/:\n\
nogid:x:5\n\
odd:*:4294967295:65534:\xe9t\xe9:/:";
        assert_eq!(passwd_ids(text, "_isakmpd"), Some((998, 997)));
        assert_eq!(passwd_ids(text, "root"), Some((0, 0)));
        assert_eq!(passwd_ids(text, "daemon"), Some((1, 1)));
        // A malformed entry is skipped; a later good one for the same name counts.
        assert_eq!(passwd_ids(text, "broken"), Some((77, 78)));
        assert_eq!(passwd_ids(text, "odd"), Some((u32::MAX, 65534)));
        assert_eq!(passwd_ids(text, "nogid"), None);
        assert_eq!(passwd_ids(text, "_isakmp"), None);
        assert_eq!(passwd_ids(text, "isakmpd"), None);
        assert_eq!(passwd_ids(text, "+_isakmpd"), None);
        assert_eq!(passwd_ids(text, ""), None);
        assert_eq!(passwd_ids(b"", "root"), None);
    }

    #[test]
    fn ports() {
        assert!(port_allowed(500));
        assert!(port_allowed(4500));
        assert!(port_allowed(1025));
        assert!(port_allowed(65535));
        assert!(!port_allowed(1024));
        assert!(!port_allowed(22));
        assert!(!port_allowed(501));
    }

    #[test]
    fn secrecy() {
        assert!(check_secrecy("f", 0, 0o100600, 0).is_ok());
        assert!(check_secrecy("f", 1000, 0o100400, 1000).is_ok());
        let e = check_secrecy("f", 0, 0o100644, 0).unwrap_err();
        assert!(e.contains("0644") && e.contains("group or others"), "{e}");
        assert!(check_secrecy("f", 0, 0o100620, 0).is_err());
        assert!(check_secrecy("f", 0, 0o100601, 0).is_err());
        assert!(check_secrecy("f", 1000, 0o100600, 0)
            .unwrap_err()
            .contains("owner"));
    }

    #[test]
    fn bind_requests_round_trip() {
        for a in ["192.0.2.1:500", "[2001:db8::1]:4500", "0.0.0.0:1500"] {
            let addr: SocketAddr = a.parse().unwrap();
            let mut req = Vec::new();
            match addr.ip() {
                IpAddr::V4(v) => {
                    req.push(4);
                    req.extend_from_slice(&v.octets())
                }
                IpAddr::V6(v) => {
                    req.push(6);
                    req.extend_from_slice(&v.octets())
                }
            }
            req.extend_from_slice(&addr.port().to_be_bytes());
            assert_eq!(decode_bind(&req), Some(addr));
        }
        assert_eq!(decode_bind(&[4, 1, 2, 3]), None);
        assert_eq!(decode_bind(&[]), None);
        assert_eq!(decode_bind(&[5, 0, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn descriptors_cross_the_socketpair() {
        let (a, b) = socketpair().unwrap();
        let f = std::fs::File::open("/dev/null").unwrap();
        send_msg(a.as_raw_fd(), b"hi", Some(f.as_raw_fd())).unwrap();
        let mut buf = [0u8; 16];
        let (n, fd) = recv_msg(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hi");
        assert!(fd.is_some());
        drop(a);
        let (n, fd) = recv_msg(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!((n, fd.is_none()), (0, true));
    }

    /// Only regular files that resolve under the root (symlinks and `..` followed) are
    /// opened, read-only; a listing names the directory's files, or its directories
    /// (opening each is checked again).
    #[test]
    fn pki_reads_stay_under_the_root() {
        use std::io::Write as _;
        let base = std::env::temp_dir().join(format!("isakmpd-pki-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("etc/iked");
        std::fs::create_dir_all(root.join("ca/sub")).unwrap();
        std::fs::write(root.join("ca/ca.crt"), b"ca").unwrap();
        std::fs::write(base.join("secret"), b"outside").unwrap();
        std::os::unix::fs::symlink(base.join("secret"), root.join("ca/escape")).unwrap();
        let root_s = format!("{}/", root.display());
        let at = |p: &str| format!("{}/{p}", root.display()).into_bytes();

        assert_eq!(
            list_pki(&root_s, &at("ca"), false).unwrap(),
            ["ca.crt", "escape"]
        );
        // The directories alone (KeyNote's Credential-directory).
        assert_eq!(list_pki(&root_s, &at("ca"), true).unwrap(), ["sub"]);
        let mut f = std::fs::File::from(open_pki(&root_s, &at("ca/ca.crt")).unwrap());
        let mut text = String::new();
        std::io::Read::read_to_string(&mut f, &mut text).unwrap();
        assert_eq!(text, "ca");
        // Read-only.
        assert!(f.write_all(b"x").is_err());
        for bad in ["ca/escape", "ca/../../../secret", "ca/sub", "ca/none"] {
            assert!(open_pki(&root_s, &at(bad)).is_err(), "{bad}");
        }
        let e = open_pki(&root_s, &at("ca/../../../secret")).unwrap_err();
        assert!(e.contains("not under"), "{e}");
        assert!(list_pki(&root_s, &at(".."), false).is_err());
        assert!(list_pki(&root_s, &at(".."), true).is_err());
        assert!(open_pki(&root_s, b"/etc/passwd").is_err());
        // Another root does not let these through.
        assert!(open_pki(ISAKMPD_PKI_ROOT, &at("ca/ca.crt")).is_err());
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn refuses_bad_ports_before_binding() {
        let e = bind_udp("127.0.0.1:600".parse().unwrap()).unwrap_err();
        assert!(e.contains("refusing"), "{e}");
    }
}
