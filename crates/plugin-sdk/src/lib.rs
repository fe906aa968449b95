//! Writing Sluice plugins in safe Rust, against the same C ABI as
//! `mailerq.h`: implement [`Plugin`] (every hook has a default that does
//! nothing), then `sluice_plugin_sdk::export_plugin!(MyPlugin::new());` in a
//! crate built as a `cdylib`. Copy the `.so` into `plugin-directory`.
//!
//! The host's `MQ_*` functions are declared here and resolved from the
//! `sluice` binary when the plugin is loaded; this crate is the plugin side of
//! the C ABI, so like the host's ABI crate it contains the `unsafe` for it.

mod ffi;

use std::ffi::{c_char, c_void, CStr};
use std::marker::PhantomData;

/// `MQ_API_VERSION` of the header this crate implements.
pub const API_VERSION: i32 = 1;

/// What a hook tells the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Not taking control (the C hook returns false): next plugin or normal step.
    Next,
    /// Taking control (returns true): call [`Connection::resume`],
    /// [`Connection::complete`] or [`Connection::retry`] later — from a timer,
    /// another thread, or right away.
    Hold,
}

impl Flow {
    #[doc(hidden)]
    pub fn as_bool(self) -> bool {
        self == Flow::Hold
    }
}

/// Log levels of `MQ_log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error = 0,
    Warning = 1,
    Info = 2,
    Debug = 3,
}

/// A worker's context for this plugin (`MQ_Context*`). Only valid during the call.
pub struct Context<'a> {
    raw: *mut c_void,
    _call: PhantomData<&'a ()>,
}

/// An SMTP connection (`MQ_Connection*`). A [`Handle`] outlives the call.
pub struct Connection<'a> {
    raw: *mut c_void,
    _call: PhantomData<&'a ()>,
}

/// A connection kept for a later hand-off: `Send`, because the host accepts
/// MQ_continue/MQ_complete/MQ_retry/MQ_respond from any thread. Valid while
/// this plugin holds control of that connection (spec: until the hand-off).
#[derive(Debug, Clone, Copy)]
pub struct Handle(*mut c_void);

// SAFETY: the host documents the hand-off and MQ_respond as callable from any
// thread (it moves them to the worker); the pointer stays valid while held.
unsafe impl Send for Handle {}

/// A message (`MQ_Message*`), during mq_smtp_in_message / mq_smtp_out_*.
pub struct Message<'a> {
    raw: *mut c_void,
    _call: PhantomData<&'a ()>,
}

/// Copies a host string (valid until the hand-off ends) into an owned one.
fn owned(p: *const c_char) -> Option<String> {
    // SAFETY: the host returns NULL or a NUL-terminated string valid for now.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

impl Context<'_> {
    /// Wraps a handle the host passed to a hook.
    ///
    /// # Safety
    /// `raw` is the `MQ_Context*` the host passed to the current call (or NULL),
    /// and the value is used only during that call.
    #[doc(hidden)]
    pub unsafe fn from_raw(raw: *mut c_void) -> Self {
        Context {
            raw,
            _call: PhantomData,
        }
    }

    /// `MQ_log`: the host's log, with this plugin's name.
    pub fn log(&self, level: Level, text: &str) {
        let c = std::ffi::CString::new(text.replace('\0', " ")).unwrap_or_default();
        // SAFETY: a context the host passed in; a NUL-terminated string.
        unsafe { ffi::MQ_log(self.raw, level as i32, c.as_ptr()) }
    }

    /// `MQ_startTimer`: runs `f` once on this worker after `seconds`.
    pub fn after(&self, seconds: f32, f: impl FnOnce() + 'static) {
        unsafe extern "C" fn trampoline(data: *mut c_void) {
            // SAFETY: `data` is the Box made below, handed back exactly once.
            let f = unsafe { Box::from_raw(data.cast::<Box<dyn FnOnce()>>()) };
            f();
        }
        let data = Box::into_raw(Box::new(Box::new(f) as Box<dyn FnOnce()>));
        // SAFETY: a context the host passed in; the callback frees `data` when it fires.
        unsafe { ffi::MQ_startTimer(self.raw, seconds, trampoline, data.cast()) };
    }
}

