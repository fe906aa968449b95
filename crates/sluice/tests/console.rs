//! The web console in a real browser: headless Chromium, driven by Python
//! Playwright (`tests/peers/console_browser.py`), against the real daemon
//! delivering to an aiosmtpd recorder. Screenshots go to
//! `$SLUICE_SCREENSHOTS` (default: the target's tmp directory); the ones in
//! `docs/console/` were taken this way.

mod common;
use common::peers::{recorded, recorder, self_signed};
use common::policy::request;
use common::*;
use std::process::Command;

const USER: &str = "operator";
const PASSWORD: &str = "console-secret-42";

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

#[test]
fn an_operator_watches_pauses_and_shapes_delivery_from_the_console() {
    assert!(
        std::path::Path::new(&chromium()).exists(),
        "chromium is not installed; run the README's test command, which installs it"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("arrivals.jsonl");
    let receiver = recorder(&out, Some(("retry.example", 1, "421 4.7.0 Try again later")));
    self_signed(dir.path(), "console.test");
    let secure = free_port();
    let mut d = Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\nretry-interval: 1\nwww-username: {USER}\nwww-password: {PASSWORD}\ndatabase-address: sqlite://{}\nwww-secure-port: {secure}\nwww-certificate: {}\nwww-privatekey: {}\n",
        receiver.port,
        dir.path().join("settings.db").display(),
        dir.path().join("cert.pem").display(),
        dir.path().join("key.pem").display(),
    ));
    // With a secure port, the plain port sends the console's pages there
    // (the API stays, for the command line).
    let head = raw_get(d.www, "/console", "127.0.0.1:1");
    assert!(head.starts_with("HTTP/1.1 308"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("location: https://127.0.0.1:{secure}/console\r\n")),
        "{head}"
    );
    let hostile = raw_get(d.www, "/console", "evil.test/x");
    assert!(
        hostile.contains(&format!("https://127.0.0.1:{secure}/console")),
        "{hostile}"
    );
    // The page and its assets hold no data and load without credentials;
    // everything with data answers 401 without them, the streams included.
    let (code, _) = request(&d, "GET", "/console/console.js", "text/plain", "", None);
    assert_eq!(code, 308);
    for path in [
        "/v1/overview",
        "/v1/live",
        "/v1/results/live",
        "/v1/destinations",
        "/v1/plugins",
        "/v1/instances",
        "/v1/capacity",
        "/v1/trace/x",
    ] {
        assert_eq!(request(&d, "GET", path, "text/plain", "", None).0, 401, "{path}");
    }
    let screenshots = std::env::var("SLUICE_SCREENSHOTS")
        .unwrap_or_else(|_| format!("{}/console-screenshots", env!("CARGO_TARGET_TMPDIR")));
    let settings = serde_json::json!({
        "url": format!("https://127.0.0.1:{secure}"),
        "user": USER,
        "password": PASSWORD,
        "smtp_port": d.smtp,
        "recorder_out": out,
        "sluice": BIN,
        "config": d.config,
        "screenshots": screenshots,
        "chromium": chromium(),
    });
    let script = format!("{}/tests/peers/console_browser.py", env!("CARGO_MANIFEST_DIR"));
    let run = Command::new("timeout")
        .args(["300", "python3", &script, &settings.to_string()])
        .output()
        .expect("python3");
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.status.success(),
        "the browser checks failed:\n{said}\n{}",
        d.log_tail(40)
    );
    assert!(said.contains("all checks passed"), "{said}");
    // What the browser saw, checked again from outside it: every message
    // arrived once (the refused one on its second attempt).
    let arrived: Vec<_> = recorded(&out).into_iter().filter(|a| a["refused"] == false).collect();
    assert_eq!(arrived.len(), 5, "{arrived:?}");
    for shot in ["login", "overview", "destinations", "results", "policy", "plugins"] {
        let file = std::path::Path::new(&screenshots).join(format!("{shot}.png"));
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "{} missing or empty", file.display());
    }
    assert_eq!(d.terminate(), Some(0));
}

/// The head of a plain GET for `path` with `host` as the Host header.
fn raw_get(port: u16, path: &str, host: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split("\r\n\r\n").next().unwrap_or("").to_string() + "\r\n"
}
