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

#[derive(Clone, Debug, Default)]
pub struct TsWindow {
    ts: VecDeque<i64>,
}

impl TsWindow {
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Inserts `t` in time order (out-of-order events land where they belong), forgets
    /// timestamps before `horizon`, and keeps at most `cap` of the newest.
    /// Returns the index `t` was stored at, or `None` if it fell outside.
    pub fn insert(&mut self, t: i64, horizon: i64, cap: usize) -> Option<usize> {
        self.prune(horizon);
        if t < horizon {
            return None;
        }
        let idx = match self.ts.back() {
            Some(&last) if t < last => self.ts.partition_point(|&x| x <= t),
            _ => self.ts.len(),
        };
        if self.ts.len() >= cap.max(1) {
            if idx == 0 {
                return None;
            }
            self.ts.pop_front();
            self.ts.insert(idx - 1, t);
            return Some(idx - 1);
        }
        self.ts.insert(idx, t);
        Some(idx)
    }

    pub fn prune(&mut self, horizon: i64) {
        while self.ts.front().is_some_and(|&f| f < horizon) {
            self.ts.pop_front();
        }
        if self.ts.is_empty() && self.ts.capacity() > 8 {
            // An attack is over: give its memory back. Small buffers stay, since an
            // entity that was active is likely to be again, and freeing them on every
            // quiet spell churns the allocator on the hot path.
            self.ts = VecDeque::new();
        }
    }

    /// If the timestamp at `idx` is part of a run of `n` events spanning less than `w`,
    /// the end time of the latest such run.
    pub fn crossing(&self, idx: usize, n: usize, w: i64) -> Option<i64> {
        let n = n.max(1);
        let len = self.ts.len();
        if len < n || idx >= len {
            return None;
        }
        let hi = idx.min(len - n);
        let lo = idx.saturating_sub(n - 1);
        (lo..=hi).rev().find_map(|i| {
            let end = self.ts[i + n - 1];
            (end - self.ts[i] < w).then_some(end)
        })
    }

    /// Events in `(end - w, end]`.
    pub fn count_in(&self, end: i64, w: i64) -> usize {
        let lo = self.ts.partition_point(|&x| x <= end - w);
        let hi = self.ts.partition_point(|&x| x <= end);
        hi - lo
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = i64> + '_ {
        self.ts.iter().copied()
    }

    pub fn heap_bytes(&self) -> usize {
        self.ts.capacity() * std::mem::size_of::<i64>()
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
