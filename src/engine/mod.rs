//! The detection engine: validated events in, signals out.
//!
//! One `Engine` owns all state and is driven by one task through `&mut self` (no locks).
//! Replay and the Kafka runtime both drive it, so they find the same signals on the same
//! events. Per event: resolve the client IP and account, admit the event time (late,
//! wild, duplicate), then update account, IP and service features in that order and run
//! the rules over them; fires pass cooldowns, flag their entity, and become signals.

pub mod clock;
pub mod dedup;
pub mod distinct;
mod index;
pub mod state;
pub mod table;
pub mod window;

use std::borrow::Cow;
use std::net::IpAddr;

use compact_str::CompactString;

use crate::config::Config;
use crate::detectors::{
    self, Cooldown, Fire, Fired, Flag, account_takeover, campaign_participant, window_cap,
};
use crate::event::{
    AuthEvent, EventKind, InvalidEvent, InvalidReason, Outcome, decode_native_into, format_ts,
};
use crate::hash::hash_bytes;
use crate::normalize::{CidrSet, IpKey, account_key, client_ip};
use crate::signal::{Evidence, Rule, Signal};

use self::clock::{Admit, Clock};
use self::dedup::Dedup;
use self::state::{AccountState, IpState, ServiceState};
use self::table::{KeyTable, Slot};

/// Asks the CPU to start loading the cache line holding `p`: state lookups are mostly
/// cache misses, and starting the next one before the current one returns overlaps
/// their latency.
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    // SAFETY: a prefetch is only a hint: it never faults (any address is allowed) and
    // neither reads into the program nor writes. SSE is baseline on x86_64.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// `prefetch` for every cache line of the `len` bytes at `p` (a slot, a short list): the
/// rules read all of it, and a line left out stalls its first reader.
#[inline(always)]
pub(crate) fn prefetch_span(p: *const u8, len: usize) {
    let mut off = 0;
    while off < len {
        prefetch(p.wrapping_add(off));
        off += 64;
    }
    prefetch(p.wrapping_add(len.saturating_sub(1)));
}

/// What happened to one input event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Processed {
    Accepted,
    /// Older than the watermark: counted, dropped.
    Late,
    /// Same `event_id` seen within the dedup window: counted, ignored.
    Duplicate,
    Invalid(InvalidEvent),
}

/// Counters for the summary and, later, metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Accepted events: login successes, login failures, session.create.
    pub login_success: u64,
    pub login_failure: u64,
    pub session_create: u64,
    pub invalid: [u64; InvalidReason::ALL.len()],
    pub late: u64,
    pub duplicates: u64,
    pub signals: [u64; Rule::ALL.len()],
    /// Signals decided while suppressed (state warm-up), not emitted.
    pub suppressed: u64,
}

impl Stats {
    pub fn accepted(&self) -> u64 {
        self.login_success + self.login_failure + self.session_create
    }
    pub fn invalid_total(&self) -> u64 {
        self.invalid.iter().sum()
    }
    pub fn signals_total(&self) -> u64 {
        self.signals.iter().sum()
    }
}

/// Sizes of the engine's state, for the summary, metrics and the memory bench.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateSize {
    pub ips: usize,
    pub accounts: usize,
    pub services: usize,
    pub dedup_ids: usize,
    /// Keys and dedup ids forgotten early because a cap was reached.
    pub evicted: u64,
    pub expired: u64,
    /// Estimated bytes held by tables, keys and per-entity state.
    pub bytes: usize,
    /// The same, by part.
    pub breakdown: Vec<(&'static str, usize)>,
}

/// Derived from config once: windows, caps, lifetimes.
struct Plan {
    keyer: Keyer,
    allow: CidrSet,
    factor: f64,
    samples: usize,
    max_event_bytes: usize,
    /// Longest account failure window and the failures kept for it.
    acct_w: i64,
    /// The shortest window counting an account's failing IPs (`DistinctWindow`).
    acct_short_w: i64,
    acct_cap: usize,
    acct_ips_cap: usize,
    acct_ttl_failure: i64,
    /// How long an IP's failure timestamps are kept: the IP failure window, or the slow
    /// rule's window when that is on (the two rules share the timestamps).
    ip_fail_w: i64,
    /// The shortest window counting an IP's failing accounts.
    ip_short_w: i64,
    ip_cap: usize,
    ip_accounts_cap: usize,
    ip_vel_cap: usize,
    ip_ttl_failure: i64,
    ip_ttl_success: i64,
    svc_ttl: i64,
    cs_slice: i64,
    ato_ip: [bool; Rule::ALL.len()],
    ato_account: [bool; Rule::ALL.len()],
    /// Per rule, by `Rule::index`.
    cooldown_ms: [i64; Rule::ALL.len()],
    /// The longest rule window: what a warm-up must re-read.
    max_window_ms: i64,
}

/// An event with its keys computed and its state on the way into cache (see
/// `Engine::prepare`), or the reason it is invalid.
pub struct Prepared<'e>(Ready<'e>);

// `Ahead` moves these through its ring: an event keyed elsewhere stays where it is.
enum Ready<'e> {
    Event(&'e AuthEvent<'e>, Keys<'e>),
    Keyed(&'e Keyed<'e>),
    Invalid(InvalidEvent),
}

impl Ready<'_> {
    /// Failure or not, the keys, and the names the rules read (account, service,
    /// trace id); `None` for an invalid event.
    fn loads(&self) -> Option<(bool, &KeyParts, [Option<&str>; 3])> {
        let (ev, parts, account) = match self {
            Ready::Event(ev, k) => (Facts::of(ev), &k.parts, &*k.account),
            Ready::Keyed(k) => (k.facts(), &k.parts, &*k.account),
            Ready::Invalid(_) => return None,
        };
        Some((
            ev.is_failure(),
            parts,
            [Some(account), ev.service, ev.trace_id],
        ))
    }
}

/// What the rules read of an event besides its keys, borrowed from it: a few words,
/// where a decoded event is several hundred bytes.
#[derive(Clone, Copy, Debug)]
struct Facts<'e> {
    ts_ms: i64,
    kind: EventKind,
    outcome: Option<Outcome>,
    user_exists: Option<bool>,
    service: Option<&'e str>,
    trace_id: Option<&'e str>,
}

impl<'e> Facts<'e> {
    fn of(ev: &'e AuthEvent<'_>) -> Facts<'e> {
        Facts {
            ts_ms: ev.ts_ms,
            kind: ev.kind,
            outcome: ev.outcome,
            user_exists: ev.user_exists(),
            service: ev.service(),
            trace_id: ev.trace_id(),
        }
    }
    fn is_failure(&self) -> bool {
        self.outcome == Some(Outcome::Failure)
    }
    fn is_login(&self) -> bool {
        self.kind == EventKind::Login
    }
}

