//! Timestamps in the spec's format and message ids unique across instances.

use std::sync::atomic::{AtomicU64, Ordering};

/// Now, UTC, as `YYYY-MM-DD HH:MM:SS`.
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Makes message ids: `server-id`, the process start time and a counter,
/// so ids never repeat across restarts or instances with distinct server ids.
#[derive(Debug)]
pub struct IdGenerator {
    prefix: String,
    counter: AtomicU64,
}

impl IdGenerator {
    pub fn new(server_id: u64) -> Self {
        let boot = chrono::Utc::now().timestamp_millis();
        IdGenerator {
            prefix: format!("{server_id}.{boot:x}."),
            counter: AtomicU64::new(0),
        }
    }

    pub fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}{n:x}", self.prefix)
    }
}
