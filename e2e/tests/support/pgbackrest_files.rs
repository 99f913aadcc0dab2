//! The files the pgBackRest tests set up around a cluster, as an operator would.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use lasect_e2e::Stack;
use lasect_testkit::{PgCluster, PgOptions};
use reqwest::Method;
use serde_json::{Value, json};
use tempfile::TempDir;

/// What [`archiving_cluster`] sets up.
pub struct Archiving {
    /// A directory of the database OS user, removed at the end of the test.
    pub dir: TempDir,
    /// `<dir>/pgbackrest.conf`, the path the archive command reads (written by the agent's
    /// stanza run, not here).
    pub config: PathBuf,
    /// `<dir>/repo`, an empty repository directory of the database OS user.
    pub repo: PathBuf,
    /// A cluster with `archive_mode = on`, archiving with pgBackRest (`--config` above, stanza
    /// `main`).
    pub cluster: PgCluster,
}

/// Starts a cluster archiving its WAL with pgBackRest into a repository directory, both in a new
/// temp directory named `prefix…` that the database OS user owns, as an operator would set it up.
pub fn archiving_cluster(prefix: &str) -> Archiving {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir");
    let config = dir.path().join("pgbackrest.conf");
    let repo = dir.path().join("repo");
    let cluster = PgCluster::start(PgOptions {
        settings: vec![
            ("archive_mode".into(), "on".into()),
            (
                "archive_command".into(),
                format!(
                    "'pgbackrest --config={} --stanza=main archive-push %p'",
                    config.display()
                ),
            ),
        ],
        ..PgOptions::default()
    })
    .expect("archiving cluster");
    std::fs::create_dir(&repo).expect("repo dir");
    give_to_server(&cluster, dir.path());
    give_to_server(&cluster, &repo);
    Archiving {
        dir,
        config,
        repo,
        cluster,
    }
}

/// Fails the test with the way to install pgBackRest when it is missing.
pub fn require_pgbackrest() {
    let version = std::process::Command::new("pgbackrest")
        .arg("version")
        .output()
        .expect("pgbackrest is installed (scripts/deps.sh --test)");
    assert!(version.status.success(), "{version:?}");
}

impl Archiving {
    /// Registers this repository as stanza `main` of `instance` through the admin's API, with
    /// `extra` fields of the route's body (e.g. `{"retention_full": 2}`); returns its id.
    pub async fn add_main_repository(&self, stack: &Stack, instance: i64, extra: Value) -> i64 {
        let mut body = json!({
            "stanza": "main",
            "path": self.repo.display().to_string(),
            "config_path": self.config.display().to_string(),
        });
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        let (status, created) = stack
            .api(
                Method::POST,
                &format!("api/v1/instances/{instance}/backup/repositories"),
                Some(body),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_i64().expect("repository id")
    }

    /// A repository no backup can finish in: `<dir>/stuck-repo`, registered as stanza `stuck` of
    /// `instance` and its stanza created, while the server archives into `main`'s, so the WAL a
    /// backup or check waits for never reaches it. Returns the repository's route
    /// (`api/v1/instances/{instance}/backup/repositories/{id}`).
    pub async fn add_stuck_repository(&self, stack: &Stack, instance: i64) -> String {
        let stuck_repo = self.dir.path().join("stuck-repo");
        std::fs::create_dir(&stuck_repo).expect("repo dir");
        give_to_server(&self.cluster, &stuck_repo);
        let repos = format!("api/v1/instances/{instance}/backup/repositories");
        let (status, stuck) = stack
            .api(
                Method::POST,
                &repos,
                Some(json!({"stanza": "stuck", "path": stuck_repo.display().to_string()})),
            )
            .await;
        assert_eq!(status, 201, "{stuck}");
        let stuck = format!("{repos}/{}", stuck["id"]);
        create_stanza(stack, &stuck).await;
        stuck
    }
}

/// Creates the stanza of the repository at route `repository`
/// (`api/v1/instances/{id}/backup/repositories/{id}`) through a run; fails the test unless the
/// run succeeded; returns the run.
pub async fn create_stanza(stack: &Stack, repository: &str) -> Value {
    let created = backup_run(
        stack,
        &format!("{repository}/stanza?wait=120"),
        Some(json!({"action": "create"})),
    )
    .await;
    assert_eq!(created["status"], "succeeded", "{created}");
    created
}

/// Takes a full backup into the repository at route `repository` through a run; fails the
/// test unless the run succeeded; returns the run.
pub async fn full_backup(stack: &Stack, repository: &str) -> Value {
    let full = backup_run(
        stack,
        &format!("{repository}/backups?wait=120"),
        Some(json!({"type": "full"})),
    )
    .await;
    assert_eq!(full["status"], "succeeded", "{full}");
    full
}

/// POSTs a run-creating backup route as the admin and waits for the run's end; returns it.
pub async fn backup_run(stack: &Stack, path: &str, body: Option<Value>) -> Value {
    let (status, run) = stack.api(Method::POST, path, body).await;
    assert!(status == 200 || status == 202, "{path}: {status} {run}");
    stack.wait_run(run["id"].as_i64().expect("run id")).await
}

/// Gives `path` to the owner of the cluster's data directory (the database OS user), as an
/// operator would give it the repository and config directories.
pub fn give_to_server(cluster: &PgCluster, path: &Path) {
    let meta = std::fs::metadata(cluster.data_dir()).expect("data dir");
    std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid())).expect("chown");
}

/// How many pgBackRest processes of `stanza` are running on this host.
pub fn pgbackrest_of(stanza: &str) -> usize {
    let needle = format!("--stanza={stanza}");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmdline| {
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.iter().any(|a| a.ends_with(b"pgbackrest")) && args.contains(&needle.as_bytes())
        })
        .count()
}

/// A connection as `postgres` to the cluster a restore left running (`summary.started` of its
/// run: socket directory and port), after checking it was promoted.
pub async fn connect_restored(started: &Value) -> tokio_postgres::Client {
    let dsn = format!(
        "host={} port={} user=postgres dbname=postgres",
        started["socket_directory"].as_str().expect("socket"),
        started["port"]
    );
    let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to the restored cluster {dsn}: {e}"));
    tokio::spawn(conn);
    let in_recovery: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .expect("recovery state")
        .get(0);
    assert!(!in_recovery, "the restored cluster is promoted");
    client
}
