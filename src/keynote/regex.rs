//! `~=`: POSIX extended regular expressions through the C library, as libkeynote uses
//! regcomp(3)/regexec(3). Kept out of the sans-IO engine.

use std::ffi::CString;

/// Longest pattern compiled.
const MAX_PATTERN: usize = 4096;

/// Whether `s` matches `re` (REG_EXTENDED, no sub-match reporting). A pattern that does not
/// compile, or a string or pattern holding NUL, is an error (the test fails).
pub(crate) fn matches(s: &str, re: &str) -> Result<bool, String> {
    if re.len() > MAX_PATTERN {
        return Err("regular expression too long".into());
    }
    let pat = CString::new(re).map_err(|_| "NUL in a regular expression")?;
    let subject = CString::new(s).map_err(|_| "NUL in a string")?;
    crate::sys::regex_matches(&pat, &subject)
        .ok_or_else(|| format!("bad regular expression \"{}\"", re.escape_debug()))
}
