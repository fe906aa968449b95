//! The policy from a real SQLite file, written with SQL the way an
//! operator's script would.

use super::*;
use sluice_shaping::capacity::{Defaults, Source};
use std::time::Duration;

const D: Defaults = Defaults {
    connections: 10,
    messages_per_connection: 100,
    idle: Duration::from_secs(5),
    queue_size: 5000,
};

fn store(sql: &str) -> (tempfile::TempDir, Box<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    // The operator's tables first (some columns only), then Sluice opens them.
    let raw = Sqlite::open(&dir.path().join("settings.db")).unwrap();
    raw.execute(sql).unwrap();
    drop(raw);
    let s = open("sqlite://DATA/settings.db", dir.path()).unwrap();
    (dir, s)
}

#[test]
fn tables_are_created_and_missing_columns_added() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.db");
    // An older database: capacity without most columns, one row in it.
    let raw = Sqlite::open(&path).unwrap();
    raw.execute("CREATE TABLE capacity (id INTEGER PRIMARY KEY, updated TEXT, domain TEXT); INSERT INTO capacity (id, domain) VALUES (1, 'old.example');")
        .unwrap();
    drop(raw);
    let mut s = open(&format!("sqlite://{}", path.display()), dir.path()).unwrap();
    let policy = load(s.as_mut()).unwrap();
    assert_eq!(policy.capacity.len(), 1, "the old row survives: {:?}", policy.problems);
    let raw = Sqlite::open(&path).unwrap();
    raw.execute("INSERT INTO capacity (domain, connections, message_rate) VALUES ('new.example', 2, '120/min')")
        .unwrap();
    for table in schema::TABLES {
        assert!(s.rows(table).is_ok(), "{}", table.name);
    }
    // Migrating again changes nothing.
    s.migrate().unwrap();
    assert_eq!(load(s.as_mut()).unwrap().capacity.len(), 2);
}

#[test]
fn capacity_rows_resolve_as_written() {
    let (_dir, mut s) = store(
        "CREATE TABLE capacity (id INTEGER PRIMARY KEY, updated TEXT, localip TEXT, domain TEXT, message_rate TEXT, connections INTEGER);
         INSERT INTO capacity (id, localip, domain, message_rate, connections) VALUES
           (1, '', '', '1000/min', 20),
           (2, '', 'gmail.com', '120/min', -1),
           (3, '192.0.2.1', 'mx:*.google.com', NULL, 2);",
    );
    let policy = load(s.as_mut()).unwrap();
    assert!(policy.problems.is_empty(), "{:?}", policy.problems);
    let c = policy.capacity();
    let hosts = ["gmail-smtp-in.l.google.com".to_string()];
    let e = c.resolve(Some("192.0.2.1".parse().unwrap()), "gmail.com", &hosts, D);
    // (localip, mx:) comes before ('', domain); its NULL rate means unlimited.
    assert_eq!(e.connections.value, Some(2));
    assert_eq!(e.message_rate.value, None);
    assert_eq!(e.message_rate.from, Source::Row(3));
    let e = c.resolve(None, "gmail.com", &hosts, D);
    assert_eq!(e.message_rate.value, Some("120/min".parse().unwrap()));
    assert_eq!(e.connections.from, Source::Row(1), "-1 passes on to the next row");
}