impl Connection<'_> {
    /// Wraps a handle the host passed to a hook.
    ///
    /// # Safety
    /// `raw` is the `MQ_Connection*` the host passed to the current call (or NULL),
    /// and the value is used only during that call.
    #[doc(hidden)]
    pub unsafe fn from_raw(raw: *mut c_void) -> Self {
        Connection {
            raw,
            _call: PhantomData,
        }
    }

    /// Keeps the connection for a hand-off after the hook returned [`Flow::Hold`].
    pub fn handle(&self) -> Handle {
        Handle(self.raw)
    }

    /// `MQ_respond`: replace the reply of this step (e.g. `550`, `"5.1.1 no such user"`).
    pub fn respond(&self, code: u16, text: &str) {
        self.handle().respond(code, text)
    }

    /// `MQ_secure`.
    pub fn secure(&self) -> bool {
        // SAFETY: a connection the host passed in.
        unsafe { ffi::MQ_secure(self.raw) }
    }

    /// `MQ_authenticated`.
    pub fn authenticated(&self) -> bool {
        // SAFETY: a connection the host passed in.
        unsafe { ffi::MQ_authenticated(self.raw) }
    }

    /// `MQ_setAuthenticated` (in `authenticate`).
    pub fn set_authenticated(&self, ok: bool) {
        self.handle().set_authenticated(ok)
    }
}

impl Handle {
    /// `MQ_continue`: go on with the next plugin.
    pub fn resume(self) {
        // SAFETY: held connection (see the type's docs); thread-safe in the host.
        unsafe { ffi::MQ_continue(self.0) }
    }
    /// `MQ_complete`: skip the remaining plugins.
    pub fn complete(self) {
        // SAFETY: as in resume.
        unsafe { ffi::MQ_complete(self.0) }
    }
    /// `MQ_retry`: call the hook again from the first plugin.
    pub fn retry(self) {
        // SAFETY: as in resume.
        unsafe { ffi::MQ_retry(self.0) }
    }
    /// `MQ_respond`.
    pub fn respond(self, code: u16, text: &str) {
        let c = std::ffi::CString::new(text.replace('\0', " ")).unwrap_or_default();
        // SAFETY: as in resume; a NUL-terminated string.
        unsafe { ffi::MQ_respond(self.0, code as i32, c.as_ptr()) }
    }
    /// `MQ_setAuthenticated`.
    pub fn set_authenticated(self, ok: bool) {
        // SAFETY: as in resume.
        unsafe { ffi::MQ_setAuthenticated(self.0, ok) }
    }
}

impl Message<'_> {
    /// Wraps a handle the host passed to a hook.
    ///
    /// # Safety
    /// `raw` is the `MQ_Message*` the host passed to the current call (or NULL),
    /// and the value is used only during that call.
    #[doc(hidden)]
    pub unsafe fn from_raw(raw: *mut c_void) -> Self {
        Message {
            raw,
            _call: PhantomData,
        }
    }

    /// The envelope sender: None when absent, Some("") for `<>`.
    pub fn envelope(&self) -> Option<String> {
        // SAFETY: a message the host passed in.
        let a = unsafe { ffi::MQ_envelope(self.raw) };
        // SAFETY: an address of that message.
        (!a.is_null()).then(|| owned(unsafe { ffi::MQ_email(a) }).unwrap_or_default())
    }

    /// The recipient.
    pub fn recipient(&self) -> Option<String> {
        // SAFETY: a message the host passed in.
        let a = unsafe { ffi::MQ_recipient(self.raw) };
        // SAFETY: an address of that message.
        (!a.is_null()).then(|| owned(unsafe { ffi::MQ_email(a) }).unwrap_or_default())
    }

    /// The MIME, if any.
    pub fn mime(&self) -> Option<String> {
        // SAFETY: a message the host passed in.
        owned(unsafe { ffi::MQ_mime(self.raw) })
    }

    /// `MQ_setEnvelope`.
    pub fn set_envelope(&self, address: &str) {
        // SAFETY: a message the host passed in; `len` readable bytes.
        unsafe { ffi::MQ_setEnvelope(self.raw, address.as_ptr().cast(), address.len()) }
    }

    /// `MQ_setRecipient`.
    pub fn set_recipient(&self, address: &str) {
        // SAFETY: as in set_envelope.
        unsafe { ffi::MQ_setRecipient(self.raw, address.as_ptr().cast(), address.len()) }
    }

    /// `MQ_setMime`.
    pub fn set_mime(&self, mime: &str) {
        // SAFETY: as in set_envelope.
        unsafe { ffi::MQ_setMime(self.raw, mime.as_ptr().cast(), mime.len()) }
    }

    /// `MQ_setLocal` (inbound): route this copy to the local queue.
    pub fn set_local(&self, local: bool) {
        // SAFETY: a message the host passed in.
        unsafe { ffi::MQ_setLocal(self.raw, local) }
    }
}

