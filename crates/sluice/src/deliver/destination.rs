//! A worker's destinations: each has a queue of jobs and up to
//! `delivery-domain-connections` connections that take jobs from it, up to
//! `delivery-connection-messages` per connection. A connection that cannot be
//! opened fails every job waiting for that destination with the same result,
//! so a dead destination gives its messages back (as retries) at once
//! instead of holding them.

use super::client::{Client, Started};
use super::connect::open;
use super::outcome::{Attempt, ResultKind};
use super::outgoing::Outgoing;
use super::{message, Engine, Job, Lane, Next, Route};
use sluice_plugin::hooks::{self as plugin_hooks, Hook};
use sluice_plugin::{HookName, MqMessage, PluginConnection, WorkerContexts};
use sluice_smtp::client::{ClientConfig, Stage};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long an idle connection waits for another message before QUIT.
const IDLE: Duration = Duration::from_secs(5);

struct Destination {
    route: Route,
    pending: RefCell<VecDeque<Job>>,
    /// Connections (open or opening) serving this destination.
    active: Cell<usize>,
    /// Of those, waiting for a job.
    idle: Cell<usize>,
    wake: Notify,
}

/// Runs one worker's deliveries until the dispatcher stops and every
/// connection ended.
/// Delivery's task for one worker: its lane of destinations.
pub fn task(lane: Lane) -> crate::worker::Task {
    Box::new(move |contexts| Box::pin(run(lane, contexts)))
}

pub async fn run(lane: Lane, contexts: Rc<WorkerContexts>) {
    let Lane { engine, mut jobs } = lane;
    let mut destinations: HashMap<Route, Rc<Destination>> = HashMap::new();
    let mut connections = tokio::task::JoinSet::new();
    let mut seen = 0u32;
    while let Some(job) = jobs.recv().await {
        let dest = destinations
            .entry(job.route.clone())
            .or_insert_with(|| {
                Rc::new(Destination {
                    route: job.route.clone(),
                    pending: RefCell::new(VecDeque::new()),
                    active: Cell::new(0),
                    idle: Cell::new(0),
                    wake: Notify::new(),
                })
            })
            .clone();
        dest.pending.borrow_mut().push_back(job);
        if dest.idle.get() > 0 {
            dest.wake.notify_one();
        }
        // More waiting than idle connections can pick up: open another.
        if dest.pending.borrow().len() > dest.idle.get() && dest.active.get() < engine.domain_connections {
            dest.active.set(dest.active.get() + 1);
            connections.spawn_local(serve(engine.clone(), dest, contexts.clone()));
        }
        seen = seen.wrapping_add(1);
        if seen.is_multiple_of(1024) {
            destinations.retain(|_, d| d.active.get() > 0 || !d.pending.borrow().is_empty());
            while connections.try_join_next().is_some() {}
        }
    }
    while connections.join_next().await.is_some() {}
}

/// One connection's life: open, send jobs until there are none (after a
/// short idle wait) or the per-connection limit is reached, then reopen while
/// jobs remain.
async fn serve(engine: Arc<Engine>, dest: Rc<Destination>, contexts: Rc<WorkerContexts>) {
    let plugged = engine.plugins.exports(HookName::OutData) || engine.plugins.exports(HookName::OutSent);
    let _active = Active(dest.clone());
    let Ok(_slot) = engine.connections.clone().acquire_owned().await else {
        return;
    };
    let cfg = ClientConfig {
        helo: engine.helo.clone(),
        tls: engine.tls_policy,
        auth: match &dest.route.next {
            Next::Relay(r) => r.auth.clone(),
            Next::Mx(_) | Next::Domain(_) => None,
        },
    };
    'connections: while !dest.pending.borrow().is_empty() {
        let mut client = match open(&engine, &dest.route, cfg.clone()).await {
            Ok(c) => c,
            Err(attempt) => {
                tracing::debug!(destination = dest.route.name(), state = attempt.state.as_str(), reason = %attempt.description, "cannot connect");
                let waiting: Vec<Job> = dest.pending.borrow_mut().drain(..).collect();
                for job in waiting {
                    settle(&engine, job, &attempt);
                }
                return;
            }
        };
        // The plugins' view of this connection, when any plugin has an outbound hook.
        let hooks = plugged.then(|| OutboundHooks {
            conn: PluginConnection::outbound(&engine.plugins, client.fd(), client.is_secure()),
            contexts: contexts.clone(),
        });
        let mut sent = 0;
        loop {
            let next = dest.pending.borrow_mut().pop_front();
            let Some(job) = next else {
                if *engine.shutdown.borrow() {
                    break;
                }
                dest.idle.set(dest.idle.get() + 1);
                let mut stop = engine.shutdown.clone();
                let woken = tokio::select! {
                    _ = dest.wake.notified() => true,
                    _ = tokio::time::sleep(IDLE) => false,
                    _ = crate::shutdown::requested(&mut stop) => false,
                };
                dest.idle.set(dest.idle.get() - 1);
                if woken {
                    continue;
                }
                break;
            };
            match send(&engine, &mut client, &job.msg, hooks.as_ref()).await {
                Ok(attempt) => settle(&engine, job, &attempt),
                Err(attempt) => {
                    // The connection broke on this message; the others get a new one.
                    settle(&engine, job, &attempt);
                    continue 'connections;
                }
            }
            sent += 1;
            if sent >= engine.connection_messages || *engine.shutdown.borrow() {
                break;
            }
        }
        client.quit().await;
        if *engine.shutdown.borrow() {
            break;
        }
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
        let body = message::body(msg, mime.as_bytes());
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
    client.body(&message::body(msg, &mime)).await?;
    if let Err(t) = hook(&mut m, true).await {
        return Err(
            Attempt::failed(Stage::Message, ResultKind::Timeout, t.to_string(), false).with_connection(info(client)),
        );
    }
    client.finish().await
}

/// Counts a connection out of its destination when it ends, however it ends.
struct Active(Rc<Destination>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
    }
}

/// Decides a job's outcome and stores it in the background.
fn settle(engine: &Arc<Engine>, job: Job, attempt: &Attempt) {
    let Job { id, msg, route, permit } = job;
    engine.conclude(id, msg, Some(route), permit, attempt);
}
