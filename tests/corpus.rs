//! Replays the fuzz corpora (tests/fuzz/corpus) on stable Rust: every input goes through
//! the same checks the fuzz targets make (no panic; what parses round-trips), and the
//! hand-made seeds get their expected verdicts: well-formed messages parse, hostile ones
//! are refused with the notification isakmpd would send. Then every target's corpus goes
//! through a bounded, deterministic mutation pass (`isakmpd::fuzzing::mutate`).
//!
//! Two ignored tests: `write_engine_seeds` (re)writes the seeds of `ikev2_engine` and the
//! engine pair's messages for `ikev2_wire` (the rest come from tests/fuzz/make_seeds.py),
//! and `campaign` is the long run: `FUZZ_ITERS` mutations per target (default 100000),
//! `FUZZ_TARGETS` a comma-separated list (default all), `FUZZ_SEED`; a failing input is
//! written to `FUZZ_OUT` (default /tmp/fuzz-crashes) and the run goes on.

use std::fs;
use std::path::PathBuf;

use isakmpd::ike::wire::{Message, NotifyType};

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut v: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn wire_corpus_replays_cleanly() {
    let all = corpus("wire_message");
    assert!(all.len() >= 20, "corpus has {} inputs", all.len());
    for (name, data) in &all {
        isakmpd::fuzzing::wire_message(data);
        let verdict = Message::parse(data, false).and_then(|m| m.check_payload_types().map(|_| m));
        let want: Option<NotifyType> = match name.as_str() {
            n if !n.starts_with("bad_") && n != "unknown_payloads.bin" => None,
            "unknown_payloads.bin" | "bad_first_payload_15.bin" => {
                Some(NotifyType::INVALID_PAYLOAD_TYPE)
            }
            "bad_short6.bin" | "bad_len27.bin" | "bad_len29.bin" => {
                Some(NotifyType::UNEQUAL_PAYLOAD_LENGTHS)
            }
            "bad_major2.bin" => Some(NotifyType::INVALID_MAJOR_VERSION),
            "bad_minor1.bin" => Some(NotifyType::INVALID_MINOR_VERSION),
            "bad_exchange33.bin" => Some(NotifyType::INVALID_EXCHANGE_TYPE),
            "bad_flags80.bin" => Some(NotifyType::INVALID_FLAGS),
            "bad_zero_icookie.bin" => Some(NotifyType::INVALID_COOKIE),
            // The structure is sound; the engine answers DOI-NOT-SUPPORTED.
            "bad_doi_ffffffff.bin" => None,
            _ => Some(NotifyType::PAYLOAD_MALFORMED),
        };
        match (want, &verdict) {
            (None, Ok(_)) => {}
            (Some(n), Err(e)) => assert_eq!(e.notify, n, "{name}: {e}"),
            (w, v) => panic!("{name}: expected {w:?}, got {v:?}"),
        }
    }
}

#[test]
fn fifo_and_conf_corpora_replay_cleanly() {
    let f = corpus("fifo_command");
    assert!(!f.is_empty());
    for (_, d) in &f {
        isakmpd::fuzzing::fifo_command(d);
    }
    let c = corpus("conf_file");
    assert!(c.len() >= 8);
    for (name, d) in &c {
        isakmpd::fuzzing::conf_file(d);
        let text = std::str::from_utf8(d).unwrap();
        assert!(isakmpd::conf::Conf::parse(text).is_ok(), "{name}");
    }
}

/// Every prefix and every single-byte change of the seeds: no panic anywhere.
#[test]
fn mutations_of_the_seeds_never_panic() {
    for (_, data) in corpus("wire_message") {
        for n in 0..data.len() {
            isakmpd::fuzzing::wire_message(&data[..n]);
        }
        for i in 0..data.len() {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut m = data.clone();
                m[i] = v;
                isakmpd::fuzzing::wire_message(&m);
            }
        }
    }
}

use isakmpd::fuzzing::mutate::{mutate, Kind, Rng};
use isakmpd::fuzzing::TARGETS;

fn kind(name: &str, text: bool) -> Kind {
    match (name, text) {
        ("ikev2_engine" | "ikev2_eap" | "ikev1_engine", _) => Kind::Records,
        (_, true) => Kind::Text,
        _ => Kind::Binary,
    }
}

#[test]
fn every_corpus_replays_cleanly() {
    for &(name, f, _) in TARGETS {
        let all = corpus(name);
        assert!(all.len() >= 5, "{name}: {} seeds", all.len());
        for (file, d) in &all {
            let r = std::panic::catch_unwind(|| f(d));
            assert!(r.is_ok(), "{name}/{file}");
        }
    }
}

