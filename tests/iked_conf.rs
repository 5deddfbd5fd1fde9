//! iked.conf(5) (src/ikev2/conf/): every example of the manual page and of Debian's
//! /etc/iked.conf (tests/vectors/iked-conf/) parsed and checked field by field; macros and
//! `-D`; `include` through the loader; every `set` option; errors with their line and
//! reason; the conversion to the engine's `Policy`; and a seeded mutation run over the
//! fixtures that must neither panic nor take long.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use isakmpd::ikev2::conf::{
    parse_str, parse_with, Af, Auth, CfgKind, ConfErrors, Eval, Flow, Host, Id, IkedConf, Mode,
    SaProto, Settings, TMode, DEFAULT_DPD_SECS,
};
use isakmpd::ikev2::policy::{Identity, PeerAuth, Selector, SigMethod};
use isakmpd::ikev2::wire::{DhGroup, EncrId, IdType, IntegId, PrfId};

const FIXTURES: &[&str] = &[
    "man-vpn.conf",
    "man-proto-list.conf",
    "man-macro.conf",
    "man-include.conf",
    "man-tag.conf",
    "man-nat.conf",
    "man-eap.conf",
    "man-psk.conf",
    "man-eval.conf",
    "man-transport.conf",
    "etc-users.conf",
    "etc-eap.conf",
    "etc-psk.conf",
    "all-settings.conf",
];

fn fixture(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/iked-conf")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn parse(name: &str) -> IkedConf {
    parse_str(name, &fixture(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str, p: u8) -> Host {
    Host::Net(ip(s), p)
}

fn addr(s: &str) -> Host {
    Host::Addr(ip(s))
}

fn names(xs: &[isakmpd::ikev2::conf::Xf]) -> Vec<&'static str> {
    xs.iter().map(|x| x.name).collect()
}

/// The first error of a parse that must fail.
fn error(text: &str) -> (u32, String) {
    let e = parse_str("t.conf", text).expect_err("must not parse");
    let f = e.first().unwrap();
    (f.line, f.msg.clone())
}

fn no_loader(f: &str) -> Result<String, String> {
    Err(format!("no file {f}"))
}

// ----- the manual page -----

#[test]
fn man_vpn_two_policies_named_policy1_and_policy2() {
    let c = parse("man-vpn.conf");
    assert_eq!(c.policies.len(), 2);
    let (a, b) = (&c.policies[0], &c.policies[1]);
    assert_eq!((a.name.as_str(), a.named), ("policy1", false));
    assert_eq!(b.name, "policy2");
    assert_eq!(a.origin, "man-vpn.conf:4");
    assert_eq!(a.sa_proto, SaProto::Esp);
    assert_eq!(a.mode, Mode::Passive);
    assert_eq!(
        a.flows,
        vec![Flow {
            src: addr("192.168.3.1"),
            src_port: None,
            src_nat: None,
            dst: addr("192.168.3.2"),
            dst_port: None,
        }]
    );
    assert_eq!((a.local.as_ref(), a.peer.as_ref()), (None, None));
    assert_eq!(b.flows[0].src, net("10.1.1.0", 24));
    assert_eq!(b.flows[0].dst, net("10.1.2.0", 24));
    assert_eq!(b.peer, Some(addr("192.168.3.2")));
    assert_eq!(a.auth, Auth::Default);
    assert!(a.ikesa.is_empty() && a.childsa.is_empty());
}

#[test]
fn man_proto_list() {
    let c = parse("man-proto-list.conf");
    let p = &c.policies[0];
    assert_eq!(p.protos, vec![6, 17]);
    assert_eq!(p.flows[0].src, addr("192.168.1.1"));
    assert_eq!(p.flows[0].dst, addr("10.0.0.18"));
    assert_eq!(p.peer, Some(addr("192.168.10.1")));
}

#[test]
fn man_macro() {
    let c = parse("man-macro.conf");
    let p = &c.policies[0];
    assert_eq!(p.peer, Some(addr("192.168.3.12")));
    assert_eq!(p.flows[0].src, net("192.168.7.0", 24));
    assert_eq!(p.flows[0].dst, net("192.168.8.0", 24));
}

#[test]
fn man_tag_and_tap() {
    let c = parse("man-tag.conf");
    let p = &c.policies[0];
    // Quoted: `$domain` is left for iked to expand at run time.
    assert_eq!(p.tag.as_deref(), Some("ipsec-$domain"));
    assert_eq!(p.tap, Some(1));
    assert_eq!(p.peer, Some(addr("192.168.3.2")));
}

#[test]
fn man_outgoing_nat() {
    let c = parse("man-nat.conf");
    let f = &c.policies[0].flows[0];
    assert_eq!(f.src, addr("10.10.10.1"));
    assert_eq!(f.src_nat, Some(net("192.168.1.0", 24)));
    assert_eq!(f.dst, net("192.168.2.0", 24));
    assert_eq!(c.policies[0].peer, Some(addr("10.10.20.1")));
}

#[test]
fn man_eap_server() {
    let c = parse("man-eap.conf");
    assert_eq!(c.users.len(), 1);
    assert_eq!(c.users[0].name, "test");
    assert_eq!(c.users[0].password.as_bytes(), b"password123");
    let p = &c.policies[0];
    assert_eq!((p.name.as_str(), p.named), ("win7", true));
    assert_eq!(p.flows[0].src, Host::Dynamic);
    assert_eq!(p.flows[0].dst, net("172.16.2.0", 24));
    assert_eq!(p.peer, Some(net("10.0.0.0", 8)));
    assert_eq!(p.local, Some(net("192.168.56.0", 24)));
    assert_eq!(p.auth, Auth::EapMschapV2);
    assert_eq!(p.cfg.len(), 1);
    assert_eq!(
        (
            p.cfg[0].request,
            p.cfg[0].kind,
            &p.cfg[0].addr,
            p.cfg[0].attr
        ),
        (false, CfgKind::Address, &addr("172.16.2.1"), 1)
    );
    assert_eq!(p.tag.as_deref(), Some("$name-$id"));
    // Secrets are not printed.
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("password123"), "{dbg}");
}

