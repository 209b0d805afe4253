//! Deterministic synthetic authentication traffic for tests, benchmarks and the
//! demo (`atowatch simulate`).
//!
//! A benign population (home, corporate-NAT and mobile-CGNAT users across
//! several services, with typos, forgotten passwords and a diurnal curve) is
//! generated under explicit per-IP and per-account budgets so that it stays at
//! most a third of every default rule threshold. Attacks are then woven in after
//! a warm-up, one at a time, and described in [`Labels`].
//!
//! Everything derives from `ChaCha8Rng::seed_from_u64(seed)` and integer/IEEE
//! arithmetic only (no transcendental functions, no hash-map iteration, no
//! wall clock), so a seed gives byte-identical output on every platform.

mod attacks;
mod format;
mod labels;
mod population;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use labels::{AttackLabel, BenignLabels, Labels, SkippedAttack};

use format::{
    mix64, push_hex, push_i64, push_json_str, push_padded, push_rfc3339_ms, push_u64, rfc3339_ms,
};

pub(crate) const SECOND_MS: i64 = 1_000;
pub(crate) const MINUTE_MS: i64 = 60_000;
pub(crate) const HOUR_MS: i64 = 3_600_000;

/// 2026-11-21T00:00:00Z.
pub const DEFAULT_START_MS: i64 = format::days_from_civil(2026, 11, 21) * format::DAY_MS;
/// Attacks start no earlier than this, so service baselines exist first.
pub const WARMUP_MS: i64 = 30 * MINUTE_MS;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttackKind {
    Bruteforce,
    DistributedBruteforce,
    CredentialStuffing,
    CredentialStuffingSlow,
    UserEnumeration,
    IpVelocity,
    DistributedCredentialStuffing,
    AccountTakeover,
}

impl AttackKind {
    pub const ALL: [AttackKind; 8] = [
        AttackKind::Bruteforce,
        AttackKind::DistributedBruteforce,
        AttackKind::CredentialStuffing,
        AttackKind::CredentialStuffingSlow,
        AttackKind::UserEnumeration,
        AttackKind::IpVelocity,
        AttackKind::DistributedCredentialStuffing,
        AttackKind::AccountTakeover,
    ];

    /// The rule name, which is also the serde name.
    pub fn as_str(&self) -> &'static str {
        match self {
            AttackKind::Bruteforce => "bruteforce",
            AttackKind::DistributedBruteforce => "distributed_bruteforce",
            AttackKind::CredentialStuffing => "credential_stuffing",
            AttackKind::CredentialStuffingSlow => "credential_stuffing_slow",
            AttackKind::UserEnumeration => "user_enumeration",
            AttackKind::IpVelocity => "ip_velocity",
            AttackKind::DistributedCredentialStuffing => "distributed_credential_stuffing",
            AttackKind::AccountTakeover => "account_takeover",
        }
    }

    /// Rules the engine must raise for a label of this kind.
    pub fn expected_rules(&self) -> &'static [&'static str] {
        match self {
            AttackKind::DistributedCredentialStuffing => {
                &["distributed_credential_stuffing", "campaign_participant"]
            }
            AttackKind::Bruteforce => &["bruteforce"],
            AttackKind::DistributedBruteforce => &["distributed_bruteforce"],
            AttackKind::CredentialStuffing => &["credential_stuffing"],
            AttackKind::CredentialStuffingSlow => &["credential_stuffing_slow"],
            AttackKind::UserEnumeration => &["user_enumeration"],
            AttackKind::IpVelocity => &["ip_velocity"],
            AttackKind::AccountTakeover => &["account_takeover"],
        }
    }
}

impl fmt::Display for AttackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AttackKind {
    type Err = String;

