//! MailerQ's message store (`storage-address`): MIME kept outside the
//! queue, the JSON carrying a `key` to it instead. `storage-policy` says
//! which messages are put there (`all`, `out`: retries going back to the
//! outbox, `in`: received mail, `none`: only read); a message with a `key`
//! and no `mime` is read from it before delivery, and a key that is not
//! there is the `storage/error` result.
//!
//! Backends: `dir://` / `directory://` (MailerQ's directory store: one file
//! per message in a nested tree, `?depth=N`, default 4; `?compression=gzip`).
//! A file is written under a temporary name, fsync'd, renamed and its
//! directory fsync'd before the key is used, so a key in an acknowledged
//! message always names MIME on disk. Its modification time is set to when
//! it expires (the message's deadline plus `storage-ttl`); a sweep removes
//! expired files.

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

/// The directory message store.
#[derive(Debug)]
pub struct MessageStore {
    root: PathBuf,
    depth: usize,
    gzip: bool,
    pub policy: Policy,
    /// `storage-ttl`: kept this long past the message's deadline.
    pub ttl: Duration,
    /// `max-delivertime`: the deadline of a message that names none.
    pub max_delivertime: Duration,
}

/// Why `storage-address` cannot be used.
pub fn parse_address(address: &str) -> Result<(PathBuf, usize, bool), String> {
    let (scheme, rest) = address
        .split_once("://")
        .ok_or_else(|| format!("`{address}` is not a storage address (dir:///path)"))?;
    match scheme.to_ascii_lowercase().as_str() {
        "dir" | "directory" => {}
        "sqlite" | "postgresql" | "mysql" | "mongodb" | "couchbase" | "s3" => {
            return Err(format!(
                "{scheme}:// message stores are not supported yet; dir:// (directory://) is"
            ))
        }
        other => return Err(format!("`{other}` is not a storage backend")),
    }
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !path.starts_with('/') {
        return Err("the directory must be an absolute path (dir:///path)".into());
    }
    let (mut depth, mut gzip) = (4usize, false);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("depth", d)) => {
                depth = d
                    .parse()
                    .ok()
                    .filter(|d| *d <= 8)
                    .ok_or_else(|| format!("depth `{d}` must be 0 to 8"))?
            }
            Some(("compression", "gzip")) => gzip = true,
            Some(("compression", "none" | "identity")) => gzip = false,
            _ => {
                return Err(format!(
                    "`{pair}` is not a directory store option (depth, compression=gzip)"
                ))
            }
        }
    }
    Ok((PathBuf::from(path), depth, gzip))
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
        let (root, depth, gzip) = parse_address(address)?;
        std::fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        Ok(MessageStore {
            root,
            depth,
            gzip,
            policy,
            ttl,
            max_delivertime: Duration::from_secs(86_400),
        })
    }

    /// Where `key` lives: nested by the first characters of its hash.
    fn path(&self, key: &str) -> Option<PathBuf> {
        if !valid_key(key) {
            return None;
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
        let mut p = self.root.clone();
        for b in digest.as_ref().iter().take(self.depth) {
            p.push(format!("{b:02x}"));
        }
        p.push(key);
        Some(p)
    }

    /// Stores `mime` under `key` until `expire_ms` (+ `storage-ttl`), durably.
    pub fn put(&self, key: &str, mime: &[u8], expire_ms: u64) -> std::io::Result<()> {
        let path = self
            .path(key)
            .ok_or_else(|| std::io::Error::other(format!("`{key}` is not a storage key")))?;
        let dir = path.parent().unwrap_or(&self.root);
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
        let Some(path) = self.path(key) else { return Ok(None) };
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut raw = Vec::new();
        (&mut f).take(MAX_READ).read_to_end(&mut raw)?;
        // Compressed or not by what the file is, so changing compression= keeps old files readable.
        if raw.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&raw[..])
                .take(MAX_READ)
                .read_to_end(&mut out)?;
            return Ok(Some(out));
        }
        Ok(Some(raw))
    }

    /// Removes expired files (their modification time is their expiry); the number removed.
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
        let mut removed = 0;
        walk(&self.root, SystemTime::now(), &mut removed);
        removed
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
        assert!(parse_address("directory:///var/lib/mailerq/storage").is_ok());
        assert_eq!(parse_address("dir:///s?depth=3").unwrap().1, 3);
        assert!(parse_address("dir://relative").is_err());
        assert!(parse_address("dir:///s?depth=99").is_err());
        let e = parse_address("s3://key:secret@eu-west-1/bucket").unwrap_err();
        assert!(e.contains("not supported yet") && !e.contains("secret"), "{e}");
    }
}
