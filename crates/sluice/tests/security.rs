//! The threats of `docs/security.md`, each tried as an attacker would, with a
//! raw socket, smtplib or HTTP: SMTP smuggling, outbound command injection,
//! memory and slot exhaustion, and the smaller holes found on the way.

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Every way of ending a line that another MTA might take for the end of the
/// data. Over a real socket: the smuggled transaction is never run; the
/// message is refused for its bare CR/LF at the real end (or, for a NUL or
/// space after the dot, kept as one message with the text inside it).
#[test]
fn smuggled_commands_are_never_run() {
    let d = Daemon::start("");
    let variants: &[(&str, &[u8], bool)] = &[
        ("LF . CRLF", b"\n.\r\n", true),
        ("CRLF . LF", b"\r\n.\n", true),
        ("LF . LF", b"\n.\n", true),
        ("CR . CR", b"\r.\r", true),
        ("CRLF . CR", b"\r\n.\r", true),
        ("CR . CRLF", b"\r.\r\n", true),
        ("CRLF . NUL CRLF", b"\r\n.\0\r\n", false),
        ("CRLF . SP CRLF", b"\r\n. \r\n", false),
    ];
    for (name, ending, refused) in variants {
        let mut c = d.session();
        assert!(c.cmd("MAIL FROM:<legit@sender.example>").starts_with("250"), "{name}");
        assert!(c.cmd("RCPT TO:<r@example.com>").starts_with("250"), "{name}");
        assert!(c.cmd("DATA").starts_with("354"), "{name}");
        let mut body = b"Subject: hello\r\n\r\nhello".to_vec();
        body.extend_from_slice(ending);
        body.extend_from_slice(
            b"MAIL FROM:<ceo@bank.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nforged\r\n.\r\n",
        );
        c.send(&body);
        let reply = c.reply();
        let want = if *refused { "550 5.5.2" } else { "250 2.0.0" };
        assert!(reply.starts_with(want), "{name}: {reply}");
        // The next reply answers our NOOP, not a smuggled command.
        assert!(c.cmd("NOOP").starts_with("250 2.0.0 Ok"), "{name}");
        let queued = d.pop_all("outbox");
        assert!(
            queued.iter().all(|m| m["envelope"] == "legit@sender.example"),
            "{name}: a forged message was queued: {queued:?}"
        );
        assert_eq!(queued.len(), usize::from(!refused), "{name}: {queued:?}");
        if let Some(m) = queued.first() {
            assert!(
                m["mime"].as_str().unwrap().contains("MAIL FROM:<ceo@bank.example>"),
                "{name}"
            );
        }
    }
}

/// A listener that counts connections and closes them at once; delivery
/// pointed at it shows whether a connection was ever made.
fn counting_listener() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = n.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(s);
        }
    });
    (port, n)
}

/// JSON from any producer is hostile: an address that would put a second
/// command on the wire is refused by `/inject` (400 naming the message) and,
/// pushed into the outbox raw, ends as the invalid-input result without a
/// connection being made.
#[test]
fn injected_commands_never_reach_the_wire() {
    let (port, connections) = counting_listener();
    let d = Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {port}\n"
    ));
    let attacks = [
        json!({"recipient": "a@b.com>\r\nRCPT TO:<injected@evil.com", "mime": "x", "tag": "rcpt"}),
        json!({"recipient": "a@b.com", "envelope": "x@y.z\r\nRSET\r\nMAIL FROM:<spoof@bank.com", "mime": "x", "tag": "env"}),
        json!({"recipient": "a@b.com", "smarthost": {"name": "relay.example\r\nQUIT"}, "mime": "x", "tag": "relay"}),
    ];
    for (i, m) in attacks.iter().enumerate() {
        let ok = json!({"recipient": "fine@b.com", "mime": "x"});
        let (status, body) = d.post("/inject", format!("{ok}\n{m}\n").as_bytes());
        assert!(status.contains("400"), "{status} {body}");
        let err: Value = serde_json::from_str(&body).unwrap();
        let err = err["error"].as_str().unwrap();
        assert!(err.starts_with("message 2: "), "attack {i}: {err}");
        assert!(!err.contains(['\r', '\n']), "{err:?}");
    }
    assert!(d.pop_all("outbox").is_empty(), "nothing of a refused batch is queued");
    let raw: String = attacks.iter().map(|m| format!("{m}\n")).collect();
    let (status, body) = d.post("/queues/outbox", raw.as_bytes());
    assert!(status.contains("200"), "{status} {body}");
    let failure = d.collect("failure", 3, Duration::from_secs(30));
    assert_eq!(failure.len(), 3, "{}", d.log());
    for f in &failure {
        let last = f["results"].as_array().unwrap().last().unwrap();
        assert_eq!(
            (last["state"].as_str(), last["result"].as_str()),
            (Some("amqp"), Some("invalid")),
            "{f}"
        );
    }
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a connection was made"
    );
}

