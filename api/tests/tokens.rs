//! Refresh tokens and API tokens, through the real router on a real store.

use axum::http::StatusCode;
use common::fixture::fixture;
use common::http::{login, req};
use serde_json::json;

use crate::common;

#[tokio::test]
async fn refresh_tokens_rotate_and_a_replay_revokes_the_family() {
    let f = fixture().await;
    let (_, body) = login(&f.app, "admin", common::PASSWORD).await;
    let first = body["refresh_token"].as_str().expect("refresh").to_owned();
    assert!(first.starts_with("lsrt_"));
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE token_hash = $1")
            .bind(lasect_pki::hash_token(&first))
            .fetch_one(&f.pool)
            .await
            .expect("count");
    assert_eq!(stored, 1, "stored hashed");

    let refresh =
        |token: String| req("POST", "/api/v1/auth/refresh").json(json!({ "refresh_token": token }));
    let (status, body) = refresh(first.clone()).send(&f.app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = body["refresh_token"].as_str().expect("rotated").to_owned();
    assert_ne!(second, first);
    let access = body["access_token"].as_str().expect("access").to_owned();
    let (status, _) = req("GET", "/api/v1/auth/me")
        .token(&access)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);

    // The used one again: refused, and the live successor dies with it.
    let (status, body) = refresh(first).send(&f.app).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "invalid_refresh_token");
    let (status, _) = refresh(second).send(&f.app).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "family revoked");
    let audited: Vec<(String, String)> = sqlx::query_as(
        "SELECT actor, outcome FROM audit_log WHERE action = 'POST /api/v1/auth/refresh' ORDER BY id",
    )
    .fetch_all(&f.pool)
    .await
    .expect("audit");
    let audited: Vec<(&str, &str)> = audited
        .iter()
        .map(|(a, o)| (a.as_str(), o.as_str()))
        .collect();
    assert_eq!(
        audited,
        [
            ("admin", "success"),
            ("admin", "denied"),
            ("admin", "denied")
        ]
    );

    // Logout revokes; a revoked token cannot refresh.
    let (_, body) = login(&f.app, "admin", common::PASSWORD).await;
    let third = body["refresh_token"].as_str().expect("refresh").to_owned();
    let access = body["access_token"].as_str().expect("access").to_owned();
    let (status, body) = req("POST", "/api/v1/auth/logout")
        .token(&access)
        .json(json!({ "refresh_token": third }))
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revoked"], 1);
    let (status, _) = refresh(third).send(&f.app).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Garbage and unknown tokens.
    for bad in ["x", "lsrt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        let (status, _) = refresh(bad.to_owned()).send(&f.app).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn api_tokens_are_role_limited_expire_and_revoke() {
    let f = fixture().await;
    // Create a viewer token as admin.
    let (status, body) = req("POST", "/api/v1/tokens")
        .token(&f.admin)
        .json(json!({"name": "ci", "role": "viewer", "expires_in_secs": 3600}))
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["secret"].as_str().expect("secret").to_owned();
    let id = body["token"]["id"].as_i64().expect("id");
    assert!(secret.starts_with("lsat_"));
    assert!(body["token"]["expires_at"].is_string());
    let hash: String = sqlx::query_scalar("SELECT token_hash FROM api_tokens WHERE id = $1")
        .bind(id)
        .fetch_one(&f.pool)
        .await
        .expect("hash");
    assert_eq!(hash, lasect_pki::hash_token(&secret));

    // It works, as a viewer only, and records its last use.
    let (status, _) = req("GET", "/api/v1/instances")
        .token(&secret)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = req("GET", "/api/v1/users")
        .token(&secret)
        .send(&f.app)
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "capped at viewer although admin made it"
    );
    let (_, body) = req("GET", "/api/v1/tokens")
        .token(&f.admin)
        .send(&f.app)
        .await;
    let listed = body["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["id"] == id)
        .expect("listed")
        .clone();
    assert!(listed["last_used_at"].is_string(), "{listed}");
    assert!(listed.get("secret").is_none() && !body.to_string().contains(&secret));

    // Never above the creator's role.
    let (status, _) = req("POST", "/api/v1/tokens")
        .token(&f.viewer)
        .json(json!({"name": "up", "role": "admin"}))
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = req("POST", "/api/v1/tokens")
        .token(&secret)
        .json(json!({"name": "escalate", "role": "user"}))
        .send(&f.app)
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a viewer token cannot mint a user token"
    );

    // Revoked: refused.
    let (status, _) = req("DELETE", &format!("/api/v1/tokens/{id}"))
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = req("GET", "/api/v1/instances")
        .token(&secret)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("revoked")
    );

    // Expired: refused.
    let (_, body) = req("POST", "/api/v1/tokens")
        .token(&f.admin)
        .json(json!({"name": "short", "expires_in_secs": 60}))
        .send(&f.app)
        .await;
    let short = body["secret"].as_str().expect("secret").to_owned();
    let (status, _) = req("GET", "/api/v1/instances")
        .token(&short)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    sqlx::query(
        "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE name = 'short'",
    )
    .execute(&f.pool)
    .await
    .expect("age it");
    let (status, body) = req("GET", "/api/v1/instances")
        .token(&short)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("expired")
    );

    // A viewer cannot revoke someone else's token.
    let other: i64 = sqlx::query_scalar(
        "SELECT t.id FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE u.username = 'admin' LIMIT 1",
    )
    .fetch_one(&f.pool)
    .await
    .expect("admin token");
    let (status, _) = req("DELETE", &format!("/api/v1/tokens/{other}"))
        .token(&f.viewer)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
