//! The instances sharing a broker (MailerQ's cluster view): every instance
//! publishes a small card about itself to the fanout exchange
//! [`EXCHANGE`] every few seconds and reads everybody's through a private,
//! exclusive queue. Cards are opaque bytes here (the daemon writes and
//! checks them); they are not persistent and expire in the broker.

use super::link::bounded;
use super::Inner;
use crate::lock;
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The exchange the cards go through.
pub const EXCHANGE: &str = "sluice.cluster";

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

impl super::RabbitMq {
    /// Publishes `card` as instance `id` every `every`, and gathers the
    /// others' cards (this instance's own included) into the answer, for
    /// as long as the backend runs; reconnects with the backend.
    pub fn announce(&self, id: String, card: Vec<u8>, every: Duration) -> Arc<Peers> {
        let peers = Arc::new(Peers::default());
        if let Some(rt) = &self.rt {
            rt.spawn(keep_announcing(self.inner.clone(), id, card, every, peers.clone()));
        }
        peers
    }
}

async fn keep_announcing(inner: Arc<Inner>, id: String, card: Vec<u8>, every: Duration, peers: Arc<Peers>) {
    loop {
        if let Err(e) = announce_on_link(&inner, &id, &card, every, &peers).await {
            tracing::debug!(error = %e, "cluster announcements: link not ready; trying again");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Announces on the current link until it is lost or the channel fails.
async fn announce_on_link(
    inner: &Inner,
    id: &str,
    card: &[u8],
    every: Duration,
    peers: &Peers,
) -> Result<(), crate::QueueError> {
    let link = inner.current()?;
    let ch = link
        .run("channel.open", link.consumer_connection().create_channel())
        .await?;
    let exchange = ExchangeDeclareOptions {
        durable: false,
        auto_delete: true,
        ..Default::default()
    };
    link.run(
        "exchange.declare",
        ch.exchange_declare(EXCHANGE.into(), ExchangeKind::Fanout, exchange, FieldTable::default()),
    )
    .await?;
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
            EXCHANGE.into(),
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
    let mut tick = tokio::time::interval(every);
    let mut lost = link.lost();
    // Stale after three missed announcements.
    let expiry = (every.as_millis() * 3).to_string();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let props = BasicProperties::default()
                    .with_app_id(id.into())
                    .with_content_type("application/json".into())
                    .with_expiration(expiry.as_str().into());
                bounded("basic.publish", ch.basic_publish(EXCHANGE.into(), "".into(), BasicPublishOptions::default(), card, props)).await?;
            }
            got = cards.next() => match got {
                Some(Ok(d)) => {
                    let sender = d.properties.app_id().as_ref().map(|a| a.as_str().to_string()).unwrap_or_default();
                    peers.note(&sender, &d.data);
                }
                _ => return Err(crate::QueueError::Unavailable("cluster consumer ended".into())),
            },
            _ = lost.changed() => return Ok(()),
        }
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
}
