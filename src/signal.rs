//! What atowatch says: an ATO signal that explains itself (`../shared/design.md`,
//! "Signals out").

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::hash::hash_bytes_seeded;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
    /// One step up, saturating at critical.
    pub fn escalate(self) -> Severity {
        match self {
            Severity::Low => Severity::Medium,
            Severity::Medium => Severity::High,
            _ => Severity::Critical,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rules, in the order of the design's table. The index is a stable small integer
/// used for per-rule counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Bruteforce,
    DistributedBruteforce,
    CredentialStuffing,
    CredentialStuffingSlow,
    UserEnumeration,
    IpVelocity,
    DistributedCredentialStuffing,
    CampaignParticipant,
    AccountTakeover,
}

impl Rule {
    pub const ALL: [Rule; 9] = [
        Rule::Bruteforce,
        Rule::DistributedBruteforce,
        Rule::CredentialStuffing,
        Rule::CredentialStuffingSlow,
        Rule::UserEnumeration,
        Rule::IpVelocity,
        Rule::DistributedCredentialStuffing,
        Rule::CampaignParticipant,
        Rule::AccountTakeover,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Bruteforce => "bruteforce",
            Rule::DistributedBruteforce => "distributed_bruteforce",
            Rule::CredentialStuffing => "credential_stuffing",
            Rule::CredentialStuffingSlow => "credential_stuffing_slow",
            Rule::UserEnumeration => "user_enumeration",
            Rule::IpVelocity => "ip_velocity",
            Rule::DistributedCredentialStuffing => "distributed_credential_stuffing",
            Rule::CampaignParticipant => "campaign_participant",
            Rule::AccountTakeover => "account_takeover",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn entity_type(self) -> EntityType {
        match self {
            Rule::Bruteforce | Rule::DistributedBruteforce | Rule::AccountTakeover => {
                EntityType::Account
            }
            Rule::DistributedCredentialStuffing => EntityType::Service,
            _ => EntityType::Ip,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityType {
    Ip,
    Account,
    Service,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entity {
    #[serde(rename = "type")]
    pub kind: EntityType,
    pub value: String,
}

/// Counts. In `evidence` they are what was observed in the window when the signal
/// fired; in `thresholds` they are what the rule requires. Absent fields do not apply.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failures: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub successes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct_accounts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct_ips: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_failure_ratio: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    #[serde(flatten)]
    pub counts: Counts,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub sample_accounts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub sample_ips: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub trace_ids: Vec<String>,
    /// The rule (and entity) that made this one fire, for `account_takeover`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub because: Option<String>,
    pub thresholds: Counts,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub signal_id: String,
    pub rule: Rule,
    pub severity: Severity,
    pub entity: Entity,
    /// Event time of the event that crossed the threshold (RFC 3339).
    pub ts: String,
    pub window: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub service: Option<String>,
    pub evidence: Evidence,
    pub summary: String,
    /// The same instant as `ts`, for sorting and latency; not serialized.
    #[serde(skip)]
    pub ts_ms: i64,
}

impl Signal {
    /// Deterministic: redelivered events that cross the same threshold at the same event
    /// time give the same id, so consumers can deduplicate.
    pub fn make_id(rule: Rule, entity: &Entity, ts_ms: i64) -> String {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(rule.as_str().as_bytes());
        buf.push(0);
        buf.push(entity.kind as u8);
        buf.extend_from_slice(entity.value.as_bytes());
        buf.push(0);
        buf.extend_from_slice(&ts_ms.to_le_bytes());
        let a = hash_bytes_seeded(&buf, 0x5167_6e61_6c31);
        let b = hash_bytes_seeded(&buf, 0x5167_6e61_6c32);
        format!("{a:016x}{b:016x}")
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("signals serialize")
    }
}

/// Rounds a ratio for output: three decimals read well and serialize identically
/// everywhere.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
