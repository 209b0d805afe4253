//! Decisions: what a WAF or API gateway should do about a signal's entity.
//!
//! `ban` an IP (or an IPv6 prefix), `challenge` (step-up, MFA) or `ban` an account, each
//! for a TTL set by rule and severity and lengthened for repeat offenders. The pipeline
//! thread decides (it owns the repeat-offender memory); the table is a `DashMap`
//! because the HTTP API reads it from other threads. Decisions live in wall-clock time:
//! they are enforced now, whatever the event time of the attack was.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::config::{Action, DecisionsConfig};
use crate::event::format_ts;
use crate::normalize::{Cidr, CidrSet, parse_ip};
use crate::signal::{EntityType, Signal};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Ip,
    /// An IPv6 prefix (`2001:db8:1:2::/64`): the engine counts IPv6 clients per prefix.
    Range,
    Account,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ip => "ip",
            Scope::Range => "range",
            Scope::Account => "account",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// `<scope>:<value>`: one decision per entity; also the Kafka key.
    pub id: String,
    pub scope: Scope,
    pub value: String,
    #[serde(rename = "type")]
    pub action: Action,
    pub duration_s: i64,
    /// RFC 3339, wall clock.
    pub created: String,
    pub until: String,
    pub rule: String,
    pub severity: String,
    pub signal_id: String,
    /// 1 for a first offence; n for the n-th decision on this entity in the repeat window.
    pub offence: u32,
    pub reason: String,
    #[serde(skip)]
    pub created_ms: i64,
    #[serde(skip)]
    pub until_ms: i64,
}

impl Decision {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("decisions serialize")
    }

    /// Whether this decision covers the address (an IP equal to it, or in its range).
    pub fn covers_ip(&self, ip: std::net::IpAddr) -> bool {
        match self.scope {
            Scope::Ip => parse_ip(&self.value) == Some(ip),
            Scope::Range => self
                .value
                .parse::<Cidr>()
                .map(|c| c.contains(ip))
                .unwrap_or(false),
            Scope::Account => false,
        }
    }
}

/// Turns signals into decisions. Owned by the pipeline thread.
pub struct Decider {
    cfg: DecisionsConfig,
    allow: CidrSet,
    /// Entity id -> (offences in the repeat window, last offence ms).
    offences: HashMap<String, (u32, i64)>,
    /// When entities past the repeat window are next forgotten.
    next_prune_ms: i64,
}

/// Forgetting scans every entity, so at most once a minute: it ran at every decision
/// once a million were remembered, all of them recent in a big enough attack.
const PRUNE_EVERY_MS: i64 = 60_000;

/// Entities remembered as offenders, per decision `decisions.max_active` allows: an
/// attack from a million addresses within the repeat window would otherwise be
/// remembered a million times over (~90 bytes each). Past it, those whose last offence
/// is oldest are forgotten first: a repeat from them is a first offence again.
const OFFENDERS_PER_DECISION: usize = 4;

impl Decider {
    pub fn new(cfg: &DecisionsConfig, allow: CidrSet) -> Decider {
        Decider {
            cfg: cfg.clone(),
            allow,
            offences: HashMap::new(),
            next_prune_ms: i64::MIN,
        }
    }

