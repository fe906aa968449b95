//! The dispatcher: takes outbox messages as fast as destinations can take
//! them, never more than [`MAX_IN_FLIGHT`] at once (so memory stays bounded
//! with millions queued), and hands each to the worker that owns its
//! destination.

use super::outcome::{self, Outcome, Verdict};
use super::outgoing::{parse_time, Outgoing};
use super::{Engine, InFlight, Job};
use sluice_queue::{now_ms, NewMessage, StoredMessage};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

/// Messages taken from the outbox and not yet settled, all destinations.
pub const MAX_IN_FLIGHT: usize = 20_000;
/// Of those, at most this many for one destination: a slow one cannot take
/// the capacity the others need.
pub const MAX_PER_DESTINATION: usize = 5_000;
/// And at most this many bytes of messages (so large messages cannot add up
/// to gigabytes); counted in KiB.
pub const MAX_IN_FLIGHT_BYTES: usize = 512 << 20;
/// A message for a destination at its limit waits this long in the outbox.
const DEFER: Duration = Duration::from_secs(5);
const BATCH: usize = 512;
/// Bytes taken in one batch, at most (the batch shrinks for large messages).
const BATCH_BYTES: usize = 16 << 20;

pub async fn run(engine: Arc<Engine>, lanes: Vec<mpsc::UnboundedSender<Job>>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let kib = Arc::new(Semaphore::new(MAX_IN_FLIGHT_BYTES >> 10));
    let hasher = std::collections::hash_map::RandomState::new();
    let mut stop = engine.shutdown.clone();
    let mut average = 4096usize;
    loop {
        // Wait for room before taking anything.
        let first = tokio::select! {
            p = in_flight.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = crate::shutdown::requested(&mut stop) => break,
        };
        let room = (in_flight.available_permits() + 1)
            .min(BATCH)
            .min((BATCH_BYTES / average).max(1));
        let taken = tokio::select! {
            t = engine.queue.take(&engine.policy.outbox, room, Duration::from_secs(1)) => t,
            _ = crate::shutdown::requested(&mut stop) => break,
        };
        let taken = match taken {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox; retrying in a second");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let count = taken.len();
        if let Some(avg) = taken.iter().map(|m| m.body.len()).sum::<usize>().checked_div(count) {
            average = avg.max(1);
        }
        let mut first = Some(first);
        let mut deferred = 0;
        for stored in taken {
            // Room was made for the whole batch; waiting here only happens on the byte budget.
            let slot = match first.take() {
                Some(p) => Ok(p),
                None => in_flight.clone().acquire_owned().await,
            };
            let size = ((stored.body.len() >> 10) + 1).min(MAX_IN_FLIGHT_BYTES >> 10) as u32;
            let (Ok(slot), Ok(bytes)) = (slot, kib.clone().acquire_many_owned(size).await) else {
                break;
            };
            if !hand_out(&engine, &lanes, &hasher, stored, InFlight::new(slot, bytes)) {
                deferred += 1;
            }
        }
        if count > 0 && deferred == count {
            // Everything was for saturated destinations: let them drain.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tracing::debug!("dispatcher stopped");
}

/// Routes one message; returns false when it was deferred.
fn hand_out(
    engine: &Arc<Engine>,
    lanes: &[mpsc::UnboundedSender<Job>],
    hasher: &impl BuildHasher,
    stored: StoredMessage,
    permit: InFlight,
) -> bool {
    let now = now_ms();
    let received = now;
    let msg = match Outgoing::parse(&stored.body, engine.defaults, received) {
        Ok(m) => m,
        Err(why) => {
            let out = outcome::invalid(&engine.policy, &stored.body, &why.to_string(), now);
            settle_now(engine, stored.id, out.publish, permit);
            return true;
        }
    };
    // `delayed` set by the producer (the store only knows its own not-before).
    if let Some(due) = msg.json.get("delayed").and_then(|v| v.as_str()).and_then(parse_time) {
        if due > now + 1_000 && stored.not_before_ms < due {
            let again = NewMessage {
                queue: stored.queue,
                body: stored.body,
                not_before_ms: due,
            };
            settle_now(engine, stored.id, vec![again], permit);
            return true;
        }
    }
    if !msg.may_try(msg.attempts, now) {
        if engine.send_log.enabled() {
            let why = outcome::Attempt::failed("amqp", outcome::Kind::Timeout, "expired", true);
            engine
                .send_log
                .write(outcome::log_line(outcome::log_entry(&msg, &why, now), Verdict::Failed));
        }
        let Outcome { publish, .. } = outcome::expired(&engine.policy, msg, now);
        settle_now(engine, stored.id, publish, permit);
        return true;
    }
    let route = engine.route(&msg);
    if !engine.admit(&route, MAX_PER_DESTINATION) {
        let again = NewMessage {
            queue: stored.queue,
            body: stored.body,
            not_before_ms: now + DEFER.as_millis() as u64,
        };
        settle_now(engine, stored.id, vec![again], permit);
        return false;
    }
    let lane = (hasher.hash_one(&route) as usize) % lanes.len();
    let job = Job {
        id: stored.id,
        msg,
        route,
        permit,
    };
    if let Err(mpsc::error::SendError(job)) = lanes[lane].send(job) {
        // The worker is gone (shutdown): the message stays leased and is due again after a restart.
        engine.forget(&job.route);
    }
    true
}

/// Settles a message that needs no connection.
fn settle_now(engine: &Arc<Engine>, id: u64, publish: Vec<NewMessage>, permit: InFlight) {
    let engine = engine.clone();
    tokio::spawn(async move {
        engine.settle(id, publish).await;
        drop(permit);
    });
}
