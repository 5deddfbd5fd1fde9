//! The iked.conf(5) lexer: iked's `yylex()`/`lgetc()` rules, over one file's bytes.
//!
//! - Blanks are spaces and tabs; `#` starts a comment to the end of the line.
//! - A `\` before a newline joins the lines (also inside a comment, as in iked, so a
//!   commented line ending in `\` comments out the next one too); before any other
//!   character it stands for that character.
//! - `"…"` and `'…'` are strings: `\` escapes the quote, a space or a tab, a `\` before a
//!   newline continues the string, and a raw newline is kept.
//! - A `-` or a digit starts a number if only digits follow up to a blank, `)`, `,`, `/`,
//!   `}`, `=` (and here `#`) or the end; otherwise the text is read as a string, so
//!   `10.0.0.1`, `3h` and `0x1234` are strings and `24` in `10.0.0.0/24` is a number.
//! - An unquoted string starts with a letter, a digit, `:`, `_` or `*` and goes on over
//!   letters, digits and punctuation other than `( ) { } < > ! = / # ,`.
//! - `$name` (outside quotes) is replaced by the macro's value, which is lexed again
//!   with expansion off (iked's START_EXPAND/DONE_EXPAND): macros do not nest.
//! - Anything else is a one-character token (`=`, `/`, `{`, `}`, `(`, `)`, `,`, …).

#![forbid(unsafe_code)]

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};

