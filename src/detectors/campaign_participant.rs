//! `campaign_participant`: while a distributed campaign is active on a service, an IP
//! that fails there on several distinct accounts, and mostly fails, is one of its
//! sources. This turns a service-wide alarm into a list of IPs a responder can block.
//!
//! Counting is per campaign, on its own service only: a NAT gateway whose users mistype
//! passwords on other services is not a participant. The failure ratio keeps busy shared
//! IPs (corporate NAT, mobile CGNAT), whose users mostly succeed, out; flagging one
//! would turn every sign-in behind it into an `account_takeover`. No product anchor:
//! 2 accounts is what separates a sprayer from one user with a typo.

use hashbrown::HashMap;

use crate::config::{CampaignParticipantConfig, Dur};
use crate::detectors::{Fire, ratio};
use crate::normalize::IpKey;
use crate::signal::{Counts, Entity, EntityType, Rule, round3};

/// Per active campaign: the accounts each IP failed on, on the campaign's service.
#[derive(Default)]
pub struct Tracker {
    by_ip: HashMap<u64, Vec<(u64, i64)>>,
}

impl Tracker {
    /// Records a failure; returns the IP's distinct failing accounts in `(t - w, t]`.
    pub fn observe(&mut self, ip: u64, account: u64, t: i64, w: i64, cap: usize) -> usize {
        let v = self.by_ip.entry(ip).or_default();
        v.retain(|e| e.1 > t - w);
        if let Some(e) = v.iter_mut().find(|e| e.0 == account) {
            e.1 = e.1.max(t);
        } else if v.len() < cap {
            v.push((account, t));
        }
        v.len()
    }

    pub fn accounts(&self, ip: u64) -> Vec<u64> {
        self.by_ip
            .get(&ip)
            .map(|v| v.iter().map(|e| e.0).collect())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    pub fn heap_bytes(&self) -> usize {
        self.by_ip.capacity() * 40
            + self
                .by_ip
                .values()
                .map(|v| v.capacity() * 16)
                .sum::<usize>()
    }
}

/// `accounts` distinct accounts failed on the service; `failures`/`attempts` are the IP's
/// own recent counts (all services) for the ratio.
#[allow(clippy::too_many_arguments)]
pub fn check(
    cfg: &CampaignParticipantConfig,
    accounts: usize,
    sample_accounts: Vec<u64>,
    failures: u64,
    attempts: u64,
    t: i64,
    window: Dur,
    ip: &IpKey,
    service: &str,
) -> Option<Fire> {
    if accounts < cfg.min_distinct_accounts as usize {
        return None;
    }
    let r = ratio(failures, attempts);
    if r < cfg.min_failure_ratio {
        return None;
    }
    Some(Fire {
        rule: Rule::CampaignParticipant,
        severity: cfg.severity,
        ts: t,
        window,
        entity: Entity {
            kind: EntityType::Ip,
            value: ip.to_string(),
        },
        counts: Counts {
            distinct_accounts: Some(accounts as u64),
            failures: Some(failures),
            attempts: Some(attempts),
            failure_ratio: Some(round3(r)),
            ..Default::default()
        },
        thresholds: Counts {
            distinct_accounts: Some(cfg.min_distinct_accounts as u64),
            failure_ratio: Some(cfg.min_failure_ratio),
            ..Default::default()
        },
        sample_accounts,
        sample_ips: Vec::new(),
        because: Some(format!("distributed_credential_stuffing on {service}")),
        trace_ids: Vec::new(),
        summary: format!(
            "{ip} failed on {accounts} accounts of {service} during its distributed campaign (failure ratio {r:.2})"
        ),
    })
}
