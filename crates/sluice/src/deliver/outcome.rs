//! What one delivery attempt leads to (`spec/messages.md`, "Result JSON" and
//! "Delivery outcome rules"): the result entry, the success/final/retry
//! decision, and the messages to publish for it (results, success, failure,
//! retry, the re-queued message, a DSN).

use super::dsn;
use super::outgoing::{format_time, Outgoing};
use crate::config::Config;
use serde_json::{Map, Value};
use sluice_queue::NewMessage;
use sluice_smtp::client::Stage;
use sluice_smtp::Reply;
use std::net::IpAddr;

/// The `result` of a result entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKind {
    Accepted,
    Timeout,
    Lost,
    Invalid,
    Error,
}

impl ResultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultKind::Accepted => "accepted",
            ResultKind::Timeout => "timeout",
            ResultKind::Lost => "lost",
            ResultKind::Invalid => "invalid",
            ResultKind::Error => "error",
        }
    }
}

/// The connection an attempt used, for the entry's connection fields.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// Remote host name from the greeting.
    pub mta: String,
    pub local: Option<IpAddr>,
    pub remote: Option<IpAddr>,
    /// Messages accepted on the connection so far.
    pub messages: u64,
    /// The server offered DSN.
    pub dsn: bool,
    /// The TLS cipher and the server's certificate (MailerQ's objects), when secured.
    pub cipher: Option<Value>,
    pub certificate: Option<Value>,
    /// The AUTH mechanism used (`PLAIN`, `LOGIN`), when the connection logged in.
    pub authentication: Option<&'static str>,
    /// Bytes written on the connection so far, and of the message's body.
    pub sent: Option<(u64, u64)>,
}

/// Where an attempt ended: the `state` of a result entry
/// (`spec/messages.md`): an SMTP stage, or a step around the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A stage of the SMTP session (intro, ehlo, mailfrom, …).
    Smtp(Stage),
    /// Opening the TCP connection.
    Connect,
    /// Binding the local (source) address.
    Bind,
    /// Looking up the MX hosts or their addresses.
    Dns,
    /// Reading or queueing the message itself (invalid input, expiry, no
    /// usable `ips`): MailerQ 5.x's `process` (4.x wrote `amqp`).
    Process,
    /// Finding the message's body (a `key` with no plugin to resolve it).
    Storage,
    /// The recipient is in the `suppressions` table: never tried.
    Suppression,
}

impl State {
    /// The name in result JSON; only written there (and in logs).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Smtp(stage) => stage.as_str(),
            State::Connect => "connect",
            State::Bind => "bind",
            State::Dns => "dns",
            State::Process => "process",
            State::Storage => "storage",
            State::Suppression => "suppression",
        }
    }
}

impl From<Stage> for State {
    fn from(stage: Stage) -> State {
        State::Smtp(stage)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attempt: where it ended and how.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub state: State,
    pub kind: ResultKind,
    pub reply: Option<Reply>,
    /// Our own description when there was no reply (or to add to it).
    pub description: String,
    /// Retrying cannot help (5xx, NXDOMAIN, null MX, …).
    pub permanent: bool,
    pub connection: Option<Box<Connection>>,
}

impl Attempt {
    /// An attempt that ended on a reply; 5xx is permanent.
    pub fn reply(state: impl Into<State>, reply: Reply, connection: Option<Connection>) -> Attempt {
        let kind = if reply.is_positive() {
            ResultKind::Accepted
        } else {
            ResultKind::Error
        };
        Attempt {
            state: state.into(),
            kind,
            permanent: reply.code >= 500,
            description: reply.lines.join(" "),
            reply: Some(reply),
            connection: connection.map(Box::new),
        }
    }

    /// An attempt that ended without a reply.
    pub fn failed(
        state: impl Into<State>,
        kind: ResultKind,
        description: impl Into<String>,
        permanent: bool,
    ) -> Attempt {
        Attempt {
            state: state.into(),
            kind,
            reply: None,
            description: description.into(),
            permanent,
            connection: None,
        }
    }

    pub fn with_connection(mut self, c: Option<Connection>) -> Attempt {
        self.connection = c.map(Box::new);
        self
    }

