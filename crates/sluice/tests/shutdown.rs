//! A stop does not wait on peers that never finish: after `shutdown-grace`
//! the deliveries and sessions still under way are cut off, and what they
//! carried is done again after the restart (not acknowledged, so not lost).

mod common;
use common::peers::recorder;
use common::policy::{arrivals, inject, message};
use common::*;
use std::time::{Duration, Instant};

#[test]
fn a_stop_cuts_off_a_delivery_that_never_ends_and_the_message_goes_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("arrivals.jsonl");
    // The first message to stall.example gets no answer after its final dot, ever.
    let receiver = recorder(&out, Some(("stall.example", 1, "stall")));
    let mut d = Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\nshutdown-grace: 2\n",
        receiver.port
    ));
    inject(&d, &[message(1, "stall.example")]);
    let seen = arrivals(&out, 1, Duration::from_secs(30));
    assert_eq!(seen.len(), 1, "{}", d.log_tail(30));
    assert_eq!(seen[0]["stalled"], true);
    // The reply would take delivery-timeout (300 s); the stop takes the grace.
    let stopping = Instant::now();
    assert_eq!(d.terminate(), Some(0));
    let took = stopping.elapsed();
    eprintln!("stopped {took:?} after SIGTERM with a delivery hanging");
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(d.log().contains("cut off"), "{}", d.log_tail(20));
    // Not acknowledged, so not lost: after the restart it goes again, and is delivered.
    d.spawn();
    let seen = arrivals(&out, 2, Duration::from_secs(60));
    assert_eq!(seen.len(), 2, "{}", d.log_tail(30));
    assert_eq!(seen[1]["stalled"], false);
    let success = d.collect("success", 1, Duration::from_secs(30));
    assert_eq!(success.len(), 1);
    assert_eq!(
        success[0]["results"].as_array().map(Vec::len),
        Some(1),
        "the cut-off attempt left no result: {}",
        success[0]
    );
}

#[test]
fn a_stop_closes_a_session_stuck_in_its_body_after_the_grace_and_stores_nothing_of_it() {
    let mut d = Daemon::start("shutdown-grace: 2\n");
    let mut s = d.session();
    assert_eq!(s.code("MAIL FROM:<a@example.net>"), "250");
    assert_eq!(s.code("RCPT TO:<b@example.com>"), "250");
    assert_eq!(s.code("DATA"), "354");
    // Half a body, then silence: smtp-data-timeout (600 s) would end it.
    s.send(b"Subject: half\r\n\r\nthe first half of the body\r\n");
    std::thread::sleep(Duration::from_millis(300));
    let stopping = Instant::now();
    assert_eq!(d.terminate(), Some(0));
    let took = stopping.elapsed();
    eprintln!("stopped {took:?} after SIGTERM with a session in its body");
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(s.closed(), "the session was closed");
    d.spawn();
    let stats = d.cli(&["queue", "stats"], b"");
    let lines = json_lines(&stats.stdout);
    let inbox = lines.iter().find(|q| q["name"] == "inbox");
    let stored = inbox.map_or(0, |q| q["ready"].as_u64().unwrap_or(0));
    assert_eq!(stored, 0, "nothing of the half message was stored: {lines:?}");
}
