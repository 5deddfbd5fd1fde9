//! The iked.conf(5) grammar (iked's `parse.y`), by recursive descent over [`super::lex`] tokens.
//!
//! A file is a list of lines: `include`, `set`, `user`, `ikev2` rules and macro
//! definitions; ipsec.conf(5) rules are skipped. The clauses of an `ikev2` rule come in
//! the order of `ikev2rule` in parse.y, each at most once (`ikesa`, `childsa`, `config`,
//! `request`, `tag`, `tap` and the flows may repeat):
//!
//! ```text
//! ikev2 [name] [quick|skip|default] [passive|active] [ipcomp] [tunnel|transport] [natt]
//!       [esp|ah] [inet|inet6] [proto P | proto { P, ... }] [rdomain N]
//!       from SRC [port P] [(NAT)] to DST [port P] [[,] from ... to ...]...
//!       [peer H [local H] | local H [peer H]]
//!       [ikesa [enc X] [auth X] [prf X] [group X]...]... [childsa [enc X] [auth X]
//!       [group X] [esn|noesn]...]... [srcid ID [dstid ID] | dstid ID]
//!       [ikelifetime T] [lifetime T [bytes B]] [psk K | eap "mschap-v2" | rsa | ...]
//!       [config OPT ADDR | request OPT ADDR]... [iface IF] [tag S | tap encN]...
//! ```
//!
//! On an error the rest of the line is skipped and parsing goes on (parse.y's
//! `grammar error '\n'`); the checks iked makes in `create_ike()` (AEAD ciphers with
//! `auth`, ESN in an `ikesa`, active mode without a peer address, …) are made here too,
//! so a file this parser takes is one iked would load.

#![forbid(unsafe_code)]

mod rule;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::lex::{is_keyword, protocol_number, service_port, Lexer, Macros, Tok, TokKind};
use super::{
    lookup_xf, Af, Auth, AuthMethod, CfgKind, CfgOption, ConfError, ConfErrors, Eval, Flow, Host,
    Id, IkedConf, IkedPolicy, Lifetime, Mode, Ocsp, SaProto, Secret, TMode, Transforms, User, Xf,
    AUTH, ESP_ENC, GROUP, IKE_ENC, MAX_ERRORS, MAX_INCLUDE_DEPTH, MAX_INPUT, MAX_LIST,
    MAX_POLICIES, MAX_PSK, PRF,
};

/// Reads an included file (or a `psk file`) by name: its text, or why not.
pub type Loader<'a> = dyn FnMut(&str) -> Result<String, String> + 'a;

/// Most macros defined (iked has no limit).
const MAX_MACROS: usize = 10_000;
/// Longest `srcid`/`dstid` (iked's IKED_ID_SIZE), user name and password.
const MAX_ID: usize = 1024;
const MAX_USER: usize = 255;

/// Parses `text`, called `name` in errors, without includes or command-line macros.
pub fn parse_str(name: &str, text: &str) -> Result<IkedConf, ConfErrors> {
    let mut none = |f: &str| Err(format!("no loader to read {f}"));
    parse_with(name, text, &[], &mut none)
}

/// Parses `text`, called `name` in errors. `defines` are iked's `-D name=value`
/// arguments (split at the last `=`, as `cmdline_symset()`), which definitions in the
/// file do not replace; `loader` reads `include` files and `psk file` keys.
pub fn parse_with(
    name: &str,
    text: &str,
    defines: &[&str],
    loader: &mut Loader<'_>,
) -> Result<IkedConf, ConfErrors> {
    // The macro table is shared by every file: an included file's definitions are
    // seen by the including file after the `include` line, as in iked (one `symhead`).
    let mut p = Parser {
        names: vec![name.to_string()],
        stack: Vec::new(),
        macros: Macros::default(),
        peeked: VecDeque::new(),
        errors: Vec::new(),
        loader,
        conf: IkedConf::default(),
        policy_id: 0,
    };
    for d in defines {
        match d.rfind('=') {
            // cmdline_symset() splits at the last `=`: `-D a=b=c` defines `a=b`.
            Some(i) if i > 0 => p.macros.set(&d[..i], &d[i + 1..], true),
            _ => p.errors.push(ConfError {
                file: "-D".into(),
                line: 0,
                msg: format!("could not parse macro definition `{d}`: expected name=value"),
            }),
        }
    }
    if text.len() > MAX_INPUT {
        p.errors.push(ConfError {
            file: name.into(),
            line: 1,
            msg: format!("file too large: {} bytes, at most {MAX_INPUT}", text.len()),
        });
    } else {
        p.stack.push((0, Lexer::new(text.as_bytes())));
        p.grammar();
    }
    if p.errors.is_empty() {
        Ok(p.conf)
    } else {
        Err(ConfErrors(p.errors))
    }
}

