//! The life of one alert (rule × key): inactive → pending → firing → resolved.
//!
//! - Not active (no row, `inactive` or `resolved`): the condition holding (`op` against the
//!   threshold) makes it `pending`, or `firing` at once when `for` is 0.
//! - `pending`: still holding for `for` since it began → `firing`; not holding → `inactive`.
//! - `firing`: not holding → `resolved`.
//!
//! While pending or firing, "holding" is judged against the threshold moved back by the
//! hysteresis (`Op::release`), so a value hovering at the threshold stays in its state
//! instead of flapping. No value at all (no rows for the key in the window) does not hold.

use chrono::{DateTime, Utc};

use super::rule::Op;

/// Shared with the CLI, which reads it in the alerts it lists.
pub use lasect_api_contract::alerts::State;

/// The thresholds of a rule that decide states.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub op: Op,
    pub threshold: f64,
    pub hysteresis: f64,
    pub for_secs: u32,
}

/// The state after an evaluation at `at` that saw `value`, from `state` which began at
/// `since`; returns the new state and when it began.
pub fn next(
    state: State,
    since: DateTime<Utc>,
    value: Option<f64>,
    limits: &Limits,
    at: DateTime<Utc>,
) -> (State, DateTime<Utc>) {
    let holds = value.is_some_and(|v| {
        if state.active() {
            limits
                .op
                .holds(v, limits.op.release(limits.threshold, limits.hysteresis))
        } else {
            limits.op.holds(v, limits.threshold)
        }
    });
    let for_elapsed =
        |from: DateTime<Utc>| (at - from).num_milliseconds() >= i64::from(limits.for_secs) * 1000;
    match (state, holds) {
        (State::Inactive | State::Resolved, true) if limits.for_secs == 0 => (State::Firing, at),
        (State::Inactive | State::Resolved, true) => (State::Pending, at),
        (State::Pending, true) if for_elapsed(since) => (State::Firing, at),
        (State::Pending, false) => (State::Inactive, at),
        (State::Firing, false) => (State::Resolved, at),
        (s, _) => (s, since),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).expect("time")
    }

    #[test]
    fn pending_fires_after_for_and_hysteresis_keeps_it() {
        let l = Limits {
            op: Op::Gt,
            threshold: 100.0,
            hysteresis: 10.0,
            for_secs: 60,
        };
        let (s, since) = next(State::Inactive, t(0), Some(101.0), &l, t(0));
        assert_eq!((s, since), (State::Pending, t(0)));
        let (s, since) = next(s, since, Some(95.0), &l, t(30));
        assert_eq!(s, State::Pending, "95 is above the release point 90");
        let (s, since) = next(s, since, Some(99.0), &l, t(60));
        assert_eq!((s, since), (State::Firing, t(60)));
        let (s, since) = next(s, since, Some(91.0), &l, t(75));
        assert_eq!((s, since), (State::Firing, t(60)));
        let (s, _) = next(s, since, Some(90.0), &l, t(90));
        assert_eq!(s, State::Resolved);
        // From resolved, the full threshold applies again.
        let (s, _) = next(s, t(90), Some(95.0), &l, t(105));
        assert_eq!(s, State::Resolved);
        let _ = TimeDelta::zero();
    }

    #[test]
    fn no_value_ends_a_pending_alert_and_for_zero_fires_at_once() {
        let l = Limits {
            op: Op::Lt,
            threshold: 0.9,
            hysteresis: 0.0,
            for_secs: 0,
        };
        assert_eq!(
            next(State::Inactive, t(0), Some(0.5), &l, t(5)).0,
            State::Firing
        );
        let l = Limits { for_secs: 30, ..l };
        assert_eq!(
            next(State::Pending, t(0), None, &l, t(5)).0,
            State::Inactive
        );
        assert_eq!(next(State::Firing, t(0), None, &l, t(5)).0, State::Resolved);
    }
}
