//! The rules, one file each. A detector reads the entity features the engine keeps
//! (`crate::engine::state`) plus any state of its own, and returns a [`Fire`] when its
//! threshold is crossed. The engine applies cooldowns, flags, and turns fires into
//! signals. Nothing here allocates unless a rule fires.

pub mod account_takeover;
pub mod bruteforce;
pub mod campaign_participant;
pub mod credential_stuffing;
pub mod credential_stuffing_slow;
pub mod distributed_bruteforce;
pub mod distributed_credential_stuffing;
pub mod ip_velocity;
pub mod user_enumeration;

use crate::config::Dur;
use crate::signal::{Counts, Entity, Rule, Severity};

/// What every detector call needs besides its own config and state.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    /// `signals.escalation_factor`.
    pub factor: f64,
    /// `signals.sample_size`.
    pub samples: usize,
    /// Stream watermark: state older than it minus a window is forgotten.
    pub watermark: i64,
}

/// A rule crossed its threshold. Sample members are hashes the engine resolves to names.
#[derive(Clone, Debug)]
pub struct Fire {
    pub rule: Rule,
    pub severity: Severity,
    /// Event time at which the threshold was crossed.
    pub ts: i64,
    pub window: Dur,
    pub entity: Entity,
    pub counts: Counts,
    pub thresholds: Counts,
    pub sample_accounts: Vec<u64>,
    pub sample_ips: Vec<u64>,
    pub because: Option<String>,
    /// Filled by the engine from the entity's recent events.
    pub trace_ids: Vec<String>,
    pub summary: String,
}

/// One signal per (rule, entity) per cooldown; a higher severity re-emits at once.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cooldown {
    until: i64,
    sev: Option<Severity>,
}

impl Cooldown {
    /// Whether a fire at `ts` and `sev` would be held back. Rules whose evidence is dear
    /// (a sketch count) ask before gathering it: an IP stuffing thousands of accounts
    /// crosses its threshold again with every failure.
    pub fn muted(&self, ts: i64, sev: Severity) -> bool {
        self.sev.is_some_and(|prev| ts < self.until && sev <= prev)
    }

    /// [`Cooldown::muted`] of the rule in an entity's [`Fired`], if any rule fired on it.
    pub fn muted_in(fired: Option<&Fired>, rule: Rule, ts: i64, sev: Severity) -> bool {
        fired.is_some_and(|f| f.cooldowns[rule.index()].muted(ts, sev))
    }

    pub fn allow(&mut self, ts: i64, sev: Severity, cooldown_ms: i64) -> bool {
        if self.muted(ts, sev) {
            return false;
        }
        // Never shortened: an event read behind the others (another partition) must
        // not reopen a cooldown a newer one started.
        self.until = self.until.max(ts.saturating_add(cooldown_ms));
        self.sev = Some(sev);
        true
    }
}

/// State an entity gets once a rule has fired on it: cooldowns, and for an IP the flag
/// that says whether a new flag is a new attack (for the takeover look-back). Whether an
/// entity is flagged at a time is answered by the engine's maps of [`Flag`]s.
#[derive(Clone, Debug, Default)]
pub struct Fired {
    pub cooldowns: [Cooldown; Rule::ALL.len()],
    pub flagged_until: i64,
    pub flag_rule: Option<Rule>,
}

impl Fired {
    pub fn flag(&mut self, rule: Rule, until: i64) {
        if until > self.flagged_until {
            self.flagged_until = until;
            self.flag_rule = Some(rule);
        }
    }
    pub fn flagged_at(&self, ts: i64) -> Option<Rule> {
        if ts <= self.flagged_until {
            self.flag_rule
        } else {
            None
        }
    }
}

/// When an entity counts as attacked (or under attack) for `account_takeover`, in event
/// time, and which rule said so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flag {
    pub from: i64,
    pub until: i64,
    pub rule: Rule,
}

impl Flag {
    pub fn new(from: i64, until: i64, rule: Rule) -> Flag {
        Flag { from, until, rule }
    }

    pub fn covers(&self, t: i64) -> bool {
        self.from <= t && t <= self.until
    }

    /// Takes in another flag on the same entity. A later one that starts after this
    /// ended replaces it (a new attack); otherwise the two make one span, named after
    /// the rule whose flag ends last. A span also covers any gap between flags read out
    /// of order, which in time order would have been two.
    pub fn cover(&mut self, other: Flag) {
        if other.from > self.until {
            *self = other;
            return;
        }
        self.from = self.from.min(other.from);
        if other.until > self.until {
            self.until = other.until;
            self.rule = other.rule;
        }
    }
}

/// How many timestamps a window keeps, as a multiple of the escalation count: beyond it
/// evidence counts saturate ("at least"). Only attacking keys ever fill a window.
pub const WINDOW_HEADROOM: usize = 4;

/// Timestamps kept for a rule with this threshold.
pub fn window_cap(threshold: u32, factor: f64) -> usize {
    escalation_count(threshold, factor) * WINDOW_HEADROOM
}

/// The count at which a rule's severity goes up one step.
pub fn escalation_count(threshold: u32, factor: f64) -> usize {
    ((threshold as f64) * factor)
        .ceil()
        .max(threshold as f64 + 1.0) as usize
}

/// Base severity, one step up at the escalation count.
pub fn severity_for(base: Severity, count: usize, esc: usize) -> Severity {
    if count >= esc { base.escalate() } else { base }
}

pub fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_read_behind_another_widens_it_and_a_later_attack_starts_afresh() {
        let mut f = Flag::new(1_000, 2_000, Rule::Bruteforce);
        f.cover(Flag::new(500, 1_500, Rule::DistributedBruteforce));
        assert_eq!(
            f,
            Flag::new(500, 2_000, Rule::Bruteforce),
            "read behind: widened"
        );
        assert!(f.covers(500) && f.covers(2_000) && !f.covers(499) && !f.covers(2_001));
        f.cover(Flag::new(1_800, 3_000, Rule::DistributedBruteforce));
        assert_eq!(f, Flag::new(500, 3_000, Rule::DistributedBruteforce));
        f.cover(Flag::new(5_000, 6_000, Rule::Bruteforce));
        assert_eq!(
            f,
            Flag::new(5_000, 6_000, Rule::Bruteforce),
            "after the last ended: a new attack, not one long one"
        );
    }
}
