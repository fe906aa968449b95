//! The trace of every message: one JSON line per event — `received` (how
//! and from whom), each `attempt` (MX, IP, reply, TLS, and what it meant) —
//! in `DATA/trace/`, keyed by the message's `message-id`. Written by its own
//! thread (a slow disk holds up no session); bounded: two files of half of
//! `trace-size` each, the older one dropped when the newer is full. Read by
//! `GET /v1/trace/KEY` and `sluice trace KEY` (a message-id or a recipient).

use crate::jsonlog::JsonLog;
use serde_json::{Map, Value};
use std::io::BufRead;
use std::path::{Path, PathBuf};

const CURRENT: &str = "trace.jsonl";
const OLDER: &str = "trace.1.jsonl";

/// The most events one lookup returns (a recipient with years of mail).
pub const MAX_EVENTS: usize = 1000;

/// The trace writer (nothing when `trace-size` is 0).
pub struct Trace {
    log: Option<JsonLog>,
    /// Every event as it is recorded, for live listeners (`/v1/results/live`).
    live: tokio::sync::broadcast::Sender<std::sync::Arc<str>>,
}

/// Events a live listener may fall behind by before it skips ahead.
const LIVE_BACKLOG: usize = 1024;

impl Trace {
    /// A trace writing to `dir`, at most `size` bytes in all.
    pub fn open(dir: &Path, size: u64) -> anyhow::Result<Trace> {
        if size == 0 {
            return Ok(Trace::off());
        }
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("trace: cannot create {}: {e}", dir.display()))?;
        let log = JsonLog::rotating("trace", &dir.join(CURRENT), size / 2, &dir.join(OLDER))?;
        Ok(Trace {
            log: Some(log),
            ..Trace::off()
        })
    }

    fn off() -> Trace {
        Trace {
            log: None,
            live: tokio::sync::broadcast::channel(LIVE_BACKLOG).0,
        }
    }

    /// Events from now on, as JSON text, while the trace is enabled.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<str>> {
        self.live.subscribe()
    }

    /// Whether events go anywhere (so callers can skip building them).
    pub fn enabled(&self) -> bool {
        self.log.is_some()
    }

    /// Records one event: `fields` with `event` set to `kind`.
    pub fn record(&self, kind: &str, mut fields: Map<String, Value>) {
        let Some(log) = &self.log else { return };
        fields.insert("event".into(), kind.into());
        let text = Value::Object(fields).to_string();
        if self.live.receiver_count() > 0 {
            // Nobody listening is the usual case: no copy is made then.
            let _ = self.live.send(text.as_str().into());
        }
        log.write(text);
    }
}

static TRACE: std::sync::OnceLock<Trace> = std::sync::OnceLock::new();

/// Makes `trace` the process's trace (the daemon, once at start).
pub fn install(trace: Trace) {
    let _ = TRACE.set(trace);
}

/// The process's trace: reception and delivery record into it. Before
/// [`install`] (the CLI, in-process tests) it records nothing.
pub fn get() -> &'static Trace {
    static NONE: std::sync::OnceLock<Trace> = std::sync::OnceLock::new();
    TRACE.get().unwrap_or_else(|| NONE.get_or_init(Trace::off))
}

/// The events whose `message-id` or `recipient` is `key`, oldest first, at
/// most [`MAX_EVENTS`] (the newest ones when there are more).
pub fn find(dir: &Path, key: &str) -> std::io::Result<Vec<Value>> {
    // A cheap test before parsing: the key as it appears in the JSON text,
    // case aside (recipients match without case; ids are tested exactly below).
    let quoted = Value::String(key.to_ascii_lowercase()).to_string().into_bytes();
    let finder = memchr::memmem::Finder::new(&quoted);
    let mut lower = Vec::new();
    let mut found = std::collections::VecDeque::new();
    for name in [OLDER, CURRENT] {
        let path: PathBuf = dir.join(name);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in std::io::BufReader::new(file).lines() {
            let line = line?;
            lower.clear();
            lower.extend(line.bytes().map(|b| b.to_ascii_lowercase()));
            if finder.find(&lower).is_none() {
                continue;
            }
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue; // a line cut short by a crash
            };
            if event["message-id"] == key || event["recipient"].as_str().is_some_and(|r| r.eq_ignore_ascii_case(key)) {
                if found.len() == MAX_EVENTS {
                    found.pop_front();
                }
                found.push_back(event);
            }
        }
    }
    Ok(found.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: &str, rcpt: &str) -> Map<String, Value> {
        json!({"message-id": id, "recipient": rcpt})
            .as_object()
            .unwrap()
            .clone()
    }

    fn wait_for(dir: &Path, key: &str, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            let found = find(dir, key).unwrap();
            if found.len() >= n {
                return found;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        find(dir, key).unwrap()
    }

    #[test]
    fn events_are_found_by_id_or_recipient_and_the_size_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let t = Trace::open(dir.path(), 20_000).unwrap();
        t.record("received", event("A1", "a@x.test"));
        t.record("attempt", event("A1", "a@x.test"));
        t.record("received", event("B2", "b@x.test"));
        let a = wait_for(dir.path(), "A1", 2);
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[0]["event"].as_str(), a[1]["event"].as_str()),
            (Some("received"), Some("attempt"))
        );
        assert_eq!(
            wait_for(dir.path(), "B@X.test", 1).len(),
            1,
            "recipients match case-insensitively"
        );
        assert!(find(dir.path(), "A").unwrap().is_empty(), "a prefix is not a key");
        // 500 more events of ~60 bytes: the files rotate, their sum stays near the bound.
        for i in 0..500 {
            t.record("attempt", event(&format!("C{i}"), "c@x.test"));
        }
        wait_for(dir.path(), "C499", 1);
        let total: u64 = [CURRENT, OLDER]
            .iter()
            .map(|f| std::fs::metadata(dir.path().join(f)).map_or(0, |m| m.len()))
            .sum();
        assert!(total <= 20_000 + 200, "{total} bytes");
        assert!(find(dir.path(), "A1").unwrap().is_empty(), "the oldest events are gone");
        assert_eq!(find(dir.path(), "C499").unwrap().len(), 1);
    }
}
