//! Figures for the foundation's hot structures: timer wheel operations and isakmpd.conf
//! lookups of generated defaults. Prints ns per operation; run with `cargo bench`.

use std::hint::black_box;
use std::time::Instant;

use isakmpd::conf::Conf;
use isakmpd::timer::{Time, TimerWheel};

fn per_op(label: &str, n: u64, f: impl FnOnce()) {
    let t = Instant::now();
    f();
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("{label:<48} {ns:>10.1} ns/op  ({n} ops)");
}

fn main() {
    const N: u64 = 1_000_000;
    let mut w: TimerWheel<u32> = TimerWheel::new(4096, Time(0));
    let mut handles = Vec::with_capacity(4096);
    per_op("timer insert+cancel (4096 armed)", N, || {
        for i in 0..4000u32 {
            handles.push(w.insert(Time(u64::from(i) * 37 % 60_000), i).unwrap());
        }
        for i in 0..N {
            let h = w.insert(Time(i % 90_000), 0).unwrap();
            black_box(w.cancel(h));
        }
    });
    per_op("timer next_deadline (4000 armed)", 100_000, || {
        for _ in 0..100_000 {
            black_box(w.next_deadline());
        }
    });
    // The event loop's pattern with many SAs: far-future expiry timers (hours), and per
    // datagram an exchange timer re-armed and the next deadline asked for.
    for far in [100u32, 100_000] {
        let mut big: TimerWheel<u32> = TimerWheel::new(far as usize + 16, Time(0));
        for i in 0..far {
            big.insert(Time(3_600_000 + u64::from(i) * 7), i).unwrap();
        }
        let label = format!("timer re-arm + next_deadline ({far} far-future armed)");
        per_op(&label, 100_000, || {
            for i in 0..100_000u64 {
                let h = big.insert(Time(20_000 + i % 5_000), 0).unwrap();
                black_box(big.next_deadline());
                big.cancel(h);
            }
        });
    }
    let mut fired = 0u64;
    per_op("timer expire, 1 ms steps over 60 s", 60_000, || {
        for t in 0..60_000u64 {
            w.expire(Time(t), |_, _| fired += 1);
        }
    });
    assert_eq!(fired, 4000);

    // The PRF (HMAC) and hash as a handshake calls them some 20 times each.
    isakmpd::ike::crypto::init();
    let key = [7u8; 32];
    let data = [9u8; 100];
    per_op("prf HMAC-SHA2-256, 32-byte key, 100 bytes", 100_000, || {
        for _ in 0..100_000 {
            black_box(isakmpd::ike::crypto::prf(
                isakmpd::ike::crypto::HashAlg::Sha256,
                &key,
                &[&data],
            ));
        }
    });
    per_op("hash SHA2-256, 100 bytes", 100_000, || {
        for _ in 0..100_000 {
            black_box(isakmpd::ike::crypto::hash(
                isakmpd::ike::crypto::HashAlg::Sha256,
                &[&data],
            ));
        }
    });

    let conf = Conf::parse("[General]\nRetransmits=5\n").unwrap().conf;
    let names = [
        "AES-256-SHA2-256-GRP14-RSA_SIG",
        "3DES-SHA",
        "QM-ESP-TRP-AESGCM-256-PFS-GRP19-XF",
        "QM-ESP-AES-SHA-PFS-SUITE",
    ];
    per_op("conf get of a generated default", 400_000, || {
        for i in 0..400_000usize {
            black_box(conf.get(names[i % 4], "GROUP_DESCRIPTION"));
        }
    });
    per_op("conf get of a file binding", 1_000_000, || {
        for _ in 0..1_000_000 {
            black_box(conf.get("General", "Retransmits"));
        }
    });
}
