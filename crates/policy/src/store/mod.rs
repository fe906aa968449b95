//! Where the tables live: SQLite (embedded, the default, [`sqlite`]) or
//! PostgreSQL (shared by several instances, [`postgres`]), behind one
//! [`Store`] trait. The SQL both speak is written once, here ([`Dialect`]).

/// The writes of [`Store`], the same in every store: the store's `SQL`
/// [`Dialect`] writes the statement, its `write` runs it in one transaction
/// with the change marker.
macro_rules! dialect_writes {
    () => {
        fn insert(&mut self, table: &Table, values: &[(&'static str, Value)]) -> Result<i64, DbError> {
            let (sql, params) = SQL.insert(table, values)?;
            self.write(&sql, params, true)
        }

        fn update(
            &mut self,
            table: &Table,
            key: &[(&'static str, Value)],
            values: &[(&'static str, Value)],
        ) -> Result<usize, DbError> {
            let (sql, params) = SQL.update(table, key, values)?;
            Ok(self.write(&sql, params, false)? as usize)
        }

        fn delete(&mut self, table: &Table, key: &[(&'static str, Value)]) -> Result<usize, DbError> {
            let (sql, params) = SQL.delete(table, key)?;
            Ok(self.write(&sql, params, false)? as usize)
        }
    };
}

mod postgres;
mod sqlite;

pub use self::postgres::Postgres;
pub use self::sqlite::Sqlite;

use crate::schema::{Table, Type};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why the database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The address or the place it names is wrong (shown after the key's name).
    #[error("{0}")]
    Address(String),
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL's own words (the client's error says only "db error").
    #[error("PostgreSQL: {0}")]
    Postgres(String),
}

impl From<::postgres::Error> for DbError {
    fn from(e: ::postgres::Error) -> DbError {
        let text = match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => match std::error::Error::source(&e) {
                Some(source) => format!("{e}: {source}"),
                None => e.to_string(),
            },
        };
        DbError::Postgres(shown(&text))
    }
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
    /// The change marker: a number every write through a [`Store`] raises,
    /// so instances sharing the database notice a change in a cheap poll.
    fn version(&mut self) -> Result<i64, DbError>;
}

/// The change marker's table (not in the spec: Sluice's own bookkeeping).
/// A script that writes the tables directly may raise it too, to have its
/// change read at once instead of at the next `database-ttl`.
pub const VERSION_TABLE: &str = "sluice_version";

/// How one SQL dialect writes what both stores say.
pub(crate) struct Dialect {
    /// The `n`th (1-based) parameter, bound as text or NULL, as a value of `kind`.
    pub param: fn(usize, Type) -> String,
    /// A column as read (PostgreSQL reads every column as text: the types
    /// an operator's own table has are not ours to guess).
    pub read: fn(&str) -> String,
    /// The current UTC time as `YYYY-MM-DD HH:MM:SS`.
    pub now: &'static str,
}

impl Dialect {
    pub fn select(&self, table: &Table) -> String {
        let columns: Vec<String> = table.columns.iter().map(|(c, _)| (self.read)(c)).collect();
        format!(
            "SELECT {}, {} FROM {} ORDER BY id",
            (self.read)("id"),
            columns.join(", "),
            table.name
        )
    }

    pub fn insert(&self, table: &Table, values: &[(&'static str, Value)]) -> Result<(String, Vec<Value>), DbError> {
        known(table, values)?;
        let columns: Vec<&str> = values.iter().map(|(c, _)| *c).collect();
        let marks: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, (c, _))| (self.param)(i + 1, kind(table, c)))
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}) RETURNING id",
            table.name,
            columns.join(", "),
            marks.join(", ")
        );
        Ok((sql, values.iter().map(|(_, v)| v.clone()).collect()))
    }

    pub fn update(
        &self,
        table: &Table,
        key: &[(&'static str, Value)],
        values: &[(&'static str, Value)],
    ) -> Result<(String, Vec<Value>), DbError> {
        known(table, key)?;
        known(table, values)?;
        let mut params: Vec<Value> = values.iter().map(|(_, v)| v.clone()).collect();
        let sets: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, (c, _))| format!("{c} = {}", (self.param)(i + 1, kind(table, c))))
            .collect();
        let (clause, more) = self.matching(table, key, params.len());
        params.extend(more);
        let sql = format!(
            "UPDATE {} SET {}, updated = {} WHERE {clause}",
            table.name,
            sets.join(", "),
            self.now
        );
        Ok((sql, params))
    }

    pub fn delete(&self, table: &Table, key: &[(&'static str, Value)]) -> Result<(String, Vec<Value>), DbError> {
        known(table, key)?;
        let (clause, params) = self.matching(table, key, 0);
        Ok((format!("DELETE FROM {} WHERE {clause}", table.name), params))
    }

    /// The WHERE clause for `key`: every column equal, an empty value matching '' and NULL.
    fn matching(&self, table: &Table, key: &[(&'static str, Value)], first: usize) -> (String, Vec<Value>) {
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        for (column, value) in key {
            let kind = kind(table, column);
            let empty = match value {
                Value::Null => true,
                Value::Text(t) => t.is_empty(),
                _ => false,
            };
            if empty && kind == Type::Integer {
                clauses.push(format!("{column} IS NULL"));
            } else if empty {
                clauses.push(format!("({column} IS NULL OR {column} = '')"));
            } else {
                params.push(value.clone());
                clauses.push(format!("{column} = {}", (self.param)(first + params.len(), kind)));
            }
        }
        if clauses.is_empty() {
            clauses.push("1 = 1".into());
        }
        (clauses.join(" AND "), params)
    }
}

/// The type of a column `known` has checked.
fn kind(table: &Table, column: &str) -> Type {
    if column == "id" {
        return Type::Integer;
    }
    table
        .columns
        .iter()
        .find(|(c, _)| *c == column)
        .map_or(Type::Text, |(_, t)| *t)
}

/// Column names come from the schema, never from a request.
/// `id` may name a row in a key, not be set.
fn known(table: &Table, values: &[(&'static str, Value)]) -> Result<(), DbError> {
    match values
        .iter()
        .find(|(c, _)| *c != "id" && !table.columns.iter().any(|(k, _)| k == c))
    {
        Some((c, _)) => Err(DbError::Address(format!("{}: no column {c}", table.name))),
        None => Ok(()),
    }
}

/// Opens the database `database-address` names (`sqlite://PATH`, `DATA`
/// meaning the data directory, or `postgresql://...`), creating and
/// migrating its tables.
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
    match scheme {
        "postgresql" | "postgres" => {
            let mut store = Postgres::connect(address)?;
            store.migrate()?;
            Ok(Box::new(store))
        }
        "mysql" => Err(DbError::Address(
            "MySQL is not supported (use sqlite://PATH or postgresql://...)".into(),
        )),
        // Only the scheme is repeated: the rest may hold a password.
        _ => Err(DbError::Address(format!(
            "expected sqlite://PATH or postgresql://USER:PASSWORD@HOST[:PORT]/DB, got {}",
            match address.split_once("://") {
                Some((scheme, _)) => format!("a `{}://` address", shown(scheme)),
                None => "no scheme".to_string(),
            }
        ))),
    }
}
