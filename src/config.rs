//! Configuration: typed structs, their defaults, validation, and errors that name the
//! file, line and key.
//!
//! The defaults live here (the `Default` impls); `config/default.toml` spells out the
//! same values with a comment on where each number comes from, and a test holds the two
//! equal. A user file only needs the keys it changes.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::normalize::{Cidr, CidrSet};
use crate::signal::{EntityType, Rule, Severity};

/// The embedded default configuration, the same text as `config/default.toml`.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}{line}: {message}")]
    Invalid {
        origin: String,
        line: LineRef,
        message: String,
    },
}

/// `:LINE` when the offending key is in the file, nothing when it came from defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRef(pub Option<usize>);

impl fmt::Display for LineRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(l) => write!(f, ":{l}"),
            None => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Durations

/// A duration written with a unit: `500ms`, `30s`, `5m`, `24h`, `7d`. Stored in ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub i64);

impl Dur {
    pub const fn secs(s: i64) -> Dur {
        Dur(s * 1000)
    }
    pub const fn mins(m: i64) -> Dur {
        Dur(m * 60_000)
    }
    pub const fn hours(h: i64) -> Dur {
        Dur(h * 3_600_000)
    }
    pub fn ms(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        for (unit, n) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if ms != 0 && ms % n == 0 {
                return write!(f, "{}{unit}", ms / n);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Dur, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: i64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a duration (use e.g. 30s, 5m, 24h)"))?;
        let mult = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("`{s}` has no known unit (ms, s, m, h, d)")),
        };
        n.checked_mul(mult)
            .map(Dur)
            .ok_or_else(|| format!("`{s}` is too long"))
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------
// Sections

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub input: InputConfig,
    pub normalize: NormalizeConfig,
    pub time: TimeConfig,
    pub state: StateConfig,
    pub signals: SignalsConfig,
    pub rules: RulesConfig,
    pub kafka: KafkaConfig,
    pub http: HttpConfig,
    pub decisions: DecisionsConfig,
    pub webhook: crate::webhook::WebhookConfig,
    pub privacy: crate::privacy::PrivacyConfig,
}

/// Event schemas: `native`, `ocsf` (Authentication, class_uid 3002), `ecs`.
pub use crate::formats::Format as InputFormat;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    pub format: InputFormat,
    /// Per events topic, when topics carry different schemas.
    pub topic_formats: std::collections::BTreeMap<String, InputFormat>,
    pub max_event_bytes: usize,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            format: InputFormat::Native,
            topic_formats: Default::default(),
            max_event_bytes: 65_536,
        }
    }
}

impl InputConfig {
    pub fn format_of(&self, topic: &str) -> InputFormat {
        self.topic_formats
            .get(topic)
            .copied()
            .unwrap_or(self.format)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NormalizeConfig {
    pub trusted_proxies: Vec<String>,
    pub ipv6_prefix: u8,
    pub allowlist: Vec<String>,
    pub lowercase_accounts: bool,
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        NormalizeConfig {
            trusted_proxies: [
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "127.0.0.0/8",
                "::1/128",
                "fc00::/7",
            ]
            .map(String::from)
            .to_vec(),
            ipv6_prefix: 64,
            allowlist: Vec::new(),
            lowercase_accounts: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeConfig {
    pub allowed_lateness: Dur,
    pub max_forward_jump: Dur,
    pub jump_confirmations: u32,
    pub dedup_window: Dur,
}

impl Default for TimeConfig {
    fn default() -> Self {
        TimeConfig {
            allowed_lateness: Dur::secs(60),
            max_forward_jump: Dur::hours(1),
            jump_confirmations: 3,
            dedup_window: Dur::mins(10),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    pub max_ips: usize,
    pub max_accounts: usize,
    pub max_services: usize,
    pub max_dedup_ids: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            max_ips: 1_000_000,
            max_accounts: 1_000_000,
            max_services: 10_000,
            max_dedup_ids: 1_000_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalsConfig {
    pub escalation_factor: f64,
    pub sample_size: usize,
    pub output_format: SignalFormat,
}

/// How signals are written (signals topic, replay's stdout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SignalFormat {
    /// atowatch's own schema (README, "Signals out").
    #[default]
    Native,
    /// OCSF Detection Finding, class_uid 2004.
    Ocsf,
}

impl Default for SignalsConfig {
    fn default() -> Self {
        SignalsConfig {
            escalation_factor: 5.0,
            sample_size: 5,
            output_format: SignalFormat::Native,
        }
    }
}

/// A librdkafka property value. TOML strings, integers, floats and booleans are all
/// accepted and passed on as librdkafka's string form.
#[derive(Clone, Debug, PartialEq)]
pub struct PropValue(pub String);

impl Serialize for PropValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PropValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PropValue, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Any {
            S(String),
            I(i64),
            F(f64),
            B(bool),
        }
        Ok(PropValue(match Any::deserialize(d)? {
            Any::S(s) => s,
            Any::I(i) => i.to_string(),
            Any::F(f) => f.to_string(),
            Any::B(b) => b.to_string(),
        }))
    }
}

pub type Properties = std::collections::BTreeMap<String, PropValue>;

/// librdkafka properties atowatch sets itself; a config that sets them is an error.
pub const MANAGED_PROPERTIES: [(&str, &str); 4] = [
    (
        "bootstrap.servers",
        "set kafka.brokers (or ATOWATCH_BROKERS) instead",
    ),
    (
        "group.id",
        "set kafka.group_id (or ATOWATCH_GROUP_ID) instead",
    ),
    (
        "enable.auto.commit",
        "atowatch commits offsets itself, only after outputs are acknowledged",
    ),
    (
        "enable.auto.offset.store",
        "atowatch stores offsets itself, only after outputs are acknowledged",
    ),
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    pub brokers: String,
    pub group_id: String,
    pub topics: Vec<String>,
    pub signals_topic: String,
    pub dead_letter_topic: String,
    pub commit_interval: Dur,
    pub revoke_timeout: Dur,
    pub shutdown_timeout: Dur,
    pub warmup: bool,
    /// `0s` means the longest enabled rule window plus the allowed lateness.
    pub warmup_window: Dur,
    pub warmup_max_events: u64,
    pub max_pending_outputs: usize,
    /// A partition that delivers nothing for this long stops holding the watermark back.
    pub partition_idle_after: Dur,
    pub properties: Properties,
    pub consumer_properties: Properties,
    pub producer_properties: Properties,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        let props = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), PropValue(v.to_string())))
                .collect()
        };
        KafkaConfig {
            brokers: "localhost:9092".into(),
            group_id: "atowatch".into(),
            topics: vec!["auth-events".into()],
            signals_topic: "ato-signals".into(),
            dead_letter_topic: "auth-events-dlq".into(),
            commit_interval: Dur::secs(1),
            revoke_timeout: Dur::secs(10),
            shutdown_timeout: Dur::secs(25),
            warmup: true,
            warmup_window: Dur(0),
            warmup_max_events: 2_000_000,
            max_pending_outputs: 100_000,
            partition_idle_after: Dur::secs(5),
            properties: props(&[("statistics.interval.ms", "1000")]),
            consumer_properties: props(&[
                ("auto.offset.reset", "earliest"),
                ("fetch.queue.backoff.ms", "5"),
            ]),
            producer_properties: props(&[("linger.ms", "5")]),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub bind: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: "0.0.0.0:9464".into(),
        }
    }
}

