//! Shared helpers for the integration tests: an event builder that writes native JSON,
//! a harness that feeds an engine and collects its signals, and config shortcuts.
#![allow(dead_code)]

pub mod kafka;
pub mod tansu;

use std::sync::atomic::{AtomicU64, Ordering};

use atowatch::config::Config;
use atowatch::engine::{Engine, Processed};
use atowatch::event::InvalidReason;
use atowatch::signal::{Rule, Signal};

/// 2025-11-21T10:00:00Z: a round time, so "10:05:00" is `T0 + 5 * MIN`.
pub const T0: i64 = 1_763_719_200_000;
pub const SEC: i64 = 1_000;
pub const MIN: i64 = 60 * SEC;
pub const HOUR: i64 = 60 * MIN;

/// The attacker in most tests.
pub const ATTACKER: &str = "203.0.113.7";
/// Someone else, not part of the attack.
pub const BYSTANDER: &str = "198.51.100.99";

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A unique event id (unique across the whole test binary).
pub fn fresh_id() -> String {
    format!("ev-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// Distinct public IPv4 addresses for `0 <= i < 60_000`.
pub fn nth_ip(i: u32) -> String {
    format!(
        "45.{}.{}.{}",
        10 + i / 250 / 250,
        (i / 250) % 250,
        1 + i % 250
    )
}

/// Event time as RFC 3339, the way signals print it.
pub fn rfc(ms: i64) -> String {
    atowatch::event::format_ts(ms)
}

/// One native event, built up field by field.
#[derive(Clone, Debug)]
pub struct Ev {
    pub kind: String,
    pub outcome: Option<String>,
    pub ts: i64,
    pub ts_as_rfc3339: bool,
    pub ip: String,
    pub forwarded_for: Option<Vec<String>>,
    pub login: Option<String>,
    pub user_id: Option<String>,
    pub exists: Option<bool>,
    pub service: Option<String>,
    pub event_id: Option<String>,
    pub trace_id: Option<String>,
}

impl Ev {
    fn new(kind: &str, outcome: Option<&str>, ts: i64, ip: &str, login: &str) -> Ev {
        let id = fresh_id();
        Ev {
            kind: kind.to_string(),
            outcome: outcome.map(str::to_string),
            ts,
            ts_as_rfc3339: false,
            ip: ip.to_string(),
            forwarded_for: None,
            login: Some(login.to_string()),
            user_id: None,
            exists: Some(true),
            service: Some("web".to_string()),
            trace_id: Some(format!("tr-{id}")),
            event_id: Some(id),
        }
    }

    /// A failed `user.login`.
    pub fn failure(ts: i64, ip: &str, login: &str) -> Ev {
        Ev::new("user.login", Some("failure"), ts, ip, login)
    }

    /// A successful `user.login`.
    pub fn success(ts: i64, ip: &str, login: &str) -> Ev {
        Ev::new("user.login", Some("success"), ts, ip, login)
    }

    /// A `session.create` (no outcome).
    pub fn session(ts: i64, ip: &str, login: &str) -> Ev {
        Ev::new("session.create", None, ts, ip, login)
    }

    pub fn exists(mut self, v: bool) -> Ev {
        self.exists = Some(v);
        self
    }

    pub fn no_exists(mut self) -> Ev {
        self.exists = None;
        self
    }

    pub fn service(mut self, s: &str) -> Ev {
        self.service = Some(s.to_string());
        self
    }

    pub fn event_id(mut self, id: &str) -> Ev {
        self.event_id = Some(id.to_string());
        self
    }

    pub fn trace_id(mut self, id: &str) -> Ev {
        self.trace_id = Some(id.to_string());
        self
    }

    pub fn forwarded_for(mut self, hops: &[&str]) -> Ev {
        self.forwarded_for = Some(hops.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Identify the user by `user.id` only.
    pub fn user_id_only(mut self, id: &str) -> Ev {
        self.login = None;
        self.user_id = Some(id.to_string());
        self
    }

    pub fn rfc3339(mut self) -> Ev {
        self.ts_as_rfc3339 = true;
        self
    }

    pub fn at(mut self, ts: i64) -> Ev {
        self.ts = ts;
        self
    }

    pub fn json(&self) -> String {
        let mut m = serde_json::Map::new();
        m.insert("type".into(), self.kind.clone().into());
        if let Some(o) = &self.outcome {
            m.insert("outcome".into(), o.clone().into());
        }
        let ts = if self.ts_as_rfc3339 {
            serde_json::Value::from(rfc(self.ts))
        } else {
            serde_json::Value::from(self.ts)
        };
        m.insert("ts".into(), ts);
        m.insert("ip".into(), self.ip.clone().into());
        if let Some(f) = &self.forwarded_for {
            m.insert("forwarded_for".into(), f.clone().into());
        }
        let mut user = serde_json::Map::new();
        if let Some(l) = &self.login {
            user.insert("login".into(), l.clone().into());
        }
        if let Some(id) = &self.user_id {
            user.insert("id".into(), id.clone().into());
        }
        if let Some(e) = self.exists {
            user.insert("exists".into(), e.into());
        }
        m.insert("user".into(), user.into());
        if let Some(s) = &self.service {
            m.insert("service".into(), s.clone().into());
        }
        if let Some(id) = &self.event_id {
            m.insert("event_id".into(), id.clone().into());
        }
        if let Some(t) = &self.trace_id {
            m.insert("trace_id".into(), t.clone().into());
        }
        serde_json::Value::Object(m).to_string()
    }
}

/// An engine plus every signal it has emitted so far.
pub struct Run {
    pub engine: Engine,
    pub signals: Vec<Signal>,
}

impl Run {
    pub fn new(cfg: Config) -> Run {
        Run {
            engine: Engine::new(cfg),
            signals: Vec::new(),
        }
    }

    pub fn feed(&mut self, ev: &Ev) -> Processed {
        self.engine
            .process_json(ev.json().as_bytes(), &mut self.signals)
    }

    pub fn feed_raw(&mut self, bytes: &[u8]) -> Processed {
        self.engine.process_json(bytes, &mut self.signals)
    }

    /// Feeds an event that must be accepted.
    pub fn ok(&mut self, ev: &Ev) {
        let p = self.feed(ev);
        assert_eq!(p, Processed::Accepted, "event not accepted: {}", ev.json());
    }

    pub fn ok_all<I: IntoIterator<Item = Ev>>(&mut self, evs: I) {
        for ev in evs {
            self.ok(&ev);
        }
    }

    /// Signals of one rule, in emission order.
    pub fn of(&self, rule: Rule) -> Vec<&Signal> {
        self.signals.iter().filter(|s| s.rule == rule).collect()
    }

    /// Signals of one rule on one entity value.
    pub fn on(&self, rule: Rule, entity: &str) -> Vec<&Signal> {
        self.signals
            .iter()
            .filter(|s| s.rule == rule && s.entity.value == entity)
            .collect()
    }

    /// The only signal of `rule`; fails listing all signals otherwise.
    pub fn one(&self, rule: Rule) -> &Signal {
        let v = self.of(rule);
        assert_eq!(
            v.len(),
            1,
            "expected exactly one {rule} signal, got {}:\n{}",
            v.len(),
            self.dump()
        );
        v[0]
    }

    pub fn count(&self, rule: Rule) -> usize {
        self.of(rule).len()
    }

    pub fn dump(&self) -> String {
        self.signals
            .iter()
            .map(|s| s.to_json())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn invalid(&self, r: InvalidReason) -> u64 {
        self.engine.stats().invalid[r.index()]
    }
}

/// Defaults with only the given rules enabled.
pub fn only(rules: &[Rule]) -> Config {
    let mut cfg = Config::default();
    let on = |r: Rule| rules.contains(&r);
    let rc = &mut cfg.rules;
    rc.bruteforce.enabled = on(Rule::Bruteforce);
    rc.distributed_bruteforce.enabled = on(Rule::DistributedBruteforce);
    rc.credential_stuffing.enabled = on(Rule::CredentialStuffing);
    rc.credential_stuffing_slow.enabled = on(Rule::CredentialStuffingSlow);
    rc.user_enumeration.enabled = on(Rule::UserEnumeration);
    rc.ip_velocity.enabled = on(Rule::IpVelocity);
    rc.distributed_credential_stuffing.enabled = on(Rule::DistributedCredentialStuffing);
    rc.campaign_participant.enabled = on(Rule::CampaignParticipant);
    rc.account_takeover.enabled = on(Rule::AccountTakeover);
    cfg
}

/// `n` timestamps from `start`, evenly spread so the first and last are exactly `span`
/// apart (integer milliseconds; `n >= 2`).
pub fn spread(start: i64, span: i64, n: usize) -> Vec<i64> {
    assert!(n >= 2);
    (0..n as i64)
        .map(|i| start + i * span / (n as i64 - 1))
        .collect()
}

/// A tiny deterministic PRNG (xorshift64*), so generated inputs are the same every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A scratch directory for one test under cargo's per-target temp dir.
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("atowatch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}
