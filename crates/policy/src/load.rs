//! Rows into the shaper's types. A row that does not make sense is
//! reported (table, id, why) and skipped; it never stops the rest.

use crate::schema::{Table, CAPACITY, FLOOD_RESPONSES};
use crate::store::{shown, DbError, Row, Store};
use sluice_shaping::capacity::{Capacity, CapacityRow, DomainScope, Limit};
use sluice_shaping::flood::{FloodRule, Matcher, Reduced};
use sluice_shaping::Rate;
use std::net::IpAddr;
use std::time::Duration;

/// A row that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub table: &'static str,
    pub id: i64,
    pub why: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} row {}: {}", self.table, self.id, self.why)
    }
}

/// The policy read from the database.
#[derive(Debug, Default)]
pub struct Policy {
    pub capacity: Vec<CapacityRow>,
    pub flood: Vec<FloodRule>,
    pub suppressions: Suppressions,
    pub pauses: Vec<PauseRow>,
    pub dns: DnsOverrides,
    pub locals: Locals,
    pub mtanames: MtaNames,
    pub delegates: Delegates,
    pub pools: Pools,
    pub dkim: crate::dkim::DkimKeys,
    /// The `tokens` table: Bearer tokens the HTTP API accepts.
    pub tokens: Vec<String>,
    /// Rows skipped (invalid) or shadowed (a lower id has the same scope).
    pub problems: Vec<Problem>,
}

impl Policy {
    /// The capacity rows indexed for the shaper.
    pub fn capacity(&self) -> Capacity {
        Capacity::new(self.capacity.clone()).0
    }
}

/// Reads every table the shaper uses.
pub fn load(store: &mut dyn Store) -> Result<Policy, DbError> {
    let mut policy = Policy::default();
    policy.capacity = read(store, &CAPACITY, capacity_row, &mut policy.problems)?;
    let (_, shadowed) = Capacity::new(policy.capacity.clone());
    for id in shadowed {
        policy.problems.push(Problem {
            table: CAPACITY.name,
            id,
            why: "shadowed: a row with a lower id has the same localip and domain".into(),
        });
    }
    policy.flood = read(store, &FLOOD_RESPONSES, flood_row, &mut policy.problems)?;
    policy.suppressions = suppressions(store, &mut policy.problems)?;
    policy.pauses = read(store, &crate::schema::PAUSED, pause_row, &mut policy.problems)?;
    policy.dns = dns_overrides(store, &mut policy.problems)?;
    policy.locals = locals(store, &mut policy.problems)?;
    policy.mtanames = mtanames(store, &mut policy.problems)?;
    policy.delegates = delegates(store, &mut policy.problems)?;
    policy.pools = pools(store, &mut policy.problems)?;
    policy.dkim = crate::dkim::dkim(store, &mut policy.problems)?;
    policy.tokens = read(store, &crate::schema::TOKENS, token_row, &mut policy.problems)?;
    Ok(policy)
}

pub(crate) fn read<T>(
    store: &mut dyn Store,
    table: &'static Table,
    parse: fn(&Row) -> Result<T, String>,
    problems: &mut Vec<Problem>,
) -> Result<Vec<T>, DbError> {
    let mut out = Vec::new();
    for row in store.rows(table)? {
        match parse(&row) {
            Ok(v) => out.push(v),
            Err(why) => problems.push(Problem {
                table: table.name,
                id: row.id,
                why,
            }),
        }
    }
    Ok(out)
}

fn localip(row: &Row) -> Result<Option<IpAddr>, String> {
    row.text("localip")?
        .map(|t| {
            t.parse()
                .map_err(|_| format!("localip: `{}` is not an IP address", shown(&t)))
        })
        .transpose()
}

fn domain(row: &Row) -> Result<DomainScope, String> {
    DomainScope::parse(&row.text("domain")?.unwrap_or_default()).map_err(|e| format!("domain: {e}"))
}

fn rate(row: &Row, column: &str) -> Result<Limit<Rate>, String> {
    Limit::rate(row.text(column)?.as_deref()).map_err(|e| format!("{column}: {e}"))
}

fn number(row: &Row, column: &str) -> Result<Limit<u64>, String> {
    Limit::number(row.int(column)?).map_err(|e| format!("{column}: {e}"))
}

