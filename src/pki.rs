//! Key material for signature authentication: our private key, our certificates, the
//! trusted CA certificates, the CRLs, the peers' raw public keys and (isakmpd) our KeyNote
//! credentials, read through the
//! privileged parent, which only opens regular files under the personality's root
//! (monitor.rs `pki_path`: /etc/isakmpd, or /etc/iked for iked), since the daemon itself
//! runs jailed. isakmpd takes the paths from isakmpd.conf (x509.c and the raw public keys
//! of policy.c); iked(8) has them fixed (its FILES).

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::Read;

use crate::conf::Conf;
use crate::ike::crypto::KeyKind;
use crate::ike::Credentials;
use crate::log::DebugClass;
use crate::monitor::Client;

/// Where the key material is: our private key, and the directories of our certificates
/// (the one holding the key's public half is ours), of the CAs, of the CRLs, and of the
/// peers' raw public keys (with the subdirectories ipv4, ipv6, fqdn and ufqdn, each file
/// named by the peer's ID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub key: String,
    pub certs: String,
    pub cas: String,
    pub crls: String,
    pub pubkeys: String,
    /// isakmpd's `[KeyNote] Credential-directory`: a directory for each local ID with
    /// `private_key` and `credentials` (iked has none).
    pub keynote: Option<String>,
}

impl Paths {
    /// isakmpd's: [X509-certificates] Private-key, Cert-directory, CA-directory,
    /// CRL-directory and [General] Pubkey-directory, by default under /etc/isakmpd.
    pub fn isakmpd(conf: &Conf) -> Paths {
        let get = |section: &str, tag: &str, default: &str| {
            conf.get(section, tag)
                .map_or(default.to_string(), |v| v.trim().to_string())
        };
        let x509 = |tag: &str, default: &str| get("X509-certificates", tag, default);
        Paths {
            key: x509("Private-key", "/etc/isakmpd/private/local.key"),
            certs: x509("Cert-directory", "/etc/isakmpd/certs/"),
            cas: x509("CA-directory", "/etc/isakmpd/ca/"),
            crls: x509("CRL-directory", "/etc/isakmpd/crls/"),
            pubkeys: get("General", "Pubkey-directory", "/etc/isakmpd/pubkeys"),
            keynote: Some(get(
                "KeyNote",
                "Credential-directory",
                "/etc/isakmpd/keynote/",
            )),
        }
    }

    /// iked(8)'s FILES: /etc/iked/private/local.key, certs/, ca/, crls/, pubkeys/.
    pub fn iked() -> Paths {
        Paths {
            key: "/etc/iked/private/local.key".into(),
            certs: "/etc/iked/certs/".into(),
            cas: "/etc/iked/ca/".into(),
            crls: "/etc/iked/crls/".into(),
            pubkeys: "/etc/iked/pubkeys/".into(),
            keynote: None,
        }
    }
}

/// How a key kind is named in logs (and ikectl's `show certstore`).
pub fn key_kind_name(k: KeyKind) -> &'static str {
    match k {
        KeyKind::Rsa => "RSA",
        KeyKind::EcP256 => "ECDSA P-256",
        KeyKind::EcP384 => "ECDSA P-384",
        KeyKind::EcP521 => "ECDSA P-521",
        KeyKind::Other => "neither RSA nor ECDSA",
    }
}

/// isakmpd: the key material at the paths isakmpd.conf gives ([`Paths::isakmpd`]).
pub fn load(monitor: &Client, conf: &Conf) -> Option<Credentials> {
    load_from(monitor, &Paths::isakmpd(conf))
}

