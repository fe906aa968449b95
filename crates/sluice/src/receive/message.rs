//! Turning a received message into the spec's inbound JSON: one object per
//! recipient, `x-mq-*` headers lifted out of the MIME into properties.

use serde_json::{Map, Value};

/// What is known about a reception, shared by all its recipients.
#[derive(Debug, Clone)]
pub struct Reception {
    pub envelope: String,
    pub mime: Vec<u8>,
    /// Properties the source adds (`received`, `hostname`, `connection`/`cli`, …).
    pub properties: Map<String, Value>,
    /// DSN parameters from MAIL (ret, envid).
    pub dsn: Map<String, Value>,
    /// Lift `x-mq-*` headers into properties.
    pub extract: bool,
}

/// One recipient of a reception.
#[derive(Debug, Clone, Default)]
pub struct Recipient {
    pub address: String,
    /// DSN parameters from RCPT (notify, orcpt).
    pub dsn: Map<String, Value>,
}

/// Builds one JSON object per recipient; `ids` gives each its message-id.
pub fn build(reception: &Reception, recipients: &[Recipient], ids: &[String]) -> Vec<Map<String, Value>> {
    let (mime, extracted) = if reception.extract {
        extract_headers(&reception.mime)
    } else {
        (reception.mime.clone(), Map::new())
    };
    let mime = match String::from_utf8(mime) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("message is not valid UTF-8; invalid bytes stored as U+FFFD");
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    };
    let mut base = Map::new();
    base.insert("envelope".into(), Value::String(reception.envelope.clone()));
    for (k, v) in &reception.properties {
        base.insert(k.clone(), v.clone());
    }
    for (k, v) in extracted {
        merge(&mut base, k, v);
    }
    base.insert("mime".into(), Value::String(mime));
    recipients
        .iter()
        .zip(ids)
        .map(|(rcpt, id)| {
            let mut m = base.clone();
            m.insert("recipient".into(), Value::String(rcpt.address.clone()));
            m.insert("message-id".into(), Value::String(id.clone()));
            let mut dsn = reception.dsn.clone();
            dsn.extend(rcpt.dsn.clone());
            if !dsn.is_empty() {
                merge(&mut m, "dsn".into(), Value::Object(dsn));
            }
            m
        })
        .collect()
}

/// Sets `key`, merging objects (so `x-mq-smarthost-name` and `-port` combine).
fn merge(m: &mut Map<String, Value>, key: String, v: Value) {
    match (m.get_mut(&key), v) {
        (Some(Value::Object(existing)), Value::Object(new)) => existing.extend(new),
        (_, v) => {
            m.insert(key, v);
        }
    }
}

/// Objects whose members can be set by `x-mq-OBJECT-MEMBER` headers.
const OBJECTS: &[&str] = &["smarthost", "dsn", "queues", "data"];

/// The JSON value for a header value: numbers and booleans where the spec has them.
fn typed(name: &str, value: &str) -> Value {
    match name {
        "maxattempts" | "smarthost-port" => value.parse::<u64>().map(Value::from).unwrap_or_else(|_| value.into()),
        "keepmime" => match value.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Value::Bool(true),
            "false" | "no" | "0" => Value::Bool(false),
            _ => value.into(),
        },
        "ips" => Value::Array(
            value
                .split([',', ' ', ';'])
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.into()))
                .collect(),
        ),
        _ => Value::String(value.to_string()),
    }
}

/// Removes `x-mq-*` header fields from the header section and returns the
/// MIME without them and the properties they name.
pub fn extract_headers(mime: &[u8]) -> (Vec<u8>, Map<String, Value>) {
    let mut out = Vec::with_capacity(mime.len());
    let mut props = Map::new();
    let mut pos = 0;
    // Header fields: a line and its continuation lines, until the empty line.
    while pos < mime.len() {
        let line_end = |from: usize| {
            memchr::memchr(b'\n', &mime[from..])
                .map(|i| from + i + 1)
                .unwrap_or(mime.len())
        };
        let first_end = line_end(pos);
        let first = &mime[pos..first_end];
        if first == b"\r\n" || first == b"\n" || first.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
            break;
        }
        let mut end = first_end;
        while end < mime.len() && matches!(mime[end], b' ' | b'\t') {
            end = line_end(end);
        }
        let field = &mime[pos..end];
        let lifted = field.get(..5).is_some_and(|p| p.eq_ignore_ascii_case(b"x-mq-"));
        match (lifted, field.iter().position(|c| *c == b':')) {
            (true, Some(colon)) => {
                let name = String::from_utf8_lossy(&field[5..colon]).trim().to_ascii_lowercase();
                let raw = String::from_utf8_lossy(&field[colon + 1..]);
                let value = raw
                    .split(['\r', '\n'])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                if name == "recipient" || name == "message-id" || name == "mime" {
                    out.extend_from_slice(field); // per-recipient properties are not settable by headers
                } else if let Some((obj, member)) = OBJECTS
                    .iter()
                    .find_map(|o| name.strip_prefix(o).and_then(|r| r.strip_prefix('-')).map(|m| (*o, m)))
                {
                    let mut inner = Map::new();
                    inner.insert(member.to_string(), typed(&name, &value));
                    merge(&mut props, obj.to_string(), Value::Object(inner));
                } else {
                    props.insert(name.clone(), typed(&name, &value));
                }
            }
            _ => out.extend_from_slice(field),
        }
        pos = end;
    }
    out.extend_from_slice(&mime[pos..]);
    (out, props)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extracts_and_keeps_the_rest_byte_exact() {
        let mime = b"From: a@b.c\r\nX-MQ-Envelope: bounce@b.c\r\nx-mq-smarthost-name: relay.example\r\nx-mq-smarthost-port: 587\r\nX-Mq-Maxattempts: 3\r\nX-Mq-Delayed: 2030-01-01\r\n 10:00:00\r\nSubject: hi\r\n\r\nX-MQ-Body: stays\r\n";
        let (rest, props) = extract_headers(mime);
        assert_eq!(rest, b"From: a@b.c\r\nSubject: hi\r\n\r\nX-MQ-Body: stays\r\n");
        assert_eq!(
            Value::Object(props),
            json!({"envelope": "bounce@b.c", "smarthost": {"name": "relay.example", "port": 587}, "maxattempts": 3, "delayed": "2030-01-01 10:00:00"})
        );
    }

    #[test]
    fn one_object_per_recipient() {
        let mut dsn = Map::new();
        dsn.insert("ret".into(), "HDRS".into());
        let r = Reception {
            envelope: "s@x.y".into(),
            mime: b"X-MQ-envelope: e@x.y\r\n\r\nbody".to_vec(),
            properties: Map::new(),
            dsn,
            extract: true,
        };
        let mut rdsn = Map::new();
        rdsn.insert("notify".into(), "FAILURE".into());
        let rcpts = [
            Recipient {
                address: "a@x.y".into(),
                dsn: rdsn,
            },
            Recipient {
                address: "b@x.y".into(),
                ..Default::default()
            },
        ];
        let v = build(&r, &rcpts, &["1".into(), "2".into()]);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["recipient"], "a@x.y");
        assert_eq!(v[0]["envelope"], "e@x.y");
        assert_eq!(v[0]["mime"], "\r\nbody");
        assert_eq!(v[0]["dsn"], json!({"ret": "HDRS", "notify": "FAILURE"}));
        assert_eq!(v[1]["dsn"], json!({"ret": "HDRS"}));
        assert_eq!(v[1]["message-id"], "2");
    }
}
