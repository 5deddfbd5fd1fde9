//! Key material for RSA signature authentication (isakmpd's x509.c and the raw public
//! keys of policy.c): our private key, our certificates, the trusted CA certificates and
//! the peers' public keys, read through the privileged parent, which only opens files
//! under /etc/isakmpd (monitor.rs `pki_path`), since the daemon itself runs jailed.

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::Read;

use crate::conf::Conf;
use crate::ike::Credentials;
use crate::log::DebugClass;
use crate::monitor::Client;

/// Reads our private key, our certificates and the CA certificates through the
/// monitor ([X509-certificates] Private-key, Cert-directory, CA-directory; all under
/// /etc/isakmpd), with the peers' raw public keys ([General] Pubkey-directory), for
/// RSA_SIG authentication; `None` (logged) when they do not make credentials.
pub fn load(monitor: &Client, conf: &Conf) -> Option<Credentials> {
    let get = |tag: &str, default: &str| {
        conf.get("X509-certificates", tag)
            .map_or(default.to_string(), |v| v.trim().to_string())
    };
    let key_path = get("Private-key", "/etc/isakmpd/private/local.key");
    let read = |path: &str| -> Result<Vec<u8>, String> {
        let fd = monitor.open_pki(path)?;
        let mut b = Vec::new();
        File::from(fd)
            .read_to_end(&mut b)
            .map_err(|e| format!("{path}: {e}"))?;
        Ok(b)
    };
    let read_dir = |dir: &str| -> Vec<Vec<u8>> {
        let dir = dir.trim_end_matches('/');
        match monitor.list_pki(dir) {
            Ok(names) => names
                .iter()
                .filter_map(|n| match read(&format!("{dir}/{n}")) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        crate::log_warn!("x509: {e}");
                        None
                    }
                })
                .collect(),
            Err(e) => {
                crate::ike_debug!(DebugClass::Crypto, 10, "x509: {e}");
                Vec::new()
            }
        }
    };
    let key = match read(&key_path) {
        Ok(k) => Some(k),
        Err(e) => {
            crate::ike_debug!(DebugClass::Crypto, 10, "x509: no private key: {e}");
            None
        }
    };
    let certs = read_dir(&get("Cert-directory", "/etc/isakmpd/certs/"));
    let cas = read_dir(&get("CA-directory", "/etc/isakmpd/ca/"));
    let pubdir = conf
        .get("General", "Pubkey-directory")
        .map_or("/etc/isakmpd/pubkeys".to_string(), |v| {
            v.trim().trim_end_matches('/').to_string()
        });
    let mut pubkeys = Vec::new();
    for kind in ["ipv4", "ipv6", "fqdn", "ufqdn"] {
        let dir = format!("{pubdir}/{kind}");
        if let Ok(names) = monitor.list_pki(&dir) {
            for n in names {
                match read(&format!("{dir}/{n}")) {
                    Ok(b) => pubkeys.push((kind, n, b)),
                    Err(e) => crate::log_warn!("pubkeys: {e}"),
                }
            }
        }
    }
    // The CRLs, by file name for the log (isakmpd: [X509-certificates] CRL-directory).
    let crl_dir = get("CRL-directory", "/etc/isakmpd/crls/");
    let crl_dir = crl_dir.trim_end_matches('/');
    let mut crls = Vec::new();
    if let Ok(names) = monitor.list_pki(crl_dir) {
        for n in names {
            match read(&format!("{crl_dir}/{n}")) {
                Ok(b) => crls.push((n, b)),
                Err(e) => crate::log_warn!("x509: {e}"),
            }
        }
    }
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
            if key.is_some() || !certs.is_empty() || !cas.is_empty() {
                crate::log_info!(
                    "x509: {} CA certificate(s), our certificate: {}",
                    c.cas.len(),
                    c.cert.as_ref().map_or_else(
                        || "none matching the private key".to_string(),
                        |c| format!("\"{}\"", c.subject())
                    )
                );
            }
            Some(c)
        }
        Err(e) => {
            crate::log_error!("x509: {e}; RSA signature authentication disabled");
            None
        }
    }
}
