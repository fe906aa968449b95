//! Reading an outbox message (`spec/messages.md`, "Outgoing message"): the
//! JSON object, the envelope and recipient, and the limits that decide when
//! it expires.

use serde_json::{Map, Value};
use sluice_smtp::wire::{Credentials, Path};

/// One outbox message, parsed.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The whole object; results are built from it.
    pub json: Map<String, Value>,
    /// MAIL FROM; null = `<>`. Checked: nothing from the JSON reaches the wire unparsed.
    pub envelope: Path,
    pub recipient: Path,
    /// The recipient's domain, lower-cased.
    pub domain: String,
    /// Attempts already made (entries in `results` that were delivery attempts).
    pub attempts: u64,
    /// Give up after this time (unix ms).
    pub deadline_ms: u64,
    /// Give up after this many attempts; 0 = no limit.
    pub max_attempts: u64,
    /// The message's own relay (`smarthost`), checked.
    pub smarthost: Option<Smarthost>,
    /// Source addresses it may be sent from (`ips`, the valid ones); `None`
    /// = the configured ones. `Some` but empty (`"ips": []`, or none valid)
    /// fails the message, as MailerQ does.
    pub ips: Option<Vec<std::net::IpAddr>>,
    /// Not before this time (unix ms): `delayed` (MailerQ 5.x: `nextattempt`), set by the producer.
    pub delayed_ms: Option<u64>,
    /// The message's own retry schedule (`retries`, seconds between attempts,
    /// the last repeated), in ms; empty = `retry-interval`.
    pub retries_ms: Vec<u64>,
    /// `dsn-notify`, `dsn-ret`: for a `dsn` that names none.
    pub dsn_defaults: DsnDefaults,
}

/// `dsn-notify` and `dsn-ret` (MailerQ's): what a message's `dsn` says
/// when it says nothing, checked and in RFC 3461's spelling.
#[derive(Debug, Clone, Copy, Default)]
pub struct DsnDefaults {
    pub notify: Option<&'static str>,
    pub ret: Option<&'static str>,
}

/// A relay host (`smarthost*` config or a message's `smarthost`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Smarthost {
    pub host: String,
    pub port: u16,
    pub auth: Option<Credentials>,
}

/// Limits from the config that apply when a message names none.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    /// `max-delivertime` in seconds.
    pub max_delivertime: u64,
    /// `max-attempts`.
    pub max_attempts: u64,
    pub dsn: DsnDefaults,
}

/// Why a message cannot be delivered at all (`process/invalid`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("message is not valid JSON: {0}")]
    NotJson(String),
    #[error("message is not a JSON object")]
    NotObject,
    #[error("message has no recipient")]
    NoRecipient,
    #[error("recipient `{0}` has no domain")]
    NoDomain(String),
    #[error("recipient: {0}")]
    BadRecipient(sluice_smtp::wire::WireError),
    #[error("envelope: {0}")]
    BadEnvelope(sluice_smtp::wire::WireError),
    #[error("smarthost: {0}")]
    BadSmarthost(sluice_smtp::wire::WireError),
    #[error("property `{0}` is not a valid timestamp (YYYY-MM-DD HH:MM:SS)")]
    BadTime(&'static str),
    #[error("mime: {0}")]
    BadMime(String),
}

/// Parses a spec timestamp (UTC) to unix milliseconds.
pub fn parse_time(s: &str) -> Option<u64> {
    let t = chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
    u64::try_from(t.and_utc().timestamp_millis()).ok()
}

