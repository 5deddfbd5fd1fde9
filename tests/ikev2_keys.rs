//! The IKEv2 key schedule, SK/SKF protection and shared-key AUTH (src/ikev2/keys.rs,
//! src/ikev2/sk.rs) against three real exchanges between two strongSwan charons, with the
//! secrets both charons logged for them (see the notes at the top of each file and
//! scripts/record-ikev2-vectors.sh):
//!
//! - tests/vectors/ikev2-charon.txt with ikev2-charon-keys.txt: AES-CBC-256,
//!   HMAC-SHA2-256-128, PRF-HMAC-SHA2-256, MODP-3072;
//! - tests/vectors/ikev2-charon-gcm.txt: AES-GCM-16-128, PRF-HMAC-SHA2-256, ECP-256, with
//!   a CREATE_CHILD_SA rekey of the CHILD_SA and one of the IKE SA;
//! - tests/vectors/ikev2-charon-chacha.txt: ChaCha20-Poly1305, PRF-HMAC-SHA2-512,
//!   Curve25519;
//! - tests/vectors/ikev2-charon-sha1.txt: AES-CBC-128, HMAC-SHA1-96, PRF-HMAC-SHA1,
//!   MODP-2048, ESP with AES-CBC-256/HMAC-SHA2-256-128 and a CHILD_SA rekey with PFS (its
//!   request in three fragments);
//! - tests/vectors/ikev2-charon-sha2.txt: AES-CBC-192, HMAC-SHA2-512-256,
//!   PRF-HMAC-SHA2-384, ECP-384, ESP with AES-CBC-128/HMAC-SHA2-384-192.
//!
//! From the recorded messages and the logged DH shared secret (the private values are
//! charon's), each test derives SKEYSEED, the seven keys, the AUTH octets and AUTH values
//! and the CHILD_SA keys and compares them with charon's; decrypts every SK and SKF
//! datagram and compares the plaintext with charon's; re-encrypts it with the same IV and
//! padding and gets the datagram back byte for byte; and verifies both AUTH payloads of
//! IKE_AUTH with the PSK.

use isakmpd::ike::crypto::Key;
use isakmpd::ikev2::keys::*;
use isakmpd::ikev2::sk::{Progress, Reassembly, SkError, SkKeys};
use isakmpd::ikev2::wire::*;

struct Vectors(Vec<(String, Vec<u8>)>);

impl Vectors {
    fn load(files: &[&str]) -> Vectors {
        let mut out: Vec<(String, Vec<u8>)> = Vec::new();
        for f in files {
            let path = format!("{}/tests/vectors/{f}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(path).unwrap();
            for l in text.lines() {
                if let Some(n) = l.strip_prefix("= ") {
                    out.push((n.to_string(), Vec::new()));
                } else if !(l.starts_with('#') || l.trim().is_empty() || l == "(empty)") {
                    let v = &mut out.last_mut().expect("hex before a record name").1;
                    for i in (0..l.len()).step_by(2) {
                        v.push(u8::from_str_radix(&l[i..i + 2], 16).unwrap());
                    }
                }
            }
        }
        Vectors(out)
    }

    fn get(&self, name: &str) -> &[u8] {
        &self
            .0
            .iter()
            .find(|x| x.0 == name)
            .unwrap_or_else(|| panic!("no record {name}"))
            .1
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|x| x.0 == name)
    }

    /// The same value as both charons logged it.
    fn both(&self, what: &str) -> &[u8] {
        let e = self.get(&format!("east.{what}"));
        assert_eq!(
            e,
            self.get(&format!("west.{what}")),
            "east and west differ on {what}"
        );
        e
    }

    /// The datagrams, in capture order (not the plaintexts or secrets).
    fn datagrams(&self) -> Vec<(&str, &[u8])> {
        self.0
            .iter()
            .filter(|x| !x.0.starts_with("plain-") && !x.0.contains('.'))
            .map(|x| (x.0.as_str(), x.1.as_slice()))
            .collect()
    }

