//! The dispatcher in-process: a real embedded store in a temporary
//! directory, the lanes read by the test instead of workers, small limits,
//! and a clock set by the test (so due times, deadlines and deferrals are
//! asserted exactly, and the years the messages name are never waited for).

use super::*;
use crate::config::Config;
use crate::deliver::outgoing::parse_time;
use serde_json::Value;
use sluice_queue::{EmbeddedStore, Queue, StoreOptions};
use tokio::sync::watch;

const NOW: &str = "2030-01-01 00:00:00";

struct Setup {
    _dir: tempfile::TempDir,
    store: Arc<EmbeddedStore>,
    engine: Arc<Engine>,
    stop: watch::Sender<bool>,
}

fn setup() -> Setup {
    setup_with(Vec::new())
}

/// As [`setup`], with capacity rows in the policy.
fn setup_with(rows: Vec<sluice_shaping::CapacityRow>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    // With a sink there are no DNS lookups: routes stay per domain.
    let env = vec![("SLUICE_SMTP_SINK_IP".to_string(), "127.0.0.1".to_string())];
    let config = Config::load(None, env).unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("queue"), StoreOptions::default()).unwrap());
    let (stop, shutdown) = watch::channel(false);
    let engine = Engine::from_config(
        &config,
        store.clone(),
        "sluice.test".into(),
        shutdown,
        Arc::new(sluice_plugin::Plugins::none()),
        tokio::runtime::Handle::current(),
        crate::policy::Live::new(
            &config,
            &sluice_policy::Policy {
                capacity: rows,
                ..Default::default()
            },
            0,
        ),
    )
    .unwrap();
    Setup {
        _dir: dir,
        store,
        engine: Arc::new(engine),
        stop,
    }
}