/// An event as a driver holds it (see `AsEvent`).
pub enum Item<'e> {
    Event(&'e AuthEvent<'e>),
    Keyed(&'e Keyed<'e>),
    /// Rejected by its decoder.
    Invalid(&'e InvalidEvent),
}

/// An event as a driver holds it: decoded, decoded with its keys (`Keyed`), or rejected.
pub trait AsEvent<'e> {
    fn item(&'e self) -> Item<'e>;
}

impl<'e> AsEvent<'e> for Result<Keyed<'e>, InvalidEvent> {
    fn item(&'e self) -> Item<'e> {
        match self {
            Ok(k) => Item::Keyed(k),
            Err(e) => Item::Invalid(e),
        }
    }
}

impl<'e> AsEvent<'e> for AuthEvent<'e> {
    fn item(&'e self) -> Item<'e> {
        Item::Event(self)
    }
}

impl<'e> AsEvent<'e> for Result<AuthEvent<'e>, InvalidEvent> {
    fn item(&'e self) -> Item<'e> {
        match self {
            Ok(ev) => Item::Event(ev),
            Err(e) => Item::Invalid(e),
        }
    }
}

/// Events prepared ahead.
const AHEAD: usize = 4;

/// Walks a slice of events for an engine, handing each over prepared (`Engine::prepare`)
/// with the three steps spread over the events before it: event i + 3 is prepared,
/// i + 2 warmed and i + 1 deepened before event i is handed over. Four in flight
/// measured best (`benches/engine.rs`, detection alone, one run): 652 ns/event, against
/// 920 one event at a time, 707 and 710 with two or three in flight and no `deepen`,
/// and 691 with six or eight.
pub struct Ahead<'e, T> {
    items: &'e [T],
    ring: [Option<Prepared<'e>>; AHEAD],
    next: usize,
}

impl<'e, T: AsEvent<'e>> Ahead<'e, T> {
    pub fn new(items: &'e [T]) -> Self {
        Ahead {
            items,
            ring: std::array::from_fn(|_| None),
            next: 0,
        }
    }

    /// The next event, prepared by `engine`, which is the one to process it; `None`
    /// after the last.
    pub fn next(&mut self, engine: &Engine) -> Option<Prepared<'e>> {
        let i = self.next;
        if i >= self.items.len() {
            return None;
        }
        if i == 0 {
            for (j, item) in self.items.iter().take(AHEAD - 1).enumerate() {
                self.ring[j] = Some(engine.prepare_item(item));
            }
            for j in [0, 1] {
                if let Some(p) = &self.ring[j] {
                    engine.warm(p);
                }
            }
            if let Some(p) = &self.ring[0] {
                engine.deepen(p);
            }
        }
        if let Some(item) = self.items.get(i + AHEAD - 1) {
            self.ring[(i + AHEAD - 1) % AHEAD] = Some(engine.prepare_item(item));
        }
        if let Some(p) = &self.ring[(i + 2) % AHEAD] {
            engine.warm(p);
        }
        if let Some(p) = &self.ring[(i + 1) % AHEAD] {
            engine.deepen(p);
        }
        self.next += 1;
        self.ring[i % AHEAD].take()
    }
}

/// An event's keys, computed once per event.
struct Keys<'e> {
    account: Cow<'e, str>,
    parts: KeyParts,
}

/// The keys that borrow nothing from the event.
#[derive(Clone, Copy, Debug)]
struct KeyParts {
    ip: IpAddr,
    ip_key: IpKey,
    ip_hash: u64,
    acct_hash: u64,
    id_hash: Option<u64>,
}

/// What computing an event's keys takes from config (trusted proxies, account case,
/// IPv6 prefix). Cloned to the thread that decodes, the keys can be computed there
/// (`Keyed`), while the event's bytes are in that core's cache.
#[derive(Clone, Debug)]
pub struct Keyer {
    trusted: CidrSet,
    lowercase: bool,
    v6_prefix: u8,
}

impl Keyer {
    fn keys<'a>(&self, ev: &AuthEvent<'a>) -> Result<Keys<'a>, InvalidEvent> {
        let ip = client_ip(ev, &self.trusted)?;
        let account = account_key(ev, self.lowercase);
        let ip_key = IpKey::from_addr(ip, self.v6_prefix);
        Ok(Keys {
            parts: KeyParts {
                ip,
                ip_key,
                ip_hash: ip_key.hash(),
                acct_hash: hash_bytes(account.as_bytes()),
                id_hash: ev
                    .raw
                    .event_id
                    .as_deref()
                    .map(|id| hash_bytes(id.as_bytes())),
            },
            account,
        })
    }
}

/// A decoded event with its keys computed (`Engine::keyer`), ready for `Ahead`. An event
/// whose keys cannot be computed (a bad IP) is invalid, as `process_event` finds it.
///
/// It keeps only what the rules read: 168 bytes, where the event alone is 344. In `run`
/// it is written on the polling thread and read on the engine's, and each cache line it
/// spans is a transfer between cores.
#[derive(Debug)]
pub struct Keyed<'a> {
    ts_ms: i64,
    kind: EventKind,
    outcome: Option<Outcome>,
    user_exists: Option<bool>,
    service: Option<Cow<'a, str>>,
    trace_id: Option<Cow<'a, str>>,
    account: Cow<'a, str>,
    parts: KeyParts,
}

impl<'a> Keyed<'a> {
    /// Keys `ev` and keeps what the rules read, taking its names out of it (so a
    /// driver can decode into one event in place and key it, again and again).
    pub fn new(keyer: &Keyer, ev: &mut AuthEvent<'a>) -> Result<Keyed<'a>, InvalidEvent> {
        let Keys { account, parts } = keyer.keys(ev)?;
        Ok(Keyed {
            ts_ms: ev.ts_ms,
            kind: ev.kind,
            outcome: ev.outcome,
            user_exists: ev.user_exists(),
            service: ev.raw.service.take(),
            trace_id: ev.raw.trace_id.take(),
            account,
            parts,
        })
    }

    fn facts(&self) -> Facts<'_> {
        Facts {
            ts_ms: self.ts_ms,
            kind: self.kind,
            outcome: self.outcome,
            user_exists: self.user_exists,
            service: self.service.as_deref(),
            trace_id: self.trace_id.as_deref(),
        }
    }

    fn keys(&self) -> Keys<'_> {
        Keys {
            account: Cow::Borrowed(&self.account),
            parts: self.parts,
        }
    }
}

