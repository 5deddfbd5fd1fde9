//! Entry points shared by the fuzz targets (tests/fuzz) and the corpus replay test
//! (tests/corpus.rs), so the fuzzer and the stable test suite check the same properties.
//!
//! Each function must return normally on every input: a panic is the bug being hunted.
//! [`TARGETS`] names them all, for the corpus test and the long campaign; [`mutate`] is
//! the deterministic mutator both use.

#![forbid(unsafe_code)]

pub mod eap;
pub mod engine;
pub mod ikev1;
pub mod mutate;

use crate::ike::wire::{Message, Payload};

pub use eap::ikev2_eap;
pub use engine::ikev2_engine;
pub use ikev1::ikev1_engine;

/// A target: its corpus directory's name (tests/fuzz/corpus/NAME), the function, and
/// whether its inputs are text (for the mutator's dictionary).
pub type Target = (&'static str, fn(&[u8]), bool);

/// Every target.
pub const TARGETS: &[Target] = &[
    ("wire_message", wire_message, false),
    ("fifo_command", fifo_command, true),
    ("conf_file", conf_file, true),
    ("ikev2_wire", ikev2_wire, false),
    ("ikev2_engine", ikev2_engine, false),
    ("ikev2_eap", ikev2_eap, false),
    ("ikev1_engine", ikev1_engine, false),
    ("iked_conf", iked_conf, true),
    ("ipsec_conf", ipsec_conf, true),
    ("keynote", keynote, true),
    ("ikectl_control", ikectl_control, true),
];

/// Parses a datagram as a message (cleartext and decrypted forms). Whatever parses must
/// emit back to the same bytes and parse again to the same message; every SA must iterate
/// without surprises.
pub fn wire_message(data: &[u8]) {
    for padding in [false, true] {
        let Ok(m) = Message::parse(data, padding) else {
            continue;
        };
        let _ = m.check_payload_types();
        for p in &m.payloads {
            if let Payload::Sa(sa) = &p.payload {
                for prop in sa.proposals() {
                    for t in prop.transforms() {
                        for a in t.attributes.iter() {
                            let _ = a.as_u64();
                        }
                    }
                }
            }
            if let Payload::Id(id) = &p.payload {
                let _ = id.identity().map(|i| i.to_string());
            }
            if let Payload::Delete(d) = &p.payload {
                assert_eq!(d.spis().count(), d.count());
            }
        }
        let mut out = vec![0u8; data.len()];
        let n = m
            .emit(&mut out)
            .expect("a parsed message fits its own length");
        assert_eq!(&out[..n], data, "round trip changed the bytes");
        let again = Message::parse(&out[..n], padding).expect("re-parse");
        assert_eq!(again, m);
    }
}

/// A FIFO command line: parsing never panics.
pub fn fifo_command(data: &[u8]) {
    let mut r = crate::fifo::LineReader::default();
    r.feed(data, |l| {
        if let crate::fifo::Line::Text(t) = l {
            let _ = crate::fifo::parse_command(t);
        }
    });
}

/// A configuration file: parsing never panics, and what parses answers lookups.
pub fn conf_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = crate::conf::Conf::parse(text) {
        for s in p.conf.sections() {
            for b in &s.bindings {
                let _ = p.conf.get(&s.name, &b.tag);
                let _ = p.conf.get_list(&s.name, &b.tag);
            }
            let _ = p.conf.get(&s.name, "Transforms");
        }
    }
}

