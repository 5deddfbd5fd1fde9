//! Command line of isakmpd(8).
//!
//! The flag set is the one of the current manual (`-46adKLnSTv -c -D -f -i -l -N -p -R`)
//! plus `-r seed` and `-P local-port` from the older one (`-P` is a documented no-op, as it
//! always was in the C daemon). Parsing follows getopt(3): flags may be bundled (`-dv`), a
//! value may be attached (`-p1500`) or the next word (`-p 1500`), `--` ends the options, and
//! no operands are accepted. Any error is a [`UsageError`]; `main` prints it and the usage
//! line to stderr and exits 1.

#![forbid(unsafe_code)]

use std::fmt;

use crate::log::{DebugClass, MAX_DEBUG_LEVEL};

/// Defaults as isakmpd(8) lists them in FILES.
pub const DEFAULT_CONFIG: &str = "/etc/isakmpd/isakmpd.conf";
pub const DEFAULT_FIFO: &str = "/var/run/isakmpd.fifo";
pub const DEFAULT_PID: &str = "/var/run/isakmpd.pid";
pub const DEFAULT_REPORT: &str = "/var/run/isakmpd.report";
pub const DEFAULT_PCAP: &str = "/var/run/isakmpd.pcap";
pub const RESULT_FILE: &str = "/var/run/isakmpd.result";
/// The only directory under which -i, -l, -R and `p on=` may name files.
pub const RUN_DIR: &str = "/var/run/";

pub const USAGE: &str =
    "usage: isakmpd [-46adKLnSTv] [-c config-file] [-D class=level] [-f fifo]\n\
\x20              [-i pid-file] [-l packetlog-file] [-N udpencap-port]\n\
\x20              [-p listen-port] [-P local-port] [-R report-file] [-r seed]";

/// Which address families to use (-4, -6; both by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Families {
    pub inet: bool,
    pub inet6: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub families: Families,
    /// -a: do not set up flows, only SAs.
    pub acquire_only: bool,
    pub config: String,
    /// -D class=level, in the order given.
    pub debug: Vec<(DebugSelector, u8)>,
    /// -d: stay in the foreground and log to stderr.
    pub foreground: bool,
    /// -f: FIFO path, `-` for stdin.
    pub fifo: String,
    pub pid_file: String,
    /// -K: no KeyNote policy.
    pub no_keynote: bool,
    /// -L / -l: cleartext IKE packet capture file.
    pub pcap: Option<String>,
    /// -n: do not touch the kernel's IPsec state.
    pub no_kernel: bool,
    /// -N: UDP encapsulation (NAT-T) port.
    pub udpencap_port: u16,
    /// -p: IKE listen port.
    pub listen_port: u16,
    /// -P: accepted for compatibility; does nothing (as in the C daemon).
    pub local_port: Option<u16>,
    /// -r: deterministic random sequence for regression runs.
    pub seed: Option<u64>,
    pub report_file: String,
    /// -S: start passive (sasyncd/carp), send no DELETEs at shutdown.
    pub passive: bool,
    /// -T: do not advertise or use NAT traversal.
    pub no_nat_t: bool,
    /// -v: log completed exchanges.
    pub verbose: bool,
    /// Started as iked(8): its control socket and macros (see `crate::iked`).
    pub iked: Option<crate::iked::IkedOpts>,
}

/// The class part of `-D class=level` and of FIFO `D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugSelector {
    One(DebugClass),
    All,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            families: Families {
                inet: true,
                inet6: true,
            },
            acquire_only: false,
            config: DEFAULT_CONFIG.into(),
            debug: Vec::new(),
            foreground: false,
            fifo: DEFAULT_FIFO.into(),
            pid_file: DEFAULT_PID.into(),
            no_keynote: false,
            pcap: None,
            no_kernel: false,
            udpencap_port: 4500,
            listen_port: 500,
            local_port: None,
            seed: None,
            report_file: DEFAULT_REPORT.into(),
            passive: false,
            no_nat_t: false,
            verbose: false,
            iked: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Flags that take a value.
