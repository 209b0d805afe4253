//! Input adapters: authentication events in OCSF (class 3002, Authentication) and in the
//! Elastic Common Schema (ECS 8.x), decoded into the same [`AuthEvent`] the native
//! decoder produces, so every rule sees the same thing whatever the wire format.
//!
//! Both decoders keep [`decode_native_into`]'s contract: they borrow from the input
//! (`Cow::Borrowed` unless a string has escapes), reject with the same
//! [`InvalidReason`]s and check in the same order (event type, outcome, time, IP,
//! user). Like the native decoder they do not parse IP addresses: the engine does, when
//! it resolves the client (`invalid_ip` comes from there, for every format).
//!
//! Mapping decisions (the README's "Other input formats" table lists every field):
//!
//! - **OCSF.** Only `class_uid` 3002 with `activity_id` 1 (Logon) is an event atowatch
//!   counts. Logoff, the Kerberos ticket activities, Preauth, Account Switch, Unknown
//!   and Other are rejected as `unknown_event_type`, like an unknown native `type`:
//!   nothing is dropped silently, and one Kerberos sign-in emits several ticket events,
//!   so counting them would inflate failures. A Logon is `user.login` unless
//!   `metadata.event_code` says `session.create` (the source's own event code, where
//!   OCSF puts it): a successful Logon that carries a `session` object is still a
//!   login, because most web logins issue a session and they must keep counting as
//!   login attempts.
//! - **ECS.** `event.category` must contain `authentication` (a login) or `session`
//!   (with `event.type` `start`: a `session.create`); `event.action` `session.create`
//!   (or `session_created`, ...) also makes an authentication event a `session.create`.
//!   `event.type` `end` (logoff, session end) is rejected as `unknown_event_type`. Keys
//!   may be nested objects or dotted (`"event.outcome": "failure"`), as Elasticsearch
//!   accepts both.
//! - **Unknown users.** Neither schema has a `user.exists`. A reason code does the job:
//!   OCSF `status_detail` / `status_code`, ECS `event.reason` / `error.code`, compared
//!   case-insensitively with punctuation folded to `_`. `USER_DOES_NOT_EXIST` (OCSF's
//!   own example), `USER_NOT_FOUND`, `UNKNOWN_USER`, `NO_SUCH_USER`, `INVALID_USER`
//!   (sshd) and Windows `0xC0000064` mean the user does not exist; `INVALID_CREDENTIALS`,
//!   `ACCOUNT_LOCKED_OUT`, `ACCOUNT_DISABLED`, `PASSWORD_EXPIRED` (OCSF's other
//!   examples), `INVALID_PASSWORD` and their Windows codes mean it does.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::engine::{Engine, Keyed, Keyer, Processed};
use crate::event::{
    AuthEvent, EventKind, Forwarded, Ident, InvalidEvent, InvalidReason, MAX_TS_MS, MIN_TS_MS,
    Outcome, RawUser, TsValue, classify_json_error, decode_native, decode_native_into, format_ts,
    parse_rfc3339_ms,
};
use crate::signal::Signal;

/// The wire format of an input stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// atowatch's own schema (README, "Events in").
    #[default]
    Native,
    /// OCSF 1.x Authentication (class 3002).
    Ocsf,
    /// Elastic Common Schema 8.x, `event.category: authentication`.
    Ecs,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Native, Format::Ocsf, Format::Ecs];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::Ocsf => "ocsf",
            Format::Ecs => "ecs",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown input format `{s}`; valid formats: native, ocsf, ecs"))
    }
}

/// Decodes one event of `format` into `ev` (see [`decode_native_into`] for why in place).
pub fn decode_into<'a>(
    format: Format,
    bytes: &'a [u8],
    ev: &mut AuthEvent<'a>,
) -> Result<(), InvalidEvent> {
    match format {
        Format::Native => decode_native_into(bytes, ev),
        Format::Ocsf => decode_ocsf_into(bytes, ev),
        Format::Ecs => decode_ecs_into(bytes, ev),
    }
}

/// An event longer than `input.max_event_bytes`.
pub fn oversized(len: usize, max_bytes: usize) -> InvalidEvent {
    InvalidEvent::new(
        InvalidReason::Oversized,
        format!("{len} bytes exceeds input.max_event_bytes = {max_bytes}"),
    )
}

/// The `input.max_event_bytes` check and the decode of [`process`], without the engine,
/// so they can run on another thread (the Kafka runtime decodes ahead that way).
pub fn decode(
    format: Format,
    bytes: &[u8],
    max_bytes: usize,
) -> Result<AuthEvent<'_>, InvalidEvent> {
    if bytes.len() > max_bytes {
        return Err(oversized(bytes.len(), max_bytes));
    }
    let mut ev = AuthEvent::default();
    decode_into(format, bytes, &mut ev)?;
    Ok(ev)
}

