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
//! State is per time slice (1/30 of the window): counts plus distinct sets of failing IPs
//! and accounts (exact when small, HyperLogLog++ beyond), i.e. mergeable partials, which is what lets several
//! instances share a service later. The window therefore slides at slice resolution.

use std::collections::VecDeque;

use crate::config::DistributedCredentialStuffingConfig;
use crate::detectors::{Fire, escalation_count, ratio, severity_for};
use crate::engine::distinct::{SliceSet, union_count};
use crate::signal::{Counts, Entity, EntityType, Rule, round3};

const SLICES_PER_WINDOW: i64 = 30;
/// Windows behind the newest judged that are remembered (`judged_behind`): two windows'
/// worth of slices.
const JUDGED_BEHIND: usize = 2 * SLICES_PER_WINDOW as usize;
/// Failures remembered for the participant sweep and for samples.
const MAX_RECENT_FAILURES: usize = 200_000;

struct Slice {
    start: i64,
    attempts: u32,
    failures: u32,
    /// Judged part of a campaign: kept out of the baseline.
    attack: bool,
    ips: Option<Box<SliceSet>>,
    accounts: Option<Box<SliceSet>>,
}

#[derive(Default)]
pub struct ServiceState {
    slices: VecDeque<Slice>,
    /// (ts, ip hash, account hash) of recent failures.
    recent_failures: VecDeque<(i64, u64, u64)>,
    /// The newest failure time seen: past the campaign's end only when a partition read
    /// ahead of the others delivered it.
    newest_failure: i64,
    /// The campaign's span, `(from, until]`: a start as well as an end, because input
    /// from a partition read behind the others arrives after the campaign was declared,
    /// and its failures from before the campaign are no part of it.
    campaign_from: i64,
    campaign_until: i64,
    /// When the campaign was declared: the earliest time a window of it fired.
    campaign_declared: i64,
    /// The newest window end judged, and its failures: judging a window again without
    /// growth is waste, and with partitions read apart, events alternate between
    /// windows a slice or two apart (each judgement merges ~30 HLL slices).
    last_eval_end: i64,
    last_eval_failures: u64,
    /// (window end, failures) of windows judged behind `last_eval_end`: events from a
    /// partition read behind the others land in them, and a window judged on part of
    /// its events is judged again once they grew (it may escalate).
    judged_behind: VecDeque<(i64, u64)>,
    /// (window end, baseline): the baseline only changes when the window moves a slice.
    baseline_cache: Option<(i64, f64)>,
}

/// What observing one login found.
pub struct Observed {
    /// Boxed: nearly every call returns nothing, and an inline `Fire` made each of
    /// those returns a copy of a few hundred bytes.
    pub fire: Option<Box<Fire>>,
    /// A campaign just became active, or now covers failures already seen that it did
    /// not cover (they came from a partition read behind or ahead of the others): the
    /// engine sweeps the failing IPs of the campaign's span for participants.
    pub sweep: bool,
    /// The campaign's span, `(from, until]`.
    pub span: (i64, i64),
}

const NONE: Observed = Observed {
    fire: None,
    sweep: false,
    span: (0, 0),
};

pub fn slice_ms(cfg: &DistributedCredentialStuffingConfig) -> i64 {
    (cfg.window.ms() / SLICES_PER_WINDOW).max(1)
}

impl ServiceState {
    pub fn campaign_active(&self, t: i64) -> bool {
        t > self.campaign_from && t <= self.campaign_until
    }

    /// When the campaign was declared (the earliest event time a window of it fired
    /// at). Swept again from a partition read later, it stays or moves earlier.
    pub fn campaign_declared(&self) -> i64 {
        self.campaign_declared
    }

    /// No event still to come can fall within the campaign.
    pub fn campaign_over(&self, watermark: i64) -> bool {
        watermark > self.campaign_until
    }

