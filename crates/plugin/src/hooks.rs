//! Calling a hook: every plugin that exports it, in load order, on the
//! connection's worker thread, with the hand-off rules of the spec.

use crate::connection::{MqAddress, MqConnection, NextStep, PluginConnection};
use crate::context::{MqContext, WorkerContexts};
use crate::loader::Plugins;
use crate::message::MqMessage;
use std::ffi::c_char;
use std::time::Duration;

pub(crate) type ConnFn = unsafe extern "C" fn(*mut MqContext, *mut MqConnection) -> bool;
pub(crate) type AddrFn = unsafe extern "C" fn(*mut MqContext, *mut MqConnection, *mut MqAddress) -> bool;
pub(crate) type DataFn = unsafe extern "C" fn(*mut MqContext, *mut MqConnection, *const c_char, usize) -> bool;
pub(crate) type MessageFn = unsafe extern "C" fn(*mut MqContext, *mut MqConnection, *mut MqMessage) -> bool;
pub(crate) type AuthFn =
    unsafe extern "C" fn(*mut MqContext, *mut MqConnection, *const c_char, usize, *const c_char, usize) -> bool;

/// The inbound hooks a plugin may export.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct HookTable {
    pub connect: Option<ConnFn>,
    pub secure: Option<ConnFn>,
    pub authenticate: Option<AuthFn>,
    pub mailfrom: Option<AddrFn>,
    pub rcptto: Option<AddrFn>,
    pub data: Option<DataFn>,
    pub message: Option<MessageFn>,
    pub close: Option<ConnFn>,
    pub out_data: Option<MessageFn>,
    pub out_sent: Option<MessageFn>,
}

/// A hook and its arguments.
#[derive(Debug, Clone, Copy)]
pub enum Hook<'a> {
    Connect,
    Secure,
    Authenticate {
        login: &'a str,
        password: &'a str,
    },
    MailFrom(&'a str),
    RcptTo(&'a str),
    Data(&'a [u8]),
    /// One recipient's copy; the pointer stays valid for the whole hook.
    Message(*mut MqMessage),
    Close,
    /// Outbound: entered DATA, before the body (MQ_setMime replaces what is sent).
    OutData(*mut MqMessage),
    /// Outbound: body and final dot sent, reply not yet known.
    OutSent(*mut MqMessage),
}

impl Hook<'_> {
    /// The C name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Hook::Connect => "mq_smtp_in_connect",
            Hook::Secure => "mq_smtp_in_secure",
            Hook::Authenticate { .. } => "mq_smtp_in_authenticate",
            Hook::MailFrom(_) => "mq_smtp_in_mailfrom",
            Hook::RcptTo(_) => "mq_smtp_in_rcptto",
            Hook::Data(_) => "mq_smtp_in_data",
            Hook::Message(_) => "mq_smtp_in_message",
            Hook::Close => "mq_smtp_in_close",
            Hook::OutData(_) => "mq_smtp_out_data",
            Hook::OutSent(_) => "mq_smtp_out_sent",
        }
    }

    fn exported_by(&self, hooks: &HookTable) -> bool {
        match self {
            Hook::Connect => hooks.connect.is_some(),
            Hook::Secure => hooks.secure.is_some(),
            Hook::Authenticate { .. } => hooks.authenticate.is_some(),
            Hook::MailFrom(_) => hooks.mailfrom.is_some(),
            Hook::RcptTo(_) => hooks.rcptto.is_some(),
            Hook::Data(_) => hooks.data.is_some(),
            Hook::Message(_) => hooks.message.is_some(),
            Hook::Close => hooks.close.is_some(),
            Hook::OutData(_) => hooks.out_data.is_some(),
            Hook::OutSent(_) => hooks.out_sent.is_some(),
        }
    }
}

/// A plugin held control past `plugin-timeout`: the step fails temporarily.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin {plugin} held control in {hook} longer than plugin-timeout")]
pub struct Timeout {
    pub plugin: String,
    pub hook: &'static str,
}

impl Plugins {
    /// True if any plugin exports `hook` (so the caller can skip the work).
    pub fn exports(&self, hook: Hook<'_>) -> bool {
        self.list.iter().any(|p| hook.exported_by(&p.hooks))
    }
}

