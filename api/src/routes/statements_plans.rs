//! `GET /api/v1/instances/{id}/statements/{queryid}/plans?since=&limit=`: the recent
//! auto_explain plans of one statement, newest first.
//!
//! The agent reads auto_explain's output from the server log into the `log_plans` family
//! (`agent/src/logs/`): each plan with its time, duration, database, user, query text and
//! query id (the plan's own `Query Identifier` when `auto_explain.log_verbose` printed it,
//! PostgreSQL 16+, else the log line's: csvlog/jsonlog `query_id`, stderr `%Q`), redacted like the log's
//! statements and cut to the agent's plan cap (`truncated`). A plan is linked to the
//! statement by that query id, which is pg_stat_statements' `queryid` when
//! `compute_query_id` is on (or `auto`, with pg_stat_statements loaded).
//!
//! Who may read: viewers of the instance, as for its log events and statement texts (the
//! `log` and `statement` families), which show the same redacted SQL.
//!
//! `format` is `json` when the plan is a JSON document (`auto_explain.log_format = json`,
//! not cut), else `text` (text format, or a JSON plan cut short, shown as it is).

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::api_error::ApiError;
use super::audit_log::parse_since;
use super::auth_routes::path_params;
use super::instances::{self, Instance, rfc3339};
use super::metrics_series::parse_instance_id;
use super::openapi::paths::InstancePath;
use super::openapi::responses::ById;
use crate::auth::{Principal, Role};

pub const DEFAULT_PLANS_LIMIT: u32 = 20;
/// Plans are up to the agent's plan cap (256 KiB) each: a page stays a few MiB at most.
pub const MAX_PLANS_LIMIT: u32 = 100;
/// How far back by default: recent plans, without scanning the family's whole retention.
const DEFAULT_SINCE: TimeDelta = TimeDelta::days(1);

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PlansQuery {
    /// Oldest plan: RFC 3339, or a duration back from now (`90s`, `15m`, `2h`, `7d`, or
    /// seconds); default one day back.
    pub since: Option<String>,
    /// How many plans, newest first, 1..=100; default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// How the plan is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanFormat {
    /// A JSON document (`auto_explain.log_format = json`): `{"Query Text": …, "Plan": {…}}`.
    Json,
    /// Text as EXPLAIN prints it, or a JSON plan that does not parse (cut short).
    Text,
}

/// One auto_explain plan.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatementPlan {
    /// When the statement ended (the log entry's time), RFC 3339.
    pub time: String,
    /// The statement's duration as auto_explain logged it.
    pub duration_ms: Option<f64>,
    pub database: Option<String>,
    pub user_name: Option<String>,
    pub pid: Option<i32>,
    /// The statement's text, literals redacted.
    pub query_text: Option<String>,
    pub format: PlanFormat,
    /// The plan, constants of conditions, outputs and parameters redacted.
    pub plan: String,
    /// The agent cut the plan or its query text (too long); null from agents older than this
    /// field.
    pub truncated: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatementPlans {
    pub instance: Instance,
    pub queryid: i64,
    /// The oldest time looked at, RFC 3339.
    pub since: String,
    /// Newest first.
    pub plans: Vec<StatementPlan>,
}

#[derive(sqlx::FromRow)]
struct Row {
    time: DateTime<Utc>,
    duration_ms: Option<f64>,
    database: Option<String>,
    user_name: Option<String>,
    pid: Option<i32>,
    query_text: Option<String>,
    plan: String,
    plan_truncated: Option<bool>,
}

fn format_of(plan: &str) -> PlanFormat {
    let json = plan.trim_start().starts_with('{')
        && serde_json::from_str::<serde::de::IgnoredAny>(plan).is_ok();
    if json {
        PlanFormat::Json
    } else {
        PlanFormat::Text
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/statements/{queryid}/plans",
    tag = "statements",
    security(("bearer" = [])),
    params(
        InstancePath,
        ("queryid" = i64, Path, description = "The statement's query id (pg_stat_statements' queryid)"),
        PlansQuery,
    ),
    responses(
        (status = 200, description = "The statement's recent plans, newest first", body = StatementPlans),
        ById,
        (status = 422, description = "since is neither RFC 3339 nor a duration", body = super::openapi::ErrorBody),
    )
)]
/// Needs viewer on the instance.
pub async fn plans(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<PlansQuery>, QueryRejection>,
) -> Result<Json<StatementPlans>, ApiError> {
    let (id, queryid) = path_params(path)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let id = parse_instance_id(&id)?;
    principal
        .require_on_instance(&state.pool, id, Role::Viewer)
        .await?;
    let queryid: i64 = queryid.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_queryid",
            format!("queryid must be a 64-bit integer, not {queryid:?}"),
        )
    })?;
    let limit = query.limit.unwrap_or(DEFAULT_PLANS_LIMIT);
    if !(1..=MAX_PLANS_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_PLANS_LIMIT}, not {limit}"),
        ));
    }
    let now = Utc::now();
    let since = match &query.since {
        None => now - DEFAULT_SINCE,
        Some(s) => parse_since(s, now).ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_query",
                format!("since must be RFC 3339 or a duration like 15m, 2h, 7d; not {s:?}"),
            )
        })?,
    };
    let Some(instance) = instances::find(&state, id).await? else {
        return Err(ApiError::not_found(format!("no instance with id {id}")));
    };
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT time, duration_ms, database, user_name, pid, query_text, plan, plan_truncated \
         FROM metric_log_plans \
         WHERE instance_id = $1 AND query_id = $2 AND time >= $3 \
         ORDER BY time DESC, pid DESC NULLS LAST LIMIT $4",
    )
    .bind(instance.id)
    .bind(queryid)
    .bind(since)
    .bind(i64::from(limit))
    .fetch_all(&state.pool)
    .await?;
    let plans = rows
        .into_iter()
        .map(|r| StatementPlan {
            time: rfc3339(r.time),
            duration_ms: r.duration_ms,
            database: r.database,
            user_name: r.user_name,
            pid: r.pid,
            query_text: r.query_text,
            format: format_of(&r.plan),
            plan: r.plan,
            truncated: r.plan_truncated,
        })
        .collect();
    Ok(Json(StatementPlans {
        instance,
        queryid,
        since: rfc3339(since),
        plans,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_whole_json_document_is_json() {
        assert_eq!(format_of("{\"Plan\": {}}"), PlanFormat::Json);
        assert_eq!(format_of("  {\"Plan\": {\"Node"), PlanFormat::Text);
        assert_eq!(
            format_of("Seq Scan on t  (cost=0.00..1.01 rows=1 width=4)"),
            PlanFormat::Text
        );
    }
}
