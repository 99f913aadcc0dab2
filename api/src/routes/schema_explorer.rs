//! The schema explorer, each read a run on the instance's agent or a stored snapshot
//! (docs/CONTROL.md, "Kinds"): `POST /instances/{id}/schema/snapshots`,
//! `GET /instances/{id}/schema`, `GET /instances/{id}/schema/changes`,
//! `GET /instances/{id}/schema/graph`, `GET /instances/{id}/tables/{schema}/{table}/rows`
//! (keyset pages).
//!
//! Reading (snapshots, changes, graph) needs viewer; asking the agent for a snapshot or rows
//! needs user on the instance.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use lasect_runs::{RunParams, SchemaDocument, SchemaSnapshotParams, TableDataParams};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::IntoParams;

use super::instances::rfc3339;
use super::openapi::paths::InstancePath;
use super::openapi::responses::{ById, RunAnswered, RunStarted};
use super::runs::{READ_WAIT, WaitQuery, path_id};
use super::{ApiError, AppState};
use crate::auth::{Principal, Role};
use crate::runs::call::{RunCall, RunQuery, WithWait};
use crate::runs::{self, RunLimits, RunView};
pub use lasect_api_contract::schema::{
    ForeignKeyGraph, GraphEdge, GraphNode, SchemaChange, SchemaChanges, SchemaSnapshot,
    SnapshotRequest,
};

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/schema/snapshots",
    tag = "schema",
    security(("bearer" = [])),
    params(InstancePath, WaitQuery),
    request_body = SnapshotRequest,
    responses(RunStarted)
)]
/// Asks the agent for a schema snapshot. Needs user on the instance.
pub async fn snapshot(
    call: RunCall<SnapshotRequest>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let RunCall { target, body: r } = call;
    let limits = RunLimits::default().resolve(1, 256 << 20)?;
    let params = RunParams::SchemaSnapshot(SchemaSnapshotParams {
        database: r.database,
    });
    target.start(params, limits).await
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SchemaQuery {
    /// Database (default: the most recent snapshot's).
    pub database: Option<String>,
    /// Changes: how many, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

async fn latest(
    state: &AppState,
    id: i64,
    database: Option<&str>,
) -> Result<SchemaSnapshot, ApiError> {
    let row: Option<(i64, String, DateTime<Utc>, Value)> = sqlx::query_as(
        "SELECT id, database, taken_at, snapshot FROM schema_snapshots \
         WHERE instance_id = $1 AND ($2::text IS NULL OR database = $2) \
         ORDER BY taken_at DESC, id DESC LIMIT 1",
    )
    .bind(id)
    .bind(database)
    .fetch_optional(&state.pool)
    .await?;
    let (snapshot_id, database, taken_at, snapshot) = row.ok_or_else(|| {
        ApiError::not_found(format!(
            "no schema snapshot of instance {id} yet (POST …/schema/snapshots)"
        ))
    })?;
    Ok(SchemaSnapshot {
        snapshot_id,
        database,
        taken_at: rfc3339(taken_at),
        snapshot,
    })
}

fn schema_query(q: Result<Query<SchemaQuery>, QueryRejection>) -> Result<SchemaQuery, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/schema",
    tag = "schema",
    security(("bearer" = [])),
    params(InstancePath, SchemaQuery),
    responses(
        (status = 200, description = "The latest snapshot", body = SchemaSnapshot),
        ById,
    )
)]
/// The latest schema snapshot. Needs viewer on the instance; 404 also when none is taken yet.
pub async fn schema(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<SchemaQuery>, QueryRejection>,
) -> Result<Json<SchemaSnapshot>, ApiError> {
    let id = path_id(path, "instance")?;
    let q = schema_query(query)?;
    principal
        .require_on_instance(&state.pool, id, Role::Viewer)
        .await?;
    Ok(Json(latest(&state, id, q.database.as_deref()).await?))
}

#[derive(sqlx::FromRow)]
struct ChangeRow {
    id: i64,
    detected_at: DateTime<Utc>,
    database: String,
    object_kind: String,
    object_name: String,
    change: String,
    classification: String,
    detail: Value,
}

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/schema/changes",
    tag = "schema",
    security(("bearer" = [])),
    params(InstancePath, SchemaQuery),
    responses(
        (status = 200, description = "Recorded changes, newest first", body = SchemaChanges),
        ById,
    )
)]
/// Recorded schema changes. Needs viewer on the instance.
pub async fn changes(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<SchemaQuery>, QueryRejection>,
) -> Result<Json<SchemaChanges>, ApiError> {
    let id = path_id(path, "instance")?;
    let q = schema_query(query)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be 1..=1000",
        ));
    }
    principal
        .require_on_instance(&state.pool, id, Role::Viewer)
        .await?;
    let rows: Vec<ChangeRow> = sqlx::query_as(
        "SELECT id, detected_at, database, object_kind, object_name, change, classification, detail \
         FROM schema_changes WHERE instance_id = $1 AND ($2::text IS NULL OR database = $2) \
         ORDER BY id DESC LIMIT $3",
    )
    .bind(id)
    .bind(&q.database)
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(SchemaChanges {
        changes: rows
            .into_iter()
            .map(|c| SchemaChange {
                id: c.id,
                detected_at: rfc3339(c.detected_at),
                database: c.database,
                object_kind: c.object_kind,
                object_name: c.object_name,
                change: c.change,
                classification: c.classification,
                detail: c.detail,
            })
            .collect(),
    }))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Tables as nodes and foreign keys as edges, from a snapshot document.