/// [`decode`] into `scratch` in place, then the event's keys ([`Keyed`]): what the
/// engine takes in chunks. In place, the event is not copied on its way (it is a few
/// hundred bytes); what `Keyed` keeps is taken out of `scratch`.
pub fn decode_keyed<'a>(
    format: Format,
    bytes: &'a [u8],
    max_bytes: usize,
    keyer: &Keyer,
    scratch: &mut AuthEvent<'a>,
) -> Result<Keyed<'a>, InvalidEvent> {
    if bytes.len() > max_bytes {
        return Err(oversized(bytes.len(), max_bytes));
    }
    decode_into(format, bytes, scratch)?;
    Keyed::new(keyer, scratch)
}

/// [`Engine::process_json`] for any format: the same `input.max_event_bytes` check, then
/// decode, then [`Engine::process_event`]. Signals are appended to `out`.
pub fn process(
    engine: &mut Engine,
    format: Format,
    bytes: &[u8],
    out: &mut Vec<Signal>,
) -> Processed {
    if format == Format::Native {
        return engine.process_json(bytes, out);
    }
    match decode(format, bytes, engine.config().input.max_event_bytes) {
        Ok(ev) => engine.process_event(&ev, out),
        Err(e) => engine.reject(e),
    }
}

/// [`process`] over a run of events (a chunk of lines), each with its state loaded a few
/// events ahead ([`crate::engine::Ahead`]): the same results and signals, sooner. An
/// `Err` item is an event its reader already rejected (a line cut for size). `each` gets
/// each event's index, result and signals (cleared after).
pub fn process_many<'a>(
    engine: &mut Engine,
    format: Format,
    events: impl IntoIterator<Item = Result<&'a [u8], InvalidEvent>>,
    out: &mut Vec<Signal>,
    each: impl FnMut(usize, Processed, &mut Vec<Signal>),
) {
    let max = engine.config().input.max_event_bytes;
    let keyer = engine.keyer();
    let mut scratch = AuthEvent::default();
    let decoded: Vec<Result<Keyed<'a>, InvalidEvent>> = events
        .into_iter()
        .map(|b| b.and_then(|b| decode_keyed(format, b, max, keyer, &mut scratch)))
        .collect();
    engine.process_all(&decoded, out, each);
}

// ---- OCSF ----

/// Decodes one OCSF Authentication event (class 3002) into `ev`.
pub fn decode_ocsf_into<'a>(bytes: &'a [u8], ev: &mut AuthEvent<'a>) -> Result<(), InvalidEvent> {
    *ev = AuthEvent::default();
    let o: Ocsf<'a> = parse(bytes)?;

    let class = o.class_uid.or(o.type_uid.map(|t| t.div_euclid(100)));
    let activity = o.activity_id.or(o.type_uid.map(|t| t.rem_euclid(100)));
    match class {
        None => return Err(missing("class_uid")),
        Some(3002) => {}
        Some(c) => {
            return Err(InvalidEvent::new(
                InvalidReason::UnknownEventType,
                format!("class_uid {c} is not 3002 (Authentication)"),
            ));
        }
    }
    let meta = o.metadata.as_ref();
    let kind = match activity {
        None => return Err(missing("activity_id")),
        Some(1) => {
            let code = meta.and_then(|m| m.event_code.as_ref());
            if code.is_some_and(|c| is_session_create(&c.0)) {
                EventKind::SessionCreate
            } else {
                EventKind::Login
            }
        }
        Some(a) => {
            return Err(InvalidEvent::new(
                InvalidReason::UnknownEventType,
                format!(
                    "activity_id {a} ({}) is not 1 (Logon)",
                    ocsf_activity_name(a)
                ),
            ));
        }
    };

    let status = o.status.as_ref().map(|s| s.0.as_ref());
    let outcome = match (o.status_id, status) {
        (Some(1), _) => Some(Outcome::Success),
        (Some(2), _) => Some(Outcome::Failure),
        (_, Some(s)) if s.eq_ignore_ascii_case("success") => Some(Outcome::Success),
        (_, Some(s)) if s.eq_ignore_ascii_case("failure") => Some(Outcome::Failure),
        (None, None) => None,
        (id, s) => {
            return Err(InvalidEvent::new(
                InvalidReason::InvalidOutcome,
                format!(
                    "status_id {} / status `{}` is neither 1 (Success) nor 2 (Failure)",
                    id.map_or("absent".to_string(), |i| i.to_string()),
                    truncate(s.unwrap_or(""))
                ),
            ));
        }
    };
    if outcome.is_none() && kind == EventKind::Login {
        return Err(missing("status_id"));
    }

    let (ts, ts_field) = match (o.time, o.time_dt) {
        (Some(t), _) => (Some(t), "time"),
        (None, Some(s)) => (Some(TsValue::Text(s.0)), "time_dt"),
        (None, None) => (None, "time"),
    };
    let ts_ms = resolve_ts(ts.as_ref(), ts_field)?;

    let mut src = o.src_endpoint.unwrap_or_default();
    let Some(ip) = src.ip.take() else {
        return Err(missing("src_endpoint.ip"));
    };
    let Some(user) = o.user else {
        return Err(missing("user"));
    };
    let login = non_empty(user.name).or(non_empty(user.email_addr));
    let raw_user = RawUser {
        id: user.uid.and_then(|u| u.0),
        login,
        exists: o
            .status_detail
            .as_ref()
            .and_then(|s| user_exists_from(&s.0))
            .or_else(|| {
                o.status_code
                    .as_ref()
                    .and_then(|c| c.0.as_deref().and_then(user_exists_from))
            }),
    };
    check_account(
        &raw_user,
        "user has neither a non-empty name, email_addr nor uid",
    )?;

    let mut http = o.http_request.unwrap_or_default();
    let headers = http.http_headers.take().unwrap_or_default();
    let forwarded = http
        .x_forwarded_for
        .take()
        .or(src.intermediate_ips.take())
        .or(headers.xff.map(split_forwarded))
        .unwrap_or_default();

    let (event_id, correlation, product) = match o.metadata {
        Some(m) => (
            m.uid.or(m.original_event_uid).map(|s| s.0),
            m.correlation_uid.map(|s| s.0),
            m.product.and_then(|p| p.name).map(|s| s.0),
        ),
        None => (None, None, None),
    };
    let service = o
        .service
        .and_then(|s| s.name)
        .map(|s| s.0)
        .or(o.dst_endpoint.and_then(|d| d.svc_name).map(|s| s.0))
        .or(product);
    let trace_id = o
        .trace
        .and_then(|t| t.uid)
        .map(|s| s.0)
        .or(headers.trace)
        .or(correlation);

    let raw = &mut ev.raw;
    raw.kind = Some(Cow::Borrowed(kind.as_str()));
    raw.outcome = outcome.map(|o| Cow::Borrowed(o.as_str()));
    raw.ts = ts;
    raw.ip = Some(ip.0);
    raw.forwarded_for = forwarded;
    raw.user = Some(raw_user);
    raw.event_id = event_id;
    raw.service = service;
    raw.trace_id = trace_id;
    ev.kind = kind;
    ev.outcome = outcome;
    ev.ts_ms = ts_ms;
    Ok(())
}

