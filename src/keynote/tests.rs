use super::*;

const TF: [&str; 2] = ["false", "true"];

fn attrs<'a>(list: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |n: &str| {
        list.iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.to_string())
    }
}

fn load(text: &str) -> Policy {
    let l = Policy::parse(text);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    l.policy
}

fn q(p: &Policy, a: &[(&str, &str)], who: &[&str]) -> usize {
    let who: Vec<String> = who.iter().map(|s| s.to_string()).collect();
    p.query(&attrs(a), &who, &TF)
}

/// OpenBSD's samples/isakmpd.policy.
const SAMPLE_ACCEPT: &str = "KeyNote-Version: 2
Comment: This policy essentially accepts everything
Authorizer: \"POLICY\"
Conditions: app_domain == \"IPsec policy\" -> \"true\";
";

/// OpenBSD's samples/policy (1999).
const SAMPLE_POLICY: &str = "KeyNote-Version: 2
Comment: $OpenBSD: src/sbin/isakmpd/samples/Attic/policy,v 1.2 1999/08/26 22:29:42 niklas Exp $
#\t$EOM: policy,v 1.3 1999/08/26 11:51:37 niklas Exp $
Comment: This policy accepts ESP SAs from a remote that uses the right password
Authorizer: \"POLICY\"
Licensees: \"mekmitasdigoat\"
Conditions: app_domain == \"IPsec policy\" &&
\t    esp_present == \"yes\" -> \"true\";
";

const IPSEC: (&str, &str) = ("app_domain", "IPsec policy");

#[test]
fn accept_everything() {
    let p = load(SAMPLE_ACCEPT);
    assert_eq!(p.len(), 1);
    assert_eq!(q(&p, &[IPSEC], &["passphrase:x"]), 1);
    assert_eq!(q(&p, &[("app_domain", "other")], &["passphrase:x"]), 0);
}

#[test]
fn sample_policy_file() {
    // The 1999 sample has two Comment fields: libkeynote refuses the assertion (every field
    // at most once), so isakmpd would refuse every proposal with it; so do we.
    let l = Policy::parse(SAMPLE_POLICY);
    assert_eq!(l.policy.len(), 0);
    assert!(
        l.warnings[0].contains("field comment given twice"),
        "{:?}",
        l.warnings
    );
    // With one Comment: a bare password as the licensee, ESP only.
    let one = SAMPLE_POLICY.replacen("Comment: This policy", "Comment-2: x\nX", 1);
    assert_eq!(Policy::parse(&one).policy.len(), 0);
    let fixed = SAMPLE_POLICY.replace(
        "Comment: This policy accepts ESP SAs from a remote that uses the right password\n",
        "",
    );
    let p = load(&fixed);
    let esp = [IPSEC, ("esp_present", "yes")];
    assert_eq!(q(&p, &esp, &["mekmitasdigoat"]), 1);
    assert_eq!(q(&p, &esp, &["passphrase:mekmitasdigoat"]), 0);
    assert_eq!(
        q(&p, &[IPSEC, ("esp_present", "no")], &["mekmitasdigoat"]),
        0
    );
}

const PSK_AES: &str = r#"
KeyNote-Version: 2
Comment: only this passphrase, only AES with PFS
Authorizer: "POLICY"
Licensees: "passphrase:mekmitasdigoat" || "passphrase-md5-hex:00112233"
Conditions: app_domain == "IPsec policy" &&
            esp_present == "yes" &&
            esp_enc_alg == "aes" && pfs == "yes" -> "true";
"#;

#[test]
fn psk_and_aes_restriction() {
    let p = load(PSK_AES);
    let ok = [
        IPSEC,
        ("esp_present", "yes"),
        ("esp_enc_alg", "aes"),
        ("pfs", "yes"),
    ];
    assert_eq!(q(&p, &ok, &["passphrase:mekmitasdigoat"]), 1);
    assert_eq!(q(&p, &ok, &["passphrase-md5-hex:00112233"]), 1);
    assert_eq!(q(&p, &ok, &["passphrase:other"]), 0);
    let des = [
        IPSEC,
        ("esp_present", "yes"),
        ("esp_enc_alg", "3des"),
        ("pfs", "yes"),
    ];
    assert_eq!(q(&p, &des, &["passphrase:mekmitasdigoat"]), 0);
    let nopfs = [
        IPSEC,
        ("esp_present", "yes"),
        ("esp_enc_alg", "aes"),
        ("pfs", "no"),
    ];
    assert_eq!(q(&p, &nopfs, &["passphrase:mekmitasdigoat"]), 0);
}

