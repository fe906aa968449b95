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

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf, usize),
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "default"),
            Origin::File(p, l) => write!(f, "{}:{}", p.display(), l),
            Origin::Env(v) => write!(f, "environment {v}"),
        }
    }
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

impl Config {
    /// Parses `path` (if given) and applies `env` overrides over the defaults.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut values = BTreeMap::new();
        for k in KEYS {
            values.insert(k.name, (k.default.to_string(), Origin::Default));
        }
        let settings = Settings::read(|key| &values[key].0);
        let mut cfg = Config {
            values,
            settings,
            warnings: Vec::new(),
        };
        if let Some(path) = path {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                origin: path.display().to_string(),
                key: "-".into(),
                message: format!("cannot read config file: {e}"),
            })?;
            cfg.parse_text(path, &text)?;
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
            let origin = Origin::Env(var.clone());
            cfg.set(&key, value.trim(), origin)?;
        }
        cfg.settings = Settings::read(|key| &cfg.values[key].0);
        cfg.check()?;
        Ok(cfg)
    }

    fn parse_text(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        // Editors on some systems start UTF-8 files with a byte order mark.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (i, line) in text.lines().enumerate() {
            let lineno = i + 1;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let err = |key: &str, message: String| ConfigError {
                origin: format!("{}:{}", path.display(), lineno),
                key: key.to_string(),
                message,
            };
            let Some((key, value)) = trimmed.split_once(':') else {
                return Err(err(trimmed, "expected `key: value`".into()));
            };
            let key = key.trim().to_ascii_lowercase();
            if let Some(first) = seen.get(&key) {
                return Err(err(&key, format!("duplicate key (first set on line {first})")));
            }
            seen.insert(key.clone(), lineno);
            self.set(&key, value.trim(), Origin::File(path.to_path_buf(), lineno))?;
        }
        Ok(())
    }

    fn set(&mut self, key: &str, value: &str, origin: Origin) -> Result<(), ConfigError> {
        let err = |message: String| ConfigError {
            origin: origin.to_string(),
            key: key.to_string(),
            message,
        };
        let Some(spec) = KEYS.iter().find(|k| k.name == key) else {
            if let Some(why) = mailerq::not_acted_on(key) {
                self.warnings
                    .push(format!("{origin}: {key}: accepted, not acted on by Sluice: {why}"));
                return Ok(());
            }
            return Err(err("unknown key".into()));
        };
        spec.kind.validate(value).map_err(err)?;
        self.values.insert(spec.name, (value.to_string(), origin));
        Ok(())
    }

    /// Checks that need more than one key.
    fn check(&self) -> Result<(), ConfigError> {
        let s = &self.settings;
        let has_cert = s.smtp_certificate.is_some();
        if has_cert != s.smtp_key.is_some() {
            let key = if has_cert { "smtp-key" } else { "smtp-certificate" };
            return Err(self.error(key, "smtp-certificate and smtp-key must be set together".into()));
        }
        if s.www_certificate.is_some() != s.www_key().is_some() {
            let key = if s.www_certificate.is_some() {
                "www-private-key"
            } else {
                "www-certificate"
            };
            return Err(self.error(key, "www-certificate and www-private-key must be set together".into()));
        }
        if s.www_secure_port.len() > 1 {
            return Err(self.error("www-secure-port", "one port".into()));
        }
        if s.smtp_username.is_some() != s.smtp_password.is_some() {
            return Err(self.error(
                "smtp-password",
                "smtp-username and smtp-password must be set together".into(),
            ));
        }
        if s.www_username.is_some() && s.www_password.is_none() {
            // (www-password alone is MailerQ's way: any user name is taken.)
            return Err(self.error("www-password", "www-username needs www-password".into()));
        }
        if let (Some(a), Some(b)) = (&s.database_address, &s.database) {
            if a != b {
                return Err(self.error(
                    "database",
                    "database is the old name of database-address; set one of them".into(),
                ));
            }
        }
        if let Some(name) = &s.smtp_hostname {
            // It is sent in every greeting, EHLO and Received line.
            sluice_smtp::wire::HeloName::new(name).map_err(|e| self.error("smtp-hostname", e.to_string()))?;
        }
        self.check_open_relay()?;
        self.check_open_management()
    }

    /// Refuses to run as an open relay by accident (see `smtp-open-relay`).
    fn check_open_relay(&self) -> Result<(), ConfigError> {
        let s = &self.settings;
        let public = s.smtp_ip.iter().any(|ip| !ip.is_loopback());
        if public && s.smtp_range.is_empty() && s.smtp_username.is_none() && !s.smtp_open_relay {
            return Err(self.error(
                "smtp-ip",
                "listening on a non-loopback address with neither smtp-range nor smtp-username set would make an open relay; set one of them, or smtp-open-relay: true".into(),
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
        let mut out = String::new();
        for k in KEYS {
            let (v, origin) = &self.values[k.name];
            let hidden;
            let shown = if k.kind == ValueKind::Secret && !v.is_empty() {
                "********"
            } else if k.kind == ValueKind::Amqp {
                hidden = v
                    .split(',')
                    .map(|u| sluice_queue::rabbitmq::uri::hide_password(u.trim()))
                    .collect::<Vec<_>>()
                    .join(", ");
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

#[cfg(test)]
mod tests;
