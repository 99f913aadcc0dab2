//! Restores, restore drills, cancel and faults of pgBackRest through the real binaries
//! (issue 17, docs/BACKUPS.md "Restore", "Restore drills", "Faults"), with pgBackRest 2.45 on
//! harness clusters:
//! - point in time: insert A, note the server's time, its WAL position and a restore point,
//!   insert B, switch WAL; restores to the time, the LSN and the restore point each find A and
//!   not B; a delta restore to the latest point over the stopped copy finds both;
//! - refusals: a non-empty directory, the monitored server's data directory, a running copy;
//! - drills: one passes on a good backup (restore time, data window, check query, amcheck),
//!   one fails with pgBackRest's reason after the test damages a file of the backup; the
//!   scratch copy is gone both times; the drill list shows both to a viewer;
//! - a running backup's progress (API, CLI), a second backup of its stanza refused, the
//!   backup cancelled cleanly (its lock released);
//! - the agent killed during a backup: pgBackRest stops with it, the run ends failed, the next
//!   command is not blocked;
//! - faults with pgBackRest's own text: not on PATH, archiving off, an unwritable repository,
//!   a stanza of another cluster;
//! - user and viewer refused on the restore and drill routes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lasect_e2e::Stack;
use lasect_testkit::{PgCluster, PgOptions};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::pgbackrest_files::{
    archiving_cluster, backup_run, connect_restored, create_stanza, full_backup, give_to_server,
    pgbackrest_of,
};
use crate::support::users::with_role;

