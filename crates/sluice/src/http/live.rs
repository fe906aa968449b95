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
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError> {
    let slot = StreamSlot::take()?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let stop = api.shutdown.clone();
    let stream = futures_util::stream::unfold((api, tick, stop, slot), |(api, mut tick, mut stop, slot)| async move {
        tokio::select! {
            _ = tick.tick() => {}
            // A stream that never ended would hold the HTTP server's graceful shutdown.
            _ = crate::shutdown::requested(&mut stop) => return None,
        }
        let data = now(&api).await.to_string();
        Some((
            Ok(Event::default().event("overview").data(data)),
            (api, tick, stop, slot),
        ))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The most live streams open at once, all clients together: each holds a
/// task and, for results, a place in the broadcast.
pub const MAX_STREAMS: usize = 64;

static STREAMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One open live stream, counted until it ends.
struct StreamSlot;

impl StreamSlot {
    fn take() -> Result<StreamSlot, ApiError> {
        let before = STREAMS.fetch_add(1, Ordering::AcqRel);
        if before >= MAX_STREAMS {
            STREAMS.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!("{MAX_STREAMS} live streams are open already"),
            ));
        }
        Ok(StreamSlot)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        STREAMS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `GET /v1/destinations`: the 100 busiest destinations now — connections,
/// messages and connections of the last minute, flood effects with their
/// time left, whether a pause holds them, their last replies — and the 100
/// routes with most messages in flight.
pub async fn destinations(axum::extract::State(api): ApiState) -> Result<Json<Value>, ApiError> {
    let routes: Vec<Value> = crate::metrics::get()
        .in_flight_now(100)
        .0
        .into_iter()
        .map(|(route, n)| json!({"route": route, "in_flight": n}))
        .collect();
    let Some(db) = &api.settings else {
        return Ok(Json(json!({"destinations": [], "routes": routes})));
    };
    let now = std::time::Instant::now();
    let shaper = sluice_queue::lock(&db.live.shaper);
    let effects = shaper.effects(now);
    let left = |t: Option<std::time::Instant>| t.map(|t| t.saturating_duration_since(now).as_secs());
    let out: Vec<Value> = shaper
        .busiest(100, now)
        .into_iter()
        .map(|b| {
            let d = &b.destination;
            let flood: Vec<Value> = effects
                .iter()
                .filter(|(e, _)| e == d)
                .map(|(_, e)| json!({"rule": e.rule, "paused_seconds_left": left(e.paused_until), "reduced_seconds_left": left(e.reduced_until)}))
                .collect();
            let paused = shaper.pauses(now).any(|p| p.holds(d.localip, &d.domain, &[], None, &[], now));
            json!({
                "domain": d.domain,
                "localip": d.localip.map(|ip| ip.to_string()),
                "open_connections": b.open,
                "messages_last_minute": b.messages_last_minute,
                "connections_last_minute": b.connections_last_minute,
                "flood_effects": flood,
                "paused": paused,
                "recent_replies": recent_replies().of(&d.domain),
            })
        })
        .collect();
    Ok(Json(json!({"destinations": out, "routes": routes})))
}

/// What `/v1/results/live` passes on (each empty or absent filter passes all).
#[derive(Debug, Default, serde::Deserialize)]
pub struct ResultFilter {
    state: Option<String>,
    result: Option<String>,
    /// The recipient's domain (exactly, case aside).
    domain: Option<String>,
    /// A part of the recipient address (case aside).
    recipient: Option<String>,
}

/// The longest filter value taken: longer ones are refused, not cut.
const MAX_FILTER: usize = 320;

impl ResultFilter {
    fn checked(self) -> Result<ResultFilter, ApiError> {
        let tidy = |name: &str, v: Option<String>| -> Result<Option<String>, ApiError> {
            let Some(v) = v.map(|v| v.trim().to_ascii_lowercase()).filter(|v| !v.is_empty()) else {
                return Ok(None);
            };
            if v.len() > MAX_FILTER || v.chars().any(char::is_control) {
                return Err(ApiError(
                    axum::http::StatusCode::BAD_REQUEST,
                    format!("{name}: at most {MAX_FILTER} bytes, no control characters"),
                ));
            }
            Ok(Some(v))
        };
        Ok(ResultFilter {
            state: tidy("state", self.state)?,
            result: tidy("result", self.result)?,
            domain: tidy("domain", self.domain)?,
            recipient: tidy("recipient", self.recipient)?,
        })
    }

    fn passes(&self, e: &Value) -> bool {
        let field = |k: &str| e[k].as_str().unwrap_or("").to_ascii_lowercase();
        let recipient = field("recipient");
        let domain = recipient.rsplit_once('@').map_or("", |(_, d)| d);
        self.state.as_ref().is_none_or(|s| *s == field("state"))
            && self.result.as_ref().is_none_or(|r| *r == field("result"))
            && self.domain.as_ref().is_none_or(|d| d == domain)
            && self.recipient.as_ref().is_none_or(|r| recipient.contains(r.as_str()))
    }
}

/// At most this many results a second go to one live stream; the rest are
/// counted and reported (`skipped`), so a console open during a burst of
/// thousands a second costs neither the daemon nor the browser much.
pub const MAX_RESULTS_PER_SECOND: u32 = 100;

/// One `/v1/results/live` reader's state.
struct ResultsFeed {
    events: tokio::sync::broadcast::Receiver<std::sync::Arc<str>>,
    stop: tokio::sync::watch::Receiver<bool>,
    filter: ResultFilter,
    tick: tokio::time::Interval,
    sent: u32,
    skipped: u64,
    _slot: StreamSlot,
}

impl ResultFilter {
    fn is_empty(&self) -> bool {
        self.state.is_none() && self.result.is_none() && self.domain.is_none() && self.recipient.is_none()
    }
}

impl ResultsFeed {
    /// The next event to send, or None when the stream ends.
    async fn next(&mut self) -> Option<Event> {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let got = tokio::select! {
                got = self.events.recv() => got,
                _ = self.tick.tick() => {
                    self.sent = 0;
                    if self.skipped > 0 {
                        let n = std::mem::take(&mut self.skipped);
                        return Some(Event::default().event("skipped").data(n.to_string()));
                    }
                    continue;
                }
                _ = crate::shutdown::requested(&mut self.stop) => return None,
            };
            let text = match got {
                Ok(text) => text,
                Err(RecvError::Lagged(n)) => return Some(Event::default().event("lagged").data(n.to_string())),
                Err(RecvError::Closed) => return None,
            };
            // The common case, no filter, needs no parsing.
            if !text.contains("\"event\":\"attempt\"") {
                continue;
            }
            if !self.filter.is_empty() {
                let passes = serde_json::from_str::<Value>(&text)
                    .is_ok_and(|v| v["event"] == "attempt" && self.filter.passes(&v));
                if !passes {
                    continue;
                }
            }
            if self.sent >= MAX_RESULTS_PER_SECOND {
                self.skipped += 1;
                continue;
            }
            self.sent += 1;
            return Some(Event::default().event("result").data(&*text));
        }
    }
}

/// `GET /v1/results/live?state=&result=&domain=&recipient=`: every delivery
/// attempt's result as it is decided (a `result` event, the trace's attempt
/// entry), filtered, at most [`MAX_RESULTS_PER_SECOND`] a second (then a
/// `skipped` event with how many were left out); a `lagged` event tells how
/// many a reader that fell behind missed. Needs the trace (`trace-size` above 0).
pub async fn results(
    axum::extract::State(api): ApiState,
    axum::extract::Query(filter): axum::extract::Query<ResultFilter>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError> {
    let filter = filter.checked()?;
    let slot = StreamSlot::take()?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let feed = ResultsFeed {
        events: crate::trace::get().subscribe(),
        stop: api.shutdown.clone(),
        filter,
        tick,
        sent: 0,
        skipped: 0,
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok(event), feed))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The last few remote replies per recipient domain, for the console's
/// destinations; bounded in domains, replies and text.
pub struct RecentReplies {
    by_domain: Mutex<std::collections::HashMap<String, VecDeque<RecentReply>>>,
}

struct RecentReply {
    at_ms: u64,
    code: u16,
    status: Option<String>,
    text: String,
}

const RECENT_DOMAINS: usize = 2000;
const RECENT_PER_DOMAIN: usize = 5;
const RECENT_TEXT: usize = 200;

impl RecentReplies {
    /// Notes that `domain`'s server answered `reply` at `at_ms`; `text` is
    /// the attempt's description of it.
    pub fn note(&self, domain: &str, reply: &sluice_smtp::Reply, text: &str, at_ms: u64) {
        let domain = domain.to_ascii_lowercase();
        let reply = RecentReply {
            at_ms,
            code: reply.code,
            status: reply.status.clone(),
            text: text.chars().take(RECENT_TEXT).collect(),
        };
        let mut map = sluice_queue::lock(&self.by_domain);
        if !map.contains_key(&domain) && map.len() >= RECENT_DOMAINS {
            // Full: forget the domain whose newest reply is oldest.
            let stalest = map
                .iter()
                .min_by_key(|(_, list)| list.back().map_or(0, |r| r.at_ms))
                .map(|(d, _)| d.clone());
            if let Some(d) = stalest {
                map.remove(&d);
            }
        }
        let list = map.entry(domain).or_default();
        if list.len() == RECENT_PER_DOMAIN {
            list.pop_front();
        }
        list.push_back(reply);
    }

    /// `domain`'s replies, newest first.
    fn of(&self, domain: &str) -> Vec<Value> {
        sluice_queue::lock(&self.by_domain)
            .get(domain)
            .map(|l| {
                l.iter()
                    .rev()
                    .map(|r| {
                        let time = crate::deliver::outgoing::format_time(r.at_ms);
                        json!({"time": time, "code": r.code, "status": r.status, "text": r.text})
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The process's recent replies (delivery notes into it, the API reads).
pub fn recent_replies() -> &'static RecentReplies {
    static RECENT: std::sync::OnceLock<RecentReplies> = std::sync::OnceLock::new();
    RECENT.get_or_init(|| RecentReplies {
        by_domain: Mutex::new(Default::default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16) -> sluice_smtp::Reply {
        sluice_smtp::Reply {
            code,
            status: Some("4.7.0".into()),
            lines: vec![],
        }
    }

    #[test]
    fn recent_replies_are_bounded_in_domains_replies_and_text() {
        let r = RecentReplies {
            by_domain: Mutex::new(Default::default()),
        };
        for i in 0..7 {
            r.note("Example.COM", &reply(400 + i), &"x".repeat(1000), 1_000 + u64::from(i));
        }
        let shown = r.of("example.com");
        assert_eq!(shown.len(), RECENT_PER_DOMAIN, "the newest five, case aside");
        assert_eq!(shown[0]["code"], 406, "newest first");
        assert_eq!(shown[0]["text"].as_str().unwrap().len(), RECENT_TEXT);
        for d in 0..RECENT_DOMAINS {
            r.note(&format!("d{d}.test"), &reply(421), "busy", 10_000 + d as u64);
        }
        assert!(r.of("example.com").is_empty(), "the stalest domain made room");
        assert_eq!(sluice_queue::lock(&r.by_domain).len(), RECENT_DOMAINS);
    }
}
