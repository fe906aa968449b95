//! What the shaping and settings-database tests share: messages to inject,
//! the receiver's records, SQL on a SQLite file, requests to the REST API.

use super::peers::recorded;
use super::Daemon;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs SQL on the SQLite file at `db` with Python's sqlite3 module.
pub fn sql(db: &Path, statements: &str) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()",
        ])
        .arg(db)
        .arg(statements)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sqlite3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn message(i: usize, domain: &str) -> Value {
    json!({
        "envelope": "sender@example.net",
        "recipient": format!("user{i}@{domain}"),
        "mime": format!("From: sender@example.net\r\nSubject: {i}\r\n\r\nbody {i}\r\n"),
    })
}

/// Injects JSON messages into the outbox with `sluice inject`.
pub fn inject(d: &Daemon, messages: &[Value]) {
    let lines: String = messages.iter().map(|m| format!("{m}\n")).collect();
    let out = d.cli(&["inject"], lines.as_bytes());
    assert!(out.status.success(), "inject: {}", String::from_utf8_lossy(&out.stderr));
}

/// Waits until the receiver recorded `n` messages (at most `within`).
pub fn arrivals(out: &Path, n: usize, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let seen = recorded(out);
        if seen.len() >= n || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Arrival times (seconds) of the messages to `domain`.
pub fn times(seen: &[Value], domain: &str) -> Vec<f64> {
    seen.iter()
        .filter(|m| m["to"][0].as_str().is_some_and(|r| r.ends_with(&format!("@{domain}"))))
        .map(|m| m["t"].as_f64().unwrap())
        .collect()
}

/// One HTTP request to the daemon's API; returns the status code and the body.
pub fn request(
    d: &Daemon,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
    auth: Option<&str>,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", d.www)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: t\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let code = answer.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// A message to `domain` sent from local IP `ip` (its `ips`).
pub fn from_ip(i: usize, domain: &str, ip: &str) -> Value {
    let mut m = message(i, domain);
    m["ips"] = json!([ip]);
    m
}

/// The EHLO name the receiver recorded for the message that came from `peer`.
pub fn ehlo_of(seen: &[Value], peer: &str) -> String {
    seen.iter()
        .find(|m| m["peer"] == peer)
        .map(|m| m["ehlo"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}
