//! The `extracted` property of published results (MailerQ 5.x): what a
//! result consumer would otherwise parse the MIME for — from, to, subject,
//! the header fields, and the envelope and recipient split in two.

use serde_json::{json, Map, Value};

/// At most this many header fields are copied (the MIME is the producer's).
const MAX_FIELDS: usize = 200;
/// At most this many `to` addresses.
const MAX_TO: usize = 100;
/// A header value is cut at RFC 5322's line limit.
const MAX_VALUE: usize = 998;

/// `extracted` for a message, when it carries its MIME.
pub fn extracted(json: &Map<String, Value>) -> Option<Value> {
    let mime = json.get("mime")?.as_str()?;
    let fields = crate::headers::fields(mime.as_bytes());
    let mut headers = Map::new();
    for (name, value) in fields.iter().take(MAX_FIELDS) {
        let name = name.to_ascii_lowercase();
        if !headers.contains_key(&name) {
            headers.insert(name, Value::String(value.chars().take(MAX_VALUE).collect()));
        }
    }
    let header = |n: &str| headers.get(n).and_then(Value::as_str).unwrap_or("");
    let from = crate::headers::addresses(header("from")).into_iter().next();
    let to: Vec<String> = crate::headers::addresses(header("to"))
        .into_iter()
        .take(MAX_TO)
        .collect();
    let split = |key: &str| {
        let address = json.get(key).and_then(Value::as_str).unwrap_or("");
        match address.rsplit_once('@') {
            Some((local, domain)) => json!({"address": address, "local": local, "domain": domain}),
            None => json!({"address": address, "local": address, "domain": ""}),
        }
    };
    let mut out = json!({
        "to": to,
        "envelope": split("envelope"),
        "recipient": split("recipient"),
    });
    if let Some(from) = from {
        out["from"] = from.into();
    }
    if headers.contains_key("subject") {
        out["subject"] = header("subject").into();
    }
    out["headers"] = Value::Object(headers);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_to_subject_headers_and_the_addresses_split() {
        let m = json!({
            "envelope": "bounce@example.net",
            "recipient": "Rcpt@Example.org",
            "mime": "From: \"News\" <news@example.net>\r\nTo: a@example.org, \"B\" <b@example.org>\r\nSubject: Hello\r\n there\r\nX-Campaign: c1\r\n\r\nFrom: not a header\r\n"
        });
        let e = extracted(m.as_object().unwrap()).unwrap();
        assert_eq!(e["from"], "news@example.net");
        assert_eq!(e["to"], json!(["a@example.org", "b@example.org"]));
        assert_eq!(e["subject"], "Hello there");
        assert_eq!(e["headers"]["x-campaign"], "c1");
        assert_eq!(
            e["envelope"],
            json!({"address": "bounce@example.net", "local": "bounce", "domain": "example.net"})
        );
        assert_eq!(e["recipient"]["domain"], "Example.org");
        assert!(
            extracted(json!({"recipient": "a@b"}).as_object().unwrap()).is_none(),
            "no MIME, nothing"
        );
    }

    #[test]
    fn a_hostile_header_section_is_bounded() {
        let mut mime: String = (0..1000).map(|i| format!("X-H{i}: {}\r\n", "v".repeat(2000))).collect();
        mime.push_str("\r\nbody");
        let e = extracted(json!({"mime": mime}).as_object().unwrap()).unwrap();
        assert_eq!(e["headers"].as_object().unwrap().len(), MAX_FIELDS);
        assert_eq!(e["headers"]["x-h0"].as_str().unwrap().len(), MAX_VALUE);
    }
}
