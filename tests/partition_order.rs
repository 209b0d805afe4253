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

/// "rule entity" of each signal.
fn fired(engine: &mut Engine, events: &[&Vec<u8>]) -> Vec<String> {
    let mut out = Vec::new();
    for e in events {
        engine.process_json(e, &mut out);
    }
    out.iter()
        .map(|s| {
            let v: serde_json::Value = serde_json::from_str(&s.to_json()).expect("signal JSON");
            format!("{} {}", v["rule"], v["entity"]["value"])
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
) -> (BTreeSet<String>, u64) {
    let mut engine = Engine::new(cfg.clone());
    for p in 0..parts.len() {
        engine.expect_source(p as u32);
    }
    let mut found = BTreeSet::new();
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

#[test]
fn partitions_read_far_apart_fire_the_same_rules_on_the_same_entities_as_time_order() {
    let events = common::kafka::simulated(12, 120, 12_000);
    let cfg = Config::default();
    let mut parts: Vec<Vec<&Vec<u8>>> = vec![Vec::new(); PARTITIONS];
    for e in &events {
        let key = atowatch::kafka::produce::event_key(e);
        parts[(atowatch::hash::hash_bytes(key) % PARTITIONS as u64) as usize].push(e);
    }
    assert!(
        parts.iter().all(|p| p.len() > 1_000),
        "every partition has a share"
    );
    let mut engine = Engine::new(cfg.clone());
    let expected: BTreeSet<String> = fired(&mut engine, &events.iter().collect::<Vec<_>>())
        .into_iter()
        .collect();
    assert!(expected.len() > 100, "the simulation has attacks");
    for order in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]] {
        for chunk in [usize::MAX, 4_000, 1_000, 100] {
            let (got, late) = read_in_blocks(&cfg, &parts, &order, chunk);
            assert_eq!(late, 0, "order {order:?}, {chunk} at a time");
            assert_eq!(
                got.symmetric_difference(&expected).collect::<Vec<_>>(),
                Vec::<&String>::new(),
                "order {order:?}, {chunk} at a time"
            );
        }
    }
}