fn capacity_row(row: &Row) -> Result<CapacityRow, String> {
    Ok(CapacityRow {
        id: row.id,
        localip: localip(row)?,
        domain: domain(row)?,
        message_rate: rate(row, "message_rate")?,
        connection_rate: rate(row, "connection_rate")?,
        connections: number(row, "connections")?,
        ip_message_rate: rate(row, "ip_message_rate")?,
        ip_connection_rate: rate(row, "ip_connection_rate")?,
        ip_connections: number(row, "ip_connections")?,
        messages_per_connection: number(row, "messages_per_connection")?,
        idle_seconds: number(row, "idle_seconds")?,
        queue_size: number(row, "queue_size")?,
    })
}

/// A reduced limit: NULL, 0 and -1 leave the limit unchanged.
fn lowered<T>(limit: Limit<T>) -> Option<T> {
    match limit {
        Limit::Of(v) => Some(v),
        Limit::Inherit | Limit::Unlimited => None,
    }
}

/// A duration in seconds: NULL or 0 is none.
fn seconds(row: &Row, column: &str) -> Result<Option<Duration>, String> {
    match row.int(column)? {
        None | Some(0) => Ok(None),
        Some(n) if n > 0 => Ok(Some(Duration::from_secs(n as u64))),
        Some(n) => Err(format!("{column}: {n} is not a number of seconds")),
    }
}

/// The largest `N` of a flood rule's `N/period` threshold.
pub const MAX_THRESHOLD: u64 = 10_000;

fn flood_row(row: &Row) -> Result<FloodRule, String> {
    let kind = row
        .text("type")?
        .ok_or("type: missing (exact, substr, fnmatch or regex)")?;
    let pattern = row.text("pattern")?.ok_or("pattern: missing")?;
    let matcher = Matcher::new(&kind, &pattern).map_err(|e| format!("pattern: {e}"))?;
    let threshold = row
        .text("threshold")?
        .map(|t| t.parse::<Rate>().map_err(|e| format!("threshold: {e}")))
        .transpose()?;
    // The matching replies of a threshold are kept until it is reached: bound them.
    if threshold.is_some_and(|t| t.count > MAX_THRESHOLD) {
        return Err(format!("threshold: at most {MAX_THRESHOLD} replies per period"));
    }
    let pause = seconds(row, "pause")?;
    let reduce = seconds(row, "reduce")?;
    if pause.is_none() && reduce.is_none() {
        return Err("neither pause nor reduce is set: the rule would do nothing".into());
    }
    let reduced = Reduced {
        message_rate: lowered(rate(row, "message_rate")?),
        connection_rate: lowered(rate(row, "connection_rate")?),
        connections: lowered(number(row, "connections")?),
        ip_message_rate: lowered(rate(row, "ip_message_rate")?),
        ip_connection_rate: lowered(rate(row, "ip_connection_rate")?),
        ip_connections: lowered(number(row, "ip_connections")?),
        messages_per_connection: lowered(number(row, "messages_per_connection")?),
        idle: lowered(number(row, "idle_seconds")?).map(Duration::from_secs),
        queue_size: lowered(number(row, "queue_size")?),
    };
    let name = row
        .text("name")?
        .map(|n| shown(&n))
        .unwrap_or_else(|| format!("flood_responses {}", row.id));
    Ok(FloodRule {
        id: row.id,
        name,
        matcher,
        domain: domain(row)?,
        localip: localip(row)?,
        threshold,
        pause,
        reduce,
        reduced,
    })
}

/// What a suppressed recipient's message ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    pub id: i64,
    pub code: u16,
    pub extended: String,
    pub description: String,
}

/// The `suppressions` table: recipients (by address or by domain) never tried.
#[derive(Debug, Clone, Default)]
pub struct Suppressions {
    addresses: std::collections::HashMap<String, Suppression>,
    domains: std::collections::HashMap<String, Suppression>,
}

