//! Entry points shared by the fuzz targets (tests/fuzz) and the corpus replay test
//! (tests/corpus.rs), so the fuzzer and the stable test suite check the same properties.
//!
//! Each function must return normally on every input: a panic is the bug being hunted.

#![forbid(unsafe_code)]

use crate::ike::wire::{Message, Payload};

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
