//! IKEv2 (RFC 7296), the iked(8) half of the daemon (issue 16).
//!
//! What lives here so far is the first brick, [`wire`]: the message codec (header,
//! generic payload header with the critical bit, every RFC 7296 §3 payload, RFC 7383
//! fragments), sans-IO and allocation-free on the parse path like `crate::ike::wire`.
//!
//! What comes later, in this order: the SK payload's cipher split and integrity check on
//! top of `crate::ike::crypto` (IV / ciphertext / padding / ICV, AEAD for AES-GCM and
//! ChaCha20-Poly1305), fragment reassembly (RFC 7383 §2.6), the key schedule (SKEYSEED and
//! the prf+ of §2.13-§2.14), then the exchanges (IKE_SA_INIT with COOKIE and
//! INVALID_KE_PAYLOAD, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL) as a sans-IO engine with
//! the `handle_*`/`poll_*` shape of STYLE §10.2, sharing the timer wheel, the kernel
//! interface and the configuration with the IKEv1 engine in `crate::ike`.

#![forbid(unsafe_code)]

pub mod wire;
