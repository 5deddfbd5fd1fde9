//! KeyNote trust management (RFC 2704, libkeynote) as isakmpd uses it for isakmpd.policy(5):
//! local assertions read from the policy file, queried once per Quick Mode proposal with the
//! action attributes isakmpd's policy.c computes and the peer's principals as
//! ike_quick_mode.c `check_policy` adds them (`passphrase:`, `passphrase-md5-hex:`,
//! `passphrase-sha1-hex:`, `DN:`).
//!
//! An assertion is a block of `Field: value` lines (continuation lines begin with a blank)
//! separated from the next by a blank line: KeyNote-Version, Comment, Local-Constants,
//! Authorizer, Licensees, Conditions, Signature. An assertion that is malformed is skipped with
//! a warning naming its line, as isakmpd does when `kn_add_assertion` fails. A signed
//! assertion (a credential) is kept only if its signature verifies by its Authorizer's key
//! (`sig`: RSA with SHA-1 or MD5); libkeynote trusts every assertion of the local policy
//! file unchecked, this port checks the ones that carry a signature. Principals that are
//! keys compare as keys, whatever their encoding.
//!
//! A query may add trusted session assertions: those isakmpd makes from a peer's verified
//! certificates (x509.c `x509_generate_kn`), built by the engine.
//!
//! Everything is bounded (file size, assertion count, nesting depth, steps per query) and no
//! input makes the parser or evaluator panic. Regular expressions (`~=`) use the C library's
//! POSIX regcomp/regexec (REG_EXTENDED), as libkeynote does; this module lives outside the
//! sans-IO engine, which sees a policy only through [`crate::ike::policy::ProposalPolicy`].

#![forbid(unsafe_code)]

mod cred;
mod expr;
pub mod file;
mod lex;
mod regex;
mod sig;
#[cfg(test)]
mod tests;

pub use cred::{peer_credentials, private_key};
use expr::{Clause, Lic, Parser};
pub use file::{describe, load, off_reason, policy_file, wall_clock, Enforced};
use std::cell::Cell;
use std::collections::HashMap;

/// Largest policy file read.
pub const MAX_FILE: usize = 1 << 20;
/// Most assertions kept.
pub const MAX_ASSERTIONS: usize = 4096;
/// Evaluation steps one query may take.
const MAX_STEPS: u32 = 200_000;

/// The principal local policy assertions are issued by.
pub const POLICY: &str = "POLICY";

#[derive(Debug)]
struct Assertion {
    line: usize,
    authorizer: String,
    licensees: Option<Lic>,
    conditions: Vec<Clause>,
    constants: HashMap<String, String>,
    /// It carried a Signature, and the signature verified.
    signed: bool,
}

/// A parsed set of local assertions.
#[derive(Debug, Default)]
pub struct Policy {
    assertions: Vec<Assertion>,
}

/// What the policy file held: the assertions kept and why others were skipped.
pub struct Loaded {
    pub policy: Policy,
    pub warnings: Vec<String>,
}

impl Policy {
    /// Parses a policy file's text. Malformed assertions, and signed ones whose signature
    /// does not verify, are skipped with a warning (isakmpd logs "kn_add_assertion failed"
    /// and goes on).
    pub fn parse(text: &str) -> Loaded {
        let mut warnings = Vec::new();
        let mut assertions = Vec::new();
        let text = if text.len() > MAX_FILE {
            warnings.push(format!("longer than {MAX_FILE} bytes; the rest is ignored"));
            let mut end = MAX_FILE;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            &text[..end]
        } else {
            text
        };
        for (line, block, raw) in split_assertions(text) {
            if assertions.len() >= MAX_ASSERTIONS {
                warnings.push(format!(
                    "line {line}: more than {MAX_ASSERTIONS} assertions; the rest are ignored"
                ));
                break;
            }
            match parse_assertion(line, &block, raw) {
                Ok(a) => assertions.push(a),
                Err(e) => warnings.push(format!("line {line}: assertion ignored: {e}")),
            }
        }
        Loaded {
            policy: Policy { assertions },
            warnings,
        }
    }

    /// Trusted assertions for one query (made by the engine from a peer's verified
    /// certificates); one that does not parse is left out.
    pub fn session(texts: &[String]) -> Policy {
        let mut assertions = Vec::new();
        for t in texts {
            if let Some((line, block, raw)) = split_assertions(t).into_iter().next() {
                match parse_assertion(line, &block, raw) {
                    Ok(a) => assertions.push(a),
                    Err(e) => crate::ike_debug!(
                        crate::log::DebugClass::Policy,
                        30,
                        "keynote: session assertion ignored: {e}"
                    ),
                }
            }
        }
        Policy { assertions }
    }