    /// The `results` entry.
    pub fn entry(&self, now_ms: u64) -> Map<String, Value> {
        let mut e = Map::new();
        e.insert("state".into(), self.state.as_str().into());
        e.insert("result".into(), self.kind.as_str().into());
        e.insert("time".into(), format_time(now_ms).into());
        if let Some(c) = &self.connection {
            if !c.mta.is_empty() {
                e.insert("mta".into(), c.mta.clone().into());
            }
            if let Some(ip) = c.local {
                e.insert("from".into(), ip.to_string().into());
            }
            if let Some(ip) = c.remote {
                e.insert("to".into(), ip.to_string().into());
            }
            e.insert("messages".into(), c.messages.into());
            if self.kind == ResultKind::Accepted {
                e.insert("dsn".into(), c.dsn.into());
            }
            if let Some(mechanism) = c.authentication {
                e.insert("authentication".into(), mechanism.into());
            }
            if let Some((connection, data)) = c.sent {
                e.insert(
                    "sent".into(),
                    serde_json::json!({"connection": connection, "data": data}),
                );
            }
            if let Some(cipher) = &c.cipher {
                e.insert("cipher".into(), cipher.clone());
            }
            if let Some(cert) = &c.certificate {
                e.insert("certificate".into(), cert.clone());
            }
        }
        if let Some(r) = &self.reply {
            e.insert("code".into(), r.code.into());
            if let Some(s) = &r.status {
                e.insert("status".into(), s.clone().into());
            }
        }
        e.insert("description".into(), self.description.clone().into());
        e
    }
}

/// Where results go by default, and the retry schedule.
#[derive(Debug, Clone)]
pub struct Policy {
    pub outbox: String,
    pub results: Option<String>,
    pub success: Option<String>,
    pub failure: Option<String>,
    pub retry: Option<String>,
    pub dsn: String,
    /// First retry delay (ms); each next one doubles, up to [`MAX_RETRY_MS`].
    pub retry_interval_ms: u64,
    /// MailerQ's schedule (`retry-interval: 600,600,1800`): the wait before
    /// each retry in turn, the last one repeated; empty = doubling.
    pub retry_schedule_ms: Vec<u64>,
    /// Reporting MTA name in DSNs.
    pub hostname: String,
}

/// The longest wait between two attempts (unless `retry-interval` is longer).
pub const MAX_RETRY_MS: u64 = 4 * 3600 * 1000;

impl Policy {
    pub fn from_config(c: &Config, hostname: String) -> Policy {
        let q = crate::queues::QueueNames::from_config(c);
        Policy {
            results: q.results,
            success: q.success,
            failure: q.failure,
            retry: q.retry,
            dsn: q.dsn,
            outbox: q.outbox,
            retry_interval_ms: c
                .settings
                .retry_interval
                .first()
                .map_or(300_000, |d| d.as_millis() as u64),
            retry_schedule_ms: match c.settings.retry_interval.as_slice() {
                [_, _, ..] => c.settings.retry_interval.iter().map(|d| d.as_millis() as u64).collect(),
                _ => Vec::new(),
            },
            hostname,
        }
    }

    /// The wait before attempt `n + 1` after `n` attempts (n ≥ 1).
    pub fn retry_delay_ms(&self, attempts: u64) -> u64 {
        if let Some(last) = self.retry_schedule_ms.last() {
            let i = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX);
            return *self.retry_schedule_ms.get(i).unwrap_or(last);
        }
        let doubled = self
            .retry_interval_ms
            .saturating_mul(1u64 << attempts.saturating_sub(1).min(30));
        doubled.min(MAX_RETRY_MS.max(self.retry_interval_ms))
    }

    /// The queue for `kind` (`results`, `success`, …): the message's `queues`
    /// override (`null` disables) or the default.
    fn queue(&self, json: &Map<String, Value>, kind: &str) -> Option<String> {
        if let Some(v) = json.get("queues").and_then(|q| q.get(kind)) {
            match v.as_str() {
                None | Some("") => return None,
                Some(name) if valid_queue_name(name) => return Some(name.to_string()),
                // A name no broker takes would make the outcome unstorable: the default serves.
                Some(name) => tracing::warn!(queue = name, kind, "ignoring an invalid queue name in `queues`"),
            }
        }
        match kind {
            "results" => self.results.clone(),
            "success" => self.success.clone(),
            "failure" => self.failure.clone(),
            "retry" => self.retry.clone(),
            _ => Some(self.dsn.clone()),
        }
    }
}

/// A queue name RabbitMQ accepts from a client (and so the embedded store
/// too): 1–255 bytes, not in the broker's reserved `amq.` space.
fn valid_queue_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.starts_with("amq.")
}

/// How an attempt ends for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Failed,
    Retry,
}

impl Verdict {
    /// As the send-log and the metrics name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Delivered => "delivered",
            Verdict::Failed => "failed",
            Verdict::Retry => "retry",
        }
    }
}

