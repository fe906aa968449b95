//! The settings tables through Sluice: `/v1/TABLE` resources and the
//! `sluice pause|suppress|capacity|flood|dkim ...` commands, checked as the
//! loader reads rows; private keys written, never shown.

mod common;
use common::peers::{recorded, recorder};
use common::policy::*;
use common::*;
use serde_json::Value;
use std::time::Duration;

const JSON: &str = "application/json";

fn openssl_key(dir: &std::path::Path) -> std::path::PathBuf {
    require("openssl");
    let path = dir.join("key.pem");
    let ok = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(ok.success());
    path
}

#[test]
fn each_table_has_a_json_resource_that_refuses_rows_the_loader_would_skip() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&format!(
        "database-address: sqlite://{}\nwww-tokens: t\n",
        dir.path().join("settings.db").display()
    ));
    let auth = Some("Bearer t");
    let (code, body) = request(
        &d,
        "POST",
        "/v1/capacity",
        JSON,
        r#"{"domain":"gmail.com","message_rate":"120/min","connections":2}"#,
        auth,
    );
    assert_eq!(code, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"].as_i64().unwrap();
    // What the loader would skip is refused, with its reason.
    let (code, body) = request(
        &d,
        "POST",
        "/v1/capacity",
        JSON,
        r#"{"domain":"x.example","message_rate":"fast"}"#,
        auth,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("message_rate"), "{body}");
    let (code, body) = request(
        &d,
        "POST",
        "/v1/capacity",
        JSON,
        r#"{"domain":"x.example","nope":1}"#,
        auth,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("no column `nope`"), "{body}");
    assert_eq!(
        request(&d, "POST", "/v1/capacity", JSON, r#"{"connections":"two"}"#, auth).0,
        400
    );
    assert_eq!(
        request(&d, "POST", "/v1/capacity", JSON, r#"{"domain":"a\nb"}"#, auth).0,
        400
    );
    // PUT changes the columns given, checked with the rest of the row.
    assert_eq!(
        request(
            &d,
            "PUT",
            &format!("/v1/capacity/{id}"),
            JSON,
            r#"{"connections":3}"#,
            auth
        )
        .0,
        200
    );
    assert_eq!(
        request(
            &d,
            "PUT",
            &format!("/v1/capacity/{id}"),
            JSON,
            r#"{"idle_seconds":"x"}"#,
            auth
        )
        .0,
        400
    );
    let (_, row) = request(&d, "GET", &format!("/v1/capacity/{id}"), JSON, "", auth);
    let row: Value = serde_json::from_str(&row).unwrap();
    assert_eq!(
        (row["connections"].as_i64(), row["message_rate"].as_str()),
        (Some(3), Some("120/min")),
        "{row}"
    );
    // It is in force at once.
    let (_, shown) = request(&d, "GET", "/v1/policy?domain=gmail.com", JSON, "", auth);
    assert!(shown.contains(&format!("capacity row {id}")), "{shown}");
    // A row written with SQL that the loader skips is listed with its problem.
    sql(
        &dir.path().join("settings.db"),
        "INSERT INTO capacity (domain, connections) VALUES ('bad.example', 'many');",
    );
    let (_, list) = request(&d, "GET", "/v1/capacity", JSON, "", auth);
    let list: Vec<Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(list.len(), 2);
    assert!(list[1]["problem"].as_str().unwrap().contains("many"), "{list:?}");
    assert_eq!(
        request(&d, "DELETE", &format!("/v1/capacity/{id}"), JSON, "", auth).0,
        200
    );
    assert_eq!(
        request(&d, "DELETE", &format!("/v1/capacity/{id}"), JSON, "", auth).0,
        404
    );
    assert_eq!(request(&d, "GET", "/v1/nonsense", JSON, "", auth).0, 404);
    assert_eq!(request(&d, "GET", "/v1/capacity", JSON, "", None).0, 401);
    // Every other table is there too.
    for table in [
        "flood_responses",
        "delegates",
        "mtanames",
        "dns",
        "dkim_keys",
        "dkim_patterns",
        "locals",
        "pools",
        "poolips",
    ] {
        assert_eq!(
            request(&d, "GET", &format!("/v1/{table}"), JSON, "", auth).0,
            200,
            "{table}"
        );
    }
    // A DKIM key goes in; what comes out is its algorithm and fingerprint, never the key.
    let pem = std::fs::read_to_string(openssl_key(dir.path())).unwrap();
    let body = serde_json::json!({"domain": "sign.example", "selector": "s1", "privatekey": pem}).to_string();
    let (code, answer) = request(&d, "POST", "/v1/dkim_keys", JSON, &body, auth);
    assert_eq!(code, 200, "{answer}");
    let key = serde_json::from_str::<Value>(&answer).unwrap()["id"].as_i64().unwrap();
    let (_, keys) = request(&d, "GET", "/v1/dkim_keys", JSON, "", auth);
    assert!(!keys.contains("PRIVATE") && !keys.contains("privatekey"), "{keys}");
    let keys: Vec<Value> = serde_json::from_str(&keys).unwrap();
    assert_eq!(keys[0]["algorithm"], "ed25519");
    assert!(keys[0]["fingerprint"].as_str().unwrap().starts_with("sha256:"));
    let bad_key = serde_json::json!({"domain": "sign.example", "selector": "s2", "privatekey": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"});
    let (code, answer) = request(&d, "POST", "/v1/dkim_keys", JSON, &bad_key.to_string(), auth);
    assert_eq!(code, 400, "{answer}");
    assert!(!answer.contains("AAAA"), "the key is not echoed: {answer}");
    // A pattern must name a usable key.
    let pattern = |k: i64| serde_json::json!({"type": "fnmatch", "pattern": "*@sign.example", "key": k}).to_string();
    assert_eq!(
        request(&d, "POST", "/v1/dkim_patterns", JSON, &pattern(key + 100), auth).0,
        400
    );
    assert_eq!(
        request(&d, "POST", "/v1/dkim_patterns", JSON, &pattern(key), auth).0,
        200
    );
}

#[test]
fn the_command_line_edits_the_tables_and_a_running_daemon_follows_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("settings.db"), dir.path().join("arrivals.jsonl"));
    let receiver = recorder(&out, None);
    // A long reload time: only the change marker can bring the CLI's changes in.
    let d = Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\ndatabase-address: sqlite://{}\ndatabase-ttl: 600\n",
        receiver.port,
        db.display()
    ));
    let cli = |args: &[&str]| {
        let o = d.cli(args, b"");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (ok, text) = cli(&["pause", "add", "domain=held.example", "reason=complaints"]);
    assert!(ok, "{text}");
    let (ok, text) = cli(&["pause", "list"]);
    assert!(ok && text.contains("\"domain\":\"held.example\""), "{text}");
    std::thread::sleep(Duration::from_secs(2));
    inject(&d, &[message(1, "held.example"), message(2, "free.example")]);
    assert_eq!(
        arrivals(&out, 1, Duration::from_secs(30)).len(),
        1,
        "{}",
        d.log_tail(40)
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        times(&recorded(&out), "held.example").is_empty(),
        "held after `sluice pause add`"
    );
    let (ok, text) = cli(&["pause", "remove", "domain=held.example"]);
    assert!(ok && text.contains("\"removed\":1"), "{text}");
    assert_eq!(
        times(&arrivals(&out, 2, Duration::from_secs(30)), "held.example").len(),
        1
    );
    // Rows checked as the API checks them; a bad one changes nothing.
    let (ok, text) = cli(&["capacity", "add", "domain=gmail.com", "message_rate=sometimes"]);
    assert!(!ok && text.contains("message_rate"), "{text}");
    let (ok, text) = cli(&["capacity", "add", "domain=gmail.com", "message_rate=120/min"]);
    assert!(ok, "{text}");
    let id: Value = serde_json::from_str(text.trim()).unwrap();
    let id = id["id"].to_string();
    assert!(cli(&["capacity", "set", &id, "connections=2"]).0);
    let (_, list) = cli(&["capacity", "list"]);
    assert!(list.contains("\"connections\":2") && list.contains("120/min"), "{list}");
    assert!(cli(&["capacity", "remove", &id]).0);
    assert!(!cli(&["capacity", "remove", &id]).0);
    let (ok, text) = cli(&[
        "flood",
        "add",
        "name=slow",
        "type=substr",
        "pattern=slow down",
        "pause=60",
    ]);
    assert!(ok, "{text}");
    // A key from a file; the listing shows its fingerprint, not the key.
    let key = openssl_key(dir.path());
    let (ok, text) = cli(&[
        "dkim",
        "add",
        "domain=sign.example",
        "selector=s1",
        &format!("privatekey=@{}", key.display()),
    ]);
    assert!(ok, "{text}");
    let (_, keys) = cli(&["dkim", "list"]);
    assert!(keys.contains("sha256:") && !keys.contains("PRIVATE"), "{keys}");
    let (ok, text) = cli(&[
        "dkim-patterns",
        "add",
        "type=fnmatch",
        "pattern=*@sign.example",
        "key=999",
    ]);
    assert!(!ok && text.contains("no usable dkim_keys row 999"), "{text}");
    let (ok, text) = cli(&[
        "suppress",
        "add",
        "type=address",
        "value=Gone@Example.com",
        "description=left",
    ]);
    assert!(ok, "{text}");
    let (_, list) = cli(&["suppress", "list"]);
    assert!(
        list.contains("gone@example.com") && list.contains("\"code\":550"),
        "{list}"
    );
    assert!(!cli(&["suppress", "add", "type=address", "value=no-at-sign"]).0);
    assert!(!cli(&["capacity", "add", "domain"]).0, "NAME=VALUE is required");
}

#[test]
fn a_tokens_row_is_a_bearer_token_no_api_shows_and_the_cli_finds_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("settings.db");
    sql(
        &db,
        "CREATE TABLE tokens (id INTEGER PRIMARY KEY, token TEXT, description TEXT);
         INSERT INTO tokens (token, description) VALUES ('a-long-enough-token-1234', 'monitoring'), ('short', 'weak');",
    );
    let d = Daemon::start(&format!("database-address: sqlite://{}\n", db.display()));
    // A row in the table makes authentication required, as www-tokens does.
    assert_eq!(request(&d, "GET", "/v1/capacity", JSON, "", None).0, 401);
    assert_eq!(
        request(
            &d,
            "GET",
            "/v1/capacity",
            JSON,
            "",
            Some("Bearer a-long-enough-token-1234")
        )
        .0,
        200
    );
    assert_eq!(
        request(&d, "GET", "/v1/capacity", JSON, "", Some("Bearer short")).0,
        401,
        "too short: skipped"
    );
    assert!(d.log().contains("shorter than 16"), "the weak row is reported");
    assert!(
        !d.log().contains("'short'") && !d.log().contains("a-long-enough"),
        "no token in the log"
    );
    // No resource lists them.
    let (code, _) = request(
        &d,
        "GET",
        "/v1/tokens",
        JSON,
        "",
        Some("Bearer a-long-enough-token-1234"),
    );
    assert_eq!(code, 404);
    // The CLI, whose config has no credentials, authenticates with the table's token.
    let out = d.cli(&["policy", "show", "example.com"], b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
