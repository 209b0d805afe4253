//! Per-entity features shared by the detectors. Everything beyond a few words is boxed
//! and created only when needed: most IPs and accounts only ever log in successfully,
//! and they must stay cheap (the budget is 256 bytes per tracked key at a million keys).

use crate::detectors::{
    Fired, account_takeover, campaign_participant, credential_stuffing_slow,
    distributed_credential_stuffing, user_enumeration,
};
use crate::engine::distinct::DistinctWindow;
use crate::engine::window::TsWindow;

/// Up to three recent trace ids, stored inline (W3C trace ids are 32 hex characters).
#[derive(Clone, Debug, Default)]
pub struct Traces {
    ring: [TraceId; 3],
    next: u8,
}

#[derive(Clone, Copy, Debug, Default)]
struct TraceId {
    len: u8,
    bytes: [u8; 32],
}

impl Traces {
    pub fn push(&mut self, id: Option<&str>) {
        let Some(id) = id else { return };
        if id.is_empty() || id.len() > 32 {
            return;
        }
        let slot = &mut self.ring[self.next as usize % 3];
        slot.len = id.len() as u8;
        slot.bytes[..id.len()].copy_from_slice(id.as_bytes());
        self.next = self.next.wrapping_add(1);
    }

    /// Most recent first.
    pub fn recent(&self) -> impl Iterator<Item = &str> {
        (1..=3).filter_map(move |back| {
            let t = &self.ring[(self.next as usize + 3 - back) % 3];
            (t.len > 0).then(|| std::str::from_utf8(&t.bytes[..t.len as usize]).unwrap_or(""))
        })
    }
}

/// Slices in a [`SliceCounter`].
pub const SLICES: usize = 8;
const SL: i64 = SLICES as i64;

/// Counts per slice of a window, for success counts where an exact log is not worth its
/// memory: every IP has one (24 bytes), and the failure ratio it feeds is a soft
/// condition, so 1/8-window resolution is enough.
#[derive(Clone, Debug, Default)]
pub struct SliceCounter {
    head: i64,
    counts: [u16; SLICES],
}

impl SliceCounter {
    pub fn add(&mut self, ts: i64, slice_ms: i64) {
        let s = ts.div_euclid(slice_ms);
        if s > self.head {
            let gap = (s - self.head).min(SL);
            for k in 0..gap {
                self.counts[((s - k).rem_euclid(SL)) as usize] = 0;
            }
            self.head = s;
        } else if s <= self.head - SL {
            return;
        }
        let c = &mut self.counts[s.rem_euclid(SL) as usize];
        *c = c.saturating_add(1);
    }

    /// Sum over the slices overlapping `(end - SLICES slices, end]`.
    pub fn count(&self, end: i64, slice_ms: i64) -> u64 {
        let e = end.div_euclid(slice_ms).min(self.head);
        let lo = (end.div_euclid(slice_ms) - (SL - 1)).max(self.head - (SL - 1));
        (lo..=e)
            .map(|s| self.counts[s.rem_euclid(SL) as usize] as u64)
            .sum()
    }
}

#[derive(Default)]
pub struct IpState {
    /// Login attempts of any outcome (`ip_velocity`).
    pub attempts: TsWindow,
    /// Recent successful sign-ins from this IP (`account_takeover` looks back on them).
    pub successes: account_takeover::Lookback,
    /// Successful logins, for failure ratios.
    pub login_successes: SliceCounter,
    pub hot: Option<Box<IpHot>>,
    pub fired: Option<Box<Fired>>,
}

/// Created on an IP's first failure.
#[derive(Default)]
pub struct IpHot {
    pub failures: TsWindow,
    pub failing_accounts: DistinctWindow,
    pub enumeration: user_enumeration::IpState,
    pub slow: credential_stuffing_slow::IpState,
    pub traces: Traces,
}

#[derive(Default)]
pub struct AccountState {
    pub hot: Option<Box<AccountHot>>,
    pub fired: Option<Box<Fired>>,
}

/// Created on an account's first failure.
#[derive(Default)]
pub struct AccountHot {
    pub failures: TsWindow,
    pub failing_ips: DistinctWindow,
    pub traces: Traces,
}

#[derive(Default)]
pub struct ServiceState {
    pub dcs: distributed_credential_stuffing::ServiceState,
    /// While a campaign is active: who takes part.
    pub campaign: Option<Box<campaign_participant::Tracker>>,
    pub fired: Option<Box<Fired>>,
}

impl IpState {
    pub fn fired_mut(&mut self) -> &mut Fired {
        self.fired.get_or_insert_with(Default::default)
    }
    pub fn heap_bytes(&self) -> usize {
        self.attempts.heap_bytes()
            + self.successes.heap_bytes()
            + self.hot.as_ref().map_or(0, |h| {
                std::mem::size_of::<IpHot>()
                    + h.failures.heap_bytes()
                    + h.failing_accounts.heap_bytes()
                    + h.enumeration.heap_bytes()
                    + h.slow.heap_bytes()
            })
            + self
                .fired
                .as_ref()
                .map_or(0, |_| std::mem::size_of::<Fired>())
    }
}

impl AccountState {
    pub fn fired_mut(&mut self) -> &mut Fired {
        self.fired.get_or_insert_with(Default::default)
    }
    pub fn heap_bytes(&self) -> usize {
        self.hot.as_ref().map_or(0, |h| {
            std::mem::size_of::<AccountHot>() + h.failures.heap_bytes() + h.failing_ips.heap_bytes()
        }) + self
            .fired
            .as_ref()
            .map_or(0, |_| std::mem::size_of::<Fired>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_counter_slides() {
        let mut c = SliceCounter::default();
        for t in 0..80 {
            c.add(t, 10);
        }
        assert_eq!(c.count(79, 10), 80);
        c.add(100, 10);
        assert_eq!(
            c.count(100, 10),
            1 + 10 * 5,
            "slices 3..=7 remain, plus the new one"
        );
        assert_eq!(c.count(1000, 10), 0);
    }

    #[test]
    fn traces_keep_the_three_most_recent() {
        let mut t = Traces::default();
        for id in ["a", "b", "c", "d"] {
            t.push(Some(id));
        }
        assert_eq!(t.recent().collect::<Vec<_>>(), vec!["d", "c", "b"]);
    }
}
