#![forbid(unsafe_code)]

//! IKE_AUTH (RFC 7296 §1.2, §2.15): IDs and the shared-key AUTH both ways, and the
//! first CHILD_SA: the responder answers once the kernel holds it, the initiator counts
//! it as made once its kernel does (kernel.rs).

use super::*;

impl Engine {
    /// Responder: IKE_AUTH (§1.2, §2.15). A wrong AUTH ends the IKE SA; otherwise the
    /// CHILD_SA's suite and selectors are chosen, our inbound SPI reserved and the
    /// CHILD_SA installed before the answer goes ([`Self::auth_answer`]). Repeats of the
    /// request meanwhile are outside the window and dropped.
    pub(super) fn auth_request(&mut self, now: Time, h: Handle, hd: &Header, inner: &Payloads<'_>) {
        let msgid = hd.msgid;
        self.note_auth(h, inner, PayloadType::IDI);
        let checked = match self.eap_server(now, h, msgid, inner) {
            EapTurn::Off => match self.auth_check(h, msgid, inner) {
                Ok(c) => c,
                Err(why) => return self.fail(h, why),
            },
            EapTurn::Handled => return,
            EapTurn::Final(c) => {
                self.contact_made(h);
                c
            }
        };
        match checked {
            Err(n) => {
                self.auth_answer(now, h, msgid, Err(n));
            }
            Ok(choice) if self.io.kernel_answers => {
                self.wait_spi(h, Step::AuthAnswerSpi { msgid, choice })
            }
            Ok(choice) => self.auth_child(now, h, msgid, choice),
        }
    }

