//! iked(8)'s flows in the kernel (issue 17: "flows installed at startup unless passive"):
//! an iked that talks to the namespace's kernel (no -X) puts an `active` policy's flows in
//! as XFRM policies with an ESP template and no SA, one set per `from ... to ...` pair,
//! and takes them out again when passive, decoupled, reset or stopped; a `passive` policy
//! has none. Traffic into a flow installed by hand (as ipsecctl would) makes the kernel
//! ACQUIRE, and the ACQUIRE starts the matching policy, `passive` as it is (as iked's
//! ikev2_child_sa_acquire): the peer, a second iked, shows the IKE SA and the CHILD_SA
//! with both pairs that the ping caused.
//!
//! The host has no ESP: the kernel takes policies and reserves SPIs but refuses states.
//! So the peer runs with -X, and the initiator's CHILD_SA, refused by its kernel, is
//! deleted again at the peer; what the peer logged and shows is the proof.

mod common;

#[path = "common/iked.rs"]
mod iked;

use std::process::Command;
use std::time::Duration;

use common::Link;
use iked::Iked;

/// A policy with two pairs of networks, our side first.
fn conf(mode: &str, me: &str, peer: &str, pairs: [(&str, &str); 2], extra: &str) -> String {
    format!(
        "{extra}ikev2 \"tun\" {mode} esp \\\n\
         \tfrom {} to {} \\\n\
         \tfrom {} to {} \\\n\
         \tlocal {me} peer {peer} \\\n\
         \tikesa enc aes-256 prf hmac-sha2-256 auth hmac-sha2-256 group ecp256 \\\n\
         \tchildsa enc aes-256-gcm \\\n\
         \tpsk \"iked-flows-test\"\n",
        pairs[0].0, pairs[0].1, pairs[1].0, pairs[1].1
    )
}

const WEST_PAIRS: [(&str, &str); 2] = [
    ("198.51.100.0/25", "203.0.113.0/25"),
    ("198.51.100.128/25", "203.0.113.128/25"),
];

fn east_pairs() -> [(&'static str, &'static str); 2] {
    [
        (WEST_PAIRS[0].1, WEST_PAIRS[0].0),
        (WEST_PAIRS[1].1, WEST_PAIRS[1].0),
    ]
}