#[test]
fn man_psk_big_test() {
    let c = parse("man-psk.conf");
    let p = &c.policies[0];
    assert_eq!(p.name, "big test");
    assert_eq!(p.protos, vec![6]);
    assert_eq!(p.flows.len(), 2);
    assert_eq!(p.flows[0].src, net("10.0.0.0", 8));
    assert_eq!(
        (p.flows[0].src_port, p.flows[0].dst_port),
        (Some(23), Some(40))
    );
    assert_eq!(p.flows[1].dst, addr("192.168.2.2"));
    assert_eq!(
        (p.peer.as_ref(), p.local.as_ref()),
        (Some(&Host::Any), Some(&Host::Any))
    );
    assert_eq!(p.ikesa.len(), 2);
    assert_eq!(names(&p.ikesa[0].enc), ["aes-128-gcm"]);
    assert_eq!(names(&p.ikesa[0].group), ["ecp256", "curve25519"]);
    assert!(p.ikesa[0].auth.is_empty());
    assert_eq!(names(&p.ikesa[1].enc), ["aes-128"]);
    assert_eq!(names(&p.ikesa[1].auth), ["hmac-sha2-256"]);
    assert_eq!(p.childsa.len(), 2);
    assert_eq!(names(&p.childsa[0].enc), ["aes-128-gcm"]);
    assert_eq!(names(&p.childsa[1].auth), ["hmac-sha2-256"]);
    assert_eq!(p.srcid, Some(Id::Fqdn("host.example.com".into())));
    assert_eq!(p.dstid, Some(Id::Ipv4("192.168.0.254".parse().unwrap())));
    match &p.auth {
        Auth::Psk(k) => assert_eq!(k.as_bytes(), b"foobar"),
        a => panic!("{a:?}"),
    }
    assert!(!format!("{p:?}").contains("foobar"));
}

#[test]
fn man_psk_big_test_converts() {
    let (pol, warns) = parse("man-psk.conf").to_engine().unwrap();
    assert_eq!(pol.peers.len(), 1, "{warns:?}");
    let peer = &pol.peers[0];
    assert_eq!(peer.name, "big test");
    assert_eq!(peer.auth, PeerAuth::psk(b"foobar"));
    assert_eq!(peer.local, "0.0.0.0:500".parse::<SocketAddr>().unwrap());
    assert_eq!(peer.remote, "0.0.0.0:500".parse::<SocketAddr>().unwrap());
    assert_eq!(peer.local_id, Identity::fqdn("host.example.com"));
    assert_eq!(peer.remote_id, Some(Identity::addr(ip("192.168.0.254"))));
    // Two ikesa clauses of 4 PRFs (the default) by 2 groups: 16 suites, the first of
    // each proposal first.
    assert_eq!(peer.ike.len(), 16);
    let gcm = |prf, dh| isakmpd::ikev2::policy::IkeProposal {
        encr: EncrId::AES_GCM_16,
        key_bits: Some(128),
        integ: None,
        prf,
        dh,
    };
    assert_eq!(peer.ike[0], gcm(PrfId::HMAC_SHA2_256, DhGroup::ECP_256));
    assert_eq!(peer.ike[1].encr, EncrId::AES_CBC);
    assert_eq!(peer.ike[1].integ, Some(IntegId::HMAC_SHA2_256_128));
    assert_eq!(peer.ike[1].dh, DhGroup::ECP_256);
    assert_eq!(peer.ike[2], gcm(PrfId::HMAC_SHA2_256, DhGroup::CURVE25519));
    assert_eq!(peer.ike.iter().filter(|s| s.integ.is_none()).count(), 8);
    assert!(peer.ike.iter().all(|s| s.suite().is_ok()));
    assert_eq!(peer.esp.len(), 2);
    assert_eq!(
        (
            peer.esp[0].encr,
            peer.esp[0].key_bits,
            peer.esp[0].integ,
            peer.esp[0].pfs
        ),
        (EncrId::AES_GCM_16, Some(128), None, None)
    );
    assert_eq!(
        (peer.esp[1].encr, peer.esp[1].integ),
        (EncrId::AES_CBC, Some(IntegId::HMAC_SHA2_256_128))
    );
    let sel = |n: &str, p: u8, port: Option<u16>| {
        let mut s = Selector::subnet(ip(n), p);
        s.protocol = 6;
        if let Some(port) = port {
            s.start_port = port;
            s.end_port = port;
        }
        s
    };
    assert_eq!(
        peer.local_ts,
        vec![sel("10.0.0.0", 8, Some(23)), sel("192.168.1.1", 32, None)]
    );
    assert_eq!(
        peer.remote_ts,
        vec![sel("20.0.0.0", 8, Some(40)), sel("192.168.2.2", 32, None)]
    );
    // Everything in the rule is implemented: no warning names it.
    assert!(
        !warns.iter().any(|w| w.contains("\"big test\"")),
        "{warns:?}"
    );
}

#[test]
fn man_evaluation_order() {
    let c = parse("man-eval.conf");
    let n: Vec<&str> = c.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(n, ["policy1", "catch all", "subnet", "policy4", "policy5"]);
    assert_eq!(c.policies[0].eval, Eval::Quick);
    assert_eq!(c.policies[1].eval, Eval::Normal);
    assert_eq!(c.policies[1].peer, Some(Host::Any));
    assert_eq!(c.policies[2].peer, Some(net("192.168.1.0", 24)));
    assert_eq!(c.policies[4].flows[0].dst, net("10.0.5.12", 30));
    assert_eq!(c.policies[4].origin, "man-eval.conf:8");
}

#[test]
fn man_transport_gre() {
    let c = parse("man-transport.conf");
    let p = &c.policies[0];
    assert_eq!(p.tmode, TMode::Transport);
    assert_eq!(p.protos, vec![47]);
    assert_eq!(p.flows[0].src, addr("2001:db8::aa:1"));
    assert_eq!(p.flows[0].dst, addr("2001:db8::dd:4"));
    assert_eq!(p.peer, Some(Host::Name("D.example.com".into())));
    // No resolver: the conversion skips it, and says why.
    let (pol, warns) = c.to_engine().unwrap();
    assert!(pol.peers.is_empty());
    assert!(warns
        .iter()
        .any(|w| w.starts_with("policy \"policy1\"") && w.contains("host names are not resolved")));
}

// ----- /etc/iked.conf -----

#[test]
fn etc_users() {
    let c = parse("etc-users.conf");
    let u: Vec<(&str, &[u8])> = c
        .users
        .iter()
        .map(|u| (u.name.as_str(), u.password.as_bytes()))
        .collect();
    assert_eq!(
        u,
        [
            ("user1", &b"password123"[..]),
            ("user2", &b"password456"[..])
        ]
    );
    assert!(c.policies.is_empty());
}

