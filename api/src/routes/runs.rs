//! Runs: `POST /api/v1/instances/{id}/sql`, `POST /api/v1/instances/{id}/explain`,
//! `GET /api/v1/runs`, `GET /api/v1/runs/{id}`, `GET /api/v1/runs/{id}/result`,
//! `GET /api/v1/runs/{id}/download`, `POST /api/v1/runs/{id}/cancel`.
//!
//! The API only writes and reads the `runs` table: the agent serving the instance executes
//! (docs/CONTROL.md). Roles: reading SQL and EXPLAIN need `user` on the instance, writes
//! (`write: true`) need `admin` on it; a run's metadata is visible to viewers of its instance,
//! its parameters and result as [`crate::runs::access`] says; cancelling needs to be the
//! requester or an admin.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use super::openapi::paths::InstancePath;
use super::openapi::responses::{ById, Filtered, RunStarted};
use super::{ApiError, AppState};
use crate::auth::{Principal, Role};
use crate::runs::access::{RunAccess, is_requester};
use crate::runs::call::{RunCall, RunTarget};
use crate::runs::{self, ForAccess as _, NewRun, RunRow, RunView};
pub use lasect_api_contract::runs::{ExplainRequest, ResultPage, RunList, SqlRequest};
use lasect_runs::{ExplainParams, ResultShape, RunKind, RunParams, SqlParams};

pub(crate) fn path_id(
    path: Result<Path<String>, PathRejection>,
    what: &str,
) -> Result<i64, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    positive_id(&raw, what)
}

/// One id segment of a path: a positive integer, else 400 naming `what`.
pub(crate) fn positive_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_path",
            format!("{what} id must be a positive integer, not {raw:?}"),
        )
    })
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds to wait for the run to end, 0..=120 (default 0: answer at once).
    #[param(minimum = 0, maximum = 120)]
    pub wait: Option<u64>,
}

impl WaitQuery {
    pub fn duration(q: Result<Query<WaitQuery>, QueryRejection>) -> Result<Duration, ApiError> {
        Ok(Self::parse(q)?.unwrap_or(Duration::ZERO))
    }

    /// The wait asked for; `None` when the query gives none.
    pub fn parse(
        q: Result<Query<WaitQuery>, QueryRejection>,
    ) -> Result<Option<Duration>, ApiError> {
        let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
        wait_secs(q.wait)
    }
}

/// `?wait=` in seconds, 0..=120, else 400 `invalid_query`.
pub(crate) fn wait_secs(wait: Option<u64>) -> Result<Option<Duration>, ApiError> {
    match wait {
        None => Ok(None),
        Some(s) if s <= runs::MAX_WAIT_SECS => Ok(Some(Duration::from_secs(s))),
        Some(s) => Err(ApiError::bad_request(
            "invalid_query",
            format!("wait must be 0..={}, not {s}", runs::MAX_WAIT_SECS),
        )),
    }
}

/// 202 while the run is not over, 200 once it is.
pub(crate) fn run_response(run: RunView) -> (StatusCode, Json<RunView>) {
    let status = if run.is_terminal() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    (status, Json(run))
}

/// The answer to a call that waited for its run and did not get a success: 422 with the run's
/// error and detail when it ended, else 202 with the run, which goes on (its agent is slow or
/// offline: the run ends by itself, at the latest when its queue timeout or timeout passes;
/// follow it at `/api/v1/runs/{id}`). The 422 body is the error shape plus the run id and the
/// agent's report (`CheckFailed`).
pub(crate) fn not_succeeded(run: RunView) -> Response {
    if !run.is_terminal() {
        return run_response(run).into_response();
    }
    let (status, message) = (
        StatusCode::UNPROCESSABLE_ENTITY,
        run.error
            .clone()
            .unwrap_or_else(|| format!("the run ended {}", run.status)),
    );
    let body = json!({
        "error": { "code": "run_failed", "message": message },
        "run_id": run.id,
        "check": run.error_detail.clone().or_else(|| run.summary.clone()),
    });
    (status, Json(body)).into_response()
}

