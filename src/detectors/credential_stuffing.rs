//! `credential_stuffing`: one IP failing on many accounts, mostly failing.
//! Anchor: Datadog flags an IP with > 30 failures over > 5 accounts; the ratio keeps busy
//! NAT gateways (many users, mostly successful) out.

use crate::config::CredentialStuffingConfig;
use crate::detectors::{Cooldown, Ctx, Fire, escalation_count, ratio, severity_for};
use crate::engine::state::{IpHot, SLICES, SliceCounter};
use crate::normalize::IpKey;
use crate::signal::{Counts, Entity, EntityType, Rule, round3};

/// Success counts are kept in 1/SLICES-window slices.
pub fn slice_ms(cfg: &CredentialStuffingConfig) -> i64 {
    (cfg.window.ms() / SLICES as i64).max(1)
}

/// `successes` counts the IP's successful logins (kept for every IP, so the ones before
/// its first failure count too).
pub fn check(
    cfg: &CredentialStuffingConfig,
    ctx: Ctx,
    hot: &mut IpHot,
    successes: &SliceCounter,
    idx: usize,
    ip: &IpKey,
) -> Option<Fire> {
    let w = cfg.window.ms();
    let end = hot.failures.crossing(idx, cfg.min_failures as usize, w)?;
    if hot.failing_accounts.exact_len() < cfg.min_distinct_accounts as usize
        && !hot.failing_accounts.is_sketched()
    {
        return None;
    }
    // The ratio and the cooldown before the distinct count: they are cheap, and the
    // count of a sketched set (a busy NAT gateway, a stuffing IP) is not.
    let failures = hot.failures.count_in(end, w) as u64;
    let successes = successes.count(end, slice_ms(cfg));
    let r = ratio(failures, failures + successes);
    if r < cfg.min_failure_ratio {
        return None;
    }
    let severity = severity_for(
        cfg.severity,
        failures as usize,
        escalation_count(cfg.min_failures, ctx.factor),
    );
    if Cooldown::muted_in(
        hot.fired.as_deref(),
        Rule::CredentialStuffing,
        end,
        severity,
    ) {
        return None;
    }
    let accounts = hot.failing_accounts.count(end, w);
    if accounts < cfg.min_distinct_accounts as u64 {
        return None;
    }
    Some(Fire {
        rule: Rule::CredentialStuffing,
        severity,
        ts: end,
        window: cfg.window,
        entity: Entity {
            kind: EntityType::Ip,
            value: ip.to_string(),
        },
        counts: Counts {
            failures: Some(failures),
            successes: Some(successes),
            attempts: Some(failures + successes),
            distinct_accounts: Some(accounts),
            failure_ratio: Some(round3(r)),
            ..Default::default()
        },
        thresholds: Counts {
            failures: Some(cfg.min_failures as u64),
            distinct_accounts: Some(cfg.min_distinct_accounts as u64),
            failure_ratio: Some(cfg.min_failure_ratio),
            ..Default::default()
        },
        sample_accounts: hot.failing_accounts.recent(end, w, ctx.samples),
        sample_ips: Vec::new(),
        because: None,
        trace_ids: Vec::new(),
        summary: format!(
            "{ip} failed logins on {accounts} accounts in {} ({failures} failures, failure ratio {:.2})",
            cfg.window, r
        ),
    })
}