    pub fn len(&self) -> usize {
        self.assertions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.assertions.is_empty()
    }

    /// The compliance value of an action: an index into `values` (ordered from least to most
    /// trusted, as isakmpd's {"false", "true"}), given the action's attributes and the
    /// principals that requested it (`kn_add_authorizer`).
    pub fn query(
        &self,
        attrs: &dyn Fn(&str) -> Option<String>,
        authorizers: &[String],
        values: &[&str],
    ) -> usize {
        self.query_with(attrs, authorizers, values, &Policy::default())
    }

    /// [`Policy::query`] with the assertions of `session` beside this policy's.
    pub fn query_with(
        &self,
        attrs: &dyn Fn(&str) -> Option<String>,
        authorizers: &[String],
        values: &[&str],
        session: &Policy,
    ) -> usize {
        if values.is_empty() {
            return 0;
        }
        let authorizers: Vec<String> = authorizers.iter().map(|a| sig::canonical(a)).collect();
        let q = Query {
            policy: self,
            session,
            attrs,
            authorizers: &authorizers,
            values,
            steps: Cell::new(0),
            memo: std::cell::RefCell::new(HashMap::new()),
        };
        q.principal(POLICY, 0)
    }
}

/// One line of an assertion: its number, its text, and where it starts in the
/// assertion's raw text.
type Line<'a> = (usize, &'a str, usize);

/// Splits the text into assertions at blank lines; lines beginning with '#' are comments.
/// Yields each assertion's first line number, its lines, and its raw text from its first
/// line (a comment included, as libkeynote signs it) to its end.
fn split_assertions(text: &str) -> Vec<(usize, Vec<Line<'_>>, &str)> {
    let mut out = Vec::new();
    let mut cur: Vec<Line<'_>> = Vec::new();
    let mut start: Option<usize> = None;
    let mut off = 0;
    fn end<'t>(
        text: &'t str,
        out: &mut Vec<(usize, Vec<Line<'t>>, &'t str)>,
        cur: &mut Vec<Line<'t>>,
        start: &mut Option<usize>,
        upto: usize,
    ) {
        if let (Some(s), Some(first)) = (start.take(), cur.first()) {
            let first = first.0;
            let lines = std::mem::take(cur)
                .into_iter()
                .map(|(n, l, o)| (n, l, o - s))
                .collect();
            out.push((first, lines, &text[s..upto]));
        }
        cur.clear();
    }
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let l = raw.trim_end_matches(['\n', '\r']);
        if l.trim().is_empty() {
            end(text, &mut out, &mut cur, &mut start, off);
        } else {
            start.get_or_insert(off);
            if !l.starts_with('#') {
                cur.push((i + 1, l, off));
            }
        }
        off += raw.len();
    }
    end(text, &mut out, &mut cur, &mut start, text.len());
    out
}

