//! Shaping from the settings database, measured where it matters: rows
//! written with SQL (Python's sqlite3, as an operator's script would), mail
//! injected into the daemon, and a receiver (aiosmtpd) that records when
//! each message arrived and how many connections were open.

mod common;
use common::peers::{recorded, recorder};
use common::policy::*;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A daemon delivering to `port` with its settings in `db`, read every second.
fn daemon(port: u16, db: &Path) -> Daemon {
    Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {port}\ndatabase-address: sqlite://{}\ndatabase-ttl: 1\n",
        db.display()
    ))
}

#[test]
fn a_message_rate_row_paces_its_domain_and_leaves_the_others_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("settings.db"), dir.path().join("arrivals.jsonl"));
    // An operator's table with only the columns they use; Sluice adds the rest.
    sql(
        &db,
        "CREATE TABLE capacity (id INTEGER PRIMARY KEY, domain TEXT, message_rate TEXT);
         INSERT INTO capacity (domain, message_rate) VALUES ('slow.example', '120/min');",
    );
    let receiver = recorder(&out, None);
    let d = daemon(receiver.port, &db);
    let mut batch: Vec<Value> = (0..20).map(|i| message(i, "slow.example")).collect();
    batch.extend((0..20).map(|i| message(i, "fast.example")));
    inject(&d, &batch);
    let seen = arrivals(&out, 40, Duration::from_secs(60));
    let (slow, fast) = (times(&seen, "slow.example"), times(&seen, "fast.example"));
    assert_eq!((slow.len(), fast.len()), (20, 20), "{}", d.log_tail(50));
    // 120/min is one every half second: the 20th no sooner than 9.5 s after
    // the first, and no second with more than 3 (2, plus arrival jitter).
    let span = slow[19] - slow[0];
    assert!(span >= 9.4, "20 messages at 120/min took {span:.2} s");
    for (i, t) in slow.iter().enumerate() {
        let in_second = slow[i..].iter().filter(|u| **u < t + 1.0).count();
        assert!(in_second <= 3, "{in_second} messages within a second from {t}");
    }
    // Not slower than the rate either (loose: this machine may be busy).
    assert!(span < 20.0, "paced far below 120/min: {span:.2} s");
    // The other domain was not held up behind it.
    assert!(fast[19] < slow[10], "fast.example waited for slow.example");
}

#[test]
fn a_connections_row_caps_simultaneous_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("settings.db"), dir.path().join("arrivals.jsonl"));
    sql(
        &db,
        "CREATE TABLE capacity (id INTEGER PRIMARY KEY, domain TEXT, connections INTEGER, messages_per_connection INTEGER);
         INSERT INTO capacity (domain, connections, messages_per_connection) VALUES ('capped.example', 2, 5);",
    );
    let receiver = recorder(&out, None);
    let d = daemon(receiver.port, &db);
    inject(&d, &(0..60).map(|i| message(i, "capped.example")).collect::<Vec<_>>());
    let seen = arrivals(&out, 60, Duration::from_secs(60));
    assert_eq!(seen.len(), 60, "{}", d.log_tail(50));
    let most = seen.iter().map(|m| m["open"].as_u64().unwrap()).max().unwrap();
    assert!(most <= 2, "{most} connections open at once");
    // messages_per_connection: 5 per connection, so at least 12 connections.
    let mut per: std::collections::HashMap<u64, usize> = Default::default();
    for m in &seen {
        *per.entry(m["connection"].as_u64().unwrap()).or_default() += 1;
    }
    assert!(per.values().all(|n| *n <= 5), "{per:?}");
    assert!(per.len() >= 12, "{} connections", per.len());
}

#[test]
fn a_row_written_while_running_applies_within_the_reload_time() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("settings.db"), dir.path().join("arrivals.jsonl"));
    let receiver = recorder(&out, None);
    let d = daemon(receiver.port, &db);
    // Sluice created the tables; a row arrives after start.
    sql(
        &db,
        "INSERT INTO capacity (domain, message_rate) VALUES ('later.example', '60/min');",
    );
    std::thread::sleep(Duration::from_millis(2500));
    inject(&d, &(0..4).map(|i| message(i, "later.example")).collect::<Vec<_>>());
    let seen = arrivals(&out, 4, Duration::from_secs(30));
    let later = times(&seen, "later.example");
    assert_eq!(later.len(), 4, "{}", d.log_tail(50));
    assert!(later[3] - later[0] >= 2.9, "60/min not applied: {later:?}");
}

