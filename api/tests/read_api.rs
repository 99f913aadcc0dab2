//! Series downsampling, top statements and their errors, against a real migrated store with
//! rows of known values (the expected aggregates are computed by hand in the comments).

use crate::common;

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use lasect_api::server::store_pool;
use lasect_api::store_dsn::StoreDsn;
use lasect_testkit::{PgCluster, PgOptions};
use serde_json::{Value, json};
use sqlx::PgPool;

struct Fixture {
    _pg: PgCluster,
    pool: PgPool,
    app: Router,
    /// A minute boundary ten minutes ago: the series buckets start here.
    base: DateTime<Utc>,
}

async fn fixture() -> Fixture {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let dsn = pg.store_dsn().await.expect("migrated store");
    let pool = store_pool(&StoreDsn::new(dsn), Duration::from_secs(10)).expect("pool");
    let base = Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .expect("trunc")
        - TimeDelta::minutes(10);
    sqlx::query("SELECT lasect_ensure_partitions(($1::timestamptz AT TIME ZONE 'UTC')::date - 1, ($1::timestamptz AT TIME ZONE 'UTC')::date + 1)")
        .bind(base)
        .execute(&pool)
        .await
        .expect("partitions");
    sqlx::raw_sql(
        "INSERT INTO agents (id) VALUES ('db-01'), ('db-02');
         INSERT INTO instances (name, agent_id) VALUES ('main', 'db-01'), ('main', 'db-02');",
    )
    .execute(&pool)
    .await
    .expect("seed instances");
    Fixture {
        _pg: pg,
        app: common::admin_app(&pool).await,
        pool,
        base,
    }
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    let answer = common::http::call(app, "GET", uri, None, None, common::http::LOCAL).await;
    let body = serde_json::from_slice(&answer.bytes)
        .unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {:?}", answer.text));
    (answer.status, body)
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn url_ts(t: DateTime<Utc>) -> String {
    ts(t).replace('+', "%2B")
}

async fn insert_database(
    pool: &PgPool,
    instance: i64,
    time: DateTime<Utc>,
    datname: &str,
    commits: i64,
    backends: i32,
) {
    sqlx::query(
        "INSERT INTO metric_database (time, instance_id, datid, datname, numbackends, xact_commit)
         VALUES ($1, $2, 1, $3, $4, $5)",
    )
    .bind(time)
    .bind(instance)
    .bind(datname)
    .bind(backends)
    .bind(commits)
    .execute(pool)
    .await
    .expect("insert metric_database");
}

fn assert_close(got: &Value, want: f64, what: &str) {
    let got = got
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: not a number: {got}"));
    assert!((got - want).abs() < 1e-9, "{what}: got {got}, want {want}");
}

#[tokio::test]
async fn series_buckets_average_gauges_and_rate_counters() {
    let f = fixture().await;
    let b = f.base;
    let s = |secs: i64| b + TimeDelta::seconds(secs);
    // `app`: one row before `from` (only the previous sample of the first rate), then every 20 s.
    for (secs, commits, backends) in [
        (-20, 90, 9),
        (0, 100, 1),
        (20, 120, 2),
        (40, 160, 3),
        (60, 220, 4),
        (80, 220, 5),
        (100, 400, 6),
        (120, 1000, 7), // at `to`: excluded (to is exclusive)
    ] {
        insert_database(&f.pool, 1, s(secs), "app", commits, backends).await;
    }
    // `postgres`: a counter reset at +40 s.
    for (secs, commits) in [(0, 1000), (20, 1010), (40, 5), (60, 25)] {
        insert_database(&f.pool, 1, s(secs), "postgres", commits, 1).await;
    }
    // Another instance's rows never leak in.
    insert_database(&f.pool, 2, s(10), "app", 1_000_000, 100).await;

    let uri = format!(
        "/api/v1/instances/1/metrics/database?from={}&to={}&step=1m",
        url_ts(s(0)),
        url_ts(s(120))
    );
    let (status, body) = get(&f.app, &uri).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["family"], "database");
    assert_eq!(body["step_seconds"], 60);
    assert_eq!(body["bucketing"], "date_bin");
    assert_eq!(body["keys"], json!(["datname"]));
    assert_eq!(body["instance"]["id"], 1);
    let columns = body["columns"].as_array().expect("columns");
    assert!(columns.contains(&json!({"name": "xact_commit", "aggregate": "rate"})));
    assert!(columns.contains(&json!({"name": "numbackends", "aggregate": "avg"})));

    let series = body["series"].as_array().expect("series");
    assert_eq!(series.len(), 2, "{body}");
    let app = &series[0];
    assert_eq!(app["key"], json!({"datname": "app"}));
    let points = app["points"].as_array().expect("points");
    assert_eq!(points.len(), 2, "{app}");
    assert_eq!(points[0]["time"], ts(s(0)));
    assert_eq!(points[1]["time"], ts(s(60)));
    assert_eq!(points[0]["row_count"], 3);
    assert_eq!(points[1]["row_count"], 3);
    // Bucket 0: backends (1+2+3)/3 = 2; commits from 90 (last before, at -20 s) to 160 (last
    // in the bucket, at +40 s): 70 over 60 s.
    assert_close(&points[0]["numbackends"], 2.0, "app avg 0");
    assert_close(&points[0]["xact_commit"], 70.0 / 60.0, "app rate 0");
    // Bucket 1: backends (4+5+6)/3 = 5; commits 160 → 400 from +40 s to +100 s: 240/60 = 4.
    assert_close(&points[1]["numbackends"], 5.0, "app avg 1");
    assert_close(&points[1]["xact_commit"], 4.0, "app rate 1");
    // Columns not in the series spec are not in points; every spec column is.
    assert!(points[0].get("datid").is_none());
    assert!(points[0]["tup_inserted"].is_null(), "no data: null");

    let pg = &series[1];
    assert_eq!(pg["key"], json!({"datname": "postgres"}));
    let points = pg["points"].as_array().expect("points");
    // Bucket 0: nothing before it: no rate.
    assert!(points[0]["xact_commit"].is_null(), "{pg}");
    // Bucket 1: the counter went down (1010 at most in bucket 0, 25 now): reset, so the 25
    // counted since are the increase, over the 20 s since bucket 0's last sample (+40 s).
    assert_close(&points[1]["xact_commit"], 1.25, "after reset");

    // Host families follow the instance's agent; avg of 10 and 30.
    for (secs, usage) in [(10, 10.0_f64), (30, 30.0), (70, 50.0)] {
        sqlx::query(
            "INSERT INTO metric_host_cpu (time, agent_id, cpu_count, usage_percent, load1, load5, load15)
             VALUES ($1, 'db-01', 4, $2, 1, 1, 1)",
        )
        .bind(s(secs))
        .bind(usage)
        .execute(&f.pool)
        .await
        .expect("host_cpu");
    }
    let uri = format!(
        "/api/v1/instances/1/metrics/host_cpu?from={}&to={}&step=60",
        url_ts(s(0)),
        url_ts(s(120))
    );
    let (status, body) = get(&f.app, &uri).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let points = body["series"][0]["points"].as_array().expect("points");
    assert_eq!(body["series"][0]["key"], json!({}));
    assert_close(&points[0]["usage_percent"], 20.0, "cpu avg 0");
    assert_close(&points[1]["usage_percent"], 50.0, "cpu avg 1");
    let (_, other) = get(
        &f.app,
        &format!(
            "/api/v1/instances/2/metrics/host_cpu?from={}&to={}",
            url_ts(s(0)),
            url_ts(s(120))
        ),
    )
    .await;
    assert_eq!(other["series"], json!([]), "db-02 has no host rows");

    // Without from/to/step: the last hour, step chosen (15 s gives at most 300 buckets).
    let (status, body) = get(&f.app, "/api/v1/instances/1/metrics/database").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["step_seconds"], 15);
    let total: i64 = body["series"]
        .as_array()
        .expect("series")
        .iter()
        .flat_map(|s| s["points"].as_array().expect("points").iter())
        .map(|p| p["row_count"].as_i64().expect("row_count"))
        .sum();
    assert_eq!(total, 12, "every row of instance 1 in the last hour");

    // Every family answers (an empty series list) with its own SQL.
    for family in lasect_api::routes::FAMILIES {
        let (status, body) = get(
            &f.app,
            &format!("/api/v1/instances/2/metrics/{}?step=5m", family.name),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", family.name);
    }
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
    assert_eq!(
        body["error"].as_object().map(|o| o.len()),
        Some(2),
        "{body}"
    );
}

