//! A JSON-lines file written by its own thread, so a slow disk never holds
//! up a session or a delivery (`received-log`, `send-log`).

use anyhow::{Context, Result};
use std::io::Write;
use std::sync::mpsc;
use std::sync::Mutex;

/// An open log, or nothing when its key is unset.
pub struct JsonLog {
    tx: Option<Mutex<mpsc::Sender<String>>>,
}

impl JsonLog {
    /// Opens `path` for appending and starts the writer thread; `key` names
    /// the config key in errors and the thread.
    pub fn open(key: &'static str, path: Option<&str>) -> Result<JsonLog> {
        let Some(path) = path else {
            return Ok(JsonLog { tx: None });
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("{key}: cannot open {path}"))?;
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::Builder::new().name(key.into()).spawn(move || {
            let mut out = std::io::BufWriter::new(file);
            while let Ok(line) = rx.recv() {
                let mut result = writeln!(out, "{line}");
                while let Ok(more) = rx.try_recv() {
                    result = result.and_then(|()| writeln!(out, "{more}"));
                }
                if let Err(e) = result.and_then(|()| out.flush()) {
                    tracing::warn!(error = %e, "{key}: write failed");
                }
            }
        })?;
        Ok(JsonLog {
            tx: Some(Mutex::new(tx)),
        })
    }

    /// Whether lines go anywhere (so callers can skip building them).
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one line for writing.
    pub fn write(&self, line: String) {
        let Some(tx) = &self.tx else { return };
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(line);
        }
    }
}
