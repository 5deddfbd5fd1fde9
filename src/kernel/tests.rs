#![forbid(unsafe_code)]

//! Tests of the kernel translations (XFRM and PF_KEY messages from engine requests) and
//! of the kernel channel's bookkeeping.

use super::*;
use crate::ike::crypto::SecretParts;
use crate::ike::wire::AuthAlgorithm;

fn sa() -> IpsecSa {
    let id = |net: [u8; 4]| OwnedId {
        ty: IdType::IPV4_ADDR_SUBNET,
        protocol: 0,
        port: 0,
        data: [&net[..], &[255, 255, 255, 0]].concat(),
    };
    IpsecSa {
        timers: Default::default(),
        name: "t".into(),
        icookie: [1; 8],
        rcookie: [2; 8],
        msgid: 0,
        initiator: true,
        local: "192.0.2.1:500".parse().unwrap(),
        remote: "192.0.2.2:500".parse().unwrap(),
        protocol: ProtocolId::IPSEC_ESP,
        transform: 12,
        auth: Some(AuthAlgorithm::HMAC_SHA2_256),
        encapsulation: EncapsulationMode::TUNNEL,
        key_bits: Some(128),
        pfs: None,
        spi_in: [0, 0, 1, 2],
        spi_out: [0, 0, 3, 4],
        keymat: SecretParts::new([&[1; 48], &[2; 48]]),
        enc_key_len: 16,
        auth_key_len: 32,
        local_id: id([198, 51, 100, 0]),
        remote_id: id([203, 0, 113, 0]),
        established: crate::timer::Time(0),
        lifetime: 1200,
        kbytes: 0,
        encap: None,
        hard_expiry: None,
        soft_expiry: None,
        rekeyed: false,
        spi_from_kernel: false,
        outbound_pending: false,
        more_flows: Vec::new(),
        peer_oa: None,
    }
}

#[test]
fn an_sa_pair_becomes_two_states_and_three_tunnel_policies() {
    let mut seq = 0;
    let m = messages(
        &KernelReq::AddSa(Box::new(sa()), Part::Both),
        &mut seq,
        true,
    )
    .unwrap();
    let what: Vec<&str> = m.iter().map(|m| m.what.as_str()).collect();
    assert_eq!(
        what,
        [
            "add SA 192.0.2.2->192.0.2.1 spi 00000102",
            "add SA 192.0.2.1->192.0.2.2 spi 00000304",
            "add flow 198.51.100.0/24 -> 203.0.113.0/24 dir 1",
            "add flow 203.0.113.0/24 -> 198.51.100.0/24 dir 0",
            "add flow 203.0.113.0/24 -> 198.51.100.0/24 dir 2",
        ]
    );
    // The outbound state carries the outbound keys, split into cipher and HMAC.
    let out = &m[1].bytes;
    let crypt = out.windows(8).position(|w| w == b"cbc(aes)").unwrap();
    assert_eq!(&out[crypt + 68..crypt + 84], &[2; 16]);
    assert!(out.windows(12).any(|w| w == b"hmac(sha256)"));
    let m = messages(
        &KernelReq::DeleteSa(Box::new(sa()), Part::Both, false),
        &mut seq,
        false,
    )
    .unwrap();
    assert_eq!(m.len(), 2, "-a: no flows to remove");
    assert_eq!(seq, 7);
}

