//! Silences: `GET /api/v1/alerts/silences`, `POST /api/v1/alerts/silences`,
//! `DELETE /api/v1/alerts/silences/{id}`.
//!
//! A silence matches alerts by their labels (the selector syntax: `alertname=deadlocks,
//! env=staging`) for `duration_secs`, from now or `starts_in_secs` ahead (a maintenance
//! window). Silenced alerts still change state and are recorded (`silenced` in the
//! history); notifications skip them. Every authenticated caller
//! lists silences; adding and removing one needs the global role `user`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};

use super::auth_routes::{body, path_params};
use super::instances::rfc3339;
use super::openapi::responses::{ById, SignedIn, WithInput};
use super::{ApiError, AppState};
use crate::alerts::selector;
use crate::auth::principal::Principal;
use crate::auth::role::Role;

pub use lasect_api_contract::alerts::{NewSilence, Silence, SilenceList};

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    matchers: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    comment: String,
    created_by: String,
    removed_at: Option<DateTime<Utc>>,
    removed_by: Option<String>,
    active: bool,
}

impl From<Row> for Silence {
    fn from(r: Row) -> Self {
        Silence {
            id: r.id,
            matchers: r.matchers,
            starts_at: rfc3339(r.starts_at),
            ends_at: rfc3339(r.ends_at),
            comment: r.comment,
            created_by: r.created_by,
            removed_at: r.removed_at.map(rfc3339),
            removed_by: r.removed_by,
            active: r.active,
        }
    }
}

const SELECT: &str = "SELECT id, matchers, starts_at, ends_at, comment, created_by, removed_at, \
     removed_by, (removed_at IS NULL AND starts_at <= now() AND ends_at > now()) AS active \
     FROM alert_silences";

#[utoipa::path(
    get,
    path = "/api/v1/alerts/silences",
    tag = "alerts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Silences not ended or removed more than a week ago, newest first", body = SilenceList),
        SignedIn,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    _principal: Principal,
) -> Result<Json<SilenceList>, ApiError> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE coalesce(least(removed_at, ends_at), ends_at) > now() - interval '7 days' \
         ORDER BY id DESC LIMIT 1000"
    )))
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(SilenceList {
        silences: rows.into_iter().map(Silence::from).collect(),
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/alerts/silences",
    tag = "alerts",
    request_body = NewSilence,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The silence", body = Silence),
        WithInput,
        (status = 422, description = "The matchers do not parse (the message gives the position) or match everything", body = super::openapi::ErrorBody),
    )
)]
/// Needs the global user role.
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    request: Result<Json<NewSilence>, JsonRejection>,
) -> Result<(StatusCode, Json<Silence>), ApiError> {
    principal.require(Role::User)?;
    let request = body(request)?;
    let len = |s: &str| s.chars().count();
    if !(1..=1000).contains(&len(&request.matchers)) || !(1..=1000).contains(&len(&request.comment))
    {
        return Err(ApiError::bad_request(
            "invalid_body",
            "matchers and comment are 1 to 1000 characters",
        ));
    }
    if request.starts_in_secs.is_some_and(|s| s > 31_536_000) {
        return Err(ApiError::bad_request(
            "invalid_body",
            "starts_in_secs must be 0 to 31536000",
        ));
    }
    if !(60..=31_536_000).contains(&request.duration_secs) {
        return Err(ApiError::bad_request(
            "invalid_body",
            "duration_secs must be 60 to 31536000",
        ));
    }
    let matchers = selector::parse(&request.matchers)
        .map_err(|e| ApiError::unprocessable("invalid_silence", format!("matchers: {e}")))?;
    if matchers.is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_silence",
            "matchers: at least one matcher (a silence of everything hides every alert)",
        ));
    }
    if request.comment.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_silence",
            "comment: must not be blank",
        ));
    }
    let row: Row = sqlx::query_as(
        "INSERT INTO alert_silences (matchers, starts_at, ends_at, comment, created_by) \
         VALUES ($1, now() + make_interval(secs => $5), \
                 now() + make_interval(secs => $5 + $2), $3, $4) \
         RETURNING id, matchers, starts_at, ends_at, comment, created_by, removed_at, removed_by, \
           starts_at <= now() AS active",
    )
    .bind(&request.matchers)
    .bind(f64::from(request.duration_secs))
    .bind(&request.comment)
    .bind(&principal.username)
    .bind(f64::from(request.starts_in_secs.unwrap_or(0)))
    .fetch_one(&state.pool)
    .await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

#[utoipa::path(
    delete,
    path = "/api/v1/alerts/silences/{id}",
    tag = "alerts",
    params(("id" = i64, Path, minimum = 1, description = "Silence id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The silence, removed (removing twice changes nothing)", body = Silence),
        ById,
    )
)]
/// Needs the global user role.
pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<Silence>, ApiError> {
    principal.require(Role::User)?;
    let id = path_params(path)?;
    sqlx::query(
        "UPDATE alert_silences SET removed_at = now(), removed_by = $2 \
         WHERE id = $1 AND removed_at IS NULL",
    )
    .bind(id)
    .bind(&principal.username)
    .execute(&state.pool)
    .await?;
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
        .bind(id)
        .fetch_optional(&state.pool)
        .await?;
    row.map(|r| Json(r.into()))
        .ok_or_else(|| ApiError::not_found(format!("no silence with id {id}")))
}