#[test]
fn isakmpd_policy_5_examples() {
    // isakmpd.policy(5): a nested block, and a policy naming remote IDs.
    let p = load(
        r#"Authorizer: "POLICY"
Licensees: "passphrase:foobar"
Conditions: app_domain == "IPsec policy" && doi == "ipsec" &&
            esp_present == "yes" -> {
                esp_enc_alg != "null" && remote_id_type == "IPv4 address" &&
                remote_id == "192.168.001.001" -> "true";
                esp_enc_alg == "null" -> "false"; };
"#,
    );
    let a = [
        IPSEC,
        ("doi", "ipsec"),
        ("esp_present", "yes"),
        ("esp_enc_alg", "aes"),
        ("remote_id_type", "IPv4 address"),
        ("remote_id", "192.168.001.001"),
    ];
    assert_eq!(q(&p, &a, &["passphrase:foobar"]), 1);
    let mut b = a;
    b[5] = ("remote_id", "192.168.001.002");
    assert_eq!(q(&p, &b, &["passphrase:foobar"]), 0);
    let mut c = a;
    c[3] = ("esp_enc_alg", "null");
    assert_eq!(q(&p, &c, &["passphrase:foobar"]), 0);
}

#[test]
fn rfc2704_delegation_and_k_of() {
    // RFC 2704 §9-style: POLICY delegates to a key, which delegates onwards; 2-of-3.
    let p = load(
        r#"Authorizer: "POLICY"
Local-Constants: ALICE = "key:alice"
Licensees: ALICE
Conditions: app_domain == "IPsec policy";

KeyNote-Version: 2
Authorizer: "key:alice"
Licensees: 2-of("key:bob", "key:carol", "key:dave")
Conditions: esp_enc_alg == "aes" -> "true";
"#,
    );
    let a = [IPSEC, ("esp_enc_alg", "aes")];
    assert_eq!(q(&p, &a, &["key:alice"]), 1);
    assert_eq!(q(&p, &a, &["key:bob"]), 0);
    assert_eq!(q(&p, &a, &["key:bob", "key:dave"]), 1);
    assert_eq!(
        q(
            &p,
            &[IPSEC, ("esp_enc_alg", "des")],
            &["key:bob", "key:dave"]
        ),
        0
    );
    assert_eq!(
        q(
            &p,
            &[("app_domain", "x"), ("esp_enc_alg", "aes")],
            &["key:alice"]
        ),
        0
    );
}

#[test]
fn licensee_and_or_precedence() {
    let p = load("Authorizer: \"POLICY\"\nLicensees: \"a\" || \"b\" && \"c\"\nConditions: true;\n");
    assert_eq!(q(&p, &[], &["a"]), 1);
    assert_eq!(q(&p, &[], &["b"]), 0);
    assert_eq!(q(&p, &[], &["b", "c"]), 1);
    let p = load("Authorizer: \"POLICY\"\nLicensees: (\"a\" || \"b\") && \"c\"\n");
    assert_eq!(q(&p, &[], &["a"]), 0);
    assert_eq!(q(&p, &[], &["a", "c"]), 1);
}

fn cond(c: &str, a: &[(&str, &str)]) -> usize {
    let p = load(&format!("Authorizer: \"POLICY\"\nConditions: {c}\n"));
    q(&p, a, &[])
}