impl Suppressions {
    pub fn len(&self) -> usize {
        self.addresses.len() + self.domains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The suppression of `recipient`: its address, else its domain.
    pub fn lookup(&self, recipient: &str) -> Option<&Suppression> {
        if self.is_empty() {
            return None;
        }
        let lower = recipient.to_lowercase();
        self.addresses.get(&lower).or_else(|| {
            let domain = lower.rsplit_once('@').map_or("", |(_, d)| d);
            self.domains.get(domain.trim_end_matches('.'))
        })
    }
}

/// An enhanced status code of a failure: `4.x.y` or `5.x.y` (RFC 3463).
pub fn failure_status(s: &str) -> bool {
    s.split('.').count() == 3
        && s.split('.')
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        && (s.starts_with("4.") || s.starts_with("5."))
}

fn suppression_row(row: &Row) -> Result<(bool, String, Suppression), String> {
    let kind = row.text("type")?.unwrap_or_default().to_ascii_lowercase();
    let by_address = match kind.as_str() {
        "address" => true,
        "domain" => false,
        other => return Err(format!("type: `{}` is neither address nor domain", shown(other))),
    };
    let value = row.text("value")?.ok_or("value: missing")?.to_lowercase();
    if by_address != value.contains('@') {
        return Err(format!("value: `{}` is not an {kind}", shown(&value)));
    }
    let code = match row.int("code")? {
        None => 550,
        Some(c @ 400..=599) => c as u16,
        Some(c) => return Err(format!("code: {c} is not a 4xx or 5xx reply code")),
    };
    let extended = row.text("extended")?.unwrap_or_else(|| "5.7.1".into());
    if !failure_status(&extended) {
        return Err(format!(
            "extended: `{}` is not an enhanced status code such as 5.7.1",
            shown(&extended)
        ));
    }
    let description = row
        .text("description")?
        .map(|d| shown(&d))
        .unwrap_or_else(|| "recipient suppressed".into());
    Ok((
        by_address,
        value.trim_end_matches('.').to_string(),
        Suppression {
            id: row.id,
            code,
            extended,
            description,
        },
    ))
}

/// Reads the `suppressions` table (the lower id wins for one value).
pub fn suppressions(store: &mut dyn Store, problems: &mut Vec<Problem>) -> Result<Suppressions, DbError> {
    let mut out = Suppressions::default();
    for (by_address, value, s) in read(store, &crate::schema::SUPPRESSIONS, suppression_row, problems)? {
        let map = if by_address {
            &mut out.addresses
        } else {
            &mut out.domains
        };
        map.entry(value).or_insert(s);
    }
    Ok(out)
}

/// A row of `paused`, its expiry as wall-clock time.
#[derive(Debug, Clone)]
pub struct PauseRow {
    pub id: i64,
    pub localip: Option<IpAddr>,
    pub domain: DomainScope,
    pub target: Option<IpAddr>,
    pub tag: Option<String>,
    /// Unix milliseconds; `None` = until removed.
    pub expire_ms: Option<u64>,
    pub reason: String,
}

impl PauseRow {
    /// The shaper's pause, its expiry on the monotonic clock (`now` = `now_ms`).
    pub fn at(&self, now: std::time::Instant, now_ms: u64) -> sluice_shaping::Pause {
        sluice_shaping::Pause {
            id: self.id,
            localip: self.localip,
            domain: self.domain.clone(),
            target: self.target,
            tag: self.tag.clone(),
            until: self
                .expire_ms
                .map(|e| now + Duration::from_millis(e.saturating_sub(now_ms))),
            reason: self.reason.clone(),
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) as unix milliseconds.
pub fn parse_time(text: &str) -> Option<u64> {
    let t = chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
    u64::try_from(t.and_utc().timestamp_millis()).ok()
}

fn pause_row(row: &Row) -> Result<PauseRow, String> {
    let target = row
        .text("target")?
        .map(|t| {
            t.parse()
                .map_err(|_| format!("target: `{}` is not an IP address", shown(&t)))
        })
        .transpose()?;
    let expire_ms = row
        .text("expire")?
        .map(|t| parse_time(&t).ok_or_else(|| format!("expire: `{}` is not YYYY-MM-DD HH:MM:SS", shown(&t))))
        .transpose()?;
    Ok(PauseRow {
        id: row.id,
        localip: localip(row)?,
        domain: domain(row)?,
        target,
        tag: row.text("tag")?.map(|t| shown(&t)),
        expire_ms,
        reason: row.text("reason")?.map(|r| shown(&r)).unwrap_or_default(),
    })
}

/// The built-in flood rules for the large providers (`data/flood-defaults.json`,
/// each with its source), loaded unless `flood-defaults: false`. They come
/// after the table's rows; their ids are negative.
pub fn default_flood_rules() -> Result<Vec<FloodRule>, String> {
    let rules: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(include_str!("../data/flood-defaults.json")).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let mut values = std::collections::HashMap::new();
        for (column, _) in FLOOD_RESPONSES.columns {
            let v = match rule.get(*column) {
                None | Some(serde_json::Value::Null) => crate::store::Value::Null,
                Some(serde_json::Value::String(s)) => crate::store::Value::Text(s.clone()),
                Some(serde_json::Value::Number(n)) => n
                    .as_i64()
                    .map_or(crate::store::Value::Other("real number"), crate::store::Value::Int),
                Some(_) => crate::store::Value::Other("JSON value"),
            };
            values.insert(*column, v);
        }
        if rule.get("source").and_then(|s| s.as_str()).is_none_or(str::is_empty) {
            return Err(format!("built-in flood rule {i}: no source"));
        }
        let row = Row {
            id: -(i as i64) - 1,
            values,
        };
        out.push(flood_row(&row).map_err(|e| format!("built-in flood rule {i}: {e}"))?);
    }
    Ok(out)
}

/// The `dns` table: answers used instead of DNS.
#[derive(Debug, Clone, Default)]
pub struct DnsOverrides {
    /// Domain → MX hosts (preference, host), lower-case.
    pub mx: std::collections::HashMap<String, Vec<(u16, String)>>,
    /// Host → addresses.
    pub a: std::collections::HashMap<String, Vec<IpAddr>>,
}

impl DnsOverrides {
    pub fn is_empty(&self) -> bool {
        self.mx.is_empty() && self.a.is_empty()
    }
}

/// One `dns` row's answer.
enum DnsAnswer {
    Mx(Vec<(u16, String)>),
    A(Vec<IpAddr>),
}

fn dns_row(row: &Row) -> Result<(String, DnsAnswer), String> {
    let domain = row
        .text("domain")?
        .ok_or("domain: missing")?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if domain.chars().any(|c| c.is_whitespace() || c.is_control()) || domain.len() > 255 {
        return Err(format!("domain: `{}` is not a domain name", shown(&domain)));
    }
    let value = row.text("value")?.ok_or("value: missing")?;
    let items = value.split(',').map(str::trim).filter(|v| !v.is_empty());
    match row.text("type")?.unwrap_or_default().to_ascii_lowercase().as_str() {
        "mx" => {
            let mut hosts = Vec::new();
            for item in items {
                let (pref, host) = item
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| format!("value: `{}` is not `preference host`", shown(item)))?;
                let pref: u16 = pref
                    .parse()
                    .map_err(|_| format!("value: `{}` is not a preference", shown(pref)))?;
                let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
                if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(format!("value: `{}` is not a host name", shown(&host)));
                }
                hosts.push((pref, host));
            }
            if hosts.is_empty() {
                return Err("value: no `preference host` pairs".into());
            }
            Ok((domain, DnsAnswer::Mx(hosts)))
        }
        "a" => {
            let ips = items
                .map(|i| {
                    i.parse()
                        .map_err(|_| format!("value: `{}` is not an IP address", shown(i)))
                })
                .collect::<Result<Vec<IpAddr>, String>>()?;
            if ips.is_empty() {
                return Err("value: no addresses".into());
            }
            Ok((domain, DnsAnswer::A(ips)))
        }
        other => Err(format!("type: `{}` is neither mx nor a", shown(other))),
    }
}

