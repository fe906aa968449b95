//! The command line: `sluice inject`, `send` (and `sendmail`), `queue`, talking
//! to the running daemon's HTTP API.

mod client;
pub mod send;
pub mod settings;

use crate::config::Config;
use anyhow::{bail, Context, Result};
use client::ApiClient;
use serde_json::{json, Value};
use std::io::Read;

/// `sluice inject [FILE]`: JSON messages (one object, an array, or one per line) to the outbox.
pub fn inject(c: &Config, file: Option<&std::path::Path>) -> Result<()> {
    let data = match file {
        Some(p) if p.as_os_str() != "-" => std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
        _ => {
            let mut v = Vec::new();
            std::io::stdin().read_to_end(&mut v)?;
            v
        }
    };
    let r = ApiClient::from_config(c).call("POST", "/inject", &data)?;
    println!("{r}");
    Ok(())
}

/// Options of `sluice send`.
#[derive(Debug, Default, Clone)]
pub struct SendOptions {
    pub envelope: Option<String>,
    pub extract_recipients: bool,
    pub ignore_dot: bool,
    pub recipients: Vec<String>,
    pub command: String,
    pub arguments: Vec<String>,
}

/// `sluice send`: a message from stdin to the inbox.
pub fn send(c: &Config, o: SendOptions) -> Result<()> {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input)?;
    let mut mime = send::read_message(&input, o.ignore_dot);
    let mut recipients = o.recipients.clone();
    if o.extract_recipients {
        for h in ["to", "cc", "bcc"] {
            for v in send::header_values(&mime, h) {
                recipients.extend(send::addresses(&v));
            }
        }
        mime = send::remove_header(&mime, "bcc");
    }
    if recipients.is_empty() {
        bail!("no recipients: give them as arguments or use --extract-recipients (-t)");
    }
    let envelope = o.envelope.clone().unwrap_or_else(|| send::envelope_from_headers(&mime));
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_default();
    let body = json!({
        "envelope": envelope,
        "recipients": recipients,
        "mime": String::from_utf8_lossy(&mime),
        "cli": { "command": o.command, "arguments": o.arguments, "user": user },
    });
    let r = ApiClient::from_config(c).call("POST", "/submit", body.to_string().as_bytes())?;
    if let Some(ids) = r.get("ids").and_then(Value::as_array) {
        for id in ids {
            eprintln!("queued as {}", id.as_str().unwrap_or_default());
        }
    }
    Ok(())
}

/// `sluice queue stats`.
/// `sluice policy show DOMAIN [--from IP] [--mx HOSTS]`: the limits in force, where each comes from, and the live state.
pub fn policy_show(c: &Config, domain: &str, from: Option<&str>, mx: Option<&str>) -> Result<()> {
    let mut query = format!("/v1/policy?domain={}", encode(domain));
    if let Some(f) = from {
        query.push_str(&format!("&from={}", encode(f)));
    }
    if let Some(m) = mx {
        query.push_str(&format!("&mx={}", encode(m)));
    }
    let r = ApiClient::from_config(c).call("GET", &query, b"")?;
    println!(
        "{} from {}",
        r["domain"].as_str().unwrap_or(domain),
        r["from"].as_str().unwrap_or("any local IP")
    );
    if let Some(limits) = r["limits"].as_object() {
        for (name, l) in limits {
            let value = l["value"].as_str().map_or("unlimited".to_string(), str::to_string);
            println!("  {name:<24} {value:<12} ({})", l["from"].as_str().unwrap_or(""));
        }
    }
    println!("  open connections         {}", r["open_connections"]);
    println!(
        "  last minute              {} messages, {} connections",
        r["messages_last_minute"], r["connections_last_minute"]
    );
    for e in r["flood_effects"].as_array().into_iter().flatten() {
        println!(
            "  flood rule {}: paused {}s, reduced {}s left",
            e["rule"], e["paused_seconds_left"], e["reduced_seconds_left"]
        );
    }
    for p in r["pauses"].as_array().into_iter().flatten() {
        println!(
            "  paused (row {}, {}): {}",
            p["id"],
            p["reason"],
            match p["seconds_left"].as_u64() {
                Some(s) => format!("{s}s left"),
                None => "until removed".into(),
            }
        );
    }
    Ok(())
}

