//! Who may log in with SMTP AUTH: `smtp-username`/`smtp-password`, and
//! MailerQ's `smtp-auth`: `hardcoded://user:password,user2:password2`, or
//! `file:///path` whose lines are `user:HASH` with SHA-crypt hashes as
//! `mkpasswd -m sha-512` and `openssl passwd -6` (or `-5`) make them.
//! MailerQ's other sources (LDAP, RADIUS, system users, HTTP, a script)
//! are not built: such a value starts with a warning, and AUTH then uses
//! `smtp-username` alone.

use crate::config::Settings;
use sha_crypt::{PasswordVerifier, ShaCrypt};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The largest accounts file read (a file is the operator's, but a wrong
/// path must not read a disk image into memory).
const MAX_FILE: u64 = 16 << 20;
/// SHA-crypt rounds above this are refused: every failed login would cost
/// a core for seconds (the default is 5,000).
const MAX_ROUNDS: u32 = 1_000_000;

/// `smtp-auth` schemes MailerQ documents that Sluice does not read.
pub const UNSUPPORTED: &[&str] = &["ldap", "radius", "users", "http", "https", "exec"];

/// Where `smtp-auth` takes its accounts from.
#[derive(Debug, PartialEq, Eq)]
pub enum Source<'a> {
    /// `hardcoded://` pairs.
    Hardcoded(Vec<(&'a str, &'a str)>),
    /// `file://` with hashed passwords.
    File(&'a Path),
    /// A scheme MailerQ has and Sluice does not (the warning names it).
    Unsupported(&'a str),
}

/// Reads an `smtp-auth` value; the message says what was expected.
pub fn source(value: &str) -> Result<Source<'_>, String> {
    let (scheme, rest) = value
        .split_once("://")
        .ok_or("expected hardcoded://user:password,… or file:///path")?;
    match scheme {
        "hardcoded" => rest
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .enumerate()
            .map(|(i, pair)| match pair.split_once(':') {
                Some((user, password)) if !user.is_empty() && !password.is_empty() => Ok((user, password)),
                // The entry itself may be a password: it is not repeated.
                _ => Err(format!("entry {} is not user:password", i + 1)),
            })
            .collect::<Result<Vec<_>, _>>()
            .and_then(|pairs| match pairs.is_empty() {
                true => Err("hardcoded:// names no user:password".into()),
                false => Ok(Source::Hardcoded(pairs)),
            }),
        "file" if rest.starts_with('/') => Ok(Source::File(Path::new(rest))),
        "file" => Err("the path must be absolute (file:///path)".into()),
        s if UNSUPPORTED.contains(&s) => Ok(Source::Unsupported(s)),
        other => Err(format!(
            "`{}` is not an smtp-auth scheme (hardcoded://, file://)",
            sluice_smtp::wire::shown(other)
        )),
    }
}

/// What a login's password is checked against.
enum Secret {
    Plain(String),
    /// A `$5$`/`$6$` SHA-crypt string, checked to parse at start-up.
    Crypt(String),
}

/// The accounts AUTH checks against.
pub struct Accounts {
    by_user: HashMap<String, Secret>,
    /// A hash an unknown user's password is checked against too, so the
    /// time of a refusal does not tell which users exist.
    decoy: Option<String>,
    /// Hashed checks at once (one per core): many clients trying passwords
    /// queue here instead of each taking a blocking thread.
    hashing: tokio::sync::Semaphore,
}

impl Accounts {
    /// The configured accounts; None when AUTH has none. A file that
    /// cannot be read is an error; a line of it that is not `user:HASH`
    /// is logged by number (not content) and skipped.
    pub fn from_settings(s: &Settings) -> Result<Option<Accounts>, String> {
        let mut by_user = HashMap::new();
        if let (Some(u), Some(p)) = (&s.smtp_username, &s.smtp_password) {
            by_user.insert(u.clone(), Secret::Plain(p.clone()));
        }
        match s.smtp_auth.as_deref().map(source).transpose()? {
            Some(Source::Hardcoded(pairs)) => {
                for (user, password) in pairs {
                    by_user.insert(user.to_string(), Secret::Plain(password.to_string()));
                }
            }
            Some(Source::File(path)) => read_file(path, &mut by_user)?,
            Some(Source::Unsupported(_)) | None => {}
        }
        let decoy = by_user.values().find_map(|s| match s {
            Secret::Crypt(h) => Some(h.clone()),
            Secret::Plain(_) => None,
        });
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok((!by_user.is_empty()).then_some(Accounts {
            by_user,
            decoy,
            hashing: tokio::sync::Semaphore::new(cores),
        }))
    }

    /// Whether `password` is `login`'s; with SHA-crypt accounts (milliseconds
    /// a check) on a blocking thread, one per core at a time, not on the
    /// worker that serves other sessions.
    pub async fn verify(self: Arc<Self>, login: String, password: String) -> bool {
        if self.decoy.is_none() {
            return self.check(&login, &password);
        }
        let Ok(_slot) = self.hashing.acquire().await else {
            return false;
        };
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.check(&login, &password))
            .await
            .unwrap_or(false)
    }

    /// Whether `password` is `login`'s, on this thread.
    fn check(&self, login: &str, password: &str) -> bool {
        match self.by_user.get(login) {
            Some(Secret::Plain(want)) => crate::secret::same(password.as_bytes(), want.as_bytes()),
            Some(Secret::Crypt(hash)) => verify(password, hash),
            None => {
                if let Some(hash) = &self.decoy {
                    verify(password, hash);
                }
                false
            }
        }
    }

    /// How many accounts there are (for the start-up log line).
    pub fn len(&self) -> usize {
        self.by_user.len()
    }
}

