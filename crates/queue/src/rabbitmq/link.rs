//! The connections to the broker: opening them (hosts in turn), declaring
//! queues on them, and a supervisor that opens them again when one is lost.

use super::{unavailable, Inner, RabbitOptions};
use crate::{lock, QueueError};
use lapin::options::{ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};
use std::collections::HashSet;
use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long one broker operation may take. lapin leaves some futures
/// pending for good when the broker closes a connection (a publish during a
/// clean broker shutdown, amqp-rs/lapin#409), and a broker under a memory
/// alarm holds publishers indefinitely; either way the caller (an SMTP
/// session, a delivery outcome) gets `Unavailable` and tries again instead
/// of waiting forever.
pub(super) const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one broker operation within [`OPERATION_TIMEOUT`].
pub(super) async fn bounded<T, E: Display>(
    what: &str,
    op: impl Future<Output = Result<T, E>>,
) -> Result<T, QueueError> {
    match tokio::time::timeout(OPERATION_TIMEOUT, op).await {
        Ok(result) => result.map_err(unavailable),
        Err(_) => Err(unavailable(format!(
            "{what}: no answer from RabbitMQ in {}s",
            OPERATION_TIMEOUT.as_secs()
        ))),
    }
}

/// One set of live connections.
pub(super) struct Link {
    pub(super) generation: u64,
    pub(super) publish: Vec<Channel>,
    /// The first `publish.len()` publish, the rest consume.
    pub(super) connections: Vec<Connection>,
    next: AtomicUsize,
    /// Queues declared (and bound) on this link.
    pub(super) declared: Mutex<HashSet<String>>,
    /// Set once the supervisor has seen the link fail: whatever is still
    /// waiting on it fails at once instead of at its timeout.
    lost: watch::Sender<bool>,
}