#[test]
fn operators() {
    let a = [
        ("n", "42"),
        ("f", "2.5"),
        ("s", "abc"),
        ("name", "s"),
        ("e", ""),
    ];
    for (c, want) in [
        ("s == \"abc\";", 1),
        ("s != \"abc\";", 0),
        (
            "s < \"abd\" && s > \"abb\" && s <= \"abc\" && s >= \"abc\";",
            1,
        ),
        ("@n == 42 && @n > 41 && @n < 43 && @n >= 42 && @n <= 42;", 1),
        ("@n != 42;", 0),
        ("&f > 2.4 && &f < 2.6;", 1),
        (
            "@n + 8 == 50 && @n - 2 == 40 && @n * 2 == 84 && @n / 5 == 8 && @n % 5 == 2;",
            1,
        ),
        ("2 ^ 3 ^ 2 == 512;", 1),
        ("-@n == 0 - 42;", 1),
        ("1 + 2 * 3 == 7;", 1),
        ("(1 + 2) * 3 == 9;", 1),
        ("&f * 2 == 5.0;", 1),
        ("$name == \"abc\";", 1),
        ("s . \"def\" == \"abcdef\";", 1),
        ("s ~= \"^a.c$\";", 1),
        ("s ~= \"^b\";", 0),
        ("s ~= \"[\";", 0),
        (
            "s ~= \"^(a)(b)?(x)?c$\" && _0 == \"abc\" && _1 == \"a\" && _2 == \"b\" && _3 == \"\";",
            1,
        ),
        ("s ~= \"b\" -> { _0 == \"b\" -> \"true\"; };", 1),
        ("_1 == \"\";", 1),
        ("e == \"\" && undefined == \"\";", 1),
        ("!(s == \"abc\");", 0),
        ("true || false && false;", 1),
        ("(true || false) && false;", 0),
        ("@n / 0 == 1;", 0),
        ("s == 1;", 0),
        (
            "_MAX_TRUST == \"true\" && _MIN_TRUST == \"false\" && _VALUES == \"false,true\";",
            1,
        ),
        ("true -> _MAX_TRUST;", 1),
        ("true -> \"maybe\";", 0),
        ("false -> \"true\"; true -> \"false\";", 0),
        ("false -> \"true\"; true;", 1),
        ("true -> { false -> \"true\"; };", 0),
        ("true -> { true -> { true -> \"true\"; }; };", 1),
        ("@\"  12abc\" == 12 && &\"1.5x\" == 1.5;", 1),
        ("s == \"a\\142c\";", 1),
        ("s == \"ab\\\n      c\";", 1),
    ] {
        assert_eq!(cond(c, &a), want, "{c}");
    }
}

#[test]
fn compliance_values_ordered_as_queried() {
    let p = load(
        "Authorizer: \"POLICY\"\nConditions: a == \"1\" -> \"low\"; b == \"1\" -> \"high\";\n",
    );
    let v = ["none", "low", "mid", "high"];
    let f = attrs(&[("a", "1")]);
    assert_eq!(p.query(&f, &[], &v), 1);
    let f = attrs(&[("a", "1"), ("b", "1")]);
    assert_eq!(p.query(&f, &[], &v), 3);
}

#[test]
fn local_constants_in_conditions() {
    let p = load(
        "Authorizer: \"POLICY\"\nLocal-Constants: WANT = \"aes\"\n  OTHER = \"x\"\nConditions: esp_enc_alg == WANT;\n",
    );
    assert_eq!(q(&p, &[("esp_enc_alg", "aes")], &[]), 1);
}

#[test]
fn malformed_assertions_are_skipped_with_their_line() {
    let text = "Authorizer: \"POLICY\"\nConditions: true\n\n\
                Authorizer: \"POLICY\"\nConditions: a == -> \"true\";\n\n\
                KeyNote-Version: 3\nAuthorizer: \"POLICY\"\n\n\
                Authorizer: \"POLICY\"\nBogus: 1\n\n\
                Licensees: \"a\"\n\n\
                Authorizer: \"POLICY\"\nSignature: \"sig-rsa-sha1-hex:00\"\n\n\
                Authorizer: \"POLICY\"\nLicensees: 4-of(\"a\", \"b\")\n";
    let l = Policy::parse(text);
    assert_eq!(l.policy.len(), 1);
    let w = l.warnings.join("\n");
    for want in [
        "line 5", "line 7", "line 11", "line 13:", "line 16", "signed", "line 19",
    ] {
        assert!(w.contains(want), "{want} in {w}");
    }
}

