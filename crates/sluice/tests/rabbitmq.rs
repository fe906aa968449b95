//! The queues in RabbitMQ: a real broker, and pika (Python's AMQP client) on
//! the other side, reading and writing the spec's JSON.

mod common;
use common::peers::{smtp_sink, smtp_sink_on};
use common::policy::inject;
use common::rabbit::{prefix, Broker};
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn message(i: usize) -> Value {
    json!({
        "envelope": "sender@example.net",
        "recipient": format!("user{i}@a.test"),
        "mime": format!("Subject: rabbit {i}\r\n\r\nbody {i}\r\n"),
        "n": i,
    })
}

#[test]
fn smtp_in_lands_on_the_outbox_as_the_spec_json() {
    let broker = Broker::shared();
    let p = prefix();
    let d = Daemon::start(&broker.config(&p));
    let (ok, transcript) = swaks(
        &d,
        "s@example.net",
        "a@example.com,b@example.org",
        &["--body", "hello rabbit"],
    );
    assert!(ok, "{transcript}");
    let got = broker.get(&format!("{p}outbox"), 2, WAIT);
    assert_eq!(got.len(), 2, "{}", d.log());
    let mut rcpts: Vec<&str> = got.iter().map(|m| m["recipient"].as_str().unwrap()).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["a@example.com", "b@example.org"]);
    for m in &got {
        assert_eq!(m["envelope"], "s@example.net");
        assert!(m["mime"].as_str().unwrap().contains("hello rabbit"));
        assert!(
            transcript.contains(m["message-id"].as_str().unwrap()),
            "the 250 names the id"
        );
    }
}

#[test]
fn pika_publishes_sluice_delivers_pika_reads_the_results() {
    let broker = Broker::shared();
    let p = prefix();
    let sink = smtp_sink(&[]);
    let d = Daemon::start(&format!(
        "{}delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\n",
        broker.config(&p),
        sink.port
    ));
    let mut bodies: Vec<String> = (0..3).map(|i| message(i).to_string()).collect();
    bodies.push("{this is not json".into());
    broker.publish(&format!("{p}outbox"), &bodies);
    let results = broker.get(&format!("{p}results"), 4, WAIT);
    assert_eq!(results.len(), 4, "{}", d.log());
    let success = broker.get(&format!("{p}success"), 3, WAIT);
    assert_eq!(success.len(), 3);
    for s in &success {
        let e = &s["results"][0];
        assert_eq!(
            (e["state"].as_str(), e["result"].as_str()),
            (Some("message"), Some("accepted")),
            "{s}"
        );
        assert!(s.get("mime").is_none());
        assert!(s["n"].is_u64(), "custom properties are kept: {s}");
    }
    let failure = broker.get(&format!("{p}failure"), 1, WAIT);
    assert_eq!(failure.len(), 1);
    let e = &failure[0]["results"][0];
    assert_eq!(
        (e["state"].as_str(), e["result"].as_str()),
        (Some("process"), Some("invalid")),
        "{e}"
    );
    assert_eq!(failure[0]["message"], "{this is not json");
    assert_eq!(broker.count(&format!("{p}outbox")), 0);
}

#[test]
fn a_retry_waits_in_a_delay_queue() {
    let broker = Broker::shared();
    let p = prefix();
    let sink = smtp_sink(&["-r", "rcpt"]);
    let d = Daemon::start(&format!(
        "{}delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\nretry-interval: 300\n",
        broker.config(&p),
        sink.port
    ));
    broker.publish(&format!("{p}outbox"), &[message(1).to_string()]);
    let retry = broker.get(&format!("{p}retry"), 1, WAIT);
    assert_eq!(retry.len(), 1, "{}", d.log());
    // 300 s rounds down to the 256 s bucket; nothing is back in the outbox yet.
    let delay = format!("sluice.delay.{p}outbox.256");
    let deadline = std::time::Instant::now() + WAIT;
    while broker.count(&delay) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(broker.count(&delay), 1, "{}", d.log());
    assert_eq!(broker.count(&format!("{p}outbox")), 0);
    let stats = json_lines(&d.cli(&["queue", "stats"], b"").stdout);
    let outbox = stats
        .iter()
        .find(|q| q["name"] == format!("{p}outbox"))
        .expect("outbox in stats");
    assert_eq!(outbox["delayed"], 1, "{stats:?}");
}

