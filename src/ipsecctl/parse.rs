//! The ipsec.conf(5) grammar of OpenBSD's `sbin/ipsecctl/parse.y` (v1.184), by hand:
//! one statement per line (`include`, macro definitions, `ike` rules), the yacc
//! actions' checks and messages (`create_ike`, `set_rule_peers`, `expand_rule`), and
//! yacc's error recovery (report, skip to the end of the line, go on, fail at the end).
//!
//! `flow`, `sa` and `tcpmd5` rules are read by sarule.rs into kernel rules (kernel.rs).

use super::host::{self, expand_any, Addr, Af, HostError};
use super::kernel::{KRule, PrintOpts};
use super::lex::{Kw, Lexer, Tok};
use super::rule::{
    parse_xf, Exch, IdType, IkeAuth, IkeMode, Phase, Rule, SaType, Tmode, Xfs, AUTHXFS, COMPXFS,
    ENCXFS, GROUPXFS,
};

/// The most rules one file may expand to (a guard against `{ ... } x { ... }` bombs).
pub const MAX_RULES: usize = 100_000;
/// The most source/destination pairs one rule may be checked for.
pub const MAX_PAIRS: usize = 10_000_000;

/// How a statement failed: `Syntax` enters yacc's error recovery, `Fatal` is one of
/// ipsecctl's err(3) exits.
#[derive(Debug)]
pub enum Fail {
    Syntax,
    /// Error already reported; recover like YYERROR.
    Reported,
    Fatal(String),
}

type R<T> = Result<T, Fail>;

/// The default-peer rule `set_rule_peers` compares later default-peer rules with.
struct DefaultPeer {
    local: Option<String>,
    auth: IkeAuth,
    p1ie: Exch,
    srcid: Option<String>,
    dstid: Option<String>,
}

/// A rule before expansion: lists of sources and destinations.
struct Proto {
    rule: Rule,
    srcs: Vec<Addr>,
    dsts: Vec<Addr>,
}

pub type OnRule = Box<dyn FnMut(&mut Rule, &mut String, &mut String)>;

pub struct Parser {
    pub lex: Lexer,
    pub(super) tok: Option<Tok>,
    /// `-v`: macro definitions and rules are printed as they are read.
    pub verbose: bool,
    pub rules: Vec<Rule>,
    /// `flow`, `sa`, `tcpmd5` rules and SA bundles, in order.
    pub kernel: Vec<KRule>,
    /// `ipsecctl_add_rule` prints kernel rules (`-v` without `-s`), `-vv` numbered.
    pub print_rules: bool,
    pub vv: bool,
    pub popts: PrintOpts,
    pub(super) bundles: Vec<super::sarule::BundleHead>,
    /// Every rule, as it is added, goes through this (the C's `ipsecctl_add_rule`), with
    /// the parser's stdout and stderr so that what it prints keeps its place.
    pub on_rule: OnRule,
    pub stdout: String,
    default_peer: Option<DefaultPeer>,
    /// Host names go to the resolver (see [`super::Opts::no_dns`]).
    pub dns: bool,
    rule_nr: u32,
}

impl Parser {
    pub fn new(lex: Lexer, verbose: bool, on_rule: OnRule) -> Parser {
        Parser {
            lex,
            tok: None,
            verbose,
            rules: Vec::new(),
            kernel: Vec::new(),
            print_rules: false,
            vv: false,
            popts: PrintOpts::default(),
            bundles: Vec::new(),
            on_rule,
            stdout: String::new(),
            default_peer: None,
            dns: true,
            rule_nr: 0,
        }
    }

    /// The next rule number (`ipsec->rule_nr++`).
    pub(super) fn next_nr(&mut self) -> u32 {
        let n = self.rule_nr;
        self.rule_nr = self.rule_nr.saturating_add(1);
        n
    }

    pub(super) fn unget(&mut self, t: Tok) {
        self.tok = Some(t);
    }

    fn peek(&mut self) -> &Tok {
        if self.tok.is_none() {
            self.tok = Some(self.lex.token());
        }
        self.tok.as_ref().unwrap_or(&Tok::Eof)
    }

    pub(super) fn take(&mut self) -> Tok {
        match self.tok.take() {
            Some(t) => t,
            None => self.lex.token(),
        }
    }

    pub(super) fn accept(&mut self, k: Kw) -> bool {
        if *self.peek() == Tok::Kw(k) {
            self.tok = None;
            true
        } else {
            false
        }
    }

