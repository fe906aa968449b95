//! Traffic shaping for delivery, sans-IO: nothing here reads a clock, opens
//! a socket or spawns a task. Every decision takes `now` from the caller
//! (like quinn-proto), so the rules are tested with simulated time and the
//! delivery engine decides how to wait.
//!
//! - [`rate`]: `N/period` rates and the pacer that spaces attempts evenly.
//! - [`capacity`]: capacity rows (`../shared/spec/database.md`) and the
//!   most-specific-row-wins resolution of the limits for one destination.
//! - [`pattern`]: the spec's pattern types (`mx:` scopes use fnmatch).
//! - [`flood`]: flood rules, replies that pause or slow a destination.
//! - [`pause`]: pauses by local IP, domain, MX IP and tag.
//! - [`recent`]: counts of the last minute (the current rates shown).
//! - [`shaper`]: the live state — counts and pacers per destination and per
//!   MX IP — and the decisions: may a connection open, may a message go.

#![forbid(unsafe_code)]

pub mod capacity;
pub mod flood;
pub mod pattern;
pub mod pause;
pub mod rate;
pub mod recent;
pub mod shaper;

pub use capacity::{Capacity, CapacityRow, Effective, Limit};
pub use flood::{FloodRule, FloodRules, Matcher, Reduced};
pub use pause::Pause;
pub use rate::{Pacer, Rate};
pub use shaper::{Busy, Decision, Destination, FloodEffect, Shaper};
