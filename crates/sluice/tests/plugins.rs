//! Real C and C++ plugins, compiled here against include/mailerq.h and loaded
//! by the real binary.

mod common;
use common::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const INCLUDE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin/include");
const SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/plugins");
const EXPORTS_LIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin/exports.list");

/// Builds a plugin the way the docs tell authors to, warnings as errors.
fn build(source: &str, out: &Path, defines: &[String]) {
    build_with(source, out, defines, &[]);
}

/// As [`build`], linking `libs` (e.g. `-ljson-c`).
fn build_with(source: &str, out: &Path, defines: &[String], libs: &[&str]) {
    let cpp = source.ends_with(".cpp");
    require(if cpp { "c++" } else { "cc" });
    let status = Command::new(if cpp { "c++" } else { "cc" })
        .args([
            "-shared",
            "-fPIC",
            "-fvisibility=hidden",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
        ])
        .arg(if cpp { "-std=c++11" } else { "-std=c99" })
        .arg(format!("-I{INCLUDE}"))
        .args(defines)
        .arg("-o")
        .arg(out)
        .arg(format!("{SOURCES}/{source}"))
        .args(libs)
        .arg("-lpthread")
        .status()
        .unwrap();
    assert!(status.success(), "building {source} failed");
}

fn lifecycle(dir: &Path, name: &str, log: &Path) {
    build(
        "lifecycle.c",
        &dir.join(format!("{name}.so")),
        &[
            format!("-DNAME=\"{name}\""),
            format!("-DLOG_PATH=\"{}\"", log.display()),
        ],
    );
}

