//! Reception: turning a received message into stored queue messages, one
//! step for every way mail comes in (SMTP, HTTP, the spool directory and
//! the command line) — Postfix's cleanup. It builds the per-recipient JSON
//! (`message`), keeps bodies within `reception-memory` (`budget`), sends
//! local reports to their queue with their facts (`report`), stores the
//! copies durably in bounded groups ([`Publisher`]) and writes the
//! received-log (`log`).

pub mod budget;
pub mod log;
pub mod message;
pub mod report;

use crate::stamp::IdGenerator;
use sluice_queue::Queue;
use std::sync::Arc;

/// Where received mail goes: the queues, the message-id generator, the
/// received-log and the reception memory budget; shared by SMTP and HTTP.
#[derive(Clone)]
pub struct Writer {
    pub queue: Arc<dyn Queue>,
    pub ids: Arc<IdGenerator>,
    pub log: Arc<log::ReceivedLog>,
    /// `reception-memory`: bytes of bodies SMTP and HTTP hold together.
    pub budget: Arc<budget::Budget>,
    /// The settings database's `locals`: recipients whose copies go to the local queue.
    pub locals: Arc<std::sync::RwLock<Arc<sluice_policy::Locals>>>,
    /// The message store, when received MIME goes there (`storage-policy` all or in).
    pub store: Option<Arc<crate::message_store::MessageStore>>,
}

/// Where a reception's copies go: the queue, and the local queue for copies
/// a check routed there (`MQ_setLocal`).
pub struct Queues<'a> {
    pub main: &'a str,
    pub local: &'a str,
    /// Local copies of a DSN, ARF or DMARC report (`rabbitmq-reports`).
    pub reports: &'a str,
}

/// What a check (the plugins' `mq_smtp_in_message`) decided for one copy.
pub enum Verdict {
    /// Store it, as changed; in the local queue when `local`.
    Keep {
        json: serde_json::Map<String, serde_json::Value>,
        local: bool,
    },
    /// Leave it out; the reply says why (it answers the sender when every
    /// copy was left out).
    Drop(sluice_smtp::Reply),
}

/// What was stored: `(message-id, recipient)` per stored copy, and the last
/// reason a copy was left out.
#[derive(Debug, Default)]
pub struct Stored {
    pub copies: Vec<(String, String)>,
    pub dropped: Option<sluice_smtp::Reply>,
}

/// Why a reception was not (completely) stored.
#[derive(Debug)]
pub enum Failure {
    /// The check could not decide (a plugin timed out): answer this.
    Check(sluice_smtp::Reply),
    /// The queue refused the copies.
    Queue(sluice_queue::QueueError),
}

/// Receives a message: one JSON copy per recipient with its own message-id,
/// each passed through `check`, stored durably (then logged). Copies stored
/// before a failure stay stored (see [`Publisher`]).
pub async fn receive(
    writer: &Writer,
    reception: message::Reception,
    recipients: &[message::Recipient],
    queues: Queues<'_>,
    mut check: impl AsyncFnMut(
        serde_json::Map<String, serde_json::Value>,
        &message::Prepared,
    ) -> Result<Verdict, sluice_smtp::Reply>,
) -> Result<Stored, Failure> {
    let mut prepared = message::prepare(reception);
    if let Some(store) = writer.store.clone().filter(|s| s.policy.inbound()) {
        // A message id: unique across instances (server-id), a valid storage key.
        let key = writer.ids.next();
        let mime = prepared.mime().to_string();
        let put = {
            let key = key.clone();
            tokio::task::spawn_blocking(move || store.put(&key, mime.as_bytes(), store.deadline_ms())).await
        };
        match put {
            Ok(Ok(())) => prepared.stored_as(key),
            // The queue can take the MIME itself: better than refusing the mail.
            Ok(Err(e)) => tracing::warn!(error = %e, "message store: MIME kept in the queue"),
            Err(e) => tracing::warn!(error = %e, "message store: MIME kept in the queue"),
        }
    }
    let locals = writer.locals.read().unwrap_or_else(|e| e.into_inner()).clone();
    let mut out = Publisher::new(writer);
    let mut stored = Stored::default();
    // Read once, and only when a copy is local: reports are local mail.
    let mut report: Option<Option<serde_json::Value>> = None;
    for rcpt in recipients {
        let id = writer.ids.next();
        let json = prepared.recipient(rcpt, &id);
        match check(json, &prepared).await.map_err(Failure::Check)? {
            Verdict::Drop(reply) => stored.dropped = Some(reply),
            Verdict::Keep { json, local } => {
                let local = local || locals.is_local(&rcpt.address);
                let mut json = json;
                let queue = if !local {
                    queues.main
                } else if let Some(facts) = report
                    .get_or_insert_with(|| report::read(prepared.mime().as_bytes()))
                    .clone()
                {
                    json.insert("report".into(), facts);
                    queues.reports
                } else {
                    queues.local
                };
                out.add(queue, &prepared, json).await.map_err(Failure::Queue)?;
                stored.copies.push((id, rcpt.address.clone()));
            }
        }
    }
    out.finish().await.map_err(Failure::Queue)?;
    Ok(stored)
}