    fn accept_ch(&mut self, c: u8) -> bool {
        if *self.peek() == Tok::Ch(c) {
            self.tok = None;
            true
        } else {
            false
        }
    }

    pub(super) fn string(&mut self) -> R<String> {
        match self.take() {
            Tok::Str(s) => Ok(s),
            t => {
                self.tok = Some(t);
                Err(Fail::Syntax)
            }
        }
    }

    pub(super) fn expect_nl(&mut self) -> R<()> {
        if self.accept_ch(b'\n') {
            Ok(())
        } else {
            Err(Fail::Syntax)
        }
    }

    /// `yyparse`: Ok(()) when the whole input was read, Err(message) on a fatal error.
    pub fn run(&mut self) -> Result<(), String> {
        loop {
            if *self.peek() == Tok::Eof {
                return Ok(());
            }
            match self.statement() {
                Ok(()) => {}
                Err(Fail::Fatal(m)) => return Err(m),
                Err(f) => {
                    if let Fail::Syntax = f {
                        self.lex.yyerror("syntax error");
                    }
                    // yacc: discard tokens up to and including the next newline.
                    self.lex.errors += 1;
                    loop {
                        match self.take() {
                            Tok::Ch(b'\n') => break,
                            Tok::Eof => return Ok(()),
                            _ => {}
                        }
                    }
                }
            }
            if self.rules.len() + self.kernel.len() > MAX_RULES {
                return Err(format!("more than {MAX_RULES} rules"));
            }
        }
    }

    fn statement(&mut self) -> R<()> {
        match self.peek().clone() {
            Tok::Ch(b'\n') => {
                self.tok = None;
                Ok(())
            }
            Tok::Kw(Kw::Include) => {
                self.tok = None;
                let name = self.string()?;
                if !self.lex.push_file(&name) {
                    self.lex.yyerror(&format!("failed to include file {name}"));
                    return Err(Fail::Reported);
                }
                self.lex.lungetc(i32::from(b'\n'));
                self.expect_nl()
            }
            Tok::Kw(Kw::Ike) => {
                self.tok = None;
                self.ikerule()
            }
            Tok::Kw(Kw::Flow) => {
                self.tok = None;
                self.flowrule()
            }
            Tok::Kw(Kw::Tcpmd5) => {
                self.tok = None;
                self.tcpmd5rule()
            }
            Tok::Kw(
                Kw::Esp
                | Kw::Ah
                | Kw::Ipcomp
                | Kw::Ipip
                | Kw::Tunnel
                | Kw::Transport
                | Kw::From
                | Kw::To,
            ) => self.sarule(),
            Tok::Str(_) => self.varset(),
            _ => Err(Fail::Syntax),
        }
    }

    /// `varset: STRING '=' string`.
    fn varset(&mut self) -> R<()> {
        let name = self.string()?;
        if !self.accept_ch(b'=') {
            return Err(Fail::Syntax);
        }
        let mut val = self.string()?;
        while let Tok::Str(_) = self.peek() {
            let s = self.string()?;
            val.push(' ');
            val.push_str(&s);
            if val.len() > 1 << 20 {
                return Err(Fail::Fatal("macro value too long".into()));
            }
        }
        self.expect_nl()?;
        if self.verbose {
            self.stdout.push_str(&format!("{name} = \"{val}\"\n"));
        }
        if name.chars().skip(1).any(|c| c.is_ascii_whitespace()) {
            self.lex.yyerror("macro name cannot contain whitespace");
            return Ok(());
        }
        self.lex.symset(&name, &val, false);
        Ok(())
    }

