//! The `MQ_*` functions the host exports to plugins. Each is listed in
//! `exports.list` (the linker's dynamic list for the `sluice` binary) and in
//! [`EXPORTS`], which the binary references so the linker keeps them.
#![allow(non_snake_case)]

use crate::connection::{MqAddress, MqConnection, NextStep};
use crate::context::MqContext;
use crate::event_loop::{Command, Control, IoFn, MqIoWatcher, MqTimer, TimerFn};
use crate::message::MqMessage;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::time::Duration;

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
unsafe fn hand_off(conn: *mut MqConnection, outcome: NextStep, name: &str) {
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
    unsafe { hand_off(conn, NextStep::Continue, "MQ_continue") }
}

/// `void MQ_complete(MQ_Connection*)`: skip the remaining plugins.
///
/// # Safety
/// `conn` is an `MQ_Connection*` the host passed to this plugin, or NULL.
#[no_mangle]
pub unsafe extern "C" fn MQ_complete(conn: *mut MqConnection) {
    // SAFETY: forwarded contract.
    unsafe { hand_off(conn, NextStep::Complete, "MQ_complete") }
}

/// `void MQ_retry(MQ_Connection*)`: restart the hook from the first plugin.
///
/// # Safety
/// `conn` is an `MQ_Connection*` the host passed to this plugin, or NULL.
#[no_mangle]
pub unsafe extern "C" fn MQ_retry(conn: *mut MqConnection) {
    // SAFETY: forwarded contract.
    unsafe { hand_off(conn, NextStep::Retry, "MQ_retry") }
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
    if c.shared.send(bytes) {
        size
    } else {
        0
    }
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

/// `MQ_Timer *MQ_startTimer(MQ_Context*, float seconds, void (*cb)(void*), void*)`:
/// a one-shot timer whose callback runs on the context's worker thread.
///
/// # Safety
/// `ctx` as in [`MQ_contextData`]; `cb` is a valid function for the timer's life.
#[no_mangle]
pub unsafe extern "C" fn MQ_startTimer(
    ctx: *mut MqContext,
    seconds: f32,
    cb: Option<TimerFn>,
    data: *mut c_void,
) -> *mut MqTimer {
    // SAFETY: as in MQ_contextData; `commands` is thread-safe.
    let (Some(c), Some(cb)) = (unsafe { ctx.as_ref() }, cb) else {
        return std::ptr::null_mut();
    };
    let (tx, control) = tokio::sync::mpsc::unbounded_channel();
    let timer = Box::into_raw(Box::new(MqTimer { control: tx }));
    let after = Duration::from_secs_f32(if seconds.is_finite() && seconds > 0.0 {
        seconds
    } else {
        0.0
    });
    if c.commands
        .send(Command::Timer {
            timer,
            control,
            after,
            cb,
            data: data as usize,
        })
        .is_err()
    {
        // SAFETY: just created above and not handed out.
        drop(unsafe { Box::from_raw(timer) });
        return std::ptr::null_mut();
    }
    timer
}

/// Sends a control to a timer/watcher task; when the task is gone (the worker
/// stopped), frees the object here instead.
///
/// # Safety
/// `object` is a live pointer from Box::into_raw whose task has not freed it.
unsafe fn control<T>(object: *mut T, sender: impl FnOnce(&T) -> bool, name: &str) {
    // SAFETY: the plugin passes a timer/watcher that has not fired or been stopped.
    let Some(o) = (unsafe { object.as_ref() }) else { return };
    if !sender(o) {
        tracing::debug!("{name} after the worker's loop ended: freed directly");
        // SAFETY: no task owns it any more, so nobody else frees it.
        drop(unsafe { Box::from_raw(object) });
    }
}

/// `void MQ_stopTimer(MQ_Timer*)`: only before it fired; the host frees it.
///
/// # Safety
/// `timer` came from MQ_startTimer and has neither fired nor been stopped.
#[no_mangle]
pub unsafe extern "C" fn MQ_stopTimer(timer: *mut MqTimer) {
    // SAFETY: forwarded contract.
    unsafe { control(timer, |t| t.control.send(Control::Stop).is_ok(), "MQ_stopTimer") }
}

/// `void MQ_resetTimer(MQ_Timer*, float seconds)`: fire `seconds` from now instead.
///
/// # Safety
/// `timer` came from MQ_startTimer and has neither fired nor been stopped.
#[no_mangle]
pub unsafe extern "C" fn MQ_resetTimer(timer: *mut MqTimer, seconds: f32) {
    let after = Duration::from_secs_f32(if seconds.is_finite() && seconds > 0.0 {
        seconds
    } else {
        0.0
    });
    // SAFETY: as in MQ_stopTimer; a reset after the loop ended is dropped.
    if let Some(t) = unsafe { timer.as_ref() } {
        let _ = t.control.send(Control::Reset(after));
    }
}

/// `MQ_IOWatcher *MQ_ioWatch(MQ_Context*, int fd, int events, cb, void*)`:
/// calls `cb` on the worker while `fd` is readable (MQ_READ) / writable (MQ_WRITE).
///
/// # Safety
/// `ctx` as in [`MQ_contextData`]; `fd` stays open until unwatched.
#[no_mangle]
pub unsafe extern "C" fn MQ_ioWatch(
    ctx: *mut MqContext,
    fd: c_int,
    events: c_int,
    cb: Option<IoFn>,
    data: *mut c_void,
) -> *mut MqIoWatcher {
    // SAFETY: as in MQ_contextData.
    let (Some(c), Some(cb)) = (unsafe { ctx.as_ref() }, cb) else {
        return std::ptr::null_mut();
    };
    if fd < 0 || events & 3 == 0 {
        return std::ptr::null_mut();
    }
    let (tx, control) = tokio::sync::mpsc::unbounded_channel();
    let watcher = Box::into_raw(Box::new(MqIoWatcher { control: tx }));
    if c.commands
        .send(Command::Watch {
            watcher,
            control,
            fd,
            events,
            cb,
            data: data as usize,
        })
        .is_err()
    {
        // SAFETY: just created above and not handed out.
        drop(unsafe { Box::from_raw(watcher) });
        return std::ptr::null_mut();
    }
    watcher
}

/// `void MQ_ioUnwatch(MQ_IOWatcher*)`: also valid inside its own callback.
///
/// # Safety
/// `watcher` came from MQ_ioWatch and was not unwatched yet.
#[no_mangle]
pub unsafe extern "C" fn MQ_ioUnwatch(watcher: *mut MqIoWatcher) {
    // SAFETY: forwarded contract.
    unsafe { control(watcher, |w| w.control.send(Control::Stop).is_ok(), "MQ_ioUnwatch") }
}

/// `struct ev_loop *MQ_ev(MQ_Context*)`: this worker's libev loop (NULL when no
/// plugin linked libev). Its watchers fire on the worker thread.
///
/// # Safety
/// `ctx` as in [`MQ_contextData`].
#[no_mangle]
pub unsafe extern "C" fn MQ_ev(ctx: *mut MqContext) -> *mut c_void {
    // SAFETY: as in MQ_contextData; the loop pointer is shared atomically.
    unsafe { ctx.as_ref() }.map_or(std::ptr::null_mut(), |c| c.libev_loop())
}

/// `MQ_IOWatch`: the spelling some MailerQ documentation uses.
///
/// # Safety
/// As [`MQ_ioWatch`].
#[no_mangle]
pub unsafe extern "C" fn MQ_IOWatch(
    ctx: *mut MqContext,
    fd: c_int,
    events: c_int,
    cb: Option<IoFn>,
    data: *mut c_void,
) -> *mut MqIoWatcher {
    // SAFETY: same contract.
    unsafe { MQ_ioWatch(ctx, fd, events, cb, data) }
}

/// `MQ_IOUnwatch`: the spelling some MailerQ documentation uses.
///
/// # Safety
/// As [`MQ_ioUnwatch`].
#[no_mangle]
pub unsafe extern "C" fn MQ_IOUnwatch(watcher: *mut MqIoWatcher) {
    // SAFETY: same contract.
    unsafe { MQ_ioUnwatch(watcher) }
}

/// Reads `size` bytes at `text` as a string (invalid UTF-8 replaced).
///
/// # Safety
/// `text` points to `size` readable bytes, or is NULL.
unsafe fn string_arg(text: *const c_char, size: usize) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: the caller passes `size` readable bytes.
    String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(text.cast::<u8>(), size) }).into_owned()
}

