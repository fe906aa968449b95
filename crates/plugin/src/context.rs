//! `MQ_Context`: one per plugin per worker thread, so a context names both
//! the worker (callbacks run there, never concurrently) and the plugin (each
//! plugin sees only its own context data and log name).

use crate::loader::Plugins;
use std::ffi::c_void;
use std::sync::Arc;

/// What an `MQ_Context*` points to.
pub struct MqContext {
    /// The plugin's file name, for MQ_log.
    pub(crate) plugin: String,
    /// The worker's index, for logs.
    pub(crate) worker: usize,
    /// MQ_setContextData / MQ_contextData.
    pub(crate) data: *mut c_void,
    /// Timers and watchers go to this worker's loop.
    pub(crate) commands: crate::event_loop::Commands,
}

/// The contexts of one worker thread. Not `Send`: created, used and cleaned
/// up on its worker thread.
pub struct WorkerContexts {
    plugins: Arc<Plugins>,
    /// One per plugin, in plugin order; a boxed slice never grows, so the
    /// pointers handed to plugins never move. UnsafeCell: plugins write
    /// through the pointers while the host holds `&self`.
    contexts: Box<[std::cell::UnsafeCell<MqContext>]>,
    /// The worker's plugin event loop, until the worker takes it.
    event_loop: std::cell::RefCell<Option<tokio::sync::mpsc::UnboundedReceiver<crate::event_loop::Command>>>,
}

impl WorkerContexts {
    /// Creates this worker's contexts and runs `mq_context_initialize` of every
    /// plugin, in order; call on the worker thread before it serves traffic.
    pub fn initialize(plugins: Arc<Plugins>, worker: usize) -> WorkerContexts {
        let (commands, receiver) = crate::event_loop::channel();
        let contexts: Box<[std::cell::UnsafeCell<MqContext>]> = plugins
            .list
            .iter()
            .map(|p| {
                std::cell::UnsafeCell::new(MqContext {
                    plugin: p.name.clone(),
                    worker,
                    data: std::ptr::null_mut(),
                    commands: commands.clone(),
                })
            })
            .collect();
        let this = WorkerContexts {
            plugins,
            contexts,
            event_loop: std::cell::RefCell::new(Some(receiver)),
        };
        for i in 0..this.contexts.len() {
            if let Some(f) = this.plugins.list[i].context_initialize {
                let ctx = this.context(i);
                // SAFETY: `void mq_context_initialize(MQ_Context*)`; the context
                // is boxed and outlives the call (it lives until cleanup).
                unsafe { f(ctx) };
            }
        }
        this
    }

    /// The plugins' event loop of this worker, to run as a local task of its
    /// runtime (once; later calls give None).
    pub fn event_loop(&self) -> Option<impl std::future::Future<Output = ()>> {
        self.event_loop.borrow_mut().take().map(crate::event_loop::run)
    }

    /// The context of plugin `index` on this worker.
    pub fn context(&self, index: usize) -> *mut MqContext {
        self.contexts[index].get()
    }

    /// Runs `mq_context_cleanup` of every plugin, in order (on the worker thread).
    pub fn cleanup(mut self) {
        self.run_cleanup();
    }

    fn run_cleanup(&mut self) {
        for (i, ctx) in self.contexts.iter().enumerate() {
            if let Some(f) = self.plugins.list[i].context_cleanup {
                let ctx = ctx.get();
                // SAFETY: `void mq_context_cleanup(MQ_Context*)`; the context is
                // still alive and is not used by the plugin after this call.
                unsafe { f(ctx) };
            }
        }
        self.contexts = Box::new([]);
    }
}

impl Drop for WorkerContexts {
    fn drop(&mut self) {
        // A worker that ends without cleanup (a panic) still gives plugins their call.
        if !self.contexts.is_empty() {
            self.run_cleanup();
        }
    }
}
