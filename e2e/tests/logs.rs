//! The `log` family end to end over the real binaries: two monitored
//! clusters, one writing jsonlog (read in preference to its stderr file),
//! one writing stderr only with a custom `log_line_prefix`, are followed by
//! one `lasect-agent`, through `lasect-ingest` into the store, and read back
//! with the `lasect` CLI.
//!
//! - a failing statement (division by zero) is a stored event with SQLSTATE
//!   22012 and its statement, literals redacted, from both formats;
//! - a slow statement (`log_min_duration_statement = 0`) has a duration;
//! - auto_explain (session `LOAD`) gives a plan with the query id;
//! - auto_explain in JSON, on for one database only (`ALTER DATABASE … SET
//!   session_preload_libraries`), gives a plan found through the API and the
//!   CLI by the statement's pg_stat_statements queryid, as a JSON plan tree
//!   with its constants redacted;
//! - garbage, truncated and binary lines appended to the live log file are
//!   counted and warned about; the agent and its other families go on;
//! - an agent restart neither loses nor repeats events (durable offsets).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lasect_e2e::{Stack, wait_listening};
use lasect_testkit::{LogFormat, PgCluster, PgOptions};
use reqwest::Method;

const AGENT_ID: &str = "e2e-logs";
const BOUND: Duration = Duration::from_secs(90);