impl Plan {
    fn keys<'a>(&self, ev: &AuthEvent<'a>) -> Result<Keys<'a>, InvalidEvent> {
        self.keyer.keys(ev)
    }

    fn new(cfg: &Config) -> Plan {
        let r = &cfg.rules;
        let f = cfg.signals.escalation_factor;
        let cooldown_ms = Rule::ALL.map(|rule| r.cooldown(rule).ms());
        let cd = |rule: Rule| cooldown_ms[rule.index()];
        let acct_w = r
            .bruteforce
            .window
            .ms()
            .max(r.distributed_bruteforce.window.ms());
        let ato_w = r.account_takeover.window.ms();
        let acct_cool = cd(Rule::Bruteforce)
            .max(cd(Rule::DistributedBruteforce))
            .max(cd(Rule::AccountTakeover));
        let ip_w = r
            .credential_stuffing
            .window
            .ms()
            .max(r.distributed_credential_stuffing.window.ms());
        let ip_cool = [
            Rule::CredentialStuffing,
            Rule::CredentialStuffingSlow,
            Rule::UserEnumeration,
            Rule::IpVelocity,
            Rule::CampaignParticipant,
        ]
        .map(cd)
        .into_iter()
        .max()
        .unwrap_or(0);
        let slow_w = if r.credential_stuffing_slow.enabled {
            r.credential_stuffing_slow.window.ms()
        } else {
            0
        };
        let mut ato_ip = [false; Rule::ALL.len()];
        for rule in &r.account_takeover.ip_rules {
            ato_ip[rule.index()] = true;
        }
        let mut ato_account = [false; Rule::ALL.len()];
        for rule in &r.account_takeover.account_rules {
            ato_account[rule.index()] = true;
        }
        Plan {
            keyer: Keyer {
                trusted: cfg.trusted_proxies(),
                lowercase: cfg.normalize.lowercase_accounts,
                v6_prefix: cfg.normalize.ipv6_prefix,
            },
            allow: cfg.allowlist(),
            factor: f,
            samples: cfg.signals.sample_size,
            max_event_bytes: cfg.input.max_event_bytes,
            acct_w,
            acct_short_w: r
                .bruteforce
                .window
                .ms()
                .min(r.distributed_bruteforce.window.ms()),
            acct_cap: window_cap(r.bruteforce.min_failures, f)
                .max(window_cap(r.distributed_bruteforce.min_failures, f)),
            acct_ips_cap: (r.distributed_bruteforce.min_distinct_ips as usize * 2).max(16),
            acct_ttl_failure: acct_w.max(ato_w).max(acct_cool),
            ip_fail_w: ip_w.max(slow_w),
            ip_short_w: r.credential_stuffing.window.ms(),
            ip_cap: window_cap(r.credential_stuffing.min_failures, f).max(
                if r.credential_stuffing_slow.enabled {
                    detectors::credential_stuffing_slow::window_cap_needed(
                        &r.credential_stuffing_slow,
                        f,
                    )
                } else {
                    0
                },
            ),
            ip_accounts_cap: (r.credential_stuffing.min_distinct_accounts as usize * 2)
                .max(detectors::credential_stuffing_slow::distinct_cap_needed(
                    &r.credential_stuffing_slow,
                ))
                .max(16),
            ip_vel_cap: window_cap(r.ip_velocity.min_attempts, f),
            ip_ttl_failure: ip_w
                .max(r.user_enumeration.window.ms())
                .max(slow_w)
                .max(ato_w)
                .max(ip_cool),
            ip_ttl_success: r
                .ip_velocity
                .window
                .ms()
                .max(ato_w)
                .max(r.credential_stuffing.window.ms()),
            svc_ttl: r.distributed_credential_stuffing.window.ms()
                + r.distributed_credential_stuffing.baseline_window.ms(),
            cs_slice: detectors::credential_stuffing::slice_ms(&r.credential_stuffing),
            ato_ip,
            ato_account,
            cooldown_ms,
            max_window_ms: acct_w
                .max(ato_w)
                .max(ip_w)
                .max(slow_w)
                .max(r.user_enumeration.window.ms())
                .max(r.ip_velocity.window.ms()),
        }
    }
}

pub struct Engine {
    cfg: Config,
    plan: Plan,
    core: Core,
}

/// Everything that changes per event; split from the config so rules can be read while
/// state is written.
struct Core {
    clock: Clock,
    dedup: Dedup,
    ips: KeyTable<IpKey, IpState>,
    accounts: KeyTable<CompactString, AccountState>,
    services: KeyTable<CompactString, ServiceState>,
    stats: Stats,
    suppress: bool,
    fires: Vec<Fire>,
    next_expiry: i64,
    first_ts: Option<i64>,
    /// Accounts under attack: hash -> when, and by which rule. Small; read on every
    /// successful sign-in.
    flagged_accounts: hashbrown::HashMap<u64, Flag>,
    /// IPs an IP rule flagged: hash -> when, and by which rule. Mirrors the flag in the
    /// IP's `Fired` so that a successful sign-in, the most common event, need not load
    /// the IP's boxed failure state (a cache miss) to learn it is not flagged.
    flagged_ips: hashbrown::HashMap<u64, Flag>,
    /// Expiry passes so far (see `FLAG_SWEEP_EVERY`).
    expiries: u32,
}

/// Event time between sweeps of the expiry wheels.
const EXPIRY_EVERY_MS: i64 = 1_000;

/// Expiry passes between sweeps of the flag maps. A flag lives at least the takeover
/// window (an hour by default) and every lookup checks its span, so sweeping is only
/// memory: once a minute keeps ~1/60 more flags, where once a second scanned every flag
/// (during a campaign, thousands) every second, ~130 instructions an event in the bench.
const FLAG_SWEEP_EVERY: u32 = 60;

