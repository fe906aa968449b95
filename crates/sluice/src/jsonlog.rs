//! A JSON-lines file written by its own thread, so a slow disk never holds
//! up a session or a delivery (`received-log`, `send-log`, the message
//! trace); optionally bounded: past a size it becomes the older file (the
//! one before it dropped) and a new one starts.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Mutex;

/// The file being written and how much it holds.
struct File {
    out: std::io::BufWriter<std::fs::File>,
    len: u64,
}

impl File {
    fn open(key: &str, path: &Path) -> Result<File> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("{key}: cannot open {}", path.display()))?;
        let len = file.metadata().map_or(0, |m| m.len());
        Ok(File {
            out: std::io::BufWriter::new(file),
            len,
        })
    }

    fn line(&mut self, line: &str) -> std::io::Result<()> {
        writeln!(self.out, "{line}")?;
        self.len += line.len() as u64 + 1;
        Ok(())
    }

    fn rotate(&mut self, key: &str, path: &Path, older: &Path) -> std::io::Result<()> {
        self.out.flush()?;
        std::fs::rename(path, older)?;
        *self = File::open(key, path).map_err(std::io::Error::other)?;
        Ok(())
    }
}

/// An open log, or nothing when its key is unset.
pub struct JsonLog {
    tx: Option<Mutex<mpsc::Sender<String>>>,
}

impl JsonLog {
    /// Opens `path` for appending and starts the writer thread; `key` names
    /// the config key in errors and the thread.
    pub fn open(key: &'static str, path: Option<&str>) -> Result<JsonLog> {
        match path {
            None => Ok(JsonLog { tx: None }),
            Some(path) => JsonLog::start(key, Path::new(path), None),
        }
    }

    /// As [`JsonLog::open`], the file at most `max` bytes: past it, it is
    /// renamed to `older` (replacing the one there) and a new one begun.
    pub fn rotating(key: &'static str, path: &Path, max: u64, older: &Path) -> Result<JsonLog> {
        JsonLog::start(key, path, Some((max.max(1), older.to_path_buf())))
    }

    fn start(key: &'static str, path: &Path, rotate: Option<(u64, PathBuf)>) -> Result<JsonLog> {
        let mut file = File::open(key, path)?;
        let path = path.to_path_buf();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::Builder::new().name(key.into()).spawn(move || {
            while let Ok(line) = rx.recv() {
                let mut result = Ok(());
                for line in std::iter::once(line).chain(rx.try_iter()) {
                    if let Some((max, older)) = &rotate {
                        if file.len >= *max {
                            result = result.and_then(|()| file.rotate(key, &path, older));
                        }
                    }
                    result = result.and_then(|()| file.line(&line));
                }
                if let Err(e) = result.and_then(|()| file.out.flush()) {
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
