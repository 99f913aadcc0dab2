//! Per-agent rate limit: a token bucket per agent id (GCRA, `governor`).
//!
//! Each agent may push `max_batches_per_agent_per_sec` batches per second on
//! average, with bursts of `agent_burst_batches`; an agent over its rate is
//! answered `RESOURCE_EXHAUSTED` and nobody else notices. The burst is what
//! lets an agent replay a backlog after an outage quickly, the rate is what
//! keeps one misbehaving agent from taking the whole ingest.
//!
//! Buckets live in memory only: a restart gives every agent a full bucket,
//! which is harmless. Agents that have been quiet long enough to have a full
//! bucket again are forgotten by [`AgentRateLimiter::forget_idle`].

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Limits;
use crate::identity::AgentId;

/// Shared per-agent buckets; cheap to clone.
#[derive(Clone)]
pub struct AgentRateLimiter {
    limiter: Arc<DefaultKeyedRateLimiter<AgentId>>,
}

/// An agent over its rate, and when it may push again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("agent over its rate limit, retry in {} ms", .retry_after.as_millis())]
pub struct RateLimited {
    pub retry_after: Duration,
}

impl AgentRateLimiter {
    pub fn new(limits: &Limits) -> Self {
        // Validation keeps both at least 1; `MIN` is the safe fallback.
        let rate = NonZeroU32::new(limits.max_batches_per_agent_per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.agent_burst_batches).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            )),
        }
    }

    /// Takes one token from `agent`'s bucket.
    pub fn check(&self, agent: &AgentId) -> Result<(), RateLimited> {
        self.limiter
            .check_key(agent)
            .map_err(|not_until| RateLimited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            })
    }

    /// Drops the buckets of agents whose bucket has refilled; call it now
    /// and then so agents that left do not hold memory forever.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Agents with a bucket in memory.
    pub fn tracked_agents(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str) -> AgentId {
        AgentId::parse(id).expect("valid agent id")
    }

    #[test]
    fn one_agent_over_its_burst_does_not_affect_another() {
        // One token per hour: nothing refills while the test runs.
        let limits = Limits {
            max_batches_per_agent_per_sec: 1,
            agent_burst_batches: 3,
            ..Limits::default()
        };
        let limiter = AgentRateLimiter {
            limiter: Arc::new(RateLimiter::keyed(
                Quota::with_period(Duration::from_secs(3600))
                    .expect("non-zero period")
                    .allow_burst(NonZeroU32::new(limits.agent_burst_batches).expect("3")),
            )),
        };
        let (a, b) = (agent("agent-a"), agent("agent-b"));
        for _ in 0..3 {
            limiter.check(&a).expect("within the burst");
        }
        let refused = limiter.check(&a).expect_err("burst used up");
        assert!(refused.retry_after > Duration::ZERO);
        assert!(refused.to_string().contains("rate limit"), "{refused}");
        for _ in 0..3 {
            limiter.check(&b).expect("another agent has its own bucket");
        }
        assert_eq!(limiter.tracked_agents(), 2);
    }

    #[test]
    fn config_values_build_a_limiter() {
        let limiter = AgentRateLimiter::new(&Limits {
            max_batches_per_agent_per_sec: 5,
            agent_burst_batches: 2,
            ..Limits::default()
        });
        let a = agent("agent-a");
        limiter.check(&a).expect("first");
        limiter.check(&a).expect("second");
        limiter.forget_idle();
    }
}
