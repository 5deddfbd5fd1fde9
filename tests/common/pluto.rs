//! libreswan's pluto in a network namespace, for tests/interop_libreswan.rs (include with
//! `#[path = "common/pluto.rs"] mod pluto;` next to `mod common;`).
//!
//! Debian's libreswan conflicts with strongSwan's packages, so it is not installed:
//! scripts/fetch-libreswan.sh unpacks it (and the libraries and certutil it needs) into
//! a private directory, and pluto runs from there with `LD_LIBRARY_PATH`, in its own mount
//! namespace where that tree's /usr/libexec is mounted over the host's (pluto runs
//! `/usr/libexec/ipsec/addconn`, a compiled-in path).
//!
//! This host's kernel has XFRM but no ESP: pluto's `XFRM_MSG_NEWSA`/`UPDSA` of an ESP SA
//! fails, and pluto then gives up the CHILD SA (IKEv2: TS_UNACCEPTABLE to the initiator).
//! tests/interop/pluto-xfrm-shim.c, preloaded into pluto, answers those requests (and
//! DELSA/GETSA of the same SAs) with success instead of passing them to the kernel; the
//! rest of pluto's XFRM traffic (SPI allocation, policies) goes to the namespace's real
//! kernel state, and everything on the wire is pluto's. Each faked install is logged to
//! `shim.log` in pluto's directory.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::Scratch;

/// Where scripts/fetch-libreswan.sh unpacks libreswan (`ISAKMPD_LIBRESWAN_DIR` overrides).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("ISAKMPD_LIBRESWAN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/isakmpd-tests/libreswan"))
}

/// The unpacked libreswan and the compiled shim.
pub struct Libreswan {
    pub root: PathBuf,
    pub shim: PathBuf,
}

impl Libreswan {
    fn bin(&self, name: &str) -> PathBuf {
        self.root.join("usr/libexec/ipsec").join(name)
    }

