//! Signals through a self-pipe: the handler writes the signal number as one byte to a
//! non-blocking pipe, which the poll loop reads like any other descriptor.

#![forbid(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::sys;

static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // sys::write is async-signal-safe; a full pipe (EAGAIN) just drops the byte, which
        // is fine because a pending byte for the same signal is already queued.
        let _ = sys::write(fd, &[sig as u8]);
    }
}

pub struct SignalPipe {
    read: OwnedFd,
    _write: OwnedFd,
}

impl SignalPipe {
    /// Creates the pipe and routes `signals` to it; SIGPIPE is ignored.
    pub fn install(signals: &[libc::c_int]) -> io::Result<SignalPipe> {
        let (read, write) = sys::pipe(libc::O_NONBLOCK | libc::O_CLOEXEC)?;
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
            let n = match sys::read(self.fd(), &mut buf) {
                Ok(n) if n > 0 => n,
                _ => return,
            };
            for &b in &buf[..n] {
                f(b as libc::c_int);
            }
        }
    }
}

fn set_handler(sig: libc::c_int, handler: usize) -> io::Result<()> {
    sys::sigaction(sig, handler)
}

/// Puts a signal back to its default action (in the child after fork).
pub fn reset(sig: libc::c_int) {
    let _ = set_handler(sig, libc::SIG_DFL);
}
