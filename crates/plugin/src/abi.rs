//! The `MQ_*` functions the host exports to plugins. Each is listed in
//! `exports.list` (the linker's dynamic list for the `sluice` binary) and in
//! [`EXPORTS`], which the binary references so the linker keeps them.
#![allow(non_snake_case)]

use crate::context::MqContext;
use std::ffi::{c_char, c_int, c_void, CStr};

/// `void *MQ_contextData(MQ_Context*)`: this plugin's pointer for this context.
///
/// # Safety
/// `ctx` is an `MQ_Context*` the host passed to this plugin, or NULL.
#[no_mangle]
pub unsafe extern "C" fn MQ_contextData(ctx: *mut MqContext) -> *mut c_void {
    // SAFETY: contexts handed to plugins are boxed and live until
    // mq_context_cleanup returned; NULL is answered with NULL.
    unsafe { ctx.as_ref() }.map_or(std::ptr::null_mut(), |c| c.data)
}

/// `void MQ_setContextData(MQ_Context*, void*)`.
///
/// # Safety
/// `ctx` is an `MQ_Context*` the host passed to this plugin, or NULL.
#[no_mangle]
pub unsafe extern "C" fn MQ_setContextData(ctx: *mut MqContext, data: *mut c_void) {
    // SAFETY: as in MQ_contextData; a context is only touched on its worker
    // thread, so there is no concurrent access.
    if let Some(c) = unsafe { ctx.as_mut() } {
        c.data = data;
    }
}

/// `MQ_ContextData`: the spelling some MailerQ documentation uses.
///
/// # Safety
/// As [`MQ_contextData`].
#[no_mangle]
pub unsafe extern "C" fn MQ_ContextData(ctx: *mut MqContext) -> *mut c_void {
    // SAFETY: same contract as MQ_contextData.
    unsafe { MQ_contextData(ctx) }
}

/// `void MQ_log(MQ_Context*, int level, const char *text)`: the host's log,
/// with the plugin's name and worker attached.
///
/// # Safety
/// `ctx` as in [`MQ_contextData`]; `text` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn MQ_log(ctx: *mut MqContext, level: c_int, text: *const c_char) {
    if text.is_null() {
        return;
    }
    // SAFETY: the caller passes a NUL-terminated string (mailerq.h contract),
    // read only during this call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    // SAFETY: as in MQ_contextData.
    let (plugin, worker) = unsafe { ctx.as_ref() }.map_or(("?", 0), |c| (c.plugin.as_str(), c.worker));
    match level {
        0 => tracing::error!(plugin, worker, "{text}"),
        1 => tracing::warn!(plugin, worker, "{text}"),
        2 => tracing::info!(plugin, worker, "{text}"),
        _ => tracing::debug!(plugin, worker, "{text}"),
    }
}

/// Every exported function, referenced from the binary so the linker keeps
/// them; `exports.list` must name the same set (a test checks `nm -D`).
pub struct Exports {
    pub context_data: unsafe extern "C" fn(*mut MqContext) -> *mut c_void,
    pub set_context_data: unsafe extern "C" fn(*mut MqContext, *mut c_void),
    pub context_data_alias: unsafe extern "C" fn(*mut MqContext) -> *mut c_void,
    pub log: unsafe extern "C" fn(*mut MqContext, c_int, *const c_char),
}

/// See [`Exports`].
#[used]
pub static EXPORTS: Exports = Exports {
    context_data: MQ_contextData,
    set_context_data: MQ_setContextData,
    context_data_alias: MQ_ContextData,
    log: MQ_log,
};
