//! `ipsecctl -s flow|sa|all` (ipsecctl.c `ipsecctl_show`): OpenBSD's reads the kernel's
//! SPD and SAD through sysctl(2); this one asks the running isakmpd over its FIFO for
//! its SA list (FIFO command `S`, answered in `isakmpd.result` beside the FIFO) and
//! prints each phase 2 SA's two kernel SAs and two flows in ipsecctl's formats
//! (`pfkey_print_sa`, `ipsecctl_print_flow`).
//!
//! What the daemon does not tell is not made up: the SAs are shown without keys (`-k`
//! has nothing to show), and flows without identities. As isakmpd sets them up, the
//! inbound flow is of type `use` and the outbound one `require`.

use super::host::{host_with, Addr};
use super::kernel::{self, Dir, Flow, FlowType, KSatype, PrintOpts, Sa};
use super::rule::{parse_xf, Xfs, AUTHXFS, ENCXFS};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One phase 2 SA of the result file, as far as ipsecctl shows it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct P2 {
    pub local: String,
    pub remote: String,
    pub spi_out: u32,
    pub spi_in: u32,
    pub ah: bool,
    pub tunnel: bool,
    pub enc: String,
    pub enc_key_len: usize,
    pub auth: String,
    pub local_id: String,
    pub remote_id: String,
}

fn spi(v: &str) -> u32 {
    let h: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    u32::from_str_radix(&h, 16).unwrap_or(0)
}

/// The phase 2 SAs of an `S` result file.
pub fn parse_result(text: &str) -> Vec<P2> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut lines = block.lines();
        let Some(first) = lines.next() else { continue };
        if !(first.starts_with("SA name: ") && first.ends_with("(Phase 2)")) {
            continue;
        }
        let mut p = P2 {
            tunnel: true,
            ..Default::default()
        };
        for l in lines {
            let Some((k, v)) = l.split_once(": ") else {
                continue;
            };
            match k {
                "src" => {
                    let mut w = v.split_whitespace();
                    p.local = w.next().unwrap_or_default().to_string();
                    if w.next() == Some("dst:") {
                        p.remote = w.next().unwrap_or_default().to_string();
                    }
                }
                "SPI 0" => p.spi_out = spi(v),
                "SPI 1" => p.spi_in = spi(v),
                "Transform" => p.ah = v.trim() == "IPsec AH",
                "Encryption key length" => p.enc_key_len = v.trim().parse().unwrap_or(0),
                "Encryption algorithm" => p.enc = v.trim().to_string(),
                "Authentication algorithm" => p.auth = v.trim().to_string(),
                "Mode" => p.tunnel = v.trim() != "transport",
                "Local-ID" => p.local_id = v.trim().to_string(),
                "Remote-ID" => p.remote_id = v.trim().to_string(),
                _ => {}
            }
        }
        out.push(p);
    }
    out
}

/// isakmpd's algorithm names as ipsecctl's transforms (pfkdump.c picks AES's by key
/// length the same way).
fn transforms(p: &P2) -> Xfs {
    let enc = match (p.enc.as_str(), p.enc_key_len) {
        ("3DES", _) => "3des-cbc",
        ("AES (CBC)", 24) => "aes-192",
        ("AES (CBC)", 32) => "aes-256",
        ("AES (CBC)", _) => "aes",
        ("AES (CTR)", 28) => "aes-192-ctr",
        ("AES (CTR)", 36) => "aes-256-ctr",
        ("AES (CTR)", _) => "aesctr",
        ("AES (GCM)", 28) => "aes-192-gcm",
        ("AES (GCM)", 36) => "aes-256-gcm",
        ("AES (GCM)", _) => "aes-128-gcm",
        ("AES (GMAC)", 28) => "aes-192-gmac",
        ("AES (GMAC)", 36) => "aes-256-gmac",
        ("AES (GMAC)", _) => "aes-128-gmac",
        ("Blowfish", _) => "blowfish",
        ("Cast-128", _) => "cast128",
        ("NULL", _) => "null",
        _ => "",
    };
    let auth = match p.auth.as_str() {
        "HMAC-MD5" => "hmac-md5",
        "HMAC-SHA1" => "hmac-sha1",
        "HMAC-RIPEMD-160" => "hmac-ripemd160",
        "HMAC-SHA2-256" => "hmac-sha2-256",
        "HMAC-SHA2-384" => "hmac-sha2-384",
        "HMAC-SHA2-512" => "hmac-sha2-512",
        _ => "",
    };
    let exact = |t: &'static [super::rule::Xf], n: &str| {
        (!n.is_empty())
            .then(|| parse_xf(n, t))
            .flatten()
            .filter(|x| x.name == n)
    };
    Xfs {
        auth: exact(AUTHXFS, auth),
        enc: if p.ah { None } else { exact(ENCXFS, enc) },
        comp: None,
        group: None,
    }
}

