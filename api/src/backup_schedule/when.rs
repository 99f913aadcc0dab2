//! When a backup schedule fires: a cron expression (croner: 5 fields, or 6 with seconds
//! first) read in an IANA time zone (chrono-tz), so `0 1 * * *` in `Europe/Paris` is 01:00
//! local time on both sides of a DST change.

use std::str::FromStr as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// At most this many firings of one schedule and repository are recorded as missed in one
/// round (an API down for a month with a per-minute schedule would otherwise write 43 200
/// rows); the oldest row recorded says that earlier ones were not listed.
pub const MAX_MISSED: usize = 100;

/// A cron expression and time zone the API refuses, with the reason (a 422 message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhenError {
    #[error("cron {0:?} is not a cron expression: {1}")]
    Cron(String, String),
    #[error("cron {0:?} never fires")]
    Never(String),
    #[error("time_zone {0:?} is not an IANA time zone name (e.g. UTC, Europe/Paris)")]
    TimeZone(String),
}

/// A parsed schedule time.
#[derive(Debug, Clone)]
pub struct When {
    cron: Cron,
    tz: Tz,
}

/// The firings of one schedule between two instants, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Newest first; at most `MAX_MISSED + 1`.
    pub times: Vec<DateTime<Utc>>,
    /// More firings than `times` fell in the range (only the newest are listed).
    pub truncated: bool,
}

impl When {
    pub fn parse(cron: &str, time_zone: &str) -> Result<When, WhenError> {
        let tz: Tz = time_zone
            .parse()
            .map_err(|_| WhenError::TimeZone(time_zone.to_owned()))?;
        let parsed =
            Cron::from_str(cron).map_err(|e| WhenError::Cron(cron.to_owned(), e.to_string()))?;
        let when = When { cron: parsed, tz };
        // `0 0 31 2 *` parses but never comes: refuse it rather than keep a dead schedule.
        if when.next_after(Utc::now()).is_none() {
            return Err(WhenError::Never(cron.to_owned()));
        }
        Ok(when)
    }

    /// The first firing strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|n| n.with_timezone(&Utc))
    }

    /// The firings in `(after, until]`, newest first.
    pub fn due(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Due {
        let mut times = Vec::new();
        let mut at = until.with_timezone(&self.tz);
        let mut inclusive = true;
        while times.len() <= MAX_MISSED {
            match self.cron.find_previous_occurrence(&at, inclusive) {
                Ok(t) if t.with_timezone(&Utc) > after => {
                    times.push(t.with_timezone(&Utc));
                    at = t;
                    inclusive = false;
                }
                _ => {
                    return Due {
                        times,
                        truncated: false,
                    };
                }
            }
        }
        let truncated = self
            .cron
            .find_previous_occurrence(&at, false)
            .is_ok_and(|t| t.with_timezone(&Utc) > after);
        Due { times, truncated }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("a test instant")
            .with_timezone(&Utc)
    }

    #[test]
    fn bad_expressions_and_zones_are_refused_with_the_reason() {
        assert!(matches!(
            When::parse("61 * * * *", "UTC"),
            Err(WhenError::Cron(..))
        ));
        assert!(matches!(
            When::parse("every night", "UTC"),
            Err(WhenError::Cron(..))
        ));
        assert_eq!(
            When::parse("0 1 * * *", "Mars/Olympus").err(),
            Some(WhenError::TimeZone("Mars/Olympus".into()))
        );
        assert_eq!(
            When::parse("0 0 31 2 *", "UTC").err(),
            Some(WhenError::Never("0 0 31 2 *".into()))
        );
        assert!(When::parse("*/5 * * * * *", "UTC").is_ok(), "seconds");
    }

    #[test]
    fn local_time_follows_the_zone_across_dst() {
        let when = When::parse("30 1 * * *", "Europe/Paris").expect("valid");
        // Winter: 01:30 CET = 00:30 UTC; summer (after 2026-03-29): 01:30 CEST = 23:30 UTC.
        assert_eq!(
            when.next_after(utc("2026-03-27T12:00:00Z")),
            Some(utc("2026-03-28T00:30:00Z"))
        );
        assert_eq!(
            when.next_after(utc("2026-03-30T12:00:00Z")),
            Some(utc("2026-03-30T23:30:00Z"))
        );
    }

    #[test]
    fn due_lists_the_firings_in_the_range_newest_first() {
        let when = When::parse("*/10 * * * *", "UTC").expect("valid");
        let due = when.due(utc("2026-01-01T00:00:00Z"), utc("2026-01-01T00:30:00Z"));
        assert_eq!(
            due.times,
            vec![
                utc("2026-01-01T00:30:00Z"),
                utc("2026-01-01T00:20:00Z"),
                utc("2026-01-01T00:10:00Z"),
            ],
            "the end is included, the start is not"
        );
        assert!(!due.truncated);
        let none = when.due(utc("2026-01-01T00:30:00Z"), utc("2026-01-01T00:39:59Z"));
        assert!(none.times.is_empty());
    }

    #[test]
    fn a_long_outage_lists_only_the_newest_firings() {
        let when = When::parse("* * * * *", "UTC").expect("valid");
        let until = Utc
            .with_ymd_and_hms(2026, 1, 2, 0, 0, 0)
            .single()
            .expect("t");
        let due = when.due(utc("2026-01-01T00:00:00Z"), until);
        assert_eq!(due.times.len(), MAX_MISSED + 1);
        assert_eq!(due.times[0], until);
        assert!(due.truncated);
    }
}