const WITH_VALUE: &[u8] = b"cDfilNpPRr";
/// Flags that do not.
const PLAIN: &[u8] = b"46adKLnSTv";

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Options, UsageError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut o = Options::default();
    let (mut saw4, mut saw6) = (false, false);
    getopt(args, PLAIN, WITH_VALUE, |flag, value| {
        match (flag, value) {
            (b'4', None) => saw4 = true,
            (b'6', None) => saw6 = true,
            (b'a', None) => o.acquire_only = true,
            (b'd', None) => o.foreground = true,
            (b'K', None) => o.no_keynote = true,
            (b'L', None) => o.pcap = Some(DEFAULT_PCAP.into()),
            (b'n', None) => o.no_kernel = true,
            (b'S', None) => o.passive = true,
            (b'T', None) => o.no_nat_t = true,
            (b'v', None) => o.verbose = true,
            (_, Some(v)) => apply_value(&mut o, flag, v)?,
            _ => unreachable!("getopt passes only the flags of PLAIN and WITH_VALUE"),
        }
        Ok(())
    })?;
    if saw4 || saw6 {
        o.families = Families {
            inet: saw4,
            inet6: saw6,
        };
    }
    Ok(o)
}

/// getopt(3) over the arguments after the program name: flags may be bundled (`-dv`), a
/// value attached (`-p1500`) or the next word (`-p 1500`), `--` ends the options, and no
/// operands are accepted. `on_flag` gets each flag of `plain` with None and each flag of
/// `with_value` with its value, in order.
pub fn getopt<I, S>(
    args: I,
    plain: &[u8],
    with_value: &[u8],
    mut on_flag: impl FnMut(u8, Option<&str>) -> Result<(), UsageError>,
) -> Result<(), UsageError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let args: Vec<String> = args.into_iter().map(|s| s.as_ref().to_owned()).collect();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            return Err(UsageError(format!("unexpected argument '{arg}'")));
        }
        let bytes = arg.as_bytes();
        let mut j = 1;
        while j < bytes.len() {
            let flag = bytes[j];
            j += 1;
            if plain.contains(&flag) {
                on_flag(flag, None)?;
                continue;
            }
            if !with_value.contains(&flag) {
                return Err(UsageError(format!("unknown option -- {}", flag as char)));
            }
            // The value is the rest of this word, or else the next word.
            let value = if j < bytes.len() {
                let v = arg[j..].to_owned();
                j = bytes.len();
                v
            } else if i < args.len() {
                i += 1;
                args[i - 1].clone()
            } else {
                return Err(UsageError(format!(
                    "option requires an argument -- {}",
                    flag as char
                )));
            };
            on_flag(flag, Some(&value))?;
        }
    }
    if i < args.len() {
        return Err(UsageError(format!("unexpected argument '{}'", args[i])));
    }
    Ok(())
}

fn apply_value(o: &mut Options, flag: u8, value: &str) -> Result<(), UsageError> {
    match flag {
        b'c' => o.config = nonempty(flag, value)?.into(),
        b'D' => o.debug.push(parse_debug(value)?),
        b'f' => o.fifo = nonempty(flag, value)?.into(),
        b'i' => o.pid_file = run_path(flag, value)?,
        b'l' => o.pcap = Some(run_path(flag, value)?),
        b'N' => o.udpencap_port = port(flag, value)?,
        b'p' => o.listen_port = port(flag, value)?,
        b'P' => o.local_port = Some(port(flag, value)?),
        b'R' => o.report_file = run_path(flag, value)?,
        b'r' => {
            o.seed = Some(value.parse::<u64>().map_err(|_| {
                UsageError(format!("-r: seed '{value}' is not a non-negative integer"))
            })?)
        }
        _ => unreachable!("WITH_VALUE lists only the flags matched above"),
    }
    Ok(())
}

fn nonempty(flag: u8, value: &str) -> Result<&str, UsageError> {
    if value.is_empty() {
        return Err(UsageError(format!("-{}: empty argument", flag as char)));
    }
    Ok(value)
}

/// A port number; 0 is refused.
pub fn port(flag: u8, value: &str) -> Result<u16, UsageError> {
    match value.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(UsageError(format!(
            "-{}: '{value}' is not a port number (1-65535)",
            flag as char
        ))),
    }
}

/// -i, -l and -R (and FIFO `p on=`) may only name files under /var/run, as the manual says.
pub fn run_path(flag: u8, value: &str) -> Result<String, UsageError> {
    if !is_run_path(value) {
        return Err(UsageError(format!(
            "-{}: '{value}': only paths beginning with {RUN_DIR} are allowed",
            flag as char
        )));
    }
    Ok(value.into())
}

/// True for a path strictly under /var/run that does not climb out with `..`.
pub fn is_run_path(value: &str) -> bool {
    value.len() > RUN_DIR.len()
        && value.starts_with(RUN_DIR)
        && !value.split('/').any(|c| c == "..")
}