/// Formats unix milliseconds as a spec timestamp.
pub fn format_time(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

impl Outgoing {
    /// Parses a stored message; `received_ms` is when it entered the queue
    /// (the start of `max-delivertime` when the message has no `maxdelivertime`).
    pub fn parse(body: &[u8], defaults: Defaults, received_ms: u64) -> Result<Outgoing, Invalid> {
        let value: Value = serde_json::from_slice(body).map_err(|e| Invalid::NotJson(e.to_string()))?;
        let Value::Object(mut json) = value else {
            return Err(Invalid::NotObject);
        };
        let (envelope, recipient, smarthost) = addresses(&json)?;
        let domain = recipient.domain();
        let deadline_ms = match json.get("maxdelivertime") {
            Some(Value::String(t)) => parse_time(t).ok_or(Invalid::BadTime("maxdelivertime"))?,
            _ => {
                // The clock starts at reception when the message says when it was received.
                let start = json
                    .get("received")
                    .and_then(Value::as_str)
                    .and_then(parse_time)
                    .unwrap_or(received_ms);
                start + defaults.max_delivertime * 1000
            }
        };
        let max_attempts = match json.get("maxattempts") {
            Some(v) => number(v).unwrap_or(defaults.max_attempts),
            None => defaults.max_attempts,
        };
        let attempts = json
            .get("results")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    // Not attempts: entries of the message's own processing (MailerQ 4.x called them `amqp`).
                    .filter(|e| !matches!(e.get("state").and_then(Value::as_str), Some("process" | "amqp")))
                    .count() as u64
            })
            .unwrap_or(0);
        // Not an array: the configured IPs, as MailerQ.
        let ips = json
            .get("ips")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str()?.trim().parse().ok()).collect());
        let delayed_ms = ["delayed", "nextattempt"]
            .iter()
            .find_map(|k| json.get(*k).and_then(Value::as_str).and_then(parse_time));
        // MailerQ's JSON form of a message: assembled once, then it is MIME like any other.
        let assembled = match json.get("mime") {
            Some(Value::Object(parts)) => Some(super::mime_json::assemble(parts).map_err(Invalid::BadMime)?),
            _ => None,
        };
        if let Some(text) = assembled {
            json.insert("mime".into(), Value::String(text));
        }
        let retries_ms = retries(json.get("retries"));
        Ok(Outgoing {
            json,
            envelope,
            recipient,
            domain,
            attempts,
            deadline_ms,
            max_attempts,
            smarthost,
            ips,
            delayed_ms,
            retries_ms,
            dsn_defaults: defaults.dsn,
        })
    }

    /// When a DSN is wanted (RFC 3461 NOTIFY): the message's `dsn.notify`, else `dsn-notify`.
    pub fn dsn_notify(&self) -> Option<&str> {
        self.nested_str("dsn", "notify").or(self.dsn_defaults.notify)
    }

    /// What a DSN returns (`FULL`/`HDRS`): the message's `dsn.ret`, else `dsn-ret`.
    pub fn dsn_ret(&self) -> Option<&str> {
        self.nested_str("dsn", "ret").or(self.dsn_defaults.ret)
    }

    /// The wait before the next attempt after `attempts` attempts by the
    /// message's own `retries`, when it has them.
    pub fn retry_delay_ms(&self, attempts: u64) -> Option<u64> {
        let last = self.retries_ms.last()?;
        let i = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX);
        Some(*self.retries_ms.get(i).unwrap_or(last))
    }

    /// The MIME as stored, when the message carries it inline.
    pub fn mime(&self) -> Option<&str> {
        self.json.get("mime").and_then(Value::as_str)
    }

    /// Whether another attempt is allowed at `next_ms` after `attempts` attempts.
    pub fn may_try(&self, attempts: u64, next_ms: u64) -> bool {
        next_ms <= self.deadline_ms && (self.max_attempts == 0 || attempts < self.max_attempts)
    }

    /// A string property of an object property, e.g. `smarthost.name`.
    pub fn nested_str(&self, object: &str, key: &str) -> Option<&str> {
        self.json.get(object)?.get(key)?.as_str()
    }
}

/// Checks what of an outbox message reaches the wire (envelope, recipient,
/// smarthost), for producers that want to refuse bad messages up front.
pub fn check(json: &Map<String, Value>) -> Result<(), Invalid> {
    addresses(json).map(|_| ())
}

/// The envelope and recipient as checked paths, and the checked smarthost.
fn addresses(json: &Map<String, Value>) -> Result<(Path, Path, Option<Smarthost>), Invalid> {
    let recipient = match json.get("recipient") {
        Some(Value::String(r)) if !r.trim().is_empty() => r.trim(),
        _ => return Err(Invalid::NoRecipient),
    };
    if !recipient.contains('@') || recipient.ends_with('@') {
        return Err(Invalid::NoDomain(sluice_smtp::wire::shown(recipient)));
    }
    let recipient = Path::mailbox(recipient).map_err(Invalid::BadRecipient)?;
    let envelope = match json.get("envelope") {
        Some(Value::String(e)) => Path::reverse(e.trim()).map_err(Invalid::BadEnvelope)?,
        _ => Path::null(),
    };
    let smarthost = match json.get("smarthost") {
        Some(s) => smarthost(s)?,
        None => None,
    };
    Ok((envelope, recipient, smarthost))
}