    /// The decision a signal calls for, if any, made at wall-clock `now_ms`.
    pub fn decide(&mut self, s: &Signal, now_ms: i64) -> Option<Decision> {
        if !self.cfg.enabled {
            return None;
        }
        let rule_cfg = self.cfg.rules.get(s.rule);
        if rule_cfg.action == Action::None {
            return None;
        }
        let scope = match s.entity.kind {
            EntityType::Ip if s.entity.value.contains('/') => Scope::Range,
            EntityType::Ip => Scope::Ip,
            EntityType::Account => Scope::Account,
            EntityType::Service => return None,
        };
        if scope != Scope::Account && self.allowlisted(&s.entity.value) {
            return None;
        }
        let id = format!("{}:{}", scope.as_str(), s.entity.value);
        let window = self.cfg.repeat_window.ms();
        let entry = self.offences.entry(id.clone()).or_insert((0, i64::MIN));
        if entry.1 == i64::MIN || now_ms - entry.1 > window {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = now_ms;
        let offence = entry.0;
        let factor = self.cfg.severity_factor.get(s.severity);
        let base = rule_cfg.ttl.ms() as f64 * factor;
        let repeat = 2f64.powi(offence.saturating_sub(1).min(30) as i32);
        let ttl = ((base * repeat) as i64)
            .min(self.cfg.max_ttl.ms())
            .max(1000);
        let until = now_ms + ttl;
        let cap = self.cfg.max_active.saturating_mul(OFFENDERS_PER_DECISION);
        if now_ms >= self.next_prune_ms || self.offences.len() > cap {
            self.offences
                .retain(|_, (_, last)| now_ms - *last <= window);
            self.next_prune_ms = now_ms.saturating_add(PRUNE_EVERY_MS);
            if self.offences.len() > cap {
                forget_oldest(&mut self.offences, cap);
            }
        }
        Some(Decision {
            id,
            scope,
            value: s.entity.value.clone(),
            action: rule_cfg.action,
            duration_s: ttl / 1000,
            created: format_ts(now_ms),
            until: format_ts(until),
            rule: s.rule.as_str().to_string(),
            severity: s.severity.as_str().to_string(),
            signal_id: s.signal_id.clone(),
            offence,
            reason: s.summary.clone(),
            created_ms: now_ms,
            until_ms: until,
        })
    }

    /// Forgets the entity's earlier offences: a lifted decision was a mistake, so the
    /// next one, if the entity is signalled again, is a first offence, not a doubled TTL.
    pub fn forgive(&mut self, id: &str) {
        self.offences.remove(id);
    }

    fn allowlisted(&self, value: &str) -> bool {
        let addr = value.split('/').next().unwrap_or(value);
        parse_ip(addr).is_some_and(|ip| self.allow.contains(ip))
    }
}

/// What `POST /v1/decisions` asks for: one entity (`ip`, `range` or `account`), what to
/// do, for how long, and why.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualRequest {
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub range: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
    /// `ban` (the default) or `challenge`.
    #[serde(rename = "type", default = "ban")]
    pub action: Action,
    /// `30m`, `4h`, `7d`: from one second to 366 days.
    pub duration: String,
    /// Who asked and why, for whoever reads the decision later: required.
    pub reason: String,
}

fn ban() -> Action {
    Action::Ban
}

/// The rule named by decisions added by hand.
pub const MANUAL_RULE: &str = "manual";

const MAX_MANUAL_MS: i64 = 366 * 24 * 3_600_000;
const MAX_REASON_BYTES: usize = 1000;

impl ManualRequest {
    /// The decision asked for, made at wall-clock `now_ms`, keyed as the engine keys
    /// its entities (an address in canonical form, an account lower-cased if
    /// `lowercase_accounts`); or what is wrong with the request, naming the field.
    /// Allowlisted networks are refused, as they never get decisions from signals.
    pub fn decision(
        &self,
        now_ms: i64,
        lowercase_accounts: bool,
        allow: &CidrSet,
    ) -> Result<Decision, String> {
        let (scope, value) = match (&self.ip, &self.range, &self.account) {
            (Some(ip), None, None) => {
                let a = parse_ip(ip).ok_or_else(|| format!("ip: `{ip}` is not an IP address"))?;
                if allow.contains(a) {
                    return Err(format!("ip: {a} is in normalize.allowlist"));
                }
                (Scope::Ip, a.to_string())
            }
            (None, Some(r), None) => {
                let c: Cidr = r.parse().map_err(|e| format!("range: {e}"))?;
                let text = c.to_string();
                let first = text.split('/').next().and_then(parse_ip);
                if first.is_some_and(|a| allow.contains(a)) {
                    return Err(format!("range: {text} is in normalize.allowlist"));
                }
                (Scope::Range, text)
            }
            (None, None, Some(acct)) => {
                let name = crate::normalize::account_name(acct.into(), lowercase_accounts);
                if name.trim().is_empty() {
                    return Err("account: must not be empty".into());
                }
                (Scope::Account, name.into_owned())
            }
            _ => return Err("give exactly one of ip, range and account".into()),
        };
        if self.action == Action::None {
            return Err("type: ban or challenge (none is no decision)".into());
        }
        let ttl = self
            .duration
            .parse::<crate::config::Dur>()
            .map_err(|e| format!("duration: {e}"))?
            .ms();
        if !(1000..=MAX_MANUAL_MS).contains(&ttl) {
            return Err("duration: from 1s to 366d".into());
        }
        let reason = self.reason.trim();
        if reason.is_empty() || reason.len() > MAX_REASON_BYTES {
            return Err(format!(
                "reason: say who asked and why (1 to {MAX_REASON_BYTES} bytes)"
            ));
        }
        let id = format!("{}:{value}", scope.as_str());
        let until = now_ms + ttl;
        let signal_id = format!(
            "manual-{:016x}",
            crate::hash::hash_bytes(format!("{id}\0{now_ms}").as_bytes())
        );
        Ok(Decision {
            id,
            scope,
            value,
            action: self.action,
            duration_s: ttl / 1000,
            created: format_ts(now_ms),
            until: format_ts(until),
            rule: MANUAL_RULE.into(),
            severity: "high".into(),
            signal_id,
            offence: 1,
            reason: reason.into(),
            created_ms: now_ms,
            until_ms: until,
        })
    }
}

