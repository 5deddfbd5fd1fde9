//! The bindings isakmpd adds to every configuration (conf.c `conf_load_defaults`), resolved
//! on demand.
//!
//! The C daemon materialises about 40,800 bindings at each load: every Main Mode transform
//! `<cipher>-<hash>[-GRPn][-DSS|-RSA_SIG]` and every Quick Mode suite
//! `QM-<ESP|AH>[-TRP]-<cipher>[-<hash>][-PFS[-GRPn]]-SUITE` with its protocol and transform
//! sections. Here a lookup parses the section name against the same tables instead, so the
//! names and values are those of the C generator and cost nothing until asked for.

/// A default binding's value: most are static, a few depend on the section name.
pub type Value = std::borrow::Cow<'static, str>;

pub const LIFE_MAIN_MODE: &str = "LIFE_MAIN_MODE";
pub const LIFE_QUICK_MODE: &str = "LIFE_QUICK_MODE";
pub const DEFAULT_LIFE_MAIN_MODE: &str = "3600,60:86400";
pub const DEFAULT_LIFE_QUICK_MODE: &str = "1200,60:86400";
const AES_KEYLEN: &str = "128,128:256";
const BLF_KEYLEN: &str = "128,96:192";

/// Fixed sections: (section, tag, value).
const FIXED: &[(&str, &str, &str)] = &[
    ("General", "Retransmits", "3"),
    ("General", "Exchange-max-time", "120"),
    ("General", "Use-Keynote", "yes"),
    ("General", "Policy-file", "/etc/isakmpd/isakmpd.policy"),
    ("General", "Pubkey-directory", "/etc/isakmpd/pubkeys"),
    ("General", "Delete-SAs", "yes"),
    ("X509-certificates", "CA-directory", "/etc/isakmpd/ca/"),
    ("X509-certificates", "Cert-directory", "/etc/isakmpd/certs/"),
    (
        "X509-certificates",
        "Private-key",
        "/etc/isakmpd/private/local.key",
    ),
    (
        "X509-certificates",
        "Private-key-directory",
        "/etc/isakmpd/private/",
    ),
    ("X509-certificates", "CRL-directory", "/etc/isakmpd/crls/"),
    ("KeyNote", "Credential-directory", "/etc/isakmpd/keynote/"),
    (LIFE_MAIN_MODE, "LIFE_TYPE", "SECONDS"),
    (LIFE_QUICK_MODE, "LIFE_TYPE", "SECONDS"),
    ("Default-phase-1-configuration", "EXCHANGE_TYPE", "ID_PROT"),
    (
        "Default-phase-1-configuration",
        "Transforms",
        "3DES-SHA-RSA_SIG",
    ),
    ("Phase 1", "Default", "Default-phase-1"),
    ("Default-phase-1", "Phase", "1"),
    (
        "Default-phase-1",
        "Configuration",
        "Default-phase-1-configuration",
    ),
];

/// Names the fixed default sections, for `C get` and reports.
pub fn fixed_sections() -> impl Iterator<Item = &'static str> {
    let mut seen: Vec<&'static str> = Vec::new();
    FIXED.iter().filter_map(move |(s, _, _)| {
        if seen.contains(s) {
            None
        } else {
            seen.push(s);
            Some(*s)
        }
    })
}

