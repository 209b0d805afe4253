//! Distinct members (accounts per IP, IPs per account) within a sliding window.
//!
//! Small sets are exact: each member with the first and last times it was seen, so
//! members fall out of the window one by one and a threshold like "≥ 10 distinct accounts
//! in 10 m" is decided exactly. Past `exact_cap` members (well above any threshold, so
//! decisions stay exact) the set keeps only the most recent members, for samples, and the
//! count comes from HyperLogLog++ sketches, one per time slice of the window, merged when
//! asked; the union of the window last asked is kept and updated as members arrive.
//! Sketches use the crate's fixed-seed hasher, so they serialize and merge across
//! partitions and restarts.
//!
//! A set that serves two windows (an IP's failing accounts: 10 minutes for
//! `credential_stuffing`, a day for `credential_stuffing_slow`) keeps a second ring of
//! slices sized for the shorter one, over that span only: a day's 3-hour slices would
//! count, in a 10-minute window, every account the IP failed on hours before.

use std::collections::VecDeque;

use hyperloglogplus::{HyperLogLog, HyperLogLogPF, HyperLogLogPlus};

use crate::hash::FixedState;

/// 2^12 registers: about 1.6 % standard error, 3 KiB dense, far less while sparse.
pub const HLL_PRECISION: u8 = 12;

/// Slices per window for the sketch ring; the sketched count is exact in time to
/// 1/SLICES of the window.
const SLICES: i64 = 8;

pub type Hll = HyperLogLogPlus<u64, FixedState>;

pub fn new_hll() -> Hll {
    HyperLogLogPlus::new(HLL_PRECISION, FixedState).expect("precision in range")
}

/// Dense registers only, for service-wide slices that overflowed: every failure of a
/// campaign lands in one, and HLL++'s sparse mode re-encodes itself every few dozen
/// inserts, which costs more than the rest of the engine at campaign volumes.
pub type DenseHll = HyperLogLogPF<u64, FixedState>;

pub fn new_dense_hll() -> DenseHll {
    HyperLogLogPF::new(HLL_PRECISION, FixedState).expect("precision in range")
}

#[derive(Clone, Debug, Default)]
pub struct DistinctWindow {
    /// (member hash, first seen, last seen), unordered. Both ends, not only the last:
    /// when partitions are read far apart a member's later failures can arrive before
    /// its earlier ones, and with the last time alone a window ending before that later
    /// time would not count it, so what fired depended on the order partitions were
    /// fetched in.
    members: Vec<(u64, i64, i64)>,
    sketch: Option<Box<Sketches>>,
}

/// The sketches of an overflowed set.
#[derive(Clone, Debug)]
struct Sketches {
    /// Slices of 1/SLICES of the longest window the set serves.
    coarse: SketchRing,
    /// Slices of 1/SLICES of the shortest, kept over that span only; `None` when the set
    /// serves one window.
    fine: Option<SketchRing>,
    short: i64,
    /// The fine ring holds every member seen after this (older slices were dropped).
    fine_from: i64,
}

#[derive(Clone, Debug)]
struct SketchRing {
    slice_ms: i64,
    slices: VecDeque<(i64, Hll)>,
    /// The union of the last window counted, kept up to date as members arrive: a set
    /// counted at every failure (an IP stuffing thousands of accounts) merged up to
    /// eight sketches per event, 60 % of the engine's time in such a flood.
    union: Option<Box<Union>>,
}

/// The union of the slices starting from `lo` to `hi`, and its count while no member
/// has been added since.
#[derive(Clone, Debug)]
struct Union {
    lo: i64,
    hi: i64,
    hll: Hll,
    count: Option<u64>,
}

