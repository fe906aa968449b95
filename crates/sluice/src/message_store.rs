//! MailerQ's message store (`storage-address`): MIME kept outside the
//! queue, the JSON carrying a `key` to it instead. `storage-policy` says
//! which messages are put there (`all`, `out`: retries going back to the
//! outbox, `in`: received mail, `none`: only read); a message with a `key`
//! and no `mime` is read from it before delivery, and a key that is not
//! there is the `storage/error` result.
//!
//! Backends (each with `?compression=gzip`):
//! - `dir://` / `directory://`: MailerQ's directory store, one file per
//!   message in a nested tree (`?depth=N`, default 4). A file is written
//!   under a temporary name, fsync'd, renamed and its directory fsync'd
//!   before the key is used, so a key in an acknowledged message always
//!   names MIME on disk. Its modification time is when it expires.
//! - `sqlite:///path` and `postgresql://user:password@host/db` (instances
//!   sharing one): a table `message_store (id, value, expire, modified,
//!   encoding)`, the fields MailerQ documents for its documents, made when
//!   missing; a write is committed before the key is used.
//!
//! A message expires at its deadline plus `storage-ttl`; a sweep every
//! minute removes the expired ones.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `storage-policy`: which messages go to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    All,
    Out,
    In,
    None,
}

impl Policy {
    /// Whether received mail is put in the store.
    pub fn inbound(self) -> bool {
        matches!(self, Policy::All | Policy::In)
    }

    /// Whether a retry going back to the outbox is put in the store.
    pub fn outbound(self) -> bool {
        matches!(self, Policy::All | Policy::Out)
    }
}

/// The largest MIME a stored file may expand to when read (a gzip bomb in
/// the directory costs at most this).
const MAX_READ: u64 = 1 << 30;

/// Where the messages are kept.
enum Backend {
    Dir { root: PathBuf, depth: usize },
    Sqlite(std::sync::Mutex<rusqlite::Connection>),
    Postgres(std::sync::Mutex<postgres::Client>),
}

/// The message store.
pub struct MessageStore {
    backend: Backend,
    gzip: bool,
    pub policy: Policy,
    /// `storage-ttl`: kept this long past the message's deadline.
    pub ttl: Duration,
    /// `max-delivertime`: the deadline of a message that names none.
    pub max_delivertime: Duration,
}

/// A `storage-address`, read.
#[derive(Debug, PartialEq, Eq)]
pub enum Address {
    Dir {
        root: PathBuf,
        depth: usize,
    },
    Sqlite(PathBuf),
    /// The address without Sluice's own options, as the driver takes it.
    Postgres(String),
}

/// `storage-address` read as MailerQ writes it, and whether to compress;
/// an error says why it cannot be used (never repeating a password).
pub fn parse_address(address: &str) -> Result<(Address, bool), String> {
    let (scheme, rest) = address
        .split_once("://")
        .ok_or_else(|| "not a storage address (dir:///path, sqlite:///file, postgresql://…)".to_string())?;
    let scheme = scheme.to_ascii_lowercase();
    if matches!(scheme.as_str(), "mysql" | "mongodb" | "couchbase" | "s3") {
        return Err(format!(
            "{scheme}:// message stores are not supported yet; dir://, sqlite:// and postgresql:// are"
        ));
    }
    let postgres = scheme == "postgresql" || scheme == "postgres";
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (mut depth, mut gzip) = (4usize, false);
    let mut passed_on = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("depth", d)) if !postgres => {
                depth = d
                    .parse()
                    .ok()
                    .filter(|d| *d <= 8)
                    .ok_or_else(|| format!("depth `{d}` must be 0 to 8"))?
            }
            Some(("compression", "gzip")) => gzip = true,
            Some(("compression", "none" | "identity")) => gzip = false,
            _ if postgres => passed_on.push(pair),
            _ => {
                return Err(format!(
                    "`{pair}` is not a {scheme} store option (depth, compression=gzip)"
                ))
            }
        }
    }
    let address = match scheme.as_str() {
        "dir" | "directory" | "sqlite" if !main.starts_with('/') => {
            return Err(format!("the path must be absolute ({scheme}:///path)"))
        }
        "dir" | "directory" => Address::Dir {
            root: PathBuf::from(main),
            depth,
        },
        "sqlite" => Address::Sqlite(PathBuf::from(main)),
        _ if postgres => {
            let mut a = format!("postgresql://{main}");
            if !passed_on.is_empty() {
                a.push('?');
                a.push_str(&passed_on.join("&"));
            }
            Address::Postgres(a)
        }
        other => return Err(format!("`{other}` is not a storage backend")),
    };
    Ok((address, gzip))
}