fn ocsf_activity_name(a: i64) -> &'static str {
    match a {
        0 => "Unknown",
        1 => "Logon",
        2 => "Logoff",
        3 => "Authentication Ticket",
        4 => "Service Ticket Request",
        5 => "Service Ticket Renew",
        6 => "Preauth",
        7 => "Account Switch",
        99 => "Other",
        _ => "not an Authentication activity",
    }
}

#[derive(Deserialize)]
struct Ocsf<'a> {
    class_uid: Option<i64>,
    activity_id: Option<i64>,
    type_uid: Option<i64>,
    status_id: Option<i64>,
    #[serde(borrow)]
    status: Option<Str<'a>>,
    #[serde(borrow)]
    status_detail: Option<Str<'a>>,
    #[serde(borrow)]
    status_code: Option<Ident<'a>>,
    #[serde(borrow, default, deserialize_with = "ts_value")]
    time: Option<TsValue<'a>>,
    #[serde(borrow)]
    time_dt: Option<Str<'a>>,
    #[serde(borrow)]
    src_endpoint: Option<OcsfSrc<'a>>,
    #[serde(borrow)]
    dst_endpoint: Option<OcsfDst<'a>>,
    #[serde(borrow)]
    user: Option<OcsfUser<'a>>,
    #[serde(borrow)]
    service: Option<Named<'a>>,
    #[serde(borrow)]
    metadata: Option<OcsfMetadata<'a>>,
    #[serde(borrow)]
    http_request: Option<OcsfHttp<'a>>,
    #[serde(borrow)]
    trace: Option<OcsfTrace<'a>>,
}

#[derive(Deserialize, Default)]
struct OcsfSrc<'a> {
    #[serde(borrow)]
    ip: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "forwarded_list")]
    intermediate_ips: Option<Forwarded<'a>>,
}

#[derive(Deserialize)]
struct OcsfDst<'a> {
    #[serde(borrow)]
    svc_name: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct OcsfUser<'a> {
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    email_addr: Option<Str<'a>>,
    #[serde(borrow)]
    uid: Option<Ident<'a>>,
}

#[derive(Deserialize)]
struct OcsfMetadata<'a> {
    #[serde(borrow)]
    uid: Option<Str<'a>>,
    #[serde(borrow)]
    original_event_uid: Option<Str<'a>>,
    #[serde(borrow)]
    correlation_uid: Option<Str<'a>>,
    #[serde(borrow)]
    event_code: Option<Str<'a>>,
    #[serde(borrow)]
    product: Option<Named<'a>>,
}

#[derive(Deserialize, Default)]
struct OcsfHttp<'a> {
    #[serde(borrow, default, deserialize_with = "forwarded_list")]
    x_forwarded_for: Option<Forwarded<'a>>,
    #[serde(borrow)]
    http_headers: Option<Headers<'a>>,
}