    fn plains(&self) -> Vec<&[u8]> {
        self.0
            .iter()
            .filter(|x| x.0.starts_with("plain-"))
            .map(|x| x.1.as_slice())
            .collect()
    }
}

/// The suite of the IKE SA the responder chose, from its SA payload.
fn chosen(sa: &Payload<'_>) -> (Suite, Vec<u8>) {
    let Payload::Sa(sa) = sa else {
        panic!("not an SA")
    };
    let p = sa.proposals().next().unwrap();
    let (mut encr, mut integ, mut prf) = (None, None, None);
    for t in p.transforms() {
        if let Some(e) = t.encr() {
            encr = Encr::from_id(e, t.key_length());
        }
        if let Some(i) = t.integ() {
            integ = Integ::from_id(i);
        }
        if let Some(f) = t.prf() {
            prf = Prf::from_id(f);
        }
    }
    let suite = Suite::new(encr.unwrap(), integ, prf.unwrap_or(Prf::HMAC_SHA1)).unwrap();
    (suite, p.spi.to_vec())
}

fn nonce<'a>(p: &Payloads<'a>) -> &'a [u8] {
    match p.find(PayloadType::NONCE) {
        Some(Payload::Nonce(n)) => n,
        _ => panic!("no nonce"),
    }
}

fn key_eq(k: &Key, logged: &[u8], what: &str) {
    assert_eq!(k.as_bytes(), logged, "{what} differs from charon's");
}

/// One IKE SA's keys and where they apply.
struct Sa {
    suite: Suite,
    spi_i: [u8; 8],
    spi_r: [u8; 8],
    keys: IkeKeys,
}

impl Sa {
    fn check(&self, v: &Vectors, n: u32) {
        let k = &self.keys;
        for (key, name) in [
            (&k.d, "sk-d"),
            (&k.ei, "sk-ei"),
            (&k.er, "sk-er"),
            (&k.pi, "sk-pi"),
            (&k.pr, "sk-pr"),
        ] {
            key_eq(key, v.both(&format!("{name}.{n}")), name);
        }
        if self.suite.integ.is_some() {
            key_eq(&k.ai, v.both(&format!("sk-ai.{n}")), "SK_ai");
            key_eq(&k.ar, v.both(&format!("sk-ar.{n}")), "SK_ar");
        } else {
            assert!(k.ai.is_empty() && k.ar.is_empty());
            assert!(!v.has(&format!("east.sk-ai.{n}")));
        }
    }
}

