//! Receiving mail over SMTP: listeners hand accepted sockets to worker
//! threads (each a single-threaded runtime), where [`session`] drives the
//! sans-IO session and stores accepted messages.

pub mod budget;
pub mod log;
pub mod message;
mod session;
pub mod tls;

use crate::config::{Cidr, Config};
use crate::queues::QueueNames;
use crate::stamp::IdGenerator;
use anyhow::{Context, Result};
use sluice_queue::Queue;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

/// Everything a session needs, shared by all workers.
pub struct Inbound {
    pub hostname: String,
    pub max_size: u64,
    pub max_recipients: usize,
    pub timeout: Duration,
    pub greeting_delay: Duration,
    pub range: Vec<Cidr>,
    pub proxy: Vec<Cidr>,
    pub credentials: Option<(String, String)>,
    pub max_connections: usize,
    /// `smtp-connections-per-ip` (0 = no limit), except for
    /// `smtp-connections-per-ip-exceptions` (like Postfix's $mynetworks).
    pub max_per_ip: usize,
    pub per_ip_exceptions: Vec<Cidr>,
    /// Open connections per client address.
    pub per_ip: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
    /// `smtp-command-timeout`, `smtp-data-timeout`: total time for one
    /// command line and for one message body, however slowly it trickles in.
    pub command_deadline: Duration,
    pub data_deadline: Duration,
    pub extract: bool,
    pub names: QueueNames,
    pub sink: Sink,
    pub tls: TlsAcceptor,
    pub plugins: Arc<sluice_plugin::Plugins>,
    pub plugin_timeout: Duration,
    pub connections: AtomicUsize,
    pub shutdown: watch::Receiver<bool>,
}

impl Inbound {
    pub fn from_config(
        c: &Config,
        hostname: String,
        sink: Sink,
        tls: TlsAcceptor,
        plugins: Arc<sluice_plugin::Plugins>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Inbound {
            hostname,
            max_size: c.size("smtp-maxsize"),
            max_recipients: c.u64("smtp-max-recipients") as usize,
            timeout: Duration::from_secs(c.u64("smtp-timeout")),
            greeting_delay: Duration::from_millis(c.u64("smtp-greeting-delay")),
            range: c.cidrs("smtp-range"),
            proxy: c.cidrs("smtp-proxy"),
            credentials: c
                .opt("smtp-username")
                .map(|u| (u.to_string(), c.str("smtp-password").to_string())),
            max_connections: c.u64("smtp-connections") as usize,
            max_per_ip: c.u64("smtp-connections-per-ip") as usize,
            per_ip_exceptions: c.cidrs("smtp-connections-per-ip-exceptions"),
            per_ip: Default::default(),
            command_deadline: Duration::from_secs(c.u64("smtp-command-timeout")),
            data_deadline: Duration::from_secs(c.u64("smtp-data-timeout")),
            extract: c.bool("smtp-extract"),
            names: QueueNames::from_config(c),
            sink,
            tls,
            plugins,
            plugin_timeout: Duration::from_secs(c.u64("plugin-timeout")),
            connections: AtomicUsize::new(0),
            shutdown,
        }
    }

    /// Connections from this address may connect (`smtp-range`).
    fn allowed(&self, ip: IpAddr) -> bool {
        self.range.is_empty() || self.range.iter().any(|c| c.contains(ip))
    }

    /// Connections from this address start with a PROXY header.
    fn proxied(&self, ip: IpAddr) -> bool {
        self.proxy.iter().any(|c| c.contains(ip))
    }
}

/// Where received mail goes: the queues, the message-id generator and the
/// received-log; shared by SMTP and the HTTP API.
#[derive(Clone)]
pub struct Sink {
    pub queue: Arc<dyn Queue>,
    pub ids: Arc<IdGenerator>,
    pub log: Arc<log::ReceivedLog>,
    /// `reception-memory`: bytes of bodies SMTP and HTTP hold together.
    pub budget: Arc<budget::Budget>,
}

/// Stores one JSON per recipient of a reception in `queue_name`, then logs
/// them; returns their message ids.
pub async fn store(
    sink: &Sink,
    queue_name: &str,
    reception: message::Reception,
    recipients: &[message::Recipient],
) -> Result<Vec<String>, sluice_queue::QueueError> {
    let prepared = message::prepare(reception);
    let mut out = Publisher::new(sink);
    let mut ids = Vec::with_capacity(recipients.len());
    for rcpt in recipients {
        let id = sink.ids.next();
        out.add(queue_name, &prepared, prepared.recipient(rcpt, &id)).await?;
        ids.push(id);
    }
    out.finish().await?;
    Ok(ids)
}