/// `ip xfrm policy` of a namespace.
fn xfrm_policies(netns: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", netns, "xfrm", "policy"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many policies `ip xfrm policy` lists, the daemon's sockets' own left out.
fn count(policies: &str) -> usize {
    policies.lines().filter(|l| l.starts_with("\tdir ")).count()
}

/// Both pairs, out, in and fwd each, with the ESP template to the peer.
fn has_both_pairs(p: &str) -> bool {
    count(p) == 6
        && p.contains("src 198.51.100.0/25 dst 203.0.113.0/25 \n\tdir out priority 2100")
        && p.contains("src 203.0.113.0/25 dst 198.51.100.0/25 \n\tdir in priority 2100")
        && p.contains("src 203.0.113.0/25 dst 198.51.100.0/25 \n\tdir fwd priority 2100")
        && p.contains("src 198.51.100.128/25 dst 203.0.113.128/25 \n\tdir out priority 2100")
        && p.contains("src 203.0.113.128/25 dst 198.51.100.128/25 \n\tdir in priority 2100")
        && p.contains("tmpl src 192.0.2.1 dst 192.0.2.2\n\t\tproto esp")
        && p.contains("mode tunnel")
}

#[test]
fn flows_are_in_the_kernel_unless_passive_or_decoupled_and_leave_with_the_daemon() {
    let link = Link::new("f");
    let ns = link.a.clone();
    // An `active` policy (its peer is not there: it keeps trying) has its flows.
    let west = Iked::start_kernel(
        "iked-flows",
        &ns,
        &conf("active", "192.0.2.1", "192.0.2.2", WEST_PAIRS, ""),
        &[],
    );
    west.wait("the flows of both pairs", || {
        has_both_pairs(&xfrm_policies(&ns))
    });
    let p = xfrm_policies(&ns);
    // One reqid for all: the CHILD_SA negotiated for them serves every pair.
    let words: Vec<&str> = p.split_whitespace().collect();
    let reqids: std::collections::BTreeSet<&str> = words
        .windows(2)
        .filter(|w| w[0] == "reqid")
        .map(|w| w[1])
        .collect();
    assert_eq!(reqids.len(), 1, "{p}");
    assert!(!reqids.contains("0"), "{p}");
    assert!(west.log().contains("policy \"tun\": flows loaded"));

    // decouple: out; couple: in again.
    assert_eq!(west.ikectl(&["decouple"]).0, 0);
    west.wait("no flows when decoupled", || {
        count(&xfrm_policies(&ns)) == 0
    });
    assert_eq!(west.ikectl(&["couple"]).0, 0);
    west.wait("the flows back", || has_both_pairs(&xfrm_policies(&ns)));
    // passive: nothing may start, so nothing may be acquired; active: back.
    assert_eq!(west.ikectl(&["passive"]).0, 0);
    west.wait("no flows when passive", || count(&xfrm_policies(&ns)) == 0);
    assert_eq!(west.ikectl(&["active"]).0, 0);
    west.wait("the flows back", || has_both_pairs(&xfrm_policies(&ns)));
    // reset policy: the policies go, and their flows.
    assert_eq!(west.ikectl(&["reset", "policy"]).0, 0);
    west.wait("no flows without policies", || {
        count(&xfrm_policies(&ns)) == 0
    });
    // reload: the file's policies, and their flows, are back.
    assert_eq!(west.ikectl(&["reload"]).0, 0);
    west.wait("the flows after reload", || {
        has_both_pairs(&xfrm_policies(&ns))
    });
    // Stopped: nothing is left in the kernel.
    drop(west);
    assert_eq!(count(&xfrm_policies(&ns)), 0, "{}", xfrm_policies(&ns));

    // `set decouple`, `set passive` and a `passive` policy: no flows at all.
    for (mode, set) in [
        ("active", "set decouple\n"),
        ("active", "set passive\n"),
        ("passive", ""),
    ] {
        let d = Iked::start_kernel(
            "iked-flows-set",
            &ns,
            &conf(mode, "192.0.2.1", "192.0.2.2", WEST_PAIRS, set),
            &[],
        );
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(count(&xfrm_policies(&ns)), 0, "{mode} {set}: {}", d.log());
        assert!(!d.log().contains("flows loaded"), "{mode} {set}");
    }
}

/// `ip xfrm policy add|del` of the outbound flow of WEST_PAIRS' first pair in `netns`,
/// with an ESP tunnel template to 192.0.2.2: what ipsecctl would install.
fn hand_flow(netns: &str, add: bool) -> bool {
    let mut a = vec!["-n", netns, "xfrm", "policy"];
    a.push(if add { "add" } else { "delete" });
    a.extend(["src", WEST_PAIRS[0].0, "dst", WEST_PAIRS[0].1, "dir", "out"]);
    if add {
        a.extend([
            "tmpl",
            "src",
            "192.0.2.1",
            "dst",
            "192.0.2.2",
            "proto",
            "esp",
            "mode",
            "tunnel",
            "level",
            "required",
        ]);
    }
    // (Quiet: the delete finds nothing when the daemon took that flow along.)
    Command::new("ip")
        .args(&a)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn a_ping_into_a_flow_makes_the_kernel_acquire_and_iked_start_the_policy() {
    let link = Link::new("q");
    let (w, e) = (link.a.clone(), link.b.clone());
    // West's first network holds an address of its own, and the peer's first network
    // is reached over the link: a ping from one to the other hits the first flow.
    let sh = |cmd: String| {
        let st = Command::new("sh").arg("-c").arg(&cmd).status().unwrap();
        assert!(st.success(), "{cmd}");
    };
    sh(format!("ip -n {w} addr add 198.51.100.1/32 dev lo"));
    sh(format!("ip -n {w} route add 203.0.113.0/24 via 192.0.2.2"));
    let east = Iked::start(
        "iked-acq-east",
        &e,
        &conf("passive", "192.0.2.2", "192.0.2.1", east_pairs(), ""),
    );
    // Both policies passive: only the ACQUIRE can start west's. West's has no flows of
    // its own; one goes in by hand.
    let west = Iked::start_kernel(
        "iked-acq-west",
        &w,
        &conf("passive", "192.0.2.1", "192.0.2.2", WEST_PAIRS, ""),
        &[],
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(count(&xfrm_policies(&w)), 0, "{}", xfrm_policies(&w));
    assert!(hand_flow(&w, true), "ip xfrm policy add");
    assert!(
        !east.show_sa().contains("iked_sas:"),
        "nothing started before the ping"
    );

    // Pings for a few seconds: the kernel holds them and asks for an SA.
    let _ = Command::new("ip")
        .args([
            "netns", "exec", &w, "ping", "-q", "-c", "6", "-i", "0.5", "-W", "1",
        ])
        .args(["-I", "198.51.100.1", "203.0.113.1"])
        .output()
        .unwrap();
    let wlog = west.log();
    assert!(
        wlog.contains("kernel ACQUIRE for 198.51.100.1 -> 203.0.113.1: starting policy \"tun\""),
        "{wlog}"
    );
    // The peer has the IKE SA west started (west the initiator, east the responder)...
    let s = east.wait_sa("east's IKE SA", |s| {
        s.lines().any(|l| {
            l.starts_with("iked_sas:") && l.contains("ESTABLISHED") && l.contains(" r nexti")
        })
    });
    assert!(s.contains("192.0.2.2:500->192.0.2.1:500"), "{s}");
    // ... and made the CHILD_SA with both pairs of selectors, one flow each.
    let elog = east.log();
    let child = elog
        .lines()
        .find(|l| l.contains("CHILD_SA established"))
        .unwrap_or_else(|| panic!("no CHILD_SA at east:\n{elog}"));
    assert!(
        child.contains("203.0.113.0/25 -> 198.51.100.0/25")
            && child.contains("203.0.113.128/25 -> 198.51.100.128/25"),
        "{child}"
    );
    // West's kernel has no ESP, so west deleted that CHILD_SA again; the IKE SA stays.
    // One negotiation, not a storm: the kernel's repeated ACQUIREs started one IKE SA.
    let started = west
        .log()
        .matches("kernel ACQUIRE for 198.51.100.1 -> 203.0.113.1: starting policy")
        .count();
    assert_eq!(started, 1, "{}", west.log());
    assert_eq!(
        east.show_sa()
            .lines()
            .filter(|l| l.starts_with("iked_sas:"))
            .count(),
        1,
        "{}",
        east.show_sa()
    );
    drop(west);
    let _ = hand_flow(&w, false);
    assert_eq!(count(&xfrm_policies(&w)), 0, "{}", xfrm_policies(&w));
}

#[test]
fn transport_mode_flows_are_between_the_peers_and_the_policy_negotiates_transport() {
    let link = Link::new("t");
    let (w, e) = (link.a.clone(), link.b.clone());
    let transport = |me: &str, peer: &str, mode: &str| {
        format!(
            "ikev2 \"host\" {mode} transport esp proto icmp \\\n\
             \tfrom {me} to {peer} local {me} peer {peer} \\\n\
             \tikesa enc aes-256 prf hmac-sha2-256 auth hmac-sha2-256 group ecp256 \\\n\
             \tchildsa enc aes-256-gcm psk \"iked-flows-test\"\n"
        )
    };
    // East, in transport mode, takes no CHILD_SA without USE_TRANSPORT_MODE.
    let east = Iked::start(
        "iked-tm-east",
        &e,
        &transport("192.0.2.2", "192.0.2.1", "passive"),
    );
    let west = Iked::start_kernel(
        "iked-tm-west",
        &w,
        &transport("192.0.2.1", "192.0.2.2", "active"),
        &[],
    );
    // Out and in between the peers themselves, no forward policy, transport mode.
    west.wait("west's transport flows", || count(&xfrm_policies(&w)) == 2);
    let p = xfrm_policies(&w);
    assert!(
        p.contains("src 192.0.2.1/32 dst 192.0.2.2/32 proto icmp \n\tdir out priority 2100"),
        "{p}"
    );
    assert!(
        p.contains("src 192.0.2.2/32 dst 192.0.2.1/32 proto icmp \n\tdir in priority 2100"),
        "{p}"
    );
    assert!(
        p.contains("mode transport") && !p.contains("mode tunnel"),
        "{p}"
    );
    // West's active policy: a CHILD_SA east accepts only in transport mode.
    east.wait_sa("east's IKE SA", |s| s.contains("ESTABLISHED"));
    let elog = east.log();
    let child = elog
        .lines()
        .find(|l| l.contains("CHILD_SA established"))
        .unwrap_or_else(|| panic!("no CHILD_SA at east:\n{elog}"));
    assert!(child.contains("192.0.2.2/32 -> 192.0.2.1/32"), "{child}");
    drop(west);
    assert_eq!(count(&xfrm_policies(&w)), 0, "{}", xfrm_policies(&w));
}
