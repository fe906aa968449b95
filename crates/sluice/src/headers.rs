//! Header fields of a MIME text (CRLF line ends): the unfolded values of
//! one field and the addresses in them. Used where Sluice reads a message's
//! own headers: `sendmail -t`, DKIM signing by From address, the
//! `extracted` property of results.

/// The unfolded values of header `name` in the header section.
pub fn header_values(mime: &[u8], name: &str) -> Vec<String> {
    fields(mime)
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

/// Every header field of the header section, unfolded: `(name, value)`, in order.
pub fn fields(mime: &[u8]) -> Vec<(String, String)> {
    // Only the header section is decoded: a large body costs nothing here.
    let end = memchr::memmem::find(mime, b"\r\n\r\n").unwrap_or(mime.len());
    let text = String::from_utf8_lossy(&mime[..end]);
    let head = text.as_ref();
    let mut fields: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            fields.push(line.to_string());
        }
    }
    fields
        .into_iter()
        .filter_map(|f| {
            let (n, v) = f.split_once(':')?;
            Some((n.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// `message` with every line ending as CRLF, as SMTP has them (files and
/// producers often write bare LF; what is signed must be what is sent).
pub fn crlf(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32);
    let mut prev = 0u8;
    for &b in message {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// The first address in the first of `headers` that has one (the envelope
/// sender of a message received without one); empty when none has.
pub fn envelope(mime: &[u8], headers: &[&str]) -> String {
    for h in headers {
        if let Some(a) = header_values(mime, h).iter().flat_map(|v| addresses(v)).next() {
            return a;
        }
    }
    String::new()
}

/// Removes header fields named `name` (sendmail -t drops Bcc).
pub fn remove_header(mime: &[u8], name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(mime.len());
    let mut pos = 0;
    let mut dropping = false;
    while pos < mime.len() {
        let end = memchr::memchr(b'\n', &mime[pos..])
            .map(|i| pos + i + 1)
            .unwrap_or(mime.len());
        let line = &mime[pos..end];
        if line == b"\r\n" {
            break;
        }
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            dropping = line.len() > name.len()
                && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
                && line[name.len()] == b':';
        }
        if !dropping {
            out.extend_from_slice(line);
        }
        pos = end;
    }
    out.extend_from_slice(&mime[pos..]);
    out
}

/// Addresses in a header value: `a@b, "Name" <c@d>` → `[a@b, c@d]`.
pub fn addresses(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0, false, 0);
    let mut parts = Vec::new();
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    for p in parts {
        let addr = match (p.rfind('<'), p.rfind('>')) {
            (Some(a), Some(b)) if a < b => p[a + 1..b].trim(),
            _ => p.split_whitespace().find(|w| w.contains('@')).unwrap_or("").trim(),
        };
        if !addr.is_empty() {
            out.push(addr.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends_become_crlf() {
        assert_eq!(crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
    }
}
