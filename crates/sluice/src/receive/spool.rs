//! The spool directory (`spool-directory`, as MailerQ has it): MIME files
//! dropped there become inbound messages, one per address in To, Cc and
//! Bcc, with the `spool` property. A file is removed only once its messages
//! are stored (the store acknowledges only what is on disk), so a kill -9
//! midway costs at most a duplicate, never a message. A file that cannot be
//! a message goes to `spool-fail-directory` with the reason logged.
//!
//! Writers should write elsewhere on the same file system and rename into
//! the directory (as with maildir); names starting with `.` are left alone,
//! and `spool-delay` makes a file wait until it is that many seconds old.

use crate::reception::message::{Reception, Recipient};
use crate::reception::{self, Writer};
use serde_json::{json, Map};
use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How often the directory is looked at.
const SCAN_EVERY: Duration = Duration::from_millis(200);
/// Files taken per look, oldest first: the rest wait for the next one.
const MAX_PER_SCAN: usize = 1000;

/// The `spool-*` settings and where the messages go.
#[derive(Debug, Clone)]
pub struct Spool {
    pub directory: PathBuf,
    /// `spool-fail-directory`: where files that cannot be messages go.
    pub fail_directory: Option<PathBuf>,
    /// `spool-delay`: a file is taken once it is this old.
    pub delay: Duration,
    /// `spool-remove`: remove a file once its messages are stored.
    pub remove: bool,
    /// `spool-extract`: `x-mq-*` headers become properties.
    pub extract: bool,
    /// `smtp-maxsize`: larger files are refused.
    pub max_size: u64,
    /// `smtp-max-recipients`: files naming more are refused.
    pub max_recipients: usize,
    pub hostname: String,
    /// The inbox (`rabbitmq-inbox`, else the outbox) and the local queue.
    pub inbox: String,
    pub local: String,
    pub reports: String,
}

impl Spool {
    /// The spool of the configuration, when `spool-directory` is set; the
    /// directories must exist (the fail directory is made when missing).
    pub fn from_config(c: &crate::config::Config, hostname: &str) -> Result<Option<Spool>, crate::config::ConfigError> {
        let s = &c.settings;
        let Some(directory) = s.spool_directory.as_ref().map(PathBuf::from) else {
            return Ok(None);
        };
        if !directory.is_dir() {
            return Err(c.error("spool-directory", format!("{} is not a directory", directory.display())));
        }
        let fail_directory = s.spool_fail_directory.as_ref().map(PathBuf::from);
        if let Some(fail) = &fail_directory {
            std::fs::create_dir_all(fail)
                .map_err(|e| c.error("spool-fail-directory", format!("cannot create {}: {e}", fail.display())))?;
            if fail.canonicalize().ok() == directory.canonicalize().ok() {
                return Err(c.error("spool-fail-directory", "must not be the spool-directory".into()));
            }
        }
        let names = crate::queues::QueueNames::from_config(c);
        Ok(Some(Spool {
            directory,
            fail_directory,
            delay: Duration::from_secs(s.spool_delay),
            remove: s.spool_remove,
            extract: s.spool_extract,
            max_size: s.smtp_maxsize,
            max_recipients: usize::try_from(s.smtp_max_recipients).unwrap_or(usize::MAX),
            hostname: hostname.to_string(),
            inbox: names.inbox,
            local: names.local,
            reports: names.reports,
        }))
    }
}

/// Why a file cannot be a message (it goes to the fail directory).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("larger than smtp-maxsize ({0} bytes)")]
    TooLarge(u64),
    #[error("no recipient in To, Cc or Bcc")]
    NoRecipient,
    #[error("more than smtp-max-recipients ({0}) recipients")]
    TooManyRecipients(usize),
    #[error("recipient `{0}` is not a valid address")]
    BadRecipient(String),
    #[error("cannot be read: {0}")]
    Unreadable(String),
}

/// A file as found: its name, and what tells one version of it from another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Found {
    name: OsString,
    size: u64,
    modified: SystemTime,
    owner: u32,
}