/// `sluice trace KEY`: one line per event of the messages with this
/// message-id (or to this recipient), oldest first.
pub fn trace(c: &Config, key: &str) -> Result<()> {
    let events = ApiClient::from_config(c).call("GET", &format!("/v1/trace/{}", encode(key)), b"")?;
    let events = events.as_array().cloned().unwrap_or_default();
    anyhow::ensure!(
        !events.is_empty(),
        "no trace of {key} (the trace keeps the newest events, up to trace-size)"
    );
    let text = |e: &serde_json::Value, k: &str| e[k].as_str().map(str::to_string).unwrap_or_else(|| e[k].to_string());
    for e in &events {
        let id = text(e, "message-id");
        match e["event"].as_str() {
            Some("received") => {
                let how = match (e["via"].as_str(), e["connection"].as_object()) {
                    (Some(via), _) => via.to_string(),
                    (None, Some(c)) => format!(
                        "smtp from {} (helo {}{})",
                        c.get("remote-ip").and_then(|v| v.as_str()).unwrap_or("?"),
                        c.get("helo").and_then(|v| v.as_str()).unwrap_or("?"),
                        c.get("user")
                            .and_then(|v| v.as_str())
                            .map(|u| format!(", user {u}"))
                            .unwrap_or_default()
                    ),
                    (None, None) if e["cli"].is_object() => "the command line".to_string(),
                    _ => "?".to_string(),
                };
                println!(
                    "{}  {id}  received via {how}: {} -> {} (queue {})",
                    text(e, "received"),
                    text(e, "envelope"),
                    text(e, "recipient"),
                    text(e, "queue")
                );
            }
            Some("attempt") => {
                let mut line = format!(
                    "{}  {id}  attempt {} to {}: {}/{}",
                    text(e, "time"),
                    e["attempt"],
                    text(e, "recipient"),
                    text(e, "state"),
                    text(e, "result")
                );
                if let Some(mta) = e["mta"].as_str() {
                    line.push_str(&format!(" at {mta}"));
                }
                if let Some(to) = e["to"].as_str() {
                    line.push_str(&format!(" [{to}]"));
                }
                if let Some(from) = e["from"].as_str() {
                    line.push_str(&format!(" from {from}"));
                }
                if let Some(cipher) = e["cipher"].as_str() {
                    line.push_str(&format!(" tls {cipher}"));
                }
                if e["code"].is_u64() {
                    line.push_str(&format!(" {} {}", e["code"], text(e, "status")));
                }
                line.push_str(&format!(" \"{}\" -> {}", text(e, "description"), text(e, "verdict")));
                println!("{line}");
            }
            _ => println!("{e}"),
        }
    }
    Ok(())
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b',' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn stats(c: &Config) -> Result<()> {
    let r = ApiClient::from_config(c).call("GET", "/queues", b"")?;
    for q in r.as_array().into_iter().flatten() {
        println!("{q}");
    }
    Ok(())
}

/// `sluice queue peek|pop NAME [-n N] [--follow]`: JSON lines on stdout.
pub fn read(c: &Config, name: &str, n: usize, pop: bool, follow: bool) -> Result<()> {
    let client = ApiClient::from_config(c);
    let name = encode_path(name);
    let mut left = n;
    loop {
        let r = if pop {
            let wait = if follow { 5 } else { 0 };
            client.call("POST", &format!("/queues/{name}/pop?n={left}&wait={wait}"), b"")?
        } else {
            client.call("GET", &format!("/queues/{name}?n={left}"), b"")?
        };
        let got = r.as_array().cloned().unwrap_or_default();
        for m in &got {
            println!("{m}");
        }
        if !(pop && follow) {
            return Ok(());
        }
        use std::io::Write as _;
        std::io::stdout().flush()?;
        left = n;
    }
}

fn encode_path(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
