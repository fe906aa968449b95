//! Delivery against real receivers (Postfix's smtp-sink, a loopback dnsmasq):
//! every outcome ends with the right result JSON in the right queues.

mod common;
use common::peers::{dns, smtp_sink, smtp_sink_on};
use common::policy::inject;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// A daemon delivering everything to `port` on loopback (smtp-sink-ip).
fn to_sink(port: u16, extra: &str) -> Daemon {
    Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {port}\n{extra}"
    ))
}

/// A daemon resolving through dnsmasq serving `zone`, connecting to MX hosts
/// on `port`; the DNS server lives as long as the returned peer.
fn resolving(zone: &[String], port: u16, extra: &str) -> (common::peers::Peer, Daemon) {
    let server = dns(zone);
    let d = Daemon::start(&format!(
        "delivery-enabled: true\ndns-server: 127.0.0.1:{}\ndelivery-port: {port}\n{extra}",
        server.port
    ));
    (server, d)
}

fn message(i: usize, domain: &str) -> Value {
    json!({
        "envelope": "sender@example.net",
        "recipient": format!("user{i}@{domain}"),
        "mime": format!("From: sender@example.net\r\nTo: user{i}@{domain}\r\nSubject: test {i}\r\n\r\nbody {i}\r\n"),
        "custom": {"n": i},
    })
}

fn last_result(m: &Value) -> &Value {
    m["results"].as_array().and_then(|r| r.last()).expect("a results entry")
}

/// The one message that arrives in `queue`.
fn one(d: &Daemon, queue: &str) -> Value {
    let mut got = d.collect(queue, 1, WAIT);
    assert_eq!(got.len(), 1, "nothing in {queue}: {}", d.log());
    got.remove(0)
}

/// The message's last result entry, which must be `state`/`result`.
fn expect(m: &Value, state: &str, result: &str) -> Value {
    let e = last_result(m).clone();
    assert_eq!(
        (e["state"].as_str(), e["result"].as_str()),
        (Some(state), Some(result)),
        "{e}"
    );
    e
}

#[test]
fn delivers_to_smtp_sink_with_results_in_the_right_queues() {
    let sink = smtp_sink(&[]);
    let logs = tempfile::tempdir().unwrap();
    let send_log = logs.path().join("send.log");
    let d = to_sink(
        sink.port,
        &format!(
            "delivery-connection-messages: 4\ndelivery-domain-connections: 2\nsend-log: {}\n",
            send_log.display()
        ),
    );
    let mut msgs: Vec<Value> = (0..30)
        .map(|i| message(i, ["a.test", "b.test", "c.test"][i % 3]))
        .collect();
    msgs[0]["keepmime"] = json!(true);
    inject(&d, &msgs);
    let results = d.collect("results", 30, WAIT);
    assert_eq!(results.len(), 30, "{}", d.log());
    assert_eq!(d.collect("success", 30, WAIT).len(), 30);
    for r in &results {
        let e = last_result(r);
        assert_eq!(r["results"].as_array().unwrap().len(), 1, "{r}");
        assert_eq!(e["state"], "message", "{e}");
        assert_eq!(e["result"], "accepted", "{e}");
        assert_eq!(e["code"], 250, "{e}");
        assert_eq!(e["to"], "127.0.0.1");
        assert_eq!(e["from"], "127.0.0.1");
        assert_eq!(e["mta"], "smtp-sink");
        assert_eq!(e["dsn"], true, "smtp-sink offers DSN");
        assert!(
            e["messages"].as_u64().unwrap() >= 1 && e["messages"].as_u64().unwrap() <= 4,
            "{e}"
        );
        assert!(e["time"].as_str().unwrap().len() == 19);
        let i = r["custom"]["n"].as_u64().unwrap();
        assert_eq!(r.get("mime").is_some(), i == 0, "mime kept only with keepmime: {r}");
    }
    assert!(d.pop_all("failure").is_empty());
    assert!(d.pop_all("retry").is_empty());
    assert!(d.pop_all("outbox").is_empty());
    // send-log: one line per attempt, written once its outcome is stored.
    let deadline = std::time::Instant::now() + WAIT;
    let mut lines = Vec::new();
    while lines.len() < 30 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        lines = json_lines(&std::fs::read(&send_log).unwrap_or_default());
    }
    assert_eq!(lines.len(), 30);
    for l in &lines {
        assert_eq!(
            (l["verdict"].as_str(), l["result"].as_str()),
            (Some("delivered"), Some("accepted")),
            "{l}"
        );
        assert_eq!(l["attempt"], 1);
        assert_eq!(l["envelope"], "sender@example.net");
        assert!(l["recipient"].as_str().unwrap().starts_with("user"));
    }
}