/// A message's own relay: a host name or IP, and credentials without NUL, CR or LF.
/// (Without a `name` there is no relay: the message goes by MX.)
fn smarthost(s: &Value) -> Result<Option<Smarthost>, Invalid> {
    let auth = match s.get("username").and_then(Value::as_str) {
        Some(user) => {
            let password = s.get("password").and_then(Value::as_str).unwrap_or("");
            Some(Credentials::new(user, password).map_err(Invalid::BadSmarthost)?)
        }
        None => None,
    };
    // MailerQ 5.x writes `hostname`, 4.x `name`.
    let Some(name) = ["hostname", "name"]
        .iter()
        .find_map(|k| s.get(*k).and_then(Value::as_str))
    else {
        return Ok(None);
    };
    sluice_smtp::wire::check_relay_host(name).map_err(Invalid::BadSmarthost)?;
    let port = s
        .get("port")
        .and_then(number)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(25);
    Ok(Some(Smarthost {
        host: name.to_string(),
        port,
        auth,
    }))
}

/// The longest wait one `retries` entry may ask for (a year, as `retry-interval`).
const MAX_RETRY_SECONDS: u64 = 31_536_000;

/// A `retries` schedule in ms: an array of seconds, or the same as a
/// comma-separated string (an `x-mq-retries` header); unusable entries are skipped.
fn retries(v: Option<&Value>) -> Vec<u64> {
    let seconds: Vec<u64> = match v {
        Some(Value::Array(a)) => a.iter().filter_map(number).collect(),
        Some(Value::String(s)) => s.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
        _ => Vec::new(),
    };
    seconds
        .into_iter()
        .take(1000)
        .map(|s| s.min(MAX_RETRY_SECONDS) * 1000)
        .collect()
}

