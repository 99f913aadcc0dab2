//! Runs from the API's side, against a real migrated store. No agent exists here: where a
//! test needs a run to end, it writes the run's row the way ingest does (the store is the
//! contract between them, docs/CONTROL.md).

use crate::common;

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use lasect_api::auth::Role;
use lasect_api::server::store_pool;
use lasect_api::store_dsn::StoreDsn;
use lasect_testkit::{PgCluster, PgOptions};
use serde_json::{Value, json};
use sqlx::PgPool;

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
    let answer = common::http::call(app, method, uri, token, body, common::http::LOCAL).await;
    (answer.status, answer.body)
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
    // Well-formed by the document (any string up to 4096 characters), not a DSN: 422.
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
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
        StatusCode::UNPROCESSABLE_ENTITY,
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
    // Against the document (400), or well-formed but selecting nothing sensible (422).
    for (bad, expected) in [
        (json!({"role": "leader"}), StatusCode::BAD_REQUEST),
        (json!({"instances": []}), StatusCode::BAD_REQUEST),
        (
            json!({"labels": {"env": "nowhere"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"role": "primary", "publication": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, body) = start(bad.clone()).await;
        assert_eq!(status, expected, "{bad}: {body}");
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

/// Raw GET: status and body bytes (downloads are not JSON).
async fn get_raw(app: &Router, uri: &str, token: &str) -> (StatusCode, Vec<u8>) {
    let answer = common::http::call(app, "GET", uri, Some(token), None, common::http::LOCAL).await;
    (answer.status, answer.bytes)
}

/// Every run kind (with the parameters that change who may create it) × every kind of caller:
/// metadata for whoever views the instance; parameters, summary, errors, result pages and
/// download only for the requester, admins of the instance and holders of the role that
/// creates the run.
#[tokio::test]
async fn run_details_are_visible_only_to_who_may_read_them() {
    let f = fixture().await;
    // (kind, params, role needed to create it, result: rows / bytes / none)
    let cases: &[(&str, Value, Role, &str)] = &[
        ("sql", json!({"sql": "SELECT secret"}), Role::User, "rows"),
        (
            "sql",
            json!({"sql": "UPDATE t", "write": true}),
            Role::Admin,
            "rows",
        ),
        (
            "explain",
            json!({"sql": "SELECT secret"}),
            Role::User,
            "none",
        ),
        (
            "explain",
            json!({"sql": "DELETE", "analyze": true, "write": true}),
            Role::Admin,
            "none",
        ),
        ("instance_check", json!({}), Role::User, "none"),
        ("instance_metadata", json!({}), Role::User, "none"),
        ("schema_snapshot", json!({}), Role::User, "bytes"),
        (
            "table_data",
            json!({"schema": "public", "table": "t"}),
            Role::User,
            "rows",
        ),
        (
            "export_csv",
            json!({"sql": "SELECT secret"}),
            Role::User,
            "bytes",
        ),
        (
            "import_csv",
            json!({"schema": "public", "table": "t"}),
            Role::Admin,
            "none",
        ),
        (
            "dump_sql",
            json!({"schema_only": true}),
            Role::User,
            "bytes",
        ),
        (
            "dump_sql",
            json!({"schema_only": false}),
            Role::Admin,
            "bytes",
        ),
        ("extension_list", json!({}), Role::User, "none"),
        (
            "extension_action",
            json!({"action": "enable", "name": "x"}),
            Role::Admin,
            "none",
        ),
        (
            "migration",
            json!({"sql": "ALTER TABLE t ADD c int"}),
            Role::Admin,
            "none",
        ),
        (
            "backup_stanza",
            json!({"stanza": "main", "action": "check", "repo": {"path": "/r"}}),
            Role::Admin,
            "none",
        ),
        (
            "backup",
            json!({"stanza": "main", "type": "full", "repo": {"path": "/r"}}),
            Role::Admin,
            "none",
        ),
        (
            "backup_info",
            json!({"stanza": "main", "repo": {"path": "/r"}}),
            Role::Admin,
            "none",
        ),
        (
            "backup_restore",
            json!({"stanza": "main", "repo": {"path": "/r"}, "to_dir": "/srv/r"}),
            Role::Admin,
            "none",
        ),
        (
            "backup_drill",
            json!({"stanza": "main", "repo": {"path": "/r"}, "check_sql": "SELECT secret"}),
            Role::Admin,
            "none",
        ),
        (
            "replication_validate",
            json!({"side": "subscriber", "publication": "p", "slot": "p", "subscription": "p"}),
            Role::Admin,
            "none",
        ),
        (
            "replication_publish",
            json!({"publication": "p", "slot": "p", "tables": [{"schema": "public", "table": "t"}]}),
            Role::Admin,
            "none",
        ),
        (
            "replication_subscribe",
            json!({"subscription": "p", "publication": "p", "slot": "p", "conninfo": "host=db"}),
            Role::Admin,
            "none",
        ),
        (
            "replication_drop",
            json!({"side": "publisher", "publication": "p", "slot": "p"}),
            Role::Admin,
            "none",
        ),
    ];
    let kinds: std::collections::BTreeSet<&str> = cases.iter().map(|c| c.0).collect();
    assert_eq!(
        kinds.len(),
        lasect_runs::RunKind::ALL.len(),
        "the matrix covers every run kind"
    );
    let mut ids = Vec::new();
    for (kind, params, _, shape) in cases {
        let page: &[u8] = if *shape == "rows" {
            br#"[["s3cret-row"]]"#
        } else {
            b"s3cret-bytes"
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO runs (kind, instance_id, agent_id, params, requested_by, timeout_ms, \
             max_rows, max_bytes, expires_at, status, finished_at, pages, summary, error, error_detail) \
             VALUES ($1, 1, 'db-01', $2, 'user:req', 1000, 10, 1000, now(), 'succeeded', now(), 1, \
             '{\"columns\": [{\"name\": \"s3cret-col\"}]}', 's3cret-error', '{\"detail\": \"s3cret\"}') \
             RETURNING id",
        )
        .bind(kind)
        .bind(params)
        .fetch_one(&f.pool)
        .await
        .expect("insert run");
        sqlx::query(
            "INSERT INTO run_results (run_id, page, rows, bytes, data) VALUES ($1, 0, 1, $2, $3)",
        )
        .bind(id)
        .bind(page.len() as i64)
        .bind(zstd::bulk::compress(page, 3).expect("compress"))
        .execute(&f.pool)
        .await
        .expect("page");
        ids.push(id);
    }
    // Who asks: (name, token, sees the run at all, full access for a run needing `needed`).
    let requester = common::user(&f.pool, "req", Some(Role::User), &[]).await;
    let viewer = common::user(&f.pool, "viewer", Some(Role::Viewer), &[]).await;
    let user = common::user(&f.pool, "user", Some(Role::User), &[]).await;
    let scoped_admin = common::user(
        &f.pool,
        "scoped",
        Some(Role::Viewer),
        &[("env", "prod", Role::Admin)],
    )
    .await;
    let admin = common::user(&f.pool, "admin", Some(Role::Admin), &[]).await;
    let outsider = common::user(&f.pool, "outsider", None, &[("env", "dev", Role::Admin)]).await;
    type Rule = fn(Role) -> bool;
    let callers: &[(&str, &str, bool, Rule)] = &[
        ("requester", &requester, true, |_| true),
        ("viewer", &viewer, true, |_| false),
        ("user", &user, true, |needed| needed == Role::User),
        ("label-scoped admin", &scoped_admin, true, |_| true),
        ("global admin", &admin, true, |_| true),
        ("admin of other labels", &outsider, false, |_| false),
    ];
    for (name, token, sees, full_for) in callers {
        for ((kind, params, needed, shape), id) in cases.iter().zip(&ids) {
            let what = format!("{name} on {kind} {params}");
            let (status, run) = call(
                &f.app,
                "GET",
                &format!("/api/v1/runs/{id}"),
                None,
                Some(token),
            )
            .await;
            if !sees {
                assert_eq!(status, StatusCode::NOT_FOUND, "{what}");
                for sub in ["result", "download"] {
                    let (status, _) =
                        get_raw(&f.app, &format!("/api/v1/runs/{id}/{sub}"), token).await;
                    assert_eq!(status, StatusCode::NOT_FOUND, "{what} {sub}");
                }
                continue;
            }
            assert_eq!(status, StatusCode::OK, "{what}: {run}");
            assert_eq!(run["kind"], *kind, "{what}: metadata is visible");
            assert_eq!(run["status"], "succeeded", "{what}");
            assert_eq!(run["requested_by"], "user:req", "{what}");
            let full = full_for(*needed);
            assert_eq!(run["details_hidden"], !full, "{what}: {run}");
            if full {
                assert_eq!(&run["params"], params, "{what}");
                assert_eq!(run["error"], "s3cret-error", "{what}");
            } else {
                assert!(!run.to_string().contains("s3cret"), "{what}: {run}");
                assert!(!run.to_string().contains("SELECT"), "{what}: {run}");
            }
            let (status, body) = get_raw(&f.app, &format!("/api/v1/runs/{id}/result"), token).await;
            let expected = match (full, *shape) {
                (false, _) => StatusCode::FORBIDDEN,
                (true, "rows") => StatusCode::OK,
                (true, _) => StatusCode::CONFLICT,
            };
            assert_eq!(
                status,
                expected,
                "{what} result: {}",
                String::from_utf8_lossy(&body)
            );
            assert_eq!(
                String::from_utf8_lossy(&body).contains("s3cret"),
                full && *shape == "rows",
                "{what} result"
            );
            let (status, body) =
                get_raw(&f.app, &format!("/api/v1/runs/{id}/download"), token).await;
            if full {
                assert_eq!(status, StatusCode::OK, "{what} download");
                assert!(
                    String::from_utf8_lossy(&body).contains("s3cret"),
                    "{what} download"
                );
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{what} download");
                assert!(
                    !String::from_utf8_lossy(&body).contains("s3cret"),
                    "{what} download"
                );
            }
        }
        // The list shows the same.
        let (status, list) = call(&f.app, "GET", "/api/v1/runs?limit=500", None, Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        let runs = list["runs"].as_array().cloned().unwrap_or_default();
        assert_eq!(
            runs.len(),
            if *sees { cases.len() } else { 0 },
            "{name}: {list}"
        );
        for run in runs {
            let case = cases
                .iter()
                .zip(&ids)
                .find(|(_, id)| run["id"] == **id)
                .expect("a listed run is one of the cases");
            assert_eq!(
                run["details_hidden"],
                !full_for(case.0.2),
                "{name} list: {run}"
            );
        }
    }
}

/// `wait=0` means "do not wait": 202 with the run, which goes on (not cancelled, no 504).
#[tokio::test]
async fn wait_zero_answers_at_once_with_the_run_id() {
    let f = fixture().await;
    for uri in [
        "/api/v1/instances/1/extensions?wait=0",
        "/api/v1/instances/1/tables/public/t/rows?wait=0",
    ] {
        let (status, run) = call(&f.app, "GET", uri, None, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{uri}: {run}");
        let id = run["id"].as_i64().expect("run id");
        assert_eq!(run["status"], "queued", "{uri}");
        let status: String = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1")
            .bind(id)
            .fetch_one(&f.pool)
            .await
            .expect("status");
        assert_eq!(status, "queued", "{uri}: the run was not cancelled");
    }
    for uri in [
        "/api/v1/instances/1/test?wait=0",
        "/api/v1/instances/1/refresh?wait=0",
    ] {
        let (status, run) = call(&f.app, "POST", uri, Some(json!({})), None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{uri}: {run}");
        assert!(run["id"].as_i64().is_some(), "{uri}: {run}");
    }
}

/// An instance of an agent's config file whose samples still arrive cannot be removed (it
/// would only be hidden while its agent keeps collecting it); once its samples stop, or its
/// agent is disabled, it can.
#[tokio::test]
async fn a_collected_config_instance_is_not_removed_behind_its_agent() {
    let f = fixture().await;
    sqlx::query("UPDATE instances SET last_seen = now() - interval '1 minute'")
        .execute(&f.pool)
        .await
        .expect("seen");
    let (status, body) = call(&f.app, "DELETE", "/api/v1/instances/1", None, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "defined_in_agent_config", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("db-01") && message.contains("main"),
        "{message}"
    );
    let (_, listed) = call(&f.app, "GET", "/api/v1/instances", None, None).await;
    assert!(
        listed.to_string().contains("\"main\""),
        "still listed: {listed}"
    );

    sqlx::query("UPDATE instances SET last_seen = now() - interval '1 hour' WHERE id = 1")
        .execute(&f.pool)
        .await
        .expect("silent");
    let (status, body) = call(&f.app, "DELETE", "/api/v1/instances/1", None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    sqlx::query("UPDATE agents SET disabled_at = now() WHERE id = 'db-02'")
        .execute(&f.pool)
        .await
        .expect("disable");
    let (status, body) = call(&f.app, "DELETE", "/api/v1/instances/2", None, None).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "a disabled agent's instance: {body}"
    );
}

/// PostgreSQL stores no NUL character: text holding one, wherever it goes (a run's parameters
/// in jsonb, a token's name in text), is a 422 naming the reason, never a 500. Optional bodies
/// take none, `null` or an object, and refuse anything else with 400.
#[tokio::test]
async fn nul_text_is_unprocessable_and_optional_bodies_are_checked() {
    let f = fixture().await;
    let (status, body) = call(
        &f.app,
        "POST",
        "/api/v1/instances/1/sql",
        Some(json!({"sql": "SELECT 'a\u{0}b'"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "nul_character", "{body}");
    let (status, body) = call(
        &f.app,
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "a\u{0}b"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "nul_character", "{body}");

    for (body, expected) in [
        (None, StatusCode::OK),
        (Some(Value::Null), StatusCode::OK),
        (Some(json!({})), StatusCode::OK),
        (Some(json!({"bogus": 1})), StatusCode::BAD_REQUEST),
        (Some(json!([1])), StatusCode::BAD_REQUEST),
    ] {
        let (status, answer) =
            call(&f.app, "POST", "/api/v1/auth/logout", body.clone(), None).await;
        assert_eq!(status, expected, "{body:?}: {answer}");
    }
}
