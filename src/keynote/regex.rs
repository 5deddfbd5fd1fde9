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
    // SAFETY: regex_t is plain data that regcomp initialises; it is freed once, below.
    let mut r: libc::regex_t = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid NUL-terminated strings for the call's duration.
    let rc = unsafe { libc::regcomp(&mut r, pat.as_ptr(), libc::REG_EXTENDED | libc::REG_NOSUB) };
    if rc != 0 {
        return Err(format!("bad regular expression \"{}\"", re.escape_debug()));
    }
    // SAFETY: r was compiled above; no sub-matches are asked for (nmatch 0, null pmatch).
    let m = unsafe { libc::regexec(&r, subject.as_ptr(), 0, std::ptr::null_mut(), 0) };
    // SAFETY: r was successfully compiled and is freed exactly once.
    unsafe { libc::regfree(&mut r) };
    Ok(m == 0)
}
