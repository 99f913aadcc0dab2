//! `GET /api/v1/instances/{id}/statements/{queryid}/plans`: a statement's auto_explain plans
//! from the `log_plans` family, newest first, with their format, against a real migrated
//! store; who may read them (viewers of the instance, like its log and statement texts) and
//! the refusals.

use crate::common::{self, http::req};

use axum::http::StatusCode;
use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};

const JSON_PLAN: &str = r#"{"Query Text": "SELECT * FROM t WHERE a = ?", "Plan": {"Node Type": "Seq Scan", "Relation Name": "t", "Total Cost": 1.5, "Plan Rows": 1, "Filter": "(a = ?)"}}"#;

/// Three plans of queryid -42 on prod (one cut short, one two days old), one of another
/// statement, one of the same queryid on staging.
async fn seed(pool: &sqlx::PgPool) {
    let now = Utc::now();
    sqlx::query(
        "SELECT lasect_ensure_partitions(($1::timestamptz AT TIME ZONE 'UTC')::date - 3, \
         ($1::timestamptz AT TIME ZONE 'UTC')::date + 1)",
    )
    .bind(now)
    .execute(pool)
    .await
    .expect("partitions");
    let cut = &JSON_PLAN[..60];
    for (minutes, instance, queryid, plan, truncated) in [
        (10, 1, -42_i64, JSON_PLAN, Some(false)),
        (5, 1, -42, cut, Some(true)),
        (
            2 * 24 * 60,
            1,
            -42,
            "Result  (cost=0.00..0.01 rows=1 width=4)",
            None,
        ),
        (3, 1, 7, "Result", Some(false)),
        (4, 2, -42, "Result", Some(false)),
    ] {
        sqlx::query(
            "INSERT INTO metric_log_plans (time, instance_id, pid, query_id, duration_ms, \
             database, user_name, query_text, plan, plan_truncated) \
             VALUES ($1, $2, 4242, $3, 12.5, 'shop', 'alice', 'SELECT * FROM t WHERE a = ?', $4, $5)",
        )
        .bind(now - TimeDelta::minutes(minutes))
        .bind(instance)
        .bind(queryid)
        .bind(plan)
        .bind(truncated)
        .execute(pool)
        .await
        .expect("insert plan");
    }
}

fn plans(body: &Value) -> &Vec<Value> {
    body["plans"].as_array().expect("plans")
}

#[tokio::test]
async fn a_statements_plans_newest_first_with_their_format() {
    let f = common::fixture::fixture().await;
    seed(&f.pool).await;
    let (status, body) = req("GET", "/api/v1/instances/1/statements/-42/plans")
        .token(&f.viewer)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["queryid"], -42);
    assert_eq!(body["instance"]["name"], "prod");
    let list = plans(&body);
    assert_eq!(
        list.len(),
        2,
        "the last day only, this instance only: {body}"
    );
    assert_eq!(list[0]["format"], "text", "cut short: not JSON");
    assert_eq!(list[0]["truncated"], true);
    assert_eq!(list[1]["format"], "json");
    assert_eq!(list[1]["plan"], JSON_PLAN);
    assert_eq!(list[1]["truncated"], false);
    assert_eq!(
        (
            &list[1]["duration_ms"],
            &list[1]["database"],
            &list[1]["user_name"],
            &list[1]["pid"],
            &list[1]["query_text"],
        ),
        (
            &json!(12.5),
            &json!("shop"),
            &json!("alice"),
            &json!(4242),
            &json!("SELECT * FROM t WHERE a = ?"),
        )
    );
    assert!(list[0]["time"].as_str() > list[1]["time"].as_str());

    // since reaches back; limit keeps the newest.
    let (status, body) = req("GET", "/api/v1/instances/1/statements/-42/plans?since=3d")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list = plans(&body);
    assert_eq!(list.len(), 3, "{body}");
    assert_eq!(list[2]["format"], "text");
    assert!(list[2]["truncated"].is_null(), "an older agent's row");
    let (_, body) = req(
        "GET",
        "/api/v1/instances/1/statements/-42/plans?since=3d&limit=1",
    )
    .token(&f.admin)
    .send(&f.app)
    .await;
    assert_eq!(plans(&body).len(), 1);
    assert_eq!(plans(&body)[0]["truncated"], true);

    // A statement without plans: an empty list, not an error.
    let (status, body) = req("GET", "/api/v1/instances/1/statements/99/plans")
        .token(&f.viewer)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(plans(&body).is_empty());
}

#[tokio::test]
async fn refusals() {
    let f = common::fixture::fixture().await;
    seed(&f.pool).await;
    // No caller, or one with no role on the instance's labels (scoped: nothing on env=dev).
    let (status, _) = req("GET", "/api/v1/instances/1/statements/-42/plans")
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = req("GET", "/api/v1/instances/3/statements/-42/plans")
        .token(&f.scoped)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Viewer on env=prod is enough.
    let (status, body) = req("GET", "/api/v1/instances/1/statements/-42/plans")
        .token(&f.scoped)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(plans(&body).len(), 2);
    for (uri, want, code) in [
        (
            "/api/v1/instances/1/statements/x/plans",
            StatusCode::BAD_REQUEST,
            "invalid_queryid",
        ),
        (
            "/api/v1/instances/1/statements/99999999999999999999/plans",
            StatusCode::BAD_REQUEST,
            "invalid_queryid",
        ),
        (
            "/api/v1/instances/one/statements/1/plans",
            StatusCode::BAD_REQUEST,
            "invalid_instance_id",
        ),
        (
            "/api/v1/instances/1/statements/1/plans?limit=0",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/api/v1/instances/1/statements/1/plans?limit=101",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/api/v1/instances/1/statements/1/plans?sort=x",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/api/v1/instances/1/statements/1/plans?since=yesterday",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_query",
        ),
        (
            "/api/v1/instances/999/statements/1/plans",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ] {
        let (status, body) = req("GET", uri).token(&f.admin).send(&f.app).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (want, &json!(code)),
            "{uri}: {body}"
        );
    }
}
