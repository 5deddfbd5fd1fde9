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

    // ----- the ikev2 rule -----

    fn ikev2(&mut self) -> PResult<()> {
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