    /// Responder: the peer's AUTH (a wrong one is answered with AUTHENTICATION_FAILED
    /// and ends the IKE SA), then the CHILD_SA it asks for, or the notify that says why
    /// there is none.
    fn auth_check(
        &mut self,
        h: Handle,
        msgid: u32,
        inner: &Payloads<'_>,
    ) -> Result<Result<ChildChoice, NotifyType>, &'static str> {
        let Engine {
            sas,
            io,
            policy,
            creds,
            ..
        } = self;
        let Some(sa) = sas.get_mut(h) else {
            return Err("IKE SA gone");
        };
        let peer = &policy.peers[sa.peer];
        let remote = sa.info.remote;
        sa.peer_msgid = msgid.wrapping_add(1);
        if let Err(why) = check_auth(sa, peer, creds, inner, PayloadType::IDI) {
            log::warn!("ikev2: {} {remote}: IKE_AUTH: {why}", peer.name);
            answer_auth_failed(io, sa, msgid);
            return Err("authentication failed");
        }
        // The IKE SAs the peer forgot go before the new one takes their place (and a
        // pool address they held).
        self.contact_made(h);
        let Engine {
            sas,
            io,
            policy,
            leases,
            ..
        } = self;
        let Some(sa) = sas.get_mut(h) else {
            return Err("IKE SA gone");
        };
        let peer = &policy.peers[sa.peer];
        Ok(child_choice(io, sa, peer, leases, inner))
    }

    /// Responder: the IKE_AUTH CHILD_SA, with our inbound SPI, goes to the kernel; the
    /// answer announces it once it is in.
    pub(super) fn auth_child(&mut self, now: Time, h: Handle, msgid: u32, choice: ChildChoice) {
        let Some(sa) = self.sas.get(h) else { return };
        // TSi is the initiator's side, our remote one.
        let (tsr, tsi) = (choice.tsr.clone(), choice.tsi.clone());
        let child = child_sa(sa, h, &choice.esp, choice.spi_in, choice.spi_out, tsr, tsi);
        let step = Step::AuthAnswerInstall {
            msgid,
            choice,
            child,
        };
        self.install(now, h, step);
    }

    /// Responder: the IKE_AUTH response: IDr, AUTH, and the CHILD_SA (`Ok`, installed)
    /// or the notify that says why there is none; the IKE SA is established. False when
    /// the response could not be built (the IKE SA is gone then).
    pub(super) fn auth_answer(
        &mut self,
        now: Time,
        h: Handle,
        msgid: u32,
        child: Result<&ChildChoice, NotifyType>,
    ) -> bool {
        let Engine {
            sas,
            io,
            policy,
            half_open,
            creds,
            ..
        } = self;
        let Some(sa) = sas.get_mut(h) else {
            return false;
        };
        let peer = &policy.peers[sa.peer];
        let remote = sa.info.remote;
        let idr = peer.local_id.body();
        // After EAP (§2.16) the last answer has AUTH without IDr and CERT.
        let eap = eap_msk(sa).is_some();
        let cert = own_cert(peer, creds).filter(|_| !eap);
        let cp_reply = std::mem::take(&mut sa.cp_reply);
        let mobike = sa.mob.mobike;
        let m = own_auth(sa, peer, creds, &idr).and_then(|(method, auth)| {
            build_protected(io, sa, ExchangeType::IKE_AUTH, msgid, true, |b| {
                if !eap {
                    b.payload(PayloadType::IDR, |w| w.bytes(&idr))?;
                }
                add_own_cert(b, &cert)?;
                add_auth(b, method, &auth)?;
                add_cp(b, CfgType::REPLY, &cp_reply)?;
                if mobike {
                    b.notify(NotifyType::MOBIKE_SUPPORTED, &[])?;
                }
                match child {
                    Ok(c) => {
                        if c.transport {
                            b.notify(NotifyType::USE_TRANSPORT_MODE, &[])?;
                        }
                        let t = c.esp.transforms();
                        b.sa(&[ProposalRepr {
                            number: c.number,
                            protocol: ProtocolId::ESP,
                            spi: &c.spi_in.to_be_bytes(),
                            transforms: &t,
                        }])?;
                        ts_payload(b, PayloadType::TSI, &c.tsi)?;
                        ts_payload(b, PayloadType::TSR, &c.tsr)
                    }
                    Err(n) => b.notify(n, &[]),
                }
            })
        });
        let m = match m {
            Ok(m) => m,
            Err(Fail(why)) => {
                self.fail(h, why);
                return false;
            }
        };
        io.respond(sa, msgid, m);
        sa.info.state = IkeState::Established;
        sa.eap = None;
        io.keepalive_starts(sa, now);
        ike_lifetime_starts(io, sa, peer, now);
        sa.expires = None;
        *half_open = half_open.saturating_sub(1);
        io.arm(h, sa);
        io.stats.ike_sas_established += 1;
        log::info!(
            "ikev2: {} {remote}: IKE SA {}/{} established (responder)",
            peer.name,
            hex(&sa.info.spi_i),
            hex(&sa.info.spi_r)
        );
        if let Err(n) = child {
            log::warn!("ikev2: {} {remote}: no CHILD_SA: {n}", peer.name);
        }
        true
    }

    /// Initiator: the kernel reserved our inbound SPI; IKE_AUTH goes out with it.
    pub(super) fn auth_spi(&mut self, now: Time, h: Handle, spi: u32) {
        let Engine {
            sas,
            io,
            policy,
            config,
            creds,
            ..
        } = self;
        let Some(sa) = sas.get_mut(h) else { return };
        sa.child_spi = spi;
        let peer = &policy.peers[sa.peer];
        if let Err(Fail(why)) = send_auth(io, config, creds, now, h, sa, peer) {
            self.fail(h, why);
        }
    }

    /// Initiator: the IKE_AUTH response.
    pub(super) fn auth_response(&mut self, now: Time, h: Handle, inner: &Payloads<'_>) {
        self.note_auth(h, inner, PayloadType::IDR);
        if let EapTurn::Handled = self.eap_client(now, h, inner) {
            return;
        }
        let res = self.auth_response_inner(now, h, inner);
        if res.is_ok() {
            self.contact_made(h);
        }
        match res {
            Ok(Some(child)) => {
                let step = Step::Install {
                    child,
                    rekey: None,
                    redundant: false,
                };
                self.install(now, h, step);
            }
            Ok(None) => {}
            Err(why) => self.fail(h, why),
        }
    }

    pub(super) fn auth_response_inner(
        &mut self,
        now: Time,
        h: Handle,
        inner: &Payloads<'_>,
    ) -> Result<Option<ChildSa>, &'static str> {
        let Engine {
            sas,
            io,
            policy,
            creds,
            ..
        } = self;
        let Some(sa) = sas.get_mut(h) else {
            return Ok(None);
        };
        let peer = &policy.peers[sa.peer];
        let remote = sa.info.remote;
        if inner.notify(NotifyType::AUTHENTICATION_FAILED).is_some() {
            log::warn!("ikev2: {} {remote}: the peer refused our AUTH", peer.name);
            return Err("AUTHENTICATION_FAILED from the peer");
        }
        // §3.10.1: an error type we do not know in a response means that the request
        // failed entirely, whatever else the response holds.
        if let Some(n) = inner
            .notifies()
            .find(|n| n.ty.is_error() && !n.ty.is_known())
        {
            log::warn!(
                "ikev2: {} {remote}: IKE_AUTH refused with error {}",
                peer.name,
                n.ty
            );
            return Err("an error we do not know in the IKE_AUTH response");
        }
        if let Err(why) = check_auth(sa, peer, creds, inner, PayloadType::IDR) {
            log::warn!("ikev2: {} {remote}: IKE_AUTH response: {why}", peer.name);
            // §2.21.2: tell the responder in an INFORMATIONAL of its own; we do not wait.
            let msgid = sa.next_msgid;
            let m = build_protected(io, sa, ExchangeType::INFORMATIONAL, msgid, false, |b| {
                b.notify(NotifyType::AUTHENTICATION_FAILED, &[])
            });
            if let Ok(m) = m {
                io.send(sa.info.local, remote, &m);
            }
            return Err("authentication failed");
        }
        sa.eap = None;
        sa.info.own_vip = given_address(inner);
        if let Some(a) = sa.info.own_vip {
            log::info!(
                "ikev2: {} {remote}: the peer gave us address {a}",
                peer.name
            );
        }
        sa.info.state = IkeState::Established;
        ike_lifetime_starts(io, sa, peer, now);
        io.keepalive_starts(sa, now);
        io.arm(h, sa);
        io.stats.ike_sas_established += 1;
        log::info!(
            "ikev2: {} {remote}: IKE SA {}/{} established (initiator)",
            peer.name,
            hex(&sa.info.spi_i),
            hex(&sa.info.spi_r)
        );
        // Our inbound SPI goes to the CHILD_SA, or back to the kernel.
        let spi_in = std::mem::take(&mut sa.child_spi);
        let made = match accept_child(peer, inner, false) {
            Ok((esp, spi_out, tsi, tsr)) => {
                return Ok(Some(child_sa(sa, h, &esp, spi_in, spi_out, tsi, tsr)));
            }
            // The responder made a CHILD_SA (its answer has an SA payload) that we cannot
            // take, e.g. in tunnel mode when we asked for transport: we delete it with an
            // INFORMATIONAL (§1.3.1, "the initiator MUST delete the SA"); the IKE SA stays.
            Err(why) => {
                let made = spi_in != 0 && inner.find(PayloadType::SA).is_some();
                log::warn!(
                    "ikev2: {} {remote}: no CHILD_SA: {why}{}",
                    peer.name,
                    if made { "; the peer's is deleted" } else { "" }
                );
                io.release_spi(sa.info.local, remote, spi_in);
                made
            }
        };
        if made {
            self.start_request(now, h, Req::DeleteChild(vec![spi_in]));
        }
        Ok(None)
    }
}

