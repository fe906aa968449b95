//! Delivering mail: the outbox to the world over SMTP.
//!
//! - [`dispatch`] takes messages from the outbox as capacity allows, settles
//!   the ones that cannot be tried (invalid, expired, not yet due) and hands
//!   the rest to the worker that owns their destination.
//! - [`destination`] runs on each worker: per-destination queues, connection
//!   limits, connection reuse; [`send`] gives it its SMTP connections
//!   ([`connect`] opens them: relay, MX order, fallback).
//! - [`client`] is one SMTP connection around the sans-IO client session;
//!   [`mx`] finds the hosts; [`message`] turns a message into a transaction
//!   (signed by [`dkim`] when it asks).
//! - [`outcome`] decides what an attempt means (result JSON, retry or final)
//!   and [`dsn`] writes delivery status notifications.

pub mod client;
pub mod connect;
pub mod destination;
pub mod dispatch;
pub mod dkim;
pub mod dsn;
pub mod extracted;
pub mod message;
pub mod mime_json;
pub mod mx;
pub mod outcome;
pub mod outgoing;
pub mod send;
pub mod tls;

use crate::config::Config;
use anyhow::{Context, Result};
use outcome::{Attempt, Policy};
use outgoing::{Defaults, Outgoing};
use sluice_queue::{NewMessage, Queue};
use sluice_smtp::client::TlsPolicy;
use sluice_smtp::wire::{Credentials, HeloName};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

pub use outgoing::Smarthost;

/// Where a message goes: a set of MX hosts (shared by every domain that has
/// exactly that set), a relay host, or — before its MX hosts are known, and
/// with `smtp-sink-ip`, where they are never looked up — its domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Next {
    Domain(String),
    Mx(Arc<[mx::Exchange]>),
    Relay(Smarthost),
}

/// A destination: where and from which local IP. Messages with the same
/// route share connections and limits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    pub next: Next,
    pub local: Option<IpAddr>,
}

impl Route {
    /// A short name for logs.
    pub fn name(&self) -> String {
        let via = match &self.next {
            Next::Domain(d) => d.clone(),
            Next::Mx(hosts) => hosts.first().map(|h| h.name.clone()).unwrap_or_default(),
            Next::Relay(s) => format!("[{}]:{}", s.host, s.port),
        };
        match self.local {
            Some(ip) => format!("{via} from {ip}"),
            None => via,
        }
    }
}

/// One message on its way: leased from the outbox until settled.
pub struct Job {
    pub id: u64,
    pub msg: Outgoing,
    pub route: Route,
    /// Holds the message's place in the in-flight limits until it is settled.
    pub permit: InFlight,
}