/// Mutated inputs per target in the stable suite (a few seconds in all, in release):
/// the engine target builds a pair of engines for most inputs (Curve25519 exchanges),
/// the text parsers take some microseconds, the codecs less.
fn budget(name: &str) -> usize {
    match name {
        "ikev2_engine" => 15_000,
        "ikev2_eap" => 3_000,
        "ikev1_engine" => 3_000,
        "ipsec_conf" | "iked_conf" | "keynote" | "conf_file" => 50_000,
        _ => 200_000,
    }
}

/// A bounded run of the campaign's mutator over every target's seeds.
#[test]
fn mutations_of_every_corpus_never_panic() {
    for &(name, f, text) in TARGETS {
        let seeds: Vec<Vec<u8>> = corpus(name).into_iter().map(|(_, d)| d).collect();
        let start = std::time::Instant::now();
        let n = run(
            name,
            f,
            kind(name, text),
            &seeds,
            budget(name),
            0x5eed,
            None,
        );
        eprintln!("{name}: {n} inputs in {:.1?}", start.elapsed());
    }
}

/// Mutates the seeds `iters` times (chains of up to 8 mutations from a seed); returns
/// the number of inputs run. With `out`, a panicking input is written there and the
/// run goes on (returning the failures through the count of files); without, it
/// panics with the input.
fn run(
    name: &str,
    f: fn(&[u8]),
    kind: Kind,
    seeds: &[Vec<u8>],
    iters: usize,
    seed: u64,
    out: Option<&std::path::Path>,
) -> usize {
    let mut rng = Rng::new(
        seed ^ name
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b)),
    );
    let max = if kind == Kind::Text {
        64 * 1024
    } else {
        8 * 1024
    };
    let mut cur = Vec::new();
    let mut depth = 0;
    let mut failures = std::collections::BTreeSet::new();
    // The campaign reports its slowest input (a hang would never end the run).
    let mut slowest = (std::time::Duration::ZERO, Vec::new());
    for i in 0..iters {
        if depth == 0 || rng.below(4) == 0 {
            cur = seeds[rng.below(seeds.len())].clone();
            depth = 1 + rng.below(8);
        }
        let other = &seeds[rng.below(seeds.len())];
        mutate(&mut rng, &mut cur, other, kind, max);
        depth -= 1;
        let input = cur.clone();
        match out {
            None => {
                if std::panic::catch_unwind(|| f(&input)).is_err() {
                    panic!("{name}: input {i} panics: {:02x?}", input);
                }
            }
            Some(dir) => {
                let t = std::time::Instant::now();
                let r = std::panic::catch_unwind(|| f(&input));
                if t.elapsed() > slowest.0 {
                    slowest = (t.elapsed(), input.clone());
                }
                if let Err(e) = r {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    let key: String = msg.chars().take(60).collect();
                    if failures.insert(key.clone()) {
                        let p = dir.join(format!("{name}-{i}.bin"));
                        fs::write(&p, &input).unwrap();
                        eprintln!("{name}: FAIL {}: {msg}", p.display());
                    }
                }
            }
        }
    }
    if let Some(dir) = out {
        let p = dir.join(format!("{name}-slowest.bin"));
        fs::write(&p, &slowest.1).unwrap();
        eprintln!(
            "{name}: slowest input {:.1?} ({} bytes, {})",
            slowest.0,
            slowest.1.len(),
            p.display()
        );
    }
    iters
}

#[test]
#[ignore]
fn campaign() {
    let iters: usize = std::env::var("FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let only = std::env::var("FUZZ_TARGETS").unwrap_or_default();
    let out = PathBuf::from(std::env::var("FUZZ_OUT").unwrap_or("/tmp/fuzz-crashes".into()));
    fs::create_dir_all(&out).unwrap();
    // Failures are reported by `run`; the default hook would print every one.
    std::panic::set_hook(Box::new(|_| {}));
    for &(name, f, text) in TARGETS {
        if !only.is_empty() && !only.split(',').any(|t| t == name) {
            continue;
        }
        let seeds: Vec<Vec<u8>> = corpus(name).into_iter().map(|(_, d)| d).collect();
        let start = std::time::Instant::now();
        run(name, f, kind(name, text), &seeds, iters, seed, Some(&out));
        eprintln!("{name}: {iters} inputs in {:.1?}", start.elapsed());
        if name == "ikev2_engine" || name == "ikev2_eap" {
            eprintln!("{:?}", isakmpd::fuzzing::engine::reached());
        }
        if name == "ikev1_engine" {
            eprintln!("{:?}", isakmpd::fuzzing::ikev1::reached());
        }
    }
}

#[test]
#[ignore]
fn write_engine_seeds() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus");
    let eap = isakmpd::fuzzing::eap::seeds()
        .into_iter()
        .chain(isakmpd::fuzzing::ikev1::seeds());
    for (target, name, data) in isakmpd::fuzzing::engine::seeds().into_iter().chain(eap) {
        let dir = root.join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("{name}.bin")), data).unwrap();
    }
}

