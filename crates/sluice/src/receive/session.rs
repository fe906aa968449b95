//! One inbound connection: PROXY header, access checks, TLS, and the loop
//! that feeds bytes to the sans-IO [`ServerSession`] and acts on its events.

use super::Inbound;
use crate::reception::message::{Prepared, Reception, Recipient};
use crate::reception::{Failure, Verdict};
use serde_json::{json, Map};
use sluice_plugin::{Hook, HookName, MqMessage, PluginConnection, Response, WorkerContexts};
use sluice_smtp::{proxy, Envelope, Event, Reply, ServerConfig, ServerSession};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The connection, before or after TLS.
type Conn = crate::stream::InboundStream;

/// The inbound side of the TLS upgrade and what it negotiated.
impl Conn {
    async fn start_tls(&mut self, inbound: &Inbound) -> std::io::Result<()> {
        let Some(tcp) = self.take_plain() else {
            return Err(std::io::Error::other("TLS already active"));
        };
        let tls = tokio::time::timeout(inbound.timeout, inbound.tls.accept(tcp))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))
            .and_then(|accepted| accepted);
        crate::metrics::handshake("inbound", tls.is_ok());
        *self = Conn::Tls(Box::new(tls?));
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

/// Counts a connection for `smtp-connections-per-ip` while alive.
struct AddressSlot<'a> {
    inbound: &'a Inbound,
    ip: std::net::IpAddr,
}

impl AddressSlot<'_> {
    /// Counts the connection; returns the slot and how many this address now has.
    fn take(inbound: &Inbound, ip: std::net::IpAddr) -> (AddressSlot<'_>, usize) {
        let ip = ip.to_canonical();
        let mut map = sluice_queue::lock(&inbound.per_ip);
        let n = map.entry(ip).or_insert(0);
        *n += 1;
        (AddressSlot { inbound, ip }, *n)
    }
}

impl Drop for AddressSlot<'_> {
    fn drop(&mut self) {
        let mut map = sluice_queue::lock(&self.inbound.per_ip);
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

struct Session<'a> {
    inbound: &'a Inbound,
    conn: Conn,
    smtp: ServerSession,
    local: SocketAddr,
    remote: SocketAddr,
    /// The plugins' view of this connection; None without plugins.
    plugins: Option<PluginConnection>,
    contexts: Rc<WorkerContexts>,
}

/// Serves one accepted connection to its end.
pub async fn serve(inbound: Arc<Inbound>, accepted: super::Accepted, contexts: Rc<WorkerContexts>) {
    let super::Accepted {
        stream,
        mut remote,
        local,
        implicit_tls,
    } = accepted;
    let n = inbound.connections.fetch_add(1, Ordering::Relaxed) + 1;
    let _slot = ConnectionSlot(&inbound);
    // Held for the session's life; none left means 421 (below).
    let shared = inbound.all_connections.clone().try_acquire_owned().ok();
    let _open = crate::metrics::Open::new("inbound");
    let Some(mut local) = local.or_else(|| stream.local_addr().ok()) else {
        return;
    };
    tracing::debug!(peer = %remote, active = n, "connection accepted");
    let _ = stream.set_nodelay(true);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
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
    // After the PROXY header: the limit is on the real client.
    let (_address_slot, from_this_ip) = AddressSlot::take(&inbound, remote.ip());
    let loopback = remote.ip().is_loopback() || remote.ip().to_canonical().is_loopback();
    let cfg = ServerConfig {
        hostname: inbound.hostname.clone(),
        max_size: inbound.max_size,
        max_recipients: inbound.max_recipients,
        max_errors: 20,
        tls_available: true,
        auth_enabled: inbound.accounts.is_some() || inbound.plugins.exports(HookName::Authenticate),
        auth_in_clear: loopback,
    };
    let plugins = (!inbound.plugins.list.is_empty()).then(|| PluginConnection::new(&inbound.plugins, fd, implicit_tls));
    let mut s = Session {
        inbound: &inbound,
        conn,
        smtp: ServerSession::new(cfg),
        local,
        remote,
        plugins,
        contexts,
    };
    if implicit_tls {
        if let Err(e) = s.conn.start_tls(&inbound).await {
            tracing::debug!(peer = %remote, error = %e, "TLS handshake failed");
            return;
        }
        s.smtp.set_secure();
        let _ = s.hook(Hook::Secure).await;
    }
    if !inbound.allowed(remote.ip()) {
        s.smtp
            .refuse(Reply::new(554, "5.7.1", format!("Access denied for {}", remote.ip())));
    } else if n > inbound.max_connections || shared.is_none() {
        s.smtp.refuse(Reply::new(
            421,
            "4.7.0",
            format!("{} Too many connections, try again later", inbound.hostname),
        ));
    } else if inbound.max_per_ip > 0
        && from_this_ip > inbound.max_per_ip
        && !inbound
            .per_ip_exceptions
            .iter()
            .any(|c| c.contains(remote.ip().to_canonical()))
    {
        tracing::info!(peer = %remote, connections = from_this_ip, "refused: smtp-connections-per-ip reached");
        s.smtp.refuse(Reply::new(
            421,
            "4.7.0",
            format!(
                "{} Too many connections from {}, try again later",
                inbound.hostname,
                remote.ip().to_canonical()
            ),
        ));
    } else if early.is_empty() && s.talks_first().await {
        s.smtp.refuse(Reply::new(
            554,
            "5.5.0",
            "Error: SMTP protocol violation: talking before the greeting",
        ));
    } else {
        match s.hook(Hook::Connect).await {
            Err(reply) => s.smtp.refuse(Reply::new(421, "4.3.0", reply.text())),
            Ok(Some(r)) if r.code >= 400 => s.smtp.refuse(Reply::plain(r.code, r.text)),
            Ok(Some(r)) => s.smtp.greet_with(Reply::plain(r.code, r.text)),
            Ok(None) => s.smtp.greet(),
        }
        s.smtp.feed(&early);
    }
    if let Err(e) = s.run().await {
        tracing::debug!(peer = %remote, error = %e, "connection ended");
    }
    // The last time plugins see this connection; no hand-off is outstanding.
    let _ = s.hook(Hook::Close).await;
}

