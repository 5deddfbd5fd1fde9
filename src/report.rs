//! The report (SIGUSR1, FIFO `r`) and result (`S`, `C get`) files.
//!
//! The report is plain text in a fixed layout: `== part ==` headings, then `key: value`
//! lines, then the running configuration as isakmpd.conf text. Tests and people read the
//! same file. Secrets never appear: pre-shared keys (`Authentication` tags) are masked.

#![forbid(unsafe_code)]

use std::fmt::Write as _;

use crate::conf::defaults;
use crate::conf::Conf;

/// Tags whose values are secrets and are masked in reports.
const SECRET_TAGS: &[&str] = &["Authentication"];

pub const MASK: &str = "<hidden>";

pub fn is_secret(tag: &str) -> bool {
    SECRET_TAGS.iter().any(|s| s.eq_ignore_ascii_case(tag))
}

pub fn heading(out: &mut String, name: &str) {
    let _ = writeln!(out, "== {name} ==");
}

/// The running configuration in isakmpd.conf syntax, secrets masked.
pub fn conf_dump(conf: &Conf, out: &mut String) {
    for s in conf.sections() {
        let _ = writeln!(out, "[{}]", s.name);
        for b in &s.bindings {
            let v = if is_secret(&b.tag) {
                MASK
            } else {
                b.value.as_str()
            };
            let _ = writeln!(out, "{}=\t{}", b.tag, v);
        }
        out.push('\n');
    }
    let (mm, qm) = defaults::generated_counts();
    let _ = writeln!(
        out,
        "# plus isakmpd's generated defaults ({mm} main mode transforms, {qm} quick mode suites), resolved on demand"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked() {
        let c = Conf::parse("[peer]\nAuthentication=s3cret\nAddress=192.0.2.1\n")
            .unwrap()
            .conf;
        let mut out = String::new();
        conf_dump(&c, &mut out);
        assert!(!out.contains("s3cret"));
        assert!(out.contains("Authentication=\t<hidden>"));
        assert!(out.contains("Address=\t192.0.2.1"));
    }
}