#[test]
fn soft_rcpt_refusal_is_retried_later_with_a_retry_copy() {
    let sink = smtp_sink(&["-r", "rcpt"]);
    let d = to_sink(sink.port, "retry-interval: 600\n");
    inject(&d, &[message(1, "a.test")]);
    let retry = one(&d, "retry");
    let e = expect(&retry, "rcptto", "error");
    assert_eq!(e["code"].as_u64().map(|c| c / 100), Some(4));
    assert!(retry[0].get("mime").is_none());
    // The message itself waits in the outbox, delayed by retry-interval.
    let stats = d.cli(&["queue", "stats"], b"");
    let stats = String::from_utf8_lossy(&stats.stdout);
    assert!(stats.contains("outbox"), "{stats}");
    let waiting = d.cli(&["queue", "peek", "outbox"], b"");
    let waiting = json_lines(&waiting.stdout);
    assert_eq!(waiting.len(), 1);
    let delayed = waiting[0]["delayed"].as_str().expect("delayed set");
    let first = e["time"].as_str().unwrap();
    assert!(delayed > first, "{delayed} after {first}");
    assert!(waiting[0]["mime"].is_string(), "the outbox copy keeps its MIME");
    assert!(d.pop_all("results").is_empty(), "not final yet");
}

#[test]
fn hard_data_refusal_is_final() {
    let sink = smtp_sink(&["-f", "data"]);
    let d = to_sink(sink.port, "");
    inject(&d, &[message(1, "a.test")]);
    let failure = one(&d, "failure");
    let e = expect(&failure, "data", "error");
    assert_eq!(e["code"].as_u64().map(|c| c / 100), Some(5));
    assert_eq!(d.collect("results", 1, WAIT).len(), 1);
    assert!(d.pop_all("retry").is_empty());
    assert!(d.pop_all("outbox").is_empty());
}

#[test]
fn disconnect_after_the_body_is_lost_and_retried() {
    let sink = smtp_sink(&["-q", "."]);
    let d = to_sink(sink.port, "");
    inject(&d, &[message(1, "a.test")]);
    let retry = one(&d, "retry");
    expect(&retry, "message", "lost");
}

#[test]
fn connect_refused_and_greeting_timeout_are_retried() {
    let unused = free_port();
    let d = to_sink(unused, "");
    inject(&d, &[message(1, "a.test")]);
    let retry = one(&d, "retry");
    expect(&retry, "connect", "error");

    let slow = smtp_sink(&["-W", "connect:10"]);
    let d = to_sink(slow.port, "delivery-timeout: 1\n");
    inject(&d, &[message(2, "a.test")]);
    let retry = one(&d, "retry");
    expect(&retry, "intro", "timeout");
}

#[test]
fn invalid_and_expired_messages_get_amqp_results() {
    let sink = smtp_sink(&[]);
    let d = to_sink(sink.port, "");
    // Straight into the outbox, untouched: no recipient, not an object, already expired, out of attempts.
    let raw = format!(
        "{}\n{}\n{}\n{}\n",
        json!({"mime": "x", "tag": "norcpt"}),
        json!("just a string"),
        json!({"recipient": "a@a.test", "mime": "x", "maxdelivertime": "2001-01-01 00:00:00", "tag": "old"}),
        json!({"recipient": "a@a.test", "mime": "x", "maxattempts": 1, "results": [{"state": "rcptto", "result": "error"}], "tag": "tried"}),
    );
    // A `key` instead of MIME, and no plugin to turn it into one.
    let raw = format!("{raw}{}\n", json!({"recipient": "a@a.test", "key": "k1", "tag": "key"}));
    let (status, body) = d.post("/queues/outbox", raw.as_bytes());
    assert!(status.contains("200"), "{status} {body}");
    let failure = d.collect("failure", 5, WAIT);
    assert_eq!(failure.len(), 5, "{}", d.log());
    let by_tag = |tag: &str| {
        failure
            .iter()
            .find(|f| f["tag"] == tag)
            .unwrap_or_else(|| panic!("no result for {tag}: {failure:?}"))
    };
    for (tag, result) in [("norcpt", "invalid"), ("old", "timeout"), ("tried", "timeout")] {
        let e = last_result(by_tag(tag));
        assert_eq!(
            (e["state"].as_str(), e["result"].as_str()),
            (Some("process"), Some(result)),
            "{tag}: {e}"
        );
    }
    let text = failure
        .iter()
        .find(|f| f["message"] == "just a string")
        .expect("the string came back");
    assert_eq!(last_result(text)["result"], "invalid");
    assert_eq!(d.collect("results", 5, WAIT).len(), 5);
}

