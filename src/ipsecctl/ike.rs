//! The isakmpd FIFO command stream for one `ike` rule, a port of OpenBSD's
//! `sbin/ipsecctl/ike.c` (v1.85): `ike_gen_config` (the `C set`/`C add` lines that build
//! the peer, phase 1, IDs and phase 2 sections) and `ike_delete_config` (the `t`,
//! `C rmv`, `C rms` lines that undo them). Section names are made exactly as
//! `ike_setup_ids` makes them, since isakmpd and the user's later `-d` must find them.
//!
//! Like the C, a rule whose transforms ike.c rejects leaves the lines written so far
//! (the last one possibly unfinished) and an `Err` with ipsecctl's warning.

use super::host::Af;
use super::rule::{group_desc, Exch, IdType, IkeAuth, IkeMode, Rule, SaType, Tmode};
use std::fmt::Write as _;

/// The names of a rule's sections (`p1name`, `p2name`, `p2lid`, `p2rid`, `p2nid`).
pub struct Names {
    pub p1: String,
    pub p2: String,
    pub lid: String,
    pub rid: String,
    pub nid: Option<String>,
}

/// `ike_setup_ids`.
pub fn setup_ids(r: &Rule) -> Names {
    let p1 = match (&r.peer, &r.local) {
        (Some(p), Some(l)) => format!("peer-{}-local-{}", p.name, l.name),
        (Some(p), None) => format!("peer-{}", p.name),
        (None, _) => "peer-default".to_string(),
    };
    let sproto = if r.proto != 0 {
        format!("={}", r.proto)
    } else {
        String::new()
    };
    let ssport = if r.sport != 0 {
        format!(":{}", r.sport)
    } else {
        String::new()
    };
    let sdport = if r.dport != 0 {
        format!(":{}", r.dport)
    } else {
        String::new()
    };
    let (lid, rid) = match r.iface {
        Some(u) => (format!("from-sec{u}"), format!("to-sec{u}")),
        None => (
            format!("from-{}{sproto}{ssport}", r.src.name),
            format!("to-{}{sproto}{sdport}", r.dst.name),
        ),
    };
    let p2 = format!("{lid}-{rid}");
    let nid = r
        .src
        .srcnat
        .as_ref()
        .map(|n| format!("nat-{}{sproto}{ssport}", n.name));
    Names {
        p1,
        p2,
        lid,
        rid,
        nid,
    }
}

fn v(af: Af) -> u8 {
    if af == Af::V4 {
        4
    } else {
        6
    }
}

/// Everything before the last `/` (the C's `strrchr(name, '/') = '\0'`).
fn before_slash(s: &str) -> &str {
    match s.rfind('/') {
        Some(i) => &s[..i],
        None => s,
    }
}

fn section_general(r: &Rule, o: &mut String) {
    if r.ikemode == IkeMode::Dynamic {
        o.push_str("C set [General]:Check-interval=30 force\n");
        o.push_str("C set [General]:DPD-check-interval=5 force\n");
    }
}

fn section_peer(r: &Rule, n: &Names, o: &mut String) {
    let p1 = &n.p1;
    match &r.peer {
        Some(p) => {
            let _ = writeln!(o, "C set [Phase 1]:{}={p1} force", p.name);
        }
        None => {
            let _ = writeln!(o, "C set [Phase 1]:Default={p1} force");
        }
    }
    let _ = writeln!(o, "C set [{p1}]:Phase=1 force");
    if let Some(p) = &r.peer {
        let _ = writeln!(o, "C set [{p1}]:Address={} force", p.name);
    }
    if let Some(l) = &r.local {
        let _ = writeln!(o, "C set [{p1}]:Local-address={} force", l.name);
    }
    if let IkeAuth::Psk(k) = &r.ikeauth {
        let _ = writeln!(o, "C set [{p1}]:Authentication={k} force");
    }
}

fn section_ids(r: &mut Rule, n: &Names, o: &mut String, hostname: &dyn Fn() -> String) {
    if r.ikemode == IkeMode::Dynamic && r.srcid.is_none() {
        r.srcid = Some((hostname(), IdType::Fqdn));
    }
    for (id, key) in [(&r.srcid, "ID"), (&r.dstid, "Remote-ID")] {
        if let Some((s, t)) = id {
            let _ = writeln!(o, "C set [{}]:{key}=id-{s} force", n.p1);
            let _ = writeln!(o, "C set [id-{s}]:ID-type={} force", t.isakmpd());
            if matches!(t, IdType::Ipv4 | IdType::Ipv6) {
                let _ = writeln!(o, "C set [id-{s}]:Address={s} force");
            } else {
                let _ = writeln!(o, "C set [id-{s}]:Name={s} force");
            }
        }
    }
}

