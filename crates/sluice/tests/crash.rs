//! kill -9 while clients are sending: after restart every message that got a
//! 250 is in the queue, and the store opens cleanly. Repeated on one data
//! directory so each restart also replays what earlier crashes left.

mod common;
use common::*;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Sends tagged messages until the server goes away; returns the tags acknowledged with 250.
fn sender(port: u16, thread: usize, round: usize, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<String>>>) {
    let Ok(s) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut reply = || -> Option<String> {
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return Some(line);
            }
        }
    };
    if reply().is_none() || w.write_all(b"EHLO crash.test\r\n").is_err() || reply().is_none() {
        return;
    }
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let tag = format!("r{round}-t{thread}-m{n}");
        // Pipelined transaction: MAIL, RCPT, DATA in one write.
        let head = format!("MAIL FROM:<c@crash.test>\r\nRCPT TO:<{tag}@dest.test>\r\nDATA\r\n");
        if w.write_all(head.as_bytes()).is_err() {
            return;
        }
        for _ in 0..3 {
            if reply().is_none() {
                return;
            }
        }
        let body = format!("Subject: {tag}\r\n\r\n{}\r\n.\r\n", "payload ".repeat(50));
        if w.write_all(body.as_bytes()).is_err() {
            return;
        }
        match reply() {
            Some(l) if l.starts_with("250") => acked.lock().unwrap().push(tag),
            _ => return,
        }
    }
}

#[test]
fn kill_9_while_sending_loses_no_acknowledged_message() {
    require("smtp-source");
    let mut d = Daemon::start("log-level: info\n");
    let mut all_acked: HashSet<String> = HashSet::new();
    let mut source_ids: HashSet<String> = HashSet::new();
    for round in 0..4 {
        // Postfix's smtp-source sends alongside; with -v it prints every reply,
        // so the ids it saw acknowledged can be checked after the crash.
        let transcript = d.dir.path().join(format!("smtp-source-{round}.txt"));
        let mut source = std::process::Command::new("smtp-source")
            .args([
                "-v",
                "-s",
                "5",
                "-m",
                "1000000",
                "-f",
                "s@source.test",
                "-t",
                "to@source.test",
            ])
            .arg(format!("127.0.0.1:{}", d.smtp))
            .stdout(std::fs::File::create(&transcript).unwrap())
            .stderr(std::fs::File::options().append(true).open(&transcript).unwrap())
            .spawn()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (stop, acked, port) = (stop.clone(), acked.clone(), d.smtp);
                std::thread::spawn(move || sender(port, t, round, stop, acked))
            })
            .collect();
        // Kill while both are under way: once smtp-source has its first 250
        // (on a busy machine that can take longer than any fixed sleep), a
        // little later each round.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&transcript)
            .unwrap_or_default()
            .contains("<<< 250 2.0.0 queued as ")
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200 + 150 * round as u64));
        d.kill9();
        stop.store(true, Ordering::Relaxed);
        let _ = source.kill();
        let _ = source.wait();
        let text = std::fs::read_to_string(&transcript).unwrap();
        let ids: Vec<String> = text
            .lines()
            .filter_map(|l| l.split("<<< 250 2.0.0 queued as ").nth(1))
            .map(|r| r.split(' ').next().unwrap().to_string())
            .collect();
        assert!(!ids.is_empty(), "round {round}: smtp-source got no 250 before the kill");
        source_ids.extend(ids);
        for t in threads {
            t.join().unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        assert!(!acked.is_empty(), "round {round}: clients got no 250 before the kill");
        all_acked.extend(acked.iter().cloned());
        d.spawn();
        let stats = json_lines(&d.cli(&["queue", "stats"], b"").stdout);
        let stored = stats
            .iter()
            .find(|q| q["name"] == "outbox")
            .map(|q| q["ready"].as_u64().unwrap())
            .unwrap_or(0);
        eprintln!(
            "round {round}: {} acknowledged this round, {} acknowledged in all, {stored} in the outbox (with smtp-source's)",
            acked.len(),
            all_acked.len()
        );
        assert!(
            stored as usize >= all_acked.len(),
            "fewer messages stored than acknowledged"
        );
    }
    let msgs = d.pop_all("outbox");
    let stored_ids: HashSet<&str> = msgs.iter().map(|m| m["message-id"].as_str().unwrap()).collect();
    let lost: Vec<&String> = source_ids
        .iter()
        .filter(|id| !stored_ids.contains(id.as_str()))
        .collect();
    assert!(lost.is_empty(), "acknowledged to smtp-source but lost: {lost:?}");
    eprintln!("smtp-source: {} acknowledged, all stored", source_ids.len());
    let msgs: Vec<serde_json::Value> = msgs
        .into_iter()
        .filter(|m| m["recipient"] != "to@source.test")
        .collect();
    let stored: HashSet<String> = msgs
        .iter()
        .map(|m| {
            m["recipient"]
                .as_str()
                .unwrap()
                .trim_end_matches("@dest.test")
                .to_string()
        })
        .collect();
    let missing: Vec<&String> = all_acked.iter().filter(|t| !stored.contains(*t)).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    for m in &msgs {
        let tag = m["recipient"].as_str().unwrap().trim_end_matches("@dest.test");
        assert!(
            m["mime"].as_str().unwrap().starts_with(&format!("Subject: {tag}\r\n")),
            "message intact"
        );
    }
    eprintln!(
        "{} acknowledged, {} stored ({} stored without a 250: the kill came between fsync and reply)",
        all_acked.len(),
        msgs.len(),
        msgs.len() - all_acked.len()
    );
    assert!(
        !d.log().contains("corrupt record"),
        "store opened cleanly:\n{}",
        d.log()
    );
}
