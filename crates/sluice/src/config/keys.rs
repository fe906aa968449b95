//! Every configuration key, its type and default (`spec/config.md`), written
//! once: the [`settings!`] table below generates both [`KEYS`] (what the
//! parser checks a file against) and [`Settings`] (what the program reads),
//! so a misspelt key or a value read as the wrong type does not compile.

use super::values::{self, Cidr};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

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
    /// Seconds, or MailerQ's comma-separated list of them (`600,600,1800`).
    SecondsList,
    /// `amqp://user:pass@host1;host2/vhost`.
    Amqp,
    /// RFC 3461's NOTIFY value (`FAILURE,DELAY`), optional.
    DsnNotify,
    /// `FULL` or `HDRS`, optional.
    DsnRet,
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
            ValueKind::SecondsList => v.split(',').try_for_each(|n| match n.trim().parse::<u64>() {
                Ok(s) if (1..=31_536_000).contains(&s) => Ok(()),
                _ => Err(format!(
                    "expected seconds from 1 to 31536000, or a comma-separated list of them, got `{}`",
                    n.trim()
                )),
            }),
            // Read as the RabbitMQ backend reads it; the message never quotes the password.
            ValueKind::Amqp => sluice_queue::rabbitmq::uri::brokers(v).map(drop),
            ValueKind::DsnNotify => values::parse_dsn_notify(v).map(drop),
            ValueKind::DsnRet => values::parse_dsn_ret(v).map(drop),
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

/// The checker of a kind of value in the table.
macro_rules! kind {
    (Str) => { ValueKind::Str };
    (Opt) => { ValueKind::Str };
    (Secret) => { ValueKind::Secret };
    (Secrets) => { ValueKind::Secret };
    (Bool) => { ValueKind::Bool };
    (Int($min:expr, $max:expr)) => { ValueKind::Int { min: $min, max: $max } };
    (Port) => { ValueKind::Int { min: 1, max: 65535 } };
    (PortOrOff) => { ValueKind::Int { min: 0, max: 65535 } };
    (Seconds) => { ValueKind::Int { min: 1, max: 31_536_000 } };
    (SecondsList) => { ValueKind::SecondsList };
    (Size) => { ValueKind::Size };
    (Ports) => { ValueKind::Ports };
    (Cidrs) => { ValueKind::Cidrs };
    (Ips) => { ValueKind::Ips };
    (HostPort) => { ValueKind::HostPort };
    (Amqp) => { ValueKind::Amqp };
    (DsnNotify) => { ValueKind::DsnNotify };
    (DsnRet) => { ValueKind::DsnRet };
    (Choice($($option:expr),*)) => { ValueKind::Choice(&[$($option),*]) };
}

