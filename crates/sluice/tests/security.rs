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
            (Some("process"), Some("invalid")),
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

/// A raw HTTP request; returns the status code and the parsed JSON body.
fn http(d: &Daemon, request: &str, body: &[u8]) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", d.www)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let json = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()));
    (status, json)
}

/// Every error answer is JSON, whoever produced it (router, extractor, handler).
#[test]
fn http_errors_are_json() {
    let d = Daemon::start("");
    let cases: &[(&str, &[u8], u16)] = &[
        ("GET /nope HTTP/1.0\r\n\r\n", b"", 404),
        ("GET /inject HTTP/1.0\r\n\r\n", b"", 405),
        ("GET /queues/outbox?n=lots HTTP/1.0\r\n\r\n", b"", 400),
        ("POST /submit HTTP/1.0\r\nContent-Length: 5\r\n\r\n", b"{nope", 400),
        ("POST /inject HTTP/1.0\r\nContent-Length: 5\r\n\r\n", b"[1,2]", 400),
        ("GET /queues/a%01b HTTP/1.0\r\n\r\n", b"", 400),
        ("GET /queues/a%2Fb HTTP/1.0\r\n\r\n", b"", 400),
    ];
    for (req, body, want) in cases {
        let (status, json) = http(&d, req, body);
        assert_eq!(status, *want, "{req:?}: {json}");
        assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()), "{req:?}: {json}");
    }
    let long = format!("GET /queues/{} HTTP/1.0\r\n\r\n", "q".repeat(300));
    assert_eq!(http(&d, &long, b"").0, 400);
}