#[test]
fn invalid_rows_are_logged_skipped_and_listed_by_database_check() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("settings.db"), dir.path().join("arrivals.jsonl"));
    sql(
        &db,
        "CREATE TABLE capacity (id INTEGER PRIMARY KEY, domain TEXT, message_rate TEXT, connections INTEGER);
         INSERT INTO capacity (id, domain, message_rate, connections) VALUES
           (1, 'bad.example', 'lots', NULL),
           (2, 'worse.example', NULL, -3);",
    );
    let receiver = recorder(&out, None);
    let d = daemon(receiver.port, &db);
    // Delivery goes on with the rows skipped.
    inject(&d, &[message(1, "bad.example")]);
    assert_eq!(
        arrivals(&out, 1, Duration::from_secs(30)).len(),
        1,
        "{}",
        d.log_tail(50)
    );
    let log = d.log();
    assert!(log.contains("row skipped") && log.contains("got `lots`"), "{log}");
    let check = d.cli(&["database", "check"], b"");
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success());
    assert!(
        stdout.contains("capacity row 1: message_rate: expected a rate"),
        "{stdout}"
    );
    assert!(
        stdout.contains("capacity row 2: connections: -3 is not a limit"),
        "{stdout}"
    );
}

#[test]
fn a_flood_reply_pauses_the_destination_and_delivery_resumes_after() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("settings.db"), dir.path().join("arrivals.jsonl"));
    sql(
        &db,
        // One connection, so no other message is already under way when the reply comes.
        "CREATE TABLE capacity (id INTEGER PRIMARY KEY, domain TEXT, connections INTEGER);
         INSERT INTO capacity (domain, connections) VALUES ('flood.example', 1);
         CREATE TABLE flood_responses (id INTEGER PRIMARY KEY, name TEXT, type TEXT, pattern TEXT, pause INTEGER);
         INSERT INTO flood_responses (name, type, pattern, pause)
           VALUES ('test: slow down', 'regex', '^421 4\\.7\\.0 .*slow down', 3);",
    );
    let receiver = recorder(
        &out,
        Some(("flood.example", 1, "421 4.7.0 Too many connections, slow down")),
    );
    let d = Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\ndatabase-address: sqlite://{}\nretry-interval: 1\n",
        receiver.port,
        db.display()
    ));
    inject(&d, &(0..5).map(|i| message(i, "flood.example")).collect::<Vec<_>>());
    // The refused one comes back (retry-interval 1 s) and is delivered after the pause too.
    let seen = arrivals(&out, 6, Duration::from_secs(60));
    assert_eq!(seen.len(), 6, "{}", d.log_tail(50));
    assert_eq!(seen[0]["refused"], true, "{seen:?}");
    let refused_at = seen[0]["t"].as_f64().unwrap();
    let next = seen[1]["t"].as_f64().unwrap();
    // Nothing reached the destination during the 3 s pause.
    assert!(
        next - refused_at >= 2.9,
        "attempted {:.2} s into a 3 s pause",
        next - refused_at
    );
    assert!(seen[1..].iter().all(|m| m["refused"] == false));
    assert!(d.log().contains("test: slow down"), "the rule's name is logged");
    // The refused message: one refusal, then delivered; waiting added no attempt.
    let tried_twice = |r: &Value| r["results"].as_array().is_some_and(|a| a.len() > 1);
    let mut results = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !results.iter().any(tried_twice) && Instant::now() < deadline {
        results.extend(d.collect("results", 1, Duration::from_secs(1)));
    }
    let retried: Vec<&Value> = results.iter().filter(|r| tried_twice(r)).collect();
    assert_eq!(retried.len(), 1, "{results:?}");
    assert_eq!(retried[0]["results"].as_array().unwrap().len(), 2, "{}", retried[0]);
}

