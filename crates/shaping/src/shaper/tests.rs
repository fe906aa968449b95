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
        match s.may_send(dest, hosts, Some(mx), now) {
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
        assert_eq!(s.may_send(&fast, &[], Some(ip("127.0.0.3")), start), Decision::Go);
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
    s.pause(&d, until);
    assert_eq!(s.may_connect(&d, &[], None, now), Decision::Wait(until));
    assert_eq!(s.may_send(&d, &[], Some(ip("127.0.0.2")), now), Decision::Wait(until));
    assert_eq!(s.may_send(&d, &[], Some(ip("127.0.0.2")), until), Decision::Go);
    // A shorter pause does not cut a longer one short.
    s.pause(&d, now + Duration::from_secs(1));
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
        s.may_send(&d, &[], Some(mx), start),
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
        s.may_send(&d, &[], Some(mx), start),
        Decision::Wait(start + Duration::from_secs(60))
    );
    s.sent(&d, &[], mx, start + Duration::from_secs(60));
    assert_eq!(
        s.may_send(&d, &[], Some(mx), start + Duration::from_secs(60)),
        Decision::Wait(start + Duration::from_secs(61))
    );
    s.reload(Capacity::new(vec![]).0);
    assert_eq!(
        s.may_send(&d, &[], Some(mx), start + Duration::from_secs(60)),
        Decision::Go
    );
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
    // Paced out after 1 s, but each sent within the minute: kept for its current rate.
    s.sweep(start + Duration::from_secs(2));
    assert_eq!(s.tracked(), (1001, 1));
    s.sweep(start + Duration::from_secs(61));
    assert_eq!(
        s.tracked(),
        (1, 1),
        "only the destination with an open connection is left"
    );
}

fn flood_rule(id: i64, pattern: &str, edit: impl FnOnce(&mut crate::flood::FloodRule)) -> crate::flood::FloodRule {
    let mut r = crate::flood::FloodRule {
        id,
        name: format!("rule {id}"),
        matcher: crate::flood::Matcher::new("substr", pattern).unwrap(),
        domain: DomainScope::Any,
        localip: None,
        threshold: None,
        pause: None,
        reduce: None,
        reduced: crate::flood::Reduced::default(),
    };
    edit(&mut r);
    r
}

fn with_rules(rows: Vec<CapacityRow>, rules: Vec<crate::flood::FloodRule>) -> Shaper {
    let mut s = shaper(rows);
    s.set_flood_rules(crate::flood::FloodRules::new(rules, vec![]));
    s
}

#[test]
fn a_flood_reply_pauses_only_the_destination_that_got_it() {
    let mut s = with_rules(
        vec![],
        vec![flood_rule(1, "too many connections", |r| {
            r.pause = Some(Duration::from_secs(60))
        })],
    );
    let now = Instant::now();
    let hit = Destination::new(None, "hit.example");
    let other = Destination::new(None, "other.example");
    let effect = s
        .reply(&hit, &[], "421 4.7.0 Too many connections, slow down", now)
        .unwrap();
    assert_eq!(effect.rule, "rule 1");
    let until = now + Duration::from_secs(60);
    assert_eq!(effect.paused_until, Some(until));
    assert_eq!(s.may_connect(&hit, &[], None, now), Decision::Wait(until));
    assert_eq!(s.may_connect(&other, &[], None, now), Decision::Go);
    assert_eq!(s.effects(now).len(), 1);
    assert_eq!(s.effects(now)[0].0, hit);
    // It ends by itself.
    assert_eq!(s.may_connect(&hit, &[], None, until), Decision::Go);
    assert!(s.effects(until).is_empty());
    // Positive replies and replies no rule matches do nothing.
    assert_eq!(s.reply(&other, &[], "250 2.0.0 too many connections? no", now), None);
    assert_eq!(s.reply(&other, &[], "550 5.1.1 no such user", now), None);
}

#[test]
fn a_threshold_acts_once_reached_within_its_period() {
    let mut s = with_rules(
        vec![],
        vec![flood_rule(1, "slow down", |r| {
            r.threshold = Some("3/min".parse().unwrap());
            r.pause = Some(Duration::from_secs(10));
        })],
    );
    let start = Instant::now();
    let d = Destination::new(None, "example.com");
    // Spread over more than a minute: never three within one.
    for i in 0..6 {
        assert_eq!(
            s.reply(&d, &[], "421 slow down", start + Duration::from_secs(40 * i)),
            None,
            "reply {i}"
        );
    }
    let t = start + Duration::from_secs(1000);
    assert_eq!(s.reply(&d, &[], "421 slow down", t), None);
    assert_eq!(s.reply(&d, &[], "421 slow down", t + Duration::from_secs(1)), None);
    let effect = s.reply(&d, &[], "421 slow down", t + Duration::from_secs(2)).unwrap();
    assert_eq!(effect.paused_until, Some(t + Duration::from_secs(12)));
    // The count starts again after acting.
    assert_eq!(s.reply(&d, &[], "421 slow down", t + Duration::from_secs(3)), None);
}