/// What a decision tells the enforcer. Ordered by strength: a ban outranks a challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    None,
    Challenge,
    Ban,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRule {
    pub action: Action,
    pub ttl: Dur,
}

const fn decision(action: Action, ttl: Dur) -> DecisionRule {
    DecisionRule { action, ttl }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionRules {
    pub bruteforce: DecisionRule,
    pub distributed_bruteforce: DecisionRule,
    pub credential_stuffing: DecisionRule,
    pub credential_stuffing_slow: DecisionRule,
    pub user_enumeration: DecisionRule,
    pub ip_velocity: DecisionRule,
    pub distributed_credential_stuffing: DecisionRule,
    pub campaign_participant: DecisionRule,
    pub account_takeover: DecisionRule,
}

impl Default for DecisionRules {
    fn default() -> Self {
        DecisionRules {
            bruteforce: decision(Action::Challenge, Dur::hours(1)),
            distributed_bruteforce: decision(Action::Challenge, Dur::hours(1)),
            credential_stuffing: decision(Action::Ban, Dur::mins(15)),
            credential_stuffing_slow: decision(Action::Ban, Dur::mins(15)),
            user_enumeration: decision(Action::Ban, Dur::mins(15)),
            ip_velocity: decision(Action::None, Dur::mins(15)),
            distributed_credential_stuffing: decision(Action::None, Dur::mins(15)),
            campaign_participant: decision(Action::Ban, Dur::mins(15)),
            account_takeover: decision(Action::Ban, Dur::hours(1)),
        }
    }
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::None => "none",
            Action::Challenge => "challenge",
            Action::Ban => "ban",
        }
    }
}