#[test]
fn a_responder_installs_inbound_first_then_outbound_with_flows() {
    let mut seq = 0;
    let m = messages(
        &KernelReq::AddSa(Box::new(sa()), Part::Inbound),
        &mut seq,
        true,
    )
    .unwrap();
    let what: Vec<&str> = m.iter().map(|m| m.what.as_str()).collect();
    assert_eq!(what, ["add SA 192.0.2.2->192.0.2.1 spi 00000102"]);
    let m = messages(
        &KernelReq::AddSa(Box::new(sa()), Part::Outbound),
        &mut seq,
        true,
    )
    .unwrap();
    let what: Vec<&str> = m.iter().map(|m| m.what.as_str()).collect();
    assert_eq!(what[0], "add SA 192.0.2.1->192.0.2.2 spi 00000304");
    assert_eq!(what.len(), 4, "outbound brings the flows: {what:?}");
    // An exchange that never got message 3 takes back only what it installed.
    let m = messages(
        &KernelReq::DeleteSa(Box::new(sa()), Part::Inbound, false),
        &mut seq,
        true,
    )
    .unwrap();
    let what: Vec<&str> = m.iter().map(|m| m.what.as_str()).collect();
    assert_eq!(what, ["delete SA 192.0.2.1 spi 00000102"]);
}

#[test]
fn unsupported_transforms_are_refused_not_mangled() {
    let mut s = sa();
    s.transform = 99;
    assert!(messages(&KernelReq::AddSa(Box::new(s), Part::Both), &mut 0, true).is_err());
}

#[test]
fn an_encapsulated_sa_follows_the_peer_in_place() {
    // UpdateSa: both states through XFRM_MSG_UPDSA with the new ports, no flows.
    let mut s = sa();
    s.encap = Some((4500, 45500));
    let m = messages(&KernelReq::UpdateSa(Box::new(s.clone())), &mut 0, true).unwrap();
    assert_eq!(m.len(), 2, "two states, no flows");
    for msg in &m {
        let ty = u16::from_ne_bytes([msg.bytes[4], msg.bytes[5]]);
        assert_eq!(ty, xfrm::XFRM_MSG_UPDSA, "{}", msg.what);
        assert!(msg.what.starts_with("update SA"), "{}", msg.what);
    }
    // The inbound state's encapsulation runs from the peer's new port to ours.
    let find = |b: &[u8], sport: u16, dport: u16| {
        let want = [2u16.to_ne_bytes(), sport.to_be_bytes(), dport.to_be_bytes()].concat();
        b.windows(6).any(|w| w == want.as_slice())
    };
    assert!(find(&m[0].bytes, 45500, 4500));
    assert!(find(&m[1].bytes, 4500, 45500));
    // PF_KEY carries no encapsulated SAs to update.
    assert!(pfkey_messages(
        &KernelReq::UpdateSa(Box::new(s)),
        &mut 0,
        true,
        crate::kernel::pfkey::Platform::Linux
    )
    .is_err());
}

