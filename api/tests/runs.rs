//! Runs from the API's side, against a real migrated store. No agent exists here: where a
//! test needs a run to end, it writes the run's row the way ingest does (the store is the
//! contract between them, docs/CONTROL.md).

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use lasect_api::auth::Role;
use lasect_api::server::store_pool;
use lasect_api::store_dsn::StoreDsn;
use lasect_testkit::{PgCluster, PgOptions};
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;

struct Fixture {
    _pg: PgCluster,
    /// The DSN key file is re-read when it changes: it must outlive the app.
    _keys: tempfile::TempDir,
    pool: PgPool,
    app: Router,
}

async fn fixture() -> Fixture {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let dsn = pg.store_dsn().await.expect("migrated store");
    let pool = store_pool(&StoreDsn::new(dsn), Duration::from_secs(10)).expect("pool");
    sqlx::raw_sql(
        "INSERT INTO agents (id, control_allowed) VALUES ('db-01', '{sql,schema}'), ('db-02', '{sql}');
         INSERT INTO instances (name, agent_id, labels) VALUES
             ('main', 'db-01', '{\"env\":\"prod\"}'), ('other', 'db-02', '{}');",
    )
    .execute(&pool)
    .await
    .expect("seed");
    let keyring_dir = tempfile::tempdir().expect("tempdir");
    let keyring = lasect_pki::secrets::KeyFile::open_or_create(&keyring_dir.path().join("k"))
        .expect("keyring");
    let app = common::with_bearer(
        lasect_api::router(lasect_api::AppState::new(pool.clone()).with_secrets(keyring)),
        &common::user(&pool, "root", Some(Role::Admin), &[]).await,
    );
    Fixture {
        _pg: pg,
        _keys: keyring_dir,
        pool,
        app,
    }
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    let request = match body {
        Some(b) => request
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => request.body(Body::empty()),
    }
    .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn sql_runs_are_queued_with_limits_and_writes_need_admin() {
    let f = fixture().await;
    let (status, run) = call(
        &f.app,
        "POST",
        "/api/v1/instances/1/sql",
        Some(json!({"sql": "SELECT $1", "params": ["x"], "max_rows": 5})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    assert_eq!(run["status"], "queued");
    assert_eq!(run["max_rows"], 5);
    assert_eq!(run["timeout_ms"], 30000);
    assert_eq!(run["params"]["params"], json!(["x"]));
    assert_eq!(
        run["requested_by"], "token:1:root",
        "an API token names itself and its user"
    );

    for (body, code) in [
        (json!({"sql": ""}), StatusCode::BAD_REQUEST),
        (
            json!({"sql": "SELECT 1", "max_rows": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"sql": "SELECT 1", "timeout_ms": 3_600_001}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"sql": "SELECT 1", "unknown": 1}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, answer) = call(
            &f.app,
            "POST",
            "/api/v1/instances/1/sql",
            Some(body.clone()),
            None,
        )
        .await;
        assert_eq!(status, code, "{body}: {answer}");
    }
    let (status, _) = call(
        &f.app,
        "POST",
        "/api/v1/instances/99/sql",
        Some(json!({"sql": "SELECT 1"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A user may read but not write; a viewer may not run SQL at all.
    let user = common::user(&f.pool, "u", Some(Role::User), &[]).await;
    let viewer = common::user(&f.pool, "v", Some(Role::Viewer), &[]).await;
    let (status, _) = call(
        &f.app,
        "POST",
        "/api/v1/instances/1/sql",
        Some(json!({"sql": "SELECT 1"})),
        Some(&user),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = call(
        &f.app,
        "POST",
        "/api/v1/instances/1/sql",
        Some(json!({"sql": "DELETE FROM t", "write": true})),
        Some(&user),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(
        &f.app,
        "POST",
        "/api/v1/instances/1/sql",
        Some(json!({"sql": "SELECT 1"})),
        Some(&viewer),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Cancel: a queued run is cancelled at once; only the requester or an admin may.
    let (status, _) = call(&f.app, "POST", "/api/v1/runs/1/cancel", None, Some(&user)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the user did not ask for run 1"
    );
    let (status, run) = call(&f.app, "POST", "/api/v1/runs/1/cancel", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run["status"], "cancelled");
    let (_, list) = call(&f.app, "GET", "/api/v1/runs?status=cancelled", None, None).await;
    assert_eq!(list["runs"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn result_pages_come_back_decompressed() {
    let f = fixture().await;
    let (_, run) = call(
        &f.app,
        "POST",
        "/api/v1/instances/1/sql",
        Some(json!({"sql": "SELECT 1"})),
        None,
    )
    .await;
    let id = run["id"].as_i64().expect("id");
    let page = zstd::bulk::compress(br#"[[1,"a"],[2,null]]"#, 3).expect("compress");
    sqlx::query(
        "INSERT INTO run_results (run_id, page, rows, bytes, data) VALUES ($1, 0, 2, 18, $2)",
    )
    .bind(id)
    .bind(page)
    .execute(&f.pool)
    .await
    .expect("page");
    sqlx::query(
        "UPDATE runs SET status = 'succeeded', finished_at = now(), rows = 2, pages = 1, \
         summary = '{\"columns\": [{\"name\": \"n\", \"type\": \"int4\"}]}' WHERE id = $1",
    )
    .bind(id)
    .execute(&f.pool)
    .await
    .expect("finish");
    let (status, page) = call(
        &f.app,
        "GET",
        &format!("/api/v1/runs/{id}/result?page=0"),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["rows"], json!([[1, "a"], [2, null]]));
    assert_eq!(page["columns"][0]["name"], "n");
    let (status, _) = call(
        &f.app,
        "GET",
        &format!("/api/v1/runs/{id}/result?page=1"),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn periodic_snapshots_go_only_to_agents_that_accept_them() {
    let f = fixture().await;
    let queued = lasect_api::runs::queue_periodic_snapshots(&f.pool, Duration::from_secs(3000))
        .await
        .expect("queue");
    assert_eq!(queued, 1, "db-01 allows `schema`, db-02 does not");
    let again = lasect_api::runs::queue_periodic_snapshots(&f.pool, Duration::from_secs(3000))
        .await
        .expect("queue");
    assert_eq!(again, 0, "one snapshot per interval");
    let by: String =
        sqlx::query_scalar("SELECT requested_by FROM runs WHERE kind = 'schema_snapshot'")
            .fetch_one(&f.pool)
            .await
            .expect("run");
    assert_eq!(by, "system");
}

#[tokio::test]
async fn adding_an_instance_keeps_only_ciphertext_and_never_echoes_the_password() {
    let f = fixture().await;
    let (status, body) = call(
        &f.app,
        "POST",
        "/api/v1/instances",
        Some(json!({"dsn": "host='oops", "agent": "db-01"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM instances")
        .fetch_one(&f.pool)
        .await
        .expect("count");
    assert_eq!(count, 2, "nothing saved for a malformed DSN");
    let (status, body) = call(
        &f.app,
        "POST",
        "/api/v1/instances",
        Some(json!({"dsn": "host=h password=Zq9marker"})),
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "two agents: which one? {body}"
    );
    assert!(!body.to_string().contains("Zq9marker"));

    // No agent answers here: the check times out quickly when asked not to wait…
    let app = f.app.clone();
    let add = tokio::spawn(async move {
        call(&app, "POST", "/api/v1/instances", Some(json!({"dsn": "host=h user=u password=Zq9marker dbname=d", "agent": "db-01", "name": "new"})), None).await
    });
    // …so play the agent: wait for the check run and pass it.
    let run: i64 = loop {
        if let Some(id) =
            sqlx::query_scalar::<_, i64>("SELECT id FROM runs WHERE kind = 'instance_check'")
                .fetch_optional(&f.pool)
                .await
                .expect("runs")
        {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let params: Value = sqlx::query_scalar("SELECT params FROM runs WHERE id = $1")
        .bind(run)
        .fetch_one(&f.pool)
        .await
        .expect("params");
    assert!(
        !params.to_string().contains("Zq9marker"),
        "the DSN is not in the run"
    );
    sqlx::query("UPDATE runs SET status = 'succeeded', finished_at = now(), summary = '{\"ok\": true}' WHERE id = $1")
        .bind(run)
        .execute(&f.pool)
        .await
        .expect("pass");
    sqlx::query("UPDATE instances SET state = 'active' WHERE name = 'new'")
        .execute(&f.pool)
        .await
        .expect("activate");
    let (status, body) = add.await.expect("join");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["instance"]["dsn"],
        "host=h user=u dbname=d password=********"
    );
    assert!(!body.to_string().contains("Zq9marker"));
    let dump: String = sqlx::query_scalar(
        "SELECT string_agg(row_to_json(i)::text, ' ') FROM (SELECT id, name, labels, dsn_redacted, encode(dsn_ciphertext, 'escape') AS c FROM instances) i",
    )
    .fetch_one(&f.pool)
    .await
    .expect("dump");
    assert!(!dump.contains("Zq9marker"), "{dump}");
    // Adding it again is a conflict.
    let (status, _) = call(
        &f.app,
        "POST",
        "/api/v1/instances",
        Some(json!({"dsn": "host=h", "agent": "db-01", "name": "new"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn migration_targets_by_role_and_publication() {
    let f = fixture().await;
    sqlx::raw_sql(
        "INSERT INTO instances (name, agent_id, in_recovery, metadata) VALUES
             ('sub-orders', 'db-01', false,
              '{\"replication\": {\"subscriptions\": [{\"name\": \"s1\", \"publications\": [\"orders\"]}]}}'),
             ('sub-other', 'db-01', false,
              '{\"replication\": {\"subscriptions\": [{\"name\": \"s2\", \"publications\": [\"other\"]}]}}'),
             ('standby', 'db-02', true, NULL);",
    )
    .execute(&f.pool)
    .await
    .expect("seed");
    let start = |targets: Value| {
        let app = f.app.clone();
        async move {
            call(
                &app,
                "POST",
                "/api/v1/migrations",
                Some(json!({"sql": "SELECT 1", "targets": targets, "dry_run": true})),
                None,
            )
            .await
        }
    };
    let (status, m) = start(json!({"role": "subscriber", "publication": "orders"})).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let names: Vec<&str> = m["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter_map(|t| t["instance_name"].as_str())
        .collect();
    assert_eq!(names, ["sub-orders"]);
    // One at a time: the next is refused while this one runs.
    let (status, body) = start(json!({"role": "standby"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = call(
        &f.app,
        "POST",
        &format!("/api/v1/migrations/{}/cancel", m["id"]),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, m) = start(json!({"role": "standby"})).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    assert_eq!(m["targets"][0]["instance_name"], "standby");
    let (status, _) = call(
        &f.app,
        "POST",
        &format!("/api/v1/migrations/{}/cancel", m["id"]),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for bad in [
        json!({"role": "leader"}),
        json!({"labels": {"env": "nowhere"}}),
        json!({}),
        json!({"role": "primary", "publication": "x"}),
    ] {
        let (status, body) = start(bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

#[tokio::test]
async fn queued_runs_expire_without_an_ingest() {
    let f = fixture().await;
    let (_, run) = call(
        &f.app,
        "POST",
        "/api/v1/instances/1/sql",
        Some(json!({"sql": "SELECT 1", "queue_timeout_s": 1})),
        None,
    )
    .await;
    let id = run["id"].as_i64().expect("id");
    sqlx::query("UPDATE runs SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(&f.pool)
        .await
        .expect("age the run");
    assert_eq!(
        lasect_api::runs::expire_queued(&f.pool)
            .await
            .expect("expire"),
        1
    );
    let (_, run) = call(&f.app, "GET", &format!("/api/v1/runs/{id}"), None, None).await;
    assert_eq!(run["status"], "expired");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or("")
            .contains("agent db-01 did not pick the run up"),
        "{run}"
    );
    assert_eq!(
        lasect_api::runs::expire_queued(&f.pool)
            .await
            .expect("expire"),
        0
    );
}
