//! Failed logins per source address, in memory: after `max` failures within `window`, the
//! address gets 429 until the window ends. (Per-user lockout lives in the store, `users`.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bound on tracked addresses, so a flood of sources cannot grow memory without end.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug)]
pub struct SourceLimiter {
    max: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl SourceLimiter {
    pub fn new(max: u32, window: Duration) -> Self {
        SourceLimiter {
            max,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` while `ip` is blocked.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&ip) {
            Some(&(start, count)) if count >= self.max && now < start + self.window => {
                Err((start + self.window - now).as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    pub fn failure(&self, ip: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED {
            let window = self.window;
            map.retain(|_, (start, _)| now < *start + window);
        }
        let entry = map.entry(ip).or_insert((now, 0));
        if now >= entry.0 + self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_until_the_window_ends() {
        let limiter = SourceLimiter::new(3, Duration::from_secs(60));
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(ip, t0).is_ok());
            limiter.failure(ip, t0);
        }
        assert_eq!(limiter.check(ip, t0), Err(60));
        assert!(limiter.check(other, t0).is_ok());
        assert!(limiter.check(ip, t0 + Duration::from_secs(61)).is_ok());
        limiter.failure(ip, t0 + Duration::from_secs(61));
        assert!(
            limiter.check(ip, t0 + Duration::from_secs(61)).is_ok(),
            "new window"
        );
    }
}
