//! Test certificates made with the openssl command line: a CA and host certificates
//! whose subjectAltName carries the host's address (as isakmpd matches it against the
//! peer's ID).

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `ca` in `dir` (ca.key, ca.crt).
pub fn ca(dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    run(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "30",
            "-subj",
            &format!("/C=CH/O=isakmpd test/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    dir.join(format!("{name}.crt"))
}

/// A host key and certificate signed by CA `ca`: `<host>.key`, `<host>.crt`.
pub fn host(dir: &Path, ca: &str, host: &str, ip: &str) {
    host_with(dir, ca, host, ip, &["-newkey", "rsa:2048"]);
}

/// As [`host`], with an RSA key of `bits` bits.
#[allow(dead_code)]
pub fn host_rsa(dir: &Path, ca: &str, host: &str, ip: &str, bits: u32) {
    host_with(dir, ca, host, ip, &["-newkey", &format!("rsa:{bits}")]);
}

/// As [`host`], with an ECDSA key on `curve` (P-256, P-384, P-521).
#[allow(dead_code)]
pub fn host_ec(dir: &Path, ca: &str, host: &str, ip: &str, curve: &str) {
    let opt = format!("ec_paramgen_curve:{curve}");
    host_with(dir, ca, host, ip, &["-newkey", "ec", "-pkeyopt", &opt]);
}

fn host_with(dir: &Path, ca: &str, host: &str, ip: &str, newkey: &[&str]) {
    let mut args = vec!["req"];
    args.extend_from_slice(newkey);
    let (key, csr, subj) = (
        format!("{host}.key"),
        format!("{host}.csr"),
        format!("/C=CH/O=isakmpd test/CN={host}"),
    );
    args.extend_from_slice(&["-nodes", "-keyout", &key, "-out", &csr, "-subj", &subj]);
    run(dir, &args);
    std::fs::write(
        dir.join(format!("{host}.ext")),
        format!("subjectAltName=IP:{ip},DNS:{host}\nkeyUsage=digitalSignature\n"),
    )
    .unwrap();
    run(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{host}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "30",
            "-sha256",
            "-extfile",
            &format!("{host}.ext"),
            "-out",
            &format!("{host}.crt"),
        ],
    );
}

/// A bare RSA key pair: `<name>.key` (private, PEM) and `<name>.pub` (public, PEM).
#[allow(dead_code)]
pub fn raw_key(dir: &Path, name: &str) {
    raw_key_with(dir, name, &["RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
}

/// A bare ECDSA P-256 key pair, as [`raw_key`].
#[allow(dead_code)]
pub fn raw_ec_key(dir: &Path, name: &str) {
    raw_key_with(dir, name, &["EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
}

fn raw_key_with(dir: &Path, name: &str, algorithm: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let out = format!("{name}.key");
    let mut args = vec!["genpkey", "-algorithm"];
    args.extend(algorithm);
    args.extend(["-out", &out]);
    run(dir, &args);
    run(
        dir,
        &[
            "pkey",
            "-in",
            &format!("{name}.key"),
            "-pubout",
            "-out",
            &format!("{name}.pub"),
        ],
    );
}

/// A CRL of CA `ca` (`<ca>.crl`, PEM) that revokes the host certificates `revoked`
/// (`<host>.crt`), made with `openssl ca` over a scratch database. The CRL carries an
/// authorityKeyIdentifier (the CA's subjectKeyIdentifier): strongSwan's revocation
/// plugin looks CRLs up by the issuer's key identifier only, and finds none without it
/// (the certificate's status is then "not available", and it is accepted).
#[allow(dead_code)]
pub fn crl(dir: &Path, ca: &str, revoked: &[&str]) -> PathBuf {
    let db = format!("{ca}.index");
    std::fs::write(dir.join(&db), "").unwrap();
    std::fs::write(dir.join(format!("{ca}.crlnumber")), "01\n").unwrap();
    std::fs::write(
        dir.join(format!("{ca}.cnf")),
        format!(
            "[ca]\ndefault_ca=d\n[d]\ndatabase={db}\ncrlnumber={ca}.crlnumber\n\
             default_md=sha256\ndefault_crl_days=30\ncrl_extensions=x\n\
             [x]\nauthorityKeyIdentifier=keyid:always\n"
        ),
    )
    .unwrap();
    let (cnf, key, crt) = (
        format!("{ca}.cnf"),
        format!("{ca}.key"),
        format!("{ca}.crt"),
    );
    for h in revoked {
        let cert = format!("{h}.crt");
        run(
            dir,
            &[
                "ca", "-config", &cnf, "-keyfile", &key, "-cert", &crt, "-revoke", &cert,
            ],
        );
    }
    let out = format!("{ca}.crl");
    run(
        dir,
        &[
            "ca", "-config", &cnf, "-keyfile", &key, "-cert", &crt, "-gencrl", "-out", &out,
        ],
    );
    dir.join(out)
}