const AGENT_ID: &str = "restore-agent";

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(90), "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The tags of table `pitr` in the restored cluster the run's summary names; then stops it.
async fn tags_of_restored(cluster: &PgCluster, run: &Value) -> Vec<String> {
    assert_eq!(run["status"], "succeeded", "{run}");
    let started = &run["summary"]["started"];
    let client = connect_restored(started).await;
    let tags: Vec<String> = client
        .query("SELECT tag FROM pitr ORDER BY tag", &[])
        .await
        .expect("pitr rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    drop(client);
    stop_restored(
        cluster,
        run["summary"]["data_directory"].as_str().expect("dir"),
    );
    tags
}

fn stop_restored(cluster: &PgCluster, data_dir: &str) {
    let out = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(cluster.bindir().join("pg_ctl"))
        .args(["stop", "-w", "-m", "fast", "-D", data_dir])
        .output()
        .expect("pg_ctl stop");
    assert!(out.status.success(), "{out:?}");
}

/// The scratch copies a drill left in `dir`.
fn drill_leftovers(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("scratch dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect()
}

fn start_agent(stack: &Stack, env: &[(&str, &str)]) -> lasect_testkit::ChildGuard {
    let mut agent = stack.start_agent(env);
    agent
        .wait_for_line("Control stream open", Duration::from_secs(60))
        .expect("control stream");
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_drills_cancel_and_faults_through_the_agent() {
    let _pgbackrest = crate::support::pgbackrest().await;
    let archiving = archiving_cluster("lasect-restore-");
    let (dir, repo, archived) = (&archiving.dir, &archiving.repo, &archiving.cluster);
    let plain = PgCluster::start(PgOptions::default()).expect("plain cluster");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).expect("dir");
    give_to_server(archived, &scratch);

    let stack = Stack::new(AGENT_ID).await;
    let _api = stack.start_api();
    let _ingest = stack.start_ingest(&stack.secrets_toml());
    // `pgbackrest`: the agent's [control.pgbackrest] section.
    let agent_toml = |pgbackrest: &str| {
        format!(
            "[collect]\ninterval_secs = 5\n[control]\nallow = [\"sql\", \"backup\", \"restore\"]\n\
             [control.pgbackrest]\n{pgbackrest}\n\
             [[instances]]\nname = \"archived\"\ndsn = \"{}\"\n\
             [[instances]]\nname = \"plain\"\ndsn = \"{}\"\n",
            archived.dsn("postgres"),
            plain.dsn("postgres")
        )
    };
    // pgBackRest runs through a prefix of the test's: as the database user, like the agent's
    // own default, but a restore waits while `gate` is missing.
    let gate = dir.path().join("gate");
    std::fs::write(&gate, "").expect("gate");
    let wrapper = dir.path().join("as-postgres.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nuser=$1\nshift\ncase \" $* \" in *\" restore \"*)\n  \
             while [ ! -e '{}' ]; do sleep 0.1; done;;\nesac\nexec runuser -u \"$user\" -- \"$@\"\n",
            gate.display()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    stack.agent_config(
        stack.ingest_port,
        &agent_toml(&format!(
            "run_as = [\"{}\", \"{{user}}\"]",
            wrapper.display()
        )),
    );
    let mut agent = start_agent(&stack, &[]);
    let id = stack.instance_id("archived").await;
    let plain_id = stack.instance_id("plain").await;
    let viewer = with_role(&stack, "vic", "viewer").await;
    let user = with_role(&stack, "ulla", "user").await;
    let repos = format!("api/v1/instances/{id}/backup/repositories");
    let main = format!(
        "{repos}/{}",
        archiving.add_main_repository(&stack, id, json!({})).await
    );
    create_stanza(&stack, &main).await;
    let full = full_backup(&stack, &main).await;

    // A, then the points to come back to (the server's clock, its WAL position, a named
    // restore point), then B, all of it archived.
    let db = archived.connect("postgres").await.expect("connect");
    // pgBackRest restores to a time from the newest backup that stopped before it, to the
    // second: the point noted below must be in a later second than the backup's end.
    let stop = full["summary"]["backup"]["stop"]
        .as_f64()
        .expect("stop time");
    loop {
        let now: f64 = db
            .query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])
            .await
            .expect("clock")
            .get(0);
        if now >= stop + 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    db.batch_execute("CREATE TABLE pitr (tag text PRIMARY KEY)")
        .await
        .expect("pitr");
    // A and B each in a transaction of its own: the xid targets.
    let xid_a: i64 = db
        .query_one(
            "INSERT INTO pitr VALUES ('A') RETURNING txid_current()",
            &[],
        )
        .await
        .expect("A")
        .get(0);
    let row = db
        .query_one(
            "SELECT clock_timestamp()::text, pg_current_wal_insert_lsn()::text, \
             pg_create_restore_point('lasect_after_a')::text",
            &[],
        )
        .await
        .expect("points");
    let (time_a, lsn_a): (String, String) = (row.get(0), row.get(1));
    let xid_b: i64 = db
        .query_one(
            "INSERT INTO pitr VALUES ('B') RETURNING txid_current()",
            &[],
        )
        .await
        .expect("B")
        .get(0);
    assert!(xid_b > xid_a, "{xid_a} {xid_b}");
    let segment: String = db
        .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
        .await
        .expect("switch")
        .get(0);
    let start = std::time::Instant::now();
    loop {
        let archived_wal: Option<String> = db
            .query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[])
            .await
            .expect("archiver")
            .get(0);
        if archived_wal.is_some_and(|w| w >= segment) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{segment} never archived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // To the time, to the LSN, to the restore point, to A's transaction (inclusive): A and
    // not B.
    let restore = format!("{main}/restore?wait=120");
    let to_time = dir.path().join("to-time");
    let xid_a = xid_a.to_string();
    for (name, target_type, target) in [
        ("to-time", "time", time_a.as_str()),
        ("to-lsn", "lsn", lsn_a.as_str()),
        ("to-name", "name", "lasect_after_a"),
        ("to-xid", "xid", xid_a.as_str()),
    ] {
        let run = backup_run(
            &stack,
            &restore,
            Some(json!({
                "to_dir": dir.path().join(name).display().to_string(),
                "target_type": target_type,
                "target": target,
                "start": true,
            })),
        )
        .await;
        assert_eq!(
            tags_of_restored(archived, &run).await,
            ["A"],
            "{target_type} {target}: {run}"
        );
    }
    // To B's transaction, exclusive: recovery stops just before B commits, so A and not B.
    // This restore's progress is watched: the agent's run_as prefix holds pgBackRest's
    // restore until the test has seen the run report it.
    std::fs::remove_file(&gate).expect("close the gate");
    let (status, watched) = stack
        .api(
            Method::POST,
            &format!("{main}/restore?wait=0"),
            Some(json!({
                "to_dir": dir.path().join("to-xid-exclusive").display().to_string(),
                "target_type": "xid",
                "target": xid_b.to_string(),
                "target_exclusive": true,
                "start": true,
            })),
        )
        .await;
    assert_eq!(status, 202, "{watched}");
    let running = format!("api/v1/backups/running?instance_id={id}");
    let mut seen: Vec<f64> = Vec::new();
    let start = std::time::Instant::now();
    loop {
        let (status, body) = stack.api_as(&viewer, Method::GET, &running, None).await;
        assert_eq!(status, 200, "{body}");
        let this = body["backups"]
            .as_array()
            .and_then(|all| all.iter().find(|b| b["run_id"] == watched["id"]).cloned());
        if let Some(p) = this.filter(|b| b["stage"] == "restore") {
            assert_eq!(p["kind"], "backup_restore", "{p}");
            assert_eq!(p["status"], "running", "{p}");
            seen.push(p["percent"].as_f64().unwrap_or_else(|| panic!("{p}")));
            assert!(p["bytes_total"].as_i64().unwrap_or(0) > 0, "{p}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the restore never reported progress: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = stack.cli(&["backup", "progress", "-i", "archived"]);
    assert!(
        shown.contains("backup_restore") && shown.contains("restore"),
        "{shown}"
    );
    std::fs::write(&gate, "").expect("open the gate");
    loop {
        let (_, body) = stack.api_as(&viewer, Method::GET, &running, None).await;
        let Some(p) = body["backups"]
            .as_array()
            .and_then(|all| all.iter().find(|b| b["run_id"] == watched["id"]).cloned())
        else {
            break;
        };
        if let Some(percent) = p["percent"].as_f64() {
            seen.push(percent);
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the restore never ended: {p}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exclusive = stack.wait_run(watched["id"].as_i64().expect("id")).await;
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "the percent went back: {seen:?}"
    );
    let last: Value = stack
        .store()
        .await
        .query_one(
            "SELECT progress FROM runs WHERE id = $1",
            &[&watched["id"].as_i64().expect("id")],
        )
        .await
        .expect("the run's progress")
        .get(0);
    assert_eq!(last["stage"], "done", "{last}");
    assert_eq!(last["percent"], 100.0, "{last}");
    assert!(
        seen.iter().all(|p| *p <= 100.0) && seen.first().is_some_and(|p| *p < 100.0),
        "{seen:?}"
    );
    assert_eq!(
        tags_of_restored(archived, &exclusive).await,
        ["A"],
        "xid {xid_b} exclusive: {exclusive}"
    );
    // Through the CLI, not left running: recovered, promoted and stopped cleanly.
    let main_repo = main.rsplit('/').next().expect("repository id").to_owned();
    let by_cli = dir.path().join("by-cli");
    let shown = stack.cli(&[
        "backup",
        "restore",
        "-i",
        "archived",
        "--repo",
        &main_repo,
        "--to-dir",
        &by_cli.display().to_string(),
        "--target-name",
        "lasect_after_a",
    ]);
    assert!(
        shown.contains("succeeded") && shown.contains("restored into"),
        "{shown}"
    );
    assert!(by_cli.join("PG_VERSION").is_file(), "{shown}");
    assert!(
        !by_cli.join("postmaster.pid").exists(),
        "the copy was stopped: {shown}"
    );
    let control = std::process::Command::new(archived.bindir().join("pg_controldata"))
        .arg(&by_cli)
        .output()
        .expect("pg_controldata");
    let control = String::from_utf8_lossy(&control.stdout);
    assert!(control.contains("shut down"), "{control}");
    // Over the stopped copy, with delta, to the latest point: both.
    let latest = backup_run(
        &stack,
        &restore,
        Some(json!({"to_dir": to_time.display().to_string(), "delta": true, "start": true})),
    )
    .await;
    assert_eq!(
        tags_of_restored(archived, &latest).await,
        ["A", "B"],
        "{latest}"
    );

    // Refused: a full directory without delta, the monitored server's own data directory,
    // a copy that runs.
    let full_dir = backup_run(
        &stack,
        &restore,
        Some(json!({"to_dir": to_time.display().to_string()})),
    )
    .await;
    assert_eq!(full_dir["status"], "failed", "{full_dir}");
    assert!(
        full_dir["error"]
            .as_str()
            .unwrap_or("")
            .contains("not empty"),
        "{full_dir}"
    );
    let live = backup_run(
        &stack,
        &restore,
        Some(json!({"to_dir": archived.data_dir().display().to_string(), "delta": true})),
    )
    .await;
    assert_eq!(live["status"], "failed", "{live}");
    assert!(
        live["error"]
            .as_str()
            .unwrap_or("")
            .contains("running server"),
        "{live}"
    );
    let running = backup_run(
        &stack,
        &restore,
        Some(json!({"to_dir": to_time.display().to_string(), "delta": true, "start": true})),
    )
    .await;
    assert_eq!(running["status"], "succeeded", "{running}");
    let again = backup_run(
        &stack,
        &restore,
        Some(json!({"to_dir": to_time.display().to_string(), "delta": true})),
    )
    .await;
    assert_eq!(again["status"], "failed", "{again}");
    assert!(
        again["error"].as_str().unwrap_or("").contains("is running"),
        "{again}"
    );
    stop_restored(archived, &to_time.display().to_string());
    let (status, bad) = stack
        .api(
            Method::POST,
            &restore,
            Some(json!({"to_dir": "/srv/x", "target_type": "lsn", "target": "0/zz"})),
        )
        .await;
    assert_eq!(status, 422, "{bad}");

    // A drill on the good backup passes, measured, and leaves nothing behind.
    let drills = format!("{main}/drills?wait=120");
    let passed = backup_run(
        &stack,
        &drills,
        Some(json!({
            "check_sql": "SELECT count(*) AS rows FROM pitr",
            "scratch_dir": scratch.display().to_string(),
        })),
    )
    .await;
    assert_eq!(passed["status"], "succeeded", "{passed}");
    let s = &passed["summary"];
    assert_eq!(s["passed"], true, "{passed}");
    assert!(s["rto_seconds"].as_f64().unwrap_or(0.0) > 0.0, "{passed}");
    assert!(s["rpo_seconds"].as_f64().is_some(), "{passed}");
    assert_eq!(s["check"]["rows"][0]["rows"], 2, "{passed}");
    assert_eq!(s["amcheck"]["ran"], true, "{passed}");
    assert!(
        s["amcheck"]["indexes"].as_u64().unwrap_or(0) > 0,
        "{passed}"
    );
    assert_eq!(drill_leftovers(&scratch), Vec::<PathBuf>::new());

    // A damaged file of the backup: the drill fails with pgBackRest's reason.
    let label = full["summary"]["backup"]["label"].as_str().expect("label");
    let base = repo.join("backup/main").join(label).join("pg_data/base");
    let victim = walk(&base)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a file of the backup");
    let mut bytes = std::fs::read(&victim).expect("read");
    let middle = bytes.len() / 2;
    let end = (middle + 64).min(bytes.len());
    for b in &mut bytes[middle..end] {
        *b = !*b;
    }
    std::fs::write(&victim, bytes).expect("damage");
    let failed = backup_run(
        &stack,
        &drills,
        Some(json!({"scratch_dir": scratch.display().to_string()})),
    )
    .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let reason = failed["error"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("drill failed: restore: pgBackRest restore failed"),
        "{failed}"
    );
    assert!(
        reason.contains("ERROR: ["),
        "pgBackRest's own text: {failed}"
    );
    assert_eq!(drill_leftovers(&scratch), Vec::<PathBuf>::new());
    // The drills as a viewer sees them: newest first, the reason, never the check's rows.
    let (status, list) = stack
        .api_as(
            &viewer,
            Method::GET,
            &format!("api/v1/backups/drills?instance_id={id}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    let listed = list["drills"].as_array().expect("drills");
    assert_eq!(listed.len(), 2, "{list}");
    assert_eq!(listed[0]["passed"], false, "{list}");
    assert!(
        listed[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("ERROR: ["),
        "{list}"
    );
    assert_eq!(listed[1]["passed"], true, "{list}");
    assert!(listed[1]["rto_seconds"].as_f64().is_some(), "{list}");
    assert!(!list.to_string().contains("\"rows\""), "{list}");
    let cli = stack.cli(&["backup", "drill", "list", "-i", "archived"]);
    assert!(cli.contains("true") && cli.contains("false"), "{cli}");

    // A tablespace: a restore must map it away from the running server's, and then finds
    // its rows where it was told to put them.
    let live_ts = dir.path().join("ts-live");
    std::fs::create_dir(&live_ts).expect("tablespace dir");
    give_to_server(archived, &live_ts);
    db.batch_execute(&format!(
        "CREATE TABLESPACE archive LOCATION '{}'",
        live_ts.display()
    ))
    .await
    .expect("tablespace");
    db.batch_execute(
        "CREATE TABLE kept (n int) TABLESPACE archive; \
         INSERT INTO kept SELECT generate_series(1, 100)",
    )
    .await
    .expect("a table in it");
    let with_ts = backup_run(
        &stack,
        &format!("{main}/backups?wait=120"),
        Some(json!({"type": "full"})),
    )
    .await;
    assert_eq!(with_ts["status"], "succeeded", "{with_ts}");
    let unmapped = backup_run(
        &stack,
        &restore,
        Some(json!({"to_dir": dir.path().join("ts-unmapped").display().to_string()})),
    )
    .await;
    assert_eq!(unmapped["status"], "failed", "{unmapped}");
    assert!(
        unmapped["error"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("archive ({})", live_ts.display())),
        "{unmapped}"
    );
    assert!(
        !dir.path().join("ts-unmapped").exists(),
        "a refused restore leaves no directory"
    );
    let into_live = backup_run(
        &stack,
        &restore,
        Some(json!({
            "to_dir": dir.path().join("ts-into-live").display().to_string(),
            "tablespace_map": [{"name": "archive", "path": live_ts.join("again").display().to_string()}],
        })),
    )
    .await;
    assert_eq!(into_live["status"], "failed", "{into_live}");
    assert!(
        into_live["error"]
            .as_str()
            .unwrap_or("")
            .contains("inside tablespace archive"),
        "{into_live}"
    );
    let used = dir.path().join("ts-used");
    std::fs::create_dir(&used).expect("dir");
    std::fs::write(used.join("something"), "kept").expect("file");
    let full_ts = backup_run(
        &stack,
        &restore,
        Some(json!({
            "to_dir": dir.path().join("ts-full").display().to_string(),
            "tablespace_map": [{"name": "archive", "path": used.display().to_string()}],
        })),
    )
    .await;
    assert_eq!(full_ts["status"], "failed", "{full_ts}");
    assert!(
        full_ts["error"]
            .as_str()
            .unwrap_or("")
            .contains("not empty"),
        "{full_ts}"
    );
    let (status, bad) = stack
        .api(
            Method::POST,
            &restore,
            Some(
                json!({"to_dir": "/srv/x", "tablespace_map": [{"name": "a=b", "path": "/srv/t"}]}),
            ),
        )
        .await;
    assert_eq!(status, 422, "{bad}");
    // Every tablespace below one directory, started: the rows are there, read from it.
    let all_ts = dir.path().join("ts-all");
    let mapped = backup_run(
        &stack,
        &restore,
        Some(json!({
            "to_dir": dir.path().join("ts-restored").display().to_string(),
            "tablespace_map_all": all_ts.display().to_string(),
            "start": true,
        })),
    )
    .await;
    assert_eq!(mapped["status"], "succeeded", "{mapped}");
    let started = &mapped["summary"]["started"];
    let copy_dsn = format!(
        "host={} port={} user=postgres dbname=postgres",
        started["socket_directory"].as_str().expect("socket"),
        started["port"]
    );
    let (copy, conn) = tokio_postgres::connect(&copy_dsn, tokio_postgres::NoTls)
        .await
        .expect("connect to the restored copy");
    tokio::spawn(conn);
    let row = copy
        .query_one(
            "SELECT (SELECT count(*) FROM kept), \
             pg_tablespace_location((SELECT oid FROM pg_tablespace WHERE spcname = 'archive'))",
            &[],
        )
        .await
        .expect("kept rows");
    assert_eq!(row.get::<_, i64>(0), 100);
    assert_eq!(
        row.get::<_, String>(1),
        all_ts.join("archive").display().to_string()
    );
    drop(copy);
    stop_restored(
        archived,
        mapped["summary"]["data_directory"].as_str().expect("dir"),
    );
    // By name, through the CLI.
    let by_name = dir.path().join("ts-by-name");
    let shown = stack.cli(&[
        "backup",
        "restore",
        "-i",
        "archived",
        "--repo",
        &main_repo,
        "--to-dir",
        &dir.path().join("ts-cli").display().to_string(),
        "--tablespace-map",
        &format!("archive={}", by_name.display()),
    ]);
    assert!(shown.contains("succeeded"), "{shown}");
    let restored_files = walk(&by_name);
    assert!(
        restored_files
            .iter()
            .any(|p| p.to_string_lossy().contains("PG_")),
        "{shown}: {restored_files:?}"
    );

    // A backup that waits for WAL which never reaches its repository (the server archives
    // into `main`'s): the catalogue shows it running with its progress; cancel stops it and
    // releases its lock.
    let stuck = archiving.add_stuck_repository(&stack, id).await;
    let (status, waiting) = stack
        .api(
            Method::POST,
            &format!("{stuck}/backups?wait=0"),
            Some(json!({"type": "full"})),
        )
        .await;
    assert_eq!(status, 202, "{waiting}");
    until("the stuck backup never started", || {
        pgbackrest_of("stuck") > 0
    })
    .await;
    // Its progress, as the agent reports it from pgBackRest, and a second backup refused.
    let running = format!("api/v1/backups/running?instance_id={id}");
    let start = std::time::Instant::now();
    let progress = loop {
        let (status, body) = stack.api_as(&viewer, Method::GET, &running, None).await;
        assert_eq!(status, 200, "{body}");
        let this = body["backups"]
            .as_array()
            .and_then(|all| all.iter().find(|b| b["run_id"] == waiting["id"]).cloned());
        if let Some(b) = this.filter(|b| !b["progress_at"].is_null()) {
            break b;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no progress reported: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(progress["status"], "running", "{progress}");
    // pgBackRest 2.45 gives a percent while it copies files (a tiny cluster's take less than a
    // report's interval), none while it waits for the last WAL segment, as here.
    assert!(
        progress["percent"].is_null()
            || progress["percent"]
                .as_f64()
                .is_some_and(|p| (0.0..=100.0).contains(&p)),
        "{progress}"
    );
    let shown = stack.cli(&["backup", "progress", "-i", "archived"]);
    assert!(
        shown.contains("stuck") && shown.contains("running"),
        "{shown}"
    );
    let (status, second) = stack
        .api(
            Method::POST,
            &format!("{stuck}/backups?wait=0"),
            Some(json!({"type": "incr"})),
        )
        .await;
    assert_eq!(status, 409, "{second}");
    let lock_held = |info: &Value| info["summary"]["status"]["lock"]["backup"]["held"].clone();
    let during = backup_run(&stack, &format!("{stuck}/info?wait=120"), None).await;
    assert_eq!(lock_held(&during), true, "{during}");
    let (status, body) = stack
        .api(
            Method::POST,
            &format!("api/v1/runs/{}/cancel", waiting["id"]),
            None,
        )
        .await;
    assert!(status == 200 || status == 202, "{status} {body}");
    let cancelled = stack.wait_run(waiting["id"].as_i64().expect("id")).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(pgbackrest_of("stuck"), 0, "pgBackRest was left running");
    let after = backup_run(&stack, &format!("{stuck}/info?wait=120"), None).await;
    assert_eq!(lock_held(&after), false, "{after}");

    // The agent killed during a backup: pgBackRest goes with it, the run ends failed once
    // the agent is back, and nothing blocks the next command.
    let (status, orphan) = stack
        .api(
            Method::POST,
            &format!("{stuck}/backups?wait=0"),
            Some(json!({"type": "full"})),
        )
        .await;
    assert_eq!(status, 202, "{orphan}");
    until("the second stuck backup never started", || {
        pgbackrest_of("stuck") > 0
    })
    .await;
    agent.kill();
    until("pgBackRest outlived the agent", || {
        pgbackrest_of("stuck") == 0
    })
    .await;
    // Back without pgBackRest on its PATH: the next command says so.
    let mut agent = start_agent(&stack, &[("PATH", "/usr/sbin:/sbin")]);
    let lost = stack.wait_run(orphan["id"].as_i64().expect("id")).await;
    assert_eq!(lost["status"], "failed", "{lost}");
    let missing = backup_run(&stack, &format!("{stuck}/info?wait=120"), None).await;
    assert_eq!(missing["status"], "failed", "{missing}");
    assert!(
        missing["error"]
            .as_str()
            .unwrap_or("")
            .contains("pgBackRest is not installed on this host or not on the agent's PATH"),
        "{missing}"
    );
    agent.kill();
    // A configured pgBackRest that is no program: the run names the setting.
    let not_a_program = dir.path().join("pgbackrest-copy");
    std::fs::write(&not_a_program, "not a program").expect("write");
    stack.agent_config(
        stack.ingest_port,
        &agent_toml(&format!("command = \"{}\"", not_a_program.display())),
    );
    let mut agent = start_agent(&stack, &[]);
    let refused = backup_run(&stack, &format!("{stuck}/info?wait=120"), None).await;
    assert_eq!(refused["status"], "failed", "{refused}");
    assert!(
        refused["error"].as_str().unwrap_or("").contains(&format!(
            "the pgBackRest command {} is not an executable file ([control.pgbackrest] command)",
            not_a_program.display()
        )),
        "{refused}"
    );
    agent.kill();
    // From here on pgBackRest (and pg_ctl) run through a configured prefix, the one the agent
    // would choose by itself as root.
    stack.agent_config(
        stack.ingest_port,
        &agent_toml(
            "command = \"/usr/bin/pgbackrest\"\nrun_as = [\"runuser\", \"-u\", \"{user}\", \"--\"]",
        ),
    );
    let _agent = start_agent(&stack, &[]);
    let unlocked = backup_run(&stack, &format!("{stuck}/info?wait=120"), None).await;
    assert_eq!(lock_held(&unlocked), false, "{unlocked}");

    // Faults carry pgBackRest's own text: archiving off, a repository the database user
    // cannot write, a stanza that belongs to another cluster.
    let plain_repos = format!("api/v1/instances/{plain_id}/backup/repositories");
    let plain_repo = dir.path().join("plain-repo");
    std::fs::create_dir(&plain_repo).expect("repo dir");
    give_to_server(&plain, &plain_repo);
    let fault =
        |stanza: &str, path: &Path| json!({"stanza": stanza, "path": path.display().to_string()});
    let (status, unarchived) = stack
        .api(
            Method::POST,
            &plain_repos,
            Some(fault("plain", &plain_repo)),
        )
        .await;
    assert_eq!(status, 201, "{unarchived}");
    let unarchived = format!("{plain_repos}/{}", unarchived["id"]);
    create_stanza(&stack, &unarchived).await;
    let no_archive = backup_run(
        &stack,
        &format!("{unarchived}/backups?wait=120"),
        Some(json!({"type": "full"})),
    )
    .await;
    assert_eq!(no_archive["status"], "failed", "{no_archive}");
    assert!(
        no_archive["error"]
            .as_str()
            .unwrap_or("")
            .contains("archive_mode must be enabled"),
        "{no_archive}"
    );
    let readonly = dir.path().join("readonly-repo");
    std::fs::create_dir(&readonly).expect("repo dir");
    let (status, unwritable) = stack
        .api(
            Method::POST,
            &plain_repos,
            Some(fault("readonly", &readonly)),
        )
        .await;
    assert_eq!(status, 201, "{unwritable}");
    let refused = backup_run(
        &stack,
        &format!("{plain_repos}/{}/stanza?wait=120", unwritable["id"]),
        Some(json!({"action": "create"})),
    )
    .await;
    assert_eq!(refused["status"], "failed", "{refused}");
    let error = refused["error"].as_str().unwrap_or("");
    assert!(
        error.contains("ERROR: [") && error.contains("Permission denied"),
        "{refused}"
    );
    let (status, foreign) = stack
        .api(Method::POST, &plain_repos, Some(fault("main", repo)))
        .await;
    assert_eq!(status, 201, "{foreign}");
    let mismatch = backup_run(
        &stack,
        &format!("{plain_repos}/{}/stanza?wait=120", foreign["id"]),
        Some(json!({"action": "create"})),
    )
    .await;
    assert_eq!(mismatch["status"], "failed", "{mismatch}");
    assert!(
        mismatch["error"]
            .as_str()
            .unwrap_or("")
            .contains("ERROR: [028]"),
        "{mismatch}"
    );

    // Only the instance's admins restore and drill; viewers and users read the drills.
    for token in [&viewer, &user] {
        for (path, body) in [
            (format!("{main}/restore"), json!({"to_dir": "/srv/x"})),
            (format!("{main}/drills"), json!({})),
        ] {
            let (status, body) = stack.api_as(token, Method::POST, &path, Some(body)).await;
            assert_eq!(status, 403, "{path}: {body}");
        }
        let (status, seen) = stack
            .api_as(
                token,
                Method::GET,
                &format!("api/v1/runs/{}", passed["id"]),
                None,
            )
            .await;
        if status == 200 {
            assert!(
                seen["summary"].is_null() && seen["params"].is_null(),
                "{seen}"
            );
        }
    }
    let (status, body) = stack
        .api(Method::GET, "api/v1/backups/drills?instance_id=0", None)
        .await;
    assert_eq!(status, 400, "{body}");
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d)
            .expect("read dir")
            .filter_map(Result::ok)
        {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