/// Everything one recording proves. `init` names its IKE_SA_INIT request and response.
struct Run {
    v: Vectors,
    init: [&'static str; 2],
    sas: Vec<Sa>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    /// Decrypted bodies of the encrypted datagrams, whole messages (fragments joined):
    /// (datagram name of the last fragment, first payload type, plaintext).
    messages: Vec<(String, PayloadType, Vec<u8>)>,
}

impl Run {
    fn new(files: &[&str], init: [&'static str; 2]) -> Run {
        let v = Vectors::load(files);
        let req = Message::parse(v.get(init[0])).unwrap();
        let resp = Message::parse(v.get(init[1])).unwrap();
        let (suite, _) = chosen(resp.payloads.find(PayloadType::SA).unwrap());
        let (ni, nr) = (
            nonce(&req.payloads).to_vec(),
            nonce(&resp.payloads).to_vec(),
        );
        let gir = v.both("dh-secret.1").to_vec();
        // The KE payloads carry the group charon chose.
        let Some(Payload::Ke(ke)) = resp.payloads.find(PayloadType::KE) else {
            panic!("no KE")
        };
        assert!(ke.data.len() >= 32);

        let seed = skeyseed(suite.prf, &ni, &nr, &gir).unwrap();
        key_eq(&seed, v.both("skeyseed.1"), "SKEYSEED");
        let (spi_i, spi_r) = (resp.header.spi_i, resp.header.spi_r);
        let keys = IkeKeys::derive(&suite, seed.as_bytes(), &ni, &nr, &spi_i, &spi_r).unwrap();
        let sa = Sa {
            suite,
            spi_i,
            spi_r,
            keys,
        };
        sa.check(&v, 1);
        drop((req, resp));
        Run {
            v,
            init,
            sas: vec![sa],
            ni,
            nr,
            messages: Vec::new(),
        }
    }

    /// Opens every encrypted datagram with the keys of its IKE SA (by SPIs) and its
    /// sender's direction; compares with charon's plaintexts; seals it again from the
    /// plaintext, IV and padding and compares with the datagram; joins fragments.
    fn open_all(&mut self) {
        let plains: Vec<Vec<u8>> = self.v.plains().iter().map(|p| p.to_vec()).collect();
        let datagrams: Vec<(String, Vec<u8>)> = self
            .v
            .datagrams()
            .iter()
            .filter(|(n, _)| !self.init.contains(n))
            .map(|(n, d)| (n.to_string(), d.to_vec()))
            .collect();
        assert_eq!(datagrams.len(), plains.len());
        let mut frags = Reassembly::<4096, 8>::new();
        for ((name, d), plain) in datagrams.iter().zip(&plains) {
            let m = Message::parse(d).unwrap();
            let sa = self
                .sas
                .iter()
                .find(|s| s.spi_i == m.header.spi_i && s.spi_r == m.header.spi_r)
                .unwrap_or_else(|| panic!("{name}: no IKE SA for its SPIs"));
            let from_initiator = m.header.flags & FLAG_INITIATOR != 0;
            let k = SkKeys::for_sender(&sa.suite, &sa.keys, from_initiator).unwrap();
            // The receiver's keys are the wrong ones for this message.
            let other = SkKeys::for_sender(&sa.suite, &sa.keys, !from_initiator).unwrap();
            assert_eq!(
                other.open(&mut d.clone()),
                Err(SkError::Integrity),
                "{name}"
            );

            let mut buf = d.clone();
            let o = k.open(&mut buf).unwrap();
            assert_eq!(&buf[o.plain.clone()], &plain[..], "{name}: plaintext");

            // Seal again from the parts: the same bytes.
            let iv = &d[o.padded.start - k.iv_len()..o.padded.start];
            let mut out = vec![0u8; d.len() + 64];
            let mut b = MessageBuilder::new(&mut out, &m.header).unwrap();
            b.encrypted(o.first, o.fragment, |w| {
                k.write_body_padded(w, &buf[o.padded.clone()], iv)
                    .map_err(|_| NoRoom)
            })
            .unwrap();
            let n = b.finish().unwrap();
            k.seal(&mut out[..n]).unwrap();
            assert_eq!(&out[..n], &d[..], "{name}: sealed again");
            // With no padding, our own padding is charon's.
            if o.padded.len() == o.plain.len() + 1 {
                let mut b = MessageBuilder::new(&mut out, &m.header).unwrap();
                b.encrypted(o.first, o.fragment, |w| {
                    k.write_body(w, plain, iv).map_err(|_| NoRoom)
                })
                .unwrap();
                let n = b.finish().unwrap();
                k.seal(&mut out[..n]).unwrap();
                assert_eq!(&out[..n], &d[..], "{name}: sealed with write_body");
            }
            // A flipped bit in the ICV or the ciphertext is an integrity failure.
            for at in [d.len() - 1, o.padded.start, o.padded.start - 1, 20] {
                let mut bad = d.clone();
                bad[at] ^= 0x04;
                assert_eq!(k.open(&mut bad), Err(SkError::Integrity), "{name} at {at}");
            }

            match o.fragment {
                None => self
                    .messages
                    .push((name.clone(), o.first, buf[o.plain].to_vec())),
                Some((number, total)) => {
                    let p = frags.add(number, total, o.first, &buf[o.plain]).unwrap();
                    if p == Progress::Complete {
                        let mut whole = vec![0u8; 4096];
                        let (first, len) = frags.assemble(&mut whole).unwrap();
                        whole.truncate(len);
                        self.messages.push((name.clone(), first, whole));
                        frags.reset();
                    }
                }
            }
        }
    }

    fn message(&self, prefix: &str) -> Payloads<'_> {
        let (_, first, data) = self
            .messages
            .iter()
            .find(|m| m.0.starts_with(prefix))
            .unwrap_or_else(|| panic!("no message {prefix}"));
        parse_payloads(*first, data).unwrap()
    }

