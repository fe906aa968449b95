//! Prometheus metrics (`GET /metrics`, `docs/metrics.md`): one registry for
//! the process, filled where things happen (reception, delivery, the store)
//! and, for what is a state rather than an event (queue sizes), at scrape
//! time. Every label takes values from a fixed set or the configured queue
//! names, so no input can grow the number of series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Received {
    /// `smtp`, or `http` (`/submit` and `/inject`, which `sluice send` and `sluice inject` use).
    pub listener: &'static str,
    /// `accepted`, `deferred` (4xx), `refused` (5xx).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// Where the attempt ended (`message`, `connect`, `rcpt`, `dns`, …: the result JSON's `state`).
    pub state: &'static str,
    /// `accepted`, `error`, `timeout`, … (the result JSON's `result`).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    /// `delivered`, `failed` (final), `retry`.
    pub verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
    /// `ready`, `delayed`, `leased`.
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    /// The recipient domain.
    pub domain: String,
    /// The local IP mail goes from ('' = the system's choice).
    pub localip: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    /// The plugin's file name (from `plugin-directory`).
    pub plugin: String,
    /// The hook's C name (`mq_smtp_in_message`, …).
    pub hook: &'static str,
}

/// A family of histograms of one bucket layout.
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn hook_buckets() -> Histogram {
    // 10 µs to about 20 s.
    Histogram::new(exponential_buckets(0.00001, 2.0, 22))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The MX host (or relay, or domain) and the local IP, as logs name it.
    pub route: String,
}

