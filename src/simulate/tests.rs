//! Checks on the rendered output, read back the way the engine reads it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use serde_json::Value;

use super::*;

#[derive(Clone, Debug)]
struct Row {
    ts: i64,
    /// 0 success, 1 failure, 2 session.create.
    kind: u8,
    key: String,
    account: String,
    exists: Option<bool>,
    service: String,
    attack: bool,
}

fn trusted(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.is_private() || v.is_loopback(),
        IpAddr::V6(v) => (v.segments()[0] & 0xfe00) == 0xfc00 || v.is_loopback(),
    }
}

/// The engine's resolution: right-most address in `forwarded_for + [ip]` that
/// is not a trusted proxy, IPv6 aggregated to its /64.
fn client_key(v: &Value) -> String {
    let mut chain: Vec<IpAddr> = v
        .get("forwarded_for")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap().parse().unwrap())
                .collect()
        })
        .unwrap_or_default();
    chain.push(v["ip"].as_str().unwrap().parse().unwrap());
    let client = chain
        .iter()
        .rev()
        .find(|a| !trusted(a))
        .copied()
        .unwrap_or(chain[0]);
    key_label(client)
}

fn parse_ts(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap(),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis(),
        _ => panic!("bad ts {v}"),
    }
}

fn read_rows(sim: &Simulation) -> Vec<Row> {
    let mut buf = Vec::new();
    (0..sim.len())
        .map(|i| {
            buf.clear();
            sim.write_event_json(i, &mut buf);
            let v: Value = serde_json::from_slice(&buf).unwrap();
            let kind = match (v["type"].as_str().unwrap(), v["outcome"].as_str()) {
                ("user.login", Some("success")) => 0,
                ("user.login", Some("failure")) => 1,
                ("session.create", None) => 2,
                other => panic!("bad type/outcome {other:?}"),
            };
            Row {
                ts: parse_ts(&v["ts"]),
                kind,
                key: client_key(&v),
                account: v["user"]["login"].as_str().unwrap().to_string(),
                exists: v["user"].get("exists").and_then(Value::as_bool),
                service: v["service"].as_str().unwrap().to_string(),
                attack: sim.is_attack(i),
            }
        })
        .collect()
}

fn jsonl(sim: &Simulation) -> Vec<u8> {
    let mut out = Vec::new();
    sim.write_jsonl(&mut out).unwrap();
    out
}

fn opts(seed: u64) -> SimOptions {
    SimOptions {
        seed,
        ..SimOptions::default()
    }
}

