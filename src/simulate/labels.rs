//! Ground truth written next to the events so tests can score recall (every
//! labelled attack found) and false positives (nothing benign flagged).

use serde::{Deserialize, Serialize};

use super::AttackKind;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Labels {
    pub seed: u64,
    /// Run window, RFC 3339 with milliseconds.
    pub start: String,
    pub end: String,
    /// Number of event lines written.
    pub events: u64,
    pub attacks: Vec<AttackLabel>,
    pub skipped: Vec<SkippedAttack>,
    pub benign: BenignLabels,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AttackLabel {
    pub kind: AttackKind,
    pub expected_rules: Vec<String>,
    pub service: String,
    /// Client keys as the engine sees them: dotted IPv4, or an IPv6 `/64`
    /// prefix such as `2001:db8:1:2::/64`.
    pub ips: Vec<String>,
    /// Account keys (the `user.login` value).
    pub accounts: Vec<String>,
    pub start: String,
    pub end: String,
    pub note: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SkippedAttack {
    pub kind: AttackKind,
    pub reason: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct BenignLabels {
    /// Corporate egress addresses with hundreds of users behind them.
    pub nat_ips: Vec<String>,
    /// Carrier-grade NAT addresses shared by mobile users who rotate through them.
    pub cgnat_ips: Vec<String>,
    /// Services whose normal failure ratio is high (35–45%).
    pub high_failure_services: Vec<String>,
    pub services: Vec<String>,
    /// Benign accounts in the population.
    pub accounts: u64,
    /// Distinct benign client keys (IPv4 addresses and IPv6 /64s) allocated.
    pub ips: u64,
}

impl Labels {
    /// Every client key named by an attack label.
    pub fn attacker_ips(&self) -> std::collections::BTreeSet<&str> {
        self.attacks
            .iter()
            .flat_map(|a| a.ips.iter().map(String::as_str))
            .collect()
    }
}
