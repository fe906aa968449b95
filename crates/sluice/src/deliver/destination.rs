//! A worker's destinations: each has a queue of jobs and up to
//! `delivery-domain-connections` connections that take jobs from it, up to
//! `delivery-connection-messages` per connection. A connection that cannot be
//! opened fails every job waiting for that destination with the same result,
//! so a dead destination gives its messages back (as retries) at once
//! instead of holding them.
//!
//! The limits come from the shaper (`crates/shaping`: capacity rows from
//! the settings database, flood rules, config defaults): before a connection
//! opens it asks whether it may (a connection rate, a pause), and before each
//! message whether it may go (a message rate). Waiting is never an attempt:
//! the job stays at the head of its queue; a wait longer than the idle time
//! closes the connection and the next one opens when it is allowed.
//!
//! This is the scheduling only: what a connection is (SMTP, with the
//! plugins' outbound hooks) comes through [`Connector`], so the scheduler is
//! tested in-process with a virtual clock (`tests` below).

pub use super::connect::OpenError;
use super::outcome::Attempt;
use super::{Job, Lane, Next, Route};
use sluice_shaping::{Decision, Shaper};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::time::Instant;

/// How long an idle connection waits for another message before QUIT.
pub const IDLE: Duration = Duration::from_secs(5);

/// What the scheduler does its work with: connections to a route, and a
/// place for each job's outcome.
pub trait Connector: 'static {
    type Connection;
    /// Opens a connection for `route` on behalf of `first` (the head job's
    /// destination), counted in by the shaper until it is dropped; a failed
    /// attempt is what every waiting job gets, "not now" a wait.
    fn open(
        &self,
        route: &Route,
        first: &sluice_shaping::Destination,
    ) -> impl Future<Output = Result<Self::Connection, OpenError>>;
    /// The address the connection reached (for the per-MX-IP limits).
    fn remote(&self, connection: &Self::Connection) -> IpAddr;
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
    /// Per destination and MX IP, from the policy (defaults:
    /// `delivery-domain-connections`, `delivery-connection-messages`).
    pub shaper: Arc<Mutex<Shaper>>,
    /// `delivery-connections`: all outbound connections together.
    pub all: Arc<Semaphore>,
    /// `smtp-connections`: shared with reception.
    pub in_and_out: Arc<Semaphore>,
    pub shutdown: watch::Receiver<bool>,
    /// `shutdown-grace`: how long a stop waits for deliveries in progress.
    pub grace: Duration,
}

/// The shaper's view of a job: mail from the route's local IP to the
/// recipient's domain (a route may carry several domains with one MX set).
fn shaped(route: &Route, job: &Job) -> sluice_shaping::Destination {
    sluice_shaping::Destination::new(route.local, &job.msg.domain)
}

/// A message's `tags` (pauses may hold only some).
fn tags(job: &Job) -> Vec<&str> {
    job.msg
        .json
        .get("tags")
        .and_then(|t| t.as_array())
        .map(|a| a.iter().filter_map(|t| t.as_str()).collect())
        .unwrap_or_default()
}

/// The MX host names of a route, for `mx:` capacity rows.
pub fn mx_hosts(route: &Route) -> Vec<String> {
    match &route.next {
        Next::Mx(set) => set.iter().map(|h| h.name.clone()).collect(),
        Next::Domain(_) | Next::Relay(_) => Vec::new(),
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// A time from the shaper on the scheduler's clock.
fn at(when: std::time::Instant) -> Instant {
    Instant::from_std(when)
}

/// Waits until `decision` allows, or shutdown (false).
async fn wait(decision: Decision, shutdown: &watch::Receiver<bool>) -> bool {
    let until = match decision {
        Decision::Go => return true,
        Decision::Wait(when) => at(when),
        // Another connection has to close first; look again shortly.
        Decision::Full => Instant::now() + Duration::from_millis(200),
    };
    let mut stop = shutdown.clone();
    tokio::select! {
        _ = tokio::time::sleep_until(until) => true,
        _ = crate::shutdown::requested(&mut stop) => false,
    }
}

/// A route's waiting jobs, one queue per recipient domain (the shaper's
/// destination), so a domain waiting for its rate or a pause does not hold
/// the other domains of its MX set behind it. Domains take turns.
#[derive(Default)]
struct Pending {
    by_domain: HashMap<sluice_shaping::Destination, VecDeque<Job>>,
    /// The domains with jobs, in turn order.
    turns: VecDeque<sluice_shaping::Destination>,
    len: usize,
}

/// Why [`Pending::pick`] gave no job.
enum NoJob {
    Empty,
    /// Every domain's next job must wait: the soonest decision.
    NotNow(Decision),
}

impl Pending {
    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push_back(&mut self, to: sluice_shaping::Destination, job: Job) {
        self.queue(to).push_back(job);
    }

    fn queue(&mut self, to: sluice_shaping::Destination) -> &mut VecDeque<Job> {
        self.len += 1;
        match self.by_domain.entry(to) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                self.turns.push_back(e.key().clone());
                e.insert(VecDeque::new())
            }
        }
    }

    /// The first domain, in turn, whose next job `decide` lets go (any
    /// decision but a wait), without taking it.
    fn ready(
        &self,
        mut decide: impl FnMut(&sluice_shaping::Destination, &Job) -> Decision,
    ) -> Result<sluice_shaping::Destination, NoJob> {
        let mut soonest: Option<Decision> = None;
        for to in &self.turns {
            let Some(job) = self.by_domain.get(to).and_then(VecDeque::front) else {
                continue;
            };
            match decide(to, job) {
                Decision::Go => return Ok(to.clone()),
                d => soonest = Some(soonest.map_or(d, |s| sooner(s, d))),
            }
        }
        Err(soonest.map_or(NoJob::Empty, NoJob::NotNow))
    }

    /// Takes the next job of the first domain `decide` lets go; that domain
    /// goes to the back of the turns.
    fn pick(&mut self, decide: impl FnMut(&sluice_shaping::Destination, &Job) -> Decision) -> Result<Job, NoJob> {
        let to = self.ready(decide)?;
        Ok(self.take(&to).expect("ready names a domain with jobs"))
    }

    fn take(&mut self, to: &sluice_shaping::Destination) -> Option<Job> {
        let queue = self.by_domain.get_mut(to)?;
        let job = queue.pop_front()?;
        self.len -= 1;
        let left = !queue.is_empty();
        if let Some(i) = self.turns.iter().position(|t| t == to) {
            self.turns.remove(i);
        }
        if left {
            self.turns.push_back(to.clone());
        } else {
            self.by_domain.remove(to);
        }
        Some(job)
    }

    /// Every job, the queues emptied.
    fn drain(&mut self) -> Vec<Job> {
        self.turns.clear();
        self.len = 0;
        self.by_domain.drain().flat_map(|(_, q)| q).collect()
    }
}