/// The table of the SQL backends: MailerQ's documented fields.
const TABLE_SQLITE: &str = "CREATE TABLE IF NOT EXISTS message_store (id TEXT PRIMARY KEY, value BLOB NOT NULL, expire INTEGER NOT NULL, modified INTEGER NOT NULL, encoding TEXT NOT NULL)";
const TABLE_POSTGRES: &str = "CREATE TABLE IF NOT EXISTS message_store (id TEXT PRIMARY KEY, value BYTEA NOT NULL, expire BIGINT NOT NULL, modified BIGINT NOT NULL, encoding TEXT NOT NULL)";

/// Runs a blocking PostgreSQL call off the async runtime (the sync client
/// runs a runtime of its own, which cannot start inside another).
fn off_runtime<T: Send>(op: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(op).join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
}

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Seconds since 1970 now.
fn now_secs() -> i64 {
    i64::try_from(sluice_queue::now_ms() / 1000).unwrap_or(0)
}

/// A key Sluice makes and takes: letters, digits, `-`, `_`, `.`; no path tricks.
fn valid_key(key: &str) -> bool {
    (1..=200).contains(&key.len())
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl MessageStore {
    /// The store of `storage-address`, made ready (its directory created).
    pub fn open(address: &str, policy: Policy, ttl: Duration) -> Result<MessageStore, String> {
        let (address, gzip) = parse_address(address)?;
        let backend = match address {
            Address::Dir { root, depth } => {
                std::fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
                Backend::Dir { root, depth }
            }
            Address::Sqlite(path) => {
                let db = rusqlite::Connection::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                db.busy_timeout(Duration::from_secs(5)).map_err(|e| e.to_string())?;
                db.execute_batch(&format!(
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; {TABLE_SQLITE}"
                ))
                .map_err(|e| format!("{}: {e}", path.display()))?;
                Backend::Sqlite(std::sync::Mutex::new(db))
            }
            Address::Postgres(a) => {
                let client = off_runtime(|| -> Result<postgres::Client, String> {
                    let mut c = postgres::Client::connect(&a, postgres::NoTls).map_err(|e| e.to_string())?;
                    c.batch_execute(TABLE_POSTGRES).map_err(|e| e.to_string())?;
                    Ok(c)
                })?;
                Backend::Postgres(std::sync::Mutex::new(client))
            }
        };
        Ok(MessageStore {
            backend,
            gzip,
            policy,
            ttl,
            max_delivertime: Duration::from_secs(86_400),
        })
    }

    /// Where `key` lives in a directory store: nested by the first bytes of its hash.
    fn path(&self, key: &str) -> Option<PathBuf> {
        let Backend::Dir { root, depth } = &self.backend else {
            return None;
        };
        if !valid_key(key) {
            return None;
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
        let mut p = root.clone();
        for b in digest.as_ref().iter().take(*depth) {
            p.push(format!("{b:02x}"));
        }
        p.push(key);
        Some(p)
    }

    /// `mime` as a SQL backend stores it (compressed with `compression=gzip`).
    fn encoded(&self, mime: &[u8]) -> std::io::Result<Vec<u8>> {
        if !self.gzip {
            return Ok(mime.to_vec());
        }
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(mime)?;
        z.finish()
    }

    /// Stored bytes back to MIME, compressed or not by what they are (so
    /// changing `compression=` keeps what was stored readable), expanding
    /// to at most [`MAX_READ`].
    fn decoded(raw: Vec<u8>) -> std::io::Result<Vec<u8>> {
        if !raw.starts_with(&[0x1f, 0x8b]) {
            return Ok(raw);
        }
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .take(MAX_READ)
            .read_to_end(&mut out)?;
        Ok(out)
    }

    /// Stores `mime` under `key` until `expire_ms` (+ `storage-ttl`), durably.
    pub fn put(&self, key: &str, mime: &[u8], expire_ms: u64) -> std::io::Result<()> {
        if !valid_key(key) {
            return Err(io(format!("`{}` is not a storage key", key.escape_debug())));
        }
        let expire = i64::try_from((expire_ms + self.ttl.as_millis() as u64) / 1000).unwrap_or(i64::MAX);
        let encoding = if self.gzip { "gzip" } else { "identity" };
        match &self.backend {
            Backend::Sqlite(db) => {
                let value = self.encoded(mime)?;
                let db = db.lock().unwrap_or_else(|e| e.into_inner());
                db.execute(
                    "INSERT INTO message_store (id, value, expire, modified, encoding) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (id) DO UPDATE SET value = excluded.value, expire = excluded.expire, \
                     modified = excluded.modified, encoding = excluded.encoding",
                    rusqlite::params![key, value, expire, now_secs(), encoding],
                )
                .map_err(io)?;
                return Ok(());
            }
            Backend::Postgres(client) => {
                let value = self.encoded(mime)?;
                let mut guard = client.lock().unwrap_or_else(|e| e.into_inner());
                let client: &mut postgres::Client = &mut guard;
                let now = now_secs();
                off_runtime(|| {
                    client.execute(
                        "INSERT INTO message_store (id, value, expire, modified, encoding) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value, expire = EXCLUDED.expire, \
                         modified = EXCLUDED.modified, encoding = EXCLUDED.encoding",
                        &[&key, &value, &expire, &now, &encoding],
                    )
                })
                .map_err(io)?;
                return Ok(());
            }
            Backend::Dir { .. } => {}
        }
        let path = self.path(key).ok_or_else(|| io("not a storage key"))?;
        let dir = path.parent().ok_or_else(|| io("no directory"))?;
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{key}.tmp"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            if self.gzip {
                let mut z = flate2::write::GzEncoder::new(&mut f, flate2::Compression::fast());
                z.write_all(mime)?;
                z.finish()?;
            } else {
                f.write_all(mime)?;
            }
            let expires = UNIX_EPOCH + Duration::from_millis(expire_ms) + self.ttl;
            f.set_modified(expires)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    }

    /// The MIME under `key`; `None` when there is none (or it expired).
    pub fn get(&self, key: &str) -> std::io::Result<Option<Vec<u8>>> {
        if !valid_key(key) {
            return Ok(None);
        }
        let now = now_secs();
        let raw: Option<Vec<u8>> = match &self.backend {
            Backend::Sqlite(db) => {
                use rusqlite::OptionalExtension;
                let db = db.lock().unwrap_or_else(|e| e.into_inner());
                db.query_row(
                    "SELECT value FROM message_store WHERE id = ?1 AND expire >= ?2",
                    rusqlite::params![key, now],
                    |r| r.get(0),
                )
                .optional()
                .map_err(io)?
            }
            Backend::Postgres(client) => {
                let mut guard = client.lock().unwrap_or_else(|e| e.into_inner());
                let client: &mut postgres::Client = &mut guard;
                let row = off_runtime(|| {
                    client.query_opt(
                        "SELECT value FROM message_store WHERE id = $1 AND expire >= $2",
                        &[&key, &now],
                    )
                })
                .map_err(io)?;
                row.map(|r| r.get::<_, Vec<u8>>(0))
            }
            Backend::Dir { .. } => {
                let Some(path) = self.path(key) else { return Ok(None) };
                let mut f = match std::fs::File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                };
                let mut raw = Vec::new();
                (&mut f).take(MAX_READ).read_to_end(&mut raw)?;
                Some(raw)
            }
        };
        raw.map(MessageStore::decoded).transpose()
    }

    /// Removes expired messages (a file's modification time is its expiry); the number removed.
    pub fn sweep(&self) -> usize {
        fn walk(dir: &Path, now: SystemTime, removed: &mut usize) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for e in entries.flatten() {
                let Ok(meta) = e.metadata() else { continue };
                if meta.is_dir() {
                    walk(&e.path(), now, removed);
                } else if meta.modified().is_ok_and(|m| m < now) && std::fs::remove_file(e.path()).is_ok() {
                    *removed += 1;
                }
            }
        }
        match &self.backend {
            Backend::Sqlite(db) => {
                let db = db.lock().unwrap_or_else(|e| e.into_inner());
                db.execute("DELETE FROM message_store WHERE expire < ?1", [now_secs()])
                    .unwrap_or(0)
            }
            Backend::Postgres(client) => {
                let mut guard = client.lock().unwrap_or_else(|e| e.into_inner());
                let client: &mut postgres::Client = &mut guard;
                let now = now_secs();
                off_runtime(|| client.execute("DELETE FROM message_store WHERE expire < $1", &[&now]))
                    .map_or(0, |n| n as usize)
            }
            Backend::Dir { root, .. } => {
                let mut removed = 0;
                walk(root, SystemTime::now(), &mut removed);
                removed
            }
        }
    }
}

