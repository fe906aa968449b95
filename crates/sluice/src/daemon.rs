//! `sluice run`: start-up, the accept loops, and an orderly shutdown.

use crate::config::Config;
use crate::deliver;
use crate::http::{self, Api};
use crate::queues::QueueNames;
use crate::receive::{self, Inbound};
use crate::reception;
use crate::stamp::IdGenerator;
use crate::worker::Workers;
use anyhow::{bail, Context, Result};
use sluice_queue::{EmbeddedStore, Queue, RabbitMq, RabbitOptions, StoreOptions};
use std::io::Write;
use std::sync::Arc;
use tokio::sync::watch;

/// The host name for greetings: `smtp-hostname` (checked with the config),
/// else the system's when it is a valid host name, else `localhost`.
pub fn hostname(c: &Config) -> String {
    c.settings.smtp_hostname.clone().unwrap_or_else(|| {
        let system = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        if sluice_smtp::wire::HeloName::new(&system).is_ok() {
            return system;
        }
        if !system.is_empty() {
            tracing::warn!(
                system = %sluice_smtp::wire::shown(&system),
                "the system host name is not a valid SMTP host name; using localhost (set smtp-hostname)"
            );
        }
        "localhost".into()
    })
}

/// Takes the lock file so two daemons never share a data directory.
fn lock(c: &Config) -> Result<std::fs::File> {
    let s = &c.settings;
    let path = s
        .lock
        .as_ref()
        .map_or_else(|| s.data_dir().join("sluice.pid"), Into::into);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    if f.try_lock().is_err() {
        let pid = std::fs::read_to_string(&path).unwrap_or_default();
        bail!(
            "another sluice (pid {}) is running on {} (lock file {})",
            pid.trim(),
            s.data_dir().display(),
            path.display()
        );
    }
    f.set_len(0)?;
    writeln!(f, "{}", std::process::id())?;
    Ok(f)
}