/// Runs one input: `FUZZ_TARGET=name FUZZ_FILE=path` (a campaign's failure).
#[test]
#[ignore]
fn replay_one() {
    let name = std::env::var("FUZZ_TARGET").expect("FUZZ_TARGET");
    let data = fs::read(std::env::var("FUZZ_FILE").expect("FUZZ_FILE")).unwrap();
    let f = TARGETS.iter().find(|t| t.0 == name).expect("a target").1;
    f(&data);
}

/// How much of the seeds and of their mutants the text parsers accept (for the report:
/// a mutation pass whose inputs all fail at the first token tests little).
#[test]
#[ignore]
fn acceptance() {
    let iked = |d: &[u8]| {
        std::str::from_utf8(d).is_ok_and(|t| {
            let mut none = |f: &str| Err(f.to_string());
            isakmpd::ikev2::conf::parse::parse_with("x", t, &[], &mut none).is_ok()
        })
    };
    let ipsec = |d: &[u8]| {
        let opts = isakmpd::ipsecctl::Opts {
            no_dns: true,
            ..Default::default()
        };
        let h: std::rc::Rc<dyn Fn() -> String> = std::rc::Rc::new(|| "h".into());
        !isakmpd::ipsecctl::parse_rules("x", Some(d.to_vec()), &opts, h).failed
    };
    let keynote = |d: &[u8]| {
        std::str::from_utf8(d).is_ok_and(|t| isakmpd::keynote::Policy::parse(t).warnings.is_empty())
    };
    let v1 = |d: &[u8]| Message::parse(d, false).is_ok();
    let v2 = |d: &[u8]| isakmpd::ikev2::wire::Message::parse(d).is_ok();
    type Check<'a> = (&'a str, &'a dyn Fn(&[u8]) -> bool);
    let checks: [Check<'_>; 5] = [
        ("iked_conf", &iked),
        ("ipsec_conf", &ipsec),
        ("keynote", &keynote),
        ("wire_message", &v1),
        ("ikev2_wire", &v2),
    ];
    for (name, ok) in checks {
        let kind = if name.contains("wire") {
            Kind::Binary
        } else {
            Kind::Text
        };
        let seeds: Vec<Vec<u8>> = corpus(name).into_iter().map(|(_, d)| d).collect();
        let good = seeds.iter().filter(|d| ok(d)).count();
        let mut rng = Rng::new(7);
        let (mut n, mut acc) = (0, 0);
        for _ in 0..20_000 {
            let mut d = seeds[rng.below(seeds.len())].clone();
            let o = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, &mut d, o, kind, 65536);
            n += 1;
            acc += usize::from(ok(&d));
        }
        eprintln!(
            "{name}: seeds accepted {good}/{}, mutants accepted {acc}/{n}",
            seeds.len()
        );
    }
}

/// The EAP target's seeds get where they are meant to: the client's sealed messages of a
/// real conversation take the server through EAP-MSCHAPv2 to an established IKE SA, and
/// with one byte of the last one changed they do not.
#[test]
fn eap_seeds_reach_the_server_conversation() {
    let all = corpus("ikev2_eap");
    let established = |file: &str| {
        let (_, d) = all.iter().find(|(n, _)| n == file).expect(file);
        let before = isakmpd::fuzzing::engine::reached().established;
        isakmpd::fuzzing::ikev2_eap(d);
        isakmpd::fuzzing::engine::reached().established - before
    };
    assert_eq!(established("conversation.bin"), 1);
    assert_eq!(established("conversation_bad_last.bin"), 0);
    assert_eq!(established("conversation_first_2.bin"), 0);
}

/// The IKEv1 target's seeds get where they are meant to: the responder's real Main Mode
/// messages take the waiting initiator through phase 1 and 2; a lone responder given
/// message 1 finishes nothing.
#[test]
fn ikev1_seeds_reach_the_engine() {
    let all = corpus("ikev1_engine");
    let done = |file: &str| {
        let (_, d) = all.iter().find(|(n, _)| n == file).expect(file);
        let before = isakmpd::fuzzing::ikev1::reached();
        isakmpd::fuzzing::ikev1_engine(d);
        let after = isakmpd::fuzzing::ikev1::reached();
        (
            after.phase1_done - before.phase1_done,
            after.phase2_done - before.phase2_done,
        )
    };
    assert_eq!(done("initiator_mm.bin"), (1, 1));
    assert_eq!(done("lone_mm_1.bin"), (0, 0));
}
