//! The queues in RabbitMQ (`rabbitmq-address`): the same [`Queue`] trait as
//! the embedded store, so several Sluice instances can share one broker.
//!
//! - Publishing waits for publisher confirms: `publish`/`settle` resolve only
//!   once the broker has every message.
//! - `take` leases deliveries of a consumer (prefetch `rabbitmq-prefetch`);
//!   `settle` publishes the outcome (confirmed) and then acks.
//! - Not-yet-due messages wait in delay queues (`sluice.delay.QUEUE.SECONDS`,
//!   per-queue TTL, dead-lettered back to QUEUE); see [`delay_bucket`].
//! - MailerQ's options: `rabbitmq-maxpriority` (the outbox a priority
//!   queue, each message published with its JSON `priority`),
//!   `rabbitmq-lazy`, `rabbitmq-declare: false` (queues and exchange only
//!   checked), gzip bodies (read whenever `content-encoding` says so,
//!   written with `rabbitmq-encoding: gzip`); see [`body`].
//! - A supervisor keeps the connections up: on loss it reconnects with
//!   backoff, trying the hosts in turn. While no broker is reachable every
//!   call fails with [`QueueError::Unavailable`] (SMTP answers 451).
//!
//! The connections and their supervisor live on a runtime of their own;
//! calls are awaited where they are made (lapin's I/O thread completes them).

pub mod body;
pub mod cluster;
mod link;
pub mod tls;
pub mod uri;

use crate::{lock, BoxFuture, NewMessage, Queue, QueueError, QueueStats, StoredMessage};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Acker, BasicProperties, Confirmation};
use link::Link;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// The `rabbitmq-*` settings.
#[derive(Debug, Clone)]
pub struct RabbitOptions {
    /// `rabbitmq-address`, possibly naming several hosts.
    pub address: String,
    /// `rabbitmq-exchange`; empty = the default exchange.
    pub exchange: String,
    pub durable: bool,
    pub persistent: bool,
    pub prefetch: u16,
    /// Connections used for publishing and for consuming.
    pub publishers: usize,
    pub consumers: usize,
    /// Declared (and bound) at start.
    pub queues: Vec<String>,
    /// Queues read continuously (the outbox): through a standing consumer
    /// with prefetch; others are read with basic.get when asked.
    pub consumed: Vec<String>,
    /// `rabbitmq-maxpriority`: `x-max-priority` of the queues in
    /// `prioritised` (0 = none), and messages published with their JSON `priority`.
    pub max_priority: u8,
    /// The queues declared as priority queues (MailerQ: the outbox).
    pub prioritised: Vec<String>,
    /// `rabbitmq-lazy`: queues declared with `x-queue-mode: lazy`.
    pub lazy: bool,
    /// `rabbitmq-declare`: when false the queues and the exchange must exist;
    /// they are checked, never declared or bound (Sluice's own delay queues
    /// and cluster exchange still are).
    pub declare: bool,
    /// `rabbitmq-encoding: gzip`: bodies published gzip-compressed.
    pub gzip: bool,
    /// `rabbitmq-verify`: whether an `amqps://` broker's certificate is checked.
    pub verify: bool,
}

impl RabbitOptions {
    /// Options with MailerQ's defaults for everything but the address and queues.
    pub fn new(address: String, queues: Vec<String>, consumed: Vec<String>) -> RabbitOptions {
        RabbitOptions {
            address,
            exchange: String::new(),
            durable: true,
            persistent: true,
            prefetch: 1000,
            publishers: 1,
            consumers: 1,
            queues,
            consumed,
            max_priority: 0,
            prioritised: Vec::new(),
            lazy: false,
            declare: true,
            gzip: false,
            verify: true,
        }
    }
}

/// The RabbitMQ backend.
pub struct RabbitMq {
    rt: Option<tokio::runtime::Runtime>,
    inner: Arc<Inner>,
}

struct Inner {
    opts: RabbitOptions,
    uris: Vec<lapin::uri::AMQPUri>,
    link: RwLock<Option<Arc<Link>>>,
    leases: Mutex<HashMap<u64, Lease>>,
    next_id: AtomicU64,
    feeds: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Feed>>>>,
    /// Outcomes stored whose original could not be acked (its connection was
    /// gone, so the broker hands it out again): at-least-once duplicates.
    duplicates: AtomicU64,
    /// The TLS client, when a broker is `amqps://`.
    tls: Option<Arc<lapin::tcp::RustlsConnector>>,
}

/// A queue's consumer on one link.
struct Feed {
    generation: u64,
    rx: mpsc::Receiver<Delivery>,
}

struct Lease {
    queue: String,
    acker: Acker,
}

