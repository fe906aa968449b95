//! Parsing one SMTP command line (without its CRLF) into a [`Command`].

use crate::address::{dsn_notify, split_path, validate_domain, validate_mailbox, xtext_decode, AddressError};
use crate::reply::Reply;

/// MAIL FROM and its ESMTP parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailFrom {
    /// The reverse path; empty for `<>`.
    pub address: String,
    /// SIZE= (RFC 1870).
    pub size: Option<u64>,
    /// BODY=8BITMIME was given.
    pub eight_bit: bool,
    /// SMTPUTF8 was given (RFC 6531).
    pub smtputf8: bool,
    /// DSN RET= (FULL or HDRS).
    pub ret: Option<String>,
    /// DSN ENVID= (xtext-decoded).
    pub envid: Option<String>,
}

/// RCPT TO and its ESMTP parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RcptTo {
    /// The forward path.
    pub address: String,
    /// DSN NOTIFY= (NEVER or a comma list of SUCCESS, FAILURE, DELAY).
    pub notify: Option<String>,
    /// DSN ORCPT= (xtext-decoded, `type;address`).
    pub orcpt: Option<String>,
}

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail(MailFrom),
    Rcpt(RcptTo),
    Data,
    Bdat { size: u64, last: bool },
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    Auth { mechanism: String, initial: Option<String> },
}

/// Why a command line was refused; each maps to one reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    Unknown,
    Syntax(&'static str),
    BadSender,
    BadRecipient,
    NeedsSmtputf8,
    UnsupportedParameter(String),
    InvalidParameter(String),
}

impl CommandError {
    /// The reply RFC 5321/3463 prescribe for this error.
    pub fn reply(&self) -> Reply {
        match self {
            CommandError::Unknown => Reply::new(500, "5.5.2", "Error: command not recognized"),
            CommandError::Syntax(usage) => Reply::new(501, "5.5.4", format!("Syntax: {usage}")),
            CommandError::BadSender => Reply::new(501, "5.1.7", "Bad sender address syntax"),
            CommandError::BadRecipient => Reply::new(501, "5.1.3", "Bad recipient address syntax"),
            CommandError::NeedsSmtputf8 => Reply::new(553, "5.6.7", "Address needs SMTPUTF8, which was not requested"),
            CommandError::UnsupportedParameter(p) => Reply::new(555, "5.5.4", format!("Unsupported option: {p}")),
            CommandError::InvalidParameter(p) => Reply::new(501, "5.5.4", format!("Invalid parameter: {p}")),
        }
    }
}

/// Parses a command line. `utf8_rcpt` says whether the current transaction
/// asked for SMTPUTF8 (so RCPT may carry UTF-8 addresses).
pub fn parse(line: &[u8], utf8_rcpt: bool) -> Result<Command, CommandError> {
    // A bare CR, NUL or other control byte is never part of a command; refusing
    // them here means no argument echoed in a reply or logged can carry one.
    if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(CommandError::Syntax("command contains a control character"));
    }
    let line = std::str::from_utf8(line).map_err(|_| CommandError::Syntax("command is not valid UTF-8"))?;
    let (verb, args) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let no_args = |cmd: Command, usage: &'static str| {
        if args.trim().is_empty() {
            Ok(cmd)
        } else {
            Err(CommandError::Syntax(usage))
        }
    };
    match verb.as_str() {
        "EHLO" | "HELO" => {
            let name = args.trim();
            if name.is_empty() || name.contains(' ') {
                return Err(CommandError::Syntax(if verb == "EHLO" {
                    "EHLO hostname"
                } else {
                    "HELO hostname"
                }));
            }
            // Clients send all kinds of names; only refuse the clearly broken.
            if !name.starts_with('[') && validate_domain(name).is_err() && name.contains(['<', '>', '@']) {
                return Err(CommandError::Syntax("invalid hostname"));
            }
            Ok(if verb == "EHLO" {
                Command::Ehlo(name.into())
            } else {
                Command::Helo(name.into())
            })
        }
        "MAIL" => parse_mail(args),
        "RCPT" => parse_rcpt(args, utf8_rcpt),
        "DATA" => no_args(Command::Data, "DATA"),
        "RSET" => no_args(Command::Rset, "RSET"),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_args(Command::Quit, "QUIT"),
        "VRFY" => {
            if args.trim().is_empty() {
                Err(CommandError::Syntax("VRFY address"))
            } else {
                Ok(Command::Vrfy)
            }
        }
        "EXPN" => Ok(Command::Expn),
        "HELP" => Ok(Command::Help),
        "STARTTLS" => no_args(Command::StartTls, "STARTTLS"),
        "BDAT" => parse_bdat(args),
        "AUTH" => {
            let mut it = args.split_whitespace();
            let mechanism = it
                .next()
                .ok_or(CommandError::Syntax("AUTH mechanism [initial-response]"))?;
            let initial = it.next().map(str::to_string);
            if it.next().is_some() {
                return Err(CommandError::Syntax("AUTH mechanism [initial-response]"));
            }
            Ok(Command::Auth {
                mechanism: mechanism.to_ascii_uppercase(),
                initial,
            })
        }
        _ => Err(CommandError::Unknown),
    }
}

