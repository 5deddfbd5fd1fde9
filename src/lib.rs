//! isakmpd: an ISAKMP/IKEv1 key management daemon, after OpenBSD's isakmpd(8).
//!
//! Layout (see STYLE §10.1): `event` is the poll loop and the only clock reader; `timer`
//! the wheel; `ike` the sans-IO protocol engine; `udp`, `fifo`, `monitor` the descriptors
//! it multiplexes; `kernel` (with `kernel::xfrm` and `kernel::pfkey`) the kernel's IPsec
//! tables; `conf` isakmpd.conf(5); `report` the report and result files; `daemon` startup
//! and the privileged parent.

use std::sync::atomic::{AtomicBool, Ordering};

pub mod admin;
pub mod args;
pub mod conf;
pub mod daemon;
pub mod event;
pub mod fifo;
pub mod fuzzing;
pub mod ike;
pub mod iked;
pub mod ikev2;
pub mod ipsecctl;
pub mod kernel;
pub mod keynote;
pub mod log;
pub mod monitor;
pub mod pcap;
pub mod pki;
pub mod report;
pub mod signal;
pub mod sys;
pub mod timer;
pub mod udp;

static STDERR_LOG: AtomicBool = AtomicBool::new(false);

/// True when log lines already go to stderr (-d).
pub fn log_to_stderr() -> bool {
    STDERR_LOG.load(Ordering::Relaxed)
}

pub fn set_log_to_stderr(v: bool) {
    STDERR_LOG.store(v, Ordering::Relaxed);
}