/// What a plugin's MQ_respond means for a step: its reply when it rejects,
/// or when it accepts what the host would accept; a 2xx/3xx where the host
/// rejects is ignored (with a warning).
fn plugin_reply(host_accepts: bool, response: Option<Response>) -> Option<Reply> {
    let r = response?;
    if r.code >= 400 || host_accepts {
        Some(Reply::plain(r.code, r.text))
    } else {
        tracing::warn!(
            code = r.code,
            "a plugin answered positively where the server refuses: ignored"
        );
        None
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
    /// Runs a hook through the plugins: the reply a plugin set, if any, or
    /// `Err(451)` when one held control past plugin-timeout. Bytes plugins
    /// sent with MQ_send go out before the reply.
    async fn hook(&mut self, hook: Hook<'_>) -> Result<Option<Response>, Reply> {
        let Some(pc) = &self.plugins else { return Ok(None) };
        if !self.inbound.plugins.exports(hook.kind()) {
            return Ok(None);
        }
        let result = sluice_plugin::hooks::run(
            &self.inbound.plugins,
            &self.contexts,
            pc,
            hook,
            self.inbound.plugin_timeout,
        )
        .await;
        let sent = pc.take_outgoing();
        self.smtp.output().extend_from_slice(&sent);
        match result {
            Ok(()) => Ok(pc.take_response()),
            Err(t) => {
                let _ = pc.take_response();
                Err(Reply::new(
                    451,
                    "4.3.0",
                    format!("Temporary failure in plugin {}, try again later", t.plugin),
                ))
            }
        }
    }

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
        // The body being read holds this much of `reception-memory`.
        let mut charge = self.inbound.writer.budget.charge();
        // Total deadlines (RFC 5321 §4.5.3.2): they restart only when a
        // command line or a body is complete, not with every byte.
        let mut progress = (self.smtp.progress(), tokio::time::Instant::now());
        loop {
            while let Some(ev) = self.smtp.next_event() {
                if let Event::Close = ev {
                    self.flush().await?;
                    return Ok(());
                }
                self.handle(ev).await?;
            }
            self.account(&mut charge);
            self.flush().await?;
            if self.smtp.progress() != progress.0 {
                progress = (self.smtp.progress(), tokio::time::Instant::now());
            }
            let total = if self.smtp.in_body() {
                self.inbound.data_deadline
            } else {
                self.inbound.command_deadline
            };
            let deadline = (progress.1 + total).min(tokio::time::Instant::now() + self.inbound.timeout);
            let read = tokio::select! {
                r = tokio::time::timeout_at(deadline, self.conn.read(&mut buf)) => r,
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

    /// Charges the body being read to `reception-memory`: a body that does
    /// not fit is refused (its bytes discarded, `452 4.3.1` at its end), and
    /// while nothing fits new bodies are refused at DATA/BDAT.
    fn account(&mut self, charge: &mut crate::reception::budget::Charge) {
        let insufficient = || Reply::new(452, "4.3.1", "Insufficient system resources, try again later");
        let held = if self.smtp.in_body() {
            self.smtp.body_len() as u64
        } else {
            0
        };
        if !charge.resize(held) {
            tracing::warn!(peer = %self.remote, bytes = held, "reception-memory is used up: message refused");
            self.smtp.refuse_body(insufficient());
            charge.resize(0);
        }
        let budget = &self.inbound.writer.budget;
        self.smtp.refuse_new_bodies(budget.full().then(insufficient));
    }

    fn auth_required(&self) -> bool {
        self.inbound.accounts.is_some() && self.smtp.authenticated().is_none()
    }

    async fn handle(&mut self, ev: Event) -> anyhow::Result<()> {
        match ev {
            Event::Mail(_) if !self.inbound.writer.queue.available() => {
                // No broker: say so now rather than after the client sent the whole message.
                self.smtp
                    .respond(Reply::new(451, "4.3.0", "Queue unavailable, try again later"))
            }
            Event::Mail(mail) => {
                // Unauthenticated mail is refused at MAIL unless refused mail is
                // kept, in which case it is taken in and refused after DATA.
                let host_accepts = !(self.auth_required() && self.inbound.names.refused.is_none());
                match self.hook(Hook::MailFrom(&mail.address)).await {
                    Err(reply) => self.smtp.respond(reply),
                    Ok(response) => match plugin_reply(host_accepts, response) {
                        Some(reply) => self.smtp.respond(reply),
                        None if host_accepts => self.smtp.accept(),
                        None => self.smtp.respond(Reply::new(530, "5.7.0", "Authentication required")),
                    },
                }
            }
            Event::Rcpt(rcpt) => match self.hook(Hook::RcptTo(&rcpt.address)).await {
                Err(reply) => self.smtp.respond(reply),
                Ok(response) => match plugin_reply(true, response) {
                    Some(reply) => self.smtp.respond(reply),
                    None => self.smtp.accept(),
                },
            },
            Event::Auth {
                authzid: Some(authzid), ..
            } if !self.inbound.plugins.exports(HookName::Authenticate) => {
                // RFC 4616 §2: acting as another identity needs an authorization
                // policy, which only a plugin can bring.
                tracing::info!(peer = %self.remote, authzid = %sluice_smtp::wire::shown(&authzid), "AUTH PLAIN with a different authorization identity refused");
                self.smtp.respond(Reply::new(
                    535,
                    "5.7.8",
                    "Authentication failed: authorization identity not allowed",
                ));
            }
            Event::Auth { login, password, .. } => self.authenticate(login, password).await,
            Event::StartTls => {
                self.flush().await?;
                self.conn.start_tls(self.inbound).await?;
                self.smtp.tls_established();
                if let Some(pc) = &self.plugins {
                    pc.set_secure(true);
                }
                let _ = self.hook(Hook::Secure).await;
            }
            Event::Message(env) => {
                let reply = match self.hook(Hook::Data(&env.body)).await {
                    Err(reply) => reply,
                    Ok(Some(r)) if r.code >= 400 => Reply::plain(r.code, r.text),
                    Ok(response) => {
                        // A 4xx/5xx was answered above; a 2xx/3xx replaces the
                        // host's reply only when the message was stored.
                        let stored = self.store(env).await;
                        plugin_reply(stored.is_positive(), response).unwrap_or(stored)
                    }
                };
                crate::metrics::get().received("smtp", reply.code);
                self.smtp.respond(reply);
            }
            Event::Close => {}
        }
        Ok(())
    }

    /// Checks AUTH credentials: by the plugins when any exports
    /// mq_smtp_in_authenticate (MQ_setAuthenticated decides), else by
    /// the accounts (smtp-username/smtp-password, smtp-auth).
    async fn authenticate(&mut self, login: String, password: String) {
        let (ok, reply) = if self.inbound.plugins.exports(HookName::Authenticate) {
            let hook = Hook::Authenticate {
                login: &login,
                password: &password,
            };
            match self.hook(hook).await {
                Err(reply) => return self.smtp.respond(reply),
                Ok(response) => {
                    let ok = self.plugins.as_ref().and_then(|pc| pc.take_auth_verdict()) == Some(true);
                    (ok, plugin_reply(ok, response))
                }
            }
        } else {
            let ok = match self.inbound.accounts.clone() {
                Some(a) => a.verify(login.clone(), password).await,
                None => false,
            };
            (ok, None)
        };
        if ok {
            self.mark_authenticated(&login);
        }
        match (reply, ok) {
            (Some(reply), _) => self.smtp.respond(reply),
            (None, true) => self.smtp.accept(),
            (None, false) => {
                tracing::info!(peer = %self.remote, login = %sluice_smtp::wire::shown(&login), "authentication failed");
                self.smtp
                    .respond(Reply::new(535, "5.7.8", "Authentication credentials invalid"));
            }
        }
    }

    /// Records a successful login for the session and the plugins' `MQ_authenticated`.
    fn mark_authenticated(&mut self, login: &str) {
        self.smtp.set_authenticated(login);
        if let Some(pc) = &self.plugins {
            pc.set_authenticated(true);
        }
    }

    /// Stores one JSON per recipient; the 250 is given only once all are durable.
    async fn store(&mut self, env: Envelope) -> Reply {
        let refused = self.auth_required();
        let queue = match (&self.inbound.names.refused, refused) {
            (Some(q), true) => q.clone(),
            (None, true) => return Reply::new(530, "5.7.0", "Authentication required"),
            _ => self.inbound.names.inbox.clone(),
        };
        let local_ip = self.local.ip().to_canonical();
        let mut conn = json!({
            "local-ip": local_ip.to_string(),
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
        // An `x-mq-ip` header, lifted later, still wins over the mapping.
        if self.inbound.mapped(local_ip) {
            properties.insert("ips".into(), json!([local_ip.to_string()]));
        }
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
        let writer = self.inbound.writer.clone();
        let local = self.inbound.names.local.clone();
        let reports = self.inbound.names.reports.clone();
        let queues = crate::reception::Queues {
            main: &queue,
            local: &local,
            reports: &reports,
        };
        let check = async |json, prepared: &Prepared| self.message_hook(json, prepared).await;
        let stored = match crate::reception::receive(&writer, reception, &recipients, queues, check).await {
            Ok(stored) => stored,
            Err(Failure::Check(reply)) => return reply,
            Err(Failure::Queue(e)) => {
                tracing::error!(error = %e, "could not store a received message");
                return match e {
                    sluice_queue::QueueError::Io(ref io) if io.kind() == std::io::ErrorKind::StorageFull => {
                        Reply::new(452, "4.3.1", "Insufficient system storage, try again later")
                    }
                    _ => Reply::new(451, "4.3.0", "Temporary failure storing the message, try again later"),
                };
            }
        };
        if stored.copies.is_empty() {
            // Every copy was dropped by a plugin: its reply answers DATA.
            return stored
                .dropped
                .unwrap_or_else(|| Reply::new(554, "5.7.1", "Message refused"));
        }
        if refused {
            return Reply::new(530, "5.7.0", "Authentication required");
        }
        queued_reply(&stored.copies)
    }

    /// mq_smtp_in_message for one recipient's copy: plugins may change its
    /// JSON, route it to the local queue, or drop it with a 4xx/5xx.
    async fn message_hook(
        &mut self,
        json: Map<String, serde_json::Value>,
        prepared: &Prepared,
    ) -> Result<Verdict, Reply> {
        if self.plugins.is_none() || !self.inbound.plugins.exports(HookName::Message) {
            return Ok(Verdict::Keep { json, local: false });
        }
        // Plugins see (and may change) the whole object, MIME included.
        let mut message = Box::new(MqMessage::new(prepared.with_mime(json)));
        let response = self.hook(Hook::Message(&mut message)).await?;
        let (json, local) = message.into_parts();
        Ok(match response {
            Some(r) if r.code >= 400 => Verdict::Drop(Reply::plain(r.code, r.text)),
            _ => Verdict::Keep { json, local },
        })
    }
}

/// `250 2.0.0 queued as ID1 for a@x, ID2 for b@y`, multi-line when long.
fn queued_reply(copies: &[(String, String)]) -> Reply {
    let parts: Vec<String> = copies.iter().map(|(id, r)| format!("{id} for {r}")).collect();
    let line = format!("queued as {}", parts.join(", "));
    if line.len() <= 400 {
        Reply::new(250, "2.0.0", line)
    } else {
        let mut r = Reply::new(250, "2.0.0", "");
        r.lines = parts.into_iter().map(|p| format!("queued as {p}")).collect();
        r
    }
}