#[test]
fn etc_eap() {
    let c = parse("etc-eap.conf");
    let p = &c.policies[0];
    assert_eq!(p.name, "win7");
    assert_eq!(p.mode, Mode::Passive);
    assert_eq!(
        (p.local.as_ref(), p.peer.as_ref()),
        (Some(&Host::Any), Some(&Host::Any))
    );
    assert_eq!(p.auth, Auth::EapMschapV2);
    assert_eq!(p.cfg.len(), 2);
    assert_eq!((p.cfg[1].kind, p.cfg[1].attr), (CfgKind::NameServer, 3));
    assert_eq!(p.cfg[1].addr, addr("10.1.0.2"));
    // As in iked: we sign, the road warrior authenticates with EAP-MSCHAPv2, and gets
    // its address from the pool.
    let (pol, warns) = c.to_engine().unwrap();
    assert_eq!(pol.peers.len(), 1, "{warns:?}");
    let p = &pol.peers[0];
    assert_eq!(p.auth, PeerAuth::EapServer(SigMethod::Any));
    assert_eq!(p.cp.pool, Some((ip("10.2.0.1"), 32)));
    assert!(
        !warns
            .iter()
            .any(|w| w.contains("EAP") || w.contains("eap \"")),
        "{warns:?}"
    );
}

#[test]
fn etc_psk_converts() {
    let c = parse("etc-psk.conf");
    let p = &c.policies[0];
    assert_eq!(p.flows.len(), 3);
    assert_eq!(p.local, Some(addr("192.168.1.1")));
    assert_eq!(p.peer, Some(addr("192.168.2.1")));
    let (pol, warns) = c.to_engine().unwrap();
    let peer = &pol.peers[0];
    assert_eq!(peer.name, "policy1");
    assert_eq!(peer.local, "192.168.1.1:500".parse::<SocketAddr>().unwrap());
    assert_eq!(
        peer.remote,
        "192.168.2.1:500".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        peer.auth,
        PeerAuth::psk(b"you-should-not-use-psk-authentication!")
    );
    assert_eq!(peer.local_id, Identity::addr(ip("192.168.1.1")));
    assert_eq!(peer.remote_id, None);
    // On a host with a name, a rule without srcid shows that name (iked's parse.y).
    let c = parse_str("etc-psk.conf", &fixture("etc-psk.conf")).unwrap();
    let (named, _) = c.to_engine_as(Some("gw.example")).unwrap();
    assert_eq!(named.peers[0].local_id, Identity::fqdn("gw.example"));
    let s = |n: &str, l| Selector::subnet(ip(n), l);
    assert_eq!(peer.local_ts, vec![s("10.3.0.0", 24), s("10.5.0.0", 24)]);
    assert_eq!(peer.remote_ts, vec![s("10.1.0.0", 24), s("172.16.1.0", 24)]);
    // iked's defaults: the AEAD proposal's first choice first.
    assert_eq!(peer.ike[0].encr, EncrId::AES_GCM_16);
    assert_eq!(peer.ike[0].dh, DhGroup::CURVE25519);
    assert_eq!(peer.ike.len(), 16);
    assert!(peer.ike.iter().all(|s| s.suite().is_ok()));
    assert!(peer
        .esp
        .iter()
        .all(|s| s.algorithms().is_some() && s.pfs.is_none()));
    assert!(peer
        .esp
        .iter()
        .any(|s| s.encr == EncrId::AES_CBC && s.key_bits == Some(256)));
    // The defaults' 3DES is left out with one note for all rules, not a warning about
    // this rule; so is the cut to 16 suites.
    assert!(!warns.iter().any(|w| w.starts_with("policy")), "{warns:?}");
    let two = format!("{}\n{}", fixture("etc-psk.conf"), fixture("etc-psk.conf"));
    let (pol, warns) = parse_str("two", &two).unwrap().to_engine().unwrap();
    assert_eq!(pol.peers.len(), 2);
    assert_eq!(pol.peers[1].name, "policy2");
    let notes: Vec<&String> = warns
        .iter()
        .filter(|w| w.contains("iked's default"))
        .collect();
    assert_eq!(
        notes,
        [
            "ikesa: iked's default transforms 3des not implemented, left out",
            "ikesa: iked's default proposals give more combinations than the engine's 16; \
             the first 16 are offered",
        ],
        "{warns:?}"
    );
}

// ----- settings -----

#[test]
fn every_set_option() {
    let c = parse("all-settings.conf");
    let s = &c.settings;
    assert!(s.passive && s.decouple && s.fragmentation && !s.mobike);
    assert!(s.enforce_single_ikesa && s.sticky_address && !s.vendor_id);
    assert!(s.cert_partial_chain);
    assert_eq!(s.dpd_check_interval, 30);
    let o = s.ocsp.as_ref().unwrap();
    assert_eq!(o.url, "http://ocsp.example.com/");
    assert_eq!((o.tolerate, o.maxage), (Some(300), Some(3600)));

    let d = Settings::default();
    assert!(!d.passive && !d.decouple && !d.fragmentation && d.mobike && d.vendor_id);
    assert_eq!(d.dpd_check_interval, DEFAULT_DPD_SECS);
    assert_eq!(parse_str("e", "").unwrap().settings, d);

    // Each option and its opposite, last one wins.
    let one = |line: &str| {
        parse_str("s", line)
            .unwrap_or_else(|e| panic!("{e}"))
            .settings
    };
    assert!(!one("set passive\nset active\n").passive);
    assert!(!one("set decouple\nset couple\n").decouple);
    assert!(!one("set fragmentation\nset nofragmentation\n").fragmentation);
    assert!(one("set nomobike\nset mobike\n").mobike);
    assert!(!one("set enforcesingleikesa\nset noenforcesingleikesa\n").enforce_single_ikesa);
    assert!(!one("set stickyaddress\nset nostickyaddress\n").sticky_address);
    assert!(one("set novendorid\nset vendorid\n").vendor_id);
    assert_eq!(one("set dpd_check_interval 0").dpd_check_interval, 0);
    let o = one("set ocsp \"http://x/\"\n").ocsp.unwrap();
    assert_eq!((o.tolerate, o.maxage), (None, None));
    assert_eq!(
        one("set ocsp \"http://x/\" tolerate 10\n")
            .ocsp
            .unwrap()
            .tolerate,
        Some(10)
    );

    let mut cfg = isakmpd::ikev2::policy::Config::default();
    c.apply_settings(&mut cfg);
    assert_eq!(cfg.liveness_secs, 30);
    assert!(cfg.fragmentation);
    let (_, warns) = c.to_engine().unwrap();
    assert!(warns.iter().any(|x| x.starts_with("set ocsp")), "{warns:?}");
    // passive and decouple are the daemon's (crate::iked), not the engine's; the engine
    // does fragmentation: no warning.
    for w in ["set passive", "set decouple", "set fragmentation"] {
        assert!(!warns.iter().any(|x| x.starts_with(w)), "{w}: {warns:?}");
    }
}

// ----- macros and -D -----

