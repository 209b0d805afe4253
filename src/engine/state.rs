//! Per-entity features shared by the detectors. Everything beyond a few words is boxed
//! and created only when needed: most IPs and accounts only ever log in successfully,
//! and they must stay cheap (the budget is 256 bytes per tracked key at a million keys).

use crate::detectors::{
    Fired, account_takeover, campaign_participant, distributed_credential_stuffing,
    user_enumeration,
};
use crate::engine::distinct::DistinctWindow;
use crate::engine::window::TsWindow;

/// The two most recent trace ids, 16 bytes each: W3C ids (32 hex digits) and AWS X-Ray
/// ids (`1-5759e988-bd862e3fe1be46a994272793`, what Lambda emits) are 128 bits of hex and
/// are stored as such; other shapes are not kept. Every failing account and IP carries
/// this, so the text form (up to 35 bytes each) would cost more than the rest of it.
#[derive(Clone, Debug, Default)]
pub struct Traces {
    ids: [[u8; 16]; 2],
    /// 0: empty, 1: W3C, 2: X-Ray.
    kinds: [u8; 2],
    next: u8,
}

/// Lower-case hex digit values by byte, 0xff for anything else (upper case too: the id
/// must come back as the same text). One load per digit, where a range match took
/// several branches: every failure's trace id goes through here.
static LOWER_HEX: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 16 {
        t[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    t
};

fn unhex(s: &[u8], out: &mut [u8]) -> bool {
    if s.len() != out.len() * 2 {
        return false;
    }
    // Or-ing the digits keeps one branch per byte: any 0xff leaves the high bit set.
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let (h, l) = (LOWER_HEX[pair[0] as usize], LOWER_HEX[pair[1] as usize]);
        bad |= h | l;
        *o = (h << 4) | (l & 0xf);
    }
    bad & 0x80 == 0
}

impl Traces {
    pub fn push(&mut self, id: Option<&str>) {
        let Some(id) = id else { return };
        let b = id.as_bytes();
        let slot = self.next as usize % 2;
        let mut buf = [0u8; 16];
        let kind = if unhex(b, &mut buf) {
            1
        } else if b.len() == 35
            && b[0] == b'1'
            && b[1] == b'-'
            && b[10] == b'-'
            && unhex(&b[2..10], &mut buf[..4])
            && unhex(&b[11..], &mut buf[4..])
        {
            2
        } else {
            return;
        };
        self.ids[slot] = buf;
        self.kinds[slot] = kind;
        self.next = self.next.wrapping_add(1);
    }

    /// Most recent first, in their original text form.
    pub fn recent(&self) -> impl Iterator<Item = String> + '_ {
        (1..=2).filter_map(move |back| {
            let i = (self.next as usize + 2 - back) % 2;
            // Not `format!` per byte: that cost ~10,000 instructions a signal.
            let hex = crate::hash::hex(&self.ids[i]);
            match self.kinds[i] {
                1 => Some(hex),
                2 => Some(format!("1-{}-{}", &hex[..8], &hex[8..])),
                _ => None,
            }
        })
    }
}

/// Slices in a [`SliceCounter`].
pub const SLICES: usize = 6;
const SL: i64 = SLICES as i64;

/// Counts per slice of a window, for success counts where an exact log is not worth its
/// memory: every IP has one (16 bytes), and the failure ratio it feeds is a soft
/// condition, so 1/6-window resolution is enough.
#[derive(Clone, Debug, Default)]
pub struct SliceCounter {
    /// Newest slice index (event time / slice length; fits u32 for slices of a second
    /// or more until 2106).
    head: u32,
    counts: [u16; SLICES],
}

impl SliceCounter {
    pub fn add(&mut self, ts: i64, slice_ms: i64) {
        let s = ts.div_euclid(slice_ms).clamp(0, u32::MAX as i64);
        let head = self.head as i64;
        if s > head {
            let gap = (s - head).min(SL);
            for k in 0..gap {
                self.counts[((s - k).rem_euclid(SL)) as usize] = 0;
            }
            self.head = s as u32;
        } else if s <= head - SL {
            return;
        }
        let c = &mut self.counts[s.rem_euclid(SL) as usize];
        *c = c.saturating_add(1);
    }

