//! isakmpd.conf(5): parsing, typed access, FIFO edits and the generated defaults.
//!
//! The format is isakmpd's INI dialect: `[Section]` headers, `Tag=Value` lines, comment
//! lines starting with `#` or `;`, a trailing backslash continuing a line, comma separated
//! lists, and `X,Y:Z` offer/accept ranges. Section and tag names are case-insensitive. A
//! duplicate tag keeps its first value, with a warning (as conf.c does).
//!
//! Unlike conf.c, which logs a bad line and goes on, a line that is not a comment, a section
//! header or an assignment is an error here: a reload must be all or nothing, so a broken
//! file never half-replaces the running configuration. The error names the line and why.
//!
//! The ~40,800 bindings isakmpd generates (transforms, suites, lifetimes, [General]
//! defaults) are not stored: [`Conf::get`] falls back to [`defaults::lookup`].

#![forbid(unsafe_code)]

pub mod defaults;

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

/// One `tag=value`, with the line it came from (0 for FIFO edits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub tag: String,
    pub value: String,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub bindings: Vec<Binding>,
    pub line: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conf {
    sections: Vec<Section>,
    /// Generated sections removed by `C rms`; cleared by a reload.
    suppressed: Vec<String>,
}

/// Why a file was refused: the line (1-based) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: {}", self.line, self.reason)
        } else {
            f.write_str(&self.reason)
        }
    }
}

/// A FIFO `C` edit that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// `set` without `force` on a tag that has a value.
    Exists(String),
    NoSuchTag,
    NoSuchSection,
    NotInList,
    Invalid(String),
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::Exists(v) => write!(f, "tag already set to '{v}' (use force)"),
            EditError::NoSuchTag => f.write_str("no such tag"),
            EditError::NoSuchSection => f.write_str("no such section"),
            EditError::NotInList => f.write_str("value not in list"),
            EditError::Invalid(r) => f.write_str(r),
        }
    }
}

/// Parse result: the configuration and the warnings (duplicates) met on the way.
pub struct Parsed {
    pub conf: Conf,
    pub warnings: Vec<ConfError>,
}

fn bad(line: usize, reason: impl Into<String>) -> ConfError {
    ConfError {
        line,
        reason: reason.into(),
    }
}

impl Conf {
    pub fn new() -> Conf {
        Conf::default()
    }

    /// Parses a whole file and checks the typed tags. Any error refuses the whole file.
    pub fn parse(text: &str) -> Result<Parsed, ConfError> {
        let mut conf = Conf::new();
        let mut warnings = Vec::new();
        let mut current: Option<usize> = None;
        let mut pending = String::new();
        let mut pending_line = 0;
        for (i, raw) in text.split('\n').enumerate() {
            let ln = i + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            if pending.is_empty() {
                pending_line = ln;
            }
            // A trailing backslash joins the next line (conf.c turns "\\\n" into "  ").
            if let Some(head) = raw.strip_suffix('\\') {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            pending.push_str(raw);
            let line = std::mem::take(&mut pending);
            conf.parse_line(&line, pending_line, &mut current, &mut warnings)?;
        }
        if !pending.is_empty() {
            conf.parse_line(&pending, pending_line, &mut current, &mut warnings)?;
        }
        conf.validate()?;
        Ok(Parsed { conf, warnings })
    }

    fn parse_line(
        &mut self,
        line: &str,
        ln: usize,
        current: &mut Option<usize>,
        warnings: &mut Vec<ConfError>,
    ) -> Result<(), ConfError> {
        if let Some(c) = line
            .chars()
            .find(|&c| (c.is_control() && c != '\t') || c == '\u{7f}')
        {
            return Err(bad(
                ln,
                format!("control character 0x{:02x} in line", c as u32),
            ));
        }
        let l = line.trim_start_matches([' ', '\t']);
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            return Ok(());
        }
        if let Some(rest) = l.strip_prefix('[') {
            let Some(end) = rest.find(']') else {
                return Err(bad(ln, "section header without closing ']'"));
            };
            let name = &rest[..end];
            let after = rest[end + 1..].trim();
            if !(after.is_empty() || after.starts_with('#') || after.starts_with(';')) {
                return Err(bad(
                    ln,
                    format!("unexpected text '{after}' after section header"),
                ));
            }
            if name.trim().is_empty() {
                return Err(bad(ln, "empty section name"));
            }
            *current = Some(self.section_index_or_insert(name, ln));
            return Ok(());
        }
        let Some(eq) = l.find('=') else {
            return Err(bad(
                ln,
                format!("syntax error: '{l}' is not a [section], tag=value or comment"),
            ));
        };
        let Some(si) = *current else {
            return Err(bad(ln, "tag=value before any [section]"));
        };
        let tag = l[..eq].trim_end_matches([' ', '\t']);
        if tag.is_empty() {
            return Err(bad(ln, "empty tag name"));
        }
        if tag.contains([' ', '\t']) {
            return Err(bad(ln, format!("tag name '{tag}' contains whitespace")));
        }
        let value = l[eq + 1..].trim_matches([' ', '\t']);
        let sec = &mut self.sections[si];
        if let Some(b) = sec
            .bindings
            .iter()
            .find(|b| b.tag.eq_ignore_ascii_case(tag))
        {
            warnings.push(bad(
                ln,
                format!(
                    "duplicate tag [{}]:{tag}, ignoring (first set on line {})",
                    sec.name, b.line
                ),
            ));
            return Ok(());
        }
        sec.bindings.push(Binding {
            tag: tag.into(),
            value: value.into(),
            line: ln,
        });
        Ok(())
    }

