//! The settings database at run time (`spec/database.md`): opened and read
//! at start, read again every `database-ttl`; each snapshot goes to the
//! delivery engine's shaper. A row that makes no sense is logged once
//! (table, id, why) and skipped.

pub mod edit;

use crate::config::{Config, ConfigError};
use sluice_policy::{Policy, Problem, Store, Suppressions};
use sluice_shaping::capacity::Defaults;
use sluice_shaping::{FloodRules, Shaper};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The policy in force, shared by delivery and replaced by each reload.
#[derive(Clone)]
pub struct Live {
    pub shaper: Arc<Mutex<Shaper>>,
    pub suppressions: Arc<RwLock<Arc<Suppressions>>>,
    /// The `dns` table, for the resolver.
    pub dns: crate::deliver::mx::Overrides,
    /// The `locals` table, for reception.
    pub locals: Arc<RwLock<Arc<sluice_policy::Locals>>>,
    /// The `mtanames` table: the EHLO name per local IP.
    pub mtanames: Arc<RwLock<Arc<sluice_policy::MtaNames>>>,
    /// The `delegates` table: another local IP for a (local IP, domain).
    pub delegates: Arc<RwLock<Arc<sluice_policy::Delegates>>>,
    /// The `pools`/`poolips` tables: the local IPs a message's `pool` names.
    pub pools: Arc<RwLock<Arc<sluice_policy::Pools>>>,
    /// The `dkim_keys` the `dkim_patterns` pick by From address.
    pub dkim: Arc<RwLock<Arc<sluice_policy::DkimKeys>>>,
    /// The `tokens` table: Bearer tokens the HTTP API accepts besides `www-tokens`.
    pub tokens: Arc<RwLock<Arc<Vec<String>>>>,
    /// Problems already logged (each is logged once).
    reported: Arc<Mutex<HashSet<String>>>,
    /// The store's change marker when the policy in force was read.
    version: Arc<AtomicI64>,
    /// The built-in flood rules (`flood-defaults`), after the table's.
    flood_defaults: Arc<Vec<sluice_shaping::FloodRule>>,
}

impl Live {
    pub fn new(c: &Config, policy: &Policy, version: i64) -> Live {
        let flood_defaults = if c.settings.flood_defaults {
            // The file is part of the program and tested; a failure here is a bug, reported, not fatal.
            sluice_policy::default_flood_rules().unwrap_or_else(|e| {
                tracing::error!(error = %e, "the built-in flood rules cannot be read; only the table's apply");
                Vec::new()
            })
        } else {
            Vec::new()
        };
        let mut shaper = Shaper::new(policy.capacity(), defaults(c));
        shaper.set_flood_rules(FloodRules::new(policy.flood.clone(), flood_defaults.clone()));
        shaper.set_pauses(pauses(policy));
        let live = Live {
            shaper: Arc::new(Mutex::new(shaper)),
            suppressions: Arc::new(RwLock::new(Arc::new(policy.suppressions.clone()))),
            dns: Arc::new(RwLock::new(Arc::new(policy.dns.clone()))),
            locals: Arc::new(RwLock::new(Arc::new(policy.locals.clone()))),
            mtanames: Arc::new(RwLock::new(Arc::new(policy.mtanames.clone()))),
            delegates: Arc::new(RwLock::new(Arc::new(policy.delegates.clone()))),
            pools: Arc::new(RwLock::new(Arc::new(policy.pools.clone()))),
            dkim: Arc::new(RwLock::new(Arc::new(policy.dkim.clone()))),
            tokens: Arc::new(RwLock::new(Arc::new(policy.tokens.clone()))),
            reported: Arc::new(Mutex::new(HashSet::new())),
            flood_defaults: Arc::new(flood_defaults),
            version: Arc::new(AtomicI64::new(version)),
        };
        report(&policy.problems, &mut sluice_queue::lock(&live.reported));
        live
    }

