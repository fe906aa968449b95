//! Opening a delivery connection for a route: the sink, the relay, or the MX
//! hosts in preference order (equal preferences rotated), each host's
//! addresses of the local IP's family, moving on past hosts that cannot be
//! reached or refuse the greeting. What a failure means is the attempt it
//! returns.

use super::client::{Client, Target};
use super::mx::{Dns, DnsError};
use super::outcome::{Attempt, ResultKind, State};
use super::{Engine, Next, Route};
use sluice_smtp::client::{ClientConfig, Stage};
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};

/// Opens a connection for `route`: the sink, the relay, or the MX hosts in
/// preference order, moving on when a host cannot be reached or answers its
/// greeting with an error.
pub async fn open(engine: &Engine, route: &Route, cfg: ClientConfig) -> Result<Client, Attempt> {
    let dns = engine.dns.as_deref();
    let (hosts, port) = match &route.next {
        Next::Relay(r) => (vec![r.host.clone()], r.port),
        Next::Mx(set) => (by_preference(set), engine.mx_port),
        Next::Domain(domain) => match (engine.sink, dns) {
            (Some(_), _) => (vec![domain.clone()], engine.mx_port),
            (None, Some(dns)) => match dns.mx(domain).await {
                Ok(set) => (by_preference(&set), engine.mx_port),
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
            let target = Target {
                addr: SocketAddr::new(ip, port),
                local: route.local,
                host,
            };
            match Client::open(target, cfg.clone(), &engine.tls, engine.timeouts).await {
                Ok(c) => return Ok(c),
                Err(a) => {
                    let next_host = a.state == State::Connect || (a.state == State::Smtp(Stage::Intro) && !a.permanent);
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
    })
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
