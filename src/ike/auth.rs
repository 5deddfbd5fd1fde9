//! Phase 1 authentication (RFC 2409 §5.1, §5.4): the peer's HASH_I/HASH_R (pre-shared
//! keys) or SIG (RSA signatures, over X.509 certificates or raw public keys), and our
//! credentials for it.
//!
//! [`Authenticated`] is the proof that a check passed: only the functions here construct
//! it, and an ISAKMP SA comes into being only from one (`phase1_done` takes it), so no path
//! through Main or Aggressive Mode can establish an SA without verifying the peer.

use super::crypto::{
    Certificate, Crl, Key, PrivateKey, PublicKey, RsaPrivate, RsaPublic, TrustStore,
};
use super::exchange::{Exchange, P1Choice};
use super::phase1::Cx;
use super::wire::{self, AuthMethod, CertEncoding, NotifyType, Payload, PayloadType};
use super::{Drop, Engine};

/// What a successful check of the peer's authentication yields: its ID payload body and
/// whether it said INITIAL-CONTACT. Cannot be made outside this file.
pub(crate) struct Authenticated {
    pub peer_id: Vec<u8>,
    pub initial_contact: bool,
    _proof: Proof,
}

/// The private part of [`Authenticated`].
struct Proof;

/// The pre-shared-key check: the peer's hash against ours, in constant time.
pub(crate) fn check_hash(
    want: &Key,
    got: &[u8],
    which: &str,
    peer_id: Vec<u8>,
    initial_contact: bool,
) -> Result<Authenticated, Drop> {
    if !same(want.as_bytes(), got) {
        return Err(super::refused(
            NotifyType::INVALID_HASH_INFORMATION,
            "authentication failed: the hash does not verify (pre-shared keys differ?)",
            format_args!("{which}"),
        ));
    }
    Ok(Authenticated {
        peer_id,
        initial_contact,
        _proof: Proof,
    })
}

/// Constant-time comparison for hashes.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Does the certificate name this identity (isakmpd x509.c `x509_check_subjectaltname`)?
fn cert_names_id(c: &Certificate, id: &wire::Identity<'_>) -> bool {
    let n = c.names();
    match id {
        wire::Identity::Ipv4(a) => n.ips.contains(&std::net::IpAddr::V4(*a)),
        wire::Identity::Ipv6(a) => n.ips.contains(&std::net::IpAddr::V6(*a)),
        wire::Identity::Fqdn(f) => n.dns.iter().any(|d| d.as_bytes().eq_ignore_ascii_case(f)),
        wire::Identity::UserFqdn(u) => n
            .emails
            .iter()
            .any(|e| e.as_bytes().eq_ignore_ascii_case(u)),
        wire::Identity::DerAsn1Dn(dn) => n.subject_der == *dn,
        _ => false,
    }
}

/// Our key, certificate and the CAs we trust, for RSA_SIG (read through the monitor from
/// [X509-certificates]'s directories; given directly by tests), and for IKEv2's
/// signatures (iked's /etc/iked/ directories).
#[derive(Default)]
pub struct Credentials {
    /// Our private key when it is RSA (IKEv1's RSA_SIG).
    pub key: Option<RsaPrivate>,
    /// Our private key, of any kind (IKEv2: RSA or ECDSA).
    pub signer: Option<PrivateKey>,
    /// Our certificate: the one that holds our private key.
    pub cert: Option<Certificate>,
    pub cas: Vec<Certificate>,
    pub trust: Option<TrustStore>,
    /// Raw public keys of peers, from the pubkeys/ directory: (kind, name, key) where kind
    /// is the subdirectory (ipv4, ipv6, fqdn, ufqdn) and name the file, i.e. the peer's ID.
    pub pubkeys: Vec<(String, String, PublicKey)>,
}

impl Credentials {
    /// Adds the certificate revocation lists of the crls/ directory (name, PEM or DER):
    /// a peer certificate one of them lists is refused. Returns a warning for each that
    /// does not parse, or that no CA here signed (it is not used).
    pub fn add_crls(&mut self, crls: &[(String, Vec<u8>)]) -> Vec<String> {
        let mut warn = Vec::new();
        let mut parsed = Vec::new();
        for (n, b) in crls {
            match Crl::parse(n, b) {
                Ok(c) => parsed.push(c),
                Err(e) => warn.push(format!("x509: CRL {n}: {e}")),
            }
        }
        if parsed.is_empty() {
            return warn;
        }
        let names: Vec<String> = parsed.iter().map(|c| c.name.clone()).collect();
        match TrustStore::with_crls(&self.cas, parsed) {
            Ok(t) => {
                for n in names.iter().filter(|n| !t.crls().any(|u| u == n.as_str())) {
                    warn.push(format!("x509: CRL {n}: signed by no CA here, not used"));
                }
                self.trust = Some(t);
            }
            Err(e) => warn.push(format!("x509: CA store: {e}")),
        }
        warn
    }

