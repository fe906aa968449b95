//! `MQ_Connection`: one object per plugin per SMTP connection (so each plugin
//! has its own connection data), all sharing one [`ConnectionState`] state that any
//! thread may touch: hand-off calls may come from a plugin's own threads.

use crate::lock;
use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// How a plugin handed control back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// MQ_continue: go on with the next plugin.
    Continue,
    /// MQ_complete: skip the remaining plugins.
    Complete,
    /// MQ_retry: restart the hook from the first plugin.
    Retry,
}

#[derive(Debug, Default)]
struct Slot {
    /// The plugin that holds (or may take) control now.
    armed: Option<usize>,
    outcome: Option<NextStep>,
}

/// A reply a plugin asked for with MQ_respond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub code: u16,
    pub text: String,
}

/// State of one SMTP connection shared by its per-plugin handles.
#[derive(Debug)]
pub struct ConnectionState {
    fd: i32,
    slot: Mutex<Slot>,
    wake: Notify,
    secure: AtomicBool,
    authenticated: AtomicBool,
    response: Mutex<Option<Response>>,
    /// MQ_setAuthenticated during mq_smtp_in_authenticate: Some(false) wins.
    auth_verdict: Mutex<Option<bool>>,
    /// Bytes from MQ_send, written in order with the host's replies.
    outgoing: Mutex<Vec<u8>>,
    /// An outbound (delivery) connection: MQ_send does nothing there.
    outbound: bool,
}

impl ConnectionState {
    /// Records a hand-off; false (and a warning) when nobody holds control.
    pub fn hand_off(&self, plugin: usize, outcome: NextStep) -> bool {
        let mut slot = lock(&self.slot);
        if slot.armed != Some(plugin) || slot.outcome.is_some() {
            return false;
        }
        slot.outcome = Some(outcome);
        drop(slot);
        self.wake.notify_one();
        true
    }

    pub fn fd(&self) -> i32 {
        self.fd
    }
    pub fn secure(&self) -> bool {
        self.secure.load(Ordering::Relaxed)
    }
    pub fn authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Relaxed)
    }
    pub fn respond(&self, code: u16, text: String) {
        *lock(&self.response) = Some(Response { code, text });
    }
    pub fn set_auth_verdict(&self, ok: bool) {
        let mut v = lock(&self.auth_verdict);
        *v = Some(v.unwrap_or(true) && ok);
    }
    /// MQ_send: false on an outbound connection (nothing is sent).
    pub fn send(&self, bytes: &[u8]) -> bool {
        if self.outbound {
            return false;
        }
        lock(&self.outgoing).extend_from_slice(bytes);
        true
    }
}

/// What an `MQ_Connection*` points to.
pub struct MqConnection {
    pub(crate) plugin: usize,
    /// ConnectionState with the Plugin: connections are made per message, names are not copied.
    pub(crate) plugin_name: std::sync::Arc<str>,
    pub(crate) data: *mut c_void,
    pub(crate) shared: Arc<ConnectionState>,
}

/// What an `MQ_Address*` points to: an address, NUL-terminated for C.
pub struct MqAddress {
    pub(crate) email: Option<CString>,
}

impl MqAddress {
    /// An address; "" is the null path `<>` (MQ_email gives NULL).
    pub fn new(email: &str) -> MqAddress {
        MqAddress {
            email: (!email.is_empty()).then(|| CString::new(email.replace('\0', "")).unwrap_or_default()),
        }
    }
}

/// The plugins' view of one SMTP connection, owned by its session.
pub struct PluginConnection {
    pub shared: Arc<ConnectionState>,
    /// One per plugin; a boxed slice never moves, so plugin pointers stay valid.
    pub(crate) handles: Box<[std::cell::UnsafeCell<MqConnection>]>,
    /// A plugin timed out holding control and may still call back with its
    /// pointer later: the handles must then never be freed.
    abandoned: std::cell::Cell<bool>,
}

impl Drop for PluginConnection {
    fn drop(&mut self) {
        if self.abandoned.get() {
            tracing::warn!(
                "a plugin timed out holding a connection; its handles are kept alive so a late hand-off stays harmless"
            );
            std::mem::forget(std::mem::take(&mut self.handles));
        }
    }
}

impl PluginConnection {
    /// An inbound (SMTP server) connection.
    pub fn new(plugins: &crate::Plugins, fd: i32, secure: bool) -> PluginConnection {
        Self::with_direction(plugins, fd, secure, false)
    }

    /// An outbound (delivery) connection: MQ_send returns 0 on it.
    pub fn outbound(plugins: &crate::Plugins, fd: i32, secure: bool) -> PluginConnection {
        Self::with_direction(plugins, fd, secure, true)
    }

    fn with_direction(plugins: &crate::Plugins, fd: i32, secure: bool, outbound: bool) -> PluginConnection {
        let shared = Arc::new(ConnectionState {
            fd,
            slot: Mutex::new(Slot::default()),
            wake: Notify::new(),
            secure: AtomicBool::new(secure),
            authenticated: AtomicBool::new(false),
            response: Mutex::new(None),
            auth_verdict: Mutex::new(None),
            outgoing: Mutex::new(Vec::new()),
            outbound,
        });
        let handles = plugins
            .list
            .iter()
            .enumerate()
            .map(|(i, p)| {
                std::cell::UnsafeCell::new(MqConnection {
                    plugin: i,
                    plugin_name: p.shared_name.clone(),
                    data: std::ptr::null_mut(),
                    shared: shared.clone(),
                })
            })
            .collect();
        PluginConnection {
            shared,
            handles,
            abandoned: std::cell::Cell::new(false),
        }
    }

    pub(crate) fn handle(&self, plugin: usize) -> *mut MqConnection {
        self.handles[plugin].get()
    }

    pub fn set_secure(&self, secure: bool) {
        self.shared.secure.store(secure, Ordering::Relaxed);
    }
    pub fn set_authenticated(&self, ok: bool) {
        self.shared.authenticated.store(ok, Ordering::Relaxed);
    }
    /// The reply a plugin set with MQ_respond during the last hook, if any.
    pub fn take_response(&self) -> Option<Response> {
        lock(&self.shared.response).take()
    }
    /// The plugins' verdict from MQ_setAuthenticated, if any gave one.
    pub fn take_auth_verdict(&self) -> Option<bool> {
        lock(&self.shared.auth_verdict).take()
    }
    /// Bytes plugins sent with MQ_send, to write before the next reply.
    pub fn take_outgoing(&self) -> Vec<u8> {
        std::mem::take(&mut *lock(&self.shared.outgoing))
    }

    /// Arms the slot for `plugin` before its hook is called, so a hand-off
    /// made synchronously inside the hook is seen.
    pub(crate) fn arm(&self, plugin: usize) {
        *lock(&self.shared.slot) = Slot {
            armed: Some(plugin),
            outcome: None,
        };
    }

    /// Disarms; a hand-off after this is stray and ignored with a warning.
    pub(crate) fn disarm(&self) -> Option<NextStep> {
        let mut slot = lock(&self.shared.slot);
        slot.armed = None;
        slot.outcome.take()
    }

    /// Waits for the armed plugin's hand-off.
    pub(crate) async fn handed_off(&self) -> NextStep {
        loop {
            let notified = self.shared.wake.notified();
            if let Some(o) = lock(&self.shared.slot).outcome {
                return o;
            }
            notified.await;
        }
    }

    /// The watchdog gave up on the plugin holding control.
    pub(crate) fn abandon(&self) {
        self.abandoned.set(true);
        self.disarm();
    }
}