/// Responder: AUTHENTICATION_FAILED in answer to IKE_AUTH request `msgid` (§2.21.2);
/// the caller ends the IKE SA.
pub(super) fn answer_auth_failed(io: &mut Io, sa: &mut IkeSa, msgid: u32) {
    let m = build_protected(io, sa, ExchangeType::IKE_AUTH, msgid, true, |b| {
        b.notify(NotifyType::AUTHENTICATION_FAILED, &[])
    });
    if let Ok(m) = m {
        io.respond(sa, msgid, m);
    }
}

/// Our AUTH (§2.15): its method and data, over our IKE_SA_INIT message, the peer's
/// nonce and prf(SK_px, our ID payload body): the shared-key MIC, or our signature.
pub(super) fn own_auth(
    sa: &IkeSa,
    peer: &Peer,
    creds: &Credentials,
    id_body: &[u8],
) -> Result<(AuthMethod, Vec<u8>), Fail> {
    let (Some(keys), Some(suite)) = (sa.keys.as_ref(), sa.info.suite) else {
        return Err(Fail("no keys"));
    };
    let (msg, nonce, skp) = if sa.info.initiator {
        (&sa.init_i, &sa.nr, &keys.pi)
    } else {
        (&sa.init_r, &sa.ni, &keys.pr)
    };
    let o = SignedOctets::new(suite.prf, msg, nonce, skp.as_bytes(), id_body);
    // After EAP (§2.16) both sides MAC with the MSK as the shared key.
    let key = eap_msk(sa).map(|k| k.as_bytes());
    match (&peer.auth, key) {
        (PeerAuth::Psk(k), _) => Ok((
            AuthMethod::SHARED_KEY_MIC,
            psk_auth(suite.prf, k, &o).as_bytes().to_vec(),
        )),
        (_, Some(k)) => Ok((
            AuthMethod::SHARED_KEY_MIC,
            psk_auth(suite.prf, k, &o).as_bytes().to_vec(),
        )),
        (PeerAuth::EapClient(..), None) => Err(Fail("no AUTH of ours before EAP succeeded")),
        (PeerAuth::Sig(m) | PeerAuth::EapServer(m), None) => {
            let key = creds
                .signer
                .as_ref()
                .ok_or(Fail("no private key for signature authentication"))?;
            sig::sign(key, *m, sa.peer_hashes, &o.to_vec()).map_err(Fail)
        }
    }
}

