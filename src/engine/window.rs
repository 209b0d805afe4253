//! Exact sliding event-time windows over one entity's events.
//!
//! A rule "≥ N events within W" holds exactly when some N consecutive timestamps (in
//! time order) span less than W. So a window keeps the timestamps themselves, sorted,
//! and only the newest `cap` of them: `cap` is the largest count any rule asks about
//! (the escalation count), so memory per entity is bounded however hard it is hit.
//! There are no buckets, so an attack straddling any boundary is counted whole.
//!
//! A window `W` holds events with `end - W < ts <= end`: an event exactly `W` older than
//! another is no longer in its window.

use std::collections::VecDeque;

/// Timestamps kept inline before spilling to the heap. Most entities only ever have one
/// or two events in a window, and a heap buffer each costs memory and a cache miss.
const INLINE: usize = 2;

#[derive(Clone, Debug)]
enum Repr {
    Inline {
        len: u8,
        ts: [i64; INLINE],
    },
    /// Boxed so the inline case sets the size (24 bytes, not 40): few windows spill,
    /// and every IP has one.
    #[allow(clippy::box_collection)]
    Heap(Box<VecDeque<i64>>),
}

#[derive(Clone, Debug)]
pub struct TsWindow {
    repr: Repr,
}

impl Default for TsWindow {
    fn default() -> Self {
        TsWindow {
            repr: Repr::Inline {
                len: 0,
                ts: [0; INLINE],
            },
        }
    }
}

impl TsWindow {
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Inline { len, .. } => *len as usize,
            Repr::Heap(d) => d.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    fn at(&self, i: usize) -> i64 {
        match &self.repr {
            Repr::Inline { ts, .. } => ts[i],
            Repr::Heap(d) => d[i],
        }
    }

    /// Number of timestamps `<= t`.
    fn rank(&self, t: i64) -> usize {
        match &self.repr {
            Repr::Inline { len, ts } => ts[..*len as usize].partition_point(|&x| x <= t),
            Repr::Heap(d) => d.partition_point(|&x| x <= t),
        }
    }

    /// Inserts `t` in time order (out-of-order events land where they belong), forgets
    /// timestamps before `horizon`, and keeps at most `cap` of the newest.
    /// Returns the index `t` was stored at, or `None` if it fell outside.
    pub fn insert(&mut self, t: i64, horizon: i64, cap: usize) -> Option<usize> {
        self.prune(horizon);
        if t < horizon {
            return None;
        }
        let cap = cap.max(1);
        let len = self.len();
        let idx = if len > 0 && t < self.at(len - 1) {
            self.rank(t)
        } else {
            len
        };
        if len >= cap && idx == 0 {
            return None;
        }
        match &mut self.repr {
            Repr::Inline { len: l, ts } if (*l as usize) < INLINE && len < cap => {
                ts.copy_within(idx..*l as usize, idx + 1);
                ts[idx] = t;
                *l += 1;
                return Some(idx);
            }
            Repr::Inline { len: l, ts } => {
                let mut d = VecDeque::with_capacity(INLINE * 2);
                d.extend(ts[..*l as usize].iter().copied());
                self.repr = Repr::Heap(Box::new(d));
            }
            Repr::Heap(_) => {}
        }
        let Repr::Heap(d) = &mut self.repr else {
            unreachable!("spilled above")
        };
        if d.len() >= cap {
            d.pop_front();
            d.insert(idx - 1, t);
            return Some(idx - 1);
        }
        d.insert(idx, t);
        Some(idx)
    }

    /// Starts loading the spilled timestamps, if any (see `IpState::prefetch`).
    #[inline]
    pub fn prefetch(&self) {
        if let Repr::Heap(d) = &self.repr {
            crate::engine::prefetch((&**d as *const VecDeque<i64>).cast());
        }
    }

