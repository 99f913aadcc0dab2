//! Durations as people type them: an integer and a unit, `500ms`, `90s`, `15m`, `2h`, `7d`, or a
//! bare integer of seconds (`90`). Leading and trailing spaces are ignored.
//!
//! One grammar for every place that reads one (the API's `step` and audit `since`, the CLI's
//! `--since`, `--step`, `--timeout`, `--ttl`, `--expires-in`), so the forms cannot drift apart;
//! what differs per place is a [`Spec`]: whether `ms` is a unit and the inclusive bounds.
//!
//! Deliberately narrower than `humantime`: no weeks, months or years (`1M` next to `1m` invites
//! mistakes), no fractions, no compound forms such as `1h30m`, because the API documents its
//! `step` as `^[0-9]+[smhd]?$` and a wider grammar would be a contract change.

use std::time::Duration;

const MS_PER_DAY: u64 = 86_400_000;

/// What one place accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// `ms` is a unit (statement and lock timeouts); elsewhere the smallest unit is the second,
    /// so every accepted duration is whole seconds.
    pub millis: bool,
    /// Inclusive bounds. `max == Duration::MAX` means "whatever fits", reported as "too long".
    pub min: Duration,
    pub max: Duration,
}

/// The longest time range the API serves, and its bound for a `step` or a `since`.
pub const MAX_RANGE: Duration = Duration::from_secs(400 * 86_400);

/// A span of a time range (the API's `step`, the CLI's `--since` and `--step`): 1 s ..= 400 d.
pub const RANGE: Spec = Spec {
    millis: false,
    min: Duration::from_secs(1),
    max: MAX_RANGE,
};

/// Whole seconds, zero included, bounded only by what fits (an audit `since`, a token's `--ttl`:
/// the API bounds those itself).
pub const SECONDS: Spec = Spec {
    millis: false,
    min: Duration::ZERO,
    max: Duration::MAX,
};

/// Why a text is not a duration of its [`Spec`]; the message quotes the text (trimmed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{text:?} is not a duration like {}", examples(spec))]
    Syntax { text: String, spec: Spec },
    #[error("{text:?} has an unknown unit; use {}", units(spec))]
    Unit { text: String, spec: Spec },
    #[error("{text:?} {}", range(spec))]
    Range { text: String, spec: Spec },
}

/// Parses `text` by the grammar of this module and checks it against `spec`'s bounds.
pub fn parse(text: &str, spec: &Spec) -> Result<Duration, DurationError> {
    let text = text.trim();
    let fail = |make: fn(String, Spec) -> DurationError| make(text.to_owned(), *spec);
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| fail(|text, spec| DurationError::Syntax { text, spec }))?;
    let ms_per_unit = match unit {
        "ms" if spec.millis => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => MS_PER_DAY,
        _ => return Err(fail(|text, spec| DurationError::Unit { text, spec })),
    };
    n.checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .filter(|d| (spec.min..=spec.max).contains(d))
        .ok_or_else(|| fail(|text, spec| DurationError::Range { text, spec }))
}

/// Whole seconds of a duration parsed with a spec without `ms`, as the API and its JSON count
/// them; saturates where a `u64` of seconds does not fit an `i64` (only [`SECONDS`] gets there).
pub fn whole_seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn examples(spec: &Spec) -> &'static str {
    if spec.millis {
        "500ms, 5s or 2m"
    } else {
        "90s, 15m, 2h or 7d"
    }
}

fn units(spec: &Spec) -> &'static str {
    if spec.millis {
        "ms, s, m, h or d"
    } else {
        "s, m, h or d"
    }
}

fn range(spec: &Spec) -> String {
    if spec.max == Duration::MAX {
        "is too long".to_owned()
    } else {
        format!("must be between {} and {}", show(spec.min), show(spec.max))
    }
}

/// A bound in its largest exact unit: `400d`, `1h`, `1ms`.
fn show(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= per && ms % per == 0 {
            return format!("{}{unit}", ms / per);
        }
    }
    if ms == 0 {
        "0s".to_owned()
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Spec = Spec {
        millis: true,
        min: Duration::from_millis(1),
        max: Duration::from_secs(3600),
    };

    fn secs(text: &str, spec: &Spec) -> Result<u64, DurationError> {
        parse(text, spec).map(|d| d.as_secs())
    }

    #[test]
    fn every_unit_and_bare_seconds() {
        assert_eq!(secs("90", &RANGE), Ok(90));
        assert_eq!(secs("90s", &RANGE), Ok(90));
        assert_eq!(secs("15m", &RANGE), Ok(900));
        assert_eq!(secs("2h", &RANGE), Ok(7200));
        assert_eq!(secs("7d", &RANGE), Ok(604_800));
        assert_eq!(secs(" 1h ", &RANGE), Ok(3600));
        assert_eq!(parse("500ms", &TIMEOUT), Ok(Duration::from_millis(500)));
        assert_eq!(parse("7", &TIMEOUT), Ok(Duration::from_secs(7)));
    }

    #[test]
    fn bounds_are_inclusive() {
        assert_eq!(secs("1s", &RANGE), Ok(1));
        assert_eq!(secs("400d", &RANGE), Ok(400 * 86_400));
        assert_eq!(parse("1ms", &TIMEOUT), Ok(Duration::from_millis(1)));
        assert_eq!(parse("1h", &TIMEOUT), Ok(Duration::from_secs(3600)));
        assert_eq!(secs("0s", &SECONDS), Ok(0));
        assert_eq!(secs("36500d", &SECONDS), Ok(36500 * 86_400));
        for (bad, spec) in [
            ("0s", &RANGE),
            ("401d", &RANGE),
            ("0ms", &TIMEOUT),
            ("61m", &TIMEOUT),
            ("99999999999999999d", &SECONDS),
        ] {
            assert!(
                matches!(parse(bad, spec), Err(DurationError::Range { .. })),
                "{bad}: {:?}",
                parse(bad, spec)
            );
        }
    }

    #[test]
    fn malformed_texts_are_refused() {
        for bad in ["", "m", "-5m", "+5m", "1.5h", "abc", "1h30m", "5 m"] {
            assert!(parse(bad, &RANGE).is_err(), "{bad}");
            assert!(parse(bad, &SECONDS).is_err(), "{bad}");
        }
        // No weeks, months or years; `ms` only where the spec asks for it.
        for bad in ["5w", "1M", "1y", "500ms", "5x"] {
            assert!(
                matches!(parse(bad, &RANGE), Err(DurationError::Unit { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn messages_name_the_text_the_forms_and_the_bounds() {
        let message = |text: &str, spec: &Spec| parse(text, spec).expect_err(text).to_string();
        assert_eq!(
            message("soon", &RANGE),
            r#""soon" is not a duration like 90s, 15m, 2h or 7d"#
        );
        assert_eq!(
            message("5w", &RANGE),
            r#""5w" has an unknown unit; use s, m, h or d"#
        );
        assert_eq!(
            message(" 401d", &RANGE),
            r#""401d" must be between 1s and 400d"#
        );
        assert_eq!(
            message("2h", &TIMEOUT),
            r#""2h" must be between 1ms and 1h"#
        );
        assert_eq!(
            message("fast", &TIMEOUT),
            r#""fast" is not a duration like 500ms, 5s or 2m"#
        );
        assert_eq!(
            message("99999999999999999d", &SECONDS),
            r#""99999999999999999d" is too long"#
        );
    }

    #[test]
    fn whole_seconds_saturates() {
        assert_eq!(whole_seconds(Duration::from_secs(90)), 90);
        assert_eq!(whole_seconds(Duration::MAX), i64::MAX);
    }
}
