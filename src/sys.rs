//! The daemon's system calls outside `src/ike`: one thin, safe wrapper per libc call, so
//! that every `unsafe` block of the process lives in this file next to its `// SAFETY:`
//! note, and the modules that use them (daemon, monitor, event, signal, log, fifo, udp)
//! contain none.
//!
//! Conventions: a failed call returns `io::Error::last_os_error()` (errno); nothing here
//! retries on EINTR, the callers decide as they did before. Descriptors go in as `RawFd`
//! (a wrong one fails with EBADF, it cannot make a wrapper touch memory it was not given)
//! and new ones come out as `OwnedFd`. Buffers are slices, so no length can lie.
//!
//! Datagram metadata (RFC 3542 §6 for IPv6, Linux ip(7) IP_PKTINFO for IPv4) is read and
//! written with control buffers that are fixed arrays on the stack: receiving or sending a
//! datagram allocates nothing.

use std::ffi::CStr;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

pub use libc::{c_int, pid_t, pollfd};

fn cvt(r: c_int) -> io::Result<c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_len(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Takes ownership of a descriptor the kernel just gave us.
fn owned(fd: c_int) -> OwnedFd {
    // SAFETY: only called with a descriptor that a successful system call has just
    // returned to this process and that nothing else has seen yet.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

// ---------------------------------------------------------------------------------------
// Processes and credentials.

pub fn getpid() -> pid_t {
    // SAFETY: getpid has no arguments and cannot fail.
    unsafe { libc::getpid() }
}

/// The host's name (gethostname(3)), if it has one that is UTF-8.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return None;
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..n].to_vec())
        .ok()
        .filter(|h| !h.is_empty())
}

pub fn getuid() -> u32 {
    // SAFETY: getuid has no arguments and cannot fail.
    unsafe { libc::getuid() }
}

pub fn geteuid() -> u32 {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// kill(2); signal 0 only checks that `pid` exists.
pub fn kill(pid: pid_t, sig: c_int) -> io::Result<()> {
    // SAFETY: plain system call on integers.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Which side of a fork(2) we are on.
pub enum Forked {
    Child,
    Parent(pid_t),
}

/// fork(2). The daemon forks while it is single-threaded (no thread is ever started), so
/// the child may do anything the parent could.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the daemon has one thread; the child continues with its own copy of every
    // lock and allocation, as the parent left them.
    match cvt(unsafe { libc::fork() })? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// daemon(3) with `nochdir` and `noclose` both 0, called before any thread exists.
pub fn daemon() -> io::Result<()> {
    // SAFETY: daemon forks and detaches; single-threaded, as for `fork`.
    cvt(unsafe { libc::daemon(0, 0) }).map(drop)
}

/// waitpid(2): the pid it returned (0 with WNOHANG and no change) and the status.
pub fn waitpid(pid: pid_t, flags: c_int) -> io::Result<(pid_t, c_int)> {
    let mut st = 0;
    // SAFETY: st is a valid out-pointer for the call.
    let r = cvt(unsafe { libc::waitpid(pid, &mut st, flags) })?;
    Ok((r, st))
}

pub fn chroot(dir: &CStr) -> io::Result<()> {
    // SAFETY: dir is NUL-terminated.
    cvt(unsafe { libc::chroot(dir.as_ptr()) }).map(drop)
}

pub fn chdir(dir: &CStr) -> io::Result<()> {
    // SAFETY: dir is NUL-terminated.
    cvt(unsafe { libc::chdir(dir.as_ptr()) }).map(drop)
}

pub fn setgroups(gids: &[u32]) -> io::Result<()> {
    // SAFETY: the pointer and the length describe the slice.
    cvt(unsafe { libc::setgroups(gids.len() as _, gids.as_ptr()) }).map(drop)
}

pub fn setresgid(gid: u32) -> io::Result<()> {
    // SAFETY: plain system call on integers.
    cvt(unsafe { libc::setresgid(gid, gid, gid) }).map(drop)
}

pub fn setresuid(uid: u32) -> io::Result<()> {
    // SAFETY: plain system call on integers.
    cvt(unsafe { libc::setresuid(uid, uid, uid) }).map(drop)
}

pub fn setuid(uid: u32) -> io::Result<()> {
    // SAFETY: plain system call on an integer.
    cvt(unsafe { libc::setuid(uid) }).map(drop)
}

// ---------------------------------------------------------------------------------------
// Signals.

/// Sets the action of `sig` to `handler` (a function address, SIG_IGN or SIG_DFL), with
/// SA_RESTART and an empty mask.
pub fn sigaction(sig: c_int, handler: libc::sighandler_t) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is plain data and a valid starting point; `handler` is
    // SIG_IGN, SIG_DFL or an `extern "C" fn(c_int)` (signal.rs), which is what the kernel
    // calls; the old action is not asked for.
    unsafe {
        let mut sa: libc::sigaction = zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        cvt(libc::sigaction(sig, &sa, std::ptr::null_mut())).map(drop)
    }
}

// ---------------------------------------------------------------------------------------
// Files and descriptors.

/// open(2); `mode` is used only with O_CREAT.
pub fn open(path: &CStr, flags: c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    // SAFETY: path is NUL-terminated; the variadic mode is passed as the C int promotion.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), flags, mode as libc::c_uint) })?;
    Ok(owned(fd))
}

pub fn mkfifo(path: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: path is NUL-terminated.
    cvt(unsafe { libc::mkfifo(path.as_ptr(), mode) }).map(drop)
}

pub fn fchmod(fd: RawFd, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: plain system call on integers.
    cvt(unsafe { libc::fchmod(fd, mode) }).map(drop)
}

pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: a zeroed stat is valid plain data, and a valid out-pointer for fstat.
    unsafe {
        let mut st: libc::stat = zeroed();
        cvt(libc::fstat(fd, &mut st))?;
        Ok(st)
    }
}

