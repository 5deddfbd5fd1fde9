//! EAP-MSCHAPv2 inside IKE_AUTH fed hostile payloads (fuzz target `ikev2_eap`, RFC 7296
//! §2.16): the `ikev2_engine` harness and input format (engine.rs) with west an
//! EAP-MSCHAPv2 client (user "alice") and east the server, which signs its AUTHs with an
//! ECDSA P-256 key (below, made once with `openssl genpkey` for this harness only; west
//! holds its public key as pubkeys/ipv4/192.0.2.2, so no certificate is needed). Records
//! sealed under the real IKE SA's keys (`ctl & 3 == 3`) carry IKE_AUTH requests whose
//! EAP payloads reach the server's conversation (src/ikev2/engine/eap.rs); the seeds are
//! the client's real messages of a whole conversation, so that mutants get past each
//! step. The checks after each record and at the end are the engine target's.

use crate::ike::Credentials;
use crate::ikev2::engine::Engine;
use crate::ikev2::policy::{Peer, PeerAuth, SigMethod};
use crate::ikev2::wire::{ExchangeType, Message, HEADER_LEN};

use super::engine::{half_open, input, record, run, sealed, Pair};

/// East's signing key: a throwaway P-256 key for this harness (never a real secret).
const EAST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgsqyLG3RD5RpE3o5m
Glzt/xC/Hsp4Z/VvQf5DuaaTQ2yhRANCAATP+cKygXDBT/k5sjEk2WzPrL21GDYk
IrrxH+nQ1wKFjE/R7aHOy+MN9F5VPxypARmbBlUA+1MEi8jreCL1xNVA
-----END PRIVATE KEY-----
";
const EAST_PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEz/nCsoFwwU/5ObIxJNlsz6y9tRg2
JCK68R/p0NcChYxP0e2hzsvjDfReVT8cqQEZmwZVAPtTBIvI63gi9cTVQA==
-----END PUBLIC KEY-----
";
const USER: &str = "alice";
const PASSWORD: &[u8] = b"wonder land";

/// The policy side of the EAP pair: west the client, east the server.
pub(super) fn eap_peer(p: &mut Peer, west: bool) {
    p.auth = if west {
        let u = crate::iked::users::eap_user(USER, PASSWORD).expect("the legacy provider");
        PeerAuth::EapClient(SigMethod::Any, u)
    } else {
        PeerAuth::EapServer(SigMethod::Any)
    };
}

/// The engine side: east's key and users, west's copy of east's public key.
pub(super) fn eap_engine(e: &mut Engine, west: bool) {
    if west {
        let mut c = Credentials::default();
        c.add_pubkey("ipv4", "192.0.2.2", EAST_PUB.as_bytes())
            .expect("the harness's public key");
        e.set_credentials(c);
    } else {
        let c = Credentials::load(Some(EAST_KEY.as_bytes()), &[], &[])
            .expect("the harness's private key");
        e.set_credentials(c);
        let u = crate::iked::users::eap_user(USER, PASSWORD).expect("the legacy provider");
        e.set_eap_users(vec![u]);
    }
}

/// The fuzz target: see the module's documentation.
pub fn ikev2_eap(data: &[u8]) {
    run(data, true);
}

/// Seeds for `ikev2_eap`: the client's IKE_AUTH requests of a real conversation, sealed
/// (all, each prefix, repeated, one byte of the last changed), and the established
/// pair's messages replayed: (target, name, bytes).
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut p = Pair::new(true, true);
    for s in &mut p.sides {
        s.engine.set_capture(true);
    }
    let held = half_open(&mut p);
    let frags: Vec<Vec<u8>> = held.iter().map(|h| record(0, &h.3)).collect();
    out.push((
        "ikev2_eap",
        "half_open_auth_fragments".into(),
        input(1, &frags),
    ));
    // The rest of the conversation, the engines talking.
    let mut p2 = p;
    p2.sides[1].engine.set_capture(true);
    for (_, src, dst, data) in held {
        p2.sides[1].engine.handle_datagram(p2.now, dst, src, &data);
    }
    p2.deliver_all(100);
    let mut requests = Vec::new();
    while let Some(c) = p2.sides[0].engine.poll_capture() {
        let Ok(h) = Message::parse(&c.data).map(|m| m.header) else {
            continue;
        };
        if h.exchange != ExchangeType::IKE_AUTH || h.response() || c.src.port() == 0 {
            continue;
        }
        if c.src.ip() != "192.0.2.1".parse::<std::net::IpAddr>().expect("literal") {
            continue;
        }
        let msgid = h.msgid.min(255) as u8;
        let first = c.data.get(16).copied().unwrap_or(0);
        let plain = c.data.get(HEADER_LEN..).unwrap_or(&[]);
        requests.push(sealed(35, 0, msgid, first, (0, 0), plain));
    }
    out.push(("ikev2_eap", "conversation".into(), input(1, &requests)));
    for k in 1..requests.len() {
        let name = format!("conversation_first_{k}");
        out.push(("ikev2_eap", name, input(1, &requests[..k])));
    }
    let twice: Vec<Vec<u8>> = requests
        .iter()
        .flat_map(|r| [r.clone(), r.clone()])
        .collect();
    out.push((
        "ikev2_eap",
        "conversation_repeated".into(),
        input(1, &twice),
    ));
    if let Some(last) = requests.last_mut() {
        let n = last.len();
        if n > 20 {
            last[n - 20] ^= 0x40;
        }
    }
    out.push((
        "ikev2_eap",
        "conversation_bad_last".into(),
        input(1, &requests),
    ));
    for (i, (from_west, d)) in p2.log.iter().enumerate() {
        let mode = if *from_west { 2 } else { 3 };
        let name = format!("established_replay_{i}");
        out.push(("ikev2_eap", name, input(mode, &[record(0, d)])));
    }
    out
}
