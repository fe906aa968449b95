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
            Err(e) if refused(&e) => {
                // Not a network blip: trying fast will not fix credentials or
                // a vhost, and the operator must see it.
                tracing::error!(error = %e, "RabbitMQ refused the login or the vhost (rabbitmq-address); trying again in {}s", REFUSED_PAUSE.as_secs());
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

/// How long to wait after a broker refused the login or the vhost.
const REFUSED_PAUSE: Duration = Duration::from_secs(30);

/// Whether the broker answered, and said no to the credentials or the vhost
/// (AMQP 403 ACCESS_REFUSED, 530 NOT_ALLOWED).
fn refused(e: &QueueError) -> bool {
    let text = e.to_string();
    [
        "ACCESS_REFUSED",
        "NOT_ALLOWED",
        "access to vhost",
        "authentication failure",
    ]
    .iter()
    .any(|m| text.contains(m))
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
        let c = tokio::time::timeout(
            Duration::from_secs(5),
            Connection::connect_uri(uri.clone(), ConnectionProperties::default()),
        )
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
    if !opts.exchange.is_empty() {
        // MailerQ creates its exchange when missing; queues are bound to it by name.
        link.exchange(&opts.exchange, lapin::ExchangeKind::Direct, opts.durable)
            .await?;
    }
    for q in &opts.queues {
        link.declare(opts, q).await?;
    }
    Ok(link)
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

    /// Declares `queue` (and binds it to the exchange) once per link.
    pub(super) async fn declare(&self, opts: &RabbitOptions, queue: &str) -> Result<(), QueueError> {
        if lock(&self.declared).contains(queue) {
            return Ok(());
        }
        let ch = self.publisher();
        let options = QueueDeclareOptions {
            durable: opts.durable,
            ..Default::default()
        };
        self.run(
            "queue.declare",
            ch.queue_declare(queue.into(), options, FieldTable::default()),
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

    #[tokio::test(start_paused = true)]
    async fn an_answer_is_passed_on() {
        let (_lost, signal) = watch::channel(false);
        let op = async { Err::<(), _>("NOT_FOUND - no queue") };
        let e = unless_lost(signal, "queue.declare", op).await.unwrap_err();
        assert!(e.to_string().contains("NOT_FOUND"), "{e}");
    }
}