/// Sets O_NONBLOCK on `fd` (errors ignored, as a bad descriptor fails at its next use).
pub fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl with F_GETFL/F_SETFL takes and returns plain integers.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// pipe2(2): (read end, write end).
pub fn pipe(flags: c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), flags) })?;
    Ok((owned(fds[0]), owned(fds[1])))
}

/// read(2). Async-signal-safe, like `write`.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of buf.len() bytes.
    cvt_len(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// write(2). Async-signal-safe: it neither allocates nor locks (the signal handler uses
/// it).
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for reads of buf.len() bytes.
    cvt_len(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
}

/// poll(2) on `fds`; the number of descriptors with events.
pub fn poll(fds: &mut [pollfd], timeout_ms: c_int) -> io::Result<usize> {
    // SAFETY: the pointer and the length describe the slice.
    cvt(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) })
        .map(|n| n as usize)
}

// ---------------------------------------------------------------------------------------
// Logging and the wall clock.

/// openlog(3). The ident must live as long as the process: syslog keeps the pointer.
pub fn openlog(ident: &'static CStr, option: c_int, facility: c_int) {
    // SAFETY: ident is NUL-terminated and 'static.
    unsafe { libc::openlog(ident.as_ptr(), option, facility) }
}

/// syslog(3) of one preformatted message.
pub fn syslog(priority: c_int, msg: &CStr) {
    // SAFETY: both strings are NUL-terminated, and "%s" consumes exactly the one argument.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), msg.as_ptr()) }
}

/// The local wall-clock time of day: hours, minutes, seconds, microseconds.
pub fn local_time_of_day() -> (i32, i32, i32, i64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; CLOCK_REALTIME is always available.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    // SAFETY: a zeroed tm is valid plain data, and is fully written by localtime_r on
    // success; both pointers are valid for the call.
    let tm = unsafe {
        let mut tm: libc::tm = zeroed();
        libc::localtime_r(&ts.tv_sec, &mut tm);
        tm
    };
    // tv_nsec is a C long: 32 bits on armv7 and other 32-bit targets.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let micros = i64::from(ts.tv_nsec / 1000);
    (tm.tm_hour, tm.tm_min, tm.tm_sec, micros)
}

/// The local zone's offset from UTC, in seconds, at `unix` (localtime_r's tm_gmtoff; 0 if
/// it fails).
pub fn utc_offset(unix: i64) -> i64 {
    let t = unix as libc::time_t;
    // SAFETY: a zeroed tm is valid plain data; both pointers are valid for the call.
    let (ok, tm) = unsafe {
        let mut tm: libc::tm = zeroed();
        let ok = !libc::localtime_r(&t, &mut tm).is_null();
        (ok, tm)
    };
    // tm_gmtoff is a C long: 32 bits on armv7 and other 32-bit targets.
    #[allow(clippy::useless_conversion)]
    if ok {
        i64::from(tm.tm_gmtoff)
    } else {
        0
    }
}

/// Most sub-matches [`regex_matches`] reports (the whole match and nine groups).
pub const REGEX_GROUPS: usize = 10;

