//! Read-only runs have no side effects (issue 16), through the real binaries and as a user with
//! role `user`: a read-only run whose login role is a superuser is refused with the fix named;
//! with a `run_dsn` of an unprivileged role every known way out of a READ ONLY transaction
//! fails and leaves no trace; `allow_privileged_runs` lets the superuser read (and the READ ONLY
//! transaction still refuses a write); `table_data` is an allow-list class of its own.

use std::time::{Duration, Instant};

use lasect_e2e::Stack;
use lasect_testkit::{PgCluster, PgOptions};
use reqwest::Method;
use serde_json::{Value, json};

const AGENT_ID: &str = "privileges-agent";

fn agent_body(monitored: &PgCluster, guarded: &str, allow: &str) -> String {
    let dsn = monitored.dsn("postgres");
    format!(
        "[collect]\ninterval_secs = 5\n[control]\n{allow}\n{guarded}\
         [[instances]]\nname = \"su\"\ndsn = \"{dsn}\"\n\
         [[instances]]\nname = \"trusted\"\ndsn = \"{dsn}\"\nallow_privileged_runs = true\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_runs_cannot_reach_outside_the_database() {
    let stack = Stack::new(AGENT_ID).await;
    let monitored = PgCluster::start(PgOptions::default()).expect("monitored cluster");
    let _api = stack.start_api();
    let _ingest = stack.start_ingest(&stack.secrets_toml());
    let guarded = lasect_e2e::instance_toml("guarded", &monitored, "postgres").await;
    stack.agent_config(stack.ingest_port, &agent_body(&monitored, &guarded, ""));
    let mut agent = stack.start_agent(&[]);
    agent
        .wait_for_line("Control stream open", Duration::from_secs(60))
        .expect("control stream");
    let su = stack.instance_id("su").await;
    let guarded_id = stack.instance_id("guarded").await;
    let trusted = stack.instance_id("trusted").await;
    let token = crate::support::users::with_role(&stack, "dora", "user").await;

    // A superuser login without run_dsn: refused, naming the role and both fixes.
    for (route, body) in [
        ("sql", json!({"sql": "SELECT 1"})),
        ("explain", json!({"sql": "SELECT 1", "analyze": true})),
        ("export", json!({"sql": "SELECT 1"})),
    ] {
        let run = stack.run_as(&token, su, route, body).await;
        assert_eq!(run["status"], "failed", "{run}");
        let error = run["error"].as_str().unwrap_or("");
        for needle in [
            "`postgres`",
            "superuser",
            "run_dsn",
            "pg_read_all_data",
            "allow_privileged_runs = true",
        ] {
            assert!(error.contains(needle), "{needle} missing: {run}");
        }
    }

    // What the attacks aim at, made as the superuser.
    let db = monitored.connect("postgres").await.expect("connect");
    db.batch_execute("CREATE EXTENSION dblink; CREATE TABLE t (i int PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
        .await
        .expect("set up");
    let lo: u32 = db
        .query_one("SELECT lo_from_bytea(0, 'large secret')", &[])
        .await
        .expect("large object")
        .get(0);
    let sleeper = monitored.connect("postgres").await.expect("connect");
    let victim: i32 = sleeper
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let sleeping = tokio::spawn(async move { sleeper.simple_query("SELECT pg_sleep(600)").await });
    let start = Instant::now();
    while db
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'",
            &[&victim],
        )
        .await
        .expect("activity")
        .get::<_, i64>(0)
        == 0
    {
        assert!(start.elapsed() < Duration::from_secs(30), "never sleeping");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A directory the server could write to, were it asked to.
    let dir = tempfile::Builder::new()
        .prefix("lasect-privileges-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let touched = dir.path().join("touched");
    let exported = dir.path().join("exported");
    let touched_s = touched.display().to_string();
    let exported_s = exported.display().to_string();
    let port = monitored.port();

    // The run role reads what it should.
    let run = stack
        .run_as(
            &token,
            guarded_id,
            "sql",
            json!({"sql": "SELECT session_user::text, count(*) FROM t GROUP BY 1"}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["rows"], 1, "{run}");

    let attacks: Vec<(&str, Value)> = vec![
        (
            "sql",
            json!({"sql": format!("COPY (SELECT 1) TO PROGRAM 'touch {touched_s}'")}),
        ),
        ("sql", json!({"sql": "SELECT pg_read_file('/etc/passwd')"})),
        (
            "sql",
            json!({"sql": format!("SELECT lo_export({lo}, '{exported_s}')")}),
        ),
        (
            "sql",
            json!({"sql": format!("SELECT pg_terminate_backend({victim})")}),
        ),
        (
            "sql",
            json!({"sql": "SELECT set_config('log_statement', 'all', false)"}),
        ),
        (
            "sql",
            json!({"sql": "ALTER SYSTEM SET log_statement = 'all'"}),
        ),
        (
            "sql",
            json!({"sql": format!(
                "SELECT dblink_exec('host=127.0.0.1 port={port} user=postgres dbname=postgres', \
                 'ALTER SYSTEM SET log_statement = ''all''')"
            )}),
        ),
        ("sql", json!({"sql": "SET ROLE postgres"})),
        (
            "sql",
            json!({"sql": "SELECT set_config('role', 'postgres', false)"}),
        ),
        (
            "sql",
            json!({"sql": "RESET ROLE; SELECT pg_read_file('/etc/passwd')"}),
        ),
        (
            "sql",
            json!({"sql": format!("RESET ROLE; COPY (SELECT 1) TO PROGRAM 'touch {touched_s}'")}),
        ),
        (
            "explain",
            json!({"sql": format!("SELECT pg_terminate_backend({victim})"), "analyze": true}),
        ),
        (
            "export",
            json!({"sql": "SELECT pg_read_file('/etc/passwd')"}),
        ),
    ];
    for (route, body) in attacks {
        let run = stack.run_as(&token, guarded_id, route, body.clone()).await;
        assert_eq!(
            run["status"], "failed",
            "{route} {body} did not fail: {run}"
        );
    }

    // No trace: no file, the backend alive, the settings unchanged (seen from a fresh session).
    assert!(!touched.exists(), "COPY TO PROGRAM ran");
    assert!(!exported.exists(), "lo_export wrote a file");
    let fresh = monitored.connect("postgres").await.expect("connect");
    let alive: i64 = fresh
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
            &[&victim],
        )
        .await
        .expect("activity")
        .get(0);
    assert_eq!(alive, 1, "the sleeping superuser backend was terminated");
    assert!(!sleeping.is_finished(), "the sleeping query ended");
    let log_statement: String = fresh
        .query_one("SELECT current_setting('log_statement')", &[])
        .await
        .expect("setting")
        .get(0);
    assert_eq!(log_statement, "none");
    let auto = std::fs::read_to_string(monitored.data_dir().join("postgresql.auto.conf"))
        .unwrap_or_default();
    assert!(
        !auto.contains("log_statement"),
        "ALTER SYSTEM applied: {auto}"
    );

    // allow_privileged_runs: the superuser reads, and READ ONLY still refuses a write.
    let run = stack
        .run_as(
            &token,
            trusted,
            "sql",
            json!({"sql": "SELECT count(*) FROM t"}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let run = stack
        .run_as(
            &token,
            trusted,
            "sql",
            json!({"sql": "INSERT INTO t VALUES (3)"}),
        )
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error_detail"]["sqlstate"], "25006", "{run}");

    // Instances added through the API (admin): the same rules, run_dsn encrypted like the DSN.
    let run_dsn = lasect_e2e::run_role_dsn(&monitored, "postgres").await;
    let mut added = Vec::new();
    for (name, extra) in [
        ("api-guarded", json!({"run_dsn": run_dsn})),
        ("api-su", json!({})),
        ("api-trusted", json!({"allow_privileged_runs": true})),
    ] {
        let mut body = json!({"dsn": monitored.dsn("postgres"), "name": name});
        body.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        let (status, answer) = stack
            .api(Method::POST, "api/v1/instances", Some(body.clone()))
            .await;
        assert_eq!(status, 201, "{answer}");
        added.push(answer["instance"]["id"].as_i64().expect("id"));
        // Only an admin adds one, with or without run settings.
        let (status, answer) = stack
            .api_as(&token, Method::POST, "api/v1/instances", Some(body))
            .await;
        assert_eq!(status, 403, "{answer}");
    }
    let (_, detail) = stack
        .api(Method::GET, &format!("api/v1/instances/{}", added[0]), None)
        .await;
    assert!(
        detail["run_dsn_redacted"]
            .as_str()
            .is_some_and(|d| d.contains("user=lasect_run")),
        "{detail}"
    );
    let run = stack
        .run_as(
            &token,
            added[0],
            "sql",
            json!({"sql": "SELECT session_user::text, count(*) FROM t GROUP BY 1"}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let run = stack
        .run_as(
            &token,
            added[0],
            "sql",
            json!({"sql": format!("SELECT pg_terminate_backend({victim})")}),
        )
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let run = stack
        .run_as(&token, added[1], "sql", json!({"sql": "SELECT 1"}))
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"].as_str().unwrap_or("").contains("run_dsn"),
        "{run}"
    );
    let run = stack
        .run_as(&token, added[2], "sql", json!({"sql": "SELECT 1"}))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let alive: i64 = fresh
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
            &[&victim],
        )
        .await
        .expect("activity")
        .get(0);
    assert_eq!(alive, 1, "the sleeping superuser backend was terminated");

    // table_data is its own class: allowed by default, refused when only `schema` is.
    let rows = "api/v1/instances/{id}/tables/public/t/rows?limit=5"
        .replace("{id}", &guarded_id.to_string());
    let (status, page) = stack.api_as(&token, Method::GET, &rows, None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["rows"].as_array().map(Vec::len), Some(2), "{page}");
    drop(agent);
    stack.agent_config(
        stack.ingest_port,
        &agent_body(&monitored, &guarded, "allow = [\"sql\", \"schema\"]"),
    );
    let mut agent = stack.start_agent(&[]);
    agent
        .wait_for_line("Control stream open", Duration::from_secs(60))
        .expect("control stream");
    let (status, page) = stack.api_as(&token, Method::GET, &rows, None).await;
    assert_ne!(status, 200, "{page}");
    let text = page.to_string();
    assert!(
        text.contains("allow list") && text.contains("table_data"),
        "{status} {page}"
    );
    sleeping.abort();
}