    fn section_index(&self, name: &str) -> Option<usize> {
        self.sections
            .iter()
            .position(|s| s.name.eq_ignore_ascii_case(name))
    }

    fn section_index_or_insert(&mut self, name: &str, line: usize) -> usize {
        match self.section_index(name) {
            Some(i) => i,
            None => {
                self.sections.push(Section {
                    name: name.into(),
                    bindings: Vec::new(),
                    line,
                });
                self.sections.len() - 1
            }
        }
    }

    fn explicit(&self, section: &str, tag: &str) -> Option<&Binding> {
        let s = &self.sections[self.section_index(section)?];
        s.bindings.iter().find(|b| b.tag.eq_ignore_ascii_case(tag))
    }

    /// The value of `[section]:tag`: the file (or FIFO edits) first, then isakmpd's defaults.
    pub fn get(&self, section: &str, tag: &str) -> Option<Cow<'_, str>> {
        if let Some(b) = self.explicit(section, tag) {
            return Some(Cow::Borrowed(&b.value));
        }
        if self
            .suppressed
            .iter()
            .any(|s| s.eq_ignore_ascii_case(section))
        {
            return None;
        }
        defaults::lookup(section, tag, |t| {
            self.explicit("General", t).map(|b| b.value.clone())
        })
    }

    /// A comma separated list; empty fields are skipped, each field trimmed.
    pub fn get_list(&self, section: &str, tag: &str) -> Vec<String> {
        match self.get(section, tag) {
            Some(v) => split_list(&v).map(str::to_owned).collect(),
            None => Vec::new(),
        }
    }

    /// A number, or `default` when unset. Typed tags are validated at load, so a bad value
    /// here only comes from a FIFO edit; it falls back to the default too.
    pub fn get_num(&self, section: &str, tag: &str, default: u64) -> u64 {
        self.get(section, tag)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    }

    pub fn has_section(&self, section: &str) -> bool {
        self.section_index(section).is_some()
    }

    /// The sections the file (and FIFO edits) define, in file order.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// FIFO `C set [section]:tag=value [force]`.
    pub fn set(
        &mut self,
        section: &str,
        tag: &str,
        value: &str,
        force: bool,
    ) -> Result<(), EditError> {
        check_name(section, tag)?;
        if let Some(old) = self.get(section, tag) {
            if !force {
                return Err(EditError::Exists(old.into_owned()));
            }
        }
        let si = self.section_index_or_insert(section, 0);
        let sec = &mut self.sections[si];
        match sec
            .bindings
            .iter_mut()
            .find(|b| b.tag.eq_ignore_ascii_case(tag))
        {
            Some(b) => {
                b.value = value.into();
                b.line = 0;
            }
            None => sec.bindings.push(Binding {
                tag: tag.into(),
                value: value.into(),
                line: 0,
            }),
        }
        Ok(())
    }

    /// FIFO `C add [section]:tag=value`: appends to a list unless already there.
    pub fn add(&mut self, section: &str, tag: &str, value: &str) -> Result<(), EditError> {
        check_name(section, tag)?;
        let mut list = self.get_list(section, tag);
        if list.iter().any(|v| v == value) {
            return Ok(());
        }
        list.push(value.into());
        self.set(section, tag, &list.join(","), true)
    }

    /// FIFO `C rmv [section]:tag=value`: removes one list entry, and the tag when the list
    /// becomes empty.
    pub fn rmv(&mut self, section: &str, tag: &str, value: &str) -> Result<(), EditError> {
        let mut list = self.get_list(section, tag);
        let before = list.len();
        list.retain(|v| v != value);
        if list.len() == before {
            return Err(EditError::NotInList);
        }
        if list.is_empty() {
            self.rm(section, tag)
        } else {
            self.set(section, tag, &list.join(","), true)
        }
    }

    /// FIFO `C rm [section]:tag`.
    pub fn rm(&mut self, section: &str, tag: &str) -> Result<(), EditError> {
        let si = self.section_index(section).ok_or(EditError::NoSuchTag)?;
        let sec = &mut self.sections[si];
        let before = sec.bindings.len();
        sec.bindings.retain(|b| !b.tag.eq_ignore_ascii_case(tag));
        if sec.bindings.len() == before {
            return Err(EditError::NoSuchTag);
        }
        Ok(())
    }

    /// FIFO `C rms [section]`: removes the section, generated defaults included.
    pub fn rms(&mut self, section: &str) -> Result<(), EditError> {
        let explicit = self.section_index(section);
        let generated = defaults::is_generated_section(section)
            && !self
                .suppressed
                .iter()
                .any(|s| s.eq_ignore_ascii_case(section));
        if explicit.is_none() && !generated {
            return Err(EditError::NoSuchSection);
        }
        if let Some(i) = explicit {
            self.sections.remove(i);
        }
        if generated {
            self.suppressed.push(section.into());
        }
        Ok(())
    }

    /// Checks the tags whose values have a fixed shape, so that a reload with, say,
    /// `Retransmits=many` is refused instead of silently read as 0.
    pub fn validate(&self) -> Result<(), ConfError> {
        for s in &self.sections {
            for b in &s.bindings {
                check_typed(&s.name, b).map_err(|reason| bad(b.line, reason))?;
            }
        }
        Ok(())
    }
}

