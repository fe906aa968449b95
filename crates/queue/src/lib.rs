//! Sluice's queues: the backend-agnostic [`Queue`] trait and the embedded
//! durable store ([`EmbeddedStore`]), and the RabbitMQ backend ([`RabbitMq`]). Everything above this crate talks to a
//! `dyn Queue`, so the RabbitMQ backend can slot in beside the embedded one.
#![forbid(unsafe_code)]

pub mod credentials;
mod embedded;
mod index;
pub mod rabbitmq;
mod record;

pub use embedded::{EmbeddedStore, StoreOptions};
pub use rabbitmq::{RabbitMq, RabbitOptions};

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed future, so the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A message to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Queue name, e.g. `outbox`.
    pub queue: String,
    /// The message (MailerQ JSON, but the store does not look inside).
    pub body: Vec<u8>,
    /// Not handed out before this time (unix milliseconds); 0 = now.
    pub not_before_ms: u64,
}

impl NewMessage {
    /// A message due now.
    pub fn now(queue: impl Into<String>, body: Vec<u8>) -> Self {
        NewMessage {
            queue: queue.into(),
            body,
            not_before_ms: 0,
        }
    }
}

/// A message read from a queue: either leased by `take` or seen by `peek`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Store-wide id; for a leased message, what `settle`/`release` take.
    pub id: u64,
    pub queue: String,
    pub body: Vec<u8>,
    pub not_before_ms: u64,
}

/// Counts for one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    pub name: String,
    /// Due now and not leased.
    pub ready: u64,
    /// Waiting for their `delayed` time.
    pub delayed: u64,
    /// Taken by a consumer, not yet acknowledged.
    pub leased: u64,
}

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Writing or syncing failed (disk full, I/O error): nothing was stored.
    #[error("queue storage error: {0}")]
    Io(#[from] std::io::Error),
    /// The store was closed.
    #[error("queue store is closed")]
    Closed,
    /// The backend is unreachable for now (RabbitMQ down): try again later.
    #[error("queue backend unavailable: {0}")]
    Unavailable(String),
}

/// The queues, wherever they live.
pub trait Queue: Send + Sync + 'static {
    /// Stores messages durably; resolves only once they are safe (fsync or broker confirm).
    fn publish(&self, messages: Vec<NewMessage>) -> BoxFuture<'_, Result<(), QueueError>>;

    /// Leases up to `max` due messages of `queue`, waiting up to `wait` for one to become due.
    fn take<'a>(
        &'a self,
        queue: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<StoredMessage>, QueueError>>;

    /// Atomically publishes `publish` and acknowledges (deletes) the leased `ack` ids;
    /// the publishes are durable before the acks take effect.
    fn settle(&self, publish: Vec<NewMessage>, ack: Vec<u64>) -> BoxFuture<'_, Result<(), QueueError>>;

    /// Returns leased messages to their queue, untouched.
    fn release(&self, ids: Vec<u64>) -> BoxFuture<'_, Result<(), QueueError>>;

    /// Reads up to `max` messages of `queue` in delivery order without leasing them.
    fn peek<'a>(&'a self, queue: &'a str, max: usize) -> BoxFuture<'a, Result<Vec<StoredMessage>, QueueError>>;

    /// Counts per queue that has or had messages.
    fn stats(&self) -> BoxFuture<'_, Result<Vec<QueueStats>, QueueError>>;

    /// Whether messages can be stored right now (false while a broker is
    /// unreachable), so receivers can refuse early instead of after DATA.
    fn available(&self) -> bool {
        true
    }

    /// Outcomes stored for messages that will be handed out again (their ack
    /// could not be delivered): the at-least-once duplicates so far.
    fn duplicates(&self) -> u64 {
        0
    }
}

/// Locks a mutex, going on after a panic elsewhere: what the locks here guard
/// (indexes, leases, declared names) is never left half-updated in a way that
/// loses stored data.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