    /// Accepts the rule names; `-` is accepted for `_` since CLI users type both.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        AttackKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == norm)
            .ok_or_else(|| {
                let valid: Vec<&str> = AttackKind::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown attack kind `{s}`; valid kinds: {}",
                    valid.join(", ")
                )
            })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimOptions {
    pub seed: u64,
    pub start_ms: i64,
    pub duration_ms: i64,
    /// Benign accounts.
    pub accounts: u32,
    /// Approximate number of benign client IPs (IPv4 addresses and IPv6 /64s).
    pub ips: u32,
    /// Target benign login attempts (±10%) over the run; `None` means about
    /// 5 logins/s on average.
    pub benign_events: Option<u64>,
    /// Enabled attack kinds.
    pub attacks: Vec<AttackKind>,
}

impl Default for SimOptions {
    fn default() -> Self {
        let duration_ms = 2 * HOUR_MS;
        SimOptions {
            seed: 0,
            start_ms: DEFAULT_START_MS,
            duration_ms,
            accounts: 5_000,
            ips: 3_000,
            benign_events: None,
            attacks: SimOptions::default_attacks(duration_ms),
        }
    }
}

impl SimOptions {
    /// Every kind that fits in `duration_ms`, in [`AttackKind::ALL`] order. Kinds
    /// that do not fit are left out here and reported as skipped in the labels;
    /// naming one explicitly in `attacks` makes [`generate`] fail instead.
    pub fn default_attacks(duration_ms: i64) -> Vec<AttackKind> {
        let mut chosen: Vec<AttackKind> = Vec::new();
        for kind in AttackKind::ALL {
            let mut trial = chosen.clone();
            trial.push(kind);
            if attacks::fits(&trial, duration_ms) {
                chosen = trial;
            }
        }
        chosen
    }

    /// Defaults for a given seed and duration, with the attack set that fits it.
    pub fn for_duration(seed: u64, duration_ms: i64) -> Self {
        SimOptions {
            seed,
            duration_ms,
            attacks: SimOptions::default_attacks(duration_ms),
            ..SimOptions::default()
        }
    }
}

#[derive(thiserror::Error, Debug)]
pub enum SimError {
    #[error("invalid simulation options: {0}")]
    InvalidOptions(String),
    #[error(
        "duration {} is too short for {what}: it needs at least {} (including the {} warm-up); lengthen the run or disable it",
        format::human_duration(*duration_ms),
        format::human_duration(*needed_ms),
        format::human_duration(WARMUP_MS)
    )]
    DurationTooShort {
        what: String,
        needed_ms: i64,
        duration_ms: i64,
    },
    #[error(
        "account_takeover is produced by bruteforce, credential_stuffing or distributed_credential_stuffing; enable at least one of them"
    )]
    NoTakeoverSource,
}

/// Generated traffic plus its labels. Events are held as small fixed-size
/// records pointing into string tables and rendered on demand.
pub struct Simulation {
    pub labels: Labels,
    events: Vec<Ev>,
    tables: Tables,
    hash_seed: u64,
    seed: u64,
}

impl Simulation {
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The event's own timestamp; output order is by delivery, so about 1% of
    /// events appear up to 20 s after later-stamped ones.
    pub fn event_ts_ms(&self, i: usize) -> i64 {
        self.events[i].ts
    }

