//! IKEv2 wire constants as open types: a newtype over the wire integer with named
//! constants, so that values this code does not know still parse, print (as numbers) and
//! round-trip.
//!
//! Sources: RFC 7296 §3.1-§3.15 and the IANA "IKEv2 Parameters" registry for the values
//! other RFCs added (RFC 7383 fragmentation, RFC 7427 signature authentication, RFC 8031
//! Curve25519, RFC 7634 ChaCha20-Poly1305, RFC 5903/5114 ECP groups).

#![forbid(unsafe_code)]

use std::fmt;

use crate::ike::wire::consts::open_type;

open_type! {
    /// Next-payload values (RFC 7296 §3.2, RFC 7383 §2.5 for SKF).
    PayloadType(u8) {
        NONE = 0x00, "NONE";
        SA = 0x21, "SA";
        KE = 0x22, "KE";
        IDI = 0x23, "IDi";
        IDR = 0x24, "IDr";
        CERT = 0x25, "CERT";
        CERTREQ = 0x26, "CERTREQ";
        AUTH = 0x27, "AUTH";
        NONCE = 0x28, "Nonce";
        NOTIFY = 0x29, "N";
        DELETE = 0x2a, "D";
        VENDOR = 0x2b, "V";
        TSI = 0x2c, "TSi";
        TSR = 0x2d, "TSr";
        SK = 0x2e, "SK";
        CP = 0x2f, "CP";
        EAP = 0x30, "EAP";
        SKF = 0x35, "SKF";
    }
}

open_type! {
    /// Exchange types (RFC 7296 §3.1).
    ExchangeType(u8) {
        IKE_SA_INIT = 34, "IKE_SA_INIT";
        IKE_AUTH = 35, "IKE_AUTH";
        CREATE_CHILD_SA = 36, "CREATE_CHILD_SA";
        INFORMATIONAL = 37, "INFORMATIONAL";
    }
}

/// Header flags (RFC 7296 §3.1): bit 3 Initiator, bit 4 Version, bit 5 Response.
pub const FLAG_INITIATOR: u8 = 0x08;
pub const FLAG_VERSION: u8 = 0x10;
pub const FLAG_RESPONSE: u8 = 0x20;

/// The critical bit of the generic payload header (RFC 7296 §3.2).
pub const CRITICAL: u8 = 0x80;

open_type! {
    /// Protocol IDs of proposals, notifies and deletes (RFC 7296 §3.3.1).
    ProtocolId(u8) {
        NONE = 0, "NONE";
        IKE = 1, "IKE";
        AH = 2, "AH";
        ESP = 3, "ESP";
    }
}

open_type! {
    /// Transform types (RFC 7296 §3.3.2).
    TransformType(u8) {
        ENCR = 1, "ENCR";
        PRF = 2, "PRF";
        INTEG = 3, "INTEG";
        DH = 4, "D-H";
        ESN = 5, "ESN";
    }
}

open_type! {
    /// Transform type 1 IDs (RFC 7296 §3.3.2, RFC 4106, RFC 7634).
    EncrId(u16) {
        DES_IV64 = 1, "ENCR_DES_IV64";
        DES = 2, "ENCR_DES";
        TRIPLE_DES = 3, "ENCR_3DES";
        BLOWFISH = 7, "ENCR_BLOWFISH";
        NULL = 11, "ENCR_NULL";
        AES_CBC = 12, "ENCR_AES_CBC";
        AES_CTR = 13, "ENCR_AES_CTR";
        AES_CCM_8 = 14, "ENCR_AES_CCM_8";
        AES_CCM_12 = 15, "ENCR_AES_CCM_12";
        AES_CCM_16 = 16, "ENCR_AES_CCM_16";
        AES_GCM_8 = 18, "ENCR_AES_GCM_8";
        AES_GCM_12 = 19, "ENCR_AES_GCM_12";
        AES_GCM_16 = 20, "ENCR_AES_GCM_16";
        NULL_AUTH_AES_GMAC = 21, "ENCR_NULL_AUTH_AES_GMAC";
        CAMELLIA_CBC = 23, "ENCR_CAMELLIA_CBC";
        CHACHA20_POLY1305 = 28, "ENCR_CHACHA20_POLY1305";
    }
}

