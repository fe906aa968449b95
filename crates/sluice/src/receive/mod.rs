//! Receiving mail over SMTP: listeners hand accepted sockets to worker
//! threads (each a single-threaded runtime), where [`session`] drives the
//! sans-IO session and stores accepted messages.

pub mod log;
pub mod message;
mod session;
pub mod tls;

use crate::config::{Cidr, Config};
use crate::queues::QueueNames;
use crate::stamp::IdGenerator;
use anyhow::{bail, Context, Result};
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
}

/// Stores one JSON per recipient of a reception in `queue_name` as one
/// durable batch, then logs them; returns their message ids.
pub async fn store(
    sink: &Sink,
    queue_name: &str,
    reception: &message::Reception,
    recipients: &[message::Recipient],
) -> Result<Vec<String>, sluice_queue::QueueError> {
    let ids: Vec<String> = recipients.iter().map(|_| sink.ids.next()).collect();
    let messages = message::build(reception, recipients, &ids);
    publish(
        sink,
        messages.into_iter().map(|m| (queue_name.to_string(), m)).collect(),
    )
    .await?;
    Ok(ids)
}

/// Stores built messages, each in its queue, as one durable batch; then logs them.
pub async fn publish(
    sink: &Sink,
    messages: Vec<(String, serde_json::Map<String, serde_json::Value>)>,
) -> Result<(), sluice_queue::QueueError> {
    let batch = messages
        .iter()
        .map(|(queue, m)| {
            let body = serde_json::to_vec(m).map_err(|e| sluice_queue::QueueError::Io(std::io::Error::other(e)))?;
            Ok(sluice_queue::NewMessage::now(queue.as_str(), body))
        })
        .collect::<Result<Vec<_>, sluice_queue::QueueError>>()?;
    sink.queue.publish(batch).await?;
    for (queue, m) in &messages {
        sink.log.record(queue, std::slice::from_ref(m));
    }
    Ok(())
}

/// Refuses to run as an open relay by accident (see `smtp-open-relay`).
pub fn check_open_relay(c: &Config) -> Result<()> {
    let public = c
        .list("smtp-ip")
        .iter()
        .any(|ip| ip.parse::<IpAddr>().map(|ip| !ip.is_loopback()).unwrap_or(true));
    if public && c.opt("smtp-range").is_none() && c.opt("smtp-username").is_none() && !c.bool("smtp-open-relay") {
        bail!(
            "{}",
            c.error(
                "smtp-ip",
                "listening on a non-loopback address with neither smtp-range nor smtp-username set would make an open relay; set one of them, or smtp-open-relay: true".into()
            )
        );
    }
    Ok(())
}

/// The worker threads, each with its own single-threaded runtime that
/// accepts on its own clone of every listening socket and owns the sessions
/// it accepted from start to end (no cross-thread hand-off per connection).
pub struct Workers {
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` workers; returns once every one ran `mq_context_initialize`
    /// of every plugin, so no traffic is served before that.
    /// Each worker also runs its `lanes` entry (its share of delivery) when given.
    pub fn start(
        count: usize,
        inbound: Arc<Inbound>,
        listeners: &[(std::net::TcpListener, bool)],
        lanes: Vec<crate::deliver::Lane>,
    ) -> Result<Workers> {
        let mut threads = Vec::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let mut lanes = lanes.into_iter();
        for i in 0..count {
            let lane = lanes.next();
            let mine = listeners
                .iter()
                .map(|(l, tls)| Ok((l.try_clone()?, *tls)))
                .collect::<std::io::Result<Vec<_>>>()?;
            let (inbound, ready) = (inbound.clone(), ready_tx.clone());
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let t = std::thread::Builder::new()
                .name(format!("smtp-worker-{i}"))
                .spawn(move || {
                    let contexts = Rc::new(sluice_plugin::WorkerContexts::initialize(inbound.plugins.clone(), i));
                    let _ = ready.send(());
                    // A LocalSet: sessions and plugin callbacks stay on this thread.
                    tokio::task::LocalSet::new().block_on(&rt, worker(inbound, mine, contexts.clone(), lane));
                    match Rc::try_unwrap(contexts) {
                        Ok(c) => c.cleanup(),
                        Err(_) => tracing::error!("worker contexts still in use at shutdown; cleanup skipped"),
                    }
                })?;
            threads.push(t);
        }
        drop(ready_tx);
        for _ in 0..count {
            ready_rx.recv().context("a worker thread died while starting")?;
        }
        Ok(Workers { threads })
    }

    /// Waits for every worker: they stop accepting on shutdown and end when
    /// their last session ended.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
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

async fn worker(
    inbound: Arc<Inbound>,
    listeners: Vec<(std::net::TcpListener, bool)>,
    contexts: Rc<sluice_plugin::WorkerContexts>,
    lane: Option<crate::deliver::Lane>,
) {
    if let Some(event_loop) = contexts.event_loop() {
        tokio::task::spawn_local(event_loop);
    }
    let delivery = lane.map(|lane| tokio::task::spawn_local(crate::deliver::destination::run(lane, contexts.clone())));
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
    if let Some(d) = delivery {
        let _ = d.await;
    }
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
