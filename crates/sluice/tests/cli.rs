//! The command line, configuration errors, the HTTP API and the daemon's
//! lifecycle (lock file, open-relay guard, SIGTERM).

mod common;
use common::*;
use std::process::Command;

fn config_check(text: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.txt");
    std::fs::write(&path, text).unwrap();
    let out = cli_with(&path, &["config", "check"], b"");
    let err = String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "FILE");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        err,
    )
}

#[test]
fn config_errors_name_file_line_key_and_exit_2() {
    let (code, _, err) = config_check("smtp-port: 25\nsmtp-bogus: 1\n");
    assert_eq!(code, Some(2));
    assert_eq!(err.trim(), "sluice: FILE:2: smtp-bogus: unknown key");
    let (code, _, err) = config_check("# c\nsmtp-maxsize: huge\n");
    assert_eq!(code, Some(2));
    assert!(
        err.starts_with("sluice: FILE:2: smtp-maxsize: expected a size"),
        "{err}"
    );
    let (code, _, err) = config_check("www-port: 8000\nwww-port: 8001\n");
    assert_eq!(code, Some(2));
    assert!(err.starts_with("sluice: FILE:2: www-port: duplicate key"), "{err}");
    // The daemon refuses to start the same way.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.txt");
    std::fs::write(&path, "tls-outbound: sometimes\n").unwrap();
    let out = Command::new(BIN)
        .arg("run")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains(":1: tls-outbound: expected one of opportunistic, required, disabled"));
}

#[test]
fn config_check_prints_effective_config_with_env_override() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.txt");
    std::fs::write(&path, "smtp-port: 2600\nsmtp-username: u\nsmtp-password: hunter2\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(&path)
        .env("SLUICE_SMTP_MAXSIZE", "5MB")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("smtp-port: 2600    # {}:1", path.display())),
        "{text}"
    );
    assert!(
        text.contains("smtp-maxsize: 5MB    # environment SLUICE_SMTP_MAXSIZE"),
        "{text}"
    );
    assert!(text.contains("smtp-password: ********"), "passwords hidden: {text}");
    assert!(text.contains("rabbitmq-outbox: outbox\n"));
}

#[test]
fn inject_queue_peek_pop_and_stats() {
    let d = Daemon::start("");
    let lines = b"{\"envelope\":\"a@b.c\",\"recipient\":\"one@example.com\",\"mime\":\"Subject: 1\\r\\n\\r\\nx\"}\n{\"recipient\":\"two@example.com\",\"custom\":{\"k\":1}}\n";
    let out = d.cli(&["inject"], lines);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let array = br#"[{"recipient":"three@example.com"}]"#;
    let file = d.dir.path().join("m.json");
    std::fs::write(&file, array).unwrap();
    assert!(d.cli(&["inject", file.to_str().unwrap()], b"").status.success());
    // Invalid input is refused with a clear error and nothing is queued.
    let bad = d.cli(&["inject"], b"{\"recipient\":\"x@y.z\"}\nnot json\n");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("line 2: invalid JSON"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let bad = d.cli(&["inject"], b"{\"envelope\":\"x@y.z\"}");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("400") && err.contains("message 1: message has no recipient"),
        "{err}"
    );

    let stats = json_lines(&d.cli(&["queue", "stats"], b"").stdout);
    assert_eq!(
        stats,
        [serde_json::json!({"name": "outbox", "ready": 3, "delayed": 0, "leased": 0})]
    );
    let peeked = json_lines(&d.cli(&["queue", "peek", "outbox", "-n", "2"], b"").stdout);
    assert_eq!(peeked.len(), 2);
    assert_eq!(peeked[1]["custom"]["k"], 1, "unknown properties kept");
    let popped = json_lines(&d.cli(&["queue", "pop", "outbox"], b"").stdout);
    assert_eq!(popped.len(), 1);
    assert_eq!(popped[0]["recipient"], "one@example.com");
    assert_eq!(d.pop_all("outbox").len(), 2);
    assert!(d.pop_all("outbox").is_empty());
}

