//! What the console shows, as data: `GET /v1/overview` (now, and the last
//! hour second by second) and `GET /v1/live`, a Server-Sent Events stream of
//! the same every second. Both behind the API's authentication.

use super::{ApiError, ApiState};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One second of traffic: what happened in it.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Sample {
    /// Unix seconds at its end.
    pub t: u64,
    pub received: u64,
    pub delivered: u64,
    pub failed: u64,
    pub retried: u64,
}

/// The last hour, a sample a second.
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

const HOUR: usize = 3600;

impl History {
    pub fn new() -> Arc<History> {
        Arc::new(History {
            samples: Mutex::new(VecDeque::with_capacity(HOUR)),
        })
    }

    fn push(&self, s: Sample) {
        let mut samples = sluice_queue::lock(&self.samples);
        if samples.len() == HOUR {
            samples.pop_front();
        }
        samples.push_back(s);
    }

    fn all(&self) -> Vec<Sample> {
        sluice_queue::lock(&self.samples).iter().copied().collect()
    }

    fn last(&self) -> Option<Sample> {
        sluice_queue::lock(&self.samples).back().copied()
    }
}

/// The totals so far, from the metrics.
fn totals() -> Sample {
    let t = &crate::metrics::get().totals;
    Sample {
        t: sluice_queue::now_ms() / 1000,
        received: t.received.load(Ordering::Relaxed),
        delivered: t.delivered.load(Ordering::Relaxed),
        failed: t.failed.load(Ordering::Relaxed),
        retried: t.retried.load(Ordering::Relaxed),
    }
}

/// Takes a sample every second into `history` until `stop` is set.
pub async fn sample_every_second(history: Arc<History>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut before = totals();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::shutdown::requested(&mut stop) => return,
        }
        let now = totals();
        history.push(Sample {
            t: now.t,
            received: now.received - before.received,
            delivered: now.delivered - before.delivered,
            failed: now.failed - before.failed,
            retried: now.retried - before.retried,
        });
        before = now;
    }
}

/// The state now: queues, totals, connections, messages in flight, the last second.
async fn now(api: &super::Api) -> Value {
    let m = crate::metrics::get();
    let queues = match api.writer.queue.stats().await {
        Ok(stats) => json!(stats
            .iter()
            .take(64)
            .map(|q| json!({"name": q.name, "ready": q.ready, "delayed": q.delayed, "leased": q.leased}))
            .collect::<Vec<_>>()),
        Err(e) => json!({"error": e.to_string()}),
    };
    m.read_in_flight();
    let open = |direction| {
        m.connections
            .get_or_create(&crate::metrics::Direction { direction })
            .get()
    };
    json!({
        "queues": queues,
        "totals": totals(),
        "connections": {"inbound": open("inbound"), "outbound": open("outbound")},
        "in_flight": m.in_flight.get(),
        "last_second": api.history.last(),
    })
}

/// `GET /v1/overview`: the state now and the last hour.
pub async fn overview(axum::extract::State(api): ApiState) -> Result<Json<Value>, ApiError> {
    let mut out = now(&api).await;
    out["history"] = json!(api.history.all());
    Ok(Json(out))
}

/// `GET /v1/live`: an `overview` event every second, until the client goes or Sluice stops.
pub async fn live(
    axum::extract::State(api): ApiState,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let stop = api.shutdown.clone();
    let stream = futures_util::stream::unfold((api, tick, stop), |(api, mut tick, mut stop)| async move {
        tokio::select! {
            _ = tick.tick() => {}
            // A stream that never ended would hold the HTTP server's graceful shutdown.
            _ = crate::shutdown::requested(&mut stop) => return None,
        }
        let data = now(&api).await.to_string();
        Some((Ok(Event::default().event("overview").data(data)), (api, tick, stop)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