/// Matches `subject` against the POSIX extended regular expression `pattern` (regcomp(3)
/// with REG_EXTENDED, regexec(3)): `None` when the pattern does not compile, else the byte
/// ranges of the whole match and its groups (empty when it does not match; `None` for a
/// group that took no part).
pub fn regex_matches(pattern: &CStr, subject: &CStr) -> Option<Vec<Option<(usize, usize)>>> {
    // SAFETY: regex_t and regmatch_t are plain data that regcomp/regexec fill in; both
    // strings are valid and NUL-terminated for the calls; pmatch holds REGEX_GROUPS
    // entries, as nmatch says; a compiled r is freed exactly once.
    unsafe {
        let mut r: libc::regex_t = zeroed();
        if libc::regcomp(&mut r, pattern.as_ptr(), libc::REG_EXTENDED) != 0 {
            return None;
        }
        let mut pm: [libc::regmatch_t; REGEX_GROUPS] = zeroed();
        let m = libc::regexec(&r, subject.as_ptr(), REGEX_GROUPS, pm.as_mut_ptr(), 0);
        libc::regfree(&mut r);
        if m != 0 {
            return Some(Vec::new());
        }
        Some(
            pm.iter()
                .map(|g| {
                    (g.rm_so >= 0 && g.rm_eo >= g.rm_so)
                        .then_some((g.rm_so as usize, g.rm_eo as usize))
                })
                .collect(),
        )
    }
}

// ---------------------------------------------------------------------------------------
// Sockets.

pub fn socket(domain: c_int, ty: c_int, protocol: c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain system call on integers.
    Ok(owned(cvt(unsafe { libc::socket(domain, ty, protocol) })?))
}

/// A connected pair of AF_UNIX sockets of type `ty`.
pub fn socketpair(ty: c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) })?;
    Ok((owned(fds[0]), owned(fds[1])))
}

pub fn setsockopt_int(fd: RawFd, level: c_int, name: c_int, value: c_int) -> io::Result<()> {
    setsockopt_bytes(fd, level, name, &value.to_ne_bytes())
}

/// setsockopt(2) with an option value given as its bytes (a C struct encoded by the
/// caller, as `kernel::xfrm::socket_bypass` does).
pub fn setsockopt_bytes(fd: RawFd, level: c_int, name: c_int, value: &[u8]) -> io::Result<()> {
    // SAFETY: the pointer and the length describe the slice; the kernel copies it and
    // checks the length for the option.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// bind(2) to an IPv4 or IPv6 socket address.
pub fn bind_inet(fd: RawFd, addr: SocketAddr) -> io::Result<()> {
    let (sa, len) = sockaddr_from(addr);
    // SAFETY: sa is a sockaddr_storage holding a sockaddr_in or sockaddr_in6 of `len`
    // bytes.
    cvt(unsafe { libc::bind(fd, (&sa as *const libc::sockaddr_storage).cast(), len) }).map(drop)
}

/// bind(2) of a netlink socket to the multicast `groups` (port id chosen by the kernel).
pub fn bind_netlink(fd: RawFd, groups: u32) -> io::Result<()> {
    // SAFETY: a zeroed sockaddr_nl is valid; we set the family and groups and bind with
    // its size.
    cvt(unsafe {
        let mut sa: libc::sockaddr_nl = zeroed();
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = groups;
        libc::bind(
            fd,
            (&sa as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    })
    .map(drop)
}

pub fn recv(fd: RawFd, buf: &mut [u8], flags: c_int) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of buf.len() bytes.
    cvt_len(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) })
}

pub fn send(fd: RawFd, buf: &[u8], flags: c_int) -> io::Result<usize> {
    // SAFETY: buf is valid for reads of buf.len() bytes.
    cvt_len(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) })
}

/// Control buffer for one cmsghdr, aligned for it (u64), large enough for an
/// in6_pktinfo or a few descriptors.
type CmsgBuf = [u64; 8];

/// sendmsg(2) of `data` with, if given, one descriptor passed as SCM_RIGHTS.
pub fn sendmsg_fd(sock: RawFd, data: &[u8], fd: Option<RawFd>, flags: c_int) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut _,
        iov_len: data.len(),
    };
    let mut cbuf: CmsgBuf = [0; 8];
    // SAFETY: a zeroed msghdr is a valid empty header; the pointers we set point at iov
    // and cbuf, which outlive the call. CMSG_SPACE of one int fits cbuf, so CMSG_FIRSTHDR
    // is non-null and CMSG_DATA points inside cbuf, where one int is written unaligned.
    // sendmsg only reads the data (iov_base is *mut only by the C declaration).
    unsafe {
        let mut msg: libc::msghdr = zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if let Some(fd) = fd {
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
        }
        cvt_len(libc::sendmsg(sock, &msg, flags))
    }
}

