//! The spool directory (`spool-directory`), as MailerQ users drop files in
//! it: one message per To/Cc/Bcc address, broken files to the fail
//! directory, nothing lost when the daemon is killed midway.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// Writes `text` as `name` the way spool writers should: elsewhere, then renamed in.
fn drop_file(dir: &Path, name: &str, text: &str) {
    let staging = dir.parent().unwrap().join(format!(".staging-{name}"));
    std::fs::write(&staging, text).unwrap();
    std::fs::rename(&staging, dir.join(name)).unwrap();
}

fn wait_until(what: &str, d: &Daemon, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}:\n{}", d.log_tail(30));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn spool_files_become_messages_and_broken_ones_go_to_the_fail_directory() {
    let root = tempfile::tempdir().unwrap();
    let (spool, fail) = (root.path().join("spool"), root.path().join("failed"));
    std::fs::create_dir(&spool).unwrap();
    let secret = root.path().join("secret.txt");
    std::fs::write(&secret, "To: thief@example.com\n\nthe password file\n").unwrap();
    let d = Daemon::start(&format!(
        "spool-directory: {}\nspool-fail-directory: {}\n",
        spool.display(),
        fail.display()
    ));
    // A link is not followed (it could point at any file Sluice can read).
    std::os::unix::fs::symlink(&secret, spool.join("link.eml")).unwrap();
    drop_file(
        &spool,
        "good.eml",
        "From: News <news@example.net>\nTo: a@example.com, B <b@example.com>\nCc: c@example.com\nBcc: hidden@example.com\nX-MQ-Tag: Campaign\nSubject: spooled\n\nhello from the spool\n",
    );
    drop_file(&spool, "nobody.eml", "Subject: no recipients\n\nx\n");
    wait_until("both files taken", &d, || files(&spool) == ["link.eml"]);
    let got = d.collect("outbox", 4, WAIT);
    let mut rcpts: Vec<&str> = got.iter().map(|m| m["recipient"].as_str().unwrap()).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        ["a@example.com", "b@example.com", "c@example.com", "hidden@example.com"]
    );
    for m in &got {
        assert_eq!(m["envelope"], "news@example.net");
        assert_eq!(m["spool"]["file"], "good.eml", "{m}");
        assert_eq!(m["spool"]["directory"], spool.display().to_string());
        assert!(m["spool"]["size"].as_u64().unwrap() > 100, "{m}");
        assert!(m["spool"]["user"].is_string(), "{m}");
        assert_eq!(m["tags"], serde_json::json!(["Campaign"]), "spool-extract: {m}");
        let mime = m["mime"].as_str().unwrap();
        assert!(mime.contains("\r\n\r\nhello from the spool\r\n"), "{mime}");
        assert!(
            !mime.to_ascii_lowercase().contains("bcc:"),
            "Bcc is not sent on: {mime}"
        );
        assert!(!mime.to_ascii_lowercase().contains("x-mq-"), "{mime}");
    }
    assert_eq!(files(&fail), ["nobody.eml"]);
    assert!(d.log().contains("no recipient in To, Cc or Bcc"), "{}", d.log_tail(20));
    assert!(d.pop_all("outbox").is_empty(), "the link was not followed");
}

#[test]
fn with_spool_remove_false_a_file_stays_and_is_taken_once() {
    let root = tempfile::tempdir().unwrap();
    let spool = root.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let d = Daemon::start(&format!(
        "spool-directory: {}\nspool-remove: false\nspool-extract: false\n",
        spool.display()
    ));
    drop_file(&spool, "keep.eml", "To: a@example.com\nX-MQ-Tag: t\n\nkept\n");
    let got = d.collect("outbox", 1, WAIT);
    assert_eq!(got.len(), 1, "{}", d.log_tail(20));
    assert!(
        got[0]["mime"].as_str().unwrap().contains("X-MQ-Tag: t"),
        "spool-extract: false keeps the headers"
    );
    assert!(got[0].get("tags").is_none());
    // Several looks later: still there, still one message.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(files(&spool), ["keep.eml"]);
    assert!(d.pop_all("outbox").is_empty());
}

#[test]
fn kill_9_while_spooling_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let spool = root.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    const N: usize = 300;
    for i in 0..N {
        drop_file(
            &spool,
            &format!("m{i:04}.eml"),
            &format!("To: r{i}@example.com\nSubject: {i}\n\nbody {i}\n"),
        );
    }
    let mut d = Daemon::start(&format!("spool-directory: {}\n", spool.display()));
    // Killed once it has started taking the files, before it is through.
    wait_until("the first file taken", &d, || files(&spool).len() < N);
    d.kill9();
    let left = files(&spool).len();
    d.spawn();
    wait_until("every file taken", &d, || files(&spool).is_empty());
    // Removed only once stored: everything is in the outbox now.
    let got: Vec<Value> = d.pop_all("outbox");
    let mut rcpts: Vec<String> = got
        .iter()
        .map(|m| m["recipient"].as_str().unwrap().to_string())
        .collect();
    rcpts.sort();
    rcpts.dedup();
    assert_eq!(
        rcpts.len(),
        N,
        "every file's message, {left} files were left at the kill"
    );
}