#[test]
fn invalid_rows_are_reported_and_skipped() {
    let (_dir, mut s) = store(
        "CREATE TABLE capacity (id INTEGER PRIMARY KEY, updated TEXT, localip TEXT, domain TEXT, message_rate TEXT, connections INTEGER);
         INSERT INTO capacity (id, localip, domain, message_rate, connections) VALUES
           (1, '', 'ok.example', '60/min', 3),
           (2, 'not-an-ip', 'a.example', NULL, NULL),
           (3, '', 'b.example', 'fast', NULL),
           (4, '', 'c.example', NULL, -7),
           (5, '', 'd.example', NULL, 'ten'),
           (6, '', 'd.example', NULL, 2.5),
           (7, '', 'OK.example', NULL, 1);
         CREATE TABLE flood_responses (id INTEGER PRIMARY KEY, updated TEXT, name TEXT, type TEXT, pattern TEXT, pause INTEGER, reduce INTEGER, connections INTEGER, threshold TEXT);
         INSERT INTO flood_responses (id, name, type, pattern, pause, reduce, connections) VALUES
           (1, 'slow down', 'substr', 'slow down', 60, NULL, NULL),
           (2, 'bad regex', 'regex', '(unclosed', 60, NULL, NULL),
           (3, 'does nothing', 'exact', '421 x', NULL, NULL, NULL),
           (4, 'odd type', 'glob', 'x', 60, NULL, NULL),
           (5, 'reduce', 'fnmatch', '4.7.* rate limited*', NULL, 300, 1),
           (6, 'huge threshold', 'substr', 'x', 60, NULL, NULL);
         UPDATE flood_responses SET threshold = '1000000000/day' WHERE id = 6;",
    );
    let policy = load(s.as_mut()).unwrap();
    let problems: Vec<String> = policy.problems.iter().map(ToString::to_string).collect();
    assert_eq!(policy.capacity.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 7]);
    assert_eq!(policy.flood.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 5]);
    assert_eq!(policy.flood[1].reduced.connections, Some(1));
    let expect = [
        "capacity row 2: localip: `not-an-ip` is not an IP address",
        "capacity row 3: message_rate: expected a rate such as 120/min",
        "capacity row 4: connections: -7 is not a limit",
        "capacity row 5: connections: `ten` is not a whole number",
        "capacity row 6: connections: a real number where a whole number belongs",
        "capacity row 7: shadowed",
        "flood_responses row 2: pattern: regex",
        "flood_responses row 3: neither pause nor reduce",
        "flood_responses row 4: pattern: unknown pattern type `glob`",
        "flood_responses row 6: threshold: at most 10000 replies",
    ];
    assert_eq!(problems.len(), expect.len(), "{problems:#?}");
    for (got, want) in problems.iter().zip(expect) {
        assert!(got.starts_with(want), "{got} / {want}");
    }
    // Row 7 is shadowed by row 1 (same scope, case aside): row 1's limit applies.
    assert_eq!(
        policy.capacity().resolve(None, "ok.example", &[], D).connections.value,
        Some(3)
    );
}

#[test]
fn addresses_other_than_sqlite_and_postgresql_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (address, says) in [
        ("mysql://u:p@localhost/db", "MySQL is not supported"),
        ("settings.db", "expected sqlite://PATH or postgresql://"),
        ("postgresql://u:p@[nonsense/db", "not a PostgreSQL address"),
        ("postgres://u:secret@[nonsense/db", "not a PostgreSQL address"),
        ("mongodb://u:secret@h/db", "got a `mongodb://` address"),
        ("u:secret@h/db", "got no scheme"),
    ] {
        let e = open(address, dir.path()).err().unwrap().to_string();
        assert!(e.contains(says), "{e}");
        assert!(!e.contains("secret"), "the password is not repeated: {e}");
    }
}

#[test]
fn suppressions_by_address_and_domain() {
    let (_dir, mut s) = store(
        "CREATE TABLE suppressions (id INTEGER PRIMARY KEY, updated TEXT, type TEXT, value TEXT, code INTEGER, extended TEXT, description TEXT);
         INSERT INTO suppressions (id, type, value, code, extended, description) VALUES
           (1, 'address', 'Gone@Example.com', NULL, NULL, NULL),
           (2, 'domain', 'blocked.example', 554, '5.7.0', 'we do not send there'),
           (3, 'domain', 'x@not-a-domain.example', NULL, NULL, NULL),
           (4, 'address', 'a@b.example', 250, NULL, NULL),
           (5, 'address', 'c@d.example', NULL, '2.0.0', NULL),
           (6, 'phone', '123', NULL, NULL, NULL);",
    );
    let policy = load(s.as_mut()).unwrap();
    let sup = &policy.suppressions;
    assert_eq!(sup.len(), 2, "{:?}", policy.problems);
    let gone = sup.lookup("gone@EXAMPLE.com").unwrap();
    assert_eq!(
        (gone.code, gone.extended.as_str(), gone.description.as_str()),
        (550, "5.7.1", "recipient suppressed")
    );
    let blocked = sup.lookup("anyone@blocked.example").unwrap();
    assert_eq!((blocked.code, blocked.extended.as_str()), (554, "5.7.0"));
    assert!(sup.lookup("other@example.com").is_none());
    let ids: Vec<i64> = policy.problems.iter().map(|p| p.id).collect();
    assert_eq!(ids, [3, 4, 5, 6], "{:?}", policy.problems);
}