#[derive(Deserialize)]
struct OcsfTrace<'a> {
    #[serde(borrow)]
    uid: Option<Str<'a>>,
}

/// `{"name": ...}`: OCSF `service`, `metadata.product`; ECS `service`.
#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow)]
    name: Option<Str<'a>>,
}

/// The headers atowatch reads out of OCSF `http_request.http_headers`
/// (`[{"name": ..., "value": ...}]`, names case-insensitive).
#[derive(Default)]
struct Headers<'a> {
    xff: Option<Cow<'a, str>>,
    trace: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    value: Option<Str<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Headers<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Headers<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of {name, value} HTTP headers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut h = Headers::default();
                let mut xray = None;
                while let Some(Header { name, value }) = seq.next_element::<Header<'a>>()? {
                    let (Some(name), Some(value)) = (name, value) else {
                        continue;
                    };
                    let name = name.0.trim();
                    if name.eq_ignore_ascii_case("x-forwarded-for") {
                        h.xff = Some(value.0);
                    } else if name.eq_ignore_ascii_case("traceparent") {
                        h.trace = traceparent_id(value.0).or(h.trace);
                    } else if name.eq_ignore_ascii_case("x-amzn-trace-id") {
                        xray = xray_root(value.0);
                    }
                }
                // W3C first: it is what the service itself propagates.
                h.trace = h.trace.or(xray);
                Ok(h)
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
fn traceparent_id(v: Cow<'_, str>) -> Option<Cow<'_, str>> {
    let mut parts = v.trim().split('-');
    let (_version, id) = (parts.next()?, parts.next()?);
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| sub_cow(&v, id))
}

/// The `Root=` of an AWS `X-Amzn-Trace-Id` (`Root=1-5759e988-bd86...;Parent=...`).
fn xray_root(v: Cow<'_, str>) -> Option<Cow<'_, str>> {
    let root = v
        .split(';')
        .find_map(|kv| kv.trim().strip_prefix("Root="))?
        .trim();
    (!root.is_empty()).then(|| sub_cow(&v, root))
}

/// `part` (a slice of `whole`) with `whole`'s lifetime when `whole` is borrowed.
fn sub_cow<'a>(whole: &Cow<'a, str>, part: &str) -> Cow<'a, str> {
    match whole {
        Cow::Borrowed(w) => {
            let start = part.as_ptr() as usize - w.as_ptr() as usize;
            Cow::Borrowed(&w[start..start + part.len()])
        }
        Cow::Owned(_) => Cow::Owned(part.to_string()),
    }
}

// ---- ECS ----

/// Decodes one ECS 8.x authentication event into `ev`.
pub fn decode_ecs_into<'a>(bytes: &'a [u8], ev: &mut AuthEvent<'a>) -> Result<(), InvalidEvent> {
    *ev = AuthEvent::default();
    let e: Ecs<'a> = parse(bytes)?;
    let event = e.event.unwrap_or_default();

    let Some(category) = event.category.or(e.event_category) else {
        return Err(missing("event.category"));
    };
    let types = event.r#type.or(e.event_type).unwrap_or_default();
    let action = event.action.or(e.event_action);
    let session_action = action.as_ref().is_some_and(|a| is_session_create(&a.0));
    let ends = types.has(Words::END) && !types.has(Words::START);
    let kind = if ends {
        return Err(InvalidEvent::new(
            InvalidReason::UnknownEventType,
            "event.type `end` (logoff, session end) is not a sign-in",
        ));
    } else if category.has(Words::AUTHENTICATION) {
        if session_action {
            EventKind::SessionCreate
        } else {
            EventKind::Login
        }
    } else if category.has(Words::SESSION) && (types.has(Words::START) || session_action) {
        EventKind::SessionCreate
    } else {
        return Err(InvalidEvent::new(
            InvalidReason::UnknownEventType,
            if category.has(Words::SESSION) {
                "event.category `session` without event.type `start` is not a session creation"
            } else {
                "event.category contains neither `authentication` nor `session`"
            },
        ));
    };

    let outcome = match event.outcome.or(e.event_outcome) {
        Some(o) if o.0 == "success" => Some(Outcome::Success),
        Some(o) if o.0 == "failure" => Some(Outcome::Failure),
        Some(o) => {
            return Err(InvalidEvent::new(
                InvalidReason::InvalidOutcome,
                format!(
                    "event.outcome `{}` is not success or failure",
                    truncate(&o.0)
                ),
            ));
        }
        None if kind == EventKind::Login => return Err(missing("event.outcome")),
        None => None,
    };

    let ts_ms = resolve_ts(e.timestamp.as_ref(), "@timestamp")?;

    let ip = e
        .client
        .and_then(|c| c.ip)
        .or(e.client_ip)
        .or(e.source.and_then(|s| s.ip))
        .or(e.source_ip);
    let Some(ip) = ip else {
        return Err(missing("source.ip"));
    };

    let dotted_user = e.user_name.is_some() || e.user_email.is_some() || e.user_id.is_some();
    let user = match e.user {
        Some(u) => u,
        None if dotted_user => EcsUser::default(),
        None => return Err(missing("user")),
    };
    let reason = event.reason.or(e.event_reason);
    let code = e.error.and_then(|er| er.code).or(e.error_code);
    let raw_user = RawUser {
        id: user.id.or(e.user_id).and_then(|u| u.0),
        login: non_empty(user.name.or(e.user_name)).or(non_empty(user.email.or(e.user_email))),
        exists: reason
            .as_ref()
            .and_then(|r| user_exists_from(&r.0))
            .or_else(|| code.and_then(|c| c.0.as_deref().and_then(user_exists_from))),
    };
    check_account(&raw_user, "user has neither a non-empty name, email nor id")?;

    let forwarded = e
        .network
        .and_then(|n| n.forwarded_ip)
        .or(e.network_forwarded_ip)
        .unwrap_or_default();

    let raw = &mut ev.raw;
    raw.kind = Some(Cow::Borrowed(kind.as_str()));
    raw.outcome = outcome.map(|o| Cow::Borrowed(o.as_str()));
    raw.ts = e.timestamp;
    raw.ip = Some(ip.0);
    raw.forwarded_for = forwarded;
    raw.user = Some(raw_user);
    raw.event_id = event.id.or(e.event_id).map(|s| s.0);
    raw.service = e
        .service
        .and_then(|s| s.name)
        .or(e.service_name)
        .map(|s| s.0);
    raw.trace_id = e.trace.and_then(|t| t.id).or(e.trace_id).map(|s| s.0);
    ev.kind = kind;
    ev.outcome = outcome;
    ev.ts_ms = ts_ms;
    Ok(())
}