#[test]
fn broker_down_at_start_means_451_until_it_comes_up() {
    let broker = Broker::private();
    broker.stop();
    let p = prefix();
    let d = Daemon::start(&broker.config(&p));
    let mut c = d.session();
    let r = c.cmd("MAIL FROM:<a@b.test>");
    assert!(r.starts_with("451 4.3.0"), "{r}");
    assert!(c.cmd("NOOP").starts_with("250"), "the session goes on");
    broker.start();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let r = c.cmd("MAIL FROM:<a@b.test>");
        if r.starts_with("250") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {r} after the broker came up"
        );
        // Each 451 counts toward the session's 20 errors: try again on a new
        // session, as a client would, while the reconnect backoff runs.
        std::thread::sleep(Duration::from_millis(200));
        c = d.session();
    }
    assert!(c.cmd("RCPT TO:<after@example.com>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: back\r\n\r\nbody\r\n");
    let r = c.cmd(".");
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(broker.get(&format!("{p}outbox"), 1, WAIT).len(), 1);
}

#[test]
fn two_instances_share_the_outbox() {
    let broker = Broker::shared();
    let p = prefix();
    let dump = tempfile::tempdir().unwrap();
    let sink = smtp_sink_on("127.0.0.1", &[], Some(dump.path()));
    let logs = tempfile::tempdir().unwrap();
    let daemons: Vec<Daemon> = (0..2)
        .map(|i| {
            Daemon::start(&format!(
                "{}delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\nsend-log: {}\nrabbitmq-prefetch: 50\n",
                broker.config(&p),
                sink.port,
                logs.path().join(format!("send{i}.log")).display()
            ))
        })
        .collect();
    // Both consume before anything is published, so both can get work.
    broker.wait_consumers(&format!("{p}outbox"), 2);
    let n = 400;
    let bodies: Vec<String> = (0..n).map(|i| message(i).to_string()).collect();
    broker.publish(&format!("{p}outbox"), &bodies);
    let success = broker.get(&format!("{p}success"), n, Duration::from_secs(60));
    assert_eq!(success.len(), n, "{}", daemons[0].log());
    let worked: Vec<usize> = (0..2)
        .map(|i| {
            std::fs::read_to_string(logs.path().join(format!("send{i}.log")))
                .unwrap_or_default()
                .lines()
                .count()
        })
        .collect();
    eprintln!("two instances: deliveries per instance {worked:?}");
    assert!(worked.iter().all(|&w| w > 0), "both did work: {worked:?}");
    assert_eq!(worked.iter().sum::<usize>(), n);
    let delivered = std::fs::read_dir(dump.path()).unwrap().count();
    assert_eq!(delivered, n, "each message delivered once");
}

