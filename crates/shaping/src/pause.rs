//! Pauses (`paused`, `spec/database.md`): deliveries on hold by local IP,
//! domain (or `mx:` pattern), remote MX IP and tag, until removed or until
//! they expire. A paused message is not attempted and waiting for a pause
//! is never an attempt.

use crate::capacity::DomainScope;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How soon a pause without an expiry is looked at again (a removed pause
/// takes effect within this, once the policy is reloaded).
pub const RECHECK: Duration = Duration::from_secs(1);

/// One row of `paused`; `None`/`Any` columns match everything.
#[derive(Debug, Clone)]
pub struct Pause {
    pub id: i64,
    pub localip: Option<IpAddr>,
    pub domain: DomainScope,
    /// The remote MX address.
    pub target: Option<IpAddr>,
    pub tag: Option<String>,
    /// When it ends by itself.
    pub until: Option<Instant>,
    pub reason: String,
}

impl Pause {
    /// Whether it holds mail from `localip` to `domain` (MX `mx_hosts`), at
    /// `mx_ip` once known, for a message with `tags`.
    pub fn holds(
        &self,
        localip: Option<IpAddr>,
        domain: &str,
        mx_hosts: &[String],
        mx_ip: Option<IpAddr>,
        tags: &[&str],
        now: Instant,
    ) -> bool {
        if self.until.is_some_and(|u| u <= now) {
            return false;
        }
        if self.localip.is_some() && self.localip != localip {
            return false;
        }
        // A pause for one MX address holds only once the address is known.
        if self.target.is_some() && (mx_ip.is_none() || self.target != mx_ip) {
            return false;
        }
        if let Some(tag) = &self.tag {
            if !tags.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
                return false;
            }
        }
        match &self.domain {
            DomainScope::Any => true,
            DomainScope::Domain(d) => d.eq_ignore_ascii_case(domain.trim_end_matches('.')),
            DomainScope::Mx(p) => mx_hosts.iter().any(|h| p.matches(h)),
        }
    }

    /// When to look again while it holds.
    pub fn recheck(&self, now: Instant) -> Instant {
        match self.until {
            Some(u) => u.min(now + RECHECK).max(now + Duration::from_millis(1)),
            None => now + RECHECK,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pause(domain: &str) -> Pause {
        Pause {
            id: 1,
            localip: None,
            domain: DomainScope::parse(domain).unwrap(),
            target: None,
            tag: None,
            until: None,
            reason: String::new(),
        }
    }

    #[test]
    fn a_pause_holds_what_its_columns_say() {
        let now = Instant::now();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let google = ["alt1.gmail-smtp-in.l.google.com".to_string()];
        assert!(pause("").holds(None, "any.example", &[], None, &[], now));
        assert!(pause("Gmail.com").holds(None, "gmail.com", &[], None, &[], now));
        assert!(!pause("gmail.com").holds(None, "yahoo.com", &[], None, &[], now));
        assert!(pause("mx:*.google.com").holds(None, "company.example", &google, None, &[], now));
        let mut p = pause("");
        p.localip = ip("192.0.2.1");
        assert!(p.holds(ip("192.0.2.1"), "x.example", &[], None, &[], now));
        assert!(!p.holds(ip("192.0.2.2"), "x.example", &[], None, &[], now));
        let mut p = pause("");
        p.target = ip("198.51.100.7");
        assert!(
            !p.holds(None, "x.example", &[], None, &[], now),
            "not before the address is known"
        );
        assert!(p.holds(None, "x.example", &[], ip("198.51.100.7"), &[], now));
        let mut p = pause("hotmail.com");
        p.tag = Some("Campaign1".into());
        assert!(p.holds(None, "hotmail.com", &[], None, &["campaign1"], now));
        assert!(!p.holds(None, "hotmail.com", &[], None, &["other"], now));
        let mut p = pause("");
        p.until = Some(now + Duration::from_secs(10));
        assert!(p.holds(None, "x.example", &[], None, &[], now));
        assert!(!p.holds(None, "x.example", &[], None, &[], now + Duration::from_secs(10)));
        assert_eq!(p.recheck(now), now + RECHECK);
        assert_eq!(
            p.recheck(now + Duration::from_millis(9_500)),
            now + Duration::from_secs(10)
        );
    }
}
