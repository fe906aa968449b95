//! The configuration file (`spec/config.md`): `key: value` lines, typed
//! values, `SLUICE_*` environment overrides, errors naming file, line and key.

mod keys;
mod mailerq;
mod values;

pub use keys::{Settings, KEYS};
pub use values::Cidr;

use keys::ValueKind;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration error; the process exits with code 2 on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {key}: {message}")]
pub struct ConfigError {
    /// `file:line`, or `environment SLUICE_X`, or `config`.
    pub origin: String,
    pub key: String,
    pub message: String,
}

/// Every error of a configuration, in the order found, so one run shows
/// all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf, usize),
    /// `--key=value` on the command line, as MailerQ takes it.
    Argument(String),
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "default"),
            Origin::File(p, l) => write!(f, "{}:{}", p.display(), l),
            Origin::Argument(k) => write!(f, "command line --{k}"),
            Origin::Env(v) => write!(f, "environment {v}"),
        }
    }
}

/// Where the settings come from, in rising precedence (as MailerQ reads
/// them): the files in order (the main one, then `--config-file` layered
/// over it), `--key=value` arguments, then `MAILERQ_*` and `SLUICE_*`
/// environment variables.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub files: Vec<PathBuf>,
    pub arguments: Vec<(String, String)>,
}

/// The effective configuration: every key with its raw value and origin
/// (for errors and `config check`), and the typed [`Settings`] the program
/// reads, built once every value was checked.
#[derive(Debug, Clone)]
pub struct Config {
    values: BTreeMap<&'static str, (String, Origin)>,
    /// MailerQ keys the file set that Sluice does not act on: one line each
    /// (`origin: key: accepted, not acted on by Sluice: why`).
    pub warnings: Vec<String>,
    /// Every setting, typed.
    pub settings: Settings,
}

/// A configuration being read: errors are collected, not returned at the
/// first, and MailerQ's older keys are kept until every layer was read.
struct Loader {
    cfg: Config,
    errors: Vec<ConfigError>,
    older: mailerq::Older,
}

/// True for a key the configuration takes: Sluice's, or one of MailerQ's.
pub fn is_key(key: &str) -> bool {
    KEYS.iter().any(|k| k.name == key)
        || mailerq::renamed(key).is_some()
        || mailerq::Older::takes(key)
        || mailerq::not_acted_on(key).is_some()
}

impl Config {
    /// Parses `path` (if given) and applies `env` overrides over the defaults.
    #[cfg(test)]
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigErrors> {
        let sources = Sources {
            files: path.map(Path::to_path_buf).into_iter().collect(),
            arguments: Vec::new(),
        };
        Config::load_from(&sources, env)
    }