/// Cuts the offenders remembered down to 99 % of `cap`, forgetting those whose last
/// offence is oldest; the slack makes it one scan per 1 % of `cap` new offenders.
fn forget_oldest(offences: &mut HashMap<String, (u32, i64)>, cap: usize) {
    let mut lasts: Vec<i64> = offences.values().map(|&(_, last)| last).collect();
    let n = lasts.len().saturating_sub(cap - cap / 100);
    if n == 0 {
        return;
    }
    let (_, &mut cut, _) = lasts.select_nth_unstable(n - 1);
    // Ties at the cut are all forgotten: a few more than 1 % at worst.
    offences.retain(|_, (_, last)| *last > cut);
}

/// Active decisions, readable from any thread.
pub struct DecisionTable {
    active: DashMap<String, Decision>,
    /// The most decisions held (`decisions.max_active`, set from the config by the
    /// pipeline): an attack from a million addresses would otherwise hold a million
    /// decisions, each a few hundred bytes, and every poll without `since` returns all.
    max_active: AtomicUsize,
    /// Decisions dropped to stay within `max_active` that the pipeline has yet to end
    /// on the topic (a tombstone); drained every second.
    evicted: Mutex<Vec<Decision>>,
    /// Recently ended decisions, for `?since=` polling: (ended ms, decision).
    ended: Mutex<VecDeque<(i64, Decision)>>,
    /// Decisions added through the API that the pipeline has yet to publish on the
    /// topic (for every other instance); drained every second.
    added: Mutex<Vec<Decision>>,
    /// Decisions lifted through the API that the pipeline has yet to end on the topic
    /// (a tombstone) and forgive (`Decider::forgive`). At most one per decision the
    /// table held, and drained every second.
    lifted: Mutex<Vec<Decision>>,
    /// Decisions ended early here (lifted, or evicted while the table was full), by id:
    /// (created ms, until ms). Until its tombstone is read back, this instance may still
    /// read the decision's own record from the topic, and that must not bring it back;
    /// a newer decision on the entity is welcome. Evictions are remembered only while
    /// this holds fewer than `max_active`: past that, a record read back is evicted again.
    ended_early: DashMap<String, (i64, i64)>,
}

impl Default for DecisionTable {
    fn default() -> Self {
        DecisionTable {
            active: DashMap::new(),
            max_active: AtomicUsize::new(DecisionsConfig::default().max_active),
            evicted: Mutex::new(Vec::new()),
            added: Mutex::new(Vec::new()),
            ended: Mutex::new(VecDeque::new()),
            lifted: Mutex::new(Vec::new()),
            ended_early: DashMap::new(),
        }
    }
}

/// How long ended decisions are remembered for incremental polling.
const ENDED_KEEP_MS: i64 = 24 * 3_600_000;
const ENDED_MAX: usize = 100_000;

impl DecisionTable {
    pub fn new() -> DecisionTable {
        DecisionTable::default()
    }

    /// Sets `decisions.max_active`; a table over it is cut down at its next upsert.
    pub fn set_max_active(&self, n: usize) {
        self.max_active.store(n.max(1), Ordering::Relaxed);
    }

    /// Adds a decision, or strengthens the one already held for its entity: a ban
    /// outranks a challenge, and a later end extends. Returns whether it changed. A
    /// table over `max_active` then drops its weakest decisions (see `evict`), ending
    /// them at wall-clock `now_ms`.
    pub fn upsert(&self, d: Decision, now_ms: i64) -> bool {
        use dashmap::mapref::entry::Entry;
        // The entry holds its shard's lock, which `len` and `evict` would wait on.
        let (changed, added) = match self.active.entry(d.id.clone()) {
            Entry::Vacant(v) => {
                v.insert(d);
                (true, true)
            }
            Entry::Occupied(mut o) => {
                let cur = o.get();
                let stronger = d.action > cur.action;
                let longer = d.action == cur.action && d.until_ms > cur.until_ms;
                if stronger || longer {
                    o.insert(d);
                    (true, false)
                } else {
                    (false, false)
                }
            }
        };
        if added {
            let cap = self.max_active.load(Ordering::Relaxed);
            if self.active.len() > cap {
                self.evict(cap, now_ms);
            }
        }
        changed
    }