/// Our CERT payload when we sign (§3.6; iked sends it whether asked or not): our
/// certificate (DER), or without one an RSA key raw (encoding 11, a PKCS#1
/// RSAPublicKey, as iked's ca_pubkey_serialize makes it; the peer holds it in pubkeys/).
/// An ECDSA key without a certificate goes without CERT: iked's encoding for it is a
/// private-use number (201) and RFC 7670's (15) is known to neither iked nor strongSwan;
/// both find the key by our ID (pubkeys/, swanctl `pubkeys`) without one.
pub(super) fn own_cert(peer: &Peer, creds: &Credentials) -> Option<(CertEncoding, Vec<u8>)> {
    if !peer.auth.we_sign() {
        return None;
    }
    match (&creds.cert, &creds.signer) {
        (Some(c), _) => Some((CertEncoding::X509_SIGNATURE, c.der().ok()?)),
        (None, Some(k)) => Some((CertEncoding::RAW_RSA_KEY, k.public().ok()?.rsa_pkcs1_der()?)),
        (None, None) => None,
    }
}

/// Our CERT payload ([`own_cert`]), if any.
pub(super) fn add_own_cert(
    b: &mut MessageBuilder<'_>,
    cert: &Option<(CertEncoding, Vec<u8>)>,
) -> Result<(), NoRoom> {
    let Some((encoding, data)) = cert else {
        return Ok(());
    };
    let c = CertPayload {
        encoding: *encoding,
        data,
    };
    b.add(PayloadType::CERT, false, &Payload::Cert(c))
}

/// CERTREQ data naming our CAs, when the peer signs and we have CAs (§3.7).
pub(super) fn own_certreq(peer: &Peer, creds: &Credentials) -> Option<Vec<u8>> {
    (peer.auth.peer_signs() && !creds.cas.is_empty()).then(|| sig::certreq(&creds.cas))
}

/// The AUTH payload (§3.8).
pub(super) fn add_auth(
    b: &mut MessageBuilder<'_>,
    method: AuthMethod,
    data: &[u8],
) -> Result<(), NoRoom> {
    b.add(
        PayloadType::AUTH,
        false,
        &Payload::Auth(AuthPayload { method, data }),
    )
}

/// A CERT or CERTREQ payload of X.509 signature certificates, if there is `data`.
pub(super) fn add_cert(
    b: &mut MessageBuilder<'_>,
    ty: PayloadType,
    data: &Option<Vec<u8>>,
) -> Result<(), NoRoom> {
    let Some(data) = data else { return Ok(()) };
    let c = CertPayload {
        encoding: CertEncoding::X509_SIGNATURE,
        data,
    };
    let p = if ty == PayloadType::CERT {
        Payload::Cert(c)
    } else {
        Payload::CertReq(c)
    };
    b.add(ty, false, &p)
}

