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

/// The one table of hooks: field, C type, name and symbol. From it come the
/// loader's lookups ([`HookTable::load`]), the [`HookName`] list and names,
/// and whether a plugin exports a hook ([`HookTable::has`]).
macro_rules! hook_table {
    ($($field:ident: $ty:ty = $variant:ident, $symbol:literal;)*) => {
        /// The hooks a plugin exports.
        #[derive(Debug, Default, Clone, Copy)]
        pub(crate) struct HookTable {
            $(pub $field: Option<$ty>,)*
        }

        /// A hook, without arguments: for asking whether a plugin exports it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum HookName {
            $($variant,)*
        }

        impl HookName {
            /// Every hook, in the order of the table.
            pub const ALL: &'static [HookName] = &[$(HookName::$variant,)*];

            /// The C symbol, which is also the name in logs.
            pub fn symbol(self) -> &'static str {
                match self {
                    $(HookName::$variant => $symbol,)*
                }
            }
        }

        impl HookTable {
            /// Looks up every hook in `library`.
            ///
            /// # Safety
            /// `library` is a plugin built against mailerq.h, whose symbols
            /// have the types declared in the table; the pointers are valid
            /// while the library stays loaded.
            pub(crate) unsafe fn load(library: &libloading::os::unix::Library) -> HookTable {
                HookTable {
                    // SAFETY: the caller's contract; each lookup uses the table's type.
                    $($field: unsafe { library.get::<$ty>($symbol) }.ok().map(|s| *s),)*
                }
            }

            /// Whether the plugin exports `name`.
            pub(crate) fn has(&self, name: HookName) -> bool {
                match name {
                    $(HookName::$variant => self.$field.is_some(),)*
                }
            }
        }
    };
}

hook_table! {
    connect: ConnFn = Connect, "mq_smtp_in_connect";
    secure: ConnFn = Secure, "mq_smtp_in_secure";
    authenticate: AuthFn = Authenticate, "mq_smtp_in_authenticate";
    mailfrom: AddrFn = MailFrom, "mq_smtp_in_mailfrom";
    rcptto: AddrFn = RcptTo, "mq_smtp_in_rcptto";
    data: DataFn = Data, "mq_smtp_in_data";
    message: MessageFn = Message, "mq_smtp_in_message";
    close: ConnFn = Close, "mq_smtp_in_close";
    out_data: MessageFn = OutData, "mq_smtp_out_data";
    out_sent: MessageFn = OutSent, "mq_smtp_out_sent";
}

/// A hook and its arguments.
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
    /// One recipient's copy; borrowed for the whole hook.
    Message(&'a mut MqMessage),
    Close,
    /// Outbound: entered DATA, before the body (MQ_setMime replaces what is sent).
    OutData(&'a mut MqMessage),
    /// Outbound: body and final dot sent, reply not yet known.
    OutSent(&'a mut MqMessage),
}

impl Hook<'_> {
    /// Which hook this is.
    pub fn kind(&self) -> HookName {
        match self {
            Hook::Connect => HookName::Connect,
            Hook::Secure => HookName::Secure,
            Hook::Authenticate { .. } => HookName::Authenticate,
            Hook::MailFrom(_) => HookName::MailFrom,
            Hook::RcptTo(_) => HookName::RcptTo,
            Hook::Data(_) => HookName::Data,
            Hook::Message(_) => HookName::Message,
            Hook::Close => HookName::Close,
            Hook::OutData(_) => HookName::OutData,
            Hook::OutSent(_) => HookName::OutSent,
        }
    }

    /// The C name, for logs.
    pub fn name(&self) -> &'static str {
        self.kind().symbol()
    }

    fn exported_by(&self, hooks: &HookTable) -> bool {
        hooks.has(self.kind())
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
    pub fn exports(&self, hook: HookName) -> bool {
        self.list.iter().any(|p| p.hooks.has(hook))
    }
}

/// Runs `hook` through the plugins: false = next plugin; true = wait for
/// MQ_continue (next), MQ_complete (stop) or MQ_retry (from the first again).
pub async fn run(
    plugins: &Plugins,
    contexts: &WorkerContexts,
    conn: &PluginConnection,
    mut hook: Hook<'_>,
    timeout: Duration,
) -> Result<(), Timeout> {
    // Argument objects live for the whole hook, so pointers stay valid while a plugin holds control.
    let mut address = match &hook {
        Hook::MailFrom(a) | Hook::RcptTo(a) => Some(MqAddress::new(a)),
        _ => None,
    };
    let address: *mut MqAddress = address.as_mut().map_or(std::ptr::null_mut(), |a| a as *mut MqAddress);
    // The message borrowed for the whole hook, as the pointer plugins get;
    // from here on it is reached only through this pointer.
    let message: *mut MqMessage = match &mut hook {
        Hook::Message(m) | Hook::OutData(m) | Hook::OutSent(m) => &mut **m,
        _ => std::ptr::null_mut(),
    };
    'restart: loop {
        for (i, plugin) in plugins.list.iter().enumerate() {
            if !hook.exported_by(&plugin.hooks) {
                continue;
            }
            let (ctx, handle) = (contexts.context(i), conn.handle(i));
            conn.arm(i);
            // SAFETY: `message` is NULL or the hook's borrowed message, not otherwise accessed.
            if let Some(m) = unsafe { message.as_mut() } {
                m.plugin.clone_from(&plugin.name);
            }
            let h = &plugin.hooks;
            let started = std::time::Instant::now();
            let observe = || {
                if let Some(o) = &plugins.observer {
                    o(&plugin.name, hook.name(), started.elapsed());
                }
            };
            let call = crate::blocking::enter(&plugin.shared_name, hook.name());
            // SAFETY (every call below): the function has the signature
            // mailerq.h declares for this hook; the context, connection and
            // argument pointers stay valid until the hand-off ends, and the call
            // is made on the worker thread that owns them.
            let took = unsafe {
                match &hook {
                    Hook::Connect => h.connect.is_some_and(|f| f(ctx, handle)),
                    Hook::Secure => h.secure.is_some_and(|f| f(ctx, handle)),
                    Hook::Close => h.close.is_some_and(|f| f(ctx, handle)),
                    Hook::MailFrom(_) => h.mailfrom.is_some_and(|f| f(ctx, handle, address)),
                    Hook::RcptTo(_) => h.rcptto.is_some_and(|f| f(ctx, handle, address)),
                    Hook::Data(mime) => h.data.is_some_and(|f| f(ctx, handle, mime.as_ptr().cast(), mime.len())),
                    Hook::Message(_) => h.message.is_some_and(|f| f(ctx, handle, message)),
                    Hook::OutData(_) => h.out_data.is_some_and(|f| f(ctx, handle, message)),
                    Hook::OutSent(_) => h.out_sent.is_some_and(|f| f(ctx, handle, message)),
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
                        observe();
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
            observe();
            if let Hook::Message(_) = hook {
                // The plugin's turn is over: what it did through MQ_json is what
                // the next plugin (and the queue) sees.
                // SAFETY: the hook's borrowed message, reached only through this pointer.
                unsafe { (*message).sync_json() };
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