#[test]
fn a_flood_reply_lowers_the_rate_for_a_while_then_the_limits_are_restored() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("settings.db"), dir.path().join("arrivals.jsonl"));
    sql(
        &db,
        "CREATE TABLE capacity (id INTEGER PRIMARY KEY, domain TEXT, connections INTEGER);
         INSERT INTO capacity (domain, connections) VALUES ('reduce.example', 1);
         CREATE TABLE flood_responses (id INTEGER PRIMARY KEY, name TEXT, type TEXT, pattern TEXT, reduce INTEGER, message_rate TEXT);
         INSERT INTO flood_responses (name, type, pattern, reduce, message_rate)
           VALUES ('test: reduce', 'substr', 'slow down', 5, '60/min');",
    );
    let receiver = recorder(&out, Some(("reduce.example", 1, "421 4.7.0 Please slow down")));
    let d = Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\ndatabase-address: sqlite://{}\nretry-interval: 1\n",
        receiver.port,
        db.display()
    ));
    inject(&d, &(0..12).map(|i| message(i, "reduce.example")).collect::<Vec<_>>());
    // While reduced, the effect shows with its time left.
    std::thread::sleep(Duration::from_millis(1500));
    let (_, shown) = request(
        &d,
        "GET",
        "/v1/policy?domain=reduce.example",
        "application/json",
        "",
        None,
    );
    let shown: Value = serde_json::from_str(&shown).unwrap();
    let effect = &shown["flood_effects"][0];
    assert_eq!(effect["rule"], "test: reduce", "{shown}");
    assert!(
        effect["reduced_seconds_left"].as_u64().is_some_and(|s| s <= 5),
        "{shown}"
    );
    let seen = arrivals(&out, 13, Duration::from_secs(60));
    assert_eq!(seen.len(), 13, "{}", d.log_tail(50));
    assert_eq!(seen[0]["refused"], true);
    let refused_at = seen[0]["t"].as_f64().unwrap();
    let accepted: Vec<f64> = seen[1..].iter().map(|m| m["t"].as_f64().unwrap()).collect();
    // 60/min for 5 s: about one a second, not the twelve at once the capacity row allows ...
    let during = accepted.iter().filter(|t| **t < refused_at + 4.5).count();
    assert!(
        (2..=6).contains(&during),
        "{during} delivered in the reduced 4.5 s: {accepted:?}"
    );
    // ... and then the rest together, the row's limits back.
    let rest: Vec<f64> = accepted.iter().copied().filter(|t| *t >= refused_at + 4.8).collect();
    assert!(rest.len() >= 4, "{accepted:?}");
    assert!(
        rest[rest.len() - 1] - rest[0] < 1.0,
        "still paced after the reduction: {rest:?}"
    );
}

#[test]
fn a_suppressed_recipient_ends_at_once_without_a_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("settings.db"), dir.path().join("arrivals.jsonl"));
    sql(
        &db,
        "CREATE TABLE suppressions (id INTEGER PRIMARY KEY, type TEXT, value TEXT, code INTEGER, extended TEXT, description TEXT);
         INSERT INTO suppressions (type, value, code, extended, description) VALUES
           ('address', 'Unsubscribed@Example.com', NULL, NULL, 'unsubscribed'),
           ('domain', 'blocked.example', 554, '5.7.0', 'no mail to this domain');",
    );
    let receiver = recorder(&out, None);
    let d = daemon(receiver.port, &db);
    inject(
        &d,
        &[
            json!({"envelope": "s@example.net", "recipient": "unsubscribed@example.com", "mime": "Subject: a\r\n\r\na\r\n"}),
            json!({"envelope": "s@example.net", "recipient": "anyone@blocked.example", "mime": "Subject: b\r\n\r\nb\r\n"}),
            json!({"envelope": "s@example.net", "recipient": "someone@example.com", "mime": "Subject: c\r\n\r\nc\r\n"}),
        ],
    );
    let mut failures = d.collect("failure", 2, Duration::from_secs(30));
    failures.sort_by_key(|m| m["recipient"].as_str().unwrap_or("").to_string());
    assert_eq!(failures.len(), 2, "{}", d.log_tail(50));
    let entry = |m: &Value| m["results"].as_array().unwrap().last().unwrap().clone();
    let blocked = entry(&failures[0]);
    assert_eq!(
        (
            &blocked["state"],
            &blocked["result"],
            &blocked["code"],
            &blocked["status"]
        ),
        (&json!("suppression"), &json!("error"), &json!(554), &json!("5.7.0"))
    );
    assert!(blocked["description"]
        .as_str()
        .unwrap()
        .contains("no mail to this domain"));
    let unsubscribed = entry(&failures[1]);
    assert_eq!(
        (&unsubscribed["code"], &unsubscribed["status"]),
        (&json!(550), &json!("5.7.1"))
    );
    // One attempt each, no connection: the receiver saw only the third message.
    assert_eq!(failures[0]["results"].as_array().unwrap().len(), 1);
    let seen = arrivals(&out, 1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let seen_later = recorded(&out);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen_later.len(), 1, "{seen_later:?}");
    assert_eq!(seen_later[0]["to"][0], "someone@example.com");
}