fn lines(log: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn load_order_initialize_cleanup_and_worker_contexts() {
    let plugins = tempfile::tempdir().unwrap();
    let log = plugins.path().join("calls.log");
    for name in ["a", "20-b", "10-a"] {
        lifecycle(plugins.path(), name, &log);
    }
    // Not plugins: ignored.
    std::fs::write(plugins.path().join("README.txt"), "x").unwrap();
    std::fs::write(plugins.path().join("old.so.disabled"), "x").unwrap();
    std::fs::create_dir(plugins.path().join("dir.so")).unwrap();

    let mut d = Daemon::start(&format!(
        "plugin-directory: {}\nsmtp-threads: 3\n",
        plugins.path().display()
    ));
    let started = lines(&log);
    let inits: Vec<&str> = started
        .iter()
        .filter(|l| l[0] == "init")
        .map(|l| l[1].as_str())
        .collect();
    assert_eq!(inits, ["10-a", "20-b", "a"], "byte-wise alphabetical, once each");
    assert!(
        started.iter().take(3).all(|l| l[0] == "init"),
        "mq_initialize before any context: {started:?}"
    );
    let threads_of = |plugin: &str, kind: &str, lines: &[Vec<String>]| -> BTreeSet<String> {
        let v: Vec<String> = lines
            .iter()
            .filter(|l| l[0] == kind && l[1] == plugin)
            .map(|l| l[2].clone())
            .collect();
        assert_eq!(v.len(), 3, "{kind} {plugin}: once per worker, 3 workers");
        v.into_iter().collect()
    };
    let workers = threads_of("10-a", "ctx-init", &started);
    assert_eq!(workers.len(), 3, "three distinct worker threads");
    assert_eq!(threads_of("20-b", "ctx-init", &started), workers);
    assert_eq!(threads_of("a", "ctx-init", &started), workers);
    assert!(d.log().contains("hello from 10-a"), "MQ_log reaches the host log");
    assert!(
        d.log().contains("plugin=\"10-a.so\"") || d.log().contains("plugin=10-a.so"),
        "with the plugin's name"
    );

    assert_eq!(d.terminate(), Some(0));
    let all = lines(&log);
    for p in ["10-a", "20-b", "a"] {
        assert_eq!(
            threads_of(p, "ctx-cleanup", &all),
            workers,
            "cleanup on the same worker threads"
        );
        assert!(
            all.iter()
                .filter(|l| l[0] == "ctx-cleanup" && l[1] == p)
                .all(|l| l[3] == "own-data"),
            "{all:?}"
        );
    }
    let cleanups: Vec<&str> = all
        .iter()
        .filter(|l| l[0] == "cleanup")
        .map(|l| l[1].as_str())
        .collect();
    assert_eq!(cleanups, ["10-a", "20-b", "a"]);
    let last_ctx = all.iter().rposition(|l| l[0] == "ctx-cleanup").unwrap();
    let first_cleanup = all.iter().position(|l| l[0] == "cleanup").unwrap();
    assert!(last_ctx < first_cleanup, "mq_cleanup after every worker stopped");
}

#[test]
fn broken_plugins_stop_start_up_with_one_clear_line() {
    let cases = [
        ("noversion.c", "does not export mq_version()"),
        (
            "badversion.c",
            "built for API version 99, this host implements MQ_API_VERSION 1",
        ),
        ("missing.c", "MQ_no_such_function"),
    ];
    for (source, reason) in cases {
        let plugins = tempfile::tempdir().unwrap();
        let log = plugins.path().join("calls.log");
        lifecycle(plugins.path(), "00-good", &log);
        let broken = plugins.path().join(source.replace(".c", ".so"));
        build(source, &broken, &[]);
        let config = plugins.path().join("config.txt");
        std::fs::write(
            &config,
            format!(
                "plugin-directory: {}\nsmtp-port: {}\nwww-port: {}\ndata-directory: {}\n",
                plugins.path().display(),
                free_port(),
                free_port(),
                plugins.path().join("data").display()
            ),
        )
        .unwrap();
        let err = start_fails(&config);
        let line = err.lines().last().unwrap_or_default();
        assert!(
            line.contains(&format!("plugin {}", broken.display())) && line.contains(reason),
            "{source}: {err}"
        );
        assert!(
            lines(&log).is_empty(),
            "{source}: no plugin was initialised when one is broken"
        );
    }
}

#[test]
fn plugin_check_reports_exports_and_compatibility() {
    let dir = tempfile::tempdir().unwrap();
    let every = dir.path().join("every_hook.so");
    build("every_hook.cpp", &every, &[]);
    let bad = dir.path().join("badversion.so");
    build("badversion.c", &bad, &[]);
    let out = Command::new(BIN)
        .args(["plugin", "check"])
        .arg(&every)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!(
            "{}: compatible (MQ_API_VERSION 1); exports: mq_initialize, mq_cleanup,",
            every.display()
        )),
        "{text}"
    );
    for hook in [
        "mq_context_initialize",
        "mq_smtp_in_authenticate",
        "mq_smtp_in_close",
        "mq_smtp_out_sent",
    ] {
        assert!(text.contains(hook), "{hook} in {text}");
    }
    let out = Command::new(BIN)
        .args(["plugin", "check"])
        .arg(&every)
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("built for API version 99"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 2 plugins cannot be used"));
}

#[test]
fn binary_exports_exactly_the_listed_api() {
    require("nm");
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(BIN)
        .output()
        .unwrap();
    let exported: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|s| s.starts_with("MQ_"))
        .map(str::to_string)
        .collect();
    let listed: BTreeSet<String> = std::fs::read_to_string(EXPORTS_LIST)
        .unwrap()
        .split(|c: char| c.is_whitespace() || c == ';' || c == '{' || c == '}')
        .filter(|s| s.starts_with("MQ_"))
        .map(str::to_string)
        .collect();
    assert!(!listed.is_empty());
    assert_eq!(exported, listed);
}

/// Two hook plugins (10-first acts, 20-second reports) in one daemon.
fn hook_daemon(extra: &str) -> (Daemon, tempfile::TempDir, std::path::PathBuf) {
    let plugins = tempfile::tempdir().unwrap();
    let log = plugins.path().join("hooks.log");
    for (name, first) in [("10-first", true), ("20-second", false)] {
        let mut defines = vec![
            format!("-DNAME=\"{name}\""),
            format!("-DLOG_PATH=\"{}\"", log.display()),
        ];
        if first {
            defines.push("-DFIRST".into());
        }
        build("hooks.c", &plugins.path().join(format!("{name}.so")), &defines);
    }
    let d = Daemon::start(&format!("plugin-directory: {}\n{extra}", plugins.path().display()));
    (d, plugins, log)
}

