//! A stable 64-bit hash.
//!
//! Key tables, distinct-member sets, HyperLogLog sketches and signal ids all hash with
//! this one function. It must never change between versions or platforms: sketches are
//! serialized and merged across partitions and restarts, and `signal_id` must be the same
//! when redelivered work is processed again. std's SipHash is randomly keyed and ahash
//! is documented as unstable, so neither will do.

use std::hash::{BuildHasher, Hasher};

use serde::{Deserialize, Serialize};

const K0: u64 = 0x9E37_79B9_7F4A_7C15;
const K1: u64 = 0xBF58_476D_1CE4_E5B9;
const K2: u64 = 0x94D0_49BB_1331_11EB;

/// The murmur3/splitmix finalizer: full avalanche, so the low bits that hashbrown and
/// HyperLogLog use for bucketing are as good as the high ones.
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(K1);
    x ^= x >> 27;
    x = x.wrapping_mul(K2);
    x ^ (x >> 31)
}

#[inline]
fn fold(h: u64, word: u64) -> u64 {
    (h ^ word).wrapping_mul(K0).rotate_left(29)
}

/// Hashes bytes eight at a time with a seed.
#[inline]
pub fn hash_bytes_seeded(bytes: &[u8], seed: u64) -> u64 {
    let mut h = seed ^ (bytes.len() as u64).wrapping_mul(K1);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = fold(
            h,
            u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
        );
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // Assembled with shifts: copying into a stack buffer and reading it back as one
        // word stalls on store forwarding, and this runs for every account on every event.
        let mut tail = 0u64;
        for (i, &b) in rest.iter().enumerate() {
            tail |= (b as u64) << (8 * i);
        }
        h = fold(h, tail);
    }
    mix64(h)
}

#[inline]
/// Lower-case hex, by hand: `format!("{b:02x}")` per byte costs a formatter call each.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

pub fn hash_bytes(bytes: &[u8]) -> u64 {
    hash_bytes_seeded(bytes, 0)
}

#[inline]
pub fn hash_u128(v: u128) -> u64 {
    mix64(fold(fold(K2, v as u64), (v >> 64) as u64))
}

/// A `Hasher` over the same function, for HyperLogLog++ (which hashes what it is given).
#[derive(Clone, Copy, Debug, Default)]
pub struct StableHasher {
    h: u64,
}

impl Hasher for StableHasher {
    #[inline]
    fn finish(&self) -> u64 {
        mix64(self.h)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.h = fold(self.h, hash_bytes(bytes));
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.h = fold(self.h, v);
    }
}

/// The fixed-seed, serializable `BuildHasher` our sketches carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedState;

impl BuildHasher for FixedState {
    type Hasher = StableHasher;
    #[inline]
    fn build_hasher(&self) -> StableHasher {
        StableHasher::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_values_are_pinned_so_sketches_and_signal_ids_survive_upgrades() {
        assert_eq!(hash_bytes(b""), hash_bytes(b""));
        assert_ne!(hash_bytes(b"alice"), hash_bytes(b"alicf"));
        assert_ne!(hash_bytes(b"a"), hash_bytes(b"a\0"));
        // Pinned: changing these breaks stored sketches and redelivery dedup downstream.
        assert_eq!(hash_bytes(b"alice@example.com"), 0x548c281a9c085e23_u64);
    }
}
