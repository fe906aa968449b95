//! The `dir://` / `directory://` store: MailerQ's directory store, one file
//! per message in a nested tree (`?depth=N`, default 4, by the first bytes
//! of the key's SHA-256). A file is written under a temporary name,
//! fsync'd, renamed and its directory fsync'd before the key is used. Its
//! modification time is when it expires.

use super::{io, valid_key, MAX_READ};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A directory store.
pub struct Dir {
    root: PathBuf,
    depth: usize,
}

impl Dir {
    /// The store under `root`, created when missing.
    pub fn open(root: PathBuf, depth: usize) -> Result<Dir, String> {
        std::fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        Ok(Dir { root, depth })
    }

    /// Where `key` lives: nested by the first bytes of its hash.
    pub(super) fn path(&self, key: &str) -> Option<PathBuf> {
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

    /// Writes `value` under `key`, expiring at `expire` (unix seconds), durably.
    pub fn put(&self, key: &str, value: &[u8], expire: i64) -> std::io::Result<()> {
        let path = self.path(key).ok_or_else(|| io("not a storage key"))?;
        let dir = path.parent().ok_or_else(|| io("no directory"))?;
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{key}.tmp"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(value)?;
            f.set_modified(UNIX_EPOCH + Duration::from_secs(expire.max(0) as u64))?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    }

    /// The stored bytes of `key`, if there is such a file.
    pub fn get(&self, key: &str) -> std::io::Result<Option<Vec<u8>>> {
        let Some(path) = self.path(key) else { return Ok(None) };
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut raw = Vec::new();
        (&mut f).take(MAX_READ).read_to_end(&mut raw)?;
        Ok(Some(raw))
    }

    /// Removes the files whose modification time has passed; the number removed.
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
