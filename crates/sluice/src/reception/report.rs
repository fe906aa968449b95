//! Reports among received local mail (MailerQ's `rabbitmq-reports`):
//! delivery status notifications (RFC 3464), complaints in the Abuse
//! Reporting Format (RFC 5965) and DMARC aggregate reports (RFC 7489),
//! each read into the facts a bulk sender acts on, so bounces and
//! complaints can be processed without parsing MIME. The `report` property:
//!
//! - `{"type": "dsn", "recipient", "original-recipient", "action", "status",
//!   "diagnostic-code", "remote-mta", "reporting-mta", "envelope-id",
//!   "message-id", "recipients": [...]}` (the first recipient's fields at the top)
//! - `{"type": "arf", "feedback-type", "original-mail-from", "original-rcpt-to",
//!   "envelope-id", "reporting-mta", "source-ip", "user-agent", "message-id"}`
//! - `{"type": "dmarc", "org", "email", "report-id", "domain", "begin", "end",
//!   "records", "messages"}`

use mail_parser::{MessageParser, MimeHeaders, PartType};
use serde_json::{json, Map, Value};

/// A compressed DMARC report may expand to this much.
const MAX_DMARC_XML: usize = 10 << 20;
/// At most this many recipients of one DSN are reported.
const MAX_RECIPIENTS: usize = 100;

/// The `report` property for `mime`, when it is one of the reports.
pub fn read(mime: &[u8]) -> Option<Value> {
    let message = MessageParser::new().parse(mime)?;
    let is_report = |subtype: &str| {
        message.parts.iter().any(|p| {
            p.content_type().is_some_and(|c| {
                c.ctype().eq_ignore_ascii_case("message")
                    && c.subtype().is_some_and(|s| s.eq_ignore_ascii_case(subtype))
            })
        })
    };
    if is_report("delivery-status") || is_report("global-delivery-status") {
        return dsn(&message);
    }
    if is_report("feedback-report") {
        return arf(mime);
    }
    dmarc(mime)
}

/// The bytes of a part's body, however it was decoded.
fn body<'a>(part: &'a mail_parser::MessagePart<'_>) -> &'a [u8] {
    match &part.body {
        PartType::Text(t) | PartType::Html(t) => t.as_bytes(),
        PartType::Binary(b) | PartType::InlineBinary(b) => b,
        PartType::Message(m) => &m.raw_message,
        PartType::Multipart(_) => &[],
    }
}

