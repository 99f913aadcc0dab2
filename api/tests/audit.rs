//! The audit log, through the real router on a real store: every mutating call is recorded,
//! the log is filtered, and the store keeps it append-only.

use axum::http::StatusCode;
use common::fixture::fixture;
use common::http::req;
use serde_json::json;

use crate::common;

#[tokio::test]
async fn every_mutating_call_is_audited_and_the_log_is_append_only() {
    let f = fixture().await;
    let calls = [
        req("POST", "/api/v1/users")
            .token(&f.admin)
            .json(json!({"username": "carol"})),
        req("POST", "/api/v1/users")
            .token(&f.viewer)
            .json(json!({"username": "mallory"})),
        req("POST", "/api/v1/users").json(json!({"username": "anon"})),
        req("POST", "/api/v1/agents/db-01/disable").token(&f.admin),
        req("POST", "/api/v1/auth/login")
            .json(json!({"username": "admin", "password": "bad password!!"})),
        req("POST", "/api/v1/tokens")
            .token(&f.admin)
            .json(json!({"name": "audit-me"})),
    ];
    for call in calls {
        call.send(&f.app).await;
    }
    // Reads are not audited.
    req("GET", "/api/v1/users")
        .token(&f.admin)
        .send(&f.app)
        .await;

    let (status, body) = req("GET", "/api/v1/audit?since=1h&limit=100")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows: Vec<(String, String, String, String)> = body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .rev()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or("").to_owned(),
                e["action"].as_str().unwrap_or("").to_owned(),
                e["target"].as_str().unwrap_or("").to_owned(),
                e["outcome"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let want = [
        ("admin", "POST /api/v1/users", "/api/v1/users", "success"),
        ("viewer", "POST /api/v1/users", "/api/v1/users", "denied"),
        // Anonymous refusals (no credentials, a failed login) are counted per source and
        // minute instead (tests/login_abuse.rs).
        (
            "admin",
            "POST /api/v1/agents/{id}/disable",
            "/api/v1/agents/db-01/disable",
            "success",
        ),
        ("admin", "POST /api/v1/tokens", "/api/v1/tokens", "success"),
    ];
    let got: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.as_str()))
        .collect();
    assert_eq!(got, want);
    let entries = body["entries"].as_array().expect("entries");
    assert!(entries.iter().all(|e| e["source"] == "127.0.0.1"));
    let denied = entries
        .iter()
        .find(|e| e["actor"] == "viewer")
        .expect("denied row");
    assert!(
        denied["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("forbidden"),
        "{denied}"
    );
    assert!(
        !body.to_string().contains("lsat_"),
        "no secrets in the audit log"
    );

    // Filters.
    let (_, body) = req("GET", "/api/v1/audit?actor=viewer")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(body["entries"].as_array().map(Vec::len), Some(1));
    let (_, body) = req("GET", "/api/v1/audit?action=POST%20/api/v1/agents")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(body["entries"].as_array().map(Vec::len), Some(1));
    // Against the document: 400; well-formed but not a time or duration: 422.
    for (bad, expected) in [
        ("since=yesterday", StatusCode::UNPROCESSABLE_ENTITY),
        ("limit=0", StatusCode::BAD_REQUEST),
        ("limit=5000", StatusCode::BAD_REQUEST),
        ("foo=1", StatusCode::BAD_REQUEST),
    ] {
        let (status, _) = req("GET", &format!("/api/v1/audit?{bad}"))
            .token(&f.admin)
            .send(&f.app)
            .await;
        assert_eq!(status, expected, "{bad}");
    }
    let (status, _) = req("GET", "/api/v1/audit")
        .token(&f.viewer)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The store refuses changes, even to the API's own database user.
    for sql in [
        "UPDATE audit_log SET outcome = 'success'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let err = sqlx::query(sql).execute(&f.pool).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    // Only retention removes rows, and only old ones.
    sqlx::query(
        "INSERT INTO audit_log (time, actor, action, outcome) \
         VALUES (now() - interval '400 days', 'old', 'x', 'success')",
    )
    .execute(&f.pool)
    .await
    .expect("old row");
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&f.pool)
        .await
        .expect("count");
    let removed = lasect_api::auth::audit::apply_retention(&f.pool, 365)
        .await
        .expect("retention");
    assert_eq!(removed, 1);
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&f.pool)
        .await
        .expect("count");
    assert_eq!(after, before - 1);
    let err = sqlx::query("DELETE FROM audit_log")
        .execute(&f.pool)
        .await
        .expect_err("still guarded after retention");
    assert!(err.to_string().contains("append-only"));
}
