//! Two faults of pgBackRest through the real binaries (issue 17, docs/BACKUPS.md "Faults"),
//! on one harness cluster archiving into a repository on a small tmpfs:
//! - a pgBackRest older than the agent's minimum (a configured command that says `pgBackRest
//!   2.30` to `version` and is the real pgBackRest otherwise): stanza-create and a backup fail
//!   naming the version found, the minimum and the fix; nothing written to the repository,
//!   no stanza counted as created in the store, no catalogue stored;
//! - the repository's disk full during a full backup (8 MiB for a cluster with a 20 MiB file
//!   of random bytes in its data directory): the run fails with pgBackRest's own `No space left on device`,
//!   the stored catalogue gains no backup; once the disk is grown the next full backup of the
//!   same stanza succeeds and the catalogue lists exactly that one.
//!
//! Needs root (the tmpfs) and pgBackRest (`scripts/deps.sh --test`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lasect_e2e::Stack;
use serde_json::{Value, json};

use crate::support::pgbackrest_files::{
    archiving_cluster, backup_run, create_stanza, give_to_server, require_pgbackrest,
};
use crate::support::until;

const AGENT_ID: &str = "backup-faults-agent";

/// A tmpfs mounted over a directory, unmounted on drop (the test's end or its failure).
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .expect("mount");
        assert!(
            status.success(),
            "mounting a tmpfs on {} needs root: {status}",
            path.display()
        );
        SmallDisk {
            path: path.to_owned(),
        }
    }

    /// Grows (or shrinks) the mounted tmpfs in place: its files stay.
    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .expect("remount");
        assert!(status.success(), "remount: {status}");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: an archive-push still writing must not keep the mount behind.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The stored catalogue of `instance`'s only repository once the run `at_least` (or a later