/// `MQ_Address *MQ_envelope(MQ_Message*)`: NULL when the message has none.
///
/// # Safety
/// `msg` is an `MQ_Message*` the host passed to this plugin, or NULL.
#[no_mangle]
pub unsafe extern "C" fn MQ_envelope(msg: *mut MqMessage) -> *mut MqAddress {
    // SAFETY: messages live until the hook's hand-off ended; used on the worker thread.
    unsafe { msg.as_mut() }
        .and_then(|m| m.address("envelope"))
        .map_or(std::ptr::null_mut(), |a| a as *mut MqAddress)
}

/// `MQ_Envelope`: the function spelling some MailerQ documentation uses.
///
/// # Safety
/// As [`MQ_envelope`].
#[no_mangle]
pub unsafe extern "C" fn MQ_Envelope(msg: *mut MqMessage) -> *mut MqAddress {
    // SAFETY: same contract.
    unsafe { MQ_envelope(msg) }
}

/// `void MQ_setEnvelope(MQ_Message*, const char*, size_t)`.
///
/// # Safety
/// `msg` as in [`MQ_envelope`]; `address` points to `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn MQ_setEnvelope(msg: *mut MqMessage, address: *const c_char, size: usize) {
    // SAFETY: as in MQ_envelope and string_arg.
    unsafe { set_property(msg, "MQ_setEnvelope", "envelope", address, size) }
}