    /// Reads every source in turn over the defaults; all errors together.
    pub fn load_from(
        sources: &Sources,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let mut values = BTreeMap::new();
        for k in KEYS {
            values.insert(k.name, (k.default.to_string(), Origin::Default));
        }
        let settings = Settings::read(|key| &values[key].0);
        let mut l = Loader {
            cfg: Config {
                values,
                settings,
                warnings: Vec::new(),
            },
            errors: Vec::new(),
            older: Default::default(),
        };
        for path in &sources.files {
            match std::fs::read_to_string(path) {
                Ok(text) => l.parse_text(path, &text),
                Err(e) => l.errors.push(ConfigError {
                    origin: path.display().to_string(),
                    key: "-".into(),
                    message: format!("cannot read config file: {e}"),
                }),
            }
        }
        for (key, value) in &sources.arguments {
            let key = key.to_ascii_lowercase();
            l.set(&key, value.trim(), Origin::Argument(key.clone()));
        }
        // MailerQ's `MAILERQ_*` overrides work too; `SLUICE_*` ones are
        // applied after them, so Sluice's own name wins when both are set.
        let mut env: Vec<(String, String)> = env.into_iter().collect();
        env.sort_by_key(|(var, _)| !var.starts_with("MAILERQ_"));
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("SLUICE_").or_else(|| var.strip_prefix("MAILERQ_")) else {
                continue;
            };
            let key = rest.to_ascii_lowercase().replace('_', "-");
            l.set(&key, value.trim(), Origin::Env(var.clone()));
        }
        l.assemble_older();
        let Loader {
            mut cfg, mut errors, ..
        } = l;
        cfg.settings = Settings::read(|key| &cfg.values[key].0);
        let (more, warnings) = cfg.check();
        errors.extend(more);
        cfg.warnings.extend(warnings);
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Checks that need more than one key (or more than the value's kind); warnings beside.
    fn check(&self) -> (Vec<ConfigError>, Vec<String>) {
        let s = &self.settings;
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let mut fail = |key: &str, message: &str| errors.push(self.error(key, message.into()));
        let has_cert = s.smtp_certificate.is_some();
        if has_cert != s.smtp_key.is_some() {
            let key = if has_cert { "smtp-key" } else { "smtp-certificate" };
            fail(key, "smtp-certificate and smtp-key must be set together");
        }
        if s.www_certificate.is_some() != s.www_key().is_some() {
            let key = if s.www_certificate.is_some() {
                "www-private-key"
            } else {
                "www-certificate"
            };
            fail(key, "www-certificate and www-private-key must be set together");
        }
        if s.www_secure_port.len() > 1 {
            fail("www-secure-port", "one port");
        }
        if s.www_port == 0 && s.www_secure_port.is_empty() {
            fail("www-port", "0 turns plain HTTP off, which needs www-secure-port");
        }
        if s.smtp_username.is_some() != s.smtp_password.is_some() {
            fail("smtp-password", "smtp-username and smtp-password must be set together");
        }
        if let Some(auth) = &s.smtp_auth {
            match crate::receive::accounts::source(auth) {
                Err(e) => fail("smtp-auth", &e),
                Ok(crate::receive::accounts::Source::Unsupported(scheme)) => {
                    let origin = &self.values["smtp-auth"].1;
                    warnings.push(format!(
                        "{origin}: smtp-auth: accepted, not acted on by Sluice: {scheme}:// accounts are not supported (hardcoded:// and file:// are)"
                    ));
                }
                Ok(_) => {}
            }
        }
        if s.www_username.is_some() && s.www_password.is_none() {
            // (www-password alone is MailerQ's way: any user name is taken.)
            fail("www-password", "www-username needs www-password");
        }
        if let (Some(a), Some(b)) = (&s.database_address, &s.database) {
            if a != b {
                fail(
                    "database",
                    "database is the old name of database-address; set one of them",
                );
            }
        }
        if let Some(name) = &s.smtp_hostname {
            // It is sent in every greeting, EHLO and Received line.
            if let Err(e) = sluice_smtp::wire::HeloName::new(name) {
                fail("smtp-hostname", &e.to_string());
            }
        }
        errors.extend(self.check_open_relay().err());
        errors.extend(self.check_open_management().err());
        (errors, warnings)
    }

    /// Refuses to run as an open relay by accident (see `smtp-open-relay`).
    fn check_open_relay(&self) -> Result<(), ConfigError> {
        let s = &self.settings;
        let public = s.smtp_ip.iter().any(|ip| !ip.is_loopback());
        // smtp-auth counts only when Sluice reads its accounts.
        use crate::receive::accounts::{source, Source};
        let auth = s
            .smtp_auth
            .as_deref()
            .is_some_and(|a| matches!(source(a), Ok(Source::Hardcoded(_) | Source::File(_))));
        if public && s.smtp_range.is_empty() && s.smtp_username.is_none() && !auth && !s.smtp_open_relay {
            return Err(self.error(
                "smtp-ip",
                "listening on a non-loopback address with neither smtp-range nor smtp-username (or smtp-auth) set would make an open relay; set one of them, or smtp-open-relay: true".into(),
            ));
        }
        Ok(())
    }

    /// Refuses a management port anyone can reach without a password, which
    /// would let them read and inject mail (see `www-open`).
    fn check_open_management(&self) -> Result<(), ConfigError> {
        let s = &self.settings;
        let public = s.www_ip.iter().any(|ip| !ip.is_loopback());
        if public && s.www_password.is_none() && s.www_tokens.is_empty() && !s.www_open {
            return Err(self.error(
                "www-ip",
                "the HTTP API on a non-loopback address without www-username/www-password lets anyone read and inject mail; set them, or www-open: true".into(),
            ));
        }
        Ok(())
    }

    /// An error about `key`, located where the key was set.
    pub fn error(&self, key: &str, message: String) -> ConfigError {
        let origin = self
            .values
            .get(key)
            .map(|(_, o)| o.to_string())
            .unwrap_or_else(|| "config".into());
        ConfigError {
            origin,
            key: key.to_string(),
            message,
        }
    }

    /// The effective configuration as `key: value  # origin` lines; passwords hidden.
    pub fn render(&self) -> String {
        use sluice_queue::credentials::hide_password;
        // URLs that may carry a password (besides rabbitmq-address).
        const ADDRESSES_WITH_SECRETS: &[&str] = &["storage-address", "database-address", "database"];
        let mut out = String::new();
        for k in KEYS {
            let (v, origin) = &self.values[k.name];
            let hidden;
            let shown = if k.kind == ValueKind::Secret && !v.is_empty() {
                "********"
            } else if k.kind == ValueKind::Amqp {
                hidden = v
                    .split(',')
                    .map(|u| hide_password(u.trim()))
                    .collect::<Vec<_>>()
                    .join(", ");
                hidden.as_str()
            } else if k.name == "smtp-auth" && v.starts_with("hardcoded://") {
                "hardcoded://********"
            } else if ADDRESSES_WITH_SECRETS.contains(&k.name) {
                hidden = hide_password(v);
                hidden.as_str()
            } else {
                v.as_str()
            };
            out.push_str(&format!("{}: {}", k.name, shown));
            if *origin != Origin::Default {
                out.push_str(&format!("    # {origin}"));
            }
            out.push('\n');
        }
        out
    }
}

impl Loader {
    fn parse_text(&mut self, path: &Path, text: &str) {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        // Editors on some systems start UTF-8 files with a byte order mark.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (i, line) in text.lines().enumerate() {
            let lineno = i + 1;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let origin = Origin::File(path.to_path_buf(), lineno);
            let Some((key, value)) = trimmed.split_once(':') else {
                self.fail(&origin, trimmed, "expected `key: value`".into());
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            if let Some(first) = seen.get(&key) {
                let message = format!("duplicate key (first set on line {first})");
                self.fail(&origin, &key, message);
                continue;
            }
            seen.insert(key.clone(), lineno);
            self.set(&key, value.trim(), origin);
        }
    }