#[test]
fn macros_and_command_line_override() {
    let text = "gw = \"10.0.0.1\"\nnets = \"from 10.1.0.0/16 to 10.2.0.0/16\"\n\
                ikev2 esp $nets peer $gw psk \"k\"\n";
    let c = parse_str("m", text).unwrap();
    assert_eq!(c.policies[0].peer, Some(addr("10.0.0.1")));
    assert_eq!(c.policies[0].flows[0].src, net("10.1.0.0", 16));
    // -D wins over the file's definition, and defines what the file does not.
    let c = parse_with("m", text, &["gw=10.9.9.9", "unused=1"], &mut no_loader).unwrap();
    assert_eq!(c.policies[0].peer, Some(addr("10.9.9.9")));
    // -D splits at the last `=` (iked's cmdline_symset).
    let c = parse_with(
        "m",
        "ikev2 from any to any peer $p psk $k\n",
        &["p=10.0.0.7", "k=a=b"],
        &mut no_loader,
    );
    assert_eq!(c.unwrap_err().0[0].msg, "macro 'k' not defined");
    let c = parse_with(
        "m",
        "ikev2 from any to any peer any psk $k=a\n",
        &["k=a=b"],
        &mut no_loader,
    );
    assert!(c.is_err(), "`$k=a` is `$k` then `=a`");
    // A bad -D.
    let e = parse_with("m", "", &["novalue"], &mut no_loader).unwrap_err();
    assert!(e.0[0].msg.contains("name=value"), "{e}");
    // Macros are not expanded inside quotes.
    let c = parse_str(
        "m",
        "x = \"y\"\nikev2 from any to any peer any tag \"$x\"\n",
    )
    .unwrap();
    assert_eq!(c.policies[0].tag.as_deref(), Some("$x"));
    // Macro values of several strings are joined by spaces.
    let c = parse_str("m", "t = a b\nikev2 from any to any peer any tag $t\n");
    assert!(c.is_err(), "`tag a b`: two strings after tag");
}

// ----- include -----

#[test]
fn include_through_the_loader() {
    let mut loader = |f: &str| match f {
        "/etc/macros.conf" => Ok("remote_gw = \"192.168.3.12\"\nkey = \"sekrit\"\n".to_string()),
        _ => Err("not found".to_string()),
    };
    let c = parse_with(
        "man-include.conf",
        &fixture("man-include.conf"),
        &[],
        &mut loader,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let p = &c.policies[0];
    assert_eq!(p.peer, Some(addr("192.168.3.12")));
    assert!(matches!(&p.auth, Auth::Psk(k) if k.as_bytes() == b"sekrit"));
    let (pol, _) = c.to_engine().unwrap();
    assert_eq!(
        pol.peers[0].remote,
        "192.168.3.12:500".parse::<SocketAddr>().unwrap()
    );

    // Errors inside an included file name that file and its line.
    let mut loader = |f: &str| match f {
        "a" => Ok("\n\nikev2 from 10.0.0.1 to\n".to_string()),
        _ => Err("no such file".into()),
    };
    let e = parse_with("top", "include \"a\"\ninclude \"b\"\n", &[], &mut loader).unwrap_err();
    assert_eq!(e.0.len(), 2, "{e}");
    assert_eq!((e.0[0].file.as_str(), e.0[0].line), ("a", 3));
    assert_eq!((e.0[1].file.as_str(), e.0[1].line), ("top", 2));
    assert!(e.0[1]
        .msg
        .contains("failed to include file b: no such file"));

    // Rules after an include come from the including file again.
    let mut loader = |_: &str| Ok("set passive".to_string());
    let c = parse_with("top", "include \"x\"\nset decouple\n", &[], &mut loader).unwrap();
    assert!(c.settings.passive && c.settings.decouple);
}

#[test]
fn psk_forms() {
    let key = |line: &str, files: &[(&str, &str)]| {
        let files: Vec<(String, String)> = files
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let mut loader = |f: &str| {
            files
                .iter()
                .find(|(n, _)| n == f)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| "not found".to_string())
        };
        let text = format!("ikev2 from any to any peer any {line}\n");
        match parse_with("k", &text, &[], &mut loader) {
            Ok(c) => match &c.policies[0].auth {
                Auth::Psk(k) => Ok(k.as_bytes().to_vec()),
                a => panic!("{a:?}"),
            },
            Err(e) => Err(e.to_string()),
        }
    };
    assert_eq!(key("psk \"foobar\"", &[]), Ok(b"foobar".to_vec()));
    assert_eq!(key("psk foobar", &[]), Ok(b"foobar".to_vec()));
    assert_eq!(key("psk 0x00ff10", &[]), Ok(vec![0, 0xff, 0x10]));
    assert_eq!(key("psk \"0x4142\"", &[]), Ok(b"AB".to_vec()));
    // A key file holds hex digits (parsekeyfile()), read through the loader.
    assert_eq!(
        key("psk file \"/etc/iked/k\"", &[("/etc/iked/k", "4142\n")]),
        Ok(b"AB".to_vec())
    );
    let e = key("psk file \"/etc/iked/k\"", &[("/etc/iked/k", "not hex")]).unwrap_err();
    assert!(
        e.starts_with("k:1: keys need to be specified in hex digits"),
        "{e}"
    );
    let e = key("psk file \"/nope\"", &[]).unwrap_err();
    assert_eq!(e, "k:1: cannot read key file /nope: not found");
    let e = key(&format!("psk {}", "a".repeat(1025)), &[]).unwrap_err();
    assert!(e.contains("psk empty or too long"), "{e}");
    let e = key("psk \"\"", &[]).unwrap_err();
    assert!(e.contains("psk empty or too long"), "{e}");
}

#[test]
fn include_loop_and_depth() {
    let mut loader = |f: &str| match f {
        "a" => Ok("set passive\ninclude \"b\"\n".to_string()),
        "b" => Ok("\ninclude \"a\"\n".to_string()),
        _ => Ok(format!("include \"{f}x\"\n")),
    };
    let e = parse_with("top", "include \"a\"\n", &[], &mut loader).unwrap_err();
    let f = e.first().unwrap();
    assert_eq!((f.file.as_str(), f.line), ("b", 2));
    assert_eq!(f.msg, "include loop: top -> a -> b -> a");
    let e = parse_with("top", "include \"deep\"\n", &[], &mut loader).unwrap_err();
    assert!(e.first().unwrap().msg.contains("nested deeper"), "{e}");
}

// ----- errors -----

#[test]
fn error_unknown_keyword() {
    let (line, msg) = error("set passive\n\nikev3 esp from any to any\n");
    assert_eq!(line, 3);
    assert!(msg.starts_with("unknown keyword `ikev3`"), "{msg}");
    let (line, msg) = error("set passiv\n");
    assert_eq!(line, 1);
    assert!(msg.contains("unknown set option `passiv`"), "{msg}");
}

