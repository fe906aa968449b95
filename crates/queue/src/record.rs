//! The on-disk log format. A segment file is a 16-byte header followed by
//! records; each record is `len: u32 | crc32(payload): u32 | payload`, little
//! endian. A payload is `kind: u8 | id: u64` and, for a publish,
//! `not_before_ms: u64 | queue_len: u16 | queue | body`.

pub const MAGIC: &[u8; 8] = b"SLUICEQ1";
pub const HEADER_LEN: u64 = 16;

const KIND_PUBLISH: u8 = 1;
const KIND_ACK: u8 = 2;

/// One decoded record; bodies stay in the file and are located by offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    Publish {
        id: u64,
        not_before_ms: u64,
        queue: &'a str,
        body_offset: usize,
        body_len: usize,
    },
    Ack {
        id: u64,
    },
}

/// Appends a publish record; returns the body's offset within `out`.
pub fn encode_publish(out: &mut Vec<u8>, id: u64, not_before_ms: u64, queue: &str, body: &[u8]) -> usize {
    let payload_len = 1 + 8 + 8 + 2 + queue.len() + body.len();
    let start = out.len();
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(KIND_PUBLISH);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&not_before_ms.to_le_bytes());
    out.extend_from_slice(&(queue.len() as u16).to_le_bytes());
    out.extend_from_slice(queue.as_bytes());
    let body_offset = out.len();
    out.extend_from_slice(body);
    seal(out, start);
    body_offset
}

/// Appends an ack record.
pub fn encode_ack(out: &mut Vec<u8>, id: u64) {
    let start = out.len();
    out.extend_from_slice(&9u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(KIND_ACK);
    out.extend_from_slice(&id.to_le_bytes());
    seal(out, start);
}

fn seal(out: &mut [u8], start: usize) {
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the record at `pos`; `None` at the end or at a torn/corrupt record.
/// Returns the record and the position after it.
pub fn decode(buf: &[u8], pos: usize) -> Option<(Record<'_>, usize)> {
    let head = buf.get(pos..pos + 8)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..8].try_into().ok()?);
    let payload = buf.get(pos + 8..(pos + 8).checked_add(len)?)?;
    if len < 9 || crc32fast::hash(payload) != crc {
        return None;
    }
    let id = u64::from_le_bytes(payload[1..9].try_into().ok()?);
    let next = pos + 8 + len;
    match payload[0] {
        KIND_ACK if len == 9 => Some((Record::Ack { id }, next)),
        KIND_PUBLISH if len >= 19 => {
            let not_before_ms = u64::from_le_bytes(payload[9..17].try_into().ok()?);
            let qlen = u16::from_le_bytes(payload[17..19].try_into().ok()?) as usize;
            let queue = std::str::from_utf8(payload.get(19..19 + qlen)?).ok()?;
            let body_offset = pos + 8 + 19 + qlen;
            Some((
                Record::Publish {
                    id,
                    not_before_ms,
                    queue,
                    body_offset,
                    body_len: next - body_offset,
                },
                next,
            ))
        }
        _ => None,
    }
}

/// A segment header: magic and the first id the segment may hold.
pub fn header(first_id: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&first_id.to_le_bytes());
    h
}

/// Reads a header; `None` if it is not one of ours.
pub fn parse_header(buf: &[u8]) -> Option<u64> {
    (buf.get(..8)? == MAGIC).then(|| u64::from_le_bytes(buf[8..16].try_into().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_torn_tail() {
        let mut buf = Vec::new();
        let off = encode_publish(&mut buf, 7, 1234, "outbox", b"{\"a\":1}");
        let mid = buf.len();
        encode_ack(&mut buf, 7);
        let (rec, next) = decode(&buf, 0).unwrap();
        assert_eq!(next, mid);
        assert_eq!(
            rec,
            Record::Publish {
                id: 7,
                not_before_ms: 1234,
                queue: "outbox",
                body_offset: off,
                body_len: 7
            }
        );
        assert_eq!(&buf[off..off + 7], b"{\"a\":1}");
        assert_eq!(decode(&buf, mid).unwrap().0, Record::Ack { id: 7 });
        for cut in mid..buf.len() {
            assert_eq!(decode(&buf[..cut], mid), None, "cut at {cut}");
        }
        let mut flipped = buf.clone();
        flipped[off] ^= 1;
        assert_eq!(decode(&flipped, 0), None);
        assert_eq!(decode(&[0u8; 32], 0), None, "zero-filled tail is not a record");
    }
}
