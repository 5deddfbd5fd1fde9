//! A hashed timer wheel: O(1) insert and cancel, generation-checked handles.
//!
//! This is a pure data structure. It never reads a clock: every call takes `now` as a
//! [`Time`], which the event loop derives from CLOCK_MONOTONIC (and tests from a virtual
//! clock). Entries live in a slab reserved once at construction (`capacity`) and filled in as
//! the number of armed timers first reaches each index (so the reserved but never used part
//! of a large wheel costs no memory until it is needed), linked into
//! `SLOTS` doubly-linked slot lists by deadline tick. Deadlines further away than one
//! revolution simply stay in their slot until the cursor has passed them enough times; the
//! stored tick tells whether an entry is due in the revolution being looked at.
//!
//! The earliest deadline comes from a min-heap of (deadline, entry, generation) beside the
//! wheel, cleaned lazily: a cancelled or fired entry's heap item is recognised by its
//! generation and dropped when it reaches the top, and the heap is rebuilt from the live
//! entries when it fills (after at least `capacity` insertions). So asking for the next
//! deadline costs O(log n) however many far-future timers (SA lifetimes) wait; walking the
//! wheel for it cost O(n) once nothing was due within a revolution.
//!
//! A [`TimerHandle`] carries the slot index and a generation. Cancelling or expiring an entry
//! bumps the generation, so a stale handle (say, held by an exchange that was freed and whose
//! slot was reused) can never cancel somebody else's timer. Unlike isakmpd's `timer.c`, which
//! keeps a sorted list and `void *` arguments, payloads here are typed and `Copy`.

#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

/// Milliseconds on the daemon's monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub u64);

