//! Keyed state with expiry and a cap: one table per entity kind (IP, account, service).
//!
//! Slots live in a slab of fixed-size chunks (growing never copies a million slots);
//! a `HashIndex` maps the key's stable hash to a slot index, and can be asked to load
//! an event's entry and slot ahead of time (`prefetch_index`, `prefetch_slot`). Expiry
//! is by a time-ordered wheel (`BTreeMap` from expiry bucket to slot ids), never by
//! scanning every key:
//! touching a key only moves its `expires_at`; when its bucket comes due the key is
//! either dropped or rescheduled to where it now belongs. The cap evicts from the
//! earliest bucket, which is the least recently active state.
//!
//! Expiry times are kept in whole seconds (`u32`, good until 2106): a million slots
//! make every byte count, and state lifetimes are minutes to days.

use std::collections::BTreeMap;

use super::index::HashIndex;

const CHUNK_BITS: u32 = 10;
const CHUNK: usize = 1 << CHUNK_BITS;

pub struct Slot<K, S> {
    pub key: K,
    pub hash: u64,
    /// Seconds since the epoch, rounded up.
    expires_s: u32,
    /// The wheel bucket this slot is filed under (stale entries elsewhere are skipped).
    bucket: u32,
    pub state: S,
}

impl<K, S> Slot<K, S> {
    /// When the key expires unless touched again (ms since the epoch, whole seconds).
    pub fn expires_at(&self) -> i64 {
        self.expires_s as i64 * 1000
    }
}

pub struct KeyTable<K, S> {
    index: HashIndex,
    chunks: Vec<Vec<Option<Slot<K, S>>>>,
    free: Vec<u32>,
    wheel: BTreeMap<u32, Vec<u32>>,
    bucket_s: u32,
    cap: usize,
    len: usize,
    pub evicted: u64,
    pub expired: u64,
}

/// What `touch` found.
pub struct Touched {
    pub id: u32,
    pub is_new: bool,
}

/// An index entry: the slot id (plus one, so it is never 0) over the hash's low bits.
#[inline]
fn entry(id: u32, hash: u64) -> u64 {
    ((id as u64 + 1) << 32) | (hash & 0xffff_ffff)
}

#[inline]
fn entry_id(e: u64) -> u32 {
    ((e >> 32) - 1) as u32
}

fn to_secs(ms: i64) -> u32 {
    (ms.div_euclid(1000) + (ms.rem_euclid(1000) > 0) as i64).clamp(0, u32::MAX as i64) as u32
}

