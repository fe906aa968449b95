//! Capacity rows and the limits they give one destination.
//!
//! The most specific row wins, per column (`spec/database.md`):
//! (localip, domain) → (localip, `mx:`) → ('', domain) → ('', `mx:`) →
//! (localip, '') → ('', '') → the config defaults. A column set to -1 passes
//! the decision on to the next row; NULL or 0 is "unlimited" and decides.
//! Resolving is done once per destination (the shaper keeps the result), so
//! an attempt never walks the rows.

use crate::pattern::Pattern;
use crate::rate::{BadRate, Rate};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// One limit column of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit<T> {
    /// -1: the next less specific row decides.
    Inherit,
    /// NULL or 0.
    Unlimited,
    Of(T),
}

impl Limit<Rate> {
    /// A rate column: NULL, '' or 0 unlimited, -1 inherit, else `N/period`.
    pub fn rate(column: Option<&str>) -> Result<Limit<Rate>, BadRate> {
        match column.map(str::trim) {
            None | Some("") | Some("0") => Ok(Limit::Unlimited),
            Some("-1") => Ok(Limit::Inherit),
            Some(text) => text.parse().map(Limit::Of),
        }
    }
}

impl Limit<u64> {
    /// A number column: NULL or 0 unlimited, -1 inherit, else a positive number.
    pub fn number(column: Option<i64>) -> Result<Limit<u64>, String> {
        match column {
            None | Some(0) => Ok(Limit::Unlimited),
            Some(-1) => Ok(Limit::Inherit),
            Some(n) if n > 0 => Ok(Limit::Of(n as u64)),
            Some(n) => Err(format!(
                "{n} is not a limit (a positive number, 0 or NULL for none, -1 to inherit)"
            )),
        }
    }
}

/// Which domains a row covers.
#[derive(Debug, Clone)]
pub enum DomainScope {
    Any,
    /// A recipient domain, lower-case.
    Domain(String),
    /// `mx:PATTERN`: every domain with an MX host that matches.
    Mx(Pattern),
}

impl DomainScope {
    /// Reads a `domain` column: '' any, `mx:PATTERN`, or a domain.
    pub fn parse(column: &str) -> Result<DomainScope, String> {
        let column = column.trim();
        if column.is_empty() {
            return Ok(DomainScope::Any);
        }
        if let Some(pattern) = column.strip_prefix("mx:") {
            return Pattern::new("fnmatch", pattern)
                .map(DomainScope::Mx)
                .map_err(|e| format!("mx pattern: {e}"));
        }
        Ok(DomainScope::Domain(column.trim_end_matches('.').to_ascii_lowercase()))
    }
}

/// A row of the `capacity` table.
#[derive(Debug, Clone)]
pub struct CapacityRow {
    pub id: i64,
    /// `None` = any local IP.
    pub localip: Option<IpAddr>,
    pub domain: DomainScope,
    pub message_rate: Limit<Rate>,
    pub connection_rate: Limit<Rate>,
    pub connections: Limit<u64>,
    pub ip_message_rate: Limit<Rate>,
    pub ip_connection_rate: Limit<Rate>,
    pub ip_connections: Limit<u64>,
    pub messages_per_connection: Limit<u64>,
    pub idle_seconds: Limit<u64>,
    pub queue_size: Limit<u64>,
}

impl CapacityRow {
    /// A row that passes every column on (for building rows in code and tests).
    pub fn inheriting(id: i64, localip: Option<IpAddr>, domain: DomainScope) -> CapacityRow {
        CapacityRow {
            id,
            localip,
            domain,
            message_rate: Limit::Inherit,
            connection_rate: Limit::Inherit,
            connections: Limit::Inherit,
            ip_message_rate: Limit::Inherit,
            ip_connection_rate: Limit::Inherit,
            ip_connections: Limit::Inherit,
            messages_per_connection: Limit::Inherit,
            idle_seconds: Limit::Inherit,
            queue_size: Limit::Inherit,
        }
    }
}