/// A message's share of the dispatcher's limits (count and bytes), given
/// back when dropped.
pub struct InFlight {
    _slot: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

impl InFlight {
    fn new(slot: OwnedSemaphorePermit, bytes: OwnedSemaphorePermit) -> InFlight {
        InFlight {
            _slot: slot,
            _bytes: bytes,
        }
    }
}

/// What every part of delivery shares.
pub struct Engine {
    pub queue: Arc<dyn Queue>,
    pub policy: Policy,
    pub defaults: Defaults,
    pub helo: HeloName,
    pub tls_policy: TlsPolicy,
    pub tls: tokio_rustls::TlsConnector,
    /// `smarthost`: every message goes there unless it names its own.
    pub smarthost: Option<Smarthost>,
    /// `smtp-sink-ip`/`smtp-sink-port`: every connection goes here.
    pub sink: Option<SocketAddr>,
    /// The one resolver of delivery (None with `smtp-sink-ip`, which needs none).
    pub dns: Option<Arc<mx::Dns>>,
    pub delivery_ips: Vec<IpAddr>,
    /// `delivery-port`: the port of MX hosts.
    pub mx_port: u16,
    pub timeouts: client::Timeouts,
    /// `delivery-connections`: all outbound connections together.
    pub connections: Arc<Semaphore>,
    /// `smtp-connections`: all SMTP connections, in and out (the daemon
    /// puts reception's here, so both sides share one).
    pub all_connections: Arc<Semaphore>,
    /// Limits per destination and MX IP, from the settings database.
    pub shaper: Arc<Mutex<sluice_shaping::Shaper>>,
    /// The settings database in force (suppressions).
    pub settings: crate::policy::Live,
    pub shutdown: watch::Receiver<bool>,
    /// `shutdown-grace`: how long a stop waits for deliveries in progress.
    pub grace: Duration,
    /// For the outbound hooks (`mq_smtp_out_data`, `mq_smtp_out_sent`).
    pub plugins: Arc<sluice_plugin::Plugins>,
    pub plugin_timeout: Duration,
    /// `send-log`: one JSON line per attempt, after its outcome is stored.
    pub send_log: crate::jsonlog::JsonLog,
    /// The message store (`storage-address`): keys read before delivery, retries put there.
    pub store: Option<Arc<crate::message_store::MessageStore>>,
    /// Messages handed to each destination and not yet settled.
    backlog: Mutex<HashMap<Route, usize>>,
}

impl Engine {
    pub fn from_config(
        c: &Config,
        queue: Arc<dyn Queue>,
        hostname: String,
        shutdown: watch::Receiver<bool>,
        plugins: Arc<sluice_plugin::Plugins>,
        runtime: tokio::runtime::Handle,
        live: crate::policy::Live,
    ) -> Result<Engine> {
        let s = &c.settings;
        // With a sink every connection goes to it: no lookups.
        let dns = if s.smtp_sink_ip.is_empty() {
            let options = mx::DnsOptions {
                server: s.dns_server,
                min_ttl: s.dns_min_ttl,
                attempts: s.dns_attempts as usize,
            };
            mx::Dns::new(options, runtime, live.dns.clone())
                .map_err(
                    |e| tracing::error!(error = %e, "cannot set up the DNS resolver; MX deliveries will be retried"),
                )
                .ok()
                .map(Arc::new)
        } else {
            None
        };
        let smarthost = match &s.smarthost {
            Some(host) => {
                sluice_smtp::wire::check_relay_host(host).map_err(|e| c.error("smarthost", e.to_string()))?;
                let auth = s
                    .smarthost_username
                    .as_ref()
                    .map(|u| Credentials::new(u, s.smarthost_password.as_deref().unwrap_or_default()))
                    .transpose()
                    .map_err(|e| c.error("smarthost-username", e.to_string()))?;
                Some(Smarthost {
                    host: host.clone(),
                    port: s.smarthost_port,
                    auth,
                })
            }
            None => None,
        };
        let sink = s.smtp_sink_ip.first().map(|&ip| SocketAddr::new(ip, s.smtp_sink_port));
        let tls_policy = match s.tls_outbound.as_str() {
            "required" => TlsPolicy::Required,
            "disabled" => TlsPolicy::Disabled,
            _ => TlsPolicy::Opportunistic,
        };
        Ok(Engine {
            queue,
            policy: Policy::from_config(c, hostname.clone()),
            defaults: Defaults {
                max_delivertime: s.max_delivertime.as_secs(),
                max_attempts: s.max_attempts,
                dsn: outgoing::DsnDefaults {
                    notify: s.dsn_notify,
                    ret: s.dsn_ret,
                },
            },
            helo: HeloName::new(&hostname).map_err(|e| c.error("smtp-hostname", e.to_string()))?,
            tls_policy,
            tls: tls::connector()
                .map_err(anyhow::Error::msg)
                .context("building the outbound TLS configuration")?,
            smarthost,
            sink,
            dns,
            delivery_ips: s.delivery_ips.clone(),
            mx_port: s.delivery_port,
            timeouts: client::Timeouts {
                cap: s.delivery_timeout,
            },
            connections: Arc::new(Semaphore::new(s.delivery_connections.max(1) as usize)),
            all_connections: Arc::new(Semaphore::new(s.smtp_connections.max(1) as usize)),
            shaper: live.shaper.clone(),
            settings: live,
            shutdown,
            grace: s.shutdown_grace,
            plugins,
            plugin_timeout: s.plugin_timeout,
            send_log: crate::jsonlog::JsonLog::open("send-log", s.send_log.as_deref())?,
            // Set by the daemon: reception shares it.
            store: None,
            backlog: Mutex::new(HashMap::new()),
        })
    }