    /// Appends event `i` as one JSON object (no trailing newline).
    pub fn write_event_json(&self, i: usize, out: &mut Vec<u8>) {
        let e = &self.events[i];
        let svc = &SERVICES[e.service as usize];
        let th = mix64(self.hash_seed ^ u64::from(e.trace).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let eh = mix64(th ^ (u64::from(e.kind) + 1));
        let failure = e.kind == KIND_FAILURE;

        out.extend_from_slice(b"{\"type\":");
        out.extend_from_slice(match e.kind {
            KIND_SUCCESS => b"\"user.login\",\"outcome\":\"success\"".as_slice(),
            KIND_FAILURE => b"\"user.login\",\"outcome\":\"failure\"".as_slice(),
            _ => b"\"session.create\"".as_slice(),
        });

        out.extend_from_slice(b",\"ts\":");
        if e.flags & F_EPOCH != 0 {
            push_i64(out, e.ts);
        } else {
            out.push(b'"');
            push_rfc3339_ms(out, e.ts);
            out.push(b'"');
        }

        // What the app saw depends on the hop layout in front of the service;
        // the engine must resolve all of them back to the same client key.
        let client = self.tables.ip_text.get(e.ip);
        out.extend_from_slice(b",\"ip\":");
        match svc.front {
            Front::Direct => {
                push_json_str(out, client);
                // A client-side proxy leaking its LAN address; it is trusted
                // (private) so the resolved client must stay `ip`.
                if th & 0xFFFF < 0x0800 {
                    out.extend_from_slice(b",\"forwarded_for\":[\"192.168.");
                    push_u64(out, 1 + (th >> 40) % 4);
                    out.push(b'.');
                    push_u64(out, 2 + (th >> 48) % 200);
                    out.extend_from_slice(b"\"]");
                }
            }
            Front::Lb => {
                out.extend_from_slice(b"\"10.0.1.");
                push_u64(out, 11 + (th >> 24) % 8);
                out.extend_from_slice(b"\",\"forwarded_for\":[");
                if e.flags & F_SPOOF != 0 {
                    // Attacker-supplied left-most entry; right-most untrusted wins.
                    out.extend_from_slice(b"\"192.0.2.");
                    push_u64(out, 1 + (eh >> 8) % 254);
                    out.extend_from_slice(b"\",");
                }
                push_json_str(out, client);
                out.push(b']');
            }
            Front::LbTwoHop => {
                out.extend_from_slice(b"\"10.0.3.");
                push_u64(out, 21 + (th >> 24) % 8);
                out.extend_from_slice(b"\",\"forwarded_for\":[");
                push_json_str(out, client);
                out.extend_from_slice(b",\"10.20.0.");
                push_u64(out, 5 + (th >> 32) % 5);
                out.extend_from_slice(b"\"]");
            }
            Front::Proxy => {
                out.extend_from_slice(b"\"172.20.0.");
                push_u64(out, 5 + (th >> 24) % 3);
                out.extend_from_slice(b"\",\"forwarded_for\":[");
                push_json_str(out, client);
                out.push(b']');
            }
        }

        let exists = self.tables.exists[e.account as usize];
        out.extend_from_slice(b",\"user\":{");
        if svc.emits_id && exists {
            out.extend_from_slice(b"\"id\":\"u-");
            push_padded(out, u64::from(e.account), 6);
            out.extend_from_slice(b"\",");
        }
        out.extend_from_slice(b"\"login\":");
        push_json_str(out, self.tables.logins.get(e.account));
        if failure {
            out.extend_from_slice(if exists {
                b",\"exists\":true".as_slice()
            } else {
                b",\"exists\":false".as_slice()
            });
        }
        out.push(b'}');

        out.extend_from_slice(b",\"event_id\":\"e-");
        push_u64(out, self.seed);
        out.push(b'-');
        push_padded(out, i as u64, 9);
        out.extend_from_slice(b"\",\"service\":");
        push_json_str(out, svc.name);
        out.extend_from_slice(b",\"function\":");
        push_json_str(
            out,
            if e.kind == KIND_SESSION {
                svc.session_fn
            } else {
                svc.login_fn
            },
        );
        out.extend_from_slice(b",\"user_agent\":");
        push_json_str(out, USER_AGENTS[e.ua as usize]);
        if e.kind == KIND_SESSION {
            out.extend_from_slice(b",\"session_id\":\"sess_");
            push_hex(out, mix64(th ^ 0x5E55_1011), 16);
            out.push(b'"');
        }
        out.extend_from_slice(b",\"trace_id\":\"");
        push_hex(out, th, 16);
        push_hex(out, mix64(th), 16);
        out.extend_from_slice(b"\",\"span_id\":\"");
        push_hex(out, eh, 16);
        out.extend_from_slice(b"\",\"metadata\":{\"region\":");
        push_json_str(out, svc.region);
        if failure {
            out.extend_from_slice(if exists {
                b",\"reason\":\"invalid_password\"".as_slice()
            } else {
                b",\"reason\":\"unknown_user\"".as_slice()
            });
        }
        out.extend_from_slice(b"}}");
    }

    /// All events, one JSON object per line.
    pub fn write_jsonl<W: Write>(&self, w: W) -> io::Result<()> {
        let mut w = w;
        let mut buf = Vec::with_capacity(1 << 17);
        for i in 0..self.events.len() {
            self.write_event_json(i, &mut buf);
            buf.push(b'\n');
            if buf.len() >= 1 << 16 {
                w.write_all(&buf)?;
                buf.clear();
            }
        }
        w.write_all(&buf)?;
        w.flush()
    }

    /// Whether event `i` belongs to an attack (internal ground truth for tests).
    #[cfg(test)]
    pub(crate) fn is_attack(&self, i: usize) -> bool {
        self.events[i].flags & F_ATTACK != 0
    }
}

/// Generates a run. Fails if an explicitly enabled attack does not fit in the
/// duration, or if the options are out of range.
pub fn generate(opts: &SimOptions) -> Result<Simulation, SimError> {
    validate(opts)?;
    let plan = attacks::plan(opts, &mut stream(opts.seed, 3))?;
    let start = opts.start_ms;
    let end = opts.start_ms + opts.duration_ms;
    let target = opts
        .benign_events
        .unwrap_or(opts.duration_ms as u64 / 1000 * 5);

    let mut world = World {
        start,
        end,
        hash_seed: mix64(opts.seed ^ 0xA70_3A7C4),
        tables: Tables::default(),
        events: Vec::with_capacity((target as usize).saturating_mul(2).min(1 << 26)),
        next_trace: 0,
    };
    let curve = population::Curve::new(start, end);
    let pop = population::build(&mut world, opts, &curve, target, &mut stream(opts.seed, 1));
    let mut attack_rng = stream(opts.seed, 2);
    let guards = attacks::guards(&plan, pop.accounts, &mut attack_rng);
    population::benign(
        &mut world,
        &pop,
        &guards.benign,
        &curve,
        target,
        &mut stream(opts.seed, 4),
    );
    let mut attack_labels = attacks::run(&mut world, &pop, &plan, &guards, &mut attack_rng);
    attack_labels.sort_by(|a, b| a.start.cmp(&b.start).then(a.kind.cmp(&b.kind)));

    // Delivery order: by timestamp, except that ~1% of events were delayed in
    // transit (see `World::push`); ties broken by ids so the order is total.
    world
        .events
        .sort_unstable_by_key(|e| (e.ts + i64::from(e.delay), e.trace, e.kind));

    let labels = Labels {
        seed: opts.seed,
        start: rfc3339_ms(start),
        end: rfc3339_ms(end),
        events: world.events.len() as u64,
        attacks: attack_labels,
        skipped: plan.skipped.clone(),
        benign: BenignLabels {
            nat_ips: pop.nat_ips.iter().map(|&ip| world.key_label(ip)).collect(),
            cgnat_ips: pop
                .cgnat_ips
                .iter()
                .map(|&ip| world.key_label(ip))
                .collect(),
            high_failure_services: SERVICES
                .iter()
                .filter(|s| s.high_failure)
                .map(|s| s.name.to_string())
                .collect(),
            services: SERVICES.iter().map(|s| s.name.to_string()).collect(),
            accounts: u64::from(pop.accounts),
            ips: u64::from(pop.benign_keys),
        },
    };
    Ok(Simulation {
        labels,
        events: world.events,
        tables: world.tables,
        hash_seed: world.hash_seed,
        seed: opts.seed,
    })
}

fn validate(opts: &SimOptions) -> Result<(), SimError> {
    let bad = |m: String| Err(SimError::InvalidOptions(m));
    if opts.duration_ms < MINUTE_MS {
        return bad(format!(
            "duration must be at least 1m (got {} ms)",
            opts.duration_ms
        ));
    }
    if opts.duration_ms > 31 * format::DAY_MS {
        return bad("duration must be at most 31 days".into());
    }
    if opts.start_ms < 0 || opts.start_ms > 200 * 365 * format::DAY_MS {
        return bad("start must lie between 1970 and 2170".into());
    }
    if !(50..=20_000_000).contains(&opts.accounts) {
        return bad(format!(
            "accounts must be 50..=20000000 (got {})",
            opts.accounts
        ));
    }
    if !(10..=20_000_000).contains(&opts.ips) {
        return bad(format!("ips must be 10..=20000000 (got {})", opts.ips));
    }
    if opts.benign_events.unwrap_or(0) > 500_000_000 {
        return bad("benign_events must be at most 500000000".into());
    }
    Ok(())
}

/// Independent, reproducible streams from the one seed, so enabling or
/// disabling an attack does not reshuffle the benign population.
fn stream(seed: u64, n: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(n);
    rng
}

// ---------------------------------------------------------------------------
// Compact event storage shared by the generators.

pub(crate) const KIND_SUCCESS: u8 = 0;
pub(crate) const KIND_FAILURE: u8 = 1;
pub(crate) const KIND_SESSION: u8 = 2;

pub(crate) const F_EPOCH: u8 = 1;
pub(crate) const F_ATTACK: u8 = 2;
pub(crate) const F_SPOOF: u8 = 4;

/// 32 bytes per event; strings live in [`Tables`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ev {
    pub ts: i64,
    pub trace: u32,
    pub account: u32,
    pub ip: u32,
    /// Transit delay in ms used only for delivery order (≤ 20 s).
    pub delay: u16,
    pub kind: u8,
    pub service: u8,
    pub ua: u8,
    pub flags: u8,
}