#[test]
fn a_moved_sa_pair_migrates_with_its_policies_or_is_replaced() {
    let old = sa();
    let mut new = sa();
    new.local = "192.0.2.11:4500".parse().unwrap();
    new.remote = "192.0.2.2:4500".parse().unwrap();
    new.encap = Some((4500, 4500));
    let req = |o: &IpsecSa, n: &IpsecSa| {
        KernelReq::MigrateSa(Box::new(o.clone()), Box::new(n.clone()), Part::Both)
    };
    let ty = |m: &Message| u16::from_ne_bytes([m.bytes[4], m.bytes[5]]);
    // Tunnel mode with our flows: one XFRM_MSG_MIGRATE per policy (out, in, fwd), each
    // naming the old and new template endpoints of its direction, the reqid of the
    // states, and the new encapsulation the way its state runs.
    let m = messages(&req(&old, &new), &mut 0, true).unwrap();
    let whats = |m: &[Message]| m.iter().map(|x| x.what.clone()).collect::<Vec<_>>();
    assert_eq!(m.len(), 3, "{:?}", whats(&m));
    let sel = |s: &str, d: &str| xfrm::Selector {
        src: s.parse().unwrap(),
        src_prefix: 24,
        dst: d.parse().unwrap(),
        dst_prefix: 24,
        proto: 0,
        sport: 0,
        dport: 0,
    };
    let (a, b) = ("198.51.100.0", "203.0.113.0");
    let want = [
        (
            sel(a, b),
            xfrm::XFRM_POLICY_OUT,
            ("192.0.2.1", "192.0.2.2"),
            ("192.0.2.11", "192.0.2.2"),
        ),
        (
            sel(b, a),
            xfrm::XFRM_POLICY_IN,
            ("192.0.2.2", "192.0.2.1"),
            ("192.0.2.2", "192.0.2.11"),
        ),
        (
            sel(b, a),
            xfrm::XFRM_POLICY_FWD,
            ("192.0.2.2", "192.0.2.1"),
            ("192.0.2.2", "192.0.2.11"),
        ),
    ];
    for (msg, (sel, dir, (os, od), (ns, nd))) in m.iter().zip(want) {
        assert_eq!(ty(msg), xfrm::XFRM_MSG_MIGRATE, "{}", msg.what);
        let mut b = Vec::new();
        let mv = xfrm::MigrateSpec {
            old_src: os.parse().unwrap(),
            old_dst: od.parse().unwrap(),
            new_src: ns.parse().unwrap(),
            new_dst: nd.parse().unwrap(),
            proto: 50,
            mode: xfrm::MODE_TUNNEL,
            reqid: reqid(&old),
            encap: Some((4500, 4500)),
        };
        let seq = u32::from_ne_bytes(msg.bytes[8..12].try_into().unwrap());
        xfrm::migrate(&mut b, seq, &sel, dir, &mv);
        assert_eq!(msg.bytes, b, "{}", msg.what);
    }
    // Where MIGRATE cannot: the old states and flows out, the new in (XFRM: -a, transport
    // mode, the encapsulation dropped; PF_KEY always).
    let replaced = |m: &[Message]| {
        m.iter().any(|x| x.what.starts_with("delete SA"))
            && m.iter().any(|x| x.what.starts_with("add SA"))
            && !m.iter().any(|x| ty(x) == xfrm::XFRM_MSG_MIGRATE)
    };
    assert!(replaced(
        &messages(&req(&old, &new), &mut 0, false).unwrap()
    ));
    let (mut t_old, mut t_new) = (old.clone(), new.clone());
    t_old.encapsulation = EncapsulationMode::TRANSPORT;
    t_new.encapsulation = EncapsulationMode::TRANSPORT;
    assert!(replaced(
        &messages(&req(&t_old, &t_new), &mut 0, true).unwrap()
    ));
    assert!(replaced(&messages(&req(&new, &old), &mut 0, true).unwrap()));
    let mut sha1 = old.clone();
    sha1.auth = Some(AuthAlgorithm::HMAC_SHA);
    sha1.auth_key_len = 20;
    let mut sha1_moved = sha1.clone();
    sha1_moved.local = "192.0.2.11:500".parse().unwrap();
    let pf = pfkey_messages(
        &req(&sha1, &sha1_moved),
        &mut 0,
        true,
        crate::kernel::pfkey::Platform::Linux,
    )
    .unwrap();
    let pf = whats(&pf);
    assert!(pf.iter().any(|x| x.starts_with("delete")), "{pf:?}");
    assert!(pf.iter().any(|x| x.starts_with("add")), "{pf:?}");
}

