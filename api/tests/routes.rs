//! The routes against a real, migrated store, driven with `oneshot`.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use lasect_api::server::store_pool;
use lasect_api::store_dsn::StoreDsn;
use lasect_api::{AppState, router};
use lasect_testkit::{PgCluster, PgOptions, free_port};
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;

use crate::common;

/// The admin API token every request of these tests carries (inserted by `seed`).
const ADMIN_TOKEN: &str = "lsat_routes-test-admin-token-0000000000000000000";

struct Fixture {
    _pg: PgCluster,
    app: Router,
    /// Latest and previous sample times.
    t2: DateTime<Utc>,
    t1: DateTime<Utc>,
}

async fn fixture() -> Fixture {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let dsn = pg.store_dsn().await.expect("migrated store");
    let pool = store_pool(&StoreDsn::new(dsn), Duration::from_secs(10)).expect("pool");
    // Whole seconds keep the RFC 3339 strings predictable.
    let t2 = Utc::now().trunc_subsecs(0) - TimeDelta::seconds(30);
    let t1 = t2 - TimeDelta::seconds(30);
    seed(&pool, t1, t2).await;
    Fixture {
        _pg: pg,
        app: router(AppState::new(pool)),
        t1,
        t2,
    }
}

/// Agents db-01 (instances 1 "main" and 3 "reports") and db-02 (instance 2 "main").
async fn seed(pool: &PgPool, t1: DateTime<Utc>, t2: DateTime<Utc>) {
    let admin = lasect_api::auth::users::create_user(
        pool,
        "admin",
        common::PASSWORD.to_owned(),
        Some(lasect_api::auth::Role::Admin),
        "test",
    )
    .await
    .expect("admin");
    common::insert_token(pool, admin, ADMIN_TOKEN, lasect_api::auth::Role::Admin).await;
    sqlx::raw_sql(
        "INSERT INTO agents (id, hostname, version) VALUES
             ('db-01', 'host1', '0.1.0'), ('db-02', 'host2', '0.1.0');
         INSERT INTO instances (name, agent_id, server_version_num, version, in_recovery, labels,
                                created_at, last_seen)
         VALUES ('main', 'db-01', 170002, '17.2', false, '{\"env\": \"prod\"}',
                 '2025-01-02 03:04:05+00', '2025-01-02 03:05:00+00'),
                ('main', 'db-02', 160004, '16.4', true, '{}', '2025-01-02 03:04:05+00', NULL),
                ('reports', 'db-01', NULL, NULL, NULL, '{}', '2025-01-02 03:04:05+00', NULL);",
    )
    .execute(pool)
    .await
    .expect("seed instances");

    let db_rows = [
        (1_i64, t1, 5_i64, "app", 10_i64),
        (1, t1, 1, "postgres", 11),
        (1, t2, 5, "app", 20),
        (1, t2, 1, "postgres", 21),
        (1, t2, 4, "analytics", 22),
        (3, t2, 5, "other", 99),
    ];
    for (instance, time, datid, datname, commits) in db_rows {
        sqlx::query(
            "INSERT INTO metric_database (time, instance_id, datid, datname, numbackends,
                 xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched,
                 tup_inserted, tup_updated, tup_deleted, conflicts, temp_files, temp_bytes,
                 deadlocks, size_bytes, stats_reset)
             VALUES ($1, $2, $3, $4, 2, $5, 1, 10, 90, 100, 50, 5, 4, 3, 0, 0, 0, 0, 8192000, NULL)",
        )
        .bind(time)
        .bind(instance)
        .bind(datid)
        .bind(datname)
        .bind(commits)
        .execute(pool)
        .await
        .expect("insert metric_database");
    }
    for (i, agent) in [(0_i64, "db-02"), (1, "db-02"), (2, "db-02"), (0, "db-01")] {
        let time = t2 - TimeDelta::seconds(10 * i);
        sqlx::query(
            "INSERT INTO metric_host_cpu (time, agent_id, cpu_count, usage_percent, load1, load5, load15)
             VALUES ($1, $2, 4, $3, 0.5, 0.25, 0.125)",
        )
        .bind(time)
        .bind(agent)
        .bind(10.0 + i as f64)
        .execute(pool)
        .await
        .expect("insert metric_host_cpu");
    }
    sqlx::query(
        "INSERT INTO metric_host_memory (time, agent_id, total_bytes, used_bytes, available_bytes,
             free_bytes, swap_total_bytes, swap_used_bytes)
         VALUES ($1, 'db-01', 1000, 400, 600, 500, 0, 0)",
    )
    .bind(t2)
    .execute(pool)
    .await
    .expect("insert metric_host_memory");
}

