//! Malformed input: every `InvalidReason` has inputs that yield exactly it, hostile input
//! never panics, and the `atowatch` binary reports invalid lines, missing files and bad
//! configs the way its help text promises.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Command, Output};

use atowatch::config::Config;
use atowatch::engine::{Engine, Processed};
use atowatch::event::InvalidReason;
use atowatch::signal::Signal;
use serde_json::{Value, json};

use common::*;

/// A valid failed login at `T0`; cases change one thing about it.
fn base() -> Value {
    json!({
        "type": "user.login",
        "outcome": "failure",
        "ts": T0,
        "ip": "203.0.113.7",
        "user": {"login": "alice", "exists": true},
        "service": "web",
        "event_id": "base",
        "trace_id": "t1"
    })
}

/// The base event with `key` set to `v` (a dotted `user.x` key sets inside `user`).
fn with(key: &str, v: Value) -> Vec<u8> {
    let mut e = base();
    match key.split_once('.') {
        Some((outer, inner)) => e[outer][inner] = v,
        None => e[key] = v,
    }
    e.to_string().into_bytes()
}

/// The base event with fields changed by `f`.
fn edit(f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
    let mut e = base();
    f(e.as_object_mut().unwrap());
    e.to_string().into_bytes()
}

fn without(key: &str) -> Vec<u8> {
    edit(|m| {
        m.remove(key);
    })
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// `max_event_bytes` for the table's engine.
const MAX_BYTES: usize = 1024;

/// The base event padded with an ignored field to exactly `len` bytes.
fn padded_to(len: usize) -> Vec<u8> {
    let short = edit(|m| {
        m.insert("pad".into(), Value::from(""));
    });
    let fill = len
        .checked_sub(short.len())
        .expect("base event shorter than the target");
    edit(|m| {
        m.insert("pad".into(), Value::from("x".repeat(fill)));
    })
}

/// Every reason, with inputs that must yield exactly it.
fn cases() -> Vec<(&'static str, Vec<u8>, InvalidReason)> {
    use InvalidReason::*;
    let valid = base().to_string();
    let mut non_utf8 = b(
        r#"{"type":"user.login","outcome":"failure","ts":1763719200000,"ip":"203.0.113.7","user":{"login":"al"#,
    );
    non_utf8.extend_from_slice(b"\xff\xfe");
    non_utf8.extend_from_slice(br#"ice"}}"#);
    // {"metadata":[[[... 200 deep, never closed
    let mut deep = b(r#"{"type":"user.login","metadata":"#);
    deep.extend(std::iter::repeat_n(b'[', 200));
    vec![
        // invalid_json: not JSON, truncated, not UTF-8
        (
            "truncated JSON",
            valid.as_bytes()[..valid.len() / 2].to_vec(),
            InvalidJson,
        ),
        (
            "not JSON at all",
            b("user alice failed to log in"),
            InvalidJson,
        ),
        ("non-UTF-8 bytes in a string", non_utf8, InvalidJson),
        (
            "non-UTF-8 bytes outside strings",
            b"\xff\xfe\xfd".to_vec(),
            InvalidJson,
        ),
        (
            "trailing comma",
            b(r#"{"type":"user.login",}"#),
            InvalidJson,
        ),
        (
            "two objects on one line",
            format!("{valid}{valid}").into_bytes(),
            InvalidJson,
        ),
        ("empty", Vec::new(), InvalidJson),
        ("whitespace only", b("  \t "), InvalidJson),
        ("deep nesting never closed", deep, InvalidJson),
        (
            "raw control character in a string",
            b("{\"type\":\"user.\u{1}login\"}"),
            InvalidJson,
        ),
        // not_an_object: valid JSON of another kind
        ("JSON array", b(r#"[{"type":"user.login"}]"#), NotAnObject),
        ("JSON number", b("42"), NotAnObject),
        ("JSON string", b(r#""alice""#), NotAnObject),
        ("JSON null", b("null"), NotAnObject),
        ("JSON bool", b(" true"), NotAnObject),
        // wrong_field_type: a known field of the wrong JSON type
        (
            "user is a string",
            with("user", json!("alice")),
            WrongFieldType,
        ),
        (
            "user is an array",
            with("user", json!(["alice"])),
            WrongFieldType,
        ),
        ("ts is a bool", with("ts", json!(true)), WrongFieldType),
        (
            "ts is a float",
            with("ts", json!(1.7637192e12)),
            WrongFieldType,
        ),
        (
            "ts is an object",
            with("ts", json!({"ms": T0})),
            WrongFieldType,
        ),
        (
            "ip is a number",
            with("ip", json!(3405803783u32)),
            WrongFieldType,
        ),
        ("type is a number", with("type", json!(1)), WrongFieldType),
        (
            "outcome is a bool",
            with("outcome", json!(false)),
            WrongFieldType,
        ),
        (
            "forwarded_for is a string",
            with("forwarded_for", json!("198.51.100.1")),
            WrongFieldType,
        ),
        (
            "forwarded_for holds numbers",
            with("forwarded_for", json!([1, 2])),
            WrongFieldType,
        ),
        (
            "user.login is an array",
            with("user.login", json!(["alice"])),
            WrongFieldType,
        ),
        (
            "user.exists is a string",
            with("user.exists", json!("yes")),
            WrongFieldType,
        ),
        (
            "event_id is an object",
            with("event_id", json!({"id": 1})),
            WrongFieldType,
        ),
        // missing_field: type, ts, ip, user, and outcome on a login
        ("no type", without("type"), MissingField),
        ("no ts", without("ts"), MissingField),
        ("no ip", without("ip"), MissingField),
        ("no user", without("user"), MissingField),
        ("login without outcome", without("outcome"), MissingField),
        ("user is null", with("user", Value::Null), MissingField),
        ("ip is null", with("ip", Value::Null), MissingField),
        ("empty object", b("{}"), MissingField),
        // unknown_event_type
        (
            "logout",
            with("type", json!("user.logout")),
            UnknownEventType,
        ),
        ("type is empty", with("type", json!("")), UnknownEventType),
        (
            "type in capitals",
            with("type", json!("USER.LOGIN")),
            UnknownEventType,
        ),
        // invalid_outcome
        (
            "outcome maybe",
            with("outcome", json!("maybe")),
            InvalidOutcome,
        ),
        (
            "outcome capitalized",
            with("outcome", json!("Success")),
            InvalidOutcome,
        ),
        ("outcome empty", with("outcome", json!("")), InvalidOutcome),
        // invalid_timestamp
        (
            "ts is prose",
            with("ts", json!("yesterday")),
            InvalidTimestamp,
        ),
        (
            "ts without a zone",
            with("ts", json!("2025-11-21T10:00:00")),
            InvalidTimestamp,
        ),
        (
            "ts month 13",
            with("ts", json!("2025-13-01T00:00:00Z")),
            InvalidTimestamp,
        ),
        (
            "ts February 30",
            with("ts", json!("2025-02-30T00:00:00Z")),
            InvalidTimestamp,
        ),
        ("ts empty string", with("ts", json!("")), InvalidTimestamp),
        (
            "ts digits in a string",
            with("ts", json!("1763719200000")),
            InvalidTimestamp,
        ),
        // timestamp_out_of_range: before 2000 or from 2100
        (
            "ts in seconds",
            with("ts", json!(1_763_719_200)),
            TimestampOutOfRange,
        ),
        ("ts zero", with("ts", json!(0)), TimestampOutOfRange),
        ("ts negative", with("ts", json!(-1)), TimestampOutOfRange),
        (
            "ts 1999",
            with("ts", json!("1999-12-31T23:59:59Z")),
            TimestampOutOfRange,
        ),
        (
            "ts 2100",
            with("ts", json!("2100-01-01T00:00:00Z")),
            TimestampOutOfRange,
        ),
        (
            "ts u64::MAX",
            with("ts", json!(u64::MAX)),
            TimestampOutOfRange,
        ),
        // timestamp_jump: far ahead of the stream (primed at T0), unconfirmed
        (
            "ts two hours ahead",
            with("ts", json!(T0 + 2 * HOUR)),
            TimestampJump,
        ),
        (
            "ts in 2099",
            with("ts", json!("2099-06-01T00:00:00Z")),
            TimestampJump,
        ),
        // invalid_ip: ip, or a forwarded_for hop that had to be read
        (
            "ip not an address",
            with("ip", json!("not-an-ip")),
            InvalidIp,
        ),
        ("ip empty", with("ip", json!("")), InvalidIp),
        (
            "ip octet out of range",
            with("ip", json!("999.1.1.1")),
            InvalidIp,
        ),
        (
            "ip with a bad port",
            with("ip", json!("203.0.113.7:99999")),
            InvalidIp,
        ),
        (
            "ipv6 with a zone",
            with("ip", json!("fe80::1%eth0")),
            InvalidIp,
        ),
        (
            "bad hop behind a trusted proxy",
            edit(|m| {
                m.insert("ip".into(), json!("10.0.0.5"));
                m.insert("forwarded_for".into(), json!(["garbage"]));
            }),
            InvalidIp,
        ),
        (
            "bad right-most hop behind a trusted proxy",
            edit(|m| {
                m.insert("ip".into(), json!("10.0.0.5"));
                m.insert("forwarded_for".into(), json!(["198.51.100.1", "garbage"]));
            }),
            InvalidIp,
        ),
        (
            "null hop behind a trusted proxy",
            edit(|m| {
                m.insert("ip".into(), json!("10.0.0.5"));
                m.insert("forwarded_for".into(), json!([null]));
            }),
            InvalidIp,
        ),
        // missing_account: user without a non-empty login or id
        ("empty user object", with("user", json!({})), MissingAccount),
        (
            "empty login",
            with("user", json!({"login": ""})),
            MissingAccount,
        ),
        (
            "empty login and id",
            with("user", json!({"login": "", "id": ""})),
            MissingAccount,
        ),
        (
            "only exists",
            with("user", json!({"exists": false})),
            MissingAccount,
        ),
        (
            "null login",
            with("user", json!({"login": null})),
            MissingAccount,
        ),
        // oversized: larger than input.max_event_bytes, JSON or not
        (
            "one byte over the limit",
            padded_to(MAX_BYTES + 1),
            Oversized,
        ),
        ("large garbage", vec![b'x'; 10 * MAX_BYTES], Oversized),
    ]
}

/// Inputs that look odd but are valid and must be accepted.
fn accepted_cases() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("exactly at the size limit", padded_to(MAX_BYTES)),
        (
            "bad hop left of an untrusted one is never read",
            edit(|m| {
                m.insert("ip".into(), json!("10.0.0.5"));
                m.insert("forwarded_for".into(), json!(["garbage", "198.51.100.1"]));
            }),
        ),
        (
            "bad hop ignored when ip is not a proxy",
            with("forwarded_for", json!(["garbage"])),
        ),
        ("numeric user id", with("user", json!({"id": 42}))),
        (
            "session.create needs no outcome",
            edit(|m| {
                m.insert("type".into(), json!("session.create"));
                m.remove("outcome");
            }),
        ),
        (
            "RFC 3339 with offset",
            with("ts", json!("2025-11-21T12:00:00.250+02:00")),
        ),
        ("ip with port", with("ip", json!("203.0.113.7:443"))),
        (
            "bracketed ipv6 with port",
            with("ip", json!("[2001:db8::1]:443")),
        ),
        (
            "unknown fields are carried",
            with("metadata", json!({"a": [1, {"b": null}], "c": "d"})),
        ),
        ("200-deep unknown field is skipped", {
            let mut v = b(r#"{"metadata":"#);
            v.extend(std::iter::repeat_n(b'[', 200));
            v.extend(std::iter::repeat_n(b']', 200));
            v.push(b',');
            v.extend_from_slice(&base().to_string().as_bytes()[1..]);
            v
        }),
        (
            "null optional fields",
            edit(|m| {
                m.insert("service".into(), Value::Null);
                m.insert("trace_id".into(), Value::Null);
                m.insert("forwarded_for".into(), Value::Null);
            }),
        ),
    ]
}

/// Establishes stream time at T0: it takes `time.jump_confirmations` (3) events, since
/// stream time is the third-newest event time.
fn prime(e: &mut Engine, out: &mut Vec<Signal>) {
    for i in 0..3 {
        let ev = edit(|m| {
            m.insert("event_id".into(), json!(format!("prime-{i}")));
        });
        assert_eq!(e.process_json(&ev, out), Processed::Accepted);
    }
}

fn table_engine() -> Engine {
    let mut cfg = Config::default();
    cfg.input.max_event_bytes = MAX_BYTES;
    Engine::new(cfg)
}

#[test]
fn every_invalid_reason_has_a_case_that_yields_exactly_it() {
    let cases = cases();
    for r in InvalidReason::ALL {
        assert!(cases.iter().any(|c| c.2 == r), "no case for {r}");
    }
    let mut e = table_engine();
    let mut out: Vec<Signal> = Vec::new();
    // Prime the clock so a forward jump has something to jump from.
    prime(&mut e, &mut out);
    let mut wrong = Vec::new();
    for (name, bytes, want) in &cases {
        match e.process_json(bytes, &mut out) {
            Processed::Invalid(inv) if inv.reason == *want => {
                assert!(!inv.detail.is_empty(), "{name}: empty detail");
            }
            other => wrong.push(format!("{name}: expected {want}, got {other:?}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} case(s) wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    let stats = e.stats();
    for r in InvalidReason::ALL {
        let n = cases.iter().filter(|c| c.2 == r).count() as u64;
        assert_eq!(stats.invalid[r.index()], n, "stats.invalid[{r}]");
    }
    assert_eq!(stats.invalid_total(), cases.len() as u64);
    assert_eq!(stats.accepted(), 3, "only the priming events");
    assert!(out.is_empty());
}

#[test]
fn each_invalid_case_is_rejected_the_same_way_by_a_fresh_engine() {
    for (name, bytes, want) in cases() {
        let mut e = table_engine();
        let mut out = Vec::new();
        if want == InvalidReason::TimestampJump {
            prime(&mut e, &mut out);
        }
        match e.process_json(&bytes, &mut out) {
            Processed::Invalid(inv) => assert_eq!(inv.reason, want, "{name}"),
            other => panic!("{name}: expected {want}, got {other:?}"),
        }
        assert_eq!(e.stats().invalid[want.index()], 1, "{name}");
        assert_eq!(
            e.stats().accepted(),
            if want == InvalidReason::TimestampJump {
                3
            } else {
                0
            },
            "{name}"
        );
    }
}

#[test]
fn odd_but_valid_events_are_accepted() {
    let mut e = table_engine();
    let mut out = Vec::new();
    for (i, (name, bytes)) in accepted_cases().into_iter().enumerate() {
        // A unique event_id each, so none is a duplicate of another.
        let line = if name == "exactly at the size limit" {
            bytes
        } else {
            let text = String::from_utf8(bytes).unwrap();
            assert!(text.contains(r#""event_id":"base""#), "{name}");
            text.replace(r#""event_id":"base""#, &format!(r#""event_id":"odd-{i}""#))
                .into_bytes()
        };
        assert_eq!(
            e.process_json(&line, &mut out),
            Processed::Accepted,
            "{name}: {}",
            String::from_utf8_lossy(&line)
        );
    }
    assert_eq!(e.stats().invalid_total(), 0);
}

#[test]
fn three_agreeing_far_future_events_confirm_a_jump() {
    let mut e = table_engine();
    let mut out = Vec::new();
    prime(&mut e, &mut out);
    let at = |ms: i64, id: &str| {
        edit(|m| {
            m.insert("ts".into(), json!(ms));
            m.insert("event_id".into(), json!(id));
        })
    };
    let later = T0 + 3 * HOUR;
    assert!(
        matches!(e.process_json(&at(later, "j1"), &mut out), Processed::Invalid(ref i) if i.reason == InvalidReason::TimestampJump)
    );
    assert!(
        matches!(e.process_json(&at(later + 5, "j2"), &mut out), Processed::Invalid(ref i) if i.reason == InvalidReason::TimestampJump)
    );
    assert_eq!(
        e.process_json(&at(later + 9, "j3"), &mut out),
        Processed::Accepted
    );
    assert_eq!(e.stats().invalid[InvalidReason::TimestampJump.index()], 2);
}

// ---------------------------------------------------------------------------------------
// Hostile input: nothing panics; every input is accepted or rejected with a reason.

fn hostile_inputs() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>| v.push((name.to_string(), bytes));
    add("empty", Vec::new());
    add("spaces", b("     "));
    add("tabs and newlines", b("\t\r\n\t"));
    add("lone brace", b("{"));
    add("closing brace", b("}"));
    add("empty object", b("{}"));
    add("empty array", b("[]"));
    add("null", b("null"));
    add("NaN bare", b("NaN"));
    add("5000 open brackets", vec![b'['; 5000]);
    add(
        "balanced 5000-deep arrays",
        [vec![b'['; 5000], vec![b']'; 5000]].concat(),
    );
    add("1000-deep objects", {
        let mut s = String::new();
        for _ in 0..1000 {
            s.push_str(r#"{"a":"#);
        }
        s.push('1');
        s.push_str(&"}".repeat(1000));
        s.into_bytes()
    });
    add("10000-deep metadata in a valid event", {
        let mut s = format!(
            r#"{{"metadata":{}1{},"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        s.push_str(&base().to_string()[1..]);
        s.into_bytes()
    });
    add("ts 1e400", with("ts", json!(0)).replace_ts("1e400"));
    add(
        "ts 30 digits",
        with("ts", json!(0)).replace_ts("123456789012345678901234567890"),
    );
    add("ts i64::MIN", with("ts", json!(i64::MIN)));
    add("ts i64::MAX", with("ts", json!(i64::MAX)));
    add("ts -0", with("ts", json!(0)).replace_ts("-0"));
    add("ts NaN bare", with("ts", json!(0)).replace_ts("NaN"));
    add(
        "ts Infinity bare",
        with("ts", json!(0)).replace_ts("Infinity"),
    );
    for s in [
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "+2025-11-21T10:00:00Z",
        "2025-11-21T10:00:00+24:00",
        "2025-11-21T10:00:00.Z",
        "2025-11-21T10:00:60Z",
        "2025-11-21T25:00:00Z",
        "２０２５-11-21T10:00:00Z",
        "2025-11-21T10:00:0é",
        "2025-11-21T10:00:00ZZZZ",
        "2025-11-21T10:00:00+05:3",
        "2025-11-21T10:00:00.123456789123456789Z",
        "9999-12-31T23:59:59Z",
        "0000-01-01T00:00:00Z",
    ] {
        add(&format!("ts string {s:?}"), with("ts", json!(s)));
    }
    let long = "x".repeat(50_000);
    for login in [
        "алиса",
        "👩‍💻",
        "\u{202E}nimda",
        "ad\u{200B}min",
        "\u{0}\u{1}\u{1f}",
        "\\\"'",
        long.as_str(),
    ] {
        add(
            &format!("login {:?}", login.chars().take(8).collect::<String>()),
            with("user", json!({"login": login})),
        );
    }
    add(
        "raw control char",
        b("{\"type\":\"user.login\",\"ip\":\"\u{7}\"}"),
    );
    add("lone surrogate escape", b(r#"{"type":"user.login\ud800"}"#));
    add("overlong UTF-8", b"{\"type\":\"\xc0\x80\"}".to_vec());
    add(
        "byte order mark",
        [b"\xef\xbb\xbf".to_vec(), base().to_string().into_bytes()].concat(),
    );
    add("comment", b("// a comment\n{}"));
    add("single quotes", b("{'type':'user.login'}"));
    add(
        "duplicate keys",
        b(&base().to_string().replace(
            r#""type":"user.login""#,
            r#""type":"user.logout","type":"user.login""#,
        )),
    );
    for ip in [
        "::",
        "0.0.0.0",
        "255.255.255.255",
        "::ffff:1.2.3.4",
        "[::1",
        "1.2.3.4:",
        ":443",
        "1.2.3",
        "1.2.3.4.5",
        "fe80::1%eth0",
    ] {
        add(&format!("ip {ip:?}"), with("ip", json!(ip)));
    }
    add("forwarded_for of 100 trusted hops", {
        let hops: Vec<String> = (0..100)
            .map(|i| format!("10.0.{}.{}", i / 250, i % 250 + 1))
            .collect();
        edit(|m| {
            m.insert("ip".into(), json!("10.0.0.5"));
            m.insert("forwarded_for".into(), json!(hops));
        })
    });
    add("forwarded_for empty", with("forwarded_for", json!([])));
    add("user with 1000 unknown keys", {
        let mut u = serde_json::Map::new();
        for i in 0..1000 {
            u.insert(format!("k{i}"), json!(i));
        }
        u.insert("login".into(), json!("alice"));
        with("user", Value::Object(u))
    });
    add(
        "user id is an object",
        with("user", json!({"id": {"nested": 1}})),
    );
    add(
        "user exists null",
        with("user", json!({"login": "a", "exists": null})),
    );
    add("huge event_id", with("event_id", json!("e".repeat(30_000))));
    add(
        "session.create with an outcome",
        with("type", json!("session.create")),
    );
    add(
        "escaped NULs everywhere",
        b(&base().to_string().replace("alice", "\\u0000alice\\u0000")),
    );
    add("prefix of an object repeated", b(&r#"{"a":"#.repeat(2000)));
    add("oversized", vec![b'{'; 70_000]);
    v
}

trait ReplaceTs {
    fn replace_ts(self, raw: &str) -> Vec<u8>;
}

impl ReplaceTs for Vec<u8> {
    /// Writes `raw` verbatim as the value of `"ts"` (which must currently be 0).
    fn replace_ts(self, raw: &str) -> Vec<u8> {
        let s = String::from_utf8(self).unwrap();
        assert!(s.contains(r#""ts":0"#));
        s.replace(r#""ts":0"#, &format!(r#""ts":{raw}"#))
            .into_bytes()
    }
}

#[test]
fn hostile_inputs_never_panic_and_are_accepted_or_rejected_with_a_reason() {
    let inputs = hostile_inputs();
    assert!(inputs.len() >= 50, "{} inputs", inputs.len());
    let mut expected_invalid = [0u64; InvalidReason::ALL.len()];
    let mut shared = Engine::new(Config::default());
    let mut shared_out = Vec::new();
    for (name, bytes) in &inputs {
        // A fresh engine each: no input can be late or a duplicate of another.
        let got = catch_unwind(AssertUnwindSafe(|| {
            let mut e = Engine::new(Config::default());
            let mut out = Vec::new();
            let p = e.process_json(bytes, &mut out);
            (p, e.stats().clone())
        }));
        let (p, stats) = got.unwrap_or_else(|_| panic!("panicked on {name}"));
        match &p {
            Processed::Accepted => assert_eq!(stats.accepted(), 1, "{name}"),
            Processed::Invalid(inv) => {
                assert_eq!(stats.invalid[inv.reason.index()], 1, "{name}");
                assert!(!inv.detail.is_empty(), "{name}");
                expected_invalid[inv.reason.index()] += 1;
            }
            other => panic!("{name}: {other:?}"),
        }
        // And all of them through one engine, state and all.
        let r = catch_unwind(AssertUnwindSafe(|| {
            shared.process_json(bytes, &mut shared_out)
        }));
        assert!(r.is_ok(), "shared engine panicked on {name}");
    }
    assert_eq!(
        shared.stats().invalid,
        expected_invalid,
        "the same reasons through one engine"
    );
}

// ---------------------------------------------------------------------------------------
// The binary

fn atowatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_atowatch"))
        .args(args)
        .output()
        .expect("run atowatch")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn valid_line(i: i64) -> Vec<u8> {
    Ev::failure(T0 + i * SEC, ATTACKER, &format!("user{i}"))
        .json()
        .into_bytes()
}

/// Lines 1..=12 of the replay input and the reason for each invalid one.
fn replay_input() -> (Vec<u8>, Vec<(usize, InvalidReason)>) {
    use InvalidReason::*;
    let lines: Vec<(Vec<u8>, Option<InvalidReason>)> = vec![
        (valid_line(1), None),
        (b("this is not json"), Some(InvalidJson)),
        (valid_line(2), None),
        (b("[1,2,3]"), Some(NotAnObject)),
        (Vec::new(), None), // blank: skipped, still a line
        (with("type", json!("user.logout")), Some(UnknownEventType)),
        (valid_line(3), None),
        (with("ip", json!("not-an-ip")), Some(InvalidIp)),
        (b"{\"type\":\"user.login\xff\"}".to_vec(), Some(InvalidJson)),
        (with("user", json!({})), Some(MissingAccount)),
        (with("ts", json!(1_763_719_200)), Some(TimestampOutOfRange)),
        (valid_line(4), None),
    ];
    let mut bytes = Vec::new();
    let mut bad = Vec::new();
    for (i, (l, r)) in lines.into_iter().enumerate() {
        bytes.extend_from_slice(&l);
        bytes.push(b'\n');
        if let Some(r) = r {
            bad.push((i + 1, r));
        }
    }
    (bytes, bad)
}

#[test]
fn replay_summarizes_invalid_lines_by_reason_with_line_numbers_and_exits_zero() {
    let dir = scratch_dir("replay-invalid");
    let input = dir.join("mixed.jsonl");
    let (bytes, bad) = replay_input();
    std::fs::write(&input, bytes).unwrap();
    let path = input.display().to_string();
    let out = atowatch(&["replay", &path]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    for r in InvalidReason::ALL {
        let lines: Vec<String> = bad
            .iter()
            .filter(|b| b.1 == r)
            .map(|b| format!("{path}:{}", b.0))
            .collect();
        let row = stderr
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{} ", r.as_str())));
        if lines.is_empty() {
            assert!(row.is_none(), "{r} listed but absent:\n{stderr}");
            continue;
        }
        let row = row.unwrap_or_else(|| panic!("no summary row for {r}:\n{stderr}"));
        for l in &lines {
            assert!(row.contains(l.as_str()), "{r} row lacks {l}: {row}");
        }
        assert!(
            row.contains(&format!(" {} ", lines.len())),
            "{r} row should count {}: {row}",
            lines.len()
        );
    }
    assert!(stderr.contains("invalid     7"), "{stderr}");
}

#[test]
fn replay_dead_letter_file_has_one_json_object_per_invalid_line() {
    let dir = scratch_dir("replay-dead-letter");
    let input = dir.join("mixed.jsonl");
    let dead = dir.join("dead.jsonl");
    let (bytes, bad) = replay_input();
    std::fs::write(&input, bytes).unwrap();
    let out = atowatch(&[
        "replay",
        "--quiet",
        "--dead-letter",
        &dead.display().to_string(),
        &input.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&dead).expect("dead-letter file");
    let got: Vec<(usize, String)> = written
        .lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            assert!(v["raw"].is_string(), "{l}");
            (
                v["line"].as_u64().unwrap() as usize,
                v["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(usize, String)> = bad
        .iter()
        .map(|(l, r)| (*l, r.as_str().to_string()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn replay_of_a_missing_file_exits_2_naming_the_path() {
    let dir = scratch_dir("replay-missing");
    let missing = dir.join("no-such-events.jsonl");
    let path = missing.display().to_string();
    let out = atowatch(&["replay", &path]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(&path), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
}

#[test]
fn replay_with_an_unknown_config_key_exits_2_naming_file_line_and_key() {
    let dir = scratch_dir("replay-bad-config");
    let cfg = dir.join("my.toml");
    std::fs::write(
        &cfg,
        "[rules.bruteforce]\nwindow = \"5m\"\nmin_failure = 3\n",
    )
    .unwrap();
    let input = dir.join("events.jsonl");
    std::fs::write(&input, valid_line(1)).unwrap();
    let out = atowatch(&[
        "replay",
        "--config",
        &cfg.display().to_string(),
        &input.display().to_string(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{}:3", cfg.display())), "{stderr}");
    assert!(stderr.contains("min_failure"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn check_config_prints_the_effective_config_for_a_valid_file() {
    let dir = scratch_dir("check-config-ok");
    let cfg = dir.join("ok.toml");
    std::fs::write(
        &cfg,
        "# only what changes\n[rules.bruteforce]\nmin_failures = 7\n",
    )
    .unwrap();
    let out = atowatch(&["check-config", &cfg.display().to_string()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed =
        Config::from_toml_str(&stdout, "stdout").unwrap_or_else(|e| panic!("{e}\n{stdout}"));
    let mut want = Config::default();
    want.rules.bruteforce.min_failures = 7;
    assert_eq!(printed, want);
    assert!(
        stdout.contains("[rules.credential_stuffing]"),
        "defaults are filled in:\n{stdout}"
    );
}

#[test]
fn check_config_without_a_file_prints_the_defaults() {
    let out = atowatch(&["check-config"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        Config::from_toml_str(&text(&out.stdout), "stdout").unwrap(),
        Config::default()
    );
}

#[test]
fn check_config_exits_2_naming_the_key_of_an_invalid_file() {
    let dir = scratch_dir("check-config-bad");
    for (name, body, line, key) in [
        (
            "zero.toml",
            "# c\n[rules.bruteforce]\nmin_failures = 0\n",
            3,
            "rules.bruteforce.min_failures",
        ),
        (
            "unknown.toml",
            "[time]\nallowed_lateness = \"60s\"\nlateness = \"5s\"\n",
            3,
            "`lateness`",
        ),
        (
            "type.toml",
            "[rules.ip_velocity]\nmin_attempts = \"many\"\n",
            2,
            "rules.ip_velocity.min_attempts",
        ),
    ] {
        let cfg = dir.join(name);
        std::fs::write(&cfg, body).unwrap();
        let out = atowatch(&["check-config", &cfg.display().to_string()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{}:{line}", cfg.display())),
            "{name}: {stderr}"
        );
        assert!(stderr.contains(key), "{name}: {stderr}");
    }
}

#[test]
fn replay_bytes_counts_the_same_invalid_lines_as_the_binary_reports() {
    let (bytes, bad) = replay_input();
    let mut e = Engine::new(Config::default());
    atowatch::replay::replay_bytes(&mut e, &bytes);
    let st = e.stats();
    assert_eq!(st.invalid_total(), bad.len() as u64);
    for r in InvalidReason::ALL {
        assert_eq!(
            st.invalid[r.index()],
            bad.iter().filter(|b| b.1 == r).count() as u64,
            "{r}"
        );
    }
    assert_eq!(st.accepted(), 4);
}
