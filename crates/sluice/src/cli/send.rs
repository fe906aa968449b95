//! `sluice send` / `sendmail`: a message from standard input to the inbox,
//! with sendmail's end-of-message and envelope rules.

pub use crate::headers::{addresses, header_values, remove_header};

/// Reads a message the sendmail way: unless `ignore_dot`, a line holding a
/// single `.` ends it and a leading `..` is unstuffed. Lines end in CRLF.
pub fn read_message(input: &[u8], ignore_dot: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 40);
    let text = input.strip_suffix(b"\n").unwrap_or(input);
    if text.is_empty() {
        return out;
    }
    for line in text.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = if !ignore_dot {
            if line == b"." {
                break;
            }
            line.strip_prefix(b".").filter(|l| l.starts_with(b".")).unwrap_or(line)
        } else {
            line
        };
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The envelope sender when none is given: from `x-mq-envelope`,
/// `return-path`, `sender` or `from`, in that order (sendmail's: Sender is
/// who actually submitted it).
pub fn envelope_from_headers(mime: &[u8]) -> String {
    crate::headers::envelope(mime, &["x-mq-envelope", "return-path", "sender", "from"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_rules() {
        assert_eq!(read_message(b"a\n..b\n.\nignored\n", false), b"a\r\n.b\r\n");
        assert_eq!(read_message(b"a\n..b\n.\nkept\n", true), b"a\r\n..b\r\n.\r\nkept\r\n");
        assert_eq!(read_message(b"a\r\nb", false), b"a\r\nb\r\n");
    }

    #[test]
    fn headers_and_addresses() {
        let m = b"From: \"Doe, J\" <j@d.e>\r\nTo: a@b.c,\r\n x <y@z.w>\r\nBcc: hidden@h.i\r\n\r\nBcc: body\r\n";
        assert_eq!(envelope_from_headers(m), "j@d.e");
        assert_eq!(addresses(&header_values(m, "to")[0]), ["a@b.c", "y@z.w"]);
        assert_eq!(
            remove_header(m, "bcc"),
            b"From: \"Doe, J\" <j@d.e>\r\nTo: a@b.c,\r\n x <y@z.w>\r\n\r\nBcc: body\r\n"
        );
    }
}