/// An ECS document. Every field atowatch reads is accepted nested (`{"event": {"outcome":
/// ...}}`) and dotted (`{"event.outcome": ...}`); nested wins when both are present.
#[derive(Deserialize)]
struct Ecs<'a> {
    #[serde(rename = "@timestamp", borrow, default, deserialize_with = "ts_value")]
    timestamp: Option<TsValue<'a>>,
    #[serde(borrow)]
    event: Option<EcsEvent<'a>>,
    #[serde(borrow)]
    client: Option<EcsAddr<'a>>,
    #[serde(borrow)]
    source: Option<EcsAddr<'a>>,
    #[serde(borrow)]
    network: Option<EcsNetwork<'a>>,
    #[serde(borrow)]
    user: Option<EcsUser<'a>>,
    #[serde(borrow)]
    service: Option<Named<'a>>,
    #[serde(borrow)]
    trace: Option<EcsId<'a>>,
    #[serde(borrow)]
    error: Option<EcsError<'a>>,

    #[serde(rename = "event.category")]
    event_category: Option<Words>,
    #[serde(rename = "event.type")]
    event_type: Option<Words>,
    #[serde(rename = "event.action", borrow)]
    event_action: Option<Str<'a>>,
    #[serde(rename = "event.outcome", borrow)]
    event_outcome: Option<Str<'a>>,
    #[serde(rename = "event.id", borrow)]
    event_id: Option<Str<'a>>,
    #[serde(rename = "event.reason", borrow)]
    event_reason: Option<Str<'a>>,
    #[serde(rename = "client.ip", borrow)]
    client_ip: Option<Str<'a>>,
    #[serde(rename = "source.ip", borrow)]
    source_ip: Option<Str<'a>>,
    #[serde(rename = "network.forwarded_ip", borrow)]
    #[serde(default, deserialize_with = "forwarded_list")]
    network_forwarded_ip: Option<Forwarded<'a>>,
    #[serde(rename = "user.name", borrow)]
    user_name: Option<Str<'a>>,
    #[serde(rename = "user.email", borrow)]
    user_email: Option<Str<'a>>,
    #[serde(rename = "user.id", borrow)]
    user_id: Option<Ident<'a>>,
    #[serde(rename = "service.name", borrow)]
    service_name: Option<Str<'a>>,
    #[serde(rename = "trace.id", borrow)]
    trace_id: Option<Str<'a>>,
    #[serde(rename = "error.code", borrow)]
    error_code: Option<Ident<'a>>,
}

#[derive(Deserialize, Default)]
struct EcsEvent<'a> {
    category: Option<Words>,
    r#type: Option<Words>,
    #[serde(borrow)]
    action: Option<Str<'a>>,
    #[serde(borrow)]
    outcome: Option<Str<'a>>,
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    reason: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct EcsAddr<'a> {
    #[serde(borrow)]
    ip: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct EcsNetwork<'a> {
    #[serde(borrow, default, deserialize_with = "forwarded_list")]
    forwarded_ip: Option<Forwarded<'a>>,
}

#[derive(Deserialize, Default)]
struct EcsUser<'a> {
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    email: Option<Str<'a>>,
    #[serde(borrow)]
    id: Option<Ident<'a>>,
}

