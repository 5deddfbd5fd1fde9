//! Logging: syslog(3) with facility daemon, or stderr under -d.
//!
//! As in isakmpd, the daemon is quiet by default: errors and warnings only. `-v` adds the
//! `info` lines (completed phase 1 and phase 2 exchanges, reloads). Debug output is per
//! class (`-D class=level`, FIFO `D`): a message of class C and level L is printed when the
//! level set for C is at least L. Levels live in atomics so the sans-IO core can ask
//! [`debug_enabled`] without any handle; the check is one relaxed load.
//!
//! Nothing here ever formats key material: callers pass only public values.
//!
//! A line is formatted into a buffer on the stack ([`Line`], 1 KiB, cut with "..." when
//! longer) and written with one call, so logging allocates nothing: the engine's drop
//! warnings are on the packet path, and tests/alloc.rs counts them.

#![forbid(unsafe_code)]

use std::ffi::CStr;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

pub const MAX_DEBUG_LEVEL: u8 = 99;

/// The debug classes of isakmpd(8), numbered as the manual numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DebugClass {
    Misc = 0,
    Transport = 1,
    Message = 2,
    Crypto = 3,
    Timer = 4,
    Sysdep = 5,
    Sa = 6,
    Exchange = 7,
    Negotiation = 8,
    Policy = 9,
    Ui = 10,
}

pub const DEBUG_CLASSES: usize = 11;

impl DebugClass {
    pub const ALL: [DebugClass; DEBUG_CLASSES] = [
        DebugClass::Misc,
        DebugClass::Transport,
        DebugClass::Message,
        DebugClass::Crypto,
        DebugClass::Timer,
        DebugClass::Sysdep,
        DebugClass::Sa,
        DebugClass::Exchange,
        DebugClass::Negotiation,
        DebugClass::Policy,
        DebugClass::Ui,
    ];

    pub fn from_index(n: u8) -> Option<Self> {
        Self::ALL.get(n as usize).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            DebugClass::Misc => "Misc",
            DebugClass::Transport => "Trpt",
            DebugClass::Message => "Mesg",
            DebugClass::Crypto => "Cryp",
            DebugClass::Timer => "Timr",
            DebugClass::Sysdep => "Sdep",
            DebugClass::Sa => "SA",
            DebugClass::Exchange => "Exch",
            DebugClass::Negotiation => "Negt",
            DebugClass::Policy => "Plcy",
            DebugClass::Ui => "UI",
        }
    }
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU8 = AtomicU8::new(0);
static LEVELS: [AtomicU8; DEBUG_CLASSES] = [ZERO; DEBUG_CLASSES];
/// Levels saved by `D T`, restored by the next `D T`.
static SAVED: [AtomicU8; DEBUG_CLASSES] = [ZERO; DEBUG_CLASSES];
static TOGGLED: AtomicBool = AtomicBool::new(false);
static VERBOSE: AtomicBool = AtomicBool::new(false);
static SYSLOG: AtomicBool = AtomicBool::new(false);

pub fn debug_enabled(class: DebugClass, level: u8) -> bool {
    LEVELS[class as usize].load(Ordering::Relaxed) >= level && level > 0
}

pub fn set_debug_level(class: DebugClass, level: u8) {
    LEVELS[class as usize].store(level.min(MAX_DEBUG_LEVEL), Ordering::Relaxed);
}

pub fn set_all_debug_levels(level: u8) {
    for c in DebugClass::ALL {
        set_debug_level(c, level);
    }
}

pub fn debug_level(class: DebugClass) -> u8 {
    LEVELS[class as usize].load(Ordering::Relaxed)
}

/// `D T`: the first call saves the levels and sets all to zero; the next restores them.
pub fn toggle_debug() {
    if TOGGLED.swap(false, Ordering::Relaxed) {
        for (s, l) in SAVED.iter().zip(LEVELS.iter()) {
            l.store(s.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    } else {
        for (s, l) in SAVED.iter().zip(LEVELS.iter()) {
            s.store(l.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        }
        TOGGLED.store(true, Ordering::Relaxed);
    }
}

pub fn set_verbose(v: bool) {
    VERBOSE.store(v, Ordering::Relaxed);
}

pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// Debug output for one class: `ike_debug!(DebugClass::Exchange, 40, "...", args)`.
#[macro_export]
macro_rules! ike_debug {
    ($class:expr, $level:expr, $($arg:tt)+) => {
        if $crate::log::debug_enabled($class, $level) {
            $crate::log::debug_line($class, $level, ::std::format_args!($($arg)+));
        }
    };
}

/// `log_error!`, `log_warn!` and `log_info!`: `log::error!` and kin through one function,
/// [`line`], rather than a `log` record (target, module path, source location) and its
/// level check written out at each site. The logger prints none of those for these
/// levels (debug lines carry their class as target: [`ike_debug!`]).
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)+) => {
        $crate::log::line(::log::Level::Error, ::std::format_args!($($arg)+))
    };
}

