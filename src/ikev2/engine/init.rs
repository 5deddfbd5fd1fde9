#![forbid(unsafe_code)]

//! IKE_SA_INIT (RFC 7296 §1.2): the proposal choice, KE and nonces, NAT detection
//! (§2.23), INVALID_KE_PAYLOAD and the keys that follow.

use super::*;

impl Engine {
    /// The peer with this address, else one that takes any address (`peer any`).
    pub(super) fn peer_for(&self, ip: IpAddr) -> Option<usize> {
        let peers = &self.policy.peers;
        peers.iter().position(|p| p.remote.ip() == ip).or_else(|| {
            peers
                .iter()
                .position(|p| p.remote.ip().is_unspecified() && p.remote.is_ipv4() == ip.is_ipv4())
        })
    }

    /// A datagram that does not parse. An IKE_SA_INIT request from a peer of ours is
    /// told why, unprotected and rate-limited, when the reason is a payload type we do
    /// not know with its critical bit set (§2.5: UNSUPPORTED_CRITICAL_PAYLOAD with the
    /// type) or a higher major version (§2.5: INVALID_MAJOR_VERSION, our header names
    /// 2.0); nothing is kept. Anything else is dropped.
    pub(super) fn unparsed(
        &mut self,
        now: Time,
        (local, remote): (SocketAddr, SocketAddr),
        data: &[u8],
        e: &WireError,
    ) {
        let request = Header::parse(data).ok().filter(|hd| {
            hd.exchange == ExchangeType::IKE_SA_INIT
                && !hd.response()
                && hd.initiator()
                && hd.spi_r == [0; 8]
                && hd.msgid == 0
        });
        let data: &[u8] = match (&request, &e.payload, e.notify) {
            (Some(_), Some(ty), NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD) => {
                std::slice::from_ref(&ty.0)
            }
            (Some(hd), None, NotifyType::INVALID_MAJOR_VERSION) if hd.major > 2 => &[],
            _ => return self.dropped(remote, e.reason),
        };
        self.dropped(remote, e.reason);
        if let (Some(hd), Some(_)) = (request, self.peer_for(remote.ip())) {
            self.io
                .init_reply(now, (local, remote), hd.spi_i, e.notify, data);
        }
    }