#[test]
fn hand_off_continue_complete_retry_respond_and_watchdog() {
    let (d, _plugins, log) = hook_daemon("plugin-timeout: 1\n");
    let mut c = d.session();
    assert!(c.cmd("MAIL FROM:<s@example.net>").starts_with("250 2.1.0"));
    let cases = [
        ("reject@example.com", "550 5.1.1 no such user"),
        ("plain@example.com", "250 2.1.5 Ok"),
        // Synchronous MQ_continue inside the hook: the next plugin runs.
        ("sync-continue@example.com", "250 2.1.5 second plugin ran"),
        // MQ_complete skips 20-second.
        ("sync-complete@example.com", "250 2.1.5 Ok"),
        // From another thread, 100 ms later.
        ("thread@example.com", "250 2.1.5 answered from another thread"),
        // MQ_retry three times, then the plugin stops retrying.
        ("retry@example.com", "250 2.1.5 retried 3 times"),
        // A hand-off from a plugin that returned false is ignored.
        ("stray@example.com", "250 2.1.5 Ok"),
        // MQ_complete from another thread skips 20-second.
        ("thread-complete@example.com", "250 2.1.5 Ok"),
        // MQ_retry from a timer.
        ("timer-retry@example.com", "250 2.1.5 retried from a timer 2 times"),
        // The second of two hand-offs is ignored.
        ("double@example.com", "250 2.1.5 Ok"),
        ("auth@example.com", "250 2.1.5 authenticated no"),
        // Never handed back: plugin-timeout (1 s) fails the step temporarily.
        ("hang@example.com", "451 4.3.0"),
        ("after-hang@example.com", "250 2.1.5 Ok"),
    ];
    for (rcpt, want) in cases {
        let got = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert!(got.starts_with(want), "{rcpt}: got {got}, want {want}");
    }
    // MQ_fileDescriptor is the client's socket: getsockname gives our SMTP port.
    assert_eq!(
        c.cmd("RCPT TO:<fd@example.com>"),
        format!("250 2.1.5 local port {}", d.smtp)
    );
    // The rejected recipient is not in the message; the others are.
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: hooks\r\n\r\nbody\r\n");
    assert!(c.cmd(".").starts_with("250 2.0.0 queued as"));
    c.cmd("QUIT");
    let rcpts: BTreeSet<String> = d
        .pop_all("outbox")
        .iter()
        .map(|m| m["recipient"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(rcpts.len(), 12, "{rcpts:?}");
    assert!(!rcpts.contains("reject@example.com") && !rcpts.contains("hang@example.com"));
    let daemon_log = d.log();
    assert!(
        daemon_log.contains("hand-off from a plugin that returned false: ignored"),
        "stray hand-off logged"
    );
    assert!(
        daemon_log.contains("10-first.so")
            && daemon_log.contains("mq_smtp_in_rcptto")
            && daemon_log.contains("plugin-timeout"),
        "watchdog names plugin and hook"
    );
    // mq_smtp_in_close ran for both plugins, each seeing its own connection data.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while lines(&log).len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let closes: Vec<Vec<String>> = lines(&log);
    assert_eq!(
        closes,
        [["close", "10-first", "own-data"], ["close", "20-second", "own-data"]]
    );
}

#[test]
fn data_hook_send_and_authenticate() {
    let (d, _plugins, _log) = hook_daemon("");
    let mut c = d.connect();
    c.reply();
    let ehlo = c.cmd_full("EHLO c");
    assert!(
        ehlo.contains("AUTH PLAIN LOGIN"),
        "AUTH offered because a plugin decides credentials: {ehlo}"
    );
    // \0plugin-user\0secret and a wrong password.
    assert!(c.cmd("AUTH PLAIN AHBsdWdpbi11c2VyAHNlY3JldA==").starts_with("235"));
    let mut c2 = d.session();
    assert!(c2.cmd("AUTH PLAIN AHBsdWdpbi11c2VyAHdyb25n").starts_with("535"));
    // MQ_send: raw bytes before the host's reply, in order.
    c.send(b"MAIL FROM:<greet@example.net>\r\n");
    let mut first = String::new();
    std::io::BufRead::read_line(&mut c.reader, &mut first).unwrap();
    assert_eq!(first, "250-plugin was here\r\n");
    assert!(c.reply().starts_with("250 2.1.0"));
    c.cmd("RCPT TO:<r@example.com>");
    // mq_smtp_in_data rejects the whole message.
    c.cmd("DATA");
    c.send(b"X-Reject: yes\r\n\r\nbody\r\n");
    assert_eq!(c.cmd("."), "550 5.7.1 rejected by plugin");
    assert!(d.pop_all("outbox").is_empty(), "nothing queued");
    // Each call was timed, per plugin and hook.
    let (_, metrics) = common::policy::request(&d, "GET", "/metrics", "text/plain", "", None);
    let calls = |plugin: &str, hook: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("sluice_plugin_hook_duration_seconds_count{"))
            .filter(|l| l.contains(&format!("hook=\"{hook}\"")) && l.contains(plugin))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(calls("10-first", "mq_smtp_in_data") >= 1.0, "{metrics}");
    assert!(calls("20-second", "mq_smtp_in_connect") >= 2.0, "{metrics}");
}

#[test]
fn connect_hook_can_refuse_the_connection() {
    let plugins = tempfile::tempdir().unwrap();
    let log = plugins.path().join("hooks.log");
    build(
        "hooks.c",
        &plugins.path().join("block.so"),
        &[
            "-DNAME=\"block\"".into(),
            format!("-DLOG_PATH=\"{}\"", log.display()),
            "-DBLOCK".into(),
        ],
    );
    let d = Daemon::start(&format!("plugin-directory: {}\n", plugins.path().display()));
    let mut c = d.connect();
    assert_eq!(c.reply(), "554 5.7.1 blocked by plugin");
    assert!(c.closed());
}

#[test]
fn event_loop_timers_io_watch_and_timer_hand_off() {
    let plugins = tempfile::tempdir().unwrap();
    let log = plugins.path().join("events.log");
    build(
        "eventloop.c",
        &plugins.path().join("events.so"),
        &[format!("-DLOG_PATH=\"{}\"", log.display())],
    );
    let d = Daemon::start(&format!(
        "plugin-directory: {}\nsmtp-threads: 2\n",
        plugins.path().display()
    ));
    let mut c = d.session();
    c.cmd("MAIL FROM:<s@example.net>");
    assert_eq!(c.cmd("RCPT TO:<timer@example.com>"), "250 2.1.5 answered from a timer");
    // Two workers, each with its own context: every event twice, on the context's thread.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let count = |what: &str| lines(&log).iter().filter(|l| l[0] == what).count();
    while (count("reset-fired") < 2 || count("io-read") < 2) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let all = lines(&log);
    for what in ["timer-fired", "reset-fired", "io-read"] {
        assert_eq!(count(what), 2, "{what} once per worker: {all:?}");
    }
    assert!(
        all.iter().all(|l| l[1] == "same-thread"),
        "callbacks on the context's worker thread: {all:?}"
    );
    // The stopped timer was due long before the reset one fired, and never did.
    assert_eq!(count("stopped-timer-FIRED"), 0, "{all:?}");
}

#[test]
fn message_hook_edits_routes_and_drops_copies() {
    let plugins = tempfile::tempdir().unwrap();
    build("message.c", &plugins.path().join("message.so"), &[]);
    let d = Daemon::start(&format!(
        "plugin-directory: {}\nrabbitmq-local: localq\n",
        plugins.path().display()
    ));
    let mut c = d.session();
    c.cmd("MAIL FROM:<s@example.net>");
    for r in [
        "drop@example.com",
        "keep@example.com",
        "local@example.com",
        "rewrite@example.com",
    ] {
        assert!(c.cmd(&format!("RCPT TO:<{r}>")).starts_with("250"));
    }
    c.cmd("DATA");
    c.send(b"Subject: m\r\n\r\nbody\r\n");
    let reply = c.cmd(".");
    assert!(
        reply.starts_with("250 2.0.0 queued as") && !reply.contains("drop@"),
        "{reply}"
    );
    assert_eq!(reply.matches(" for ").count(), 3, "{reply}");

    let outbox = d.pop_all("outbox");
    let keep = outbox
        .iter()
        .find(|m| m["recipient"] == "keep@example.com")
        .expect("keep");
    assert_eq!(keep["mime"], "X-Stamped: yes\r\nSubject: m\r\n\r\nbody\r\n");
    let rewritten = outbox
        .iter()
        .find(|m| m["recipient"] == "rewritten@example.com")
        .expect("rewritten");
    assert_eq!(rewritten["envelope"], "bounces@example.net");
    assert_eq!(outbox.len(), 2);
    let local = d.pop_all("localq");
    assert_eq!(local.len(), 1);
    assert_eq!(local[0]["recipient"], "local@example.com");

    // Every copy dropped: the plugin's reply answers DATA, nothing is queued.
    c.cmd("MAIL FROM:<>");
    c.cmd("RCPT TO:<drop@example.com>");
    c.cmd("DATA");
    c.send(b"Subject: d\r\n\r\nx\r\n");
    assert_eq!(c.cmd("."), "550 5.7.1 dropped by plugin");
    // The null envelope: MQ_envelope gives an address whose MQ_email is NULL.
    c.cmd("MAIL FROM:<>");
    c.cmd("RCPT TO:<keep@example.com>");
    c.cmd("DATA");
    c.send(b"Subject: n\r\n\r\nx\r\n");
    assert!(c.cmd(".").starts_with("250"));
    let outbox = d.pop_all("outbox");
    assert_eq!(outbox.len(), 1);
    assert!(outbox[0]["mime"]
        .as_str()
        .unwrap()
        .starts_with("X-Stamped: null-envelope\r\n"));
    // Setters given NULL change nothing (not `""` queued behind a 250), and say which plugin did it.
    c.cmd("MAIL FROM:<s@example.net>");
    c.cmd("RCPT TO:<null@example.com>");
    c.cmd("DATA");
    c.send(b"Subject: null\r\n\r\nx\r\n");
    assert!(c.cmd(".").starts_with("250"));
    let outbox = d.pop_all("outbox");
    assert_eq!(outbox.len(), 1);
    assert_eq!(
        (&outbox[0]["recipient"], &outbox[0]["envelope"], &outbox[0]["mime"]),
        (
            &json!("null@example.com"),
            &json!("s@example.net"),
            &json!("Subject: null\r\n\r\nx\r\n")
        )
    );
    let log = d.log();
    for setter in ["MQ_setRecipient", "MQ_setEnvelope", "MQ_setMime"] {
        assert!(
            log.lines()
                .any(|l| l.contains(setter) && l.contains("NULL") && l.contains("message.so")),
            "{setter}: {log}"
        );
    }
    // This plugin never calls MQ_json or MQ_ev: nothing is said about json-c or libev.
    assert!(!log.contains("is not loaded"), "{log}");
}

/// A plugin that sleeps inside a hook stalls its whole worker; the daemon
/// says so, naming the plugin and the hook, while it happens.
#[test]
fn a_blocking_hook_is_reported() {
    let plugins = tempfile::tempdir().unwrap();
    build(
        "blocking.c",
        &plugins.path().join("sleepy.so"),
        &["-DSLEEP_MS=2500".into()],
    );
    let d = Daemon::start(&format!(
        "plugin-directory: {}\nsmtp-threads: 1\n",
        plugins.path().display()
    ));
    let mut c = d.connect();
    assert!(c.reply().starts_with("220"));
    let log = d.log();
    let report = log
        .lines()
        .find(|l| l.contains("blocking its worker thread"))
        .unwrap_or_else(|| panic!("no report while blocked: {log}"));
    assert!(
        report.contains("sleepy.so") && report.contains("mq_smtp_in_connect"),
        "{report}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("blocked its worker thread") && l.contains("took_ms")),
        "{log}"
    );
}

#[test]
fn mq_json_through_json_c() {
    assert!(
        Path::new("/usr/include/json-c/json.h").exists(),
        "libjson-c-dev is missing; the README's test command installs it"
    );
    let plugins = tempfile::tempdir().unwrap();
    build_with("jsonc.c", &plugins.path().join("jsonc.so"), &[], &["-ljson-c"]);
    let d = Daemon::start(&format!("plugin-directory: {}\n", plugins.path().display()));
    let mut c = d.session();
    assert!(c
        .mail("s@example.net", &["j@example.com"], "Subject: j\r\n\r\nx\r\n")
        .starts_with("250"));
    let m = &d.pop_all("outbox")[0];
    assert_eq!(m["tag"], "from-json-c", "a json-c edit is in the queued JSON: {m}");
    assert_eq!(m["seen-recipient"], "j@example.com", "json-c saw the message: {m}");
    assert_eq!(m["envelope"], "setter@example.net", "a setter after MQ_json wins: {m}");
    assert_eq!(m["mime"], "Subject: j\r\n\r\nx\r\n");
}

#[test]
fn mq_json_without_json_c_is_null_and_logged_once() {
    let plugins = tempfile::tempdir().unwrap();
    build("nojsonc.c", &plugins.path().join("nojsonc.so"), &[]);
    let d = Daemon::start(&format!("plugin-directory: {}\n", plugins.path().display()));
    let mut c = d.session();
    assert!(c
        .mail(
            "s@example.net",
            &["a@example.com", "b@example.com"],
            "Subject: j\r\n\r\nx\r\n"
        )
        .starts_with("250"));
    let msgs = d.pop_all("outbox");
    assert!(msgs.iter().all(|m| m["mime"] == "X-Json: null\r\n\r\n"), "{msgs:?}");
    assert_eq!(d.log().matches("json-c is not loaded").count(), 1, "logged once");
}

#[test]
fn mq_ev_drives_libev_watchers_on_the_worker() {
    assert!(
        Path::new("/usr/include/ev.h").exists(),
        "libev-dev is missing; the README's test command installs it"
    );
    let plugins = tempfile::tempdir().unwrap();
    let log = plugins.path().join("libev.log");
    build_with(
        "libev.c",
        &plugins.path().join("libev.so"),
        &[format!("-DLOG_PATH=\"{}\"", log.display())],
        &["-lev"],
    );
    let mut d = Daemon::start(&format!(
        "plugin-directory: {}\nsmtp-threads: 2\n",
        plugins.path().display()
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let count = |what: &str| lines(&log).iter().filter(|l| l[0] == what).count();
    while count("libev-io") < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let all = lines(&log);
    assert_eq!(count("libev-timer"), 2, "one ev_timer per worker fired: {all:?}");
    assert_eq!(count("libev-io"), 2, "one ev_io per worker fired: {all:?}");
    assert!(
        all.iter().all(|l| l[1] == "same-thread"),
        "libev callbacks on the worker thread: {all:?}"
    );
    assert_eq!(d.terminate(), Some(0), "clean shutdown with libev loops");
}

#[test]
fn a_plugin_holding_control_blocks_only_its_connection() {
    // One worker: the held connection and the free one share it.
    let (d, _plugins, _log) = hook_daemon("smtp-threads: 1\nplugin-timeout: 30\n");
    let mut held = d.connect();
    held.reply();
    held.cmd("EHLO held");
    held.cmd("MAIL FROM:<s@example.net>");
    held.send(b"RCPT TO:<hang@example.com>\r\n");
    std::thread::sleep(std::time::Duration::from_millis(200));
    // Meanwhile another client on the same worker gets through a whole transaction.
    let mut free = d.connect();
    assert!(free.reply().starts_with("220"));
    free.cmd("EHLO free");
    assert!(free
        .mail("s@example.net", &["other@example.com"], "Subject: f\r\n\r\nx\r\n")
        .starts_with("250"));
    assert_eq!(d.pop_all("outbox").len(), 1);
}

#[test]
fn secure_hook_after_starttls() {
    let (d, _plugins, log) = hook_daemon("");
    let script = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.starttls(context=ctx)
    s.ehlo()
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(d.smtp.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while lines(&log).iter().filter(|l| l[0] == "close").count() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let secure: Vec<Vec<String>> = lines(&log).into_iter().filter(|l| l[0] == "secure").collect();
    assert_eq!(
        secure,
        [["secure", "10-first", "yes"], ["secure", "20-second", "yes"]],
        "MQ_secure is true in mq_smtp_in_secure"
    );
}

#[test]
fn outbound_hooks_build_the_mime_and_the_watchdog_retries() {
    let plugins = tempfile::tempdir().unwrap();
    let log = plugins.path().join("outbound.log");
    build_with(
        "outbound.c",
        &plugins.path().join("outbound.so"),
        &[format!("-DLOG_PATH=\"{}\"", log.display())],
        &["-ljson-c"],
    );
    let dump = tempfile::tempdir().unwrap();
    let sink = common::peers::smtp_sink_on("127.0.0.1", &[], Some(dump.path()));
    let d = Daemon::start(&format!(
        "delivery-enabled: true\nsmtp-sink-ip: 127.0.0.1\nsmtp-sink-port: {}\nplugin-directory: {}\nplugin-timeout: 1\n",
        sink.port,
        plugins.path().display()
    ));
    let messages = [
        serde_json::json!({"envelope": "s@example.net", "recipient": "k1@a.test", "key": "k1"}),
        serde_json::json!({"envelope": "s@example.net", "recipient": "inline@a.test", "mime": "Subject: inline\r\n\r\nas stored\r\n"}),
        serde_json::json!({"envelope": "s@example.net", "recipient": "hang@b.test", "key": "hang"}),
    ];
    let lines: String = messages.iter().map(|m| format!("{m}\n")).collect();
    assert!(d.cli(&["inject"], lines.as_bytes()).status.success());
    let success = d.collect("success", 2, std::time::Duration::from_secs(30));
    assert_eq!(success.len(), 2, "{}", d.log());
    for s in &success {
        assert!(s.get("mime").is_none(), "the stored JSON keeps no MIME: {s}");
    }
    let retry = d.collect("retry", 1, std::time::Duration::from_secs(30));
    assert_eq!(retry.len(), 1, "{}", d.log());
    let e = retry[0]["results"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (e["state"].as_str(), e["result"].as_str()),
        (Some("data"), Some("timeout")),
        "{e}"
    );
    assert!(
        e["description"].as_str().unwrap().contains("outbound"),
        "names the plugin: {e}"
    );
    let dumped: Vec<String> = std::fs::read_dir(dump.path())
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap_or_default())
        .collect();
    assert_eq!(dumped.len(), 2, "the held message was never completed");
    assert!(
        dumped
            .iter()
            .any(|m| m.contains("Subject: built from key k1") && m.contains("body for k1")),
        "{dumped:?}"
    );
    assert!(
        dumped
            .iter()
            .any(|m| m.contains("Subject: inline") && m.contains("as stored")),
        "{dumped:?}"
    );
    let log = std::fs::read_to_string(&log).unwrap();
    for want in [
        "out_data k1@a.test fd=1 key=k1 mime=NULL",
        "out_data inline@a.test fd=1 key=- mime=inline",
        "out_data hang@b.test fd=1 key=hang mime=NULL",
        "out_sent k1@a.test",
        "out_sent inline@a.test",
    ] {
        assert!(log.contains(want), "{want} missing in\n{log}");
    }
    assert!(!log.contains("out_sent hang@b.test"));
    let pos = |s: &str| log.find(s).unwrap();
    assert!(pos("out_data k1@a.test") < pos("out_sent k1@a.test"));
}
