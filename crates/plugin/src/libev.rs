//! `MQ_ev`: a libev loop per worker, for plugins that link libev. Like json-c,
//! libev is found in the process at run time (`dlopen(RTLD_NOLOAD)`). libev
//! does not expose its backend descriptor, so the worker drives the loop with
//! a non-blocking `ev_run` every [`TICK`]: watchers fire on the worker thread
//! within a tick of becoming due.

use libloading::os::unix::Library;
use std::ffi::{c_int, c_uint, c_void};
use std::sync::OnceLock;
use std::time::Duration;

/// How often a worker runs its libev loop.
pub const TICK: Duration = Duration::from_millis(5);

const EVRUN_NOWAIT: c_int = 1;

pub(crate) struct LibEv {
    pub loop_new: unsafe extern "C" fn(c_uint) -> *mut c_void,
    pub run: unsafe extern "C" fn(*mut c_void, c_int) -> c_int,
    pub destroy: unsafe extern "C" fn(*mut c_void),
    _library: Library,
}

// SAFETY: plain C function pointers; each loop is only used on its worker thread.
unsafe impl Sync for LibEv {}
unsafe impl Send for LibEv {}

/// Says once, when a plugin first calls MQ_ev without libev in the process,
/// which plugin it was.
pub(crate) fn report_missing(plugin: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::error!(
            plugin,
            "MQ_ev: libev is not loaded (link the plugin with -lev); MQ_ev returns NULL"
        );
    });
}

/// libev, if some plugin brought it into the process.
pub(crate) fn libev() -> Option<&'static LibEv> {
    static LIBEV: OnceLock<Option<LibEv>> = OnceLock::new();
    LIBEV
        .get_or_init(|| {
            crate::loader::already_loaded(&["libev.so.4", "libev.so"]).and_then(|lib| {
                // SAFETY: libev 4's public signatures (ev.h) with EV_MULTIPLICITY.
                unsafe {
                    Some(LibEv {
                        loop_new: *lib.get(b"ev_loop_new\0").ok()?,
                        run: *lib.get(b"ev_run\0").ok()?,
                        destroy: *lib.get(b"ev_loop_destroy\0").ok()?,
                        _library: lib,
                    })
                }
            })
        })
        .as_ref()
}

/// Runs a worker's libev loop until the worker stops.
pub(crate) async fn drive(ev_loop: usize) {
    let Some(ev) = libev() else { return };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // SAFETY: the loop was made by ev_loop_new on this worker and is only
        // destroyed after this task is gone (worker cleanup).
        unsafe { (ev.run)(ev_loop as *mut c_void, EVRUN_NOWAIT) };
    }
}
