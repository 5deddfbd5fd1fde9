//! Wire constants as open types: a newtype over the wire integer with named constants, so
//! that values this code does not know still parse, print (as numbers) and round-trip.
//!
//! Sources: RFC 2408 §3.1, §3.14.1 (notify), RFC 2407 §4.2-§4.6.3 (IPsec DOI), RFC 2409
//! Appendix A (phase 1 attributes), RFC 3947 (NAT-T), RFC 3706 (DPD), and the ISAKMP
//! mode-config draft (draft-ietf-ipsec-isakmp-mode-cfg-05) isakmpd implements.

use std::fmt;

macro_rules! open_type {
    ($(#[$m:meta])* $name:ident($ty:ty) { $($variant:ident = $val:expr, $text:expr;)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
        pub struct $name(pub $ty);

        #[allow(dead_code)]
        impl $name {
            $(pub const $variant: $name = $name($val);)*

            /// The registered values and their names: one table that the shared lookups
            /// below walk, rather than a match and a chain of comparisons per type.
            const NAMES: &'static [(u32, &'static str)] = &[$((($val) as u32, $text),)*];

            /// The registered name, if this value is known.
            pub fn name(self) -> Option<&'static str> {
                $crate::ike::wire::consts::name_in(Self::NAMES, u32::from(self.0))
            }

            /// Looks a value up by its registered name (case-insensitive).
            pub fn from_name(s: &str) -> Option<$name> {
                // Every value in the table came from a `$ty` literal.
                $crate::ike::wire::consts::value_in(Self::NAMES, s).map(|v| $name(v as $ty))
            }

            pub fn is_known(self) -> bool {
                self.name().is_some()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                $crate::ike::wire::consts::display(Self::NAMES, u32::from(self.0), f)
            }
        }
    };
}

