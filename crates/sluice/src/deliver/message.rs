//! An outgoing message as an SMTP transaction: the MAIL and RCPT parameters
//! the server's extensions allow (SIZE, BODY=8BITMIME, SMTPUTF8, DSN).

use super::outcome::{Attempt, ResultKind, State};
use super::outgoing::Outgoing;
use sluice_smtp::address::{dsn_notify, xtext_encode};
use sluice_smtp::client::{Capabilities, Stage, Transaction};
use sluice_smtp::wire::Param;

/// The message has no MIME and no plugin gave one.
pub fn no_mime() -> Attempt {
    Attempt::failed(
        State::Storage,
        ResultKind::Error,
        "message has no mime (a `key` needs a plugin that sets the MIME in mq_smtp_out_data)",
        true,
    )
}

/// What is sent for `mime`: DKIM-signed when the message asks for it or
/// the settings database has keys for its From address.
pub fn body(msg: &Outgoing, mime: &[u8], table: &sluice_policy::DkimKeys) -> Vec<u8> {
    let from_table = if table.is_empty() {
        Vec::new()
    } else {
        let from = crate::headers::header_values(mime, "from")
            .iter()
            .flat_map(|v| crate::headers::addresses(v))
            .next();
        from.map_or_else(Vec::new, |f| table.for_from(&f))
    };
    let (mut keys, missing) = msg
        .json
        .get("dkim")
        .map_or_else(Default::default, super::dkim::property_keys);
    if keys.is_empty() && missing.is_empty() && from_table.is_empty() {
        return mime.to_vec();
    }
    // The message's own keys first, then the table's.
    keys.extend(from_table.iter().map(|k| super::dkim::table_key(k)));
    signed(msg, &keys, missing, mime)
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
            Stage::MailFrom,
            ResultKind::Error,
            "the address needs SMTPUTF8, which the server does not offer",
            true,
        ));
    }
    // Every value below is either fixed text or checked by `Param`, so the
    // `expect`s cannot fire; they document that.
    let param = |k: &str, v: &str| Param::new(k, v).expect("fixed ESMTP parameter");
    let mut mail = Vec::new();
    if caps.size.is_some() && known {
        mail.push(param("SIZE", &body.len().to_string()));
    }
    if caps.eight_bit_mime && !body.is_ascii() {
        mail.push(param("BODY", "8BITMIME"));
    }
    if utf8 {
        mail.push(Param::flag("SMTPUTF8").expect("fixed ESMTP keyword"));
    }
    let mut rcpt = Vec::new();
    if caps.dsn {
        if let Some(ret) = msg.dsn_ret() {
            let ret = ret.to_ascii_uppercase();
            if ret == "FULL" || ret == "HDRS" {
                mail.push(param("RET", &ret));
            }
        }
        if let Some(envid) = msg.nested_str("dsn", "envid").filter(|e| !e.is_empty()) {
            mail.extend(Param::xtext("ENVID", envid).ok());
        }
        // JSON producers write `FAILURE, DELAY` too: spaces are dropped first.
        let notify = msg.dsn_notify().map(|n| n.replace(' ', ""));
        if let Some(notify) = notify.as_deref().and_then(dsn_notify) {
            rcpt.push(param("NOTIFY", &notify));
        }
        if let Some(orcpt) = msg.nested_str("dsn", "orcpt") {
            let (kind, addr) = orcpt.split_once(';').unwrap_or(("rfc822", orcpt));
            let kind = kind.trim();
            if !addr.trim().is_empty()
                && !kind.is_empty()
                && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                push_orcpt(&mut rcpt, kind, addr.trim());
            }
        }
    }
    Ok(Transaction {
        from: msg.envelope.clone(),
        from_params: mail,
        rcpts: vec![(msg.recipient.clone(), rcpt)],
        body,
    })
}

/// `ORCPT=type;xtext(address)` (RFC 3461 §4.2).
fn push_orcpt(rcpt: &mut Vec<Param>, kind: &str, addr: &str) {
    let value = format!("{kind};{}", xtext_encode(addr));
    rcpt.extend(Param::new("ORCPT", &value).ok());
}