/// one) stored it.
async fn stored_catalogue(stack: &Stack, instance: i64, at_least: i64) -> Value {
    until(Duration::from_secs(60), "the catalogue stored", || async {
        let (status, body) = stack
            .api(
                reqwest::Method::GET,
                &format!("api/v1/backups?instance_id={instance}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let stored = &body["repositories"][0];
        stored["run_id"]
            .as_i64()
            .is_some_and(|id| id >= at_least)
            .then(|| stored.clone())
    })
    .await
}

fn error_of(run: &Value) -> &str {
    run["error"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_pgbackrest_and_a_full_disk_fail_cleanly() {
    let _pgbackrest = crate::support::pgbackrest().await;
    require_pgbackrest();
    let archiving = archiving_cluster("lasect-backup-faults-");
    let (dir, repo, archived) = (&archiving.dir, &archiving.repo, &archiving.cluster);
    // After `archiving`: unmounted before its directory is removed.
    let disk = SmallDisk::mount(repo, "8m");
    give_to_server(archived, repo);

    // A pgBackRest that says it is 2.30 (and is the real one for anything else, so only the
    // agent's check can stop it), root's and executable by the database user.
    let old = dir.path().join("pgbackrest-2.30");
    std::fs::write(
        &old,
        "#!/bin/sh\nif [ \"$1\" = version ]; then echo 'pgBackRest 2.30'; exit 0; fi\n\
         exec /usr/bin/pgbackrest \"$@\"\n",
    )
    .expect("script");
    std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");

    let stack = Stack::new(AGENT_ID).await;
    let _api = stack.start_api();
    let _ingest = stack.start_ingest(&stack.secrets_toml());
    let agent_toml = |pgbackrest: &str| {
        format!(
            "[collect]\ninterval_secs = 5\n[control]\nallow = [\"sql\", \"backup\"]\n\
             [control.pgbackrest]\n{pgbackrest}\n\
             [[instances]]\nname = \"archived\"\ndsn = \"{}\"\n",
            archived.dsn("postgres")
        )
    };
    stack.agent_config(
        stack.ingest_port,
        &agent_toml(&format!("command = \"{}\"", old.display())),
    );
    let mut agent = stack.start_agent(&[]);
    agent
        .wait_for_line("Control stream open", Duration::from_secs(60))
        .expect("control stream");
    let instance = stack.instance_id("archived").await;
    let repo_id = archiving
        .add_main_repository(&stack, instance, json!({}))
        .await;
    let main = format!("api/v1/instances/{instance}/backup/repositories/{repo_id}");

    // Too old: stanza-create and a backup fail before pgBackRest does anything.
    let created = backup_run(
        &stack,
        &format!("{main}/stanza?wait=120"),
        Some(json!({"action": "create"})),
    )
    .await;
    let backed_up = backup_run(
        &stack,
        &format!("{main}/backups?wait=120"),
        Some(json!({"type": "full"})),
    )
    .await;
    for run in [&created, &backed_up] {
        assert_eq!(run["status"], "failed", "{run}");
        let error = error_of(run);
        for part in [
            "pgBackRest 2.30 is installed",
            &old.display().to_string(),
            "older than 2.39",
            "apt-get install pgbackrest",
        ] {
            assert!(error.contains(part), "{part}: {run}");
        }
    }
    let written: Vec<_> = std::fs::read_dir(repo).expect("repo").collect();
    assert!(
        written.is_empty(),
        "the repository was written: {written:?}"
    );
    let store = stack.store().await;
    let counts = store
        .query_one(
            "SELECT (SELECT count(*) FROM runs WHERE instance_id = $1 \
                      AND kind IN ('backup_stanza', 'backup') AND status = 'succeeded' \
                      AND params ->> 'stanza' = 'main'), \
                    (SELECT count(*) FROM backup_catalogues WHERE repository_id = $2)",
            &[&instance, &repo_id],
        )
        .await
        .expect("counts");
    assert_eq!(
        (counts.get::<_, i64>(0), counts.get::<_, i64>(1)),
        (0, 0),
        "no stanza created, no catalogue"
    );
    agent.kill();

    // The real pgBackRest: the stanza is created, then 20 MiB that do not compress fill the
    // 8 MiB repository during a full backup.
    stack.agent_config(stack.ingest_port, &agent_toml(""));
    let mut agent = stack.start_agent(&[]);
    agent
        .wait_for_line("Control stream open", Duration::from_secs(60))
        .expect("control stream");
    create_stanza(&stack, &main).await;
    // Rows would come as WAL first, which archive-push puts into the same small repository
    // before the backup starts (and the backup would then wait for the archive, not fill the
    // disk): a file in the data directory, which pgBackRest copies like any other.
    let filler = archived.data_dir().join("lasect-filler");
    let mut random = std::fs::File::open("/dev/urandom")
        .expect("urandom")
        .take(20 << 20);
    std::io::copy(
        &mut random,
        &mut std::fs::File::create(&filler).expect("filler"),
    )
    .expect("20 MiB");
    give_to_server(archived, &filler);
    let full = backup_run(
        &stack,
        &format!("{main}/backups?wait=120"),
        Some(json!({"type": "full"})),
    )
    .await;
    assert_eq!(full["status"], "failed", "{full}");
    // pgBackRest's own words (2.45 reports a short write without the system's reason), then
    // the agent's, who looked at the repository's filesystem.
    let error = error_of(&full);
    for part in [
        "ERROR: [064]",
        "unable to write",
        &format!("the repository's filesystem ({}) is full", repo.display()),
        "No space left on device",
    ] {
        assert!(error.contains(part), "{part}: {full}");
    }
    // pgBackRest's own catalogue, read and stored after the failure, has no backup.
    let info = backup_run(&stack, &format!("{main}/info?wait=120"), None).await;
    assert_eq!(info["status"], "succeeded", "{info}");
    let stored = stored_catalogue(&stack, instance, info["id"].as_i64().expect("id")).await;
    assert_eq!(
        stored["backups"].as_array().map(Vec::len),
        Some(0),
        "a failed backup in the catalogue: {stored}"
    );

    // Room again: the same stanza's next full backup succeeds (pgBackRest deals with the
    // partial one) and is the catalogue's only backup.
    disk.resize("256m");
    let full = backup_run(
        &stack,
        &format!("{main}/backups?wait=120"),
        Some(json!({"type": "full"})),
    )
    .await;
    assert_eq!(full["status"], "succeeded", "{full}");
    let label = full["summary"]["backup"]["label"]
        .as_str()
        .expect("the backup's label")
        .to_owned();
    let stored = stored_catalogue(&stack, instance, full["id"].as_i64().expect("id")).await;
    let backups = stored["backups"].as_array().expect("backups");
    assert_eq!(backups.len(), 1, "{stored}");
    assert_eq!(backups[0]["label"], label.as_str(), "{stored}");
    assert_eq!(backups[0]["type"], "full", "{stored}");
    agent.kill();
}
