//! A small blocking HTTP/1.1 client for talking to the daemon's API on
//! loopback; enough for JSON requests with `Connection: close`.

use crate::config::Config;
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::TcpStream;

/// Where the daemon's API is, from the config.
pub struct ApiClient {
    addr: String,
    auth: Option<String>,
    /// Without credentials in the config: the config, to read a token from
    /// the settings database's `tokens` table when the daemon asks for one.
    config: Option<Config>,
}

impl ApiClient {
    pub fn from_config(c: &Config) -> Self {
        let s = &c.settings;
        let ip = match s.www_ip.first().copied() {
            None => std::net::Ipv4Addr::LOCALHOST.into(),
            // A wildcard listens on loopback too.
            Some(ip) if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
            Some(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
            Some(ip) => ip,
        };
        ApiClient {
            addr: std::net::SocketAddr::new(ip, s.www_port).to_string(),
            auth: crate::http::Api::basic_auth(s)
                .map(|credentials| {
                    use base64::Engine as _;
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(credentials.pair())
                    )
                })
                .or_else(|| s.www_tokens.first().map(|t| format!("Bearer {t}"))),
            config: None,
        }
        .with_table_fallback(c)
    }

    fn with_table_fallback(mut self, c: &Config) -> Self {
        if self.auth.is_none() {
            self.config = Some(c.clone());
        }
        self
    }

    /// Sends a request; returns the JSON body of a 2xx answer, or the API's
    /// error. Refused for want of credentials the config does not have, it
    /// tries once more with a token of the settings database's `tokens` table.
    pub fn call(&self, method: &str, path: &str, body: &[u8]) -> Result<serde_json::Value> {
        match self.send(method, path, body, self.auth.as_deref()) {
            Err(e) if e.to_string().starts_with("daemon answered 401") => {
                let token = self.config.as_ref().and_then(|c| {
                    let (_, policy, _) = crate::policy::open(c).ok()?;
                    policy.tokens.first().map(|t| format!("Bearer {t}"))
                });
                match token {
                    Some(t) => self.send(method, path, body, Some(&t)),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    fn send(&self, method: &str, path: &str, body: &[u8], auth: Option<&str>) -> Result<serde_json::Value> {
        anyhow::ensure!(
            !self.addr.ends_with(":0"),
            "the command line talks to the daemon over plain HTTP, which www-port: 0 turns off"
        );
        let mut s = TcpStream::connect(&self.addr).with_context(|| {
            format!(
                "cannot reach the sluice daemon at {} (is `sluice run` running?)",
                self.addr
            )
        })?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(a) = auth {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)?;
        let split = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("malformed HTTP answer from the daemon")?;
        let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
        let mut body = resp[split + 4..].to_vec();
        if head.contains("transfer-encoding: chunked") {
            body = dechunk(&body)?;
        }
        let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        if !(200..300).contains(&status) {
            let msg = json
                .get("error")
                .and_then(|e| e.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            bail!("daemon answered {status}: {msg}");
        }
        Ok(json)
    }
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").context("bad chunked body")?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&b[..eol])?.split(';').next().unwrap_or("").trim(),
            16,
        )?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).context("truncated chunk")?);
        b = b.get(size + 2..).context("truncated chunk")?;
    }
}