fn parse_assertion(line: usize, lines: &[Line<'_>], raw: &str) -> Result<Assertion, String> {
    // Fields: a name at the start of a line, its value running on over indented lines.
    let mut fields: Vec<(String, usize, String)> = Vec::new();
    let mut signed_upto = None;
    for &(n, l, off) in lines {
        if signed_upto.is_some() {
            return Err(format!("line {n}: Signature must be the last field"));
        }
        if l.starts_with([' ', '\t']) {
            let Some(f) = fields.last_mut() else {
                return Err(format!("line {n}: continuation line without a field"));
            };
            f.2.push('\n');
            f.2.push_str(l);
        } else {
            let (name, value) = l
                .split_once(':')
                .ok_or_else(|| format!("line {n}: not a 'Field: value' line"))?;
            let name = name.trim().to_ascii_lowercase();
            if name == "signature" {
                signed_upto = Some(off);
            }
            fields.push((name, n, value.to_string()));
        }
    }
    let mut a = Assertion {
        line,
        authorizer: String::new(),
        licensees: None,
        conditions: Vec::new(),
        constants: HashMap::new(),
        signed: false,
    };
    let mut seen: Vec<&str> = Vec::new();
    let (mut lic_text, mut cond_text, mut auth_text, mut sig_text) = (None, None, None, None);
    for (i, (name, n, value)) in fields.iter().enumerate() {
        // Every field at most once, Comment included (libkeynote parse_assertion.c).
        if seen.contains(&name.as_str()) {
            return Err(format!("line {n}: field {name} given twice"));
        }
        seen.push(name);
        match name.as_str() {
            "keynote-version" => {
                if i != 0 {
                    return Err(format!("line {n}: KeyNote-Version must come first"));
                }
                let toks = lex::lex(value).map_err(|e| format!("line {n}: {e}"))?;
                if !matches!(toks.as_slice(), [lex::Tok::Int(2)] | [lex::Tok::Str(_)]) {
                    return Err(format!("line {n}: unsupported KeyNote-Version"));
                }
                if let [lex::Tok::Str(s)] = toks.as_slice() {
                    if s != "2" {
                        return Err(format!("line {n}: unsupported KeyNote-Version"));
                    }
                }
            }
            "comment" => {}
            "local-constants" => {
                let toks = lex::lex(value).map_err(|e| format!("line {n}: {e}"))?;
                for c in toks.chunks(3) {
                    match c {
                        [lex::Tok::Ident(k), lex::Tok::Op("="), lex::Tok::Str(v)] => {
                            a.constants.insert(k.clone(), v.clone());
                        }
                        _ => return Err(format!("line {n}: malformed Local-Constants")),
                    }
                }
            }
            "authorizer" => auth_text = Some((*n, value.as_str())),
            "licensees" => lic_text = Some((*n, value.as_str())),
            "conditions" => cond_text = Some((*n, value.as_str())),
            "signature" => sig_text = Some((*n, value.as_str())),
            other => return Err(format!("line {n}: unknown field '{other}'")),
        }
    }
    let constant = |k: &str| a.constants.get(k).cloned();
    let (n, text) = auth_text.ok_or("no Authorizer field")?;
    let toks = lex::lex(text).map_err(|e| format!("line {n}: {e}"))?;
    a.authorizer = sig::canonical(&match toks.as_slice() {
        [lex::Tok::Str(s)] => s.clone(),
        [lex::Tok::Ident(k)] => {
            constant(k).ok_or_else(|| format!("line {n}: unknown name {k} in Authorizer"))?
        }
        _ => return Err(format!("line {n}: Authorizer must be one principal")),
    });
    if let (Some((n, text)), Some(upto)) = (sig_text, signed_upto) {
        let toks = lex::lex(text).map_err(|e| format!("line {n}: {e}"))?;
        let [lex::Tok::Str(s)] = toks.as_slice() else {
            return Err(format!("line {n}: Signature must be one string"));
        };
        let signed = raw.as_bytes().get(..upto).unwrap_or_default();
        sig::verify(&a.authorizer, signed, s)
            .map_err(|e| format!("line {n}: signed assertion refused: {e}"))?;
        a.signed = true;
    }
    if let Some((n, text)) = lic_text {
        let toks = lex::lex(text).map_err(|e| format!("line {n}: {e}"))?;
        if !toks.is_empty() {
            let mut p = Parser::new(&toks);
            let l = p
                .licensees(&constant)
                .map_err(|e| format!("line {n}: Licensees: {e}"))?;
            if !p.at_end() {
                return Err(format!("line {n}: Licensees: trailing text"));
            }
            a.licensees = Some(l);
        }
    }
    if let Some((n, text)) = cond_text {
        let toks = lex::lex(text).map_err(|e| format!("line {n}: {e}"))?;
        let mut p = Parser::new(&toks);
        a.conditions = p
            .clauses()
            .map_err(|e| format!("line {n}: Conditions: {e}"))?;
        if !p.at_end() {
            return Err(format!("line {n}: Conditions: unbalanced '}}'"));
        }
    }
    Ok(a)
}

struct Query<'a> {
    policy: &'a Policy,
    /// Trusted assertions of this query only.
    session: &'a Policy,
    attrs: &'a dyn Fn(&str) -> Option<String>,
    authorizers: &'a [String],
    values: &'a [&'a str],
    steps: Cell<u32>,
    /// Principals already valued (and, while being valued, held at the minimum so that a
    /// delegation cycle ends).
    memo: std::cell::RefCell<HashMap<String, usize>>,
}

