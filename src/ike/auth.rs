//! Phase 1 authentication (RFC 2409 §5.1, §5.4): the peer's HASH_I/HASH_R (pre-shared
//! keys) or SIG (RSA signatures, over X.509 certificates, KeyNote credentials or raw
//! public keys), and our credentials for it.
//!
//! [`Authenticated`] is the proof that a check passed: only the functions here construct
//! it, and an ISAKMP SA comes into being only from one (`phase1_done` takes it), so no path
//! through Main or Aggressive Mode can establish an SA without verifying the peer.

use super::crypto::{
    Certificate, Crl, Key, PrivateKey, PublicKey, RsaPrivate, RsaPublic, TrustStore,
};
use super::exchange::{Exchange, P1Choice};
use super::phase1::Cx;
use super::policy::{KeynoteCheck, PeerCredentials};
use super::wire::{self, AuthMethod, CertEncoding, NotifyType, Payload, PayloadType};
use super::{Drop, Engine};

/// What a successful check of the peer's authentication yields: its ID payload body,
/// whether it said INITIAL-CONTACT and, for a signature, what KeyNote learns of its key
/// and certificates. Cannot be made outside this file.
pub(crate) struct Authenticated {
    pub peer_id: Vec<u8>,
    pub initial_contact: bool,
    pub peer_creds: Option<Box<PeerCredentials>>,
    _proof: Proof,
}

/// The private part of [`Authenticated`].
struct Proof;

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
    /// Ours under `[KeyNote] Credential-directory`, one for each local ID that has a
    /// directory there (isakmpd signs with them when it has no X.509 certificate).
    pub keynote: Vec<LocalKeynote>,
    /// Checks a peer's KeyNote CERT payload; without it such a payload is refused.
    pub keynote_check: Option<KeynoteCheck>,
}

/// The KeyNote directory of one of our IDs (ike_auth.c `ike_auth_get_key`, policy.c
/// `keynote_cert_obtain`): `<Credential-directory>/<ID>/private_key` and `credentials`,
/// where the ID is written as [`id_name`] writes it.
pub struct LocalKeynote {
    pub id: String,
    pub key: Option<RsaPrivate>,
    /// Signed assertions, sent as they are in a CERT payload of the KEYNOTE encoding.
    pub credentials: Option<Vec<u8>>,
}

/// How isakmpd names an ID (of an ID payload's type and data) in file names: the
/// pubkeys/ subdirectory and the name, an address as text or an FQDN or user FQDN as it
/// is (ike_auth.c `get_raw_key_from_file`, policy.c `keynote_cert_obtain`); other ID
/// types have none.
pub fn id_name(ty: u8, data: &[u8]) -> Option<(&'static str, String)> {
    Some(match ty {
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
    })
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
        let (kind, name) = id_name(ty, data)?;
        self.pubkeys
            .iter()
            .find(|(k, n, _)| k == kind && n.eq_ignore_ascii_case(&name))
            .map(|(_, _, key)| key)
    }

    /// Our KeyNote directory for our ID payload body `id`, if there is one.
    fn keynote_for(&self, id: &[u8]) -> Option<&LocalKeynote> {
        let (_, name) = id_name(*id.first()?, id.get(4..)?)?;
        self.keynote.iter().find(|k| k.id == name)
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
            keynote: Vec::new(),
            keynote_check: None,
        })
    }

    /// RSA_SIG can be offered and accepted.
    pub fn usable(&self) -> bool {
        // Without a certificate of ours the peer needs our public key (pubkeys/) or
        // our KeyNote credentials.
        self.key.is_some() || self.keynote.iter().any(|k| k.key.is_some())
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
    let n = if x.initiator { 6 } else { 5 };
    super::script::check_auth(super::exchange::Kind::Main, n, script_auth(c), &m)?;
    // It decrypted to a well-formed message: the CBC chain moves on even if what it
    // says does not authenticate (a DELETE may follow under these keys).
    x.iv = next_iv;
    let Some(Payload::Id(id)) = m.find(PayloadType::ID) else {
        return Err(Drop::Notify(NotifyType::PAYLOAD_MALFORMED, "no ID payload"));
    };
    let ic = m
        .payloads
        .iter()
        .any(|p| matches!(p.payload, Payload::Notify(n) if n.ty == NotifyType::INITIAL_CONTACT));
    let auth = check_peer(x, cx.creds, c, &m, id.body(), ic)?;
    let (local, remote) = (x.local, x.remote);
    cx.io.capture(remote, local, &buf);
    Ok(auth)
}