    pub fn prune(&mut self, horizon: i64) {
        match &mut self.repr {
            Repr::Inline { len, ts } => {
                let keep_from = ts[..*len as usize].partition_point(|&x| x < horizon);
                if keep_from > 0 {
                    ts.copy_within(keep_from..*len as usize, 0);
                    *len -= keep_from as u8;
                }
            }
            Repr::Heap(d) => {
                while d.front().is_some_and(|&f| f < horizon) {
                    d.pop_front();
                }
                if d.is_empty() {
                    // The burst is over: back to inline, memory returned.
                    *self = TsWindow::default();
                }
            }
        }
    }

    /// If the timestamp at `idx` is part of a run of `n` events spanning less than `w`,
    /// the end time of the latest such run.
    pub fn crossing(&self, idx: usize, n: usize, w: i64) -> Option<i64> {
        let n = n.max(1);
        let len = self.len();
        if len < n || idx >= len {
            return None;
        }
        let hi = idx.min(len - n);
        let lo = idx.saturating_sub(n - 1);
        (lo..=hi).rev().find_map(|i| {
            let end = self.at(i + n - 1);
            (end - self.at(i) < w).then_some(end)
        })
    }

    /// Events in `(end - w, end]`.
    pub fn count_in(&self, end: i64, w: i64) -> usize {
        self.rank(end) - self.rank(end - w)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = i64> + '_ {
        (0..self.len()).map(move |i| self.at(i))
    }

    pub fn heap_bytes(&self) -> usize {
        match &self.repr {
            Repr::Inline { .. } => 0,
            Repr::Heap(d) => d.capacity() * std::mem::size_of::<i64>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossing_needs_n_events_strictly_within_the_window() {
        let mut w = TsWindow::default();
        for t in [0, 100, 200] {
            let i = w.insert(t, i64::MIN, 10).unwrap();
            assert_eq!(w.crossing(i, 3, 200), None, "t={t}: span 200 is not < 200");
        }
        let mut w = TsWindow::default();
        for t in [0, 100, 199] {
            let i = w.insert(t, i64::MIN, 10).unwrap();
            if t == 199 {
                assert_eq!(w.crossing(i, 3, 200), Some(199));
            }
        }
    }

    #[test]
    fn out_of_order_insert_completes_a_run() {
        let mut w = TsWindow::default();
        for t in [0, 50, 1000] {
            w.insert(t, i64::MIN, 10);
        }
        let i = w.insert(20, i64::MIN, 10).unwrap();
        assert_eq!(i, 1);
        assert_eq!(w.crossing(i, 3, 100), Some(50));
        assert_eq!(w.iter().collect::<Vec<_>>(), vec![0, 20, 50, 1000]);
    }

    #[test]
    fn inline_and_heap_storage_agree() {
        // The same out-of-order sequence, with caps that keep it inline or force a spill.
        let seq = [50, 10, 30, 20, 40, 60, 5];
        for cap in [1, 2, 3, 100] {
            let mut w = TsWindow::default();
            let mut model: Vec<i64> = Vec::new();
            for &t in &seq {
                let got = w.insert(t, 0, cap);
                let idx = model.partition_point(|&x| x <= t);
                let want = if model.len() >= cap {
                    if idx == 0 {
                        None
                    } else {
                        model.remove(0);
                        model.insert(idx - 1, t);
                        Some(idx - 1)
                    }
                } else {
                    model.insert(idx, t);
                    Some(idx)
                };
                assert_eq!(got, want, "cap {cap}, t {t}");
                assert_eq!(w.iter().collect::<Vec<_>>(), model, "cap {cap}, t {t}");
            }
            w.prune(35);
            model.retain(|&x| x >= 35);
            assert_eq!(w.iter().collect::<Vec<_>>(), model);
        }
    }

    #[test]
    fn cap_keeps_the_newest_and_horizon_forgets_the_old() {
        let mut w = TsWindow::default();
        for t in 0..100 {
            w.insert(t, i64::MIN, 5);
        }
        assert_eq!(w.iter().collect::<Vec<_>>(), vec![95, 96, 97, 98, 99]);
        w.insert(200, 150, 5);
        assert_eq!(w.iter().collect::<Vec<_>>(), vec![200]);
        assert_eq!(w.count_in(200, 10), 1);
    }
}