#[test]
fn cycles_and_depth_terminate() {
    let p = load(
        "Authorizer: \"POLICY\"\nLicensees: \"a\"\n\nAuthorizer: \"a\"\nLicensees: \"b\"\n\nAuthorizer: \"b\"\nLicensees: \"a\"\n",
    );
    assert_eq!(q(&p, &[], &["c"]), 0);
    assert_eq!(q(&p, &[], &["b"]), 1);
    let deep = format!(
        "Authorizer: \"POLICY\"\nConditions: {}true{};\n",
        "(".repeat(200),
        ")".repeat(200)
    );
    let l = Policy::parse(&deep);
    assert_eq!(l.policy.len(), 0);
    assert!(l.warnings[0].contains("deeply"));
}

#[test]
fn long_chains_are_flat_or_refused() {
    let p = load(&format!(
        "Authorizer: \"POLICY\"\nConditions: {}true;\n",
        "false || ".repeat(20_000)
    ));
    assert_eq!(q(&p, &[], &[]), 1);
    let l = Policy::parse(&format!(
        "Authorizer: \"POLICY\"\nConditions: 0{} == 1;\n",
        " + 1".repeat(500)
    ));
    assert_eq!(l.policy.len(), 0);
}

#[test]
fn step_budget_bounds_evaluation() {
    // A long condition with many clauses still ends, within the budget or refused.
    let c = "a == \"x\" || ".repeat(50_000) + "true;";
    let p = Policy::parse(&format!("Authorizer: \"POLICY\"\nConditions: {c}\n")).policy;
    assert!(q(&p, &[], &[]) <= 1);
}

#[test]
fn garbled_and_truncated_inputs_never_panic() {
    let base = format!("{PSK_AES}\n\n{}", SAMPLE_ACCEPT);
    let a = [IPSEC, ("esp_enc_alg", "aes")];
    for end in 0..base.len() {
        if base.is_char_boundary(end) {
            let p = Policy::parse(&base[..end]).policy;
            q(&p, &a, &["passphrase:mekmitasdigoat"]);
        }
    }
    // Byte noise from a fixed generator.
    let mut x: u32 = 12345;
    let alphabet = b"\"\\(){};:->=!&|@$.~^%*/+ \n\t0123456789abcAuthorizerLicenseesConditions-of,";
    for _ in 0..2000 {
        let mut s = String::new();
        for _ in 0..(x % 200) {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            s.push(alphabet[(x >> 16) as usize % alphabet.len()] as char);
        }
        let p = Policy::parse(&format!("Authorizer: \"POLICY\"\nConditions: {s}\n")).policy;
        q(&p, &a, &[]);
        let p = Policy::parse(&format!("Authorizer: \"POLICY\"\nLicensees: {s}\n")).policy;
        q(&p, &a, &[]);
        let p = Policy::parse(&s).policy;
        q(&p, &a, &[]);
    }
}

#[test]
fn warnings_never_show_a_principal() {
    for text in [
        "Authorizer: \"POLICY\"\nLicensees: \"passphrase:topsecret\" \"passphrase:topsecret\"\n",
        "Authorizer: \"POLICY\"\nLicensees: \"passphrase:topsecret\" ||\n",
        "Authorizer: \"passphrase:topsecret\" \"x\"\n",
        "Authorizer: \"POLICY\"\nConditions: \"passphrase:topsecret\" \"x\";\n",
    ] {
        let l = Policy::parse(text);
        assert_eq!(l.policy.len(), 0, "{text}");
        assert!(
            !l.warnings.join("\n").contains("topsecret"),
            "{:?}",
            l.warnings
        );
    }
}

/// An RSA key made by openssl(1): (PEM private key path, PKCS#1 public DER).
fn cli_key(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let pem = dir.join("k.pem");
    let ok = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&pem)
        .arg("1024")
        .output()
        .expect("openssl")
        .status
        .success();
    assert!(ok, "openssl genrsa");
    let out = std::process::Command::new("openssl")
        .args(["rsa", "-RSAPublicKey_out", "-outform", "DER", "-in"])
        .arg(&pem)
        .output()
        .expect("openssl");
    assert!(out.status.success());
    (pem, out.stdout)
}