impl MessageStore {
    /// The store of the configuration, when `storage-address` is set.
    pub fn from_config(
        c: &crate::config::Config,
    ) -> Result<Option<std::sync::Arc<MessageStore>>, crate::config::ConfigError> {
        let s = &c.settings;
        let Some(address) = &s.storage_address else {
            return Ok(None);
        };
        let policy = match s.storage_policy.as_str() {
            "all" => Policy::All,
            "in" => Policy::In,
            "none" => Policy::None,
            _ => Policy::Out,
        };
        MessageStore::open(address, policy, Duration::from_secs(s.storage_ttl))
            .map(|mut m| {
                m.max_delivertime = s.max_delivertime;
                Some(std::sync::Arc::new(m))
            })
            .map_err(|e| c.error("storage-address", e))
    }

    /// The deadline of a message received now that names none (unix ms).
    pub fn deadline_ms(&self) -> u64 {
        sluice_queue::now_ms() + self.max_delivertime.as_millis() as u64
    }

    /// A key for a message: its message-id when that is a usable key, else a digest of `body`.
    pub fn key_for(message_id: Option<&str>, body: &[u8]) -> String {
        match message_id.filter(|id| valid_key(id)) {
            Some(id) => id.to_string(),
            None => {
                let d = ring::digest::digest(&ring::digest::SHA256, body);
                d.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
            }
        }
    }

