//! Duplicate deliveries: the same `event_id` seen again within `time.dedup_window` of
//! event time is ignored, so at-least-once redelivery cannot push an entity over a
//! threshold. Bounded by `state.max_dedup_ids`.
//!
//! Ids are unique but for redeliveries, so nearly every lookup misses, the set is large
//! (ten minutes of traffic), and what costs is memory traffic, not hashing. So one
//! open-addressing table holds every id, and a lookup reads one cache line, loaded
//! ahead (`prefetch`). Each entry carries the epoch of its event time (a quarter of the
//! window): an id whose epoch has left the window no longer counts, and its place is
//! reused by the next insert that passes it, or cleared by a sweep that moves on a few
//! places per new id. Ids are remembered for at least the window and at most a quarter
//! more.
//!
//! This replaced generations (one table per half window, dropped whole): a new id, the
//! common case, had to be looked up in each of the three, a cache miss each, and that
//! was a sixth of detection's time (`benches/engine.rs` with the window at 0: 654 ->
//! 534 ns an event).
//!
//! An entry is the id's 48-bit fingerprint (its hash's low bits, which also place it)
//! under the low 16 bits of its epoch. The epoch is read back relative to the current
//! one, which is exact while every entry is within 2^15 epochs of it: inserts clamp
//! their epoch to 2^13 either side, the sweep passes over every entry within 2^12
//! epochs, and a larger jump of the reference empties the table.

/// Fingerprint bits; the rest of an entry is the epoch's low bits. Two ids collide
/// only if their hashes share 48 bits and a lookup probes one while looking for the
/// other: about one event in 2^46.
const FP_BITS: u32 = 48;
const FP_MASK: u64 = (1 << FP_BITS) - 1;
/// How far an id's epoch may lie from the reference (see the module doc).
const SPAN: i64 = 1 << 13;
/// Places swept per id inserted. At a load of at least 1/4 a pass takes at most half as
/// many new ids as the table holds, so forgotten ids awaiting the sweep stay a fraction
/// of the remembered ones (engine bench, state estimate: 35.1 MiB; 39.1 at 4 per id,
/// where they doubled the table; 34.1 with generations). Sweeping by event time instead
/// cost a pass per epoch whatever the table's size: with a 2s window, in a table that
/// holds the 60s of allowed lateness too, a third of detection's time.
const SWEEP_PER_INSERT: usize = 8;
/// Epochs after which a full pass is forced, if too few ids came to move the sweep.
const PASS_EPOCHS: i64 = 1 << 12;
const MIN_PLACES: usize = 16;

pub struct Dedup {
    window: i64,
    cap: usize,
    /// Event time per epoch.
    epoch_ms: i64,
    /// 0 marks an empty place; linear probing, load at most 1/2 (lookups mostly miss,
    /// and at that load they mostly stop within the line they start in).
    places: Vec<u64>,
    /// Places holding an entry, in the window or not yet swept.
    len: usize,
    /// The epoch entries are read back against: the watermark's, or the first id's
    /// before there is one.
    now: Option<i64>,
    /// Epochs before this are forgotten.
    floor: i64,
    /// Epochs after this belong to a wild clock and are swept away.
    ceiling: i64,
    /// The incremental sweep: the next place it looks at, places it owes (for ids
    /// inserted since it last ran), and the epoch its current pass began.
    sweep_at: usize,
    owed: usize,
    pass_from: i64,
    /// Ids forgotten early because `cap` was reached.
    pub evicted: u64,
}

/// Fingerprint of an id hash: never 0, so an entry is never 0.
#[inline]
fn fingerprint(id_hash: u64) -> u64 {
    match id_hash & FP_MASK {
        0 => 0x7f4a_7c15_9e37,
        f => f,
    }
}

#[inline]
fn entry(fp: u64, epoch: i64) -> u64 {
    ((epoch as u16 as u64) << FP_BITS) | fp
}

/// The entry's epoch, read back against `now` (exact within 2^15 epochs of it).
#[inline]
fn epoch_of(e: u64, now: i64) -> i64 {
    let back = (now as u16).wrapping_sub((e >> FP_BITS) as u16) as i16;
    now - back as i64
}

