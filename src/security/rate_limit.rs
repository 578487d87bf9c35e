//! Token buckets that limit join attempts per peer address.
//!
//! Every new QUIC connection takes one token from the bucket of its peer's
//! IPv4 address or IPv6 /64 prefix. A bucket holds at most `burst` tokens
//! and regains `per_second` tokens a second. The clock is an argument, so
//! the rules are tested without waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets tracked at most. Beyond it, full buckets are dropped first,
/// because dropping one changes nothing for its address.
const MAX_TRACKED: usize = 65_536;

/// Join attempts allowed at once from one address.
pub const DEFAULT_JOIN_BURST: u32 = 30;
/// Join attempts an address regains per second.
pub const DEFAULT_JOIN_RATE: f64 = 2.0;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Per-address join limits.
#[derive(Debug)]
pub struct JoinLimiter {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl JoinLimiter {
    pub fn new(burst: u32, per_second: f64) -> JoinLimiter {
        JoinLimiter {
            burst: f64::from(burst.max(1)),
            per_second: per_second.max(0.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `peer`; returns false if its bucket is empty.
    pub fn try_acquire(&self, peer: IpAddr, now: Instant) -> bool {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_TRACKED {
            self.drop_full(&mut buckets, now);
        }
        let bucket = buckets.entry(bucket_key(peer)).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        self.refill(bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.updated = now;
    }

    fn drop_full(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        buckets.retain(|_, bucket| {
            self.refill(bucket, now);
            bucket.tokens < self.burst
        });
        if buckets.len() >= MAX_TRACKED {
            // NOTE: under a flood from more than MAX_TRACKED addresses the
            // limits start over, trading strictness for bounded memory.
            buckets.clear();
        }
    }
}

/// IPv6 peers share a bucket per /64, the usual size of one site's prefix.
fn bucket_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_refill() {
        let limiter = JoinLimiter::new(3, 1.0);
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let start = Instant::now();
        for attempt in 0..3 {
            assert!(
                limiter.try_acquire(peer, start),
                "attempt {attempt} within the burst"
            );
        }
        assert!(
            !limiter.try_acquire(peer, start),
            "the fourth attempt at once"
        );
        assert!(!limiter.try_acquire(peer, start + Duration::from_millis(500)));
        assert!(limiter.try_acquire(peer, start + Duration::from_millis(1600)));
    }

    #[test]
    fn addresses_have_separate_buckets() {
        let limiter = JoinLimiter::new(1, 0.0);
        let now = Instant::now();
        assert!(limiter.try_acquire("192.0.2.1".parse().unwrap(), now));
        assert!(!limiter.try_acquire("192.0.2.1".parse().unwrap(), now));
        assert!(limiter.try_acquire("192.0.2.2".parse().unwrap(), now));
    }

    #[test]
    fn ipv6_peers_share_a_slash_64() {
        let limiter = JoinLimiter::new(1, 0.0);
        let now = Instant::now();
        assert!(limiter.try_acquire("2001:db8::1".parse().unwrap(), now));
        assert!(!limiter.try_acquire("2001:db8::ffff:1".parse().unwrap(), now));
        assert!(limiter.try_acquire("2001:db8:0:1::1".parse().unwrap(), now));
    }
}
