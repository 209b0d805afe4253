//! Duplicate deliveries: the same `event_id` seen again within `time.dedup_window` of
//! event time is ignored, so at-least-once redelivery cannot push an entity over a
//! threshold. Bounded by `state.max_dedup_ids`.

use std::collections::VecDeque;

use hashbrown::HashTable;

/// An id in arrival order: event time in whole seconds and the id's hash, packed into
/// 12 bytes. At high rates the window holds a million of them.
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
struct Seen {
    ts_s: u32,
    hash: u64,
}

pub struct Dedup {
    window: i64,
    cap: usize,
    set: HashTable<u64>,
    order: VecDeque<Seen>,
}

impl Dedup {
    pub fn new(window_ms: i64, cap: usize) -> Dedup {
        Dedup {
            window: window_ms,
            cap: cap.max(1),
            set: HashTable::new(),
            order: VecDeque::new(),
        }
    }

    /// True when `id_hash` was already seen; records it otherwise.
    pub fn seen(&mut self, id_hash: u64, ts: i64) -> bool {
        if self.window == 0 {
            return false;
        }
        if self.set.find(id_hash, |&h| h == id_hash).is_some() {
            return true;
        }
        if self.order.len() >= self.cap {
            self.pop_front();
        }
        self.set.insert_unique(id_hash, id_hash, |&h| h);
        self.order.push_back(Seen {
            ts_s: ts.div_euclid(1000).clamp(0, u32::MAX as i64) as u32,
            hash: id_hash,
        });
        false
    }

    /// Forgets ids recorded for events older than `watermark - window`, and ids whose
    /// event time is beyond `ahead` (a wild clock accepted before time was established
    /// would otherwise sit at the front of the queue and hold everything behind it).
    pub fn expire(&mut self, watermark: i64, ahead: i64) {
        let horizon = watermark.saturating_sub(self.window);
        let ms = |f: &Seen| f.ts_s as i64 * 1000;
        while self
            .order
            .front()
            .is_some_and(|f| ms(f) < horizon - 999 || ms(f) > ahead)
        {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(Seen { hash: h, .. }) = self.order.pop_front() {
            if let Ok(e) = self.set.find_entry(h, |&x| x == h) {
                e.remove();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn heap_bytes(&self) -> usize {
        self.set.capacity() * 9 + self.order.capacity() * std::mem::size_of::<Seen>()
    }
}
