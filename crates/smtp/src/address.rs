//! Mailbox syntax (RFC 5321 §4.1.2, RFC 6531 for UTF-8) and path parsing.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressError {
    /// Not a valid mailbox.
    Syntax,
    /// Valid only with SMTPUTF8, which the transaction did not ask for.
    NeedsSmtputf8,
}

/// Splits `<path> params` (or a bare `path params`) into the mailbox (`""` for
/// the null path `<>`) and the rest; source routes (`<@a,@b:u@d>`) are dropped.
pub fn split_path(s: &str) -> Result<(&str, &str), AddressError> {
    let s = s.trim_start();
    if let Some(inner) = s.strip_prefix('<') {
        let end = closing_bracket(inner).ok_or(AddressError::Syntax)?;
        let mut path = &inner[..end];
        if path.starts_with('@') {
            // A source route ends at the first ':' outside a quoted local part.
            let colon = path.find(':').ok_or(AddressError::Syntax)?;
            path = &path[colon + 1..];
        }
        Ok((path, &inner[end + 1..]))
    } else {
        // Lenient like Postfix: a bare address without brackets.
        let end = s.find(' ').unwrap_or(s.len());
        if end == 0 {
            return Err(AddressError::Syntax);
        }
        Ok((&s[..end], &s[end..]))
    }
}

/// Index of the `>` closing a path, skipping quoted strings.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// Checks `local@domain`; `utf8` says whether non-ASCII is allowed.
pub fn validate_mailbox(addr: &str, utf8: bool) -> Result<(), AddressError> {
    let at = addr.rfind('@').ok_or(AddressError::Syntax)?;
    let (local, domain) = (&addr[..at], &addr[at + 1..]);
    validate_local(local)?;
    validate_domain(domain)?;
    if !utf8 && !addr.is_ascii() {
        return Err(AddressError::NeedsSmtputf8);
    }
    Ok(())
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn validate_local(local: &str) -> Result<(), AddressError> {
    if local.is_empty() {
        return Err(AddressError::Syntax);
    }
    if let Some(q) = local.strip_prefix('"') {
        let body = q.strip_suffix('"').ok_or(AddressError::Syntax)?;
        let mut escaped = false;
        for c in body.chars() {
            // quoted-pairSMTP and qtextSMTP are printable (RFC 5321 §4.1.2):
            // not even an escaped control character may appear.
            if c.is_ascii_control() {
                return Err(AddressError::Syntax);
            }
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                return Err(AddressError::Syntax);
            }
        }
        return if escaped { Err(AddressError::Syntax) } else { Ok(()) };
    }
    if local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
    {
        Ok(())
    } else {
        Err(AddressError::Syntax)
    }
}

/// A domain name or an address literal (`[192.0.2.1]`, `[IPv6:…]`).
pub fn validate_domain(domain: &str) -> Result<(), AddressError> {
    if let Some(lit) = domain.strip_prefix('[') {
        let lit = lit.strip_suffix(']').ok_or(AddressError::Syntax)?;
        let ok = match lit.get(..5) {
            Some(p) if p.eq_ignore_ascii_case("ipv6:") => lit[5..].parse::<Ipv6Addr>().is_ok(),
            _ => lit.parse::<Ipv4Addr>().is_ok(),
        };
        return if ok { Ok(()) } else { Err(AddressError::Syntax) };
    }
    if domain.is_empty() || domain.len() > 255 {
        return Err(AddressError::Syntax);
    }
    for label in domain.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii());
        if !ok {
            return Err(AddressError::Syntax);
        }
    }
    Ok(())
}

/// RFC 3461 §4 xtext: `+`, `=`, controls, space and non-ASCII as `+HH`.
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// A DSN NOTIFY value (RFC 3461 §4.1), upper-cased: `NEVER`, or a comma list
/// of SUCCESS, FAILURE and DELAY; None for anything else.
pub fn dsn_notify(v: &str) -> Option<String> {
    let v = v.to_ascii_uppercase();
    let items: Vec<&str> = v.split(',').collect();
    let ok = items == ["NEVER"] || items.iter().all(|i| matches!(*i, "SUCCESS" | "FAILURE" | "DELAY"));
    ok.then_some(v)
}

/// Decodes RFC 3461 xtext (`+2B` → `+`); invalid escapes are kept as written.
pub fn xtext_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(split_path("<a@b.c> SIZE=5"), Ok(("a@b.c", " SIZE=5")));
        assert_eq!(split_path("<>"), Ok(("", "")));
        assert_eq!(split_path(" <@x,@y:u@d.e>"), Ok(("u@d.e", "")));
        assert_eq!(split_path("<\"a>b\"@c.d>"), Ok(("\"a>b\"@c.d", "")));
        assert_eq!(split_path("a@b.c BODY=8BITMIME"), Ok(("a@b.c", " BODY=8BITMIME")));
        assert_eq!(split_path("<a@b.c"), Err(AddressError::Syntax));
    }

    #[test]
    fn mailboxes() {
        for good in [
            "a@b.c",
            "first.last+tag@ex-ample.org",
            "\"a b\"@c.d",
            "x@[127.0.0.1]",
            "x@[IPv6:::1]",
        ] {
            assert_eq!(validate_mailbox(good, false), Ok(()), "{good}");
        }
        for bad in [
            "a",
            "@b.c",
            "a@",
            "a..b@c.d",
            ".a@c.d",
            "a@-b.c",
            "a@b..c",
            "a b@c.d",
            "a@[1.2.3]",
            "a@b_c.d",
            "\"a\\\r\"@c.d",
            "\"a\r\nb\"@c.d",
            "\"a\tb\"@c.d",
        ] {
            assert_eq!(validate_mailbox(bad, false), Err(AddressError::Syntax), "{bad}");
        }
        assert_eq!(
            validate_mailbox("jösé@bücher.de", false),
            Err(AddressError::NeedsSmtputf8)
        );
        assert_eq!(validate_mailbox("jösé@bücher.de", true), Ok(()));
    }

    #[test]
    fn xtext() {
        assert_eq!(xtext_decode("rfc822;a+2Bb@c.d"), "rfc822;a+b@c.d");
        assert_eq!(xtext_decode("plain"), "plain");
        assert_eq!(xtext_decode("end+"), "end+");
    }
}
