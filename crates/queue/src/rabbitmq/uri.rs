//! `rabbitmq-address` read as MailerQ (AMQP-CPP) reads it:
//! `amqp://user:pass@host1;host2;host3/vhost` names several brokers of one
//! cluster, and so does a comma-separated list of whole URLs. No vhost, or a
//! lone `/`, is the vhost `/` (lapin's own parser would take the empty vhost
//! `""`, which the broker refuses); IPv6 literals in brackets are kept
//! (lapin's parser falls back to `localhost` for them). Each broker becomes
//! its own connection address, built field by field rather than reparsed.

use crate::credentials::hide_password;
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};

/// One connection address per broker, in the order given.
pub fn brokers(address: &str) -> Result<Vec<AMQPUri>, String> {
    let address = address.trim();
    let pieces: Vec<&str> = address.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    let whole_urls = pieces.len() > 1 && pieces.iter().all(|p| p.contains("://"));
    let mut out = Vec::new();
    if whole_urls {
        for p in pieces {
            out.extend(one_url(p, &[';'])?);
        }
    } else {
        // One URL; its hosts separated by `;` (or `,`, as older MailerQ files write them).
        out.extend(one_url(address, &[';', ','])?);
    }
    Ok(out)
}

/// Whether the broker is reached with TLS (`amqps://`).
pub fn is_tls(uri: &AMQPUri) -> bool {
    matches!(uri.scheme, AMQPScheme::AMQPS)
}

/// Where a broker is, for log lines: `host:port/vhost`, no credentials.
pub fn shown(uri: &AMQPUri) -> String {
    let host = &uri.authority.host;
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    format!("{host}:{}{}", uri.authority.port, vhost_shown(&uri.vhost))
}

fn vhost_shown(vhost: &str) -> String {
    if vhost == "/" {
        "/".into()
    } else {
        format!("/{vhost}")
    }
}

