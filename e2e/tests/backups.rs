//! Backups with pgBackRest through the real binaries (issue 17, docs/BACKUPS.md): a repository
//! registered through the API (secrets encrypted, never shown; an encrypted repository's
//! passphrase reaches pgBackRest but never a run's stored parameters), a stanza created and checked on
//! a cluster archiving with pgBackRest (and check's clear error on a cluster with
//! archive_mode=off), a full then an incremental backup, the catalogue listing both with
//! sizes, a second concurrent backup of one stanza refused, a running pgBackRest cancelled (SIGTERM,
//! nothing left running), the CLI's `backup repo list` and `backup list`, and `user`/`viewer`
//! refused on every backup route and run. Needs pgBackRest (`scripts/deps.sh --test` installs it).

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use lasect_e2e::Stack;
use lasect_testkit::{PgCluster, PgOptions};
use reqwest::Method;
use serde_json::json;

use crate::support::pgbackrest_files::{
    archiving_cluster, backup_run, create_stanza, give_to_server, pgbackrest_of, require_pgbackrest,
};
use crate::support::users::with_role;

const AGENT_ID: &str = "backups-agent";
const PASSPHRASE: &str = "correct-horse-battery-staple-cipher";
const SECRET_KEY: &str = "s3-secret-key-never-shown-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbackrest_backups_through_the_agent() {
    let _pgbackrest = crate::support::pgbackrest().await;
    require_pgbackrest();

    let archiving = archiving_cluster("lasect-backups-");
    let (dir, config, repo, archived) = (
        &archiving.dir,
        &archiving.config,
        &archiving.repo,
        &archiving.cluster,
    );
    let plain = PgCluster::start(PgOptions::default()).expect("plain cluster");

    let stack = Stack::new(AGENT_ID).await;
    let _api = stack.start_api();
    let _ingest = stack.start_ingest(&stack.secrets_toml());
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 5\n[control]\nallow = [\"sql\", \"backup\"]\n\
             [[instances]]\nname = \"archived\"\ndsn = \"{}\"\n\
             [[instances]]\nname = \"plain\"\ndsn = \"{}\"\n",
            archived.dsn("postgres"),
            plain.dsn("postgres")
        ),
    );
    let mut agent = stack.start_agent(&[]);
    agent
        .wait_for_line("Control stream open", Duration::from_secs(60))
        .expect("control stream");
    let archived_id = stack.instance_id("archived").await;
    let plain_id = stack.instance_id("plain").await;
    let viewer = with_role(&stack, "vera", "viewer").await;
    let user = with_role(&stack, "uma", "user").await;
    let repos = format!("api/v1/instances/{archived_id}/backup/repositories");

    // Repositories: admin adds, secrets are stored encrypted and never shown.
    let main_id = archiving
        .add_main_repository(&stack, archived_id, json!({"retention_full": 2}))
        .await;
    let (status, secret) = stack
        .api(
            Method::POST,
            &repos,
            Some(json!({
                "stanza": "offsite",
                "repo_type": "s3",
                "path": "/lasect",
                "bucket": "backups",
                "region": "eu-west-1",
                "endpoint": "s3.example.net",
                "key_id": "AKIAEXAMPLE",
                "secret_key": SECRET_KEY,
                "cipher_type": "aes-256-cbc",
                "cipher_pass": PASSPHRASE,
            })),
        )
        .await;
    assert_eq!(status, 201, "{secret}");
    assert_eq!(secret["has_cipher_pass"], true, "{secret}");
    assert_eq!(secret["has_secret_key"], true, "{secret}");
    let (status, dup) = stack
        .api(
            Method::POST,
            &repos,
            Some(json!({"stanza": "main", "path": "/elsewhere"})),
        )
        .await;
    assert_eq!(status, 409, "{dup}");
    let (status, bad) = stack
        .api(
            Method::POST,
            &repos,
            Some(json!({"stanza": "x", "path": "/r", "cipher_type": "aes-256-cbc"})),
        )
        .await;
    assert_eq!(status, 422, "a cipher without passphrase: {bad}");
    for token in [&viewer, &user] {
        let (status, list) = stack.api_as(token, Method::GET, &repos, None).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["repositories"].as_array().map(Vec::len), Some(2));
        let shown = list.to_string();
        assert!(
            !shown.contains(PASSPHRASE) && !shown.contains(SECRET_KEY),
            "{shown}"
        );
    }
    let store = stack.store().await;
    let stored: Vec<u8> = store
        .query_one(
            "SELECT cipher_pass_ciphertext || secret_key_ciphertext FROM backup_repositories \
             WHERE stanza = 'offsite'",
            &[],
        )
        .await
        .expect("ciphertexts")
        .get(0);
    let stored = String::from_utf8_lossy(&stored);
    assert!(
        !stored.contains(PASSPHRASE) && !stored.contains(SECRET_KEY),
        "secrets are encrypted at rest"
    );
    // Runs on object stores: e2e/tests/backups_object_store.rs.

    // Stanza create and check on the archiving cluster.
    let created = create_stanza(&stack, &format!("{repos}/{main_id}")).await;
    let stanza_path = format!("{repos}/{main_id}/stanza?wait=120");
    let checked = backup_run(&stack, &stanza_path, Some(json!({"action": "check"}))).await;
    assert_eq!(checked["status"], "succeeded", "{checked}");
    let meta = std::fs::metadata(config).expect("the persistent config");
    assert_eq!(meta.mode() & 0o777, 0o600, "the config is private");

    // An encrypted repository: ingest hands the passphrase to the agent, the run's stored
    // parameters never hold it, and pgBackRest's files in the repository are encrypted.
    let sealed_repo = dir.path().join("sealed-repo");
    std::fs::create_dir(&sealed_repo).expect("repo dir");
    give_to_server(archived, &sealed_repo);
    let (status, sealed) = stack
        .api(
            Method::POST,
            &repos,
            Some(json!({
                "stanza": "sealed",
                "path": sealed_repo.display().to_string(),
                "cipher_type": "aes-256-cbc",
                "cipher_pass": PASSPHRASE,
            })),
        )
        .await;
    assert_eq!(status, 201, "{sealed}");
    let sealed_path = format!("{repos}/{}", sealed["id"]);
    let created_sealed = create_stanza(&stack, &sealed_path).await;
    let sealed_info = backup_run(&stack, &format!("{sealed_path}/info?wait=120"), None).await;
    assert_eq!(sealed_info["status"], "succeeded", "{sealed_info}");
    let info_file =
        std::fs::read(sealed_repo.join("backup/sealed/backup.info")).expect("backup.info");
    assert!(
        !String::from_utf8_lossy(&info_file).contains("[backrest]"),
        "backup.info is encrypted"
    );
    let stored_params: Vec<String> = store
        .query(
            "SELECT params::text FROM runs WHERE kind LIKE 'backup%' UNION ALL \
             SELECT coalesce(summary::text, '') || coalesce(error, '') FROM runs",
            &[],
        )
        .await
        .expect("runs")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        stored_params.iter().all(|p| !p.contains(PASSPHRASE)),
        "the passphrase is in the store's runs"
    );
    for run in [&created_sealed, &sealed_info] {
        assert!(!run.to_string().contains(PASSPHRASE), "{run}");
    }

    // check on a cluster without archiving: the reason and the fix.
    let plain_repo = dir.path().join("plain-repo");
    let (status, plain_main) = stack
        .api(
            Method::POST,
            &format!("api/v1/instances/{plain_id}/backup/repositories"),
            Some(json!({"stanza": "plain", "path": plain_repo.display().to_string()})),
        )
        .await;
    assert_eq!(status, 201, "{plain_main}");
    let unarchived = backup_run(
        &stack,
        &format!(
            "api/v1/instances/{plain_id}/backup/repositories/{}/stanza?wait=120",
            plain_main["id"]
        ),
        Some(json!({"action": "check"})),
    )
    .await;
    assert_eq!(unarchived["status"], "failed", "{unarchived}");
    let error = unarchived["error"].as_str().unwrap_or("");
    assert!(
        error.contains("archive_mode is off") && error.contains("archive_mode = on"),
        "{unarchived}"
    );

    // A full backup, writes, an incremental one.
    let backups_path = format!("{repos}/{main_id}/backups?wait=120");
    let full = backup_run(&stack, &backups_path, Some(json!({"type": "full"}))).await;
    assert_eq!(full["status"], "succeeded", "{full}");
    assert_eq!(full["summary"]["backup"]["type"], "full", "{full}");
    let db = archived.connect("postgres").await.expect("connect");
    db.batch_execute("CREATE TABLE t AS SELECT g AS i FROM generate_series(1, 10000) g")
        .await
        .expect("writes");
    let incr = backup_run(&stack, &backups_path, Some(json!({"type": "incr"}))).await;
    assert_eq!(incr["status"], "succeeded", "{incr}");
    assert_eq!(incr["summary"]["backup"]["type"], "incr", "{incr}");
    assert_eq!(
        incr["summary"]["backup"]["prior"], full["summary"]["backup"]["label"],
        "{incr}"
    );

    // The catalogue lists both, with sizes and a WAL range.
    let info = backup_run(&stack, &format!("{repos}/{main_id}/info?wait=120"), None).await;
    assert_eq!(info["status"], "succeeded", "{info}");
    let backups = info["summary"]["backups"].as_array().expect("backups");
    let types: Vec<&str> = backups.iter().filter_map(|b| b["type"].as_str()).collect();
    assert_eq!(types, ["full", "incr"], "{info}");
    for b in backups {
        assert!(b["database_size"].as_i64().unwrap_or(0) > 0, "{b}");
        assert!(b["repo_size"].as_i64().unwrap_or(0) > 0, "{b}");
        assert!(
            b["wal_start"].is_string() && b["lsn_stop"].is_string(),
            "{b}"
        );
    }
    assert!(info["summary"]["archive"][0]["max"].is_string(), "{info}");
    // The same through the CLI.
    let listed = stack.cli(&["backup", "repo", "list", "-i", "archived", "-o", "json"]);
    assert!(
        listed.contains("\"offsite\"") && !listed.contains(PASSPHRASE),
        "{listed}"
    );
    // The API stores the catalogue of a finished run on its next one-second round, so the list
    // may trail the info run just ended by a round.
    let main_repo = main_id.to_string();
    let start = std::time::Instant::now();
    loop {
        let catalogue = stack.cli(&["backup", "list", "-i", "archived", "--repo", &main_repo]);
        if catalogue.contains("full") && catalogue.contains("incr") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{catalogue}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A second backup of the stanza while one is queued or running: refused, naming it.
    let (status, first) = stack
        .api(
            Method::POST,
            &format!("{repos}/{main_id}/backups?wait=0"),
            Some(json!({"type": "full"})),
        )
        .await;
    assert_eq!(status, 202, "{first}");
    let (status, second) = stack
        .api(
            Method::POST,
            &format!("{repos}/{main_id}/backups?wait=0"),
            Some(json!({"type": "diff"})),
        )
        .await;
    assert_eq!(status, 409, "{second}");
    let message = second["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(&format!("backup run {}", first["id"])),
        "{second}"
    );
    let first = stack.wait_run(first["id"].as_i64().expect("id")).await;
    assert_eq!(first["status"], "succeeded", "{first}");

    // Cancel: a check that waits for WAL which never reaches its repository (the server archives
    // into `main`'s) is stopped with SIGTERM and leaves no pgBackRest behind.
    let stuck = archiving.add_stuck_repository(&stack, archived_id).await;
    let stuck_stanza = format!("{stuck}/stanza");
    let (status, checking) = stack
        .api(
            Method::POST,
            &format!("{stuck_stanza}?wait=0"),
            Some(json!({"action": "check"})),
        )
        .await;
    assert_eq!(status, 202, "{checking}");
    let start = std::time::Instant::now();
    while pgbackrest_of("stuck") == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "pgBackRest check never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = stack
        .api(
            Method::POST,
            &format!("api/v1/runs/{}/cancel", checking["id"]),
            None,
        )
        .await;
    assert!(status == 200 || status == 202, "{status} {body}");
    let cancelled = stack.wait_run(checking["id"].as_i64().expect("id")).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(pgbackrest_of("stuck"), 0, "pgBackRest was left running");

    // `user` and `viewer` may do nothing but list the repositories.
    for token in [&viewer, &user] {
        for (method, path, body) in [
            (
                Method::POST,
                repos.clone(),
                Some(json!({"stanza": "other", "path": "/r"})),
            ),
            (Method::DELETE, format!("{repos}/{main_id}"), None),
            (
                Method::POST,
                format!("{repos}/{main_id}/stanza"),
                Some(json!({"action": "check"})),
            ),
            (
                Method::POST,
                format!("{repos}/{main_id}/backups"),
                Some(json!({"type": "full"})),
            ),
            (Method::POST, format!("{repos}/{main_id}/info"), None),
        ] {
            let (status, body) = stack.api_as(token, method.clone(), &path, body).await;
            assert_eq!(status, 403, "{method} {path}: {body}");
        }
        // The backup runs' parameters and results are an admin's.
        for run in [&created, &full, &info] {
            let (status, seen) = stack
                .api_as(
                    token,
                    Method::GET,
                    &format!("api/v1/runs/{}", run["id"]),
                    None,
                )
                .await;
            if status == 200 {
                assert!(
                    seen["params"].is_null() && seen["summary"].is_null(),
                    "{seen}"
                );
            } else {
                assert!(status == 403 || status == 404, "{status} {seen}");
            }
        }
    }

    // Removing a repository forgets it in Lasect (the backups stay on disk).
    let (status, _) = stack
        .api(Method::DELETE, &format!("{repos}/{}", secret["id"]), None)
        .await;
    assert_eq!(status, 204);
    let (_, list) = stack.api(Method::GET, &repos, None).await;
    let stanzas: Vec<&str> = list["repositories"]
        .as_array()
        .map(|all| all.iter().filter_map(|r| r["stanza"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(stanzas, ["main", "sealed", "stuck"], "{list}");
    assert!(repo.join("backup").join("main").is_dir());
}