#[test]
fn pfkey_translation_for_linux_and_openbsd() {
    use crate::kernel::pfkey::{parse, Platform};
    let mut seq = 0;
    // HMAC-SHA2-256 through Linux af_key would get a 96-bit ICV: refused, not sent.
    let e = pfkey_messages(
        &KernelReq::AddSa(Box::new(sa()), Part::Both),
        &mut seq,
        true,
        Platform::Linux,
    );
    assert!(e.err().is_some_and(|e| e.contains("96-bit")));
    let mut s = sa();
    s.auth = Some(AuthAlgorithm(2)); // HMAC-SHA1
    s.auth_key_len = 20;
    s.keymat = SecretParts::new([&[1; 36], &[2; 36]]);
    let m = pfkey_messages(
        &KernelReq::AddSa(Box::new(s.clone()), Part::Both),
        &mut seq,
        true,
        Platform::Linux,
    )
    .unwrap();
    let types: Vec<u8> = m.iter().map(|m| parse(&m.bytes).unwrap().ty).collect();
    assert_eq!(
        types,
        [3, 3, 14, 14, 14],
        "two SADB_ADD, three SADB_X_SPDADD"
    );
    // The SA's reqid (sadb_x_sa2, last 4 bytes) is the policy's (ipsecrequest at
    // offset 16 of the policy extension, reqid at +8), and af_key keeps it only
    // up to 0x3fff.
    let add = parse(&m[0].bytes).unwrap();
    let sa2 = add.ext(crate::kernel::pfkey::LINUX_EXT_X_SA2).unwrap();
    let sa_reqid = u32::from_ne_bytes(sa2[12..16].try_into().unwrap());
    let pol = parse(&m[2].bytes).unwrap();
    let x = pol.ext(crate::kernel::pfkey::LINUX_EXT_X_POLICY).unwrap();
    let pol_reqid = u32::from_ne_bytes(x[24..28].try_into().unwrap());
    assert_eq!(sa_reqid, pol_reqid);
    assert!((1..=0x3fff).contains(&sa_reqid), "{sa_reqid:#x}");
    assert!(m[1].what.ends_with("spi 00000304"));
    let out = parse(&m[1].bytes).unwrap();
    // The outbound SA carries the outbound keys: AES key then the HMAC key.
    let k = out.ext(crate::kernel::pfkey::SADB_EXT_KEY_ENCRYPT).unwrap();
    assert_eq!(&k[8..24], &[2; 16]);
    let m = pfkey_messages(
        &KernelReq::AddSa(Box::new(s.clone()), Part::Both),
        &mut seq,
        true,
        Platform::OpenBsd,
    )
    .unwrap();
    let types: Vec<u8> = m.iter().map(|m| parse(&m.bytes).unwrap().ty).collect();
    assert_eq!(types, [3, 3, 12, 12], "OpenBSD: ADDFLOW out and in, no fwd");
    let m = pfkey_messages(
        &KernelReq::DeleteSa(Box::new(s), Part::Both, true),
        &mut seq,
        true,
        Platform::Linux,
    )
    .unwrap();
    let types: Vec<u8> = m.iter().map(|m| parse(&m.bytes).unwrap().ty).collect();
    assert_eq!(types, [4, 4], "flows kept for the SA that replaced it");
}

/// A channel that keeps what is sent.
fn sending(sent: &mut Vec<Vec<u8>>) -> impl FnMut(&[u8]) -> Result<(), String> + '_ {
    |b| {
        sent.push(b.to_vec());
        Ok(())
    }
}

/// An XFRM ack (or error) for request `seq`, as the kernel sends it.
fn ack(seq: u32, errno: i32) -> Vec<u8> {
    let mut req = vec![0u8; 16];
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
    xfrm::error_reply(&req, errno)
}