/// An IKEv2 datagram (and the same bytes as the decrypted payload chain of an SK
/// payload, the first byte naming the first payload): whatever parses must emit back
/// to bytes that parse to the same message, and every substructure must iterate.
pub fn ikev2_wire(data: &[u8]) {
    use crate::ikev2::wire as v2;
    fn walk(payloads: &v2::Payloads<'_>) {
        for e in payloads.iter() {
            match &e.payload {
                v2::Payload::Sa(sa) => {
                    for p in sa.proposals() {
                        for t in p.transforms() {
                            let _ = (t.key_length(), t.encr(), t.prf(), t.integ(), t.dh());
                            let _ = (t.esn(), t.repr());
                            for a in t.attributes() {
                                let _ = a;
                            }
                        }
                    }
                }
                v2::Payload::Ts(ts) => {
                    for t in ts.selectors() {
                        let _ = crate::ikev2::policy::Selector::from_wire(&t);
                    }
                }
                v2::Payload::Cp(cp) => {
                    for a in cp.attributes() {
                        let _ = a.value.len();
                    }
                }
                v2::Payload::Delete(d) => {
                    let _ = d.spis().count();
                }
                _ => {}
            }
        }
        let _ = payloads.notifies().count();
    }
    if let Ok(m) = v2::Message::parse(data) {
        walk(&m.payloads);
        let mut out = vec![0u8; data.len() + 64];
        let n = m
            .emit(&mut out)
            .expect("a parsed message fits its own length");
        let again = v2::Message::parse(&out[..n]).expect("the emitted message parses");
        // RESERVED fields are not kept (they are ignored on receipt and sent as zero,
        // RFC 7296 §3): compare what was parsed, not the bodies.
        fn fields<'a>(m: &v2::Message<'a>) -> Vec<(v2::PayloadType, bool, v2::Payload<'a>)> {
            m.payloads
                .iter()
                .map(|e| (e.ty, e.critical, e.payload))
                .collect()
        }
        assert_eq!(again.header, m.header, "round trip changed the header");
        assert_eq!(
            fields(&again),
            fields(&m),
            "round trip changed the payloads"
        );
    }
    if let Some((&first, rest)) = data.split_first() {
        if let Ok(p) = v2::parse_payloads(v2::PayloadType(first), rest) {
            walk(&p);
        }
    }
    sk_round_trip(data);
}

/// SK protection over any bytes (RFC 7296 §3.14, RFC 5282): under fixed keys of a CBC and
/// an AEAD suite, what `seal` accepts must `open` back (the ICV verifies; only the
/// padding it finds may be refused), and what `open` takes must lie inside the message;
/// garbage is refused, never a panic. A decrypted SKF goes through a reassembly.
fn sk_round_trip(data: &[u8]) {
    use crate::ike::crypto::AeadAlg;
    use crate::ikev2::keys::{Encr, Integ};
    use crate::ikev2::sk::{Reassembly, SkError, SkKeys};
    let suites = [
        (Encr::AesCbc(16), Some(Integ::HmacSha2_256_128)),
        (Encr::Aead(AeadAlg::AesGcm(16)), None),
    ];
    for (encr, integ) in suites {
        let e = vec![7u8; encr.key_material_len()];
        let a = vec![9u8; integ.map_or(0, Integ::key_len)];
        let Ok(sk) = SkKeys::new(encr, integ, &e, &a) else {
            continue;
        };
        let mut m = data.to_vec();
        let sealed = sk.seal(&mut m).is_ok();
        match sk.open(&mut m) {
            Ok(o) => {
                assert!(o.plain.end <= m.len(), "plaintext beyond the message");
                if let Some((number, total)) = o.fragment {
                    let mut r: Box<Reassembly<65536, 64>> = Box::default();
                    let _ = r.add(number, total, o.first, &m[o.plain.clone()]);
                    let mut out = vec![0u8; 65536];
                    let _ = r.assemble(&mut out);
                }
            }
            Err(SkError::Integrity) => assert!(!sealed, "a message sealed here does not verify"),
            Err(_) => {}
        }
    }
}

/// An iked.conf(5) file: parsing (with `-D` macros, includes refused) and the turn into
/// the engine's policy never panic.
pub fn iked_conf(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut loader = |f: &str| Err(format!("{f}: no includes in the fuzzer"));
    let r =
        crate::ikev2::conf::parse::parse_with("fuzz.conf", text, &["gw=192.0.2.1"], &mut loader);
    match r {
        Ok(conf) => {
            let _ = conf.to_engine_as(Some("fuzz.example.org"));
            let _ = conf.to_engine_as(None);
        }
        Err(e) => {
            assert!(e.first().is_some(), "a refusal names its error");
            let _ = e.to_string();
        }
    }
}