    /// Both AUTH payloads of IKE_AUTH, from the PSK.
    fn check_auth(&self, auth_req: &str, auth_resp: &str) {
        let sa = &self.sas[0];
        let prf = sa.suite.prf;
        let psk = self.v.both("psk.1");
        assert_eq!(psk, b"ikev2-wire-record-psk");
        let req = self.message(auth_req);
        let resp = self.message(auth_resp);
        for (side, msgs, init_msg, peer_nonce, sk_p, id_ty, n) in [
            (
                "initiator",
                &req,
                self.init[0],
                &self.nr,
                &sa.keys.pi,
                PayloadType::IDI,
                1,
            ),
            (
                "responder",
                &resp,
                self.init[1],
                &self.ni,
                &sa.keys.pr,
                PayloadType::IDR,
                2,
            ),
        ] {
            let id = msgs.iter().find(|e| e.ty == id_ty).unwrap();
            assert_eq!(id.body, self.v.both(&format!("idx.{n}")), "{side} IDx'");
            key_eq(sk_p, self.v.both(&format!("sk-p.{n}")), "SK_p");
            let octets = SignedOctets::new(
                prf,
                self.v.get(init_msg),
                peer_nonce,
                sk_p.as_bytes(),
                id.body,
            );
            let mut buf = vec![0u8; octets.len()];
            assert_eq!(octets.write(&mut buf), Some(buf.len()));
            assert_eq!(
                &buf[..],
                self.v.both(&format!("auth-octets.{n}")),
                "{side} octets"
            );
            key_eq(
                &prf.prf(psk, &[KEY_PAD]),
                self.v.both(&format!("psk-keypad.{n}")),
                "prf(secret, keypad)",
            );
            let auth = psk_auth(prf, psk, &octets);
            key_eq(&auth, self.v.both(&format!("auth.{n}")), "AUTH");
            let Some(Payload::Auth(a)) = msgs.find(PayloadType::AUTH) else {
                panic!("no AUTH")
            };
            assert_eq!(a.method, AuthMethod::SHARED_KEY_MIC);
            assert_eq!(verify_psk_auth(prf, psk, &octets, a.data), Ok(()));
            assert_eq!(
                verify_psk_auth(prf, b"ikev2-wire-record-psK", &octets, a.data),
                Err(AuthFailed)
            );
            assert!(verify_psk_auth(prf, psk, &octets, &a.data[1..]).is_err());
        }
    }