/// Checks the peer's ID payload (`id_ty`, IDi or IDr) against the policy and its AUTH:
/// the shared-key MIC, or a signature by the key of its certificate (which must chain
/// to our CAs and name its ID) or of pubkeys/.
pub(super) fn check_auth(
    sa: &IkeSa,
    peer: &Peer,
    creds: &Credentials,
    inner: &Payloads<'_>,
    id_ty: PayloadType,
) -> Result<(), String> {
    if eap_msk(sa).is_some() {
        return check_msk_auth(sa, inner).map_err(String::from);
    }
    let (Some(keys), Some(suite)) = (sa.keys.as_ref(), sa.info.suite) else {
        return Err("no keys".into());
    };
    let Some((id, body)) = inner.iter().find_map(|e| match e.payload {
        Payload::Id(id) if e.ty == id_ty => Some((id, e.body)),
        _ => None,
    }) else {
        return Err("no ID payload".into());
    };
    let Some(Payload::Auth(auth)) = inner.find(PayloadType::AUTH) else {
        return Err("no AUTH payload".into());
    };
    if let Some(want) = &peer.remote_id {
        if id.ty != want.ty || *id.data != want.data[..] {
            return Err("peer identity does not match the policy".into());
        }
    }
    // The peer's octets: its IKE_SA_INIT message, our nonce, its SK_px.
    let (msg, nonce, skp) = if sa.info.initiator {
        (&sa.init_r, &sa.ni, &keys.pr)
    } else {
        (&sa.init_i, &sa.nr, &keys.pi)
    };
    let o = SignedOctets::new(suite.prf, msg, nonce, skp.as_bytes(), body);
    match &peer.auth {
        PeerAuth::Psk(k) => {
            if auth.method != AuthMethod::SHARED_KEY_MIC {
                return Err(format!(
                    "AUTH method {} where a shared key is configured",
                    auth.method
                ));
            }
            verify_psk_auth(suite.prf, k, &o, auth.data)
                .map_err(|_| "AUTH does not verify (shared keys differ?)".into())
        }
        PeerAuth::EapServer(_) => Err("the policy wants EAP from the peer".into()),
        PeerAuth::Sig(m) | PeerAuth::EapClient(m, _) => {
            if auth.method == AuthMethod::SHARED_KEY_MIC {
                return Err("AUTH with a shared key where signatures are configured".into());
            }
            let certs: Vec<&[u8]> = inner
                .iter()
                .filter_map(|e| match e.payload {
                    Payload::Cert(c) if c.encoding == CertEncoding::X509_SIGNATURE => Some(c.data),
                    _ => None,
                })
                .collect();
            let (key, who) = sig::peer_key(creds, &certs, id.ty, id.data)?;
            // A raw RSA key the peer sent (CERT encoding 11) must be the one we hold for
            // its ID (iked's ca_validate_pubkey); the signature is checked with ours.
            let raw = inner.iter().find_map(|e| match e.payload {
                Payload::Cert(c) if c.encoding == CertEncoding::RAW_RSA_KEY => Some(c.data),
                _ => None,
            });
            if let (Some(raw), true) = (raw, certs.is_empty()) {
                let sent = crate::ike::crypto::PublicKey::from_rsa_pkcs1_der(raw)
                    .map_err(|_| "the peer's raw RSA key does not parse")?;
                if sent.spki_der() != key.spki_der() {
                    return Err(format!("the peer's raw RSA key is not {who}"));
                }
            }
            sig::verify(&key, *m, auth.method, auth.data, &o.to_vec())
                .map_err(|e| format!("{e} ({who})"))?;
            log::info!(
                "ikev2: {} {}: peer authenticated by {who}, AUTH method {}",
                peer.name,
                sa.info.remote,
                auth.method
            );
            Ok(())
        }
    }
}

/// Initiator: sends IKE_AUTH with our inbound SPI (`sa.child_spi`) and waits for the
/// answer.
pub(super) fn send_auth(
    io: &mut Io,
    cfg: &Config,
    creds: &Credentials,
    now: Time,
    h: Handle,
    sa: &mut IkeSa,
    peer: &Peer,
) -> Result<(), Fail> {
    let msgid = sa.next_msgid;
    let m = build_auth_request(io, sa, peer, creds)?;
    io.request(now, cfg, h, sa, (msgid, m), Req::Auth);
    sa.next_msgid = msgid.wrapping_add(1);
    Ok(())
}

