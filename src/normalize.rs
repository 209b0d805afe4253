//! From a validated event to the keys detectors count on: the client IP (through trusted
//! proxies), its aggregation key (IPv6 to a prefix), and the account key.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::event::{AuthEvent, InvalidEvent, InvalidReason};

/// An IPv4 address, or an IPv6 prefix of at most 64 bits, in one word. A million
/// IP slots make every byte count, and a prefix longer than /64 is never wanted: an
/// attacker holds a whole /64 and rotates through it for free.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpKey {
    /// The IPv4 address, or the top 64 bits of the IPv6 address masked to `prefix`.
    bits: u64,
    /// 0 for IPv4, else the IPv6 prefix length (1..=64).
    prefix: u8,
}

impl IpKey {
    #[inline]
    pub fn from_addr(addr: IpAddr, v6_prefix: u8) -> IpKey {
        match addr {
            IpAddr::V4(v4) => IpKey {
                bits: u32::from(v4) as u64,
                prefix: 0,
            },
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey {
                    bits: u32::from(v4) as u64,
                    prefix: 0,
                },
                None => {
                    let p = v6_prefix.clamp(1, 64);
                    let top = (u128::from(v6) >> 64) as u64;
                    IpKey {
                        bits: top & (u64::MAX << (64 - p as u32)),
                        prefix: p,
                    }
                }
            },
        }
    }
    pub fn is_v4(&self) -> bool {
        self.prefix == 0
    }
    #[inline]
    pub fn hash(&self) -> u64 {
        crate::hash::hash_u128(((self.bits as u128) << 8) | self.prefix as u128)
    }
}

impl fmt::Display for IpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_v4() {
            write!(f, "{}", Ipv4Addr::from(self.bits as u32))
        } else {
            write!(
                f,
                "{}/{}",
                Ipv6Addr::from((self.bits as u128) << 64),
                self.prefix
            )
        }
    }
}

/// IPv4 inside IPv6 (`::ffff:a.b.c.d`), how `Cidr` compares both families alike.
const V4_MAPPED: u128 = 0xffff_u128 << 32;

fn prefix_mask(p: u8) -> u128 {
    if p == 0 {
        0
    } else {
        u128::MAX << (128 - p as u32)
    }
}

/// A CIDR block, e.g. `10.0.0.0/8` or `2001:db8::/32`. A bare address is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    bits: u128,
    mask: u128,
    text_prefix: u8,
    v4: bool,
}

impl Cidr {
    pub fn contains(&self, addr: IpAddr) -> bool {
        let (bits, v4) = match addr {
            IpAddr::V4(a) => (V4_MAPPED | u32::from(a) as u128, true),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(a4) => (V4_MAPPED | u32::from(a4) as u128, true),
                None => (u128::from(a), false),
            },
        };
        v4 == self.v4 && bits & self.mask == self.bits
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len: u8 = match len {
            Some(l) => l
                .trim()
                .parse()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("`{s}`: prefix length must be 0..={max}"))?,
            None => max,
        };
        let (bits, mask, v4) = match addr {
            IpAddr::V4(a) => (
                V4_MAPPED | u32::from(a) as u128,
                (u128::MAX << 32) | prefix_mask(len + 96) & 0xffff_ffff,
                true,
            ),
            IpAddr::V6(a) => (u128::from(a), prefix_mask(len), false),
        };
        if bits & mask != bits {
            return Err(format!("`{s}` has host bits set below its prefix"));
        }
        Ok(Cidr {
            bits,
            mask,
            text_prefix: len,
            v4,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.v4 {
            write!(
                f,
                "{}/{}",
                Ipv4Addr::from(self.bits as u32),
                self.text_prefix
            )
        } else {
            write!(f, "{}/{}", Ipv6Addr::from(self.bits), self.text_prefix)
        }
    }
}

/// A small list of CIDRs; linear scan beats anything cleverer at the sizes configs hold.
#[derive(Clone, Debug, Default)]
pub struct CidrSet {
    all: Vec<Cidr>,
    /// The IPv4 blocks again as `(bits, mask)` words: every event's address is checked
    /// against the trusted proxies, and nearly all are IPv4 (an IPv4 address only ever
    /// matches an IPv4 block).
    v4: Vec<(u32, u32)>,
}