/// Keeps a link up: connect (hosts in turn, growing pauses), declare the
/// queues, watch the connections, start again when one is lost.
pub(super) async fn supervise(inner: Arc<Inner>) {
    let mut generation = 0;
    let mut pause = Duration::from_millis(200);
    let mut first_host = 0;
    loop {
        generation += 1;
        match connect(&inner, generation, &mut first_host).await {
            Ok(link) => {
                tracing::info!(broker = %super::uri::shown(&inner.uris[first_host % inner.uris.len()]), "RabbitMQ connected");
                pause = Duration::from_millis(200);
                let link = Arc::new(link);
                *inner.link.write().unwrap_or_else(|e| e.into_inner()) = Some(link.clone());
                // A channel the broker closed (an error on it) is as broken as a lost connection.
                while link.connections.iter().all(|c| c.status().connected())
                    && link.publish.iter().all(|c| c.status().connected())
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tracing::warn!("RabbitMQ connection or channel lost; reconnecting");
                *inner.link.write().unwrap_or_else(|e| e.into_inner()) = None;
                link.lost.send_replace(true);
                for c in &link.connections {
                    // A close on a connection the broker already dropped may never be answered.
                    let _ = tokio::time::timeout(Duration::from_secs(2), c.close(200, "reconnecting".into())).await;
                }
            }
            Err(e) if lasting(&e).is_some() => {
                // Not a network blip: trying fast will not fix credentials, a
                // vhost or a queue's arguments, and the operator must see it.
                let why = lasting(&e).unwrap_or_default();
                tracing::error!(error = %e, "{why}; trying again in {}s", REFUSED_PAUSE.as_secs());
                first_host += 1;
                tokio::time::sleep(REFUSED_PAUSE).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach RabbitMQ; retrying");
                first_host += 1;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// How long to wait after a broker said no for a reason that lasts.
const REFUSED_PAUSE: Duration = Duration::from_secs(30);

/// What to tell the operator when the broker answered and said no for a
/// reason trying again soon will not change: the credentials or the vhost
/// (AMQP 403 ACCESS_REFUSED, 530 NOT_ALLOWED), a queue declared before with
/// other arguments (406 PRECONDITION_FAILED), a queue or exchange missing
/// when Sluice may not declare it (404 NOT_FOUND), an `amqps://` broker
/// whose certificate rustls does not trust.
fn lasting(e: &QueueError) -> Option<&'static str> {
    let text = e.to_string();
    let has = |marks: &[&str]| marks.iter().any(|m| text.contains(m));
    if has(&[
        "ACCESS_REFUSED",
        "NOT_ALLOWED",
        "access to vhost",
        "authentication failure",
    ]) {
        Some("RabbitMQ refused the login or the vhost (rabbitmq-address)")
    } else if has(&["PRECONDITION_FAILED"]) {
        Some("a queue or the exchange exists in RabbitMQ with other settings (rabbitmq-durable, rabbitmq-maxpriority, rabbitmq-lazy): delete it, match them, or set rabbitmq-declare: false")
    } else if has(&["invalid peer certificate"]) {
        Some("the broker's TLS certificate cannot be trusted (amqps://): give Sluice its CA (SSL_CERT_FILE), fix the certificate, or set rabbitmq-verify: false")
    } else if has(&["NOT_FOUND"]) {
        Some("a queue or the exchange does not exist in RabbitMQ and rabbitmq-declare is false: create it")
    } else {
        None
    }
}

async fn connect(inner: &Inner, generation: u64, first_host: &mut usize) -> Result<Link, QueueError> {
    let n = inner.uris.len();
    let mut last = String::new();
    for i in 0..n {
        let uri = &inner.uris[(*first_host + i) % n];
        let opened = tokio::time::timeout(OPERATION_TIMEOUT, open(inner, uri, generation))
            .await
            .unwrap_or_else(|_| Err(unavailable("opening the connections timed out")));
        match opened {
            Ok(link) => {
                *first_host = (*first_host + i) % n;
                return Ok(link);
            }
            Err(QueueError::Unavailable(why)) => last = format!("{}: {why}", super::uri::shown(uri)),
            Err(e) => last = format!("{}: {e}", super::uri::shown(uri)),
        }
    }
    Err(QueueError::Unavailable(last))
}

async fn open(inner: &Inner, uri: &lapin::uri::AMQPUri, generation: u64) -> Result<Link, QueueError> {
    let opts = &inner.opts;
    let mut connections = Vec::new();
    for _ in 0..opts.publishers.max(1) + opts.consumers.max(1) {
        let c = tokio::time::timeout(Duration::from_secs(5), connection(inner, uri))
            .await
            .map_err(|_| unavailable("connection timed out"))?
            .map_err(unavailable)?;
        connections.push(c);
    }
    let mut publish = Vec::new();
    for c in &connections[..opts.publishers.max(1)] {
        let ch = c.create_channel().await.map_err(unavailable)?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        publish.push(ch);
    }
    let link = Link {
        generation,
        publish,
        connections,
        next: AtomicUsize::new(0),
        declared: Mutex::new(HashSet::new()),
        lost: watch::Sender::new(false),
    };
    if !opts.exchange.is_empty() && opts.declare {
        // MailerQ creates its exchange when missing; queues are bound to it by name.
        link.exchange(&opts.exchange, lapin::ExchangeKind::Direct, opts.durable)
            .await?;
    } else if !opts.exchange.is_empty() {
        link.check("exchange", &opts.exchange).await?;
    }
    for q in &opts.queues {
        link.declare(opts, q).await?;
    }
    Ok(link)
}

/// One connection to the broker at `uri`: plain, or TLS with the backend's
/// connector for `amqps://`.
async fn connection(inner: &Inner, uri: &lapin::uri::AMQPUri) -> lapin::Result<Connection> {
    let tls = match &inner.tls {
        Some(tls) if super::uri::is_tls(uri) => tls.clone(),
        _ => return Connection::connect_uri(uri.clone(), ConnectionProperties::default()).await,
    };
    let runtime = lapin::runtime::default_runtime()?;
    Connection::connector(
        uri.clone(),
        runtime,
        async move |uri: lapin::uri::AMQPUri, runtime| {
            let host = uri.authority.host.clone();
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), uri.authority.port))
                .await?
                .collect();
            let stream = lapin::tcp::AsyncTcpStream::connect(&runtime, addrs).await?;
            Ok(stream.into_rustls(&tls, &host).await?)
        },
        ConnectionProperties::default(),
    )
    .await
}

