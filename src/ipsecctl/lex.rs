//! The ipsec.conf(5) lexer, a port of `yylex`/`lgetc`/`lungetc`/`findeol` in OpenBSD's
//! `sbin/ipsecctl/parse.y`.
//!
//! It is kept character for character with the C because the regress outputs depend on
//! its quirks: `$macro` is expanded once (a macro's text is not expanded again), a token
//! may run from the end of a macro into the file, `\` + newline joins lines, `\x` outside
//! quotes yields `x`, a word that starts with digits but goes on (`3des`, `10.1.1.0`) is a
//! string, and `/`, `,`, `{`, `}`, `(`, `)`, `=` end words. Everything is bounded: the
//! files' sizes, the include depth, the token length and the push-back buffer.

use std::fmt::Write as _;

/// The largest configuration file read (ipsec.conf files are a few KiB).
pub const MAX_FILE: u64 = 4 << 20;
/// The deepest `include` nesting.
pub const MAX_DEPTH: usize = 16;
/// The C lexer's token buffer (`char buf[8096]`).
const BUF: usize = 8096;
/// The C lexer's `MAXPUSHBACK`.
const MAXPUSHBACK: usize = 128;
const EOF: i32 = -1;

/// The reserved words of parse.y's `lookup()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kw {
    Acquire,
    Active,
    Aggressive,
    Ah,
    Any,
    Auth,
    Authkey,
    Bundle,
    Bypass,
    Comp,
    Deny,
    Dontacq,
    Dstid,
    Dynamic,
    Enc,
    Enckey,
    Esp,
    File,
    Flow,
    From,
    Group,
    Ike,
    In,
    Include,
    Interface,
    Ipcomp,
    Ipip,
    Lifetime,
    Local,
    Main,
    Out,
    Passive,
    Peer,
    Port,
    Proto,
    Psk,
    Quick,
    Require,
    Rsa,
    Spi,
    Srcid,
    Tag,
    Tcpmd5,
    To,
    Transport,
    Tunnel,
    Type,
    Udpencap,
    Use,
}

fn lookup(s: &str) -> Option<Kw> {
    use Kw::*;
    Some(match s {
        "acquire" => Acquire,
        "active" => Active,
        "aggressive" => Aggressive,
        "ah" => Ah,
        "any" => Any,
        "auth" => Auth,
        "authkey" => Authkey,
        "bundle" => Bundle,
        "bypass" => Bypass,
        "comp" => Comp,
        "deny" => Deny,
        "dontacq" => Dontacq,
        "dstid" => Dstid,
        "dynamic" => Dynamic,
        "enc" => Enc,
        "enckey" => Enckey,
        "esp" => Esp,
        "file" => File,
        "flow" => Flow,
        "from" => From,
        "group" => Group,
        "ike" => Ike,
        "in" => In,
        "include" => Include,
        "interface" => Interface,
        "ipcomp" => Ipcomp,
        "ipip" => Ipip,
        "lifetime" => Lifetime,
        "local" => Local,
        "main" => Main,
        "out" => Out,
        "passive" => Passive,
        "peer" => Peer,
        "port" => Port,
        "proto" => Proto,
        "psk" => Psk,
        "quick" => Quick,
        "require" => Require,
        "rsa" => Rsa,
        "spi" => Spi,
        "srcid" => Srcid,
        "tag" => Tag,
        "tcpmd5" => Tcpmd5,
        "to" => To,
        "transport" => Transport,
        "tunnel" => Tunnel,
        "type" => Type,
        "udpencap" => Udpencap,
        "use" => Use,
        _ => return None,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    Kw(Kw),
    Str(String),
    Num(i64),
    /// Any other single character, `\n` included.
    Ch(u8),
    /// The lexer found an error, reported it and skipped to the end of the line
    /// (`findeol()` returning `ERROR`).
    Error,
    Eof,
}

struct File {
    name: String,
    data: Vec<u8>,
    pos: usize,
    lineno: u32,
}

impl File {
    fn getc(&mut self) -> i32 {
        match self.data.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                i32::from(b)
            }
            None => EOF,
        }
    }
}

struct Sym {
    name: String,
    val: String,
    persist: bool,
    used: bool,
}

/// The lexer state: the file stack, macros, the push-back buffer and the error output.
pub struct Lexer {
    files: Vec<File>,
    parsebuf: Option<Vec<u8>>,
    parseindex: isize,
    pushback: Vec<u8>,
    syms: Vec<Sym>,
    /// `yylval.lineno`: the line of the last token, for messages.
    pub lineno: u32,
    /// Errors counted as `file->errors` (all files together).
    pub errors: u32,
    /// What ipsecctl writes to stderr, in order.
    pub stderr: String,
}