impl Engine {
    /// The config must already be validated (`Config::load` does).
    pub fn new(cfg: Config) -> Engine {
        let plan = Plan::new(&cfg);
        let bucket = |ttl: i64| (ttl / 64).max(1_000);
        let core = Core {
            clock: Clock::new(&cfg.time),
            dedup: Dedup::new(cfg.time.dedup_window.ms(), cfg.state.max_dedup_ids),
            ips: KeyTable::new(bucket(plan.ip_ttl_success), cfg.state.max_ips),
            accounts: KeyTable::new(bucket(plan.acct_ttl_failure), cfg.state.max_accounts),
            services: KeyTable::new(bucket(plan.svc_ttl), cfg.state.max_services),
            stats: Stats::default(),
            suppress: false,
            fires: Vec::new(),
            next_expiry: i64::MIN,
            first_ts: None,
            flagged_accounts: hashbrown::HashMap::new(),
            flagged_ips: hashbrown::HashMap::new(),
            expiries: 0,
        };
        Engine { cfg, plan, core }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn stats(&self) -> &Stats {
        &self.core.stats
    }

    pub fn watermark(&self) -> i64 {
        self.core.clock.watermark()
    }

    /// The newest event time accepted, as RFC 3339.
    pub fn watermark_time(&self) -> Option<String> {
        self.core.clock.max_ts().map(format_ts)
    }

    /// The events that follow come from input source `id` (a Kafka partition's slot).
    /// Each source keeps its own stream time and the watermark is the least of them, so
    /// partitions running ahead of each other make nothing late (see `clock`).
    #[inline]
    pub fn set_source(&mut self, id: u32) {
        self.core.clock.set_source(id as usize);
    }

    /// Source `id` (a newly assigned partition) has events to come: until its first
    /// arrives it holds the watermark, and so the expiry of state, where it is.
    pub fn expect_source(&mut self, id: u32) {
        self.core.clock.expect(id as usize);
    }

    /// Source `id` has nothing to deliver, or is gone: it stops holding the watermark
    /// back until its next event.
    pub fn set_source_idle(&mut self, id: u32) {
        self.core.clock.set_idle(id as usize);
    }

    /// Sources holding the watermark back.
    pub fn live_sources(&self) -> usize {
        self.core.clock.live_sources()
    }

    pub fn max_event_ms(&self) -> Option<i64> {
        self.core.clock.max_ts()
    }

    pub fn first_event_ms(&self) -> Option<i64> {
        self.core.first_ts
    }

    /// While suppressed, state is updated and cooldowns are taken as if signals were
    /// emitted, but none are: used to warm state by re-reading already-handled input.
    pub fn set_suppress(&mut self, on: bool) {
        self.core.suppress = on;
    }

    /// Decodes one native JSON event and processes it. Signals are appended to `out`.
    pub fn process_json(&mut self, bytes: &[u8], out: &mut Vec<Signal>) -> Processed {
        if bytes.len() > self.plan.max_event_bytes {
            let e = crate::formats::oversized(bytes.len(), self.plan.max_event_bytes);
            return self.core.invalid(e);
        }
        let mut ev = AuthEvent::default();
        match decode_native_into(bytes, &mut ev) {
            Ok(()) => self.process_event(&ev, out),
            Err(e) => self.core.invalid(e),
        }
    }

    /// Counts an event its reader rejected before decoding (e.g. a line cut for size).
    pub fn reject(&mut self, e: InvalidEvent) -> Processed {
        self.core.invalid(e)
    }

    /// Processes one validated event. Signals are appended to `out`.
    pub fn process_event(&mut self, ev: &AuthEvent<'_>, out: &mut Vec<Signal>) -> Processed {
        self.core.process_event(&self.cfg, &self.plan, ev, out)
    }

    /// The first of the steps that process an event the way `process_event` does, but
    /// with its state loaded ahead. Most of detection's time is waiting for per-key
    /// state (an id set, an IP's and an account's index entries and slots) that is not
    /// in cache; started a few events early, those loads overlap the work on the events
    /// in between. This step computes the keys and starts loading the index lines;
    /// `warm` the slots they name; `deepen` what the slots point to; `process_prepared`
    /// does the work (`Ahead` spaces them an event apart). Only `process_prepared`
    /// changes state: skipping `warm` or `deepen`, or state changed in between, costs
    /// time, never correctness.
    pub fn prepare<'e>(&self, ev: &'e AuthEvent<'e>) -> Prepared<'e> {
        let ready = match self.plan.keys(ev) {
            Ok(k) => Ready::Event(ev, k),
            Err(e) => Ready::Invalid(e),
        };
        self.start_loading(ready)
    }

    /// The config an event's keys are computed with, for computing them on another
    /// thread (`Keyed`).
    pub fn keyer(&self) -> &Keyer {
        &self.plan.keyer
    }

    fn start_loading<'e>(&self, ready: Ready<'e>) -> Prepared<'e> {
        if let Some((failure, k, _)) = ready.loads() {
            let c = &self.core;
            if let Some(h) = k.id_hash {
                c.dedup.prefetch(h);
            }
            c.ips.prefetch_index(k.ip_hash);
            if failure {
                c.accounts.prefetch_index(k.acct_hash);
            }
        }
        Prepared(ready)
    }

    /// `prepare` for an event as a driver holds it; a rejected one stays rejected.
    pub fn prepare_item<'e, T: AsEvent<'e>>(&self, item: &'e T) -> Prepared<'e> {
        match item.item() {
            Item::Event(ev) => self.prepare(ev),
            Item::Keyed(k) => self.start_loading(Ready::Keyed(k)),
            Item::Invalid(e) => Prepared(Ready::Invalid(e.clone())),
        }
    }

    /// The second step (see `prepare`): starts loading the slots of the event's IP and,
    /// on a failure, its account, and the names the rules will read.
    pub fn warm(&self, p: &Prepared<'_>) {
        if let Some((failure, k, names)) = p.0.loads() {
            let c = &self.core;
            c.ips.prefetch_slot(k.ip_hash);
            if failure {
                c.accounts.prefetch_slot(k.acct_hash);
            }
            // The names the rules read (compared, copied): in `run` they are in the
            // message, last read on the polling thread.
            for s in names.into_iter().flatten() {
                prefetch(s.as_ptr());
            }
        }
    }

    /// The third step (see `prepare`): with the slots in cache, starts loading what they
    /// point to (an IP's spilled windows and failure state, an account's failures).
    pub fn deepen(&self, p: &Prepared<'_>) {
        if let Some((failure, k, _)) = p.0.loads() {
            let c = &self.core;
            if let Some(s) = c.ips.find_by_hash(k.ip_hash) {
                s.state.prefetch(failure);
            }
            if failure {
                if let Some(h) = c
                    .accounts
                    .find_by_hash(k.acct_hash)
                    .and_then(|s| s.state.hot.as_deref())
                {
                    prefetch((h as *const state::AccountHot).cast());
                }
            }
        }
    }

    /// The last step (see `prepare`): processes the event exactly as `process_event`.
    pub fn process_prepared(&mut self, p: Prepared<'_>, out: &mut Vec<Signal>) -> Processed {
        match p.0 {
            Ready::Event(ev, k) => {
                self.core
                    .process_keyed(&self.cfg, &self.plan, &Facts::of(ev), &k, out)
            }
            Ready::Keyed(k) => {
                self.core
                    .process_keyed(&self.cfg, &self.plan, &k.facts(), &k.keys(), out)
            }
            Ready::Invalid(e) => self.core.invalid(e),
        }
    }

    /// Processes events in order as `process_event` would (a rejected one is counted
    /// as `reject` would), each with its state loaded a few events ahead (`Ahead`).
    /// `each` gets each event's index, result and signals (then cleared).
    pub fn process_all<'e, T: AsEvent<'e>>(
        &mut self,
        items: &'e [T],
        out: &mut Vec<Signal>,
        mut each: impl FnMut(usize, Processed, &mut Vec<Signal>),
    ) {
        let mut ahead = Ahead::new(items);
        let mut i = 0;
        while let Some(p) = ahead.next(self) {
            let r = self.process_prepared(p, out);
            each(i, r, out);
            out.clear();
            i += 1;
        }
    }

    /// Keys tracked, evictions, and an estimate of the bytes state holds.
    pub fn state_size(&self) -> StateSize {
        self.core.state_size()
    }

    /// Sign-ins per tracked service, [successes, failures] since it was first seen (for
    /// the per-service metric). Services are tracked while the service rule is on.
    pub fn service_logins(&self) -> impl Iterator<Item = (&str, [u64; 2])> {
        self.core
            .services
            .iter()
            .map(|s| (s.key.as_str(), s.state.logins))
    }

    /// Keys tracked, evictions and expiries, without the byte estimate (which walks every
    /// key): cheap enough to call every second.
    pub fn state_counts(&self) -> StateSize {
        let c = &self.core;
        StateSize {
            ips: c.ips.len(),
            accounts: c.accounts.len(),
            services: c.services.len(),
            dedup_ids: c.dedup.len(),
            evicted: c.evicted(),
            expired: c.expired(),
            bytes: 0,
            breakdown: Vec::new(),
        }
    }

    /// The longest window any enabled rule looks back over, plus the allowed lateness:
    /// how much input rebuilds the state that matters.
    pub fn max_window_ms(&self) -> i64 {
        self.plan.max_window_ms + self.cfg.time.allowed_lateness.ms()
    }
}