#[test]
fn a_paused_domain_waits_until_the_pause_is_removed_and_waiting_is_no_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("settings.db"), dir.path().join("arrivals.jsonl"));
    sql(
        &db,
        "CREATE TABLE paused (id INTEGER PRIMARY KEY, domain TEXT, reason TEXT);
         INSERT INTO paused (domain, reason) VALUES ('paused.example', 'complaints');",
    );
    let receiver = recorder(&out, None);
    let d = daemon(receiver.port, &db);
    let mut batch: Vec<Value> = (0..3).map(|i| message(i, "paused.example")).collect();
    batch.push(message(9, "open.example"));
    inject(&d, &batch);
    // The other domain goes; the paused one does not.
    let seen = arrivals(&out, 1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(2500));
    let seen_paused = recorded(&out);
    assert_eq!(seen.len(), 1, "{}", d.log_tail(50));
    assert!(
        times(&seen_paused, "paused.example").is_empty(),
        "delivered while paused: {seen_paused:?}"
    );
    // Removed with SQL: delivered within the reload time.
    sql(&db, "DELETE FROM paused;");
    let seen = arrivals(&out, 4, Duration::from_secs(30));
    assert_eq!(times(&seen, "paused.example").len(), 3, "{}", d.log_tail(50));
    let results = d.collect("success", 4, Duration::from_secs(30));
    assert_eq!(results.len(), 4);
    assert!(
        results.iter().all(|r| r["results"].as_array().unwrap().len() == 1),
        "{results:?}"
    );
}

#[test]
fn a_pause_with_an_expiry_ends_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("settings.db"), dir.path().join("arrivals.jsonl"));
    let receiver = recorder(&out, None);
    let d = daemon(receiver.port, &db);
    // A pause of everything for 4 s from now (UTC, to the second), written while running.
    let expire = chrono_utc_in(4);
    sql(&db, &format!("INSERT INTO paused (expire) VALUES ('{expire}');"));
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Instant::now();
    inject(&d, &[message(1, "any.example")]);
    let seen = arrivals(&out, 1, Duration::from_secs(30));
    assert_eq!(seen.len(), 1, "{}", d.log_tail(50));
    assert!(
        sent.elapsed() >= Duration::from_millis(800),
        "delivered during the pause"
    );
}

