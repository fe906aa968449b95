//! Receiving mail over SMTP: listeners hand accepted sockets to worker
//! threads (each a single-threaded runtime), where [`session`] drives the
//! sans-IO session and stores accepted messages.

pub mod message;
mod session;
pub mod tls;

use crate::config::{Cidr, Config};
use crate::queues::QueueNames;
use crate::stamp::IdGenerator;
use anyhow::{bail, Context, Result};
use sluice_queue::Queue;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
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
    pub queue: Arc<dyn Queue>,
    pub tls: TlsAcceptor,
    pub ids: Arc<IdGenerator>,
    pub connections: AtomicUsize,
    pub shutdown: watch::Receiver<bool>,
}

impl Inbound {
    pub fn from_config(
        c: &Config,
        hostname: String,
        queue: Arc<dyn Queue>,
        tls: TlsAcceptor,
        ids: Arc<IdGenerator>,
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
            queue,
            tls,
            ids,
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

/// A socket on its way to a worker, and whether it starts with TLS.
pub struct Accepted {
    pub stream: std::net::TcpStream,
    pub implicit_tls: bool,
}

/// The worker threads, each with its own single-threaded runtime.
pub struct Workers {
    senders: Vec<mpsc::UnboundedSender<Accepted>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    next: AtomicUsize,
}

impl Workers {
    pub fn start(count: usize, inbound: Arc<Inbound>) -> Result<Workers> {
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for i in 0..count {
            let (tx, mut rx) = mpsc::unbounded_channel::<Accepted>();
            let inbound = inbound.clone();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let t = std::thread::Builder::new()
                .name(format!("smtp-worker-{i}"))
                .spawn(move || {
                    rt.block_on(async move {
                        let mut tasks = tokio::task::JoinSet::new();
                        while let Some(acc) = rx.recv().await {
                            let inbound = inbound.clone();
                            tasks.spawn(async move {
                                match TcpStream::from_std(acc.stream) {
                                    Ok(s) => session::serve(inbound, s, acc.implicit_tls).await,
                                    Err(e) => tracing::warn!(error = %e, "could not adopt an accepted socket"),
                                }
                            });
                            while tasks.try_join_next().is_some() {}
                        }
                        // Listeners are closed: let the sessions finish.
                        while tasks.join_next().await.is_some() {}
                    });
                })?;
            senders.push(tx);
            threads.push(t);
        }
        Ok(Workers {
            senders,
            threads,
            next: AtomicUsize::new(0),
        })
    }

    /// Hands a socket to the next worker.
    pub fn dispatch(&self, acc: Accepted) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        let _ = self.senders[i].send(acc);
    }

    /// Closes the hand-off channels and waits for every session to end.
    pub fn join(self) {
        drop(self.senders);
        for t in self.threads {
            let _ = t.join();
        }
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
