//! The live state of shaping: per destination (local IP, domain) and per
//! MX IP (local IP, remote IP), the connections open and the pacers of the
//! rates; and the decisions asked of it. Each decision is a hash lookup and
//! a few comparisons, whatever the number of capacity rows: a destination's
//! limits are resolved once and kept until a reload.

use crate::capacity::{Capacity, Defaults, Effective, Resolved};
use crate::flood::{FloodRules, Reduced};
use crate::pause::Pause;
use crate::rate::{Pacer, Rate};
use crate::recent::Recent;
use std::collections::{HashMap, VecDeque};
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

#[derive(Debug, Default)]
struct DestinationState {
    /// From the capacity rows; resolved on first use and after a reload.
    limits: Option<Effective>,
    messages: Option<Pacer>,
    connections: Option<Pacer>,
    open: u64,
    paused_until: Option<Instant>,
    /// A flood rule's lowered limits, until when, and the rule's name.
    reduced: Option<(Reduced, Instant, String)>,
    /// The rule that paused it, for the console.
    paused_by: Option<String>,
    /// Matching replies per rule with a threshold, within its period.
    hits: HashMap<i64, VecDeque<Instant>>,
    /// Messages sent and connections opened in the last minute (shown, not limits).
    recent_messages: Option<Recent>,
    recent_connections: Option<Recent>,
}

/// Counts an event in `recent`, started at its first.
fn count(recent: &mut Option<Recent>, now: Instant) {
    recent.get_or_insert_with(|| Recent::new(now)).record(now);
}

fn last_minute(recent: &Option<Recent>, now: Instant) -> u64 {
    recent.as_ref().map_or(0, |r| r.last_minute(now))
}

impl DestinationState {
    /// The limits in force at `now`: the rows' with a flood rule's reductions.
    fn current(&self, now: Instant) -> Effective {
        let mut e = self.limits.clone().expect("resolved before use");
        if let Some((r, until, _)) = &self.reduced {
            if *until > now {
                fn lower<T: Copy>(to: &mut Resolved<T>, by: Option<T>) {
                    if let Some(v) = by {
                        to.value = Some(v);
                    }
                }
                lower(&mut e.message_rate, r.message_rate);
                lower(&mut e.connection_rate, r.connection_rate);
                lower(&mut e.connections, r.connections);
                lower(&mut e.ip_message_rate, r.ip_message_rate);
                lower(&mut e.ip_connection_rate, r.ip_connection_rate);
                lower(&mut e.ip_connections, r.ip_connections);
                lower(&mut e.messages_per_connection, r.messages_per_connection);
                lower(&mut e.idle, r.idle);
                lower(&mut e.queue_size, r.queue_size);
            }
        }
        e
    }
}

/// What a flood rule did to a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodEffect {
    pub rule: String,
    pub paused_until: Option<Instant>,
    pub reduced_until: Option<Instant>,
}

/// A destination's traffic at one moment (for metrics and the console).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    pub destination: Destination,
    pub open: u64,
    pub messages_last_minute: u64,
    pub connections_last_minute: u64,
    /// A flood rule pauses or slows it now.
    pub flood_effect: bool,
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
    flood: FloodRules,
    pauses: Vec<Pause>,
    defaults: Defaults,
    destinations: HashMap<Destination, DestinationState>,
    ips: HashMap<(Option<IpAddr>, IpAddr), IpState>,
}

impl Shaper {
    pub fn new(capacity: Capacity, defaults: Defaults) -> Shaper {
        Shaper {
            capacity,
            flood: FloodRules::default(),
            pauses: Vec::new(),
            defaults,
            destinations: HashMap::new(),
            ips: HashMap::new(),
        }
    }

    /// New rows (a reload): limits are resolved again on next use; counts
    /// and pacing already run are kept.
    pub fn reload(&mut self, capacity: Capacity) -> Capacity {
        for d in self.destinations.values_mut() {
            d.limits = None;
        }
        // The old rows go back to the caller, to be freed outside its lock.
        std::mem::replace(&mut self.capacity, capacity)
    }

    /// The pauses in force (the `paused` table).
    pub fn set_pauses(&mut self, pauses: Vec<Pause>) {
        self.pauses = pauses;
    }

