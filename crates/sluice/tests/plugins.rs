//! Real C and C++ plugins, compiled here against include/mailerq.h and loaded
//! by the real binary.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const INCLUDE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin/include");
const SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/plugins");
const EXPORTS_LIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin/exports.list");

/// Builds a plugin the way the docs tell authors to, warnings as errors.
fn build(source: &str, out: &Path, defines: &[String]) {
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
