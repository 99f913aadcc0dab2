//! `--since 15m`: a duration back from now, with the API's syntax (`90s`, `15m`, `2h`, `7d`, or
//! seconds; the grammar and bounds are `lasect_duration`'s), turned into the `from` parameter
//! (RFC 3339, UTC).

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

/// Parses `90s`, `15m`, `2h`, `7d` or `90` into seconds (at least 1, at most 400 days).
pub fn parse_duration(text: &str) -> Result<i64, String> {
    lasect_duration::parse(text, &lasect_duration::RANGE)
        .map(lasect_duration::whole_seconds)
        .map_err(|e| e.to_string())
}

/// clap value parser for `--since` and `--step`: checks the syntax, keeps the text.
pub fn duration_arg(text: &str) -> Result<String, String> {
    parse_duration(text).map(|_| text.trim().to_owned())
}

/// `now - since` as an RFC 3339 UTC time, percent-encoded for a query string.
pub fn from_param(since: &str, now: DateTime<Utc>) -> Result<String, String> {
    let seconds = parse_duration(since)?;
    let from = now - TimeDelta::seconds(seconds);
    Ok(from
        .to_rfc3339_opts(SecondsFormat::Secs, true)
        .replace('+', "%2B"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_from() {
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("30"), Ok(30));
        for bad in ["", "0m", "15x", "-1h", "1.5h", "401d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let now = DateTime::parse_from_rfc3339("2025-01-02T03:04:05Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(from_param("1h", now).as_deref(), Ok("2025-01-02T02:04:05Z"));
    }
}
