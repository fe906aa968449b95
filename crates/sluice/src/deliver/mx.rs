//! Where mail for a domain goes: MX lookup (RFC 5321 §5.1) with implicit MX
//! and null MX (RFC 7505), host addresses, all through one hickory caching
//! resolver for the whole delivery engine (answers are kept for their TTL).
//!
//! The dispatcher and every worker share the one [`Dns`]. Its lookups run on
//! the runtime it was made on (so hickory's connection tasks live on one
//! runtime, whichever thread asks), and a name being looked up is looked up
//! once: whoever asks for it meanwhile waits for the same answer. A lookup the
//! dispatcher stopped waiting for goes on, and the destination's connection
//! that then needs it joins it instead of asking again.

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use sluice_queue::lock;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

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

/// A domain's mail hosts, or why there are none.
pub type MxSet = Result<Arc<[Exchange]>, DnsError>;
/// A host's addresses, or why there are none.
type Addresses = Result<Arc<[IpAddr]>, DnsError>;

/// Lookups under way, by name: a second asker waits for the first one's answer.
struct InFlight<T> {
    pending: Mutex<HashMap<String, watch::Receiver<Option<T>>>>,
}

impl<T: Clone + Send + Sync + 'static> InFlight<T> {
    fn new() -> Self {
        InFlight {
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for `name`: joins the lookup under way, or spawns
    /// `lookup` on `runtime` (where it runs to the end even if every asker
    /// stops waiting). `gone` is the answer when the runtime stopped first.
    async fn get<F>(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        name: &str,
        lookup: impl FnOnce() -> F,
        gone: impl FnOnce() -> T,
    ) -> T
    where
        F: Future<Output = T> + Send + 'static,
    {
        let mut answer = {
            let mut pending = lock(&self.pending);
            match pending.get(name) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    pending.insert(name.to_string(), rx.clone());
                    let (this, name, lookup) = (self.clone(), name.to_string(), lookup());
                    runtime.spawn(async move {
                        let result = lookup.await;
                        // Later askers go to the resolver's cache.
                        lock(&this.pending).remove(&name);
                        tx.send_replace(Some(result));
                    });
                    rx
                }
            }
        };
        let result = match answer.wait_for(Option::is_some).await {
            Ok(result) => result.clone(),
            Err(_) => None,
        };
        result.unwrap_or_else(gone)
    }
}

/// The settings database's `dns` table, replaced by each reload.
pub type Overrides = Arc<std::sync::RwLock<Arc<sluice_policy::DnsOverrides>>>;

/// The delivery engine's resolver: `dns-server` or the system's, after the
/// `dns` table's overrides.
pub struct Dns {
    overrides: Overrides,
    resolver: Arc<TokioResolver>,
    runtime: tokio::runtime::Handle,
    mx: Arc<InFlight<MxSet>>,
    addresses: Arc<InFlight<Addresses>>,
    reverse: Arc<InFlight<Option<String>>>,
    /// Reverse names already looked up (a failed lookup too, so a DNS
    /// server that times out costs one wait per local IP, not one per connection).
    names: Mutex<HashMap<IpAddr, (Option<String>, std::time::Instant)>>,
}

/// How long a reverse name is kept, and how many local IPs' names at most.
const REVERSE_TTL: Duration = Duration::from_secs(600);
const REVERSE_MAX: usize = 1024;

/// How the resolver is asked.
#[derive(Debug, Clone, Copy)]
pub struct DnsOptions {
    /// `dns-server` (`ip[:port]`, port 53 by default); `None` uses /etc/resolv.conf.
    pub server: Option<SocketAddr>,
    /// `dns-min-ttl`: answers are kept at least this long (MailerQ's
    /// guard against domains that publish TTLs of 0).
    pub min_ttl: Duration,
    /// `dns-attempts`: tries per query.
    pub attempts: usize,
}