impl Core {
    /// Keys and dedup ids forgotten early because a `state.max_*` cap was reached.
    fn evicted(&self) -> u64 {
        self.ips.evicted + self.accounts.evicted + self.services.evicted + self.dedup.evicted
    }

    fn expired(&self) -> u64 {
        self.ips.expired + self.accounts.expired + self.services.expired
    }

    fn invalid(&mut self, e: InvalidEvent) -> Processed {
        self.stats.invalid[e.reason.index()] += 1;
        Processed::Invalid(e)
    }

    fn process_event(
        &mut self,
        cfg: &Config,
        plan: &Plan,
        ev: &AuthEvent<'_>,
        out: &mut Vec<Signal>,
    ) -> Processed {
        match plan.keys(ev) {
            Ok(k) => self.process_keyed(cfg, plan, &Facts::of(ev), &k, out),
            Err(e) => self.invalid(e),
        }
    }

    fn process_keyed(
        &mut self,
        cfg: &Config,
        plan: &Plan,
        ev: &Facts<'_>,
        k: &Keys<'_>,
        out: &mut Vec<Signal>,
    ) -> Processed {
        let t = ev.ts_ms;
        match self.clock.admit(t) {
            Admit::Accept => {}
            Admit::Late => {
                self.stats.late += 1;
                return Processed::Late;
            }
            Admit::Jump => {
                let e = InvalidEvent::new(
                    InvalidReason::TimestampJump,
                    format!(
                        "ts {} is more than time.max_forward_jump ahead of the stream ({}) and nothing confirms it",
                        format_ts(t),
                        self.clock.now().map(format_ts).unwrap_or_default()
                    ),
                );
                return self.invalid(e);
            }
        }
        if let Some(h) = k.parts.id_hash {
            if self.dedup.seen(h, t) {
                self.stats.duplicates += 1;
                return Processed::Duplicate;
            }
        }
        let wm = self.clock.watermark();
        // Sweep once per second of event time, and at once if time went back (a wild
        // first event was outvoted after `next_expiry` had been set from it).
        if wm >= self.next_expiry || wm + EXPIRY_EVERY_MS < self.next_expiry {
            self.expire(wm);
            self.next_expiry = wm + EXPIRY_EVERY_MS;
        }
        self.first_ts = Some(self.first_ts.map_or(t, |f| f.min(t)));
        match (ev.kind, ev.outcome) {
            (EventKind::SessionCreate, _) => self.stats.session_create += 1,
            (_, Some(Outcome::Failure)) => self.stats.login_failure += 1,
            _ => self.stats.login_success += 1,
        }
        self.observe(cfg, plan, ev, k, out);
        Processed::Accepted
    }

    fn expire(&mut self, wm: i64) {
        self.ips.expire(wm);
        self.accounts.expire(wm);
        self.services.expire(wm);
        self.dedup.expire(wm, self.clock.horizon_ahead());
        self.expiries = self.expiries.wrapping_add(1);
        if self.expiries % FLAG_SWEEP_EVERY != 0 {
            return;
        }
        if !self.flagged_accounts.is_empty() {
            self.flagged_accounts.retain(|_, f| f.until >= wm);
        }
        if !self.flagged_ips.is_empty() {
            self.flagged_ips.retain(|_, f| f.until >= wm);
        }
    }

