//! `GET /api/v1/instances/{id}/metrics/{family}?from=&to=&step=&key=`: a family as time
//! series, downsampled in the store; `key` keeps the series of one key (a JSON object of key
//! columns and values, checked against the family's declaration: `series_spec::key_filters`).
//!
//! Rows are put in buckets of `step` (`date_bin` on native partitions, `time_bucket` on
//! TimescaleDB; both aligned on multiples of the step since the Unix epoch, and `from` is
//! moved down to the start of its bucket), one series per
//! distinct value of the family's key columns, each value aggregated as `series_spec` says
//! (`avg`, `max`, `sum`, or a per-second `rate` for cumulative counters).
//!
//! Bounds: a response has at most [`MAX_BUCKETS`] buckets per series (a range and step that
//! would make more are refused before any query) and at most [`MAX_POINTS`] points in all
//! (more are refused with `too_many_points`: ask for a larger step or a shorter range).
//! Without `step` the smallest step of [`STEP_LADDER`] giving at most [`AUTO_BUCKETS`] buckets
//! is chosen. `from` defaults to `to - 1h`, `to` to now.

use crate::auth::{Principal, Role};
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use chrono::TimeDelta;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::postgres::types::PgInterval;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::api_error::ApiError;
use super::auth_routes::path_params;
use super::instances::{self, Instance, rfc3339};
use super::metric_families::{self, FamilyKey};
use super::openapi::paths::InstancePath;
use super::openapi::responses::ById;
use super::series_spec::{self, Bucketing};
use super::time_range::{TimeRange, parse_duration};

/// Most buckets per series.
pub const MAX_BUCKETS: i64 = 1000;
/// Most points (buckets × series) in one response.
pub const MAX_POINTS: i64 = 20_000;
/// Buckets aimed at when the step is chosen automatically.
pub const AUTO_BUCKETS: i64 = 300;
/// Steps chosen from when none is given, in seconds.
pub const STEP_LADDER: &[i64] = &[
    1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400,
];
/// How far before `from` rows are read for a rate's first previous sample, at least.
const MIN_LOOKBACK_SECS: i64 = 900;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// Start (RFC 3339, inclusive); default `to` minus one hour.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End (RFC 3339, exclusive); default now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Bucket width: `30s`, `5m`, `1h`, `1d` or seconds; default chosen from the range.
    #[param(pattern = "^[0-9]+[smhd]?$")]
    pub step: Option<String>,
    /// Only the series whose key has these values: a JSON object from key columns of the
    /// family (the answer's `keys`) to a value, e.g. `{"queryid":"-4017525958712309384"}`
    /// (integers as numbers or strings, since query ids exceed JavaScript's safe integers;
    /// `null` matches a missing value). 422 for a column that is not a key of the family or
    /// a value of the wrong type.
    pub key: Option<String>,
}

/// A value column of the series and how buckets aggregate it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesColumn {
    pub name: String,
    /// `avg`, `max`, `sum` or `rate` (per second).
    pub aggregate: String,
}