/// A token, and the file it comes from (an index into `Parser::names`).
#[derive(Debug, Clone)]
struct PTok {
    kind: TokKind,
    line: u32,
    file: usize,
}

type PResult<T> = Result<T, ConfError>;

/// Notes clause `step` (keyword `kw`) as the last one read in a rule, for the "out of
/// order" messages: one call at each of the rule parser's clauses.
fn set_last(last: &mut (u8, String), step: u8, kw: &str) {
    last.0 = step;
    last.1.clear();
    last.1.push_str(kw);
}

struct Parser<'a, 'l> {
    /// Every file read, by index; errors name them.
    names: Vec<String>,
    /// The files being read: the top one is current.
    stack: Vec<(usize, Lexer)>,
    macros: Macros,
    peeked: VecDeque<PTok>,
    errors: Vec<ConfError>,
    loader: &'a mut Loader<'l>,
    conf: IkedConf,
    /// Counts every rule, as `create_ike()`'s static `policy_id`: unnamed rules are
    /// `policy<id>`.
    policy_id: usize,
}

/// How a token reads in a message.
fn describe(k: &TokKind) -> String {
    match k {
        TokKind::Word(w) => format!("`{w}`"),
        TokKind::Quoted(s) => format!("\"{s}\""),
        TokKind::Num(n) => format!("number {n}"),
        TokKind::Punct(c) if c.is_ascii_graphic() => format!("`{}`", *c as char),
        TokKind::Punct(b'\r') => "a carriage return (DOS line ends are not allowed)".into(),
        TokKind::Punct(c) => format!("byte 0x{c:02x}"),
        TokKind::Newline => "end of line".into(),
        TokKind::Eof => "end of file".into(),
        TokKind::Error(e) => e.clone(),
    }
}

/// The clauses of an `ikev2` rule by their place in the grammar, for "out of order"
/// errors; a bare (unquoted, non-keyword) string is the authentication method's place.
const STAGES: &[(&str, u8)] = &[
    ("quick", 1),
    ("skip", 1),
    ("default", 1),
    ("passive", 2),
    ("active", 2),
    ("ipcomp", 3),
    ("tunnel", 4),
    ("transport", 4),
    ("natt", 5),
    ("esp", 6),
    ("ah", 6),
    ("inet", 7),
    ("inet6", 7),
    ("proto", 8),
    ("rdomain", 9),
    ("from", 10),
    ("to", 10),
    ("peer", 11),
    ("local", 11),
    ("ikesa", 12),
    ("childsa", 13),
    ("srcid", 14),
    ("dstid", 14),
    ("ikelifetime", 15),
    ("lifetime", 16),
    ("psk", 17),
    ("eap", 17),
    ("config", 18),
    ("request", 18),
    ("iface", 19),
    ("tag", 20),
    ("tap", 20),
];

fn stage_of(w: &str) -> Option<u8> {
    STAGES.iter().find(|(k, _)| *k == w).map(|(_, s)| *s)
}

/// The clause keywords that may still come after stage `s`, for "expected" lists.
fn expected_after(s: u8) -> String {
    let mut v: Vec<&str> = STAGES
        .iter()
        .filter(|(_, t)| *t > s || (*t == s && matches!(s, 10 | 12 | 13 | 18 | 20)))
        .map(|(k, _)| *k)
        .collect();
    if s < 17 {
        v.push("rsa");
    }
    v.join(", ")
}