fn section_ipsec(r: &Rule, n: &Names, o: &mut String) {
    let p2 = &n.p2;
    let _ = writeln!(o, "C set [{p2}]:Phase=2 force");
    let _ = writeln!(o, "C set [{p2}]:ISAKMP-peer={} force", n.p1);
    let _ = writeln!(o, "C set [{p2}]:Configuration=phase2-{p2} force");
    let _ = writeln!(o, "C set [{p2}]:Local-ID={} force", n.lid);
    if let Some(nid) = &n.nid {
        let _ = writeln!(o, "C set [{p2}]:NAT-ID={nid} force");
    }
    let _ = writeln!(o, "C set [{p2}]:Remote-ID={} force", n.rid);
    if let Some(t) = &r.tag {
        let _ = writeln!(o, "C set [{p2}]:PF-Tag={t} force");
    }
    if let Some(u) = r.iface {
        let _ = writeln!(o, "C set [{p2}]:Interface={u} force");
    }
}

/// The part of a KEY_LENGTH before its comma, for transform names.
fn short_len(k: Option<&str>) -> &str {
    match k {
        Some(k) => match k.find(',') {
            Some(i) => &k[..i],
            None => "",
        },
        None => "",
    }
}

fn life(o: &mut String, xf: &str, secs: i32, default: &str) {
    if secs != -1 {
        let _ = writeln!(o, "C set [{xf}]:Life={xf}-life force");
        let _ = writeln!(o, "C set [{xf}-life]:LIFE_TYPE=SECONDS force");
        let _ = writeln!(o, "C set [{xf}-life]:LIFE_DURATION={secs} force");
    } else {
        let _ = writeln!(o, "C set [{xf}]:Life={default} force");
    }
}