/// Creates a run and waits for it: the run when it succeeded, else the answer to give.
pub(crate) async fn ask(
    state: &AppState,
    run: NewRun<'_>,
    wait: Duration,
) -> Result<Result<RunView, Response>, ApiError> {
    let id = runs::create(&state.pool, run).await?;
    let run = runs::wait(&state.pool, id, wait).await?;
    if run.succeeded() {
        Ok(Ok(run))
    } else {
        // Not over yet (`wait=0` asks not to wait at all): 202, the run goes on.
        Ok(Err(not_succeeded(run)))
    }
}

/// Creates the run, waits as asked, answers with it.
pub(crate) async fn start(
    state: &AppState,
    run: NewRun<'_>,
    wait: Duration,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let id = runs::create(&state.pool, run).await?;
    Ok(run_response(runs::wait(&state.pool, id, wait).await?))
}

/// How long the calls that answer with a run's result wait for it by default.
pub(crate) const READ_WAIT: Duration = Duration::from_secs(30);

/// A run on instance `id` asked for by `principal`, without input.
pub(crate) fn new_run<'a>(
    principal: &Principal,
    id: i64,
    params: RunParams,
    limits: (i64, i64, i64, i64),
) -> NewRun<'a> {
    NewRun {
        instance_id: id,
        params,
        requested_by: runs::requested_by(principal),
        limits,
        input: None,
    }
}

/// Longest statement accepted, in characters (code points, as JSON Schema counts them).
const MAX_SQL_CHARS: usize = 1 << 20;

/// The statement is sane, and a write is asked for by an admin of the instance.
async fn check_sql(target: &RunTarget, sql: &str, write: bool) -> Result<(), ApiError> {
    if write {
        target.require(Role::Admin).await?;
    }
    if sql.is_empty() || sql.chars().count() > MAX_SQL_CHARS {
        return Err(ApiError::bad_request(
            "invalid_body",
            "sql must have 1 to 1048576 characters",
        ));
    }
    if sql.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "sql is blank: there is no statement to run",
        ));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/sql",
    tag = "runs",
    security(("bearer" = [])),
    params(InstancePath, WaitQuery),
    request_body = SqlRequest,
    responses(RunStarted)
)]
/// Runs a statement on the instance. Needs user on it; `write: true` needs admin. 422: the
/// statement is blank.
pub async fn sql(call: RunCall<SqlRequest>) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let RunCall { target, body: r } = call;
    check_sql(&target, &r.sql, r.write).await?;
    let limits = r
        .limits
        .resolve(runs::DEFAULT_MAX_ROWS, runs::DEFAULT_MAX_BYTES)?;
    let params = RunParams::Sql(SqlParams {
        sql: r.sql,
        params: r.params,
        write: r.write,
        database: r.database,
    });
    target.start(params, limits).await
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/explain",
    tag = "runs",
    security(("bearer" = [])),
    params(InstancePath, WaitQuery),
    request_body = ExplainRequest,
    responses(
        RunStarted,
        (status = 200, description = "The run, ended; summary.plan is the plan tree", body = RunView),
    )
)]
/// EXPLAINs a statement on the instance. Needs user on it; `write: true` (an ANALYZE that
/// may write) needs admin. 422: the statement is blank.
pub async fn explain(
    call: RunCall<ExplainRequest>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let RunCall { target, body: r } = call;
    check_sql(&target, &r.sql, r.write).await?;
    let limits = r
        .limits
        .resolve(runs::DEFAULT_MAX_ROWS, runs::DEFAULT_MAX_BYTES)?;
    let params = RunParams::Explain(ExplainParams {
        sql: r.sql,
        params: r.params,
        analyze: r.analyze,
        write: r.write,
        database: r.database,
    });
    target.start(params, limits).await
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunListQuery {
    /// Only runs on this instance.
    pub instance: Option<i64>,
    /// Only runs with this status.
    pub status: Option<String>,
    /// Only runs of this kind.
    pub kind: Option<String>,
    /// 1..=500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/runs",
    tag = "runs",
    security(("bearer" = [])),
    params(RunListQuery),
    responses(
        (status = 200, description = "Runs on the instances the caller sees, newest first", body = RunList),
        Filtered,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<RunListQuery>, QueryRejection>,
) -> Result<Json<RunList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be 1..=500, not {limit}"),
        ));
    }
    let rows: Vec<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{} WHERE ($1::bigint IS NULL OR r.instance_id = $1) \
         AND ($2::text IS NULL OR r.status = $2) AND ($3::text IS NULL OR r.kind = $3) \
         ORDER BY r.id DESC LIMIT $4",
        runs::SELECT_RUNS
    )))
    .bind(q.instance)
    .bind(&q.status)
    .bind(&q.kind)
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(RunList {
        runs: rows
            .into_iter()
            .filter_map(|r| {
                let access = r.access(&principal)?;
                Some(RunView::from(r).for_access(access))
            })
            .collect(),
    }))
}

