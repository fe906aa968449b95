//! The `MQ_*` functions the host exports to plugins. Each is listed in
//! `exports.list` (the linker's dynamic list for the `sluice` binary) and in
//! [`EXPORTS`], which the binary references so the linker keeps them.
#![allow(non_snake_case)]

use crate::connection::{MqAddress, MqConnection, Outcome};
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

/// A hand-off from any thread; stray ones are ignored with a warning.
///
/// # Safety
/// `conn` is an `MQ_Connection*` the host passed to this plugin, or NULL.
unsafe fn hand_off(conn: *mut MqConnection, outcome: Outcome, name: &str) {
    // SAFETY: connection handles live until mq_smtp_in_close returned (or
    // forever, after a watchdog timeout); the fields read here are never
    // written after creation, and `shared` is thread-safe.
    let Some(c) = (unsafe { conn.as_ref() }) else { return };
    if !c.shared.hand_off(c.plugin, outcome) {
        tracing::warn!(plugin = %c.plugin_name, "{name} while the plugin does not hold control: ignored");
    }
}

/// `void MQ_continue(MQ_Connection*)`: go on with the next plugin.
///
/// # Safety
/// `conn` is an `MQ_Connection*` the host passed to this plugin, or NULL.
#[no_mangle]
pub unsafe extern "C" fn MQ_continue(conn: *mut MqConnection) {
    // SAFETY: forwarded contract.
    unsafe { hand_off(conn, Outcome::Continue, "MQ_continue") }
}

/// `void MQ_complete(MQ_Connection*)`: skip the remaining plugins.
///
/// # Safety
/// `conn` is an `MQ_Connection*` the host passed to this plugin, or NULL.
#[no_mangle]
pub unsafe extern "C" fn MQ_complete(conn: *mut MqConnection) {
    // SAFETY: forwarded contract.
    unsafe { hand_off(conn, Outcome::Complete, "MQ_complete") }
}

/// `void MQ_retry(MQ_Connection*)`: restart the hook from the first plugin.
///
/// # Safety
/// `conn` is an `MQ_Connection*` the host passed to this plugin, or NULL.
#[no_mangle]
pub unsafe extern "C" fn MQ_retry(conn: *mut MqConnection) {
    // SAFETY: forwarded contract.
    unsafe { hand_off(conn, Outcome::Retry, "MQ_retry") }
}

/// `void MQ_respond(MQ_Connection*, int code, const char *text)`: the reply for this step.
///
/// # Safety
/// `conn` as in [`MQ_continue`]; `text` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn MQ_respond(conn: *mut MqConnection, code: c_int, text: *const c_char) {
    // SAFETY: as in hand_off.
    let Some(c) = (unsafe { conn.as_ref() }) else { return };
    if !(200..600).contains(&code) {
        tracing::warn!(plugin = %c.plugin_name, code, "MQ_respond with a code outside 200..599: ignored");
        return;
    }
    // SAFETY: NUL-terminated per the header, read only during this call.
    let text = if text.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
    };
    // Replies are single lines; a plugin's CR/LF must not inject protocol.
    let text = text.replace(['\r', '\n'], " ");
    c.shared.respond(code as u16, text);
}

/// `void *MQ_connectionData(MQ_Connection*)`: this plugin's pointer for this connection.
///
/// # Safety
/// `conn` as in [`MQ_continue`]; called on the connection's worker thread.
#[no_mangle]
pub unsafe extern "C" fn MQ_connectionData(conn: *mut MqConnection) -> *mut c_void {
    // SAFETY: as in hand_off; `data` is only touched on the worker thread.
    unsafe { conn.as_ref() }.map_or(std::ptr::null_mut(), |c| c.data)
}

/// `void MQ_setConnectionData(MQ_Connection*, void*)`.
///
/// # Safety
/// `conn` as in [`MQ_continue`]; called on the connection's worker thread.
#[no_mangle]
pub unsafe extern "C" fn MQ_setConnectionData(conn: *mut MqConnection, data: *mut c_void) {
    // SAFETY: as in MQ_connectionData; the handle is in an UnsafeCell.
    if let Some(c) = unsafe { conn.as_mut() } {
        c.data = data;
    }
}

/// `bool MQ_secure(MQ_Connection*)`.
///
/// # Safety
/// `conn` as in [`MQ_continue`].
#[no_mangle]
pub unsafe extern "C" fn MQ_secure(conn: *mut MqConnection) -> bool {
    // SAFETY: as in hand_off.
    unsafe { conn.as_ref() }.is_some_and(|c| c.shared.secure())
}