#[test]
fn mx_lookup_with_fallback_null_mx_and_nxdomain() {
    // Two loopback addresses: the preferred MX is dead, the second is a sink.
    let sink = smtp_sink_on("127.0.0.2", &[], None);
    // On the same port elsewhere: a host that answers its greeting with 450.
    let busy = common::peers::smtp_sink_at("127.0.0.4", sink.port, &["-r", "connect"], None).expect("port free");
    let zone = vec![
        "--mx-host=greet.test,busy.mx.test,10".to_string(),
        "--mx-host=greet.test,live.mx.test,20".to_string(),
        "--host-record=busy.mx.test,127.0.0.4".to_string(),
        "--mx-host=two.test,dead.mx.test,10".to_string(),
        "--mx-host=two.test,live.mx.test,20".to_string(),
        "--host-record=dead.mx.test,127.0.0.3".to_string(),
        "--host-record=live.mx.test,127.0.0.2".to_string(),
        // No MX: the A record is the mail host (implicit MX).
        "--host-record=implicit.test,127.0.0.2".to_string(),
        // Null MX (RFC 7505): preference 0, exchange "." as raw RDATA.
        "--dns-rr=nullmx.test,15,000000".to_string(),
    ];
    let (_dns, d) = resolving(&zone, sink.port, "");
    inject(
        &d,
        &[
            message(1, "two.test"),
            message(2, "implicit.test"),
            message(3, "nullmx.test"),
            message(4, "nowhere.test"),
            message(5, "greet.test"),
        ],
    );
    let results = d.collect("results", 5, WAIT);
    assert_eq!(results.len(), 5, "{}", d.log());
    let of = |domain: &str| {
        last_result(
            results
                .iter()
                .find(|r| r["recipient"].as_str().unwrap().ends_with(domain))
                .unwrap(),
        )
        .clone()
    };
    let two = of("@two.test");
    assert_eq!(two["result"], "accepted", "{two}");
    assert_eq!(two["to"], "127.0.0.2", "fell back to the second MX: {two}");
    assert_eq!(of("@implicit.test")["result"], "accepted");
    let greet = of("@greet.test");
    assert_eq!(
        (greet["result"].as_str(), greet["to"].as_str()),
        (Some("accepted"), Some("127.0.0.2")),
        "a 4xx greeting moves on: {greet}"
    );
    drop(busy);
    for domain in ["@nullmx.test", "@nowhere.test"] {
        let e = of(domain);
        assert_eq!(
            (e["state"].as_str(), e["result"].as_str()),
            (Some("dns"), Some("error")),
            "{e}"
        );
    }
    assert_eq!(d.collect("failure", 2, WAIT).len(), 2);
    assert_eq!(d.collect("success", 3, WAIT).len(), 3);
}

/// Recipients named in the messages smtp-sink dumped, one entry per delivery.
fn dumped_recipients(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap_or_default();
        if let Some(to) = text.lines().find_map(|l| l.strip_prefix("To: ")) {
            out.push(to.trim().to_string());
        }
    }
    out
}

#[test]
fn kill_9_during_delivery_loses_nothing() {
    let dump = tempfile::tempdir().unwrap();
    // A slow receiver (1 s before answering DATA), so messages are in flight at the kill.
    let sink = smtp_sink_on("127.0.0.1", &["-w", "1"], Some(dump.path()));
    let mut d = to_sink(
        sink.port,
        "delivery-domain-connections: 2\ndelivery-connection-messages: 1000\n",
    );
    let n = 40;
    let msgs: Vec<Value> = (0..n).map(|i| message(i, ["a.test", "b.test"][i % 2])).collect();
    inject(&d, &msgs);
    // Let some finish (4 connections, ~1 s each), then kill mid-flight.
    std::thread::sleep(Duration::from_millis(2500));
    d.kill9();
    let before = dumped_recipients(dump.path()).len();
    assert!(
        before > 0 && before < n,
        "killed while delivering: {before} of {n} were delivered"
    );
    d.spawn();
    let mut results = Vec::new();
    let mut per_recipient = std::collections::HashMap::<String, usize>::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while per_recipient.len() < n && std::time::Instant::now() < deadline {
        for r in d.collect("results", 1, Duration::from_secs(1)) {
            assert_eq!(last_result(&r)["result"], "accepted", "{r}");
            *per_recipient
                .entry(r["recipient"].as_str().unwrap().to_string())
                .or_default() += 1;
            results.push(r);
        }
    }
    assert_eq!(per_recipient.len(), n, "every message has a result: {}", d.log());
    let delivered = dumped_recipients(dump.path());
    let unique: std::collections::HashSet<&String> = delivered.iter().collect();
    assert_eq!(unique.len(), n, "every message reached the receiver");
    let duplicates = delivered.len() - n;
    eprintln!(
        "kill -9 during delivery: {before} delivered before the kill, {duplicates} delivered twice \
         (accepted by the receiver but the outcome not yet stored), {} results",
        results.len()
    );
    // Only what was on the wire (4 connections) or accepted and not yet settled can repeat.
    assert!(duplicates <= 8, "{duplicates} duplicates");
}