    /// Responder: an IKE_SA_INIT request (§1.2).
    pub(super) fn init_request(
        &mut self,
        now: Time,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        msg: &Message<'_>,
    ) {
        let hd = msg.header;
        if let Some(i) = self.by_init.find_by(&InitKey(hd.spi_i, remote), |_| true) {
            // A repeated request: answer from the kept response while half-open, drop
            // once IKE_AUTH has been answered.
            let h = self.by_init.get(i).map(|e| e.1);
            if let Some(sa) = h.and_then(|h| self.sas.get_mut(h)) {
                if sa.info.state == IkeState::HalfOpen {
                    if let Some((0, r)) = &sa.response {
                        self.io.send(local, remote, r);
                        self.io.stats.responses_resent += 1;
                        return;
                    }
                }
            }
            return self.dropped(remote, "repeated IKE_SA_INIT");
        }
        let Some(p) = self.peer_for(remote.ip()) else {
            return self.dropped(remote, "IKE_SA_INIT from an unknown peer");
        };
        let pl = &msg.payloads;
        let (Some(Payload::Sa(offer)), Some(Payload::Ke(ke)), Some(Payload::Nonce(ni))) = (
            pl.find(PayloadType::SA),
            pl.find(PayloadType::KE),
            pl.find(PayloadType::NONCE),
        ) else {
            return self.dropped(remote, "IKE_SA_INIT without SA, KE or Nonce");
        };
        let reply = |io: &mut Io, ty: NotifyType, data: &[u8]| {
            io.init_reply(now, (local, remote), hd.spi_i, ty, data)
        };
        if self.half_open >= self.config.cookie_threshold {
            // §2.6: under load, only a request that returns our COOKIE goes on; the
            // others get a COOKIE and nothing is kept.
            self.cookies
                .rotate(self.io.rng.as_mut(), now, self.config.cookie_secret_secs);
            let ip = remote.ip();
            match pl.notify(NotifyType::COOKIE) {
                Some(c) if self.cookies.valid(c.data, ni, ip, &hd.spi_i) => {}
                got => {
                    if got.is_some() {
                        self.io.stats.cookies_invalid += 1;
                    }
                    self.io.stats.cookies_sent += 1;
                    log::debug!("ikev2: {remote}: IKE_SA_INIT answered with a COOKIE");
                    let c = self.cookies.cookie(ni, ip, &hd.spi_i);
                    return reply(&mut self.io, NotifyType::COOKIE, &c);
                }
            }
        }
        if self.half_open >= self.config.max_half_open {
            self.io.stats.half_open_refused += 1;
            return self.dropped(remote, "too many half-open IKE SAs");
        }
        let peer = &self.policy.peers[p];
        let Some((chosen, number)) = choose_ike(offer, &peer.ike) else {
            self.io.limited_log(
                log::Level::Warn,
                format_args!(
                    "ikev2: {} {remote}: IKE_SA_INIT: no proposal chosen",
                    peer.name
                ),
            );
            self.io.stats.failed += 1;
            return reply(&mut self.io, NotifyType::NO_PROPOSAL_CHOSEN, &[]);
        };
        if ke.group != chosen.dh {
            self.io.limited_log(
                log::Level::Info,
                format_args!(
                    "ikev2: {} {remote}: KE for {}, asking for {} (INVALID_KE_PAYLOAD)",
                    peer.name, ke.group, chosen.dh
                ),
            );
            return reply(
                &mut self.io,
                NotifyType::INVALID_KE_PAYLOAD,
                &chosen.dh.0.to_be_bytes(),
            );
        }
        let spi_r = self.io.spi();
        let nr = self.io.random::<NONCE_LEN>().to_vec();
        let mut sa = IkeSa {
            ni: ni.to_vec(),
            nr,
            init_i: data.to_vec(),
            peer_msgid: 1,
            expires: Some(now.add_secs(self.config.half_open_secs)),
            ..IkeSa::new(
                IkeSaInfo {
                    peer: peer.name.clone(),
                    initiator: false,
                    spi_i: hd.spi_i,
                    spi_r,
                    local,
                    remote,
                    state: IkeState::HalfOpen,
                    suite: None,
                    nat_local: false,
                    nat_remote: false,
                    established: now,
                    rekey_at: None,
                    expires_at: None,
                    peer_vip: None,
                    own_vip: None,
                    eap_id: None,
                },
                p,
            )
        };
        nat_detect(&mut sa, &msg.payloads);
        if let Some(nat) = nat_found(&sa) {
            // Before anything is kept: rate-limited.
            self.io.limited_log(
                log::Level::Info,
                format_args!("ikev2: {} {remote}: NAT detected: {nat}", sa.info.peer),
            );
        }
        sa.peer_hashes = peer_hashes(&msg.payloads);
        sa.frag = self.config.fragmentation
            && pl
                .notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED)
                .is_some();
        let certreq = own_certreq(peer, &self.creds);
        let res = derive_ike(&mut self.io, &mut sa, &chosen, ke)
            .and_then(|dh| build_init_response(&sa, peer, &chosen, number, &dh, &certreq));
        let resp = match res {
            Ok(r) => r,
            Err(Fail(why)) => {
                let name = &self.policy.peers[p].name;
                self.io.limited_log(
                    log::Level::Warn,
                    format_args!("ikev2: {name} {remote}: IKE_SA_INIT: {why}"),
                );
                self.io.stats.failed += 1;
                return reply(&mut self.io, NotifyType::INVALID_SYNTAX, &[]);
            }
        };
        sa.init_r = resp.clone();
        let Some(h) = self.sas.insert(sa) else {
            return self.dropped(remote, "IKE SA table full");
        };
        self.half_open += 1;
        let idx = self.by_init.insert((InitKey(hd.spi_i, remote), h));
        if let Some(sa) = self.sas.get_mut(h) {
            sa.init_index = idx;
            self.io.respond(sa, 0, resp);
            self.io.arm(h, sa);
            log::info!(
                "ikev2: {} {remote}: IKE_SA_INIT answered, SPIs {}/{}",
                sa.info.peer,
                hex(&sa.info.spi_i),
                hex(&sa.info.spi_r)
            );
        }
    }

    /// Initiator: the answer to IKE_SA_INIT.
    pub(super) fn init_response(&mut self, now: Time, h: Handle, data: &[u8], msg: &Message<'_>) {
        if let Err(why) = self.init_response_inner(now, h, data, msg) {
            self.fail(h, why);
        }
    }

    pub(super) fn init_response_inner(
        &mut self,
        now: Time,
        h: Handle,
        data: &[u8],
        msg: &Message<'_>,
    ) -> Result<(), &'static str> {
        let Engine {
            sas,
            io,
            policy,
            config,
            creds,
            ..
        } = self;
        let Some(sa) = sas.get_mut(h) else {
            return Ok(());
        };
        let remote = sa.info.remote;
        if sa.info.state != IkeState::InitSent || sa.request.as_ref().map(|r| r.msgid) != Some(0) {
            io.dropped(remote, "unexpected IKE_SA_INIT response");
            return Ok(());
        }
        let peer = &policy.peers[sa.peer];
        let pl = &msg.payloads;
        // INVALID_KE_PAYLOAD and COOKIE: try again, as the responder asks (§1.2, §2.6).
        let mut retry = None;
        if let Some(n) = pl.notify(NotifyType::INVALID_KE_PAYLOAD) {
            let g =
                (n.data.len() == 2).then(|| DhGroup(u16::from_be_bytes([n.data[0], n.data[1]])));
            let g = g
                .filter(|g| peer.ike.iter().any(|p| p.dh == *g))
                .ok_or("INVALID_KE_PAYLOAD for a group we did not offer")?;
            log::info!("ikev2: {} {remote}: the peer wants group {g}", peer.name);
            retry = Some(g);
        } else if let Some(n) = pl.notify(NotifyType::COOKIE) {
            sa.cookie = Some(n.data.to_vec());
            retry = sa.dh.as_ref().map(|d| DhGroup(d.group().number()));
        }
        if let Some(g) = retry {
            if sa.init_retries >= INIT_RETRIES {
                return Err("too many IKE_SA_INIT retries");
            }
            sa.init_retries += 1;
            return send_init(io, config, now, h, sa, peer, g).map_err(|Fail(why)| why);
        }
        if let Some(n) = pl.notifies().find(|n| n.ty.is_error()) {
            log::warn!(
                "ikev2: {} {remote}: IKE_SA_INIT refused: {}",
                peer.name,
                n.ty
            );
            return Err("IKE_SA_INIT refused");
        }
        let (Some(Payload::Sa(answer)), Some(Payload::Ke(ke)), Some(Payload::Nonce(nr))) = (
            pl.find(PayloadType::SA),
            pl.find(PayloadType::KE),
            pl.find(PayloadType::NONCE),
        ) else {
            return Err("IKE_SA_INIT response without SA, KE or Nonce");
        };
        let mut props = answer.proposals();
        let chosen = match (props.next(), props.next()) {
            (Some(p), None) => peer.ike.iter().find(|o| o.is(&p)).copied(),
            _ => None,
        }
        .ok_or("the responder chose a proposal we did not offer")?;
        if msg.header.spi_r == [0; 8] {
            return Err("zero responder SPI");
        }
        sa.info.spi_r = msg.header.spi_r;
        sa.nr = nr.to_vec();
        sa.init_r = data.to_vec();
        nat_detect(sa, pl);
        if let Some(nat) = nat_found(sa) {
            log::info!("ikev2: {} {remote}: NAT detected: {nat}", peer.name);
        }
        sa.peer_hashes = peer_hashes(pl);
        sa.frag = config.fragmentation
            && pl
                .notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED)
                .is_some();
        if (sa.info.nat_local || sa.info.nat_remote) && sa.info.local.port() != config.nat_port {
            // §2.23: behind a NAT, the initiator moves to port 4500 for IKE_AUTH; its
            // CHILD_SAs are UDP-encapsulated (`ChildSa::encap`).
            sa.info.local.set_port(config.nat_port);
            sa.info.remote.set_port(NAT_T_PORT);
        }
        let dh = sa.dh.take().ok_or("no DH value")?;
        if ke.group != chosen.dh || dh.group().number() != chosen.dh.0 {
            return Err("KE group differs from the chosen one");
        }
        keys_from(sa, &chosen, &dh, ke.data).map_err(|Fail(why)| why)?;
        sa.request = None;
        sa.info.state = IkeState::AuthSent;
        if io.kernel_answers {
            // IKE_AUTH offers our inbound SPI: the kernel reserves it first.
            self.wait_spi(h, Step::AuthSpi);
            return Ok(());
        }
        sa.child_spi = io.esp_spi();
        send_auth(io, config, creds, now, h, sa, peer).map_err(|Fail(why)| why)
    }
}