    fn ikerule(&mut self) -> R<()> {
        let ikemode = if self.accept(Kw::Passive) {
            IkeMode::Passive
        } else if self.accept(Kw::Dynamic) {
            IkeMode::Dynamic
        } else {
            self.accept(Kw::Active);
            IkeMode::Active
        };
        if self.accept(Kw::Interface) {
            return self.ike_iface(ikemode);
        }
        let satype = if self.accept(Kw::Esp) {
            SaType::Esp
        } else if self.accept(Kw::Ah) {
            SaType::Ah
        } else if self.accept(Kw::Ipcomp) {
            SaType::Ipcomp
        } else if self.accept(Kw::Ipip) {
            SaType::Ipip
        } else {
            SaType::Esp
        };
        let tmode = if self.accept(Kw::Transport) {
            Tmode::Transport
        } else {
            self.accept(Kw::Tunnel);
            Tmode::Tunnel
        };
        let proto = self.proto()?;
        let (srcs, sport, dsts, dport) = self.hosts()?;
        let (local, peer) = self.peers()?;
        let p1 = self.phase1mode()?;
        let p2 = self.phase2mode()?;
        let (srcid, dstid) = self.ids()?;
        let ikeauth = self.ikeauth()?;
        let tag = if self.accept(Kw::Tag) {
            Some(self.string()?)
        } else {
            None
        };
        self.expect_nl()?;

        // create_ike
        if (sport != 0 || dport != 0) && proto != 6 && proto != 17 {
            self.lex
                .yyerror("no protocol supplied with source/destination ports");
            return Ok(());
        }
        if let Some(x) = &p2.xfs {
            if let (Some(e), Some(_)) = (x.enc, x.auth) {
                if e.noauth {
                    self.lex
                        .yyerror(&format!("authentication is implicit for {}", e.name));
                    return Ok(());
                }
            }
        }
        let rule = Rule {
            nr: 0,
            proto,
            sport,
            dport,
            src: Addr::any(),
            dst: Addr::any(),
            satype,
            tmode,
            ikemode,
            p1,
            p2,
            srcid: srcid.map(|s| {
                let t = IdType::of(&s);
                (s, t)
            }),
            dstid: dstid.map(|s| {
                let t = IdType::of(&s);
                (s, t)
            }),
            ikeauth,
            tag,
            iface: None,
            local: None,
            peer: None,
        };
        self.expand(Proto { rule, srcs, dsts }, local, peer);
        Ok(())
    }

    /// `IKE ikemode iface peers phase1mode phase2mode ids ikeauth`.
    fn ike_iface(&mut self, ikemode: IkeMode) -> R<()> {
        let name = self.string()?;
        let unit = match name.strip_prefix("sec").filter(|u| !u.is_empty()) {
            None => {
                self.lex.yyerror("invalid sec interface name");
                return Err(Fail::Reported);
            }
            Some(u) => match u.parse::<i64>() {
                Ok(n) if (0..=i64::from(u32::MAX)).contains(&n) => n as u32,
                Ok(n) => {
                    let why = if n < 0 { "too small" } else { "too large" };
                    self.lex
                        .yyerror(&format!("invalid sec interface unit: {why}"));
                    return Err(Fail::Reported);
                }
                Err(_) => {
                    self.lex.yyerror("invalid sec interface unit: invalid");
                    return Err(Fail::Reported);
                }
            },
        };
        let (local, peer) = self.peers()?;
        let p1 = self.phase1mode()?;
        let p2 = self.phase2mode()?;
        let (srcid, dstid) = self.ids()?;
        let ikeauth = self.ikeauth()?;
        self.expect_nl()?;
        let zero = || Addr {
            af: Af::V4,
            name: "0.0.0.0/0".into(),
            netaddress: true,
            bits: 0,
            srcnat: None,
            ifaddr: None,
        };
        let rule = Rule {
            nr: 0,
            proto: 0,
            sport: 0,
            dport: 0,
            src: zero(),
            dst: zero(),
            satype: SaType::Esp,
            tmode: Tmode::Tunnel,
            ikemode,
            p1,
            p2,
            srcid: srcid.map(|s| {
                let t = IdType::of(&s);
                (s, t)
            }),
            dstid: dstid.map(|s| {
                let t = IdType::of(&s);
                (s, t)
            }),
            ikeauth,
            tag: None,
            iface: Some(unit),
            local: None,
            peer: None,
        };
        let (srcs, dsts) = (vec![zero()], vec![zero()]);
        self.expand(Proto { rule, srcs, dsts }, local, peer);
        Ok(())
    }

