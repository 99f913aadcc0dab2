//! Login, through the real router on a real store: the tokens it gives work and forged ones
//! are refused, a source with too many failures is blocked, and the first start creates one
//! admin.

use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::fixture::{SECRET, fixture};
use common::http::{login, req};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lasect_api::server::store_pool;
use lasect_api::store_dsn::StoreDsn;
use lasect_api::{AppState, router};
use lasect_testkit::{PgCluster, PgOptions};
use serde_json::{Value, json};

use crate::common;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sign(alg: Algorithm, key: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(key)).expect("sign")
}

#[tokio::test]
async fn login_gives_working_tokens_and_forged_ones_are_refused() {
    let f = fixture().await;
    let (status, body) = login(&f.app, "admin", common::PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["role"], "admin");
    let access = body["access_token"].as_str().expect("access").to_owned();
    let (status, me) = req("GET", "/api/v1/auth/me")
        .token(&access)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["username"], "admin");

    let admin_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'admin'")
        .fetch_one(&f.pool)
        .await
        .expect("id");
    let good = json!({"sub": admin_id.to_string(), "iss": "lasect-api", "aud": "lasect",
                      "iat": now(), "exp": now() + 300});
    // Control: a token we sign correctly is accepted, so the refusals below are the attacks'.
    let token = sign(Algorithm::HS256, SECRET, &good);
    let (status, _) = req("GET", "/api/v1/auth/me")
        .token(&token)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);

    let with = |key: &str, value: Value| {
        let mut c = good.clone();
        c[key] = value;
        c
    };
    let without = |key: &str| {
        let mut c = good.clone();
        c.as_object_mut().expect("object").remove(key);
        c
    };
    let header_none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(good.to_string());
    let attacks = [
        (
            "bad signature",
            sign(
                Algorithm::HS256,
                b"another key of at least thirty-two bytes!",
                &good,
            ),
        ),
        ("alg none", format!("{header_none}.{payload}.")),
        ("other algorithm", sign(Algorithm::HS512, SECRET, &good)),
        (
            "expired",
            sign(Algorithm::HS256, SECRET, &with("exp", json!(now() - 3600))),
        ),
        (
            "exp as string",
            sign(
                Algorithm::HS256,
                SECRET,
                &with("exp", json!((now() + 300).to_string())),
            ),
        ),
        ("no exp", sign(Algorithm::HS256, SECRET, &without("exp"))),
        ("no iat", sign(Algorithm::HS256, SECRET, &without("iat"))),
        ("no aud", sign(Algorithm::HS256, SECRET, &without("aud"))),
        ("no iss", sign(Algorithm::HS256, SECRET, &without("iss"))),
        ("no sub", sign(Algorithm::HS256, SECRET, &without("sub"))),
        (
            "no signature",
            format!("{}.", token.rsplit_once('.').map_or("", |t| t.0)),
        ),
        (
            "wrong aud",
            sign(
                Algorithm::HS256,
                SECRET,
                &with("aud", json!("someone-else")),
            ),
        ),
        (
            "wrong iss",
            sign(Algorithm::HS256, SECRET, &with("iss", json!("evil"))),
        ),
        (
            "unknown sub",
            sign(Algorithm::HS256, SECRET, &with("sub", json!("999999"))),
        ),
        ("tampered", format!("{}x", &token[..token.len() - 1])),
    ];
    for (name, token) in attacks {
        let (status, body) = req("GET", "/api/v1/auth/me")
            .token(&token)
            .send(&f.app)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
    }

    // Wrong password and unknown user: the same 401.
    for (user, pw) in [
        ("admin", "wrong password!!"),
        ("nobody", "whatever password"),
    ] {
        let (status, body) = login(&f.app, user, pw).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["code"], "invalid_credentials");
    }
    // A disabled user can no longer use an access token already issued.
    let (_, body) = login(&f.app, "viewer", common::PASSWORD).await;
    let viewer_access = body["access_token"].as_str().expect("access").to_owned();
    let (status, _) = req("POST", "/api/v1/users/viewer/disable")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = req("GET", "/api/v1/auth/me")
        .token(&viewer_access)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = login(&f.app, "viewer", common::PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn repeated_failures_from_one_source_block_that_source() {
    let f = fixture().await;
    // Per source: 6 failures from one address (any usernames) block that address only.
    // (Throttling per user and address: tests/login_abuse.rs.)
    for i in 0..6 {
        let (status, _) = req("POST", "/api/v1/auth/login")
            .json(json!({"username": format!("guess{i}"), "password": "whatever password"}))
            .from([192, 0, 2, 9])
            .send(&f.app)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = req("POST", "/api/v1/auth/login")
        .json(json!({"username": "admin", "password": common::PASSWORD}))
        .from([192, 0, 2, 9])
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _) = req("POST", "/api/v1/auth/login")
        .json(json!({"username": "admin", "password": common::PASSWORD}))
        .from([192, 0, 2, 10])
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn first_start_creates_one_admin() {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let dsn = pg.store_dsn().await.expect("migrated store");
    let pool = store_pool(&StoreDsn::new(dsn), Duration::from_secs(10)).expect("pool");
    let (name, password) = lasect_api::auth::users::bootstrap_first_admin(&pool)
        .await
        .expect("bootstrap")
        .expect("created");
    assert_eq!(name, "admin");
    assert!(password.len() >= 20);
    assert!(
        lasect_api::auth::users::bootstrap_first_admin(&pool)
            .await
            .expect("bootstrap")
            .is_none(),
        "only once"
    );
    let app = router(AppState::new(pool));
    let (status, body) = login(&app, "admin", &password).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
