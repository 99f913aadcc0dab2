//! The console's backups page (`console/src/ops/Backups.svelte`) in a real browser
//! (`console/tests/backups.mjs`, Debian's chromium with playwright-core), over the real
//! binaries and pgBackRest (issue 17, "Console"): one instance archiving into a posix
//! repository with a full backup and a passed restore drill, and a second repository
//! (`stuck`) whose backups never finish.
//!
//! - the page shows the stored catalogue's backup (type, label, sizes in bytes as the API
//!   stores them), the recovery window (the API's earliest and latest restorable points) and
//!   the drill that passed with its restore time; the schedule with its next firing and the
//!   firings the API lists, the missed ones counted;
//! - the admin starts an incremental backup from the page: the page learns that it ended over
//!   the live stream, without a reload, and then shows the new backup in the catalogue (the
//!   one the API stores, its prior the full backup);
//! - a backup of the stuck stanza started from the page is shown running with a progress
//!   bar; a second one is refused with the API's reason; the first is cancelled from the page
//!   and its pgBackRest is gone;
//! - a drill started from its options form (a check query, amcheck off, a scratch directory:
//!   the run's parameters are those): its end pushed, the drills read again by themselves;
//! - the restore form: a relative directory and a time without a value are refused by the
//!   form itself (the field marked and described by the reason; no request, no run); a time
//!   before the recovery window is warned about; a transaction id that is none is refused by
//!   the API, its words shown; then the full backup restored to the latest point into a new
//!   directory, left running for inspection, after a review that restates it: the run
//!   succeeds, the page shows where the cluster is with its port and socket, the directory
//!   holds `PG_VERSION`, the cluster answers there promoted (then the test stops it); exactly
//!   one restore run in the store;
//! - a viewer sees the same catalogue and no button nor form, and nothing wider than a
//!   narrow window;
//!   axe-core finds no violation at all for the admin, no serious or critical one for the
//!   viewer; no console error, failed request (but the provoked 409) or CSP violation.
//!
//! Screenshots: `target/console-shots/backups-*.png`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lasect_e2e::Stack;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::browser::{chromium, console_dir, require_tools};
use crate::support::pgbackrest_files::{
    archiving_cluster, backup_run, connect_restored, create_stanza, full_backup, give_to_server,
    pgbackrest_of, require_pgbackrest,
};
use crate::support::users::with_role;

const AGENT_ID: &str = "console-backups";
const VIEWER: &str = "vesna";
/// `support::users`' password for the users it makes.
const VIEWER_PASSWORD: &str = "Correct-Horse-Battery-Staple-9";
const MISSED_REASON: &str = "the agent was not connected at 03:00";
/// The drill's check query the page sends (`tests/backups.mjs`).
const CHECK_SQL: &str = "SELECT count(*) AS databases FROM pg_database";

/// Stops the cluster the page's restore left running, whatever happens to the test.
struct StopRestored {
    pg_ctl: PathBuf,
    data_dir: PathBuf,
}

impl StopRestored {
    fn stop(&self) -> std::process::Output {
        std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&self.pg_ctl)
            .args(["stop", "-w", "-m", "fast", "-D"])
            .arg(&self.data_dir)
            .output()
            .expect("pg_ctl stop")
    }
}

impl Drop for StopRestored {
    fn drop(&mut self) {
        if self.data_dir.join("postmaster.pid").exists() {
            let _ = self.stop();
        }
    }
}