    /// The CHILD_SA keys: the first from IKE_AUTH's (IKE_SA_INIT's nonces), the rekeyed
    /// one from a CREATE_CHILD_SA request and response (their nonces, no PFS).
    fn check_child(
        &self,
        n: u32,
        gir: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        sa_payload: &Payload<'_>,
    ) {
        let (suite, spi) = chosen(sa_payload);
        assert_eq!(spi.len(), 4);
        let sa = &self.sas[0];
        let mut seed = gir.unwrap_or_default().to_vec();
        seed.extend_from_slice(ni);
        seed.extend_from_slice(nr);
        assert_eq!(&seed[..], self.v.both(&format!("child-seed.{n}")));
        let k = ChildKeys::derive(
            sa.suite.prf,
            sa.keys.d.as_bytes(),
            gir,
            ni,
            nr,
            suite.encr,
            suite.integ,
        )
        .unwrap();
        // charon logs the keys per direction from its own view; the initiator's names
        // are the protocol's.
        key_eq(
            &k.encr_i,
            self.v.get(&format!("east.child-encr-i.{n}")),
            "ESP encr i",
        );
        key_eq(
            &k.encr_r,
            self.v.get(&format!("east.child-encr-r.{n}")),
            "ESP encr r",
        );
        key_eq(
            &k.encr_i,
            self.v.get(&format!("west.child-encr-i.{n}")),
            "ESP encr i",
        );
        key_eq(
            &k.encr_r,
            self.v.get(&format!("west.child-encr-r.{n}")),
            "ESP encr r",
        );
        if suite.integ.is_none() {
            assert!(k.integ_i.is_empty() && k.integ_r.is_empty());
        } else {
            for side in ["east", "west"] {
                let logged = |d: &str| self.v.get(&format!("{side}.child-integ-{d}.{n}"));
                key_eq(&k.integ_i, logged("i"), "ESP integ i");
                key_eq(&k.integ_r, logged("r"), "ESP integ r");
            }
        }
    }
}

#[test]
fn aes_cbc_sha256_modp3072() {
    let mut r = Run::new(
        &["ikev2-charon.txt", "ikev2-charon-keys.txt"],
        ["init-request", "init-response"],
    );
    assert_eq!(
        r.sas[0].suite,
        Suite::new(
            Encr::AesCbc(32),
            Some(Integ::HmacSha2_256_128),
            Prf::HMAC_SHA2_256
        )
        .unwrap()
    );
    assert_eq!(r.v.both("dh-secret.1").len(), 384);
    r.open_all();
    assert_eq!(r.messages.len(), 8);
    r.check_auth("auth-request-frag2", "auth-response");
}

#[test]
fn aes_gcm_16_ecp256_with_rekeys() {
    let mut r = Run::new(
        &["ikev2-charon-gcm.txt"],
        ["init0-request", "init0-response"],
    );
    assert_eq!(
        r.sas[0].suite,
        Suite::new(
            Encr::Aead(isakmpd::ike::crypto::AeadAlg::AesGcm(16)),
            None,
            Prf::HMAC_SHA2_256
        )
        .unwrap()
    );

    // The IKE SA rekey (CREATE_CHILD_SA, message 5) is in the first SA's plaintexts, so
    // derive the new SA's keys before opening its datagrams. Its payloads are found in
    // charon's plaintexts, which open_all then checks against our own decryption.
    let new = {
        let plains = r.v.plains();
        let (req, resp) = (
            parse_payloads(PayloadType::SA, plains[10]).unwrap(),
            parse_payloads(PayloadType::SA, plains[11]).unwrap(),
        );
        let (new_suite, spi_i) = chosen(req.find(PayloadType::SA).unwrap());
        let (_, spi_r) = chosen(resp.find(PayloadType::SA).unwrap());
        let (ni, nr) = (nonce(&req), nonce(&resp));
        let old = &r.sas[0];
        let seed = rekey_skeyseed(
            old.suite.prf,
            old.keys.d.as_bytes(),
            r.v.both("dh-secret.2"),
            ni,
            nr,
        )
        .unwrap();
        key_eq(&seed, r.v.both("skeyseed.2"), "rekeyed SKEYSEED");
        let (spi_i, spi_r): ([u8; 8], [u8; 8]) =
            (spi_i.try_into().unwrap(), spi_r.try_into().unwrap());
        let keys = IkeKeys::derive(&new_suite, seed.as_bytes(), ni, nr, &spi_i, &spi_r).unwrap();
        let new = Sa {
            suite: new_suite,
            spi_i,
            spi_r,
            keys,
        };
        new.check(&r.v, 2);
        // The last exchange (the IKE SA delete) runs on the new SA.
        let (_, last) = *r.v.datagrams().last().unwrap();
        assert_eq!(Message::parse(last).unwrap().header.spi_i, spi_i);
        drop((req, resp));
        new
    };
    r.sas.push(new);

    r.open_all();
    r.check_auth("auth1-request-frag2", "auth1-response");
    let (ni0, nr0) = (r.ni.clone(), r.nr.clone());
    let auth = r.message("auth1-response");
    r.check_child(1, None, &ni0, &nr0, auth.find(PayloadType::SA).unwrap());
    let (creq, cresp) = (r.message("child3-request"), r.message("child3-response"));
    r.check_child(
        2,
        None,
        nonce(&creq),
        nonce(&cresp),
        cresp.find(PayloadType::SA).unwrap(),
    );
}

#[test]
fn chacha20_poly1305_sha512_curve25519() {
    let mut r = Run::new(
        &["ikev2-charon-chacha.txt"],
        ["init0-request", "init0-response"],
    );
    assert_eq!(
        r.sas[0].suite,
        Suite::new(
            Encr::Aead(isakmpd::ike::crypto::AeadAlg::ChaCha20Poly1305),
            None,
            Prf::HMAC_SHA2_512
        )
        .unwrap()
    );
    assert_eq!(r.v.both("dh-secret.1").len(), 32);
    r.open_all();
    r.check_auth("auth1-request-frag2", "auth1-response");
    let (ni0, nr0) = (r.ni.clone(), r.nr.clone());
    let auth = r.message("auth1-response");
    r.check_child(1, None, &ni0, &nr0, auth.find(PayloadType::SA).unwrap());
    let (creq, cresp) = (r.message("child3-request"), r.message("child3-response"));
    r.check_child(
        2,
        None,
        nonce(&creq),
        nonce(&cresp),
        cresp.find(PayloadType::SA).unwrap(),
    );
}

#[test]
fn aes_cbc_sha1_modp2048_child_pfs() {
    let mut r = Run::new(
        &["ikev2-charon-sha1.txt"],
        ["init0-request", "init0-response"],
    );
    assert_eq!(
        r.sas[0].suite,
        Suite::new(Encr::AesCbc(16), Some(Integ::HmacSha1_96), Prf::HMAC_SHA1).unwrap()
    );
    r.open_all();
    r.check_auth("auth1-request-frag2", "auth1-response");
    let (ni0, nr0) = (r.ni.clone(), r.nr.clone());
    let auth = r.message("auth1-response");
    r.check_child(1, None, &ni0, &nr0, auth.find(PayloadType::SA).unwrap());
    // The rekey with PFS: KEYMAT = prf+(SK_d, g^ir (new) | Ni | Nr).
    let (creq, cresp) = (r.message("child3-request"), r.message("child3-response"));
    for m in [&creq, &cresp] {
        let Some(Payload::Ke(ke)) = m.find(PayloadType::KE) else {
            panic!("no KE in the PFS rekey")
        };
        assert_eq!(ke.group, DhGroup::MODP_2048);
    }
    let gir = r.v.both("child-dh-secret.1");
    assert_eq!(gir.len(), 256);
    r.check_child(
        2,
        Some(gir),
        nonce(&creq),
        nonce(&cresp),
        cresp.find(PayloadType::SA).unwrap(),
    );
}

#[test]
fn aes_cbc_192_sha512_prf_sha384_ecp384() {
    let mut r = Run::new(
        &["ikev2-charon-sha2.txt"],
        ["init-request", "init-response"],
    );
    assert_eq!(
        r.sas[0].suite,
        Suite::new(
            Encr::AesCbc(24),
            Some(Integ::HmacSha2_512_256),
            Prf::HMAC_SHA2_384
        )
        .unwrap()
    );
    r.open_all();
    r.check_auth("auth-request-frag2", "auth-response");
    let (ni0, nr0) = (r.ni.clone(), r.nr.clone());
    let auth = r.message("auth-response");
    r.check_child(1, None, &ni0, &nr0, auth.find(PayloadType::SA).unwrap());
    let (creq, cresp) = (r.message("child-request"), r.message("child-response"));
    r.check_child(
        2,
        None,
        nonce(&creq),
        nonce(&cresp),
        cresp.find(PayloadType::SA).unwrap(),
    );
}