#[test]
fn the_built_in_flood_rules_parse_and_match_what_the_providers_document() {
    use sluice_shaping::FloodRules;
    let defaults = default_flood_rules().unwrap();
    assert!(defaults.len() >= 8);
    let rules = FloodRules::new(Vec::new(), defaults);
    let google = vec!["gmail-smtp-in.l.google.com".to_string()];
    let yahoo = vec!["mta5.am0.yahoodns.net".to_string()];
    let microsoft = vec!["hotmail-com.olc.protection.outlook.com".to_string()];
    let elsewhere: Vec<String> = vec!["mx.example.org".to_string()];
    let rule = |hosts: &[String], reply: &str| {
        rules
            .matching(None, "example.com", hosts, reply)
            .map(|r| r.name.clone())
            .unwrap_or_default()
    };
    for (hosts, reply, name) in [
        (&google, "421 4.7.28 [203.0.113.42] Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited.", "gmail: unsolicited-mail rate limit"),
        (&google, "421 4.7.0 [203.0.113.42] Our system has detected that this message is suspicious due to the very low reputation of the sending IP address.", "gmail: very low reputation"),
        (&google, "421 4.7.0 Try again later, closing connection.", "gmail: try again later"),
        (&yahoo, "421 4.7.0 [TSS04] Messages from 203.0.113.42 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1", "yahoo: deferred for volume"),
        (&yahoo, "421 4.7.0 [TS01] Messages from 203.0.113.42 temporarily deferred due to user complaints - 4.16.55.1", "yahoo: deferred for complaints"),
        (&microsoft, "451 4.7.650 The mail server [203.0.113.42] has been temporarily rate limited due to IP reputation.", "microsoft: rate limited"),
        (&microsoft, "451 4.7.652 The mail server [203.0.113.42] has exceeded the maximum number of connections.", "microsoft: too many connections"),
        (&microsoft, "421 RP-001 (BAY004-MC1F12) Unfortunately, some messages from 203.0.113.42 weren't sent.", "microsoft: outlook.com rate limits"),
        (&microsoft, "451 4.7.500 Server busy. Please try again later from [203.0.113.42].", "microsoft: server busy"),
        (&elsewhere, "421 4.7.0 Error: too many connections from 203.0.113.42", "any receiver: too many connections"),
    ] {
        assert!(rule(hosts, reply).starts_with(name), "{reply} -> {:?}, want {name}", rule(hosts, reply));
    }
    // Provider rules stay with their provider; ordinary replies match nothing.
    assert_eq!(rule(&elsewhere, "421 4.7.28 temporarily rate limited"), "");
    assert_eq!(rule(&google, "250 2.0.0 OK"), "");
    assert_eq!(
        rule(
            &google,
            "550 5.1.1 The email account that you tried to reach does not exist."
        ),
        ""
    );
    assert_eq!(
        rule(&microsoft, "550 5.7.1 Service unavailable; client host blocked"),
        ""
    );
}

