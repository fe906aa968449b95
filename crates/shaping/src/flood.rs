//! Flood rules (`flood_responses`, `../shared/spec/database.md`): a remote
//! reply that matches a rule pauses the (local IP, domain) that got it
//! and/or lowers its limits for a while, once the rule's threshold of
//! matching replies within its period is reached.

use crate::capacity::DomainScope;
use crate::pattern::{BadPattern, Pattern};
use crate::rate::Rate;
use std::net::IpAddr;
use std::time::Duration;

/// Regexes come from database rows: their compiled size is bounded (the
/// `regex` crate matches in linear time, so matching is bounded too).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A rule's matcher: one of the spec's pattern types.
#[derive(Debug, Clone)]
pub enum Matcher {
    Pattern(Pattern),
    Regex(regex::Regex),
}

impl Matcher {
    /// `kind` is `exact`, `substr`, `fnmatch` or `regex`.
    pub fn new(kind: &str, pattern: &str) -> Result<Matcher, String> {
        if kind.trim().eq_ignore_ascii_case("regex") {
            if pattern.chars().count() > crate::pattern::MAX_LEN {
                return Err(BadPattern::TooLong.to_string());
            }
            return regex::RegexBuilder::new(pattern)
                .case_insensitive(true)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map(Matcher::Regex)
                .map_err(|e| format!("regex: {e}"));
        }
        Pattern::new(kind, pattern)
            .map(Matcher::Pattern)
            .map_err(|e| e.to_string())
    }

    pub fn matches(&self, text: &str) -> bool {
        match self {
            Matcher::Pattern(p) => p.matches(text),
            Matcher::Regex(r) => r.is_match(text),
        }
    }
}

/// The limits a rule lowers to while it is in effect; `None` leaves a limit as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reduced {
    pub message_rate: Option<Rate>,
    pub connection_rate: Option<Rate>,
    pub connections: Option<u64>,
    pub ip_message_rate: Option<Rate>,
    pub ip_connection_rate: Option<Rate>,
    pub ip_connections: Option<u64>,
    pub messages_per_connection: Option<u64>,
    pub idle: Option<Duration>,
    pub queue_size: Option<u64>,
}

/// One flood rule.
#[derive(Debug, Clone)]
pub struct FloodRule {
    /// The row's id (negative for the built-in rules).
    pub id: i64,
    /// Shown in logs, the API and the console.
    pub name: String,
    pub matcher: Matcher,
    pub domain: DomainScope,
    /// `None` = any local IP.
    pub localip: Option<IpAddr>,
    /// Act once this many replies matched within the period; `None` = on the first.
    pub threshold: Option<Rate>,
    pub pause: Option<Duration>,
    pub reduce: Option<Duration>,
    pub reduced: Reduced,
}

impl FloodRule {
    /// Whether the rule applies to mail from `localip` to `domain` (MX hosts `mx_hosts`).
    pub fn applies(&self, localip: Option<IpAddr>, domain: &str, mx_hosts: &[String]) -> bool {
        if self.localip.is_some() && self.localip != localip {
            return false;
        }
        match &self.domain {
            DomainScope::Any => true,
            DomainScope::Domain(d) => d.eq_ignore_ascii_case(domain.trim_end_matches('.')),
            DomainScope::Mx(p) => mx_hosts.iter().any(|h| p.matches(h)),
        }
    }
}

/// Every rule, in the order they are tried: the table's rows (by id), then
/// the built-in set. The first rule that applies and matches decides.
#[derive(Debug, Clone, Default)]
pub struct FloodRules {
    rules: Vec<FloodRule>,
}

impl FloodRules {
    pub fn new(mut table: Vec<FloodRule>, defaults: Vec<FloodRule>) -> FloodRules {
        table.sort_by_key(|r| r.id);
        table.extend(defaults);
        FloodRules { rules: table }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule a reply (`CODE ENHANCED TEXT` on one line) matches, if any.
    pub fn matching(
        &self,
        localip: Option<IpAddr>,
        domain: &str,
        mx_hosts: &[String],
        reply: &str,
    ) -> Option<&FloodRule> {
        self.rules
            .iter()
            .find(|r| r.applies(localip, domain, mx_hosts) && r.matcher.matches(reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: i64, kind: &str, pattern: &str, domain: &str) -> FloodRule {
        FloodRule {
            id,
            name: format!("rule {id}"),
            matcher: Matcher::new(kind, pattern).unwrap(),
            domain: DomainScope::parse(domain).unwrap(),
            localip: None,
            threshold: None,
            pause: Some(Duration::from_secs(60)),
            reduce: None,
            reduced: Reduced::default(),
        }
    }

    #[test]
    fn rules_match_by_type_scope_and_order() {
        let google = vec!["gmail-smtp-in.l.google.com".to_string()];
        let rules = FloodRules::new(
            vec![
                rule(2, "regex", r"^421 4\.7\.(0|28) .*rate limited", "mx:*.google.com"),
                rule(1, "substr", "too many connections", ""),
            ],
            vec![rule(-1, "fnmatch", "4?? *", "")],
        );
        let reply = "421 4.7.28 Our system has detected an unusual rate ... temporarily Rate Limited";
        assert_eq!(rules.matching(None, "company.example", &google, reply).unwrap().id, 2);
        // Out of the rule's scope: the next rule that applies.
        assert_eq!(rules.matching(None, "other.example", &[], reply).unwrap().id, -1);
        assert_eq!(
            rules
                .matching(None, "x.example", &[], "421 4.7.0 Too many connections, slow down")
                .unwrap()
                .id,
            1,
            "table rows come first, by id"
        );
        assert!(rules
            .matching(None, "x.example", &[], "550 5.1.1 no such user")
            .is_none());
    }

    #[test]
    fn a_rule_for_one_local_ip_leaves_the_others() {
        let mut r = rule(1, "exact", "421 4.7.0 slow down", "");
        r.localip = Some("192.0.2.1".parse().unwrap());
        let rules = FloodRules::new(vec![r], vec![]);
        assert!(rules
            .matching(
                Some("192.0.2.1".parse().unwrap()),
                "a.example",
                &[],
                "421 4.7.0 Slow Down"
            )
            .is_some());
        assert!(rules
            .matching(
                Some("192.0.2.2".parse().unwrap()),
                "a.example",
                &[],
                "421 4.7.0 slow down"
            )
            .is_none());
    }

    #[test]
    fn hostile_patterns_are_refused_or_bounded() {
        assert!(Matcher::new("regex", "(unclosed").is_err());
        assert!(Matcher::new("regex", &"a".repeat(2000)).is_err());
        // A pattern whose compiled form is huge is refused, not built.
        assert!(Matcher::new("regex", r"(\w{1000}){1000}").is_err());
        assert!(Matcher::new("glob", "x").is_err());
    }
}