/// recvmsg(2) of one message into `buf`, with MSG_CMSG_CLOEXEC: its length (0 when the
/// peer closed a stream or seqpacket socket) and the first descriptor it carried as
/// SCM_RIGHTS; any further descriptors are closed.
pub fn recvmsg_fd(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf: CmsgBuf = [0; 8];
    // SAFETY: a zeroed msghdr is valid plain data.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<CmsgBuf>() as _;
    // SAFETY: msg points at iov (and so buf) and cbuf, which outlive the call, with
    // their own sizes.
    let n = cvt_len(unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) })?;
    let mut fd = None;
    // SAFETY: the kernel filled msg_control (msg_controllen says how much);
    // CMSG_FIRSTHDR/CMSG_NXTHDR walk only within it, and each SCM_RIGHTS entry holds
    // descriptors the kernel has just installed in this process for us.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>());
                if fd.is_none() {
                    fd = Some(owned(raw));
                } else {
                    libc::close(raw);
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n, fd))
}

/// One datagram read by [`recvmsg_pktinfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub len: usize,
    pub from: SocketAddr,
    /// The datagram's destination address (IP_PKTINFO `ipi_addr`, IPV6_PKTINFO
    /// `ipi6_addr`), if the socket asked for it; for an IPv6 link-local address, the
    /// scope is the interface it arrived on.
    pub dst: Option<(IpAddr, u32)>,
}

/// recvmsg(2) of one datagram, with its source and, on a socket with IP_PKTINFO or
/// IPV6_RECVPKTINFO set, its destination address.
pub fn recvmsg_pktinfo(fd: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf: CmsgBuf = [0; 8];
    // SAFETY: zeroed sockaddr_storage and msghdr are valid plain data.
    let (mut name, mut msg): (libc::sockaddr_storage, libc::msghdr) =
        unsafe { (zeroed(), zeroed()) };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as _;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<CmsgBuf>() as _;
    // SAFETY: msg points at name, iov (and so buf) and cbuf, which outlive the call,
    // with their own sizes.
    let len = cvt_len(unsafe { libc::recvmsg(fd, &mut msg, 0) })?;
    let from = sockaddr_to(&name, msg.msg_namelen as usize)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
    let mut dst = None;
    // SAFETY: the kernel filled msg_control; CMSG_FIRSTHDR/CMSG_NXTHDR walk only within
    // it, and each payload is read unaligned as the struct its level and type name, whose
    // size the kernel wrote (checked against cmsg_len).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let room = (*c).cmsg_len as usize;
            #[cfg(any(target_os = "linux", target_os = "android"))]
            if (*c).cmsg_level == libc::IPPROTO_IP
                && (*c).cmsg_type == libc::IP_PKTINFO
                && room >= libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as usize
            {
                let pi = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>());
                let a = Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr));
                dst = Some((IpAddr::V4(a), 0));
            }
            if (*c).cmsg_level == libc::IPPROTO_IPV6
                && (*c).cmsg_type == libc::IPV6_PKTINFO
                && room >= libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as usize
            {
                let pi = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>());
                let a = Ipv6Addr::from(pi.ipi6_addr.s6_addr);
                dst = Some((IpAddr::V6(a), pi.ipi6_ifindex as u32));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Received { len, from, dst })
}

/// sendmsg(2) of one datagram to `to`, leaving from the local address `src` (with
/// interface `ifindex` for an IPv6 link-local one, else 0) through an IP_PKTINFO or
/// IPV6_PKTINFO control message: how a socket bound to a wildcard address answers from
/// the address a request came to.
pub fn sendmsg_from(
    fd: RawFd,
    data: &[u8],
    to: SocketAddr,
    src: IpAddr,
    ifindex: u32,
) -> io::Result<usize> {
    let (name, namelen) = sockaddr_from(to);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut _,
        iov_len: data.len(),
    };
    let mut cbuf: CmsgBuf = [0; 8];
    // SAFETY: a zeroed msghdr is valid; name, iov and cbuf outlive the call. CMSG_SPACE
    // of an in6_pktinfo (the larger) fits cbuf, so CMSG_FIRSTHDR is non-null and the
    // payload written unaligned at CMSG_DATA stays inside cbuf. sendmsg only reads.
    unsafe {
        let mut msg: libc::msghdr = zeroed();
        msg.msg_name =
            (&name as *const libc::sockaddr_storage as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = namelen;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        match src {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            IpAddr::V4(a) => {
                let pi = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(a).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                let n = size_of::<libc::in_pktinfo>() as u32;
                msg.msg_controllen = libc::CMSG_SPACE(n) as _;
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::IPPROTO_IP;
                (*c).cmsg_type = libc::IP_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(n) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>(), pi);
            }
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            IpAddr::V4(_) => return Err(io::Error::from(io::ErrorKind::Unsupported)),
            IpAddr::V6(a) => {
                let pi = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: a.octets(),
                    },
                    ipi6_ifindex: ifindex as _,
                };
                let n = size_of::<libc::in6_pktinfo>() as u32;
                msg.msg_controllen = libc::CMSG_SPACE(n) as _;
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::IPPROTO_IPV6;
                (*c).cmsg_type = libc::IPV6_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(n) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>(), pi);
            }
        }
        cvt_len(libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL))
    }
}

