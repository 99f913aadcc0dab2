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

/// `since` and `limit` of the lists read newest first (alert history, notification deliveries):
/// `since` RFC 3339 or a duration back from now, at most [`Recent::MAX_SINCE_CHARS`] characters
/// (longer: 400; unreadable: 422 `invalid_query`); `limit` 1..=1000, default 100 (else 400).
/// A list's query struct declares the two fields with the same `#[param]` attributes
/// (`max_length = 64`; `minimum = 1, maximum = 1000`), so the document is as strict as this.
#[derive(Debug, Clone, Copy)]
pub struct Recent {
    pub since: Option<DateTime<Utc>>,
    pub limit: i64,
}

impl Recent {
    pub const MAX_SINCE_CHARS: usize = 64;
    const DEFAULT_LIMIT: i64 = 100;
    const MAX_LIMIT: i64 = 1000;

    pub fn parse(since: Option<&str>, limit: Option<i64>) -> Result<Self, ApiError> {
        if since.is_some_and(|s| s.chars().count() > Self::MAX_SINCE_CHARS) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("since is at most {} characters", Self::MAX_SINCE_CHARS),
            ));
        }
        let limit = limit.unwrap_or(Self::DEFAULT_LIMIT);
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!(
                    "limit must be between 1 and {}, not {limit}",
                    Self::MAX_LIMIT
                ),
            ));
        }
        let since = match since {
            None => None,
            Some(s) => Some(super::parse_since(s, Utc::now()).ok_or_else(|| {
                ApiError::unprocessable(
                    "invalid_query",
                    format!("since must be RFC 3339 or a duration like 15m, 2h, 7d; not {s:?}"),
                )
            })?),
        };
        Ok(Recent { since, limit })
    }
}

/// Declares the query struct of a list read newest first: the list's own filters (each `pub`,
/// with a trailing comma), then `since` and `limit` with the bounds [`Recent::parse`] holds
/// them to, and `recent()` to read those two.
macro_rules! recent_query {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
        #[serde(deny_unknown_fields)]
        #[into_params(parameter_in = Query)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// `15m`, `2h`, `7d` or an RFC 3339 time.
            #[param(max_length = 64)]
            pub since: Option<String>,
            /// 1..=1000, default 100.
            #[param(minimum = 1, maximum = 1000)]
            pub limit: Option<i64>,
        }

        impl $name {
            pub fn recent(&self) -> Result<$crate::routes::time_range::Recent, $crate::routes::ApiError> {
                $crate::routes::time_range::Recent::parse(self.since.as_deref(), self.limit)
            }
        }
    };
}
pub(crate) use recent_query;

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
    #[test]
    fn recent_since_and_limit() {
        let r = super::Recent::parse(Some("2h"), None).expect("valid");
        assert_eq!(r.limit, 100);
        assert!(r.since.is_some_and(|t| t < chrono::Utc::now()));
        assert!(super::Recent::parse(None, Some(1000)).is_ok());
        for (since, limit, status) in [
            (Some("x".repeat(65)), None, 400),
            (None, Some(0), 400),
            (None, Some(1001), 400),
            (Some("yesterday".to_owned()), None, 422),
        ] {
            let e = super::Recent::parse(since.as_deref(), limit).expect_err("refused");
            assert_eq!(e.status().as_u16(), status, "{since:?} {limit:?}");
            assert_eq!(e.code(), "invalid_query");
        }
    }

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