#[test]
fn send_and_sendmail_from_stdin() {
    let d = Daemon::start("");
    let msg = b"From: Alice <alice@example.net>\nTo: bob@example.com\nCc: carol@example.com\nBcc: dave@example.com\nSubject: cli\n\n..stuffed\n.\nafter the dot\n";
    let out = d.cli(&["send", "--extract-recipients"], msg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let msgs = d.pop_all("outbox");
    let mut rcpts: Vec<&str> = msgs.iter().map(|m| m["recipient"].as_str().unwrap()).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["bob@example.com", "carol@example.com", "dave@example.com"]);
    let m = &msgs[0];
    assert_eq!(m["envelope"], "alice@example.net", "envelope from From:");
    assert_eq!(m["mime"], "From: Alice <alice@example.net>\r\nTo: bob@example.com\r\nCc: carol@example.com\r\nSubject: cli\r\n\r\n.stuffed\r\n");
    assert_eq!(m["cli"]["command"], "sluice send");

    // Invoked as sendmail: -i keeps lone dots, -f sets the envelope.
    let link = d.dir.path().join("sendmail");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let mut child = Command::new(&link)
        .args(["-i", "-f", "bounce@example.net", "erin@example.com"])
        .env("SLUICE_WWW_PORT", d.www.to_string())
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"Subject: sm\n\nline\n.\nmore\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let msgs = d.pop_all("outbox");
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["envelope"], "bounce@example.net");
    assert_eq!(msgs[0]["recipient"], "erin@example.com");
    assert_eq!(msgs[0]["mime"], "Subject: sm\r\n\r\nline\r\n.\r\nmore\r\n");
    assert_eq!(msgs[0]["cli"]["command"], "sendmail");
}

#[test]
fn http_basic_auth() {
    let d = Daemon::start("www-username: admin\nwww-password: pw\n");
    assert!(
        d.cli(&["queue", "stats"], b"").status.success(),
        "the CLI uses the configured credentials"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg("import sys, urllib.request, urllib.error\ntry:\n    urllib.request.urlopen(sys.argv[1])\nexcept urllib.error.HTTPError as e:\n    print(e.code)")
        .arg(format!("http://127.0.0.1:{}/queues", d.www))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "401");
}

#[test]
fn cli_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.txt");
    std::fs::write(&path, format!("www-port: {}\n", free_port())).unwrap();
    let out = cli_with(&path, &["queue", "stats"], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is `sluice run` running?"), "{err}");
}

#[test]
fn lock_file_prevents_a_second_daemon() {
    let d = Daemon::start("");
    let other = d.dir.path().join("other.txt");
    let text = std::fs::read_to_string(&d.config)
        .unwrap()
        .replace(
            &format!("smtp-port: {}", d.smtp),
            &format!("smtp-port: {}", free_port()),
        )
        .replace(&format!("www-port: {}", d.www), &format!("www-port: {}", free_port()));
    std::fs::write(&other, text).unwrap();
    let err = start_fails(&other);
    assert!(
        err.contains(&format!("another sluice (pid {}) is running", d.pid())),
        "{err}"
    );
}

#[test]
fn open_relay_guard() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.txt");
    std::fs::write(
        &path,
        format!(
            "smtp-ip: 0.0.0.0\nsmtp-port: {}\nwww-port: {}\ndata-directory: {}\n",
            free_port(),
            free_port(),
            dir.path().display()
        ),
    )
    .unwrap();
    let err = start_fails(&path);
    assert!(
        err.contains(":1: smtp-ip: listening on a non-loopback address") && err.contains("smtp-open-relay: true"),
        "{err}"
    );
}