/// Watches the directory until `stop`.
pub async fn watch(spool: Spool, writer: Writer, mut stop: tokio::sync::watch::Receiver<bool>) {
    tracing::info!(directory = %spool.directory.display(), "spool directory watched");
    // Files left in place (spool-remove: false, or refused with no fail
    // directory): taken once per run, as long as they do not change.
    let mut done: HashSet<Found> = HashSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SCAN_EVERY) => {}
            _ = crate::shutdown::requested(&mut stop) => return,
        }
        let found = match list(&spool.directory, spool.delay) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(directory = %spool.directory.display(), error = %e, "spool directory cannot be read");
                continue;
            }
        };
        done.retain(|d| found.contains(d));
        let fresh: Vec<Found> = found.into_iter().filter(|f| !done.contains(f)).collect();
        for f in fresh {
            if *stop.borrow() {
                return;
            }
            let path = spool.directory.join(&f.name);
            match take(&spool, &writer, &path, &f).await {
                Ok(n) => {
                    tracing::debug!(file = %shown(&f.name), messages = n, "spool file stored");
                    if spool.remove {
                        remove(&spool.directory, &path);
                    } else {
                        done.insert(f);
                    }
                }
                Err(Taken::Refused(why)) => {
                    if !refuse(&spool, &path, &f.name, &why) {
                        done.insert(f);
                    }
                }
                Err(Taken::Unavailable(e)) => {
                    // Left where it is: tried again at the next look.
                    tracing::warn!(file = %shown(&f.name), error = %e, "spool file not stored yet (queue unavailable)");
                    break;
                }
            }
        }
    }
}

enum Taken {
    Refused(Refused),
    Unavailable(sluice_queue::QueueError),
}

/// The regular files of `dir` old enough to take, oldest first, at most [`MAX_PER_SCAN`].
fn list(dir: &Path, delay: Duration) -> std::io::Result<Vec<Found>> {
    let now = SystemTime::now();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        // Not followed: a link could make Sluice send any file it can read.
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !meta.file_type().is_file() {
            continue;
        }
        let modified = meta.modified().unwrap_or(now);
        if now.duration_since(modified).unwrap_or_default() < delay {
            continue;
        }
        found.push(Found {
            name,
            size: meta.len(),
            modified,
            owner: meta.uid(),
        });
    }
    found.sort_by_key(|f| f.modified);
    found.truncate(MAX_PER_SCAN);
    Ok(found)
}

/// Reads one file and stores its messages; the number stored.
async fn take(spool: &Spool, writer: &Writer, path: &Path, f: &Found) -> Result<usize, Taken> {
    if f.size > spool.max_size {
        return Err(Taken::Refused(Refused::TooLarge(spool.max_size)));
    }
    let mime = read_bounded(path, spool.max_size).await.map_err(Taken::Refused)?;
    let (reception, recipients) = message(spool, f, mime).map_err(Taken::Refused)?;
    let queues = reception::Queues {
        main: &spool.inbox,
        local: &spool.local,
        reports: &spool.reports,
    };
    let n = recipients.len();
    let stored = reception::store(writer, queues, reception, &recipients).await;
    crate::metrics::get().received("spool", if stored.is_ok() { 250 } else { 451 });
    stored.map(|_| n).map_err(Taken::Unavailable)
}

/// The file's bytes, refusing one that grew beyond `max` since it was listed.
async fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, Refused> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Refused::Unreadable(e.to_string()))?;
    let mut mime = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut mime)
        .await
        .map_err(|e| Refused::Unreadable(e.to_string()))?;
    if mime.len() as u64 > max {
        return Err(Refused::TooLarge(max));
    }
    Ok(mime)
}

/// The reception a file makes: recipients from To, Cc and Bcc (Bcc then
/// removed), the envelope from the headers in MailerQ's order.
fn message(spool: &Spool, f: &Found, mime: Vec<u8>) -> Result<(Reception, Vec<Recipient>), Refused> {
    let mime = crate::headers::crlf(&mime);
    let mut recipients: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for header in ["to", "cc", "bcc"] {
        for value in crate::headers::header_values(&mime, header) {
            for address in crate::headers::addresses(&value) {
                if seen.insert(address.to_ascii_lowercase()) {
                    recipients.push(address);
                }
                // Refused as soon as there are too many: a file of a million
                // addresses costs no more than one of max_recipients.
                if recipients.len() > spool.max_recipients {
                    return Err(Refused::TooManyRecipients(spool.max_recipients));
                }
            }
        }
    }
    if recipients.is_empty() {
        return Err(Refused::NoRecipient);
    }
    if let Some(bad) = recipients.iter().find(|r| sluice_smtp::wire::Path::mailbox(r).is_err()) {
        return Err(Refused::BadRecipient(sluice_smtp::wire::shown(bad)));
    }
    let envelope = crate::headers::envelope(&mime, &["x-mq-envelope", "return-path", "from", "sender"]);
    let envelope = if sluice_smtp::wire::Path::reverse(&envelope).is_ok() {
        envelope
    } else {
        String::new()
    };
    let size = mime.len();
    let mime = crate::headers::remove_header(&mime, "bcc");
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(f.owner))
        .ok()
        .flatten()
        .map_or_else(|| f.owner.to_string(), |u| u.name);
    let mut properties = Map::new();
    properties.insert("received".into(), crate::stamp::now().into());
    properties.insert("hostname".into(), spool.hostname.clone().into());
    properties.insert(
        "spool".into(),
        json!({
            "directory": spool.directory.display().to_string(),
            "file": f.name.to_string_lossy(),
            "user": user,
            "size": size,
        }),
    );
    let reception = Reception {
        envelope,
        mime,
        properties,
        dsn: Map::new(),
        extract: spool.extract,
    };
    let recipients = recipients
        .into_iter()
        .map(|address| Recipient {
            address,
            ..Default::default()
        })
        .collect();
    Ok((reception, recipients))
}

