//! Agents and their enrollment tokens, managed by admins through the real router on a real
//! store.

use axum::http::StatusCode;
use common::fixture::fixture;
use common::http::req;
use serde_json::json;

use crate::common;

#[tokio::test]
async fn agents_are_listed_enrolled_and_disabled_by_admins() {
    let f = fixture().await;
    let (status, body) = req("GET", "/api/v1/agents")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["agents"][0]["id"], "db-01");
    assert_eq!(body["agents"][0]["disabled"], false);

    let (status, body) = req("POST", "/api/v1/agents/enrollment-tokens")
        .token(&f.admin)
        .json(json!({"ttl_secs": 3600, "uses": 2, "agent_id": "db-02"}))
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    assert!(lasect_pki::looks_like_token(
        &token,
        lasect_pki::ENROLLMENT_TOKEN_PREFIX
    ));
    let (max_uses, agent, created_by): (i32, Option<String>, String) = sqlx::query_as(
        "SELECT max_uses, agent_id, created_by FROM enrollment_tokens WHERE token_hash = $1",
    )
    .bind(lasect_pki::hash_token(&token))
    .fetch_one(&f.pool)
    .await
    .expect("stored hashed");
    assert_eq!(
        (max_uses, agent.as_deref(), created_by.as_str()),
        (2, Some("db-02"), "admin")
    );
    for bad in [
        json!({"ttl_secs": 1}),
        json!({"ttl_secs": 3600, "uses": 0}),
        json!({"ttl_secs": 3600, "agent_id": "Bad/Id"}),
    ] {
        let (status, _) = req("POST", "/api/v1/agents/enrollment-tokens")
            .token(&f.admin)
            .json(bad.clone())
            .send(&f.app)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }

    let (status, body) = req("POST", "/api/v1/agents/db-01/disable")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disabled"], true);
    assert_eq!(body["disabled_by"], "admin");
    let (status, _) = req("POST", "/api/v1/agents/nope/disable")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Its data stays readable.
    let (status, _) = req("GET", "/api/v1/instances/1/samples/database")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);
}