// Main Mode tables: (name part, value).
const MM_ENC: &[(&str, &str)] = &[
    ("BLF", "BLOWFISH_CBC"),
    ("3DES", "3DES_CBC"),
    ("CAST", "CAST_CBC"),
    ("AES", "AES_CBC"),
    ("AES-128", "AES_CBC"),
    ("AES-192", "AES_CBC"),
    ("AES-256", "AES_CBC"),
];
const MM_HASH: &[(&str, &str)] = &[
    ("-MD5", "MD5"),
    ("-SHA", "SHA"),
    ("-SHA2-256", "SHA2_256"),
    ("-SHA2-384", "SHA2_384"),
    ("-SHA2-512", "SHA2_512"),
];
const MM_AUTH: &[(&str, &str)] = &[("", "PRE_SHARED"), ("-DSS", "DSS"), ("-RSA_SIG", "RSA_SIG")];
/// Group suffixes; no suffix means MODP_1024 (group 2).
const GROUPS: &[(&str, &str)] = &[
    ("", "MODP_1024"),
    ("-GRP1", "MODP_768"),
    ("-GRP2", "MODP_1024"),
    ("-GRP5", "MODP_1536"),
    ("-GRP14", "MODP_2048"),
    ("-GRP15", "MODP_3072"),
    ("-GRP16", "MODP_4096"),
    ("-GRP17", "MODP_6144"),
    ("-GRP18", "MODP_8192"),
    ("-GRP19", "ECP_256"),
    ("-GRP20", "ECP_384"),
    ("-GRP21", "ECP_521"),
    ("-GRP26", "ECP_224"),
    ("-GRP27", "BP_224"),
    ("-GRP28", "BP_256"),
    ("-GRP29", "BP_384"),
    ("-GRP30", "BP_512"),
];

// Quick Mode tables.
const QM_ENC: &[(&str, &str)] = &[
    ("-3DES", "3DES"),
    ("-CAST", "CAST"),
    ("-BLF", "BLOWFISH"),
    ("-AES", "AES"),
    ("-AES-128", "AES"),
    ("-AES-192", "AES"),
    ("-AES-256", "AES"),
    ("-AESCTR", "AES_CTR"),
    ("-AESCTR-128", "AES_CTR"),
    ("-AESCTR-192", "AES_CTR"),
    ("-AESCTR-256", "AES_CTR"),
    ("-AESGCM-128", "AES_GCM_16"),
    ("-AESGCM-192", "AES_GCM_16"),
    ("-AESGCM-256", "AES_GCM_16"),
    ("-AESGMAC-128", "AES_GMAC"),
    ("-AESGMAC-192", "AES_GMAC"),
    ("-AESGMAC-256", "AES_GMAC"),
    ("-NULL", "NULL"),
    ("", "NONE"),
];
/// (name part, AUTHENTICATION_ALGORITHM, AH TRANSFORM_ID)
const QM_HASH: &[(&str, &str, &str)] = &[
    ("-MD5", "HMAC_MD5", "MD5"),
    ("-SHA", "HMAC_SHA", "SHA"),
    ("-RIPEMD", "HMAC_RIPEMD", "RIPEMD"),
    ("-SHA2-256", "HMAC_SHA2_256", "SHA2_256"),
    ("-SHA2-384", "HMAC_SHA2_384", "SHA2_384"),
    ("-SHA2-512", "HMAC_SHA2_512", "SHA2_512"),
    ("", "NONE", ""),
];

fn strip_prefix_ci<'a>(s: &'a str, p: &str) -> Option<&'a str> {
    if s.len() >= p.len() && s.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes()) {
        Some(&s[p.len()..])
    } else {
        None
    }
}

fn strip_suffix_ci<'a>(s: &'a str, p: &str) -> Option<&'a str> {
    if s.len() >= p.len() && s.as_bytes()[s.len() - p.len()..].eq_ignore_ascii_case(p.as_bytes()) {
        Some(&s[..s.len() - p.len()])
    } else {
        None
    }
}

/// A parsed Main Mode transform name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MainMode {
    enc: usize,
    hash: usize,
    group: usize,
    auth: usize,
}

fn parse_main_mode(name: &str) -> Option<MainMode> {
    for (enc, (ep, _)) in MM_ENC.iter().enumerate() {
        let Some(r1) = strip_prefix_ci(name, ep) else {
            continue;
        };
        for (hash, (hp, _)) in MM_HASH.iter().enumerate() {
            let Some(r2) = strip_prefix_ci(r1, hp) else {
                continue;
            };
            for (auth, (ap, _)) in MM_AUTH.iter().enumerate() {
                let Some(r3) = strip_suffix_ci(r2, ap) else {
                    continue;
                };
                for (group, (gp, _)) in GROUPS.iter().enumerate() {
                    if r3.eq_ignore_ascii_case(gp) {
                        return Some(MainMode {
                            enc,
                            hash,
                            group,
                            auth,
                        });
                    }
                }
            }
        }
    }
    None
}