/// See [`log_error!`].
#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)+) => {
        $crate::log::line(::log::Level::Warn, ::std::format_args!($($arg)+))
    };
}

/// See [`log_error!`].
#[macro_export]
macro_rules! log_info {
    ($($arg:tt)+) => {
        $crate::log::line(::log::Level::Info, ::std::format_args!($($arg)+))
    };
}

/// The line of [`log_error!`] and kin.
#[doc(hidden)]
#[inline(never)]
pub fn line(level: log::Level, args: fmt::Arguments<'_>) {
    log::log!(level, "{args}");
}

/// The debug line of [`ike_debug!`], once its class and level passed: one call per site
/// rather than the `log` macro's record written out at each.
#[doc(hidden)]
#[inline(never)]
pub fn debug_line(class: DebugClass, level: u8, args: fmt::Arguments<'_>) {
    emit(libc::LOG_INFO, Some((class.name(), level)), args);
}

/// isakmpd's LOG_REPORT lines (FIFO `r`): `Report>` where other lines have `Default`,
/// and LOG_ALERT in syslog, as log.c sends them.
pub fn report(args: fmt::Arguments<'_>) {
    emit(libc::LOG_ALERT, Some(("Report>", u8::MAX)), args);
}

/// isakmpd's `log_print`: a notice logged whether or not -v (startup, exit).
pub fn print(args: fmt::Arguments<'_>) {
    emit(libc::LOG_NOTICE, None, args);
}

/// One line to syslog, or to stderr (-d) as isakmpd's log.c writes it there:
/// `HHMMSS.uuuuuu Default <message>`, or `HHMMSS.uuuuuu <class> <level> <message>` for a
/// debug line (its class name and two-digit level), with ` [priv]` after the message in
/// a process running as root (the privileged parent). Syslog gets the message alone.
fn emit(prio: libc::c_int, class: Option<(&str, u8)>, args: fmt::Arguments<'_>) {
    let mut line = Line::new();
    if SYSLOG.load(Ordering::Relaxed) {
        let _ = line.write_fmt(args);
        if let Some(c) = line.c_str() {
            crate::sys::syslog(prio, c);
        }
        return;
    }
    let (hour, min, sec, usec) = crate::sys::local_time_of_day();
    let _ = write!(line, "{hour:02}{min:02}{sec:02}.{usec:06} ");
    let _ = match class {
        // Report lines carry no level.
        Some((name, u8::MAX)) => write!(line, "{name} "),
        // Class names padded to four as isakmpd's LOG_CLASSES_TEXT has them ("SA  ").
        Some((name, level)) => write!(line, "{name:<4} {level:02} "),
        None => line.write_str("Default "),
    };
    let _ = line.write_fmt(args);
    if crate::sys::getuid() == 0 {
        let _ = line.write_str(" [priv]");
    }
    // One write(2) per line (stderr is unbuffered), so lines from the privileged parent
    // and the child do not interleave mid-line.
    let _ = std::io::stderr().write_all(line.terminated(b'\n'));
}

struct Logger;

static LOGGER: Logger = Logger;

/// Installs the logger. `to_syslog` opens the syslog connection now (LOG_NDELAY), so that
/// it survives the chroot of the unprivileged child.
pub fn init(to_syslog: bool, verbose: bool) {
    SYSLOG.store(to_syslog, Ordering::Relaxed);
    set_verbose(verbose);
    // The first localtime_r loads the time zone (glibc: reads /etc/localtime and
    // allocates, once per process). Do it now, before the chroot, where the file is
    // missing and the stamps would silently turn to UTC, and off the packet path.
    let _ = crate::sys::local_time_of_day();
    if to_syslog {
        crate::sys::openlog(
            c"isakmpd",
            libc::LOG_PID | libc::LOG_NDELAY,
            libc::LOG_DAEMON,
        );
    }
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        match m.level() {
            log::Level::Error | log::Level::Warn => true,
            // `log::debug!` lines (the IKEv2 engine's, per dropped datagram among them)
            // only with -v: unconditional, they would let a flood fill the log. (The
            // IKEv1 engine's debug lines take `ike_debug!`, gated by class and level.)
            log::Level::Info | log::Level::Debug | log::Level::Trace => verbose(),
        }
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let prio = match r.level() {
            log::Level::Error => libc::LOG_ERR,
            log::Level::Warn => libc::LOG_WARNING,
            log::Level::Info => libc::LOG_NOTICE,
            _ => libc::LOG_DEBUG,
        };
        emit(prio, None, *r.args());
    }

    fn flush(&self) {}
}

/// The longest line we log, terminator included. Longer lines come only from a
/// pathological argument (a peer's ID string, say); they are cut, not split.
const LINE_MAX: usize = 1024;

