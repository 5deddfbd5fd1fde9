//! parse.y's `flowrule`, `sarule` and `tcpmd5rule` with their actions (`create_flow`,
//! `create_sa`, `reverse_rule`, `reverse_sa`, `add_sabundle` and the flow half of
//! `set_rule_peers` and `expand_rule`), on the parser of parse.rs.

use super::host::{expand_any, Addr, Af};
use super::kernel::{self, Bundle, Dir, Flow, FlowType, KRule, KRuleKind, KSatype, Sa, SpiError};
use super::lex::{Kw, Tok};
use super::parse::{validate_af, Fail, Parser, MAX_PAIRS, MAX_RULES};
use super::rule::Xfs;

type R<T> = Result<T, Fail>;

/// `bundle_queue`: the first SA of each bundle and the SAs grouped with it since.
pub struct BundleHead {
    src: String,
    dst: String,
    name: String,
    /// (destination, type, SPI) of each member, in order.
    members: Vec<(Addr, KSatype, u32)>,
}

/// `keyspec`'s result: the outbound key and the inbound one after a `:`.
type Keys = (Option<Vec<u8>>, Option<Vec<u8>>);

impl Parser {
    /// `ipsecctl_add_rule` for a kernel rule: kept, and printed under `-v`.
    fn add_krule(&mut self, kind: KRuleKind) {
        let r = KRule {
            nr: self.next_nr(),
            file: self.lex.file_name().to_string(),
            line: self.lex.lineno,
            kind,
        };
        if self.print_rules {
            kernel::print_rule(&r, self.popts, self.vv, &mut self.stdout);
        }
        self.kernel.push(r);
    }

    fn satype(&mut self) -> KSatype {
        for (k, t) in [
            (Kw::Esp, KSatype::Esp),
            (Kw::Ah, KSatype::Ah),
            (Kw::Ipcomp, KSatype::Ipcomp),
            (Kw::Ipip, KSatype::Ipip),
        ] {
            if self.accept(k) {
                return t;
            }
        }
        KSatype::Esp
    }

    /// `FLOW satype dir proto hosts peers ids type`.
    pub(super) fn flowrule(&mut self) -> R<()> {
        let satype = self.satype();
        let dir = if self.accept(Kw::In) {
            Dir::In
        } else if self.accept(Kw::Out) {
            Dir::Out
        } else {
            Dir::InOut
        };
        let proto = self.proto()?;
        let (srcs, sport, dsts, dport) = self.hosts()?;
        let (local, peer) = self.peers()?;
        let (srcid, dstid) = self.ids()?;
        let mut ftype = None;
        if self.accept(Kw::Type) {
            let t = match self.take() {
                Tok::Kw(Kw::Use) => FlowType::Use,
                Tok::Kw(Kw::Acquire) => FlowType::Acquire,
                Tok::Kw(Kw::Require) => FlowType::Require,
                Tok::Kw(Kw::Deny) => FlowType::Deny,
                Tok::Kw(Kw::Bypass) => FlowType::Bypass,
                Tok::Kw(Kw::Dontacq) => FlowType::Dontacq,
                t => {
                    self.unget(t);
                    return Err(Fail::Syntax);
                }
            };
            ftype = Some(t);
        }
        self.expect_nl()?;

        // create_flow
        if (sport != 0 || dport != 0) && proto != 6 && proto != 17 {
            // YYERROR with the newline as lookahead: recovery ends on this line.
            self.lex
                .yyerror("no protocol supplied with source/destination ports");
            return Ok(());
        }
        let flowtype = ftype.unwrap_or(match satype {
            KSatype::Ipcomp | KSatype::Ipip => FlowType::Use,
            _ => FlowType::Require,
        });
        let auth = if matches!(flowtype, FlowType::Deny | FlowType::Bypass) {
            None
        } else {
            Some((srcid, dstid))
        };
        let flow = Flow {
            satype,
            dir: if dir == Dir::In { Dir::In } else { Dir::Out },
            proto,
            src: Addr::any(),
            sport,
            dst: Addr::any(),
            dport,
            local: None,
            peer: None,
            auth,
            flowtype,
            collapsed_src: Vec::new(),
            collapsed_dst: Vec::new(),
        };
        let Some((srcs, dsts)) = self.expand_hosts(srcs, dsts) else {
            return Ok(());
        };
        let mut added = 0;
        for s in &srcs {
            for d in &dsts {
                if s.af != d.af {
                    continue;
                }
                let mut f = flow.clone();
                f.src = s.clone();
                f.dst = d.clone();
                if !self.flow_peers(&mut f, &local, &peer) {
                    return Ok(());
                }
                let rev = (dir == Dir::InOut).then(|| reverse_flow(&f));
                self.add_krule(KRuleKind::Flow(f));
                if let Some(r) = rev {
                    self.add_krule(KRuleKind::Flow(r));
                }
                added += 1;
                if self.kernel.len() > MAX_RULES {
                    return Ok(());
                }
            }
        }
        if added == 0 {
            self.lex.yyerror("rule expands to no valid combination");
        }
        Ok(())
    }