impl Dedup {
    pub fn new(window_ms: i64, cap: usize) -> Dedup {
        Dedup {
            window: window_ms,
            cap: cap.max(1),
            epoch_ms: (window_ms / 4).max(1),
            places: Vec::new(),
            len: 0,
            now: None,
            floor: i64::MIN,
            ceiling: i64::MAX,
            sweep_at: 0,
            owed: 0,
            pass_from: i64::MAX,
            evicted: 0,
        }
    }

    #[inline]
    fn mask(&self) -> usize {
        self.places.len().wrapping_sub(1)
    }

    fn epoch(&self, ts: i64) -> i64 {
        ts.div_euclid(self.epoch_ms)
    }

    /// Starts loading the line `seen(id_hash, ..)` will read.
    #[inline]
    pub fn prefetch(&self, id_hash: u64) {
        if !self.places.is_empty() {
            let i = fingerprint(id_hash) as usize & self.mask();
            super::prefetch(self.places[i..].as_ptr().cast());
        }
    }

    /// True when `id_hash` was already seen (at event time `ts`) within the window;
    /// records it otherwise.
    pub fn seen(&mut self, id_hash: u64, ts: i64) -> bool {
        if self.window == 0 {
            return false;
        }
        let fp = fingerprint(id_hash);
        let now = *self.now.get_or_insert(ts.div_euclid(self.epoch_ms));
        let floor = self.floor;
        // Where to put the id if it is new: the first place holding a forgotten id,
        // else the empty place that ends the run.
        let mut reuse = None;
        if !self.places.is_empty() {
            let mask = self.mask();
            let mut i = fp as usize & mask;
            loop {
                let e = self.places[i];
                if e == 0 {
                    break;
                }
                let live = epoch_of(e, now) >= floor;
                if live && e & FP_MASK == fp {
                    return true;
                }
                if !live && reuse.is_none() {
                    reuse = Some(i);
                }
                i = (i + 1) & mask;
            }
        }
        let epoch = self.epoch(ts).max(floor).max(now - SPAN).min(now + SPAN);
        let e = entry(fp, epoch);
        if let Some(i) = reuse {
            self.places[i] = e;
            return false;
        }
        if self.len >= self.cap {
            self.make_room();
        }
        if (self.len + 1) * 2 > self.places.len() {
            self.grow();
        }
        self.place(e);
        self.len += 1;
        self.owed += SWEEP_PER_INSERT;
        false
    }

    fn place(&mut self, e: u64) {
        super::index::place(&mut self.places, e);
    }

    /// Doubles the table, leaving forgotten ids behind.
    fn grow(&mut self) {
        let n = (self.places.len() * 2).max(MIN_PLACES);
        let old = std::mem::replace(&mut self.places, vec![0; n]);
        let (now, floor) = (self.now.unwrap_or(0), self.floor);
        self.len = 0;
        for e in old.into_iter().filter(|&e| e != 0) {
            if epoch_of(e, now) >= floor {
                self.place(e);
                self.len += 1;
            }
        }
        self.sweep_at = 0;
    }

    /// The cap is reached: sweeps out forgotten ids, and if that is not enough, forgets
    /// every id of the oldest epoch held (all of them when they are all of one epoch),
    /// as the oldest generation used to be dropped.
    fn make_room(&mut self) {
        self.sweep_all(self.floor, self.ceiling);
        if self.len < self.cap {
            return;
        }
        let now = self.now.unwrap_or(0);
        let oldest = self
            .places
            .iter()
            .filter(|&&e| e != 0)
            .map(|&e| epoch_of(e, now))
            .min();
        if let Some(oldest) = oldest {
            let before = self.len;
            self.sweep_all(oldest.saturating_add(1), self.ceiling);
            self.evicted += (before - self.len) as u64;
        }
    }

    /// Removes the entry at `i`; later entries of its run move back into the gap, so a
    /// lookup can still stop at the first empty place. Returns whether an entry moved
    /// into `i` (which must then be looked at again).
    fn remove_at(&mut self, hole: usize) -> bool {
        self.len -= 1;
        super::index::close_gap(&mut self.places, hole) != hole
    }

