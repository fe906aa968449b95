//! Reports among local mail (`rabbitmq-reports`): a DSN, an ARF complaint and
//! a DMARC aggregate report, built with Python's email package and sent with
//! swaks to local addresses, reach the reports queue with their facts as
//! JSON; ordinary local mail stays in the local queue.

mod common;
use common::policy::sql;
use common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/reports.py");

#[test]
fn dsn_arf_and_dmarc_reports_to_local_addresses_reach_rabbitmq_reports_with_their_facts() {
    let dir = tempfile::tempdir().unwrap();
    let made = run(std::process::Command::new("python3").arg(SAMPLES).arg(dir.path()));
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let db = dir.path().join("settings.db");
    sql(
        &db,
        "CREATE TABLE locals (id INTEGER PRIMARY KEY, type TEXT, pattern TEXT);
         INSERT INTO locals (type, pattern) VALUES ('fnmatch', '*@local.test');",
    );
    let d = Daemon::start(&format!(
        "database-address: sqlite://{}\nrabbitmq-inbox: inbox\nrabbitmq-local: local\nrabbitmq-reports: reports\n",
        db.display()
    ));
    for (name, to) in [
        ("dsn", "bounces@local.test"),
        ("arf", "complaints@local.test"),
        ("dmarc", "dmarc@local.test"),
    ] {
        let file = dir.path().join(format!("{name}.eml"));
        let (ok, transcript) = swaks(&d, "", to, &["--data", file.to_str().unwrap()]);
        assert!(ok, "{name}: {transcript}");
    }
    // Not a report: the local queue, as before.
    let (ok, transcript) = swaks(&d, "friend@example.org", "postmaster@local.test", &["--body", "hello"]);
    assert!(ok, "{transcript}");

    let reports = d.collect("reports", 3, WAIT);
    assert_eq!(reports.len(), 3, "{}", d.log_tail(30));
    let of = |kind: &str| {
        reports
            .iter()
            .find(|m| m["report"]["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind}: {reports:?}"))["report"]
            .clone()
    };
    let dsn = of("dsn");
    assert_eq!(dsn["recipient"], "gone@example.org", "{dsn}");
    assert_eq!(dsn["original-recipient"], "Gone@example.org");
    assert_eq!(dsn["status"], "5.1.1");
    assert_eq!(dsn["action"], "failed");
    assert_eq!(dsn["diagnostic-code"], "550 5.1.1 <gone@example.org>: no such user");
    assert_eq!(dsn["envelope-id"], "env-7");
    assert_eq!(dsn["message-id"], "campaign-7@example.net");
    let arf = of("arf");
    assert_eq!(arf["feedback-type"], "abuse", "{arf}");
    assert_eq!(arf["original-rcpt-to"], "reader@isp.example");
    assert_eq!(arf["source-ip"], "192.0.2.25");
    assert_eq!(arf["message-id"], "campaign-7@example.net");
    let dmarc = of("dmarc");
    assert_eq!(dmarc["org"], "isp.example", "{dmarc}");
    assert_eq!(dmarc["domain"], "example.net");
    assert_eq!(dmarc["report-id"], "r-2026-12-01");
    assert_eq!(
        (dmarc["records"].as_u64(), dmarc["messages"].as_u64()),
        (Some(2), Some(15))
    );
    for m in &reports {
        assert!(m["mime"].is_string(), "the report itself is kept: {m}");
    }
    let local = d.collect("local", 1, WAIT);
    assert_eq!(local.len(), 1);
    assert_eq!(local[0]["recipient"], "postmaster@local.test");
    assert!(local[0].get("report").is_none());
}