#[test]
fn requests_are_answered_asynchronously_by_sequence_number() {
    let now = Time(0);
    let mut k = Kernel::new(true, Dialect::Xfrm);
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut done = Vec::new();
    let mut s = sa();
    s.spi_from_kernel = true;
    let add = KernelOp {
        ticket: 7,
        req: KernelReq::AddSa(Box::new(s), Part::Both),
    };
    k.submit(now, &add, &mut sending(&mut sent), &mut done);
    assert!(done.is_empty() && !k.idle());
    // The inbound state updates the larval one, the outbound is new; three policies.
    let types: Vec<u16> = sent
        .iter()
        .map(|m| u16::from_ne_bytes([m[4], m[5]]))
        .collect();
    assert_eq!(
        types,
        [xfrm::XFRM_MSG_UPDSA, xfrm::XFRM_MSG_NEWSA, 0x13, 0x13, 0x13]
    );
    let seqs: Vec<u32> = sent
        .iter()
        .map(|m| u32::from_ne_bytes([m[8], m[9], m[10], m[11]]))
        .collect();
    // Answers in any order; a policy another pair installed already (EEXIST) is no
    // failure; the request is done with its last answer.
    let mut events = Vec::new();
    for &q in seqs.iter().skip(1).rev() {
        let errno = if q == seqs[2] { libc::EEXIST } else { 0 };
        k.receive(now, &ack(q, errno), &mut done, &mut events);
    }
    assert!(done.is_empty());
    k.receive(now, &ack(seqs[0], 0), &mut done, &mut events);
    assert_eq!(done, vec![(7, KernelReply::Done)]);
    assert!(k.idle() && events.is_empty());

    // ALLOCSPI: the state with the SPI, then the ack.
    done.clear();
    sent.clear();
    let get = KernelOp {
        ticket: 8,
        req: KernelReq::GetSpi {
            protocol: ProtocolId::IPSEC_ESP,
            src: "192.0.2.2".parse().unwrap(),
            dst: "192.0.2.1".parse().unwrap(),
        },
    };
    k.submit(now, &get, &mut sending(&mut sent), &mut done);
    let q = u32::from_ne_bytes([sent[0][8], sent[0][9], sent[0][10], sent[0][11]]);
    let mut answer = vec![0u8; 16 + 224];
    answer[..4].copy_from_slice(&240u32.to_ne_bytes());
    answer[4..6].copy_from_slice(&xfrm::XFRM_MSG_NEWSA.to_ne_bytes());
    answer[8..12].copy_from_slice(&q.to_ne_bytes());
    answer[16 + 72..16 + 76].copy_from_slice(&[0, 0, 0xc0, 0xde]);
    k.receive(now, &answer, &mut done, &mut events);
    k.receive(now, &ack(q, 0), &mut done, &mut events);
    assert_eq!(done, vec![(8, KernelReply::Spi([0, 0, 0xc0, 0xde]))]);

    // A refusal fails the request; silence fails it after the kernel's own limit.
    done.clear();
    k.submit(now, &get, &mut sending(&mut sent), &mut done);
    let q = u32::from_ne_bytes([sent[1][8], sent[1][9], sent[1][10], sent[1][11]]);
    k.receive(now, &ack(q, libc::ENOENT), &mut done, &mut events);
    assert!(
        matches!(&done[..], [(8, KernelReply::Failed(_))]),
        "{done:?}"
    );
    done.clear();
    k.submit(now, &get, &mut |_| Ok(()), &mut done);
    assert_eq!(k.next_deadline(), Some(now.add_millis(KERNEL_BUSY_MS)));
    k.expire(now.add_millis(KERNEL_BUSY_MS - 1), &mut done);
    assert!(done.is_empty());
    k.expire(now.add_millis(KERNEL_BUSY_MS), &mut done);
    assert!(
        matches!(&done[..], [(8, KernelReply::Failed(_))]),
        "{done:?}"
    );
    assert!(k.idle());
    // A channel that will not take the request fails it at once.
    done.clear();
    k.submit(now, &get, &mut |_| Err("full".into()), &mut done);
    assert!(
        matches!(&done[..], [(8, KernelReply::Failed(_))]),
        "{done:?}"
    );
    assert!(k.idle());
}

/// The answer to an ALLOCSPI: the larval state (XFRM_MSG_NEWSA, 16 + 224 bytes) with the
/// request's sequence number and the SPI the kernel chose.
fn allocspi_answer(seq: u32, spi: [u8; 4]) -> Vec<u8> {
    let mut answer = vec![0u8; 16 + 224];
    answer[..4].copy_from_slice(&240u32.to_ne_bytes());
    answer[4..6].copy_from_slice(&xfrm::XFRM_MSG_NEWSA.to_ne_bytes());
    answer[8..12].copy_from_slice(&seq.to_ne_bytes());
    answer[16 + 72..16 + 76].copy_from_slice(&spi);
    answer
}