/// A reception without checks (HTTP `/submit`): every copy in the main
/// queue, or the local one for a recipient in `locals`; returns the message ids.
pub async fn store(
    writer: &Writer,
    queues: Queues<'_>,
    reception: message::Reception,
    recipients: &[message::Recipient],
) -> Result<Vec<String>, sluice_queue::QueueError> {
    let keep = async |json, _: &message::Prepared| Ok(Verdict::Keep { json, local: false });
    match receive(writer, reception, recipients, queues, keep).await {
        Ok(stored) => Ok(stored.copies.into_iter().map(|(id, _)| id).collect()),
        Err(Failure::Queue(e)) => Err(e),
        Err(Failure::Check(_)) => unreachable!("this check always decides"),
    }
}

/// Stores a reception's copies, in groups of about [`Publisher::GROUP`]
/// bytes, so a big message for many recipients is never held in memory
/// once per recipient. Each group is durable before the next is built; the
/// sender is answered only after the last. If a later group fails, earlier
/// copies stay queued and the sender, told to retry, sends them again
/// (at-least-once: duplicates, never loss).
pub struct Publisher<'a> {
    writer: &'a Writer,
    batch: Vec<sluice_queue::NewMessage>,
    bytes: usize,
    /// received-log lines of the batch, written once it is durable.
    lines: Vec<(String, serde_json::Map<String, serde_json::Value>)>,
}

impl<'a> Publisher<'a> {
    /// Bytes of JSON collected before a group is stored.
    pub const GROUP: usize = 16 << 20;

    pub fn new(writer: &'a Writer) -> Self {
        Publisher {
            writer,
            batch: Vec::new(),
            bytes: 0,
            lines: Vec::new(),
        }
    }

    /// Adds one copy for `queue`; stores the group when it is full.
    pub async fn add(
        &mut self,
        queue: &str,
        prepared: &message::Prepared,
        json: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), sluice_queue::QueueError> {
        let body = prepared
            .serialize(&json)
            .map_err(|e| sluice_queue::QueueError::Io(std::io::Error::other(e)))?;
        self.bytes += body.len();
        self.batch.push(sluice_queue::NewMessage::now(queue, body));
        if self.writer.log.enabled() || crate::trace::get().enabled() {
            let size = json
                .get("mime")
                .and_then(|m| m.as_str())
                .map_or(prepared.mime_len(), str::len);
            let mut line = json;
            line.remove("mime");
            line.insert("size".into(), size.into());
            self.lines.push((queue.to_string(), line));
        }
        if self.bytes >= Self::GROUP {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), sluice_queue::QueueError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.bytes = 0;
        self.writer.queue.publish(std::mem::take(&mut self.batch)).await?;
        for (queue, line) in self.lines.drain(..) {
            self.writer.log.record(&queue, line);
        }
        Ok(())
    }

    /// Stores what is left; all copies are durable when it returns `Ok`.
    pub async fn finish(mut self) -> Result<(), sluice_queue::QueueError> {
        self.flush().await
    }
}