fn is_punct(c: i32) -> bool {
    (0..=127).contains(&c) && (c as u8).is_ascii_punctuation()
}
fn is_alnum(c: i32) -> bool {
    (0..=127).contains(&c) && (c as u8).is_ascii_alphanumeric()
}
fn is_digit(c: i32) -> bool {
    (0..=127).contains(&c) && (c as u8).is_ascii_digit()
}
fn is_space(c: i32) -> bool {
    matches!(c, 9..=13 | 32)
}
fn allowed_to_end_number(c: i32) -> bool {
    is_space(c) || matches!(c, 0x29 | 0x2c | 0x2f | 0x7d | 0x3d) // ) , / } =
}
fn allowed_in_string(c: i32) -> bool {
    is_alnum(c) || (is_punct(c) && !b"(){}<>!=/#,".contains(&(c as u8)))
}

/// Reads a configuration file whole, bounded by [`MAX_FILE`].
pub fn read_bounded(name: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(name)?;
    if f.metadata()?.is_dir() {
        return Err(std::io::Error::from_raw_os_error(libc::EISDIR));
    }
    let mut data = Vec::new();
    f.take(MAX_FILE + 1).read_to_end(&mut data)?;
    if data.len() as u64 > MAX_FILE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "file too large",
        ));
    }
    Ok(data)
}

impl Lexer {
    pub fn new() -> Lexer {
        Lexer {
            files: Vec::new(),
            parsebuf: None,
            parseindex: 0,
            pushback: Vec::new(),
            syms: Vec::new(),
            lineno: 0,
            errors: 0,
            stderr: String::new(),
        }
    }

    /// Opens the top file or an included one from its bytes (`pushfile`).
    pub fn push_data(&mut self, name: &str, data: Vec<u8>) -> bool {
        if self.files.len() >= MAX_DEPTH {
            let _ = writeln!(
                self.stderr,
                "ipsecctl: pushfile: {name}: too many nested includes"
            );
            return false;
        }
        self.files.push(File {
            name: name.to_string(),
            data,
            pos: 0,
            lineno: 1,
        });
        true
    }

    /// `pushfile(name, 0)` for `include`: "-" is stdin only for the top file.
    pub fn push_file(&mut self, name: &str) -> bool {
        match read_bounded(name) {
            Ok(d) => self.push_data(name, d),
            Err(e) => {
                let _ = writeln!(
                    self.stderr,
                    "ipsecctl: pushfile: {name}: {}",
                    crate::ipsecctl::os_msg(&e)
                );
                false
            }
        }
    }

    pub fn file_name(&self) -> &str {
        self.files.last().map(|f| f.name.as_str()).unwrap_or("")
    }

    /// `yyerror`: counts the error and prints `file: line: message`.
    pub fn yyerror(&mut self, msg: &str) {
        self.errors += 1;
        self.yywarn(msg);
    }

    /// `yywarn`: as `yyerror` without counting.
    pub fn yywarn(&mut self, msg: &str) {
        let name = self.file_name().to_string();
        let _ = writeln!(self.stderr, "{name}: {}: {msg}", self.lineno);
    }

    /// `symset`: a persistent (-D) macro is not replaced by the file's.
    pub fn symset(&mut self, name: &str, val: &str, persist: bool) {
        if let Some(i) = self.syms.iter().position(|s| s.name == name) {
            if self.syms[i].persist {
                return;
            }
            self.syms.remove(i);
        }
        self.syms.push(Sym {
            name: name.to_string(),
            val: val.to_string(),
            persist,
            used: false,
        });
    }

    fn symget(&mut self, name: &str) -> Option<String> {
        let s = self.syms.iter_mut().find(|s| s.name == name)?;
        s.used = true;
        Some(s.val.clone())
    }

    /// Macros never used (`-vv` warns about them).
    pub fn unused_macros(&self) -> Vec<String> {
        self.syms
            .iter()
            .filter(|s| !s.used)
            .map(|s| s.name.clone())
            .collect()
    }

    /// `popfile`: false when the top file was closed.
    fn popfile(&mut self) -> bool {
        self.files.pop();
        !self.files.is_empty()
    }

    fn getc(&mut self) -> i32 {
        match self.files.last_mut() {
            Some(f) => f.getc(),
            None => EOF,
        }
    }

    fn at_top(&self) -> bool {
        self.files.len() <= 1
    }

