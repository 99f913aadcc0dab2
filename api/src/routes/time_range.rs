//! Time parameters of the read endpoints: `from`/`to` (RFC 3339) and `step` (a duration).
//!
//! Durations are an integer with a unit: `s`, `m`, `h` or `d` (`90s`, `5m`, `1h`, `7d`); a bare
//! integer is seconds. The grammar is `lasect_duration`'s, shared with the CLI's `--since`.

use chrono::{DateTime, TimeDelta, Utc};

use super::api_error::ApiError;

/// The longest range any read endpoint accepts.
pub const MAX_RANGE: TimeDelta = TimeDelta::seconds(lasect_duration::MAX_RANGE.as_secs() as i64);

/// Parses `90s`, `5m`, `1h`, `7d` or `90` (seconds) into whole seconds (1 s ..= [`MAX_RANGE`]).
pub fn parse_duration(text: &str) -> Result<i64, String> {
    lasect_duration::parse(text, &lasect_duration::RANGE)
        .map(lasect_duration::whole_seconds)
        .map_err(|e| e.to_string())
}

/// A checked `[from, to)` range.
#[derive(Debug, Clone, Copy)]
pub struct TimeRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl TimeRange {
    /// `from` defaults to `to - default_span`, `to` to now. Errors are `invalid_time` (not RFC
    /// 3339) and `invalid_range` (empty, reversed or longer than [`MAX_RANGE`]).
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        default_span: TimeDelta,
    ) -> Result<Self, ApiError> {
        let to = match to {
            Some(t) => parse_time("to", t)?,
            None => Utc::now(),
        };
        let from = match from {
            Some(f) => parse_time("from", f)?,
            None => to - default_span,
        };
        if from >= to {
            return Err(ApiError::unprocessable(
                "invalid_range",
                "from must be before to",
            ));
        }
        if to - from > MAX_RANGE {
            return Err(ApiError::unprocessable(
                "invalid_range",
                format!("the range may span at most {} days", MAX_RANGE.num_days()),
            ));
        }
        Ok(TimeRange { from, to })
    }

    pub fn seconds(&self) -> i64 {
        (self.to - self.from).num_seconds().max(1)
    }
}

fn parse_time(name: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_time",
                format!(
                    "{name} must be an RFC 3339 time such as 2025-01-02T03:04:05Z, not {text:?}"
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        for bad in [
            "",
            "m",
            "0s",
            "-5m",
            "5w",
            "1.5h",
            "999999999999999999999d",
            "401d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges() {
        let r = TimeRange::parse(
            Some("2025-01-01T00:00:00Z"),
            Some("2025-01-01T01:00:00+01:00"),
            TimeDelta::hours(1),
        );
        assert_eq!(r.map(|r| r.seconds()).ok(), None, "same instant is empty");
        let r = TimeRange::parse(None, Some("2025-01-01T01:00:00Z"), TimeDelta::hours(1))
            .expect("default from");
        assert_eq!(r.seconds(), 3600);
        assert_eq!(
            TimeRange::parse(Some("yesterday"), None, TimeDelta::hours(1))
                .expect_err("bad")
                .code(),
            "invalid_time"
        );
        assert_eq!(
            TimeRange::parse(
                Some("2020-01-01T00:00:00Z"),
                Some("2025-01-01T00:00:00Z"),
                TimeDelta::hours(1)
            )
            .expect_err("too long")
            .code(),
            "invalid_range"
        );
    }
}
