//! Keyed state with expiry and a cap: one table per entity kind (IP, account, service).
//!
//! Slots live in a slab; a SwissTable maps the key's stable hash to a slot index. Expiry
//! is by a time-ordered wheel (`BTreeMap` from expiry bucket to slot ids), never by
//! scanning every key: touching a key only moves its `expires_at`; when its bucket comes
//! due the key is either dropped or rescheduled to where it now belongs. The cap evicts
//! from the earliest bucket, which is the least recently active state.

use std::collections::BTreeMap;

use hashbrown::HashTable;

pub struct Slot<K, S> {
    pub key: K,
    pub hash: u64,
    pub expires_at: i64,
    /// The wheel bucket this slot is filed under (stale entries elsewhere are skipped).
    bucket: i64,
    pub state: S,
}

pub struct KeyTable<K, S> {
    index: HashTable<u32>,
    slots: Vec<Option<Slot<K, S>>>,
    free: Vec<u32>,
    wheel: BTreeMap<i64, Vec<u32>>,
    bucket_ms: i64,
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

impl<K, S: Default> KeyTable<K, S> {
    /// `bucket_ms` is the expiry resolution; `cap` the most keys held.
    pub fn new(bucket_ms: i64, cap: usize) -> Self {
        KeyTable {
            index: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            wheel: BTreeMap::new(),
            bucket_ms: bucket_ms.max(1),
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

    /// Finds or creates the slot for a key, keeping it alive until at least `expires_at`.
    /// Creating may evict the least recently active key when the table is full.
    pub fn touch(
        &mut self,
        hash: u64,
        eq: impl Fn(&K) -> bool,
        make_key: impl FnOnce() -> K,
        expires_at: i64,
    ) -> Touched {
        let slots = &self.slots;
        if let Some(&id) = self.index.find(hash, |&i| {
            let s = slots[i as usize].as_ref().expect("indexed slots are live");
            s.hash == hash && eq(&s.key)
        }) {
            let s = self.slots[id as usize].as_mut().expect("live");
            if expires_at > s.expires_at {
                s.expires_at = expires_at;
            }
            return Touched { id, is_new: false };
        }
        if self.len >= self.cap {
            self.evict_one();
        }
        let bucket = expires_at.div_euclid(self.bucket_ms);
        let slot = Slot {
            key: make_key(),
            hash,
            expires_at,
            bucket,
            state: S::default(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(slot);
                id
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.index.insert_unique(hash, id, |&i| {
            slots[i as usize].as_ref().expect("live").hash
        });
        self.wheel.entry(bucket).or_default().push(id);
        self.len += 1;
        Touched { id, is_new: true }
    }

    pub fn slot(&self, id: u32) -> &Slot<K, S> {
        self.slots[id as usize].as_ref().expect("live slot")
    }

    pub fn slot_mut(&mut self, id: u32) -> &mut Slot<K, S> {
        self.slots[id as usize].as_mut().expect("live slot")
    }

    /// Looks a key up by its hash alone: for turning member hashes back into names.
    pub fn find_by_hash(&self, hash: u64) -> Option<&Slot<K, S>> {
        let slots = &self.slots;
        self.index
            .find(hash, |&i| {
                slots[i as usize].as_ref().is_some_and(|s| s.hash == hash)
            })
            .map(|&i| slots[i as usize].as_ref().expect("live"))
    }

    pub fn find_id_by_hash(&self, hash: u64) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(hash, |&i| {
                slots[i as usize].as_ref().is_some_and(|s| s.hash == hash)
            })
            .copied()
    }

    /// Drops every key whose `expires_at` is at or before `now`.
    pub fn expire(&mut self, now: i64) {
        while let Some(mut entry) = self.wheel.first_entry() {
            let bucket = *entry.key();
            if (bucket + 1) * self.bucket_ms > now {
                break;
            }
            let ids = std::mem::take(entry.get_mut());
            entry.remove();
            for id in ids {
                let Some(s) = self.slots[id as usize].as_mut() else {
                    continue;
                };
                if s.bucket != bucket {
                    continue;
                }
                if s.expires_at <= now {
                    self.remove(id);
                    self.expired += 1;
                } else {
                    let b = s.expires_at.div_euclid(self.bucket_ms);
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
            let Some(s) = self.slots[id as usize].as_mut() else {
                continue;
            };
            if s.bucket != bucket {
                continue;
            }
            let due = s.expires_at.div_euclid(self.bucket_ms);
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
        let hash = self.slots[id as usize].as_ref().expect("live").hash;
        if let Ok(e) = self.index.find_entry(hash, |&i| i == id) {
            e.remove();
        }
        self.slots[id as usize] = None;
        self.free.push(id);
        self.len -= 1;
    }

    pub fn iter(&self) -> impl Iterator<Item = &Slot<K, S>> {
        self.slots.iter().flatten()
    }

    /// Bytes held by the table itself (slab, index, wheel), excluding heap owned by
    /// keys and states.
    pub fn table_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Option<Slot<K, S>>>()
            + self.index.capacity() * (std::mem::size_of::<u32>() + 1)
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

    fn touch(t: &mut KeyTable<u64, u32>, k: u64, exp: i64) -> Touched {
        t.touch(crate::hash::mix64(k), |x| *x == k, || k, exp)
    }

    #[test]
    fn keys_expire_within_one_bucket_of_their_time_never_before() {
        let mut t: KeyTable<u64, u32> = KeyTable::new(10, 100);
        touch(&mut t, 1, 100);
        touch(&mut t, 2, 200);
        touch(&mut t, 1, 300);
        t.expire(250);
        assert_eq!(t.len(), 1, "key 2 expired; key 1 was touched again");
        assert!(!touch(&mut t, 1, 300).is_new);
        t.expire(309);
        assert_eq!(t.len(), 1, "300's bucket [300, 310) is not over yet");
        t.expire(310);
        assert_eq!(t.len(), 0);
        assert_eq!(t.expired, 2);
    }

    #[test]
    fn the_cap_evicts_the_least_recently_active() {
        let mut t: KeyTable<u64, u32> = KeyTable::new(1, 3);
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
}
