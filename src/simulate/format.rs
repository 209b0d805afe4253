//! Allocation-free writers for the hot output path. The writer is called once
//! per event (millions per run), so it appends raw bytes instead of going
//! through `fmt` or `serde_json::Value`.

use std::hash::{BuildHasherDefault, Hasher};

const HEX: &[u8; 16] = b"0123456789abcdef";

pub(crate) const DAY_MS: i64 = 86_400_000;

pub(crate) fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

pub(crate) fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Zero-padded to at least `width` digits; wider values are written in full.
pub(crate) fn push_padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut digits = 1;
    let mut x = v;
    while x >= 10 {
        x /= 10;
        digits += 1;
    }
    for _ in digits..width {
        out.push(b'0');
    }
    push_u64(out, v);
}

pub(crate) fn push_hex(out: &mut Vec<u8>, v: u64, nibbles: u32) {
    for k in (0..nibbles).rev() {
        out.push(HEX[((v >> (4 * k)) & 15) as usize]);
    }
}

/// Writes `s` as a quoted JSON string. Generated names are plain ASCII, but the
/// escaping keeps the output valid if a table ever grows a quote or control byte.
pub(crate) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if bytes.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            push_hex(out, u64::from(b), 2);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

use crate::event::civil_from_days;
pub(crate) use crate::event::days_from_civil;

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, computed with integers only so the output does
/// not depend on the platform's time zone database.
pub(crate) fn push_rfc3339_ms(out: &mut Vec<u8>, ms: i64) {
    let days = ms.div_euclid(DAY_MS);
    let rem = ms.rem_euclid(DAY_MS) as u64;
    let (y, m, d) = civil_from_days(days);
    push_padded(out, y.max(0) as u64, 4);
    out.push(b'-');
    push_padded(out, m as u64, 2);
    out.push(b'-');
    push_padded(out, d as u64, 2);
    out.push(b'T');
    push_padded(out, rem / 3_600_000, 2);
    out.push(b':');
    push_padded(out, rem / 60_000 % 60, 2);
    out.push(b':');
    push_padded(out, rem / 1000 % 60, 2);
    out.push(b'.');
    push_padded(out, rem % 1000, 3);
    out.push(b'Z');
}

pub(crate) fn rfc3339_ms(ms: i64) -> String {
    let mut v = Vec::with_capacity(24);
    push_rfc3339_ms(&mut v, ms);
    String::from_utf8(v).unwrap_or_default()
}

/// Human form for error messages and notes, e.g. `1h45m`, `21h`, `90s`.
pub(crate) fn human_duration(ms: i64) -> String {
    let s = ms / 1000;
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

/// SplitMix64 finaliser: per-event decorations (ids, epoch-vs-string ts, proxy
/// hops) are derived from it so they need no storage and no RNG draws.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Cheap hasher for internal lookup tables. Only used for lookups, never
/// iterated, so it cannot leak ordering into the output.
#[derive(Default, Clone, Copy)]
pub(crate) struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        mix64(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub(crate) type FxMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<Fx>>;
pub(crate) type FxSet<K> = std::collections::HashSet<K, BuildHasherDefault<Fx>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps_and_escapes() {
        let ms = days_from_civil(2026, 11, 21) * DAY_MS + 10 * 3_600_000 + 3 * 60_000 + 123;
        assert_eq!(rfc3339_ms(ms), "2026-11-21T10:03:00.123Z");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_ms(days_from_civil(2028, 2, 29) * DAY_MS),
            "2028-02-29T00:00:00.000Z"
        );
        let mut v = Vec::new();
        push_json_str(&mut v, "a\"b\\c\u{1}");
        assert_eq!(String::from_utf8(v).unwrap(), r#""a\"b\\c\u0001""#);
        let mut v = Vec::new();
        push_padded(&mut v, 42, 6);
        push_u64(&mut v, 0);
        push_i64(&mut v, -7);
        assert_eq!(String::from_utf8(v).unwrap(), "0000420-7");
        assert_eq!(human_duration(21 * 3_600_000), "21h");
        assert_eq!(human_duration(105 * 60_000), "1h45m");
    }
}
