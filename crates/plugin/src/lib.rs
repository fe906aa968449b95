//! Native plugins written against MailerQ's C API (`include/mailerq.h`):
//! loading them ([`loader`]), the per-worker contexts they get
//! ([`context`]) and the `MQ_*` functions the host exports to them ([`abi`]).
//!
//! This is the only crate with `unsafe`: every call into a plugin and every
//! pointer a plugin hands back crosses the C ABI here.

pub mod abi;
mod blocking;
pub mod connection;
pub mod context;
pub mod event_loop;
pub mod hooks;
mod json;
mod libev;
pub mod loader;
pub mod message;

pub use connection::{PluginConnection, Response};
pub use context::WorkerContexts;
pub use hooks::{Hook, HookName, Timeout};
pub use loader::{PluginError, Plugins};
pub use message::MqMessage;

/// Locks a mutex, going on after a panic elsewhere: the state behind the
/// crate's locks (hand-off slots, the blocking watchdog's calls) is never left
/// half-updated.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The API version this host implements (`MQ_API_VERSION` in the header).
pub const API_VERSION: i32 = 1;