fn main_mode_value(m: MainMode, tag: &str) -> Option<&'static str> {
    let t = |s: &str| tag.eq_ignore_ascii_case(s);
    if t("ENCRYPTION_ALGORITHM") {
        Some(MM_ENC[m.enc].1)
    } else if t("KEY_LENGTH") {
        match MM_ENC[m.enc].0 {
            "BLF" => Some(BLF_KEYLEN),
            "AES-128" => Some("128,128:128"),
            "AES-192" => Some("192,192:192"),
            "AES-256" => Some("256,256:256"),
            "AES" => Some(AES_KEYLEN),
            _ => None,
        }
    } else if t("HASH_ALGORITHM") {
        Some(MM_HASH[m.hash].1)
    } else if t("AUTHENTICATION_METHOD") {
        Some(MM_AUTH[m.auth].1)
    } else if t("GROUP_DESCRIPTION") {
        Some(GROUPS[m.group].1)
    } else if t("Life") {
        Some(LIFE_MAIN_MODE)
    } else {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QmPart {
    Suite,
    Protocol,
    Transform,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QuickMode {
    ah: bool,
    transport: bool,
    enc: usize,
    hash: usize,
    /// Some(group index) with PFS.
    pfs: Option<usize>,
}

fn parse_quick_mode(name: &str) -> Option<(QuickMode, QmPart)> {
    let rest = strip_prefix_ci(name, "QM-")?;
    let (rest, part) = if let Some(r) = strip_suffix_ci(rest, "-SUITE") {
        (r, QmPart::Suite)
    } else if let Some(r) = strip_suffix_ci(rest, "-XF") {
        (r, QmPart::Transform)
    } else {
        (rest, QmPart::Protocol)
    };
    let (ah, rest) = if let Some(r) = strip_prefix_ci(rest, "AH") {
        (true, r)
    } else {
        (false, strip_prefix_ci(rest, "ESP")?)
    };
    let (transport, rest) = match strip_prefix_ci(rest, "-TRP") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    for (enc, (ep, ev)) in QM_ENC.iter().enumerate() {
        let Some(r1) = strip_prefix_ci(rest, ep) else {
            continue;
        };
        for (hash, (hp, hv, _)) in QM_HASH.iter().enumerate() {
            let Some(r2) = strip_prefix_ci(r1, hp) else {
                continue;
            };
            let pfs = if r2.is_empty() {
                None
            } else if let Some(g) = strip_prefix_ci(r2, "-PFS") {
                match GROUPS.iter().position(|(gp, _)| g.eq_ignore_ascii_case(gp)) {
                    Some(i) => Some(i),
                    None => continue,
                }
            } else {
                continue;
            };
            // The generator's rules (conf.c conf_load_defaults_qm).
            let no_enc = *ev == "NONE";
            let no_hash = *hv == "NONE";
            if ah && (no_hash || !no_enc) {
                continue;
            }
            if !ah && no_enc {
                continue;
            }
            if !ah && !no_hash && (*ev == "AES_GCM_16" || *ev == "AES_GMAC") {
                continue;
            }
            return Some((
                QuickMode {
                    ah,
                    transport,
                    enc,
                    hash,
                    pfs,
                },
                part,
            ));
        }
    }
    None
}

impl QuickMode {
    fn base_name(&self) -> String {
        let mut s = String::from("QM-");
        s.push_str(if self.ah { "AH" } else { "ESP" });
        if self.transport {
            s.push_str("-TRP");
        }
        s.push_str(QM_ENC[self.enc].0);
        s.push_str(QM_HASH[self.hash].0);
        if let Some(g) = self.pfs {
            s.push_str("-PFS");
            s.push_str(GROUPS[g].0);
        }
        s
    }
}

fn quick_mode_value(q: QuickMode, part: QmPart, tag: &str) -> Option<Value> {
    let t = |s: &str| tag.eq_ignore_ascii_case(s);
    match part {
        QmPart::Suite => t("Protocols").then(|| Value::Owned(q.base_name())),
        QmPart::Protocol => {
            if t("PROTOCOL_ID") {
                Some(Value::Borrowed(if q.ah { "IPSEC_AH" } else { "IPSEC_ESP" }))
            } else if t("Transforms") {
                Some(Value::Owned(q.base_name() + "-XF"))
            } else {
                None
            }
        }
        QmPart::Transform => {
            let (ep, ev) = QM_ENC[q.enc];
            let (_, hv, ah_id) = QM_HASH[q.hash];
            let v: Option<&'static str> = if t("TRANSFORM_ID") {
                Some(if q.ah { ah_id } else { ev })
            } else if t("KEY_LENGTH") {
                if ev == "BLOWFISH" {
                    Some(BLF_KEYLEN)
                } else if ep.ends_with("-128") {
                    Some("128,128:128")
                } else if ep.ends_with("-192") {
                    Some("192,192:192")
                } else if ep.ends_with("-256") {
                    Some("256,256:256")
                } else if ev == "AES" {
                    Some(AES_KEYLEN)
                } else {
                    None
                }
            } else if t("ENCAPSULATION_MODE") {
                Some(if q.transport { "TRANSPORT" } else { "TUNNEL" })
            } else if t("AUTHENTICATION_ALGORITHM") {
                (hv != "NONE").then_some(hv)
            } else if t("GROUP_DESCRIPTION") {
                // As in C: only suites with a hash carry the PFS group.
                match q.pfs {
                    Some(g) if hv != "NONE" => Some(GROUPS[g].1),
                    _ => None,
                }
            } else if t("Life") {
                Some(LIFE_QUICK_MODE)
            } else {
                None
            };
            v.map(Value::Borrowed)
        }
    }
}

/// The default value of `[section]:tag`, if isakmpd would have generated one. `general`
/// looks up a tag of the file's [General] section (for the lifetime and phase 1 ID
/// defaults, which depend on it).
pub fn lookup(section: &str, tag: &str, general: impl Fn(&str) -> Option<String>) -> Option<Value> {
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    if eq(section, LIFE_MAIN_MODE) && eq(tag, "LIFE_DURATION") {
        return Some(
            general("Default-phase-1-lifetime")
                .map_or(Value::Borrowed(DEFAULT_LIFE_MAIN_MODE), Value::Owned),
        );
    }
    if eq(section, LIFE_QUICK_MODE) && eq(tag, "LIFE_DURATION") {
        return Some(
            general("Default-phase-2-lifetime")
                .map_or(Value::Borrowed(DEFAULT_LIFE_QUICK_MODE), Value::Owned),
        );
    }
    if eq(section, "Default-phase-1") && eq(tag, "ID") {
        return general("Default-phase-1-ID").map(Value::Owned);
    }
    if let Some((_, _, v)) = FIXED.iter().find(|(s, t, _)| eq(s, section) && eq(t, tag)) {
        return Some(Value::Borrowed(v));
    }
    if let Some(m) = parse_main_mode(section) {
        return main_mode_value(m, tag).map(Value::Borrowed);
    }
    if let Some((q, part)) = parse_quick_mode(section) {
        return quick_mode_value(q, part, tag);
    }
    None
}

/// True if isakmpd generates a section of this name.
pub fn is_generated_section(section: &str) -> bool {
    FIXED
        .iter()
        .any(|(s, _, _)| s.eq_ignore_ascii_case(section))
        || section.eq_ignore_ascii_case(LIFE_MAIN_MODE)
        || section.eq_ignore_ascii_case(LIFE_QUICK_MODE)
        || parse_main_mode(section).is_some()
        || parse_quick_mode(section).is_some()
}

/// How many sections the C generator would have built (for the report, and as a check
/// that the tables match its loops).
pub fn generated_counts() -> (usize, usize) {
    let mm = MM_ENC.len() * MM_HASH.len() * MM_AUTH.len() * GROUPS.len();
    let mut qm = 0;
    for ah in [false, true] {
        for enc in 0..QM_ENC.len() {
            for hash in 0..QM_HASH.len() {
                for pfs in [false, true] {
                    for g in 0..GROUPS.len() {
                        if !pfs && g != 0 {
                            continue;
                        }
                        let q = QuickMode {
                            ah,
                            transport: false,
                            enc,
                            hash,
                            pfs: pfs.then_some(g),
                        };
                        if parse_quick_mode(&(q.base_name() + "-SUITE")).map(|x| x.0) == Some(q) {
                            qm += 2; // tunnel and transport
                        }
                    }
                }
            }
        }
    }
    (mm, qm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(s: &str, t: &str) -> Option<String> {
        lookup(s, t, |_| None).map(|v| v.into_owned())
    }

    #[test]
    fn main_mode_names() {
        assert_eq!(
            get("3DES-SHA", "ENCRYPTION_ALGORITHM").as_deref(),
            Some("3DES_CBC")
        );
        assert_eq!(get("3DES-SHA", "HASH_ALGORITHM").as_deref(), Some("SHA"));
        assert_eq!(
            get("3DES-SHA", "AUTHENTICATION_METHOD").as_deref(),
            Some("PRE_SHARED")
        );
        assert_eq!(
            get("3DES-SHA", "GROUP_DESCRIPTION").as_deref(),
            Some("MODP_1024")
        );
        assert_eq!(get("3DES-SHA", "KEY_LENGTH"), None);
        assert_eq!(get("3DES-SHA", "Life").as_deref(), Some("LIFE_MAIN_MODE"));
        let n = "AES-256-SHA2-256-GRP14-RSA_SIG";
        assert_eq!(get(n, "ENCRYPTION_ALGORITHM").as_deref(), Some("AES_CBC"));
        assert_eq!(get(n, "KEY_LENGTH").as_deref(), Some("256,256:256"));
        assert_eq!(get(n, "HASH_ALGORITHM").as_deref(), Some("SHA2_256"));
        assert_eq!(get(n, "GROUP_DESCRIPTION").as_deref(), Some("MODP_2048"));
        assert_eq!(get(n, "AUTHENTICATION_METHOD").as_deref(), Some("RSA_SIG"));
        // Case-insensitive, like every section lookup.
        assert_eq!(
            get("aes-sha-grp19", "group_description").as_deref(),
            Some("ECP_256")
        );
        assert_eq!(get("AES-SHA", "KEY_LENGTH").as_deref(), Some("128,128:256"));
        assert_eq!(
            get("BLF-MD5-DSS", "KEY_LENGTH").as_deref(),
            Some("128,96:192")
        );
        for bad in [
            "DES-SHA",
            "AES-SHA1",
            "AES-SHA-GRP3",
            "AES-SHA-GRP25",
            "AES",
            "3DES-SHA-RSA",
        ] {
            assert_eq!(get(bad, "ENCRYPTION_ALGORITHM"), None, "{bad}");
        }
    }

    #[test]
    fn quick_mode_names() {
        let s = "QM-ESP-AES-SHA-PFS-SUITE";
        assert_eq!(get(s, "Protocols").as_deref(), Some("QM-ESP-AES-SHA-PFS"));
        assert_eq!(
            get("QM-ESP-AES-SHA-PFS", "PROTOCOL_ID").as_deref(),
            Some("IPSEC_ESP")
        );
        assert_eq!(
            get("QM-ESP-AES-SHA-PFS", "Transforms").as_deref(),
            Some("QM-ESP-AES-SHA-PFS-XF")
        );
        let x = "QM-ESP-AES-SHA-PFS-XF";
        assert_eq!(get(x, "TRANSFORM_ID").as_deref(), Some("AES"));
        assert_eq!(get(x, "KEY_LENGTH").as_deref(), Some("128,128:256"));
        assert_eq!(get(x, "ENCAPSULATION_MODE").as_deref(), Some("TUNNEL"));
        assert_eq!(
            get(x, "AUTHENTICATION_ALGORITHM").as_deref(),
            Some("HMAC_SHA")
        );
        assert_eq!(get(x, "GROUP_DESCRIPTION").as_deref(), Some("MODP_1024"));
        assert_eq!(get(x, "Life").as_deref(), Some("LIFE_QUICK_MODE"));
        let x = "QM-ESP-TRP-AESGCM-256-PFS-GRP19-XF";
        assert_eq!(get(x, "TRANSFORM_ID").as_deref(), Some("AES_GCM_16"));
        assert_eq!(get(x, "KEY_LENGTH").as_deref(), Some("256,256:256"));
        assert_eq!(get(x, "ENCAPSULATION_MODE").as_deref(), Some("TRANSPORT"));
        assert_eq!(get(x, "AUTHENTICATION_ALGORITHM"), None);
        // C sets the PFS group only when a hash is present.
        assert_eq!(get(x, "GROUP_DESCRIPTION"), None);
        let x = "QM-AH-SHA2-256-PFS-GRP14-XF";
        assert_eq!(get(x, "TRANSFORM_ID").as_deref(), Some("SHA2_256"));
        assert_eq!(get(x, "GROUP_DESCRIPTION").as_deref(), Some("MODP_2048"));
        assert_eq!(
            get("QM-AH-SHA2-256-PFS-GRP14", "PROTOCOL_ID").as_deref(),
            Some("IPSEC_AH")
        );
        assert_eq!(
            get("QM-ESP-3DES-SHA-SUITE", "Protocols").as_deref(),
            Some("QM-ESP-3DES-SHA")
        );
        assert_eq!(
            get("QM-ESP-AES-SUITE", "Protocols").as_deref(),
            Some("QM-ESP-AES")
        );
        for bad in [
            "QM-AH-AES-SHA-SUITE",         // AH with a cipher
            "QM-AH-SUITE",                 // AH without a hash
            "QM-ESP-SHA-SUITE",            // ESP without a cipher
            "QM-ESP-AES-SHA-GRP14-SUITE",  // group without PFS
            "QM-ESP-AESGCM-128-SHA-SUITE", // GCM with a hash
            "QM-ESP-DES-SHA-SUITE",
            "QM-ESP-AES-SHA-PFS-GRP3-SUITE",
        ] {
            assert_eq!(get(bad, "Protocols"), None, "{bad}");
        }
    }

    #[test]
    fn fixed_and_general_dependent() {
        assert_eq!(get("General", "Retransmits").as_deref(), Some("3"));
        assert_eq!(get("general", "exchange-max-time").as_deref(), Some("120"));
        assert_eq!(
            get("Phase 1", "Default").as_deref(),
            Some("Default-phase-1")
        );
        assert_eq!(
            get("LIFE_MAIN_MODE", "LIFE_DURATION").as_deref(),
            Some("3600,60:86400")
        );
        assert_eq!(
            get("LIFE_QUICK_MODE", "LIFE_DURATION").as_deref(),
            Some("1200,60:86400")
        );
        let g = |t: &str| (t == "Default-phase-1-lifetime").then(|| "7200,60:86400".to_string());
        assert_eq!(
            lookup("LIFE_MAIN_MODE", "LIFE_DURATION", g).as_deref(),
            Some("7200,60:86400")
        );
        assert_eq!(get("Default-phase-1", "ID"), None);
        assert_eq!(get("General", "Check-interval"), None);
    }

    #[test]
    fn counts_match_the_c_generator() {
        // 7 ciphers x 5 hashes x 3 auth x 17 group suffixes.
        let (mm, qm) = generated_counts();
        assert_eq!(mm, 1785);
        assert!(qm > 3000, "{qm}");
    }
}
