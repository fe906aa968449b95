//! The server session driven with raw bytes, as a client would send them.

use sluice_smtp::{Envelope, Event, Reply, ServerConfig, ServerSession};

fn cfg() -> ServerConfig {
    ServerConfig {
        hostname: "mx.test".into(),
        max_size: 1000,
        max_recipients: 3,
        max_errors: 20,
        tls_available: true,
        auth_enabled: true,
        auth_in_clear: true,
    }
}

/// Feeds `input`, accepting every event (checking AUTH against u/p), and
/// returns the reply codes written and the messages delivered.
fn run(session: &mut ServerSession, input: &[u8]) -> (Vec<String>, Vec<Envelope>) {
    session.feed(input);
    let mut messages = Vec::new();
    while let Some(ev) = session.next_event() {
        match ev {
            Event::Message(env) => {
                messages.push(env);
                session.respond(Reply::new(250, "2.0.0", "queued"));
            }
            Event::Auth { login, password, .. } => {
                if login == "u" && password == "p" {
                    session.set_authenticated(&login);
                    session.accept();
                } else {
                    session.respond(Reply::new(535, "5.7.8", "no"));
                }
            }
            Event::Close => break,
            Event::StartTls => session.tls_established(),
            _ => session.accept(),
        }
    }
    let out = String::from_utf8(std::mem::take(session.output())).unwrap();
    let codes = out
        .split("\r\n")
        .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    (codes, messages)
}

fn new() -> ServerSession {
    let mut s = ServerSession::new(cfg());
    s.greet();
    s
}

#[test]
fn pipelined_transaction() {
    let mut s = new();
    let (codes, msgs) = run(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nRCPT TO:<w@y.z> NOTIFY=FAILURE\r\nDATA\r\nSubject: t\r\n\r\n..hi\r\n.\r\nQUIT\r\n",
    );
    assert_eq!(
        codes,
        [
            "220 mx.test",
            "250 DSN",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.1.5",
            "354 End",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].body, b"Subject: t\r\n\r\n.hi\r\n");
    assert_eq!(msgs[0].rcpts[1].notify.as_deref(), Some("FAILURE"));
    assert!(s.is_closed());
}

#[test]
fn sequence_errors() {
    let mut s = new();
    let (codes, _) = run(&mut s, b"MAIL FROM:<a@b.c>\r\nEHLO c\r\nRCPT TO:<x@y.z>\r\nDATA\r\nMAIL FROM:<a@b.c>\r\nDATA\r\nMAIL FROM:<a@b.c>\r\nBDAT 3 LAST\r\nabcRSET\r\nNOOP\r\n");
    assert_eq!(
        codes,
        [
            "220 mx.test",
            "503 5.5.1",
            "250 DSN",
            "503 5.5.1",
            "503 5.5.1",
            "250 2.1.0",
            "554 5.5.1",
            "503 5.5.1",
            "554 5.5.1",
            "250 2.0.0",
            "250 2.0.0"
        ]
    );
}

#[test]
fn syntax_and_unknown_commands_keep_the_session() {
    let mut s = new();
    let (codes, _) = run(&mut s, b"EHLO c\r\nFOO bar\r\nMAIL FROM:<bad address>\r\nMAIL FROM:<a@b.c> WHAT=1\r\nVRFY x\r\nHELP\r\nEXPN x\r\nNOOP\r\n");
    assert_eq!(
        codes,
        [
            "220 mx.test",
            "250 DSN",
            "500 5.5.2",
            "501 5.1.7",
            "555 5.5.4",
            "252 2.1.5",
            "214 2.0.0",
            "502 5.5.1",
            "250 2.0.0"
        ]
    );
}

#[test]
fn long_command_line_is_refused_and_skipped() {
    let mut s = new();
    let mut input = b"EHLO c\r\nNOOP ".to_vec();
    input.extend(std::iter::repeat_n(b'x', 2000));
    input.extend_from_slice(b"\r\nNOOP\r\n");
    let (codes, _) = run(&mut s, &input);
    assert_eq!(codes, ["220 mx.test", "250 DSN", "500 5.5.2", "250 2.0.0"]);
}