/// One client that sends `count` messages on one connection, retrying each
/// after a 451 and reconnecting after a 421 (as an MTA would); returns the
/// ids it got a 250 for and how many 451s it saw.
/// Sends `count` messages, trying again after a 451 or a lost session, until
/// `deadline`; returns the queue ids of the acknowledged ones and the number of 451s.
fn persistent_sender(port: u16, thread: usize, count: usize, deadline: std::time::Instant) -> (Vec<String>, usize) {
    let mut acked = Vec::new();
    let mut refusals = 0;
    let mut c = Smtp::connect(port);
    c.reply();
    c.cmd("EHLO load.test");
    let mut i = 0;
    while i < count && std::time::Instant::now() < deadline {
        let rcpt = format!("t{thread}-{i}@a.test");
        let mail = c.cmd("MAIL FROM:<s@source.test>");
        let reply = if mail.starts_with("250") {
            c.cmd(&format!("RCPT TO:<{rcpt}>"));
            c.cmd("DATA");
            c.send(format!("Subject: load {thread}-{i}\r\n\r\nbody\r\n").as_bytes());
            c.cmd(".")
        } else {
            mail
        };
        if reply.starts_with("250") {
            acked.push(
                reply
                    .split("queued as ")
                    .nth(1)
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .to_string(),
            );
            i += 1;
        } else if reply.starts_with("451") {
            refusals += 1;
            std::thread::sleep(Duration::from_millis(100));
        } else if reply.starts_with("421") || reply.is_empty() {
            // Too many errors in one session: connect again, as an MTA would.
            c = Smtp::connect(port);
            c.reply();
            c.cmd("EHLO load.test");
        } else {
            panic!("unexpected reply {reply}");
        }
    }
    c.cmd("QUIT");
    (acked, refusals)
}