/// The decision and what to publish for it.
#[derive(Debug)]
pub struct Outcome {
    pub verdict: Verdict,
    pub publish: Vec<NewMessage>,
}

/// The result JSON: the message with `results` and `extracted`, mime
/// removed unless `keepmime`.
fn result_json(json: &mut Map<String, Value>) -> Vec<u8> {
    let keep = matches!(json.get("keepmime"), Some(Value::Bool(true)));
    let extracted = super::extracted::extracted(json);
    // The MIME is set aside and put back rather than the whole message copied
    // (the retry copy and a DSN still need it); `extracted` is for results only.
    let mime = if keep { None } else { json.remove("mime") };
    let inserted = extracted.is_some();
    let before = extracted.and_then(|e| json.insert("extracted".into(), e));
    let body = serde_json::to_vec(json).unwrap_or_default();
    if inserted {
        match before {
            Some(theirs) => json.insert("extracted".into(), theirs),
            None => json.remove("extracted"),
        };
    }
    if let Some(mime) = mime {
        json.insert("mime".into(), mime);
    }
    body
}

fn push_result(json: &mut Map<String, Value>, entry: Map<String, Value>) {
    match json.get_mut("results") {
        Some(Value::Array(a)) => a.push(Value::Object(entry)),
        _ => {
            json.insert("results".into(), Value::Array(vec![Value::Object(entry)]));
        }
    }
}

/// Decides what an attempt means for `msg` and builds the publishes.
pub fn decide(policy: &Policy, mut msg: Outgoing, attempt: &Attempt, now_ms: u64) -> Outcome {
    push_result(&mut msg.json, attempt.entry(now_ms));
    let attempts = msg.attempts + 1;
    let mut publish = Vec::new();
    let to = |q: Option<String>, body: &[u8], out: &mut Vec<NewMessage>| {
        if let Some(q) = q {
            out.push(NewMessage::now(q, body.to_vec()));
        }
    };
    let verdict = if attempt.kind == ResultKind::Accepted {
        Verdict::Delivered
    } else if attempt.permanent {
        Verdict::Failed
    } else {
        let wait = msg
            .retry_delay_ms(attempts)
            .unwrap_or_else(|| policy.retry_delay_ms(attempts));
        let next = now_ms + wait;
        if msg.may_try(attempts, next) {
            msg.json.insert("delayed".into(), format_time(next).into());
            if !msg.json.contains_key("received") && !msg.json.contains_key("maxdelivertime") {
                // Keep the deadline fixed across attempts for a message that never said when it arrived.
                msg.json
                    .insert("maxdelivertime".into(), format_time(msg.deadline_ms).into());
            }
            let result = result_json(&mut msg.json);
            to(policy.queue(&msg.json, "retry"), &result, &mut publish);
            publish.push(NewMessage {
                queue: policy.outbox.clone(),
                body: serde_json::to_vec(&msg.json).unwrap_or_default(),
                not_before_ms: next,
            });
            if let Some(report) = dsn::build(policy, &msg, Verdict::Retry, attempt, now_ms) {
                to(policy.queue(&msg.json, "dsn"), &report, &mut publish);
            }
            return Outcome {
                verdict: Verdict::Retry,
                publish,
            };
        }
        let why = if msg.max_attempts != 0 && attempts >= msg.max_attempts {
            format!("given up after {attempts} attempts (maxattempts {})", msg.max_attempts)
        } else {
            format!(
                "given up: next attempt would be after maxdelivertime {}",
                format_time(msg.deadline_ms)
            )
        };
        push_result(
            &mut msg.json,
            Attempt::failed(State::Process, ResultKind::Timeout, why, true).entry(now_ms),
        );
        Verdict::Failed
    };
    let result = result_json(&mut msg.json);
    to(policy.queue(&msg.json, "results"), &result, &mut publish);
    let kind = if verdict == Verdict::Delivered {
        "success"
    } else {
        "failure"
    };
    to(policy.queue(&msg.json, kind), &result, &mut publish);
    if let Some(report) = dsn::build(policy, &msg, verdict, attempt, now_ms) {
        to(policy.queue(&msg.json, "dsn"), &report, &mut publish);
    }
    Outcome { verdict, publish }
}

