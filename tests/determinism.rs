//! The same input gives the same signals, byte for byte: two fresh engines in one
//! process, line-by-line vs. whole-buffer replay, and two runs of the binary.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use atowatch::config::Config;
use atowatch::engine::{Engine, Processed};
use atowatch::event::{AuthEvent, InvalidEvent};
use atowatch::formats::{Format, decode, process_many};
use atowatch::replay::replay_bytes;
use atowatch::signal::{Rule, Signal};

use common::*;

/// A few thousand events from a fixed seed: two hours of benign traffic on three
/// services with attacks of every kind woven in, then some events made out of order
/// (within and beyond the lateness), some redelivered, and some invalid lines.
fn generate(seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut evs: Vec<Ev> = Vec::new();
    let services = ["web", "api", "sso"];
    let span = 2 * HOUR;

    // Benign: mostly successes, some typos, some session.create, a few unknown names.
    for _ in 0..2500 {
        let t = T0 + rng.below(span as u64) as i64;
        let ip = nth_ip(rng.below(400) as u32);
        let account = format!("member{}", rng.below(1500));
        let service = services[rng.below(3) as usize];
        let roll = rng.below(100);
        let ev = if roll < 5 {
            Ev::session(t, &ip, &account)
        } else if roll < 17 {
            Ev::failure(t, &ip, &account).exists(rng.below(10) != 0)
        } else {
            Ev::success(t, &ip, &account)
        };
        evs.push(ev.service(service));
    }
    // bruteforce on three accounts, and a takeover of one of them.
    for (k, victim) in ["alice", "bob", "carol"].iter().enumerate() {
        let start = T0 + (10 + 20 * k as i64) * MIN;
        let attacker = nth_ip(2000 + k as u32);
        for _ in 0..15 {
            evs.push(Ev::failure(
                start + rng.below(180_000) as i64,
                &attacker,
                victim,
            ));
        }
        if k == 0 {
            evs.push(Ev::success(start + 4 * MIN, &attacker, victim));
        }
    }
    // distributed_bruteforce on one account from 8 IPs.
    for i in 0..12 {
        evs.push(Ev::failure(
            T0 + 25 * MIN + i * 20 * SEC,
            &nth_ip(2100 + (i as u32 % 8)),
            "ceo",
        ));
    }
    // credential_stuffing from two IPs, then one of them gets in.
    for k in 0..2u32 {
        let ip = nth_ip(2200 + k);
        let start = T0 + (40 + 30 * k as i64) * MIN;
        for i in 0..40 {
            evs.push(Ev::failure(
                start + i * 12 * SEC,
                &ip,
                &format!("member{}", rng.below(1500)),
            ));
        }
        if k == 1 {
            evs.push(Ev::success(start + 9 * MIN, &ip, "member7"));
        }
    }
    // user_enumeration.
    for i in 0..15 {
        evs.push(
            Ev::failure(
                T0 + 50 * MIN + i * 15 * SEC,
                &nth_ip(2300),
                &format!("ghost{}", i % 10),
            )
            .exists(false),
        );
    }
    // ip_velocity: 150 attempts in 50 s, mostly successful.
    for i in 0..150 {
        let t = T0 + 60 * MIN + i * 333;
        let account = format!("member{}", i % 40);
        evs.push(if i % 5 == 0 {
            Ev::failure(t, &nth_ip(2400), &account)
        } else {
            Ev::success(t, &nth_ip(2400), &account)
        });
    }
    // distributed_credential_stuffing on "api": 400 failures from 80 IPs in 3 minutes.
    for i in 0..400u32 {
        let t = T0 + 80 * MIN + i as i64 * 450;
        evs.push(
            Ev::failure(t, &nth_ip(3000 + i % 80), &format!("victim{}", i % 300)).service("api"),
        );
    }
    // credential_stuffing_slow: 110 failures paced over two hours.
    for i in 0..110 {
        evs.push(Ev::failure(
            T0 + i * 65 * SEC,
            &nth_ip(2500),
            &format!("slow{}", i % 25),
        ));
    }

    evs.sort_by_key(|e| e.ts);
    // Ids from the seed and position, not the process-wide counter.
    for (i, ev) in evs.iter_mut().enumerate() {
        ev.event_id = Some(format!("s{seed}-e{i}"));
        ev.trace_id = Some(format!("s{seed}-t{i}"));
    }
    // Out of order: some events arrive with older timestamps than their neighbours.
    for ev in evs.iter_mut() {
        let roll = rng.below(1000);
        if roll < 50 {
            ev.ts -= rng.below(40_000) as i64; // within the 60 s lateness
        } else if roll < 55 {
            ev.ts -= 90_000 + rng.below(120_000) as i64; // late
        }
    }
    let mut lines: Vec<String> = evs.iter().map(Ev::json).collect();
    // Redeliveries of earlier events, and invalid lines.
    let mut out: Vec<String> = Vec::with_capacity(lines.len() + 100);
    for (i, line) in lines.drain(..).enumerate() {
        out.push(line);
        let roll = rng.below(1000);
        if roll < 10 && i > 5 {
            let back = 1 + rng.below(5) as usize;
            let dup = out[out.len() - 1 - back].clone();
            out.push(dup);
        } else if roll < 15 {
            out.push(
                [
                    "{\"type\":",
                    "not json",
                    "[1,2]",
                    "{\"type\":\"user.logout\"}",
                    r#"{"type":"user.login","outcome":"failure","ts":1700000000000,"ip":"999.1.2.3","user":{"login":"mallory"}}"#,
                ][rng.below(5) as usize]
                    .to_string(),
            );
        }
    }
    let mut bytes = out.join("\n").into_bytes();
    bytes.push(b'\n');
    bytes
}