    /// Sweeps `n` places from `sweep_at`, removing ids outside `[floor, ceiling]`.
    fn sweep(&mut self, n: usize) {
        if self.places.is_empty() {
            return;
        }
        let now = self.now.unwrap_or(0);
        let mask = self.mask();
        let mut i = self.sweep_at & mask;
        for _ in 0..n.min(self.places.len()) {
            loop {
                let e = self.places[i];
                if e == 0 {
                    break;
                }
                let ep = epoch_of(e, now);
                if (self.floor..=self.ceiling).contains(&ep) || !self.remove_at(i) {
                    break;
                }
            }
            i = (i + 1) & mask;
            if i == 0 {
                self.pass_from = self.now.unwrap_or(0);
            }
        }
        self.sweep_at = i;
    }

    /// Removes every id outside `[floor, ceiling]`, which become the bounds.
    fn sweep_all(&mut self, floor: i64, ceiling: i64) {
        self.floor = floor;
        self.ceiling = ceiling;
        self.sweep_at = 0;
        self.sweep(self.places.len());
        // A removal near the end can pull the start of a run that wraps around into
        // places already swept; the run's rest, up to its empty place, is swept again.
        while !self.places.is_empty() && self.places[self.sweep_at] != 0 {
            self.sweep(1);
        }
    }

