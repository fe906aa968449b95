//! Receiving mail over SMTP: listeners hand accepted sockets to worker
//! threads (each a single-threaded runtime), where [`session`] drives the
//! sans-IO session and stores accepted messages.

pub mod accounts;
mod session;
pub mod spool;
pub mod tls;

use crate::config::{Cidr, Config};
use crate::queues::QueueNames;
use anyhow::{Context, Result};
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
    /// `smtp-mappable-ips` less `smtp-unmappable-ips`: local addresses
    /// whose mail is sent from the address it was submitted to.
    pub mappable: Vec<Cidr>,
    pub unmappable: Vec<Cidr>,
    /// Who may log in (`smtp-username`, `smtp-auth`); None: AUTH is not offered
    /// (unless a plugin authenticates).
    pub accounts: Option<Arc<accounts::Accounts>>,
    /// `smtp-connections-in`.
    pub max_connections: usize,
    /// `smtp-connections`: all SMTP connections, in and out, share it (the
    /// daemon hands delivery the same one).
    pub all_connections: Arc<tokio::sync::Semaphore>,
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
    pub writer: crate::reception::Writer,
    pub tls: TlsAcceptor,
    pub plugins: Arc<sluice_plugin::Plugins>,
    pub plugin_timeout: Duration,
    pub connections: AtomicUsize,
    pub shutdown: watch::Receiver<bool>,
    /// `shutdown-grace`: how long a stop waits for open sessions.
    pub grace: Duration,
}

impl Inbound {
    pub fn from_config(
        c: &Config,
        hostname: String,
        writer: crate::reception::Writer,
        tls: TlsAcceptor,
        plugins: Arc<sluice_plugin::Plugins>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, crate::config::ConfigError> {
        let s = &c.settings;
        let accounts = accounts::Accounts::from_settings(s)
            .map_err(|e| c.error("smtp-auth", e))?
            .map(Arc::new);
        if let Some(a) = &accounts {
            tracing::info!(accounts = a.len(), "SMTP AUTH accounts loaded");
        }
        Ok(Inbound {
            hostname,
            max_size: s.smtp_maxsize,
            max_recipients: s.smtp_max_recipients as usize,
            timeout: s.smtp_timeout,
            greeting_delay: Duration::from_millis(s.smtp_greeting_delay),
            range: s.smtp_range.clone(),
            proxy: s.smtp_proxy.clone(),
            mappable: s.smtp_mappable_ips.clone(),
            unmappable: s.smtp_unmappable_ips.clone(),
            accounts,
            max_connections: s.smtp_connections_in as usize,
            all_connections: Arc::new(tokio::sync::Semaphore::new(s.smtp_connections as usize)),
            max_per_ip: s.smtp_connections_per_ip as usize,
            per_ip_exceptions: s.smtp_connections_per_ip_exceptions.clone(),
            per_ip: Default::default(),
            command_deadline: s.smtp_command_timeout,
            data_deadline: s.smtp_data_timeout,
            extract: s.smtp_extract,
            names: QueueNames::from_config(c),
            writer,
            tls,
            plugins,
            plugin_timeout: s.plugin_timeout,
            connections: AtomicUsize::new(0),
            shutdown,
            grace: s.shutdown_grace,
        })
    }

    /// Connections from this address may connect (`smtp-range`).
    fn allowed(&self, ip: IpAddr) -> bool {
        self.range.is_empty() || self.range.iter().any(|c| c.contains(ip))
    }

    /// Mail submitted to this local address is sent from it (MailerQ's
    /// mappable IPs): in `smtp-mappable-ips` and not in `smtp-unmappable-ips`.
    fn mapped(&self, local: IpAddr) -> bool {
        self.mappable.iter().any(|c| c.contains(local)) && !self.unmappable.iter().any(|c| c.contains(local))
    }

    /// Connections from this address start with a PROXY header.
    fn proxied(&self, ip: IpAddr) -> bool {
        self.proxy.iter().any(|c| c.contains(ip))
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
    // Every accept loop ended (shutdown): let the open sessions finish, for a while.
    let ended = crate::shutdown::finish(&mut sessions, &inbound.shutdown, inbound.grace).await;
    if ended > 0 {
        tracing::warn!(sessions = ended, grace = ?inbound.grace, "SMTP sessions still open after shutdown-grace were closed; their messages were not acknowledged");
    }
}

/// Binds every `smtp-ip` × port; errors name the address.
pub fn bind(c: &Config) -> Result<Vec<(std::net::TcpListener, bool)>> {
    let mut out = Vec::new();
    let s = &c.settings;
    for (key, ports, tls) in [
        ("smtp-port", &s.smtp_port, false),
        ("smtp-secure-port", &s.smtp_secure_port, true),
    ] {
        for &ip in &s.smtp_ip {
            for &port in ports {
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
