//! Backup and restore drill schedules (docs/BACKUPS.md, "Schedules"); the scheduler that fires
//! them is [`crate::backup_schedule`].
//!
//! - `GET /api/v1/backup/schedules`: the schedules the caller may view (viewer on the
//!   repository's instance, or by a grant on the schedule's label).
//! - `POST /api/v1/backup/schedules`: admin on the repository's instance, or on the label
//!   (a global admin or an admin grant for exactly that label).
//! - `DELETE /api/v1/backup/schedules/{id}`: the same admin.
//! - `GET /api/v1/backup/firings`: each firing (started, missed, skipped) of the instances
//!   the caller views, newest first.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::Row as _;
use utoipa::IntoParams;

use super::auth_routes::body;
use super::instances::rfc3339;
use super::openapi::responses::{ById, Filtered};
use super::runs::path_id;
use super::{ApiError, AppState};
use crate::auth::{Principal, Role};
use crate::backup_schedule::when::When;

pub use lasect_api_contract::backup_schedules::{
    Firing, FiringList, NewSchedule, Outcome, Schedule, ScheduleKind, ScheduleList, ScheduledType,
};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ScheduleQuery {
    /// Only the schedules of this instance's repositories and of labels it carries.
    #[param(minimum = 1)]
    pub instance_id: Option<i64>,
}

const SELECT: &str = "SELECT s.id, s.repository_id, b.instance_id, s.label_key, s.label_value, \
     coalesce(s.stanza, b.stanza) AS stanza, s.cron, s.time_zone, s.kind, s.backup_type, \
     s.drill_check_sql, s.drill_amcheck, s.drill_scratch_dir, s.created_at, \
     s.created_by, coalesce(i.labels, '{}') AS labels \
     FROM backup_schedules s \
     LEFT JOIN backup_repositories b ON b.id = s.repository_id \
     LEFT JOIN instances i ON i.id = b.instance_id";

/// The labels a schedule's role is judged on: its instance's, or its own label.
fn scope(
    labels: serde_json::Value,
    key: &Option<String>,
    value: &Option<String>,
) -> serde_json::Value {
    match (key, value) {
        (Some(k), Some(v)) => label(k, v),
        _ => labels,
    }
}

fn schedule(r: &sqlx::postgres::PgRow) -> Result<(Schedule, serde_json::Value), sqlx::Error> {
    let cron: String = r.try_get("cron")?;
    let time_zone: String = r.try_get("time_zone")?;
    let next_fire_at = When::parse(&cron, &time_zone)
        .ok()
        .and_then(|w| w.next_after(Utc::now()))
        .map(rfc3339);
    let label_key: Option<String> = r.try_get("label_key")?;
    let label_value: Option<String> = r.try_get("label_value")?;
    let labels = scope(r.try_get("labels")?, &label_key, &label_value);
    Ok((
        Schedule {
            id: r.try_get("id")?,
            repository_id: r.try_get("repository_id")?,
            instance_id: r.try_get("instance_id")?,
            label_key,
            label_value,
            stanza: r.try_get("stanza")?,
            cron,
            time_zone,
            kind: r.try_get("kind")?,
            backup_type: r.try_get("backup_type")?,
            check_sql: r.try_get("drill_check_sql")?,
            amcheck: r.try_get("drill_amcheck")?,
            scratch_dir: r.try_get("drill_scratch_dir")?,
            next_fire_at,
            created_at: rfc3339(r.try_get("created_at")?),
            created_by: r.try_get("created_by")?,
        },
        labels,
    ))
}

/// A one-label object, as `instances.labels` holds them.
fn label(key: &str, value: &str) -> serde_json::Value {
    let mut labels = serde_json::Map::new();
    labels.insert(key.to_owned(), serde_json::Value::String(value.to_owned()));
    serde_json::Value::Object(labels)
}

