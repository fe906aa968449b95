//! The SQL stores, `sqlite:///path` and `postgresql://user:password@host/db`
//! (instances sharing one): a table `message_store (id, value, expire,
//! modified, encoding)`, the fields MailerQ documents for its documents,
//! made when missing; a write is committed before the key is used.

use super::io;
use std::time::Duration;

const TABLE_SQLITE: &str = "CREATE TABLE IF NOT EXISTS message_store (id TEXT PRIMARY KEY, value BLOB NOT NULL, expire INTEGER NOT NULL, modified INTEGER NOT NULL, encoding TEXT NOT NULL)";
const TABLE_POSTGRES: &str = "CREATE TABLE IF NOT EXISTS message_store (id TEXT PRIMARY KEY, value BYTEA NOT NULL, expire BIGINT NOT NULL, modified BIGINT NOT NULL, encoding TEXT NOT NULL)";

/// Runs a blocking PostgreSQL call off the async runtime (the sync client
/// runs a runtime of its own, which cannot start inside another).
fn off_runtime<T: Send>(op: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(op).join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
}

/// A SQLite store.
pub struct Sqlite(std::sync::Mutex<rusqlite::Connection>);

impl Sqlite {
    /// The store in the file at `path`, its table made when missing; a
    /// locked database is waited for up to `timeout`.
    pub fn open(path: &std::path::Path, timeout: Duration) -> Result<Sqlite, String> {
        let db = rusqlite::Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        db.busy_timeout(timeout).map_err(|e| e.to_string())?;
        db.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; {TABLE_SQLITE}"
        ))
        .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Sqlite(std::sync::Mutex::new(db)))
    }

    fn db(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes (or replaces) the row of `key`.
    pub fn put(&self, key: &str, value: &[u8], expire: i64, encoding: &str) -> std::io::Result<()> {
        self.db()
            .execute(
                "INSERT INTO message_store (id, value, expire, modified, encoding) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (id) DO UPDATE SET value = excluded.value, expire = excluded.expire, \
                 modified = excluded.modified, encoding = excluded.encoding",
                rusqlite::params![key, value, expire, super::now_secs(), encoding],
            )
            .map(drop)
            .map_err(io)
    }

    /// The value of `key` unless it expired before `now`.
    pub fn get(&self, key: &str, now: i64) -> std::io::Result<Option<Vec<u8>>> {
        use rusqlite::OptionalExtension;
        self.db()
            .query_row(
                "SELECT value FROM message_store WHERE id = ?1 AND expire >= ?2",
                rusqlite::params![key, now],
                |r| r.get(0),
            )
            .optional()
            .map_err(io)
    }

    /// Deletes the rows that expired before `now`.
    pub fn sweep(&self, now: i64) -> std::io::Result<usize> {
        self.db()
            .execute("DELETE FROM message_store WHERE expire < ?1", [now])
            .map_err(io)
    }
}

/// A PostgreSQL store.
pub struct Postgres(std::sync::Mutex<postgres::Client>);

impl Postgres {
    /// Connects to `address`, makes the table when missing; each statement
    /// may take up to `timeout`.
    pub fn open(address: &str, timeout: Duration) -> Result<Postgres, String> {
        let mut config: postgres::Config = address.parse().map_err(|e: postgres::Error| e.to_string())?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeout);
        }
        let client = off_runtime(|| -> Result<postgres::Client, String> {
            let mut c = config.connect(postgres::NoTls).map_err(|e| e.to_string())?;
            let ms = timeout.as_millis().max(1);
            c.batch_execute(&format!("SET statement_timeout = {ms}; {TABLE_POSTGRES}"))
                .map_err(|e| e.to_string())?;
            Ok(c)
        })?;
        Ok(Postgres(std::sync::Mutex::new(client)))
    }

    /// Runs `op` on the connection, off the async runtime.
    fn with<T: Send>(
        &self,
        op: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send,
    ) -> std::io::Result<T> {
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let client: &mut postgres::Client = &mut guard;
        off_runtime(|| op(client)).map_err(io)
    }

    /// Writes (or replaces) the row of `key`.
    pub fn put(&self, key: &str, value: &[u8], expire: i64, encoding: &str) -> std::io::Result<()> {
        let now = super::now_secs();
        self.with(|c| {
            c.execute(
                "INSERT INTO message_store (id, value, expire, modified, encoding) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value, expire = EXCLUDED.expire, \
                 modified = EXCLUDED.modified, encoding = EXCLUDED.encoding",
                &[&key, &value, &expire, &now, &encoding],
            )
        })
        .map(drop)
    }

    /// The value of `key` unless it expired before `now`.
    pub fn get(&self, key: &str, now: i64) -> std::io::Result<Option<Vec<u8>>> {
        let row = self.with(|c| {
            c.query_opt(
                "SELECT value FROM message_store WHERE id = $1 AND expire >= $2",
                &[&key, &now],
            )
        })?;
        Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
    }

    /// Deletes the rows that expired before `now`.
    pub fn sweep(&self, now: i64) -> std::io::Result<usize> {
        self.with(|c| c.execute("DELETE FROM message_store WHERE expire < $1", &[&now]))
            .map(|n| n as usize)
    }
}