impl Dns {
    /// A resolver asked as `options` say; lookups run on `runtime`.
    pub fn new(options: DnsOptions, runtime: tokio::runtime::Handle, overrides: Overrides) -> Result<Dns, NetError> {
        let mut opts = ResolverOpts::default();
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.timeout = Duration::from_secs(5);
        opts.attempts = options.attempts.max(1);
        opts.positive_min_ttl = Some(options.min_ttl);
        opts.cache_size = 4096;
        let builder = match options.server {
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
        let _in_runtime = runtime.enter();
        Ok(Dns {
            overrides,
            resolver: Arc::new(builder.with_options(opts).build()?),
            runtime,
            mx: Arc::new(InFlight::new()),
            addresses: Arc::new(InFlight::new()),
            reverse: Arc::new(InFlight::new()),
            names: Mutex::new(HashMap::new()),
        })
    }

    /// The mail hosts of `domain`, best first (equal preferences by name).
    pub async fn mx(&self, domain: &str) -> MxSet {
        if let Some(literal) = address_literal(domain) {
            return Ok(Arc::from([Exchange {
                name: literal.to_string(),
                preference: 0,
            }]));
        }
        let key = domain.trim_end_matches('.').to_ascii_lowercase();
        if let Some(hosts) = self.overridden().mx.get(&key) {
            return Ok(hosts
                .iter()
                .map(|(preference, name)| Exchange {
                    preference: *preference,
                    name: name.clone(),
                })
                .collect());
        }
        let resolver = self.resolver.clone();
        let name = key.clone();
        let lookup = || async move { lookup_mx(&resolver, &name).await.map(Arc::from) };
        self.mx.get(&self.runtime, &key, lookup, stopped).await
    }

    /// The addresses of one host, IPv4 first then IPv6.
    pub async fn addresses(&self, host: &str) -> Addresses {
        if let Some(ip) = address_literal(host) {
            return Ok(Arc::from([ip]));
        }
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(ips) = self.overridden().a.get(&key) {
            return Ok(Arc::from(ips.as_slice()));
        }
        let resolver = self.resolver.clone();
        let name = key.clone();
        let lookup = || async move { lookup_addresses(&resolver, &name).await.map(Arc::from) };
        self.addresses.get(&self.runtime, &key, lookup, stopped).await
    }
}

impl Dns {
    /// The host name `ip`'s PTR record names, when it is a fully qualified
    /// one (not `localhost`): the EHLO name for connections from a local IP
    /// without an `mtanames` row.
    pub async fn reverse(&self, ip: IpAddr) -> Option<String> {
        if let Some((name, at)) = lock(&self.names).get(&ip) {
            if at.elapsed() < REVERSE_TTL {
                return name.clone();
            }
        }
        let resolver = self.resolver.clone();
        let lookup = || async move { lookup_reverse(&resolver, ip).await };
        let name = self.reverse.get(&self.runtime, &ip.to_string(), lookup, || None).await;
        let mut names = lock(&self.names);
        if names.len() >= REVERSE_MAX {
            names.clear();
        }
        names.insert(ip, (name.clone(), std::time::Instant::now()));
        name
    }

