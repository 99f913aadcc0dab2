//! Who is calling: [`Principal`], resolved from `Authorization: Bearer …` (a JWT access token or
//! an API token `lsat_…`) by [`authenticate`], and the role checks every handler uses.
//!
//! The user row is read on every request, so disabling a user or changing a role takes effect
//! at once, even for access tokens already issued; so is the session of an access token (its
//! refresh token family), so logging out ends the access token too.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use lasect_pki::{API_TOKEN_PREFIX, hash_token, looks_like_token};
use sqlx::PgPool;

use super::role::{Role, from_store};
use crate::routes::{ApiError, AppState};

/// Shared with the CLI, which reads it in a user's `grants`.
pub use lasect_api_contract::users::LabelGrant;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: i64,
    pub username: String,
    /// The user's global role; `None` when the user only has label grants.
    pub role: Option<Role>,
    pub grants: Vec<LabelGrant>,
    /// Set when the caller used an API token: its id and the role it is limited to.
    pub api_token: Option<(i64, Role)>,
    /// The session (refresh token family) of the access token used, if any.
    pub session: Option<String>,
    /// An admin reset the password: until the user sets one, only the password may change.
    pub must_change_password: bool,
}

impl Principal {
    fn cap(&self, role: Option<Role>) -> Option<Role> {
        match (role, self.api_token) {
            (Some(r), Some((_, cap))) => Some(r.min(cap)),
            (r, _) => r,
        }
    }

    /// The global role, limited by the API token used, if any.
    pub fn global_role(&self) -> Option<Role> {
        self.cap(self.role)
    }

    /// The highest role anywhere (global or by label), limited by the API token used.
    pub fn highest_role(&self) -> Option<Role> {
        self.cap(self.role.max(self.grants.iter().map(|g| g.role).max()))
    }

    /// The highest role on an instance with these labels (a JSON object of strings).
    pub fn role_for_labels(&self, labels: &serde_json::Value) -> Option<Role> {
        let scoped = self
            .grants
            .iter()
            .filter(|g| labels.get(&g.key).and_then(|v| v.as_str()) == Some(g.value.as_str()))
            .map(|g| g.role)
            .max();
        self.cap(self.role.max(scoped))
    }

    /// 403 unless the global role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        match self.global_role() {
            Some(have) if have >= role => Ok(()),
            have => Err(forbidden(role, have)),
        }
    }

    /// 404 when the instance does not exist, 403 unless the role on it is at least `role`.
    pub async fn require_on_instance(
        &self,
        pool: &PgPool,
        instance_id: i64,
        role: Role,
    ) -> Result<(), ApiError> {
        if self.require(role).is_ok() {
            return Ok(());
        }
        let labels: Option<serde_json::Value> =
            sqlx::query_scalar("SELECT labels FROM instances WHERE id = $1")
                .bind(instance_id)
                .fetch_optional(pool)
                .await?;
        let Some(labels) = labels else {
            return Err(ApiError::not_found(format!(
                "no instance with id {instance_id}"
            )));
        };
        match self.role_for_labels(&labels) {
            Some(have) if have >= role => Ok(()),
            have => Err(forbidden(role, have)),
        }
    }
}

fn forbidden(needed: Role, have: Option<Role>) -> ApiError {
    let have = have.map_or("no role".to_owned(), |r| format!("role {r}"));
    ApiError::forbidden(format!("this needs role {needed}; you have {have}"))
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // The gate layer has authenticated already; a router without it authenticates here.
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        authenticate(state, header.as_deref()).await
    }
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    username: String,
    role: Option<String>,
    disabled_at: Option<DateTime<Utc>>,
    must_change_password: bool,
}