async fn call(app: &Router, method: &str, uri: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .expect("request");
    let response = app
        .clone()
        .oneshot(request)
        .await
        .expect("router is infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("read body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{uri}: body is not JSON ({e}): {bytes:?}"));
    (status, body)
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    call(app, "GET", uri).await
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn assert_error(status: StatusCode, body: &Value, want_status: StatusCode, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    let message = body["error"]["message"]
        .as_str()
        .expect("message is a string");
    assert!(!message.is_empty());
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "only `error`: {body}"
    );
}

#[tokio::test]
async fn health_and_instance_list() {
    let f = fixture().await;
    let (status, body) = get(&f.app, "/api/v1/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"status": "ok", "store": "ok", "version": "0.1.0"})
    );

    let (status, body) = get(&f.app, "/api/v1/instances").await;
    assert_eq!(status, StatusCode::OK);
    let instances = body["instances"].as_array().expect("instances array");
    let names: Vec<_> = instances
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["agent_id"].as_str().unwrap_or("?"),
                i["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert_eq!(names, ["db-01/main", "db-01/reports", "db-02/main"]);
    // The key figures depend on the seeded samples' times (instance_figures.rs checks them).
    let mut first = instances[0].clone();
    let figures = first.as_object_mut().and_then(|o| o.remove("figures"));
    assert!(figures.is_some_and(|f| f.is_object()), "{first}");
    assert_eq!(
        first,
        json!({
            "id": 1, "name": "main", "agent_id": "db-01", "server_version_num": 170002,
            "version": "17.2", "in_recovery": false, "labels": {"env": "prod"},
            "created_at": "2025-01-02T03:04:05Z", "last_seen": "2025-01-02T03:05:00Z",
            "source": "agent", "state": "active", "dsn": null, "health": null, "health_at": null,
        })
    );
    assert_eq!(instances[1]["server_version_num"], Value::Null);
    assert_eq!(instances[2]["last_seen"], Value::Null);
}

#[tokio::test]
async fn database_samples_of_the_latest_sample_times() {
    let f = fixture().await;
    let (status, body) = get(&f.app, "/api/v1/instances/1/samples/database").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["family"], "database");
    assert_eq!(body["instance"]["id"], 1);
    assert_eq!(body["instance"]["agent_id"], "db-01");
    let columns: Vec<&str> = body["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(columns[..4], ["time", "datid", "datname", "numbackends"]);
    assert!(columns.contains(&"size_bytes") && columns.contains(&"stats_reset"));
    assert!(!columns.contains(&"instance_id"));

    let rows = body["rows"].as_array().expect("rows");
    let got: Vec<(&str, &str, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["time"].as_str().expect("time"),
                r["datname"].as_str().expect("datname"),
                r["xact_commit"].as_i64().expect("xact_commit"),
            )
        })
        .collect();
    let t2 = rfc3339(f.t2);
    assert_eq!(
        got,
        [
            (&*t2, "analytics", 22),
            (&*t2, "app", 20),
            (&*t2, "postgres", 21)
        ]
    );
    for row in rows {
        let keys: Vec<&str> = row
            .as_object()
            .expect("row object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = columns.clone();
        want.sort_unstable();
        assert_eq!(keys, want, "row keys are the columns");
        assert_eq!(row["numbackends"], 2);
        assert_eq!(row["size_bytes"], 8_192_000);
        assert_eq!(row["stats_reset"], Value::Null);
    }

    let (status, body) = get(&f.app, "/api/v1/instances/1/samples/database?limit=2").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows = body["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[3]["time"], rfc3339(f.t1));
    assert_eq!(rows[3]["datname"], "app");

    // Limit beyond the data: everything of this instance, nothing of instance 3.
    let (_, body) = get(&f.app, "/api/v1/instances/1/samples/database?limit=1000").await;
    assert_eq!(body["rows"].as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn host_samples_follow_the_instances_agent() {
    let f = fixture().await;
    let (status, body) = get(&f.app, "/api/v1/instances/2/samples/host_cpu").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["rows"],
        json!([{"time": rfc3339(f.t2), "cpu_count": 4, "usage_percent": 10.0,
                "load1": 0.5, "load5": 0.25, "load15": 0.125}])
    );
    let (_, body) = get(&f.app, "/api/v1/instances/2/samples/host_cpu?limit=10").await;
    let usage: Vec<f64> = body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["usage_percent"].as_f64())
        .collect();
    assert_eq!(usage, [10.0, 11.0, 12.0], "newest first, only db-02's rows");

    let (status, body) = get(&f.app, "/api/v1/instances/3/samples/host_memory").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"][0]["used_bytes"], 400);
    assert_eq!(body["instance"]["name"], "reports");

    // No rows is an empty list, not an error.
    let (status, body) = get(&f.app, "/api/v1/instances/2/samples/host_memory").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["rows"], json!([]));
    let (_, body) = get(&f.app, "/api/v1/instances/2/samples/database").await;
    assert_eq!(body["rows"], json!([]));
}

#[tokio::test]
async fn bad_requests_get_stable_error_codes() {
    let f = fixture().await;
    let cases = [
        (
            "/api/v1/instances/999/samples/database",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/api/v1/instances/abc/samples/database",
            StatusCode::BAD_REQUEST,
            "invalid_instance_id",
        ),
        (
            "/api/v1/instances/99999999999999999999/samples/database",
            StatusCode::BAD_REQUEST,
            "invalid_instance_id",
        ),
        (
            "/api/v1/instances/1/samples/bogus",
            StatusCode::BAD_REQUEST,
            "unknown_family",
        ),
        (
            "/api/v1/instances/1/samples/metric_database",
            StatusCode::BAD_REQUEST,
            "unknown_family",
        ),
        (
            "/api/v1/instances/1/samples/database?limit=0",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/api/v1/instances/1/samples/database?limit=1001",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/api/v1/instances/1/samples/database?limit=-1",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/api/v1/instances/1/samples/database?limit=abc",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/api/v1/instances/1/samples/database?limt=2",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/api/v1/instances/1/samples/database%27%3B%20DROP%20TABLE%20instances",
            StatusCode::BAD_REQUEST,
            "unknown_family",
        ),
        ("/api/v1/nope", StatusCode::NOT_FOUND, "not_found"),
        ("/nope", StatusCode::NOT_FOUND, "not_found"),
    ];
    for (uri, status, code) in cases {
        let (got_status, body) = get(&f.app, uri).await;
        assert_error(got_status, &body, status, code);
    }
    let (_, body) = get(&f.app, "/api/v1/instances/1/samples/bogus").await;
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("database")
            && message.contains("host_cpu")
            && message.contains("host_memory"),
        "lists the known families: {message}"
    );
    let (status, body) = call(&f.app, "PUT", "/api/v1/instances").await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );

    // The store survived the injection attempt.
    let (_, body) = get(&f.app, "/api/v1/instances").await;
    assert_eq!(body["instances"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn unreachable_store_gives_503_without_internals() {
    // Nothing listens on this port.
    let dsn = StoreDsn::new(format!(
        "host=127.0.0.1 port={} user=postgres dbname=x",
        free_port()
    ));
    let pool = store_pool(&dsn, Duration::from_secs(1)).expect("lazy pool");
    let app = router(AppState::new(pool));

    let (status, body) = get(&app, "/api/v1/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        json!({"status": "degraded", "store": "unavailable", "version": "0.1.0"})
    );

    for uri in ["/api/v1/instances", "/api/v1/instances/1/samples/database"] {
        let (status, body) = get(&app, uri).await;
        assert_error(
            status,
            &body,
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
        );
        let text = body.to_string();
        assert!(
            !text.contains("127.0.0.1") && !text.contains("onnect"),
            "no internals: {text}"
        );
    }
}

#[tokio::test]
async fn store_errors_are_logged_not_returned() {
    // A database without the Lasect schema: every query fails inside PostgreSQL.
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let pool =
        store_pool(&StoreDsn::new(pg.dsn("postgres")), Duration::from_secs(10)).expect("pool");
    let app = router(AppState::new(pool));
    let (status, body) = get(&app, "/api/v1/instances").await;
    assert_error(status, &body, StatusCode::INTERNAL_SERVER_ERROR, "internal");
    assert_eq!(body["error"]["message"], "internal error");
    // Health only needs SELECT 1.
    let (status, _) = get(&app, "/api/v1/health").await;
    assert_eq!(status, StatusCode::OK);
}