    /// Adds the raw public key in `pem` for the ID `name` of kind `kind` (isakmpd(8):
    /// /etc/isakmpd/pubkeys/{ipv4,ipv6,fqdn,ufqdn}/<ID>).
    pub fn add_pubkey(&mut self, kind: &str, name: &str, pem: &[u8]) -> Result<(), String> {
        let k = PublicKey::from_pem(pem).map_err(|e| format!("pubkeys/{kind}/{name}: {e}"))?;
        self.pubkeys.push((kind.to_string(), name.to_string(), k));
        Ok(())
    }

    /// The raw public key for an ID payload's type and data, if pubkeys/ has one.
    pub fn pubkey_by_id(&self, ty: u8, data: &[u8]) -> Option<&PublicKey> {
        let (kind, name) = match ty {
            1 => (
                "ipv4",
                std::net::Ipv4Addr::from(<[u8; 4]>::try_from(data).ok()?).to_string(),
            ),
            5 => (
                "ipv6",
                std::net::Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?).to_string(),
            ),
            2 => ("fqdn", String::from_utf8_lossy(data).into_owned()),
            3 => ("ufqdn", String::from_utf8_lossy(data).into_owned()),
            _ => return None,
        };
        self.pubkeys
            .iter()
            .find(|(k, n, _)| k == kind && n.eq_ignore_ascii_case(&name))
            .map(|(_, _, key)| key)
    }

    /// The raw RSA public key for a peer's ID, if pubkeys/ has one.
    fn pubkey_for(&self, id: &wire::Identity<'_>) -> Option<RsaPublic> {
        let (kind, name) = match id {
            wire::Identity::Ipv4(a) => ("ipv4", a.to_string()),
            wire::Identity::Ipv6(a) => ("ipv6", a.to_string()),
            wire::Identity::Fqdn(f) => ("fqdn", String::from_utf8_lossy(f).into_owned()),
            wire::Identity::UserFqdn(u) => ("ufqdn", String::from_utf8_lossy(u).into_owned()),
            _ => return None,
        };
        self.pubkeys
            .iter()
            .find(|(k, n, _)| k == kind && n.eq_ignore_ascii_case(&name))
            .and_then(|(_, _, key)| key.rsa())
    }

    /// From PEM/DER blobs: the private key, our certificates (the one holding the key is
    /// ours) and the CA certificates.
    pub fn load(
        key: Option<&[u8]>,
        certs: &[Vec<u8>],
        cas: &[Vec<u8>],
    ) -> Result<Credentials, String> {
        let signer = match key {
            Some(k) => Some(PrivateKey::from_pem(k).map_err(|e| format!("private key: {e}"))?),
            None => None,
        };
        let key = signer.as_ref().and_then(|k| k.rsa());
        let certs: Vec<Certificate> = certs
            .iter()
            .filter_map(|c| Certificate::parse(c).ok())
            .collect();
        let cert = signer
            .as_ref()
            .and_then(|k| certs.iter().find(|c| c.holds(k)).cloned());
        let cas: Vec<Certificate> = cas
            .iter()
            .filter_map(|c| Certificate::parse(c).ok())
            .collect();
        let trust = if cas.is_empty() {
            None
        } else {
            Some(TrustStore::new(&cas).map_err(|e| format!("CA store: {e}"))?)
        };
        Ok(Credentials {
            key,
            signer,
            cert,
            cas,
            trust,
            pubkeys: Vec::new(),
        })
    }

    /// RSA_SIG can be offered and accepted.
    pub fn usable(&self) -> bool {
        // Without a certificate of ours the peer needs our public key (pubkeys/).
        self.key.is_some()
    }

    /// The CA names for CERT_REQ payloads (one empty request when we have no CAs).
    pub fn cert_requests(&self) -> Vec<Vec<u8>> {
        let v: Vec<Vec<u8>> = self.cas.iter().map(|c| c.names().subject_der).collect();
        if v.is_empty() {
            vec![Vec::new()]
        } else {
            v
        }
    }
}

