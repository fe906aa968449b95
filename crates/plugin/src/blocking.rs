//! Noticing a plugin that blocks its worker thread. A hook runs on the
//! worker that owns the connection, together with every other connection
//! of that worker; a plugin that sleeps or waits on I/O inside the call
//! stalls them all. Each call is timed: a watchdog thread reports one still
//! running after [`BLOCKED`] (naming plugin and hook), and the call's total
//! time is logged when it returns.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A hook call longer than this blocked its worker.
pub const BLOCKED: Duration = Duration::from_secs(1);

/// One worker thread's current call.
struct Slot {
    /// Milliseconds since [`epoch`] when the call started; 0 = no call.
    started: AtomicU64,
    reported: AtomicBool,
    /// Plugin and hook; the name is shared, so marking a call allocates nothing.
    what: Mutex<(Arc<str>, &'static str)>,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

fn slots() -> &'static Mutex<Vec<Arc<Slot>>> {
    static SLOTS: OnceLock<Mutex<Vec<Arc<Slot>>>> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let _ = std::thread::Builder::new().name("plugin-watchdog".into()).spawn(watch);
        Mutex::new(Vec::new())
    })
}

thread_local! {
    static SLOT: Arc<Slot> = {
        let slot = Arc::new(Slot {
            started: AtomicU64::new(0),
            reported: AtomicBool::new(false),
            what: Mutex::new((Arc::from(""), "")),
        });
        crate::lock(slots()).push(slot.clone());
        slot
    };
}

/// Reports calls that have run past [`BLOCKED`], once each.
fn watch() {
    loop {
        std::thread::sleep(BLOCKED / 4);
        let now = now_ms();
        let all: Vec<Arc<Slot>> = crate::lock(slots()).clone();
        for slot in all {
            let started = slot.started.load(Ordering::Acquire);
            // A call may start between reading `now` and `started`: saturate.
            let running = now.saturating_sub(started);
            if started == 0 || running < BLOCKED.as_millis() as u64 || slot.reported.swap(true, Ordering::AcqRel) {
                continue;
            }
            let (plugin, hook) = crate::lock(&slot.what).clone();
            tracing::error!(
                plugin = %plugin,
                hook,
                running_ms = running,
                "a plugin is blocking its worker thread: every connection of this worker waits (hand control back and use MQ_ev or timers instead)"
            );
        }
    }
}

/// A hook call in progress on this thread; ends when dropped.
pub(crate) struct Call {
    slot: Arc<Slot>,
    started: Instant,
}

/// Marks the start of `plugin`'s `hook` on this thread.
pub(crate) fn enter(plugin: &Arc<str>, hook: &'static str) -> Call {
    let slot = SLOT.with(Arc::clone);
    *crate::lock(&slot.what) = (plugin.clone(), hook);
    slot.reported.store(false, Ordering::Release);
    slot.started.store(now_ms(), Ordering::Release);
    Call {
        slot,
        started: Instant::now(),
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.slot.started.store(0, Ordering::Release);
        let took = self.started.elapsed();
        if took >= BLOCKED {
            let (plugin, hook) = crate::lock(&self.slot.what).clone();
            tracing::warn!(plugin = %plugin, hook, took_ms = took.as_millis() as u64, "a plugin blocked its worker thread");
        }
    }
}
