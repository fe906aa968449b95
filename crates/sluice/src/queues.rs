//! Queue names from the config, with the fallbacks of `spec/messages.md`.

use crate::config::Config;

/// The resolved names of the queues Sluice writes and reads.
#[derive(Debug, Clone)]
pub struct QueueNames {
    pub outbox: String,
    /// Where received mail goes (empty config = outbox).
    pub inbox: String,
    /// Received for a local address (MQ_setLocal); empty config = inbox.
    pub local: String,
    /// Refused mail is kept here; `None` = not kept.
    pub refused: Option<String>,
    /// Delivery results: every attempt, deliveries, final failures, retries
    /// (`None` = not written).
    pub results: Option<String>,
    pub success: Option<String>,
    pub failure: Option<String>,
    pub retry: Option<String>,
    /// Where DSNs go (empty config = outbox).
    pub dsn: String,
}

impl QueueNames {
    pub fn from_config(c: &Config) -> Self {
        let outbox = c.str("rabbitmq-outbox").to_string();
        let inbox = c.opt("rabbitmq-inbox").unwrap_or(&outbox).to_string();
        let local = c.opt("rabbitmq-local").unwrap_or(&inbox).to_string();
        let named = |key| c.opt(key).map(str::to_string);
        QueueNames {
            dsn: named("rabbitmq-dsn").unwrap_or_else(|| outbox.clone()),
            outbox,
            inbox,
            local,
            refused: named("rabbitmq-refused"),
            results: named("rabbitmq-results"),
            success: named("rabbitmq-success"),
            failure: named("rabbitmq-failure"),
            retry: named("rabbitmq-retry"),
        }
    }
}

/// Every queue name the config gives (RabbitMQ declares them at start).
pub fn all(c: &Config) -> Vec<String> {
    let mut names: Vec<String> = [
        "rabbitmq-outbox",
        "rabbitmq-inbox",
        "rabbitmq-local",
        "rabbitmq-reports",
        "rabbitmq-refused",
        "rabbitmq-results",
        "rabbitmq-success",
        "rabbitmq-failure",
        "rabbitmq-retry",
        "rabbitmq-dsn",
    ]
    .iter()
    .filter_map(|k| c.opt(k).map(str::to_string))
    .collect();
    names.sort();
    names.dedup();
    names
}