/// Initiator: IKE_AUTH (§1.2): IDi, [CERT, CERTREQ,] AUTH, SA (ESP, our SPI), TSi, TSr.
pub(super) fn build_auth_request(
    io: &mut Io,
    sa: &mut IkeSa,
    peer: &Peer,
    creds: &Credentials,
) -> Result<Vec<u8>, Fail> {
    let idi = peer.local_id.body();
    // An EAP client sends no AUTH now (§2.16).
    let auth = if eap_client_starts(sa, peer) {
        None
    } else {
        Some(own_auth(sa, peer, creds, &idi)?)
    };
    let spi = sa.child_spi.to_be_bytes();
    let trs: Vec<_> = peer.esp.iter().map(|p| p.transforms()).collect();
    let props: Vec<ProposalRepr<'_>> = trs
        .iter()
        .enumerate()
        .map(|(i, t)| ProposalRepr {
            number: (i + 1) as u8,
            protocol: ProtocolId::ESP,
            spi: &spi,
            transforms: t,
        })
        .collect();
    let (cert, certreq) = (own_cert(peer, creds), own_certreq(peer, creds));
    let asked: Vec<(CfgAttrType, Vec<u8>)> =
        peer.cp.request.iter().map(|t| (*t, Vec::new())).collect();
    let msgid = sa.next_msgid;
    let (first_contact, offer_mobike) = (sa.mob.first_contact, sa.mob.offer);
    build_protected(io, sa, ExchangeType::IKE_AUTH, msgid, false, |b| {
        b.payload(PayloadType::IDI, |w| w.bytes(&idi))?;
        add_own_cert(b, &cert)?;
        add_cert(b, PayloadType::CERTREQ, &certreq)?;
        if let Some((method, auth)) = &auth {
            add_auth(b, *method, auth)?;
        }
        if first_contact {
            // §2.4: we hold no other IKE SA with this peer.
            b.notify(NotifyType::INITIAL_CONTACT, &[])?;
        }
        if offer_mobike {
            b.notify(NotifyType::MOBIKE_SUPPORTED, &[])?;
        }
        add_cp(b, CfgType::REQUEST, &asked)?;
        if peer.transport {
            b.notify(NotifyType::USE_TRANSPORT_MODE, &[])?;
        }
        b.sa(&props)?;
        ts_payload(b, PayloadType::TSI, &peer.local_ts)?;
        ts_payload(b, PayloadType::TSR, &peer.remote_ts)
    })
}

/// Responder: the CHILD_SA the peer's IKE_AUTH request `inner` asks for, after its
/// configuration request (§2.19: an address from our pool, and what else we serve of what
/// it asks; with no address left, no CHILD_SA): an ESP suite and the selectors both
/// sides allow (the peer's side is its pool address when it has one); our SPI from the
/// random source when no kernel reserves one.
pub(super) fn child_choice(
    io: &mut Io,
    sa: &mut IkeSa,
    peer: &Peer,
    leases: &mut std::collections::BTreeSet<IpAddr>,
    inner: &Payloads<'_>,
) -> Result<ChildChoice, NotifyType> {
    if let Err(n) = configuration(sa, peer, leases, inner) {
        log::warn!(
            "ikev2: {} {}: IKE_AUTH: {n}: address pool exhausted",
            peer.name,
            sa.info.remote
        );
        return Err(n);
    }
    let pool_ts = peer_side(sa, peer);
    choose_child(peer, inner, false, pool_ts.as_deref()).map(|mut c| {
        if !io.kernel_answers {
            c.spi_in = io.esp_spi();
        }
        c
    })
}