/// A `send-log` line without its verdict: the attempt's result entry with
/// the message's envelope, recipient, message-id and attempt number.
pub fn log_entry(msg: &Outgoing, attempt: &Attempt, now_ms: u64) -> Map<String, Value> {
    let mut line = attempt.entry(now_ms);
    line.insert("envelope".into(), msg.envelope.as_str().into());
    line.insert("recipient".into(), msg.recipient.as_str().into());
    if let Some(id) = msg.json.get("message-id") {
        line.insert("message-id".into(), id.clone());
    }
    line.insert("attempt".into(), (msg.attempts + 1).into());
    line
}

/// The attempt that ends a message which expired before it could be tried
/// again: `process/timeout`, permanent (so [`decide`] makes it final).
pub fn expiry(msg: &Outgoing) -> Attempt {
    let why = if msg.max_attempts != 0 && msg.attempts >= msg.max_attempts {
        format!("maxattempts {} reached", msg.max_attempts)
    } else {
        format!("maxdelivertime {} passed", format_time(msg.deadline_ms))
    };
    Attempt::failed(State::Process, ResultKind::Timeout, why, true)
}

/// A message whose `ips` names no local address (`"ips": []`, or none that
/// parses): `process/error`, final, as MailerQ fails it.
pub fn no_ips() -> Attempt {
    Attempt::failed(
        State::Process,
        ResultKind::Error,
        "the message's ips names no IP address to send from",
        true,
    )
}

/// A message whose `pool` is not in the `pools` table, or has no IPs.
pub fn no_pool(pool: &str, known: bool) -> Attempt {
    let why = if known {
        "has no IP addresses (poolips)"
    } else {
        "is not in the pools table"
    };
    Attempt::failed(
        State::Process,
        ResultKind::Error,
        format!("pool `{}` {why}", sluice_smtp::wire::shown(pool)),
        true,
    )
}

/// A recipient in the `suppressions` table: a final `suppression`/`error`
/// with the row's code, enhanced status and description; no connection.
pub fn suppressed(code: u16, extended: &str, description: &str) -> Attempt {
    let reply = sluice_smtp::Reply {
        code,
        status: Some(extended.to_string()),
        lines: vec![description.to_string()],
    };
    let mut a = Attempt::reply(State::Suppression, reply, None);
    a.kind = ResultKind::Error;
    a.permanent = true;
    a
}

