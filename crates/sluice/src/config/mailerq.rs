//! MailerQ 5.13's settings Sluice does not act on (its A-Z settings list
//! and the keys its older pages still show): a file that sets them starts,
//! with one warning line each saying why, instead of failing on a key
//! Sluice does not know. Keys neither knows are still errors. Also the
//! older names MailerQ files still use for keys Sluice has.

use super::Origin;
use std::collections::BTreeMap;

/// `(key, why Sluice does not act on it)`.
pub const NOT_ACTED_ON: &[(&str, &str)] = &[
    ("license", "Sluice needs no license"),
    ("heartbeat-enabled", "Sluice sends no usage statistics"),
    ("error-log", "Sluice logs to standard error (log-level); redirect it"),
    ("cluster-address", "the cluster uses rabbitmq-address"),
    (
        "cluster-timeout",
        "there is no --list-cluster; GET /v1/instances lists the cluster",
    ),
    ("cluster-verify", "the cluster uses rabbitmq-address"),
    // MailerQ 4.x's cluster connection, before cluster-address.
    ("cluster-host", "the cluster uses rabbitmq-address"),
    ("cluster-user", "the cluster uses rabbitmq-address"),
    ("cluster-password", "the cluster uses rabbitmq-address"),
    ("cluster-vhost", "the cluster uses rabbitmq-address"),
    ("database-threads", "the settings database is read by one thread"),
    (
        "database-validate",
        "rows are checked on every read; sluice database check lists bad ones",
    ),
    ("dns-threads", "DNS is asynchronous, no thread pool"),
    ("dns-getaddrinfo", "Sluice always uses its own resolver"),
    ("dns-timeout", "each query waits 5 s (per attempt, dns-attempts)"),
    ("dns-interval", "the resolver's own retransmission interval is used"),
    (
        "dns-capacity",
        "lookups are not capped (identical ones in flight are shared)",
    ),
    ("dns-buffersize", "the system's socket buffers are used"),
    ("dns-rotate", "name servers are asked in /etc/resolv.conf's order"),
    (
        "application-log",
        "Sluice logs to standard error (log-level); redirect it",
    ),
    ("smtp-validate-address", "addresses are always checked strictly"),
    ("smtp-protection", "use smtp-range and smtp-connections-per-ip"),
    ("rabbitmq-qos", "use rabbitmq-prefetch"),
    ("rabbitmq-queues", "set the rabbitmq-* queue names one by one"),
    ("dsn-advertise", "DSN is always offered"),
    ("smtp-auth-results", "not supported yet"),
    ("smtp-check", "not supported yet (use a plugin)"),
    ("smtp-ciphers", "rustls chooses the ciphers"),
    ("www-ciphers", "rustls chooses the ciphers"),
    ("smtp-sink-username", "the sink is used without authentication"),
    ("smtp-sink-password", "the sink is used without authentication"),
    ("spamassassin-host", "not supported yet (use a plugin)"),
    ("spamassassin-port", "not supported yet (use a plugin)"),
    ("download-blacklist", "no ResponsiveEmail downloads"),
    ("download-whitelist", "no ResponsiveEmail downloads"),
    ("download-cache", "no ResponsiveEmail downloads"),
    ("download-ttl", "no ResponsiveEmail downloads"),
    ("download-log-compression", "no download log"),
    ("download-log-directory", "no download log"),
    ("download-log-format", "no download log"),
    ("download-log-history", "no download log"),
    ("download-log-maxage", "no download log"),
    ("download-log-maxsize", "no download log"),
    ("download-log-prefix", "no download log"),
    ("received-log-compression", "use received-log (one JSON-lines file)"),
    ("received-log-file", "use received-log"),
    ("received-log-format", "received-log is JSON lines"),
    ("received-log-history", "use received-log (one JSON-lines file)"),
    ("received-log-maxage", "use received-log (one JSON-lines file)"),
    ("received-log-maxsize", "use received-log (one JSON-lines file)"),
    ("send-log-compression", "use send-log (one JSON-lines file)"),
    ("send-log-file", "use send-log"),
    ("send-log-format", "send-log is JSON lines"),
    ("send-log-history", "use send-log (one JSON-lines file)"),
    ("send-log-maxage", "use send-log (one JSON-lines file)"),
    ("send-log-maxsize", "use send-log (one JSON-lines file)"),
    ("send-bin-log-directory", "no binary send log"),
    ("send-bin-log-history", "no binary send log"),
    ("send-bin-log-maxage", "no binary send log"),
    ("send-bin-log-maxsize", "no binary send log"),
    ("www-cache-control", "the console's files are sent with no-cache"),
    ("www-dir", "the console is built into the binary"),
    ("www-host", "use www-url for the address other instances link to"),
    ("www-auth", "not supported yet: use www-password or www-tokens"),
];