/// A log line being formatted: a fixed buffer that keeps one byte free for the
/// terminator (NUL for syslog, newline for stderr), replaces NUL bytes with spaces (they
/// would cut a syslog message short) and, when the text does not fit, ends it in "...".
struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
    truncated: bool,
}

impl Line {
    const CAP: usize = LINE_MAX - 1;

    fn new() -> Self {
        Self {
            buf: [0; LINE_MAX],
            len: 0,
            truncated: false,
        }
    }

    /// The text followed by `end`.
    fn terminated(&mut self, end: u8) -> &[u8] {
        self.buf[self.len] = end;
        &self.buf[..=self.len]
    }

    /// The text as a C string for syslog(3). `None` cannot happen (no NUL is ever stored),
    /// but costs nothing to handle.
    fn c_str(&mut self) -> Option<&CStr> {
        CStr::from_bytes_with_nul(self.terminated(0)).ok()
    }

    /// Replaces the end of a full buffer with "...", cut on a character boundary.
    fn mark_truncated(&mut self) {
        let mut at = Self::CAP - 3;
        while at > 0 && self.buf[at] & 0xc0 == 0x80 {
            at -= 1;
        }
        self.buf[at..at + 3].copy_from_slice(b"...");
        self.len = at + 3;
        self.truncated = true;
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.truncated {
            return Err(fmt::Error);
        }
        let room = Self::CAP - self.len;
        let take = s.len().min(room);
        let dst = &mut self.buf[self.len..self.len + take];
        dst.copy_from_slice(&s.as_bytes()[..take]);
        for b in dst.iter_mut().filter(|b| **b == 0) {
            *b = b' ';
        }
        self.len += take;
        if take < s.len() {
            self.mark_truncated();
            // Stop formatting: nothing more will fit.
            return Err(fmt::Error);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test touches the global levels so that parallel tests cannot race on them.
    #[test]
    fn levels_and_toggle() {
        set_all_debug_levels(0);
        assert!(!debug_enabled(DebugClass::Exchange, 1));
        set_debug_level(DebugClass::Exchange, 50);
        assert!(debug_enabled(DebugClass::Exchange, 50));
        assert!(!debug_enabled(DebugClass::Exchange, 51));
        assert!(!debug_enabled(DebugClass::Sa, 1));
        toggle_debug();
        assert_eq!(debug_level(DebugClass::Exchange), 0);
        toggle_debug();
        assert_eq!(debug_level(DebugClass::Exchange), 50);
        set_debug_level(DebugClass::Ui, 200);
        assert_eq!(debug_level(DebugClass::Ui), MAX_DEBUG_LEVEL);
        set_all_debug_levels(0);
        assert_eq!(DebugClass::from_index(10), Some(DebugClass::Ui));
        assert_eq!(DebugClass::from_index(11), None);
    }

    fn text(l: &mut Line) -> &[u8] {
        let n = l.len;
        &l.terminated(b'\n')[..n]
    }

    #[test]
    fn line_fits_replaces_nul_and_cuts() {
        let mut l = Line::new();
        write!(l, "{:<4} a\0b{}", "SA", 7).unwrap();
        assert_eq!(text(&mut l), b"SA   a b7");
        assert_eq!(l.terminated(b'\n'), b"SA   a b7\n");
        assert_eq!(l.c_str().unwrap().to_bytes(), b"SA   a b7");

        // Exactly full: not cut.
        let mut l = Line::new();
        let full = "x".repeat(Line::CAP);
        l.write_str(&full).unwrap();
        assert_eq!(text(&mut l), full.as_bytes());
        assert_eq!(l.terminated(0).len(), LINE_MAX);

        // One byte more, in a later piece: cut, marked, and further pieces ignored.
        assert!(write!(l, "yz").is_err());
        assert_eq!(l.len, Line::CAP);
        assert!(text(&mut l).ends_with(b"xxx..."));
        assert!(l.write_str("more").is_err());
        assert_eq!(l.len, Line::CAP);

        // A long argument with NULs: cut in one piece.
        let mut l = Line::new();
        let long = "\0".repeat(3 * LINE_MAX);
        assert!(write!(l, "head {long} tail").is_err());
        let t = text(&mut l);
        assert_eq!(t.len(), Line::CAP);
        assert!(t.starts_with(b"head    "));
        assert!(t.ends_with(b"   ..."));
        assert!(!t.contains(&0));
        assert!(l.c_str().is_some());

        // A cut never splits a character: "é" is two bytes.
        for pad in 0..4 {
            let mut l = Line::new();
            let s = "a".repeat(pad) + &"é".repeat(LINE_MAX);
            assert!(l.write_str(&s).is_err());
            let t = text(&mut l).to_vec();
            let s = std::str::from_utf8(&t).expect("valid UTF-8");
            assert!(s.ends_with("é..."), "{pad}");
            assert!(t.len() >= Line::CAP - 1);
        }
    }
}