fn addr(s: &str) -> Option<Addr> {
    host_with(s, false).ok()?.into_iter().next()
}

/// `10.0.0.0/24 proto 6 port 22` into an address, a protocol and a port.
fn selector(s: &str) -> Option<(Addr, u8, u16)> {
    let mut w = s.split_whitespace();
    let a = addr(w.next()?)?;
    let (mut proto, mut port) = (0, 0);
    while let Some(k) = w.next() {
        let v = w.next()?;
        match k {
            "proto" => proto = v.parse().ok()?,
            "port" => port = v.parse().ok()?,
            _ => return None,
        }
    }
    Some((a, proto, port))
}

/// The kernel SAs of the daemon's phase 2 SAs, ordered by SPI (`sacompare`).
pub fn sas(p2s: &[P2]) -> Vec<Sa> {
    let mut v = Vec::new();
    for p in p2s {
        let (Some(l), Some(r)) = (addr(&p.local), addr(&p.remote)) else {
            continue;
        };
        let satype = if p.ah { KSatype::Ah } else { KSatype::Esp };
        let x = transforms(p);
        for (src, dst, spi) in [(&l, &r, p.spi_out), (&r, &l, p.spi_in)] {
            v.push(Sa {
                satype,
                tunnel: p.tunnel,
                src: src.clone(),
                dst: dst.clone(),
                spi,
                udpencap: None,
                xfs: Some(x.clone()),
                authkey: None,
                enckey: None,
            });
        }
    }
    v.sort_by_key(|s| s.spi);
    v
}

/// The flows isakmpd sets up for its phase 2 SAs: in (`use`) and out (`require`) for
/// each pair of selectors, once however many SAs share them.
pub fn flows(p2s: &[P2]) -> Vec<Flow> {
    let mut v: Vec<Flow> = Vec::new();
    for p in p2s {
        let (Some(peer), Some((l, lp, lport)), Some((r, rp, rport))) = (
            addr(&p.remote),
            selector(&p.local_id),
            selector(&p.remote_id),
        ) else {
            continue;
        };
        let satype = if p.ah { KSatype::Ah } else { KSatype::Esp };
        for (dir, src, sport, dst, dport, t) in [
            (Dir::In, &r, rport, &l, lport, FlowType::Use),
            (Dir::Out, &l, lport, &r, rport, FlowType::Require),
        ] {
            let f = Flow {
                satype,
                dir,
                proto: if lp != 0 { lp } else { rp },
                src: src.clone(),
                sport,
                dst: dst.clone(),
                dport,
                local: None,
                peer: Some(peer.clone()),
                auth: None,
                flowtype: t,
                collapsed_src: Vec::new(),
                collapsed_dst: Vec::new(),
            };
            let key = |f: &Flow| {
                let mut s = String::new();
                kernel::print_flow(f, PrintOpts::default(), &mut s);
                s
            };
            if !v.iter().any(|g| key(g) == key(&f)) {
                v.push(f);
            }
        }
    }
    v
}

/// The result file beside the FIFO (the daemon writes both in its /var/run).
pub fn result_path(fifo: &str) -> PathBuf {
    Path::new(fifo)
        .parent()
        .unwrap_or_else(|| Path::new("/"))
        .join("isakmpd.result")
}