/// Where a resolved value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A capacity row, by id.
    Row(i64),
    /// The config (`delivery-domain-connections`, `delivery-connection-messages`) or built in.
    Default,
}

/// One resolved limit: `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved<T> {
    pub value: Option<T>,
    pub from: Source,
}

/// The limits of one destination, each with the row it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub message_rate: Resolved<Rate>,
    pub connection_rate: Resolved<Rate>,
    pub connections: Resolved<u64>,
    pub ip_message_rate: Resolved<Rate>,
    pub ip_connection_rate: Resolved<Rate>,
    pub ip_connections: Resolved<u64>,
    pub messages_per_connection: Resolved<u64>,
    pub idle: Resolved<Duration>,
    pub queue_size: Resolved<u64>,
}

/// What applies when no row decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    /// `delivery-domain-connections`.
    pub connections: u64,
    /// `delivery-connection-messages`.
    pub messages_per_connection: u64,
    pub idle: Duration,
    pub queue_size: u64,
}

/// Every capacity row, indexed for resolution.
#[derive(Debug, Default)]
pub struct Capacity {
    rows: Vec<CapacityRow>,
    /// (localip, domain) → row, for domain rows and '' rows (domain "").
    exact: HashMap<(Option<IpAddr>, String), usize>,
    /// `mx:` rows by local IP, lowest id first.
    mx: HashMap<Option<IpAddr>, Vec<usize>>,
}