/// A socket address in C form, and its length.
fn sockaddr_from(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: a zeroed sockaddr_storage is valid, and it is large enough and aligned for
    // a sockaddr_in or a sockaddr_in6, written through a pointer of that type.
    unsafe {
        let mut ss: libc::sockaddr_storage = zeroed();
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin);
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6);
                size_of::<libc::sockaddr_in6>()
            }
        };
        (ss, len as libc::socklen_t)
    }
}

/// The socket address the kernel wrote into `ss` (`len` bytes), if it is IPv4 or IPv6.
fn sockaddr_to(ss: &libc::sockaddr_storage, len: usize) -> Option<SocketAddr> {
    match c_int::from(ss.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says ss holds a sockaddr_in, and storage is aligned for it.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says ss holds a sockaddr_in6, and storage is aligned for
            // it.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// getifaddrs(3): every interface's name once with None (its link entry, AF_PACKET),
/// then its IPv4 and IPv6 addresses, in the order the kernel lists them.
pub fn interface_addrs() -> io::Result<Vec<(String, Option<IpAddr>)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: head is a valid out-pointer; on success the list is freed below, once.
    cvt(unsafe { libc::getifaddrs(&mut head) })?;
    let mut out = Vec::new();
    let mut p = head;
    while !p.is_null() {
        // SAFETY: p is a node of the list getifaddrs returned, not yet freed; its name
        // is a NUL-terminated string and its address, when not null, a sockaddr of the
        // family it names (sockaddr_to checks the family before reading more).
        let (name, addr) = unsafe {
            let ifa = &*p;
            p = ifa.ifa_next;
            let name = CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned();
            if ifa.ifa_addr.is_null() {
                continue;
            }
            let family = c_int::from((*ifa.ifa_addr).sa_family);
            let len = match family {
                libc::AF_INET => size_of::<libc::sockaddr_in>(),
                libc::AF_INET6 => size_of::<libc::sockaddr_in6>(),
                libc::AF_PACKET => {
                    out.push((name, None));
                    continue;
                }
                _ => continue,
            };
            let mut ss: libc::sockaddr_storage = zeroed();
            std::ptr::copy_nonoverlapping(
                ifa.ifa_addr.cast::<u8>(),
                (&mut ss as *mut libc::sockaddr_storage).cast::<u8>(),
                len,
            );
            (name, sockaddr_to(&ss, len).map(|a| a.ip()))
        };
        if let Some(a) = addr {
            out.push((name, Some(a)));
        }
    }
    // SAFETY: the list getifaddrs returned, freed once, after its last use.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Memory: what startup leaves behind.

/// malloc_trim(3) with no padding: glibc returns the heap's free pages (at its top and,
/// with MADV_DONTNEED, inside it) to the kernel. True if any memory was released.
pub fn malloc_trim() -> bool {
    // SAFETY: no pointers; glibc takes its own arena locks.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// A zero-filled byte buffer in an anonymous mapping of its own: until a page is written it
/// is the kernel's zero page, so a large buffer that is mostly unused (a 64 KiB receive
/// buffer that sees 1 kB datagrams) costs only the pages used. calloc would clear the
/// pages of a heap chunk, making them all resident at once. (Should mmap fail, the buffer
/// is an ordinary boxed slice.)
pub struct PageBuf(PageMem);

enum PageMem {
    Mapped {
        ptr: std::ptr::NonNull<u8>,
        len: usize,
    },
    Heap(Box<[u8]>),
}

impl PageBuf {
    pub fn new(len: usize) -> PageBuf {
        if len == 0 {
            return PageBuf(PageMem::Heap(Box::default()));
        }
        // SAFETY: a new private anonymous mapping; no existing memory is named.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        match std::ptr::NonNull::new(p.cast::<u8>()) {
            Some(ptr) if p != libc::MAP_FAILED => PageBuf(PageMem::Mapped { ptr, len }),
            _ => PageBuf(PageMem::Heap(vec![0; len].into_boxed_slice())),
        }
    }
}

impl std::ops::Deref for PageBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            // SAFETY: the mapping is `len` readable bytes (zero-filled when new), owned by
            // self and alive until drop.
            PageMem::Mapped { ptr, len } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr(), *len)
            },
            PageMem::Heap(b) => b,
        }
    }
}