#[test]
fn swaks_to_sluice_to_a_postfix_mailbox_with_starttls() {
    let postfix = common::peers::Postfix::start();
    let zone = vec![
        "--mx-host=pf.test,mx.pf.test,10".to_string(),
        "--host-record=mx.pf.test,127.0.0.1".to_string(),
    ];
    let (_dns, d) = resolving(&zone, postfix.port, "");
    // 8-bit text, a dot-leading line and a long header: all must arrive as sent.
    // With Date and Message-ID present Postfix adds nothing inside the message.
    let mime = "From: Sender <s@example.net>\r\nTo: bob@pf.test\r\nSubject: end to end\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <e2e-1@example.net>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\nX-Long: aaaa bbbb cccc dddd eeee ffff gggg hhhh iiii jjjj kkkk llll mmmm nnnn oooo\r\n\r\nGrüße aus Sluice\r\n.leading dot\r\n..two dots\r\n\r\nlast line\r\n";
    let file = d.dir.path().join("mail.eml");
    std::fs::write(&file, mime.strip_suffix("\r\n").unwrap()).unwrap();
    let (ok, transcript) = swaks(&d, "s@example.net", "bob@pf.test", &["--data", file.to_str().unwrap()]);
    assert!(ok, "{transcript}");
    let success = d.collect("success", 1, WAIT);
    assert_eq!(success.len(), 1, "{}\n{}", d.log(), postfix.log());
    let e = last_result(&success[0]);
    assert_eq!(e["mta"], "pf.test", "{e}");
    // STARTTLS was used; cipher and certificate are the objects MailerQ writes.
    let cipher = &e["cipher"];
    assert!(cipher["name"].as_str().is_some_and(|c| c.starts_with("TLS")), "{e}");
    assert!(
        cipher["version"].as_str().is_some_and(|v| v.starts_with("TLSv1.")),
        "{e}"
    );
    assert!(cipher["bits"].as_u64().is_some_and(|b| b >= 128), "{e}");
    let cert = &e["certificate"];
    assert!(
        cert["fingerprint"].as_str().is_some_and(|c| c.starts_with("sha256:")),
        "{e}"
    );
    assert_eq!(cert["verified"], false, "opportunistic TLS verifies nothing: {e}");
    assert!(cert["notbefore"].as_str().is_some_and(|t| t.len() == 19), "{e}");
    assert!(
        cert["notafter"].as_str().unwrap_or("") > cert["notbefore"].as_str().unwrap_or(""),
        "{e}"
    );
    assert!(cert["subject"].is_object() && cert["issuer"].is_object(), "{e}");
    assert_eq!(e["sent"]["data"], mime.len(), "the body as stored: {e}");
    assert!(
        e["sent"]["connection"].as_u64().unwrap_or(0) > mime.len() as u64,
        "commands and the body: {e}"
    );
    let delivered = postfix.mailbox(1, WAIT);
    assert_eq!(delivered.len(), 1, "{}", postfix.log());
    // Postfix stores lines with LF; what it added (Return-Path, Received, …) comes before.
    let sent = mime.replace("\r\n", "\n");
    assert!(
        delivered[0].ends_with(&sent),
        "the mailbox holds the message as injected:\n{}\n--- sent ---\n{sent}",
        delivered[0]
    );
}

#[test]
fn smarthost_with_starttls_and_auth() {
    let out = tempfile::tempdir().unwrap();
    let relay = common::peers::auth_relay("relayuser", "s3cret", out.path());
    // The configured smarthost; one message names its own (same host, wrong password).
    let d = Daemon::start(&format!(
        "delivery-enabled: true\nsmarthost: 127.0.0.1\nsmarthost-port: {}\nsmarthost-username: relayuser\nsmarthost-password: s3cret\ntls-outbound: required\n",
        relay.port
    ));
    let mut wrong = message(2, "b.test");
    wrong["smarthost"] = json!({"name": "127.0.0.1", "port": relay.port, "username": "relayuser", "password": "nope"});
    inject(&d, &[message(1, "a.test"), wrong]);
    let success = d.collect("success", 1, WAIT);
    assert_eq!(success.len(), 1, "{}", d.log());
    let ok = last_result(&success[0]);
    assert_eq!(ok["result"], "accepted", "{ok}");
    assert!(ok["cipher"]["name"].is_string(), "{ok}");
    assert_eq!(ok["authentication"], "PLAIN", "{ok}");
    // The relay's self-signed certificate, described.
    assert_eq!(ok["certificate"]["subject"]["common"], "relay.test", "{ok}");
    assert_eq!(ok["certificate"]["self-signed"], true, "{ok}");
    // A refused login is retried, not bounced (as Postfix does by default).
    let retry = d.collect("retry", 1, WAIT);
    assert_eq!(retry.len(), 1, "{}", d.log());
    let refused = last_result(&retry[0]);
    assert_eq!(refused["state"], "authplain", "{refused}");
    assert_eq!(refused["code"], 535, "{refused}");
    let saved = common::peers::relayed(out.path());
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0]["tls"], true);
    assert_eq!(saved[0]["login"], "relayuser");
    assert_eq!(saved[0]["to"], json!(["user1@a.test"]));
}

#[test]
fn tls_required_but_not_offered_and_utf8_without_smtputf8() {
    // smtp-sink offers no STARTTLS: with tls-outbound required nothing is sent in clear.
    let sink = smtp_sink(&[]);
    let d = to_sink(sink.port, "tls-outbound: required\n");
    inject(&d, &[message(1, "a.test")]);
    let retry = one(&d, "retry");
    expect(&retry, "starttls", "error");

    // -e: no ESMTP at all, so HELO, and no SMTPUTF8 for a UTF-8 address.
    let old = smtp_sink(&["-e"]);
    let d = to_sink(old.port, "");
    let mut utf8 = message(2, "b.test");
    utf8["recipient"] = json!("jö@b.test");
    inject(&d, &[utf8, message(3, "b.test")]);
    let results = d.collect("results", 2, WAIT);
    assert_eq!(results.len(), 2, "{}", d.log());
    let of = |i: u64| last_result(results.iter().find(|r| r["custom"]["n"] == i).unwrap()).clone();
    let e = of(2);
    assert_eq!(
        (e["state"].as_str(), e["result"].as_str()),
        (Some("mailfrom"), Some("error")),
        "{e}"
    );
    assert!(e["description"].as_str().unwrap().contains("SMTPUTF8"), "{e}");
    assert_eq!(of(3)["result"], "accepted", "plain ASCII goes through HELO");
}