    /// The route of a message: its own smarthost, the configured one, or MX;
    /// from one of its `ips` (else `delivery-ips`), the same one per domain so
    /// a domain's messages share connections.
    pub fn route(&self, msg: &Outgoing) -> Route {
        let next = match msg.smarthost.clone().or_else(|| self.smarthost.clone()) {
            Some(relay) => Next::Relay(relay),
            None => Next::Domain(msg.domain.clone()),
        };
        let local = self.settings.delegate(self.own_local(msg), &msg.domain, &[]);
        Route { next, local }
    }

    /// The local IP once the MX hosts are known: the `delegates` rows with
    /// an `mx:` scope may name another.
    pub fn delegate_by_mx(&self, msg: &Outgoing, mx_hosts: &[String]) -> Option<IpAddr> {
        self.settings.delegate(self.own_local(msg), &msg.domain, mx_hosts)
    }

    /// The local IP of the message's `ips` (else `delivery-ips`), before delegates.
    fn own_local(&self, msg: &Outgoing) -> Option<IpAddr> {
        let ips = msg.ips.as_ref().unwrap_or(&self.delivery_ips);
        (!ips.is_empty()).then(|| {
            let h = msg
                .domain
                .bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
            ips[h % ips.len()]
        })
    }

    /// Decides what `attempt` means for a message and stores that in the
    /// background (then the send-log line, then the message leaves the
    /// in-flight counts). `route` is None for a message that never reached a
    /// destination (its DNS lookup failed in the dispatcher).
    pub fn conclude(
        self: &Arc<Self>,
        id: u64,
        msg: Outgoing,
        route: Option<Route>,
        permit: InFlight,
        attempt: &Attempt,
    ) {
        tracing::debug!(id, recipient = %msg.recipient, state = attempt.state.as_str(), result = attempt.kind.as_str(), "attempt");
        let now = sluice_queue::now_ms();
        let trace = crate::trace::get();
        if let (Some(reply), Some((_, domain))) = (&attempt.reply, msg.recipient.rsplit_once('@')) {
            crate::http::live::recent_replies().note(domain, reply, &attempt.description, now);
        }
        let entry = (self.send_log.enabled() || trace.enabled()).then(|| outcome::log_entry(&msg, attempt, now));
        let out = outcome::decide(&self.policy, msg, attempt, now);
        let metrics = crate::metrics::get();
        let labels = crate::metrics::AttemptLabels {
            state: attempt.state.as_str(),
            result: attempt.kind.as_str(),
        };
        metrics.attempts.get_or_create(&labels).inc();
        metrics.verdict(out.verdict.as_str());
        let line = entry.map(|mut e| {
            e.insert("verdict".into(), out.verdict.as_str().into());
            e
        });
        let engine = self.clone();
        tokio::spawn(async move {
            engine.settle(id, out.publish).await;
            if let Some(route) = route {
                engine.forget(&route);
            }
            if let Some(line) = line {
                if engine.send_log.enabled() {
                    engine
                        .send_log
                        .write(serde_json::Value::Object(line.clone()).to_string());
                }
                crate::trace::get().record("attempt", line);
            }
            drop(permit)
        });
    }