/// Responder: the peer's CFG_REQUEST (§3.15.4): an address from the pool of its policy
/// when it asks for one of that family (kept in `sa.info.peer_vip`, the pool's lease),
/// and the `config` attributes it asks for, into `sa.cp_reply`. No request, or no pool
/// and nothing served: nothing. Err: no address left (INTERNAL_ADDRESS_FAILURE).
pub(super) fn configuration(
    sa: &mut IkeSa,
    peer: &Peer,
    leases: &mut std::collections::BTreeSet<IpAddr>,
    inner: &Payloads<'_>,
) -> Result<(), NotifyType> {
    let Some(Payload::Cp(req)) = inner.find(PayloadType::CP) else {
        return Ok(());
    };
    if req.ty != CfgType::REQUEST {
        return Ok(());
    }
    let asked: Vec<CfgAttrType> = req.attributes().map(|a| a.ty).collect();
    let mut reply = Vec::new();
    if let Some((base, prefix)) = peer.cp.pool {
        let (addr_ty, mask_ty) = if base.is_ipv4() {
            (
                CfgAttrType::INTERNAL_IP4_ADDRESS,
                CfgAttrType::INTERNAL_IP4_NETMASK,
            )
        } else {
            (CfgAttrType::INTERNAL_IP6_ADDRESS, CfgAttrType(0))
        };
        if asked.contains(&addr_ty) {
            let a = match sa.info.peer_vip {
                Some(a) => a,
                None => {
                    let a = peer
                        .cp
                        .lease(|a| leases.contains(a))
                        .ok_or(NotifyType::INTERNAL_ADDRESS_FAILURE)?;
                    leases.insert(a);
                    sa.info.peer_vip = Some(a);
                    log::info!(
                        "ikev2: {} {}: address {a} from the pool",
                        peer.name,
                        sa.info.remote
                    );
                    a
                }
            };
            match a {
                IpAddr::V4(v) => {
                    reply.push((addr_ty, v.octets().to_vec()));
                    if asked.contains(&mask_ty) {
                        let m = u32::MAX
                            .checked_shl(32 - u32::from(prefix.min(32)))
                            .unwrap_or(0);
                        reply.push((mask_ty, m.to_be_bytes().to_vec()));
                    }
                }
                IpAddr::V6(v) => {
                    let mut b = v.octets().to_vec();
                    b.push(prefix);
                    reply.push((addr_ty, b));
                }
            }
        }
    }
    for (t, v) in &peer.cp.serve {
        if asked.contains(t) {
            reply.push((*t, v.clone()));
        }
    }
    sa.cp_reply = reply;
    Ok(())
}

/// Initiator: the address in the peer's CFG_REPLY, if any.
pub(super) fn given_address(inner: &Payloads<'_>) -> Option<IpAddr> {
    let Some(Payload::Cp(r)) = inner.find(PayloadType::CP) else {
        return None;
    };
    if r.ty != CfgType::REPLY {
        return None;
    }
    r.attributes().find_map(|a| match (a.ty, a.value.len()) {
        (CfgAttrType::INTERNAL_IP4_ADDRESS, 4) => {
            Some(IpAddr::from(<[u8; 4]>::try_from(a.value).ok()?))
        }
        (CfgAttrType::INTERNAL_IP6_ADDRESS, 17) => {
            Some(IpAddr::from(<[u8; 16]>::try_from(&a.value[..16]).ok()?))
        }
        _ => None,
    })
}

/// A CP payload of `ty` with `attrs`, if there are any.
pub(super) fn add_cp(
    b: &mut MessageBuilder<'_>,
    ty: CfgType,
    attrs: &[(CfgAttrType, Vec<u8>)],
) -> Result<(), NoRoom> {
    if attrs.is_empty() {
        return Ok(());
    }
    let list: Vec<CpAttribute<'_>> = attrs
        .iter()
        .map(|(t, v)| CpAttribute { ty: *t, value: v })
        .collect();
    b.payload(PayloadType::CP, |w| {
        super::super::wire::payload::emit_cp(w, ty, &list)
    })
}

/// What the peer's side of its CHILD_SAs may be when its policy has a pool: the address
/// it was given, or without one what the policy allows outside the pool (no peer takes
/// another's address). None: the policy's selectors as they are.
pub(super) fn peer_side(sa: &IkeSa, peer: &Peer) -> Option<Vec<Selector>> {
    if let Some(a) = sa.info.peer_vip {
        return Some(vec![Selector::host(a)]);
    }
    let (base, prefix) = peer.cp.pool?;
    let pool = Selector::subnet(base, prefix);
    Some(
        peer.remote_ts
            .iter()
            .filter(|s| s.intersect(&pool).is_none())
            .copied()
            .collect(),
    )
}
