//! `~=`: POSIX extended regular expressions through the C library, as libkeynote uses
//! regcomp(3)/regexec(3). Kept out of the sans-IO engine.

use std::ffi::CString;

/// Longest pattern compiled.
const MAX_PATTERN: usize = 4096;

/// Whether `s` matches `re` (REG_EXTENDED), and then the whole match and its groups
/// (`_0` to `_9`; "" for a group that took no part). A pattern that does not compile, or a
/// string or pattern holding NUL, is an error (the test fails).
pub(crate) fn matches(s: &str, re: &str) -> Result<Option<Vec<String>>, String> {
    if re.len() > MAX_PATTERN {
        return Err("regular expression too long".into());
    }
    let pat = CString::new(re).map_err(|_| "NUL in a regular expression")?;
    let subject = CString::new(s).map_err(|_| "NUL in a string")?;
    let groups = crate::sys::regex_matches(&pat, &subject)
        .ok_or_else(|| format!("bad regular expression \"{}\"", re.escape_debug()))?;
    if groups.is_empty() {
        return Ok(None);
    }
    let b = s.as_bytes();
    Ok(Some(
        groups
            .iter()
            .map(|g| {
                g.and_then(|(a, e)| b.get(a..e))
                    .map(|x| String::from_utf8_lossy(x).into_owned())
                    .unwrap_or_default()
            })
            .collect(),
    ))
}
