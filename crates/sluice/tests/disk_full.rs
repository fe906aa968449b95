//! Disk full: the data directory on a tiny tmpfs. Messages that do not fit get
//! 452 4.3.1, the session goes on, nothing acknowledged is lost, and the
//! server recovers when space comes back. Needs root (mount), as CI has.

mod common;
use common::*;
use std::process::Command;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &std::path::Path, size: &str, remount: bool) {
    let opts = if remount {
        format!("remount,size={size}")
    } else {
        format!("size={size}")
    };
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "mounting a tmpfs at {} failed: this test needs root", dir.display());
}

#[test]
fn disk_full_refuses_with_452_and_loses_nothing() {
    let mnt = tempfile::tempdir().unwrap();
    mount_tmpfs(mnt.path(), "1M", false);
    let _guard = Mount(mnt.path().to_path_buf());
    let mut d = Daemon::start(&format!("data-directory: {}\nlog-level: info\n", mnt.path().display()));
    let mut c = d.session();
    let body = format!("Subject: fill\r\n\r\n{}\r\n", "0123456789".repeat(400));
    let mut acked = 0;
    let refusal = loop {
        c.cmd("MAIL FROM:<a@b.c>");
        c.cmd(&format!("RCPT TO:<m{acked}@example.com>"));
        assert!(c.cmd("DATA").starts_with("354"));
        c.send(body.as_bytes());
        let r = c.cmd(".");
        if !r.starts_with("250") {
            break r;
        }
        acked += 1;
        assert!(acked < 1000, "a 1 MB disk never filled up");
    };
    assert!(refusal.starts_with("452 4.3.1"), "{refusal}");
    assert!(acked > 10, "only {acked} messages fit");
    assert!(c.cmd("NOOP").starts_with("250"), "session goes on");

    // Space comes back: mail is accepted again without a restart.
    mount_tmpfs(mnt.path(), "4M", true);
    c.cmd("MAIL FROM:<a@b.c>");
    c.cmd("RCPT TO:<after@example.com>");
    c.cmd("DATA");
    c.send(body.as_bytes());
    assert!(c.cmd(".").starts_with("250"));

    d.kill9();
    d.spawn();
    let msgs = d.pop_all("outbox");
    assert_eq!(msgs.len(), acked + 1, "every acknowledged message, and only those");
    assert!(msgs.iter().all(|m| m["mime"] == body.as_str()));
    assert!(msgs.iter().any(|m| m["recipient"] == "after@example.com"));
}

#[test]
fn disk_full_during_delivery_holds_outcomes_without_sending_twice() {
    let mnt = tempfile::tempdir().unwrap();
    mount_tmpfs(mnt.path(), "1M", false);
    let _guard = Mount(mnt.path().to_path_buf());
    let dump = tempfile::tempdir().unwrap();
    let sink = common::peers::smtp_sink_on("127.0.0.1", &[], Some(dump.path()));
    let config = format!(
        "data-directory: {}\nlog-level: info\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\n",
        mnt.path().display(),
        sink.port
    );
    // Fill the disk with outbox messages while nothing is delivered.
    let mut d = Daemon::start(&config);
    let mut stored = 0;
    loop {
        let m = serde_json::json!({"recipient": format!("r{stored}@a.test"), "mime": format!("Subject: {stored}\r\n\r\n{}\r\n", "x".repeat(4000))});
        if !d.cli(&["inject"], m.to_string().as_bytes()).status.success() {
            break;
        }
        stored += 1;
        assert!(stored < 1000, "a 1 MB disk never filled up");
    }
    assert!(stored > 10, "only {stored} messages fit");
    d.terminate();
    // Deliver: every message reaches the sink, but no outcome fits on the disk.
    let text = std::fs::read_to_string(&d.config)
        .unwrap()
        .replace("delivery-enabled: false", "delivery-enabled: true");
    std::fs::write(&d.config, text).unwrap();
    d.spawn();
    let delivered = || std::fs::read_dir(dump.path()).unwrap().count();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while delivered() < stored && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        delivered(),
        stored,
        "each message sent once while its outcome waits for space"
    );
    let stats = json_lines(&d.cli(&["queue", "stats"], b"").stdout);
    let count = |name: &str| {
        stats
            .iter()
            .find(|q| q["name"] == name)
            .map_or(0, |q| q["ready"].as_u64().unwrap())
    };
    // What space was left takes a few outcomes at most.
    assert!(count("results") < stored as u64 / 2, "the disk was full: {stats:?}");
    assert!(d.log().contains("cannot store a delivery outcome"), "{}", d.log());
    // Space comes back: the held outcomes are stored, nothing is sent again.
    mount_tmpfs(mnt.path(), "16M", true);
    let results = d.collect("results", stored, std::time::Duration::from_secs(30));
    assert_eq!(results.len(), stored, "{}", d.log());
    assert!(results.iter().all(|r| r["results"][0]["result"] == "accepted"));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(delivered(), stored, "no message was sent twice");
    assert!(d.pop_all("outbox").is_empty());
}