#[test]
fn error_missing_to() {
    let (line, msg) = error("# c\nikev2 esp \\\n  from 10.0.0.1 \\\n  peer 10.0.0.2\n");
    assert_eq!(line, 4);
    assert_eq!(msg, "expected `to` after `from 10.0.0.1`, found `peer`");
    let (line, msg) = error("ikev2 esp\\\n peer 10.0.0.2\n");
    assert_eq!(line, 2);
    assert_eq!(
        msg,
        "expected `from SRC to DST` before `peer`: every ikev2 rule needs a flow"
    );
    let (_, msg) = error("ikev2 esp proto tcp passive from any to any\n");
    assert!(
        msg.starts_with("`passive` cannot come after `proto`"),
        "{msg}"
    );
}

#[test]
fn error_bad_address() {
    let (line, msg) = error("\nikev2 from 10.0.0.300 to 10.0.0.2\n");
    assert_eq!(line, 2);
    assert_eq!(msg, "bad address `10.0.0.300`: not an IPv4 address");
    let (_, msg) = error("ikev2 from 10.0.0.0/33 to 10.0.0.2\n");
    assert_eq!(
        msg,
        "bad address `10.0.0.0/33`: the prefix length must be 0 to 32"
    );
    let (_, msg) = error("ikev2 from 10.0.0.1 to 2001:db8::x\n");
    assert!(msg.contains("not an IPv6 address"), "{msg}");
    let (_, msg) = error("ikev2 from 10.0.0.1 to 10.0.0.2 peer 10.0.0.3 local 2001:db8::1\n");
    assert!(msg.contains("address families differ"), "{msg}");
}

#[test]
fn error_bad_algorithm() {
    let (line, msg) = error("ikev2 from any to any peer any \\\n ikesa enc aes-129\n");
    assert_eq!(line, 2);
    assert!(
        msg.starts_with("aes-129 not a valid transform: expected a cipher: 3des"),
        "{msg}"
    );
    let (_, msg) = error("ikev2 from any to any peer any ikesa enc chacha20-poly1305\n");
    assert!(msg.contains("childsa (ESP) only"), "{msg}");
    let (_, msg) = error("ikev2 from any to any peer any childsa enc aes-128-gcm-12\n");
    assert!(msg.contains("ikesa (IKE) only"), "{msg}");
    // A prefix is not a keyword here (iked's parse_xf would take `aes` for aes-128).
    let (_, msg) = error("ikev2 from any to any peer any ikesa enc aes\n");
    assert!(msg.starts_with("aes not a valid transform"), "{msg}");
    let (_, msg) = error("ikev2 from any to any peer any ikesa enc aes-128-gcm auth hmac-sha1\n");
    assert_eq!(
        msg,
        "authentication is implicit for given encryption transforms"
    );
    let (_, msg) = error("ikev2 from any to any peer any ikesa enc aes-128-gcm enc aes-128\n");
    assert!(msg.starts_with("cannot mix encryption transforms"), "{msg}");
    let (_, msg) = error("ikev2 from any to any peer any ikesa group none\n");
    assert_eq!(msg, "IKE group can not be \"none\"");
    let (_, msg) = error("ikev2 from any to any peer any ikesa esn\n");
    assert_eq!(msg, "cannot use ESN with ikesa");
    let (_, msg) = error("ikev2 from any to any peer any ikesa group modp9999\n");
    assert!(msg.contains("expected a group: none, modp768"), "{msg}");
}

#[test]
fn error_unterminated_string() {
    let (line, msg) = error("set passive\nikev2 \"open esp\nset active\n");
    assert_eq!(line, 2);
    assert!(msg.starts_with("unterminated quoted string"), "{msg}");
}

#[test]
fn error_undefined_macro() {
    let (line, msg) = error("a = \"1.2.3.4\"\n\nikev2 from any to any peer $b\n");
    assert_eq!(line, 3);
    assert_eq!(msg, "macro 'b' not defined");
}

#[test]
fn error_clause_out_of_order_and_values() {
    let (_, msg) = error("ikev2 from any to any peer any psk x srcid a.example\n");
    assert!(msg.starts_with("`srcid` cannot come after `psk`"), "{msg}");
    let (_, msg) = error("ikev2 from any to any peer any lifetime 3x\n");
    assert!(
        msg.starts_with("invalid value `3x`: expected a time"),
        "{msg}"
    );
    let (_, msg) = error("ikev2 from any to any peer any psk 0xabc\n");
    assert!(
        msg.starts_with("keys need to be specified in hex digits"),
        "{msg}"
    );
    let (_, msg) = error("ikev2 from any to any peer any eap \"md5\"\n");
    assert!(msg.starts_with("unsupported EAP method: md5"), "{msg}");
    let (_, msg) = error("ikev2 from any to any peer any tap \"lo0\"\n");
    assert!(msg.starts_with("invalid tap interface name: lo0"), "{msg}");
    let (_, msg) = error("ikev2 from any to any peer any config netmask 2001:db8::1\n");
    assert!(msg.starts_with("not a valid ikecfg option"), "{msg}");
    let (_, msg) = error("ikev2 active from 10.0.0.0/8 to 10.1.0.0/16\n");
    assert!(
        msg.starts_with("active mode requires local/peer address"),
        "{msg}"
    );
    let (_, msg) = error("ikev2 from 10.0.0.1 to 10.0.0.2 from 10.0.0.3 to 10.0.0.4\n");
    assert!(
        msg.starts_with("could not get local/peer specification"),
        "{msg}"
    );
    let (_, msg) = error("ikev2 from 10.0.0.1 to 10.0.0.2 (10.0.0.0/8)\n");
    assert!(
        msg.starts_with("no flow NAT support for destination network"),
        "{msg}"
    );
    let (_, msg) = error("ikev2 from any to any port 70000 peer any\n");
    assert_eq!(msg, "port outside range: 70000");
    let (_, msg) = error("set dpd_check_interval -1\n");
    assert_eq!(msg, "timeout outside range: -1");
    let (_, msg) = error("ikev2 esp from any to any peer any psk\n");
    assert_eq!(
        msg,
        "expected a pre-shared key after `psk`, found end of line"
    );
}

#[test]
fn every_error_is_reported_with_file_and_line() {
    let e: ConfErrors = parse_str(
        "x.conf",
        "set bogus\nset passive\nikev2 from 1.2.3 to any\n\nuser \"a\"\n",
    )
    .unwrap_err();
    let lines: Vec<u32> = e.0.iter().map(|e| e.line).collect();
    assert_eq!(lines, [1, 3, 5]);
    let shown = e.to_string();
    assert!(
        shown.starts_with("x.conf:1: unknown set option `bogus`"),
        "{shown}"
    );
    assert!(shown.contains("\nx.conf:3: bad address `1.2.3`"), "{shown}");
    assert!(
        shown.contains("\nx.conf:5: expected the user's password, found end of line"),
        "{shown}"
    );
}

// ----- every clause, and the conversion's warnings -----