/// The run as the caller may see it, and how much it sees (404 when it may not see the run at
/// all, like a missing one).
pub(crate) async fn visible_run(
    state: &AppState,
    principal: &Principal,
    id: i64,
) -> Result<(RunView, RunAccess), ApiError> {
    let row = runs::load(&state.pool, id).await?;
    match row.as_ref().and_then(|r| r.access(principal)) {
        Some(access) => {
            let run = row
                .map(RunView::from)
                .ok_or_else(|| ApiError::internal(format!("run {id} vanished while being read")))?;
            Ok((run.for_access(access), access))
        }
        None => Err(ApiError::not_found(format!("no run with id {id}"))),
    }
}

/// The run when the caller may read its parameters and result (403 naming who may otherwise).
async fn readable_run(
    state: &AppState,
    principal: &Principal,
    id: i64,
) -> Result<RunView, ApiError> {
    let row = runs::load(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run with id {id}")))?;
    match row.access(principal) {
        Some(RunAccess::Full) => Ok(RunView::from(row)),
        Some(RunAccess::Metadata) => {
            let needed = row.role_to_create();
            let run = RunView::from(row);
            Err(ApiError::forbidden(format!(
                "the result of run {id} is visible to its requester ({}), admins of instance {} \
                 and those with role {needed} there",
                run.requested_by, run.instance_name,
            )))
        }
        None => Err(ApiError::not_found(format!("no run with id {id}"))),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}",
    tag = "runs",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "Run id"), WaitQuery),
    responses(
        (status = 200, description = "The run", body = RunView),
        (status = 400, description = "Bad id", body = super::openapi::ErrorBody),
        (status = 401, description = "Not authenticated", body = super::openapi::ErrorBody),
        (status = 404, description = "No such run (or not visible)", body = super::openapi::ErrorBody),
        (status = 503, description = "Store unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Json<RunView>, ApiError> {
    let id = path_id(path, "run")?;
    let wait = WaitQuery::duration(query)?;
    let (_, access) = visible_run(&state, &principal, id).await?;
    Ok(Json(
        runs::wait(&state.pool, id, wait).await?.for_access(access),
    ))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page number, from 0 (default 0).
    #[param(minimum = 0)]
    pub page: Option<i32>,
}

#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}/result",
    tag = "runs",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "Run id"), PageQuery),
    responses(
        (status = 200, description = "One page of rows", body = ResultPage),
        ById,
        (status = 409, description = "The run's kind has no row result (use /download)", body = super::openapi::ErrorBody),
    )
)]
/// One page of a run's rows. 403: only the run's metadata is visible to the caller.
pub async fn result(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<ResultPage>, ApiError> {
    let id = path_id(path, "run")?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let page = q.page.unwrap_or(0);
    if page < 0 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "page must be 0 or more",
        ));
    }
    let run = readable_run(&state, &principal, id).await?;
    if run.kind.parse::<RunKind>().map(RunKind::result) != Ok(ResultShape::Rows) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_rows",
            format!("a {} run has no rows; use /download", run.kind),
        ));
    }
    let columns = run
        .summary
        .as_ref()
        .and_then(|s| s.get("columns").cloned())
        .unwrap_or_else(|| json!([]));
    if run.pages == 0 && page == 0 {
        return Ok(Json(ResultPage {
            run_id: id,
            page,
            pages: 0,
            columns,
            rows: Vec::new(),
        }));
    }
    let data = runs::page(&state.pool, id, page).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "run {id} has no page {page} (there are {}, kept until their TTL)",
            run.pages
        ))
    })?;
    let rows: Vec<Value> = serde_json::from_slice(&data).map_err(ApiError::internal)?;
    Ok(Json(ResultPage {
        run_id: id,
        page,
        pages: run.pages,
        columns,
        rows,
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}/download",
    tag = "runs",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "Run id")),
    responses(
        (status = 200, description = "The result's bytes, streamed: CSV (export_csv), SQL (dump_sql), JSON (schema_snapshot), else octet-stream; `Content-Disposition: attachment` names the file `run-{id}.csv|sql|json|bin`",
            content(
                (String = "text/csv; charset=utf-8"),
                (String = "application/sql"),
                (String = "application/json"),
                (String = "application/octet-stream"),
            ),
            headers(("content-disposition" = String, description = "`attachment; filename=\"run-{id}.csv\"` (or .sql, .json, .bin)"))),
        ById,
        (status = 409, description = "The run has not succeeded", body = super::openapi::ErrorBody),
    )
)]
/// The result of a run as a file. 403: only the run's metadata is visible to the caller.
pub async fn download(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_id(path, "run")?;
    let run = readable_run(&state, &principal, id).await?;
    if !run.succeeded() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("run {id} is {}, there is nothing to download", run.status),
        ));
    }
    let content_type = match run.kind.parse::<RunKind>().map(RunKind::result) {
        Ok(ResultShape::Bytes { content_type }) => content_type,
        _ => "application/octet-stream",
    };
    // A file to save, never a page to render: a browser following the link (the console's
    // Download) stores it under this name, and a CSV cell or dump line holding markup is
    // never interpreted.
    let disposition = format!(
        "attachment; filename=\"run-{id}.{}\"",
        file_extension(content_type)
    );
    let pool = state.pool.clone();
    let pages = run.pages;
    // One page in memory at a time.
    let stream = futures::stream::unfold(0, move |page| {
        let pool = pool.clone();
        async move {
            if page >= pages {
                return None;
            }
            let item = match runs::page(&pool, id, page).await {
                Ok(Some(data)) => Ok(bytes::Bytes::from(data)),
                Ok(None) => Err(std::io::Error::other(format!("page {page} is gone"))),
                Err(e) => Err(std::io::Error::other(e.message().to_owned())),
            };
            Some((item, page + 1))
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The file name extension of a run result of this content type.
fn file_extension(content_type: &str) -> &'static str {
    match content_type.split(';').next().map(str::trim) {
        Some("text/csv") => "csv",
        Some("application/sql") => "sql",
        Some("application/json") => "json",
        _ => "bin",
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/runs/{id}/cancel",
    tag = "runs",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "Run id")),
    responses(
        (status = 200, description = "The run after the cancel was asked for", body = RunView),
        ById,
    )
)]
/// Asks the agent to cancel the run. Needs to be its requester or an admin of its instance.
pub async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RunView>, ApiError> {
    let id = path_id(path, "run")?;
    let (run, access) = visible_run(&state, &principal, id).await?;
    if !is_requester(&principal, &run.requested_by) {
        principal
            .require_on_instance(&state.pool, run.instance_id, Role::Admin)
            .await?;
    }
    runs::cancel(&state.pool, id).await?;
    Ok(Json(
        runs::wait(&state.pool, id, Duration::ZERO)
            .await?
            .for_access(access),
    ))
}