fn message(recipient: &str, extra: &str) -> NewMessage {
    let body =
        format!(r#"{{"envelope":"s@example.net","recipient":"{recipient}","mime":"Subject: x\r\n\r\nx\r\n"{extra}}}"#);
    NewMessage::now("outbox", body.into_bytes())
}

fn limits(per_destination: usize, now: &str) -> Limits {
    let now = parse_time(now).unwrap();
    Limits {
        per_destination,
        clock: Arc::new(move || now),
        ..Limits::default()
    }
}

/// Runs the dispatcher over what `store` holds until `jobs` jobs reached the
/// two lanes, `results` results were written and `outbox` messages are back
/// in the outbox (or 10 s passed); returns the recipients per lane.
async fn dispatch(s: &Setup, limits: Limits, jobs: usize, results: usize, outbox: usize) -> [Vec<String>; 2] {
    let (tx0, mut rx0) = mpsc::unbounded_channel();
    let (tx1, mut rx1) = mpsc::unbounded_channel();
    let dispatcher = tokio::spawn(run(s.engine.clone(), vec![tx0, tx1], limits));
    let mut lanes: [Vec<String>; 2] = Default::default();
    let mut held = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while lanes[0].len() + lanes[1].len() < jobs && tokio::time::Instant::now() < deadline {
        tokio::select! {
            Some(job) = rx0.recv() => { lanes[0].push(job.msg.recipient.to_string()); held.push(job) }
            Some(job) = rx1.recv() => { lanes[1].push(job.msg.recipient.to_string()); held.push(job) }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    while (waiting(&s.store, "results").await.len() < results || waiting(&s.store, "outbox").await.len() < outbox)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop.send_replace(true);
    dispatcher.await.unwrap();
    for lane in &mut lanes {
        lane.sort();
    }
    lanes
}

/// The messages waiting in `queue`: (recipient or message, not-before, last result).
async fn waiting(store: &EmbeddedStore, queue: &str) -> Vec<(String, u64, String)> {
    let mut out: Vec<_> = store
        .peek(queue, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| {
            let json: Value = serde_json::from_slice(&m.body).unwrap();
            let who = json["recipient"]
                .as_str()
                .or(json["message"].as_str())
                .unwrap_or("?")
                .to_string();
            let last = json["results"].as_array().and_then(|r| r.last()).map(|r| {
                format!(
                    "{}/{}",
                    r["state"].as_str().unwrap_or(""),
                    r["result"].as_str().unwrap_or("")
                )
            });
            (who, m.not_before_ms, last.unwrap_or_default())
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_routed_settled_and_deferred_by_the_dispatchers_clock() {
    let s = setup();
    let now = parse_time(NOW).unwrap();
    s.store
        .publish(vec![
            message("a1@a.example", ""),
            message("a2@a.example", ""),
            message("a3@a.example", ""),
            message("b1@b.example", ""),
            NewMessage::now("outbox", b"not json".to_vec()),
            message("c1@c.example", r#","delayed":"2030-01-01 01:00:00""#),
            // Received two days before the clock: past its max-delivertime (a day).
            message("d1@d.example", r#","received":"2029-12-30 00:00:00""#),
        ])
        .await
        .unwrap();
    let lanes = dispatch(&s, limits(2, NOW), 3, 2, 2).await;
    // Two of a.example (its limit), on one lane; b.example's one.
    let all: Vec<&String> = lanes.iter().flatten().collect();
    assert_eq!(all.len(), 3, "{lanes:?}");
    let a_lane = lanes
        .iter()
        .find(|l| l.iter().any(|r| r.ends_with("@a.example")))
        .unwrap();
    assert_eq!(
        a_lane.iter().filter(|r| r.ends_with("@a.example")).count(),
        2,
        "{lanes:?}"
    );
    assert!(all.iter().any(|r| *r == "b1@b.example"), "{lanes:?}");
    // Back in the outbox: the third a.example message for the clock's now + 5 s,
    // the delayed one for its own time.
    let outbox = waiting(&s.store, "outbox").await;
    let deferred: Vec<_> = outbox.iter().filter(|(r, ..)| r.ends_with("@a.example")).collect();
    assert_eq!(deferred.len(), 1, "{outbox:?}");
    assert_eq!(deferred[0].1, now + 5_000);
    let delayed: Vec<_> = outbox.iter().filter(|(r, ..)| r == "c1@c.example").collect();
    assert_eq!(delayed.len(), 1, "{outbox:?}");
    assert_eq!(delayed[0].1, parse_time("2030-01-01 01:00:00").unwrap());
    // Ended without a connection: the unreadable one and the expired one.
    let results = waiting(&s.store, "results").await;
    assert_eq!(
        results
            .iter()
            .map(|(who, _, last)| (who.as_str(), last.as_str()))
            .collect::<Vec<_>>(),
        [("d1@d.example", "process/timeout"), ("not json", "process/invalid")],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_message_is_attempted_once_the_clock_reaches_its_time() {
    let s = setup();
    s.store
        .publish(vec![message("c1@c.example", r#","delayed":"2030-01-01 01:00:00""#)])
        .await
        .unwrap();
    let lanes = dispatch(&s, limits(10, "2030-01-01 01:00:01"), 1, 0, 0).await;
    assert_eq!(lanes.concat(), ["c1@c.example"]);
    assert!(waiting(&s.store, "outbox").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_within_its_deadline_is_attempted_and_past_it_expires() {
    let s = setup();
    // max-delivertime is a day from `received`.
    let received = r#","received":"2030-01-01 00:00:00""#;
    s.store.publish(vec![message("e1@e.example", received)]).await.unwrap();
    let lanes = dispatch(&s, limits(10, "2030-01-01 23:59:59"), 1, 0, 0).await;
    assert_eq!(lanes.concat(), ["e1@e.example"]);

    let s = setup();
    s.store.publish(vec![message("e1@e.example", received)]).await.unwrap();
    let lanes = dispatch(&s, limits(10, "2030-01-02 00:00:01"), 0, 1, 0).await;
    assert!(lanes.concat().is_empty());
    let results = waiting(&s.store, "results").await;
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].2, "process/timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_size_row_caps_what_one_domain_holds_in_memory() {
    use sluice_shaping::capacity::{CapacityRow, DomainScope, Limit};
    let mut small = CapacityRow::inheriting(1, None, DomainScope::parse("small.example").unwrap());
    small.queue_size = Limit::Of(1);
    let s = setup_with(vec![small]);
    let now = parse_time(NOW).unwrap();
    let mut batch: Vec<NewMessage> = (0..3).map(|i| message(&format!("s{i}@small.example"), "")).collect();
    batch.push(message("o1@other.example", ""));
    s.store.publish(batch).await.unwrap();
    let lanes = dispatch(&s, limits(10, NOW), 2, 0, 2).await;
    let all: Vec<String> = lanes.concat();
    assert_eq!(
        all.iter().filter(|r| r.ends_with("@small.example")).count(),
        1,
        "{all:?}"
    );
    assert!(all.contains(&"o1@other.example".to_string()), "{all:?}");
    let outbox = waiting(&s.store, "outbox").await;
    assert_eq!(outbox.len(), 2, "{outbox:?}");
    assert!(outbox.iter().all(|(_, due, _)| *due == now + 5_000));
}