fn check_name(section: &str, tag: &str) -> Result<(), EditError> {
    if section.is_empty() || section.contains([']', '\n']) {
        return Err(EditError::Invalid("bad section name".into()));
    }
    if tag.is_empty() || tag.contains(['=', ' ', '\t', '\n']) {
        return Err(EditError::Invalid("bad tag name".into()));
    }
    Ok(())
}

/// Splits a list value on commas, trimming whitespace and skipping empty fields.
pub fn split_list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|f| !f.is_empty())
}

/// `N` or `N,MIN:MAX` (conf.c `conf_match_num`), as Lifetime and KEY_LENGTH use.
pub fn parse_range(v: &str) -> Option<(u64, Option<(u64, u64)>)> {
    let v = v.trim();
    match v.split_once(',') {
        None => Some((v.parse().ok()?, None)),
        Some((n, r)) => {
            let (lo, hi) = r.split_once(':')?;
            let (n, lo, hi) = (
                n.trim().parse().ok()?,
                lo.trim().parse().ok()?,
                hi.trim().parse().ok()?,
            );
            (lo <= hi).then_some((n, Some((lo, hi))))
        }
    }
}

const NUMERIC_GENERAL: &[&str] = &[
    "Retransmits",
    "Exchange-max-time",
    "Check-interval",
    "DPD-check-interval",
    "NAT-T-Keepalive",
];

