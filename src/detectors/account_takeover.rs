//! `account_takeover`: someone got in where an attack was under way: a successful login
//! or `session.create` for an account under attack, or from an IP an IP rule flagged,
//! within the window. It also looks back: when an IP is flagged, the accounts it signed
//! into earlier in the window are reported ("which accounts did this IP get into?").
//! Anchor: Datadog rates a successful login from the attacking IP critical.

use compact_str::CompactString;

use crate::config::AccountTakeoverConfig;
use crate::detectors::Fire;
use crate::signal::{Counts, Entity, EntityType, Rule};

/// Recent successful sign-ins from one IP: (event time, account), oldest first. Names
/// are kept here, not looked up, because accounts that only ever sign in successfully
/// have no state of their own (that is most accounts). The first entry is inline: most
/// IPs sign in one account now and then.
#[derive(Default)]
pub enum Lookback {
    #[default]
    Empty,
    /// Every IP that signs anyone in has one, so it is kept to 32 bytes.
    One(Entry),
    /// Oldest first, grown one entry at a time: most IPs that sign in more than one
    /// account sign in two or three.
    Many(Vec<Entry>),
}

/// One sign-in: time in whole seconds, a 32-bit tag of the account's hash, the name.
/// Entries are matched by tag alone: a name over 24 bytes lives on the heap, and reading
/// it on every sign-in costs a cache miss. Two of an IP's few recent accounts sharing a
/// tag (about one in four billion) would only merge their look-back entries.
pub struct Entry {
    ts: u32,
    tag: u32,
    name: CompactString,
}

impl Entry {
    /// Overwrites the entry, reusing the name's heap buffer when it has one: freeing
    /// and allocating a name per sign-in was a tenth of the look-back's cost.
    fn set(&mut self, ts: u32, tag: u32, account: &str) {
        self.ts = ts;
        self.tag = tag;
        self.name.clear();
        self.name.push_str(account);
    }
}

fn secs(ms: i64) -> u32 {
    ms.div_euclid(1000).clamp(0, u32::MAX as i64) as u32
}

impl Lookback {
    /// Records a sign-in at `t` (ms) of `account` (whose stable hash is `hash`); entries
    /// before `horizon` (ms) are forgotten.
    pub fn push(&mut self, t: i64, account: &str, hash: u64, horizon: i64, cap: usize) {
        if cap == 0 {
            return;
        }
        let (t, horizon, tag) = (secs(t), secs(horizon), hash as u32);
        let entry = || Entry {
            ts: t,
            tag,
            name: CompactString::from(account),
        };
        match self {
            Lookback::Empty => *self = Lookback::One(entry()),
            Lookback::One(e) if e.tag == tag => e.ts = e.ts.max(t),
            Lookback::One(e) if e.ts < horizon || cap == 1 => e.set(t, tag, account),
            Lookback::One(e) => {
                let first = Entry {
                    ts: e.ts,
                    tag: e.tag,
                    name: std::mem::take(&mut e.name),
                };
                *self = Lookback::Many(vec![first, entry()]);
            }
            Lookback::Many(v) => {
                if v.first().is_some_and(|e| e.ts < horizon) {
                    v.retain(|e| e.ts >= horizon);
                }
                if let Some(e) = v.iter_mut().find(|e| e.tag == tag) {
                    e.ts = e.ts.max(t);
                    return;
                }
                if v.len() >= cap {
                    // The oldest entry becomes the newest, keeping its name's buffer.
                    v.rotate_left(1);
                    v.last_mut().expect("cap > 0").set(t, tag, account);
                    return;
                }
                if v.len() == v.capacity() {
                    v.reserve_exact(1);
                }
                v.push(entry());
            }
        }
    }

    /// Starts loading the entries kept on the heap, if any: all of them, since a push
    /// looks through them all (four entries span two or three lines; loading only the
    /// first left a push to stall on the rest).
    #[inline]
    pub fn prefetch(&self) {
        if let Lookback::Many(v) = self {
            crate::engine::prefetch_span(v.as_ptr().cast(), std::mem::size_of_val(v.as_slice()));
        }
    }

    /// Accounts signed into within `[from, to]` (ms; times have second resolution).
    pub fn within(&self, from: i64, to: i64) -> Vec<(i64, CompactString)> {
        let (from, to) = (secs(from), secs(to));
        let all: &[Entry] = match self {
            Lookback::Empty => &[],
            Lookback::One(e) => std::slice::from_ref(e),
            Lookback::Many(v) => v,
        };
        all.iter()
            .filter(|e| e.ts >= from && e.ts <= to)
            .map(|e| (e.ts as i64 * 1000, e.name.clone()))
            .collect()
    }

