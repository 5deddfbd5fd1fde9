//! isakmpd.policy as the daemon keeps it (policy.c `policy_init`): whether KeyNote is in
//! force, where the file is, reading it, and the answer the engine asks for.

use std::io::Read;
use std::os::fd::OwnedFd;

use super::{Loaded, Policy};
use crate::conf::Conf;
use crate::ike::policy::{ProposalPolicy, WallClock};

/// isakmpd's default `[General]:Policy-file`.
pub const DEFAULT_FILE: &str = "/etc/isakmpd/isakmpd.policy";

/// The compliance values isakmpd queries with, least trusted first (`check_policy`).
pub const VALUES: [&str; 2] = ["false", "true"];

/// The policy in force and the file it came from.
#[derive(Debug)]
pub struct Enforced {
    pub path: String,
    pub policy: Policy,
}

impl ProposalPolicy for Enforced {
    fn allows(
        &self,
        attrs: &dyn Fn(&str) -> Option<String>,
        principals: &[String],
        assertions: &[String],
    ) -> bool {
        let session = Policy::session(assertions);
        self.policy.query_with(attrs, principals, &VALUES, &session) == 1
    }
}

/// The policy file to read, or `None` when KeyNote is off: `-K`, or `[General]:Use-Keynote`
/// not beginning with "yes" (policy.c compares three characters).
pub fn policy_file(conf: &Conf, no_keynote: bool) -> Option<String> {
    if no_keynote {
        return None;
    }
    let on = conf
        .get("General", "Use-Keynote")
        .is_some_and(|v| v.starts_with("yes"));
    if !on {
        return None;
    }
    Some(
        conf.get("General", "Policy-file")
            .map_or_else(|| DEFAULT_FILE.to_string(), |v| v.into_owned()),
    )
}

/// Reads and parses the policy file from `fd` (opened and checked for secrecy by the
/// caller). Skipped assertions are logged with their line; a file that cannot be read is
/// an error.
pub fn read(fd: OwnedFd, path: &str) -> Result<Enforced, String> {
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(super::MAX_FILE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{path}: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    let Loaded { policy, warnings } = Policy::parse(&text);
    for w in &warnings {
        crate::log_warn!("{path}: {w}");
    }
    if policy.is_empty() {
        // policy.c: "all policies flushed"; every proposal is refused then.
        crate::log_warn!("{path}: no usable assertion: every proposal will be refused");
    }
    Ok(Enforced {
        path: path.to_string(),
        policy,
    })
}

/// Opens `path` as isakmpd.conf is opened (a regular file, not readable or writable by
/// others, owned by root or us) and reads it (startup, before privileges are dropped).
pub fn load(path: &str) -> Result<Enforced, String> {
    read(crate::monitor::open_config(path)?, path)
}

/// The wall clock for GMTTimeOfDay and LocalTimeOfDay (the event loop's, not the engine's).
pub fn wall_clock() -> WallClock {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    WallClock {
        unix,
        utc_offset: crate::sys::utc_offset(unix),
    }
}

/// The report's "keynote:" line: what is in force, or why nothing is.
pub fn describe(k: Option<&Enforced>, off: &str) -> String {
    match k {
        Some(e) => format!(
            "on ({}, {} assertion{})",
            e.path,
            e.policy.len(),
            if e.policy.len() == 1 { "" } else { "s" }
        ),
        None => format!("off ({off})"),
    }
}

/// Why KeyNote is off when [`policy_file`] gives no file.
pub fn off_reason(no_keynote: bool) -> String {
    if no_keynote {
        "-K".to_string()
    } else {
        "[General]:Use-Keynote".to_string()
    }
}
