//! ipsecctl(8) as a personality of the binary: reads ipsec.conf(5) `ike` rules and writes
//! the isakmpd FIFO command stream OpenBSD's ipsecctl writes for them, so that
//! `isakmpd -K` can be configured the way OpenBSD administrators do it.
//!
//! Options as in ipsecctl.c: `-f file` (`-` for stdin), `-n` (parse only), `-v` (print
//! the stream; `-vv` numbers the rules), `-d` (the stream that deletes the rules),
//! `-D macro=value`, `-i fifo` (default /var/run/isakmpd.fifo), `-k` (print keys),
//! `-c` (collapse flows), `-s flow|sa|all` (show.rs: the flows and SAs of the running
//! isakmpd, asked over its FIFO), `-F` (flush the kernel's SAs and policies; with `-n`
//! nothing, as in ipsecctl), `-m` (monitor: on Linux the XFRM netlink groups, printed
//! in ipsecctl's PF_KEY monitor layout, pfkmon.rs; runs until interrupted).
//!
//! Where this ipsecctl differs from OpenBSD's, on purpose or for now:
//! - `flow`, `sa` (esp/ah/ipcomp/ipip with keys) and `tcpmd5` rules are parsed, checked
//!   and printed as ipsecctl does (`-nv`, sarule.rs, kernel.rs). On Linux, flows and
//!   esp/ah SAs are loaded (and `-d` deleted) through XFRM (load.rs); what XFRM cannot
//!   express (tcpmd5, ipcomp, ipip, bundles) is refused naming the line, and then
//!   nothing loads. Elsewhere such a file is refused.
//! - `-s` shows what isakmpd negotiated (its phase 2 SAs and their flows), not the
//!   kernel's tables: no keys, no identities, no manual SAs.
//! - an interface name as a host (`em0`, `from eth0 to ...`) stands for the interface's
//!   addresses, as ipsecctl's `host_if` has it (IPv6 link-local ones left out, each a
//!   host named after the interface: flows print the addresses, ike rules the name, as
//!   ike.c does); of the interface groups only `egress` exists on Linux: the interfaces
//!   of the default routes (/proc/net/route, /proc/net/ipv6_route).
//! - protocol and port names come from built-in tables (OpenBSD's /etc/protocols and the
//!   common /etc/services entries), not from the host's files.
//! - the FIFO is written without first opening PF_KEY (ipsecctl's `pfkey_init`).
//!
//! Modules follow the C: `lex` (yylex), `parse` and `sarule` (the grammar), `host`
//! (addresses), `rule` (the rule and transform tables), `ike` (ike.c), `kernel` (the
//! flow/SA rules and their printers), `show` (`-s`).

#![forbid(unsafe_code)]

pub mod host;
pub mod ike;
pub mod kernel;
pub mod lex;
#[cfg(target_os = "linux")]
mod load;
pub mod parse;
mod pfkmon;
pub mod rule;
mod sarule;
pub mod show;

use std::io::Write;

pub const USAGE: &str =
    "usage: ipsecctl [-cdFkmnv] [-D macro=value] [-f file] [-i fifo] [-s modifier]";
pub const DEFAULT_FIFO: &str = "/var/run/isakmpd.fifo";

/// What the command line asks for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Opts {
    pub file: Option<String>,
    pub delete: bool,
    pub noaction: bool,
    pub verbose: u8,
    pub flush: bool,
    pub monitor: bool,
    /// `-k`: keys are printed.
    pub showkey: bool,
    /// `-c`: flows are collapsed.
    pub collapse: bool,
    pub show: Option<&'static str>,
    pub fifo: Option<String>,
    pub macros: Vec<String>,
    /// Not an ipsecctl option: host names are not resolved (only numeric addresses and
    /// `any`), for tests that must not wait on a resolver.
    pub no_dns: bool,
}

/// An OS error's text without Rust's " (os error N)".
pub fn os_msg(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// getopt(3) over "cD:df:Fi:kmnvs:".
pub fn options(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    if args.is_empty() {
        return Err(String::new());
    }
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a.len() < 2 {
            break;
        }
        let b = a.as_bytes();
        let mut j = 1;
        while j < b.len() {
            let c = b[j];
            j += 1;
            let mut value = || -> Result<String, String> {
                if j < b.len() {
                    let v = a[j..].to_string();
                    j = b.len();
                    Ok(v)
                } else {
                    i += 1;
                    args.get(i)
                        .cloned()
                        .ok_or_else(|| format!("option requires an argument -- {}", c as char))
                }
            };
            match c {
                b'c' => o.collapse = true,
                b'k' => o.showkey = true,
                b'D' => o.macros.push(value()?),
                b'd' => o.delete = true,
                b'f' => o.file = Some(value()?),
                b'F' => o.flush = true,
                b'i' => o.fifo = Some(value()?),
                b'm' => o.monitor = true,
                b'n' => o.noaction = true,
                b'v' => o.verbose = o.verbose.saturating_add(1),
                b's' => {
                    let v = value()?;
                    let found = ["flow", "sa", "all"]
                        .into_iter()
                        .find(|m| !v.is_empty() && m.starts_with(v.as_str()));
                    match found {
                        Some(m) => o.show = Some(m),
                        None => return Err(format!("Unknown show modifier '{v}'")),
                    }
                }
                other => {
                    return Err(format!(
                        "unknown option -- {}",
                        String::from_utf8_lossy(&[other])
                    ))
                }
            }
        }
        i += 1;
    }
    if let Some(a) = args.get(i) {
        return Err(format!("unknown command line argument: {a} ..."));
    }
    Ok(o)
}