impl<K, S: Default> KeyTable<K, S> {
    /// `bucket_ms` is the expiry resolution (at least a second); `cap` the most keys held.
    pub fn new(bucket_ms: i64, cap: usize) -> Self {
        KeyTable {
            index: HashIndex::new(),
            chunks: Vec::new(),
            free: Vec::new(),
            wheel: BTreeMap::new(),
            bucket_s: (bucket_ms / 1000).clamp(1, u32::MAX as i64) as u32,
            cap: cap.max(1),
            len: 0,
            evicted: 0,
            expired: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where slot `id` lives, found without reading it (so it can be prefetched).
    #[inline]
    fn cell(&self, id: u32) -> &Option<Slot<K, S>> {
        &self.chunks[(id >> CHUNK_BITS) as usize][id as usize & (CHUNK - 1)]
    }

    #[inline]
    fn cell_mut(&mut self, id: u32) -> &mut Option<Slot<K, S>> {
        &mut self.chunks[(id >> CHUNK_BITS) as usize][id as usize & (CHUNK - 1)]
    }

    /// Starts loading every cache line slot `id` spans: the rules read all of it. An IP
    /// slot (120 bytes) spans three lines in six places out of eight; loading only its
    /// ends left the middle one to stall the first rule that read it.
    #[inline]
    fn prefetch_cell(&self, id: u32) {
        let start = (self.cell(id) as *const Option<Slot<K, S>>).cast::<u8>();
        crate::engine::prefetch_span(start, std::mem::size_of::<Option<Slot<K, S>>>());
    }

    #[inline]
    fn get(&self, id: u32) -> Option<&Slot<K, S>> {
        self.cell(id).as_ref()
    }

    #[inline]
    fn get_mut(&mut self, id: u32) -> Option<&mut Slot<K, S>> {
        self.cell_mut(id).as_mut()
    }

    /// Starts loading the index line a lookup of `hash` reads first.
    #[inline]
    pub fn prefetch_index(&self, hash: u64) {
        self.index.prefetch(hash);
    }

    /// Starts loading the slot `hash` most likely names (all its lines). Best after
    /// `prefetch_index` had time to bring the index line.
    #[inline]
    pub fn prefetch_slot(&self, hash: u64) {
        // Index entries name live slots only (`remove` takes them out).
        if let Some(e) = self.index.find(hash, |_| true) {
            self.prefetch_cell(entry_id(e));
        }
    }

    /// Finds or creates the slot for a key, keeping it alive until at least `expires_at`
    /// (ms). Creating may evict the least recently active key when the table is full.
    pub fn touch(
        &mut self,
        hash: u64,
        eq: impl Fn(&K) -> bool,
        make_key: impl FnOnce() -> K,
        expires_at: i64,
    ) -> Touched {
        let expires_s = to_secs(expires_at);
        let found = self.index.find(hash, |e| {
            let i = entry_id(e);
            // Load the rest of the slot while its start is compared, not after.
            self.prefetch_cell(i);
            let s = self.get(i).expect("indexed slots are live");
            s.hash == hash && eq(&s.key)
        });
        if let Some(e) = found {
            let id = entry_id(e);
            let s = self.get_mut(id).expect("live");
            if expires_s > s.expires_s {
                s.expires_s = expires_s;
            }
            return Touched { id, is_new: false };
        }
        if self.len >= self.cap {
            self.evict_one();
        }
        let bucket = expires_s / self.bucket_s;
        let slot = Slot {
            key: make_key(),
            hash,
            expires_s,
            bucket,
            state: S::default(),
        };
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
                    self.chunks.push(Vec::with_capacity(CHUNK));
                }
                let last = self.chunks.len() - 1;
                self.chunks[last].push(None);
                ((last << CHUNK_BITS) + self.chunks[last].len() - 1) as u32
            }
        };
        *self.cell_mut(id) = Some(slot);
        self.index.insert(entry(id, hash));
        self.wheel.entry(bucket).or_default().push(id);
        self.len += 1;
        Touched { id, is_new: true }
    }

    pub fn slot(&self, id: u32) -> &Slot<K, S> {
        self.get(id).expect("live slot")
    }

    pub fn slot_mut(&mut self, id: u32) -> &mut Slot<K, S> {
        self.get_mut(id).expect("live slot")
    }

    /// Looks a key up by its hash alone: for turning member hashes back into names.
    pub fn find_by_hash(&self, hash: u64) -> Option<&Slot<K, S>> {
        self.find_id_by_hash(hash).map(|id| self.slot(id))
    }

    pub fn find_id_by_hash(&self, hash: u64) -> Option<u32> {
        self.index
            .find(hash, |e| {
                self.get(entry_id(e)).is_some_and(|s| s.hash == hash)
            })
            .map(entry_id)
    }

    /// Drops every key whose expiry is at or before `now` (ms).
    pub fn expire(&mut self, now: i64) {
        let now_s = (now.div_euclid(1000)).clamp(0, u32::MAX as i64) as u32;
        while let Some(mut entry) = self.wheel.first_entry() {
            let bucket = *entry.key();
            if (bucket as u64 + 1) * self.bucket_s as u64 > now_s as u64 {
                break;
            }
            let ids = std::mem::take(entry.get_mut());
            entry.remove();
            for id in ids {
                let bucket_s = self.bucket_s;
                let Some(s) = self.get_mut(id) else { continue };
                if s.bucket != bucket {
                    continue;
                }
                if s.expires_s <= now_s {
                    self.remove(id);
                    self.expired += 1;
                } else {
                    let b = s.expires_s / bucket_s;
                    s.bucket = b;
                    self.wheel.entry(b).or_default().push(id);
                }
            }
        }
    }

    fn evict_one(&mut self) {
        loop {
            let Some(mut entry) = self.wheel.first_entry() else {
                return;
            };
            let bucket = *entry.key();
            let Some(id) = entry.get_mut().pop() else {
                entry.remove();
                continue;
            };
            if entry.get().is_empty() {
                entry.remove();
            }
            let bucket_s = self.bucket_s;
            let Some(s) = self.get_mut(id) else { continue };
            if s.bucket != bucket {
                continue;
            }
            let due = s.expires_s / bucket_s;
            if due > bucket {
                s.bucket = due;
                self.wheel.entry(due).or_default().push(id);
                continue;
            }
            self.remove(id);
            self.evicted += 1;
            return;
        }
    }

    fn remove(&mut self, id: u32) {
        let hash = self.get(id).expect("live").hash;
        self.index.remove(entry(id, hash));
        *self.cell_mut(id) = None;
        self.free.push(id);
        self.len -= 1;
    }

    pub fn iter(&self) -> impl Iterator<Item = &Slot<K, S>> {
        self.chunks.iter().flatten().flatten()
    }

    /// Bytes held by the table itself (slab, index, wheel), excluding heap owned by
    /// keys and states.
    pub fn table_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.capacity()).sum::<usize>()
            * std::mem::size_of::<Option<Slot<K, S>>>()
            + self.index.capacity() * std::mem::size_of::<u64>()
            + self.free.capacity() * 4
            + self
                .wheel
                .values()
                .map(|v| v.capacity() * 4 + 48)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(t: &mut KeyTable<u64, u32>, k: u64, exp_s: i64) -> Touched {
        t.touch(crate::hash::mix64(k), |x| *x == k, || k, exp_s * 1000)
    }

    #[test]
    fn keys_expire_within_one_bucket_of_their_time_never_before() {
        let mut t: KeyTable<u64, u32> = KeyTable::new(10_000, 100);
        touch(&mut t, 1, 100);
        touch(&mut t, 2, 200);
        touch(&mut t, 1, 300);
        t.expire(250_000);
        assert_eq!(t.len(), 1, "key 2 expired; key 1 was touched again");
        assert!(!touch(&mut t, 1, 300).is_new);
        t.expire(309_000);
        assert_eq!(t.len(), 1, "300's bucket [300, 310) is not over yet");
        t.expire(310_000);
        assert_eq!(t.len(), 0);
        assert_eq!(t.expired, 2);
    }

    #[test]
    fn the_cap_evicts_the_least_recently_active() {
        let mut t: KeyTable<u64, u32> = KeyTable::new(1000, 3);
        touch(&mut t, 1, 10);
        touch(&mut t, 2, 20);
        touch(&mut t, 3, 30);
        touch(&mut t, 1, 40);
        touch(&mut t, 4, 50);
        assert_eq!(t.len(), 3);
        assert_eq!(t.evicted, 1);
        assert!(
            !touch(&mut t, 1, 40).is_new,
            "1 was refreshed, 2 was the oldest"
        );
        assert!(touch(&mut t, 2, 60).is_new);
    }

    #[test]
    fn slots_are_reused_across_chunks() {
        let mut t: KeyTable<u64, u32> = KeyTable::new(1000, 10_000);
        for k in 0..3000 {
            touch(&mut t, k, 10);
        }
        t.expire(20_000);
        assert_eq!(t.len(), 0);
        for k in 0..3000 {
            assert!(touch(&mut t, k + 10_000, 30).is_new);
        }
        assert_eq!(t.len(), 3000);
        assert_eq!(t.iter().count(), 3000);
    }
}
