//! Shared field checks: each turns one wire field into a store [`Value`] or
//! a [`FieldError`] naming the field. Families are written with these, so a
//! new family's validation is a list of one-line checks.

use chrono::{DateTime, Datelike, Utc};

use super::schema::Value;

/// What is wrong with one field of one sample.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

pub fn invalid(field: &'static str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field,
        reason: reason.into(),
    }
}

/// PostgreSQL identifiers are at most NAMEDATALEN - 1 bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// A cumulative counter, delta or size: never negative. Absent stays NULL.
pub fn counter(field: &'static str, value: Option<i64>) -> Result<Value, FieldError> {
    match value {
        Some(v) if v < 0 => Err(invalid(field, format!("must not be negative, got {v}"))),
        v => Ok(Value::Int8(v)),
    }
}

/// An unsigned wire value that must fit `bigint`.
pub fn unsigned(field: &'static str, value: u64) -> Result<Value, FieldError> {
    i64::try_from(value)
        .map(|v| Value::Int8(Some(v)))
        .map_err(|_| invalid(field, format!("{value} does not fit a bigint")))
}

/// A non-negative count that must fit `integer`.
pub fn small_count(field: &'static str, value: Option<i64>) -> Result<Value, FieldError> {
    value
        .map(|n| {
            i32::try_from(n)
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| invalid(field, format!("{n} is not within 0..=2^31-1")))
        })
        .transpose()
        .map(Value::Int4)
}

/// A finite, non-negative float (times in ms, loads); absent stays NULL.
pub fn non_negative(field: &'static str, value: Option<f64>) -> Result<Value, FieldError> {
    match value {
        Some(v) if !(v.is_finite() && v >= 0.0) => Err(invalid(
            field,
            format!("must be a finite number >= 0, got {v}"),
        )),
        v => Ok(Value::Float8(v)),
    }
}

/// A PostgreSQL object name: non-empty, at most 63 bytes, no NUL.
pub fn name(field: &'static str, value: String) -> Result<Value, FieldError> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > MAX_IDENTIFIER_BYTES || value.contains('\0') {
        return Err(invalid(
            field,
            "must be at most 63 bytes without NUL characters",
        ));
    }
    Ok(Value::Text(Some(value)))
}

/// Free text of at most `max_bytes` bytes, without NUL (text cannot hold it).
pub fn text(field: &'static str, value: String, max_bytes: usize) -> Result<String, FieldError> {
    if value.len() > max_bytes {
        return Err(invalid(field, format!("must be at most {max_bytes} bytes")));
    }
    if value.contains('\0') {
        return Err(invalid(field, "must not contain NUL"));
    }
    Ok(value)
}

/// A time given as microseconds since the epoch, between 1970 and 9999.
pub fn time(field: &'static str, micros: Option<i64>) -> Result<Value, FieldError> {
    micros
        .map(|m| {
            DateTime::<Utc>::from_timestamp_micros(m)
                .filter(|t| (1970..=9999).contains(&t.year()))
                .ok_or_else(|| invalid(field, format!("{m} is not a time between 1970 and 9999")))
        })
        .transpose()
        .map(Value::Timestamptz)
}
