//! Duplicate deliveries: the same `event_id` seen again within `time.dedup_window` of
//! event time is ignored, so at-least-once redelivery cannot push an entity over a
//! threshold. Bounded by `state.max_dedup_ids`.

use std::collections::VecDeque;

use hashbrown::HashTable;

pub struct Dedup {
    window: i64,
    cap: usize,
    set: HashTable<u64>,
    order: VecDeque<(i64, u64)>,
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
        self.order.push_back((ts, id_hash));
        false
    }

    /// Forgets ids recorded for events older than `watermark - window`, and ids whose
    /// event time is beyond `ahead` (a wild clock accepted before time was established
    /// would otherwise sit at the front of the queue and hold everything behind it).
    pub fn expire(&mut self, watermark: i64, ahead: i64) {
        let horizon = watermark.saturating_sub(self.window);
        while self
            .order
            .front()
            .is_some_and(|f| f.0 < horizon || f.0 > ahead)
        {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, h)) = self.order.pop_front() {
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
        self.set.capacity() * 9 + self.order.capacity() * 16
    }
}
