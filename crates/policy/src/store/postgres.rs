//! The shared store: a PostgreSQL database several instances read, so one
//! policy governs them all. One connection, opened again when it breaks
//! (a server restart costs one failed reload, not the process).

use super::{DbError, Dialect, Row, Store, Value, VERSION_TABLE};
use crate::schema::{Table, Type, TABLES};
use postgres::types::ToSql;
use std::collections::HashMap;
use std::time::Duration;

const NOW: &str = "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')";

const SQL: Dialect = Dialect {
    param: |n, kind| match kind {
        Type::Text => format!("${n}::text"),
        Type::Integer => format!("CAST(${n}::text AS INTEGER)"),
    },
    read: |c| format!("{c}::text"),
    now: NOW,
};

/// How long a connection attempt and a statement may take: the store is
/// used with a lock held, and a server that stopped answering must not
/// stop the instance's API or reloads with it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const STATEMENT_TIMEOUT: &str = "10s";

/// Serialises migrations when several instances start at once (a number of our own).
const MIGRATION_LOCK: i64 = 0x736c_7569_6365; // "sluice"

/// A PostgreSQL settings database.
pub struct Postgres {
    config: postgres::Config,
    client: Option<postgres::Client>,
}

impl Postgres {
    /// Connects to `address` (`postgresql://USER:PASSWORD@HOST[:PORT]/DB`, libpq's URL form).
    pub fn connect(address: &str) -> Result<Postgres, DbError> {
        let mut config: postgres::Config = address
            .parse()
            .map_err(|e| DbError::Address(format!("not a PostgreSQL address: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let mut store = Postgres { config, client: None };
        store.client()?;
        Ok(store)
    }

    /// The connection, opened (again) when there is none or it broke.
    fn client(&mut self) -> Result<&mut postgres::Client, DbError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let mut client = self.config.connect(postgres::NoTls)?;
            client.batch_execute(&format!("SET statement_timeout = '{STATEMENT_TIMEOUT}'"))?;
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Runs `op` on the connection; a connection that broke meanwhile is dropped, to be opened again next time.
    fn with<T>(&mut self, op: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error>) -> Result<T, DbError> {
        let client = self.client()?;
        let out = op(client);
        if out.is_err() && client.is_closed() {
            self.client = None;
        }
        Ok(out?)
    }

    /// Runs a read; when the connection turns out to have broken (a server
    /// restart), once more on a new one. Writes are not repeated: whether a
    /// commit whose answer was lost took effect is unknown.
    fn read<T>(&mut self, op: impl Fn(&mut postgres::Client) -> Result<T, postgres::Error>) -> Result<T, DbError> {
        match self.with(&op) {
            Err(_) if self.client.is_none() => self.with(&op),
            other => other,
        }
    }

    /// Runs one write and raises the change marker, both or neither.
    fn write(&mut self, sql: &str, params: Vec<Value>, returning: bool) -> Result<i64, DbError> {
        let params: Vec<Option<String>> = params.iter().map(bound).collect();
        self.with(|c| {
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            let mut tx = c.transaction()?;
            let out = if returning {
                let row = tx.query_one(sql, &refs)?;
                row.try_get::<_, i32>(0)
                    .map(i64::from)
                    .or_else(|_| row.try_get::<_, i64>(0))?
            } else {
                tx.execute(sql, &refs)? as i64
            };
            tx.execute(&format!("UPDATE {VERSION_TABLE} SET version = version + 1"), &[])?;
            tx.commit()?;
            Ok(out)
        })
    }
}

/// Every parameter goes as text (or NULL); the SQL casts it to the column's type.
fn bound(v: &Value) -> Option<String> {
    match v {
        Value::Null | Value::Other(_) => None,
        Value::Int(n) => Some(n.to_string()),
        Value::Text(t) => Some(t.clone()),
    }
}

impl Store for Postgres {
    fn migrate(&mut self) -> Result<(), DbError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            for table in TABLES {
                tx.batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {} (id SERIAL PRIMARY KEY, updated TEXT NOT NULL DEFAULT {NOW})",
                    table.name
                ))?;
                let existing: Vec<String> = tx
                    .query(
                        "SELECT column_name::text FROM information_schema.columns
                         WHERE table_schema = current_schema() AND table_name = $1",
                        &[&table.name],
                    )?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                for (column, kind) in table.columns {
                    if !existing.iter().any(|e| e == column) {
                        tx.batch_execute(&format!(
                            "ALTER TABLE {} ADD COLUMN {column} {}",
                            table.name,
                            kind.sql()
                        ))?;
                    }
                }
            }
            tx.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (id INTEGER PRIMARY KEY, version BIGINT NOT NULL);
                 INSERT INTO {VERSION_TABLE} (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING;"
            ))?;
            tx.commit()
        })
    }

    fn rows(&mut self, table: &Table) -> Result<Vec<Row>, DbError> {
        let found = self.read(|c| c.query(&SQL.select(table), &[]))?;
        let mut rows = Vec::with_capacity(found.len());
        for r in found {
            let id: Option<String> = r.try_get(0)?;
            let Some(id) = id.and_then(|i| i.parse().ok()) else {
                continue; // an id that is no number cannot be named in a report or an API call
            };
            let mut values = HashMap::with_capacity(table.columns.len());
            for (i, (column, _)) in table.columns.iter().enumerate() {
                let v: Option<String> = r.try_get(i + 1)?;
                values.insert(*column, v.map_or(Value::Null, Value::Text));
            }
            rows.push(Row { id, values });
        }
        Ok(rows)
    }

    fn describe(&self) -> String {
        let host = self
            .config
            .get_hosts()
            .first()
            .map(|h| match h {
                postgres::config::Host::Tcp(name) => name.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_default();
        let port = self
            .config
            .get_ports()
            .first()
            .map_or(String::new(), |p| format!(":{p}"));
        let user = self.config.get_user().map_or(String::new(), |u| format!("{u}@"));
        let db = self.config.get_dbname().unwrap_or("");
        format!("postgresql://{user}{host}{port}/{db}")
    }

    dialect_writes!();

    fn version(&mut self) -> Result<i64, DbError> {
        self.read(|c| {
            c.query_one(&format!("SELECT version FROM {VERSION_TABLE} WHERE id = 1"), &[])
                .and_then(|r| r.try_get(0))
        })
    }
}
