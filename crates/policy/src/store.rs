//! Where the tables live: SQLite (embedded, the default) today; the
//! [`Store`] trait is what a PostgreSQL store will implement.

use crate::schema::{Table, TABLES};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why the database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database-address: {0}")]
    Address(String),
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// A column's value as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    /// A REAL or BLOB where TEXT or INTEGER belongs (SQLite stores what it is given).
    Other(&'static str),
}

/// One row of a table: its id and its columns by name.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: i64,
    pub values: HashMap<&'static str, Value>,
}

impl Row {
    /// A TEXT column: `None` for NULL or ''. A number stored in it reads as its digits.
    pub fn text(&self, column: &str) -> Result<Option<String>, String> {
        match self.values.get(column) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Text(t)) if t.trim().is_empty() => Ok(None),
            Some(Value::Text(t)) => Ok(Some(t.trim().to_string())),
            Some(Value::Int(n)) => Ok(Some(n.to_string())),
            Some(Value::Other(kind)) => Err(format!("{column}: a {kind} where text belongs")),
        }
    }

    /// An INTEGER column: `None` for NULL or ''.
    pub fn int(&self, column: &str) -> Result<Option<i64>, String> {
        match self.values.get(column) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Int(n)) => Ok(Some(*n)),
            Some(Value::Text(t)) if t.trim().is_empty() => Ok(None),
            Some(Value::Text(t)) => t
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("{column}: `{}` is not a whole number", shown(t))),
            Some(Value::Other(kind)) => Err(format!("{column}: a {kind} where a whole number belongs")),
        }
    }
}

