//! `account_takeover`: someone got in where an attack was under way: a successful login
//! or `session.create` for an account under attack, or from an IP an IP rule flagged,
//! within the window. It also looks back: when an IP is flagged, the accounts it signed
//! into earlier in the window are reported ("which accounts did this IP get into?").
//! Anchor: Datadog rates a successful login from the attacking IP critical.

use crate::config::AccountTakeoverConfig;
use crate::detectors::Fire;
use crate::signal::{Counts, Entity, EntityType, Rule};

/// Recent successful sign-ins from one IP: (event time, account hash), oldest first.
#[derive(Default)]
pub struct Lookback {
    v: Vec<(i64, u64)>,
}

impl Lookback {
    pub fn push(&mut self, t: i64, account: u64, horizon: i64, cap: usize) {
        if self.v.first().is_some_and(|e| e.0 < horizon) {
            self.v.retain(|e| e.0 >= horizon);
        }
        if cap == 0 {
            return;
        }
        if let Some(e) = self.v.iter_mut().find(|e| e.1 == account) {
            e.0 = e.0.max(t);
            return;
        }
        if self.v.len() >= cap {
            self.v.remove(0);
        }
        if self.v.capacity() == 0 {
            self.v.reserve_exact(1);
        }
        self.v.push((t, account));
    }

    /// Accounts signed into within `[from, to]`.
    pub fn within(&self, from: i64, to: i64) -> impl Iterator<Item = (i64, u64)> + '_ {
        self.v
            .iter()
            .copied()
            .filter(move |e| e.0 >= from && e.0 <= to)
    }

    pub fn heap_bytes(&self) -> usize {
        self.v.capacity() * 16
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