/// The arguments `queue` is declared with: `x-max-priority` for the
/// priority queues, `x-queue-mode: lazy` with `rabbitmq-lazy`.
fn queue_arguments(opts: &RabbitOptions, queue: &str) -> FieldTable {
    let mut args = FieldTable::default();
    if opts.max_priority > 0 && opts.prioritised.iter().any(|q| q == queue) {
        args.insert(
            "x-max-priority".into(),
            AMQPValue::LongInt(i32::from(opts.max_priority)),
        );
    }
    if opts.lazy {
        args.insert("x-queue-mode".into(), AMQPValue::LongString("lazy".into()));
    }
    args
}

/// Runs `op` within [`OPERATION_TIMEOUT`], failing at once when `lost` turns true.
async fn unless_lost<T, E: Display>(
    mut lost: watch::Receiver<bool>,
    what: &str,
    op: impl Future<Output = Result<T, E>>,
) -> Result<T, QueueError> {
    tokio::select! {
        result = bounded(what, op) => result,
        _ = lost.wait_for(|lost| *lost) => Err(unavailable(format!("{what}: RabbitMQ connection lost"))),
    }
}

impl Link {
    /// Runs one operation on this link: fails when the link is lost or the
    /// broker does not answer within [`OPERATION_TIMEOUT`].
    pub(super) async fn run<T, E: Display>(
        &self,
        what: &str,
        op: impl Future<Output = Result<T, E>>,
    ) -> Result<T, QueueError> {
        unless_lost(self.lost(), what, op).await
    }

    /// A signal that turns true when the link is lost.
    pub(super) fn lost(&self) -> watch::Receiver<bool> {
        self.lost.subscribe()
    }

    pub(super) fn publisher(&self) -> &Channel {
        &self.publish[self.next.fetch_add(1, Ordering::Relaxed) % self.publish.len()]
    }

    pub(super) fn consumer_connection(&self) -> &Connection {
        let consumers = &self.connections[self.publish.len()..];
        &consumers[self.next.fetch_add(1, Ordering::Relaxed) % consumers.len()]
    }

    /// A channel with the exchange `name` there: declared as `kind` when
    /// missing, taken as it is when it exists with other properties (a
    /// mismatched declaration closes its channel, so a second one asks passively).
    pub(super) async fn exchange(
        &self,
        name: &str,
        kind: lapin::ExchangeKind,
        durable: bool,
    ) -> Result<Channel, QueueError> {
        use lapin::options::ExchangeDeclareOptions;
        let open = || self.run("channel.open", self.consumer_connection().create_channel());
        let ch = open().await?;
        let ours = ExchangeDeclareOptions {
            durable,
            ..Default::default()
        };
        let declare = ch.exchange_declare(name.into(), kind.clone(), ours, FieldTable::default());
        if self.run("exchange.declare", declare).await.is_ok() {
            return Ok(ch);
        }
        let ch = open().await?;
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declare = ch.exchange_declare(name.into(), kind, passive, FieldTable::default());
        self.run("exchange.declare", declare).await?;
        Ok(ch)
    }

    /// That the queue or exchange `name` exists, without declaring it: a
    /// passive declare on a channel of its own (a missing one closes it).
    pub(super) async fn check(&self, what: &str, name: &str) -> Result<(), QueueError> {
        let ch = self
            .run("channel.open", self.consumer_connection().create_channel())
            .await?;
        let checked = if what == "exchange" {
            let passive = lapin::options::ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let declare = ch.exchange_declare(name.into(), lapin::ExchangeKind::Direct, passive, FieldTable::default());
            self.run("exchange.declare", declare).await.map(|_| ())
        } else {
            let passive = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let declare = ch.queue_declare(name.into(), passive, FieldTable::default());
            self.run("queue.declare", declare).await.map(|_| ())
        };
        if checked.is_ok() {
            let _ = self.run("channel.close", ch.close(200, "checked".into())).await;
        }
        checked.map_err(|e| unavailable(format!("{what} `{name}` (rabbitmq-declare is false): {e}")))
    }

