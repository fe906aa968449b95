//! The client session against scripted server replies: what it writes, and
//! what it reports.

use sluice_smtp::client::{
    encode_body, parse_reply, ClientConfig, ClientSession, Event, Stage, TlsPolicy, Transaction,
};
use sluice_smtp::wire::{Credentials, HeloName, Param, Path};

fn client(tls: TlsPolicy, auth: Option<(&str, &str)>) -> ClientSession {
    ClientSession::new(
        ClientConfig {
            helo: HeloName::new("out.test").unwrap(),
            tls,
            auth: auth.map(|(u, p)| Credentials::new(u, p).unwrap()),
        },
        false,
    )
}

/// Feeds server text; returns the event it produced (if any) and what the client wrote.
fn step(c: &mut ClientSession, server: &str) -> (Option<Event>, String) {
    c.feed(server.as_bytes());
    let ev = c.next_event();
    (ev, String::from_utf8(std::mem::take(c.output())).unwrap())
}

fn tx(rcpts: &[&str]) -> Transaction {
    Transaction {
        from: Path::mailbox("s@example.net").unwrap(),
        from_params: Vec::new(),
        rcpts: rcpts.iter().map(|r| (Path::mailbox(r).unwrap(), Vec::new())).collect(),
        body: b"Subject: t\n\n.dot\nend".to_vec(),
    }
}

const EHLO_FULL: &str =
    "250-mx.example Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-DSN\r\n250 ENHANCEDSTATUSCODES\r\n";

#[test]
fn pipelined_transaction_with_one_rejected_recipient() {
    let mut c = client(TlsPolicy::Opportunistic, None);
    assert_eq!(
        step(&mut c, "220 mx.example ESMTP\r\n"),
        (None, "EHLO out.test\r\n".into())
    );
    let (ev, out) = step(&mut c, EHLO_FULL);
    assert_eq!(
        (ev, out.as_str()),
        (Some(Event::Ready), ""),
        "no STARTTLS offered: opportunistic goes on in clear"
    );
    let caps = c.capabilities().clone();
    assert!(caps.pipelining && caps.dsn && caps.eight_bit_mime && !caps.starttls);
    assert_eq!(caps.size, Some(1000));
    assert_eq!(c.greeting().unwrap().text(), "mx.example ESMTP");

    c.send(tx(&["a@x.y", "b@x.y"]));
    let out = String::from_utf8(std::mem::take(c.output())).unwrap();
    assert_eq!(
        out, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@x.y>\r\nRCPT TO:<b@x.y>\r\nDATA\r\n",
        "one write"
    );
    let (ev, out) = step(
        &mut c,
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 No such user\r\n354 go\r\n",
    );
    assert_eq!(ev, None);
    assert_eq!(
        out, "Subject: t\r\n\r\n..dot\r\nend\r\n.\r\n",
        "CRLF, dot-stuffed, final dot"
    );
    let (ev, _) = step(&mut c, "250 2.0.0 queued as X\r\n");
    let Some(Event::Done(r)) = ev else { panic!("{ev:?}") };
    assert_eq!(r.rcpts.iter().map(|r| r.code).collect::<Vec<_>>(), [250, 550]);
    assert_eq!(r.rcpts[1].status.as_deref(), Some("5.1.1"));
    assert_eq!(r.rcpts[1].text(), "No such user");
    assert_eq!(r.message.unwrap().code, 250);
    assert_eq!(c.sent, 1);

    // A second message on the same connection needs no RSET after a success.
    c.send(tx(&["c@x.y"]));
    assert!(String::from_utf8(std::mem::take(c.output()))
        .unwrap()
        .starts_with("MAIL FROM"));
}

