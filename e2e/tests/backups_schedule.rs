//! Backup schedules, retention and the stored catalogue through the real binaries and
//! pgBackRest 2.45 (issue 17, docs/BACKUPS.md): a schedule with seconds fires with two API
//! processes running and each firing starts at most one backup run; the repository's
//! retention (one full) is applied by the backups themselves and the catalogue the API stores
//! shows what is left, with its recovery window, through the API and the CLI; with the agent
//! stopped, a firing is reported missed with the reason.

use std::time::Duration;

use lasect_e2e::{Stack, wait_listening, write};
use lasect_testkit::{ChildGuard, binary_path, free_port};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::pgbackrest_files::{archiving_cluster, create_stanza, require_pgbackrest};
use crate::support::until;

const AGENT_ID: &str = "schedules-agent";

/// A second `lasect-api serve` on the same store (its own port, the same keys).
fn second_api(stack: &Stack) -> ChildGuard {
    let first = std::fs::read_to_string(stack.path("api.toml")).expect("api.toml");
    let config = stack.path("api-2.toml");
    write(
        &config,
        &first.replace(
            &format!("127.0.0.1:{}", stack.api_port),
            &format!("127.0.0.1:{}", free_port()),
        ),
    );
    let mut c = std::process::Command::new(binary_path("lasect-api"));
    c.arg("serve").arg("--config").arg(config);
    let mut api = ChildGuard::spawn(c).expect("spawn the second api");
    wait_listening(&mut api);
    api
}

