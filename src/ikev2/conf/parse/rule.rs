//! One `ikev2` rule of iked.conf(5), clause by clause in iked's order (parse.y's `ikev2rule`),
//! with its transforms, keys and the checks iked makes on a finished rule.

use super::*;

impl Parser<'_, '_> {
    /// The transforms after `ikesa` or `childsa`, checked as `create_ike()` does.
    fn transforms(&mut self, ike: bool, kw: &PTok) -> PResult<Transforms> {
        let mut x = Transforms::default();
        let sa = if ike { "ikesa" } else { "childsa" };
        while let Some(w) = self.peek_word() {
            let (table, list, what): (&[Xf], _, _) = match w.as_str() {
                "enc" => (if ike { IKE_ENC } else { ESP_ENC }, &mut x.enc, "a cipher"),
                "auth" => (AUTH, &mut x.auth, "an integrity algorithm"),
                "prf" => (PRF, &mut x.prf, "a pseudo-random function"),
                "group" => (GROUP, &mut x.group, "a group"),
                "esn" | "noesn" => {
                    self.bump();
                    x.esn.push(w == "esn");
                    continue;
                }
                _ => break,
            };
            self.bump();
            let (name, t) = self.string(&format!("{what} after `{w}`"))?;
            // iked's `%s not a valid transform` names the transform only; ours also says
            // which table it was looked up in, and that an ESP cipher is not an IKE one.
            let Some(xf) = lookup_xf(table, &name) else {
                let other = if ike { ESP_ENC } else { IKE_ENC };
                let msg = if w == "enc" && lookup_xf(other, &name).is_some() {
                    format!(
                        "{name} not a valid transform: {} only, not for {sa}",
                        if ike { "childsa (ESP)" } else { "ikesa (IKE)" }
                    )
                } else {
                    let names: Vec<&str> = table.iter().map(|x| x.name).collect();
                    format!(
                        "{name} not a valid transform: expected {what}: {}",
                        names.join(", ")
                    )
                };
                return Err(self.error_at(&t, msg));
            };
            if list.len() >= MAX_LIST {
                return Err(self.error_at(&t, format!("too many transforms (at most {MAX_LIST})")));
            }
            list.push(xf);
        }
        // create_ike()'s checks, made here so the error points at the clause. AEAD
        // ciphers (iked's `noauth`) and others cannot share one proposal, since an AEAD
        // proposal has no integrity transform (RFC 5282 §8, RFC 7296 §3.3).
        let aead = x.enc.iter().filter(|e| e.aead).count();
        if ike && x.group.iter().any(|g| g.id == 0) {
            return Err(self.error_at(kw, "IKE group can not be \"none\"".into()));
        }
        if ike && !x.esn.is_empty() {
            return Err(self.error_at(kw, "cannot use ESN with ikesa".into()));
        }
        if aead > 0 && aead != x.enc.len() {
            return Err(self.error_at(
                kw,
                "cannot mix encryption transforms with implicit and non-implicit authentication"
                    .into(),
            ));
        }
        if aead > 0 && !x.auth.is_empty() {
            return Err(self.error_at(
                kw,
                "authentication is implicit for given encryption transforms".into(),
            ));
        }
        Ok(x)
    }