#[test]
fn step_by_step_without_pipelining_and_rset_after_failure() {
    let mut c = client(TlsPolicy::Disabled, None);
    step(&mut c, "220 mx\r\n");
    assert_eq!(step(&mut c, "250 mx\r\n").0, Some(Event::Ready));
    c.send(tx(&["a@x.y", "b@x.y"]));
    assert_eq!(
        String::from_utf8(std::mem::take(c.output())).unwrap(),
        "MAIL FROM:<s@example.net>\r\n"
    );
    assert_eq!(step(&mut c, "250 ok\r\n"), (None, "RCPT TO:<a@x.y>\r\n".into()));
    assert_eq!(step(&mut c, "450 4.2.0 busy\r\n"), (None, "RCPT TO:<b@x.y>\r\n".into()));
    assert_eq!(
        step(&mut c, "550 no\r\n")
            .0
            .map(|e| matches!(e, Event::Done(r) if r.data.is_none() && r.message.is_none())),
        Some(true),
        "no recipient: DATA never sent"
    );
    // The failed transaction is followed by RSET.
    c.send(tx(&["c@x.y"]));
    assert_eq!(
        String::from_utf8(std::mem::take(c.output())).unwrap(),
        "RSET\r\nMAIL FROM:<s@example.net>\r\n"
    );
    assert_eq!(step(&mut c, "250 reset\r\n").1, "", "RSET reply consumed");
    assert_eq!(step(&mut c, "250 ok\r\n").1, "RCPT TO:<c@x.y>\r\n");
    assert_eq!(step(&mut c, "250 ok\r\n").1, "DATA\r\n");
    assert_eq!(step(&mut c, "354 go\r\n").1, "Subject: t\r\n\r\n..dot\r\nend\r\n.\r\n");
    let (ev, _) = step(&mut c, "554 5.7.1 rejected\r\n");
    assert!(
        matches!(ev, Some(Event::Done(ref r)) if r.message.as_ref().unwrap().code == 554),
        "{ev:?}"
    );
    assert_eq!(c.sent, 0);
    c.quit();
    assert_eq!(String::from_utf8(std::mem::take(c.output())).unwrap(), "QUIT\r\n");
    assert_eq!(step(&mut c, "221 bye\r\n").0, Some(Event::Closed));
}

#[test]
fn helo_fallback_and_refusals_name_their_stage() {
    let mut c = client(TlsPolicy::Opportunistic, None);
    step(&mut c, "220 old\r\n");
    assert_eq!(step(&mut c, "502 5.5.2 what?\r\n"), (None, "HELO out.test\r\n".into()));
    assert_eq!(step(&mut c, "250 old\r\n").0, Some(Event::Ready));
    assert!(!c.capabilities().esmtp);

    let mut c = client(TlsPolicy::Opportunistic, None);
    let (ev, _) = step(&mut c, "421 4.3.2 not now\r\n");
    assert!(
        matches!(ev, Some(Event::Failed { stage: Stage::Intro, reply: Some(ref r), .. }) if r.code == 421),
        "{ev:?}"
    );

    let mut c = client(TlsPolicy::Opportunistic, None);
    let (ev, _) = step(&mut c, "garbage\r\n");
    assert!(
        matches!(
            ev,
            Some(Event::Failed {
                stage: Stage::Intro,
                reply: None,
                ..
            })
        ),
        "invalid reply: {ev:?}"
    );
}

