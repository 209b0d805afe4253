//! `ip_velocity`: too many login attempts of any outcome from one IP.
//! Anchor: Elastic's rule of ≥ 100 logon failures per source in 60 s; counting every
//! outcome also catches scripted clients that mostly succeed.

use crate::config::IpVelocityConfig;
use crate::detectors::{Cooldown, Ctx, Fire, Fired, escalation_count, severity_for};
use crate::engine::window::TsWindow;
use crate::normalize::IpKey;
use crate::signal::{Counts, Entity, EntityType, Rule};

/// `idx` is where the new attempt landed in `attempts`.
pub fn check(
    cfg: &IpVelocityConfig,
    ctx: Ctx,
    attempts: &TsWindow,
    fired: Option<&Fired>,
    idx: usize,
    ip: &IpKey,
) -> Option<Fire> {
    let w = cfg.window.ms();
    let end = attempts.crossing(idx, cfg.min_attempts as usize, w)?;
    let n = attempts.count_in(end, w);
    let severity = severity_for(
        cfg.severity,
        n,
        escalation_count(cfg.min_attempts, ctx.factor),
    );
    // A flooding IP crosses again with every event: the cooldown decides before the
    // signal's text is written.
    if Cooldown::muted_in(fired, Rule::IpVelocity, end, severity) {
        return None;
    }
    Some(Fire {
        rule: Rule::IpVelocity,
        severity,
        ts: end,
        window: cfg.window,
        entity: Entity {
            kind: EntityType::Ip,
            value: ip.to_string(),
        },
        counts: Counts {
            attempts: Some(n as u64),
            ..Default::default()
        },
        thresholds: Counts {
            attempts: Some(cfg.min_attempts as u64),
            ..Default::default()
        },
        sample_accounts: Vec::new(),
        sample_ips: Vec::new(),
        because: None,
        trace_ids: Vec::new(),
        summary: format!("{ip} made {n} login attempts in {}", cfg.window),
    })
}
