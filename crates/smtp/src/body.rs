//! Reading a DATA body: dot-unstuffing, the `CRLF.CRLF` terminator, size
//! limit and bare CR/LF detection, incrementally over arbitrary chunks.
//!
//! SMTP smuggling works by making the receiver see the end of the data where
//! the sender's own MTA did not (`\n.\r\n`, `\r.\r`, …). Here a line starts
//! only after CRLF, so only CRLF `.` CRLF ends the body, whatever bytes came
//! before; a bare CR or LF anywhere marks the message as refused, so nothing
//! that another MTA might read differently is ever queued.

/// Result of feeding bytes to a [`BodyReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyStatus {
    /// The terminator has not been seen yet.
    NeedMore,
    /// The terminator was consumed.
    Done { too_big: bool, bare: Option<Bare> },
}

/// A line ending that is not CRLF (RFC 5321 §2.3.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bare {
    /// An LF without a CR before it.
    Lf,
    /// A CR without an LF after it.
    Cr,
}

/// Incremental DATA reader.
#[derive(Debug)]
pub struct BodyReader {
    /// The next byte starts a line: only true at the start and after CRLF.
    line_start: bool,
    /// The last byte consumed was a CR whose LF has not been seen yet.
    pending_cr: bool,
    too_big: bool,
    bare: Option<Bare>,
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
            pending_cr: false,
            too_big: false,
            bare: None,
        }
    }

    fn mark(&mut self, bare: Bare) {
        self.bare.get_or_insert(bare);
    }

    /// Consumes from `data`, appending unstuffed body bytes to `body` while
    /// they fit in `room`; returns the bytes consumed and the status.
    pub fn read(&mut self, data: &[u8], body: &mut Vec<u8>, room: usize) -> (usize, BodyStatus) {
        let mut pos = 0;
        let mut room = room;
        while pos < data.len() {
            let rest = &data[pos..];
            if self.line_start && rest[0] == b'.' {
                // Three bytes tell the terminator from a stuffed dot.
                if rest.len() < 3 && b".\r\n".starts_with(rest) {
                    return (pos, BodyStatus::NeedMore);
                }
                if rest.starts_with(b".\r\n") {
                    let status = BodyStatus::Done {
                        too_big: self.too_big,
                        bare: self.bare,
                    };
                    return (pos + 3, status);
                }
                pos += 1; // drop the stuffed dot
                self.line_start = false;
                continue;
            }
            // Up to and including the next CR or LF.
            let (segment, end) = match memchr::memchr2(b'\r', b'\n', rest) {
                Some(i) => (&rest[..=i], Some(rest[i])),
                None => (rest, None),
            };
            if self.pending_cr && (segment.len() > 1 || end != Some(b'\n')) {
                // The CR before this segment was not followed by its LF.
                self.mark(Bare::Cr);
            }
            match end {
                Some(b'\n') => {
                    let crlf = self.pending_cr && segment.len() == 1;
                    if !crlf {
                        self.mark(Bare::Lf);
                    }
                    self.line_start = crlf;
                    self.pending_cr = false;
                }
                Some(_) => {
                    self.line_start = false;
                    self.pending_cr = true;
                }
                None => {
                    self.line_start = false;
                    self.pending_cr = false;
                }
            }
            if segment.len() <= room {
                body.extend_from_slice(segment);
                room -= segment.len();
            } else {
                self.too_big = true;
                room = 0;
            }
            pos += segment.len();
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

    const OK: BodyStatus = BodyStatus::Done {
        too_big: false,
        bare: None,
    };

    #[test]
    fn unstuffs_and_terminates_across_chunks() {
        let msg: &[u8] = b"Subject: x\r\n\r\n..dot\r\nline\r\n.\r\nMAIL FROM";
        for split in 0..msg.len() {
            let (body, st, left) = read_all(&[&msg[..split], &msg[split..]], 1 << 20);
            assert_eq!(body, b"Subject: x\r\n\r\n.dot\r\nline\r\n", "split {split}");
            assert_eq!(st, OK);
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
                bare: Some(Bare::Lf)
            }
        );
        let (_, st, _) = read_all(&[b"a\r\n.\n"], 1 << 20);
        assert_eq!(st, BodyStatus::NeedMore);
    }

    /// Each way of ending a line that some MTA might take for the end of the
    /// data: none ends it here. The real end follows, and the message is
    /// refused for its bare CR/LF (a NUL or space after the dot is no line
    /// ending: that line is plain content with a stuffed dot removed).
    #[test]
    fn smuggling_variants_never_end_the_body() {
        let cases: &[(&str, &[u8], Option<Bare>)] = &[
            ("LF . CRLF", b"hello\n.\r\n", Some(Bare::Lf)),
            ("CRLF . LF", b"hello\r\n.\n", Some(Bare::Lf)),
            ("LF . LF", b"hello\n.\n", Some(Bare::Lf)),
            ("CR . CR", b"hello\r.\r", Some(Bare::Cr)),
            ("CRLF . CR", b"hello\r\n.\r", Some(Bare::Cr)),
            ("CR . CRLF", b"hello\r.\r\n", Some(Bare::Cr)),
            ("CRLF . NUL CRLF", b"hello\r\n.\0\r\n", None),
            ("CRLF . SP CRLF", b"hello\r\n. \r\n", None),
        ];
        for (name, smuggled, bare) in cases {
            let mut input = smuggled.to_vec();
            input.extend_from_slice(b"MAIL FROM:<ceo@bank.example>\r\n");
            let (body, st, left) = read_all(&[&input], 1 << 20);
            assert_eq!(st, BodyStatus::NeedMore, "{name}: ended early");
            assert_eq!(left, 0, "{name}");
            assert!(body.ends_with(b"MAIL FROM:<ceo@bank.example>\r\n"), "{name}");
            input.extend_from_slice(b".\r\n");
            let (_, st, left) = read_all(&[&input], 1 << 20);
            assert_eq!(left, 0, "{name}");
            let want = BodyStatus::Done {
                too_big: false,
                bare: *bare,
            };
            assert_eq!(st, want, "{name}");
        }
    }

    #[test]
    fn bare_cr_is_flagged_even_at_a_chunk_edge() {
        for split in 0..6 {
            let msg: &[u8] = b"ab\rcd\r\n.\r\n";
            let (body, st, _) = read_all(&[&msg[..split], &msg[split..]], 1 << 20);
            assert_eq!(body, b"ab\rcd\r\n");
            assert_eq!(
                st,
                BodyStatus::Done {
                    too_big: false,
                    bare: Some(Bare::Cr)
                },
                "split {split}"
            );
        }
        // CR at the very end of a chunk followed by LF in the next is a CRLF.
        let (_, st, _) = read_all(&[b"ab\r", b"\n.\r\n"], 1 << 20);
        assert_eq!(st, OK);
    }

    #[test]
    fn size_limit_keeps_scanning() {
        let (body, st, _) = read_all(&[b"0123456789\r\n", b"abc\r\n.\r\n"], 8);
        assert!(body.len() <= 8);
        assert_eq!(
            st,
            BodyStatus::Done {
                too_big: true,
                bare: None
            }
        );
    }

    #[test]
    fn empty_body() {
        let (body, st, _) = read_all(&[b".\r\n"], 10);
        assert!(body.is_empty());
        assert_eq!(st, OK);
    }
}
