//! Agent administration (admin only): `GET /api/v1/agents`,
//! `POST /api/v1/agents/enrollment-tokens`, `POST /api/v1/agents/{id}/disable`.
//!
//! An enrollment token (`lset_…`) is returned once; the store keeps its SHA-256 (V11). Ingest
//! consumes it during `Enroll` and refuses disabled agents.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use lasect_pki::{ENROLLMENT_TOKEN_PREFIX, hash_token, new_token, validate_agent_id};
use serde::{Deserialize, Serialize};

use super::auth_routes::body;
use super::instances::rfc3339;
use super::{ApiError, AppState};
use crate::auth::principal::Principal;
use crate::auth::role::Role;

/// Longest life of an enrollment token: 30 days.
const MAX_TTL_SECS: u64 = 30 * 86_400;
const MAX_USES: u32 = 10_000;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Agent {
    pub id: String,
    pub hostname: Option<String>,
    pub version: Option<String>,
    pub last_seen: String,
    pub enrolled_at: Option<String>,
    pub cert_not_after: Option<String>,
    pub spool_backlog_batches: Option<i64>,
    pub spool_backlog_bytes: Option<i64>,
    pub disabled: bool,
    pub disabled_at: Option<String>,
    pub disabled_by: Option<String>,
}

#[derive(sqlx::FromRow)]
struct AgentRow {
    id: String,
    hostname: Option<String>,
    version: Option<String>,
    last_seen: DateTime<Utc>,
    enrolled_at: Option<DateTime<Utc>>,
    cert_not_after: Option<DateTime<Utc>>,
    spool_backlog_batches: Option<i64>,
    spool_backlog_bytes: Option<i64>,
    disabled_at: Option<DateTime<Utc>>,
    disabled_by: Option<String>,
}

impl From<AgentRow> for Agent {
    fn from(r: AgentRow) -> Self {
        Agent {
            id: r.id,
            hostname: r.hostname,
            version: r.version,
            last_seen: rfc3339(r.last_seen),
            enrolled_at: r.enrolled_at.map(rfc3339),
            cert_not_after: r.cert_not_after.map(rfc3339),
            spool_backlog_batches: r.spool_backlog_batches,
            spool_backlog_bytes: r.spool_backlog_bytes,
            disabled: r.disabled_at.is_some(),
            disabled_at: r.disabled_at.map(rfc3339),
            disabled_by: r.disabled_by,
        }
    }
}

macro_rules! select_agents {
    ($where:literal) => {
        concat!(
            "SELECT id, hostname, version, last_seen, enrolled_at, cert_not_after, \
             spool_backlog_batches, spool_backlog_bytes, disabled_at, disabled_by FROM agents ",
            $where
        )
    };
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentList {
    pub agents: Vec<Agent>,
}

#[utoipa::path(
    get,
    path = "/api/v1/agents",
    tag = "agents",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every agent", body = AgentList),
        (status = 401, description = "Not authenticated", body = super::openapi::ErrorBody),
        (status = 403, description = "Role too low", body = super::openapi::ErrorBody),
        (status = 503, description = "Store unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<AgentList>, ApiError> {
    principal.require(Role::Admin)?;
    let rows: Vec<AgentRow> = sqlx::query_as(select_agents!("ORDER BY id"))
        .fetch_all(&state.pool)
        .await?;
    Ok(Json(AgentList {
        agents: rows.into_iter().map(Agent::from).collect(),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollmentToken {
    pub ttl_secs: u64,
    #[serde(default = "one")]
    pub uses: u32,
    #[serde(default)]
    pub agent_id: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnrollmentToken {
    pub id: i64,
    /// The bearer secret, shown this once.
    pub token: String,
    pub agent_id: Option<String>,
    pub max_uses: u32,
    pub expires_at: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/agents/enrollment-tokens",
    tag = "agents",
    request_body = CreateEnrollmentToken,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; the token is shown once", body = EnrollmentToken),
        (status = 400, description = "Bad request body or parameters", body = super::openapi::ErrorBody),
        (status = 401, description = "Not authenticated", body = super::openapi::ErrorBody),
        (status = 403, description = "Role too low", body = super::openapi::ErrorBody),
        (status = 503, description = "Store unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn create_enrollment_token(
    State(state): State<AppState>,
    principal: Principal,
    request: Result<Json<CreateEnrollmentToken>, JsonRejection>,
) -> Result<(StatusCode, Json<EnrollmentToken>), ApiError> {
    principal.require(Role::Admin)?;
    let request = body(request)?;
    if !(60..=MAX_TTL_SECS).contains(&request.ttl_secs) {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!(
                "ttl_secs must be 60..={MAX_TTL_SECS}, not {}",
                request.ttl_secs
            ),
        ));
    }
    if !(1..=MAX_USES).contains(&request.uses) {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("uses must be 1..={MAX_USES}, not {}", request.uses),
        ));
    }
    if let Some(id) = &request.agent_id {
        validate_agent_id(id)
            .map_err(|e| ApiError::bad_request("invalid_agent_id", e.to_string()))?;
    }
    let token = new_token(ENROLLMENT_TOKEN_PREFIX);
    let (id, expires_at): (i64, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO enrollment_tokens (token_hash, agent_id, max_uses, expires_at, created_by) \
         VALUES ($1, $2, $3, now() + make_interval(secs => $4::float8), $5) \
         RETURNING id, expires_at",
    )
    .bind(hash_token(&token))
    .bind(&request.agent_id)
    .bind(i32::try_from(request.uses).unwrap_or(i32::MAX))
    .bind(request.ttl_secs as f64)
    .bind(&principal.username)
    .fetch_one(&state.pool)
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(EnrollmentToken {
            id,
            token,
            agent_id: request.agent_id,
            max_uses: request.uses,
            expires_at: rfc3339(expires_at),
        }),
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/agents/{id}/disable",
    tag = "agents",
    params(("id" = String, Path, description = "Agent id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The disabled agent", body = Agent),
        (status = 400, description = "Bad request body or parameters", body = super::openapi::ErrorBody),
        (status = 401, description = "Not authenticated", body = super::openapi::ErrorBody),
        (status = 403, description = "Role too low", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found", body = super::openapi::ErrorBody),
        (status = 503, description = "Store unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn disable(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Agent>, ApiError> {
    principal.require(Role::Admin)?;
    let Path(id) = path.map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    let row: Option<AgentRow> = sqlx::query_as(
        "UPDATE agents SET disabled_at = coalesce(disabled_at, now()), \
         disabled_by = coalesce(disabled_by, $2) WHERE id = $1 RETURNING id, hostname, \
         version, last_seen, enrolled_at, cert_not_after, spool_backlog_batches, \
         spool_backlog_bytes, disabled_at, disabled_by",
    )
    .bind(&id)
    .bind(&principal.username)
    .fetch_optional(&state.pool)
    .await?;
    row.map(|r| Json(Agent::from(r)))
        .ok_or_else(|| ApiError::not_found(format!("no agent with id {id:?}")))
}
