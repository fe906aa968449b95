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