impl CidrSet {
    pub fn new(all: Vec<Cidr>) -> Self {
        let v4 = all
            .iter()
            .filter(|c| c.v4)
            .map(|c| (c.bits as u32, c.mask as u32))
            .collect();
        CidrSet { all, v4 }
    }
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
    #[inline]
    pub fn contains(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().any(|&(bits, mask)| a & mask == bits)
            }
            IpAddr::V6(_) => self.all.iter().any(|c| c.contains(addr)),
        }
    }
}

/// Dotted-quad IPv4, strictly (no leading zeros, as std): the common case, parsed in a
/// few nanoseconds instead of going through std's general parser. One pass, one test
/// per byte: it runs twice per event behind a proxy (the proxy, then the client).
#[inline]
fn parse_v4_fast(s: &[u8]) -> Option<Ipv4Addr> {
    if s.len() < 7 || s.len() > 15 {
        return None;
    }
    let (mut addr, mut octet, mut digits, mut dots) = (0u32, 0u32, 0u32, 0u32);
    for &c in s {
        let d = c.wrapping_sub(b'0');
        if d < 10 {
            // A digit after a leading 0 is a leading zero; a fourth digit is too many.
            if digits == 3 || (digits == 1 && octet == 0) {
                return None;
            }
            octet = octet * 10 + d as u32;
            digits += 1;
        } else if c == b'.' && digits > 0 && octet <= 255 && dots < 3 {
            addr = (addr << 8) | octet;
            (octet, digits, dots) = (0, 0, dots + 1);
        } else {
            return None;
        }
    }
    (dots == 3 && digits > 0 && octet <= 255).then(|| Ipv4Addr::from((addr << 8) | octet))
}

/// Hex digit values by byte, 0xff for anything else: one load per character where a
/// three-way range match took several branches.
static HEX: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// IPv6 as hex groups with at most one `::`, or `None` when std must decide (an
/// embedded IPv4 tail, a zone, anything malformed). std's parser tries an IPv4 tail at
/// every group: ~1,700 instructions an address (callgrind).
#[inline]
fn parse_v6_fast(s: &[u8]) -> Option<Ipv6Addr> {
    if s.len() < 2 || s.len() > 39 {
        return None;
    }
    // Groups before the `::` (or all of them) and after it.
    let mut groups = [0u16; 8];
    let (mut n, mut gap_at) = (0usize, None);
    let mut i = 0;
    if s[0] == b':' {
        if s[1] != b':' {
            return None;
        }
        gap_at = Some(0);
        i = 2;
    }
    while i < s.len() {
        let mut v = 0u16;
        let start = i;
        while i < s.len() {
            let d = HEX[s[i] as usize];
            if d == 0xff {
                break;
            }
            if i - start == 4 {
                return None;
            }
            v = (v << 4) | d as u16;
            i += 1;
        }
        if i == start || n == 8 {
            return None;
        }
        groups[n] = v;
        n += 1;
        if i == s.len() {
            break;
        }
        if s[i] != b':' || i + 1 == s.len() {
            return None;
        }
        i += 1;
        if s[i] == b':' {
            if gap_at.is_some() {
                return None;
            }
            gap_at = Some(n);
            i += 1;
        }
    }
    match gap_at {
        // As std: `::` stands for at least one group.
        Some(at) if n <= 7 => {
            let tail = n - at;
            groups.copy_within(at..n, 8 - tail);
            groups[at..8 - tail].fill(0);
        }
        None if n == 8 => {}
        _ => return None,
    }
    Some(Ipv6Addr::from(groups))
}

/// Parses an address as it appears in logs: bare, `a.b.c.d:port`, or `[v6]:port`.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Some(v4) = parse_v4_fast(s.as_bytes()) {
        return Some(IpAddr::V4(v4));
    }
    if let Some(v6) = parse_v6_fast(s.as_bytes()) {
        return Some(IpAddr::V6(v6));
    }
    // Straight to the IPv6 parser: `IpAddr`'s would try (and fail) IPv4 first.
    if s.contains(':') {
        if let Ok(a) = Ipv6Addr::from_str(s) {
            return Some(IpAddr::V6(a));
        }
    }
    if let Ok(a) = IpAddr::from_str(s) {
        return Some(a);
    }
    let s = s.trim();
    if let Ok(a) = IpAddr::from_str(s) {
        return Some(a);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        return Ipv6Addr::from_str(&rest[..end]).ok().map(IpAddr::V6);
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    Ipv4Addr::from_str(host).ok().map(IpAddr::V4)
}