    /// Whether a pause holds a message with `tags` for `dest` (at `mx_ip`
    /// once known): `Wait` until it should be looked at again.
    pub fn held(
        &self,
        dest: &Destination,
        mx_hosts: &[String],
        mx_ip: Option<IpAddr>,
        tags: &[&str],
        now: Instant,
    ) -> Decision {
        self.pauses
            .iter()
            .filter(|p| p.holds(dest.localip, &dest.domain, mx_hosts, mx_ip, tags, now))
            .map(|p| p.recheck(now))
            .min()
            .map_or(Decision::Go, Decision::Wait)
    }

    /// The pauses in force at `now` (for the API and console).
    pub fn pauses(&self, now: Instant) -> impl Iterator<Item = &Pause> {
        self.pauses.iter().filter(move |p| p.until.is_none_or(|u| u > now))
    }

    /// New flood rules (the table's and the built-in ones); effects in force stay until they expire.
    pub fn set_flood_rules(&mut self, rules: FloodRules) {
        self.flood = rules;
    }

    /// The state of `dest`, created on first use (the key is cloned only then:
    /// this runs for every message).
    fn entry(&mut self, dest: &Destination) -> &mut DestinationState {
        if !self.destinations.contains_key(dest) {
            self.destinations.insert(dest.clone(), DestinationState::default());
        }
        self.destinations.get_mut(dest).expect("inserted above")
    }

    /// The state of `dest` and its limits at `now` (its pacers kept in step with them).
    fn state(&mut self, dest: &Destination, mx_hosts: &[String], now: Instant) -> (&mut DestinationState, Effective) {
        if self.destinations.get(dest).is_none_or(|s| s.limits.is_none()) {
            let limits = self
                .capacity
                .resolve(dest.localip, &dest.domain, mx_hosts, self.defaults);
            self.entry(dest).limits = Some(limits);
        }
        let state = self.entry(dest);
        let limits = state.current(now);
        sync(&mut state.messages, limits.message_rate.value);
        sync(&mut state.connections, limits.connection_rate.value);
        (state, limits)
    }

