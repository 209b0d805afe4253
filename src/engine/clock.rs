//! Event time: the watermark, late events, and containment of wild timestamps.
//!
//! Stream time is the K-th largest event time accepted (K = `time.jump_confirmations`),
//! not the largest: one or two events from a broken clock can never move it, so they
//! cannot make everyone else's events look late. An event more than `max_forward_jump`
//! ahead is rejected unless K such events agree with each other (within
//! `max_forward_jump`): a real gap in traffic, e.g. a replay across a quiet night,
//! confirms itself within K events; random wild clocks never do. Until K events have
//! been seen, time is not established and nothing is late or rejected as a jump.
//!
//! Input comes from sources (Kafka partitions) that are each in time order but not in
//! step with each other: catching up on a backlog, one partition's fetch can be minutes
//! of event time ahead of another's. So, as in Flink, each source keeps its own stream
//! time and the watermark is the least of them, less the allowed lateness: skew between
//! partitions never makes an event late. A source stops holding the watermark back when
//! its driver marks it idle (a Kafka partition with nothing to deliver) or removes it
//! (revoked); it starts afresh with its next event, which is never late. Replay is one
//! source, so everything depends on the input order only and is deterministic.

use crate::config::TimeConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Process the event.
    Accept,
    /// Older than the watermark: count and drop.
    Late,
    /// A forward jump nothing confirms yet: reject as `timestamp_jump`.
    Jump,
}

/// The K largest of a set of times, largest first.
#[derive(Clone, Debug, Default)]
struct TopK {
    top: Vec<i64>,
}

impl TopK {
    /// The K-th largest (the smallest kept, before K).
    fn kth(&self) -> Option<i64> {
        self.top.last().copied()
    }

    /// Twice per event, so by hand: an insertion step over K (3 by default) instead of
    /// a search and two `memmove` calls, and nothing at all for a time below the K-th.
    fn insert(&mut self, ts: i64, k: usize) {
        let top = &mut self.top;
        if top.len() >= k {
            match top.last_mut() {
                Some(last) if ts > *last => *last = ts,
                _ => return,
            }
        } else {
            top.push(ts);
        }
        // Equal times stay in arrival order, as a stable insert would leave them.
        let mut i = top.len() - 1;
        while i > 0 && top[i - 1] < ts {
            top[i] = top[i - 1];
            i -= 1;
        }
        top[i] = ts;
    }
}

#[derive(Clone, Debug, Default)]
struct Source {
    times: TopK,
    /// Counted in the watermark: delivering and with a time, or expected (assigned,
    /// with events to come) and holding it.
    live: bool,
}

#[derive(Clone, Debug)]
pub struct Clock {
    lateness: i64,
    max_jump: i64,
    k: usize,
    /// Over all sources: stream time, and the reference for forward jumps.
    all: TopK,
    /// Rejected far-future times waiting for agreement.
    pending: Vec<i64>,
    sources: Vec<Source>,
    current: usize,
    /// min over live sources of their stream time, less the lateness; held while no
    /// source is live.
    wm: i64,
}

impl Clock {
    pub fn new(cfg: &TimeConfig) -> Clock {
        let k = cfg.jump_confirmations.max(1) as usize;
        Clock {
            lateness: cfg.allowed_lateness.ms(),
            max_jump: cfg.max_forward_jump.ms(),
            k,
            all: TopK {
                top: Vec::with_capacity(k + 1),
            },
            pending: Vec::new(),
            sources: vec![Source::default()],
            current: 0,
            wm: i64::MIN,
        }
    }

    /// Stream time: the K-th largest accepted event time over all sources (the smallest
    /// kept, before K events). `None` before the first event.
    pub fn now(&self) -> Option<i64> {
        self.all.kth()
    }

    /// Events before the watermark are late; state older than it minus a window is gone.
    pub fn watermark(&self) -> i64 {
        self.wm
    }

    /// The newest event time accepted, leaving out a wild clock accepted before time was
    /// established.
    pub fn max_ts(&self) -> Option<i64> {
        self.newest_sane(&self.all)
    }

    /// The newest event time of the current source, leaving out a wild clock: "now"
    /// for windows judged as of the event in hand.
    pub fn source_max_ts(&self) -> Option<i64> {
        self.newest_sane(&self.sources[self.current].times)
    }