#[test]
fn size_limit_and_recipient_limit() {
    let mut s = new();
    let big = "x".repeat(1200);
    let input = format!(
        "EHLO c\r\nMAIL FROM:<a@b.c> SIZE=5000\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<1@y.z>\r\nRCPT TO:<2@y.z>\r\nRCPT TO:<3@y.z>\r\nRCPT TO:<4@y.z>\r\nDATA\r\n{big}\r\n.\r\nNOOP\r\n"
    );
    let (codes, msgs) = run(&mut s, input.as_bytes());
    assert_eq!(
        codes,
        [
            "220 mx.test",
            "250 DSN",
            "552 5.3.4",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.1.5",
            "250 2.1.5",
            "452 4.5.3",
            "354 End",
            "552 5.3.4",
            "250 2.0.0"
        ]
    );
    assert!(msgs.is_empty());
}

#[test]
fn bare_lf_in_body_is_refused_and_session_goes_on() {
    let mut s = new();
    let (codes, msgs) = run(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\nline\n.\nmore\r\n.\r\nNOOP\r\n",
    );
    assert_eq!(
        codes,
        [
            "220 mx.test",
            "250 DSN",
            "250 2.1.0",
            "250 2.1.5",
            "354 End",
            "550 5.5.2",
            "250 2.0.0"
        ]
    );
    assert!(msgs.is_empty());
}

#[test]
fn bdat_chunks() {
    let mut s = new();
    let (codes, msgs) = run(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nBDAT 5\r\nHelloBDAT 7 LAST\r\n world\n",
    );
    assert_eq!(
        codes,
        [
            "220 mx.test",
            "250 DSN",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "250 2.0.0"
        ]
    );
    assert_eq!(
        msgs[0].body, b"Hello world\n",
        "BDAT is binary: no dot or line-ending processing"
    );
}

#[test]
fn auth_plain_and_login() {
    let mut s = new();
    // PLAIN with initial response (\0u\0p), then a second AUTH is refused.
    let (codes, _) = run(&mut s, b"EHLO c\r\nAUTH PLAIN AHUAcA==\r\nAUTH PLAIN AHUAcA==\r\n");
    assert_eq!(codes, ["220 mx.test", "250 DSN", "235 2.7.0", "503 5.5.1"]);
    assert_eq!(s.authenticated(), Some("u"));
    let mut s = new();
    // LOGIN: dQ== is "u", eA== is "x" (wrong password); then cancel; then bad base64.
    let (codes, _) = run(
        &mut s,
        b"EHLO c\r\nAUTH LOGIN\r\ndQ==\r\neA==\r\nAUTH LOGIN\r\n*\r\nAUTH PLAIN\r\n!!!\r\nAUTH CRAM-MD5\r\n",
    );
    assert_eq!(
        codes,
        [
            "220 mx.test",
            "250 DSN",
            "334 VXNlcm5hbWU6",
            "334 UGFzc3dvcmQ6",
            "535 5.7.8",
            "334 VXNlcm5hbWU6",
            "501 5.0.0",
            "334 ",
            "501 5.5.2",
            "504 5.5.4"
        ]
    );
    assert_eq!(s.authenticated(), None);
}

#[test]
fn auth_needs_tls_off_loopback() {
    let mut s = ServerSession::new(ServerConfig {
        auth_in_clear: false,
        ..cfg()
    });
    s.greet();
    let (codes, _) = run(&mut s, b"EHLO c\r\nAUTH PLAIN AHUAcA==\r\n");
    assert_eq!(codes, ["220 mx.test", "250 DSN", "538 5.7.11"]);
    let out_before_tls = run(&mut s, b"EHLO c\r\n");
    let _ = out_before_tls;
    s.tls_established();
    let (codes, _) = run(&mut s, b"EHLO c\r\nAUTH PLAIN AHUAcA==\r\n");
    assert_eq!(codes, ["250 DSN", "235 2.7.0"]);
}

