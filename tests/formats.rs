//! Input formats: OCSF Authentication and ECS events decode to the same events as native
//! JSON, are rejected for the same reasons, and the same traffic in any of the three
//! formats gives the same signals, down to the byte.

mod common;

use std::borrow::Cow;
use std::time::Instant;

use atowatch::config::Config;
use atowatch::engine::{Engine, Processed};
use atowatch::event::{AuthEvent, EventKind, InvalidReason, Outcome, decode_native};
use atowatch::formats::{
    self, Format, decode_ecs_into, decode_into, decode_ocsf_into, native_to_ecs, native_to_ocsf,
};
use atowatch::signal::{Rule, Signal};
use atowatch::simulate::{SimOptions, generate};
use serde_json::{Value, json};

use common::*;

fn ocsf(bytes: &[u8]) -> AuthEvent<'_> {
    let mut ev = AuthEvent::default();
    if let Err(e) = decode_ocsf_into(bytes, &mut ev) {
        panic!(
            "OCSF event rejected ({e}): {}",
            String::from_utf8_lossy(bytes)
        );
    }
    ev
}

fn ecs(bytes: &[u8]) -> AuthEvent<'_> {
    let mut ev = AuthEvent::default();
    if let Err(e) = decode_ecs_into(bytes, &mut ev) {
        panic!(
            "ECS event rejected ({e}): {}",
            String::from_utf8_lossy(bytes)
        );
    }
    ev
}

fn forwarded(ev: &AuthEvent<'_>) -> Vec<String> {
    let mut v: Vec<String> = ev
        .raw
        .forwarded_for
        .iter_rev()
        .map(str::to_string)
        .collect();
    v.reverse();
    v
}

fn login<'a>(ev: &'a AuthEvent<'_>) -> Option<&'a str> {
    ev.raw.user.as_ref().and_then(|u| u.login.as_deref())
}

fn user_id<'a>(ev: &'a AuthEvent<'_>) -> Option<&'a str> {
    ev.raw.user.as_ref().and_then(|u| u.id.as_deref())
}

/// Everything about an event that any rule, key or signal reads, as one line. `exists`
/// is only read on failures, and only failures carry it across formats.
fn summary(ev: &AuthEvent<'_>) -> String {
    format!(
        "{:?} {:?} ts={} ip={:?} fwd={:?} login={:?} id={:?} exists={:?} service={:?} event_id={:?} trace={:?}",
        ev.kind,
        ev.outcome,
        ev.ts_ms,
        ev.raw.ip.as_deref(),
        forwarded(ev),
        login(ev),
        user_id(ev),
        if ev.is_failure() {
            ev.user_exists()
        } else {
            None
        },
        ev.service(),
        ev.raw.event_id.as_deref(),
        ev.trace_id(),
    )
}

// ---------------------------------------------------------------- (a) decoding

#[test]
fn format_names_parse_and_print() {
    for f in Format::ALL {
        assert_eq!(f.as_str().parse::<Format>(), Ok(f));
        assert_eq!(f.to_string(), f.as_str());
    }
    assert_eq!("OCSF".parse::<Format>(), Ok(Format::Ocsf));
    assert_eq!(" ecs ".parse::<Format>(), Ok(Format::Ecs));
    let err = "cef".parse::<Format>().unwrap_err();
    assert!(err.contains("native, ocsf, ecs"), "{err}");
    assert_eq!(Format::default(), Format::Native);
}