/// The client address: the right-most hop in `forwarded_for + [ip]` that is not a trusted
/// proxy. If every hop is trusted (internal traffic), the left-most one read.
pub fn client_ip(ev: &AuthEvent<'_>, trusted: &CidrSet) -> Result<IpAddr, InvalidEvent> {
    let raw_ip = ev.raw.ip.as_deref().unwrap_or("");
    let ip = parse_ip(raw_ip).ok_or_else(|| bad_ip("ip", raw_ip))?;
    if ev.raw.forwarded_for.is_empty() || trusted.is_empty() || !trusted.contains(ip) {
        return Ok(ip);
    }
    let mut last = ip;
    for hop in ev.raw.forwarded_for.iter_rev() {
        let a = parse_ip(hop).ok_or_else(|| bad_ip("forwarded_for", hop))?;
        if !trusted.contains(a) {
            return Ok(a);
        }
        last = a;
    }
    Ok(last)
}

fn bad_ip(field: &str, v: &str) -> InvalidEvent {
    let v: String = v.chars().take(64).collect();
    InvalidEvent::new(
        InvalidReason::InvalidIp,
        format!("{field} `{v}` is not an IP address"),
    )
}

/// The account key: `user.login` when present, else `user.id`; lower-cased if asked, so
/// `Alice@x` and `alice@x` are one account (attackers vary case to split counters).
///
/// It borrows what the event borrows (its input), not the event, so the event can be
/// taken apart after (`engine::Keyed`); a name the decoder had to unescape is copied.
pub fn account_key<'a>(ev: &AuthEvent<'a>, lowercase: bool) -> Cow<'a, str> {
    let u = ev.raw.user.as_ref().expect("validated events have a user");
    let key: &Cow<'a, str> = match &u.login {
        Some(l) if !l.is_empty() => l,
        _ => u.id.as_ref().unwrap_or(&NO_NAME),
    };
    account_name(key.clone(), lowercase)
}

/// A name as the engine keys accounts: lower-cased if asked, then shortened if long. The
/// decisions API applies it to `?account=` too, so a bouncer can ask with the name as
/// typed.
pub fn account_name(name: Cow<'_, str>, lowercase: bool) -> Cow<'_, str> {
    let name = if lowercase && has_ascii_uppercase(name.as_bytes()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        name
    };
    if name.len() > MAX_ACCOUNT_KEY_BYTES {
        Cow::Owned(shorten_account_key(&name))
    } else {
        name
    }
}

/// Whether any byte is `A`..=`Z`, eight bytes at a time: every event's account name is
/// checked, and a byte loop cost ~130 instructions a name (callgrind).
fn has_ascii_uppercase(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // With every byte's high bit set first, the subtractions cannot borrow across
    // bytes; a byte's high bit then says whether its low seven bits are >= 'A' and
    // > 'Z', and `!w` keeps only bytes that were ASCII to begin with.
    let upper = |w: u64| {
        let ge_a = (w | HIGH) - ONES * b'A' as u64;
        let gt_z = (w | HIGH) - ONES * (b'Z' as u64 + 1);
        ge_a & !gt_z & !w & HIGH != 0
    };
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().expect("eight bytes"));
    if b.len() < 8 {
        return b.iter().any(u8::is_ascii_uppercase);
    }
    let mut chunks = b.chunks_exact(8);
    if chunks.any(|c| upper(word(c))) {
        return true;
    }
    // The last eight bytes, overlapping what was read: no byte loop for the tail.
    upper(word(&b[b.len() - 8..]))
}

/// Longest account key kept as it is: an e-mail address is at most 254 bytes. The
/// name is what a client typed, so an attacker chooses its length, and every failing
/// account keeps its name in state: 64 KiB names (what `input.max_event_bytes` allows)
/// on a million tracked accounts would be 64 GiB, and the process killed for memory
/// would detect nothing.
pub const MAX_ACCOUNT_KEY_BYTES: usize = 256;