/// Reads our private key, our certificates, the CA certificates, the CRLs and the peers'
/// raw public keys at `paths` through the monitor, and logs what was read (names and
/// subjects, never key material); `None` (logged) when they do not make credentials.
/// A missing file or directory is no error: there is simply nothing of that kind.
pub fn load_from(monitor: &Client, paths: &Paths) -> Option<Credentials> {
    let read = |path: &str| -> Result<Vec<u8>, String> {
        let fd = monitor.open_pki(path)?;
        let mut b = Vec::new();
        File::from(fd)
            .read_to_end(&mut b)
            .map_err(|e| format!("{path}: {e}"))?;
        Ok(b)
    };
    // The files of a directory, by name.
    let read_dir = |dir: &str, what: &str| -> Vec<(String, Vec<u8>)> {
        let dir = dir.trim_end_matches('/');
        match monitor.list_pki(dir) {
            Ok(names) => names
                .into_iter()
                .filter_map(|n| match read(&format!("{dir}/{n}")) {
                    Ok(b) => Some((n, b)),
                    Err(e) => {
                        crate::log_warn!("{what}: {e}");
                        None
                    }
                })
                .collect(),
            Err(e) => {
                crate::ike_debug!(DebugClass::Crypto, 10, "{what}: {e}");
                Vec::new()
            }
        }
    };
    let key = match read(&paths.key) {
        Ok(k) => Some(k),
        Err(e) => {
            crate::ike_debug!(DebugClass::Crypto, 10, "x509: no private key: {e}");
            None
        }
    };
    let blobs =
        |v: Vec<(String, Vec<u8>)>| -> Vec<Vec<u8>> { v.into_iter().map(|(_, b)| b).collect() };
    let certs = blobs(read_dir(&paths.certs, "x509"));
    let cas = blobs(read_dir(&paths.cas, "x509"));
    let pubdir = paths.pubkeys.trim_end_matches('/');
    let mut pubkeys = Vec::new();
    for kind in ["ipv4", "ipv6", "fqdn", "ufqdn"] {
        let dir = format!("{pubdir}/{kind}");
        for (n, b) in read_dir(&dir, "pubkeys") {
            pubkeys.push((kind, n, b));
        }
    }
    // The CRLs, by file name for the log.
    let crls = read_dir(&paths.crls, "x509");
    match Credentials::load(key.as_deref(), &certs, &cas) {
        Ok(mut c) => {
            for w in c.add_crls(&crls) {
                crate::log_warn!("{w}");
            }
            if let Some(t) = c.trust.as_ref() {
                let used: Vec<&str> = t.crls().collect();
                if !used.is_empty() {
                    crate::log_info!("x509: CRL(s) in force: {}", used.join(", "));
                }
            }
            for (kind, n, b) in &pubkeys {
                if let Err(e) = c.add_pubkey(kind, n, b) {
                    crate::log_warn!("{e}");
                }
            }
            if !pubkeys.is_empty() {
                crate::log_info!("pubkeys: {} raw public key(s) of peers", c.pubkeys.len());
            }
            if let Some(dir) = &paths.keynote {
                c.keynote = keynote_dirs(monitor, dir, &read);
                c.keynote_check = Some(crate::keynote::peer_credentials);
            }
            if key.is_some() || !certs.is_empty() || !cas.is_empty() {
                crate::log_info!(
                    "x509: {} CA certificate(s), our certificate: {}; private key: {}",
                    c.cas.len(),
                    c.cert.as_ref().map_or_else(
                        || "none matching the private key".to_string(),
                        |c| format!("\"{}\"", c.subject())
                    ),
                    c.signer
                        .as_ref()
                        .map_or("none", |k| key_kind_name(k.kind()))
                );
            }
            Some(c)
        }
        Err(e) => {
            crate::log_error!("x509: {e}; signature authentication disabled");
            None
        }
    }
}

/// The KeyNote directories under `dir`, one for each local ID (ike_auth.c
/// `ike_auth_get_key`, policy.c `keynote_cert_obtain`): `private_key`, a KeyNote private
/// RSA key, and `credentials`, signed assertions to send. A file that is missing is no
/// error; one that does not decode is left out, logged.
fn keynote_dirs(
    monitor: &Client,
    dir: &str,
    read: &dyn Fn(&str) -> Result<Vec<u8>, String>,
) -> Vec<crate::ike::auth::LocalKeynote> {
    let dir = dir.trim_end_matches('/');
    let ids = match monitor.list_pki_dirs(dir) {
        Ok(ids) => ids,
        Err(e) => {
            crate::ike_debug!(DebugClass::Crypto, 10, "keynote: {e}");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for id in ids {
        let file = |name: &str| read(&format!("{dir}/{id}/{name}")).ok();
        let key = file("private_key").and_then(|b| {
            let der = crate::keynote::private_key(&String::from_utf8_lossy(&b));
            let key = der.and_then(|d| {
                crate::ike::crypto::PrivateKey::from_pem(&d)
                    .ok()
                    .and_then(|k| k.rsa())
                    .ok_or_else(|| "not an RSA private key".to_string())
            });
            key.map_err(|e| crate::log_warn!("keynote: {dir}/{id}/private_key: {e}"))
                .ok()
        });
        let credentials = file("credentials");
        if key.is_none() && credentials.is_none() {
            continue;
        }
        crate::log_info!(
            "keynote: local ID {id}: private key: {}, credentials: {}",
            if key.is_some() { "RSA" } else { "none" },
            credentials
                .as_ref()
                .map_or_else(|| "none".to_string(), |c| format!("{} bytes", c.len()))
        );
        out.push(crate::ike::auth::LocalKeynote {
            id,
            key,
            credentials,
        });
    }
    out
}
