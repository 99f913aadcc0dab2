//! Sessions and credentials through the real router on a real store: logout ends the access
//! token, tokens minted by an API token live no longer than it, password change and admin
//! reset, the live stream re-checking its caller, and the first admin's password file.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use futures::{SinkExt, StreamExt};
use lasect_api::auth::jwt::JwtKeys;
use lasect_api::auth::{AuthConfig, AuthState, Role};
use lasect_api::server::{serve_on, store_pool};
use lasect_api::store_dsn::StoreDsn;
use lasect_api::{AppState, router};
use lasect_testkit::{PgCluster, PgOptions};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::Message;

use crate::common;
use crate::common::live::{Ws, connect};

use common::http::{Answer, call};

const HOME: [u8; 4] = [127, 0, 0, 1];
/// Generous: only a hang makes a test wait this long.
const PATIENCE: Duration = Duration::from_secs(60);

struct Fixture {
    _pg: PgCluster,
    pool: PgPool,
    app: Router,
    admin: String,
}

async fn fixture(config: AuthConfig) -> Fixture {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let dsn = pg.store_dsn().await.expect("migrated store");
    let pool = store_pool(&StoreDsn::new(dsn), Duration::from_secs(10)).expect("pool");
    sqlx::raw_sql(
        "INSERT INTO agents (id) VALUES ('db-01');
         INSERT INTO instances (name, agent_id) VALUES ('main', 'db-01');",
    )
    .execute(&pool)
    .await
    .expect("seed");
    let admin = common::user(&pool, "admin", Some(Role::Admin), &[]).await;
    common::user(&pool, "viewer", Some(Role::Viewer), &[]).await;
    let state = AppState::with_auth(pool.clone(), AuthState::new(JwtKeys::ephemeral(), config));
    Fixture {
        _pg: pg,
        pool,
        app: router(state),
        admin,
    }
}

async fn get(f: &Fixture, uri: &str, token: &str) -> Answer {
    call(&f.app, "GET", uri, Some(token), None, HOME).await
}

async fn post(f: &Fixture, uri: &str, token: Option<&str>, body: Value) -> Answer {
    call(&f.app, "POST", uri, token, Some(body), HOME).await
}

async fn login(f: &Fixture, username: &str, password: &str) -> Answer {
    post(
        f,
        "/api/v1/auth/login",
        None,
        json!({"username": username, "password": password}),
    )
    .await
}

fn access(a: &Answer) -> String {
    a.body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {}", a.text))
        .to_owned()
}

