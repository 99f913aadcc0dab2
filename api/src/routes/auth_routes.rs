//! `POST /api/v1/auth/login`, `POST /api/v1/auth/refresh`, `POST /api/v1/auth/logout`,
//! `GET /api/v1/auth/me`, `POST /api/v1/auth/password`.
//!
//! Login answers `{access_token, token_type: "Bearer", expires_in, refresh_token,
//! refresh_expires_in, username, role, password_change_required}`. Refresh tokens rotate: each
//! is good for one refresh, which returns a new pair; presenting a used or revoked one revokes
//! its whole family. A family is a session: access tokens name it (`sid`) and die with it, so
//! logout ends the access token too.
//!
//! Failed logins are throttled in memory per (username tried, source address) with growing
//! delays ([`crate::auth::login_throttle`]) and per source address; a throttled attempt gets
//! 429 `too_many_attempts` with `Retry-After` before any hashing. Password checks run at most
//! `auth.password_checks` at a time; a login that finds no free slot soon gets the same 429.
//! An unknown user and a wrong password get the same answer, after a comparable argon2 check.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use lasect_pki::{REFRESH_TOKEN_PREFIX, hash_token, looks_like_token, new_token};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::auth::audit::AuditActor;
use crate::auth::password;
use crate::auth::principal::{LabelGrant, Principal, load_principal};
use crate::auth::role::{Role, from_store};
pub use lasect_api_contract::auth::{ChangePassword, LoginRequest, LogoutRequest, TokenPair};

#[derive(sqlx::FromRow)]
struct LoginRow {
    id: i64,
    password_hash: String,
    role: Option<String>,
    disabled_at: Option<DateTime<Utc>>,
    must_change_password: bool,
}

pub(crate) fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))
}

/// The path parameters, or 400 `invalid_path` with axum's account of what did not parse.
pub(crate) fn path_params<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
}

/// Ends every open session of the user: their refresh tokens stop working.
pub(crate) async fn end_sessions(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    user_id: i64,
) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A JSON body the route may go without: none, an empty one or `null` is the default; anything
/// else must parse (400 otherwise, like [`body`]).
pub(crate) fn optional_body<T: serde::de::DeserializeOwned + Default>(
    bytes: &[u8],
) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let invalid = |e: serde_json::Error| {
        ApiError::bad_request("invalid_body", format!("invalid JSON body: {e}"))
    };
    // serde reads a struct from a JSON array as well (`[]`: every field absent); the document
    // allows an object or null only.
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(invalid)?;
    if !(value.is_object() || value.is_null()) {
        return Err(ApiError::bad_request(
            "invalid_body",
            "invalid JSON body: an object or null is expected",
        ));
    }
    serde_json::from_value::<Option<T>>(value)
        .map(Option::unwrap_or_default)
        .map_err(invalid)
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Access and refresh tokens", body = TokenPair),
        (status = 400, description = "Bad request body or parameters", body = super::openapi::ErrorBody),
        (status = 401, description = "Invalid credentials or disabled user", body = super::openapi::ErrorBody),
        (status = 429, description = "Too many failed attempts (Retry-After)", body = super::openapi::ErrorBody),
        (status = 503, description = "Store unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    request: Result<Json<LoginRequest>, JsonRejection>,
) -> Response {
    let request = match body(request) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    // Only a good login names its actor: failures are anonymous, counted per source address
    // rather than audited one by one.
    match try_login(&state, crate::auth::gate::source_of(&extensions), request).await {
        Ok(pair) => {
            let actor = AuditActor(pair.username.clone());
            let mut response = Json(pair).into_response();
            response.extensions_mut().insert(actor);
            response
        }
        Err(e) => e.into_response(),
    }
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "wrong username or password",
    )
}