#[derive(sqlx::FromRow)]
struct ApiTokenRow {
    id: i64,
    user_id: i64,
    role: String,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

/// Resolves the `Authorization` header value into a principal, or a 401.
pub async fn authenticate(state: &AppState, header: Option<&str>) -> Result<Principal, ApiError> {
    let Some(header) = header else {
        return Err(ApiError::unauthorized(
            "missing credentials: send Authorization: Bearer <token>",
        ));
    };
    let Some(token) = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
    else {
        return Err(ApiError::unauthorized(
            "the Authorization header must be Bearer <token>",
        ));
    };
    if token.starts_with(&format!("{API_TOKEN_PREFIX}_")) {
        return authenticate_api_token(state, token).await;
    }
    let verified = state.auth.keys.verify(token).map_err(|e| {
        tracing::debug!(error = %e, "access token refused");
        ApiError::unauthorized("invalid or expired access token")
    })?;
    session_principal(&state.pool, verified.user_id, verified.session).await
}

/// The principal of an access token of `user_id` in `session`; 401 once the session ended.
async fn session_principal(
    pool: &PgPool,
    user_id: i64,
    session: Option<String>,
) -> Result<Principal, ApiError> {
    if let Some(sid) = &session {
        let live = is_uuid(sid)
            && sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM refresh_tokens                  WHERE family = $1::uuid AND user_id = $2 AND revoked_at IS NULL)",
            )
            .bind(sid)
            .bind(user_id)
            .fetch_one(pool)
            .await?;
        if !live {
            return Err(ApiError::unauthorized(
                "this session has ended (logged out or revoked); log in again",
            ));
        }
    }
    let mut principal = load_principal(pool, user_id, None).await?;
    principal.session = session;
    Ok(principal)
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| {
            matches!(i, 8 | 13 | 18 | 23) == (b == b'-') && (b == b'-' || b.is_ascii_hexdigit())
        })
}

/// Checks again that `principal`'s credential (session or API token) and user are still
/// good, and returns the principal as the store has it now (roles may have changed). Long-lived
/// connections (the live stream) call this periodically.
pub async fn recheck(state: &AppState, principal: &Principal) -> Result<Principal, ApiError> {
    match principal.api_token {
        Some((id, _)) => {
            let row: Option<ApiTokenRow> = sqlx::query_as(
                "SELECT id, user_id, role, expires_at, revoked_at FROM api_tokens WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&state.pool)
            .await?;
            api_token_principal(state, row, false).await
        }
        None => session_principal(&state.pool, principal.user_id, principal.session.clone()).await,
    }
}

async fn authenticate_api_token(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    if !looks_like_token(token, API_TOKEN_PREFIX) {
        return Err(ApiError::unauthorized("malformed API token"));
    }
    let row: Option<ApiTokenRow> = sqlx::query_as(
        "SELECT id, user_id, role, expires_at, revoked_at FROM api_tokens WHERE token_hash = $1",
    )
    .bind(hash_token(token))
    .fetch_optional(&state.pool)
    .await?;
    api_token_principal(state, row, true).await
}

async fn api_token_principal(
    state: &AppState,
    row: Option<ApiTokenRow>,
    touch: bool,
) -> Result<Principal, ApiError> {
    let Some(row) = row else {
        return Err(ApiError::unauthorized("unknown API token"));
    };
    if row.revoked_at.is_some() {
        return Err(ApiError::unauthorized("this API token was revoked"));
    }
    if row.expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(ApiError::unauthorized("this API token has expired"));
    }
    let cap = from_store(&row.role)?;
    let principal = load_principal(&state.pool, row.user_id, Some((row.id, cap))).await?;
    if !touch {
        return Ok(principal);
    }
    // At most one write a minute per token: last use is for people, not for accounting.
    sqlx::query(
        "UPDATE api_tokens SET last_used_at = now() WHERE id = $1 \
         AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
    )
    .bind(row.id)
    .execute(&state.pool)
    .await?;
    Ok(principal)
}

/// The principal of user `user_id`; 401 when the user is gone or disabled.
pub(crate) async fn load_principal(
    pool: &PgPool,
    user_id: i64,
    api_token: Option<(i64, Role)>,
) -> Result<Principal, ApiError> {
    let user: Option<UserRow> = sqlx::query_as(
        "SELECT id, username, role, disabled_at, must_change_password FROM users WHERE id = $1",
    )
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    let Some(user) = user else {
        return Err(ApiError::unauthorized("unknown user"));
    };
    if user.disabled_at.is_some() {
        return Err(ApiError::unauthorized("this user is disabled"));
    }
    let grants: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT label_key, label_value, role FROM user_label_roles WHERE user_id = $1 \
         ORDER BY label_key, label_value",
    )
    .bind(user.id)
    .fetch_all(pool)
    .await?;
    let grants = grants
        .into_iter()
        .map(|(key, value, role)| {
            Ok(LabelGrant {
                key,
                value,
                role: from_store(&role)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Principal {
        user_id: user.id,
        username: user.username,
        role: user.role.as_deref().map(from_store).transpose()?,
        grants,
        api_token,
        session: None,
        must_change_password: user.must_change_password,
    })
}
