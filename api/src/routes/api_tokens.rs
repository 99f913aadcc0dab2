//! API tokens for scripts and the CLI (FR31): `GET /api/v1/tokens`, `POST /api/v1/tokens`,
//! `DELETE /api/v1/tokens/{id}`.
//!
//! Create takes `{name, role?, expires_in_secs?}`; the role defaults to, and may not exceed,
//! the caller's highest role (an API token never widens what its user may do: the effective
//! role is the lower of the two, per instance). The secret (`lsat_…`) is in the response once; the store keeps its
//! SHA-256. Everyone lists and revokes their own tokens; admins see and revoke all.
//!
//! A token created with another API token is its child: it expires no later than the parent
//! and is revoked with it (revoking a token revokes its descendants), so an API token cannot
//! outlive itself through the tokens it mints.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use lasect_pki::{API_TOKEN_PREFIX, hash_token, new_token};

use super::auth_routes::{body, path_params};
use super::instances::rfc3339;
use super::openapi::responses::{ById, Conflict, SignedIn, WithInput};
use super::{ApiError, AppState};
use crate::auth::principal::Principal;
use crate::auth::role::{Role, from_store};
pub use lasect_api_contract::auth::{ApiToken, CreateToken, CreatedToken, TokenList};

/// Longest lifetime of an API token with an expiry: ten years.
const MAX_EXPIRY_SECS: u64 = 10 * 365 * 86_400;

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: i64,
    name: String,
    username: String,
    role: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<TokenRow> for ApiToken {
    type Error = ApiError;
    fn try_from(r: TokenRow) -> Result<Self, ApiError> {
        Ok(ApiToken {
            id: r.id,
            name: r.name,
            username: r.username,
            role: from_store(&r.role)?,
            created_at: rfc3339(r.created_at),
            expires_at: r.expires_at.map(rfc3339),
            last_used_at: r.last_used_at.map(rfc3339),
            revoked_at: r.revoked_at.map(rfc3339),
        })
    }
}

macro_rules! select_tokens {
    ($where:literal) => {
        concat!(
            "SELECT t.id, t.name, u.username, t.role, t.created_at, t.expires_at, \
             t.last_used_at, t.revoked_at FROM api_tokens t JOIN users u ON u.id = t.user_id ",
            $where
        )
    };
}

#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "API tokens (never their secrets)", body = TokenList),
        SignedIn,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<TokenList>, ApiError> {
    let all = principal.require(Role::Admin).is_ok();
    let rows: Vec<TokenRow> =
        sqlx::query_as(select_tokens!("WHERE $1 OR t.user_id = $2 ORDER BY t.id"))
            .bind(all)
            .bind(principal.user_id)
            .fetch_all(&state.pool)
            .await?;
    Ok(Json(TokenList {
        tokens: rows
            .into_iter()
            .map(ApiToken::try_from)
            .collect::<Result<_, _>>()?,
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    request_body = CreateToken,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; the secret is shown once", body = CreatedToken),
        WithInput,
        Conflict,
        (status = 422, description = "The name is blank", body = super::openapi::ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    request: Result<Json<CreateToken>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let request = body(request)?;
    let length = request.name.chars().count();
    if !(1..=100).contains(&length) {
        return Err(ApiError::bad_request(
            "invalid_body",
            "name must have 1 to 100 characters",
        ));
    }
    let name = request.name.trim();
    if name.is_empty() {
        return Err(ApiError::unprocessable("invalid_body", "name is blank"));
    }
    // The highest role the caller has anywhere; the token still only works where the user's
    // own roles (global or by label) allow.
    let Some(own) = principal.highest_role() else {
        return Err(ApiError::forbidden("you have no role to give a token"));
    };
    let role = request.role.unwrap_or(own);
    if role > own {
        return Err(ApiError::forbidden(format!(
            "a token cannot have more than your role ({own}), not {role}"
        )));
    }
    if let Some(secs) = request.expires_in_secs
        && !(60..=MAX_EXPIRY_SECS).contains(&secs)
    {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("expires_in_secs must be 60..={MAX_EXPIRY_SECS}, not {secs}"),
        ));
    }
    let secret = new_token(API_TOKEN_PREFIX);
    let parent = principal.api_token.map(|(id, _)| id);
    // With a parent, the expiry is the earlier of the two (least() ignores NULLs, so a
    // parent without expiry leaves the requested one).
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO api_tokens (user_id, name, token_hash, role, expires_at, parent_id) \
         SELECT $1, $2, $3, $4, \
                least(now() + make_interval(secs => $5::float8), \
                      (SELECT expires_at FROM api_tokens WHERE id = $6)), \
                $6 \
         ON CONFLICT (user_id, name) WHERE revoked_at IS NULL DO NOTHING RETURNING id",
    )
    .bind(principal.user_id)
    .bind(name)
    .bind(hash_token(&secret))
    .bind(role.as_str())
    .bind(request.expires_in_secs.map(|s| s as f64))
    .bind(parent)
    .fetch_optional(&state.pool)
    .await?;
    let Some(id) = id else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("you already have a live token named {name:?}"),
        ));
    };
    let row: TokenRow = sqlx::query_as(select_tokens!("WHERE t.id = $1"))
        .bind(id)
        .fetch_one(&state.pool)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: row.try_into()?,
            secret,
        }),
    ))
}

#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    params(("id" = i64, Path, minimum = 1, description = "Token id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The revoked token", body = ApiToken),
        ById,
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ApiToken>, ApiError> {
    let id = path_params(path)?;
    let id: i64 = id.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_token_id",
            format!("token id must be an integer, not {id:?}"),
        )
    })?;
    let all = principal.require(Role::Admin).is_ok();
    let mut tx = state.pool.begin().await?;
    let found: Option<i64> = sqlx::query_scalar(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) \
         WHERE id = $1 AND ($2 OR user_id = $3) RETURNING id",
    )
    .bind(id)
    .bind(all)
    .bind(principal.user_id)
    .fetch_optional(&mut *tx)
    .await?;
    if found.is_none() {
        return Err(ApiError::not_found(format!("no token with id {id}")));
    }
    // Everything minted through it goes with it.
    sqlx::query(
        "WITH RECURSIVE tree AS ( \
             SELECT id FROM api_tokens WHERE parent_id = $1 \
             UNION SELECT t.id FROM api_tokens t JOIN tree ON t.parent_id = tree.id) \
         UPDATE api_tokens SET revoked_at = now() \
         WHERE id IN (SELECT id FROM tree) AND revoked_at IS NULL",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let row: TokenRow = sqlx::query_as(select_tokens!("WHERE t.id = $1"))
        .bind(id)
        .fetch_one(&state.pool)
        .await?;
    Ok(Json(row.try_into()?))
}
