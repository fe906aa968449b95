//! Reading a DATA body: dot-unstuffing, the `CRLF.CRLF` terminator, size
//! limit and bare-LF detection, incrementally over arbitrary chunks.

/// Result of feeding bytes to a [`BodyReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyStatus {
    /// The terminator has not been seen yet.
    NeedMore,
    /// The terminator was consumed.
    Done { too_big: bool, bare_lf: bool },
}

/// Incremental DATA reader. Only `CRLF . CRLF` ends the body: a bare LF never
/// does (SMTP smuggling), and any bare LF marks the message as refused.
#[derive(Debug)]
pub struct BodyReader {
    line_start: bool,
    prev_cr: bool,
    too_big: bool,
    bare_lf: bool,
}

impl Default for BodyReader {
    fn default() -> Self {
        Self::new()
    }
}

impl BodyReader {
    pub fn new() -> Self {
        BodyReader {
            line_start: true,
            prev_cr: false,
            too_big: false,
            bare_lf: false,
        }
    }

    /// Consumes from `data`, appending unstuffed body bytes to `body` while
    /// they fit in `room`; returns the bytes consumed and the status.
    pub fn read(&mut self, data: &[u8], body: &mut Vec<u8>, room: usize) -> (usize, BodyStatus) {
        let mut pos = 0;
        let mut room = room;
        while pos < data.len() {
            let rest = &data[pos..];
            if self.line_start && rest[0] == b'.' {
                // Need three bytes to tell the terminator from a stuffed dot.
                if rest.len() < 3 && (rest == b"." || rest == b".\r") {
                    return (pos, BodyStatus::NeedMore);
                }
                if rest.starts_with(b".\r\n") {
                    return (
                        pos + 3,
                        BodyStatus::Done {
                            too_big: self.too_big,
                            bare_lf: self.bare_lf,
                        },
                    );
                }
                pos += 1; // drop the stuffed dot
                self.line_start = false;
                continue;
            }
            let (line, ended) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..=i], true),
                None => (rest, false),
            };
            if ended {
                let cr_before = if line.len() >= 2 {
                    line[line.len() - 2] == b'\r'
                } else {
                    self.prev_cr
                };
                if !cr_before {
                    self.bare_lf = true;
                }
            }
            if line.len() <= room {
                body.extend_from_slice(line);
                room -= line.len();
            } else {
                self.too_big = true;
                room = 0;
            }
            self.prev_cr = line.last() == Some(&b'\r');
            self.line_start = ended;
            pos += line.len();
        }
        (pos, BodyStatus::NeedMore)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(chunks: &[&[u8]], room: usize) -> (Vec<u8>, BodyStatus, usize) {
        let mut r = BodyReader::new();
        let mut body = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut last = BodyStatus::NeedMore;
        let mut left = 0;
        for (i, c) in chunks.iter().enumerate() {
            pending.extend_from_slice(c);
            let room_left = room.saturating_sub(body.len());
            let (used, st) = r.read(&pending, &mut body, room_left);
            pending.drain(..used);
            last = st;
            left = pending.len() + chunks[i + 1..].iter().map(|c| c.len()).sum::<usize>();
            if st != BodyStatus::NeedMore {
                break;
            }
        }
        (body, last, left)
    }

    #[test]
    fn unstuffs_and_terminates_across_chunks() {
        let msg: &[u8] = b"Subject: x\r\n\r\n..dot\r\nline\r\n.\r\nMAIL FROM";
        for split in 0..msg.len() {
            let (body, st, left) = read_all(&[&msg[..split], &msg[split..]], 1 << 20);
            assert_eq!(body, b"Subject: x\r\n\r\n.dot\r\nline\r\n", "split {split}");
            assert_eq!(
                st,
                BodyStatus::Done {
                    too_big: false,
                    bare_lf: false
                }
            );
            assert_eq!(left, 9);
        }
    }

    #[test]
    fn bare_lf_never_terminates_and_is_flagged() {
        let (_, st, _) = read_all(&[b"a\n.\nb\r\n.\r\n"], 1 << 20);
        assert_eq!(
            st,
            BodyStatus::Done {
                too_big: false,
                bare_lf: true
            }
        );
        let (_, st, _) = read_all(&[b"a\r\n.\n"], 1 << 20);
        assert_eq!(st, BodyStatus::NeedMore);
    }

    #[test]
    fn size_limit_keeps_scanning() {
        let (body, st, _) = read_all(&[b"0123456789\r\n", b"abc\r\n.\r\n"], 8);
        assert!(body.len() <= 8);
        assert_eq!(
            st,
            BodyStatus::Done {
                too_big: true,
                bare_lf: false
            }
        );
    }

    #[test]
    fn empty_body() {
        let (body, st, _) = read_all(&[b".\r\n"], 10);
        assert!(body.is_empty());
        assert_eq!(
            st,
            BodyStatus::Done {
                too_big: false,
                bare_lf: false
            }
        );
    }
}
