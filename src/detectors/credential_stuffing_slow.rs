//! `credential_stuffing_slow`: low-and-slow stuffing that stays under the 10-minute
//! thresholds but adds up over a day.
//! Anchor: Auth0 suspicious-IP throttling, 100 failed attempts per IP per day.

use crate::config::CredentialStuffingSlowConfig;
use crate::detectors::{Cooldown, Ctx, Fire, Fired, escalation_count, severity_for, window_cap};
use crate::engine::distinct::DistinctWindow;
use crate::engine::window::TsWindow;
use crate::normalize::IpKey;
use crate::signal::{Counts, Entity, EntityType, Rule};

/// Timestamps the IP's failure window must keep for this rule.
pub fn window_cap_needed(cfg: &CredentialStuffingSlowConfig, factor: f64) -> usize {
    window_cap(cfg.min_failures, factor)
}

/// Distinct failing accounts this rule needs the IP's shared set to keep exactly.
pub fn distinct_cap_needed(cfg: &CredentialStuffingSlowConfig) -> usize {
    cfg.min_distinct_accounts as usize * 2
}

/// Uses the IP's shared failure features, kept long enough for this rule's window by
/// the engine, so a day of failures is not stored twice. `idx` is where the new failure
/// landed in `failures`.
pub fn check(
    cfg: &CredentialStuffingSlowConfig,
    ctx: Ctx,
    failures: &TsWindow,
    failing_accounts: &mut DistinctWindow,
    fired: Option<&Fired>,
    idx: usize,
    ip: &IpKey,
) -> Option<Fire> {
    let w = cfg.window.ms();
    let esc = escalation_count(cfg.min_failures, ctx.factor);
    let end = failures.crossing(idx, cfg.min_failures as usize, w)?;
    let failures = failures.count_in(end, w);
    let severity = severity_for(cfg.severity, failures, esc);
    // Before the distinct count, which for a sketched set is not cheap.
    if Cooldown::muted_in(fired, Rule::CredentialStuffingSlow, end, severity) {
        return None;
    }
    let accounts = failing_accounts.count(end, w);
    if accounts < cfg.min_distinct_accounts as u64 {
        return None;
    }
    Some(Fire {
        rule: Rule::CredentialStuffingSlow,
        severity,
        ts: end,
        window: cfg.window,
        entity: Entity {
            kind: EntityType::Ip,
            value: ip.to_string(),
        },
        counts: Counts {
            failures: Some(failures as u64),
            distinct_accounts: Some(accounts),
            ..Default::default()
        },
        thresholds: Counts {
            failures: Some(cfg.min_failures as u64),
            distinct_accounts: Some(cfg.min_distinct_accounts as u64),
            ..Default::default()
        },
        sample_accounts: failing_accounts.recent(end, w, ctx.samples),
        sample_ips: Vec::new(),
        because: None,
        trace_ids: Vec::new(),
        summary: format!(
            "{ip} failed logins on {accounts} accounts in {} ({failures} failures)",
            cfg.window
        ),
    })
}
