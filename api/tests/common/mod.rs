//! Users and tokens for route tests, written straight into the store.

pub mod fixture;
pub mod http;
pub mod live;

use std::time::Duration;

use chrono::{DateTime, Utc};
use lasect_api::auth::Role;
use lasect_api::auth::users::create_user;
use lasect_api::server::store_pool;
use lasect_api::store_dsn::StoreDsn;
use lasect_pki::{API_TOKEN_PREFIX, hash_token, new_token};
use lasect_testkit::{PgCluster, PgOptions};
use sqlx::PgPool;

/// Password of every user made by [`user`].
pub const PASSWORD: &str = "correct horse battery";

/// Creates `username` with a global `role` and label `grants` (key, value, role); returns an
/// API token of that user limited to its highest role.
pub async fn user(
    pool: &PgPool,
    username: &str,
    role: Option<Role>,
    grants: &[(&str, &str, Role)],
) -> String {
    let id = create_user(pool, username, PASSWORD.to_owned(), role, "test")
        .await
        .expect("create user");
    for (key, value, grant) in grants {
        sqlx::query(
            "INSERT INTO user_label_roles (user_id, label_key, label_value, role) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(key)
        .bind(value)
        .bind(grant.as_str())
        .execute(pool)
        .await
        .expect("grant");
    }
    let token = new_token(API_TOKEN_PREFIX);
    let highest = role
        .max(grants.iter().map(|g| g.2).max())
        .unwrap_or(Role::Viewer);
    insert_token(pool, id, &token, highest).await;
    token
}

pub async fn insert_token(pool: &PgPool, user_id: i64, token: &str, role: Role) {
    sqlx::query("INSERT INTO api_tokens (user_id, name, token_hash, role) VALUES ($1, $2, $3, $4)")
        .bind(user_id)
        .bind(format!("t-{}", &hash_token(token)[..8]))
        .bind(hash_token(token))
        .bind(role.as_str())
        .execute(pool)
        .await
        .expect("insert token");
}

/// `app` with `Authorization: Bearer <token>` added to every request that has none, so tests
/// of what a route answers need not repeat the header (the auth tests send their own).
pub fn with_bearer(app: axum::Router, token: &str) -> axum::Router {
    let value = axum::http::HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
    app.layer(axum::middleware::map_request(
        move |mut request: axum::extract::Request| {
            let value = value.clone();
            async move {
                request
                    .headers_mut()
                    .entry(axum::http::header::AUTHORIZATION)
                    .or_insert(value);
                request
            }
        },
    ))
}

/// An admin (global role) with an admin API token, for tests of what routes answer.
pub async fn admin_app(pool: &PgPool) -> axum::Router {
    let token = user(pool, "admin", Some(Role::Admin), &[]).await;
    with_bearer(
        lasect_api::router(lasect_api::AppState::new(pool.clone())),
        &token,
    )
}

/// A new cluster holding a migrated, empty store, and a pool on it. Keep the cluster for the
/// test's length: dropping it stops the server.
pub async fn migrated_store() -> (PgCluster, PgPool) {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let dsn = pg.store_dsn().await.expect("migrated store");
    let pool = store_pool(&StoreDsn::new(dsn), Duration::from_secs(10)).expect("pool");
    (pg, pool)
}

/// Stores an activity sample of `instance` at `at` with `percent` of its 100 connections in
/// use, the figure the connection alert rules of these tests watch.
pub async fn insert_activity(pool: &PgPool, instance: i64, at: DateTime<Utc>, percent: f64) {
    sqlx::query(
        "INSERT INTO metric_activity (time, instance_id, max_connections, total_sessions, \
         connection_use_percent) VALUES ($1, $2, 100, $3, $4)",
    )
    .bind(at)
    .bind(instance)
    .bind(percent as i64)
    .bind(percent)
    .execute(pool)
    .await
    .expect("insert activity");
}
