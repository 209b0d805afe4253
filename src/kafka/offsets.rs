//! Which offsets are safe to commit.
//!
//! At-least-once: an offset may be committed only when every output (signal or dead
//! letter) caused by that event, and by every earlier event of its partition, has been
//! acknowledged by the broker. Per partition we keep the events that still have
//! outputs in flight, in offset order; the committable offset is the first of them, or
//! the offset after the last processed event when none is in flight.
//!
//! Slots are reused across rebalances; a generation number tags every output so an
//! acknowledgement that arrives after its partition was revoked and re-assigned cannot
//! release the wrong event.

use std::collections::VecDeque;

/// Identifies the event an output belongs to. Travels with the record as its delivery
/// opaque.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub slot: u32,
    pub generation: u32,
    pub offset: i64,
}

/// What to do with a consumed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    /// Already in this process's state (re-delivered after a rebalance): skip it.
    Skip,
    /// Before the committed offset, re-read to warm state: process with signals
    /// suppressed and no outputs.
    Warmup,
    /// New input: process and publish.
    Live,
    /// The partition is not assigned to us (a message fetched before a revoke).
    NotAssigned,
}

#[derive(Debug)]
struct Pending {
    offset: i64,
    remaining: u32,
}

#[derive(Debug)]
pub struct PartitionState {
    pub topic: String,
    pub partition: i32,
    generation: u32,
    active: bool,
    /// The offset after the last event processed live (-1: none yet).
    next: i64,
    pending: VecDeque<Pending>,
    /// Last committed offset (the next to read), or -1.
    pub committed: i64,
    /// Events below this offset were handled before this assignment (warm-up).
    suppress_until: i64,
    /// The highest offset this process has fed to the engine, across assignments.
    seen_through: i64,
    /// Whether librdkafka's last statistics showed messages not yet handed over
    /// (fetched, or still on the broker); `None` before its first report on this
    /// assignment.
    unread: Option<bool>,
}

#[derive(Debug, Default)]
pub struct Tracker {
    parts: Vec<PartitionState>,
    /// Slots by partition number (Kafka's are never negative), then topic: looked up
    /// per message, so neither a scan of every slot nor a hash of the topic.
    by_partition: Vec<Vec<u32>>,
    outstanding: usize,
    /// Partitions assigned so far, counting reassignments: the engine's thread compares
    /// it with what it saw last, to learn of new partitions before their first message.
    assignments: u64,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Starts (or restarts) tracking a partition. `committed` is the group's committed
    /// offset or -1; events below `suppress_until` are warm-up. What this process already
    /// fed to the engine (`seen_through`) survives, so it is not fed twice.
    pub fn assign(&mut self, topic: &str, partition: i32, committed: i64, suppress_until: i64) {
        let slot = self.slot_or_insert(topic, partition);
        let p = &mut self.parts[slot as usize];
        self.outstanding -= p
            .pending
            .iter()
            .map(|e| e.remaining as usize)
            .sum::<usize>();
        p.generation = p.generation.wrapping_add(1);
        p.active = true;
        p.pending.clear();
        p.next = -1;
        p.committed = committed;
        p.suppress_until = suppress_until;
        p.unread = None;
        self.assignments += 1;
    }

    /// How many partitions were assigned so far (reassignments count again).
    pub fn assignments(&self) -> u64 {
        self.assignments
    }