    /// `expand_rule` with `set_rule_peers`: one rule per source and destination of the
    /// same family, each added (and printed) at once.
    fn expand(&mut self, p: Proto, local: Option<Addr>, peer: Option<Addr>) {
        if validate_af(&p.srcs, &p.dsts) {
            self.lex
                .yyerror("source/destination address families do not match");
            return;
        }
        let srcs = expand_any(p.srcs);
        let dsts = expand_any(p.dsts);
        // Bounded work: a pair of huge lists of mixed families would otherwise loop
        // over every combination only to skip most of them.
        if srcs.len().saturating_mul(dsts.len()) > MAX_PAIRS {
            self.lex.yyerror("rule expands to too many combinations");
            return;
        }
        let mut added = 0;
        for s in &srcs {
            for d in &dsts {
                if s.af != d.af {
                    continue;
                }
                let mut r = p.rule.clone();
                r.src = s.clone();
                r.dst = d.clone();
                self.set_rule_peers(&mut r, &local, &peer);
                r.nr = self.rule_nr;
                self.rule_nr = self.rule_nr.saturating_add(1);
                (self.on_rule)(&mut r, &mut self.stdout, &mut self.lex.stderr);
                self.rules.push(r);
                added += 1;
                if self.rules.len() > MAX_RULES {
                    return;
                }
            }
        }
        if added == 0 {
            self.lex.yyerror("rule expands to no valid combination");
        }
    }

    fn set_rule_peers(&mut self, r: &mut Rule, local: &Option<Addr>, peer: &Option<Addr>) {
        r.local = local.clone();
        r.peer = peer.clone();
        if r.peer.is_none() && !r.dst.netaddress {
            r.peer = Some(r.dst.clone());
        }
        if r.peer.as_ref().is_some_and(|p| p.af == Af::Unspec) {
            r.peer = None;
        }
        if r.peer.is_some() {
            return;
        }
        let me = DefaultPeer {
            local: r.local.as_ref().map(|l| l.name.clone()),
            auth: r.ikeauth.clone(),
            p1ie: r.p1.exch,
            srcid: r.srcid.as_ref().map(|s| s.0.clone()),
            dstid: r.dstid.as_ref().map(|s| s.0.clone()),
        };
        let Some(pdr) = &self.default_peer else {
            self.default_peer = Some(me);
            return;
        };
        let mut warns = Vec::new();
        if pdr.local != me.local {
            warns.push("default peer local mismatch");
        }
        let (a, b) = (&pdr.auth, &me.auth);
        if std::mem::discriminant(a) != std::mem::discriminant(b) {
            warns.push("default peer phase 1 auth mismatch");
        }
        if let (IkeAuth::Psk(x), IkeAuth::Psk(y)) = (a, b) {
            if x != y {
                warns.push("default peer psk mismatch");
            }
        }
        if pdr.p1ie != me.p1ie {
            warns.push("default peer phase 1 mode mismatch");
        }
        if pdr.srcid != me.srcid {
            warns.push("default peer srcid mismatch");
        }
        if pdr.dstid != me.dstid {
            warns.push("default peer dstid mismatch");
        }
        for w in warns {
            self.lex.yywarn(w);
        }
    }

    /// `proto: /* empty */ | PROTO protoval | PROTO ESP | PROTO AH`.
    pub(super) fn proto(&mut self) -> R<u8> {
        if !self.accept(Kw::Proto) {
            return Ok(0);
        }
        match self.take() {
            Tok::Kw(Kw::Esp) => Ok(50),
            Tok::Kw(Kw::Ah) => Ok(51),
            Tok::Str(s) => match host::proto_by_name(&s) {
                Some(p) => Ok(p),
                None => {
                    self.lex.yyerror(&format!("unknown protocol: {s}"));
                    Err(Fail::Reported)
                }
            },
            Tok::Num(n) => {
                if !(0..=255).contains(&n) {
                    self.lex.yyerror("protocol outside range");
                    return Err(Fail::Reported);
                }
                Ok(n as u8)
            }
            t => {
                self.tok = Some(t);
                Err(Fail::Syntax)
            }
        }
    }

    /// `hosts: FROM host port TO host port | TO host port FROM host port`.
    pub(super) fn hosts(&mut self) -> R<(Vec<Addr>, u16, Vec<Addr>, u16)> {
        let from_first = if self.accept(Kw::From) {
            true
        } else if self.accept(Kw::To) {
            false
        } else {
            return Err(Fail::Syntax);
        };
        let a = self.host(0)?;
        let ap = self.port()?;
        if !self.accept(if from_first { Kw::To } else { Kw::From }) {
            return Err(Fail::Syntax);
        }
        let b = self.host(0)?;
        let bp = self.port()?;
        let (src, sport, dst, dport) = if from_first {
            (a, ap, b, bp)
        } else {
            (b, bp, a, ap)
        };
        if let Some(d) = dst.iter().find(|d| d.srcnat.is_some()) {
            self.lex.yyerror(&format!(
                "no flow NAT support for destination network: {}",
                d.name
            ));
            return Err(Fail::Reported);
        }
        Ok((src, sport, dst, dport))
    }

