//! `GET /api/v1/instances/{id}/statements/top?by=&from=&to=&limit=`: the statements that cost
//! the most over a range (FR14).
//!
//! The `statement` family stores per-interval deltas of pg_stat_statements, so the cost over a
//! range is the sum of the rows with `from <= time < to`, per pg_stat_statements entry
//! (`queryid`, `dbid`, `userid`, `toplevel`). The text comes from `statement_texts` (null when
//! the agent has not sent it). Orders (`by`), each descending, ties by the entry's key:
//!
//! | by | sorts on |
//! |---|---|
//! | `total_time` | `total_exec_time_ms` |
//! | `mean_time` | `mean_exec_time_ms` = total / calls (entries without calls last) |
//! | `calls` | `calls` |
//! | `rows` | `rows` |
//! | `io` | `io_blocks` = shared read + shared written + local read + temp read + temp written |
//!
//! `partial` is true when a row of the entry counts from a reset inside its interval (a lower
//! bound). `datname` is the database's name from the `database` family, when known.

use crate::auth::{Principal, Role};
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use chrono::TimeDelta;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::api_error::ApiError;
use super::auth_routes::path_params;
use super::instances::{self, Instance, rfc3339};
use super::metrics_series::parse_instance_id;
use super::openapi::paths::InstancePath;
use super::openapi::responses::ById;
use super::time_range::TimeRange;

pub const DEFAULT_TOP_LIMIT: u32 = 20;
pub const MAX_TOP_LIMIT: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TopBy {
    TotalTime,
    MeanTime,
    Calls,
    Rows,
    Io,
}

impl TopBy {
    /// The ORDER BY of the ranking (literals only).
    fn order(self) -> &'static str {
        match self {
            TopBy::TotalTime => "total_exec_time_ms DESC",
            TopBy::MeanTime => "mean_exec_time_ms DESC NULLS LAST",
            TopBy::Calls => "calls DESC",
            TopBy::Rows => "rows DESC",
            TopBy::Io => "io_blocks DESC",
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TopQuery {
    /// Ranking: total_time (default), mean_time, calls, rows or io.
    #[param(inline)]
    pub by: Option<TopBy>,
    /// Start (RFC 3339, inclusive); default `to` minus one hour.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End (RFC 3339, exclusive); default now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// How many statements, 1..=1000; default 20.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// One pg_stat_statements entry's totals over the range.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct TopStatement {
    pub queryid: i64,
    pub dbid: i64,
    pub datname: Option<String>,
    pub userid: i64,
    pub toplevel: bool,
    /// The normalized query text, when known.
    pub query: Option<String>,
    pub calls: i64,
    pub rows: i64,
    pub total_exec_time_ms: f64,
    pub mean_exec_time_ms: Option<f64>,
    pub total_plan_time_ms: f64,
    pub shared_blks_hit: i64,
    pub io_blocks: i64,
    pub io_time_ms: f64,
    /// Sample intervals summed.
    pub intervals: i64,
    pub partial: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopStatements {
    pub instance: Instance,
    pub by: TopBy,
    pub from: String,
    pub to: String,
    pub statements: Vec<TopStatement>,
}

fn top_sql(by: TopBy) -> String {
    let order = by.order();
    format!(
        "WITH agg AS (
             SELECT queryid, dbid, userid, toplevel,
                    coalesce(sum(calls), 0)::int8 AS calls,
                    coalesce(sum(rows), 0)::int8 AS rows,
                    coalesce(sum(total_exec_time_ms), 0)::float8 AS total_exec_time_ms,
                    coalesce(sum(total_plan_time_ms), 0)::float8 AS total_plan_time_ms,
                    coalesce(sum(shared_blks_hit), 0)::int8 AS shared_blks_hit,
                    coalesce(sum(coalesce(shared_blks_read, 0) + coalesce(shared_blks_written, 0)
                        + coalesce(local_blks_read, 0) + coalesce(temp_blks_read, 0)
                        + coalesce(temp_blks_written, 0)), 0)::int8 AS io_blocks,
                    coalesce(sum(coalesce(shared_blk_read_time_ms, 0)
                        + coalesce(shared_blk_write_time_ms, 0)), 0)::float8 AS io_time_ms,
                    count(*)::int8 AS intervals,
                    bool_or(since_reset) AS partial
             FROM metric_statement
             WHERE instance_id = $1 AND time >= $2 AND time < $3
             GROUP BY queryid, dbid, userid, toplevel
         ), ranked AS (
             SELECT *, total_exec_time_ms / nullif(calls, 0) AS mean_exec_time_ms FROM agg
             ORDER BY {order}, queryid, dbid, userid, toplevel
             LIMIT $4
         )
         SELECT r.*, t.query,
                (SELECT d.datname FROM metric_database d
                 WHERE d.instance_id = $1 AND d.datid = r.dbid AND d.time < $3
                 ORDER BY d.time DESC LIMIT 1) AS datname
         FROM ranked r
         LEFT JOIN statement_texts t ON t.instance_id = $1 AND t.queryid = r.queryid
         ORDER BY {order}, queryid, dbid, userid, toplevel"
    )
}

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/statements/top",
    tag = "statements",
    security(("bearer" = [])),
    params(InstancePath, TopQuery),
    responses(
        (status = 200, description = "The top statements", body = TopStatements),
        ById,
        (status = 422, description = "A reversed or too long range", body = super::openapi::ErrorBody),
    )
)]
/// Needs viewer on the instance.
pub async fn top(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<TopQuery>, QueryRejection>,
) -> Result<Json<TopStatements>, ApiError> {
    let id = path_params(path)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let id = parse_instance_id(&id)?;
    principal
        .require_on_instance(&state.pool, id, Role::Viewer)
        .await?;
    let range = TimeRange::parse(
        query.from.as_deref(),
        query.to.as_deref(),
        TimeDelta::hours(1),
    )?;
    let limit = query.limit.unwrap_or(DEFAULT_TOP_LIMIT);
    if !(1..=MAX_TOP_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_TOP_LIMIT}, not {limit}"),
        ));
    }
    let by = query.by.unwrap_or(TopBy::TotalTime);
    let Some(instance) = instances::find(&state, id).await? else {
        return Err(ApiError::not_found(format!("no instance with id {id}")));
    };
    // `top_sql` only inserts one of the literal orders of `TopBy`.
    let statements: Vec<TopStatement> = sqlx::query_as(sqlx::AssertSqlSafe(top_sql(by)))
        .bind(instance.id)
        .bind(range.from)
        .bind(range.to)
        .bind(i64::from(limit))
        .fetch_all(&state.pool)
        .await?;
    Ok(Json(TopStatements {
        instance,
        by,
        from: rfc3339(range.from),
        to: rfc3339(range.to),
        statements,
    }))
}
