#![forbid(unsafe_code)]

//! The flows of a [`FlowSet`] (an SA pair's, or iked's policy flows alone) as XFRM
//! policies or PF_KEY SPD entries / OpenBSD flows: out, in and (tunnel mode, not on
//! OpenBSD) fwd per pair of client IDs, each with a template asking for the SA pair by
//! the reqid of the first pair.

use super::*;

/// [`reqid`] of a flow set: that of the SA pairs negotiated for its first pair.
pub(super) fn flows_reqid(fs: &FlowSet) -> u32 {
    match fs.pairs.first() {
        Some((l, r)) => reqid_of(&fs.name, l, r, fs.protocol),
        None => 0,
    }
}

/// The selector and template endpoints of each policy of a flow set, pair by pair:
/// (selector, dir, src, dst).
pub(super) fn flows(fs: &FlowSet) -> Vec<(Selector, u8, IpAddr, IpAddr)> {
    let (l, r) = (fs.local, fs.remote);
    let m = mode(fs.encapsulation);
    let mut v = Vec::with_capacity(3 * fs.pairs.len());
    for (local_id, remote_id) in &fs.pairs {
        let (lid, rid) = if m == xfrm::MODE_TUNNEL {
            match (prefix(local_id), prefix(remote_id)) {
                (Some(a), Some(b)) => (a, b),
                _ => ((l, host_bits(l)), (r, host_bits(r))),
            }
        } else {
            ((l, host_bits(l)), (r, host_bits(r)))
        };
        let proto = local_id.protocol;
        let out = Selector {
            src: lid.0,
            src_prefix: lid.1,
            dst: rid.0,
            dst_prefix: rid.1,
            proto,
            sport: local_id.port,
            dport: remote_id.port,
        };
        let inb = Selector {
            src: rid.0,
            src_prefix: rid.1,
            dst: lid.0,
            dst_prefix: lid.1,
            proto,
            sport: remote_id.port,
            dport: local_id.port,
        };
        v.push((out, xfrm::XFRM_POLICY_OUT, l, r));
        v.push((inb, xfrm::XFRM_POLICY_IN, r, l));
        if m == xfrm::MODE_TUNNEL {
            v.push((inb, xfrm::XFRM_POLICY_FWD, r, l));
        }
    }
    v
}

/// The XFRM policies of a flow set, added (with `priority`) or deleted.
pub(super) fn xfrm_flow_messages(
    fs: &FlowSet,
    adding: bool,
    priority: u32,
    next: &mut dyn FnMut() -> u32,
    out: &mut Vec<Message>,
) {
    let reqid = flows_reqid(fs);
    for (sel, dir, src, dst) in flows(fs) {
        let mut b = Vec::new();
        if adding {
            xfrm::new_policy(
                &mut b,
                next(),
                &PolicySpec {
                    sel,
                    dir,
                    priority,
                    tmpl_src: src,
                    tmpl_dst: dst,
                    proto: ipproto(fs.protocol),
                    mode: mode(fs.encapsulation),
                    reqid,
                },
            );
        } else {
            xfrm::del_policy(&mut b, next(), &sel, dir);
        }
        out.push(flow_message(adding, &sel, dir, b));
    }
}

/// A flow's message, for the log: quiet, since a flow another SA pair shares may be
/// there already (or gone).
fn flow_message(adding: bool, sel: &Selector, dir: u8, bytes: Vec<u8>) -> Message {
    Message {
        what: format!(
            "{} flow {}/{} -> {}/{} dir {dir}",
            if adding { "add" } else { "delete" },
            sel.src,
            sel.src_prefix,
            sel.dst,
            sel.dst_prefix
        ),
        bytes,
        quiet: true,
    }
}

/// The SPD entries (Linux) or flows (OpenBSD) of a flow set, added or deleted;
/// `(platform, pid, priority)`.
pub(super) fn pfkey_flow_messages(
    fs: &FlowSet,
    adding: bool,
    (platform, pid, priority): (pfkey::Platform, u32, u32),
    next: &mut dyn FnMut() -> u32,
    out: &mut Vec<Message>,
) -> Result<(), String> {
    // af_key replaces a policy reqid above IPSEC_MANUAL_REQID_MAX (0x3fff) with one of its
    // own, which no state of ours would carry: PF_KEY reqids stay in 1..=0x3fff.
    let pf_reqid = flows_reqid(fs) % 0x3fff + 1;
    let tunnel = mode(fs.encapsulation) == xfrm::MODE_TUNNEL;
    let proto = ipproto(fs.protocol);
    for (sel, dir, src, dst) in flows(fs) {
        let dir = match (platform, dir) {
            (pfkey::Platform::Linux, xfrm::XFRM_POLICY_OUT) => pfkey::IPSEC_DIR_OUTBOUND,
            (pfkey::Platform::Linux, xfrm::XFRM_POLICY_IN) => pfkey::IPSEC_DIR_INBOUND,
            (pfkey::Platform::Linux, _) => pfkey::IPSEC_DIR_FWD,
            (pfkey::Platform::OpenBsd, xfrm::XFRM_POLICY_OUT) => pfkey::OBSD_DIRECTION_OUT,
            (pfkey::Platform::OpenBsd, xfrm::XFRM_POLICY_IN) => pfkey::OBSD_DIRECTION_IN,
            (pfkey::Platform::OpenBsd, _) => continue,
        };
        let mut b = Vec::new();
        pfkey::flow(
            &mut b,
            platform,
            adding,
            next(),
            pid,
            &pfkey::Flow {
                src: sel.src,
                src_prefix: sel.src_prefix,
                dst: sel.dst,
                dst_prefix: sel.dst_prefix,
                proto: sel.proto,
                sport: sel.sport,
                dport: sel.dport,
                dir,
                tmpl_src: src,
                tmpl_dst: dst,
                tunnel,
                sa_proto: proto,
                reqid: pf_reqid,
                priority,
            },
        )?;
        out.push(flow_message(adding, &sel, dir, b));
    }
    Ok(())
}