impl DistinctWindow {
    /// Records `member` at `t`. `horizon` forgets members last seen before it; `window`
    /// (the longest the set serves) and `short` (the shortest) size sketch slices;
    /// `exact_cap` bounds the exact set.
    pub fn insert(
        &mut self,
        member: u64,
        t: i64,
        horizon: i64,
        (window, short): (i64, i64),
        exact_cap: usize,
    ) {
        if let Some(m) = self.members.iter_mut().find(|m| m.0 == member) {
            m.1 = m.1.min(t);
            m.2 = m.2.max(t);
        } else {
            if self.members.len() >= exact_cap {
                self.prune(horizon);
            }
            if self.members.len() >= exact_cap {
                self.overflow(window, short);
                let oldest = (0..self.members.len())
                    .min_by_key(|&i| self.members[i].2)
                    .expect("non-empty");
                self.members.swap_remove(oldest);
            }
            if self.members.len() == self.members.capacity() {
                // Grow one at a time from 1: `Vec` would start at 4 (64 bytes), and most
                // sets (an IP's failing accounts) only ever hold one or two members.
                self.members
                    .reserve_exact(self.members.capacity().clamp(1, 16));
            }
            self.members.push((member, t, t));
        }
        if let Some(s) = self.sketch.as_mut() {
            s.insert(member, t, horizon);
        }
    }

    fn overflow(&mut self, window: i64, short: i64) {
        if self.sketch.is_some() {
            return;
        }
        let ring = |w: i64| SketchRing {
            slice_ms: (w / SLICES).max(1),
            slices: VecDeque::new(),
            union: None,
        };
        let mut s = Sketches {
            coarse: ring(window),
            fine: (short < window).then(|| ring(short)),
            short,
            fine_from: i64::MIN,
        };
        for &(m, _, last) in &self.members {
            s.insert(m, last, i64::MIN);
        }
        self.sketch = Some(Box::new(s));
    }

    pub fn prune(&mut self, horizon: i64) {
        self.members.retain(|m| m.2 >= horizon);
        if self.members.is_empty() {
            self.members = Vec::new();
        }
        if let Some(s) = self.sketch.as_mut() {
            s.prune(horizon);
            if s.coarse.slices.is_empty() {
                self.sketch = None;
            }
        }
    }

    /// Exact count of members seen in `(end - w, end]`, unless the set overflowed, in
    /// which case the sketch estimate (never less than what the exact set still holds).
    ///
    /// The exact set holds the most recently seen members, so when it still holds one
    /// seen before the window, every member it dropped was older still and the exact
    /// count is the true one; only otherwise is the sketch needed. That lets one set
    /// serve a short window and a long one (10 minutes and a day) without the day's
    /// coarse sketch slices inflating the short count.
    pub fn count(&mut self, end: i64, w: i64) -> u64 {
        let exact = self
            .members
            .iter()
            .filter(|m| seen_within(m, end, w))
            .count() as u64;
        let complete = self.members.iter().any(|m| m.2 <= end - w);
        match self.sketch.as_mut() {
            Some(s) if !complete => s.count(end, w).max(exact),
            _ => exact,
        }
    }

    /// Cheap lower bound on the count, for deciding whether to look closer.
    pub fn exact_len(&self) -> usize {
        self.members.len()
    }

    pub fn is_sketched(&self) -> bool {
        self.sketch.is_some()
    }

    /// Up to `k` members seen in the window, most recent first (ties by hash, for
    /// determinism).
    pub fn recent(&self, end: i64, w: i64, k: usize) -> Vec<u64> {
        let mut v: Vec<(u64, i64)> = self
            .members
            .iter()
            .filter(|m| seen_within(m, end, w))
            .map(|m| (m.0, m.2.min(end)))
            .collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter().take(k).map(|m| m.0).collect()
    }

    pub fn contains(&self, member: u64) -> bool {
        self.members.iter().any(|m| m.0 == member)
    }

    pub fn heap_bytes(&self) -> usize {
        self.members.capacity() * std::mem::size_of::<(u64, i64, i64)>()
            + self.sketch.as_ref().map_or(0, |s| {
                let ring = |r: &SketchRing| r.slices.len() + usize::from(r.union.is_some());
                (ring(&s.coarse) + s.fine.as_ref().map_or(0, ring)) * 4096 + 96
            })
    }
}

/// Whether a member was seen in `(end - w, end]`, judged from its first and last times:
/// either is inside, or they straddle the window (an IP failing before and after it,
/// and, with only its ends kept, taken to have failed within it too).
#[inline]
fn seen_within(m: &(u64, i64, i64), end: i64, w: i64) -> bool {
    let inside = |t: i64| t > end - w && t <= end;
    inside(m.1) || inside(m.2) || (m.1 <= end - w && m.2 > end)
}

