//! The instances sharing a broker (MailerQ's cluster): every instance
//! publishes a small card about itself to the cluster exchange
//! (`cluster-exchange`, MailerQ's default `cluster`) every few seconds and
//! reads everybody's through a private, exclusive queue. Cards are opaque
//! bytes here (the daemon writes and checks them); they are not persistent
//! and expire in the broker. MailerQ's two instructions on that exchange
//! are obeyed: `{"reload": true}` (read the settings database now; Sluice
//! sends it after each change made through it) and `{"hello": true}`
//! (announce now).

use super::link::bounded;
use super::Inner;
use crate::lock;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The default `cluster-exchange` (MailerQ's).
pub const EXCHANGE: &str = "cluster";

/// A card larger than this is not kept (a hostile or broken publisher).
pub const MAX_CARD: usize = 4096;

/// At most this many other instances are kept.
pub const MAX_PEERS: usize = 256;

/// The cards seen, by sender id, with when each last came.
#[derive(Default)]
pub struct Peers {
    cards: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
}

impl Peers {
    /// The cards of the instances heard from within `fresh`, by sender id.
    pub fn seen(&self, fresh: Duration) -> Vec<(String, Vec<u8>, Duration)> {
        let mut cards = lock(&self.cards);
        cards.retain(|_, (_, at)| at.elapsed() < fresh);
        let mut out: Vec<_> = cards
            .iter()
            .map(|(id, (card, at))| (id.clone(), card.clone(), at.elapsed()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn note(&self, id: &str, card: &[u8]) {
        if id.is_empty() || id.len() > 64 || card.len() > MAX_CARD {
            return;
        }
        let mut cards = lock(&self.cards);
        if !cards.contains_key(id) && cards.len() >= MAX_PEERS {
            // Full: the stalest card goes.
            if let Some(stale) = cards.iter().min_by_key(|(_, (_, at))| *at).map(|(id, _)| id.clone()) {
                cards.remove(&stale);
            }
        }
        cards.insert(id.to_string(), (card.to_vec(), Instant::now()));
    }
}

/// This instance on the cluster: the others' cards, and a way to tell them.
pub struct Cluster {
    pub peers: Peers,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
}

impl Cluster {
    /// Publishes `body` to the cluster exchange (dropped when the link is
    /// down or 16 are waiting: these are hints, the database is the truth).
    pub fn tell(&self, body: Vec<u8>) {
        let _ = self.tx.try_send(body);
    }
}

/// What the announcing task needs.
pub struct Announce {
    pub exchange: String,
    pub id: String,
    pub card: Vec<u8>,
    pub every: Duration,
    /// Called on `{"reload": true}` from another instance.
    pub on_reload: Box<dyn Fn() + Send + Sync>,
}

impl super::RabbitMq {
    /// Publishes the card every `every` and gathers the others' cards (this
    /// instance's own included), for as long as the backend runs;
    /// reconnects with the backend.
    pub fn announce(&self, a: Announce) -> Arc<Cluster> {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let cluster = Arc::new(Cluster {
            peers: Peers::default(),
            tx,
        });
        if let Some(rt) = &self.rt {
            rt.spawn(keep_announcing(self.inner.clone(), a, rx, cluster.clone()));
        }
        cluster
    }
}

async fn keep_announcing(
    inner: Arc<Inner>,
    a: Announce,
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    cluster: Arc<Cluster>,
) {
    loop {
        if let Err(e) = announce_on_link(&inner, &a, &mut rx, &cluster.peers).await {
            tracing::debug!(error = %e, "cluster announcements: link not ready; trying again");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Announces on the current link until it is lost or the channel fails.
async fn announce_on_link(
    inner: &Inner,
    a: &Announce,
    outgoing: &mut tokio::sync::mpsc::Receiver<Vec<u8>>,
    peers: &Peers,
) -> Result<(), crate::QueueError> {
    let link = inner.current()?;
    let ch = link.exchange(&a.exchange, ExchangeKind::Fanout, true).await?;
    let private = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    let queue = link
        .run(
            "queue.declare",
            ch.queue_declare("".into(), private, FieldTable::default()),
        )
        .await?;
    link.run(
        "queue.bind",
        ch.queue_bind(
            queue.name().clone(),
            a.exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await?;
    let consume = BasicConsumeOptions {
        no_ack: true,
        exclusive: true,
        ..Default::default()
    };
    let mut cards = link
        .run(
            "basic.consume",
            ch.basic_consume(queue.name().clone(), "".into(), consume, FieldTable::default()),
        )
        .await?;
    let mut tick = tokio::time::interval(a.every);
    let mut lost = link.lost();
    // Stale after three missed announcements.
    let expiry = (a.every.as_millis() * 3).to_string();
    let publish = |body: &[u8]| {
        let props = BasicProperties::default()
            .with_app_id(a.id.as_str().into())
            .with_content_type("application/json".into())
            .with_expiration(expiry.as_str().into());
        let body = body.to_vec();
        let ch = ch.clone();
        let exchange = a.exchange.clone();
        async move {
            bounded(
                "basic.publish",
                ch.basic_publish(
                    exchange.as_str().into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    &body,
                    props,
                ),
            )
            .await
            .map(|_| ())
        }
    };
    loop {
        tokio::select! {
            _ = tick.tick() => publish(&a.card).await?,
            Some(body) = outgoing.recv() => publish(&body).await?,
            got = cards.next() => match got {
                Some(Ok(d)) => {
                    let sender = d.properties.app_id().as_ref().map(|a| a.as_str().to_string()).unwrap_or_default();
                    match instruction(&d.data) {
                        Some(Instruction::Reload) if sender != a.id => (a.on_reload)(),
                        Some(Instruction::Reload) => {}
                        Some(Instruction::Hello) => publish(&a.card).await?,
                        None => peers.note(&sender, &d.data),
                    }
                }
                _ => return Err(crate::QueueError::Unavailable("cluster consumer ended".into())),
            },
            _ = lost.changed() => return Ok(()),
        }
    }
}

/// MailerQ's cluster instructions.
#[derive(Debug, PartialEq)]
enum Instruction {
    Reload,
    Hello,
}

fn instruction(body: &[u8]) -> Option<Instruction> {
    if body.len() > MAX_CARD {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if v.get("reload") == Some(&serde_json::Value::Bool(true)) {
        Some(Instruction::Reload)
    } else if v.get("hello") == Some(&serde_json::Value::Bool(true)) {
        Some(Instruction::Hello)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_are_bounded_in_size_count_and_age() {
        let p = Peers::default();
        p.note("a", b"{}");
        p.note("", b"{}");
        p.note(&"x".repeat(65), b"{}");
        p.note("big", &vec![b' '; MAX_CARD + 1]);
        assert_eq!(p.seen(Duration::from_secs(60)).len(), 1);
        for i in 0..MAX_PEERS + 10 {
            p.note(&format!("n{i}"), b"{}");
        }
        assert_eq!(p.seen(Duration::from_secs(60)).len(), MAX_PEERS);
        assert!(
            p.seen(Duration::ZERO).is_empty(),
            "every card is older than no time at all"
        );
    }

    #[test]
    fn mailerqs_instructions_are_told_apart_from_cards() {
        assert_eq!(instruction(br#"{"reload": true}"#), Some(Instruction::Reload));
        assert_eq!(instruction(br#"{"hello": true}"#), Some(Instruction::Hello));
        assert_eq!(instruction(br#"{"reload": "yes"}"#), None);
        assert_eq!(instruction(br#"{"hostname": "a"}"#), None);
        assert_eq!(instruction(b"not json"), None);
    }
}
