//! Every configuration key, its type and default (`spec/config.md`).

use super::values;

/// How a key's value is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Str,
    /// Hidden in `config check` output.
    Secret,
    Bool,
    Int {
        min: u64,
        max: u64,
    },
    Size,
    Ports,
    Cidrs,
    /// One or more IP addresses (`,`/`;` separated).
    Ips,
    /// `ip[:port]`.
    HostPort,
    /// `amqp://user:pass@host1;host2/vhost`.
    Amqp,
    Choice(&'static [&'static str]),
}

impl ValueKind {
    /// Checks a value; the message says what was expected.
    pub fn validate(&self, v: &str) -> Result<(), String> {
        if v.is_empty() {
            return match self {
                ValueKind::Bool | ValueKind::Int { .. } | ValueKind::Size | ValueKind::Ports | ValueKind::Choice(_) => {
                    Err("a value is required".into())
                }
                _ => Ok(()),
            };
        }
        match self {
            ValueKind::Str | ValueKind::Secret => Ok(()),
            ValueKind::Bool => values::parse_bool(v).map(|_| ()),
            ValueKind::Int { min, max } => match v.parse::<u64>() {
                Ok(n) if (*min..=*max).contains(&n) => Ok(()),
                _ => Err(format!("expected a whole number from {min} to {max}, got `{v}`")),
            },
            ValueKind::Size => values::parse_size(v).map(|_| ()),
            ValueKind::Ports => values::parse_ports(v).map(|_| ()),
            ValueKind::Cidrs => values::split_list(v)
                .iter()
                .try_for_each(|c| c.parse::<values::Cidr>().map(|_| ())),
            ValueKind::Ips => values::split_list(v).iter().try_for_each(|ip| {
                ip.parse::<std::net::IpAddr>()
                    .map(|_| ())
                    .map_err(|_| format!("`{ip}` is not an IP address"))
            }),
            ValueKind::HostPort => values::parse_host_port(v, 53).map(|_| ()),
            ValueKind::Amqp => {
                if v.starts_with("amqp://") || v.starts_with("amqps://") {
                    Ok(())
                } else {
                    Err(format!("expected amqp://user:pass@host[;host2]/vhost, got `{v}`"))
                }
            }
            ValueKind::Choice(options) => {
                if options.contains(&v) {
                    Ok(())
                } else {
                    Err(format!("expected one of {}, got `{v}`", options.join(", ")))
                }
            }
        }
    }
}

/// One configuration key.
#[derive(Debug)]
pub struct Key {
    pub name: &'static str,
    pub kind: ValueKind,
    pub default: &'static str,
}

const fn key(name: &'static str, kind: ValueKind, default: &'static str) -> Key {
    Key { name, kind, default }
}

const PORT: ValueKind = ValueKind::Int { min: 1, max: 65535 };
const SECONDS: ValueKind = ValueKind::Int {
    min: 1,
    max: 31_536_000,
};
const COUNT: ValueKind = ValueKind::Int {
    min: 0,
    max: 1_000_000_000,
};

