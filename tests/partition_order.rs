//! What the engine finds does not depend on the order partitions are read in.
//!
//! Catching up on a backlog, a Kafka consumer reads one partition's megabyte, then the
//! next one's: an account's failures (the events are keyed by client IP) can arrive an
//! hour of event time apart and in any order. These tests feed the engine a simulated
//! stream split by key into four partitions, read block by block in several orders, and
//! compare the rules and entities that fire with reading it in time order. No Kafka:
//! the order is chosen here, so a failure reproduces.

mod common;

use std::collections::BTreeSet;

use atowatch::config::Config;
use atowatch::engine::Engine;

const PARTITIONS: usize = 4;

/// "rule entity severity" of each signal.
fn fired(engine: &mut Engine, events: &[&Vec<u8>]) -> Vec<String> {
    let mut out = Vec::new();
    for e in events {
        engine.process_json(e, &mut out);
    }
    out.iter()
        .map(|s| {
            let v: serde_json::Value = serde_json::from_str(&s.to_json()).expect("signal JSON");
            format!("{} {} {}", v["rule"], v["entity"]["value"], v["severity"])
        })
        .collect()
}

/// Reads `parts` `chunk` events at a time, visiting partitions in `order`, as a consumer
/// would: every partition is assigned (expected) before the first message.
fn read_in_blocks(
    cfg: &Config,
    parts: &[Vec<&Vec<u8>>],
    order: &[usize],
    chunk: usize,
) -> (Vec<String>, u64) {
    let mut engine = Engine::new(cfg.clone());
    for p in 0..parts.len() {
        engine.expect_source(p as u32);
    }
    let mut found = Vec::new();
    let mut pos = vec![0; parts.len()];
    while pos.iter().zip(parts).any(|(&at, p)| at < p.len()) {
        for &p in order {
            let end = pos[p].saturating_add(chunk).min(parts[p].len());
            engine.set_source(p as u32);
            found.extend(fired(&mut engine, &parts[p][pos[p]..end]));
            pos[p] = end;
        }
    }
    (found, engine.stats().late)
}

/// Two hours of simulated traffic with every attack kind, split by key into four
/// partitions (as indices into the events); and what reading it in time order fires.
fn split() -> (Vec<Vec<u8>>, Vec<Vec<usize>>, Vec<String>) {
    let events = common::kafka::simulated(12, 120, 12_000);
    let mut parts = vec![Vec::new(); PARTITIONS];
    for (i, e) in events.iter().enumerate() {
        let key = atowatch::kafka::produce::event_key(e);
        parts[(atowatch::hash::hash_bytes(key) % PARTITIONS as u64) as usize].push(i);
    }
    assert!(
        parts.iter().all(|p| p.len() > 1_000),
        "every partition has a share"
    );
    let mut engine = Engine::new(Config::default());
    let in_time_order = fired(&mut engine, &events.iter().collect::<Vec<_>>());
    assert!(in_time_order.len() > 100, "the simulation has attacks");
    (events, parts, in_time_order)
}

const ORDERS: [[usize; PARTITIONS]; 4] = [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]];
const CHUNKS: [usize; 4] = [usize::MAX, 4_000, 1_000, 100];

/// Runs `check(how, fired, fired_in_time_order)` for every order and block size.
fn each_reading(check: impl Fn(&str, Vec<String>, &[String])) {
    let (events, parts, expected) = split();
    let parts: Vec<Vec<&Vec<u8>>> = parts
        .iter()
        .map(|p| p.iter().map(|&i| &events[i]).collect())
        .collect();
    let cfg = Config::default();
    for order in ORDERS {
        for chunk in CHUNKS {
            let (got, late) = read_in_blocks(&cfg, &parts, &order, chunk);
            let how = format!("order {order:?}, {chunk} at a time");
            assert_eq!(late, 0, "{how}");
            check(&how, got, &expected);
        }
    }
}

/// "rule entity" without the severity.
fn rule_entity(s: &str) -> String {
    s.rsplit_once(' ').expect("three fields").0.to_string()
}

#[test]
fn partitions_read_far_apart_fire_the_same_rules_on_the_same_entities_as_time_order() {
    each_reading(|how, got, expected| {
        let got: BTreeSet<String> = got.iter().map(|s| rule_entity(s)).collect();
        let expected: BTreeSet<String> = expected.iter().map(|s| rule_entity(s)).collect();
        assert_eq!(
            got.symmetric_difference(&expected).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "{how}"
        );
    });
}

/// A campaign is swept again when another partition's events reveal it; its
/// participants must not be signalled a second time for that.
#[test]
fn partitions_read_far_apart_signal_each_campaign_participant_as_often_as_time_order() {
    each_reading(|how, got, expected| {
        let participants = |v: &[String]| {
            let mut v: Vec<String> = v
                .iter()
                .filter(|s| s.starts_with("\"campaign_participant\""))
                .cloned()
                .collect();
            v.sort();
            v
        };
        let (got, expected) = (participants(&got), participants(expected));
        assert!(expected.len() > 100, "the campaign has participants");
        assert_eq!(got, expected, "{how}");
    });
}

/// Each rule reaches the same top severity on each entity: a window judged on one
/// partition's share of a campaign must be judged again as the others' arrive, or the
/// escalation to critical is never seen.
#[test]
fn partitions_read_far_apart_escalate_each_entity_as_far_as_time_order() {
    let top = |v: &[String]| {
        let rank = |s: &str| {
            ["\"low\"", "\"medium\"", "\"high\"", "\"critical\""]
                .iter()
                .position(|r| s.ends_with(r))
                .expect("a severity")
        };
        let mut m = std::collections::BTreeMap::<String, usize>::new();
        for s in v {
            let e = m.entry(rule_entity(s)).or_default();
            *e = (*e).max(rank(s));
        }
        m
    };
    each_reading(|how, got, expected| {
        let (got, expected) = (top(&got), top(expected));
        let differ: Vec<_> = expected
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(v))
            .map(|(k, v)| (k, got.get(k), v))
            .collect();
        assert_eq!(differ, vec![], "{how}: (rule entity, got, expected)");
    });
}