#[derive(Default)]
pub(crate) struct StrTable {
    buf: String,
    ends: Vec<u32>,
}

impl StrTable {
    fn push(&mut self, s: &str) -> u32 {
        self.buf.push_str(s);
        self.ends
            .push(u32::try_from(self.buf.len()).expect("string table over 4 GiB"));
        (self.ends.len() - 1) as u32
    }

    pub(crate) fn get(&self, i: u32) -> &str {
        let i = i as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.buf[start..self.ends[i] as usize]
    }
}

#[derive(Default)]
pub(crate) struct Tables {
    pub logins: StrTable,
    pub exists: Vec<bool>,
    pub ip_text: StrTable,
    pub ip_addr: Vec<IpAddr>,
    /// Engine client key per address (IPv6 addresses share their /64's key).
    pub ip_key: Vec<u32>,
    pub keys: u32,
}

pub(crate) struct World {
    pub start: i64,
    pub end: i64,
    hash_seed: u64,
    pub tables: Tables,
    pub events: Vec<Ev>,
    next_trace: u32,
}

impl World {
    pub(crate) fn add_account(&mut self, login: &str, exists: bool) -> u32 {
        self.tables.exists.push(exists);
        self.tables.logins.push(login)
    }

    pub(crate) fn new_key(&mut self) -> u32 {
        self.tables.keys += 1;
        self.tables.keys - 1
    }

