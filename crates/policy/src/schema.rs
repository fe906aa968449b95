//! The tables of `spec/database.md`: plain TEXT and INTEGER columns, an
//! `id` and an `updated` in every table. Created when missing; columns
//! added when missing, never dropped.

/// A column's SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Text,
    Integer,
}

impl Type {
    pub fn sql(self) -> &'static str {
        match self {
            Type::Text => "TEXT",
            Type::Integer => "INTEGER",
        }
    }
}

/// One table: its name and its columns besides `id` and `updated`.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Type)],
}

use Type::{Integer as I, Text as T};

/// The limit columns of `capacity`, shared by `flood_responses` (its reduced limits).
macro_rules! limits {
    ($($extra:expr),*) => {
        &[
            $($extra,)*
            ("message_rate", T),
            ("connection_rate", T),
            ("connections", I),
            ("ip_message_rate", T),
            ("ip_connection_rate", T),
            ("ip_connections", I),
            ("messages_per_connection", I),
            ("idle_seconds", I),
            ("queue_size", I),
        ]
    };
}

pub const CAPACITY: Table = Table {
    name: "capacity",
    columns: limits!(("localip", T), ("domain", T)),
};

pub const FLOOD_RESPONSES: Table = Table {
    name: "flood_responses",
    columns: limits!(
        ("name", T),
        ("type", T),
        ("pattern", T),
        ("domain", T),
        ("localip", T),
        ("threshold", T),
        ("pause", I),
        ("reduce", I)
    ),
};

pub const PAUSED: Table = Table {
    name: "paused",
    columns: &[
        ("localip", T),
        ("domain", T),
        ("target", T),
        ("tag", T),
        ("expire", T),
        ("reason", T),
    ],
};

pub const DELEGATES: Table = Table {
    name: "delegates",
    columns: &[("localip", T), ("domain", T), ("delegate", T)],
};

pub const MTANAMES: Table = Table {
    name: "mtanames",
    columns: &[("localip", T), ("name", T)],
};

pub const DNS: Table = Table {
    name: "dns",
    columns: &[("domain", T), ("type", T), ("value", T)],
};

pub const DKIM_KEYS: Table = Table {
    name: "dkim_keys",
    columns: &[
        ("domain", T),
        ("selector", T),
        ("privatekey", T),
        ("headers", T),
        ("expire", T),
    ],
};

pub const DKIM_PATTERNS: Table = Table {
    name: "dkim_patterns",
    columns: &[("type", T), ("pattern", T), ("key", I)],
};

pub const LOCALS: Table = Table {
    name: "locals",
    columns: &[("type", T), ("pattern", T)],
};

pub const SUPPRESSIONS: Table = Table {
    name: "suppressions",
    columns: &[
        ("type", T),
        ("value", T),
        ("code", I),
        ("extended", T),
        ("description", T),
    ],
};

/// MailerQ's IP pools (its `/v1/pools`): a named set of local IPs a
/// message picks with its `pool` property. An addition to spec/database.md.
pub const POOLS: Table = Table {
    name: "pools",
    columns: &[("name", T), ("description", T)],
};

/// The local IPs of each pool (MailerQ's `/v1/poolips`).
pub const POOLIPS: Table = Table {
    name: "poolips",
    columns: &[("name", T), ("localip", T)],
};

/// Bearer tokens for the HTTP API besides `www-tokens` (spec: "a `tokens`
/// table"): `token`, `description`. Never answered by any API.
pub const TOKENS: Table = Table {
    name: "tokens",
    columns: &[("token", T), ("description", T)],
};

/// Every table, in the spec's order (then the pools, `tokens` last).
pub const TABLES: &[&Table] = &[
    &CAPACITY,
    &FLOOD_RESPONSES,
    &PAUSED,
    &DELEGATES,
    &MTANAMES,
    &DNS,
    &DKIM_KEYS,
    &DKIM_PATTERNS,
    &LOCALS,
    &SUPPRESSIONS,
    &POOLS,
    &POOLIPS,
    &TOKENS,
];