    fn inc_line(&mut self) {
        if let Some(f) = self.files.last_mut() {
            f.lineno = f.lineno.saturating_add(1);
        }
    }

    fn cur_line(&self) -> u32 {
        self.files.last().map(|f| f.lineno).unwrap_or(0)
    }

    fn lgetc(&mut self, quotec: i32) -> i32 {
        if let Some(pb) = &self.parsebuf {
            if self.parseindex >= 0 {
                let c = pb.get(self.parseindex as usize).copied().unwrap_or(0);
                self.parseindex += 1;
                if c != 0 {
                    return i32::from(c);
                }
                self.parsebuf = None;
            } else {
                self.parseindex += 1;
            }
        }
        if let Some(c) = self.pushback.pop() {
            return i32::from(c);
        }
        if quotec != 0 {
            let c = self.getc();
            if c == EOF {
                self.yyerror("reached end of file while parsing quoted string");
                if self.files.is_empty() || self.at_top() || !self.popfile() {
                    return EOF;
                }
                return quotec;
            }
            return c;
        }
        let mut c = self.getc();
        while c == i32::from(b'\\') {
            let next = self.getc();
            if next != i32::from(b'\n') {
                c = next;
                break;
            }
            self.lineno = self.cur_line();
            self.inc_line();
            c = self.getc();
        }
        while c == EOF {
            if self.files.is_empty() || self.at_top() || !self.popfile() {
                return EOF;
            }
            c = self.getc();
        }
        c
    }

    /// `lungetc`: pushes back one character.
    pub fn lungetc(&mut self, c: i32) {
        if c == EOF {
            return;
        }
        if self.parsebuf.is_some() {
            self.parseindex -= 1;
            if self.parseindex >= 0 {
                return;
            }
        }
        if self.pushback.len() + 1 >= MAXPUSHBACK {
            return;
        }
        self.pushback.push(c as u8);
    }

    fn findeol(&mut self) -> Tok {
        self.parsebuf = None;
        loop {
            let c = match self.pushback.pop() {
                Some(c) => i32::from(c),
                None => self.lgetc(0),
            };
            if c == i32::from(b'\n') {
                self.inc_line();
                break;
            }
            if c == EOF {
                break;
            }
        }
        Tok::Error
    }