    fn newest_sane(&self, times: &TopK) -> Option<i64> {
        let ahead = self.horizon_ahead();
        times.top.iter().copied().find(|&t| t <= ahead)
    }

    /// Anything after this is a wild clock, not the stream running ahead.
    pub fn horizon_ahead(&self) -> i64 {
        self.now()
            .map_or(i64::MAX, |m| m.saturating_add(self.max_jump))
    }

    /// The events that follow come from source `id` (a small dense number, e.g. the
    /// runtime's partition slot). A source seen for the first time, or again after
    /// being idle, starts without a time and holds nothing back until its first event.
    #[inline]
    pub fn set_source(&mut self, id: usize) {
        if id >= self.sources.len() {
            self.sources.resize_with(id + 1, Source::default);
        }
        self.current = id;
    }

    /// Source `id` (just assigned) has events to come but none has arrived: it holds
    /// the watermark where it is until its first event, which is never late. Without
    /// this, whichever partition delivers first runs the watermark, and the expiry of
    /// state, ahead of partitions still waiting their turn, and their events then find
    /// the state they belong with gone (as Flink, where an input with no watermark yet
    /// holds the operator's back). A source already live is left as it is.
    pub fn expect(&mut self, id: usize) {
        if id >= self.sources.len() {
            self.sources.resize_with(id + 1, Source::default);
        }
        self.sources[id].live = true;
    }

    /// Source `id` has nothing to deliver (or is gone): it stops holding the watermark
    /// back and forgets its time, so its next event starts it afresh.
    pub fn set_idle(&mut self, id: usize) {
        if let Some(s) = self.sources.get_mut(id) {
            if s.live || !s.times.top.is_empty() {
                s.live = false;
                s.times.top.clear();
                self.recompute();
            }
        }
    }

    /// How many sources hold the watermark back.
    pub fn live_sources(&self) -> usize {
        self.sources.iter().filter(|s| s.live).count()
    }

    pub fn admit(&mut self, ts: i64) -> Admit {
        let established = self.all.top.len() >= self.k;
        if established && ts > self.horizon_ahead() {
            self.pending.retain(|&p| (p - ts).abs() <= self.max_jump);
            self.pending.push(ts);
            if self.pending.len() < self.k {
                return Admit::Jump;
            }
            for p in std::mem::take(&mut self.pending) {
                self.insert(p);
            }
            return Admit::Accept;
        }
        // A source's first event sets its time and so is never late: only a source
        // that has a time is behind the others. Accepting `ts` could only raise the
        // watermark to at most `ts - lateness`, so comparing with the current one is
        // exact.
        let src = &self.sources[self.current];
        if established && !src.times.top.is_empty() && ts < self.wm {
            return Admit::Late;
        }
        self.insert(ts);
        Admit::Accept
    }

    fn insert(&mut self, ts: i64) {
        let was_established = self.all.top.len() >= self.k;
        self.all.insert(ts, self.k);
        let k = self.k;
        let src = &mut self.sources[self.current];
        let before = src.times.kth();
        src.times.insert(ts, k);
        let became_live = !src.live;
        src.live = true;
        let after = src.times.kth();
        // Once a source holds K times its stream time only rises; while it is not the
        // least, the watermark (a min) stays, and the scan over every partition is
        // skipped. Before K, an older event lowers it.
        let was_least = before.is_none_or(|b| b.saturating_sub(self.lateness) <= self.wm);
        let moved = after != before && (was_least || after < before);
        if became_live || moved || !was_established {
            self.recompute();
        }
        // Nearly always empty; `retain` is a call even then, and this runs per event.
        if !self.pending.is_empty() {
            let now = self.now().unwrap_or(i64::MIN);
            self.pending
                .retain(|&p| p > now.saturating_add(self.max_jump));
        }
    }