    pub(crate) fn add_ip(&mut self, addr: IpAddr, key: u32) -> u32 {
        self.tables.ip_addr.push(addr);
        self.tables.ip_key.push(key);
        self.tables.ip_text.push(&addr.to_string())
    }

    pub(crate) fn add_ip_own_key(&mut self, addr: IpAddr) -> u32 {
        let key = self.new_key();
        self.add_ip(addr, key)
    }

    pub(crate) fn key_of(&self, ip: u32) -> u32 {
        self.tables.ip_key[ip as usize]
    }

    /// The engine's key for an address: IPv4 as is, IPv6 as its /64.
    pub(crate) fn key_label(&self, ip: u32) -> String {
        key_label(self.tables.ip_addr[ip as usize])
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn login(
        &mut self,
        ts: i64,
        account: u32,
        ip: u32,
        service: u8,
        ua: u8,
        success: bool,
        flags: u8,
    ) -> u32 {
        let trace = self.next_trace;
        self.next_trace += 1;
        let kind = if success { KIND_SUCCESS } else { KIND_FAILURE };
        self.push(Ev {
            ts,
            trace,
            account,
            ip,
            delay: 0,
            kind,
            service,
            ua,
            flags,
        });
        trace
    }

    /// `session.create` sharing the login's trace (same request chain).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn session(
        &mut self,
        trace: u32,
        ts: i64,
        account: u32,
        ip: u32,
        service: u8,
        ua: u8,
        flags: u8,
    ) {
        if ts >= self.end {
            return;
        }
        self.push(Ev {
            ts,
            trace,
            account,
            ip,
            delay: 0,
            kind: KIND_SESSION,
            service,
            ua,
            flags,
        });
    }