/// Strips a case-insensitive `FROM:`/`TO:` keyword.
fn strip_keyword<'a>(args: &'a str, keyword: &str) -> Option<&'a str> {
    let head = args.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword).then(|| &args[keyword.len()..])
}

/// Splits `KEY=VALUE` parameters; keys are upper-cased.
fn params(rest: &str) -> impl Iterator<Item = (String, Option<&str>)> {
    rest.split_whitespace().map(|p| match p.split_once('=') {
        Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
        None => (p.to_ascii_uppercase(), None),
    })
}

fn parse_mail(args: &str) -> Result<Command, CommandError> {
    const USAGE: &str = "MAIL FROM:<address>";
    let rest = strip_keyword(args, "FROM:").ok_or(CommandError::Syntax(USAGE))?;
    let (address, rest) = split_path(rest).map_err(|_| CommandError::BadSender)?;
    let mut mail = MailFrom {
        address: address.to_string(),
        ..Default::default()
    };
    for (key, value) in params(rest) {
        let invalid = || CommandError::InvalidParameter(key.clone());
        match (key.as_str(), value) {
            ("SIZE", Some(v)) => mail.size = Some(v.parse().map_err(|_| invalid())?),
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => mail.eight_bit = true,
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => {}
            ("SMTPUTF8", None) => mail.smtputf8 = true,
            ("RET", Some(v)) if v.eq_ignore_ascii_case("FULL") || v.eq_ignore_ascii_case("HDRS") => {
                mail.ret = Some(v.to_ascii_uppercase())
            }
            ("ENVID", Some(v)) if !v.is_empty() && v.len() <= 100 => {
                mail.envid = Some(printable(xtext_decode(v)).ok_or_else(invalid)?)
            }
            // RFC 4954 AUTH= is accepted and ignored: we do not trust it from clients.
            ("AUTH", Some(_)) => {}
            ("SIZE" | "BODY" | "RET" | "ENVID" | "AUTH", _) => return Err(invalid()),
            _ => return Err(CommandError::UnsupportedParameter(key)),
        }
    }
    if !mail.address.is_empty() {
        validate_mailbox(&mail.address, mail.smtputf8).map_err(|e| match e {
            AddressError::NeedsSmtputf8 => CommandError::NeedsSmtputf8,
            AddressError::Syntax => CommandError::BadSender,
        })?;
    }
    Ok(Command::Mail(mail))
}

fn parse_rcpt(args: &str, utf8: bool) -> Result<Command, CommandError> {
    const USAGE: &str = "RCPT TO:<address>";
    let rest = strip_keyword(args, "TO:").ok_or(CommandError::Syntax(USAGE))?;
    let (address, rest) = split_path(rest).map_err(|_| CommandError::BadRecipient)?;
    if address.is_empty() {
        return Err(CommandError::BadRecipient);
    }
    let mut rcpt = RcptTo {
        address: address.to_string(),
        ..Default::default()
    };
    for (key, value) in params(rest) {
        let invalid = || CommandError::InvalidParameter(key.clone());
        match (key.as_str(), value) {
            ("NOTIFY", Some(v)) => rcpt.notify = Some(dsn_notify(v).ok_or_else(invalid)?),
            ("ORCPT", Some(v)) if v.contains(';') => rcpt.orcpt = Some(printable(xtext_decode(v)).ok_or_else(invalid)?),
            ("NOTIFY" | "ORCPT", _) => return Err(invalid()),
            _ => return Err(CommandError::UnsupportedParameter(key)),
        }
    }
    // RFC 5321 §4.5.1: the unqualified "postmaster" must be accepted.
    if !rcpt.address.eq_ignore_ascii_case("postmaster") {
        validate_mailbox(&rcpt.address, utf8).map_err(|e| match e {
            AddressError::NeedsSmtputf8 => CommandError::NeedsSmtputf8,
            AddressError::Syntax => CommandError::BadRecipient,
        })?;
    }
    Ok(Command::Rcpt(rcpt))
}

