//! Where mail for a domain goes: MX lookup (RFC 5321 §5.1) with implicit MX
//! and null MX (RFC 7505), host addresses, all through hickory's caching
//! resolver (answers are kept for their TTL).

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A mail host for a domain, in preference order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Exchange {
    /// Lower is preferred.
    pub preference: u16,
    /// Host name without the trailing dot, lower-cased.
    pub name: String,
}

/// Why a domain has no usable mail host (`dns/error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// Retrying cannot help: NXDOMAIN, null MX, no address at all.
    #[error("{0}")]
    Permanent(String),
    /// Timeout, SERVFAIL, unreachable resolver: retry later.
    #[error("{0}")]
    Temporary(String),
}

impl DnsError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, DnsError::Permanent(_))
    }
}

/// A caching resolver: `dns-server` or the system's.
pub struct Dns {
    resolver: TokioResolver,
}

impl Dns {
    /// `server` is `dns-server` (`ip[:port]`, port 53 by default); `None` uses /etc/resolv.conf.
    pub fn new(server: Option<SocketAddr>) -> Result<Dns, NetError> {
        let mut opts = ResolverOpts::default();
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.timeout = Duration::from_secs(5);
        opts.attempts = 2;
        opts.cache_size = 4096;
        let builder = match server {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                // A configured server is the only truth: no /etc/hosts in between.
                opts.use_hosts_file = ResolveHosts::Never;
                let config = ResolverConfig::from_parts(None, vec![], vec![ns]);
                Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            }
            None => Resolver::builder_tokio()?,
        };
        Ok(Dns {
            resolver: builder.with_options(opts).build()?,
        })
    }

    /// The mail hosts of `domain`, best first (equal preferences by name).
    pub async fn mx(&self, domain: &str) -> Result<Vec<Exchange>, DnsError> {
        if let Some(literal) = address_literal(domain) {
            return Ok(vec![Exchange {
                name: literal.to_string(),
                preference: 0,
            }]);
        }
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        let lookup = match self.resolver.lookup(fqdn.as_str(), RecordType::MX).await {
            Ok(l) => l,
            Err(e) if e.is_nx_domain() => return Err(DnsError::Permanent(format!("domain {domain} does not exist"))),
            // No MX record: the domain itself is the mail host (RFC 5321 §5.1).
            Err(e) if e.is_no_records_found() => {
                return Ok(vec![Exchange {
                    name: domain.to_string(),
                    preference: 0,
                }])
            }
            Err(e) => return Err(DnsError::Temporary(format!("MX lookup for {domain} failed: {e}"))),
        };
        let mut hosts = Vec::new();
        for record in lookup.answers() {
            if let RData::MX(mx) = &record.data {
                if mx.exchange.is_root() {
                    return Err(DnsError::Permanent(format!(
                        "domain {domain} accepts no mail (null MX, RFC 7505)"
                    )));
                }
                hosts.push(Exchange {
                    name: mx.exchange.to_ascii().trim_end_matches('.').to_ascii_lowercase(),
                    preference: mx.preference,
                });
            }
        }
        if hosts.is_empty() {
            return Ok(vec![Exchange {
                name: domain.to_string(),
                preference: 0,
            }]);
        }
        // Sorted by preference then name: domains with the same hosts get the same list.
        hosts.sort();
        hosts.dedup();
        Ok(hosts)
    }

    /// The addresses of one host, IPv4 first then IPv6.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Some(ip) = address_literal(host) {
            return Ok(vec![ip]);
        }
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(ips) => Ok(ips.iter().collect()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => {
                Err(DnsError::Permanent(format!("mail host {host} has no address")))
            }
            Err(e) => Err(DnsError::Temporary(format!("address lookup for {host} failed: {e}"))),
        }
    }
}

/// An IP address written as a domain: `[192.0.2.1]`, `[IPv6:2001:db8::1]` or a bare IP.
pub fn address_literal(domain: &str) -> Option<IpAddr> {
    let inner = domain
        .strip_prefix('[')
        .and_then(|d| d.strip_suffix(']'))
        .unwrap_or(domain);
    let inner = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
        .unwrap_or(inner);
    inner.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_literals() {
        assert_eq!(address_literal("[127.0.0.1]"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(address_literal("[IPv6:::1]"), Some("::1".parse().unwrap()));
        assert_eq!(address_literal("example.com"), None);
    }
}