/// A plugin: override the hooks you need; the rest do nothing. One instance
/// serves every worker, so use interior mutability that is `Sync`.
#[allow(unused_variables)]
pub trait Plugin: Send + Sync + 'static {
    fn initialize(&self) {}
    fn cleanup(&self) {}
    /// On each worker thread, before it serves traffic.
    fn context_initialize(&self, ctx: &Context) {}
    /// On each worker thread, as it stops.
    fn context_cleanup(&self, ctx: &Context) {}
    fn connect(&self, ctx: &Context, conn: &Connection) -> Flow {
        Flow::Next
    }
    fn secure(&self, ctx: &Context, conn: &Connection) -> Flow {
        Flow::Next
    }
    /// Decide with [`Connection::set_authenticated`] (or a [`Handle`] later).
    fn authenticate(&self, ctx: &Context, conn: &Connection, login: &[u8], password: &[u8]) -> Flow {
        Flow::Next
    }
    fn mail_from(&self, ctx: &Context, conn: &Connection, envelope: Option<&str>) -> Flow {
        Flow::Next
    }
    fn rcpt_to(&self, ctx: &Context, conn: &Connection, recipient: Option<&str>) -> Flow {
        Flow::Next
    }
    fn data(&self, ctx: &Context, conn: &Connection, mime: &[u8]) -> Flow {
        Flow::Next
    }
    fn message(&self, ctx: &Context, conn: &Connection, message: &Message) -> Flow {
        Flow::Next
    }
    fn close(&self, ctx: &Context, conn: &Connection) -> Flow {
        Flow::Next
    }
    /// Outbound: DATA entered; `message.set_mime` replaces what is sent.
    fn out_data(&self, ctx: &Context, conn: &Connection, message: &Message) -> Flow {
        Flow::Next
    }
    /// Outbound: body sent, reply not yet known.
    fn out_sent(&self, ctx: &Context, conn: &Connection, message: &Message) -> Flow {
        Flow::Next
    }
}

/// The bytes of a hook argument.
///
/// # Safety
/// `p` is NULL or points to `size` readable bytes that stay valid while the
/// slice is used (the host's arguments: for the hook call).
#[doc(hidden)]
pub unsafe fn bytes<'a>(p: *const c_char, size: usize) -> &'a [u8] {
    if p.is_null() {
        return &[];
    }
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(p.cast::<u8>(), size) }
}

#[doc(hidden)]
pub mod export {
    //! What `export_plugin!` expands to calls these.
    pub use crate::ffi::address_email;
    pub use std::ffi::{c_char, c_int, c_void};
}