/// A decoded xtext value without control characters: xtext can encode a
/// CR or LF (`+0D+0A`), which must not reach a DSN or a log line.
fn printable(s: String) -> Option<String> {
    (!s.chars().any(char::is_control)).then_some(s)
}

fn parse_bdat(args: &str) -> Result<Command, CommandError> {
    const USAGE: &str = "BDAT size [LAST]";
    let mut it = args.split_whitespace();
    let size = it
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(CommandError::Syntax(USAGE))?;
    let last = match it.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(CommandError::Syntax(USAGE)),
    };
    if it.next().is_some() {
        return Err(CommandError::Syntax(USAGE));
    }
    Ok(Command::Bdat { size, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, CommandError> {
        parse(s.as_bytes(), false)
    }

    #[test]
    fn mail_with_params() {
        let Ok(Command::Mail(m)) = p("mail from:<a@b.c> SIZE=100 BODY=8BITMIME RET=HDRS ENVID=x+2By") else {
            panic!()
        };
        assert_eq!(m.address, "a@b.c");
        assert_eq!(m.size, Some(100));
        assert!(m.eight_bit);
        assert_eq!(m.ret.as_deref(), Some("HDRS"));
        assert_eq!(m.envid.as_deref(), Some("x+y"));
        assert!(matches!(p("MAIL FROM:<>"), Ok(Command::Mail(m)) if m.address.is_empty()));
    }

    #[test]
    fn errors() {
        assert_eq!(p("FOO"), Err(CommandError::Unknown));
        assert_eq!(p("MAIL TO:<a@b.c>"), Err(CommandError::Syntax("MAIL FROM:<address>")));
        assert_eq!(p("MAIL FROM:<a@@b>"), Err(CommandError::BadSender));
        assert_eq!(p("RCPT TO:<a b@c>"), Err(CommandError::BadRecipient));
        assert_eq!(p("RCPT TO:<>"), Err(CommandError::BadRecipient));
        assert_eq!(
            p("MAIL FROM:<a@b.c> FOO=1"),
            Err(CommandError::UnsupportedParameter("FOO".into()))
        );
        assert_eq!(
            p("MAIL FROM:<a@b.c> SIZE=x"),
            Err(CommandError::InvalidParameter("SIZE".into()))
        );
        assert_eq!(
            p("RCPT TO:<a@b.c> NOTIFY=NEVER,SUCCESS"),
            Err(CommandError::InvalidParameter("NOTIFY".into()))
        );
        assert_eq!(p("MAIL FROM:<é@b.c>"), Err(CommandError::NeedsSmtputf8));
        assert!(p("MAIL FROM:<é@b.c> SMTPUTF8").is_ok());
        assert_eq!(p("DATA x"), Err(CommandError::Syntax("DATA")));
        assert_eq!(p("EHLO"), Err(CommandError::Syntax("EHLO hostname")));
        for bad in [
            "EHLO a\x1b[31mb",
            "HELO x\ry",
            "EHLO x\0",
            "MAIL FROM:<a@b.c>\rRSET",
            "NOOP \x7f",
        ] {
            assert_eq!(
                p(bad),
                Err(CommandError::Syntax("command contains a control character")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rcpt_dsn_and_postmaster() {
        let Ok(Command::Rcpt(r)) = p("RCPT TO:<a@b.c> NOTIFY=success,failure ORCPT=rfc822;a@b.c") else {
            panic!()
        };
        assert_eq!(r.notify.as_deref(), Some("SUCCESS,FAILURE"));
        assert_eq!(r.orcpt.as_deref(), Some("rfc822;a@b.c"));
        assert!(p("RCPT TO:<Postmaster>").is_ok());
        assert_eq!(
            p("RCPT TO:<a@b.c> ORCPT=rfc822;a@b.c+0D+0AX:1"),
            Err(CommandError::InvalidParameter("ORCPT".into()))
        );
        assert_eq!(
            p("MAIL FROM:<a@b.c> ENVID=x+0Ay"),
            Err(CommandError::InvalidParameter("ENVID".into()))
        );
    }

    #[test]
    fn bdat_and_auth() {
        assert_eq!(p("BDAT 10 LAST"), Ok(Command::Bdat { size: 10, last: true }));
        assert_eq!(p("BDAT 0"), Ok(Command::Bdat { size: 0, last: false }));
        assert!(p("BDAT x").is_err());
        assert_eq!(
            p("auth plain AGEAYg=="),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGEAYg==".into())
            })
        );
    }
}
