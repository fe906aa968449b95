//! The web console in a real browser: headless Chromium, driven by Python
//! Playwright (`tests/peers/console_browser.py`), against the real daemon
//! delivering to an aiosmtpd recorder. Screenshots go to
//! `$CONSOLE_SCREENSHOTS` (default: the target's tmp directory); the ones in
//! `docs/console/` were taken this way.

mod common;
use common::peers::{recorded, recorder, self_signed};
use common::policy::request;
use common::rabbit::{prefix, Broker};
use common::*;
use serde_json::Value;
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
    // A real C plugin for the Plugins page: every inbound hook, doing nothing.
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    require("cc");
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-fvisibility=hidden", "-Wall", "-Werror"])
        .arg(concat!("-I", env!("CARGO_MANIFEST_DIR"), "/../plugin/include"))
        .arg("-o")
        .arg(plugins.join("noop.so"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/plugins/noop.c"))
        .status()
        .unwrap();
    assert!(built.success(), "building the no-op plugin failed");
    let secure = free_port();
    let mut d = Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\nretry-interval: 1\nwww-username: {USER}\nwww-password: {PASSWORD}\ndatabase-address: sqlite://{}\nwww-secure-port: {secure}\nwww-certificate: {}\nwww-privatekey: {}\nplugin-directory: {}\n",
        receiver.port,
        dir.path().join("settings.db").display(),
        dir.path().join("cert.pem").display(),
        dir.path().join("key.pem").display(),
        plugins.display(),
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
    let screenshots = std::env::var("CONSOLE_SCREENSHOTS")
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
    for shot in [
        "login",
        "overview",
        "destinations",
        "results",
        "policy",
        "plugins",
        "instances",
    ] {
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

#[test]
fn instances_sharing_a_broker_see_each_other_and_hostile_cards_are_checked() {
    let (broker, p) = (Broker::shared(), prefix());
    let a = Daemon::start(&format!(
        "{}www-url: https://a.example:8443/console\n",
        broker.config(&p)
    ));
    let b = Daemon::start(&broker.config(&p));
    // Cards another program put on the broker: a script address and
    // control characters are not passed on as they came.
    broker.announce(
        "hostile-1",
        &[r#"{"hostname":"h1.test","console":"javascript:alert(1)","version":"1"}"#.into()],
    );
    broker.announce(
        "hostile-2",
        &[r#"{"hostname":"bad\u0007name","console":"http://x/"}"#.into()],
    );
    let b_console = format!("http://127.0.0.1:{}/console", b.www);
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let (code, body) = request(&a, "GET", "/v1/instances", "text/plain", "", None);
        assert_eq!(code, 200, "{body}");
        seen = serde_json::from_str::<Vec<Value>>(&body).unwrap();
        let has = |url: &str| seen.iter().any(|i| i["console"] == url);
        if has(&b_console) && has("https://a.example:8443/console") && seen.iter().any(|i| i["hostname"] == "h1.test") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let me: Vec<_> = seen.iter().filter(|i| i["self"] == true).collect();
    assert_eq!(me.len(), 1, "{seen:?}");
    assert_eq!(
        me[0]["console"], "https://a.example:8443/console",
        "www-url is announced"
    );
    let other = seen.iter().find(|i| i["console"] == b_console.as_str());
    assert_eq!(other.map(|o| o["self"].clone()), Some(Value::Bool(false)), "{seen:?}");
    let hostile = seen
        .iter()
        .find(|i| i["hostname"] == "h1.test")
        .expect("the first card is listed");
    assert!(hostile["console"].is_null(), "not a link: {hostile}");
    assert!(
        !seen
            .iter()
            .any(|i| i["hostname"].as_str().is_some_and(|h| h.contains('\u{7}'))),
        "{seen:?}"
    );
}

#[test]
fn mailerqs_reload_instruction_on_the_cluster_exchange_reads_the_settings_at_once() {
    let (broker, p) = (Broker::shared(), prefix());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("settings.db");
    // A long database-ttl: only the instruction can bring a row written with SQL in.
    let d = Daemon::start(&format!(
        "{}database-address: sqlite://{}\ndatabase-ttl: 600\n",
        broker.config(&p),
        db.display()
    ));
    let paused = || {
        let (code, body) = request(&d, "GET", "/v1/policy?domain=held.example", "text/plain", "", None);
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["pauses"]
            .as_array()
            .map_or(0, |a| a.len())
    };
    common::policy::sql(
        &db,
        "INSERT INTO paused (domain, reason) VALUES ('held.example', 'by SQL')",
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(paused(), 0, "a row written with SQL waits for database-ttl");
    broker.announce("another-instance", &[r#"{"reload": true}"#.into()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while paused() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(paused(), 1, "{}", d.log_tail(20));
}
