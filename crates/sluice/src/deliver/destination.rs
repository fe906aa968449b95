//! A worker's destinations: each has a queue of jobs and up to
//! `delivery-domain-connections` connections that take jobs from it, up to
//! `delivery-connection-messages` per connection. A connection that cannot be
//! opened fails every job waiting for that destination with the same result,
//! so a dead destination gives its messages back (as retries) at once
//! instead of holding them.
//!
//! This is the scheduling only: what a connection is (SMTP, with the
//! plugins' outbound hooks) comes through [`Connector`], so the scheduler is
//! tested in-process with a virtual clock (`tests` below).

use super::outcome::Attempt;
use super::{Job, Lane, Route};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify, Semaphore};

/// How long an idle connection waits for another message before QUIT.
pub const IDLE: Duration = Duration::from_secs(5);

/// What the scheduler does its work with: connections to a route, and a
/// place for each job's outcome.
pub trait Connector: 'static {
    type Connection;
    /// Opens a connection for `route`; the error is the attempt every waiting job gets.
    fn open(&self, route: &Route) -> impl Future<Output = Result<Self::Connection, Attempt>>;
    /// Sends one job. `Err`: the connection cannot be used again.
    fn send(&self, connection: &mut Self::Connection, job: &Job) -> impl Future<Output = Result<Attempt, Attempt>>;
    /// Ends a connection politely.
    fn quit(&self, connection: Self::Connection) -> impl Future<Output = ()>;
    /// Stores a job's outcome (in the background).
    fn settle(&self, job: Job, attempt: &Attempt);
}

/// The limits the scheduler keeps.
#[derive(Clone)]
pub struct Limits {
    /// `delivery-domain-connections`.
    pub per_destination: usize,
    /// `delivery-connection-messages`.
    pub per_connection: u64,
    /// `delivery-connections`: all outbound connections together.
    pub all: Arc<Semaphore>,
    pub shutdown: watch::Receiver<bool>,
}

struct Destination {
    route: Route,
    pending: RefCell<VecDeque<Job>>,
    /// Connections (open or opening) serving this destination.
    active: Cell<usize>,
    /// Of those, waiting for a job.
    idle: Cell<usize>,
    wake: Notify,
}

/// Delivery's task for one worker: its lane of destinations.
pub fn task(lane: Lane) -> crate::worker::Task {
    Box::new(move |contexts| {
        let Lane { engine, jobs } = lane;
        let limits = Limits {
            per_destination: engine.domain_connections,
            per_connection: engine.connection_messages,
            all: engine.connections.clone(),
            shutdown: engine.shutdown.clone(),
        };
        let connector = super::send::Smtp::new(engine, contexts);
        Box::pin(run(Rc::new(connector), limits, jobs))
    })
}

/// Runs one worker's deliveries until the dispatcher stops and every
/// connection ended.
pub async fn run<C: Connector>(connector: Rc<C>, limits: Limits, mut jobs: mpsc::UnboundedReceiver<Job>) {
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
        if dest.pending.borrow().len() > dest.idle.get() && dest.active.get() < limits.per_destination {
            dest.active.set(dest.active.get() + 1);
            connections.spawn_local(serve(connector.clone(), limits.clone(), dest));
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
async fn serve<C: Connector>(connector: Rc<C>, limits: Limits, dest: Rc<Destination>) {
    let _active = Active(dest.clone());
    let Ok(_slot) = limits.all.clone().acquire_owned().await else {
        return;
    };
    let stopping = || *limits.shutdown.borrow();
    'connections: while !dest.pending.borrow().is_empty() {
        let mut connection = match connector.open(&dest.route).await {
            Ok(c) => c,
            Err(attempt) => {
                tracing::debug!(destination = dest.route.name(), state = attempt.state.as_str(), reason = %attempt.description, "cannot connect");
                let waiting: Vec<Job> = dest.pending.borrow_mut().drain(..).collect();
                for job in waiting {
                    connector.settle(job, &attempt);
                }
                return;
            }
        };
        let mut sent = 0;
        loop {
            let next = dest.pending.borrow_mut().pop_front();
            let Some(job) = next else {
                if stopping() {
                    break;
                }
                dest.idle.set(dest.idle.get() + 1);
                let mut stop = limits.shutdown.clone();
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
            match connector.send(&mut connection, &job).await {
                Ok(attempt) => connector.settle(job, &attempt),
                Err(attempt) => {
                    // The connection broke on this message; the others get a new one.
                    connector.settle(job, &attempt);
                    continue 'connections;
                }
            }
            sent += 1;
            if sent >= limits.per_connection || stopping() {
                break;
            }
        }
        connector.quit(connection).await;
        if stopping() {
            break;
        }
    }
}

/// Counts a connection out of its destination when it ends, however it ends.
struct Active(Rc<Destination>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
    }
}

#[cfg(test)]
mod tests;