/// Reads the `dns` table (the lower id wins for one domain and type).
pub fn dns_overrides(store: &mut dyn Store, problems: &mut Vec<Problem>) -> Result<DnsOverrides, DbError> {
    let mut out = DnsOverrides::default();
    for (domain, answer) in read(store, &crate::schema::DNS, dns_row, problems)? {
        match answer {
            DnsAnswer::Mx(mut hosts) => {
                hosts.sort();
                out.mx.entry(domain).or_insert(hosts);
            }
            DnsAnswer::A(ips) => {
                out.a.entry(domain).or_insert(ips);
            }
        }
    }
    Ok(out)
}

/// The `locals` table: incoming recipients that go to `rabbitmq-local`.
#[derive(Debug, Clone, Default)]
pub struct Locals {
    rules: Vec<Matcher>,
}

impl Locals {
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether incoming mail for `recipient` is local.
    pub fn is_local(&self, recipient: &str) -> bool {
        self.rules.iter().any(|m| m.matches(recipient))
    }
}

fn local_row(row: &Row) -> Result<Matcher, String> {
    let kind = row
        .text("type")?
        .ok_or("type: missing (exact, substr, fnmatch or regex)")?;
    let pattern = row.text("pattern")?.ok_or("pattern: missing")?;
    Matcher::new(&kind, &pattern).map_err(|e| format!("pattern: {e}"))
}