/// A delivery's body as its `content-encoding` says. One that cannot be read
/// so is passed on as it came: it is not JSON, so it becomes the
/// invalid-input result instead of being lost or retried forever.
fn decoded(queue: &str, properties: &BasicProperties, data: Vec<u8>) -> Vec<u8> {
    let encoding = properties.content_encoding().as_ref().map(|e| e.as_str());
    if encoding.is_none() {
        return data;
    }
    let expanded = body::decode(encoding, &data, body::MAX_DECODED).map(|b| match b {
        std::borrow::Cow::Owned(b) => Some(b),
        std::borrow::Cow::Borrowed(_) => None,
    });
    match expanded {
        Ok(Some(b)) => b,
        Ok(None) => data,
        Err(e) => {
            tracing::warn!(queue = %queue, error = %e, "a message's body could not be decoded; taken as it is");
            data
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

/// The delay queue bucket for a wait of `ms`: the largest power of two
/// seconds not above it (1 s to 2^17 s ≈ 36 h). Rounding down means a message
/// comes back early at most by half its wait; the dispatcher then sends it to
/// a smaller bucket, so it is on time within a second after a few hops. Every
/// message in a bucket queue has the same TTL, so none waits behind a longer
/// one (the head-of-line limit of per-message TTLs).
pub fn delay_bucket(ms: u64) -> u64 {
    let secs = (ms / 1000).clamp(1, 1 << 17);
    1u64 << (63 - secs.leading_zeros())
}

impl RabbitMq {
    /// Starts the backend; connects in the background (calls fail with
    /// `Unavailable` until the first connection is up).
    pub fn start(opts: RabbitOptions) -> Result<RabbitMq, QueueError> {
        let uris =
            uri::brokers(&opts.address).map_err(|e| QueueError::Unavailable(format!("rabbitmq-address: {e}")))?;
        let tls = match uris.iter().any(uri::is_tls) {
            true => Some(tls::connector(opts.verify).map_err(QueueError::Unavailable)?),
            false => None,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("amqp")
            .enable_all()
            .build()?;
        let inner = Arc::new(Inner {
            opts,
            uris,
            link: RwLock::new(None),
            leases: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            feeds: Mutex::new(HashMap::new()),
            duplicates: AtomicU64::new(0),
            tls,
        });
        rt.spawn(link::supervise(inner.clone()));
        Ok(RabbitMq { rt: Some(rt), inner })
    }

    /// Waits up to `within` for a broker connection.
    pub fn wait_connected(&self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if self.inner.current().is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        // Not a blocking shutdown: the daemon may drop this from async code.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Inner {
    fn current(&self) -> Result<Arc<Link>, QueueError> {
        self.link
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| QueueError::Unavailable("no RabbitMQ connection".into()))
    }

    /// The properties `body` is published with.
    fn properties(&self, body: &[u8]) -> BasicProperties {
        let mut p = BasicProperties::default().with_content_type("application/json".into());
        if self.opts.persistent {
            p = p.with_delivery_mode(2);
        }
        if self.opts.gzip {
            p = p.with_content_encoding("gzip".into());
        }
        // Read only when priorities are on: it costs a scan of the JSON.
        if self.opts.max_priority > 0 {
            if let Some(n) = body::priority(body) {
                p = p.with_priority(n.min(self.opts.max_priority));
            }
        }
        p
    }

    /// Publishes every message and waits for the broker to confirm them all.
    async fn publish(&self, messages: Vec<NewMessage>) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        let link = self.current()?;
        let now = crate::now_ms();
        let mut confirms = Vec::with_capacity(messages.len());
        for m in &messages {
            link.declare(&self.opts, &m.queue).await?;
            // Any wait at all goes through a delay queue (at least 1 s): straight
            // back to its queue it would be taken again at once, and again.
            let (exchange, key) = if m.not_before_ms > now {
                let secs = delay_bucket(m.not_before_ms - now);
                (String::new(), link.delay_queue(&self.opts, &m.queue, secs).await?)
            } else {
                (self.opts.exchange.clone(), m.queue.clone())
            };
            let body = body::encode(&m.body, self.opts.gzip);
            // Mandatory: a message no queue takes comes back instead of
            // vanishing (a queue missing with rabbitmq-declare: false).
            let publish = link.publisher().basic_publish(
                exchange.as_str().into(),
                key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &body,
                self.properties(&m.body),
            );
            confirms.push(link.run("basic.publish", publish).await?);
        }
        let confirmed = link.run("publisher confirm", async {
            let mut all = Vec::with_capacity(confirms.len());
            for c in confirms {
                all.push(c.await?);
            }
            Ok::<_, lapin::Error>(all)
        });
        for c in confirmed.await? {
            match c {
                Confirmation::Ack(None) | Confirmation::NotRequested => {}
                Confirmation::Ack(Some(returned)) => {
                    return Err(unavailable(format!(
                        "no queue took a message for `{}` ({}); is it missing?",
                        returned.delivery.routing_key, returned.reply_text
                    )))
                }
                Confirmation::Nack(_) => return Err(unavailable("the broker refused a message (nack)")),
            }
        }
        Ok(())
    }

    /// The consumer feed of `queue` on the current link, (re)started as needed.
    async fn feed(&self, queue: &str) -> Result<Arc<tokio::sync::Mutex<Feed>>, QueueError> {
        let link = self.current()?;
        let feed = {
            let mut feeds = lock(&self.feeds);
            feeds
                .entry(queue.to_string())
                .or_insert_with(|| {
                    let (_, rx) = mpsc::channel(1);
                    Arc::new(tokio::sync::Mutex::new(Feed { generation: 0, rx }))
                })
                .clone()
        };
        {
            let mut f = feed.lock().await;
            if f.generation != link.generation {
                link.declare(&self.opts, queue).await?;
                let ch = link
                    .run("channel.open", link.consumer_connection().create_channel())
                    .await?;
                link.run(
                    "basic.qos",
                    ch.basic_qos(self.opts.prefetch.max(1), BasicQosOptions::default()),
                )
                .await?;
                let consume = ch.basic_consume(
                    queue.into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                );
                let mut consumer = link.run("basic.consume", consume).await?;
                let (tx, rx) = mpsc::channel(usize::from(self.opts.prefetch.max(1)));
                let mut lost = link.lost();
                tokio::spawn(async move {
                    let _channel = ch;
                    loop {
                        // The stream may not end when the broker drops the connection; the link's loss ends it.
                        let delivery = tokio::select! {
                            d = consumer.next() => d,
                            _ = lost.wait_for(|lost| *lost) => None,
                        };
                        let Some(Ok(delivery)) = delivery else { break };
                        if tx.send(delivery).await.is_err() {
                            break;
                        }
                    }
                });
                *f = Feed {
                    generation: link.generation,
                    rx,
                };
            }
        }
        Ok(feed)
    }

    async fn take(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<StoredMessage>, QueueError> {
        let deliveries = if self.opts.consumed.iter().any(|q| q == queue) {
            self.consume(queue, max, wait).await?
        } else {
            self.get(queue, max, wait).await?
        };
        let mut leases = lock(&self.leases);
        Ok(deliveries
            .into_iter()
            .map(|d| {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                leases.insert(
                    id,
                    Lease {
                        queue: queue.to_string(),
                        acker: d.acker,
                    },
                );
                StoredMessage {
                    id,
                    queue: queue.to_string(),
                    body: decoded(queue, &d.properties, d.data),
                    not_before_ms: 0,
                }
            })
            .collect())
    }

    /// Up to `max` messages with basic.get, polling until one comes or `wait`
    /// passes: for queues read now and then (the HTTP API's pop), where a
    /// standing consumer would hold `rabbitmq-prefetch` messages away from
    /// the programs that consume them.
    async fn get(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let link = self.current()?;
        link.declare(&self.opts, queue).await?;
        let ch = link.publisher();
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        while out.len() < max.max(1) {
            match link
                .run("basic.get", ch.basic_get(queue.into(), BasicGetOptions::default()))
                .await?
            {
                Some(m) => out.push(m.delivery),
                None if out.is_empty() && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// Up to `max` messages from the queue's standing consumer.
    async fn consume(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let feed = self.feed(queue).await?;
        let mut f = feed.lock().await;
        let first = match tokio::time::timeout(wait, f.rx.recv()).await {
            Ok(Some(d)) => d,
            // The consumer ended (connection lost): the next call starts a new one.
            Ok(None) => {
                f.generation = 0;
                return Ok(Vec::new());
            }
            Err(_) => return Ok(Vec::new()),
        };
        let mut deliveries = vec![first];
        while deliveries.len() < max.max(1) {
            match f.rx.try_recv() {
                Ok(d) => deliveries.push(d),
                Err(_) => break,
            }
        }
        Ok(deliveries)
    }

    fn lease(&self, id: u64) -> Option<Lease> {
        lock(&self.leases).remove(&id)
    }

    async fn settle(&self, publish: Vec<NewMessage>, ack: Vec<u64>) -> Result<(), QueueError> {
        self.publish(publish).await?;
        for id in ack {
            let Some(lease) = self.lease(id) else { continue };
            if link::bounded("basic.ack", lease.acker.ack(BasicAckOptions::default()))
                .await
                .is_err()
            {
                // Its channel is gone, so the broker requeued it: it will be handed out again.
                let n = self.duplicates.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(queue = %lease.queue, duplicates = n, "outcome stored but the message could not be acked (connection lost); it will be delivered again");
            }
        }
        Ok(())
    }

    async fn release(&self, ids: Vec<u64>) -> Result<(), QueueError> {
        for id in ids {
            if let Some(lease) = self.lease(id) {
                let nack = lease.acker.nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                });
                // A lost channel requeues it anyway.
                let _ = link::bounded("basic.nack", nack).await;
            }
        }
        Ok(())
    }

    /// Reads messages without keeping them: basic.get on a channel that is
    /// then closed, which puts them back (marked redelivered).
    async fn peek(&self, queue: &str, max: usize) -> Result<Vec<StoredMessage>, QueueError> {
        let link = self.current()?;
        let ch = link
            .run("channel.open", link.consumer_connection().create_channel())
            .await?;
        let mut out = Vec::new();
        while out.len() < max {
            match link
                .run("basic.get", ch.basic_get(queue.into(), BasicGetOptions::default()))
                .await
            {
                Ok(Some(m)) => out.push(StoredMessage {
                    id: 0,
                    queue: queue.to_string(),
                    body: decoded(queue, &m.delivery.properties, m.delivery.data),
                    not_before_ms: 0,
                }),
                Ok(None) | Err(_) => break,
            }
        }
        let _ = link.run("channel.close", ch.close(200, "peeked".into())).await;
        Ok(out)
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, QueueError> {
        let link = self.current()?;
        let mut names: Vec<String> = lock(&link.declared).iter().cloned().collect();
        names.sort();
        let mut counts = HashMap::new();
        for name in &names {
            // A passive declare answers with the count; a failure closes the channel, hence one each.
            let ch = link
                .run("channel.open", link.consumer_connection().create_channel())
                .await?;
            let passive = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            if let Ok(q) = link
                .run(
                    "queue.declare",
                    ch.queue_declare(name.as_str().into(), passive, FieldTable::default()),
                )
                .await
            {
                counts.insert(name.clone(), u64::from(q.message_count()));
            }
            let _ = link.run("channel.close", ch.close(200, "stats".into())).await;
        }
        let buffered: HashMap<String, u64> = {
            let feeds = lock(&self.feeds);
            feeds
                .iter()
                .filter_map(|(q, f)| f.try_lock().ok().map(|f| (q.clone(), f.rx.len() as u64)))
                .collect()
        };
        let leases = lock(&self.leases);
        let mut out = Vec::new();
        for name in names.iter().filter(|n| !n.starts_with("sluice.delay.")) {
            let prefix = format!("sluice.delay.{name}.");
            let delayed = counts
                .iter()
                .filter(|(k, _)| k.strip_prefix(&prefix).is_some_and(|s| s.parse::<u64>().is_ok()))
                .map(|(_, v)| v)
                .sum();
            out.push(QueueStats {
                name: name.clone(),
                ready: counts.get(name).copied().unwrap_or(0),
                delayed,
                // Taken, plus prefetched by this instance's consumer and not yet taken.
                leased: leases.values().filter(|l| &l.queue == name).count() as u64
                    + buffered.get(name).copied().unwrap_or(0),
            });
        }
        Ok(out)
    }
}

impl Queue for RabbitMq {
    fn publish(&self, messages: Vec<NewMessage>) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(self.inner.publish(messages))
    }

    fn take<'a>(
        &'a self,
        queue: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<StoredMessage>, QueueError>> {
        Box::pin(self.inner.take(queue, max, wait))
    }

    fn settle(&self, publish: Vec<NewMessage>, ack: Vec<u64>) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(self.inner.settle(publish, ack))
    }

    fn release(&self, ids: Vec<u64>) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(self.inner.release(ids))
    }

    fn peek<'a>(&'a self, queue: &'a str, max: usize) -> BoxFuture<'a, Result<Vec<StoredMessage>, QueueError>> {
        Box::pin(self.inner.peek(queue, max))
    }

    fn stats(&self) -> BoxFuture<'_, Result<Vec<QueueStats>, QueueError>> {
        Box::pin(self.inner.stats())
    }

    fn available(&self) -> bool {
        self.inner.current().is_ok()
    }

    fn duplicates(&self) -> u64 {
        self.inner.duplicates.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_buckets_round_down_to_powers_of_two() {
        assert_eq!(delay_bucket(0), 1);
        assert_eq!(delay_bucket(1_500), 1);
        assert_eq!(delay_bucket(300_000), 256);
        assert_eq!(delay_bucket(512_000), 512);
        assert_eq!(delay_bucket(u64::MAX / 2), 1 << 17);
    }
}