/// `YYYY-MM-DD HH:MM:SS` UTC, `secs` from now (with Python, to use a clock no one here wrote).
fn chrono_utc_in(secs: u64) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import datetime, sys; print((datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=int(sys.argv[1]))).strftime('%Y-%m-%d %H:%M:%S'))",
        ])
        .arg(secs.to_string())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn pauses_and_suppressions_through_the_rest_api_apply_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("settings.db"), dir.path().join("arrivals.jsonl"));
    let receiver = recorder(&out, None);
    // A long reload time: what the API writes must not wait for it.
    let d = Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\ndatabase-address: sqlite://{}\ndatabase-ttl: 600\nwww-tokens: t0ken, other\n",
        receiver.port,
        db.display()
    ));
    let bearer = Some("Bearer t0ken");
    let form = "application/x-www-form-urlencoded";
    // Tokens are required once configured; a wrong one is refused.
    assert_eq!(request(&d, "GET", "/v1/pauses", form, "", None).0, 401);
    assert_eq!(request(&d, "GET", "/v1/pauses", form, "", Some("Bearer nope")).0, 401);
    // MailerQ's urlencoded form; mutually exclusive fields are a 400.
    let (code, body) = request(&d, "POST", "/v1/pauses", form, "domain=held.example&tag=", bearer);
    assert_eq!(code, 200, "{body}");
    let (code, body) = request(&d, "POST", "/v1/pauses", form, "domain=a.example&ip=192.0.2.1", bearer);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("domain and ip"), "{body}");
    assert_eq!(request(&d, "POST", "/v1/pauses", form, "pool=shared", bearer).0, 400);
    // Hostile fields: a broken %-escape, a control character, an overlong value, not an IP.
    assert_eq!(request(&d, "POST", "/v1/pauses", form, "domain=%zz", bearer).0, 400);
    assert_eq!(
        request(&d, "POST", "/v1/pauses", form, "domain=a%0d%0ab.example", bearer).0,
        400
    );
    let long = format!("domain={}", "a".repeat(300));
    assert_eq!(request(&d, "POST", "/v1/pauses", form, &long, bearer).0, 400);
    assert_eq!(
        request(
            &d,
            "POST",
            "/v1/pauses",
            "application/json",
            r#"{"mta":"1.2.3"}"#,
            bearer
        )
        .0,
        400
    );
    assert_eq!(
        request(&d, "POST", "/v1/pauses", "application/json", "[1]", bearer).0,
        400
    );
    let (_, list) = request(&d, "GET", "/v1/pauses", form, "", bearer);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["domain"], "held.example");
    // The row is in the table, as SQL sees it.
    let rows = Command::new("python3")
        .args(["-c", "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from paused').fetchone()[0])"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&rows.stdout).trim(), "1");
    // Held at once.
    inject(&d, &[message(1, "held.example"), message(2, "free.example")]);
    assert_eq!(arrivals(&out, 1, Duration::from_secs(30)).len(), 1);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(times(&recorded(&out), "held.example").is_empty());
    // DELETE with a JSON body releases it.
    let (code, body) = request(
        &d,
        "DELETE",
        "/v1/pauses",
        "application/json",
        r#"{"domain":"held.example"}"#,
        bearer,
    );
    assert_eq!((code, body.contains("\"removed\":1")), (200, true), "{body}");
    assert_eq!(
        times(&arrivals(&out, 2, Duration::from_secs(30)), "held.example").len(),
        1
    );

    // A suppression posted as JSON applies to the next message at once.
    let (code, body) = request(
        &d,
        "POST",
        "/v1/suppressions",
        "application/json",
        r#"{"type":"address","value":"user3@free.example","code":551,"extended":"5.7.1","description":"asked to stop"}"#,
        bearer,
    );
    assert_eq!(code, 200, "{body}");
    inject(&d, &[message(3, "free.example")]);
    let failed = d.collect("failure", 1, Duration::from_secs(30));
    assert_eq!(failed.len(), 1);
    let last = failed[0]["results"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((&last["state"], &last["code"]), (&json!("suppression"), &json!(551)));
    let (_, list) = request(&d, "GET", "/v1/suppressions", form, "", bearer);
    assert!(list.contains("asked to stop"), "{list}");
    assert_eq!(
        request(
            &d,
            "POST",
            "/v1/suppressions",
            "application/json",
            r#"{"type":"address","value":"no-at-sign"}"#,
            bearer
        )
        .0,
        400
    );
    let (code, _) = request(
        &d,
        "DELETE",
        "/v1/suppressions",
        form,
        "type=address&value=user3%40free.example",
        bearer,
    );
    assert_eq!(code, 200);
    let (_, list) = request(&d, "GET", "/v1/suppressions", form, "", bearer);
    assert_eq!(list.trim(), "[]");
}

#[test]
fn ip_connections_hold_across_two_domains_at_one_mx_address() {
    use common::peers::dns;
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("settings.db"), dir.path().join("arrivals.jsonl"));
    sql(
        &db,
        "CREATE TABLE capacity (id INTEGER PRIMARY KEY, domain TEXT, ip_connections INTEGER);
         INSERT INTO capacity (domain, ip_connections) VALUES ('', 2);",
    );
    let receiver = recorder(&out, None);
    // Two domains, two MX host names (so two destinations), one address.
    let zone = [
        "--mx-host=one.test,mx1.shared.test,10".to_string(),
        "--mx-host=two.test,mx2.shared.test,10".to_string(),
        "--host-record=mx1.shared.test,127.0.0.1".to_string(),
        "--host-record=mx2.shared.test,127.0.0.1".to_string(),
    ];
    let server = dns(&zone);
    let d = Daemon::start(&format!(
        "delivery-enabled: true\ndns-server: 127.0.0.1:{}\ndelivery-port: {}\ndatabase-address: sqlite://{}\n",
        server.port,
        receiver.port,
        db.display()
    ));
    let mut batch: Vec<Value> = (0..30).map(|i| message(i, "one.test")).collect();
    batch.extend((0..30).map(|i| message(i, "two.test")));
    inject(&d, &batch);
    let seen = arrivals(&out, 60, Duration::from_secs(60));
    assert_eq!(seen.len(), 60, "{}", d.log_tail(50));
    let most = seen.iter().map(|m| m["open"].as_u64().unwrap()).max().unwrap();
    assert!(most <= 2, "{most} connections open at once to one MX address");
    // Waiting for the address was not an attempt.
    let results = d.collect("success", 60, Duration::from_secs(30));
    assert!(results.iter().all(|r| r["results"].as_array().unwrap().len() == 1));
}