/// Main Mode message 5 or 6: decrypts it and checks the peer's HASH or SIG against
/// exchange `x` (transform `c`); the proof carries the peer's ID body and whether it
/// said INITIAL-CONTACT.
pub(crate) fn verify_auth_message(
    x: &mut Exchange,
    cx: &mut Cx<'_>,
    c: P1Choice,
    data: &[u8],
) -> Result<Authenticated, Drop> {
    let creds = cx.creds;
    let mut buf = data.to_vec();
    if buf[19] & wire::FLAG_ENCRYPTION == 0 {
        return Err(Drop::Notify(
            NotifyType::INVALID_FLAGS,
            "cleartext where encryption is required",
        ));
    }
    let next_iv = Engine::decrypt(c.cipher, x.ka.as_bytes(), &x.iv, &mut buf)?;
    let m = Engine::parse(&buf, true).map_err(|_| {
        Drop::Silent("message does not decrypt to a valid message (wrong pre-shared key?)")
    })?;
    let auth = if c.auth == AuthMethod::RSA_SIG {
        super::script::Auth::Sig
    } else {
        super::script::Auth::Hash
    };
    let n = if x.initiator { 6 } else { 5 };
    super::script::check_auth(super::exchange::Kind::Main, n, auth, &m)?;
    // It decrypted to a well-formed message: the CBC chain moves on even if what it
    // says does not authenticate (a DELETE may follow under these keys).
    x.iv = next_iv.clone();
    let Some(Payload::Id(id)) = m.find(PayloadType::ID) else {
        return Err(Drop::Notify(NotifyType::PAYLOAD_MALFORMED, "no ID payload"));
    };
    let idb = id.body();
    let want = if x.initiator {
        x.auth_hash(false, &idb)
    } else {
        x.auth_hash(true, &idb)
    };
    let which = if x.initiator { "HASH_R" } else { "HASH_I" };
    if c.auth == AuthMethod::RSA_SIG {
        // The peer's certificate: it must chain to one of our CAs, name the peer's ID
        // in its subjectAltName (or subject, for a DN), and its key must verify SIG.
        let Some(Payload::Sig(sig)) = m.find(PayloadType::SIG) else {
            return Err(Drop::Notify(
                NotifyType::PAYLOAD_MALFORMED,
                "no SIG payload",
            ));
        };
        let certs: Vec<Certificate> = m
            .payloads
            .iter()
            .filter_map(|p| match p.payload {
                Payload::Cert { encoding, data } if encoding == CertEncoding::X509_SIG => {
                    Certificate::parse(data).ok()
                }
                _ => None,
            })
            .collect();
        let identity = id
            .identity()
            .map_err(|e| Drop::Notify(e.notify, e.reason))?;
        if certs.is_empty() && creds.pubkey_for(&identity).is_some() {
            // No certificate: the peer's raw public key from pubkeys/, by its ID.
            let key = creds.pubkey_for(&identity).ok_or(Drop::Silent("gone"))?;
            let key = &key;
            key.verify_raw(want.as_bytes(), sig).map_err(|_| {
                super::refused(
                    NotifyType::INVALID_SIGNATURE,
                    "authentication failed: the signature does not verify",
                    format_args!("signature over {which}, public key of {identity}"),
                )
            })?;
            crate::log_info!(
                "peer {} authenticated by its public key for {identity}",
                x.remote
            );
        } else {
            let cert = certs
                .iter()
                .find(|c| cert_names_id(c, &identity))
                .ok_or_else(|| {
                    super::refused(
                        NotifyType::INVALID_ID_INFORMATION,
                        "authentication failed: no certificate from the peer names its ID",
                        format_args!(
                            "ID {identity}{}",
                            if certs.is_empty() {
                                " (it sent none)"
                            } else {
                                ""
                            }
                        ),
                    )
                })?;
            let trust = creds.trust.as_ref().ok_or(Drop::Notify(
                NotifyType::INVALID_CERTIFICATE,
                "authentication failed: no CA certificates configured",
            ))?;
            let others: Vec<Certificate> = certs
                .iter()
                .filter(|c| !std::ptr::eq(*c, cert))
                .cloned()
                .collect();
            trust.verify(cert, &others).map_err(|e| {
                super::refused(
                    NotifyType::INVALID_CERTIFICATE,
                    "authentication failed: certificate not trusted",
                    format_args!("\"{}\": {e}", cert.subject()),
                )
            })?;
            let key = cert.public_key().map_err(|e| {
                super::refused(
                    NotifyType::INVALID_CERTIFICATE,
                    "certificate key unusable",
                    format_args!("{e}"),
                )
            })?;
            key.verify_raw(want.as_bytes(), sig).map_err(|_| {
                super::refused(
                    NotifyType::INVALID_SIGNATURE,
                    "authentication failed: the signature does not verify",
                    format_args!("signature over {which}"),
                )
            })?;
            crate::log_info!(
                "peer {} authenticated by certificate \"{}\"",
                x.remote,
                cert.subject()
            );
        }
    } else {
        let Some(Payload::Hash(hash)) = m.find(PayloadType::HASH) else {
            return Err(Drop::Notify(
                NotifyType::PAYLOAD_MALFORMED,
                "no HASH payload",
            ));
        };
        if !same(want.as_bytes(), hash) {
            return Err(super::refused(
                NotifyType::INVALID_HASH_INFORMATION,
                "authentication failed: the hash does not verify (pre-shared keys differ?)",
                format_args!("{which}"),
            ));
        }
    }
    let ic = m
        .payloads
        .iter()
        .any(|p| matches!(p.payload, Payload::Notify(n) if n.ty == NotifyType::INITIAL_CONTACT));
    let (local, remote) = (x.local, x.remote);
    cx.io.capture(remote, local, &buf);
    Ok(Authenticated {
        peer_id: idb,
        initial_contact: ic,
        _proof: Proof,
    })
}
