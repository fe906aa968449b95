//! MailerQ's JSON form of a message (`"mime": {"from", "to", "subject",
//! "text", "html", "headers"}`, the responsive-email format's basic fields)
//! assembled into MIME text. Only what a producer writes inline is used:
//! nothing is downloaded (`attachments` by URL, `content.blocks` and
//! templates are refused with a reason, not fetched).

use serde_json::{Map, Value};

/// Fields of the JSON form this understands.
const KNOWN: &[&str] = &[
    "from",
    "to",
    "cc",
    "replyTo",
    "reply-to",
    "subject",
    "text",
    "textVersion",
    "html",
    "htmlVersion",
    "headers",
];

/// The MIME text for the JSON form `parts`, or why it cannot be made.
pub fn assemble(parts: &Map<String, Value>) -> Result<String, String> {
    if let Some(k) = parts.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!(
            "`{}` in the JSON form of a message is not supported (Sluice assembles from, to, cc, replyTo, subject, text, html and headers; it downloads nothing)",
            sluice_smtp::wire::shown(k)
        ));
    }
    let text = first_str(parts, &["text", "textVersion"]);
    let html = first_str(parts, &["html", "htmlVersion"]);
    if text.is_none() && html.is_none() {
        return Err("the JSON form of a message needs `text` or `html`".into());
    }
    let mut m = mail_builder::MessageBuilder::new();
    if let Some(from) = parts.get("from") {
        m = m.from(address(from, "from")?);
    }
    if let Some(to) = parts.get("to") {
        m = m.to(address(to, "to")?);
    }
    if let Some(cc) = parts.get("cc") {
        m = m.cc(address(cc, "cc")?);
    }
    if let Some(reply) = parts.get("replyTo").or_else(|| parts.get("reply-to")) {
        m = m.reply_to(address(reply, "replyTo")?);
    }
    if let Some(subject) = parts.get("subject").and_then(Value::as_str) {
        m = m.subject(one_line(subject));
    }
    if let Some(headers) = parts.get("headers") {
        let Value::Object(headers) = headers else {
            return Err("`headers` must be an object of name: value".into());
        };
        for (name, value) in headers {
            if !field_name(name) {
                return Err(format!(
                    "`{}` is not a header field name",
                    sluice_smtp::wire::shown(name)
                ));
            }
            let value = match value {
                Value::String(s) => one_line(s),
                Value::Number(_) | Value::Bool(_) => value.to_string(),
                _ => return Err(format!("header `{name}` must be a string")),
            };
            m = m.header(name.clone(), mail_builder::headers::raw::Raw::new(value));
        }
    }
    if let Some(text) = text {
        m = m.text_body(text.to_string());
    }
    if let Some(html) = html {
        m = m.html_body(html.to_string());
    }
    m.write_to_string().map_err(|e| e.to_string())
}

fn first_str<'a>(parts: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| parts.get(*k).and_then(Value::as_str))
}

/// A header value on one line: CR and LF would start another header field.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

/// RFC 5322 field names: printable ASCII without `:`.
fn field_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 76 && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// `"a@b"`, `"Name <a@b>"`, `{"name", "address" | "email"}`, or an array of those.
fn address(v: &Value, what: &str) -> Result<mail_builder::headers::address::Address<'static>, String> {
    use mail_builder::headers::address::Address;
    let one = |v: &Value| -> Result<Address<'static>, String> {
        let (name, addr) = match v {
            Value::String(s) => match (s.rfind('<'), s.rfind('>')) {
                (Some(a), Some(b)) if a < b => (
                    s[..a].trim().trim_matches('"').to_string(),
                    s[a + 1..b].trim().to_string(),
                ),
                _ => (String::new(), s.trim().to_string()),
            },
            Value::Object(o) => (
                o.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
                o.get("address")
                    .or_else(|| o.get("email"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            ),
            _ => return Err(format!("`{what}` must be an address")),
        };
        sluice_smtp::wire::Path::mailbox(&addr).map_err(|e| format!("{what}: {e}"))?;
        let name = one_line(&name);
        Ok(if name.is_empty() {
            Address::new_address(None::<String>, addr)
        } else {
            Address::new_address(Some(name), addr)
        })
    };
    match v {
        Value::Array(items) if !items.is_empty() => Ok(Address::new_list(
            items.iter().take(1000).map(one).collect::<Result<_, _>>()?,
        )),
        _ => one(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn made(v: Value) -> Result<String, String> {
        assemble(v.as_object().unwrap())
    }

    #[test]
    fn the_basic_fields_make_a_multipart_message() {
        let mime = made(json!({
            "from": "Sender <from@example.com>",
            "to": [{"name": "Rcpt", "address": "to@example.org"}, "other@example.org"],
            "subject": "Hello é",
            "text": "plain words",
            "html": "<p>html words</p>",
            "headers": {"x-campaign": "c1"}
        }))
        .unwrap();
        let parsed = mail_parser::MessageParser::default().parse(mime.as_bytes()).unwrap();
        assert_eq!(parsed.subject(), Some("Hello é"));
        assert_eq!(
            parsed.from().unwrap().first().unwrap().address(),
            Some("from@example.com")
        );
        assert_eq!(parsed.to().unwrap().iter().count(), 2);
        assert_eq!(parsed.body_text(0).unwrap().trim(), "plain words");
        assert!(parsed.body_html(0).unwrap().contains("html words"));
        assert_eq!(parsed.header_raw("x-campaign").map(str::trim), Some("c1"));
    }

    #[test]
    fn nothing_from_the_json_starts_a_header_of_its_own() {
        let mime = made(json!({
            "from": "a@example.com",
            "subject": "hi\r\nBcc: victim@example.net",
            "text": "x",
            "headers": {"x-a": "1\r\nBcc: victim@example.net"}
        }))
        .unwrap();
        let head = &mime[..mime.find("\r\n\r\n").unwrap()];
        assert!(!head.to_ascii_lowercase().contains("\r\nbcc:"), "{head}");
        assert!(made(json!({"text": "x", "headers": {"bad name": "v"}})).is_err());
        assert!(made(json!({"text": "x", "from": "not an address\r\n"})).is_err());
    }

    #[test]
    fn what_needs_downloading_or_templates_is_refused_with_a_reason() {
        let e = made(json!({"text": "x", "attachments": [{"url": "http://example.com/a.pdf"}]})).unwrap_err();
        assert!(e.contains("attachments") && e.contains("downloads nothing"), "{e}");
        let e = made(json!({"subject": "no body"})).unwrap_err();
        assert!(e.contains("needs `text` or `html`"), "{e}");
    }
}