/// The Rust type a kind of value is read as. An optional value set empty is
/// `None` (`rabbitmq-results:` with nothing after it writes no results).
macro_rules! rust_type {
    (Str) => { String };
    (Opt) => { Option<String> };
    (Secret) => { Option<String> };
    (Secrets) => { Vec<String> };
    (Bool) => { bool };
    (Int($min:expr, $max:expr)) => { u64 };
    (Port) => { u16 };
    (PortOrOff) => { u16 };
    (Seconds) => { Duration };
    (SecondsList) => { Vec<Duration> };
    (Size) => { u64 };
    (Ports) => { Vec<u16> };
    (Cidrs) => { Vec<Cidr> };
    (Ips) => { Vec<IpAddr> };
    (HostPort) => { Option<SocketAddr> };
    (Amqp) => { Option<String> };
    (DsnNotify) => { Option<&'static str> };
    (DsnRet) => { Option<&'static str> };
    (Choice($($option:expr),*)) => { String };
}

/// Reads a value already checked by its kind (so the fallbacks are never taken).
macro_rules! read {
    (Str, $v:expr) => {
        $v.to_string()
    };
    (Opt, $v:expr) => {
        Some($v).filter(|v| !v.is_empty()).map(str::to_string)
    };
    (Secret, $v:expr) => {
        read!(Opt, $v)
    };
    (Secrets, $v:expr) => {
        values::split_list($v)
    };
    (Amqp, $v:expr) => {
        read!(Opt, $v)
    };
    (DsnNotify, $v:expr) => {
        values::parse_dsn_notify($v).ok()
    };
    (DsnRet, $v:expr) => {
        values::parse_dsn_ret($v).ok()
    };
    (Bool, $v:expr) => {
        values::parse_bool($v).unwrap_or(false)
    };
    (Int($min:expr, $max:expr), $v:expr) => {
        $v.parse().unwrap_or($min)
    };
    (Port, $v:expr) => {
        $v.parse().unwrap_or(1)
    };
    (PortOrOff, $v:expr) => {
        $v.parse().unwrap_or(0)
    };
    (SecondsList, $v:expr) => {
        $v.split(',')
            .filter_map(|n| n.trim().parse().ok())
            .map(Duration::from_secs)
            .collect()
    };
    (Seconds, $v:expr) => {
        Duration::from_secs($v.parse().unwrap_or(1))
    };
    (Size, $v:expr) => {
        values::parse_size($v).map(|s| s.0).unwrap_or(0)
    };
    (Ports, $v:expr) => {
        values::parse_ports($v).unwrap_or_default()
    };
    (Cidrs, $v:expr) => {
        values::split_list($v).iter().filter_map(|c| c.parse().ok()).collect()
    };
    (Ips, $v:expr) => {
        values::split_list($v).iter().filter_map(|ip| ip.parse().ok()).collect()
    };
    (HostPort, $v:expr) => {
        Some($v)
            .filter(|v| !v.is_empty())
            .and_then(|v| values::parse_host_port(v, 53).ok())
    };
    (Choice($($option:expr),*), $v:expr) => {
        $v.to_string()
    };
}

/// Generates [`KEYS`] and [`Settings`] from one table of
/// `field: Kind = "key-name", "default";` lines.
macro_rules! settings {
    ($( $field:ident : $kind:ident $(($($arg:expr),*))? = $name:literal, $default:literal; )*) => {
        /// All keys, in the order of `spec/config.md`.
        pub const KEYS: &[Key] = &[
            $( Key { name: $name, kind: kind!($kind $(($($arg),*))?), default: $default }, )*
        ];

        /// Every setting, typed; built once at start from the checked values.
        #[derive(Debug, Clone)]
        pub struct Settings {
            $( #[doc = concat!("`", $name, "`")] pub $field: rust_type!($kind $(($($arg),*))?), )*
        }

        impl Settings {
            /// Reads every key through `raw`, which gives its checked text.
            pub(super) fn read<'a>(raw: impl Fn(&'static str) -> &'a str) -> Settings {
                Settings {
                    $( $field: read!($kind $(($($arg),*))?, raw($name)), )*
                }
            }
        }
    };
}

settings! {
    // Inbound SMTP
    smtp_ip: Ips = "smtp-ip", "127.0.0.1";
    smtp_port: Ports = "smtp-port", "2525";
    smtp_secure_port: Ports = "smtp-secure-port", "";
    smtp_certificate: Opt = "smtp-certificate", "";
    smtp_key: Opt = "smtp-key", "";
    smtp_range: Cidrs = "smtp-range", "";
    smtp_username: Opt = "smtp-username", "";
    smtp_password: Secret = "smtp-password", "";
    // MailerQ's accounts: hardcoded://user:password,… or file:///path (receive/accounts.rs).
    smtp_auth: Opt = "smtp-auth", "";
    smtp_maxsize: Size = "smtp-maxsize", "100MB";
    // As MailerQ: all SMTP connections, in and out together; then each side's own limit.
    smtp_connections: Int(1, 2_000_000) = "smtp-connections", "2000";
    smtp_connections_in: Int(1, 1_000_000) = "smtp-connections-in", "1000";
    smtp_threads: Int(0, 1024) = "smtp-threads", "0";
    smtp_extract: Bool = "smtp-extract", "true";
    smtp_proxy: Cidrs = "smtp-proxy", "";
    // As MailerQ: mail submitted to a mappable local IP is sent from it.
    smtp_mappable_ips: Cidrs = "smtp-mappable-ips", "";
    smtp_unmappable_ips: Cidrs = "smtp-unmappable-ips", "";
    smtp_hostname: Opt = "smtp-hostname", "";
    smtp_timeout: Seconds = "smtp-timeout", "300";
    smtp_max_recipients: Int(1, 1_000_000) = "smtp-max-recipients", "1000";
    smtp_open_relay: Bool = "smtp-open-relay", "false";
    smtp_greeting_delay: Int(0, 60_000) = "smtp-greeting-delay", "0";
    // Additions (docs/config.md): limits per client and for reception as a whole.
    smtp_connections_per_ip: Int(0, 1_000_000) = "smtp-connections-per-ip", "50";
    smtp_connections_per_ip_exceptions: Cidrs = "smtp-connections-per-ip-exceptions", "127.0.0.0/8, ::1";
    smtp_command_timeout: Seconds = "smtp-command-timeout", "300";
    smtp_data_timeout: Seconds = "smtp-data-timeout", "600";
    reception_memory: Size = "reception-memory", "1GB";
    // Queues
    rabbitmq_address: Amqp = "rabbitmq-address", "";
    rabbitmq_outbox: Str = "rabbitmq-outbox", "outbox";
    rabbitmq_inbox: Opt = "rabbitmq-inbox", "";
    rabbitmq_local: Opt = "rabbitmq-local", "";
    rabbitmq_reports: Opt = "rabbitmq-reports", "";
    rabbitmq_refused: Opt = "rabbitmq-refused", "";
    rabbitmq_results: Opt = "rabbitmq-results", "results";
    rabbitmq_success: Opt = "rabbitmq-success", "success";
    rabbitmq_failure: Opt = "rabbitmq-failure", "failure";
    rabbitmq_retry: Opt = "rabbitmq-retry", "retry";
    rabbitmq_dsn: Opt = "rabbitmq-dsn", "";
    // As MailerQ: a message's DSN settings when its own `dsn` has none.
    dsn_notify: DsnNotify = "dsn-notify", "";
    dsn_ret: DsnRet = "dsn-ret", "";
    rabbitmq_exchange: Opt = "rabbitmq-exchange", "";
    rabbitmq_durable: Bool = "rabbitmq-durable", "true";
    rabbitmq_persistent: Bool = "rabbitmq-persistent", "true";
    rabbitmq_consumers: Int(1, 1000) = "rabbitmq-consumers", "1";
    rabbitmq_publishers: Int(1, 1000) = "rabbitmq-publishers", "1";
    rabbitmq_prefetch: Int(1, 1_000_000) = "rabbitmq-prefetch", "1000";
    rabbitmq_maxpriority: Int(0, 255) = "rabbitmq-maxpriority", "0";
    rabbitmq_lazy: Bool = "rabbitmq-lazy", "false";
    rabbitmq_declare: Bool = "rabbitmq-declare", "true";
    rabbitmq_verify: Bool = "rabbitmq-verify", "true";
    rabbitmq_encoding: Choice("none", "identity", "gzip") = "rabbitmq-encoding", "none";
    data_directory: Str = "data-directory", "./sluice-data";
    // Delivery
    max_delivertime: Seconds = "max-delivertime", "86400";
    max_attempts: Int(0, 1_000_000_000) = "max-attempts", "0";
    smarthost: Opt = "smarthost", "";
    smarthost_port: Port = "smarthost-port", "25";
    smarthost_username: Opt = "smarthost-username", "";
    smarthost_password: Secret = "smarthost-password", "";
    smtp_sink_ip: Ips = "smtp-sink-ip", "";
    smtp_sink_port: Port = "smtp-sink-port", "25";
    dns_server: HostPort = "dns-server", "";
    dns_min_ttl: Seconds = "dns-min-ttl", "60";
    dns_attempts: Int(1, 100) = "dns-attempts", "2";
    delivery_connections: Int(1, 1_000_000) = "delivery-connections", "1000";
    delivery_timeout: Seconds = "delivery-timeout", "300";
    delivery_ips: Ips = "delivery-ips", "";
    tls_outbound: Choice("opportunistic", "required", "disabled") = "tls-outbound", "opportunistic";
    // Additions (docs/config.md): per-destination limits and the retry schedule.
    delivery_enabled: Bool = "delivery-enabled", "true";
    delivery_port: Port = "delivery-port", "25";
    delivery_domain_connections: Int(1, 100_000) = "delivery-domain-connections", "10";
    delivery_connection_messages: Int(1, 1_000_000) = "delivery-connection-messages", "100";
    retry_interval: SecondsList = "retry-interval", "300";
    // Plugins
    plugin_directory: Opt = "plugin-directory", "";
    plugin_timeout: Seconds = "plugin-timeout", "60";
    // Management
    www_ip: Ips = "www-ip", "127.0.0.1";
    // 0 = no plain HTTP (MailerQ's way), only www-secure-port.
    www_port: PortOrOff = "www-port", "8485";
    www_username: Opt = "www-username", "";
    www_password: Secret = "www-password", "";
    www_open: Bool = "www-open", "false";
    www_tokens: Secrets = "www-tokens", "";
    www_secure_port: Ports = "www-secure-port", "";
    // As MailerQ: HTTP connections at once (both ports together); more wait.
    www_connections: Int(1, 100_000) = "www-connections", "256";
    www_certificate: Opt = "www-certificate", "";
    www_private_key: Opt = "www-private-key", "";
    www_privatekey: Opt = "www-privatekey", "";
    www_url: Opt = "www-url", "";
    cluster_exchange: Str = "cluster-exchange", "cluster";
    // Addition (docs/trace.md): the bytes the message trace may take in DATA/trace (0 = no trace).
    trace_size: Size = "trace-size", "1GB";
    // Addition (docs/config.md): how long a stop waits for transactions in progress.
    shutdown_grace: Seconds = "shutdown-grace", "30";
    server_id: Int(0, 65535) = "server-id", "1";
    lock: Opt = "lock", "";
    user: Opt = "user", "";
    log_level: Choice("error", "warn", "info", "debug", "trace") = "log-level", "info";
    send_log: Opt = "send-log", "";
    received_log: Opt = "received-log", "";
    spool_directory: Opt = "spool-directory", "";
    spool_delay: Int(0, 1_000_000_000) = "spool-delay", "0";
    spool_remove: Bool = "spool-remove", "true";
    spool_extract: Bool = "spool-extract", "true";
    // The message store (docs/message-store.md).
    storage_address: Opt = "storage-address", "";
    storage_policy: Choice("all", "out", "in", "none") = "storage-policy", "out";
    storage_ttl: Int(0, 31_536_000) = "storage-ttl", "3600";
    storage_timeout: Int(1, 3600) = "storage-timeout", "20";
    storage_reschedule: Int(0, 86_400) = "storage-reschedule", "120";
    storage_threads: Int(1, 256) = "storage-threads", "1";
    // Addition (docs/mailerq.md): where spool files that cannot be messages go.
    spool_fail_directory: Opt = "spool-fail-directory", "";
    database: Opt = "database", "";
    // Additions (docs/config.md, spec/database.md): the settings database.
    database_address: Opt = "database-address", "";
    database_ttl: Seconds = "database-ttl", "600";
    flood_defaults: Bool = "flood-defaults", "true";
}

impl Settings {
    /// `smtp-threads`, 0 meaning the number of CPUs.
    pub fn threads(&self) -> usize {
        match self.smtp_threads {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n as usize,
        }
    }

    /// The settings database: `database-address`, else its 4.x alias
    /// `database`, else SQLite in the data directory.
    pub fn database(&self) -> &str {
        self.database_address
            .as_deref()
            .or(self.database.as_deref())
            .unwrap_or("sqlite://DATA/settings.db")
    }

    /// `www-private-key`, or its other MailerQ spelling `www-privatekey`.
    pub fn www_key(&self) -> Option<&str> {
        self.www_private_key.as_deref().or(self.www_privatekey.as_deref())
    }

    /// `data-directory`.
    pub fn data_dir(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(&self.data_directory)
    }
}