/// All keys, in the order of `spec/config.md`.
pub const KEYS: &[Key] = &[
    // Inbound SMTP
    key("smtp-ip", ValueKind::Ips, "127.0.0.1"),
    key("smtp-port", ValueKind::Ports, "2525"),
    key("smtp-secure-port", ValueKind::Ports, ""),
    key("smtp-certificate", ValueKind::Str, ""),
    key("smtp-key", ValueKind::Str, ""),
    key("smtp-range", ValueKind::Cidrs, ""),
    key("smtp-username", ValueKind::Str, ""),
    key("smtp-password", ValueKind::Secret, ""),
    key("smtp-maxsize", ValueKind::Size, "100MB"),
    key("smtp-connections", ValueKind::Int { min: 1, max: 1_000_000 }, "1000"),
    key("smtp-threads", ValueKind::Int { min: 0, max: 1024 }, "0"),
    key("smtp-extract", ValueKind::Bool, "true"),
    key("smtp-proxy", ValueKind::Cidrs, ""),
    key("smtp-hostname", ValueKind::Str, ""),
    key("smtp-timeout", SECONDS, "300"),
    key("smtp-max-recipients", ValueKind::Int { min: 1, max: 1_000_000 }, "1000"),
    key("smtp-open-relay", ValueKind::Bool, "false"),
    key("smtp-greeting-delay", ValueKind::Int { min: 0, max: 60_000 }, "0"),
    // Additions (docs/config.md): limits per client and for reception as a whole.
    key(
        "smtp-connections-per-ip",
        ValueKind::Int { min: 0, max: 1_000_000 },
        "50",
    ),
    key(
        "smtp-connections-per-ip-exceptions",
        ValueKind::Cidrs,
        "127.0.0.0/8, ::1",
    ),
    key("smtp-command-timeout", SECONDS, "300"),
    key("smtp-data-timeout", SECONDS, "600"),
    key("reception-memory", ValueKind::Size, "1GB"),
    // Queues
    key("rabbitmq-address", ValueKind::Amqp, ""),
    key("rabbitmq-outbox", ValueKind::Str, "outbox"),
    key("rabbitmq-inbox", ValueKind::Str, ""),
    key("rabbitmq-local", ValueKind::Str, ""),
    key("rabbitmq-reports", ValueKind::Str, ""),
    key("rabbitmq-refused", ValueKind::Str, ""),
    key("rabbitmq-results", ValueKind::Str, "results"),
    key("rabbitmq-success", ValueKind::Str, "success"),
    key("rabbitmq-failure", ValueKind::Str, "failure"),
    key("rabbitmq-retry", ValueKind::Str, "retry"),
    key("rabbitmq-dsn", ValueKind::Str, ""),
    key("rabbitmq-exchange", ValueKind::Str, ""),
    key("rabbitmq-durable", ValueKind::Bool, "true"),
    key("rabbitmq-persistent", ValueKind::Bool, "true"),
    key("rabbitmq-consumers", ValueKind::Int { min: 1, max: 1000 }, "1"),
    key("rabbitmq-publishers", ValueKind::Int { min: 1, max: 1000 }, "1"),
    key("rabbitmq-prefetch", ValueKind::Int { min: 1, max: 1_000_000 }, "1000"),
    key("data-directory", ValueKind::Str, "./sluice-data"),
    // Delivery
    key("max-delivertime", SECONDS, "86400"),
    key("max-attempts", COUNT, "0"),
    key("smarthost", ValueKind::Str, ""),
    key("smarthost-port", PORT, "25"),
    key("smarthost-username", ValueKind::Str, ""),
    key("smarthost-password", ValueKind::Secret, ""),
    key("smtp-sink-ip", ValueKind::Ips, ""),
    key("smtp-sink-port", PORT, "25"),
    key("dns-server", ValueKind::HostPort, ""),
    key(
        "delivery-connections",
        ValueKind::Int { min: 1, max: 1_000_000 },
        "1000",
    ),
    key("delivery-timeout", SECONDS, "300"),
    key("delivery-ips", ValueKind::Ips, ""),
    key(
        "tls-outbound",
        ValueKind::Choice(&["opportunistic", "required", "disabled"]),
        "opportunistic",
    ),
    // Additions (docs/config.md): per-destination limits and the retry schedule.
    key("delivery-enabled", ValueKind::Bool, "true"),
    key("delivery-port", PORT, "25"),
    key(
        "delivery-domain-connections",
        ValueKind::Int { min: 1, max: 100_000 },
        "10",
    ),
    key(
        "delivery-connection-messages",
        ValueKind::Int { min: 1, max: 1_000_000 },
        "100",
    ),
    key("retry-interval", SECONDS, "300"),
    // Plugins
    key("plugin-directory", ValueKind::Str, ""),
    key("plugin-timeout", SECONDS, "60"),
    // Management
    key("www-ip", ValueKind::Ips, "127.0.0.1"),
    key("www-port", PORT, "8485"),
    key("www-username", ValueKind::Str, ""),
    key("www-password", ValueKind::Secret, ""),
    key("www-open", ValueKind::Bool, "false"),
    key("server-id", ValueKind::Int { min: 0, max: 65535 }, "1"),
    key("lock", ValueKind::Str, ""),
    key("user", ValueKind::Str, ""),
    key(
        "log-level",
        ValueKind::Choice(&["error", "warn", "info", "debug", "trace"]),
        "info",
    ),
    key("send-log", ValueKind::Str, ""),
    key("received-log", ValueKind::Str, ""),
    key("spool-directory", ValueKind::Str, ""),
    key("spool-delay", COUNT, "0"),
    key("spool-remove", ValueKind::Bool, "true"),
    key("spool-extract", ValueKind::Bool, "true"),
    key("database", ValueKind::Str, ""),
];
