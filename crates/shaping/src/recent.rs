//! What happened in the last minute, counted per second: the "current
//! rate" the API and console show next to a configured one. A ring of 60
//! counts, so its size does not depend on the rate.

use std::time::Instant;

const SECONDS: u64 = 60;

/// Events of the last 60 s (the current second included).
#[derive(Debug, Clone)]
pub struct Recent {
    origin: Instant,
    /// Seconds since `origin` of the newest count.
    newest: u64,
    counts: [u32; SECONDS as usize],
}

impl Recent {
    pub fn new(now: Instant) -> Recent {
        Recent {
            origin: now,
            newest: 0,
            counts: [0; SECONDS as usize],
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    /// Counts one event at `now`.
    pub fn record(&mut self, now: Instant) {
        let s = self.second(now);
        if s > self.newest {
            // The seconds in between had nothing (at most a whole ring to clear).
            for gone in (self.newest + 1)..=s.min(self.newest + SECONDS) {
                self.counts[(gone % SECONDS) as usize] = 0;
            }
            self.newest = s;
        }
        // An event older than the newest second still counts in its own (clocks only move forward here).
        let slot = &mut self.counts[(s.min(self.newest) % SECONDS) as usize];
        *slot = slot.saturating_add(1);
    }

    /// Events in the 60 s up to `now`.
    pub fn last_minute(&self, now: Instant) -> u64 {
        let s = self.second(now);
        if s >= self.newest + SECONDS {
            return 0;
        }
        let first = s.saturating_sub(SECONDS - 1);
        (first..=self.newest)
            .map(|i| u64::from(self.counts[(i % SECONDS) as usize]))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_the_last_sixty_seconds_only() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut r = Recent::new(t0);
        for i in 0..120 {
            r.record(at(i as f64 * 0.5)); // two a second for 60 s
        }
        assert_eq!(r.last_minute(at(59.9)), 120);
        assert_eq!(r.last_minute(at(60.0)), 118, "second 0 has left the window");
        assert_eq!(r.last_minute(at(89.0)), 60);
        assert_eq!(r.last_minute(at(118.9)), 2);
        assert_eq!(r.last_minute(at(119.0)), 0);
        assert_eq!(r.last_minute(at(500.0)), 0);
        // After a long silence the ring starts clean.
        r.record(at(1000.0));
        assert_eq!(r.last_minute(at(1000.5)), 1);
    }
}