    /// `host: host_spec | host_spec '(' host_spec ')' | ANY | '{' host_list '}'`.
    fn host(&mut self, depth: u32) -> R<Vec<Addr>> {
        if depth > 32 {
            return Err(Fail::Syntax);
        }
        if self.accept(Kw::Any) {
            return Ok(vec![Addr::any()]);
        }
        if self.accept_ch(b'{') {
            let mut list = self.host(depth + 1)?;
            loop {
                if self.accept_ch(b'}') {
                    return Ok(list);
                }
                self.accept_ch(b',');
                let more = self.host(depth + 1)?;
                list.extend(more);
                if list.len() > MAX_RULES {
                    return Err(Fail::Fatal("host list too long".into()));
                }
            }
        }
        let mut spec = self.host_spec()?;
        if self.accept_ch(b'(') {
            let nat = self.host_spec()?;
            if !self.accept_ch(b')') {
                return Err(Fail::Syntax);
            }
            let (Some(first), Some(n)) = (spec.first_mut(), nat.into_iter().next()) else {
                return Err(Fail::Syntax);
            };
            if n.af != first.af {
                self.lex.yyerror("Flow NAT address family mismatch");
                return Err(Fail::Reported);
            }
            first.srcnat = Some(Box::new(n));
        }
        Ok(spec)
    }

    /// `host_spec: STRING | STRING '/' NUMBER`.
    fn host_spec(&mut self) -> R<Vec<Addr>> {
        let mut s = self.string()?;
        if self.accept_ch(b'/') {
            match self.take() {
                Tok::Num(n) => s = format!("{s}/{n}"),
                t => {
                    self.tok = Some(t);
                    return Err(Fail::Syntax);
                }
            }
        }
        self.resolve(&s)
    }

    fn resolve(&mut self, s: &str) -> R<Vec<Addr>> {
        match host::host_with(s, self.dns) {
            Ok(v) => Ok(v),
            Err(HostError::Fatal(m)) => Err(Fail::Fatal(m)),
            Err(HostError::NotFound(m)) => {
                self.lex.stderr.push_str(&m);
                self.lex.stderr.push('\n');
                self.lex.yyerror("could not parse host specification");
                Err(Fail::Reported)
            }
        }
    }

    /// `port: /* empty */ | PORT portval`.
    fn port(&mut self) -> R<u16> {
        if !self.accept(Kw::Port) {
            return Ok(0);
        }
        match self.take() {
            Tok::Str(s) => match host::service_by_name(&s) {
                Some(p) => Ok(p),
                None => {
                    self.lex.yyerror(&format!("unknown port: {s}"));
                    Err(Fail::Reported)
                }
            },
            Tok::Num(n) => {
                if !(0..=65535).contains(&n) {
                    self.lex.yyerror("port outside range");
                    return Err(Fail::Reported);
                }
                Ok(n as u16)
            }
            t => {
                self.tok = Some(t);
                Err(Fail::Syntax)
            }
        }
    }

    /// `peers`: (local, peer).
    pub(super) fn peers(&mut self) -> R<(Option<Addr>, Option<Addr>)> {
        if self.accept(Kw::Peer) {
            let p = self.anyhost()?;
            let l = if self.accept(Kw::Local) {
                self.singlehost()?
            } else {
                None
            };
            Ok((l, p))
        } else if self.accept(Kw::Local) {
            let l = self.singlehost()?;
            let p = if self.accept(Kw::Peer) {
                self.anyhost()?
            } else {
                None
            };
            Ok((l, p))
        } else {
            Ok((None, None))
        }
    }

    fn anyhost(&mut self) -> R<Option<Addr>> {
        if self.accept(Kw::Any) {
            return Ok(Some(Addr::any()));
        }
        self.singlehost()
    }

    /// `singlehost: /* empty */ | STRING`.
    fn singlehost(&mut self) -> R<Option<Addr>> {
        if let Tok::Str(_) = self.peek() {
            let s = self.string()?;
            return Ok(self.resolve(&s)?.into_iter().next());
        }
        Ok(None)
    }