/// A JSON number, or a number in a string (x-mq headers give strings).
pub fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Defaults = Defaults {
        max_delivertime: 100,
        max_attempts: 0,
        dsn: DsnDefaults {
            notify: None,
            ret: None,
        },
    };

    #[test]
    fn parses_the_spec_fields() {
        let m = Outgoing::parse(
            br#"{"envelope":"a@x.org","recipient":"B@Example.COM","mime":"x","maxattempts":"3","results":[{"state":"connect"},{"state":"amqp"},{"state":"process"}]}"#,
            D,
            1_000,
        )
        .unwrap();
        assert_eq!(m.domain, "example.com");
        assert_eq!(m.envelope.as_str(), "a@x.org");
        assert_eq!(m.attempts, 1);
        assert_eq!(m.max_attempts, 3);
        assert_eq!(m.deadline_ms, 101_000);
        assert!(m.may_try(2, 50_000));
        assert!(!m.may_try(3, 50_000));
        assert!(!m.may_try(0, 101_001));
    }

    #[test]
    fn invalid_messages_say_why() {
        assert!(matches!(Outgoing::parse(b"{nope", D, 0), Err(Invalid::NotJson(_))));
        assert_eq!(Outgoing::parse(b"[1]", D, 0).unwrap_err(), Invalid::NotObject);
        assert_eq!(
            Outgoing::parse(br#"{"mime":"x"}"#, D, 0).unwrap_err(),
            Invalid::NoRecipient
        );
        assert!(matches!(
            Outgoing::parse(br#"{"recipient":"nodomain"}"#, D, 0),
            Err(Invalid::NoDomain(_))
        ));
        assert_eq!(
            Outgoing::parse(br#"{"recipient":"a@b","maxdelivertime":"tomorrow"}"#, D, 0).unwrap_err(),
            Invalid::BadTime("maxdelivertime")
        );
    }

    /// Any outbox producer (HTTP, RabbitMQ, spool) is untrusted: an address
    /// that does not parse is the invalid-input result, never a command.
    #[test]
    fn injected_commands_are_invalid_input() {
        let cases = [
            (
                r#"{"recipient":"a@b.com>\r\nRCPT TO:<injected@evil.com","mime":"x"}"#,
                "recipient",
            ),
            (
                r#"{"recipient":"a@b.com","envelope":"x@y.z\r\nRSET\r\nMAIL FROM:<spoof@bank.com","mime":"x"}"#,
                "envelope",
            ),
            (
                r#"{"recipient":"a@b.com","envelope":"x@y.z> SIZE=1","mime":"x"}"#,
                "envelope",
            ),
            (r#"{"recipient":"a\u0000@b.com","mime":"x"}"#, "recipient"),
            (
                r#"{"recipient":"a@b.com","smarthost":{"name":"relay\r\nx"},"mime":"x"}"#,
                "smarthost",
            ),
            (
                r#"{"recipient":"a@b.com","smarthost":{"name":"r.example","username":"u\u0000admin"},"mime":"x"}"#,
                "smarthost",
            ),
        ];
        for (json, field) in cases {
            let e = Outgoing::parse(json.as_bytes(), D, 0).unwrap_err().to_string();
            assert!(e.starts_with(field), "{json}: {e}");
            assert!(!e.contains(['\r', '\n', '\0']), "{e:?}");
        }
        let ok = Outgoing::parse(
            br#"{"recipient":"a@b.com","envelope":"","smarthost":{"name":"127.0.0.1"}}"#,
            D,
            0,
        );
        assert!(ok.unwrap().envelope.is_null());
    }

    #[test]
    fn routing_fields_are_typed() {
        let m = Outgoing::parse(
            br#"{"recipient":"a@b.example","smarthost":{"name":"relay.example","port":"2525","username":"u","password":"p"},"ips":["192.0.2.1"," 2001:db8::1","bogus"],"delayed":"2030-01-01 00:00:00"}"#,
            D,
            0,
        )
        .unwrap();
        let relay = m.smarthost.unwrap();
        assert_eq!((relay.host.as_str(), relay.port), ("relay.example", 2525));
        assert_eq!(relay.auth.unwrap().user(), "u");
        assert_eq!(m.ips.map(|i| i.len()), Some(2));
        assert_eq!(m.delayed_ms, parse_time("2030-01-01 00:00:00"));
        let plain = Outgoing::parse(br#"{"recipient":"a@b.example","smarthost":{"port":25}}"#, D, 0).unwrap();
        assert!(plain.smarthost.is_none() && plain.ips.is_none() && plain.delayed_ms.is_none());
        assert!(plain.retries_ms.is_empty() && plain.retry_delay_ms(1).is_none());
    }

    #[test]
    fn mailerq_5_names() {
        let m = Outgoing::parse(
            br#"{"recipient":"a@b.example","smarthost":{"hostname":"relay.example","port":2525},"nextattempt":"2030-01-01 00:00:00","retries":[600,"600",1800],"ips":[]}"#,
            D,
            0,
        )
        .unwrap();
        assert_eq!(m.smarthost.as_ref().unwrap().host, "relay.example");
        assert_eq!(m.delayed_ms, parse_time("2030-01-01 00:00:00"));
        assert_eq!(m.ips, Some(Vec::new()), "given but empty: not the defaults");
        let waits: Vec<u64> = (1..=5).map(|n| m.retry_delay_ms(n).unwrap()).collect();
        assert_eq!(waits, [600_000, 600_000, 1_800_000, 1_800_000, 1_800_000]);
        let header = Outgoing::parse(br#"{"recipient":"a@b.example","retries":"300, 3600"}"#, D, 0).unwrap();
        assert_eq!(header.retries_ms, [300_000, 3_600_000]);
        let not_array = Outgoing::parse(br#"{"recipient":"a@b.example","ips":"192.0.2.1"}"#, D, 0).unwrap();
        assert_eq!(not_array.ips, None, "not an array: the configured IPs, as MailerQ");
    }

    #[test]
    fn times_round_trip() {
        let ms = parse_time("2026-11-24 17:30:00").unwrap();
        assert_eq!(format_time(ms), "2026-11-24 17:30:00");
        assert_eq!(parse_time("2026-11-24T17:30:00"), None);
    }
}