    /// Cuts a table over `cap` down to 99 % of it, dropping the weakest decisions: a
    /// challenge before a ban, and among those the one ending soonest (it protects for
    /// the least time). The 1 % of slack makes a flood at the cap scan the table once
    /// per 1 % of it, not once per decision. Dropped decisions end as expired ones do
    /// (bouncers polling `?since=` see them deleted) and wait in `take_evicted` for
    /// their tombstones.
    fn evict(&self, cap: usize, now_ms: i64) {
        let target = cap - cap / 100;
        let mut all: Vec<(Action, i64, String)> = self
            .active
            .iter()
            .map(|e| (e.action, e.until_ms, e.key().clone()))
            .collect();
        let n = all.len().saturating_sub(target);
        if n == 0 {
            return;
        }
        if n < all.len() {
            all.select_nth_unstable(n - 1);
        }
        let mut gone = Vec::with_capacity(n);
        for (_, _, id) in all.into_iter().take(n) {
            if let Some((_, d)) = self.active.remove(&id) {
                if self.ended_early.len() < cap {
                    self.ended_early
                        .insert(d.id.clone(), (d.created_ms, d.until_ms));
                }
                gone.push(d);
            }
        }
        self.record_ended(&gone, now_ms);
        self.evicted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(gone);
    }

    /// Adds a decision made by hand (`ManualRequest::decision`), as `upsert` does, and
    /// queues it for the pipeline to publish. Returns the decision now in force on its
    /// entity, and whether it is this one: a stronger or longer one already held stays.
    pub fn add(&self, d: Decision, now_ms: i64) -> (Decision, bool) {
        let id = d.id.clone();
        if self.upsert(d.clone(), now_ms) {
            self.added
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(d.clone());
            return (d, true);
        }
        (self.get(&id).unwrap_or(d), false)
    }

