//! The SQL stores, `sqlite:///path`, `postgresql://user:password@host/db`
//! and `mysql://user:password@host/db` (instances sharing one): a table `message_store (id, value, expire,
//! modified, encoding)`, the fields MailerQ documents for its documents,
//! made when missing; a write is committed before the key is used.

use super::io;
use std::time::Duration;

const TABLE_SQLITE: &str = "CREATE TABLE IF NOT EXISTS message_store (id TEXT PRIMARY KEY, value BLOB NOT NULL, expire INTEGER NOT NULL, modified INTEGER NOT NULL, encoding TEXT NOT NULL)";
const TABLE_MYSQL: &str = "CREATE TABLE IF NOT EXISTS message_store (id VARCHAR(200) PRIMARY KEY, value LONGBLOB NOT NULL, expire BIGINT NOT NULL, modified BIGINT NOT NULL, encoding VARCHAR(16) NOT NULL)";
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

/// A PostgreSQL store: one connection, opened again when the server dropped it.
pub struct Postgres {
    client: std::sync::Mutex<postgres::Client>,
    config: postgres::Config,
    timeout: Duration,
}

impl Postgres {
    /// Connects to `address`, makes the table when missing; each statement
    /// may take up to `timeout`.
    pub fn open(address: &str, timeout: Duration) -> Result<Postgres, String> {
        let mut config: postgres::Config = address.parse().map_err(|e: postgres::Error| e.to_string())?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeout);
        }
        let client = off_runtime(|| Postgres::connect(&config, timeout))?;
        Ok(Postgres {
            client: std::sync::Mutex::new(client),
            config,
            timeout,
        })
    }

    fn connect(config: &postgres::Config, timeout: Duration) -> Result<postgres::Client, String> {
        let mut c = config.connect(postgres::NoTls).map_err(|e| e.to_string())?;
        let ms = timeout.as_millis().max(1);
        c.batch_execute(&format!("SET statement_timeout = {ms}; {TABLE_POSTGRES}"))
            .map_err(|e| e.to_string())?;
        Ok(c)
    }

    /// Runs `op` on the connection, off the async runtime; a connection the
    /// server closed (a restart) is opened again first.
    fn with<T: Send>(
        &self,
        op: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send,
    ) -> std::io::Result<T> {
        let mut guard = self.client.lock().unwrap_or_else(|e| e.into_inner());
        let client: &mut postgres::Client = &mut guard;
        off_runtime(|| {
            if client.is_closed() {
                *client = Postgres::connect(&self.config, self.timeout).map_err(io)?;
            }
            op(client).map_err(io)
        })
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

/// A MySQL or MariaDB store, through the driver's pool (which opens a
/// connection again when the server dropped one).
pub struct Mysql(mysql::Pool);

impl Mysql {
    /// Connects to `address`, makes the table when missing; each read and
    /// write on the wire may take up to `timeout`.
    pub fn open(address: &str, timeout: Duration) -> Result<Mysql, String> {
        let opts = mysql::Opts::from_url(address).map_err(|e| e.to_string())?;
        let opts = mysql::OptsBuilder::from_opts(opts)
            .tcp_connect_timeout(Some(timeout))
            .read_timeout(Some(timeout))
            .write_timeout(Some(timeout))
            .pool_opts(
                mysql::PoolOpts::default().with_constraints(mysql::PoolConstraints::new(1, 4).unwrap_or_default()),
            );
        let pool = mysql::Pool::new(opts).map_err(|e| e.to_string())?;
        use mysql::prelude::Queryable;
        pool.get_conn()
            .and_then(|mut c| c.query_drop(TABLE_MYSQL))
            .map_err(|e| e.to_string())?;
        Ok(Mysql(pool))
    }

    /// Writes (or replaces) the row of `key`.
    pub fn put(&self, key: &str, value: &[u8], expire: i64, encoding: &str) -> std::io::Result<()> {
        use mysql::prelude::Queryable;
        self.0
            .get_conn()
            .and_then(|mut c| {
                c.exec_drop(
                    "INSERT INTO message_store (id, value, expire, modified, encoding) VALUES (?, ?, ?, ?, ?) \
                     ON DUPLICATE KEY UPDATE value = VALUES(value), expire = VALUES(expire), \
                     modified = VALUES(modified), encoding = VALUES(encoding)",
                    (key, value, expire, super::now_secs(), encoding),
                )
            })
            .map_err(io)
    }

    /// The value of `key` unless it expired before `now`.
    pub fn get(&self, key: &str, now: i64) -> std::io::Result<Option<Vec<u8>>> {
        use mysql::prelude::Queryable;
        self.0
            .get_conn()
            .and_then(|mut c| {
                c.exec_first::<Vec<u8>, _, _>(
                    "SELECT value FROM message_store WHERE id = ? AND expire >= ?",
                    (key, now),
                )
            })
            .map_err(io)
    }

    /// Deletes the rows that expired before `now`.
    pub fn sweep(&self, now: i64) -> std::io::Result<usize> {
        use mysql::prelude::Queryable;
        let mut c = self.0.get_conn().map_err(io)?;
        c.exec_drop("DELETE FROM message_store WHERE expire < ?", (now,))
            .map_err(io)?;
        Ok(c.affected_rows() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgresql_store_connects_again_when_the_server_drops_it() {
        let db = sluice_test_support::PgDatabase::create();
        let s = Postgres::open(&db.address, Duration::from_secs(5)).unwrap();
        s.put("k", b"kept", i64::MAX, "identity").unwrap();
        // As a server restart would: every connection to the database ends.
        db.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()");
        // The read that finds the connection gone may fail; the next connects again.
        let first = s.get("k", 0);
        let again = s.get("k", 0).unwrap();
        assert_eq!(again.as_deref(), Some(&b"kept"[..]), "after {first:?}");
    }

    #[test]
    fn a_mysql_store_keeps_rows_until_they_expire() {
        let db = sluice_test_support::MysqlDatabase::create();
        let s = Mysql::open(&db.address, Duration::from_secs(5)).unwrap();
        s.put("k", b"one", i64::MAX, "identity").unwrap();
        s.put("k", b"two", i64::MAX, "identity").unwrap();
        s.put("old", b"x", 1, "identity").unwrap();
        assert_eq!(s.get("k", 100).unwrap().as_deref(), Some(&b"two"[..]), "replaced");
        assert_eq!(s.get("old", 100).unwrap(), None, "expired");
        assert_eq!(s.sweep(100).unwrap(), 1);
        assert_eq!(db.sql("SELECT COUNT(*) FROM message_store").trim(), "1");
    }
}
