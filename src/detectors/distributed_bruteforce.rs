//! `distributed_bruteforce`: one account failing from many IPs, each too quiet for a
//! per-IP rule. Anchor: Datadog's targeted-account (distributed brute force) rules.

use crate::config::DistributedBruteforceConfig;
use crate::detectors::{Cooldown, Ctx, Fire, Fired, escalation_count, severity_for};
use crate::engine::state::AccountHot;
use crate::signal::{Counts, Entity, EntityType, Rule};

pub fn check(
    cfg: &DistributedBruteforceConfig,
    ctx: Ctx,
    hot: &mut AccountHot,
    fired: Option<&Fired>,
    idx: usize,
    account: &str,
) -> Option<Fire> {
    let w = cfg.window.ms();
    let end = hot.failures.crossing(idx, cfg.min_failures as usize, w)?;
    if hot.failing_ips.exact_len() < cfg.min_distinct_ips as usize && !hot.failing_ips.is_sketched()
    {
        return None;
    }
    // The severity comes from the distinct count, which for thousands of IPs is a
    // sketch's (a pass over its 4,096 registers): skip it while even the escalated
    // severity would be held back.
    let esc = escalation_count(cfg.min_distinct_ips, ctx.factor);
    let highest = severity_for(cfg.severity, usize::MAX, esc);
    if Cooldown::muted_in(fired, Rule::DistributedBruteforce, end, highest) {
        return None;
    }
    let ips = hot.failing_ips.count(end, w);
    if ips < cfg.min_distinct_ips as u64 {
        return None;
    }
    let failures = hot.failures.count_in(end, w);
    let severity = severity_for(cfg.severity, ips as usize, esc);
    Some(Fire {
        rule: Rule::DistributedBruteforce,
        severity,
        ts: end,
        window: cfg.window,
        entity: Entity {
            kind: EntityType::Account,
            value: account.to_string(),
        },
        counts: Counts {
            failures: Some(failures as u64),
            distinct_ips: Some(ips),
            ..Default::default()
        },
        thresholds: Counts {
            failures: Some(cfg.min_failures as u64),
            distinct_ips: Some(cfg.min_distinct_ips as u64),
            ..Default::default()
        },
        sample_accounts: Vec::new(),
        sample_ips: hot.failing_ips.recent(end, w, ctx.samples),
        because: None,
        trace_ids: Vec::new(),
        summary: format!(
            "{account}: {failures} failed logins from {ips} distinct IPs in {}",
            cfg.window
        ),
    })
}
