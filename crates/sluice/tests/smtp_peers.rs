//! Real clients nobody here wrote send to the real binary; what lands in the
//! queue must match what was sent.

mod common;
use common::*;
use std::process::Command;

#[test]
fn swaks_two_recipients_byte_exact() {
    require("swaks");
    let d = Daemon::start("");
    let mime = "From: Sender <s@example.net>\r\nTo: a@example.com\r\nSubject: byte exact\r\nX-Custom:  spaced\r\n\r\nLine one\r\n.leading dot\r\n..two dots\r\n\r\ntrailing\r\n";
    let file = d.dir.path().join("mail.eml");
    // swaks sends the file and then its own CRLF before the final dot.
    std::fs::write(&file, mime.strip_suffix("\r\n").unwrap()).unwrap();
    let (ok, transcript) = swaks(
        &d,
        "s@example.net",
        "a@example.com,b@example.org",
        &["--pipeline", "--data", file.to_str().unwrap()],
    );
    assert!(ok, "swaks failed:\n{transcript}");
    assert!(transcript.contains("250 2.0.0 queued as"), "{transcript}");
    let msgs = d.pop_all("outbox");
    assert_eq!(msgs.len(), 2, "one JSON per recipient");
    let mut rcpts: Vec<&str> = msgs.iter().map(|m| m["recipient"].as_str().unwrap()).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["a@example.com", "b@example.org"]);
    for m in &msgs {
        assert_eq!(m["mime"].as_str().unwrap(), mime, "MIME is byte-exact");
        assert_eq!(m["envelope"], "s@example.net");
        assert_eq!(m["hostname"], "mx.test");
        assert_eq!(m["connection"]["remote-ip"], "127.0.0.1");
        assert_eq!(m["connection"]["local-port"], d.smtp);
        assert_eq!(m["connection"]["secure"], false);
        assert!(m["message-id"].as_str().unwrap().starts_with("1."));
        assert!(transcript.contains(&format!(
            "{} for {}",
            m["message-id"].as_str().unwrap(),
            m["recipient"].as_str().unwrap()
        )));
    }
    assert_ne!(msgs[0]["message-id"], msgs[1]["message-id"]);
}

#[test]
fn smtplib_utf8_8bit_and_dsn() {
    let d = Daemon::start("");
    let script = r#"
import smtplib, sys
port = int(sys.argv[1])
msg = "From: ü@exämple.de\r\nTo: jö@bücher.de\r\nSubject: Grüße\r\n\r\nUnicode body: 日本語\r\n".encode()
with smtplib.SMTP("127.0.0.1", port) as s:
    s.ehlo("client.test")
    refused = s.sendmail("ü@exämple.de", ["jö@bücher.de"], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    assert not refused, refused
    s.sendmail("plain@example.com", ["dsn@example.com"], b"Subject: dsn\r\n\r\nx\r\n",
               mail_options=["RET=HDRS", "ENVID=abc+2Bdef"], rcpt_options=["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;dsn@example.com"])
print("ok")
"#;
    let out = run(Command::new("python3").arg("-c").arg(script).arg(d.smtp.to_string()));
    assert!(
        out.status.success(),
        "smtplib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msgs = d.pop_all("outbox");
    assert_eq!(msgs.len(), 2);
    let utf8 = msgs.iter().find(|m| m["recipient"] == "jö@bücher.de").unwrap();
    assert_eq!(utf8["envelope"], "ü@exämple.de");
    assert_eq!(
        utf8["mime"],
        "From: ü@exämple.de\r\nTo: jö@bücher.de\r\nSubject: Grüße\r\n\r\nUnicode body: 日本語\r\n"
    );
    assert_eq!(utf8["connection"]["helo"], "client.test");
    let dsn = msgs.iter().find(|m| m["recipient"] == "dsn@example.com").unwrap();
    assert_eq!(
        dsn["dsn"],
        serde_json::json!({"ret": "HDRS", "envid": "abc+def", "notify": "FAILURE,DELAY", "orcpt": "rfc822;dsn@example.com"})
    );
}

#[test]
fn smtp_source_50_sessions_5000_messages() {
    require("smtp-source");
    let d = Daemon::start("");
    let out = run(Command::new("smtp-source")
        .args([
            "-s",
            "50",
            "-m",
            "5000",
            "-l",
            "1024",
            "-f",
            "from@source.test",
            "-t",
            "to@dest.test",
        ])
        .arg(format!("127.0.0.1:{}", d.smtp)));
    assert!(
        out.status.success(),
        "smtp-source: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = d.cli(&["queue", "stats"], b"");
    let stats = json_lines(&stats.stdout);
    let outbox = stats.iter().find(|q| q["name"] == "outbox").expect("outbox stats");
    assert_eq!(outbox["ready"], 5000, "exactly 5000 JSON messages");
    let msgs = d.pop_all("outbox");
    assert_eq!(msgs.len(), 5000);
    assert!(msgs
        .iter()
        .all(|m| m["recipient"] == "to@dest.test" && m["envelope"] == "from@source.test"));
    let ids: std::collections::HashSet<&str> = msgs.iter().map(|m| m["message-id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 5000, "message ids are unique");
}