/// NAT_DETECTION_*_IP data (§2.23): SHA-1(SPIi | SPIr | IP address | port).
pub(super) fn natd(spi_i: &[u8; 8], spi_r: &[u8; 8], a: SocketAddr) -> [u8; 20] {
    let ip = match a.ip() {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    };
    let k = hash(HashAlg::Sha1, &[spi_i, spi_r, &ip, &a.port().to_be_bytes()]);
    let mut out = [0u8; 20];
    out.copy_from_slice(&k.as_bytes()[..20]);
    out
}

/// Compares the peer's NAT-D notifies with our addresses: its DESTINATION with ours,
/// its SOURCE(s) with its address as we see it. No notifies, no finding.
pub(super) fn nat_detect(sa: &mut IkeSa, pl: &Payloads<'_>) {
    let r = if sa.info.initiator {
        sa.info.spi_r
    } else {
        [0u8; 8]
    };
    nat_compare(sa, pl, &r);
}

/// What NAT detection found, for the log line; None for no NAT.
pub(super) fn nat_found(sa: &IkeSa) -> Option<&'static str> {
    match (sa.info.nat_local, sa.info.nat_remote) {
        (true, true) => Some("both sides are behind a NAT"),
        (true, false) => Some("we are behind a NAT"),
        (false, true) => Some("the peer is behind a NAT"),
        (false, false) => None,
    }
}