impl DecisionRules {
    pub fn get(&self, rule: Rule) -> &DecisionRule {
        match rule {
            Rule::Bruteforce => &self.bruteforce,
            Rule::DistributedBruteforce => &self.distributed_bruteforce,
            Rule::CredentialStuffing => &self.credential_stuffing,
            Rule::CredentialStuffingSlow => &self.credential_stuffing_slow,
            Rule::UserEnumeration => &self.user_enumeration,
            Rule::IpVelocity => &self.ip_velocity,
            Rule::DistributedCredentialStuffing => &self.distributed_credential_stuffing,
            Rule::CampaignParticipant => &self.campaign_participant,
            Rule::AccountTakeover => &self.account_takeover,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeverityFactor {
    pub low: f64,
    pub medium: f64,
    pub high: f64,
    pub critical: f64,
}

impl Default for SeverityFactor {
    fn default() -> Self {
        SeverityFactor {
            low: 1.0,
            medium: 1.0,
            high: 1.0,
            critical: 1.0,
        }
    }
}

impl SeverityFactor {
    pub fn get(&self, s: Severity) -> f64 {
        match s {
            Severity::Low => self.low,
            Severity::Medium => self.medium,
            Severity::High => self.high,
            Severity::Critical => self.critical,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionsConfig {
    pub enabled: bool,
    /// Compacted topic the decisions are published to, keyed by entity; "" = none.
    pub topic: String,
    /// Bearer token for `GET /v1/decisions`; prefer `api_token_file` or the
    /// `ATOWATCH_DECISIONS_TOKEN` environment variable. Empty everywhere = API off.
    pub api_token: String,
    pub api_token_file: String,
    /// Bearer token for `DELETE /v1/decisions/{id}` (lifting a decision by hand);
    /// prefer `admin_token_file` or `ATOWATCH_DECISIONS_ADMIN_TOKEN`. It must differ
    /// from the API token, which bouncers hold. Empty everywhere = lifting off.
    pub admin_token: String,
    pub admin_token_file: String,
    pub max_ttl: Dur,
    pub repeat_window: Dur,
    /// The most active decisions held; past it the weakest (a challenge before a ban,
    /// then the soonest to end) are ended early, tombstoned and counted. Repeat
    /// offenders are remembered up to four times as many.
    pub max_active: usize,
    pub severity_factor: SeverityFactor,
    pub rules: DecisionRules,
}

impl Default for DecisionsConfig {
    fn default() -> Self {
        DecisionsConfig {
            enabled: true,
            topic: "atowatch-decisions".into(),
            api_token: String::new(),
            api_token_file: String::new(),
            admin_token: String::new(),
            admin_token_file: String::new(),
            max_ttl: Dur::hours(24),
            repeat_window: Dur::hours(24),
            max_active: 100_000,
            severity_factor: SeverityFactor::default(),
            rules: DecisionRules::default(),
        }
    }
}

/// Why an admin token equal to the API token is refused (config check and start-up).
const SAME_TOKENS: &str =
    "must differ from decisions.api_token (bouncers hold that one, and could lift decisions)";

impl DecisionsConfig {
    /// The API token, from `ATOWATCH_DECISIONS_TOKEN`, else `api_token_file`, else
    /// `api_token`, and the admin token, from `ATOWATCH_DECISIONS_ADMIN_TOKEN`, else
    /// `admin_token_file`, else `admin_token`. `None` keeps its endpoint off. An admin
    /// token equal to the API token is refused: every bouncer could lift.
    pub fn tokens(
        &self,
        env: Option<String>,
        admin_env: Option<String>,
    ) -> Result<(Option<String>, Option<String>), String> {
        let api = read_token(
            env,
            &self.api_token_file,
            &self.api_token,
            "decisions.api_token",
        )?;
        let admin = read_token(
            admin_env,
            &self.admin_token_file,
            &self.admin_token,
            "decisions.admin_token",
        )?;
        if admin.is_some() && admin == api {
            return Err(format!("decisions.admin_token: {SAME_TOKENS}"));
        }
        Ok((api, admin))
    }
}

/// A secret from the environment, else from `file` (`{key}_file`), else the config value.
fn read_token(
    env: Option<String>,
    file: &str,
    value: &str,
    key: &str,
) -> Result<Option<String>, String> {
    if let Some(t) = env.filter(|t| !t.trim().is_empty()) {
        return Ok(Some(t.trim().to_string()));
    }
    if !file.is_empty() {
        let t = std::fs::read_to_string(file)
            .map_err(|e| format!("{key}_file: cannot read {file}: {e}"))?;
        let t = t.trim().to_string();
        if t.is_empty() {
            return Err(format!("{key}_file: {file} is empty"));
        }
        return Ok(Some(t));
    }
    Ok(Some(value.trim().to_string()).filter(|t| !t.is_empty()))
}

/// Environment variables that override config for container use, and the key each sets.
pub const ENV_OVERRIDES: [(&str, &str); 6] = [
    ("ATOWATCH_BROKERS", "kafka.brokers"),
    ("ATOWATCH_GROUP_ID", "kafka.group_id"),
    ("ATOWATCH_TOPICS", "kafka.topics"),
    ("ATOWATCH_SIGNALS_TOPIC", "kafka.signals_topic"),
    ("ATOWATCH_DEAD_LETTER_TOPIC", "kafka.dead_letter_topic"),
    ("ATOWATCH_HTTP_BIND", "http.bind"),
];

/// Environment variables that set librdkafka credentials (never logged).
pub const SECRET_ENV: [(&str, &str); 2] = [
    ("ATOWATCH_SASL_USERNAME", "sasl.username"),
    ("ATOWATCH_SASL_PASSWORD", "sasl.password"),
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    pub bruteforce: BruteforceConfig,
    pub distributed_bruteforce: DistributedBruteforceConfig,
    pub credential_stuffing: CredentialStuffingConfig,
    pub credential_stuffing_slow: CredentialStuffingSlowConfig,
    pub user_enumeration: UserEnumerationConfig,
    pub ip_velocity: IpVelocityConfig,
    pub distributed_credential_stuffing: DistributedCredentialStuffingConfig,
    pub campaign_participant: CampaignParticipantConfig,
    pub account_takeover: AccountTakeoverConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BruteforceConfig {
    pub enabled: bool,
    pub window: Dur,
    pub min_failures: u32,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Dur>,
}

impl Default for BruteforceConfig {
    fn default() -> Self {
        BruteforceConfig {
            enabled: true,
            window: Dur::mins(5),
            min_failures: 10,
            severity: Severity::Medium,
            cooldown: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistributedBruteforceConfig {
    pub enabled: bool,
    pub window: Dur,
    pub min_failures: u32,
    pub min_distinct_ips: u32,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Dur>,
}

impl Default for DistributedBruteforceConfig {
    fn default() -> Self {
        DistributedBruteforceConfig {
            enabled: true,
            window: Dur::mins(10),
            min_failures: 10,
            min_distinct_ips: 5,
            severity: Severity::High,
            cooldown: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialStuffingConfig {
    pub enabled: bool,
    pub window: Dur,
    pub min_failures: u32,
    pub min_distinct_accounts: u32,
    pub min_failure_ratio: f64,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Dur>,
}

impl Default for CredentialStuffingConfig {
    fn default() -> Self {
        CredentialStuffingConfig {
            enabled: true,
            window: Dur::mins(10),
            min_failures: 20,
            min_distinct_accounts: 10,
            min_failure_ratio: 0.5,
            severity: Severity::High,
            cooldown: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialStuffingSlowConfig {
    pub enabled: bool,
    pub window: Dur,
    pub min_failures: u32,
    pub min_distinct_accounts: u32,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Dur>,
}

impl Default for CredentialStuffingSlowConfig {
    fn default() -> Self {
        CredentialStuffingSlowConfig {
            enabled: true,
            window: Dur::hours(24),
            min_failures: 100,
            min_distinct_accounts: 10,
            severity: Severity::Medium,
            cooldown: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserEnumerationConfig {
    pub enabled: bool,
    pub window: Dur,
    pub min_failures: u32,
    pub min_distinct_accounts: u32,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Dur>,
}

impl Default for UserEnumerationConfig {
    fn default() -> Self {
        UserEnumerationConfig {
            enabled: true,
            window: Dur::mins(10),
            min_failures: 10,
            min_distinct_accounts: 5,
            severity: Severity::Medium,
            cooldown: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpVelocityConfig {
    pub enabled: bool,
    pub window: Dur,
    pub min_attempts: u32,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Dur>,
}

impl Default for IpVelocityConfig {
    fn default() -> Self {
        IpVelocityConfig {
            enabled: true,
            window: Dur::mins(1),
            min_attempts: 120,
            severity: Severity::Medium,
            cooldown: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistributedCredentialStuffingConfig {
    pub enabled: bool,
    pub window: Dur,
    pub min_failures: u32,
    pub baseline_factor: f64,
    pub max_required_ratio: f64,
    pub min_distinct_ips: u32,
    pub min_distinct_accounts: u32,
    pub baseline_window: Dur,
    pub min_baseline_attempts: u32,
    pub default_baseline_ratio: f64,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Dur>,
}

impl Default for DistributedCredentialStuffingConfig {
    fn default() -> Self {
        DistributedCredentialStuffingConfig {
            enabled: true,
            window: Dur::mins(5),
            min_failures: 200,
            baseline_factor: 3.0,
            max_required_ratio: 0.9,
            min_distinct_ips: 50,
            min_distinct_accounts: 100,
            baseline_window: Dur::hours(1),
            min_baseline_attempts: 100,
            default_baseline_ratio: 0.3,
            severity: Severity::High,
            cooldown: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CampaignParticipantConfig {
    pub enabled: bool,
    pub min_distinct_accounts: u32,
    pub min_failure_ratio: f64,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Dur>,
}

impl Default for CampaignParticipantConfig {
    fn default() -> Self {
        CampaignParticipantConfig {
            enabled: true,
            min_distinct_accounts: 2,
            min_failure_ratio: 0.5,
            severity: Severity::Medium,
            cooldown: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountTakeoverConfig {
    pub enabled: bool,
    pub window: Dur,
    pub severity: Severity,
    pub severity_from_attacker_ip: Severity,
    pub max_lookback_successes: u32,
    pub ip_rules: Vec<Rule>,
    pub account_rules: Vec<Rule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Dur>,
}

impl Default for AccountTakeoverConfig {
    fn default() -> Self {
        AccountTakeoverConfig {
            enabled: true,
            window: Dur::hours(1),
            severity: Severity::High,
            severity_from_attacker_ip: Severity::Critical,
            max_lookback_successes: 4,
            ip_rules: vec![
                Rule::CredentialStuffing,
                Rule::CredentialStuffingSlow,
                Rule::UserEnumeration,
                Rule::CampaignParticipant,
            ],
            account_rules: vec![Rule::Bruteforce, Rule::DistributedBruteforce],
            cooldown: None,
        }
    }
}

impl RulesConfig {
    /// One signal per (rule, entity) per this long: the rule's `cooldown`, else its
    /// window (`campaign_participant` has none of its own: the campaign rule's).
    pub fn cooldown(&self, rule: Rule) -> Dur {
        let (c, w) = match rule {
            Rule::Bruteforce => (self.bruteforce.cooldown, self.bruteforce.window),
            Rule::DistributedBruteforce => (
                self.distributed_bruteforce.cooldown,
                self.distributed_bruteforce.window,
            ),
            Rule::CredentialStuffing => (
                self.credential_stuffing.cooldown,
                self.credential_stuffing.window,
            ),
            Rule::CredentialStuffingSlow => (
                self.credential_stuffing_slow.cooldown,
                self.credential_stuffing_slow.window,
            ),
            Rule::UserEnumeration => (self.user_enumeration.cooldown, self.user_enumeration.window),
            Rule::IpVelocity => (self.ip_velocity.cooldown, self.ip_velocity.window),
            Rule::DistributedCredentialStuffing => (
                self.distributed_credential_stuffing.cooldown,
                self.distributed_credential_stuffing.window,
            ),
            Rule::CampaignParticipant => (
                self.campaign_participant.cooldown,
                self.distributed_credential_stuffing.window,
            ),
            Rule::AccountTakeover => (self.account_takeover.cooldown, self.account_takeover.window),
        };
        c.unwrap_or(w)
    }
}

// ---------------------------------------------------------------------------------------
// Loading and validation

/// A validation failure: the dotted key and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyError {
    pub key: String,
    pub message: String,
}

fn key_err(key: &str, message: impl Into<String>) -> KeyError {
    KeyError {
        key: key.to_string(),
        message: message.into(),
    }
}

impl Config {
    /// Loads a file, or the embedded defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Config::from_toml_str(DEFAULT_TOML, "<embedded default.toml>"),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                Config::from_toml_str(&text, &p.display().to_string())
            }
        }
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start);
            let line = offset.map(|o| line_of(text, o));
            let key = offset.and_then(|o| key_path_at(text, o));
            let message = match key {
                Some(k) if !e.message().contains(&format!("`{k}`")) => {
                    format!("{k}: {}", e.message())
                }
                _ => e.message().to_string(),
            };
            ConfigError::Invalid {
                origin: origin.to_string(),
                line: LineRef(line),
                message,
            }
        })?;
        if let Err(ke) = cfg.validate() {
            let line = line_of_key(text, &ke.key);
            return Err(ConfigError::Invalid {
                origin: origin.to_string(),
                line: LineRef(line),
                message: format!("{}: {}", ke.key, ke.message),
            });
        }
        Ok(cfg)
    }

    /// A copy safe to print: secrets (passwords, tokens, keys) replaced.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        let secret = |k: &str| {
            ["password", "secret", "token", "key"]
                .iter()
                .any(|w| k.contains(w))
                && !k.ends_with(".location")
        };
        for props in [
            &mut c.kafka.properties,
            &mut c.kafka.consumer_properties,
            &mut c.kafka.producer_properties,
        ] {
            for (k, v) in props.iter_mut() {
                if secret(k) {
                    v.0 = "<redacted>".into();
                }
            }
        }
        if !c.webhook.url.is_empty() {
            c.webhook.url = "<redacted>".into();
        }
        if !c.decisions.api_token.is_empty() {
            c.decisions.api_token = "<redacted>".into();
        }
        if !c.decisions.admin_token.is_empty() {
            c.decisions.admin_token = "<redacted>".into();
        }
        c
    }

    /// The effective configuration, as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serializes")
    }

    pub fn trusted_proxies(&self) -> CidrSet {
        CidrSet::new(
            self.normalize
                .trusted_proxies
                .iter()
                .filter_map(|s| s.parse::<Cidr>().ok())
                .collect(),
        )
    }

    pub fn allowlist(&self) -> CidrSet {
        CidrSet::new(
            self.normalize
                .allowlist
                .iter()
                .filter_map(|s| s.parse::<Cidr>().ok())
                .collect(),
        )
    }

    /// Applies `ATOWATCH_*` environment overrides (see `ENV_OVERRIDES`) through `get`,
    /// then validates again. Returns the keys that were overridden.
    pub fn apply_env(
        &mut self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<&'static str>, ConfigError> {
        let mut applied = Vec::new();
        for (var, key) in ENV_OVERRIDES {
            let Some(v) = get(var).filter(|v| !v.trim().is_empty()) else {
                continue;
            };
            let v = v.trim().to_string();
            match key {
                "kafka.brokers" => self.kafka.brokers = v,
                "kafka.group_id" => self.kafka.group_id = v,
                "kafka.topics" => {
                    self.kafka.topics = v.split(',').map(|t| t.trim().to_string()).collect()
                }
                "kafka.signals_topic" => self.kafka.signals_topic = v,
                "kafka.dead_letter_topic" => self.kafka.dead_letter_topic = v,
                "http.bind" => self.http.bind = v,
                _ => unreachable!("every override names a key"),
            }
            applied.push(var);
        }
        // Credentials from a Kubernetes Secret arrive as environment variables.
        for (var, prop) in SECRET_ENV {
            if let Some(v) = get(var).filter(|v| !v.is_empty()) {
                self.kafka.properties.insert(prop.to_string(), PropValue(v));
                applied.push(var);
            }
        }
        if let Err(ke) = self.validate() {
            let var = ENV_OVERRIDES
                .iter()
                .find(|(var, key)| applied.contains(var) && ke.key.starts_with(key))
                .map(|(var, _)| *var)
                .unwrap_or("environment");
            return Err(ConfigError::Invalid {
                origin: var.to_string(),
                line: LineRef(None),
                message: format!("{}: {}", ke.key, ke.message),
            });
        }
        Ok(applied)
    }

    /// Every impossible value is an error naming its key.
    pub fn validate(&self) -> Result<(), KeyError> {
        self.validate_kafka()?;
        self.validate_decisions()?;
        self.privacy.validate()?;
        self.webhook
            .validate()
            .map_err(|(k, m)| key_err(&format!("webhook.{k}"), m))?;
        self.validate_rules()
    }

    fn validate_decisions(&self) -> Result<(), KeyError> {
        let d = &self.decisions;
        positive("decisions.max_ttl", d.max_ttl)?;
        non_negative("decisions.repeat_window", d.repeat_window)?;
        if d.max_active == 0 {
            return Err(key_err("decisions.max_active", "must be at least 1"));
        }
        for (k, v) in [
            ("low", d.severity_factor.low),
            ("medium", d.severity_factor.medium),
            ("high", d.severity_factor.high),
            ("critical", d.severity_factor.critical),
        ] {
            if !(v > 0.0 && v <= 1000.0) {
                return Err(key_err(
                    &format!("decisions.severity_factor.{k}"),
                    "must be above 0 and at most 1000",
                ));
            }
        }
        for rule in Rule::ALL {
            let r = d.rules.get(rule);
            if r.action != Action::None {
                positive(&format!("decisions.rules.{rule}.ttl"), r.ttl)?;
            }
            if rule.entity_type() == EntityType::Service && r.action != Action::None {
                return Err(key_err(
                    &format!("decisions.rules.{rule}.action"),
                    "a service-wide signal has no entity to act on; its campaign_participant signals do",
                ));
            }
        }
        for (key, t) in [
            ("decisions.api_token", &d.api_token),
            ("decisions.admin_token", &d.admin_token),
        ] {
            if !t.is_empty() && t.trim().len() < 16 {
                return Err(key_err(key, "must be at least 16 characters"));
            }
        }
        if !d.admin_token.trim().is_empty() && d.admin_token.trim() == d.api_token.trim() {
            return Err(key_err("decisions.admin_token", SAME_TOKENS));
        }
        if d.topic == self.kafka.signals_topic || d.topic == self.kafka.dead_letter_topic {
            return Err(key_err(
                "decisions.topic",
                "must differ from the signals and dead-letter topics",
            ));
        }
        Ok(())
    }

    fn validate_kafka(&self) -> Result<(), KeyError> {
        let k = &self.kafka;
        for (key, v) in [
            ("kafka.brokers", &k.brokers),
            ("kafka.group_id", &k.group_id),
            ("kafka.signals_topic", &k.signals_topic),
            ("kafka.dead_letter_topic", &k.dead_letter_topic),
        ] {
            if v.trim().is_empty() {
                return Err(key_err(key, "must not be empty"));
            }
        }
        if k.topics.is_empty() {
            return Err(key_err("kafka.topics", "name at least one events topic"));
        }
        for t in self.input.topic_formats.keys() {
            if !k.topics.contains(t) {
                return Err(key_err(
                    &format!("input.topic_formats.{t}"),
                    format!("`{t}` is not in kafka.topics ({})", k.topics.join(", ")),
                ));
            }
        }
        for (i, t) in k.topics.iter().enumerate() {
            let key = format!("kafka.topics[{i}]");
            if t.trim().is_empty() {
                return Err(key_err(&key, "must not be empty"));
            }
            if *t == k.signals_topic || *t == k.dead_letter_topic {
                return Err(key_err(
                    &key,
                    format!("`{t}` is also an output topic: atowatch would read its own output"),
                ));
            }
        }
        positive("kafka.commit_interval", k.commit_interval)?;
        positive("kafka.revoke_timeout", k.revoke_timeout)?;
        positive("kafka.partition_idle_after", k.partition_idle_after)?;
        positive("kafka.shutdown_timeout", k.shutdown_timeout)?;
        non_negative("kafka.warmup_window", k.warmup_window)?;
        if k.max_pending_outputs == 0 {
            return Err(key_err("kafka.max_pending_outputs", "must be at least 1"));
        }
        for (table, props) in [
            ("properties", &k.properties),
            ("consumer_properties", &k.consumer_properties),
            ("producer_properties", &k.producer_properties),
        ] {
            for name in props.keys() {
                if let Some((_, why)) = MANAGED_PROPERTIES.iter().find(|(m, _)| m == name) {
                    return Err(key_err(&format!("kafka.{table}.\"{name}\""), *why));
                }
            }
        }
        if self.http.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(key_err(
                "http.bind",
                format!(
                    "`{}` is not an address:port (e.g. 0.0.0.0:9464)",
                    self.http.bind
                ),
            ));
        }
        Ok(())
    }

    fn validate_rules(&self) -> Result<(), KeyError> {
        let n = &self.normalize;
        for (i, c) in n.trusted_proxies.iter().enumerate() {
            c.parse::<Cidr>()
                .map_err(|m| key_err(&format!("normalize.trusted_proxies[{i}]"), m))?;
        }
        for (i, c) in n.allowlist.iter().enumerate() {
            c.parse::<Cidr>()
                .map_err(|m| key_err(&format!("normalize.allowlist[{i}]"), m))?;
        }
        if !(1..=64).contains(&n.ipv6_prefix) {
            return Err(key_err(
                "normalize.ipv6_prefix",
                format!(
                    "must be 1..=64 (got {}): an attacker rotates through its /64 for free",
                    n.ipv6_prefix
                ),
            ));
        }
        if self.input.max_event_bytes < 256 {
            return Err(key_err("input.max_event_bytes", "must be at least 256"));
        }
        let t = &self.time;
        non_negative("time.allowed_lateness", t.allowed_lateness)?;
        positive("time.max_forward_jump", t.max_forward_jump)?;
        non_negative("time.dedup_window", t.dedup_window)?;
        if t.jump_confirmations == 0 {
            return Err(key_err("time.jump_confirmations", "must be at least 1"));
        }
        if t.max_forward_jump <= t.allowed_lateness {
            return Err(key_err(
                "time.max_forward_jump",
                "must be longer than time.allowed_lateness",
            ));
        }
        let s = &self.state;
        for (k, v) in [
            ("state.max_ips", s.max_ips),
            ("state.max_accounts", s.max_accounts),
            ("state.max_services", s.max_services),
            ("state.max_dedup_ids", s.max_dedup_ids),
        ] {
            if v == 0 {
                return Err(key_err(k, "must be at least 1"));
            }
        }
        if self.signals.escalation_factor.is_nan() || self.signals.escalation_factor <= 1.0 {
            return Err(key_err(
                "signals.escalation_factor",
                "must be greater than 1",
            ));
        }
        if self.signals.sample_size == 0 || self.signals.sample_size > 100 {
            return Err(key_err("signals.sample_size", "must be 1..=100"));
        }
        let r = &self.rules;
        let p = "rules.bruteforce";
        positive(&format!("{p}.window"), r.bruteforce.window)?;
        at_least_one(&format!("{p}.min_failures"), r.bruteforce.min_failures)?;
        cooldown(p, r.bruteforce.cooldown)?;

        let p = "rules.distributed_bruteforce";
        positive(&format!("{p}.window"), r.distributed_bruteforce.window)?;
        at_least_one(
            &format!("{p}.min_failures"),
            r.distributed_bruteforce.min_failures,
        )?;
        at_least_one(
            &format!("{p}.min_distinct_ips"),
            r.distributed_bruteforce.min_distinct_ips,
        )?;
        cooldown(p, r.distributed_bruteforce.cooldown)?;

        let p = "rules.credential_stuffing";
        positive(&format!("{p}.window"), r.credential_stuffing.window)?;
        at_least_one(
            &format!("{p}.min_failures"),
            r.credential_stuffing.min_failures,
        )?;
        at_least_one(
            &format!("{p}.min_distinct_accounts"),
            r.credential_stuffing.min_distinct_accounts,
        )?;
        ratio(
            &format!("{p}.min_failure_ratio"),
            r.credential_stuffing.min_failure_ratio,
        )?;
        cooldown(p, r.credential_stuffing.cooldown)?;

        let p = "rules.credential_stuffing_slow";
        positive(&format!("{p}.window"), r.credential_stuffing_slow.window)?;
        at_least_one(
            &format!("{p}.min_failures"),
            r.credential_stuffing_slow.min_failures,
        )?;
        at_least_one(
            &format!("{p}.min_distinct_accounts"),
            r.credential_stuffing_slow.min_distinct_accounts,
        )?;
        cooldown(p, r.credential_stuffing_slow.cooldown)?;

        let p = "rules.user_enumeration";
        positive(&format!("{p}.window"), r.user_enumeration.window)?;
        at_least_one(
            &format!("{p}.min_failures"),
            r.user_enumeration.min_failures,
        )?;
        at_least_one(
            &format!("{p}.min_distinct_accounts"),
            r.user_enumeration.min_distinct_accounts,
        )?;
        if r.user_enumeration.min_distinct_accounts > r.user_enumeration.min_failures {
            return Err(key_err(
                &format!("{p}.min_distinct_accounts"),
                "cannot exceed min_failures (each distinct account needs a failure)",
            ));
        }
        cooldown(p, r.user_enumeration.cooldown)?;

        let p = "rules.ip_velocity";
        positive(&format!("{p}.window"), r.ip_velocity.window)?;
        at_least_one(&format!("{p}.min_attempts"), r.ip_velocity.min_attempts)?;
        cooldown(p, r.ip_velocity.cooldown)?;

        let p = "rules.distributed_credential_stuffing";
        let d = &r.distributed_credential_stuffing;
        positive(&format!("{p}.window"), d.window)?;
        if d.window.ms() % 1000 != 0 || d.window.ms() < 10_000 {
            return Err(key_err(
                &format!("{p}.window"),
                "must be whole seconds and at least 10s",
            ));
        }
        at_least_one(&format!("{p}.min_failures"), d.min_failures)?;
        at_least_one(&format!("{p}.min_distinct_ips"), d.min_distinct_ips)?;
        at_least_one(
            &format!("{p}.min_distinct_accounts"),
            d.min_distinct_accounts,
        )?;
        if d.baseline_factor.is_nan() || d.baseline_factor < 1.0 {
            return Err(key_err(
                &format!("{p}.baseline_factor"),
                "must be at least 1",
            ));
        }
        ratio(&format!("{p}.max_required_ratio"), d.max_required_ratio)?;
        ratio(
            &format!("{p}.default_baseline_ratio"),
            d.default_baseline_ratio,
        )?;
        if d.baseline_window < d.window {
            return Err(key_err(
                &format!("{p}.baseline_window"),
                "must be at least the rule's window",
            ));
        }
        cooldown(p, d.cooldown)?;

        let p = "rules.campaign_participant";
        at_least_one(
            &format!("{p}.min_distinct_accounts"),
            r.campaign_participant.min_distinct_accounts,
        )?;
        ratio(
            &format!("{p}.min_failure_ratio"),
            r.campaign_participant.min_failure_ratio,
        )?;
        cooldown(p, r.campaign_participant.cooldown)?;

        let p = "rules.account_takeover";
        positive(&format!("{p}.window"), r.account_takeover.window)?;
        if r.account_takeover.max_lookback_successes > 1024 {
            return Err(key_err(
                &format!("{p}.max_lookback_successes"),
                "must be at most 1024",
            ));
        }
        for (i, rule) in r.account_takeover.ip_rules.iter().enumerate() {
            if rule.entity_type() != EntityType::Ip {
                return Err(key_err(
                    &format!("{p}.ip_rules[{i}]"),
                    format!("{rule} is not an IP rule"),
                ));
            }
        }
        for (i, rule) in r.account_takeover.account_rules.iter().enumerate() {
            if rule.entity_type() != EntityType::Account || *rule == Rule::AccountTakeover {
                return Err(key_err(
                    &format!("{p}.account_rules[{i}]"),
                    format!("{rule} is not an attack rule on accounts"),
                ));
            }
        }
        cooldown(p, r.account_takeover.cooldown)?;
        Ok(())
    }
}

fn positive(key: &str, d: Dur) -> Result<(), KeyError> {
    if d.ms() <= 0 {
        Err(key_err(key, format!("must be longer than 0 (got {d})")))
    } else {
        Ok(())
    }
}

fn non_negative(key: &str, d: Dur) -> Result<(), KeyError> {
    if d.ms() < 0 {
        Err(key_err(key, "must not be negative"))
    } else {
        Ok(())
    }
}

fn at_least_one(key: &str, v: u32) -> Result<(), KeyError> {
    if v == 0 {
        Err(key_err(
            key,
            "must be at least 1 (0 would fire on every event)",
        ))
    } else {
        Ok(())
    }
}

fn ratio(key: &str, v: f64) -> Result<(), KeyError> {
    if v.is_nan() || v <= 0.0 || v > 1.0 {
        Err(key_err(key, format!("must be a ratio in (0, 1] (got {v})")))
    } else {
        Ok(())
    }
}

fn cooldown(rule: &str, c: Option<Dur>) -> Result<(), KeyError> {
    match c {
        Some(d) => non_negative(&format!("{rule}.cooldown"), d),
        None => Ok(()),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// The line where a dotted key (`rules.bruteforce.window`, `normalize.allowlist[2]`) is
/// written, if the file writes it.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut item: &toml_edit::Item = doc.as_item();
    let mut span = None;
    for part in key_parts(key) {
        let (name, index) = match part.split_once('[') {
            Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (part.as_str(), None),
        };
        let table = item.as_table_like()?;
        let (k, v) = table.get_key_value(name)?;
        span = k.span().or(span);
        item = v;
        if let Some(i) = index {
            if let Some(el) = item.as_array().and_then(|a| a.get(i)) {
                span = el.span().or(span);
            }
        }
    }
    span.map(|s| line_of(text, s.start))
}

/// Splits `a.b."c.d"[2]` into `a`, `b`, `c.d[2]`: quoted parts keep their dots.
fn key_parts(key: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in key.chars() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    parts
}

/// The dotted key whose key or value covers `offset`, for errors from the deserializer
/// that name only the bad value.
fn key_path_at(text: &str, offset: usize) -> Option<String> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut path: Vec<String> = Vec::new();
    let mut table = doc.as_table() as &dyn toml_edit::TableLike;
    'descend: loop {
        for (k, v) in table.iter() {
            let key_span = table.key(k).and_then(|key| key.span());
            let covers = |s: Option<std::ops::Range<usize>>| s.is_some_and(|s| s.contains(&offset));
            if let Some(t) = v.as_table_like() {
                if covers(key_span.clone()) {
                    path.push(k.to_string());
                    return Some(path.join("."));
                }
                if table_contains(t, offset) {
                    path.push(k.to_string());
                    table = t;
                    continue 'descend;
                }
            } else if covers(key_span) || covers(v.span()) {
                path.push(k.to_string());
                return Some(path.join("."));
            }
        }
        return (!path.is_empty()).then(|| path.join("."));
    }
}

fn table_contains(t: &dyn toml_edit::TableLike, offset: usize) -> bool {
    t.iter().any(|(k, v)| {
        let ks = t.key(k).and_then(|key| key.span());
        ks.is_some_and(|s| s.contains(&offset))
            || v.span().is_some_and(|s| s.contains(&offset))
            || v.as_table_like()
                .is_some_and(|inner| table_contains(inner, offset))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_toml_is_exactly_the_builtin_defaults() {
        let parsed = Config::from_toml_str(DEFAULT_TOML, "default.toml").unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn empty_file_means_defaults() {
        assert_eq!(Config::from_toml_str("", "x").unwrap(), Config::default());
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!("5m".parse::<Dur>().unwrap(), Dur::mins(5));
        assert_eq!("24h".parse::<Dur>().unwrap().to_string(), "1d");
        assert_eq!("1500ms".parse::<Dur>().unwrap().to_string(), "1500ms");
        assert!("5".parse::<Dur>().is_err());
        assert!("5 minutes".parse::<Dur>().is_err());
    }

    fn err(text: &str) -> String {
        Config::from_toml_str(text, "my.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn unknown_key_is_an_error_naming_file_line_and_key() {
        let e = err("[rules.bruteforce]\nwindow = \"5m\"\nmin_failure = 3\n");
        assert!(e.starts_with("my.toml:3:"), "{e}");
        assert!(e.contains("min_failure"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key_and_line() {
        let e = err("[rules.credential_stuffing]\n\nmin_failures = \"lots\"\n");
        assert!(e.starts_with("my.toml:3:"), "{e}");
        assert!(e.contains("rules.credential_stuffing.min_failures"), "{e}");
    }

    #[test]
    fn managed_kafka_properties_are_refused_naming_the_key_and_line() {
        let e = err(
            "[kafka.consumer_properties]\n\"auto.offset.reset\" = \"latest\"\n\"enable.auto.commit\" = true\n",
        );
        assert!(
            e.starts_with(
                "my.toml:3: kafka.consumer_properties.\"enable.auto.commit\": atowatch commits"
            ),
            "{e}"
        );
        let e = err("[kafka.properties]\n\"bootstrap.servers\" = \"k:9092\"\n");
        assert!(e.contains("set kafka.brokers"), "{e}");
    }

    #[test]
    fn kafka_property_values_of_any_scalar_type_pass_through_as_strings() {
        let c = Config::from_toml_str(
            "[kafka.properties]\n\"statistics.interval.ms\" = 500\n\"enable.idempotence\" = true\n",
            "x",
        )
        .unwrap();
        assert_eq!(c.kafka.properties["statistics.interval.ms"].0, "500");
        assert_eq!(c.kafka.properties["enable.idempotence"].0, "true");
    }

    #[test]
    fn output_topics_cannot_be_read_as_input() {
        let e = err("[kafka]\ntopics = [\"a\", \"ato-signals\"]\n");
        assert!(e.starts_with("my.toml:2: kafka.topics[1]"), "{e}");
    }

    #[test]
    fn environment_overrides_kafka_and_http_settings() {
        let mut c = Config::default();
        let env = |k: &str| match k {
            "ATOWATCH_BROKERS" => Some("b1:9092,b2:9092".to_string()),
            "ATOWATCH_TOPICS" => Some("logins, sessions".to_string()),
            "ATOWATCH_HTTP_BIND" => Some("127.0.0.1:9000".to_string()),
            _ => None,
        };
        let applied = c.apply_env(env).unwrap();
        assert_eq!(
            applied,
            ["ATOWATCH_BROKERS", "ATOWATCH_TOPICS", "ATOWATCH_HTTP_BIND"]
        );
        assert_eq!(c.kafka.brokers, "b1:9092,b2:9092");
        assert_eq!(c.kafka.topics, ["logins", "sessions"]);
        assert_eq!(c.http.bind, "127.0.0.1:9000");
        let mut c = Config::default();
        c.apply_env(|k| (k == "ATOWATCH_SASL_PASSWORD").then(|| "s3cret".to_string()))
            .unwrap();
        assert_eq!(c.kafka.properties["sasl.password"].0, "s3cret");
        let e = c
            .apply_env(|k| (k == "ATOWATCH_HTTP_BIND").then(|| "nowhere".to_string()))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("ATOWATCH_HTTP_BIND: http.bind"), "{e}");
    }

    #[test]
    fn bad_duration_names_the_key() {
        let e = err("[time]\nallowed_lateness = \"soon\"\n");
        assert!(
            e.contains("time.allowed_lateness") && e.contains("soon"),
            "{e}"
        );
        assert!(e.starts_with("my.toml:2:"), "{e}");
    }

    #[test]
    fn impossible_values_name_the_key_and_line() {
        let e = err("# c\n[rules.bruteforce]\nmin_failures = 0\n");
        assert_eq!(
            e,
            "my.toml:3: rules.bruteforce.min_failures: must be at least 1 (0 would fire on every event)"
        );
        let e = err("[rules.credential_stuffing]\nmin_failure_ratio = 1.5\n");
        assert!(
            e.starts_with("my.toml:2: rules.credential_stuffing.min_failure_ratio"),
            "{e}"
        );
        let e = err("[normalize]\nallowlist = [\"10.0.0.0/8\", \"nope\"]\n");
        assert!(
            e.contains("normalize.allowlist[1]") && e.contains("nope"),
            "{e}"
        );
        let e = err("[normalize]\nipv6_prefix = 96\n");
        assert!(
            e.starts_with("my.toml:2: normalize.ipv6_prefix: must be 1..=64"),
            "{e}"
        );
        let e = err("[rules.account_takeover]\nip_rules = [\"bruteforce\"]\n");
        assert!(
            e.starts_with("my.toml:2: rules.account_takeover.ip_rules[0]"),
            "{e}"
        );
        let e = err("[rules.user_enumeration]\nmin_failures = 3\n");
        assert!(
            e.contains("rules.user_enumeration.min_distinct_accounts"),
            "{e}"
        );
        let e = err("[decisions]\nmax_active = 0\n");
        assert_eq!(e, "my.toml:2: decisions.max_active: must be at least 1");
    }

    #[test]
    fn effective_config_round_trips() {
        let c = Config::default();
        assert_eq!(Config::from_toml_str(&c.to_toml(), "x").unwrap(), c);
    }
}
