//! The dispatcher: takes outbox messages as fast as destinations can take
//! them, never more than [`MAX_IN_FLIGHT`] (and [`MAX_IN_FLIGHT_BYTES`]) at
//! once, so memory stays bounded with millions queued; settles what needs no
//! connection; looks up MX hosts, so domains with the same MX hosts become
//! one destination; and hands each message to the worker that owns its
//! destination.
//!
//! Its limits and its clock are [`Limits`], so tests run it in-process with
//! small limits and a clock of their own (`tests` below).

use super::mx::{Dns, MxSet};
use super::outcome;
use super::outgoing::Outgoing;
use super::{Engine, InFlight, Job, Next, Route};
use sluice_queue::{now_ms, NewMessage, StoredMessage};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

/// How much the dispatcher holds, and what time it is.
#[derive(Clone)]
pub struct Limits {
    /// Messages taken from the outbox and not yet settled, all destinations.
    pub in_flight: usize,
    /// Of those, at most this many for one destination: a slow one cannot
    /// take the capacity the others need.
    pub per_destination: usize,
    /// And at most this many bytes of messages (so large messages cannot add
    /// up to gigabytes).
    pub in_flight_bytes: usize,
    /// A message for a destination at its limit waits this long in the outbox.
    pub defer: Duration,
    /// Unix milliseconds now: for due times, deadlines and deferrals.
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            in_flight: 20_000,
            per_destination: 5_000,
            in_flight_bytes: 512 << 20,
            defer: Duration::from_secs(5),
            clock: Arc::new(now_ms),
        }
    }
}
const BATCH: usize = 512;
/// Bytes taken in one batch, at most (the batch shrinks for large messages).
const BATCH_BYTES: usize = 16 << 20;
/// How long a batch waits for its MX lookups.
const LOOKUP_WAIT: Duration = Duration::from_millis(300);

/// A message that will be attempted, with its place in the limits.
struct Ready {
    stored: StoredMessage,
    msg: Outgoing,
    route: Route,
    permit: InFlight,
}

/// The dispatcher's state between batches.
struct Dispatcher {
    engine: Arc<Engine>,
    lanes: Vec<mpsc::UnboundedSender<Job>>,
    hasher: std::collections::hash_map::RandomState,
    /// MX lookups (None with `smtp-sink-ip`: destinations stay per domain).
    dns: Option<Arc<Dns>>,
    limits: Limits,
}

