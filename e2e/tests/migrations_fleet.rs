//! Fleet schema migrations through the real binaries: three instances added by DSN, served by
//! one agent; a dry run changes nothing, a failing second target halts the migration with the
//! third untouched, and a second migration is refused while one runs.

use std::time::Duration;

use lasect_e2e::{Stack, wait_listening};
use lasect_testkit::{PgCluster, PgOptions};
use reqwest::Method;
use serde_json::json;

const AGENT_ID: &str = "fleet-agent";

async fn has_table(fleet: &PgCluster, db: &str, table: &str) -> bool {
    fleet
        .connect(db)
        .await
        .expect("connect")
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .expect("to_regclass")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_in_turn_halt_on_failure_and_one_at_a_time() {
    let stack = Stack::new(AGENT_ID).await;
    let monitored = PgCluster::start(PgOptions::default()).expect("monitored cluster");
    let fleet = PgCluster::start(PgOptions::default()).expect("fleet cluster");
    for db in ["d1", "d2", "d3"] {
        fleet.create_database(db).await.expect("create db");
    }
    // The second target already has the table: the script fails there.
    fleet
        .connect("d2")
        .await
        .expect("connect d2")
        .batch_execute("CREATE TABLE m (i int)")
        .await
        .expect("pre-create");
    let mut api = stack.spawn_api();
    wait_listening(&mut api);
    let mut ingest = stack.spawn_ingest(&stack.secrets_toml());
    wait_listening(&mut ingest);
    let instance = lasect_e2e::instance_toml("monitored", &monitored, "postgres").await;
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 5\n[control]\n{}\n{instance}",
            lasect_e2e::ALLOW_ALL
        ),
    );
    let mut agent = stack.start_agent(&[]);
    agent
        .wait_for_line("Control stream open", Duration::from_secs(60))
        .expect("control stream");
    for (i, db) in ["d1", "d2", "d3"].iter().enumerate() {
        let (status, body) = stack
            .api(
                Method::POST,
                "api/v1/instances",
                Some(json!({
                    "dsn": format!("host=127.0.0.1 port={} user=postgres dbname={db}", fleet.port()),
                    "name": format!("t{}", i + 1),
                    "labels": {"fleet": "yes"},
                })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    // Dry run: every target runs the script, nothing stays.
    let dry = stack.path("dry.sql");
    std::fs::write(
        &dry,
        "CREATE TABLE dry (i int);\nINSERT INTO dry VALUES (1);\n",
    )
    .expect("write");
    let out = stack.cli(&[
        "migrate",
        "run",
        "--targets",
        "label:fleet=yes",
        "--file",
        dry.to_str().expect("path"),
        "--dry-run",
        "--wait",
    ]);
    assert!(out.contains("succeeded (dry run)"), "{out}");
    for db in ["d1", "d2", "d3"] {
        assert!(
            !has_table(&fleet, db, "dry").await,
            "dry run left a table in {db}"
        );
    }

    // The second target fails: the third is untouched and the report says so.
    let script = stack.path("m.sql");
    std::fs::write(
        &script,
        "CREATE TABLE m (i int);\nINSERT INTO m VALUES (1);\n",
    )
    .expect("write");
    let out = stack
        .cli_command(&[
            "migrate",
            "run",
            "--targets",
            "label:fleet=yes",
            "--file",
            script.to_str().expect("path"),
            "--wait",
            "--output",
            "json",
        ])
        .env("LASECT_TOKEN", &stack.admin_token)
        .output()
        .expect("run the cli");
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, list) = stack.api(Method::GET, "api/v1/migrations", None).await;
    let m = &list["migrations"][0];
    assert_eq!(m["status"], "failed", "{m}");
    let statuses: Vec<&str> = m["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| t["status"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(statuses, ["succeeded", "failed", "skipped"], "{m}");
    let error = m["targets"][1]["error"].as_str().unwrap_or("");
    assert!(
        error.contains("already exists") && error.contains("line 1"),
        "{m}"
    );
    assert!(m["error"].as_str().unwrap_or("").contains("t2"), "{m}");
    assert!(
        m["targets"][2]["run_id"].is_null(),
        "the third target never got a run: {m}"
    );
    assert!(has_table(&fleet, "d1", "m").await);
    assert!(
        !has_table(&fleet, "d3", "m").await,
        "the third target was touched"
    );

    // Only one migration at a time, enforced by the store.
    let (status, first) = stack
        .api(
            Method::POST,
            "api/v1/migrations",
            Some(json!({"sql": "SELECT pg_sleep(2); CREATE TABLE slow (i int);", "targets": {"labels": {"fleet": "yes"}}, "dry_run": true})),
        )
        .await;
    assert_eq!(status, 201, "{first}");
    let (status, second) = stack
        .api(
            Method::POST,
            "api/v1/migrations",
            Some(json!({"sql": "SELECT 1", "targets": {"instances": [first["targets"][0]["instance_id"]]}})),
        )
        .await;
    assert_eq!(status, 409, "{second}");
    assert!(
        second["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(&first["id"].to_string()),
        "{second}"
    );
    let done = stack
        .wait_migration(first["id"].as_i64().expect("id"))
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // A script that would escape its transaction is refused before anything runs.
    let (status, bad) = stack
        .api(
            Method::POST,
            "api/v1/migrations",
            Some(json!({"sql": "CREATE TABLE esc (i int); COMMIT;", "targets": {"labels": {"fleet": "yes"}}})),
        )
        .await;
    assert_eq!(status, 201, "{bad}");
    let bad = stack.wait_migration(bad["id"].as_i64().expect("id")).await;
    assert_eq!(bad["status"], "failed", "{bad}");
    assert!(
        bad["error"].as_str().unwrap_or("").contains("transaction"),
        "{bad}"
    );
    assert!(!has_table(&fleet, "d1", "esc").await);
}
