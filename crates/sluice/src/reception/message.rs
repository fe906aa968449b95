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

/// A reception made ready for its recipients: the properties they share,
/// and the MIME kept once — as text for plugins, and escaped as a JSON
/// string for storing — so R recipients of an S-byte message cost O(S)
/// memory, not O(R × S).
pub struct Prepared {
    base: Map<String, Value>,
    dsn: Map<String, Value>,
    mime: String,
    /// `mime` as a JSON string literal, quotes included.
    mime_json: Vec<u8>,
    /// The message store's key for the MIME (`storage-policy` all or in):
    /// stored copies carry it instead of the MIME.
    key: Option<String>,
}

/// Prepares a reception: `x-mq-*` headers lifted into properties, the MIME as text.
pub fn prepare(reception: Reception) -> Prepared {
    let (mime, extracted) = if reception.extract {
        extract_headers(&reception.mime)
    } else {
        (reception.mime, Map::new())
    };
    let mime = match String::from_utf8(mime) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("message is not valid UTF-8; invalid bytes stored as U+FFFD");
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    };
    let mut base = Map::new();
    base.insert("envelope".into(), Value::String(reception.envelope));
    for (k, v) in reception.properties {
        base.insert(k, v);
    }
    for (k, v) in extracted {
        merge(&mut base, k, v);
    }
    // A header cannot set the MIME (it is the rest of the message).
    base.remove("mime");
    let mime_json = serde_json::to_vec(&mime).unwrap_or_else(|_| b"\"\"".to_vec());
    Prepared {
        base,
        dsn: reception.dsn,
        mime,
        mime_json,
        key: None,
    }
}

impl Prepared {
    /// One recipient's object without the MIME.
    pub fn recipient(&self, rcpt: &Recipient, id: &str) -> Map<String, Value> {
        let mut m = self.base.clone();
        m.insert("recipient".into(), Value::String(rcpt.address.clone()));
        m.insert("message-id".into(), Value::String(id.to_string()));
        let mut dsn = self.dsn.clone();
        dsn.extend(rcpt.dsn.clone());
        if !dsn.is_empty() {
            merge(&mut m, "dsn".into(), Value::Object(dsn));
        }
        m
    }

    /// The whole object, MIME included (what plugins see and may change).
    pub fn with_mime(&self, mut m: Map<String, Value>) -> Map<String, Value> {
        m.insert("mime".into(), Value::String(self.mime.clone()));
        m
    }

    /// The stored JSON for `m`: its own `mime` when it has one (a plugin set
    /// it), else the shared one, spliced in without another copy of the text.
    pub fn serialize(&self, m: &Map<String, Value>) -> serde_json::Result<Vec<u8>> {
        if let Some(key) = self.key.as_ref().filter(|_| !m.contains_key("mime")) {
            let mut with_key = m.clone();
            with_key.insert("key".into(), key.clone().into());
            return serde_json::to_vec(&with_key);
        }
        let head = serde_json::to_vec(m)?;
        if m.contains_key("mime") {
            return Ok(head);
        }
        let mut out = Vec::with_capacity(head.len() + self.mime_json.len() + 9);
        out.extend_from_slice(&head[..head.len() - 1]); // without the closing brace
        if head.len() > 2 {
            out.push(b',');
        }
        out.extend_from_slice(b"\"mime\":");
        out.extend_from_slice(&self.mime_json);
        out.push(b'}');
        Ok(out)
    }

    /// Copies carry `key` instead of the MIME from now on.
    pub fn stored_as(&mut self, key: String) {
        self.key = Some(key);
    }

    /// The MIME text all copies share.
    pub fn mime(&self) -> &str {
        &self.mime
    }