fn check_typed(section: &str, b: &Binding) -> Result<(), String> {
    let t = |s: &str| b.tag.eq_ignore_ascii_case(s);
    let v = b.value.as_str();
    if section.eq_ignore_ascii_case("General") {
        if NUMERIC_GENERAL.iter().any(|n| t(n)) {
            v.parse::<u32>()
                .map_err(|_| format!("[General]:{} must be a number, not '{v}'", b.tag))?;
        } else if t("Default-phase-1-lifetime") || t("Default-phase-2-lifetime") {
            parse_range(v).ok_or_else(|| {
                format!(
                    "[General]:{} must be 'seconds' or 'offer,min:max', not '{v}'",
                    b.tag
                )
            })?;
        } else if t("Listen-on") {
            for a in split_list(v) {
                if a.parse::<IpAddr>().is_err() && !is_interface_name(a) {
                    return Err(format!(
                        "[General]:Listen-on: '{a}' is neither an address nor an interface name"
                    ));
                }
            }
        }
    } else if t("Phase") && v != "1" && v != "2" {
        return Err(format!("[{section}]:Phase must be 1 or 2, not '{v}'"));
    } else if t("Port")
        && !v.is_empty()
        && v.parse::<u16>().is_err()
        && !v.eq_ignore_ascii_case("isakmp")
    {
        return Err(format!("[{section}]:Port: '{v}' is not a port"));
    } else if t("LIFE_DURATION") && !v.eq_ignore_ascii_case("ANY") && parse_range(v).is_none() {
        return Err(format!(
            "[{section}]:LIFE_DURATION must be 'N' or 'offer,min:max', not '{v}'"
        ));
    }
    Ok(())
}

fn is_interface_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 16
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# comment
; another comment
[General]
Retransmits=\t\t5
Listen-on=  192.0.2.1, 2001:db8::1 ,eth0
[Phase 1]
192.0.2.2=\tpeer-west
[peer-west]
Phase=1
Address=192.0.2.2
Authentication=  mekmitasdigoat  
Long=a,\\
  b,\\
  c
