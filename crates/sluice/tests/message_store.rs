//! MailerQ's message store (`storage-address`: a directory, and a real
//! PostgreSQL, MariaDB and S3-compatible server two instances share): with policy `all`
//! received mail is queued with a `key` instead of its MIME; a message with
//! a key is delivered with the stored MIME, a missing key is `storage/error`;
//! with policy `out` a retry goes back to the outbox by key and is delivered
//! from the store. Real SMTP peers (swaks, the recording receiver).

mod common;
use common::peers::{recorded, recorder};
use common::policy::inject;
use common::*;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// Files in the store (not its temporary ones).
fn stored(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else if !e.file_name().to_string_lossy().starts_with('.') {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out
}

#[test]
fn policy_all_queues_keys_and_a_key_is_delivered_with_the_stored_mime() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let address = format!("storage-address: dir://{}?compression=gzip\n", store.display());
    let key = keys_round_trip(dir.path(), &address);
    assert_eq!(stored(&store), [key]);
}

#[test]
fn instances_share_a_postgresql_message_store() {
    let db = sluice_test_support::PgDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let address = format!("storage-address: {}?compression=gzip\n", db.address);
    let key = keys_round_trip(dir.path(), &address);
    let row = db.sql(&format!(
        "SELECT encoding, expire > extract(epoch from now()) FROM message_store WHERE id = '{key}'"
    ));
    assert_eq!(row.trim(), "gzip|t", "one row, compressed, not expired");
}

#[test]
fn instances_share_a_mysql_message_store() {
    let db = sluice_test_support::MysqlDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let address = format!("storage-address: {}?compression=gzip\n", db.address);
    let key = keys_round_trip(dir.path(), &address);
    let row = db.sql(&format!(
        "SELECT encoding, expire > UNIX_TIMESTAMP() FROM message_store WHERE id = '{key}'"
    ));
    assert_eq!(row.trim(), "gzip\t1", "one row, compressed, not expired");
}

#[test]
fn instances_share_an_s3_message_store() {
    let bucket = sluice_test_support::S3Bucket::create();
    let dir = tempfile::tempdir().unwrap();
    let address = format!("storage-address: {}&compression=gzip\n", bucket.address);
    let key = keys_round_trip(dir.path(), &address);
    let objects = bucket.objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    let (name, meta) = &objects[0];
    assert_eq!(name, &key);
    assert_eq!(meta.get("encoding").map(String::as_str), Some("gzip"), "{meta:?}");
    let expire: u64 = meta["expire"].parse().unwrap();
    assert!(expire * 1000 > sluice_queue::now_ms(), "not expired: {meta:?}");
}

#[test]
fn a_store_that_cannot_be_read_now_holds_the_message_for_storage_reschedule_without_an_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // depth=0: the key's file is right in the directory. A directory in
    // its place cannot be read as one, as a disk or a server can fail.
    std::fs::create_dir_all(store.join("held-1")).unwrap();
    let out = dir.path().join("received.jsonl");
    let sink = recorder(&out, None);
    let d = Daemon::start(&format!(
        "storage-address: dir://{}?depth=0\nstorage-policy: none\nstorage-reschedule: 1\n\
         delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\n",
        store.display(),
        sink.port
    ));
    inject(
        &d,
        &[json!({"envelope": "s@example.net", "recipient": "a@example.com", "key": "held-1"})],
    );
    let deadline = Instant::now() + WAIT;
    while !d.log_tail(50).contains("cannot read the message store") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        d.log_tail(50).contains("cannot read the message store"),
        "{}",
        d.log_tail(20)
    );
    // Readable again: delivered at the next look, after a second.
    std::fs::remove_dir(store.join("held-1")).unwrap();
    std::fs::write(store.join("held-1"), "Subject: held\r\n\r\nwaited for the store\r\n").unwrap();
    let success = d.collect("success", 1, WAIT);
    assert_eq!(success.len(), 1, "{}", d.log_tail(20));
    let results = success[0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "the wait was no attempt: {results:?}");
    assert!(
        d.log_tail(50).contains("the message store can be read again"),
        "{}",
        d.log_tail(20)
    );
    assert!(recorded(&out)[0]["data"]
        .as_str()
        .unwrap()
        .contains("waited for the store"));
}

