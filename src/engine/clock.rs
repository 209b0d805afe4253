//! Event time: the watermark, late events, and containment of wild timestamps.
//!
//! Stream time is the K-th largest event time accepted (K = `time.jump_confirmations`),
//! not the largest: one or two events from a broken clock can never move it, so they
//! cannot make everyone else's events look late. The watermark trails it by the allowed
//! lateness. An event more than `max_forward_jump` ahead is rejected unless K such events
//! agree with each other (within `max_forward_jump`): a real gap in traffic, e.g. a
//! replay across a quiet night, confirms itself within K events; random wild clocks never
//! do. Until K events have been seen, time is not established and nothing is late or
//! rejected as a jump. Everything here depends on the input order only, so replays are
//! deterministic.

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

#[derive(Clone, Debug)]
pub struct Clock {
    lateness: i64,
    max_jump: i64,
    k: usize,
    /// The K largest accepted event times, largest first.
    top: Vec<i64>,
    /// Rejected far-future times waiting for agreement.
    pending: Vec<i64>,
}

impl Clock {
    pub fn new(cfg: &TimeConfig) -> Clock {
        let k = cfg.jump_confirmations.max(1) as usize;
        Clock {
            lateness: cfg.allowed_lateness.ms(),
            max_jump: cfg.max_forward_jump.ms(),
            k,
            top: Vec::with_capacity(k + 1),
            pending: Vec::new(),
        }
    }

    /// Stream time: the K-th largest accepted event time (the smallest kept, before K
    /// events). `None` before the first event.
    pub fn now(&self) -> Option<i64> {
        self.top.last().copied()
    }

    /// Events before the watermark are late; state older than it minus a window is gone.
    pub fn watermark(&self) -> i64 {
        self.now().map_or(i64::MIN, |m| m - self.lateness)
    }

    /// The newest event time accepted, leaving out a wild clock accepted before time was
    /// established.
    pub fn max_ts(&self) -> Option<i64> {
        let ahead = self.horizon_ahead();
        self.top.iter().copied().find(|&t| t <= ahead)
    }

    /// Anything after this is a wild clock, not the stream running ahead.
    pub fn horizon_ahead(&self) -> i64 {
        self.now()
            .map_or(i64::MAX, |m| m.saturating_add(self.max_jump))
    }

    pub fn admit(&mut self, ts: i64) -> Admit {
        let established = self.top.len() >= self.k;
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
        if established && ts < self.now_with(ts) - self.lateness {
            return Admit::Late;
        }
        self.insert(ts);
        Admit::Accept
    }

    /// Stream time if `ts` were accepted: the K-th largest of `top ∪ {ts}` (K entries kept).
    fn now_with(&self, ts: i64) -> i64 {
        let k = self.k;
        let kth = self.top[k - 1];
        if ts <= kth {
            kth
        } else if k == 1 {
            ts
        } else {
            ts.min(self.top[k - 2])
        }
    }

    fn insert(&mut self, ts: i64) {
        let pos = self.top.partition_point(|&x| x > ts);
        if pos < self.k {
            self.top.insert(pos, ts);
            self.top.truncate(self.k);
        }
        let now = self.now().unwrap_or(i64::MIN);
        self.pending
            .retain(|&p| p > now.saturating_add(self.max_jump));
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