    fn observe(
        &mut self,
        cfg: &Config,
        p: &Plan,
        ev: &Facts<'_>,
        k: &Keys<'_>,
        out: &mut Vec<Signal>,
    ) {
        let KeyParts {
            ip,
            ip_key,
            ip_hash,
            acct_hash,
            ..
        } = k.parts;
        let account = k.account.as_ref();
        let t = ev.ts_ms;
        let wm = self.clock.watermark();
        let failure = ev.is_failure();
        let login = ev.is_login();
        let rules = &cfg.rules;
        let allowlisted = !p.allow.is_empty() && p.allow.contains(ip);
        let service = ev.service.unwrap_or("unknown");
        let trace = ev.trace_id;
        let ctx = detectors::Ctx {
            factor: p.factor,
            samples: p.samples,
            watermark: wm,
        };

        // ---- account rules. Only accounts that fail (or get flagged) have state: most
        // accounts only ever sign in successfully, and tracking them would cost a table
        // lookup on nearly every event.
        if failure {
            let acct_id = self.touch_account(acct_hash, account, t + p.acct_ttl_failure);
            let slot = self.accounts.slot_mut(acct_id);
            let hot = slot.state.hot.get_or_insert_with(Default::default);
            let horizon = wm.saturating_sub(p.acct_w);
            hot.failing_ips.insert(
                ip_hash,
                t,
                horizon,
                (p.acct_w, p.acct_short_w),
                p.acct_ips_cap,
            );
            hot.traces.push(trace);
            if let Some(idx) = hot.failures.insert(t, horizon, p.acct_cap) {
                let mut fired = Vec::new();
                if rules.bruteforce.enabled {
                    fired.extend(detectors::bruteforce::check(
                        &rules.bruteforce,
                        ctx,
                        hot,
                        slot.state.fired.as_deref(),
                        idx,
                        account,
                    ));
                }
                if rules.distributed_bruteforce.enabled {
                    fired.extend(detectors::distributed_bruteforce::check(
                        &rules.distributed_bruteforce,
                        ctx,
                        hot,
                        slot.state.fired.as_deref(),
                        idx,
                        account,
                    ));
                }
                for fire in fired {
                    let cooldown = p.cooldown_ms[fire.rule.index()];
                    let flag = p.ato_account[fire.rule.index()]
                        .then_some(rules.account_takeover.window.ms());
                    settle_account(
                        slot,
                        fire,
                        cooldown,
                        flag,
                        &mut self.fires,
                        &mut self.flagged_accounts,
                    );
                }
            }
        }

        // ---- IP rules
        let mut ip_id = None;
        if !allowlisted {
            let id = self
                .ips
                .touch(
                    ip_hash,
                    |k| *k == ip_key,
                    || ip_key,
                    t + if failure {
                        p.ip_ttl_failure
                    } else {
                        p.ip_ttl_success
                    },
                )
                .id;
            ip_id = Some(id);
            let slot = self.ips.slot_mut(id);
            slot.state.prefetch(failure);
            let mut fired: Vec<Fire> = Vec::new();
            if login {
                if let Some(idx) = slot.state.attempts.insert(
                    t,
                    wm.saturating_sub(rules.ip_velocity.window.ms()),
                    p.ip_vel_cap,
                ) {
                    if rules.ip_velocity.enabled {
                        fired.extend(detectors::ip_velocity::check(
                            &rules.ip_velocity,
                            ctx,
                            &slot.state.attempts,
                            slot.state.hot.as_ref().and_then(|h| h.fired.as_deref()),
                            idx,
                            &slot.key,
                        ));
                    }
                }
            }
            if failure {
                let key = slot.key;
                let state = &mut slot.state;
                let hot = state.hot.get_or_insert_with(Default::default);
                hot.failing_accounts.insert(
                    acct_hash,
                    t,
                    wm.saturating_sub(p.ip_fail_w),
                    (p.ip_fail_w, p.ip_short_w),
                    p.ip_accounts_cap,
                );
                hot.traces.push(trace);
                if let Some(idx) = hot
                    .failures
                    .insert(t, wm.saturating_sub(p.ip_fail_w), p.ip_cap)
                {
                    if rules.credential_stuffing.enabled {
                        fired.extend(detectors::credential_stuffing::check(
                            &rules.credential_stuffing,
                            ctx,
                            hot,
                            &state.login_successes,
                            idx,
                            &key,
                        ));
                    }
                    if rules.credential_stuffing_slow.enabled {
                        fired.extend(detectors::credential_stuffing_slow::check(
                            &rules.credential_stuffing_slow,
                            ctx,
                            &hot.failures,
                            &mut hot.failing_accounts,
                            hot.fired.as_deref(),
                            idx,
                            &key,
                        ));
                    }
                }
                if rules.user_enumeration.enabled && ev.user_exists == Some(false) {
                    fired.extend(
                        detectors::user_enumeration::observe_unknown_account_failure(
                            &rules.user_enumeration,
                            ctx,
                            hot.enumeration.get_or_insert_with(Default::default),
                            t,
                            acct_hash,
                            hot.fired.as_deref(),
                            &key,
                        ),
                    );
                }
            } else if login {
                slot.state.login_successes.add(t, p.cs_slice);
            }
            if !failure {
                let horizon = wm.saturating_sub(rules.account_takeover.window.ms());
                slot.state.successes.push(
                    t,
                    account,
                    acct_hash,
                    horizon,
                    rules.account_takeover.max_lookback_successes as usize,
                );
            }
            for fire in fired {
                self.settle_ip(cfg, p, id, fire);
            }
        }

        // ---- service rule, and the campaign participants it reveals
        if login && rules.distributed_credential_stuffing.enabled {
            let svc_hash = hash_bytes(service.as_bytes());
            let id = self
                .services
                .touch(
                    svc_hash,
                    |k| k.as_str() == service,
                    || CompactString::from(service),
                    t + p.svc_ttl,
                )
                .id;
            let slot = self.services.slot_mut(id);
            slot.state.logins[failure as usize] += 1;
            let obs = slot.state.dcs.observe(
                &rules.distributed_credential_stuffing,
                p.factor,
                t,
                failure,
                ip_hash,
                acct_hash,
                wm,
                self.clock.source_max_ts().unwrap_or(t),
                service,
                p.samples,
            );
            if let Some(fire) = obs.fire {
                let cooldown = p.cooldown_ms[fire.rule.index()];
                if slot
                    .state
                    .fired
                    .get_or_insert_with(Default::default)
                    .cooldowns[fire.rule.index()]
                .allow(fire.ts, fire.severity, cooldown)
                {
                    self.fires.push(*fire);
                }
            }
            if rules.campaign_participant.enabled {
                let w = rules.distributed_credential_stuffing.window.ms();
                let cap = rules.campaign_participant.min_distinct_accounts as usize * 2;
                let svc = &mut slot.state;
                // (IP, its failing accounts, its newest failure): an IP's counts are
                // judged as of its own failures, not of the event in hand, which may come
                // from a partition read ahead of or behind the IP's.
                let mut candidates: Vec<(u64, Vec<u64>, i64)> = Vec::new();
                if obs.sweep {
                    // Merged into what is tracked already: with partitions read apart,
                    // one campaign is swept more than once.
                    let mut tracker = svc.campaign.take().unwrap_or_default();
                    // In time order (failures are kept in arrival order), and each IP
                    // judged when it first reached the threshold: swept again from
                    // another partition's events, an IP already signalled is then
                    // judged at the same time, not at its newest failure a cooldown
                    // later (which signalled it twice).
                    let mut span: Vec<(i64, u64, u64)> =
                        svc.dcs.failures_within(obs.span).collect();
                    span.sort_unstable();
                    let min = rules.campaign_participant.min_distinct_accounts as usize;
                    // IP -> (index in `candidates`, whether it reached the threshold).
                    let mut seen: hashbrown::HashMap<u64, (usize, bool)> =
                        hashbrown::HashMap::new();
                    for (ts, ip, acct) in span {
                        let reached = tracker.observe(ip, acct, ts, w, cap) >= min;
                        match seen.entry(ip) {
                            hashbrown::hash_map::Entry::Occupied(mut e) => {
                                let (i, done) = e.get_mut();
                                if !*done {
                                    candidates[*i].2 = ts;
                                    *done = reached;
                                }
                            }
                            hashbrown::hash_map::Entry::Vacant(e) => {
                                e.insert((candidates.len(), reached));
                                candidates.push((ip, Vec::new(), ts));
                            }
                        }
                    }
                    for c in &mut candidates {
                        c.1 = tracker.accounts(c.0);
                    }
                    svc.campaign = Some(tracker);
                } else if svc.dcs.campaign_active(t) {
                    if failure {
                        let tracker = svc.campaign.get_or_insert_with(Default::default);
                        if tracker.observe(ip_hash, acct_hash, t, w, cap)
                            >= rules.campaign_participant.min_distinct_accounts as usize
                        {
                            candidates.push((ip_hash, tracker.accounts(ip_hash), t));
                        }
                    }
                } else if svc.dcs.campaign_over(wm) {
                    // Only once the watermark is past it: a partition read behind the
                    // others may still bring failures from within it.
                    svc.campaign = None;
                }
                // Judged and signalled when it reached the threshold, or when the
                // campaign was declared if that came later; not at the event in hand: a
                // campaign swept again from another partition's events must give the
                // same time, or a cooldown later it signals the IP again.
                let declared = svc.dcs.campaign_declared();
                for (ip, accounts, at) in candidates {
                    if let Some(ip_slot) = self.ips.find_id_by_hash(ip) {
                        let at = at.max(declared);
                        self.check_participant(cfg, p, ip_slot, accounts, at, service);
                    }
                }
            }
        }

        // ---- account takeover: someone got in where an attack is under way
        if !failure && rules.account_takeover.enabled {
            let ip_flag = ip_id
                .and(self.flagged_ips.get(&ip_hash))
                .filter(|f| f.covers(t))
                .map(|f| f.rule);
            let acct_flag = self
                .flagged_accounts
                .get(&acct_hash)
                .filter(|f| f.covers(t))
                .map(|f| f.rule);
            let ip_attacked = acct_flag.is_some()
                && self
                    .accounts
                    .find_by_hash(acct_hash)
                    .and_then(|s| s.state.hot.as_ref())
                    .is_some_and(|h| h.failing_ips.contains(ip_hash));
            if ip_flag.is_some() || acct_flag.is_some() {
                let ip_text = ip_key.to_string();
                let cause = match ip_flag {
                    Some(rule) => account_takeover::Cause::AttackerIp { rule, ip: &ip_text },
                    None => account_takeover::Cause::AccountUnderAttack {
                        rule: acct_flag.expect("checked"),
                        ip_attacked,
                    },
                };
                let fire = account_takeover::fire(
                    &rules.account_takeover,
                    t,
                    account,
                    &ip_text,
                    acct_hash,
                    ip_hash,
                    cause,
                );
                let cooldown = p.cooldown_ms[Rule::AccountTakeover.index()];
                // Cooldowns live with the account, so it gets state now if it had none.
                let acct_id = self.touch_account(acct_hash, account, t + p.acct_ttl_failure);
                let slot = self.accounts.slot_mut(acct_id);
                settle_account(
                    slot,
                    fire,
                    cooldown,
                    None,
                    &mut self.fires,
                    &mut self.flagged_accounts,
                );
            }
        }

        if !self.fires.is_empty() {
            self.emit(p, service, trace, out);
        }
    }