#[test]
fn policy_show_prints_each_limit_with_its_row_and_the_pauses_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("settings.db"), dir.path().join("arrivals.jsonl"));
    sql(
        &db,
        "CREATE TABLE capacity (id INTEGER PRIMARY KEY, localip TEXT, domain TEXT, message_rate TEXT, connections INTEGER);
         INSERT INTO capacity (id, localip, domain, message_rate, connections) VALUES
           (1, '', '', NULL, 20),
           (2, '', 'show.example', '120/min', -1),
           (3, '', 'mx:*.big.test', '30/s', NULL);
         CREATE TABLE paused (id INTEGER PRIMARY KEY, domain TEXT, reason TEXT);
         INSERT INTO paused (id, domain, reason) VALUES (7, 'show.example', 'warming up');",
    );
    let receiver = recorder(&out, None);
    let d = daemon(receiver.port, &db);
    let show = |args: &[&str]| {
        let out = d.cli(args, b"");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = show(&["policy", "show", "show.example"]);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or("")
            .to_string()
    };
    assert!(
        line("message_rate").contains("120/min") && line("message_rate").contains("capacity row 2"),
        "{text}"
    );
    assert!(
        line("connections").contains("20") && line("connections").contains("capacity row 1"),
        "{text}"
    );
    // Columns row 2 leaves NULL are unlimited and decide (spec: NULL = unlimited).
    assert!(
        line("queue_size").contains("unlimited") && line("queue_size").contains("capacity row 2"),
        "{text}"
    );
    assert!(
        line("idle_seconds").contains('5'),
        "no connection is kept idle for ever: {text}"
    );
    assert!(text.contains("paused (row 7, \"warming up\"): until removed"), "{text}");
    // An mx: row applies when the MX hosts are given.
    let text = show(&[
        "policy",
        "show",
        "company.example",
        "--mx",
        "mx1.big.test",
        "--from",
        "127.0.0.1",
    ]);
    assert!(text.contains("from 127.0.0.1"), "{text}");
    let rate = text
        .lines()
        .find(|l| l.trim_start().starts_with("message_rate"))
        .unwrap_or("");
    assert!(rate.contains("30/s") && rate.contains("capacity row 3"), "{text}");
    let bad = d.cli(&["policy", "show", "x.example", "--from", "not-an-ip"], b"");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an IP address"));
    // The current rates: what was sent in the last minute.
    inject(&d, &(0..3).map(|i| message(i, "counted.example")).collect::<Vec<_>>());
    assert_eq!(arrivals(&out, 3, Duration::from_secs(30)).len(), 3);
    let (_, shown) = request(
        &d,
        "GET",
        "/v1/policy?domain=counted.example",
        "application/json",
        "",
        None,
    );
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["messages_last_minute"], 3, "{shown}");
    assert!(
        (1..=3).contains(&shown["connections_last_minute"].as_u64().unwrap()),
        "{shown}"
    );
    let text = show(&["policy", "show", "counted.example"]);
    assert!(text.contains("last minute              3 messages"), "{text}");
}

#[test]
fn dns_rows_answer_instead_of_the_dns_server() {
    use common::peers::dns;
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("settings.db"), dir.path().join("arrivals.jsonl"));
    // DNS says a host where nothing listens; the table says the receiver.
    sql(
        &db,
        "CREATE TABLE dns (id INTEGER PRIMARY KEY, domain TEXT, type TEXT, value TEXT);
         INSERT INTO dns (domain, type, value) VALUES
           ('over.test', 'mx', '10 live.over.test'),
           ('live.over.test', 'a', '127.0.0.1'),
           ('bad.test', 'mx', 'ten live.over.test');",
    );
    let receiver = recorder(&out, None);
    let zone = [
        "--mx-host=over.test,dead.over.test,10".to_string(),
        "--host-record=dead.over.test,127.0.0.3".to_string(),
    ];
    let server = dns(&zone);
    let d = Daemon::start(&format!(
        "delivery-enabled: true\ndns-server: 127.0.0.1:{}\ndelivery-port: {}\ndatabase-address: sqlite://{}\n",
        server.port,
        receiver.port,
        db.display()
    ));
    inject(&d, &[message(1, "over.test")]);
    let seen = arrivals(&out, 1, Duration::from_secs(30));
    assert_eq!(seen.len(), 1, "{}", d.log_tail(50));
    let success = d.collect("success", 1, Duration::from_secs(30));
    assert_eq!(success[0]["results"][0]["to"], "127.0.0.1", "{}", success[0]);
    assert!(
        d.log().contains("preference"),
        "the bad row is reported: {}",
        d.log_tail(20)
    );
}

