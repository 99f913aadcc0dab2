//! `lasect-api admin create` and `lasect-api admin token`: the operator's way in, with no
//! default password anywhere.
//!
//! `admin create --username U` makes an admin (or `--role`) and prints a generated password once;
//! `--password-stdin` reads it from the first line of stdin instead. `admin token --username U
//! --name N` prints a new API token of that user once (scripts, `make demo`). Both migrate first,
//! so they work on an empty store.

use std::io::BufRead;
use std::time::Duration;

use anyhow::{Context, bail};
use lasect_pki::{API_TOKEN_PREFIX, hash_token, new_token};

use crate::auth::Role;
use crate::auth::password;
use crate::auth::users::create_user;
use crate::server::{connect_store, store_pool};
use crate::store_dsn::StoreDsn;

async fn pool(dsn: &StoreDsn) -> anyhow::Result<sqlx::PgPool> {
    let mut client = connect_store(dsn).await?;
    lasect_migrations::migrate(&mut client)
        .await
        .context("migrate the store")?;
    drop(client);
    store_pool(dsn, Duration::from_secs(10))
}

/// Reads the password from the first line of `input`.
pub fn read_password(input: impl BufRead) -> anyhow::Result<String> {
    let line = input
        .lines()
        .next()
        .context("no password on stdin")?
        .context("read the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    password::check_policy(&password)?;
    Ok(password)
}

/// Creates the user; returns the text to print (with the generated password, if any).
pub async fn run_create(
    dsn: &StoreDsn,
    username: &str,
    role: Role,
    password: Option<String>,
) -> anyhow::Result<String> {
    let pool = pool(dsn).await?;
    let (password, generated) = match password {
        Some(p) => (p, false),
        None => {
            let p = password::generate_password();
            (p.clone(), true)
        }
    };
    create_user(
        &pool,
        username,
        password.clone(),
        Some(role),
        "lasect-api admin create",
    )
    .await
    .with_context(|| format!("create user {username:?}"))?;
    Ok(if generated {
        format!("created {role} {username}\npassword (shown once, store it now): {password}\n")
    } else {
        format!("created {role} {username}\n")
    })
}

/// Creates an API token for `username`; returns the secret.
pub async fn run_token(
    dsn: &StoreDsn,
    username: &str,
    name: &str,
    role: Option<Role>,
) -> anyhow::Result<String> {
    let pool = pool(dsn).await?;
    let user: Option<(i64, Option<String>)> =
        sqlx::query_as("SELECT id, role FROM users WHERE username = $1 AND disabled_at IS NULL")
            .bind(username)
            .fetch_optional(&pool)
            .await
            .context("look up the user")?;
    let Some((user_id, user_role)) = user else {
        bail!("no enabled user named {username:?}");
    };
    let Some(user_role) = user_role.as_deref().and_then(|r| r.parse::<Role>().ok()) else {
        bail!("user {username:?} has no global role, so no API token can be made for it");
    };
    let role = role.unwrap_or(user_role);
    if role > user_role {
        bail!("a token cannot have more than the user's role ({user_role})");
    }
    let secret = new_token(API_TOKEN_PREFIX);
    sqlx::query("INSERT INTO api_tokens (user_id, name, token_hash, role) VALUES ($1, $2, $3, $4)")
        .bind(user_id)
        .bind(name)
        .bind(hash_token(&secret))
        .bind(role.as_str())
        .execute(&pool)
        .await
        .with_context(|| format!("create token {name:?} (a live token of that name may exist)"))?;
    Ok(format!("{secret}\n"))
}
