//! TLS, authentication, access ranges, size limits and PROXY headers, with
//! swaks, Python's smtplib/ssl and raw sockets.

mod common;
use common::*;
use std::io::Write;
use std::process::Command;

/// swaks from s@example.net to r@example.com with `extra` options.
fn send(d: &Daemon, extra: &[&str]) -> (bool, String) {
    swaks(d, "s@example.net", "r@example.com", extra)
}

#[test]
fn starttls_with_swaks_and_smtplib() {
    require("swaks");
    let d = Daemon::start("");
    let (ok, t) = send(&d, &["-tls"]);
    assert!(ok, "{t}");
    assert!(
        t.contains("220 2.0.0 Ready to start TLS") && t.contains("TLS started"),
        "{t}"
    );
    let script = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.starttls(context=ctx)
    s.sendmail("a@example.net", ["tls@example.com"], b"Subject: tls\r\n\r\nsecret\r\n")
"#;
    let out = run(Command::new("python3").arg("-c").arg(script).arg(d.smtp.to_string()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let msgs = d.pop_all("outbox");
    assert_eq!(msgs.len(), 2);
    assert!(msgs.iter().all(|m| m["connection"]["secure"] == true));
    assert!(
        d.dir.path().join("data/tls-cert.pem").exists(),
        "self-signed certificate generated into the data directory"
    );
}

#[test]
fn auth_plain_login_accepted_and_rejected() {
    require("swaks");
    let d = Daemon::start("smtp-username: alice\nsmtp-password: s3cret#1\n");
    for mech in ["PLAIN", "LOGIN"] {
        let (ok, t) = send(
            &d,
            &[
                "-tls",
                "--auth",
                mech,
                "--auth-user",
                "alice",
                "--auth-password",
                "s3cret#1",
            ],
        );
        assert!(ok, "{mech}: {t}");
        assert!(t.contains("235 2.7.0"), "{t}");
        let (ok, t) = send(
            &d,
            &[
                "-tls",
                "--auth",
                mech,
                "--auth-user",
                "alice",
                "--auth-password",
                "wrong",
            ],
        );
        assert!(!ok);
        assert!(t.contains("535 5.7.8"), "{t}");
    }
    // Without AUTH, relaying is refused at MAIL.
    let (ok, t) = send(&d, &[]);
    assert!(!ok);
    assert!(t.contains("530 5.7.0"), "{t}");
    let msgs = d.pop_all("outbox");
    assert_eq!(msgs.len(), 2, "only the two authenticated messages were queued");
    assert!(msgs.iter().all(|m| m["connection"]["user"] == "alice"));
}

#[test]
fn smtp_auth_accounts_from_a_hashed_file_and_hardcoded_pairs() {
    require("swaks");
    require("openssl");
    let dir = tempfile::tempdir().unwrap();
    // Hashes as MailerQ's page makes them: `openssl passwd -6` (and -5).
    let hash = |flag: &str, pw: &str| {
        let out = run(Command::new("openssl").args(["passwd", flag, pw]));
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let users = dir.path().join("users.txt");
    std::fs::write(
        &users,
        format!(
            "# accounts\nbob:{}\ncarol:{}:extra:fields\nmallory:plaintext\n",
            hash("-6", "b0b pass"),
            hash("-5", "carol#1")
        ),
    )
    .unwrap();
    let login = |d: &Daemon, user: &str, pw: &str| {
        send(
            d,
            &["-tls", "--auth", "PLAIN", "--auth-user", user, "--auth-password", pw],
        )
    };
    let d = Daemon::start(&format!("smtp-auth: file://{}\n", users.display()));
    assert!(login(&d, "bob", "b0b pass").0, "{}", d.log());
    assert!(
        login(&d, "carol", "carol#1").0,
        "a SHA-256-crypt line, extra fields ignored"
    );
    for (user, pw) in [("bob", "b0b Pass"), ("mallory", "plaintext"), ("nobody", "x")] {
        let (ok, t) = login(&d, user, pw);
        assert!(!ok && t.contains("535 5.7.8"), "{user}: {t}");
    }
    assert!(
        d.log().contains("line=4") && !d.log().contains("plaintext"),
        "the bad line named by number: {}",
        d.log()
    );
    let (ok, t) = send(&d, &[]);
    assert!(!ok && t.contains("530 5.7.0"), "accounts mean AUTH is required: {t}");
    let msgs = d.pop_all("outbox");
    let users: Vec<&str> = msgs.iter().map(|m| m["connection"]["user"].as_str().unwrap()).collect();
    assert_eq!(users, ["bob", "carol"]);

    // hardcoded:// pairs beside smtp-username; config check hides them.
    let d = Daemon::start("smtp-auth: hardcoded://dave:d4ve,erin:er:in\nsmtp-username: alice\nsmtp-password: pw\n");
    for (user, pw) in [("dave", "d4ve"), ("erin", "er:in"), ("alice", "pw")] {
        assert!(login(&d, user, pw).0, "{user}");
    }
    assert!(!login(&d, "dave", "pw").0);
    let shown = String::from_utf8_lossy(&d.cli(&["config", "check"], b"").stdout).into_owned();
    assert!(
        shown.contains("smtp-auth: hardcoded://********") && !shown.contains("d4ve"),
        "{shown}"
    );
}

#[test]
fn unauthenticated_mail_kept_in_refused_queue() {
    let d = Daemon::start("smtp-username: alice\nsmtp-password: pw\nrabbitmq-refused: refused\n");
    let mut c = d.session();
    let r = c.mail("spam@example.net", &["victim@example.com"], "Subject: x\r\n\r\nbuy\r\n");
    assert!(r.starts_with("530 5.7.0"), "{r}");
    assert!(d.pop_all("outbox").is_empty());
    let refused = d.pop_all("refused");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["recipient"], "victim@example.com");
}

#[test]
fn implicit_tls_port() {
    let port = free_port();
    let d = Daemon::start(&format!("smtp-secure-port: {port}\n"));
    let script = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP_SSL("127.0.0.1", int(sys.argv[1]), context=ctx) as s:
    code, caps = s.ehlo()
    assert b"STARTTLS" not in caps, caps
    s.sendmail("a@example.net", ["implicit@example.com"], b"Subject: tls\r\n\r\nx\r\n")
"#;
    let out = run(Command::new("python3").arg("-c").arg(script).arg(port.to_string()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let msgs = d.pop_all("outbox");
    assert_eq!(msgs[0]["connection"]["secure"], true);
    assert_eq!(msgs[0]["connection"]["local-port"], port);
}

#[test]
fn smtp_range_refuses_outsiders() {
    let d = Daemon::start("smtp-range: 10.0.0.0/8;192.0.2.0/24\n");
    let mut c = d.connect();
    let greeting = c.reply();
    assert!(greeting.starts_with("554 5.7.1"), "{greeting}");
    assert!(c.closed());
}

#[test]
fn size_limit_advertised_and_enforced() {
    require("swaks");
    let d = Daemon::start("smtp-maxsize: 10KB\n");
    let mut c = d.connect();
    c.reply();
    let ehlo = c.cmd_full("EHLO c");
    assert!(ehlo.contains("250-SIZE 10240"), "{ehlo}");
    assert!(c.cmd("MAIL FROM:<a@b.c> SIZE=20000").starts_with("552 5.3.4"));
    let big = format!("Subject: big\r\n\r\n{}", format!("{}\r\n", "x".repeat(100)).repeat(120));
    let r = c.mail("a@b.c", &["r@example.com"], &big);
    assert!(r.starts_with("552 5.3.4"), "{r}");
    assert!(c.cmd("NOOP").starts_with("250"), "session goes on");
    assert!(d.pop_all("outbox").is_empty());
}

#[test]
fn proxy_v1_and_v2_headers_honoured() {
    let d = Daemon::start("smtp-proxy: 127.0.0.1/32\nsmtp-range: 192.0.2.0/24;198.51.100.0/24\n");
    // v1
    let mut c = Smtp::connect(d.smtp);
    c.send(b"PROXY TCP4 192.0.2.7 203.0.113.1 40000 25\r\n");
    assert!(c.reply().starts_with("220"));
    c.cmd("EHLO proxied");
    assert!(c
        .mail("a@b.c", &["v1@example.com"], "Subject: v1\r\n\r\nx\r\n")
        .starts_with("250"));
    // v2, IPv4, PROXY command
    let mut c = Smtp::connect(d.smtp);
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12, 198, 51, 100, 9, 203, 0, 113, 2, 0x9c, 0x41, 0, 26]);
    c.reader.get_mut().write_all(&h).unwrap();
    assert!(c.reply().starts_with("220"));
    c.cmd("EHLO proxied2");
    assert!(c
        .mail("a@b.c", &["v2@example.com"], "Subject: v2\r\n\r\nx\r\n")
        .starts_with("250"));
    // The PROXY source is what smtp-range checks.
    let mut c = Smtp::connect(d.smtp);
    c.send(b"PROXY TCP4 203.0.113.5 203.0.113.1 40000 25\r\n");
    assert!(c.reply().starts_with("554 5.7.1"));
    // No header from a proxy address: dropped.
    let mut c = Smtp::connect(d.smtp);
    c.send(b"EHLO direct\r\n");
    assert!(c.closed());

    let msgs = d.pop_all("outbox");
    let v1 = msgs.iter().find(|m| m["recipient"] == "v1@example.com").unwrap();
    assert_eq!(
        (
            v1["connection"]["remote-ip"].as_str(),
            v1["connection"]["remote-port"].as_u64()
        ),
        (Some("192.0.2.7"), Some(40000))
    );
    assert_eq!(
        (
            v1["connection"]["local-ip"].as_str(),
            v1["connection"]["local-port"].as_u64()
        ),
        (Some("203.0.113.1"), Some(25))
    );
    let v2 = msgs.iter().find(|m| m["recipient"] == "v2@example.com").unwrap();
    assert_eq!(
        (
            v2["connection"]["remote-ip"].as_str(),
            v2["connection"]["remote-port"].as_u64()
        ),
        (Some("198.51.100.9"), Some(40001))
    );
    assert_eq!(v2["connection"]["local-port"], 26);
}

#[test]
fn x_mq_headers_extracted_unless_disabled() {
    let mime = "X-MQ-Envelope: bounces@example.net\r\nX-MQ-Maxattempts: 3\r\nSubject: x\r\n\r\nbody\r\n";
    let d = Daemon::start("");
    let mut c = d.session();
    assert!(c.mail("a@b.c", &["r@example.com"], mime).starts_with("250"));
    let m = &d.pop_all("outbox")[0];
    assert_eq!(m["envelope"], "bounces@example.net");
    assert_eq!(m["maxattempts"], 3);
    assert_eq!(m["mime"], "Subject: x\r\n\r\nbody\r\n");

    let d = Daemon::start("smtp-extract: false\n");
    let mut c = d.session();
    assert!(c.mail("a@b.c", &["r@example.com"], mime).starts_with("250"));
    let m = &d.pop_all("outbox")[0];
    assert_eq!(m["envelope"], "a@b.c");
    assert_eq!(m["mime"], mime);
}