/// A private key in PEM and its public key (DER) for the DNS record.
fn keypair(dir: &std::path::Path, name: &str, algorithm: &[&str]) -> (String, std::path::PathBuf) {
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.der"));
    let ok = std::process::Command::new("openssl")
        .arg("genpkey")
        .args(algorithm)
        .arg("-out")
        .arg(&key)
        .status()
        .unwrap();
    assert!(ok.success());
    let ok = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap();
    assert!(ok.success());
    (std::fs::read_to_string(&key).unwrap(), public)
}

#[test]
fn dkim_signatures_verify_with_dkimpy() {
    let keys = tempfile::tempdir().unwrap();
    let (rsa, rsa_pub, ed, ed_pub) = test_keys(keys.path());
    let out = tempfile::tempdir().unwrap();
    let relay = common::peers::auth_relay("u", "p", out.path());
    let d = Daemon::start(&format!(
        "delivery-enabled: true\nsmarthost: 127.0.0.1\nsmarthost-port: {}\nsmarthost-username: u\nsmarthost-password: p\n",
        relay.port
    ));
    let mut m = message(1, "a.test");
    // This layout makes the RSA b= value end at mail-auth's wrap column (see dkim::tidy).
    // LF line ends in the stored MIME: what is signed must be what is sent (CRLF).
    m["mime"] =
        json!("From: s@sign.test\nTo: user1@a.test\nSubject: signed\nX-Campaign: c1\n\nHello,  \n  signed   world\n\n");
    m["dkim"] = json!([
        {"domain": "sign.test", "selector": "rsa", "key": rsa, "headers": ["X-Campaign"]},
        {"domain": "sign.test", "selector": "ed", "key": ed},
        {"domain": "sign.test", "selector": "old", "key": rsa, "expire": "2001-01-01 00:00:00"},
    ]);
    inject(&d, &[m]);
    let success = d.collect("success", 1, WAIT);
    assert_eq!(success.len(), 1, "{}", d.log());
    let saved = common::peers::relayed(out.path());
    let data = saved[0]["data"].as_str().unwrap();
    assert_eq!(
        data.matches("DKIM-Signature:").count(),
        2,
        "the expired key signs nothing:\n{data}"
    );
    assert!(
        data.contains("h=X-Campaign:"),
        "`headers` adds to the signed headers: {data}"
    );
    assert_eq!(
        dkimpy(out.path(), data, &rsa_pub, &ed_pub),
        ["ed d=sign.test pass", "rsa d=sign.test pass"],
        "{data}"
    );
    // A tampered copy fails: the verifier really checks.
    let tampered = data.replace("signed   world", "changed world");
    assert!(!dkimpy(out.path(), &tampered, &rsa_pub, &ed_pub)
        .iter()
        .any(|l| l.ends_with("pass")));
}

