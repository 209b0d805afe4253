//! Authentication events: the native JSON schema and its decoder.
//!
//! Decoding borrows from the input buffer (`Cow::Borrowed` unless a string has escapes),
//! so the hot path allocates nothing for a well-formed event. Every way an event can be
//! rejected has a stable reason name: it is a metric label, a dead-letter header and a
//! line in the replay summary.

mod fast;

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Earliest and latest plausible event times. Anything outside is a broken clock or a
/// unit mistake (seconds sent as milliseconds), not an authentication that happened.
pub const MIN_TS_MS: i64 = 946_684_800_000; // 2000-01-01T00:00:00Z
pub const MAX_TS_MS: i64 = 4_102_444_800_000; // 2100-01-01T00:00:00Z

/// How many of the right-most `forwarded_for` entries are kept. Client resolution walks
/// from the right and stops at the first untrusted hop, so deeper entries never matter
/// unless more than this many proxies are trusted in a row.
pub const MAX_FORWARDED: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum EventKind {
    #[default]
    Login,
    SessionCreate,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Login => "user.login",
            EventKind::SessionCreate => "session.create",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// Why an event was rejected. The names are part of the interface: metrics, dead-letter
/// headers and summaries use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InvalidReason {
    /// Not JSON at all, truncated, or not UTF-8.
    InvalidJson,
    /// Valid JSON, but not an object.
    NotAnObject,
    /// A known field holds the wrong JSON type (e.g. `"user": "alice"`).
    WrongFieldType,
    /// `type`, `ts`, `ip`, `user`, or `outcome` on a login, is absent.
    MissingField,
    /// `type` is neither `user.login` nor `session.create`.
    UnknownEventType,
    /// `outcome` is neither `success` nor `failure`.
    InvalidOutcome,
    /// `ts` is not RFC 3339 or epoch milliseconds.
    InvalidTimestamp,
    /// `ts` is before 2000 or after 2099.
    TimestampOutOfRange,
    /// `ts` jumps far ahead of the stream and nothing after it confirms the jump.
    TimestampJump,
    /// `ip` or a `forwarded_for` hop that had to be read is not an IP address.
    InvalidIp,
    /// `user` has neither a non-empty `login` nor `id`.
    MissingAccount,
    /// The message is larger than `input.max_event_bytes`.
    Oversized,
}

impl InvalidReason {
    pub const ALL: [InvalidReason; 12] = [
        InvalidReason::InvalidJson,
        InvalidReason::NotAnObject,
        InvalidReason::WrongFieldType,
        InvalidReason::MissingField,
        InvalidReason::UnknownEventType,
        InvalidReason::InvalidOutcome,
        InvalidReason::InvalidTimestamp,
        InvalidReason::TimestampOutOfRange,
        InvalidReason::TimestampJump,
        InvalidReason::InvalidIp,
        InvalidReason::MissingAccount,
        InvalidReason::Oversized,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::InvalidJson => "invalid_json",
            InvalidReason::NotAnObject => "not_an_object",
            InvalidReason::WrongFieldType => "wrong_field_type",
            InvalidReason::MissingField => "missing_field",
            InvalidReason::UnknownEventType => "unknown_event_type",
            InvalidReason::InvalidOutcome => "invalid_outcome",
            InvalidReason::InvalidTimestamp => "invalid_timestamp",
            InvalidReason::TimestampOutOfRange => "timestamp_out_of_range",
            InvalidReason::TimestampJump => "timestamp_jump",
            InvalidReason::InvalidIp => "invalid_ip",
            InvalidReason::MissingAccount => "missing_account",
            InvalidReason::Oversized => "oversized",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected event: the reason, and a human detail for logs and dead-letter headers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct InvalidEvent {
    pub reason: InvalidReason,
    pub detail: String,
}

impl InvalidEvent {
    pub fn new(reason: InvalidReason, detail: impl Into<String>) -> Self {
        InvalidEvent {
            reason,
            detail: detail.into(),
        }
    }
}

/// A decoded event, borrowing from the input. Field meanings: `../shared/design.md`.
#[derive(Clone, Debug, Default)]
pub struct RawEvent<'a> {
    pub kind: Option<Cow<'a, str>>,
    pub outcome: Option<Cow<'a, str>>,
    pub ts: Option<TsValue<'a>>,
    pub ip: Option<Cow<'a, str>>,
    pub forwarded_for: Forwarded<'a>,
    pub user: Option<RawUser<'a>>,
    pub event_id: Option<Cow<'a, str>>,
    pub service: Option<Cow<'a, str>>,
    pub trace_id: Option<Cow<'a, str>>,
    // `function`, `user_agent`, `session_id`, `span_id` and `metadata` are accepted and
    // not kept: no rule reads them, and every field kept is copied with each event.
}

#[derive(Clone, Debug, Default)]
pub struct RawUser<'a> {
    pub id: Option<Cow<'a, str>>,
    pub login: Option<Cow<'a, str>>,
    pub exists: Option<bool>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TsValue<'a> {
    Text(Cow<'a, str>),
    Millis(i64),
}

/// The right-most `MAX_FORWARDED` entries of `forwarded_for`, without allocating.
#[derive(Clone, Debug, Default)]
pub struct Forwarded<'a> {
    ring: [Option<Cow<'a, str>>; MAX_FORWARDED],
    total: usize,
}

impl<'a> Forwarded<'a> {
    pub fn push(&mut self, v: Cow<'a, str>) {
        self.ring[self.total % MAX_FORWARDED] = Some(v);
        self.total += 1;
    }
    pub fn len(&self) -> usize {
        self.total.min(MAX_FORWARDED)
    }
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
    /// Entries from right-most (closest proxy) to left-most kept.
    pub fn iter_rev(&self) -> impl Iterator<Item = &str> {
        let n = self.len();
        (0..n).map(move |i| {
            let idx = (self.total - 1 - i) % MAX_FORWARDED;
            self.ring[idx].as_deref().unwrap_or("")
        })
    }
}

/// A fully validated event: what every detector sees.
#[derive(Clone, Debug, Default)]
pub struct AuthEvent<'a> {
    pub kind: EventKind,
    /// `None` only for `session.create`, which counts as a successful sign-in.
    pub outcome: Option<Outcome>,
    pub ts_ms: i64,
    pub raw: RawEvent<'a>,
}

