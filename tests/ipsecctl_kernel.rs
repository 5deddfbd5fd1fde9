//! `ipsecctl -f` with flow and SA rules on Linux: the flows become XFRM policies, the SAs
//! XFRM states, `-d` takes them away and `-F` flushes everything, checked with `ip xfrm`
//! in a network namespace of the test's own. Needs root (see tests/common).

mod common;

use std::process::Command;

use common::*;

/// A network namespace for one test, removed on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("ictlk{}{tag}", std::process::id() % 100000);
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip netns add");
        assert!(st.success());
        Netns(name)
    }

    /// Runs a command in the namespace: (status, stdout, stderr).
    fn run(&self, cmd: &[&str]) -> (i32, String, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(cmd)
            .output()
            .expect("ip netns exec");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ipsecctl(&self, args: &[&str]) -> (i32, String, String) {
        let mut v = vec![BIN, "--ipsecctl"];
        v.extend_from_slice(args);
        self.run(&v)
    }

    fn policies(&self) -> String {
        self.run(&["ip", "xfrm", "policy"]).1
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

const BIN: &str = env!("CARGO_BIN_EXE_isakmpd");

const FLOWS: &str = "\
# host to host, in the mode of the SA rule below (transport)
flow esp from 192.0.2.1 to 192.0.2.2
# gateway to gateway: tunnel, fwd too for what comes in
flow esp from 198.51.100.0/24 to 203.0.113.0/24 local 192.0.2.1 peer 192.0.2.2
flow esp out proto tcp from 2001:db8:1::/48 port 443 to 2001:db8:2::/48 peer 2001:db8::2 type require
flow esp in proto tcp from 2001:db8:2::/48 to 2001:db8:1::/48 port 443 peer 2001:db8::2 type use
flow in from 203.0.113.128/25 to 198.51.100.0/24 type bypass
flow out from 198.51.100.0/24 to 192.0.2.128/25 type deny
";

#[test]
fn flows_become_xfrm_policies_and_go_again() {
    require_root();
    let ns = Netns::new("p");
    let scratch = Scratch::new("ipsecctl-kernel");
    let sa = "esp transport from 192.0.2.1 to 192.0.2.2 spi 0x1001 \
              authkey 0x1111111111111111111111111111111111111111111111111111111111111111 \
              enckey 0x22222222222222222222222222222222\n";
    // The flows alone, with the SA rule's mode known from a file that has it: the SA
    // goes in a file of its own below (whether the kernel has ESP varies).
    let flows = scratch.write("flows.conf", FLOWS, 0o600);
    let (st, out, err) = ns.ipsecctl(&["-f", flows.to_str().unwrap_or_default()]);
    assert_eq!(st, 0, "{err}");
    assert!(out.is_empty(), "{out}");
    let pol = ns.policies();
    let has = |block: &[&str]| {
        let text: Vec<&str> = pol.lines().map(str::trim).collect();
        text.windows(block.len()).any(|w| w == block)
    };
    // Without the SA rule in the same file the host-to-host flow is tunnel mode.
    assert!(
        has(&[
            "src 192.0.2.1/32 dst 192.0.2.2/32",
            "dir out priority 1936 ptype main",
            "tmpl src 0.0.0.0 dst 192.0.2.2",
            "proto esp reqid 0 mode tunnel",
        ]),
        "{pol}"
    );
    assert!(
        has(&[
            "src 203.0.113.0/24 dst 198.51.100.0/24",
            "dir fwd priority 1952 ptype main",
            "tmpl src 192.0.2.2 dst 192.0.2.1",
            "proto esp reqid 0 mode tunnel",
        ]),
        "{pol}"
    );
    assert!(
        has(&[
            "src 2001:db8:1::/48 dst 2001:db8:2::/48 proto tcp sport 443",
            "dir out priority 1904 ptype main",
            "tmpl src :: dst 2001:db8::2",
            "proto esp reqid 0 mode tunnel",
        ]),
        "{pol}"
    );
    assert!(
        has(&[
            "src 2001:db8:2::/48 dst 2001:db8:1::/48 proto tcp dport 443",
            "dir in priority 1904 ptype main",
            "tmpl src 2001:db8::2 dst ::",
            "proto esp reqid 0 mode tunnel",
            "level use",
        ]),
        "{pol}"
    );
    assert!(
        has(&[
            "src 203.0.113.128/25 dst 198.51.100.0/24",
            "dir in priority 1951 ptype main",
        ]),
        "{pol}"
    );
    assert!(
        has(&[
            "src 198.51.100.0/24 dst 192.0.2.128/25",
            "dir out action block priority 1951 ptype main",
        ]),
        "{pol}"
    );
    // Loading again: the kernel has them, each refusal reported as ipsecctl does.
    let (st, _, err) = ns.ipsecctl(&["-f", flows.to_str().unwrap_or_default()]);
    assert_eq!(st, 1);
    assert!(err.contains("ipsecctl: failed to add rule 0\n"), "{err}");
    // -d takes exactly these away.
    let (st, _, err) = ns.ipsecctl(&["-d", "-f", flows.to_str().unwrap_or_default()]);
    assert_eq!(st, 0, "{err}");
    assert_eq!(ns.policies().trim(), "", "{}", ns.policies());

    // With the SA rule in the file the host-to-host flow takes its transport mode; the
    // SA becomes a state when this kernel has ESP, and is refused by it otherwise.
    let both = scratch.write("both.conf", &format!("{FLOWS}{sa}"), 0o600);
    let (st, _, err) = ns.ipsecctl(&["-f", both.to_str().unwrap_or_default()]);
    let pol = ns.policies();
    assert!(
        pol.contains("tmpl src 192.0.2.1 dst 192.0.2.2\n\t\tproto esp reqid 0 mode transport"),
        "{pol}"
    );
    let esp = ns.run(&[
        "ip",
        "xfrm",
        "state",
        "add",
        "src",
        "192.0.2.9",
        "dst",
        "192.0.2.8",
        "proto",
        "esp",
        "spi",
        "0x999",
        "mode",
        "transport",
        "enc",
        "cbc(aes)",
        "0x00000000000000000000000000000000",
        "auth-trunc",
        "hmac(sha256)",
        "0x0000000000000000000000000000000000000000000000000000000000000000",
        "128",
    ]);
    let state = ns.run(&["ip", "xfrm", "state"]).1;
    if esp.0 == 0 {
        assert_eq!(st, 0, "{err}");
        assert!(state.contains("proto esp spi 0x00001001"), "{state}");
        assert!(
            state
                .contains("0x1111111111111111111111111111111111111111111111111111111111111111 128"),
            "{state}"
        );
    } else {
        // This kernel has no ESP (the VM test carries it): the refusal is the kernel's.
        assert_eq!(st, 1);
        assert!(
            err.contains(
                "ipsecctl: rule 8: Protocol not supported\nipsecctl: failed to add rule 8\n"
            ),
            "{err}"
        );
    }
    // -F: nothing left.
    let (st, _, err) = ns.ipsecctl(&["-F"]);
    assert_eq!(st, 0, "{err}");
    assert_eq!(ns.policies().trim(), "");
    assert_eq!(ns.run(&["ip", "xfrm", "state"]).1.trim(), "");

    // What XFRM cannot take is refused before anything is loaded.
    let md5 = scratch.write(
        "md5.conf",
        "flow esp from 192.0.2.1 to 192.0.2.2\ntcpmd5 from 192.0.2.1 to 192.0.2.2 spi 0x1000 authkey 0xabcd\n",
        0o600,
    );
    let (st, _, err) = ns.ipsecctl(&["-f", md5.to_str().unwrap_or_default()]);
    assert_eq!(st, 1);
    assert!(err.contains(": 2: tcpmd5 SAs"), "{err}");
    assert!(err.contains("nothing loaded"), "{err}");
    assert_eq!(ns.policies().trim(), "");
    let usetun = scratch.write(
        "use.conf",
        "flow esp from 192.0.2.1 to 192.0.2.2\nflow esp out from 198.51.100.0/24 to 203.0.113.0/24 peer 192.0.2.2 type use\n",
        0o600,
    );
    let (st, _, err) = ns.ipsecctl(&["-f", usetun.to_str().unwrap_or_default()]);
    assert_eq!(st, 1);
    assert!(
        err.contains(": 2: an out flow of type use in tunnel mode"),
        "{err}"
    );
    assert_eq!(ns.policies().trim(), "");
}

/// Interface names as hosts (ipsecctl's `host_if`): an interface stands for its
/// addresses (IPv6 link-local left out), `egress` for those of the default route's
/// interface. `-nv` prints the flows with the addresses, and the ike rules with the
/// interface's name, as OpenBSD's ipsecctl does (ike.c prints the host's name).
#[test]
fn interface_names_as_hosts() {
    require_root();
    let ns = Netns::new("i");
    for cmd in [
        "ip link add v0 type veth peer name v1",
        "ip addr add 192.0.2.1/24 dev v0",
        "ip addr add 2001:db8::1/64 dev v0 nodad",
        "ip link set v0 up",
        "ip link set v1 up",
        "ip addr add 198.51.100.1/24 dev v1",
    ] {
        let args: Vec<&str> = cmd.split(' ').collect();
        let (st, _, err) = ns.run(&args);
        assert_eq!(st, 0, "{cmd}: {err}");
    }
    let scratch = Scratch::new("ipsecctl-ifnames");
    let conf = scratch.write(
        "ifnames.conf",
        "flow esp from egress to 203.0.113.0/24 peer 192.0.2.2\n\
         flow esp out from v0 to 2001:db8:2::/48 peer 2001:db8::2\n\
         flow esp out from v1/16 to 203.0.113.0/24 peer 192.0.2.2\n\
         ike esp from v0 to 203.0.113.0/24 peer 192.0.2.2\n",
        0o600,
    );
    let conf = conf.to_str().unwrap_or_default();
    // No default route yet: `egress` is no group, and no host either.
    let (st, _, err) = ns.ipsecctl(&["-nvf", conf]);
    assert_eq!(st, 1);
    assert!(err.contains("no IP address found for egress"), "{err}");
    let (st, _, err) = ns.run(&["ip", "route", "add", "default", "via", "192.0.2.254"]);
    assert_eq!(st, 0, "{err}");
    let (st, out, err) = ns.ipsecctl(&["-nvf", conf]);
    assert_eq!(st, 0, "{err}");
    let flows: Vec<&str> = out.lines().filter(|l| l.starts_with("flow")).collect();
    assert_eq!(
        flows,
        [
            "flow esp out from 192.0.2.1 to 203.0.113.0/24 peer 192.0.2.2 type require",
            "flow esp in from 203.0.113.0/24 to 192.0.2.1 peer 192.0.2.2 type require",
            "flow esp out from 2001:db8::1 to 2001:db8:2::/48 peer 2001:db8::2 type require",
            // An interface's mask is ignored: its addresses are hosts.
            "flow esp out from 198.51.100.1 to 203.0.113.0/24 peer 192.0.2.2 type require",
        ],
        "{out}"
    );
    assert!(
        out.contains("C set [from-v0]:ID-type=IPV4_ADDR force\nC set [from-v0]:Address=v0 force\n"),
        "{out}"
    );
    // The flows load with the addresses (the ike rule would need isakmpd's FIFO).
    let flows_only = std::fs::read_to_string(conf)
        .unwrap()
        .replace("ike esp", "# ike esp");
    let conf = scratch.write("ifflows.conf", &flows_only, 0o600);
    let (st, _, err) = ns.ipsecctl(&["-f", conf.to_str().unwrap_or_default()]);
    assert_eq!(st, 0, "{err}");
    let pol = ns.policies();
    assert!(pol.contains("src 192.0.2.1/32 dst 203.0.113.0/24"), "{pol}");
    assert!(
        pol.contains("src 2001:db8::1/128 dst 2001:db8:2::/48"),
        "{pol}"
    );
}

/// A child process killed (and reaped) when the test ends, passed or not.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ipsecctl -m`: the kernel's XFRM notifications in ipsecctl's PF_KEY monitor layout,
/// while another ipsecctl loads flows (`sadb_addflow`), deletes them (`-d`:
/// `sadb_delflow`) and flushes them (`-F`: `sadb_flush`).
#[test]
fn monitor_shows_the_flows_come_and_go() {
    require_root();
    let ns = Netns::new("m");
    let scratch = Scratch::new("ipsecctl-monitor");
    let out_path = scratch.dir.join("monitor.out");
    let _mon = Reaped(
        Command::new("ip")
            .args(["netns", "exec", &ns.0, BIN, "--ipsecctl", "-m"])
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = || std::fs::read_to_string(&out_path).unwrap_or_default();
    // The monitor listens once it sees a probe flow come (what came before is left out).
    let probe = scratch.write(
        "probe.conf",
        "flow in from 192.0.2.9 to 192.0.2.8 type bypass\n",
        0o600,
    );
    let t0 = std::time::Instant::now();
    while !out().contains("sadb_addflow") {
        assert!(t0.elapsed().as_secs() < 10, "the monitor saw nothing");
        assert_eq!(
            ns.ipsecctl(&["-f", probe.to_str().unwrap_or_default()]).0,
            0
        );
        assert_eq!(ns.ipsecctl(&["-F"]).0, 0);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let t0 = std::time::Instant::now();
    while !out().contains("sadb_flush") {
        assert!(t0.elapsed().as_secs() < 10, "no flush of the probe");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let start = out().len();
    let flows = scratch.write(
        "mflows.conf",
        "flow esp out from 198.51.100.0/24 to 203.0.113.0/24 local 192.0.2.1 peer 192.0.2.2\n\
         flow out proto tcp from 198.51.100.0/24 to 192.0.2.128/25 port 25 type deny\n",
        0o600,
    );
    let flows = flows.to_str().unwrap_or_default();
    for args in [
        &["-f", flows][..],
        &["-d", "-f", flows],
        &["-f", flows],
        &["-F"],
    ] {
        let (st, _, err) = ns.ipsecctl(args);
        assert_eq!(st, 0, "{args:?}: {err}");
    }
    let esp = "\taddress_src: 192.0.2.1\n\taddress_dst: 192.0.2.2\n\
               \tsrc_mask: 255.255.255.0\n\tdst_mask: 255.255.255.0\n\
               \tprotocol: proto 0 flags 0\n\tflow_type: type require direction out\n\
               \tsrc_flow: 198.51.100.0\n\tdst_flow: 203.0.113.0\n";
    let deny = "\tsrc_mask: 255.255.255.0\n\tdst_mask: 255.255.255.128\n\
                \tprotocol: proto 6 flags 0\n\tflow_type: type deny direction out\n\
                \tsrc_flow: 198.51.100.0\n\tdst_flow: 192.0.2.128 port 25\n";
    let t0 = std::time::Instant::now();
    let text = loop {
        let t = out().split_off(start);
        if t.contains("sadb_flush") {
            break t;
        }
        assert!(t0.elapsed().as_secs() < 10, "{t}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // Each message: its header line (the length varies with the kernel), its extensions.
    let msgs: Vec<(&str, &str)> = text
        .split_inclusive('\n')
        .fold(Vec::<(usize, usize)>::new(), |mut v, l| {
            let at = l.as_ptr() as usize - text.as_ptr() as usize;
            if !l.starts_with('\t') {
                v.push((at, at + l.len()));
            } else if let Some(last) = v.last_mut() {
                last.1 = at + l.len();
            }
            v
        })
        .into_iter()
        .map(|(a, b)| {
            let m = &text[a..b];
            let (head, rest) = m.split_once('\n').unwrap_or((m, ""));
            (head.split(" vers 2 len").next().unwrap_or_default(), rest)
        })
        .collect();
    assert_eq!(
        msgs,
        [
            ("sadb_addflow: satype esp", esp),
            ("sadb_addflow: satype unspec", deny),
            ("sadb_delflow: satype esp", esp),
            ("sadb_delflow: satype unspec", deny),
            ("sadb_addflow: satype esp", esp),
            ("sadb_addflow: satype unspec", deny),
            ("sadb_flush: satype unspec", ""),
        ],
        "{text}"
    );
}