    /// The decisions added by hand since the last call (for the pipeline to publish).
    pub fn take_added(&self) -> Vec<Decision> {
        std::mem::take(&mut *self.added.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The decision in force on the entity `id` (`scope:value`), if any.
    pub fn get(&self, id: &str) -> Option<Decision> {
        self.active.get(id).map(|e| e.value().clone())
    }

    /// The decisions evicted since the last call (for the pipeline's tombstones).
    pub fn take_evicted(&self) -> Vec<Decision> {
        std::mem::take(&mut *self.evicted.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Removes decisions whose time is up; returns them (for tombstones).
    pub fn expire(&self, now_ms: i64) -> Vec<Decision> {
        let mut gone = Vec::new();
        if !self.ended_early.is_empty() {
            self.ended_early.retain(|_, (_, until)| *until > now_ms);
        }
        self.active.retain(|_, d| {
            if d.until_ms <= now_ms {
                gone.push(d.clone());
                false
            } else {
                true
            }
        });
        if !gone.is_empty() {
            self.record_ended(&gone, now_ms);
        }
        gone
    }

    /// Keeps decisions that ended at `now_ms` for `?since=` pollers, forgetting the
    /// oldest past `ENDED_MAX` or `ENDED_KEEP_MS`.
    fn record_ended(&self, gone: &[Decision], now_ms: i64) {
        let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        for d in gone {
            ended.push_back((now_ms, d.clone()));
        }
        while ended.len() > ENDED_MAX
            || ended
                .front()
                .is_some_and(|(t, _)| now_ms - t > ENDED_KEEP_MS)
        {
            ended.pop_front();
        }
    }

    /// Ends a decision another instance ended (a tombstone on the decisions topic).
    pub fn remove(&self, id: &str, now_ms: i64) -> Option<Decision> {
        let (_, d) = self.active.remove(id)?;
        self.record_ended(std::slice::from_ref(&d), now_ms);
        Some(d)
    }

    /// Lifts a decision by hand (a false positive): it ends here at once, as an expired
    /// one does (bouncers polling `?since=` see it deleted), and the pipeline ends it on
    /// the decisions topic (a tombstone, within a second), for every other instance.
    /// `None` if no decision with this id is active.
    pub fn lift(&self, id: &str, now_ms: i64) -> Option<Decision> {
        let d = self.remove(id, now_ms)?;
        self.ended_early
            .insert(d.id.clone(), (d.created_ms, d.until_ms));
        self.lifted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(d.clone());
        Some(d)
    }

    /// The decisions lifted since the last call (for the pipeline).
    pub fn take_lifted(&self) -> Vec<Decision> {
        std::mem::take(&mut *self.lifted.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A decision read back from the decisions topic (this instance's or another's).
    /// Returns false for records that are not decisions or have already ended.
    pub fn learn(&self, json: &[u8], now_ms: i64) -> bool {
        let Ok(mut d) = serde_json::from_slice::<Decision>(json) else {
            return false;
        };
        let (Some(created), Some(until)) = (
            crate::event::parse_rfc3339_ms(&d.created),
            crate::event::parse_rfc3339_ms(&d.until),
        ) else {
            return false;
        };
        d.created_ms = created;
        d.until_ms = until;
        if until <= now_ms {
            return false;
        }
        if self.ended_early.get(&d.id).is_some_and(|l| created <= l.0) {
            return false;
        }
        self.upsert(d, now_ms);
        true
    }

    pub fn len(&self) -> usize {
        self.active.len()
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// Active decisions matching the filter, oldest first; with `since`, only those
    /// created after it, plus those that ended after it.
    pub fn query(&self, q: &Query, now_ms: i64) -> (Vec<Decision>, Vec<Decision>) {
        let matches = |d: &Decision| {
            q.ip.is_none_or(|ip| d.covers_ip(ip))
                && q.account
                    .as_deref()
                    .is_none_or(|a| d.scope == Scope::Account && d.value == a)
        };
        let mut active: Vec<Decision> = self
            .active
            .iter()
            .map(|e| e.value().clone())
            .filter(|d| d.until_ms > now_ms && matches(d))
            .filter(|d| q.since_ms.is_none_or(|s| d.created_ms > s))
            .collect();
        active.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        let ended = match q.since_ms {
            None => Vec::new(),
            Some(s) => self
                .ended
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(t, d)| *t > s && matches(d))
                .map(|(_, d)| d.clone())
                .collect(),
        };
        (active, ended)
    }

    /// Counts by (action, scope), for the metrics gauge.
    pub fn counts(&self) -> Vec<((Action, Scope), i64)> {
        let mut m: HashMap<(Action, Scope), i64> = HashMap::new();
        for e in self.active.iter() {
            *m.entry((e.action, e.scope)).or_default() += 1;
        }
        m.into_iter().collect()
    }
}

#[derive(Clone, Debug, Default)]
pub struct Query {
    pub ip: Option<std::net::IpAddr>,
    pub account: Option<String>,
    pub since_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::signal::{Entity, Evidence, Rule, Severity};

    fn signal(rule: Rule, sev: Severity, kind: EntityType, value: &str) -> Signal {
        let entity = Entity {
            kind,
            value: value.into(),
        };
        Signal {
            signal_id: Signal::make_id(rule, &entity, 0),
            rule,
            severity: sev,
            entity,
            ts: "2026-11-21T10:00:00Z".into(),
            window: "10m".into(),
            service: None,
            evidence: Evidence::default(),
            summary: "s".into(),
            ts_ms: 0,
        }
    }

    /// The signal most decisions come from: a high `credential_stuffing` on an IP.
    fn stuffing_signal(ip: &str) -> Signal {
        signal(Rule::CredentialStuffing, Severity::High, EntityType::Ip, ip)
    }

    const NOW: i64 = 1_800_000_000_000;

    fn decider() -> Decider {
        let cfg = Config::default();
        Decider::new(
            &cfg.decisions,
            CidrSet::new(vec!["198.51.100.0/24".parse().unwrap()]),
        )
    }

    #[test]
    fn stuffing_bans_the_ip_for_fifteen_minutes_and_longer_when_it_comes_back() {
        let mut d = decider();
        let s = stuffing_signal("203.0.113.7");
        let first = d.decide(&s, NOW).unwrap();
        assert_eq!((first.action, first.scope), (Action::Ban, Scope::Ip));
        assert_eq!(first.duration_s, 15 * 60);
        let second = d.decide(&s, NOW + 20 * 60_000).unwrap();
        assert_eq!((second.offence, second.duration_s), (2, 30 * 60));
        let later = d.decide(&s, NOW + 3 * 24 * 3_600_000).unwrap();
        assert_eq!(later.offence, 1, "the repeat window has passed");
    }

    #[test]
    fn offenders_past_the_repeat_window_are_forgotten_within_a_minute() {
        let mut d = decider();
        let day = Config::default().decisions.repeat_window.ms();
        let sec = 1000;
        for (ip, t) in [("203.0.113.7", 0), ("203.0.113.8", day - 30 * sec)] {
            d.decide(&stuffing_signal(ip), NOW + t).unwrap();
        }
        d.decide(&stuffing_signal("203.0.113.9"), NOW + day + 10 * sec)
            .unwrap();
        assert_eq!(d.offences.len(), 3, "pruned at most once a minute");
        d.decide(&stuffing_signal("203.0.113.10"), NOW + day + 31 * sec)
            .unwrap();
        assert!(!d.offences.contains_key("ip:203.0.113.7"));
        assert_eq!(d.offences.len(), 3);
    }

    #[test]
    fn offenders_beyond_four_per_decision_held_are_forgotten_oldest_first() {
        let mut cfg = Config::default().decisions;
        cfg.max_active = 100;
        let mut d = Decider::new(&cfg, CidrSet::new(vec![]));
        let ip = |i: usize| format!("192.0.{}.{}", i / 256, i % 256);
        for i in 0..400 {
            d.decide(&stuffing_signal(&ip(i)), NOW + i as i64).unwrap();
        }
        assert_eq!(d.offences.len(), 400, "at the cap, nothing forgotten");
        d.decide(&stuffing_signal(&ip(400)), NOW + 400).unwrap();
        assert_eq!(d.offences.len(), 396, "down to 99 % of the cap");
        for i in 0..5 {
            assert!(!d.offences.contains_key(&format!("ip:{}", ip(i))));
        }
        // A forgotten offender is a first offender again; a remembered one is not.
        assert_eq!(
            d.decide(&stuffing_signal(&ip(0)), NOW + 500)
                .unwrap()
                .offence,
            1
        );
        assert_eq!(
            d.decide(&stuffing_signal(&ip(5)), NOW + 501)
                .unwrap()
                .offence,
            2
        );
    }

    #[test]
    fn the_severity_factor_scales_the_ttl() {
        let mut cfg = Config::default().decisions;
        cfg.severity_factor.critical = 4.0;
        let mut d = Decider::new(&cfg, CidrSet::new(vec![]));
        let high = stuffing_signal("192.0.2.1");
        let crit = signal(
            Rule::CredentialStuffing,
            Severity::Critical,
            EntityType::Ip,
            "192.0.2.2",
        );
        assert_eq!(d.decide(&high, NOW).unwrap().duration_s, 15 * 60);
        assert_eq!(d.decide(&crit, NOW).unwrap().duration_s, 60 * 60);
    }

    #[test]
    fn account_attacks_challenge_and_takeovers_ban_the_account() {
        let mut d = decider();
        let bf = signal(
            Rule::Bruteforce,
            Severity::Medium,
            EntityType::Account,
            "a@x",
        );
        assert_eq!(d.decide(&bf, NOW).unwrap().action, Action::Challenge);
        let ato = signal(
            Rule::AccountTakeover,
            Severity::Critical,
            EntityType::Account,
            "a@x",
        );
        let t = DecisionTable::new();
        t.upsert(d.decide(&bf, NOW).unwrap(), NOW);
        assert!(
            t.upsert(d.decide(&ato, NOW).unwrap(), NOW),
            "a ban outranks a challenge"
        );
        let (active, _) = t.query(
            &Query {
                account: Some("a@x".into()),
                ..Query::default()
            },
            NOW,
        );
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].action, Action::Ban);
    }

    #[test]
    fn allowlisted_networks_and_services_never_get_decisions() {
        let mut d = decider();
        let s = stuffing_signal("198.51.100.20");
        assert_eq!(d.decide(&s, NOW), None);
        let svc = signal(
            Rule::DistributedCredentialStuffing,
            Severity::High,
            EntityType::Service,
            "api",
        );
        assert_eq!(d.decide(&svc, NOW), None);
    }

    #[test]
    fn ipv6_prefixes_are_ranges_that_cover_their_addresses() {
        let mut d = decider();
        let s = signal(
            Rule::UserEnumeration,
            Severity::Medium,
            EntityType::Ip,
            "2001:db8:1:2::/64",
        );
        let dec = d.decide(&s, NOW).unwrap();
        assert_eq!(dec.scope, Scope::Range);
        assert!(dec.covers_ip("2001:db8:1:2::99".parse().unwrap()));
        assert!(!dec.covers_ip("2001:db8:1:3::1".parse().unwrap()));
    }

    #[test]
    fn expired_decisions_leave_the_table_and_show_up_as_ended_since() {
        let mut d = decider();
        let t = DecisionTable::new();
        let s = stuffing_signal("203.0.113.7");
        t.upsert(d.decide(&s, NOW).unwrap(), NOW);
        assert_eq!(t.expire(NOW + 60_000).len(), 0);
        let gone = t.expire(NOW + 16 * 60_000);
        assert_eq!(gone.len(), 1);
        assert!(t.is_empty());
        let (active, ended) = t.query(
            &Query {
                since_ms: Some(NOW),
                ..Query::default()
            },
            NOW + 16 * 60_000,
        );
        assert!(active.is_empty());
        assert_eq!(ended.len(), 1);
    }

    #[test]
    fn a_lifted_decision_read_back_from_the_topic_stays_lifted_but_a_newer_one_counts() {
        let mut d = decider();
        let t = DecisionTable::new();
        let s = stuffing_signal("203.0.113.7");
        let first = d.decide(&s, NOW).unwrap();
        t.upsert(first.clone(), NOW);
        let lifted = t.lift("ip:203.0.113.7", NOW + 1000).expect("active");
        assert_eq!(lifted.id, first.id);
        assert!(t.is_empty());
        assert!(
            t.lift("ip:203.0.113.7", NOW + 1000).is_none(),
            "lifted once"
        );
        assert_eq!(t.take_lifted().len(), 1, "for the pipeline's tombstone");
        assert!(t.take_lifted().is_empty());
        // The decision's own record, read back before its tombstone: still lifted.
        assert!(!t.learn(first.to_json().as_bytes(), NOW + 2000));
        assert!(t.is_empty());
        // Forgiven, the entity's next decision is a first offence, and it is served.
        d.forgive(&first.id);
        let next = d.decide(&s, NOW + 60_000).unwrap();
        assert_eq!((next.offence, next.duration_s), (1, 900));
        assert!(t.learn(next.to_json().as_bytes(), NOW + 61_000));
        assert_eq!(t.len(), 1);
    }

    /// A decision on `192.0.2.{i}` made at NOW, ending at `until_ms`.
    fn decision(i: usize, action: Action, until_ms: i64) -> Decision {
        Decision {
            id: format!("ip:192.0.2.{i}"),
            scope: Scope::Ip,
            value: format!("192.0.2.{i}"),
            action,
            duration_s: (until_ms - NOW) / 1000,
            created: format_ts(NOW),
            until: format_ts(until_ms),
            rule: "credential_stuffing".into(),
            severity: "high".into(),
            signal_id: format!("sig-{i}"),
            offence: 1,
            reason: "test".into(),
            created_ms: NOW,
            until_ms,
        }
    }

    fn ids(ds: &[Decision]) -> Vec<&str> {
        ds.iter().map(|d| d.id.as_str()).collect()
    }

    #[test]
    fn a_full_table_ends_its_weakest_decisions_first_and_says_so() {
        let t = DecisionTable::new();
        t.set_max_active(10);
        let min = 60_000;
        // Ten bans, ending a minute apart.
        for i in 0..10 {
            assert!(t.upsert(decision(i, Action::Ban, NOW + (i as i64 + 1) * min), NOW));
        }
        assert!(t.take_evicted().is_empty());
        // A challenge is weaker than any ban, however long it lasts.
        t.upsert(decision(10, Action::Challenge, NOW + 600 * min), NOW + 1);
        assert_eq!(t.len(), 10);
        assert_eq!(ids(&t.take_evicted()), ["ip:192.0.2.10"]);
        // Among bans, the one ending soonest goes.
        t.upsert(decision(11, Action::Ban, NOW + 120 * min), NOW + 2);
        assert_eq!(t.len(), 10);
        assert_eq!(ids(&t.take_evicted()), ["ip:192.0.2.0"]);
        assert!(t.take_evicted().is_empty(), "taken once, for one tombstone");
        // Bouncers polling `since` see both deleted, as if expired.
        let q = Query {
            since_ms: Some(NOW),
            ..Query::default()
        };
        let (_, ended) = t.query(&q, NOW + 3);
        assert_eq!(ids(&ended), ["ip:192.0.2.10", "ip:192.0.2.0"]);
        // An evicted decision's own record, read back from the topic, stays out.
        let first = decision(0, Action::Ban, NOW + min);
        assert!(!t.learn(first.to_json().as_bytes(), NOW + 4));
        assert_eq!(t.len(), 10);
        // Extending a decision already held adds nothing, so evicts nothing.
        assert!(t.upsert(decision(5, Action::Ban, NOW + 200 * min), NOW + 5));
        assert!(t.take_evicted().is_empty());
    }

    #[test]
    fn a_flood_at_the_cap_evicts_one_percent_at_a_time() {
        let t = DecisionTable::new();
        t.set_max_active(1000);
        for i in 0..1000 {
            t.upsert(decision(i, Action::Ban, NOW + 60_000 + i as i64), NOW);
        }
        assert_eq!(t.len(), 1000);
        t.upsert(decision(1000, Action::Ban, NOW + 120_000), NOW);
        let gone = t.take_evicted();
        assert_eq!(t.len(), 990, "down to 99 % of the cap");
        let want: Vec<String> = (0..11).map(|i| format!("ip:192.0.2.{i}")).collect();
        let mut got: Vec<String> = gone.into_iter().map(|d| d.id).collect();
        got.sort_by_key(|id| id.rsplit('.').next().unwrap().parse::<u32>().unwrap());
        assert_eq!(got, want, "the eleven ending soonest");
        for i in 1001..1011 {
            t.upsert(decision(i, Action::Ban, NOW + 120_000), NOW);
        }
        assert!(t.take_evicted().is_empty(), "the slack takes ten more");
    }

    fn manual(json: &str) -> Result<Decision, String> {
        let req: ManualRequest = serde_json::from_str(json).map_err(|e| e.to_string())?;
        req.decision(
            NOW,
            true,
            &CidrSet::new(vec!["198.51.100.0/24".parse().unwrap()]),
        )
    }

    #[test]
    fn a_decision_added_by_hand_is_keyed_as_the_engine_keys_entities() {
        let d = manual(r#"{"ip":"203.0.113.7","duration":"4h","reason":"SOC ticket 42"}"#).unwrap();
        assert_eq!(
            (d.id.as_str(), d.action, d.scope),
            ("ip:203.0.113.7", Action::Ban, Scope::Ip)
        );
        assert_eq!((d.duration_s, d.until_ms), (4 * 3600, NOW + 4 * 3_600_000));
        assert_eq!(
            (d.rule.as_str(), d.reason.as_str()),
            (MANUAL_RULE, "SOC ticket 42")
        );
        let r = manual(r#"{"range":"2001:DB8:1:2:0::/64","duration":"1d","reason":"r"}"#).unwrap();
        assert_eq!(r.id, "range:2001:db8:1:2::/64");
        assert!(r.covers_ip("2001:db8:1:2::99".parse().unwrap()));
        let a = manual(
            r#"{"account":"Victim@Example.COM","type":"challenge","duration":"30m","reason":"r"}"#,
        )
        .unwrap();
        assert_eq!(
            (a.id.as_str(), a.action),
            ("account:victim@example.com", Action::Challenge)
        );
    }

    #[test]
    fn a_bad_request_to_add_a_decision_names_its_field() {
        for (json, want) in [
            (
                r#"{"duration":"4h","reason":"r"}"#,
                "exactly one of ip, range and account",
            ),
            (
                r#"{"ip":"203.0.113.7","account":"a","duration":"4h","reason":"r"}"#,
                "exactly one",
            ),
            (
                r#"{"ip":"nope","duration":"4h","reason":"r"}"#,
                "ip: `nope`",
            ),
            (
                r#"{"ip":"198.51.100.9","duration":"4h","reason":"r"}"#,
                "normalize.allowlist",
            ),
            (
                r#"{"range":"10.0.0.0/33","duration":"4h","reason":"r"}"#,
                "range:",
            ),
            (
                r#"{"account":"  ","duration":"4h","reason":"r"}"#,
                "account: must not be empty",
            ),
            (
                r#"{"ip":"203.0.113.7","duration":"soon","reason":"r"}"#,
                "duration:",
            ),
            (
                r#"{"ip":"203.0.113.7","duration":"400d","reason":"r"}"#,
                "duration: from 1s",
            ),
            (
                r#"{"ip":"203.0.113.7","duration":"4h","reason":" "}"#,
                "reason:",
            ),
            (
                r#"{"ip":"203.0.113.7","type":"none","duration":"4h","reason":"r"}"#,
                "type:",
            ),
            (
                r#"{"ip":"203.0.113.7","type":"block","duration":"4h","reason":"r"}"#,
                "unknown variant",
            ),
            (
                r#"{"ip":"203.0.113.7","duration":"4h"}"#,
                "missing field `reason`",
            ),
            (
                r#"{"ip":"203.0.113.7","ttl":"4h","duration":"4h","reason":"r"}"#,
                "unknown field `ttl`",
            ),
        ] {
            let e = manual(json).unwrap_err();
            assert!(e.contains(want), "{json}: {e}");
        }
    }

    #[test]
    fn a_decision_added_by_hand_is_queued_for_the_topic_unless_a_stronger_one_holds() {
        let t = DecisionTable::new();
        let ban = manual(r#"{"ip":"203.0.113.7","duration":"4h","reason":"r"}"#).unwrap();
        let (held, added) = t.add(ban.clone(), NOW);
        assert!(added);
        assert_eq!(held, ban);
        assert_eq!(ids(&t.take_added()), ["ip:203.0.113.7"]);
        // A challenge on a banned IP, or a shorter ban, changes nothing.
        for weaker in [
            r#"{"ip":"203.0.113.7","type":"challenge","duration":"8h","reason":"r"}"#,
            r#"{"ip":"203.0.113.7","duration":"1h","reason":"r"}"#,
        ] {
            let (held, added) = t.add(manual(weaker).unwrap(), NOW);
            assert!(!added);
            assert_eq!(held, ban, "the ban in force is returned");
        }
        assert!(t.take_added().is_empty(), "nothing more to publish");
    }
}
