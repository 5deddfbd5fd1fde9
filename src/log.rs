//! Logging: syslog(3) with facility daemon, or stderr under -d.
//!
//! As in isakmpd, the daemon is quiet by default: errors and warnings only. `-v` adds the
//! `info` lines (completed phase 1 and phase 2 exchanges, reloads). Debug output is per
//! class (`-D class=level`, FIFO `D`): a message of class C and level L is printed when the
//! level set for C is at least L. Levels live in atomics so the sans-IO core can ask
//! [`debug_enabled`] without any handle; the check is one relaxed load.
//!
//! Nothing here ever formats key material: callers pass only public values.

#![forbid(unsafe_code)]

use std::ffi::CString;
use std::io::Write;
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
            ::log::debug!(target: $class.name(), $($arg)+);
        }
    };
}

struct Logger;

static LOGGER: Logger = Logger;

/// Installs the logger. `to_syslog` opens the syslog connection now (LOG_NDELAY), so that
/// it survives the chroot of the unprivileged child.
pub fn init(to_syslog: bool, verbose: bool) {
    SYSLOG.store(to_syslog, Ordering::Relaxed);
    set_verbose(verbose);
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
            log::Level::Info => verbose(),
            // Debug lines are gated per class by `ike_debug!` before they get here.
            log::Level::Debug | log::Level::Trace => true,
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
        let class = if matches!(r.level(), log::Level::Debug | log::Level::Trace) {
            r.target()
        } else {
            ""
        };
        if SYSLOG.load(Ordering::Relaxed) {
            let msg = if class.is_empty() {
                format!("{}", r.args())
            } else {
                format!("{class} {}", r.args())
            };
            let Ok(c) = CString::new(msg.replace('\0', " ")) else {
                return;
            };
            crate::sys::syslog(prio, &c);
        } else {
            let stamp = timestamp();
            let mut e = std::io::stderr().lock();
            let _ = if class.is_empty() {
                writeln!(e, "{stamp} {}", r.args())
            } else {
                writeln!(e, "{stamp} {class:<4} {}", r.args())
            };
        }
    }

    fn flush(&self) {}
}

/// `HHMMSS.uuuuuu` in local time, the stamp isakmpd -d puts on each line.
fn timestamp() -> String {
    let (hour, min, sec, usec) = crate::sys::local_time_of_day();
    format!("{:02}{:02}{:02}.{:06}", hour, min, sec, usec)
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
}