fn seq_of(m: &[u8]) -> u32 {
    u32::from_ne_bytes([m[8], m[9], m[10], m[11]])
}

/// The VM test's first negotiation (isakmpd responder, then iked's five messages): the
/// first ESP state with hmac(sha256) and cbc(aes) (or AES-GCM) kept the parent inside
/// write(2) for 7.6 to 12 s while the kernel loaded and tested the crypto modules, and the
/// answers came after that. They used to find the requests failed ("no answer") at 5 s.
#[test]
fn a_kernel_busy_loading_modules_is_waited_for() {
    let t0 = Time(1_000);
    let mut k = Kernel::new(true, Dialect::Xfrm);
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let (mut done, mut events) = (Vec::new(), Vec::new());
    let get = KernelOp {
        ticket: 1,
        req: KernelReq::GetSpi {
            protocol: ProtocolId::IPSEC_ESP,
            src: "192.0.2.1".parse().unwrap(),
            dst: "192.0.2.2".parse().unwrap(),
        },
    };
    k.submit(t0, &get, &mut sending(&mut sent), &mut done);
    let q = seq_of(&sent[0]);
    k.receive(
        t0.add_millis(4),
        &allocspi_answer(q, [0xbe, 0x93, 0xf4, 0x0b]),
        &mut done,
        &mut events,
    );
    k.receive(t0.add_millis(4), &ack(q, 0), &mut done, &mut events);
    assert_eq!(done, vec![(1, KernelReply::Spi([0xbe, 0x93, 0xf4, 0x0b]))]);
    done.clear();
    sent.clear();
    // The responder's inbound half: one message, into the kernel for 7.6 s.
    let mut s = sa();
    s.spi_from_kernel = true;
    let t1 = t0.add_millis(16);
    let inbound = KernelOp {
        ticket: 2,
        req: KernelReq::AddSa(Box::new(s.clone()), Part::Inbound),
    };
    k.submit(t1, &inbound, &mut sending(&mut sent), &mut done);
    assert_eq!(sent.len(), 1);
    for ms in [ANSWER_TIMEOUT_MS, 7_000] {
        k.expire(t1.add_millis(ms), &mut done);
        assert!(done.is_empty(), "failed after {ms} ms: {done:?}");
    }
    k.receive(
        t1.add_millis(7_610),
        &ack(seq_of(&sent[0]), 0),
        &mut done,
        &mut events,
    );
    assert_eq!(done, vec![(2, KernelReply::Done)]);
    assert!(k.idle());
    done.clear();
    sent.clear();

    // iked's install: both states and three policies sent at once, the first one stuck;
    // the kernel answers all five when it comes back.
    let t2 = t1.add_millis(60_000);
    let both = KernelOp {
        ticket: 3,
        req: KernelReq::AddSa(Box::new(s), Part::Both),
    };
    k.submit(t2, &both, &mut sending(&mut sent), &mut done);
    assert_eq!(sent.len(), 5);
    k.expire(t2.add_millis(ANSWER_TIMEOUT_MS + 10), &mut done);
    assert!(done.is_empty(), "{done:?}");
    let t3 = t2.add_millis(7_600);
    for m in &sent {
        k.receive(t3, &ack(seq_of(m), 0), &mut done, &mut events);
    }
    assert_eq!(done, vec![(3, KernelReply::Done)]);
    assert!(k.idle() && events.is_empty());
}

