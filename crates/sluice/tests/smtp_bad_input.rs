//! Bad input over a raw socket: the exact reply, and the session goes on
//! where RFC 5321 says it should.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn protocol_errors_get_exact_codes_and_the_session_goes_on() {
    let d = Daemon::start("smtp-max-recipients: 2\n");
    let mut c = d.session();
    let cases: &[(&str, &str)] = &[
        ("XYZZY", "500 5.5.2"),
        ("MAIL", "501 5.5.4"),
        ("MAIL FROM:<no-at-sign>", "501 5.1.7"),
        ("MAIL FROM:<a@b.c> BOGUS=1", "555 5.5.4"),
        ("RCPT TO:<r@example.com>", "503 5.5.1"),
        ("DATA", "503 5.5.1"),
        ("MAIL FROM:<a@b.c>", "250 2.1.0"),
        ("MAIL FROM:<a@b.c>", "503 5.5.1"),
        ("DATA", "554 5.5.1"),
        ("RCPT TO:<bad address@example.com>", "501 5.1.3"),
        ("RCPT TO:<>", "501 5.1.3"),
        ("RCPT TO:<ü@example.com>", "553 5.6.7"),
        ("RCPT TO:<r1@example.com>", "250 2.1.5"),
        ("RCPT TO:<r2@example.com>", "250 2.1.5"),
        ("RCPT TO:<r3@example.com>", "452 4.5.3"),
        ("VRFY someone", "252 2.1.5"),
        ("HELP", "214 2.0.0"),
        ("RSET", "250 2.0.0"),
        ("NOOP", "250 2.0.0"),
    ];
    for (cmd, want) in cases {
        let got = c.cmd(cmd);
        assert!(got.starts_with(want), "{cmd}: got {got}, want {want}");
    }
}

#[test]
fn overlong_command_line() {
    let d = Daemon::start("");
    let mut c = d.session();
    let long = format!("NOOP {}", "x".repeat(1200));
    assert!(c.cmd(&long).starts_with("500 5.5.2"));
    assert!(c.cmd("NOOP").starts_with("250"));
}

#[test]
fn bare_lf_message_refused() {
    let d = Daemon::start("");
    let mut c = d.session();
    c.cmd("MAIL FROM:<a@b.c>");
    c.cmd("RCPT TO:<r@example.com>");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: smuggle\n\nline\n.\nMAIL FROM:<evil@x.y>\n");
    // A dot after a bare LF ends nothing: only CRLF . CRLF does.
    let r = c.cmd("\r\n.");
    assert!(r.starts_with("550 5.5.2"), "{r}");
    assert!(c.cmd("NOOP").starts_with("250"));
    assert!(d.pop_all("outbox").is_empty());
}

#[test]
fn talking_before_the_greeting() {
    let d = Daemon::start("smtp-greeting-delay: 300\n");
    let mut c = Smtp::connect(d.smtp);
    c.send(b"EHLO eager\r\n");
    let r = c.reply();
    assert!(r.starts_with("554 5.5.0"), "{r}");
    assert!(c.closed());
    // A patient client is served.
    let mut c = Smtp::connect(d.smtp);
    assert!(c.reply().starts_with("220"));
}

#[test]
fn too_many_errors_disconnects() {
    let d = Daemon::start("");
    let mut c = d.session();
    for _ in 0..19 {
        assert!(c.cmd("BOGUS").starts_with("500"));
    }
    // The 20th error is answered, then 421 and the connection closes.
    assert!(c.cmd("BOGUS").starts_with("500"));
    assert!(c.reply().starts_with("421 4.7.0"));
    assert!(c.closed());
}

#[test]
fn connection_limit_and_timeout() {
    let d = Daemon::start("smtp-connections: 1\nsmtp-timeout: 1\n");
    let mut first = d.connect();
    let greeting = first.reply();
    assert!(greeting.starts_with("220"), "{greeting}");
    let mut second = d.connect();
    assert!(second.reply().starts_with("421 4.7.0"));
    assert!(second.closed());
    // The first client stays silent past smtp-timeout.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(first.reply().starts_with("421 4.4.2"));
    assert!(first.closed());
}
