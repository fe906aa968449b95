//! The settings database (`../shared/spec/database.md`): its tables
//! ([`schema`]), where they are stored ([`store`]: SQLite or PostgreSQL), and
//! reading them into the shaper's types ([`load`]), reporting the rows that
//! make no sense instead of stopping on them.

#![forbid(unsafe_code)]

pub mod dkim;
pub mod load;
pub mod schema;
pub mod store;

pub use dkim::{DkimKey, DkimKeys};
pub use load::{
    check_row, default_flood_rules, failure_status, load, parse_time, Delegates, DnsOverrides, Locals, MtaNames,
    PauseRow, Policy, Pools, Problem, Suppression, Suppressions,
};
pub use store::{open, DbError, Postgres, Sqlite, Store};

#[cfg(test)]
mod tests;