/// The same with `r` as SPIr in the hashes (after IKE_SA_INIT both SPIs are known:
/// MOBIKE's INFORMATIONALs, RFC 4555 §3.5).
pub(super) fn nat_compare(sa: &mut IkeSa, pl: &Payloads<'_>, r: &[u8; 8]) {
    let i = &sa.info.spi_i;
    if let Some(d) = pl.notify(NotifyType::NAT_DETECTION_DESTINATION_IP) {
        sa.info.nat_local = d.data != natd(i, r, sa.info.local);
    }
    let mut sources = pl
        .notifies()
        .filter(|n| n.ty == NotifyType::NAT_DETECTION_SOURCE_IP)
        .peekable();
    if sources.peek().is_some() {
        let want = natd(i, r, sa.info.remote);
        sa.info.nat_remote = !sources.any(|n| n.data == want);
    }
}

/// The peer's SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4), a bit per hash; 0 without.
pub(super) fn peer_hashes(pl: &Payloads<'_>) -> u8 {
    pl.notify(NotifyType::SIGNATURE_HASH_ALGORITHMS)
        .map_or(0, |n| sig::hash_set(n.data))
}

/// Initiator: builds and sends IKE_SA_INIT with a fresh DH value for `group` (also the
/// retry after INVALID_KE_PAYLOAD or COOKIE, §1.2: same SPIi, message ID 0).
pub(super) fn send_init(
    io: &mut Io,
    cfg: &Config,
    now: Time,
    h: Handle,
    sa: &mut IkeSa,
    peer: &Peer,
    group: DhGroup,
) -> Result<(), Fail> {
    // A retry after COOKIE keeps Ni and the KE (§2.6: "all other payloads unchanged";
    // the cookie covers Ni); after INVALID_KE_PAYLOAD only the KE is new.
    let dh = match sa.dh.take() {
        Some(d) if d.group().number() == group.0 => d,
        _ => {
            let g = Group::from_ike(GroupDescription(group.0))
                .ok_or(Fail("DH group not implemented"))?;
            DhPrivate::generate(g, io.rng.as_mut()).map_err(|_| Fail("DH generation"))?
        }
    };
    if sa.ni.is_empty() {
        sa.ni = io.random::<NONCE_LEN>().to_vec();
    }
    // The proposals: those for `group` first, since our KE is for it.
    let mut order: Vec<&IkeProposal> = peer.ike.iter().filter(|p| p.dh == group).collect();
    order.extend(peer.ike.iter().filter(|p| p.dh != group));
    let trs: Vec<_> = order.iter().map(|p| p.transforms()).collect();
    let props: Vec<ProposalRepr<'_>> = trs
        .iter()
        .enumerate()
        .map(|(i, t)| ProposalRepr {
            number: (i + 1) as u8,
            protocol: ProtocolId::IKE,
            spi: &[],
            transforms: t,
        })
        .collect();
    let hdr = sa.header(ExchangeType::IKE_SA_INIT, 0, false);
    let mut buf = vec![0u8; BUILD_MAX];
    let mut b = MessageBuilder::new(&mut buf, &hdr)?;
    if let Some(c) = &sa.cookie {
        // §2.6: the COOKIE notify comes first.
        b.notify(NotifyType::COOKIE, c)?;
    }
    b.sa(&props)?;
    b.add(
        PayloadType::KE,
        false,
        &Payload::Ke(KePayload {
            group,
            data: dh.public_value(),
        }),
    )?;
    b.add(PayloadType::NONCE, false, &Payload::Nonce(&sa.ni))?;
    let (i, r) = (sa.info.spi_i, [0u8; 8]);
    b.notify(
        NotifyType::NAT_DETECTION_SOURCE_IP,
        &natd(&i, &r, sa.info.local),
    )?;
    b.notify(
        NotifyType::NAT_DETECTION_DESTINATION_IP,
        &natd(&i, &r, sa.info.remote),
    )?;
    if peer.auth.sig().is_some() {
        b.notify(NotifyType::SIGNATURE_HASH_ALGORITHMS, &sig::OUR_HASHES)?;
    }
    if cfg.fragmentation {
        b.notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED, &[])?;
    }
    let n = b.finish()?;
    buf.truncate(n);
    sa.dh = Some(dh);
    sa.init_i = buf.clone();
    io.request(now, cfg, h, sa, (0, buf), Req::Init);
    sa.next_msgid = 1;
    Ok(())
}

