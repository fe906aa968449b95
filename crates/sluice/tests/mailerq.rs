//! A MailerQ installation moving over: its config file unchanged (with an
//! instance file over it, MailerQ's `--config-file`), its older RabbitMQ
//! keys, its meaning of `smtp-connections`, `www-port: 0`. Real broker,
//! real SMTP peers.

mod common;
use common::peers::{recorded, recorder};
use common::policy::arrivals;
use common::rabbit::{prefix, Broker};
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const MAILERQ_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mailerq/config.txt");

/// Queue names of this test on the shared broker.
fn queues(p: &str) -> String {
    ["outbox", "results", "success", "failure", "retry"]
        .iter()
        .map(|q| format!("rabbitmq-{q}: {p}{q}\n"))
        .collect::<String>()
        + &format!("rabbitmq-inbox: {p}outbox\n")
}

#[test]
fn a_mailerq_config_file_runs_unchanged_under_an_instance_file() {
    let broker = Broker::shared();
    let p = prefix();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.jsonl");
    let sink = recorder(&out, None);
    // What differs on this machine goes in the instance's own file, as
    // MailerQ's multiple-instances page does it; config.txt is untouched.
    let instance = format!(
        "rabbitmq-address: amqp://guest:guest@127.0.0.1:{}/\n{}rabbitmq-exchange: {p}mailerq\ndatabase-address: sqlite://{}\nstorage-address: directory://{}\nlock:\nuser:\ndelivery-enabled: true\nsmtp-sink-address: 127.0.0.1\nsmtp-sink-port: {}\n",
        broker.port,
        queues(&p),
        dir.path().join("settings.db").display(),
        dir.path().join("storage").display(),
        sink.port
    );
    let d = Daemon::start_over(Path::new(MAILERQ_CONFIG), &instance);

    let check = d.cli(&["config", "check"], b"");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let stderr = String::from_utf8_lossy(&check.stderr);
    let warned: Vec<&str> = stderr
        .lines()
        .map(|l| {
            let rest = l.split("config.txt:").nth(1).unwrap_or(l);
            rest.split(": ").nth(1).unwrap_or(rest)
        })
        .collect();
    assert_eq!(
        warned,
        [
            "license",
            "rabbitmq-qos",
            "error-log",
            "send-log-file",
            "received-log-file"
        ],
        "one warning per key Sluice does not act on, nothing else:\n{stderr}"
    );
    let shown = String::from_utf8_lossy(&check.stdout);
    for line in [
        "retry-interval: 600,600,1800,1800,3600,3600,7200    # ",
        "smtp-maxsize: 50MB    # ",
        "www-password: ********    # ",
        "dns-min-ttl: 60    # ",
        // MailerQ's name, read as Sluice's.
        "delivery-ips: 127.0.0.1    # ",
    ] {
        assert!(shown.contains(line), "{line} from config.txt:\n{shown}");
    }
    assert!(
        shown.contains(&format!(
            "rabbitmq-address: amqp://guest:***@127.0.0.1:{}/    # ",
            broker.port
        )),
        "{shown}"
    );

    // Mail in over SMTP lands on the outbox (rabbitmq-inbox = outbox, as
    // most MailerQ users set it), is delivered, and its result is in RabbitMQ.
    let (ok, transcript) = swaks(&d, "news@example.net", "reader@example.com", &["--body", "moved over"]);
    assert!(ok, "{transcript}");
    let seen = arrivals(&out, 1, WAIT);
    assert_eq!(seen.len(), 1, "{}", d.log_tail(40));
    assert_eq!(seen[0]["to"], serde_json::json!(["reader@example.com"]), "{}", seen[0]);
    let results = broker.get(&format!("{p}results"), 1, WAIT);
    assert_eq!(results.len(), 1, "{}", d.log_tail(40));
    let r = &results[0]["results"][0];
    assert_eq!(
        (r["state"].as_str(), r["result"].as_str()),
        (Some("message"), Some("accepted")),
        "{r}"
    );
}

#[test]
fn mailerq_3_rabbitmq_host_user_password_vhost_reach_the_broker() {
    let broker = Broker::shared();
    let p = prefix();
    let d = Daemon::start(&format!(
        "rabbitmq-host: 127.0.0.1\nrabbitmq-port: {}\nrabbitmq-user: guest\nrabbitmq-password: guest\nrabbitmq-vhost: /\n{}",
        broker.port,
        queues(&p)
    ));
    let (ok, transcript) = swaks(&d, "a@example.net", "b@example.com", &[]);
    assert!(ok, "{transcript}");
    let got = broker.get(&format!("{p}outbox"), 1, WAIT);
    assert_eq!(got.len(), 1, "{}", d.log_tail(40));
    assert_eq!(got[0]["recipient"], "b@example.com");
}

