//! Agent administration (admin only): `GET /api/v1/agents`,
//! `POST /api/v1/agents/enrollment-tokens`, `POST /api/v1/agents/{id}/disable`,
//! `GET /api/v1/agents/{id}/certificates`, `POST /api/v1/agents/{id}/certificates/{serial}/revoke`
//! (listing and revoking tokens: `enrollment_tokens`).
//!
//! An enrollment token (`lset_…`) is returned once; the store keeps its SHA-256 (V11). Ingest
//! consumes it during `Enroll` and refuses disabled agents.
//!
//! An agent's certificates are the serials ingest accepts for it (V21, rules in
//! `ingest/src/revocation.rs`). Revoking one makes ingest refuse it at the next handshake, end
//! its open connections within one refresh interval (`agents.refresh_interval_secs`) and
//! refuse it for `Renew`; the agent's other certificates and its data are untouched.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use lasect_pki::{ENROLLMENT_TOKEN_PREFIX, hash_token, new_token, validate_agent_id};

use super::auth_routes::{body, path_params};
use super::instances::rfc3339;
use super::openapi::responses::{ById, RoleNeeded, WithInput};
use super::{ApiError, AppState};
use crate::auth::principal::Principal;
use crate::auth::role::Role;

pub use lasect_api_contract::agents::{
    Agent, AgentCertificate, AgentCertificateList, AgentList, CreateEnrollmentToken,
    EnrollmentToken,
};

/// Longest life of an enrollment token: 30 days.
const MAX_TTL_SECS: u64 = 30 * 86_400;
const MAX_USES: u32 = 10_000;

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

#[utoipa::path(
    get,
    path = "/api/v1/agents",
    tag = "agents",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every agent", body = AgentList),
        RoleNeeded,
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

#[utoipa::path(
    post,
    path = "/api/v1/agents/enrollment-tokens",
    tag = "agents",
    request_body = CreateEnrollmentToken,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; the token is shown once", body = EnrollmentToken),
        WithInput,
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
        ById,
    )
)]
pub async fn disable(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Agent>, ApiError> {
    principal.require(Role::Admin)?;
    let id = path_params(path)?;
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

#[derive(sqlx::FromRow)]
struct CertRow {
    serial: String,
    agent_id: String,
    reason: String,
    issued_at: DateTime<Utc>,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    current: bool,
    revoked_at: Option<DateTime<Utc>>,
    revoked_by: Option<String>,
    revoke_reason: Option<String>,
}

impl From<CertRow> for AgentCertificate {
    fn from(r: CertRow) -> Self {
        Self {
            serial: r.serial,
            agent_id: r.agent_id,
            reason: r.reason,
            issued_at: rfc3339(r.issued_at),
            not_before: rfc3339(r.not_before),
            not_after: rfc3339(r.not_after),
            current: r.current,
            revoked_at: r.revoked_at.map(rfc3339),
            revoked_by: r.revoked_by,
            revoke_reason: r.revoke_reason,
        }
    }
}

macro_rules! select_certs {
    ($where:literal) => {
        concat!(
            "SELECT c.serial, c.agent_id, c.reason, c.issued_at, c.not_before, c.not_after, \
             c.serial IS NOT DISTINCT FROM a.cert_serial AS current, c.revoked_at, c.revoked_by, \
             c.revoke_reason FROM agent_certificates c JOIN agents a ON a.id = c.agent_id ",
            $where
        )
    };
}

#[utoipa::path(
    get,
    path = "/api/v1/agents/{id}/certificates",
    tag = "agents",
    params(("id" = String, Path, description = "Agent id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The agent's recorded certificates, newest first", body = AgentCertificateList),
        ById,
    )
)]
pub async fn certificates(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AgentCertificateList>, ApiError> {
    principal.require(Role::Admin)?;
    let id = path_params(path)?;
    let exists: Option<String> = sqlx::query_scalar("SELECT id FROM agents WHERE id = $1")
        .bind(&id)
        .fetch_optional(&state.pool)
        .await?;
    if exists.is_none() {
        return Err(ApiError::not_found(format!("no agent with id {id:?}")));
    }
    let rows: Vec<CertRow> = sqlx::query_as(select_certs!(
        "WHERE c.agent_id = $1 ORDER BY c.issued_at DESC, c.serial"
    ))
    .bind(&id)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(AgentCertificateList {
        certificates: rows.into_iter().map(AgentCertificate::from).collect(),
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/agents/{id}/certificates/{serial}/revoke",
    tag = "agents",
    params(
        ("id" = String, Path, description = "Agent id"),
        ("serial" = String, Path, pattern = "^[0-9A-Fa-f:]+$", description = "Certificate serial in hex (case and colons ignored)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The revoked certificate (revoking twice keeps the first revocation)", body = AgentCertificate),
        ById,
    )
)]
pub async fn revoke_certificate(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<AgentCertificate>, ApiError> {
    principal.require(Role::Admin)?;
    let (id, serial) = path_params(path)?;
    if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
        return Err(ApiError::bad_request(
            "invalid_path",
            format!("serial {serial:?} is not a hexadecimal certificate serial"),
        ));
    }
    // Hex and colons, but no digit or more than a serial holds: no certificate has it.
    let serial = normalize_serial(&serial).ok_or_else(|| {
        ApiError::not_found(format!(
            "agent {id:?} has no certificate with serial {serial:?}"
        ))
    })?;
    let done: Option<String> = sqlx::query_scalar(
        "UPDATE agent_certificates SET revoked_at = coalesce(revoked_at, now()), \
         revoked_by = coalesce(revoked_by, $3), revoke_reason = coalesce(revoke_reason, 'revoked') \
         WHERE agent_id = $1 AND serial = $2 RETURNING serial",
    )
    .bind(&id)
    .bind(&serial)
    .bind(&principal.username)
    .fetch_optional(&state.pool)
    .await?;
    if done.is_none() {
        return Err(ApiError::not_found(format!(
            "agent {id:?} has no recorded certificate {serial} (a `ca init` certificate is \
             recorded when it first connects, or by `lasect-api ca init --store-dsn`)"
        )));
    }
    let row: CertRow = sqlx::query_as(select_certs!("WHERE c.serial = $1"))
        .bind(&serial)
        .fetch_one(&state.pool)
        .await?;
    Ok(Json(row.into()))
}

/// Lowercase hex without separators (how ingest records serials), or `None` if not hex.
fn normalize_serial(serial: &str) -> Option<String> {
    let hex: String = serial
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (!hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::normalize_serial;

    #[test]
    fn serials_are_normalized_like_ingest_records_them() {
        assert_eq!(normalize_serial("0A:1b").as_deref(), Some("0a1b"));
        assert_eq!(normalize_serial("").as_deref(), None);
        assert_eq!(normalize_serial("xyz").as_deref(), None);
    }
}
