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

use std::ptr::NonNull;

/// Timestamps kept inline before spilling to the heap. Most entities only ever have one
/// or two events in a window, and a heap buffer each costs memory and a cache miss.
const INLINE: usize = 2;
/// A spilled window's first buffer.
const FIRST_SPILL: usize = INLINE * 2;

enum Repr {
    Inline {
        len: u8,
        ts: [i64; INLINE],
    },
    /// `len` timestamps from `start` in a buffer of `cap`. Where they sit is known from
    /// the entity's slot alone, so the lines in use can be loaded ahead
    /// (`TsWindow::prefetch`) in one step; behind a `Box<VecDeque>` the buffer was a
    /// second dependent load, and the engine's most stalled one (perf: three quarters
    /// of `TsWindow::prune`'s samples on its first read). The fields sit in the variant
    /// rather than in a struct of their own so the window stays 24 bytes.
    ///
    /// The timestamps are contiguous, not a ring: expiry moves `start` up, and an
    /// insert with no room after them moves them down or grows the buffer
    /// (`insert_at`), so a timestamp is moved a bounded number of times on average.
    Heap {
        ptr: NonNull<i64>,
        cap: u32,
        start: u32,
        len: u32,
    },
}

pub struct TsWindow {
    repr: Repr,
}

const _: () = assert!(std::mem::size_of::<TsWindow>() == 24);

// SAFETY: the buffer is owned by the window alone, as a `Box<[i64]>` would be.
unsafe impl Send for TsWindow {}
unsafe impl Sync for TsWindow {}

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

impl Drop for TsWindow {
    fn drop(&mut self) {
        if let Repr::Heap { ptr, cap, .. } = self.repr {
            free(ptr, cap);
        }
    }
}

impl Clone for TsWindow {
    fn clone(&self) -> Self {
        let mut w = TsWindow::default();
        for t in self.iter() {
            w.insert(t, i64::MIN, usize::MAX);
        }
        w
    }
}

impl std::fmt::Debug for TsWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A buffer for `cap` timestamps (zeroed: it is read only where written).
fn alloc(cap: usize) -> NonNull<i64> {
    let b: Box<[i64]> = vec![0; cap].into_boxed_slice();
    // SAFETY: a Box's pointer is never null.
    unsafe { NonNull::new_unchecked(Box::into_raw(b).cast::<i64>()) }
}

fn free(ptr: NonNull<i64>, cap: u32) {
    // SAFETY: `ptr` came from `alloc(cap)` and is freed once (the window drops or
    // replaces it).
    drop(unsafe {
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(
            ptr.as_ptr(),
            cap as usize,
        ))
    });
}

