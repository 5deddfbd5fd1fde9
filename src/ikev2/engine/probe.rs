#![forbid(unsafe_code)]

//! For the fuzz harness (`crate::fuzzing`) and tests: the engine's table occupancy, and
//! a message sealed under an IKE SA's keys as its owner would send it (what a peer that
//! holds the keys can make, so that a fuzzer reaches the inner payload parsers).

use super::*;

/// How much of each bounded table is taken, and the counters kept alongside them,
/// recounted from the tables (they must agree).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Occupancy {
    pub ike_sas: usize,
    /// IKE SAs in each state: InitSent, AuthSent, HalfOpen, Established.
    pub states: [usize; 4],
    /// The half-open counter, and the responder SAs in `HalfOpen` counted.
    pub half_open: usize,
    pub half_open_counted: usize,
    /// The (SPIi, address) index of responder SAs, and the responder SAs that hold an
    /// entry in it.
    pub by_init: usize,
    pub by_init_held: usize,
    pub children: usize,
    /// CHILD_SAs whose IKE SA is gone.
    pub orphan_children: usize,
    /// The reassembly counter, and the IKE SAs with a reassembly under way.
    pub reassemblies: usize,
    pub reassemblies_counted: usize,
    /// Steps parked until the kernel answers.
    pub waits: usize,
    pub leases: usize,
    pub timers: usize,
    /// Requests of ours in flight or queued, over all IKE SAs.
    pub requests: usize,
}

impl Engine {
    #[doc(hidden)]
    pub fn occupancy(&self) -> Occupancy {
        let mut o = Occupancy {
            ike_sas: self.sas.len(),
            half_open: self.half_open,
            by_init: self.by_init.len(),
            children: self.children.len(),
            reassemblies: self.reassemblies,
            waits: self.waits.len(),
            leases: self.leases.len(),
            timers: self.io.timers.len(),
            ..Occupancy::default()
        };
        for (_, sa) in self.sas.iter() {
            let i = match sa.info.state {
                IkeState::InitSent => 0,
                IkeState::AuthSent => 1,
                IkeState::HalfOpen => 2,
                IkeState::Established => 3,
            };
            o.states[i] += 1;
            o.half_open_counted += usize::from(sa.info.state == IkeState::HalfOpen);
            o.by_init_held += usize::from(sa.init_index.is_some());
            o.reassemblies_counted += usize::from(sa.reassembly.is_some());
            o.requests += usize::from(sa.request.is_some()) + sa.queued.len();
        }
        o.orphan_children = self
            .children
            .iter()
            .filter(|(_, c)| self.sas.get(c.ike).is_none())
            .count();
        o
    }

    /// The message IKE SA `h` would send with `plain` (an inner payload chain whose
    /// first payload has type `first`) in an SK payload, or in one SKF payload numbered
    /// `fragment` (number, total; any values). None without keys.
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub fn seal_as(
        &mut self,
        h: Handle,
        exchange: ExchangeType,
        msgid: u32,
        response: bool,
        first: PayloadType,
        plain: &[u8],
        fragment: Option<(u16, u16)>,
    ) -> Option<Vec<u8>> {
        let Engine { sas, io, .. } = self;
        let sa = sas.get_mut(h)?;
        let sk = sender_keys(sa).ok()?;
        let hdr = sa.header(exchange, msgid, response);
        let iv = io.iv(sa, &sk);
        let mut out = vec![0u8; HEADER_LEN + 8 + sk.body_len(plain.len())];
        let mut b = MessageBuilder::new(&mut out, &hdr).ok()?;
        b.encrypted(first, fragment, |w| {
            sk.write_body(w, plain, &iv).map_err(|_| NoRoom)
        })
        .ok()?;
        let n = b.finish().ok()?;
        out.truncate(n);
        sk.seal(&mut out).ok()?;
        Some(out)
    }
}

impl Engine {
    /// Whether `data` (an IKE message without the non-ESP marker) is protected under the
    /// keys of one of our IKE SAs: its SK or SKF payload verifies. Changes nothing.
    #[doc(hidden)]
    pub fn verifies(&self, data: &[u8]) -> bool {
        let Ok(msg) = Message::parse(data) else {
            return false;
        };
        let hd = msg.header;
        let ours = if hd.initiator() { hd.spi_r } else { hd.spi_i };
        self.sas.iter().any(|(_, sa)| {
            if sa.our_spi() != ours {
                return false;
            }
            let (Some(keys), Some(suite)) = (sa.keys.as_ref(), sa.info.suite) else {
                return false;
            };
            let Ok(sk) = SkKeys::for_sender(&suite, keys, hd.initiator()) else {
                return false;
            };
            let mut copy = data.to_vec();
            sk.open(&mut copy).is_ok()
        })
    }
}