#[derive(Deserialize)]
struct EcsId<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct EcsError<'a> {
    #[serde(borrow)]
    code: Option<Ident<'a>>,
}

/// The ECS `event.category` / `event.type` values atowatch reads, from a string or a
/// list of strings, as bits.
#[derive(Clone, Copy, Default)]
struct Words(u8);

impl Words {
    const AUTHENTICATION: u8 = 1;
    const SESSION: u8 = 2;
    const START: u8 = 4;
    const END: u8 = 8;

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
    fn add(&mut self, w: &str) {
        for (name, bit) in [
            ("authentication", Words::AUTHENTICATION),
            ("session", Words::SESSION),
            ("start", Words::START),
            ("end", Words::END),
        ] {
            if w.eq_ignore_ascii_case(name) {
                self.0 |= bit;
            }
        }
    }
}

impl<'de> Deserialize<'de> for Words {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Words;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Words, E> {
                let mut w = Words::default();
                w.add(v);
                Ok(w)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Words, A::Error> {
                let mut w = Words::default();
                while let Some(s) = seq.next_element::<Str<'de>>()? {
                    w.add(&s.0);
                }
                Ok(w)
            }
        }
        d.deserialize_any(V)
    }
}

// ---- shared ----

fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, InvalidEvent> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| InvalidEvent::new(InvalidReason::InvalidJson, format!("not UTF-8: {e}")))?;
    let mut de = serde_json::Deserializer::from_str(text);
    match T::deserialize(&mut de).and_then(|v| de.end().map(|()| v)) {
        Ok(v) => Ok(v),
        Err(e) => Err(classify_json_error(bytes, e)),
    }
}

fn missing(field: &str) -> InvalidEvent {
    InvalidEvent::new(
        InvalidReason::MissingField,
        format!("missing field `{field}`"),
    )
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Event time checks, as the native decoder makes them.
fn resolve_ts(ts: Option<&TsValue<'_>>, field: &str) -> Result<i64, InvalidEvent> {
    let ms = match ts {
        None => return Err(missing(field)),
        Some(TsValue::Millis(ms)) => *ms,
        Some(TsValue::Text(s)) => parse_rfc3339_ms(s).ok_or_else(|| {
            InvalidEvent::new(
                InvalidReason::InvalidTimestamp,
                format!(
                    "{field} `{}` is not RFC 3339 or epoch milliseconds",
                    truncate(s)
                ),
            )
        })?,
    };
    if !(MIN_TS_MS..MAX_TS_MS).contains(&ms) {
        return Err(InvalidEvent::new(
            InvalidReason::TimestampOutOfRange,
            format!(
                "{field} {ms} ms is outside 2000-01-01..2100-01-01 (seconds sent as milliseconds?)"
            ),
        ));
    }
    Ok(ms)
}

fn check_account(u: &RawUser<'_>, detail: &'static str) -> Result<(), InvalidEvent> {
    let has = |v: &Option<Cow<'_, str>>| v.as_deref().is_some_and(|s| !s.is_empty());
    if has(&u.login) || has(&u.id) {
        Ok(())
    } else {
        Err(InvalidEvent::new(InvalidReason::MissingAccount, detail))
    }
}

fn non_empty(s: Option<Str<'_>>) -> Option<Cow<'_, str>> {
    s.map(|s| s.0).filter(|s| !s.is_empty())
}

/// Lower-case ASCII alphanumerics, every other run folded to one `_`, trimmed:
/// `"User does not exist"`, `USER_DOES_NOT_EXIST` and `user-does-not-exist` agree.
/// `None` when longer than any code compared against.
fn fold_code(s: &str, buf: &mut [u8; 40]) -> Option<usize> {
    let mut n = 0;
    let mut gap = false;
    for b in s.trim().bytes() {
        if b.is_ascii_alphanumeric() {
            if gap && n > 0 {
                *buf.get_mut(n)? = b'_';
                n += 1;
            }
            gap = false;
            *buf.get_mut(n)? = b.to_ascii_lowercase();
            n += 1;
        } else {
            gap = true;
        }
    }
    Some(n)
}

fn folds_to(s: &str, codes: &[&str]) -> bool {
    let mut buf = [0u8; 40];
    match fold_code(s, &mut buf) {
        Some(n) => codes.iter().any(|c| c.as_bytes() == &buf[..n]),
        None => false,
    }
}

const UNKNOWN_USER_CODES: &[&str] = &[
    "user_does_not_exist",
    "user_not_found",
    "unknown_user",
    "user_unknown",
    "unknown_user_name",
    "no_such_user",
    "invalid_user",
    "0xc0000064",
];

const KNOWN_USER_CODES: &[&str] = &[
    "invalid_credentials",
    "invalid_password",
    "wrong_password",
    "bad_password",
    "incorrect_password",
    "password_expired",
    "account_disabled",
    "account_locked",
    "account_locked_out",
    "0xc000006a",
    "0xc0000071",
    "0xc0000072",
    "0xc0000234",
];

/// Whether a failure reason code says the user exists; `None` when it says neither.
fn user_exists_from(code: &str) -> Option<bool> {
    if folds_to(code, UNKNOWN_USER_CODES) {
        Some(false)
    } else if folds_to(code, KNOWN_USER_CODES) {
        Some(true)
    } else {
        None
    }
}

fn is_session_create(s: &str) -> bool {
    folds_to(s, &["session_create", "session_created"])
}

/// A string field, borrowed when the JSON string has no escapes. Used as
/// `Option<Str>`: `null` and absence read as `None`.
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// A timestamp as the native `ts` reads it (RFC 3339 string or epoch milliseconds).
fn ts_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TsValue<'de>>, D::Error> {
    Option::<TsValue<'de>>::deserialize(d)
}

/// A forwarded-for list: a list of addresses (client first), or one string that may
/// hold several, comma-separated, as the `X-Forwarded-For` header does.
fn forwarded_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Forwarded<'de>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Forwarded<'de>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an IP address string or a list of them")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(split_forwarded(Cow::Borrowed(v))))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(split_forwarded(Cow::Owned(v.to_owned()))))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut fw = Forwarded::default();
            while let Some(v) = seq.next_element::<Option<Str<'de>>>()? {
                fw.push(v.map_or(Cow::Borrowed(""), |s| s.0));
            }
            Ok(Some(fw))
        }
    }
    d.deserialize_any(V)
}

