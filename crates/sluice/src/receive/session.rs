//! One inbound connection: PROXY header, access checks, TLS, and the loop
//! that feeds bytes to the sans-IO [`ServerSession`] and acts on its events.

use super::message::{Reception, Recipient};
use super::Inbound;
use serde_json::{json, Map};
use sluice_smtp::{proxy, Envelope, Event, Reply, ServerConfig, ServerSession};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// The connection, before or after TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

impl Conn {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
            Conn::Gone => Ok(0),
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(data).await,
            Conn::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Conn::Gone => Ok(()),
        }
    }

    async fn start_tls(&mut self, inbound: &Inbound) -> std::io::Result<()> {
        let Conn::Plain(tcp) = std::mem::replace(self, Conn::Gone) else {
            return Err(std::io::Error::other("TLS already active"));
        };
        let tls = tokio::time::timeout(inbound.timeout, inbound.tls.accept(tcp))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        *self = Conn::Tls(Box::new(tls));
        Ok(())
    }

    fn cipher(&self) -> Option<String> {
        match self {
            Conn::Tls(s) => s
                .get_ref()
                .1
                .negotiated_cipher_suite()
                .map(|c| format!("{:?}", c.suite())),
            _ => None,
        }
    }
}

/// Counts a connection for `smtp-connections` while alive.
struct ConnectionSlot<'a>(&'a Inbound);

impl Drop for ConnectionSlot<'_> {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Session<'a> {
    inbound: &'a Inbound,
    conn: Conn,
    smtp: ServerSession,
    local: SocketAddr,
    remote: SocketAddr,
}

/// Serves one accepted connection to its end.
pub async fn serve(inbound: Arc<Inbound>, accepted: super::Accepted) {
    let super::Accepted {
        stream,
        mut remote,
        local,
        implicit_tls,
    } = accepted;
    let n = inbound.connections.fetch_add(1, Ordering::Relaxed) + 1;
    let _slot = ConnectionSlot(&inbound);
    let Some(mut local) = local.or_else(|| stream.local_addr().ok()) else {
        return;
    };
    tracing::debug!(peer = %remote, active = n, "connection accepted");
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::Plain(stream);
    let mut early = Vec::new();
    if inbound.proxied(remote.ip()) {
        match read_proxy_header(&mut conn, &inbound).await {
            Ok((hdr, rest)) => {
                remote = hdr.source.unwrap_or(remote);
                local = hdr.destination.unwrap_or(local);
                early = rest;
            }
            Err(e) => {
                tracing::warn!(peer = %remote, error = %e, "dropping connection: bad PROXY header");
                return;
            }
        }
    }
    let loopback = remote.ip().is_loopback() || remote.ip().to_canonical().is_loopback();
    let cfg = ServerConfig {
        hostname: inbound.hostname.clone(),
        max_size: inbound.max_size,
        max_recipients: inbound.max_recipients,
        max_errors: 20,
        tls_available: true,
        auth_enabled: inbound.credentials.is_some(),
        auth_in_clear: loopback,
    };
    let mut s = Session {
        inbound: &inbound,
        conn,
        smtp: ServerSession::new(cfg),
        local,
        remote,
    };
    if implicit_tls {
        if let Err(e) = s.conn.start_tls(&inbound).await {
            tracing::debug!(peer = %remote, error = %e, "TLS handshake failed");
            return;
        }
        s.smtp.set_secure();
    }
    if !inbound.allowed(remote.ip()) {
        s.smtp
            .refuse(Reply::new(554, "5.7.1", format!("Access denied for {}", remote.ip())));
    } else if n > inbound.max_connections {
        s.smtp.refuse(Reply::new(
            421,
            "4.7.0",
            format!("{} Too many connections, try again later", inbound.hostname),
        ));
    } else if early.is_empty() && s.talks_first().await {
        s.smtp.refuse(Reply::new(
            554,
            "5.5.0",
            "Error: SMTP protocol violation: talking before the greeting",
        ));
    } else {
        s.smtp.greet();
        s.smtp.feed(&early);
    }
    if let Err(e) = s.run().await {
        tracing::debug!(peer = %remote, error = %e, "connection ended");
    }
}

async fn read_proxy_header(conn: &mut Conn, inbound: &Inbound) -> anyhow::Result<(proxy::ProxyHeader, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        let n = tokio::time::timeout(inbound.timeout, conn.read(&mut chunk)).await??;
        anyhow::ensure!(n > 0, "closed before the PROXY header");
        buf.extend_from_slice(&chunk[..n]);
        if let Some((hdr, used)) = proxy::parse(&buf)? {
            return Ok((hdr, buf.split_off(used)));
        }
        anyhow::ensure!(buf.len() < 4096, "PROXY header too long");
    }
}