impl Sketches {
    fn insert(&mut self, member: u64, t: i64, horizon: i64) {
        self.coarse.insert(member, t, horizon);
        if let Some(f) = self.fine.as_mut() {
            f.insert(member, t, horizon.max(self.fine_from));
            // Over the short span behind the newest slice only: the long window's worth
            // of short slices would cost a sketch per slice.
            let newest = f.slices.back().map_or(i64::MIN, |s| s.0);
            let from = newest.saturating_sub(self.short);
            if from > self.fine_from {
                self.fine_from = from;
                f.prune(from);
            }
        }
    }

    fn prune(&mut self, horizon: i64) {
        self.coarse.prune(horizon);
        if let Some(f) = self.fine.as_mut() {
            if horizon > self.fine_from {
                self.fine_from = horizon;
                f.prune(horizon);
            }
        }
    }

    /// From the fine ring when it serves the window and still covers it (a window far
    /// behind, read late from a partition, falls back to the coarse one).
    fn count(&mut self, end: i64, w: i64) -> u64 {
        match self.fine.as_mut() {
            Some(f) if w <= self.short && end.saturating_sub(w) >= self.fine_from => {
                f.count(end, w)
            }
            _ => self.coarse.count(end, w),
        }
    }
}

impl SketchRing {
    fn insert(&mut self, member: u64, t: i64, horizon: i64) {
        let start = t.div_euclid(self.slice_ms) * self.slice_ms;
        if start < horizon.saturating_sub(self.slice_ms) {
            return;
        }
        let pos = self.slices.partition_point(|(s, _)| *s < start);
        if pos == self.slices.len() || self.slices[pos].0 != start {
            self.slices.insert(pos, (start, new_hll()));
        }
        self.slices[pos].1.insert(&member);
        if let Some(u) = self.union.as_mut() {
            if (u.lo..=u.hi).contains(&start) {
                u.hll.insert(&member);
                u.count = None;
            }
        }
    }

    fn prune(&mut self, horizon: i64) {
        while let Some(&(start, _)) = self.slices.front() {
            if start + self.slice_ms > horizon {
                break;
            }
            self.slices.pop_front();
            if self.union.as_ref().is_some_and(|u| start >= u.lo) {
                self.union = None;
            }
        }
    }

