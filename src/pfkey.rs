//! The kernel interface: where negotiated SAs and flows go.
//!
//! The PF_KEY v2 and XFRM backends come with the kernel work; until then the daemon runs
//! with the recording backend, which is also what `-n` selects for good: nothing in the
//! kernel's IPsec state is touched, and the SAs that would have been installed are kept in
//! memory for the report and for tests.

/// Which backend the daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `-n`, or no backend available: record only.
    None,
}

impl Backend {
    pub fn select(_no_kernel: bool) -> Backend {
        Backend::None
    }

    pub fn describe(self) -> &'static str {
        match self {
            Backend::None => "none (SAs are recorded, not installed)",
        }
    }
}