/// `bool MQ_authenticated(MQ_Connection*)`.
///
/// # Safety
/// `conn` as in [`MQ_continue`].
#[no_mangle]
pub unsafe extern "C" fn MQ_authenticated(conn: *mut MqConnection) -> bool {
    // SAFETY: as in hand_off.
    unsafe { conn.as_ref() }.is_some_and(|c| c.shared.authenticated())
}

/// `void MQ_setAuthenticated(MQ_Connection*, bool)`: in mq_smtp_in_authenticate,
/// true accepts the login, false rejects it even if another plugin accepted.
///
/// # Safety
/// `conn` as in [`MQ_continue`].
#[no_mangle]
pub unsafe extern "C" fn MQ_setAuthenticated(conn: *mut MqConnection, ok: bool) {
    // SAFETY: as in hand_off.
    if let Some(c) = unsafe { conn.as_ref() } {
        c.shared.set_auth_verdict(ok);
    }
}

/// `int MQ_fileDescriptor(MQ_Connection*)`: the socket, for getpeername/getsockname.
///
/// # Safety
/// `conn` as in [`MQ_continue`].
#[no_mangle]
pub unsafe extern "C" fn MQ_fileDescriptor(conn: *mut MqConnection) -> c_int {
    // SAFETY: as in hand_off.
    unsafe { conn.as_ref() }.map_or(-1, |c| c.shared.fd())
}

/// `size_t MQ_send(MQ_Connection*, const void*, size_t)`: raw bytes to the
/// client, written in order with the host's own replies.
///
/// # Safety
/// `conn` as in [`MQ_continue`]; `buf` points to `size` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn MQ_send(conn: *mut MqConnection, buf: *const c_void, size: usize) -> usize {
    // SAFETY: as in hand_off.
    let Some(c) = (unsafe { conn.as_ref() }) else { return 0 };
    if buf.is_null() || size == 0 {
        return 0;
    }
    // SAFETY: the caller passes `size` readable bytes at `buf`.
    let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), size) };
    c.shared.send(bytes);
    size
}

/// `const char *MQ_email(MQ_Address*)`: the address; NULL for `<>`.
///
/// # Safety
/// `addr` is an `MQ_Address*` the host passed to this plugin, or NULL.
#[no_mangle]
pub unsafe extern "C" fn MQ_email(addr: *mut MqAddress) -> *const c_char {
    // SAFETY: addresses live until the hook's hand-off ended.
    unsafe { addr.as_ref() }
        .and_then(|a| a.email.as_ref())
        .map_or(std::ptr::null(), |e| e.as_ptr())
}

/// Every exported function, referenced from the binary so the linker keeps
/// them; `exports.list` must name the same set (a test checks `nm -D`).
pub struct Exports {
    pub context_data: unsafe extern "C" fn(*mut MqContext) -> *mut c_void,
    pub set_context_data: unsafe extern "C" fn(*mut MqContext, *mut c_void),
    pub context_data_alias: unsafe extern "C" fn(*mut MqContext) -> *mut c_void,
    pub log: unsafe extern "C" fn(*mut MqContext, c_int, *const c_char),
    pub hand_offs: [unsafe extern "C" fn(*mut MqConnection); 3],
    pub respond: unsafe extern "C" fn(*mut MqConnection, c_int, *const c_char),
    pub connection_data: unsafe extern "C" fn(*mut MqConnection) -> *mut c_void,
    pub set_connection_data: unsafe extern "C" fn(*mut MqConnection, *mut c_void),
    pub flags: [unsafe extern "C" fn(*mut MqConnection) -> bool; 2],
    pub set_authenticated: unsafe extern "C" fn(*mut MqConnection, bool),
    pub file_descriptor: unsafe extern "C" fn(*mut MqConnection) -> c_int,
    pub send: unsafe extern "C" fn(*mut MqConnection, *const c_void, usize) -> usize,
    pub email: unsafe extern "C" fn(*mut MqAddress) -> *const c_char,
}

/// See [`Exports`].
#[used]
pub static EXPORTS: Exports = Exports {
    context_data: MQ_contextData,
    set_context_data: MQ_setContextData,
    context_data_alias: MQ_ContextData,
    log: MQ_log,
    hand_offs: [MQ_continue, MQ_complete, MQ_retry],
    respond: MQ_respond,
    connection_data: MQ_connectionData,
    set_connection_data: MQ_setConnectionData,
    flags: [MQ_secure, MQ_authenticated],
    set_authenticated: MQ_setAuthenticated,
    file_descriptor: MQ_fileDescriptor,
    send: MQ_send,
    email: MQ_email,
};