const CLAUSE_ORDER: &str = "name, quick/skip/default, passive/active, ipcomp, \
    tunnel/transport, natt, esp/ah, inet/inet6, proto, rdomain, from/to, peer/local, ikesa, \
    childsa, srcid/dstid, ikelifetime, lifetime, psk/eap/rsa/..., config/request, iface, \
    tag/tap";

impl Parser<'_, '_> {
    // ----- tokens -----

    fn next_raw(&mut self) -> PTok {
        loop {
            let Some((file, lex)) = self.stack.last_mut() else {
                return PTok {
                    kind: TokKind::Eof,
                    line: 0,
                    file: 0,
                };
            };
            let t: Tok = lex.next(&self.macros);
            let file = *file;
            // The end of an included file: back to the includer (parse.y's popfile()). The
            // included file's faked end of line has ended its last statement already.
            if t.kind == TokKind::Eof && self.stack.len() > 1 {
                self.stack.pop();
                continue;
            }
            return PTok {
                kind: t.kind,
                line: t.line,
                file,
            };
        }
    }

    fn peek(&mut self) -> &PTok {
        if self.peeked.is_empty() {
            let t = self.next_raw();
            self.peeked.push_back(t);
        }
        &self.peeked[0]
    }

    // Only `name =` needs two tokens of lookahead, and both are on the same line, so
    // a definition is in the table before the next line is lexed.
    fn peek2(&mut self) -> &PTok {
        while self.peeked.len() < 2 {
            let t = self.next_raw();
            self.peeked.push_back(t);
        }
        &self.peeked[1]
    }

    fn bump(&mut self) -> PTok {
        match self.peeked.pop_front() {
            Some(t) => t,
            None => self.next_raw(),
        }
    }

    fn peek_word(&mut self) -> Option<String> {
        match &self.peek().kind {
            TokKind::Word(w) => Some(w.clone()),
            _ => None,
        }
    }

    fn at_kw(&mut self, kw: &str) -> bool {
        matches!(&self.peek().kind, TokKind::Word(w) if w == kw)
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let yes = self.at_kw(kw);
        if yes {
            self.bump();
        }
        yes
    }

    fn error_at(&self, t: &PTok, msg: String) -> ConfError {
        ConfError {
            file: self.names.get(t.file).cloned().unwrap_or_default(),
            line: t.line,
            msg,
        }
    }

    /// "expected `what`, found X" at the next token (not consumed).
    fn expected(&mut self, what: &str) -> ConfError {
        let t = self.peek().clone();
        let msg = match &t.kind {
            // The lexer's own reason says it better.
            TokKind::Error(e) => e.clone(),
            k => format!("expected {what}, found {}", describe(k)),
        };
        self.error_at(&t, msg)
    }

    /// iked's STRING: a quoted string or an unquoted one that is no keyword.
    fn string(&mut self, what: &str) -> PResult<(String, PTok)> {
        let t = self.peek().clone();
        match &t.kind {
            TokKind::Quoted(s) => {
                self.bump();
                Ok((s.clone(), t))
            }
            // An unquoted keyword is never a STRING in parse.y (lookup() turns it into its
            // token), so `psk esp` is an error there and here; `psk "esp"` is fine.
            TokKind::Word(w) if !is_keyword(w) => {
                self.bump();
                Ok((w.clone(), t))
            }
            TokKind::Word(w) => Err(self.error_at(
                &t,
                format!(
                    "expected {what}, found the keyword `{w}` (quote it to use it as a string)"
                ),
            )),
            _ => Err(self.expected(what)),
        }
    }

    fn number(&mut self, what: &str) -> PResult<(i64, PTok)> {
        let t = self.peek().clone();
        match t.kind {
            TokKind::Num(n) => {
                self.bump();
                Ok((n, t))
            }
            _ => Err(self.expected(what)),
        }
    }

    fn punct(&mut self, c: u8) -> bool {
        let yes = self.peek().kind == TokKind::Punct(c);
        if yes {
            self.bump();
        }
        yes
    }

    fn expect_eol(&mut self, after: &str) -> PResult<()> {
        match self.peek().kind {
            TokKind::Newline => {
                self.bump();
                Ok(())
            }
            TokKind::Eof => Ok(()),
            _ => Err(self.expected(&format!("end of line after {after}"))),
        }
    }