    pub(super) fn ikev2(&mut self) -> PResult<()> {
        let start = self.bump();
        if self.conf.policies.len() >= MAX_POLICIES {
            return Err(self.error_at(
                &start,
                format!("too many policies (at most {MAX_POLICIES})"),
            ));
        }
        // Counted for every rule. A file with an error gives no configuration at all, so
        // in a good file the numbers are create_ike()'s `policy_id`.
        self.policy_id += 1;
        let origin = format!(
            "{}:{}",
            self.names.get(start.file).map_or("", |s| s.as_str()),
            start.line
        );
        // The name: a string right after `ikev2`.
        // parse.y's `name: /* empty */ | STRING`: any non-keyword string, so a typo of
        // a keyword right after `ikev2` becomes the rule's name (iked alike).
        let name = match &self.peek().kind {
            TokKind::Quoted(s) => Some(s.clone()),
            TokKind::Word(w) if !is_keyword(w) => Some(w.clone()),
            _ => None,
        };
        if name.is_some() {
            self.bump();
        }
        let mut p = IkedPolicy {
            named: name.is_some(),
            name: name.unwrap_or_else(|| format!("policy{}", self.policy_id)),
            origin,
            eval: Eval::Normal,
            mode: Mode::Passive,
            ipcomp: false,
            tmode: TMode::Tunnel,
            natt: false,
            sa_proto: SaProto::Esp,
            af: None,
            protos: Vec::new(),
            rdomain: None,
            flows: Vec::new(),
            local: None,
            peer: None,
            ikesa: Vec::new(),
            childsa: Vec::new(),
            srcid: None,
            dstid: None,
            ikelifetime: None,
            lifetime: None,
            auth: Auth::Default,
            cfg: Vec::new(),
            iface: None,
            tag: None,
            tap: None,
        };
        if p.name.len() > 255 {
            return Err(self.error_at(&start, "name too long".into()));
        }
        // The last clause read, for "out of order" messages.
        let mut last: (u8, String) = (0, "ikev2".into());
        macro_rules! step {
            ($s:expr, $k:expr) => {
                set_last(&mut last, $s, $k)
            };
        }

        // ikeflags is `ikematch ikemode ipcomp tmode natt_force`, then satype and af: each
        // optional, in this order.
        if let Some(w) = self.peek_word() {
            let e = match w.as_str() {
                "quick" => Some(Eval::Quick),
                "skip" => Some(Eval::Skip),
                "default" => Some(Eval::Default),
                _ => None,
            };
            if let Some(e) = e {
                self.bump();
                p.eval = e;
                step!(1, &w);
            }
        }
        if self.eat_kw("passive") {
            step!(2, "passive");
        } else if self.eat_kw("active") {
            p.mode = Mode::Active;
            step!(2, "active");
        }
        if self.eat_kw("ipcomp") {
            p.ipcomp = true;
            step!(3, "ipcomp");
        }
        if self.eat_kw("tunnel") {
            step!(4, "tunnel");
        } else if self.eat_kw("transport") {
            p.tmode = TMode::Transport;
            step!(4, "transport");
        }
        if self.eat_kw("natt") {
            p.natt = true;
            step!(5, "natt");
        }
        if self.eat_kw("esp") {
            step!(6, "esp");
        } else if self.eat_kw("ah") {
            p.sa_proto = SaProto::Ah;
            step!(6, "ah");
        }
        if self.eat_kw("inet") {
            p.af = Some(Af::Inet);
            step!(7, "inet");
        } else if self.eat_kw("inet6") {
            p.af = Some(Af::Inet6);
            step!(7, "inet6");
        }
        // proto
        if self.eat_kw("proto") {
            if self.punct(b'{') {
                loop {
                    p.protos.push(self.protoval()?);
                    if p.protos.len() > MAX_LIST {
                        return Err(self.expected("`}`: too many protocols"));
                    }
                    self.punct(b',');
                    if self.punct(b'}') {
                        break;
                    }
                }
            } else {
                p.protos.push(self.protoval()?);
            }
            step!(8, "proto");
        }
        if self.at_kw("rdomain") {
            self.bump();
            let (n, t) = self.number("a routing domain number after `rdomain`")?;
            p.rdomain = Some(
                u8::try_from(n)
                    .map_err(|_| self.error_at(&t, format!("rdomain outside range: {n}")))?,
            );
            step!(9, "rdomain");
        }
        // `to DST from SRC` is accepted too (parse.y's second `hosts` rule); the comma
        // between flows is optional (`comma: ',' | /* empty */`).
        // hosts_list: one or more `from … to …` (or `to … from …`), commas optional.
        loop {
            let reversed = if self.at_kw("from") {
                false
            } else if self.at_kw("to") {
                true
            } else if p.flows.is_empty() {
                return Err(self.no_flow(&last));
            } else {
                break;
            };
            self.bump();
            let (first, second) = if reversed {
                ("to", "from")
            } else {
                ("from", "to")
            };
            let (a, a_nat, _) = self.flow_host(&format!(
                "an address, network, `any` or `dynamic` after `{first}`"
            ))?;
            let a_port = self.port()?;
            if !self.eat_kw(second) {
                return Err(self.expected(&format!("`{second}` after `{first} {a}`")));
            }
            let (b, b_nat, bt) = self.flow_host(&format!(
                "an address, network, `any` or `dynamic` after `{second}`"
            ))?;
            let b_port = self.port()?;
            let (src, src_port, src_nat, dst, dst_port, dst_nat) = if reversed {
                (b, b_port, b_nat, a, a_port, a_nat)
            } else {
                (a, a_port, a_nat, b, b_port, b_nat)
            };
            if let Some(n) = dst_nat {
                return Err(self.error_at(
                    &bt,
                    format!("no flow NAT support for destination network: {dst} ({n})"),
                ));
            }
            if p.flows.len() >= MAX_LIST {
                return Err(self.error_at(&bt, format!("too many flows (at most {MAX_LIST})")));
            }
            p.flows.push(Flow {
                src,
                src_port,
                src_nat,
                dst,
                dst_port,
            });
            step!(10, "to");
            self.punct(b',');
        }
        // `peer` and `local` in either order, each at most once.
        // peers
        for _ in 0..2 {
            if p.peer.is_none() && self.eat_kw("peer") {
                p.peer = Some(self.anyhost("the peer's address, network or `any` after `peer`")?);
                step!(11, "peer");
            } else if p.local.is_none() && self.eat_kw("local") {
                p.local = Some(self.anyhost("our address, network or `any` after `local`")?);
                step!(11, "local");
            }
        }
        // ike_sas child_sas
        while self.at_kw("ikesa") {
            let t = self.bump();
            let x = self.transforms(true, &t)?;
            if p.ikesa.len() >= MAX_LIST {
                return Err(
                    self.error_at(&t, format!("too many ikesa proposals (at most {MAX_LIST})"))
                );
            }
            p.ikesa.push(x);
            step!(12, "ikesa");
        }
        while self.at_kw("childsa") {
            let t = self.bump();
            let x = self.transforms(false, &t)?;
            if p.childsa.len() >= MAX_LIST {
                return Err(self.error_at(
                    &t,
                    format!("too many childsa proposals (at most {MAX_LIST})"),
                ));
            }
            p.childsa.push(x);
            step!(13, "childsa");
        }
        // ids
        if self.eat_kw("srcid") {
            p.srcid = Some(self.id("an identity after `srcid`")?);
            step!(14, "srcid");
        }
        if self.eat_kw("dstid") {
            p.dstid = Some(self.id("an identity after `dstid`")?);
            step!(14, "dstid");
        }
        // ikelifetime lifetime
        if self.eat_kw("ikelifetime") {
            p.ikelifetime = Some(self.time_spec()?);
            step!(15, "ikelifetime");
        }
        if self.eat_kw("lifetime") {
            let seconds = self.time_spec()?;
            let bytes = if self.eat_kw("bytes") {
                Some(self.byte_spec()?)
            } else {
                None
            };
            p.lifetime = Some(Lifetime { seconds, bytes });
            step!(16, "lifetime");
        }
        // One method at most; without one iked accepts any signature method
        // (IKEV2_AUTH_SIG_ANY).
        // ikeauth
        if self.at_kw("psk") {
            self.bump();
            p.auth = Auth::Psk(self.keyspec()?);
            step!(17, "psk");
        } else if self.eat_kw("eap") {
            let (m, t) = self.string("an EAP method after `eap` (\"mschap-v2\")")?;
            // iked turns `-` into `_` and compares without case: "MSCHAP-V2" is fine.
            if !m.replace('-', "_").eq_ignore_ascii_case("mschap_v2") {
                return Err(self.error_at(
                    &t,
                    format!("unsupported EAP method: {m} (only \"mschap-v2\")"),
                ));
            }
            p.auth = Auth::EapMschapV2;
            step!(17, "eap");
        } else {
            let t = self.peek().clone();
            let m = match &t.kind {
                TokKind::Quoted(s) => Some(s.clone()),
                TokKind::Word(w) if AuthMethod::from_name(w).is_some() || w == "none" => {
                    Some(w.clone())
                }
                _ => None,
            };
            if let Some(m) = m {
                let Some(a) = AuthMethod::from_name(&m) else {
                    return Err(self.error_at(
                        &t,
                        format!(
                            "not a valid authentication mode: {m}: expected psk, eap, rsa, \
                             ecdsa256, ecdsa384, ecdsa521, rfc7427 or signature"
                        ),
                    ));
                };
                self.bump();
                p.auth = Auth::Method(a);
                step!(17, a.name());
            }
        }
        // `config` serves an option to the peer (CFG_REPLY), `request` asks for one
        // (CFG_REQUEST); the attribute depends on the address family (cpxfs).
        // ikecfg
        loop {
            let request = if self.at_kw("config") {
                false
            } else if self.at_kw("request") {
                true
            } else {
                break;
            };
            let kw = if request { "request" } else { "config" };
            self.bump();
            let (opt, ot) = self.string(&format!("a configuration option after `{kw}`"))?;
            let Some(kind) = CfgKind::from_name(&opt) else {
                return Err(self.error_at(
                    &ot,
                    format!(
                        "not a valid ikecfg option: {opt}: expected address, netmask, \
                         name-server, netbios-server, dhcp-server, protected-subnet or \
                         access-server"
                    ),
                ));
            };
            let what = format!("an address after `{kw} {opt}`");
            let addr = if request {
                self.anyhost(&what)?
            } else {
                self.host_spec(&what)?
            };
            let attr = match (&addr, request) {
                (Host::Any, true) => kind.attr(Af::Inet),
                (Host::Addr(_) | Host::Net(..), _) => addr.af().and_then(|af| kind.attr(af)),
                _ => {
                    return Err(
                        self.error_at(&ot, format!("{kw} {opt}: `{addr}` is not an address"))
                    )
                }
            };
            let Some(attr) = attr else {
                return Err(
                    self.error_at(&ot, format!("not a valid ikecfg option: {opt} for {addr}"))
                );
            };
            if p.cfg.len() >= MAX_LIST {
                return Err(
                    self.error_at(&ot, format!("too many config options (at most {MAX_LIST})"))
                );
            }
            p.cfg.push(CfgOption {
                request,
                kind,
                addr,
                attr,
            });
            step!(18, kw);
        }
        if self.eat_kw("iface") {
            p.iface = Some(self.string("an interface name after `iface`")?.0);
            step!(19, "iface");
        }
        // filters
        loop {
            if self.eat_kw("tag") {
                p.tag = Some(self.string("a tag after `tag`")?.0);
                step!(20, "tag");
            } else if self.eat_kw("tap") {
                let (s, t) = self.string("an enc(4) interface after `tap`")?;
                // `tap encN`: iked checks the `enc` prefix and the unit with strtonum().
                let unit = s
                    .strip_prefix("enc")
                    .filter(|u| !u.is_empty() && u.bytes().all(|b| b.is_ascii_digit()));
                let Some(n) = unit.and_then(|u| u.parse::<u32>().ok()) else {
                    return Err(self.error_at(
                        &t,
                        format!("invalid tap interface name: {s} (expected encN)"),
                    ));
                };
                p.tap = Some(n);
                step!(20, "tap");
            } else {
                break;
            }
        }
        // Anything left is out of order or unknown; say which.
        if !matches!(self.peek().kind, TokKind::Newline | TokKind::Eof) {
            return Err(self.out_of_order(&last, "end of line"));
        }
        self.check_peers(&p, &start)?;
        self.bump();
        self.conf.policies.push(p);
        Ok(())
    }

