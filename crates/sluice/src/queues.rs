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
    /// Local mail that is a DSN, ARF or DMARC report; empty config = local.
    pub reports: String,
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
        let s = &c.settings;
        let outbox = s.rabbitmq_outbox.clone();
        let inbox = s.rabbitmq_inbox.clone().unwrap_or_else(|| outbox.clone());
        let local = s.rabbitmq_local.clone().unwrap_or_else(|| inbox.clone());
        QueueNames {
            reports: s.rabbitmq_reports.clone().unwrap_or_else(|| local.clone()),
            dsn: s.rabbitmq_dsn.clone().unwrap_or_else(|| outbox.clone()),
            outbox,
            inbox,
            local,
            refused: s.rabbitmq_refused.clone(),
            results: s.rabbitmq_results.clone(),
            success: s.rabbitmq_success.clone(),
            failure: s.rabbitmq_failure.clone(),
            retry: s.rabbitmq_retry.clone(),
        }
    }
}

/// Every queue name the config gives (RabbitMQ declares them at start).
pub fn all(c: &Config) -> Vec<String> {
    let s = &c.settings;
    let mut names: Vec<String> = [
        Some(&s.rabbitmq_outbox).filter(|q| !q.is_empty()),
        s.rabbitmq_inbox.as_ref(),
        s.rabbitmq_local.as_ref(),
        s.rabbitmq_reports.as_ref(),
        s.rabbitmq_refused.as_ref(),
        s.rabbitmq_results.as_ref(),
        s.rabbitmq_success.as_ref(),
        s.rabbitmq_failure.as_ref(),
        s.rabbitmq_retry.as_ref(),
        s.rabbitmq_dsn.as_ref(),
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect();
    names.sort();
    names.dedup();
    names
}
