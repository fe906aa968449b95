//! The relay's queue traffic alone, without SMTP: 20 producers publish 4 KB
//! messages to an outbox one at a time (as 20 SMTP sessions would), while a
//! consumer takes them and settles each with two ~1 KB outcome copies and
//! the ack (as delivery does). Measures what the broker (and lapin) can carry
//! on this machine, to compare with `bench/deliver.sh`'s relay.
//!
//! cargo run --release -p sluice-queue --example amqp_relay -- amqp://guest:guest@127.0.0.1:5672/%2f 20000

use sluice_queue::{NewMessage, Queue, RabbitMq, RabbitOptions};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let address = args.next().expect("usage: amqp_relay URI [N]");
    let n: usize = args.next().map(|s| s.parse().expect("N")).unwrap_or(20_000);
    let tag = std::process::id();
    let (outbox, results, success) = (
        format!("r{tag}-outbox"),
        format!("r{tag}-results"),
        format!("r{tag}-success"),
    );
    let q = Arc::new(
        RabbitMq::start(RabbitOptions::new(
            address,
            vec![outbox.clone(), results.clone(), success.clone()],
            vec![outbox.clone()],
        ))
        .expect("start"),
    );
    assert!(q.wait_connected(Duration::from_secs(10)), "no broker");
    let body = vec![b'x'; 4096];
    let outcome = vec![b'y'; 1024];
    let start = Instant::now();
    let sent = Arc::new(AtomicUsize::new(0));
    let producers: Vec<_> = (0..20)
        .map(|_| {
            let (q, sent, outbox, body) = (q.clone(), sent.clone(), outbox.clone(), body.clone());
            tokio::spawn(async move {
                while sent.fetch_add(1, Ordering::Relaxed) < n {
                    q.publish(vec![NewMessage::now(outbox.as_str(), body.clone())])
                        .await
                        .expect("publish");
                }
            })
        })
        .collect();
    let settled = Arc::new(AtomicUsize::new(0));
    let mut taken = 0;
    while taken < n {
        for m in q.take(&outbox, 512, Duration::from_secs(1)).await.expect("take") {
            taken += 1;
            let (q, settled, outcome) = (q.clone(), settled.clone(), outcome.clone());
            let (results, success) = (results.clone(), success.clone());
            tokio::spawn(async move {
                q.settle(
                    vec![
                        NewMessage::now(results, outcome.clone()),
                        NewMessage::now(success, outcome),
                    ],
                    vec![m.id],
                )
                .await
                .expect("settle");
                settled.fetch_add(1, Ordering::Relaxed);
            });
        }
    }
    for p in producers {
        p.await.expect("producer");
    }
    let accepted = start.elapsed();
    while settled.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} messages: published by 20 producers in {:.1} s, relayed (consumed, 2 outcome copies, acked) in {secs:.1} s = {:.0} msg/s",
        accepted.as_secs_f64(),
        n as f64 / secs
    );
}