#[test]
fn sigterm_finishes_the_open_transaction_then_stops() {
    let mut d = Daemon::start("");
    let mut idle = d.connect();
    assert!(idle.reply().starts_with("220"));
    let mut busy = d.session();
    assert!(busy.cmd("MAIL FROM:<a@b.c>").starts_with("250"));
    assert!(busy.cmd("RCPT TO:<late@example.com>").starts_with("250"));
    let pid = d.pid();
    let term = std::thread::spawn(move || {
        Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
    });
    term.join().unwrap();
    // The idle session is told the server is going away.
    assert!(idle.reply().starts_with("421 4.3.2"));
    // The open transaction may still finish.
    assert!(busy.cmd("DATA").starts_with("354"));
    busy.send(b"Subject: late\r\n\r\nx\r\n");
    assert!(busy.cmd(".").starts_with("250"));
    assert!(busy.cmd("NOOP").starts_with("421 4.3.2") || busy.closed());
    assert_eq!(d.terminate(), Some(0));
    d.spawn();
    let msgs = d.pop_all("outbox");
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["recipient"], "late@example.com");
}

#[test]
fn runs_as_the_configured_user() {
    let data = tempfile::tempdir().unwrap();
    // nobody must be able to reach the data directory.
    Command::new("chmod").arg("755").arg(data.path()).status().unwrap();
    let d = Daemon::start(&format!(
        "user: nobody\ndata-directory: {}\n",
        data.path().join("d").display()
    ));
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_string();
    assert!(
        uid.split_whitespace().skip(1).all(|u| u == "65534"),
        "real, effective, saved uid are nobody's: {uid}"
    );
    let mut c = d.session();
    assert!(c
        .mail("a@b.c", &["r@example.com"], "Subject: x\r\n\r\ny\r\n")
        .starts_with("250"));
    assert_eq!(d.pop_all("outbox").len(), 1);
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(data.path().join("d/queue")).unwrap());
    assert_eq!(owner, 65534);

    let bad = d.dir.path().join("bad-user.txt");
    std::fs::write(
        &bad,
        format!(
            "user: no-such-user-here\nsmtp-port: {}\nwww-port: {}\ndata-directory: {}\n",
            free_port(),
            free_port(),
            d.dir.path().join("x").display()
        ),
    )
    .unwrap();
    let err = start_fails(&bad);
    assert!(
        err.contains("bad-user.txt:1: user: no such user `no-such-user-here`"),
        "{err}"
    );
}

