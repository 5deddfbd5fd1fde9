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
//! assertion is skipped too: this port does not verify KeyNote signatures, and trusting an
//! unverified one would be worse than ignoring it.
//!
//! Everything is bounded (file size, assertion count, nesting depth, steps per query) and no
//! input makes the parser or evaluator panic. Regular expressions (`~=`) use the C library's
//! POSIX regcomp/regexec (REG_EXTENDED), as libkeynote does; this module lives outside the
//! sans-IO engine, which sees a policy only through [`crate::ike::policy::ProposalPolicy`].

#![forbid(unsafe_code)]

mod expr;
pub mod file;
mod lex;
mod regex;
#[cfg(test)]
mod tests;

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
    /// Parses a policy file's text. Malformed or signed assertions are skipped with a warning
    /// (isakmpd logs "kn_add_assertion failed" and goes on).
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
        for (line, block) in split_assertions(text) {
            if assertions.len() >= MAX_ASSERTIONS {
                warnings.push(format!(
                    "line {line}: more than {MAX_ASSERTIONS} assertions; the rest are ignored"
                ));
                break;
            }
            match parse_assertion(line, &block) {
                Ok(a) => assertions.push(a),
                Err(e) => warnings.push(format!("line {line}: assertion ignored: {e}")),
            }
        }
        Loaded {
            policy: Policy { assertions },
            warnings,
        }
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
        if values.is_empty() {
            return 0;
        }
        let q = Query {
            policy: self,
            attrs,
            authorizers,
            values,
            steps: Cell::new(0),
            memo: std::cell::RefCell::new(HashMap::new()),
        };
        q.principal(POLICY, 0)
    }
}

/// Splits the text into assertions at blank lines; lines beginning with '#' are comments.
/// Yields each assertion's first line number and its lines.
fn split_assertions(text: &str) -> Vec<(usize, Vec<(usize, &str)>)> {
    let mut out = Vec::new();
    let mut cur: Vec<(usize, &str)> = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            if !cur.is_empty() {
                out.push((cur[0].0, std::mem::take(&mut cur)));
            }
        } else if !l.starts_with('#') {
            cur.push((i + 1, l));
        }
    }
    if !cur.is_empty() {
        out.push((cur[0].0, cur));
    }
    out
}

fn parse_assertion(line: usize, lines: &[(usize, &str)]) -> Result<Assertion, String> {
    // Fields: a name at the start of a line, its value running on over indented lines.
    let mut fields: Vec<(String, usize, String)> = Vec::new();
    for &(n, l) in lines {
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
            fields.push((name.trim().to_ascii_lowercase(), n, value.to_string()));
        }
    }
    let mut a = Assertion {
        line,
        authorizer: String::new(),
        licensees: None,
        conditions: Vec::new(),
        constants: HashMap::new(),
    };
    let mut seen: Vec<&str> = Vec::new();
    let (mut lic_text, mut cond_text, mut auth_text) = (None, None, None);
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
            "signature" => {
                return Err(format!(
                    "line {n}: signed assertions are not verified by this daemon"
                ))
            }
            other => return Err(format!("line {n}: unknown field '{other}'")),
        }
    }
    let constant = |k: &str| a.constants.get(k).cloned();
    let (n, text) = auth_text.ok_or("no Authorizer field")?;
    let toks = lex::lex(text).map_err(|e| format!("line {n}: {e}"))?;
    a.authorizer = match toks.as_slice() {
        [lex::Tok::Str(s)] => s.clone(),
        [lex::Tok::Ident(k)] => {
            constant(k).ok_or_else(|| format!("line {n}: unknown name {k} in Authorizer"))?
        }
        _ => return Err(format!("line {n}: Authorizer must be one principal")),
    };
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
        for a in self.policy.assertions.iter().filter(|a| a.authorizer == p) {
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