/// Checks `given` against `stored` within the bound on concurrent argon2 checks.
pub(crate) async fn check_password(
    state: &AppState,
    given: String,
    stored: String,
) -> Result<bool, ApiError> {
    match state
        .auth
        .password_work(move || password::verify_password(&given, &stored))
        .await
    {
        Some(Ok(ok)) => Ok(ok),
        Some(Err(e)) => Err(ApiError::internal(e)),
        None => Err(ApiError::too_many_attempts(
            "the server is busy checking passwords; try again in 1 s",
            1,
        )),
    }
}

async fn try_login(
    state: &AppState,
    source: Option<SocketAddr>,
    request: LoginRequest,
) -> Result<TokenPair, ApiError> {
    let ip = source.map(|s| s.ip());
    if let Some(ip) = ip
        && let Err(wait) = state.auth.sources.check(ip, Instant::now())
    {
        return Err(ApiError::too_many_attempts(
            format!("too many failed logins from this address; try again in {wait} s"),
            wait,
        ));
    }
    // Counted before the hash: a throttled key costs no argon2 work at all.
    if let Err(wait) = state
        .auth
        .logins
        .begin(&request.username, ip, Instant::now())
    {
        return Err(ApiError::too_many_attempts(
            format!(
                "too many failed logins for this user from this address; try again in {wait} s"
            ),
            wait,
        ));
    }
    let row: Option<LoginRow> = sqlx::query_as(
        "SELECT id, password_hash, role, disabled_at, must_change_password \
         FROM users WHERE username = $1",
    )
    .bind(&request.username)
    .fetch_optional(&state.pool)
    .await?;
    // An unknown user is checked against a decoy hash: same answer, comparable time.
    let stored = row.as_ref().map_or_else(
        || password::decoy_hash().to_owned(),
        |r| r.password_hash.clone(),
    );
    let ok = check_password(state, request.password, stored).await?;
    let Some(row) = row.filter(|_| ok) else {
        if let Some(ip) = ip {
            state.auth.sources.failure(ip, Instant::now());
        }
        return Err(invalid_credentials());
    };
    state.auth.logins.succeeded(&request.username, ip);
    if row.disabled_at.is_some() {
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "user_disabled",
            "this user is disabled",
        ));
    }
    let family: uuid_like::Uuid = uuid_like::random();
    let mut tx = state.pool.begin().await?;
    let refresh = insert_refresh(&mut tx, state, row.id, &family.0).await?;
    tx.commit().await?;
    pair(
        state,
        row.id,
        request.username,
        row.role.as_deref().map(from_store).transpose()?,
        &family.0,
        refresh,
        row.must_change_password,
    )
}

/// A random UUID v4 string, without a crate for it.
pub(crate) mod uuid_like {
    pub struct Uuid(pub String);

    pub fn random() -> Uuid {
        let mut b: [u8; 16] = rand::random();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        Uuid(format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        ))
    }
}

async fn insert_refresh(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    state: &AppState,
    user_id: i64,
    family: &str,
) -> Result<String, ApiError> {
    let token = new_token(REFRESH_TOKEN_PREFIX);
    sqlx::query(
        "INSERT INTO refresh_tokens (family, user_id, token_hash, expires_at) \
         VALUES ($1::uuid, $2, $3, now() + make_interval(days => $4))",
    )
    .bind(family)
    .bind(user_id)
    .bind(hash_token(&token))
    .bind(i32::try_from(state.auth.config.refresh_token_days).unwrap_or(365))
    .execute(&mut **tx)
    .await?;
    Ok(token)
}