impl AuthEvent<'_> {
    /// True for a successful login and for `session.create`: both mean someone got in.
    pub fn is_success(&self) -> bool {
        !self.is_failure()
    }
    pub fn is_failure(&self) -> bool {
        self.outcome == Some(Outcome::Failure)
    }
    pub fn is_login(&self) -> bool {
        self.kind == EventKind::Login
    }
    pub fn user_exists(&self) -> Option<bool> {
        self.raw.user.as_ref().and_then(|u| u.exists)
    }
    pub fn trace_id(&self) -> Option<&str> {
        self.raw.trace_id.as_deref()
    }
    pub fn service(&self) -> Option<&str> {
        self.raw.service.as_deref()
    }
}

/// Parses one JSON object into a validated event.
pub fn decode_native(bytes: &[u8]) -> Result<AuthEvent<'_>, InvalidEvent> {
    let mut ev = AuthEvent::default();
    decode_native_into(bytes, &mut ev)?;
    Ok(ev)
}

/// Decodes into `ev` in place. An event is a few hundred bytes of mostly `Option<Cow>`,
/// and returning it through each layer of `Result` copies it every time; the hot path
/// decodes into one it owns instead.
pub fn decode_native_into<'a>(bytes: &'a [u8], ev: &mut AuthEvent<'a>) -> Result<(), InvalidEvent> {
    *ev = AuthEvent::default();
    // One UTF-8 check over the whole line lets serde_json skip its check of every string.
    let text = fast::utf8(bytes)
        .map_err(|e| InvalidEvent::new(InvalidReason::InvalidJson, format!("not UTF-8: {e}")))?;
    if !fast::fill(text, &mut ev.raw) {
        ev.raw = RawEvent::default();
        let mut de = serde_json::Deserializer::from_str(text);
        if let Err(e) = FillRaw(&mut ev.raw)
            .deserialize(&mut de)
            .and_then(|_| de.end())
        {
            return Err(classify_json_error(bytes, e));
        }
    }
    let (kind, outcome, ts_ms) = validate(&ev.raw)?;
    ev.kind = kind;
    ev.outcome = outcome;
    ev.ts_ms = ts_ms;
    Ok(())
}

/// Syntax errors are `invalid_json`, a type error at the top is `not_an_object`, one
/// inside is `wrong_field_type`. Shared by every input format.
pub(crate) fn classify_json_error(bytes: &[u8], e: serde_json::Error) -> InvalidEvent {
    use serde_json::error::Category;
    let reason = match e.classify() {
        Category::Io | Category::Syntax | Category::Eof => InvalidReason::InvalidJson,
        Category::Data => {
            let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
            if first != Some(&b'{') {
                InvalidReason::NotAnObject
            } else {
                InvalidReason::WrongFieldType
            }
        }
    };
    InvalidEvent::new(reason, e.to_string())
}