/// Reads the `locals` table.
pub fn locals(store: &mut dyn Store, problems: &mut Vec<Problem>) -> Result<Locals, DbError> {
    Ok(Locals {
        rules: read(store, &crate::schema::LOCALS, local_row, problems)?,
    })
}

/// The `mtanames` table: the EHLO name per local IP.
pub type MtaNames = std::collections::HashMap<IpAddr, String>;

fn mtaname_row(row: &Row) -> Result<(IpAddr, String), String> {
    let ip = localip(row)?.ok_or("localip: missing")?;
    let name = row.text("name")?.ok_or("name: missing")?;
    // The name goes on the wire after EHLO: a host name, nothing else.
    let ok = name.len() <= 255
        && name.split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !ok {
        return Err(format!("name: `{}` is not a host name", shown(&name)));
    }
    Ok((ip, name.to_ascii_lowercase()))
}

/// Reads the `mtanames` table (the lower id wins for one local IP).
pub fn mtanames(store: &mut dyn Store, problems: &mut Vec<Problem>) -> Result<MtaNames, DbError> {
    let mut out = MtaNames::new();
    for (ip, name) in read(store, &crate::schema::MTANAMES, mtaname_row, problems)? {
        out.entry(ip).or_insert(name);
    }
    Ok(out)
}

/// The `delegates` table: mail from a local IP to a domain goes from another IP.
#[derive(Debug, Clone, Default)]
pub struct Delegates {
    map: std::collections::HashMap<(Option<IpAddr>, String), IpAddr>,
    /// The `mx:` rows, by id: local IP, pattern on the MX host names, delegate.
    mx: Vec<(Option<IpAddr>, sluice_shaping::pattern::Pattern, IpAddr)>,
}

impl Delegates {
    pub fn is_empty(&self) -> bool {
        self.map.is_empty() && self.mx.is_empty()
    }

    /// Whether some row needs the MX host names to decide.
    pub fn has_mx(&self) -> bool {
        !self.mx.is_empty()
    }

    /// The IP mail from `local` to `domain` (whose MX hosts are `mx_hosts`,
    /// when known) goes from instead, if any: the most specific row, in the
    /// capacity table's order — (localip, domain), (localip, mx:),
    /// ('', domain), ('', mx:), (localip, ''), ('', '').
    pub fn delegate(&self, local: Option<IpAddr>, domain: &str, mx_hosts: &[String]) -> Option<IpAddr> {
        if self.is_empty() {
            return None;
        }
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let get = |ip: Option<IpAddr>, d: &str| self.map.get(&(ip, d.to_string())).copied();
        let mx = |ip: Option<IpAddr>| {
            self.mx
                .iter()
                .find(|(l, p, _)| *l == ip && mx_hosts.iter().any(|h| p.matches(h)))
                .map(|(_, _, d)| *d)
        };
        let with_ip = |ip: IpAddr| get(Some(ip), &domain).or_else(|| mx(Some(ip)));
        local
            .and_then(with_ip)
            .or_else(|| get(None, &domain))
            .or_else(|| mx(None))
            .or_else(|| local.and_then(|ip| get(Some(ip), "")))
            .or_else(|| get(None, ""))
    }
}

/// A delegates row: its scope (an `mx:` one apart) and the delegate.
enum DelegateRow {
    Exact((Option<IpAddr>, String), IpAddr),
    Mx(Option<IpAddr>, sluice_shaping::pattern::Pattern, IpAddr),
}

fn delegate_row(row: &Row) -> Result<DelegateRow, String> {
    let delegate = row
        .text("delegate")?
        .ok_or("delegate: missing")?
        .parse()
        .map_err(|_| "delegate: not an IP address".to_string())?;
    let local = localip(row)?;
    Ok(match domain(row)? {
        DomainScope::Any => DelegateRow::Exact((local, String::new()), delegate),
        DomainScope::Domain(d) => DelegateRow::Exact((local, d), delegate),
        DomainScope::Mx(p) => DelegateRow::Mx(local, p, delegate),
    })
}

