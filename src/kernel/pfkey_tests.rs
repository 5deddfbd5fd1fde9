#![forbid(unsafe_code)]

//! Tests of the PF_KEY v2 codec against recorded kernel messages.

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let text = include_str!("../../tests/vectors/pfkey.txt");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} = ")))
        .unwrap_or_else(|| panic!("no fixture {name}"));
    (0..line.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap())
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn esp_sa<'a>(enc: &'a [u8], auth: &'a [u8]) -> SaParams<'a> {
    SaParams {
        src: ip("192.0.2.1"),
        dst: ip("192.0.2.2"),
        spi: [0x11, 0x22, 0x33, 0x44],
        proto: 50,
        enc: 12,
        auth: 3,
        enc_key: enc,
        auth_key: auth,
        tunnel: true,
        reqid: 7,
        hard_secs: 1200,
        soft_secs: 1080,
        hard_bytes: 0,
        soft_bytes: 0,
        update: false,
    }
}

#[test]
fn linux_add_delete_getspi_register_match_the_kernel_headers() {
    let (ek, ak) = ([0xaa; 16], [0xbb; 20]);
    let mut b = Vec::new();
    add_sa(&mut b, Platform::Linux, 1, 77, &esp_sa(&ek, &ak)).unwrap();
    assert_eq!(b, fixture("linux_add_esp"));
    let mut b = Vec::new();
    delete_sa(
        &mut b,
        Platform::Linux,
        2,
        77,
        ip("192.0.2.1"),
        ip("192.0.2.2"),
        [0x11, 0x22, 0x33, 0x44],
        50,
    )
    .unwrap();
    assert_eq!(b, fixture("linux_delete_esp"));
    let mut b = Vec::new();
    get_sa(
        &mut b,
        Platform::Linux,
        6,
        77,
        ip("192.0.2.1"),
        ip("192.0.2.2"),
        [0x11, 0x22, 0x33, 0x44],
        50,
    )
    .unwrap();
    assert_eq!(b, fixture("linux_get_esp"));
    let mut b = Vec::new();
    getspi(
        &mut b,
        Platform::Linux,
        3,
        77,
        ip("192.0.2.2"),
        ip("192.0.2.1"),
        50,
        0x100,
        0xffff_ffff,
    )
    .unwrap();
    assert_eq!(b, fixture("linux_getspi"));
    let answer = fixture("linux_getspi_answer");
    let m = parse(&answer).unwrap();
    assert_eq!((m.seq, m.pid), (3, 77));
    assert_eq!(getspi_answer(&m), Some([0, 0, 0xc0, 0xde]));
    let refused = error_reply(&b, 22);
    let m = parse(&refused).unwrap();
    assert_eq!((m.ty, m.errno, m.seq, m.pid), (SADB_GETSPI, 22, 3, 77));
    assert_eq!(getspi_answer(&m), None);
    let mut b = Vec::new();
    let update = SaParams {
        update: true,
        ..esp_sa(&ek, &ak)
    };
    add_sa(&mut b, Platform::Linux, 1, 77, &update).unwrap();
    assert_eq!(b, fixture("linux_update_esp"));
    let mut b = Vec::new();
    register(&mut b, Platform::Linux, 4, 77, 50);
    assert_eq!(b, fixture("linux_register_esp"));
    let mut b = Vec::new();
    flush(&mut b, 5, 77);
    assert_eq!(b, fixture("linux_flush"));
}

fn tunnel_flow(dir: u8) -> Flow {
    Flow {
        src: ip("198.51.100.0"),
        src_prefix: 24,
        dst: ip("203.0.113.0"),
        dst_prefix: 24,
        proto: 0,
        sport: 0,
        dport: 0,
        dir,
        tmpl_src: ip("192.0.2.1"),
        tmpl_dst: ip("192.0.2.2"),
        tunnel: true,
        sa_proto: 50,
        reqid: 7,
        priority: 2000,
    }
}

#[test]
fn linux_spdadd_and_spddelete_match_the_kernel_headers() {
    let mut b = Vec::new();
    flow(
        &mut b,
        Platform::Linux,
        true,
        6,
        77,
        &tunnel_flow(IPSEC_DIR_OUTBOUND),
    )
    .unwrap();
    assert_eq!(b, fixture("linux_spdadd_out"));
    let mut b = Vec::new();
    flow(
        &mut b,
        Platform::Linux,
        false,
        7,
        77,
        &tunnel_flow(IPSEC_DIR_OUTBOUND),
    )
    .unwrap();
    assert_eq!(b, fixture("linux_spddelete_out"));
}

#[test]
fn linux_expire_and_acquire_decode() {
    let b = fixture("linux_expire_hard");
    let m = parse(&b).unwrap();
    assert_eq!(
        expire(Platform::Linux, &m),
        Some(Expire {
            dst: ip("192.0.2.2"),
            spi: [0x11, 0x22, 0x33, 0x44],
            proto: 50,
            hard: true
        })
    );
    let b = fixture("linux_acquire");
    let m = parse(&b).unwrap();
    assert_eq!(
        acquire(Platform::Linux, &m),
        Some(Acquire {
            src: ip("192.0.2.1"),
            dst: ip("192.0.2.2"),
            proto: 50
        })
    );
    // Truncations and garbage never panic and never parse into something else.
    for n in 0..b.len() {
        if let Some(m) = parse(&b[..n]) {
            let _ = acquire(Platform::Linux, &m);
        }
    }
    let mut bad = b.clone();
    bad[16] = 0; // a zero-length extension
    bad[17] = 0;
    assert_eq!(parse(&bad), None);
}

