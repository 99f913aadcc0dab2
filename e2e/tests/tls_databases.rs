//! TLS to every database through the real binaries: the store and the
//! monitored cluster refuse TCP clients without TLS (`hostnossl … reject`),
//! and every DSN says `sslmode=verify-full` with a test CA. The API's admin
//! commands and migrations, ingest's pool and LISTEN connection, the API's
//! pool, the agent's collector sessions and a run's session must all connect.

use std::time::{Duration, Instant};

use lasect_e2e::Stack;
use lasect_testkit::{PgCluster, PgOptions, TestCa};
use serde_json::json;

const AGENT_ID: &str = "tls-agent";
const BOUND: Duration = Duration::from_secs(90);

fn tls_cluster(ca: &TestCa) -> PgCluster {
    PgCluster::start(PgOptions {
        tls: Some(
            ca.server_cert(&["localhost", "127.0.0.1"])
                .expect("server cert"),
        ),
        tls_only: true,
        ..PgOptions::default()
    })
    .expect("cluster")
}

/// Backends of `application_name` on `db`: (how many, how many on TLS).
async fn tls_backends(db: &tokio_postgres::Client, application_name: &str) -> (i64, i64) {
    let row = db
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl)
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.application_name = $1",
            &[&application_name],
        )
        .await
        .expect("pg_stat_ssl");
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_ingest_and_api_reach_their_databases_with_verify_full() {
    let ca = TestCa::new("database CA").expect("CA");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = dir.path().join("db-ca.pem");
    ca.write_cert(&ca_file).expect("write CA");
    let tls = format!("sslmode=verify-full sslrootcert={}", ca_file.display());

    let store_pg = tls_cluster(&ca);
    let store_dsn = format!(
        "host=localhost port={} user=postgres dbname=lasect {tls}",
        store_pg.port()
    );
    // `admin create` migrates the store through this DSN too.
    let stack = Stack::with_store(AGENT_ID, store_pg, Some(store_dsn)).await;
    let _api = stack.start_api();
    let _ingest = stack.start_ingest(&stack.secrets_toml());

    let monitored = tls_cluster(&ca);
    let run_dsn = lasect_e2e::run_role_dsn(&monitored, "postgres").await;
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 1\n[[instances]]\nname = \"monitored\"\n\
             dsn = \"host=localhost port={} user=postgres dbname=postgres {tls}\"\n\
             run_dsn = \"{run_dsn} {tls}\"\n",
            monitored.port()
        ),
    );
    let mut agent = stack.start_agent(&[]);
    agent
        .wait_for_line("Control stream open", Duration::from_secs(60))
        .expect("control stream");

    // Samples reach the store: the agent collected over TLS and ingest wrote them.
    let store = stack.store().await;
    let start = Instant::now();
    loop {
        let stored: i64 = store
            .query_one(
                "SELECT count(*) FROM metric_database d JOIN instances i ON i.id = d.instance_id
                 WHERE i.name = 'monitored' AND i.agent_id = $1",
                &[&AGENT_ID],
            )
            .await
            .expect("stored samples")
            .get(0);
        if stored > 0 {
            break;
        }
        assert!(start.elapsed() < BOUND, "no sample stored within {BOUND:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let monitored_db = monitored.connect("postgres").await.expect("monitored");
    let (agent_sessions, on_tls) = tls_backends(&monitored_db, "lasect-agent").await;
    assert!(
        agent_sessions > 0 && on_tls == agent_sessions,
        "agent sessions {agent_sessions}, on TLS {on_tls}"
    );

    // The API's pool answers, and a run goes API → store → ingest → agent → instance.
    let id = stack.instance_id("monitored").await;
    let run = stack
        .sql_run(
            id,
            json!({"sql": "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"}),
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let page = stack.run_page(&run, 0).await;
    assert_eq!(
        page["rows"],
        json!([[true]]),
        "the run's own session: {page}"
    );

    // Every TCP session on the store is on TLS (plaintext is rejected by pg_hba), the
    // API's pool among them.
    let (api_sessions, api_on_tls) = tls_backends(&store, "lasect-api").await;
    assert!(
        api_sessions > 0 && api_on_tls == api_sessions,
        "api sessions {api_sessions}, on TLS {api_on_tls}"
    );
    let plaintext_tcp: i64 = store
        .query_one(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.client_addr IS NOT NULL AND NOT s.ssl",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert_eq!(plaintext_tcp, 0);
}