/// Past `smtp-max-recipients`, 452 is no error: a client pipelining a
/// thousand more keeps its transaction and is not disconnected.
#[test]
fn excess_recipients_keep_the_transaction() {
    let d = Daemon::start("smtp-max-recipients: 5\n");
    let mut c = d.session();
    let mut batch = String::from("MAIL FROM:<a@b.c>\r\n");
    for i in 0..1100 {
        batch.push_str(&format!("RCPT TO:<r{i}@example.com>\r\n"));
    }
    batch.push_str("DATA\r\n");
    c.send(batch.as_bytes());
    assert!(c.reply().starts_with("250 2.1.0"));
    let replies: Vec<String> = (0..1100).map(|_| c.reply()).collect();
    assert_eq!(replies.iter().filter(|r| r.starts_with("250 2.1.5")).count(), 5);
    assert_eq!(replies.iter().filter(|r| r.starts_with("452 4.5.3")).count(), 1095);
    assert!(c.reply().starts_with("354"));
    let r = c.cmd("Subject: many\r\n\r\nhi\r\n.");
    assert!(r.starts_with("250 2.0.0"), "{r}");
    assert_eq!(d.pop_all("outbox").len(), 5);
}

#[test]
fn a_huge_bdat_is_refused_at_once() {
    let d = Daemon::start("smtp-maxsize: 1MB\n");
    let mut c = d.session();
    c.cmd("MAIL FROM:<a@b.c>");
    c.cmd("RCPT TO:<r@example.com>");
    let started = Instant::now();
    let r = c.cmd("BDAT 18446744073709551615 LAST");
    assert!(r.starts_with("552 5.3.4"), "{r}");
    // Answered before a byte of the chunk was sent (not after 2^64 of them).
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(d.pop_all("outbox").is_empty());
}

#[test]
fn smtp_maxsize_zero_means_no_limit() {
    let d = Daemon::start("smtp-maxsize: 0\n");
    let mut c = d.session();
    let big = "x".repeat(998);
    let body: String = (0..300).map(|_| format!("{big}\r\n")).collect();
    let r = c.mail("a@b.c", &["r@example.com"], &format!("Subject: big\r\n\r\n{body}"));
    assert!(r.starts_with("250 2.0.0"), "{r}");
}

#[test]
fn control_characters_in_helo_are_refused() {
    let d = Daemon::start("");
    let mut c = d.connect();
    c.reply();
    for bad in ["EHLO evil\x1b[2Jname", "HELO a\x00b", "EHLO x\ry"] {
        let r = c.cmd(bad);
        assert!(r.starts_with("501 5.5.4"), "{bad:?}: {r}");
    }
    assert!(c.cmd("EHLO fine.example").starts_with("250"));
}