/// Longest token (iked's `buf[8096]`).
pub const MAX_TOKEN: usize = 8096;
/// Bytes of macro values expanded in one parse, at most: a short file must not make the
/// lexer read gigabytes by using a long macro many times.
pub const MAX_EXPANSION: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokKind {
    /// An unquoted string; the parser tells keywords from plain strings.
    Word(String),
    /// A quoted string: never a keyword.
    Quoted(String),
    Num(i64),
    Punct(u8),
    Newline,
    Eof,
    /// Something the lexer could not read, with the reason; the parser reports it.
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tok {
    pub kind: TokKind,
    /// The line the token starts on (1-based).
    pub line: u32,
}

/// The macros, and whether each was given on the command line (those are not replaced
/// by definitions in the file, iked's `persist`).
#[derive(Debug, Default, Clone)]
pub struct Macros {
    map: HashMap<String, (String, bool)>,
    /// Bytes expanded so far (see [`MAX_EXPANSION`]).
    expanded: Cell<usize>,
}

impl Macros {
    /// Defines `name`; a command-line definition stays.
    pub fn set(&mut self, name: &str, value: &str, cmdline: bool) {
        // symset() with `persist`: a -D definition is kept when the file defines the
        // same name, so `iked -D` can override a file without editing it.
        if let Some((_, true)) = self.map.get(name) {
            if !cmdline {
                return;
            }
        }
        self.map
            .insert(name.to_string(), (value.to_string(), cmdline));
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(|(v, _)| v.as_str())
    }

    /// Bounds the table: iked has none, but a file of a million definitions should not
    /// take a million entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Counts `n` more bytes of expansion; false once over [`MAX_EXPANSION`].
    fn spend(&self, n: usize) -> bool {
        let total = self.expanded.get().saturating_add(n);
        self.expanded.set(total);
        total <= MAX_EXPANSION
    }
}

/// One file's lexer.
pub struct Lexer {
    src: Vec<u8>,
    pos: usize,
    line: u32,
    /// Tokens of a macro expansion, handed out before reading on.
    // iked pushes the value back into its input (lungetc) between START_EXPAND and
    // DONE_EXPAND markers; we lex the value at once and queue its tokens, which is
    // the same as long as expansions do not nest, and they do not.
    pending: VecDeque<Tok>,
    /// Lexing a macro's value: `$` is not special.
    expanding: bool,
    /// The faked end of line at the end of the file has been handed out (iked's
    /// `eof_reached`), so a last line without a newline still ends a statement.
    eof_newline: bool,
}

fn allowed_to_end_number(c: u8) -> bool {
    c.is_ascii_whitespace() || matches!(c, b')' | b',' | b'/' | b'}' | b'=' | b'#')
}

fn allowed_in_string(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || (c.is_ascii_punctuation()
            && !matches!(
                c,
                b'(' | b')' | b'{' | b'}' | b'<' | b'>' | b'!' | b'=' | b'/' | b'#' | b','
            ))
}

impl Lexer {
    pub fn new(src: &[u8]) -> Lexer {
        Lexer {
            src: src.to_vec(),
            pos: 0,
            line: 1,
            pending: VecDeque::new(),
            expanding: false,
            eof_newline: false,
        }
    }

    /// A lexer for a macro's value: every token gets `line`.
    fn expansion(value: &str, line: u32) -> Lexer {
        let mut l = Lexer::new(value.as_bytes());
        l.line = line;
        l.expanding = true;
        l
    }

    pub fn line(&self) -> u32 {
        self.line
    }

    fn raw(&mut self) -> Option<u8> {
        let c = self.src.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn unget(&mut self) {
        self.pos = self.pos.saturating_sub(1);
    }

    /// iked's `lgetc(0)`: one character, `\`-newline joined, `\x` read as `x`.
    // Every character outside quotes goes through here, comments included: that is
    // why a comment ending in `\` swallows the next line.
    fn getc(&mut self) -> Option<u8> {
        loop {
            let c = self.raw()?;
            if c != b'\\' {
                return Some(c);
            }
            match self.raw() {
                Some(b'\n') => {
                    if !self.expanding {
                        self.line += 1;
                    }
                }
                Some(n) => return Some(n),
                // A `\` at the very end of the file stands for itself.
                None => return Some(b'\\'),
            }
        }
    }

    /// The next token. `macros` is read for `$name`.
    pub fn next(&mut self, macros: &Macros) -> Tok {
        if let Some(t) = self.pending.pop_front() {
            return t;
        }
        loop {
            let mut c = self.getc();
            // Blanks are only spaces and tabs: a carriage return is a token of its own (and
            // then a syntax error), as in iked.
            while matches!(c, Some(b' ') | Some(b'\t')) {
                c = self.getc();
            }
            let line = self.line;
            let tok = |kind| Tok { kind, line };
            if c == Some(b'#') {
                loop {
                    c = self.getc();
                    if matches!(c, Some(b'\n') | None) {
                        break;
                    }
                }
            }
            let Some(ch) = c else {
                // The first end of the file is an end of line, so a last line without a newline
                // still ends its statement (iked's `eof_reached`); a macro value ends without one.
                if self.expanding || self.eof_newline {
                    return tok(TokKind::Eof);
                }
                self.eof_newline = true;
                return tok(TokKind::Newline);
            };
            // `$` followed by no name character expands the macro named "", which cannot be
            // defined: an error, as in iked.
            if ch == b'$' && !self.expanding {
                let mut name = Vec::new();
                while let Some(n) = self.getc() {
                    if n.is_ascii_alphanumeric() || n == b'_' {
                        if name.len() >= MAX_TOKEN {
                            return tok(TokKind::Error("macro name too long".into()));
                        }
                        name.push(n);
                    } else {
                        self.unget();
                        break;
                    }
                }
                let name = String::from_utf8_lossy(&name).into_owned();
                let Some(value) = macros.get(&name) else {
                    return tok(TokKind::Error(format!("macro '{name}' not defined")));
                };
                if !macros.spend(value.len()) {
                    return tok(TokKind::Error(format!(
                        "macro '{name}' not expanded: macro expansions exceed {MAX_EXPANSION} bytes"
                    )));
                }
                let mut sub = Lexer::expansion(value, line);
                loop {
                    let t = sub.next(macros);
                    match t.kind {
                        TokKind::Eof => break,
                        _ => self.pending.push_back(t),
                    }
                }
                match self.pending.pop_front() {
                    Some(t) => return t,
                    // An empty value: nothing to hand out, read on.
                    None => continue,
                }
            }
            if ch == b'"' || ch == b'\'' {
                return self.quoted(ch, line);
            }
            if ch == b'-' || ch.is_ascii_digit() {
                let (begin, begin_line) = (self.pos - 1, self.line);
                let mut n = 1;
                // The character after the digits, read through any `\`-newline as iked's
                // lgetc() does (so `24 \` and `24\` end a line alike), then put back.
                let mut next = None;
                loop {
                    let before = (self.pos, self.line);
                    match self.getc() {
                        Some(d) if d.is_ascii_digit() => n += 1,
                        Some(d) => {
                            (self.pos, self.line) = before;
                            next = Some(d);
                            break;
                        }
                        None => break,
                    }
                }
                // `-` alone is punctuation (parse.y has no use for it, so an error later).
                let only_minus = ch == b'-' && n == 1;
                if !only_minus && next.is_none_or(allowed_to_end_number) {
                    // The digits with any `\`-newline inside them dropped.
                    let text: String = self.src[begin..self.pos]
                        .iter()
                        .filter(|b| b.is_ascii_digit() || **b == b'-')
                        .map(|b| *b as char)
                        .collect();
                    return match text.parse::<i64>() {
                        Ok(v) => tok(TokKind::Num(v)),
                        Err(_) => tok(TokKind::Error(format!("\"{text}\" invalid number"))),
                    };
                }
                // Not a number: read it again as a string (or a lone `-`).
                (self.pos, self.line) = (begin + 1, begin_line);
                if ch == b'-' {
                    return tok(TokKind::Punct(b'-'));
                }
            }
            if ch.is_ascii_alphanumeric() || matches!(ch, b':' | b'_' | b'*') {
                let mut s = vec![ch];
                loop {
                    match self.getc() {
                        Some(n) if allowed_in_string(n) => {
                            if s.len() >= MAX_TOKEN {
                                self.skip_word();
                                return tok(TokKind::Error("string too long".into()));
                            }
                            s.push(n);
                        }
                        Some(_) => {
                            self.unget();
                            break;
                        }
                        None => break,
                    }
                }
                return tok(TokKind::Word(String::from_utf8_lossy(&s).into_owned()));
            }
            // Newlines inside a macro value do not count as lines of the file.
            if ch == b'\n' {
                if !self.expanding {
                    self.line += 1;
                }
                return tok(TokKind::Newline);
            }
            return tok(TokKind::Punct(ch));
        }
    }

    /// A quoted string. An overlong string or a NUL byte is an error, reported once the
    /// closing quote is found, so the lexer goes on after the string and not inside it.
    fn quoted(&mut self, q: u8, line: u32) -> Tok {
        let mut s = Vec::new();
        let mut error = None;
        loop {
            let Some(c) = self.raw() else {
                return Tok {
                    kind: TokKind::Error(format!(
                        "unterminated quoted string: no closing {} before the end of the file",
                        q as char
                    )),
                    line,
                };
            };
            let c = match c {
                b'\n' => {
                    if !self.expanding {
                        self.line += 1;
                    }
                    b'\n'
                }
                b'\\' => match self.raw() {
                    // Only the quote, a space and a tab are escaped; `\n` stays backslash and n.
                    Some(n) if n == q || n == b' ' || n == b'\t' => n,
                    Some(b'\n') => {
                        if !self.expanding {
                            self.line += 1;
                        }
                        continue;
                    }
                    Some(_) => {
                        self.unget();
                        b'\\'
                    }
                    None => b'\\',
                },
                c if c == q => break,
                0 => {
                    error.get_or_insert("NUL byte in a quoted string");
                    continue;
                }
                c => c,
            };
            if s.len() >= MAX_TOKEN {
                error.get_or_insert("string too long");
                continue;
            }
            s.push(c);
        }
        let kind = match error {
            Some(e) => TokKind::Error(e.into()),
            None => TokKind::Quoted(String::from_utf8_lossy(&s).into_owned()),
        };
        Tok { kind, line }
    }

    /// Reads over the rest of an overlong unquoted string.
    fn skip_word(&mut self) {
        while let Some(c) = self.getc() {
            if !allowed_in_string(c) {
                self.unget();
                return;
            }
        }
    }
}

/// iked's keywords (`lookup()`): an unquoted string spelt like one of these is that
/// keyword, never a plain string.
pub const KEYWORDS: &[&str] = &[
    "active",
    "ah",
    "any",
    "auth",
    "bytes",
    "cert_partial_chain",
    "childsa",
    "config",
    "couple",
    "decouple",
    "default",
    "dpd_check_interval",
    "dstid",
    "dynamic",
    "eap",
    "enc",
    "enforcesingleikesa",
    "esn",
    "esp",
    "file",
    "flow",
    "fragmentation",
    "from",
    "group",
    "iface",
    "ike",
    "ikelifetime",
    "ikesa",
    "ikev2",
    "include",
    "inet",
    "inet6",
    "ipcomp",
    "lifetime",
    "local",
    "maxage",
    "mobike",
    "name",
    "natt",
    "noenforcesingleikesa",
    "noesn",
    "nofragmentation",
    "nomobike",
    "nostickyaddress",
    "novendorid",
    "ocsp",
    "passive",
    "peer",
    "port",
    "prf",
    "proto",
    "psk",
    "quick",
    "rdomain",
    "request",
    "sa",
    "set",
    "skip",
    "srcid",
    "stickyaddress",
    "tag",
    "tap",
    "tcpmd5",
    "to",
    "tolerate",
    "transport",
    "tunnel",
    "user",
    "vendorid",
];

pub fn is_keyword(s: &str) -> bool {
    KEYWORDS.binary_search(&s).is_ok()
}

/// getprotobyname(3) for the protocols of /etc/protocols that make sense in a flow.
pub fn protocol_number(name: &str) -> Option<u8> {
    Some(match name {
        "ip" | "hopopt" => 0,
        "icmp" => 1,
        "igmp" => 2,
        "ipencap" | "ipip" | "ipv4" => 4,
        "tcp" => 6,
        "egp" => 8,
        "pup" => 12,
        "udp" => 17,
        "ipv6" => 41,
        "ipv6-route" => 43,
        "ipv6-frag" => 44,
        "rsvp" => 46,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "ipv6-icmp" | "icmp6" => 58,
        "ipv6-nonxt" => 59,
        "ipv6-opts" => 60,
        "eigrp" => 88,
        "ospf" => 89,
        "etherip" => 97,
        "encap" => 98,
        "pim" => 103,
        "ipcomp" => 108,
        "vrrp" | "carp" => 112,
        "l2tp" => 115,
        "sctp" => 132,
        "udplite" => 136,
        "mpls-in-ip" => 137,
        "pfsync" => 240,
        _ => return None,
    })
}

/// getservbyname(3) for common services of /etc/services (tcp or udp).
pub fn service_port(name: &str) -> Option<u16> {
    Some(match name {
        "ftp-data" => 20,
        "ftp" => 21,
        "ssh" => 22,
        "telnet" => 23,
        "smtp" => 25,
        "domain" => 53,
        "bootps" => 67,
        "bootpc" => 68,
        "tftp" => 69,
        "http" | "www" => 80,
        "kerberos" => 88,
        "pop3" => 110,
        "sunrpc" => 111,
        "auth" | "ident" => 113,
        "ntp" => 123,
        "netbios-ns" => 137,
        "netbios-dgm" => 138,
        "netbios-ssn" => 139,
        "imap" | "imap2" => 143,
        "snmp" => 161,
        "snmp-trap" => 162,
        "bgp" => 179,
        "ldap" => 389,
        "https" => 443,
        "microsoft-ds" => 445,
        "isakmp" => 500,
        "syslog" => 514,
        "submission" => 587,
        "ldaps" => 636,
        "imaps" => 993,
        "pop3s" => 995,
        "openvpn" => 1194,
        "l2tp" => 1701,
        "radius" => 1812,
        "radius-acct" => 1813,
        "nfsd" | "nfs" => 2049,
        "mysql" => 3306,
        "ms-wbt-server" => 3389,
        "ipsec-nat-t" => 4500,
        "sip" => 5060,
        "postgresql" => 5432,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(src: &str, m: &Macros) -> Vec<TokKind> {
        let mut l = Lexer::new(src.as_bytes());
        let mut out = Vec::new();
        for _ in 0..1000 {
            let t = l.next(m);
            if t.kind == TokKind::Eof {
                break;
            }
            out.push(t.kind);
        }
        out
    }

    fn w(s: &str) -> TokKind {
        TokKind::Word(s.into())
    }

    #[test]
    fn keywords_are_sorted() {
        let mut k = KEYWORDS.to_vec();
        k.sort();
        assert_eq!(k, KEYWORDS);
    }

    #[test]
    fn numbers_strings_and_punctuation() {
        let m = Macros::default();
        assert_eq!(
            all("from 10.0.0.0/24 port 23 lifetime 3h x=-5\n", &m),
            vec![
                w("from"),
                w("10.0.0.0"),
                TokKind::Punct(b'/'),
                TokKind::Num(24),
                w("port"),
                TokKind::Num(23),
                w("lifetime"),
                w("3h"),
                w("x"),
                TokKind::Punct(b'='),
                TokKind::Num(-5),
                TokKind::Newline,
                TokKind::Newline,
            ]
        );
        assert_eq!(
            all("proto { tcp, udp } 2001:db8::1 # c\n", &m),
            vec![
                w("proto"),
                TokKind::Punct(b'{'),
                w("tcp"),
                TokKind::Punct(b','),
                w("udp"),
                TokKind::Punct(b'}'),
                w("2001:db8::1"),
                TokKind::Newline,
                TokKind::Newline,
            ]
        );
    }

    #[test]
    fn continuation_quotes_and_lines() {
        let m = Macros::default();
        let mut l = Lexer::new(b"a \\\n b \"x\\\"y\n z\" c");
        assert_eq!(
            l.next(&m),
            Tok {
                kind: w("a"),
                line: 1
            }
        );
        assert_eq!(
            l.next(&m),
            Tok {
                kind: w("b"),
                line: 2
            }
        );
        assert_eq!(
            l.next(&m),
            Tok {
                kind: TokKind::Quoted("x\"y\n z".into()),
                line: 2
            }
        );
        assert_eq!(
            l.next(&m),
            Tok {
                kind: w("c"),
                line: 3
            }
        );
        let mut l = Lexer::new(b"\n\n\"open");
        l.next(&m);
        l.next(&m);
        let t = l.next(&m);
        assert_eq!(t.line, 3);
        assert!(matches!(t.kind, TokKind::Error(ref e) if e.contains("unterminated")));
    }

    #[test]
    fn a_number_before_a_continuation() {
        let m = Macros::default();
        let mut l = Lexer::new(b"10.0.0.0/24\\\n\tpeer 12x");
        let kinds: Vec<(TokKind, u32)> = (0..6)
            .map(|_| l.next(&m))
            .map(|t| (t.kind, t.line))
            .collect();
        assert_eq!(
            kinds,
            [
                (w("10.0.0.0"), 1),
                (TokKind::Punct(b'/'), 1),
                (TokKind::Num(24), 1),
                (w("peer"), 2),
                (w("12x"), 2),
                (TokKind::Newline, 2),
            ]
        );
        assert_eq!(
            all("99999999999999999999 ", &m)[0],
            TokKind::Error("\"99999999999999999999\" invalid number".into())
        );
    }

    #[test]
    fn expansion_is_bounded() {
        let mut m = Macros::default();
        m.set("m", &"x".repeat(8000), false);
        let mut l = Lexer::new("$m ".repeat(MAX_EXPANSION / 8000 + 10).as_bytes());
        let mut errors = 0;
        for _ in 0..10_000_000 {
            match l.next(&m).kind {
                TokKind::Eof => break,
                TokKind::Error(e) => {
                    assert!(e.contains("exceed"), "{e}");
                    errors += 1;
                }
                _ => {}
            }
        }
        assert!(errors > 0);
    }

    #[test]
    fn macros_expand_once() {
        let mut m = Macros::default();
        m.set("gw", "192.0.2.1 peer", false);
        m.set("loop", "$gw", false);
        assert_eq!(
            all("to $gw\n", &m),
            vec![
                w("to"),
                w("192.0.2.1"),
                w("peer"),
                TokKind::Newline,
                TokKind::Newline
            ]
        );
        // No expansion inside an expansion: `$` comes out as itself.
        assert_eq!(all("$loop", &m)[0], TokKind::Punct(b'$'));
        assert!(matches!(all("$nope", &m)[0], TokKind::Error(_)));
        // Not inside quotes.
        assert_eq!(all("\"$gw\"", &m)[0], TokKind::Quoted("$gw".into()));
        m.set("gw", "cmd", true);
        m.set("gw", "file", false);
        assert_eq!(m.get("gw"), Some("cmd"));
    }
}