#[test]
fn a_locals_row_puts_incoming_mail_for_it_in_the_local_queue() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("settings.db");
    sql(
        &db,
        "CREATE TABLE locals (id INTEGER PRIMARY KEY, type TEXT, pattern TEXT);
         INSERT INTO locals (type, pattern) VALUES ('fnmatch', '*@Local.test'), ('regex', '(unclosed');",
    );
    let d = Daemon::start(&format!(
        "database-address: sqlite://{}\nrabbitmq-inbox: inbox\nrabbitmq-local: local\n",
        db.display()
    ));
    let mut c = Smtp::connect(d.smtp);
    c.reply();
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<s@example.net>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<alice@local.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@remote.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: hi\r\n\r\nhello\r\n");
    assert!(c.cmd(".").starts_with("250"));
    let local = d.collect("local", 1, Duration::from_secs(10));
    let inbox = d.collect("inbox", 1, Duration::from_secs(10));
    assert_eq!(local.len(), 1, "{}", d.log_tail(30));
    assert_eq!(local[0]["recipient"], "alice@local.test");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["recipient"], "bob@remote.test");
    assert!(d.log().contains("row skipped"), "the bad locals row is reported");
}

#[test]
fn an_mtanames_row_sets_the_ehlo_name_for_its_local_ip() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("settings.db"), dir.path().join("arrivals.jsonl"));
    sql(
        &db,
        "CREATE TABLE mtanames (id INTEGER PRIMARY KEY, localip TEXT, name TEXT);
         INSERT INTO mtanames (localip, name) VALUES ('127.0.0.2', 'MTA2.sluice.test'), ('127.0.0.3', 'bad name\r\nMAIL');",
    );
    let receiver = recorder(&out, None);
    let d = Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\ndatabase-address: sqlite://{}\n",
        receiver.port,
        db.display()
    ));
    // One message from each local IP (a message's `ips` picks it).
    inject(
        &d,
        &[
            from_ip(1, "example.com", "127.0.0.2"),
            from_ip(2, "example.com", "127.0.0.3"),
        ],
    );
    let seen = arrivals(&out, 2, Duration::from_secs(30));
    assert_eq!(seen.len(), 2, "{}", d.log_tail(30));
    let ehlo = |peer: &str| ehlo_of(&seen, peer);
    assert_eq!(ehlo("127.0.0.2"), "mta2.sluice.test");
    // The bad row is skipped: that IP says smtp-hostname.
    assert_eq!(ehlo("127.0.0.3"), "mx.test");
    assert!(d.log().contains("row skipped"));
}

/// The reverse DNS step on the wire, as far as loopback allows: the
/// resolver answers every 127.0.0.0/8 PTR query with `localhost` itself
/// (RFC 6761, hickory does not ask the server), which is no name to greet
/// with, so those IPs say smtp-hostname; a row still wins. The PTR name of
/// a routable local IP is not reachable from a loopback-only test.
#[test]
fn without_an_mtanames_row_a_loopback_local_ip_greets_with_smtp_hostname_not_localhost() {
    use common::peers::dns;
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("settings.db"), dir.path().join("arrivals.jsonl"));
    sql(
        &db,
        "CREATE TABLE mtanames (id INTEGER PRIMARY KEY, localip TEXT, name TEXT);
         INSERT INTO mtanames (localip, name) VALUES ('127.0.0.4', 'row.sluice.test');",
    );
    let receiver = recorder(&out, None);
    let server = dns(&[
        "--mx-host=example.test,mx.dest.test,10".to_string(),
        "--host-record=mx.dest.test,127.0.0.1".to_string(),
        "--ptr-record=2.0.0.127.in-addr.arpa,out2.sender.test".to_string(),
    ]);
    let d = Daemon::start(&format!(
        "delivery-enabled: true\ndns-server: 127.0.0.1:{}\ndelivery-port: {}\ndatabase-address: sqlite://{}\n",
        server.port,
        receiver.port,
        db.display()
    ));
    inject(
        &d,
        &[
            from_ip(1, "example.test", "127.0.0.2"),
            from_ip(2, "example.test", "127.0.0.4"),
        ],
    );
    let seen = arrivals(&out, 2, Duration::from_secs(30));
    assert_eq!(seen.len(), 2, "{}", d.log_tail(30));
    let ehlo = |peer: &str| ehlo_of(&seen, peer);
    assert_eq!(ehlo("127.0.0.2"), "mx.test", "`localhost` is refused; smtp-hostname");
    assert_eq!(ehlo("127.0.0.4"), "row.sluice.test", "the row wins");
}

