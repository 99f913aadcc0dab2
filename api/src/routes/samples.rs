//! `GET /api/v1/instances/{id}/samples/{family}?limit=N`: the latest samples of one family.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::AppState;
use super::api_error::ApiError;
use super::auth_routes::path_params;
use super::instances::{self, Instance};
use super::metric_families::{self, FamilyKey};
use super::openapi::paths::InstancePath;
use super::openapi::responses::ById;
use crate::auth::{Principal, Role};

pub const DEFAULT_LIMIT: u32 = 1;
pub const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SamplesQuery {
    /// Per-instance families: how many sample times back; per-agent families: how many rows;
    /// 1..=1000, default 1.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Samples {
    pub instance: Instance,
    #[schema(value_type = String)]
    pub family: &'static str,
    #[schema(value_type = Vec<String>)]
    pub columns: &'static [&'static str],
    /// One object per row, keyed by column.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Map<String, Value>>,
}

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/samples/{family}",
    tag = "metrics",
    security(("bearer" = [])),
    params(
        InstancePath,
        ("family" = inline(metric_families::FamilyName), Path, description = "Metric family"),
        SamplesQuery,
    ),
    responses(
        (status = 200, description = "The latest samples", body = Samples),
        ById,
    )
)]
/// Needs viewer on the instance.
pub async fn samples(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<SamplesQuery>, QueryRejection>,
) -> Result<Json<Samples>, ApiError> {
    let (id, family) = path_params(path)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let id: i64 = id.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_instance_id",
            format!("instance id must be a positive integer, not {id:?}"),
        )
    })?;
    let Some(spec) = metric_families::find(&family) else {
        return Err(ApiError::bad_request(
            "unknown_family",
            format!(
                "unknown family {family:?}; known families: {}",
                metric_families::known_names().join(", ")
            ),
        ));
    };
    principal
        .require_on_instance(&state.pool, id, Role::Viewer)
        .await?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_LIMIT}, not {limit}"),
        ));
    }
    let Some(instance) = instances::find(&state, id).await? else {
        return Err(ApiError::not_found(format!("no instance with id {id}")));
    };

    let q = sqlx::query(spec.sql);
    let q = match spec.key {
        FamilyKey::Instance => q.bind(instance.id),
        FamilyKey::Agent => q.bind(instance.agent_id.clone()),
    };
    let rows = q.bind(i64::from(limit)).fetch_all(&state.pool).await?;
    let rows = rows
        .iter()
        .map(metric_families::row_to_json)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    Ok(Json(Samples {
        instance,
        family: spec.name,
        columns: spec.columns,
        rows,
    }))
}