    /// The account's slot, created if it has none yet (it then lives until `expires_at`).
    fn touch_account(&mut self, hash: u64, account: &str, expires_at: i64) -> u32 {
        self.accounts
            .touch(
                hash,
                |k| k.as_str() == account,
                || CompactString::from(account),
                expires_at,
            )
            .id
    }

    /// Judges an IP that failed on `accounts` of a service during its campaign, as of
    /// `t`: its failure ratio then, and the signal's time.
    fn check_participant(
        &mut self,
        cfg: &Config,
        plan: &Plan,
        ip_id: u32,
        accounts: Vec<u64>,
        t: i64,
        service: &str,
    ) {
        let rules = &cfg.rules;
        let slot = self.ips.slot(ip_id);
        let Some(hot) = slot.state.hot.as_ref() else {
            return;
        };
        // A participant keeps failing through the campaign: the cooldown decides before
        // the signal is written (its severity is fixed).
        let severity = rules.campaign_participant.severity;
        if Cooldown::muted_in(hot.fired.as_deref(), Rule::CampaignParticipant, t, severity) {
            return;
        }
        // The IP's own recent failure ratio, over the credential-stuffing window.
        let failures = hot
            .failures
            .count_in(t, rules.credential_stuffing.window.ms()) as u64;
        let attempts = failures + slot.state.login_successes.count(t, plan.cs_slice);
        let n = accounts.len();
        let mut sample = accounts;
        sample.truncate(plan.samples);
        let window = rules.distributed_credential_stuffing.window;
        if let Some(fire) = campaign_participant::check(
            &rules.campaign_participant,
            n,
            sample,
            failures,
            attempts,
            t,
            window,
            &slot.key,
            service,
        ) {
            self.settle_ip(cfg, plan, ip_id, fire);
        }
    }

    /// Cooldown, flag, look back for takeovers from this IP, queue the fire.
    fn settle_ip(&mut self, cfg: &Config, plan: &Plan, ip_id: u32, mut fire: Fire) {
        let rules = &cfg.rules;
        let cooldown = plan.cooldown_ms[fire.rule.index()];
        let ato_w = rules.account_takeover.window.ms();
        let slot = self.ips.slot_mut(ip_id);
        let flags = plan.ato_ip[fire.rule.index()];
        let fired = slot.state.fired_mut();
        if !fired.cooldowns[fire.rule.index()].allow(fire.ts, fire.severity, cooldown) {
            return;
        }
        let newly_flagged = flags && fired.flagged_at(fire.ts).is_none();
        if flags {
            let until = fire.ts + ato_w;
            fired.flag(fire.rule, until);
            // From the start of the look-back: a success read after the flag but from
            // before it is what the look-back would have found in time order.
            let flag = Flag::new(fire.ts - ato_w, until, fire.rule);
            self.flagged_ips
                .entry(slot.hash)
                .and_modify(|f| f.cover(flag))
                .or_insert(flag);
        }
        if let Some(hot) = slot.state.hot.as_ref() {
            fire.trace_ids = hot.traces.recent().collect();
        }
        let (rule, ts) = (fire.rule, fire.ts);
        self.fires.push(fire);
        if newly_flagged && rules.account_takeover.enabled {
            self.look_back(cfg, plan, ip_id, rule, ts);
        }
    }

