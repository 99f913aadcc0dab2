//! The evaluator's figures on the API's `/metrics`:
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `lasect_api_alert_rounds_total{outcome}` | counter | rounds `evaluated` here, `skipped` (another process had the tick), `failed` (rolled back) |
//! | `lasect_api_alert_round_duration_seconds` | histogram | time of an evaluated round |
//! | `lasect_api_alert_rule_errors_total` | counter | rules that could not be evaluated in a round |
//! | `lasect_api_alert_transitions_total` | counter | state changes written |

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// Cheap to clone; registered once in the API's registry.
#[derive(Clone)]
pub struct AlertMetrics {
    rounds: Family<Outcome, Counter>,
    duration: Histogram,
    rule_errors: Counter,
    transitions: Counter,
}

impl std::fmt::Debug for AlertMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AlertMetrics")
    }
}

impl AlertMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = AlertMetrics {
            rounds: Family::default(),
            // 1 ms .. ~33 s.
            duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            rule_errors: Counter::default(),
            transitions: Counter::default(),
        };
        registry.register("alert_rounds", "Alert evaluation rounds", m.rounds.clone());
        registry.register(
            "alert_round_duration_seconds",
            "Time of an evaluated alert round",
            m.duration.clone(),
        );
        registry.register(
            "alert_rule_errors",
            "Alert rules that could not be evaluated",
            m.rule_errors.clone(),
        );
        registry.register(
            "alert_transitions",
            "Alert state changes written",
            m.transitions.clone(),
        );
        m
    }

    pub fn evaluated(&self, took: Duration, errors: usize, transitions: usize) {
        self.rounds
            .get_or_create(&Outcome {
                outcome: "evaluated",
            })
            .inc();
        self.duration.observe(took.as_secs_f64());
        self.rule_errors.inc_by(errors as u64);
        self.transitions.inc_by(transitions as u64);
    }

    pub fn skipped(&self) {
        self.rounds
            .get_or_create(&Outcome { outcome: "skipped" })
            .inc();
    }

    pub fn failed(&self) {
        self.rounds
            .get_or_create(&Outcome { outcome: "failed" })
            .inc();
    }
}