/// The name of `value` in an [`open_type`]'s table.
pub(crate) fn name_in(names: &[(u32, &'static str)], value: u32) -> Option<&'static str> {
    names.iter().find(|(v, _)| *v == value).map(|(_, n)| *n)
}

/// The value named `name` (case-insensitive) in an [`open_type`]'s table.
pub(crate) fn value_in(names: &[(u32, &'static str)], name: &str) -> Option<u32> {
    names
        .iter()
        .find(|(_, n)| n.eq_ignore_ascii_case(name))
        .map(|(v, _)| *v)
}

/// An [`open_type`] value printed: its name, or the number when it has none.
pub(crate) fn display(
    names: &[(u32, &'static str)],
    value: u32,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    match name_in(names, value) {
        Some(n) => f.write_str(n),
        None => write!(f, "{value}"),
    }
}

/// The IKEv2 codec's constants are open types too (`crate::ikev2::wire::consts`).
pub(crate) use open_type;

open_type! {
    /// Next-payload values (RFC 2408 §3.1, RFC 3947 §3, isakmp_num.cst).
    PayloadType(u8) {
        NONE = 0x00, "NONE";
        SA = 0x01, "SA";
        PROPOSAL = 0x02, "PROPOSAL";
        TRANSFORM = 0x03, "TRANSFORM";
        KE = 0x04, "KEY_EXCH";
        ID = 0x05, "ID";
        CERT = 0x06, "CERT";
        CERT_REQ = 0x07, "CERT_REQ";
        HASH = 0x08, "HASH";
        SIG = 0x09, "SIG";
        NONCE = 0x0a, "NONCE";
        NOTIFY = 0x0b, "NOTIFY";
        DELETE = 0x0c, "DELETE";
        VENDOR = 0x0d, "VENDOR";
        ATTRIBUTE = 0x0e, "ATTRIBUTE";
        NAT_D = 0x14, "NAT_D";
        NAT_OA = 0x15, "NAT_OA";
        NAT_D_DRAFT = 0x82, "NAT_D_DRAFT";
        NAT_OA_DRAFT = 0x83, "NAT_OA_DRAFT";
    }
}

impl PayloadType {
    /// Types that may appear in a message's top-level chain (isakmpd's message.c accepts
    /// 1-21 except the proposal/transform sub-payloads, and the draft NAT-T numbers).
    pub fn valid_top_level(self) -> bool {
        self.is_known()
            && self != PayloadType::NONE
            && self != PayloadType::PROPOSAL
            && self != PayloadType::TRANSFORM
    }
}

open_type! {
    /// Exchange types (RFC 2408 §3.1, RFC 2409 §9, mode-config).
    ExchangeType(u8) {
        NONE = 0, "NONE";
        BASE = 1, "BASE";
        ID_PROT = 2, "ID_PROT";
        AUTH_ONLY = 3, "AUTH_ONLY";
        AGGRESSIVE = 4, "AGGRESSIVE";
        INFO = 5, "INFO";
        TRANSACTION = 6, "TRANSACTION";
        QUICK_MODE = 32, "QUICK_MODE";
        NEW_GROUP_MODE = 33, "NEW_GROUP_MODE";
    }
}

open_type! {
    /// Notify message types (RFC 2408 §3.14.1, RFC 2407 §4.6.3, RFC 3706).
    NotifyType(u16) {
        INVALID_PAYLOAD_TYPE = 1, "INVALID_PAYLOAD_TYPE";
        DOI_NOT_SUPPORTED = 2, "DOI_NOT_SUPPORTED";
        SITUATION_NOT_SUPPORTED = 3, "SITUATION_NOT_SUPPORTED";
        INVALID_COOKIE = 4, "INVALID_COOKIE";
        INVALID_MAJOR_VERSION = 5, "INVALID_MAJOR_VERSION";
        INVALID_MINOR_VERSION = 6, "INVALID_MINOR_VERSION";
        INVALID_EXCHANGE_TYPE = 7, "INVALID_EXCHANGE_TYPE";
        INVALID_FLAGS = 8, "INVALID_FLAGS";
        INVALID_MESSAGE_ID = 9, "INVALID_MESSAGE_ID";
        INVALID_PROTOCOL_ID = 10, "INVALID_PROTOCOL_ID";
        INVALID_SPI = 11, "INVALID_SPI";
        INVALID_TRANSFORM_ID = 12, "INVALID_TRANSFORM_ID";
        ATTRIBUTES_NOT_SUPPORTED = 13, "ATTRIBUTES_NOT_SUPPORTED";
        NO_PROPOSAL_CHOSEN = 14, "NO_PROPOSAL_CHOSEN";
        BAD_PROPOSAL_SYNTAX = 15, "BAD_PROPOSAL_SYNTAX";
        PAYLOAD_MALFORMED = 16, "PAYLOAD_MALFORMED";
        INVALID_KEY_INFORMATION = 17, "INVALID_KEY_INFORMATION";
        INVALID_ID_INFORMATION = 18, "INVALID_ID_INFORMATION";
        INVALID_CERT_ENCODING = 19, "INVALID_CERT_ENCODING";
        INVALID_CERTIFICATE = 20, "INVALID_CERTIFICATE";
        CERT_TYPE_UNSUPPORTED = 21, "CERT_TYPE_UNSUPPORTED";
        INVALID_CERT_AUTHORITY = 22, "INVALID_CERT_AUTHORITY";
        INVALID_HASH_INFORMATION = 23, "INVALID_HASH_INFORMATION";
        AUTHENTICATION_FAILED = 24, "AUTHENTICATION_FAILED";
        INVALID_SIGNATURE = 25, "INVALID_SIGNATURE";
        ADDRESS_NOTIFICATION = 26, "ADDRESS_NOTIFICATION";
        NOTIFY_SA_LIFETIME = 27, "NOTIFY_SA_LIFETIME";
        CERTIFICATE_UNAVAILABLE = 28, "CERTIFICATE_UNAVAILABLE";
        UNSUPPORTED_EXCHANGE_TYPE = 29, "UNSUPPORTED_EXCHANGE_TYPE";
        UNEQUAL_PAYLOAD_LENGTHS = 30, "UNEQUAL_PAYLOAD_LENGTHS";
        CONNECTED = 16384, "CONNECTED";
        RESPONDER_LIFETIME = 24576, "RESPONDER_LIFETIME";
        REPLAY_STATUS = 24577, "REPLAY_STATUS";
        INITIAL_CONTACT = 24578, "INITIAL_CONTACT";
        R_U_THERE = 36136, "R_U_THERE";
        R_U_THERE_ACK = 36137, "R_U_THERE_ACK";
    }
}

open_type! {
    /// Domain of interpretation (RFC 2408 §3.4, RFC 2407 §4.2).
    Doi(u32) {
        ISAKMP = 0, "ISAKMP";
        IPSEC = 1, "IPSEC";
    }
}

open_type! {
    /// Protocol identifiers (RFC 2407 §4.4.1).
    ProtocolId(u8) {
        ISAKMP = 1, "ISAKMP";
        IPSEC_AH = 2, "IPSEC_AH";
        IPSEC_ESP = 3, "IPSEC_ESP";
        IPCOMP = 4, "IPCOMP";
    }
}

open_type! {
    /// ID types of the IPsec DOI (RFC 2407 §4.6.2.1).
    IdType(u8) {
        IPV4_ADDR = 1, "IPV4_ADDR";
        FQDN = 2, "FQDN";
        USER_FQDN = 3, "USER_FQDN";
        IPV4_ADDR_SUBNET = 4, "IPV4_ADDR_SUBNET";
        IPV6_ADDR = 5, "IPV6_ADDR";
        IPV6_ADDR_SUBNET = 6, "IPV6_ADDR_SUBNET";
        IPV4_ADDR_RANGE = 7, "IPV4_RANGE";
        IPV6_ADDR_RANGE = 8, "IPV6_RANGE";
        DER_ASN1_DN = 9, "DER_ASN1_DN";
        DER_ASN1_GN = 10, "DER_ASN1_GN";
        KEY_ID = 11, "KEY_ID";
    }
}

open_type! {
    /// Certificate encodings (RFC 2408 §3.9; KEYNOTE is isakmpd's own, isakmp_num.cst:
    /// KeyNote credentials as text).
    CertEncoding(u8) {
        NONE = 0, "NONE";
        PKCS7 = 1, "PKCS7";
        PGP = 2, "PGP";
        DNS_KEY = 3, "DNS_KEY";
        X509_SIG = 4, "X509_SIG";
        X509_KE = 5, "X509_KE";
        KERBEROS = 6, "KERBEROS";
        CRL = 7, "CRL";
        ARL = 8, "ARL";
        SPKI = 9, "SPKI";
        X509_ATTR = 10, "X509_ATTR";
        KEYNOTE = 11, "KEYNOTE";
    }
}

open_type! {
    /// Phase 1 (IKE) SA attribute classes (RFC 2409 Appendix A).
    IkeAttr(u16) {
        ENCRYPTION_ALGORITHM = 1, "ENCRYPTION_ALGORITHM";
        HASH_ALGORITHM = 2, "HASH_ALGORITHM";
        AUTHENTICATION_METHOD = 3, "AUTHENTICATION_METHOD";
        GROUP_DESCRIPTION = 4, "GROUP_DESCRIPTION";
        GROUP_TYPE = 5, "GROUP_TYPE";
        GROUP_PRIME = 6, "GROUP_PRIME";
        GROUP_GENERATOR_ONE = 7, "GROUP_GENERATOR_ONE";
        GROUP_GENERATOR_TWO = 8, "GROUP_GENERATOR_TWO";
        GROUP_CURVE_A = 9, "GROUP_CURVE_A";
        GROUP_CURVE_B = 10, "GROUP_CURVE_B";
        LIFE_TYPE = 11, "LIFE_TYPE";
        LIFE_DURATION = 12, "LIFE_DURATION";
        PRF = 13, "PRF";
        KEY_LENGTH = 14, "KEY_LENGTH";
        FIELD_SIZE = 15, "FIELD_SIZE";
        GROUP_ORDER = 16, "GROUP_ORDER";
    }
}

open_type! {
    /// Phase 2 (IPsec DOI) SA attribute classes (RFC 2407 §4.5, RFC 4304 ESN).
    IpsecAttr(u16) {
        SA_LIFE_TYPE = 1, "SA_LIFE_TYPE";
        SA_LIFE_DURATION = 2, "SA_LIFE_DURATION";
        GROUP_DESCRIPTION = 3, "GROUP_DESCRIPTION";
        ENCAPSULATION_MODE = 4, "ENCAPSULATION_MODE";
        AUTHENTICATION_ALGORITHM = 5, "AUTHENTICATION_ALGORITHM";
        KEY_LENGTH = 6, "KEY_LENGTH";
        KEY_ROUNDS = 7, "KEY_ROUNDS";
        COMPRESS_DICTIONARY_SIZE = 8, "COMPRESS_DICTIONARY_SIZE";
        COMPRESS_PRIVATE_ALGORITHM = 9, "COMPRESS_PRIVATE_ALGORITHM";
        ECN_TUNNEL = 10, "ECN_TUNNEL";
        EXTENDED_SEQUENCE_NUMBER = 11, "EXTENDED_SEQUENCE_NUMBER";
    }
}

open_type! {
    /// Phase 1 encryption algorithms (RFC 2409 Appendix A, RFC 3602 for AES).
    EncryptionAlgorithm(u16) {
        DES_CBC = 1, "DES_CBC";
        IDEA_CBC = 2, "IDEA_CBC";
        BLOWFISH_CBC = 3, "BLOWFISH_CBC";
        RC5_R16_B64_CBC = 4, "RC5_R16_B64_CBC";
        TRIPLEDES_CBC = 5, "3DES_CBC";
        CAST_CBC = 6, "CAST_CBC";
        AES_CBC = 7, "AES_CBC";
    }
}

open_type! {
    /// Phase 1 hash algorithms (RFC 2409 Appendix A, RFC 4868 §... for SHA2 values).
    HashAlgorithm(u16) {
        MD5 = 1, "MD5";
        SHA = 2, "SHA";
        TIGER = 3, "TIGER";
        SHA2_256 = 4, "SHA2_256";
        SHA2_384 = 5, "SHA2_384";
        SHA2_512 = 6, "SHA2_512";
    }
}

open_type! {
    /// Phase 1 authentication methods (RFC 2409 Appendix A).
    AuthMethod(u16) {
        PRE_SHARED = 1, "PRE_SHARED";
        DSS = 2, "DSS";
        RSA_SIG = 3, "RSA_SIG";
        RSA_ENC = 4, "RSA_ENC";
        RSA_ENC_REV = 5, "RSA_ENC_REV";
    }
}

open_type! {
    /// Diffie-Hellman groups (RFC 2409, RFC 3526, RFC 5903, RFC 8031 for 31).
    GroupDescription(u16) {
        MODP_768 = 1, "MODP_768";
        MODP_1024 = 2, "MODP_1024";
        EC2N_155 = 3, "EC2N_155";
        EC2N_185 = 4, "EC2N_185";
        MODP_1536 = 5, "MODP_1536";
        MODP_2048 = 14, "MODP_2048";
        MODP_3072 = 15, "MODP_3072";
        MODP_4096 = 16, "MODP_4096";
        MODP_6144 = 17, "MODP_6144";
        MODP_8192 = 18, "MODP_8192";
        ECP_256 = 19, "ECP_256";
        ECP_384 = 20, "ECP_384";
        ECP_521 = 21, "ECP_521";
        ECP_192 = 25, "ECP_192";
        ECP_224 = 26, "ECP_224";
        BP_224 = 27, "BP_224";
        BP_256 = 28, "BP_256";
        BP_384 = 29, "BP_384";
        BP_512 = 30, "BP_512";
        CURVE25519 = 31, "CURVE25519";
    }
}

open_type! {
    /// Life types (RFC 2409 Appendix A; the same values in the IPsec DOI).
    LifeType(u16) {
        SECONDS = 1, "SECONDS";
        KILOBYTES = 2, "KILOBYTES";
    }
}

open_type! {
    /// IPsec ESP transform identifiers (RFC 2407 §4.4.4, IANA).
    EspTransform(u8) {
        DES_IV64 = 1, "DES_IV64";
        DES = 2, "DES";
        TRIPLEDES = 3, "3DES";
        RC5 = 4, "RC5";
        IDEA = 5, "IDEA";
        CAST = 6, "CAST";
        BLOWFISH = 7, "BLOWFISH";
        THREEIDEA = 8, "3IDEA";
        DES_IV32 = 9, "DES_IV32";
        RC4 = 10, "RC4";
        NULL = 11, "NULL";
        AES = 12, "AES";
        AES_CTR = 13, "AES_CTR";
        AES_CCM_8 = 14, "AES_CCM_8";
        AES_CCM_12 = 15, "AES_CCM_12";
        AES_CCM_16 = 16, "AES_CCM_16";
        AES_GCM_8 = 18, "AES_GCM_8";
        AES_GCM_12 = 19, "AES_GCM_12";
        AES_GCM_16 = 20, "AES_GCM_16";
        AES_GMAC = 23, "AES_GMAC";
    }
}

open_type! {
    /// IPsec AH transform identifiers (RFC 2407 §4.4.3).
    AhTransform(u8) {
        MD5 = 2, "MD5";
        SHA = 3, "SHA";
        DES = 4, "DES";
        SHA2_256 = 5, "SHA2_256";
        SHA2_384 = 6, "SHA2_384";
        SHA2_512 = 7, "SHA2_512";
        RIPEMD = 8, "RIPEMD";
    }
}

open_type! {
    /// IPsec authentication algorithm attribute values (RFC 2407 §4.5, RFC 4868).
    AuthAlgorithm(u16) {
        HMAC_MD5 = 1, "HMAC_MD5";
        HMAC_SHA = 2, "HMAC_SHA";
        DES_MAC = 3, "DES_MAC";
        KPDK = 4, "KPDK";
        HMAC_SHA2_256 = 5, "HMAC_SHA2_256";
        HMAC_SHA2_384 = 6, "HMAC_SHA2_384";
        HMAC_SHA2_512 = 7, "HMAC_SHA2_512";
        HMAC_RIPEMD = 8, "HMAC_RIPEMD";
    }
}

open_type! {
    /// Encapsulation modes (RFC 2407 §4.5, RFC 3947 §5, and the draft values isakmpd keeps).
    EncapsulationMode(u16) {
        TUNNEL = 1, "TUNNEL";
        TRANSPORT = 2, "TRANSPORT";
        UDP_ENCAP_TUNNEL = 3, "UDP_ENCAP_TUNNEL";
        UDP_ENCAP_TRANSPORT = 4, "UDP_ENCAP_TRANSPORT";
        UDP_ENCAP_TUNNEL_DRAFT = 61443, "UDP_ENCAP_TUNNEL_DRAFT";
        UDP_ENCAP_TRANSPORT_DRAFT = 61444, "UDP_ENCAP_TRANSPORT_DRAFT";
    }
}

open_type! {
    /// Mode-config message types (ATTRIBUTE payload).
    CfgType(u8) {
        REQUEST = 1, "REQUEST";
        REPLY = 2, "REPLY";
        SET = 3, "SET";
        ACK = 4, "ACK";
    }
}

open_type! {
    /// Mode-config attribute types.
    CfgAttr(u16) {
        INTERNAL_IP4_ADDRESS = 1, "INTERNAL_IP4_ADDRESS";
        INTERNAL_IP4_NETMASK = 2, "INTERNAL_IP4_NETMASK";
        INTERNAL_IP4_DNS = 3, "INTERNAL_IP4_DNS";
        INTERNAL_IP4_NBNS = 4, "INTERNAL_IP4_NBNS";
        INTERNAL_ADDRESS_EXPIRY = 5, "INTERNAL_ADDRESS_EXPIRY";
        INTERNAL_IP4_DHCP = 6, "INTERNAL_IP4_DHCP";
        APPLICATION_VERSION = 7, "APPLICATION_VERSION";
        INTERNAL_IP6_ADDRESS = 8, "INTERNAL_IP6_ADDRESS";
        INTERNAL_IP6_NETMASK = 9, "INTERNAL_IP6_NETMASK";
        INTERNAL_IP6_DNS = 10, "INTERNAL_IP6_DNS";
        INTERNAL_IP6_NBNS = 11, "INTERNAL_IP6_NBNS";
        INTERNAL_IP6_DHCP = 12, "INTERNAL_IP6_DHCP";
        INTERNAL_IP4_SUBNET = 13, "INTERNAL_IP4_SUBNET";
        SUPPORTED_ATTRIBUTES = 14, "SUPPORTED_ATTRIBUTES";
        INTERNAL_IP6_SUBNET = 15, "INTERNAL_IP6_SUBNET";
    }
}

/// The IPsec DOI situation SIT_IDENTITY_ONLY (RFC 2407 §4.2).
pub const SIT_IDENTITY_ONLY: u32 = 1;

/// ISAKMP header flags (RFC 2408 §3.1).
pub const FLAG_ENCRYPTION: u8 = 0x01;
pub const FLAG_COMMIT: u8 = 0x02;
pub const FLAG_AUTH_ONLY: u8 = 0x04;

/// Well-known vendor IDs: MD5 of the strings (RFC 3947 §3.1, RFC 3706 §7, isakmpd vendor.c).
pub const VID_NAT_T_RFC3947: [u8; 16] = hex16("4a131c81070358455c5728f20e95452f");
pub const VID_NAT_T_DRAFT_02: [u8; 16] = hex16("90cb80913ebb696e086381b5ec427b1f");
pub const VID_NAT_T_DRAFT_02_N: [u8; 16] = hex16("cd60464335df21f87cfdb2fc68b6a448");
pub const VID_NAT_T_DRAFT_03: [u8; 16] = hex16("7d9419a65310ca6f2c179d9215529d56");
pub const VID_DPD: [u8; 16] = hex16("afcad71368a1f1c96b8696fc77570100");
/// isakmpd's own vendor ID, MD5("OpenBSD-6.3") (vendor.c), which it sends in every
/// phase 1 first message and answer.
pub const VID_OPENBSD: [u8; 16] = hex16("9826c552791aa1800ca6ff33aaf1e83b");

const fn hex16(s: &str) -> [u8; 16] {
    let b = s.as_bytes();
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = (nib(b[2 * i]) << 4) | nib(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nib(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("bad hex digit in constant"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_unknown_values() {
        assert_eq!(PayloadType::SA.to_string(), "SA");
        assert_eq!(PayloadType(99).to_string(), "99");
        assert!(!PayloadType(99).is_known());
        assert!(PayloadType::NAT_D_DRAFT.valid_top_level());
        assert!(!PayloadType::PROPOSAL.valid_top_level());
        assert_eq!(
            NotifyType::from_name("no_proposal_chosen"),
            Some(NotifyType::NO_PROPOSAL_CHOSEN)
        );
        assert_eq!(
            EncryptionAlgorithm::from_name("3DES_CBC"),
            Some(EncryptionAlgorithm(5))
        );
        assert_eq!(
            GroupDescription::from_name("MODP_2048"),
            Some(GroupDescription(14))
        );
    }

    #[test]
    fn vendor_ids_are_md5_of_their_strings() {
        use crate::ike::crypto::{hash, HashAlg};
        let md5 = |s: &str| hash(HashAlg::Md5, &[s.as_bytes()]).as_bytes().to_vec();
        assert_eq!(md5("RFC 3947"), VID_NAT_T_RFC3947);
        assert_eq!(md5("draft-ietf-ipsec-nat-t-ike-02\n"), VID_NAT_T_DRAFT_02);
        assert_eq!(md5("draft-ietf-ipsec-nat-t-ike-03"), VID_NAT_T_DRAFT_03);
        assert_eq!(md5("draft-ietf-ipsec-nat-t-ike-02"), VID_NAT_T_DRAFT_02_N);
        assert_eq!(md5("OpenBSD-6.3"), VID_OPENBSD);
    }
}
