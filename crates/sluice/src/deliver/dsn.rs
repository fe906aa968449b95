//! Delivery status notifications (RFC 3464) for messages whose `dsn.notify`
//! asks for them: a new outgoing message from `<>` to the envelope sender.

use super::outcome::{Attempt, Policy, Verdict};
use super::outgoing::{format_time, Outgoing};
use serde_json::{Map, Value};

/// A value from outside (the message's JSON, the remote server's replies)
/// as it may stand inside one line of the report: control characters —
/// CR and LF above all — become spaces, so no value can start a header
/// line or field of its own.
fn field(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Which DSN an outcome calls for, per RFC 3461 NOTIFY keywords.
fn wanted(msg: &Outgoing, verdict: Verdict) -> Option<&'static str> {
    let notify = msg.dsn_notify()?.to_ascii_uppercase();
    let asked = |k: &str| notify.split(',').any(|n| n.trim() == k);
    match verdict {
        Verdict::Failed if asked("FAILURE") => Some("failed"),
        Verdict::Delivered if asked("SUCCESS") => Some("delivered"),
        // One delay notice, on the first retry, not one per attempt.
        Verdict::Retry if asked("DELAY") && msg.attempts == 0 => Some("delayed"),
        _ => None,
    }
}

/// The DSN as an outgoing message (JSON), or `None` when none is due.
pub fn build(policy: &Policy, msg: &Outgoing, verdict: Verdict, attempt: &Attempt, now_ms: u64) -> Option<Vec<u8>> {
    // Never for a bounce: that is how mail loops start (RFC 5321 §6.1).
    if msg.envelope.is_empty() {
        return None;
    }
    let action = wanted(msg, verdict)?;
    let host = &policy.hostname;
    let boundary = format!("dsn-{now_ms:x}-{:x}", msg.recipient.len() ^ msg.envelope.len());
    let status = attempt
        .reply
        .as_ref()
        .and_then(|r| r.status.clone())
        .unwrap_or_else(|| {
            match (verdict, attempt.reply.as_ref().map(|r| r.code / 100)) {
                (Verdict::Delivered, _) => "2.0.0",
                (Verdict::Retry, _) | (_, Some(4)) => "4.0.0",
                _ => "5.0.0",
            }
            .to_string()
        });
    let date = chrono::DateTime::from_timestamp_millis(now_ms as i64)
        .unwrap_or_default()
        .to_rfc2822();
    let subject = match action {
        "failed" => "Undelivered Mail Returned to Sender",
        "delivered" => "Successful Mail Delivery Report",
        _ => "Delayed Mail (still being retried)",
    };
    let human = match action {
        "failed" => format!(
            "Your message to <{}> could not be delivered.\r\nThe last attempt ended at {}: {}\r\n",
            msg.recipient,
            attempt.state,
            field(&attempt.description)
        ),
        "delivered" => format!("Your message to <{}> was delivered.\r\n", msg.recipient),
        _ => format!(
            "Your message to <{}> has not been delivered yet; it will be retried.\r\nThe last attempt ended at {}: {}\r\n",
            msg.recipient,
            attempt.state,
            field(&attempt.description)
        ),
    };
    let mut fields = format!("Reporting-MTA: dns; {host}\r\n");
    if let Some(envid) = msg.nested_str("dsn", "envid") {
        fields.push_str(&format!("Original-Envelope-Id: {}\r\n", field(envid)));
    }
    if let Some(received) = msg.json.get("received").and_then(Value::as_str) {
        fields.push_str(&format!("Arrival-Date: {} +0000\r\n", field(received)));
    }
    fields.push_str("\r\n");
    if let Some(orcpt) = msg.nested_str("dsn", "orcpt") {
        let orcpt = match orcpt.split_once(';') {
            Some((t, a)) => format!("{}; {}", t.trim(), a.trim()),
            None => format!("rfc822; {orcpt}"),
        };
        fields.push_str(&format!("Original-Recipient: {}\r\n", field(&orcpt)));
    }
    fields.push_str(&format!(
        "Final-Recipient: rfc822; {}\r\nAction: {action}\r\nStatus: {status}\r\n",
        msg.recipient
    ));
    if let Some(c) = attempt.connection.as_ref().filter(|c| !c.mta.is_empty()) {
        fields.push_str(&format!("Remote-MTA: dns; {}\r\n", field(&c.mta)));
    }
    if let Some(r) = &attempt.reply {
        let status = r
            .status
            .as_deref()
            .map(|s| format!("{} ", field(s)))
            .unwrap_or_default();
        fields.push_str(&format!(
            "Diagnostic-Code: smtp; {} {status}{}\r\n",
            r.code,
            field(&r.lines.join(" "))
        ));
    }
    fields.push_str(&format!("Last-Attempt-Date: {} +0000\r\n", format_time(now_ms)));
    // RET=FULL returns the whole message, otherwise (and by default) headers only.
    let full = msg.dsn_ret().is_some_and(|r| r.eq_ignore_ascii_case("FULL"));
    let original = msg.mime().unwrap_or("");
    let (kind, returned) = if full {
        ("message/rfc822", original)
    } else {
        let end = original
            .find("\r\n\r\n")
            .map(|i| i + 2)
            .or_else(|| original.find("\n\n").map(|i| i + 1))
            .unwrap_or(original.len());
        ("text/rfc822-headers", &original[..end])
    };
    let mime = format!(
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{boundary}@{host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         {human}\
         \r\n--{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         {fields}\
         \r\n--{boundary}\r\n\
         Content-Type: {kind}\r\n\
         \r\n\
         {returned}\
         \r\n--{boundary}--\r\n",
        to = msg.envelope,
    );
    let mut out = Map::new();
    out.insert("envelope".into(), "".into());
    out.insert("recipient".into(), msg.envelope.as_str().into());
    out.insert("mime".into(), mime.into());
    if let Some(id) = msg.json.get("message-id") {
        out.insert("dsn-for".into(), id.clone());
    }
    serde_json::to_vec(&out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::outgoing::Defaults;
    use sluice_smtp::client::Stage;
    use sluice_smtp::Reply;

    fn policy() -> Policy {
        Policy {
            outbox: "outbox".into(),
            results: None,
            success: None,
            failure: None,
            retry: None,
            dsn: "outbox".into(),
            retry_interval_ms: 1000,
            retry_schedule_ms: Vec::new(),
            hostname: "mx.test".into(),
        }
    }

    fn msg(envelope: &str, dsn: &str) -> Outgoing {
        let body = format!(
            r#"{{"envelope":"{envelope}","recipient":"b@y.test","mime":"Subject: hello\r\n\r\nbody text\r\n","dsn":{dsn}}}"#
        );
        let d = Defaults {
            max_delivertime: 10,
            max_attempts: 0,
            dsn: Default::default(),
        };
        Outgoing::parse(body.as_bytes(), d, 0).unwrap()
    }

    #[test]
    fn failure_report_names_recipient_status_and_headers_only() {
        let a = Attempt::reply(Stage::RcptTo, Reply::new(550, "5.1.1", "no such user"), None);
        let m = msg(
            "a@x.test",
            r#"{"notify":"FAILURE,DELAY","orcpt":"rfc822;B@y.test","envid":"E1"}"#,
        );
        let out: Value = serde_json::from_slice(&build(&policy(), &m, Verdict::Failed, &a, 0).unwrap()).unwrap();
        assert_eq!(out["envelope"], "");
        assert_eq!(out["recipient"], "a@x.test");
        let mime = out["mime"].as_str().unwrap();
        for want in [
            "report-type=delivery-status",
            "Final-Recipient: rfc822; b@y.test",
            "Original-Recipient: rfc822; B@y.test",
            "Original-Envelope-Id: E1",
            "Action: failed",
            "Status: 5.1.1",
            "Diagnostic-Code: smtp; 550 5.1.1 no such user",
            "text/rfc822-headers",
            "Subject: hello",
        ] {
            assert!(mime.contains(want), "{want} missing in {mime}");
        }
        assert!(!mime.contains("body text"), "RET=HDRS by default");
    }

    /// The report's fields carry values from the message's JSON and the
    /// remote server: none of them may add a line of its own.
    #[test]
    fn values_cannot_inject_report_fields() {
        let reply = Reply::new(550, "5.1.1", "no\rsuch\nuser");
        let a = Attempt::reply(Stage::RcptTo, reply, None);
        let m = msg(
            "a@x.test",
            r#"{"notify":"FAILURE","envid":"E1\r\nX-Injected: 1","orcpt":"rfc822;b@y.test\r\nAction: delivered"}"#,
        );
        let out: Value = serde_json::from_slice(&build(&policy(), &m, Verdict::Failed, &a, 0).unwrap()).unwrap();
        let mime = out["mime"].as_str().unwrap();
        for line in mime.split("\r\n") {
            assert!(!line.contains(['\r', '\n']), "{line:?}");
            assert!(!line.starts_with("X-Injected"), "{mime}");
        }
        assert_eq!(mime.matches("\r\nAction: ").count(), 1, "{mime}");
        assert!(mime.contains("Original-Envelope-Id: E1  X-Injected: 1\r\n"), "{mime}");
        assert!(mime.contains("smtp; 550 5.1.1 no such user\r\n"), "{mime}");
    }

    #[test]
    fn only_when_asked_and_never_to_the_null_sender() {
        let a = Attempt::reply(Stage::Message, Reply::plain(250, "ok"), None);
        let p = policy();
        assert!(build(
            &p,
            &msg("a@x.test", r#"{"notify":"FAILURE"}"#),
            Verdict::Delivered,
            &a,
            0
        )
        .is_none());
        assert!(build(
            &p,
            &msg("a@x.test", r#"{"notify":"SUCCESS"}"#),
            Verdict::Delivered,
            &a,
            0
        )
        .is_some());
        assert!(build(&p, &msg("", r#"{"notify":"SUCCESS"}"#), Verdict::Delivered, &a, 0).is_none());
        assert!(build(&p, &msg("a@x.test", r#"{"notify":"NEVER"}"#), Verdict::Failed, &a, 0).is_none());
        let full = msg("a@x.test", r#"{"notify":"SUCCESS","ret":"FULL"}"#);
        let out: Value = serde_json::from_slice(&build(&p, &full, Verdict::Delivered, &a, 0).unwrap()).unwrap();
        assert!(out["mime"].as_str().unwrap().contains("body text"));
    }
}
