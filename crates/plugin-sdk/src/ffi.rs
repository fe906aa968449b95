//! The host functions (`mailerq.h`), resolved from the `sluice` binary at load time.

use std::ffi::{c_char, c_int, c_void, CStr};

unsafe extern "C" {
    pub fn MQ_log(ctx: *mut c_void, level: c_int, text: *const c_char);
    pub fn MQ_startTimer(
        ctx: *mut c_void,
        seconds: f32,
        cb: unsafe extern "C" fn(*mut c_void),
        data: *mut c_void,
    ) -> *mut c_void;
    pub fn MQ_continue(conn: *mut c_void);
    pub fn MQ_complete(conn: *mut c_void);
    pub fn MQ_retry(conn: *mut c_void);
    pub fn MQ_respond(conn: *mut c_void, code: c_int, text: *const c_char);
    pub fn MQ_secure(conn: *mut c_void) -> bool;
    pub fn MQ_authenticated(conn: *mut c_void) -> bool;
    pub fn MQ_setAuthenticated(conn: *mut c_void, ok: bool);
    pub fn MQ_envelope(msg: *mut c_void) -> *mut c_void;
    pub fn MQ_recipient(msg: *mut c_void) -> *mut c_void;
    pub fn MQ_mime(msg: *mut c_void) -> *const c_char;
    pub fn MQ_setEnvelope(msg: *mut c_void, a: *const c_char, n: usize);
    pub fn MQ_setRecipient(msg: *mut c_void, a: *const c_char, n: usize);
    pub fn MQ_setMime(msg: *mut c_void, a: *const c_char, n: usize);
    pub fn MQ_setLocal(msg: *mut c_void, local: bool);
    pub fn MQ_email(address: *mut c_void) -> *const c_char;
}

/// `MQ_email` of an address the host passed to a hook, copied.
///
/// # Safety
/// `address` is NULL or an `MQ_Address*` the host passed to the current call.
pub unsafe fn address_email(address: *mut c_void) -> Option<String> {
    if address.is_null() {
        return None;
    }
    // SAFETY: an MQ_Address* the host passed for this call.
    let p = unsafe { MQ_email(address) };
    // SAFETY: NULL or a NUL-terminated string valid during the call.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}