/// An answer that never comes while later requests are answered was lost (the relay
/// dropped it): that still fails within the short timeout of being overtaken, and only
/// complete silence waits for the kernel's limit.
#[test]
fn a_lost_answer_fails_once_later_requests_are_answered() {
    let now = Time(0);
    let mut k = Kernel::new(true, Dialect::Xfrm);
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let (mut done, mut events) = (Vec::new(), Vec::new());
    let get = |ticket| KernelOp {
        ticket,
        req: KernelReq::GetSpi {
            protocol: ProtocolId::IPSEC_ESP,
            src: "192.0.2.1".parse().unwrap(),
            dst: "192.0.2.2".parse().unwrap(),
        },
    };
    k.submit(now, &get(1), &mut sending(&mut sent), &mut done);
    k.submit(
        now.add_millis(100),
        &get(2),
        &mut sending(&mut sent),
        &mut done,
    );
    k.submit(
        now.add_millis(200),
        &get(3),
        &mut sending(&mut sent),
        &mut done,
    );
    // The second is answered at 1 s: the first one's answer is overdue from then on.
    let second = seq_of(&sent[1]);
    let t = now.add_millis(1_000);
    k.receive(
        t,
        &allocspi_answer(second, [0, 0, 1, 2]),
        &mut done,
        &mut events,
    );
    k.receive(t, &ack(second, 0), &mut done, &mut events);
    assert_eq!(done, vec![(2, KernelReply::Spi([0, 0, 1, 2]))]);
    done.clear();
    assert_eq!(k.next_deadline(), Some(t.add_millis(ANSWER_TIMEOUT_MS)));
    k.expire(t.add_millis(ANSWER_TIMEOUT_MS - 1), &mut done);
    assert!(done.is_empty());
    k.expire(t.add_millis(ANSWER_TIMEOUT_MS), &mut done);
    assert!(
        matches!(&done[..], [(1, KernelReply::Failed(_))]),
        "{done:?}"
    );
    done.clear();
    // The third, sent after the answered one, waits for the kernel.
    assert_eq!(
        k.next_deadline(),
        Some(now.add_millis(200 + KERNEL_BUSY_MS))
    );
    k.expire(now.add_millis(200 + KERNEL_BUSY_MS), &mut done);
    assert!(
        matches!(&done[..], [(3, KernelReply::Failed(_))]),
        "{done:?}"
    );
    assert!(k.idle());
}

#[test]
fn pfkey_answers_match_by_pid_seq_and_type_and_acquires_become_events() {
    let now = Time(0);
    let mut k = Kernel::new(true, Dialect::Pfkey(pfkey::Platform::Linux));
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut done = Vec::new();
    let mut events = Vec::new();
    let get = KernelOp {
        ticket: 3,
        req: KernelReq::GetSpi {
            protocol: ProtocolId::IPSEC_ESP,
            src: "192.0.2.2".parse().unwrap(),
            dst: "192.0.2.1".parse().unwrap(),
        },
    };
    k.submit(now, &get, &mut sending(&mut sent), &mut done);
    // Someone else's message with our seq is not our answer.
    let mut other = pfkey::error_reply(&sent[0], 0);
    other[12..16].copy_from_slice(&1u32.to_ne_bytes());
    k.receive(now, &other, &mut done, &mut events);
    assert!(done.is_empty());
    // The kernel's answer: our header, the SA extension with the SPI.
    let mut answer = pfkey::error_reply(&sent[0], 0);
    answer.extend_from_slice(&2u16.to_ne_bytes());
    answer.extend_from_slice(&pfkey::SADB_EXT_SA.to_ne_bytes());
    answer.extend_from_slice(&[0, 0, 0x12, 0x34]);
    answer.extend_from_slice(&[0; 8]);
    answer[4..6].copy_from_slice(&4u16.to_ne_bytes());
    k.receive(now, &answer, &mut done, &mut events);
    assert_eq!(done, vec![(3, KernelReply::Spi([0, 0, 0x12, 0x34]))]);
    let acquire = include_str!("../../tests/vectors/pfkey.txt")
        .lines()
        .find_map(|l| l.strip_prefix("linux_acquire = "))
        .unwrap();
    let acquire: Vec<u8> = (0..acquire.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&acquire[i..i + 2], 16).unwrap())
        .collect();
    k.receive(now, &acquire, &mut done, &mut events);
    assert!(
        matches!(events[..], [Event::Acquire { flow: None, .. }]),
        "{events:?}"
    );
}

