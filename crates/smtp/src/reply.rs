//! SMTP replies: a code, an optional enhanced status (RFC 3463) and text lines.

use std::fmt::Write as _;

/// One SMTP reply, possibly multi-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code (RFC 5321 §4.2).
    pub code: u16,
    /// Enhanced status code such as `5.1.1`, written after the code on every line.
    pub status: Option<String>,
    /// Text lines; at least one (may be empty).
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    pub fn new(code: u16, status: &str, text: impl Into<String>) -> Self {
        Reply {
            code,
            status: (!status.is_empty()).then(|| status.to_string()),
            lines: vec![text.into()],
        }
    }

    /// A one-line reply without enhanced status (greeting, EHLO, 334 challenges).
    pub fn plain(code: u16, text: impl Into<String>) -> Self {
        Reply {
            code,
            status: None,
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply without enhanced status (EHLO).
    pub fn multi(code: u16, lines: Vec<String>) -> Self {
        Reply {
            code,
            status: None,
            lines,
        }
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 4xx.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The reply text (lines joined by a space), without code or status.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// Appends the wire form (CRLF-terminated lines) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let empty = [String::new()];
        let lines = if self.lines.is_empty() {
            &empty[..]
        } else {
            &self.lines[..]
        };
        let mut s = String::new();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            let _ = write!(s, "{}{}", self.code, sep);
            if let Some(status) = &self.status {
                s.push_str(status);
                if !line.is_empty() {
                    s.push(' ');
                }
            }
            s.push_str(line);
            s.push_str("\r\n");
        }
        out.extend_from_slice(s.as_bytes());
    }

    /// The wire form as a string (for logs and tests).
    pub fn to_wire(&self) -> String {
        let mut v = Vec::new();
        self.write_to(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }
}

/// True if `out` is a sequence of well-formed reply lines (`DDD` + space or
/// dash, CRLF-terminated); for tests and fuzzing of what a session writes.
pub fn well_formed(out: &[u8]) -> bool {
    out.split_inclusive(|b| *b == b'\n').all(|line| {
        line.ends_with(b"\r\n")
            && line.len() >= 5
            && line[..3].iter().all(u8::is_ascii_digit)
            && (line[3] == b' ' || line[3] == b'-')
    })
}

/// Why bytes from a server are not a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply too long")]
    TooLong,
    #[error("invalid reply line: {0:?}")]
    Invalid(String),
}

/// Longest reply accepted (all lines).
const MAX_REPLY: usize = 64 * 1024;

/// Parses one complete reply at the start of `buf`: `Ok(None)` needs more.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code: Option<u16> = None;
    let mut lines = Vec::new();
    loop {
        let Some(nl) = buf[pos..].iter().position(|b| *b == b'\n') else {
            return if buf.len() > MAX_REPLY {
                Err(ReplyError::TooLong)
            } else {
                Ok(None)
            };
        };
        let raw = &buf[pos..pos + nl];
        let line = String::from_utf8_lossy(raw.strip_suffix(b"\r").unwrap_or(raw)).into_owned();
        pos += nl + 1;
        let digits = line.get(..3).filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
        let Some(this) = digits.and_then(|d| d.parse::<u16>().ok()) else {
            return Err(ReplyError::Invalid(line));
        };
        if code.is_some_and(|c| c != this) || !(200..600).contains(&this) {
            return Err(ReplyError::Invalid(line));
        }
        code = Some(this);
        let sep = line.as_bytes().get(3).copied();
        lines.push(line.get(4..).unwrap_or("").to_string());
        match sep {
            Some(b'-') => continue,
            None | Some(b' ') => break,
            _ => return Err(ReplyError::Invalid(line)),
        }
    }
    let code = code.unwrap_or(0);
    // An enhanced status code (RFC 3463) at the start of the first line.
    let status = lines.first().and_then(|l| {
        let first = l.split(' ').next()?;
        let parts: Vec<&str> = first.split('.').collect();
        let ok = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then(|| first.to_string())
    });
    if let Some(s) = &status {
        for l in &mut lines {
            if let Some(rest) = l.strip_prefix(s.as_str()) {
                *l = rest.trim_start().to_string();
            }
        }
    }
    Ok(Some((Reply { code, status, lines }, pos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line() {
        assert_eq!(Reply::new(250, "2.1.0", "Ok").to_wire(), "250 2.1.0 Ok\r\n");
        assert_eq!(
            Reply::multi(250, vec!["host".into(), "SIZE 10".into(), "8BITMIME".into()]).to_wire(),
            "250-host\r\n250-SIZE 10\r\n250 8BITMIME\r\n"
        );
        assert_eq!(Reply::plain(354, "go").to_wire(), "354 go\r\n");
    }
}
