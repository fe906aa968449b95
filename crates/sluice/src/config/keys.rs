//! Every configuration key, its type and default (`spec/config.md`).

use super::values;

/// How a key's value is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
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

impl Kind {
    /// Checks a value; the message says what was expected.
    pub fn validate(&self, v: &str) -> Result<(), String> {
        if v.is_empty() {
            return match self {
                Kind::Bool | Kind::Int { .. } | Kind::Size | Kind::Ports | Kind::Choice(_) => {
                    Err("a value is required".into())
                }
                _ => Ok(()),
            };
        }
        match self {
            Kind::Str | Kind::Secret => Ok(()),
            Kind::Bool => values::parse_bool(v).map(|_| ()),
            Kind::Int { min, max } => match v.parse::<u64>() {
                Ok(n) if (*min..=*max).contains(&n) => Ok(()),
                _ => Err(format!("expected a whole number from {min} to {max}, got `{v}`")),
            },
            Kind::Size => values::parse_size(v).map(|_| ()),
            Kind::Ports => values::parse_ports(v).map(|_| ()),
            Kind::Cidrs => values::split_list(v)
                .iter()
                .try_for_each(|c| c.parse::<values::Cidr>().map(|_| ())),
            Kind::Ips => values::split_list(v).iter().try_for_each(|ip| {
                ip.parse::<std::net::IpAddr>()
                    .map(|_| ())
                    .map_err(|_| format!("`{ip}` is not an IP address"))
            }),
            Kind::HostPort => values::parse_host_port(v, 53).map(|_| ()),
            Kind::Amqp => {
                if v.starts_with("amqp://") || v.starts_with("amqps://") {
                    Ok(())
                } else {
                    Err(format!("expected amqp://user:pass@host[;host2]/vhost, got `{v}`"))
                }
            }
            Kind::Choice(options) => {
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
    pub kind: Kind,
    pub default: &'static str,
}

const fn key(name: &'static str, kind: Kind, default: &'static str) -> Key {
    Key { name, kind, default }
}

const PORT: Kind = Kind::Int { min: 1, max: 65535 };
const SECONDS: Kind = Kind::Int {
    min: 1,
    max: 31_536_000,
};
const COUNT: Kind = Kind::Int {
    min: 0,
    max: 1_000_000_000,
};

/// All keys, in the order of `spec/config.md`.
pub const KEYS: &[Key] = &[
    // Inbound SMTP
    key("smtp-ip", Kind::Ips, "127.0.0.1"),
    key("smtp-port", Kind::Ports, "2525"),
    key("smtp-secure-port", Kind::Ports, ""),
    key("smtp-certificate", Kind::Str, ""),
    key("smtp-key", Kind::Str, ""),
    key("smtp-range", Kind::Cidrs, ""),
    key("smtp-username", Kind::Str, ""),
    key("smtp-password", Kind::Secret, ""),
    key("smtp-maxsize", Kind::Size, "100MB"),
    key("smtp-connections", Kind::Int { min: 1, max: 1_000_000 }, "1000"),
    key("smtp-threads", Kind::Int { min: 0, max: 1024 }, "0"),
    key("smtp-extract", Kind::Bool, "true"),
    key("smtp-proxy", Kind::Cidrs, ""),
    key("smtp-hostname", Kind::Str, ""),
    key("smtp-timeout", SECONDS, "300"),
    key("smtp-max-recipients", Kind::Int { min: 1, max: 1_000_000 }, "1000"),
    key("smtp-open-relay", Kind::Bool, "false"),
    key("smtp-greeting-delay", Kind::Int { min: 0, max: 60_000 }, "0"),
    // Additions (docs/config.md): limits per client and for reception as a whole.
    key("smtp-connections-per-ip", Kind::Int { min: 0, max: 1_000_000 }, "50"),
    key("smtp-connections-per-ip-exceptions", Kind::Cidrs, "127.0.0.0/8, ::1"),
    key("smtp-command-timeout", SECONDS, "300"),
    key("smtp-data-timeout", SECONDS, "600"),
    key("reception-memory", Kind::Size, "1GB"),
    // Queues
    key("rabbitmq-address", Kind::Amqp, ""),
    key("rabbitmq-outbox", Kind::Str, "outbox"),
    key("rabbitmq-inbox", Kind::Str, ""),
    key("rabbitmq-local", Kind::Str, ""),
    key("rabbitmq-reports", Kind::Str, ""),
    key("rabbitmq-refused", Kind::Str, ""),
    key("rabbitmq-results", Kind::Str, "results"),
    key("rabbitmq-success", Kind::Str, "success"),
    key("rabbitmq-failure", Kind::Str, "failure"),
    key("rabbitmq-retry", Kind::Str, "retry"),
    key("rabbitmq-dsn", Kind::Str, ""),
    key("rabbitmq-exchange", Kind::Str, ""),
    key("rabbitmq-durable", Kind::Bool, "true"),
    key("rabbitmq-persistent", Kind::Bool, "true"),
    key("rabbitmq-consumers", Kind::Int { min: 1, max: 1000 }, "1"),
    key("rabbitmq-publishers", Kind::Int { min: 1, max: 1000 }, "1"),
    key("rabbitmq-prefetch", Kind::Int { min: 1, max: 1_000_000 }, "1000"),
    key("data-directory", Kind::Str, "./sluice-data"),
    // Delivery
    key("max-delivertime", SECONDS, "86400"),
    key("max-attempts", COUNT, "0"),
    key("smarthost", Kind::Str, ""),
    key("smarthost-port", PORT, "25"),
    key("smarthost-username", Kind::Str, ""),
    key("smarthost-password", Kind::Secret, ""),
    key("smtp-sink-ip", Kind::Ips, ""),
    key("smtp-sink-port", PORT, "25"),
    key("dns-server", Kind::HostPort, ""),
    key("delivery-connections", Kind::Int { min: 1, max: 1_000_000 }, "1000"),
    key("delivery-timeout", SECONDS, "300"),
    key("delivery-ips", Kind::Ips, ""),
    key(
        "tls-outbound",
        Kind::Choice(&["opportunistic", "required", "disabled"]),
        "opportunistic",
    ),
    // Additions (docs/config.md): per-destination limits and the retry schedule.
    key("delivery-enabled", Kind::Bool, "true"),
    key("delivery-port", PORT, "25"),
    key("delivery-domain-connections", Kind::Int { min: 1, max: 100_000 }, "10"),
    key(
        "delivery-connection-messages",
        Kind::Int { min: 1, max: 1_000_000 },
        "100",
    ),
    key("retry-interval", SECONDS, "300"),
    // Plugins
    key("plugin-directory", Kind::Str, ""),
    key("plugin-timeout", SECONDS, "60"),
    // Management
    key("www-ip", Kind::Ips, "127.0.0.1"),
    key("www-port", PORT, "8485"),
    key("www-username", Kind::Str, ""),
    key("www-password", Kind::Secret, ""),
    key("www-open", Kind::Bool, "false"),
    key("server-id", Kind::Int { min: 0, max: 65535 }, "1"),
    key("lock", Kind::Str, ""),
    key("user", Kind::Str, ""),
    key(
        "log-level",
        Kind::Choice(&["error", "warn", "info", "debug", "trace"]),
        "info",
    ),
    key("send-log", Kind::Str, ""),
    key("received-log", Kind::Str, ""),
    key("spool-directory", Kind::Str, ""),
    key("spool-delay", COUNT, "0"),
    key("spool-remove", Kind::Bool, "true"),
    key("spool-extract", Kind::Bool, "true"),
    key("database", Kind::Str, ""),
];
