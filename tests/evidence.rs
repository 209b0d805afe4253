//! Signals explain themselves: every count a signal carries is what the events say. Each
//! entity signal's counts are recomputed here from the simulated events in its window,
//! `(ts - window, ts]`, and must match: exactly, or within HyperLogLog's error for a
//! distinct count past the exact sets; the samples a signal names must be among the
//! members counted. To the simulated traffic the test adds two attackers that come back
//! an hour later: a stuffer (a day's coarse sketch slices once made its 10-minute count
//! take in the first wave's accounts) and a brute-forcer on one account from a new IP
//! (the first wave's IP must not be named in the second's samples).

use std::collections::BTreeSet;

use atowatch::config::{Config, Dur};
use atowatch::engine::Engine;
use atowatch::event::decode_native;
use atowatch::normalize::{IpKey, account_key, client_ip};
use atowatch::signal::{Rule, Signal};
use atowatch::simulate::{SimOptions, generate};

/// What the rules count, per event, keyed as the engine keys it.
struct Seen {
    ts: i64,
    ip: String,
    account: String,
    login: bool,
    failure: bool,
    unknown_user: bool,
}

/// The events, and each signal with the number of events read when it was emitted (its
/// counts cannot know of later ones, even at the same millisecond).
fn simulated(seed: u64) -> (Vec<Seen>, Vec<(usize, Signal)>) {
    let cfg = Config::default();
    let opts = SimOptions {
        seed,
        ..SimOptions::default()
    };
    let sim = generate(&opts).expect("simulate");
    let mut lines: Vec<Vec<u8>> = (0..sim.len())
        .map(|i| {
            let mut line = Vec::new();
            sim.write_event_json(i, &mut line);
            line
        })
        .collect();
    let ts = |l: &[u8]| decode_native(l).expect("valid").ts_ms;
    let start = ts(&lines[0]);
    lines.extend(returning_stuffer(start + 40 * MIN));
    lines.extend(returning_bruteforcer(start + 45 * MIN));
    lines.sort_by_key(|l| ts(l));
    let trusted = cfg.trusted_proxies();
    let mut engine = Engine::new(cfg.clone());
    let (mut seen, mut signals, mut out) = (Vec::new(), Vec::new(), Vec::new());
    for (i, line) in lines.iter().enumerate() {
        engine.process_json(line, &mut out);
        signals.extend(out.drain(..).map(|s| (i + 1, s)));
        let ev = decode_native(line).expect("simulated events are valid");
        let ip = client_ip(&ev, &trusted).expect("valid client IP");
        seen.push(Seen {
            ts: ev.ts_ms,
            ip: IpKey::from_addr(ip, cfg.normalize.ipv6_prefix).to_string(),
            account: account_key(&ev, cfg.normalize.lowercase_accounts).into_owned(),
            login: ev.is_login(),
            failure: ev.is_failure(),
            unknown_user: ev.user_exists() == Some(false),
        });
    }
    let st = engine.stats();
    assert_eq!(
        (st.late, st.duplicates),
        (0, 0),
        "the oracle assumes every event counts"
    );
    (seen, signals)
}

const MIN: i64 = 60_000;
const STUFFER: &str = "198.18.0.77";

/// Two waves of 60 failures on 60 accounts each, an hour apart, from one IP: past the
/// exact set (the count comes from sketches), and within one of the slow rule's slices.
fn returning_stuffer(from: i64) -> Vec<Vec<u8>> {
    (0..120)
        .map(|i| {
            let t = from
                + if i < 60 {
                    i * 5_000
                } else {
                    60 * MIN + (i - 60) * 5_000
                };
            serde_json::json!({
                "type": "user.login", "outcome": "failure", "ts": t, "ip": STUFFER,
                "user": {"login": format!("wave{}-{i}@example.org", i / 60)},
                "event_id": format!("stuffer-{i}"), "service": "accounts-api",
            })
            .to_string()
            .into_bytes()
        })
        .collect()
}

/// What a rule counts distinct values of (an IP's accounts, an account's IPs).
type Member = fn(&Seen) -> &str;

/// Two waves of 12 failures on one account in 3 minutes, an hour apart, each from its
/// own IP.
fn returning_bruteforcer(from: i64) -> Vec<Vec<u8>> {
    (0..24)
        .map(|i| {
            let (t, ip) = if i < 12 {
                (from + i * 15_000, "198.18.0.88")
            } else {
                (from + 60 * MIN + (i - 12) * 15_000, "198.18.0.99")
            };
            serde_json::json!({
                "type": "user.login", "outcome": "failure", "ts": t, "ip": ip,
                "user": {"login": "returning.target@example.org"},
                "event_id": format!("bruteforcer-{i}"), "service": "accounts-api",
            })
            .to_string()
            .into_bytes()
        })
        .collect()
}

