//! The daemon as a user runs it: flags, configuration, FIFO, signals, files, privsep.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use common::*;

const CONF: &str = "\
[General]
Retransmits=\t5
Listen-on=\t127.0.0.1

[Phase 1]
192.0.2.2=\tpeer-east

[Phase 2]
Connections=\tconn-west-east

[peer-east]
Phase=\t1
Address=\t192.0.2.2
Authentication=\tverysecretpsk

[conn-west-east]
Phase=\t2
ISAKMP-peer=\tpeer-east
";

#[test]
fn bad_flags_print_usage_and_exit_1() {
    for args in [
        &["-x"][..],
        &["-p"],
        &["-p", "0"],
        &["-p", "70000"],
        &["-D", "12=1"],
        &["-D", "nonsense"],
        &["-R", "/tmp/report"],
        &["-i", "/etc/isakmpd.pid"],
        &["-l", "/tmp/x.pcap"],
        &["-r", "abc"],
        &["operand"],
    ] {
        let (code, err) = run_once(args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains("usage: isakmpd"), "{args:?}: {err}");
    }
}

#[test]
fn starts_with_privsep_and_manual_files() {
    let d = start("privsep", CONF, &["-p", "1500", "-N", "4501"]);
    // The pid file holds the privileged parent's pid.
    let pid: i32 = fs::read_to_string(d.run_file("isakmpd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, d.pid);
    // The FIFO exists with mode 0600.
    let m = fs::metadata(d.run_file("isakmpd.fifo")).unwrap();
    assert!(m.file_type().is_fifo());
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    // The child is jailed in /var/empty as _isakmpd.
    let child = d.child_pid().expect("child process");
    let root = fs::read_link(format!("/proc/{child}/root")).unwrap();
    assert_eq!(root.to_str(), Some("/var/empty"));
    let status = fs::read_to_string(format!("/proc/{child}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        !uid_line.split_whitespace().skip(1).any(|u| u == "0"),
        "child kept root: {uid_line}"
    );
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    let isakmpd_uid = passwd
        .lines()
        .find(|l| l.starts_with("_isakmpd:"))
        .and_then(|l| l.split(':').nth(2))
        .unwrap();
    assert_eq!(uid_line.split_whitespace().nth(1), Some(isakmpd_uid));
    // The parent bound the configured address on both ports for the child.
    let rep = d.fifo_sync("");
    assert!(rep.contains("listen: udp 127.0.0.1:1500\n"), "{rep}");
    assert!(rep.contains("listen: udp 127.0.0.1:4501 (nat-t)"), "{rep}");
    let socks = fs::read_dir(format!("/proc/{child}/fd")).unwrap().count();
    assert!(socks >= 5, "child fds: {socks}");
    // The IKE sockets have a receive queue for bursts: 4 MB (the kernel shows it doubled).
    let ss = std::process::Command::new("nsenter")
        .args(["-t", &child.to_string(), "-n", "ss", "-uamnH"])
        .output()
        .unwrap();
    let ss = String::from_utf8_lossy(&ss.stdout).into_owned();
    let rbs: Vec<u64> = ss
        .split(",rb")
        .skip(1)
        .filter_map(|r| r.split(',').next()?.parse().ok())
        .collect();
    assert!(
        rbs.len() >= 2 && rbs.iter().all(|&rb| rb >= 4 << 20),
        "receive buffers: {ss}"
    );
}

#[test]
fn refuses_group_readable_config() {
    require_root();
    let s = Scratch::new("perm");
    let conf = s.write("isakmpd.conf", CONF, 0o644);
    let (mut child, log) = spawn(&s, &conf, &["-p", "1500"]);
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(1));
    let log = fs::read_to_string(log).unwrap();
    assert!(log.contains("bad permissions 0644"), "{log}");
    assert!(log.contains("group or others"), "{log}");
    assert!(!s.run("isakmpd.pid").exists());
}

#[test]
fn refuses_a_broken_config_at_startup_with_line_and_reason() {
    require_root();
    let s = Scratch::new("broken");
    let conf = s.write(
        "isakmpd.conf",
        "[General]\nRetransmits=3\nthis is not a tag\n",
        0o600,
    );
    let (mut child, log) = spawn(&s, &conf, &["-p", "1500"]);
    assert_eq!(child.wait().unwrap().code(), Some(1));
    let log = fs::read_to_string(log).unwrap();
    assert!(log.contains("isakmpd.conf: line 3: syntax error"), "{log}");
}

#[test]
fn refuses_disallowed_port() {
    require_root();
    for args in [&["-p", "600"][..], &["-p", "1500", "-N", "1024"]] {
        let s = Scratch::new("port");
        let conf = s.write("isakmpd.conf", CONF, 0o600);
        let (mut child, log) = spawn(&s, &conf, args);
        assert_eq!(child.wait().unwrap().code(), Some(1));
        let log = fs::read_to_string(log).unwrap();
        assert!(
            log.contains("only port 500, 4500 or ports above 1024"),
            "{log}"
        );
        assert!(!s.run("isakmpd.pid").exists(), "pid file left behind");
    }
}

#[test]
fn fifo_conf_commands() {
    let d = start("confcmd", CONF, &["-p", "1500", "-T"]);
    assert_eq!(d.conf_get("[General]:Retransmits"), "5\n");
    // A generated default.
    assert_eq!(
        d.conf_get("[QM-ESP-AES-SHA-PFS-XF]:GROUP_DESCRIPTION"),
        "MODP_1024\n"
    );
    assert_eq!(
        d.conf_get("[LIFE_MAIN_MODE]:LIFE_DURATION"),
        "3600,60:86400\n"
    );
    // set refuses an existing tag without force.
    d.fifo_sync("C set [General]:Retransmits=9\n");
    assert_eq!(d.conf_get("[General]:Retransmits"), "5\n");
    assert!(
        d.log()
            .contains("C set [General]:Retransmits: tag already set"),
        "{}",
        d.log()
    );
    d.fifo_sync("C set [General]:Retransmits=9 force\nC set [new-peer]:Address=192.0.2.9\n");
    assert_eq!(d.conf_get("[General]:Retransmits"), "9\n");
    assert_eq!(d.conf_get("[new-peer]:Address"), "192.0.2.9\n");
    d.fifo_sync("C add [Phase 2]:Connections=conn-b\nC add [Phase 2]:Connections=conn-b\n");
    assert_eq!(
        d.conf_get("[Phase 2]:Connections"),
        "conn-west-east,conn-b\n"
    );
    d.fifo_sync("C rmv [Phase 2]:Connections=conn-west-east\n");
    assert_eq!(d.conf_get("[Phase 2]:Connections"), "conn-b\n");
    d.fifo_sync("C rm [new-peer]:Address\n");
    assert_eq!(d.conf_get("[new-peer]:Address"), "");
    let rep = d.fifo_sync("C rms [peer-east]\n");
    assert!(!rep.contains("[peer-east]"), "{rep}");
    assert!(
        rep.contains("connection: conn-b"),
        "engine sees FIFO edits: {rep}"
    );
    // The PSK never reaches the report or the log.
    d.fifo_sync("C set [x]:Authentication=anothersecret\n");
    let rep = d.fifo_sync("");
    assert!(rep.contains("Authentication=\t<hidden>"), "{rep}");
    assert!(!rep.contains("anothersecret") && !rep.contains("verysecretpsk"));
    assert!(!d.log().contains("anothersecret") && !d.log().contains("verysecretpsk"));
}

#[test]
fn reload_good_and_broken_files() {
    let d = start("reload", CONF, &["-p", "1500", "-T"]);
    // A FIFO edit, voided by any reload.
    d.fifo_sync("C set [General]:Exchange-max-time=77 force\n");
    assert_eq!(d.conf_get("[General]:Exchange-max-time"), "77\n");
    fs::write(&d.conf, CONF.replace("Retransmits=\t5", "Retransmits=\t8")).unwrap();
    d.signal(libc::SIGHUP);
    d.wait_for(|| d.log().contains("reloaded configuration"), "reload");
    assert_eq!(d.conf_get("[General]:Retransmits"), "8\n");
    assert_eq!(d.conf_get("[General]:Exchange-max-time"), "120\n");
    // A broken file leaves the running configuration in force, and the log says where.
    fs::write(&d.conf, "[General]\nRetransmits=11\n[oops\n").unwrap();
    d.fifo("R\n");
    d.wait_for(|| d.log().contains("reload failed"), "failed reload");
    assert!(
        d.log()
            .contains("isakmpd.conf: line 3: section header without closing ']'"),
        "{}",
        d.log()
    );
    assert_eq!(d.conf_get("[General]:Retransmits"), "8\n");
    // So does a file that became group-readable.
    fs::write(&d.conf, CONF.replace("Retransmits=\t5", "Retransmits=\t12")).unwrap();
    fs::set_permissions(&d.conf, fs::Permissions::from_mode(0o640)).unwrap();
    d.signal(libc::SIGHUP);
    d.wait_for(
        || d.log().contains("bad permissions 0640"),
        "permission refusal on reload",
    );
    assert_eq!(d.conf_get("[General]:Retransmits"), "8\n");
    let rep = d.fifo_sync("");
    assert!(
        rep.contains("reloads: 1\n") && rep.contains("reload-failures: 2\n"),
        "{rep}"
    );
}

#[test]
fn sigusr1_writes_the_report() {
    let d = start("report", CONF, &["-p", "1500", "-T", "-D", "7=40", "-S"]);
    d.signal(libc::SIGUSR1);
    let rep = d.run_file("isakmpd.report");
    d.wait_for(
        || {
            fs::read_to_string(&rep)
                .map(|t| t.contains("resolved on demand"))
                .unwrap_or(false)
        },
        "report",
    );
    let text = fs::read_to_string(&rep).unwrap();
    assert!(text.starts_with("isakmpd "), "{text}");
    for want in [
        "== daemon ==",
        "mode: passive",
        "debug: 0=0 1=0 2=0 3=0 4=0 5=0 6=0 7=40",
        "nat-t: off (-T)",
        "== engine ==",
        "connection: conn-west-east",
        "== configuration ==",
        "[peer-east]",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert_eq!(
        fs::metadata(&rep).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Debug and mode commands show up in the next report.
    let text = d.fifo_sync("D A 5\nD 3 60\nM active\n");
    assert!(text.contains("debug: 0=5 1=5 2=5 3=60 4=5"), "{text}");
    assert!(text.contains("mode: active"), "{text}");
    let text = d.fifo_sync("D T\n");
    assert!(text.contains("debug: 0=0 1=0 2=0 3=0"), "{text}");
    let text = d.fifo_sync("D T\n");
    assert!(text.contains("3=60"), "{text}");
}

#[test]
fn fifo_flood_of_garbage_keeps_the_daemon_answering() {
    let d = start("flood", CONF, &["-p", "1500", "-T"]);
    let mut junk = String::new();
    for i in 0..20_000u32 {
        match i % 7 {
            0 => junk.push_str("xyzzy\n"),
            1 => junk.push_str("C set [broken\n"),
            2 => junk.push_str("d 1234 -\n"),
            3 => junk.push_str(&"A".repeat(5000)),
            4 => junk.push_str("\n\u{1b}[31m\u{7}\n"),
            5 => junk.push_str("D 99 99\n"),
            _ => junk.push_str("t main\n"),
        }
    }
    junk.push('\n');
    // Writes are chunked by the pipe; the daemon drains as it goes.
    d.fifo(&junk);
    let _ = fs::remove_file(d.run_file("isakmpd.result"));
    let rep = d.fifo_sync("S\n");
    assert!(d.run_file("isakmpd.result").exists(), "S did not answer");
    assert!(d.alive());
    let errors: u64 = rep
        .lines()
        .find_map(|l| l.strip_prefix("fifo-errors: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(errors >= 15_000, "{errors}");
    // Rate limited: far fewer warnings than garbage lines.
    let warned = d.log().matches("ui: ignoring command").count();
    assert!(warned < 500, "{warned} warnings logged");
    assert_eq!(d.conf_get("[General]:Retransmits"), "5\n");
}

#[test]
fn clean_shutdown_by_fifo_and_by_sigterm() {
    let mut d = start("quit", CONF, &["-p", "1500", "-T"]);
    d.fifo("Q\n");
    assert_eq!(d.wait_exit(), 0);
    assert!(!d.run_file("isakmpd.pid").exists());
    assert!(!d.run_file("isakmpd.fifo").exists());
    assert!(d.log().contains("shutdown requested"));

    let mut d = start("term", CONF, &["-p", "1500", "-T"]);
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(), 0);
    assert!(!d.run_file("isakmpd.pid").exists());
    assert!(!d.run_file("isakmpd.fifo").exists());
}

#[test]
fn idle_daemon_stays_blocked() {
    let d = start("idle", CONF, &["-p", "1500"]);
    std::thread::sleep(Duration::from_millis(300));
    let v0 = d.child_status_field("voluntary_ctxt_switches:");
    let n0 = d.child_status_field("nonvoluntary_ctxt_switches:");
    std::thread::sleep(Duration::from_secs(2));
    let v1 = d.child_status_field("voluntary_ctxt_switches:");
    let n1 = d.child_status_field("nonvoluntary_ctxt_switches:");
    let rss = d.child_status_field("VmRSS:");
    eprintln!(
        "idle over 2 s: voluntary +{}, nonvoluntary +{}, child VmRSS {rss} kB",
        v1 - v0,
        n1 - n0
    );
    assert_eq!(v1 - v0, 0, "the idle child woke up");
    assert!(n1 - n0 <= 1);
}

#[test]
fn capture_file_on_and_off() {
    let d = start("pcap", CONF, &["-p", "1500", "-T", "-L"]);
    let pcap = d.run_file("isakmpd.pcap");
    d.wait_for(
        || fs::metadata(&pcap).map(|m| m.len() == 24).unwrap_or(false),
        "pcap header",
    );
    let h = fs::read(&pcap).unwrap();
    assert_eq!(u32::from_ne_bytes(h[0..4].try_into().unwrap()), 0xa1b2c3d4);
    assert_eq!(
        fs::metadata(&pcap).unwrap().permissions().mode() & 0o777,
        0o600
    );
    d.fifo_sync("p off\np on=/var/run/other.pcap\n");
    assert!(d.run_file("other.pcap").exists());
    let rep = d.fifo_sync("p on=/tmp/evil.pcap\n");
    assert!(rep.contains("capture: /var/run/other.pcap"), "{rep}");
    assert!(
        d.log().contains("only paths beginning with /var/run/"),
        "{}",
        d.log()
    );
}

#[test]
fn sa_commands_parse_and_route() {
    let d = start("sacmd", CONF, &["-p", "1500", "-T"]);
    d.fifo_sync(
        "c conn-west-east\nc nosuch\nt main 192.0.2.2\nd 00112233445566778899aabbccddeeff -\nT\n",
    );
    let log = d.log();
    assert!(
        log.contains("connection nosuch: no such connection"),
        "{log}"
    );
    assert!(
        log.contains("connection conn-west-east: cannot be started"),
        "{log}"
    );
    assert!(log.contains("no such phase 1 SA: 192.0.2.2"), "{log}");
    assert!(
        log.contains("no such SA: 00112233445566778899aabbccddeeff -"),
        "{log}"
    );
}

#[test]
fn second_instance_refuses_to_start() {
    let d = start("twice", CONF, &["-p", "1500", "-T"]);
    // Same /var/run: run the second one inside the first daemon's mount namespace.
    let out = std::process::Command::new("nsenter")
        .args(["-t", &d.pid.to_string(), "-m", "-n", BIN, "-d", "-n", "-c"])
        .arg(&d.conf)
        .args(["-p", "1600", "-T"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already running"), "{err}");
    assert!(d.alive());
}

#[test]
fn sample_configs_load_unchanged() {
    require_root();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let mut n = 0;
    for e in fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !name.contains(".conf") {
            continue; // the KeyNote policies
        }
        let text = fs::read_to_string(&p).unwrap();
        let c =
            isakmpd::conf::Conf::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(!c.conf.sections().is_empty());
        n += 1;
    }
    assert!(n >= 8, "only {n} samples");
    // And one of them through the real daemon (Listen-on removed: its addresses are not ours).
    let text = fs::read_to_string(dir.join("VPN-east.conf")).unwrap();
    let d = start("sample", &text, &["-p", "1500", "-T"]);
    assert_eq!(d.conf_get("[IPsec-east-west]:Remote-ID"), "Net-west\n");
    assert_eq!(
        d.conf_get("[QM-ESP-AES-SHA-PFS-SUITE]:Protocols"),
        "QM-ESP-AES-SHA-PFS\n"
    );
}

/// Without -d the daemon detaches and logs to syslog(3), facility daemon. The test gives
/// it a /dev of its own (in its mount namespace) whose /dev/log is a socket we read.
#[test]
fn detaches_and_logs_to_syslog_without_d() {
    use std::os::unix::net::UnixDatagram;
    require_root();
    let s = Scratch::new("syslog");
    let conf = s.write("isakmpd.conf", "[General]\nRetransmits=x\n", 0o600);
    let sock_path = s.dir.join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let wrap = r#"mount --bind "$1" "$2" && mount -t tmpfs none /dev && mknod -m 666 /dev/null c 1 3 && ln -s "$3" /dev/log && shift 3 && exec "$@""#;
    let run = |conf: &std::path::Path, extra: &[&str]| {
        std::process::Command::new("unshare")
            .args([
                "-m",
                "-n",
                "--propagation",
                "private",
                "sh",
                "-c",
                wrap,
                "sh",
            ])
            .arg(s.dir.join("run"))
            .arg(real_run())
            .arg(&sock_path)
            .arg(BIN)
            .args(["-v", "-n", "-T", "-p", "1500", "-c"])
            .arg(conf)
            .args(extra)
            .output()
            .unwrap()
    };
    // A broken file: exit 1, the reason on stderr and in syslog.
    let out = run(&conf, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("line 2: [General]:Retransmits must be a number"));
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    // <27> = facility daemon (3 << 3) | LOG_ERR (3).
    assert!(msg.starts_with("<27>"), "{msg}");
    assert!(
        msg.contains("isakmpd[") && msg.contains("must be a number"),
        "{msg}"
    );

    // A good file: the command returns at once (detached), the daemon keeps running.
    let conf = s.write(
        "isakmpd.conf",
        &CONF.replace("Listen-on=\t127.0.0.1\n", ""),
        0o600,
    );
    let out = run(&conf, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut started = false;
    while let Ok(n) = sock.recv(&mut buf) {
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.contains("isakmpd started") {
            // <29> = daemon | LOG_NOTICE, the -v lines.
            assert!(msg.starts_with("<29>"), "{msg}");
            started = true;
            break;
        }
    }
    assert!(started, "no start message in syslog");
    let pid: i32 = fs::read_to_string(s.run("isakmpd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The pid file names the detached parent, not our (exited) child.
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    fs::OpenOptions::new()
        .write(true)
        .open(s.run("isakmpd.fifo"))
        .unwrap();
    // SAFETY: stopping the daemon we started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let t0 = std::time::Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && t0.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !s.run("isakmpd.pid").exists(),
        "pid file left after SIGTERM"
    );
}

/// `-f -`: commands come from standard input.
#[test]
fn commands_from_stdin() {
    use std::io::Write as _;
    require_root();
    let s = Scratch::new("stdin");
    let conf = s.write("isakmpd.conf", CONF, 0o600);
    let log = s.dir.join("daemon.log");
    let mut child = std::process::Command::new("unshare")
        .args([
            "-m",
            "-n",
            "--propagation",
            "private",
            "sh",
            "-c",
            r#"mount --bind "$1" "$2" && shift 2 && exec "$@""#,
            "sh",
        ])
        .arg(s.dir.join("run"))
        .arg(real_run())
        .arg(BIN)
        .args(["-d", "-v", "-n", "-T", "-p", "1500", "-f", "-", "-c"])
        .arg(&conf)
        .stdin(std::process::Stdio::piped())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"C get [General]:Retransmits\nQ\n")
        .unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(0), "{}", fs::read_to_string(&log).unwrap());
    assert_eq!(fs::read_to_string(s.run("isakmpd.result")).unwrap(), "5\n");
    assert!(
        !s.run("isakmpd.fifo").exists(),
        "-f - must not create a FIFO"
    );
}