    /// Declares `queue` (and binds it to the exchange) once per link; with
    /// `rabbitmq-declare: false` only checks that it is there.
    pub(super) async fn declare(&self, opts: &RabbitOptions, queue: &str) -> Result<(), QueueError> {
        if lock(&self.declared).contains(queue) {
            return Ok(());
        }
        if !opts.declare {
            self.check("queue", queue).await?;
            lock(&self.declared).insert(queue.to_string());
            return Ok(());
        }
        let ch = self.publisher();
        let options = QueueDeclareOptions {
            durable: opts.durable,
            ..Default::default()
        };
        self.run(
            "queue.declare",
            ch.queue_declare(queue.into(), options, queue_arguments(opts, queue)),
        )
        .await?;
        if !opts.exchange.is_empty() {
            let bind = ch.queue_bind(
                queue.into(),
                opts.exchange.as_str().into(),
                queue.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            );
            self.run("queue.bind", bind).await?;
        }
        lock(&self.declared).insert(queue.to_string());
        Ok(())
    }

    /// The delay queue that holds messages for `queue` for `secs`, declared once.
    pub(super) async fn delay_queue(&self, opts: &RabbitOptions, queue: &str, secs: u64) -> Result<String, QueueError> {
        let name = format!("sluice.delay.{queue}.{secs}");
        if lock(&self.declared).contains(&name) {
            return Ok(name);
        }
        let mut args = FieldTable::default();
        args.insert("x-message-ttl".into(), AMQPValue::LongUInt((secs * 1000) as u32));
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(opts.exchange.as_str().into()),
        );
        args.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(queue.into()));
        let options = QueueDeclareOptions {
            durable: opts.durable,
            ..Default::default()
        };
        let declare = self.publisher().queue_declare(name.as_str().into(), options, args);
        self.run("queue.declare", declare).await?;
        lock(&self.declared).insert(name.clone());
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> impl Future<Output = Result<(), String>> {
        std::future::pending()
    }

    #[tokio::test(start_paused = true)]
    async fn an_operation_the_broker_never_answers_fails_at_its_timeout() {
        let (_lost, signal) = watch::channel(false);
        let started = tokio::time::Instant::now();
        let e = unless_lost(signal, "basic.publish", never()).await.unwrap_err();
        assert!(
            matches!(e, QueueError::Unavailable(ref why) if why.contains("basic.publish")),
            "{e}"
        );
        assert_eq!(started.elapsed(), OPERATION_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn an_operation_on_a_lost_link_fails_when_the_loss_is_seen() {
        let (lost, signal) = watch::channel(false);
        let started = tokio::time::Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            lost.send_replace(true);
        });
        let e = unless_lost(signal, "publisher confirm", never()).await.unwrap_err();
        assert!(e.to_string().contains("connection lost"), "{e}");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[test]
    fn lasting_refusals_are_told_apart_from_blips() {
        let said = |text: &str| lasting(&QueueError::Unavailable(text.into()));
        assert!(said("ACCESS_REFUSED - Login was refused").unwrap().contains("login"));
        assert!(said("PRECONDITION_FAILED - inequivalent arg 'x-max-priority'")
            .unwrap()
            .contains("rabbitmq-maxpriority"));
        assert!(said("queue `outbox` (rabbitmq-declare is false): NOT_FOUND - no queue")
            .unwrap()
            .contains("create it"));
        assert_eq!(said("connection refused (os error 111)"), None);
    }

    #[test]
    fn only_the_prioritised_queues_get_x_max_priority() {
        let mut opts = RabbitOptions::new("amqp://h/".into(), vec!["outbox".into(), "results".into()], Vec::new());
        assert!(
            queue_arguments(&opts, "outbox").inner().is_empty(),
            "MailerQ's defaults: none"
        );
        opts.max_priority = 4;
        opts.prioritised = vec!["outbox".into()];
        opts.lazy = true;
        let outbox = queue_arguments(&opts, "outbox");
        assert_eq!(outbox.inner().get("x-max-priority"), Some(&AMQPValue::LongInt(4)));
        assert_eq!(
            outbox.inner().get("x-queue-mode"),
            Some(&AMQPValue::LongString("lazy".into()))
        );
        let results = queue_arguments(&opts, "results");
        assert_eq!(results.inner().get("x-max-priority"), None);
        assert!(results.inner().contains_key("x-queue-mode"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_is_passed_on() {
        let (_lost, signal) = watch::channel(false);
        let op = async { Err::<(), _>("NOT_FOUND - no queue") };
        let e = unless_lost(signal, "queue.declare", op).await.unwrap_err();
        assert!(e.to_string().contains("NOT_FOUND"), "{e}");
    }
}