#[test]
fn smtp_connections_counts_incoming_and_outgoing_together() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.jsonl");
    let sink = recorder(&out, None);
    let d = Daemon::start(&format!(
        "smtp-connections: 1\ndelivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\n",
        sink.port
    ));
    // One client holds the only connection: a second is refused with 421...
    let mut first = d.session();
    let mut second = d.connect();
    let refused = second.reply();
    assert!(refused.starts_with("421 "), "{refused}");
    // ...and delivery waits for it too.
    common::policy::inject(&d, &[common::policy::message(0, "example.com")]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        recorded(&out).len(),
        0,
        "delivered while the inbound session held the one connection"
    );
    assert!(first.cmd("QUIT").starts_with("221"));
    drop(first);
    assert_eq!(arrivals(&out, 1, WAIT).len(), 1, "{}", d.log_tail(40));
}

#[test]
fn www_port_0_serves_https_only() {
    let dir = tempfile::tempdir().unwrap();
    common::peers::self_signed(dir.path(), "localhost");
    let (smtp, https) = (free_port(), free_port());
    let config = dir.path().join("config.txt");
    std::fs::write(
        &config,
        format!(
            "smtp-port: {smtp}\nwww-port: 0\nwww-secure-port: {https}\nwww-certificate: {0}/cert.pem\nwww-private-key: {0}/key.pem\nwww-password: pw\ndata-directory: {0}/data\ndelivery-enabled: false\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .stderr(log)
        .spawn()
        .unwrap();
    let probe = format!(
        "import ssl, urllib.request, urllib.error, base64\nctx = ssl._create_unverified_context()\nreq = urllib.request.Request('https://127.0.0.1:{https}/v1/overview', headers={{'Authorization': 'Basic ' + base64.b64encode(b'x:pw').decode()}})\nprint(urllib.request.urlopen(req, context=ctx, timeout=5).status)\n"
    );
    let deadline = Instant::now() + WAIT;
    let answered = loop {
        let o = std::process::Command::new("python3")
            .args(["-c", &probe])
            .output()
            .unwrap();
        if o.status.success() {
            break String::from_utf8_lossy(&o.stdout).trim().to_string();
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break String::new();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert_eq!(answered, "200", "{log}");
    assert!(log.contains("plain HTTP off (www-port: 0)"), "{log}");
    assert!(!log.contains("HTTP API listening"), "{log}");
}

/// A MailerQ timestamp (UTC) `secs` from now.
fn in_seconds(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[test]
fn mailerq_5_json_from_pika_is_delivered_and_its_results_use_5x_names() {
    let broker = Broker::shared();
    let p = prefix();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.jsonl");
    let sink = recorder(&out, None);
    let d = Daemon::start(&format!(
        "rabbitmq-address: {}\n{}delivery-enabled: true\n",
        broker.address,
        queues(&p)
    ));
    let relay = serde_json::json!({"hostname": "127.0.0.1", "port": sink.port});
    let dead = serde_json::json!({"hostname": "127.0.0.1", "port": free_port()});
    let not_before = in_seconds(3);
    let messages = [
        // MailerQ's JSON form of a message, to its own smarthost (5.x `hostname`).
        serde_json::json!({
            "envelope": "news@example.net", "recipient": "form@example.com", "smarthost": relay,
            "mime": {"from": "News <news@example.net>", "to": "form@example.com", "subject": "json form",
                     "text": "the plain part", "html": "<p>the html part</p>"},
            "tags": ["Customer", "Campaign"], "pool": "warm", "priority": 3, "custom": "kept"
        }),
        // `ips: []` fails, as MailerQ fails it.
        serde_json::json!({"recipient": "noips@example.com", "mime": "Subject: x\r\n\r\nx\r\n", "ips": [], "smarthost": relay}),
        // Its own schedule: retried after 1 s, not retry-interval's minutes, then given up.
        serde_json::json!({"recipient": "retries@example.com", "mime": "Subject: x\r\n\r\nx\r\n", "smarthost": dead,
                           "retries": [1, 1], "maxattempts": 2}),
        // 5.x `nextattempt`: not tried before then.
        serde_json::json!({"recipient": "later@example.com", "mime": "Subject: x\r\n\r\nx\r\n", "smarthost": relay,
                           "nextattempt": not_before}),
    ];
    let mut bodies: Vec<String> = messages.iter().map(|m| m.to_string()).collect();
    bodies.push("not json".into());
    broker.publish(&format!("{p}outbox"), &bodies);

    let results = broker.get(&format!("{p}results"), 5, Duration::from_secs(60));
    assert_eq!(results.len(), 5, "{}", d.log_tail(40));
    let by = |rcpt: &str| {
        results
            .iter()
            .find(|r| r["recipient"] == rcpt)
            .unwrap_or_else(|| panic!("{rcpt}: {results:?}"))
            .clone()
    };
    let last = |r: &serde_json::Value| {
        let all = r["results"].as_array().unwrap();
        let e = &all[all.len() - 1];
        format!("{}/{}", e["state"].as_str().unwrap(), e["result"].as_str().unwrap())
    };
    let form = by("form@example.com");
    assert_eq!(last(&form), "message/accepted", "{form}");
    assert_eq!(form["tags"], serde_json::json!(["Customer", "Campaign"]));
    assert_eq!(
        (form["pool"].as_str(), form["custom"].as_str()),
        (Some("warm"), Some("kept"))
    );
    assert_eq!(last(&by("noips@example.com")), "process/error");
    let retried = by("retries@example.com");
    assert_eq!(last(&retried), "process/timeout", "{retried}");
    assert_eq!(
        retried["results"].as_array().unwrap().len(),
        3,
        "two attempts and the giving up: {retried}"
    );
    let later = by("later@example.com");
    assert_eq!(last(&later), "message/accepted");
    let sent_at = later["results"][0]["time"].as_str().unwrap().to_string();
    assert!(
        sent_at >= not_before,
        "tried at {sent_at}, before nextattempt {not_before}"
    );
    let invalid = results.iter().find(|r| r["message"] == "not json").unwrap();
    assert_eq!(last(invalid), "process/invalid");

    // The JSON form arrived as a MIME message with both parts.
    let seen = recorded(&out);
    let data = seen
        .iter()
        .find(|m| m["to"] == serde_json::json!(["form@example.com"]))
        .map(|m| m["data"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("{seen:?}"));
    for part in [
        "Subject: json form",
        "multipart/alternative",
        "the plain part",
        "the html part",
    ] {
        assert!(data.contains(part), "{part}:\n{data}");
    }
}

#[test]
fn mailerq_5_headers_and_v1_inject_reach_the_inbox_as_mailerq_writes_them() {
    let broker = Broker::shared();
    let p = prefix();
    let d = Daemon::start(&format!(
        "rabbitmq-address: {}\n{}rabbitmq-inbox: {p}inbox\n",
        broker.address,
        queues(&p).replace(&format!("rabbitmq-inbox: {p}outbox\n"), "")
    ));
    let (ok, transcript) = swaks(
        &d,
        "s@example.net",
        "a@example.com",
        &[
            "--add-header",
            "X-MQ-IP: 192.0.2.1",
            "--add-header",
            "x-mq-ip: 192.0.2.2",
            "--add-header",
            "X-MQ-Tag: Customer",
            "--add-header",
            "x-mq-tag: Campaign",
            "--add-header",
            "x-mq-smarthost-hostname: relay.example",
            "--add-header",
            "x-mq-failure-queue: my-failures",
            "--add-header",
            "x-mq-retries: 300,600",
        ],
    );
    assert!(ok, "{transcript}");
    let (status, answer) = d.post(
        "/v1/inject",
        br#"{"envelope": "s@example.net", "recipient": "b@example.com", "mime": "Subject: rest\r\n\r\nvia rest\r\n"}"#,
    );
    assert!(status.contains("200"), "{status} {answer}");
    let got = broker.get(&format!("{p}inbox"), 2, WAIT);
    assert_eq!(got.len(), 2, "{}", d.log_tail(40));
    let smtp = got.iter().find(|m| m["recipient"] == "a@example.com").unwrap();
    assert_eq!(smtp["ips"], serde_json::json!(["192.0.2.1", "192.0.2.2"]));
    assert_eq!(smtp["tags"], serde_json::json!(["Customer", "Campaign"]));
    assert_eq!(smtp["smarthost"]["hostname"], "relay.example");
    assert_eq!(
        smtp["queues"],
        serde_json::json!({"failure": "my-failures", "results": null, "success": null, "retry": null})
    );
    assert_eq!(smtp["retries"], serde_json::json!([300, 600]));
    assert!(!smtp["mime"].as_str().unwrap().to_ascii_lowercase().contains("x-mq-"));
    let rest = got.iter().find(|m| m["recipient"] == "b@example.com").unwrap();
    assert_eq!(rest["http"]["ip"], "127.0.0.1", "{rest}");
    assert!(rest["http"]["received"].is_string(), "{rest}");
    assert!(rest["message-id"].is_string());
    assert_eq!(broker.count(&format!("{p}outbox")), 0, "to the inbox, not the outbox");
}