impl std::ops::DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.0 {
            // SAFETY: as for deref; &mut self makes the borrow unique.
            PageMem::Mapped { ptr, len } => unsafe {
                std::slice::from_raw_parts_mut(ptr.as_ptr(), *len)
            },
            PageMem::Heap(b) => b,
        }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        if let PageMem::Mapped { ptr, len } = self.0 {
            // SAFETY: the mapping made in `new`, no longer borrowed.
            unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
        }
    }
}

// SAFETY: the buffer is owned memory like a Box<[u8]>; nothing is shared.
unsafe impl Send for PageBuf {}
// SAFETY: shared access is read-only through Deref.
unsafe impl Sync for PageBuf {}

/// One mapping from /proc/self/smaps, as far as [`poll_after_releasing_file_pages`] needs it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Mapping {
    lo: usize,
    hi: usize,
    /// Read-only, private, and backed by a regular file (a path, not a device or a
    /// pseudo-mapping such as [heap] or [vdso]).
    file_ro_private: bool,
    rss_kb: u64,
    /// Copied-on-write (or otherwise anonymous) pages, and locked ones.
    anon_kb: u64,
    locked_kb: u64,
}

impl Mapping {
    /// Its pages are exactly the file's: dropping them from the page tables loses nothing,
    /// the next access maps them again from the page cache.
    fn releasable(&self) -> bool {
        self.file_ro_private
            && self.rss_kb > 0
            && self.anon_kb == 0
            && self.locked_kb == 0
            && self.lo < self.hi
    }
}

fn smaps_header(line: &str) -> Option<Mapping> {
    let mut f = line.split_ascii_whitespace();
    let (lo, hi) = f.next()?.split_once('-')?;
    let lo = usize::from_str_radix(lo, 16).ok()?;
    let hi = usize::from_str_radix(hi, 16).ok()?;
    let perms = f.next()?.as_bytes();
    let path = f.nth(3).unwrap_or("");
    if perms.len() != 4 {
        return None;
    }
    Some(Mapping {
        lo,
        hi,
        file_ro_private: perms[0] == b'r'
            && perms[1] == b'-'
            && perms[3] == b'p'
            && path.starts_with('/')
            && !path.starts_with("/dev/"),
        ..Mapping::default()
    })
}

/// The mappings of an smaps text whose pages [`poll_after_releasing_file_pages`] may drop.
fn releasable_mappings(smaps: &str) -> Vec<Mapping> {
    let mut out = Vec::new();
    let mut cur: Option<Mapping> = None;
    for line in smaps.lines() {
        // Field lines are "Name:  value kB"; a header starts with the address range.
        let field = line.split_once(':').filter(|(k, _)| !k.contains('-'));
        match field {
            Some((key, rest)) => {
                let Some(m) = cur.as_mut() else { continue };
                let kb = rest
                    .split_ascii_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok());
                match (key, kb) {
                    ("Rss", Some(v)) => m.rss_kb = v,
                    ("Anonymous", Some(v)) => m.anon_kb = v,
                    ("Locked", Some(v)) => m.locked_kb = v,
                    // Unknown or unparsable: be safe, keep the mapping.
                    ("Anonymous" | "Locked", None) => m.anon_kb = u64::MAX,
                    _ => {}
                }
            }
            None => {
                if let Some(m) = cur.take().filter(Mapping::releasable) {
                    out.push(m);
                }
                cur = smaps_header(line);
            }
        }
    }
    if let Some(m) = cur.filter(Mapping::releasable) {
        out.push(m);
    }
    out
}

/// The main thread's stack mapping in an smaps text.
fn stack_mapping(smaps: &str) -> Option<(usize, usize)> {
    let line = smaps.lines().find(|l| l.ends_with(" [stack]"))?;
    let (lo, hi) = line.split_ascii_whitespace().next()?.split_once('-')?;
    Some((
        usize::from_str_radix(lo, 16).ok()?,
        usize::from_str_radix(hi, 16).ok()?,
    ))
}

/// An address in a frame below the caller's whole frame (this function's, dead once it
/// returns): every live stack byte of the caller and its callers lies above it.
#[inline(never)]
fn below_the_callers_frame() -> usize {
    let x = 0u8;
    std::hint::black_box(&x) as *const u8 as usize
}

