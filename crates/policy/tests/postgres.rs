//! The PostgreSQL store against a real server: the test run's private
//! cluster, one database per test, rows written with `psql` the way an
//! operator's script would.

use sluice_policy::schema::{CAPACITY, PAUSED, TABLES};
use sluice_policy::store::Value;
use sluice_policy::{load, open, Store};
use sluice_test_support::PgDatabase;

fn store(db: &PgDatabase) -> Box<dyn Store> {
    open(&db.address, std::path::Path::new("/nonexistent")).unwrap()
}

#[test]
fn tables_are_created_old_ones_migrated_and_rows_read_as_written() {
    let db = PgDatabase::create();
    // An older table of the operator's own: a few columns, its own types, rows in it.
    db.sql(
        "CREATE TABLE capacity (id SERIAL PRIMARY KEY, updated TEXT, domain VARCHAR(200), connections BIGINT);
         INSERT INTO capacity (domain, connections) VALUES ('old.example', 3);",
    );
    let mut s = store(&db);
    for table in TABLES {
        assert!(s.rows(table).is_ok(), "{}", table.name);
    }
    db.sql(
        "INSERT INTO capacity (domain, message_rate, connections) VALUES ('new.example', '120/min', 2), ('bad.example', 'fast', 1);",
    );
    // Migrating again (as a second instance starting does) changes nothing.
    s.migrate().unwrap();
    let policy = load(s.as_mut()).unwrap();
    assert_eq!(policy.capacity.len(), 2, "{:?}", policy.problems);
    assert_eq!(policy.problems.len(), 1, "{:?}", policy.problems);
    assert!(policy.problems[0].why.contains("fast"), "{}", policy.problems[0]);
    let c = policy.capacity();
    let d = sluice_shaping::capacity::Defaults {
        connections: 10,
        messages_per_connection: 100,
        idle: std::time::Duration::from_secs(5),
        queue_size: 100,
    };
    assert_eq!(c.resolve(None, "old.example", &[], d).connections.value, Some(3));
    assert_eq!(c.resolve(None, "new.example", &[], d).connections.value, Some(2));
}

#[test]
fn writes_raise_the_change_marker_and_keys_match_empty_as_null() {
    let db = PgDatabase::create();
    let mut s = store(&db);
    let v0 = s.version().unwrap();
    let id = s
        .insert(
            &PAUSED,
            &[
                ("domain", Value::Text("held.example".into())),
                ("reason", Value::Text("complaints".into())),
            ],
        )
        .unwrap();
    assert!(id > 0);
    assert_eq!(s.version().unwrap(), v0 + 1);
    // `localip` is NULL in the row: an empty key matches it.
    let key = [
        ("domain", Value::Text("held.example".into())),
        ("localip", Value::Text(String::new())),
    ];
    assert_eq!(
        s.update(&PAUSED, &key, &[("reason", Value::Text("later".into()))])
            .unwrap(),
        1
    );
    assert_eq!(db.sql("SELECT reason FROM paused").trim(), "later");
    assert_eq!(s.version().unwrap(), v0 + 2);
    // A write from another client (psql) is seen by the next read.
    db.sql("INSERT INTO paused (domain) VALUES ('other.example')");
    assert_eq!(load(s.as_mut()).unwrap().pauses.len(), 2);
    assert_eq!(s.delete(&PAUSED, &key).unwrap(), 1);
    assert_eq!(s.version().unwrap(), v0 + 3);
    // An integer column as a key: NULL matches NULL, a number the number.
    s.insert(
        &CAPACITY,
        &[
            ("domain", Value::Text("x.example".into())),
            ("connections", Value::Int(4)),
        ],
    )
    .unwrap();
    assert_eq!(s.delete(&CAPACITY, &[("connections", Value::Int(5))]).unwrap(), 0);
    assert_eq!(s.delete(&CAPACITY, &[("connections", Value::Int(4))]).unwrap(), 1);
    // A column that is not in the schema never reaches the SQL.
    assert!(s.insert(&PAUSED, &[("nope; DROP TABLE paused", Value::Null)]).is_err());
    assert!(s.rows(&PAUSED).is_ok());
}

#[test]
fn instances_starting_together_migrate_once_without_error() {
    let db = PgDatabase::create();
    let address = db.address.clone();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let address = address.clone();
            std::thread::spawn(move || open(&address, std::path::Path::new("/nonexistent")).map(|_| ()))
        })
        .collect();
    for s in starts {
        s.join().unwrap().unwrap();
    }
    assert_eq!(
        db.sql(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'capacity' AND column_name = 'domain'"
        )
        .trim(),
        "1"
    );
}

#[test]
fn a_broken_connection_is_opened_again() {
    let db = PgDatabase::create();
    let mut s = store(&db);
    // The server ends every session of this database but psql's own, and they are gone.
    let others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()";
    db.sql(&format!("SELECT pg_terminate_backend(pid) {others}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while db.sql(&format!("SELECT count(*) {others}")).trim() != "0" && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A read finds the connection broken and goes again on a new one.
    assert!(s.version().is_ok());
    assert!(load(s.as_mut()).is_ok());
}

#[test]
fn the_address_is_described_without_its_password_and_bad_ones_fail_clearly() {
    let db = PgDatabase::create();
    let s = store(&db);
    let password = db.address.split(':').nth(2).and_then(|p| p.split('@').next()).unwrap();
    assert!(!s.describe().contains(password), "{}", s.describe());
    assert!(
        s.describe().starts_with("postgresql://sluice@127.0.0.1:"),
        "{}",
        s.describe()
    );
    let port = sluice_test_support::free_port();
    let e = open(
        &format!("postgresql://u:secret@127.0.0.1:{port}/db"),
        std::path::Path::new("/"),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(!e.contains("secret"), "{e}");
    let wrong = db.address.replace(password, "wrong");
    let e = open(&wrong, std::path::Path::new("/")).err().unwrap().to_string();
    assert!(e.contains("password"), "{e}");
}