#[test]
fn a_delegates_row_sends_from_another_local_ip() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("settings.db"), dir.path().join("arrivals.jsonl"));
    sql(
        &db,
        "CREATE TABLE delegates (id INTEGER PRIMARY KEY, localip TEXT, domain TEXT, delegate TEXT);
         INSERT INTO delegates (localip, domain, delegate) VALUES
           ('127.0.0.2', 'moved.example', '127.0.0.3');",
    );
    let receiver = recorder(&out, None);
    let d = Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\ndatabase-address: sqlite://{}\ndelivery-ips: 127.0.0.2\n",
        receiver.port,
        db.display()
    ));
    inject(&d, &[message(1, "moved.example"), message(2, "stays.example")]);
    let seen = arrivals(&out, 2, Duration::from_secs(30));
    assert_eq!(seen.len(), 2, "{}", d.log_tail(30));
    let peer = |domain: &str| {
        seen.iter()
            .find(|m| m["to"][0].as_str().is_some_and(|r| r.ends_with(domain)))
            .map(|m| m["peer"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert_eq!(peer("@moved.example"), "127.0.0.3");
    assert_eq!(peer("@stays.example"), "127.0.0.2");
}

#[test]
fn an_mx_delegates_row_moves_every_domain_hosted_there_and_a_domain_row_still_wins() {
    use common::peers::dns;
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("settings.db"), dir.path().join("arrivals.jsonl"));
    sql(
        &db,
        "CREATE TABLE delegates (id INTEGER PRIMARY KEY, localip TEXT, domain TEXT, delegate TEXT);
         INSERT INTO delegates (localip, domain, delegate) VALUES
           ('127.0.0.2', 'mx:*.provider.test', '127.0.0.4'),
           ('127.0.0.2', 'special.test', '127.0.0.3');",
    );
    let receiver = recorder(&out, None);
    let server = dns(&[
        "--mx-host=company.test,mx1.provider.test,10".to_string(),
        "--mx-host=special.test,mx2.provider.test,10".to_string(),
        "--mx-host=own.test,mx.own.test,10".to_string(),
        "--host-record=mx1.provider.test,127.0.0.1".to_string(),
        "--host-record=mx2.provider.test,127.0.0.1".to_string(),
        "--host-record=mx.own.test,127.0.0.1".to_string(),
    ]);
    let d = Daemon::start(&format!(
        "delivery-enabled: true\ndns-server: 127.0.0.1:{}\ndelivery-port: {}\ndatabase-address: sqlite://{}\ndelivery-ips: 127.0.0.2\n",
        server.port,
        receiver.port,
        db.display()
    ));
    inject(
        &d,
        &[
            message(1, "company.test"),
            message(2, "special.test"),
            message(3, "own.test"),
        ],
    );
    let seen = arrivals(&out, 3, Duration::from_secs(30));
    assert_eq!(seen.len(), 3, "{}", d.log_tail(30));
    let peer = |domain: &str| {
        seen.iter()
            .find(|m| m["to"][0].as_str().is_some_and(|r| r.ends_with(domain)))
            .map(|m| m["peer"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        peer("@company.test"),
        "127.0.0.4",
        "hosted at the provider: the mx: row"
    );
    assert_eq!(
        peer("@special.test"),
        "127.0.0.3",
        "(localip, domain) beats (localip, mx:)"
    );
    assert_eq!(peer("@own.test"), "127.0.0.2", "not hosted there: its own IP");
}