impl Time {
    pub const fn from_secs(s: u64) -> Time {
        Time(s.saturating_mul(1000))
    }
    pub const fn millis(self) -> u64 {
        self.0
    }
    pub const fn add_millis(self, ms: u64) -> Time {
        Time(self.0.saturating_add(ms))
    }
    pub const fn add_secs(self, s: u64) -> Time {
        self.add_millis(s.saturating_mul(1000))
    }
    /// Milliseconds from `self` until `later`, zero if `later` is not later.
    pub const fn until(self, later: Time) -> u64 {
        later.0.saturating_sub(self.0)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// Width of one wheel slot in milliseconds.
pub const TICK_MS: u64 = 10;
/// Slots in one revolution (10.24 s at 10 ms).
pub const SLOTS: usize = 1024;

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerHandle {
    idx: u32,
    gen: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timer table full")
    }
}

#[derive(Clone)]
struct Entry<T> {
    deadline: Time,
    /// The tick of the slot this entry sits in (deadline tick, or the cursor if that was
    /// already past at insertion).
    tick: u64,
    prev: u32,
    next: u32,
    gen: u32,
    payload: Option<T>,
}

pub struct TimerWheel<T: Copy> {
    /// Grows up to `cap` without reallocating; freed entries go to the `free` list.
    entries: Vec<Entry<T>>,
    cap: usize,
    heads: Vec<u32>,
    free: u32,
    /// The last tick expired; slots before it (in this revolution) hold no due entries.
    cursor: u64,
    len: usize,
    /// Scratch space for `expire`, allocated once so firing timers never allocates.
    scratch: Vec<(Time, u32)>,
    /// (deadline, entry, generation) of every armed timer, and of some gone ones.
    heap: BinaryHeap<Reverse<(Time, u32, u32)>>,
}

impl<T: Copy> TimerWheel<T> {
    /// A wheel holding at most `capacity` timers, all memory reserved now (and written only
    /// as timers are armed).
    pub fn new(capacity: usize, now: Time) -> Self {
        let capacity = capacity.min(NIL as usize - 1);
        TimerWheel {
            // Reserved, not written: a large wheel's pages stay untouched until used.
            entries: Vec::with_capacity(capacity),
            cap: capacity,
            heads: vec![NIL; SLOTS],
            free: NIL,
            cursor: now.0 / TICK_MS,
            len: 0,
            scratch: Vec::with_capacity(capacity),
            heap: BinaryHeap::with_capacity(capacity + capacity / 4 + 16),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Arms a timer for `deadline`; a deadline in the past fires at the next `expire`.
    pub fn insert(&mut self, deadline: Time, payload: T) -> Result<TimerHandle, Full> {
        let mut idx = self.free;
        if idx == NIL {
            if self.entries.len() == self.cap {
                return Err(Full);
            }
            // Within the reserved capacity: never reallocates.
            idx = self.entries.len() as u32;
            self.entries.push(Entry {
                deadline: Time(0),
                tick: 0,
                prev: NIL,
                next: NIL,
                gen: 0,
                payload: None,
            });
        }
        let tick = (deadline.0 / TICK_MS).max(self.cursor);
        let slot = (tick % SLOTS as u64) as usize;
        let head = self.heads[slot];
        let e = &mut self.entries[idx as usize];
        self.free = e.next;
        e.deadline = deadline;
        e.tick = tick;
        e.prev = NIL;
        e.next = head;
        e.payload = Some(payload);
        let gen = e.gen;
        if head != NIL {
            self.entries[head as usize].prev = idx;
        }
        self.heads[slot] = idx;
        self.len += 1;
        if self.heap.len() == self.heap.capacity() {
            self.rebuild_heap();
        }
        self.heap.push(Reverse((deadline, idx, gen)));
        Ok(TimerHandle { idx, gen })
    }

    /// Disarms a timer and returns its payload; `None` if it already fired or was cancelled.
    pub fn cancel(&mut self, h: TimerHandle) -> Option<T> {
        let e = self.entries.get(h.idx as usize)?;
        if e.gen != h.gen || e.payload.is_none() {
            return None;
        }
        Some(self.remove(h.idx))
    }

    /// The deadline of an armed timer.
    pub fn deadline(&self, h: TimerHandle) -> Option<Time> {
        let e = self.entries.get(h.idx as usize)?;
        (e.gen == h.gen && e.payload.is_some()).then_some(e.deadline)
    }

    fn remove(&mut self, idx: u32) -> T {
        let (prev, next, tick) = {
            let e = &self.entries[idx as usize];
            (e.prev, e.next, e.tick)
        };
        if prev != NIL {
            self.entries[prev as usize].next = next;
        } else {
            self.heads[(tick % SLOTS as u64) as usize] = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        let e = &mut self.entries[idx as usize];
        e.gen = e.gen.wrapping_add(1);
        e.prev = NIL;
        e.next = self.free;
        self.free = idx;
        self.len -= 1;
        // NOTE(unwrap): callers only remove linked entries, which always hold a payload.
        e.payload
            .take()
            .expect("linked timer entry without payload")
    }

    /// Removes every timer whose deadline is at or before `now`, in deadline order, and
    /// hands each to `fire`.
    pub fn expire(&mut self, now: Time, mut fire: impl FnMut(TimerHandle, T)) {
        let target = now.0 / TICK_MS;
        if target < self.cursor {
            return; // time never runs backwards here; ignore a confused caller
        }
        // Collect what is due slot by slot; within a slot, order by deadline.
        let span = (target - self.cursor + 1).min(SLOTS as u64);
        let mut due = std::mem::take(&mut self.scratch);
        due.clear();
        for d in 0..span {
            let slot = ((self.cursor + d) % SLOTS as u64) as usize;
            let mut i = self.heads[slot];
            while i != NIL {
                let e = &self.entries[i as usize];
                if e.deadline <= now {
                    due.push((e.deadline, i));
                }
                i = e.next;
            }
        }
        self.cursor = target;
        due.sort_unstable_by_key(|&(t, i)| (t, i));
        for &(_, idx) in due.iter() {
            let gen = self.entries[idx as usize].gen;
            let payload = self.remove(idx);
            fire(TimerHandle { idx, gen }, payload);
        }
        self.scratch = due;
    }

    /// The earliest deadline of any armed timer (items of timers that are gone leave the
    /// heap's top on the way).
    pub fn next_deadline(&mut self) -> Option<Time> {
        while let Some(&Reverse((deadline, idx, gen))) = self.heap.peek() {
            let e = &self.entries[idx as usize];
            if e.gen == gen && e.payload.is_some() {
                return Some(deadline);
            }
            self.heap.pop();
        }
        None
    }

    /// The heap from the live entries only (it held as many gone ones as live ones, or
    /// more).
    fn rebuild_heap(&mut self) {
        self.heap.clear();
        for (i, e) in self.entries.iter().enumerate() {
            if e.payload.is_some() {
                self.heap.push(Reverse((e.deadline, i as u32, e.gen)));
            }
        }
    }

    /// Every armed timer as (deadline, payload), for reports.
    pub fn iter(&self) -> impl Iterator<Item = (Time, T)> + '_ {
        self.entries
            .iter()
            .filter_map(|e| e.payload.map(|p| (e.deadline, p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(w: &mut TimerWheel<u32>, now: Time) -> Vec<u32> {
        let mut out = Vec::new();
        w.expire(now, |_, p| out.push(p));
        out
    }

    #[test]
    fn fires_in_deadline_order() {
        let mut w = TimerWheel::new(16, Time(0));
        w.insert(Time(500), 5).unwrap();
        w.insert(Time(100), 1).unwrap();
        w.insert(Time(105), 2).unwrap(); // same slot as 100
        w.insert(Time(300), 3).unwrap();
        assert_eq!(w.next_deadline(), Some(Time(100)));
        assert_eq!(drain(&mut w, Time(99)), Vec::<u32>::new());
        assert_eq!(drain(&mut w, Time(104)), vec![1]);
        assert_eq!(w.next_deadline(), Some(Time(105)));
        assert_eq!(drain(&mut w, Time(1000)), vec![2, 3, 5]);
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn cancel_and_stale_handles() {
        let mut w = TimerWheel::new(2, Time(0));
        let a = w.insert(Time(50), 1).unwrap();
        let b = w.insert(Time(60), 2).unwrap();
        assert_eq!(w.insert(Time(70), 3), Err(Full));
        assert_eq!(w.cancel(a), Some(1));
        assert_eq!(w.cancel(a), None, "double cancel");
        // The freed slot is reused; the old handle must not reach the new timer.
        let c = w.insert(Time(80), 4).unwrap();
        assert_eq!(w.cancel(a), None);
        assert_eq!(w.deadline(a), None);
        assert_eq!(w.deadline(c), Some(Time(80)));
        assert_eq!(drain(&mut w, Time(100)), vec![2, 4]);
        assert_eq!(w.cancel(b), None, "fired timers cannot be cancelled");
        assert_eq!(w.cancel(c), None);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn past_deadline_fires_at_once() {
        let mut w = TimerWheel::new(4, Time(10_000));
        w.insert(Time(5), 7).unwrap();
        assert_eq!(w.next_deadline(), Some(Time(5)));
        assert_eq!(drain(&mut w, Time(10_000)), vec![7]);
    }

    #[test]
    fn wraps_around_the_wheel() {
        let rev = TICK_MS * SLOTS as u64;
        let mut w = TimerWheel::new(8, Time(0));
        // Same slot, different revolutions.
        w.insert(Time(rev + 20), 2).unwrap();
        w.insert(Time(20), 1).unwrap();
        w.insert(Time(3 * rev + 20), 3).unwrap();
        assert_eq!(w.next_deadline(), Some(Time(20)));
        assert_eq!(drain(&mut w, Time(30)), vec![1]);
        assert_eq!(w.next_deadline(), Some(Time(rev + 20)));
        // Step through time in small increments across the wrap.
        let mut t = 30;
        let mut fired = Vec::new();
        while t < 2 * rev {
            t += 7;
            w.expire(Time(t), |_, p| fired.push((t, p)));
        }
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].1, 2);
        assert!(fired[0].0 >= rev + 20 && fired[0].0 < rev + 27);
        assert_eq!(w.next_deadline(), Some(Time(3 * rev + 20)));
        assert_eq!(drain(&mut w, Time(3 * rev + 19)), Vec::<u32>::new());
        assert_eq!(drain(&mut w, Time(3 * rev + 20)), vec![3]);
    }

    #[test]
    fn far_future_and_big_jumps() {
        let mut w = TimerWheel::new(8, Time(1_000));
        let day = Time::from_secs(86_400 * 365);
        w.insert(day, 9).unwrap();
        w.insert(Time(u64::MAX), 10).unwrap();
        w.insert(Time(2_000), 1).unwrap();
        assert_eq!(w.next_deadline(), Some(Time(2_000)));
        assert_eq!(drain(&mut w, Time(2_000)), vec![1]);
        assert_eq!(w.next_deadline(), Some(day));
        // One jump of many revolutions visits every slot once and fires only what is due.
        assert_eq!(drain(&mut w, Time(day.0 - 1)), Vec::<u32>::new());
        assert_eq!(drain(&mut w, day), vec![9]);
        assert_eq!(w.next_deadline(), Some(Time(u64::MAX)));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn next_deadline_matches_a_sorted_model() {
        // A small deterministic pseudo-random workload against a plain sorted model.
        let mut w = TimerWheel::new(64, Time(0));
        let mut model: Vec<(Time, u32, TimerHandle)> = Vec::new();
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut now = Time(0);
        for step in 0..5_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 4 {
                0 | 1 if model.len() < 64 => {
                    let d = now.add_millis(x % 40_000);
                    let h = w.insert(d, step).unwrap();
                    model.push((d, step, h));
                }
                2 if !model.is_empty() => {
                    let (_, p, h) = model.swap_remove((x as usize / 4) % model.len());
                    assert_eq!(w.cancel(h), Some(p));
                }
                _ => {
                    now = now.add_millis(x % 3_000);
                    let mut fired = Vec::new();
                    w.expire(now, |_, p| fired.push(p));
                    let mut want: Vec<(Time, u32)> = model
                        .iter()
                        .filter(|m| m.0 <= now)
                        .map(|m| (m.0, m.1))
                        .collect();
                    want.sort();
                    model.retain(|m| m.0 > now);
                    let want: Vec<u32> = want.into_iter().map(|m| m.1).collect();
                    let mut got = fired.clone();
                    got.sort();
                    let mut w2 = want.clone();
                    w2.sort();
                    assert_eq!(got, w2, "step {step}");
                }
            }
            assert_eq!(w.len(), model.len());
            assert_eq!(
                w.next_deadline(),
                model.iter().map(|m| m.0).min(),
                "step {step}"
            );
        }
    }
}