fn pair(
    state: &AppState,
    user_id: i64,
    username: String,
    role: Option<Role>,
    session: &str,
    refresh_token: String,
    password_change_required: bool,
) -> Result<TokenPair, ApiError> {
    let config = &state.auth.config;
    let access_token = state
        .auth
        .keys
        .issue(
            user_id,
            Some(session),
            Utc::now().timestamp(),
            config.access_token_secs,
        )
        .map_err(ApiError::internal)?;
    Ok(TokenPair {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in: config.access_token_secs,
        refresh_token,
        refresh_expires_in: u64::from(config.refresh_token_days) * 86_400,
        username,
        role,
        password_change_required,
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    id: i64,
    family: String,
    user_id: i64,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

fn refused(message: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
        message.to_owned(),
    )
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair; the old refresh token is spent", body = TokenPair),
        (status = 400, description = "Bad request body or parameters", body = super::openapi::ErrorBody),
        (status = 401, description = "Invalid, used or revoked refresh token", body = super::openapi::ErrorBody),
        (status = 503, description = "Store unavailable", body = super::openapi::ErrorBody),
    )
)]
/// Answers like [`try_refresh`], naming the user in the audit row when the token was valid or
/// reused.
pub async fn refresh(
    State(state): State<AppState>,
    request: Result<Json<RefreshRequest>, JsonRejection>,
) -> Response {
    // A reused token is audited under its user (a stolen session is worth a row); other
    // refusals are anonymous and only counted.
    let mut reused_by = None;
    match try_refresh(&state, request, &mut reused_by).await {
        Ok(pair) => {
            let actor = AuditActor(pair.username.clone());
            let mut response = Json(pair).into_response();
            response.extensions_mut().insert(actor);
            response
        }
        Err(e) => {
            let mut response = e.into_response();
            if let Some(username) = reused_by {
                response.extensions_mut().insert(AuditActor(username));
            }
            response
        }
    }
}