/// Runs the dispatcher until shutdown.
pub async fn run(engine: Arc<Engine>, lanes: Vec<mpsc::UnboundedSender<Job>>, limits: Limits) {
    let in_flight = Arc::new(Semaphore::new(limits.in_flight));
    let max_kib = limits.in_flight_bytes >> 10;
    let kib = Arc::new(Semaphore::new(max_kib));
    let d = Dispatcher {
        engine: engine.clone(),
        lanes,
        hasher: std::collections::hash_map::RandomState::new(),
        dns: engine.dns.clone(),
        limits,
    };
    let mut stop = engine.shutdown.clone();
    let mut average = 4096usize;
    let mut unreadable = false;
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
            Ok(t) => {
                if unreadable {
                    tracing::info!("the outbox can be read again");
                    unreadable = false;
                }
                t
            }
            Err(e) => {
                // Once per outage, not once a second while a broker is down.
                if !unreadable {
                    tracing::error!(error = %e, "cannot read the outbox; retrying every second");
                    unreadable = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let count = taken.len();
        if let Some(avg) = taken.iter().map(|m| m.body.len()).sum::<usize>().checked_div(count) {
            average = avg.max(1);
        }
        let mut first = Some(first);
        let mut ready = Vec::with_capacity(count);
        for stored in taken {
            // Room was made for the whole batch; waiting here only happens on the byte budget.
            let slot = match first.take() {
                Some(p) => Ok(p),
                None => in_flight.clone().acquire_owned().await,
            };
            let size = ((stored.body.len() >> 10) + 1).min(max_kib) as u32;
            let (Ok(slot), Ok(bytes)) = (slot, kib.clone().acquire_many_owned(size).await) else {
                break;
            };
            if let Some(r) = d.prepare(stored, InFlight::new(slot, bytes)) {
                ready.push(r);
            }
        }
        let ready = d.load(ready).await;
        let mut deferred = 0;
        for r in d.resolve(ready).await {
            if !d.hand_out(r) {
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

impl Dispatcher {
    /// Settles what cannot or need not be attempted now (invalid, not yet
    /// due, expired); returns the rest with their unresolved route.
    fn prepare(&self, stored: StoredMessage, permit: InFlight) -> Option<Ready> {
        let engine = &self.engine;
        let now = (self.limits.clock)();
        let msg = match Outgoing::parse(&stored.body, engine.defaults, now) {
            Ok(m) => m,
            Err(why) => {
                let out = outcome::invalid(&engine.policy, &stored.body, &why.to_string(), now);
                settle_now(engine, stored.id, out.publish, permit);
                return None;
            }
        };
        // `delayed` set by the producer (the store only knows its own not-before).
        if let Some(due) = msg.delayed_ms {
            // Never early: a message due within the second waits that second too.
            if due > now && stored.not_before_ms < due {
                let again = NewMessage {
                    queue: stored.queue,
                    body: stored.body,
                    not_before_ms: due,
                };
                settle_now(engine, stored.id, vec![again], permit);
                return None;
            }
        }
        let suppressions = engine.settings.suppressions();
        if !suppressions.is_empty() {
            if let Some(s) = suppressions.lookup(&msg.recipient.to_string()) {
                let attempt = outcome::suppressed(s.code, &s.extended, &s.description);
                engine.conclude(stored.id, msg, None, permit, &attempt);
                return None;
            }
        }
        // MailerQ's IP pools: the message's `pool` names its IPs unless it
        // has `ips`. Without pools in the database a `pool` is only kept (as
        // before pools existed), so producers that always send one still deliver.
        let mut msg = msg;
        if msg.ips.is_none() {
            if let Some(pool) = msg
                .json
                .get("pool")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
            {
                match engine.settings.pool(&pool) {
                    None => {}
                    Some(Some(ips)) if !ips.is_empty() => msg.ips = Some(ips),
                    Some(found) => {
                        let attempt = outcome::no_pool(&pool, found.is_some());
                        engine.conclude(stored.id, msg, None, permit, &attempt);
                        return None;
                    }
                }
            }
        }
        if msg.ips.as_ref().is_some_and(Vec::is_empty) {
            engine.conclude(stored.id, msg, None, permit, &outcome::no_ips());
            return None;
        }
        if !msg.may_try(msg.attempts, now) {
            let attempt = outcome::expiry(&msg);
            engine.conclude(stored.id, msg, None, permit, &attempt);
            return None;
        }
        let route = engine.route(&msg);
        Some(Ready {
            stored,
            msg,
            route,
            permit,
        })
    }

    /// Reads the MIME of the messages that carry a `key` and no `mime` from
    /// the message store, `storage-threads` at a time, off the runtime. A
    /// key the store does not have ends its message with `storage/error`
    /// (final); a store that cannot be read now sends the message back to
    /// the outbox for `storage-reschedule`, not counted as an attempt.
    /// Without a store the key is left for a plugin (`mq_smtp_out_data`).
    async fn load(&self, ready: Vec<Ready>) -> Vec<Ready> {
        use super::outcome::{Attempt, ResultKind, State};
        let Some(store) = &self.engine.store else { return ready };
        let key_of = |r: &Ready| match r.msg.mime() {
            Some(_) => None,
            None => r.msg.json.get("key").and_then(|k| k.as_str()).map(str::to_string),
        };
        if !ready.iter().any(|r| key_of(r).is_some()) {
            return ready;
        }
        let threads = Arc::new(Semaphore::new(store.threads.max(1)));
        let mut reads = tokio::task::JoinSet::new();
        let mut waiting = Vec::new();
        let mut out = Vec::with_capacity(ready.len());
        for r in ready {
            let Some(key) = key_of(&r) else {
                out.push(r);
                continue;
            };
            let (store, threads, at, k) = (store.clone(), threads.clone(), waiting.len(), key.clone());
            reads.spawn(async move {
                let _thread = threads.acquire_owned().await;
                let got = tokio::task::spawn_blocking(move || store.get(&k)).await;
                (at, got.unwrap_or_else(|e| Err(std::io::Error::other(e.to_string()))))
            });
            waiting.push(Some((r, key)));
        }
        while let Some(done) = reads.join_next().await {
            let Ok((at, got)) = done else { continue };
            let Some((mut r, key)) = waiting.get_mut(at).and_then(Option::take) else {
                continue;
            };
            if store.note_read(got.is_ok()) {
                match &got {
                    Ok(_) => tracing::info!("the message store can be read again"),
                    Err(e) => tracing::error!(
                        error = %e,
                        reschedule_s = store.reschedule.as_secs(),
                        "cannot read the message store; its messages wait storage-reschedule"
                    ),
                }
            }
            match got {
                Ok(Some(mime)) => {
                    let mime =
                        String::from_utf8(mime).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                    r.msg.json.insert("mime".into(), mime.into());
                    out.push(r);
                }
                Ok(None) => {
                    let attempt = Attempt::failed(
                        State::Storage,
                        ResultKind::Error,
                        format!("key `{}` is not in the message store", sluice_smtp::wire::shown(&key)),
                        true,
                    );
                    self.engine.conclude(r.stored.id, r.msg, None, r.permit, &attempt);
                }
                Err(_) => {
                    let again = NewMessage {
                        queue: r.stored.queue,
                        body: r.stored.body,
                        not_before_ms: (self.limits.clock)() + store.reschedule.as_millis() as u64,
                    };
                    settle_now(&self.engine, r.stored.id, vec![again], r.permit);
                }
            }
        }
        out
    }

    /// Turns `Next::Domain` into the domain's MX set, looking up each domain
    /// of the batch once and all of them at the same time. A domain that has
    /// no usable MX ends its messages here with `dns/error`.
    async fn resolve(&self, ready: Vec<Ready>) -> Vec<Ready> {
        let Some(dns) = &self.dns else { return ready };
        let mut lookups = tokio::task::JoinSet::new();
        // None until its lookup answered.
        let mut domains: HashMap<String, Option<MxSet>> = HashMap::new();
        for r in &ready {
            if let Next::Domain(domain) = &r.route.next {
                if !domains.contains_key(domain) {
                    domains.insert(domain.clone(), None);
                    let (dns, domain) = (dns.clone(), domain.clone());
                    lookups.spawn(async move {
                        let set = dns.mx(&domain).await;
                        (domain, set)
                    });
                }
            }
        }
        // A domain whose DNS is slow must not hold up the batch: its messages
        // go on with the domain unresolved. Its lookup goes on in the shared
        // resolver, and the destination's connection joins it (`mx::Dns`).
        let deadline = tokio::time::Instant::now() + LOOKUP_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, lookups.join_next()).await {
                Ok(Some(Ok((domain, set)))) => {
                    domains.insert(domain, Some(set));
                }
                Ok(Some(Err(_))) => {}
                Ok(None) => break,
                // Dropping the set stops only the waiting here, not the lookups.
                Err(_) => break,
            }
        }
        let mut out = Vec::with_capacity(ready.len());
        for mut r in ready {
            let Next::Domain(domain) = &r.route.next else {
                out.push(r);
                continue;
            };
            match domains.get(domain) {
                Some(Some(Ok(set))) => {
                    r.route.next = Next::Mx(set.clone());
                    if self.engine.settings.mx_delegates() {
                        let hosts = super::destination::mx_hosts(&r.route);
                        r.route.local = self.engine.delegate_by_mx(&r.msg, &hosts);
                    }
                    out.push(r);
                }
                Some(Some(Err(e))) => {
                    let attempt = super::connect::dns_failure(e);
                    self.engine.conclude(r.stored.id, r.msg, None, r.permit, &attempt);
                }
                // Not answered in time: the domain's own connection looks it up.
                _ => out.push(r),
            }
        }
        out
    }

    /// Hands a message to its destination's worker; returns false when the
    /// destination is full and the message was deferred.
    fn hand_out(&self, r: Ready) -> bool {
        let Ready {
            stored,
            msg,
            route,
            permit,
        } = r;
        let engine = &self.engine;
        // The policy's queue_size for the message's domain, within the dispatcher's own cap.
        let cap = {
            let to = sluice_shaping::Destination::new(route.local, &msg.domain);
            let hosts = super::destination::mx_hosts(&route);
            let mut shaper = sluice_queue::lock(&engine.shaper);
            let limits = shaper.limits(&to, &hosts, std::time::Instant::now());
            limits.queue_size.value.map_or(self.limits.per_destination, |n| {
                (n as usize).min(self.limits.per_destination)
            })
        };
        if !engine.admit(&route, cap) {
            let again = NewMessage {
                queue: stored.queue,
                body: stored.body,
                not_before_ms: (self.limits.clock)() + self.limits.defer.as_millis() as u64,
            };
            settle_now(engine, stored.id, vec![again], permit);
            return false;
        }
        let lane = (self.hasher.hash_one(&route) as usize) % self.lanes.len();
        let job = Job {
            id: stored.id,
            msg,
            route,
            permit,
        };
        if let Err(mpsc::error::SendError(job)) = self.lanes[lane].send(job) {
            // The worker is gone (shutdown): the message stays leased and is due again after a restart.
            engine.forget(&job.route);
        }
        true
    }
}

fn settle_now(engine: &Arc<Engine>, id: u64, publish: Vec<NewMessage>, permit: InFlight) {
    let engine = engine.clone();
    tokio::spawn(async move {
        engine.settle(id, publish).await;
        drop(permit);
    });
}

#[cfg(test)]
mod tests;
