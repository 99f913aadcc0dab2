//! Two ingest processes share the store; the same agent identity holds a Control stream to
//! each (two agent processes, as after a fail-over with a stale connection). Every run is
//! claimed by exactly one ingest (`FOR UPDATE SKIP LOCKED`), so each is executed exactly once.

use std::time::Duration;

use lasect_e2e::{Stack, wait_listening, write};
use lasect_testkit::{ChildGuard, PgCluster, PgOptions, binary_path, free_port};
use reqwest::Method;
use serde_json::json;

const AGENT_ID: &str = "twin-agent";
const RUNS: i64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingests_never_execute_a_run_twice() {
    let stack = Stack::new(AGENT_ID).await;
    let target = PgCluster::start(PgOptions::default()).expect("target cluster");
    target
        .connect("postgres")
        .await
        .expect("connect")
        .batch_execute("CREATE TABLE hits (n int)")
        .await
        .expect("create hits");
    let mut api = stack.spawn_api();
    wait_listening(&mut api);
    let mut first = stack.spawn_ingest(&stack.secrets_toml());
    wait_listening(&mut first);
    // A second ingest on the same store.
    let t = stack.tls();
    let second_port = free_port();
    let config = stack.path("ingest2.toml");
    write(
        &config,
        &format!(
            "listen = \"127.0.0.1:{second_port}\"\nstore_dsn = \"{}\"\n{}\n[tls]\nca_file = \"{t}/ca.pem\"\n\
             cert_file = \"{t}/ingest.pem\"\nkey_file = \"{t}/ingest.key\"\n",
            stack.store_dsn(),
            stack.secrets_toml(),
            t = t.display()
        ),
    );
    let mut c = std::process::Command::new(binary_path("lasect-ingest"));
    c.arg("--config").arg(&config);
    let mut second = ChildGuard::spawn(c).expect("spawn second ingest");
    wait_listening(&mut second);

    let instance = lasect_e2e::instance_toml("target", &target, "postgres").await;
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 5\n[control]\n{}\n{instance}",
            lasect_e2e::ALLOW_ALL
        ),
    );
    let mut agent_a = stack.start_agent(&[]);
    // The twin: same identity, its own state dir, pointed at the second ingest.
    let twin = stack.path("agent2.toml");
    let body = std::fs::read_to_string(stack.path("agent.toml"))
        .expect("agent.toml")
        .replace(
            &format!("127.0.0.1:{}", stack.ingest_port),
            &format!("127.0.0.1:{second_port}"),
        )
        .replace(
            &stack.agent_state().display().to_string(),
            &stack.path("agent2-state").display().to_string(),
        );
    write(&twin, &body);
    let mut c = std::process::Command::new(binary_path("lasect-agent"));
    c.arg("--config").arg(&twin);
    let mut agent_b = ChildGuard::spawn(c).expect("spawn twin agent");
    for a in [&mut agent_a, &mut agent_b] {
        a.wait_for_line("Control stream open", Duration::from_secs(60))
            .expect("control stream");
    }
    let store = stack.store().await;
    let id: i64 = loop {
        if let Some(row) = store
            .query_opt("SELECT id FROM instances WHERE name = 'target'", &[])
            .await
            .expect("instances")
        {
            break row.get(0);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let mut ids = Vec::new();
    for n in 0..RUNS {
        let (status, run) = stack
            .api(
                Method::POST,
                &format!("api/v1/instances/{id}/sql"),
                Some(json!({"sql": format!("INSERT INTO hits VALUES ({n})"), "write": true})),
            )
            .await;
        ids.push(crate::support::created_run(status, &run));
    }
    for rid in ids {
        let run = stack.wait_run(rid).await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    let db = target.connect("postgres").await.expect("connect");
    let row = db
        .query_one("SELECT count(*), count(DISTINCT n) FROM hits", &[])
        .await
        .expect("count");
    assert_eq!(
        row.get::<_, i64>(0),
        RUNS,
        "every run executed exactly once"
    );
    assert_eq!(row.get::<_, i64>(1), RUNS);
    let by: Vec<String> = store
        .query(
            "SELECT DISTINCT dispatched_by FROM runs WHERE kind = 'sql'",
            &[],
        )
        .await
        .expect("dispatched_by")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!by.is_empty(), "runs name the ingest that dispatched them");
    drop((agent_a, agent_b, first, second));
}