    /// Skips to the next line after an error.
    // parse.y's `grammar error '\n'`: drop the rest of the line, go on with the next.
    // Lexer errors met on the way are not reported again.
    fn recover(&mut self) {
        loop {
            match self.bump().kind {
                TokKind::Newline | TokKind::Eof => return,
                _ => {}
            }
        }
    }

    // ----- lines -----

    fn grammar(&mut self) {
        while self.errors.len() < MAX_ERRORS {
            let t = self.peek().clone();
            let r = match &t.kind {
                TokKind::Eof => break,
                TokKind::Newline => {
                    self.bump();
                    continue;
                }
                TokKind::Word(w) => match w.as_str() {
                    "include" => self.include(),
                    "set" => self.set(),
                    "user" => self.user(),
                    "ikev2" => self.ikev2(),
                    // ipsec.conf(5) rules: parse.y's `otherrule skipline`.
                    // iked reads ipsec.conf(5) too, so it skips the lines of isakmpd and manual
                    // keying rules instead of failing on them.
                    "ike" | "flow" | "tcpmd5" | "sa" | "from" | "to" | "tunnel" | "transport" => {
                        let at = format!(
                            "{}:{}: {w}",
                            self.names.get(t.file).map_or("", |s| s.as_str()),
                            t.line
                        );
                        if self.conf.skipped.len() < MAX_POLICIES {
                            self.conf.skipped.push(at);
                        }
                        self.recover();
                        continue;
                    }
                    // `name = value`: any other word at the start of a line is an error.
                    _ if !is_keyword(w) && self.peek2().kind == TokKind::Punct(b'=') => {
                        self.varset()
                    }
                    _ => Err(self.error_at(
                        &t,
                        format!(
                            "unknown keyword `{w}`: expected ikev2, set, user, include or a \
                             macro definition (name = \"value\")"
                        ),
                    )),
                },
                TokKind::Quoted(_) if self.peek2().kind == TokKind::Punct(b'=') => self.varset(),
                _ => Err(self.expected(
                    "ikev2, set, user, include or a macro definition (name = \"value\")",
                )),
            };
            if let Err(e) = r {
                self.errors.push(e);
                self.recover();
            }
        }
    }

    /// `name = string...`: the strings joined by spaces (parse.y's `varset`).
    fn varset(&mut self) -> PResult<()> {
        let t = self.bump();
        let name = match &t.kind {
            TokKind::Word(w) | TokKind::Quoted(w) => w.clone(),
            _ => String::new(),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(self.error_at(
                &t,
                format!("bad macro name `{name}`: only letters, digits and _ may be used"),
            ));
        }
        self.bump(); // '='
        let mut parts = Vec::new();
        loop {
            let k = self.peek().kind.clone();
            match k {
                TokKind::Newline | TokKind::Eof if !parts.is_empty() => break,
                // parse.y's `string` takes STRINGs only, so `x = 5` is a syntax error there;
                // here the number's text is the value (a superset that cannot change a file
                // iked accepts).
                TokKind::Num(n) => {
                    self.bump();
                    parts.push(n.to_string());
                }
                _ => parts.push(self.string("a macro value (a string)")?.0),
            }
            if parts.len() > MAX_LIST {
                return Err(self.expected("end of line: too many strings in a macro value"));
            }
        }
        if self.macros.len() >= MAX_MACROS && self.macros.get(&name).is_none() {
            return Err(self.error_at(&t, format!("too many macros (at most {MAX_MACROS})")));
        }
        self.macros.set(&name, &parts.join(" "), false);
        self.expect_eol("the macro value")
    }

