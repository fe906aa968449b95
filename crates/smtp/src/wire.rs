//! What the client may put into a command line, as types that can only hold
//! valid values: a [`Path`] is a checked mailbox (or `<>`), a [`Param`] a
//! checked ESMTP parameter, a [`HeloName`] a domain or address literal,
//! [`Credentials`] have no NUL, CR or LF. None of them can contain CR, LF or
//! NUL, so no caller — whatever JSON it was handed — can make the client
//! write a second command (outbound command injection).

use crate::address::{validate_domain, validate_mailbox, xtext_encode, AddressError};
use std::fmt;

/// Why a value cannot go on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("`{0}` is not a valid mailbox")]
    Mailbox(String),
    #[error("`{0}` is not a valid host name or address literal")]
    Hostname(String),
    #[error("`{0}` is not a valid ESMTP parameter")]
    Param(String),
    #[error("credentials contain NUL, CR or LF")]
    Credentials,
}

/// Shows an untrusted value with its control characters escaped and its
/// length bounded, so an error message or log line can carry it safely.
pub fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(200).flat_map(char::escape_debug).collect();
    if s.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// A MAIL FROM or RCPT TO path: a mailbox valid by RFC 5321 (RFC 6531 when
/// not ASCII), or the null path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Path(String);

impl Path {
    /// The null reverse path `<>`.
    pub fn null() -> Path {
        Path(String::new())
    }

    /// A mailbox, checked; the unqualified `postmaster` is allowed (RFC 5321 §4.5.1).
    pub fn mailbox(address: &str) -> Result<Path, WireError> {
        if address.eq_ignore_ascii_case("postmaster") {
            return Ok(Path(address.to_string()));
        }
        match validate_mailbox(address, true) {
            Ok(()) => Ok(Path(address.to_string())),
            Err(AddressError::Syntax | AddressError::NeedsSmtputf8) => Err(WireError::Mailbox(shown(address))),
        }
    }

