//! Retained state per tracked key at a million keys, measured by a counting allocator
//! (real heap bytes, not the engine's own estimate, which is printed beside it).
//!
//! `cargo bench --bench memory`. ATOWATCH_BENCH_KEYS sets the simulated population (that
//! many accounts and that many IPs, three logins each over an hour); the default,
//! 1,150,000, gives about a million tracked keys: every IP is tracked, an account only
//! once it fails.
//!
//! Then the decisions table, filled to `decisions.max_active` by a campaign of that many
//! IPs and pushed past it (ATOWATCH_BENCH_DECISIONS overrides the cap measured).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use atowatch::config::Config;
use atowatch::engine::Engine;
use atowatch::signal::Signal;
use atowatch::simulate::{SimOptions, generate};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn main() {
    let target: u64 = std::env::var("ATOWATCH_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_150_000);
    // IPs and accounts in proportion to real traffic: every IP is tracked, an account
    // only once it fails, so there are more IPs than accounts among tracked keys. Over
    // one hour so nothing expires before we measure.
    let opts = SimOptions {
        accounts: target as u32,
        ips: target as u32,
        benign_events: Some(target * 3),
        ..SimOptions::for_duration(9, 3_600_000)
    };
    let sim = generate(&opts).expect("simulate");
    let mut line = Vec::with_capacity(512);
    let mut out: Vec<Signal> = Vec::new();
    let before = LIVE.load(Ordering::Relaxed);
    let mut engine = Engine::new(Config::default());
    for i in 0..sim.len() {
        line.clear();
        sim.write_event_json(i, &mut line);
        engine.process_json(&line, &mut out);
        out.clear();
    }
    let after = LIVE.load(Ordering::Relaxed);
    let st = engine.state_size();
    let keys = (st.ips + st.accounts + st.services) as f64;
    let heap = (after - before) as f64;
    println!(
        "retained state at {} tracked keys ({} IPs, {} accounts, {} services) after {} events:",
        keys as u64,
        st.ips,
        st.accounts,
        st.services,
        sim.len()
    );
    println!(
        "  measured heap     {:>8.1} MiB   {:>6.1} bytes per key   (target <= 256)",
        heap / 1048576.0,
        heap / keys
    );
    println!(
        "  engine estimate   {:>8.1} MiB   {:>6.1} bytes per key",
        st.bytes as f64 / 1048576.0,
        st.bytes as f64 / keys
    );
    for (part, b) in &st.breakdown {
        println!(
            "    {part:<34}{:>8.1} MiB   {:>6.1} bytes per key",
            *b as f64 / 1048576.0,
            *b as f64 / keys
        );
    }
    drop(engine);
    decisions();
}

/// Heap held by a full decisions table, per decision: what `decisions.max_active`
/// bounds. Each decision is made by the `Decider` from a credential-stuffing signal with
/// a summary as the engine writes it.
fn decisions() {
    use atowatch::decisions::{Decider, DecisionTable};
    use atowatch::signal::{Entity, EntityType, Evidence, Rule, Severity};
    let cfg = Config::default();
    let cap: usize = std::env::var("ATOWATCH_BENCH_DECISIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cfg.decisions.max_active);
    let before = LIVE.load(Ordering::Relaxed);
    let table = DecisionTable::new();
    table.set_max_active(cap);
    let mut decider = Decider::new(&cfg.decisions, Default::default());
    let now = 1_800_000_000_000i64;
    let offered = cap + cap / 10;
    for i in 0..offered {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000u32 + i as u32).to_string();
        let entity = Entity {
            kind: EntityType::Ip,
            value: ip.clone(),
        };
        let signal = Signal {
            signal_id: Signal::make_id(Rule::CredentialStuffing, &entity, now),
            rule: Rule::CredentialStuffing,
            severity: Severity::High,
            entity,
            ts: "2027-01-15T08:00:00.000Z".into(),
            window: "10m".into(),
            service: None,
            evidence: Evidence::default(),
            summary: format!(
                "{ip} failed logins on 20 accounts in 10m (20 failures, failure ratio 1.00)"
            ),
            ts_ms: now,
        };
        let t = now + i as i64;
        if let Some(d) = decider.decide(&signal, t) {
            table.upsert(d, t);
        }
        table.take_evicted();
    }
    drop(decider);
    let heap = (LIVE.load(Ordering::Relaxed) - before) as f64;
    println!(
        "decisions table after {offered} decisions, capped at {cap}: {} held",
        table.len()
    );
    println!(
        "  measured heap     {:>8.1} MiB   {:>6.1} bytes per decision held",
        heap / 1048576.0,
        heap / table.len() as f64
    );
}