/// A private key in PEM made by openssl (`args` after `genpkey`, or `genrsa -traditional` for PKCS#1).
fn openssl_key(args: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn dkim_keys_are_checked_when_read_and_patterns_pick_them_by_from_address() {
    let rsa8 = openssl_key(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    let rsa1 = openssl_key(&["genrsa", "-traditional", "2048"]);
    let ed = openssl_key(&["genpkey", "-algorithm", "ed25519"]);
    let q = |s: &str| s.replace('\'', "''");
    let (_dir, mut s) = store(&format!(
        "CREATE TABLE dkim_keys (id INTEGER PRIMARY KEY, updated TEXT, domain TEXT, selector TEXT, privatekey TEXT, headers TEXT, expire TEXT);
         INSERT INTO dkim_keys (id, domain, selector, privatekey, headers) VALUES
           (1, 'Example.com', 's1', '{}', 'X-Campaign, List-Id'),
           (2, 'example.com', 's2', '{}', NULL),
           (3, 'example.org', 'ed', '{}', NULL),
           (4, 'example.org', 'bad', 'not a key at all', NULL),
           (5, 'example.org', 'bad selector!', '{}', NULL),
           (6, 'example.org', 'x', '{}', 'X-Ok, Bäd');
         CREATE TABLE dkim_patterns (id INTEGER PRIMARY KEY, updated TEXT, type TEXT, pattern TEXT, key INTEGER);
         INSERT INTO dkim_patterns (id, type, pattern, key) VALUES
           (1, 'fnmatch', '*@example.com', 1),
           (2, 'fnmatch', '*@*example.com', 2),
           (3, 'exact', 'news@example.org', 3),
           (4, 'substr', '@', 4),
           (5, 'exact', 'a@b.c', 99),
           (6, 'fnmatch', '*@example.com', 1);",
        q(&rsa8),
        q(&rsa1),
        q(&ed),
        q(&rsa8),
        q(&rsa8)
    ));
    let policy = load(s.as_mut()).unwrap();
    let problems: Vec<String> = policy.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        problems,
        [
            "dkim_keys row 4: privatekey: not a PEM RSA or Ed25519 private key",
            "dkim_keys row 5: selector: `bad selector!` is not a DNS label",
            "dkim_keys row 6: headers: `Bäd` is not a header name",
            "dkim_patterns row 4: key: no usable dkim_keys row 4",
            "dkim_patterns row 5: key: no usable dkim_keys row 99",
        ]
    );
    let keys = &policy.dkim;
    let algorithms: Vec<&str> = keys.keys().iter().map(|k| k.algorithm).collect();
    assert_eq!(algorithms, ["rsa", "rsa", "ed25519"]);
    assert_eq!(keys.keys()[0].domain, "example.com");
    assert_eq!(keys.keys()[0].headers, ["X-Campaign", "List-Id"]);
    assert!(keys.keys()[0].fingerprint.starts_with("sha256:") && keys.keys()[0].fingerprint.len() == 71);
    assert_ne!(keys.keys()[0].fingerprint, keys.keys()[1].fingerprint);
    // Addresses match case-insensitively; a key picked twice signs once.
    let ids = |from: &str| keys.for_from(from).iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(ids("Jane@Example.COM"), [1, 2]);
    assert_eq!(ids("news@sub.example.com"), [2]);
    assert_eq!(ids("news@example.org"), [3]);
    assert!(ids("other@example.net").is_empty());
    // Neither a log nor a report shows the key.
    assert!(!format!("{keys:?}").contains("PRIVATE KEY"));
    assert!(!problems.concat().contains("PRIVATE KEY"));
}

#[test]
fn pools_hold_their_poolips_and_stray_rows_are_reported() {
    let (_dir, mut s) = store(
        "CREATE TABLE pools (id INTEGER PRIMARY KEY, name TEXT, description TEXT);
         CREATE TABLE poolips (id INTEGER PRIMARY KEY, name TEXT, localip TEXT);
         INSERT INTO pools (id, name, description) VALUES (1, 'warm', 'warmed up'), (2, 'empty', NULL), (3, 'two words', NULL);
         INSERT INTO poolips (id, name, localip) VALUES
           (1, 'warm', '127.0.0.2'), (2, 'warm', '::1'), (3, 'warm', '127.0.0.2'),
           (4, 'nosuch', '127.0.0.3'), (5, 'warm', 'not-an-ip');",
    );
    let policy = load(s.as_mut()).unwrap();
    let ip = |t: &str| t.parse::<std::net::IpAddr>().unwrap();
    assert_eq!(policy.pools["warm"], [ip("127.0.0.2"), ip("::1")]);
    assert!(policy.pools["empty"].is_empty());
    assert!(!policy.pools.contains_key("two words"));
    let mut problems: Vec<(&str, i64)> = policy.problems.iter().map(|p| (p.table, p.id)).collect();
    problems.sort();
    assert_eq!(
        problems,
        [("poolips", 3), ("poolips", 4), ("poolips", 5), ("pools", 3)],
        "{:?}",
        policy.problems
    );
}