async fn try_refresh(
    state: &AppState,
    request: Result<Json<RefreshRequest>, JsonRejection>,
    reused_by: &mut Option<String>,
) -> Result<TokenPair, ApiError> {
    let request = body(request)?;
    if !looks_like_token(&request.refresh_token, REFRESH_TOKEN_PREFIX) {
        return Err(refused("malformed refresh token"));
    }
    let mut tx = state.pool.begin().await?;
    // FOR UPDATE: two refreshes racing with one token are a replay; the second sees used_at.
    let row: Option<RefreshRow> = sqlx::query_as(
        "SELECT id, family::text AS family, user_id, expires_at, used_at, revoked_at \
         FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(hash_token(&request.refresh_token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(refused("unknown refresh token"));
    };
    if row.used_at.is_some() || row.revoked_at.is_some() {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = now() \
             WHERE family = $1::uuid AND revoked_at IS NULL",
        )
        .bind(&row.family)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::warn!(
            user_id = row.user_id,
            "refresh token reused; its family is revoked"
        );
        *reused_by = sqlx::query_scalar("SELECT username FROM users WHERE id = $1")
            .bind(row.user_id)
            .fetch_optional(&state.pool)
            .await?;
        return Err(refused(
            "this refresh token was already used or revoked; all its sessions are revoked",
        ));
    }
    if row.expires_at <= Utc::now() {
        return Err(refused("this refresh token has expired; log in again"));
    }
    let principal = load_principal(&state.pool, row.user_id, None).await?;
    sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE id = $1")
        .bind(row.id)
        .execute(&mut *tx)
        .await?;
    let next = insert_refresh(&mut tx, state, row.user_id, &row.family).await?;
    tx.commit().await?;
    pair(
        state,
        principal.user_id,
        principal.username,
        principal.role,
        &row.family,
        next,
        principal.must_change_password,
    )
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LogoutResult {
    pub revoked: u64,
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    request_body = Option<LogoutRequest>,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Refresh tokens revoked", body = LogoutResult),
        (status = 400, description = "Bad request body or parameters", body = super::openapi::ErrorBody),
        (status = 401, description = "Not authenticated", body = super::openapi::ErrorBody),
        (status = 503, description = "Store unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    principal: Principal,
    request: axum::body::Bytes,
) -> Result<Json<LogoutResult>, ApiError> {
    let request: LogoutRequest = optional_body(&request)?;
    // Revoking the family also ends the access token: authentication checks its session.
    let revoked = match (request.refresh_token, principal.session) {
        (Some(token), _) => sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE revoked_at IS NULL \
             AND user_id = $2 AND family = \
                 (SELECT family FROM refresh_tokens WHERE token_hash = $1)",
        )
        .bind(hash_token(&token))
        .bind(principal.user_id),
        (None, Some(session)) => sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE revoked_at IS NULL \
             AND user_id = $2 AND family = $1::uuid",
        )
        .bind(session)
        .bind(principal.user_id),
        (None, None) => sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE revoked_at IS NULL \
             AND user_id = $1",
        )
        .bind(principal.user_id),
    }
    .execute(&state.pool)
    .await?
    .rows_affected();
    Ok(Json(LogoutResult { revoked }))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/password",
    tag = "auth",
    request_body = ChangePassword,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Password changed; every other session ended; a new session", body = TokenPair),
        (status = 400, description = "Bad request body, or the new password breaks the policy", body = super::openapi::ErrorBody),
        (status = 401, description = "Not authenticated, or the old password is wrong", body = super::openapi::ErrorBody),
        (status = 429, description = "Too many failed attempts, or busy (Retry-After)", body = super::openapi::ErrorBody),
        (status = 503, description = "Store unavailable", body = super::openapi::ErrorBody),
    )
)]
/// Changes the caller's own password. The old one is required (a stolen access token alone
/// cannot take the account), and wrong guesses are throttled like logins.
pub async fn change_password(
    State(state): State<AppState>,
    principal: Principal,
    extensions: axum::http::Extensions,
    request: Result<Json<ChangePassword>, JsonRejection>,
) -> Result<Json<TokenPair>, ApiError> {
    let request = body(request)?;
    password::check_policy(&request.new_password)
        .map_err(|e| ApiError::bad_request("weak_password", e.to_string()))?;
    if request.new_password == request.old_password {
        return Err(ApiError::bad_request(
            "weak_password",
            "the new password must differ from the old one",
        ));
    }
    let ip = crate::auth::gate::source_of(&extensions).map(|s| s.ip());
    if let Err(wait) = state
        .auth
        .logins
        .begin(&principal.username, ip, Instant::now())
    {
        return Err(ApiError::too_many_attempts(
            format!(
                "too many failed attempts for this user from this address; try again in {wait} s"
            ),
            wait,
        ));
    }
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(principal.user_id)
        .fetch_one(&state.pool)
        .await?;
    if !check_password(&state, request.old_password, stored).await? {
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "the old password is wrong",
        ));
    }
    state.auth.logins.succeeded(&principal.username, ip);
    let new = request.new_password;
    let hash = match state
        .auth
        .password_work(move || password::hash_password(&new))
        .await
    {
        Some(Ok(Ok(hash))) => hash,
        Some(Ok(Err(e))) => return Err(ApiError::bad_request("weak_password", e.to_string())),
        Some(Err(e)) => return Err(ApiError::internal(e)),
        None => {
            return Err(ApiError::too_many_attempts(
                "the server is busy checking passwords; try again in 1 s",
                1,
            ));
        }
    };
    let family = uuid_like::random();
    let mut tx = state.pool.begin().await?;
    sqlx::query(
        "UPDATE users SET password_hash = $2, must_change_password = false, \
         password_changed_at = now() WHERE id = $1",
    )
    .bind(principal.user_id)
    .bind(hash)
    .execute(&mut *tx)
    .await?;
    // Whoever knew the old password may hold a session: all of them end.
    end_sessions(&mut tx, principal.user_id).await?;
    let refresh = insert_refresh(&mut tx, &state, principal.user_id, &family.0).await?;
    tx.commit().await?;
    Ok(Json(pair(
        &state,
        principal.user_id,
        principal.username,
        principal.role,
        &family.0,
        refresh,
        false,
    )?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    pub username: String,
    pub role: Option<Role>,
    pub grants: Vec<LabelGrant>,
    /// The role limit of the API token used, if any.
    pub token_role: Option<Role>,
}

#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "Not authenticated", body = super::openapi::ErrorBody),
        (status = 503, description = "Store unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn me(principal: Principal) -> Json<Me> {
    Json(Me {
        username: principal.username,
        role: principal.role,
        grants: principal.grants,
        token_role: principal.api_token.map(|(_, r)| r),
    })
}
