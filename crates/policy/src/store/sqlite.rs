//! The embedded store: one SQLite file in the data directory, no server.

use super::{DbError, Dialect, Row, Store, Value, VERSION_TABLE};
use crate::schema::{Table, TABLES};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const SQL: Dialect = Dialect {
    param: |n, _| format!("?{n}"),
    read: |c| c.to_string(),
    now: "CURRENT_TIMESTAMP",
};

/// The embedded store: one SQLite file.
pub struct Sqlite {
    conn: rusqlite::Connection,
    path: PathBuf,
}

impl Sqlite {
    pub fn open(path: &Path) -> Result<Sqlite, DbError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| DbError::Address(format!("{}: {e}", dir.display())))?;
        }
        let conn = rusqlite::Connection::open(path)?;
        // Another process (sqlite3, an operator's script) may be writing: wait for it a while.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Sqlite {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Runs SQL directly (tests, and `sluice database` commands to come).
    pub fn execute(&self, sql: &str) -> Result<(), DbError> {
        Ok(self.conn.execute_batch(sql)?)
    }

    /// Runs one write and raises the change marker, both or neither.
    fn write(&mut self, sql: &str, params: Vec<Value>, returning: bool) -> Result<i64, DbError> {
        let tx = self.conn.transaction()?;
        let params = rusqlite::params_from_iter(params.iter().map(bound));
        let out = if returning {
            tx.query_row(sql, params, |r| r.get(0))?
        } else {
            tx.execute(sql, params)? as i64
        };
        tx.execute(&format!("UPDATE {VERSION_TABLE} SET version = version + 1"), [])?;
        tx.commit()?;
        Ok(out)
    }
}

fn bound(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null | Value::Other(_) => rusqlite::types::Value::Null,
        Value::Int(n) => rusqlite::types::Value::Integer(*n),
        Value::Text(t) => rusqlite::types::Value::Text(t.clone()),
    }
}

impl Store for Sqlite {
    fn migrate(&mut self) -> Result<(), DbError> {
        let tx = self.conn.transaction()?;
        for table in TABLES {
            tx.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {} (id INTEGER PRIMARY KEY, updated TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
                table.name
            ))?;
            let mut existing = std::collections::HashSet::new();
            let mut info = tx.prepare(&format!("PRAGMA table_info({})", table.name))?;
            let names = info.query_map([], |r| r.get::<_, String>(1))?;
            for name in names {
                existing.insert(name?);
            }
            drop(info);
            for (column, kind) in table.columns {
                if !existing.contains(*column) {
                    tx.execute_batch(&format!(
                        "ALTER TABLE {} ADD COLUMN {column} {}",
                        table.name,
                        kind.sql()
                    ))?;
                }
            }
        }
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (id INTEGER PRIMARY KEY, version INTEGER NOT NULL);
             INSERT INTO {VERSION_TABLE} (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING;"
        ))?;
        tx.commit()?;
        Ok(())
    }

    fn rows(&mut self, table: &Table) -> Result<Vec<Row>, DbError> {
        let mut statement = self.conn.prepare(&SQL.select(table))?;
        let rows = statement.query_map([], |r| {
            let mut values = HashMap::with_capacity(table.columns.len());
            for (i, (column, _)) in table.columns.iter().enumerate() {
                use rusqlite::types::ValueRef;
                let v = match r.get_ref(i + 1)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::Int(n),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Real(_) => Value::Other("real number"),
                    ValueRef::Blob(_) => Value::Other("blob"),
                };
                values.insert(*column, v);
            }
            Ok(Row { id: r.get(0)?, values })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn describe(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    dialect_writes!();

    fn version(&mut self) -> Result<i64, DbError> {
        Ok(self
            .conn
            .query_row(&format!("SELECT version FROM {VERSION_TABLE} WHERE id = 1"), [], |r| {
                r.get(0)
            })?)
    }
}
