//! One sample's whole life through the real binaries: a monitored cluster is
//! sampled by `lasect-agent`, pushed over mTLS to `lasect-ingest`, stored in
//! the central store, and read back through `lasect-api` with the `lasect` CLI.

use std::time::{Duration, Instant};

use lasect_e2e::{Stack, wait_listening};
use lasect_testkit::{PgCluster, PgOptions};

const K: i64 = 250;
const AGENT_ID: &str = "e2e-agent";
const BOUND: Duration = Duration::from_secs(90);

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
    let stack = Stack::new(AGENT_ID).await;
    let monitored = PgCluster::start(PgOptions::default()).expect("monitored cluster");

    // Ingest and API migrate the store themselves, concurrently, at start.
    let mut ingest = stack.spawn_ingest("");
    let mut api = stack.spawn_api();
    wait_listening(&mut ingest);
    wait_listening(&mut api);
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 1\n[[instances]]\nname = \"monitored\"\ndsn = \"{}\"\n",
            monitored.dsn("postgres")
        ),
    );
    let _agent = stack.start_agent(&[]);

    let store = stack.store().await;
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
    let cli = |args: &[&str]| stack.cli(args);
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

    // The agent is listed for admins.
    let agents: serde_json::Value =
        serde_json::from_str(&cli(&["agent", "list", "-o", "json"])).expect("json");
    assert_eq!(agents["agents"][0]["id"], AGENT_ID, "{agents}");

    // Without credentials the API refuses (exit code 3); `lasect login` with the admin's
    // generated password stores a token that later commands use.
    let out = stack
        .cli_command(&["instance", "list"])
        .output()
        .expect("run lasect");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let mut login = stack.cli_command(&["login", "--username", "admin", "--password-stdin"]);
    login
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = login.spawn().expect("spawn login");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "{}", stack.admin_password).expect("password");
    }
    assert!(child.wait().expect("login").success());
    let mut cmd = stack.cli_command(&["instance", "list"]);
    cmd.env_remove("LASECT_URL").env_remove("LASECT_CA_FILE");
    let listed = lasect_e2e::run_ok(&mut cmd);
    assert!(listed.contains("monitored"), "{listed}");

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
