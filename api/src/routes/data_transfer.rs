//! Data transfer, each a run on the instance's agent (docs/CONTROL.md, "Kinds"):
//! `POST /instances/{id}/export` (CSV), `POST /instances/{id}/dump` (pg_dump),
//! `POST /instances/{id}/import` (CSV body, all or nothing) — results via `/runs/{id}/download`.
//!
//! Export and a schema-only dump need user on the instance; anything that reads every row (a
//! data dump) or writes (import) needs admin on it.

use axum::Json;
use axum::body::Body;
use axum::http::StatusCode;
use lasect_runs::{DumpSqlParams, ExportCsvParams, ImportCsvParams, RunParams};
use serde::Deserialize;
use utoipa::IntoParams;

use super::ApiError;
use super::openapi::paths::InstancePath;
use super::openapi::responses::RunStarted;
use super::runs::WaitQuery;
use crate::auth::Role;
use crate::runs::call::{Admin, RunCall, RunQuery, WithWait};
use crate::runs::{self, RunLimits, RunView};
pub use lasect_api_contract::data::{DumpRequest, ExportRequest};

/// Largest CSV accepted by `import`.
pub const MAX_IMPORT_BYTES: usize = 32 << 20;
/// Exports and dumps may be large: their default byte limit.
const TRANSFER_MAX_BYTES: i64 = 1 << 30;

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/export",
    tag = "data",
    security(("bearer" = [])),
    params(InstancePath, WaitQuery),
    request_body = ExportRequest,
    responses(
        RunStarted,
        (status = 200, description = "The export run, ended; fetch /runs/{id}/download", body = RunView),
    )
)]
/// Exports a table or a query's rows as CSV. Needs user on the instance. 422: neither or both
/// of table and sql.
pub async fn export(call: RunCall<ExportRequest>) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let RunCall { target, body: r } = call;
    if r.table.is_some() == r.sql.is_some() {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "give either table (with schema) or sql",
        ));
    }
    let limits = r.limits.resolve(runs::MAX_MAX_ROWS, TRANSFER_MAX_BYTES)?;
    let params = RunParams::ExportCsv(ExportCsvParams {
        schema: r.schema,
        table: r.table,
        sql: r.sql,
        database: r.database,
    });
    target.start(params, limits).await
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/dump",
    tag = "data",
    security(("bearer" = [])),
    params(InstancePath, WaitQuery),
    request_body = DumpRequest,
    responses(
        RunStarted,
        (status = 200, description = "The dump run, ended; fetch /runs/{id}/download", body = RunView),
    )
)]
/// Runs pg_dump. Needs user on the instance; a dump with data (`schema_only: false`) needs
/// admin.
pub async fn dump(call: RunCall<DumpRequest>) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let RunCall { target, body: r } = call;
    let schema_only = r.schema_only.unwrap_or(true);
    if !schema_only {
        // A data dump is every row of every table: as much as an export.
        target.require(Role::Admin).await?;
    }
    let limits = r.limits.resolve(1, TRANSFER_MAX_BYTES)?;
    let params = RunParams::DumpSql(DumpSqlParams {
        schema: r.schema,
        table: r.table,
        schema_only,
        database: r.database,
    });
    target.start(params, limits).await
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Default public.
    pub schema: Option<String>,
    pub table: String,
    /// The first line names the columns (default true).
    pub header: Option<bool>,
    /// Database (default: the instance's).
    pub database: Option<String>,
    /// Seconds to wait for the end, 0..=120.
    #[param(maximum = 120)]
    pub wait: Option<u64>,
}

impl WithWait for ImportQuery {
    fn wait(&self) -> Option<u64> {
        self.wait
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/import",
    tag = "data",
    security(("bearer" = [])),
    params(InstancePath, ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "The CSV, at most 32 MiB"),
    responses(
        RunStarted,
        (status = 200, description = "The import run, ended (failed runs carry the per-row report in error_detail)", body = RunView),
        (status = 413, description = "The CSV is larger than 32 MiB", body = super::openapi::ErrorBody),
    )
)]
/// Imports a CSV into a table, all or nothing. Needs admin on the instance. 422: the CSV is
/// empty.
pub async fn import(
    call: RunQuery<ImportQuery, Admin>,
    csv: Body,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let RunQuery { target, query: q } = call;
    let data = axum::body::to_bytes(csv, MAX_IMPORT_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the CSV is larger than 32 MiB (or the upload broke)",
            )
        })?;
    if data.is_empty() {
        return Err(ApiError::unprocessable("invalid_body", "the CSV is empty"));
    }
    let limits = RunLimits {
        timeout_ms: Some(600_000),
        ..RunLimits::default()
    }
    .resolve(1, 1 << 20)?;
    let params = RunParams::ImportCsv(ImportCsvParams {
        // The agent's default, said here so the stored run shows it.
        schema: q.schema.unwrap_or_else(|| "public".to_owned()),
        table: q.table,
        header: q.header.unwrap_or(true),
        columns: None,
        database: q.database,
    });
    target.start_with_input(params, limits, &data).await
}