/// `check_file_secrecy`: the rules file must be the caller's or root's and not group
/// writable or world accessible (it may hold pre-shared keys).
fn check_secrecy(name: &str) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(name).map_err(|e| format!("cannot stat {name}: {}", os_msg(&e)))?;
    let uid = crate::sys::getuid();
    if md.uid() != 0 && md.uid() != uid {
        return Err(format!("{name}: owner not root or current user"));
    }
    if md.mode() & 0o077 & !0o040 != 0 {
        return Err(format!("{name}: group writable or world read/writable"));
    }
    Ok(())
}

/// Reads the top rules file (`pushfile(name, 1)`).
fn open_top(lex: &mut lex::Lexer, name: &str) -> Result<(), String> {
    if name == "-" {
        use std::io::Read;
        let mut data = Vec::new();
        std::io::stdin()
            .lock()
            .take(lex::MAX_FILE + 1)
            .read_to_end(&mut data)
            .map_err(|e| format!("pushfile: stdin: {}", os_msg(&e)))?;
        if data.len() as u64 > lex::MAX_FILE {
            return Err("pushfile: stdin: file too large".into());
        }
        lex.push_data("stdin", data);
        return Ok(());
    }
    let data = lex::read_bounded(name).map_err(|e| format!("pushfile: {name}: {}", os_msg(&e)))?;
    check_secrecy(name)?;
    lex.push_data(name, data);
    Ok(())
}

/// The result of reading a rules file: what ipsecctl printed and whether it failed.
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub rules: Vec<rule::Rule>,
    /// `flow`, `sa` and `tcpmd5` rules and bundles.
    pub kernel: Vec<kernel::KRule>,
    /// Parse errors, or a fatal error: the rules are not to be loaded.
    pub failed: bool,
}

/// Parses a rules file from its bytes as `ipsecctl -f` does, printing (into the outcome)
/// what `-v` prints. `hostname` stands for gethostname(3) (the default srcid of
/// `dynamic` rules), so that tests do not depend on the machine.
pub fn parse_rules(
    name: &str,
    data: Option<Vec<u8>>,
    opts: &Opts,
    hostname: std::rc::Rc<dyn Fn() -> String>,
) -> Outcome {
    let mut lex = lex::Lexer::new();
    for m in &opts.macros {
        match m.rfind('=') {
            Some(i) => lex.symset(&m[..i], &m[i + 1..], true),
            None => lex
                .stderr
                .push_str(&format!("ipsecctl: could not parse macro definition {m}\n")),
        }
    }
    let opened = match data {
        Some(d) => {
            lex.push_data(name, d);
            Ok(())
        }
        None => open_top(&mut lex, name),
    };
    if let Err(e) = opened {
        return Outcome {
            stderr: format!(
                "{}ipsecctl: {e}\nipsecctl: Syntax error in config file: ipsec rules not loaded\n",
                lex.stderr
            ),
            stdout: String::new(),
            rules: Vec::new(),
            kernel: Vec::new(),
            failed: true,
        };
    }
    // ipsecctl_add_rule prints rules under -v unless -s is given; varset prints always.
    let verbose = opts.verbose > 0 && opts.show.is_none();
    let (delete, vv) = (opts.delete, opts.verbose > 1);
    let on_rule: parse::OnRule = Box::new(move |r, out, err| {
        if !verbose {
            return;
        }
        if vv {
            out.push_str(&format!("@{} ", r.nr));
        }
        if delete {
            ike::delete_config(r, out);
        } else if let Err(w) = ike::gen_config(r, out, &*hostname) {
            err.push_str(&format!("ipsecctl: {w}\n"));
        }
    });
    let mut p = parse::Parser::new(lex, opts.verbose > 0, on_rule);
    p.dns = !opts.no_dns;
    p.print_rules = verbose;
    p.vv = vv;
    p.popts = kernel::PrintOpts {
        showkey: opts.showkey,
        collapse: opts.collapse,
    };
    let res = p.run();
    let mut stderr = std::mem::take(&mut p.lex.stderr);
    let stdout = std::mem::take(&mut p.stdout);
    if let Err(f) = res {
        stderr.push_str(&format!("ipsecctl: {f}\n"));
        return Outcome {
            stdout,
            stderr,
            rules: Vec::new(),
            kernel: Vec::new(),
            failed: true,
        };
    }
    if opts.verbose > 1 {
        for m in p.lex.unused_macros() {
            stderr.push_str(&format!("warning: macro '{m}' not used\n"));
        }
    }
    let failed = p.lex.errors > 0;
    if failed {
        stderr.push_str("ipsecctl: Syntax error in config file: ipsec rules not loaded\n");
    }
    Outcome {
        stdout,
        stderr,
        rules: std::mem::take(&mut p.rules),
        kernel: std::mem::take(&mut p.kernel),
        failed,
    }
}