/// The Message-ID of the message a report returns (a `message/rfc822`
/// part, or `text/rfc822-headers`).
fn returned_message_id(message: &mail_parser::Message<'_>) -> Option<String> {
    for part in message.parts.iter().skip(1) {
        match &part.body {
            PartType::Message(m) => {
                if let Some(id) = m.message_id() {
                    return Some(text(id));
                }
            }
            _ if part
                .content_type()
                .is_some_and(|c| c.subtype().is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers"))) =>
            {
                let id = crate::headers::header_values(body(part), "message-id")
                    .into_iter()
                    .next()?;
                return Some(bare(&id));
            }
            _ => {}
        }
    }
    None
}

/// A value from the report as it may go into JSON and logs: no control
/// characters, at most 998 characters.
fn text(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(998).collect()
}

/// `type;value` fields (`rfc822;a@b`, `smtp;550 …`, `dns;mx.example`): the value.
fn typed_value(v: &str) -> String {
    text(v.split_once(';').map_or(v, |(_, rest)| rest).trim())
}

/// Groups of header-like fields separated by blank lines (RFC 3464 §2.1),
/// each read as a header section, names lower-cased (the first of each).
fn groups(status: &[u8]) -> Vec<Map<String, Value>> {
    let text = crate::headers::crlf(status);
    let text = String::from_utf8_lossy(&text);
    text.split("\r\n\r\n")
        .map(|group| {
            let mut fields = Map::new();
            for (name, value) in crate::headers::fields(group.as_bytes()) {
                fields.entry(name.to_ascii_lowercase()).or_insert(Value::String(value));
            }
            fields
        })
        .filter(|f| !f.is_empty())
        .collect()
}

/// An address or message-id without its angle brackets.
fn bare(s: &str) -> String {
    text(s.trim().trim_start_matches('<').trim_end_matches('>'))
}

fn dsn(message: &mail_parser::Message<'_>) -> Option<Value> {
    let status = message.parts.iter().find(|p| {
        p.content_type().is_some_and(|c| {
            c.ctype().eq_ignore_ascii_case("message")
                && c.subtype().is_some_and(|s| {
                    s.eq_ignore_ascii_case("delivery-status") || s.eq_ignore_ascii_case("global-delivery-status")
                })
        })
    })?;
    let mut groups = groups(body(status)).into_iter();
    let per_message = groups.next()?;
    let field = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(typed_value);
    let recipients: Vec<Value> = groups
        .take(MAX_RECIPIENTS)
        .filter(|g| g.contains_key("final-recipient") || g.contains_key("original-recipient"))
        .map(|g| {
            let mut r = Map::new();
            for (key, from) in [
                ("recipient", "final-recipient"),
                ("original-recipient", "original-recipient"),
                ("action", "action"),
                ("status", "status"),
                ("diagnostic-code", "diagnostic-code"),
                ("remote-mta", "remote-mta"),
            ] {
                if let Some(v) = field(&g, from) {
                    r.insert(key.into(), v.into());
                }
            }
            Value::Object(r)
        })
        .collect();
    let mut report = json!({"type": "dsn"});
    if let Some(Value::Object(first)) = recipients.first() {
        for (k, v) in first {
            report[k] = v.clone();
        }
    }
    if let Some(mta) = field(&per_message, "reporting-mta") {
        report["reporting-mta"] = mta.into();
    }
    if let Some(envid) = field(&per_message, "original-envelope-id") {
        report["envelope-id"] = envid.into();
    }
    if let Some(id) = returned_message_id(message) {
        report["message-id"] = id.into();
    }
    report["recipients"] = Value::Array(recipients);
    Some(report)
}

fn arf(mime: &[u8]) -> Option<Value> {
    let feedback = mail_auth::report::Feedback::parse_rfc5322(mime).ok()?;
    let kind = match feedback.feedback_type() {
        mail_auth::report::FeedbackType::Abuse => "abuse",
        mail_auth::report::FeedbackType::AuthFailure => "auth-failure",
        mail_auth::report::FeedbackType::Fraud => "fraud",
        mail_auth::report::FeedbackType::NotSpam => "not-spam",
        mail_auth::report::FeedbackType::Virus => "virus",
        mail_auth::report::FeedbackType::Other => "other",
    };
    let mut report = json!({"type": "arf", "feedback-type": kind});
    for (key, value) in [
        ("original-mail-from", feedback.original_mail_from()),
        ("original-rcpt-to", feedback.original_rcpt_to()),
        ("envelope-id", feedback.original_envelope_id()),
        ("reporting-mta", feedback.reporting_mta()),
        ("user-agent", feedback.user_agent()),
    ] {
        if let Some(v) = value {
            // Addresses as bare addresses, the way DSNs give them.
            report[key] = bare(&typed_value(v)).into();
        }
    }
    if let Some(ip) = feedback.source_ip() {
        report["source-ip"] = ip.to_string().into();
    }
    let returned = feedback.message().or(feedback.headers()).unwrap_or("");
    if let Some(id) = crate::headers::header_values(returned.as_bytes(), "message-id")
        .into_iter()
        .next()
    {
        report["message-id"] = bare(&id).into();
    }
    Some(report)
}

fn dmarc(mime: &[u8]) -> Option<Value> {
    let r = mail_auth::report::Report::parse_rfc5322(mime, MAX_DMARC_XML).ok()?;
    let messages: u64 = r.records().iter().map(|rec| u64::from(rec.row.count)).sum();
    Some(json!({
        "type": "dmarc",
        "org": text(r.org_name()),
        "email": text(r.email()),
        "report-id": text(r.report_id()),
        "domain": text(r.domain()),
        "begin": r.date_range_begin(),
        "end": r.date_range_end(),
        "records": r.records().len(),
        "messages": messages,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DSN: &str = "From: MAILER-DAEMON@mx.example.org\r\nTo: bounces@example.net\r\nSubject: Undelivered\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nIt failed.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\nOriginal-Envelope-Id: env-42\r\n\r\nFinal-Recipient: rfc822; gone@example.org\r\nOriginal-Recipient: rfc822; Gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <orig-1@example.net>\r\nSubject: news\r\n\r\n--b--\r\n";

    #[test]
    fn a_dsn_gives_recipient_status_diagnostic_and_ids() {
        let r = read(DSN.as_bytes()).unwrap();
        assert_eq!(r["type"], "dsn");
        assert_eq!(r["recipient"], "gone@example.org");
        assert_eq!(r["original-recipient"], "Gone@example.org");
        assert_eq!(
            (r["action"].as_str(), r["status"].as_str()),
            (Some("failed"), Some("5.1.1"))
        );
        assert_eq!(r["diagnostic-code"], "550 5.1.1 no such user");
        assert_eq!(r["reporting-mta"], "mx.example.org");
        assert_eq!(r["envelope-id"], "env-42");
        assert_eq!(r["message-id"], "orig-1@example.net");
        assert_eq!(r["recipients"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_hostile_dsn_is_bounded() {
        let many: String = (0..1000)
            .map(|i| format!("Final-Recipient: rfc822; r{i}@example.org\r\nStatus: 5.0.0\u{7}\r\n\r\n"))
            .collect();
        let mime = DSN.replace(
            "Final-Recipient: rfc822; gone@example.org\r\n",
            &format!("{many}Final-Recipient: rfc822; gone@example.org\r\n"),
        );
        let r = read(mime.as_bytes()).unwrap();
        assert_eq!(r["recipients"].as_array().unwrap().len(), MAX_RECIPIENTS);
        assert_eq!(r["status"], "5.0.0", "control characters are not passed on");
    }

    #[test]
    fn ordinary_mail_is_no_report() {
        assert!(read(b"From: a@example.net\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n").is_none());
        assert!(read(b"").is_none());
    }
}
