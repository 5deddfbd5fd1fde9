//! strongSwan's charon in a network namespace, for the interop and flood tests (include
//! with `#[path = "common/charon.rs"] mod charon;` next to `mod common;`).

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::Scratch;

pub const CHARON: &str = "/usr/lib/ipsec/charon";
pub const PSK: &str = "interop-test-psk-0123";

pub struct Charon {
    pub dir: PathBuf,
    pub child: Child,
    _scratch: Scratch,
}

impl Charon {
    /// charon in `netns` as 192.0.2.2, peer 192.0.2.1.
    pub fn start(name: &str, netns: &str, ike: &str, esp: &str) -> Charon {
        Charon::start_x(name, netns, ike, esp, false, None, 0)
    }

    /// `pki`: a directory with ca.crt, east.crt and east.key for certificate auth.
    pub fn start_x(
        name: &str,
        netns: &str,
        ike: &str,
        esp: &str,
        aggressive: bool,
        pki: Option<&Path>,
        dpd_delay: u32,
    ) -> Charon {
        let scratch = Scratch::new(name);
        let swanctl = format!(
                "connections {{\n v1 {{\n  version = 1\n  aggressive = {agg}\n  local_addrs = 192.0.2.2\n  remote_addrs = 192.0.2.1\n  proposals = {ike}\n  dpd_delay = {dpd_delay}\n  \
                 {auth}\
                 children {{\n   net {{\n    mode = tunnel\n    esp_proposals = {esp}\n    local_ts = 203.0.113.0/24\n    remote_ts = 198.51.100.0/24\n    start_action = none\n   }}\n  }}\n }}\n}}\n\
                 secrets {{\n ike-v1 {{\n  id-1 = 192.0.2.2\n  id-2 = 192.0.2.1\n  secret = \"{PSK}\"\n }}\n}}\n",
                agg = if aggressive { "yes" } else { "no" },
                auth = if pki.is_some() {
                    "send_certreq = yes\n  send_cert = always\n  local {\n   auth = pubkey\n   certs = east.crt\n   id = 192.0.2.2\n  }\n  remote {\n   auth = pubkey\n   id = 192.0.2.1\n   cacerts = ca.crt\n  }\n  "
                } else {
                    "local {\n   auth = psk\n   id = 192.0.2.2\n  }\n  remote {\n   auth = psk\n   id = 192.0.2.1\n  }\n  "
                }
            );
        Charon::launch(scratch, &swanctl, netns, pki, "")
    }

    /// charon in `netns` with `swanctl` as its swanctl.conf.
    /// `charon_extra` goes into strongswan.conf's charon section.
    pub fn launch(
        scratch: Scratch,
        swanctl: &str,
        netns: &str,
        pki: Option<&Path>,
        charon_extra: &str,
    ) -> Charon {
        assert!(
            Path::new(CHARON).exists(),
            "strongSwan is not installed (scripts/setup.sh installs it)"
        );
        let dir = scratch.dir.clone();
        fs::create_dir_all(dir.join("swanctl")).unwrap();
        fs::write(
            dir.join("strongswan.conf"),
            format!(
                "charon {{\n load_modular = no\n load = random nonce openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey eap-identity eap-mschapv2 sha1 sha2 hmac aes gmp kdf kernel-libipsec kernel-netlink socket-default vici\n \
                 install_virtual_ip = no\n retransmit_tries = 2\n i_dont_care_about_security_and_use_aggressive_mode_psk = yes\n {charon_extra}\n \
                 filelog {{ main {{ path = {d}/charon.log\n time_format = %T\n append = no\n flush_line = yes\n default = 1\n ike = 2\n chd = 2\n knl = 2\n }} }}\n \
                 plugins {{ vici {{ socket = unix://{d}/charon.vici }}\n kernel-netlink {{ fwmark = !0x42 }}\n socket-default {{ fwmark = 0x42 }}\n kernel-libipsec {{ allow_peer_ts = yes }} }}\n}}\n",
                d = dir.display()
            ),
        )
        .unwrap();
        fs::write(dir.join("swanctl/swanctl.conf"), swanctl).unwrap();
        fs::create_dir_all(dir.join("run")).unwrap();
        // Those of the CA, charon's certificate and key, and the raw public keys (charon's
        // own and ours, for `pubkeys =`) that `pki` holds.
        if let Some(p) = pki {
            for (sub, f) in [
                ("x509ca", "ca.crt"),
                ("x509", "east.crt"),
                ("private", "east.key"),
                ("pubkey", "east.pub"),
                ("pubkey", "us.pub"),
            ] {
                if p.join(f).exists() {
                    fs::create_dir_all(dir.join("swanctl").join(sub)).unwrap();
                    fs::copy(p.join(f), dir.join("swanctl").join(sub).join(f)).unwrap();
                }
            }
        }
        let child = crate::common::in_netns_private_mounts(netns)
            .args(["sh", "-c"])
            .arg(format!(
                "mount --bind {}/run /run && exec {CHARON}",
                dir.display()
            ))
            .env("STRONGSWAN_CONF", dir.join("strongswan.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let c = Charon {
            dir,
            child,
            _scratch: scratch,
        };
        let t0 = Instant::now();
        while !c.dir.join("charon.vici").exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "charon did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = c.swanctl(&["--load-all", "--noprompt"]);
        assert!(out.contains("loaded connection '"), "{out}");
        c
    }

    pub fn swanctl(&self, args: &[&str]) -> String {
        let out = Command::new("swanctl")
            .arg(args[0])
            .arg("--uri")
            .arg(format!("unix://{}/charon.vici", self.dir.display()))
            .args(&args[1..])
            .env("SWANCTL_DIR", self.dir.join("swanctl"))
            .output()
            .unwrap();
        crate::common::output_text(&out)
    }

    /// Puts `crl` into swanctl's x509crl/ and loads it (`--load-creds`).
    pub fn load_crl(&self, crl: &Path) {
        let dir = self.dir.join("swanctl/x509crl");
        fs::create_dir_all(&dir).unwrap();
        fs::copy(crl, dir.join("ca.crl")).unwrap();
        let out = self.swanctl(&["--load-creds", "--noprompt"]);
        assert!(out.contains("x509crl/ca.crl'"), "{out}");
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("charon.log")).unwrap_or_default()
    }

    pub fn wait_log(&self, what: &str) -> String {
        let t0 = Instant::now();
        loop {
            let l = self.log();
            if l.contains(what) {
                return l;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "charon never logged {what:?}:\n{l}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
