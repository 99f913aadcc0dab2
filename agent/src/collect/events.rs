//! `collector_event`: failures of collectors reported to the store, and the
//! once-per-failure logging that goes with them.
//!
//! Each collector (a family, a custom metric, the instance's connection) is
//! tracked by name. Its first failure is reported at once (and logged as a
//! warning by the caller); while it keeps failing, at most one event per
//! [`EVENT_EVERY`] follows, carrying how many failures it stands for. A
//! success resets the collector, so the next failure is reported at once.

use std::collections::HashMap;
use std::time::Duration;

use lasect_proto::v1::CollectorEvent;
use tokio::time::Instant;

use super::{CollectError, FamilyError};

/// The least time between two events of a collector that keeps failing.
pub const EVENT_EVERY: Duration = Duration::from_secs(300);
/// Longest event message sent (ingest refuses longer ones).
const MAX_MESSAGE_BYTES: usize = 4000;
/// SQLSTATE 57014: canceled, which is what a statement_timeout gives.
const QUERY_CANCELED: &str = "57014";

/// What kind of failure an event reports (`CollectorEvent.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Unavailable,
    Query,
    Timeout,
    Connect,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::Unavailable => "unavailable",
            EventKind::Query => "query",
            EventKind::Timeout => "timeout",
            EventKind::Connect => "connect",
        }
    }
}

/// A failure, ready to become an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: EventKind,
    pub message: String,
    /// Empty when there is no server error.
    pub sqlstate: String,
}

impl Failure {
    pub fn new(kind: EventKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            sqlstate: String::new(),
        }
    }

    /// A query error: a statement timeout is a `timeout`, anything else a
    /// `query` failure, with the server's SQLSTATE when there is one.
    pub fn from_query(e: &tokio_postgres::Error, message: String) -> Self {
        let sqlstate = e
            .as_db_error()
            .map(|db| db.code().code().to_owned())
            .unwrap_or_default();
        let kind = if sqlstate == QUERY_CANCELED {
            EventKind::Timeout
        } else {
            EventKind::Query
        };
        Self {
            kind,
            message,
            sqlstate,
        }
    }

    pub fn from_family(e: &FamilyError) -> Self {
        match e {
            FamilyError::Unavailable(m) => Self::new(EventKind::Unavailable, m.clone()),
            FamilyError::Query(q) => Self::from_query(q, e.to_string()),
        }
    }

    pub fn from_round(e: &CollectError) -> Self {
        let kind = match e {
            CollectError::Timeout(_) => EventKind::Timeout,
            CollectError::Connect(_)
            | CollectError::Session(_)
            | CollectError::WaitingToReconnect { .. }
            | CollectError::NotConnected => EventKind::Connect,
        };
        let sqlstate = match e {
            CollectError::Connect(pg) | CollectError::Session(pg) => pg
                .as_db_error()
                .map(|db| db.code().code().to_owned())
                .unwrap_or_default(),
            _ => String::new(),
        };
        Self {
            kind,
            message: e.to_string(),
            sqlstate,
        }
    }
}

#[derive(Debug)]
struct Failing {
    last_event: Instant,
    suppressed: u32,
}

/// The failing collectors of one instance and the events not yet sent.
#[derive(Debug)]
pub struct Events {
    every: Duration,
    failing: HashMap<String, Failing>,
    pending: Vec<CollectorEvent>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new(EVENT_EVERY)
    }
}

impl Events {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            failing: HashMap::new(),
            pending: Vec::new(),
        }
    }

    /// Records a failure of `collector`; true when it was not failing
    /// before (the caller logs a warning then, and only then).
    pub fn failed(&mut self, collector: &str, failure: Failure, now: Instant) -> bool {
        let (first, suppressed) = match self.failing.get_mut(collector) {
            None => {
                self.failing.insert(
                    collector.to_owned(),
                    Failing {
                        last_event: now,
                        suppressed: 0,
                    },
                );
                (true, 0)
            }
            Some(f) if now.duration_since(f.last_event) >= self.every => {
                let suppressed = f.suppressed;
                f.last_event = now;
                f.suppressed = 0;
                (false, suppressed)
            }
            Some(f) => {
                f.suppressed = f.suppressed.saturating_add(1);
                return false;
            }
        };
        self.pending.push(CollectorEvent {
            collector: collector.to_owned(),
            kind: failure.kind.as_str().to_owned(),
            message: truncate(failure.message, MAX_MESSAGE_BYTES),
            sqlstate: failure.sqlstate,
            suppressed,
        });
        first
    }

    /// Records a success of `collector`; true when it was failing.
    pub fn recovered(&mut self, collector: &str) -> bool {
        self.failing.remove(collector).is_some()
    }

    /// The events recorded since the last call.
    pub fn take(&mut self) -> Vec<CollectorEvent> {
        std::mem::take(&mut self.pending)
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query_failure() -> Failure {
        Failure {
            kind: EventKind::Query,
            message: "permission denied".into(),
            sqlstate: "42501".into(),
        }
    }

    #[test]
    fn a_failing_collector_reports_once_per_interval_with_what_it_suppressed() {
        let every = Duration::from_secs(300);
        let mut events = Events::new(every);
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        assert!(events.failed("statement", query_failure(), at(0)));
        for s in 1..=9 {
            assert!(!events.failed("statement", query_failure(), at(s * 10)));
        }
        let first = events.take();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].suppressed, 0);
        assert_eq!(
            (first[0].kind.as_str(), first[0].sqlstate.as_str()),
            ("query", "42501")
        );
        // Five minutes after the first event: one more, for the 9 held back
        // and not the 10th itself.
        assert!(!events.failed("statement", query_failure(), at(300)));
        let second = events.take();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].suppressed, 9);
        assert!(events.take().is_empty());

        // Another collector is independent.
        assert!(events.failed(
            "custom:q",
            Failure::new(EventKind::Unavailable, "x"),
            at(301)
        ));
        assert_eq!(events.take().len(), 1);

        // Recovery resets: the next failure is reported at once.
        assert!(events.recovered("statement"));
        assert!(!events.recovered("statement"));
        assert!(events.failed("statement", query_failure(), at(302)));
        assert_eq!(events.take()[0].suppressed, 0);
    }

    #[test]
    fn messages_are_cut_on_a_character_boundary() {
        let s = "é".repeat(3000);
        let cut = truncate(s, MAX_MESSAGE_BYTES);
        assert!(cut.len() <= MAX_MESSAGE_BYTES && cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn round_failures_map_to_kinds() {
        let timeout = Failure::from_round(&CollectError::Timeout(Duration::from_secs(1)));
        assert_eq!(timeout.kind, EventKind::Timeout);
        let waiting = Failure::from_round(&CollectError::WaitingToReconnect {
            last_error: "refused".into(),
        });
        assert_eq!(waiting.kind, EventKind::Connect);
        let missing = Failure::from_family(&FamilyError::Unavailable("no extension".into()));
        assert_eq!(
            (missing.kind, missing.message.as_str()),
            (EventKind::Unavailable, "no extension")
        );
    }
}