/// A failed web sign-in as an identity provider writes it in OCSF 1.x: unknown user,
/// behind a load balancer, W3C trace context in the request headers.
#[test]
fn ocsf_logon_failure_with_everything() {
    let line = json!({
        "activity_id": 1,
        "activity_name": "Logon",
        "category_uid": 3,
        "category_name": "Identity & Access Management",
        "class_uid": 3002,
        "class_name": "Authentication",
        "type_uid": 300201,
        "severity_id": 1,
        "time": 1_763_719_380_123_i64,
        "status_id": 2,
        "status": "Failure",
        "status_code": "E0000004",
        "status_detail": "USER_DOES_NOT_EXIST",
        "message": "Authentication failed",
        "auth_protocol_id": 99,
        "auth_protocol": "password",
        "logon_type_id": 3,
        "is_mfa": false,
        "metadata": {
            "version": "1.3.0",
            "uid": "evt-8f41c2",
            "correlation_uid": "corr-77",
            "product": {"name": "Identity Gateway", "vendor_name": "Example Corp", "version": "4.2"},
            "log_name": "auth"
        },
        "user": {"name": "Alice@Example.com", "uid": "00u1ab2c3", "email_addr": "alice@example.com", "type_id": 1},
        "src_endpoint": {"ip": "10.0.1.12", "port": 51234, "intermediate_ips": ["198.51.100.1"]},
        "dst_endpoint": {"hostname": "login.example.com", "ip": "192.0.2.10", "port": 443, "svc_name": "sso"},
        "service": {"name": "checkout-api", "uid": "svc-1"},
        "http_request": {
            "http_method": "POST",
            "url": {"hostname": "login.example.com", "path": "/api/v1/authn", "scheme": "https"},
            "user_agent": "Mozilla/5.0",
            "x_forwarded_for": ["203.0.113.7", "10.0.0.4"],
            "http_headers": [
                {"name": "X-Forwarded-For", "value": "192.0.2.250"},
                {"name": "traceparent", "value": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
            ]
        },
        "session": {"uid": "sess-1", "is_remote": true},
        "unmapped": {"anything": [1, 2, {"x": null}]}
    })
    .to_string();
    let ev = ocsf(line.as_bytes());
    assert_eq!(ev.kind, EventKind::Login);
    assert_eq!(ev.outcome, Some(Outcome::Failure));
    assert_eq!(ev.ts_ms, 1_763_719_380_123);
    assert_eq!(ev.raw.ip.as_deref(), Some("10.0.1.12"));
    // `http_request.x_forwarded_for` is preferred over the other two places.
    assert_eq!(forwarded(&ev), ["203.0.113.7", "10.0.0.4"]);
    assert_eq!(login(&ev), Some("Alice@Example.com"));
    assert_eq!(user_id(&ev), Some("00u1ab2c3"));
    assert_eq!(ev.user_exists(), Some(false));
    assert_eq!(ev.service(), Some("checkout-api"));
    assert_eq!(ev.raw.event_id.as_deref(), Some("evt-8f41c2"));
    // The traceparent's trace id beats the free-form correlation id.
    assert_eq!(ev.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_eq!(ev.raw.kind.as_deref(), Some("user.login"));
    assert_eq!(ev.raw.outcome.as_deref(), Some("failure"));
    // Borrowed from the input, not copied.
    assert!(matches!(ev.raw.ip, Some(Cow::Borrowed(_))));
    assert!(matches!(ev.raw.trace_id, Some(Cow::Borrowed(_))));
    assert!(matches!(
        ev.raw.user.as_ref().unwrap().login,
        Some(Cow::Borrowed(_))
    ));
}

/// A minimal OCSF event that leans on every fallback: `type_uid` instead of
/// class/activity, `status` instead of `status_id`, `time_dt` instead of `time`,
/// `email_addr` as the login, `dst_endpoint.svc_name` as the service, the headers for
/// forwarding and trace, a Windows status code for the unknown user.
#[test]
fn ocsf_fallbacks() {
    let line = json!({
        "type_uid": 300201,
        "status": "failure",
        "status_code": "0xC0000064",
        "time_dt": "2025-11-21T11:03:00.5+01:00",
        "user": {"email_addr": "bob@example.com", "uid": 4711},
        "src_endpoint": {"ip": "10.0.3.21"},
        "dst_endpoint": {"svc_name": "vpn"},
        "metadata": {"original_event_uid": "orig-1", "product": {"name": "Gateway"}, "version": "1.1.0"},
        "http_request": {"http_headers": [
            {"name": "x-forwarded-for", "value": "203.0.113.9, 10.20.0.5"},
            {"name": "X-Amzn-Trace-Id", "value": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"}
        ]}
    })
    .to_string();
    let ev = ocsf(line.as_bytes());
    assert_eq!(ev.kind, EventKind::Login);
    assert_eq!(ev.outcome, Some(Outcome::Failure));
    assert_eq!(ev.ts_ms, 1_763_719_380_500);
    assert_eq!(forwarded(&ev), ["203.0.113.9", "10.20.0.5"]);
    assert!(
        ev.raw.forwarded_for.iter_rev().all(|h| !h.starts_with(' ')),
        "hops are trimmed"
    );
    assert_eq!(login(&ev), Some("bob@example.com"));
    assert_eq!(user_id(&ev), Some("4711"));
    assert_eq!(ev.user_exists(), Some(false));
    assert_eq!(ev.service(), Some("vpn"));
    assert_eq!(ev.raw.event_id.as_deref(), Some("orig-1"));
    assert_eq!(ev.trace_id(), Some("1-5759e988-bd862e3fe1be46a994272793"));

    // Last resorts: the product name as service, `intermediate_ips`, correlation_uid.
    let line = json!({
        "class_uid": 3002, "activity_id": 1, "status_id": 1, "time": T0,
        "user": {"name": "carol", "uid": ""},
        "src_endpoint": {"ip": "10.0.3.21", "intermediate_ips": ["203.0.113.10"]},
        "metadata": {"uid": "m-1", "correlation_uid": "corr-9", "product": {"name": "Gateway"}}
    })
    .to_string();
    let ev = ocsf(line.as_bytes());
    assert_eq!(ev.outcome, Some(Outcome::Success));
    assert_eq!(ev.service(), Some("Gateway"));
    assert_eq!(forwarded(&ev), ["203.0.113.10"]);
    assert_eq!(ev.trace_id(), Some("corr-9"));
    assert_eq!(ev.raw.event_id.as_deref(), Some("m-1"));
    assert_eq!(ev.user_exists(), None);
}

#[test]
fn ocsf_session_create_and_known_user_failures() {
    // A session issued without a password check: Logon whose source event code says so.
    let line = json!({
        "class_uid": 3002, "activity_id": 1, "time": T0,
        "metadata": {"event_code": "session.create", "product": {"name": "web"}, "version": "1.4.0"},
        "user": {"name": "dave"}, "src_endpoint": {"ip": "203.0.113.7"},
        "session": {"uid": "s-1", "created_time": T0}
    })
    .to_string();
    let ev = ocsf(line.as_bytes());
    assert_eq!(ev.kind, EventKind::SessionCreate);
    assert_eq!(ev.outcome, None);
    assert!(ev.is_success());
    assert_eq!(ev.raw.kind.as_deref(), Some("session.create"));

    // A successful Logon that carries a session is still a login.
    let line = json!({
        "class_uid": 3002, "activity_id": 1, "status_id": 1, "time": T0,
        "user": {"name": "dave"}, "src_endpoint": {"ip": "203.0.113.7"},
        "session": {"uid": "s-2"}, "metadata": {"event_code": "4624"}
    })
    .to_string();
    assert_eq!(ocsf(line.as_bytes()).kind, EventKind::Login);

    for (detail, exists) in [
        ("INVALID_CREDENTIALS", Some(true)),
        ("ACCOUNT_LOCKED_OUT", Some(true)),
        ("password expired", Some(true)),
        ("User not found", Some(false)),
        ("unknown-user", Some(false)),
        ("MFA_REQUIRED", None),
    ] {
        let line = json!({
            "class_uid": 3002, "activity_id": 1, "status_id": 2, "time": T0,
            "status_detail": detail,
            "user": {"name": "erin"}, "src_endpoint": {"ip": "203.0.113.7"}
        })
        .to_string();
        assert_eq!(ocsf(line.as_bytes()).user_exists(), exists, "{detail}");
    }

    // Escaped strings decode (owned) to the same text.
    let line = r#"{"class_uid":3002,"activity_id":1,"status_id":2,"time":1763719200000,"user":{"name":"fr\u00e9d\"x"},"src_endpoint":{"ip":"203.0.113.7"}}"#;
    let ev = ocsf(line.as_bytes());
    assert_eq!(login(&ev), Some("fréd\"x"));
}

/// A failed logon as an Elastic integration writes it (nested objects, arrays for the
/// categorization fields).
#[test]
fn ecs_authentication_failure_nested() {
    let line = json!({
        "@timestamp": "2025-11-21T10:03:00.123Z",
        "ecs": {"version": "8.11.0"},
        "message": "Failed password for invalid user admin",
        "event": {
            "kind": "event",
            "category": ["authentication"],
            "type": ["start"],
            "action": "logon-failed",
            "outcome": "failure",
            "id": "evt-1",
            "reason": "Unknown user name",
            "dataset": "app.auth",
            "created": "2025-11-21T10:03:01Z"
        },
        "client": {"ip": "203.0.113.7", "port": 51234},
        "source": {"ip": "10.0.1.12", "port": 443, "geo": {"country_iso_code": "NL"}},
        "network": {"forwarded_ip": "198.51.100.77"},
        "user": {"name": "admin", "id": 501, "email": "admin@example.com", "domain": "corp"},
        "service": {"name": "checkout-api", "type": "web"},
        "trace": {"id": "4bf92f3577b34da6a3ce929d0e0e4736"},
        "transaction": {"id": "00f067aa0ba902b7"},
        "user_agent": {"original": "curl/8.4.0"},
        "host": {"name": "web-1"},
        "tags": ["auth", "prod"]
    })
    .to_string();
    let ev = ecs(line.as_bytes());
    assert_eq!(ev.kind, EventKind::Login);
    assert_eq!(ev.outcome, Some(Outcome::Failure));
    assert_eq!(ev.ts_ms, 1_763_719_380_123);
    // `client.ip` is preferred over `source.ip`.
    assert_eq!(ev.raw.ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(forwarded(&ev), ["198.51.100.77"]);
    assert_eq!(login(&ev), Some("admin"));
    assert_eq!(user_id(&ev), Some("501"));
    assert_eq!(ev.user_exists(), Some(false));
    assert_eq!(ev.service(), Some("checkout-api"));
    assert_eq!(ev.raw.event_id.as_deref(), Some("evt-1"));
    assert_eq!(ev.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert!(matches!(ev.raw.ip, Some(Cow::Borrowed(_))));
}

/// ecs-logging libraries write dotted keys at the top level; both forms and a mix work.
#[test]
fn ecs_dotted_keys_and_strings() {
    let line = r#"{"@timestamp":1763719200000,"log.level":"info","event.category":"authentication","event.type":"info","event.outcome":"success","event.id":"d-1","source.ip":"2001:db8::7","network.forwarded_ip":["203.0.113.1","10.0.0.2"],"user.email":"grace@example.com","service.name":"mobile","trace.id":"t-1","error.code":"INVALID_CREDENTIALS"}"#;
    let ev = ecs(line.as_bytes());
    assert_eq!(ev.kind, EventKind::Login);
    assert_eq!(ev.outcome, Some(Outcome::Success));
    assert_eq!(ev.ts_ms, T0);
    assert_eq!(ev.raw.ip.as_deref(), Some("2001:db8::7"));
    assert_eq!(forwarded(&ev), ["203.0.113.1", "10.0.0.2"]);
    assert_eq!(login(&ev), Some("grace@example.com"));
    assert_eq!(ev.service(), Some("mobile"));
    assert_eq!(ev.raw.event_id.as_deref(), Some("d-1"));
    assert_eq!(ev.trace_id(), Some("t-1"));
    assert_eq!(ev.user_exists(), Some(true));

    // Mixed: a nested `event` object and a dotted outcome; nested user with dotted id.
    let line = r#"{"@timestamp":"2025-11-21T10:00:00Z","event":{"category":["authentication","iam"]},"event.outcome":"failure","client.ip":"203.0.113.2","user":{"name":"heidi"},"user.id":"u-9"}"#;
    let ev = ecs(line.as_bytes());
    assert_eq!(ev.outcome, Some(Outcome::Failure));
    assert_eq!(ev.raw.ip.as_deref(), Some("203.0.113.2"));
    assert_eq!(login(&ev), Some("heidi"));
    assert_eq!(user_id(&ev), Some("u-9"));
    assert_eq!(ev.service(), None);
}

#[test]
fn ecs_session_creation() {
    // The ECS `session` category, type start.
    let line = json!({
        "@timestamp": "2025-11-21T10:00:00Z",
        "event": {"category": ["session"], "type": ["start"]},
        "source": {"ip": "203.0.113.7"}, "user": {"name": "ivan"}
    })
    .to_string();
    let ev = ecs(line.as_bytes());
    assert_eq!(ev.kind, EventKind::SessionCreate);
    assert_eq!(ev.outcome, None);

    // An authentication event whose action names the native type.
    for action in ["session.create", "session_created", "Session Created"] {
        let line = json!({
            "@timestamp": "2025-11-21T10:00:00Z",
            "event": {"category": "authentication", "type": "start", "action": action, "outcome": "success"},
            "source": {"ip": "203.0.113.7"}, "user": {"name": "ivan"}
        })
        .to_string();
        let ev = ecs(line.as_bytes());
        assert_eq!(ev.kind, EventKind::SessionCreate, "{action}");
        assert_eq!(ev.outcome, Some(Outcome::Success));
    }

    // Any other action on an authentication event is a login.
    let line = json!({
        "@timestamp": "2025-11-21T10:00:00Z",
        "event": {"category": "authentication", "type": "start", "action": "logged-in", "outcome": "success"},
        "source": {"ip": "203.0.113.7"}, "user": {"name": "ivan"}
    })
    .to_string();
    assert_eq!(ecs(line.as_bytes()).kind, EventKind::Login);
}

/// Every shape of native event converts to OCSF and ECS and decodes back to the same
/// event.
#[test]
fn converters_round_trip() {
    let evs = [
        Ev::failure(T0, ATTACKER, "alice@example.com").exists(false),
        Ev::failure(T0 + 1, ATTACKER, "alice@example.com").exists(true),
        Ev::failure(T0 + 2, ATTACKER, "alice").no_exists(),
        Ev::success(T0 + 3, "10.0.1.12", "bob")
            .forwarded_for(&["192.0.2.1", "203.0.113.8"])
            .rfc3339(),
        Ev::success(T0 + 4, "10.0.3.21", "bob").forwarded_for(&["203.0.113.8", "10.20.0.5"]),
        Ev::session(T0 + 5, "2001:db8::1", "carol").trace_id("4bf92f3577b34da6a3ce929d0e0e4736"),
        Ev::failure(T0 + 6, BYSTANDER, "x").user_id_only("12345"),
        Ev {
            service: None,
            trace_id: None,
            event_id: None,
            ..Ev::success(T0 + 7, "203.0.113.7:443", "dave")
        },
        Ev::failure(T0 + 8, ATTACKER, "quote\"and\\slash\u{e9}"),
    ];
    let mut lines: Vec<String> = evs.iter().map(Ev::json).collect();
    // A session.create that carries an outcome, an integer user id, extra fields.
    lines.push(
        r#"{"type":"session.create","outcome":"failure","ts":1763719200009,"ip":"203.0.113.7","user":{"id":42,"exists":false},"function":"auth-fn","user_agent":"ua/1","session_id":"s1","span_id":"00f067aa0ba902b7","metadata":{"region":"eu-west-1","n":1}}"#.to_string(),
    );
    for line in &lines {
        let native = decode_native(line.as_bytes()).unwrap();
        let o = native_to_ocsf(line.as_bytes()).expect("converts to OCSF");
        let e = native_to_ecs(line.as_bytes()).expect("converts to ECS");
        let want = summary(&native);
        assert_eq!(
            summary(&ocsf(&o)),
            want,
            "OCSF: {}",
            String::from_utf8_lossy(&o)
        );
        assert_eq!(
            summary(&ecs(&e)),
            want,
            "ECS: {}",
            String::from_utf8_lossy(&e)
        );
        for (f, b) in [
            (Format::Native, line.as_bytes()),
            (Format::Ocsf, &o),
            (Format::Ecs, &e),
        ] {
            let mut ev = AuthEvent::default();
            decode_into(f, b, &mut ev).unwrap();
            assert_eq!(summary(&ev), want, "{f}");
        }
    }
    // What the converters write is recognisably each schema.
    let o: Value = serde_json::from_slice(&native_to_ocsf(lines[0].as_bytes()).unwrap()).unwrap();
    assert_eq!(o["class_uid"], 3002);
    assert_eq!(o["activity_id"], 1);
    assert_eq!(o["type_uid"], 300201);
    assert_eq!(o["status_id"], 2);
    assert_eq!(o["status_detail"], "USER_DOES_NOT_EXIST");
    assert_eq!(o["src_endpoint"]["ip"], ATTACKER);
    assert_eq!(o["user"]["name"], "alice@example.com");
    let e: Value = serde_json::from_slice(&native_to_ecs(lines[3].as_bytes()).unwrap()).unwrap();
    assert_eq!(e["event"]["category"], json!(["authentication"]));
    assert_eq!(e["event"]["outcome"], "success");
    assert_eq!(e["source"]["ip"], "10.0.1.12");
    assert_eq!(
        e["network"]["forwarded_ip"],
        json!(["192.0.2.1", "203.0.113.8"])
    );
    assert_eq!(e["@timestamp"], rfc(T0 + 3));

    // Invalid native lines do not convert.
    for bad in [
        &b"not json"[..],
        br#"{"type":"user.logout","ts":1763719200000,"ip":"1.2.3.4","user":{"login":"a"}}"#,
    ] {
        assert!(native_to_ocsf(bad).is_none());
        assert!(native_to_ecs(bad).is_none());
    }
}

// ---------------------------------------------------------------- (b) rejections

/// Reasons the decoders themselves give (the rest come from the engine).
fn decoder_cases(format: Format) -> Vec<(InvalidReason, Value)> {
    use InvalidReason::*;
    match format {
        Format::Native => {
            let base = json!({"type": "user.login", "outcome": "failure", "ts": T0,
                "ip": "203.0.113.7", "user": {"login": "alice"}});
            let with = |k: &str, v: Value| {
                let mut b = base.clone();
                if v.is_null() {
                    b.as_object_mut().unwrap().remove(k);
                } else {
                    b[k] = v;
                }
                b
            };
            vec![
                (WrongFieldType, with("user", json!("alice"))),
                (WrongFieldType, with("ts", json!(1.5e12))),
                (MissingField, with("ip", Value::Null)),
                (MissingField, with("outcome", Value::Null)),
                (UnknownEventType, with("type", json!("user.logout"))),
                (InvalidOutcome, with("outcome", json!("maybe"))),
                (InvalidTimestamp, with("ts", json!("yesterday"))),
                (TimestampOutOfRange, with("ts", json!(1_763_719_200))),
                (MissingAccount, with("user", json!({"login": ""}))),
            ]
        }
        Format::Ocsf => {
            let base = json!({"class_uid": 3002, "activity_id": 1, "status_id": 2,
                "time": T0, "src_endpoint": {"ip": "203.0.113.7"}, "user": {"name": "alice"}});
            let with = |k: &str, v: Value| {
                let mut b = base.clone();
                if v.is_null() {
                    b.as_object_mut().unwrap().remove(k);
                } else {
                    b[k] = v;
                }
                b
            };
            vec![
                (WrongFieldType, with("user", json!("alice"))),
                (WrongFieldType, with("status_id", json!("2"))),
                (WrongFieldType, with("src_endpoint", json!({"ip": 7}))),
                (WrongFieldType, with("time", json!(1.5e12))),
                (MissingField, with("class_uid", Value::Null)),
                (MissingField, with("activity_id", Value::Null)),
                (MissingField, with("status_id", Value::Null)),
                (MissingField, with("time", Value::Null)),
                (MissingField, with("src_endpoint", json!({"port": 443}))),
                (MissingField, with("user", Value::Null)),
                (UnknownEventType, with("class_uid", json!(3003))),
                (UnknownEventType, with("activity_id", json!(2))),
                (UnknownEventType, with("activity_id", json!(4))),
                (InvalidOutcome, with("status_id", json!(0))),
                (InvalidOutcome, with("status_id", json!(99))),
                (InvalidOutcome, {
                    let mut b = with("status_id", Value::Null);
                    b["status"] = json!("Pending");
                    b
                }),
                (InvalidTimestamp, {
                    let mut b = with("time", Value::Null);
                    b["time_dt"] = json!("21/11/2025 10:00");
                    b
                }),
                (InvalidTimestamp, with("time", json!("soon"))),
                (TimestampOutOfRange, with("time", json!(1_763_719_200))),
                (
                    MissingAccount,
                    with("user", json!({"name": "", "type_id": 1})),
                ),
            ]
        }
        Format::Ecs => {
            let base = json!({"@timestamp": "2025-11-21T10:00:00Z",
                "event": {"category": ["authentication"], "type": ["start"], "outcome": "failure"},
                "source": {"ip": "203.0.113.7"}, "user": {"name": "alice"}});
            let with = |k: &str, v: Value| {
                let mut b = base.clone();
                if v.is_null() {
                    b.as_object_mut().unwrap().remove(k);
                } else {
                    b[k] = v;
                }
                b
            };
            let event = |v: Value| with("event", v);
            vec![
                (WrongFieldType, with("user", json!("alice"))),
                (
                    WrongFieldType,
                    event(json!({"category": 7, "outcome": "failure"})),
                ),
                (
                    WrongFieldType,
                    with("source", json!({"ip": ["203.0.113.7"]})),
                ),
                (MissingField, with("event", Value::Null)),
                (
                    MissingField,
                    event(json!({"type": ["start"], "outcome": "failure"})),
                ),
                (MissingField, event(json!({"category": "authentication"}))),
                (MissingField, with("@timestamp", Value::Null)),
                (MissingField, with("source", json!({"port": 443}))),
                (MissingField, with("user", Value::Null)),
                (
                    UnknownEventType,
                    event(
                        json!({"category": ["network"], "type": ["connection"], "outcome": "failure"}),
                    ),
                ),
                (
                    UnknownEventType,
                    event(
                        json!({"category": ["authentication"], "type": ["end"], "outcome": "success"}),
                    ),
                ),
                (
                    UnknownEventType,
                    event(json!({"category": ["session"], "type": ["end"]})),
                ),
                (
                    UnknownEventType,
                    event(json!({"category": ["session"], "type": ["info"]})),
                ),
                (
                    InvalidOutcome,
                    event(json!({"category": ["authentication"], "outcome": "unknown"})),
                ),
                (
                    InvalidOutcome,
                    event(json!({"category": ["authentication"], "outcome": "FAILURE"})),
                ),
                (
                    InvalidTimestamp,
                    with("@timestamp", json!("Nov 21 10:00:00")),
                ),
                (
                    TimestampOutOfRange,
                    with("@timestamp", json!("1999-12-31T23:59:59Z")),
                ),
                (
                    TimestampOutOfRange,
                    with("@timestamp", json!(1_763_719_200)),
                ),
                (
                    MissingAccount,
                    with("user", json!({"name": "", "domain": "corp"})),
                ),
            ]
        }
    }
}

fn expect_invalid(engine: &mut Engine, format: Format, bytes: &[u8], want: InvalidReason) {
    let mut out = Vec::new();
    match formats::process(engine, format, bytes, &mut out) {
        Processed::Invalid(e) => assert_eq!(
            e.reason,
            want,
            "{format}: {e} for {}",
            String::from_utf8_lossy(bytes)
        ),
        other => panic!(
            "{format}: expected {want}, got {other:?} for {}",
            String::from_utf8_lossy(bytes)
        ),
    }
    assert!(out.is_empty());
}

#[test]
fn every_rejection_reason_in_every_format() {
    use InvalidReason::*;
    for format in Format::ALL {
        let mut covered = std::collections::BTreeSet::new();
        let mut cfg = Config::default();
        cfg.input.max_event_bytes = 1024;

        // Input-level reasons: the same bytes in any format.
        let mut non_utf8 = br#"{"user":{"name":"al"#.to_vec();
        non_utf8.extend_from_slice(&[0xff, 0xfe]);
        non_utf8.extend_from_slice(br#""}}"#);
        let generic: Vec<(InvalidReason, Vec<u8>)> = vec![
            (InvalidJson, b"".to_vec()),
            (InvalidJson, b"{\"time\":".to_vec()),
            (InvalidJson, b"{} {}".to_vec()),
            (InvalidJson, non_utf8),
            (NotAnObject, b"[1,2]".to_vec()),
            (NotAnObject, b"\"user.login\"".to_vec()),
            (NotAnObject, b"null".to_vec()),
            (
                Oversized,
                format!("{{\"pad\":\"{}\"}}", "x".repeat(2000)).into_bytes(),
            ),
        ];
        for (reason, bytes) in generic {
            let mut engine = Engine::new(cfg.clone());
            expect_invalid(&mut engine, format, &bytes, reason);
            covered.insert(reason);
        }
        for (reason, v) in decoder_cases(format) {
            let bytes = v.to_string().into_bytes();
            let mut ev = AuthEvent::default();
            let err = decode_into(format, &bytes, &mut ev).expect_err(&v.to_string());
            assert_eq!(err.reason, reason, "{format}: {err} for {v}");
            let mut engine = Engine::new(cfg.clone());
            expect_invalid(&mut engine, format, &bytes, reason);
            covered.insert(reason);
        }

        // Engine-level reasons, on events the decoder accepts: a bad address, a bad
        // forwarded hop behind a trusted proxy, a wild clock.
        let native = |ev: &Ev| -> Vec<u8> {
            let line = ev.json();
            match format {
                Format::Native => line.into_bytes(),
                Format::Ocsf => native_to_ocsf(line.as_bytes()).unwrap(),
                Format::Ecs => native_to_ecs(line.as_bytes()).unwrap(),
            }
        };
        let mut engine = Engine::new(cfg.clone());
        expect_invalid(
            &mut engine,
            format,
            &native(&Ev::failure(T0, "not-an-ip", "alice")),
            InvalidIp,
        );
        expect_invalid(
            &mut engine,
            format,
            &native(&Ev::failure(T0, "10.0.1.12", "alice").forwarded_for(&["unknown"])),
            InvalidIp,
        );
        covered.insert(InvalidIp);
        let mut out = Vec::new();
        for i in 0..3 {
            let p = formats::process(
                &mut engine,
                format,
                &native(&Ev::failure(T0 + i * SEC, ATTACKER, "alice")),
                &mut out,
            );
            assert_eq!(p, Processed::Accepted);
        }
        expect_invalid(
            &mut engine,
            format,
            &native(&Ev::failure(T0 + 5 * HOUR, ATTACKER, "alice")),
            TimestampJump,
        );
        covered.insert(TimestampJump);

        let all: std::collections::BTreeSet<_> = InvalidReason::ALL.into_iter().collect();
        assert_eq!(covered, all, "{format}: every reason is exercised");
    }
}

// ---------------------------------------------------------------- (c) same attack, same signals

/// Brute force then takeover of one account, distributed brute force on another, a
/// fast credential-stuffing burst (with enumeration of unknown names and IP velocity)
/// that ends in a takeover and a session, plus benign traffic behind load balancers.
fn attack_sequence() -> Vec<String> {
    let mut evs: Vec<Ev> = Vec::new();
    let victim = "victim@example.com";
    // Background: one login a second from ordinary users, some behind an LB.
    for i in 0..900 {
        let t = T0 + i * SEC;
        let user = format!("user{}@example.com", i % 97);
        let ip = nth_ip(i as u32 % 211);
        evs.push(if i % 3 == 0 {
            Ev::success(t, "10.0.1.12", &user).forwarded_for(&[&ip])
        } else if i % 29 == 0 {
            Ev::failure(t, &ip, &user).rfc3339()
        } else {
            Ev::success(t, &ip, &user)
        });
    }
    // Brute force: 12 failures on the victim from one IP in 2 minutes, then it gets in.
    for i in 0..12 {
        evs.push(Ev::failure(T0 + 60 * SEC + i * 10 * SEC, ATTACKER, victim));
    }
    evs.push(Ev::success(T0 + 200 * SEC, ATTACKER, victim));
    evs.push(
        Ev::session(T0 + 201 * SEC, ATTACKER, victim).trace_id("4bf92f3577b34da6a3ce929d0e0e4736"),
    );
    // Distributed brute force: 12 failures on another account from 6 IPs.
    for i in 0..12 {
        let ip = nth_ip(5_000 + i as u32 % 6);
        evs.push(
            Ev::failure(
                T0 + 300 * SEC + i * 20 * SEC,
                "10.0.3.21",
                "cfo@example.com",
            )
            .forwarded_for(&[&ip, "10.20.0.5"]),
        );
    }
    // Credential stuffing and enumeration: 130 failures in 50 s over 40 names, a third
    // of them unknown, then one hit.
    let stuffer = "198.51.100.7";
    for i in 0..130 {
        let n = i % 40;
        let ev = Ev::failure(
            T0 + 400 * SEC + i * 385,
            stuffer,
            &format!("leaked{n}@example.com"),
        )
        .service("checkout-api");
        evs.push(if n % 3 == 0 {
            ev.exists(false)
        } else {
            ev.exists(true)
        });
    }
    evs.push(Ev::success(T0 + 460 * SEC, stuffer, "leaked7@example.com").service("checkout-api"));
    evs.push(Ev::session(T0 + 461 * SEC, stuffer, "leaked7@example.com").service("checkout-api"));
    // A redelivered event (same id) is a duplicate in every format.
    evs.push(Ev::failure(T0 + 462 * SEC, stuffer, "leaked8@example.com").event_id("dup-1"));
    evs.push(Ev::failure(T0 + 462 * SEC, stuffer, "leaked8@example.com").event_id("dup-1"));
    evs.sort_by_key(|e| e.ts);
    evs.iter().map(Ev::json).collect()
}

struct Outcome3 {
    signals: Vec<String>,
    stats: atowatch::engine::Stats,
}

fn run_native(lines: &[Vec<u8>]) -> Outcome3 {
    let mut engine = Engine::new(Config::default());
    let mut out: Vec<Signal> = Vec::new();
    for l in lines {
        engine.process_json(l, &mut out);
    }
    Outcome3 {
        signals: out.iter().map(Signal::to_json).collect(),
        stats: engine.stats().clone(),
    }
}

fn run_decoded(format: Format, lines: &[Vec<u8>]) -> Outcome3 {
    let mut engine = Engine::new(Config::default());
    let mut out: Vec<Signal> = Vec::new();
    let mut ev = AuthEvent::default();
    for l in lines {
        match decode_into(format, l, &mut ev) {
            Ok(()) => {
                engine.process_event(&ev, &mut out);
            }
            Err(e) => panic!("{format} rejected ({e}): {}", String::from_utf8_lossy(l)),
        }
    }
    Outcome3 {
        signals: out.iter().map(Signal::to_json).collect(),
        stats: engine.stats().clone(),
    }
}

fn assert_same(format: Format, got: &Outcome3, want: &Outcome3) {
    assert_eq!(got.stats, want.stats, "{format}: engine counters differ");
    assert_eq!(
        got.signals.len(),
        want.signals.len(),
        "{format}: signal counts differ"
    );
    for (i, (g, w)) in got.signals.iter().zip(&want.signals).enumerate() {
        assert_eq!(g, w, "{format}: signal {i} differs");
    }
}

#[test]
fn the_same_attack_in_any_format_gives_the_same_signals() {
    let native: Vec<Vec<u8>> = attack_sequence()
        .into_iter()
        .map(String::into_bytes)
        .collect();
    let ocsf: Vec<Vec<u8>> = native.iter().map(|l| native_to_ocsf(l).unwrap()).collect();
    let ecs: Vec<Vec<u8>> = native.iter().map(|l| native_to_ecs(l).unwrap()).collect();

    let want = run_native(&native);
    let rules: std::collections::BTreeSet<String> = want
        .signals
        .iter()
        .map(|s| {
            serde_json::from_str::<Value>(s).unwrap()["rule"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for rule in [
        Rule::Bruteforce,
        Rule::DistributedBruteforce,
        Rule::CredentialStuffing,
        Rule::UserEnumeration,
        Rule::IpVelocity,
        Rule::AccountTakeover,
    ] {
        assert!(
            rules.contains(rule.as_str()),
            "the sequence should raise {rule}; got {rules:?}"
        );
    }
    assert_eq!(want.stats.duplicates, 1);
    assert_eq!(want.stats.invalid_total(), 0);

    // Native through the decoder path too, then each format.
    assert_same(Format::Native, &run_decoded(Format::Native, &native), &want);
    assert_same(Format::Ocsf, &run_decoded(Format::Ocsf, &ocsf), &want);
    assert_same(Format::Ecs, &run_decoded(Format::Ecs, &ecs), &want);
}

// ---------------------------------------------------------------- (d) simulated traffic

/// Two hours of simulated traffic with every attack kind, converted to OCSF and ECS:
/// every event decodes to the same event, and the engine emits byte-identical signals.
#[test]
fn simulated_traffic_gives_identical_signals_in_every_format() {
    let started = Instant::now();
    let sim = generate(&SimOptions::default()).expect("simulate");
    let mut native = Vec::with_capacity(sim.len());
    let mut line = Vec::new();
    for i in 0..sim.len() {
        line.clear();
        sim.write_event_json(i, &mut line);
        native.push(line.clone());
    }
    let ocsf: Vec<Vec<u8>> = native
        .iter()
        .map(|l| native_to_ocsf(l).expect("simulated events convert"))
        .collect();
    let ecs: Vec<Vec<u8>> = native
        .iter()
        .map(|l| native_to_ecs(l).expect("simulated events convert"))
        .collect();

    // Event by event.
    let (mut a, mut b, mut c) = (
        AuthEvent::default(),
        AuthEvent::default(),
        AuthEvent::default(),
    );
    for i in 0..native.len() {
        decode_into(Format::Native, &native[i], &mut a).unwrap();
        decode_into(Format::Ocsf, &ocsf[i], &mut b).unwrap();
        decode_into(Format::Ecs, &ecs[i], &mut c).unwrap();
        let want = summary(&a);
        assert_eq!(summary(&b), want, "OCSF event {i}");
        assert_eq!(summary(&c), want, "ECS event {i}");
    }

    // Whole runs.
    let want = run_native(&native);
    assert_eq!(want.stats.invalid_total(), 0);
    assert!(
        want.signals.len() > 20,
        "the simulation raises signals ({})",
        want.signals.len()
    );
    assert_same(Format::Ocsf, &run_decoded(Format::Ocsf, &ocsf), &want);
    assert_same(Format::Ecs, &run_decoded(Format::Ecs, &ecs), &want);
    eprintln!(
        "{} events, {} signals, identical in native, OCSF and ECS ({:.1} s)",
        native.len(),
        want.signals.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn replay_format_flag_reads_ocsf_and_ecs_files_to_the_same_signals() {
    let sim = atowatch::simulate::generate(&atowatch::simulate::SimOptions::for_duration(
        3,
        2 * 3_600_000,
    ))
    .unwrap();
    let dir = common::scratch_dir("replay-format");
    let mut native = Vec::new();
    let mut ocsf = Vec::new();
    let mut ecs = Vec::new();
    let mut line = Vec::new();
    for i in 0..sim.len() {
        line.clear();
        sim.write_event_json(i, &mut line);
        native.extend_from_slice(&line);
        native.push(b'\n');
        ocsf.extend(atowatch::formats::native_to_ocsf(&line).unwrap());
        ocsf.push(b'\n');
        ecs.extend(atowatch::formats::native_to_ecs(&line).unwrap());
        ecs.push(b'\n');
    }
    let run = |name: &str, bytes: &[u8], format: &str| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_atowatch"))
            .args(["replay", "--quiet", "--format", format])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let want = run("native.jsonl", &native, "native");
    assert!(want.len() > 1000, "signals expected");
    assert_eq!(run("ocsf.jsonl", &ocsf, "ocsf"), want);
    assert_eq!(run("ecs.jsonl", &ecs, "ecs"), want);
}
