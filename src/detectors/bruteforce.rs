//! `bruteforce`: many failed logins on one account in a short window.
//! Anchor: Auth0 brute-force protection blocks after 10 failed attempts on one account.

use crate::config::BruteforceConfig;
use crate::detectors::{Cooldown, Ctx, Fire, Fired, escalation_count, severity_for};
use crate::engine::state::AccountHot;
use crate::signal::{Counts, Entity, EntityType, Rule};

/// `idx` is where the new failure landed in `hot.failures`.
pub fn check(
    cfg: &BruteforceConfig,
    ctx: Ctx,
    hot: &mut AccountHot,
    fired: Option<&Fired>,
    idx: usize,
    account: &str,
) -> Option<Fire> {
    let n = cfg.min_failures as usize;
    let w = cfg.window.ms();
    let end = hot.failures.crossing(idx, n, w)?;
    let failures = hot.failures.count_in(end, w);
    let severity = severity_for(
        cfg.severity,
        failures,
        escalation_count(cfg.min_failures, ctx.factor),
    );
    // Before the distinct count, which for an account failing from thousands of IPs
    // is a sketch's (a pass over its 4,096 registers).
    if Cooldown::muted_in(fired, Rule::Bruteforce, end, severity) {
        return None;
    }
    let ips = hot.failing_ips.count(end, w);
    Some(Fire {
        rule: Rule::Bruteforce,
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
            ..Default::default()
        },
        sample_accounts: Vec::new(),
        sample_ips: hot.failing_ips.recent(end, w, ctx.samples),
        because: None,
        trace_ids: Vec::new(),
        summary: format!(
            "{account}: {failures} failed logins in {} from {ips} IP(s)",
            cfg.window
        ),
    })
}