    fn overridden(&self) -> Arc<sluice_policy::DnsOverrides> {
        self.overrides.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The answer when delivery is shutting down under a lookup.
fn stopped<T>() -> Result<T, DnsError> {
    Err(DnsError::Temporary("DNS lookup cancelled (shutting down)".into()))
}

async fn lookup_mx(resolver: &TokioResolver, domain: &str) -> Result<Vec<Exchange>, DnsError> {
    let fqdn = format!("{domain}.");
    let lookup = match resolver.lookup(fqdn.as_str(), RecordType::MX).await {
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

async fn lookup_reverse(resolver: &TokioResolver, ip: IpAddr) -> Option<String> {
    let mut name = hickory_resolver::proto::rr::Name::from(ip);
    name.set_fqdn(true);
    let lookup = match resolver.lookup(name, RecordType::PTR).await {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(%ip, error = %e, "no reverse DNS name");
            return None;
        }
    };
    lookup.answers().iter().find_map(|r| match &r.data {
        RData::PTR(ptr) => greeting_name(&ptr.0.to_ascii()),
        _ => None,
    })
}

/// A PTR name as an EHLO name: fully qualified, not `localhost` (which the
/// resolver itself answers for 127.0.0.0/8 and ::1), lowercase, no final dot.
fn greeting_name(ptr: &str) -> Option<String> {
    let name = ptr.trim_end_matches('.').to_ascii_lowercase();
    let first = name.split('.').next().unwrap_or("");
    (name.contains('.') && first != "localhost").then_some(name)
}

async fn lookup_addresses(resolver: &TokioResolver, host: &str) -> Result<Vec<IpAddr>, DnsError> {
    let fqdn = format!("{host}.");
    match resolver.lookup_ip(fqdn.as_str()).await {
        Ok(ips) => Ok(ips.iter().collect()),
        Err(e) if e.is_nx_domain() || e.is_no_records_found() => {
            Err(DnsError::Permanent(format!("mail host {host} has no address")))
        }
        Err(e) => Err(DnsError::Temporary(format!("address lookup for {host} failed: {e}"))),
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
    #[test]
    fn only_qualified_non_localhost_ptr_names_greet() {
        use super::greeting_name;
        assert_eq!(greeting_name("Out1.Example.NET.").as_deref(), Some("out1.example.net"));
        assert_eq!(greeting_name("localhost."), None);
        assert_eq!(greeting_name("localhost.localdomain"), None);
        assert_eq!(greeting_name("myhost"), None);
    }

    use super::*;

    /// A lookup that counts its runs and answers when `release` is notified.
    fn counted(
        runs: &Arc<std::sync::atomic::AtomicUsize>,
        release: &Arc<tokio::sync::Notify>,
    ) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = u32> + Send>> {
        let (runs, release) = (runs.clone(), release.clone());
        move || {
            Box::pin(async move {
                let n = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                release.notified().await;
                n as u32
            })
        }
    }

    #[tokio::test]
    async fn a_name_under_lookup_is_looked_up_once() {
        let flights = Arc::new(InFlight::<u32>::new());
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let rt = tokio::runtime::Handle::current();
        // The dispatcher asks and stops waiting; the lookup goes on.
        let gave_up = tokio::time::timeout(
            Duration::from_millis(20),
            flights.get(&rt, "example.com", counted(&runs, &release), || 0),
        )
        .await;
        assert!(gave_up.is_err());
        // A worker asks for the same name meanwhile (twice): it joins that lookup.
        let first = tokio::spawn({
            let (f, rt, l) = (flights.clone(), rt.clone(), counted(&runs, &release));
            async move { f.get(&rt, "example.com", l, || 0).await }
        });
        let second = tokio::spawn({
            let (f, rt, l) = (flights.clone(), rt.clone(), counted(&runs, &release));
            async move { f.get(&rt, "example.com", l, || 0).await }
        });
        // Another name is a lookup of its own.
        let other = tokio::spawn({
            let (f, rt, l) = (flights.clone(), rt.clone(), counted(&runs, &release));
            async move { f.get(&rt, "example.org", l, || 0).await }
        });
        while runs.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        release.notify_waiters();
        let answers = (first.await.unwrap(), second.await.unwrap(), other.await.unwrap());
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2, "{answers:?}");
        assert_eq!(answers.0, answers.1, "both askers got the one lookup's answer");
        assert_ne!(answers.0, answers.2);
        // Once answered, the next ask is a new lookup (hickory's cache answers it).
        release.notify_one();
        flights.get(&rt, "example.com", counted(&runs, &release), || 0).await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn a_lookup_cut_off_by_shutdown_is_a_temporary_failure() {
        let flights = Arc::new(InFlight::<MxSet>::new());
        let lookups = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let handle = lookups.handle().clone();
        drop(lookups);
        let asker = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let lookup = || async { Ok(Arc::from([])) };
        let answer = asker.block_on(flights.get(&handle, "example.com", lookup, stopped));
        assert!(matches!(answer, Err(DnsError::Temporary(_))), "{answer:?}");
    }

    #[test]
    fn address_literals() {
        assert_eq!(address_literal("[127.0.0.1]"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(address_literal("[IPv6:::1]"), Some("::1".parse().unwrap()));
        assert_eq!(address_literal("example.com"), None);
    }
}