#[test]
fn every_clause_of_a_rule() {
    let text = "ikev2 \"full\" default active ipcomp transport natt esp inet proto { tcp, 17 } \
        rdomain 3 from 10.0.0.0/24 port ssh to 10.1.0.0/24 port 443, to 10.3.0.1 from 10.2.0.1 \
        local 192.0.2.1 peer 192.0.2.2 \
        ikesa enc aes-256 auth hmac-sha2-512 prf hmac-sha2-384 group ecp384 \
        childsa enc chacha20-poly1305 group curve25519 group none noesn \
        srcid \"me@example.com\" dstid \"/C=DE/CN=peer\" ikelifetime 2h lifetime 30m bytes 2G \
        psk 0x6b6579 request address any request name-server any iface sec0 \
        tag \"t\" tap enc2\n";
    let c = parse_str("f", text).unwrap_or_else(|e| panic!("{e}"));
    let p = &c.policies[0];
    assert_eq!(
        (p.eval, p.mode, p.ipcomp, p.tmode, p.natt),
        (Eval::Default, Mode::Active, true, TMode::Transport, true)
    );
    assert_eq!(
        (p.sa_proto, p.af, p.rdomain),
        (SaProto::Esp, Some(Af::Inet), Some(3))
    );
    assert_eq!(p.protos, vec![6, 17]);
    assert_eq!(p.flows.len(), 2);
    assert_eq!(
        (p.flows[0].src_port, p.flows[0].dst_port),
        (Some(22), Some(443))
    );
    assert_eq!(
        (&p.flows[1].src, &p.flows[1].dst),
        (&addr("10.2.0.1"), &addr("10.3.0.1"))
    );
    assert_eq!(names(&p.ikesa[0].prf), ["hmac-sha2-384"]);
    assert_eq!(names(&p.childsa[0].group), ["curve25519", "none"]);
    assert_eq!(p.childsa[0].esn, vec![false]);
    assert_eq!(p.srcid, Some(Id::Ufqdn("me@example.com".into())));
    assert_eq!(p.dstid, Some(Id::Asn1Dn("/C=DE/CN=peer".into())));
    assert_eq!(p.ikelifetime, Some(7200));
    assert_eq!(
        p.lifetime.map(|l| (l.seconds, l.bytes)),
        Some((1800, Some(2 << 30)))
    );
    assert!(matches!(&p.auth, Auth::Psk(k) if k.as_bytes() == b"key"));
    assert_eq!(p.cfg.len(), 2);
    assert!(p.cfg[0].request && p.cfg[0].addr == Host::Any && p.cfg[0].attr == 1);
    assert_eq!(p.iface.as_deref(), Some("sec0"));
    assert_eq!((p.tag.as_deref(), p.tap), (Some("t"), Some(2)));

    // The DN cannot be checked: skipped, with the reason.
    let (pol, warns) = c.to_engine().unwrap();
    assert!(pol.peers.is_empty());
    assert!(
        warns.iter().any(|w| w.contains("dstid: an ASN.1 DN")),
        "{warns:?}"
    );

    // Without it, everything the engine leaves out is a warning naming rule and clause.
    let c = parse_str("f", &text.replace("dstid \"/C=DE/CN=peer\" ", "")).unwrap();
    let (pol, warns) = c.to_engine().unwrap();
    let peer = &pol.peers[0];
    for clause in [
        "default:",
        "ipcomp:",
        "natt:",
        "rdomain 3:",
        "iface sec0:",
        "tag \"t\":",
        "tap enc2:",
    ] {
        assert!(
            warns
                .iter()
                .any(|w| w.starts_with("policy \"full\" (f:1): ") && w.contains(clause)),
            "{clause} {warns:?}"
        );
    }
    // Transport mode is the engine's now (USE_TRANSPORT_MODE); the flows keep their
    // pairing: each `from ... to ...` with each protocol, not every source with every
    // destination.
    assert!(!warns.iter().any(|w| w.contains("transport")), "{warns:?}");
    assert!(peer.transport);
    assert_eq!((peer.local_ts.len(), peer.remote_ts.len()), (4, 4));
    assert_eq!(peer.flows.len(), 4, "{:?}", peer.flows);
    assert!(peer.flows.iter().all(|(l, r)| l.protocol == r.protocol));
    // The lifetimes are the engine's now: no warning, and the values are kept.
    assert!(!warns.iter().any(|w| w.contains("lifetime")), "{warns:?}");
    // So are configuration payloads: the requests are asked for in IKE_AUTH.
    assert!(!warns.iter().any(|w| w.contains("request")), "{warns:?}");
    assert_eq!(
        peer.cp.request,
        [
            isakmpd::ikev2::wire::CfgAttrType::INTERNAL_IP4_ADDRESS,
            isakmpd::ikev2::wire::CfgAttrType::INTERNAL_IP4_DNS
        ]
    );
    assert_eq!(
        (
            peer.ike_lifetime_secs,
            peer.child_lifetime_secs,
            peer.child_lifetime_bytes
        ),
        (7200, 1800, 2 << 30)
    );
    assert_eq!(
        peer.local_id,
        Identity {
            ty: IdType::RFC822_ADDR,
            data: b"me@example.com".to_vec()
        }
    );
    assert_eq!(peer.ike.len(), 1);
    assert_eq!(
        (
            peer.ike[0].encr,
            peer.ike[0].key_bits,
            peer.ike[0].integ,
            peer.ike[0].prf,
            peer.ike[0].dh
        ),
        (
            EncrId::AES_CBC,
            Some(256),
            Some(IntegId::HMAC_SHA2_512_256),
            PrfId::HMAC_SHA2_384,
            DhGroup::ECP_384
        )
    );
    // childsa groups become PFS: curve25519, then none.
    assert_eq!(peer.esp.len(), 2);
    assert_eq!(
        (peer.esp[0].encr, peer.esp[0].key_bits),
        (EncrId::CHACHA20_POLY1305, None)
    );
    assert_eq!(peer.esp[0].pfs, Some(DhGroup::CURVE25519));
    assert_eq!(peer.esp[1].pfs, None);
    // proto { tcp, 17 }: one selector per protocol and flow end.
    assert_eq!(peer.local_ts.len(), 4);
    assert_eq!(peer.local_ts[0].protocol, 6);
    assert_eq!(
        (peer.local_ts[0].start_port, peer.local_ts[0].end_port),
        (22, 22)
    );
    assert_eq!(peer.local_ts[1].protocol, 17);
    assert_eq!(peer.remote_ts.len(), 4);
    assert_eq!(peer.remote_ts[3], {
        let mut s = Selector::host(ip("10.3.0.1"));
        s.protocol = 17;
        s
    });
}