fn verify(password: &str, hash: &str) -> bool {
    ShaCrypt::default().verify_password(password.as_bytes(), hash).is_ok()
}

/// Reads `user:HASH` lines (more `:` fields after the hash, as in
/// /etc/shadow, are ignored); `#` starts a comment line.
fn read_file(path: &Path, by_user: &mut HashMap<String, Secret>) -> Result<(), String> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("{shown}: {e}"))?;
    let mut text = String::new();
    file.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{shown}: {e}"))?;
    if text.len() as u64 > MAX_FILE {
        return Err(format!("{shown}: larger than {} MiB", MAX_FILE >> 20));
    }
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(':');
        let (user, hash) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        match usable_hash(hash) {
            Ok(()) if !user.is_empty() => {
                by_user.insert(user.to_string(), Secret::Crypt(hash.to_string()));
            }
            Ok(()) => tracing::warn!(file = %shown, line = n + 1, "smtp-auth: a line without a user name, skipped"),
            Err(why) => tracing::warn!(file = %shown, line = n + 1, "smtp-auth: {why}, skipped"),
        }
    }
    Ok(())
}

/// A `$5$`/`$6$` hash this build checks, within [`MAX_ROUNDS`].
fn usable_hash(hash: &str) -> Result<(), String> {
    if !(hash.starts_with("$5$") || hash.starts_with("$6$")) {
        return Err("not a SHA-crypt hash ($5$ or $6$: mkpasswd -m sha-512, openssl passwd -6)".into());
    }
    let parsed = sha_crypt::PasswordHashRef::new(hash).map_err(|_| "not a well-formed SHA-crypt hash".to_string())?;
    let rounds = parsed
        .fields()
        .next()
        .and_then(|f| f.as_str().strip_prefix("rounds="))
        .map(|r| r.parse::<u32>().unwrap_or(u32::MAX));
    if rounds.is_some_and(|r| r > MAX_ROUNDS) {
        return Err(format!("more than {MAX_ROUNDS} rounds"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_as_mailerq_writes_them() {
        assert_eq!(
            source("hardcoded://a:p1, b:p:2").unwrap(),
            Source::Hardcoded(vec![("a", "p1"), ("b", "p:2")])
        );
        assert_eq!(
            source("file:///etc/users").unwrap(),
            Source::File(Path::new("/etc/users"))
        );
        assert_eq!(
            source("ldap://example.com:389/dc=x").unwrap(),
            Source::Unsupported("ldap")
        );
        for bad in [
            "hardcoded://",
            "hardcoded://secretonly",
            "file://rel/path",
            "gopher://x",
            "plain",
        ] {
            let e = source(bad).unwrap_err();
            assert!(!e.contains("secretonly"), "{bad}: {e}");
        }
    }

    #[test]
    fn hashes_are_checked_and_bounded() {
        // `openssl passwd -6 -salt saltsalt secret`.
        let six = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
        assert!(usable_hash(six).is_ok());
        assert!(verify("secret", six));
        assert!(!verify("Secret", six));
        assert!(usable_hash("$1$md5$x").is_err());
        assert!(usable_hash("$6$rounds=999999999$salt$hash").is_err());
        assert!(usable_hash("plaintext").is_err());
    }
}