    /// Slices are aligned to `slice_ms`, so the ones overlapping `(end - w, end]` are
    /// those starting from `lo` to `hi`.
    fn count(&mut self, end: i64, w: i64) -> u64 {
        let sm = self.slice_ms;
        let lo = (end.saturating_sub(w).saturating_sub(sm).div_euclid(sm) + 1).saturating_mul(sm);
        let hi = end.div_euclid(sm) * sm;
        let u = match self.union.as_mut() {
            Some(u) if u.lo == lo && u.hi == hi => u,
            _ => {
                let mut hll = new_hll();
                for (start, h) in self.slices.iter() {
                    if (lo..=hi).contains(start) {
                        hll.merge(h).expect("same precision");
                    }
                }
                self.union.insert(Box::new(Union {
                    lo,
                    hi,
                    hll,
                    count: None,
                }))
            }
        };
        *u.count.get_or_insert_with(|| u.hll.count().round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::mix64;

    proptest::proptest! {
        /// The union a ring keeps between counts must count what merging the window's
        /// slices afresh counts, however inserts (late ones too), prunes and windows of
        /// two sizes interleave.
        #[test]
        fn a_kept_union_counts_what_merging_the_slices_afresh_counts(
            ops in proptest::collection::vec((0u64..4_000, 0i64..1_000, 0u8..8), 1..3_000),
        ) {
            let ring = || SketchRing { slice_ms: 100, slices: VecDeque::new(), union: None };
            let (mut kept, mut fresh) = (ring(), ring());
            let mut now = 0i64;
            for (m, dt, op) in ops {
                now += dt / 100;
                let t = now - dt % 300;
                // Prunes and counts reach back unevenly (a partition read behind counts
                // a window that a prune may already have cut into).
                let horizon = now - 500 - dt % 500;
                if op == 0 {
                    kept.prune(horizon);
                    fresh.prune(horizon);
                    continue;
                }
                kept.insert(mix64(m), t, horizon);
                fresh.insert(mix64(m), t, horizon);
                if op >= 5 {
                    let w = if op == 7 { 250 } else { 800 };
                    let end = now - (m % 7) as i64 * 60;
                    fresh.union = None;
                    proptest::prop_assert_eq!(kept.count(end, w), fresh.count(end, w));
                }
            }
        }
    }

    #[test]
    fn a_member_whose_later_time_arrived_first_still_counts_in_the_earlier_window() {
        let mut d = DistinctWindow::default();
        // Read ahead: seen at 500 first, then its failure at 40 arrives.
        d.insert(mix64(1), 500, i64::MIN, (100, 100), 64);
        d.insert(mix64(1), 40, i64::MIN, (100, 100), 64);
        d.insert(mix64(2), 60, i64::MIN, (100, 100), 64);
        assert_eq!(d.count(60, 100), 2, "both failed in (-40, 60]");
        assert_eq!(d.recent(60, 100, 5).len(), 2);
        assert_eq!(d.count(550, 100), 1, "only 1 failed in (450, 550]");
    }

    #[test]
    fn small_sets_are_exact_and_slide() {
        let mut d = DistinctWindow::default();
        for i in 0..10u64 {
            d.insert(mix64(i), i as i64 * 10, i64::MIN, (100, 100), 64);
        }
        d.insert(mix64(3), 95, i64::MIN, (100, 100), 64);
        assert_eq!(d.count(95, 100), 10);
        assert_eq!(
            d.count(150, 100),
            5,
            "members 0..=4 last seen <= 50 left, 3 was refreshed"
        );
        assert!(!d.is_sketched());
    }

    #[test]
    fn a_short_window_over_a_sketched_set_counts_only_its_own_members() {
        // An IP fails on 40 accounts, then on 40 others an hour later; the set serves a
        // 10-minute window and a day (slices of 3 hours), and holds 16 exactly.
        const MIN: i64 = 60_000;
        let (short, day) = (10 * MIN, 24 * 60 * MIN);
        let mut d = DistinctWindow::default();
        for i in 0..40u64 {
            d.insert(mix64(i), i as i64 * 1000, i64::MIN, (day, short), 16);
        }
        for i in 0..40u64 {
            let t = 60 * MIN + i as i64 * 1000;
            d.insert(mix64(1000 + i), t, i64::MIN, (day, short), 16);
        }
        assert!(d.is_sketched());
        let end = 60 * MIN + 39_000;
        let c = d.count(end, short);
        assert!(
            (38..=42).contains(&c),
            "10 minutes: {c}, not the hour before too"
        );
        let c = d.count(end, day);
        assert!((78..=82).contains(&c), "the day: {c}");
        // A set serving one window has one ring, as before.
        let mut one = DistinctWindow::default();
        for i in 0..40u64 {
            one.insert(mix64(i), i as i64 * 1000, i64::MIN, (short, short), 16);
        }
        assert!((38..=42).contains(&one.count(39_000, short)));
    }

    #[test]
    fn large_sets_switch_to_hyperloglog_within_a_few_percent() {
        let mut d = DistinctWindow::default();
        for i in 0..20_000u64 {
            d.insert(
                mix64(i),
                1_000 + (i as i64 % 500),
                i64::MIN,
                (10_000, 10_000),
                64,
            );
        }
        assert!(d.is_sketched());
        assert_eq!(d.exact_len(), 64);
        let c = d.count(2_000, 10_000) as f64;
        assert!((c - 20_000.0).abs() / 20_000.0 < 0.05, "estimate {c}");
    }
}

/// A mergeable distinct set for one time slice: exact (the members themselves) up to
/// `SLICE_EXACT_MAX`, then dense HyperLogLog registers.
#[derive(Clone, Debug)]
pub enum SliceSet {
    Exact(hashbrown::HashTable<u64>),
    Sketch(Box<DenseHll>),
}

pub const SLICE_EXACT_MAX: usize = 512;

impl Default for SliceSet {
    fn default() -> Self {
        SliceSet::Exact(hashbrown::HashTable::new())
    }
}

impl SliceSet {
    /// `member` must already be a well-mixed hash: it is its own table hash.
    pub fn insert(&mut self, member: u64) {
        match self {
            SliceSet::Exact(t) => {
                if t.find(member, |&m| m == member).is_some() {
                    return;
                }
                if t.len() < SLICE_EXACT_MAX {
                    t.insert_unique(member, member, |&m| m);
                    return;
                }
                let mut h = new_dense_hll();
                for &m in t.iter() {
                    h.insert(&m);
                }
                h.insert(&member);
                *self = SliceSet::Sketch(Box::new(h));
            }
            SliceSet::Sketch(h) => h.insert(&member),
        }
    }

    pub fn heap_bytes(&self) -> usize {
        match self {
            SliceSet::Exact(t) => t.capacity() * 9,
            SliceSet::Sketch(_) => 3 * 1024 + 256,
        }
    }
}

/// Distinct members across several slices: exact while the exact parts are small, else
/// a merged sketch.
pub fn union_count<'a>(sets: impl Iterator<Item = &'a SliceSet> + Clone) -> u64 {
    let exact_total: usize = sets
        .clone()
        .map(|s| {
            if let SliceSet::Exact(t) = s {
                t.len()
            } else {
                usize::MAX / 64
            }
        })
        .sum();
    if exact_total <= 2 * SLICE_EXACT_MAX {
        let mut all = hashbrown::HashTable::<u64>::with_capacity(exact_total);
        for s in sets {
            if let SliceSet::Exact(t) = s {
                for &m in t.iter() {
                    if all.find(m, |&x| x == m).is_none() {
                        all.insert_unique(m, m, |&x| x);
                    }
                }
            }
        }
        return all.len() as u64;
    }
    let mut merged = new_dense_hll();
    for s in sets {
        match s {
            SliceSet::Exact(t) => {
                for &m in t.iter() {
                    merged.insert(&m);
                }
            }
            SliceSet::Sketch(h) => merged.merge(h).expect("same precision"),
        }
    }
    merged.count().round() as u64
}

#[cfg(test)]
mod slice_tests {
    use super::*;
    use crate::hash::mix64;