    /// `yylex`.
    pub fn token(&mut self) -> Tok {
        'top: loop {
            let mut buf: Vec<u8> = Vec::new();
            let mut c = self.lgetc(0);
            while c == i32::from(b' ') || c == i32::from(b'\t') {
                c = self.lgetc(0);
            }
            self.lineno = self.cur_line();
            if c == i32::from(b'#') {
                loop {
                    c = self.lgetc(0);
                    if c == i32::from(b'\n') || c == EOF {
                        break;
                    }
                }
            }
            if c == i32::from(b'$') && self.parsebuf.is_none() {
                loop {
                    c = self.lgetc(0);
                    if c == EOF {
                        return Tok::Eof;
                    }
                    if buf.len() + 1 >= BUF - 1 {
                        self.yyerror("string too long");
                        return self.findeol();
                    }
                    if is_alnum(c) || c == i32::from(b'_') {
                        buf.push(c as u8);
                        continue;
                    }
                    self.lungetc(c);
                    break;
                }
                let name = String::from_utf8_lossy(&buf).into_owned();
                match self.symget(&name) {
                    None => {
                        self.yyerror(&format!("macro '{name}' not defined"));
                        return self.findeol();
                    }
                    Some(v) => {
                        self.parsebuf = Some(v.into_bytes());
                        self.parseindex = 0;
                        continue 'top;
                    }
                }
            }
            if c == i32::from(b'\'') || c == i32::from(b'"') {
                let quotec = c;
                loop {
                    c = self.lgetc(quotec);
                    if c == EOF {
                        return Tok::Eof;
                    }
                    if c == i32::from(b'\n') {
                        self.inc_line();
                        continue;
                    } else if c == i32::from(b'\\') {
                        let next = self.lgetc(quotec);
                        if next == EOF {
                            return Tok::Eof;
                        }
                        if next == quotec || next == i32::from(b' ') || next == i32::from(b'\t') {
                            c = next;
                        } else if next == i32::from(b'\n') {
                            self.inc_line();
                            continue;
                        } else {
                            self.lungetc(next);
                        }
                    } else if c == quotec {
                        break;
                    } else if c == 0 {
                        self.yyerror("syntax error");
                        return self.findeol();
                    }
                    if buf.len() + 1 >= BUF - 1 {
                        self.yyerror("string too long");
                        return self.findeol();
                    }
                    buf.push(c as u8);
                }
                return Tok::Str(String::from_utf8_lossy(&buf).into_owned());
            }
            if c == i32::from(b'-') || is_digit(c) {
                loop {
                    buf.push(c as u8);
                    if buf.len() >= BUF {
                        self.yyerror("string too long");
                        return self.findeol();
                    }
                    c = self.lgetc(0);
                    if c == EOF || !is_digit(c) {
                        break;
                    }
                }
                self.lungetc(c);
                let only_minus = buf.len() == 1 && buf[0] == b'-';
                if !only_minus && (c == EOF || allowed_to_end_number(c)) {
                    let s = String::from_utf8_lossy(&buf).into_owned();
                    return match s.parse::<i64>() {
                        Ok(n) => Tok::Num(n),
                        Err(_) => {
                            let why = if s.starts_with('-') {
                                "too small"
                            } else {
                                "too large"
                            };
                            self.yyerror(&format!("\"{s}\" invalid number: {why}"));
                            self.findeol()
                        }
                    };
                }
                // nodigits: give all but the first character back.
                while buf.len() > 1 {
                    if let Some(b) = buf.pop() {
                        self.lungetc(i32::from(b));
                    }
                }
                c = i32::from(buf.pop().unwrap_or(b'-'));
                if c == i32::from(b'-') {
                    return Tok::Ch(b'-');
                }
            }
            if is_alnum(c) || c == i32::from(b':') || c == i32::from(b'_') || c == i32::from(b'*') {
                loop {
                    buf.push(c as u8);
                    if buf.len() >= BUF {
                        self.yyerror("string too long");
                        return self.findeol();
                    }
                    c = self.lgetc(0);
                    if c == EOF || !allowed_in_string(c) {
                        break;
                    }
                }
                self.lungetc(c);
                let s = String::from_utf8_lossy(&buf).into_owned();
                return match lookup(&s) {
                    Some(k) => Tok::Kw(k),
                    None => Tok::Str(s),
                };
            }
            if c == i32::from(b'\n') {
                self.lineno = self.cur_line();
                self.inc_line();
            }
            if c == EOF {
                return Tok::Eof;
            }
            return Tok::Ch(c as u8);
        }
    }
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        let mut l = Lexer::new();
        l.push_data("t", s.as_bytes().to_vec());
        let mut v = Vec::new();
        for _ in 0..1000 {
            let t = l.token();
            if t == Tok::Eof {
                break;
            }
            v.push(t);
        }
        v
    }

    #[test]
    fn words_numbers_and_networks() {
        use Tok::*;
        assert_eq!(
            toks("enc 3des from 10.1.1.0/24 x\n"),
            vec![
                Kw(super::Kw::Enc),
                Str("3des".into()),
                Kw(super::Kw::From),
                Str("10.1.1.0".into()),
                Ch(b'/'),
                Num(24),
                Str("x".into()),
                Ch(b'\n')
            ]
        );
        assert_eq!(toks("3ffe::1"), vec![Str("3ffe::1".into())]);
        assert_eq!(toks("-x"), vec![Ch(b'-'), Str("x".into())]);
    }

    #[test]
    fn macros_continuations_comments() {
        use Tok::*;
        let mut l = Lexer::new();
        l.symset("A", "{ 1.1.1.1, x }", false);
        l.push_data("t", b"$A # c\nfoo \\\n bar".to_vec());
        let mut v = Vec::new();
        loop {
            let t = l.token();
            if t == Eof {
                break;
            }
            v.push(t);
        }
        assert_eq!(
            v,
            vec![
                Ch(b'{'),
                Str("1.1.1.1".into()),
                Ch(b','),
                Str("x".into()),
                Ch(b'}'),
                Ch(b'\n'),
                Str("foo".into()),
                Str("bar".into())
            ]
        );
    }

    #[test]
    fn quoted_strings_and_escapes() {
        use Tok::*;
        assert_eq!(toks("\"a b\\\"c\""), vec![Str("a b\"c".into())]);
        assert_eq!(toks("'x\ny'"), vec![Str("xy".into())]);
        let mut l = Lexer::new();
        l.push_data("t", b"$NOPE x\nike\n".to_vec());
        assert_eq!(l.token(), Error);
        assert!(
            l.stderr.contains("t: 1: macro 'NOPE' not defined"),
            "{}",
            l.stderr
        );
        assert_eq!(l.token(), Kw(super::Kw::Ike));
    }
}
