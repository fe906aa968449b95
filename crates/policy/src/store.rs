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
}

impl Sqlite {
    /// Runs SQL directly (tests, and `sluice database` commands to come).
    pub fn execute(&self, sql: &str) -> Result<(), DbError> {
        Ok(self.conn.execute_batch(sql)?)
    }
}