impl Capacity {
    /// Indexes `rows`. Of two rows with the same scope the lower id wins; the
    /// other is returned as shadowed (for `database check`).
    pub fn new(mut rows: Vec<CapacityRow>) -> (Capacity, Vec<i64>) {
        rows.sort_by_key(|r| r.id);
        let mut c = Capacity::default();
        let mut shadowed = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            match &row.domain {
                DomainScope::Mx(_) => c.mx.entry(row.localip).or_default().push(i),
                DomainScope::Any | DomainScope::Domain(_) => {
                    let domain = match &row.domain {
                        DomainScope::Domain(d) => d.clone(),
                        _ => String::new(),
                    };
                    if c.exact.contains_key(&(row.localip, domain.clone())) {
                        shadowed.push(row.id);
                    } else {
                        c.exact.insert((row.localip, domain), i);
                    }
                }
            }
        }
        c.rows = rows;
        (c, shadowed)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows that apply to (`localip`, `domain` with `mx_hosts`), most specific first.
    fn chain(&self, localip: Option<IpAddr>, domain: &str, mx_hosts: &[String]) -> Vec<&CapacityRow> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let exact = |ip: Option<IpAddr>, d: &str| self.exact.get(&(ip, d.to_string())).map(|&i| &self.rows[i]);
        let by_mx = |ip: Option<IpAddr>| {
            self.mx.get(&ip).and_then(|rows| {
                rows.iter().map(|&i| &self.rows[i]).find(|r| match &r.domain {
                    DomainScope::Mx(p) => mx_hosts.iter().any(|h| p.matches(h)),
                    _ => false,
                })
            })
        };
        let mut chain = Vec::with_capacity(6);
        if localip.is_some() {
            chain.extend(exact(localip, &domain));
            chain.extend(by_mx(localip));
        }
        chain.extend(exact(None, &domain));
        chain.extend(by_mx(None));
        if localip.is_some() {
            chain.extend(exact(localip, ""));
        }
        chain.extend(exact(None, ""));
        chain
    }

    /// The limits for mail from `localip` to `domain`, whose MX hosts are `mx_hosts`.
    pub fn resolve(&self, localip: Option<IpAddr>, domain: &str, mx_hosts: &[String], d: Defaults) -> Effective {
        let chain = self.chain(localip, domain, mx_hosts);
        fn pick<T: Copy, U>(
            chain: &[&CapacityRow],
            column: impl Fn(&CapacityRow) -> Limit<T>,
            convert: impl Fn(T) -> U,
            default: Option<U>,
        ) -> Resolved<U> {
            for row in chain {
                match column(row) {
                    Limit::Inherit => continue,
                    Limit::Unlimited => {
                        return Resolved {
                            value: None,
                            from: Source::Row(row.id),
                        }
                    }
                    Limit::Of(v) => {
                        return Resolved {
                            value: Some(convert(v)),
                            from: Source::Row(row.id),
                        }
                    }
                }
            }
            Resolved {
                value: default,
                from: Source::Default,
            }
        }
        use std::convert::identity as same;
        Effective {
            message_rate: pick(&chain, |r| r.message_rate, same, None),
            connection_rate: pick(&chain, |r| r.connection_rate, same, None),
            connections: pick(&chain, |r| r.connections, same, Some(d.connections)),
            ip_message_rate: pick(&chain, |r| r.ip_message_rate, same, None),
            ip_connection_rate: pick(&chain, |r| r.ip_connection_rate, same, None),
            ip_connections: pick(&chain, |r| r.ip_connections, same, None),
            messages_per_connection: pick(
                &chain,
                |r| r.messages_per_connection,
                same,
                Some(d.messages_per_connection),
            ),
            // No connection is kept open for ever: "unlimited" idle time is the default.
            idle: {
                let idle = pick(&chain, |r| r.idle_seconds, Duration::from_secs, Some(d.idle));
                Resolved {
                    value: idle.value.or(Some(d.idle)),
                    ..idle
                }
            },
            queue_size: pick(&chain, |r| r.queue_size, same, Some(d.queue_size)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Defaults = Defaults {
        connections: 10,
        messages_per_connection: 100,
        idle: Duration::from_secs(5),
        queue_size: 5000,
    };

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn row(id: i64, localip: &str, domain: &str) -> CapacityRow {
        let localip = if localip.is_empty() { None } else { ip(localip) };
        CapacityRow::inheriting(id, localip, DomainScope::parse(domain).unwrap())
    }

    fn rate(s: &str) -> Limit<Rate> {
        Limit::Of(s.parse().unwrap())
    }

    #[test]
    fn columns_parse_by_the_spec() {
        assert_eq!(Limit::rate(None).unwrap(), Limit::Unlimited);
        assert_eq!(Limit::rate(Some("0")).unwrap(), Limit::Unlimited);
        assert_eq!(Limit::rate(Some("-1")).unwrap(), Limit::Inherit);
        assert_eq!(Limit::rate(Some("120/min")).unwrap(), rate("120/min"));
        assert!(Limit::rate(Some("lots")).is_err());
        assert_eq!(Limit::number(Some(0)).unwrap(), Limit::Unlimited);
        assert_eq!(Limit::number(Some(-1)).unwrap(), Limit::Inherit);
        assert_eq!(Limit::number(Some(3)).unwrap(), Limit::Of(3));
        assert!(Limit::number(Some(-2)).is_err());
    }

    #[test]
    fn no_rows_give_the_config_defaults() {
        let (c, _) = Capacity::new(vec![]);
        let e = c.resolve(ip("192.0.2.1"), "example.com", &[], D);
        assert_eq!(
            e.connections,
            Resolved {
                value: Some(10),
                from: Source::Default
            }
        );
        assert_eq!(e.messages_per_connection.value, Some(100));
        assert_eq!(
            e.message_rate,
            Resolved {
                value: None,
                from: Source::Default
            }
        );
    }

    #[test]
    fn the_most_specific_row_wins_per_column() {
        let mut everything = row(1, "", "");
        everything.connections = Limit::Of(20);
        everything.message_rate = rate("1000/min");
        let mut from_ip = row(2, "192.0.2.1", "");
        from_ip.connections = Limit::Of(5);
        let mut gmail_any_ip = row(3, "", "gmail.com");
        gmail_any_ip.message_rate = rate("120/min");
        let mut google_mx = row(4, "", "mx:*.google.com");
        google_mx.connections = Limit::Of(2);
        google_mx.message_rate = rate("300/min");
        let mut gmail_from_ip = row(5, "192.0.2.1", "gmail.com");
        gmail_from_ip.messages_per_connection = Limit::Of(50);
        let (c, shadowed) = Capacity::new(vec![gmail_from_ip, google_mx, everything, from_ip, gmail_any_ip]);
        assert!(shadowed.is_empty());
        let google = ["gmail-smtp-in.l.google.com".to_string()];

        let e = c.resolve(ip("192.0.2.1"), "gmail.com", &google, D);
        assert_eq!(
            e.messages_per_connection,
            Resolved {
                value: Some(50),
                from: Source::Row(5)
            }
        );
        // ('', gmail.com) comes before ('', mx:) and (localip, '').
        assert_eq!(e.message_rate.from, Source::Row(3));
        assert_eq!(
            e.connections,
            Resolved {
                value: Some(2),
                from: Source::Row(4)
            }
        );
        assert_eq!(e.queue_size.from, Source::Default);

        // A company domain hosted at Google shares the mx: row.
        let e = c.resolve(ip("192.0.2.1"), "company.example", &google, D);
        assert_eq!(
            e.message_rate,
            Resolved {
                value: Some("300/min".parse().unwrap()),
                from: Source::Row(4)
            }
        );
        assert_eq!(e.connections.from, Source::Row(4));
        // Elsewhere: the local IP's row, then everything's.
        let e = c.resolve(ip("192.0.2.1"), "other.example", &["mx.other.example".into()], D);
        assert_eq!(
            e.connections,
            Resolved {
                value: Some(5),
                from: Source::Row(2)
            }
        );
        assert_eq!(e.message_rate.from, Source::Row(1));
        let e = c.resolve(ip("192.0.2.9"), "other.example", &[], D);
        assert_eq!(
            e.connections,
            Resolved {
                value: Some(20),
                from: Source::Row(1)
            }
        );
    }

    #[test]
    fn unlimited_decides_and_inherit_passes_on() {
        let mut everything = row(1, "", "");
        everything.connections = Limit::Of(20);
        let mut unlimited = row(2, "", "bulk.example");
        unlimited.connections = Limit::Unlimited;
        let inheriting = row(3, "", "quiet.example");
        let (c, _) = Capacity::new(vec![everything, unlimited, inheriting]);
        assert_eq!(
            c.resolve(None, "bulk.example", &[], D).connections,
            Resolved {
                value: None,
                from: Source::Row(2)
            }
        );
        assert_eq!(
            c.resolve(None, "quiet.example", &[], D).connections.from,
            Source::Row(1)
        );
    }

    #[test]
    fn of_two_rows_with_one_scope_the_lower_id_wins() {
        let mut a = row(7, "", "example.com");
        a.connections = Limit::Of(1);
        let mut b = row(3, "", "EXAMPLE.com.");
        b.connections = Limit::Of(3);
        let (c, shadowed) = Capacity::new(vec![a, b]);
        assert_eq!(shadowed, [7]);
        assert_eq!(c.resolve(None, "example.com", &[], D).connections.value, Some(3));
    }

    #[test]
    fn resolving_with_many_rows_walks_only_the_matching_ones() {
        // 100,000 domain rows: a lookup is a handful of hash probes.
        let rows: Vec<_> = (0..100_000)
            .map(|i| {
                let mut r = row(i, "", &format!("d{i}.example"));
                r.connections = Limit::Of(1 + (i as u64 % 7));
                r
            })
            .collect();
        let (c, _) = Capacity::new(rows);
        assert_eq!(c.len(), 100_000);
        assert_eq!(
            c.resolve(None, "d99999.example", &[], D).connections.value,
            Some(1 + 99_999 % 7)
        );
        assert_eq!(
            c.resolve(None, "nowhere.example", &[], D).connections.from,
            Source::Default
        );
    }
}