    /// The limits in force for `dest` at `now`, each with the row it came from.
    pub fn limits(&mut self, dest: &Destination, mx_hosts: &[String], now: Instant) -> Effective {
        self.state(dest, mx_hosts, now).1
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
        let (state, limits) = self.state(dest, mx_hosts, now);
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
        let (state, limits) = self.state(dest, mx_hosts, now);
        state.open += 1;
        count(&mut state.recent_connections, now);
        if let Some(p) = state.connections.as_mut() {
            p.take(now);
        }
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

    /// May a message to `dest` go now on a connection to `mx_ip` (`None`:
    /// before a connection is open, only the destination's own limits)?
    pub fn may_send(
        &mut self,
        dest: &Destination,
        mx_hosts: &[String],
        mx_ip: Option<IpAddr>,
        now: Instant,
    ) -> Decision {
        let (state, limits) = self.state(dest, mx_hosts, now);
        let decision = Self::pause_of(state, now).and(paced(&state.messages, now));
        match mx_ip {
            Some(mx_ip) => decision.and(paced(&self.ip(dest, mx_ip, &limits).messages, now)),
            None => decision,
        }
    }

    /// A message to `dest` was attempted on a connection to `mx_ip` at `now`.
    pub fn sent(&mut self, dest: &Destination, mx_hosts: &[String], mx_ip: IpAddr, now: Instant) {
        let (state, limits) = self.state(dest, mx_hosts, now);
        count(&mut state.recent_messages, now);
        if let Some(p) = state.messages.as_mut() {
            p.take(now);
        }
        if let Some(p) = self.ip(dest, mx_ip, &limits).messages.as_mut() {
            p.take(now);
        }
    }

    /// Holds every attempt to `dest` until `until` (a flood rule, a pause).
    pub fn pause(&mut self, dest: &Destination, until: Instant) {
        let state = self.entry(dest);
        state.paused_until = Some(state.paused_until.map_or(until, |u| u.max(until)));
    }

    /// A remote reply (`CODE ENHANCED TEXT`, one line) to mail for `dest`:
    /// the flood rule it matches, once its threshold is reached, pauses
    /// `dest` and/or lowers its limits. Positive replies are not looked at.
    pub fn reply(&mut self, dest: &Destination, mx_hosts: &[String], reply: &str, now: Instant) -> Option<FloodEffect> {
        if reply.starts_with('2') || reply.starts_with('3') {
            return None;
        }
        let rule = self
            .flood
            .matching(dest.localip, &dest.domain, mx_hosts, reply)?
            .clone();
        let state = self.entry(dest);
        if let Some(threshold) = rule.threshold {
            let hits = state.hits.entry(rule.id).or_default();
            hits.push_back(now);
            while hits
                .front()
                .is_some_and(|&t| now.saturating_duration_since(t) >= threshold.period)
            {
                hits.pop_front();
            }
            // At most `count` are kept: reaching it acts and clears them.
            if (hits.len() as u64) < threshold.count {
                return None;
            }
            state.hits.remove(&rule.id);
        }
        let mut effect = FloodEffect {
            rule: rule.name.clone(),
            paused_until: None,
            reduced_until: None,
        };
        if let Some(pause) = rule.pause {
            let until = now + pause;
            state.paused_until = Some(state.paused_until.map_or(until, |u| u.max(until)));
            state.paused_by = Some(rule.name.clone());
            effect.paused_until = state.paused_until;
        }
        if let Some(reduce) = rule.reduce {
            let until = now + reduce;
            state.reduced = Some((rule.reduced.clone(), until, rule.name.clone()));
            effect.reduced_until = Some(until);
        }
        Some(effect)
    }

    /// Connections open now to `dest`.
    pub fn open(&self, dest: &Destination) -> u64 {
        self.destinations.get(dest).map_or(0, |s| s.open)
    }

    /// The `n` destinations with the most messages in the last minute (then
    /// the most connections open), busiest first.
    pub fn busiest(&self, n: usize, now: Instant) -> Vec<Busy> {
        let mut all: Vec<Busy> = self
            .destinations
            .iter()
            .map(|(d, s)| Busy {
                destination: d.clone(),
                open: s.open,
                messages_last_minute: last_minute(&s.recent_messages, now),
                connections_last_minute: last_minute(&s.recent_connections, now),
                flood_effect: s.paused_until.is_some_and(|u| u > now)
                    || s.reduced.as_ref().is_some_and(|(_, u, _)| *u > now),
            })
            .filter(|b| b.open > 0 || b.messages_last_minute > 0 || b.flood_effect)
            .collect();
        all.sort_by(|a, b| {
            (b.messages_last_minute, b.open)
                .cmp(&(a.messages_last_minute, a.open))
                .then_with(|| a.destination.domain.cmp(&b.destination.domain))
        });
        all.truncate(n);
        all
    }

    /// Messages sent and connections opened to `dest` in the minute up to `now`.
    pub fn rates(&self, dest: &Destination, now: Instant) -> (u64, u64) {
        self.destinations.get(dest).map_or((0, 0), |s| {
            (
                last_minute(&s.recent_messages, now),
                last_minute(&s.recent_connections, now),
            )
        })
    }

    /// The flood effects and pauses in force at `now`, by destination (for the API and console).
    pub fn effects(&self, now: Instant) -> Vec<(Destination, FloodEffect)> {
        let mut out = Vec::new();
        for (dest, s) in &self.destinations {
            let paused = s.paused_until.filter(|u| *u > now);
            let reduced = s.reduced.as_ref().filter(|(_, u, _)| *u > now);
            if paused.is_none() && reduced.is_none() {
                continue;
            }
            let rule = reduced
                .map(|(_, _, name)| name.clone())
                .or_else(|| s.paused_by.clone())
                .unwrap_or_else(|| "pause".into());
            let effect = FloodEffect {
                rule,
                paused_until: paused,
                reduced_until: reduced.map(|(_, u, _)| *u),
            };
            out.push((dest.clone(), effect));
        }
        out
    }

    /// Forgets what no longer constrains anything (no connection open, no
    /// pacing debt, no pause), so state stays bounded by the destinations
    /// in use; forgetting them loses nothing.
    pub fn sweep(&mut self, now: Instant) {
        let idle = |p: &Option<Pacer>| p.as_ref().is_none_or(|p| p.wait(now).is_none());
        let later = |t: Option<Instant>| t.is_some_and(|u| u > now);
        self.destinations.retain(|_, s| {
            s.open > 0
                || !idle(&s.messages)
                || !idle(&s.connections)
                || later(s.paused_until)
                || later(s.reduced.as_ref().map(|r| r.1))
                || !s.hits.is_empty()
                || last_minute(&s.recent_messages, now) > 0
                || last_minute(&s.recent_connections, now) > 0
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
