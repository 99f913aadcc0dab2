//! Alerts end to end: rules applied with the real `lasect` CLI from a YAML file, evaluated by
//! the real `lasect-api` (a round every second) over what the real agent collects from a
//! harness cluster driven into each condition, and back: an idle-in-transaction session, a
//! session blocked by a held lock, transaction ids spent towards wraparound (then frozen) and
//! the dead-man's switch of a stopped agent each fire and then resolve. Thresholds and `for` are the default pack's, made small here.

use std::time::{Duration, Instant};

use lasect_e2e::{ALERTS_EVERY_SECOND, Stack, wait_listening, write};
use lasect_testkit::{ChildGuard, PgCluster, PgOptions};

const AGENT_ID: &str = "alerts-agent";
const BOUND: Duration = Duration::from_secs(120);

/// The four default rules under test, with small thresholds, windows and `for`.
const RULES: &str = r#"
rules:
  - name: idle_in_transaction
    severity: warning
    condition:
      kind: threshold
      family: activity
      column: oldest_idle_in_xact_age_seconds
      agg: last
      window_secs: 5
      op: ">"
      threshold: 2
    for_secs: 1
    annotations:
      summary: "idle in transaction for {{ value | duration }} on {{ instance }}"
  - name: sessions_blocked
    severity: warning
    condition:
      kind: threshold
      family: lock_waits
      column: wait_seconds
      agg: last
      window_secs: 4
      op: ">"
      threshold: 1
  - name: agent_silent
    severity: critical
    condition:
      kind: absence
      target: agent
      seconds: 8
  - name: xid_wraparound_warning
    severity: warning
    condition:
      kind: threshold
      family: database
      column: datfrozenxid_age
      agg: max
      by: [datname]
      where: [{column: datname, op: eq, value: postgres}]
      window_secs: 3
      op: ">"
      threshold: 500
"#;

async fn state(store: &tokio_postgres::Client, rule: &str) -> Option<String> {
    store
        .query_opt(
            "SELECT a.state FROM alert_instances a JOIN alert_rules r ON r.id = a.rule_id \
             WHERE r.name = $1 ORDER BY a.since DESC LIMIT 1",
            &[&rule],
        )
        .await
        .expect("alert state")
        .map(|r| r.get(0))
}

