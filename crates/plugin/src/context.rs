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
    /// This worker's libev loop, made by the first MQ_ev (shared by its plugins).
    pub(crate) libev: std::sync::Arc<std::sync::atomic::AtomicPtr<c_void>>,
}

impl MqContext {
    /// MQ_ev: the worker's libev loop, made (and driven) on first use; NULL without libev.
    pub(crate) fn libev_loop(&self) -> *mut c_void {
        use std::sync::atomic::Ordering;
        let Some(ev) = crate::libev::libev() else {
            crate::libev::report_missing(&self.plugin);
            return std::ptr::null_mut();
        };
        let current = self.libev.load(Ordering::Acquire);
        if !current.is_null() {
            return current;
        }
        // SAFETY: ev_loop_new(0) makes a new loop with the default backend.
        let made = unsafe { (ev.loop_new)(0) };
        if made.is_null() {
            return made;
        }
        match self
            .libev
            .compare_exchange(std::ptr::null_mut(), made, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                let _ = self
                    .commands
                    .send(crate::event_loop::Command::DriveLibev(made as usize));
                made
            }
            Err(other) => {
                // Another thread made one first: keep that one.
                // SAFETY: `made` was never handed out.
                unsafe { (ev.destroy)(made) };
                other
            }
        }
    }
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
        let libev = std::sync::Arc::new(std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()));
        let contexts: Box<[std::cell::UnsafeCell<MqContext>]> = plugins
            .list
            .iter()
            .map(|p| {
                std::cell::UnsafeCell::new(MqContext {
                    plugin: p.name.clone(),
                    worker,
                    data: std::ptr::null_mut(),
                    commands: commands.clone(),
                    libev: libev.clone(),
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
        // After every mq_context_cleanup (plugins stop their libev watchers there).
        if let Some(first) = self.contexts.first() {
            // SAFETY: plugins are done with their contexts; read the shared pointer.
            let ev_loop = unsafe { &*first.get() }
                .libev
                .swap(std::ptr::null_mut(), std::sync::atomic::Ordering::AcqRel);
            if let Some(ev) = (!ev_loop.is_null()).then(crate::libev::libev).flatten() {
                // SAFETY: made by ev_loop_new on this worker; its driver task is gone.
                unsafe { (ev.destroy)(ev_loop) };
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