fn json_lines(signals: &[Signal]) -> String {
    signals.iter().map(|s| s.to_json() + "\n").collect()
}

fn replay(input: &[u8]) -> (String, Engine) {
    let mut e = Engine::new(Config::default());
    let signals = replay_bytes(&mut e, input);
    (json_lines(&signals), e)
}

#[test]
fn the_generated_input_is_itself_deterministic_and_exercises_every_path() {
    let input = generate(7);
    assert!(input == generate(7), "same seed, same bytes");
    assert!(input != generate(8), "another seed, other bytes");
    let n = input
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert!((3000..6000).contains(&n), "{n} lines");
    let (_, e) = replay(&input);
    let st = e.stats();
    assert!(st.late > 0, "{st:?}");
    assert!(st.duplicates > 0, "{st:?}");
    assert!(st.invalid_total() > 0, "{st:?}");
    assert!(st.session_create > 0, "{st:?}");
    let fired: BTreeSet<Rule> = Rule::ALL
        .into_iter()
        .filter(|r| st.signals[r.index()] > 0)
        .collect();
    for r in [
        Rule::Bruteforce,
        Rule::DistributedBruteforce,
        Rule::CredentialStuffing,
        Rule::CredentialStuffingSlow,
        Rule::UserEnumeration,
        Rule::IpVelocity,
        Rule::DistributedCredentialStuffing,
        Rule::CampaignParticipant,
        Rule::AccountTakeover,
    ] {
        assert!(fired.contains(&r), "{r} never fired: {st:?}");
    }
}

#[test]
fn same_input_replayed_by_two_fresh_engines_gives_byte_identical_signals() {
    let input = generate(7);
    let (a, ea) = replay(&input);
    let (b, eb) = replay(&input);
    assert!(!a.is_empty());
    assert_eq!(a, b);
    assert_eq!(ea.stats(), eb.stats());
    assert_eq!(ea.state_size(), eb.state_size());
}

#[test]
fn another_seed_is_also_reproducible() {
    let input = generate(1234);
    assert_eq!(replay(&input).0, replay(&input).0);
}

#[test]
fn line_by_line_processing_matches_whole_buffer_replay() {
    let input = generate(7);
    let (whole, _) = replay(&input);
    let mut e = Engine::new(Config::default());
    let mut signals = Vec::new();
    for line in input.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        e.process_json(line, &mut signals);
    }
    assert_eq!(json_lines(&signals), whole);
}

/// What one event came to, and the signals it raised.
fn outcome(p: &Processed, signals: &[Signal]) -> String {
    let kind = match p {
        Processed::Accepted => "accepted".to_string(),
        Processed::Late => "late".to_string(),
        Processed::Duplicate => "duplicate".to_string(),
        Processed::Invalid(e) => format!("invalid {e}"),
    };
    format!("{kind} {}", json_lines(signals))
}