    /// A message for the outbox with its MIME moved into the store (when
    /// the policy says so and it has MIME): `key` instead of `mime`. A
    /// message read from the store keeps its key, stored once.
    pub fn strip(&self, body: &[u8], default_deadline_ms: u64) -> std::io::Result<Option<Vec<u8>>> {
        let Ok(serde_json::Value::Object(mut json)) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Ok(None);
        };
        let Some(serde_json::Value::String(mime)) = json.remove("mime") else {
            return Ok(None);
        };
        let existing = json
            .get("key")
            .and_then(serde_json::Value::as_str)
            .filter(|k| valid_key(k))
            .map(str::to_string);
        let key = match existing {
            Some(key) => key,
            None => {
                let key = MessageStore::key_for(
                    json.get("message-id").and_then(serde_json::Value::as_str),
                    mime.as_bytes(),
                );
                let deadline = json
                    .get("maxdelivertime")
                    .and_then(serde_json::Value::as_str)
                    .and_then(crate::deliver::outgoing::parse_time)
                    .unwrap_or(default_deadline_ms);
                self.put(&key, mime.as_bytes(), deadline)?;
                key
            }
        };
        json.insert("key".into(), key.into());
        Ok(Some(serde_json::to_vec(&json).unwrap_or_default()))
    }
}

