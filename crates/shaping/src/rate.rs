//! Rates (`120/min`) and pacing them.

use std::time::{Duration, Instant};

/// The longest period a rate may have.
pub const MAX_PERIOD: Duration = Duration::from_secs(86_400);

/// A number of events per period: `N/s`, `N/min`, `N/h`, `N/day`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub period: Duration,
}

/// Why a rate does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a rate such as 120/min (N/s, N/min, N/h or N/day, N at least 1), got `{0}`")]
pub struct BadRate(pub String);

impl std::str::FromStr for Rate {
    type Err = BadRate;
    fn from_str(s: &str) -> Result<Rate, BadRate> {
        let bad = || BadRate(s.chars().take(64).collect());
        let (count, period) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u64 = count.trim().parse().map_err(|_| bad())?;
        let period = match period.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "day" | "d" => MAX_PERIOD,
            _ => return Err(bad()),
        };
        // A billion a second is beyond any link; it also keeps the spacing above a nanosecond.
        if count == 0 || count > 1_000_000_000 {
            return Err(bad());
        }
        Ok(Rate { count, period })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "h",
            _ => "day",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl Rate {
    /// The even spacing between two events.
    pub fn spacing(&self) -> Duration {
        Duration::from_nanos((self.period.as_nanos() / u128::from(self.count.max(1))) as u64)
    }

    /// How many events may go at once: half a second's share, at least one.
    /// The spec allows up to a second's share; half keeps every window of a
    /// second within the rate plus one even when arrivals jitter, and is
    /// still a burst of thousands for rates the timer could not pace singly.
    pub fn burst(&self) -> u64 {
        (self.count.saturating_mul(500) / self.period.as_millis().max(1) as u64).max(1)
    }
}

/// Paces events to a [`Rate`] (a generic cell rate algorithm): events are
/// spaced evenly, with a burst of at most half a second's share, so
/// `120/min` is one every half second, never 120 at the start of the minute.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: Rate,
    spacing: Duration,
    /// How far ahead of `now` the schedule may run: (burst - 1) spacings.
    tolerance: Duration,
    /// When the next event is due if the schedule is kept (the "theoretical
    /// arrival time"); `None` before the first event.
    next: Option<Instant>,
}

impl Pacer {
    pub fn new(rate: Rate) -> Pacer {
        let spacing = rate.spacing();
        Pacer {
            rate,
            spacing,
            tolerance: spacing * (rate.burst() - 1).min(u32::MAX as u64) as u32,
            next: None,
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// `None` when an event may go at `now`, else when it may.
    pub fn wait(&self, now: Instant) -> Option<Instant> {
        let next = self.next?;
        let earliest = next.checked_sub(self.tolerance).unwrap_or(next);
        (earliest > now).then_some(earliest)
    }

    /// Counts an event at `now` (whether or not it had to wait).
    pub fn take(&mut self, now: Instant) {
        let due = match self.next {
            Some(next) if next > now => next,
            _ => now,
        };
        self.next = Some(due + self.spacing);
    }

    /// Changes the rate, keeping the schedule already run (a flood rule
    /// reducing it, or a reload).
    pub fn set_rate(&mut self, rate: Rate) {
        if rate != self.rate {
            let next = self.next;
            *self = Pacer::new(rate);
            self.next = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        let r: Rate = "120/min".parse().unwrap();
        assert_eq!((r.count, r.period), (120, Duration::from_secs(60)));
        assert_eq!(r.to_string(), "120/min");
        assert_eq!("10000/day".parse::<Rate>().unwrap().period, MAX_PERIOD);
        assert_eq!(
            " 5 / H ".parse::<Rate>().unwrap(),
            Rate {
                count: 5,
                period: Duration::from_secs(3600)
            }
        );
        for bad in ["", "120", "0/min", "-1/min", "1/week", "x/s", "1/", "99999999999/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn spacing_and_burst() {
        let r: Rate = "120/min".parse().unwrap();
        assert_eq!(r.spacing(), Duration::from_millis(500));
        assert_eq!(r.burst(), 1);
        let r: Rate = "1000/day".parse().unwrap();
        assert_eq!(r.spacing(), Duration::from_millis(86_400));
        assert_eq!(r.burst(), 1);
        assert_eq!("5000/s".parse::<Rate>().unwrap().burst(), 2500);
        assert_eq!("10/s".parse::<Rate>().unwrap().burst(), 5);
    }

    /// Runs a pacer with events always waiting for `span`: the times they go.
    fn run(rate: &str, span: Duration) -> Vec<Duration> {
        let start = Instant::now();
        let mut p = Pacer::new(rate.parse().unwrap());
        let mut now = start;
        let mut out = Vec::new();
        while now < start + span {
            match p.wait(now) {
                None => {
                    p.take(now);
                    out.push(now - start);
                }
                Some(at) => now = at,
            }
        }
        out
    }

    #[test]
    fn a_rate_is_paced_evenly_never_bunched_at_the_start_of_its_period() {
        let sent = run("120/min", Duration::from_secs(30));
        // 2/s over 30 s, evenly: every window of a second holds at most 2.
        assert_eq!(sent.len(), 60);
        for (i, t) in sent.iter().enumerate() {
            let window = sent[i..].iter().filter(|u| **u < *t + Duration::from_secs(1)).count();
            assert!(window <= 2, "{window} within a second from {t:?}");
        }
        // A fast rate still goes in bursts the timer can keep up with.
        let sent = run("5000/s", Duration::from_millis(10));
        assert!(sent.len() >= 2500, "{}", sent.len());
        let sent = run("60/h", Duration::from_secs(3600));
        assert_eq!(sent.len(), 60);
        assert!(sent.windows(2).all(|w| w[1] - w[0] == Duration::from_secs(60)));
    }

    #[test]
    fn idle_time_does_not_save_up_a_burst() {
        let start = Instant::now();
        let mut p = Pacer::new("60/min".parse().unwrap());
        p.take(start);
        // An hour of nothing, then a flood: one goes, the next a second later.
        let later = start + Duration::from_secs(3600);
        assert_eq!(p.wait(later), None);
        p.take(later);
        assert_eq!(p.wait(later), Some(later + Duration::from_secs(1)));
    }
}