/// What delivery reports at scrape time: the busiest routes' messages in flight, and the total.
pub type InFlightSource = Box<dyn Fn(usize) -> (Vec<(String, usize)>, usize) + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Direction {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TlsLabels {
    pub direction: &'static str,
    /// `ok` or `failed`.
    pub result: &'static str,
}

/// Running totals the console's history is made of (the counter families
/// are keyed by labels; these are the sums it needs, kept as they happen).
#[derive(Default)]
pub struct Totals {
    pub received: AtomicU64,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
}

/// The process's metrics.
pub struct Metrics {
    pub totals: Totals,
    registry: Registry,
    pub received: Family<Received, Counter>,
    pub attempts: Family<AttemptLabels, Counter>,
    pub verdicts: Family<VerdictLabels, Counter>,
    pub queue_messages: Family<QueueLabels, Gauge>,
    pub destination_connections: Family<DestinationLabels, Gauge>,
    pub destination_messages: Family<DestinationLabels, Gauge>,
    pub destination_flood: Family<DestinationLabels, Gauge>,
    pub connections: Family<Direction, Gauge>,
    pub tls: Family<TlsLabels, Counter>,
    pub attempt_seconds: Histogram,
    pub commit_seconds: Histogram,
    pub commit_messages: Histogram,
    pub hooks: Histograms<HookLabels>,
    /// Calls and seconds per plugin hook, readable for `/v1/plugins` (the
    /// histogram's own count and sum have no stable reader); not exported.
    pub hook_calls: Family<HookLabels, Counter>,
    pub hook_seconds: Family<HookLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    pub in_flight: Gauge,
    pub route_in_flight: Family<RouteLabels, Gauge>,
    in_flight_source: OnceLock<InFlightSource>,
}

/// The most queues whose sizes are exported (names come from the config and `POST /queues/{name}`).
const MAX_QUEUES: usize = 64;

/// The destinations exported: the busiest this many (domains come from recipients).
pub const TOP_DESTINATIONS: usize = 20;

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sluice");
        let m = Metrics {
            totals: Totals::default(),
            registry: Registry::default(),
            received: Family::default(),
            attempts: Family::default(),
            verdicts: Family::default(),
            queue_messages: Family::default(),
            destination_connections: Family::default(),
            destination_messages: Family::default(),
            destination_flood: Family::default(),
            connections: Family::default(),
            tls: Family::default(),
            // 1 ms to about 65 s.
            attempt_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            // 50 µs to about 1.6 s.
            commit_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            commit_messages: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            hooks: Family::new_with_constructor(hook_buckets),
            hook_calls: Family::default(),
            hook_seconds: Family::default(),
            in_flight: Gauge::default(),
            route_in_flight: Family::default(),
            in_flight_source: OnceLock::new(),
        };
        registry.register(
            "messages_received",
            "Messages received, by listener and by the reply given",
            m.received.clone(),
        );
        registry.register(
            "delivery_attempts",
            "Delivery attempts, by the state they ended in and their result",
            m.attempts.clone(),
        );
        registry.register(
            "delivery_verdicts",
            "What the delivery attempts meant: delivered, failed for good, or retried later",
            m.verdicts.clone(),
        );
        registry.register(
            "queue_messages",
            "Messages in each queue, by state (read at scrape time)",
            m.queue_messages.clone(),
        );
        registry.register(
            "messages_in_flight",
            "Messages delivery holds now: leased from the outbox, waiting in a destination's line or being sent",
            m.in_flight.clone(),
        );
        registry.register(
            "route_messages_in_flight",
            "Messages in flight for the busiest routes (MX host or relay, and local IP), read at scrape time",
            m.route_in_flight.clone(),
        );
        registry.register(
            "destination_connections",
            "Delivery connections open, for the busiest destinations (read at scrape time)",
            m.destination_connections.clone(),
        );
        registry.register(
            "destination_messages_last_minute",
            "Messages sent in the last minute, for the busiest destinations (read at scrape time)",
            m.destination_messages.clone(),
        );
        registry.register(
            "destination_flood_effect",
            "1 while a flood rule pauses or slows the destination, for the busiest destinations",
            m.destination_flood.clone(),
        );
        registry.register(
            "connections",
            "SMTP connections open, inbound (clients) and outbound (delivery)",
            m.connections.clone(),
        );
        registry.register(
            "tls_handshakes",
            "STARTTLS and implicit-TLS handshakes, by direction and outcome",
            m.tls.clone(),
        );
        registry.register_with_unit(
            "delivery_attempt_duration",
            "Time of one delivery attempt on an open connection (MAIL to the final reply)",
            Unit::Seconds,
            m.attempt_seconds.clone(),
        );
        registry.register_with_unit(
            "store_commit_duration",
            "Time of one group commit of the embedded store (write and fsync)",
            Unit::Seconds,
            m.commit_seconds.clone(),
        );
        registry.register_with_unit(
            "plugin_hook_duration",
            "Time of one plugin hook call, per plugin and hook, until the plugin gave control back",
            Unit::Seconds,
            m.hooks.clone(),
        );
        registry.register(
            "store_commit_messages",
            "Records written per group commit of the embedded store",
            m.commit_messages.clone(),
        );
        Metrics { registry, ..m }
    }

    /// One message received on `listener`, answered with `code`.
    pub fn received(&self, listener: &'static str, code: u16) {
        let result = match code {
            200..=399 => "accepted",
            400..=499 => "deferred",
            _ => "refused",
        };
        self.received.get_or_create(&Received { listener, result }).inc();
        if result == "accepted" {
            self.totals.received.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One attempt's verdict (`delivered`, `failed`, `retry`).
    pub fn verdict(&self, verdict: &'static str) {
        self.verdicts.get_or_create(&VerdictLabels { verdict }).inc();
        let total = match verdict {
            "delivered" => &self.totals.delivered,
            "failed" => &self.totals.failed,
            _ => &self.totals.retried,
        };
        total.fetch_add(1, Ordering::Relaxed);
    }

    /// The queue sizes as the store reports them now.
    pub fn set_queues(&self, stats: &[sluice_queue::QueueStats]) {
        for q in stats.iter().take(MAX_QUEUES) {
            for (state, n) in [("ready", q.ready), ("delayed", q.delayed), ("leased", q.leased)] {
                let labels = QueueLabels {
                    queue: q.name.clone(),
                    state,
                };
                self.queue_messages.get_or_create(&labels).set(n as i64);
            }
        }
    }

    /// The busiest destinations now; the ones that left the list are dropped.
    pub fn set_destinations(&self, busiest: &[sluice_shaping::Busy]) {
        self.destination_connections.clear();
        self.destination_messages.clear();
        self.destination_flood.clear();
        for b in busiest.iter().take(TOP_DESTINATIONS) {
            let labels = DestinationLabels {
                domain: b.destination.domain.clone(),
                localip: b.destination.localip.map(|ip| ip.to_string()).unwrap_or_default(),
            };
            self.destination_connections.get_or_create(&labels).set(b.open as i64);
            self.destination_messages
                .get_or_create(&labels)
                .set(b.messages_last_minute as i64);
            self.destination_flood
                .get_or_create(&labels)
                .set(i64::from(b.flood_effect));
        }
    }

    /// Where the in-flight counts come from (delivery, once at start).
    pub fn set_in_flight_source(&self, source: InFlightSource) {
        let _ = self.in_flight_source.set(source);
    }

    /// The `n` routes holding most messages in flight, and the total.
    pub fn in_flight_now(&self, n: usize) -> (Vec<(String, usize)>, usize) {
        self.in_flight_source.get().map_or((Vec::new(), 0), |source| source(n))
    }

    /// The in-flight counts now, from delivery, into the metrics.
    pub fn read_in_flight(&self) {
        if self.in_flight_source.get().is_none() {
            return;
        }
        let (routes, total) = self.in_flight_now(TOP_DESTINATIONS);
        self.in_flight.set(total as i64);
        self.route_in_flight.clear();
        for (route, n) in routes {
            self.route_in_flight.get_or_create(&RouteLabels { route }).set(n as i64);
        }
    }

    /// One call of `hook` into `plugin` that took `took`.
    pub fn hook_took(&self, plugin: &str, hook: &'static str, took: Duration) {
        let labels = HookLabels {
            plugin: plugin.to_string(),
            hook,
        };
        self.hooks.get_or_create(&labels).observe(took.as_secs_f64());
        self.hook_calls.get_or_create(&labels).inc();
        self.hook_seconds.get_or_create(&labels).inc_by(took.as_secs_f64());
    }

    /// One group commit of `messages` records that took `took`.
    pub fn committed(&self, took: Duration, messages: usize) {
        self.commit_seconds.observe(took.as_secs_f64());
        self.commit_messages.observe(messages as f64);
    }

    /// The exposition, OpenMetrics text (which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The process's metrics (created on first use).
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Counts a connection open in `direction` while it lives.
pub struct Open(&'static str);

impl Open {
    pub fn new(direction: &'static str) -> Open {
        get().connections.get_or_create(&Direction { direction }).inc();
        Open(direction)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        get().connections.get_or_create(&Direction { direction: self.0 }).dec();
    }
}

/// A TLS handshake's outcome.
pub fn handshake(direction: &'static str, ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    get().tls.get_or_create(&TlsLabels { direction, result }).inc();
}
