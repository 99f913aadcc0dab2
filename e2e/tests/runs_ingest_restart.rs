//! Ingest killed (SIGKILL) while the agent executes a run: the agent keeps executing, names the
//! run in its hello to the restarted ingest, and the result lands. A run the agent no longer
//! has after a restart of its own is failed as lost, never executed twice.

use std::time::{Duration, Instant};

use lasect_e2e::Stack;
use lasect_testkit::{PgCluster, PgOptions};
use reqwest::Method;
use serde_json::json;

const AGENT_ID: &str = "restart-agent";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_survives_an_ingest_restart_and_an_agent_restart_fails_it_as_lost() {
    let _load = crate::support::fault_test().await;
    let stack = Stack::new(AGENT_ID).await;
    let monitored = PgCluster::start(PgOptions::default()).expect("monitored cluster");
    let api = stack.start_api();
    let mut ingest = stack.start_ingest(&stack.secrets_toml());
    let instance = lasect_e2e::instance_toml("monitored", &monitored, "postgres").await;
    stack.agent_config(
        stack.ingest_port,
        &format!("[collect]\ninterval_secs = 5\n{instance}"),
    );
    let mut agent = stack.start_agent(&[]);
    agent
        .wait_for_line("Control stream open", Duration::from_secs(60))
        .expect("control stream");
    let store = stack.store().await;
    let id: i64 = loop {
        if let Some(r) = store
            .query_opt("SELECT id FROM instances WHERE name = 'monitored'", &[])
            .await
            .expect("instances")
        {
            break r.get(0);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let start_run = |sql: &'static str| {
        let stack = &stack;
        async move {
            let (status, run) = stack
                .api(
                    Method::POST,
                    &format!("api/v1/instances/{id}/sql"),
                    Some(json!({"sql": sql})),
                )
                .await;
            assert_eq!(status, 202, "{run}");
            run["id"].as_i64().expect("id")
        }
    };
    let wait_running = |rid: i64| {
        let stack = &stack;
        async move {
            let start = Instant::now();
            loop {
                let (_, r) = stack
                    .api(Method::GET, &format!("api/v1/runs/{rid}"), None)
                    .await;
                if r["status"] == "running" {
                    return;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "never running: {r}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    // Ingest dies mid-run and comes back: the result still lands.
    let rid = start_run("SELECT 42 AS answer, pg_sleep(3)").await;
    wait_running(rid).await;
    ingest.kill();
    let ingest = stack.start_ingest(&stack.secrets_toml());
    let run = stack.wait_run(rid).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let (_, page) = stack
        .api(Method::GET, &format!("api/v1/runs/{rid}/result"), None)
        .await;
    assert_eq!(page["rows"][0][0], 42, "{page}");

    // The agent dies mid-run: after its restart the run is failed as lost, not re-executed.
    let rid = start_run("SELECT pg_sleep(30)").await;
    wait_running(rid).await;
    agent.kill();
    let mut agent = stack.start_agent(&[]);
    agent
        .wait_for_line("Control stream open", Duration::from_secs(60))
        .expect("control stream");
    let run = stack.wait_run(rid).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"].as_str().unwrap_or("").contains("lost the run"),
        "{run}"
    );
    drop((api, ingest, agent));
}