fn may(principal: &Principal, labels: &serde_json::Value, role: Role) -> bool {
    principal.role_for_labels(labels).is_some_and(|r| r >= role)
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

fn check_id(id: Option<i64>, name: &str) -> Result<(), ApiError> {
    match id {
        Some(v) if v < 1 => Err(ApiError::bad_request(
            "invalid_query",
            format!("{name} must be a positive integer, not {v}"),
        )),
        _ => Ok(()),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/backup/schedules",
    tag = "backups",
    security(("bearer" = [])),
    params(ScheduleQuery),
    responses(
        (status = 200, description = "The schedules the caller may view", body = ScheduleList),
        Filtered,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    q: Result<Query<ScheduleQuery>, QueryRejection>,
) -> Result<Json<ScheduleList>, ApiError> {
    let q = query(q)?;
    check_id(q.instance_id, "instance_id")?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE $1::bigint IS NULL OR b.instance_id = $1 \
         OR (s.label_key IS NOT NULL AND EXISTS (SELECT 1 FROM instances x WHERE x.id = $1 \
             AND x.labels ->> s.label_key = s.label_value)) \
         ORDER BY s.id"
    )))
    .bind(q.instance_id)
    .fetch_all(&state.pool)
    .await?;
    let mut schedules = Vec::new();
    for r in &rows {
        let (mut s, labels) = schedule(r)?;
        if may(&principal, &labels, Role::Viewer) {
            // The check query is the admin's, as a drill run's parameters are.
            if !may(&principal, &labels, Role::Admin) {
                s.check_sql = None;
            }
            schedules.push(s);
        }
    }
    Ok(Json(ScheduleList { schedules }))
}

