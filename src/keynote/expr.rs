//! The Conditions and Licensees languages of RFC 2704 §4.6.5 and §4.6.4 (libkeynote
//! keynote.y): parsing into a tree, and evaluation against an action environment.
//!
//! Conditions: clauses `test -> value;`, `test -> { clauses }` or a bare `test` (the maximum
//! value); tests combine with `&&`, `||`, `!`; comparisons of strings (`==` `!=` `<` `>`
//! `<=` `>=` `~=`) and numbers (`@` integer, `&` float conversions, literals, `+ - * / % ^`);
//! `$` dereferences a name, `.` concatenates. Licensees: principals, `&&`, `||`, `K-of(...)`.

use super::lex::Tok;

/// Deepest nesting of parentheses, blocks and unary operators.
pub(crate) const MAX_DEPTH: usize = 64;
/// Longest string an expression may build.
const MAX_STRING: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub(crate) enum Expr {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// An attribute (or local constant) by name.
    Name(String),
    Deref(Box<Expr>),
    ToInt(Box<Expr>),
    ToFloat(Box<Expr>),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    /// `||` and `&&` chains, held flat so that a long chain does not nest.
    Any(Vec<Expr>),
    All(Vec<Expr>),
    Bin(&'static str, Box<Expr>, Box<Expr>),
}

#[derive(Clone, Debug)]
pub(crate) enum Clause {
    /// `test -> value` (value `None`: a bare test, the maximum value).
    Value(Expr, Option<Expr>),
    Block(Expr, Vec<Clause>),
}

#[derive(Clone, Debug)]
pub(crate) enum Lic {
    Principal(String),
    And(Vec<Lic>),
    Or(Vec<Lic>),
    KOf(u32, Vec<Lic>),
}

pub(crate) struct Parser<'a> {
    toks: &'a [Tok],
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(toks: &'a [Tok]) -> Self {
        Parser {
            toks,
            pos: 0,
            depth: 0,
        }
    }

    fn peek(&self) -> Option<&'a Tok> {
        self.toks.get(self.pos)
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(o)) if *o == op)
    }

    fn eat(&mut self, op: &str) -> bool {
        if self.is_op(op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, op: &str) -> Result<(), String> {
        if self.eat(op) {
            Ok(())
        } else {
            Err(format!("expected '{op}' {}", self.here()))
        }
    }

    fn here(&self) -> String {
        match self.peek() {
            None => "at end".into(),
            Some(t) => format!("near {}", show(t)),
        }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("nested too deeply".into());
        }
        Ok(())
    }

    /// Clauses up to the end of the field (or the closing brace of a block).
    pub(crate) fn clauses(&mut self) -> Result<Vec<Clause>, String> {
        let mut out = Vec::new();
        while !self.at_end() && !self.is_op("}") {
            let test = self.or()?;
            if self.eat("->") {
                if self.eat("{") {
                    self.enter()?;
                    let inner = self.clauses()?;
                    self.depth -= 1;
                    self.expect("}")?;
                    out.push(Clause::Block(test, inner));
                } else {
                    let v = self.concat()?;
                    out.push(Clause::Value(test, Some(v)));
                }
            } else {
                out.push(Clause::Value(test, None));
            }
            // The last clause's ';' may be left out (libkeynote accepts it).
            if !self.eat(";") && !self.at_end() && !self.is_op("}") {
                return Err(format!("expected ';' {}", self.here()));
            }
        }
        Ok(out)
    }

    pub(crate) fn or(&mut self) -> Result<Expr, String> {
        let mut v = vec![self.and()?];
        while self.eat("||") {
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::Any(v)
        })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut v = vec![self.not()?];
        while self.eat("&&") {
            v.push(self.not()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::All(v)
        })
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.eat("!") {
            self.enter()?;
            let e = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Expr, String> {
        let l = self.add()?;
        for op in ["==", "!=", "<=", ">=", "<", ">", "~="] {
            if self.eat(op) {
                let r = self.add()?;
                return Ok(Expr::Bin(op, Box::new(l), Box::new(r)));
            }
        }
        Ok(l)
    }

    fn add(&mut self) -> Result<Expr, String> {
        let mut l = self.mul()?;
        let depth = self.depth;
        let r = self.add_rest(&mut l);
        self.depth = depth;
        r.map(|()| l)
    }

    /// Each further operand of a chain nests the tree one level deeper.
    fn add_rest(&mut self, l: &mut Expr) -> Result<(), String> {
        loop {
            let op = if self.eat("+") {
                "+"
            } else if self.eat("-") {
                "-"
            } else {
                return Ok(());
            };
            self.enter()?;
            let r = self.mul()?;
            let prev = std::mem::replace(l, Expr::Bool(false));
            *l = Expr::Bin(op, Box::new(prev), Box::new(r));
        }
    }

    fn mul(&mut self) -> Result<Expr, String> {
        let mut l = self.pow()?;
        let depth = self.depth;
        let r = self.mul_rest(&mut l);
        self.depth = depth;
        r.map(|()| l)
    }

    fn mul_rest(&mut self, l: &mut Expr) -> Result<(), String> {
        loop {
            let op = if self.eat("*") {
                "*"
            } else if self.eat("/") {
                "/"
            } else if self.eat("%") {
                "%"
            } else {
                return Ok(());
            };
            self.enter()?;
            let r = self.pow()?;
            let prev = std::mem::replace(l, Expr::Bool(false));
            *l = Expr::Bin(op, Box::new(prev), Box::new(r));
        }
    }

    fn pow(&mut self) -> Result<Expr, String> {
        let l = self.unary()?;
        if self.eat("^") {
            self.enter()?;
            let r = self.pow()?;
            self.depth -= 1;
            return Ok(Expr::Bin("^", Box::new(l), Box::new(r)));
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat("-") {
            self.enter()?;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Neg(Box::new(e)));
        }
        self.concat()
    }

    /// String concatenation binds tighter than any other operator.
    pub(crate) fn concat(&mut self) -> Result<Expr, String> {
        let mut l = self.prim()?;
        let depth = self.depth;
        while self.eat(".") {
            if let Err(e) = self.enter() {
                self.depth = depth;
                return Err(e);
            }
            let r = self.prim()?;
            l = Expr::Bin(".", Box::new(l), Box::new(r));
        }
        self.depth = depth;
        Ok(l)
    }

    fn prim(&mut self) -> Result<Expr, String> {
        let t = self
            .peek()
            .ok_or_else(|| "expression ends early".to_string())?;
        self.pos += 1;
        Ok(match t {
            Tok::Str(s) => Expr::Str(s.clone()),
            Tok::Int(n) => Expr::Int(*n),
            Tok::Float(f) => Expr::Float(*f),
            Tok::Ident(n) if n == "true" => Expr::Bool(true),
            Tok::Ident(n) if n == "false" => Expr::Bool(false),
            Tok::Ident(n) => Expr::Name(n.clone()),
            Tok::Op(op @ ("(" | "$" | "@" | "&")) => {
                self.enter()?;
                let e = if *op == "(" {
                    let e = self.or()?;
                    self.expect(")")?;
                    e
                } else {
                    let inner = Box::new(self.prim()?);
                    match *op {
                        "$" => Expr::Deref(inner),
                        "@" => Expr::ToInt(inner),
                        _ => Expr::ToFloat(inner),
                    }
                };
                self.depth -= 1;
                e
            }
            other => return Err(format!("unexpected {}", show(other))),
        })
    }

    /// A Licensees expression; names are resolved by `constant`.
    pub(crate) fn licensees(
        &mut self,
        constant: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Lic, String> {
        let mut v = vec![self.lic_and(constant)?];
        while self.eat("||") {
            v.push(self.lic_and(constant)?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Lic::Or(v)
        })
    }

    fn lic_and(&mut self, constant: &dyn Fn(&str) -> Option<String>) -> Result<Lic, String> {
        let mut v = vec![self.lic_prim(constant)?];
        while self.eat("&&") {
            v.push(self.lic_prim(constant)?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Lic::And(v)
        })
    }

    fn lic_prim(&mut self, constant: &dyn Fn(&str) -> Option<String>) -> Result<Lic, String> {
        let t = self
            .peek()
            .ok_or_else(|| "licensees end early".to_string())?;
        self.pos += 1;
        match t {
            Tok::Str(s) => Ok(Lic::Principal(super::sig::canonical(s))),
            Tok::Ident(n) => constant(n)
                .map(|p| Lic::Principal(super::sig::canonical(&p)))
                .ok_or_else(|| format!("unknown name {n} in Licensees")),
            Tok::Op("(") => {
                self.enter()?;
                let e = self.licensees(constant)?;
                self.depth -= 1;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Int(k) => {
                self.expect("-")?;
                if !matches!(self.peek(), Some(Tok::Ident(o)) if o.eq_ignore_ascii_case("of")) {
                    return Err(format!("expected 'of' {}", self.here()));
                }
                self.pos += 1;
                self.expect("(")?;
                self.enter()?;
                let mut list = vec![self.licensees(constant)?];
                while self.eat(",") {
                    list.push(self.licensees(constant)?);
                }
                self.depth -= 1;
                self.expect(")")?;
                let k = u32::try_from(*k).unwrap_or(u32::MAX);
                if k == 0 || k as usize > list.len() {
                    return Err(format!("{k}-of over {} principals", list.len()));
                }
                Ok(Lic::KOf(k, list))
            }
            other => Err(format!("unexpected {} in Licensees", show(other))),
        }
    }
}

fn show(t: &Tok) -> String {
    match t {
        // Not the text: it may be a principal holding a passphrase.
        Tok::Str(_) => "a quoted string".to_string(),
        Tok::Ident(s) => s.chars().take(40).collect(),
        Tok::Int(n) => n.to_string(),
        Tok::Float(f) => f.to_string(),
        Tok::Op(o) => format!("'{o}'"),
    }
}

/// A value during evaluation.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

/// What evaluation needs from its caller: names, regular expressions, a step budget.
pub(crate) trait Env {
    /// An attribute's (or constant's) value; "" when it has none (RFC 2704 §4.6.5).
    fn lookup(&self, name: &str) -> String;
    /// Whether `s` matches the POSIX extended regular expression `re`; a match sets `_0`
    /// (the whole match) to `_9` (its groups) for the rest of the assertion (RFC 2704).
    fn regex(&self, s: &str, re: &str) -> Result<bool, String>;
    /// Counts one step; an error once the budget is spent.
    fn step(&self) -> Result<(), String>;
}

impl Val {
    fn into_string(self) -> String {
        match self {
            Val::Str(s) => s,
            Val::Int(n) => n.to_string(),
            Val::Float(f) => format!("{f:.6}"),
            Val::Bool(b) => b.to_string(),
        }
    }
}

/// libkeynote converts with atoi/atof: leading blanks, a sign, the digits that follow.
fn atoi(s: &str) -> i64 {
    let t = s.trim_start();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut n: i64 = 0;
    for c in t.bytes().take_while(u8::is_ascii_digit) {
        n = n.wrapping_mul(10).wrapping_add(i64::from(c - b'0'));
    }
    if neg {
        n.wrapping_neg()
    } else {
        n
    }
}

fn atof(s: &str) -> f64 {
    let t = s.trim_start();
    let end = t
        .char_indices()
        .take_while(|(i, c)| {
            c.is_ascii_digit() || *c == '.' || (*i == 0 && (*c == '-' || *c == '+'))
        })
        .last()
        .map_or(0, |(i, c)| i + c.len_utf8());
    t[..end].parse().unwrap_or(0.0)
}

pub(crate) fn eval(e: &Expr, env: &dyn Env) -> Result<Val, String> {
    env.step()?;
    Ok(match e {
        Expr::Str(s) => Val::Str(s.clone()),
        Expr::Int(n) => Val::Int(*n),
        Expr::Float(f) => Val::Float(*f),
        Expr::Bool(b) => Val::Bool(*b),
        Expr::Name(n) => Val::Str(env.lookup(n)),
        Expr::Deref(i) => Val::Str(env.lookup(&eval(i, env)?.into_string())),
        Expr::ToInt(i) => Val::Int(atoi(&eval(i, env)?.into_string())),
        Expr::ToFloat(i) => Val::Float(atof(&eval(i, env)?.into_string())),
        Expr::Neg(i) => match eval(i, env)? {
            Val::Int(n) => Val::Int(n.wrapping_neg()),
            Val::Float(f) => Val::Float(-f),
            _ => return Err("'-' needs a number".into()),
        },
        Expr::Not(i) => Val::Bool(!truth(i, env)?),
        Expr::Any(v) => {
            for x in v {
                if truth(x, env)? {
                    return Ok(Val::Bool(true));
                }
            }
            Val::Bool(false)
        }
        Expr::All(v) => {
            for x in v {
                if !truth(x, env)? {
                    return Ok(Val::Bool(false));
                }
            }
            Val::Bool(true)
        }
        Expr::Bin(".", l, r) => {
            let mut s = eval(l, env)?.into_string();
            s.push_str(&eval(r, env)?.into_string());
            if s.len() > MAX_STRING {
                return Err("string too long".into());
            }
            Val::Str(s)
        }
        Expr::Bin(op, l, r) => binary(op, eval(l, env)?, eval(r, env)?, env)?,
    })
}

/// A test's truth; a test that is not boolean is an error.
pub(crate) fn truth(e: &Expr, env: &dyn Env) -> Result<bool, String> {
    match eval(e, env)? {
        Val::Bool(b) => Ok(b),
        _ => Err("a test is not a comparison".into()),
    }
}

fn num(v: &Val) -> Option<f64> {
    match v {
        Val::Int(n) => Some(*n as f64),
        Val::Float(f) => Some(*f),
        _ => None,
    }
}

fn binary(op: &str, l: Val, r: Val, env: &dyn Env) -> Result<Val, String> {
    use std::cmp::Ordering;
    let ord = |o: Ordering| -> Val {
        Val::Bool(match op {
            "==" => o == Ordering::Equal,
            "!=" => o != Ordering::Equal,
            "<" => o == Ordering::Less,
            ">" => o == Ordering::Greater,
            "<=" => o != Ordering::Greater,
            _ => o != Ordering::Less,
        })
    };
    match (op, l, r) {
        ("~=", l, r) => Ok(Val::Bool(env.regex(&l.into_string(), &r.into_string())?)),
        ("==" | "!=" | "<" | ">" | "<=" | ">=", Val::Str(a), Val::Str(b)) => Ok(ord(a.cmp(&b))),
        ("==" | "!=" | "<" | ">" | "<=" | ">=", Val::Int(a), Val::Int(b)) => Ok(ord(a.cmp(&b))),
        ("==" | "!=" | "<" | ">" | "<=" | ">=", a, b) => {
            let (x, y) = (num(&a), num(&b));
            match (x, y) {
                (Some(x), Some(y)) => Ok(x.partial_cmp(&y).map_or(Val::Bool(op == "!="), ord)),
                _ => Err(format!("'{op}' between a string and a number")),
            }
        }
        (_, Val::Int(a), Val::Int(b)) => Ok(Val::Int(match op {
            "+" => a.wrapping_add(b),
            "-" => a.wrapping_sub(b),
            "*" => a.wrapping_mul(b),
            "/" | "%" if b == 0 => return Err("division by zero".into()),
            "/" => a.wrapping_div(b),
            "%" => a.wrapping_rem(b),
            _ => a.wrapping_pow(u32::try_from(b).map_err(|_| "bad exponent")?),
        })),
        (_, a, b) => {
            let (Some(x), Some(y)) = (num(&a), num(&b)) else {
                return Err(format!("'{op}' needs numbers"));
            };
            Ok(Val::Float(match op {
                "+" => x + y,
                "-" => x - y,
                "*" => x * y,
                "/" if y == 0.0 => return Err("division by zero".into()),
                "/" => x / y,
                "%" => return Err("'%' needs integers".into()),
                _ => x.powf(y),
            }))
        }
    }
}
