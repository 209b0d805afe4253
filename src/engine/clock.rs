//! Event time: the watermark, late events, and containment of wild timestamps.
//!
//! Time is the maximum event time seen; the watermark trails it by the allowed lateness.
//! One bad clock must not move time for everyone: a timestamp more than
//! `max_forward_jump` ahead of the stream is rejected unless `jump_confirmations`
//! consecutive events agree with it (a real gap in traffic, e.g. a replay across a quiet
//! night, confirms itself within a few events). Until that many events have supported the
//! current time, an event far behind it wins instead, so a wild *first* event cannot
//! strand the stream in the future either. All of this is a function of the input order
//! only, so replays are deterministic.

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
    confirmations: u32,
    max_ts: Option<i64>,
    /// Events seen within `max_jump` of the current time since it was set.
    support: u32,
    /// A run of consecutive far-future events: (earliest ts of the run, run length).
    pending: Option<(i64, u32)>,
}

impl Clock {
    pub fn new(cfg: &TimeConfig) -> Clock {
        Clock {
            lateness: cfg.allowed_lateness.ms(),
            max_jump: cfg.max_forward_jump.ms(),
            confirmations: cfg.jump_confirmations.max(1),
            max_ts: None,
            support: 0,
            pending: None,
        }
    }

    /// The watermark: events before it are late; state older than it minus a window is
    /// gone. `i64::MIN` before the first event.
    pub fn watermark(&self) -> i64 {
        self.max_ts.map_or(i64::MIN, |m| m - self.lateness)
    }

    pub fn max_ts(&self) -> Option<i64> {
        self.max_ts
    }

    pub fn admit(&mut self, ts: i64) -> Admit {
        let Some(max) = self.max_ts else {
            self.max_ts = Some(ts);
            self.support = 1;
            return Admit::Accept;
        };
        if ts > max.saturating_add(self.max_jump) {
            let run = match self.pending {
                Some((first, n)) if (ts - first).abs() <= self.max_jump => (first.min(ts), n + 1),
                _ => (ts, 1),
            };
            if run.1 >= self.confirmations {
                self.pending = None;
                self.max_ts = Some(ts);
                self.support = run.1;
                return Admit::Accept;
            }
            self.pending = Some(run);
            return Admit::Jump;
        }
        self.pending = None;
        if ts < max - self.max_jump && self.support < self.confirmations {
            // The current time rests on fewer events than a jump would need: it was the
            // outlier, not this one.
            self.max_ts = Some(ts);
            self.support = 1;
            return Admit::Accept;
        }
        if ts < max - self.lateness {
            return Admit::Late;
        }
        if ts >= max - self.max_jump {
            self.support = self.support.saturating_add(1);
        }
        if ts > max {
            self.max_ts = Some(ts);
        }
        Admit::Accept
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
        assert_eq!(c.admit(T), Admit::Accept);
        assert_eq!(c.admit(T + 120_000), Admit::Accept);
        assert_eq!(
            c.admit(T + 60_000),
            Admit::Accept,
            "exactly at the watermark is on time"
        );
        assert_eq!(c.admit(T + 59_999), Admit::Late);
    }

    #[test]
    fn a_single_far_future_event_does_not_move_time() {
        let mut c = clock();
        c.admit(T);
        c.admit(T + 1000);
        c.admit(T + 2000);
        let y2099 = 4_070_908_800_000;
        assert_eq!(c.admit(y2099), Admit::Jump);
        assert_eq!(c.admit(T + 3000), Admit::Accept);
        assert_eq!(c.max_ts(), Some(T + 3000));
    }

    #[test]
    fn a_real_gap_confirms_itself() {
        let mut c = clock();
        for i in 0..5 {
            c.admit(T + i);
        }
        let later = T + 3 * 3_600_000;
        assert_eq!(c.admit(later), Admit::Jump);
        assert_eq!(c.admit(later + 10), Admit::Jump);
        assert_eq!(c.admit(later + 20), Admit::Accept);
        assert_eq!(c.max_ts(), Some(later + 20));
        assert_eq!(c.admit(T), Admit::Late);
    }

    #[test]
    fn a_wild_first_event_is_overruled() {
        let mut c = clock();
        assert_eq!(c.admit(4_070_908_800_000), Admit::Accept);
        assert_eq!(c.admit(T), Admit::Accept);
        assert_eq!(c.max_ts(), Some(T));
        assert_eq!(c.admit(T + 10), Admit::Accept);
    }
}