#[test]
fn pop_follow_and_abandoned_long_poll() {
    use std::io::{BufRead, Write};
    let d = Daemon::start("");
    // A client that gives up while its pop waits takes nothing with it.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", d.www)).unwrap();
    s.write_all(b"POST /queues/q/pop?n=1&wait=5 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(s);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(d
        .cli(&["inject"], br#"{"recipient":"kept@example.com"}"#)
        .status
        .success());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let peeked = json_lines(&d.cli(&["queue", "peek", "outbox"], b"").stdout);
    assert_eq!(peeked.len(), 1, "the message was not consumed by the abandoned pop");

    // pop --follow prints messages as they arrive.
    let mut child = Command::new(BIN)
        .args(["queue", "pop", "outbox", "--follow", "--config"])
        .arg(&d.config)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["recipient"], "kept@example.com");
    assert!(d
        .cli(&["inject"], br#"{"recipient":"later@example.com"}"#)
        .status
        .success());
    let second: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(second["recipient"], "later@example.com");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["inject", "--help"],
        &["send", "--help"],
        &["queue", "--help"],
        &["queue", "stats", "--help"],
        &["queue", "peek", "--help"],
        &["queue", "pop", "--help"],
        &["config", "check", "--help"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage: sluice"),
            "{args:?}"
        );
    }
    let out = Command::new(BIN).arg("frobnicate").output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn received_log_has_a_line_per_copy() {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("received.jsonl");
    let d = Daemon::start(&format!("received-log: {}\n", log.display()));
    let mut c = d.session();
    assert!(c
        .mail(
            "a@b.c",
            &["x@example.com", "y@example.com"],
            "Subject: l\r\n\r\nbody\r\n"
        )
        .starts_with("250"));
    assert!(d
        .cli(&["send", "z@example.com"], b"Subject: cli\n\nhi\n")
        .status
        .success());
    let queued = d.pop_all("outbox");
    // The writer thread flushes as soon as it has nothing more to write.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let lines = loop {
        let lines = json_lines(&std::fs::read(&log).unwrap_or_default());
        if lines.len() >= 3 || std::time::Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(lines.len(), 3);
    for l in &lines {
        assert!(l.get("mime").is_none(), "no MIME in the log");
        assert_eq!(l["queue"], "outbox");
        let copy = queued
            .iter()
            .find(|m| m["message-id"] == l["message-id"])
            .expect("logged copy was queued");
        assert_eq!(l["recipient"], copy["recipient"]);
        assert_eq!(l["size"], copy["mime"].as_str().unwrap().len());
    }
}

#[test]
fn a_password_without_a_user_name_works_as_in_mailerq() {
    let d = Daemon::start("www-password: only-the-password\n");
    let basic = |pair: &str| {
        use base64::Engine as _;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    };
    let status =
        |auth: Option<String>| common::policy::request(&d, "GET", "/queues", "text/plain", "", auth.as_deref()).0;
    assert_eq!(status(None), 401);
    assert_eq!(status(Some(basic("anyone:only-the-password"))), 200);
    assert_eq!(status(Some(basic("anyone:wrong"))), 401);
    // The command line reads the same config and gets in.
    let out = d.cli(&["queue", "stats"], b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_mailerq_key_sluice_does_not_act_on_is_a_warning_not_a_refusal() {
    let (code, stdout, stderr) = config_check("license: /etc/mailerq/license.txt\nrabbitmq-qos: 10\n");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("license: accepted, not acted on by Sluice: Sluice needs no license"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rabbitmq-qos: accepted, not acted on by Sluice: use rabbitmq-prefetch"),
        "{stderr}"
    );
    assert!(!stdout.contains("license"), "not a Sluice setting: {stdout}");
    let (code, _, stderr) = config_check("licence: x\n");
    assert_eq!(code, Some(2), "a key neither knows still fails: {stderr}");
}

#[test]
fn every_config_error_in_one_run_and_mailerqs_command_line_overrides() {
    let (code, _, err) = config_check("smtp-port: x\nsmtp-bogus: 1\nsmtp-extract: maybe\n");
    assert_eq!(code, Some(2));
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(lines[0].starts_with("sluice: FILE:1: smtp-port:"), "{err}");
    assert_eq!(lines[1], "sluice: FILE:2: smtp-bogus: unknown key");
    assert!(lines[2].starts_with("sluice: FILE:3: smtp-extract:"), "{err}");

    // `--key=value` (MailerQ's command-line form) over the file; the environment over both.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.txt");
    std::fs::write(&path, "smtp-port: 2600\nserver-id: 4\n").unwrap();
    let check = |env: &[(&str, &str)]| {
        let out = Command::new(BIN)
            .args(["config", "check", "--smtp-port=2601", "--server-id=5", "--config"])
            .arg(&path)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = check(&[]);
    assert!(
        shown.contains("smtp-port: 2601    # command line --smtp-port"),
        "{shown}"
    );
    assert!(shown.contains("server-id: 5    # command line --server-id"), "{shown}");
    let shown = check(&[("MAILERQ_SMTP_PORT", "2602")]);
    assert!(
        shown.contains("smtp-port: 2602    # environment MAILERQ_SMTP_PORT"),
        "{shown}"
    );
    // A bad value on the command line names it.
    let out = Command::new(BIN)
        .args(["config", "check", "--smtp-port=none", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("sluice: command line --smtp-port: smtp-port: "));
}
