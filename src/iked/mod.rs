//! iked(8) and ikectl(8): the IKEv2 personalities of the binary (issue 17).
//!
//! The binary is isakmpd(8), iked(8) or ikectl(8) by the name it is started under
//! (`main.rs`); `isakmpd --iked ...` and `isakmpd --ikectl ...` do the same for a binary
//! that cannot be linked under another name. iked shares everything with isakmpd but the
//! protocol engine and the administration channel: the same startup and privileged
//! parent (`daemon`), event loop (`event`), sockets, logging and capture. In the loop, a
//! datagram goes to the IKEv2 engine when its header says version 2 (`runtime`), and the
//! control socket (`control`) takes ikectl's commands where isakmpd reads its FIFO.
//!
//! The command line is seed 004's: `-dnSTtVv -D macro=value -f file -p udpencap_port
//! -s socket`. `-n` is iked's configtest (not isakmpd's "no kernel"); `-X` is ours: do not
//! touch the kernel's IPsec state (isakmpd's -n), for tests on a host without ESP.

#![forbid(unsafe_code)]

pub mod control;
pub mod ikectl;
pub mod monitor_ctl;
pub mod runtime;
pub mod users;

use crate::args::{getopt, port, Options, UsageError};

pub const DEFAULT_CONFIG: &str = "/etc/iked.conf";
pub const DEFAULT_SOCKET: &str = "/var/run/iked.sock";

/// The default capture file of `-L` (ours: iked(8) has no capture).
pub const DEFAULT_PCAP: &str = "/var/run/iked.pcap";
/// iked(8)'s privilege separation user, and the one isakmpd uses when it does not exist.
pub const PRIVSEP_USER: &str = "_iked";

pub const USAGE: &str = "usage: iked [-dnSTtVvX] [-D macro=value] [-f file] [-p udpencap_port]\n\
\x20           [-s socket]";

/// What iked's command line adds to the daemon's options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IkedOpts {
    /// -s: the control socket.
    pub socket: String,
    /// -D macro=value, in the order given; they override the file's definitions.
    pub macros: Vec<(String, String)>,
    /// -t (and -p): NAT-T enforced, only port 4500 is used.
    pub natt_only: bool,
}

/// What else the command line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mode {
    /// -n: check the configuration and exit.
    pub configtest: bool,
    /// -V: print the version and exit.
    pub version: bool,
}

/// Parses iked's arguments (after the program name) into the daemon's options.
pub fn parse_args<I, S>(args: I) -> Result<(Options, Mode), UsageError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut o = Options {
        config: DEFAULT_CONFIG.into(),
        // iked has no FIFO and no pid file.
        fifo: String::new(),
        pid_file: String::new(),
        ..Options::default()
    };
    let mut mode = Mode::default();
    let mut iked = IkedOpts {
        socket: DEFAULT_SOCKET.into(),
        ..IkedOpts::default()
    };
    getopt(args, b"dLnSTtVvX", b"Dflps", |flag, value| {
        match (flag, value) {
            (b'd', None) => o.foreground = true,
            (b'n', None) => mode.configtest = true,
            (b'S', None) => o.passive = true,
            (b'T', None) => o.no_nat_t = true,
            (b't', None) => iked.natt_only = true,
            (b'V', None) => mode.version = true,
            (b'v', None) => o.verbose = true,
            (b'X', None) => o.no_kernel = true,
            // Ours, as isakmpd's: the capture file, IKEv2 messages decrypted.
            (b'L', None) => o.pcap = Some(DEFAULT_PCAP.into()),
            (b'l', Some(v)) => o.pcap = Some(crate::args::run_path(flag, v)?),
            (b'D', Some(v)) => {
                let (k, val) = v
                    .split_once('=')
                    .filter(|(k, _)| valid_macro_name(k))
                    .ok_or_else(|| UsageError(format!("-D: '{v}' is not macro=value")))?;
                iked.macros.push((k.to_owned(), val.to_owned()));
            }
            (b'f', Some(v)) if !v.is_empty() => o.config = v.to_owned(),
            (b'p', Some(v)) => {
                o.udpencap_port = port(flag, v)?;
                iked.natt_only = true;
            }
            (b's', Some(v)) if !v.is_empty() => iked.socket = v.to_owned(),
            (f, _) => return Err(UsageError(format!("-{}: empty argument", f as char))),
        }
        Ok(())
    })?;
    if o.no_nat_t && iked.natt_only {
        return Err(UsageError("-T and -t (or -p) contradict each other".into()));
    }
    o.iked = Some(iked);
    Ok((o, mode))
}

/// A macro name as iked.conf(5) allows it: letters, digits and underscores, not starting
/// with a digit.
fn valid_macro_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// iked(8): returns the exit status.
pub fn main(args: Vec<String>) -> i32 {
    let (opts, mode) = match parse_args(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("iked: {e}");
            eprintln!("{USAGE}");
            return 1;
        }
    };
    if mode.version {
        println!("iked {} (isakmpd in Rust)", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    if mode.configtest {
        return configtest(&opts);
    }
    crate::daemon::run(opts)
}

/// `iked -n`: parse the file, print what is wrong (or, with -v, what was read), exit 0
/// when it is usable and 1 when not.
fn configtest(opts: &Options) -> i32 {
    let macros = opts.iked.as_ref().map(|i| &i.macros[..]).unwrap_or(&[]);
    match runtime::load(&opts.config, macros) {
        Ok(setup) => {
            for w in &setup.warnings {
                eprintln!("iked: {}: {w}", opts.config);
            }
            // What the daemon would warn about at startup: rules that sign while
            // /etc/iked/private/local.key is missing, or holds a key of another kind.
            let key = std::fs::read(crate::pki::Paths::iked().key)
                .ok()
                .and_then(|b| crate::ike::crypto::PrivateKey::from_pem(&b).ok())
                .map(|k| k.kind());
            for w in runtime::signature_warnings(&setup.policy, key) {
                eprintln!("iked: {w}");
            }
            if opts.verbose {
                print!("{}", setup.describe());
            }
            eprintln!("configuration OK");
            0
        }
        Err(e) => {
            eprintln!("iked: {e}");
            1
        }
    }
}