/// Reads the `delegates` table (the lower id wins for one scope).
pub fn delegates(store: &mut dyn Store, problems: &mut Vec<Problem>) -> Result<Delegates, DbError> {
    let mut out = Delegates::default();
    for row in read(store, &crate::schema::DELEGATES, delegate_row, problems)? {
        match row {
            DelegateRow::Exact(scope, ip) => {
                out.map.entry(scope).or_insert(ip);
            }
            DelegateRow::Mx(local, pattern, ip) => out.mx.push((local, pattern, ip)),
        }
    }
    Ok(out)
}

/// The `pools` and `poolips` tables: each pool's local IPs, in row order.
pub type Pools = std::collections::HashMap<String, Vec<IpAddr>>;

/// A pool's name as a message names it: 1–64 printable characters, no spaces.
fn pool_name(row: &Row) -> Result<String, String> {
    let name = row.text("name")?.ok_or("name: missing")?;
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "name: `{}` is not a pool name (1-64 printable characters, no spaces)",
            shown(&name)
        ));
    }
    Ok(name)
}

fn pool_row(row: &Row) -> Result<String, String> {
    pool_name(row)
}

fn poolip_row(row: &Row) -> Result<(String, IpAddr), String> {
    let ip = localip(row)?.ok_or("localip: missing")?;
    Ok((pool_name(row)?, ip))
}

/// Reads the pools: a `poolips` row of a pool the `pools` table does not
/// have is reported and skipped, as is a second row for the same IP.
pub fn pools(store: &mut dyn Store, problems: &mut Vec<Problem>) -> Result<Pools, DbError> {
    let mut out = Pools::new();
    for name in read(store, &crate::schema::POOLS, pool_row, problems)? {
        out.entry(name).or_default();
    }
    for row in store.rows(&crate::schema::POOLIPS)? {
        let why = match poolip_row(&row) {
            Ok((name, ip)) => match out.get_mut(&name) {
                Some(ips) if ips.contains(&ip) => format!("shadowed: {ip} is in pool `{}` already", shown(&name)),
                Some(ips) => {
                    ips.push(ip);
                    continue;
                }
                None => format!("name: no pool `{}` in the pools table", shown(&name)),
            },
            Err(why) => why,
        };
        problems.push(Problem {
            table: crate::schema::POOLIPS.name,
            id: row.id,
            why,
        });
    }
    Ok(out)
}

/// A `tokens` row. The token is a secret: no report quotes it.
fn token_row(row: &Row) -> Result<String, String> {
    let token = row.text("token")?.ok_or("token: missing")?;
    if token.len() < 16 {
        return Err("token: shorter than 16 characters (too easy to guess)".into());
    }
    if token.len() > 256 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("token: at most 256 printable ASCII characters, no spaces".into());
    }
    Ok(token)
}

/// Whether `row` would be a usable row of `table` (what the API checks
/// before it writes one), or why not. A dkim_patterns row's key is checked
/// for existence by the caller, which knows the keys.
pub fn check_row(table: &Table, row: &Row) -> Result<(), String> {
    use crate::schema as s;
    match table.name {
        n if n == s::CAPACITY.name => capacity_row(row).map(drop),
        n if n == s::FLOOD_RESPONSES.name => flood_row(row).map(drop),
        n if n == s::PAUSED.name => pause_row(row).map(drop),
        n if n == s::DELEGATES.name => delegate_row(row).map(drop),
        n if n == s::MTANAMES.name => mtaname_row(row).map(drop),
        n if n == s::DNS.name => dns_row(row).map(drop),
        n if n == s::DKIM_KEYS.name => crate::dkim::key_row(row).map(drop),
        n if n == s::DKIM_PATTERNS.name => crate::dkim::pattern_row(row).map(drop),
        n if n == s::LOCALS.name => local_row(row).map(drop),
        n if n == s::SUPPRESSIONS.name => suppression_row(row).map(drop),
        n if n == s::POOLS.name => pool_row(row).map(drop),
        n if n == s::POOLIPS.name => poolip_row(row).map(drop),
        n if n == s::TOKENS.name => token_row(row).map(drop),
        _ => Err(format!("{}: not a settings table", table.name)),
    }
}