/// Exports `mq_version` and every hook of the [`Plugin`] `$plugin` (an
/// expression evaluated once, at first use).
#[macro_export]
macro_rules! export_plugin {
    ($plugin:expr) => {
        mod __sluice_plugin_exports {
            use super::*;
            use $crate::export::*;
            use $crate::{Connection, Context, Message, Plugin};

            fn plugin() -> &'static dyn Plugin {
                static P: std::sync::OnceLock<Box<dyn Plugin>> = std::sync::OnceLock::new();
                &**P.get_or_init(|| Box::new($plugin))
            }

            #[no_mangle]
            pub extern "C" fn mq_version() -> c_int {
                $crate::API_VERSION
            }
            #[no_mangle]
            pub extern "C" fn mq_initialize() {
                plugin().initialize()
            }
            #[no_mangle]
            pub extern "C" fn mq_cleanup() {
                plugin().cleanup()
            }
            #[no_mangle]
            pub extern "C" fn mq_context_initialize(ctx: *mut c_void) {
                // SAFETY (each unsafe block here): the host passes handles and byte ranges
                // valid for this call, and they are used only during it.
                plugin().context_initialize(&unsafe { Context::from_raw(ctx) })
            }
            #[no_mangle]
            pub extern "C" fn mq_context_cleanup(ctx: *mut c_void) {
                // SAFETY (each unsafe block here): the host passes handles and byte ranges
                // valid for this call, and they are used only during it.
                plugin().context_cleanup(&unsafe { Context::from_raw(ctx) })
            }
            #[no_mangle]
            pub extern "C" fn mq_smtp_in_connect(ctx: *mut c_void, conn: *mut c_void) -> bool {
                // SAFETY (each unsafe block here): the host passes handles and byte ranges
                // valid for this call, and they are used only during it.
                plugin()
                    .connect(&unsafe { Context::from_raw(ctx) }, &unsafe {
                        Connection::from_raw(conn)
                    })
                    .as_bool()
            }
            #[no_mangle]
            pub extern "C" fn mq_smtp_in_secure(ctx: *mut c_void, conn: *mut c_void) -> bool {
                // SAFETY (each unsafe block here): the host passes handles and byte ranges
                // valid for this call, and they are used only during it.
                plugin()
                    .secure(&unsafe { Context::from_raw(ctx) }, &unsafe {
                        Connection::from_raw(conn)
                    })
                    .as_bool()
            }
            #[no_mangle]
            pub extern "C" fn mq_smtp_in_authenticate(
                ctx: *mut c_void,
                conn: *mut c_void,
                login: *const c_char,
                login_size: usize,
                password: *const c_char,
                password_size: usize,
            ) -> bool {
                // SAFETY (each unsafe block here): the host passes handles and byte ranges
                // valid for this call, and they are used only during it.
                let (login, password) = (unsafe { $crate::bytes(login, login_size) }, unsafe {
                    $crate::bytes(password, password_size)
                });
                plugin()
                    .authenticate(
                        &unsafe { Context::from_raw(ctx) },
                        &unsafe { Connection::from_raw(conn) },
                        login,
                        password,
                    )
                    .as_bool()
            }
            #[no_mangle]
            pub extern "C" fn mq_smtp_in_mailfrom(ctx: *mut c_void, conn: *mut c_void, a: *mut c_void) -> bool {
                // SAFETY (each unsafe block here): the host passes handles and byte ranges
                // valid for this call, and they are used only during it.
                // SAFETY: the host passes the envelope's MQ_Address* for this call.
                let email = unsafe { address_email(a) };
                plugin()
                    .mail_from(
                        &unsafe { Context::from_raw(ctx) },
                        &unsafe { Connection::from_raw(conn) },
                        email.as_deref(),
                    )
                    .as_bool()
            }
            #[no_mangle]
            pub extern "C" fn mq_smtp_in_rcptto(ctx: *mut c_void, conn: *mut c_void, a: *mut c_void) -> bool {
                // SAFETY (each unsafe block here): the host passes handles and byte ranges
                // valid for this call, and they are used only during it.
                // SAFETY: the host passes the recipient's MQ_Address* for this call.
                let email = unsafe { address_email(a) };
                plugin()
                    .rcpt_to(
                        &unsafe { Context::from_raw(ctx) },
                        &unsafe { Connection::from_raw(conn) },
                        email.as_deref(),
                    )
                    .as_bool()
            }
            #[no_mangle]
            pub extern "C" fn mq_smtp_in_data(
                ctx: *mut c_void,
                conn: *mut c_void,
                mime: *const c_char,
                size: usize,
            ) -> bool {
                // SAFETY (each unsafe block here): the host passes handles and byte ranges
                // valid for this call, and they are used only during it.
                plugin()
                    .data(
                        &unsafe { Context::from_raw(ctx) },
                        &unsafe { Connection::from_raw(conn) },
                        unsafe { $crate::bytes(mime, size) },
                    )
                    .as_bool()
            }
            #[no_mangle]
            pub extern "C" fn mq_smtp_in_message(ctx: *mut c_void, conn: *mut c_void, m: *mut c_void) -> bool {
                // SAFETY (each unsafe block here): the host passes handles and byte ranges
                // valid for this call, and they are used only during it.
                plugin()
                    .message(
                        &unsafe { Context::from_raw(ctx) },
                        &unsafe { Connection::from_raw(conn) },
                        &unsafe { Message::from_raw(m) },
                    )
                    .as_bool()
            }
            #[no_mangle]
            pub extern "C" fn mq_smtp_in_close(ctx: *mut c_void, conn: *mut c_void) -> bool {
                // SAFETY (each unsafe block here): the host passes handles and byte ranges
                // valid for this call, and they are used only during it.
                plugin()
                    .close(&unsafe { Context::from_raw(ctx) }, &unsafe {
                        Connection::from_raw(conn)
                    })
                    .as_bool()
            }
            #[no_mangle]
            pub extern "C" fn mq_smtp_out_data(ctx: *mut c_void, conn: *mut c_void, m: *mut c_void) -> bool {
                // SAFETY (each unsafe block here): the host passes handles and byte ranges
                // valid for this call, and they are used only during it.
                plugin()
                    .out_data(
                        &unsafe { Context::from_raw(ctx) },
                        &unsafe { Connection::from_raw(conn) },
                        &unsafe { Message::from_raw(m) },
                    )
                    .as_bool()
            }
            #[no_mangle]
            pub extern "C" fn mq_smtp_out_sent(ctx: *mut c_void, conn: *mut c_void, m: *mut c_void) -> bool {
                // SAFETY (each unsafe block here): the host passes handles and byte ranges
                // valid for this call, and they are used only during it.
                plugin()
                    .out_sent(
                        &unsafe { Context::from_raw(ctx) },
                        &unsafe { Connection::from_raw(conn) },
                        &unsafe { Message::from_raw(m) },
                    )
                    .as_bool()
            }
        }
    };
}