/// A value from a row as it may appear in a log line or a report: bounded,
/// control characters replaced.
pub fn shown(text: &str) -> String {
    text.chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A settings database.
pub trait Store: Send {
    /// Creates missing tables and adds missing columns.
    fn migrate(&mut self) -> Result<(), DbError>;
    /// Every row of `table`, by id.
    fn rows(&mut self, table: &Table) -> Result<Vec<Row>, DbError>;
    /// Where it is, for logs (no password).
    fn describe(&self) -> String;
    /// Adds a row; `values` name columns of `table` only.
    fn insert(&mut self, table: &Table, values: &[(&'static str, Value)]) -> Result<i64, DbError>;
    /// Sets `values` on the rows whose `key` columns equal the given values ('' and NULL alike).
    fn update(
        &mut self,
        table: &Table,
        key: &[(&'static str, Value)],
        values: &[(&'static str, Value)],
    ) -> Result<usize, DbError>;
    /// Removes the rows whose `key` columns equal the given values ('' and NULL alike).
    fn delete(&mut self, table: &Table, key: &[(&'static str, Value)]) -> Result<usize, DbError>;
}

/// The WHERE clause for `key`: every column equal, an empty value matching '' and NULL.
fn matching(key: &[(&'static str, Value)], first: usize) -> (String, Vec<rusqlite::types::Value>) {
    let mut clauses = Vec::new();
    let mut params = Vec::new();
    for (column, value) in key {
        match value {
            Value::Null => clauses.push(format!("({column} IS NULL OR {column} = '')")),
            Value::Text(t) if t.is_empty() => clauses.push(format!("({column} IS NULL OR {column} = '')")),
            v => {
                params.push(sql_value(v));
                clauses.push(format!("{column} = ?{}", first + params.len()));
            }
        }
    }
    if clauses.is_empty() {
        clauses.push("1 = 1".into());
    }
    (clauses.join(" AND "), params)
}

fn sql_value(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null | Value::Other(_) => rusqlite::types::Value::Null,
        Value::Int(n) => rusqlite::types::Value::Integer(*n),
        Value::Text(t) => rusqlite::types::Value::Text(t.clone()),
    }
}

/// Column names come from the schema, never from a request.
fn known(table: &Table, values: &[(&'static str, Value)]) -> Result<(), DbError> {
    match values.iter().find(|(c, _)| !table.columns.iter().any(|(k, _)| k == c)) {
        Some((c, _)) => Err(DbError::Address(format!("{}: no column {c}", table.name))),
        None => Ok(()),
    }
}

/// Opens the database `database-address` names (`sqlite://PATH`, `DATA`
/// meaning the data directory), creating and migrating its tables.
pub fn open(address: &str, data_dir: &Path) -> Result<Box<dyn Store>, DbError> {
    let address = address.trim();
    if let Some(path) = address.strip_prefix("sqlite://") {
        let path = match path.strip_prefix("DATA/") {
            Some(rest) => data_dir.join(rest),
            None => PathBuf::from(path),
        };
        let mut store = Sqlite::open(&path)?;
        store.migrate()?;
        return Ok(Box::new(store));
    }
    let scheme = address.split("://").next().unwrap_or("");
    Err(DbError::Address(match scheme {
        "postgresql" | "postgres" => "PostgreSQL is not supported yet (use sqlite://PATH; see docs/shaping.md)".into(),
        "mysql" => "MySQL is not supported (use sqlite://PATH)".into(),
        _ => format!("expected sqlite://PATH, got `{}`", shown(address)),
    }))
}

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
}

impl Store for Sqlite {
    fn migrate(&mut self) -> Result<(), DbError> {
        for table in TABLES {
            self.conn.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {} (id INTEGER PRIMARY KEY, updated TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
                table.name
            ))?;
            let mut existing = std::collections::HashSet::new();
            let mut info = self.conn.prepare(&format!("PRAGMA table_info({})", table.name))?;
            let names = info.query_map([], |r| r.get::<_, String>(1))?;
            for name in names {
                existing.insert(name?);
            }
            drop(info);
            for (column, kind) in table.columns {
                if !existing.contains(*column) {
                    self.conn.execute_batch(&format!(
                        "ALTER TABLE {} ADD COLUMN {column} {}",
                        table.name,
                        kind.sql()
                    ))?;
                }
            }
        }
        Ok(())
    }

    fn rows(&mut self, table: &Table) -> Result<Vec<Row>, DbError> {
        let columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
        let sql = format!("SELECT id, {} FROM {} ORDER BY id", columns.join(", "), table.name);
        let mut statement = self.conn.prepare(&sql)?;
        let rows = statement.query_map([], |r| {
            let mut values = HashMap::with_capacity(columns.len());
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

    fn insert(&mut self, table: &Table, values: &[(&'static str, Value)]) -> Result<i64, DbError> {
        known(table, values)?;
        let columns: Vec<&str> = values.iter().map(|(c, _)| *c).collect();
        let marks: Vec<String> = (1..=values.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            table.name,
            columns.join(", "),
            marks.join(", ")
        );
        let params: Vec<rusqlite::types::Value> = values.iter().map(|(_, v)| sql_value(v)).collect();
        self.conn.execute(&sql, rusqlite::params_from_iter(params))?;
        Ok(self.conn.last_insert_rowid())
    }

    fn update(
        &mut self,
        table: &Table,
        key: &[(&'static str, Value)],
        values: &[(&'static str, Value)],
    ) -> Result<usize, DbError> {
        known(table, key)?;
        known(table, values)?;
        let mut params: Vec<rusqlite::types::Value> = values.iter().map(|(_, v)| sql_value(v)).collect();
        let sets: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, (c, _))| format!("{c} = ?{}", i + 1))
            .collect();
        let (clause, more) = matching(key, params.len());
        params.extend(more);
        let sql = format!(
            "UPDATE {} SET {}, updated = CURRENT_TIMESTAMP WHERE {clause}",
            table.name,
            sets.join(", ")
        );
        Ok(self.conn.execute(&sql, rusqlite::params_from_iter(params))?)
    }

    fn delete(&mut self, table: &Table, key: &[(&'static str, Value)]) -> Result<usize, DbError> {
        known(table, key)?;
        let (clause, params) = matching(key, 0);
        let sql = format!("DELETE FROM {} WHERE {clause}", table.name);
        Ok(self.conn.execute(&sql, rusqlite::params_from_iter(params))?)
    }
}

impl Sqlite {
    /// Runs SQL directly (tests, and `sluice database` commands to come).
    pub fn execute(&self, sql: &str) -> Result<(), DbError> {
        Ok(self.conn.execute_batch(sql)?)
    }
}