#[test]
fn starttls_discards_pipelined_plaintext() {
    let mut s = new();
    s.feed(b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x.y>\r\n");
    let mut events = Vec::new();
    while let Some(ev) = s.next_event() {
        let tls = ev == Event::StartTls;
        events.push(ev);
        if tls {
            s.tls_established();
        }
    }
    assert_eq!(events, [Event::StartTls], "the injected MAIL is never seen");
    let (codes, _) = run(&mut s, b"MAIL FROM:<a@b.c>\r\n");
    assert!(
        codes.last().unwrap().starts_with("503"),
        "after TLS the client must EHLO again: {codes:?}"
    );
}

#[test]
fn too_many_errors_disconnects() {
    let mut s = new();
    let input = "BOGUS\r\n".repeat(25);
    let (codes, _) = run(&mut s, input.as_bytes());
    assert_eq!(
        codes.iter().filter(|c| c.starts_with("500")).count(),
        20,
        "the 20th error is answered, then the session ends"
    );
    assert_eq!(codes.last().unwrap(), "421 4.7.0");
    assert!(s.is_closed());
}

#[test]
fn smtputf8_addresses() {
    let mut s = new();
    let (codes, _) = run(&mut s, "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<jö@bü.de>\r\nRSET\r\nMAIL FROM:<a@b.c> SMTPUTF8\r\nRCPT TO:<jö@bü.de>\r\n".as_bytes());
    assert_eq!(
        codes,
        [
            "220 mx.test",
            "250 DSN",
            "250 2.1.0",
            "553 5.6.7",
            "250 2.0.0",
            "250 2.1.0",
            "250 2.1.5"
        ]
    );
}

/// Seeded random sessions built from SMTP fragments and noise, fed in random
/// chunks: no panic, well-formed output, bounded bodies. (`crates/smtp/fuzz`
/// explores the same property with libFuzzer.)
#[test]
fn random_sessions_never_panic() {
    const PIECES: &[&[u8]] = &[
        b"EHLO x\r\n",
        b"HELO y\r\n",
        b"MAIL FROM:<a@b.c>\r\n",
        b"MAIL FROM:<> SIZE=99999999 BODY=8BITMIME SMTPUTF8\r\n",
        b"RCPT TO:<r@d.e> NOTIFY=SUCCESS ORCPT=rfc822;x\r\n",
        b"RCPT TO:<\xc3\xa9@d.e>\r\n",
        b"DATA\r\n",
        b"BDAT 7\r\n",
        b"BDAT 3 LAST\r\n",
        b".\r\n",
        b"..\r\n",
        b"\r\n.\r\n",
        b"\n.\n",
        b"RSET\r\n",
        b"NOOP\r\n",
        b"STARTTLS\r\n",
        b"AUTH PLAIN\r\n",
        b"AUTH LOGIN dQ==\r\n",
        b"AHUAcA==\r\n",
        b"*\r\n",
        b"QUIT\r\n",
        b"VRFY x\r\n",
        b"\xff\xfe\x00",
        b"MAIL FROM:<\"a\\\"b\"@[IPv6:::1]>\r\n",
        b"x",
        b"\r",
        b"\n",
        b"BDAT 18446744073709551615\r\n",
    ];
    let mut next = rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let mut input = Vec::new();
        for _ in 0..(next() % 40) {
            if next().is_multiple_of(5) {
                input.extend((0..next() % 300).map(|_| next() as u8));
            } else {
                input.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
        }
        let mut s = ServerSession::new(ServerConfig {
            max_size: 512,
            auth_in_clear: next().is_multiple_of(2),
            ..cfg()
        });
        s.greet();
        let mut pos = 0;
        while pos < input.len() && !s.is_closed() {
            let end = (pos + 1 + (next() % 97) as usize).min(input.len());
            s.feed(&input[pos..end]);
            pos = end;
            while let Some(ev) = s.next_event() {
                match ev {
                    Event::Close => break,
                    Event::StartTls => s.tls_established(),
                    Event::Message(env) => {
                        assert!(env.body.len() <= 512);
                        s.accept();
                    }
                    _ if next().is_multiple_of(4) => s.respond(Reply::new(550, "5.7.1", "no")),
                    _ => s.accept(),
                }
            }
        }
        let out = std::mem::take(s.output());
        assert!(
            sluice_smtp::reply::well_formed(&out),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
}

/// xorshift: the same sequence on every run, so a failure reproduces.
fn rng(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// A random body rich in what smuggling is made of: dots, CR, LF, NUL and
/// whole command lines.
fn hostile_body(next: &mut impl FnMut() -> u64) -> Vec<u8> {
    const PIECES: &[&[u8]] = &[
        b".",
        b"..",
        b"\r",
        b"\n",
        b"\r\n",
        b"\0",
        b" ",
        b"x",
        b"Subject: s\r\n",
        b"MAIL FROM:<ceo@bank.example>",
        b"RCPT TO:<victim@x.y>",
        b"DATA",
        b"BDAT 5 LAST",
        b"QUIT",
    ];
    let mut body = Vec::new();
    for _ in 0..next() % 60 {
        body.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
    }
    body
}

/// What a correct client sends for `body` after DATA: dots stuffed at the
/// start of every CRLF line, a CRLF added when missing, then `.` CRLF.
/// Returns the wire bytes and the body the server must store.
fn stuffed(body: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut stored = body.to_vec();
    if !stored.is_empty() && !stored.ends_with(b"\r\n") {
        stored.extend_from_slice(b"\r\n");
    }
    let mut wire = Vec::new();
    let mut line_start = true;
    for (i, &b) in stored.iter().enumerate() {
        if line_start && b == b'.' {
            wire.push(b'.');
        }
        wire.push(b);
        line_start = b == b'\n' && i > 0 && stored[i - 1] == b'\r';
    }
    wire.extend_from_slice(b".\r\n");
    (wire, stored)
}

fn has_bare_cr_or_lf(b: &[u8]) -> bool {
    b.iter()
        .enumerate()
        .any(|(i, &c)| (c == b'\n' && (i == 0 || b[i - 1] != b'\r')) || (c == b'\r' && b.get(i + 1) != Some(&b'\n')))
}

/// Feeds `wire` in random chunks, accepting every event; returns the events
/// seen (as names) and the replies.
fn drive(wire: &[u8], next: &mut impl FnMut() -> u64) -> (Vec<String>, Vec<Envelope>, Vec<String>) {
    let mut s = ServerSession::new(ServerConfig {
        max_size: 1 << 20,
        ..cfg()
    });
    s.greet();
    let (mut events, mut messages) = (Vec::new(), Vec::new());
    let mut pos = 0;
    while pos < wire.len() && !s.is_closed() {
        let end = (pos + 1 + (next() % 23) as usize).min(wire.len());
        s.feed(&wire[pos..end]);
        pos = end;
        while let Some(ev) = s.next_event() {
            events.push(format!("{ev:?}").split(['(', ' ']).next().unwrap_or("").to_string());
            match ev {
                Event::Message(env) => {
                    messages.push(env);
                    s.accept();
                }
                Event::Close => break,
                _ => s.accept(),
            }
        }
    }
    let out = String::from_utf8_lossy(&std::mem::take(s.output())).into_owned();
    let codes = out
        .split("\r\n")
        .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
        .map(|l| l[..3].to_string())
        .collect();
    (events, messages, codes)
}

/// The smuggling property over random bodies and random chunking: whatever a
/// body holds, none of it is ever executed as a command; a clean body is
/// stored exactly as sent (dot-unstuffed), one with a bare CR or LF is refused
/// with one 550 at the real end of the data, and the session goes on.
#[test]
fn body_bytes_are_never_commands() {
    let mut next = rng(0x2545_F491_4F6C_DD1D);
    for round in 0..4000 {
        let body = hostile_body(&mut next);
        let (data, stored) = stuffed(&body);
        let mut wire = b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n".to_vec();
        wire.extend_from_slice(&data);
        wire.extend_from_slice(b"NOOP\r\n");
        let (events, messages, codes) = drive(&wire, &mut next);
        let clean = !has_bare_cr_or_lf(&stored);
        let want_events: &[&str] = if clean {
            &["Mail", "Rcpt", "Message"]
        } else {
            &["Mail", "Rcpt"]
        };
        assert_eq!(events, want_events, "round {round}: body {body:?}");
        let want_codes = [
            "220",
            "250",
            "250",
            "250",
            "354",
            if clean { "250" } else { "550" },
            "250",
        ];
        assert_eq!(codes, want_codes, "round {round}: body {body:?}");
        if clean {
            assert_eq!(messages[0].body, stored, "round {round}");
        }
    }
}

/// The same for BDAT: a chunk is exactly its announced size, so nothing in it
/// is read as a command and it is stored byte for byte.
#[test]
fn bdat_chunks_are_never_commands() {
    let mut next = rng(0x5851_F42D_4C95_7F2D);
    for round in 0..2000 {
        let chunks: Vec<Vec<u8>> = (0..1 + next() % 4).map(|_| hostile_body(&mut next)).collect();
        let mut wire = b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\n".to_vec();
        for (i, c) in chunks.iter().enumerate() {
            let last = if i + 1 == chunks.len() { " LAST" } else { "" };
            wire.extend_from_slice(format!("BDAT {}{last}\r\n", c.len()).as_bytes());
            wire.extend_from_slice(c);
        }
        wire.extend_from_slice(b"NOOP\r\n");
        let (events, messages, codes) = drive(&wire, &mut next);
        assert_eq!(events, ["Mail", "Rcpt", "Message"], "round {round}");
        assert_eq!(codes.len(), 4 + chunks.len() + 1, "round {round}: {codes:?}");
        assert_eq!(messages[0].body, chunks.concat(), "round {round}");
    }
}

#[test]
fn bdat_larger_than_the_limit_is_refused_at_once() {
    let mut s = new();
    let (codes, msgs) = run(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nBDAT 18446744073709551615 LAST\r\n",
    );
    assert_eq!(codes, ["220 mx.test", "250 DSN", "250 2.1.0", "250 2.1.5", "552 5.3.4"]);
    assert!(msgs.is_empty());
    // Its bytes are discarded as they come: the session is not waiting for
    // anything but them, and the transaction is gone.
    assert!(s.in_body());
}

#[test]
fn max_size_zero_means_no_limit() {
    let mut s = ServerSession::new(ServerConfig { max_size: 0, ..cfg() });
    s.greet();
    let mut input = b"EHLO c\r\nMAIL FROM:<a@b.c> SIZE=5000\r\nRCPT TO:<x@y.z>\r\nDATA\r\n".to_vec();
    input.extend_from_slice(&b"0123456789\r\n".repeat(500));
    input.extend_from_slice(b".\r\n");
    let (codes, msgs) = run(&mut s, &input);
    assert_eq!(
        codes,
        [
            "220 mx.test",
            "250 DSN",
            "250 2.1.0",
            "250 2.1.5",
            "354 End",
            "250 2.0.0"
        ]
    );
    assert_eq!(msgs[0].body.len(), 6000);
}

/// RFC 5321 §4.5.3.1.10: 452 for recipients past the limit is no error; a
/// client pipelining many of them keeps its transaction.
#[test]
fn excess_recipients_are_not_errors() {
    let mut s = new();
    let mut input = b"EHLO c\r\nMAIL FROM:<a@b.c>\r\n".to_vec();
    for i in 0..1100 {
        input.extend_from_slice(format!("RCPT TO:<r{i}@y.z>\r\n").as_bytes());
    }
    input.extend_from_slice(b"DATA\r\nhi\r\n.\r\n");
    let (codes, msgs) = run(&mut s, &input);
    assert_eq!(codes.iter().filter(|c| c.starts_with("452")).count(), 1097);
    assert_eq!(codes.last().map(String::as_str), Some("250 2.0.0"));
    assert_eq!(msgs[0].rcpts.len(), 3);
    assert!(!s.is_closed());
}

#[test]
fn refused_body_is_discarded_and_answered_at_its_end() {
    let mut s = new();
    s.feed(b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\nfirst part\r\n");
    while let Some(_ev) = s.next_event() {
        s.accept();
    }
    assert!(s.in_body());
    assert!(s.body_len() > 0);
    s.refuse_body(Reply::new(452, "4.3.1", "Insufficient system resources"));
    assert_eq!(s.body_len(), 0);
    let (codes, msgs) = run(&mut s, b"more\r\n.\r\nNOOP\r\n");
    assert!(msgs.is_empty());
    assert_eq!(codes[codes.len() - 2..], ["452 4.3.1", "250 2.0.0"]);
}

#[test]
fn new_bodies_can_be_refused_for_a_while() {
    let mut s = new();
    s.refuse_new_bodies(Some(Reply::new(452, "4.3.1", "Insufficient system resources")));
    let (codes, _) = run(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\nBDAT 4 LAST\r\nbody",
    );
    assert_eq!(codes[4..], ["452 4.3.1", "452 4.3.1"]);
    s.refuse_new_bodies(None);
    let (codes, msgs) = run(&mut s, b"BDAT 4 LAST\r\nbody");
    assert_eq!(codes, ["250 2.0.0"]);
    assert_eq!(msgs[0].body, b"body");
}