    /// The error for a rule without `from … to …` where it should be.
    fn no_flow(&mut self, last: &(u8, String)) -> ConfError {
        let t = self.peek().clone();
        if let TokKind::Word(w) = &t.kind {
            if stage_of(w).is_some_and(|s| s > 10) {
                return self.error_at(
                    &t,
                    format!(
                        "expected `from SRC to DST` before `{w}`: every ikev2 rule needs a flow"
                    ),
                );
            }
        }
        self.out_of_order(last, "`from SRC to DST` (the flow)")
    }

    /// The error for a token the rule cannot take where it is.
    fn out_of_order(&mut self, last: &(u8, String), wanted: &str) -> ConfError {
        let t = self.peek().clone();
        if let TokKind::Word(w) = &t.kind {
            if let Some(s) = stage_of(w) {
                if s <= last.0 {
                    return self.error_at(
                        &t,
                        format!(
                            "`{w}` cannot come after `{}`: an ikev2 rule takes its clauses in \
                             this order: {CLAUSE_ORDER}",
                            last.1
                        ),
                    );
                }
            }
            if !is_keyword(w) && last.0 < 10 {
                return self.error_at(
                    &t,
                    format!(
                        "expected {wanted}, found `{w}` (a name must come right after `ikev2`)"
                    ),
                );
            }
        }
        let more = expected_after(last.0);
        self.expected(&format!("{wanted} or one of {more}"))
    }