/// poll(2), after dropping from this process's page tables the resident pages of
/// read-only private file mappings that hold no page of the process's own (no
/// copy-on-write page, nothing locked): the code and constants of the binary and the
/// shared libraries that startup ran and that an idle daemon does not need. Every access
/// after this maps the page again from the page cache (a minor fault), so nothing changes
/// but the process's resident set (and its share of the libraries' pages, its Pss).
/// `smaps` is /proc/self/smaps, opened while /proc was reachable. The heap's free pages
/// go back too (malloc_trim), and so do the stack's pages below the current frames (deep
/// calls during the work; they come back zero-filled when a call goes that deep again).
///
/// One function, and poll right after the last madvise: what the process touches before
/// it sleeps (and maps again, with the folio or 64 kB around each page) is this function
/// and libc's poll, not the rest of a loop. Returns the kB released (or why none) and
/// poll's result.
///
/// Only for a single-threaded process: no mapping may change between reading smaps and
/// the madvise calls.
#[inline(never)]
pub fn poll_after_releasing_file_pages(
    smaps: &mut std::fs::File,
    fds: &mut [pollfd],
    timeout_ms: c_int,
) -> (io::Result<u64>, io::Result<usize>) {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = String::new();
    let read = smaps
        .seek(SeekFrom::Start(0))
        .and_then(|_| smaps.read_to_string(&mut text));
    if let Err(e) = read {
        return (Err(e), poll(fds, timeout_ms));
    }
    let maps = releasable_mappings(&text);
    let stack = stack_mapping(&text);
    drop(text);
    // The heap's free pages too (startup's garbage, and the smaps text just read).
    malloc_trim();
    // The stack's dead part, worked out before anything is released: what runs between the
    // first madvise and poll (and so is mapped again) is only this function and libc's.
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let dead_stack = match (stack, usize::try_from(page)) {
        (Some((lo, hi)), Ok(page @ 1..)) => {
            // A page of margin under a frame that is below this one: nothing live is there.
            let end = (below_the_callers_frame() & !(page - 1)).saturating_sub(page);
            (lo < end && end <= hi).then_some((lo, end))
        }
        _ => None,
    };
    let mut released = 0;
    for m in &maps {
        // SAFETY: [m.lo, m.hi) is a whole mapping that smaps has just shown to be a
        // private, read-only mapping of a regular file without one anonymous (private,
        // copied-on-write) page: MADV_DONTNEED then only unmaps page cache pages, which
        // the next access maps again with the same contents. The process has one thread
        // and nothing between the read and this call maps, unmaps or writes any file
        // mapping, so the range is still that mapping.
        let r =
            unsafe { libc::madvise(m.lo as *mut libc::c_void, m.hi - m.lo, libc::MADV_DONTNEED) };
        if r == 0 {
            released += m.rss_kb;
        }
    }
    if let Some((lo, end)) = dead_stack {
        // SAFETY: [lo, end) is the part of this thread's stack mapping below every live
        // frame (see below_the_callers_frame) by more than a page; its contents are dead,
        // and MADV_DONTNEED makes them zero-filled pages on the next use.
        unsafe { libc::madvise(lo as *mut libc::c_void, end - lo, libc::MADV_DONTNEED) };
    }
    // SAFETY: the pointer and the length describe the slice.
    let polled =
        cvt(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) })
            .map(|n| n as usize);
    drop(maps);
    (Ok(released), polled)
}