    pub fn heap_bytes(&self) -> usize {
        let name = |e: &Entry| {
            if e.name.is_heap_allocated() {
                e.name.capacity()
            } else {
                0
            }
        };
        match self {
            Lookback::Empty => 0,
            Lookback::One(e) => name(e),
            Lookback::Many(v) => {
                v.capacity() * std::mem::size_of::<Entry>() + v.iter().map(name).sum::<usize>()
            }
        }
    }
}

/// Why the sign-in is suspicious.
pub enum Cause<'a> {
    /// The IP was flagged by an IP rule.
    AttackerIp { rule: Rule, ip: &'a str },
    /// The account is under attack; `ip_attacked` if this IP took part.
    AccountUnderAttack { rule: Rule, ip_attacked: bool },
}

pub fn fire(
    cfg: &AccountTakeoverConfig,
    t: i64,
    account: &str,
    ip: &str,
    account_hash: u64,
    ip_hash: u64,
    cause: Cause<'_>,
) -> Fire {
    let (severity, because, how) = match cause {
        Cause::AttackerIp { rule, ip: flagged } => (
            cfg.severity_from_attacker_ip,
            format!("{rule} from {flagged}"),
            format!("from {flagged}, flagged by {rule}"),
        ),
        Cause::AccountUnderAttack { rule, ip_attacked } => (
            if ip_attacked {
                cfg.severity_from_attacker_ip
            } else {
                cfg.severity
            },
            format!("{rule} on {account}"),
            if ip_attacked {
                format!("from {ip}, which took part in the {rule} on it")
            } else {
                format!("from {ip} while under {rule}")
            },
        ),
    };
    Fire {
        rule: Rule::AccountTakeover,
        severity,
        ts: t,
        window: cfg.window,
        entity: Entity {
            kind: EntityType::Account,
            value: account.to_string(),
        },
        counts: Counts {
            successes: Some(1),
            ..Default::default()
        },
        thresholds: Counts {
            successes: Some(1),
            ..Default::default()
        },
        sample_accounts: vec![account_hash],
        sample_ips: vec![ip_hash],
        because: Some(because),
        trace_ids: Vec::new(),
        summary: format!("{account} signed in {how}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_bytes;

    fn push(l: &mut Lookback, t_s: i64, account: &str, horizon_s: i64, cap: usize) {
        l.push(
            t_s * 1000,
            account,
            hash_bytes(account.as_bytes()),
            horizon_s * 1000,
            cap,
        );
    }

    fn names(l: &Lookback, from_s: i64, to_s: i64) -> Vec<String> {
        l.within(from_s * 1000, to_s * 1000)
            .into_iter()
            .map(|(_, a)| a.to_string())
            .collect()
    }

    #[test]
    fn look_back_keeps_the_most_recent_accounts_per_ip_within_the_window() {
        let mut l = Lookback::default();
        push(&mut l, 10, "alice", 0, 4);
        push(&mut l, 20, "alice", 0, 4);
        assert!(
            matches!(l, Lookback::One(_)),
            "the same account again stays inline"
        );
        assert_eq!(
            l.within(0, 100_000),
            vec![(20_000, CompactString::from("alice"))]
        );
        for (t, a) in [(30, "bob"), (40, "carol"), (50, "dave"), (60, "erin")] {
            push(&mut l, t, a, 0, 4);
        }
        assert_eq!(
            names(&l, 0, 100),
            vec!["bob", "carol", "dave", "erin"],
            "alice was the oldest of five"
        );
        assert_eq!(names(&l, 35, 55), vec!["carol", "dave"]);
        push(&mut l, 100, "frank", 45, 4);
        assert_eq!(
            names(&l, 0, 200),
            vec!["dave", "erin", "frank"],
            "entries before the horizon are gone"
        );
    }

    #[test]
    fn an_old_single_entry_is_replaced_not_grown() {
        let mut l = Lookback::default();
        push(&mut l, 10, "alice", 0, 4);
        push(&mut l, 5000, "bob", 1000, 4);
        assert!(matches!(l, Lookback::One(_)));
        assert_eq!(names(&l, 0, 10_000), vec!["bob"]);
    }
}