    /// Forgets ids older than `watermark - window` (whole seconds) and ids beyond
    /// `ahead` (a wild clock accepted before time was established, then outvoted), and
    /// sweeps the places owed.
    pub fn expire(&mut self, watermark: i64, ahead: i64) {
        if self.window == 0 || watermark == i64::MIN {
            return;
        }
        // Whole seconds, as before: an id is kept until its second has left the window.
        let horizon = watermark.saturating_sub(self.window).saturating_sub(999);
        let now = self.epoch(watermark);
        let floor = self.epoch(horizon);
        let ceiling = self.epoch(ahead);
        let moved = self.now.map_or(0, |n| now - n);
        if self.len > 0 && moved.abs() >= SPAN {
            // A jump of 2^13 epochs either way: every id has left the window (or time
            // went back past them all), and some could not be read back.
            self.places.fill(0);
            self.len = 0;
        } else if self.len > 0 && moved < 0 {
            // Time went back (a wild clock was outvoted): read entries against the old
            // reference once more; what was forgotten stays forgotten.
            self.sweep_all(self.floor.max(floor), ceiling);
        } else if self.len > 0 && self.now.is_some_and(|n| floor > n) {
            // A jump past the window (a quiet night): nearly every id is forgotten, and
            // the table is better emptied now than by the sweep over hours of new ids.
            self.sweep_all(floor, ceiling);
        }
        self.now = Some(now);
        self.floor = floor;
        self.ceiling = ceiling;
        if self.pass_from == i64::MAX {
            self.pass_from = now;
        }
        if now.saturating_sub(self.pass_from) >= PASS_EPOCHS {
            self.sweep_all(floor, ceiling);
            self.pass_from = now;
        } else if self.owed > 0 {
            self.sweep(self.owed);
        }
        self.owed = 0;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn heap_bytes(&self) -> usize {
        self.places.capacity() * std::mem::size_of::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn an_id_is_remembered_for_the_window_and_forgotten_within_a_quarter_more() {
        let mut d = Dedup::new(10 * MIN, 1000);
        assert!(!d.seen(7, 0));
        for m in 0..=10 {
            d.expire(m * MIN, i64::MAX);
            assert!(d.seen(7, 0), "minute {m}");
        }
        for s in 601..=753 {
            d.expire(s * 1000, i64::MAX);
        }
        assert!(!d.seen(7, 0), "forgotten by 1.25 windows and a second");
    }

    /// Epochs are kept in 16 bits and read back against the current one: steady time
    /// over many wraps must neither forget a recent id nor recall an old one.
    #[test]
    fn ids_are_judged_right_across_many_wraps_of_the_epoch_bits() {
        // A 40 ms window: 10 ms epochs, so 2^16 epochs pass in 11 minutes.
        let mut d = Dedup::new(40, 1 << 20);
        for t in (0..3 * (1i64 << 16) * 10).step_by(7) {
            d.expire(t, i64::MAX);
            let id = t as u64 * 2 + 1;
            assert!(!d.seen(id, t), "new id at {t}");
            assert!(d.seen(id, t), "just seen at {t}");
            if t >= 21 {
                let back = (t - 21) as u64 * 2 + 1;
                assert!(d.seen(back, t - 21), "21 ms back at {t}");
            }
            // Ids from 1.25 windows and a second back are forgotten, never recalled.
            if t >= 1100 {
                let old = (t - 1100) as u64 * 2 + 1;
                assert!(!d.seen(old, t - 1100), "1100 ms back at {t}");
            }
            assert!(d.len() <= 4 * 1100 / 7 + 8, "len {} at {t}", d.len());
        }
    }

    #[test]
    fn a_jump_in_event_time_forgets_what_left_the_window() {
        let mut d = Dedup::new(10 * MIN, 1000);
        for i in 0..50 {
            assert!(!d.seen(i, 0));
        }
        d.expire(0, i64::MAX);
        // A quiet night: the stream resumes eight hours later.
        let later = 8 * 60 * MIN;
        d.expire(later, i64::MAX);
        assert_eq!(d.len(), 0);
        assert!(!d.seen(3, later));
        assert!(d.seen(3, later));
        // And a little later still, ids keep their place.
        d.expire(later + MIN, i64::MAX);
        assert!(d.seen(3, later));
        assert_eq!(d.evicted, 0);
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

    proptest::proptest! {
        /// Against a model that keeps every id with the epoch it was recorded under:
        /// an id is recalled exactly while that epoch is within the window, whatever
        /// the order of ids, the pace of time, or the table's growth and sweeps.
        #[test]
        fn recalls_exactly_the_ids_still_within_the_window(
            ops in proptest::collection::vec((0u64..300, 0i64..4_000, proptest::bool::ANY), 1..2_000)
        ) {
            const WINDOW: i64 = 10_000;
            let epoch = |t: i64| t.div_euclid(WINDOW / 4);
            let mut d = Dedup::new(WINDOW, usize::MAX);
            let mut model: std::collections::HashMap<u64, i64> = Default::default();
            let mut floor = i64::MIN;
            let mut t = 1_000_000i64;
            for (id, dt, tick) in ops {
                t += dt;
                if tick {
                    let wm = t - 60_000;
                    d.expire(wm, i64::MAX);
                    floor = epoch(wm - WINDOW - 999);
                }
                // Ids spread over the fingerprint's bits, the low ones placing them.
                let h = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16;
                let want = model.get(&h).is_some_and(|&e| e >= floor);
                proptest::prop_assert_eq!(d.seen(h, t), want, "id {} at {}", id, t);
                if !want {
                    model.insert(h, epoch(t).max(floor));
                }
                let live = model.values().filter(|&&e| e >= floor).count();
                proptest::prop_assert!(d.len() >= live);
            }
        }
    }

    #[test]
    fn time_going_back_keeps_what_is_still_in_the_window_and_no_more() {
        let mut d = Dedup::new(10 * MIN, 1000);
        let t = 1_763_700_000_000;
        assert!(!d.seen(1, t - 30 * MIN));
        assert!(!d.seen(2, t));
        d.expire(t, i64::MAX);
        assert!(!d.seen(1, t - 30 * MIN), "left the window");
        // Back by a minute (a wild clock outvoted): the recent id stays.
        d.expire(t - MIN, i64::MAX);
        assert!(d.seen(2, t));
        // Back by a year: nothing can be read back safely, so nothing is kept.
        d.expire(t - 365 * 24 * 60 * MIN, i64::MAX);
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn a_zero_window_remembers_nothing() {
        let mut d = Dedup::new(0, 10);
        assert!(!d.seen(5, 1));
        assert!(!d.seen(5, 1));
        assert!(d.is_empty());
    }
}