#[tokio::test]
async fn bad_parameters_get_documented_errors() {
    let f = fixture().await;
    // Against the document: 400; well-formed but not servable as asked: 422.
    let bad = StatusCode::BAD_REQUEST;
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let cases = [
        (
            "/api/v1/instances/x/metrics/database",
            bad,
            "invalid_instance_id",
        ),
        ("/api/v1/instances/1/metrics/nope", bad, "unknown_family"),
        (
            "/api/v1/instances/1/metrics/database?from=yesterday",
            bad,
            "invalid_time",
        ),
        (
            "/api/v1/instances/1/metrics/database?to=2025-13-01T00:00:00Z",
            bad,
            "invalid_time",
        ),
        (
            "/api/v1/instances/1/metrics/database?from=2025-01-02T00:00:00Z&to=2025-01-01T00:00:00Z",
            unprocessable,
            "invalid_range",
        ),
        (
            "/api/v1/instances/1/metrics/database?from=2020-01-01T00:00:00Z&to=2025-01-01T00:00:00Z",
            unprocessable,
            "invalid_range",
        ),
        (
            "/api/v1/instances/1/metrics/database?step=0s",
            unprocessable,
            "invalid_step",
        ),
        (
            "/api/v1/instances/1/metrics/database?step=5w",
            bad,
            "invalid_step",
        ),
        (
            "/api/v1/instances/1/metrics/database?step=-1",
            bad,
            "invalid_step",
        ),
        (
            "/api/v1/instances/1/metrics/database?from=2025-01-01T00:00:00Z&to=2025-01-02T00:00:00Z&step=1s",
            unprocessable,
            "too_many_points",
        ),
        (
            "/api/v1/instances/1/metrics/database?limit=3",
            bad,
            "invalid_query",
        ),
        (
            "/api/v1/instances/999/metrics/database",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/api/v1/instances/1/statements/top?by=speed",
            bad,
            "invalid_query",
        ),
        (
            "/api/v1/instances/1/statements/top?limit=0",
            bad,
            "invalid_query",
        ),
        (
            "/api/v1/instances/1/statements/top?limit=1001",
            bad,
            "invalid_query",
        ),
        (
            "/api/v1/instances/1/statements/top?from=now",
            bad,
            "invalid_time",
        ),
        (
            "/api/v1/instances/one/statements/top",
            bad,
            "invalid_instance_id",
        ),
        (
            "/api/v1/instances/999/statements/top",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (uri, status_want, code) in cases {
        let (status, body) = get(&f.app, uri).await;
        assert_error(status, &body, status_want, code);
    }

    // 20 001 statements in one bucket are 20 001 points: over the bound, refused whole.
    let t = f.base;
    sqlx::query(
        "INSERT INTO metric_statement (time, instance_id, queryid, dbid, userid, toplevel,
             since_reset, calls)
         SELECT $1, 1, g, 1, 1, true, false, 1 FROM generate_series(1, $2) AS g",
    )
    .bind(t)
    .bind(lasect_api::routes::metrics_series::MAX_POINTS + 1)
    .execute(&f.pool)
    .await
    .expect("many statements");
    let uri = format!(
        "/api/v1/instances/1/metrics/statement?from={}&to={}&step=1h",
        url_ts(t - TimeDelta::minutes(5)),
        url_ts(t + TimeDelta::minutes(5))
    );
    let (status, body) = get(&f.app, &uri).await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many_points",
    );
    sqlx::query("DELETE FROM metric_statement WHERE queryid > 1")
        .execute(&f.pool)
        .await
        .expect("delete");
    let (status, body) = get(&f.app, &uri).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["series"][0]["points"][0]["calls"], 1.0);
}