/// The counts a rule's signal should carry, from the events alone.
#[derive(Debug, PartialEq)]
struct Expected {
    events: u64,
    distinct: Option<u64>,
}

/// The counts, and the members counted (which the signal's samples must be among).
fn expected<'a>(rule: Rule, s: &Signal, seen: &'a [Seen]) -> Option<(Expected, BTreeSet<&'a str>)> {
    let w: Dur = s.window.parse().expect("window");
    let (end, v) = (s.ts_ms, s.entity.value.as_str());
    let inside = |e: &&Seen| e.ts > end - w.ms() && e.ts <= end;
    let of_ip = |e: &&Seen| e.ip == v;
    let of_account = |e: &&Seen| e.account == v;
    let (events, distinct): (Vec<&'a Seen>, Option<Member>) = match rule {
        Rule::Bruteforce | Rule::DistributedBruteforce => (
            seen.iter()
                .filter(inside)
                .filter(of_account)
                .filter(|e| e.failure)
                .collect(),
            Some(|e| e.ip.as_str()),
        ),
        Rule::CredentialStuffing | Rule::CredentialStuffingSlow => (
            seen.iter()
                .filter(inside)
                .filter(of_ip)
                .filter(|e| e.failure)
                .collect(),
            Some(|e| e.account.as_str()),
        ),
        Rule::UserEnumeration => (
            seen.iter()
                .filter(inside)
                .filter(of_ip)
                .filter(|e| e.failure && e.unknown_user)
                .collect(),
            Some(|e| e.account.as_str()),
        ),
        Rule::IpVelocity => (
            seen.iter()
                .filter(inside)
                .filter(of_ip)
                .filter(|e| e.login)
                .collect(),
            None,
        ),
        _ => return None,
    };
    let members: BTreeSet<&str> = distinct
        .map(|f| events.iter().map(|e| f(e)).collect())
        .unwrap_or_default();
    Some((
        Expected {
            events: events.len() as u64,
            distinct: distinct.map(|_| members.len() as u64),
        },
        members,
    ))
}

/// What the signal says, in the same shape.
fn claimed(rule: Rule, s: &Signal) -> Expected {
    let c = &s.evidence.counts;
    match rule {
        Rule::IpVelocity => Expected {
            events: c.attempts.expect("attempts"),
            distinct: None,
        },
        Rule::Bruteforce | Rule::DistributedBruteforce => Expected {
            events: c.failures.expect("failures"),
            distinct: c.distinct_ips,
        },
        _ => Expected {
            events: c.failures.expect("failures"),
            distinct: c.distinct_accounts,
        },
    }
}

/// Distinct counts past a few dozen come from sketches (≈1.6 % standard error).
fn close(got: u64, want: u64) -> bool {
    got == want || (want > 32 && (got as f64 - want as f64).abs() <= 0.05 * want as f64)
}

#[test]
fn every_entity_signal_carries_the_counts_of_the_events_in_its_window() {
    for seed in [7, 11] {
        let (seen, signals) = simulated(seed);
        let mut checked = BTreeSet::new();
        let mut wrong = Vec::new();
        for (read, s) in &signals {
            let Some((want, members)) = expected(s.rule, s, &seen[..*read]) else {
                continue;
            };
            let samples = s
                .evidence
                .sample_accounts
                .iter()
                .chain(&s.evidence.sample_ips);
            for m in samples.filter(|m| !members.contains(m.as_str())) {
                wrong.push(format!(
                    "seed {seed}: {} {} at {}: sample {m} did not fail in the window",
                    s.rule.as_str(),
                    s.entity.value,
                    s.ts
                ));
            }
            checked.insert(s.rule.as_str());
            let got = claimed(s.rule, s);
            let distinct_ok = match (got.distinct, want.distinct) {
                (Some(g), Some(w)) => close(g, w),
                (g, w) => g == w,
            };
            if got.events != want.events || !distinct_ok {
                wrong.push(format!(
                    "seed {seed}: {} {} at {}: says {got:?}, the events say {want:?} ({})",
                    s.rule.as_str(),
                    s.entity.value,
                    s.ts,
                    s.summary
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        let waves = signals
            .iter()
            .filter(|(_, s)| s.rule == Rule::CredentialStuffing && s.entity.value == STUFFER)
            .count();
        assert!(
            waves >= 2,
            "seed {seed}: the stuffer's second wave was not signalled"
        );
        let waves = signals
            .iter()
            .filter(|(_, s)| {
                s.rule == Rule::Bruteforce && s.entity.value == "returning.target@example.org"
            })
            .count();
        assert!(
            waves >= 2,
            "seed {seed}: the brute-forcer's second wave was not signalled"
        );
        for rule in [
            "bruteforce",
            "distributed_bruteforce",
            "credential_stuffing",
            "user_enumeration",
            "ip_velocity",
        ] {
            assert!(
                checked.contains(rule),
                "seed {seed}: no {rule} signal to check"
            );
        }
    }
}
