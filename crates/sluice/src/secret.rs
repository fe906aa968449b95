//! Comparing secrets (passwords, tokens) without a timing hint.

/// Compares in constant time for equal lengths: no hint at how much of a
/// secret matched.
pub fn same(given: &[u8], want: &[u8]) -> bool {
    given.len() == want.len() && given.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}
