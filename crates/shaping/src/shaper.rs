//! The live state of shaping: per destination (local IP, domain) and per
//! MX IP (local IP, remote IP), the connections open and the pacers of the
//! rates; and the decisions asked of it. Each decision is a hash lookup and
//! a few comparisons, whatever the number of capacity rows: a destination's
//! limits are resolved once and kept until a reload.

use crate::capacity::{Capacity, Defaults, Effective};
use crate::rate::{Pacer, Rate};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Mail from one local IP (`None`: the system's choice) to one recipient domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    pub localip: Option<IpAddr>,
    pub domain: String,
}

impl Destination {
    pub fn new(localip: Option<IpAddr>, domain: &str) -> Destination {
        Destination {
            localip,
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
        }
    }
}

/// What the shaper says about an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Go,
    /// Not before this time (a rate, or a pause).
    Wait(Instant),
    /// Not until one of the destination's (or the MX IP's) connections closes.
    Full,
}

impl Decision {
    /// The stricter of two decisions.
    fn and(self, other: Decision) -> Decision {
        match (self, other) {
            (Decision::Full, _) | (_, Decision::Full) => Decision::Full,
            (Decision::Wait(a), Decision::Wait(b)) => Decision::Wait(a.max(b)),
            (Decision::Wait(a), Decision::Go) | (Decision::Go, Decision::Wait(a)) => Decision::Wait(a),
            (Decision::Go, Decision::Go) => Decision::Go,
        }
    }
}

/// A pacer kept in step with a limit that may change (reloads, flood rules).
fn sync(pacer: &mut Option<Pacer>, rate: Option<Rate>) {
    match (pacer.as_mut(), rate) {
        (Some(p), Some(r)) => p.set_rate(r),
        (None, Some(r)) => *pacer = Some(Pacer::new(r)),
        (_, None) => *pacer = None,
    }
}

fn paced(pacer: &Option<Pacer>, now: Instant) -> Decision {
    match pacer.as_ref().and_then(|p| p.wait(now)) {
        Some(at) => Decision::Wait(at),
        None => Decision::Go,
    }
}

fn below(open: u64, limit: Option<u64>) -> Decision {
    match limit {
        Some(max) if open >= max => Decision::Full,
        _ => Decision::Go,
    }
}

#[derive(Debug)]
struct DestinationState {
    limits: Option<Effective>,
    messages: Option<Pacer>,
    connections: Option<Pacer>,
    open: u64,
    paused_until: Option<Instant>,
}

#[derive(Debug, Default)]
struct IpState {
    messages: Option<Pacer>,
    connections: Option<Pacer>,
    open: u64,
}

/// Shaping for one delivery engine.
#[derive(Debug)]
pub struct Shaper {
    capacity: Capacity,
    defaults: Defaults,
    destinations: HashMap<Destination, DestinationState>,
    ips: HashMap<(Option<IpAddr>, IpAddr), IpState>,
}

impl Shaper {
    pub fn new(capacity: Capacity, defaults: Defaults) -> Shaper {
        Shaper {
            capacity,
            defaults,
            destinations: HashMap::new(),
            ips: HashMap::new(),
        }
    }

    /// New rows (a reload): limits are resolved again on next use; counts
    /// and pacing already run are kept.
    pub fn reload(&mut self, capacity: Capacity) {
        self.capacity = capacity;
        for d in self.destinations.values_mut() {
            d.limits = None;
        }
    }

    fn state(&mut self, dest: &Destination, mx_hosts: &[String]) -> &mut DestinationState {
        let (capacity, defaults) = (&self.capacity, self.defaults);
        let state = self
            .destinations
            .entry(dest.clone())
            .or_insert_with(|| DestinationState {
                limits: None,
                messages: None,
                connections: None,
                open: 0,
                paused_until: None,
            });
        if state.limits.is_none() {
            let limits = capacity.resolve(dest.localip, &dest.domain, mx_hosts, defaults);
            sync(&mut state.messages, limits.message_rate.value);
            sync(&mut state.connections, limits.connection_rate.value);
            state.limits = Some(limits);
        }
        state
    }

    /// The limits that apply to `dest` (resolved on first use).
    pub fn limits(&mut self, dest: &Destination, mx_hosts: &[String]) -> &Effective {
        self.state(dest, mx_hosts)
            .limits
            .as_ref()
            .expect("state() resolves the limits")
    }