[phase 2]
Connections=  conn-a, conn-b
";

    #[test]
    fn parses_sections_tags_lists_and_continuations() {
        let p = Conf::parse(SAMPLE).unwrap();
        let c = p.conf;
        assert!(p.warnings.is_empty());
        assert_eq!(c.get("general", "RETRANSMITS").as_deref(), Some("5"));
        assert_eq!(c.get_num("General", "Retransmits", 3), 5);
        assert_eq!(
            c.get_list("General", "Listen-on"),
            vec!["192.0.2.1", "2001:db8::1", "eth0"]
        );
        assert_eq!(c.get("Phase 1", "192.0.2.2").as_deref(), Some("peer-west"));
        assert_eq!(
            c.get("peer-west", "Authentication").as_deref(),
            Some("mekmitasdigoat")
        );
        assert_eq!(c.get_list("peer-west", "Long"), vec!["a", "b", "c"]);
        assert_eq!(
            c.get_list("Phase 2", "Connections"),
            vec!["conn-a", "conn-b"]
        );
        // Defaults fill in what the file does not say.
        assert_eq!(
            c.get("General", "Exchange-max-time").as_deref(),
            Some("120")
        );
        assert_eq!(
            c.get("QM-ESP-AES-SHA-PFS-SUITE", "Protocols").as_deref(),
            Some("QM-ESP-AES-SHA-PFS")
        );
        assert_eq!(c.get("peer-west", "Nope"), None);
    }

    #[test]
    fn duplicates_keep_the_first_and_warn() {
        let p = Conf::parse("[a]\nx=1\nX=2\n[A]\nx=3\ny=4\n").unwrap();
        assert_eq!(p.conf.get("a", "x").as_deref(), Some("1"));
        assert_eq!(p.conf.get("a", "y").as_deref(), Some("4"));
        assert_eq!(p.warnings.len(), 2);
        assert_eq!(p.warnings[0].line, 3);
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, usize)] = &[
            ("[General]\nRetransmits=3\njunk line\n", 3),
            ("x=1\n", 1),
            ("[General\nx=1\n", 1),
            ("[]\n", 1),
            ("[a]\n=1\n", 2),
            ("[a]\nmy tag=1\n", 2),
            ("[a] trailing\n", 1),
            ("[a]\nx=\u{1}\n", 2),
            ("[General]\nRetransmits=many\n", 2),
            ("[General]\n\nExchange-max-time=-1\n", 3),
            ("[General]\nListen-on=192.0.2.1,not an address\n", 2),
            ("[General]\nDefault-phase-1-lifetime=3600,60\n", 2),
            ("[p]\nPhase=3\n", 2),
            ("[l]\nLIFE_DURATION=soon\n", 2),
        ];
        for (text, line) in cases {
            let e = Conf::parse(text)
                .err()
                .unwrap_or_else(|| panic!("accepted {text:?}"));
            assert_eq!(e.line, *line, "{text:?}: {e}");
        }
    }

    #[test]
    fn crlf_and_unterminated_last_line() {
        let c = Conf::parse("[a]\r\nx=1\r\ny=2").unwrap().conf;
        assert_eq!(c.get("a", "x").as_deref(), Some("1"));
        assert_eq!(c.get("a", "y").as_deref(), Some("2"));
    }

    #[test]
    fn fifo_edits() {
        let mut c = Conf::parse(SAMPLE).unwrap().conf;
        // set refuses an existing tag, generated defaults included, unless forced.
        assert_eq!(
            c.set("General", "Retransmits", "7", false),
            Err(EditError::Exists("5".into()))
        );
        assert!(matches!(
            c.set("General", "Exchange-max-time", "60", false),
            Err(EditError::Exists(_))
        ));
        c.set("General", "Retransmits", "7", true).unwrap();
        assert_eq!(c.get("General", "Retransmits").as_deref(), Some("7"));
        c.set("new-sect", "Tag", "v", false).unwrap();
        assert_eq!(c.get("NEW-SECT", "tag").as_deref(), Some("v"));
        // add / rmv on lists.
        c.add("Phase 2", "Connections", "conn-c").unwrap();
        c.add("Phase 2", "Connections", "conn-a").unwrap();
        assert_eq!(
            c.get_list("Phase 2", "Connections"),
            vec!["conn-a", "conn-b", "conn-c"]
        );
        c.rmv("Phase 2", "Connections", "conn-b").unwrap();
        assert_eq!(
            c.rmv("Phase 2", "Connections", "conn-b"),
            Err(EditError::NotInList)
        );
        assert_eq!(
            c.get("Phase 2", "Connections").as_deref(),
            Some("conn-a,conn-c")
        );
        c.rmv("Phase 2", "Connections", "conn-a").unwrap();
        c.rmv("Phase 2", "Connections", "conn-c").unwrap();
        assert_eq!(c.get("Phase 2", "Connections"), None);
        c.add("Phase 2", "Passive-connections", "p1").unwrap();
        assert_eq!(
            c.get("Phase 2", "Passive-connections").as_deref(),
            Some("p1")
        );
        // rm / rms.
        c.rm("peer-west", "Address").unwrap();
        assert_eq!(c.rm("peer-west", "Address"), Err(EditError::NoSuchTag));
        c.rms("peer-west").unwrap();
        assert!(!c.has_section("peer-west"));
        assert_eq!(c.rms("peer-west"), Err(EditError::NoSuchSection));
        c.rms("QM-ESP-AES-SHA-PFS-SUITE").unwrap();
        assert_eq!(c.get("QM-ESP-AES-SHA-PFS-SUITE", "Protocols"), None);
        assert_eq!(
            c.rms("QM-ESP-AES-SHA-PFS-SUITE"),
            Err(EditError::NoSuchSection)
        );
        assert!(c.set("a]b", "t", "v", true).is_err());
        assert!(c.set("a", "t=x", "v", true).is_err());
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("3600"), Some((3600, None)));
        assert_eq!(
            parse_range("3600,60:86400"),
            Some((3600, Some((60, 86400))))
        );
        assert_eq!(parse_range("3600,100:60"), None);
        assert_eq!(parse_range("x"), None);
    }
}
