//! `received-log`: one JSON line per received message copy (the queued JSON
//! without its MIME, plus `size` and `queue`), written by its own thread so a
//! slow disk never holds up a session.

use crate::jsonlog::JsonLog;
use anyhow::Result;
use serde_json::{Map, Value};

/// The log, or nothing when `received-log` is unset.
pub struct ReceivedLog(JsonLog);

impl ReceivedLog {
    /// Opens `path` for appending and starts the writer thread.
    pub fn open(path: Option<&str>) -> Result<ReceivedLog> {
        Ok(ReceivedLog(JsonLog::open("received-log", path)?))
    }

    /// Logs stored messages (call after they are durable).
    pub fn record(&self, queue: &str, messages: &[Map<String, Value>]) {
        if !self.0.enabled() {
            return;
        }
        for m in messages {
            let mut line = m.clone();
            let size = line.remove("mime").and_then(|v| v.as_str().map(str::len)).unwrap_or(0);
            line.insert("size".into(), size.into());
            line.insert("queue".into(), queue.into());
            self.0.write(Value::Object(line).to_string());
        }
    }
}
