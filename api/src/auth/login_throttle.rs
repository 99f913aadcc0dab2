//! Failed logins per (username tried, source address), in memory, with growing delays.
//!
//! The first `free` failures of a key cost nothing; each one after that makes the key wait
//! 1 s, 2 s, 4 s … up to `max_delay`. A key quiet for `forget_after` starts over, and a good
//! login clears it. Keyed by the pair, a flood against `admin` from one address never delays
//! `admin` logging in from another, and an unknown username is throttled exactly like a known
//! one (nothing to enumerate).
//!
//! An attempt is counted when it starts, before the password is hashed: parallel attempts
//! cannot all pass the check before the first failure is recorded, and a throttled key is
//! refused without any hashing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bound on tracked keys, so a flood of names or sources cannot grow memory without end.
const MAX_TRACKED: usize = 100_000;
/// Usernames are keyed by at most this many characters.
const MAX_KEY_NAME: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

#[derive(Debug)]
pub struct LoginThrottle {
    free: u32,
    max_delay: Duration,
    forget_after: Duration,
    keys: Mutex<HashMap<(String, Option<IpAddr>), Entry>>,
}

fn key(username: &str, ip: Option<IpAddr>) -> (String, Option<IpAddr>) {
    (username.chars().take(MAX_KEY_NAME).collect(), ip)
}

impl LoginThrottle {
    pub fn new(free: u32, max_delay: Duration, forget_after: Duration) -> Self {
        LoginThrottle {
            free,
            max_delay,
            forget_after,
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn delay(&self, failures: u32) -> Duration {
        let over = failures.saturating_sub(self.free);
        let secs = 1u64.checked_shl(over.min(40)).unwrap_or(u64::MAX);
        Duration::from_secs(secs).min(self.max_delay)
    }

    /// Starts an attempt: `Err(seconds to wait)` while the key is throttled; otherwise the
    /// attempt is counted as a failure until [`LoginThrottle::succeeded`] clears it.
    pub fn begin(&self, username: &str, ip: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= MAX_TRACKED {
            let forget = self.forget_after;
            keys.retain(|_, e| now < e.last + forget);
            if keys.len() >= MAX_TRACKED {
                // Still full: keep only keys that are being delayed right now.
                keys.retain(|_, e| e.blocked_until.is_some_and(|t| now < t));
            }
        }
        let entry = keys.entry(key(username, ip)).or_insert(Entry {
            failures: 0,
            last: now,
            blocked_until: None,
        });
        if now >= entry.last + self.forget_after {
            *entry = Entry {
                failures: 0,
                last: now,
                blocked_until: None,
            };
        }
        if let Some(until) = entry.blocked_until
            && now < until
        {
            let wait = until - now;
            return Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
        if entry.failures >= self.free {
            entry.blocked_until = Some(now + self.delay(entry.failures));
        }
        Ok(())
    }

    /// A good login: the key's failures are forgotten.
    pub fn succeeded(&self, username: &str, ip: Option<IpAddr>) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.remove(&key(username, ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_per_key_and_are_forgotten() {
        let t = LoginThrottle::new(3, Duration::from_secs(8), Duration::from_secs(600));
        let a: Option<IpAddr> = Some([10, 0, 0, 1].into());
        let b: Option<IpAddr> = Some([10, 0, 0, 2].into());
        let t0 = Instant::now();
        assert!(t.begin("admin", a, t0).is_ok());
        assert!(t.begin("admin", a, t0).is_ok());
        // The third failure makes the next attempt wait 1 s.
        assert!(t.begin("admin", a, t0).is_ok());
        assert_eq!(t.begin("admin", a, t0), Err(1));
        assert!(t.begin("admin", b, t0).is_ok(), "another address is free");
        assert!(t.begin("other", a, t0).is_ok(), "another user is free");
        let t1 = t0 + Duration::from_secs(1);
        assert!(t.begin("admin", a, t1).is_ok());
        assert_eq!(t.begin("admin", a, t1), Err(2));
        let t2 = t1 + Duration::from_secs(2);
        assert!(t.begin("admin", a, t2).is_ok());
        assert_eq!(t.begin("admin", a, t2), Err(4));
        let t3 = t2 + Duration::from_secs(4);
        assert!(t.begin("admin", a, t3).is_ok());
        assert_eq!(t.begin("admin", a, t3), Err(8), "capped");
        let t4 = t3 + Duration::from_secs(8);
        assert!(t.begin("admin", a, t4).is_ok());
        assert_eq!(t.begin("admin", a, t4), Err(8), "still capped");
        // Quiet for the forget period: a fresh start.
        let t5 = t4 + Duration::from_secs(601);
        assert!(t.begin("admin", a, t5).is_ok());
        assert!(t.begin("admin", a, t5).is_ok());
        // A success clears the key.
        t.succeeded("admin", a);
        assert!(t.begin("admin", a, t5).is_ok());
        assert!(t.begin("admin", a, t5).is_ok());
    }
}