/// The catalogue of `instance` once `done` holds for its repository `repo`.
async fn catalogue_when(
    stack: &Stack,
    instance: i64,
    repo: i64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let (status, catalogue) = stack
            .api(
                Method::GET,
                &format!("api/v1/backups?instance_id={instance}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{catalogue}");
        if let Some(r) = catalogue["repositories"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["repository_id"] == repo))
            .filter(|r| done(r))
        {
            return r.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the catalogue never got there: {catalogue}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn types(repository: &Value) -> Vec<String> {
    repository["backups"]
        .as_array()
        .map(|b| {
            b.iter()
                .filter_map(|b| b["type"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A catalogue row as the page showed it, checked against the API's backup: label, type,
/// and both sizes (exact bytes in the cell's data, and a unit in its text).
fn same_backup(shown: &Value, stored: &Value) {
    assert_eq!(shown["label"], stored["label"], "{shown} {stored}");
    assert_eq!(shown["type"], stored["type"], "{shown} {stored}");
    for size in ["database_size", "repo_size"] {
        let bytes = stored[size].as_i64().expect("a size");
        assert!(bytes > 0, "{stored}");
        assert_eq!(
            shown[size]["bytes"],
            bytes.to_string(),
            "{size}: {shown} {stored}"
        );
        assert!(
            shown[size]["text"]
                .as_str()
                .is_some_and(|t| t.ends_with("iB") || t.ends_with(" B")),
            "{size}: {shown}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_page_in_a_real_browser() {
    let _pgbackrest = crate::support::pgbackrest().await;
    // The browser loads both cores: never beside a fault test. (No test takes both locks the
    // other way round.)
    let _load = crate::support::heavy().await;
    require_pgbackrest();
    require_tools();

    let archiving = archiving_cluster("lasect-console-backups-");
    let scratch = archiving.dir.path().join("scratch");
    std::fs::create_dir(&scratch).expect("scratch dir");
    give_to_server(&archiving.cluster, &scratch);
    // Where the page restores to (a new directory below it, made by the restore).
    let restores = archiving.dir.path().join("restores");
    std::fs::create_dir(&restores).expect("restores dir");
    give_to_server(&archiving.cluster, &restores);
    let restored_cluster = StopRestored {
        pg_ctl: archiving.cluster.bindir().join("pg_ctl"),
        data_dir: restores.join("from-page"),
    };
    let stack = Stack::new(AGENT_ID).await;
    let _api = stack.start_api();
    let _ingest = stack.start_ingest(&stack.secrets_toml());
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 5\n[control]\nallow = [\"sql\", \"backup\", \"restore\"]\n\
             [[instances]]\nname = \"archived\"\ndsn = \"{}\"\n",
            archiving.cluster.dsn("postgres")
        ),
    );
    let mut agent = stack.start_agent(&[]);
    agent
        .wait_for_line("Control stream open", Duration::from_secs(60))
        .expect("control stream");
    let id = stack.instance_id("archived").await;
    with_role(&stack, VIEWER, "viewer").await;

    // A full backup and a drill that passes on it, through the API.
    let main_id = archiving.add_main_repository(&stack, id, json!({})).await;
    let main = format!("api/v1/instances/{id}/backup/repositories/{main_id}");
    create_stanza(&stack, &main).await;
    full_backup(&stack, &main).await;
    let drill = backup_run(
        &stack,
        &format!("{main}/drills?wait=120"),
        Some(json!({"scratch_dir": scratch.display().to_string(), "amcheck": false})),
    )
    .await;
    assert_eq!(drill["status"], "succeeded", "{drill}");
    let stuck = archiving.add_stuck_repository(&stack, id).await;
    let stuck_id: i64 = stuck
        .rsplit('/')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("the stuck repository's id");
    // A nightly differential, and a firing of it the scheduler reported missed (stored here:
    // how the scheduler finds one is `backups_schedule.rs`'s test).
    let (status, schedule) = stack
        .api(
            Method::POST,
            "api/v1/backup/schedules",
            Some(
                json!({"repository_id": main_id, "cron": "0 3 * * *", "time_zone": "UTC",
                "kind": "backup", "type": "diff"}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{schedule}");
    let schedule_id = schedule["id"].as_i64().expect("schedule id");
    stack
        .store()
        .await
        .execute(
            "INSERT INTO backup_schedule_firings \
             (schedule_id, repository_id, fire_time, instance_id, outcome, reason) \
             VALUES ($1, $2, date_trunc('day', now()) - interval '21 hours', $3, 'missed', $4)",
            &[&schedule_id, &main_id, &id, &MISSED_REASON],
        )
        .await
        .expect("a missed firing");
    // The page is opened once the API stores the full backup's catalogue.
    let before = catalogue_when(&stack, id, main_id, |r| types(r) == ["full"]).await;
    let (_, drills) = stack
        .api(
            Method::GET,
            &format!("api/v1/backups/drills?instance_id={id}"),
            None,
        )
        .await;
    let stored_drill = drills["drills"][0].clone();
    assert_eq!(stored_drill["run_id"], drill["id"], "{drills}");

    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-shots");
    let mut script = crate::support::browser::console_script(
        &stack,
        &console_dir(),
        "tests/backups.mjs",
        &chromium(),
        &artifacts,
    );
    script
        .env("VIEWER_USER", VIEWER)
        .env("VIEWER_PASSWORD", VIEWER_PASSWORD)
        .env("INSTANCE_ID", id.to_string())
        .env("REPOSITORY_ID", main_id.to_string())
        .env("STUCK_REPOSITORY_ID", stuck_id.to_string())
        .env("SCRATCH_DIR", scratch.display().to_string())
        .env("RESTORE_DIR", restores.display().to_string());
    let output = script.output().expect("run node");
    let facts = crate::support::browser::facts(&output, "the backups browser script");

    // What the page showed before: the API's full backup, window and drill.
    let shown = facts["before"].as_array().expect("rows before");
    assert_eq!(shown.len(), 1, "{facts}");
    same_backup(&shown[0], &before["backups"][0]);
    assert_eq!(
        facts["window"]["earliest"], before["earliest_restorable"],
        "{facts} {before}"
    );
    assert!(before["earliest_restorable"].is_string(), "{before}");
    // The window's end moves with the archive: the page's is one the API answered.
    assert!(
        facts["window"]["latest"].as_str() >= before["latest_restorable"].as_str(),
        "{facts} {before}"
    );
    assert_eq!(facts["drill"]["run"], drill["id"].to_string(), "{facts}");
    assert_eq!(facts["drill"]["passed"], "true", "{facts}");
    let rto = stored_drill["rto_seconds"].as_f64().expect("rto");
    assert!(rto > 0.0, "{stored_drill}");
    assert_eq!(facts["drill"]["rtoSeconds"], rto.to_string(), "{facts}");
    assert!(
        facts["drill"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Passed") && t.contains("RTO")),
        "{facts}"
    );
    assert_eq!(
        facts["adminButtons"],
        json!([
            "Full backup",
            "Differential backup",
            "Incremental backup",
            "Refresh catalogue",
            "Run drill",
            "Restore"
        ]),
        "{facts}"
    );

    // The schedule with its next firing, and the missed firing, flagged.
    let schedules = facts["schedules"].as_array().expect("schedules");
    assert_eq!(schedules.len(), 1, "{facts}");
    let row = schedules[0]["text"].as_str().unwrap_or_default();
    assert!(
        row.contains("diff backup") && row.contains("0 3 * * *") && row.contains("stanza main"),
        "{row}"
    );
    assert!(schedule["next_fire_at"].is_string(), "{schedule}");
    assert_eq!(schedules[0]["next"], schedule["next_fire_at"], "{facts}");
    // Every firing the API lists, each as the API says; the missed ones counted.
    let (_, firings) = stack
        .api(
            Method::GET,
            &format!("api/v1/backup/firings?instance_id={id}"),
            None,
        )
        .await;
    let firings = firings["firings"].as_array().expect("firings").clone();
    let shown = facts["firings"].as_array().expect("shown firings");
    assert_eq!(shown.len(), firings.len(), "{facts} {firings:?}");
    for (shown, stored) in shown.iter().zip(&firings) {
        assert_eq!(shown["outcome"], stored["outcome"], "{shown} {stored}");
        if let Some(reason) = stored["reason"].as_str() {
            assert!(
                shown["text"].as_str().is_some_and(|t| t.contains(reason)),
                "{shown} {stored}"
            );
        }
    }
    assert!(
        shown.iter().any(|f| f["outcome"] == "missed"
            && f["text"]
                .as_str()
                .is_some_and(|t| t.contains(MISSED_REASON))),
        "{facts}"
    );
    let missed = firings.iter().filter(|f| f["outcome"] == "missed").count();
    assert!(
        facts["missed"]
            .as_str()
            .is_some_and(|m| m.starts_with(&format!("{missed} missed firing"))),
        "{facts}"
    );

    // The incremental backup started from the page: the API's run, and its end seen live.
    let inc = &facts["incremental"];
    let run_id = inc["run"].as_i64().expect("the page's run");
    let run = stack.wait_run(run_id).await;
    assert_eq!(run["kind"], "backup", "{run}");
    assert_eq!(run["params"]["type"], "incr", "{run}");
    assert_eq!(run["requested_by"], "user:admin", "{run}");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(inc["ended"]["status"], "succeeded", "{facts}");
    assert_eq!(inc["sameDocument"], true, "{facts}");
    assert!(
        inc["seen"]
            .as_array()
            .is_some_and(|s| s.contains(&json!(format!("{run_id} succeeded -")))),
        "the end as the page showed it: {facts}"
    );
    let after = catalogue_when(&stack, id, main_id, |r| types(r) == ["full", "incr"]).await;
    let shown = facts["after"].as_array().expect("rows after");
    assert_eq!(shown.len(), 2, "{facts}");
    same_backup(&shown[0], &after["backups"][0]);
    same_backup(&shown[1], &after["backups"][1]);
    assert_eq!(
        after["backups"][1]["label"], run["summary"]["backup"]["label"],
        "{run}"
    );
    assert_eq!(shown[1]["prior"], after["backups"][0]["label"], "{facts}");

    // The drill started from the page: its end pushed, then the drills read again by
    // themselves, the latest now the API's latest; any percent the page showed in 0..=100,
    // never going back.
    let page_drill = &facts["pageDrill"];
    assert_eq!(facts["drillForm"]["expanded"], "true", "{facts}");
    assert_eq!(facts["drillForm"]["amcheckDefault"], true, "{facts}");
    let drill_run = stack
        .wait_run(page_drill["run"].as_i64().expect("the page's drill"))
        .await;
    assert_eq!(drill_run["kind"], "backup_drill", "{drill_run}");
    assert_eq!(drill_run["params"]["check_sql"], CHECK_SQL, "{drill_run}");
    assert_eq!(drill_run["params"]["amcheck"], false, "{drill_run}");
    assert_eq!(
        drill_run["params"]["scratch_dir"],
        scratch.display().to_string(),
        "{drill_run}"
    );
    assert_eq!(drill_run["summary"]["check"]["ok"], true, "{drill_run}");
    assert!(drill_run["summary"]["amcheck"].is_null(), "{drill_run}");
    let (_, drills) = stack
        .api(
            Method::GET,
            &format!("api/v1/backups/drills?instance_id={id}"),
            None,
        )
        .await;
    let latest = &drills["drills"][0];
    assert_eq!(page_drill["run"], latest["run_id"], "{facts} {drills}");
    assert_eq!(latest["passed"], true, "{latest}");
    assert_eq!(page_drill["ended"], "succeeded", "{facts}");
    assert_eq!(page_drill["passed"], "true", "{facts}");
    assert_eq!(
        page_drill["rtoSeconds"],
        latest["rto_seconds"].as_f64().expect("rto").to_string(),
        "{facts}"
    );
    assert_eq!(page_drill["sameDocument"], true, "{facts}");
    let percents: Vec<f64> = page_drill["seen"]
        .as_array()
        .expect("seen")
        .iter()
        .filter_map(|s| s.as_str()?.rsplit(' ').next()?.parse().ok())
        .collect();
    assert!(
        percents.iter().all(|p| (0.0..=100.0).contains(p))
            && percents.windows(2).all(|w| w[0] <= w[1]),
        "{facts}"
    );

    // The restore form's refusals: by the form (no request at all), then by the API in its
    // words (the one request), and no run from any of them.
    let invalid = &facts["restoreInvalid"];
    let said = |key: &str, part: &str| {
        assert!(
            invalid[key].as_str().is_some_and(|t| t.contains(part)),
            "{key}: {facts}"
        );
    };
    said("dirError", "absolute path");
    assert_eq!(invalid["dirInvalid"], "true", "{facts}");
    assert!(
        invalid["dirDescribedBy"]
            .as_str()
            .zip(invalid["dirErrorId"].as_str())
            .is_some_and(|(by, id)| by.split(' ').any(|i| i == id)),
        "the error is tied to its field: {facts}"
    );
    said("targetError", "needs a value");
    said("tablespacesAllError", "absolute directory");
    assert_eq!(invalid["tablespacesAllInvalid"], "true", "{facts}");
    said("window", "Recovery window");
    said("windowWarning", "before the recovery window");
    assert_eq!(invalid["reviewShown"], 0, "{facts}");
    assert_eq!(invalid["requests"], 0, "nothing sent: {facts}");
    said("apiError", "\"last-tuesday\" is not a valid xid");
    assert_eq!(invalid["requestsAfterRefusal"], 1, "{facts}");
    assert!(
        facts["restoreDeltaWarning"]
            .as_str()
            .is_some_and(|c| c.contains("warn")),
        "{facts}"
    );

    // The restore from the page: the full backup, to the latest point, into a new directory.
    let restore = &facts["restore"];
    let to_dir = restored_cluster.data_dir.clone();
    let review = facts["restoreReview"].as_str().unwrap_or_default();
    let label = restore["label"].as_str().expect("the full backup's label");
    assert_eq!(label, before["backups"][0]["label"], "{facts}");
    assert!(
        review.contains(&to_dir.display().to_string())
            && review.contains("latest point")
            && review.contains(label)
            && review.contains("without delta")
            && review.contains("left running for inspection")
            && review.contains("every other tablespace below"),
        "{review}"
    );
    let restore_run = stack
        .wait_run(restore["run"].as_i64().expect("the restore run"))
        .await;
    assert_eq!(restore_run["kind"], "backup_restore", "{restore_run}");
    assert_eq!(restore_run["status"], "succeeded", "{restore_run}");
    assert_eq!(restore_run["requested_by"], "user:admin", "{restore_run}");
    assert_eq!(
        restore_run["params"]["to_dir"],
        to_dir.display().to_string(),
        "{restore_run}"
    );
    assert_eq!(restore_run["params"]["set"], label, "{restore_run}");
    let tablespaces_all = restore_run["params"]["tablespace_map_all"]
        .as_str()
        .unwrap_or_default();
    assert!(
        tablespaces_all.ends_with("/tablespaces") && tablespaces_all.starts_with('/'),
        "{restore_run}"
    );
    assert_eq!(restore["ended"], "succeeded", "{facts}");
    assert_eq!(restore["formGone"], 0, "{facts}");
    assert_eq!(
        restore["dir"], restore_run["summary"]["data_directory"],
        "{facts} {restore_run}"
    );
    // Left running for inspection: the page shows its port and socket, and it answers there.
    let started = &restore_run["summary"]["started"];
    let socket = started["socket_directory"].as_str().expect("socket");
    assert_eq!(restore["port"], started["port"].to_string(), "{facts}");
    assert!(
        restore["text"]
            .as_str()
            .is_some_and(|t| t.contains(&to_dir.display().to_string())
                && t.contains(socket)
                && t.contains(&format!("port {}", started["port"]))),
        "{facts}"
    );
    assert!(to_dir.join("PG_VERSION").is_file(), "{restore_run}");
    let client = connect_restored(started).await;
    drop(client);
    let stopped = restored_cluster.stop();
    assert!(stopped.status.success(), "{stopped:?}");
    assert!(!to_dir.join("postmaster.pid").exists(), "stopped");
    let restore_runs: i64 = stack
        .store()
        .await
        .query_one(
            "SELECT count(*) FROM runs WHERE instance_id = $1 AND kind = 'backup_restore'",
            &[&id],
        )
        .await
        .expect("restore runs")
        .get(0);
    assert_eq!(restore_runs, 1, "only the valid restore made a run");

    // The stuck backup: running with a bar and the agent's progress reports, the second
    // refused with the API's reason, cancelled from the page.
    let stuck_run = &facts["stuck"];
    let stuck_run_id = stuck_run["run"].as_i64().expect("the stuck run");
    assert!(stuck_run["progressAt"].is_string(), "{facts}");
    // pgBackRest 2.45 gives no percent while a backup waits for its last WAL segment: the
    // bar is then indeterminate (no aria-valuenow).
    assert!(
        stuck_run["valueNow"].is_null()
            || stuck_run["valueNow"]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| (0.0..=100.0).contains(&v)),
        "{facts}"
    );
    assert_eq!(stuck_run["progressbars"], 1, "{facts}");
    assert!(
        stuck_run["running"]
            .as_str()
            .is_some_and(|t| t.contains("full backup") && t.contains("stanza stuck")),
        "{facts}"
    );
    assert!(
        stuck_run["refusal"]
            .as_str()
            .is_some_and(|t| t.contains("is being backed up by")
                && t.contains(&format!("backup run {stuck_run_id}"))),
        "{facts}"
    );
    assert_eq!(stuck_run["ended"], "cancelled", "{facts}");
    assert_eq!(stuck_run["stillRunning"], 0, "{facts}");
    let cancelled = stack.wait_run(stuck_run_id).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(
        pgbackrest_of("stuck"),
        0,
        "no pgBackRest of the stuck stanza left"
    );

    // The viewer: the same catalogue, no button.
    assert_eq!(facts["viewer"]["rows"], 2, "{facts}");
    assert_eq!(facts["viewer"]["buttons"], json!([]), "{facts}");
    assert_eq!(facts["viewer"]["actionGroups"], 0, "{facts}");
    assert_eq!(facts["viewer"]["forms"], 0, "{facts}");
    assert_eq!(
        facts["axeMinor"],
        json!([]),
        "not even a minor violation: {facts}"
    );
    let axe = facts["axe"].as_object().expect("axe");
    for page in [
        "backups-admin",
        "backups-drill-form",
        "backups-restore-errors",
        "backups-restore-review",
        "backups-viewer",
    ] {
        assert_eq!(axe[page]["serious"], 0, "{page}: {facts}");
    }
    for shot in [
        "backups-admin",
        "backups-after-incremental",
        "backups-running",
        "backups-restore-invalid",
        "backups-restore-review",
        "backups-restored",
        "backups-viewer",
    ] {
        let path = artifacts.join(format!("{shot}.png"));
        assert!(path.is_file(), "screenshot {}", path.display());
    }
}
