//! The binary as iked(8) in a network namespace, driven with ikectl(8) (include with
//! `#[path = "common/iked.rs"] mod iked;` next to `mod common;`).

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{real_run, require_root, Scratch};

/// `iked` and `ikectl` links to the binary in `dir`.
pub fn links(dir: &Path) -> (PathBuf, PathBuf) {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let (iked, ikectl) = (bin.join("iked"), bin.join("ikectl"));
    for l in [&iked, &ikectl] {
        let _ = fs::remove_file(l);
        std::os::unix::fs::symlink(crate::common::daemon_bin(), l).unwrap();
    }
    (iked, ikectl)
}

pub struct Iked {
    pub child: Child,
    pub scratch: Scratch,
    pub ikectl: PathBuf,
    pub conf: PathBuf,
    /// Held while our /etc/iked tree is mounted (dropped after the daemon).
    _etc: Option<EtcIked>,
}

/// /etc/iked as the mount point of a test's own tree: made when it is missing, and
/// removed again (if still empty) when the last daemon of this test binary that used
/// it is gone. The tree itself is mounted in the daemon's private mount namespace only,
/// so the host's /etc/iked is never written.
pub struct EtcIked;

/// (daemons using /etc/iked as a mount point, whether we made it).
static ETC_IKED: std::sync::Mutex<(usize, bool)> = std::sync::Mutex::new((0, false));

impl EtcIked {
    pub fn take() -> EtcIked {
        let mut u = ETC_IKED.lock().unwrap_or_else(|e| e.into_inner());
        if u.0 == 0 && !Path::new("/etc/iked").exists() {
            fs::create_dir("/etc/iked").unwrap();
            u.1 = true;
        }
        u.0 += 1;
        EtcIked
    }
}

impl Drop for EtcIked {
    fn drop(&mut self) {
        let mut u = ETC_IKED.lock().unwrap_or_else(|e| e.into_inner());
        u.0 -= 1;
        if u.0 == 0 && u.1 {
            let _ = fs::remove_dir("/etc/iked");
            u.1 = false;
        }
    }
}

/// `IKED_TEST_ETC` is bind-mounted over /etc/iked too (the key material the monitor
/// serves to iked): the test's tree, or an empty directory.
const WRAP: &str = r#"mount --bind "$1" "$2" && { [ -z "$IKED_TEST_ETC" ] || mount --bind "$IKED_TEST_ETC" /etc/iked; } && shift 2 && exec "$@""#;

impl Iked {
    pub fn start(name: &str, netns: &str, conf_text: &str) -> Iked {
        Iked::start_full(name, netns, conf_text, None, &[])
    }

    /// With more flags (e.g. `-L`).
    pub fn start_with(name: &str, netns: &str, conf_text: &str, extra: &[&str]) -> Iked {
        Iked::start_full(name, netns, conf_text, None, extra)
    }

    /// Like [`Iked::start`], with `etc` mounted over /etc/iked (private/local.key, certs/,
    /// ca/, crls/, pubkeys/).
    pub fn start_with_etc(name: &str, netns: &str, conf_text: &str, etc: Option<&Path>) -> Iked {
        Iked::start_full(name, netns, conf_text, etc, &[])
    }

    pub fn start_full(
        name: &str,
        netns: &str,
        conf_text: &str,
        etc: Option<&Path>,
        extra: &[&str],
    ) -> Iked {
        Iked::spawn(name, netns, conf_text, etc, extra, true)
    }

    /// Like [`Iked::start_with`], without -X: the daemon installs in the namespace's
    /// kernel (the host takes flows and reserves SPIs, but has no ESP for states).
    pub fn start_kernel(name: &str, netns: &str, conf_text: &str, extra: &[&str]) -> Iked {
        Iked::spawn(name, netns, conf_text, None, extra, false)
    }

    fn spawn(
        name: &str,
        netns: &str,
        conf_text: &str,
        etc: Option<&Path>,
        extra: &[&str],
        no_kernel: bool,
    ) -> Iked {
        require_root();
        // Without a tree of the test's, an empty one: the daemon never sees the host's
        // /etc/iked (whose key and certificates would change what it loads and warns).
        let etc_guard = EtcIked::take();
        let scratch = Scratch::new(name);
        let empty = scratch.dir.join("etc-iked-empty");
        if etc.is_none() {
            fs::create_dir_all(&empty).unwrap();
        }
        let etc = Some(etc.unwrap_or(&empty));
        let conf = scratch.write("iked.conf", conf_text, 0o600);
        let (iked, ikectl) = links(&scratch.dir);
        let log = fs::File::create(scratch.dir.join("iked.log")).unwrap();
        let child = crate::common::in_netns_private_mounts(netns)
            .env(
                "IKED_TEST_ETC",
                etc.map(|p| p.as_os_str().to_owned()).unwrap_or_default(),
            )
            .args(["sh", "-c", WRAP, "sh"])
            .arg(scratch.dir.join("run"))
            .arg(real_run())
            .arg(&iked)
            .args(["-d", "-v"])
            .args(if no_kernel { &["-X"][..] } else { &[] })
            .args(extra)
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let d = Iked {
            child,
            scratch,
            ikectl,
            conf,
            _etc: Some(etc_guard),
        };
        d.wait("iked started", || d.log().contains("iked started"));
        d
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.scratch.dir.join("iked.log")).unwrap_or_default()
    }

    /// A file of the daemon's private /var/run.
    pub fn run_file(&self, name: &str) -> PathBuf {
        self.scratch.run(name)
    }

    pub fn socket(&self) -> PathBuf {
        self.scratch.run("iked.sock")
    }

    /// `ikectl -s SOCKET args...`: (status, stdout, stderr).
    pub fn ikectl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(&self.ikectl)
            .arg("-s")
            .arg(self.socket())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn show_sa(&self) -> String {
        let (st, out, err) = self.ikectl(&["show", "sa"]);
        assert_eq!(st, 0, "ikectl show sa: {err}\n{}", self.log());
        out
    }

    pub fn wait(&self, what: &str, mut f: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !f() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}\n--- log ---\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_sa(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.show_sa();
            if f(&s) {
                return s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}; last show sa:\n{s}\n--- log ---\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill with a pid of ours.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Iked {
    fn drop(&mut self) {
        self.signal(libc::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
