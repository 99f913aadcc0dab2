//! Enrollment tokens after their creation (admin only):
//! `GET /api/v1/agents/enrollment-tokens` lists them without their secret (the store only has
//! its hash anyway), `POST /api/v1/agents/enrollment-tokens/{id}/revoke` makes one unusable.
//! Ingest checks `revoked_at` in the transaction that spends a token, so a revoked token
//! enrolls nothing from the moment the revocation commits.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};

use super::auth_routes::path_params;
use super::instances::rfc3339;
use super::openapi::responses::{ById, RoleNeeded};
use super::{ApiError, AppState};
use crate::auth::principal::Principal;
use crate::auth::role::Role;

pub use lasect_api_contract::agents::{EnrollmentTokenInfo, EnrollmentTokenList};

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    agent_id: Option<String>,
    max_uses: i32,
    uses: i32,
    created_by: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    revoked_by: Option<String>,
    expired: bool,
    enrolled_agents: Vec<String>,
}

impl From<Row> for EnrollmentTokenInfo {
    fn from(r: Row) -> Self {
        let state = if r.revoked_at.is_some() {
            "revoked"
        } else if r.uses >= r.max_uses {
            "used_up"
        } else if r.expired {
            "expired"
        } else {
            "active"
        };
        Self {
            id: r.id,
            agent_id: r.agent_id,
            max_uses: r.max_uses,
            uses: r.uses,
            created_by: r.created_by,
            created_at: rfc3339(r.created_at),
            expires_at: rfc3339(r.expires_at),
            revoked_at: r.revoked_at.map(rfc3339),
            revoked_by: r.revoked_by,
            state: state.to_owned(),
            enrolled_agents: r.enrolled_agents,
        }
    }
}

macro_rules! select_tokens {
    ($rest:literal) => {
        concat!(
            "SELECT t.id, t.agent_id, t.max_uses, t.uses, t.created_by, t.created_at, \
     t.expires_at, t.revoked_at, t.revoked_by, t.expires_at <= now() AS expired, \
     coalesce((SELECT array_agg(DISTINCT c.agent_id ORDER BY c.agent_id) \
               FROM agent_certificates c WHERE c.token_id = t.id), '{}') AS enrolled_agents \
     FROM enrollment_tokens t ",
            $rest
        )
    };
}

#[utoipa::path(
    get,
    path = "/api/v1/agents/enrollment-tokens",
    tag = "agents",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every enrollment token, newest first, without its secret", body = EnrollmentTokenList),
        RoleNeeded,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<EnrollmentTokenList>, ApiError> {
    principal.require(Role::Admin)?;
    let rows: Vec<Row> = sqlx::query_as(select_tokens!("ORDER BY t.id DESC"))
        .fetch_all(&state.pool)
        .await?;
    Ok(Json(EnrollmentTokenList {
        tokens: rows.into_iter().map(EnrollmentTokenInfo::from).collect(),
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/agents/enrollment-tokens/{id}/revoke",
    tag = "agents",
    params(("id" = i64, Path, minimum = 1, description = "Enrollment token id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The revoked token (revoking twice changes nothing)", body = EnrollmentTokenInfo),
        ById,
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<EnrollmentTokenInfo>, ApiError> {
    principal.require(Role::Admin)?;
    let id = path_params(path)?;
    let done: Option<i64> = sqlx::query_scalar(
        "UPDATE enrollment_tokens SET revoked_at = coalesce(revoked_at, now()), \
         revoked_by = coalesce(revoked_by, $2) WHERE id = $1 RETURNING id",
    )
    .bind(id)
    .bind(&principal.username)
    .fetch_optional(&state.pool)
    .await?;
    if done.is_none() {
        return Err(ApiError::not_found(format!(
            "no enrollment token with id {id}"
        )));
    }
    let row: Row = sqlx::query_as(select_tokens!("WHERE t.id = $1"))
        .bind(id)
        .fetch_one(&state.pool)
        .await?;
    Ok(Json(row.into()))
}
