//! A store seeded with three instances (prod, staging, dev on agent db-01) and three users
//! (a global admin, a global viewer, and `scoped`, with roles by label only), behind a router
//! whose access tokens are signed with [`SECRET`].

use std::time::Duration;

use axum::Router;
use lasect_api::auth::jwt::JwtKeys;
use lasect_api::auth::{AuthConfig, AuthState, Role};
use lasect_api::server::store_pool;
use lasect_api::store_dsn::StoreDsn;
use lasect_api::{AppState, router};
use lasect_testkit::{PgCluster, PgOptions};
use sqlx::PgPool;

pub const SECRET: &[u8] = b"a test signing key of at least thirty-two bytes";

pub struct Fixture {
    pub _pg: PgCluster,
    pub pool: PgPool,
    pub app: Router,
    pub admin: String,
    pub viewer: String,
    /// `user` on env=staging, `viewer` on env=prod, nothing global.
    pub scoped: String,
}

fn test_config() -> AuthConfig {
    AuthConfig {
        max_failed_logins: 3,
        max_failed_logins_per_source: 6,
        ..AuthConfig::default()
    }
}

pub async fn fixture() -> Fixture {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let dsn = pg.store_dsn().await.expect("migrated store");
    let pool = store_pool(&StoreDsn::new(dsn), Duration::from_secs(10)).expect("pool");
    sqlx::raw_sql(
        "INSERT INTO agents (id) VALUES ('db-01');
         INSERT INTO instances (name, agent_id, labels) VALUES
             ('prod', 'db-01', '{\"env\": \"prod\"}'),
             ('staging', 'db-01', '{\"env\": \"staging\"}'),
             ('dev', 'db-01', '{\"env\": \"dev\"}');",
    )
    .execute(&pool)
    .await
    .expect("seed");
    let admin = super::user(&pool, "admin", Some(Role::Admin), &[]).await;
    let viewer = super::user(&pool, "viewer", Some(Role::Viewer), &[]).await;
    let scoped = super::user(
        &pool,
        "scoped",
        None,
        &[
            ("env", "staging", Role::User),
            ("env", "prod", Role::Viewer),
        ],
    )
    .await;
    let state = AppState::with_auth(
        pool.clone(),
        AuthState::new(JwtKeys::from_secret(SECRET), test_config()),
    );
    Fixture {
        _pg: pg,
        pool,
        app: router(state),
        admin,
        viewer,
        scoped,
    }
}
