//! The in-memory index of the embedded store: where every live message is
//! on disk, which queue it is in, when it is due and whether it is leased.
//! Rebuilt from the log at start; bodies are never held here.

use crate::QueueStats;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Where a live message is.
#[derive(Debug, Clone)]
pub struct Entry {
    pub queue: Arc<str>,
    pub not_before_ms: u64,
    pub segment: u32,
    pub offset: u64,
    pub len: u32,
    pub leased: bool,
}

#[derive(Debug, Default)]
struct QueueIndex {
    /// Not leased, in delivery order: (due time, id).
    waiting: BTreeSet<(u64, u64)>,
    leased: u64,
}

/// Per-segment live accounting, to know when a segment file can go.
#[derive(Debug, Default, Clone, Copy)]
pub struct SegmentLive {
    pub messages: u64,
    pub bytes: u64,
}

#[derive(Debug, Default)]
pub struct Index {
    messages: HashMap<u64, Entry>,
    queues: HashMap<Arc<str>, QueueIndex>,
    pub segments: std::collections::BTreeMap<u32, SegmentLive>,
}

impl Index {
    fn queue_name(&mut self, name: &str) -> Arc<str> {
        match self.queues.get_key_value(name) {
            Some((k, _)) => k.clone(),
            None => {
                let k: Arc<str> = Arc::from(name);
                self.queues.insert(k.clone(), QueueIndex::default());
                k
            }
        }
    }

    /// Adds (or, for a relocated record, moves) a message.
    pub fn insert(&mut self, id: u64, queue: &str, not_before_ms: u64, segment: u32, offset: u64, len: u32) {
        self.remove(id);
        let queue = self.queue_name(queue);
        if let Some(q) = self.queues.get_mut(&queue) {
            q.waiting.insert((not_before_ms, id));
        }
        let live = self.segments.entry(segment).or_default();
        live.messages += 1;
        live.bytes += len as u64;
        self.messages.insert(
            id,
            Entry {
                queue,
                not_before_ms,
                segment,
                offset,
                len,
                leased: false,
            },
        );
    }

    /// Deletes a message (acked); unknown ids are ignored.
    pub fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.messages.remove(&id)?;
        if let Some(q) = self.queues.get_mut(&e.queue) {
            if e.leased {
                q.leased = q.leased.saturating_sub(1);
            } else {
                q.waiting.remove(&(e.not_before_ms, id));
            }
        }
        if let Some(live) = self.segments.get_mut(&e.segment) {
            live.messages = live.messages.saturating_sub(1);
            live.bytes = live.bytes.saturating_sub(e.len as u64);
        }
        Some(e)
    }

    /// Leases up to `max` messages of `queue` due at `now`.
    pub fn lease(&mut self, queue: &str, max: usize, now: u64) -> Vec<(u64, Entry)> {
        let Some(q) = self.queues.get_mut(queue) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while out.len() < max {
            let Some(&(due, id)) = q.waiting.first() else { break };
            if due > now {
                break;
            }
            q.waiting.pop_first();
            q.leased += 1;
            if let Some(e) = self.messages.get_mut(&id) {
                e.leased = true;
                out.push((id, e.clone()));
            }
        }
        out
    }

    /// Returns a leased message to its queue.
    pub fn unlease(&mut self, id: u64) {
        let Some(e) = self.messages.get_mut(&id) else { return };
        if !e.leased {
            return;
        }
        e.leased = false;
        if let Some(q) = self.queues.get_mut(&e.queue) {
            q.leased = q.leased.saturating_sub(1);
            q.waiting.insert((e.not_before_ms, id));
        }
    }

    /// True if `id` is live and leased.
    pub fn is_leased(&self, id: u64) -> bool {
        self.messages.get(&id).is_some_and(|e| e.leased)
    }

    /// The first `max` waiting messages of `queue`, in order, without leasing.
    pub fn peek(&self, queue: &str, max: usize) -> Vec<(u64, Entry)> {
        let Some(q) = self.queues.get(queue) else {
            return Vec::new();
        };
        q.waiting
            .iter()
            .take(max)
            .filter_map(|(_, id)| self.messages.get(id).map(|e| (*id, e.clone())))
            .collect()
    }

    /// When the next message of `queue` becomes due, if any waits.
    pub fn next_due(&self, queue: &str) -> Option<u64> {
        self.queues.get(queue)?.waiting.first().map(|(due, _)| *due)
    }

    /// Live messages stored in `segment`.
    pub fn in_segment(&self, segment: u32) -> Vec<(u64, Entry)> {
        self.messages
            .iter()
            .filter(|(_, e)| e.segment == segment)
            .map(|(id, e)| (*id, e.clone()))
            .collect()
    }

    pub fn stats(&self, now: u64) -> Vec<QueueStats> {
        let mut v: Vec<QueueStats> = self
            .queues
            .iter()
            .map(|(name, q)| {
                let ready = q.waiting.range(..(now + 1, 0)).count() as u64;
                QueueStats {
                    name: name.to_string(),
                    ready,
                    delayed: q.waiting.len() as u64 - ready,
                    leased: q.leased,
                }
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }
}

impl Index {
    /// Points a live message at its new location after relocation, keeping its lease.
    pub fn relocate(&mut self, id: u64, segment: u32, offset: u64, len: u32) {
        let Some(e) = self.messages.get_mut(&id) else { return };
        let old = e.segment;
        e.segment = segment;
        e.offset = offset;
        e.len = len;
        if let Some(live) = self.segments.get_mut(&old) {
            live.messages = live.messages.saturating_sub(1);
            live.bytes = live.bytes.saturating_sub(len as u64);
        }
        let live = self.segments.entry(segment).or_default();
        live.messages += 1;
        live.bytes += len as u64;
    }
}