/// Responder: the first offered proposal one of our suites matches (§2.7), with its
/// number.
pub(super) fn choose_ike(offer: &SaPayload<'_>, ours: &[IkeProposal]) -> Option<(IkeProposal, u8)> {
    offer.proposals().find_map(|p| {
        ours.iter()
            .find(|o| o.offered_in(&p) && o.suite().is_ok())
            .map(|o| (*o, p.number))
    })
}

/// Responder: our DH value, g^ir and the keys from the initiator's KE.
pub(super) fn derive_ike(
    io: &mut Io,
    sa: &mut IkeSa,
    chosen: &IkeProposal,
    ke: &KePayload<'_>,
) -> Result<DhPrivate, Fail> {
    let g =
        Group::from_ike(GroupDescription(chosen.dh.0)).ok_or(Fail("DH group not implemented"))?;
    let dh = DhPrivate::generate(g, io.rng.as_mut()).map_err(|_| Fail("DH generation"))?;
    keys_from(sa, chosen, &dh, ke.data)?;
    Ok(dh)
}

/// SKEYSEED and the seven keys (§2.14) once both nonces, both SPIs and g^ir are known.
pub(super) fn keys_from(
    sa: &mut IkeSa,
    chosen: &IkeProposal,
    dh: &DhPrivate,
    peer_ke: &[u8],
) -> Result<(), Fail> {
    let suite = chosen.suite()?;
    let gir = dh
        .shared_secret(peer_ke)
        .map_err(|_| Fail("invalid KE public value"))?;
    let seed = skeyseed(suite.prf, &sa.ni, &sa.nr, gir.as_bytes())?;
    let keys = IkeKeys::derive(
        &suite,
        seed.as_bytes(),
        &sa.ni,
        &sa.nr,
        &sa.info.spi_i,
        &sa.info.spi_r,
    )?;
    sa.keys = Some(keys);
    sa.info.suite = Some(suite);
    Ok(())
}

/// Responder: IKE_SA_INIT's answer: SA, KE, Nonce, the NAT-D notifies, and for a peer
/// that signs, CERTREQ (our CAs) and SIGNATURE_HASH_ALGORITHMS.
pub(super) fn build_init_response(
    sa: &IkeSa,
    peer: &Peer,
    chosen: &IkeProposal,
    number: u8,
    dh: &DhPrivate,
    certreq: &Option<Vec<u8>>,
) -> Result<Vec<u8>, Fail> {
    let hdr = sa.header(ExchangeType::IKE_SA_INIT, 0, true);
    let mut buf = vec![0u8; BUILD_MAX];
    let mut b = MessageBuilder::new(&mut buf, &hdr)?;
    let t = chosen.transforms();
    b.sa(&[ProposalRepr {
        number,
        protocol: ProtocolId::IKE,
        spi: &[],
        transforms: &t,
    }])?;
    b.add(
        PayloadType::KE,
        false,
        &Payload::Ke(KePayload {
            group: chosen.dh,
            data: dh.public_value(),
        }),
    )?;
    b.add(PayloadType::NONCE, false, &Payload::Nonce(&sa.nr))?;
    let (i, r) = (sa.info.spi_i, sa.info.spi_r);
    b.notify(
        NotifyType::NAT_DETECTION_SOURCE_IP,
        &natd(&i, &r, sa.info.local),
    )?;
    b.notify(
        NotifyType::NAT_DETECTION_DESTINATION_IP,
        &natd(&i, &r, sa.info.remote),
    )?;
    add_cert(&mut b, PayloadType::CERTREQ, certreq)?;
    if peer.auth.sig().is_some() {
        b.notify(NotifyType::SIGNATURE_HASH_ALGORITHMS, &sig::OUR_HASHES)?;
    }
    if sa.frag {
        b.notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED, &[])?;
    }
    let n = b.finish()?;
    buf.truncate(n);
    Ok(buf)
}
