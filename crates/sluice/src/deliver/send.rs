//! The scheduler's SMTP connections: opening one for a route (with the
//! plugins' view of it when a plugin has an outbound hook), sending one
//! message on it, and storing each outcome.

use super::client::{Client, Started};
use super::destination::Connector;
use super::outcome::{Attempt, ResultKind};
use super::outgoing::Outgoing;
use super::{connect, message, Engine, Job, Next, Route};
use sluice_plugin::hooks::{self as plugin_hooks, Hook};
use sluice_plugin::{HookName, MqMessage, PluginConnection, WorkerContexts};
use sluice_smtp::client::{ClientConfig, Stage};
use std::rc::Rc;
use std::sync::Arc;

/// Delivery over SMTP on one worker.
pub struct Smtp {
    engine: Arc<Engine>,
    contexts: Rc<WorkerContexts>,
    /// Whether any plugin has an outbound hook.
    plugged: bool,
}

impl Smtp {
    pub fn new(engine: Arc<Engine>, contexts: Rc<WorkerContexts>) -> Smtp {
        let plugged = engine.plugins.exports(HookName::OutData) || engine.plugins.exports(HookName::OutSent);
        Smtp {
            engine,
            contexts,
            plugged,
        }
    }
}

/// An open connection, its plugin side when plugins have outbound hooks,
/// and its place in the shaper's counts.
pub struct Connection {
    client: Client,
    hooks: Option<OutboundHooks>,
    _counted: connect::Reservation,
    _open: crate::metrics::Open,
}

impl Connector for Smtp {
    type Connection = Connection;

    async fn open(&self, route: &Route, first: &sluice_shaping::Destination) -> Result<Connection, connect::OpenError> {
        let engine = &self.engine;
        // The mtanames row of the local IP, else its reverse DNS name, each
        // checked again as the wire type; else smtp-hostname.
        let row = engine.settings.mtaname(route.local);
        let name = match (row, route.local) {
            (Some(name), _) => Some(name),
            (None, Some(ip)) => match &engine.dns {
                Some(dns) => dns.reverse(ip).await,
                None => None, // smtp-sink-ip: no resolver
            },
            (None, None) => None,
        };
        let helo = name
            .and_then(|name| sluice_smtp::wire::HeloName::new(&name).ok())
            .unwrap_or_else(|| engine.helo.clone());
        let cfg = ClientConfig {
            helo,
            tls: engine.tls_policy,
            auth: match &route.next {
                Next::Relay(r) => r.auth.clone(),
                Next::Mx(_) | Next::Domain(_) => None,
            },
        };
        let (client, counted) = connect::open(engine, route, first, cfg).await?;
        let hooks = self.plugged.then(|| OutboundHooks {
            conn: PluginConnection::outbound(&engine.plugins, client.fd(), client.is_secure()),
            contexts: self.contexts.clone(),
        });
        Ok(Connection {
            client,
            hooks,
            _counted: counted,
            _open: crate::metrics::Open::new("outbound"),
        })
    }

    fn remote(&self, c: &Connection) -> std::net::IpAddr {
        c.client
            .remote()
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    async fn send(&self, c: &mut Connection, job: &Job) -> Result<Attempt, Attempt> {
        send(&self.engine, &mut c.client, &job.msg, c.hooks.as_ref()).await
    }

    async fn quit(&self, c: Connection) {
        c.client.quit().await
    }

    fn settle(&self, job: Job, attempt: &Attempt) {
        let Job { id, msg, route, permit } = job;
        self.engine.conclude(id, msg, Some(route), permit, attempt);
    }
}

/// A connection's plugin side: its `MQ_Connection` and the worker's contexts.
struct OutboundHooks {
    conn: PluginConnection,
    contexts: Rc<WorkerContexts>,
}

/// One message on an open connection. Without outbound hooks the whole
/// transaction goes at once; with them, `mq_smtp_out_data` runs after 354
/// (its `MQ_setMime` replaces what is sent) and `mq_smtp_out_sent` after the
/// final dot. `Err`: the connection cannot be used again.
async fn send(
    engine: &Engine,
    client: &mut Client,
    msg: &Outgoing,
    hooks: Option<&OutboundHooks>,
) -> Result<Attempt, Attempt> {
    let info = |c: &Client| Some(c.info());
    let Some(hooks) = hooks else {
        let Some(mime) = msg.mime() else {
            return Ok(message::no_mime().with_connection(info(client)));
        };
        let body = message::body(msg, mime.as_bytes(), &engine.settings.dkim());
        return match message::transaction(msg, client.capabilities(), Some(body)) {
            Ok(tx) => client.send(tx).await,
            Err(a) => Ok(a.with_connection(info(client))),
        };
    };
    let tx = match message::transaction(msg, client.capabilities(), None) {
        Ok(tx) => tx,
        Err(a) => return Ok(a.with_connection(info(client))),
    };
    if let Started::Ended(attempt) = client.begin(tx, true).await? {
        return Ok(attempt);
    }
    let mut m = MqMessage::outbound(msg.json.clone());
    let hook = async |m: &mut MqMessage, sent: bool| {
        let h = if sent { Hook::OutSent(m) } else { Hook::OutData(m) };
        plugin_hooks::run(&engine.plugins, &hooks.contexts, &hooks.conn, h, engine.plugin_timeout).await
    };
    // After 354 the only way out without sending a body is to drop the connection.
    if let Err(t) = hook(&mut m, false).await {
        return Err(
            Attempt::failed(Stage::Data, ResultKind::Timeout, t.to_string(), false).with_connection(info(client))
        );
    }
    let mime = match m.wire().and_then(|w| w.mime.clone()) {
        Some(set) => set.into_bytes(),
        None => match msg.mime() {
            Some(stored) => stored.as_bytes().to_vec(),
            None => return Err(message::no_mime().with_connection(info(client))),
        },
    };
    client.body(&message::body(msg, &mime, &engine.settings.dkim())).await?;
    if let Err(t) = hook(&mut m, true).await {
        return Err(
            Attempt::failed(Stage::Message, ResultKind::Timeout, t.to_string(), false).with_connection(info(client)),
        );
    }
    client.finish().await
}