impl Session<'_> {
    /// With `smtp-greeting-delay`, waits that long and reports whether the
    /// client sent anything first.
    async fn talks_first(&mut self) -> bool {
        let delay = self.inbound.greeting_delay;
        if delay.is_zero() {
            return false;
        }
        let mut b = [0u8; 1];
        match tokio::time::timeout(delay, self.conn.read(&mut b)).await {
            Ok(Ok(n)) => n > 0,
            _ => false,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let out = std::mem::take(self.smtp.output());
        if !out.is_empty() {
            self.conn.write_all(&out).await?;
        }
        Ok(())
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut shutdown = self.inbound.shutdown.clone();
        loop {
            while let Some(ev) = self.smtp.next_event() {
                if let Event::Close = ev {
                    self.flush().await?;
                    return Ok(());
                }
                self.handle(ev).await?;
            }
            self.flush().await?;
            let read = tokio::select! {
                r = tokio::time::timeout(self.inbound.timeout, self.conn.read(&mut buf)) => r,
                _ = crate::shutdown::requested(&mut shutdown), if self.smtp.is_idle() => {
                    self.smtp.shutdown();
                    continue;
                }
            };
            match read {
                Err(_) => self.smtp.timeout(),
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(n)) => self.smtp.feed(&buf[..n]),
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }

    fn auth_required(&self) -> bool {
        self.inbound.credentials.is_some() && self.smtp.authenticated().is_none()
    }

    async fn handle(&mut self, ev: Event) -> anyhow::Result<()> {
        match ev {
            Event::Mail(_) => {
                // Unauthenticated mail is refused at MAIL unless refused mail is
                // kept, in which case it is taken in and refused after DATA.
                if self.auth_required() && self.inbound.names.refused.is_none() {
                    self.smtp.respond(Reply::new(530, "5.7.0", "Authentication required"));
                } else {
                    self.smtp.accept();
                }
            }
            Event::Rcpt(_) => self.smtp.accept(),
            Event::Auth { login, password, .. } => {
                let ok = self
                    .inbound
                    .credentials
                    .as_ref()
                    .is_some_and(|(u, p)| *u == login && *p == password);
                if ok {
                    self.smtp.set_authenticated(&login);
                    self.smtp.accept();
                } else {
                    tracing::info!(peer = %self.remote, login = %login, "authentication failed");
                    self.smtp
                        .respond(Reply::new(535, "5.7.8", "Authentication credentials invalid"));
                }
            }
            Event::StartTls => {
                self.flush().await?;
                self.conn.start_tls(self.inbound).await?;
                self.smtp.tls_established();
            }
            Event::Message(env) => {
                let reply = self.store(env).await;
                self.smtp.respond(reply);
            }
            Event::Close => {}
        }
        Ok(())
    }

    /// Stores one JSON per recipient; the 250 is given only once all are durable.
    async fn store(&mut self, env: Envelope) -> Reply {
        let refused = self.auth_required();
        let queue = match (&self.inbound.names.refused, refused) {
            (Some(q), true) => q.clone(),
            (None, true) => return Reply::new(530, "5.7.0", "Authentication required"),
            _ => self.inbound.names.inbox.clone(),
        };
        let mut conn = json!({
            "local-ip": self.local.ip().to_canonical().to_string(),
            "local-port": self.local.port(),
            "remote-ip": self.remote.ip().to_canonical().to_string(),
            "remote-port": self.remote.port(),
            "secure": self.smtp.is_secure(),
            "helo": self.smtp.helo().unwrap_or_default(),
        });
        if let Some(user) = self.smtp.authenticated() {
            conn["user"] = user.into();
        }
        if let Some(cipher) = self.conn.cipher() {
            conn["cipher"] = cipher.into();
        }
        let mut properties = Map::new();
        properties.insert("received".into(), crate::stamp::now().into());
        properties.insert("hostname".into(), self.inbound.hostname.clone().into());
        properties.insert("connection".into(), conn);
        let mut dsn = Map::new();
        if let Some(ret) = &env.mail.ret {
            dsn.insert("ret".into(), ret.clone().into());
        }
        if let Some(envid) = &env.mail.envid {
            dsn.insert("envid".into(), envid.clone().into());
        }
        let reception = Reception {
            envelope: env.mail.address.clone(),
            mime: env.body,
            properties,
            dsn,
            extract: self.inbound.extract,
        };
        let recipients: Vec<Recipient> = env
            .rcpts
            .iter()
            .map(|r| {
                let mut dsn = Map::new();
                if let Some(n) = &r.notify {
                    dsn.insert("notify".into(), n.clone().into());
                }
                if let Some(o) = &r.orcpt {
                    dsn.insert("orcpt".into(), o.clone().into());
                }
                Recipient {
                    address: r.address.clone(),
                    dsn,
                }
            })
            .collect();
        let stored = super::store(
            &*self.inbound.queue,
            &self.inbound.received_log,
            &self.inbound.ids,
            &queue,
            &reception,
            &recipients,
        )
        .await;
        let ids = match stored {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, "could not store a received message");
                return match e {
                    sluice_queue::QueueError::Io(ref io) if io.kind() == std::io::ErrorKind::StorageFull => {
                        Reply::new(452, "4.3.1", "Insufficient system storage, try again later")
                    }
                    _ => Reply::new(451, "4.3.0", "Temporary failure storing the message, try again later"),
                };
            }
        };
        if refused {
            return Reply::new(530, "5.7.0", "Authentication required");
        }
        queued_reply(&ids, &env.rcpts.iter().map(|r| r.address.as_str()).collect::<Vec<_>>())
    }
}

/// `250 2.0.0 queued as ID1 for a@x, ID2 for b@y`, multi-line when long.
fn queued_reply(ids: &[String], rcpts: &[&str]) -> Reply {
    let parts: Vec<String> = ids.iter().zip(rcpts).map(|(id, r)| format!("{id} for {r}")).collect();
    let line = format!("queued as {}", parts.join(", "));
    if line.len() <= 400 {
        Reply::new(250, "2.0.0", line)
    } else {
        let mut r = Reply::new(250, "2.0.0", "");
        r.lines = parts.into_iter().map(|p| format!("queued as {p}")).collect();
        r
    }
}