#[test]
fn conversion_edge_cases() {
    // A peer network: its network address, with a warning; sntrup761x25519 is dropped
    // by name; a repeated name is an error.
    let c = parse_str(
        "n",
        "ikev2 \"a\" from 10.0.0.0/8 to 10.1.0.0/16 peer 192.0.2.77/24 \
         ikesa enc aes-128 auth hmac-sha2-256 group sntrup761x25519 group curve25519 psk k\n",
    )
    .unwrap();
    let (pol, warns) = c.to_engine().unwrap();
    let peer = &pol.peers[0];
    assert_eq!(peer.remote.ip(), ip("192.0.2.0"));
    assert_eq!(peer.local.ip(), ip("0.0.0.0"));
    // One cipher, one integrity algorithm, iked's four default PRFs, one usable group.
    assert_eq!(peer.ike.len(), 4);
    assert!(peer.ike.iter().all(|s| s.dh == DhGroup::CURVE25519));
    assert_eq!(peer.ike[0].prf, PrfId::HMAC_SHA2_256);
    assert!(
        warns
            .iter()
            .any(|w| w.contains("peer 192.0.2.77/24: a network")),
        "{warns:?}"
    );
    assert!(
        warns
            .iter()
            .any(|w| w.contains("ikesa: sntrup761x25519 not implemented")),
        "{warns:?}"
    );

    let two = "ikev2 \"a\" from any to any peer 192.0.2.1 psk k\nikev2 \"a\" from any to any peer 192.0.2.2 psk k\n";
    let e = parse_str("d", two).unwrap().to_engine().unwrap_err();
    assert!(e.contains("already defined"), "{e}");

    // `any` on both ends of an IPv6 rule: the family of the rule.
    let c = parse_str(
        "v6",
        "ikev2 from any to 2001:db8::/32 peer 2001:db8::1 psk k\n",
    )
    .unwrap();
    let (pol, _) = c.to_engine().unwrap();
    assert_eq!(pol.peers[0].local_ts, vec![Selector::subnet(ip("::"), 0)]);
    assert_eq!(pol.peers[0].local.ip(), ip("::"));
    // `from dynamic`: left out, and with no other flow the rule is skipped.
    let c = parse_str(
        "dy",
        "ikev2 from dynamic to 10.0.0.0/8 peer 192.0.2.1 psk k\n",
    )
    .unwrap();
    let (pol, warns) = c.to_engine().unwrap();
    assert!(pol.peers.is_empty());
    assert!(
        warns.iter().any(|w| w.contains("from dynamic")),
        "{warns:?}"
    );
    // ipsec.conf rules are skipped, as iked does, and said so.
    let c = parse_str(
        "s",
        "flow esp from 1.2.3.4 to 5.6.7.8\nike esp from any to any\n",
    )
    .unwrap();
    assert_eq!(c.skipped, ["s:1: flow", "s:2: ike"]);
    let (_, warns) = c.to_engine().unwrap();
    assert!(warns.iter().any(|w| w.starts_with("s:1: flow")));
}

// ----- robustness -----