impl TsWindow {
    /// The timestamps, oldest first.
    #[inline]
    fn as_slice(&self) -> &[i64] {
        match &self.repr {
            Repr::Inline { len, ts } => &ts[..*len as usize],
            // SAFETY: `start + len <= cap` timestamps of the buffer are initialised.
            Repr::Heap {
                ptr, start, len, ..
            } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr().add(*start as usize), *len as usize)
            },
        }
    }

    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Inline { len, .. } => *len as usize,
            Repr::Heap { len, .. } => *len as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    fn at(&self, i: usize) -> i64 {
        self.as_slice()[i]
    }

    /// Number of timestamps `<= t`.
    fn rank(&self, t: i64) -> usize {
        self.as_slice().partition_point(|&x| x <= t)
    }

    /// Inserts `t` in time order (out-of-order events land where they belong), forgets
    /// timestamps before `horizon`, and keeps at most `cap` of the newest.
    /// Returns the index `t` was stored at, or `None` if it fell outside.
    pub fn insert(&mut self, t: i64, horizon: i64, cap: usize) -> Option<usize> {
        self.prune(horizon);
        if t < horizon {
            return None;
        }
        // A buffer's bounds are u32s; no rule keeps that many.
        let cap = cap.clamp(1, u32::MAX as usize / 2);
        let len = self.len();
        let idx = if len > 0 && t < self.at(len - 1) {
            self.rank(t)
        } else {
            len
        };
        if len >= cap && idx == 0 {
            return None;
        }
        if let Repr::Inline { len: l, ts } = &mut self.repr {
            if len < INLINE && len < cap {
                ts.copy_within(idx..len, idx + 1);
                ts[idx] = t;
                *l += 1;
                return Some(idx);
            }
            if len < cap {
                let ptr = alloc(FIRST_SPILL);
                // SAFETY: the new buffer holds FIRST_SPILL > INLINE timestamps.
                unsafe { std::ptr::copy_nonoverlapping(ts.as_ptr(), ptr.as_ptr(), len) };
                self.repr = Repr::Heap {
                    ptr,
                    cap: FIRST_SPILL as u32,
                    start: 0,
                    len: len as u32,
                };
            }
        }
        if len >= cap {
            self.pop_front();
            self.insert_at(idx - 1, t, cap);
            return Some(idx - 1);
        }
        self.insert_at(idx, t, cap);
        Some(idx)
    }

    /// Puts `t` at `idx` (`<= len < keep`), making room as needed. Inline, a window is
    /// not full here (it spills first). With no room after the timestamps, they are
    /// moved down when that frees room for `keep` more (as many inserts as the move
    /// costs) or they fill at most half the buffer; else the buffer doubles, up to twice
    /// `keep`.
    fn insert_at(&mut self, idx: usize, t: i64, keep: usize) {
        match &mut self.repr {
            Repr::Inline { len, ts } => {
                let l = *len as usize;
                ts.copy_within(idx..l, idx + 1);
                ts[idx] = t;
                *len += 1;
            }
            Repr::Heap {
                ptr,
                cap,
                start,
                len,
            } => {
                let (l, s) = (*len as usize, *start as usize);
                if s + l == *cap as usize {
                    let c = *cap as usize;
                    if 2 * l <= c || c >= 2 * keep {
                        // SAFETY: both ranges lie within the buffer.
                        unsafe {
                            std::ptr::copy(ptr.as_ptr().add(s), ptr.as_ptr(), l);
                        }
                    } else {
                        let new_cap = (c * 2).min(2 * keep).max(l + 1);
                        let new = alloc(new_cap);
                        // SAFETY: `l` initialised timestamps from `s`; the new buffer
                        // holds more.
                        unsafe {
                            std::ptr::copy_nonoverlapping(ptr.as_ptr().add(s), new.as_ptr(), l);
                        }
                        free(*ptr, *cap);
                        *ptr = new;
                        *cap = new_cap as u32;
                    }
                    *start = 0;
                }
                let s = *start as usize;
                // SAFETY: `s + l < cap`, so there is room for one more after them.
                unsafe {
                    let base = ptr.as_ptr().add(s);
                    std::ptr::copy(base.add(idx), base.add(idx + 1), l - idx);
                    base.add(idx).write(t);
                }
                *len += 1;
            }
        }
    }

    fn pop_front(&mut self) {
        self.drop_front(1);
    }

    /// Forgets the `n` oldest timestamps (`n <= len`).
    fn drop_front(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        match &mut self.repr {
            Repr::Inline { len, ts } => {
                ts.copy_within(n..*len as usize, 0);
                *len -= n as u8;
            }
            Repr::Heap { start, len, .. } => {
                *start += n as u32;
                *len -= n as u32;
                if *len == 0 {
                    // The burst is over: back to inline, memory returned.
                    *self = TsWindow::default();
                }
            }
        }
    }

    /// Starts loading the lines a spilled window's next insert reads first: its oldest
    /// timestamp (expiry) and its newest (where an insert usually lands). See
    /// `IpState::prefetch`.
    #[inline]
    pub fn prefetch(&self) {
        if let Repr::Heap {
            ptr, start, len, ..
        } = &self.repr
        {
            let first = ptr.as_ptr().wrapping_add(*start as usize);
            crate::engine::prefetch(first.cast());
            crate::engine::prefetch(first.wrapping_add((*len as usize).saturating_sub(1)).cast());
        }
    }

    pub fn prune(&mut self, horizon: i64) {
        let n = self.as_slice().partition_point(|&x| x < horizon);
        self.drop_front(n);
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
        self.as_slice().iter().copied()
    }

    pub fn heap_bytes(&self) -> usize {
        match &self.repr {
            Repr::Inline { .. } => 0,
            Repr::Heap { cap, .. } => *cap as usize * std::mem::size_of::<i64>(),
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

    /// What `TsWindow::insert` does, on a sorted list: keep the newest `cap`.
    fn model_insert(model: &mut Vec<i64>, t: i64, cap: usize) -> Option<usize> {
        let idx = model.partition_point(|&x| x <= t);
        if model.len() < cap {
            model.insert(idx, t);
            return Some(idx);
        }
        if idx == 0 {
            return None;
        }
        model.remove(0);
        model.insert(idx - 1, t);
        Some(idx - 1)
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
                assert_eq!(got, model_insert(&mut model, t, cap), "cap {cap}, t {t}");
                assert_eq!(w.iter().collect::<Vec<_>>(), model, "cap {cap}, t {t}");
            }
            w.prune(35);
            model.retain(|&x| x >= 35);
            assert_eq!(w.iter().collect::<Vec<_>>(), model);
        }
    }

    proptest::proptest! {
        /// Against a sorted `Vec`: inserts in and out of order, expiry by horizon, the
        /// cap, so the spilled buffer slides, moves down, grows and goes back inline.
        #[test]
        fn a_window_keeps_what_a_sorted_list_keeps(
            steps in proptest::collection::vec((0i64..4, -30i64..8, 0u8..8), 1..400),
            cap in 1usize..40,
        ) {
            let mut w = TsWindow::default();
            let mut model: Vec<i64> = Vec::new();
            let mut now = 0i64;
            for (dt, back, horizon_lag) in steps {
                now += dt;
                let t = now + back.min(0);
                let horizon = now - 10 * horizon_lag as i64 - 5;
                let got = w.insert(t, horizon, cap);
                model.retain(|&x| x >= horizon);
                let want = if t < horizon {
                    None
                } else {
                    model_insert(&mut model, t, cap)
                };
                proptest::prop_assert_eq!(got, want);
                proptest::prop_assert_eq!(w.iter().collect::<Vec<_>>(), model.clone());
                proptest::prop_assert_eq!(w.len(), model.len());
                proptest::prop_assert_eq!(w.clone().iter().collect::<Vec<_>>(), model.clone());
                if model.len() <= INLINE {
                    continue;
                }
                // A spilled buffer is never more than twice the larger of its first
                // size and what it held at its fullest, which is at most `cap`.
                proptest::prop_assert!(w.heap_bytes() <= 2 * cap.max(FIRST_SPILL) * 8);
            }
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
