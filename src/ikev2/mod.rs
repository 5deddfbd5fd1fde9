//! IKEv2 (RFC 7296), the iked(8) half of the daemon (issue 16).
//!
//! What lives here so far:
//! - [`wire`]: the message codec (header, generic payload header with the critical bit,
//!   every RFC 7296 §3 payload, RFC 7383 fragments), sans-IO and allocation-free on the
//!   parse path like `crate::ike::wire`;
//! - [`keys`]: the key schedule (prf, prf+, SKEYSEED, the seven SK_* keys, IKE SA rekey,
//!   CHILD_SA KEYMAT) and the shared-key AUTH of §2.15, on top of `crate::ike::crypto`;
//! - [`sk`]: SK and SKF payload protection in place (AES-CBC with HMAC, AES-GCM-16 and
//!   ChaCha20-Poly1305 per RFC 5282 / RFC 7634) and fragment reassembly (RFC 7383 §2.6);
//! - [`policy`]: what to negotiate with whom (peers, PSKs, identities, IKE and ESP suites,
//!   traffic selectors) as plain values, with proposal matching and selector narrowing;
//! - [`engine`]: the sans-IO engine with the `handle_*`/`poll_*` shape of STYLE §10.2:
//!   IKE_SA_INIT (INVALID_KE_PAYLOAD retry, NAT detection) and IKE_AUTH with a shared key,
//!   both roles, the first CHILD_SA's keys, message IDs and retransmission (§2.1), the
//!   COOKIE challenge (§2.6), INFORMATIONAL Deletes of CHILD_SAs and the IKE SA (§1.4),
//!   liveness checks, and CREATE_CHILD_SA for new and rekeyed CHILD_SAs with optional
//!   PFS and simultaneous rekeys, and IKE SA rekeys (§1.3, §2.8, §2.18), sharing the timer wheel, the outbox, the tables and the crypto
//!   with `crate::ike`.
//!
//! What comes later: lifetimes, the kernel interface, certificates, NAT-T and fragmentation in the engine,
//! and iked.conf(5) (issue 17).

#![forbid(unsafe_code)]

pub mod conf;
pub mod engine;
pub mod keys;
pub mod mschap;
pub mod policy;
pub mod sig;
pub mod sk;
pub mod wire;
