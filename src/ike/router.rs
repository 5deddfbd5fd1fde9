//! Finding what a datagram belongs to in constant time: a [`Table`] is a [`Slab`] with
//! a hash index over one key of its entries (an ISAKMP SA's cookies, an exchange's
//! initiator cookie and message ID), kept in step by `insert` and `remove`.
//!
//! The index is sized once, with the table (twice its capacity, so that the hash map
//! rehashes in place and never allocates after startup), and hashes with SipHash keyed
//! by the caller: initiator cookies are chosen by the peer, and a keyless hash would let
//! anyone fill one bucket. Several entries may share a key (two peers choosing the same
//! cookie); they form a chain through a side array, and `lookup` walks it, so callers
//! still check everything else they need (remote address, responder cookie).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use super::sa::{Handle, Slab};

/// SipHash-2-4 with the engine's key (std's `SipHasher` is the one keyed SipHash the
/// standard library exposes; it is deprecated only in favour of `DefaultHasher`, which
/// cannot be keyed).
#[derive(Clone, Copy, Debug, Default)]
pub struct Keyed(pub [u8; 16]);

impl BuildHasher for Keyed {
    #[allow(deprecated)]
    type Hasher = std::hash::SipHasher;

    #[allow(deprecated)]
    fn build_hasher(&self) -> Self::Hasher {
        let (a, b) = self.0.split_at(8);
        let k = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap_or_default());
        std::hash::SipHasher::new_with_keys(k(a), k(b))
    }
}

/// A slab of `T` indexed by `key(&T)`; the key must not change while the entry is in.
pub struct Table<T, K> {
    slab: Slab<T>,
    key: fn(&T) -> K,
    heads: HashMap<K, Handle, Keyed>,
    /// The next entry with the same key, by slot index.
    next: Vec<Option<Handle>>,
}

impl<T, K: Hash + Eq + Copy> Table<T, K> {
    pub fn with_capacity(n: usize, key: fn(&T) -> K, hash_key: Keyed) -> Table<T, K> {
        Table {
            slab: Slab::with_capacity(n),
            key,
            heads: HashMap::with_capacity_and_hasher(2 * n, hash_key),
            next: Vec::with_capacity(n),
        }
    }

    /// Stores `v`; `None` when the table is full.
    pub fn insert(&mut self, v: T) -> Option<Handle> {
        let k = (self.key)(&v);
        let h = self.slab.insert(v)?;
        let i = h.idx as usize;
        if self.next.len() <= i {
            self.next.resize(i + 1, None);
        }
        self.next[i] = self.heads.insert(k, h);
        Some(h)
    }

    pub fn remove(&mut self, h: Handle) -> Option<T> {
        let v = self.slab.remove(h)?;
        let k = (self.key)(&v);
        let after = self.next[h.idx as usize].take();
        match self.heads.get(&k).copied() {
            Some(head) if head == h => match after {
                Some(n) => {
                    self.heads.insert(k, n);
                }
                None => {
                    self.heads.remove(&k);
                }
            },
            Some(mut cur) => {
                // Unlink from the middle of the chain.
                while let Some(n) = self.next[cur.idx as usize] {
                    if n == h {
                        self.next[cur.idx as usize] = after;
                        break;
                    }
                    cur = n;
                }
            }
            None => {}
        }
        Some(v)
    }

    /// The entries whose key is `k` (most recent first).
    pub fn lookup(&self, k: &K) -> impl Iterator<Item = Handle> + '_ {
        let mut cur = self.heads.get(k).copied();
        std::iter::from_fn(move || {
            let h = cur?;
            cur = self.next.get(h.idx as usize).copied().flatten();
            Some(h)
        })
    }

    /// The first entry with key `k` that `f` accepts.
    pub fn find_by(&self, k: &K, mut f: impl FnMut(&T) -> bool) -> Option<Handle> {
        self.lookup(k)
            .find(|&h| self.slab.get(h).is_some_and(&mut f))
    }

    pub fn get(&self, h: Handle) -> Option<&T> {
        self.slab.get(h)
    }

    pub fn get_mut(&mut self, h: Handle) -> Option<&mut T> {
        self.slab.get_mut(h)
    }

    pub fn iter(&self) -> impl Iterator<Item = (Handle, &T)> {
        self.slab.iter()
    }

    pub fn find(&self, f: impl FnMut(&T) -> bool) -> Option<Handle> {
        self.slab.find(f)
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.slab.capacity()
    }
}

impl Table<super::sa::IpsecSa, u64> {
    /// The IPsec SAs for the same flows as `sa` (the same connection, protocol and client
    /// IDs): its predecessors and replacements, and `sa` itself if it is in.
    pub fn same_flows<'a>(
        &'a self,
        sa: &'a super::sa::IpsecSa,
    ) -> impl Iterator<Item = (Handle, &'a super::sa::IpsecSa)> + 'a {
        self.lookup(&sa.flow_key())
            .filter_map(move |h| Some((h, self.get(h)?)))
            .filter(move |(_, o)| o.same_flows(sa))
    }
}

impl Table<super::sa::IsakmpSa, ([u8; 8], [u8; 8])> {
    /// The ISAKMP SA with these cookies.
    pub fn by_cookies(&self, icookie: [u8; 8], rcookie: [u8; 8]) -> Option<Handle> {
        self.lookup(&(icookie, rcookie)).next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_follow_inserts_and_removes_with_shared_keys() {
        let mut t: Table<(u8, u32), u8> = Table::with_capacity(8, |v| v.0, Keyed([7; 16]));
        let a = t.insert((1, 10)).unwrap();
        let b = t.insert((2, 20)).unwrap();
        let c = t.insert((1, 30)).unwrap();
        let d = t.insert((1, 40)).unwrap();
        assert_eq!(t.lookup(&1).collect::<Vec<_>>(), vec![d, c, a]);
        assert_eq!(t.find_by(&1, |v| v.1 == 10), Some(a));
        assert_eq!(t.find_by(&2, |v| v.1 == 10), None);
        // Middle, head and tail of a chain.
        t.remove(c);
        assert_eq!(t.lookup(&1).collect::<Vec<_>>(), vec![d, a]);
        t.remove(d);
        assert_eq!(t.lookup(&1).collect::<Vec<_>>(), vec![a]);
        t.remove(a);
        assert_eq!(t.lookup(&1).count(), 0);
        assert_eq!(t.lookup(&2).collect::<Vec<_>>(), vec![b]);
        // A reused slot carries no stale link.
        let e = t.insert((3, 50)).unwrap();
        assert_eq!(t.lookup(&3).collect::<Vec<_>>(), vec![e]);
        assert_eq!(t.len(), 2);
        // Full: refused, index untouched.
        for i in 0..6 {
            t.insert((9, i));
        }
        assert_eq!(t.insert((4, 0)), None);
        assert_eq!(t.lookup(&4).count(), 0);
    }
}
