//! Users (admin only): `GET /api/v1/users`, `POST /api/v1/users`,
//! `POST /api/v1/users/{username}/role`, `POST /api/v1/users/{username}/disable`,
//! `POST /api/v1/users/{username}/password`.
//!
//! Create takes `{username, password?, role?, grants?: [{key, value, role}]}`; without a
//! password one is generated and returned once as `generated_password`. Set-role takes
//! `{role, grants?}` and replaces both (`role: null` leaves only the grants). Password reset
//! takes `{password?}` (generated and returned once when absent), ends the user's sessions and
//! makes the user set a new password at next login.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};

use super::auth_routes::{body, end_sessions, path_params};
use super::instances::rfc3339;
use super::openapi::responses::{ById, Conflict, RoleNeeded, WithInput};
use super::{ApiError, AppState};
use crate::auth::password;
use crate::auth::principal::{LabelGrant, Principal};
use crate::auth::role::{Role, from_store};
use crate::auth::users::{UserError, create_user};

pub use lasect_api_contract::users::{
    CreateUser, CreatedUser, GrantBody, ResetPassword, SetRole, User, UserList,
};

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    username: String,
    role: Option<String>,
    created_at: DateTime<Utc>,
    created_by: String,
    disabled_at: Option<DateTime<Utc>>,
    must_change_password: bool,
}

async fn load_users(state: &AppState, username: Option<&str>) -> Result<Vec<User>, ApiError> {
    let rows: Vec<UserRow> = sqlx::query_as(
        "SELECT id, username, role, created_at, created_by, disabled_at, must_change_password \
         FROM users WHERE $1::text IS NULL OR username = $1 ORDER BY username",
    )
    .bind(username)
    .fetch_all(&state.pool)
    .await?;
    let grants: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT user_id, label_key, label_value, role FROM user_label_roles \
         ORDER BY label_key, label_value",
    )
    .fetch_all(&state.pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            let user_grants = grants
                .iter()
                .filter(|g| g.0 == r.id)
                .map(|g| {
                    Ok(LabelGrant {
                        key: g.1.clone(),
                        value: g.2.clone(),
                        role: from_store(&g.3)?,
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            Ok(User {
                id: r.id,
                username: r.username,
                role: r.role.as_deref().map(from_store).transpose()?,
                grants: user_grants,
                created_at: rfc3339(r.created_at),
                created_by: r.created_by,
                disabled_at: r.disabled_at.map(rfc3339),
                must_change_password: r.must_change_password,
            })
        })
        .collect()
}

#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every user", body = UserList),
        RoleNeeded,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<UserList>, ApiError> {
    principal.require(Role::Admin)?;
    Ok(Json(UserList {
        users: load_users(&state, None).await?,
    }))
}

fn user_error(e: UserError) -> ApiError {
    match e {
        UserError::InvalidUsername(_) => ApiError::bad_request("invalid_username", e.to_string()),
        UserError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
        UserError::Password(password::PasswordError::Hash(detail)) => ApiError::internal(detail),
        UserError::Password(p) => ApiError::bad_request("weak_password", p.to_string()),
        UserError::Store(s) => s.into(),
        UserError::PasswordFile(e) => ApiError::internal(e),
    }
}

fn check_grants(grants: &[GrantBody]) -> Result<(), ApiError> {
    for g in grants {
        let key = g.key.chars().count();
        if !(1..=200).contains(&key) || g.value.chars().count() > 200 {
            return Err(ApiError::bad_request(
                "invalid_body",
                "a grant needs a label key of 1 to 200 characters and a value of at most 200",
            ));
        }
    }
    Ok(())
}

async fn replace_grants(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    user_id: i64,
    grants: &[GrantBody],
) -> Result<(), ApiError> {
    sqlx::query("DELETE FROM user_label_roles WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    for g in grants {
        sqlx::query(
            "INSERT INTO user_label_roles (user_id, label_key, label_value, role) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, label_key, label_value) \
             DO UPDATE SET role = excluded.role",
        )
        .bind(user_id)
        .bind(&g.key)
        .bind(&g.value)
        .bind(g.role.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    request_body = CreateUser,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; a generated password is shown once", body = CreatedUser),
        WithInput,
        Conflict,
    )
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    request: Result<Json<CreateUser>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    principal.require(Role::Admin)?;
    let request = body(request)?;
    check_grants(&request.grants)?;
    let (password, generated) = match request.password {
        Some(p) => (p, None),
        None => {
            let p = password::generate_password();
            (p.clone(), Some(p))
        }
    };
    let id = create_user(
        &state.pool,
        &request.username,
        password,
        request.role,
        &principal.username,
    )
    .await
    .map_err(user_error)?;
    let mut tx = state.pool.begin().await?;
    replace_grants(&mut tx, id, &request.grants).await?;
    tx.commit().await?;
    let user = one_user(&state, &request.username).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user,
            generated_password: generated,
        }),
    ))
}