/// The sooner of two "not now" decisions (a wait before a full connection count, which is looked at again soon).
fn sooner(a: Decision, b: Decision) -> Decision {
    match (a, b) {
        (Decision::Wait(x), Decision::Wait(y)) => Decision::Wait(x.min(y)),
        (Decision::Wait(x), _) | (_, Decision::Wait(x)) => Decision::Wait(x),
        (x, _) => x,
    }
}

struct Destination {
    route: Route,
    pending: RefCell<Pending>,
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
            shaper: engine.shaper.clone(),
            all: engine.connections.clone(),
            in_and_out: engine.all_connections.clone(),
            shutdown: engine.shutdown.clone(),
            grace: engine.grace,
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
                    pending: RefCell::new(Pending::default()),
                    active: Cell::new(0),
                    idle: Cell::new(0),
                    wake: Notify::new(),
                })
            })
            .clone();
        let cap = {
            let to = shaped(&dest.route, &job);
            let mut shaper = sluice_queue::lock(&limits.shaper);
            let connections = shaper.limits(&to, &mx_hosts(&dest.route), now()).connections.value;
            connections.map_or(usize::MAX, |n| n as usize)
        };
        dest.pending.borrow_mut().push_back(shaped(&dest.route, &job), job);
        if dest.idle.get() > 0 {
            dest.wake.notify_one();
        }
        // More waiting than idle connections can pick up: open another.
        if dest.pending.borrow().len() > dest.idle.get() && dest.active.get() < cap {
            dest.active.set(dest.active.get() + 1);
            connections.spawn_local(serve(connector.clone(), limits.clone(), dest));
        }
        seen = seen.wrapping_add(1);
        if seen.is_multiple_of(1024) {
            destinations.retain(|_, d| d.active.get() > 0 || !d.pending.borrow().is_empty());
            while connections.try_join_next().is_some() {}
        }
    }
    let ended = crate::shutdown::finish(&mut connections, &limits.shutdown, limits.grace).await;
    if ended > 0 {
        tracing::warn!(connections = ended, grace = ?limits.grace, "deliveries still under way after shutdown-grace were cut off; those messages stay queued");
    }
}

