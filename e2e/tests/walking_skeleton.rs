//! One sample's whole life through the real binaries: a monitored cluster is
//! sampled by `lasect-agent`, pushed over mTLS to `lasect-ingest`, stored in
//! the central store, and read back through `lasect-api` with the `lasect` CLI.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lasect_testkit::{ChildGuard, PgCluster, PgOptions, binary_path, free_port};

const K: i64 = 250;
const AGENT_ID: &str = "e2e-agent";
const BOUND: Duration = Duration::from_secs(90);

fn write(path: &Path, body: &str) {
    std::fs::write(path, body).expect("write config");
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Highest stored xact_commit of database `postgres` of the instance, if any.
async fn stored_commits(store: &tokio_postgres::Client) -> Option<i64> {
    store
        .query_one(
            "SELECT max(d.xact_commit) FROM metric_database d
             JOIN instances i ON i.id = d.instance_id
             WHERE i.name = 'monitored' AND i.agent_id = $1 AND d.datname = 'postgres'",
            &[&AGENT_ID],
        )
        .await
        .ok()
        .and_then(|r| r.get::<_, Option<i64>>(0))
}

async fn wait_for_commits(store: &tokio_postgres::Client, at_least: i64) -> i64 {
    let start = Instant::now();
    loop {
        if let Some(n) = stored_commits(store).await
            && n >= at_least
        {
            return n;
        }
        assert!(
            start.elapsed() < BOUND,
            "stored xact_commit did not reach {at_least} within {BOUND:?} (now {:?})",
            stored_commits(store).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_travels_agent_to_store_to_cli() {
    let store_pg = PgCluster::start(PgOptions::default()).expect("store cluster");
    let monitored = PgCluster::start(PgOptions::default()).expect("monitored cluster");
    store_pg.create_database("lasect").await.expect("store db");
    let store_dsn = store_pg.dsn("lasect");

    let dir = tempfile::tempdir().expect("tempdir");
    let tls = dir.path().join("tls");
    run_ok(
        Command::new(binary_path("lasect-api"))
            .args(["ca", "init", "--dir"])
            .arg(&tls)
            .args(["--agent", AGENT_ID]),
    );

    // Ingest and API migrate the store themselves, concurrently, at start.
    let ingest_port = free_port();
    let api_port = free_port();
    let t = tls.display();
    write(
        &dir.path().join("ingest.toml"),
        &format!(
            "listen = \"127.0.0.1:{ingest_port}\"\nstore_dsn = \"{store_dsn}\"\n\
             [tls]\nca_file = \"{t}/ca.pem\"\ncert_file = \"{t}/ingest.pem\"\nkey_file = \"{t}/ingest.key\"\n"
        ),
    );
    write(
        &dir.path().join("api.toml"),
        &format!(
            "listen = \"127.0.0.1:{api_port}\"\nstore_dsn = \"{store_dsn}\"\n\
             [tls]\ncert_file = \"{t}/api.pem\"\nkey_file = \"{t}/api.key\"\n"
        ),
    );
    write(
        &dir.path().join("agent.toml"),
        &format!(
            "state_dir = \"{state}\"\n\
             [ingest]\nendpoint = \"https://127.0.0.1:{ingest_port}\"\nserver_name = \"lasect-ingest\"\n\
             [tls]\nca_file = \"{t}/ca.pem\"\ncert_file = \"{t}/agents/{AGENT_ID}.pem\"\nkey_file = \"{t}/agents/{AGENT_ID}.key\"\n\
             [collect]\ninterval_secs = 1\n\
             [[instances]]\nname = \"monitored\"\ndsn = \"{dsn}\"\n",
            state = dir.path().join("agent-state").display(),
            dsn = monitored.dsn("postgres"),
        ),
    );

    let mut ingest = ChildGuard::spawn({
        let mut c = Command::new(binary_path("lasect-ingest"));
        c.arg("--config").arg(dir.path().join("ingest.toml"));
        c
    })
    .expect("spawn ingest");
    let mut api = ChildGuard::spawn({
        let mut c = Command::new(binary_path("lasect-api"));
        c.arg("serve")
            .arg("--config")
            .arg(dir.path().join("api.toml"));
        c
    })
    .expect("spawn api");
    ingest
        .wait_for_line("listening", Duration::from_secs(60))
        .expect("ingest up");
    api.wait_for_line("listening", Duration::from_secs(60))
        .expect("api up");
    let _agent = ChildGuard::spawn({
        let mut c = Command::new(binary_path("lasect-agent"));
        c.arg("--config").arg(dir.path().join("agent.toml"));
        c
    })
    .expect("spawn agent");

    let store = store_pg.connect("lasect").await.expect("connect store");
    let before = wait_for_commits(&store, 0).await;

    // K committed transactions on the monitored instance.
    let db = monitored
        .connect("postgres")
        .await
        .expect("connect monitored");
    db.batch_execute("CREATE TABLE t (i int)")
        .await
        .expect("create");
    for i in 0..K {
        db.execute("INSERT INTO t VALUES ($1)", &[&(i as i32)])
            .await
            .expect("insert");
    }
    let after = wait_for_commits(&store, before + K).await;
    assert!(after - before >= K, "grew by {} < {K}", after - before);

    // The CLI reads it back through the API over HTTPS.
    let cli = |args: &[&str]| {
        run_ok(
            Command::new(binary_path("lasect"))
                .args(args)
                .env("LASECT_URL", format!("https://127.0.0.1:{api_port}"))
                .env("LASECT_CA_FILE", tls.join("ca.pem")),
        )
    };
    let list: serde_json::Value =
        serde_json::from_str(&cli(&["instance", "list", "--output", "json"])).expect("json");
    let text = list.to_string();
    assert!(
        text.contains("monitored") && text.contains(AGENT_ID),
        "{text}"
    );

    let shown: serde_json::Value = serde_json::from_str(&cli(&[
        "metrics",
        "show",
        "--instance",
        "monitored",
        "--family",
        "database",
        "--output",
        "json",
    ]))
    .expect("json");
    let rows = shown["rows"].as_array().expect("rows array");
    let pg_row = rows
        .iter()
        .find(|r| r["datname"] == "postgres")
        .unwrap_or_else(|| panic!("no row for database postgres in {shown}"));
    assert!(
        pg_row["xact_commit"].as_i64().expect("xact_commit") >= before + K,
        "{pg_row}"
    );
    let table = cli(&["metrics", "show", "--instance", "monitored"]);
    assert!(
        table.contains("postgres") && table.contains("xact_commit"),
        "{table}"
    );

    // Host families came along too.
    let cpu: i64 = store
        .query_one(
            "SELECT count(*) FROM metric_host_cpu WHERE agent_id = $1",
            &[&AGENT_ID],
        )
        .await
        .expect("host cpu")
        .get(0);
    assert!(cpu > 0);
}
