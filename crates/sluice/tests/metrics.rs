//! `GET /metrics` against real consumers: Python's prometheus_client parser
//! reads the exposition, and a real Prometheus (started here on a loopback
//! port, scraping every second with a Bearer token) answers queries whose
//! numbers match the traffic sent with swaks and smtp-source.

mod common;
use common::peers::smtp_sink;
use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PARSE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/metrics_parse.py");

/// `GET path` on the daemon's API; status and body.
fn get(d: &Daemon, path: &str, auth: Option<&str>) -> (u16, String) {
    common::policy::request(d, "GET", path, "text/plain", "", auth)
}

/// The samples of an exposition, as prometheus_client parses them.
fn parse(text: &str) -> Vec<Value> {
    let mut child = Command::new("python3")
        .arg(PARSE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}\n{text}", String::from_utf8_lossy(&out.stderr));
    json_lines(&out.stdout)
}

/// The value of the sample `name` whose labels include `labels`, summed over the others.
fn value(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .map(|s| s["value"].as_f64().unwrap())
        .sum()
}

#[test]
fn the_exposition_parses_and_counts_what_was_received_and_delivered() {
    require("smtp-source");
    let sink = smtp_sink(&[]);
    let d = Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\n",
        sink.port
    ));
    for i in 0..3 {
        let (ok, out) = swaks(&d, "a@example.net", &format!("user{i}@example.com"), &[]);
        assert!(ok, "{out}");
    }
    let source = run(Command::new("smtp-source")
        .args(["-s", "2", "-m", "20", "-f", "b@example.net", "-t", "x@example.org"])
        .arg(format!("127.0.0.1:{}", d.smtp)));
    assert!(source.status.success(), "{}", String::from_utf8_lossy(&source.stderr));
    assert_eq!(
        d.collect("success", 23, Duration::from_secs(60)).len(),
        23,
        "{}",
        d.log_tail(30)
    );
    // Outcomes are stored in the background: wait until the metrics have all of them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let samples = loop {
        let (code, text) = get(&d, "/metrics", None);
        assert_eq!(code, 200);
        let samples = parse(&text);
        let done = value(&samples, "sluice_delivery_verdicts_total", &[("verdict", "delivered")]);
        if done >= 23.0 || Instant::now() > deadline {
            break samples;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let received = |result| {
        value(
            &samples,
            "sluice_messages_received_total",
            &[("listener", "smtp"), ("result", result)],
        )
    };
    assert_eq!(received("accepted"), 23.0);
    assert_eq!(
        value(&samples, "sluice_delivery_verdicts_total", &[("verdict", "delivered")]),
        23.0
    );
    assert_eq!(
        value(
            &samples,
            "sluice_delivery_attempts_total",
            &[("state", "message"), ("result", "accepted")]
        ),
        23.0
    );
    assert_eq!(
        value(&samples, "sluice_delivery_attempt_duration_seconds_count", &[]),
        23.0
    );
    assert!(value(&samples, "sluice_store_commit_duration_seconds_count", &[]) >= 1.0);
    assert!(value(&samples, "sluice_store_commit_messages_sum", &[]) >= 23.0);
    // Queue sizes are read at scrape time: the outbox is empty again.
    assert!(
        samples
            .iter()
            .any(|s| s["name"] == "sluice_queue_messages" && s["labels"]["queue"] == "outbox"),
        "{samples:?}"
    );
    assert_eq!(value(&samples, "sluice_queue_messages", &[("queue", "outbox")]), 0.0);
    assert!(samples.iter().any(|s| s["name"] == "sluice_connections"), "{samples:?}");
    // The busiest destinations, from the shaper: what each got in the last minute.
    let sent_to = |domain| {
        value(
            &samples,
            "sluice_destination_messages_last_minute",
            &[("domain", domain)],
        )
    };
    assert_eq!(
        (sent_to("example.org"), sent_to("example.com")),
        (20.0, 3.0),
        "{samples:?}"
    );
    assert_eq!(value(&samples, "sluice_destination_flood_effect", &[]), 0.0);
    // Everything was delivered: nothing is in flight any more.
    assert!(
        samples.iter().any(|s| s["name"] == "sluice_messages_in_flight"),
        "{samples:?}"
    );
    assert_eq!(value(&samples, "sluice_messages_in_flight", &[]), 0.0);
}

#[test]
fn messages_held_by_a_paused_destination_are_in_flight_on_its_route() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("settings.db");
    common::policy::sql(
        &db,
        "CREATE TABLE paused (id INTEGER PRIMARY KEY, domain TEXT); INSERT INTO paused (domain) VALUES ('held.example');",
    );
    let sink = smtp_sink(&[]);
    let d = Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\ndatabase-address: sqlite://{}\n",
        sink.port,
        db.display()
    ));
    common::policy::inject(
        &d,
        &(0..4)
            .map(|i| common::policy::message(i, "held.example"))
            .collect::<Vec<_>>(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let samples = loop {
        let samples = parse(&get(&d, "/metrics", None).1);
        if value(&samples, "sluice_messages_in_flight", &[]) >= 4.0 || Instant::now() > deadline {
            break samples;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(value(&samples, "sluice_messages_in_flight", &[]), 4.0, "{samples:?}");
    assert_eq!(
        value(
            &samples,
            "sluice_route_messages_in_flight",
            &[("route", "held.example")]
        ),
        4.0,
        "{samples:?}"
    );
}

/// A Prometheus of the test's own, scraping `target` every second with `token`; killed on drop.
struct Prometheus {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: u16, token: &str) -> Prometheus {
        require("prometheus");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sluice\n    authorization:\n      credentials: {token}\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .unwrap();
        Prometheus { child, port, _dir: dir }
    }

    /// The value of an instant query's first result (None while there is none).
    fn query(&self, q: &str) -> Option<f64> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let encoded: String = q
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'_' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        write!(s, "GET /api/v1/query?query={encoded} HTTP/1.0\r\nHost: p\r\n\r\n").ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        let body: Value = serde_json::from_str(answer.split_once("\r\n\r\n")?.1).ok()?;
        body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `q` answers `want` (at most `within`); the last answer.
    fn wait_for(&self, q: &str, want: f64, within: Duration) -> Option<f64> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.query(q);
            if got == Some(want) || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_it_with_a_bearer_token_and_sees_the_traffic() {
    let sink = smtp_sink(&[]);
    let token = "scrape-token-0123456789";
    let d = Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\nwww-tokens: {token}\n",
        sink.port
    ));
    // Without the token: 401, as everywhere else.
    assert_eq!(get(&d, "/metrics", None).0, 401);
    assert_eq!(get(&d, "/metrics", Some("Bearer wrong")).0, 401);
    let prometheus = Prometheus::start(d.www, token);
    for i in 0..5 {
        let (ok, out) = swaks(&d, "a@example.net", &format!("user{i}@example.com"), &[]);
        assert!(ok, "{out}");
    }
    assert_eq!(
        prometheus.wait_for("up", 1.0, Duration::from_secs(60)),
        Some(1.0),
        "Prometheus could not scrape the daemon"
    );
    let q = "sum(sluice_messages_received_total{listener=\"smtp\",result=\"accepted\"})";
    assert_eq!(prometheus.wait_for(q, 5.0, Duration::from_secs(60)), Some(5.0));
    let q = "sum(sluice_delivery_verdicts_total{verdict=\"delivered\"})";
    assert_eq!(prometheus.wait_for(q, 5.0, Duration::from_secs(60)), Some(5.0));
}