/// Polls `query` (one bigint) until `done` accepts it, within [`BOUND`].
async fn wait_for(
    store: &tokio_postgres::Client,
    what: &str,
    query: &str,
    done: impl Fn(i64) -> bool,
) -> i64 {
    let start = Instant::now();
    loop {
        let value = store
            .query_one(query, &[])
            .await
            .ok()
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .unwrap_or(0);
        if done(value) {
            return value;
        }
        assert!(
            start.elapsed() < BOUND,
            "{what}: still {value} after {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Events of `instance` whose statement contains `marker`.
fn events_with(instance: &str, marker: &str) -> String {
    format!(
        "SELECT count(*)::int8 FROM metric_log l JOIN instances i ON i.id = l.instance_id \
         WHERE i.name = '{instance}' AND l.statement LIKE '%{marker}%'"
    )
}

/// The newest file in `dir` with extension `ext`.
fn newest(dir: &Path, ext: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("log dir")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == ext))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
        .expect("a log file")
}

async fn fail(client: &tokio_postgres::Client, marker: &str) {
    let err = client
        .simple_query(&format!("SELECT 1/0 AS {marker}"))
        .await
        .expect_err("division by zero");
    assert_eq!(
        err.as_db_error().map(|e| e.code().code()),
        Some("22012"),
        "{err}"
    );
}

/// auto_explain the way a DBA turns it on for one database: preloaded into its new sessions,
/// every statement explained (log_min_duration 0) in JSON with its query id (log_verbose).
/// A statement run there is found by its pg_stat_statements queryid through the API and the
/// CLI, as a JSON plan tree, its constants redacted.
async fn explained_plan_by_queryid(
    stack: &Stack,
    cluster: &PgCluster,
    postgres: &tokio_postgres::Client,
) {
    // One statement per message: CREATE DATABASE cannot run in the implicit transaction of
    // several.
    for sql in [
        "CREATE EXTENSION pg_stat_statements",
        "CREATE DATABASE explained",
        "ALTER DATABASE explained SET session_preload_libraries = 'auto_explain'",
        "ALTER DATABASE explained SET auto_explain.log_min_duration = 0",
        "ALTER DATABASE explained SET auto_explain.log_format = 'json'",
        "ALTER DATABASE explained SET auto_explain.log_verbose = on",
    ] {
        postgres.batch_execute(sql).await.expect(sql);
    }
    let explained = cluster
        .connect("explained")
        .await
        .expect("connect explained");
    explained
        .batch_execute(
            "SELECT count(*) AS lasect_marker_plan FROM pg_class \
             WHERE relname = 'secret_plan_value' AND relpages > 4242",
        )
        .await
        .expect("the explained statement");
    let queryid: i64 = postgres
        .query_one(
            "SELECT queryid FROM pg_stat_statements WHERE query LIKE '%lasect_marker_plan%'",
            &[],
        )
        .await
        .expect("the statement's queryid")
        .get(0);
    let (_, list) = stack.api(Method::GET, "/api/v1/instances", None).await;
    let id = list["instances"]
        .as_array()
        .and_then(|l| l.iter().find(|i| i["name"] == "json"))
        .and_then(|i| i["id"].as_i64())
        .expect("the json instance");
    let path = format!("/api/v1/instances/{id}/statements/{queryid}/plans");
    let start = Instant::now();
    let plan = loop {
        let (status, body) = stack.api(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{body}");
        if let Some(p) = body["plans"].as_array().and_then(|p| p.first()) {
            break p.clone();
        }
        assert!(
            start.elapsed() < BOUND,
            "no plan of {queryid} after {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(plan["format"], "json", "{plan}");
    assert_eq!(plan["database"], "explained", "{plan}");
    assert_eq!(plan["user_name"], "postgres", "{plan}");
    assert_eq!(plan["truncated"], false, "{plan}");
    assert!(plan["duration_ms"].as_f64().is_some(), "{plan}");
    let query = plan["query_text"].as_str().expect("query text");
    assert!(query.contains("lasect_marker_plan"), "{query}");
    let text = plan["plan"].as_str().expect("plan");
    for secret in ["secret_plan_value", "4242"] {
        assert!(
            !query.contains(secret) && !text.contains(secret),
            "{secret}: {plan}"
        );
    }
    let tree: serde_json::Value = serde_json::from_str(text).expect("a JSON plan");
    // PostgreSQL 16+ prints the plan's own id with log_verbose; 15 leaves it to the log line.
    assert!(
        tree.get("Query Identifier").is_none_or(|q| *q == queryid),
        "{tree}"
    );
    // An index or a sequential scan of pg_class, its conditions without their constants.
    let scan = &tree["Plan"]["Plans"][0];
    assert_eq!(scan["Relation Name"], "pg_class", "{tree}");
    let conditions = format!("{} {}", scan["Index Cond"], scan["Filter"]);
    assert!(
        conditions.contains("relname = ?") && conditions.contains("relpages > ?"),
        "{tree}"
    );

    // The CLI prints it under its heading, and JSON as the API gave it.
    let shown = stack.cli(&[
        "queries",
        "plans",
        &queryid.to_string(),
        "--instance",
        "json",
    ]);
    assert!(
        shown.contains(&format!("plans of statement {queryid}")),
        "{shown}"
    );
    assert!(
        shown.contains("database explained") && shown.contains("\"Relation Name\": \"pg_class\""),
        "{shown}"
    );
    let shown = stack.cli(&[
        "queries",
        "plans",
        &queryid.to_string(),
        "--instance",
        "json",
        "--output",
        "json",
    ]);
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(shown["plans"][0]["plan"], plan["plan"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_events_end_to_end() {
    let stack = Stack::new(AGENT_ID).await;
    let json = PgCluster::start(PgOptions {
        log_format: Some(LogFormat::Json),
        stat_statements: true,
        ..PgOptions::default()
    })
    .expect("jsonlog cluster");
    let stderr = PgCluster::start(PgOptions {
        settings: vec![
            ("logging_collector".into(), "on".into()),
            ("log_destination".into(), "'stderr'".into()),
            ("log_directory".into(), "'log'".into()),
            ("log_line_prefix".into(), "'%m [%p] %q%u@%d %e '".into()),
        ],
        ..PgOptions::default()
    })
    .expect("stderr cluster");

    let mut ingest = stack.spawn_ingest("");
    let mut api = stack.spawn_api();
    wait_listening(&mut ingest);
    wait_listening(&mut api);
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 1\nhost = false\n\
             [[instances]]\nname = \"json\"\ndsn = \"{}\"\n\
             [[instances]]\nname = \"stderr\"\ndsn = \"{}\"\n",
            json.dsn("postgres"),
            stderr.dsn("postgres"),
        ),
    );
    let mut agent = stack.start_agent(&[]);
    let store = stack.store().await;
    // `database` and the first `log` round share the agent's first batch:
    // once both instances have rows, their log files are followed.
    let instances_seen = "SELECT count(DISTINCT instance_id)::int8 FROM metric_database";
    wait_for(&store, "both instances collected", instances_seen, |n| {
        n == 2
    })
    .await;

    // A failing statement, a slow one and an auto_explain plan (jsonlog).
    let jc = json.connect("postgres").await.expect("connect json");
    fail(&jc, "lasect_marker_json").await;
    // One statement per message: the duration line of a simple query covers
    // the whole message, and settings apply from the next message on.
    for sql in [
        "SET log_min_duration_statement = 0",
        "SET compute_query_id = on",
        "LOAD 'auto_explain'",
        "SET auto_explain.log_min_duration = 0",
        "SELECT count(*) AS lasect_marker_slow FROM pg_class WHERE relname = 'secret_value'",
        "RESET log_min_duration_statement",
        "SET auto_explain.log_min_duration = -1",
    ] {
        jc.batch_execute(sql).await.expect(sql);
    }
    // The same on the stderr cluster: SQLSTATE from %e, statement from STATEMENT.
    let sc = stderr.connect("postgres").await.expect("connect stderr");
    fail(&sc, "lasect_marker_stderr").await;

    let json_error = "SELECT count(*)::int8 FROM metric_log l JOIN instances i ON i.id = l.instance_id \
         WHERE i.name = 'json' AND l.sqlstate = '22012' AND l.severity = 'ERROR' \
         AND l.source = 'jsonlog' AND l.statement = 'SELECT ?/? AS lasect_marker_json'";
    wait_for(&store, "jsonlog division by zero", json_error, |n| n == 1).await;
    let stderr_error = "SELECT count(*)::int8 FROM metric_log l JOIN instances i ON i.id = l.instance_id \
         WHERE i.name = 'stderr' AND l.sqlstate = '22012' AND l.source = 'stderr' \
         AND l.message = 'division by zero' AND l.user_name = 'postgres' \
         AND l.statement = 'SELECT ?/? AS lasect_marker_stderr'";
    wait_for(&store, "stderr division by zero", stderr_error, |n| n == 1).await;
    let slow = "SELECT count(*)::int8 FROM metric_log WHERE duration_ms IS NOT NULL \
         AND statement LIKE '%lasect_marker_slow%' AND statement NOT LIKE '%secret_value%' \
         AND query_id IS NOT NULL";
    wait_for(&store, "slow statement with duration", slow, |n| n >= 1).await;
    // The plan is linked to the slow statement's event by query_id.
    let plan = "SELECT count(*)::int8 FROM metric_log_plans p JOIN metric_log l \
         ON l.query_id = p.query_id AND l.instance_id = p.instance_id \
         WHERE p.query_text LIKE '%lasect_marker_slow%' AND p.query_text NOT LIKE '%secret_value%' \
         AND p.plan LIKE '%pg_class%' AND p.duration_ms IS NOT NULL";
    wait_for(&store, "auto_explain plan", plan, |n| n >= 1).await;

    explained_plan_by_queryid(&stack, &json, &jc).await;

    let shown = stack.cli(&[
        "metrics",
        "show",
        "--instance",
        "json",
        "--family",
        "log",
        "--limit",
        "1000",
        "--output",
        "json",
    ]);
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("json");
    let rows = shown["rows"].as_array().expect("rows");
    assert!(
        rows.iter()
            .any(|r| r["sqlstate"] == "22012" && r["message"] == "division by zero"),
        "{shown}"
    );

    // Garbage, a truncated JSON line and binary bytes in the live file.
    let file = newest(&json.log_dir(), "json");
    {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .expect("open log file");
        f.write_all(b"this is not json\n{\"timestamp\":\"2024-01-01 00:00:00 UTC\",\"error_sev\n\x00\xff\xfe\x01binary\x9f\n")
            .expect("append garbage");
    }
    let unparsed = "SELECT coalesce(sum(d.unparsed_lines), 0)::int8 FROM metric_log_drops d \
         JOIN instances i ON i.id = d.instance_id WHERE i.name = 'json'";
    wait_for(&store, "garbage counted", unparsed, |n| n >= 3).await;
    assert!(agent.try_status().is_none(), "agent still running");
    // Printed in the round that counted the lines (the output reader may lag).
    agent
        .wait_for_line("log lines skipped", BOUND)
        .expect("a warning about the skipped lines");
    // Events after the garbage still arrive, and the other families go on.
    fail(&jc, "lasect_after_garbage").await;
    wait_for(
        &store,
        "event after garbage",
        &events_with("json", "lasect_after_garbage"),
        |n| n == 1,
    )
    .await;
    let db_rows = "SELECT count(*)::int8 FROM metric_database";
    let before = wait_for(&store, "database rows", db_rows, |_| true).await;
    wait_for(&store, "database rows keep coming", db_rows, |n| n > before).await;

    // Restart: events written while the agent is down arrive once.
    agent.terminate(Duration::from_secs(10));
    for _ in 0..5 {
        fail(&jc, "lasect_while_down").await;
        fail(&sc, "lasect_while_down").await;
    }
    let mut agent = stack.start_agent(&[]);
    wait_for(
        &store,
        "json events of the downtime",
        &events_with("json", "lasect_while_down"),
        |n| n >= 5,
    )
    .await;
    wait_for(
        &store,
        "stderr events of the downtime",
        &events_with("stderr", "lasect_while_down"),
        |n| n >= 5,
    )
    .await;
    // A later event proves the agent has read past them; nothing repeats.
    fail(&jc, "lasect_after_restart").await;
    wait_for(
        &store,
        "event after restart",
        &events_with("json", "lasect_after_restart"),
        |n| n == 1,
    )
    .await;
    for (instance, marker, want) in [
        ("json", "lasect_while_down", 5),
        ("stderr", "lasect_while_down", 5),
        ("json", "lasect_marker_json", 1),
        ("stderr", "lasect_marker_stderr", 1),
        ("json", "lasect_after_garbage", 1),
    ] {
        let n: i64 = store
            .query_one(&events_with(instance, marker), &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, want, "{instance} {marker}");
    }
    agent.terminate(Duration::from_secs(10));
}