/// Stores a reception's copies, in groups of about [`Publisher::GROUP`]
/// bytes, so a big message for many recipients is never held in memory
/// once per recipient. Each group is durable before the next is built; the
/// sender is answered only after the last. If a later group fails, earlier
/// copies stay queued and the sender, told to retry, sends them again
/// (at-least-once: duplicates, never loss).
pub struct Publisher<'a> {
    sink: &'a Sink,
    batch: Vec<sluice_queue::NewMessage>,
    bytes: usize,
    /// received-log lines of the batch, written once it is durable.
    lines: Vec<(String, serde_json::Map<String, serde_json::Value>)>,
}

impl<'a> Publisher<'a> {
    /// Bytes of JSON collected before a group is stored.
    pub const GROUP: usize = 16 << 20;

    pub fn new(sink: &'a Sink) -> Self {
        Publisher {
            sink,
            batch: Vec::new(),
            bytes: 0,
            lines: Vec::new(),
        }
    }

    /// Adds one copy for `queue`; stores the group when it is full.
    pub async fn add(
        &mut self,
        queue: &str,
        prepared: &message::Prepared,
        json: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), sluice_queue::QueueError> {
        let body = prepared.serialize(&json);
        self.bytes += body.len();
        self.batch.push(sluice_queue::NewMessage::now(queue, body));
        if self.sink.log.enabled() {
            let size = json
                .get("mime")
                .and_then(|m| m.as_str())
                .map_or(prepared.mime_len(), str::len);
            let mut line = json;
            line.remove("mime");
            line.insert("size".into(), size.into());
            self.lines.push((queue.to_string(), line));
        }
        if self.bytes >= Self::GROUP {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), sluice_queue::QueueError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.bytes = 0;
        self.sink.queue.publish(std::mem::take(&mut self.batch)).await?;
        for (queue, line) in self.lines.drain(..) {
            self.sink.log.record(&queue, line);
        }
        Ok(())
    }

    /// Stores what is left; all copies are durable when it returns `Ok`.
    pub async fn finish(mut self) -> Result<(), sluice_queue::QueueError> {
        self.flush().await
    }
}

/// Reception's task for one worker: it accepts on its own clone of every
/// listening socket and owns the sessions it accepted from start to end (no
/// cross-thread hand-off per connection); it ends at shutdown once its last
/// session ended.
pub fn accepting(inbound: Arc<Inbound>, listeners: &[(std::net::TcpListener, bool)]) -> Result<crate::worker::Task> {
    let mine = listeners
        .iter()
        .map(|(l, tls)| Ok((l.try_clone()?, *tls)))
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok(Box::new(move |contexts| {
        Box::pin(accept_and_serve(inbound, mine, contexts))
    }))
}

/// A connection just accepted by a worker.
pub struct Accepted {
    pub stream: TcpStream,
    pub remote: SocketAddr,
    /// The listener's address when it is not a wildcard.
    pub local: Option<SocketAddr>,
    /// `smtp-secure-port`: TLS from the first byte.
    pub implicit_tls: bool,
}

async fn accept_and_serve(
    inbound: Arc<Inbound>,
    listeners: Vec<(std::net::TcpListener, bool)>,
    contexts: Rc<sluice_plugin::WorkerContexts>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Accepted>();
    for (l, implicit_tls) in listeners {
        let l = match tokio::net::TcpListener::from_std(l) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "worker cannot use a listening socket");
                continue;
            }
        };
        let (tx, mut stop) = (tx.clone(), inbound.shutdown.clone());
        // Bound to one address, the local address is known without asking each socket.
        let fixed_local = l.local_addr().ok().filter(|a| !a.ip().is_unspecified());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = l.accept() => match r {
                        Ok((stream, remote)) => {
                            let _ = tx.send(Accepted { stream, remote, local: fixed_local, implicit_tls });
                        }
                        Err(e) => {
                            // Out of descriptors and the like: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
                    _ = crate::shutdown::requested(&mut stop) => break,
                }
            }
        });
    }
    drop(tx);
    let mut sessions = tokio::task::JoinSet::new();
    while let Some(accepted) = rx.recv().await {
        sessions.spawn_local(session::serve(inbound.clone(), accepted, contexts.clone()));
        while sessions.try_join_next().is_some() {}
    }
    // Every accept loop ended (shutdown): let the open sessions finish.
    while sessions.join_next().await.is_some() {}
}

/// Binds every `smtp-ip` × port; errors name the address.
pub fn bind(c: &Config) -> Result<Vec<(std::net::TcpListener, bool)>> {
    let mut out = Vec::new();
    for (key, tls) in [("smtp-port", false), ("smtp-secure-port", true)] {
        for ip in c.list("smtp-ip") {
            for port in c.ports(key) {
                let ip: IpAddr = ip.parse().context("smtp-ip")?;
                let addr = SocketAddr::new(ip, port);
                let l =
                    std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} ({key})"))?;
                l.set_nonblocking(true)?;
                out.push((l, tls));
            }
        }
    }
    Ok(out)
}