    fn fail(&mut self, origin: &Origin, key: &str, message: String) {
        self.errors.push(ConfigError {
            origin: origin.to_string(),
            key: key.to_string(),
            message,
        });
    }

    fn set(&mut self, written: &str, value: &str, origin: Origin) {
        let key = mailerq::renamed(written).unwrap_or(written);
        let Some(spec) = KEYS.iter().find(|k| k.name == key) else {
            if mailerq::Older::takes(key) {
                self.older.set(key, value, origin);
            } else if let Some(why) = mailerq::not_acted_on(key) {
                self.cfg
                    .warnings
                    .push(format!("{origin}: {key}: accepted, not acted on by Sluice: {why}"));
            } else {
                self.fail(&origin, key, "unknown key".into());
            }
            return;
        };
        match spec.kind.validate(value) {
            Ok(()) => {
                self.cfg.values.insert(spec.name, (value.to_string(), origin));
            }
            // Named as the file wrote it, MailerQ's older name included.
            Err(message) => self.fail(&origin, written, message),
        }
    }

    /// Turns MailerQ's older keys into the ones that replaced them, unless
    /// the file also sets the new key (then the older ones are ignored, with
    /// a warning each).
    fn assemble_older(&mut self) {
        let older = std::mem::take(&mut self.older);
        for made in older.assemble() {
            let explicit = self
                .cfg
                .values
                .get(made.key)
                .is_some_and(|(_, o)| *o != Origin::Default);
            if explicit {
                for (key, origin) in made.from {
                    self.cfg.warnings.push(format!(
                        "{origin}: {key}: accepted, not acted on by Sluice: {} is set, which replaces it",
                        made.key
                    ));
                }
            } else {
                let (key, origin) = made.from[0].clone();
                let Some(spec) = KEYS.iter().find(|k| k.name == made.key) else {
                    continue;
                };
                match spec.kind.validate(&made.value) {
                    Ok(()) => {
                        self.cfg.values.insert(spec.name, (made.value, origin));
                    }
                    Err(message) => self.fail(&origin, key, message),
                }
            }
        }
        for (key, origin, why) in older.unused() {
            self.cfg
                .warnings
                .push(format!("{origin}: {key}: accepted, not acted on by Sluice: {why}"));
        }
    }
}

#[cfg(test)]
mod tests;