/// Why Sluice does not act on MailerQ's `key`, when it is one of those.
pub fn not_acted_on(key: &str) -> Option<&'static str> {
    NOT_ACTED_ON.iter().find(|(k, _)| *k == key).map(|(_, why)| *why)
}

/// MailerQ's older names for a key Sluice has, read as that key.
pub const RENAMED: &[(&str, &str)] = &[
    // (MailerQ 4.x's name; its smarthost page still shows it.)
    ("smtp-sink-address", "smtp-sink-ip"),
    // MailerQ 5.x's outbound limit beside smtp-connections (docs/mailerq.md).
    ("smtp-connections-out", "delivery-connections"),
    // MailerQ's IPs for messages that name none.
    ("smtp-default-ips", "delivery-ips"),
];

/// The key that replaced MailerQ's older `key`, when it is one of those.
pub fn renamed(key: &str) -> Option<&'static str> {
    RENAMED.iter().find(|(k, _)| *k == key).map(|(_, new)| *new)
}

/// Older MailerQ keys that only together make one of today's keys: kept
/// until every layer of the configuration was read.
#[derive(Debug, Default)]
pub struct Older {
    parts: BTreeMap<&'static str, (String, Origin)>,
}

/// A key made from older ones, and the keys (with where they were set) it came from.
pub struct Made {
    pub key: &'static str,
    pub value: String,
    pub from: Vec<(&'static str, Origin)>,
}

/// `(older key, the key it makes)`.
pub const PARTS: &[(&str, &str)] = &[
    ("rabbitmq-host", "rabbitmq-address"),
    ("rabbitmq-port", "rabbitmq-address"),
    ("rabbitmq-user", "rabbitmq-address"),
    ("rabbitmq-password", "rabbitmq-address"),
    ("rabbitmq-vhost", "rabbitmq-address"),
    ("send-log-directory", "send-log"),
    ("send-log-prefix", "send-log"),
    ("received-log-directory", "received-log"),
    ("received-log-prefix", "received-log"),
];

impl Older {
    /// True for the keys this gathers.
    pub fn takes(key: &str) -> bool {
        PARTS.iter().any(|(k, _)| *k == key)
    }

    /// Keeps one part (a later layer replaces an earlier one).
    pub fn set(&mut self, key: &str, value: &str, origin: Origin) {
        if let Some((k, _)) = PARTS.iter().find(|(k, _)| *k == key) {
            self.parts.insert(k, (value.to_string(), origin));
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.parts.get(key).map(|(v, _)| v.as_str()).filter(|v| !v.is_empty())
    }

    fn from(&self, made: &str) -> Vec<(&'static str, Origin)> {
        // The host or directory first: errors point at it.
        let mut from: Vec<(&'static str, Origin)> = PARTS
            .iter()
            .filter(|(_, m)| *m == made)
            .filter_map(|(k, _)| self.parts.get(k).map(|(_, o)| (*k, o.clone())))
            .collect();
        from.sort_by_key(|(k, _)| !(k.ends_with("-host") || k.ends_with("-directory")));
        from
    }

    /// The keys the parts make: `rabbitmq-address` from `rabbitmq-host`
    /// and its companions; `send-log`/`received-log` as one file in the
    /// log directory, named by the prefix (MailerQ's rotation aside).
    pub fn assemble(&self) -> Vec<Made> {
        let mut out = Vec::new();
        if self.get("rabbitmq-host").is_some() {
            let value = sluice_queue::rabbitmq::uri::assemble(
                self.get("rabbitmq-host").unwrap_or(""),
                self.get("rabbitmq-port"),
                self.get("rabbitmq-user"),
                self.parts.get("rabbitmq-password").map(|(v, _)| v.as_str()),
                self.get("rabbitmq-vhost"),
            );
            out.push(Made {
                key: "rabbitmq-address",
                value,
                from: self.from("rabbitmq-address"),
            });
        }
        for (log, default_prefix) in [("send-log", "attempts.log"), ("received-log", "received.log")] {
            if let Some(dir) = self.get(&format!("{log}-directory")) {
                let prefix = self.get(&format!("{log}-prefix")).unwrap_or(default_prefix);
                out.push(Made {
                    key: if log == "send-log" { "send-log" } else { "received-log" },
                    value: format!("{}/{prefix}", dir.trim_end_matches('/')),
                    from: self.from(log),
                });
            }
        }
        out
    }

    /// Parts that make nothing on their own, with why.
    pub fn unused(&self) -> Vec<(&'static str, Origin, &'static str)> {
        let mut out = Vec::new();
        for (key, (_, origin)) in &self.parts {
            let why = if key.starts_with("rabbitmq-") && self.get("rabbitmq-host").is_none() {
                "it is read with rabbitmq-host, which is not set"
            } else if key.ends_with("-log-prefix") && self.get(&key.replace("-prefix", "-directory")).is_none() {
                "it is read with its -log-directory, which is not set"
            } else {
                continue;
            };
            out.push((*key, origin.clone(), why));
        }
        out
    }
}