    fn push(&mut self, mut e: Ev) {
        let h = mix64(self.hash_seed ^ ((u64::from(e.trace) << 2) | u64::from(e.kind)));
        // Independent 16-bit fields of one hash: ~10% epoch-ms timestamps,
        // ~1% late deliveries (Lambda retries), never later than 20 s.
        if h & 0xFFFF < 6_554 {
            e.flags |= F_EPOCH;
        }
        if (h >> 16) & 0xFFFF < 655 {
            e.delay = 1 + ((h >> 32) % 20_000) as u16;
        }
        self.events.push(e);
    }
}

pub(crate) fn key_label(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

// ---------------------------------------------------------------------------
// Services and user agents.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Front {
    /// The app sees the client directly.
    Direct,
    /// One private load balancer: `ip` is the LB, client in `forwarded_for`.
    Lb,
    /// Client, then an internal proxy hop, then the LB.
    LbTwoHop,
    /// A 172.16/12 reverse proxy in front of an old app.
    Proxy,
}

pub(crate) struct Service {
    pub name: &'static str,
    pub login_fn: &'static str,
    pub session_fn: &'static str,
    pub emits_id: bool,
    pub front: Front,
    pub region: &'static str,
    pub high_failure: bool,
}

pub(crate) const SVC_CHECKOUT: u8 = 0;
pub(crate) const SVC_ACCOUNTS: u8 = 1;
pub(crate) const SVC_MOBILE: u8 = 2;
pub(crate) const SVC_LEGACY: u8 = 3;

pub(crate) const SERVICES: [Service; 4] = [
    Service {
        name: "checkout-api",
        login_fn: "checkout-login",
        session_fn: "checkout-session",
        emits_id: true,
        front: Front::Lb,
        region: "us-east-1",
        high_failure: false,
    },
    Service {
        name: "accounts-api",
        login_fn: "accounts-authenticate",
        session_fn: "accounts-create-session",
        emits_id: false,
        front: Front::Direct,
        region: "eu-west-1",
        high_failure: false,
    },
    Service {
        name: "mobile-bff",
        login_fn: "mobile-bff-login",
        session_fn: "mobile-bff-session",
        emits_id: true,
        front: Front::LbTwoHop,
        region: "us-west-2",
        high_failure: false,
    },
    Service {
        name: "legacy-sso",
        login_fn: "legacy-sso-auth",
        session_fn: "legacy-sso-session",
        emits_id: false,
        front: Front::Proxy,
        region: "eu-central-1",
        high_failure: true,
    },
];

pub(crate) const UA_DESKTOP: (u8, u8) = (0, 6);
pub(crate) const UA_MOBILE: (u8, u8) = (6, 11);
pub(crate) const UA_ATTACK: (u8, u8) = (11, 18);
pub(crate) const UA_SCRIPTED: u8 = 18;

pub(crate) const USER_AGENTS: [&str; 19] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "AcmeShop/7.4.2 (iPhone; iOS 18.1; Scale/3.00)",
    "AcmeShop/7.4.1 (Android 14; SM-S918B)",
    "Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
    "curl/8.5.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/87.0.4280.88 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:78.0) Gecko/20100101 Firefox/78.0",
    "axios/0.21.1",
    "Apache-HttpClient/4.5.13 (Java/1.8.0_292)",
    "report-sync/2.3 (+https://intranet.example/tools/report-sync)",
];
