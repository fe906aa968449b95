//! An outgoing message as an SMTP transaction: the MAIL and RCPT parameters
//! the server's extensions allow (SIZE, BODY=8BITMIME, SMTPUTF8, DSN).

use super::outcome::{Attempt, Kind};
use super::outgoing::Outgoing;
use sluice_smtp::client::{Capabilities, Transaction};

/// The message has no MIME and no plugin gave one.
pub fn no_mime() -> Attempt {
    Attempt::failed(
        "storage",
        Kind::Error,
        "message has no mime (a `key` needs a plugin that sets the MIME in mq_smtp_out_data)",
        true,
    )
}

/// What is sent for `mime`: DKIM-signed when the message asks for it.
pub fn body(msg: &Outgoing, mime: &[u8]) -> Vec<u8> {
    match msg.json.get("dkim") {
        Some(keys) => signed(msg, keys, mime),
        None => mime.to_vec(),
    }
}

/// The transaction for `msg` on a connection with `caps`, or why it cannot
/// be sent there. `body` is what will be sent when known now (it sets SIZE);
/// `None` when plugins supply it after 354.
pub fn transaction(msg: &Outgoing, caps: &Capabilities, body: Option<Vec<u8>>) -> Result<Transaction, Attempt> {
    let known = body.is_some();
    let body = body.unwrap_or_default();
    let utf8 = !msg.envelope.is_ascii() || !msg.recipient.is_ascii();
    if utf8 && !caps.smtputf8 {
        return Err(Attempt::failed(
            "mailfrom",
            Kind::Error,
            "the address needs SMTPUTF8, which the server does not offer",
            true,
        ));
    }
    let mut mail = Vec::new();
    if caps.size.is_some() && known {
        mail.push(format!("SIZE={}", body.len()));
    }
    if caps.eight_bit_mime && !body.is_ascii() {
        mail.push("BODY=8BITMIME".into());
    }
    if utf8 {
        mail.push("SMTPUTF8".into());
    }
    let mut rcpt = Vec::new();
    if caps.dsn {
        if let Some(ret) = msg.nested_str("dsn", "ret") {
            let ret = ret.to_ascii_uppercase();
            if ret == "FULL" || ret == "HDRS" {
                mail.push(format!("RET={ret}"));
            }
        }
        if let Some(envid) = msg.nested_str("dsn", "envid") {
            mail.push(format!("ENVID={}", xtext(envid)));
        }
        if let Some(notify) = msg.nested_str("dsn", "notify") {
            rcpt.push(format!("NOTIFY={}", notify.to_ascii_uppercase().replace(' ', "")));
        }
        if let Some(orcpt) = msg.nested_str("dsn", "orcpt") {
            let (kind, addr) = orcpt.split_once(';').unwrap_or(("rfc822", orcpt));
            rcpt.push(format!("ORCPT={};{}", kind.trim(), xtext(addr.trim())));
        }
    }
    Ok(Transaction {
        from: msg.envelope.clone(),
        from_params: mail.join(" "),
        rcpts: vec![(msg.recipient.clone(), rcpt.join(" "))],
        body,
    })
}

/// The message with a DKIM-Signature per usable key in front. A key that
/// cannot sign is logged and left out: the message still goes, unsigned by it.
fn signed(msg: &Outgoing, keys: &serde_json::Value, mime: &[u8]) -> Vec<u8> {
    let body = super::dkim::crlf(mime);
    let (headers, errors) = super::dkim::sign(keys, &body, sluice_queue::now_ms());
    for e in errors {
        tracing::warn!(recipient = %msg.recipient, error = %e, "DKIM key not used");
    }
    let mut out = headers.into_bytes();
    out.extend_from_slice(&body);
    out
}

/// RFC 3461 §4 xtext: `+`, `=`, controls and non-ASCII as `+HH`.
fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::outgoing::Defaults;

    fn msg(json: &str) -> Outgoing {
        let d = Defaults {
            max_delivertime: 60,
            max_attempts: 0,
        };
        Outgoing::parse(json.as_bytes(), d, 0).unwrap()
    }

    #[test]
    fn parameters_follow_the_extensions() {
        let m = msg(
            r#"{"envelope":"a@x","recipient":"b@y","mime":"Subject: é\r\n\r\nhi\r\n","dsn":{"notify":"FAILURE,DELAY","ret":"hdrs","envid":"id+1","orcpt":"rfc822;b@y"}}"#,
        );
        let none = Capabilities::default();
        let t = transaction(&m, &none, Some(body(&m, m.mime().unwrap().as_bytes()))).unwrap();
        assert_eq!(t.from_params, "");
        assert_eq!(t.rcpts, vec![("b@y".to_string(), String::new())]);
        let all = Capabilities {
            size: Some(0),
            eight_bit_mime: true,
            dsn: true,
            ..Default::default()
        };
        let t = transaction(&m, &all, Some(body(&m, m.mime().unwrap().as_bytes()))).unwrap();
        assert_eq!(
            t.from_params,
            format!("SIZE={} BODY=8BITMIME RET=HDRS ENVID=id+2B1", m.mime().unwrap().len())
        );
        assert_eq!(t.rcpts[0].1, "NOTIFY=FAILURE,DELAY ORCPT=rfc822;b@y");
    }

    #[test]
    fn utf8_addresses_need_smtputf8() {
        let m = msg(r#"{"envelope":"a@x","recipient":"ü@y","mime":"x"}"#);
        let a = transaction(&m, &Capabilities::default(), None).unwrap_err();
        assert_eq!((a.state, a.permanent), ("mailfrom", true));
        let caps = Capabilities {
            smtputf8: true,
            ..Default::default()
        };
        assert_eq!(transaction(&m, &caps, None).unwrap().from_params, "SMTPUTF8");
    }
}