/// `ike_ipsec_establish`: writes one rule's stream to the FIFO.
fn establish(fifo: &str, text: &str) -> Result<(), String> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(fifo)
        .map_err(|e| format!("ike_ipsec_establish: open({fifo}): {}", os_msg(&e)))?;
    let md = f
        .metadata()
        .map_err(|e| format!("ike_ipsec_establish: fstat({fifo}): {}", os_msg(&e)))?;
    if !md.file_type().is_fifo() {
        return Err(format!("ike_ipsec_establish: {fifo} not a fifo"));
    }
    f.write_all(text.as_bytes())
        .map_err(|e| format!("ike_ipsec_establish: write({fifo}): {}", os_msg(&e)))
}

/// Loads (or deletes) the flow and SA rules: XFRM on Linux, refused elsewhere.
fn load_kernel(rules: &[kernel::KRule], delete: bool) -> bool {
    #[cfg(target_os = "linux")]
    {
        load::commit(rules, delete)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = delete;
        for r in rules {
            eprintln!(
                "ipsecctl: {}: {}: flow, sa and tcpmd5 rules are not loaded on this system",
                r.file, r.line
            );
        }
        eprintln!("ipsecctl: nothing loaded");
        false
    }
}

/// `-F`: XFRM's SAs and policies on Linux.
fn flush_kernel() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        load::flush()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err("-F is not supported on this system".into())
    }
}

pub fn main(args: Vec<String>) -> i32 {
    let o = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("ipsecctl: {e}");
            }
            eprintln!("{USAGE}");
            return 1;
        }
    };
    let mut error = 0;
    if o.flush && !o.noaction {
        if let Err(e) = flush_kernel() {
            eprintln!("ipsecctl: {e}");
            return 1;
        }
    }
    if let Some(file) = &o.file {
        let host: std::rc::Rc<dyn Fn() -> String> =
            std::rc::Rc::new(|| crate::sys::hostname().unwrap_or_default());
        let out = parse_rules(file, None, &o, host.clone());
        // stdio: stderr is unbuffered, stdout is line-buffered on a terminal and
        // flushed at exit otherwise, so `ipsecctl ... 2>&1 | cat` has the messages
        // before the rules (as the ipsecfail/ikefail regress files show).
        use std::io::IsTerminal;
        let mut so = std::io::stdout().lock();
        if so.is_terminal() {
            let _ = so.write_all(out.stdout.as_bytes());
            let _ = so.flush();
            eprint!("{}", out.stderr);
        } else {
            eprint!("{}", out.stderr);
            let _ = so.write_all(out.stdout.as_bytes());
            let _ = so.flush();
        }
        if out.failed {
            error = 1;
        } else if !o.noaction && !out.kernel.is_empty() && !load_kernel(&out.kernel, o.delete) {
            // ipsecctl_commit: pfkey_ipsec_establish (XFRM on Linux, load.rs).
            error = 1;
        } else if !o.noaction {
            let fifo = o.fifo.clone().unwrap_or_else(|| DEFAULT_FIFO.to_string());
            for mut r in out.rules {
                let mut text = String::new();
                let res = if o.delete {
                    ike::delete_config(&r, &mut text);
                    Ok(())
                } else {
                    ike::gen_config(&mut r, &mut text, &*host)
                };
                if let Err(e) = establish(&fifo, &text) {
                    eprintln!("ipsecctl: {e}");
                    return 1;
                }
                if let Err(w) = res {
                    eprintln!("ipsecctl: {w}");
                    let what = if o.delete { "delete" } else { "add" };
                    eprintln!("ipsecctl: failed to {what} ike rule {}", r.nr);
                    error = 1;
                }
            }
        }
    }
    if let Some(m) = o.show {
        let fifo = o.fifo.clone().unwrap_or_else(|| DEFAULT_FIFO.to_string());
        match show::ask(&fifo, std::time::Duration::from_secs(5)) {
            Ok(text) => {
                let popts = kernel::PrintOpts {
                    showkey: o.showkey,
                    collapse: o.collapse,
                };
                let p2 = show::parse_result(&text);
                print!("{}", show::render(m, &p2, popts, o.verbose > 1));
                if o.showkey {
                    eprintln!("ipsecctl: -k: isakmpd does not tell the keys; none shown");
                }
            }
            Err(e) => {
                eprintln!("ipsecctl: -s {m}: {e}");
                error = 1;
            }
        }
    }
    if o.monitor && pfkmon::run(o.verbose > 0) != 0 {
        error = 1;
    }
    error
}