    /// `psk STRING`, `psk 0xHEX`, `psk file "path"`.
    fn keyspec(&mut self) -> PResult<Secret> {
        // `psk file PATH`: parsekeyfile() reads the file as hex digits, without `0x`
        // (what ikectl and openssl rand -hex write); a trailing newline is allowed here.
        let (hex, t) = if self.eat_kw("file") {
            let (path, t) = self.string("a key file name after `psk file`")?;
            match (self.loader)(&path) {
                Ok(s) => {
                    let s = s.trim();
                    (Some(s.strip_prefix("0x").unwrap_or(s).to_string()), t)
                }
                Err(why) => {
                    return Err(self.error_at(&t, format!("cannot read key file {path}: {why}")))
                }
            }
        } else {
            let (text, t) = self.string("a pre-shared key after `psk`")?;
            match text.strip_prefix("0x") {
                Some(h) => (Some(h.to_string()), t),
                None => {
                    let key = text.into_bytes();
                    return self.psk_len(key, &t);
                }
            }
        };
        // parsekey(): two hex digits a byte; iked ignores a last odd digit, we refuse it.
        let hex = hex.unwrap_or_default();
        if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.error_at(
                &t,
                "keys need to be specified in hex digits (an even number of them)".into(),
            ));
        }
        let key = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect();
        self.psk_len(key, &t)
    }

    fn psk_len(&self, key: Vec<u8>, t: &PTok) -> PResult<Secret> {
        let key = Secret::new(key);
        if key.is_empty() || key.len() > MAX_PSK {
            return Err(self.error_at(
                t,
                format!("psk empty or too long (at most {MAX_PSK} bytes)"),
            ));
        }
        Ok(key)
    }

    /// The checks of `create_ike()` on the endpoints.
    fn check_peers(&mut self, p: &IkedPolicy, start: &PTok) -> PResult<()> {
        // iked's create_ike() fails with fatalx() on a family mismatch, taking the
        // daemon down; here it is an ordinary error at the rule.
        let (local, peer) = endpoints(p);
        if local.is_none() && peer.is_none() {
            return Err(self.error_at(
                start,
                "could not get local/peer specification: give `peer` (or a single \
                 `from … to …`)"
                    .into(),
            ));
        }
        if let (Some(a), Some(b)) = (local.and_then(Host::af), peer.and_then(Host::af)) {
            if a != b {
                return Err(self.error_at(start, "local and peer address families differ".into()));
            }
        }
        if let Some(af) = p.af {
            if [local, peer]
                .iter()
                .flatten()
                .any(|h| h.af().is_some_and(|x| x != af))
            {
                return Err(self.error_at(
                    start,
                    "policy address family mismatch: local or peer is not of the rule's \
                     inet/inet6"
                        .into(),
                ));
            }
        }
        if p.mode == Mode::Active {
            // An active rule initiates, so it needs one peer to send to (a name resolves to
            // one in iked), and a local address that is not a network.
            let peer_ok = matches!(peer, Some(Host::Addr(_)) | Some(Host::Name(_)));
            let local_ok = !matches!(local, Some(Host::Net(..)));
            if !peer_ok || !local_ok {
                return Err(self.error_at(
                    start,
                    "active mode requires local/peer address (not a network or `any`)".into(),
                ));
            }
        }
        Ok(())
    }
}