fn section_p2(r: &Rule, n: &Names, o: &mut String) -> Result<(), String> {
    let p2 = &n.p2;
    let _ = writeln!(o, "C set [phase2-{p2}]:EXCHANGE_TYPE=QUICK_MODE force");
    let _ = writeln!(o, "C set [phase2-{p2}]:Suites=phase2-suite-{p2} force");
    let _ = writeln!(
        o,
        "C set [phase2-suite-{p2}]:Protocols=phase2-protocol-{p2} force"
    );
    let _ = write!(o, "C set [phase2-protocol-{p2}]:PROTOCOL_ID=");
    match r.satype {
        SaType::Esp => o.push_str("IPSEC_ESP"),
        SaType::Ah => o.push_str("IPSEC_AH"),
        SaType::Ipcomp => return Err("illegal satype 3".into()),
        SaType::Ipip => return Err("illegal satype 5".into()),
    }
    o.push_str(" force\n");

    let xfs = r.p2.xfs.as_ref();
    let mut needauth = true;
    let mut key_length: Option<&str> = None;
    let mut enc_alg: Option<&str> = None;
    if let Some(e) = xfs.and_then(|x| x.enc) {
        if r.satype != SaType::Esp {
            return Err(format!("illegal transform {}", e.name));
        }
        let (alg, kl, na) = match e.name {
            "3des-cbc" => ("3DES", None, false),
            "aes" => ("AES", Some("128,128:256"), false),
            "aes-128" => ("AES", Some("128,128:128"), false),
            "aes-192" => ("AES", Some("192,192:192"), false),
            "aes-256" => ("AES", Some("256,256:256"), false),
            "aesctr" | "aes-128-ctr" => ("AES_CTR", Some("128,128:128"), false),
            "aes-192-ctr" => ("AES_CTR", Some("192,192:192"), false),
            "aes-256-ctr" => ("AES_CTR", Some("256,256:256"), false),
            "aes-128-gcm" => ("AES_GCM_16", Some("128,128:128"), true),
            "aes-192-gcm" => ("AES_GCM_16", Some("192,192:192"), true),
            "aes-256-gcm" => ("AES_GCM_16", Some("256,256:256"), true),
            "aes-128-gmac" => ("AES_GMAC", Some("128,128:128"), true),
            "aes-192-gmac" => ("AES_GMAC", Some("192,192:192"), true),
            "aes-256-gmac" => ("AES_GMAC", Some("256,256:256"), true),
            "blowfish" => ("BLOWFISH", Some("128,96:192"), false),
            "cast128" => ("CAST", None, false),
            "null" => ("NULL", None, true),
            other => return Err(format!("illegal transform {other}")),
        };
        enc_alg = Some(alg);
        key_length = kl;
        if na {
            needauth = false;
        }
    } else if r.satype == SaType::Esp {
        enc_alg = Some("AES");
        key_length = Some("128,128:256");
    }
    let encap = match r.tmode {
        Tmode::Tunnel => "TUNNEL",
        Tmode::Transport => "TRANSPORT",
    };
    let auth_alg: Option<&str> = match xfs.and_then(|x| x.auth) {
        Some(a) => Some(match a.name {
            "hmac-md5" => "MD5",
            "hmac-sha1" => "SHA",
            "hmac-ripemd160" => "RIPEMD",
            "hmac-sha2-256" => "SHA2_256",
            "hmac-sha2-384" => "SHA2_384",
            "hmac-sha2-512" => "SHA2_512",
            other => return Err(format!("illegal transform {other}")),
        }),
        None if needauth => Some("SHA2_256"),
        None => None,
    };
    let group: Option<&str> = match xfs.and_then(|x| x.group) {
        Some(g) if g.name == "none" => None,
        Some(g) => match group_desc(&g) {
            Some(d) => Some(d),
            None => return Err(format!("illegal group {}", g.name)),
        },
        None => Some("MODP_3072"),
    };
    let xf = format!(
        "phase2-transform-{p2}-{}{}-{}-{}-{encap}",
        enc_alg.unwrap_or("NONE"),
        short_len(key_length),
        auth_alg.unwrap_or("NONE"),
        group.unwrap_or("NONE"),
    );
    let _ = writeln!(o, "C set [phase2-protocol-{p2}]:Transforms={xf} force");
    let id = if r.satype == SaType::Ah {
        auth_alg
    } else {
        enc_alg
    };
    let _ = writeln!(
        o,
        "C set [{xf}]:TRANSFORM_ID={} force",
        id.unwrap_or("(null)")
    );
    if let Some(k) = key_length {
        let _ = writeln!(o, "C set [{xf}]:KEY_LENGTH={k} force");
    }
    let _ = writeln!(o, "C set [{xf}]:ENCAPSULATION_MODE={encap} force");
    if let Some(a) = auth_alg {
        let _ = writeln!(o, "C set [{xf}]:AUTHENTICATION_ALGORITHM=HMAC_{a} force");
    }
    if let Some(g) = group {
        let _ = writeln!(o, "C set [{xf}]:GROUP_DESCRIPTION={g} force");
    }
    life(o, &xf, r.p2.life, "LIFE_QUICK_MODE");
    Ok(())
}

fn section_p1(r: &Rule, n: &Names, o: &mut String) -> Result<(), String> {
    let p1 = &n.p1;
    let exch = match r.p1.exch {
        Exch::Main => "ID_PROT",
        Exch::Aggressive => "AGGRESSIVE",
        Exch::Quick => return Err("illegal phase 1 ike mode 3".into()),
    };
    let _ = writeln!(o, "C set [{p1}]:Configuration=phase1-{p1} force");
    let _ = writeln!(o, "C set [phase1-{p1}]:EXCHANGE_TYPE={exch} force");
    let xfs = r.p1.xfs.as_ref();
    let (enc_alg, key_length) = match xfs.and_then(|x| x.enc) {
        Some(e) => match e.name {
            "3des-cbc" => ("3DES", None),
            "aes" => ("AES", Some("128,128:256")),
            "aes-128" => ("AES", Some("128,128:128")),
            "aes-192" => ("AES", Some("192,192:192")),
            "aes-256" => ("AES", Some("256,256:256")),
            "blowfish" => ("BLOWFISH", Some("128,96:192")),
            "cast128" => ("CAST", None),
            other => return Err(format!("illegal transform {other}")),
        },
        None => ("AES", Some("128,128:256")),
    };
    let auth_alg = match xfs.and_then(|x| x.auth) {
        Some(a) => match a.name {
            "hmac-md5" => "MD5",
            "hmac-sha1" => "SHA",
            "hmac-sha2-256" => "SHA2_256",
            "hmac-sha2-384" => "SHA2_384",
            "hmac-sha2-512" => "SHA2_512",
            other => return Err(format!("illegal transform {other}")),
        },
        None => "SHA",
    };
    let group = match xfs.and_then(|x| x.group) {
        Some(g) => match group_desc(&g) {
            Some(d) => d,
            None => return Err(format!("illegal group {}", g.name)),
        },
        None => "MODP_3072",
    };
    let method = match r.ikeauth {
        IkeAuth::Psk(_) => "PRE_SHARED",
        IkeAuth::Rsa => "RSA_SIG",
    };
    let xf = format!(
        "phase1-transform-{p1}-{method}-{auth_alg}-{enc_alg}{}-{group}",
        short_len(key_length)
    );
    let _ = writeln!(o, "C add [phase1-{p1}]:Transforms={xf} force");
    let _ = writeln!(o, "C set [{xf}]:AUTHENTICATION_METHOD={method} force");
    let _ = writeln!(o, "C set [{xf}]:HASH_ALGORITHM={auth_alg} force");
    let _ = writeln!(o, "C set [{xf}]:ENCRYPTION_ALGORITHM={enc_alg}_CBC force");
    if let Some(k) = key_length {
        let _ = writeln!(o, "C set [{xf}]:KEY_LENGTH={k} force");
    }
    let _ = writeln!(o, "C set [{xf}]:GROUP_DESCRIPTION={group} force");
    life(o, &xf, r.p1.life, "LIFE_MAIN_MODE");
    Ok(())
}