/// What the schema cannot say about a new schedule: 422 with the reason.
fn check(s: &NewSchedule) -> Result<(), ApiError> {
    let bad = |m: String| ApiError::unprocessable("invalid_schedule", m);
    // First the document's bounds and pattern: breaking them is a bad body (400), whatever
    // else is wrong.
    let len = |v: &Option<String>, max| {
        v.as_ref()
            .is_some_and(|v| !(1..=max).contains(&v.chars().count()))
    };
    if len(&s.label_key, 200)
        || len(&s.label_value, 200)
        || len(&s.time_zone, 64)
        || !(1..=200).contains(&s.cron.chars().count())
    {
        return Err(ApiError::bad_request(
            "invalid_body",
            "cron and labels are 1 to 200 characters, time_zone 1 to 64",
        ));
    }
    if s.repository_id.is_some_and(|id| id < 1) {
        return Err(ApiError::bad_request(
            "invalid_body",
            "repository_id must be a positive integer",
        ));
    }
    if let Some(stanza) = &s.stanza
        && !super::backups::valid_stanza_name(stanza)
    {
        // Regex engines where `$` also matches before a final newline accept "main\n": the
        // document's pattern allows it, the stanza cannot be.
        if stanza
            .strip_suffix('\n')
            .is_some_and(super::backups::valid_stanza_name)
        {
            return Err(bad("stanza must not end with a newline".into()));
        }
        return Err(ApiError::bad_request(
            "invalid_body",
            "stanza must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        ));
    }
    // A label schedule without a stanza covers every repository of the labelled instances
    // (label repositories derive a stanza per instance); a repository has its own stanza.
    let label = (&s.label_key, &s.label_value, &s.stanza);
    match (s.repository_id, label) {
        (Some(_), (None, None, None)) | (None, (Some(_), Some(_), _)) => {}
        _ => {
            return Err(bad(
                "give either repository_id (without stanza), or label_key and label_value \
                 (stanza optional)"
                    .into(),
            ));
        }
    }
    if s.check_sql
        .as_ref()
        .is_some_and(|q| !(1..=65_536).contains(&q.chars().count()))
        || s.scratch_dir
            .as_ref()
            .is_some_and(|d| d.chars().count() > 4096 || !d.starts_with('/'))
    {
        return Err(ApiError::bad_request(
            "invalid_body",
            "check_sql is 1 to 65536 characters, scratch_dir an absolute path of at most 4096",
        ));
    }
    match s.kind.unwrap_or_default() {
        ScheduleKind::Backup => {
            if s.backup_type.is_none() {
                return Err(bad(
                    "a backup schedule needs its type (full, diff or incr)".into()
                ));
            }
            if s.check_sql.is_some() || s.amcheck.is_some() || s.scratch_dir.is_some() {
                return Err(bad(
                    "check_sql, amcheck and scratch_dir are a drill's (kind drill)".into(),
                ));
            }
        }
        ScheduleKind::Drill => {
            if s.backup_type.is_some() {
                return Err(bad(
                    "a drill schedule restores the latest backup: it takes no type".into(),
                ));
            }
            if s.check_sql.as_ref().is_some_and(|q| q.contains('\0')) {
                return Err(bad("check_sql must not hold NUL".into()));
            }
            if s.scratch_dir
                .as_ref()
                .is_some_and(|d| d.chars().any(char::is_control))
            {
                return Err(bad("scratch_dir must be one line".into()));
            }
        }
    }
    When::parse(&s.cron, s.time_zone.as_deref().unwrap_or("UTC"))
        .map(|_| ())
        .map_err(|e| bad(e.to_string()))
}

#[utoipa::path(
    post,
    path = "/api/v1/backup/schedules",
    tag = "backups",
    security(("bearer" = [])),
    request_body = NewSchedule,
    responses(
        (status = 201, description = "The schedule", body = Schedule),
        ById,
        (status = 422, description = "A cron expression or time zone that does not parse, neither or both of repository and label, or a stanza with a repository", body = super::openapi::ErrorBody),
    )
)]
/// Needs admin on the instance or label.
pub async fn add(
    State(state): State<AppState>,
    principal: Principal,
    request: Result<Json<NewSchedule>, JsonRejection>,
) -> Result<(StatusCode, Json<Schedule>), ApiError> {
    let s = body(request)?;
    check(&s)?;
    match (s.repository_id, &s.label_key, &s.label_value) {
        (Some(repo), ..) => {
            let instance: Option<i64> =
                sqlx::query_scalar("SELECT instance_id FROM backup_repositories WHERE id = $1")
                    .bind(repo)
                    .fetch_optional(&state.pool)
                    .await?;
            let missing = || ApiError::not_found(format!("no backup repository {repo}"));
            let instance = instance.ok_or_else(missing)?;
            principal
                .require_on_instance(&state.pool, instance, Role::Admin)
                .await
                .map_err(|e| {
                    if e.status() == StatusCode::NOT_FOUND {
                        missing()
                    } else {
                        e
                    }
                })?;
        }
        (None, Some(k), Some(v)) => {
            if !may(&principal, &label(k, v), Role::Admin) {
                return Err(ApiError::forbidden(format!(
                    "a schedule of label {k}={v} needs role admin globally or on that label"
                )));
            }
        }
        _ => return Err(ApiError::unprocessable("invalid_schedule", "no target")),
    }
    let kind = s.kind.unwrap_or_default();
    let drill = kind == ScheduleKind::Drill;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO backup_schedules (repository_id, label_key, label_value, stanza, cron, \
         time_zone, kind, backup_type, drill_check_sql, drill_amcheck, drill_scratch_dir, \
         created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
    )
    .bind(s.repository_id)
    .bind(&s.label_key)
    .bind(&s.label_value)
    .bind(&s.stanza)
    .bind(s.cron.trim())
    .bind(s.time_zone.as_deref().unwrap_or("UTC"))
    .bind(kind.as_str())
    .bind(s.backup_type.map(ScheduledType::as_str))
    .bind(&s.check_sql)
    .bind(drill.then(|| s.amcheck.unwrap_or(true)))
    .bind(&s.scratch_dir)
    .bind(&principal.username)
    .fetch_one(&state.pool)
    .await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE s.id = $1")))
        .bind(id)
        .fetch_one(&state.pool)
        .await?;
    Ok((StatusCode::CREATED, Json(schedule(&row)?.0)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/backup/schedules/{id}",
    tag = "backups",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "Schedule id")),
    responses(
        (status = 204, description = "Removed, with its firings"),
        ById,
    )
)]
/// Needs admin on the instance or label.
pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(path, "schedule")?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE s.id = $1")))
        .bind(id)
        .fetch_optional(&state.pool)
        .await?;
    let missing = || ApiError::not_found(format!("no backup schedule {id}"));
    let (_, labels) = schedule(&row.ok_or_else(missing)?)?;
    if !may(&principal, &labels, Role::Viewer) {
        return Err(missing());
    }
    if !may(&principal, &labels, Role::Admin) {
        return Err(ApiError::forbidden(
            "removing a schedule needs role admin on its instance or label",
        ));
    }
    sqlx::query("DELETE FROM backup_schedules WHERE id = $1")
        .bind(id)
        .execute(&state.pool)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FiringQuery {
    #[param(minimum = 1)]
    pub schedule_id: Option<i64>,
    #[param(minimum = 1)]
    pub instance_id: Option<i64>,
    #[param(inline)]
    pub outcome: Option<Outcome>,
    /// 1..=1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/backup/firings",
    tag = "backups",
    security(("bearer" = [])),
    params(FiringQuery),
    responses(
        (status = 200, description = "Firings on the instances the caller views, newest first", body = FiringList),
        Filtered,
    )
)]
pub async fn firings(
    State(state): State<AppState>,
    principal: Principal,
    q: Result<Query<FiringQuery>, QueryRejection>,
) -> Result<Json<FiringList>, ApiError> {
    let q = query(q)?;
    check_id(q.schedule_id, "schedule_id")?;
    check_id(q.instance_id, "instance_id")?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be 1..=1000, not {limit}"),
        ));
    }
    let outcome = q.outcome.map(|o| match o {
        Outcome::Started => "started",
        Outcome::Missed => "missed",
        Outcome::Skipped => "skipped",
    });
    let rows = sqlx::query(
        "SELECT f.schedule_id, s.kind, f.repository_id, f.instance_id, f.fire_time, f.outcome, \
                f.reason, f.run_id, f.recorded_at, i.labels \
         FROM backup_schedule_firings f JOIN instances i ON i.id = f.instance_id \
         JOIN backup_schedules s ON s.id = f.schedule_id \
         WHERE ($1::bigint IS NULL OR f.schedule_id = $1) \
           AND ($2::bigint IS NULL OR f.instance_id = $2) \
           AND ($3::text IS NULL OR f.outcome = $3) \
         ORDER BY f.fire_time DESC, f.schedule_id, f.repository_id LIMIT $4",
    )
    .bind(q.schedule_id)
    .bind(q.instance_id)
    .bind(outcome)
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    let mut firings = Vec::new();
    for r in &rows {
        if !may(&principal, &r.try_get("labels")?, Role::Viewer) {
            continue;
        }
        let outcome = match r.try_get::<String, _>("outcome")?.as_str() {
            "started" => Outcome::Started,
            "missed" => Outcome::Missed,
            _ => Outcome::Skipped,
        };
        firings.push(Firing {
            schedule_id: r.try_get("schedule_id")?,
            kind: r.try_get("kind")?,
            repository_id: r.try_get("repository_id")?,
            instance_id: r.try_get("instance_id")?,
            fire_time: rfc3339(r.try_get::<DateTime<Utc>, _>("fire_time")?),
            outcome,
            reason: r.try_get("reason")?,
            run_id: r.try_get("run_id")?,
            recorded_at: rfc3339(r.try_get::<DateTime<Utc>, _>("recorded_at")?),
        });
    }
    Ok(Json(FiringList { firings }))
}