    fn include(&mut self) -> PResult<()> {
        self.bump();
        let (name, t) = self.string("a file name to include")?;
        self.expect_eol("the file name")?;
        // Errors from here on are reported without skipping a line: the newline is read.
        let err = |p: &mut Self, msg: String| {
            let e = p.error_at(&t, msg);
            p.errors.push(e);
            Ok(())
        };
        // iked has no limit on nesting and no loop check: a file including itself makes
        // it open files until it runs out of descriptors.
        if self.stack.len() > MAX_INCLUDE_DEPTH {
            return err(
                self,
                format!("cannot include {name}: includes nested deeper than {MAX_INCLUDE_DEPTH}"),
            );
        }
        if self.stack.iter().any(|(f, _)| self.names[*f] == name) {
            let mut chain: Vec<&str> = self
                .stack
                .iter()
                .map(|(f, _)| self.names[*f].as_str())
                .collect();
            chain.push(&name);
            let msg = format!("include loop: {}", chain.join(" -> "));
            return err(self, msg);
        }
        match (self.loader)(&name) {
            Ok(text) if text.len() > MAX_INPUT => err(
                self,
                format!("failed to include file {name}: larger than {MAX_INPUT} bytes"),
            ),
            Ok(text) => {
                self.names.push(name);
                self.stack
                    .push((self.names.len() - 1, Lexer::new(text.as_bytes())));
                Ok(())
            }
            Err(why) => err(self, format!("failed to include file {name}: {why}")),
        }
    }

    fn set(&mut self) -> PResult<()> {
        self.bump();
        let t = self.peek().clone();
        let opt = self.peek_word().unwrap_or_default();
        let s = &mut self.conf.settings;
        match opt.as_str() {
            "active" => s.passive = false,
            "passive" => s.passive = true,
            "couple" => s.decouple = false,
            "decouple" => s.decouple = true,
            "fragmentation" => s.fragmentation = true,
            "nofragmentation" => s.fragmentation = false,
            "mobike" => s.mobike = true,
            "nomobike" => s.mobike = false,
            "vendorid" => s.vendor_id = true,
            "novendorid" => s.vendor_id = false,
            "enforcesingleikesa" => s.enforce_single_ikesa = true,
            "noenforcesingleikesa" => s.enforce_single_ikesa = false,
            "stickyaddress" => s.sticky_address = true,
            "nostickyaddress" => s.sticky_address = false,
            "cert_partial_chain" => s.cert_partial_chain = true,
            "ocsp" => {
                self.bump();
                let (url, _) = self.string("the OCSP responder URL")?;
                let mut ocsp = Ocsp {
                    url,
                    tolerate: None,
                    maxage: None,
                };
                if self.eat_kw("tolerate") {
                    ocsp.tolerate = Some(self.time_spec()?);
                    if self.eat_kw("maxage") {
                        ocsp.maxage = Some(self.time_spec()?);
                    }
                }
                self.conf.settings.ocsp = Some(ocsp);
                return self.expect_eol("set ocsp URL [tolerate TIME [maxage TIME]]");
            }
            // NUMBER only (no unit), and iked checks `< 0` only; ours must fit a u32.
            "dpd_check_interval" => {
                self.bump();
                let (n, nt) = self.number("the DPD interval in seconds")?;
                let Ok(n) = u32::try_from(n) else {
                    return Err(self.error_at(&nt, format!("timeout outside range: {n}")));
                };
                self.conf.settings.dpd_check_interval = n;
                return self.expect_eol("set dpd_check_interval N");
            }
            _ => {
                return Err(self.error_at(
                    &t,
                    format!(
                        "unknown set option {}: expected active, passive, couple, decouple, \
                         fragmentation, nofragmentation, mobike, nomobike, vendorid, \
                         novendorid, enforcesingleikesa, noenforcesingleikesa, stickyaddress, \
                         nostickyaddress, cert_partial_chain, ocsp or dpd_check_interval",
                        describe(&t.kind)
                    ),
                ))
            }
        }
        self.bump();
        self.expect_eol(&format!("set {opt}"))
    }

    fn user(&mut self) -> PResult<()> {
        self.bump();
        let (name, t) = self.string("a user name")?;
        let (password, _) = self.string("the user's password")?;
        let password = Secret::new(password.into_bytes());
        if name.is_empty() || name.len() > MAX_USER || password.len() > MAX_USER {
            return Err(self.error_at(
                &t,
                format!("user name or password empty or longer than {MAX_USER} bytes"),
            ));
        }
        self.expect_eol("user NAME PASSWORD")?;
        // create_user() replaces the password of a user defined again.
        if let Some(u) = self.conf.users.iter_mut().find(|u| u.name == name) {
            u.password = password;
        } else if self.conf.users.len() < MAX_POLICIES {
            self.conf.users.push(User { name, password });
        } else {
            return Err(self.error_at(&t, format!("too many users (at most {MAX_POLICIES})")));
        }
        Ok(())
    }

