//! Which offsets may be committed: per partition, only the contiguous prefix of records
//! that are done (durable, or dead-lettered).
//!
//! Records of one partition are processed concurrently and finish in any order. The
//! committable offset of a partition is the first record still pending, or one past the
//! last record dispatched when none is pending: never past an unfinished record.
//!
//! A partition's bookkeeping is dropped when it is revoked; records of it that finish
//! later carry the old generation and are ignored (their partition is someone else's
//! now, and the new owner reads them again from the last commit).

use std::collections::{BTreeSet, HashMap};

/// Topic and partition.
pub type Tp = (String, i32);

#[derive(Debug)]
struct Part {
    generation: u64,
    /// Dispatched and not finished.
    pending: BTreeSet<i64>,
    /// Dispatched, finished, but not done (abandoned at shutdown or by a failed task):
    /// committing stops before the lowest of them for good.
    stuck: Option<i64>,
    /// One past the highest offset dispatched.
    next: i64,
    /// The committable offset last handed out.
    stored: i64,
}

impl Part {
    fn committable(&self) -> i64 {
        let first_pending = self.pending.first().copied().unwrap_or(self.next);
        match self.stuck {
            Some(s) => first_pending.min(s),
            None => first_pending,
        }
    }
}

/// Offsets of every partition this consumer holds.
#[derive(Debug, Default)]
pub struct Offsets {
    parts: HashMap<Tp, Part>,
    generations: u64,
    /// Records dispatched and not finished, over all partitions (revoked ones included).
    in_flight: usize,
}

impl Offsets {
    /// Records a dispatched record; returns the generation to finish it with.
    pub fn dispatch(&mut self, topic: &str, partition: i32, offset: i64) -> u64 {
        self.in_flight += 1;
        let key = (topic.to_string(), partition);
        if !self.parts.contains_key(&key) {
            self.generations += 1;
            self.parts.insert(
                key.clone(),
                Part {
                    generation: self.generations,
                    pending: BTreeSet::new(),
                    stuck: None,
                    next: offset,
                    stored: offset,
                },
            );
        }
        let part = self.parts.get_mut(&key).expect("just inserted");
        part.pending.insert(offset);
        part.next = part.next.max(offset + 1);
        part.generation
    }

    /// Records a finished record. `done` is false when it was abandoned (not durable).
    /// Returns the partition's new committable offset when it moved forward.
    pub fn finish(
        &mut self,
        topic: &str,
        partition: i32,
        generation: u64,
        offset: i64,
        done: bool,
    ) -> Option<i64> {
        self.in_flight = self.in_flight.saturating_sub(1);
        let part = self.parts.get_mut(&(topic.to_string(), partition))?;
        if part.generation != generation || !part.pending.remove(&offset) {
            return None;
        }
        if !done {
            part.stuck = Some(part.stuck.map_or(offset, |s| s.min(offset)));
        }
        let c = part.committable();
        (c > part.stored).then(|| {
            part.stored = c;
            c
        })
    }

    /// Forgets a partition (revoked or lost); returns how many of its records were still
    /// pending.
    pub fn revoke(&mut self, topic: &str, partition: i32) -> usize {
        self.parts
            .remove(&(topic.to_string(), partition))
            .map_or(0, |p| p.pending.len())
    }

    /// Records of `tp` dispatched and not finished.
    pub fn pending(&self, topic: &str, partition: i32) -> usize {
        self.parts
            .get(&(topic.to_string(), partition))
            .map_or(0, |p| p.pending.len())
    }

    /// Records dispatched and not finished, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_the_contiguous_done_prefix() {
        let mut o = Offsets::default();
        let g = o.dispatch("t", 0, 10);
        for off in 11..15 {
            assert_eq!(o.dispatch("t", 0, off), g);
        }
        assert_eq!(o.in_flight(), 5);
        // 12 and 11 finish before 10: nothing may be committed yet
        assert_eq!(o.finish("t", 0, g, 12, true), None);
        assert_eq!(o.finish("t", 0, g, 11, true), None);
        // 10 done: 10..=12 are done, 13 is the first pending
        assert_eq!(o.finish("t", 0, g, 10, true), Some(13));
        assert_eq!(o.finish("t", 0, g, 14, true), None);
        assert_eq!(o.finish("t", 0, g, 13, true), Some(15));
        assert_eq!(o.in_flight(), 0);
        // unknown or repeated finishes change nothing
        assert_eq!(o.finish("t", 0, g, 13, true), None);
        assert_eq!(o.finish("t", 7, g, 1, true), None);
    }

    #[test]
    fn partitions_are_independent() {
        let mut o = Offsets::default();
        let a = o.dispatch("t", 0, 0);
        let b = o.dispatch("t", 1, 100);
        o.dispatch("t", 0, 1);
        assert_eq!(o.finish("t", 1, b, 100, true), Some(101));
        assert_eq!(o.finish("t", 0, a, 1, true), None);
        assert_eq!(o.pending("t", 0), 1);
        assert_eq!(o.finish("t", 0, a, 0, true), Some(2));
    }

    #[test]
    fn an_abandoned_record_holds_the_commit_back_for_good() {
        let mut o = Offsets::default();
        let g = o.dispatch("t", 0, 5);
        o.dispatch("t", 0, 6);
        o.dispatch("t", 0, 7);
        assert_eq!(o.finish("t", 0, g, 6, false), None);
        assert_eq!(o.finish("t", 0, g, 5, true), Some(6));
        assert_eq!(o.finish("t", 0, g, 7, true), None);
        o.dispatch("t", 0, 8);
        assert_eq!(o.finish("t", 0, g, 8, true), None);
        assert_eq!(o.in_flight(), 0);
    }

    #[test]
    fn finishes_from_before_a_revoke_are_ignored() {
        let mut o = Offsets::default();
        let old = o.dispatch("t", 0, 0);
        o.dispatch("t", 0, 1);
        assert_eq!(o.revoke("t", 0), 2);
        // assigned again, re-read from the last commit
        let new = o.dispatch("t", 0, 0);
        assert_ne!(old, new);
        assert_eq!(o.finish("t", 0, old, 0, true), None);
        assert_eq!(o.finish("t", 0, old, 1, true), None);
        assert_eq!(o.pending("t", 0), 1);
        assert_eq!(o.finish("t", 0, new, 0, true), Some(1));
        assert_eq!(o.in_flight(), 0);
    }
}
