//! `GET /api/v1/audit?since=&actor=&action=&limit=` (admin): the audit log, newest first.
//!
//! `since` is RFC 3339 or a duration back from now (`90s`, `15m`, `1h`, `7d`, or seconds);
//! `action` matches as a prefix (`POST /api/v1/users` finds every user change); `limit` is
//! 1..=1000 (default 100).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;

use super::instances::rfc3339;
use super::openapi::responses::WithInput;
use super::{ApiError, AppState};
use crate::auth::principal::Principal;
use crate::auth::role::Role;

pub use lasect_api_contract::audit::{AuditList, AuditRow};

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub since: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// 1..=1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    time: DateTime<Utc>,
    actor: String,
    action: String,
    target: Option<String>,
    source: Option<String>,
    outcome: String,
    error: Option<String>,
}

/// `15m`, `2h`, `30s`, `7d` (or bare seconds, see `lasect_duration`), or an RFC 3339 time.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let back = lasect_duration::parse(text, &lasect_duration::SECONDS).ok()?;
    now.checked_sub_signed(TimeDelta::from_std(back).ok()?)
}

#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Audit entries, newest first", body = AuditList),
        WithInput,
        (status = 422, description = "since is neither RFC 3339 nor a duration", body = super::openapi::ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditList>, ApiError> {
    principal.require(Role::Admin)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let since = match &query.since {
        None => None,
        Some(s) => Some(parse_since(s, Utc::now()).ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_query",
                format!("since must be RFC 3339 or a duration like 15m, 2h, 7d; not {s:?}"),
            )
        })?),
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_LIMIT}, not {limit}"),
        ));
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, time, actor, action, target, source, outcome, error FROM audit_log \
         WHERE ($1::timestamptz IS NULL OR time >= $1) \
           AND ($2::text IS NULL OR actor = $2) \
           AND ($3::text IS NULL OR starts_with(action, $3)) \
         ORDER BY time DESC, id DESC LIMIT $4",
    )
    .bind(since)
    .bind(&query.actor)
    .bind(&query.action)
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(AuditList {
        entries: rows
            .into_iter()
            .map(|r| AuditRow {
                id: r.id,
                time: rfc3339(r.time),
                actor: r.actor,
                action: r.action,
                target: r.target,
                source: r.source,
                outcome: r.outcome,
                error: r.error,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_durations_and_times() {
        let now = Utc::now();
        assert_eq!(parse_since("15m", now), Some(now - TimeDelta::minutes(15)));
        assert_eq!(parse_since("2h", now), Some(now - TimeDelta::hours(2)));
        assert_eq!(parse_since("7d", now), Some(now - TimeDelta::days(7)));
        assert!(parse_since("2025-01-02T03:04:05Z", now).is_some());
        for bad in ["", "m", "5x", "-5m", "abc", "99999999999999999d"] {
            assert_eq!(parse_since(bad, now), None, "{bad}");
        }
    }
}