    /// The slots of the assigned partitions.
    pub fn active_slots(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.parts.len() as u32).filter(|&s| self.parts[s as usize].active)
    }

    /// Records what librdkafka's statistics say of a partition's unread messages.
    pub fn set_unread(&mut self, topic: &str, partition: i32, unread: bool) {
        if let Some(s) = self.find(topic, partition) {
            self.parts[s as usize].unread = Some(unread);
        }
    }

    /// Whether the partition has messages still to come, as far as is known: an
    /// unknown answer is `unknown`.
    pub fn unread(&self, slot: u32, unknown: bool) -> bool {
        self.parts
            .get(slot as usize)
            .and_then(|p| p.unread)
            .unwrap_or(unknown)
    }

    /// The highest offset of the partition already fed to the engine, or -1.
    pub fn seen_through(&self, topic: &str, partition: i32) -> i64 {
        self.find(topic, partition)
            .map_or(-1, |s| self.parts[s as usize].seen_through)
    }

    pub fn revoke(&mut self, topic: &str, partition: i32) {
        if let Some(slot) = self.find(topic, partition) {
            let p = &mut self.parts[slot as usize];
            self.outstanding -= p
                .pending
                .iter()
                .map(|e| e.remaining as usize)
                .sum::<usize>();
            p.pending.clear();
            p.active = false;
            p.generation = p.generation.wrapping_add(1);
        }
    }

    fn slot_or_insert(&mut self, topic: &str, partition: i32) -> u32 {
        if let Some(s) = self.find(topic, partition) {
            return s;
        }
        let s = self.parts.len() as u32;
        self.parts.push(PartitionState {
            topic: topic.to_string(),
            partition,
            generation: 0,
            active: false,
            next: -1,
            pending: VecDeque::new(),
            committed: -1,
            suppress_until: -1,
            seen_through: -1,
            unread: None,
        });
        if let Ok(p) = usize::try_from(partition) {
            if self.by_partition.len() <= p {
                self.by_partition.resize_with(p + 1, Vec::new);
            }
            self.by_partition[p].push(s);
        }
        s
    }

    pub fn is_active(&self, slot: u32) -> bool {
        self.parts.get(slot as usize).is_some_and(|p| p.active)
    }

    /// The slot of a partition, assigned or not.
    fn find(&self, topic: &str, partition: i32) -> Option<u32> {
        let slots = self.by_partition.get(usize::try_from(partition).ok()?)?;
        slots
            .iter()
            .copied()
            .find(|&s| self.parts[s as usize].topic == topic)
    }

    /// The slot of an active partition.
    pub fn slot(&self, topic: &str, partition: i32) -> Option<u32> {
        self.find(topic, partition)
            .filter(|&s| self.parts[s as usize].active)
    }

    pub fn handling(&self, slot: u32, offset: i64) -> Handling {
        let p = &self.parts[slot as usize];
        if !p.active {
            Handling::NotAssigned
        } else if offset <= p.seen_through {
            Handling::Skip
        } else if offset < p.suppress_until {
            Handling::Warmup
        } else {
            Handling::Live
        }
    }

    /// Records that the engine has seen `offset` (any handling but Skip).
    pub fn fed(&mut self, slot: u32, offset: i64) {
        let p = &mut self.parts[slot as usize];
        p.seen_through = p.seen_through.max(offset);
    }

    /// A live event was processed and caused `outputs` records; returns the origin its
    /// records carry.
    ///
    /// Polling runs on another thread, so the partition may have been revoked while the
    /// event was in the engine. Its outputs are still published but hold nothing: the
    /// revoke committed what was done before it, so the new owner re-reads this event
    /// (or, when that is this process again, finds it already fed and skips it), and
    /// their acknowledgements, carrying an old generation, are ignored.
    pub fn processed(&mut self, slot: u32, offset: i64, outputs: u32) -> Origin {
        let p = &mut self.parts[slot as usize];
        if !p.active {
            return Origin {
                slot,
                generation: p.generation,
                offset,
            };
        }
        p.next = p.next.max(offset + 1);
        if outputs > 0 {
            p.pending.push_back(Pending {
                offset,
                remaining: outputs,
            });
            self.outstanding += outputs as usize;
        }
        Origin {
            slot,
            generation: p.generation,
            offset,
        }
    }

    /// The broker acknowledged one output. Stale origins (revoked since) are ignored.
    pub fn acked(&mut self, o: Origin) {
        let Some(p) = self.parts.get_mut(o.slot as usize) else {
            return;
        };
        if p.generation != o.generation || !p.active {
            return;
        }
        let i = p.pending.partition_point(|e| e.offset < o.offset);
        if let Some(e) = p.pending.get_mut(i).filter(|e| e.offset == o.offset) {
            if e.remaining > 0 {
                e.remaining -= 1;
                self.outstanding -= 1;
            }
        }
        while p.pending.front().is_some_and(|e| e.remaining == 0) {
            p.pending.pop_front();
        }
    }

    /// The offset to commit for a slot (the next to read), if any event was processed.
    pub fn committable(&self, slot: u32) -> Option<i64> {
        let p = &self.parts[slot as usize];
        if !p.active {
            return None;
        }
        match p.pending.front() {
            Some(e) => Some(e.offset),
            None if p.next >= 0 => Some(p.next),
            None => None,
        }
    }

    /// `(slot, topic, partition, offset)` for every active partition whose committable
    /// offset moved past the last commit. `only` restricts it to some partitions.
    pub fn to_commit(&self, only: Option<&[(String, i32)]>) -> Vec<(u32, String, i32, i64)> {
        let mut out = Vec::new();
        for (i, p) in self.parts.iter().enumerate() {
            if let Some(only) = only {
                if !only.iter().any(|(t, n)| *t == p.topic && *n == p.partition) {
                    continue;
                }
            }
            if let Some(off) = self.committable(i as u32) {
                if off > p.committed {
                    out.push((i as u32, p.topic.clone(), p.partition, off));
                }
            }
        }
        out
    }

    pub fn set_committed(&mut self, slot: u32, offset: i64) {
        let p = &mut self.parts[slot as usize];
        p.committed = p.committed.max(offset);
    }

    /// Outputs sent and not yet acknowledged, over all partitions.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    pub fn active(&self) -> impl Iterator<Item = &PartitionState> {
        self.parts.iter().filter(|p| p.active)
    }

    /// True while some assigned partition is still being re-read for warm-up.
    pub fn warming(&self) -> bool {
        self.parts
            .iter()
            .any(|p| p.active && p.seen_through + 1 < p.suppress_until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> (Tracker, u32) {
        let mut t = Tracker::new();
        t.assign("events", 0, -1, -1);
        let s = t.slot("events", 0).unwrap();
        (t, s)
    }

    #[test]
    fn unread_messages_are_unknown_until_reported_and_again_after_reassignment() {
        let (mut t, s) = tracker();
        assert!(t.unread(s, true) && !t.unread(s, false), "unknown at first");
        t.set_unread("events", 0, true);
        assert!(t.unread(s, false));
        t.set_unread("events", 0, false);
        assert!(!t.unread(s, true));
        t.set_unread("other", 0, true);
        assert!(!t.unread(s, true), "another topic's report");
        t.assign("events", 0, 5, -1);
        assert!(!t.unread(s, false) && t.unread(s, true), "unknown again");
    }

    #[test]
    fn events_without_outputs_are_committable_at_once() {
        let (mut t, s) = tracker();
        assert_eq!(t.committable(s), None);
        t.processed(s, 0, 0);
        t.processed(s, 1, 0);
        assert_eq!(t.committable(s), Some(2));
    }

    #[test]
    fn an_unacknowledged_output_holds_back_every_later_offset() {
        let (mut t, s) = tracker();
        t.processed(s, 0, 0);
        let o1 = t.processed(s, 1, 2);
        t.processed(s, 2, 0);
        let o3 = t.processed(s, 3, 1);
        t.processed(s, 4, 0);
        assert_eq!(t.committable(s), Some(1));
        t.acked(o3);
        assert_eq!(
            t.committable(s),
            Some(1),
            "a later ack does not release offset 1"
        );
        t.acked(o1);
        assert_eq!(t.committable(s), Some(1), "offset 1 has two outputs");
        t.acked(o1);
        assert_eq!(t.committable(s), Some(5));
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn acknowledgements_from_before_a_reassignment_are_ignored() {
        let (mut t, s) = tracker();
        let o = t.processed(s, 7, 1);
        t.revoke("events", 0);
        t.assign("events", 0, 7, 7);
        let s2 = t.slot("events", 0).unwrap();
        assert_eq!(s, s2, "slots are reused");
        let o2 = t.processed(s2, 7, 1);
        t.acked(o);
        assert_eq!(
            t.committable(s2),
            Some(7),
            "stale ack must not release offset 7"
        );
        t.acked(o2);
        assert_eq!(t.committable(s2), Some(8));
    }

    #[test]
    fn warmup_and_skip_follow_committed_and_seen_offsets() {
        let mut t = Tracker::new();
        t.assign("events", 3, 10, 10);
        let s = t.slot("events", 3).unwrap();
        assert_eq!(t.handling(s, 4), Handling::Warmup);
        assert!(t.warming());
        t.fed(s, 9);
        assert!(!t.warming());
        assert_eq!(t.handling(s, 9), Handling::Skip);
        assert_eq!(t.handling(s, 10), Handling::Live);
        t.revoke("events", 3);
        assert_eq!(t.handling(s, 10), Handling::NotAssigned);
        assert_eq!(t.slot("events", 3), None);
        assert_eq!(
            t.seen_through("events", 3),
            9,
            "state outlives the assignment"
        );
    }

    #[test]
    fn to_commit_lists_only_partitions_that_moved() {
        let (mut t, s) = tracker();
        t.assign("events", 1, -1, -1);
        t.processed(s, 0, 0);
        let c = t.to_commit(None);
        assert_eq!(c, vec![(s, "events".to_string(), 0, 1)]);
        t.set_committed(s, 1);
        assert!(t.to_commit(None).is_empty());
    }

    #[test]
    fn slots_are_found_by_topic_and_partition_and_only_while_assigned() {
        let mut t = Tracker::new();
        t.assign("a", 3, -1, -1);
        t.assign("b", 3, -1, -1);
        t.assign("a", 0, -1, -1);
        let (a3, b3, a0) = (t.slot("a", 3), t.slot("b", 3), t.slot("a", 0));
        assert!(a3.is_some() && b3.is_some() && a0.is_some());
        assert_ne!(a3, b3);
        assert_ne!(a3, a0);
        assert_eq!(t.slot("a", 1), None);
        assert_eq!(t.slot("a", -1), None);
        assert_eq!(t.slot("c", 3), None);
        t.revoke("a", 3);
        assert_eq!(t.slot("a", 3), None);
        assert_eq!(t.slot("b", 3), b3);
        t.assign("a", 3, -1, -1);
        assert_eq!(t.slot("a", 3), a3, "a re-assigned partition keeps its slot");
    }
}
