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
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3000 {
        let mut input = Vec::new();
        for _ in 0..(next() % 40) {
            if next() % 5 == 0 {
                input.extend((0..next() % 300).map(|_| next() as u8));
            } else {
                input.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
        }
        let mut s = ServerSession::new(ServerConfig {
            max_size: 512,
            auth_in_clear: next() % 2 == 0,
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
                    _ if next() % 4 == 0 => s.respond(Reply::new(550, "5.7.1", "no")),
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