/// One series: the rows sharing one key.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesData {
    /// The key columns' values of this series (empty object for families without keys).
    #[schema(value_type = Object)]
    pub key: Map<String, Value>,
    /// Buckets in time order: `time` (bucket start, RFC 3339), `row_count` (rows in the
    /// bucket), then every value column (a number, or null when the bucket has no value).
    #[schema(value_type = Vec<Object>)]
    pub points: Vec<Map<String, Value>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesResponse {
    pub instance: Instance,
    pub family: String,
    /// The range served, RFC 3339; `to` is exclusive.
    pub from: String,
    pub to: String,
    pub step_seconds: i64,
    /// `date_bin` (native partitions) or `time_bucket` (TimescaleDB).
    pub bucketing: String,
    pub keys: Vec<String>,
    pub columns: Vec<SeriesColumn>,
    pub series: Vec<SeriesData>,
}

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/metrics/{family}",
    tag = "metrics",
    security(("bearer" = [])),
    params(
        InstancePath,
        ("family" = inline(metric_families::FamilyName), Path, description = "Metric family (see the samples endpoint)"),
        SeriesQuery,
    ),
    responses(
        (status = 200, description = "The series", body = SeriesResponse),
        ById,
        (status = 422, description = "A reversed or too long range, a zero or too long step, too many points, a `key` that is not a JSON object of the family's key columns and values of their types", body = super::openapi::ErrorBody),
    )
)]
/// Needs viewer on the instance.
pub async fn series(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<SeriesQuery>, QueryRejection>,
) -> Result<Json<SeriesResponse>, ApiError> {
    let (id, family) = path_params(path)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let id = parse_instance_id(&id)?;
    principal
        .require_on_instance(&state.pool, id, Role::Viewer)
        .await?;
    let spec = find_family(&family)?;
    let series = series_spec::find(spec.name).ok_or_else(|| {
        ApiError::bad_request(
            "unknown_family",
            format!("family {family:?} has no time series"),
        )
    })?;
    let filters = match query.key.as_deref() {
        Some(text) => series_spec::key_filters(spec.name, text)
            .map_err(|m| ApiError::unprocessable("invalid_key", m))?,
        None => Vec::new(),
    };
    let range = TimeRange::parse(
        query.from.as_deref(),
        query.to.as_deref(),
        TimeDelta::hours(1),
    )?;
    let step = choose_step(&range, query.step.as_deref())?;
    // Buckets are aligned on the epoch; starting at a bucket boundary keeps the rows before
    // `from` (read only as a rate's previous value) out of the first bucket.
    let range = TimeRange {
        from: align_down(range.from, step),
        to: range.to,
    };
    let Some(instance) = instances::find(&state, id).await? else {
        return Err(ApiError::not_found(format!("no instance with id {id}")));
    };

    let bucketing = bucketing(&state).await?;
    let sql = series_spec::series_sql(spec, series, bucketing, &filters);
    // Built from the literals of the family and series specs only (see `series_spec`).
    let q = sqlx::query(sqlx::AssertSqlSafe(sql));
    let q = match spec.key {
        FamilyKey::Instance => q.bind(instance.id),
        FamilyKey::Agent => q.bind(instance.agent_id.clone()),
    };
    let mut q = q
        .bind(range.from)
        .bind(range.to)
        .bind(interval(step))
        .bind(interval(step.max(MIN_LOOKBACK_SECS)))
        .bind(MAX_POINTS + 1);
    for value in filters.iter().filter_map(|f| f.value.as_ref()) {
        q = q.bind(value);
    }
    let rows = q.fetch_all(&state.pool).await?;
    if rows.len() as i64 > MAX_POINTS {
        return Err(ApiError::unprocessable(
            "too_many_points",
            format!(
                "the answer would have more than {MAX_POINTS} points; use a larger step or a shorter range"
            ),
        ));
    }

    let mut out: Vec<SeriesData> = Vec::new();
    for row in &rows {
        let mut object = metric_families::row_to_json(row).map_err(ApiError::internal)?;
        let mut key = Map::new();
        for k in series.keys {
            key.insert((*k).to_owned(), object.remove(*k).unwrap_or(Value::Null));
        }
        let point: Map<String, Value> = object
            .into_iter()
            .map(|(name, v)| match name.strip_prefix("v_") {
                Some(column) => (column.to_owned(), v),
                None => (name, v),
            })
            .collect();
        // Rows come ordered by key then time, so a new key starts a new series.
        match out.last_mut() {
            Some(last) if last.key == key => last.points.push(point),
            _ => out.push(SeriesData {
                key,
                points: vec![point],
            }),
        }
    }

    Ok(Json(SeriesResponse {
        instance,
        family: spec.name.to_owned(),
        from: rfc3339(range.from),
        to: rfc3339(range.to),
        step_seconds: step,
        bucketing: match bucketing {
            Bucketing::DateBin => "date_bin",
            Bucketing::TimeBucket => "time_bucket",
        }
        .to_owned(),
        keys: series.keys.iter().map(|k| (*k).to_owned()).collect(),
        columns: series
            .values
            .iter()
            .map(|(name, aggregate)| SeriesColumn {
                name: (*name).to_owned(),
                aggregate: aggregate.name().to_owned(),
            })
            .collect(),
        series: out,
    }))
}

pub(crate) fn parse_instance_id(id: &str) -> Result<i64, ApiError> {
    id.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_instance_id",
            format!("instance id must be a positive integer, not {id:?}"),
        )
    })
}

fn find_family(family: &str) -> Result<&'static metric_families::FamilySpec, ApiError> {
    metric_families::find(family).ok_or_else(|| {
        ApiError::bad_request(
            "unknown_family",
            format!(
                "unknown family {family:?}; known families: {}",
                metric_families::known_names().join(", ")
            ),
        )
    })
}

