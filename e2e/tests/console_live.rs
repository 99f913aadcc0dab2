//! The console's live and operations pages in the browser (`console/tests/live.mjs`), on the
//! stack `console.rs` started, with its agent running again:
//!
//! - the fleet shows the instance's key figures;
//! - the instance page gets a new sample over the live WebSocket without a reload;
//! - a blocking session made here (one session holds an ACCESS EXCLUSIVE lock, another waits
//!   for it) is in the locks tree under its blocker, with both queries, and its wait
//!   (`Lock:relation`) in the waits chart, sampled after the page opened;
//! - a CSV export run saved with the run page's Download is the API's answer, named by it;
//! - every instance section, and the alerts (a rule made here fires and is shown), replication
//!   and backups pages; the theme toggle remembered over a reload; keyboard navigation; a
//!   narrow window; a viewer sees no alert control;
//! - axe-core finds no serious or critical violation on any page; no console error, failed
//!   request or CSP violation.
//!
//! Screenshots of each page are kept in `target/console-shots/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lasect_e2e::Stack;
use lasect_testkit::PgCluster;
use reqwest::Method;
use serde_json::json;

const WATCHER_PASSWORD: &str = "a watcher's long password";
const ALERT_RULE: &str = "console_sessions_seen";
const BOUND: Duration = Duration::from_secs(60);

