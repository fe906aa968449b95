//! MailerQ's message store (`storage-address`): MIME kept outside the
//! queue, the JSON carrying a `key` to it instead. `storage-policy` says
//! which messages are put there (`all`, `out`: retries going back to the
//! outbox, `in`: received mail, `none`: only read); a message with a `key`
//! and no `mime` is read from it before delivery, and a key that is not
//! there is the `storage/error` result.
//!
//! Backends (each with `?compression=gzip`), one module each:
//! - [`dir`]: `dir://` / `directory://`, one file per message.
//! - [`sql`]: `sqlite:///path`, `postgresql://user:password@host/db` and
//!   `mysql://user:password@host/db`.
//! - [`s3`]: `s3://accesskey:secretkey@region/bucket`, one object per message.
//!
//! A write is durable (fsync'd, committed, acknowledged by S3) before the
//! key is used, so a key in an acknowledged message always names stored
//! MIME. A message expires at its deadline plus `storage-ttl`; a sweep
//! every minute removes the expired ones.

mod address;
mod dir;
mod s3;
mod sql;

pub use address::{parse_address, Address, S3Address};

use std::io::{Read, Write};
use std::time::Duration;

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

/// The largest MIME a stored message may expand to when read (a gzip bomb
/// in the store costs at most this).
const MAX_READ: u64 = 1 << 30;

/// Where the messages are kept.
enum Backend {
    Dir(dir::Dir),
    Sqlite(sql::Sqlite),
    // Boxed: its connection settings are large, the others are a pointer or two.
    Postgres(Box<sql::Postgres>),
    Mysql(sql::Mysql),
    S3(s3::S3),
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
    /// `storage-reschedule`: how long a message whose MIME cannot be read
    /// now waits before it is tried again.
    pub reschedule: Duration,
    /// `storage-threads`: reads at the same time.
    pub threads: usize,
    /// Whether the last read failed (so an outage is logged once).
    failing: std::sync::atomic::AtomicBool,
}

/// How a store is opened besides its address.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub policy: Policy,
    pub ttl: Duration,
    /// `storage-timeout`: the longest one operation of a remote store may take.
    pub timeout: Duration,
}