    /// Failures on this service within `(from, until]`: (ts, ip hash, account hash).
    pub fn failures_within(
        &self,
        (from, until): (i64, i64),
    ) -> impl Iterator<Item = (i64, u64, u64)> + '_ {
        self.recent_failures
            .iter()
            .copied()
            .filter(move |f| f.0 > from && f.0 <= until)
    }

    pub fn heap_bytes(&self) -> usize {
        let sets: usize = self
            .slices
            .iter()
            .flat_map(|s| [s.ips.as_deref(), s.accounts.as_deref()])
            .flatten()
            .map(SliceSet::heap_bytes)
            .sum();
        self.slices.capacity() * std::mem::size_of::<Slice>()
            + sets
            + self.recent_failures.capacity() * 24
            + self.judged_behind.capacity() * 16
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
        newest: i64,
        service: &str,
        samples: usize,
    ) -> Observed {
        let w = cfg.window.ms();
        let sm = slice_ms(cfg);
        let keep_from = watermark.saturating_sub(w + cfg.baseline_window.ms() + sm);
        while self.slices.front().is_some_and(|s| s.start < keep_from) {
            self.slices.pop_front();
        }
        let start = t.div_euclid(sm) * sm;
        let pos = match self.slices.back() {
            Some(b) if b.start == start => self.slices.len() - 1,
            _ => self.slices.partition_point(|s| s.start < start),
        };
        if pos == self.slices.len() || self.slices[pos].start != start {
            self.slices.insert(
                pos,
                Slice {
                    start,
                    attempts: 0,
                    failures: 0,
                    attack: false,
                    ips: None,
                    accounts: None,
                },
            );
        }
        let slice = &mut self.slices[pos];
        slice.attempts += 1;
        if !failure {
            return NONE;
        }
        slice.failures += 1;
        slice.ips.get_or_insert_with(Default::default).insert(ip);
        slice
            .accounts
            .get_or_insert_with(Default::default)
            .insert(account);
        let horizon = watermark.saturating_sub(w);
        while self.recent_failures.front().is_some_and(|f| f.0 < horizon)
            || self.recent_failures.len() >= MAX_RECENT_FAILURES
        {
            self.recent_failures.pop_front();
        }
        self.recent_failures.push_back((t, ip, account));
        self.newest_failure = self.newest_failure.max(t);

        // The window ends with the newest event's slice of this event's source (an
        // out-of-order event is counted where it belongs, in the window that is current;
        // a partition read behind the others has its own current window); `newest`
        // leaves out any wild clock accepted before time was established. Only ~30
        // slices are summed.
        let end = (newest.max(t).div_euclid(sm) + 1) * sm - 1;
        let in_window = |s: &&Slice| s.start > end - w && s.start <= end;
        let (mut attempts, mut failures) = (0u64, 0u64);
        for s in self
            .slices
            .iter()
            .rev()
            .skip_while(|s| s.start > end)
            .take_while(in_window)
        {
            attempts += s.attempts as u64;
            failures += s.failures as u64;
        }
        if failures < cfg.min_failures as u64 {
            return NONE;
        }
        let baseline = match self.baseline_cache {
            Some((e, b)) if e == end => b,
            _ => {
                let b = self.baseline(cfg, end);
                self.baseline_cache = Some((end, b));
                b
            }
        };
        let required = (baseline * cfg.baseline_factor).min(cfg.max_required_ratio);
        let r = ratio(failures, attempts);
        if r < required {
            return NONE;
        }
        // Distinct counts merge per-slice sets. Once a campaign is declared, once per
        // slice is enough (it extends the campaign and may escalate); before that, also
        // when failures grew 5 %, so a campaign is seen as soon as it crosses the line.
        let step = if self.campaign_active(t) {
            u64::MAX
        } else {
            (self.last_eval_failures / 20)
                .max(cfg.min_failures as u64 / 20)
                .max(1)
        };
        if end < self.last_eval_end {
            let grew = |j: &(i64, u64)| failures >= j.1.saturating_add((j.1 / 20).max(1));
            match self.judged_behind.iter_mut().find(|j| j.0 == end) {
                Some(j) if !grew(j) => return NONE,
                Some(j) => j.1 = failures,
                None => {
                    if self.judged_behind.len() >= JUDGED_BEHIND {
                        self.judged_behind.pop_front();
                    }
                    self.judged_behind.push_back((end, failures));
                }
            }
        } else {
            if end == self.last_eval_end && failures < self.last_eval_failures.saturating_add(step)
            {
                return NONE;
            }
            self.last_eval_end = end;
            self.last_eval_failures = failures;
        }
        let in_window = || {
            self.slices
                .iter()
                .rev()
                .skip_while(move |s| s.start > end)
                .take_while(move |s| s.start > end - w)
        };
        let ips = union_count(in_window().filter_map(|s| s.ips.as_deref()));
        let accounts = union_count(in_window().filter_map(|s| s.accounts.as_deref()));
        if ips < cfg.min_distinct_ips as u64 || accounts < cfg.min_distinct_accounts as u64 {
            return NONE;
        }
        // A campaign spans `(end - w, end + w]` of each window that fired; overlapping
        // spans are one campaign, whichever order their windows were judged in.
        // In order, only a new campaign is swept: nothing before its window or after its
        // newest event has been seen yet.
        let overlaps = end - w < self.campaign_until && end + w > self.campaign_from;
        let sweep = !overlaps
            || end - w < self.campaign_from
            || (end + w > self.campaign_until && self.newest_failure > self.campaign_until);
        if overlaps {
            self.campaign_from = self.campaign_from.min(end - w);
            self.campaign_until = self.campaign_until.max(end + w);
            self.campaign_declared = self.campaign_declared.min(t);
        } else {
            self.campaign_from = end - w;
            self.campaign_until = end + w;
            self.campaign_declared = t;
        }
        for s in self
            .slices
            .iter_mut()
            .rev()
            .skip_while(|s| s.start > end)
            .take_while(|s| s.start > end - w)
        {
            s.attack = true;
        }
        self.baseline_cache = None;
        let (sample_ips, sample_accounts) = self.samples(samples);
        let fire = Fire {
            rule: Rule::DistributedCredentialStuffing,
            severity: severity_for(
                cfg.severity,
                failures as usize,
                escalation_count(cfg.min_failures, factor),
            ),
            ts: t,
            window: cfg.window,
            entity: Entity {
                kind: EntityType::Service,
                value: service.to_string(),
            },
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
            sample_accounts,
            sample_ips,
            because: None,
            trace_ids: Vec::new(),
            summary: format!(
                "{service}: {failures} failed logins from {ips} IPs on {accounts} accounts in {}; failure ratio {:.2} vs baseline {:.2}",
                cfg.window, r, baseline
            ),
        };
        Observed {
            fire: Some(Box::new(fire)),
            sweep,
            span: (self.campaign_from, self.campaign_until),
        }
    }

    /// Failure ratio over the baseline window before `(end - w, end]`, without attack time.
    fn baseline(&self, cfg: &DistributedCredentialStuffingConfig, end: i64) -> f64 {
        let w = cfg.window.ms();
        let from = end - w - cfg.baseline_window.ms();
        let (mut a, mut f) = (0u64, 0u64);
        for s in self
            .slices
            .iter()
            .filter(|s| s.start <= end - w && s.start > from && !s.attack)
        {
            a += s.attempts as u64;
            f += s.failures as u64;
        }
        if a >= cfg.min_baseline_attempts as u64 {
            ratio(f, a)
        } else {
            cfg.default_baseline_ratio
        }
    }

    /// Most recent distinct failing IPs and accounts.
    fn samples(&self, k: usize) -> (Vec<u64>, Vec<u64>) {
        let (mut ips, mut accounts) = (Vec::new(), Vec::new());
        for f in self.recent_failures.iter().rev() {
            if ips.len() < k && !ips.contains(&f.1) {
                ips.push(f.1);
            }
            if accounts.len() < k && !accounts.contains(&f.2) {
                accounts.push(f.2);
            }
            if ips.len() >= k && accounts.len() >= k {
                break;
            }
        }
        (ips, accounts)
    }
}
