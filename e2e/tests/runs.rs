//! Runs through the real binaries: the API queues, ingest hands the run to the agent over its
//! Control stream, the agent executes on the monitored cluster, and the result comes back.
//! One stack for every scenario of issue 6's "Done when" about runs (they share start-up cost).

use std::time::{Duration, Instant};

use lasect_e2e::Stack;
use lasect_testkit::{PgCluster, PgOptions};
use reqwest::Method;
use serde_json::json;

const AGENT_ID: &str = "runs-agent";
const MARKER: &str = "Mk9-secret-Zq";

async fn backends_of(db: &tokio_postgres::Client, run: i64) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        &[&format!("lasect run {run}")],
    )
    .await
    .expect("pg_stat_activity")
    .get(0)
}

/// `instance`: the `[[instances]]` table (with its `run_dsn`).
fn agent_toml(stack: &Stack, instance: &str, allow: &str) {
    stack.agent_config(
        stack.ingest_port,
        &format!("[collect]\ninterval_secs = 2\n[control]\n{allow}\n{instance}"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_execute_on_the_agent_with_limits_cancel_expiry_and_refusals() {
    let stack = Stack::new(AGENT_ID).await;
    let monitored = PgCluster::start(PgOptions::default()).expect("monitored cluster");
    let api = stack.start_api();
    let ingest = stack.start_ingest(&stack.secrets_toml());
    let instance = lasect_e2e::instance_toml("monitored", &monitored, "postgres").await;
    agent_toml(&stack, &instance, "");
    let mut agent = stack.start_agent(&[]);
    agent
        .wait_for_line("Control stream open", Duration::from_secs(60))
        .expect("control stream");
    let id = stack.instance_id("monitored").await;
    let db = monitored
        .connect("postgres")
        .await
        .expect("connect monitored");

    // A SQL run returns its rows; the parameter is bound, so an injection stays a value.
    let out = stack.cli(&[
        "sql",
        "run",
        "--instance",
        "monitored",
        "SELECT $1::int + 1 AS n, $2::text AS s",
        "--param",
        "41",
        "--param",
        "x'; DROP TABLE t; --",
    ]);
    assert!(
        out.contains("42") && out.contains("x'; DROP TABLE t; --"),
        "{out}"
    );
    assert!(out.contains("n (int4)") && out.contains("1 row"), "{out}");
    // The seed's form: no --instance when one instance exists.
    let out = stack.cli(&["sql", "run", "SELECT 1 AS one"]);
    assert!(out.contains("one (int4)") && out.contains("1 row"), "{out}");
    // A value that would retitle the window and clear the screen is shown, not obeyed.
    let out = stack.cli(&[
        "sql",
        "run",
        "SELECT E'\\x1b]0;pwned\\x07' AS t, E'\\x1b[2J\\r' AS \"u\u{202e}\"",
    ]);
    assert!(
        !out.chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
        "{out:?}"
    );
    assert!(
        out.contains("\\x1b]0;pwned\\x07") && out.contains("\\x1b[2J\\r"),
        "{out}"
    );
    assert!(out.contains("u\\u{202e} (text)"), "{out}");

    // max_rows truncates and says so.
    let run = stack
        .sql_run(
            id,
            json!({"sql": "SELECT g FROM generate_series(1, 100) g", "max_rows": 5}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["rows"], 5);
    assert_eq!(run["truncated"], true);
    assert_eq!(run["summary"]["truncated_by"], "max_rows");
    let page = stack.run_page(&run, 0).await;
    assert_eq!(page["rows"], json!([[1], [2], [3], [4], [5]]), "{page}");

    // A huge result with the default limits: truncated, and the agent lives on.
    let run = stack
        .sql_run(
            id,
            json!({"sql": "SELECT g, repeat('x', 100) FROM generate_series(1, 5000000) g"}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["truncated"], true, "{run}");
    assert!(
        agent.try_status().is_none(),
        "the agent died on a huge result"
    );

    // pg_sleep past the timeout ends timed_out, and its backend is gone.
    let run = stack
        .sql_run(
            id,
            json!({"sql": "SELECT pg_sleep(60)", "timeout_ms": 1000}),
        )
        .await;
    assert_eq!(run["status"], "timed_out", "{run}");
    let rid = run["id"].as_i64().expect("id");
    let start = Instant::now();
    while backends_of(&db, rid).await > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "backend of run {rid} still there"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Cancel works on a running statement.
    let (_, run) = stack
        .api(
            Method::POST,
            &format!("api/v1/instances/{id}/sql"),
            Some(json!({"sql": "SELECT pg_sleep(60)"})),
        )
        .await;
    let rid = run["id"].as_i64().expect("id");
    let start = Instant::now();
    loop {
        let (_, r) = stack
            .api(Method::GET, &format!("api/v1/runs/{rid}"), None)
            .await;
        if r["status"] == "running" && backends_of(&db, rid).await > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never running: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = stack.cli(&["run", "cancel", &rid.to_string()]);
    assert!(out.contains("cancel asked"), "{out}");
    let run = stack.wait_run(rid).await;
    assert_eq!(run["status"], "cancelled", "{run}");

    // At most 2 runs at once on one instance (the agent's default cap); the rest wait.
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (_, run) = stack
            .api(
                Method::POST,
                &format!("api/v1/instances/{id}/sql"),
                Some(json!({"sql": "SELECT pg_sleep(0.7)"})),
            )
            .await;
        ids.push(run["id"].as_i64().expect("id"));
    }
    let mut most = 0;
    loop {
        let busy: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'lasect run %' \
                 AND query LIKE '%pg_sleep(0.7)%' AND state = 'active'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        most = most.max(busy);
        let (_, last) = stack
            .api(Method::GET, &format!("api/v1/runs/{}", ids[4]), None)
            .await;
        let (_, first) = stack
            .api(Method::GET, &format!("api/v1/runs/{}", ids[0]), None)
            .await;
        if first["status"] == "succeeded" && last["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        (1..=2).contains(&most),
        "{most} runs at once on one instance"
    );
    for rid in ids {
        assert_eq!(stack.wait_run(rid).await["status"], "succeeded");
    }

    // A syntax error is a clear failure with the server's position.
    let run = stack.sql_run(id, json!({"sql": "SELEC 1"})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error_detail"]["sqlstate"], "42601", "{run}");
    assert_eq!(run["error_detail"]["position"], 1, "{run}");
    let out = stack
        .cli_command(&["sql", "run", "--instance", "monitored", "SELEC 1"])
        .env("LASECT_TOKEN", &stack.admin_token)
        .output()
        .expect("cli");
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("42601"));

    // A read-only run cannot write; EXPLAIN returns the plan as a tree.
    let run = stack
        .sql_run(id, json!({"sql": "CREATE TABLE nope (i int)"}))
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error_detail"]["sqlstate"], "25006", "{run}");
    let out = stack.cli(&[
        "sql",
        "explain",
        "--instance",
        "monitored",
        "--analyze",
        "SELECT * FROM pg_class WHERE oid = $1",
        "--param",
        "1259",
    ]);
    assert!(
        out.contains("pg_class") && out.contains("actual time"),
        "{out}"
    );

    // An instance added by DSN: checked by the agent, its password never shown. Its role is
    // unprivileged, so read-only runs may use the DSN itself.
    let target = PgCluster::start(PgOptions::default()).expect("second cluster");
    lasect_e2e::run_role_dsn(&target, "postgres").await;
    let dsn = format!(
        "host=127.0.0.1 port={} user={} password={MARKER} dbname=postgres",
        target.port(),
        lasect_e2e::RUN_ROLE
    );
    let (status, body) = stack
        .api(
            Method::POST,
            "api/v1/instances",
            Some(json!({"dsn": "host='unterminated", "name": "bad"})),
        )
        .await;
    // Well-formed by the OpenAPI document (a string), not a DSN: 422.
    assert_eq!(status, 422, "{body}");
    let out = stack.cli(&[
        "instance", "add", "--dsn", &dsn, "--name", "added", "--label", "env=test",
    ]);
    assert!(out.contains("added instance added"), "{out}");
    let added = stack.instance_id("added").await;
    // The agent monitors it like a config-file instance, and reports its health.
    let store = stack.store().await;
    let start = Instant::now();
    loop {
        let row = store
            .query_one(
                "SELECT last_seen IS NOT NULL, coalesce((health->>'up')::bool, false)
                 FROM instances WHERE id = $1",
                &[&added],
            )
            .await
            .expect("instance row");
        if row.get::<_, bool>(0) && row.get::<_, bool>(1) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the added instance is neither collected nor reported healthy"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let samples: i64 = store
        .query_one(
            "SELECT count(*) FROM metric_database WHERE instance_id = $1",
            &[&added],
        )
        .await
        .expect("samples")
        .get(0);
    assert!(samples > 0, "no samples of the added instance");
    let run = stack
        .sql_run(
            added,
            json!({"sql": "SELECT current_setting('port')::int AS port"}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let page = stack.run_page(&run, 0).await;
    assert_eq!(page["rows"][0][0], json!(target.port()), "{page}");
    let mut seen = String::new();
    for path in [
        "api/v1/instances",
        &format!("api/v1/instances/{added}"),
        "api/v1/runs?limit=500",
        "api/v1/audit",
    ] {
        let (_, body) = stack.api(Method::GET, path, None).await;
        seen.push_str(&body.to_string());
    }
    assert!(
        seen.contains("password=********"),
        "the redacted DSN is shown"
    );
    assert!(
        !seen.contains(MARKER),
        "the marker password leaked into an API answer"
    );
    for (name, process) in [("api", &api), ("ingest", &ingest), ("agent", &agent)] {
        assert!(
            !process.lines().iter().any(|l| l.contains(MARKER)),
            "the marker password is in the {name} log"
        );
    }
    let dump = std::process::Command::new(stack.store_pg.bindir().join("pg_dump"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &stack.store_pg.port().to_string(),
            "-U",
            "postgres",
            "lasect",
        ])
        .output()
        .expect("pg_dump the store");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&dump.stdout).contains(MARKER),
        "the marker is in the store"
    );
    assert!(String::from_utf8_lossy(&dump.stdout).contains("password=********"));

    // Key rotation: a new key first in the file, every DSN re-encrypted; ingest picks it up.
    let before: Vec<u8> = store
        .query_one(
            "SELECT dsn_ciphertext FROM instances WHERE id = $1",
            &[&added],
        )
        .await
        .expect("ciphertext")
        .get(0);
    let rotated = stack.rotate_secrets();
    // One instance, however the tool words it (DSNs or instances).
    assert!(rotated.contains("re-encrypted 1 "), "{rotated}");
    let after: Vec<u8> = store
        .query_one(
            "SELECT dsn_ciphertext FROM instances WHERE id = $1",
            &[&added],
        )
        .await
        .expect("ciphertext")
        .get(0);
    assert_ne!(before, after);
    let keys = std::fs::read_to_string(stack.secrets_key()).expect("key file");
    assert_eq!(keys.lines().filter(|l| !l.trim().is_empty()).count(), 2);
    let (status, body) = stack
        .api(
            Method::POST,
            &format!("api/v1/instances/{added}/test"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        status, 200,
        "after rotation the agent still gets the DSN: {body}"
    );
    // The running API encrypts new DSNs with the new key, without a restart.
    let new_key = keys
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().next())
        .expect("key id")
        .to_owned();
    let (status, body) = stack
        .api(
            Method::POST,
            "api/v1/instances",
            Some(json!({"dsn": dsn, "name": "added2"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let c: Vec<u8> = store
        .query_one(
            "SELECT dsn_ciphertext FROM instances WHERE name = 'added2'",
            &[],
        )
        .await
        .expect("ciphertext")
        .get(0);
    assert!(
        c.windows(new_key.len()).any(|w| w == new_key.as_bytes()),
        "not made with the new key"
    );

    // A refused class fails with the reason; then an offline agent's run expires.
    drop(agent);
    agent_toml(&stack, &instance, "allow = [\"sql\", \"explain\"]");
    let mut agent = stack.start_agent(&[]);
    agent
        .wait_for_line("Control stream open", Duration::from_secs(60))
        .expect("control stream");
    let run = stack
        .sql_run(
            id,
            json!({"sql": "CREATE TABLE refused (i int)", "write": true}),
        )
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or("");
    assert!(
        error.contains("allow list") && error.contains("sql_write"),
        "{run}"
    );
    drop(agent);
    let run = stack
        .sql_run(id, json!({"sql": "SELECT 1", "queue_timeout_s": 2}))
        .await;
    assert_eq!(run["status"], "expired", "{run}");
    assert!(
        run["error"].as_str().unwrap_or("").contains(AGENT_ID),
        "{run}"
    );
}