    /// The unpacked libraries' directory (usr/lib/<multiarch triplet>).
    fn lib_path(&self) -> PathBuf {
        fs::read_dir(self.root.join("usr/lib"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-linux-gnu"))
            .unwrap_or_else(|| self.root.join("usr/lib/x86_64-linux-gnu"))
    }

    fn certutil(&self, args: &[&str]) {
        let out = Command::new(self.root.join("usr/bin/certutil"))
            .args(args)
            .env("LD_LIBRARY_PATH", self.lib_path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// libreswan, fetched on first use when scripts/setup.sh has not done it; `Err` (the
/// reason) only when its packages cannot be had.
pub fn libreswan() -> Result<&'static Libreswan, String> {
    static L: OnceLock<Result<Libreswan, String>> = OnceLock::new();
    L.get_or_init(|| {
        let root = cache_dir();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-libreswan.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&root)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/fetch-libreswan.sh could not fetch libreswan: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        // The shim, built once per test run (cc: scripts/setup.sh's build-essential).
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pluto-xfrm-shim.c");
        let shim = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pluto-xfrm-shim.so");
        let tmp = shim.with_extension(format!("so.{}", std::process::id()));
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
            .arg(&tmp)
            .arg(&src)
            .arg("-ldl")
            .output()
            .expect("cc");
        assert!(
            out.status.success(),
            "building the XFRM shim: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::rename(&tmp, &shim).unwrap();
        Ok(Libreswan { root, shim })
    })
    .as_ref()
    .map_err(Clone::clone)
}

pub struct Pluto {
    pub dir: PathBuf,
    pub child: Child,
    lsw: &'static Libreswan,
    _scratch: Scratch,
}

/// pluto's `config setup`: its files in `dir`, IKEv1 accepted (Debian's default drops
/// it).
fn config_setup(dir: &Path) -> String {
    format!(
        "config setup\n\tlogfile={d}/pluto.log\n\tlogtime=yes\n\tlogappend=no\n\tdumpdir={d}\n\
         \tprotostack=xfrm\n\tikev1-policy=accept\n\n",
        d = dir.display()
    )
}

impl Pluto {
    /// pluto in `netns` with the `conn` sections `conns` and `secrets` as ipsec.secrets.
    /// `certs`: (PKCS#12 file with the key and certificate, CA certificate) to import
    /// into its NSS database (the nickname is the PKCS#12 friendly name).
    pub fn start(
        lsw: &'static Libreswan,
        name: &str,
        netns: &str,
        conns: &str,
        secrets: &str,
        certs: Option<(&Path, &Path)>,
    ) -> Pluto {
        let scratch = Scratch::new(name);
        let dir = scratch.dir.clone();
        let conf = scratch.write("ipsec.conf", &(config_setup(&dir) + conns), 0o644);
        let secrets = scratch.write("ipsec.secrets", secrets, 0o600);
        let nss = format!("sql:{}", dir.display());
        lsw.certutil(&["-N", "-d", &nss, "--empty-password"]);
        if let Some((p12, ca)) = certs {
            lsw.certutil(&[
                "-A",
                "-d",
                &nss,
                "-n",
                "ca",
                "-t",
                "CT,,",
                "-i",
                ca.to_str().unwrap(),
            ]);
            let out = Command::new(lsw.root.join("usr/bin/pk12util"))
                .args(["-i", p12.to_str().unwrap(), "-d", &nss, "-W", ""])
                .env("LD_LIBRARY_PATH", lsw.lib_path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "pk12util: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stderr = fs::File::create(dir.join("pluto.stderr")).unwrap();
        let child = crate::common::in_netns_private_mounts(netns)
            .args([
                "sh",
                "-c",
                r#"mount --bind "$1" /usr/libexec && shift && exec "$@""#,
                "sh",
            ])
            .arg(lsw.root.join("usr/libexec"))
            .arg(lsw.bin("pluto"))
            .arg("--nofork")
            .arg("--config")
            .arg(&conf)
            .arg("--secretsfile")
            .arg(&secrets)
            .arg("--ipsecdir")
            .arg(&dir)
            .arg("--nssdir")
            .arg(&dir)
            .arg("--rundir")
            .arg(&dir)
            .env("LD_LIBRARY_PATH", lsw.lib_path())
            .env("LD_PRELOAD", &lsw.shim)
            .env("PLUTO_XFRM_SHIM_LOG", dir.join("shim.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let p = Pluto {
            dir,
            child,
            lsw,
            _scratch: scratch,
        };
        // Ready once its connections are added and the secrets read.
        p.wait_log("loading secrets from");
        p
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("pluto.log")).unwrap_or_default()
            + &fs::read_to_string(self.dir.join("pluto.stderr")).unwrap_or_default()
    }

    /// What the XFRM shim faked (see the module's comment).
    pub fn shim_log(&self) -> String {
        fs::read_to_string(self.dir.join("shim.log")).unwrap_or_default()
    }

    pub fn wait_log(&self, what: &str) -> String {
        self.wait("its log", what, || self.log())
    }

    /// `whack --ctlsocket ... args`: its output (stdout and stderr).
    pub fn whack(&self, args: &[&str]) -> String {
        let out = Command::new(self.lsw.bin("whack"))
            .arg("--ctlsocket")
            .arg(self.dir.join("pluto.ctl"))
            .args(args)
            .env("LD_LIBRARY_PATH", self.lsw.lib_path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        crate::common::output_text(&out)
    }

    /// `whack --showstates`.
    pub fn states(&self) -> String {
        self.whack(&["--showstates"])
    }

    /// Waits until `get()` contains `what`; returns it.
    pub fn wait(&self, of: &str, what: &str, get: impl Fn() -> String) -> String {
        self.wait_until(of, what, get, |s| s.contains(what))
    }

    /// Waits until `done(get())`; returns it.
    pub fn wait_until(
        &self,
        of: &str,
        what: &str,
        get: impl Fn() -> String,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let t0 = Instant::now();
        loop {
            let s = get();
            if done(&s) {
                return s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "pluto: timed out waiting for {what:?} in {of}:\n{s}\n--- pluto log ---\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The `esp.SPI@DST` words of `whack --showstates` output (`esp:SPI@DST` for IPv6; the
/// SPI in hex without leading zeros): (SPI, destination).
pub fn esp_sas(states: &str) -> Vec<(u32, String)> {
    states
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("esp.").or_else(|| w.strip_prefix("esp:")))
        .filter_map(|w| w.split_once('@'))
        .filter_map(|(spi, dst)| Some((u32::from_str_radix(spi, 16).ok()?, dst.to_string())))
        .collect()
}

impl Drop for Pluto {
    fn drop(&mut self) {
        crate::common::terminate(&mut self.child, Duration::from_secs(5));
    }
}