pub fn graph(snapshot: &Value) -> (Vec<GraphNode>, Vec<GraphEdge>) {
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    // No agent writes a document that does not read: it has no tables to draw.
    let Ok(doc) = serde_json::from_value::<SchemaDocument>(snapshot.clone()) else {
        return (nodes, edges);
    };
    for schema in &doc.schemas {
        for table in &schema.tables {
            let from = format!("{}.{}", schema.name, table.name);
            for c in table.constraints.iter().filter(|c| c.kind == "foreign_key") {
                edges.push(GraphEdge {
                    from: from.clone(),
                    to: format!(
                        "{}.{}",
                        c.ref_schema.as_deref().unwrap_or("?"),
                        c.ref_table.as_deref().unwrap_or("?")
                    ),
                    name: c.name.clone(),
                    columns: c.columns.clone().unwrap_or_default(),
                    ref_columns: c.ref_columns.clone().unwrap_or_default(),
                });
            }
            nodes.push(GraphNode { id: from });
        }
    }
    (nodes, edges)
}

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/schema/graph",
    tag = "schema",
    security(("bearer" = [])),
    params(InstancePath, SchemaQuery),
    responses(
        (status = 200, description = "Tables and foreign keys of the latest snapshot", body = ForeignKeyGraph),
        ById,
    )
)]
/// Tables and foreign keys of the latest snapshot. Needs viewer on the instance.
pub async fn fk_graph(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<SchemaQuery>, QueryRejection>,
) -> Result<Json<ForeignKeyGraph>, ApiError> {
    let id = path_id(path, "instance")?;
    let q = schema_query(query)?;
    principal
        .require_on_instance(&state.pool, id, Role::Viewer)
        .await?;
    let s = latest(&state, id, q.database.as_deref()).await?;
    let (nodes, edges) = graph(&s.snapshot);
    Ok(Json(ForeignKeyGraph {
        snapshot_id: s.snapshot_id,
        nodes,
        edges,
    }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RowsQuery {
    /// Database (default: the instance's).
    pub database: Option<String>,
    /// JSON array of the key values (strings) of the last row seen (from `next_after`).
    #[param(pattern = r#"^\[("[^"\\\u0000-\u001f]*"(,"[^"\\\u0000-\u001f]*")*)?\]$"#)]
    pub after: Option<String>,
    /// 1..=1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// Seconds to wait for the agent, 0..=120 (default 30; 0: answer 202 with the run).
    #[param(maximum = 120)]
    pub wait: Option<u64>,
}

impl WithWait for RowsQuery {
    fn wait(&self) -> Option<u64> {
        self.wait
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RowsPage {
    pub run_id: i64,
    #[schema(value_type = Object)]
    pub columns: Value,
    pub key: Vec<String>,
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Value>,
    /// Pass as `after` for the next page; null at the end.
    #[schema(value_type = Option<Object>)]
    pub next_after: Value,
}

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/tables/{schema}/{table}/rows",
    tag = "schema",
    security(("bearer" = [])),
    params(
        InstancePath,
        ("schema" = String, Path, description = "Schema"),
        ("table" = String, Path, description = "Table or view"),
        RowsQuery
    ),
    responses(
        (status = 200, description = "One page of rows, values as text", body = RowsPage),
        RunAnswered,
    )
)]
/// One page of a table's rows, in key order. Needs user on the instance.
pub async fn rows(call: RunQuery<RowsQuery>) -> Result<Response, ApiError> {
    let RunQuery { target, query: q } = call;
    let after: Option<Vec<Value>> = match &q.after {
        None => None,
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(key)) => Some(key),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "after must be a JSON array (a page's next_after)",
                ));
            }
        },
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be 1..=1000",
        ));
    }
    let params = RunParams::TableData(TableDataParams {
        schema: target.segment("schema")?.to_owned(),
        table: target.segment("table")?.to_owned(),
        after,
        limit,
        database: q.database,
    });
    let limits = RunLimits::default().resolve(1000, 64 << 20)?;
    let run = match target.ask(params, limits, READ_WAIT).await? {
        Ok(run) => run,
        Err(response) => return Ok(response),
    };
    let rows = match runs::page(&target.state().pool, run.id, 0).await? {
        Some(data) => serde_json::from_slice::<Vec<Value>>(&data).map_err(ApiError::internal)?,
        None => Vec::new(),
    };
    let summary = run.summary.unwrap_or(Value::Null);
    Ok(Json(RowsPage {
        run_id: run.id,
        columns: summary["columns"].clone(),
        key: strings(&summary["key"]),
        rows,
        next_after: summary["next_after"].clone(),
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn foreign_keys_become_edges() {
        let doc = json!({"schemas": [{"name": "public", "tables": [
            {"name": "orders", "constraints": [{"name": "orders_customer_fk", "type": "foreign_key",
              "columns": ["customer_id"], "ref_schema": "public", "ref_table": "customers", "ref_columns": ["id"]},
              {"name": "orders_pkey", "type": "primary_key", "columns": ["id"]}]},
            {"name": "customers", "constraints": []}]}]});
        let (nodes, edges) = graph(&doc);
        assert_eq!(nodes.len(), 2);
        assert_eq!(edges.len(), 1);
        assert_eq!(
            (edges[0].from.as_str(), edges[0].to.as_str()),
            ("public.orders", "public.customers")
        );
        assert_eq!(edges[0].ref_columns, ["id"]);
        assert!(graph(&json!("garbage")).0.is_empty());
    }
}
