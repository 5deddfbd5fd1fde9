//! Runs the real `isakmpd` binary for integration tests.
//!
//! Each daemon runs as root with privilege separation on, inside its own mount and network
//! namespace (`unshare -m -n`): a fresh directory of the test's is bind-mounted over
//! /var/run, so the pid file, FIFO, report, result and capture files land there at their
//! manual paths (the only paths the daemon allows), and the UDP ports of parallel tests do
//! not collide. Needs root, `unshare`, the `_isakmpd` user and /var/empty (scripts/setup.sh).

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_isakmpd");

/// The daemon that [`start`] and its kin run: [`BIN`] (the build of the test profile,
/// unoptimized under plain `cargo test`), or `ISAKMPD_TEST_BIN` when set (to measure a
/// release build, say).
pub fn daemon_bin() -> String {
    std::env::var("ISAKMPD_TEST_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| BIN.to_string())
}

pub fn require_root() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the daemon tests start isakmpd with privilege separation and need root (run scripts/test.sh)"
    );
    assert!(
        Path::new("/var/empty").is_dir(),
        "/var/empty is missing: run scripts/setup.sh"
    );
}

/// A scratch directory for one test, removed on drop.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("isakmpd-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("run")).unwrap();
        Scratch { dir }
    }

    /// Writes a file with the given mode.
    pub fn write(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = self.dir.join(name);
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    pub fn run(&self, name: &str) -> PathBuf {
        self.dir.join("run").join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The real directory behind /var/run (on Debian, /run).
pub fn real_run() -> PathBuf {
    fs::canonicalize("/var/run").unwrap()
}

pub struct Daemon {
    pub child: Option<Child>,
    pub pid: i32,
    pub scratch: Scratch,
    pub conf: PathBuf,
    log: PathBuf,
}

/// Shell run inside the namespaces: bind the scratch run dir over /var/run, bring up
/// loopback, then become isakmpd.
/// With `ISAKMPD_TEST_ETC` set, that directory is bind-mounted over /etc/isakmpd too (the
/// PKI tree the monitor serves).
const WRAP: &str = r#"mount --bind "$1" "$2" && { [ -z "$ISAKMPD_TEST_ETC" ] || mount --bind "$ISAKMPD_TEST_ETC" /etc/isakmpd; } && ip link set lo up && shift 2 && exec "$@""#;

/// Starts `isakmpd -d` on `conf_text` (written with mode 0600) with extra flags.
pub fn start(name: &str, conf_text: &str, extra: &[&str]) -> Daemon {
    start_in(name, conf_text, extra, None)
}

/// Like [`start`], but in the existing network namespace `netns` (only the mount
/// namespace is private then), for tests where daemons talk to each other.
pub fn start_in(name: &str, conf_text: &str, extra: &[&str], netns: Option<&str>) -> Daemon {
    start_with_etc(name, conf_text, extra, netns, None)
}

/// Like [`start_in`], with `etc` bind-mounted over /etc/isakmpd (ca/, certs/, private/).
pub fn start_with_etc(
    name: &str,
    conf_text: &str,
    extra: &[&str],
    netns: Option<&str>,
    etc: Option<&Path>,
) -> Daemon {
    require_root();
    let scratch = Scratch::new(name);
    let conf = scratch.write("isakmpd.conf", conf_text, 0o600);
    if etc.is_some() {
        fs::create_dir_all("/etc/isakmpd").unwrap();
    }
    let (child, log) = spawn_etc(&scratch, &conf, extra, netns, etc);
    let pid = child.id() as i32;
    let d = Daemon {
        child: Some(child),
        pid,
        scratch,
        conf,
        log,
    };
    d.wait_for(
        || d.run_file("isakmpd.fifo").exists() && d.child_pid().is_some(),
        "daemon start",
    );
    if extra.contains(&"+quiet") {
        // No info lines: the first FIFO report comes from the main loop, which runs
        // once the transports are open.
        d.fifo_sync("");
    } else {
        d.wait_for(
            || d.log().contains("isakmpd started") || !d.alive(),
            "listening",
        );
    }
    d
}

pub fn spawn(scratch: &Scratch, conf: &Path, extra: &[&str]) -> (Child, PathBuf) {
    spawn_in(scratch, conf, extra, None)
}

pub fn spawn_in(
    scratch: &Scratch,
    conf: &Path,
    extra: &[&str],
    netns: Option<&str>,
) -> (Child, PathBuf) {
    spawn_etc(scratch, conf, extra, netns, None)
}

pub fn spawn_etc(
    scratch: &Scratch,
    conf: &Path,
    extra: &[&str],
    netns: Option<&str>,
    etc: Option<&Path>,
) -> (Child, PathBuf) {
    let log = scratch.dir.join("daemon.log");
    let logf = fs::File::create(&log).unwrap();
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "unshare", "-m"]);
            c
        }
        None => {
            let mut c = Command::new("unshare");
            c.args(["-m", "-n"]);
            c
        }
    };
    cmd.env(
        "ISAKMPD_TEST_ETC",
        etc.map(|p| p.as_os_str().to_owned()).unwrap_or_default(),
    );
    let child = cmd
        .args(["--propagation", "private", "sh", "-c", WRAP, "sh"])
        .arg(scratch.dir.join("run"))
        .arg(real_run())
        .arg(daemon_bin())
        // "+kernel" in `extra` means: talk to the kernel (no -n); "+quiet": no -v (the
        // daemon's default log level, warnings and errors only).
        .arg("-d")
        .args(if extra.contains(&"+quiet") {
            &[][..]
        } else {
            &["-v"][..]
        })
        .args(if extra.contains(&"+kernel") {
            &[][..]
        } else {
            &["-n"][..]
        })
        .arg("-c")
        .arg(conf)
        .args(extra.iter().filter(|a| **a != "+kernel" && **a != "+quiet"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(logf)
        .spawn()
        .expect("unshare");
    (child, log)
}

impl Daemon {
    pub fn run_file(&self, name: &str) -> PathBuf {
        self.scratch.run(name)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists()
            && !fs::read_to_string(format!("/proc/{}/stat", self.pid))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
    }

    /// The unprivileged child's pid.
    pub fn child_pid(&self) -> Option<i32> {
        let s = fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.pid)).ok()?;
        s.split_whitespace().next()?.parse().ok()
    }

    /// Waits until `cond` holds. The bound is for liveness only (hosts differ tenfold in
    /// speed); how fast the daemon is, the benchmarks measure.
    pub fn wait_for(&self, mut cond: impl FnMut() -> bool, what: &str) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "timed out waiting for {what}\n--- daemon log ---\n{}",
            self.log()
        );
    }

    /// Writes lines to the FIFO.
    pub fn fifo(&self, lines: &str) {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(self.run_file("isakmpd.fifo"))
            .unwrap();
        f.write_all(lines.as_bytes()).unwrap();
    }

    /// Sends `cmds` followed by `r`, and returns once the report is complete: FIFO lines
    /// are handled in order, so every earlier command's effect is in place by then.
    pub fn fifo_sync(&self, cmds: &str) -> String {
        let rep = self.run_file("isakmpd.report");
        let _ = fs::remove_file(&rep);
        self.fifo(&format!("{cmds}r\n"));
        let mut text = String::new();
        self.wait_for(
            || {
                text = fs::read_to_string(&rep).unwrap_or_default();
                text.contains("resolved on demand")
            },
            "report after FIFO commands",
        );
        text
    }

    /// `C get` through the FIFO.
    pub fn conf_get(&self, section_tag: &str) -> String {
        let _ = fs::remove_file(self.run_file("isakmpd.result"));
        self.fifo_sync(&format!("C get {section_tag}\n"));
        fs::read_to_string(self.run_file("isakmpd.result")).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.pid, sig) };
    }

    /// Waits for the daemon to exit; returns its status code.
    pub fn wait_exit(&mut self) -> i32 {
        let mut child = self.child.take().expect("already waited");
        let t0 = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("daemon did not exit\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// VmRSS of the privileged parent and of the unprivileged child, in kB.
    pub fn rss_kb(&self) -> (u64, u64) {
        let of = |pid: i32| {
            fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|v| v.parse().ok())
                })
                .unwrap_or(0)
        };
        (of(self.pid), self.child_pid().map_or(0, of))
    }

    /// A /proc/<pid>/status field of the child, as a number.
    pub fn child_status_field(&self, field: &str) -> u64 {
        let pid = self.child_pid().expect("child");
        let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{field} not in status"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.pid, libc::SIGTERM) };
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(3) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the binary directly (no daemon expected to stay up) and returns (status, stderr).
pub fn run_once(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ip netns exec NETNS unshare -m --propagation private`: a command run in `netns` with
/// a mount namespace of its own (for bind mounts that only it sees); append the program.
pub fn in_netns_private_mounts(netns: &str) -> Command {
    let mut c = Command::new("ip");
    c.args([
        "netns",
        "exec",
        netns,
        "unshare",
        "-m",
        "--propagation",
        "private",
    ]);
    c
}

/// A finished command's stdout followed by its stderr, as text.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// SIGTERM to `child` (ours), SIGKILL if it has not exited within `grace`; reaped.
pub fn terminate(child: &mut Child, grace: Duration) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    while t0.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A veth pair between two namespaces made for one test, removed on drop.
pub struct Link {
    pub a: String,
    pub b: String,
}

impl Link {
    pub fn new(tag: &str) -> Link {
        let a = format!("isk{}{tag}a", std::process::id() % 100000);
        let b = format!("isk{}{tag}b", std::process::id() % 100000);
        let sh = |args: &str| {
            let st = Command::new("sh").arg("-c").arg(args).status().unwrap();
            assert!(st.success(), "{args}");
        };
        for n in [&a, &b] {
            let _ = Command::new("ip")
                .args(["netns", "del", n])
                .stderr(std::process::Stdio::null())
                .status();
        }
        sh(&format!("ip netns add {a} && ip netns add {b}"));
        sh(&format!(
            "ip link add v{tag}a netns {a} type veth peer name v{tag}b netns {b}"
        ));
        sh(&format!("ip -n {a} addr add 192.0.2.1/24 dev v{tag}a && ip -n {a} link set v{tag}a up && ip -n {a} link set lo up"));
        sh(&format!("ip -n {b} addr add 192.0.2.2/24 dev v{tag}b && ip -n {b} link set v{tag}b up && ip -n {b} link set lo up"));
        Link { a, b }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.a]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).status();
    }
}

/// A namespace behind a masquerading NAT: 198.51.100.129/25, routed through namespace `a`
/// of a [`Link`] (198.51.100.130), whose way out to `b` (its link end, 192.0.2.1) is
/// masqueraded by nftables. Gone when dropped.
#[allow(dead_code)]
pub struct NatInside {
    pub ns: String,
}

impl Link {
    /// [`NatInside`] for the link made with `tag`.
    #[allow(dead_code)]
    pub fn nat_inside(&self, tag: &str) -> NatInside {
        let ns = format!("{}in", self.a);
        let sh = |args: &str| {
            let st = Command::new("sh").arg("-c").arg(args).status().unwrap();
            assert!(st.success(), "{args}");
        };
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(std::process::Stdio::null())
            .status();
        sh(&format!("ip netns add {ns}"));
        let inside = NatInside { ns };
        let (i, a) = (&inside.ns, &self.a);
        sh(&format!(
            "ip link add v{tag}i netns {i} type veth peer name v{tag}o netns {a}"
        ));
        sh(&format!(
            "ip -n {i} addr add 198.51.100.129/25 dev v{tag}i && ip -n {i} link set v{tag}i up && \
             ip -n {i} link set lo up && ip -n {a} addr add 198.51.100.130/25 dev v{tag}o && \
             ip -n {a} link set v{tag}o up && ip -n {i} route add default via 198.51.100.130 && \
             ip netns exec {a} sysctl -qw net.ipv4.ip_forward=1"
        ));
        sh(&format!(
            "printf 'table ip nat {{\\n chain post {{ type nat hook postrouting priority srcnat; \
             oifname \"v{tag}a\" masquerade; }}\\n}}\\n' | ip netns exec {a} nft -f -"
        ));
        inside
    }
}

impl Drop for NatInside {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}