/// Runs `hook` through the plugins: false = next plugin; true = wait for
/// MQ_continue (next), MQ_complete (stop) or MQ_retry (from the first again).
pub async fn run(
    plugins: &Plugins,
    contexts: &WorkerContexts,
    conn: &PluginConnection,
    hook: Hook<'_>,
    timeout: Duration,
) -> Result<(), Timeout> {
    // Argument objects live for the whole hook, so pointers stay valid while a plugin holds control.
    let mut address = match hook {
        Hook::MailFrom(a) | Hook::RcptTo(a) => Some(MqAddress::new(a)),
        _ => None,
    };
    let address: *mut MqAddress = address.as_mut().map_or(std::ptr::null_mut(), |a| a as *mut MqAddress);
    'restart: loop {
        for (i, plugin) in plugins.list.iter().enumerate() {
            if !hook.exported_by(&plugin.hooks) {
                continue;
            }
            let (ctx, handle) = (contexts.context(i), conn.handle(i));
            conn.arm(i);
            if let Hook::Message(m) | Hook::OutData(m) | Hook::OutSent(m) = hook {
                // SAFETY: the caller keeps the message alive for the whole hook.
                unsafe { (*m).plugin.clone_from(&plugin.name) };
            }
            let h = &plugin.hooks;
            let call = crate::blocking::enter(&plugin.name, hook.name());
            // SAFETY (every call below): the function has the signature
            // mailerq.h declares for this hook; the context, connection and
            // argument pointers stay valid until the hand-off ends, and the call
            // is made on the worker thread that owns them.
            let took = unsafe {
                match hook {
                    Hook::Connect => h.connect.is_some_and(|f| f(ctx, handle)),
                    Hook::Secure => h.secure.is_some_and(|f| f(ctx, handle)),
                    Hook::Close => h.close.is_some_and(|f| f(ctx, handle)),
                    Hook::MailFrom(_) => h.mailfrom.is_some_and(|f| f(ctx, handle, address)),
                    Hook::RcptTo(_) => h.rcptto.is_some_and(|f| f(ctx, handle, address)),
                    Hook::Data(mime) => h.data.is_some_and(|f| f(ctx, handle, mime.as_ptr().cast(), mime.len())),
                    Hook::Message(message) => h.message.is_some_and(|f| f(ctx, handle, message)),
                    Hook::OutData(message) => h.out_data.is_some_and(|f| f(ctx, handle, message)),
                    Hook::OutSent(message) => h.out_sent.is_some_and(|f| f(ctx, handle, message)),
                    Hook::Authenticate { login, password } => h.authenticate.is_some_and(|f| {
                        f(
                            ctx,
                            handle,
                            login.as_ptr().cast(),
                            login.len(),
                            password.as_ptr().cast(),
                            password.len(),
                        )
                    }),
                }
            };
            drop(call);
            // A plugin that returned false did not take control: any hand-off it
            // made is stray. One that returned true is waited for.
            let outcome = if took {
                match tokio::time::timeout(timeout, conn.handed_off()).await {
                    Ok(o) => {
                        conn.disarm();
                        o
                    }
                    Err(_) => {
                        conn.abandon();
                        tracing::error!(plugin = %plugin.name, hook = hook.name(), "plugin held control longer than plugin-timeout; the step fails temporarily");
                        return Err(Timeout {
                            plugin: plugin.name.clone(),
                            hook: hook.name(),
                        });
                    }
                }
            } else {
                if conn.disarm().is_some() {
                    tracing::warn!(plugin = %plugin.name, hook = hook.name(), "hand-off from a plugin that returned false: ignored");
                }
                NextStep::Continue
            };
            if let Hook::Message(m) = hook {
                // The plugin's turn is over: what it did through MQ_json is what
                // the next plugin (and the queue) sees.
                // SAFETY: the caller keeps the message alive for the whole hook.
                unsafe { (*m).sync_json() };
            }
            match outcome {
                NextStep::Continue => continue,
                NextStep::Complete => return Ok(()),
                NextStep::Retry => continue 'restart,
            }
        }
        return Ok(());
    }
}