/// One connection's life: open, send jobs until there are none (after a
/// short idle wait) or the per-connection limit is reached, then reopen while
/// jobs remain.
async fn serve<C: Connector>(connector: Rc<C>, limits: Limits, dest: Rc<Destination>) {
    let _active = Active(dest.clone());
    let Ok(_slot) = limits.all.clone().acquire_owned().await else {
        return;
    };
    let Ok(_shared) = limits.in_and_out.clone().acquire_owned().await else {
        return;
    };
    let stopping = || *limits.shutdown.borrow();
    let shaper = |f: &mut dyn FnMut(&mut Shaper)| f(&mut sluice_queue::lock(&limits.shaper));
    let hosts = mx_hosts(&dest.route);
    // Set when a message rate made the last connection give up: not before then.
    let mut resume: Option<std::time::Instant> = None;
    'connections: loop {
        if let Some(when) = resume.take() {
            if !wait(Decision::Wait(when), &limits.shutdown).await {
                break;
            }
        }
        // A connection opens for the first domain (in turn) whose next job may go now:
        // opening only to wait for a message rate or a pause would waste a connection.
        let ready = {
            let pending = dest.pending.borrow();
            let mut ready = Err(NoJob::Empty);
            shaper(&mut |s| {
                let now = now();
                ready = pending.ready(|to, job| {
                    let mut d = s.held(to, &hosts, None, &tags(job), now);
                    if d == Decision::Go {
                        d = s.may_connect(to, &hosts, None, now);
                    }
                    if d == Decision::Go {
                        d = s.may_send(to, &hosts, None, now);
                    }
                    d
                });
            });
            ready
        };
        let first = match ready {
            Ok(first) => first,
            Err(NoJob::Empty) => break,
            Err(NoJob::NotNow(decision)) => {
                // One waiting connection per destination is enough: another one serves these jobs.
                if dest.active.get() > 1 || !wait(decision, &limits.shutdown).await {
                    break;
                }
                continue;
            }
        };
        let mut connection = match connector.open(&dest.route, &first).await {
            Ok(c) => c,
            Err(OpenError::NotNow(decision)) => {
                if dest.active.get() > 1 || !wait(decision, &limits.shutdown).await {
                    break;
                }
                continue;
            }
            Err(OpenError::Failed(attempt)) => {
                tracing::debug!(destination = dest.route.name(), state = attempt.state.as_str(), reason = %attempt.description, "cannot connect");
                let waiting: Vec<Job> = dest.pending.borrow_mut().drain();
                for job in waiting {
                    connector.settle(job, &attempt);
                }
                return;
            }
        };
        let remote = connector.remote(&connection);
        let (mut per_connection, mut idle) = (u64::MAX, IDLE);
        shaper(&mut |s| {
            let limits = s.limits(&first, &hosts, now());
            per_connection = limits.messages_per_connection.value.unwrap_or(u64::MAX);
            idle = limits.idle.value.unwrap_or(IDLE);
        });
        let mut sent = 0;
        loop {
            let mut next = Err(NoJob::Empty);
            shaper(&mut |s| {
                let now = now();
                next =
                    dest.pending
                        .borrow_mut()
                        .pick(|to, job| match s.held(to, &hosts, Some(remote), &tags(job), now) {
                            Decision::Go => s.may_send(to, &hosts, Some(remote), now),
                            d => d,
                        });
            });
            let job = match next {
                Ok(job) => job,
                Err(NoJob::NotNow(decision)) => {
                    // Waiting keeps every job in its line; a long wait gives the connection up.
                    let when = match decision {
                        Decision::Wait(when) => when,
                        _ => now() + Duration::from_millis(200),
                    };
                    if at(when).saturating_duration_since(Instant::now()) > idle {
                        resume = Some(when);
                        break;
                    }
                    if !wait(decision, &limits.shutdown).await {
                        break;
                    }
                    continue;
                }
                Err(NoJob::Empty) => {
                    if stopping() {
                        break;
                    }
                    dest.idle.set(dest.idle.get() + 1);
                    let mut stop = limits.shutdown.clone();
                    let woken = tokio::select! {
                        _ = dest.wake.notified() => true,
                        _ = tokio::time::sleep(idle) => false,
                        _ = crate::shutdown::requested(&mut stop) => false,
                    };
                    dest.idle.set(dest.idle.get() - 1);
                    if woken {
                        continue;
                    }
                    break;
                }
            };
            let to = shaped(&dest.route, &job);
            shaper(&mut |s| s.sent(&to, &hosts, remote, now()));
            let started = Instant::now();
            // Log lines of the attempt carry the message's trace id.
            let id = job.msg.json.get("message-id").and_then(|v| v.as_str()).unwrap_or("");
            let span = tracing::info_span!("message", id);
            let result = tracing::Instrument::instrument(connector.send(&mut connection, &job), span).await;
            crate::metrics::get()
                .attempt_seconds
                .observe(started.elapsed().as_secs_f64());
            let attempt = match &result {
                Ok(a) | Err(a) => a,
            };
            if let Some(reply) = &attempt.reply {
                let line = reply_line(reply);
                shaper(&mut |s| {
                    if let Some(effect) = s.reply(&to, &hosts, &line, now()) {
                        tracing::warn!(destination = dest.route.name(), rule = %effect.rule, "flood rule matched; delivery slowed");
                    }
                });
            }
            match result {
                Ok(attempt) => connector.settle(job, &attempt),
                Err(attempt) => {
                    // The connection broke on this message; the others get a new one.
                    connector.settle(job, &attempt);
                    continue 'connections;
                }
            }
            sent += 1;
            if sent >= per_connection || stopping() {
                break;
            }
        }
        connector.quit(connection).await;
        if stopping() || dest.pending.borrow().is_empty() {
            break;
        }
    }
}

/// A reply as flood rules see it: `CODE ENHANCED TEXT` on one line.
fn reply_line(reply: &sluice_smtp::reply::Reply) -> String {
    let mut line = reply.code.to_string();
    if let Some(status) = &reply.status {
        line.push(' ');
        line.push_str(status);
    }
    for l in &reply.lines {
        line.push(' ');
        line.push_str(l);
    }
    line
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