/// `class=level` for -D; class is 0-10 or A, level 0-99.
pub fn parse_debug(value: &str) -> Result<(DebugSelector, u8), UsageError> {
    let bad = || {
        UsageError(format!(
            "-D: '{value}' is not class=level (class 0-10 or A, level 0-{MAX_DEBUG_LEVEL})"
        ))
    };
    let (class, level) = value.split_once('=').ok_or_else(bad)?;
    let sel = parse_debug_class(class).ok_or_else(bad)?;
    let level = parse_debug_level(level).ok_or_else(bad)?;
    Ok((sel, level))
}

pub fn parse_debug_class(s: &str) -> Option<DebugSelector> {
    if s.eq_ignore_ascii_case("A") {
        return Some(DebugSelector::All);
    }
    let n: u8 = s.parse().ok()?;
    DebugClass::from_index(n).map(DebugSelector::One)
}

pub fn parse_debug_level(s: &str) -> Option<u8> {
    let n: u8 = s.parse().ok()?;
    (n <= MAX_DEBUG_LEVEL).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<Options, UsageError> {
        parse(a.iter().copied())
    }

    #[test]
    fn defaults() {
        let o = p(&[]).unwrap();
        assert_eq!(o, Options::default());
        assert_eq!(o.config, "/etc/isakmpd/isakmpd.conf");
        assert_eq!(o.listen_port, 500);
        assert_eq!(o.udpencap_port, 4500);
        assert!(o.families.inet && o.families.inet6);
    }

    #[test]
    fn every_plain_flag() {
        let o = p(&["-4", "-a", "-d", "-K", "-L", "-n", "-S", "-T", "-v"]).unwrap();
        assert_eq!(
            o.families,
            Families {
                inet: true,
                inet6: false
            }
        );
        assert!(o.acquire_only && o.foreground && o.no_keynote && o.no_kernel);
        assert!(o.passive && o.no_nat_t && o.verbose);
        assert_eq!(o.pcap.as_deref(), Some(DEFAULT_PCAP));
        let o = p(&["-6"]).unwrap();
        assert_eq!(
            o.families,
            Families {
                inet: false,
                inet6: true
            }
        );
        let o = p(&["-46"]).unwrap();
        assert_eq!(
            o.families,
            Families {
                inet: true,
                inet6: true
            }
        );
    }

    #[test]
    fn bundled_and_attached_values() {
        let o = p(&[
            "-dvp1500",
            "-N",
            "4501",
            "-c/tmp/x.conf",
            "-r",
            "42",
            "-P",
            "1234",
        ])
        .unwrap();
        assert!(o.foreground && o.verbose);
        assert_eq!(o.listen_port, 1500);
        assert_eq!(o.udpencap_port, 4501);
        assert_eq!(o.config, "/tmp/x.conf");
        assert_eq!(o.seed, Some(42));
        assert_eq!(o.local_port, Some(1234));
    }

    #[test]
    fn run_paths() {
        let o = p(&[
            "-i",
            "/var/run/a.pid",
            "-R",
            "/var/run/a.rep",
            "-l",
            "/var/run/a.pcap",
        ])
        .unwrap();
        assert_eq!(o.pid_file, "/var/run/a.pid");
        assert_eq!(o.report_file, "/var/run/a.rep");
        assert_eq!(o.pcap.as_deref(), Some("/var/run/a.pcap"));
        for bad in [
            "/tmp/a.pid",
            "/var/run/",
            "/var/run/../etc/passwd",
            "var/run/x",
            "/var/runx",
        ] {
            assert!(p(&["-i", bad]).is_err(), "{bad}");
            assert!(p(&["-R", bad]).is_err(), "{bad}");
            assert!(p(&["-l", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_classes() {
        let o = p(&["-D", "7=80", "-DA=10", "-D", "10=0"]).unwrap();
        assert_eq!(
            o.debug,
            vec![
                (DebugSelector::One(DebugClass::Exchange), 80),
                (DebugSelector::All, 10),
                (DebugSelector::One(DebugClass::Ui), 0)
            ]
        );
        for bad in ["11=1", "x=1", "1", "1=100", "1=-1", "=5", "A="] {
            assert!(p(&["-D", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors() {
        for bad in [
            &["-x"][..],
            &["-p"],
            &["-p", "0"],
            &["-p", "65536"],
            &["-p", "isakmp"],
            &["-N", "-1"],
            &["-r", "seed"],
            &["extra"],
            &["-d", "extra"],
            &["-"],
            &["-c", ""],
            &["-dz"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
        // `--` ends options; an operand after it is still refused.
        assert!(p(&["-d", "--"]).is_ok());
        assert!(p(&["--", "x"]).is_err());
    }
}