/// One instance receives with policy `all` (the queued JSON has a key),
/// another on the same store delivers it and fails a key that is not
/// there; the key.
fn keys_round_trip(dir: &Path, address: &str) -> String {
    // Receiving only: what the outbox holds is visible.
    let receiver = Daemon::start(&format!("{address}storage-policy: all\n"));
    let (ok, transcript) = swaks(
        &receiver,
        "s@example.net",
        "a@example.com",
        &["--body", "kept in the store"],
    );
    assert!(ok, "{transcript}");
    let queued = receiver.collect("outbox", 1, WAIT);
    assert_eq!(queued.len(), 1, "{}", receiver.log_tail(20));
    let m = &queued[0];
    assert!(m.get("mime").is_none(), "the JSON carries a key instead: {m}");
    let key = m["key"].as_str().unwrap().to_string();
    drop(receiver);

    // Another instance on the same store delivers it, and fails a key that is not there.
    let out = dir.join("received.jsonl");
    let sink = recorder(&out, None);
    let d = Daemon::start(&format!(
        "{address}storage-policy: none\ndelivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\n",
        sink.port
    ));
    let mut missing = m.clone();
    missing["key"] = json!("no-such-key");
    missing["recipient"] = json!("b@example.com");
    inject(&d, &[m.clone(), missing]);
    let success = d.collect("success", 1, WAIT);
    assert_eq!(success.len(), 1, "{}", d.log_tail(20));
    let failure = d.collect("failure", 1, WAIT);
    let e = &failure[0]["results"][0];
    assert_eq!(
        (e["state"].as_str(), e["result"].as_str()),
        (Some("storage"), Some("error")),
        "{e}"
    );
    let seen = recorded(&out);
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0]["data"].as_str().unwrap().contains("kept in the store"),
        "{:?}",
        seen[0]
    );
    key
}

#[test]
fn policy_out_sends_a_retry_back_by_key_and_delivers_it_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let out = dir.path().join("received.jsonl");
    // The first try is refused (421), the second accepted.
    let sink = recorder(&out, Some(("example.com", 1, "421 4.7.0 Try again later")));
    let d = Daemon::start(&format!(
        "storage-address: directory://{}\nstorage-policy: out\ndelivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\n",
        store.display(),
        sink.port
    ));
    inject(
        &d,
        &[
            json!({"envelope": "s@example.net", "recipient": "a@example.com", "message-id": "retry-1",
                 "mime": "Subject: once more\r\n\r\nsent twice\r\n", "retries": [1]}),
        ],
    );
    let success = d.collect("success", 1, WAIT);
    assert_eq!(success.len(), 1, "{}", d.log_tail(20));
    assert_eq!(success[0]["key"], "retry-1", "it came back by key: {}", success[0]);
    assert_eq!(stored(&store), ["retry-1"], "stored under its message-id");
    let deadline = Instant::now() + WAIT;
    while recorded(&out).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = recorded(&out);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[1]["data"].as_str().unwrap().contains("sent twice"),
        "from the store: {:?}",
        seen[1]
    );
}

#[test]
fn a_store_sluice_has_not_built_is_a_start_up_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.txt");
    std::fs::write(
        &config,
        format!(
            "data-directory: {}\nsmtp-port: {}\nwww-port: {}\nstorage-address: mongodb://user:secretkey@h/db/collection\n",
            dir.path().join("data").display(),
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let stderr = start_fails(&config);
    assert!(
        stderr.contains("storage-address") && stderr.contains("not supported yet"),
        "{stderr}"
    );
    assert!(!stderr.contains("secretkey"), "{stderr}");
}