    /// Stores an outcome and acknowledges the message. When the store cannot
    /// take it (disk full), it tries again with growing pauses and keeps the
    /// message leased: sending it again would only duplicate what the remote
    /// already has. At shutdown it gives up; the message is then due again
    /// after the restart (at worst a duplicate, never a loss).
    pub async fn settle(&self, id: u64, publish: Vec<NewMessage>) {
        let publish = self.to_store(publish).await;
        let mut pause = Duration::from_millis(100);
        let mut stop = self.shutdown.clone();
        loop {
            match self.queue.settle(publish.clone(), vec![id]).await {
                Ok(()) => return,
                Err(e) => tracing::error!(error = %e, id, "cannot store a delivery outcome; trying again"),
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = crate::shutdown::requested(&mut stop) => return,
            }
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }

    /// With `storage-policy` all or out, what goes back to the outbox
    /// carries a `key` instead of its MIME (stored durably first). A message
    /// whose MIME cannot be stored keeps it: the queue still has it all.
    async fn to_store(&self, publish: Vec<NewMessage>) -> Vec<NewMessage> {
        let Some(store) = self.store.clone().filter(|s| s.policy.outbound()) else {
            return publish;
        };
        let outbox = self.policy.outbox.clone();
        // Results and copies for other queues carry no MIME to move (most outcomes).
        if !publish.iter().any(|m| m.queue == outbox) {
            return publish;
        }
        let default_deadline = sluice_queue::now_ms() + self.defaults.max_delivertime * 1000;
        // Kept until the store is done: nothing of an outcome may be lost on the way.
        let original = publish.clone();
        let stripped = tokio::task::spawn_blocking(move || {
            publish
                .into_iter()
                .map(|mut m| {
                    if m.queue == outbox {
                        match store.strip(&m.body, default_deadline) {
                            Ok(Some(body)) => m.body = body,
                            Ok(None) => {}
                            Err(e) => tracing::warn!(error = %e, "message store: MIME kept in the queue"),
                        }
                    }
                    m
                })
                .collect::<Vec<_>>()
        })
        .await;
        stripped.unwrap_or(original)
    }

    /// The routes with messages in flight (leased, in the scheduler or being
    /// sent), most first, at most `n`; and the total.
    pub fn in_flight(&self, n: usize) -> (Vec<(String, usize)>, usize) {
        let backlog = sluice_queue::lock(&self.backlog);
        let total = backlog.values().sum();
        let mut routes: Vec<(&Route, usize)> = backlog.iter().map(|(r, n)| (r, *n)).collect();
        // Only the first n are named (a sort of n, not of every route).
        let cut = n.min(routes.len());
        if cut > 0 && cut < routes.len() {
            routes.select_nth_unstable_by(cut - 1, |a, b| b.1.cmp(&a.1));
        }
        routes.truncate(cut);
        routes.sort_by_key(|r| std::cmp::Reverse(r.1));
        (routes.into_iter().map(|(r, n)| (r.name(), n)).collect(), total)
    }

    /// One fewer message in flight for `route`.
    fn forget(&self, route: &Route) {
        let mut backlog = sluice_queue::lock(&self.backlog);
        if let Some(n) = backlog.get_mut(route) {
            *n -= 1;
            if *n == 0 {
                backlog.remove(route);
            }
        }
    }

    /// Counts a message in for `route` unless that destination already has
    /// `max` in flight (then it waits in the outbox, not in memory).
    fn admit(&self, route: &Route, max: usize) -> bool {
        let mut backlog = sluice_queue::lock(&self.backlog);
        let n = backlog.entry(route.clone()).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }
}

/// One worker's share of delivery: the jobs for the destinations it owns.
pub struct Lane {
    pub engine: Arc<Engine>,
    pub jobs: mpsc::UnboundedReceiver<Job>,
}

/// Creates the lanes for `workers` workers and starts the dispatcher on the
/// current (multi-threaded) runtime.
pub fn start(engine: Arc<Engine>, workers: usize) -> Vec<Lane> {
    let (senders, lanes): (Vec<_>, Vec<_>) = (0..workers.max(1))
        .map(|_| {
            let (tx, rx) = mpsc::unbounded_channel();
            (
                tx,
                Lane {
                    engine: engine.clone(),
                    jobs: rx,
                },
            )
        })
        .unzip();
    tokio::spawn(dispatch::run(engine, senders, dispatch::Limits::default()));
    lanes
}
