//! The fast path for native events: a scanner for the shape nearly every event has
//! (an object of plain strings, a few numbers, `forwarded_for` and `user`), which fills
//! the same `RawEvent` serde would, borrowing every string.
//!
//! It only ever says "decoded" or "not mine": anything it is not sure of (a backslash
//! escape, a number where a string is expected, a syntax error, nesting beyond a bound)
//! sends the line to the serde decoder, which decides and words every error. So errors
//! and every unusual input behave exactly as before, and the differential tests in
//! `tests` below pin that whatever this accepts, serde accepts with the same result.
//!
//! Why: serde's per-field machinery and 8-byte string scanning were about 500 ns of a
//! 480-byte event, as much as detection itself.

use std::borrow::Cow;

use super::{Forwarded, RawEvent, RawUser, TsValue};

/// Deepest nesting skipped inside unknown fields before giving up to serde.
const MAX_DEPTH: u32 = 32;

struct Scan<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

/// Decodes `text` into `raw` (which must be default) when it has the common shape;
/// false when serde must decide (`raw` is then left for serde to overwrite).
pub(super) fn fill<'a>(text: &'a str, raw: &mut RawEvent<'a>) -> bool {
    let mut p = Scan {
        s: text,
        b: text.as_bytes(),
        i: 0,
    };
    p.event(raw).is_some()
}

impl<'a> Scan<'a> {
    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            // Every token starts above the space, so compact JSON takes one comparison.
            if c > b' ' || !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        if self.peek()? == c {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    fn event(&mut self, raw: &mut RawEvent<'a>) -> Option<()> {
        self.eat(b'{')?;
        self.members(|p, key| {
            match key {
                "type" => raw.kind = p.text()?,
                "outcome" => raw.outcome = p.text()?,
                "ts" => raw.ts = Some(p.ts()?),
                "ip" => raw.ip = p.text()?,
                "forwarded_for" => raw.forwarded_for = p.forwarded()?,
                "user" => raw.user = p.user()?,
                "event_id" => raw.event_id = p.text()?,
                "service" => raw.service = p.text()?,
                "trace_id" => raw.trace_id = p.text()?,
                _ => p.skip(0)?,
            }
            Some(())
        })?;
        self.ws();
        (self.i == self.b.len()).then_some(())
    }

    /// The members of an object whose `{` was read, through its `}`.
    #[inline]
    fn members(&mut self, mut each: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.sequence(b'}', |p| {
            p.eat(b'"')?;
            let key = p.string_body()?;
            p.eat(b':')?;
            p.ws();
            each(p, key)
        })
    }

    /// The elements of an array whose `[` was read, through its `]`.
    fn elements(&mut self, each: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.sequence(b']', each)
    }

    /// Comma-separated items up to and including `close`, which may follow at once.
    #[inline]
    fn sequence(&mut self, close: u8, mut each: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.ws();
        if self.peek()? == close {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            each(self)?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                c if c == close => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// After an opening quote: the string up to the closing one, which is consumed.
    /// Escapes and control characters are serde's to judge.
    #[inline]
    fn string_body(&mut self) -> Option<&'a str> {
        let start = self.i;
        let end = start + special(&self.b[start..])?;
        if self.b[end] != b'"' {
            return None;
        }
        self.i = end + 1;
        // SAFETY: `start` follows an opening quote and `end` is a closing one. Quotes are
        // ASCII, so both are character boundaries of the valid UTF-8 `s`, and `special`
        // found `end` inside `b`, which is `s`'s bytes.
        Some(unsafe { self.s.get_unchecked(start..end) })
    }

    /// A string (borrowed) or `null`.
    fn text(&mut self) -> Option<Option<Cow<'a, str>>> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                Some(Some(Cow::Borrowed(self.string_body()?)))
            }
            b'n' => self.literal(b"null").map(|_| None),
            _ => None,
        }
    }

    fn ts(&mut self) -> Option<TsValue<'a>> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                Some(TsValue::Text(Cow::Borrowed(self.string_body()?)))
            }
            b'-' | b'0'..=b'9' => {
                // Negative times are out of range anyway; serde words that (and reads
                // `-0` as a float, an error of its own).
                if self.peek()? == b'-' {
                    return None;
                }
                let digits = self.i;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
                let n = self.i - digits;
                // Plain integers of up to 18 digits fit an i64; leading zeros, fractions,
                // exponents and longer numbers are serde's.
                if n == 0
                    || n > 18
                    || (n > 1 && self.b[digits] == b'0')
                    || matches!(self.peek(), Some(b'.' | b'e' | b'E'))
                {
                    return None;
                }
                let v: i64 = self.s[digits..self.i].parse().ok()?;
                Some(TsValue::Millis(v))
            }
            _ => None,
        }
    }

    fn forwarded(&mut self) -> Option<Forwarded<'a>> {
        let mut fw = Forwarded::default();
        match self.peek()? {
            b'n' => {
                self.literal(b"null")?;
                return Some(fw);
            }
            b'[' => self.i += 1,
            _ => return None,
        }
        self.elements(|p| {
            let v = p.text()?;
            fw.push(v.unwrap_or(Cow::Borrowed("")));
            Some(())
        })?;
        Some(fw)
    }

    fn user(&mut self) -> Option<Option<RawUser<'a>>> {
        match self.peek()? {
            b'n' => return self.literal(b"null").map(|_| None),
            b'{' => self.i += 1,
            _ => return None,
        }
        let mut u = RawUser::default();
        self.members(|p, key| {
            match key {
                // Numeric ids are serde's (it writes them out as text).
                "id" => u.id = p.text()?,
                "login" => u.login = p.text()?,
                "exists" => {
                    u.exists = match p.peek()? {
                        b't' => Some(p.literal(b"true").map(|_| true)?),
                        b'f' => Some(p.literal(b"false").map(|_| false)?),
                        b'n' => p.literal(b"null").map(|_| None)?,
                        _ => return None,
                    }
                }
                _ => p.skip(1)?,
            }
            Some(())
        })?;
        Some(Some(u))
    }

    fn literal(&mut self, lit: &[u8]) -> Option<()> {
        if self.b[self.i..].starts_with(lit) {
            self.i += lit.len();
            Some(())
        } else {
            None
        }
    }

    /// Skips one JSON value, checking its syntax (which serde would also check).
    fn skip(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => {
                self.i += 1;
                self.string_body().map(|_| ())
            }
            b'{' => {
                self.i += 1;
                self.members(|p, _| p.skip(depth + 1))
            }
            b'[' => {
                self.i += 1;
                self.elements(|p| p.skip(depth + 1))
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// JSON's number grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let digits = |p: &mut Self| {
            let start = p.i;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.i += 1;
            }
            p.i - start
        };
        let start = self.i;
        let n = digits(self);
        if n == 0 || (n > 1 && self.b[start] == b'0') {
            return None;
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return None;
            }
        }
        Some(())
    }
}