async fn wait_state(store: &tokio_postgres::Client, rule: &str, want: &str) {
    let start = Instant::now();
    loop {
        let now = state(store, rule).await;
        if now.as_deref() == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < BOUND,
            "{rule} did not become {want} within {BOUND:?} (it is {now:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn agent_config(stack: &Stack, monitored: &PgCluster) {
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 1\nintervals = {{ activity = 1, lock = 1 }}\n\
             [[instances]]\nname = \"monitored\"\ndsn = \"{}\"\n",
            monitored.dsn("postgres")
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_transaction_blocked_session_and_silent_agent_fire_and_resolve() {
    let stack = Stack::new(AGENT_ID).await;
    let monitored = PgCluster::start(PgOptions::default()).expect("monitored cluster");
    let mut ingest = stack.spawn_ingest("[agents]\nrefresh_interval_secs = 1\n");
    let mut api = ChildGuard::spawn(stack.api_command(ALERTS_EVERY_SECOND)).expect("spawn api");
    wait_listening(&mut ingest);
    wait_listening(&mut api);

    let rules = stack.path("rules.yaml");
    write(&rules, RULES);
    let dry = stack.cli(&[
        "alert",
        "rule",
        "apply",
        "-f",
        rules.to_str().expect("path"),
        "--dry-run",
    ]);
    assert!(dry.contains("~ idle_in_transaction"), "{dry}");
    stack.cli(&[
        "alert",
        "rule",
        "apply",
        "-f",
        rules.to_str().expect("path"),
    ]);
    let again = stack.cli(&[
        "alert",
        "rule",
        "apply",
        "-f",
        rules.to_str().expect("path"),
    ]);
    assert!(
        !again.contains('~') && !again.contains('+'),
        "applied twice: {again}"
    );

    agent_config(&stack, &monitored);
    let mut agent = stack.start_agent(&[]);
    let store = stack.store().await;
    let db = monitored.connect("postgres").await.expect("connect");
    db.batch_execute("CREATE TABLE t (i int)")
        .await
        .expect("create");

    // An idle-in-transaction session.
    let idle = monitored.connect("postgres").await.expect("connect");
    idle.batch_execute("BEGIN; SELECT 1").await.expect("begin");
    wait_state(&store, "idle_in_transaction", "firing").await;
    let firing = stack.cli(&["alert", "list", "--firing", "-o", "json"]);
    let firing: serde_json::Value = serde_json::from_str(&firing).expect("json");
    let alert = firing["alerts"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["rule"] == "idle_in_transaction"))
        .unwrap_or_else(|| panic!("not listed: {firing}"));
    assert_eq!(alert["instance"], "monitored");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap_or_default()
            .ends_with("on monitored"),
        "{alert}"
    );
    idle.batch_execute("COMMIT").await.expect("commit");
    wait_state(&store, "idle_in_transaction", "resolved").await;

    // A session blocked by a held lock.
    let holder = monitored.connect("postgres").await.expect("connect");
    holder
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let waiter = monitored.connect("postgres").await.expect("connect");
    let blocked = tokio::spawn(async move { waiter.batch_execute("SELECT * FROM t").await });
    wait_state(&store, "sessions_blocked", "firing").await;
    holder.batch_execute("COMMIT").await.expect("release");
    blocked
        .await
        .expect("join")
        .expect("the blocked query ends");
    wait_state(&store, "sessions_blocked", "resolved").await;

    // Transaction ids spent past the (small) wraparound threshold, then frozen away.
    assert_eq!(
        state(&store, "xid_wraparound_warning").await,
        None,
        "a fresh cluster is far from the threshold"
    );
    for _ in 0..600 {
        db.batch_execute("SELECT txid_current()")
            .await
            .expect("spend a transaction id");
    }
    wait_state(&store, "xid_wraparound_warning", "firing").await;
    db.batch_execute("VACUUM (FREEZE)").await.expect("freeze");
    wait_state(&store, "xid_wraparound_warning", "resolved").await;

    // The dead-man's switch: the agent stops, then comes back.
    agent.terminate(Duration::from_secs(10));
    wait_state(&store, "agent_silent", "firing").await;
    let _agent = stack.start_agent(&[]);
    wait_state(&store, "agent_silent", "resolved").await;

    let history = stack.cli(&["alert", "history", "--rule", "agent_silent", "-o", "json"]);
    let history: serde_json::Value = serde_json::from_str(&history).expect("json");
    let to: Vec<&str> = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["to_state"].as_str())
        .collect();
    assert_eq!(to, ["resolved", "firing"], "{history}");

    // Export as YAML and apply it back: nothing changes.
    let exported = stack.path("exported.yaml");
    write(&exported, &stack.cli(&["alert", "rule", "export"]));
    let again = stack.cli(&[
        "alert",
        "rule",
        "apply",
        "-f",
        exported.to_str().expect("path"),
    ]);
    assert!(
        !again.contains('~') && !again.contains('+') && !again.contains('-'),
        "{again}"
    );
    let tested = stack.cli(&["alert", "rule", "test", "agent_silent", "-o", "json"]);
    let tested: serde_json::Value = serde_json::from_str(&tested).expect("json");
    assert_eq!(tested["values"][0]["agent_id"], AGENT_ID, "{tested}");
    assert_eq!(tested["values"][0]["holds"], false, "{tested}");
    // Silences through the CLI.
    let added = stack.cli(&[
        "alert",
        "silence",
        "add",
        "-m",
        "alertname=deadlocks",
        "-d",
        "2h",
        "-c",
        "rebuild",
        "-o",
        "json",
    ]);
    let added: serde_json::Value = serde_json::from_str(&added).expect("json");
    let id = added["id"].as_i64().expect("id").to_string();
    assert!(
        stack
            .cli(&["alert", "silence", "list"])
            .contains("alertname=deadlocks")
    );
    assert!(
        stack
            .cli(&["alert", "silence", "remove", &id])
            .contains("removed")
    );

    // The rounds are counted on the API's /metrics.
    let metrics = metrics_text(&stack).await;
    let evaluated = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lasect_api_alert_rounds_total{outcome=\"evaluated\"} "))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no evaluated rounds in:\n{metrics}"));
    assert!(evaluated >= 3.0, "{evaluated}");
    assert!(
        metrics.contains("lasect_api_alert_transitions_total"),
        "{metrics}"
    );
}

async fn metrics_text(stack: &Stack) -> String {
    let ca = std::fs::read(stack.tls().join("ca.pem")).expect("ca");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).expect("ca pem"))
        .build()
        .expect("client");
    client
        .get(format!("https://127.0.0.1:{}/metrics", stack.api_port))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text")
}