/// A setter's work: NULL text changes nothing (with a warning naming the
/// plugin) rather than storing `""` while the client was told 250.
///
/// # Safety
/// As [`MQ_setEnvelope`].
unsafe fn set_property(msg: *mut MqMessage, name: &str, key: &str, text: *const c_char, size: usize) {
    // SAFETY: as in MQ_envelope.
    let Some(m) = (unsafe { msg.as_mut() }) else { return };
    if text.is_null() {
        tracing::warn!(plugin = %m.plugin, "{name} with NULL: the {key} is left unchanged");
        return;
    }
    // SAFETY: the caller passes `size` readable bytes at `text`.
    m.set_string(key, unsafe { string_arg(text, size) });
}

/// `MQ_Address *MQ_recipient(MQ_Message*)`.
///
/// # Safety
/// As [`MQ_envelope`].
#[no_mangle]
pub unsafe extern "C" fn MQ_recipient(msg: *mut MqMessage) -> *mut MqAddress {
    // SAFETY: as in MQ_envelope.
    unsafe { msg.as_mut() }
        .and_then(|m| m.address("recipient"))
        .map_or(std::ptr::null_mut(), |a| a as *mut MqAddress)
}

/// `void MQ_setRecipient(MQ_Message*, const char*, size_t)`.
///
/// # Safety
/// As [`MQ_setEnvelope`].
#[no_mangle]
pub unsafe extern "C" fn MQ_setRecipient(msg: *mut MqMessage, address: *const c_char, size: usize) {
    // SAFETY: as in MQ_setEnvelope.
    unsafe { set_property(msg, "MQ_setRecipient", "recipient", address, size) }
}

/// `const char *MQ_mime(MQ_Message*)`: NUL-terminated; NULL if none.
///
/// # Safety
/// As [`MQ_envelope`].
#[no_mangle]
pub unsafe extern "C" fn MQ_mime(msg: *mut MqMessage) -> *const c_char {
    // SAFETY: as in MQ_envelope; the string is cached in the message.
    unsafe { msg.as_mut() }
        .and_then(|m| m.mime())
        .map_or(std::ptr::null(), |c| c.as_ptr())
}

/// `MQ_Mime`: the spelling some MailerQ documentation uses.
///
/// # Safety
/// As [`MQ_envelope`].
#[no_mangle]
pub unsafe extern "C" fn MQ_Mime(msg: *mut MqMessage) -> *const c_char {
    // SAFETY: same contract.
    unsafe { MQ_mime(msg) }
}

