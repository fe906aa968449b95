//! A worker's destinations: each has a queue of jobs and up to
//! `delivery-domain-connections` connections that take jobs from it, up to
//! `delivery-connection-messages` per connection. A connection that cannot be
//! opened fails every job waiting for that destination with the same result,
//! so a dead destination gives its messages back (as retries) at once
//! instead of holding them.

use super::client::{Client, Target};
use super::mx::{Dns, DnsError};
use super::outcome::{self, Attempt, Kind};
use super::{message, Engine, Job, Lane, Next, Route};
use sluice_queue::now_ms;
use sluice_smtp::client::ClientConfig;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
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
pub async fn run(lane: Lane) {
    let Lane { engine, mut jobs } = lane;
    let dns = match Dns::new(engine.dns_server) {
        Ok(d) => Some(Rc::new(d)),
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the DNS resolver; MX deliveries will be retried");
            None
        }
    };
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
            connections.spawn_local(serve(engine.clone(), dns.clone(), dest));
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
async fn serve(engine: Arc<Engine>, dns: Option<Rc<Dns>>, dest: Rc<Destination>) {
    let _active = Active(dest.clone());
    let Ok(_slot) = engine.connections.clone().acquire_owned().await else {
        return;
    };
    let cfg = ClientConfig {
        helo: engine.helo.clone(),
        tls: engine.tls_policy,
        auth: match &dest.route.next {
            Next::Relay(r) => r.auth.clone(),
            Next::Mx(_) => None,
        },
    };
    'connections: while !dest.pending.borrow().is_empty() {
        let mut client = match open(&engine, dns.as_deref(), &dest.route, cfg.clone()).await {
            Ok(c) => c,
            Err(attempt) => {
                tracing::debug!(destination = dest.route.name(), state = attempt.state, reason = %attempt.description, "cannot connect");
                let waiting: Vec<Job> = dest.pending.borrow_mut().drain(..).collect();
                for job in waiting {
                    settle(&engine, job, &attempt);
                }
                return;
            }
        };
        let mut sent = 0;
        loop {
            let next = dest.pending.borrow_mut().pop_front();
            let Some(job) = next else {
                if *engine.shutdown.borrow() {
                    break;
                }
                dest.idle.set(dest.idle.get() + 1);
                let woken = tokio::time::timeout(IDLE, dest.wake.notified()).await.is_ok();
                dest.idle.set(dest.idle.get() - 1);
                if woken {
                    continue;
                }
                break;
            };
            let tx = match message::transaction(&job.msg, client.capabilities()) {
                Ok(tx) => tx,
                Err(attempt) => {
                    settle(&engine, job, &attempt.with_connection(Some(client.info())));
                    continue;
                }
            };
            match client.send(tx).await {
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

/// Counts a connection out of its destination when it ends, however it ends.
struct Active(Rc<Destination>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
    }
}

/// Decides a job's outcome and stores it in the background.
fn settle(engine: &Arc<Engine>, job: Job, attempt: &Attempt) {
    tracing::debug!(id = job.id, recipient = %job.msg.recipient, state = attempt.state, result = attempt.kind.as_str(), "attempt");
    let Job { id, msg, route, permit } = job;
    let out = outcome::decide(&engine.policy, msg, attempt, now_ms());
    let engine = engine.clone();
    tokio::task::spawn_local(async move {
        engine.finish(id, &route, out.publish).await;
        drop(permit)
    });
}

/// Opens a connection for `route`: the sink, the relay, or the MX hosts in
/// preference order, moving on when a host cannot be reached or answers its
/// greeting with an error.
async fn open(engine: &Engine, dns: Option<&Dns>, route: &Route, cfg: ClientConfig) -> Result<Client, Attempt> {
    let (hosts, port) = match &route.next {
        Next::Relay(r) => (vec![r.host.clone()], r.port),
        Next::Mx(domain) => match (engine.sink, dns) {
            (Some(_), _) => (vec![domain.clone()], engine.mx_port),
            (None, Some(dns)) => match dns.mx(domain).await {
                Ok(hosts) => (hosts.into_iter().map(|h| h.name).collect(), engine.mx_port),
                Err(e) => return Err(dns_failure(&e)),
            },
            (None, None) => {
                return Err(dns_failure(&DnsError::Temporary("no DNS resolver available".into())));
            }
        },
    };
    if let Some(sink) = engine.sink {
        let target = Target {
            addr: sink,
            local: route.local,
            host: &hosts[0],
        };
        return Client::open(target, cfg, &engine.tls, engine.timeouts).await;
    }
    let mut last: Option<Attempt> = None;
    let mut dns_permanent = true;
    for host in &hosts {
        let addresses = match lookup(dns, host).await {
            Ok(a) => a,
            Err(e) => {
                dns_permanent &= e.is_permanent();
                last.get_or_insert(dns_failure(&e));
                continue;
            }
        };
        // From a local IPv4 address only IPv4 destinations can be reached, and so on.
        let usable = addresses
            .into_iter()
            .filter(|ip| route.local.is_none_or(|l| l.is_ipv4() == ip.is_ipv4()));
        for ip in usable {
            let target = Target {
                addr: SocketAddr::new(ip, port),
                local: route.local,
                host,
            };
            match Client::open(target, cfg.clone(), &engine.tls, engine.timeouts).await {
                Ok(c) => return Ok(c),
                Err(a) => {
                    let next_host = a.state == "connect" || (a.state == "intro" && !a.permanent);
                    if !next_host {
                        return Err(a);
                    }
                    dns_permanent = false;
                    last = Some(a);
                }
            }
        }
    }
    Err(match last {
        Some(mut a) if a.state == "dns" => {
            a.permanent = dns_permanent;
            a
        }
        Some(a) => a,
        None => Attempt::failed("bind", Kind::Error, "no address of the local IP's family", false),
    })
}

async fn lookup(dns: Option<&Dns>, host: &str) -> Result<Vec<IpAddr>, DnsError> {
    if let Some(ip) = super::mx::address_literal(host) {
        return Ok(vec![ip]);
    }
    match dns {
        Some(d) => d.addresses(host).await,
        None => Err(DnsError::Temporary("no DNS resolver available".into())),
    }
}

fn dns_failure(e: &DnsError) -> Attempt {
    Attempt::failed("dns", Kind::Error, e.to_string(), e.is_permanent())
}