pub fn run(c: Config) -> Result<()> {
    let s = &c.settings;
    let data = s.data_dir();
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create data-directory {}", data.display()))?;
    let _lock = lock(&c)?;
    let user = s
        .user
        .as_ref()
        .map(|name| crate::privileges::lookup(name).map_err(|e| c.error("user", e)))
        .transpose()?;
    if let Some(user) = &user {
        crate::privileges::give(&data, user)?;
    }
    // After the lock (a refused second daemon runs no plugin code); plugins are loaded and initialised before any port is opened.
    let plugins = Arc::new(match &s.plugin_directory {
        Some(dir) => {
            let mut plugins = sluice_plugin::Plugins::load_directory(std::path::Path::new(dir))?;
            plugins.observer = Some(Arc::new(|plugin, hook, took| {
                crate::metrics::get().hook_took(plugin, hook, took)
            }));
            plugins
        }
        None => sluice_plugin::Plugins::none(),
    });
    plugins.initialize();
    let smtp_listeners = receive::bind(&c)?;
    let www_ip = s
        .www_ip
        .first()
        .copied()
        .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
    let www_addr = std::net::SocketAddr::new(www_ip, s.www_port);
    // `www-port: 0` (MailerQ's way): no plain HTTP, only www-secure-port.
    let www = match s.www_port {
        0 => None,
        _ => {
            let l = std::net::TcpListener::bind(www_addr)
                .with_context(|| format!("cannot listen on {www_addr} (www-port)"))?;
            l.set_nonblocking(true)?;
            Some(l)
        }
    };
    let www_secure = match s.www_secure_port.first() {
        Some(&port) => {
            let addr = std::net::SocketAddr::new(www_ip, port);
            let l = std::net::TcpListener::bind(addr)
                .with_context(|| format!("cannot listen on {addr} (www-secure-port)"))?;
            l.set_nonblocking(true)?;
            Some(l)
        }
        None => None,
    };
    if !www_ip.is_loopback() && s.www_password.is_none() {
        // Only with www-open: true (Config::check refuses it otherwise).
        tracing::warn!(address = %www_addr, "the HTTP API listens beyond loopback without www-username/www-password (www-open): anyone who reaches it can read and inject mail");
    }
    // Sockets are bound (ports below 1024 need root); from here on, the configured user.
    if let Some(user) = &user {
        crate::privileges::drop_to(user)?;
    }
    let hostname = hostname(&c);
    let me = crate::cluster::card(&c, &hostname);
    let (queue, store, peers) = open_queue(&c, &data, &me)?;
    let (settings_db, policy, version) = crate::policy::open(&c)?;
    tracing::info!(database = %settings_db.describe(), capacity = policy.capacity.len(), flood = policy.flood.len(), "settings database read");
    let live = crate::policy::Live::new(&c, &policy, version);
    let tls = receive::tls::acceptor(
        s.smtp_certificate.as_deref(),
        s.smtp_key.as_deref(),
        receive::tls::SMTP,
        &data,
        &hostname,
    )?;
    let www_tls = match &www_secure {
        Some(_) => Some(receive::tls::acceptor(
            s.www_certificate.as_deref(),
            s.www_key(),
            receive::tls::Keys("www-certificate", "www-private-key"),
            &data,
            &hostname,
        )?),
        None => None,
    };
    let received_log = Arc::new(reception::log::ReceivedLog::open(s.received_log.as_deref())?);
    crate::trace::install(crate::trace::Trace::open(&data.join("trace"), s.trace_size)?);
    let ids = Arc::new(IdGenerator::new(s.server_id));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let message_store = crate::message_store::MessageStore::from_config(&c)?;
    let writer = reception::Writer {
        store: message_store.clone(),
        queue,
        ids,
        log: received_log,
        budget: reception::budget::Budget::new(s.reception_memory),
        locals: live.locals.clone(),
    };
    let spool = crate::receive::spool::Spool::from_config(&c, &hostname)?;
    let inbound = Arc::new(Inbound::from_config(
        &c,
        hostname.clone(),
        writer.clone(),
        tls,
        plugins.clone(),
        shutdown_rx.clone(),
    )?);
    for (l, tls) in &smtp_listeners {
        tracing::info!(address = %l.local_addr()?, tls, "SMTP listening");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    // Before anything answers: a stop asked for while starting is graceful
    // too, not the default action of SIGTERM.
    let stop = {
        let _in_rt = rt.enter();
        StopSignals::install().context("installing the SIGTERM and SIGINT handlers")?
    };
    let mut engine = deliver::Engine::from_config(
        &c,
        writer.queue.clone(),
        hostname.clone(),
        shutdown_rx.clone(),
        plugins.clone(),
        rt.handle().clone(),
        live.clone(),
    )?;
    engine.all_connections = inbound.all_connections.clone();
    engine.store = message_store.clone();
    let engine = Arc::new(engine);
    // Weak: the metrics must not keep delivery alive past its shutdown.
    let weak = Arc::downgrade(&engine);
    crate::metrics::get().set_in_flight_source(Box::new(move |n| {
        weak.upgrade().map_or((Vec::new(), 0), |e| e.in_flight(n))
    }));
    let settings_db = Arc::new(std::sync::Mutex::new(settings_db));
    let reload = crate::policy::reload_every(s.database_ttl, settings_db.clone(), live.clone(), shutdown_rx.clone())?;
    let lanes = if s.delivery_enabled {
        let _in_rt = rt.enter();
        deliver::start(engine, s.threads())
    } else {
        tracing::info!("delivery-enabled is false: receiving only");
        Vec::new()
    };
    // Each worker runs its share of reception and, with delivery on, of delivery.
    let mut lanes = lanes.into_iter();
    let mut per_worker = Vec::new();
    for _ in 0..s.threads() {
        let mut tasks = vec![receive::accepting(inbound.clone(), &smtp_listeners)?];
        tasks.extend(lanes.next().map(deliver::destination::task));
        per_worker.push(tasks);
    }
    let mut per_worker = per_worker.into_iter();
    let workers = Workers::start(s.threads(), plugins.clone(), |_| per_worker.next().unwrap_or_default())?;
    drop(smtp_listeners);
    let history = http::live::History::new();
    let api = Arc::new(Api {
        writer,
        names: QueueNames::from_config(&c),
        hostname,
        extract: s.smtp_extract,
        basic_auth: Api::basic_auth(s),
        tokens: s.www_tokens.clone(),
        trace_dir: data.join("trace"),
        history: history.clone(),
        cluster: peers.map(|p| (p, me.id.clone())),
        plugins: plugins
            .list
            .iter()
            .map(|p| (p.name.clone(), p.exports.clone()))
            .collect(),
        shutdown: shutdown_rx.clone(),
        settings: Some(http::policy::SettingsDb {
            store: settings_db,
            live,
        }),
    });

    rt.block_on(async {
        tokio::spawn(http::live::sample_every_second(history, shutdown_rx.clone()));
        if let Some(store) = message_store {
            tokio::spawn(crate::message_store::sweep_every_minute(store, shutdown_rx.clone()));
        }
        if let Some(spool) = spool {
            tokio::spawn(crate::receive::spool::watch(
                spool,
                api.writer.clone(),
                shutdown_rx.clone(),
            ));
        }
        let app = http::router(api);
        let mut plain = app.clone();
        let limits = http::serve::Limits {
            connections: Arc::new(tokio::sync::Semaphore::new(s.www_connections as usize)),
            grace: s.shutdown_grace,
        };
        let mut http_tasks = Vec::new();
        if let (Some(secure), Some(tls)) = (www_secure, www_tls) {
            let secure = tokio::net::TcpListener::from_std(secure)?;
            let port = secure.local_addr()?.port();
            tracing::info!(address = %secure.local_addr()?, "HTTPS console and API listening");
            http_tasks.push(tokio::spawn(http::serve::serve(
                secure,
                Some(tls),
                app,
                limits.clone(),
                shutdown_rx.clone(),
            )));
            plain = plain.layer(axum::middleware::from_fn_with_state(
                port,
                http::secure::console_to_https,
            ));
        }
        match www {
            Some(www) => {
                let www = tokio::net::TcpListener::from_std(www)?;
                tracing::info!(address = %www.local_addr()?, "HTTP API listening");
                http_tasks.push(tokio::spawn(http::serve::serve(
                    www,
                    None,
                    plain,
                    limits,
                    shutdown_rx.clone(),
                )));
            }
            None => tracing::info!("plain HTTP off (www-port: 0)"),
        }
        stop.wait().await;
        tracing::info!("shutting down: no new connections; finishing open transactions");
        let _ = shutdown_tx.send(true);
        // Requests in progress (an injection being stored) end before the store closes.
        for task in http_tasks {
            let _ = task.await;
        }
        anyhow::Ok(())
    })?;
    // The runtime outlives the workers: their last deliveries still use the
    // resolver and settle outcomes that run there.
    workers.join();
    drop(rt);
    let _ = reload.join();
    plugins.cleanup();
    if let Some(store) = store {
        store.close();
    }
    tracing::info!("stopped");
    Ok(())
}

/// The queues, and the embedded store behind them when there is one (closed at the end).
/// The queue; the embedded store when it is that; the other instances when
/// it is a shared broker.
type Queues = (
    Arc<dyn Queue>,
    Option<Arc<EmbeddedStore>>,
    Option<Arc<sluice_queue::rabbitmq::cluster::Cluster>>,
);

/// The queues: RabbitMQ when `rabbitmq-address` is set, else the embedded
/// store under the data directory.
fn open_queue(c: &Config, data: &std::path::Path, me: &crate::cluster::Card) -> Result<Queues> {
    let s = &c.settings;
    if let Some(address) = &s.rabbitmq_address {
        let outbox = QueueNames::from_config(c).outbox;
        let opts = RabbitOptions {
            address: address.clone(),
            exchange: s.rabbitmq_exchange.clone().unwrap_or_default(),
            durable: s.rabbitmq_durable,
            persistent: s.rabbitmq_persistent,
            prefetch: u16::try_from(s.rabbitmq_prefetch).unwrap_or(u16::MAX),
            publishers: s.rabbitmq_publishers.max(1) as usize,
            consumers: s.rabbitmq_consumers.max(1) as usize,
            queues: crate::queues::all(c),
            consumed: if s.delivery_enabled {
                vec![outbox.clone()]
            } else {
                Vec::new()
            },
            max_priority: u8::try_from(s.rabbitmq_maxpriority).unwrap_or(u8::MAX),
            // MailerQ makes the outbox a priority queue, no other.
            prioritised: vec![outbox],
            lazy: s.rabbitmq_lazy,
            declare: s.rabbitmq_declare,
            gzip: s.rabbitmq_encoding == "gzip",
            verify: s.rabbitmq_verify,
        };
        let rmq = RabbitMq::start(opts).map_err(|e| c.error("rabbitmq-address", e.to_string()))?;
        if !rmq.wait_connected(std::time::Duration::from_secs(5)) {
            tracing::warn!("RabbitMQ is not reachable yet; SMTP answers 451 until it is");
        }
        let peers = rmq.announce(sluice_queue::rabbitmq::cluster::Announce {
            exchange: s.cluster_exchange.clone(),
            id: me.id.clone(),
            card: me.card.to_string().into_bytes(),
            every: crate::cluster::EVERY,
            on_reload: Box::new(crate::policy::want_reload),
        });
        return Ok((Arc::new(rmq), None, Some(peers)));
    }
    let store = Arc::new(EmbeddedStore::open(&data.join("queue"), store_options()).context("opening the queue store")?);
    Ok((store.clone(), Some(store), None))
}

/// SIGTERM and SIGINT, caught from start-up on.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Catches both (inside the runtime).
    fn install() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Until one of them arrives (one that arrived before is not lost).
    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// The embedded store's options: defaults, its commits counted in the metrics.
fn store_options() -> StoreOptions {
    StoreOptions {
        on_commit: Some(Arc::new(|took, n| crate::metrics::get().committed(took, n))),
        ..StoreOptions::default()
    }
}
