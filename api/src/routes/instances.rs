//! `GET /api/v1/instances`: the monitored PostgreSQL instances.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, SecondsFormat, Utc};

use super::AppState;
use super::api_error::ApiError;
use crate::auth::{Principal, Role};

pub use lasect_api_contract::instances::{Instance, InstanceList};

#[derive(sqlx::FromRow)]
struct InstanceRow {
    id: i64,
    name: String,
    agent_id: String,
    server_version_num: Option<i32>,
    version: Option<String>,
    in_recovery: Option<bool>,
    labels: serde_json::Value,
    created_at: DateTime<Utc>,
    last_seen: Option<DateTime<Utc>>,
    source: String,
    state: String,
    dsn_redacted: Option<String>,
    health: Option<serde_json::Value>,
    health_at: Option<DateTime<Utc>>,
}

impl From<InstanceRow> for Instance {
    fn from(r: InstanceRow) -> Self {
        Instance {
            id: r.id,
            name: r.name,
            agent_id: r.agent_id,
            server_version_num: r.server_version_num,
            version: r.version,
            in_recovery: r.in_recovery,
            labels: r.labels,
            created_at: rfc3339(r.created_at),
            last_seen: r.last_seen.map(rfc3339),
            source: r.source,
            state: r.state,
            dsn: r.dsn_redacted,
            health: r.health,
            health_at: r.health_at.map(rfc3339),
        }
    }
}

pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

const LIST_INSTANCES: &str = "SELECT id, name, agent_id, server_version_num, version, \
     in_recovery, labels, created_at, last_seen, source, state, dsn_redacted, health, health_at \
     FROM instances WHERE state <> 'removed' ORDER BY agent_id, name, id";
const FIND_INSTANCE: &str = "SELECT id, name, agent_id, server_version_num, version, \
     in_recovery, labels, created_at, last_seen, source, state, dsn_redacted, health, health_at \
     FROM instances WHERE id = $1 AND state <> 'removed'";

/// Only the instances the caller may see: all with a global role, else those whose labels
/// match one of the caller's grants.
#[utoipa::path(
    get,
    path = "/api/v1/instances",
    tag = "instances",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every monitored instance", body = InstanceList),
        (status = 401, description = "Not authenticated", body = super::openapi::ErrorBody),
        (status = 503, description = "Store unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<InstanceList>, ApiError> {
    let rows: Vec<InstanceRow> = sqlx::query_as(LIST_INSTANCES)
        .fetch_all(&state.pool)
        .await?;
    Ok(Json(InstanceList {
        instances: rows
            .into_iter()
            .filter(|r| principal.role_for_labels(&r.labels) >= Some(Role::Viewer))
            .map(Instance::from)
            .collect(),
    }))
}

/// The instance with `id`, or `None`.
pub(crate) async fn find(state: &AppState, id: i64) -> Result<Option<Instance>, ApiError> {
    let row: Option<InstanceRow> = sqlx::query_as(FIND_INSTANCE)
        .bind(id)
        .fetch_optional(&state.pool)
        .await?;
    Ok(row.map(Instance::from))
}