/// xorshift64*: deterministic, seeded.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn mutated_fixtures_never_panic() {
    let texts: Vec<String> = FIXTURES.iter().map(|f| fixture(f)).collect();
    let interesting: &[u8] = b"\"'\\$#{}()/,=\n \t-0x:@*";
    let mut rng = Rng(0x01ce_dc0f_f1e5);
    let start = Instant::now();
    let (mut ok, mut err, mut runs) = (0, 0, 0);
    // IKED_CONF_FUZZ_ROUNDS=1000000 for a longer run by hand.
    let rounds: usize = std::env::var("IKED_CONF_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    for round in 0..rounds {
        let base = texts[round % texts.len()].as_bytes();
        let mut b = base.to_vec();
        for _ in 0..=rng.below(4) {
            match rng.below(6) {
                0 => b.truncate(rng.below(b.len() + 1)),
                1 if !b.is_empty() => {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
                2 => {
                    let i = rng.below(b.len() + 1);
                    b.insert(i, interesting[rng.below(interesting.len())]);
                }
                3 if !b.is_empty() => {
                    let i = rng.below(b.len());
                    b.remove(i);
                }
                4 => {
                    let other = texts[rng.below(texts.len())].as_bytes();
                    let i = rng.below(b.len() + 1);
                    let j = rng.below(other.len());
                    b.splice(i..i, other[j..].iter().copied().take(200));
                }
                _ => {
                    let i = rng.below(b.len() + 1);
                    b.splice(i..i, b"$remote_gw include \"x\" ".iter().copied());
                }
            }
        }
        let text = String::from_utf8_lossy(&b);
        let mut loader = |f: &str| Ok(texts[f.len() % texts.len()].clone());
        runs += 1;
        match parse_with("fuzz", &text, &["remote_gw=10.0.0.1"], &mut loader) {
            Ok(c) => {
                ok += 1;
                let _ = c.to_engine();
            }
            Err(e) => {
                err += 1;
                assert!(!e.0.is_empty() && e.0.len() <= isakmpd::ikev2::conf::MAX_ERRORS + 1);
            }
        }
    }
    assert_eq!(runs, rounds);
    assert!(ok > 100 && err > 100, "ok {ok} err {err}");
    assert!(
        rounds > 4000 || start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
}

/// Rules built from the grammar's own words in random order and with random values get
/// past the first token far more often than mutated files do: parse and convert them.
#[test]
fn random_rules_never_panic() {
    const WORDS: &[&str] = &[
        "ikev2",
        "\"n\"",
        "quick",
        "skip",
        "default",
        "passive",
        "active",
        "ipcomp",
        "tunnel",
        "transport",
        "natt",
        "esp",
        "ah",
        "inet",
        "inet6",
        "proto",
        "tcp",
        "udp",
        "{",
        "}",
        ",",
        "rdomain",
        "1",
        "300",
        "-1",
        "from",
        "to",
        "any",
        "dynamic",
        "10.0.0.1",
        "10.0.0.0/8",
        "10.1.0.0/16",
        "2001:db8::1",
        "2001:db8::/32",
        "192.0.2.1",
        "host.example",
        "(10.9.0.0/16)",
        "port",
        "22",
        "ssh",
        "70000",
        "peer",
        "local",
        "ikesa",
        "childsa",
        "enc",
        "auth",
        "prf",
        "group",
        "aes-128",
        "aes-256-gcm",
        "aes-128-gcm",
        "chacha20-poly1305",
        "3des",
        "null",
        "hmac-sha1",
        "hmac-sha2-256",
        "hmac-md5",
        "curve25519",
        "ecp256",
        "modp2048",
        "none",
        "sntrup761x25519",
        "esn",
        "noesn",
        "srcid",
        "dstid",
        "a@b.example",
        "/CN=x",
        "ikelifetime",
        "lifetime",
        "3h",
        "10m",
        "bytes",
        "1G",
        "psk",
        "\"k\"",
        "0x4142",
        "eap",
        "\"mschap-v2\"",
        "rsa",
        "config",
        "request",
        "address",
        "name-server",
        "netmask",
        "255.255.255.0",
        "iface",
        "tag",
        "tap",
        "enc0",
        "$m",
        "\\\n",
        "#c\n",
    ];
    let mut rng = Rng(0x005e_ed0f_1ced);
    let mut converted = 0;
    let rounds: usize = std::env::var("IKED_CONF_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    for _ in 0..rounds {
        let mut text = String::from("m = \"10.0.0.9\"\nikev2 ");
        if rng.below(3) > 0 {
            text.push_str("from 10.0.0.0/24 to 10.1.0.0/24 ");
        }
        for _ in 0..rng.below(8) {
            text.push_str(WORDS[rng.below(WORDS.len())]);
            text.push(' ');
        }
        if rng.below(2) == 0 {
            text.push_str("peer 192.0.2.1 psk \"k\"");
        }
        text.push('\n');
        if let Ok(c) = parse_str("r", &text) {
            if let Ok((pol, _)) = c.to_engine() {
                converted += pol.peers.len();
                for peer in &pol.peers {
                    assert!(!peer.ike.is_empty() && peer.ike.len() <= 16);
                    assert!(!peer.esp.is_empty() && peer.esp.len() <= 16);
                    assert!(!peer.local_ts.is_empty() && !peer.remote_ts.is_empty());
                }
            }
        }
    }
    assert!(converted > 50, "{converted}");
}

#[test]
fn big_and_odd_inputs_are_bounded() {
    // A long line of flows, a huge token, binary bytes, deep continuation.
    let many = "from 10.0.0.1 to 10.0.0.2 ".repeat(200);
    let (_, msg) = error(&format!("ikev2 {many} peer any\n"));
    assert!(msg.starts_with("too many flows"), "{msg}");
    let (_, msg) = error(&format!("ikev2 \"{}\"\n", "x".repeat(10_000)));
    assert_eq!(msg, "string too long");
    assert!(parse_str("b", "\u{0}\u{1}\u{ff}ikev2\n").is_err());
    assert!(parse_str("c", &"\\\n".repeat(100_000)).is_ok());
    let e = parse_str("m", &"bogus\n".repeat(1000)).unwrap_err();
    assert_eq!(e.0.len(), isakmpd::ikev2::conf::MAX_ERRORS);
    // An overlong string is one error, and the next line is read as usual.
    let e = parse_str("l", &format!("tag \"{}\"\nbogus\n", "x".repeat(9000))).unwrap_err();
    assert_eq!(
        e.0.iter().map(|e| e.line).collect::<Vec<_>>(),
        [1, 2],
        "{e}"
    );
    // A long macro used many times stops at the expansion budget.
    let text = format!(
        "m = \"{}\"\n{}",
        "x".repeat(8000),
        "set $m $m $m $m $m $m $m $m\n".repeat(1000)
    );
    let t0 = Instant::now();
    let e = parse_str("x", &text).unwrap_err();
    assert_eq!(e.0.len(), isakmpd::ikev2::conf::MAX_ERRORS);
    assert!(t0.elapsed() < Duration::from_secs(20));
    let big = "#".repeat(isakmpd::ikev2::conf::MAX_INPUT + 1);
    assert!(parse_str("big", &big).unwrap_err().0[0]
        .msg
        .starts_with("file too large"));
}

#[test]
fn lifetimes_default_to_iked_s_and_zero_turns_them_off() {
    let rule = |clauses: &str| {
        let text = format!("ikev2 from 10.0.0.1 to 10.0.0.2 {clauses} psk x\n");
        let (pol, warns) = parse_str("l", &text).unwrap().to_engine().unwrap();
        assert!(!warns.iter().any(|w| w.contains("lifetime")), "{warns:?}");
        let p = &pol.peers[0];
        (
            p.ike_lifetime_secs,
            p.child_lifetime_secs,
            p.child_lifetime_bytes,
        )
    };
    // No clause: no IKE SA rekeying, CHILD_SAs 3 h and 4 GiB (iked.conf(5)).
    assert_eq!(rule(""), (0, 3 * 3600, 4 << 30));
    // `lifetime T` alone keeps the byte default.
    assert_eq!(rule("ikelifetime 1h lifetime 10m"), (3600, 600, 4 << 30));
    assert_eq!(
        rule("ikelifetime 0 lifetime 0 bytes 0"),
        (0, 0, 0),
        "zero disables"
    );
    assert_eq!(rule("lifetime 2h bytes 512M"), (0, 7200, 512 << 20));
}

#[test]
fn config_address_is_a_pool_for_dynamic_peers_and_request_address_asks_from_any() {
    use isakmpd::ikev2::wire::CfgAttrType;
    let server = "ikev2 \"rw\" passive esp from 203.0.113.0/24 to dynamic \\\n\
                  \tlocal 192.0.2.1 peer any psk \"k\" \\\n\
                  \tconfig address 198.51.100.128/28 config name-server 203.0.113.53\n";
    let (pol, warns) = parse_str("s", server).unwrap().to_engine().unwrap();
    assert_eq!(pol.peers.len(), 1, "{warns:?}");
    let p = &pol.peers[0];
    assert_eq!(p.cp.pool, Some((ip("198.51.100.128"), 28)));
    assert_eq!(
        p.cp.serve,
        vec![(CfgAttrType::INTERNAL_IP4_DNS, vec![203, 0, 113, 53])]
    );
    assert_eq!(
        p.remote_ts,
        vec![Selector::subnet(ip("198.51.100.128"), 28)]
    );
    let client = "ikev2 \"rw\" active esp from dynamic to 203.0.113.0/24 \\\n\
                  \tlocal 192.0.2.2 peer 192.0.2.1 psk \"k\" request address any\n";
    let (pol, warns) = parse_str("c", client).unwrap().to_engine().unwrap();
    assert_eq!(pol.peers.len(), 1, "{warns:?}");
    let p = &pol.peers[0];
    assert_eq!(p.cp.request, [CfgAttrType::INTERNAL_IP4_ADDRESS]);
    assert_eq!(p.local_ts, vec![Selector::subnet(ip("0.0.0.0"), 0)]);
    // `dynamic` with neither: the flow is left out, and said why.
    let neither = "ikev2 \"x\" esp from dynamic to 203.0.113.0/24 peer 192.0.2.1 psk \"k\"\n";
    let (_, warns) = parse_str("n", neither).unwrap().to_engine().unwrap();
    assert!(
        warns.iter().any(|w| w.contains("from dynamic: needs")),
        "{warns:?}"
    );
}