/// Bytes of a longer name kept before its hash.
const SHORTENED_PREFIX_BYTES: usize = 200;

/// The first ~200 bytes (cut at a character boundary), `…#`, and the 64-bit hash of the
/// whole name: the same name always gives the same key, two long names that differ
/// anywhere give different keys, and the key still reads as the name in evidence.
pub fn shorten_account_key(name: &str) -> String {
    let mut cut = SHORTENED_PREFIX_BYTES.min(name.len());
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}…#{:016x}",
        &name[..cut],
        crate::hash::hash_bytes(name.as_bytes())
    )
}

static NO_NAME: Cow<'static, str> = Cow::Borrowed("");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_account_names_are_shortened_to_a_bounded_key_that_keeps_them_apart() {
        let a = format!("{}a", "é".repeat(40_000));
        let b = format!("{}b", "é".repeat(40_000));
        let (ka, kb) = (shorten_account_key(&a), shorten_account_key(&b));
        assert!(ka.len() <= MAX_ACCOUNT_KEY_BYTES, "{} bytes", ka.len());
        assert_ne!(ka, kb, "names differing only at their end stay apart");
        assert_eq!(ka, shorten_account_key(&a), "the same name, the same key");
        assert!(ka.starts_with("éé") && ka.contains("…#"));
        let line = |login: &str| {
            format!(
                r#"{{"type":"user.login","outcome":"failure","ts":1763683200000,"ip":"192.0.2.1","user":{{"login":"{login}"}}}}"#
            )
        };
        let long = line(&"X".repeat(300));
        let ev = crate::event::decode_native(long.as_bytes()).unwrap();
        let key = account_key(&ev, true);
        assert!(
            key.starts_with(&"x".repeat(200)),
            "lower-cased, then shortened"
        );
        assert!(key.len() <= MAX_ACCOUNT_KEY_BYTES);
        let short = line("Alice@Example.com");
        let ev = crate::event::decode_native(short.as_bytes()).unwrap();
        assert_eq!(
            account_key(&ev, true),
            "alice@example.com",
            "short names as they were"
        );
    }

    fn set(v: &[&str]) -> CidrSet {
        CidrSet::new(v.iter().map(|s| s.parse().unwrap()).collect())
    }

    #[test]
    fn cidr_membership_respects_family_and_prefix() {
        let s = set(&["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"]);
        assert!(s.contains("10.1.2.3".parse().unwrap()));
        assert!(!s.contains("11.1.2.3".parse().unwrap()));
        assert!(s.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!s.contains("2001:db9::1".parse().unwrap()));
        assert!(s.contains("192.0.2.1".parse().unwrap()));
        assert!(!s.contains("192.0.2.2".parse().unwrap()));
        assert!(s.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!("10.0.0.1/8".parse::<Cidr>().is_err());
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert_eq!(
            "0.0.0.0/0".parse::<Cidr>().unwrap().to_string(),
            "0.0.0.0/0"
        );
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
    }

    #[test]
    fn ipv6_aggregates_to_prefix_and_ipv4_mapped_is_ipv4() {
        let a = IpKey::from_addr("2001:db8:1:2:aaaa::1".parse().unwrap(), 64);
        let b = IpKey::from_addr("2001:db8:1:2:bbbb::9".parse().unwrap(), 64);
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        let m = IpKey::from_addr("::ffff:203.0.113.7".parse().unwrap(), 64);
        assert_eq!(m.to_string(), "203.0.113.7");
        assert_eq!(m, IpKey::from_addr("203.0.113.7".parse().unwrap(), 64));
    }

    #[test]
    fn fast_ipv4_parser_agrees_with_std() {
        for s in [
            "0.0.0.0",
            "255.255.255.255",
            "203.0.113.7",
            "1.2.3.4",
            "10.0.0.01",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            "a.b.c.d",
            "1.2.3.4 ",
            " 1.2.3.4",
            "01.2.3.4",
            "1.2.3.-4",
        ] {
            let std = s.parse::<Ipv4Addr>().ok();
            assert_eq!(parse_v4_fast(s.as_bytes()), std, "{s:?}");
        }
    }

    #[test]
    fn fast_ipv6_parser_agrees_with_std() {
        for s in [
            "::",
            "::1",
            "1::",
            "2001:db8::1",
            "2001:DB8:0:0:8:800:200C:417A",
            "2a02:83e5:1019:2b4e:1717:17b0:326c:fe9",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::8",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7",
            "1::2::3",
            ":::",
            ":1::",
            "1:",
            "1::2:",
            "12345::",
            "00001::",
            "0001::",
            "::ffff:1.2.3.4",
            "fe80::1%eth0",
            "g::",
            " ::1",
        ] {
            let fast = parse_v6_fast(s.as_bytes());
            let std = s.parse::<Ipv6Addr>().ok();
            assert!(fast.is_none() || fast == std, "{s:?}: {fast:?} vs {std:?}");
            if !s.contains(['.', '%', ' ']) {
                assert_eq!(fast, std, "{s:?}");
            }
        }
    }

    proptest::proptest! {
        /// The word-at-a-time test finds an upper-case ASCII letter exactly when a byte
        /// loop does, with non-ASCII bytes (UTF-8) around it.
        #[test]
        fn uppercase_test_by_words_agrees_with_a_byte_loop(
            b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            text in "[a-z@.Z\\[\\]`éÄ0-9]{0,30}",
        ) {
            for b in [&b[..], text.as_bytes()] {
                proptest::prop_assert_eq!(
                    has_ascii_uppercase(b),
                    b.iter().any(u8::is_ascii_uppercase),
                    "{:?}", b
                );
            }
        }

        /// The IPv4 fast path says exactly what std says, on near-addresses as on
        /// addresses.
        #[test]
        fn fast_ipv4_parser_never_disagrees_with_std(
            s in "[0-9.]{0,17}",
            quad in "[0-9]{1,4}\\.[0-9]{1,4}\\.[0-9]{1,4}\\.[0-9]{1,4}",
            octets in proptest::prelude::any::<[u8; 4]>(),
        ) {
            for s in [&s, &quad] {
                proptest::prop_assert_eq!(parse_v4_fast(s.as_bytes()), s.parse::<Ipv4Addr>().ok(), "{:?}", s);
            }
            let a = Ipv4Addr::from(octets).to_string();
            proptest::prop_assert_eq!(parse_v4_fast(a.as_bytes()), Some(Ipv4Addr::from(octets)));
        }

        /// Whatever the fast path accepts, std accepts as the same address, and every
        /// address std prints (compressed or not) takes the fast path.
        #[test]
        fn fast_ipv6_parser_never_disagrees_with_std(
            s in "[0-9a-fA-F:]{0,41}",
            bits in proptest::prelude::any::<u128>(),
            zeros in 0usize..8,
        ) {
            let fast = parse_v6_fast(s.as_bytes());
            proptest::prop_assert!(fast.is_none() || fast == s.parse::<Ipv6Addr>().ok(), "{:?}", s);
            let mut groups = Ipv6Addr::from(bits).segments();
            groups[zeros..(zeros + 3).min(8)].fill(0);
            let a = Ipv6Addr::from(groups);
            if a.to_ipv4_mapped().is_none() && a.to_ipv4().is_none() {
                proptest::prop_assert_eq!(parse_v6_fast(a.to_string().as_bytes()), Some(a));
            }
        }
    }

    #[test]
    fn trusted_ipv4_blocks_match_by_word_as_by_cidr() {
        let s = set(&["10.0.0.0/8", "192.0.2.1", "2001:db8::/32", "::ffff:0:0/96"]);
        for a in [
            "10.9.8.7",
            "192.0.2.1",
            "192.0.2.2",
            "11.0.0.1",
            "::ffff:10.1.1.1",
            "2001:db8::5",
        ] {
            let a: IpAddr = a.parse().unwrap();
            assert_eq!(s.contains(a), s.all.iter().any(|c| c.contains(a)), "{a}");
        }
    }

    #[test]
    fn ip_with_port_parses() {
        assert_eq!(
            parse_ip("203.0.113.7:443"),
            Some("203.0.113.7".parse().unwrap())
        );
        assert_eq!(
            parse_ip("[2001:db8::1]:443"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(parse_ip("unknown"), None);
    }
}
