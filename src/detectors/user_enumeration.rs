//! `user_enumeration`: an IP probing for which usernames exist.
//! Anchor: CrowdSec `ssh-bf_user-enum`, which counts distinct unknown users per IP.
//! Counting distinct names as well as failures keeps one person retyping one wrong
//! username out.

use crate::config::UserEnumerationConfig;
use crate::detectors::{Cooldown, Ctx, Fire, Fired, escalation_count, severity_for, window_cap};
use crate::engine::distinct::DistinctWindow;
use crate::engine::window::TsWindow;
use crate::normalize::IpKey;
use crate::signal::{Counts, Entity, EntityType, Rule};

#[derive(Default)]
pub struct IpState {
    failures: TsWindow,
    accounts: DistinctWindow,
}

impl IpState {
    pub fn heap_bytes(&self) -> usize {
        self.failures.heap_bytes() + self.accounts.heap_bytes()
    }
}

/// Called for failures on accounts the application says do not exist.
pub fn observe_unknown_account_failure(
    cfg: &UserEnumerationConfig,
    ctx: Ctx,
    st: &mut IpState,
    t: i64,
    account: u64,
    fired: Option<&Fired>,
    ip: &IpKey,
) -> Option<Fire> {
    let w = cfg.window.ms();
    let horizon = ctx.watermark.saturating_sub(w);
    let esc = escalation_count(cfg.min_failures, ctx.factor);
    st.accounts.insert(
        account,
        t,
        horizon,
        (w, w),
        (cfg.min_distinct_accounts as usize * 2).max(16),
    );
    let idx = st
        .failures
        .insert(t, horizon, window_cap(cfg.min_failures, ctx.factor))?;
    let end = st.failures.crossing(idx, cfg.min_failures as usize, w)?;
    let failures = st.failures.count_in(end, w);
    let severity = severity_for(cfg.severity, failures, esc);
    // Before the distinct count, which for an IP trying thousands of names is a
    // sketch's (a pass over its 4,096 registers).
    if Cooldown::muted_in(fired, Rule::UserEnumeration, end, severity) {
        return None;
    }
    let accounts = st.accounts.count(end, w);
    if accounts < cfg.min_distinct_accounts as u64 {
        return None;
    }
    Some(Fire {
        rule: Rule::UserEnumeration,
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
        sample_accounts: st.accounts.recent(end, w, ctx.samples),
        sample_ips: Vec::new(),
        because: None,
        trace_ids: Vec::new(),
        summary: format!(
            "{ip} tried {accounts} nonexistent accounts in {} ({failures} failures)",
            cfg.window
        ),
    })
}
