//! The shaper on simulated time: a test moves `now` by hand, so every
//! assertion about rates and counts is exact.

use super::*;
use crate::capacity::{CapacityRow, DomainScope, Limit};
use std::time::Duration;

const DEFAULTS: Defaults = Defaults {
    connections: 10,
    messages_per_connection: 100,
    idle: Duration::from_secs(5),
    queue_size: 5000,
};

fn shaper(rows: Vec<CapacityRow>) -> Shaper {
    Shaper::new(Capacity::new(rows).0, DEFAULTS)
}

fn row(id: i64, domain: &str, edit: impl FnOnce(&mut CapacityRow)) -> CapacityRow {
    let mut r = CapacityRow::inheriting(id, None, DomainScope::parse(domain).unwrap());
    edit(&mut r);
    r
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Sends to `dest` whenever the shaper allows for `span`; returns the send times.
fn drive(
    s: &mut Shaper,
    dest: &Destination,
    hosts: &[String],
    mx: IpAddr,
    start: Instant,
    span: Duration,
) -> Vec<Duration> {
    let mut now = start;
    let mut sent = Vec::new();
    while now < start + span {
        match s.may_send(dest, hosts, mx, now) {
            Decision::Go => {
                s.sent(dest, hosts, mx, now);
                sent.push(now - start);
            }
            Decision::Wait(at) => now = at,
            Decision::Full => panic!("sending is never Full"),
        }
    }
    sent
}

#[test]
fn a_message_rate_paces_one_domain_and_leaves_the_others_alone() {
    let mut s = shaper(vec![row(1, "slow.example", |r| {
        r.message_rate = Limit::Of("120/min".parse().unwrap())
    })]);
    let start = Instant::now();
    let slow = Destination::new(None, "slow.example");
    let sent = drive(&mut s, &slow, &[], ip("127.0.0.2"), start, Duration::from_secs(30));
    // 2/s over 30 s, no second above 3.
    assert!((60..=62).contains(&sent.len()), "{}", sent.len());
    assert!((0..30).all(|sec| sent.iter().filter(|t| t.as_secs() == sec).count() <= 3));
    // Another domain at the same moment: never told to wait.
    let fast = Destination::new(None, "fast.example");
    for _ in 0..1000 {
        assert_eq!(s.may_send(&fast, &[], ip("127.0.0.3"), start), Decision::Go);
        s.sent(&fast, &[], ip("127.0.0.3"), start);
    }
}

#[test]
fn connections_per_domain_are_counted_until_they_close() {
    let mut s = shaper(vec![row(1, "example.com", |r| r.connections = Limit::Of(2))]);
    let now = Instant::now();
    let d = Destination::new(None, "example.com");
    let mx = ip("127.0.0.2");
    for _ in 0..2 {
        assert_eq!(s.may_connect(&d, &[], Some(mx), now), Decision::Go);
        s.connected(&d, &[], mx, now);
    }
    assert_eq!(s.may_connect(&d, &[], Some(mx), now), Decision::Full);
    s.disconnected(&d, mx);
    assert_eq!(s.may_connect(&d, &[], Some(mx), now), Decision::Go);
}

#[test]
fn ip_connections_hold_across_domains_that_share_an_mx_ip() {
    let google = vec!["gmail-smtp-in.l.google.com".to_string()];
    let mut s = shaper(vec![row(1, "mx:*.google.com", |r| r.ip_connections = Limit::Of(3))]);
    let now = Instant::now();
    let mx = ip("127.0.0.9");
    let gmail = Destination::new(None, "gmail.com");
    let company = Destination::new(None, "company.example");
    for _ in 0..2 {
        s.connected(&gmail, &google, mx, now);
    }
    assert_eq!(s.may_connect(&company, &google, Some(mx), now), Decision::Go);
    s.connected(&company, &google, mx, now);
    assert_eq!(s.may_connect(&company, &google, Some(mx), now), Decision::Full);
    assert_eq!(s.may_connect(&gmail, &google, Some(mx), now), Decision::Full);
    // Another MX IP of the same hosts has its own count.
    assert_eq!(
        s.may_connect(&gmail, &google, Some(ip("127.0.0.10")), now),
        Decision::Go
    );
}

#[test]
fn a_connection_rate_spaces_new_connections() {
    let mut s = shaper(vec![row(1, "", |r| {
        r.connection_rate = Limit::Of("6/min".parse().unwrap())
    })]);
    let start = Instant::now();
    let d = Destination::new(None, "example.com");
    let mx = ip("127.0.0.2");
    s.connected(&d, &[], mx, start);
    s.disconnected(&d, mx);
    assert_eq!(
        s.may_connect(&d, &[], Some(mx), start),
        Decision::Wait(start + Duration::from_secs(10))
    );
}

#[test]
fn a_pause_holds_sending_and_connecting_until_it_ends() {
    let mut s = shaper(vec![]);
    let now = Instant::now();
    let d = Destination::new(None, "example.com");
    let until = now + Duration::from_secs(300);
    s.pause(&d, &[], until);
    assert_eq!(s.may_connect(&d, &[], None, now), Decision::Wait(until));
    assert_eq!(s.may_send(&d, &[], ip("127.0.0.2"), now), Decision::Wait(until));
    assert_eq!(s.may_send(&d, &[], ip("127.0.0.2"), until), Decision::Go);
    // A shorter pause does not cut a longer one short.
    s.pause(&d, &[], now + Duration::from_secs(1));
    assert_eq!(s.may_connect(&d, &[], None, now), Decision::Wait(until));
}

#[test]
fn a_reload_applies_new_limits_and_keeps_the_pacing_already_run() {
    let mut s = shaper(vec![row(1, "example.com", |r| {
        r.message_rate = Limit::Of("1/min".parse().unwrap())
    })]);
    let start = Instant::now();
    let d = Destination::new(None, "example.com");
    let mx = ip("127.0.0.2");
    s.sent(&d, &[], mx, start);
    assert_eq!(
        s.may_send(&d, &[], mx, start),
        Decision::Wait(start + Duration::from_secs(60))
    );
    s.reload(
        Capacity::new(vec![row(1, "example.com", |r| {
            r.message_rate = Limit::Of("60/min".parse().unwrap())
        })])
        .0,
    );
    // The schedule already promised stands; the new spacing applies after it.
    assert_eq!(
        s.may_send(&d, &[], mx, start),
        Decision::Wait(start + Duration::from_secs(60))
    );
    s.sent(&d, &[], mx, start + Duration::from_secs(60));
    assert_eq!(
        s.may_send(&d, &[], mx, start + Duration::from_secs(60)),
        Decision::Wait(start + Duration::from_secs(61))
    );
    s.reload(Capacity::new(vec![]).0);
    assert_eq!(s.may_send(&d, &[], mx, start + Duration::from_secs(60)), Decision::Go);
}

#[test]
fn state_is_forgotten_once_it_constrains_nothing() {
    let mut s = shaper(vec![row(1, "", |r| r.message_rate = Limit::Of("1/s".parse().unwrap()))]);
    let start = Instant::now();
    let mx = ip("127.0.0.2");
    for i in 0..1000 {
        let d = Destination::new(None, &format!("d{i}.example"));
        s.sent(&d, &[], mx, start);
    }
    let open = Destination::new(None, "open.example");
    s.connected(&open, &[], mx, start);
    s.sweep(start);
    assert_eq!(s.tracked().0, 1001, "pacing debt is kept");
    s.sweep(start + Duration::from_secs(2));
    assert_eq!(
        s.tracked(),
        (1, 1),
        "only the destination with an open connection is left"
    );
}