open_type! {
    /// Transform type 2 IDs (RFC 7296 §3.3.2, RFC 4868).
    PrfId(u16) {
        HMAC_MD5 = 1, "PRF_HMAC_MD5";
        HMAC_SHA1 = 2, "PRF_HMAC_SHA1";
        AES128_XCBC = 4, "PRF_AES128_XCBC";
        HMAC_SHA2_256 = 5, "PRF_HMAC_SHA2_256";
        HMAC_SHA2_384 = 6, "PRF_HMAC_SHA2_384";
        HMAC_SHA2_512 = 7, "PRF_HMAC_SHA2_512";
        AES128_CMAC = 8, "PRF_AES128_CMAC";
    }
}

open_type! {
    /// Transform type 3 IDs (RFC 7296 §3.3.2, RFC 4868).
    IntegId(u16) {
        NONE = 0, "NONE";
        HMAC_MD5_96 = 1, "AUTH_HMAC_MD5_96";
        HMAC_SHA1_96 = 2, "AUTH_HMAC_SHA1_96";
        AES_XCBC_96 = 5, "AUTH_AES_XCBC_96";
        AES_CMAC_96 = 8, "AUTH_AES_CMAC_96";
        HMAC_SHA2_256_128 = 12, "AUTH_HMAC_SHA2_256_128";
        HMAC_SHA2_384_192 = 13, "AUTH_HMAC_SHA2_384_192";
        HMAC_SHA2_512_256 = 14, "AUTH_HMAC_SHA2_512_256";
    }
}

open_type! {
    /// Transform type 4 IDs: Diffie-Hellman groups (RFC 7296 §3.3.2, RFC 3526, RFC 5903,
    /// RFC 5114, RFC 8031).
    DhGroup(u16) {
        NONE = 0, "NONE";
        MODP_768 = 1, "MODP_768";
        MODP_1024 = 2, "MODP_1024";
        MODP_1536 = 5, "MODP_1536";
        MODP_2048 = 14, "MODP_2048";
        MODP_3072 = 15, "MODP_3072";
        MODP_4096 = 16, "MODP_4096";
        MODP_6144 = 17, "MODP_6144";
        MODP_8192 = 18, "MODP_8192";
        ECP_256 = 19, "ECP_256";
        ECP_384 = 20, "ECP_384";
        ECP_521 = 21, "ECP_521";
        CURVE25519 = 31, "CURVE25519";
        CURVE448 = 32, "CURVE448";
    }
}

open_type! {
    /// Transform type 5 IDs: extended sequence numbers (RFC 7296 §3.3.2).
    EsnId(u16) {
        NO_ESN = 0, "NO_ESN";
        ESN = 1, "ESN";
    }
}

open_type! {
    /// Transform attribute types (RFC 7296 §3.3.5). Only Key Length is defined, as TV.
    AttrType(u16) {
        KEY_LENGTH = 14, "KEY_LENGTH";
    }
}

/// The AF bit of a transform attribute: set for TV (two-byte value in the header).
pub const ATTR_TV: u16 = 0x8000;