    fn ip(&mut self, dest: &Destination, mx_ip: IpAddr, limits: &Effective) -> &mut IpState {
        let ip = self.ips.entry((dest.localip, mx_ip)).or_default();
        sync(&mut ip.messages, limits.ip_message_rate.value);
        sync(&mut ip.connections, limits.ip_connection_rate.value);
        ip
    }

    fn pause_of(state: &DestinationState, now: Instant) -> Decision {
        match state.paused_until {
            Some(until) if until > now => Decision::Wait(until),
            _ => Decision::Go,
        }
    }

    /// May a connection to `dest` open now (at `mx_ip`, once it is known)?
    pub fn may_connect(
        &mut self,
        dest: &Destination,
        mx_hosts: &[String],
        mx_ip: Option<IpAddr>,
        now: Instant,
    ) -> Decision {
        let state = self.state(dest, mx_hosts);
        let limits = state.limits.clone().expect("resolved");
        let mut decision = Self::pause_of(state, now)
            .and(below(state.open, limits.connections.value))
            .and(paced(&state.connections, now));
        if let Some(mx_ip) = mx_ip {
            let ip = self.ip(dest, mx_ip, &limits);
            decision = decision
                .and(below(ip.open, limits.ip_connections.value))
                .and(paced(&ip.connections, now));
        }
        decision
    }

    /// A connection to `dest` at `mx_ip` opened at `now`.
    pub fn connected(&mut self, dest: &Destination, mx_hosts: &[String], mx_ip: IpAddr, now: Instant) {
        let state = self.state(dest, mx_hosts);
        state.open += 1;
        if let Some(p) = state.connections.as_mut() {
            p.take(now);
        }
        let limits = state.limits.clone().expect("resolved");
        let ip = self.ip(dest, mx_ip, &limits);
        ip.open += 1;
        if let Some(p) = ip.connections.as_mut() {
            p.take(now);
        }
    }

    /// A connection to `dest` at `mx_ip` closed.
    pub fn disconnected(&mut self, dest: &Destination, mx_ip: IpAddr) {
        if let Some(state) = self.destinations.get_mut(dest) {
            state.open = state.open.saturating_sub(1);
        }
        if let Some(ip) = self.ips.get_mut(&(dest.localip, mx_ip)) {
            ip.open = ip.open.saturating_sub(1);
        }
    }

    /// May a message to `dest` go now on a connection to `mx_ip`?
    pub fn may_send(&mut self, dest: &Destination, mx_hosts: &[String], mx_ip: IpAddr, now: Instant) -> Decision {
        let state = self.state(dest, mx_hosts);
        let limits = state.limits.clone().expect("resolved");
        let decision = Self::pause_of(state, now).and(paced(&state.messages, now));
        let ip = self.ip(dest, mx_ip, &limits);
        decision.and(paced(&ip.messages, now))
    }

    /// A message to `dest` was attempted on a connection to `mx_ip` at `now`.
    pub fn sent(&mut self, dest: &Destination, mx_hosts: &[String], mx_ip: IpAddr, now: Instant) {
        let state = self.state(dest, mx_hosts);
        if let Some(p) = state.messages.as_mut() {
            p.take(now);
        }
        let limits = state.limits.clone().expect("resolved");
        if let Some(p) = self.ip(dest, mx_ip, &limits).messages.as_mut() {
            p.take(now);
        }
    }

    /// Holds every attempt to `dest` until `until` (a flood rule, a pause).
    pub fn pause(&mut self, dest: &Destination, mx_hosts: &[String], until: Instant) {
        let state = self.state(dest, mx_hosts);
        state.paused_until = Some(state.paused_until.map_or(until, |u| u.max(until)));
    }

    /// Forgets what no longer constrains anything (no connection open, no
    /// pacing debt, no pause), so state stays bounded by the destinations
    /// in use; forgetting them loses nothing.
    pub fn sweep(&mut self, now: Instant) {
        let idle = |p: &Option<Pacer>| p.as_ref().is_none_or(|p| p.wait(now).is_none());
        self.destinations.retain(|_, s| {
            s.open > 0 || !idle(&s.messages) || !idle(&s.connections) || s.paused_until.is_some_and(|u| u > now)
        });
        self.ips
            .retain(|_, s| s.open > 0 || !idle(&s.messages) || !idle(&s.connections));
    }

    /// Destinations and MX IPs with state (for tests and the console).
    pub fn tracked(&self) -> (usize, usize) {
        (self.destinations.len(), self.ips.len())
    }
}

#[cfg(test)]
mod tests;