    /// The IP was just flagged: accounts it signed into earlier in the window were
    /// probably taken over.
    fn look_back(&mut self, cfg: &Config, plan: &Plan, ip_id: u32, rule: Rule, flag_ts: i64) {
        let cfg = &cfg.rules.account_takeover;
        let slot = self.ips.slot(ip_id);
        let ip_text = slot.key.to_string();
        let ip_hash = slot.hash;
        let hits = slot
            .state
            .successes
            .within(flag_ts - cfg.window.ms(), flag_ts);
        let cooldown = plan.cooldown_ms[Rule::AccountTakeover.index()];
        for (ts, account) in hits {
            let acct_hash = hash_bytes(account.as_bytes());
            let mut fire = account_takeover::fire(
                cfg,
                ts,
                &account,
                &ip_text,
                acct_hash,
                ip_hash,
                account_takeover::Cause::AttackerIp { rule, ip: &ip_text },
            );
            fire.summary
                .push_str(" (found looking back when the IP was flagged)");
            let acct_id = self.touch_account(acct_hash, &account, ts + plan.acct_ttl_failure);
            let acct_slot = self.accounts.slot_mut(acct_id);
            settle_account(
                acct_slot,
                fire,
                cooldown,
                None,
                &mut self.fires,
                &mut self.flagged_accounts,
            );
        }
    }

    fn emit(&mut self, plan: &Plan, service: &str, trace: Option<&str>, out: &mut Vec<Signal>) {
        for mut fire in self.fires.drain(..) {
            self.stats.signals[fire.rule.index()] += 1;
            if self.suppress {
                self.stats.suppressed += 1;
                continue;
            }
            let sample_accounts = fire
                .sample_accounts
                .iter()
                .filter_map(|h| self.accounts.find_by_hash(*h))
                .map(|s| s.key.to_string())
                .collect();
            let sample_ips = fire
                .sample_ips
                .iter()
                .filter_map(|h| self.ips.find_by_hash(*h))
                .map(|s| s.key.to_string())
                .collect();
            if let Some(tr) = trace {
                if !fire.trace_ids.iter().any(|x| x == tr) {
                    fire.trace_ids.insert(0, tr.to_string());
                }
            }
            fire.trace_ids.truncate(plan.samples);
            out.push(Signal {
                signal_id: Signal::make_id(fire.rule, &fire.entity, fire.ts),
                rule: fire.rule,
                severity: fire.severity,
                ts: format_ts(fire.ts),
                window: fire.window.to_string(),
                service: Some(service.to_string()),
                evidence: Evidence {
                    counts: fire.counts,
                    sample_accounts,
                    sample_ips,
                    trace_ids: fire.trace_ids,
                    because: fire.because,
                    thresholds: fire.thresholds,
                },
                summary: fire.summary,
                entity: fire.entity,
                ts_ms: fire.ts,
            });
        }
    }

    fn state_size(&self) -> StateSize {
        let key_heap = |k: &CompactString| {
            if k.is_heap_allocated() {
                k.capacity()
            } else {
                0
            }
        };
        let ip_tables = self.ips.table_bytes();
        let ip_lookback = self
            .ips
            .iter()
            .map(|s| s.state.successes.heap_bytes())
            .sum::<usize>();
        // The flag maps, by entries (their capacity depends on the hasher's random seed,
        // and this estimate must be deterministic).
        let flags =
            |m: &hashbrown::HashMap<u64, Flag>| m.len() * (std::mem::size_of::<(u64, Flag)>() + 1);
        let ip_heap = self.ips.iter().map(|s| s.state.heap_bytes()).sum::<usize>() - ip_lookback
            + flags(&self.flagged_ips);
        let account_tables = self.accounts.table_bytes();
        let account_heap = self
            .accounts
            .iter()
            .map(|s| s.state.heap_bytes() + key_heap(&s.key))
            .sum::<usize>()
            + flags(&self.flagged_accounts);
        let service_bytes = self.services.table_bytes()
            + self
                .services
                .iter()
                .map(|s| s.state.dcs.heap_bytes() + key_heap(&s.key))
                .sum::<usize>();
        let dedup_bytes = self.dedup.heap_bytes();
        let breakdown = vec![
            ("ip slots and index", ip_tables),
            ("ip windows and failure state", ip_heap),
            ("ip sign-in look-back names", ip_lookback),
            ("account slots and index", account_tables),
            ("account failure state and names", account_heap),
            ("service state", service_bytes),
            ("dedup ids", dedup_bytes),
        ];
        let bytes = breakdown.iter().map(|b| b.1).sum();
        StateSize {
            ips: self.ips.len(),
            accounts: self.accounts.len(),
            services: self.services.len(),
            dedup_ids: self.dedup.len(),
            evicted: self.evicted(),
            expired: self.expired(),
            bytes,
            breakdown,
        }
    }
}

/// Cooldown, flag ("under attack" for `flag_ms`), trace ids, then queue the fire.
fn settle_account(
    slot: &mut Slot<CompactString, AccountState>,
    mut fire: Fire,
    cooldown_ms: i64,
    flag_ms: Option<i64>,
    fires: &mut Vec<Fire>,
    flagged: &mut hashbrown::HashMap<u64, Flag>,
) {
    let fired: &mut Fired = slot.state.fired.get_or_insert_with(Default::default);
    if !fired.cooldowns[fire.rule.index()].allow(fire.ts, fire.severity, cooldown_ms) {
        return;
    }
    if let Some(ms) = flag_ms {
        // The hot-path check: "is this account under attack?" without its state. Only
        // from the attack's signal on: a success read after it but from before it (a
        // partition read behind) was not "while under attack".
        let flag = Flag::new(fire.ts, fire.ts + ms, fire.rule);
        flagged
            .entry(slot.hash)
            .and_modify(|f| f.cover(flag))
            .or_insert(flag);
    }
    if let Some(hot) = slot.state.hot.as_ref() {
        fire.trace_ids = hot.traces.recent().collect();
    }
    fires.push(fire);
}

#[cfg(test)]
mod size_budget {
    use super::*;

    /// The memory budget (256 bytes per tracked key at a million keys, `benches/memory.rs`)
    /// rests on these sizes: a change that grows a slot should be a decision.
    #[test]
    fn slots_stay_within_the_memory_budget() {
        assert!(std::mem::size_of::<Option<table::Slot<IpKey, IpState>>>() <= 120);
        assert!(std::mem::size_of::<Option<table::Slot<CompactString, AccountState>>>() <= 56);
        assert_eq!(std::mem::size_of::<IpKey>(), 16);
        assert!(std::mem::size_of::<state::IpHot>() <= 112);
    }

    /// In `run` every event crosses between cores as one of these (see `Keyed`).
    #[test]
    fn a_keyed_event_spans_at_most_three_cache_lines() {
        assert!(std::mem::size_of::<Result<Keyed<'_>, InvalidEvent>>() <= 192);
    }
}