    /// `transforms`: any of `auth`, `enc`, `comp`, `group`, each once.
    pub(super) fn transforms(&mut self) -> R<Xfs> {
        let mut x = Xfs::default();
        loop {
            let (slot, table, what) = if self.accept(Kw::Auth) {
                (&mut x.auth, AUTHXFS, "auth")
            } else if self.accept(Kw::Enc) {
                (&mut x.enc, ENCXFS, "enc")
            } else if self.accept(Kw::Comp) {
                (&mut x.comp, COMPXFS, "comp")
            } else if self.accept(Kw::Group) {
                (&mut x.group, GROUPXFS, "group")
            } else {
                return Ok(x);
            };
            let s = self.string()?;
            if slot.is_some() {
                self.lex.yyerror(&format!("{what} already set"));
            } else {
                *slot = parse_xf(&s, table);
                if slot.is_none() {
                    self.lex.yyerror(&format!("{s} not a valid transform"));
                }
            }
        }
    }

    /// `lifetime: /* empty */ | LIFETIME NUMBER | LIFETIME STRING`.
    fn lifetime(&mut self) -> R<i32> {
        if !self.accept(Kw::Lifetime) {
            return Ok(-1);
        }
        match self.take() {
            Tok::Num(n) => Ok(n as i32),
            Tok::Str(s) => parse_life(&s).map_err(Fail::Fatal),
            t => {
                self.tok = Some(t);
                Err(Fail::Syntax)
            }
        }
    }

    fn phase1mode(&mut self) -> R<Phase> {
        let exch = if self.accept(Kw::Main) {
            Exch::Main
        } else if self.accept(Kw::Aggressive) {
            Exch::Aggressive
        } else {
            return Ok(Phase {
                exch: Exch::Main,
                xfs: None,
                life: -1,
            });
        };
        let xfs = self.transforms()?;
        let life = self.lifetime()?;
        Ok(Phase {
            exch,
            xfs: Some(xfs),
            life,
        })
    }

    fn phase2mode(&mut self) -> R<Phase> {
        if !self.accept(Kw::Quick) {
            return Ok(Phase {
                exch: Exch::Quick,
                xfs: None,
                life: -1,
            });
        }
        let xfs = self.transforms()?;
        let life = self.lifetime()?;
        Ok(Phase {
            exch: Exch::Quick,
            xfs: Some(xfs),
            life,
        })
    }

    /// `ids: SRCID id DSTID id | SRCID id | DSTID id | /* empty */`.
    pub(super) fn ids(&mut self) -> R<(Option<String>, Option<String>)> {
        let mut src = None;
        if self.accept(Kw::Srcid) {
            src = Some(self.string()?);
        }
        let dst = if self.accept(Kw::Dstid) {
            Some(self.string()?)
        } else {
            None
        };
        Ok((src, dst))
    }

    /// `ikeauth: /* empty */ | RSA | PSK STRING`.
    fn ikeauth(&mut self) -> R<IkeAuth> {
        if self.accept(Kw::Psk) {
            return Ok(IkeAuth::Psk(self.string()?));
        }
        self.accept(Kw::Rsa);
        Ok(IkeAuth::Rsa)
    }
}

/// `validate_af`: true when the families cannot match (unless a side has `any`).
pub(super) fn validate_af(src: &[Addr], dst: &[Addr]) -> bool {
    if src.iter().chain(dst).any(|a| a.af == Af::Unspec) {
        return false;
    }
    let has = |l: &[Addr], af| l.iter().any(|a| a.af == af);
    has(src, Af::V4) != has(dst, Af::V4) && has(src, Af::V6) != has(dst, Af::V6)
}