/// The static router build links libcrypto alone (cross/env.sh: `OPENSSL_LIBS=crypto` and
/// `--cfg isakmpd_libcrypto_only`). The `openssl` crate's one-time init calls
/// `OPENSSL_init_ssl`, and that one symbol pulled 0.3 MiB of libssl (the TLS state
/// machines, never used here) into the binary. This stands in for it with what OpenSSL
/// 3.0's `ssl_init.c` asks of libcrypto: all ciphers and digests, and the configuration
/// file unless told not to. The TLS-only rest (the compression methods, the SSL error
/// strings) has no user in this process. The host build links libssl and never sees this.
///
/// # Safety
///
/// As for OpenSSL's own: `settings` is null or points to live `OPENSSL_INIT_SETTINGS`.
#[cfg(isakmpd_libcrypto_only)]
#[no_mangle]
pub unsafe extern "C" fn OPENSSL_init_ssl(opts: u64, settings: *const libc::c_void) -> libc::c_int {
    extern "C" {
        fn OPENSSL_init_crypto(opts: u64, settings: *const libc::c_void) -> libc::c_int;
    }
    // OPENSSL_INIT_* of crypto.h and ssl.h (OpenSSL 3.0).
    const ADD_ALL_CIPHERS: u64 = 0x0000_0004;
    const ADD_ALL_DIGESTS: u64 = 0x0000_0008;
    const LOAD_CONFIG: u64 = 0x0000_0040;
    const NO_LOAD_CONFIG: u64 = 0x0000_0080;
    const SSL_STRINGS: u64 = 0x0010_0000 | 0x0020_0000; // (NO_)LOAD_SSL_STRINGS
    let mut o = (opts & !SSL_STRINGS) | ADD_ALL_CIPHERS | ADD_ALL_DIGESTS;
    if o & NO_LOAD_CONFIG == 0 {
        o |= LOAD_CONFIG;
    }
    // SAFETY: OPENSSL_init_crypto takes any option bits, and `settings` is what our caller
    // vouched for, passed on as libssl's version does.
    unsafe { OPENSSL_init_crypto(o, settings) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_round_trip() {
        for a in [
            "192.0.2.1:500",
            "[2001:db8::1]:4500",
            "[fe80::1%3]:500",
            "0.0.0.0:0",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            let (ss, len) = sockaddr_from(addr);
            assert_eq!(sockaddr_to(&ss, len as usize), Some(addr));
        }
        let (ss, _) = sockaddr_from("192.0.2.1:500".parse().unwrap());
        assert_eq!(sockaddr_to(&ss, 4), None);
    }

    #[test]
    fn pipe_read_write() {
        use std::os::fd::AsRawFd;
        let (r, w) = pipe(libc::O_NONBLOCK | libc::O_CLOEXEC).unwrap();
        assert_eq!(write(w.as_raw_fd(), b"abc").unwrap(), 3);
        let mut b = [0u8; 8];
        assert_eq!(read(r.as_raw_fd(), &mut b).unwrap(), 3);
        assert_eq!(&b[..3], b"abc");
        let e = read(r.as_raw_fd(), &mut b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn smaps_selection() {
        let text = "\
c0a00000-c0a28000 r--p 00000000 fe:01 1234   /usr/sbin/isakmpd
Size:                160 kB
Rss:                 112 kB
Anonymous:             0 kB
Locked:                0 kB
VmFlags: rd mr mw me dw sd
23620000-23682000 r--p 00420000 fe:01 99     /usr/lib/x86_64-linux-gnu/libcrypto.so.3
Rss:                 392 kB
Anonymous:           392 kB
Locked:                0 kB
23682000-23685000 rw-p 00482000 fe:01 99     /usr/lib/x86_64-linux-gnu/libcrypto.so.3
Rss:                  12 kB
Anonymous:             0 kB
232c5000-23542000 r-xp 000c5000 fe:01 99     /usr/lib/x86_64-linux-gnu/libcrypto.so.3
Rss:                1908 kB
Anonymous:             0 kB
Locked:                0 kB
232c6000-232c7000 r-xp 00000000 00:00 0      [vdso]
Rss:                   4 kB
Anonymous:             0 kB
232c8000-232c9000 r--p 00000000 00:05 7      /dev/zero
Rss:                   4 kB
Anonymous:             0 kB
232d0000-232d1000 r--s 00000000 00:05 8      /usr/share/x
Rss:                   4 kB
Anonymous:             0 kB
232e0000-232e1000 r-xp 00000000 00:05 9      /usr/lib/locked.so
Rss:                   4 kB
Anonymous:             0 kB
Locked:                4 kB
232f0000-232f1000 r-xp 00000000 00:05 9      /usr/lib/empty.so
Rss:                   0 kB
Anonymous:             0 kB
23300000-23301000 r-xp 00000000 00:05 9      /usr/lib/odd.so
Rss:                   4 kB
Anonymous:           ? kB
";
        let m = releasable_mappings(text);
        let ranges: Vec<_> = m.iter().map(|m| (m.lo, m.hi, m.rss_kb)).collect();
        assert_eq!(
            ranges,
            vec![
                (0xc0a00000, 0xc0a28000, 112),
                (0x232c5000, 0x23542000, 1908)
            ]
        );
    }

    #[test]
    fn stack_mapping_found() {
        let text =
            "7ffd1000-7ffd3000 rw-p 00000000 00:00 0                          [stack]\nRss: 8 kB\n";
        assert_eq!(stack_mapping(text), Some((0x7ffd1000, 0x7ffd3000)));
        assert_eq!(
            stack_mapping("7ffd1000-7ffd3000 rw-p 00000000 00:00 0\n"),
            None
        );
    }

    #[test]
    fn own_smaps_has_releasable_code() {
        // Parsing only: the test harness has other threads, so nothing is released here.
        let Ok(text) = std::fs::read_to_string("/proc/self/smaps") else {
            return;
        };
        let m = releasable_mappings(&text);
        let here = own_smaps_has_releasable_code as fn() as usize;
        assert!(m.iter().any(|m| m.lo <= here && here < m.hi), "{m:?}");
    }

    #[test]
    fn page_buffer_is_zeroed_and_writable() {
        let mut b = PageBuf::new(65536);
        assert_eq!(b.len(), 65536);
        assert!(b.iter().all(|&x| x == 0));
        b[65535] = 7;
        b[..3].copy_from_slice(b"abc");
        assert_eq!((&b[..3], b[65535]), (&b"abc"[..], 7));
    }
}