fn split_forwarded(v: Cow<'_, str>) -> Forwarded<'_> {
    let mut fw = Forwarded::default();
    for part in v.split(',') {
        fw.push(sub_cow(&v, part.trim()));
    }
    fw
}

// ---- converters: native JSON to OCSF / ECS ----

/// The fields a converter needs, read once from a native line.
struct Native<'a> {
    ev: AuthEvent<'a>,
    forwarded: Vec<Value>,
    extra: Map<String, Value>,
}

fn read_native(json: &[u8]) -> Option<Native<'_>> {
    let ev = decode_native(json).ok()?;
    let Value::Object(mut extra) = serde_json::from_slice::<Value>(json).ok()? else {
        return None;
    };
    let forwarded = match extra.remove("forwarded_for") {
        Some(Value::Array(v)) => v,
        _ => Vec::new(),
    };
    extra.retain(|k, v| {
        !v.is_null()
            && matches!(
                k.as_str(),
                "function" | "user_agent" | "session_id" | "span_id" | "metadata"
            )
    });
    Some(Native {
        ev,
        forwarded,
        extra,
    })
}

/// The reason code a converted failure carries for `user.exists`.
fn exists_code(n: &Native<'_>, unknown: &'static str, known: &'static str) -> Option<&'static str> {
    if !n.ev.is_failure() {
        return None;
    }
    match n.ev.user_exists() {
        Some(false) => Some(unknown),
        Some(true) => Some(known),
        None => None,
    }
}

/// Turns one native event line into the equivalent OCSF 1.4 Authentication event
/// (class 3002, Logon), or `None` if the line is not a valid native event. Decoding
/// the result with [`decode_ocsf_into`] gives back the same event.
pub fn native_to_ocsf(json: &[u8]) -> Option<Vec<u8>> {
    let n = read_native(json)?;
    let ev = &n.ev;
    let raw = &ev.raw;
    let user = raw.user.as_ref()?;
    let mut o = json!({
        "class_uid": 3002,
        "class_name": "Authentication",
        "category_uid": 3,
        "category_name": "Identity & Access Management",
        "activity_id": 1,
        "activity_name": "Logon",
        "type_uid": 300201,
        "type_name": "Authentication: Logon",
        "severity_id": 1,
        "severity": "Informational",
        "time": ev.ts_ms,
        "time_dt": format_ts(ev.ts_ms),
    });
    let m = o.as_object_mut()?;
    if let Some(out) = ev.outcome {
        let (id, caption) = match out {
            Outcome::Success => (1, "Success"),
            Outcome::Failure => (2, "Failure"),
        };
        m.insert("status_id".into(), id.into());
        m.insert("status".into(), caption.into());
    }
    if let Some(code) = exists_code(&n, "USER_DOES_NOT_EXIST", "INVALID_CREDENTIALS") {
        m.insert("status_detail".into(), code.into());
    }

    let mut product = Map::new();
    if let Some(s) = &raw.service {
        product.insert("name".into(), s.as_ref().into());
    }
    product.insert("vendor_name".into(), "atowatch".into());
    let mut profiles = vec![Value::from("datetime")];
    if raw.trace_id.is_some() {
        profiles.push("trace".into());
    }
    let mut meta = Map::new();
    meta.insert("version".into(), "1.4.0".into());
    meta.insert("product".into(), product.into());
    meta.insert("profiles".into(), profiles.into());
    meta.insert("event_code".into(), ev.kind.as_str().into());
    if let Some(id) = &raw.event_id {
        meta.insert("uid".into(), id.as_ref().into());
    }
    m.insert("metadata".into(), meta.into());

    let mut u = Map::new();
    if let Some(l) = &user.login {
        u.insert("name".into(), l.as_ref().into());
    }
    if let Some(id) = &user.id {
        u.insert("uid".into(), id.as_ref().into());
    }
    u.insert("type_id".into(), 1.into());
    u.insert("type".into(), "User".into());
    m.insert("user".into(), u.into());

    let mut src = Map::new();
    src.insert("ip".into(), raw.ip.as_deref()?.into());
    if !n.forwarded.is_empty() {
        src.insert("intermediate_ips".into(), n.forwarded.clone().into());
    }
    m.insert("src_endpoint".into(), src.into());
    if let Some(s) = &raw.service {
        m.insert("service".into(), json!({ "name": s }));
    }
    if let Some(ua) = n.extra.get("user_agent") {
        m.insert("http_request".into(), json!({ "user_agent": ua }));
    }
    if let Some(sid) = n.extra.get("session_id") {
        m.insert("session".into(), json!({ "uid": sid }));
    }
    if let Some(t) = &raw.trace_id {
        let mut tr = Map::new();
        tr.insert("uid".into(), t.as_ref().into());
        if let Some(span) = n.extra.get("span_id") {
            tr.insert("span".into(), json!({ "uid": span }));
        }
        m.insert("trace".into(), tr.into());
    }
    let mut unmapped = Map::new();
    for k in ["function", "metadata"] {
        if let Some(v) = n.extra.get(k) {
            unmapped.insert(k.into(), v.clone());
        }
    }
    if !unmapped.is_empty() {
        m.insert("unmapped".into(), unmapped.into());
    }
    serde_json::to_vec(&o).ok()
}

/// Turns one native event line into the equivalent ECS 8.11 document (nested form), or
/// `None` if the line is not a valid native event. Decoding the result with
/// [`decode_ecs_into`] gives back the same event.
pub fn native_to_ecs(json: &[u8]) -> Option<Vec<u8>> {
    let n = read_native(json)?;
    let ev = &n.ev;
    let raw = &ev.raw;
    let user = raw.user.as_ref()?;
    let session = ev.kind == EventKind::SessionCreate;

    let mut event = Map::new();
    event.insert("kind".into(), "event".into());
    event.insert(
        "category".into(),
        json!([if session { "session" } else { "authentication" }]),
    );
    event.insert("type".into(), json!(["start"]));
    event.insert("action".into(), ev.kind.as_str().into());
    if let Some(o) = ev.outcome {
        event.insert("outcome".into(), o.as_str().into());
    }
    if let Some(id) = &raw.event_id {
        event.insert("id".into(), id.as_ref().into());
    }
    if let Some(r) = exists_code(&n, "user does not exist", "invalid credentials") {
        event.insert("reason".into(), r.into());
    }

    let mut o = Map::new();
    o.insert("@timestamp".into(), format_ts(ev.ts_ms).into());
    o.insert("ecs".into(), json!({ "version": "8.11.0" }));
    o.insert("event".into(), event.into());
    o.insert("source".into(), json!({ "ip": raw.ip.as_deref()? }));
    match n.forwarded.len() {
        0 => {}
        1 => {
            o.insert(
                "network".into(),
                json!({ "forwarded_ip": n.forwarded[0].clone() }),
            );
        }
        _ => {
            o.insert(
                "network".into(),
                json!({ "forwarded_ip": n.forwarded.clone() }),
            );
        }
    }
    let mut u = Map::new();
    if let Some(l) = &user.login {
        u.insert("name".into(), l.as_ref().into());
    }
    if let Some(id) = &user.id {
        u.insert("id".into(), id.as_ref().into());
    }
    o.insert("user".into(), u.into());
    if let Some(s) = &raw.service {
        o.insert("service".into(), json!({ "name": s }));
    }
    if let Some(t) = &raw.trace_id {
        o.insert("trace".into(), json!({ "id": t }));
    }
    if let Some(span) = n.extra.get("span_id") {
        o.insert("span".into(), json!({ "id": span }));
    }
    if let Some(ua) = n.extra.get("user_agent") {
        o.insert("user_agent".into(), json!({ "original": ua }));
    }
    if let Some(f) = n.extra.get("function") {
        o.insert("faas".into(), json!({ "name": f }));
    }
    let mut labels = Map::new();
    if let Some(sid) = n.extra.get("session_id") {
        labels.insert("session_id".into(), sid.clone());
    }
    if let Some(Value::Object(md)) = n.extra.get("metadata") {
        for (k, v) in md {
            if v.is_string() {
                labels.insert(k.clone(), v.clone());
            }
        }
    }
    if !labels.is_empty() {
        o.insert("labels".into(), labels.into());
    }
    serde_json::to_vec(&Value::Object(o)).ok()
}
