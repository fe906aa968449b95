//! The cost of dispatching one hook to one no-op plugin (target < 100 ns), and
//! to ten. Builds bench/plugins/noop.c with cc first.

use criterion::{criterion_group, criterion_main, Criterion};
use sluice_plugin::{hooks, Hook, PluginConnection, Plugins, WorkerContexts};
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

fn plugins(copies: usize) -> (tempfile::TempDir, Arc<Plugins>) {
    let dir = tempfile::tempdir().unwrap();
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/plugins/noop.c");
    let include = concat!(env!("CARGO_MANIFEST_DIR"), "/include");
    for i in 0..copies {
        let out = dir.path().join(format!("{i:02}-noop.so"));
        let ok = std::process::Command::new("cc")
            .args(["-O2", "-shared", "-fPIC", "-fvisibility=hidden"])
            .arg(format!("-I{include}"))
            .arg("-o")
            .arg(&out)
            .arg(source)
            .status()
            .unwrap()
            .success();
        assert!(ok, "building the no-op plugin failed");
    }
    let p = Arc::new(Plugins::load_directory(dir.path()).unwrap());
    (dir, p)
}

/// Runs a hook to completion; with plugins that return false it finishes on the first poll.
fn dispatch(plugins: &Plugins, contexts: &WorkerContexts, conn: &PluginConnection, hook: Hook<'_>) {
    let mut fut = std::pin::pin!(hooks::run(plugins, contexts, conn, hook, Duration::from_secs(60)));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
}

fn bench(c: &mut Criterion) {
    // Timers need a runtime context even when none fires.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    for copies in [1, 10] {
        let (_dir, plugins) = plugins(copies);
        let contexts = WorkerContexts::initialize(plugins.clone(), 0);
        let conn = PluginConnection::new(&plugins, -1, false);
        c.bench_function(&format!("connect hook, {copies} no-op plugin(s)"), |b| {
            b.iter(|| dispatch(&plugins, &contexts, &conn, Hook::Connect))
        });
        c.bench_function(&format!("rcptto hook (address), {copies} no-op plugin(s)"), |b| {
            b.iter(|| dispatch(&plugins, &contexts, &conn, Hook::RcptTo("someone@example.com")))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