/// Removes a stored file and makes the removal durable (a file back after
/// a crash would be a duplicate).
fn remove(dir: &Path, path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(file = %path.display(), error = %e, "spool file stored but not removed");
        return;
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Moves a refused file to the fail directory; false when it stays where it is.
fn refuse(spool: &Spool, path: &Path, name: &std::ffi::OsStr, why: &Refused) -> bool {
    let Some(fail) = &spool.fail_directory else {
        tracing::warn!(file = %shown(name), reason = %why, "spool file refused; left in place (no spool-fail-directory)");
        return false;
    };
    // Never over another refused file of the same name.
    let mut target = fail.join(name);
    let mut n = 1;
    while target.exists() && n < 1000 {
        let mut numbered = name.to_os_string();
        numbered.push(format!(".{n}"));
        target = fail.join(numbered);
        n += 1;
    }
    match std::fs::rename(path, &target) {
        Ok(()) => {
            tracing::warn!(file = %shown(name), reason = %why, moved_to = %target.display(), "spool file refused");
            true
        }
        Err(e) => {
            tracing::warn!(file = %shown(name), reason = %why, error = %e, "spool file refused; cannot move it to spool-fail-directory");
            false
        }
    }
}

/// A file name as it may appear in a log line.
fn shown(name: &std::ffi::OsStr) -> String {
    sluice_smtp::wire::shown(&name.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool() -> Spool {
        Spool {
            directory: "/spool".into(),
            fail_directory: None,
            delay: Duration::ZERO,
            remove: true,
            extract: true,
            max_size: 1 << 20,
            max_recipients: 3,
            hostname: "mx.test".into(),
            inbox: "inbox".into(),
            local: "local".into(),
            reports: "reports".into(),
        }
    }

    fn found() -> Found {
        Found {
            name: "mail.eml".into(),
            size: 0,
            modified: SystemTime::UNIX_EPOCH,
            owner: 0,
        }
    }

    #[test]
    fn recipients_from_to_cc_and_bcc_and_bcc_removed() {
        let mime = b"From: S <s@example.net>\nTo: a@example.com, B <b@example.com>\nCc: c@example.com\nBcc: A@example.com\nSubject: x\n\nBcc: stays\n".to_vec();
        let (r, rcpts) = message(&spool(), &found(), mime).unwrap();
        let rcpts: Vec<&str> = rcpts.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(rcpts, ["a@example.com", "b@example.com", "c@example.com"]);
        assert_eq!(r.envelope, "s@example.net");
        let text = String::from_utf8(r.mime).unwrap();
        assert!(!text.starts_with("Bcc") && !text.contains("\r\nBcc: A@"), "{text}");
        assert!(
            text.ends_with("\r\n\r\nBcc: stays\r\n"),
            "the body is not touched: {text}"
        );
        assert_eq!(r.properties["spool"]["file"], "mail.eml");
        assert_eq!(r.properties["spool"]["directory"], "/spool");
    }

    #[test]
    fn files_that_cannot_be_messages_say_why() {
        let refused = |mime: &[u8]| message(&spool(), &found(), mime.to_vec()).map(|_| ()).unwrap_err();
        assert_eq!(refused(b"Subject: nobody\n\nx\n"), Refused::NoRecipient);
        assert_eq!(
            refused(b"To: a@x.test, b@x.test, c@x.test, d@x.test\n\nx\n"),
            Refused::TooManyRecipients(3)
        );
        // Refused while still counting: a hundred thousand addresses cost no quadratic dedup.
        let crowd = format!(
            "To: {}\n\nx\n",
            (0..100_000)
                .map(|i| format!("r{i}@x.test"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_eq!(refused(crowd.as_bytes()), Refused::TooManyRecipients(3));
        assert!(matches!(refused(b"To: <a b@x.test>\n\nx\n"), Refused::BadRecipient(_)));
        let (r, _) = message(
            &spool(),
            &found(),
            b"From: not an address\nTo: a@x.test\n\nx\n".to_vec(),
        )
        .unwrap();
        assert_eq!(r.envelope, "", "no usable sender: the null sender");
    }
}