fn validate(raw: &RawEvent<'_>) -> Result<(EventKind, Option<Outcome>, i64), InvalidEvent> {
    let kind = match raw.kind.as_deref() {
        Some("user.login") => EventKind::Login,
        Some("session.create") => EventKind::SessionCreate,
        Some(other) => {
            return Err(InvalidEvent::new(
                InvalidReason::UnknownEventType,
                format!(
                    "type `{}` is not user.login or session.create",
                    truncate(other)
                ),
            ));
        }
        None => return Err(missing("type")),
    };
    let outcome = match (kind, raw.outcome.as_deref()) {
        (_, Some("success")) => Some(Outcome::Success),
        (_, Some("failure")) => Some(Outcome::Failure),
        (_, Some(other)) => {
            return Err(InvalidEvent::new(
                InvalidReason::InvalidOutcome,
                format!("outcome `{}` is not success or failure", truncate(other)),
            ));
        }
        (EventKind::Login, None) => return Err(missing("outcome")),
        (EventKind::SessionCreate, None) => None,
    };
    let ts_ms = match &raw.ts {
        None => return Err(missing("ts")),
        Some(TsValue::Millis(ms)) => *ms,
        Some(TsValue::Text(s)) => parse_rfc3339_ms(s).ok_or_else(|| {
            InvalidEvent::new(
                InvalidReason::InvalidTimestamp,
                format!("ts `{}` is not RFC 3339 or epoch milliseconds", truncate(s)),
            )
        })?,
    };
    if !(MIN_TS_MS..MAX_TS_MS).contains(&ts_ms) {
        return Err(InvalidEvent::new(
            InvalidReason::TimestampOutOfRange,
            format!(
                "ts {ts_ms} ms is outside 2000-01-01..2100-01-01 (seconds sent as milliseconds?)"
            ),
        ));
    }
    if raw.ip.is_none() {
        return Err(missing("ip"));
    }
    match &raw.user {
        None => return Err(missing("user")),
        Some(u) => {
            let has = |v: &Option<Cow<'_, str>>| v.as_deref().is_some_and(|s| !s.is_empty());
            if !has(&u.login) && !has(&u.id) {
                return Err(InvalidEvent::new(
                    InvalidReason::MissingAccount,
                    "user has neither a non-empty login nor id",
                ));
            }
        }
    }
    Ok((kind, outcome, ts_ms))
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

/// RFC 3339 to epoch milliseconds. The common shape (`2026-11-21T10:03:00.123Z`) is
/// parsed by hand because chrono's general parser costs more than the whole detection
/// step; anything unusual falls back to chrono.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        && b[13] == b':'
        && b[16] == b':'
    {
        let d = |i: usize| -> Option<i64> {
            let c = b[i];
            c.is_ascii_digit().then_some((c - b'0') as i64)
        };
        let year = d(0)? * 1000 + d(1)? * 100 + d(2)? * 10 + d(3)?;
        let month = d(5)? * 10 + d(6)?;
        let day = d(8)? * 10 + d(9)?;
        let hour = d(11)? * 10 + d(12)?;
        let min = d(14)? * 10 + d(15)?;
        let sec = d(17)? * 10 + d(18)?;
        let mut i = 19;
        let mut millis = 0i64;
        if b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 3 {
                    millis = millis * 10 + (b[i] - b'0') as i64;
                }
                i += 1;
            }
            if i == start {
                return None;
            }
            for _ in (i - start)..3 {
                millis *= 10;
            }
        }
        let offset_min = match b.get(i) {
            Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
            Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
                let oh = d(i + 1)? * 10 + d(i + 2)?;
                let om = d(i + 4)? * 10 + d(i + 5)?;
                if oh > 23 || om > 59 {
                    return None;
                }
                let m = oh * 60 + om;
                if sign == b'+' { m } else { -m }
            }
            _ => return fallback_rfc3339(s),
        };
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || min > 59
            || sec > 60
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + min * 60 + sec.min(59) - offset_min * 60;
        return Some(secs * 1000 + millis);
    }
    fallback_rfc3339(s)
}