/// Sweeps expired messages every minute until `stop`.
pub async fn sweep_every_minute(store: std::sync::Arc<MessageStore>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = crate::shutdown::requested(&mut stop) => return,
        }
        let s = store.clone();
        if let Ok(n) = tokio::task::spawn_blocking(move || s.sweep()).await {
            if n > 0 {
                tracing::info!(removed = n, "expired messages removed from the message store");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, query: &str) -> MessageStore {
        MessageStore::open(&format!("dir://{}{query}", dir.display()), Policy::All, Duration::ZERO).unwrap()
    }

    fn far() -> u64 {
        crate::deliver::outgoing::parse_time("2099-01-01 00:00:00").unwrap()
    }

    #[test]
    fn put_then_get_plain_and_gzip_nested_by_depth() {
        let dir = tempfile::tempdir().unwrap();
        let plain = store(dir.path(), "?depth=2");
        plain.put("id-1", b"Subject: x\r\n\r\nbody\r\n", far()).unwrap();
        assert_eq!(plain.get("id-1").unwrap().unwrap(), b"Subject: x\r\n\r\nbody\r\n");
        let path = plain.path("id-1").unwrap();
        assert_eq!(
            path.strip_prefix(dir.path()).unwrap().components().count(),
            3,
            "two levels, then the file"
        );
        let zipped = store(dir.path(), "?depth=2&compression=gzip");
        zipped.put("id-2", b"Subject: y\r\n\r\nbody\r\n", far()).unwrap();
        assert_eq!(
            &std::fs::read(zipped.path("id-2").unwrap()).unwrap()[..2],
            &[0x1f, 0x8b]
        );
        assert_eq!(zipped.get("id-2").unwrap().unwrap(), b"Subject: y\r\n\r\nbody\r\n");
        assert_eq!(
            plain.get("id-2").unwrap().unwrap(),
            b"Subject: y\r\n\r\nbody\r\n",
            "read by what it is"
        );
        assert_eq!(plain.get("missing").unwrap(), None);
    }

    #[test]
    fn keys_cannot_leave_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), "");
        for key in ["../etc/passwd", "a/b", ".hidden", "", "a\0b"] {
            assert!(s.put(key, b"x", far()).is_err(), "{key:?}");
            assert_eq!(s.get(key).unwrap(), None, "{key:?}");
        }
    }

    #[test]
    fn expired_messages_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), "");
        s.put("old", b"x", 1_000).unwrap();
        s.put("new", b"y", far()).unwrap();
        assert_eq!(s.sweep(), 1);
        assert_eq!(s.get("old").unwrap(), None);
        assert!(s.get("new").unwrap().is_some());
    }

    #[test]
    fn addresses_as_mailerq_writes_them() {
        let (a, gzip) = parse_address("directory:///var/lib/mailerq/storage?compression=gzip").unwrap();
        assert!(gzip && matches!(a, Address::Dir { depth: 4, .. }));
        assert!(matches!(
            parse_address("dir:///s?depth=3").unwrap().0,
            Address::Dir { depth: 3, .. }
        ));
        assert_eq!(
            parse_address("sqlite:///var/db.sqlite").unwrap().0,
            Address::Sqlite("/var/db.sqlite".into())
        );
        assert_eq!(
            parse_address("postgresql://u:p@h/db?compression=gzip&connect_timeout=5").unwrap(),
            (
                Address::Postgres("postgresql://u:p@h/db?connect_timeout=5".into()),
                true
            )
        );
        assert!(parse_address("dir://relative").is_err());
        assert!(parse_address("dir:///s?depth=99").is_err());
        let e = parse_address("s3://key:secret@eu-west-1/bucket").unwrap_err();
        assert!(e.contains("not supported yet") && !e.contains("secret"), "{e}");
    }

    #[test]
    fn sqlite_keeps_rows_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store.sqlite");
        let s = MessageStore::open(
            &format!("sqlite://{}?compression=gzip", db.display()),
            Policy::All,
            Duration::ZERO,
        )
        .unwrap();
        s.put("k1", b"Subject: x\r\n\r\nrow\r\n", far()).unwrap();
        s.put("old", b"x", 1_000).unwrap();
        assert_eq!(s.get("k1").unwrap().unwrap(), b"Subject: x\r\n\r\nrow\r\n");
        assert_eq!(s.get("old").unwrap(), None, "expired rows are not handed out");
        assert_eq!(s.sweep(), 1);
        assert_eq!(s.get("nope").unwrap(), None);
        // Another instance on the same file sees it.
        let again = MessageStore::open(&format!("sqlite://{}", db.display()), Policy::None, Duration::ZERO).unwrap();
        assert_eq!(again.get("k1").unwrap().unwrap(), b"Subject: x\r\n\r\nrow\r\n");
    }
}