/// The step in seconds: the one asked for (checked against [`MAX_BUCKETS`]) or the smallest of
/// the ladder giving at most [`AUTO_BUCKETS`] buckets.
pub fn choose_step(range: &TimeRange, step: Option<&str>) -> Result<i64, ApiError> {
    let seconds = range.seconds();
    match step {
        Some(text) => {
            // Off the document's pattern (`^[0-9]+[smhd]?$`): 400. What the pattern cannot say
            // (a zero or overlong step, too many buckets for the range): 422.
            let digits = text.strip_suffix(['s', 'm', 'h', 'd']).unwrap_or(text);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ApiError::bad_request(
                    "invalid_step",
                    format!("step {text:?} must be a number of seconds or end in s, m, h or d"),
                ));
            }
            let step = parse_duration(text)
                .map_err(|m| ApiError::unprocessable("invalid_step", format!("step: {m}")))?;
            let buckets = buckets(seconds, step);
            if buckets > MAX_BUCKETS {
                return Err(ApiError::unprocessable(
                    "too_many_points",
                    format!(
                        "a step of {step}s over {seconds}s makes {buckets} buckets; at most {MAX_BUCKETS} are served"
                    ),
                ));
            }
            Ok(step)
        }
        None => Ok(STEP_LADDER
            .iter()
            .copied()
            .find(|s| buckets(seconds, *s) <= AUTO_BUCKETS)
            .unwrap_or_else(|| (seconds / AUTO_BUCKETS).max(1) + 1)),
    }
}

/// Buckets aligned on the epoch touched by a range of `seconds`: at most one more than the
/// range divided by the step.
fn buckets(seconds: i64, step: i64) -> i64 {
    (seconds + step - 1) / step + 1
}

/// `t` rounded down to a multiple of `step` seconds since the epoch.
fn align_down(t: chrono::DateTime<chrono::Utc>, step: i64) -> chrono::DateTime<chrono::Utc> {
    let micros = t.timestamp_micros();
    let step_micros = step * 1_000_000;
    let aligned = micros - micros.rem_euclid(step_micros);
    chrono::DateTime::from_timestamp_micros(aligned).unwrap_or(t)
}

fn interval(seconds: i64) -> PgInterval {
    PgInterval {
        months: 0,
        days: 0,
        microseconds: seconds * 1_000_000,
    }
}

/// Which bucketing function the store's layout calls for (`store_settings`).
async fn bucketing(state: &AppState) -> Result<Bucketing, ApiError> {
    let mode: Option<String> =
        sqlx::query_scalar("SELECT value FROM store_settings WHERE key = 'metric_storage'")
            .fetch_optional(&state.pool)
            .await?;
    match mode.as_deref() {
        Some("timescaledb") => Ok(Bucketing::TimeBucket),
        Some("native") => Ok(Bucketing::DateBin),
        other => Err(ApiError::internal(format_args!(
            "unknown metric storage {other:?} in store_settings"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(seconds: i64) -> TimeRange {
        let to = chrono::Utc::now();
        TimeRange {
            from: to - TimeDelta::seconds(seconds),
            to,
        }
    }

    #[test]
    fn automatic_steps_stay_under_the_target() {
        assert_eq!(choose_step(&range(3600), None).ok(), Some(15));
        assert_eq!(choose_step(&range(15 * 60), None).ok(), Some(5));
        assert_eq!(choose_step(&range(30 * 86_400), None).ok(), Some(10_800));
        let step = choose_step(&range(400 * 86_400), None).expect("step");
        assert!(buckets(400 * 86_400, step) <= AUTO_BUCKETS + 1);
    }

    #[test]
    fn from_is_aligned_on_the_step() {
        let t = chrono::DateTime::parse_from_rfc3339("2025-01-02T03:04:05.5Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        assert_eq!(rfc3339(align_down(t, 60)), "2025-01-02T03:04:00Z");
        assert_eq!(rfc3339(align_down(t, 3600)), "2025-01-02T03:00:00Z");
        assert_eq!(rfc3339(align_down(t, 1)), "2025-01-02T03:04:05Z");
    }

    #[test]
    fn explicit_steps_are_bounded() {
        assert_eq!(choose_step(&range(3600), Some("1m")).ok(), Some(60));
        assert_eq!(
            choose_step(&range(86_400), Some("1s"))
                .expect_err("too many")
                .code(),
            "too_many_points"
        );
        assert_eq!(
            choose_step(&range(3600), Some("soon"))
                .expect_err("bad")
                .code(),
            "invalid_step"
        );
    }
}