    /// Puts a new snapshot in force; counts and pacing already run are kept.
    fn update(&self, policy: Policy) {
        // Built before the lock: delivery asks the shaper on every message.
        let (capacity, pauses) = (policy.capacity(), pauses(&policy));
        let flood = FloodRules::new(policy.flood.clone(), self.flood_defaults.to_vec());
        let mut s = sluice_queue::lock(&self.shaper);
        let old = s.reload(capacity);
        s.set_flood_rules(flood);
        s.set_pauses(pauses);
        drop(s);
        drop(old);
        *self.suppressions.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy.suppressions);
        *self.dns.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy.dns);
        *self.locals.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy.locals);
        *self.mtanames.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy.mtanames);
        *self.delegates.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy.delegates);
        *self.pools.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy.pools);
        *self.dkim.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy.dkim);
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy.tokens);
    }

    /// Reads `store` and puts what it holds in force (after a change through the API).
    pub fn reload(&self, store: &mut dyn Store) -> Result<(), sluice_policy::DbError> {
        // The marker first: a change made while reading is read again at the next poll.
        let version = store.version()?;
        let policy = sluice_policy::load(store)?;
        self.version.store(version, Ordering::Relaxed);
        report(&policy.problems, &mut sluice_queue::lock(&self.reported));
        self.update(policy);
        Ok(())
    }

    /// The local IP mail from `local` to `domain` (MX hosts `mx_hosts`, when
    /// known) goes from: a `delegates` row, else `local`.
    pub fn delegate(
        &self,
        local: Option<std::net::IpAddr>,
        domain: &str,
        mx_hosts: &[String],
    ) -> Option<std::net::IpAddr> {
        let delegates = self.delegates.read().unwrap_or_else(|e| e.into_inner());
        delegates.delegate(local, domain, mx_hosts).or(local)
    }

    /// Whether a `delegates` row has an `mx:` scope (then the MX hosts decide too).
    pub fn mx_delegates(&self) -> bool {
        self.delegates.read().unwrap_or_else(|e| e.into_inner()).has_mx()
    }

    /// The local IPs of pool `name`: None when the database defines no
    /// pools at all (a `pool` is then only kept), Some(None) when it has no
    /// such pool.
    pub fn pool(&self, name: &str) -> Option<Option<Vec<std::net::IpAddr>>> {
        let pools = self.pools.read().unwrap_or_else(|e| e.into_inner());
        (!pools.is_empty()).then(|| pools.get(name).cloned())
    }

    /// The EHLO name for connections from `local`, when the `mtanames` table has one.
    pub fn mtaname(&self, local: Option<std::net::IpAddr>) -> Option<String> {
        let names = self.mtanames.read().unwrap_or_else(|e| e.into_inner());
        local.and_then(|ip| names.get(&ip).cloned())
    }

    /// The `tokens` table's tokens in force.
    pub fn tokens(&self) -> Arc<Vec<String>> {
        self.tokens.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The DKIM keys of the database in force (a cheap clone of the snapshot).
    pub fn dkim(&self) -> Arc<sluice_policy::DkimKeys> {
        self.dkim.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The suppressions in force (a cheap clone of the snapshot).
    pub fn suppressions(&self) -> Arc<Suppressions> {
        self.suppressions.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Opens (creating and migrating) the settings database and reads it; the
/// change marker with it.
pub fn open(c: &Config) -> Result<(Box<dyn Store>, Policy, i64), ConfigError> {
    let s = &c.settings;
    let key = if s.database_address.is_none() && s.database.is_some() {
        "database"
    } else {
        "database-address"
    };
    let fail = |e: sluice_policy::DbError| c.error(key, e.to_string());
    let mut store = sluice_policy::open(s.database(), &s.data_dir()).map_err(fail)?;
    let version = store.version().map_err(fail)?;
    let policy = sluice_policy::load(store.as_mut()).map_err(fail)?;
    Ok((store, policy, version))
}

/// The pauses of a snapshot on the monotonic clock.
fn pauses(policy: &Policy) -> Vec<sluice_shaping::Pause> {
    let (now, now_ms) = (std::time::Instant::now(), sluice_queue::now_ms());
    policy.pauses.iter().map(|p| p.at(now, now_ms)).collect()
}

/// What applies where no capacity row decides.
pub fn defaults(c: &Config) -> Defaults {
    Defaults {
        connections: c.settings.delivery_domain_connections,
        messages_per_connection: c.settings.delivery_connection_messages,
        idle: crate::deliver::destination::IDLE,
        queue_size: crate::deliver::dispatch::Limits::default().per_destination as u64,
    }
}

/// Logs the problems of a snapshot that were not logged before.
pub fn report(problems: &[Problem], seen: &mut HashSet<String>) {
    for p in problems {
        let line = p.to_string();
        if seen.insert(line.clone()) {
            tracing::warn!(table = p.table, id = p.id, why = %p.why, "settings database: row skipped");
        }
    }
}

/// How often the shaper forgets the destinations that constrain nothing
/// any more, so its state is bounded by the destinations in use, not by
/// every domain ever mailed.
const SWEEP: Duration = Duration::from_secs(10);

/// How often the change marker is read: a change made through another
/// instance sharing the database is in force here within this (plus the
/// time to read the tables).
pub const POLL: Duration = Duration::from_secs(1);

/// Reads the database again every `ttl`, and as soon as its change marker
/// moves (polled every [`POLL`]), and hands the result to the shaper, until
/// `stop` is set; sweeps the shaper every [`SWEEP`]. A failed read keeps
/// the policy in force.
/// Set when another instance said the settings changed (`{"reload": true}`
/// on the cluster exchange): the reload thread reads them at once.
static RELOAD_WANTED: AtomicBool = AtomicBool::new(false);

/// Asks the reload thread to read the settings database now.
pub fn want_reload() {
    RELOAD_WANTED.store(true, Ordering::Relaxed);
}

pub fn reload_every(
    ttl: Duration,
    store: Arc<Mutex<Box<dyn Store>>>,
    live: Live,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("policy-reload".into()).spawn(move || {
        let started = std::time::Instant::now();
        let (mut next, mut sweep, mut poll) = (started + ttl, started + SWEEP, started + POLL);
        while !*stop.borrow() {
            std::thread::sleep(Duration::from_millis(200).min(ttl));
            let now = std::time::Instant::now();
            if now >= sweep {
                sluice_queue::lock(&live.shaper).sweep(now);
                sweep = now + SWEEP;
            }
            let mut store = sluice_queue::lock(&store);
            if now >= poll && now < next {
                poll = now + POLL;
                match store.version() {
                    Ok(v) if v != live.version.load(Ordering::Relaxed) => next = now,
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "cannot read the settings database's change marker"),
                }
            }
            if RELOAD_WANTED.swap(false, Ordering::Relaxed) {
                next = now;
            }
            if now < next {
                continue;
            }
            let started = std::time::Instant::now();
            next = started + ttl;
            match live.reload(store.as_mut()) {
                Ok(()) => tracing::debug!(
                    store = %store.describe(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "settings database reloaded"
                ),
                Err(e) => tracing::error!(error = %e, "cannot read the settings database; the policy in force stays"),
            }
        }
    })
}

/// `sluice database check`: every row read; the skipped ones listed.
pub fn check(c: &Config) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let (store, policy, _) = open(c)?;
    println!(
        "{}: {} capacity rows, {} flood rules, {} suppressions, {} pauses, {} dkim keys usable (read in {} ms)",
        store.describe(),
        policy.capacity.len(),
        policy.flood.len(),
        policy.suppressions.len(),
        policy.pauses.len(),
        policy.dkim.keys().len(),
        started.elapsed().as_millis()
    );
    if c.settings.flood_defaults {
        let built_in = sluice_policy::default_flood_rules().map_err(|e| anyhow::anyhow!(e))?;
        println!("{} built-in flood rules (flood-defaults: true)", built_in.len());
    }
    for p in &policy.problems {
        println!("{p}");
    }
    anyhow::ensure!(policy.problems.is_empty(), "{} rows skipped", policy.problems.len());
    Ok(())
}
