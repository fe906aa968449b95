//! What a message body carries besides its JSON, as MailerQ reads and
//! writes it: `content-encoding: gzip` (`rabbitmq-encoding`) and the
//! message's `priority` (`rabbitmq-maxpriority`).

use std::borrow::Cow;
use std::io::Read;

/// The most a compressed body may expand to: a gzip bomb costs at most this
/// much memory (the HTTP API's bound on a request body, as large as any JSON
/// message Sluice takes).
pub const MAX_DECODED: usize = 256 << 20;

/// Why a body could not be read as its `content-encoding` says.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("content-encoding `{0}` is not one Sluice reads (gzip, identity)")]
    Unknown(String),
    #[error("not valid gzip: {0}")]
    Corrupt(String),
    #[error("expands beyond {0} bytes")]
    TooLarge(usize),
}

/// The body as published, compressed when `gzip` (`rabbitmq-encoding: gzip`).
pub fn encode(body: &[u8], gzip: bool) -> Cow<'_, [u8]> {
    if !gzip {
        return body.into();
    }
    use std::io::Write;
    let mut z = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = z.write_all(body);
    z.finish().unwrap_or_default().into()
}

/// The body as its `content-encoding` says, expanding to at most `max` bytes.
pub fn decode<'a>(encoding: Option<&str>, data: &'a [u8], max: usize) -> Result<Cow<'a, [u8]>, DecodeError> {
    let encoding = encoding.map(str::trim).unwrap_or("");
    if encoding.is_empty() || encoding.eq_ignore_ascii_case("identity") {
        return Ok(data.into());
    }
    if !(encoding.eq_ignore_ascii_case("gzip") || encoding.eq_ignore_ascii_case("x-gzip")) {
        return Err(DecodeError::Unknown(encoding.chars().take(40).collect()));
    }
    let mut out = Vec::with_capacity((data.len() * 4).min(max));
    // One byte more than allowed tells "exactly max" from "beyond".
    let mut z = flate2::read::MultiGzDecoder::new(data).take(max as u64 + 1);
    z.read_to_end(&mut out)
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    if out.len() > max {
        return Err(DecodeError::TooLarge(max));
    }
    Ok(out.into())
}

/// The `priority` property of a JSON message (MailerQ 5.x), 0–255 (larger
/// values are taken as 255); `None` when absent or not a number.
pub fn priority(body: &[u8]) -> Option<u8> {
    #[derive(serde::Deserialize)]
    struct Priority {
        priority: Option<serde_json::Value>,
    }
    let p: Priority = serde_json::from_slice(body).ok()?;
    let n = p.priority?;
    let n = n.as_u64().or_else(|| n.as_str().and_then(|s| s.trim().parse().ok()))?;
    Some(n.min(255) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_bodies_come_back_as_they_were() {
        let body = br#"{"recipient":"a@b.test","mime":"Subject: x\r\n\r\nhello\r\n"}"#;
        let packed = encode(body, true).into_owned();
        assert_ne!(packed, body.to_vec());
        assert_eq!(&packed[..2], &[0x1f, 0x8b], "a gzip member");
        assert_eq!(decode(Some("gzip"), &packed, 1 << 20).unwrap().as_ref(), body);
        assert_eq!(decode(Some("x-gzip"), &packed, 1 << 20).unwrap().as_ref(), body);
        assert_eq!(encode(body, false).as_ref(), body);
        assert_eq!(decode(None, body, 1).unwrap().as_ref(), body, "no encoding: as it is");
        assert_eq!(decode(Some("identity"), body, 1).unwrap().as_ref(), body);
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_bound() {
        let zeros = vec![0u8; 10 << 20];
        let bomb = encode(&zeros, true).into_owned();
        assert!(bomb.len() < 100 << 10, "{} bytes", bomb.len());
        assert_eq!(
            decode(Some("gzip"), &bomb, 1 << 20),
            Err(DecodeError::TooLarge(1 << 20))
        );
        assert_eq!(
            decode(Some("gzip"), &bomb, 10 << 20).unwrap().len(),
            10 << 20,
            "exactly the bound is fine"
        );
    }

    #[test]
    fn bad_or_unknown_encodings_are_errors() {
        assert!(matches!(
            decode(Some("gzip"), b"{\"not\":\"gzip\"}", 1 << 20),
            Err(DecodeError::Corrupt(_))
        ));
        let packed = encode(b"{}", true).into_owned();
        assert!(matches!(
            decode(Some("gzip"), &packed[..packed.len() - 4], 1 << 20),
            Err(DecodeError::Corrupt(_))
        ));
        assert_eq!(
            decode(Some("br"), b"x", 1 << 20),
            Err(DecodeError::Unknown("br".into()))
        );
    }

    #[test]
    fn the_priority_is_read_from_the_json() {
        assert_eq!(priority(br#"{"priority": 4, "mime": "x"}"#), Some(4));
        assert_eq!(priority(br#"{"priority": "7"}"#), Some(7));
        assert_eq!(priority(br#"{"priority": 1000}"#), Some(255));
        assert_eq!(priority(br#"{"priority": -1}"#), None);
        assert_eq!(priority(br#"{"mime": "x"}"#), None);
        assert_eq!(priority(b"not json"), None);
    }
}