/// An RSA 2048 and an Ed25519 key pair made by openssl: (rsa PEM, rsa public DER file, ed PEM, ed public DER file).
fn test_keys(dir: &std::path::Path) -> (String, std::path::PathBuf, String, std::path::PathBuf) {
    require("openssl");
    let (rsa, rsa_pub) = keypair(dir, "rsa", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    let (ed, ed_pub) = keypair(dir, "ed", &["-algorithm", "ed25519"]);
    (rsa, rsa_pub, ed, ed_pub)
}

/// Runs dkimpy on `data` with the test's public keys; one `selector d=domain pass|fail` line per signature, sorted.
/// A signature that fails may end the script early (an exception): fewer lines, none of them `pass`.
fn dkimpy(dir: &std::path::Path, data: &str, rsa_pub: &std::path::Path, ed_pub: &std::path::Path) -> Vec<String> {
    let file = dir.join("signed.eml");
    std::fs::write(&file, data).unwrap();
    let verdict = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/dkim_verify.py"))
        .arg(&file)
        .arg(rsa_pub)
        .arg(ed_pub)
        .output()
        .unwrap();
    // A signature that does not verify may make dkimpy raise: then no line says pass.
    let mut lines: Vec<String> = String::from_utf8_lossy(&verdict.stdout)
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

#[test]
fn dkim_keys_from_the_settings_database_sign_by_from_address() {
    let keys = tempfile::tempdir().unwrap();
    let (rsa, rsa_pub, ed, ed_pub) = test_keys(keys.path());
    let db = keys.path().join("settings.db");
    common::policy::sql(
        &db,
        &format!(
            "CREATE TABLE dkim_keys (id INTEGER PRIMARY KEY, domain TEXT, selector TEXT, privatekey TEXT, headers TEXT, expire TEXT);
             INSERT INTO dkim_keys (id, domain, selector, privatekey, headers) VALUES (1, 'sign.test', 'rsa', '{rsa}', 'X-Campaign');
             CREATE TABLE dkim_patterns (id INTEGER PRIMARY KEY, type TEXT, pattern TEXT, key INTEGER);
             INSERT INTO dkim_patterns (type, pattern, key) VALUES ('fnmatch', '*@sign.test', 1);"
        ),
    );
    let out = tempfile::tempdir().unwrap();
    let relay = common::peers::auth_relay("u", "p", out.path());
    let d = Daemon::start(&format!(
        "delivery-enabled: true\nsmarthost: 127.0.0.1\nsmarthost-port: {}\nsmarthost-username: u\nsmarthost-password: p\ndatabase-address: sqlite://{}\n",
        relay.port,
        db.display()
    ));
    let mut table_only = message(1, "a.test");
    table_only["mime"] =
        json!("From: \"Sender\" <News@Sign.Test>\nTo: user1@a.test\nSubject: one\nX-Campaign: c1\n\nHello\n");
    // Its own key too: both sign, its own first.
    let mut both = message(2, "a.test");
    both["mime"] = json!("From: s@sign.test\nTo: user2@a.test\nSubject: two\n\nHello\n");
    both["dkim"] = json!({"domain": "sign.test", "selector": "ed", "key": ed});
    let mut other = message(3, "a.test");
    other["mime"] = json!("From: s@elsewhere.test\nTo: user3@a.test\nSubject: three\n\nHello\n");
    inject(&d, &[table_only, both, other]);
    assert_eq!(d.collect("success", 3, WAIT).len(), 3, "{}", d.log());
    let saved = common::peers::relayed(out.path());
    let by_subject = |s: &str| {
        saved
            .iter()
            .map(|m| m["data"].as_str().unwrap().to_string())
            .find(|d| d.contains(&format!("Subject: {s}")))
            .unwrap()
    };
    let one = by_subject("one");
    assert!(
        one.contains("h=X-Campaign:") || one.contains(":X-Campaign"),
        "the row's headers are signed: {one}"
    );
    assert_eq!(dkimpy(out.path(), &one, &rsa_pub, &ed_pub), ["rsa d=sign.test pass"]);
    let two = by_subject("two");
    assert!(two.find("s=ed").unwrap() < two.find("s=rsa").unwrap(), "{two}");
    assert_eq!(
        dkimpy(out.path(), &two, &rsa_pub, &ed_pub),
        ["ed d=sign.test pass", "rsa d=sign.test pass"]
    );
    assert!(!by_subject("three").contains("DKIM-Signature"));
}

#[test]
fn source_ip_from_ips_or_delivery_ips_and_bind_errors() {
    let sink = smtp_sink(&[]);
    let d = to_sink(sink.port, "delivery-ips: 127.0.0.3\n");
    let mut own = message(1, "a.test");
    own["ips"] = json!(["127.0.0.2"]);
    // Not an address of this machine: nothing can be sent from it.
    let mut foreign = message(2, "b.test");
    foreign["ips"] = json!(["192.0.2.1"]);
    inject(&d, &[own, message(3, "c.test"), foreign]);
    let success = d.collect("success", 2, WAIT);
    assert_eq!(success.len(), 2, "{}", d.log());
    let from = |i: u64| last_result(success.iter().find(|r| r["custom"]["n"] == i).unwrap())["from"].clone();
    assert_eq!(from(1), "127.0.0.2", "the message's own ips");
    assert_eq!(from(3), "127.0.0.3", "delivery-ips");
    let retry = one(&d, "retry");
    expect(&retry, "bind", "error");
}

#[test]
fn mail_is_sent_from_the_mappable_address_it_was_submitted_to_else_from_smtp_default_ips() {
    let sink = smtp_sink(&[]);
    // MailerQ's three keys; the daemon listens on two loopback addresses.
    let d = to_sink(
        sink.port,
        "smtp-ip: 127.0.0.2;127.0.0.3\nsmtp-mappable-ips: 127.0.0.0/24\nsmtp-unmappable-ips: 127.0.0.3/32\nsmtp-default-ips: 127.0.0.4\n",
    );
    let send = |to: &str, server: &str, header: Option<&str>| {
        let server = format!("{server}:{}", d.smtp);
        let mut args = vec!["--server", &server, "--from", "s@example.net", "--to", to];
        if let Some(h) = header {
            args.extend(["--header", h]);
        }
        let out = run(std::process::Command::new("swaks").args(&args));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    };
    require("swaks");
    send("mapped@a.test", "127.0.0.2", None);
    send("unmappable@b.test", "127.0.0.3", None);
    send("header@c.test", "127.0.0.2", Some("X-MQ-IP: 127.0.0.5"));
    let success = d.collect("success", 3, WAIT);
    assert_eq!(success.len(), 3, "{}", d.log());
    let of = |rcpt: &str| success.iter().find(|r| r["recipient"] == rcpt).unwrap();
    let from = |rcpt: &str| last_result(of(rcpt))["from"].clone();
    assert_eq!(
        from("mapped@a.test"),
        "127.0.0.2",
        "sent from the address it came in on"
    );
    assert_eq!(of("mapped@a.test")["ips"], json!(["127.0.0.2"]));
    assert_eq!(from("unmappable@b.test"), "127.0.0.4", "unmappable: smtp-default-ips");
    assert!(
        of("unmappable@b.test").get("ips").is_none(),
        "{}",
        of("unmappable@b.test")
    );
    assert_eq!(from("header@c.test"), "127.0.0.5", "x-mq-ip wins over the mapping");
}

#[test]
fn a_messages_pool_names_its_ips_from_the_pools_tables() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("settings.db");
    let sink = smtp_sink(&[]);
    let d = to_sink(
        sink.port,
        &format!("database-address: sqlite://{}\nwww-tokens: t\n", db.display()),
    );
    // No pools defined yet: a `pool` is only kept.
    let mut early = message(6, "p6.test");
    early["pool"] = json!("warm");
    inject(&d, &[early]);
    let first = d.collect("success", 1, WAIT);
    assert_eq!(first.len(), 1, "{}", d.log());
    assert_eq!(
        (first[0]["pool"].as_str(), last_result(&first[0])["from"].as_str()),
        (Some("warm"), Some("127.0.0.1")),
        "{}",
        first[0]
    );
    // Written with SQL, as an operator's script would; read at the next reload.
    common::policy::sql(
        &db,
        "INSERT INTO pools (name) VALUES ('warm'), ('empty');
         INSERT INTO poolips (name, localip) VALUES ('warm', '127.0.0.2');",
    );
    // And through MailerQ's resource names, in force at once.
    let auth = Some("Bearer t");
    let json = "application/json";
    for (path, body) in [
        ("/v1/pools", r#"{"name": "hot", "description": "dedicated"}"#),
        ("/v1/poolips", r#"{"name": "hot", "localip": "127.0.0.4"}"#),
    ] {
        let (code, answer) = common::policy::request(&d, "POST", path, json, body, auth);
        assert_eq!(code, 200, "{path}: {answer}");
    }
    let (code, answer) = common::policy::request(
        &d,
        "POST",
        "/v1/poolips",
        json,
        r#"{"name": "hot", "localip": "nope"}"#,
        auth,
    );
    assert_eq!(code, 400, "{answer}");
    let pooled = |i: usize, pool: &str| {
        let mut m = message(i, &format!("p{i}.test"));
        m["pool"] = json!(pool);
        m
    };
    let mut own_ips = pooled(3, "warm");
    own_ips["ips"] = json!(["127.0.0.3"]);
    inject(
        &d,
        &[
            pooled(1, "warm"),
            pooled(2, "hot"),
            own_ips,
            pooled(4, "empty"),
            pooled(5, "nosuch"),
        ],
    );
    let success = d.collect("success", 3, WAIT);
    assert_eq!(success.len(), 3, "{}", d.log());
    let from = |i: u64| last_result(success.iter().find(|r| r["custom"]["n"] == i).unwrap())["from"].clone();
    assert_eq!(from(1), "127.0.0.2", "the pool's IP");
    assert_eq!(from(2), "127.0.0.4", "a pool made through the API");
    assert_eq!(from(3), "127.0.0.3", "ips wins over pool");
    let failure = d.collect("failure", 2, WAIT);
    assert_eq!(failure.len(), 2, "{}", d.log());
    for m in &failure {
        let e = expect(m, "process", "error");
        let why = e["description"].as_str().unwrap_or_default().to_string() + &e.to_string();
        let want = if m["custom"]["n"] == 4 {
            "has no IP addresses"
        } else {
            "is not in the pools table"
        };
        assert!(why.contains(want), "{e}");
    }
}

#[test]
fn a_final_failure_sends_the_asked_for_dsn_to_the_dsn_queue() {
    let sink = smtp_sink(&["-f", "rcpt"]);
    let d = to_sink(sink.port, "rabbitmq-dsn: dsn\n");
    let mut asked = message(1, "a.test");
    asked["dsn"] = json!({"notify": "FAILURE", "envid": "ENV-1"});
    let mut bounce = message(2, "a.test");
    bounce["envelope"] = json!("");
    bounce["dsn"] = json!({"notify": "FAILURE"});
    inject(&d, &[asked, bounce, message(3, "a.test")]);
    assert_eq!(d.collect("failure", 3, WAIT).len(), 3, "{}", d.log());
    let dsn = d.collect("dsn", 1, WAIT);
    assert_eq!(dsn.len(), 1, "one DSN: none for <> and none unasked");
    assert_eq!(dsn[0]["envelope"], "");
    assert_eq!(dsn[0]["recipient"], "sender@example.net");
    let mime = dsn[0]["mime"].as_str().unwrap();
    for want in [
        "Final-Recipient: rfc822; user1@a.test",
        "Action: failed",
        "Original-Envelope-Id: ENV-1",
        "Subject: test 1",
    ] {
        assert!(mime.contains(want), "{want} missing:\n{mime}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(d.pop_all("dsn").is_empty());
}

#[test]
fn dsn_notify_in_the_config_asks_for_dsns_a_message_does_not_turn_off() {
    let sink = smtp_sink(&["-f", "rcpt"]);
    // MailerQ's keys: a DSN on failure for every message that says nothing.
    let d = to_sink(sink.port, "rabbitmq-dsn: dsn\ndsn-notify: FAILURE\ndsn-ret: FULL\n");
    let mut never = message(2, "a.test");
    never["dsn"] = json!({"notify": "NEVER"});
    inject(&d, &[message(1, "a.test"), never]);
    assert_eq!(d.collect("failure", 2, WAIT).len(), 2, "{}", d.log());
    let dsn = d.collect("dsn", 1, WAIT);
    assert_eq!(dsn.len(), 1, "{}", d.log());
    let mime = dsn[0]["mime"].as_str().unwrap();
    assert!(mime.contains("Final-Recipient: rfc822; user1@a.test"), "{mime}");
    assert!(
        mime.contains("message/rfc822") && mime.contains("body 1"),
        "dsn-ret: FULL returns the body:\n{mime}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(d.pop_all("dsn").is_empty(), "none for the message that said NEVER");
}

#[test]
fn ipv6_mail_host() {
    // The MX host has only an AAAA record: the connection goes over IPv6 loopback.
    let sink = smtp_sink_on("[::1]", &[], None);
    let zone = vec![
        "--mx-host=six.test,mx.six.test,10".to_string(),
        "--host-record=mx.six.test,::1".to_string(),
    ];
    let (_dns, d) = resolving(&zone, sink.port, "");
    inject(&d, &[message(1, "six.test")]);
    let success = d.collect("success", 1, WAIT);
    assert_eq!(success.len(), 1, "{}", d.log());
    assert_eq!(last_result(&success[0])["to"], "::1");
}

#[test]
fn domains_with_the_same_mx_hosts_share_connections() {
    let sink = smtp_sink_on("127.0.0.2", &[], None);
    let zone = vec![
        "--mx-host=one.test,mx.shared.test,10".to_string(),
        "--mx-host=two.test,MX.Shared.test,10".to_string(),
        "--host-record=mx.shared.test,127.0.0.2".to_string(),
    ];
    let (_dns, d) = resolving(
        &zone,
        sink.port,
        "delivery-domain-connections: 1\ndelivery-connection-messages: 1000\n",
    );
    let msgs: Vec<Value> = (0..10).map(|i| message(i, ["one.test", "two.test"][i % 2])).collect();
    inject(&d, &msgs);
    let success = d.collect("success", 10, WAIT);
    assert_eq!(success.len(), 10, "{}", d.log());
    // One destination, one connection: its message counter runs over both domains.
    let mut counts: Vec<u64> = success
        .iter()
        .map(|r| last_result(r)["messages"].as_u64().unwrap())
        .collect();
    counts.sort();
    assert_eq!(counts, (1..=10).collect::<Vec<u64>>(), "{success:?}");
}

#[test]
fn dsn_and_8bitmime_parameters_reach_the_wire() {
    let dump = tempfile::tempdir().unwrap();
    let sink = smtp_sink_on("127.0.0.1", &[], Some(dump.path()));
    let d = to_sink(sink.port, "");
    let mut m = message(1, "a.test");
    m["mime"] = json!("Subject: 8bit\r\n\r\nGrüße\r\n");
    m["dsn"] = json!({"notify": "FAILURE,DELAY", "ret": "HDRS", "envid": "ID+1", "orcpt": "rfc822;Orig@a.test"});
    inject(&d, &[m]);
    one(&d, "success");
    let dumped: Vec<String> = std::fs::read_dir(dump.path())
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .collect();
    assert_eq!(dumped.len(), 1);
    // smtp-sink writes what MAIL and RCPT carried as X-Mail-Args / X-Rcpt-Args.
    assert!(
        dumped[0].contains("X-Mail-Args: <sender@example.net> BODY=8BITMIME RET=HDRS ENVID=ID+2B1"),
        "{}",
        dumped[0]
    );
    assert!(
        dumped[0].contains("X-Rcpt-Args: <user1@a.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;Orig@a.test"),
        "{}",
        dumped[0]
    );
}

#[test]
fn an_unreadable_reply_is_invalid_and_retried() {
    // A server that greets, then answers EHLO with something that is not SMTP.
    let port = free_port();
    let script = "import socket,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',int(sys.argv[1])))\ns.listen(8)\nwhile True:\n    c,_=s.accept()\n    try:\n        c.sendall(b'220 broken.test ESMTP\\r\\n')\n        c.recv(1000)\n        c.sendall(b'what is this\\r\\n')\n    except OSError:\n        pass\n    c.close()\n";
    let mut server = std::process::Command::new("python3")
        .args(["-c", script, &port.to_string()])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "the broken server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let d = to_sink(port, "");
    inject(&d, &[message(1, "a.test")]);
    let retry = one(&d, "retry");
    let e = expect(&retry, "ehlo", "invalid");
    assert_eq!(e["mta"], "broken.test", "{e}");
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn a_domain_with_silent_dns_does_not_hold_up_the_others() {
    let sink = smtp_sink_on("127.0.0.2", &[], None);
    // Queries for slow.test go to a socket that never answers.
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let zone = vec![
        "--mx-host=fast.test,mx.fast.test,10".to_string(),
        "--host-record=mx.fast.test,127.0.0.2".to_string(),
        format!(
            "--server=/slow.test/127.0.0.1#{}",
            black_hole.local_addr().unwrap().port()
        ),
    ];
    let (_dns, d) = resolving(&zone, sink.port, "");
    let mut msgs = vec![message(0, "slow.test")];
    msgs.extend((1..=20).map(|i| message(i, "fast.test")));
    inject(&d, &msgs);
    let success = d.collect("success", 20, WAIT);
    assert_eq!(success.len(), 20, "{}", d.log());
    // The slow domain's lookup is still waiting (its DNS never answers).
    let pending = d.cli(&["queue", "stats"], b"");
    let outbox = json_lines(&pending.stdout)
        .into_iter()
        .find(|q| q["name"] == "outbox")
        .expect("outbox");
    assert_eq!(
        outbox["leased"], 1,
        "the slow.test message is still in flight: {outbox}"
    );
    // It ends as a temporary DNS failure, retried later.
    let retry = one(&d, "retry");
    expect(&retry, "dns", "error");
    assert_eq!(retry["recipient"], "user0@slow.test");
}