impl Options {
    #[cfg(test)]
    /// Options for a test: `policy`, no ttl, a 20 s timeout.
    pub fn new(policy: Policy) -> Options {
        Options {
            policy,
            ttl: Duration::ZERO,
            timeout: Duration::from_secs(20),
        }
    }
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
    /// The store of `storage-address`, made ready (its directory or table
    /// created, its bucket checked).
    pub fn open(address: &str, options: Options) -> Result<MessageStore, String> {
        let (address, gzip) = parse_address(address)?;
        let backend = match address {
            Address::Dir { root, depth } => Backend::Dir(dir::Dir::open(root, depth)?),
            Address::Sqlite(path) => Backend::Sqlite(sql::Sqlite::open(&path, options.timeout)?),
            Address::Postgres(a) => Backend::Postgres(Box::new(sql::Postgres::open(&a, options.timeout)?)),
            Address::Mysql(a) => Backend::Mysql(sql::Mysql::open(&a, options.timeout)?),
            Address::S3(a) => Backend::S3(s3::S3::open(&a, options.timeout)?),
        };
        Ok(MessageStore {
            backend,
            gzip,
            policy: options.policy,
            ttl: options.ttl,
            max_delivertime: Duration::from_secs(86_400),
            reschedule: Duration::from_secs(120),
            threads: 1,
            failing: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// `mime` as stored (compressed with `compression=gzip`).
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
        let value = self.encoded(mime)?;
        match &self.backend {
            Backend::Dir(d) => d.put(key, &value, expire),
            Backend::Sqlite(d) => d.put(key, &value, expire, encoding),
            Backend::Postgres(d) => d.put(key, &value, expire, encoding),
            Backend::Mysql(d) => d.put(key, &value, expire, encoding),
            Backend::S3(d) => d.put(key, &value, expire, encoding),
        }
    }

    /// The MIME under `key`; `None` when there is none (or it expired).
    pub fn get(&self, key: &str) -> std::io::Result<Option<Vec<u8>>> {
        if !valid_key(key) {
            return Ok(None);
        }
        let now = now_secs();
        let raw = match &self.backend {
            Backend::Dir(d) => d.get(key),
            Backend::Sqlite(d) => d.get(key, now),
            Backend::Postgres(d) => d.get(key, now),
            Backend::Mysql(d) => d.get(key, now),
            Backend::S3(d) => d.get(key, now),
        }?;
        raw.map(MessageStore::decoded).transpose()
    }

    /// Removes expired messages; the number removed.
    pub fn sweep(&self) -> std::io::Result<usize> {
        let now = now_secs();
        match &self.backend {
            Backend::Dir(d) => Ok(d.sweep()),
            Backend::Sqlite(d) => d.sweep(now),
            Backend::Postgres(d) => d.sweep(now),
            Backend::Mysql(d) => d.sweep(now),
            Backend::S3(d) => d.sweep(now, self.ttl),
        }
    }

    /// Notes whether a read worked; true when this starts or ends an outage
    /// (the caller logs those, not every failed read).
    pub fn note_read(&self, ok: bool) -> bool {
        use std::sync::atomic::Ordering;
        self.failing.swap(!ok, Ordering::Relaxed) == ok
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
        let options = Options {
            policy,
            ttl: Duration::from_secs(s.storage_ttl),
            timeout: Duration::from_secs(s.storage_timeout),
        };
        MessageStore::open(address, options)
            .map(|mut m| {
                m.max_delivertime = s.max_delivertime;
                m.reschedule = Duration::from_secs(s.storage_reschedule);
                m.threads = s.storage_threads as usize;
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
        match tokio::task::spawn_blocking(move || s.sweep()).await {
            Ok(Ok(0)) | Err(_) => {}
            Ok(Ok(n)) => tracing::info!(removed = n, "expired messages removed from the message store"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot sweep the message store; trying again in a minute"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn store(dir: &Path, query: &str) -> MessageStore {
        MessageStore::open(&format!("dir://{}{query}", dir.display()), Options::new(Policy::All)).unwrap()
    }

    fn file_of(s: &MessageStore, key: &str) -> PathBuf {
        let Backend::Dir(d) = &s.backend else {
            panic!("not a directory store")
        };
        d.path(key).unwrap()
    }

    /// An expiry far ahead (also for the backends' own tests).
    pub(super) fn far() -> u64 {
        crate::deliver::outgoing::parse_time("2099-01-01 00:00:00").unwrap()
    }

    #[test]
    fn put_then_get_plain_and_gzip_nested_by_depth() {
        let dir = tempfile::tempdir().unwrap();
        let plain = store(dir.path(), "?depth=2");
        plain.put("id-1", b"Subject: x\r\n\r\nbody\r\n", far()).unwrap();
        assert_eq!(plain.get("id-1").unwrap().unwrap(), b"Subject: x\r\n\r\nbody\r\n");
        let path = file_of(&plain, "id-1");
        assert_eq!(
            path.strip_prefix(dir.path()).unwrap().components().count(),
            3,
            "two levels, then the file"
        );
        let zipped = store(dir.path(), "?depth=2&compression=gzip");
        zipped.put("id-2", b"Subject: y\r\n\r\nbody\r\n", far()).unwrap();
        assert_eq!(&std::fs::read(file_of(&zipped, "id-2")).unwrap()[..2], &[0x1f, 0x8b]);
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
        assert_eq!(s.sweep().unwrap(), 1);
        assert_eq!(s.get("old").unwrap(), None);
        assert!(s.get("new").unwrap().is_some());
    }

    #[test]
    fn sqlite_keeps_rows_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store.sqlite");
        let s = MessageStore::open(
            &format!("sqlite://{}?compression=gzip", db.display()),
            Options::new(Policy::All),
        )
        .unwrap();
        s.put("k1", b"Subject: x\r\n\r\nrow\r\n", far()).unwrap();
        s.put("old", b"x", 1_000).unwrap();
        assert_eq!(s.get("k1").unwrap().unwrap(), b"Subject: x\r\n\r\nrow\r\n");
        assert_eq!(s.get("old").unwrap(), None, "expired rows are not handed out");
        assert_eq!(s.sweep().unwrap(), 1);
        assert_eq!(s.get("nope").unwrap(), None);
        // Another instance on the same file sees it.
        let again = MessageStore::open(&format!("sqlite://{}", db.display()), Options::new(Policy::None)).unwrap();
        assert_eq!(again.get("k1").unwrap().unwrap(), b"Subject: x\r\n\r\nrow\r\n");
    }
}