/// Signs `text` (an assertion ending in `Signature: "ALG`) as libkeynote's
/// `keynote_sign_assertion` does, with openssl(1): PKCS#1 v1.5 (type 1) over the digest
/// of the text and the algorithm name, as a DER OCTET STRING.
fn cli_sign(dir: &std::path::Path, key: &std::path::Path, text: &str, alg: &str) -> String {
    let signed_upto = text.rfind("Signature:").unwrap();
    let mut data = text.as_bytes()[..signed_upto].to_vec();
    data.extend_from_slice(alg.as_bytes());
    let md = if alg.contains("md5") {
        openssl::hash::MessageDigest::md5()
    } else {
        openssl::hash::MessageDigest::sha1()
    };
    let d = openssl::hash::hash(md, &data).unwrap();
    let mut input = vec![0x04, d.len() as u8];
    input.extend_from_slice(&d);
    let inp = dir.join("in.bin");
    std::fs::write(&inp, &input).unwrap();
    let out = std::process::Command::new("openssl")
        .args([
            "pkeyutl",
            "-sign",
            "-pkeyopt",
            "rsa_padding_mode:pkcs1",
            "-inkey",
        ])
        .arg(key)
        .arg("-in")
        .arg(&inp)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if alg.contains("base64") {
        openssl::base64::encode_block(&out.stdout)
    } else {
        out.stdout.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn signed_credentials_are_kept_only_when_their_signature_verifies() {
    let dir = std::env::temp_dir().join(format!("kn-sig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (pem, pkcs1) = cli_key(&dir);
    // The policy names the key in base64 and upper-case hex; the credentials in hex:
    // principals that are keys compare as keys.
    let policy = format!(
        "Authorizer: \"POLICY\"\nLicensees: \"rsa-base64:{}\" || \"RSA-HEX:{}\"\n\
         Conditions: app_domain == \"IPsec policy\";\n\n",
        openssl::base64::encode_block(&pkcs1),
        hexs(&pkcs1).to_uppercase()
    );
    for alg in [
        "sig-rsa-sha1-hex:",
        "sig-rsa-sha1-base64:",
        "sig-rsa-md5-hex:",
        "sig-rsa-md5-base64:",
    ] {
        let body = format!(
            "KeyNote-Version: 2\n# signed with the rest\nAuthorizer: \"rsa-hex:{}\"\n\
             Licensees: \"passphrase:good\"\n\
             Conditions: esp_enc_alg == \"aes\" -> \"true\";\nSignature: \"{alg}",
            hexs(&pkcs1)
        );
        let sig = cli_sign(&dir, &pem, &body, alg);
        let cred = format!("{body}{sig}\"\n");
        let l = Policy::parse(&format!("{policy}{cred}"));
        assert!(l.warnings.is_empty(), "{alg}: {:?}", l.warnings);
        assert_eq!(l.policy.len(), 2, "{alg}");
        let ipsec = [("app_domain", "IPsec policy"), ("esp_enc_alg", "aes")];
        assert_eq!(q(&l.policy, &ipsec, &["passphrase:good"]), 1, "{alg}");
        assert_eq!(q(&l.policy, &ipsec, &["passphrase:bad"]), 0, "{alg}");
        let des = [("app_domain", "IPsec policy"), ("esp_enc_alg", "3des")];
        assert_eq!(q(&l.policy, &des, &["passphrase:good"]), 0, "{alg}");
        // One character of the signed text changed: the credential is refused.
        let forged = cred.replace("\"aes\"", "\"3des\"");
        let l = Policy::parse(&format!("{policy}{forged}"));
        assert_eq!(l.policy.len(), 1, "{alg}");
        assert!(
            l.warnings.iter().any(|w| w.contains("line 10")
                && w.contains("signed assertion refused: the signature does not verify")),
            "{alg}: {:?}",
            l.warnings
        );
        assert_eq!(q(&l.policy, &des, &["passphrase:good"]), 0, "{alg}");
    }
    // Signed by another key than its Authorizer's.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (pem2, _) = cli_key(&other);
    let body = format!(
        "Authorizer: \"rsa-hex:{}\"\nLicensees: \"passphrase:good\"\nSignature: \"sig-rsa-sha1-hex:",
        hexs(&pkcs1)
    );
    let sig = cli_sign(&dir, &pem2, &body, "sig-rsa-sha1-hex:");
    let l = Policy::parse(&format!("{policy}{body}{sig}\"\n"));
    assert_eq!(l.policy.len(), 1);
    assert!(
        l.warnings[0].contains("does not verify"),
        "{:?}",
        l.warnings
    );
    // Unsupported algorithms and non-key Authorizers are named.
    let l = Policy::parse(
        "Authorizer: \"POLICY\"\nSignature: \"sig-dsa-sha1-hex:00\"\n\n\
         Authorizer: \"rsa-hex:00\"\nSignature: \"sig-x509-sha1-base64:AAAA\"\n",
    );
    assert!(l.policy.is_empty());
    assert!(
        l.warnings[0].contains("sig-dsa-sha1-hex is not supported"),
        "{:?}",
        l.warnings
    );
    assert!(l.warnings[1].contains("sig-x509-sha1-base64 is not supported"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn session_assertions_chain_a_ca_key_to_the_peer() {
    // The shape isakmpd's x509_generate_kn gives a peer certificate: the CA's key (and DN)
    // licenses the peer's for the certificate's validity.
    let ca = "rsa-hex:3008020300c0ff020103";
    let peer = "rsa-hex:3008020300beef020103";
    let p = load(&format!(
        "Authorizer: \"POLICY\"\nLicensees: \"{ca}\" || \"DN:/O=Example/CN=CA\"\n\
         Conditions: app_domain == \"IPsec policy\" && esp_enc_alg == \"aes\";\n"
    ));
    let session = Policy::session(&[
        format!(
            "Authorizer: \"{ca}\"\nLicensees: \"{peer}\"\n\
             Conditions: GMTTimeOfDay >= \"20260101000000\" && GMTTimeOfDay <= \"20270101000000\";\n"
        ),
        "Authorizer: \"DN:/O=Example/CN=CA\"\nLicensees: \"DN:/O=Example/CN=peer\"\n\
         Conditions: GMTTimeOfDay >= \"20260101000000\" && GMTTimeOfDay <= \"20270101000000\";\n"
            .to_string(),
    ]);
    assert_eq!(session.len(), 2);
    let at = |t: &'static str, alg: &'static str| {
        [
            ("app_domain", "IPsec policy"),
            ("esp_enc_alg", alg),
            ("GMTTimeOfDay", t),
        ]
    };
    let who = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let run = |a: &[(&str, &str)], w: &[&str]| p.query_with(&attrs(a), &who(w), &TF, &session);
    assert_eq!(run(&at("20261203000000", "aes"), &[peer]), 1);
    assert_eq!(
        run(&at("20261203000000", "aes"), &["DN:/O=Example/CN=peer"]),
        1
    );
    assert_eq!(run(&at("20261203000000", "3des"), &[peer]), 0);
    // Outside the certificate's validity, and without the session's assertions.
    assert_eq!(run(&at("20280101000000", "aes"), &[peer]), 0);
    assert_eq!(q(&p, &at("20261203000000", "aes"), &[peer]), 0);
    assert_eq!(
        run(&at("20261203000000", "aes"), &["DN:/O=Example/CN=other"]),
        0
    );
}

/// A credential: `Authorizer` the key of `pem` (PKCS#1 `by`), licensing `lic`, signed.
fn credential(dir: &std::path::Path, pem: &std::path::Path, by: &[u8], lic: &str) -> String {
    let body = format!(
        "KeyNote-Version: 2\nAuthorizer: \"rsa-hex:{}\"\nLicensees: {lic}\n\
         Conditions: app_domain == \"IPsec policy\" -> \"true\";\n\
         Signature: \"sig-rsa-sha1-hex:",
        hexs(by)
    );
    let sig = cli_sign(dir, pem, &body, "sig-rsa-sha1-hex:");
    format!("{body}{sig}\"\n")
}

/// isakmpd's `keynote_cert_get_key` on a peer's KeyNote CERT payload: the assertions are
/// kept only if each is signed and verifies; the peer's key is the last RSA key the last
/// assertion licenses.
#[test]
fn peer_credentials_give_the_last_licensed_key() {
    let dir = std::env::temp_dir().join(format!("kn-cred-{}", std::process::id()));
    let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
    for d in [&a, &b, &c] {
        std::fs::create_dir_all(d).unwrap();
    }
    let (pa, ka) = cli_key(&a);
    let (pb, kb) = cli_key(&b);
    let (_, kc) = cli_key(&c);
    let first = credential(&dir, &pa, &ka, &format!("\"rsa-hex:{}\"", hexs(&kb)));
    let second = credential(
        &dir,
        &pb,
        &kb,
        &format!(
            "\"DN:/CN=x\" || \"rsa-base64:{}\"",
            openssl::base64::encode_block(&kc)
        ),
    );
    let text = format!("{first}\n{second}");
    // With the NUL keynote_serialize sends.
    let mut wire = text.clone().into_bytes();
    wire.push(0);
    let got = super::peer_credentials(&wire).unwrap();
    assert_eq!(got.key, kc);
    assert_eq!(got.assertions.len(), 2);
    // Each comes back as a session assertion that parses (and verifies) again.
    assert_eq!(Policy::session(&got.assertions).len(), 2);
    let one = super::peer_credentials(first.as_bytes()).unwrap();
    assert_eq!(one.key, kb);

    // Refused: a changed character, an unsigned assertion beside a signed one, no key
    // licensed, no text, not UTF-8.
    let forged = text.replace("IPsec policy", "IPsec polic_");
    let e = super::peer_credentials(forged.as_bytes()).unwrap_err();
    assert!(e.contains("does not verify"), "{e}");
    let unsigned = format!(
        "{first}\nAuthorizer: \"POLICY\"\nLicensees: \"rsa-hex:{}\"\n",
        hexs(&kb)
    );
    let e = super::peer_credentials(unsigned.as_bytes()).unwrap_err();
    assert!(e.contains("line 7 is not signed"), "{e}");
    let no_key = credential(&dir, &pa, &ka, "\"DN:/CN=x\"");
    let e = super::peer_credentials(no_key.as_bytes()).unwrap_err();
    assert!(e.contains("licenses no RSA key"), "{e}");
    assert!(super::peer_credentials(b"").is_err());
    assert!(super::peer_credentials(b"\n\n\n").is_err());
    assert!(super::peer_credentials(&[0xff, 0xfe, b'\n']).is_err());
    for n in 0..text.len() {
        let _ = super::peer_credentials(&text.as_bytes()[..n]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `private_key` file as keynote-keygen writes it (a quoted string continued over
/// lines), bare, and in base64; anything else is refused with a reason.
#[test]
fn private_key_files() {
    let dir = std::env::temp_dir().join(format!("kn-priv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (pem, _) = cli_key(&dir);
    let out = std::process::Command::new("openssl")
        .args(["rsa", "-outform", "DER", "-traditional", "-in"])
        .arg(&pem)
        .output()
        .expect("openssl");
    assert!(out.status.success());
    let der = out.stdout;
    let h = hexs(&der);
    let wrapped: Vec<String> = h
        .as_bytes()
        .chunks(60)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let keygen = format!("\"private-rsa-hex:{}\"\n", wrapped.join("\\\n  "));
    assert_eq!(super::private_key(&keygen).unwrap(), der);
    assert_eq!(
        super::private_key(&format!("PRIVATE-RSA-HEX:{h}\n")).unwrap(),
        der
    );
    let b64 = openssl::base64::encode_block(&der);
    assert_eq!(
        super::private_key(&format!("\"private-rsa-base64:{b64}\"")).unwrap(),
        der
    );
    let e = super::private_key(&format!("\"rsa-hex:{h}\"")).unwrap_err();
    assert!(e.contains("private-"), "{e}");
    let e = super::private_key(&format!("\"private-dsa-hex:{h}\"")).unwrap_err();
    assert!(e.contains("not an RSA key"), "{e}");
    let e = super::private_key("\"private-rsa-hex:0g\"").unwrap_err();
    assert!(e.contains("does not decode"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