/// `parse_life`: `sscanf("%d%c")` with units m and h.
pub fn parse_life(s: &str) -> Result<i32, String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && (b[i] as char).is_ascii_whitespace() {
        i += 1;
    }
    let start = i;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let ds = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == ds {
        return Err(format!("invalid time specification: {s}"));
    }
    let secs = s[start..i]
        .parse::<i64>()
        .map(|v| v as i32)
        .unwrap_or(if b[start] == b'-' { i32::MIN } else { i32::MAX });
    match b.get(i) {
        None => Ok(secs),
        Some(u) => match u.to_ascii_lowercase() {
            b'm' => Ok(secs.wrapping_mul(60)),
            b'h' => Ok(secs.wrapping_mul(3600)),
            _ => Err("invalid time unit".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> (Parser, Result<(), String>) {
        let mut l = Lexer::new();
        l.push_data("t.conf", s.as_bytes().to_vec());
        let mut p = Parser::new(
            l,
            true,
            Box::new(|_r: &mut Rule, _o: &mut String, _e: &mut String| {}),
        );
        let r = p.run();
        (p, r)
    }

    #[test]
    fn lists_expand_source_major() {
        let (p, r) =
            parse("A=\"{ 1.1.1.0/24 2.2.2.0/24 }\"\nike from $A to { 3.3.3.3, 4.4.4.4 }\n");
        assert!(r.is_ok());
        assert_eq!(p.lex.errors, 0, "{}", p.lex.stderr);
        let v: Vec<_> = p
            .rules
            .iter()
            .map(|r| format!("{}>{}", r.src.name, r.dst.name))
            .collect();
        assert_eq!(
            v,
            [
                "1.1.1.0/24>3.3.3.3",
                "1.1.1.0/24>4.4.4.4",
                "2.2.2.0/24>3.3.3.3",
                "2.2.2.0/24>4.4.4.4"
            ]
        );
        assert_eq!(
            p.rules[0].peer.as_ref().map(|a| a.name.as_str()),
            Some("3.3.3.3")
        );
        assert!(p.stdout.starts_with("A = \"{ 1.1.1.0/24 2.2.2.0/24 }\"\n"));
    }

    #[test]
    fn any_and_families() {
        let (p, _) = parse("ike from 3ffe::1 to any peer 1.2.3.4\n");
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.rules[0].dst.name, "::/0");
        let (p, _) = parse("ike from 3ffe::1 to 1.2.3.4\n");
        assert!(
            p.lex.stderr.contains("address families do not match"),
            "{}",
            p.lex.stderr
        );
        assert!(p.lex.errors > 0);
    }

    #[test]
    fn errors_skip_the_line_and_go_on() {
        let (p, r) = parse("ike from 1.1.1.1 to 2.2.2.2 bogus\nike from 1.1.1.1 to 3.3.3.3\n");
        assert!(r.is_ok());
        assert!(
            p.lex.stderr.starts_with("t.conf: 1: syntax error"),
            "{}",
            p.lex.stderr
        );
        assert_eq!(p.rules.len(), 1);
        // A flow becomes two kernel rules (out and in); one without a peer is refused
        // on its line and the next line still counts.
        let (p, _) = parse("flow esp from 1.1.1.1 to 2.2.2.2\n");
        assert_eq!(p.kernel.len(), 2);
        let (p, _) =
            parse("flow esp from 1.1.1.0/24 to 2.2.2.0/24\nflow ah from 1.1.1.1 to 2.2.2.2\n");
        assert!(
            p.lex
                .stderr
                .contains("t.conf: 1: no peer specified for destination 2.2.2.0/24"),
            "{}",
            p.lex.stderr
        );
        assert_eq!(p.kernel.len(), 2);
        let (p, _) = parse("ike from 1.1.1.1 port 80 to 2.2.2.2\n");
        assert!(p.lex.stderr.contains("no protocol supplied"));
        let (p, _) =
            parse("ike esp from 1.1.1.1 to 2.2.2.2 quick enc aes-128-gcm auth hmac-sha1\n");
        assert!(p
            .lex
            .stderr
            .contains("authentication is implicit for aes-128-gcm"));
    }

    #[test]
    fn transforms_take_prefixes() {
        let (p, _) = parse(
            "ike from 1.1.1.1 to 2.2.2.2 main enc 3des auth hmac-sha2 group grp14 lifetime 10m\n",
        );
        let x = p.rules[0].p1.xfs.clone().unwrap_or_default();
        assert_eq!(x.enc.map(|e| e.name), Some("3des-cbc"));
        assert_eq!(x.auth.map(|e| e.name), Some("hmac-sha2-256"));
        assert_eq!(p.rules[0].p1.life, 600);
        let (p, _) = parse("ike from 1.1.1.1 to 2.2.2.2 main enc foo\nike from 1.1.1.1 to 2.2.2.2 main enc aes enc 3des\n");
        assert!(p.lex.stderr.contains("foo not a valid transform"));
        assert!(p.lex.stderr.contains("enc already set"));
    }

    #[test]
    fn life_units() {
        assert_eq!(parse_life("2h"), Ok(7200));
        assert_eq!(parse_life("30"), Ok(30));
        assert!(parse_life("x").is_err());
        assert!(parse_life("5d").is_err());
    }
}