pub async fn scenario(
    stack: &Stack,
    monitored: &PgCluster,
    instance: &str,
    console_dir: &Path,
    chromium: &Path,
) {
    let _agent = stack.start_agent(&[]);

    let (status, created) = stack
        .api(
            Method::POST,
            "/api/v1/users",
            Some(json!({"username": "watcher", "password": WATCHER_PASSWORD, "role": "viewer"})),
        )
        .await;
    assert_eq!(status, 201, "create the watcher: {created}");
    let (status, rule) = stack
        .api(
            Method::POST,
            "/api/v1/alerts/rules",
            Some(json!({
                "name": ALERT_RULE,
                "severity": "warning",
                "condition": {
                    "kind": "threshold", "family": "activity", "column": "total_sessions",
                    "agg": "last", "window_secs": 120, "op": ">", "threshold": 0
                },
                "for_secs": 0,
                "annotations": {"summary": "{{ value }} sessions on {{ instance }}"}
            })),
        )
        .await;
    assert_eq!(status, 201, "create the rule: {rule}");

    // One session holds the lock in an open transaction, the other waits for it.
    // (The pid first: the session's query must stay the LOCK the tree shows.)
    let holder = monitored.connect("postgres").await.expect("holder");
    let blocking_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    holder
        .batch_execute("CREATE TABLE console_lock_probe (id int)")
        .await
        .expect("table");
    holder
        .batch_execute("BEGIN; LOCK TABLE console_lock_probe IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let waiter = monitored.connect("postgres").await.expect("waiter");
    let blocked_pid: i32 = waiter
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let waiting = tokio::spawn(async move {
        let _ = waiter
            .simple_query("SELECT count(*) FROM console_lock_probe /* the console waits */")
            .await;
    });
    let observer = monitored.connect("postgres").await.expect("observer");
    let start = Instant::now();
    loop {
        let waits: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted",
                &[&blocked_pid],
            )
            .await
            .expect("pg_locks")
            .get(0);
        if waits > 0 {
            break;
        }
        assert!(start.elapsed() < BOUND, "the waiter never waited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-shots");
    let mut script = crate::support::browser::console_script(
        stack,
        console_dir,
        "tests/live.mjs",
        chromium,
        &artifacts,
    );
    script
        .env("WATCHER_USER", "watcher")
        .env("WATCHER_PASSWORD", WATCHER_PASSWORD)
        .env("INSTANCE", instance)
        .env("BLOCKING_PID", blocking_pid.to_string())
        .env("BLOCKED_PID", blocked_pid.to_string())
        .env("ALERT_RULE", ALERT_RULE);
    let output = script.output().expect("run node");
    // The waiter ends with the holder's transaction.
    holder
        .batch_execute("ROLLBACK")
        .await
        .expect("release the lock");
    let _ = tokio::time::timeout(BOUND, waiting).await;
    let facts = crate::support::browser::facts(&output, "the live browser script");

    let live = &facts["liveUpdate"];
    assert!(
        live["after"].as_str() > live["before"].as_str(),
        "a newer sample: {facts}"
    );
    assert_eq!(live["sameDocument"], true, "{facts}");
    let tree = &facts["lockTree"];
    let blocking = tree["blocking"].as_str().expect("blocking");
    let blocked = tree["blocked"].as_str().expect("blocked");
    assert!(
        blocking.contains(&format!("pid {blocking_pid}"))
            && blocking.contains("LOCK TABLE console_lock_probe"),
        "the blocker and its query: {blocking}"
    );
    assert!(
        blocked.contains(&format!("pid {blocked_pid}")) && blocked.contains("the console waits"),
        "the waiter and its query: {blocked}"
    );
    let waits = &facts["waits"];
    assert!(
        waits["bands"]
            .as_str()
            .is_some_and(|b| b.split('|').any(|band| band == "Lock:relation")),
        "the blocked session's wait in the waits chart: {facts}"
    );
    assert!(
        waits["to"].as_str() > waits["openedAt"].as_str(),
        "the waits chart's range follows the live feed: {facts}"
    );
    let download = &facts["download"];
    let run = download["run"].as_i64().expect("the export run");
    assert_eq!(download["same"], true, "{facts}");
    assert_eq!(download["name"], format!("run-{run}.csv"), "{facts}");
    assert_eq!(
        download["disposition"],
        format!("attachment; filename=\"run-{run}.csv\""),
        "{facts}"
    );
    assert_eq!(
        download["contentType"], "text/csv; charset=utf-8",
        "{facts}"
    );
    let csv = download["text"].as_str().expect("the saved file");
    assert!(
        csv.starts_with("n,label") && csv.contains("3,\"line 3, \"\"quoted\"\"\""),
        "the export's rows as CSV: {csv:?}"
    );
    assert!(
        facts["alertRow"]
            .as_str()
            .is_some_and(|r| r.contains(ALERT_RULE)
                && r.contains("firing")
                && r.contains(instance))
    );
    assert_eq!(
        facts["adminAlertControls"],
        json!(["Acknowledge", "Silence…"]),
        "{facts}"
    );
    assert_eq!(
        facts["silenceMatchers"],
        format!("alertname={ALERT_RULE}, instance={instance}"),
        "{facts}"
    );
    assert!(
        facts["silenceRow"]
            .as_str()
            .is_some_and(|r| r.contains("the console scenario") && r.contains("active")),
        "{facts}"
    );
    assert_eq!(facts["silenceRemoved"], true, "{facts}");
    assert_eq!(facts["viewerAlertControls"], json!([]), "{facts}");
    assert_eq!(facts["viewerSilenceForm"], 0, "{facts}");
    assert_eq!(facts["themeAfterToggle"], "dark", "{facts}");
    assert_eq!(facts["themeAfterReload"], "dark", "{facts}");
    assert_eq!(facts["themeBack"], "light", "{facts}");
    assert_eq!(facts["keyboard"], true, "{facts}");
    assert!(
        facts["narrowOverflow"].as_i64().is_some_and(|px| px <= 0),
        "nothing wider than a narrow window: {facts}"
    );
    let figures = &facts["figures"];
    assert!(
        figures["connections"]
            .as_str()
            .is_some_and(|c| c.contains("/")),
        "{facts}"
    );
    let axe = facts["axe"].as_object().expect("axe");
    for page in [
        "sign-in",
        "fleet",
        "instance",
        "run-download",
        "alerts",
        "replication",
        "backups",
        "fleet-dark",
        "alerts-viewer",
    ] {
        assert_eq!(axe[page]["serious"], 0, "{page}: {facts}");
    }
    let shots: Vec<PathBuf> = [
        "fleet",
        "instance",
        "instance-waits",
        "instance-tables-and-indexes",
        "instance-wal-and-checkpoints",
        "instance-replication",
        "instance-settings",
        "instance-logs",
        "instance-collector-events",
        "run-download",
        "alerts",
        "replication",
        "backups",
        "fleet-dark",
        "instance-narrow",
        "alerts-viewer",
    ]
    .iter()
    .map(|p| artifacts.join(format!("{p}.png")))
    .collect();
    for shot in shots {
        assert!(shot.is_file(), "screenshot {}", shot.display());
    }
}