    /// A reverse path: `""` is the null path, anything else must be a mailbox.
    pub fn reverse(address: &str) -> Result<Path, WireError> {
        if address.is_empty() {
            Ok(Path::null())
        } else {
            Path::mailbox(address)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_null(&self) -> bool {
        self.0.is_empty()
    }

    /// The domain part, lower-cased, without a trailing dot ("" for `<>`).
    pub fn domain(&self) -> String {
        self.0
            .rsplit_once('@')
            .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
            .unwrap_or_default()
    }
}

impl std::ops::Deref for Path {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One ESMTP parameter of MAIL or RCPT (RFC 5321 §4.1.2 `esmtp-param`):
/// a keyword of letters, digits and `-`, and a value of printable characters
/// other than `=` and space (UTF-8 allowed, RFC 6531).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param(String);

fn valid_keyword(k: &str) -> bool {
    k.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn valid_value(v: &str) -> bool {
    !v.is_empty()
        && v.chars()
            .all(|c| (c.is_ascii_graphic() && c != '=') || (!c.is_ascii() && !c.is_control()))
}

impl Param {
    /// A parameter without a value, e.g. `SMTPUTF8`.
    pub fn flag(keyword: &str) -> Result<Param, WireError> {
        if valid_keyword(keyword) {
            Ok(Param(keyword.to_string()))
        } else {
            Err(WireError::Param(shown(keyword)))
        }
    }

    /// `KEYWORD=value`, both checked.
    pub fn new(keyword: &str, value: &str) -> Result<Param, WireError> {
        if valid_keyword(keyword) && valid_value(value) {
            Ok(Param(format!("{keyword}={value}")))
        } else {
            Err(WireError::Param(shown(&format!("{keyword}={value}"))))
        }
    }

    /// `KEYWORD=xtext(raw)` (RFC 3461 §4): any text becomes a valid value.
    pub fn xtext(keyword: &str, raw: &str) -> Result<Param, WireError> {
        if raw.is_empty() {
            return Err(WireError::Param(shown(keyword)));
        }
        Param::new(keyword, &xtext_encode(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name in EHLO/HELO: a domain name or an address literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeloName(String);

impl HeloName {
    pub fn new(name: &str) -> Result<HeloName, WireError> {
        match validate_domain(name) {
            Ok(()) if name.is_ascii() || !name.chars().any(char::is_control) => Ok(HeloName(name.to_string())),
            _ => Err(WireError::Hostname(shown(name))),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HeloName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A relay host as configured or named by a message: a host name, an
/// address literal, or a bare IP address.
pub fn check_relay_host(name: &str) -> Result<(), WireError> {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    HeloName::new(name).map(|_| ())
}

/// AUTH credentials: base64 keeps them off the command line's syntax, and
/// without NUL they cannot shift PLAIN's `authzid NUL user NUL password` fields.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    user: String,
    password: String,
}

impl Credentials {
    pub fn new(user: &str, password: &str) -> Result<Credentials, WireError> {
        let bad = |s: &str| s.contains(['\0', '\r', '\n']);
        if bad(user) || bad(password) {
            return Err(WireError::Credentials);
        }
        Ok(Credentials {
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password, not even in a debug log.
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything an attacker might hide in a JSON string to start a new command.
    const INJECTIONS: &[&str] = &[
        "a@b.com>\r\nRCPT TO:<injected@evil.com",
        "a@b.com\r\nRSET",
        "a@b.com\nRSET",
        "a@b.com\rRSET",
        "a@b.com\0",
        "\"a\r\nb\"@c.com",
        "\"a\\\r\"@c.com",
        "a@b.com> SIZE=1",
        "a@b\r\n.com",
    ];

    #[test]
    fn paths_refuse_injection() {
        for bad in INJECTIONS {
            assert!(Path::mailbox(bad).is_err(), "{bad:?}");
            assert!(Path::reverse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Path::mailbox("a@b.com").unwrap().as_str(), "a@b.com");
        assert_eq!(Path::mailbox("jösé@bücher.de").unwrap().domain(), "bücher.de");
        assert!(Path::reverse("").unwrap().is_null());
        assert!(Path::mailbox("").is_err());
        assert!(Path::mailbox("Postmaster").is_ok());
        let e = Path::mailbox("a\r\nb").unwrap_err().to_string();
        assert!(!e.contains('\r') && !e.contains('\n'), "{e}");
    }

    #[test]
    fn params_refuse_injection() {
        assert_eq!(Param::new("SIZE", "12").unwrap().as_str(), "SIZE=12");
        assert_eq!(Param::flag("SMTPUTF8").unwrap().as_str(), "SMTPUTF8");
        for (k, v) in [
            ("SIZE", "1\r\nRSET"),
            ("NOTIFY", "A B"),
            ("X", "a=b"),
            ("A\r\n", "1"),
            ("", "1"),
            ("X", ""),
        ] {
            assert!(Param::new(k, v).is_err(), "{k:?}={v:?}");
        }
        assert_eq!(
            Param::xtext("ENVID", "id+1\r\nRSET =x").unwrap().as_str(),
            "ENVID=id+2B1+0D+0ARSET+20+3Dx"
        );
        assert_eq!(
            Param::xtext("ORCPT", "rfc822;ü@x").unwrap().as_str(),
            "ORCPT=rfc822;+C3+BC@x"
        );
    }

    #[test]
    fn helo_names_and_credentials() {
        assert!(HeloName::new("mx.example.com").is_ok());
        assert!(HeloName::new("[192.0.2.1]").is_ok());
        for bad in ["a b", "x\r\nMAIL FROM:<a@b>", "", "x\0", &"a".repeat(300)] {
            assert!(HeloName::new(bad).is_err(), "{bad:?}");
        }
        for host in ["relay.example", "192.0.2.1", "2001:db8::1", "[192.0.2.1]"] {
            assert!(check_relay_host(host).is_ok(), "{host}");
        }
        assert!(check_relay_host("relay\r\nQUIT").is_err());
        assert!(Credentials::new("u", "p").is_ok());
        assert!(Credentials::new("u\0admin", "p").is_err());
        assert!(Credentials::new("u", "p\r\nQUIT").is_err());
        assert!(!format!("{:?}", Credentials::new("u", "secret").unwrap()).contains("secret"));
    }
}
