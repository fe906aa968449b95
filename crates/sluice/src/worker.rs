//! The worker threads. Each is a single-threaded tokio runtime with a
//! LocalSet and its own plugin contexts (`MQ_Context`, one per plugin), as in
//! MailerQ: every connection a worker serves — inbound sessions and outbound
//! delivery connections alike — lives on it from start to end, so plugin
//! callbacks always run on the thread that owns their connection.
//!
//! Reception and delivery each hand the pool their [`Task`] per worker
//! (`receive::accepting`, `deliver::destination::run`); the pool knows
//! neither.

use anyhow::{Context, Result};
use sluice_plugin::{Plugins, WorkerContexts};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

/// A worker's share of some part of the daemon: started on the worker's
/// thread with its plugin contexts, and awaited until it ends.
pub type Task = Box<dyn FnOnce(Rc<WorkerContexts>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// The running workers.
pub struct Workers {
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` workers, worker `i` running `tasks(i)`; returns once
    /// every one ran `mq_context_initialize` of every plugin, so no traffic
    /// is served before that.
    pub fn start(count: usize, plugins: Arc<Plugins>, mut tasks: impl FnMut(usize) -> Vec<Task>) -> Result<Workers> {
        let mut threads = Vec::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        for i in 0..count {
            let mine = tasks(i);
            let (plugins, ready) = (plugins.clone(), ready_tx.clone());
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let t = std::thread::Builder::new()
                .name(format!("smtp-worker-{i}"))
                .spawn(move || {
                    let contexts = Rc::new(WorkerContexts::initialize(plugins, i));
                    let _ = ready.send(());
                    // A LocalSet: sessions, connections and plugin callbacks stay on this thread.
                    tokio::task::LocalSet::new().block_on(&rt, run(mine, contexts.clone()));
                    match Rc::try_unwrap(contexts) {
                        Ok(c) => c.cleanup(),
                        Err(_) => tracing::error!("worker contexts still in use at shutdown; cleanup skipped"),
                    }
                })?;
            threads.push(t);
        }
        drop(ready_tx);
        for _ in 0..count {
            ready_rx.recv().context("a worker thread died while starting")?;
        }
        Ok(Workers { threads })
    }

    /// Waits for every worker: each ends when all its tasks ended (they stop
    /// on shutdown once their open work is done).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// One worker: the plugins' event loop, then every task, until all ended.
async fn run(tasks: Vec<Task>, contexts: Rc<WorkerContexts>) {
    if let Some(event_loop) = contexts.event_loop() {
        tokio::task::spawn_local(event_loop);
    }
    let running: Vec<_> = tasks
        .into_iter()
        .map(|task| tokio::task::spawn_local(task(contexts.clone())))
        .collect();
    for t in running {
        let _ = t.await;
    }
}
