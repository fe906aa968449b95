//! SMTP smuggling: arbitrary bytes as a message body after DATA, sent in
//! arbitrary chunks. Nothing in the body may be executed as a command, and
//! what the session hands over is exactly what was sent, dot-unstuffed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_smtp::{Event, ServerConfig, ServerSession};

fuzz_target!(|data: &[u8]| {
    let Some((&chunking, body)) = data.split_first() else { return };
    let mut s = ServerSession::new(ServerConfig {
        hostname: "fuzz.test".into(),
        max_size: 1 << 20,
        max_recipients: 5,
        max_errors: 20,
        tls_available: false,
        auth_enabled: false,
        auth_in_clear: false,
    });
    s.greet();
    // Feed up to the real end of the data, if there is one: after it, commands are legitimate.
    let end = find_end(body);
    let sent = &body[..end.map_or(body.len(), |e| e + 3)];
    let mut wire = b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n".to_vec();
    wire.extend_from_slice(sent);
    let step = (chunking as usize % 64) + 1;
    let mut commands = 0;
    for chunk in wire.chunks(step) {
        s.feed(chunk);
        while let Some(ev) = s.next_event() {
            match ev {
                Event::Mail(_) | Event::Rcpt(_) => {
                    commands += 1;
                    assert!(commands <= 2, "a body line ran as a command");
                    s.accept();
                }
                Event::Message(env) => {
                    // Only CRLF.CRLF ends the data, and what is stored is the
                    // wire body up to it, unstuffed.
                    let end = end.expect("message without CRLF.CRLF");
                    assert_eq!(env.body, unstuff(&body[..end]));
                    return;
                }
                Event::Close => return,
                _ => s.accept(),
            }
        }
    }
});

/// Where the body text ends: before the first `CRLF . CRLF` (or at a leading `. CRLF`).
fn find_end(b: &[u8]) -> Option<usize> {
    if b.starts_with(b".\r\n") {
        return Some(0);
    }
    b.windows(5).position(|w| w == b"\r\n.\r\n").map(|i| i + 2)
}

/// Removes the stuffed dot at the start of each CRLF line.
fn unstuff(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut line_start = true;
    for (i, &c) in b.iter().enumerate() {
        if !(line_start && c == b'.') {
            out.push(c);
        }
        line_start = c == b'\n' && i > 0 && b[i - 1] == b'\r';
    }
    out
}
