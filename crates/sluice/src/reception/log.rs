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

    /// Whether lines go anywhere (so callers can skip building them).
    pub fn enabled(&self) -> bool {
        self.0.enabled()
    }

    /// Logs one stored copy (call after it is durable): its JSON without the
    /// MIME, with `size` already set; `queue` is added here. The copy's
    /// `received` event goes to the message trace too.
    pub fn record(&self, queue: &str, mut line: Map<String, Value>) {
        line.insert("queue".into(), queue.into());
        if self.0.enabled() {
            self.0.write(Value::Object(line.clone()).to_string());
        }
        crate::trace::get().record("received", line);
    }
}