    /// `validate_af` and `expand_any` of `expand_rule`; None when reported.
    fn expand_hosts(&mut self, srcs: Vec<Addr>, dsts: Vec<Addr>) -> Option<(Vec<Addr>, Vec<Addr>)> {
        if validate_af(&srcs, &dsts) {
            self.lex
                .yyerror("source/destination address families do not match");
            return None;
        }
        let (srcs, dsts) = (expand_any(srcs), expand_any(dsts));
        if srcs.len().saturating_mul(dsts.len()) > MAX_PAIRS {
            self.lex.yyerror("rule expands to too many combinations");
            return None;
        }
        Some((srcs, dsts))
    }

    /// `set_rule_peers` for a flow: false when it has no peer (reported).
    fn flow_peers(&mut self, f: &mut Flow, local: &Option<Addr>, peer: &Option<Addr>) -> bool {
        if matches!(f.flowtype, FlowType::Deny | FlowType::Bypass) {
            return true;
        }
        f.local = local.clone();
        f.peer = peer.clone();
        if f.peer.is_none() {
            let remote = if f.dir == Dir::In { &f.src } else { &f.dst };
            if !remote.netaddress {
                f.peer = Some(remote.clone());
            }
        }
        if f.peer.is_none() {
            self.lex
                .yyerror(&format!("no peer specified for destination {}", f.dst.name));
            return false;
        }
        if f.peer.as_ref().is_some_and(|p| p.af == Af::Unspec) {
            f.peer = None;
        }
        true
    }

    /// `spispec: SPI STRING | SPI NUMBER`: (outbound, inbound) SPIs.
    fn spispec(&mut self) -> R<(u32, u32)> {
        if !self.accept(Kw::Spi) {
            return Err(Fail::Syntax);
        }
        match self.take() {
            Tok::Num(n) => match kernel::number_spi(n) {
                Ok(v) => Ok((v, 0)),
                Err(m) => {
                    self.lex.yyerror(&m);
                    Err(Fail::Reported)
                }
            },
            Tok::Str(s) => {
                let (out, inb) = match s.split_once(':') {
                    Some((o, i)) => (o, Some(i)),
                    None => (s.as_str(), None),
                };
                let mut one = |v: &str| match kernel::atospi(v) {
                    Ok(x) => Ok(x),
                    Err(SpiError::Silent) => Err(Fail::Reported),
                    Err(SpiError::Msg(m)) => {
                        self.lex.yyerror(&m);
                        Err(Fail::Reported)
                    }
                };
                let spiin = match inb {
                    Some(i) => one(i)?,
                    None => 0,
                };
                Ok((one(out)?, spiin))
            }
            t => {
                self.unget(t);
                Err(Fail::Syntax)
            }
        }
    }

    /// `keyspec: STRING | FILENAME STRING`, after AUTHKEY or ENCKEY.
    fn keyspec(&mut self, kw: Kw) -> R<Keys> {
        if !self.accept(kw) {
            return Ok((None, None));
        }
        let mut errors = Vec::new();
        let keys = if self.accept(Kw::File) {
            let s = self.string()?;
            let (out, inb) = match s.split_once(':') {
                Some((o, i)) => (o, Some(i)),
                None => (s.as_str(), None),
            };
            let inb = match inb {
                Some(i) => Some(kernel::parsekeyfile(i, &mut errors).map_err(Fail::Fatal)?),
                None => None,
            };
            let out = kernel::parsekeyfile(out, &mut errors).map_err(Fail::Fatal)?;
            (Some(out), inb)
        } else {
            let s = self.string()?;
            let strip =
                |k: &str| -> Vec<u8> { k.strip_prefix("0x").unwrap_or(k).as_bytes().to_vec() };
            let (out, inb) = match s.split_once(':') {
                Some((o, i)) => (o, Some(i)),
                None => (s.as_str(), None),
            };
            let inb = inb.map(|i| kernel::parsekey(&strip(i), &mut errors));
            (Some(kernel::parsekey(&strip(out), &mut errors)), inb)
        };
        for e in errors {
            self.lex.yyerror(&e);
        }
        Ok(keys)
    }

    /// `TCPMD5 hosts spispec authkeyspec`.
    pub(super) fn tcpmd5rule(&mut self) -> R<()> {
        let (srcs, _, dsts, _) = self.hosts()?;
        let (spiout, spiin) = self.spispec()?;
        let (akout, akin) = self.keyspec(Kw::Authkey)?;
        self.expect_nl()?;
        let sa = Sa {
            satype: KSatype::Tcpmd5,
            tunnel: false,
            src: Addr::any(),
            dst: Addr::any(),
            spi: spiout,
            udpencap: None,
            xfs: None,
            authkey: akout,
            enckey: None,
        };
        self.sa_rule(sa, srcs, dsts, (spiin, akin, None), None)
    }