/// A message that cannot be read (`process/invalid`): results + failure.
pub fn invalid(policy: &Policy, body: &[u8], why: &str, now_ms: u64) -> Outcome {
    let mut json = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m,
        // Not an object: the result carries what was received under `message`
        // (the JSON value, or the bytes as text when they are not JSON).
        other => {
            let received = other.unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned().into());
            let mut m = Map::new();
            m.insert("message".into(), received);
            m
        }
    };
    push_result(
        &mut json,
        Attempt::failed(State::Process, ResultKind::Invalid, why, true).entry(now_ms),
    );
    let result = result_json(&mut json);
    let mut publish = Vec::new();
    for kind in ["results", "failure"] {
        if let Some(q) = policy.queue(&json, kind) {
            publish.push(NewMessage::now(q, result.clone()));
        }
    }
    Outcome {
        verdict: Verdict::Failed,
        publish,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::outgoing::Defaults;

    fn policy() -> Policy {
        Policy {
            outbox: "outbox".into(),
            results: Some("results".into()),
            success: Some("success".into()),
            failure: Some("failure".into()),
            retry: Some("retry".into()),
            dsn: "outbox".into(),
            retry_interval_ms: 300_000,
            retry_schedule_ms: Vec::new(),
            hostname: "mx.test".into(),
        }
    }

    fn msg(extra: &str) -> Outgoing {
        let body =
            format!(r#"{{"envelope":"a@x.test","recipient":"b@y.test","mime":"Subject: x\r\n\r\nhi\r\n"{extra}}}"#);
        Outgoing::parse(
            body.as_bytes(),
            Defaults {
                max_delivertime: 86400,
                max_attempts: 0,
                dsn: Default::default(),
            },
            1_000_000,
        )
        .unwrap()
    }

    fn queues(o: &Outcome) -> Vec<&str> {
        o.publish.iter().map(|m| m.queue.as_str()).collect()
    }

    fn body(o: &Outcome, q: &str) -> Value {
        serde_json::from_slice(&o.publish.iter().find(|m| m.queue == q).unwrap().body).unwrap()
    }

    #[test]
    fn accepted_goes_to_results_and_success_without_mime() {
        let a = Attempt::reply(
            Stage::Message,
            Reply::plain(250, "2.0.0 ok"),
            Some(Connection::default()),
        );
        let o = decide(&policy(), msg(""), &a, 2_000_000);
        assert_eq!(o.verdict, Verdict::Delivered);
        assert_eq!(queues(&o), ["results", "success"]);
        let r = body(&o, "success");
        assert!(r.get("mime").is_none());
        assert_eq!(r["extracted"]["subject"], "x", "what the MIME said, without it: {r}");
        assert_eq!(r["extracted"]["recipient"]["domain"], "y.test");
        assert_eq!(r["results"][0]["state"], "message");
        assert_eq!(r["results"][0]["result"], "accepted");
        assert_eq!(r["results"][0]["dsn"], false);
    }

    #[test]
    fn keepmime_and_queue_overrides() {
        let a = Attempt::reply(Stage::RcptTo, Reply::new(550, "5.1.1", "no such user"), None);
        let o = decide(
            &policy(),
            msg(r#","keepmime":true,"queues":{"results":null,"failure":"bounces"},"custom":7"#),
            &a,
            0,
        );
        assert_eq!(o.verdict, Verdict::Failed);
        assert_eq!(queues(&o), ["bounces"]);
        let r = body(&o, "bounces");
        assert!(r.get("mime").is_some());
        assert_eq!(r["custom"], 7);
        assert_eq!(r["results"][0]["code"], 550);
        assert_eq!(r["results"][0]["status"], "5.1.1");
    }

    #[test]
    fn invalid_queue_names_fall_back_to_the_defaults() {
        let a = Attempt::reply(Stage::RcptTo, Reply::new(550, "5.1.1", "no such user"), None);
        let long = "q".repeat(256);
        let o = decide(
            &policy(),
            msg(&format!(r#","queues":{{"results":"amq.x","failure":"{long}"}}"#)),
            &a,
            0,
        );
        let mut q = queues(&o);
        q.sort();
        assert_eq!(q, ["failure", "results"]);
    }

    #[test]
    fn temporary_failures_retry_with_growing_delays() {
        let p = policy();
        assert_eq!(p.retry_delay_ms(1), 300_000);
        assert_eq!(p.retry_delay_ms(2), 600_000);
        assert_eq!(p.retry_delay_ms(20), MAX_RETRY_MS);
        // MailerQ's list: each retry in turn, then the last again.
        let listed = Policy {
            retry_schedule_ms: vec![600_000, 600_000, 1_800_000],
            ..policy()
        };
        let waits: Vec<u64> = (1..=5).map(|n| listed.retry_delay_ms(n)).collect();
        assert_eq!(waits, [600_000, 600_000, 1_800_000, 1_800_000, 1_800_000]);
        let a = Attempt::failed(State::Connect, ResultKind::Error, "connection refused", false);
        let o = decide(&p, msg(""), &a, 2_000_000);
        assert_eq!(o.verdict, Verdict::Retry);
        assert_eq!(queues(&o), ["retry", "outbox"]);
        let again = o.publish.iter().find(|m| m.queue == "outbox").unwrap();
        assert_eq!(again.not_before_ms, 2_300_000);
        let again: Value = serde_json::from_slice(&again.body).unwrap();
        assert!(again.get("mime").is_some());
        assert!(
            again.get("extracted").is_none(),
            "results carry it, the outbox copy not"
        );
        assert_eq!(again["delayed"], format_time(2_300_000));
        // The message's own `retries` win over retry-interval.
        let o = decide(&p, msg(r#","retries":[7]"#), &a, 2_000_000);
        let again = o.publish.iter().find(|m| m.queue == "outbox").unwrap();
        assert_eq!(again.not_before_ms, 2_007_000);
    }

    #[test]
    fn retries_stop_at_maxattempts_with_process_timeout() {
        let a = Attempt::failed(State::Connect, ResultKind::Error, "connection refused", false);
        let o = decide(&policy(), msg(r#","maxattempts":1"#), &a, 2_000_000);
        assert_eq!(o.verdict, Verdict::Failed);
        assert_eq!(queues(&o), ["results", "failure"]);
        let r = body(&o, "failure");
        assert_eq!(r["results"][0]["state"], "connect");
        assert_eq!(r["results"][1]["state"], "process");
        assert_eq!(r["results"][1]["result"], "timeout");
    }

    #[test]
    fn invalid_input_keeps_what_it_can() {
        let o = invalid(&policy(), b"not json", "message is not valid JSON", 0);
        assert_eq!(queues(&o), ["results", "failure"]);
        let r = body(&o, "results");
        assert_eq!(r["message"], "not json");
        assert_eq!(r["results"][0]["state"], "process");
        assert_eq!(r["results"][0]["result"], "invalid");
    }
}
