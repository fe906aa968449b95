//! Opening a delivery connection for a route: the sink, the relay, or the MX
//! hosts in preference order (equal preferences rotated), each host's
//! addresses of the local IP's family, moving on past hosts that cannot be
//! reached or refuse the greeting. What a failure means is the attempt it
//! returns. Each address is first reserved with the shaper (its per-MX-IP
//! connection limit and rate); an address at its limit is passed over, and
//! when every address is, the answer is "not now" — a wait, not a failure.

use super::client::{Client, Target};
use super::mx::{Dns, DnsError};
use super::outcome::{Attempt, ResultKind, State};
use super::{Engine, Next, Route};
use sluice_shaping::{Decision, Destination, Shaper};
use sluice_smtp::client::{ClientConfig, Stage};
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

/// Why no connection was opened.
pub enum OpenError {
    /// An attempt that failed: every waiting job gets it.
    Failed(Attempt),
    /// Every address is at its shaping limit: look again then.
    NotNow(Decision),
}

impl From<Attempt> for OpenError {
    fn from(a: Attempt) -> OpenError {
        OpenError::Failed(a)
    }
}

/// A connection counted in by the shaper (per destination and MX IP); counted out when dropped.
pub struct Reservation {
    shaper: Arc<Mutex<Shaper>>,
    destination: Destination,
    ip: IpAddr,
}

impl Reservation {
    /// Reserves `ip` for `destination` unless a limit says not now.
    fn take(engine: &Engine, destination: &Destination, hosts: &[String], ip: IpAddr) -> Result<Reservation, Decision> {
        let now = std::time::Instant::now();
        let mut shaper = sluice_queue::lock(&engine.shaper);
        match shaper.may_connect(destination, hosts, Some(ip), now) {
            Decision::Go => {
                shaper.connected(destination, hosts, ip, now);
                Ok(Reservation {
                    shaper: engine.shaper.clone(),
                    destination: destination.clone(),
                    ip,
                })
            }
            other => Err(other),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        sluice_queue::lock(&self.shaper).disconnected(&self.destination, self.ip);
    }
}

/// Opens a connection for `route` (on behalf of `destination`, the domain
/// of the job at its head): the sink, the relay, or the MX hosts in
/// preference order, moving on when a host cannot be reached, answers its
/// greeting with an error, or is at its shaping limit.
pub async fn open(
    engine: &Engine,
    route: &Route,
    destination: &Destination,
    cfg: ClientConfig,
) -> Result<(Client, Reservation), OpenError> {
    let mx_hosts = super::destination::mx_hosts(route);
    let dns = engine.dns.as_deref();
    let (hosts, port) = match &route.next {
        Next::Relay(r) => (vec![r.host.clone()], r.port),
        Next::Mx(set) => (by_preference(set), engine.mx_port),
        Next::Domain(domain) => match (engine.sink, dns) {
            (Some(_), _) => (vec![domain.clone()], engine.mx_port),
            (None, Some(dns)) => match dns.mx(domain).await {
                Ok(set) => (by_preference(&set), engine.mx_port),
                Err(e) => return Err(dns_failure(&e).into()),
            },
            (None, None) => {
                return Err(dns_failure(&DnsError::Temporary("no DNS resolver available".into())).into());
            }
        },
    };
    if let Some(sink) = engine.sink {
        let reservation = Reservation::take(engine, destination, &mx_hosts, sink.ip()).map_err(OpenError::NotNow)?;
        let target = Target {
            addr: sink,
            local: route.local,
            host: &hosts[0],
        };
        let client = Client::open(target, cfg, &engine.tls, engine.timeouts).await?;
        return Ok((client, reservation));
    }
    let mut last: Option<Attempt> = None;
    let mut dns_permanent = true;
    // The soonest an address passed over for its limits may be tried.
    let mut not_now: Option<Decision> = None;
    for host in &hosts {
        let addresses = match lookup(dns, host).await {
            Ok(a) => a.to_vec(),
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
            let reservation = match Reservation::take(engine, destination, &mx_hosts, ip) {
                Ok(r) => r,
                Err(decision) => {
                    not_now = Some(sooner(not_now, decision));
                    continue;
                }
            };
            let target = Target {
                addr: SocketAddr::new(ip, port),
                local: route.local,
                host,
            };
            match Client::open(target, cfg.clone(), &engine.tls, engine.timeouts).await {
                Ok(c) => return Ok((c, reservation)),
                Err(a) => {
                    let next_host = a.state == State::Connect || (a.state == State::Smtp(Stage::Intro) && !a.permanent);
                    if !next_host {
                        return Err(a.into());
                    }
                    dns_permanent = false;
                    last = Some(a);
                }
            }
        }
    }
    // An address that may be tried later beats failing every waiting job now.
    if let Some(decision) = not_now {
        return Err(OpenError::NotNow(decision));
    }
    Err(OpenError::Failed(match last {
        Some(mut a) if a.state == State::Dns => {
            a.permanent = dns_permanent;
            a
        }
        Some(a) => a,
        None => Attempt::failed(
            State::Bind,
            ResultKind::Error,
            "no address of the local IP's family",
            false,
        ),
    }))
}

/// The sooner of two "not now"s: a time beats waiting for a connection to close.
fn sooner(a: Option<Decision>, b: Decision) -> Decision {
    match (a, b) {
        (Some(Decision::Wait(x)), Decision::Wait(y)) => Decision::Wait(x.min(y)),
        (Some(Decision::Wait(x)), _) => Decision::Wait(x),
        (_, other) => other,
    }
}

/// Host names best first; hosts of equal preference in a different order
/// for each connection, so they share the load (RFC 5321 §5.1).
fn by_preference(set: &[super::mx::Exchange]) -> Vec<String> {
    let mut hosts: Vec<(u16, u64, &str)> = set
        .iter()
        .map(|h| {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write(h.name.as_bytes());
            (h.preference, hasher.finish(), h.name.as_str())
        })
        .collect();
    hosts.sort();
    hosts.into_iter().map(|(_, _, name)| name.to_string()).collect()
}

async fn lookup(dns: Option<&Dns>, host: &str) -> Result<std::sync::Arc<[IpAddr]>, DnsError> {
    if let Some(ip) = super::mx::address_literal(host) {
        return Ok(std::sync::Arc::from([ip]));
    }
    match dns {
        Some(d) => d.addresses(host).await,
        None => Err(DnsError::Temporary("no DNS resolver available".into())),
    }
}

/// The attempt for a failed DNS lookup (permanent for NXDOMAIN and null MX).
pub fn dns_failure(e: &DnsError) -> Attempt {
    Attempt::failed(State::Dns, ResultKind::Error, e.to_string(), e.is_permanent())
}
