//! `distributed_credential_stuffing`: a service-wide surge of failures from many IPs on
//! many accounts, each IP too quiet for any per-IP rule.
//! Anchors: Datadog's distributed ATO rules; Elastic's multi-source password spraying.
//!
//! The failure ratio is compared with the service's own trailing baseline (the
//! `baseline_window` before the current window, leaving out time already judged an
//! attack), so a service that always fails a lot is not flagged forever and a quiet one
//! under a sudden campaign is. The required ratio is capped (`max_required_ratio`) so a
//! service that naturally fails 40 % of the time can still be seen under attack.
//!
//! State is per time slice (1/30 of the window): counts plus distinct sets that turn
//! into HyperLogLog++ sketches, i.e. mergeable partials, which is what lets several
//! instances share a service later. The window therefore slides at slice resolution.

use std::collections::VecDeque;

use crate::config::DistributedCredentialStuffingConfig;
use crate::detectors::{Fire, escalation_count, ratio, severity_for};
use crate::engine::distinct::DistinctWindow;
use crate::signal::{Counts, Entity, EntityType, Rule, round3};

const SLICES_PER_WINDOW: i64 = 30;
/// Failing IPs remembered for the participant sweep when a campaign is declared.
const MAX_RECENT_FAILURES: usize = 200_000;

#[derive(Clone, Copy, Debug)]
struct Slice {
    start: i64,
    attempts: u32,
    failures: u32,
    /// Judged part of a campaign: kept out of the baseline.
    attack: bool,
}

#[derive(Default)]
pub struct ServiceState {
    slices: VecDeque<Slice>,
    ips: DistinctWindow,
    accounts: DistinctWindow,
    /// (ts, ip hash) of recent failures, for finding participants.
    recent_failures: VecDeque<(i64, u64)>,
    pub campaign_until: i64,
    last_eval_slice: i64,
    last_eval_failures: u64,
}

/// What the cheap per-event check found.
pub struct Observed {
    pub fire: Option<Fire>,
    /// A campaign just became active: the engine sweeps recent failing IPs.
    pub campaign_started: bool,
}

pub fn slice_ms(cfg: &DistributedCredentialStuffingConfig) -> i64 {
    (cfg.window.ms() / SLICES_PER_WINDOW).max(1)
}

impl ServiceState {
    pub fn campaign_active(&self, t: i64) -> bool {
        t <= self.campaign_until
    }

    /// IPs that failed on this service within `(end - w, end]`, deduplicated, in first-seen order.
    pub fn recent_failing_ips(&self, end: i64, w: i64) -> Vec<u64> {
        let mut seen = hashbrown::HashSet::new();
        self.recent_failures
            .iter()
            .filter(|(t, _)| *t > end - w && *t <= end)
            .filter_map(|&(_, ip)| seen.insert(ip).then_some(ip))
            .collect()
    }

    pub fn heap_bytes(&self) -> usize {
        self.slices.capacity() * std::mem::size_of::<Slice>()
            + self.ips.heap_bytes()
            + self.accounts.heap_bytes()
            + self.recent_failures.capacity() * 16
    }

    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        cfg: &DistributedCredentialStuffingConfig,
        factor: f64,
        t: i64,
        failure: bool,
        ip: u64,
        account: u64,
        watermark: i64,
        service: &str,
        samples: usize,
    ) -> Observed {
        let none = Observed { fire: None, campaign_started: false };
        let w = cfg.window.ms();
        let sm = slice_ms(cfg);
        let keep_from = watermark.saturating_sub(w + cfg.baseline_window.ms() + sm);
        while self.slices.front().is_some_and(|s| s.start < keep_from) {
            self.slices.pop_front();
        }
        let start = t.div_euclid(sm) * sm;
        let pos = self.slices.partition_point(|s| s.start < start);
        if pos == self.slices.len() || self.slices[pos].start != start {
            self.slices.insert(pos, Slice { start, attempts: 0, failures: 0, attack: false });
        }
        let slice = &mut self.slices[pos];
        slice.attempts += 1;
        if !failure {
            return none;
        }
        slice.failures += 1;
        let horizon = watermark.saturating_sub(w);
        self.ips.insert(ip, t, horizon, w, 32);
        self.accounts.insert(account, t, horizon, w, 32);
        while self.recent_failures.front().is_some_and(|f| f.0 < horizon) || self.recent_failures.len() >= MAX_RECENT_FAILURES {
            self.recent_failures.pop_front();
        }
        self.recent_failures.push_back((t, ip));

        let end = self.slices.back().map_or(t, |s| s.start + sm - 1).max(t);
        let end = end.min(t.max(start + sm - 1));
        let (mut attempts, mut failures) = (0u64, 0u64);
        let (mut base_attempts, mut base_failures) = (0u64, 0u64);
        let base_from = end - w - cfg.baseline_window.ms();
        for s in self.slices.iter() {
            if s.start > end - w && s.start <= end {
                attempts += s.attempts as u64;
                failures += s.failures as u64;
            } else if s.start <= end - w && s.start > base_from && !s.attack {
                base_attempts += s.attempts as u64;
                base_failures += s.failures as u64;
            }
        }
        if failures < cfg.min_failures as u64 {
            return none;
        }
        let baseline = if base_attempts >= cfg.min_baseline_attempts as u64 {
            ratio(base_failures, base_attempts)
        } else {
            cfg.default_baseline_ratio
        };
        let required = (baseline * cfg.baseline_factor).min(cfg.max_required_ratio);
        let r = ratio(failures, attempts);
        if r < required {
            return none;
        }
        // Distinct counts merge sketches: do it once per slice, or when failures grew 5 %.
        let cur_slice = start / sm;
        if cur_slice == self.last_eval_slice && failures < self.last_eval_failures + (cfg.min_failures as u64 / 20).max(1) {
            return none;
        }
        self.last_eval_slice = cur_slice;
        self.last_eval_failures = failures;
        let ips = self.ips.count(end, w);
        let accounts = self.accounts.count(end, w);
        if ips < cfg.min_distinct_ips as u64 || accounts < cfg.min_distinct_accounts as u64 {
            return none;
        }
        let campaign_started = !self.campaign_active(t);
        self.campaign_until = end + w;
        for s in self.slices.iter_mut().filter(|s| s.start > end - w) {
            s.attack = true;
        }
        let fire = Fire {
            rule: Rule::DistributedCredentialStuffing,
            severity: severity_for(cfg.severity, failures as usize, escalation_count(cfg.min_failures, factor)),
            ts: t,
            window: cfg.window,
            entity: Entity { kind: EntityType::Service, value: service.to_string() },
            counts: Counts {
                failures: Some(failures),
                successes: Some(attempts - failures),
                attempts: Some(attempts),
                distinct_accounts: Some(accounts),
                distinct_ips: Some(ips),
                failure_ratio: Some(round3(r)),
                baseline_failure_ratio: Some(round3(baseline)),
            },
            thresholds: Counts {
                failures: Some(cfg.min_failures as u64),
                distinct_accounts: Some(cfg.min_distinct_accounts as u64),
                distinct_ips: Some(cfg.min_distinct_ips as u64),
                failure_ratio: Some(round3(required)),
                ..Default::default()
            },
            sample_accounts: self.accounts.recent(end, w, samples),
            sample_ips: self.ips.recent(end, w, samples),
            because: None,
            trace_ids: Vec::new(),
            summary: format!(
                "{service}: {failures} failed logins from {ips} IPs on {accounts} accounts in {}; failure ratio {:.2} vs baseline {:.2}",
                cfg.window, r, baseline
            ),
        };
        Observed { fire: Some(fire), campaign_started }
    }
}