/// `void MQ_setMime(MQ_Message*, const char*, size_t)`.
///
/// # Safety
/// As [`MQ_setEnvelope`].
#[no_mangle]
pub unsafe extern "C" fn MQ_setMime(msg: *mut MqMessage, mime: *const c_char, size: usize) {
    // SAFETY: as in MQ_setEnvelope.
    unsafe { set_property(msg, "MQ_setMime", "mime", mime, size) }
}

/// `struct json_object *MQ_json(MQ_Message*)`: the message as a json-c object
/// (NULL without json-c in the process); changes are read back when the
/// hand-off ends.
///
/// # Safety
/// As [`MQ_envelope`].
#[no_mangle]
pub unsafe extern "C" fn MQ_json(msg: *mut MqMessage) -> *mut c_void {
    // SAFETY: as in MQ_envelope.
    unsafe { msg.as_mut() }.map_or(std::ptr::null_mut(), |m| m.json_object())
}

/// `MQ_Json`: the spelling some MailerQ documentation uses.
///
/// # Safety
/// As [`MQ_envelope`].
#[no_mangle]
pub unsafe extern "C" fn MQ_Json(msg: *mut MqMessage) -> *mut c_void {
    // SAFETY: same contract.
    unsafe { MQ_json(msg) }
}

/// `bool MQ_local(MQ_Message*)`.
///
/// # Safety
/// As [`MQ_envelope`].
#[no_mangle]
pub unsafe extern "C" fn MQ_local(msg: *mut MqMessage) -> bool {
    // SAFETY: as in MQ_envelope.
    unsafe { msg.as_ref() }.is_some_and(|m| m.local)
}

/// `void MQ_setLocal(MQ_Message*, bool)`: true routes an inbound message to the local queue.
///
/// # Safety
/// As [`MQ_envelope`].
#[no_mangle]
pub unsafe extern "C" fn MQ_setLocal(msg: *mut MqMessage, local: bool) {
    // SAFETY: as in MQ_envelope.
    if let Some(m) = unsafe { msg.as_mut() } {
        if m.is_outbound() {
            tracing::warn!("MQ_setLocal on an outbound message: ignored (inbound only)");
            return;
        }
        m.local = local;
    }
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
    pub start_timer: unsafe extern "C" fn(*mut MqContext, f32, Option<TimerFn>, *mut c_void) -> *mut MqTimer,
    pub timer_controls: [unsafe extern "C" fn(*mut MqTimer); 1],
    pub reset_timer: unsafe extern "C" fn(*mut MqTimer, f32),
    pub io_watch:
        [unsafe extern "C" fn(*mut MqContext, c_int, c_int, Option<IoFn>, *mut c_void) -> *mut MqIoWatcher; 2],
    pub io_unwatch: [unsafe extern "C" fn(*mut MqIoWatcher); 2],
    pub ev: unsafe extern "C" fn(*mut MqContext) -> *mut c_void,
    pub addresses: [unsafe extern "C" fn(*mut MqMessage) -> *mut MqAddress; 3],
    pub setters: [unsafe extern "C" fn(*mut MqMessage, *const c_char, usize); 3],
    pub mime: [unsafe extern "C" fn(*mut MqMessage) -> *const c_char; 2],
    pub json: [unsafe extern "C" fn(*mut MqMessage) -> *mut c_void; 2],
    pub local: unsafe extern "C" fn(*mut MqMessage) -> bool,
    pub set_local: unsafe extern "C" fn(*mut MqMessage, bool),
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
    start_timer: MQ_startTimer,
    timer_controls: [MQ_stopTimer],
    reset_timer: MQ_resetTimer,
    io_watch: [MQ_ioWatch, MQ_IOWatch],
    io_unwatch: [MQ_ioUnwatch, MQ_IOUnwatch],
    ev: MQ_ev,
    addresses: [MQ_envelope, MQ_Envelope, MQ_recipient],
    setters: [MQ_setEnvelope, MQ_setRecipient, MQ_setMime],
    mime: [MQ_mime, MQ_Mime],
    json: [MQ_json, MQ_Json],
    local: MQ_local,
    set_local: MQ_setLocal,
};