#[test]
fn broker_restart_under_load_loses_nothing() {
    let broker = Broker::private();
    let p = prefix();
    let sink = smtp_sink(&[]);
    let d = Daemon::start(&format!(
        "{}delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\nlog-level: info\n",
        broker.config(&p),
        sink.port
    ));
    // 10,000 messages from 20 clients; the broker stops for 2 s in the middle.
    // Both phases have deadlines, so a stall fails with the daemon's log
    // instead of running into the harness's timeout.
    let sending_deadline = std::time::Instant::now() + Duration::from_secs(120);
    let senders: Vec<_> = (0..20)
        .map(|t| {
            let port = d.smtp;
            std::thread::spawn(move || persistent_sender(port, t, 500, sending_deadline))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    broker.stop();
    std::thread::sleep(Duration::from_secs(2));
    broker.start();
    let mut acked = std::collections::HashSet::new();
    let mut refused = 0;
    for s in senders {
        let (ids, refusals) = s.join().unwrap();
        acked.extend(ids);
        refused += refusals;
    }
    assert_eq!(
        acked.len(),
        10_000,
        "the senders could not store every message within 120 s after the restart:\n{}",
        d.log_tail(200)
    );
    // Every acknowledged message ends with a result.
    let mut results: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while acked.iter().any(|id| !results.contains_key(id)) && std::time::Instant::now() < deadline {
        for r in broker.get(&format!("{p}results"), 10_000, Duration::from_secs(3)) {
            assert_eq!(
                r["results"].as_array().unwrap().last().unwrap()["result"],
                "accepted",
                "{r}"
            );
            *results
                .entry(r["message-id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    let missing = acked.iter().filter(|id| !results.contains_key(*id)).count();
    let duplicates: usize = results.values().map(|c| c - 1).sum();
    let unacked_stored = results.keys().filter(|id| !acked.contains(*id)).count();
    eprintln!(
        "broker restart under load: {} acknowledged, {refused} answered 451 and retried, {} with a result, \
         {duplicates} delivered twice, {unacked_stored} stored without a 250 (cut off by the restart)",
        acked.len(),
        results.len()
    );
    assert_eq!(
        missing,
        0,
        "acknowledged messages without a result:\n{}",
        d.log_tail(200)
    );
}

#[test]
fn the_hosts_of_the_address_are_tried_in_turn() {
    let broker = Broker::shared();
    let p = prefix();
    // The first host has no broker; the second is the real one.
    let dead = free_port();
    let address = broker
        .address
        .replacen("@127.0.0.1:", &format!("@127.0.0.1:{dead};127.0.0.1:"), 1);
    let config = broker.config(&p).replace(&broker.address, &address);
    let d = Daemon::start(&config);
    let (ok, transcript) = swaks(&d, "s@example.net", "a@example.com", &[]);
    assert!(ok, "{transcript}\n{}", d.log());
    assert_eq!(broker.get(&format!("{p}outbox"), 1, WAIT).len(), 1);
}

#[test]
fn mailerq_style_addresses_reach_the_vhost_slash() {
    let broker = Broker::shared();
    // The shared broker's address ends in `/%2f`; MailerQ users write `/`,
    // nothing at all, or comma-separated whole URLs (a dead one first).
    let base = broker.address.trim_end_matches("/%2f").to_string();
    let dead = base.replacen(
        &format!(":{}", base.rsplit(':').next().unwrap()),
        &format!(":{}", free_port()),
        1,
    );
    for address in [format!("{base}/"), base.clone(), format!("{dead}/, {base}/")] {
        let p = prefix();
        let config = broker.config(&p).replace(&broker.address, &address);
        let d = Daemon::start(&config);
        let (ok, transcript) = swaks(&d, "s@example.net", "a@example.com", &[]);
        assert!(ok, "{address}: {transcript}\n{}", d.log());
        assert_eq!(broker.get(&format!("{p}outbox"), 1, WAIT).len(), 1, "{address}");
    }
}

#[test]
fn a_refused_login_or_vhost_is_an_error_naming_the_broker_and_not_retried_fast() {
    let broker = Broker::shared();
    let wrong_password = broker.address.replacen("guest:guest@", "guest:wrong@", 1);
    let no_vhost = broker.address.replace("/%2f", "/no-such-vhost");
    for address in [wrong_password, no_vhost] {
        let p = prefix();
        let d = Daemon::start(&broker.config(&p).replace(&broker.address, &address));
        let host = address
            .split('@')
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let deadline = std::time::Instant::now() + WAIT;
        let refused = |log: &str| {
            log.lines()
                .filter(|l| l.contains("ERROR") && l.contains("RabbitMQ refused the login or the vhost"))
                .count()
        };
        while refused(&d.log()) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = d.log();
        let line = log
            .lines()
            .find(|l| l.contains("RabbitMQ refused"))
            .unwrap_or_else(|| panic!("{address}: {log}"));
        assert!(line.contains(&host), "names the broker: {line}");
        assert!(!line.contains("wrong"), "no password in the log: {line}");
        let (ok, transcript) = swaks(&d, "s@example.net", "a@example.com", &[]);
        assert!(!ok && transcript.contains("451"), "{transcript}");
        // Tried again slowly, not in a loop: still the one line.
        assert_eq!(refused(&d.log()), 1, "{}", d.log());
    }
}

#[test]
fn a_missing_rabbitmq_exchange_is_declared_and_the_queues_bound_to_it() {
    let broker = Broker::shared();
    let p = prefix();
    // No one made this exchange: MailerQ creates it, so does Sluice.
    let d = Daemon::start(&format!("{}rabbitmq-exchange: {p}mailerq\n", broker.config(&p)));
    let (ok, transcript) = swaks(&d, "s@example.net", "a@example.com", &[]);
    assert!(ok, "{transcript}\n{}", d.log());
    assert_eq!(broker.get(&format!("{p}outbox"), 1, WAIT).len(), 1, "{}", d.log());
}

#[test]
fn sluice_pop_takes_what_it_asks_for_and_leaves_the_rest() {
    let broker = Broker::shared();
    let p = prefix();
    let d = Daemon::start(&broker.config(&p));
    let results = format!("{p}results");
    broker.publish(&results, &(0..5).map(|i| message(i).to_string()).collect::<Vec<_>>());
    let out = d.cli(&["queue", "pop", &results, "-n", "2"], b"");
    assert_eq!(
        json_lines(&out.stdout).len(),
        2,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No standing consumer keeps the other three from another program.
    assert_eq!(broker.get(&results, 10, Duration::from_secs(2)).len(), 3);
}

#[test]
fn rabbitmq_maxpriority_makes_the_outbox_a_priority_queue_and_lazy_queues_lazy() {
    let broker = Broker::shared();
    let p = prefix();
    let d = Daemon::start(&format!(
        "{}rabbitmq-maxpriority: 9\nrabbitmq-lazy: true\n",
        broker.config(&p)
    ));
    let (outbox, results) = (format!("{p}outbox"), format!("{p}results"));
    // RabbitMQ refuses a second declaration with other arguments: the queues
    // are what MailerQ declares, the outbox a priority queue and no other.
    assert_eq!(
        broker.same_arguments(&outbox, &json!({"x-max-priority": 9, "x-queue-mode": "lazy"})),
        "same"
    );
    assert!(broker
        .same_arguments(&outbox, &json!({"x-queue-mode": "lazy"}))
        .starts_with("different"));
    assert_eq!(
        broker.same_arguments(&results, &json!({"x-queue-mode": "lazy"})),
        "same"
    );
    // Each message is published with its JSON priority (above the maximum: the maximum).
    let messages: Vec<Value> = [(1, "low"), (9, "high"), (5, "middle"), (200, "highest asked")]
        .iter()
        .map(|(priority, name)| {
            let mut m = message(0);
            m["priority"] = json!(priority);
            m["name"] = json!(name);
            m
        })
        .collect();
    inject(&d, &messages);
    let got = broker.get_props(&outbox, 4, WAIT);
    let seen: Vec<(u64, String)> = got
        .iter()
        .map(|m| {
            let body: Value = serde_json::from_str(m["body"].as_str().unwrap()).unwrap();
            (
                m["priority"].as_u64().unwrap_or(0),
                body["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // The broker hands out the higher priorities first.
    assert_eq!(
        seen,
        [(9, "high"), (9, "highest asked"), (5, "middle"), (1, "low")].map(|(n, s)| (n, s.to_string())),
        "{}",
        d.log()
    );
}

#[test]
fn gzip_bodies_are_read_always_and_written_with_rabbitmq_encoding_gzip() {
    let broker = Broker::shared();
    let p = prefix();
    let sink = smtp_sink(&[]);
    let d = Daemon::start(&format!(
        "{}delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\nrabbitmq-encoding: gzip\n",
        broker.config(&p),
        sink.port
    ));
    let mut zipped = message(1);
    zipped["name"] = json!("zipped");
    let mut plain = message(2);
    plain["name"] = json!("plain");
    broker.publish_each(
        &format!("{p}outbox"),
        &[
            json!({"body": zipped.to_string(), "encoding": "gzip"}),
            json!({"body": plain.to_string()}),
            // Says gzip, is not: the invalid-input result, not a crash or a loop.
            json!({"body": "neither gzip nor JSON", "encoding": "gzip", "compress": false}),
        ],
    );
    let results = broker.get_props(&format!("{p}results"), 3, WAIT);
    assert_eq!(results.len(), 3, "{}", d.log());
    let mut names = Vec::new();
    for r in &results {
        assert_eq!(r["encoding"], "gzip", "Sluice publishes gzip: {r}");
        let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).expect("gzip of JSON");
        let e = &body["results"][0];
        match body["name"].as_str() {
            Some(name) => {
                assert_eq!(e["result"], "accepted", "{body}");
                names.push(name.to_string());
            }
            None => assert_eq!(e["result"], "invalid", "{body}"),
        }
    }
    names.sort();
    assert_eq!(names, ["plain", "zipped"]);
    assert!(d.log().contains("could not be decoded"), "{}", d.log());
}

#[test]
fn with_rabbitmq_declare_false_queues_are_checked_never_made() {
    let broker = Broker::shared();
    let p = prefix();
    let outbox = format!("{p}outbox");
    // Nothing exists yet: an error line saying what is missing, 451, and no queue made.
    let d = Daemon::start(&format!("{}rabbitmq-declare: false\n", broker.config(&p)));
    let deadline = std::time::Instant::now() + WAIT;
    while !d
        .log()
        .contains("does not exist in RabbitMQ and rabbitmq-declare is false")
    {
        assert!(std::time::Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, transcript) = swaks(&d, "s@example.net", "a@example.com", &[]);
    assert!(!ok && transcript.contains("451"), "{transcript}");
    assert!(!broker.exists(&outbox), "not declared");
    drop(d);
    // The operator made the queues, plain (no priority): a MailerQ config
    // asking for priorities fails to declare over them, and with
    // rabbitmq-declare: false takes them as they are.
    for q in ["outbox", "results", "success", "failure", "retry"] {
        broker.publish(&format!("{p}{q}"), &[]);
    }
    let d = Daemon::start(&format!("{}rabbitmq-maxpriority: 4\n", broker.config(&p)));
    while !d.log().contains("exists in RabbitMQ with other settings") {
        assert!(std::time::Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(d);
    let d = Daemon::start(&format!(
        "{}rabbitmq-maxpriority: 4\nrabbitmq-declare: false\n",
        broker.config(&p)
    ));
    let (ok, transcript) = swaks(&d, "s@example.net", "a@example.com", &[]);
    assert!(ok, "{transcript}\n{}", d.log());
    assert_eq!(broker.get(&outbox, 1, WAIT).len(), 1, "{}", d.log());
    assert_eq!(broker.same_arguments(&outbox, &json!({})), "same", "left as it was");
}

/// The run's broker's TLS listener (`RABBITMQ_TEST_TLS_ADDRESS`) and the CA
/// that signed its certificate (`RABBITMQ_TEST_CA`), which `scripts/test.sh` sets.
fn tls_broker() -> (String, String) {
    let var = |v: &str| std::env::var(v).unwrap_or_default();
    let (address, ca) = (var("RABBITMQ_TEST_TLS_ADDRESS"), var("RABBITMQ_TEST_CA"));
    assert!(
        !address.is_empty() && !ca.is_empty(),
        "RABBITMQ_TEST_TLS_ADDRESS/_CA are not set: run the tests with scripts/test.sh, whose broker listens with TLS too"
    );
    (address, ca)
}

#[test]
fn amqps_checks_the_brokers_certificate_unless_rabbitmq_verify_is_false() {
    let broker = Broker::shared();
    let (tls, ca) = tls_broker();
    let dir = tempfile::tempdir().unwrap();
    // A CA that did not sign the broker's certificate.
    common::peers::self_signed(dir.path(), "Some other CA");
    let other_ca = dir.path().join("cert.pem").display().to_string();
    let tls_port = tls.rsplit(':').next().unwrap().split('/').next().unwrap().to_string();
    for (verify, trusted, delivered) in [(true, &ca, true), (true, &other_ca, false), (false, &other_ca, true)] {
        let p = prefix();
        let config = format!(
            "{}rabbitmq-verify: {verify}\n",
            broker.config(&p).replace(&broker.address, &tls)
        );
        let d = Daemon::start_with_env(&config, &[("SSL_CERT_FILE", trusted.as_str())]);
        let what = format!("verify {verify}, CA {trusted}");
        if delivered {
            let (ok, transcript) = swaks(&d, "s@example.net", "a@example.com", &["--body", "over TLS"]);
            assert!(ok, "{what}: {transcript}\n{}", d.log());
            let got = broker.get(&format!("{p}outbox"), 1, WAIT);
            assert_eq!(got.len(), 1, "{what}: {}", d.log());
            assert!(got[0]["mime"].as_str().unwrap().contains("over TLS"));
        } else {
            let deadline = std::time::Instant::now() + WAIT;
            let refused = |log: &str| log.lines().any(|l| l.contains("ERROR") && l.contains("certificate"));
            while !refused(&d.log()) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let log = d.log();
            let line = log
                .lines()
                .find(|l| l.contains("ERROR") && l.contains("certificate"))
                .unwrap_or_else(|| panic!("{what}: {log}"));
            assert!(line.contains(&tls_port), "names the broker: {line}");
            let (ok, transcript) = swaks(&d, "s@example.net", "a@example.com", &[]);
            assert!(!ok && transcript.contains("451"), "{what}: {transcript}");
            assert_eq!(broker.count(&format!("{p}outbox")), 0, "{what}");
        }
    }
}
