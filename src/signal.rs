//! Signals through a self-pipe: the handler writes the signal number as one byte to a
//! non-blocking pipe, which the poll loop reads like any other descriptor.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; a full pipe (EAGAIN) just drops the byte,
        // which is fine because a pending byte for the same signal is already queued.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

pub struct SignalPipe {
    read: OwnedFd,
    _write: OwnedFd,
}

impl SignalPipe {
    /// Creates the pipe and routes `signals` to it; SIGPIPE is ignored.
    pub fn install(signals: &[libc::c_int]) -> io::Result<SignalPipe> {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid out-array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors are fresh and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        WRITE_FD.store(write.as_raw_fd(), Ordering::Relaxed);
        for &s in signals {
            set_handler(s, on_signal as extern "C" fn(libc::c_int) as usize)?;
        }
        set_handler(libc::SIGPIPE, libc::SIG_IGN)?;
        Ok(SignalPipe {
            read,
            _write: write,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// The signals that arrived since the last call, in order.
    pub fn drain(&self, mut f: impl FnMut(libc::c_int)) {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: buf is a valid writable buffer.
            let n = unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return;
            }
            for &b in &buf[..n as usize] {
                f(b as libc::c_int);
            }
        }
    }
}

fn set_handler(sig: libc::c_int, handler: usize) -> io::Result<()> {
    // SAFETY: sigaction is plain data; zeroed is a valid starting point.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler;
    sa.sa_flags = libc::SA_RESTART;
    // SAFETY: sa is valid; the old action is not wanted.
    unsafe {
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(sig, &sa, std::ptr::null_mut()) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Puts a signal back to its default action (in the child after fork).
pub fn reset(sig: libc::c_int) {
    let _ = set_handler(sig, libc::SIG_DFL);
}
