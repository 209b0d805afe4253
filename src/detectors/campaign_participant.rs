//! `campaign_participant`: while a distributed campaign is active on a service, an IP
//! that fails on several distinct accounts there is one of its sources. This turns a
//! service-wide alarm into a list of IPs a responder can block. No product anchor: the
//! threshold (2 accounts) is what separates a sprayer from a user with a typo.

use crate::config::CampaignParticipantConfig;
use crate::detectors::Fire;
use crate::engine::distinct::DistinctWindow;
use crate::normalize::IpKey;
use crate::signal::{Counts, Entity, EntityType, Rule};

/// `window` is the campaign rule's window; `failing_accounts` the IP's own set.
pub fn check(
    cfg: &CampaignParticipantConfig,
    failing_accounts: &mut DistinctWindow,
    t: i64,
    window: crate::config::Dur,
    ip: &IpKey,
    service: &str,
    samples: usize,
) -> Option<Fire> {
    if failing_accounts.exact_len() < cfg.min_distinct_accounts as usize && !failing_accounts.is_sketched() {
        return None;
    }
    let accounts = failing_accounts.count(t, window.ms());
    if accounts < cfg.min_distinct_accounts as u64 {
        return None;
    }
    Some(Fire {
        rule: Rule::CampaignParticipant,
        severity: cfg.severity,
        ts: t,
        window,
        entity: Entity { kind: EntityType::Ip, value: ip.to_string() },
        counts: Counts { distinct_accounts: Some(accounts), ..Default::default() },
        thresholds: Counts { distinct_accounts: Some(cfg.min_distinct_accounts as u64), ..Default::default() },
        sample_accounts: failing_accounts.recent(t, window.ms(), samples),
        sample_ips: Vec::new(),
        because: Some(format!("distributed_credential_stuffing on {service}")),
        trace_ids: Vec::new(),
        summary: format!("{ip} failed on {accounts} accounts during the distributed campaign on {service}"),
    })
}
