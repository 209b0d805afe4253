//! An open-addressing hash index of non-zero `u64` entries, with linear probing.
//!
//! hashbrown's tables do not say where a key will be looked for, so its memory cannot be
//! loaded ahead. Here an entry's place is its low bits (`entry & mask`), so
//! `prefetch(hash)` can start loading the cache line a lookup will read while the
//! engine is still busy with an earlier event. Each entry carries its key's hash's low
//! 32 bits itself, so growing and deleting (backward shift, no tombstones) never read
//! the keyed state: an entry is `(slot id + 1) << 32 | hash as u32` (`KeyTable`).
//!
//! Eight entries share a cache line, and at a load of at most 3/4 a lookup, which
//! mostly finds its key, mostly reads one line.

pub struct HashIndex {
    entries: Vec<u64>,
    len: usize,
}

/// The most entries held per 8 places.
const MAX_LOAD_8THS: usize = 6;

const MIN_ENTRIES: usize = 16;

impl Default for HashIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl HashIndex {
    pub fn new() -> Self {
        HashIndex {
            entries: Vec::new(),
            len: 0,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Entries allocated (each 8 bytes).
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    #[inline]
    fn mask(&self) -> usize {
        self.entries.len().wrapping_sub(1)
    }

    /// Starts loading the line a lookup of `hash` begins with.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        if !self.entries.is_empty() {
            let i = hash as usize & self.mask();
            super::prefetch(self.entries[i..].as_ptr().cast());
        }
    }

    /// The first entry for `hash` (same low 32 bits) that `is` accepts. `is` sees only
    /// entries whose low 32 bits match, so it is rarely called for a wrong key.
    #[inline]
    pub fn find(&self, hash: u64, mut is: impl FnMut(u64) -> bool) -> Option<u64> {
        if self.entries.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            let e = self.entries[i];
            if e == 0 {
                return None;
            }
            if e as u32 == hash as u32 && is(e) {
                return Some(e);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `entry` (non-zero; its low bits place it). The caller has checked it is
    /// absent.
    pub fn insert(&mut self, entry: u64) {
        debug_assert_ne!(entry, 0, "0 marks an empty place");
        if (self.len + 1) * 8 > self.entries.len() * MAX_LOAD_8THS {
            self.grow();
        }
        self.place(entry);
        self.len += 1;
    }

    fn place(&mut self, entry: u64) {
        place(&mut self.entries, entry);
    }

    fn grow(&mut self) {
        let n = (self.entries.len() * 2).max(MIN_ENTRIES);
        // Places come from the low 32 bits, which is all a `KeyTable` entry keeps.
        assert!(n <= 1 << 32, "index of more than 2^32 entries");
        let old = std::mem::replace(&mut self.entries, vec![0; n]);
        for e in old.into_iter().filter(|&e| e != 0) {
            self.place(e);
        }
    }

    /// Removes exactly `entry`; false when it is not there. Later entries of its run
    /// move back into the gap, so a lookup can still stop at the first empty place.
    pub fn remove(&mut self, entry: u64) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        let mask = self.mask();
        let mut hole = entry as usize & mask;
        loop {
            match self.entries[hole] {
                0 => return false,
                e if e == entry => break,
                _ => hole = (hole + 1) & mask,
            }
        }
        close_gap(&mut self.entries, hole);
        self.len -= 1;
        true
    }
}

/// Puts non-zero `entry` in the first empty place from its home (its low bits) in a
/// linear-probing table (`places.len()` a power of two, with an empty place).
#[inline]
pub(super) fn place(places: &mut [u64], entry: u64) {
    let mask = places.len() - 1;
    let mut i = entry as usize & mask;
    while places[i] != 0 {
        i = (i + 1) & mask;
    }
    places[i] = entry;
}

/// Empties place `hole` of a linear-probing table of non-zero `u64` entries placed by
/// their low bits (`places.len()` a power of two): later entries of its run move back
/// into the gap, so a lookup can still stop at the first empty place. Returns the place
/// left empty in the end (`hole` itself when nothing moved).
#[inline]
pub(super) fn close_gap(places: &mut [u64], mut hole: usize) -> usize {
    let mask = places.len() - 1;
    let mut j = (hole + 1) & mask;
    loop {
        let e = places[j];
        if e == 0 {
            break;
        }
        let home = e as usize & mask;
        // `e` may fill the hole unless its home lies after the hole (cyclically, in
        // (hole, j]): it would then be found before reaching the hole.
        if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
            places[hole] = e;
            hole = j;
        }
        j = (j + 1) & mask;
    }
    places[hole] = 0;
    hole
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn has(ix: &HashIndex, e: u64) -> bool {
        ix.find(e, |x| x == e).is_some()
    }

    #[test]
    fn entries_that_share_a_place_are_all_found_and_removed_one_by_one() {
        let mut ix = HashIndex::new();
        // Same low bits, so the same place at any size: one long run.
        let run: Vec<u64> = (1..=40u64).map(|k| (k << 32) | 5).collect();
        for &e in &run {
            ix.insert(e);
        }
        assert_eq!(ix.len(), 40);
        for (n, &e) in run.iter().enumerate().step_by(3) {
            assert!(ix.remove(e), "entry {n}");
            assert!(!has(&ix, e));
        }
        for (n, &e) in run.iter().enumerate() {
            assert_eq!(has(&ix, e), n % 3 != 0, "entry {n}");
        }
        assert!(!ix.remove(run[0]), "already gone");
    }

    proptest! {
        /// Inserts and removes (mostly of entries crowded into few places, where the
        /// backward shift does its work) leave exactly the set a `HashSet` holds.
        #[test]
        fn holds_exactly_what_a_hash_set_holds(
            ops in proptest::collection::vec((any::<bool>(), 1u64..200, 0u64..24), 1..600)
        ) {
            let mut ix = HashIndex::new();
            let mut set = HashSet::new();
            for (add, hi, lo) in ops {
                let e = (hi << 32) | lo;
                if add {
                    if set.insert(e) {
                        ix.insert(e);
                    }
                } else {
                    prop_assert_eq!(ix.remove(e), set.remove(&e));
                }
                prop_assert_eq!(ix.len(), set.len());
            }
            for hi in 1u64..200 {
                for lo in 0u64..24 {
                    let e = (hi << 32) | lo;
                    prop_assert_eq!(has(&ix, e), set.contains(&e), "{:x}", e);
                }
            }
            prop_assert!(ix.len() * 4 <= ix.capacity() * 3);
        }
    }
}