#[allow(clippy::too_many_arguments)]
async fn insert_statement(
    pool: &PgPool,
    time: DateTime<Utc>,
    queryid: i64,
    calls: i64,
    total_ms: f64,
    rows: i64,
    blks_read: i64,
    since_reset: bool,
) {
    sqlx::query(
        "INSERT INTO metric_statement (time, instance_id, queryid, dbid, userid, toplevel,
             since_reset, calls, rows, total_exec_time_ms, total_plan_time_ms, shared_blks_hit,
             shared_blks_read, shared_blks_written, temp_blks_written)
         VALUES ($1, 1, $2, 5, 10, true, $3, $4, $5, $6, 0.5, 7, $7, 0, 0)",
    )
    .bind(time)
    .bind(queryid)
    .bind(since_reset)
    .bind(calls)
    .bind(rows)
    .bind(total_ms)
    .bind(blks_read)
    .execute(pool)
    .await
    .expect("insert metric_statement");
}

#[tokio::test]
async fn top_statements_rank_by_each_order() {
    let f = fixture().await;
    let s = |secs: i64| f.base + TimeDelta::seconds(secs);
    // Totals over [0, 120 s):
    //        calls  total_ms  mean   rows  io
    //   q11   100      50      0.5     10    5
    //   q22    10     200     20     1000    1
    //   q33     1     100    100        1  900
    insert_statement(&f.pool, s(30), 11, 60, 30.0, 6, 3, false).await;
    insert_statement(&f.pool, s(60), 11, 40, 20.0, 4, 2, false).await;
    insert_statement(&f.pool, s(30), 22, 10, 200.0, 1000, 1, true).await;
    insert_statement(&f.pool, s(90), 33, 1, 100.0, 1, 900, false).await;
    // Outside the range: would put q33 first on calls if counted.
    insert_statement(&f.pool, s(-30), 33, 5000, 1.0, 1, 0, false).await;
    insert_statement(&f.pool, s(120), 33, 5000, 1.0, 1, 0, false).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO statement_texts (instance_id, queryid, query, first_seen) VALUES
             (1, 11, 'SELECT $1', '{t}'), (1, 22, 'UPDATE t SET x = $1', '{t}');
         INSERT INTO metric_database (time, instance_id, datid, datname) VALUES ('{t}', 1, 5, 'app');",
        t = ts(s(0))
    )))
    .execute(&f.pool)
    .await
    .expect("texts");

    let range = format!("from={}&to={}", url_ts(s(0)), url_ts(s(120)));
    for (by, order) in [
        ("total_time", [22, 33, 11]),
        ("mean_time", [33, 22, 11]),
        ("calls", [11, 22, 33]),
        ("rows", [22, 11, 33]),
        ("io", [33, 11, 22]),
    ] {
        let (status, body) = get(
            &f.app,
            &format!("/api/v1/instances/1/statements/top?by={by}&{range}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["by"], by);
        let ids: Vec<i64> = body["statements"]
            .as_array()
            .expect("statements")
            .iter()
            .map(|s| s["queryid"].as_i64().expect("queryid"))
            .collect();
        assert_eq!(ids, order, "by {by}: {body}");
    }

    let (_, body) = get(
        &f.app,
        &format!("/api/v1/instances/1/statements/top?by=calls&limit=1&{range}"),
    )
    .await;
    let statements = body["statements"].as_array().expect("statements");
    assert_eq!(statements.len(), 1);
    let q = &statements[0];
    assert_eq!(q["queryid"], 11);
    assert_eq!(q["query"], "SELECT $1");
    assert_eq!(q["datname"], "app");
    assert_eq!(q["calls"], 100);
    assert_eq!(q["rows"], 10);
    assert_eq!(q["intervals"], 2);
    assert_eq!(q["partial"], false);
    assert_close(&q["total_exec_time_ms"], 50.0, "total");
    assert_close(&q["mean_exec_time_ms"], 0.5, "mean");
    assert_close(&q["total_plan_time_ms"], 1.0, "plan");
    assert_eq!(q["io_blocks"], 5);
    assert_eq!(q["shared_blks_hit"], 14);

    let (_, body) = get(
        &f.app,
        &format!("/api/v1/instances/1/statements/top?by=io&{range}"),
    )
    .await;
    let first = &body["statements"][0];
    assert_eq!(first["queryid"], 33);
    assert!(first["query"].is_null(), "text unknown: null");
    assert_eq!(
        body["statements"][2]["partial"], true,
        "q22 counts from a reset"
    );

    // Defaults: the last hour, by total_time.
    let (status, body) = get(&f.app, "/api/v1/instances/1/statements/top").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["by"], "total_time");
    assert_eq!(body["statements"].as_array().map(Vec::len), Some(3));
}
