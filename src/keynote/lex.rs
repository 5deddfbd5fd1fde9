//! Tokens of KeyNote field values (RFC 2704 §4, libkeynote keynote.l): quoted strings with
//! C escapes, identifiers (attribute and constant names), integers and floats, operators.

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Str(String),
    Ident(String),
    Int(i64),
    Float(f64),
    /// One of: && || ! == != < > <= >= ~= -> + - * / % ^ . $ @ & ( ) { } ; , =
    Op(&'static str),
}

const OPS: [&str; 29] = [
    "&&", "||", "==", "!=", "<=", ">=", "~=", "->", "!", "<", ">", "+", "-", "*", "/", "%", "^",
    ".", "$", "@", "&", "(", ")", "{", "}", ";", ",", "=", "#",
];

/// Most tokens one field may hold.
const MAX_TOKENS: usize = 100_000;

pub(crate) fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if out.len() >= MAX_TOKENS {
            return Err("too many tokens".into());
        }
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'"' {
            let (st, n) = string(&b[i + 1..])?;
            out.push(Tok::Str(st));
            i += n + 1;
        } else if c.is_ascii_digit() {
            let st = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let f = s[st..i].parse().map_err(|_| "bad number".to_string())?;
                out.push(Tok::Float(f));
            } else {
                let n = s[st..i]
                    .parse()
                    .map_err(|_| format!("integer {} out of range", &s[st..i]))?;
                out.push(Tok::Int(n));
            }
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let st = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(s[st..i].to_string()));
        } else if let Some(op) = OPS.iter().find(|o| b[i..].starts_with(o.as_bytes())) {
            if *op == "#" {
                // A comment runs to the end of the line (keynote.l).
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            out.push(Tok::Op(op));
            i += op.len();
        } else {
            return Err(format!(
                "unexpected character '{}'",
                s[i..].chars().next().unwrap_or('?')
            ));
        }
    }
    Ok(out)
}

/// A quoted string's body up to its closing quote: the text and the bytes consumed.
fn string(b: &[u8]) -> Result<(String, usize), String> {
    let mut v = Vec::new();
    let mut i = 0;
    loop {
        let Some(&c) = b.get(i) else {
            return Err("unterminated string".into());
        };
        i += 1;
        match c {
            b'"' => break,
            b'\\' => {
                let Some(&e) = b.get(i) else {
                    return Err("unterminated string".into());
                };
                i += 1;
                match e {
                    b'n' => v.push(b'\n'),
                    b't' => v.push(b'\t'),
                    b'r' => v.push(b'\r'),
                    b'\n' => {
                        // A backslash-newline continues the string; leading blanks go.
                        while matches!(b.get(i), Some(b' ' | b'\t')) {
                            i += 1;
                        }
                    }
                    b'0'..=b'7' => {
                        let mut n = u32::from(e - b'0');
                        for _ in 0..2 {
                            match b.get(i) {
                                Some(&d @ b'0'..=b'7') => {
                                    n = n * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        v.push(n as u8);
                    }
                    other => v.push(other),
                }
            }
            other => v.push(other),
        }
    }
    Ok((String::from_utf8_lossy(&v).into_owned(), i))
}