    fn recompute(&mut self) {
        if self.all.top.len() < self.k {
            self.wm = i64::MIN;
            return;
        }
        let mut min = None::<i64>;
        for s in self.sources.iter().filter(|s| s.live) {
            match s.times.kth() {
                // Expected and not yet heard from: the watermark holds.
                None => return,
                Some(t) => min = Some(min.map_or(t, |m| m.min(t))),
            }
        }
        if let Some(min) = min {
            self.wm = min.saturating_sub(self.lateness);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dur;

    fn clock() -> Clock {
        Clock::new(&TimeConfig {
            allowed_lateness: Dur::secs(60),
            max_forward_jump: Dur::hours(1),
            jump_confirmations: 3,
            dedup_window: Dur::mins(10),
        })
    }

    const T: i64 = 1_763_700_000_000;

    proptest::proptest! {
        #[test]
        fn top_k_keeps_the_k_largest_times_largest_first(
            k in 1usize..6,
            times in proptest::collection::vec(-20i64..20, 0..60),
        ) {
            let mut top = TopK::default();
            for (n, &t) in times.iter().enumerate() {
                top.insert(t, k);
                let mut want = times[..=n].to_vec();
                want.sort_unstable_by(|a, b| b.cmp(a));
                want.truncate(k);
                proptest::prop_assert_eq!(&top.top, &want);
            }
        }
    }

    #[test]
    fn late_beyond_lateness_is_dropped_within_is_accepted() {
        let mut c = clock();
        for i in 0..3 {
            assert_eq!(c.admit(T + i * 60_000), Admit::Accept);
        }
        assert_eq!(c.now(), Some(T));
        c.admit(T + 180_000);
        c.admit(T + 180_000);
        assert_eq!(c.now(), Some(T + 120_000));
        assert_eq!(
            c.admit(T + 60_000),
            Admit::Accept,
            "exactly at the watermark is on time"
        );
        assert_eq!(c.admit(T + 59_999), Admit::Late);
    }

    #[test]
    fn one_event_far_ahead_does_not_move_time() {
        let mut c = clock();
        for i in 0..5 {
            c.admit(T + i);
        }
        // 50 minutes ahead: within max_forward_jump, so accepted, but time stays put.
        assert_eq!(c.admit(T + 50 * 60_000), Admit::Accept);
        assert_eq!(c.admit(T + 10), Admit::Accept);
        assert_eq!(c.now(), Some(T + 4));
        let y2099 = 4_070_908_800_000;
        assert_eq!(c.admit(y2099), Admit::Jump);
        assert_eq!(c.admit(T + 20), Admit::Accept);
    }

    #[test]
    fn a_real_gap_confirms_itself_and_random_wild_clocks_never_do() {
        let mut c = clock();
        for i in 0..5 {
            c.admit(T + i);
        }
        let later = T + 3 * 3_600_000;
        assert_eq!(c.admit(later), Admit::Jump);
        assert_eq!(
            c.admit(T + 5),
            Admit::Accept,
            "a straggler in between does not reset the run"
        );
        assert_eq!(c.admit(later + 10), Admit::Jump);
        assert_eq!(c.admit(later + 20), Admit::Accept);
        assert_eq!(c.now(), Some(later));
        assert_eq!(c.admit(T), Admit::Late);
        for year in [2090, 2080, 2070, 2060] {
            let wild = (year - 1970) * 365 * 86_400_000;
            assert_eq!(c.admit(wild), Admit::Jump, "{year}");
        }
    }

    #[test]
    fn a_partition_running_minutes_ahead_of_another_makes_nothing_late() {
        let mut c = clock();
        // Catching up: partition 0's fetch covers ten minutes before partition 1's comes.
        c.set_source(0);
        for i in 0..600 {
            assert_eq!(c.admit(T + i * 1_000), Admit::Accept);
        }
        assert_eq!(c.watermark(), T + 597_000 - 60_000);
        c.set_source(1);
        for i in 0..600 {
            assert_eq!(c.admit(T + i * 1_000), Admit::Accept, "partition 1 at {i}s");
        }
        assert_eq!(c.watermark(), T + 597_000 - 60_000);
        // Within a partition, order still counts.
        assert_eq!(c.admit(T + 500_000), Admit::Late);
    }

    #[test]
    fn the_slowest_live_partition_holds_the_watermark_until_it_goes_idle() {
        let mut c = clock();
        c.set_source(1);
        for i in 0..3 {
            c.admit(T + i);
        }
        c.set_source(0);
        for i in 0..300 {
            c.admit(T + i * 1_000);
        }
        assert_eq!(c.watermark(), T - 60_000, "partition 1 holds it back");
        assert_eq!(c.live_sources(), 2);
        c.set_idle(1);
        assert_eq!(c.live_sources(), 1);
        assert_eq!(c.watermark(), T + 297_000 - 60_000);
        // Back from idle, its first event starts it afresh instead of being late.
        c.set_source(1);
        assert_eq!(c.admit(T + 100_000), Admit::Accept);
        assert_eq!(c.watermark(), T + 100_000 - 60_000);
        assert_eq!(c.admit(T + 39_999), Admit::Late);
    }

    #[test]
    fn a_partition_whose_first_event_comes_after_others_moved_on_is_not_late() {
        let mut c = clock();
        c.set_source(3);
        for i in 0..10 {
            c.admit(T + 3_600_000 + i);
        }
        for first in [0, 1] {
            c.set_source(first);
            assert_eq!(c.admit(T), Admit::Accept, "source {first}");
            assert_eq!(c.admit(T + 1), Admit::Accept);
        }
        assert_eq!(c.watermark(), T - 60_000);
    }

    #[test]
    fn the_watermark_is_always_the_least_live_stream_time_less_the_lateness() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut c = clock();
        let mut heads = [T; 4];
        let mut held = i64::MIN;
        for step in 0..20_000 {
            let src = rng.random_range(0..4);
            let dice = rng.random_range(0..200);
            if dice < 2 {
                c.set_idle(src);
            } else if dice < 3 {
                c.expect(src);
            } else {
                c.set_source(src);
                // Each source runs forward at its own pace, now and then a little back.
                heads[src] += rng.random_range(0..2_000);
                let back = if rng.random_range(0..10) == 0 {
                    90_000
                } else {
                    0
                };
                c.admit(heads[src] - rng.random_range(0..=back));
            }
            let live: Vec<Option<i64>> = c
                .sources
                .iter()
                .filter(|s| s.live)
                .map(|s| s.times.kth())
                .collect();
            let want = if c.all.top.len() < 3 {
                i64::MIN
            } else if live.contains(&None) {
                held
            } else {
                live.iter().flatten().min().map_or(held, |m| m - 60_000)
            };
            assert_eq!(c.watermark(), want, "step {step}");
            held = want;
        }
    }

    #[test]
    fn an_assigned_partition_not_yet_heard_from_holds_the_watermark() {
        let mut c = clock();
        // Partitions 0 and 1 are assigned; 0's backlog comes first.
        c.expect(0);
        c.expect(1);
        c.set_source(0);
        for i in 0..600 {
            c.admit(T + i * 1_000);
        }
        assert_eq!(c.watermark(), i64::MIN, "1 has not been heard from");
        assert_eq!(c.live_sources(), 2);
        c.set_source(1);
        assert_eq!(c.admit(T), Admit::Accept, "its first event is not late");
        for i in 0..3 {
            c.admit(T + i);
        }
        assert_eq!(c.watermark(), T - 60_000);
        // Once idle (nothing to come after all), it holds nothing back.
        c.expect(2);
        c.set_source(0);
        c.admit(T + 600_000);
        assert_eq!(c.watermark(), T - 60_000);
        c.set_idle(1);
        c.set_idle(2);
        assert_eq!(c.watermark(), T + 598_000 - 60_000);
    }

    #[test]
    fn with_every_source_idle_the_watermark_holds() {
        let mut c = clock();
        for i in 0..5 {
            c.admit(T + i * 1_000);
        }
        let wm = c.watermark();
        c.set_idle(0);
        assert_eq!(c.live_sources(), 0);
        assert_eq!(c.watermark(), wm);
    }

    #[test]
    fn a_wild_first_event_is_outvoted() {
        let mut c = clock();
        assert_eq!(c.admit(4_070_908_800_000), Admit::Accept);
        assert_eq!(c.admit(T), Admit::Accept);
        assert_eq!(c.admit(T + 10), Admit::Accept);
        assert_eq!(c.now(), Some(T));
        assert_eq!(c.admit(T + 20), Admit::Accept);
        assert_eq!(c.now(), Some(T + 10));
    }
}
