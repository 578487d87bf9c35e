//! Lock stripes: a fixed set of mutexes that serialize the updates of one
//! key without a lock per key.

use std::sync::{Mutex, MutexGuard};

/// Number of stripes, a power of two. Two keys share a stripe now and then,
/// which only makes one update wait for the other.
const STRIPES: usize = 64;

pub struct LockStripes {
    stripes: Vec<Mutex<()>>,
}

impl LockStripes {
    pub fn new() -> LockStripes {
        LockStripes {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Locks the stripes of every key, in stripe order so that two callers
    /// never wait for each other in a cycle. The locks are held until the
    /// returned guards drop.
    pub fn lock_all(&self, keys: &[u64]) -> Vec<MutexGuard<'_, ()>> {
        let mut indices: Vec<usize> = keys.iter().map(|&key| stripe_of(key)).collect();
        indices.sort_unstable();
        indices.dedup();
        indices
            .into_iter()
            .map(|index| {
                self.stripes[index]
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
            })
            .collect()
    }
}

/// Spreads keys whose low bits repeat, such as snowflake ids, over the
/// stripes by a multiplicative hash.
fn stripe_of(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - STRIPES.trailing_zeros())) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_stripe_locked_once() {
        let stripes = LockStripes::new();
        let guards = stripes.lock_all(&[7, 7, 7]);
        assert_eq!(guards.len(), 1);
    }

    #[test]
    fn consecutive_keys_spread_over_stripes() {
        let used: std::collections::HashSet<usize> = (0..1000u64).map(stripe_of).collect();
        assert!(used.len() > STRIPES / 2, "{} stripes used", used.len());
        assert!(used.iter().all(|&index| index < STRIPES));
    }
}