/// Most timestamps in any closed window of `w` ms.
fn max_in_window(ts: &mut [i64], w: i64) -> usize {
    ts.sort_unstable();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..ts.len() {
        while ts[hi] - ts[lo] > w {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// Most distinct labels in any closed window of `w` ms.
fn max_distinct_in_window(ev: &mut [(i64, &str)], w: i64) -> usize {
    ev.sort_unstable();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let (mut best, mut lo) = (0, 0);
    for hi in 0..ev.len() {
        *counts.entry(ev[hi].1).or_default() += 1;
        while ev[hi].0 - ev[lo].0 > w {
            let c = counts.get_mut(ev[lo].1).unwrap();
            *c -= 1;
            if *c == 0 {
                counts.remove(ev[lo].1);
            }
            lo += 1;
        }
        best = best.max(counts.len());
    }
    best
}

const MIN: i64 = 60_000;

#[test]
fn same_seed_same_bytes_different_seed_different() {
    let a = generate(&opts(7)).unwrap();
    let b = generate(&opts(7)).unwrap();
    let c = generate(&opts(8)).unwrap();
    let (ja, jb, jc) = (jsonl(&a), jsonl(&b), jsonl(&c));
    assert_eq!(ja, jb);
    assert_eq!(
        serde_json::to_string(&a.labels).unwrap(),
        serde_json::to_string(&b.labels).unwrap()
    );
    assert_ne!(ja, jc);
    assert_ne!(a.labels, c.labels);
    // write_jsonl is exactly the per-event writer plus newlines.
    let mut manual = Vec::new();
    for i in 0..a.len() {
        a.write_event_json(i, &mut manual);
        manual.push(b'\n');
    }
    assert_eq!(manual, ja);
    assert_eq!(a.labels.events as usize, a.len());
}

#[test]
fn every_line_follows_the_schema() {
    let sim = generate(&opts(3)).unwrap();
    let start = DEFAULT_START_MS;
    let end = start + 2 * HOUR_MS;
    let mut ids = HashSet::new();
    let (mut epoch, mut sessions, mut xff, mut failures) = (0usize, 0usize, 0usize, 0usize);
    let services: BTreeSet<&str> = sim
        .labels
        .benign
        .services
        .iter()
        .map(String::as_str)
        .collect();
    let text = jsonl(&sim);
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).unwrap();
        let obj = v.as_object().unwrap();
        let ty = v["type"].as_str().unwrap();
        match ty {
            "user.login" => {
                let outcome = v["outcome"].as_str().unwrap();
                assert!(outcome == "success" || outcome == "failure");
                if outcome == "failure" {
                    failures += 1;
                    assert!(v["user"]["exists"].is_boolean(), "{v}");
                }
            }
            "session.create" => {
                assert!(!obj.contains_key("outcome"));
                assert!(v["session_id"].as_str().unwrap().len() > 8);
                sessions += 1;
            }
            _ => panic!("bad type {ty}"),
        }
        match &v["ts"] {
            Value::String(s) => {
                let b = s.as_bytes();
                assert_eq!(b.len(), 24, "{s}");
                assert_eq!((b[10], b[19], b[23]), (b'T', b'.', b'Z'), "{s}");
            }
            Value::Number(_) => epoch += 1,
            other => panic!("bad ts {other}"),
        }
        let ts = parse_ts(&v["ts"]);
        assert!(ts >= start && ts <= end + 1000, "ts {ts} outside run");
        v["ip"].as_str().unwrap().parse::<IpAddr>().unwrap();
        if let Some(f) = obj.get("forwarded_for") {
            xff += 1;
            for a in f.as_array().unwrap() {
                a.as_str().unwrap().parse::<IpAddr>().unwrap();
            }
        }
        let key = client_key(&v);
        let addr: IpAddr = key.trim_end_matches("/64").parse().unwrap();
        assert!(!trusted(&addr), "client {key} is private");
        let user = v["user"].as_object().unwrap();
        assert!(user["login"].is_string());
        if let Some(id) = user.get("id") {
            assert!(id.as_str().unwrap().starts_with("u-"));
        }
        assert!(ids.insert(v["event_id"].as_str().unwrap().to_string()));
        assert!(services.contains(v["service"].as_str().unwrap()));
        assert!(v["function"].is_string() && v["user_agent"].is_string());
        let trace = v["trace_id"].as_str().unwrap();
        assert!(trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(v["metadata"].is_object());
    }
    let n = ids.len();
    assert_eq!(n, sim.len());
    let frac = epoch as f64 / n as f64;
    assert!((0.07..0.13).contains(&frac), "epoch-ms share {frac}");
    assert!(sessions > n / 3 && xff > n / 4 && failures > 0);
}

#[test]
fn out_of_order_delivery_is_rare_and_under_20s() {
    let sim = generate(&opts(5)).unwrap();
    let mut max_seen = sim.event_ts_ms(0);
    let mut displaced = 0;
    for i in 0..sim.len() {
        let ts = sim.event_ts_ms(i);
        assert!(
            max_seen - ts <= 20_000,
            "event {i} is {} ms late",
            max_seen - ts
        );
        if ts < max_seen {
            displaced += 1;
        }
        max_seen = max_seen.max(ts);
    }
    let frac = displaced as f64 / sim.len() as f64;
    assert!((0.004..0.02).contains(&frac), "displaced share {frac}");
}

#[test]
fn labels_cover_kinds_and_attackers_stay_out_of_benign_traffic() {
    let sim = generate(&opts(9)).unwrap();
    let l = &sim.labels;
    for kind in AttackKind::ALL {
        let labelled = l.attacks.iter().any(|a| a.kind == kind);
        let skipped = l.skipped.iter().any(|s| s.kind == kind);
        assert!(
            labelled != skipped,
            "{kind}: labelled={labelled} skipped={skipped}"
        );
    }
    let slow = l
        .skipped
        .iter()
        .find(|s| s.kind == AttackKind::CredentialStuffingSlow)
        .unwrap();
    assert!(slow.reason.contains("21h"), "{}", slow.reason);
    for a in &l.attacks {
        let want: Vec<String> = a
            .kind
            .expected_rules()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(a.expected_rules, want);
        assert!(!a.ips.is_empty() && !a.accounts.is_empty(), "{a:?}");
        assert!(a.start <= a.end);
    }
    assert_eq!(
        l.attacks
            .iter()
            .filter(|a| a.kind == AttackKind::Bruteforce)
            .count(),
        2
    );

    let attacker = l.attacker_ips();
    let rows = read_rows(&sim);
    let mut benign_keys = HashSet::new();
    for r in &rows {
        if r.attack {
            assert!(
                attacker.contains(r.key.as_str()),
                "unlabelled attacker {}",
                r.key
            );
        } else {
            benign_keys.insert(r.key.clone());
        }
    }
    for k in &benign_keys {
        assert!(
            !attacker.contains(k.as_str()),
            "attacker {k} in benign traffic"
        );
        for p in [
            "45.",
            "185.",
            "203.0.113.",
            "198.51.100.",
            "2001:db8:",
            "192.0.2.",
        ] {
            assert!(!k.starts_with(p), "benign key {k} in an attacker range");
        }
    }
    // Takeovers: each listed account really got in from a listed IP.
    for a in l
        .attacks
        .iter()
        .filter(|a| a.kind == AttackKind::AccountTakeover)
    {
        for acct in &a.accounts {
            assert!(
                rows.iter().any(|r| r.attack
                    && r.kind == 0
                    && &r.account == acct
                    && a.ips.contains(&r.key)),
                "no takeover login for {acct}"
            );
        }
    }
    let nat: HashSet<&String> = l.benign.nat_ips.iter().collect();
    assert!(l.benign.cgnat_ips.iter().all(|c| !nat.contains(c)));
    assert_eq!(
        l.benign.high_failure_services,
        vec!["legacy-sso".to_string()]
    );
}

#[test]
fn nat_ips_carry_hundreds_of_accounts() {
    let sim = generate(&opts(4)).unwrap();
    let mut per: HashMap<&str, HashSet<&str>> = HashMap::new();
    let rows = read_rows(&sim);
    for r in &rows {
        per.entry(&r.key).or_default().insert(&r.account);
    }
    assert!(!sim.labels.benign.nat_ips.is_empty());
    for ip in &sim.labels.benign.nat_ips {
        let n = per.get(ip.as_str()).map_or(0, HashSet::len);
        assert!(n >= 100, "NAT {ip} saw only {n} accounts");
    }
    // CGNAT addresses are shared by several users too.
    let shared = sim
        .labels
        .benign
        .cgnat_ips
        .iter()
        .filter(|ip| per.get(ip.as_str()).is_some_and(|s| s.len() >= 5))
        .count();
    assert!(shared * 2 > sim.labels.benign.cgnat_ips.len());
}

/// The benign side stays at ≤ 1/3 of every default threshold.
fn assert_benign_margins(sim: &Simulation) {
    let rows = read_rows(sim);
    let mut by_key: HashMap<&str, Vec<&Row>> = HashMap::new();
    let mut by_acct: HashMap<&str, Vec<i64>> = HashMap::new();
    for r in rows.iter().filter(|r| !r.attack) {
        by_key.entry(&r.key).or_default().push(r);
        if r.kind == 1 {
            by_acct.entry(&r.account).or_default().push(r.ts);
        }
    }
    let mut worst = [0usize; 6];
    for (key, rs) in &by_key {
        let mut logins: Vec<i64> = rs.iter().filter(|r| r.kind < 2).map(|r| r.ts).collect();
        let mut fails: Vec<i64> = rs.iter().filter(|r| r.kind == 1).map(|r| r.ts).collect();
        let mut nx: Vec<i64> = rs
            .iter()
            .filter(|r| r.kind == 1 && r.exists == Some(false))
            .map(|r| r.ts)
            .collect();
        let mut fa: Vec<(i64, &str)> = rs
            .iter()
            .filter(|r| r.kind == 1)
            .map(|r| (r.ts, r.account.as_str()))
            .collect();
        let m = [
            max_in_window(&mut logins, MIN),
            max_in_window(&mut fails, 10 * MIN),
            max_distinct_in_window(&mut fa, 10 * MIN),
            max_in_window(&mut nx, 10 * MIN),
            max_in_window(&mut fails, 24 * 60 * MIN),
        ];
        assert!(m[0] <= 40, "{key}: {} logins in 60 s", m[0]);
        assert!(m[1] <= 6, "{key}: {} failures in 10 min", m[1]);
        assert!(m[2] <= 3, "{key}: {} failing accounts in 10 min", m[2]);
        assert!(m[3] <= 3, "{key}: {} unknown users in 10 min", m[3]);
        assert!(m[4] <= 33, "{key}: {} failures in 24 h", m[4]);
        for (w, v) in worst.iter_mut().zip(m) {
            *w = (*w).max(v);
        }
    }
    for (acct, ts) in by_acct.iter_mut() {
        let m = max_in_window(ts, 5 * MIN);
        assert!(m <= 3, "{acct}: {m} failures in 5 min");
        worst[5] = worst[5].max(m);
    }
    // During the campaign no benign client fails on two accounts there.
    if let Some(c) = sim
        .labels
        .attacks
        .iter()
        .find(|a| a.kind == AttackKind::DistributedCredentialStuffing)
    {
        let from = chrono::DateTime::parse_from_rfc3339(&c.start)
            .unwrap()
            .timestamp_millis();
        let to = chrono::DateTime::parse_from_rfc3339(&c.end)
            .unwrap()
            .timestamp_millis();
        let mut seen: HashMap<&str, HashSet<&str>> = HashMap::new();
        for r in rows.iter().filter(|r| {
            !r.attack
                && r.kind == 1
                && r.service == c.service
                && r.ts >= from - 5 * MIN
                && r.ts <= to + 10 * MIN
        }) {
            seen.entry(&r.key).or_default().insert(&r.account);
        }
        assert!(seen.values().all(|s| s.len() <= 1));
    }
    eprintln!(
        "worst benign [60s logins, 10m fails, 10m accounts, 10m unknown, 24h fails, account 5m fails] = {worst:?}"
    );
}

#[test]
fn benign_traffic_stays_under_a_third_of_thresholds() {
    assert_benign_margins(&generate(&opts(11)).unwrap());
    // Dense: many users per address and a busy corporate NAT.
    let dense = SimOptions {
        seed: 12,
        accounts: 20_000,
        ips: 6_000,
        benign_events: Some(300_000),
        ..SimOptions::default()
    };
    assert_benign_margins(&generate(&dense).unwrap());
}

#[test]
fn benign_volume_and_failure_ratios() {
    let o = SimOptions {
        seed: 21,
        accounts: 20_000,
        ips: 10_000,
        benign_events: Some(200_000),
        attacks: vec![],
        ..SimOptions::default()
    };
    let sim = generate(&o).unwrap();
    assert!(sim.labels.attacks.is_empty());
    assert_eq!(sim.labels.skipped.len(), AttackKind::ALL.len());
    let rows = read_rows(&sim);
    assert!(rows.iter().all(|r| !r.attack));
    let logins = rows.iter().filter(|r| r.kind < 2).count() as f64;
    assert!((180_000.0..=220_000.0).contains(&logins), "{logins} logins");
    let mut per: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.kind < 2) {
        let e = per.entry(&r.service).or_default();
        e.0 += 1.0;
        e.1 += f64::from(r.kind == 1);
    }
    for (svc, (n, f)) in &per {
        let ratio = f / n;
        eprintln!("{svc}: {n} logins, failure ratio {ratio:.3}");
        if *svc == "legacy-sso" {
            assert!((0.33..=0.47).contains(&ratio), "{svc} {ratio}");
        } else {
            assert!((0.02..=0.10).contains(&ratio), "{svc} {ratio}");
        }
    }
    // Default rate: ~5 logins/s.
    let sim = generate(&opts(2)).unwrap();
    let logins = read_rows(&sim)
        .iter()
        .filter(|r| !r.attack && r.kind < 2)
        .count() as f64;
    assert!(
        (32_400.0..=39_600.0).contains(&logins),
        "{logins} default logins"
    );
}

/// Each attack, read back from the output, crosses its own rule's threshold.
#[test]
fn attacks_cross_their_thresholds() {
    for seed in [1, 2] {
        let sim = generate(&opts(seed)).unwrap();
        check_attacks(&sim);
    }
    let big = SimOptions {
        seed: 3,
        accounts: 40_000,
        ips: 20_000,
        benign_events: Some(400_000),
        ..SimOptions::default()
    };
    check_attacks(&generate(&big).unwrap());
}

fn check_attacks(sim: &Simulation) {
    let rows = read_rows(sim);
    for a in &sim.labels.attacks {
        let ips: HashSet<&str> = a.ips.iter().map(String::as_str).collect();
        let mine: Vec<&Row> = rows
            .iter()
            .filter(|r| r.attack && ips.contains(r.key.as_str()))
            .collect();
        let mut fails: Vec<i64> = mine.iter().filter(|r| r.kind == 1).map(|r| r.ts).collect();
        let mut fa: Vec<(i64, &str)> = mine
            .iter()
            .filter(|r| r.kind == 1)
            .map(|r| (r.ts, r.account.as_str()))
            .collect();
        match a.kind {
            AttackKind::Bruteforce => assert!(max_in_window(&mut fails, 5 * MIN) >= 10),
            AttackKind::DistributedBruteforce => {
                assert!(max_in_window(&mut fails, 5 * MIN) <= 9);
                assert!(max_in_window(&mut fails, 10 * MIN) >= 10);
                let mut fi: Vec<(i64, &str)> = mine
                    .iter()
                    .filter(|r| r.kind == 1)
                    .map(|r| (r.ts, r.key.as_str()))
                    .collect();
                assert!(max_distinct_in_window(&mut fi, 10 * MIN) >= 5);
            }
            AttackKind::CredentialStuffing => {
                assert!(max_in_window(&mut fails, 10 * MIN) >= 20);
                assert!(max_distinct_in_window(&mut fa, 10 * MIN) >= 10);
                let mut all: Vec<i64> = mine.iter().filter(|r| r.kind < 2).map(|r| r.ts).collect();
                assert!(max_in_window(&mut all, MIN) < 120);
                let mut nx: Vec<i64> = mine
                    .iter()
                    .filter(|r| r.exists == Some(false))
                    .map(|r| r.ts)
                    .collect();
                assert!(max_in_window(&mut nx, 10 * MIN) < 10);
            }
            AttackKind::CredentialStuffingSlow => {
                assert!(max_in_window(&mut fails, 10 * MIN) <= 2);
                assert!(max_in_window(&mut fails, 24 * 60 * MIN) >= 100);
                assert!(max_distinct_in_window(&mut fa, 24 * 60 * MIN) >= 10);
            }
            AttackKind::UserEnumeration => {
                let mut nx: Vec<i64> = mine
                    .iter()
                    .filter(|r| r.exists == Some(false))
                    .map(|r| r.ts)
                    .collect();
                assert!(max_in_window(&mut nx, 10 * MIN) >= 10);
                assert!(a.ips[0].ends_with("/64"));
            }
            AttackKind::IpVelocity => {
                let mut all: Vec<i64> = mine.iter().filter(|r| r.kind < 2).map(|r| r.ts).collect();
                assert!(max_in_window(&mut all, MIN) >= 120);
                let mut per: HashMap<&str, Vec<i64>> = HashMap::new();
                for (t, acct) in &fa {
                    per.entry(acct).or_default().push(*t);
                }
                assert!(per.values_mut().all(|v| max_in_window(v, 5 * MIN) < 10));
            }
            AttackKind::DistributedCredentialStuffing => check_campaign(a, &rows, &mine),
            AttackKind::AccountTakeover => {}
        }
    }
}

fn check_campaign(a: &AttackLabel, rows: &[Row], mine: &[&Row]) {
    let mut per_ip: HashMap<&str, HashSet<&str>> = HashMap::new();
    for r in mine.iter().filter(|r| r.kind == 1) {
        per_ip.entry(&r.key).or_default().insert(&r.account);
    }
    assert_eq!(per_ip.len(), a.ips.len());
    assert!(per_ip.values().all(|s| (2..=3).contains(&s.len())));
    let from = chrono::DateTime::parse_from_rfc3339(&a.start)
        .unwrap()
        .timestamp_millis();
    let svc: Vec<&Row> = rows
        .iter()
        .filter(|r| r.service == a.service && r.kind < 2)
        .collect();
    let base: Vec<&&Row> = svc
        .iter()
        .filter(|r| r.ts >= from - 60 * MIN && r.ts < from)
        .collect();
    let base_ratio = base.iter().filter(|r| r.kind == 1).count() as f64 / base.len().max(1) as f64;
    // Best 5-minute window ending each minute through the attack.
    let mut fired = false;
    for k in 1..=12 {
        let hi = from + k * MIN;
        let win: Vec<&&Row> = svc
            .iter()
            .filter(|r| r.ts > hi - 5 * MIN && r.ts <= hi)
            .collect();
        let f: Vec<&&&Row> = win.iter().filter(|r| r.kind == 1).collect();
        let ips: HashSet<&str> = f.iter().map(|r| r.key.as_str()).collect();
        let accts: HashSet<&str> = f.iter().map(|r| r.account.as_str()).collect();
        let ratio = f.len() as f64 / win.len().max(1) as f64;
        if f.len() >= 200 && ips.len() >= 50 && accts.len() >= 100 && ratio >= 3.0 * base_ratio {
            fired = true;
            // Must already hold before 40% of the span (the second wave).
            assert!(k <= 3, "campaign only crosses thresholds at minute {k}");
            break;
        }
    }
    assert!(fired, "campaign never crosses the service thresholds");
}

#[test]
fn slow_stuffing_needs_a_long_run() {
    let explicit = SimOptions {
        attacks: vec![AttackKind::CredentialStuffingSlow],
        ..SimOptions::default()
    };
    let err = generate(&explicit).err().expect("2h is too short");
    assert!(matches!(err, SimError::DurationTooShort { .. }), "{err}");
    assert!(err.to_string().contains("21h"), "{err}");

    let long = SimOptions {
        accounts: 3_000,
        ips: 1_500,
        benign_events: Some(150_000),
        ..SimOptions::for_duration(31, 22 * HOUR_MS)
    };
    assert!(long.attacks.contains(&AttackKind::CredentialStuffingSlow));
    let sim = generate(&long).unwrap();
    assert!(sim.labels.skipped.is_empty());
    assert!(
        sim.labels
            .attacks
            .iter()
            .any(|a| a.kind == AttackKind::CredentialStuffingSlow)
    );
    check_attacks(&sim);
    assert_benign_margins(&sim);
}

#[test]
fn events_are_compact() {
    assert_eq!(std::mem::size_of::<Ev>(), 32);
}

#[test]
fn option_errors_and_kind_names() {
    for k in AttackKind::ALL {
        assert_eq!(k.as_str().parse::<AttackKind>().unwrap(), k);
        assert_eq!(
            serde_json::to_string(&k).unwrap(),
            format!("\"{}\"", k.as_str())
        );
    }
    assert_eq!(
        "ip-velocity".parse::<AttackKind>().unwrap(),
        AttackKind::IpVelocity
    );
    let err = "nope".parse::<AttackKind>().unwrap_err();
    assert!(err.contains("credential_stuffing_slow") && err.contains("nope"));

    let short = SimOptions {
        duration_ms: 20 * MIN,
        ..SimOptions::default()
    };
    let err = generate(&short).err().unwrap();
    assert!(matches!(err, SimError::DurationTooShort { .. }), "{err}");
    let fits = SimOptions::for_duration(1, 20 * MIN);
    assert!(fits.attacks.is_empty());
    let sim = generate(&fits).unwrap();
    assert_eq!(sim.labels.skipped.len(), 8);
    assert!(!sim.is_empty());

    let ato_only = SimOptions {
        attacks: vec![AttackKind::AccountTakeover],
        ..SimOptions::default()
    };
    assert!(matches!(
        generate(&ato_only),
        Err(SimError::NoTakeoverSource)
    ));
    let bad = SimOptions {
        accounts: 3,
        ..SimOptions::default()
    };
    assert!(matches!(generate(&bad), Err(SimError::InvalidOptions(_))));
}