fn p2ids_net(o: &mut String, af: Af, bits_mask: String, name: &str, id: &str) {
    let _ = writeln!(o, "C set [{id}]:ID-type=IPV{}_ADDR_SUBNET force", v(af));
    let _ = writeln!(o, "C set [{id}]:Network={} force", before_slash(name));
    let _ = writeln!(o, "C set [{id}]:Netmask={bits_mask} force");
}

fn p2ids_host(o: &mut String, af: Af, name: &str, id: &str) {
    let _ = writeln!(o, "C set [{id}]:ID-type=IPV{}_ADDR force", v(af));
    let _ = writeln!(o, "C set [{id}]:Address={} force", before_slash(name));
}

fn section_p2ids(r: &Rule, n: &Names, o: &mut String) {
    let (src, dst) = (&r.src, &r.dst);
    if src.netaddress {
        p2ids_net(o, src.af, src.mask_string(), &src.name, &n.lid);
    } else {
        p2ids_host(o, src.af, &src.name, &n.lid);
    }
    if let (Some(nat), Some(nid)) = (&src.srcnat, &n.nid) {
        // ike.c formats the NAT mask in the source's family.
        let mut m = (**nat).clone();
        m.af = src.af;
        if nat.netaddress {
            p2ids_net(o, src.af, m.mask_string(), &nat.name, nid);
        } else {
            p2ids_host(o, src.af, &nat.name, nid);
        }
    }
    if dst.netaddress {
        p2ids_net(o, dst.af, dst.mask_string(), &dst.name, &n.rid);
    } else {
        p2ids_host(o, dst.af, &dst.name, &n.rid);
    }
    if r.proto != 0 {
        let _ = writeln!(o, "C set [{}]:Protocol={} force", n.lid, r.proto);
        let _ = writeln!(o, "C set [{}]:Protocol={} force", n.rid, r.proto);
    }
    if r.sport != 0 {
        let _ = writeln!(o, "C set [{}]:Port={} force", n.lid, r.sport);
    }
    if r.dport != 0 {
        let _ = writeln!(o, "C set [{}]:Port={} force", n.rid, r.dport);
    }
}

fn connect(r: &Rule, n: &Names, o: &mut String) {
    match r.ikemode {
        IkeMode::Active | IkeMode::Dynamic => {
            let _ = writeln!(o, "C add [Phase 2]:Connections={}", n.p2);
        }
        IkeMode::Passive => {
            let _ = writeln!(o, "C add [Phase 2]:Passive-Connections={}", n.p2);
        }
    }
}

/// `ike_gen_config`: the stream that adds the rule. `hostname` gives the default srcid
/// of a `dynamic` rule (gethostname(3)); the rule keeps it, as the C's does.
pub fn gen_config(
    r: &mut Rule,
    o: &mut String,
    hostname: &dyn Fn() -> String,
) -> Result<(), String> {
    let n = setup_ids(r);
    section_general(r, o);
    section_peer(r, &n, o);
    section_p1(r, &n, o)?;
    section_ids(r, &n, o, hostname);
    section_ipsec(r, &n, o);
    section_p2(r, &n, o)?;
    section_p2ids(r, &n, o);
    connect(r, &n, o);
    Ok(())
}

