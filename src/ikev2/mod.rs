//! IKEv2 (RFC 7296), the iked(8) half of the daemon (issue 16).
//!
//! What lives here so far:
//! - [`wire`]: the message codec (header, generic payload header with the critical bit,
//!   every RFC 7296 §3 payload, RFC 7383 fragments), sans-IO and allocation-free on the
//!   parse path like `crate::ike::wire`;
//! - [`keys`]: the key schedule (prf, prf+, SKEYSEED, the seven SK_* keys, IKE SA rekey,
//!   CHILD_SA KEYMAT) and the shared-key AUTH of §2.15, on top of `crate::ike::crypto`;
//! - [`sk`]: SK and SKF payload protection in place (AES-CBC with HMAC, AES-GCM-16 and
//!   ChaCha20-Poly1305 per RFC 5282 / RFC 7634) and fragment reassembly (RFC 7383 §2.6).
//!
//! What comes later: the exchanges (IKE_SA_INIT with COOKIE and
//! INVALID_KE_PAYLOAD, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL) as a sans-IO engine with
//! the `handle_*`/`poll_*` shape of STYLE §10.2, sharing the timer wheel, the kernel
//! interface and the configuration with the IKEv1 engine in `crate::ike`.

#![forbid(unsafe_code)]

pub mod keys;
pub mod sk;
pub mod wire;