#[test]
fn starttls_opportunistic_required_and_refused() {
    let mut c = client(TlsPolicy::Opportunistic, None);
    step(&mut c, "220 mx\r\n");
    assert_eq!(
        step(&mut c, "250-mx\r\n250 STARTTLS\r\n"),
        (None, "STARTTLS\r\n".into())
    );
    assert_eq!(step(&mut c, "220 2.0.0 go ahead\r\n").0, Some(Event::StartTls));
    c.tls_established();
    assert!(c.is_secure());
    assert_eq!(
        String::from_utf8(std::mem::take(c.output())).unwrap(),
        "EHLO out.test\r\n",
        "EHLO again after TLS"
    );
    assert_eq!(
        step(&mut c, "250-mx\r\n250 PIPELINING\r\n").0,
        Some(Event::Ready),
        "no second STARTTLS"
    );

    // Required, not offered: fail rather than send in clear.
    let mut c = client(TlsPolicy::Required, None);
    step(&mut c, "220 mx\r\n");
    assert!(matches!(
        step(&mut c, "250 mx\r\n").0,
        Some(Event::Failed {
            stage: Stage::StartTls,
            ..
        })
    ));
    // Opportunistic, offered but refused: go on in clear.
    let mut c = client(TlsPolicy::Opportunistic, None);
    step(&mut c, "220 mx\r\n");
    step(&mut c, "250-mx\r\n250 STARTTLS\r\n");
    assert_eq!(step(&mut c, "454 4.7.0 TLS not available\r\n").0, Some(Event::Ready));
    // Required and refused: fail.
    let mut c = client(TlsPolicy::Required, None);
    step(&mut c, "220 mx\r\n");
    step(&mut c, "250-mx\r\n250 STARTTLS\r\n");
    assert!(matches!(
        step(&mut c, "454 4.7.0 no\r\n").0,
        Some(Event::Failed {
            stage: Stage::StartTls,
            ..
        })
    ));
}

#[test]
fn auth_plain_and_login() {
    let mut c = client(TlsPolicy::Disabled, Some(("u", "p")));
    step(&mut c, "220 mx\r\n");
    assert_eq!(
        step(&mut c, "250-mx\r\n250 AUTH LOGIN PLAIN\r\n").1,
        "AUTH PLAIN AHUAcA==\r\n"
    );
    assert_eq!(c.authentication(), None);
    assert_eq!(step(&mut c, "235 2.7.0 ok\r\n").0, Some(Event::Ready));
    assert_eq!(c.authentication(), Some("PLAIN"), "for the result's `authentication`");

    let mut c = client(TlsPolicy::Disabled, Some(("u", "p")));
    step(&mut c, "220 mx\r\n");
    assert_eq!(step(&mut c, "250-mx\r\n250 AUTH LOGIN\r\n").1, "AUTH LOGIN\r\n");
    assert_eq!(step(&mut c, "334 VXNlcm5hbWU6\r\n").1, "dQ==\r\n");
    assert_eq!(step(&mut c, "334 UGFzc3dvcmQ6\r\n").1, "cA==\r\n");
    let (ev, _) = step(&mut c, "535 5.7.8 bad\r\n");
    assert!(
        matches!(
            ev,
            Some(Event::Failed {
                stage: Stage::AuthPassword,
                ..
            })
        ),
        "{ev:?}"
    );

    let mut c = client(TlsPolicy::Disabled, Some(("u", "p")));
    step(&mut c, "220 mx\r\n");
    assert!(
        matches!(
            step(&mut c, "250 mx\r\n").0,
            Some(Event::Failed { stage: Stage::Ehlo, .. })
        ),
        "no AUTH offered"
    );
}

#[test]
fn pipelined_with_every_recipient_rejected_but_data_accepted() {
    let mut c = client(TlsPolicy::Disabled, None);
    step(&mut c, "220 mx\r\n");
    step(&mut c, "250-mx\r\n250 PIPELINING\r\n");
    c.send(tx(&["a@x.y"]));
    std::mem::take(c.output());
    // A server that says 354 although no recipient was accepted.
    let (ev, out) = step(&mut c, "250 ok\r\n550 no\r\n354 go\r\n");
    assert_eq!((ev, out.as_str()), (None, ".\r\n"), "an empty message, not the body");
    let (ev, _) = step(&mut c, "554 no valid recipients\r\n");
    assert!(matches!(ev, Some(Event::Done(ref r)) if r.message.is_none()), "{ev:?}");
    assert_eq!(c.sent, 0);
}

