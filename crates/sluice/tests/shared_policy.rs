//! One policy for several instances: the settings database on the test
//! run's PostgreSQL, two daemons on one RabbitMQ. A change made through one
//! instance is in force on the other within 5 s (spec/database.md), rows
//! written with psql within `database-ttl`.

mod common;
use common::peers::{recorded, recorder};
use common::policy::*;
use common::rabbit::{prefix, Broker};
use common::*;
use serde_json::Value;
use sluice_test_support::PgDatabase;
use std::time::{Duration, Instant};

const FORM: &str = "application/x-www-form-urlencoded";

#[test]
fn a_pause_made_through_one_instance_holds_mail_on_the_other_until_deleted() {
    let (db, broker, p) = (PgDatabase::create(), Broker::shared(), prefix());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("arrivals.jsonl");
    let receiver = recorder(&out, None);
    // A long reload time: only the change marker can carry the pause across.
    let common = format!(
        "{}database-address: {}\ndatabase-ttl: 600\n",
        broker.config(&p),
        db.address
    );
    // A takes API calls and delivers nothing; B delivers everything.
    let a = Daemon::start(&common);
    let b = Daemon::start(&format!(
        "{common}delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\n",
        receiver.port
    ));
    broker.wait_consumers(&format!("{p}outbox"), 1);
    let (code, body) = request(&a, "POST", "/v1/pauses", FORM, "domain=held.example", None);
    assert_eq!(code, 200, "{body}");
    // The spec's bound: in force on B within 5 s.
    std::thread::sleep(Duration::from_secs(5));
    let (_, list) = request(&b, "GET", "/v1/pauses", FORM, "", None);
    assert!(list.contains("held.example"), "B lists A's pause: {list}");
    let bodies: Vec<String> = [
        message(1, "held.example"),
        message(2, "held.example"),
        message(3, "free.example"),
    ]
    .iter()
    .map(Value::to_string)
    .collect();
    broker.publish(&format!("{p}outbox"), &bodies);
    assert_eq!(
        arrivals(&out, 1, Duration::from_secs(30)).len(),
        1,
        "{}",
        b.log_tail(50)
    );
    std::thread::sleep(Duration::from_secs(3));
    let seen = recorded(&out);
    assert!(
        times(&seen, "held.example").is_empty(),
        "delivered while paused: {seen:?}"
    );
    // Deleted through A: B delivers what it held.
    let deleted = Instant::now();
    let (code, body) = request(&a, "DELETE", "/v1/pauses", FORM, "domain=held.example", None);
    assert_eq!(code, 200, "{body}");
    let seen = arrivals(&out, 3, Duration::from_secs(30));
    assert_eq!(times(&seen, "held.example").len(), 2, "{}", b.log_tail(50));
    eprintln!("released on B {:?} after the DELETE on A", deleted.elapsed());
    // Waiting was no attempt: each message has exactly one.
    let success = broker.get(&format!("{p}success"), 3, Duration::from_secs(30));
    assert_eq!(success.len(), 3);
    for s in &success {
        assert_eq!(s["results"].as_array().map(Vec::len), Some(1), "{s}");
    }
}

#[test]
fn rows_written_with_psql_apply_within_the_reload_time_and_bad_ones_are_reported() {
    let db = PgDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("arrivals.jsonl");
    let receiver = recorder(&out, None);
    let d = Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\ndatabase-address: {}\ndatabase-ttl: 1\n",
        receiver.port, db.address
    ));
    // Sluice created the tables; the operator's script fills them.
    db.sql(
        "INSERT INTO paused (domain, reason) VALUES ('held.example', 'complaints');
         INSERT INTO capacity (domain, message_rate) VALUES ('bad.example', 'very fast');",
    );
    std::thread::sleep(Duration::from_millis(2500));
    inject(&d, &[message(1, "held.example"), message(2, "free.example")]);
    assert_eq!(
        arrivals(&out, 1, Duration::from_secs(30)).len(),
        1,
        "{}",
        d.log_tail(50)
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(times(&recorded(&out), "held.example").is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("row skipped") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        d.log().contains("very fast"),
        "the bad row is logged: {}",
        d.log_tail(30)
    );
    // `sluice database check` on the same database lists it and fails.
    let check = d.cli(&["database", "check"], b"");
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success(), "{text}");
    assert!(text.contains("capacity row") && text.contains("very fast"), "{text}");
    assert!(text.starts_with("postgresql://sluice@"), "no password shown: {text}");
    db.sql("DELETE FROM paused");
    let seen = arrivals(&out, 2, Duration::from_secs(30));
    assert_eq!(times(&seen, "held.example").len(), 1, "{}", d.log_tail(50));
}