    /// Sum over the slices overlapping `(end - SLICES slices, end]`.
    pub fn count(&self, end: i64, slice_ms: i64) -> u64 {
        let head = self.head as i64;
        let e = end.div_euclid(slice_ms).min(head);
        let lo = (end.div_euclid(slice_ms) - (SL - 1)).max(head - (SL - 1));
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
}

/// Created on an IP's first failure.
#[derive(Default)]
pub struct IpHot {
    pub failures: TsWindow,
    pub failing_accounts: DistinctWindow,
    /// Only IPs failing on accounts that do not exist need this.
    pub enumeration: Option<Box<user_enumeration::IpState>>,
    pub traces: Traces,
    /// Cooldowns and the flag, once a rule fired on this IP.
    pub fired: Option<Box<Fired>>,
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
    /// Sign-ins seen on this service: [successes, failures]; exported as a metric.
    pub logins: [u64; 2],
    pub dcs: distributed_credential_stuffing::ServiceState,
    /// While a campaign is active: who takes part.
    pub campaign: Option<Box<campaign_participant::Tracker>>,
    pub fired: Option<Box<Fired>>,
}

impl IpState {
    /// Starts loading everything an event may read behind the slot's pointers. The
    /// slot itself was just read, so these addresses are at hand, and the loads then
    /// overlap instead of each waiting for the one before.
    #[inline]
    pub fn prefetch(&self, failure: bool) {
        self.attempts.prefetch();
        if failure {
            if let Some(h) = &self.hot {
                crate::engine::prefetch((&**h as *const IpHot).cast());
            }
        } else {
            self.successes.prefetch();
        }
    }

    pub fn fired_mut(&mut self) -> &mut Fired {
        self.hot
            .get_or_insert_with(Default::default)
            .fired
            .get_or_insert_with(Default::default)
    }
    pub fn heap_bytes(&self) -> usize {
        self.attempts.heap_bytes()
            + self.successes.heap_bytes()
            + self.hot.as_ref().map_or(0, |h| {
                std::mem::size_of::<IpHot>()
                    + h.failures.heap_bytes()
                    + h.failing_accounts.heap_bytes()
                    + h.fired.as_ref().map_or(0, |_| std::mem::size_of::<Fired>())
                    + h.enumeration.as_ref().map_or(0, |e| {
                        std::mem::size_of::<user_enumeration::IpState>() + e.heap_bytes()
                    })
            })
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
        for t in 0..60 {
            c.add(t, 10);
        }
        assert_eq!(c.count(59, 10), 60);
        c.add(80, 10);
        assert_eq!(
            c.count(80, 10),
            1 + 10 * 3,
            "slices 3..=5 remain, plus the new one"
        );
        assert_eq!(c.count(1000, 10), 0);
    }

    #[test]
    fn traces_keep_the_two_most_recent_w3c_and_xray_ids_verbatim() {
        let mut t = Traces::default();
        let w3c = "4bf92f3577b34da6a3ce929d0e0e4736";
        let xray = "1-5759e988-bd862e3fe1be46a994272793";
        for id in [
            "00000000000000000000000000000001",
            w3c,
            "not-a-trace-id",
            xray,
        ] {
            t.push(Some(id));
        }
        assert_eq!(
            t.recent().collect::<Vec<_>>(),
            vec![xray.to_string(), w3c.to_string()]
        );
    }

    proptest::proptest! {
        /// The table-driven decoder accepts exactly lower-case hex, and decodes it as
        /// `u8::from_str_radix` does, pair by pair.
        #[test]
        fn unhex_accepts_exactly_lower_case_hex(
            s in "[0-9a-fA-F\\-g ]{0,34}",
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..34),
        ) {
            for s in [s.as_bytes(), &bytes[..]] {
                let mut out = vec![0u8; s.len() / 2];
                let got = unhex(s, &mut out);
                let lower = |c: &u8| c.is_ascii_digit() || (b'a'..=b'f').contains(c);
                let want = s.len() % 2 == 0 && s.iter().all(lower);
                proptest::prop_assert_eq!(got, want, "{:?}", s);
                if want {
                    for (pair, o) in s.chunks(2).zip(&out) {
                        let v = u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap();
                        proptest::prop_assert_eq!(*o, v);
                    }
                }
            }
        }
    }
}
