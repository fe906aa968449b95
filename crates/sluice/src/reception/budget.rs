//! The memory that message bodies in reception may take together
//! (`reception-memory`): SMTP DATA/BDAT bodies being read and stored, and
//! HTTP request bodies. Past it, new transfers are refused with a temporary
//! error (`452 4.3.1`, HTTP 503) instead of the machine running out of memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The shared budget.
#[derive(Debug)]
pub struct Budget {
    used: AtomicU64,
    limit: u64,
}

impl Budget {
    /// A budget of `limit` bytes (0 = none: a receiver cannot hold anything).
    pub fn new(limit: u64) -> Arc<Budget> {
        Arc::new(Budget {
            used: AtomicU64::new(0),
            limit,
        })
    }

    /// Nothing more fits: new transfers are refused.
    pub fn full(&self) -> bool {
        self.used.load(Ordering::Relaxed) >= self.limit
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty charge, grown with [`Charge::resize`] as a body grows.
    pub fn charge(self: &Arc<Self>) -> Charge {
        Charge {
            budget: self.clone(),
            bytes: 0,
        }
    }

    fn take(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(n).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn give(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Bytes one transfer holds of the budget; given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Charge {
    /// Holds `bytes` from now on; false (and unchanged) when growing to it
    /// would pass the limit.
    pub fn resize(&mut self, bytes: u64) -> bool {
        if bytes > self.bytes {
            if !self.budget.take(bytes - self.bytes) {
                return false;
            }
        } else {
            self.budget.give(self.bytes - bytes);
        }
        self.bytes = bytes;
        true
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.give(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_add_up_and_are_given_back() {
        let b = Budget::new(100);
        let mut one = b.charge();
        let mut two = b.charge();
        assert!(one.resize(60));
        assert!(!two.resize(50), "60 + 50 > 100");
        assert_eq!(two.bytes(), 0);
        assert!(two.resize(40));
        assert!(b.full());
        assert!(one.resize(10));
        assert_eq!(b.used(), 50);
        drop(one);
        drop(two);
        assert_eq!(b.used(), 0);
    }
}