#[test]
fn reduced_limits_hold_for_their_duration_then_the_rows_apply_again() {
    let mut s = with_rules(
        vec![row(1, "example.com", |r| r.connections = Limit::Of(10))],
        vec![flood_rule(1, "rate limited", |r| {
            r.reduce = Some(Duration::from_secs(300));
            r.reduced.connections = Some(1);
            r.reduced.message_rate = Some("60/min".parse().unwrap());
        })],
    );
    let start = Instant::now();
    let d = Destination::new(None, "example.com");
    let mx = ip("127.0.0.2");
    assert_eq!(s.limits(&d, &[], start).connections.value, Some(10));
    let effect = s.reply(&d, &[], "451 4.7.650 temporarily rate limited", start).unwrap();
    assert_eq!(effect.reduced_until, Some(start + Duration::from_secs(300)));
    let reduced = s.limits(&d, &[], start);
    assert_eq!(reduced.connections.value, Some(1));
    s.connected(&d, &[], mx, start);
    assert_eq!(s.may_connect(&d, &[], Some(mx), start), Decision::Full);
    // One a second while reduced.
    let sent = drive(&mut s, &d, &[], mx, start, Duration::from_secs(10));
    assert_eq!(sent.len(), 10);
    // Restored after 300 s: ten connections, no rate.
    let after = start + Duration::from_secs(300);
    assert_eq!(s.limits(&d, &[], after).connections.value, Some(10));
    assert_eq!(s.may_connect(&d, &[], Some(mx), after), Decision::Go);
    for _ in 0..100 {
        assert_eq!(s.may_send(&d, &[], Some(mx), after), Decision::Go);
        s.sent(&d, &[], mx, after);
    }
}

#[test]
fn the_current_rates_are_the_last_minutes_messages_and_connections_and_outlive_a_sweep() {
    let mut s = shaper(vec![row(1, "paced.example", |r| {
        r.message_rate = Limit::Of("120/min".parse().unwrap())
    })]);
    let (d, mx) = (Destination::new(None, "paced.example"), ip("192.0.2.1"));
    let t0 = Instant::now();
    s.connected(&d, &[], mx, t0);
    let sent = drive(&mut s, &d, &[], mx, t0, Duration::from_secs(30));
    assert_eq!(s.rates(&d, t0 + Duration::from_secs(30)), (sent.len() as u64, 1));
    assert!((60..=62).contains(&sent.len()), "{}", sent.len());
    s.disconnected(&d, mx);
    // Unconstrained now, but it sent within the minute: the sweep keeps it.
    s.sweep(t0 + Duration::from_secs(40));
    assert_eq!(s.rates(&d, t0 + Duration::from_secs(40)).0, sent.len() as u64);
    assert_eq!(s.rates(&d, t0 + Duration::from_secs(95)), (0, 0));
    s.sweep(t0 + Duration::from_secs(95));
    assert_eq!(s.tracked().0, 0);
}

#[test]
fn the_busiest_destinations_come_first_and_idle_ones_not_at_all() {
    let mut s = shaper(vec![]);
    let mx = ip("192.0.2.1");
    let t0 = Instant::now();
    for (domain, n) in [("a.example", 3), ("b.example", 10), ("c.example", 1)] {
        let d = Destination::new(None, domain);
        for _ in 0..n {
            s.sent(&d, &[], mx, t0);
        }
    }
    let open = Destination::new(None, "open.example");
    s.connected(&open, &[], mx, t0);
    let top: Vec<(String, u64)> = s
        .busiest(3, t0)
        .into_iter()
        .map(|b| (b.destination.domain, b.messages_last_minute))
        .collect();
    assert_eq!(
        top,
        [
            ("b.example".to_string(), 10),
            ("a.example".to_string(), 3),
            ("c.example".to_string(), 1)
        ]
    );
    // A minute later only the one with an open connection is busy.
    let later = s.busiest(10, t0 + Duration::from_secs(61));
    assert_eq!(later.len(), 1);
    assert_eq!(
        (later[0].destination.domain.as_str(), later[0].open),
        ("open.example", 1)
    );
}