/// `bytes` as text. Events are nearly always ASCII, which a check of 32 bytes a step
/// confirms in fewer instructions than std's 8-bytes-a-step one; anything else gets
/// std's full check (and its error).
#[inline]
pub(super) fn utf8(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    if is_ascii(bytes) {
        // SAFETY: ASCII is valid UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes)
    }
}

#[inline]
fn is_ascii(b: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let mut i = 0;
        while i + 32 <= b.len() {
            // SAFETY: `i + 32 <= b.len()`, so both 16-byte unaligned loads stay inside
            // `b`; SSE2 is baseline on x86_64.
            let high = unsafe {
                let p = b.as_ptr().add(i);
                let v = _mm_or_si128(_mm_loadu_si128(p.cast()), _mm_loadu_si128(p.add(16).cast()));
                _mm_movemask_epi8(v)
            };
            if high != 0 {
                return false;
            }
            i += 32;
        }
        b[i..].is_ascii()
    }
    #[cfg(not(target_arch = "x86_64"))]
    b.is_ascii()
}

/// The offset of the first `"`, `\` or control character (below 0x20), if any.
#[inline]
fn special(b: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let mut i = 0;
        while i + 16 <= b.len() {
            // SAFETY: `i + 16 <= b.len()`, so the 16-byte unaligned load stays inside
            // `b`; SSE2 is baseline on x86_64.
            let mask = unsafe {
                let v = _mm_loadu_si128(b.as_ptr().add(i).cast());
                let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
                let slash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                // Unsigned v <= 0x1f, i.e. max(v, 0x1f) == 0x1f.
                let ctrl =
                    _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f));
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, slash), ctrl))
            };
            if mask != 0 {
                return Some(i + mask.trailing_zeros() as usize);
            }
            i += 16;
        }
        b[i..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
            .map(|p| i + p)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)
    }
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeSeed;

    use super::super::{FillRaw, RawEvent};

    fn serde_fill(text: &str) -> Option<String> {
        let mut raw = RawEvent::default();
        let mut de = serde_json::Deserializer::from_str(text);
        FillRaw(&mut raw)
            .deserialize(&mut de)
            .and_then(|_| de.end())
            .ok()
            .map(|_| format!("{raw:?}"))
    }

    fn fast_fill(text: &str) -> Option<String> {
        let mut raw = RawEvent::default();
        super::fill(text, &mut raw).then(|| format!("{raw:?}"))
    }

    /// Shapes a producer may send, well-formed, from the common to the odd.
    const BASES: &[&str] = &[
        r#"{"type":"user.login","outcome":"success","ts":"2026-11-21T00:00:00.709Z","ip":"10.0.3.23","forwarded_for":["206.79.207.237","10.20.0.6"],"user":{"id":"u-000588","login":"judy.miller@example.com"},"event_id":"e-7-000000000","service":"mobile-bff","function":"mobile-bff-login","user_agent":"Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36","trace_id":"1d3bf0b25ad714929455703d879ad975","span_id":"6b06f5b09fa5b74d","metadata":{"region":"us-west-2"}}"#,
        r#" { "type" : "session.create" , "ts" : 1790000000000 , "ip" : "2a02:8219::1" , "user" : { "id" : "42" , "exists" : false , "x" : [1, -2.5e3, true, null, {"a": []}] } , "forwarded_for" : null , "trace_id" : null }  "#,
        r#"{"type":"user.login","outcome":"failure","ts":"2026-11-21T00:00:00Z","ip":"1.2.3.4","user":{"login":"ünïcødé@例え.jp","exists":true},"forwarded_for":[null,"5.6.7.8"],"metadata":{"n":0,"f":0.5,"e":1E+2,"deep":[[[{"k":"v"}]]]}}"#,
        r#"{"type":"user.login","type":"session.create","user":null,"ts":0,"ip":"x"}"#,
        "{}",
        r#"{"ip":"1.2.3.4","user":{"id":7},"ts":"a\"b"}"#,
        r#"{"ip":"1.2.3.4","metadata":"tab\there","ts":-0}"#,
    ];

    #[test]
    fn every_base_shape_decodes_as_serde_does_or_is_left_to_serde() {
        for b in BASES {
            if let Some(f) = fast_fill(b) {
                assert_eq!(Some(f), serde_fill(b), "{b}");
            }
        }
        assert!(
            fast_fill(BASES[0]).is_some(),
            "the common shape takes the fast path"
        );
        assert!(fast_fill(BASES[1]).is_some());
        assert!(fast_fill(BASES[2]).is_some());
    }

    /// Random edits of each shape (deleting, inserting and replacing bytes that matter to
    /// JSON): whatever the fast path accepts, serde accepts with the same fields.
    #[test]
    fn what_the_fast_path_accepts_serde_accepts_identically() {
        const ALPHABET: &[u8] = b"{}[]\",:\\ \t\n0123456789-+.eEtrufalsn\x01\x7f";
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |n: usize| {
            seed = crate::hash::mix64(seed.wrapping_add(0x9e37_79b9_7f4a_7c15));
            (seed % n as u64) as usize
        };
        let (mut accepted, mut left) = (0, 0);
        for _ in 0..40_000 {
            let mut b: Vec<u8> = BASES[rnd(BASES.len())].as_bytes().to_vec();
            for _ in 0..1 + rnd(3) {
                let at = rnd(b.len() + 1);
                match rnd(3) {
                    0 if at < b.len() => {
                        b.remove(at);
                    }
                    1 if at < b.len() => b[at] = ALPHABET[rnd(ALPHABET.len())],
                    _ => b.insert(at, ALPHABET[rnd(ALPHABET.len())]),
                }
            }
            let Ok(text) = std::str::from_utf8(&b) else {
                continue;
            };
            match fast_fill(text) {
                Some(f) => {
                    accepted += 1;
                    assert_eq!(Some(f), serde_fill(text), "{text}");
                }
                None => left += 1,
            }
        }
        assert!(accepted > 1000 && left > 1000, "{accepted} {left}");
    }

    proptest::proptest! {
        /// The ASCII shortcut answers as std does, wherever the non-ASCII byte sits
        /// relative to the 32-byte steps (biased towards ASCII, the case it decides).
        #[test]
        fn utf8_check_agrees_with_std(
            mut b in proptest::collection::vec(0u8..0x80, 0..100),
            odd in proptest::option::of((0usize..100, 0x80u8..=0xff)),
        ) {
            if let Some((at, c)) = odd {
                let at = at.min(b.len());
                b.insert(at, c);
            }
            let ours = super::utf8(&b).map_err(|e| e.to_string());
            let std = std::str::from_utf8(&b).map_err(|e| e.to_string());
            proptest::prop_assert_eq!(ours, std);
        }
    }
}