/// A body larger than the limit is refused by its Content-Length before a
/// byte of it is read; one that does not fit in `reception-memory` gets 503.
#[test]
fn http_bodies_are_bounded_before_they_are_read() {
    let d = Daemon::start("reception-memory: 1MB\n");
    // Only the head is sent: an answer proves nothing was waited for.
    let (status, json) = http(
        &d,
        "POST /inject HTTP/1.1\r\nHost: t\r\nContent-Length: 314572800\r\n\r\n",
        b"",
    );
    assert_eq!(status, 413, "{json}");
    assert!(json["error"].as_str().unwrap().contains("larger than"), "{json}");
    let (status, json) = http(
        &d,
        "POST /inject HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n",
        b"",
    );
    assert_eq!(status, 503, "{json}");
    assert!(json["error"].as_str().unwrap().contains("reception-memory"), "{json}");
    // Chunked, without a length: refused as it grows past the budget.
    let mut chunked = Vec::new();
    for _ in 0..40 {
        chunked.extend_from_slice(format!("{:x}\r\n{}\r\n", 50_000, "x".repeat(50_000)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, _) = http(
        &d,
        "POST /queues/q HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
        &chunked,
    );
    assert_eq!(status, 503);
    assert_eq!(health(&d)["reception-memory"], 0, "every charge was given back");
    // What fits is taken.
    let (status, json) = http(
        &d,
        "POST /inject HTTP/1.0\r\nContent-Length: 31\r\n\r\n",
        br#"{"recipient":"a@b.example.com"}"#,
    );
    assert_eq!(status, 200, "{json}");
}

#[test]
fn basic_auth_scheme_is_case_insensitive() {
    let d = Daemon::start("www-username: admin\nwww-password: pw\n");
    use base64::Engine as _;
    let good = base64::engine::general_purpose::STANDARD.encode("admin:pw");
    let bad = base64::engine::general_purpose::STANDARD.encode("admin:px");
    for scheme in ["Basic", "basic", "BASIC"] {
        let req = format!("GET /queues HTTP/1.0\r\nAuthorization: {scheme} {good}\r\n\r\n");
        assert_eq!(http(&d, &req, b"").0, 200, "{scheme}");
    }
    let req = format!("GET /queues HTTP/1.0\r\nAuthorization: Basic {bad}\r\n\r\n");
    let (status, json) = http(&d, &req, b"");
    assert_eq!(status, 401);
    assert!(json["error"].is_string());
    assert_eq!(
        http(&d, "GET /queues HTTP/1.0\r\nAuthorization: Bearer x\r\n\r\n", b"").0,
        401
    );
}

/// `config check` and `run` refuse the same files, with exit code 2 and the
/// file, line and key named.
#[test]
fn dangerous_or_broken_configs_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "smtp-port: {}\nwww-port: {}\ndata-directory: {}\n",
        free_port(),
        free_port(),
        dir.path().join("data").display()
    );
    let cases = [
        ("smtp-ip: 0.0.0.0\n", ":1: smtp-ip:"),
        ("www-ip: 0.0.0.0\n", ":1: www-ip:"),
        ("smtp-hostname: mx example\n", ":1: smtp-hostname:"),
        ("smtp-hostname: mx\u{1}example\n", ":1: smtp-hostname:"),
    ];
    let long = format!("smtp-hostname: {}\n", "a".repeat(3000));
    for (line, want) in cases
        .iter()
        .map(|(l, w)| (l.to_string(), *w))
        .chain([(long, ":1: smtp-hostname:")])
    {
        let path = dir.path().join("c.txt");
        std::fs::write(&path, format!("{line}{base}")).unwrap();
        for args in [&["config", "check"][..], &["run"][..]] {
            let out = cli_with(&path, args, b"");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} {line:?}: {err}");
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }
    // The explicit opt-ins, and a file that starts with a UTF-8 byte order mark.
    let path = dir.path().join("ok.txt");
    std::fs::write(
        &path,
        format!("\u{feff}smtp-ip: 0.0.0.0\nsmtp-open-relay: true\nwww-ip: 0.0.0.0\nwww-open: true\n{base}"),
    )
    .unwrap();
    let out = cli_with(&path, &["config", "check"], b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// RFC 4616 §2: an authorization identity other than the login needs a
/// policy (a plugin); AUTH lines may be 12,288 octets (RFC 4954 §4).
#[test]
fn auth_plain_authzid_and_long_lines() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let d = Daemon::start("smtp-username: alice\nsmtp-password: s3cret\n");
    let mut c = d.session();
    let r = c.cmd(&format!("AUTH PLAIN {}", b64("root\0alice\0s3cret")));
    assert!(r.starts_with("535 5.7.8"), "{r}");
    let r = c.cmd(&format!("AUTH PLAIN {}", b64("alice\0alice\0s3cret")));
    assert!(r.starts_with("235"), "same identity twice is fine: {r}");
    let mut c = d.session();
    let long = format!("AUTH PLAIN {}", b64(&format!("\0alice\0{}", "p".repeat(8000))));
    assert!(long.len() > 10_000 && long.len() < 12_288);
    let r = c.cmd(&long);
    assert!(r.starts_with("535 5.7.8"), "a long line is read, not refused: {r}");
    let too_long = format!("AUTH PLAIN {}", "A".repeat(13_000));
    assert!(c.cmd(&too_long).starts_with("500 5.5.2"));
    assert!(c.cmd("NOOP").starts_with("250"));
}

#[test]
fn http_connections_are_bounded_by_www_connections_and_silent_ones_are_closed() {
    let d = Daemon::start("www-connections: 2\n");
    let addr = format!("127.0.0.1:{}", d.www);
    let request = |s: &mut TcpStream| {
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
    };
    // Two connections that send nothing hold both slots.
    let silent: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut third = TcpStream::connect(&addr).unwrap();
    request(&mut third);
    third.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 512];
    match third.read(&mut buf) {
        Err(e) => assert!(
            matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
            "{e}"
        ),
        Ok(n) => panic!(
            "answered beyond www-connections: {}",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
    // A freed slot serves the waiting client.
    drop(silent);
    third.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut answer = String::new();
    third.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A client that never sends its headers is closed, not kept forever.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut rest = Vec::new();
    let closed = idle.read_to_end(&mut rest);
    assert!(
        closed.is_ok(),
        "closed by the header deadline, not left open: {closed:?}"
    );
    assert!(
        !String::from_utf8_lossy(&rest).contains("200 OK"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
}
