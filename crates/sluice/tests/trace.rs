//! The message trace: every message's events (received, each attempt, what
//! it meant) found by its message-id or recipient with `sluice trace` and
//! `GET /v1/trace/KEY`.

mod common;
use common::peers::recorder;
use common::policy::{arrivals, inject, message, request};
use common::*;
use serde_json::Value;
use std::time::Duration;

const JSON: &str = "application/json";

#[test]
fn a_message_received_over_smtp_is_traced_to_its_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("arrivals.jsonl");
    let receiver = recorder(&out, None);
    let d = Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\n",
        receiver.port
    ));
    let (ok, transcript) = swaks(
        &d,
        "sender@example.net",
        "someone@example.com",
        &["--ehlo", "client.test"],
    );
    assert!(ok, "{transcript}");
    // `250 2.0.0 queued as ID for someone@example.com`
    let id = transcript
        .split("queued as ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("an id in the 250 reply")
        .to_string();
    assert_eq!(arrivals(&out, 1, Duration::from_secs(30)).len(), 1);
    assert_eq!(d.collect("success", 1, Duration::from_secs(30)).len(), 1);
    // The attempt event is written after its outcome is stored.
    let mut events = Vec::new();
    for _ in 0..100 {
        let (code, body) = request(&d, "GET", &format!("/v1/trace/{id}"), JSON, "", None);
        assert_eq!(code, 200, "{body}");
        events = serde_json::from_str::<Vec<Value>>(&body).unwrap();
        if events.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["event"], "received");
    assert_eq!(events[0]["connection"]["helo"], "client.test");
    assert_eq!(events[1]["event"], "attempt");
    assert_eq!(
        (events[1]["state"].as_str(), events[1]["result"].as_str()),
        (Some("message"), Some("accepted"))
    );
    assert_eq!(events[1]["verdict"], "delivered");
    let shown = d.cli(&["trace", &id], b"");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    assert!(
        text.contains("received via smtp from 127.0.0.1 (helo client.test)"),
        "{text}"
    );
    assert!(
        text.contains("attempt 1 to someone@example.com: message/accepted"),
        "{text}"
    );
    assert!(text.contains("-> delivered"), "{text}");
    // Unknown and hostile keys.
    let none = d.cli(&["trace", "no-such-id"], b"");
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no trace"));
    assert_eq!(request(&d, "GET", "/v1/trace/a%0Ab", JSON, "", None).0, 400);
}

#[test]
fn an_injected_message_gets_an_id_and_its_retry_and_delivery_are_traced() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("arrivals.jsonl");
    let receiver = recorder(&out, Some(("retry.example", 1, "451 4.3.0 Try again later")));
    let d = Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\nretry-interval: 1\n",
        receiver.port
    ));
    inject(&d, &[message(1, "retry.example")]);
    assert_eq!(arrivals(&out, 2, Duration::from_secs(60)).len(), 2);
    let success = d.collect("success", 1, Duration::from_secs(30));
    assert_eq!(success.len(), 1);
    let id = success[0]["message-id"]
        .as_str()
        .expect("inject assigned a message-id")
        .to_string();
    // By recipient: the same three events.
    let mut events = Vec::new();
    for _ in 0..100 {
        let (_, body) = request(&d, "GET", "/v1/trace/user1@retry.example", JSON, "", None);
        events = serde_json::from_str::<Vec<Value>>(&body).unwrap();
        if events.len() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["event"].as_str().unwrap_or(""), e["verdict"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        kinds,
        [("received", ""), ("attempt", "retry"), ("attempt", "delivered")],
        "{events:?}"
    );
    assert!(events.iter().all(|e| e["message-id"] == id.as_str()), "{events:?}");
    assert_eq!(events[0]["via"], "inject");
    assert_eq!(events[1]["code"], 451);
}