open_type! {
    /// Notify message types (RFC 7296 §3.10.1; RFC 4555 MOBIKE, RFC 4739 multiple auth,
    /// RFC 5685 redirect, RFC 5998 EAP-only, RFC 6023 childless, RFC 6311 message ID sync,
    /// RFC 7383 fragmentation, RFC 7427 signature hashes). Below 16384 are errors.
    NotifyType(u16) {
        UNSUPPORTED_CRITICAL_PAYLOAD = 1, "UNSUPPORTED_CRITICAL_PAYLOAD";
        INVALID_IKE_SPI = 4, "INVALID_IKE_SPI";
        INVALID_MAJOR_VERSION = 5, "INVALID_MAJOR_VERSION";
        INVALID_SYNTAX = 7, "INVALID_SYNTAX";
        INVALID_MESSAGE_ID = 9, "INVALID_MESSAGE_ID";
        INVALID_SPI = 11, "INVALID_SPI";
        NO_PROPOSAL_CHOSEN = 14, "NO_PROPOSAL_CHOSEN";
        INVALID_KE_PAYLOAD = 17, "INVALID_KE_PAYLOAD";
        AUTHENTICATION_FAILED = 24, "AUTHENTICATION_FAILED";
        SINGLE_PAIR_REQUIRED = 34, "SINGLE_PAIR_REQUIRED";
        NO_ADDITIONAL_SAS = 35, "NO_ADDITIONAL_SAS";
        INTERNAL_ADDRESS_FAILURE = 36, "INTERNAL_ADDRESS_FAILURE";
        FAILED_CP_REQUIRED = 37, "FAILED_CP_REQUIRED";
        TS_UNACCEPTABLE = 38, "TS_UNACCEPTABLE";
        INVALID_SELECTORS = 39, "INVALID_SELECTORS";
        UNACCEPTABLE_ADDRESSES = 40, "UNACCEPTABLE_ADDRESSES";
        UNEXPECTED_NAT_DETECTED = 41, "UNEXPECTED_NAT_DETECTED";
        TEMPORARY_FAILURE = 43, "TEMPORARY_FAILURE";
        CHILD_SA_NOT_FOUND = 44, "CHILD_SA_NOT_FOUND";
        INITIAL_CONTACT = 16384, "INITIAL_CONTACT";
        SET_WINDOW_SIZE = 16385, "SET_WINDOW_SIZE";
        ADDITIONAL_TS_POSSIBLE = 16386, "ADDITIONAL_TS_POSSIBLE";
        IPCOMP_SUPPORTED = 16387, "IPCOMP_SUPPORTED";
        NAT_DETECTION_SOURCE_IP = 16388, "NAT_DETECTION_SOURCE_IP";
        NAT_DETECTION_DESTINATION_IP = 16389, "NAT_DETECTION_DESTINATION_IP";
        COOKIE = 16390, "COOKIE";
        USE_TRANSPORT_MODE = 16391, "USE_TRANSPORT_MODE";
        HTTP_CERT_LOOKUP_SUPPORTED = 16392, "HTTP_CERT_LOOKUP_SUPPORTED";
        REKEY_SA = 16393, "REKEY_SA";
        ESP_TFC_PADDING_NOT_SUPPORTED = 16394, "ESP_TFC_PADDING_NOT_SUPPORTED";
        NON_FIRST_FRAGMENTS_ALSO = 16395, "NON_FIRST_FRAGMENTS_ALSO";
        MOBIKE_SUPPORTED = 16396, "MOBIKE_SUPPORTED";
        ADDITIONAL_IP4_ADDRESS = 16397, "ADDITIONAL_IP4_ADDRESS";
        ADDITIONAL_IP6_ADDRESS = 16398, "ADDITIONAL_IP6_ADDRESS";
        NO_ADDITIONAL_ADDRESSES = 16399, "NO_ADDITIONAL_ADDRESSES";
        UPDATE_SA_ADDRESSES = 16400, "UPDATE_SA_ADDRESSES";
        COOKIE2 = 16401, "COOKIE2";
        NO_NATS_ALLOWED = 16402, "NO_NATS_ALLOWED";
        MULTIPLE_AUTH_SUPPORTED = 16404, "MULTIPLE_AUTH_SUPPORTED";
        REDIRECT_SUPPORTED = 16406, "REDIRECT_SUPPORTED";
        EAP_ONLY_AUTHENTICATION = 16417, "EAP_ONLY_AUTHENTICATION";
        CHILDLESS_IKEV2_SUPPORTED = 16418, "CHILDLESS_IKEV2_SUPPORTED";
        IKEV2_MESSAGE_ID_SYNC_SUPPORTED = 16420, "IKEV2_MESSAGE_ID_SYNC_SUPPORTED";
        IKEV2_FRAGMENTATION_SUPPORTED = 16430, "IKEV2_FRAGMENTATION_SUPPORTED";
        SIGNATURE_HASH_ALGORITHMS = 16431, "SIGNATURE_HASH_ALGORITHMS";
    }
}

impl NotifyType {
    /// Types 0-16383 report errors (RFC 7296 §3.10.1).
    pub fn is_error(self) -> bool {
        self.0 < 16384
    }
}

