//! Login abuse and unauthenticated traffic, through the real router on a real store: throttling
//! per (user, source address), no username enumeration, bounded password checks, and anonymous
//! requests that cost neither audit rows nor metric series.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use lasect_api::auth::jwt::JwtKeys;
use lasect_api::auth::{AuthConfig, AuthState, Role};
use lasect_api::server::store_pool;
use lasect_api::store_dsn::StoreDsn;
use lasect_api::{AppState, router};
use lasect_testkit::{PgCluster, PgOptions};
use serde_json::json;
use sqlx::PgPool;

use crate::common;

use common::http::{Answer, call};

struct Fixture {
    _pg: PgCluster,
    pool: PgPool,
    app: Router,
    auth: Arc<AuthState>,
    admin_token: String,
}

async fn fixture(config: AuthConfig) -> Fixture {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let dsn = pg.store_dsn().await.expect("migrated store");
    let pool = store_pool(&StoreDsn::new(dsn), Duration::from_secs(10)).expect("pool");
    let admin_token = common::user(&pool, "admin", Some(Role::Admin), &[]).await;
    let state = AppState::with_auth(pool.clone(), AuthState::new(JwtKeys::ephemeral(), config));
    Fixture {
        _pg: pg,
        pool,
        auth: state.auth.clone(),
        app: router(state),
        admin_token,
    }
}

fn config() -> AuthConfig {
    AuthConfig {
        max_failed_logins: 3,
        // Far above what the tests send: only the per-(user, address) throttle acts.
        max_failed_logins_per_source: 10_000,
        ..AuthConfig::default()
    }
}

async fn login(f: &Fixture, username: &str, password: &str, source: [u8; 4]) -> Answer {
    call(
        &f.app,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": username, "password": password})),
        source,
    )
    .await
}

#[tokio::test]
async fn a_flood_against_admin_from_one_address_does_not_lock_admin_out_elsewhere() {
    let f = fixture(config()).await;
    let attacker = [203, 0, 113, 7];
    let mut throttled = None;
    for _ in 0..10 {
        let a = login(&f, "admin", "guessing password", attacker).await;
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(a);
            break;
        }
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text);
    }
    let throttled = throttled.expect("the attacker's address is throttled");
    assert_eq!(throttled.body["error"]["code"], "too_many_attempts");
    let wait: u64 = throttled
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(wait >= 1);
    // Even the right password waits on the throttled key…
    let a = login(&f, "admin", common::PASSWORD, attacker).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    // …but the real admin, from another address, logs in at once.
    let a = login(&f, "admin", common::PASSWORD, [198, 51, 100, 1]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
}

#[tokio::test]
async fn unknown_users_get_the_same_answers_as_wrong_passwords() {
    let f = fixture(config()).await;
    // The same sequence for a real user and a made-up one, each from its own address.
    let mut answers = Vec::new();
    for (user, source) in [("admin", [192, 0, 2, 1]), ("nobody", [192, 0, 2, 2])] {
        let mut seen = Vec::new();
        for _ in 0..5 {
            let a = login(&f, user, "not the password", source).await;
            seen.push((a.status, a.body.to_string()));
        }
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0][0].0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answers[0][4].0,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        answers[0]
    );
}

#[tokio::test]
async fn password_checks_are_bounded_and_throttled_keys_cost_no_check() {
    let f = fixture(AuthConfig {
        password_checks: 1,
        password_check_wait_ms: 50,
        ..config()
    })
    .await;
    let attacker = [203, 0, 113, 8];
    for _ in 0..3 {
        login(&f, "admin", "guessing password", attacker).await;
    }
    // Every check slot is taken (a flood in progress).
    let held = f
        .auth
        .password_checks
        .acquire_many(1)
        .await
        .expect("semaphore");
    // A fresh login gets a fast refusal instead of queueing without end.
    let busy = login(&f, "admin", common::PASSWORD, [198, 51, 100, 2]).await;
    assert_eq!(busy.status, StatusCode::TOO_MANY_REQUESTS, "{}", busy.text);
    assert!(busy.headers.contains_key("retry-after"));
    assert!(busy.text.contains("busy"), "{}", busy.text);
    // The throttled key is refused before any check: its own answer, not "busy".
    let throttled = login(&f, "admin", common::PASSWORD, attacker).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        throttled.text.contains("too many failed logins"),
        "{}",
        throttled.text
    );
    drop(held);
    let ok = login(&f, "admin", common::PASSWORD, [198, 51, 100, 2]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
}

fn series(metrics: &str, name: &str) -> usize {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .count()
}

#[tokio::test]
async fn anonymous_traffic_writes_no_audit_rows_and_no_new_metric_series() {
    let f = fixture(config()).await;
    let metrics = |f: &Fixture| {
        let app = f.app.clone();
        let token = f.admin_token.clone();
        async move {
            let a = call(&app, "GET", "/metrics", Some(&token), None, [127, 0, 0, 1]).await;
            assert_eq!(a.status, StatusCode::OK);
            a.text
        }
    };
    // Warm the fixed label sets a scanner can reach (unmatched route, each method class).
    for method in ["GET", "POST", "PROPFIND"] {
        call(&f.app, method, "/api/v1/warm", None, None, [192, 0, 2, 50]).await;
        call(&f.app, method, "/warm", None, None, [192, 0, 2, 50]).await;
    }
    let before_metrics = metrics(&f).await;
    let audit_before: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&f.pool)
        .await
        .expect("count");

    let methods = [
        "GET", "POST", "DELETE", "PROPFIND", "BREW", "X-SCAN", "PUT", "PATCH",
    ];
    for i in 0..200u32 {
        let method = if i % 3 == 0 {
            format!("M{i}")
        } else {
            methods[i as usize % methods.len()].to_owned()
        };
        let path = match i % 4 {
            0 => format!("/api/v1/runs/{}", 100_000 + i),
            1 => format!("/api/v1/nothing-{i}/x"),
            2 => format!("/wp-admin/{i}.php"),
            _ => format!("/api/v1/users/u{i}/disable"),
        };
        let token = (i % 2 == 0).then_some("not-a-token");
        let a = call(&f.app, &method, &path, token, None, [192, 0, 2, 50]).await;
        assert!(a.status.is_client_error(), "{method} {path}: {}", a.status);
    }

    let audit_after: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&f.pool)
        .await
        .expect("count");
    assert_eq!(
        audit_after, audit_before,
        "no audit row per anonymous request"
    );
    let after_metrics = metrics(&f).await;
    let name = "lasect_api_requests_total";
    let (before, after) = (series(&before_metrics, name), series(&after_metrics, name));
    // Templates and the fixed method set: at most a few new (route, method, status) sets.
    assert!(
        after <= before + 12,
        "{before} → {after} series:\n{after_metrics}"
    );
    assert!(
        !after_metrics.contains("M3\""),
        "raw methods are not labels"
    );
    assert!(
        !after_metrics.contains("100003"),
        "raw paths are not labels"
    );

    // The refusals are counted per source address and minute instead.
    f.auth.failures.flush(&f.pool).await.expect("flush");
    let (rows, refused): (i64, Option<i64>) = sqlx::query_as(
        "SELECT count(*), sum(failures)::bigint FROM auth_failures WHERE source = '192.0.2.50'",
    )
    .fetch_one(&f.pool)
    .await
    .expect("counts");
    assert!(
        (1..=2).contains(&rows),
        "one row per minute, not per request: {rows}"
    );
    assert!(refused.unwrap_or(0) >= 100, "{refused:?}");
}