async fn firings(stack: &Stack, schedule: i64) -> Vec<Value> {
    let (status, body) = stack
        .api(
            Method::GET,
            &format!("api/v1/backup/firings?schedule_id={schedule}&limit=1000"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["firings"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_fire_once_retention_applies_and_missed_firings_are_reported() {
    let _pgbackrest = crate::support::pgbackrest().await;
    require_pgbackrest();
    let archiving = archiving_cluster("lasect-schedules-");
    let cluster = &archiving.cluster;

    let stack = Stack::new(AGENT_ID).await;
    let _api = stack.start_api();
    let _api_2 = second_api(&stack);
    let _ingest = stack.start_ingest(&stack.secrets_toml());
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 5\n[control]\nallow = [\"sql\", \"backup\", \"restore\"]\n\
             [[instances]]\nname = \"archived\"\ndsn = \"{}\"\n",
            cluster.dsn("postgres")
        ),
    );
    let mut agent = stack.start_agent(&[]);
    agent
        .wait_for_line("Control stream open", Duration::from_secs(60))
        .expect("control stream");
    let instance = stack.instance_id("archived").await;
    let repos = format!("api/v1/instances/{instance}/backup/repositories");
    let repo_id = archiving
        .add_main_repository(&stack, instance, json!({"retention_full": 1}))
        .await;
    create_stanza(&stack, &format!("{repos}/{repo_id}")).await;

    // Every three seconds, with two API processes looking every second.
    let added = stack.cli(&[
        "backup",
        "schedule",
        "add",
        "--repo",
        &repo_id.to_string(),
        "--cron",
        "*/3 * * * * *",
        "--type",
        "full",
        "-o",
        "json",
    ]);
    let schedule: Value = serde_json::from_str(&added).expect("schedule JSON");
    let schedule_id = schedule["id"].as_i64().expect("schedule id");
    let store = stack.store().await;
    let succeeded = |ids: Vec<i64>| {
        let store = &store;
        async move {
            let n: i64 = store
                .query_one(
                    "SELECT count(*) FROM runs WHERE id = ANY($1) AND status = 'succeeded'",
                    &[&ids],
                )
                .await
                .expect("runs")
                .get(0);
            n
        }
    };
    until(
        Duration::from_secs(150),
        "two scheduled backups",
        || async {
            let started: Vec<i64> = firings(&stack, schedule_id)
                .await
                .iter()
                .filter_map(|f| f["run_id"].as_i64())
                .collect();
            (succeeded(started).await >= 2).then_some(())
        },
    )
    .await;
    // One run per started firing, never two: one snapshot of the store (a firing and its run
    // are written in one transaction).
    let row = store
        .query_one(
            "SELECT (SELECT count(*) FROM runs WHERE requested_by = $1), \
                    (SELECT count(run_id) FROM backup_schedule_firings WHERE schedule_id = $2), \
                    (SELECT count(DISTINCT run_id) FROM backup_schedule_firings \
                     WHERE schedule_id = $2)",
            &[&format!("schedule:{schedule_id}"), &schedule_id],
        )
        .await
        .expect("snapshot");
    let (runs, fired, distinct): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((runs, distinct), (fired, fired), "runs per firing");
    let removed = stack.cli(&["backup", "schedule", "remove", &schedule_id.to_string()]);
    assert!(removed.contains("removed"), "{removed}");

    let runs: Vec<i64> = store
        .query(
            "SELECT id FROM runs WHERE requested_by = $1 ORDER BY id",
            &[&format!("schedule:{schedule_id}")],
        )
        .await
        .expect("runs")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(runs.len() >= 2, "{runs:?}");
    // The schedule's firings went with it; each run still names its firing's schedule.
    assert_eq!(firings(&stack, schedule_id).await.len(), 0);
    let all_ended = until(Duration::from_secs(120), "the last backup ends", || async {
        let open: i64 = store
            .query_one(
                "SELECT count(*) FROM runs WHERE id = ANY($1) \
                 AND status IN ('queued', 'dispatched', 'running')",
                &[&runs],
            )
            .await
            .expect("runs")
            .get(0);
        (open == 0).then_some(())
    });
    all_ended.await;

    // The catalogue, from the store: retention kept one full backup, the newest.
    let newest: i64 = store
        .query_one(
            "SELECT max(id) FROM runs WHERE instance_id = $1 AND kind IN ('backup', 'backup_info') \
             AND status = 'succeeded'",
            &[&instance],
        )
        .await
        .expect("newest")
        .get(0);
    let catalogue = until(Duration::from_secs(30), "the catalogue stored", || async {
        let (status, body) = stack
            .api(
                Method::GET,
                &format!("api/v1/backups?instance_id={instance}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        (body["repositories"][0]["run_id"].as_i64() == Some(newest)).then_some(body)
    })
    .await;
    let stored = &catalogue["repositories"][0];
    let backups = stored["backups"].as_array().expect("backups");
    assert_eq!(
        backups.len(),
        1,
        "retention_full = 1 expired the older: {catalogue}"
    );
    let backup = &backups[0];
    assert_eq!(backup["type"], "full");
    assert!(
        backup["database_size"].as_i64().is_some_and(|n| n > 0),
        "{backup}"
    );
    assert!(
        backup["repo_size"].as_i64().is_some_and(|n| n > 0),
        "{backup}"
    );
    assert!(
        backup["lsn_start"].is_string() && backup["wal_stop"].is_string(),
        "{backup}"
    );
    assert_eq!(stored["status_code"], 0, "{stored}");
    assert!(stored["archive_max"].is_string(), "{stored}");
    assert_eq!(
        stored["earliest_restorable"], backup["stopped_at"],
        "{stored}"
    );
    assert!(stored["latest_restorable"].is_string(), "{stored}");
    let label = backup["label"].as_str().expect("label");
    let listed = stack.cli(&["backup", "list", "-i", "archived"]);
    assert!(
        listed.contains(label) && listed.contains("recoverable from"),
        "{listed}"
    );
    let shown = stack.cli(&["backup", "show", label, "-o", "json"]);
    let shown: Value = serde_json::from_str(&shown).expect("show JSON");
    assert_eq!(shown["lsn_stop"], backup["lsn_stop"]);

    // A drill schedule: a firing restores the latest backup into a scratch copy, checks it and
    // passes.
    let added = stack.cli(&[
        "backup",
        "schedule",
        "add",
        "--repo",
        &repo_id.to_string(),
        "--cron",
        "*/2 * * * * *",
        "--drill",
        "--check-sql",
        "SELECT 1 AS one",
        "-o",
        "json",
    ]);
    let drill_schedule: Value = serde_json::from_str(&added).expect("schedule JSON");
    assert_eq!(drill_schedule["kind"], "drill", "{drill_schedule}");
    assert!(drill_schedule["type"].is_null(), "{drill_schedule}");
    let drill_id = drill_schedule["id"].as_i64().expect("schedule id");
    let fired = until(Duration::from_secs(90), "a drill fired", || async {
        firings(&stack, drill_id)
            .await
            .into_iter()
            .find(|f| f["outcome"] == "started" && f["run_id"].is_i64())
    })
    .await;
    let listed = stack.cli(&[
        "backup",
        "schedule",
        "firings",
        "--schedule",
        &drill_id.to_string(),
    ]);
    assert!(
        listed.contains("drill") && listed.contains("started"),
        "{listed}"
    );
    let removed = stack.cli(&["backup", "schedule", "remove", &drill_id.to_string()]);
    assert!(removed.contains("removed"), "{removed}");
    let drill = stack
        .wait_run(fired["run_id"].as_i64().expect("run id"))
        .await;
    assert_eq!(drill["kind"], "backup_drill", "{drill}");
    assert_eq!(drill["status"], "succeeded", "{drill}");
    assert_eq!(drill["summary"]["passed"], true, "{drill}");
    assert_eq!(drill["summary"]["check"]["rows"][0]["one"], 1, "{drill}");
    let open_drills = until(Duration::from_secs(120), "the drills end", || async {
        let open: i64 = store
            .query_one(
                "SELECT count(*) FROM runs WHERE requested_by = $1 \
                 AND status IN ('queued', 'dispatched', 'running')",
                &[&format!("schedule:{drill_id}")],
            )
            .await
            .expect("runs")
            .get(0);
        (open == 0).then_some(open)
    })
    .await;
    assert_eq!(open_drills, 0);

    // The agent stops: the next firing is reported missed, naming the agent.
    agent.kill();
    let added = stack.cli(&[
        "backup",
        "schedule",
        "add",
        "--repo",
        &repo_id.to_string(),
        "--cron",
        "*/2 * * * * *",
        "--type",
        "incr",
        "-o",
        "json",
    ]);
    let schedule: Value = serde_json::from_str(&added).expect("schedule JSON");
    let schedule_id = schedule["id"].as_i64().expect("schedule id");
    let missed = until(Duration::from_secs(90), "a missed firing", || async {
        firings(&stack, schedule_id).await.into_iter().find(|f| {
            f["outcome"] == "missed"
                && f["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains(AGENT_ID) && r.contains("offline"))
        })
    })
    .await;
    assert!(missed["run_id"].is_null(), "{missed}");
    let shown = stack.cli(&[
        "backup",
        "schedule",
        "firings",
        "--schedule",
        &schedule_id.to_string(),
        "--missed",
    ]);
    assert!(shown.contains("offline"), "{shown}");
}