/// An ipsec.conf(5) file through our ipsecctl's parser, with `-vv` (the isakmpd FIFO
/// commands of each rule, which must parse as commands) and with `-d`. Includes of
/// absolute paths are left out (the parser would read them).
pub fn ipsec_conf(data: &[u8]) {
    let has = |w: &[u8]| data.windows(w.len()).any(|x| x == w);
    if has(b"include") && data.contains(&b'/') {
        return;
    }
    for delete in [false, true] {
        let opts = crate::ipsecctl::Opts {
            verbose: 2,
            delete,
            no_dns: true,
            macros: vec!["fuzz=192.0.2.9".into()],
            ..Default::default()
        };
        let host: std::rc::Rc<dyn Fn() -> String> = std::rc::Rc::new(|| "fuzz.example.org".into());
        let o = crate::ipsecctl::parse_rules("fuzz.conf", Some(data.to_vec()), &opts, host);
        if o.failed {
            assert!(!o.stderr.is_empty(), "a failed parse says why");
        }
        for line in o.stdout.lines() {
            let line = line
                .split_once(' ')
                .filter(|(n, _)| n.starts_with('@'))
                .map_or(line, |x| x.1);
            if line.starts_with(['c', 'C', 't', 'D', 'd', 'p', 'M', 'r', 'R', 'S', 'Q']) {
                let _ = crate::fifo::parse_command(line);
            }
        }
    }
}

/// A KeyNote policy (isakmpd.policy): parsing and a query with the attributes and
/// principals isakmpd gives never panic, and the answer is one of the values.
pub fn keynote(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = crate::keynote::Policy::parse(text);
    let attrs = |name: &str| -> Option<String> {
        Some(
            match name {
                "app_domain" => "IPsec policy",
                "doi" => "ipsec",
                "esp_present" | "pfs" => "yes",
                "ah_present" | "comp_present" | "initiator" => "no",
                "esp_enc_alg" => "aes",
                "esp_auth_alg" => "hmac-sha2-256",
                "phase_1" => "main",
                "remote_filter_type" | "local_filter_type" => "IPv4 subnet",
                "remote_filter" => "198.051.100.000-198.051.100.255",
                "local_filter_addr_lower" => "203.000.113.000",
                "esp_key_length" => "128",
                "GMTTimeOfDay" => "20260101000000",
                _ => return None,
            }
            .to_string(),
        )
    };
    let who = [
        "passphrase:fuzz".to_string(),
        "DN:/C=ZZ/CN=fuzz".to_string(),
    ];
    let values = ["false", "maybe", "true"];
    let v = loaded.policy.query(&attrs, &who, &values);
    assert!(v < values.len(), "compliance value {v} out of range");
}

/// A request on iked's control socket: the daemon's parse of it never panics, and every
/// command ikectl(8) accepts (the input's lines as words) reaches the daemon as the
/// same command with the same arguments.
pub fn ikectl_control(data: &[u8]) {
    use crate::iked::control::{parse_command, split_request, Command};
    let (line, body) = split_request(data);
    let _ = (parse_command(&line), body.len());
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let words: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let Ok(line) = crate::iked::ikectl::command_line(&words) else {
        return;
    };
    let mut req = line.into_bytes();
    req.push(b'\n');
    let (line, _) = split_request(&req);
    let got = parse_command(&line);
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let want = match w.as_slice() {
        ["show", x] => Command::Show(x),
        ["reload"] => Command::Reload,
        ["load", f] => Command::Load(f),
        ["reset", "id", id] => Command::Reset("id", Some(id)),
        ["reset", x] => Command::Reset(x, None),
        ["active"] => Command::Active,
        ["passive"] => Command::Passive,
        ["couple"] => Command::Couple,
        ["decouple"] => Command::Decouple,
        ["log", x] => Command::Log(*x == "verbose"),
        ["monitor"] => Command::Monitor,
        _ => panic!("ikectl accepted {words:?}"),
    };
    assert_eq!(got, Ok(want), "ikectl sent {words:?}");
}