impl Query<'_> {
    fn max(&self) -> usize {
        self.values.len() - 1
    }

    /// The value a principal's assertions give it (RFC 2704 §5): the action's authorizers
    /// have the maximum; any other the best of min(Conditions, Licensees) over the
    /// assertions it issued.
    fn principal(&self, p: &str, depth: usize) -> usize {
        if self.authorizers.iter().any(|a| a == p) {
            return self.max();
        }
        if let Some(v) = self.memo.borrow().get(p) {
            return *v;
        }
        if depth > expr::MAX_DEPTH {
            return 0;
        }
        self.memo.borrow_mut().insert(p.to_string(), 0);
        let mut best = 0;
        let all = self
            .policy
            .assertions
            .iter()
            .chain(&self.session.assertions);
        for a in all.filter(|a| a.authorizer == p) {
            if best == self.max() {
                break;
            }
            let env = AssertionEnv {
                q: self,
                a,
                groups: std::cell::RefCell::new(Vec::new()),
            };
            let cond = self.clauses(&a.conditions, &env).unwrap_or_else(|e| {
                crate::ike_debug!(
                    crate::log::DebugClass::Policy,
                    40,
                    "keynote: assertion at line {}: {e}",
                    a.line
                );
                0
            });
            if cond <= best {
                continue;
            }
            let lic = match &a.licensees {
                None => self.max(),
                Some(l) => self.licensees(l, depth + 1),
            };
            best = best.max(cond.min(lic));
        }
        self.memo.borrow_mut().insert(p.to_string(), best);
        best
    }

    fn licensees(&self, l: &Lic, depth: usize) -> usize {
        match l {
            Lic::Principal(p) => self.principal(p, depth),
            Lic::And(v) => v
                .iter()
                .map(|x| self.licensees(x, depth))
                .min()
                .unwrap_or(0),
            Lic::Or(v) => v
                .iter()
                .map(|x| self.licensees(x, depth))
                .max()
                .unwrap_or(0),
            Lic::KOf(k, list) => {
                let mut v: Vec<usize> = list.iter().map(|x| self.licensees(x, depth)).collect();
                v.sort_unstable_by(|a, b| b.cmp(a));
                v.get(*k as usize - 1).copied().unwrap_or(0)
            }
        }
    }

    /// A program's value: the best value of the clauses whose test holds (empty: maximum).
    fn clauses(&self, cs: &[Clause], env: &AssertionEnv<'_, '_>) -> Result<usize, String> {
        if cs.is_empty() {
            return Ok(self.max());
        }
        let mut best = 0;
        for c in cs {
            let v = match c {
                Clause::Value(test, value) => {
                    if !expr::truth(test, env)? {
                        continue;
                    }
                    match value {
                        None => self.max(),
                        Some(v) => {
                            let s = match expr::eval(v, env)? {
                                expr::Val::Str(s) => s,
                                _ => return Err("a compliance value is not a string".into()),
                            };
                            self.values.iter().position(|x| *x == s).unwrap_or(0)
                        }
                    }
                }
                Clause::Block(test, inner) => {
                    if !expr::truth(test, env)? {
                        continue;
                    }
                    self.clauses(inner, env)?
                }
            };
            best = best.max(v);
        }
        Ok(best)
    }
}

struct AssertionEnv<'q, 'a> {
    q: &'q Query<'a>,
    a: &'q Assertion,
    /// `_0` to `_9`: the last successful `~=` in this assertion.
    groups: std::cell::RefCell<Vec<String>>,
}

impl expr::Env for AssertionEnv<'_, '_> {
    fn lookup(&self, name: &str) -> String {
        if let Some(c) = self.a.constants.get(name) {
            return c.clone();
        }
        if let [b'_', d @ b'0'..=b'9'] = name.as_bytes() {
            return self
                .groups
                .borrow()
                .get(usize::from(d - b'0'))
                .cloned()
                .unwrap_or_default();
        }
        match name {
            "_MIN_TRUST" => self.q.values[0].to_string(),
            "_MAX_TRUST" => self.q.values[self.q.max()].to_string(),
            "_VALUES" => self.q.values.join(","),
            "_ACTION_AUTHORIZERS" => self.q.authorizers.join(","),
            _ => (self.q.attrs)(name).unwrap_or_default(),
        }
    }

    fn regex(&self, s: &str, re: &str) -> Result<bool, String> {
        match regex::matches(s, re)? {
            Some(groups) => {
                *self.groups.borrow_mut() = groups;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn step(&self) -> Result<(), String> {
        let n = self.q.steps.get() + 1;
        self.q.steps.set(n);
        if n > MAX_STEPS {
            return Err("evaluation takes too many steps".into());
        }
        Ok(())
    }
}