    #[test]
    fn slice_sets_are_exact_when_small_and_close_when_large() {
        let mut a = SliceSet::default();
        let mut b = SliceSet::default();
        for i in 0..300u64 {
            a.insert(mix64(i));
            b.insert(mix64(i + 200));
        }
        assert_eq!(union_count([&a, &b].into_iter()), 500);
        let mut sets = Vec::new();
        for s in 0..10u64 {
            let mut x = SliceSet::default();
            for i in 0..2000u64 {
                x.insert(mix64(s * 1000 + i));
            }
            assert!(matches!(x, SliceSet::Sketch(_)));
            sets.push(x);
        }
        let n = union_count(sets.iter()) as f64;
        assert!((n - 11_000.0).abs() / 11_000.0 < 0.05, "estimate {n}");
    }
}

#[cfg(test)]
mod shared_window_tests {
    use super::*;
    use crate::hash::mix64;

    #[test]
    fn after_overflow_a_short_window_is_still_counted_exactly() {
        // One set serves a 10-minute rule and a day-long one. Sixty accounts fail over
        // the day (the set overflows into its sketch); the last 10 minutes hold three.
        let (min, day) = (60_000i64, 86_400_000i64);
        let mut d = DistinctWindow::default();
        for i in 0..60u64 {
            d.insert(mix64(i), i as i64 * 20 * min, 0, (day, 10 * min), 20);
        }
        for i in 100..103u64 {
            d.insert(
                mix64(i),
                1200 * min + (i as i64 - 100) * min,
                0,
                (day, 10 * min),
                20,
            );
        }
        assert!(d.is_sketched());
        let end = 1203 * min;
        assert_eq!(
            d.count(end, 10 * min),
            3,
            "exact: the set still holds older members"
        );
        let c = d.count(end, day);
        assert!((60..=66).contains(&c), "day count from the sketch: {c}");
    }
}
