//! The client session driven over a real socket against Postfix's smtp-sink
//! (a peer nobody here wrote), including its fault modes.

use sluice_smtp::client::{ClientConfig, ClientSession, Event, TlsPolicy, Transaction, TransactionResult};
use sluice_smtp::wire::{Param, Path};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// smtp-sink with extra options (fault modes), on a free loopback port.
fn sink(options: &[&str]) -> sluice_test_support::Peer {
    sluice_test_support::smtp_sink(options)
}

/// Runs a session: the transactions in order, then QUIT; returns their results.
fn run(port: u16, txs: Vec<Transaction>) -> Vec<TransactionResult> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut c = ClientSession::new(
        ClientConfig {
            helo: sluice_smtp::wire::HeloName::new("client.test").unwrap(),
            tls: TlsPolicy::Disabled,
            auth: None,
        },
        false,
    );
    let mut pending = txs.into_iter();
    let mut results = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        while let Some(ev) = c.next_event() {
            match ev {
                Event::Ready => match pending.next() {
                    Some(tx) => c.send(tx),
                    None => c.quit(),
                },
                Event::Done(r) => {
                    results.push(r);
                    match pending.next() {
                        Some(tx) => c.send(tx),
                        None => c.quit(),
                    }
                }
                Event::Closed => return results,
                other => panic!("unexpected {other:?}"),
            }
        }
        let out = std::mem::take(c.output());
        s.write_all(&out).unwrap();
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "smtp-sink closed early");
        c.feed(&buf[..n]);
    }
}

fn message(n: usize) -> Transaction {
    Transaction {
        from: Path::mailbox("s@example.net").unwrap(),
        from_params: vec![Param::new("BODY", "8BITMIME").unwrap()],
        rcpts: vec![
            (Path::mailbox(&format!("a{n}@example.com")).unwrap(), Vec::new()),
            (Path::mailbox(&format!("b{n}@example.com")).unwrap(), Vec::new()),
        ],
        body: format!("Subject: {n}\r\n\r\n.starts with a dot\r\nbody\r\n").into_bytes(),
    }
}

/// One test, run in sequence: sinks of parallel tests never meet.
#[test]
fn against_smtp_sink() {
    three_messages_on_one_connection();
    fault_modes_soft_rcpt_and_hard_data();
}

fn three_messages_on_one_connection() {
    let sink = sink(&[]);
    let results = run(sink.port, (0..3).map(message).collect());
    assert_eq!(results.len(), 3);
    for r in &results {
        assert_eq!(r.mail.code, 250);
        assert_eq!(r.rcpts.iter().map(|r| r.code).collect::<Vec<_>>(), [250, 250]);
        assert_eq!(r.data.as_ref().unwrap().code, 354);
        assert_eq!(r.message.as_ref().unwrap().code, 250);
    }
}

fn fault_modes_soft_rcpt_and_hard_data() {
    // -r rcpt: every RCPT gets a 4xx, so DATA is never sent.
    let sink1 = sink(&["-r", "rcpt"]);
    let r = &run(sink1.port, vec![message(0)])[0];
    assert!(r.rcpts.iter().all(|r| (400..500).contains(&r.code)), "{r:?}");
    assert!(r.message.is_none());
    // -f data: DATA gets a 5xx.
    let sink2 = sink(&["-f", "data"]);
    let r = &run(sink2.port, vec![message(1), message(2)]);
    assert_eq!(r.len(), 2, "the session goes on after a refused DATA (RSET)");
    assert!(
        r.iter()
            .all(|t| t.data.as_ref().is_some_and(|d| (500..600).contains(&d.code)) && t.message.is_none()),
        "{r:?}"
    );
}
