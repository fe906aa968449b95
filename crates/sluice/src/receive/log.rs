//! `received-log`: one JSON line per received message copy (the queued JSON
//! without its MIME, plus `size` and `queue`), written by its own thread so a
//! slow disk never holds up a session.

use anyhow::{Context, Result};
use serde_json::{Map, Value};
use std::io::Write;
use std::sync::mpsc;
use std::sync::Mutex;

/// The log, or nothing when `received-log` is unset.
pub struct ReceivedLog {
    tx: Option<Mutex<mpsc::Sender<String>>>,
}

impl ReceivedLog {
    /// Opens `path` for appending and starts the writer thread.
    pub fn open(path: Option<&str>) -> Result<ReceivedLog> {
        let Some(path) = path else {
            return Ok(ReceivedLog { tx: None });
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("received-log: cannot open {path}"))?;
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::Builder::new().name("received-log".into()).spawn(move || {
            let mut out = std::io::BufWriter::new(file);
            while let Ok(line) = rx.recv() {
                let mut result = writeln!(out, "{line}");
                while let Ok(more) = rx.try_recv() {
                    result = result.and_then(|()| writeln!(out, "{more}"));
                }
                if let Err(e) = result.and_then(|()| out.flush()) {
                    tracing::warn!(error = %e, "received-log: write failed");
                }
            }
        })?;
        Ok(ReceivedLog {
            tx: Some(Mutex::new(tx)),
        })
    }

    /// Logs stored messages (call after they are durable).
    pub fn record(&self, queue: &str, messages: &[Map<String, Value>]) {
        let Some(tx) = &self.tx else { return };
        let Ok(tx) = tx.lock() else { return };
        for m in messages {
            let mut line = m.clone();
            let size = line.remove("mime").and_then(|v| v.as_str().map(str::len)).unwrap_or(0);
            line.insert("size".into(), size.into());
            line.insert("queue".into(), queue.into());
            let _ = tx.send(Value::Object(line).to_string());
        }
    }
}