/// `ike_delete_config`: stop the connection, forget it, remove its phase 2 sections.
pub fn delete_config(r: &Rule, o: &mut String) {
    let n = setup_ids(r);
    let p2 = &n.p2;
    let _ = writeln!(o, "t {p2}");
    match r.ikemode {
        IkeMode::Active | IkeMode::Dynamic => {
            let _ = writeln!(o, "C rmv [Phase 2]:Connections={p2}");
        }
        IkeMode::Passive => {
            let _ = writeln!(o, "C rmv [Phase 2]:Passive-Connections={p2}");
        }
    }
    let _ = writeln!(o, "C rms [{p2}]");
    let _ = writeln!(o, "C rms [phase2-{p2}]");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipsecctl::host::{host, Addr};
    use crate::ipsecctl::rule::{Phase, Xfs, ENCXFS};

    fn rule(src: &str, dst: &str) -> Rule {
        let one = |s: &str| {
            host(s)
                .ok()
                .and_then(|v| v.into_iter().next())
                .unwrap_or_else(Addr::any)
        };
        Rule {
            nr: 0,
            proto: 0,
            sport: 0,
            dport: 0,
            src: one(src),
            dst: one(dst),
            satype: SaType::Esp,
            tmode: Tmode::Tunnel,
            ikemode: IkeMode::Active,
            p1: Phase {
                exch: Exch::Main,
                xfs: None,
                life: -1,
            },
            p2: Phase {
                exch: Exch::Quick,
                xfs: None,
                life: -1,
            },
            srcid: None,
            dstid: None,
            ikeauth: IkeAuth::Rsa,
            tag: None,
            iface: None,
            local: None,
            peer: None,
        }
    }

    #[test]
    fn names_and_default_peer() {
        let mut r = rule("10.0.0.0/8", "10.1.0.0/16");
        r.proto = 17;
        r.sport = 500;
        let n = setup_ids(&r);
        assert_eq!(n.p1, "peer-default");
        assert_eq!(n.lid, "from-10.0.0.0/8=17:500");
        assert_eq!(n.rid, "to-10.1.0.0/16=17");
        assert_eq!(n.p2, "from-10.0.0.0/8=17:500-to-10.1.0.0/16=17");
        let mut o = String::new();
        assert!(gen_config(&mut r, &mut o, &|| "h".into()).is_ok());
        assert!(
            o.starts_with("C set [Phase 1]:Default=peer-default force\n"),
            "{o}"
        );
        assert!(
            o.contains("C set [from-10.0.0.0/8=17:500]:Port=500 force\n"),
            "{o}"
        );
    }

    #[test]
    fn dynamic_rules_default_srcid_to_the_host_name() {
        let mut r = rule("1.1.1.1", "2.2.2.2");
        r.ikemode = IkeMode::Dynamic;
        let mut o = String::new();
        assert!(gen_config(&mut r, &mut o, &|| "gw.example".into()).is_ok());
        assert!(
            o.contains("C set [id-gw.example]:ID-type=FQDN force\n"),
            "{o}"
        );
        let mut d = String::new();
        delete_config(&r, &mut d);
        assert_eq!(
            d,
            "t from-1.1.1.1-to-2.2.2.2\nC rmv [Phase 2]:Connections=from-1.1.1.1-to-2.2.2.2\n\
             C rms [from-1.1.1.1-to-2.2.2.2]\nC rms [phase2-from-1.1.1.1-to-2.2.2.2]\n"
        );
    }

    #[test]
    fn rejected_transforms_leave_partial_output_like_ike_c() {
        let mut r = rule("1.1.1.1", "2.2.2.2");
        r.satype = SaType::Ipcomp;
        let mut o = String::new();
        assert_eq!(
            gen_config(&mut r, &mut o, &|| "h".into()),
            Err("illegal satype 3".into())
        );
        assert!(o.ends_with("]:PROTOCOL_ID="), "{o}");
        let mut r = rule("1.1.1.1", "2.2.2.2");
        r.p2.xfs = Some(Xfs {
            enc: ENCXFS
                .iter()
                .copied()
                .find(|x| x.name == "chacha20-poly1305"),
            ..Xfs::default()
        });
        let mut o = String::new();
        assert!(gen_config(&mut r, &mut o, &|| "h".into()).is_err());
        assert!(o.ends_with("PROTOCOL_ID=IPSEC_ESP force\n"), "{o}");
    }
}