async fn one_user(state: &AppState, username: &str) -> Result<User, ApiError> {
    load_users(state, Some(username))
        .await?
        .pop()
        .ok_or_else(|| no_such_user(username))
}

fn no_such_user(username: &str) -> ApiError {
    ApiError::not_found(format!("no user named {username:?}"))
}

#[utoipa::path(
    post,
    path = "/api/v1/users/{username}/role",
    tag = "users",
    params(("username" = String, Path, description = "User name")),
    request_body = SetRole,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user with the new roles", body = User),
        ById,
        (status = 409, description = "Not on your own account", body = super::openapi::ErrorBody),
    )
)]
pub async fn set_role(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    request: Result<Json<SetRole>, JsonRejection>,
) -> Result<Json<User>, ApiError> {
    principal.require(Role::Admin)?;
    let username = path_params(path)?;
    let request = body(request)?;
    check_grants(&request.grants)?;
    if username == principal.username && request.role != Some(Role::Admin) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "own_account",
            "you cannot lower your own role; ask another admin",
        ));
    }
    let mut tx = state.pool.begin().await?;
    let id: Option<i64> =
        sqlx::query_scalar("UPDATE users SET role = $2 WHERE username = $1 RETURNING id")
            .bind(&username)
            .bind(request.role.map(Role::as_str))
            .fetch_optional(&mut *tx)
            .await?;
    let id = id.ok_or_else(|| no_such_user(&username))?;
    replace_grants(&mut tx, id, &request.grants).await?;
    tx.commit().await?;
    Ok(Json(one_user(&state, &username).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/users/{username}/disable",
    tag = "users",
    params(("username" = String, Path, description = "User name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The disabled user", body = User),
        ById,
        (status = 409, description = "Not on your own account", body = super::openapi::ErrorBody),
    )
)]
pub async fn disable(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<User>, ApiError> {
    principal.require(Role::Admin)?;
    let username = path_params(path)?;
    if username == principal.username {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "own_account",
            "you cannot disable yourself; ask another admin",
        ));
    }
    let mut tx = state.pool.begin().await?;
    let id: Option<i64> = sqlx::query_scalar(
        "UPDATE users SET disabled_at = coalesce(disabled_at, now()) WHERE username = $1 \
         RETURNING id",
    )
    .bind(&username)
    .fetch_optional(&mut *tx)
    .await?;
    let id = id.ok_or_else(|| no_such_user(&username))?;
    // Its sessions end now; its API tokens stop working because the user is disabled.
    end_sessions(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(one_user(&state, &username).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/users/{username}/password",
    tag = "users",
    params(("username" = String, Path, description = "User name")),
    request_body = Option<ResetPassword>,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Reset; the user must change it at next login; a generated password is shown once", body = CreatedUser),
        ById,
        (status = 409, description = "Not on your own account", body = super::openapi::ErrorBody),
        (status = 429, description = "Busy hashing passwords (Retry-After)", body = super::openapi::ErrorBody),
    )
)]
pub async fn reset_password(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    request: axum::body::Bytes,
) -> Result<Json<CreatedUser>, ApiError> {
    principal.require(Role::Admin)?;
    let username = path_params(path)?;
    if username == principal.username {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "own_password",
            "change your own password with POST /api/v1/auth/password (it needs the old one)",
        ));
    }
    let request: ResetPassword = super::auth_routes::optional_body(&request)?;
    let (new, generated) = match request.password {
        Some(p) => (p, None),
        None => {
            let p = password::generate_password();
            (p.clone(), Some(p))
        }
    };
    let hash = match state
        .auth
        .password_work(move || password::hash_password(&new))
        .await
    {
        Some(Ok(Ok(hash))) => hash,
        Some(Ok(Err(e))) => return Err(user_error(UserError::Password(e))),
        Some(Err(e)) => return Err(ApiError::internal(e)),
        None => {
            return Err(ApiError::too_many_attempts(
                "the server is busy hashing passwords; try again in 1 s",
                1,
            ));
        }
    };
    let mut tx = state.pool.begin().await?;
    let id: Option<i64> = sqlx::query_scalar(
        "UPDATE users SET password_hash = $2, must_change_password = true, \
         password_changed_at = now() WHERE username = $1 RETURNING id",
    )
    .bind(&username)
    .bind(hash)
    .fetch_optional(&mut *tx)
    .await?;
    let id = id.ok_or_else(|| no_such_user(&username))?;
    // Sessions opened with the old password end now.
    end_sessions(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(CreatedUser {
        user: one_user(&state, &username).await?,
        generated_password: generated,
    }))
}