#[test]
fn openbsd_add_sa_layout() {
    let (ek, ak) = ([0xaa; 16], [0xbb; 20]);
    let mut b = Vec::new();
    add_sa(&mut b, Platform::OpenBsd, 1, 77, &esp_sa(&ek, &ak)).unwrap();
    let mut want = vec![2, 3, 0, 2]; // version, SADB_ADD, errno, SADB_SATYPE_ESP (2)
    want.extend_from_slice(&(b.len() as u16 / 8).to_ne_bytes());
    want.extend_from_slice(&[0, 0]);
    want.extend_from_slice(&1u32.to_ne_bytes());
    want.extend_from_slice(&77u32.to_ne_bytes());
    // sadb_sa: len 2 words, exttype 1, spi, replay 32, MATURE, auth 3, enc 12,
    // flags SADB_X_SAFLAGS_TUNNEL.
    want.extend_from_slice(&2u16.to_ne_bytes());
    want.extend_from_slice(&1u16.to_ne_bytes());
    want.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 32, 1, 3, 12]);
    want.extend_from_slice(&4u32.to_ne_bytes());
    // two sadb_lifetime, 4 words each: hard (3) 1200 s, soft (4) 1080 s.
    for (ty, secs) in [(3u16, 1200u64), (4, 1080)] {
        want.extend_from_slice(&4u16.to_ne_bytes());
        want.extend_from_slice(&ty.to_ne_bytes());
        want.extend_from_slice(&0u32.to_ne_bytes());
        want.extend_from_slice(&0u64.to_ne_bytes());
        want.extend_from_slice(&secs.to_ne_bytes());
        want.extend_from_slice(&0u64.to_ne_bytes());
    }
    // sadb_address src (5) and dst (6): 3 words, BSD sockaddr_in with sin_len 16.
    for (ty, last) in [(5u16, 1u8), (6, 2)] {
        want.extend_from_slice(&3u16.to_ne_bytes());
        want.extend_from_slice(&ty.to_ne_bytes());
        want.extend_from_slice(&[0, 0, 0, 0]);
        want.extend_from_slice(&[16, 2, 0, 0, 192, 0, 2, last, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
    // sadb_key auth (8): 160 bits in 3 words + 4 bytes pad -> 4 words.
    want.extend_from_slice(&4u16.to_ne_bytes());
    want.extend_from_slice(&8u16.to_ne_bytes());
    want.extend_from_slice(&160u16.to_ne_bytes());
    want.extend_from_slice(&[0, 0]);
    want.extend_from_slice(&[0xbb; 20]);
    want.extend_from_slice(&[0; 4]);
    // sadb_key encrypt (9): 128 bits -> 3 words.
    want.extend_from_slice(&3u16.to_ne_bytes());
    want.extend_from_slice(&9u16.to_ne_bytes());
    want.extend_from_slice(&128u16.to_ne_bytes());
    want.extend_from_slice(&[0, 0]);
    want.extend_from_slice(&[0xaa; 16]);
    assert_eq!(b, want);
}

#[test]
fn openbsd_addflow_layout() {
    let mut b = Vec::new();
    flow(
        &mut b,
        Platform::OpenBsd,
        true,
        9,
        77,
        &tunnel_flow(OBSD_DIRECTION_OUT),
    )
    .unwrap();
    let m = parse(&b).unwrap();
    assert_eq!((m.ty, m.satype, m.seq, m.pid), (SADB_X_ADDFLOW, 2, 9, 77));
    let types: Vec<u16> = m.exts.iter().map(|(t, _)| *t).collect();
    assert_eq!(types, [20, 6, 21, 17, 22, 18, 19]);
    // flow type: sadb_protocol {len 1, type 20, proto REQUIRE (3), direction OUT (2)}
    assert_eq!(&m.ext(20).unwrap()[4..6], &[3, 2]);
    let a = |t| address(Platform::OpenBsd, m.ext(t).unwrap()).unwrap().0;
    assert_eq!(a(6), ip("192.0.2.2"), "the peer");
    assert_eq!(a(21), ip("198.51.100.0"));
    assert_eq!(a(17), ip("255.255.255.0"));
    assert_eq!(a(22), ip("203.0.113.0"));
    assert_eq!(a(18), ip("255.255.255.0"));
    // BSD sockaddr: sa_len first.
    assert_eq!(&m.ext(21).unwrap()[8..10], &[16, 2]);
    let mut d = Vec::new();
    flow(
        &mut d,
        Platform::OpenBsd,
        false,
        10,
        77,
        &tunnel_flow(OBSD_DIRECTION_OUT),
    )
    .unwrap();
    let m = parse(&d).unwrap();
    let types: Vec<u16> = m.exts.iter().map(|(t, _)| *t).collect();
    assert_eq!(types, [20, 21, 17, 22, 18, 19], "DELFLOW names no peer");
}
