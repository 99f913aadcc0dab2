//! User management by admins, through the real router on a real store.

use axum::http::StatusCode;
use common::fixture::fixture;
use common::http::{login, req};
use serde_json::json;

use crate::common;

#[tokio::test]
async fn users_are_managed_by_admins() {
    let f = fixture().await;
    let (status, body) = req("POST", "/api/v1/users")
        .token(&f.admin)
        .json(json!({"username": "ops", "role": "user",
                     "grants": [{"key": "env", "value": "prod", "role": "admin"}]}))
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let password = body["generated_password"]
        .as_str()
        .expect("generated")
        .to_owned();
    assert_eq!(body["user"]["grants"][0]["role"], "admin");
    let (status, _) = login(&f.app, "ops", &password).await;
    assert_eq!(status, StatusCode::OK);
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE username = 'ops'")
        .fetch_one(&f.pool)
        .await
        .expect("hash");
    assert!(hash.starts_with("$argon2id$") && !hash.contains(&password));

    let bad = [
        (
            json!({"username": "ops", "password": "long enough password"}),
            StatusCode::CONFLICT,
        ),
        (json!({"username": "Bad Name"}), StatusCode::BAD_REQUEST),
        (
            json!({"username": "short", "password": "short"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"username": "x", "role": "root"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"username": "x", "extra": 1}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, want) in bad {
        let (status, answer) = req("POST", "/api/v1/users")
            .token(&f.admin)
            .json(body.clone())
            .send(&f.app)
            .await;
        assert_eq!(status, want, "{body}: {answer}");
    }
    let (status, body) = req("POST", "/api/v1/users/ops/role")
        .token(&f.admin)
        .json(json!({"role": "viewer"}))
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "viewer");
    assert_eq!(body["grants"], json!([]));
    let (status, _) = req("POST", "/api/v1/users/nobody/role")
        .token(&f.admin)
        .json(json!({"role": "viewer"}))
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = req("POST", "/api/v1/users/admin/disable")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "no locking yourself out");
    let (_, body) = req("GET", "/api/v1/users")
        .token(&f.admin)
        .send(&f.app)
        .await;
    let names: Vec<&str> = body["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(names, ["admin", "ops", "scoped", "viewer"]);
    assert!(
        !body.to_string().contains("argon2"),
        "no hashes in responses"
    );
}
