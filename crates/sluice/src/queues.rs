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
}

impl QueueNames {
    pub fn from_config(c: &Config) -> Self {
        let outbox = c.str("rabbitmq-outbox").to_string();
        let inbox = c.opt("rabbitmq-inbox").unwrap_or(&outbox).to_string();
        let local = c.opt("rabbitmq-local").unwrap_or(&inbox).to_string();
        QueueNames {
            outbox,
            inbox,
            local,
            refused: c.opt("rabbitmq-refused").map(str::to_string),
        }
    }
}