/// The message with a DKIM-Signature per usable key in front. A key that
/// cannot sign is logged and left out: the message still goes, unsigned by it.
fn signed(msg: &Outgoing, keys: &[super::dkim::Key], missing: Vec<super::dkim::DkimError>, mime: &[u8]) -> Vec<u8> {
    let body = crate::headers::crlf(mime);
    let (headers, errors) = super::dkim::sign(keys, &body, sluice_queue::now_ms());
    for e in missing.into_iter().chain(errors) {
        tracing::warn!(recipient = %msg.recipient, error = %e, "DKIM key not used");
    }
    let mut out = headers.into_bytes();
    out.extend_from_slice(&body);
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
            dsn: Default::default(),
        };
        Outgoing::parse(json.as_bytes(), d, 0).unwrap()
    }

    fn joined(p: &[Param]) -> String {
        p.iter().map(Param::as_str).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn dsn_values_from_json_cannot_inject() {
        let m = msg(
            r#"{"envelope":"a@x.org","recipient":"b@y.org","mime":"x","dsn":{"notify":"FAILURE\r\nRSET","envid":"e\r\nRSET","orcpt":"rfc822;b@y\r\nQUIT"}}"#,
        );
        let caps = Capabilities {
            dsn: true,
            ..Default::default()
        };
        let t = transaction(&m, &caps, None).unwrap();
        assert_eq!(joined(&t.from_params), "ENVID=e+0D+0ARSET");
        assert_eq!(joined(&t.rcpts[0].1), "ORCPT=rfc822;b@y+0D+0AQUIT");
    }

    #[test]
    fn parameters_follow_the_extensions() {
        let m = msg(
            r#"{"envelope":"a@x.org","recipient":"b@y.org","mime":"Subject: é\r\n\r\nhi\r\n","dsn":{"notify":"FAILURE,DELAY","ret":"hdrs","envid":"id+1","orcpt":"rfc822;b@y.org"}}"#,
        );
        let none = Capabilities::default();
        let t = transaction(
            &m,
            &none,
            Some(body(&m, m.mime().unwrap().as_bytes(), &Default::default())),
        )
        .unwrap();
        assert!(t.from_params.is_empty());
        assert_eq!(t.rcpts[0].0.as_str(), "b@y.org");
        assert!(t.rcpts[0].1.is_empty());
        let all = Capabilities {
            size: Some(0),
            eight_bit_mime: true,
            dsn: true,
            ..Default::default()
        };
        let t = transaction(
            &m,
            &all,
            Some(body(&m, m.mime().unwrap().as_bytes(), &Default::default())),
        )
        .unwrap();
        assert_eq!(
            joined(&t.from_params),
            format!("SIZE={} BODY=8BITMIME RET=HDRS ENVID=id+2B1", m.mime().unwrap().len())
        );
        assert_eq!(joined(&t.rcpts[0].1), "NOTIFY=FAILURE,DELAY ORCPT=rfc822;b@y.org");
    }

    #[test]
    fn dsn_notify_and_dsn_ret_apply_where_the_message_names_none() {
        let d = Defaults {
            max_delivertime: 60,
            max_attempts: 0,
            dsn: crate::deliver::outgoing::DsnDefaults {
                notify: Some("FAILURE,DELAY"),
                ret: Some("FULL"),
            },
        };
        let caps = Capabilities {
            dsn: true,
            ..Default::default()
        };
        let plain = br#"{"envelope":"a@x.org","recipient":"b@y.org","mime":"x"}"#;
        let t = transaction(&Outgoing::parse(plain, d, 0).unwrap(), &caps, None).unwrap();
        assert_eq!(joined(&t.from_params), "RET=FULL");
        assert_eq!(joined(&t.rcpts[0].1), "NOTIFY=FAILURE,DELAY");
        let own = br#"{"envelope":"a@x.org","recipient":"b@y.org","mime":"x","dsn":{"notify":"NEVER","ret":"HDRS"}}"#;
        let t = transaction(&Outgoing::parse(own, d, 0).unwrap(), &caps, None).unwrap();
        assert_eq!(joined(&t.from_params), "RET=HDRS", "the message's own wins");
        assert_eq!(joined(&t.rcpts[0].1), "NOTIFY=NEVER");
    }

    #[test]
    fn utf8_addresses_need_smtputf8() {
        let m = msg(r#"{"envelope":"a@x.org","recipient":"ü@y.org","mime":"x"}"#);
        let a = transaction(&m, &Capabilities::default(), None).unwrap_err();
        assert_eq!((a.state.as_str(), a.permanent), ("mailfrom", true));
        let caps = Capabilities {
            smtputf8: true,
            ..Default::default()
        };
        assert_eq!(joined(&transaction(&m, &caps, None).unwrap().from_params), "SMTPUTF8");
    }
}