/// A client that sends one byte at a time never times out by
/// `smtp-timeout`, but the whole command has a deadline.
#[test]
fn a_trickling_client_meets_the_command_deadline() {
    let d = Daemon::start("smtp-timeout: 5\nsmtp-command-timeout: 2\n");
    let mut s = TcpStream::connect(("127.0.0.1", d.smtp)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut greeting = [0u8; 256];
    let _ = s.read(&mut greeting);
    let started = Instant::now();
    let mut answer = Vec::new();
    for b in b"EHLO slow.example.com.and.slower".iter().cycle().take(60) {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if answer.windows(5).any(|w| w == b"4.4.2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("421 4.4.2"), "{answer}");
    // Well before the 18 s the bytes would have taken, and after the 2 s deadline.
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

#[test]
fn connections_per_client_address_are_limited() {
    let d = Daemon::start("smtp-connections-per-ip: 2\nsmtp-connections-per-ip-exceptions:\n");
    let mut first = d.connect();
    let mut second = d.connect();
    assert!(first.reply().starts_with("220"));
    assert!(second.reply().starts_with("220"));
    let mut third = d.connect();
    let r = third.reply();
    assert!(r.starts_with("421 4.7.0") && r.contains("127.0.0.1"), "{r}");
    assert!(third.closed());
    drop(first);
    // The slot comes back when a connection ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = d.connect();
        if again.reply().starts_with("220") {
            break;
        }
        assert!(Instant::now() < deadline, "the slot never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Loopback is exempt by default, like Postfix's $mynetworks.
    let d = Daemon::start("smtp-connections-per-ip: 1\n");
    let mut a = d.connect();
    let mut b = d.connect();
    assert!(a.reply().starts_with("220") && b.reply().starts_with("220"));
}

/// `reception-memory` bounds what bodies in reception hold together: a body
/// that does not fit gets `452 4.3.1` at its end, and the session goes on.
#[test]
fn reception_memory_is_bounded() {
    let d = Daemon::start("reception-memory: 1MB\n");
    let chunk = format!("{}\r\n", "y".repeat(998));
    let mut a = d.session();
    a.cmd("MAIL FROM:<a@b.c>");
    a.cmd("RCPT TO:<r@example.com>");
    assert!(a.cmd("DATA").starts_with("354"));
    for _ in 0..700 {
        a.send(chunk.as_bytes()); // 700 KB, held open
    }
    // Wait until the daemon holds A's body, so B is the one that does not fit.
    let deadline = Instant::now() + Duration::from_secs(20);
    while health(&d)["reception-memory"].as_u64().unwrap_or(0) < 650_000 {
        assert!(Instant::now() < deadline, "A's body never arrived: {}", health(&d));
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut b = d.session();
    b.cmd("MAIL FROM:<b@b.c>");
    b.cmd("RCPT TO:<r@example.com>");
    assert!(b.cmd("DATA").starts_with("354"));
    for _ in 0..700 {
        b.send(chunk.as_bytes());
    }
    let r = b.cmd(".");
    assert!(r.starts_with("452 4.3.1"), "{r}");
    assert!(b.cmd("NOOP").starts_with("250"));
    let r = a.cmd(".");
    assert!(r.starts_with("250 2.0.0"), "{r}");
    // With the memory given back, the next message fits.
    let r = b.mail("b@b.c", &["r@example.com"], "Subject: small\r\n\r\nhi\r\n");
    assert!(r.starts_with("250 2.0.0"), "{r}");
    assert_eq!(d.pop_all("outbox").len(), 2);
}

/// `GET /health`.
fn health(d: &Daemon) -> Value {
    let mut s = TcpStream::connect(("127.0.0.1", d.www)).unwrap();
    s.write_all(b"GET /health HTTP/1.0\r\nHost: t\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// The daemon's peak resident memory (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// A message of S bytes for R recipients costs O(S) memory while it is
/// stored, not O(R × S): 300 recipients of 1 MB took over 900 MB before.
#[test]
fn many_recipients_of_a_big_message_cost_one_message_of_memory() {
    let d = Daemon::start("smtp-max-recipients: 1000\n");
    let before = peak_rss(d.pid());
    let mut c = d.session();
    c.cmd("MAIL FROM:<a@b.c>");
    for i in 0..300 {
        assert!(c.cmd(&format!("RCPT TO:<r{i}@example.com>")).starts_with("250"));
    }
    assert!(c.cmd("DATA").starts_with("354"));
    let line = format!("{}\r\n", "z".repeat(998));
    c.send(b"Subject: big\r\n\r\n");
    for _ in 0..1000 {
        c.send(line.as_bytes());
    }
    let r = c.cmd(".");
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let grew = peak_rss(d.pid()).saturating_sub(before);
    eprintln!("peak RSS grew by {} MB for 300 x 1 MB", grew >> 20);
    assert!(grew < 200 << 20, "peak RSS grew by {} MB", grew >> 20);
    let stats = json_lines(&d.cli(&["queue", "stats"], b"").stdout);
    assert_eq!(stats[0]["ready"], 300);
}