#[test]
fn a_kilobyte_lifetime_becomes_the_kernels_byte_limits() {
    let mut s = sa();
    s.kbytes = 100;
    s.auth = Some(AuthAlgorithm::HMAC_SHA);
    s.auth_key_len = 20;
    let m = messages(
        &KernelReq::AddSa(Box::new(s.clone()), Part::Both),
        &mut 0,
        true,
    )
    .unwrap();
    let u64_at = |b: &[u8], at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().unwrap());
    // struct xfrm_usersa_info after the netlink header: lft at 96, soft then hard bytes.
    assert_eq!(u64_at(&m[0].bytes, 16 + 96), 92_160);
    assert_eq!(u64_at(&m[0].bytes, 16 + 104), 102_400);
    let m = pfkey_messages(
        &KernelReq::AddSa(Box::new(s), Part::Both),
        &mut 0,
        true,
        pfkey::Platform::Linux,
    )
    .unwrap();
    let p = pfkey::parse(&m[0].bytes).unwrap();
    // struct sadb_lifetime: header, allocations, then bytes.
    assert_eq!(
        u64_at(p.ext(pfkey::SADB_EXT_LIFETIME_HARD).unwrap(), 8),
        102_400
    );
    assert_eq!(
        u64_at(p.ext(pfkey::SADB_EXT_LIFETIME_SOFT).unwrap(), 8),
        92_160
    );
}

#[test]
fn more_flows_of_an_sa_and_flows_alone_share_the_first_pairs_reqid() {
    let mut s = sa();
    let mut second = (s.local_id.clone(), s.remote_id.clone());
    second.0.data[2] = 101;
    second.1.data[2] = 114;
    s.more_flows.push(second);
    let m = messages(
        &KernelReq::AddSa(Box::new(s.clone()), Part::Both),
        &mut 0,
        true,
    )
    .unwrap();
    // Two states, then out, in and fwd for each pair.
    assert_eq!(
        m.len(),
        2 + 6,
        "{:?}",
        m.iter().map(|x| &x.what).collect::<Vec<_>>()
    );
    assert!(
        m[5].what
            .contains("198.51.101.0/24 -> 203.0.114.0/24 dir 1"),
        "{}",
        m[5].what
    );
    // The flows alone (iked's at startup): the same policies, with the same reqid, so
    // that the SA pair negotiated later is the one their template asks for.
    let fs = s.flow_set();
    let alone = messages(&KernelReq::AddFlows(Box::new(fs.clone())), &mut 0, true).unwrap();
    assert_eq!(alone.len(), 6);
    let reqid_at = |b: &[u8]| {
        // struct xfrm_userpolicy_info (168 bytes) after the header, then the
        // XFRMA_TMPL attribute (4 bytes) and xfrm_user_tmpl: reqid at 44.
        u32::from_ne_bytes(b[16 + 168 + 4 + 44..16 + 168 + 4 + 48].try_into().unwrap())
    };
    for (a, b) in alone.iter().zip(&m[2..]) {
        assert_eq!(reqid_at(&a.bytes), reqid(&s));
        assert_eq!(reqid_at(&b.bytes), reqid(&s));
    }
    // Deleted by their selectors; nothing without flows (-a).
    let del = messages(&KernelReq::DeleteFlows(Box::new(fs.clone())), &mut 0, true).unwrap();
    assert_eq!(del.len(), 6);
    assert!(del[0].what.starts_with("delete flow"));
    assert!(
        messages(&KernelReq::AddFlows(Box::new(fs.clone())), &mut 0, false)
            .unwrap()
            .is_empty()
    );
    let pf = pfkey_messages(
        &KernelReq::AddFlows(Box::new(fs)),
        &mut 0,
        true,
        pfkey::Platform::Linux,
    )
    .unwrap();
    assert_eq!(pf.len(), 6);
}