fn stamp(p: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Sends `S` to the daemon and reads its answer.
pub fn ask(fifo: &str, wait: Duration) -> Result<String, String> {
    use std::io::Write;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let res = result_path(fifo);
    // A stale answer must not pass for the new one: take it away when allowed, else
    // wait for the file to change.
    let _ = std::fs::remove_file(&res);
    let before = stamp(&res);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(fifo)
        .map_err(|e| format!("{fifo}: {} (is isakmpd running?)", super::os_msg(&e)))?;
    let md = f
        .metadata()
        .map_err(|e| format!("{fifo}: {}", super::os_msg(&e)))?;
    if !md.file_type().is_fifo() {
        return Err(format!("{fifo} not a fifo"));
    }
    f.write_all(b"S\n")
        .map_err(|e| format!("write({fifo}): {}", super::os_msg(&e)))?;
    drop(f);
    let t0 = Instant::now();
    let mut last = None;
    loop {
        let now = stamp(&res);
        if now.is_some() && now != before {
            // Done when the size holds still for one poll (the daemon writes at once).
            if now == last {
                return std::fs::read_to_string(&res)
                    .map_err(|e| format!("{}: {}", res.display(), super::os_msg(&e)));
            }
            last = now;
        }
        if t0.elapsed() > wait {
            return Err(format!(
                "no answer from isakmpd in {} (FIFO {fifo})",
                res.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ipsecctl_show`'s output for `modifier` ("flow", "sa" or "all").
pub fn render(modifier: &str, p2s: &[P2], o: PrintOpts, vv: bool) -> String {
    let mut out = String::new();
    let all = modifier == "all";
    let mut nr = 0;
    let mut number = |out: &mut String| {
        if vv {
            out.push_str(&format!("@{nr} "));
            nr += 1;
        }
    };
    if modifier != "sa" {
        let fl = flows(p2s);
        if all {
            out.push_str("FLOWS:\n");
            if fl.is_empty() {
                out.push_str("No flows\n");
            }
        }
        for f in &fl {
            number(&mut out);
            kernel::print_flow(f, o, &mut out);
        }
    }
    if modifier != "flow" {
        let s = sas(p2s);
        if all {
            out.push_str("\nSAD:\n");
            if s.is_empty() {
                out.push_str("No entries\n");
            }
        }
        for sa in &s {
            // pfkey_print_sa's rules are numbered 0.
            if vv {
                out.push_str("@0 ");
            }
            kernel::print_sa(sa, o, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESULT: &str = "SA name: peer-192.0.2.2 (Phase 1/Initiator)\n\
src: 192.0.2.1 dst: 192.0.2.2\nFlags 0x00000003\n\n\
SA name: from-198.51.100.0/24-to-203.0.113.0/24 (Phase 2)\n\
src: 192.0.2.1 dst: 192.0.2.2\nFlags 0x00000003\nSPI 0: c0ffee01 \nSPI 1: 0badf00d \n\
Transform: IPsec ESP\nEncryption key length: 32\nAuthentication key length: 32\n\
Encryption algorithm: AES (CBC)\nAuthentication algorithm: HMAC-SHA2-256\nMode: tunnel\n\
Local-ID: 198.51.100.0/24\nRemote-ID: 203.0.113.0/24 proto 6 port 22\n\n";

    #[test]
    fn sas_and_flows_from_a_result_file() {
        let p = parse_result(RESULT);
        assert_eq!(p.len(), 1);
        let text = render("all", &p, PrintOpts::default(), false);
        assert_eq!(
            text,
            "FLOWS:\n\
flow esp in proto tcp from 203.0.113.0/24 port ssh to 198.51.100.0/24 peer 192.0.2.2 type use\n\
flow esp out proto tcp from 198.51.100.0/24 to 203.0.113.0/24 port ssh peer 192.0.2.2 type require\n\
\nSAD:\n\
esp tunnel from 192.0.2.2 to 192.0.2.1 spi 0x0badf00d auth hmac-sha2-256 enc aes-256\n\
esp tunnel from 192.0.2.1 to 192.0.2.2 spi 0xc0ffee01 auth hmac-sha2-256 enc aes-256\n"
        );
        assert_eq!(
            render("all", &[], PrintOpts::default(), false),
            "FLOWS:\nNo flows\n\nSAD:\nNo entries\n"
        );
        assert_eq!(render("sa", &[], PrintOpts::default(), false), "");
    }
}