    // ----- values -----

    /// iked's `time_spec`: a number of seconds, or digits and a unit (`s`, `m`, `h`, `d`;
    /// iked has `m` and `h`).
    fn time_spec(&mut self) -> PResult<u64> {
        self.scaled("a time (seconds, or a number with s, m, h or d)", |u| {
            Some(match u {
                b's' => 1,
                b'm' => 60,
                b'h' => 3600,
                b'd' => 86400,
                _ => return None,
            })
        })
    }

    /// iked's `byte_spec`: a number of bytes, or digits and `K`, `M` or `G` (powers of
    /// 1024).
    fn byte_spec(&mut self) -> PResult<u64> {
        self.scaled("a byte count (a number, or a number with K, M or G)", |u| {
            Some(match u {
                b'k' => 1 << 10,
                b'm' => 1 << 20,
                b'g' => 1 << 30,
                _ => return None,
            })
        })
    }

    fn scaled(&mut self, what: &str, unit: impl Fn(u8) -> Option<u64>) -> PResult<u64> {
        let t = self.peek().clone();
        // iked: `sscanf("%llu%c")`, so `10mx` is 600 s there; here the unit must be
        // the last character, and an overflow is an error instead of a wrap.
        let v = match &t.kind {
            TokKind::Num(n) if *n >= 0 => Some(*n as u64),
            TokKind::Word(w) if w.len() >= 2 => {
                let (digits, u) = w.split_at(w.len() - 1);
                match (
                    digits.parse::<u64>(),
                    unit(u.as_bytes()[0].to_ascii_lowercase()),
                ) {
                    (Ok(d), Some(m)) if digits.bytes().all(|b| b.is_ascii_digit()) => {
                        d.checked_mul(m)
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        match v {
            Some(v) => {
                self.bump();
                Ok(v)
            }
            None if matches!(t.kind, TokKind::Word(_) | TokKind::Num(_)) => Err(self.error_at(
                &t,
                format!("invalid value {}: expected {what}", describe(&t.kind)),
            )),
            None => Err(self.expected(what)),
        }
    }

    /// iked's `host_spec`: `ADDRESS`, `ADDRESS/PREFIX` or a name.
    fn host_spec(&mut self, what: &str) -> PResult<Host> {
        let t = self.peek().clone();
        let s = match &t.kind {
            TokKind::Word(w) if !is_keyword(w) => w.clone(),
            TokKind::Quoted(s) => s.clone(),
            TokKind::Num(n) => {
                return Err(self.error_at(&t, format!("bad address `{n}`: expected {what}")))
            }
            _ => return Err(self.expected(what)),
        };
        self.bump();
        let prefix = if self.punct(b'/') {
            Some(self.number("a prefix length after `/`")?.0)
        } else {
            None
        };
        let shown = match prefix {
            Some(p) => format!("{s}/{p}"),
            None => s.clone(),
        };
        let bad = |why: &str| format!("bad address `{shown}`: {why}");
        // iked's host(): an address (inet_pton), then an interface or group name, then
        // DNS. Without those here: what looks like an address must be one (so
        // `10.0.0.300` is an error, not a host name to look up), and a name is kept.
        let ip: IpAddr = if s.contains(':') {
            match s.parse::<Ipv6Addr>() {
                Ok(a) => a.into(),
                Err(_) => return Err(self.error_at(&t, bad("not an IPv6 address"))),
            }
        } else if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            match s.parse::<Ipv4Addr>() {
                Ok(a) => a.into(),
                Err(_) => return Err(self.error_at(&t, bad("not an IPv4 address"))),
            }
        } else if s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            if prefix.is_some() {
                return Err(self.error_at(&t, bad("a prefix needs an address, not a name")));
            }
            return Ok(Host::Name(s));
        } else {
            return Err(self.error_at(&t, bad("neither an address nor a host name")));
        };
        match prefix {
            None => Ok(Host::Addr(ip)),
            Some(p) => {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                if !(0..=max).contains(&p) {
                    return Err(
                        self.error_at(&t, bad(&format!("the prefix length must be 0 to {max}")))
                    );
                }
                Ok(Host::Net(ip, p as u8))
            }
        }
    }

    /// `any` or a host_spec (peer, local, request).
    fn anyhost(&mut self, what: &str) -> PResult<Host> {
        if self.eat_kw("any") {
            return Ok(Host::Any);
        }
        self.host_spec(what)
    }

    /// A flow end: `any`, `dynamic`, or a host_spec with an optional `(NAT)`.
    fn flow_host(&mut self, what: &str) -> PResult<(Host, Option<Host>, PTok)> {
        let t = self.peek().clone();
        if self.eat_kw("any") {
            return Ok((Host::Any, None, t));
        }
        if self.eat_kw("dynamic") {
            return Ok((Host::Dynamic, None, t));
        }
        let h = self.host_spec(what)?;
        if !self.punct(b'(') {
            return Ok((h, None, t));
        }
        let nat = self.host_spec("the real local network inside `( )`")?;
        if !self.punct(b')') {
            return Err(self.expected("`)` after the NAT network"));
        }
        if let (Some(a), Some(b)) = (h.af(), nat.af()) {
            if a != b {
                return Err(self.error_at(&t, "flow NAT address family mismatch".into()));
            }
        }
        Ok((h, Some(nat), t))
    }

    fn port(&mut self) -> PResult<Option<u16>> {
        if !self.eat_kw("port") {
            return Ok(None);
        }
        let t = self.peek().clone();
        match &t.kind {
            TokKind::Num(n) => {
                self.bump();
                match u16::try_from(*n) {
                    Ok(p) => Ok(Some(p)),
                    Err(_) => Err(self.error_at(&t, format!("port outside range: {n}"))),
                }
            }
            TokKind::Word(_) | TokKind::Quoted(_) => {
                let (s, _) = self.string("a port number or service name")?;
                match service_port(&s) {
                    Some(p) => Ok(Some(p)),
                    None => Err(self.error_at(&t, format!("unknown port: {s}"))),
                }
            }
            _ => Err(self.expected("a port number or service name after `port`")),
        }
    }

    fn protoval(&mut self) -> PResult<u8> {
        let t = self.peek().clone();
        match &t.kind {
            TokKind::Num(n) => {
                self.bump();
                u8::try_from(*n)
                    .map_err(|_| self.error_at(&t, format!("protocol outside range: {n}")))
            }
            // `esp` and `ah` are keywords but name protocols here too.
            TokKind::Word(w) | TokKind::Quoted(w) if !is_keyword(w) || w == "esp" || w == "ah" => {
                let w = w.clone();
                self.bump();
                protocol_number(&w)
                    .ok_or_else(|| self.error_at(&t, format!("unknown protocol: {w}")))
            }
            _ => Err(self.expected("a protocol name or number")),
        }
    }

    fn id(&mut self, what: &str) -> PResult<Id> {
        let (s, t) = self.string(what)?;
        if s.is_empty() || s.len() > MAX_ID {
            return Err(self.error_at(&t, format!("{what} empty or longer than {MAX_ID} bytes")));
        }
        Ok(Id::infer(&s))
    }

    // ----- the ikev2 rule -----
}

/// The IKE endpoints of a rule as iked takes them: `local` and `peer`, or, when neither is
/// given, the source and destination of a single flow (the man page: "For host-to-host
/// connections where dst is identical to remote, this option is generally not needed").
pub fn endpoints(p: &IkedPolicy) -> (Option<&Host>, Option<&Host>) {
    if p.local.is_some() || p.peer.is_some() {
        return (p.local.as_ref(), p.peer.as_ref());
    }
    match p.flows.as_slice() {
        [f] => (Some(&f.src), Some(&f.dst)),
        _ => (None, None),
    }
}
