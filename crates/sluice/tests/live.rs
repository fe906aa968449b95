//! The console's data over HTTP: `/v1/overview` (now and the last hour)
//! and `/v1/live` (Server-Sent Events every second), read with a raw
//! socket the way a browser's EventSource would.

mod common;
use common::peers::smtp_sink;
use common::policy::{inject, message, request};
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

const TOKEN: &str = "live-token-0123456789";

/// Opens `/v1/live` with `auth`; the reader after the response head, and the status.
fn open_live(d: &Daemon, auth: Option<&str>) -> (u16, BufReader<std::net::TcpStream>) {
    open_stream(d, "/v1/live", auth)
}

/// Opens `path` as an event stream with `auth`; the reader after the
/// response head, and the status.
fn open_stream(d: &Daemon, path: &str, auth: Option<&str>) -> (u16, BufReader<std::net::TcpStream>) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", d.www)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n{auth}\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let code = status.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
    }
    (code, r)
}

/// The next `overview` event's data (chunked transfer framing skipped).
fn next_overview(r: &mut BufReader<std::net::TcpStream>) -> Option<Value> {
    let mut event = false;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line == "event: overview" {
            event = true;
        } else if let Some(data) = line.strip_prefix("data: ") {
            if event {
                return serde_json::from_str(data).ok();
            }
        }
    }
}

#[test]
fn the_live_stream_and_the_overview_follow_the_traffic_and_need_credentials() {
    let sink = smtp_sink(&[]);
    let mut d = Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\nwww-tokens: {TOKEN}\n",
        sink.port
    ));
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(open_live(&d, None).0, 401);
    assert_eq!(request(&d, "GET", "/v1/overview", "text/plain", "", None).0, 401);
    let (code, mut stream) = open_live(&d, Some(&bearer));
    assert_eq!(code, 200);
    let first = next_overview(&mut stream).expect("an overview event");
    assert!(first["queues"].is_array(), "{first}");
    for i in 0..3 {
        let (ok, out) = swaks(&d, "a@example.net", &format!("user{i}@example.com"), &[]);
        assert!(ok, "{out}");
    }
    // The stream's totals reach what was sent, a second at a time.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = first;
    while last["totals"]["delivered"] != 3 && Instant::now() < deadline {
        last = next_overview(&mut stream).expect("events keep coming");
    }
    assert_eq!(
        (
            last["totals"]["received"].as_u64(),
            last["totals"]["delivered"].as_u64()
        ),
        (Some(3), Some(3)),
        "{last}"
    );
    assert_eq!(last["in_flight"], 0);
    // The hour's history, second by second, adds up to the same.
    std::thread::sleep(Duration::from_millis(1200));
    let (code, body) = request(&d, "GET", "/v1/overview", "text/plain", "", Some(&bearer));
    assert_eq!(code, 200, "{body}");
    let overview: Value = serde_json::from_str(&body).unwrap();
    let sum = |k: &str| {
        overview["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s[k].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(
        (sum("received"), sum("delivered"), sum("failed")),
        (3, 3, 0),
        "{overview}"
    );
    // A stream left open does not hold up a stop.
    let stopping = Instant::now();
    assert_eq!(d.terminate(), Some(0));
    assert!(stopping.elapsed() < Duration::from_secs(10), "{:?}", stopping.elapsed());
    drop(stream);
}

#[test]
fn live_streams_are_bounded_in_number() {
    let d = Daemon::start(&format!("www-tokens: {TOKEN}\n"));
    let bearer = format!("Bearer {TOKEN}");
    // 64 open at once (sluice::http::live::MAX_STREAMS), all clients together.
    let mut open: Vec<_> = (0..64)
        .map(|i| {
            let (code, r) = open_live(&d, Some(&bearer));
            assert_eq!(code, 200, "stream {i}");
            r
        })
        .collect();
    assert_eq!(open_live(&d, Some(&bearer)).0, 503, "the 65th is refused");
    let (code, _) = request(&d, "GET", "/v1/overview", "text/plain", "", Some(&bearer));
    assert_eq!(code, 200, "the rest of the API still answers");
    // A stream that ends gives its place back.
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _) = open_live(&d, Some(&bearer));
        if code == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the place was not given back");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_live_results_are_filtered_and_capped_and_every_result_is_accounted_for() {
    let sink = smtp_sink(&[]);
    let d = Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\nwww-tokens: {TOKEN}\n",
        sink.port
    ));
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(open_stream(&d, "/v1/results/live?domain=a%0Ab", Some(&bearer)).0, 400);
    let (code, mut all) = open_stream(&d, "/v1/results/live", Some(&bearer));
    assert_eq!(code, 200);
    let (code, mut only_b) = open_stream(&d, "/v1/results/live?domain=B.example", Some(&bearer));
    assert_eq!(code, 200);
    let n = 1000;
    let mut batch: Vec<_> = (0..n - 10).map(|i| message(i, "a.example")).collect();
    batch.extend((0..10).map(|i| message(i, "b.example")));
    let started = Instant::now();
    inject(&d, &batch);
    // Read the unfiltered stream until every result is accounted for:
    // sent as a `result`, or counted in a `skipped` (or `lagged`) event.
    let (mut results, mut skipped) = (0u64, 0u64);
    let mut event = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while results + skipped < n as u64 && Instant::now() < deadline {
        let mut line = String::new();
        if all.read_line(&mut line).unwrap_or(0) == 0 {
            continue;
        }
        let line = line.trim_end();
        if let Some(name) = line.strip_prefix("event: ") {
            event = name.to_string();
        } else if let Some(data) = line.strip_prefix("data: ") {
            match event.as_str() {
                "result" => results += 1,
                "skipped" | "lagged" => skipped += data.parse::<u64>().unwrap(),
                _ => {}
            }
        }
    }
    let seconds = started.elapsed().as_secs() + 1;
    assert_eq!(results + skipped, n as u64, "{results} sent, {skipped} skipped");
    assert!(
        results <= 100 * (seconds + 1),
        "{results} results in {seconds} s: over 100 a second"
    );
    // The filtered stream carries b.example's ten, and nothing else.
    let mut b = Vec::new();
    while b.len() < 10 {
        let mut line = String::new();
        if only_b.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            b.push(serde_json::from_str::<Value>(data).unwrap());
        }
    }
    assert_eq!(b.len(), 10, "{b:?}");
    assert!(
        b.iter()
            .all(|r| r["recipient"].as_str().unwrap().ends_with("@b.example")),
        "{b:?}"
    );
}
