//! Every example plugin in plugins/examples builds with its Makefile (warnings
//! as errors) and does what its comment says, end to end.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins/examples");

/// Builds one example with `make` into a fresh plugin directory.
fn example(name: &str) -> (tempfile::TempDir, PathBuf) {
    require("make");
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join(format!("{name}.so"));
    let out = Command::new("make")
        .arg("-C")
        .arg(EXAMPLES)
        .arg(format!("OUT={}", dir.path().display()))
        .arg(&target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make {name}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let config = format!("plugin-directory: {}\n", dir.path().display());
    (dir, PathBuf::from(config))
}

fn wait_for_log(d: &Daemon, text: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if d.log().contains(text) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn minimal() {
    let (_dir, config) = example("00-minimal");
    let d = Daemon::start(config.to_str().unwrap());
    assert!(d.log().contains("minimal plugin ready on this worker"));
    let mut c = d.connect();
    assert!(c.reply().starts_with("220"));
    assert!(wait_for_log(&d, "minimal plugin: a client connected"));
}

#[test]
fn auth_file_answers_asynchronously() {
    let (dir, config) = example("10-auth-file");
    let users = dir.path().join("users.txt");
    std::fs::write(&users, "bob:builder\nalice:wonderland\n").unwrap();
    let d = Daemon::start_with_env(
        config.to_str().unwrap(),
        &[("EXAMPLE_AUTH_FILE", users.to_str().unwrap())],
    );
    for (login, password, want) in [
        ("alice", "wonderland", "235"),
        ("alice", "wrong", "535"),
        ("mallory", "x", "535"),
    ] {
        let mut c = d.session();
        let token = base64_plain(login, password);
        let got = c.cmd(&format!("AUTH PLAIN {token}"));
        assert!(got.starts_with(want), "{login}: {got}");
    }
}

/// The AUTH PLAIN token for `login`/`password`.
fn base64_plain(login: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{login}\0{password}"))
}

#[test]
fn recipient_filter() {
    let (_dir, config) = example("20-recipient-filter");
    let d = Daemon::start_with_env(
        config.to_str().unwrap(),
        &[("EXAMPLE_REJECT_DOMAINS", "blocked.example,spam.example")],
    );
    let mut c = d.session();
    c.cmd("MAIL FROM:<s@example.net>");
    assert_eq!(
        c.cmd("RCPT TO:<x@blocked.example>"),
        "550 5.1.1 recipient rejected by policy"
    );
    assert!(c.cmd("RCPT TO:<y@ok.example>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<z@spam.example>").starts_with("550"));
    c.cmd("DATA");
    c.send(b"Subject: f\r\n\r\nx\r\n");
    assert!(c.cmd(".").starts_with("250"));
    let msgs = d.pop_all("outbox");
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["recipient"], "y@ok.example");
}

#[test]
fn stamp_header() {
    let (_dir, config) = example("30-stamp-header");
    let d = Daemon::start(config.to_str().unwrap());
    let mut c = d.session();
    assert!(c
        .mail("s@example.net", &["r@example.com"], "Subject: s\r\n\r\nbody\r\n")
        .starts_with("250"));
    assert_eq!(
        d.pop_all("outbox")[0]["mime"],
        "X-Stamped-By: sluice-example\r\nSubject: s\r\n\r\nbody\r\n"
    );
}

#[test]
fn counter_in_cpp() {
    let (_dir, config) = example("40-counter-cpp");
    let mut d = Daemon::start(&format!("{}smtp-threads: 1\n", config.to_str().unwrap()));
    let mut c = d.session();
    assert!(c
        .mail("s@example.net", &["a@example.com"], "Subject: 1\r\n\r\nx\r\n")
        .starts_with("250"));
    assert!(c
        .mail("s@example.net", &["b@example.com"], "Subject: 2\r\n\r\nx\r\n")
        .starts_with("250"));
    let msgs = d.pop_all("outbox");
    let mut counts: Vec<&str> = msgs
        .iter()
        .map(|m| m["mime"].as_str().unwrap().lines().next().unwrap())
        .collect();
    counts.sort();
    assert_eq!(counts, ["X-Worker-Count: 1", "X-Worker-Count: 2"]);
    assert_eq!(d.terminate(), Some(0));
    assert!(d.log().contains("counter: this worker queued 2 messages"));
}

#[test]
fn json_tag() {
    let (_dir, config) = example("50-json-tag");
    let d = Daemon::start(config.to_str().unwrap());
    let mut c = d.session();
    assert!(c
        .mail("s@example.net", &["r@example.com"], "Subject: j\r\n\r\nx\r\n")
        .starts_with("250"));
    assert_eq!(d.pop_all("outbox")[0]["tags"], serde_json::json!(["example"]));
}

#[test]
fn libev_heartbeat() {
    let (_dir, config) = example("60-libev-heartbeat");
    let d = Daemon::start(config.to_str().unwrap());
    assert!(wait_for_log(&d, "libev heartbeat"), "{}", d.log());
}

#[test]
fn rust_plugin_through_the_sdk() {
    // Built by a nested cargo into its own target directory (the outer one may be locked).
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let target = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO"))
        .args([
            "build",
            "--offline",
            "-p",
            "sluice-example-rust-filter",
            "--manifest-path",
        ])
        .arg(format!("{workspace}/Cargo.toml"))
        .env("CARGO_TARGET_DIR", target.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building the Rust example: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(
        target.path().join("debug/libsluice_example_rust_filter.so"),
        plugins.path().join("rust-filter.so"),
    )
    .unwrap();
    let d = Daemon::start(&format!("plugin-directory: {}\n", plugins.path().display()));
    let mut c = d.session();
    c.cmd("MAIL FROM:<s@example.net>");
    assert_eq!(
        c.cmd("RCPT TO:<x@blocked.example>"),
        "550 5.1.1 blocked by the Rust example"
    );
    assert_eq!(c.cmd("RCPT TO:<slow@ok.example>"), "250 2.1.5 answered later by Rust");
    c.cmd("DATA");
    c.send(b"Subject: r\r\n\r\nx\r\n");
    assert!(c.cmd(".").starts_with("250"));
    let msgs = d.pop_all("outbox");
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["mime"], "X-Rust-Plugin: yes\r\nSubject: r\r\n\r\nx\r\n");
    assert!(d.log().contains("rust example stamped message 1"));
    // mq_smtp_in_authenticate in Rust.
    let mut a = d.session();
    let got = a.cmd(&format!("AUTH PLAIN {}", base64_plain("rust", "plugin")));
    assert!(got.starts_with("235"), "{got}");
    let mut b = d.session();
    assert!(b
        .cmd(&format!("AUTH PLAIN {}", base64_plain("rust", "nope")))
        .starts_with("535"));
}
