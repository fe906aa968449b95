//! Arbitrary bytes, in arbitrary chunks, into the server session: it must
//! never panic, and everything it writes must be well-formed reply lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_smtp::{Event, Reply, ServerConfig, ServerSession};

fuzz_target!(|data: &[u8]| {
    let Some((&chunking, data)) = data.split_first() else { return };
    let mut s = ServerSession::new(ServerConfig {
        hostname: "fuzz.test".into(),
        max_size: 4096,
        max_recipients: 5,
        max_errors: 20,
        tls_available: true,
        auth_enabled: true,
        auth_in_clear: chunking & 1 == 0,
    });
    s.greet();
    let step = (chunking as usize % 64) + 1;
    let mut answers = 0u32;
    for chunk in data.chunks(step) {
        s.feed(chunk);
        while let Some(ev) = s.next_event() {
            answers += 1;
            match ev {
                Event::Close => break,
                Event::StartTls => s.tls_established(),
                Event::Auth { .. } if answers % 2 == 0 => s.respond(Reply::new(535, "5.7.8", "no")),
                Event::Rcpt(_) if answers % 3 == 0 => s.respond(Reply::new(550, "5.1.1", "unknown")),
                Event::Message(env) => {
                    assert!(env.body.len() as u64 <= 4096);
                    assert!(!env.rcpts.is_empty());
                    s.accept();
                }
                _ => s.accept(),
            }
        }
        if s.is_closed() {
            break;
        }
    }
    let out = std::mem::take(s.output());
    assert!(sluice_smtp::reply::well_formed(&out), "{}", String::from_utf8_lossy(&out));
});
