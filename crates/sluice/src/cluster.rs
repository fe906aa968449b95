//! The instances sharing a RabbitMQ broker, for the console's Instances
//! page (MailerQ's cluster view): this instance's card — host name, console
//! address, version — announced through the broker, and the others' cards
//! read back and checked (they are input from any program on the broker).

use crate::config::Config;
use serde_json::{json, Value};
use sluice_queue::rabbitmq::cluster::Peers;
use std::time::Duration;

/// How often each instance announces itself.
pub const EVERY: Duration = Duration::from_secs(5);

/// This instance: its id on the broker and its card.
pub struct Card {
    pub id: String,
    pub card: Value,
}

/// The card from the config: `www-url` when set (MailerQ's key), else the
/// console on `www-ip` (or the host name when that is a wildcard), HTTPS
/// when `www-secure-port` is set.
pub fn card(c: &Config, hostname: &str) -> Card {
    let s = &c.settings;
    let console = s.www_url.clone().unwrap_or_else(|| {
        let host = match s.www_ip.first() {
            Some(ip) if !ip.is_unspecified() && ip.is_ipv6() => format!("[{ip}]"),
            Some(ip) if !ip.is_unspecified() => ip.to_string(),
            _ => hostname.to_string(),
        };
        match s.www_secure_port.first() {
            Some(port) => format!("https://{host}:{port}/console"),
            None => format!("http://{host}:{}/console", s.www_port),
        }
    });
    let id: String = format!("{hostname}-{}-{}", std::process::id(), sluice_queue::now_ms())
        .chars()
        .take(64)
        .collect();
    Card {
        card: json!({"hostname": hostname, "console": console, "version": env!("CARGO_PKG_VERSION")}),
        id,
    }
}

/// A text field of a card when it is short and printable.
fn text(card: &Value, key: &str, max: usize) -> Option<String> {
    let v = card.get(key)?.as_str()?;
    (!v.is_empty() && v.len() <= max && !v.chars().any(char::is_control)).then(|| v.to_string())
}

/// The instances heard from in the last three announcements, this one
/// marked `self`; cards that do not check out are left out (and logged).
pub fn instances(peers: &Peers, me: &str) -> Vec<Value> {
    peers
        .seen(EVERY * 3)
        .into_iter()
        .filter_map(|(id, bytes, age)| {
            let card: Value = serde_json::from_slice(&bytes).ok()?;
            let hostname = text(&card, "hostname", 255);
            // Only web addresses become links in the console.
            let console = text(&card, "console", 512)
                .filter(|u| u.starts_with("http://") || u.starts_with("https://"));
            let Some(hostname) = hostname else {
                tracing::debug!(id = %sluice_smtp::wire::shown(&id), "cluster: a card without a usable hostname, skipped");
                return None;
            };
            Some(json!({
                "hostname": hostname,
                "console": console,
                "version": text(&card, "version", 64),
                "seen_seconds_ago": age.as_secs(),
                "self": id == me,
            }))
        })
        .collect()
}