fn fallback_rfc3339(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Howard Hinnant's days-from-civil: days since 1970-01-01.
pub(crate) const fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of `days_from_civil`: (year, month, day) of a day since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Formats epoch milliseconds as `2026-11-21T10:03:00.123Z` (or without millis when 0).
pub fn format_ts(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s) = (sod / 3600, (sod % 3600) / 60, sod % 60);
    if millis == 0 {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{millis:03}Z")
    }
}

// ---- serde: hand-written visitors so the decoder borrows and never builds a Value ----

/// Fills a `RawEvent` in place (see `decode_native_into`).
struct FillRaw<'r, 'de>(&'r mut RawEvent<'de>);

impl<'de> DeserializeSeed<'de> for FillRaw<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FillRaw<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an authentication event object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ev = self.0;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key.0.as_ref() {
                "type" => ev.kind = map.next_value::<Text<'de>>()?.0,
                "outcome" => ev.outcome = map.next_value::<Text<'de>>()?.0,
                "ts" => ev.ts = Some(map.next_value::<TsValue<'de>>()?),
                "ip" => ev.ip = map.next_value::<Text<'de>>()?.0,
                "forwarded_for" => ev.forwarded_for = map.next_value::<Forwarded<'de>>()?,
                "user" => ev.user = map.next_value::<Option<RawUser<'de>>>()?,
                "event_id" => ev.event_id = map.next_value::<Text<'de>>()?.0,
                "service" => ev.service = map.next_value::<Text<'de>>()?.0,
                "trace_id" => ev.trace_id = map.next_value::<Text<'de>>()?.0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// An optional string field; `null` reads as absent. serde's own `Cow<str>` impl always
/// copies, so this visitor borrows whenever the JSON string has no escapes.
struct Text<'a>(Option<Cow<'a, str>>);

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or null")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Borrowed(v))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Owned(v.to_owned()))))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Text(None))
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

/// A map key, borrowed when possible.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_str(TextVisitor)?.0 {
            Some(k) => Ok(Key(k)),
            None => Err(de::Error::custom("null key")),
        }
    }
}

impl<'de> Deserialize<'de> for RawUser<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawUser<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a user object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut u = RawUser::default();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    match key.0.as_ref() {
                        "id" => u.id = map.next_value::<Ident<'de>>()?.0,
                        "login" => u.login = map.next_value::<Ident<'de>>()?.0,
                        "exists" => u.exists = map.next_value::<Option<bool>>()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(u)
            }
        }
        d.deserialize_map(V)
    }
}

/// A user identifier: a string, or an integer (many user tables key on numbers). Shared
/// with the OCSF and ECS decoders (`formats`).
pub(crate) struct Ident<'a>(pub(crate) Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Ident<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Ident<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or integer identifier")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Ident(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Ident(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Ident(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Ident(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Ident(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for TsValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TsValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 string or integer epoch milliseconds")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(TsValue::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(TsValue::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(TsValue::Millis(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(TsValue::Millis(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Forwarded<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Forwarded<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of IP address strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut fw = Forwarded::default();
                while let Some(v) = seq.next_element::<Text<'de>>()? {
                    fw.push(v.0.unwrap_or(Cow::Borrowed("")));
                }
                Ok(fw)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Forwarded::default())
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_fast_path_agrees_with_chrono() {
        for s in [
            "2026-11-21T10:03:00Z",
            "2026-11-21T10:03:00.123Z",
            "2026-11-21T10:03:00.1Z",
            "2026-11-21T10:03:00.123456Z",
            "2024-02-29T23:59:59.999+02:00",
            "2000-01-01T00:00:00-05:30",
            "2099-12-31t23:59:59z",
        ] {
            let want = chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis();
            assert_eq!(parse_rfc3339_ms(s), Some(want), "{s}");
        }
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-21T10:03:00",
            "yesterday",
            "2026-11-21T10:03:00.Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn format_ts_round_trips() {
        for ms in [
            MIN_TS_MS,
            1_763_719_380_123,
            1_763_719_380_000,
            MAX_TS_MS - 1,
        ] {
            assert_eq!(parse_rfc3339_ms(&format_ts(ms)), Some(ms));
        }
    }

    #[test]
    fn forwarded_keeps_rightmost_entries() {
        let mut f = Forwarded::default();
        for i in 0..(MAX_FORWARDED + 3) {
            f.push(Cow::Owned(i.to_string()));
        }
        let v: Vec<&str> = f.iter_rev().collect();
        assert_eq!(v.len(), MAX_FORWARDED);
        assert_eq!(v[0], (MAX_FORWARDED + 2).to_string());
    }
}
