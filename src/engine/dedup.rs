//! Duplicate deliveries: the same `event_id` seen again within `time.dedup_window` of
//! event time is ignored, so at-least-once redelivery cannot push an entity over a
//! threshold. Bounded by `state.max_dedup_ids`.
//!
//! Ids are unique but for redeliveries, so the set is large (ten minutes of traffic),
//! and what costs is memory traffic, not hashing. Ids are therefore kept in
//! generations: each a hash set recording ids for half a window of stream time, dropped
//! whole once its newest id has left the window. Forgetting an id costs nothing (an
//! arrival-ordered queue of ids, removed one by one, cost a second cache miss per
//! event to find each in the set again). Ids are remembered for at least the window
//! and at most one and a half windows.

use std::collections::VecDeque;

use super::index::HashIndex;

struct Generation {
    ids: HashIndex,
    /// Watermark when it began recording.
    opened: i64,
    /// Newest event time recorded (ms).
    newest: i64,
}

pub struct Dedup {
    window: i64,
    cap: usize,
    /// Oldest first; ids are recorded in the last.
    gens: VecDeque<Generation>,
    len: usize,
    /// Ids forgotten early because `cap` was reached.
    pub evicted: u64,
}

/// The index keeps 0 for an empty place, so an id hashing to 0 is filed under an
/// arbitrary other value (one chance in 2^64 of taking one id for another).
#[inline]
fn nonzero(h: u64) -> u64 {
    if h == 0 { 0x9e37_79b9_7f4a_7c15 } else { h }
}

impl Dedup {
    pub fn new(window_ms: i64, cap: usize) -> Dedup {
        Dedup {
            window: window_ms,
            cap: cap.max(1),
            gens: VecDeque::new(),
            len: 0,
            evicted: 0,
        }
    }

    /// Starts loading the lines `seen(id_hash, ..)` will read, one per generation.
    #[inline]
    pub fn prefetch(&self, id_hash: u64) {
        let h = nonzero(id_hash);
        for g in &self.gens {
            g.ids.prefetch(h);
        }
    }

    /// True when `id_hash` was already seen; records it otherwise.
    pub fn seen(&mut self, id_hash: u64, ts: i64) -> bool {
        if self.window == 0 {
            return false;
        }
        let id_hash = nonzero(id_hash);
        // Newest first: a redelivery usually follows soon after.
        if self
            .gens
            .iter()
            .rev()
            .any(|g| g.ids.find(id_hash, |h| h == id_hash).is_some())
        {
            return true;
        }
        if self.len >= self.cap {
            self.drop_oldest();
        }
        if self.gens.is_empty() {
            self.gens.push_back(Generation {
                ids: HashIndex::sparse(),
                opened: ts,
                newest: ts,
            });
        }
        let g = self.gens.back_mut().expect("one generation at least");
        g.ids.insert(id_hash);
        g.newest = g.newest.max(ts);
        self.len += 1;
        false
    }

    fn drop_oldest(&mut self) {
        if let Some(g) = self.gens.pop_front() {
            self.len -= g.ids.len();
            self.evicted += g.ids.len() as u64;
        }
    }

    /// Forgets the generations whose ids are all older than `watermark - window`, and
    /// starts a new one every half window. A generation holding an id beyond `ahead` (a
    /// wild clock accepted before time was established, then outvoted) is dropped too:
    /// it would otherwise never expire.
    pub fn expire(&mut self, watermark: i64, ahead: i64) {
        if self.window == 0 {
            return;
        }
        // Whole seconds, as before: an id is kept until its second has left the window.
        let horizon = watermark.saturating_sub(self.window).saturating_sub(999);
        let mut len = self.len;
        self.gens.retain(|g| {
            let keep = g.newest >= horizon && g.newest <= ahead;
            if !keep {
                len -= g.ids.len();
            }
            keep
        });
        self.len = len;
        let span = (self.window / 2).max(1);
        if self
            .gens
            .back()
            .is_some_and(|g| watermark.saturating_sub(g.opened) >= span)
        {
            self.gens.push_back(Generation {
                ids: HashIndex::sparse(),
                opened: watermark,
                newest: i64::MIN,
            });
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn heap_bytes(&self) -> usize {
        self.gens
            .iter()
            .map(|g| g.ids.capacity() * std::mem::size_of::<u64>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn an_id_is_remembered_for_the_window_and_forgotten_within_one_and_a_half() {
        let mut d = Dedup::new(10 * MIN, 1000);
        assert!(!d.seen(7, 0));
        for m in 0..=10 {
            d.expire(m * MIN, i64::MAX);
            assert!(d.seen(7, m * MIN), "minute {m}");
        }
        for m in 11..=16 {
            d.expire(m * MIN, i64::MAX);
        }
        assert!(!d.seen(7, 16 * MIN), "forgotten by 1.5 windows");
    }

    #[test]
    fn the_cap_forgets_the_oldest_generation() {
        let mut d = Dedup::new(10 * MIN, 100);
        for i in 0..60 {
            assert!(!d.seen(i, 0));
        }
        d.expire(6 * MIN, i64::MAX);
        for i in 60..150 {
            assert!(!d.seen(i, 6 * MIN));
        }
        assert!(d.len() <= 100);
        assert_eq!(d.evicted, 60);
        assert!(d.seen(149, 6 * MIN));
        assert!(!d.seen(0, 6 * MIN));
    }

    #[test]
    fn ids_beyond_the_ahead_bound_do_not_pin_their_generation() {
        let mut d = Dedup::new(10 * MIN, 1000);
        assert!(!d.seen(1, 4_000_000_000_000));
        assert!(!d.seen(2, 1000));
        d.expire(1000, 2 * MIN);
        assert_eq!(d.len(), 0);
        assert!(!d.seen(2, 1000));
    }

    #[test]
    fn a_zero_window_remembers_nothing() {
        let mut d = Dedup::new(0, 10);
        assert!(!d.seen(5, 1));
        assert!(!d.seen(5, 1));
        assert!(d.is_empty());
    }
}