/// The payloads a phase 1 authentication message carries under transform `c`.
pub(crate) fn script_auth(c: P1Choice) -> super::script::Auth {
    if c.auth == AuthMethod::RSA_SIG {
        super::script::Auth::Sig
    } else {
        super::script::Auth::Hash
    }
}

/// The peer's authentication in message `m` of exchange `x` (transform `c`), over its ID
/// payload body `idb` (Main Mode messages 5 and 6, Aggressive Mode messages 2 and 3):
/// HASH_I/HASH_R for pre-shared keys; for RSA_SIG the SIG, by the key of a certificate
/// the peer sent (it must chain to one of our CAs, pass our CRLs and name the peer's ID
/// in its subjectAltName, or subject for a DN), else by its raw public key from
/// pubkeys/.
pub(crate) fn check_peer(
    x: &Exchange,
    creds: &Credentials,
    c: P1Choice,
    m: &wire::Message<'_>,
    idb: Vec<u8>,
    initial_contact: bool,
) -> Result<Authenticated, Drop> {
    let want = x.auth_hash(!x.initiator, &idb);
    let which = if x.initiator { "HASH_R" } else { "HASH_I" };
    let from = x.remote;
    if c.auth != AuthMethod::RSA_SIG {
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
                format_args!("{which} from {from}"),
            ));
        }
        return Ok(Authenticated {
            peer_id: idb,
            initial_contact,
            peer_creds: None,
            _proof: Proof,
        });
    }
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
    let id = wire::IdPayload::parse(&idb).map_err(|e| Drop::Notify(e.notify, e.reason))?;
    let identity = id
        .identity()
        .map_err(|e| Drop::Notify(e.notify, e.reason))?;
    // Without X.509 certificates: KeyNote credentials, else the raw key of pubkeys/.
    let keynote = m.payloads.iter().find_map(|p| match p.payload {
        Payload::Cert { encoding, data }
            if certs.is_empty() && encoding == CertEncoding::KEYNOTE =>
        {
            Some(data)
        }
        _ => None,
    });
    let raw = if certs.is_empty() && keynote.is_none() {
        idb.get(4..)
            .and_then(|d| creds.pubkey_by_id(idb[0], d))
            .and_then(|k| k.rsa())
    } else {
        None
    };
    let mut creds_kn = PeerCredentials::default();
    let bad_sig = |whose: std::fmt::Arguments<'_>| {
        super::refused(
            NotifyType::INVALID_SIGNATURE,
            "authentication failed: the signature does not verify",
            format_args!("signature over {which} from {from}{whose}"),
        )
    };
    if let Some(data) = keynote {
        let (kn, key) = keynote_peer(creds, data, from)?;
        key.verify_raw(want.as_bytes(), sig)
            .map_err(|_| bad_sig(format_args!(", key of its KeyNote credentials")))?;
        crate::log_info!(
            "peer {from} authenticated by its KeyNote credentials ({} assertion(s))",
            kn.assertions.len()
        );
        // isakmpd's exchange->keynote_key: the authorizer check_policy adds.
        creds_kn.principals.push(rsa_hex(&kn.key));
        creds_kn.assertions = kn.assertions;
    } else if let Some(key) = raw {
        // No certificate: the peer's raw public key from pubkeys/, by its ID.
        key.verify_raw(want.as_bytes(), sig)
            .map_err(|_| bad_sig(format_args!(", public key of {identity}")))?;
        crate::log_info!("peer {from} authenticated by its public key for {identity}");
        creds_kn.principals.extend(key.pkcs1().map(|k| rsa_hex(&k)));
    } else {
        let cert = certs
            .iter()
            .find(|c| cert_names_id(c, &identity))
            .ok_or_else(|| {
                super::refused(
                    NotifyType::INVALID_ID_INFORMATION,
                    "authentication failed: no certificate from the peer names its ID",
                    format_args!(
                        "{from}: ID {identity}{}",
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
        let path = trust.verify(cert, &others).map_err(|e| {
            super::refused(
                NotifyType::INVALID_CERTIFICATE,
                "authentication failed: certificate not trusted",
                format_args!("{from}: \"{}\": {e}", cert.subject()),
            )
        })?;
        let key = cert.public_key().map_err(|e| {
            super::refused(
                NotifyType::INVALID_CERTIFICATE,
                "certificate key unusable",
                format_args!("{from}: {e}"),
            )
        })?;
        key.verify_raw(want.as_bytes(), sig)
            .map_err(|_| bad_sig(format_args!("")))?;
        crate::log_info!(
            "peer {from} authenticated by certificate \"{}\"",
            cert.subject()
        );
        creds_kn = keynote_credentials(&path);
    }
    Ok(Authenticated {
        peer_id: idb,
        initial_contact,
        peer_creds: Some(Box::new(creds_kn)),
        _proof: Proof,
    })
}

/// A peer's KeyNote CERT payload checked (policy.c `keynote_cert_validate` and
/// `keynote_cert_get_key`, which ike_auth.c `rsa_sig_decode_hash` calls): its signed
/// assertions and the key that must have made the SIG.
fn keynote_peer(
    creds: &Credentials,
    data: &[u8],
    from: std::net::SocketAddr,
) -> Result<(super::policy::KeynoteCert, RsaPublic), Drop> {
    let check = creds.keynote_check.ok_or_else(|| {
        super::refused(
            NotifyType::CERT_TYPE_UNSUPPORTED,
            "authentication failed: KeyNote credentials are not supported here",
            format_args!("{from}"),
        )
    })?;
    let refused = |e: &str| {
        super::refused(
            NotifyType::INVALID_CERTIFICATE,
            "authentication failed: KeyNote credentials refused",
            format_args!("{from}: {e}"),
        )
    };
    let kn = check(data).map_err(|e| refused(&e))?;
    let key = PublicKey::from_rsa_pkcs1_der(&kn.key)
        .ok()
        .and_then(|k| k.rsa())
        .ok_or_else(|| refused("the licensee's RSA key is unusable"))?;
    Ok((kn, key))
}

/// KeyNote's `rsa-hex:` principal of a PKCS#1 RSA public key (libkeynote `kn_encode_key`).
fn rsa_hex(pkcs1: &[u8]) -> String {
    format!("rsa-hex:{}", super::sa::hex(pkcs1))
}

/// What KeyNote learns from a verified certificate path, leaf first (ike_quick_mode.c
/// `check_policy`, x509.c `x509_generate_kn`): the leaf's `rsa-hex:` key and `DN:` subject
/// as principals, and for each certificate of the path that its issuer signed (not a
/// self-signed root) the two assertions isakmpd makes, issuer to subject by key and by DN,
/// for the certificate's validity. isakmpd makes them for the leaf only, with its issuer
/// from the CA directory; one per link lets a policy name a root above intermediates.
fn keynote_credentials(path: &[Certificate]) -> PeerCredentials {
    let mut out = PeerCredentials::default();
    if let Some(leaf) = path.first() {
        out.principals.extend(leaf.rsa_pkcs1().map(|k| rsa_hex(&k)));
        out.principals
            .extend(leaf.subject_issuer().map(|(s, _)| format!("DN:{s}")));
    }
    for pair in path.windows(2) {
        let (cert, issuer) = (&pair[0], &pair[1]);
        let (Some((subject, issuer_dn)), Some((not_before, not_after))) =
            (cert.subject_issuer(), cert.validity())
        else {
            continue;
        };
        if subject == issuer_dn {
            continue;
        }
        let when = format!(
            "Conditions: GMTTimeOfDay >= \"{}\" && GMTTimeOfDay <= \"{}\";\n",
            super::policy_attrs::time_of_day(not_before),
            super::policy_attrs::time_of_day(not_after)
        );
        if let (Some(ik), Some(sk)) = (issuer.rsa_pkcs1(), cert.rsa_pkcs1()) {
            out.assertions.push(format!(
                "Authorizer: \"{}\"\nLicensees: \"{}\"\n{when}",
                rsa_hex(&ik),
                rsa_hex(&sk)
            ));
        }
        out.assertions.push(format!(
            "Authorizer: \"DN:{issuer_dn}\"\nLicensees: \"DN:{subject}\"\n{when}"
        ));
    }
    out
}

/// Our side of a phase 1 authentication: HASH_I/HASH_R, or for RSA_SIG the hash signed
/// (PKCS#1) and our certificate or KeyNote credentials with their encoding, if we have
/// either (else the peer knows our public key).
pub(crate) enum OurAuth {
    Hash(Key),
    Sig {
        sig: Vec<u8>,
        cert: Option<(CertEncoding, Vec<u8>)>,
    },
}

impl OurAuth {
    /// Ours in exchange `x` (transform `c`) over our ID payload body `id`. With an X.509
    /// certificate of ours: its key and the certificate. Without one, the KeyNote
    /// directory of our ID, if there is one, gives the key (else the X.509 private key
    /// signs) and the credentials to send (ike_auth.c `rsa_sig_encode_hash`, which tries
    /// KeyNote first).
    pub(crate) fn new(
        x: &Exchange,
        creds: &Credentials,
        c: P1Choice,
        id: &[u8],
    ) -> Result<OurAuth, Drop> {
        let hash = x.auth_hash(x.initiator, id);
        if c.auth != AuthMethod::RSA_SIG {
            return Ok(OurAuth::Hash(hash));
        }
        let kn = match creds.cert {
            Some(_) => None,
            None => creds.keynote_for(id),
        };
        let key = kn
            .and_then(|k| k.key.as_ref())
            .or(creds.key.as_ref())
            .ok_or(Drop::Silent("no private key"))?;
        let mut sig = vec![0u8; 1024];
        let n = key
            .sign_raw(hash.as_bytes(), &mut sig)
            .map_err(|_| Drop::Silent("signing failed"))?;
        sig.truncate(n);
        let cert = match kn.and_then(|k| k.credentials.as_ref()) {
            Some(kc) => Some((CertEncoding::KEYNOTE, kc.clone())),
            None => creds
                .cert
                .as_ref()
                .and_then(|c| c.der().ok())
                .map(|d| (CertEncoding::X509_SIG, d)),
        };
        Ok(OurAuth::Sig { sig, cert })
    }

    /// Its payloads: HASH, or [CERT,] SIG.
    pub(crate) fn write(&self, b: &mut wire::MessageBuilder<'_>) -> Result<(), wire::NoRoom> {
        match self {
            OurAuth::Hash(h) => b.payload(PayloadType::HASH, |w| w.bytes(h.as_bytes())),
            OurAuth::Sig { sig, cert } => {
                if let Some((enc, data)) = cert.as_ref().filter(|(_, d)| !d.is_empty()) {
                    b.payload(PayloadType::CERT, |w| {
                        w.u8(enc.0)?;
                        w.bytes(data)
                    })?;
                }
                b.payload(PayloadType::SIG, |w| w.bytes(sig))
            }
        }
    }
}

/// CERT_REQ payloads for our CAs (`crs`, from [`Credentials::cert_requests`]).
pub(crate) fn write_cert_requests(
    b: &mut wire::MessageBuilder<'_>,
    crs: &[Vec<u8>],
) -> Result<(), wire::NoRoom> {
    for ca in crs {
        b.payload(PayloadType::CERT_REQ, |w| {
            w.u8(CertEncoding::X509_SIG.0)?;
            w.bytes(ca)
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::id_name;

    /// File names of IDs as isakmpd writes them (util_ntoa for addresses, FQDNs as sent).
    #[test]
    fn id_names_for_key_files() {
        assert_eq!(
            id_name(1, &[192, 0, 2, 1]),
            Some(("ipv4", "192.0.2.1".to_string()))
        );
        let v6: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            id_name(5, &v6.octets()),
            Some(("ipv6", "2001:db8::1".to_string()))
        );
        assert_eq!(
            id_name(2, b"east.example"),
            Some(("fqdn", "east.example".to_string()))
        );
        assert_eq!(
            id_name(3, b"ike@east.example"),
            Some(("ufqdn", "ike@east.example".to_string()))
        );
        // Truncated addresses and other types name nothing.
        assert_eq!(id_name(1, &[192, 0, 2]), None);
        assert_eq!(id_name(5, &[0; 4]), None);
        assert_eq!(id_name(9, b"dn"), None);
    }
}