#[test]
fn loading_state_ahead_changes_no_result_at_any_chunk_size() {
    let mut input = generate(7);
    // Names the decoder unescapes (so owns rather than borrows), an account name that
    // is lower-cased, and events without a service: kept apart from the event (`Keyed`),
    // they must key and read as they do in the event.
    for i in 0..12i64 {
        let service = if i % 2 == 0 {
            r#","service":"w\u0065b""#
        } else {
            ""
        };
        let line = format!(
            r#"{{"type":"user.login","outcome":"failure","ts":{},"ip":"203.0.113.77","user":{{"login":"B\u00d6B@Example.COM"}},"event_id":"esc-{i}","trace_id":"t\u0031-{i}"{service}}}"#,
            T0 + 2 * HOUR + MIN + i * 1000
        );
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
    }
    let lines: Vec<&[u8]> = input
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut one = Engine::new(Config::default());
    let mut signals = Vec::new();
    let expected: Vec<String> = lines
        .iter()
        .map(|l| {
            signals.clear();
            let p = one.process_json(l, &mut signals);
            outcome(&p, &signals)
        })
        .collect();
    assert!(expected.iter().any(|o| o.starts_with("invalid")));
    assert!(
        expected.iter().any(|o| o.contains("is not an IP address")),
        "keys can fail too"
    );
    assert!(expected.iter().any(|o| o.starts_with("duplicate")));
    assert!(expected.iter().any(|o| o.starts_with("late")));
    assert!(
        expected
            .iter()
            .any(|o| o.contains("\"value\":\"b\u{d6}b@example.com\"")),
        "the unescaped, lower-cased account is flagged"
    );
    // Sizes around the four events kept in flight, and replay's own.
    for chunk in [1, 2, 3, 4, 5, 7, atowatch::replay::CHUNK_LINES, lines.len()] {
        let mut e = Engine::new(Config::default());
        let mut out = Vec::new();
        let mut got = Vec::new();
        for c in lines.chunks(chunk) {
            let items = c.iter().map(|l| Ok(*l));
            process_many(&mut e, Format::Native, items, &mut out, |_, p, s| {
                got.push(outcome(&p, s))
            });
        }
        assert_eq!(got.len(), expected.len(), "chunks of {chunk}");
        for (i, (g, x)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g, x, "line {} in chunks of {chunk}", i + 1);
        }
        assert_eq!(
            format!("{:?}", e.stats()),
            format!("{:?}", one.stats()),
            "chunks of {chunk}"
        );
    }
    // Replay and `run` hand the engine events keyed apart (`Keyed`); it also takes
    // decoded events whole, and keys them itself.
    let max = Engine::new(Config::default())
        .config()
        .input
        .max_event_bytes;
    let decoded: Vec<Result<AuthEvent<'_>, InvalidEvent>> = lines
        .iter()
        .map(|l| decode(Format::Native, l, max))
        .collect();
    let mut e = Engine::new(Config::default());
    let mut got = Vec::new();
    e.process_all(&decoded, &mut Vec::new(), |_, p, s| {
        got.push(outcome(&p, s))
    });
    assert_eq!(got, expected, "decoded whole");
    assert_eq!(format!("{:?}", e.stats()), format!("{:?}", one.stats()));
}

#[test]
fn signal_ids_are_unique_per_rule_entity_and_time() {
    let (out, _) = replay(&generate(7));
    let mut seen = BTreeSet::new();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (
            v["rule"].to_string(),
            v["entity"].to_string(),
            v["ts"].to_string(),
        );
        assert!(
            seen.insert(key),
            "the same rule, entity and time twice: {line}"
        );
    }
}

fn run_binary(args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_atowatch"))
        .args(args)
        .output()
        .expect("run atowatch");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn replay_binary_twice_on_the_same_file_prints_identical_signals() {
    let dir = scratch_dir("determinism");
    let input = generate(7);
    let file = dir.join("events.jsonl");
    std::fs::write(&file, &input).unwrap();
    let path = file.display().to_string();
    let first = run_binary(&["replay", "--quiet", &path]);
    let second = run_binary(&["replay", "--quiet", &path]);
    assert!(!first.is_empty());
    assert_eq!(first, second);
    assert_eq!(
        String::from_utf8(first).unwrap(),
        replay(&input).0,
        "the binary finds what the library finds"
    );
}

#[test]
fn replay_binary_over_the_input_split_in_two_files_matches_one_file() {
    let dir = scratch_dir("determinism-split");
    let input = generate(7);
    let cut = input.len() / 2
        + input[input.len() / 2..]
            .iter()
            .position(|b| *b == b'\n')
            .unwrap()
        + 1;
    let (a, b) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
    std::fs::write(&a, &input[..cut]).unwrap();
    std::fs::write(&b, &input[cut..]).unwrap();
    let whole = dir.join("all.jsonl");
    std::fs::write(&whole, &input).unwrap();
    let split = run_binary(&[
        "replay",
        "--quiet",
        &a.display().to_string(),
        &b.display().to_string(),
    ]);
    let one = run_binary(&["replay", "--quiet", &whole.display().to_string()]);
    assert_eq!(split, one);
}