open_type! {
    /// Identification types (RFC 7296 §3.5).
    IdType(u8) {
        IPV4_ADDR = 1, "ID_IPV4_ADDR";
        FQDN = 2, "ID_FQDN";
        RFC822_ADDR = 3, "ID_RFC822_ADDR";
        IPV6_ADDR = 5, "ID_IPV6_ADDR";
        DER_ASN1_DN = 9, "ID_DER_ASN1_DN";
        DER_ASN1_GN = 10, "ID_DER_ASN1_GN";
        KEY_ID = 11, "ID_KEY_ID";
    }
}

open_type! {
    /// Certificate encodings of CERT and CERTREQ (RFC 7296 §3.6).
    CertEncoding(u8) {
        PKCS7_X509 = 1, "PKCS #7 wrapped X.509";
        X509_SIGNATURE = 4, "X.509 Certificate - Signature";
        CRL = 7, "Certificate Revocation List";
        RAW_RSA_KEY = 11, "Raw RSA Key";
        HASH_URL_X509_CERT = 12, "Hash and URL of X.509 certificate";
        HASH_URL_X509_BUNDLE = 13, "Hash and URL of X.509 bundle";
    }
}

open_type! {
    /// Authentication methods (RFC 7296 §3.8, RFC 4754, RFC 7427).
    AuthMethod(u8) {
        RSA_SIG = 1, "RSA Digital Signature";
        SHARED_KEY_MIC = 2, "Shared Key Message Integrity Code";
        DSS_SIG = 3, "DSS Digital Signature";
        ECDSA_SHA256_P256 = 9, "ECDSA with SHA-256 on P-256";
        ECDSA_SHA384_P384 = 10, "ECDSA with SHA-384 on P-384";
        ECDSA_SHA512_P521 = 11, "ECDSA with SHA-512 on P-521";
        DIGITAL_SIGNATURE = 14, "Digital Signature";
    }
}

open_type! {
    /// Traffic selector types (RFC 7296 §3.13.1).
    TsType(u8) {
        IPV4_ADDR_RANGE = 7, "TS_IPV4_ADDR_RANGE";
        IPV6_ADDR_RANGE = 8, "TS_IPV6_ADDR_RANGE";
    }
}

open_type! {
    /// CFG types of the CP payload (RFC 7296 §3.15).
    CfgType(u8) {
        REQUEST = 1, "CFG_REQUEST";
        REPLY = 2, "CFG_REPLY";
        SET = 3, "CFG_SET";
        ACK = 4, "CFG_ACK";
    }
}

open_type! {
    /// Configuration attribute types (RFC 7296 §3.15.1); 15 bits on the wire.
    CfgAttrType(u16) {
        INTERNAL_IP4_ADDRESS = 1, "INTERNAL_IP4_ADDRESS";
        INTERNAL_IP4_NETMASK = 2, "INTERNAL_IP4_NETMASK";
        INTERNAL_IP4_DNS = 3, "INTERNAL_IP4_DNS";
        INTERNAL_IP4_NBNS = 4, "INTERNAL_IP4_NBNS";
        INTERNAL_IP4_DHCP = 6, "INTERNAL_IP4_DHCP";
        APPLICATION_VERSION = 7, "APPLICATION_VERSION";
        INTERNAL_IP6_ADDRESS = 8, "INTERNAL_IP6_ADDRESS";
        INTERNAL_IP6_DNS = 10, "INTERNAL_IP6_DNS";
        INTERNAL_IP6_DHCP = 12, "INTERNAL_IP6_DHCP";
        INTERNAL_IP4_SUBNET = 13, "INTERNAL_IP4_SUBNET";
        SUPPORTED_ATTRIBUTES = 14, "SUPPORTED_ATTRIBUTES";
        INTERNAL_IP6_SUBNET = 15, "INTERNAL_IP6_SUBNET";
    }
}

open_type! {
    /// Hash algorithms of the SIGNATURE_HASH_ALGORITHMS notify (RFC 7427 §4).
    HashAlgorithm(u16) {
        SHA1 = 1, "SHA1";
        SHA2_256 = 2, "SHA2_256";
        SHA2_384 = 3, "SHA2_384";
        SHA2_512 = 4, "SHA2_512";
        IDENTITY = 5, "Identity";
    }
}