    /// Bytes of MIME text (the `size` of a received-log line).
    pub fn mime_len(&self) -> usize {
        self.mime.len()
    }
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

/// Headers that may come more than once, each adding to a list property
/// (MailerQ's `x-mq-ip` and `x-mq-tag`).
const LISTS: &[(&str, &str)] = &[("ip", "ips"), ("ips", "ips"), ("tag", "tags")];

/// The result queues `x-mq-KIND-queue` names; one of them set turns the
/// others' configured queues off (MailerQ's MIME header page).
const QUEUE_KINDS: &[&str] = &["results", "success", "failure", "retry"];

/// The JSON value for a header value: numbers and booleans where the spec has them.
fn typed(name: &str, value: &str) -> Value {
    match name {
        "maxattempts" | "smarthost-port" | "priority" => {
            value.parse::<u64>().map(Value::from).unwrap_or_else(|_| value.into())
        }
        "retries" => Value::Array(
            value
                .split(',')
                .filter_map(|n| n.trim().parse::<u64>().ok())
                .map(Value::from)
                .collect(),
        ),
        "keepmime" | "inlinecss" => match value.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Value::Bool(true),
            "false" | "no" | "0" => Value::Bool(false),
            _ => value.into(),
        },
        "ip" | "ips" => Value::Array(
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
    let mut queue_headers = false;
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
                } else if let Some(kind) = name.strip_suffix("-queue").filter(|k| QUEUE_KINDS.contains(k)) {
                    let mut inner = Map::new();
                    inner.insert(kind.to_string(), Value::String(value));
                    merge(&mut props, "queues".into(), Value::Object(inner));
                    queue_headers = true;
                } else if let Some((_, list)) = LISTS.iter().find(|(h, _)| *h == name) {
                    let items = match typed(&name, &value) {
                        Value::Array(items) => items,
                        one => vec![one],
                    };
                    match props.get_mut(*list) {
                        Some(Value::Array(existing)) => existing.extend(items),
                        _ => {
                            props.insert(list.to_string(), Value::Array(items));
                        }
                    }
                } else {
                    props.insert(name.clone(), typed(&name, &value));
                }
            }
            _ => out.extend_from_slice(field),
        }
        pos = end;
    }
    out.extend_from_slice(&mime[pos..]);
    if queue_headers {
        if let Some(Value::Object(queues)) = props.get_mut("queues") {
            for kind in QUEUE_KINDS {
                queues.entry(kind.to_string()).or_insert(Value::Null);
            }
        }
    }
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
    fn mailerq_5_headers_become_its_json() {
        let mime = b"X-MQ-IP: 192.0.2.1\r\nx-mq-ip: 192.0.2.2\r\nX-MQ-Tag: Customer Name\r\nx-mq-tag: Campaign\r\nx-mq-pool: warm\r\nx-mq-retries: 300,600, 3600\r\nx-mq-smarthost-hostname: relay.example\r\nx-mq-failure-queue: my-failures\r\nx-mq-inlinecss: 1\r\nx-mq-priority: 7\r\nSubject: s\r\n\r\nbody\r\n";
        let (rest, props) = extract_headers(mime);
        assert_eq!(rest, b"Subject: s\r\n\r\nbody\r\n");
        assert_eq!(
            Value::Object(props),
            json!({
                "ips": ["192.0.2.1", "192.0.2.2"],
                "tags": ["Customer Name", "Campaign"],
                "pool": "warm",
                "retries": [300, 600, 3600],
                "smarthost": {"hostname": "relay.example"},
                // One x-mq-*-queue header: the configured result queues are not used.
                "queues": {"failure": "my-failures", "results": null, "success": null, "retry": null},
                "inlinecss": true,
                "priority": 7
            })
        );
    }

    #[test]
    fn one_object_per_recipient() {
        let mut dsn = Map::new();
        dsn.insert("ret".into(), "HDRS".into());
        let r = Reception {
            envelope: "s@x.y".into(),
            mime: "X-MQ-envelope: e@x.y\r\nX-MQ-mime: no\r\n\r\nbody \"quoted\" \u{e9}"
                .as_bytes()
                .to_vec(),
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
        let p = prepare(r);
        let v: Vec<Value> = rcpts
            .iter()
            .zip(["1", "2"])
            .map(|(r, id)| serde_json::from_slice(&p.serialize(&p.recipient(r, id)).unwrap()).unwrap())
            .collect();
        assert_eq!(v[0]["recipient"], "a@x.y");
        assert_eq!(v[0]["envelope"], "e@x.y");
        assert_eq!(v[0]["mime"], "X-MQ-mime: no\r\n\r\nbody \"quoted\" \u{e9}");
        assert_eq!(v[0]["dsn"], json!({"ret": "HDRS", "notify": "FAILURE"}));
        assert_eq!(v[1]["dsn"], json!({"ret": "HDRS"}));
        assert_eq!(v[1]["message-id"], "2");
        // A plugin's own MIME wins over the shared one.
        let mut changed = p.with_mime(p.recipient(&rcpts[1], "3"));
        changed.insert("mime".into(), "new".into());
        let back: Value = serde_json::from_slice(&p.serialize(&changed).unwrap()).unwrap();
        assert_eq!(back["mime"], "new");
        // An empty object still gets a well-formed splice.
        let bare: Value = serde_json::from_slice(&p.serialize(&Map::new()).unwrap()).unwrap();
        assert_eq!(bare.as_object().map(|o| o.len()), Some(1));
    }
}
