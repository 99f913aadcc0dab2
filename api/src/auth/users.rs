//! Store operations on users, shared by the routes and `lasect-api admin create`.

use sqlx::PgPool;

use super::password::{self, PasswordError};
use super::role::Role;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("invalid username {0:?}: 1 to 64 of a-z 0-9 . _ @ -, starting with a letter or digit")]
    InvalidUsername(String),
    #[error("a user named {0:?} already exists")]
    Exists(String),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("store: {0}")]
    Store(#[from] sqlx::Error),
    #[error("write the first admin's password file: {0}")]
    PasswordFile(std::io::Error),
}

pub fn validate_username(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'@' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(UserError::InvalidUsername(name.to_owned()))
    }
}

/// Creates a user; returns its id. The password is hashed off the async threads (argon2 is
/// deliberately slow).
pub async fn create_user(
    pool: &PgPool,
    username: &str,
    password: String,
    role: Option<Role>,
    created_by: &str,
) -> Result<i64, UserError> {
    validate_username(username)?;
    let hash = tokio::task::spawn_blocking(move || password::hash_password(&password))
        .await
        .map_err(|e| UserError::Password(PasswordError::Hash(e.to_string())))??;
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO users (username, password_hash, role, created_by) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (username) DO NOTHING RETURNING id",
    )
    .bind(username)
    .bind(hash)
    .bind(role.map(Role::as_str))
    .bind(created_by)
    .fetch_optional(pool)
    .await?;
    id.ok_or_else(|| UserError::Exists(username.to_owned()))
}

/// Writes the first admin's generated password (its only line) to `path`, mode 0600,
/// atomically and durably. The password goes there and nowhere else: not stdout, not logs.
pub fn write_initial_password(path: &std::path::Path, password: &str) -> std::io::Result<()> {
    super::jwt::write_private(path, format!("{password}\n").as_bytes())
}

/// On a store without any user, creates `admin` with a generated password and returns it (to be
/// written with [`write_initial_password`]). `None` when users exist. Serialised by an advisory lock so that two API
/// replicas starting together do not both create one.
pub async fn bootstrap_first_admin(pool: &PgPool) -> Result<Option<(String, String)>, UserError> {
    bootstrap(pool, |_| Ok(())).await
}

/// Like [`bootstrap_first_admin`], writing the password to `path` (0600) before the admin is
/// committed: if the file cannot be written, no admin with a lost password is left behind.
pub async fn bootstrap_first_admin_to(
    pool: &PgPool,
    path: &std::path::Path,
) -> Result<Option<String>, UserError> {
    Ok(
        bootstrap(pool, |password| write_initial_password(path, password))
            .await?
            .map(|(username, _)| username),
    )
}

async fn bootstrap(
    pool: &PgPool,
    before_commit: impl FnOnce(&str) -> std::io::Result<()>,
) -> Result<Option<(String, String)>, UserError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('lasect.bootstrap_admin'))")
        .execute(&mut *tx)
        .await?;
    let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users)")
        .fetch_one(&mut *tx)
        .await?;
    if any {
        return Ok(None);
    }
    let password = password::generate_password();
    let to_hash = password.clone();
    let hash = tokio::task::spawn_blocking(move || password::hash_password(&to_hash))
        .await
        .map_err(|e| UserError::Password(PasswordError::Hash(e.to_string())))??;
    sqlx::query(
        "INSERT INTO users (username, password_hash, role, created_by) \
         VALUES ('admin', $1, 'admin', 'first start')",
    )
    .bind(hash)
    .execute(&mut *tx)
    .await?;
    before_commit(&password).map_err(UserError::PasswordFile)?;
    tx.commit().await?;
    Ok(Some(("admin".to_owned(), password)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_checked() {
        for ok in ["admin", "a", "jane.doe@example.com", "ops-1_x"] {
            assert!(validate_username(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Admin", "-x", "a b", "x/y", &"a".repeat(65)] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
    }
}