#[tokio::test]
async fn logout_ends_the_access_token_of_its_session_only() {
    let f = fixture(AuthConfig::default()).await;
    let one = login(&f, "viewer", common::PASSWORD).await;
    let two = login(&f, "viewer", common::PASSWORD).await;
    let (one, two) = (access(&one), access(&two));
    assert_eq!(
        get(&f, "/api/v1/auth/me", &one).await.status,
        StatusCode::OK
    );
    let out = post(&f, "/api/v1/auth/logout", Some(&one), json!({})).await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.text);
    assert_eq!(out.body["revoked"], 1);
    let after = get(&f, "/api/v1/auth/me", &one).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{}", after.text);
    assert_eq!(
        get(&f, "/api/v1/auth/me", &two).await.status,
        StatusCode::OK
    );
    // Logging out by refresh token ends that session's access token as well.
    let three = login(&f, "viewer", common::PASSWORD).await;
    let refresh = three.body["refresh_token"].as_str().expect("refresh");
    let out = post(
        &f,
        "/api/v1/auth/logout",
        Some(&two),
        json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(out.status, StatusCode::OK);
    let three = access(&three);
    assert_eq!(
        get(&f, "/api/v1/auth/me", &three).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn tokens_minted_by_an_api_token_expire_and_die_with_it() {
    let f = fixture(AuthConfig::default()).await;
    let parent = post(
        &f,
        "/api/v1/tokens",
        Some(&f.admin),
        json!({"name": "parent", "expires_in_secs": 3600}),
    )
    .await;
    assert_eq!(parent.status, StatusCode::CREATED, "{}", parent.text);
    let parent_secret = parent.body["secret"].as_str().expect("secret").to_owned();
    let parent_id = parent.body["token"]["id"].as_i64().expect("id");
    let child = post(
        &f,
        "/api/v1/tokens",
        Some(&parent_secret),
        json!({"name": "child", "expires_in_secs": 10 * 365 * 86_400}),
    )
    .await;
    assert_eq!(child.status, StatusCode::CREATED, "{}", child.text);
    let child_secret = child.body["secret"].as_str().expect("secret").to_owned();
    let grandchild = post(
        &f,
        "/api/v1/tokens",
        Some(&child_secret),
        json!({"name": "grandchild"}),
    )
    .await;
    let grandchild_secret = grandchild.body["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let (parent_expiry, later): (chrono::DateTime<chrono::Utc>, i64) = sqlx::query_as(
        "SELECT p.expires_at, count(*) FILTER (WHERE c.expires_at > p.expires_at \
                                               OR c.expires_at IS NULL) \
         FROM api_tokens p JOIN api_tokens c ON c.name IN ('child', 'grandchild') \
         WHERE p.id = $1 GROUP BY p.expires_at",
    )
    .bind(parent_id)
    .fetch_one(&f.pool)
    .await
    .expect("expiries");
    assert_eq!(later, 0, "no child outlives {parent_expiry}");
    for secret in [&child_secret, &grandchild_secret] {
        assert_eq!(
            get(&f, "/api/v1/auth/me", secret).await.status,
            StatusCode::OK
        );
    }
    let revoked = call(
        &f.app,
        "DELETE",
        &format!("/api/v1/tokens/{parent_id}"),
        Some(&f.admin),
        None,
        HOME,
    )
    .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    for secret in [&parent_secret, &child_secret, &grandchild_secret] {
        assert_eq!(
            get(&f, "/api/v1/auth/me", secret).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // The admin's own token (not minted by the revoked one) still works.
    assert_eq!(
        get(&f, "/api/v1/auth/me", &f.admin).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn users_change_their_password_and_an_admin_reset_forces_a_change() {
    let f = fixture(AuthConfig::default()).await;
    let session = access(&login(&f, "viewer", common::PASSWORD).await);
    let other = access(&login(&f, "viewer", common::PASSWORD).await);
    let change = |old: &str, new: &str| json!({"old_password": old, "new_password": new});
    let a = post(
        &f,
        "/api/v1/auth/password",
        Some(&session),
        change("wrong password!", "a new long password"),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text);
    let a = post(
        &f,
        "/api/v1/auth/password",
        Some(&session),
        change(common::PASSWORD, "short"),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.body["error"]["code"], "weak_password");
    let a = post(
        &f,
        "/api/v1/auth/password",
        Some(&session),
        change(common::PASSWORD, "a new long password"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let fresh = access(&a);
    assert_eq!(
        get(&f, "/api/v1/auth/me", &fresh).await.status,
        StatusCode::OK
    );
    // Other sessions ended with the old password.
    assert_eq!(
        get(&f, "/api/v1/auth/me", &other).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&f, "viewer", common::PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&f, "viewer", "a new long password").await.status,
        StatusCode::OK
    );

    // An admin reset: a generated password, shown once, that must be changed first.
    let reset = post(
        &f,
        "/api/v1/users/viewer/password",
        Some(&f.admin),
        json!({}),
    )
    .await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text);
    assert_eq!(reset.body["user"]["must_change_password"], true);
    let temporary = reset.body["generated_password"]
        .as_str()
        .expect("generated")
        .to_owned();
    assert_eq!(
        get(&f, "/api/v1/auth/me", &fresh).await.status,
        StatusCode::UNAUTHORIZED
    );
    let a = login(&f, "viewer", &temporary).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["password_change_required"], true);
    let limited = access(&a);
    let refused = get(&f, "/api/v1/instances", &limited).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["error"]["code"], "password_change_required");
    assert_eq!(
        get(&f, "/api/v1/auth/me", &limited).await.status,
        StatusCode::OK
    );
    let a = post(
        &f,
        "/api/v1/auth/password",
        Some(&limited),
        change(&temporary, "my own new password"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["password_change_required"], false);
    let free = access(&a);
    assert_eq!(
        get(&f, "/api/v1/instances", &free).await.status,
        StatusCode::OK
    );
    // Only admins reset, and not their own password (that needs the old one).
    let a = post(&f, "/api/v1/users/admin/password", Some(&free), json!({})).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = post(
        &f,
        "/api/v1/users/admin/password",
        Some(&f.admin),
        json!({}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "not on your own account");
}

/// Reads until the server closes; returns the close frame's reason.
async fn close_reason(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(frame))) => {
                return frame.map(|f| f.reason.to_string()).unwrap_or_default();
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return String::new(),
        }
    }
}

#[tokio::test]
async fn the_live_stream_stops_once_its_caller_is_no_longer_valid() {
    let f = fixture(AuthConfig {
        live_recheck_secs: 1,
        ..AuthConfig::default()
    })
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = f.app.clone();
    tokio::spawn(async move {
        let _ = serve_on(listener, app, None, async {
            let _ = stopped.await;
        })
        .await;
    });

    // A user disabled while streaming: closed by the periodic re-check.
    let viewer = access(&login(&f, "viewer", common::PASSWORD).await);
    let mut ws = connect(port, Some(&viewer)).await;
    let disabled = post(
        &f,
        "/api/v1/users/viewer/disable",
        Some(&f.admin),
        json!({}),
    )
    .await;
    assert_eq!(disabled.status, StatusCode::OK);
    let reason = close_reason(&mut ws).await;
    assert!(reason.contains("no longer valid"), "{reason:?}");

    // A revoked API token: refused at the next subscribe at the latest.
    let made = post(
        &f,
        "/api/v1/tokens",
        Some(&f.admin),
        json!({"name": "live"}),
    )
    .await;
    let secret = made.body["secret"].as_str().expect("secret").to_owned();
    let id = made.body["token"]["id"].as_i64().expect("id");
    let mut ws = connect(port, Some(&secret)).await;
    ws.send(Message::text(
        json!({"type": "subscribe", "instances": [1], "families": ["database"]}).to_string(),
    ))
    .await
    .expect("send");
    let revoked = call(
        &f.app,
        "DELETE",
        &format!("/api/v1/tokens/{id}"),
        Some(&f.admin),
        None,
        HOME,
    )
    .await;
    assert_eq!(revoked.status, StatusCode::OK);
    let _ = ws
        .send(Message::text(
            json!({"type": "subscribe", "instances": [1], "families": ["database"]}).to_string(),
        ))
        .await;
    let reason = close_reason(&mut ws).await;
    assert!(reason.contains("revoked"), "{reason:?}");
    drop(stop);
}

#[tokio::test]
async fn the_first_admin_password_goes_to_a_private_file() {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let dsn = pg.store_dsn().await.expect("migrated store");
    let pool = store_pool(&StoreDsn::new(dsn), Duration::from_secs(10)).expect("pool");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state/initial-admin-password");
    let created = lasect_api::auth::users::bootstrap_first_admin_to(&pool, &path)
        .await
        .expect("bootstrap");
    assert_eq!(created.as_deref(), Some("admin"));
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let password = std::fs::read_to_string(&path).expect("read");
    let password = password.trim_end();
    assert!(password.len() >= 20);
    assert!(
        lasect_api::auth::users::bootstrap_first_admin_to(&pool, &path)
            .await
            .expect("bootstrap")
            .is_none(),
        "only once"
    );
    let app = router(AppState::new(pool));
    let a = call(
        &app,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "admin", "password": password})),
        HOME,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
}
