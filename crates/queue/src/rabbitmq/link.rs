//! The connections to the broker: opening them (hosts in turn), declaring
//! queues on them, and a supervisor that opens them again when one is lost.

use super::{unavailable, Inner, RabbitOptions};
use crate::{lock, QueueError};
use lapin::options::{ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One set of live connections.
pub(super) struct Link {
    pub(super) generation: u64,
    pub(super) publish: Vec<Channel>,
    /// The first `publish.len()` publish, the rest consume.
    pub(super) connections: Vec<Connection>,
    next: AtomicUsize,
    /// Queues declared (and bound) on this link.
    pub(super) declared: Mutex<HashSet<String>>,
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
                tracing::info!(host = %inner.uris[first_host % inner.uris.len()].rsplit('@').next().unwrap_or(""), "RabbitMQ connected");
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
                for c in &link.connections {
                    let _ = c.close(200, "reconnecting".into()).await;
                }
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

async fn connect(inner: &Inner, generation: u64, first_host: &mut usize) -> Result<Link, QueueError> {
    let n = inner.uris.len();
    let mut last = String::new();
    for i in 0..n {
        let uri = &inner.uris[(*first_host + i) % n];
        match open(inner, uri, generation).await {
            Ok(link) => {
                *first_host = (*first_host + i) % n;
                return Ok(link);
            }
            Err(QueueError::Unavailable(why)) => last = why,
            Err(e) => last = e.to_string(),
        }
    }
    Err(QueueError::Unavailable(last))
}

async fn open(inner: &Inner, uri: &str, generation: u64) -> Result<Link, QueueError> {
    let opts = &inner.opts;
    let mut connections = Vec::new();
    for _ in 0..opts.publishers.max(1) + opts.consumers.max(1) {
        let c = tokio::time::timeout(
            Duration::from_secs(5),
            Connection::connect(uri, ConnectionProperties::default()),
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
    };
    for q in &opts.queues {
        link.declare(opts, q).await?;
    }
    Ok(link)
}

impl Link {
    pub(super) fn publisher(&self) -> &Channel {
        &self.publish[self.next.fetch_add(1, Ordering::Relaxed) % self.publish.len()]
    }

    pub(super) fn consumer_connection(&self) -> &Connection {
        let consumers = &self.connections[self.publish.len()..];
        &consumers[self.next.fetch_add(1, Ordering::Relaxed) % consumers.len()]
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
        ch.queue_declare(queue.into(), options, FieldTable::default())
            .await
            .map_err(unavailable)?;
        if !opts.exchange.is_empty() {
            ch.queue_bind(
                queue.into(),
                opts.exchange.as_str().into(),
                queue.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
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
        self.publisher()
            .queue_declare(name.as_str().into(), options, args)
            .await
            .map_err(unavailable)?;
        lock(&self.declared).insert(name.clone());
        Ok(name)
    }
}