#[test]
fn reply_parsing() {
    let (r, n) = parse_reply(b"250-first\r\n250-2.0.0 x\r\n250 last\r\nrest")
        .unwrap()
        .unwrap();
    assert_eq!((r.code, n, r.lines.len()), (250, 34, 3));
    assert_eq!(parse_reply(b"250-first\r\n250 la").unwrap(), None);
    assert!(parse_reply(b"250-a\r\n251 b\r\n").is_err(), "mixed codes");
    assert!(parse_reply(b"ok\r\n").is_err());
    let (r, _) = parse_reply(b"550 5.1.1 <a@b> unknown\r\n").unwrap().unwrap();
    assert_eq!(
        (r.status.as_deref(), r.text().as_str()),
        (Some("5.1.1"), "<a@b> unknown")
    );
    let (r, _) = parse_reply(b"220\r\n").unwrap().unwrap();
    assert_eq!(r.code, 220);
}

#[test]
fn body_encoding() {
    let mut out = Vec::new();
    encode_body(b".a\r\nb\n..c\r\n", &mut out);
    assert_eq!(out, b"..a\r\nb\r\n...c\r\n.\r\n");
    out.clear();
    encode_body(b"", &mut out);
    assert_eq!(out, b".\r\n");
    // Bare CR and LF become CRLF, so no line-ending trick survives to the next hop.
    for (body, want) in [
        (&b"a\n.\r\nMAIL"[..], &b"a\r\n..\r\nMAIL\r\n.\r\n"[..]),
        (b"a\r.\rMAIL", b"a\r\n..\r\nMAIL\r\n.\r\n"),
        (b"a\r\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"a\r", b"a\r\n.\r\n"),
    ] {
        out.clear();
        encode_body(body, &mut out);
        assert_eq!(out, want, "{:?}", String::from_utf8_lossy(body));
    }
}

/// Parameters reach the wire only through checked types: what a caller
/// writes is exactly one command per path.
#[test]
fn parameters_and_paths_are_written_as_checked() {
    let mut c = client(TlsPolicy::Disabled, None);
    step(&mut c, "220 mx.example ESMTP\r\n");
    assert_eq!(step(&mut c, EHLO_FULL).0, Some(Event::Ready));
    let mut t = tx(&["a@x.y"]);
    t.from_params = vec![
        Param::new("SIZE", "10").unwrap(),
        Param::xtext("ENVID", "x\r\nRSET").unwrap(),
    ];
    t.rcpts[0].1 = vec![Param::new("NOTIFY", "FAILURE").unwrap()];
    c.send(t);
    let out = String::from_utf8(std::mem::take(c.output())).unwrap();
    assert_eq!(
        out,
        "MAIL FROM:<s@example.net> SIZE=10 ENVID=x+0D+0ARSET\r\nRCPT TO:<a@x.y> NOTIFY=FAILURE\r\nDATA\r\n"
    );
}

#[test]
fn a_held_body_is_asked_for_after_354() {
    let mut c = client(TlsPolicy::Disabled, None);
    step(&mut c, "220 mx.example ESMTP\r\n");
    assert_eq!(step(&mut c, EHLO_FULL).0, Some(Event::Ready));
    c.send_held(tx(&["a@x.y"]));
    std::mem::take(c.output());
    let (ev, out) = step(&mut c, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n");
    assert_eq!(
        (ev, out.as_str()),
        (Some(Event::BodyWanted), ""),
        "nothing sent before the body is given"
    );
    c.send_body(b"Subject: late\n\nbody\n");
    assert_eq!(
        String::from_utf8(std::mem::take(c.output())).unwrap(),
        "Subject: late\r\n\r\nbody\r\n.\r\n"
    );
    let (ev, _) = step(&mut c, "250 2.0.0 queued\r\n");
    let Some(Event::Done(r)) = ev else { panic!("{ev:?}") };
    assert_eq!(r.message.unwrap().code, 250);
    // Refused at RCPT: no BodyWanted, the transaction just ends.
    c.send_held(tx(&["b@x.y"]));
    std::mem::take(c.output());
    let (ev, _) = step(
        &mut c,
        "250 2.1.0 Ok\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n",
    );
    assert!(matches!(ev, Some(Event::Done(_))), "{ev:?}");
}