fn one_url(url: &str, host_separators: &[char]) -> Result<Vec<AMQPUri>, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{}` is not an amqp:// or amqps:// URI", hide_password(url)))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "amqp" => AMQPScheme::AMQP,
        "amqps" => AMQPScheme::AMQPS,
        other => return Err(format!("`{other}` is not amqp or amqps")),
    };
    // As AMQP-CPP: the credentials end at the first `@`, so a password may
    // hold `/`, `?` or `:` unencoded (MailerQ files have them so); `@`
    // itself is written `%40`.
    let (userinfo, rest) = match rest.split_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, rest),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, q),
        None => (rest, ""),
    };
    let (hosts, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let userinfo = match userinfo {
        Some(u) => {
            let (user, password) = u.split_once(':').unwrap_or((u, ""));
            AMQPUserInfo {
                username: decode(user, "user name")?,
                password: decode(password, "password")?,
            }
        }
        None => AMQPUserInfo::default(),
    };
    // MailerQ (AMQP-CPP): no vhost, or `/`, is the vhost `/`.
    let vhost = match decode(path, "vhost")? {
        v if v.is_empty() => "/".to_string(),
        v => v,
    };
    let query = parse_query(query)?;
    let hosts: Vec<&str> = hosts
        .split(host_separators)
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    if hosts.is_empty() {
        return Err(format!("`{}` names no host", hide_password(url)));
    }
    hosts
        .into_iter()
        .map(|h| {
            let (host, port) = host_port(h, scheme.default_port())?;
            Ok(AMQPUri {
                scheme: scheme.clone(),
                authority: AMQPAuthority {
                    userinfo: userinfo.clone(),
                    host,
                    port,
                },
                vhost: vhost.clone(),
                query: query.clone(),
            })
        })
        .collect()
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address.
fn host_port(h: &str, default_port: u16) -> Result<(String, u16), String> {
    let port = |p: &str| p.parse::<u16>().map_err(|_| format!("`{p}` is not a port (in `{h}`)"));
    if let Some(inner) = h.strip_prefix('[') {
        let (addr, after) = inner.split_once(']').ok_or_else(|| format!("`{h}`: no closing `]`"))?;
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("`{addr}` is not an IPv6 address"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => port(p)?,
            None if after.is_empty() => default_port,
            None => return Err(format!("`{h}`: unexpected `{after}`")),
        };
        return Ok((addr.to_string(), port));
    }
    if h.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((h.to_string(), default_port));
    }
    match h.rsplit_once(':') {
        Some((host, p)) => Ok((host.to_string(), port(p)?)),
        None => Ok((h.to_string(), default_port)),
    }
}

fn decode(s: &str, what: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("the {what} is not UTF-8 once percent-decoded"))
}

/// The query parameters lapin knows; others are refused by name.
fn parse_query(q: &str) -> Result<AMQPQueryString, String> {
    let mut out = AMQPQueryString::default();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let n = || v.parse::<u64>().map_err(|_| format!("`{k}={v}`: not a number"));
        match k {
            "heartbeat" => out.heartbeat = Some(u16::try_from(n()?).map_err(|_| format!("`{k}` too large"))?),
            "connection_timeout" => out.connection_timeout = Some(n()?),
            "frame_max" => out.frame_max = Some(u32::try_from(n()?).map_err(|_| format!("`{k}` too large"))?),
            "channel_max" => out.channel_max = Some(u16::try_from(n()?).map_err(|_| format!("`{k}` too large"))?),
            other => return Err(format!("unknown URI parameter `{other}`")),
        }
    }
    Ok(out)
}

/// The `rabbitmq-address` MailerQ 3.x/4.x files describe with separate
/// `rabbitmq-host` (a `,`/`;` list), `-port`, `-user`, `-password` and
/// `-vhost` keys; missing parts are AMQP's defaults (guest, vhost `/`).
pub fn assemble(
    hosts: &str,
    port: Option<&str>,
    user: Option<&str>,
    password: Option<&str>,
    vhost: Option<&str>,
) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    // Everything but RFC 3986's unreserved characters is encoded.
    const PART: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    let enc = |s: &str| utf8_percent_encode(s, PART).to_string();
    let hosts: Vec<String> = hosts
        .split([',', ';', ' ', '\t'])
        .filter(|h| !h.is_empty())
        .map(|h| match port {
            Some(p) if !h.contains(':') || (h.starts_with('[') && h.ends_with(']')) => format!("{h}:{p}"),
            _ => h.to_string(),
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost".to_string()
    } else {
        hosts.join(";")
    };
    let vhost = match vhost.map(str::trim) {
        None | Some("") | Some("/") => String::new(),
        Some(v) => enc(v),
    };
    format!(
        "amqp://{}:{}@{hosts}/{vhost}",
        enc(user.unwrap_or("guest")),
        enc(password.unwrap_or("guest"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_keys_assemble_an_address_read_back_as_given() {
        let a = assemble(
            "r1.example, r2.example",
            Some("5673"),
            Some("mq"),
            Some("p@ss:/w"),
            Some("mail/q"),
        );
        assert_eq!(a, "amqp://mq:p%40ss%3A%2Fw@r1.example:5673;r2.example:5673/mail%2Fq");
        let b = brokers(&a).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(
            (b[1].authority.host.as_str(), b[1].authority.port),
            ("r2.example", 5673)
        );
        assert_eq!(b[0].authority.userinfo.password, "p@ss:/w");
        assert_eq!(b[0].vhost, "mail/q");
        let d = brokers(&assemble("", None, None, None, Some("/"))).unwrap();
        assert_eq!((d[0].authority.host.as_str(), d[0].vhost.as_str()), ("localhost", "/"));
        assert_eq!(d[0].authority.userinfo.username, "guest");
    }

    fn all(address: &str) -> Vec<String> {
        brokers(address)
            .unwrap()
            .iter()
            .map(|u| {
                format!(
                    "{}:{}@{}|{}",
                    u.authority.userinfo.username,
                    u.authority.userinfo.password,
                    shown(u),
                    u.scheme
                )
            })
            .collect()
    }

    #[test]
    fn mailerq_addresses_are_read_as_mailerq_reads_them() {
        // MailerQ's own default: nothing after the slash is the vhost `/`.
        assert_eq!(
            all("amqp://guest:guest@localhost/"),
            ["guest:guest@localhost:5672/|amqp"]
        );
        assert_eq!(all("amqp://u:p@h"), ["u:p@h:5672/|amqp"]);
        assert_eq!(all("amqp://u:p@h/%2f"), ["u:p@h:5672/|amqp"]);
        assert_eq!(all("amqp://u:p@h/mail"), ["u:p@h:5672/mail|amqp"]);
        assert_eq!(
            all("amqp://u:p@h1;h2:5673;h3/v"),
            ["u:p@h1:5672/v|amqp", "u:p@h2:5673/v|amqp", "u:p@h3:5672/v|amqp"]
        );
        // Comma-separated whole URLs are several brokers, not one vhost name.
        assert_eq!(
            all("amqp://a:b@one/, amqps://c:d@two:5671/x"),
            ["a:b@one:5672/|amqp", "c:d@two:5671/x|amqps"]
        );
        // IPv6 literals stay themselves.
        assert_eq!(all("amqp://u:p@[::1]:5673/"), ["u:p@[::1]:5673/|amqp"]);
        assert_eq!(all("amqp://u:p@[fe80::1]/"), ["u:p@[fe80::1]:5672/|amqp"]);
        // Percent-encoded credentials; no credentials: guest.
        assert_eq!(all("amqp://us%40r:p%3Ass@h/"), ["us@r:p:ss@h:5672/|amqp"]);
        assert_eq!(all("amqps://h"), ["guest:guest@h:5671/|amqps"]);
        // Unencoded `/`, `?` and `:` in a password, as AMQP-CPP reads them
        // (the credentials end at the first `@`).
        assert_eq!(all("amqp://u:pa/s?s:w@h:5673/mail"), ["u:pa/s?s:w@h:5673/mail|amqp"]);
        assert_eq!(
            all("amqp://u:a,b@h1;h2/"),
            ["u:a,b@h1:5672/|amqp", "u:a,b@h2:5672/|amqp"]
        );
        let q = brokers("amqp://h/?heartbeat=10").unwrap();
        assert_eq!(q[0].query.heartbeat, Some(10));
    }

    #[test]
    fn bad_addresses_say_why_without_the_password() {
        for bad in [
            "http://x",
            "amqp://u:p@/v",
            "amqp://u:secret@h:notaport/",
            "amqp://u:p@[::1/",
            "amqp://u:p@[nope]/",
            "amqp://h/?bogus=1",
            "amqp://u:se/cret@h:notaport/",
            "amqp://u:se/cret@/v",
            "amqp://u:se/cret@h/?bogus=1",
        ] {
            let e = brokers(bad).unwrap_err();
            assert!(!e.contains("secret") && !e.contains("cret"), "{e}");
        }
    }
}