    /// `satype tmode hosts spispec udpencap transforms authkeyspec enckeyspec
    /// bundlestring`.
    pub(super) fn sarule(&mut self) -> R<()> {
        let satype = self.satype();
        let tunnel = if self.accept(Kw::Transport) {
            false
        } else {
            self.accept(Kw::Tunnel);
            true
        };
        let (srcs, _, dsts, _) = self.hosts()?;
        let (spiout, spiin) = self.spispec()?;
        let udpencap = if self.accept(Kw::Udpencap) {
            if self.accept(Kw::Port) {
                match self.take() {
                    Tok::Num(n) => Some(n as u16),
                    t => {
                        self.unget(t);
                        return Err(Fail::Syntax);
                    }
                }
            } else {
                Some(0)
            }
        } else {
            None
        };
        let xfs: Xfs = self.transforms()?;
        let (akout, akin) = self.keyspec(Kw::Authkey)?;
        let (ekout, ekin) = self.keyspec(Kw::Enckey)?;
        let bundle = if self.accept(Kw::Bundle) {
            Some(self.string()?)
        } else {
            None
        };
        self.expect_nl()?;
        let sa = Sa {
            satype,
            tunnel,
            src: Addr::any(),
            dst: Addr::any(),
            spi: spiout,
            udpencap,
            xfs: Some(xfs),
            authkey: akout,
            enckey: ekout,
        };
        self.sa_rule(sa, srcs, dsts, (spiin, akin, ekin), bundle)
    }

    /// `create_sa` and `expand_rule` for an SA: each pair, its reverse SA when an
    /// inbound SPI or key was given, and the bundles.
    fn sa_rule(
        &mut self,
        mut sa: Sa,
        srcs: Vec<Addr>,
        dsts: Vec<Addr>,
        rev: (u32, Option<Vec<u8>>, Option<Vec<u8>>),
        bundle: Option<String>,
    ) -> R<()> {
        if let Err(m) = kernel::validate_sa(
            sa.spi,
            sa.satype,
            &mut sa.xfs,
            sa.authkey.as_deref(),
            sa.enckey.as_deref(),
            !sa.tunnel,
        ) {
            // YYERROR with the newline as lookahead: recovery ends on this line.
            self.lex.yyerror(&m);
            return Ok(());
        }
        let Some((srcs, dsts)) = self.expand_hosts(srcs, dsts) else {
            return Ok(());
        };
        let (spiin, akin, ekin) = rev;
        let mut added = 0;
        for s in &srcs {
            for d in &dsts {
                if s.af != d.af {
                    continue;
                }
                let mut r = sa.clone();
                r.src = s.clone();
                r.dst = d.clone();
                self.add_sa(r.clone(), bundle.as_deref());
                if spiin != 0 || akin.is_some() || ekin.is_some() {
                    // reverse_sa
                    let mut xfs = r.xfs.clone();
                    if let Err(m) = kernel::validate_sa(
                        spiin,
                        r.satype,
                        &mut xfs,
                        akin.as_deref(),
                        ekin.as_deref(),
                        !r.tunnel,
                    ) {
                        self.lex.yyerror(&m);
                        return Err(Fail::Fatal("sarule: expand_rule".into()));
                    }
                    let back = Sa {
                        src: r.dst.clone(),
                        dst: r.src.clone(),
                        spi: spiin,
                        xfs,
                        authkey: akin.clone(),
                        enckey: ekin.clone(),
                        ..r
                    };
                    self.add_sa(back, bundle.as_deref());
                }
                added += 1;
                if self.kernel.len() > MAX_RULES {
                    return Ok(());
                }
            }
        }
        if added == 0 {
            self.lex.yyerror("rule expands to no valid combination");
        }
        Ok(())
    }

    /// Adds an SA rule, then `add_sabundle` when it names a bundle.
    fn add_sa(&mut self, sa: Sa, bundle: Option<&str>) {
        let member = (sa.dst.clone(), sa.satype, sa.spi);
        let (src, dst) = (sa.src.name.clone(), sa.dst.name.clone());
        self.add_krule(KRuleKind::Sa(sa));
        let Some(name) = bundle else {
            return;
        };
        let found = self
            .bundles
            .iter()
            .position(|b| b.src == src && b.dst == dst && b.name == name);
        match found {
            Some(i) => {
                let head = &mut self.bundles[i];
                let Some(last) = head.members.last().cloned() else {
                    return;
                };
                head.members.push(member.clone());
                let b = Bundle {
                    proto: last.1,
                    dst: last.0,
                    spi: last.2,
                    proto2: member.1,
                    dst2: member.0,
                    spi2: member.2,
                };
                self.add_krule(KRuleKind::Bundle(b));
            }
            None => self.bundles.push(BundleHead {
                src,
                dst,
                name: name.to_string(),
                members: vec![member],
            }),
        }
    }
}

/// `reverse_rule`: the other direction, with the same peer and identities.
fn reverse_flow(f: &Flow) -> Flow {
    Flow {
        dir: if f.dir == Dir::Out { Dir::In } else { Dir::Out },
        src: f.dst.clone(),
        dst: f.src.clone(),
        sport: f.dport,
        dport: f.sport,
        ..f.clone()
    }
}
